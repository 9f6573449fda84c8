"""TAG@rootfs on images of other shapes: an index with linux/arm/v7,
artifacts (no rootfs view), a layer that is not a tar archive, and what
`diff -r` of two tags sharing their base layers downloads (the emulator's
request log)."""
import errno
import gzip
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import ecrclient  # noqa: E402
import layouts  # noqa: E402
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
from test_rootfs_core import umoci, add_image, tar_layer, manifest, write_blob, D, F  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
]

GNU = core.tarfile.GNU_FORMAT


@pytest.fixture
def mount(emulator, tmp_path):
    with mounts(emulator, tmp_path) as make:
        yield make


def blob_bytes(emu):
    return sum(e.get("bytes_out") or 0 for e in emu.log() if e.get("op") == "BlobGet")


def views_of(path):
    return os.getxattr(path, "user.ecr.views").decode().split(",")


def test_arm_v7_platform(emulator, mount, tmp_path):
    """linux/arm with variant v7 is linux_arm_v7/; attestations are left out."""
    layout = str(tmp_path / "layout")
    descs = []
    for os_name, arch, var in (("linux", "amd64", None), ("linux", "arm", "v7")):
        sub = f"p-{arch}{var or ''}"
        layouts.make_image(layout, sub, {"/etc/platform": f"{arch}{var or ''}\n".encode()},
                           os_name=os_name, arch=arch)
        d = layouts.descriptor(layout, sub)
        plat = {"os": os_name, "architecture": arch}
        if var:
            plat["variant"] = var
        descs.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                      "platform": plat})
    descs.append(dict(descs[0], platform={"os": "unknown", "architecture": "unknown"}))
    data = json.dumps({"schemaVersion": 2, "mediaType": layouts.INDEX,
                       "manifests": descs}).encode()
    idx = json.load(open(os.path.join(layout, "index.json")))
    idx["manifests"].append({"mediaType": layouts.INDEX, "digest": write_blob(layout, data),
                             "size": len(data), "annotations": {layouts.REF: "multi"}})
    json.dump(idx, open(os.path.join(layout, "index.json"), "w"))
    ecrclient.push_layout(emulator, layout, "rfs/armv7", "multi")
    m = mount()
    root = m.repo("rfs/armv7", "multi@rootfs")
    assert sorted(os.listdir(root)) == ["linux_amd64", "linux_arm_v7"]
    assert open(os.path.join(root, "linux_arm_v7/etc/platform")).read() == "armv7\n"
    assert open(os.path.join(root, "linux_amd64/etc/platform")).read() == "amd64\n"
    assert os.listdir(m.repo("rfs/armv7", "multi@layers", "linux_arm_v7")) == ["0"]


def push_artifact(emu, layout, tag, config_type, layer_type, layer, artifact_type=None):
    cfg = b"{}" if config_type.endswith("empty.v1+json") else json.dumps(
        {"name": "chart", "version": "1.0.0", "apiVersion": "v2"}).encode()
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": config_type, "digest": write_blob(layout, cfg),
                    "size": len(cfg)},
         "layers": [{"mediaType": layer_type, "digest": write_blob(layout, layer),
                     "size": len(layer)}]}
    if artifact_type:
        m["artifactType"] = artifact_type
    raw = json.dumps(m).encode()
    idx = json.load(open(os.path.join(layout, "index.json")))
    idx["manifests"] = idx.get("manifests") or []
    idx["manifests"].append({"mediaType": m["mediaType"], "digest": write_blob(layout, raw),
                             "size": len(raw), "annotations": {layouts.REF: tag}})
    json.dump(idx, open(os.path.join(layout, "index.json"), "w"))
    ecrclient.push_layout(emu, layout, "rfs/art", tag)


def test_artifacts_have_no_rootfs(emulator, mount, tmp_path):
    """A Helm chart (its layer is a real .tgz) and an OCI 1.1 artifact (an
    artifactType, the empty config) have no files to show: TAG@rootfs and
    TAG@layers are ENOENT and user.ecr.views leaves them out; nothing is
    downloaded. An image in the same repository keeps both views."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    chart = gzip.compress(tar_layer([D("chart"), F("chart/Chart.yaml", b"name: chart\n")], GNU))
    push_artifact(emulator, layout, "chart", "application/vnd.cncf.helm.config.v1+json",
                  "application/vnd.cncf.helm.chart.content.v1.tar+gzip", chart)
    push_artifact(emulator, layout, "sbom", "application/vnd.oci.empty.v1+json",
                  "application/spdx+json", b'{"spdxVersion": "SPDX-2.3"}',
                  artifact_type="application/spdx+json")
    add_image(layout, "img", [(tar_layer([D("etc"), F("etc/x", b"x\n")], GNU), "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/art", "img")
    m = mount()
    emulator.reset_log()
    for tag in ("chart", "sbom"):
        for view in ("@rootfs", "@layers"):
            with pytest.raises(OSError) as e:
                os.listdir(m.repo("rfs/art", tag + view))
            assert e.value.errno == errno.ENOENT, (tag, view)
        views = views_of(m.repo("rfs/art", tag))
        assert "rootfs" not in views and "layers" not in views and "referrers" in views
    assert emulator.count("BlobGet") == 0
    assert os.listdir(m.repo("rfs/art", "img@rootfs")) == ["etc"]
    assert {"rootfs", "layers"} <= set(views_of(m.repo("rfs/art", "img")))


def test_layer_not_a_tar(emulator, mount, tmp_path):
    """An image whose second layer is random bytes: EIO, the state names the
    layer and its media type, one log line; a retry downloads nothing."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    good = tar_layer([D("etc"), F("etc/ok", b"ok\n")], GNU)
    add_image(layout, "bad", [(good, "gzip"), (b"not a tar\n" + os.urandom(200000), "tar")])
    ecrclient.push_layout(emulator, layout, "rfs/nottar", "bad")
    layers = manifest(layout, "bad")[1]["layers"]
    m = mount()
    root = m.repo("rfs/nottar", "bad@rootfs")
    emulator.reset_log()
    with pytest.raises(OSError) as e:
        os.listdir(root)
    assert e.value.errno == errno.EIO
    # The whole bad layer was downloaded (its digest checked before the verdict).
    assert blob_bytes(emulator) == sum(l["size"] for l in layers)
    state = os.getxattr(root, "user.ecr.rootfs_state").decode()
    assert state == ("error: layer 1 is not a tar archive "
                     "(mediaType application/vnd.oci.image.layer.v1.tar)"), state
    emulator.reset_log()
    with pytest.raises(OSError) as e:
        os.listdir(root)
    assert e.value.errno == errno.EIO
    assert emulator.count("BlobGet") == 0
    lines = [l for l in m.logtext().splitlines() if "not a tar archive" in l]
    assert len(lines) == 1, lines
    assert layers[1]["digest"] in lines[0]
    idx = os.path.join(m.cache_dir, "index")
    assert os.path.exists(os.path.join(idx, layers[0]["digest"][7:]))
    assert not os.path.exists(os.path.join(idx, layers[1]["digest"][7:]))
    # The layer itself is still there as a blob.
    with open(m.repo("rfs/nottar", "bad", "blobs", "sha256", layers[1]["digest"][7:]), "rb") as f:
        assert f.read(10) == b"not a tar\n"


def test_diff_of_two_tags_downloads_each_layer_once(emulator, mount, tmp_path):
    """v1 and v2 share their two base layers: the first `diff -r` of their
    rootfs downloads each of the four distinct layers once (the shared ones
    are indexed once) and reads the files from the blob cache."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    base0 = tar_layer([D("usr"), F("usr/big", os.urandom(1 << 20)), F("usr/same", b"s\n")], GNU)
    base1 = tar_layer([D("etc"), F("etc/conf", b"a=1\n"), F("etc/keep", b"k\n")], GNU)
    top1 = tar_layer([D("app"), F("app/version", b"1\n"), F("app/only1", b"x\n")], GNU)
    top2 = tar_layer([D("app"), F("app/version", b"2\n"), F("etc/conf", b"a=2\n"),
                      F("app/.wh.gone", b"")], GNU)
    add_image(layout, "v1", [(base0, "gzip"), (base1, "gzip"), (top1, "gzip")])
    add_image(layout, "v2", [(base0, "gzip"), (base1, "gzip"), (top2, "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/diff", "v1")
    ecrclient.push_layout(emulator, layout, "rfs/diff", "v2")
    l1 = manifest(layout, "v1")[1]["layers"]
    l2 = manifest(layout, "v2")[1]["layers"]
    assert [l["digest"] for l in l1[:2]] == [l["digest"] for l in l2[:2]]
    distinct = {l["digest"]: l["size"] for l in l1 + l2}
    m = mount()
    emulator.reset_log()
    r = subprocess.run(["diff", "-r", m.repo("rfs/diff", "v1@rootfs"),
                        m.repo("rfs/diff", "v2@rootfs")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Only in " + m.repo("rfs/diff", "v1@rootfs", "app") + ": only1" in r.stdout
    assert "< a=1" in r.stdout and "> a=2" in r.stdout and "< 1" in r.stdout
    assert blob_bytes(emulator) == sum(distinct.values())
    stats = json.load(open(m.path(".ecrfs", "stats")))["rootfs"]
    assert stats["index_builds"] == len(distinct) == 4
    # The two images hold one copy of each shared index in memory.
    assert stats["images"] == 2 and stats["indexes_held"] == 4
    # Again: nothing more downloaded.
    emulator.reset_log()
    subprocess.run(["diff", "-r", m.repo("rfs/diff", "v1@rootfs"),
                    m.repo("rfs/diff", "v2@rootfs")], capture_output=True, timeout=300)
    assert emulator.count("BlobGet") == 0
