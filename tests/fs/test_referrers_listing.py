"""Referrers (images whose manifest has a subject: signatures, SBOMs) are
left out of repository listings unless -o show_referrers, stay reachable
by name, and user.ecr.referrers counts them per artifact type."""
import hashlib
import json
import os

import pytest

import ecrclient
import layouts

REPO = "subject/app"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def signed(seeded):
    """Tag v1; an untagged signature and a tagged SBOM (tag sbom-v1), both
    with subject v1, built by hand."""
    emu = seeded["emu"]
    layout = seeded["layout"]
    base = layouts.descriptor(layout, "v2")
    man = json.loads(layouts._blob(layout, base["digest"]))
    ecrclient.create_repository(emu, REPO)
    c = ecrclient.client_for(emu)
    out = {"emu": emu}
    try:
        for b in [man["config"]] + man["layers"]:
            c.push_blob(REPO, layouts._blob(layout, b["digest"]), b["digest"])
        data = json.dumps(dict(man, annotations={"signed": "1"})).encode()
        r = c.put_image(REPO, data, base["mediaType"], "v1")
        subject = {"mediaType": base["mediaType"], "digest": sha(data), "size": len(data)}
        assert r["image"]["imageId"]["imageDigest"] == subject["digest"]
        c.push_blob(REPO, b"{}", sha(b"{}"))
        for kind, tag, payload in [(SIG, None, b"signature"), (SBOM, "sbom-v1", b"{\"spdx\":1}")]:
            c.push_blob(REPO, payload, sha(payload))
            ref = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
                   "config": {"mediaType": EMPTY, "digest": sha(b"{}"), "size": 2},
                   "layers": [{"mediaType": kind, "digest": sha(payload),
                               "size": len(payload)}],
                   "subject": subject}
            rb = json.dumps(ref).encode()
            c.put_image(REPO, rb, OCI_MANIFEST, tag)
            out[kind] = sha(rb)
    finally:
        c.close()
    return out


def test_referrers_hidden_and_counted(signed, mount):
    emu = signed["emu"]
    m = mount()
    assert os.listdir(m.repo(REPO)) == ["v1"]
    # reachable by name
    assert os.path.isdir(m.repo(REPO, "sbom-v1"))
    sig_dir = "@sha256-" + signed[SIG].split(":")[1]
    assert os.path.isdir(m.repo(REPO, sig_dir))
    emu.reset_log()
    got = os.getxattr(m.repo(REPO, "v1"), "user.ecr.referrers").decode()
    assert got == f"{SBOM}=1,{SIG}=1"
    assert emu.count("ListImageReferrers") == 1
    assert emu.count("BatchGetImage") == 0
    # kept for the listing TTL
    os.getxattr(m.repo(REPO, "v1"), "user.ecr.referrers")
    assert emu.count("ListImageReferrers") == 1
    assert "user.ecr.referrers" in os.listxattr(m.repo(REPO, "v1"))
    # an image without referrers has no such attribute
    assert "user.ecr.referrers" not in os.listxattr(m.repo(REPO, "sbom-v1"))


def test_show_referrers_lists_them(signed, mount):
    m = mount("show_referrers")
    sig_dir = "@sha256-" + signed[SIG].split(":")[1]
    assert sorted(os.listdir(m.repo(REPO))) == sorted(["v1", "sbom-v1", sig_dir])
