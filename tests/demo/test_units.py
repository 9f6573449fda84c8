"""The newcomer's files: systemd units, fstab line, IAM policies, man page.

The units are checked by systemd's own verifier; the IAM policies against the
action lists of the README; the man page by groff with all warnings on.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

SRC = pathlib.Path(os.environ.get("ECRFS_SRC", pathlib.Path(__file__).resolve().parents[2]))
CONTRIB = SRC / "contrib"

READ_ACTIONS = {
    "ecr:DescribeRegistry", "ecr:DescribeRepositories", "ecr:ListImages",
    "ecr:DescribeImages", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    # Issue 14: REPO@settings/, TAG@scan.json, .ecrfs/identity's exclusion check.
    "ecr:DescribeImageScanFindings", "ecr:GetLifecyclePolicy", "ecr:GetLifecyclePolicyPreview",
    "ecr:GetRepositoryPolicy", "ecr:ListPullTimeUpdateExclusions",
}
SETTINGS_ACTIONS = {
    "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:PutLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy", "ecr:StartLifecyclePolicyPreview", "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy", "ecr:UpdateImageStorageClass",
}
PUSH_ACTIONS = READ_ACTIONS | {
    "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:CreateRepository",
    "ecr:BatchDeleteImage", "ecr:DeleteRepository",
}


def need(tool):
    path = shutil.which(tool) or (f"/usr/bin/{tool}" if os.path.exists(f"/usr/bin/{tool}") else None)
    assert path, f"{tool} is missing: run scripts/install-deps"
    return path


def verify(*units):
    # --man=no: the units point at man:ecrfs(1), which is installed only by meson install.
    return subprocess.run([need("systemd-analyze"), "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60)


def test_systemd_units_verify():
    r = verify(CONTRIB / "mnt-ecr.mount", CONTRIB / "mnt-ecr.automount")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_systemd_verify_catches_a_broken_unit(tmp_path):
    # The verifier really reads our unit: the same file under a name that does
    # not match Where= is refused. (Proves the check above can fail.)
    bad = tmp_path / "mnt-wrong.mount"
    bad.write_text((CONTRIB / "mnt-ecr.mount").read_text())
    r = verify(bad)
    assert r.returncode != 0
    assert "doesn't match unit name" in r.stderr


def unit_keys(path):
    keys = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys[k] = v
    return keys


def test_units_describe_the_fstab_mount():
    m = unit_keys(CONTRIB / "mnt-ecr.mount")
    a = unit_keys(CONTRIB / "mnt-ecr.automount")
    assert m["What"] == "ecr" and m["Where"] == "/mnt/ecr" and m["Type"] == "fuse.ecrfs"
    assert "_netdev" in m["Options"].split(",")
    assert a["Where"] == "/mnt/ecr"
    fstab = [l.split() for l in (CONTRIB / "fstab.example").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert fstab == [["ecr", "/mnt/ecr", "fuse.ecrfs", m["Options"], "0", "0"]]


@pytest.mark.parametrize("name,actions", [("iam-readonly.json", READ_ACTIONS),
                                          ("iam-push.json", PUSH_ACTIONS),
                                          ("iam-settings.json", SETTINGS_ACTIONS)])
def test_iam_policy_lists_exactly_the_actions_used(name, actions):
    doc = json.loads((CONTRIB / name).read_text())
    assert doc["Version"] == "2012-10-17"
    got = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        got |= set(acts)
        if {"ecr:DescribeRegistry", "ecr:ListPullTimeUpdateExclusions"} & set(acts):
            # A registry-level action: it cannot be scoped to a repository ARN.
            assert st["Resource"] == "*"
    assert got == actions
    assert "ecr:GetAuthorizationToken" not in got  # docker's login, not ours


def test_man_page_renders_without_warnings():
    page = SRC / "doc" / "ecrfs.1"
    r = subprocess.run([need("groff"), "-man", "-Tutf8", "-ww", str(page)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(r".\x08", "", r.stdout)  # grotty overstrikes bold text
    for section in ("SYNOPSIS", "OPTIONS", "FILES", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert section in text
    assert "install_man('ecrfs.1')" in (SRC / "doc" / "meson.build").read_text()
