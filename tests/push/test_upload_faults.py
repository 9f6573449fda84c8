"""The layer upload when ECR misbehaves mid-upload: a part it kept only the
start of (InvalidLayerPartException with lastValidByteReceived inside the
part), an upload it lost (UploadNotFoundException), and throttling or 5xx
on UploadLayerPart and CompleteLayerUpload. Each push is checked with
independent clients (AWS CLI, skopeo from the backing registry).

Files are copied one by one, the big layer first, and the next file only
once the layer's upload ended (a layer's close leaves its last parts to the
daemon), so the emulator's Nth UploadLayerPart is a known part: the layer
is 33 MiB in the emulator's 10 MiB parts (requests 1-4: 10, 10, 10, 3 MiB);
the configs (umoci leaves an old one) come after, one small part each."""
import json
import os
import time

from conftest import run, single_image, skopeo_pull, sync_dir, tag_digest

MIB = 1 << 20


def _layout(layout_dir, name):
    lay, info = single_image(str(layout_dir / name), "v1", {"/big.bin": os.urandom(33 * MIB)})
    blobs = os.path.join(lay, "blobs", "sha256")
    layer = info["layers"][0]
    assert os.path.getsize(os.path.join(blobs, layer.split(":")[1])) > 30 * MIB
    # JSON blobs that are not manifests are uploaded as layers (one part)
    n_cfg = 0
    for h in os.listdir(blobs):
        if "sha256:" + h == layer:
            continue
        with open(os.path.join(blobs, h), "rb") as f:
            doc = json.loads(f.read())
        n_cfg += "layers" not in doc and "manifests" not in doc
    info["n_cfg"] = n_cfg
    return lay, info


def _layer_done(emulator, repo, timeout=120):
    """Waits until a CompleteLayerUpload of repo succeeded, or its retry
    found the upload consumed (a lost reply), or timeout seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in emulator.log():
            if e.get("op") == "CompleteLayerUpload" and e.get("repo") == repo and \
               (e.get("status") == 200 or e.get("code") == "UploadNotFoundException"):
                return
        time.sleep(0.05)


def _cp_in_order(lay, info, dest, emulator=None, repo=None):
    """cp of every file of the layout, the layer first (with emulator and
    repo: the rest once its upload ended), index.json last. Returns the
    first failing cp (CompletedProcess) or None."""
    blobs = os.path.join(lay, "blobs", "sha256")
    layer = info["layers"][0].split(":")[1]
    os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
    names = [layer] + sorted(h for h in os.listdir(blobs) if h != layer)
    steps = [(os.path.join(blobs, h), os.path.join(dest, "blobs", "sha256", h)) for h in names]
    steps += [(os.path.join(lay, f), os.path.join(dest, f)) for f in ("oci-layout", "index.json")]
    for i, (src, dst) in enumerate(steps):
        r = run("cp", src, dst)
        if r.returncode != 0:
            return r
        if i == 0 and emulator is not None:
            _layer_done(emulator, repo)
    return None


def _codes(emulator, op, repo):
    return [e.get("code") for e in emulator.log() if e.get("op") == op and e.get("repo") == repo]


def _check_pushed(emulator, m, repo, info, tmp_path):
    assert sync_dir(m.repo(repo, "v1")) == 0, m.logtext()[-3000:]
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    chk = emulator.aws("batch-check-layer-availability", "--repository-name", repo,
                       "--layer-digests", *info["layers"])
    assert [l["layerAvailability"] for l in chk["layers"]] == ["AVAILABLE"]
    # skopeo verifies every blob's digest while it copies from the registry
    dest = tmp_path / ("pulled-" + repo.replace("/", "-"))
    assert skopeo_pull(emulator, repo, "v1", str(dest)) == info["manifest"]
    got = dest / "blobs" / "sha256" / info["layers"][0].split(":")[1]
    assert got.stat().st_size > 30 * MIB


def _fresh(emulator, mount, layout_dir, repo, name):
    """A new repository, a new layout and a mount: (mount, layout, info)."""
    emulator.aws("create-repository", "--repository-name", repo)
    lay, info = _layout(layout_dir, name)
    return mount(), lay, info


def _cp_with_faults(emulator, m, lay, info, repo, *faults):
    """cp of the layout to repo:v1 while the faults are set (each a dict of
    emulator.fault arguments, repo filled in); the failed cp or None."""
    for f in faults:
        emulator.fault(repo=repo, **f)
    try:
        return _cp_in_order(lay, info, m.repo(repo, "v1"), emulator, repo)
    finally:
        emulator.clear_faults()


def test_part_kept_in_part_rest_joined(emulator, mount, layout_dir, tmp_path):
    """ECR keeps only 6 MiB of the second 10 MiB part: the 4 MiB rest goes out
    joined to the next bytes (a 4 MiB part in the middle would fail
    CompleteLayerUpload with LayerPartTooSmallException)."""
    repo = "push/midpart"
    m, lay, info = _fresh(emulator, mount, layout_dir, repo, "mp")
    bad = _cp_with_faults(emulator, m, lay, info, repo,
                          dict(kind="partial_part", op="UploadLayerPart", nth=2,
                               keep_bytes=6 * MIB))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    parts = _codes(emulator, "UploadLayerPart", repo)
    assert parts.count("InvalidLayerPartException") == 1
    # 10, 6 (kept), 10 (4 of the rest + 6), 7: the layer; then the configs
    assert len(parts) == 4 + info["n_cfg"], parts
    assert "LayerPartTooSmallException" not in _codes(emulator, "CompleteLayerUpload", repo)
    _check_pushed(emulator, m, repo, info, tmp_path)


def test_upload_lost_after_first_part_restarts(emulator, mount, layout_dir, tmp_path):
    """UploadNotFound on the second part of a layer written through cp: every
    byte is still in the daemon's spill file, so the upload starts again
    (InitiateLayerUpload) and cp never sees it; the log names the blob and
    the repository."""
    repo = "push/lost"
    m, lay, info = _fresh(emulator, mount, layout_dir, repo, "lost")
    layer_hex = info["layers"][0].split(":")[1]
    bad = _cp_with_faults(emulator, m, lay, info, repo,
                          dict(kind="upload_lost", op="UploadLayerPart", nth=2))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    log = m.logtext()
    line = [l for l in log.splitlines() if "UploadNotFound" in l and "starting it again" in l]
    assert line, log[-3000:]
    assert layer_hex in line[0] and repo in line[0]
    assert _codes(emulator, "UploadLayerPart", repo).count("UploadNotFoundException") == 1
    assert emulator.count("InitiateLayerUpload", repo=repo) == 2 + info["n_cfg"]
    _check_pushed(emulator, m, repo, info, tmp_path)


def test_upload_lost_on_first_part_restarts(emulator, mount, layout_dir, tmp_path):
    """UploadNotFound on a layer's first part: the part is still in memory,
    the upload starts again (InitiateLayerUpload) and cp never sees it."""
    repo = "push/lostfirst"
    m, lay, info = _fresh(emulator, mount, layout_dir, repo, "lf")
    bad = _cp_with_faults(emulator, m, lay, info, repo,
                          dict(kind="upload_lost", op="UploadLayerPart", nth=1))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    assert _codes(emulator, "UploadLayerPart", repo).count("UploadNotFoundException") == 1
    # the layer's upload twice, each config's once
    assert emulator.count("InitiateLayerUpload", repo=repo) == 2 + info["n_cfg"]
    _check_pushed(emulator, m, repo, info, tmp_path)


def test_throttling_and_5xx_retried(emulator, mount, layout_dir, tmp_path):
    """ThrottlingException, 500 and 503 on UploadLayerPart and
    CompleteLayerUpload are retried (net/http: jittered exponential backoff)
    and the push succeeds with exact bytes."""
    repo = "push/throttle"
    m, lay, info = _fresh(emulator, mount, layout_dir, repo, "th")
    before = json.loads(open(m.path(".ecrfs", "stats")).read())["http"]["retries"]
    bad = _cp_with_faults(
        emulator, m, lay, info, repo,
        # part requests: 1 ok, 2 throttled, 3 (its retry) ok, 4 500, 5 503, 6 ok...
        dict(kind="throttle", op="UploadLayerPart", nth=2),
        dict(kind="http500", op="UploadLayerPart", nth=4),
        dict(kind="http503", op="UploadLayerPart", nth=5),
        # the layer's CompleteLayerUpload: 503, throttled, 500, then it goes through
        dict(kind="http503", op="CompleteLayerUpload", nth=1),
        dict(kind="throttle", op="CompleteLayerUpload", nth=2),
        dict(kind="http500", op="CompleteLayerUpload", nth=3))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    parts = _codes(emulator, "UploadLayerPart", repo)
    assert parts.count("ThrottlingException") == 1
    assert parts.count("ServerException") == 1
    assert parts.count("ServiceUnavailableException") == 1
    done = _codes(emulator, "CompleteLayerUpload", repo)
    assert done[:3] == ["ServiceUnavailableException", "ThrottlingException", "ServerException"]
    # every fault was retried by the client, not turned into a new upload
    assert emulator.count("InitiateLayerUpload", repo=repo) == 1 + info["n_cfg"]
    after = json.loads(open(m.path(".ecrfs", "stats")).read())["http"]["retries"]
    assert after - before >= 6
    _check_pushed(emulator, m, repo, info, tmp_path)


def test_upload_lost_during_copy_by_reference_restarts(emulator, mount, layout_dir, tmp_path):
    """A promotion (mv of a tag into another repository) streams the layer
    from the source's download URL: when ECR loses that upload after its
    first part, the daemon fetches the bytes again from the source and
    starts a new upload; the mv succeeds."""
    src, dst = "push/lostsrc", "push/lostdst"
    emulator.aws("create-repository", "--repository-name", src)
    emulator.aws("create-repository", "--repository-name", dst)
    lay, info = _layout(layout_dir, "ref")
    m = mount()
    bad = _cp_in_order(lay, info, m.repo(src, "v1"))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    assert sync_dir(m.repo(src, "v1")) == 0
    # the destination's third part request is one of the layer's, not its first
    # (the config, one part, may come before or after the layer)
    emulator.fault(kind="upload_lost", op="UploadLayerPart", repo=dst, nth=3)
    try:
        os.rename(m.repo(src, "v1"), m.repo(dst, "v1"))
    finally:
        emulator.clear_faults()
    assert _codes(emulator, "UploadLayerPart", dst).count("UploadNotFoundException") == 1
    # only what the image references is copied: its config once, the layer twice
    assert emulator.count("InitiateLayerUpload", repo=dst) == 3
    assert "starting it again" in m.logtext()
    _check_pushed(emulator, m, dst, info, tmp_path)
    assert tag_digest(emulator, src, "v1") is None


def test_complete_reply_lost(emulator, mount, layout_dir, tmp_path):
    """CompleteLayerUpload done but its reply lost: the client's retry finds
    the upload consumed (UploadNotFoundException); the layer is there
    (BatchCheckLayerAvailability), so the file succeeds."""
    repo = "push/completelost"
    m, lay, info = _fresh(emulator, mount, layout_dir, repo, "cl")
    bad = _cp_with_faults(emulator, m, lay, info, repo,
                          dict(kind="drop_reply", op="CompleteLayerUpload", nth=1))
    assert bad is None, bad.stderr + m.logtext()[-3000:]
    done = _codes(emulator, "CompleteLayerUpload", repo)
    assert "UploadNotFoundException" in done, done
    assert emulator.count("InitiateLayerUpload", repo=repo) == 1 + info["n_cfg"]
    _check_pushed(emulator, m, repo, info, tmp_path)
