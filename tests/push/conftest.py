"""Fixtures for the push suite: real ecrfs mounts on the local ECR emulator
(read-write), umoci-built layouts, and independent checks (AWS CLI v2,
skopeo against the emulator's backing registry)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import layouts  # noqa: E402
from mount import ACCT, BUILD, ECRFS, REGION, Mount, sha256_file  # noqa: E402,F401


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
