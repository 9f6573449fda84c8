"""No network: what is cached keeps working (also after a remount), what is
not fails with EIO within the deadline instead of hanging."""
import errno
import os

import pytest

import ecrclient
import layouts
from conftest import sha256_file
from emu import Emulator


@pytest.fixture
def own_emu(tmp_path):
    emu = Emulator(state_dir=str(tmp_path / "emu"))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def test_offline_cached_reads_and_remount(own_emu, mount, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    a = layouts.make_image(layout, "a", {"/a": os.urandom(2 << 20)})
    b = layouts.make_image(layout, "b", {"/b": os.urandom(2 << 20)})
    ecrclient.push_layout(emu, layout, "off/line", "a")
    ecrclient.push_layout(emu, layout, "off/line", "b")
    cache = str(tmp_path / "cache")
    m = mount("deadline=5,tag_ttl=1,neg_ttl=1", name="m1", cache_dir=cache, emu=emu)
    la = a["layers"][0][7:]
    pa = m.repo("off/line", "a", "blobs", "sha256", la)
    assert sha256_file(pa) == la
    # b's manifest is known (listing), its layer never read
    lb = b["layers"][0][7:]
    pb = m.repo("off/line", "b", "blobs", "sha256", lb)
    assert os.path.getsize(pb) > 0

    emu.stop()  # the network is gone
    # cached: still served, also after the tag TTL expired
    assert sha256_file(pa) == la
    assert sorted(os.listdir(m.repo("off/line"))) == ["a", "b"]
    # not cached: EIO, promptly
    with pytest.raises(OSError) as e:
        with open(pb, "rb") as f:
            f.read()
    assert e.value.errno == errno.EIO
    assert m.stop() == 0

    # a remount with no network serves what the cache holds
    m2 = mount("deadline=5", name="m2", cache_dir=cache, emu=emu)
    assert os.listdir(m2.mnt) == [".ecrfs", "111111111111"] or \
        sorted(os.listdir(m2.mnt)) == [".ecrfs", "111111111111"]
    assert sorted(os.listdir(m2.repo("off/line"))) == ["a", "b"]
    assert sha256_file(m2.repo("off/line", "a", "blobs", "sha256", la)) == la
    with pytest.raises(OSError) as e:
        with open(m2.repo("off/line", "b", "blobs", "sha256", lb), "rb") as f:
            f.read()
    assert e.value.errno == errno.EIO
