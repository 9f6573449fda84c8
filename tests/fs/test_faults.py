"""Faults on the way: the reader gets the right bytes or EIO, never wrong
bytes on a whole-file read."""
import errno
import hashlib
import os

import pytest

import ecrclient
import layouts
from conftest import sha256_file


@pytest.fixture(scope="module")
def faulty(seeded, tmp_path_factory):
    """A repository of its own (unique layer bytes) for fault tests."""
    emu = seeded["emu"]
    layout = str(tmp_path_factory.mktemp("faulty") / "layout")
    imgs = {}
    for tag in ["t1", "t2", "t3", "t4", "t5", "bad"]:
        imgs[tag] = layouts.make_image(layout, tag, {"/data.bin": os.urandom(3 << 20),
                                                     "/name": tag.encode()})
        ecrclient.push_layout(emu, layout, "faulty", tag)
    return imgs


def big_layer(m, imgs, tag):
    d = m.repo("faulty", tag, "blobs", "sha256")
    layer = max(imgs[tag]["layers"], key=lambda x: os.path.getsize(os.path.join(d, x[7:])))
    return os.path.join(d, layer[7:]), layer[7:]


def read_all(p):
    with open(p, "rb") as f:
        return f.read()



def test_truncated_bodies_resume(emu, faulty, mount):
    m = mount()
    p, hexd = big_layer(m, faulty, "t1")
    emu.fault(op="BlobGet", kind="truncate", keep_bytes=100000, count=3)
    assert hashlib.sha256(read_all(p)).hexdigest() == hexd


def test_503_storm_gives_right_bytes_or_eio(emu, faulty, mount):
    m = mount()
    p, hexd = big_layer(m, faulty, "t2")
    emu.fault(op="BlobGet", kind="http503", count=0, probability=0.4, seed=7)
    try:
        data = read_all(p)
    except OSError as e:
        assert e.errno == errno.EIO
    else:
        assert hashlib.sha256(data).hexdigest() == hexd


def test_expired_url_is_renewed(emu, faulty, mount):
    m = mount()
    p, hexd = big_layer(m, faulty, "t3")
    emu.reset_log()
    emu.fault(op="BlobGet", kind="expired_url", count=1)
    assert hashlib.sha256(read_all(p)).hexdigest() == hexd
    assert emu.count("GetDownloadUrlForLayer") >= 2


def test_throttled_listing_and_manifest(emu, faulty, mount):
    m = mount()
    emu.fault(op="DescribeRepositories", kind="throttle", count=2)
    emu.fault(op="DescribeImages", kind="throttle", count=2)
    emu.fault(op="BatchGetImage", kind="http429", count=2)
    assert "t4" in os.listdir(m.repo("faulty"))
    p, hexd = big_layer(m, faulty, "t4")
    assert hashlib.sha256(read_all(p)).hexdigest() == hexd


def test_corrupted_blob_detected_by_full_read(emu, faulty, mount):
    m = mount()
    p, hexd = big_layer(m, faulty, "bad")
    emu.corrupt_blob("sha256:" + hexd, offset=1 << 20, length=16)
    with pytest.raises(OSError) as e:
        read_all(p)
    assert e.value.errno == errno.EIO
    # and again (not served from a poisoned cache)
    with pytest.raises(OSError) as e:
        read_all(p)
    assert e.value.errno == errno.EIO
    assert "do not hash" in m.logtext() or "hashes to" in m.logtext()


def test_verify_strict_refuses_any_byte_of_a_bad_blob(emu, faulty, seeded, mount, tmp_path):
    # a separate image with its own corrupted layer
    layout = str(tmp_path / "layout")
    info = layouts.make_image(layout, "s1", {"/x": os.urandom(2 << 20)})
    ecrclient.push_layout(emu, layout, "faulty", "s1")
    layer = info["layers"][0]
    emu.corrupt_blob(layer, offset=10, length=4)
    m = mount("verify=strict")
    p = m.repo("faulty", "s1", "blobs", "sha256", layer[7:])
    with open(p, "rb") as f:
        with pytest.raises(OSError) as e:
            f.read(100)  # the first bytes are intact, yet refused
        assert e.value.errno == errno.EIO
    # good blobs read fine under verify=strict
    p5, hexd = big_layer(m, faulty, "t5")
    assert sha256_file(p5) == hexd


def read_out_of_order(p):
    """A whole-file read whose pieces arrive out of order (as async reads on
    several FUSE threads can): [0,1M), [2M,end-4K), [1M,2M), then the end."""
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        size = os.fstat(fd).st_size
        assert size > (2 << 20) + 4096
        tail = (size - 4096) // 4096 * 4096  # page-aligned: nothing of it is in the page cache
        parts = {}
        for a, b in [(0, 1 << 20), (2 << 20, tail), (1 << 20, 2 << 20), (tail, size)]:
            parts[a] = os.pread(fd, b - a, a)
            assert len(parts[a]) == b - a
        return b"".join(parts[a] for a in sorted(parts))
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tiny tmpfs")
def test_out_of_order_whole_read_verified_with_full_cache_disk(emu, faulty, mount, tmp_path):
    """Full cache disk (streaming, no seal) and reads out of order: the read
    that reaches the end still verifies the whole blob."""
    import subprocess
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(tiny)], check=True)
    try:
        m = mount(cache_dir=str(tiny / "cache"))
        good, hexg = big_layer(m, faulty, "t4")
        assert hashlib.sha256(read_out_of_order(good)).hexdigest() == hexg
        p, hexd = big_layer(m, faulty, "t3")
        emu.corrupt_blob("sha256:" + hexd, offset=(2 << 20) + 100, length=16)
        with pytest.raises(OSError) as e:
            read_out_of_order(p)
        assert e.value.errno == errno.EIO
        assert "is full" in m.logtext()
        assert "hashes to" in m.logtext()
        m.stop()
    finally:
        subprocess.run(["umount", "-l", str(tiny)], capture_output=True)


def test_whole_read_verified_when_only_the_tail_was_cached(emu, mount, tmp_path):
    """The cache holds only the blob's last chunk (an earlier tail read; the
    rest does not fit under cache_size), the registry then serves corrupted
    bytes: a whole-file read in order, whose last read is a cache hit, still
    ends in EIO, never in wrong bytes."""
    layout = str(tmp_path / "layout")
    info = layouts.make_image(layout, "tail", {"/x": os.urandom(3 << 20)})
    ecrclient.push_layout(emu, layout, "faulty-tail", "tail")
    layer = info["layers"][0]
    m = mount("cache_size=512K")
    p = m.repo("faulty-tail", "tail", "blobs", "sha256", layer[7:])
    size = os.path.getsize(p)
    last = size // (1 << 20) * (1 << 20)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # reads as issued
        os.pread(fd, size - last, last)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        emu.corrupt_blob(layer, offset=(1 << 20) + 100, length=16)
        data = bytearray()
        with pytest.raises(OSError) as e:
            while len(data) < size:
                data += os.pread(fd, min(128 << 10, size - len(data)), len(data))
            assert hashlib.sha256(data).hexdigest() == layer[7:], "wrong bytes, no EIO"
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
