"""The wrong-region mistake explains itself: a repository missing in the
region looked at, but present in another listed region, gets ENOENT and one
log line naming the region that has it."""
import errno
import os

from conftest import ACCT


def test_missing_repository_names_the_region_that_has_it(seeded, mount):
    emu = seeded["emu"]
    emu.aws("create-repository", "--repository-name", "hint/only-in-eu", region="eu-west-1")
    m = mount(opts=r"regions=us-east-1\,eu-west-1")
    wrong = m.path(ACCT, "us-east-1", "hint")
    for _ in range(3):  # repeated lookups (shells, ls) log the hint once
        try:
            os.stat(wrong)
            raise AssertionError("a repository of eu-west-1 appeared in us-east-1")
        except OSError as e:
            assert e.errno == errno.ENOENT
    assert os.path.isdir(m.path(ACCT, "eu-west-1", "hint", "only-in-eu"))
    log = m.logtext()
    line = ("repository path 'hint' not found in registry 111111111111 region us-east-1; "
            "it exists in region eu-west-1")
    assert log.count(line) == 1, log[-3000:]
    # a name that exists nowhere gets ENOENT and no hint
    try:
        os.stat(m.path(ACCT, "us-east-1", "nowhere-at-all"))
    except OSError as e:
        assert e.errno == errno.ENOENT
    assert "'nowhere-at-all'" not in m.logtext()
