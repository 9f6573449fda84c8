"""Tag mutability with exclusion filters: a tag's mode and
user.ecr.mutability follow the repository's setting with its WILDCARD
filters applied, and pushes go where ECR accepts them. The repositories are
made with the project's signed client (the Debian AWS CLI predates the
filters); the AWS CLI checks where the tags point."""
import errno
import os
import stat

import pytest

from conftest import run, single_image, sync_dir, tag_digest

import ecrclient  # noqa: E402  (tests/lib, on the path through conftest)


def _repo(emulator, name, mutability, filters):
    c = ecrclient.client_for(emulator)
    try:
        c.call("CreateRepository", repositoryName=name, imageTagMutability=mutability,
               imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": f}
                                                   for f in filters])
    finally:
        c.close()


def _push(m, lay, repo, tag):
    return run("cp", "-rT", lay, m.repo(repo, tag))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("setting,protected,excluded", [
    ("IMMUTABLE_WITH_EXCLUSION", "v1", "latest"),
    ("MUTABLE_WITH_EXCLUSION", "release-1", "dev"),
])
def test_exclusions_decide_modes_and_pushes(emulator, mount, layout_dir, setting, protected,
                                            excluded):
    repo = "push/" + setting.lower().replace("_", "-")
    filters = ["latest", "nightly-*"] if setting.startswith("IMMUTABLE") else ["release-*"]
    _repo(emulator, repo, setting, filters)
    a, ia = single_image(str(layout_dir / "a"), "x", {"/etc/a": b"first\n"})
    b, ib = single_image(str(layout_dir / "b"), "x", {"/etc/b": b"second\n"})
    m = mount()
    for tag in (protected, excluded):
        r = _push(m, a, repo, tag)
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        assert tag_digest(emulator, repo, tag) == ia["manifest"]
    # modes and xattrs: the protected tag is read-only, the other writable
    assert _mode(m.repo(repo, protected)) == 0o555
    assert _mode(m.repo(repo, protected, "index.json")) == 0o444
    assert _mode(m.repo(repo, excluded)) == 0o755
    assert _mode(m.repo(repo, excluded, "index.json")) == 0o644
    assert os.getxattr(m.repo(repo, protected), "user.ecr.mutability") == b"IMMUTABLE"
    assert os.getxattr(m.repo(repo, excluded), "user.ecr.mutability") == b"MUTABLE"
    assert os.getxattr(m.repo(repo), "user.ecr.mutability").decode() == setting
    assert os.getxattr(m.repo(repo), "user.ecr.mutability_exclusions").decode() == \
        ",".join(filters)
    # another image: the unprotected tag moves, the protected one stays
    r = _push(m, b, repo, excluded)
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, excluded) == ib["manifest"]
    r = _push(m, b, repo, protected)
    assert r.returncode != 0 and "File exists" in r.stderr
    assert sync_dir(m.repo(repo, protected)) == errno.EEXIST
    assert tag_digest(emulator, repo, protected) == ia["manifest"]
