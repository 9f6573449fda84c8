"""-o rootfs_publish: a mount that built an image's TAG@rootfs pushes its
layer indexes as an untagged referrer of the image (its own artifactType,
never SOCI's); a second mount with an empty cache lists the image after
downloading the indexes only (the emulator's request log) and reads files
that `umoci unpack` agrees with. Published indexes that do not describe
their layer are refused; verify=strict never uses them."""
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import ecrclient  # noqa: E402
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
from test_rootfs_core import tarfile_image, umoci, manifest, add_image  # noqa: E402,F401
from test_rootfs_mount import walk, blob_bytes, check_against_umoci  # noqa: E402
from test_rootfs_soci import tars_of  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
]

PUB_TYPE = "application/vnd.ecrfs.rootfs.index.v1"
STATE = "user.ecr.rootfs_state"


@pytest.fixture(scope="module")
def image(emulator, tarfile_image, tmp_path_factory):
    """The tarfile image's layers (gzip) and 8 MiB of files that do not
    compress away, in several repositories (one per test)."""
    layout = str(tmp_path_factory.mktemp("pub") / "layout")
    umoci("init", "--layout", layout)
    rnd = random.Random(3)
    noise = lambda n: bytes(rnd.getrandbits(8) for _ in range(n))
    rand = core.tar_layer([core.D("rand"), core.F("rand/a", noise(6 << 20))]
                          + [core.F(f"rand/f{i}", noise(20000 + i) + b"\0" * 100000)
                             for i in range(40)], tarfile.PAX_FORMAT)
    add_image(layout, "pub", [(t, "gzip") for t in tars_of(tarfile_image, "py")] + [(rand, "gzip")])
    digest = manifest(layout, "pub")[0]
    for repo in ("pub/one", "pub/strict", "pub/forged"):
        ecrclient.push_layout(emulator, layout, repo, "pub")
    return {"emu": emulator, "layout": layout, "digest": digest,
            "layers": sum(l["size"] for l in manifest(layout, "pub")[1]["layers"])}


@pytest.fixture
def mount(image, tmp_path):
    with mounts(image["emu"], tmp_path) as make:
        yield make


def referrers(emu, repo, digest):
    c = ecrclient.client_for(emu)
    try:
        r = c.call("ListImageReferrers", repositoryName=repo,
                   subjectId={"imageDigest": digest}, filter={"artifactTypes": [PUB_TYPE]})
        return r["referrers"]
    finally:
        c.close()


def wait_referrer(emu, repo, digest, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        refs = referrers(emu, repo, digest)
        if refs:
            return refs
        time.sleep(0.3)
    raise AssertionError("no referrer published")


def referrer_manifest(emu, repo, digest):
    out = emu.aws("batch-get-image", "--repository-name", repo,
                  "--image-ids", f"imageDigest={digest}")
    return json.loads(out["images"][0]["imageManifest"])


def publish(m, image, repo):
    root = m.repo(repo, "pub@rootfs")
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    assert os.getxattr(root, STATE) == b"ready (built)"
    return wait_referrer(image["emu"], repo, image["digest"])


def test_publish_then_empty_cache_reads_index_only(image, mount, tmp_path):
    emu, layout, repo = image["emu"], image["layout"], "pub/one"
    a = mount(name="a", opts="rootfs_publish")
    refs = publish(a, image, repo)
    assert len(refs) == 1 and refs[0]["artifactType"] == PUB_TYPE
    # Untagged, its subject the image, one blob per layer: the index files
    # the first mount wrote (same sha256), never a SOCI type.
    det = emu.aws("describe-images", "--repository-name", repo,
                  "--image-ids", f"imageDigest={refs[0]['digest']}")["imageDetails"][0]
    assert not det.get("imageTags")
    rm = referrer_manifest(emu, repo, refs[0]["digest"])
    assert rm["subject"]["digest"] == image["digest"] and rm["artifactType"] == PUB_TYPE
    assert "soci" not in json.dumps(rm)
    layers = manifest(layout, "pub")[1]["layers"]
    assert [l["annotations"]["dev.ecrfs.rootfs.layer-digest"] for l in rm["layers"]] == \
        [l["digest"] for l in layers]
    for l in rm["layers"]:
        f = os.path.join(a.cache_dir, "index",
                         l["annotations"]["dev.ecrfs.rootfs.layer-digest"].split(":")[1])
        assert "sha256:" + hashlib.sha256(open(f, "rb").read()).hexdigest() == l["digest"]
    index_bytes = sum(l["size"] for l in rm["layers"])
    want = walk(a.repo(repo, "pub@rootfs"))
    a.stop()

    # A second mount, empty cache: the listing costs the index blobs only.
    b = mount(name="b")
    emu.reset_log()
    root = b.repo(repo, "pub@rootfs")
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    got = blob_bytes(emu)
    print(f"first ls -R from the published index: {got} bytes of {image['layers']} "
          f"({100 * got / image['layers']:.2f}%), index blobs {index_bytes}")
    assert got == index_bytes and got <= 0.05 * image["layers"]
    assert os.getxattr(root, STATE) == b"ready (published)"
    strip = lambda t: {p: {k: v for k, v in r.items() if k != "group"} for p, r in t.items()}
    assert strip(walk(root)) == strip(want)
    check_against_umoci(root, layout, "pub", tmp_path, made_parents={"data"})
    # Still one referrer: b used it, and built nothing to publish.
    assert len(referrers(emu, repo, image["digest"])) == 1


def test_strict_never_uses_published(image, mount):
    emu, repo = image["emu"], "pub/strict"
    publish(mount(name="a", opts="rootfs_publish"), image, repo)
    s = mount(name="s", opts="verify=strict")
    root = s.repo(repo, "pub@rootfs")
    os.listdir(root)
    assert os.getxattr(root, STATE) == b"ready (built)"


def test_forged_published_index_refused(image, mount):
    """A referrer whose blobs are the index files of other layers (each
    sound, with its own checksum) is refused layer by layer."""
    emu, repo = image["emu"], "pub/forged"
    a = mount(name="a")
    subprocess.run(["ls", "-R", a.repo(repo, "pub@rootfs")], check=True, capture_output=True)
    time.sleep(1)  # a publication would follow the build: none without the option
    assert referrers(emu, repo, image["digest"]) == []
    layers = [l["digest"] for l in manifest(image["layout"], "pub")[1]["layers"]]
    c = ecrclient.client_for(emu)
    descs = []
    for i, ld in enumerate(layers):
        other = layers[(i + 1) % len(layers)]
        data = open(os.path.join(a.cache_dir, "index", other.split(":")[1]), "rb").read()
        descs.append({"mediaType": PUB_TYPE + ".layer", "digest": c.push_blob(repo, data),
                      "size": len(data), "annotations": {"dev.ecrfs.rootfs.layer-digest": ld}})
    cfg = c.push_blob(repo, b"{}")
    mdata = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "artifactType": PUB_TYPE,
                        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                   "digest": cfg, "size": 2},
                        "layers": descs,
                        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "digest": image["digest"],
                                    "size": os.path.getsize(core.blob_path(image["layout"],
                                                                           image["digest"]))}}
                       ).encode()
    c.put_image(repo, mdata, "application/vnd.oci.image.manifest.v1+json")
    c.close()
    a.stop()
    b = mount(name="b")
    root = b.repo(repo, "pub@rootfs")
    assert open(os.path.join(root, "dup"), "rb").read() == b"second"
    assert os.getxattr(root, STATE) == b"ready (built)"
    assert "index from published dropped" in b.logtext()
