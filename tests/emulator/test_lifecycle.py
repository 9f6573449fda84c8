"""Start, stop, restart: no orphan processes, state kept in the state dir."""
import os
import signal
import subprocess
import time

import pytest

import ecrclient
from emu import Emulator


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def gone(pid, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_registry_stops_with_emulator(tmp_path, sig):
    emu = Emulator(state_dir=str(tmp_path / "s")).start()
    try:
        regs = children(emu.proc.pid)
        assert len(regs) == 1
        with open(f"/proc/{regs[0]}/cmdline") as f:
            assert "docker-registry" in f.read()
        os.kill(emu.proc.pid, sig)
        emu.proc.wait(30)
        assert gone(regs[0])
    finally:
        emu.stop()


def test_restart_keeps_state(tmp_path):
    sd = str(tmp_path / "s")
    with_data = os.urandom(1000)
    emu = Emulator(state_dir=sd).start()
    try:
        ecrclient.create_repository(emu, "keep/me")
        c = ecrclient.client_for(emu)
        d = c.push_blob("keep/me", with_data)
        c.close()
    finally:
        emu.stop()
    emu = Emulator(state_dir=sd).start()
    try:
        c = ecrclient.client_for(emu)
        assert c.call("DescribeRepositories")["repositories"][0]["repositoryName"] == "keep/me"
        url = c.call("GetDownloadUrlForLayer", repositoryName="keep/me",
                     layerDigest=d)["downloadUrl"]
        c.close()
        r = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=60)
        assert r.stdout == with_data
    finally:
        emu.stop()
