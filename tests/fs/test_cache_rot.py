"""Bytes at rest are checked: a byte flipped in a cached blob file is
never served. After a remount the rotten chunk is caught by its checksum:
fetched again when the registry answers, EIO when it does not."""
import errno
import os

import pytest

import ecrclient
import layouts
from conftest import sha256_file
from emu import Emulator

CHUNK = 1 << 20


@pytest.fixture
def own_emu(tmp_path):
    emu = Emulator(state_dir=str(tmp_path / "emu"))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def _flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def _read_at(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def test_rotten_chunk_refetched_or_eio(own_emu, mount, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    img = layouts.make_image(layout, "r", {"/r": os.urandom(3 << 20)})
    ecrclient.push_layout(emu, layout, "rot/app", "r")
    layer = img["layers"][0][7:]
    cache = str(tmp_path / "cache")
    cached = os.path.join(cache, "blobs", "sha256", layer)

    m = mount("deadline=5", name="m1", cache_dir=cache, emu=emu)
    path = m.repo("rot/app", "r", "blobs", "sha256", layer)
    assert sha256_file(path) == layer
    good = _read_at(path, CHUNK + 4000, 64)
    assert m.stop() == 0
    assert os.path.exists(cached) and os.path.exists(cached + ".sum")

    # A flipped byte in the middle chunk: caught, fetched again, right bytes.
    _flip(cached, CHUNK + 4000 + 10)
    emu.reset_log()
    m = mount("deadline=5", name="m2", cache_dir=cache, emu=emu)
    path = m.repo("rot/app", "r", "blobs", "sha256", layer)
    assert _read_at(path, CHUNK + 4000, 64) == good
    assert sha256_file(path) == layer
    assert emu.count("BlobGet") >= 1
    assert m.stop() == 0
    assert m.logtext().count("does not match its checksum") == 1

    # Again, with the registry gone: EIO, never the flipped byte.
    assert os.path.exists(cached)
    _flip(cached, CHUNK + 4000 + 10)
    emu.stop()
    m = mount("deadline=5", name="m3", cache_dir=cache, emu=emu)
    path = m.repo("rot/app", "r", "blobs", "sha256", layer)
    with pytest.raises(OSError) as e:
        _read_at(path, CHUNK + 4000, 64)
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError) as e:
        sha256_file(path)
    assert e.value.errno == errno.EIO
    assert m.stop() == 0
    assert "does not match its checksum" in m.logtext()
