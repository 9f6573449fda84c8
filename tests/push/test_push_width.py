"""Layers of one cp -rT upload at once (README "Push": one part per layer in
flight, several layers at once): a layer's close leaves its last parts to
the daemon, so cp writes the next file meanwhile. Checked from the
emulator's request log with its per-API-call delay on, so that requests
last long enough to overlap visibly (a part lasts longer than cp takes to
write the next layer, even in a sanitizer build on a loaded machine)."""
import os

from conftest import run, single_image, sync_dir, tag_digest

MIB = 1 << 20


def _spans(emulator, op, repo):
    return [(e["ts"], e["ts"] + e["ms"] / 1000.0, e) for e in emulator.log()
            if e.get("op") == op and e.get("repo") == repo]


def _most_at_once(spans):
    """The largest number of the (start, end) spans open at one instant."""
    edges = sorted([(s, 1) for s, _, _ in spans] + [(t, -1) for _, t, _ in spans],
                   key=lambda x: (x[0], x[1]))
    now = best = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


def test_layers_upload_in_parallel(emulator, mount, layout_dir):
    repo = "push/width"
    emulator.aws("create-repository", "--repository-name", repo)
    # random bytes stay ~11 MiB gzipped: two 10 MiB-part requests per layer
    files = {f"/l{i}.bin": os.urandom(11 * MIB) for i in range(4)}
    lay, info = single_image(str(layout_dir / "w"), "v1", files, n_layers=4)
    m = mount()
    emulator.reset_log()
    with emulator.network(api_ms=1000):
        r = run("cp", "-rT", lay, m.repo(repo, "v1"))
        assert r.returncode == 0, r.stderr + m.logtext()[-3000:]
        assert sync_dir(m.repo(repo, "v1")) == 0
    assert tag_digest(emulator, repo, "v1") == info["manifest"]
    parts = _spans(emulator, "UploadLayerPart", repo)
    assert len(parts) >= 8
    # ECR refuses a part that is not the next byte of its upload, so two
    # parts accepted at the same time are parts of different layers
    assert all(e["status"] == 200 for _, _, e in parts), [e for _, _, e in parts]
    at_once = _most_at_once(parts)
    assert at_once >= 2, "\n".join(
        f"{e['ts']:.3f} {e.get('ms')} {e['op']} {e.get('conn')} {e.get('status')}"
        for e in emulator.log() if e.get("repo") == repo)
    # at most the daemon's part-buffer budget (41 MiB: three bodies of 10 MiB parts)
    assert at_once <= 3
