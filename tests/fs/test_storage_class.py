"""The archive storage class: user.ecr.status and archived_at, reads of an
archived image fail with ENOMEDIUM and a log line saying how to restore
it, and setfattr user.ecr.storage_class restores it."""
import errno
import json
import os
import subprocess
import time

import pytest

import ecrclient
import layouts

REPO = "archive/app"


@pytest.fixture(scope="module")
def arch(seeded):
    """One image of its own (its layers used by no other image here)."""
    emu = seeded["emu"]
    layout = seeded["layout"]
    base = layouts.descriptor(layout, "v2")
    man = json.loads(layouts._blob(layout, base["digest"]))
    ecrclient.create_repository(emu, REPO)
    c = ecrclient.client_for(emu)
    try:
        for b in [man["config"]] + man["layers"]:
            c.push_blob(REPO, layouts._blob(layout, b["digest"]), b["digest"])
        data = json.dumps(dict(man, annotations={"archive": "1"})).encode()
        c.put_image(REPO, data, base["mediaType"], "old")
    finally:
        c.close()
    return {"emu": emu, "layer": man["layers"][0]["digest"].split(":")[1]}


def storage(emu, target):
    c = ecrclient.client_for(emu)
    try:
        c.call("UpdateImageStorageClass", repositoryName=REPO, imageId={"imageTag": "old"},
               targetStorageClass=target)
    finally:
        c.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_archived_image_read_fails_then_setfattr_restores(arch, mount):
    emu = arch["emu"]
    m = mount("tag_ttl=1")
    tag = m.repo(REPO, "old")
    layer = os.path.join(tag, "blobs", "sha256", arch["layer"])
    assert os.getxattr(tag, "user.ecr.status") == b"ACTIVE"
    assert os.getxattr(tag, "user.ecr.storage_class") == b"STANDARD"
    read(os.path.join(tag, "index.json"))  # the manifest is cached from now on
    storage(emu, "ARCHIVE")
    time.sleep(1.2)  # the listing's TTL
    assert os.getxattr(tag, "user.ecr.status") == b"ARCHIVED"
    assert os.getxattr(tag, "user.ecr.storage_class") == b"ARCHIVE"
    assert os.getxattr(tag, "user.ecr.archived_at").decode().endswith("Z")
    # browsing still works: the manifest is kept; the layer cannot be pulled
    assert os.listdir(os.path.join(tag, "blobs", "sha256"))
    with pytest.raises(OSError) as ei:
        read(layer)
    assert ei.value.errno == errno.ENOMEDIUM
    log = m.logtext()
    assert "archived" in log and "setfattr -n user.ecr.storage_class -v STANDARD" in log
    # other names and values
    with pytest.raises(OSError) as ei:
        os.setxattr(tag, "user.ecr.digest", b"x")
    assert ei.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as ei:
        os.setxattr(tag, "user.ecr.storage_class", b"GLACIER")
    assert ei.value.errno == errno.EINVAL
    subprocess.run(["setfattr", "-n", "user.ecr.storage_class", "-v", "STANDARD", tag],
                   check=True)
    out = emu.aws("describe-images", "--repository-name", REPO)["imageDetails"]
    assert out[0].get("imageStatus", "ACTIVE") == "ACTIVE"
    assert os.getxattr(tag, "user.ecr.status") == b"ACTIVE"
    assert len(read(layer)) > 0


def test_archived_image_not_cached_fails_at_open(arch, mount):
    emu = arch["emu"]
    storage(emu, "ARCHIVE")
    try:
        m = mount()
        tag = m.repo(REPO, "old")
        with pytest.raises(OSError) as ei:
            read(os.path.join(tag, "index.json"))
        assert ei.value.errno == errno.ENOMEDIUM
        log = m.logtext()
        assert "cannot be pulled" in log and "setfattr -n user.ecr.storage_class" in log
        os.setxattr(tag, "user.ecr.storage_class", b"STANDARD")
        assert json.loads(read(os.path.join(tag, "index.json")))["manifests"]
    finally:
        storage(emu, "STANDARD")


def test_storage_class_read_only_mount(arch, mount):
    m = mount("ro")
    with pytest.raises(OSError) as ei:
        os.setxattr(m.repo(REPO, "old"), "user.ecr.storage_class", b"ARCHIVE")
    assert ei.value.errno == errno.EROFS
