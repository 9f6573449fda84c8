"""Index files in cache_dir/index/ are part of cache_size: counted in
`.ecrfs/stats`, and evicted only after the blobs, least recently used
first, never while a mounted view uses them."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import ecrclient  # noqa: E402
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
from test_rootfs_core import umoci, add_image, tar_layer, manifest, D, F  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
]

MIB = 1 << 20


@pytest.fixture
def mount(emulator, tmp_path):
    with mounts(emulator, tmp_path) as make:
        yield make


def layer(name, mib, files=40):
    """A layer of `files` small files (so its index has some size) and one
    incompressible file of `mib` MiB."""
    ents = [D(name), F(f"{name}/big", os.urandom(mib * MIB))]
    ents += [F(f"{name}/f{i:04d}-" + "x" * 60, b"%d\n" % i) for i in range(files)]
    return tar_layer(ents, core.tarfile.GNU_FORMAT)


def stats(m):
    return json.load(open(m.path(".ecrfs", "stats")))


def index_files(cache_dir):
    d = os.path.join(cache_dir, "index")
    return {n: os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if not n.startswith(".")}


def blob_files(cache_dir):
    d = os.path.join(cache_dir, "blobs", "sha256")
    return {n for n in os.listdir(d) if not n.endswith(".sum")}


def ls_r(root):
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)


def test_index_files_counted_and_evicted_after_blobs(emulator, mount, tmp_path):
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    add_image(layout, "a", [(layer("a0", 3), "gzip"), (layer("a1", 3), "gzip")])
    add_image(layout, "b", [(layer("b0", 3), "gzip"), (layer("b1", 3), "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/budget", "a")
    ecrclient.push_layout(emulator, layout, "rfs/budget", "b")
    la = [l["digest"][7:] for l in manifest(layout, "a")[1]["layers"]]
    lb = [l["digest"][7:] for l in manifest(layout, "b")[1]["layers"]]

    # 10 MiB: the four 3 MiB blobs cannot all stay; the indexes can.
    m = mount(name="one", opts="cache_size=10M")
    ls_r(m.repo("rfs/budget", "a@rootfs"))
    ls_r(m.repo("rfs/budget", "b@rootfs"))
    ix = index_files(m.cache_dir)
    assert set(la + lb) <= set(ix), ix
    st = stats(m)
    assert st["rootfs"]["index_bytes"] == sum(ix.values()) > 0
    assert st["cache"]["index_bytes"] == st["rootfs"]["index_bytes"]
    assert st["cache"]["bytes_total"] <= 10 * MIB
    assert st["cache"]["bytes_total"] >= st["rootfs"]["index_bytes"] + 2 * 3 * MIB
    # Blobs made the room: one of a's went, its indexes stayed (in use).
    assert set(la) - blob_files(m.cache_dir) and set(lb) <= blob_files(m.cache_dir)
    assert st["cache"]["evictions"] >= 1 and st["rootfs"]["index_evictions"] == 0
    # a still reads through its indexes (spans by ranged GETs).
    assert open(m.repo("rfs/budget", "a@rootfs", "a0", "f0003-" + "x" * 60)).read() == "3\n"
    m.stop()

    # A remount with a cap below the index files: every blob goes first,
    # then the least recently used indexes (a's) until the rest fits.
    b_bytes = sum(ix[h] for h in lb)
    cap = b_bytes + min(ix[h] for h in la) // 2
    m2 = mount(name="two", opts=f"cache_size={cap}", cache_dir=m.cache_dir)
    left = index_files(m2.cache_dir)
    assert not blob_files(m2.cache_dir)
    assert set(lb) <= set(left) and not set(la) & set(left), (left, la, lb)
    st = stats(m2)
    assert st["cache"]["bytes_total"] <= cap and st["rootfs"]["index_bytes"] == sum(left.values())
    # b is still indexed (no download to list it); a is rebuilt on demand.
    emulator.reset_log()
    ls_r(m2.repo("rfs/budget", "b@rootfs"))
    assert emulator.count("BlobGet") == 0
    ls_r(m2.repo("rfs/budget", "a@rootfs"))
    assert emulator.count("BlobGet") > 0
    assert stats(m2)["rootfs"]["index_builds"] == 2
