"""Index sources of TAG@rootfs on the ECR emulator: eStargz and zstd:chunked
layers written by the test (toc_layers.py, after the formats' reference
writers) are listed from their TOC after a few ranged reads, read chunk by
chunk, and must equal `umoci unpack` of the same tar streams and the local
build of the same layers; a TOC with a wrong digest or a malformed one falls
back to the local build; -o verify=strict takes only annotated TOCs."""
import gzip
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
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
import toc_layers as tl  # noqa: E402
from test_rootfs_core import D, F, L, manifest, write_blob, umoci_image  # noqa: E402,F401
from test_rootfs_mount import walk, check_against_umoci  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
    pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed"),
]

CHUNK = 256 * 1024
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"


def entries(seed, n_big):
    """A layer's entries: random (incompressible) files so that the layer is
    far bigger than what a first look reads, files of several chunks, and
    the usual kinds."""
    rnd = random.Random(seed)
    big = [F(f"data/r{i}", rnd.randbytes(rnd.randrange(300000, 900000))) for i in range(n_big)]
    return [
        D("./"), D("etc"), F("etc/hello", b"hello %d\n" % seed), D("data"), *big,
        F("data/multi", rnd.randbytes(3 * CHUNK + 1234)), F("data/exact", rnd.randbytes(CHUNK)),
        F("empty", b""), L("etc/link", "hello"), L("hard", "etc/hello", tarfile.LNKTYPE),
        F("bin-suid", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001),
        (dict(name="etc/xa", type=tarfile.REGTYPE, mode=0o600,
              pax_headers={"SCHILY.xattr.user.note": "v%d" % seed}), b"x"),
        (dict(name="fifo", type=tarfile.FIFOTYPE, mode=0o600), None),
        D("deep"), D("deep/a"), D("deep/a/b"), D("deep/a/b/c"), F("deep/a/b/c/leaf", b"leaf"),
    ]


def upper_entries():
    return [F(".wh.empty", b""), F("etc/hello", b"replaced\n"), D("deep"),
            F("deep/.wh..wh..opq", b""), F("deep/new", b"new")]


def add_raw_image(layout, tag, layers):
    """layers: [(blob, mediaType, annotations or None, uncompressed tar)]."""
    descs = []
    for blob, mt, ann, _ in layers:
        d = {"mediaType": mt, "digest": write_blob(layout, blob), "size": len(blob)}
        if ann:
            d["annotations"] = ann
        descs.append(d)
    diff_ids = [tl.sha(tar) for _, _, _, tar in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": write_blob(layout, config), "size": len(config)},
                    "layers": descs}).encode()
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    idx["manifests"] = (idx.get("manifests") or []) + [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": write_blob(layout, m),
         "size": len(m), "annotations": {"org.opencontainers.image.ref.name": tag}}]
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)


def malformed_estargz(ents):
    """A valid tar.gz whose eStargz TOC is cut in half (not JSON)."""
    blob, _, tar = tl.estargz(ents, chunk=CHUNK)
    js_start = tar.rindex(b'{"version": 1')
    js = tar[js_start:tar.index(b"\0", js_start)]
    toc_at = tar.rindex(b"stargz.index.json")
    body = tar[:toc_at]  # everything before the TOC's tar header
    cut = js[:len(js) // 2]
    ti = tarfile.TarInfo("stargz.index.json")
    ti.size = len(cut)
    end = ti.tobuf(tarfile.USTAR_FORMAT) + cut + b"\0" * (-len(cut) % 512) + b"\0" * 1024
    toc_off = int(blob[-51 + 16:-51 + 32], 16)
    new = blob[:toc_off] + gzip.compress(end, mtime=0)
    return new + tl.estargz_footer(toc_off), body + end


@pytest.fixture(scope="module")
def images(emulator, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("toc"))
    layout = f"{tmp}/layout"
    core.umoci("init", "--layout", layout)
    e0, e1 = entries(1, 10), upper_entries()
    eb0, ed0, et0 = tl.estargz(e0, chunk=CHUNK)
    eb1, _, et1 = tl.estargz(e1, chunk=CHUNK)
    add_raw_image(layout, "e", [(eb0, GZ, {tl.ESTARGZ_TOC_DIGEST: ed0}, et0), (eb1, GZ, None, et1)])
    bad = {tl.ESTARGZ_TOC_DIGEST: "sha256:" + "0" * 64}
    add_raw_image(layout, "e-bad", [(eb0, GZ, bad, et0), (eb1, GZ, None, et1)])
    mb, mt = malformed_estargz(entries(3, 2))
    add_raw_image(layout, "e-malformed", [(mb, GZ, None, mt)])
    z0, z1 = entries(2, 10), upper_entries()
    zb0, za0, zt0 = tl.zstd_chunked(z0, chunk=CHUNK)
    zb1, _, zt1 = tl.zstd_chunked(z1, chunk=CHUNK, digests="file")
    add_raw_image(layout, "z", [(zb0, ZST, za0, zt0), (zb1, ZST, None, zt1)])
    badsum = dict(za0, **{tl.ZCHUNKED_CHECKSUM: "sha256:" + "1" * 64})
    add_raw_image(layout, "z-bad", [(zb0, ZST, badsum, zt0), (zb1, ZST, None, zt1)])
    # umoci 0.4.7 cannot unpack zstd: the reference of "z" is its tars as gzip.
    add_raw_image(layout, "z-ref", [(gzip.compress(zt0, mtime=0), GZ, None, zt0),
                                    (gzip.compress(zt1, mtime=0), GZ, None, zt1)])
    for repo, tag in (("toc/e", "e"), ("toc/e-bad", "e-bad"), ("toc/e-malformed", "e-malformed"),
                      ("toc/z", "z"), ("toc/z-bad", "z-bad")):
        ecrclient.push_layout(emulator, layout, repo, tag)
    return {"emu": emulator, "layout": layout}


@pytest.fixture
def mount(images, tmp_path):
    with mounts(images["emu"], tmp_path) as make:
        yield make


def state(m, repo, tag):
    return os.getxattr(m.repo(repo, tag + "@rootfs"), "user.ecr.rootfs_state").decode()


def sizes(layout, tag):
    return [l["size"] for l in manifest(layout, tag)[1]["layers"]]


def gets(emu, repo):
    return [e for e in emu.log() if e.get("op") == "BlobGet" and e.get("repo") == repo]


def first_look(m, emu, repo, tag):
    """ls -R, the state, one small file: what it downloaded."""
    emu.reset_log()
    root = m.repo(repo, tag + "@rootfs")
    r = subprocess.run(["ls", "-R", root], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    st = state(m, repo, tag)
    data = open(os.path.join(root, "etc/hello"), "rb").read()
    return root, st, data, gets(emu, repo)


def strip(t):
    return {p: {k: v for k, v in r.items() if k != "group"} for p, r in t.items()}


@pytest.mark.parametrize("repo,tag,ref,source", [("toc/e", "e", "e", "estargz"),
                                                 ("toc/z", "z", "z-ref", "zstd:chunked")])
def test_toc_image_matches_unpack(images, mount, tmp_path, repo, tag, ref, source):
    emu, layout = images["emu"], images["layout"]
    m = mount()
    root, st, data, g = first_look(m, emu, repo, tag)
    assert st == f"ready ({source})"
    assert data == b"replaced\n"
    # Only ranged reads of the tails, the TOCs and one chunk: no layer whole.
    total = sum(sizes(layout, tag))
    assert g and all(e["range"] for e in g), g
    assert sum(e["bytes_out"] for e in g) < total * 0.4, (g, total)
    check_against_umoci(root, layout, ref, tmp_path)
    assert sorted(os.listdir(os.path.join(root, "deep"))) == ["new"]
    assert os.getxattr(os.path.join(root, "etc/xa"), "user.note") == b"v%d" % (1 if tag == "e" else 2)
    stats = json.load(open(m.path(".ecrfs", "stats")))["rootfs"]
    assert stats["index_from_sources"] == 2 and stats["index_builds"] == 0


@pytest.mark.parametrize("repo,tag,good,want", [
    ("toc/e-bad", "e-bad", ("toc/e", "e"), "ready (built, estargz)"),
    ("toc/z-bad", "z-bad", ("toc/z", "z"), "ready (built, zstd:chunked)")])
def test_wrong_toc_digest_falls_back_to_build(images, mount, repo, tag, good, want):
    """The same blobs with a wrong digest annotation on the first layer: its
    index is built by streaming it, and the tree equals the TOC's."""
    m = mount()
    root, st, _, g = first_look(m, images["emu"], repo, tag)
    assert st == want
    # The first layer is downloaded once (its tail, read for the footer,
    # is not fetched again by the build), the second read by range.
    s0, s1 = sizes(images["layout"], tag)
    assert s0 * 0.9 <= sum(e["bytes_out"] for e in g) <= s0 + s1, (g, s0, s1)
    assert strip(walk(root)) == strip(walk(m.repo(good[0], good[1] + "@rootfs")))
    assert "index from" in m.logtext() and "dropped" in m.logtext()


def test_malformed_toc_falls_back_to_build(images, mount, tmp_path):
    m = mount()
    root, st, _, _ = first_look(m, images["emu"], "toc/e-malformed", "e-malformed")
    assert st == "ready (built)"
    check_against_umoci(root, images["layout"], "e-malformed", tmp_path)


def test_strict_takes_only_annotated_tocs(images, mount):
    """verify=strict: the annotated eStargz layer is read by range from its
    TOC; the unannotated one is built (its whole blob checked first)."""
    emu, layout = images["emu"], images["layout"]
    m = mount(opts="verify=strict")
    root, st, data, g = first_look(m, emu, "toc/e", "e")
    assert st == "ready (estargz, built)"
    s0, s1 = sizes(layout, "e")
    assert data == b"replaced\n"
    # Layer 1 whole, layer 0 far from whole.
    assert s1 <= sum(e["bytes_out"] for e in g) < s1 + s0 * 0.4, (g, s0, s1)
    multi = dict((e["name"], d) for e, d in entries(1, 10))["data/multi"]
    assert open(os.path.join(root, "data/multi"), "rb").read() == multi
    mz = mount(opts="verify=strict", name="z")
    assert first_look(mz, emu, "toc/z", "z")[1] == "ready (zstd:chunked, built)"


@pytest.fixture(scope="module")
def skopeo_zc(emulator, umoci_image, tmp_path_factory):
    """The umoci image (setuid, capabilities, devices, hardlinks, three
    layers) converted to zstd:chunked by skopeo (containers/image: the
    manifest annotations, the 40-byte footer, chunks of files)."""
    out = str(tmp_path_factory.mktemp("zc")) + "/layout"
    r = subprocess.run(["skopeo", "copy", "--dest-compress-format", "zstd:chunked",
                        f"oci:{umoci_image}:v1", f"oci:{out}:v1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    layers = manifest(out, "v1")[1]["layers"]
    assert all(l["mediaType"].endswith("+zstd") and any("zstd-chunked.manifest-position" in k
                                                         for k in l.get("annotations", {}))
               for l in layers), layers
    ecrclient.push_layout(emulator, out, "toc/skopeo", "v1")
    return out


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
def test_skopeo_zstd_chunked_matches_unpack(images, skopeo_zc, umoci_image, mount, tmp_path):
    emu = images["emu"]
    m = mount()
    emu.reset_log()
    root = m.repo("toc/skopeo", "v1@rootfs")
    r = subprocess.run(["ls", "-R", root], capture_output=True, timeout=300)
    assert r.returncode == 0, m.logtext()[-3000:]
    assert state(m, "toc/skopeo", "v1") == "ready (zstd:chunked)"
    g = gets(emu, "toc/skopeo")
    assert all(e["range"] for e in g) and sum(e["bytes_out"] for e in g) < sum(sizes(skopeo_zc, "v1"))
    # The reference: umoci unpack of the image skopeo converted.
    check_against_umoci(root, umoci_image, "v1", tmp_path)


def test_plain_layer_downloaded_once(images, mount):
    """A plain gzip layer of more than 32 MiB (readahead in pieces of
    several chunks): the eStargz probe reads its tail, the build streams it,
    and no byte is downloaded twice."""
    emu, layout = images["emu"], images["layout"]
    rnd = random.Random(5)
    tar = core.tar_layer([D("big"), *[F(f"big/f{i}", rnd.randbytes(6 << 20)) for i in range(6)]],
                         tarfile.GNU_FORMAT)
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    add_raw_image(layout, "plain", [(blob, GZ, None, tar)])
    ecrclient.push_layout(emu, layout, "toc/plain", "plain")
    m = mount()
    root, st, _, g = first_look_ls(m, emu, "toc/plain", "plain")
    assert st == "ready (built)"
    assert sum(e["bytes_out"] for e in g) == len(blob), (g, len(blob))


def first_look_ls(m, emu, repo, tag):
    emu.reset_log()
    root = m.repo(repo, tag + "@rootfs")
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    return root, state(m, repo, tag), None, gets(emu, repo)
