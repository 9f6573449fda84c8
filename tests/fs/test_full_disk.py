"""A full cache disk (DESIGN §11): the cache directory on a tmpfs smaller
than the blobs read. Reads stream from the network with the right bytes
(sha256sum of the source), the mount keeps serving, nothing half-written
is served later, and once space comes back the same mount caches again."""
import errno
import json
import os
import random
import subprocess
import time

import pytest

import ecrclient
import layouts
from emu import Emulator
from tmpfs import fill, resize, small_tmpfs

MiB = 1 << 20


@pytest.fixture
def own_emu(tmp_path):
    emu = Emulator(state_dir=str(tmp_path / "emu"))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def image(own_emu, tmp_path):
    """Two images, each with one incompressible 24 MiB layer."""
    layout = str(tmp_path / "layout")
    imgs = {}
    for tag in ("a", "b"):
        imgs[tag] = layouts.make_image(layout, tag, {f"/{tag}.bin": os.urandom(24 * MiB)})
        ecrclient.push_layout(own_emu, layout, "full/read", tag)
    src = {t: os.path.join(layout, "blobs", "sha256", i["layers"][0][7:])
           for t, i in imgs.items()}
    return {"layout": layout, "imgs": imgs, "src": src}


def sha256sum(path):
    r = subprocess.run(["sha256sum", path], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


def drop_pages(path):
    """Drops the file's clean pages from the kernel's cache, so the next
    read reaches ecrfs (keep_cache would answer it otherwise)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def stats(m):
    with open(m.path(".ecrfs", "stats")) as f:
        return json.load(f)


def layer_path(m, image, tag):
    return m.repo("full/read", tag, "blobs", "sha256", image["imgs"][tag]["layers"][0][7:])


def test_reads_larger_than_the_disk_stream(own_emu, image, mount, tmp_path):
    emu = own_emu
    with small_tmpfs(str(tmp_path / "small"), "4m") as small:
        cache = os.path.join(small, "cache")
        m = mount("deadline=5", cache_dir=cache, emu=emu)
        p = layer_path(m, image, "a")
        want = sha256sum(image["src"]["a"])
        # Twice: the second read finds no more in the cache than the first.
        for i in range(2):
            t0 = time.monotonic()
            assert sha256sum(p) == want
            print(f"full disk: sha256sum of a 24 MiB layer through a 4 MiB cache_dir "
                  f"(read {i + 1}): right bytes in {time.monotonic() - t0:.2f} s")
            drop_pages(p)
        # Random pieces, chunk edges included, against the source's bytes.
        with open(image["src"]["a"], "rb") as f:
            src = f.read()
        rnd = random.Random(7)
        offs = [0, MiB - 1, MiB, 5 * MiB + 4095, len(src) - 1] + \
            [rnd.randrange(len(src)) for _ in range(20)]
        fd = os.open(p, os.O_RDONLY)
        try:
            for off in offs:
                assert os.pread(fd, 70000, off) == src[off:off + 70000], off
        finally:
            os.close(fd)
        st = stats(m)
        assert st["cache"]["disk_full"] == 1, st["cache"]
        assert "is full" in m.logtext()
        # The mount keeps serving: listings and another image.
        assert sorted(os.listdir(m.repo("full/read"))) == ["a", "b"]
        assert sha256sum(layer_path(m, image, "b")) == sha256sum(image["src"]["b"])

        # Space comes back: the same mount stores blobs in its cache again.
        resize(small, "128m")
        drop_pages(p)
        t0 = time.monotonic()
        assert sha256sum(p) == want
        print(f"full disk: space back, the same read in {time.monotonic() - t0:.2f} s, "
              f"now cached")
        assert os.path.exists(os.path.join(cache, "blobs", "sha256",
                                           image["imgs"]["a"]["layers"][0][7:]))
        # ... and says so (its readahead is back on).
        assert stats(m)["cache"]["disk_full"] == 0
        assert "has room again" in m.logtext()
        assert m.stop() == 0


def test_nothing_half_written_is_served(own_emu, image, mount, tmp_path):
    """Chunks whose store hit ENOSPC are never served: after the full-disk
    reads, a remount with the registry black-holed answers each chunk with
    the right bytes (stored whole) or EIO (not stored), never other bytes."""
    emu = own_emu
    with small_tmpfs(str(tmp_path / "small"), "16m") as small:
        cache = os.path.join(small, "cache")
        m = mount("deadline=3", name="m1", cache_dir=cache, emu=emu)
        p = layer_path(m, image, "a")
        os.listdir(m.repo("full/read", "b", "blobs", "sha256"))  # b's manifest cached
        # Leave about 5 MiB: some chunks fit, then ENOSPC mid-blob.
        filler = fill(small, leave=5 * MiB)
        want = sha256sum(image["src"]["a"])
        assert sha256sum(p) == want
        assert stats(m)["cache"]["disk_full"] == 1
        assert m.stop() == 0

        # The disk is still full: the next mount comes up all the same.
        m = mount("deadline=3", name="m2", cache_dir=cache, emu=emu)
        p = layer_path(m, image, "a")
        with open(image["src"]["a"], "rb") as f:
            src = f.read()
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        emu.fault(kind="blackhole", count=0, timeout_ms=60000)
        try:
            served = 0
            try:
                for off in range(0, len(src), MiB):
                    try:
                        got = os.pread(fd, MiB, off)
                    except OSError as e:
                        assert e.errno == errno.EIO, e
                        continue
                    assert got == src[off:off + MiB], f"wrong bytes at {off}"
                    served += 1
            finally:
                os.close(fd)
        finally:
            emu.clear_faults()
        print(f"full disk: {served} of {len(src) // MiB} chunks kept in the cache")
        assert 0 < served < len(src) // MiB
        os.unlink(filler)


def test_rootfs_on_a_full_disk(own_emu, mount, tmp_path):
    """TAG@rootfs with no room for its layer index: the index stays in
    memory (one log line), the files read right."""
    emu = own_emu
    layout = str(tmp_path / "layout")
    files = {"/etc/os-release": b"ID=full\n", "/data/big.bin": os.urandom(6 * MiB)}
    layouts.make_image(layout, "r1", files)
    ecrclient.push_layout(emu, layout, "full/rootfs", "r1")
    with small_tmpfs(str(tmp_path / "small"), "4m") as small:
        cache = os.path.join(small, "cache")
        m = mount("deadline=5", cache_dir=cache, emu=emu)
        root = m.repo("full/rootfs", "r1@rootfs")
        os.listdir(m.repo("full/rootfs", "r1"))
        fill(small)  # not a byte left
        assert sorted(os.listdir(root)) == ["data", "etc"]
        with open(os.path.join(root, "etc", "os-release"), "rb") as f:
            assert f.read() == files["/etc/os-release"]
        with open(os.path.join(root, "data", "big.bin"), "rb") as f:
            assert f.read() == files["/data/big.bin"]
        assert "cannot write index" in m.logtext()
        assert m.stop() == 0


def test_wrong_bytes_fail_even_when_streamed(own_emu, image, mount, tmp_path):
    """With nowhere to cache, a whole-file read is still hashed: bytes the
    registry corrupted end in EIO, twice, never served as the layer."""
    emu = own_emu
    digest = image["imgs"]["a"]["layers"][0]
    emu.corrupt_blob(digest, offset=10 * MiB + 5, length=16)
    with small_tmpfs(str(tmp_path / "small"), "4m") as small:
        m = mount("deadline=5", cache_dir=os.path.join(small, "cache"), emu=emu)
        p = layer_path(m, image, "a")
        for _ in range(2):
            with pytest.raises(OSError) as e:
                with open(p, "rb") as f:
                    while f.read(1 << 20):
                        pass
            assert e.value.errno == errno.EIO
            drop_pages(p)
        assert "is full" in m.logtext()
        assert "do not hash" in m.logtext() or "hashes to" in m.logtext()
        assert m.stop() == 0
