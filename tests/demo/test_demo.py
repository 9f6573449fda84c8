"""scripts/demo, as a newcomer runs it.

--run-through must do every step and clean up; the interactive form must
leave a working mount that `scripts/demo --stop` takes down. Both use the
test build (ECRFS_DEMO_BUILD) and a private demo directory.
"""
import json
import os
import pathlib
import subprocess

import pytest

SRC = pathlib.Path(os.environ.get("ECRFS_SRC", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("ECRFS_BUILD", SRC / "build-test"))
MOUNT_BUILT = (BUILD / "fs" / "ecrfs").exists()


def demo(tmp, *args, timeout=1200):
    env = dict(os.environ, ECRFS_DEMO_BUILD=str(BUILD), ECRFS_DEMO_DIR=str(tmp))
    return subprocess.run([str(SRC / "scripts" / "demo"), *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def processes_mentioning(text):
    found = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{p.name}: {cmd}")
    return found


@pytest.fixture
def demo_dir(tmp_path):
    d = tmp_path / "demo"
    yield d
    # Whatever happened, leave nothing running or mounted.
    demo(d, "--stop", timeout=120)
    mnt = d / "mnt"
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def assert_clean(d):
    assert not os.path.ismount(d / "mnt")
    assert not (d / "state.json").exists()
    assert processes_mentioning(str(d)) == []


def test_run_through_does_every_step_and_cleans_up(demo_dir):
    r = demo(demo_dir, "--run-through")
    out = r.stdout
    assert r.returncode == 0, out[-6000:]
    assert "demo finished" in out
    # The emulator was seeded with nested repositories, tags and an index.
    for line in ("pushed team/app:v1.0", "pushed team/app/ci:build-41",
                 "pushed team/web:1.0 (a multi-arch image index"):
        assert line in out, out[-4000:]
    if MOUNT_BUILT:
        for heading in ("== Browse", "== Inspect an image", "== Push: cp -rT"):
            assert heading in out, out[-4000:]
        assert "$ cp -rT $SRC $M/team/api/v2" in out
        # describe-images of the pushed repository showed the layout's digest.
        assert "the digest ECR reports is the layout's manifest digest: sha256:" in out
    else:
        assert "not available yet: the mount" in out
    assert_clean(demo_dir)


@pytest.mark.skipif(not MOUNT_BUILT, reason="the interactive demo leaves a mount up: needs fs/ecrfs")
def test_interactive_leaves_the_mount_up_and_stop_ends_it(demo_dir):
    r = demo(demo_dir)
    assert r.returncode == 0, r.stdout[-6000:]
    assert "scripts/demo --stop" in r.stdout
    st = json.loads((demo_dir / "state.json").read_text())
    mnt = pathlib.Path(st["mnt"])
    assert os.path.ismount(mnt)
    # The mount still answers after the demo process exited.
    assert "team" in os.listdir(mnt / "111111111111" / "us-east-1")
    env = dict(os.environ, ECRFS_DEMO_DIR=str(demo_dir))
    r = subprocess.run([str(SRC / "scripts" / "demo"), "--stop"], env=env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopped" in r.stdout
    assert_clean(demo_dir)
