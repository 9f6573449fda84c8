"""Other writers: skopeo copy into the mount (temporary names + rename),
rsync -a (.name.XXXXXX + rename), cp -a (times/modes/owners set after the
last file), cp -r onto a new name; a multi-arch index."""
import json
import os

import layouts
from conftest import run, single_image, skopeo_pull, sync_dir, tag_digest


def test_skopeo_copy_into_mount(emulator, mount, layout_dir, tmp_path):
    lay, info = single_image(str(layout_dir / "s"), "v1",
                             {"/big.bin": os.urandom(6 << 20), "/etc/s": b"s\n"}, n_layers=2)
    m = mount()
    repo = "push/skopeo"
    os.makedirs(m.repo(repo))
    dest = m.repo(repo, "t1")
    r = run("skopeo", "copy", f"oci:{lay}:v1", f"oci:{dest}:t1")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(dest) == 0
    assert tag_digest(emulator, repo, "t1") == info["manifest"]
    assert skopeo_pull(emulator, repo, "t1", str(tmp_path / "pulled")) == info["manifest"]
    # the pushed tag reads back through the mount with skopeo, too
    r = run("skopeo", "copy", f"oci:{m.repo(repo, 't1')}:t1", f"oci:{tmp_path / 'back'}:t1")
    assert r.returncode == 0, r.stderr


def test_rsync_into_mount(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "r"), "v1", {"/etc/r": os.urandom(3000)})
    m = mount()
    repo = "push/rsync"
    os.makedirs(m.repo(repo, "v1"))
    r = run("rsync", "-a", lay + "/", m.repo(repo, "v1") + "/")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]


def test_cp_a_and_cp_r(emulator, mount, layout_dir):
    lay, info = single_image(str(layout_dir / "a"), "v1", {"/etc/a": os.urandom(2000)})
    m = mount()
    repo = "push/cpa"
    os.makedirs(m.repo(repo))
    r = run("cp", "-a", lay, m.repo(repo, "v1"))  # v1 does not exist: cp -a makes it
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    r = run("cp", "-r", lay, m.repo(repo, "v2"))
    assert r.returncode == 0, r.stderr
    assert tag_digest(emulator, repo, "v2") == info["manifest"]
    # cp -r into an EXISTING tag would make a directory "a" inside it: refused
    r = run("cp", "-r", lay, m.repo(repo, "v2"))
    assert r.returncode != 0
    assert "use cp -rT" in m.logtext()


def test_multiarch_index(emulator, mount, layout_dir, tmp_path):
    lay = str(layout_dir / "m")
    info = layouts.make_multiarch_index(lay, "m1")
    # a layout whose index.json names the index and its children (refs m1,
    # m1-linux-amd64, ...): the candidate is the one whose ref.name is the tag
    m = mount()
    repo = "push/multi"
    os.makedirs(m.repo(repo))
    r = run("cp", "-rT", lay, m.repo(repo, "m1"))
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(repo, "m1")) == 0
    assert tag_digest(emulator, repo, "m1") == info["index"]
    got = emulator.aws("batch-get-image", "--repository-name", repo, "--image-ids",
                       "imageTag=m1")["images"][0]
    assert got["imageManifestMediaType"] == "application/vnd.oci.image.index.v1+json"
    for d in info["manifests"].values():
        assert emulator.aws("describe-images", "--repository-name", repo, "--image-ids",
                            f"imageDigest={d}")["imageDetails"]
    r = run("skopeo", "copy", "--all", "--src-tls-verify=false",
            f"docker://{emulator.registry}/111111111111/us-east-1/{repo}:m1",
            f"oci:{tmp_path / 'pulled'}:m1")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "pulled" / "index.json") as f:
        assert json.load(f)["manifests"][0]["digest"] == info["index"]


def test_skopeo_many_layers_in_parallel(emulator, mount, layout_dir):
    """skopeo writes several blobs at once: several layer uploads run
    concurrently, each with its parts in order."""
    files = {f"/l{i:02d}.bin": os.urandom(2 << 20) for i in range(8)}
    lay, info = single_image(str(layout_dir / "many"), "v1", files, n_layers=8)
    m = mount()
    repo = "push/many"
    os.makedirs(m.repo(repo))
    dest = m.repo(repo, "v1")
    r = run("skopeo", "copy", f"oci:{lay}:v1", f"oci:{dest}:v1")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(dest) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    assert len(info["layers"]) == 8
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", *info["layers"])
    assert all(l["layerAvailability"] == "AVAILABLE" for l in chk["layers"])


def test_rsync_twice_onto_committed_tag(emulator, mount, layout_dir):
    # rsync renames .index.json.XXXXXX onto index.json: over a tag committed
    # in this mount that rename starts a new version (as a create would)
    lay_a, info_a = single_image(str(layout_dir / "ra"), "v1", {"/etc/r": os.urandom(3000)})
    lay_b, info_b = single_image(str(layout_dir / "rb"), "v1", {"/etc/r": os.urandom(3000)})
    assert info_a["manifest"] != info_b["manifest"]
    m = mount()
    repo = "push/rsync2"
    tag = m.repo(repo, "v1")
    os.makedirs(tag)
    r = run("rsync", "-a", lay_a + "/", tag + "/")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(tag) == 0
    assert tag_digest(emulator, repo, "v1") == info_a["manifest"]
    r = run("rsync", "-a", lay_b + "/", tag + "/")
    assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
    assert sync_dir(tag) == 0, m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "v1") == info_b["manifest"], m.logtext()[-3000:]
