"""Progress and state: user.ecr.push_state, .ecrfs/pending; skopeo onto an
existing tag (it reads the committed index.json and skips blobs it finds)."""
import json
import os

from conftest import run, single_image, sync_dir, tag_digest


def test_push_state_and_pending_file(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "p"), "v1", {"/etc/p": os.urandom(3000)})
    missing = info["layers"][0]
    os.unlink(os.path.join(lay, "blobs", "sha256", missing.split(":")[1]))
    m = mount()
    repo = "state/app"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr
    st = json.loads(os.getxattr(m.repo(repo, "v1"), "user.ecr.push_state"))
    assert st["state"] == "pending" and st["tag"] == "v1" and st["repository"] == repo
    assert missing in st.get("missing", "") or sync_dir(m.repo(repo, "v1")) != 0
    with open(os.path.join(m.mnt, ".ecrfs", "pending")) as f:
        pend = json.load(f)
    mine = [p for p in pend if p["repository"] == repo]
    assert mine and mine[0]["state"] == "pending"
    assert missing in mine[0]["missing"]
    assert tag_digest(emulator, repo, "v1") is None
    # rm -r of the unfinished tag directory abandons the push
    r = run("rm", "-r", m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(m.repo(repo, "v1"))
    with open(os.path.join(m.mnt, ".ecrfs", "pending")) as f:
        assert not [p for p in json.load(f) if p["repository"] == repo]


def test_skopeo_onto_existing_tag(emulator, mount, layout_dir, tmp_path):
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(3000)})
    b, ib = single_image(str(layout_dir / "b"), "v1", {"/etc/b": os.urandom(3000)})
    m = mount()
    repo = "state/skopeo"
    os.makedirs(m.repo(repo))
    dest = m.repo(repo, "t")
    r = run("skopeo", "copy", f"oci:{a}:v1", f"oci:{dest}:t")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "t") == ia["manifest"]
    # onto the existing tag: skopeo merges index.json; the candidate is the
    # manifest written in this version
    r = run("skopeo", "copy", f"oci:{b}:v1", f"oci:{dest}:t")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(dest) == 0
    assert tag_digest(emulator, repo, "t") == ib["manifest"]
    # the same image again: nothing to upload, same digest
    parts = emulator.count("UploadLayerPart", repo=repo)
    r = run("skopeo", "copy", f"oci:{b}:v1", f"oci:{dest}:t")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "t") == ib["manifest"]
    assert emulator.count("UploadLayerPart", repo=repo) == parts


def test_abandoned_version_dropped(emulator, mount, layout_dir):
    """A version with no open file for pending_timeout is dropped (log line);
    nothing is pushed."""
    import time
    lay, info = single_image(str(layout_dir / "t"), "v1")
    os.unlink(os.path.join(lay, "index.json"))
    m = mount(opts="pending_timeout=1")
    repo = "state/abandoned"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr

    def listed():
        with open(os.path.join(m.mnt, ".ecrfs", "pending")) as f:
            return [p for p in json.load(f) if p["repository"] == repo]
    deadline = time.monotonic() + 120  # the sweeper runs every 10 s
    while listed() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not listed()
    assert "dropping the unfinished push of state/abandoned:v1" in m.logtext()
    assert tag_digest(emulator, repo, "v1") is None


def test_sync_after_drop_reports_enodata(emulator, mount, layout_dir):
    """`sync TAGDIR` after the sweep dropped the unfinished push answers
    ENODATA (with a log line), not 0 as if the push had happened."""
    import errno
    import time
    lay, info = single_image(str(layout_dir / "t"), "v1")
    os.unlink(os.path.join(lay, "index.json"))
    m = mount(opts="pending_timeout=1")
    repo = "state/dropsync"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 120  # the sweeper runs every 10 s
    while "dropping the unfinished push of state/dropsync:v1" not in m.logtext() \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "dropping the unfinished push of state/dropsync:v1" in m.logtext()
    assert sync_dir(m.repo(repo, "v1")) == errno.ENODATA, m.logtext()[-2000:]
    # the line says nothing was pushed. With pending_timeout=1 a loaded
    # machine can pause cp for over a second between two files: the sweep
    # then drops the version mid-copy, cp's later files start a new one, and
    # sync reports that one as incomplete instead of dropped.
    log = m.logtext()
    assert "the unfinished push was dropped" in log or \
        "state/dropsync:v1 is not complete; missing:" in log
    assert tag_digest(emulator, repo, "v1") is None


def _records(m):
    import json
    return json.loads(os.getxattr(m.mnt, "user.ecr.push_records"))


def test_push_records_freed_after_commits(emulator, mount, layout_dir):
    """Pushing many tags in one mount: what the push side holds for them
    (pending nodes, tag-directory records, the files of committed versions)
    goes back down once the versions are committed and idle, instead of
    living until unmount. Checked with the daemon's own counters
    (getfattr -n user.ecr.push_records MNT)."""
    import time
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(800)})
    m = mount()
    repo = "push/records"
    os.makedirs(m.repo(repo))
    n_tags = 6
    for i in range(n_tags):
        r = run("cp", "-rT", lay, m.repo(repo, f"t{i}"))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    peak = _records(m)
    # right after the pushes the last tag's records exist (the counters do
    # count): its files and pending nodes; how many of its nodes the kernel
    # still holds at this moment varies (it may FORGET some already)
    assert peak["files"] >= 1 and peak["wnodes"] >= 1 and peak["tag_records"] >= 1, peak
    assert peak["versions"] == n_tags, peak
    deadline = time.monotonic() + 90
    now = peak
    while time.monotonic() < deadline:
        # looking the tags up again replaces the kernel's entries of the
        # pending directories (they gave way to what ECR lists): the kernel
        # then FORGETs the old nodes, as it does under memory pressure
        for i in range(n_tags):
            os.listdir(m.repo(repo, f"t{i}"))
        # and the kernel lets go of unused entries now rather than under
        # memory pressure (root only; the listing alone often suffices)
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2\n")
        except OSError:
            pass
        now = _records(m)
        if now["files"] == 0 and now["tag_records"] == 0 and now["wnodes"] == 0:
            break
        time.sleep(0.5)
    assert now["files"] == 0 and now["tag_records"] == 0 and now["wnodes"] == 0, \
        (peak, now)
    # the tags are intact and the mount still pushes
    for i in range(n_tags):
        assert tag_digest(emulator, repo, f"t{i}") == info["manifest"]
        assert "index.json" in os.listdir(m.repo(repo, f"t{i}"))
    r = run("cp", "-rT", lay, m.repo(repo, "again"))
    assert r.returncode == 0, r.stderr
    assert sync_dir(m.repo(repo, "again")) == 0
