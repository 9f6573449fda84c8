"""File descriptors opened for writing inside a pending tag: a read on one
is refused cleanly (the daemon keeps running), and the push still lands."""
import errno
import os

from conftest import run, single_image, sync_dir, tag_digest


def test_read_on_write_descriptor_is_refused(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/r": b"r\n"})
    m = mount()
    repo = "push/fdrules"
    os.makedirs(m.repo(repo, "v1"))
    with open(os.path.join(lay, "oci-layout"), "rb") as f:
        body = f.read()
    fd = os.open(m.repo(repo, "v1", "oci-layout"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, body) == len(body)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            os.read(fd, 16)
            raise AssertionError("read on a write descriptor succeeded")
        except OSError as e:
            assert e.errno == errno.EBADF
    finally:
        os.close(fd)
    # the daemon is alive and the rest of the layout completes the push
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
