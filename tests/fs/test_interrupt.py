"""FUSE INTERRUPT: a process killed while its LOOKUP or OPENDIR waits on
ECR is released at once, not when the call's deadline passes (the kernel
waits uninterruptibly for a request already handed to the daemon)."""
import os
import signal
import subprocess
import time


def wait_fired(emu, fid, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(f["id"] == fid and f["fired"] for f in emu.faults()):
            return
        time.sleep(0.05)
    raise AssertionError("the delayed ECR call never reached the emulator")


def completed(emu, op, repo):
    return [e for e in emu.log() if e.get("op") == op and e.get("repo") == repo]


def interrupted(emu, argv, op, repo=None):
    """Runs argv while op is held by the emulator, interrupts it with
    SIGINT once the call is there, and checks it ended first."""
    spec = dict(op=op, kind="delay", delay_ms=45000)
    if repo:
        spec["repo"] = repo
    emu.reset_log()  # calls of earlier tests and of the mount itself
    fid = emu.fault(**spec)
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_fired(emu, fid)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=35)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # Ordering, not timing: the process is gone while the delayed call is
    # still held by the emulator (it logs a call when it answers).
    assert not completed(emu, op, repo), "the process waited for the slow call"
    assert p.returncode != 0
    emu.clear_faults()


# A deadline longer than the delay: only the INTERRUPT can end the wait.
SLOW = "deadline=120"


def test_killed_ls_released_during_opendir(emu, mount):
    m = mount(opts=SLOW)
    region = os.path.dirname(m.repo("team"))
    interrupted(emu, ["ls", region], "DescribeRepositories")
    # The interrupted listing is not remembered as an error: the same
    # directory lists at once in the same mount.
    out = subprocess.run(["ls", region], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "team" in out.stdout.split()


def test_killed_stat_released_during_lookup(emu, mount):
    m = mount(opts=SLOW)
    os.listdir(os.path.dirname(m.repo("dock")))  # repositories known, not their tags
    tag = m.repo("dock", "d1")
    interrupted(emu, ["stat", tag], "DescribeImages", repo="dock")
    assert os.path.isdir(tag)


def test_interrupt_does_not_fail_a_shared_credential_refresh(emu, mount, tmp_path):
    """A credential refresh (AssumeRole) serves every request: the INTERRUPT
    of the one that started it must not fail it for the next ones."""
    akid, secret = emu.credentials("111111111111")
    cfg, cred = tmp_path / "config", tmp_path / "credentials"
    cfg.write_text("[profile xacct]\nrole_arn = arn:aws:iam::111111111111:role/dev\n"
                   "source_profile = base\nrole_session_name = intr\n")
    cred.write_text(f"[base]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n")
    env = {"AWS_CONFIG_FILE": str(cfg), "AWS_SHARED_CREDENTIALS_FILE": str(cred),
           "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "xacct"}
    emu.config(sts_duration=12)  # sessions the mount must refresh soon
    try:
        m = mount(opts=SLOW + ",profile=xacct", env=env)
        region = os.path.dirname(m.repo("team"))
        assert "team" in os.listdir(region)
        # 12 s credentials are refreshed after three quarters of their life:
        # the session is now within the refresh margin.
        time.sleep(10)
        fid = emu.fault(op="AssumeRole", kind="delay", delay_ms=4000)
        p = subprocess.Popen(["ls", m.repo("team", "app")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_fired(emu, fid)
            p.send_signal(signal.SIGINT)
            p.wait(timeout=60)  # the refresh it started completes first
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        emu.clear_faults()
        out = subprocess.run(["ls", m.repo("team", "app")], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    finally:
        emu.config(sts_duration=None)
