"""A small tmpfs for full-disk tests (we run as root): the cache directory
lives on it, and the test grows it when space should come back."""
import contextlib
import os
import subprocess

import pytest


def _mount(args):
    r = subprocess.run(["mount"] + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@contextlib.contextmanager
def small_tmpfs(path, size):
    """A tmpfs of size (mount's syntax: "6m") at path; unmounted at the end.
    Skips the test where mounting is not allowed (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    os.makedirs(path, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path])
    try:
        yield path
    finally:
        r = subprocess.run(["umount", path], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def resize(path, size):
    """Space comes back (or goes): the same tmpfs, a new size."""
    _mount(["-o", f"remount,size={size}", path])


def fill(path, leave=0):
    """Takes all of path's filesystem but `leave` bytes with one file;
    returns its path (remove it to give the space back)."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    p = os.path.join(path, "filler")
    with open(p, "wb") as f:
        want = max(free - leave, 0)
        while want > 0:
            n = min(want, 1 << 20)
            try:
                f.write(b"\0" * n)
                f.flush()
            except OSError:
                break
            want -= n
    return p
