"""A real ecrfs mount on the local ECR emulator, for the fs and push suites."""
import contextlib
import hashlib
import os
import subprocess
import time

BUILD = os.environ.get("ECRFS_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))
ECRFS = os.path.join(BUILD, "fs", "ecrfs")
ACCT = "111111111111"
REGION = "us-east-1"


class Mount:
    """ecrfs -f MNT -o cache_dir=...,log=...,OPTS with the emulator's
    environment; stop() unmounts (lazily if needed) and reaps the daemon."""

    def __init__(self, emu, tmp, name="mnt", opts="", env=None, cache_dir=None):
        self.emu = emu
        self.mnt = os.path.join(str(tmp), name)
        self.cache_dir = cache_dir or os.path.join(str(tmp), name + "-cache")
        self.log = os.path.join(str(tmp), name + ".log")
        self.opts = opts
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(emu.env())
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            self.env.update(env)
        self.proc = None
        self.rc = None

    def start(self, timeout=60):
        os.makedirs(self.mnt, exist_ok=True)
        o = f"cache_dir={self.cache_dir},log={self.log}"
        if self.opts:
            o += "," + self.opts
        with open(self.log + ".stderr", "ab") as logf:
            self.proc = subprocess.Popen([ECRFS, "-f", self.mnt, "-o", o], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.ismount(self.mnt):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ecrfs did not mount; log:\n{self.logtext()}")

    def logtext(self):
        out = ""
        for p in (self.log, self.log + ".stderr"):
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read()
        return out

    def stop(self):
        if self.proc is None:
            return self.rc
        if os.path.ismount(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        try:
            self.rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.rc = self.proc.wait()
        self.proc = None
        return self.rc

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def repo(self, repo, *parts, acct=ACCT, region=REGION):
        return os.path.join(self.mnt, acct, region, *repo.split("/"), *parts)


@contextlib.contextmanager
def mounts(default_emu, tmp):
    """with mounts(emu, tmp_path) as make: make(opts="", name="mnt",
    cache_dir=None, emu=None, env=None) -> a started Mount (on default_emu
    unless emu is given). Every mount is stopped at the end, and a daemon
    that exited non-zero (ASan leak, crash) fails the test."""
    made = []

    def make(opts="", name="mnt", cache_dir=None, emu=None, env=None):
        m = Mount(emu or default_emu, tmp, name, opts, env=env, cache_dir=cache_dir)
        made.append(m)
        return m.start()
    bad = []
    try:
        yield make
    finally:
        for m in made:
            rc = m.stop()
            if rc not in (0, None):
                bad.append((m.mnt, rc, m.logtext()[-4000:]))
    assert not bad, f"ecrfs exited non-zero: {bad}"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
