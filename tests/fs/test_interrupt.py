"""FUSE INTERRUPT: a process killed while its LOOKUP or OPENDIR waits on
ECR is released at once, not when the call's deadline passes (the kernel
waits uninterruptibly for a request already handed to the daemon)."""
import os
import signal
import subprocess
import time

import pytest


@pytest.fixture
def emu(seeded):
    e = seeded["emu"]
    e.clear_faults()
    yield e
    e.clear_faults()


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
