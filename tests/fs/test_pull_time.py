"""Browsing is not a pull: BatchGetImage (which ECR records as a pull of
the image, lastRecordedPullTime) counted per command in the emulator's
log; the atime of a tag is that pull time; .ecrfs/identity tells whether
the caller is excluded from pull-time updates."""
import json
import os
import subprocess

import pytest

import ecrclient
import layouts
from conftest import ACCT, Mount

REPO = "pulltime/app"
TAGS = ["a", "b", "c", "idx"]
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def pt(seeded):
    """Three images sharing their config and layers (tags a, b, c), an index
    over a and b (tag idx) and an untagged image."""
    emu = seeded["emu"]
    layout = seeded["layout"]
    base = layouts.descriptor(layout, "v2")
    man = json.loads(layouts._blob(layout, base["digest"]))
    ecrclient.create_repository(emu, REPO)
    c = ecrclient.client_for(emu)
    digests = {}
    try:
        for b in [man["config"]] + man["layers"]:
            c.push_blob(REPO, layouts._blob(layout, b["digest"]), b["digest"])
        descs = []
        for i, tag in enumerate(["a", "b", "c", None]):
            data = json.dumps(dict(man, annotations={"n": str(i)})).encode()
            d = c.put_image(REPO, data, base["mediaType"], tag)["image"]["imageId"]["imageDigest"]
            digests[tag or "untagged"] = d
            descs.append({"mediaType": base["mediaType"], "digest": d, "size": len(data),
                          "platform": {"architecture": ["amd64", "arm64"][i % 2],
                                       "os": "linux"}})
        idx = {"schemaVersion": 2, "mediaType": INDEX, "manifests": descs[:2]}
        r = c.put_image(REPO, json.dumps(idx).encode(), INDEX, "idx")
        digests["idx"] = r["image"]["imageId"]["imageDigest"]
    finally:
        c.close()
    return {"emu": emu, "digests": digests, "layers": [l["digest"] for l in man["layers"]]}


def pulls(emu):
    return emu.count("BatchGetImage")


def details(emu):
    return {d["imageDigest"]: d for d in
            emu.aws("describe-images", "--repository-name", REPO)["imageDetails"]}


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_listing_and_stat_are_not_pulls(pt, mount):
    emu = pt["emu"]
    m = mount("tag_ttl=3600")
    before = details(emu)
    emu.reset_log()
    r = m.repo(REPO)
    run("ls", "-l", r)
    run("ls", "-lu", r)
    for t in TAGS:
        os.stat(os.path.join(r, t))
    untagged = "@sha256-" + pt["digests"]["untagged"].split(":")[1]
    os.stat(os.path.join(r, untagged))
    out = run("find", r, "-maxdepth", "1")
    assert sorted(os.path.basename(p) for p in out.split()[1:]) == sorted(TAGS + [untagged])
    os.getxattr(os.path.join(r, "a"), "user.ecr.digest")
    assert pulls(emu) == 0
    # nothing ecrfs did moved a pull time
    assert {d: v.get("lastRecordedPullTime") for d, v in details(emu).items()} == \
        {d: v.get("lastRecordedPullTime") for d, v in before.items()}


def test_opening_one_image_pulls_only_it(pt, mount):
    emu = pt["emu"]
    m = mount("tag_ttl=3600")
    emu.reset_log()
    with open(m.repo(REPO, "c", "index.json")) as f:
        json.load(f)
    assert pulls(emu) == 1
    pulled = [e for e in emu.log() if e.get("op") == "BatchGetImage"]
    assert len(pulled) == 1
    # the index: its manifest, then both children in one call
    emu.reset_log()
    os.listdir(m.repo(REPO, "idx", "blobs", "sha256"))
    assert pulls(emu) == 2
    emu.reset_log()
    for t in ["c", "idx"]:
        os.listdir(m.repo(REPO, t, "blobs", "sha256"))
    assert pulls(emu) == 0


def test_du_pulls_each_manifest_once(pt, mount, tmp_path):
    emu = pt["emu"]
    cache = str(tmp_path / "shared-cache")
    m = mount("tag_ttl=3600", cache_dir=cache)
    r = m.repo(REPO)
    emu.reset_log()
    total = int(run("du", "-sb", r).split()[0])
    first = pulls(emu)
    # 5 images, each opened once: 4 top manifests + the index's children
    # in one call (a and b are cached by then: none, or one call)
    assert 0 < first <= 6, first
    emu.reset_log()
    assert int(run("du", "-sb", r).split()[0]) == total
    assert pulls(emu) == 0
    # every listed image known: exact nlink (a, b, c, the index, untagged)
    layer = pt["layers"][0].split(":")[1]
    st = os.stat(os.path.join(r, "a", "blobs", "sha256", layer))
    assert st.st_nlink == 5
    m.stop()
    m2 = mount("tag_ttl=3600", cache_dir=cache, name="again")
    emu.reset_log()
    assert int(run("du", "-sb", m2.repo(REPO)).split()[0]) == total
    assert pulls(emu) == 0


def test_nlink_at_least_two_until_all_known(pt, mount):
    m = mount()
    layer = pt["layers"][0].split(":")[1]
    a = os.stat(m.repo(REPO, "a", "blobs", "sha256", layer))
    assert a.st_nlink >= 2


def test_atime_is_last_recorded_pull_time(pt, mount):
    emu = pt["emu"]
    old = 1600000000  # 2020-09-13
    emu.control("image_times", {"repo": REPO, "tag": "b", "lastRecordedPullTime": old})
    m = mount()
    det = details(emu)
    b = det[pt["digests"]["b"]]
    got = b.get("lastRecordedPullTime")
    if got is not None:  # the Debian CLI 2.9 may not know the field
        if isinstance(got, str):
            from datetime import datetime
            got = datetime.fromisoformat(got).timestamp()
        assert int(got) == old
    st = os.stat(m.repo(REPO, "b"))
    assert int(st.st_atime) == old
    out = run("find", m.repo(REPO), "-mindepth", "1", "-maxdepth", "1", "-atime", "+90")
    assert [os.path.basename(p) for p in out.split()] == ["b"]
    # a tag never pulled: atime = its push time (mtime)
    st = os.stat(m.repo(REPO, "c"))
    assert st.st_atime >= st.st_mtime


def test_identity_tells_pull_time_exclusion(pt, mount):
    emu = pt["emu"]
    m = mount()
    with open(m.path(".ecrfs", "identity")) as f:
        assert json.load(f)["pull_time_update_excluded"] is False
    arn = f"arn:aws:iam::{ACCT}:user/dev"
    c = ecrclient.client_for(emu)
    try:
        c.call("RegisterPullTimeUpdateExclusion", principalArn=arn)
        with open(m.path(".ecrfs", "identity")) as f:
            assert json.load(f)["pull_time_update_excluded"] is True
    finally:
        c.call("DeregisterPullTimeUpdateExclusion", principalArn=arn)
        c.close()


def test_usage_from_listings_only(pt, mount):
    emu = pt["emu"]
    m = mount()
    emu.reset_log()
    with open(m.path(".ecrfs", "usage")) as f:
        u = json.load(f)
    assert pulls(emu) == 0
    repo = u[ACCT]["us-east-1"]["repositories"][REPO]
    det = details(emu)
    assert repo == {"images": len(det), "bytes": sum(d["imageSizeInBytes"] for d in det.values())}
    region = u[ACCT]["us-east-1"]
    assert region["images"] == sum(r["images"] for r in region["repositories"].values())
