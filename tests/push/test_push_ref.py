"""Copies by reference: mv TAG NEW (retag), mv into another repository
(promotion), and cp -rT between repositories in the mount
(copy_file_range of whole blobs: no layer bytes pass through cp)."""
import os

from conftest import run, single_image, sync_dir, tag_digest


def layer_avail(emu, repo, digests):
    r = emu.aws("batch-check-layer-availability", "--repository-name", repo,
                "--layer-digests", *digests)
    return all(l["layerAvailability"] == "AVAILABLE" for l in r["layers"]) and \
        len(r["layers"]) == len(digests)


def test_mv_retag_and_promote(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(5000)})
    m = mount()
    os.makedirs(m.repo("ref/src"))
    r = run("cp", "-rT", lay, m.repo("ref/src", "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    parts = emulator.count("UploadLayerPart")
    # retag within the repository: no blob moves
    os.rename(m.repo("ref/src", "v1"), m.repo("ref/src", "v2"))
    assert tag_digest(emulator, "ref/src", "v2") == info["manifest"]
    assert tag_digest(emulator, "ref/src", "v1") is None
    assert emulator.count("UploadLayerPart") == parts
    assert "v2" in os.listdir(m.repo("ref/src"))
    # promotion into a new repository: blobs streamed by the daemon, then untag
    os.makedirs(m.repo("ref/prod"))
    os.rename(m.repo("ref/src", "v2"), m.repo("ref/prod", "release"))
    assert tag_digest(emulator, "ref/prod", "release") == info["manifest"]
    assert tag_digest(emulator, "ref/src", "v2") is None
    assert layer_avail(emulator, "ref/prod", [info["config"]] + info["layers"])


def test_cp_between_repositories_by_reference(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "b"), "v1", {"/big.bin": os.urandom(3 << 20)})
    m = mount()
    os.makedirs(m.repo("ref/a"))
    r = run("cp", "-rT", lay, m.repo("ref/a", "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    # into a repository that lacks the blobs: the daemon copies them
    os.makedirs(m.repo("ref/b"))
    r = run("cp", "-rT", m.repo("ref/a", "v1"), m.repo("ref/b", "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo("ref/b", "v1")) == 0
    assert tag_digest(emulator, "ref/b", "v1") == info["manifest"]
    # into a tag of a repository that has them: no layer byte is downloaded
    # (with a fresh mount and cache, a read through cp would download it)
    m2 = mount(name="fresh")
    gets = emulator.count("BlobGet")
    r = run("cp", "-rT", m2.repo("ref/a", "v1"), m2.repo("ref/b", "v2"))
    assert r.returncode == 0, r.stderr + m2.logtext()[-3000:]
    assert sync_dir(m2.repo("ref/b", "v2")) == 0
    assert tag_digest(emulator, "ref/b", "v2") == info["manifest"]
    assert emulator.count("BlobGet") == gets
