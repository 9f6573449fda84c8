"""Credentials that expire during a long read or push: ecrfs refreshes them
(AssumeRole) once for all its threads, retries the refused call, and the
user sees no error. The emulator hands out AssumeRole credentials that live
LIFE seconds and refuses them EARLY seconds before the Expiration they
announce (ExpiredTokenException, as a clock running ahead or a revoked
session would have it); once per test every session is also expired
outright, mid-transfer."""
import os
import random
import subprocess
import threading
import time

import pytest

import ecrclient
import layouts
from emu import Emulator
from mount import ACCT, REGION, mounts, sha256_file

LIFE = 20
EARLY = 8


@pytest.fixture
def own_emu(tmp_path):
    emu = Emulator(state_dir=str(tmp_path / "emu"))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def _role_env(emu, tmp_path):
    """ecrfs gets its credentials from AssumeRole (profile with role_arn and
    source_profile), never from the environment."""
    akid, secret = emu.credentials()
    cfg, creds = tmp_path / "aws-config", tmp_path / "aws-credentials"
    creds.write_text(f"[base]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n")
    cfg.write_text("[profile short]\nrole_arn = arn:aws:iam::111111111111:role/dev\n"
                   "source_profile = base\nrole_session_name = ecrfs-expiring\n")
    return {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
            "AWS_PROFILE": "short", "AWS_CONFIG_FILE": str(cfg),
            "AWS_SHARED_CREDENTIALS_FILE": str(creds)}


def _refused_then_retried(log):
    """[(op, refused key, key of the retry)] for ECR calls refused as expired
    and then answered with a fresh key."""
    out = []
    for i, e in enumerate(log):
        if e.get("code") != "ExpiredTokenException":
            continue
        for f in log[i + 1:]:
            if f.get("op") == e["op"] and f.get("status") == 200 and f.get("akid") != e["akid"]:
                out.append((e["op"], e["akid"], f["akid"]))
                break
    return out


def _check_log(emu, m, took):
    log = emu.log()
    refused = [e for e in log if e.get("code") == "ExpiredTokenException"]
    retried = _refused_then_retried(log)
    assert refused and len(retried) >= 1, (refused, retried)
    assert all(a.startswith("ASIA") and b.startswith("ASIA") for _, a, b in retried)
    assume = sum(1 for e in log if e.get("op") == "AssumeRole" and e.get("status") == 200)
    ecr_calls = sum(1 for e in log if e.get("akid") and e.get("op") != "AssumeRole")
    # One refresh per lifetime (or refusal), not one per call.
    assert 2 <= assume <= took / (LIFE * 0.75 - EARLY) + len(refused) + 2, (assume, took)
    assert assume < ecr_calls, (assume, ecr_calls)
    text = m.logtext()
    assert "credentials expired; refreshing them and retrying once" in text
    return refused, retried


def test_read_across_expiry(own_emu, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    img = layouts.make_image(layout, "big", {"/big": os.urandom(24 << 20)})
    ecrclient.push_layout(emu, layout, "exp/read", "big")
    layer = img["layers"][0][7:]
    with open(os.path.join(layout, "blobs", "sha256", layer), "rb") as f:
        src = f.read()
    # One open file read at random places for longer than a credential
    # lives; short-lived download URLs make the read ask ECR again
    # (GetDownloadUrlForLayer) all along.
    emu.config(sts_duration=LIFE, sts_expire_early=EARLY, url_expires=3)
    emu.fault(op="BlobGet", kind="delay", delay_ms=300, count=0)
    order = list(range(len(src) >> 20))
    random.Random(13).shuffle(order)
    with mounts(emu, tmp_path) as make:
        m = make(env=_role_env(emu, tmp_path))
        path = m.repo("exp/read", "big", "blobs", "sha256", layer)
        emu.reset_log()
        t0 = time.monotonic()
        timer = threading.Timer(LIFE / 2, emu.expire_credentials)
        timer.start()
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                for i in order:
                    off = (i << 20) + 4321
                    assert os.pread(fd, 65536, off) == src[off:off + 65536], i
                    time.sleep(0.8)
            finally:
                os.close(fd)
            assert sha256_file(path) == layer
        finally:
            timer.cancel()
        took = time.monotonic() - t0
        assert took > LIFE, took
        emu.clear_faults()
        _check_log(emu, m, took)


def test_push_across_expiry(own_emu, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    # Four parts: the layer's close returns before its parts are sent, so
    # the push must outlive a credential by its parts alone.
    img = layouts.make_image(layout, "v1", {"/big": os.urandom(35 << 20)})
    # Slow parts: a three-part layer takes longer than a credential lives.
    emu.config(sts_duration=LIFE, sts_expire_early=EARLY)
    emu.fault(op="UploadLayerPart", kind="delay", delay_ms=6000, count=0)
    with mounts(emu, tmp_path) as make:
        m = make(env=_role_env(emu, tmp_path))
        repo = m.path(ACCT, REGION, "exp", "push")
        os.makedirs(repo)
        emu.reset_log()
        t0 = time.monotonic()
        timer = threading.Timer(LIFE / 2, emu.expire_credentials)
        timer.start()
        try:
            r = subprocess.run(["cp", "-rT", layout, os.path.join(repo, "v1")],
                               capture_output=True, text=True, timeout=300)
        finally:
            timer.cancel()
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        assert took > LIFE, took
        emu.clear_faults()
        d = emu.aws("describe-images", "--repository-name", "exp/push", "--image-ids",
                    "imageTag=v1")["imageDetails"][0]["imageDigest"]
        assert d == img["manifest"]
        _check_log(emu, m, took)


# ---- credential_process: a command that prints keys living a minute ----

PLIFE = 60   # the Expiration the command prints: a minute ahead
PEARLY = 40  # refused from 20 s on, well before ecrfs's own refresh at 45 s

CRED_PROCESS = r'''#!/usr/bin/python3
"""credential_process for the test: AssumeRole against the emulator with
the base keys, printed as credential_process JSON (Version 1); each run
appends a line to RUNS."""
import json
import re
import sys

sys.path.insert(0, LIB)
import ecrclient

c = ecrclient.Client(ENDPOINT, AKID, SECRET)
st, xml = c.sts("AssumeRole", RoleArn="arn:aws:iam::111111111111:role/dev",
                RoleSessionName="ecrfs-process")
c.close()
if st != 200:
    sys.exit(f"AssumeRole: {st}")
get = lambda tag: re.search(f"<{tag}>([^<]*)</{tag}>", xml).group(1)
with open(RUNS, "a") as f:
    f.write(get("AccessKeyId") + "\n")
print(json.dumps({"Version": 1, "AccessKeyId": get("AccessKeyId"),
                  "SecretAccessKey": get("SecretAccessKey"),
                  "SessionToken": get("SessionToken"), "Expiration": get("Expiration")}))
'''


def _process_env(emu, tmp_path):
    """ecrfs gets its credentials from a credential_process profile only."""
    akid, secret = emu.credentials()
    runs = tmp_path / "process-runs"
    script = tmp_path / "cred-process.py"
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
    consts = (f"LIB = {lib!r}\nENDPOINT = {emu.endpoint!r}\nAKID = {akid!r}\n"
              f"SECRET = {secret!r}\nRUNS = {str(runs)!r}\n")
    head, body = CRED_PROCESS.split("import json\n", 1)
    script.write_text(head + consts + "import json\n" + body)
    script.chmod(0o700)
    cfg, creds = tmp_path / "aws-config", tmp_path / "aws-credentials"
    creds.write_text("")
    cfg.write_text(f"[profile proc]\ncredential_process = /usr/bin/python3 {script}\n")
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
           "AWS_PROFILE": "proc", "AWS_CONFIG_FILE": str(cfg),
           "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    return env, runs


def _process_runs(runs):
    return runs.read_text().split() if runs.exists() else []


def _check_process_log(emu, m, runs, took):
    """Refused as expired, retried with the next key the command printed:
    one run per refresh, shared by every thread (the first run is the
    mount's), at most one per lifetime."""
    log = emu.log()
    refused = [e for e in log if e.get("code") == "ExpiredTokenException"]
    retried = _refused_then_retried(log)
    keys = _process_runs(runs)
    print(f"credential_process: {len(keys)} runs in {took:.0f} s, {len(refused)} calls "
          f"refused as expired, {len(retried)} retried with the next key")
    assert refused and retried, (refused, retried)
    assert 2 <= len(keys) <= 2 + int(took // (PLIFE - PEARLY)), keys
    for _, a, b in retried:
        assert a in keys and keys.index(b) == keys.index(a) + 1, (retried, keys)
    assert "credentials expired; refreshing them and retrying once" in m.logtext()


def test_process_read_across_expiry(own_emu, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    img = layouts.make_image(layout, "big", {"/big": os.urandom(24 << 20)})
    ecrclient.push_layout(emu, layout, "proc/read", "big")
    layer = img["layers"][0][7:]
    with open(os.path.join(layout, "blobs", "sha256", layer), "rb") as f:
        src = f.read()
    emu.config(sts_duration=PLIFE, sts_expire_early=PEARLY, url_expires=3)
    emu.fault(op="BlobGet", kind="delay", delay_ms=300, count=0)
    env, runs = _process_env(emu, tmp_path)
    order = list(range(len(src) >> 20))
    random.Random(14).shuffle(order)
    with mounts(emu, tmp_path) as make:
        m = make(env=env)
        path = m.repo("proc/read", "big", "blobs", "sha256", layer)
        emu.reset_log()
        t0 = time.monotonic()
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for i in order:
                off = (i << 20) + 777
                assert os.pread(fd, 65536, off) == src[off:off + 65536], i
                time.sleep(1.2)
        finally:
            os.close(fd)
        assert sha256_file(path) == layer
        took = time.monotonic() - t0
        assert took > PLIFE - PEARLY + 3, took
        emu.clear_faults()
        _check_process_log(emu, m, runs, took)


def test_process_push_across_expiry(own_emu, tmp_path):
    emu = own_emu
    layout = str(tmp_path / "layout")
    img = layouts.make_image(layout, "v1", {"/big": os.urandom(35 << 20)})
    emu.config(sts_duration=PLIFE, sts_expire_early=PEARLY)
    emu.fault(op="UploadLayerPart", kind="delay", delay_ms=11000, count=0)
    env, runs = _process_env(emu, tmp_path)
    with mounts(emu, tmp_path) as make:
        m = make(env=env)
        repo = m.path(ACCT, REGION, "proc", "push")
        os.makedirs(repo)
        emu.reset_log()
        t0 = time.monotonic()
        r = subprocess.run(["cp", "-rT", layout, os.path.join(repo, "v1")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        took = time.monotonic() - t0
        assert took > PLIFE - PEARLY, took
        emu.clear_faults()
        d = emu.aws("describe-images", "--repository-name", "proc/push", "--image-ids",
                    "imageTag=v1")["imageDetails"][0]["imageDigest"]
        assert d == img["manifest"]
        _check_process_log(emu, m, runs, took)
