"""The command line: help, version, mount.fuse3-style arguments, daemon
mode, and refusing to mount without credentials or a region."""
import os
import subprocess
import time

from conftest import ECRFS, ACCT


def clean_env(emu=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if emu:
        env.update(emu.env())
    env.update(extra)
    return env


def test_help_and_version():
    r = subprocess.run([ECRFS, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for opt in ["region=", "regions=", "registries=", "cache_dir=", "cache_size=", "tag_ttl=",
                "verify=strict", "allow_other", "max_threads=", "log=", "ro"]:
        assert opt in r.stdout
    r = subprocess.run([ECRFS, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("ecrfs ")


def test_no_credentials_fails_clearly(tmp_path, seeded):
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env(AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                    AWS_CONFIG_FILE=str(tmp_path / "none"),
                    AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                    HOME=str(tmp_path))
    r = subprocess.run([ECRFS, "-f", str(mnt), "-o", f"cache_dir={tmp_path}/c"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "credentials" in r.stderr
    assert not os.path.ismount(mnt)


def test_no_region_fails_clearly(tmp_path, seeded):
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env(seeded["emu"], AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))
    env.pop("AWS_REGION")
    env.pop("AWS_DEFAULT_REGION")
    r = subprocess.run([ECRFS, "-f", str(mnt), "-o", f"cache_dir={tmp_path}/c"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "region" in r.stderr


def test_source_and_daemon_mode(tmp_path, seeded):
    """`ecrfs ecr MNT -o opts` as mount.fuse3 calls it, daemonized."""
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env(seeded["emu"])
    log = tmp_path / "log"
    r = subprocess.run([ECRFS, "ecr", str(mnt), "-o",
                        f"cache_dir={tmp_path}/c,log={log},regions=us-east-1,eu-west-1"],
                       env=env, capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.ismount(mnt)
        assert sorted(os.listdir(mnt / ACCT)) == ["eu-west-1", "us-east-1"]
        assert "app" in os.listdir(mnt / ACCT / "us-east-1" / "team")
        # private by default: fsname ecr, subtype ecrfs, default_permissions
        with open("/proc/self/mountinfo") as f:
            line = [l for l in f if f" {mnt} " in l][0]
        assert "fuse.ecrfs" in line and "default_permissions" in line
        assert "allow_other" not in line
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def test_registries_option_lists_other_accounts(seeded, mount):
    m = mount("registries=222222222222,333333333333")
    assert sorted(os.listdir(m.mnt)) == [".ecrfs", ACCT, "222222222222", "333333333333"]


def test_comma_lists_in_their_own_o_option(tmp_path, seeded):
    """`-o regions=R1,R2 -o registries=ID1,ID2` as the README writes them:
    fuse_opt splits at commas, the items are joined back; the escaped
    form `R1\\,R2` works too."""
    env = clean_env(seeded["emu"])
    for i, regions in enumerate(["regions=us-east-1,eu-west-1", "regions=us-east-1\\,eu-west-1"]):
        mnt = tmp_path / f"m{i}"
        mnt.mkdir()
        log = tmp_path / f"log{i}"
        p = subprocess.Popen([ECRFS, "-f", str(mnt), "-o", f"cache_dir={tmp_path}/c{i},log={log}",
                              "-o", regions, "-o", "registries=111111111111,222222222222"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt) and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.path.ismount(mnt), p.stdout.read() if p.poll() is not None else "timeout"
            assert sorted(os.listdir(mnt)) == [".ecrfs", ACCT, "222222222222"]
            assert sorted(os.listdir(mnt / ACCT)) == ["eu-west-1", "us-east-1"]
            assert sorted(os.listdir(mnt / "222222222222")) == ["eu-west-1", "us-east-1"]
            assert "app" in os.listdir(mnt / ACCT / "us-east-1" / "team")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        assert p.returncode == 0, open(log).read()[-4000:]
