"""Delete the way users type it (README "Delete"): unlinks inside a
committed tag only hide names in this mount, nothing is sent to ECR; the
final rmdir of the tag untags (BatchDeleteImage)."""
import errno
import os
import time

from conftest import run, single_image, tag_digest


def _push(emulator, mount, lay, repo, tags):
    """Pushes lay as each tag with a first mount, so the mount under test
    sees committed tags that ECR lists (not directories it created)."""
    m0 = mount(name="pusher")
    os.makedirs(m0.repo(repo), exist_ok=True)
    for tag in tags:
        r = run("cp", "-rT", lay, m0.repo(repo, tag))
        assert r.returncode == 0, r.stderr + m0.logtext()[-3000:]
    m0.stop()


def test_rm_r_tag_untags_quietly(emulator, mount, layout_dir):
    repo = "push/rmr"
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(500)},
                             n_layers=1)
    _push(emulator, mount, lay, repo, ["v1", "keep"])
    m = mount()
    tag = m.repo(repo, "v1")
    assert sorted(os.listdir(tag)) == ["blobs", "index.json", "oci-layout"]
    r = run("rm", "-r", tag)
    assert r.returncode == 0 and r.stderr == "", r.stderr + m.logtext()[-2000:]
    assert tag_digest(emulator, repo, "v1") is None
    assert tag_digest(emulator, repo, "keep") == info["manifest"]
    assert not os.path.exists(tag)
    assert "v1" not in os.listdir(m.repo(repo))
    assert emulator.count("BatchDeleteImage", repo=repo) == 1


def test_unlink_hides_until_listing_ttl(emulator, mount, layout_dir):
    repo = "push/hide"
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(500)})
    _push(emulator, mount, lay, repo, ["v1"])
    m = mount(opts="tag_ttl=3")
    tag = m.repo(repo, "v1")
    blobs = os.path.join(tag, "blobs", "sha256")
    layer = info["layers"][0].split(":")[1]
    assert "oci-layout" in os.listdir(tag)
    os.unlink(os.path.join(tag, "oci-layout"))
    os.unlink(os.path.join(blobs, layer))
    # gone from this mount: listing, stat, open
    assert sorted(os.listdir(tag)) == ["blobs", "index.json"]
    assert layer not in os.listdir(blobs)
    assert info["config"].split(":")[1] in os.listdir(blobs)
    for p in (os.path.join(tag, "oci-layout"), os.path.join(blobs, layer)):
        try:
            os.stat(p)
            raise AssertionError(f"{p} still stats")
        except OSError as e:
            assert e.errno == errno.ENOENT
    # blobs/sha256/ still shows files: rmdir refuses
    try:
        os.rmdir(blobs)
        raise AssertionError("rmdir of a non-empty blobs/sha256 succeeded")
    except OSError as e:
        assert e.errno == errno.ENOTEMPTY
    # nothing was sent: the tag is still in ECR
    assert emulator.count("BatchDeleteImage", repo=repo) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    # the tag stayed: after the listing TTL its files show again
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "oci-layout" in os.listdir(tag) and layer in os.listdir(blobs):
            break
        time.sleep(0.5)
    assert sorted(os.listdir(tag)) == ["blobs", "index.json", "oci-layout"]
    assert layer in os.listdir(blobs)
    with open(os.path.join(tag, "oci-layout")) as f:
        assert "imageLayoutVersion" in f.read()


def test_rmdir_tag_that_still_shows_files(emulator, mount, layout_dir):
    repo = "push/rmdironly"
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(500)})
    _push(emulator, mount, lay, repo, ["v1"])
    m = mount()
    tag = m.repo(repo, "v1")
    os.unlink(os.path.join(tag, "index.json"))
    os.rmdir(tag)
    assert tag_digest(emulator, repo, "v1") is None
