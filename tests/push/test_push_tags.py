"""Existing tags: moving a mutable tag while a reader holds the old image,
untagging with rm -r / rmdir, deleting an image by digest and a repository."""
import errno
import os

from conftest import run, sha256_file, single_image, sync_dir, tag_digest


def test_move_tag_while_reader_holds_old_image(emulator, mount, layout_dir):
    repo = "push/move"
    old_data = os.urandom(200000)
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/f": old_data})
    b, ib = single_image(str(layout_dir / "b"), "v1", {"/etc/f": os.urandom(200000)})
    m = mount()
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", a, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    old_layer = ia["layers"][0].split(":")[1]
    reader = open(m.repo(repo, "v1", "blobs", "sha256", old_layer), "rb")
    # the same name is rewritten by the push: its reader keeps the old bytes
    idx_reader = open(m.repo(repo, "v1", "index.json"), "rb")
    try:
        head = reader.read(100)
        old_idx_head = idx_reader.read(10)
        # the tag moves to image b while the reader keeps its file open
        r = run("cp", "-rT", b, m.repo(repo, "v1"))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        assert sync_dir(m.repo(repo, "v1")) == 0
        assert tag_digest(emulator, repo, "v1") == ib["manifest"]
        import hashlib
        h = hashlib.sha256(head + reader.read())
        assert h.hexdigest() == old_layer  # the old bytes, whole and right
        old_idx = old_idx_head + idx_reader.read()
        assert ia["manifest"].encode() in old_idx and ib["manifest"].encode() not in old_idx
        assert os.fstat(idx_reader.fileno()).st_size == len(old_idx)
    finally:
        reader.close()
        idx_reader.close()
    # a fresh lookup shows the new image
    new_layer = ib["layers"][0].split(":")[1]
    d = m.repo(repo, "v1", "blobs", "sha256")
    assert new_layer in os.listdir(d)
    assert sha256_file(os.path.join(d, new_layer)) == new_layer


def test_untag_delete_image_and_repository(emulator, mount, layout_dir):
    repo = "push/delete"
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": b"a\n"})
    m = mount()
    os.makedirs(m.repo(repo))
    for tag in ("v1", "v2", "v3"):
        r = run("cp", "-rT", a, m.repo(repo, tag))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    # rm -r TAG: the files only hide, the final rmdir untags
    r = run("rm", "-r", m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr
    assert tag_digest(emulator, repo, "v1") is None
    assert tag_digest(emulator, repo, "v2") == ia["manifest"]
    os.rmdir(m.repo(repo, "v2"))
    assert tag_digest(emulator, repo, "v2") is None
    # the repository still has an image: rmdir REPO is ENOTEMPTY
    try:
        os.rmdir(m.repo(repo))
        raise AssertionError("rmdir of a repository with images succeeded")
    except OSError as e:
        assert e.errno == errno.ENOTEMPTY
    # BatchDeleteImage of the last tag deletes the image (as ECR does)
    os.rmdir(m.repo(repo, "v3"))
    assert tag_digest(emulator, repo, "v3") is None
    imgs = emulator.aws("list-images", "--repository-name", repo)["imageIds"]
    assert imgs == []
    os.rmdir(m.repo(repo))
    r = emulator.aws_run("describe-repositories", "--repository-names", repo)
    assert r.returncode != 0 and "RepositoryNotFound" in r.stderr


def test_rmdir_digest_dir_deletes_image(emulator, mount, layout_dir):
    repo = "push/bydigest"
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(100)})
    m = mount()
    os.makedirs(m.repo(repo))
    for tag in ("x", "y"):
        r = run("cp", "-rT", a, m.repo(repo, tag))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    # rmdir @sha256-<hex>: the image and all its tags
    os.rmdir(m.repo(repo, "@sha256-" + ia["manifest"].split(":")[1]))
    assert tag_digest(emulator, repo, "x") is None
    assert tag_digest(emulator, repo, "y") is None
    assert emulator.aws("list-images", "--repository-name", repo)["imageIds"] == []


def test_rename_noreplace_keeps_existing_tag(emulator, mount, layout_dir):
    """renameat2(RENAME_NOREPLACE) (mv -n) onto an existing tag: EEXIST and
    both tags unchanged, also when the kernel holds a negative entry for the
    target (the tag was pushed by another mount since)."""
    import ctypes
    repo = "push/noreplace"
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/f": os.urandom(3000)})
    b, ib = single_image(str(layout_dir / "b"), "v1", {"/etc/f": os.urandom(3000)})
    m = mount(opts="neg_ttl=120")
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", a, m.repo(repo, "a"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert not os.path.exists(m.repo(repo, "b"))  # a negative entry for b
    m2 = mount(name="mnt2")
    r = run("cp", "-rT", b, m2.repo(repo, "b"))
    assert r.returncode == 0, r.stderr + m2.logtext()[-3000:]
    assert tag_digest(emulator, repo, "b") == ib["manifest"]
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_NOREPLACE = -100, 1
    rc = libc.renameat2(AT_FDCWD, m.repo(repo, "a").encode(), AT_FDCWD,
                        m.repo(repo, "b").encode(), RENAME_NOREPLACE)
    err = ctypes.get_errno()
    assert tag_digest(emulator, repo, "b") == ib["manifest"], m.logtext()[-2000:]
    assert tag_digest(emulator, repo, "a") == ia["manifest"]
    assert rc == -1 and err == errno.EEXIST


def test_push_again_after_rmdir_repository(emulator, mount, layout_dir):
    """rmdir REPO, then a new push to the same repository and tag in the same
    mount: the repository is created again (was ENOENT)."""
    repo = "push/recreate"
    a, ia = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(100)})
    b, ib = single_image(str(layout_dir / "b"), "v1", {"/etc/b": os.urandom(100)})
    m = mount()
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", a, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "v1") == ia["manifest"]
    os.rmdir(m.repo(repo, "v1"))
    os.rmdir(m.repo(repo))
    r = emulator.aws_run("describe-repositories", "--repository-names", repo)
    assert r.returncode != 0 and "RepositoryNotFound" in r.stderr
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", b, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == ib["manifest"]
