"""Listings answer READDIRPLUS: `ls -l` and `find` over a large directory
send no LOOKUP per entry (counted by the daemon in .ecrfs/stats "fuse"),
cost the minimum of listing pages (the emulator's request log), give the
same attributes a LOOKUP gives, and every node READDIRPLUS handed to the
kernel is FORGOTTEN again (the node count returns to its floor)."""
import errno
import json
import math
import os
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import ecrclient
import layouts
from mount import ACCT, REGION

N_TAGS = 1100
N_REPOS = 1050
# The module's repositories live in a region of their own, so the other
# modules' listings of the suite's region stay as they expect.
PLUS_REGION = "eu-west-1"


def _stats(m):
    with open(m.path(".ecrfs", "stats")) as f:
        return json.load(f)


def _fuse(m):
    return _stats(m)["fuse"]


def _delta(before, after):
    return {k: after[k] - before[k] for k in after}


@pytest.fixture(scope="module")
def plus(seeded):
    """In PLUS_REGION: plus/tags, N_TAGS distinct images, one tag each;
    plus/ns/rNNNN, N_REPOS repositories (empty)."""
    emu, layout = seeded["emu"], seeded["layout"]
    base = layouts.descriptor(layout, "v2")
    man = json.loads(layouts._blob(layout, base["digest"]))
    ecrclient.create_repository(emu, "plus/tags", region=PLUS_REGION)
    c = ecrclient.client_for(emu, region=PLUS_REGION)
    try:
        for b in [man["config"]] + man["layers"]:
            c.push_blob("plus/tags", layouts._blob(layout, b["digest"]), b["digest"])
    finally:
        c.close()
    tags = [f"t{i:04d}" for i in range(N_TAGS)]

    def put(chunk):
        c = ecrclient.client_for(emu, region=PLUS_REGION)
        try:
            for t in chunk:
                m = dict(man, annotations={"n": t})
                c.put_image("plus/tags", json.dumps(m).encode(), base["mediaType"], t)
        finally:
            c.close()

    def create(chunk):
        c = ecrclient.client_for(emu, region=PLUS_REGION)
        try:
            for i in chunk:
                c.call("CreateRepository", repositoryName=f"plus/ns/r{i:04d}")
        finally:
            c.close()

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(put, [tags[i::4] for i in range(4)]))
        list(ex.map(create, [range(i, N_REPOS, 4) for i in range(4)]))
    return tags


def _region_repos(emu):
    return len(emu.aws("describe-repositories", region=PLUS_REGION)["repositories"])


def _plus(m, *parts):
    return m.repo("plus", *parts, region=PLUS_REGION)


def test_ls_l_of_many_tags_sends_no_lookup_per_entry(seeded, plus, mount):
    emu = seeded["emu"]
    m = mount("tag_ttl=3600")  # counts must not depend on how fast ls runs
    os.listdir(_plus(m))  # the repositories' listing, and the path
    emu.reset_log()
    before = _fuse(m)
    out = subprocess.run(["ls", "-l", _plus(m, "tags")], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    d = _delta(before, _fuse(m))
    names = [line.split()[-1] for line in out.splitlines()[1:]]
    assert sorted(names) == plus
    assert all(line.startswith("d") for line in out.splitlines()[1:])
    # the kernel asked READDIRPLUS and took every tag from it: no LOOKUP
    # (the path's own components at most), no GETATTR (the directory's and
    # those of reading .ecrfs/stats at most), and ls's xattr questions
    # (SELinux label, two ACLs) answered once, not per entry
    assert d["readdirplus"] >= 1 and d["readdir"] == 0, d
    assert d["readdirplus_entries"] >= N_TAGS, d
    assert d["lookup"] <= 2 and d["getattr"] <= 5, d
    assert d["getxattr"] <= 3, d
    # the minimum of pages: DescribeImages 1,000 at a time, nothing per tag
    assert emu.count("DescribeImages") == math.ceil(N_TAGS / 1000)
    assert len(emu.log()) <= math.ceil(N_TAGS / 1000) + 1
    assert emu.count("BatchGetImage") == 0


def test_xattrs_outside_user_are_not_supported(seeded, mount):
    """ls -l asks security.selinux and the POSIX ACLs of every entry; an
    EOPNOTSUPP makes it stop asking for the mount (ENODATA would not)."""
    m = mount()
    tag = m.repo("team", "app", "v1")
    for name in ("security.selinux", "system.posix_acl_access", "trusted.x"):
        with pytest.raises(OSError) as e:
            os.getxattr(tag, name)
        assert e.value.errno == errno.EOPNOTSUPP, name
    with pytest.raises(OSError) as e:
        os.getxattr(tag, "user.nothing")
    assert e.value.errno == errno.ENODATA
    assert os.getxattr(tag, "user.ecr.digest").startswith(b"sha256:")


def test_find_maxdepth_1_sends_no_lookup_per_entry(seeded, plus, mount):
    emu = seeded["emu"]
    m = mount("tag_ttl=3600")
    os.listdir(_plus(m))
    emu.reset_log()
    before = _fuse(m)
    out = subprocess.run(["find", _plus(m, "tags"), "-maxdepth", "1"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    d = _delta(before, _fuse(m))
    assert len(out.splitlines()) == N_TAGS + 1
    assert d["lookup"] <= 2, d
    assert emu.count("DescribeImages") == math.ceil(N_TAGS / 1000)


def test_ls_l_of_many_repositories_sends_no_lookup_per_entry(seeded, plus, mount):
    emu = seeded["emu"]
    m = mount("tag_ttl=3600")
    emu.reset_log()
    before = _fuse(m)
    out = subprocess.run(["ls", "-l", _plus(m, "ns")], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    d = _delta(before, _fuse(m))
    assert len(out.splitlines()) == N_REPOS + 1
    # the path (account, region, plus, ns) and nothing per repository
    assert d["lookup"] <= 4 and d["getxattr"] <= 3, d
    assert d["readdirplus_entries"] >= N_REPOS, d
    # one listing of the region's repositories, 1,000 a page
    assert emu.count("DescribeRepositories") == math.ceil(_region_repos(emu) / 1000)
    assert len(emu.log()) == emu.count("DescribeRepositories")


FIELDS = ("st_mode", "st_size", "st_nlink", "st_mtime", "st_atime", "st_uid", "st_gid",
          "st_blocks")


def _attrs(st):
    return {f: int(getattr(st, f)) for f in FIELDS}


def _dirs(m):
    """Directories of every kind READDIRPLUS answers: the root, a registry,
    a region, a namespace, a repository (tags, N@, @sha256-), an image,
    blobs/sha256 and a directory of TAG@rootfs."""
    return [m.path(), m.path(ACCT), m.path(ACCT, REGION), m.repo("team"), m.repo("team", "app"), m.repo("team", "app", "v1"),
            m.repo("team", "app", "v1", "blobs", "sha256"), m.repo("team", "app", "v1@rootfs", "etc")]


def test_readdirplus_attributes_equal_lookup_attributes(seeded, mount):
    """Mount A finds every name by LOOKUP only (no listing of the directory
    in A); mount B lists first (READDIRPLUS) and stats from what that gave.
    Both did the same work before each stat (same images opened)."""
    a, b = mount(name="a"), mount(name="b")
    for da, db in zip(_dirs(a), _dirs(b)):
        with os.scandir(db) as it:
            listed = {e.name: e.inode() for e in it}
        before = _fuse(b)
        got = {n: os.lstat(os.path.join(db, n)) for n in listed}
        d = _delta(before, _fuse(b))
        assert listed, db
        # the stats were answered from READDIRPLUS: no LOOKUP in B, and the
        # inode number listed is the one stat gives
        assert d["lookup"] == 0, (db, d)
        for n, ino in listed.items():
            assert got[n].st_ino == ino, (db, n)
        for n in listed:
            want = os.lstat(os.path.join(da, n))
            assert _attrs(got[n]) == _attrs(want), (db, n)
            if stat.S_ISREG(want.st_mode) and "sha256" in db:
                assert got[n].st_ino == want.st_ino  # blobs: a hash, the same in both


def _nodes(m):
    return _stats(m)["tables"]["nodes"]


def test_nodes_return_to_floor_after_drop_caches(seeded, plus, mount):
    if os.geteuid() != 0:
        pytest.skip("dropping the kernel's caches needs root")
    m = mount("tag_ttl=3600")
    floor = _nodes(m)  # the root, .ecrfs and stats
    for p in (_plus(m, "tags"), _plus(m, "ns"), m.repo("team", "app"),
              m.repo("team", "app", "v1", "blobs", "sha256")):
        subprocess.run(["ls", "-l", p], capture_output=True, check=True, timeout=300)
    assert _nodes(m) >= floor + N_TAGS + N_REPOS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        if _nodes(m) <= floor:
            break
        time.sleep(0.5)
    assert _nodes(m) == floor
    # and browsing again works from the same mount
    assert len(os.listdir(_plus(m, "tags"))) == N_TAGS
