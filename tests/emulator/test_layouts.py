"""The layout builders other suites seed images with."""
import gzip
import io
import json
import os
import subprocess
import tarfile

import layouts


def blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def layer_files(layout, digest):
    out = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, digest)))) as t:
        for m in t:
            if m.isfile():
                out[m.name.lstrip("./")] = t.extractfile(m).read()
    return out


def test_make_image_spreads_files_over_layers(tmp_path):
    layout = str(tmp_path / "l")
    files = {"/a": b"A", "/dir/b": b"B", "/c": b"C"}
    info = layouts.make_image(layout, "v1", files, n_layers=2)
    assert len(info["layers"]) == 2
    found = {}
    for d in info["layers"]:
        found.update(layer_files(layout, d))
        # Complete tar archives: GNU tar reads them without complaint.
        r = subprocess.run(["tar", "-tzf", os.path.join(layout, "blobs", "sha256",
                                                          d.split(":")[1])],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert found == {"a": b"A", "dir/b": b"B", "c": b"C"}
    m = json.loads(blob(layout, info["manifest"]))
    assert m["config"]["digest"] == info["config"]
    # umoci itself can unpack it: a real image.
    r = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:v1",
                        str(tmp_path / "bundle")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bundle" / "rootfs" / "dir" / "b").read_bytes() == b"B"


def test_make_multiarch_index(tmp_path):
    layout = str(tmp_path / "m")
    mi = layouts.make_multiarch_index(layout, "multi", ["linux/amd64", "linux/arm64"])
    idx = json.loads(blob(layout, mi["index"]))
    assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    plats = {(m["platform"]["os"], m["platform"]["architecture"]): m["digest"]
             for m in idx["manifests"]}
    assert plats == {("linux", "amd64"): mi["manifests"]["linux/amd64"],
                     ("linux", "arm64"): mi["manifests"]["linux/arm64"]}
    for plat, d in mi["manifests"].items():
        cfg = json.loads(blob(layout, json.loads(blob(layout, d))["config"]["digest"]))
        assert cfg["architecture"] == plat.split("/")[1]
    top = layouts.descriptor(layout, "multi")
    assert top["digest"] == mi["index"]
    r = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:multi"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == idx
