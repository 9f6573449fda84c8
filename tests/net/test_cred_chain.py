"""The credential chain (net/cred*.c, net/sts.c) end to end against the
emulator's SigV4 check and STS: profiles from real files, AssumeRole via
source_profile (signed by ecrfs, verified by the emulator), chained roles,
web identity, credential_process, a wrong secret rejected. Identities are
read back with `ecrfs-ctl whoami` (STS GetCallerIdentity) and, where the
installed AWS CLI can resolve the same profile without reaching AWS,
compared with `/usr/bin/aws sts get-caller-identity`."""
import json
import os
import time

import pytest

ACCOUNT = "111111111111"
KEY, SECRET = "AKIAEMU1AAAAAAAAAAAA", "emu-secret-111"


def whoami(ctl, files, *args, env=None):
    """ecrfs-ctl whoami with only the given config files (no key variables)."""
    e = {"AWS_CONFIG_FILE": str(files["config"]),
         "AWS_SHARED_CREDENTIALS_FILE": str(files["credentials"]),
         "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    e.update(env or {})
    r = ctl.run(*args, "whoami", env=e)
    out = {}
    if r.returncode == 0:
        out = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    return r, out


@pytest.fixture
def files(tmp_path):
    return {"config": tmp_path / "config", "credentials": tmp_path / "credentials",
            "dir": tmp_path}


def write(files, config="", credentials=""):
    files["config"].write_text(config)
    files["credentials"].write_text(credentials)


def cli_identity(emu, files, profile, env=None):
    e = {"AWS_CONFIG_FILE": str(files["config"]),
         "AWS_SHARED_CREDENTIALS_FILE": str(files["credentials"])}
    e.update(env or {})
    r = emu.aws_run("get-caller-identity", "--profile", profile, service="sts", env=e)
    # The profile's keys, not the emulator's default environment keys.
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_static_profile_matches_cli(emu, ctl, files):
    write(files, config="[profile other]\nregion = us-east-1\n",
          credentials=f"[other]\naws_access_key_id = {KEY}\n"
                      f"aws_secret_access_key = {SECRET}\n")
    r, me = whoami(ctl, files, "--profile", "other")
    assert r.returncode == 0, r.stderr
    cli = cli_identity(emu, files, "other",
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert me["account"] == cli["Account"] == ACCOUNT
    assert me["arn"] == cli["Arn"]
    assert me["source"].startswith("profile other")


def test_wrong_secret_in_profile_rejected(emu, ctl, files):
    write(files, credentials=f"[bad]\naws_access_key_id = {KEY}\n"
                             "aws_secret_access_key = not-the-secret-xyz\n")
    r, _ = whoami(ctl, files, "--profile", "bad")
    assert r.returncode != 0
    assert "not-the-secret-xyz" not in r.stderr
    assert emu.count("GetCallerIdentity", status=200) == 0


def test_assume_role_via_source_profile(emu, ctl, files):
    write(files,
          config="[profile xacct]\nrole_arn = arn:aws:iam::222222222222:role/ecr-admin\n"
                 "source_profile = base\nrole_session_name = ecrfs-test\n"
                 "duration_seconds = 1800\n"
                 "[profile again]\nrole_arn = arn:aws:iam::333333333333:role/reader\n"
                 "source_profile = xacct\n",
          credentials=f"[base]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    r, me = whoami(ctl, files, "--profile", "xacct")
    assert r.returncode == 0, r.stderr
    assert me["account"] == "222222222222"
    assert me["arn"] == "arn:aws:sts::222222222222:assumed-role/ecr-admin/ecrfs-test"
    assert "assume-role arn:aws:iam::222222222222:role/ecr-admin" in me["source"]
    assert emu.count("AssumeRole", status=200) == 1

    # A role assumed with another role's temporary credentials (session token).
    r, me = whoami(ctl, files, "--profile", "again")
    assert r.returncode == 0, r.stderr
    assert me["account"] == "333333333333"
    assert me["arn"].startswith("arn:aws:sts::333333333333:assumed-role/reader/ecrfs-")
    assert emu.count("AssumeRole", status=200) == 3


def test_assume_role_denied_names_the_role(emu, ctl, files):
    write(files, config="[profile nope]\nrole_arn = arn:aws:iam::999999999999:role/x\n"
                        "source_profile = base\n",
          credentials=f"[base]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    r, _ = whoami(ctl, files, "--profile", "nope")
    assert r.returncode != 0
    assert "AssumeRole" in r.stderr and "AccessDenied" in r.stderr
    assert SECRET not in r.stderr


def test_web_identity(emu, ctl, files):
    write(files)
    tok = files["dir"] / "token"
    tok.write_text("eyJraWQiOiJ0ZXN0In0.eyJzdWIiOiJwb2QifQ.c2ln\n")
    r, me = whoami(ctl, files, env={"AWS_WEB_IDENTITY_TOKEN_FILE": str(tok),
                                    "AWS_ROLE_ARN": "arn:aws:iam::111111111111:role/irsa",
                                    "AWS_ROLE_SESSION_NAME": "pod-7"})
    assert r.returncode == 0, r.stderr
    assert me["arn"] == "arn:aws:sts::111111111111:assumed-role/irsa/pod-7"
    assert me["source"].startswith("web identity")
    # AssumeRoleWithWebIdentity is unsigned; the emulator answers it anyway.
    assert emu.count("AssumeRoleWithWebIdentity", status=200) == 1


def test_credential_process_matches_cli(emu, ctl, files):
    exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    doc = json.dumps({"Version": 1, "AccessKeyId": KEY, "SecretAccessKey": SECRET,
                      "Expiration": exp})
    helper = files["dir"] / "creds.sh"
    helper.write_text(f"#!/bin/sh\ncat <<'EOF'\n{doc}\nEOF\n")
    os.chmod(helper, 0o755)
    write(files, config=f"[profile proc]\ncredential_process = {helper}\n")
    r, me = whoami(ctl, files, "--profile", "proc")
    assert r.returncode == 0, r.stderr
    assert me["source"] == "credential_process (profile proc)"
    cli = cli_identity(emu, files, "proc",
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert me["arn"] == cli["Arn"] and me["account"] == cli["Account"] == ACCOUNT


def test_no_credentials_lists_sources(emu, ctl, files):
    write(files)
    r, _ = whoami(ctl, files, "--profile", "ghost")
    assert r.returncode != 0
    assert "no AWS credentials for profile ghost" in r.stderr
    assert "EC2 IMDS: disabled" in r.stderr


def test_short_lived_role_credentials_are_refreshed(emu, ctl, files):
    """Role credentials are fetched once per process while they are fresh,
    short-lived ones too: credentials that live two minutes are refreshed
    after three quarters of their life, not before each signed call (they
    are always within 5 minutes of expiry)."""
    import ecrclient
    for _ in range(2):
        ecrclient.create_repository(emu, f"cred/{os.urandom(5).hex()}")
    write(files, config="[profile short]\nrole_arn = arn:aws:iam::111111111111:role/dev\n"
                        "source_profile = base\n",
          credentials=f"[base]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    env = {"AWS_CONFIG_FILE": str(files["config"]),
           "AWS_SHARED_CREDENTIALS_FILE": str(files["credentials"])}
    emu.config(tiny_pages=1)
    try:
        emu.config(sts_duration=3600)
        emu.reset_log()
        r = ctl.run("--profile", "short", "ls", f"{ACCOUNT}/us-east-1", env=env)
        assert r.returncode == 0, r.stderr
        pages = emu.count("DescribeRepositories", status=200)
        assert pages >= 2
        assert emu.count("AssumeRole", status=200) == 1

        emu.config(sts_duration=120)  # within 5 minutes of expiry from the start
        emu.reset_log()
        r = ctl.run("--profile", "short", "ls", f"{ACCOUNT}/us-east-1", env=env)
        assert r.returncode == 0, r.stderr
        assert emu.count("DescribeRepositories", status=200) >= 2
        assert emu.count("AssumeRole", status=200) == 1
    finally:
        emu.config(sts_duration=None, tiny_pages=0)
