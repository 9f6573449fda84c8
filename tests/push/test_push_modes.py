"""Modes (the decision for immutable repositories, README "Modes"): the
repository directory and pending directories stay writable (0755) because
new tags can be pushed to an immutable repository; committed tags there are
0555/0444; under -o ro everything is 0555/0444. The push runs as a non-root
user (nobody), where the kernel enforces these modes (default_permissions)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ECRFS, REGION, ACCT, run, single_image, tag_digest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# The daemon runs as nobody too, so its nodes belong to nobody; it keeps
# CAP_DAC_OVERRIDE only to open /dev/fuse, which is 0600 on this machine
# (libfuse then mounts through fusermount3 as usual). cp runs without it.
DAEMON = NOBODY + ["--inh-caps=+dac_override,+sys_admin",
                   "--ambient-caps=+dac_override,+sys_admin"]


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == path for l in f)


def _as_nobody(*args, timeout=300):
    return run(*NOBODY, *args, timeout=timeout)


def _mode(path):
    r = _as_nobody("stat", "-c", "%a", path)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def nobody_mount(emulator, tmp_path):
    """An ecrfs daemon run by nobody (without allow_other, which
    /etc/fuse.conf does not grant users, only nobody reaches it): yields
    (mountpoint, base dir, log path)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the daemon as another user")
    base = tempfile.mkdtemp(prefix="ecrfs-nobody-")
    os.chmod(base, 0o755)
    for d in ("mnt", "cache", "logs", "home"):
        os.mkdir(os.path.join(base, d))
        os.chown(os.path.join(base, d), 65534, 65534)
    mnt = os.path.join(base, "mnt")
    log = os.path.join(base, "logs", "ecrfs.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(emulator.env())
    for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env[k] = os.path.join(base, "home", k.lower())
        open(env[k], "w").close()
        os.chmod(env[k], 0o644)
    env["HOME"] = os.path.join(base, "home")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    errf = open(os.path.join(base, "logs", "stderr"), "wb")
    proc = subprocess.Popen(DAEMON + [ECRFS, "-f", mnt, "-o",
                                      f"cache_dir={base}/cache/c,log={log}"],
                            env=env, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    try:
        deadline = time.monotonic() + 60
        while not _mounted(mnt) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _mounted(mnt), open(os.path.join(base, "logs", "stderr")).read()
        yield mnt, base, log
    finally:
        if _mounted(mnt):
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
            if _mounted(mnt):
                subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        errf.close()
        out = open(os.path.join(base, "logs", "stderr"), errors="replace").read()
        shutil.rmtree(base, ignore_errors=True)
        assert rc == 0, f"ecrfs (nobody) exited {rc}: {out[-3000:]}"


def test_non_root_push_to_immutable_repository(emulator, nobody_mount, layout_dir):
    mnt, base, log = nobody_mount
    repo = "push/immnobody"
    emulator.aws("create-repository", "--repository-name", repo,
                 "--image-tag-mutability", "IMMUTABLE")
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(700)})
    src = os.path.join(base, "layout")
    shutil.copytree(lay, src)
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    rdir = os.path.join(mnt, ACCT, REGION, *repo.split("/"))
    # a new tag in the immutable repository, by the user who mounted
    r = _as_nobody("cp", "-rT", src, os.path.join(rdir, "v1"))
    assert r.returncode == 0, r.stderr + open(log).read()[-3000:]
    r = _as_nobody(sys.executable, "-c",
                   "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY|os.O_DIRECTORY); "
                   "os.fsync(fd)", os.path.join(rdir, "v1"))
    assert r.returncode == 0, r.stderr
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    # a pending directory in it is writable (the repository directory's own
    # mode is the read side's answer to LOOKUP; GETATTR answers 0755, which
    # is what the kernel asks before refusing the writes above)
    r = _as_nobody("mkdir", os.path.join(rdir, "v2"))
    assert r.returncode == 0, r.stderr
    assert _mode(os.path.join(rdir, "v2")) == "755"
    # the committed tag cannot change: 0555/0444
    tag = os.path.join(rdir, "v1")
    layer = info["layers"][0].split(":")[1]
    assert _mode(tag) == "555"
    assert _mode(os.path.join(tag, "oci-layout")) == "444"
    assert _mode(os.path.join(tag, "blobs", "sha256", layer)) == "444"
    # and a second new tag by cp -rT works as well
    r = _as_nobody("cp", "-rT", src, os.path.join(rdir, "v3"))
    assert r.returncode == 0, r.stderr + open(log).read()[-3000:]
    assert tag_digest(emulator, repo, "v3") == info["manifest"]


def test_read_only_mount_modes(emulator, mount, layout_dir):
    repo = "push/romodes"
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(700)})
    m0 = mount(name="rw")
    os.makedirs(m0.repo(repo))
    r = run("cp", "-rT", lay, m0.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m0.logtext()[-3000:]
    m0.stop()
    m = mount(opts="ro", name="ro")
    layer = info["layers"][0].split(":")[1]
    for p, want in ((m.repo(repo), 0o555), (m.repo(repo, "v1"), 0o555),
                    (m.repo(repo, "v1", "oci-layout"), 0o444),
                    (m.repo(repo, "v1", "blobs", "sha256", layer), 0o444)):
        assert os.stat(p).st_mode & 0o777 == want, p
