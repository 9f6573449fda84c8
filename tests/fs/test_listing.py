"""Listings: pagination (tiny pages, 1,000+ tags) and their API call
counts, taken from the emulator's request log."""
import json
import math
import os
import subprocess

import pytest

import ecrclient
import layouts

N_TAGS = 1005


@pytest.fixture(scope="module")
def many(seeded):
    """A repository with N_TAGS distinct images, one tag each."""
    emu = seeded["emu"]
    layout = seeded["layout"]
    base = layouts.descriptor(layout, "v2")
    man = json.loads(layouts._blob(layout, base["digest"]))
    ecrclient.create_repository(emu, "many")
    c = ecrclient.client_for(emu)
    try:
        for b in [man["config"]] + man["layers"]:
            c.push_blob("many", layouts._blob(layout, b["digest"]), b["digest"])
        for i in range(N_TAGS):
            m = dict(man, annotations={"n": str(i)})
            c.put_image("many", json.dumps(m).encode(), base["mediaType"], f"t{i:04d}")
    finally:
        c.close()
    return [f"t{i:04d}" for i in range(N_TAGS)]


def test_thousand_tags_cost_few_calls(seeded, many, mount):
    emu = seeded["emu"]
    m = mount("tag_ttl=3600")  # counts must not depend on how fast ls runs
    emu.reset_log()
    out = subprocess.run(["ls", "-l", m.repo("many")], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    names = [line.split()[-1] for line in out.splitlines()[1:]]
    assert sorted(names) == many
    # DescribeImages with maxResults 1000: 2 pages for 1,100 images, and no
    # call per tag (ls -l stats every entry).
    assert emu.count("DescribeImages") == math.ceil(N_TAGS / 1000)
    assert emu.count("BatchGetImage") == 0
    assert emu.count("DescribeRepositories") <= 1
    # listed again within the TTL: no call at all
    emu.reset_log()
    assert len(os.listdir(m.repo("many"))) == N_TAGS
    assert emu.count("DescribeImages") == 0


def test_tiny_pages(seeded, mount):
    emu = seeded["emu"]
    want_tags = set()
    for d in emu.aws("describe-images", "--repository-name", "team/app")["imageDetails"]:
        want_tags.update(d.get("imageTags") or [])
    n_images = len(emu.aws("describe-images", "--repository-name", "team/app")["imageDetails"])
    n_repos = len(emu.aws("describe-repositories")["repositories"])
    emu.config(tiny_pages=2)
    try:
        m = mount("tag_ttl=3600")
        emu.reset_log()
        names = set(os.listdir(m.repo("team/app")))
        assert want_tags <= names
        assert emu.count("DescribeImages") == math.ceil(n_images / 2)
        assert emu.count("DescribeRepositories") == math.ceil(n_repos / 2)
    finally:
        emu.config(tiny_pages=0)
