"""What a push returns when ECR says no: immutable tags, denied writes,
missing repositories with no_create_repos, read-only mounts; and a killed
cp re-run uploading only what is missing."""
import errno
import math
import os
import signal
import subprocess
import time

from conftest import ACCT, REGION, run, single_image, sync_dir, tag_digest


def test_immutable_tag(emulator, mount, layout_dir):
    repo = "push/immutable"
    emulator.aws("create-repository", "--repository-name", repo,
                 "--image-tag-mutability", "IMMUTABLE")
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": b"first\n"})
    b, ib = single_image(str(layout_dir / "b"), "v1", {"/etc/b": b"second\n"})
    m = mount()
    r = run("cp", "-rT", a, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
    # a different image onto the immutable tag: cp reports EEXIST, the old image stays
    r = run("cp", "-rT", b, m.repo(repo, "v1"))
    assert r.returncode != 0
    assert "File exists" in r.stderr
    assert sync_dir(m.repo(repo, "v1")) == errno.EEXIST
    assert "immutable" in m.logtext().lower()
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
    # the same image again is a success
    r = run("cp", "-rT", a, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr
    assert sync_dir(m.repo(repo, "v1")) == 0


def test_denied_upload(emulator, mount, layout_dir):
    repo = "push/denied"
    emulator.aws("create-repository", "--repository-name", repo)
    lay, info = single_image(str(layout_dir / "d"), "v1", {"/etc/d": os.urandom(1000)})
    m = mount()
    emulator.fault(kind="access_denied", op="InitiateLayerUpload", repo=repo,
                   action="ecr:InitiateLayerUpload", count=0)
    try:
        r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    finally:
        emulator.clear_faults()
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert "ecr:InitiateLayerUpload" in m.logtext()
    assert tag_digest(emulator, repo, "v1") is None


def test_read_only_principal(emulator, mount, layout_dir):
    """A principal without write permissions: EACCES, and the log names the
    action (the repository is made sure of before any upload)."""
    lay, info = single_image(str(layout_dir / "ro"), "v1")
    m = mount(env=emulator.env(access_key="AKIAEMURO1AAAAAAAAAA"))
    os.makedirs(m.repo("push/roprincipal"))
    r = run("cp", "-rT", lay, m.repo("push/roprincipal", "v1"))
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert "ecr:CreateRepository" in m.logtext()


def test_no_create_repos(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "n"), "v1")
    m = mount(opts="no_create_repos")
    os.makedirs(m.repo("push/nocreate"))
    r = run("cp", "-rT", lay, m.repo("push/nocreate", "v1"))
    assert r.returncode != 0
    assert "No such file or directory" in r.stderr
    assert "aws ecr create-repository --repository-name push/nocreate --region us-east-1" \
        in m.logtext()
    assert emulator.count("CreateRepository", repo="push/nocreate") == 0


def test_read_only_mount(emulator, mount, layout_dir):
    m = mount(opts="ro")
    with_err = None
    try:
        os.makedirs(m.repo("push/ro"))
    except OSError as e:
        with_err = e.errno
    assert with_err == errno.EROFS


def test_invalid_names(emulator, mount):
    m = mount()
    for bad in ("bad:name", "-dash", ".hidden"):
        try:
            os.mkdir(os.path.join(m.mnt, ACCT, REGION, bad))
            raise AssertionError(f"mkdir {bad} succeeded")
        except OSError as e:
            assert e.errno == errno.EINVAL, (bad, e)
    # a tag directory directly below a region has no repository
    d = os.path.join(m.mnt, ACCT, REGION, "lonely")
    os.mkdir(d)
    try:
        open(os.path.join(d, "oci-layout"), "w").close()
        raise AssertionError("a tag below a region was accepted")
    except OSError as e:
        assert e.errno == errno.EINVAL


def _parts(size, part=10 << 20):
    return max(1, math.ceil(size / part))


def test_killed_cp_rerun_uploads_only_missing(emulator, mount, layout_dir):
    repo = "push/killed"
    files = {f"/l{i}.bin": os.urandom(11 << 20) for i in range(3)}
    lay, info = single_image(str(layout_dir / "k"), "v1", files, n_layers=3)
    blobs = os.path.join(lay, "blobs", "sha256")
    sizes = {"sha256:" + h: os.path.getsize(os.path.join(blobs, h)) for h in os.listdir(blobs)}
    # configs left by umoci are small one-part uploads
    n_small = len(sizes) - len(info["layers"])
    m = mount()
    os.makedirs(m.repo(repo))
    p = subprocess.Popen(["cp", "-rT", lay, m.repo(repo, "v1")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # kill -9 once one layer is complete (more completions than there are
        # configs) and more is on its way
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:
            if emulator.count("CompleteLayerUpload", repo=repo) >= n_small + 1 and \
               emulator.count("UploadLayerPart", repo=repo) >= 3:
                break
            time.sleep(0.05)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    # cp writes ahead of the network (the daemon spills), so the kill may land
    # in the close of its last file, whose commit then still runs: the tag
    # is either untouched or the complete image
    assert tag_digest(emulator, repo, "v1") in (None, info["manifest"])
    # what the repository has now (AWS CLI), and what a re-run must still send
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", *info["layers"])
    have = {l["layerDigest"] for l in chk["layers"] if l["layerAvailability"] == "AVAILABLE"}
    missing_parts = sum(_parts(sizes[d]) for d in info["layers"] if d not in have)
    before = emulator.count("UploadLayerPart", repo=repo)
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    layer_parts = emulator.count("UploadLayerPart", repo=repo) - before
    # layers the repository had after the kill were not sent again (configs
    # may be sent again: at most n_small small parts)
    assert missing_parts <= layer_parts <= missing_parts + n_small
    if killed:
        assert have, "no layer was complete when cp was killed"


def test_killed_daemon_rerun(emulator, mount, layout_dir, tmp_path):
    """kill -9 of the daemon mid-push: the old tag (here: none) stays; after a
    remount the same cp completes and sends only the layers still missing."""
    from conftest import Mount
    repo = "push/daemonkill"
    files = {f"/l{i}.bin": os.urandom(11 << 20) for i in range(3)}
    lay, info = single_image(str(layout_dir / "dk"), "v1", files, n_layers=3)
    victim = Mount(emulator, tmp_path, "victim").start()
    try:
        os.makedirs(victim.repo(repo))
        p = subprocess.Popen(["cp", "-rT", lay, victim.repo(repo, "v1")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:
            if emulator.count("CompleteLayerUpload", repo=repo) >= 1 and \
               emulator.count("UploadLayerPart", repo=repo) >= 3:
                break
            time.sleep(0.05)
        victim.proc.send_signal(signal.SIGKILL)
        p.wait(timeout=120)
    finally:
        victim.proc.wait()
        subprocess.run(["fusermount3", "-uz", victim.mnt], capture_output=True)
        victim.proc = None
    assert tag_digest(emulator, repo, "v1") in (None, info["manifest"])
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", *info["layers"])
    have = {l["layerDigest"] for l in chk["layers"] if l["layerAvailability"] == "AVAILABLE"}
    blobs = os.path.join(lay, "blobs", "sha256")
    sizes = {"sha256:" + h: os.path.getsize(os.path.join(blobs, h)) for h in os.listdir(blobs)}
    missing_parts = sum(_parts(sizes[d]) for d in info["layers"] if d not in have)
    m = mount(name="again")
    before = emulator.count("UploadLayerPart", repo=repo)
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    sent = emulator.count("UploadLayerPart", repo=repo) - before
    n_small = len(sizes) - len(info["layers"])
    assert missing_parts <= sent <= missing_parts + n_small


def test_lost_part_reply_and_5xx_resume(emulator, mount, layout_dir, tmp_path):
    """A part stored whose reply is lost (the retry gets
    InvalidLayerPartException with lastValidByteReceived) and 503s on parts:
    the upload resumes where ECR stands; the image is intact."""
    from conftest import skopeo_pull
    repo = "push/resume"
    emulator.aws("create-repository", "--repository-name", repo)
    lay, info = single_image(str(layout_dir / "rs"), "v1", {"/big.bin": os.urandom(23 << 20)})
    m = mount()
    emulator.fault(kind="drop_reply", op="UploadLayerPart", repo=repo, nth=2)
    emulator.fault(kind="http503", op="UploadLayerPart", repo=repo, nth=1, count=2)
    try:
        r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    finally:
        emulator.clear_faults()
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    assert skopeo_pull(emulator, repo, "v1", str(tmp_path / "pulled")) == info["manifest"]
    codes = [e.get("code") for e in emulator.log()
             if e.get("op") == "UploadLayerPart" and e.get("repo") == repo]
    # the retry of the stored part learnt where ECR stood, and 503s were retried
    assert codes.count("InvalidLayerPartException") >= 1
    assert codes.count("ServiceUnavailableException") == 2


def test_immutable_refusal_stops_uploads(emulator, mount, layout_dir):
    """After index.json's close failed with EEXIST (an immutable tag, another
    image), that writer's later creates fail with EEXIST too: none of the
    other image's blobs is uploaded. Another writer with the tag's own
    image succeeds."""
    import json
    import sys
    repo = "push/immrefuse"
    emulator.aws("create-repository", "--repository-name", repo,
                 "--image-tag-mutability", "IMMUTABLE")
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": b"first\n"})
    b, ib = single_image(str(layout_dir / "b"), "v1",
                         {f"/l{i}.bin": os.urandom(1 << 20) for i in range(3)}, n_layers=3)
    m = mount()
    tag = m.repo(repo, "v1")
    r = run("cp", "-rT", a, tag)
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
    initiated = emulator.count("InitiateLayerUpload", repo=repo)
    parts = emulator.count("UploadLayerPart", repo=repo)
    # one writer copies index.json first (as cp does when readdir gives it
    # first), then the rest of the layout: each create fails with EEXIST
    writer = r"""
import errno, json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
names = ["index.json", "oci-layout"] + ["blobs/sha256/" + h for h in
                                        sorted(os.listdir(os.path.join(src, "blobs/sha256")))]
out = {}
for n in names:
    try:
        shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))
        out[n] = 0
    except OSError as e:
        out[n] = e.errno
print(json.dumps(out))
"""
    r = run(sys.executable, "-c", writer, b, tag)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res.values()) == {errno.EEXIST}, res
    assert emulator.count("InitiateLayerUpload", repo=repo) == initiated
    assert emulator.count("UploadLayerPart", repo=repo) == parts
    assert "immutable" in m.logtext()
    assert sync_dir(tag) == errno.EEXIST
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
    # another writer, the tag's own image: a success
    r = run("cp", "-rT", a, tag)
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(tag) == 0
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
