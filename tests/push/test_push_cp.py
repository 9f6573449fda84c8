"""Push by cp: `mkdir -p REPO && cp -rT LAYOUT TAG` and friends, checked with
the AWS CLI and with skopeo against the emulator's backing registry."""
import errno
import json
import os
import shutil

from conftest import ACCT, REGION, run, single_image, skopeo_pull, sync_dir, tag_digest


def count(emu, op, repo):
    return emu.count(op, repo=repo)


def test_cp_rT_new_repository(emulator, mount, layout_dir, tmp_path):
    big = os.urandom((12 << 20) + 777)  # incompressible: a layer of 2 parts
    lay, info = single_image(str(layout_dir / "a"), "v1",
                             {"/big.bin": big, "/etc/a": b"a\n"}, n_layers=2)
    m = mount()
    repo = "push/basic"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert run("sync", m.repo(repo, "v1")).returncode == 0
    # ECR (AWS CLI) has the tag at the layout's manifest digest, with its exact bytes
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    got = emulator.aws("batch-get-image", "--repository-name", repo, "--image-ids",
                       "imageTag=v1")["images"][0]
    with open(os.path.join(lay, "blobs", "sha256", info["manifest"].split(":")[1]), "rb") as f:
        assert got["imageManifest"].encode() == f.read()
    assert got["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # an independent client reads the same image from the backing registry
    assert skopeo_pull(emulator, repo, "v1", str(tmp_path / "pulled")) == info["manifest"]
    # the manifest went to PutImage, never through the layer upload
    assert count(emulator, "PutImage", repo) == 1
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", info["manifest"], info["config"], *info["layers"])
    avail = {l["layerDigest"]: l["layerAvailability"] for l in chk["layers"]}
    assert all(avail[d] == "AVAILABLE" for d in [info["config"]] + info["layers"])
    assert [f["failureCode"] for f in chk.get("failures", [])] in ([], ["MissingLayerDigest"]) \
        and avail.get(info["manifest"], "UNAVAILABLE") == "UNAVAILABLE"
    # (umoci leaves older configs in blobs/: they are uploaded too, harmlessly)
    assert count(emulator, "UploadLayerPart", repo) >= 4  # the big layer took 2 parts
    # the pushed tag is now browsable through the mount
    names = os.listdir(m.repo(repo, "v1", "blobs", "sha256"))
    assert info["manifest"].split(":")[1] in names

    # pushing the same layout again uploads nothing and keeps the digest
    parts = count(emulator, "UploadLayerPart", repo)
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert count(emulator, "UploadLayerPart", repo) == parts
    assert tag_digest(emulator, repo, "v1") == info["manifest"]


def test_incomplete_layout_is_not_pushed(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "b"), "v1", {"/etc/b": b"b\n"})
    os.unlink(os.path.join(lay, "blobs", "sha256", info["layers"][0].split(":")[1]))
    m = mount()
    repo = "push/incomplete"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr  # an incomplete push cannot fail a close
    assert sync_dir(m.repo(repo, "v1")) == errno.ENODATA
    r = run("sync", m.repo(repo, "v1"))  # coreutils' sync TAGDIR says so too
    assert r.returncode != 0 and "No data available" in r.stderr
    assert info["layers"][0] in m.logtext()  # the log says what is missing
    assert tag_digest(emulator, repo, "v1") is None
    assert count(emulator, "PutImage", repo) == 0


def test_corrupted_blob_fails_cp(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "c"), "v1", {"/etc/c": os.urandom(4096)})
    p = os.path.join(lay, "blobs", "sha256", info["layers"][0].split(":")[1])
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 0xFF
    os.chmod(p, 0o644)
    with open(p, "wb") as f:
        f.write(data)
    m = mount()
    repo = "push/corrupt"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode != 0
    assert "Input/output error" in r.stderr
    assert sync_dir(m.repo(repo, "v1")) != 0
    assert tag_digest(emulator, repo, "v1") is None
    assert count(emulator, "PutImage", repo) == 0


def test_commit_before_the_writer_is_done(emulator, mount, layout_dir):
    """The repository already has the layers, so the set is complete (and
    committed) at the manifest's close; the writer still creates the layer
    files afterwards with O_EXCL, as cp does in a directory it made."""
    lay, info = single_image(str(layout_dir / "e"), "v1", {"/etc/e": os.urandom(5000)})
    m = mount()
    repo = "push/early"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "base"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    d = m.repo(repo, "v1")
    os.makedirs(os.path.join(d, "blobs", "sha256"))
    order = ["oci-layout", "index.json", "blobs/sha256/" + info["manifest"].split(":")[1]]
    order += ["blobs/sha256/" + x.split(":")[1] for x in [info["config"]] + info["layers"]]
    for i, rel in enumerate(order):
        with open(os.path.join(lay, rel), "rb") as f:
            data = f.read()
        fd = os.open(os.path.join(d, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
        if i == 2:  # complete (committed) at the manifest's close
            assert emulator.count("PutImage", repo=repo) == 2
    assert sync_dir(d) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    # after sync the tag directory shows the committed image
    assert sorted(os.listdir(d)) == ["blobs", "index.json", "oci-layout"]
    with open(os.path.join(d, "index.json")) as f:
        assert info["manifest"] in f.read()


def test_files_after_commit_are_not_uploaded(emulator, mount, layout_dir):
    """A layout with two images where the tag selects one: the writer's
    files created after the commit (the other image's blobs) are hashed and
    dropped, never uploaded."""
    import json
    import subprocess
    import sys
    import layouts
    repo = "push/aftercommit"
    lay = str(layout_dir / "two")
    iv = layouts.make_image(lay, "v1", {"/etc/v1": os.urandom(2000)})
    io = layouts.make_image(lay, "other", {f"/o{i}.bin": os.urandom(1 << 20) for i in range(2)},
                            n_layers=2)
    m = mount()
    tag = m.repo(repo, "v1")
    os.makedirs(tag)
    first = ["oci-layout", "index.json"] + [
        "blobs/sha256/" + d.split(":")[1] for d in [iv["manifest"], iv["config"]] + iv["layers"]]
    later = ["blobs/sha256/" + d.split(":")[1]
             for d in [io["manifest"], io["config"]] + io["layers"]]
    # one writer: the selected image first (its last close commits), then
    # the other image's blobs; a marker line tells where the commit was
    writer = r"""
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
first, later = json.loads(sys.argv[3]), json.loads(sys.argv[4])
os.makedirs(os.path.join(dst, "blobs", "sha256"))
for n in first:
    shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))
print("committed", flush=True)
sys.stdin.readline()
for n in later:
    shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))
print("done", flush=True)
"""
    p = subprocess.Popen([sys.executable, "-c", writer, lay, tag, json.dumps(first),
                          json.dumps(later)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "committed", p.stderr.read()
        assert tag_digest(emulator, repo, "v1") == iv["manifest"]
        initiated = count(emulator, "InitiateLayerUpload", repo)
        parts = count(emulator, "UploadLayerPart", repo)
        checks = count(emulator, "BatchCheckLayerAvailability", repo)
        p.stdin.write("\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out.strip() == "done", err + m.logtext()[-3000:]
    assert count(emulator, "InitiateLayerUpload", repo) == initiated
    assert count(emulator, "UploadLayerPart", repo) == parts
    assert count(emulator, "BatchCheckLayerAvailability", repo) == checks
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", io["config"], *io["layers"])
    assert not [l for l in chk.get("layers", []) if l["layerAvailability"] == "AVAILABLE"]
    assert sync_dir(tag) == 0
    assert tag_digest(emulator, repo, "v1") == iv["manifest"]
    assert tag_digest(emulator, repo, "other") is None


def test_pushed_image_is_read_without_batch_get_image(emulator, mount, layout_dir):
    """The manifest this mount pushed is known to it: reading the new tag's
    layout asks ECR for the listing, never for the manifest (BatchGetImage,
    which would also count as a pull), and gives the layout's bytes."""
    lay, info = single_image(str(layout_dir / "k"), "v1", {"/etc/k": b"k\n"})
    m = mount()
    repo = "push/known"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "v1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    hexd = info["manifest"].split(":")[1]
    with open(m.repo(repo, "v1", "blobs", "sha256", hexd), "rb") as f:
        got = f.read()
    with open(os.path.join(lay, "blobs", "sha256", hexd), "rb") as f:
        assert got == f.read()
    idx = json.load(open(m.repo(repo, "v1", "index.json")))
    assert idx["manifests"][0]["digest"] == info["manifest"]
    assert count(emulator, "BatchGetImage", repo) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
