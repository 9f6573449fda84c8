"""Fixtures for the read-only filesystem suite: real ecrfs mounts on the
local ECR emulator, seeded with umoci-built images."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import ecrclient  # noqa: E402
import layouts  # noqa: E402
from mount import ACCT, BUILD, ECRFS, REGION, Mount, mounts, sha256_file  # noqa: E402,F401
from emu import Emulator  # noqa: E402


def _mix_image(layout, base_tag, other_tag, ref):
    """A manifest that shares base_tag's first layer and adds other_tag's
    layers (so two different images share a layer)."""
    a = json.loads(layouts._blob(layout, layouts.descriptor(layout, base_tag)["digest"]))
    b = json.loads(layouts._blob(layout, layouts.descriptor(layout, other_tag)["digest"]))
    m = dict(b)
    m["layers"] = [a["layers"][0]] + b["layers"]
    data = json.dumps(m).encode()
    digest = layouts._write_blob(layout, data)
    idx = layouts._index(layout)
    idx["manifests"].append({"mediaType": layouts.INDEX.replace("index", "manifest"),
                             "digest": digest, "size": len(data),
                             "annotations": {layouts.REF: ref}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)
    return digest


def _docker_image(layout, tag, ref):
    """The same image as `tag` with Docker schema 2 media types."""
    m = json.loads(layouts._blob(layout, layouts.descriptor(layout, tag)["digest"]))
    m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    for l in m["layers"]:
        l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    data = json.dumps(m, indent=3).encode()
    digest = layouts._write_blob(layout, data)
    idx = layouts._index(layout)
    idx["manifests"].append({"mediaType": m["mediaType"], "digest": digest, "size": len(data),
                             "annotations": {layouts.REF: ref}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)
    return digest


def seed(emu, layout):
    """Pushes the suite's images; returns what the tests check against."""
    big = os.urandom((5 << 20) + 12345)  # incompressible: a multi-chunk layer
    s = {}
    s["v1"] = layouts.make_image(layout, "v1", {"/etc/v1": b"one\n", "/big.bin": big}, n_layers=2)
    s["v2"] = layouts.make_image(layout, "v2", {"/etc/v2": b"two\n"})
    s["mix"] = _mix_image(layout, "v1", "v2", "mix")
    s["docker"] = _docker_image(layout, "v2", "dock")
    s["ci"] = layouts.make_image(layout, "ci", {"/etc/ci": b"ci\n"})
    s["untagged"] = layouts.make_image(layout, "lost", {"/etc/lost": b"lost\n"})
    s["multi"] = layouts.make_multiarch_index(layout, "m1")
    ecrclient.push_layout(emu, layout, "team/app", "v1")
    ecrclient.push_layout(emu, layout, "team/app", "latest", ref="v1")  # same image, 2 tags
    ecrclient.push_layout(emu, layout, "team/app", "v2")
    ecrclient.push_layout(emu, layout, "team/app", "mix")
    ecrclient.push_layout(emu, layout, "team/app", "ci")
    ecrclient.push_layout(emu, layout, "team/app/ci", "c1", ref="ci")
    ecrclient.push_layout(emu, layout, "dock", "d1", ref="dock")
    ecrclient.push_layout(emu, layout, "multi", "m1")
    # An untagged image: pushed by digest only.
    c = ecrclient.client_for(emu)
    try:
        ecrclient._push_manifest(c, layout, "team/app", layouts.descriptor(layout, "lost"), None)
    finally:
        c.close()
    return s


@pytest.fixture(scope="session")
def seeded(emulator, tmp_path_factory):
    layout = str(tmp_path_factory.mktemp("seed") / "layout")
    return {"emu": emulator, "layout": layout, "images": seed(emulator, layout)}


@pytest.fixture
def mount(seeded, tmp_path):
    """A mount factory: mount(opts="", name="mnt", cache_dir=None, emu=None,
    env=None) -> Mount; see mount.mounts."""
    with mounts(seeded["emu"], tmp_path) as make:
        yield make


@pytest.fixture
def emu(seeded):
    """The suite's emulator with no fault injected (before and after)."""
    e = seeded["emu"]
    e.clear_faults()
    yield e
    e.clear_faults()
