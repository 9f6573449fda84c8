"""Running ecrfs-ctl in tests: the binary from ECRFS_BUILD, the emulator's
environment only, and the --stats line it prints."""
import json
import os
import subprocess


def ctl_path():
    build = os.environ.get("ECRFS_BUILD")
    assert build, "ECRFS_BUILD (the meson build root) must be set"
    path = os.path.join(build, "net", "ecrfs-ctl")
    assert os.access(path, os.X_OK), f"{path} is not built"
    return path


class Ctl:
    """Runs ecrfs-ctl with the emulator's environment (and only that)."""

    def __init__(self, emu):
        self.emu = emu
        self.path = ctl_path()

    def env(self, account="111111111111", region="us-east-1", access_key=None, **extra):
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(self.emu.env(account, region, access_key))
        e.update(extra)
        return e

    def run(self, *args, account="111111111111", region="us-east-1", access_key=None,
            env=None, debug=False, stats=False, timeout=180, binary=False):
        e = self.env(account, region, access_key)
        if env:
            e.update(env)
        cmd = [self.path] + (["--debug"] if debug else []) + (["--stats"] if stats else [])
        cmd += [str(a) for a in args]
        return subprocess.run(cmd, env=e, capture_output=True, timeout=timeout,
                              text=not binary)


def stats_of(stderr):
    """The --stats JSON line ecrfs-ctl prints on stderr."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    for line in stderr.splitlines():
        if line.startswith("ecrfs-ctl stats: "):
            return json.loads(line[len("ecrfs-ctl stats: "):])
    raise AssertionError(f"no stats line in: {stderr}")




# Numbers the lead quotes (call counts, retries): shown in the run's summary.
MEASURED = []


def measured(text):
    print("\nMEASURED: " + text)
    MEASURED.append(text)
