"""TAG@rootfs from SOCI indexes: zTOCs written at test time with Debian's
python3-flatbuffers (tests/lib/soci.py) over gzip layers compressed here,
bound to the image as SOCI v2 (manifest annotation) and v1 (referrer). The
files must be those of `umoci unpack` and of the local build; listing may
download the zTOCs only (the emulator's request log); a malformed zTOC or a
span digest the layer does not match falls back to the local build."""
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import ecrclient  # noqa: E402
import soci  # noqa: E402
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
from test_rootfs_core import tarfile_image, umoci, manifest, blob_path, write_blob  # noqa: E402,F401
from test_rootfs_mount import walk, blob_bytes, check_against_umoci  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
]

SPAN = 256 << 10
STATE = "user.ecr.rootfs_state"


def tars_of(layout, tag):
    """The uncompressed tar of each layer of tag."""
    out = []
    for l in manifest(layout, tag)[1]["layers"]:
        data = open(blob_path(layout, l["digest"]), "rb").read()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def add_manifest(layout, tag, m):
    data = json.dumps(m).encode()
    idx = json.load(open(os.path.join(layout, "index.json")))
    idx["manifests"] = idx.get("manifests") or []
    idx["manifests"].append({"mediaType": soci.MANIFEST_MT, "digest": write_blob(layout, data),
                             "size": len(data),
                             "annotations": {"org.opencontainers.image.ref.name": tag}})
    json.dump(idx, open(os.path.join(layout, "index.json"), "w"))
    return data


def soci_image(layout, tag, tars, version, spoil=None):
    """Adds image `tag` of gzip layers with checkpoints to the layout and
    returns (manifest bytes, SOCI index bytes, zTOCs). spoil(i, tar, gz, ck)
    may return the zTOC of layer i instead."""
    layers, ztocs, diff_ids = [], [], []
    for i, tar in enumerate(tars):
        gz, ck = soci.gzip_spans(tar, SPAN)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": write_blob(layout, gz), "size": len(gz)})
        z = (spoil and spoil(i, tar, gz, ck)) or soci.ztoc(tar, gz, ck, SPAN)
        write_blob(layout, z)
        ztocs.append((z, layers[-1]["digest"]))
        diff_ids.append(soci.digest(tar))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    m = {"schemaVersion": 2, "mediaType": soci.MANIFEST_MT,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": write_blob(layout, config), "size": len(config)},
         "layers": layers}
    write_blob(layout, soci.EMPTY)
    if version == 2:
        idx = soci.index_manifest(ztocs, 2)
        m["annotations"] = {soci.INDEX_ANN: soci.digest(idx)}
        data = add_manifest(layout, tag, m)
    else:
        data = add_manifest(layout, tag, m)
        idx = soci.index_manifest(ztocs, 1, subject={"mediaType": soci.MANIFEST_MT,
                                                     "digest": soci.digest(data),
                                                     "size": len(data)})
    write_blob(layout, idx)
    return data, idx, [z for z, _ in ztocs]


def push_soci(emu, layout, repo, tag, idx, ztocs):
    """The image with its tag, the SOCI index by digest, its zTOCs."""
    ecrclient.push_layout(emu, layout, repo, tag)
    c = ecrclient.client_for(emu)
    try:
        for z in ztocs + [soci.EMPTY]:
            c.push_blob(repo, z)
        c.put_image(repo, idx, soci.MANIFEST_MT)
    finally:
        c.close()


def wrong_digest(i, tar, gz, ck):
    """Layer 2's last span digest is another span's."""
    if i != 2:
        return None
    ds = soci.span_digests(gz, ck)
    ds[-1] = ds[0]
    return soci.ztoc(tar, gz, ck, SPAN, digests=ds)


def malformed(i, tar, gz, ck):
    """Layer 0's zTOC cut in the middle of its tables."""
    z = soci.ztoc(tar, gz, ck, SPAN)
    return z[: len(z) // 2] if i == 0 else None


@pytest.fixture(scope="module")
def images(emulator, tarfile_image, tmp_path_factory):
    layout = str(tmp_path_factory.mktemp("soci") / "layout")
    umoci("init", "--layout", layout)
    rnd = random.Random(16)
    noise = lambda n: bytes(rnd.getrandbits(8) for _ in range(n))
    # Layers that do not compress away, so the zTOCs are smaller than them.
    rand = core.tar_layer([core.D("rand"), core.F("rand/a", noise(3 << 20)),
                           core.F("rand/b", noise(1 << 20))]
                          + [core.F(f"rand/small{i}", noise(1000 + i)) for i in range(20)],
                          tarfile.PAX_FORMAT)
    tars = tars_of(tarfile_image, "py") + [rand]
    out = {"emu": emulator, "layout": layout, "ztoc_bytes": {}}
    kinds = [("v2", 2, None), ("v1", 1, None), ("badspan", 2, wrong_digest),
             ("malformed", 2, malformed)]
    if soci.FLATC:  # the zTOCs serialised by another writer: flatc, from JSON
        kinds.append(("v2flatc", 2, lambda i, tar, gz, ck: soci.ztoc_by_flatc(tar, gz, ck, SPAN)))
    for tag, version, spoil in kinds:
        _, idx, ztocs = soci_image(layout, tag, tars, version, spoil)
        push_soci(emulator, layout, "soci/" + tag, tag, idx, ztocs)
        out["ztoc_bytes"][tag] = sum(len(z) for z in ztocs)
    # The same layers without any index: the local build.
    ecrclient.push_layout(emulator, layout, "soci/plain", "v1", ref="v1")
    return out


@pytest.fixture
def mount(images, tmp_path):
    with mounts(images["emu"], tmp_path) as make:
        yield make


def layers_bytes(layout, tag):
    return sum(l["size"] for l in manifest(layout, tag)[1]["layers"])


@pytest.mark.parametrize("tag", ["v2", "v1", "v2flatc"])
def test_soci_lists_and_reads_like_unpack(images, mount, tmp_path, tag):
    emu, layout = images["emu"], images["layout"]
    if tag not in images["ztoc_bytes"]:
        pytest.skip("flatc (Debian's flatbuffers-compiler) not installed")
    m = mount()
    root = m.repo("soci/" + tag, tag + "@rootfs")
    emu.reset_log()
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    # Listing downloaded the zTOCs and no layer byte.
    assert blob_bytes(emu) == images["ztoc_bytes"][tag]
    assert blob_bytes(emu) < layers_bytes(layout, tag)
    assert os.getxattr(root, STATE) == f"ready (soci v{tag[1]})".encode()
    # One small file of the 4 MiB layer costs about one span, not the layer.
    emu.reset_log()
    assert len(open(os.path.join(root, "rand/small3"), "rb").read()) == 1003
    big = manifest(layout, tag)[1]["layers"][-1]["size"]
    assert 0 < blob_bytes(emu) <= 2 * SPAN + 65536 < big // 4
    check_against_umoci(root, layout, tag, tmp_path, made_parents={"data"})
    # The same walk as the local build of the same layers.
    plain = m.repo("soci/plain", "v1@rootfs")
    strip = lambda t: {p: {k: v for k, v in r.items() if k != "group"} for p, r in t.items()}
    assert strip(walk(root)) == strip(walk(plain))
    assert os.getxattr(plain, STATE) == b"ready (built)"


def test_malformed_ztoc_falls_back(images, mount, tmp_path):
    m = mount()
    root = m.repo("soci/malformed", "malformed@rootfs")
    check_against_umoci(root, images["layout"], "malformed", tmp_path, made_parents={"data"})
    assert os.getxattr(root, STATE) == b"ready (built, soci v2)"
    assert "is malformed" in m.logtext()


def test_wrong_span_digest_falls_back(images, mount, tmp_path):
    m = mount()
    root = m.repo("soci/badspan", "badspan@rootfs")
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    assert os.getxattr(root, STATE) == b"ready (soci v2)"
    # data/big's last span carries a wrong digest: its read falls back.
    want = bytes(range(256)) * 8000
    assert open(os.path.join(root, "data/big"), "rb").read() == want
    assert os.getxattr(root, STATE) == b"ready (soci v2, built)"
    assert "disagrees with its soci v2 index" in m.logtext()
    check_against_umoci(root, images["layout"], "badspan", tmp_path, made_parents={"data"})


def test_strict_refuses_v1_not_v2(images, mount):
    m = mount(opts="verify=strict")
    v1 = m.repo("soci/v1", "v1@rootfs")
    v2 = m.repo("soci/v2", "v2@rootfs")
    # v2 first: the same layers built for v1 would be in the local cache.
    names = sorted(os.listdir(v2))
    assert os.getxattr(v2, STATE) == b"ready (soci v2)"
    assert sorted(os.listdir(v1)) == names
    assert os.getxattr(v1, STATE) == b"ready (built)"


@pytest.mark.skipif(not soci.FLATC, reason="flatc (flatbuffers-compiler) not installed")
def test_fixture_is_the_schema(tarfile_image):
    """flatc decodes the Python-written zTOC with the schema into what it
    was made from: the fixture's field numbers are the schema's."""
    tar = tars_of(tarfile_image, "py")[0]
    gz, ck = soci.gzip_spans(tar, 4096)
    d = soci.decode_by_flatc(soci.ztoc(tar, gz, ck, 4096))
    want = soci.ztoc_json(tar, gz, ck, 4096)
    assert d["compressed_archive_size"] == len(gz)
    assert d["uncompressed_archive_size"] == len(tar)
    ci = d["compression_info"]
    assert ci["span_digests"] == want["compression_info"]["span_digests"]
    assert ci["checkpoints"] == want["compression_info"]["checkpoints"]
    assert ci["max_span_id"] == len(ck) - 1 and len(ck) > 2
    keys = ("name", "type", "uncompressed_offset", "uncompressed_size", "linkname", "mode",
            "uid", "gid", "mod_time", "devmajor", "devminor", "xattrs")
    norm = lambda m: {k: m.get(k, 0 if k not in ("name", "type", "linkname", "mod_time", "xattrs")
                            else [] if k == "xattrs" else "") for k in keys}
    assert [norm(m) for m in d["toc"]["metadata"]] == \
        [norm(m) for m in want["toc"]["metadata"]]
