"""A long-lived mount stays bounded: browsing more tags than the mount keeps
image directories for (2,048) leaves at most that many images' nodes, and
every in-memory table in .ecrfs/stats stays under its bound. The 20,000-tag
VmHWM figure is the bench's (scripts/bench --only soak_tags, release build):
under ASan memory figures mean little."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "stress"))

import soak_tags  # noqa: E402

TAGS, REPOS = 3000, 30


def test_browsing_many_tags_keeps_tables_bounded(emu, mount):
    names = soak_tags.seed(emu, REPOS, TAGS)
    m = mount()
    assert soak_tags.browse(m.repo, names) == TAGS
    with open(m.path(".ecrfs", "stats")) as f:
        t = json.load(f)["tables"]
    # each tag browsed made 5 nodes (tag, index.json, blobs, sha256, manifest):
    # unbounded that is 15,000; kept: 2,048 images' worth plus repositories,
    # and the dropped ones the kernel has not FORGOTTEN yet (it does so
    # asynchronously)
    assert t["nodes"] <= 12000, t
    assert t["listings"] <= 256 and t["censuses"] <= 32, t
    # every tag stays reachable after its image directory was dropped
    first = m.repo(names[0])
    assert os.path.exists(os.path.join(first, "t0", "index.json"))
