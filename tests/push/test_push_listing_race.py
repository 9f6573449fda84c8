"""A tag committed through this mount is found at once, even when a
refresh of the repository's listing that began before the commit ends
after it (that listing lacks the tag; found by tests/stress/checker.py)."""
import os
import threading
import time

from conftest import run, single_image


def test_tag_found_after_commit_despite_older_refresh(emulator, mount, layout_dir):
    repo = "push/race"
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/f": b"one\n"})
    b, ib = single_image(str(layout_dir / "b"), "v2", {"/etc/f": b"two\n"})
    m = mount("tag_ttl=1")
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", a, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert "v1" in os.listdir(m.repo(repo))
    time.sleep(1.5)  # the listing expires
    emulator.clear_faults()
    emulator.fault(op="DescribeImages", kind="delay_reply", delay_ms=4000, repo=repo, count=1)
    try:
        # this ls starts a refresh whose answer ECR makes now, without v2,
        # and delivers 4 s later; the ls gets the old listing after 0.3 s
        lister = threading.Thread(target=os.listdir, args=(m.repo(repo),))
        lister.start()
        time.sleep(0.6)
        r = run("cp", "-rT", b, m.repo(repo, "v2"))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        lister.join()
        # the refresh began before the commit: its listing must not hide v2
        assert os.path.exists(m.repo(repo, "v2", "index.json")), \
            "a tag committed through this mount is missing"
        assert "v2" in os.listdir(m.repo(repo))
    finally:
        emulator.clear_faults()
