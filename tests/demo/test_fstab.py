"""The fstab line and the systemd mount unit of contrib/, mounted for real.

`mount -T FSTAB MNT` runs mount.fuse3, which runs `ecrfs ecr MNT -o OPTS`
through /bin/sh. mount(8) drops PATH from the helper's environment, so `ecrfs`
must be in the shell's default PATH (/usr/local/bin after `meson install`).
The test does not touch the system: it runs in a private mount namespace
(unshare -m) where a directory holding an `ecrfs` symlink to the build is
bind-mounted over /usr/local/bin, and a home directory with ~/.aws/credentials
(profile default) over root's home. systemd cannot run in this container, so the
unit's What/Where/Type/Options are mounted the same way (the unit itself is
checked by systemd-analyze verify in test_units.py).
"""
import os
import pathlib
import pwd
import subprocess
import time

import pytest

import ecrclient

SRC = pathlib.Path(os.environ.get("ECRFS_SRC", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("ECRFS_BUILD", SRC / "build"))
ECRFS = BUILD / "fs" / "ecrfs"
CONTRIB = SRC / "contrib"


def fstab_from_example():
    line = next(l for l in (CONTRIB / "fstab.example").read_text().splitlines()
                if l.strip() and not l.startswith("#"))
    what, where, fstype, opts, _, _ = line.split()
    return what, where, fstype, opts


def fstab_from_unit():
    keys = {}
    for l in (CONTRIB / "mnt-ecr.mount").read_text().splitlines():
        if "=" in l and not l.startswith("#"):
            k, v = l.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys["What"], keys["Where"], keys["Type"], keys["Options"]


def daemons_for(mnt):
    found = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"ecrfs") and str(mnt).encode() in cmd:
                found.append(int(p.name))
    return found


@pytest.mark.parametrize("source", ["fstab.example", "mnt-ecr.mount"])
def test_mount_T_with_the_contrib_line(source, emulator, tmp_path):
    for tool in ("/usr/bin/unshare", "/sbin/mount.fuse3"):
        assert os.path.exists(tool), f"{tool} missing: run scripts/install-deps"
    what, where, fstype, opts = fstab_from_example() if source == "fstab.example" \
        else fstab_from_unit()
    assert (what, where, fstype) == ("ecr", "/mnt/ecr", "fuse.ecrfs")
    ecrclient.create_repository(emulator, "fstab/probe")

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ecrfs").symlink_to(ECRFS)
    # Root's own AWS files, as an admin would set them up for the fstab line:
    # the namespace shows this directory as the root user's home directory.
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    akid, secret = emulator.credentials("111111111111")
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n")
    (home / ".aws" / "config").write_text("[default]\nregion = us-east-1\n")
    log = tmp_path / "ecrfs.log"
    # The contrib options as they are, plus a private cache and log.
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{what} {mnt} {fstype} {opts},cache_dir={tmp_path}/cache,log={log} 0 0\n")
    region = mnt / "111111111111" / "us-east-1"
    script = f"""
set -u
mount --bind {bindir} /usr/local/bin || exit 10
mount --bind {home} {pwd.getpwuid(os.geteuid()).pw_dir} || exit 10
mount -T {fstab} {mnt} || exit 11
findmnt -n -o FSTYPE,OPTIONS {mnt}
ls {region}
ls {region}/fstab
cat {mnt}/.ecrfs/identity
umount {mnt} || {{ umount -l {mnt}; exit 12; }}
"""
    # Only the endpoints point at the emulator; credentials and region come
    # from the profile in ~/.aws (mount(8) passes no HOME: found via passwd).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in emulator.env().items() if k.startswith("AWS_ENDPOINT_URL")})
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        r = subprocess.run(["/usr/bin/unshare", "-m", "--propagation", "private", "bash", "-c",
                            script], env=env, capture_output=True, text=True, timeout=120)
    finally:
        # The namespace is gone with bash; make sure no daemon outlives it.
        end = time.monotonic() + 30
        while daemons_for(mnt) and time.monotonic() < end:
            time.sleep(0.1)
        left = daemons_for(mnt)
        for pid in left:
            os.kill(pid, 9)
    logtext = log.read_text() if log.exists() else ""
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}\n{logtext}"
    lines = r.stdout.splitlines()
    fstype_line = lines[0].split()
    assert fstype_line[0] == "fuse.ecrfs"
    mount_opts = fstype_line[1].split(",")
    assert "default_permissions" in mount_opts
    assert ("allow_other" in mount_opts) == ("allow_other" in opts.split(","))
    assert "fstab" in lines  # the repository made above, listed through the mount
    assert "probe" in lines
    assert '"account": "111111111111"' in r.stdout
    assert left == [], f"ecrfs daemons left after umount: {left}"
