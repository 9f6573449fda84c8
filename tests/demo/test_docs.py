"""The README and the man page document every option `ecrfs --help` lists."""
import os
import pathlib
import re
import subprocess

import pytest

SRC = pathlib.Path(os.environ.get("ECRFS_SRC", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("ECRFS_BUILD", SRC / "build"))
ECRFS = BUILD / "fs" / "ecrfs"


def help_options():
    r = subprocess.run([str(ECRFS), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    opts = set(re.findall(r"-o ([a-z_]+)", text))
    assert {"region", "profile", "cache_dir", "ro"} <= opts, text  # the parser still works
    return opts


@pytest.mark.parametrize("doc", ["README.md", "doc/ecrfs.1"])
def test_every_help_option_is_documented(doc):
    text = (SRC / doc).read_text().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
    missing = [o for o in sorted(help_options())
               if not re.search(rf"(^|[`\s]|\.BI? ){re.escape(o)}\b", text, re.M)]
    assert missing == [], f"{doc} lacks {missing}"


def test_version_is_the_project_version():
    r = subprocess.run([str(ECRFS), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    meson = (SRC / "meson.build").read_text()
    version = re.search(r"version\s*:\s*'([^']+)'", meson).group(1)
    assert f"ecrfs {version}" in r.stdout + r.stderr
    assert f'"ecrfs {version}"' in (SRC / "doc" / "ecrfs.1").read_text()
