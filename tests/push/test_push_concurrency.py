"""LOOKUP, READDIR and GETATTR of a pending tag never wait for its commit:
the version's lock is not held over PutImage (doc/ARCHITECTURE.md, locks)."""
import os
import subprocess
import time

from conftest import run, single_image, sync_dir, tag_digest


def test_ls_pending_tag_while_putimage_is_slow(emulator, mount, layout_dir):
    repo = "push/slowput"
    emulator.aws("create-repository", "--repository-name", repo)
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(3000)})
    m = mount()
    tag = m.repo(repo, "v1")
    fid = emulator.fault(kind="delay", op="PutImage", repo=repo, delay_ms=15000)
    cp = subprocess.Popen(["cp", "-rT", lay, tag], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        # wait until the emulator holds the PutImage (the fault fired at its start)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and cp.poll() is None:
            if any(f["id"] == fid and f["fired"] for f in emulator.faults()):
                break
            time.sleep(0.05)
        assert any(f["id"] == fid and f["fired"] for f in emulator.faults()), \
            "PutImage never started"
        # the commit runs inside cp's close(): list and stat the tag meanwhile
        r = run("ls", "-l", tag, timeout=120)
        assert r.returncode == 0, r.stderr
        for name in ("oci-layout", "index.json", "blobs"):
            assert name in r.stdout
        st = os.stat(os.path.join(tag, "index.json"))
        assert st.st_size > 0
        # ordering, not timing: ls and stat were answered before the emulator
        # logged (and sent) the PutImage reply
        assert emulator.count("PutImage", repo=repo) == 0
        assert cp.poll() is None
        err = cp.communicate(timeout=120)[1]
    finally:
        if cp.poll() is None:
            cp.kill()
            cp.wait()
        emulator.clear_faults()
    assert cp.returncode == 0, err + m.logtext()[-3000:]
    assert sync_dir(tag) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
