"""Fixtures for the push suite: real ecrfs mounts on the local ECR emulator
(read-write), umoci-built layouts, and independent checks (AWS CLI v2,
skopeo against the emulator's backing registry)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import layouts  # noqa: E402

BUILD = os.environ.get("ECRFS_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
ECRFS = os.path.join(BUILD, "fs", "ecrfs")
ACCT = "111111111111"
REGION = "us-east-1"


class Mount:
    """ecrfs -f MNT -o cache_dir=...,log=...,OPTS with the emulator's
    environment; stop() unmounts (lazily if needed) and reaps the daemon."""

    def __init__(self, emu, tmp, name="mnt", opts="", env=None):
        self.emu = emu
        self.mnt = os.path.join(str(tmp), name)
        self.cache_dir = os.path.join(str(tmp), name + "-cache")
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

    def repo(self, repo, *parts, acct=ACCT, region=REGION):
        return os.path.join(self.mnt, acct, region, *repo.split("/"), *parts)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def sync_dir(path):
    """`sync TAGDIR`: OPENDIR + FSYNCDIR; returns 0 or the errno."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def run(*args, timeout=600, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def single_image(path, tag, files=None, n_layers=1):
    """An OCI layout holding one image with ref.name `tag` (umoci)."""
    info = layouts.make_image(path, tag, files, n_layers)
    return path, info


def tag_digest(emu, repo, tag):
    """The digest ECR gives for repo:tag (AWS CLI), or None."""
    r = emu.aws_run("describe-images", "--repository-name", repo, "--image-ids",
                    f"imageTag={tag}")
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["imageDetails"][0]["imageDigest"]


def skopeo_pull(emu, repo, tag, dest):
    """Copies repo:tag from the emulator's backing registry with skopeo
    (independent of ecrfs and of the emulator's ECR side); returns the
    manifest digest of the copy."""
    src = f"docker://{emu.registry}/{ACCT}/{REGION}/{repo}:{tag}"
    r = run("skopeo", "copy", "--src-tls-verify=false", src, f"oci:{dest}:{tag}")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(dest, "index.json")) as f:
        idx = json.load(f)
    return idx["manifests"][0]["digest"]


@pytest.fixture
def mount(emulator, tmp_path):
    """mount(opts="", name="mnt", env=None) -> Mount; stopped at teardown; a
    daemon exiting non-zero (ASan, crash) fails the test."""
    made = []

    def make(opts="", name="mnt", env=None):
        m = Mount(emulator, tmp_path, name, opts, env)
        made.append(m)
        return m.start()
    yield make
    bad = []
    for m in made:
        rc = m.stop()
        if rc not in (0, None):
            bad.append((m.mnt, rc, m.logtext()[-4000:]))
    assert not bad, f"ecrfs exited non-zero: {bad}"


@pytest.fixture
def layout_dir(tmp_path):
    d = tmp_path / "layouts"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)
