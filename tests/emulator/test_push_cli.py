"""A push with the AWS CLI's low-level commands, read back by skopeo from
the backing registry: what ECR stored is exactly what was sent."""
import hashlib
import json
import os
import subprocess

import layouts


def _sha(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def _blob(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":")[1])


def test_cli_low_level_push_then_skopeo_copy(emu, tmp_path):
    layout = str(tmp_path / "src")
    big = os.urandom(6 * 1024 * 1024)  # incompressible: the layer needs 2 parts of 5 MiB+
    info = layouts.make_image(layout, "v1", {"/data/big": big, "/etc/motd": b"hello\n"},
                              n_layers=2)
    repo = "cli/push"
    emu.aws("create-repository", "--repository-name", repo)
    blobs = [info["config"]] + info["layers"]
    chk = emu.aws("batch-check-layer-availability", "--repository-name", repo,
                  "--layer-digests", *blobs)
    assert chk["layers"] == [] and len(chk["failures"]) == len(blobs)

    for d in blobs:
        path = _blob(layout, d)
        size = os.path.getsize(path)
        up = emu.aws("initiate-layer-upload", "--repository-name", repo)
        part = 5 * 1024 * 1024
        assert up["partSize"] >= part
        off = 0
        while off < size:
            n = min(part, size - off)
            chunk = tmp_path / "part"
            with open(path, "rb") as f:
                f.seek(off)
                chunk.write_bytes(f.read(n))
            r = emu.aws("upload-layer-part", "--repository-name", repo, "--upload-id",
                        up["uploadId"], "--part-first-byte", off, "--part-last-byte",
                        off + n - 1, "--layer-part-blob", f"fileb://{chunk}")
            assert r["lastByteReceived"] == off + n - 1
            off += n
        done = emu.aws("complete-layer-upload", "--repository-name", repo, "--upload-id",
                       up["uploadId"], "--layer-digests", d)
        assert done["layerDigest"] == d

    chk = emu.aws("batch-check-layer-availability", "--repository-name", repo,
                  "--layer-digests", *blobs)
    assert sorted(l["layerDigest"] for l in chk["layers"]) == sorted(blobs)
    assert all(l["layerAvailability"] == "AVAILABLE" for l in chk["layers"])
    assert emu.count("UploadLayerPart", repo=repo, status=200) >= 4  # big layer in 2 parts

    mpath = _blob(layout, info["manifest"])
    put = emu.aws("put-image", "--repository-name", repo, "--image-tag", "v1",
                  "--image-manifest", f"file://{mpath}", "--image-manifest-media-type",
                  "application/vnd.oci.image.manifest.v1+json")
    assert put["image"]["imageId"] == {"imageDigest": info["manifest"], "imageTag": "v1"}

    desc = emu.aws("describe-images", "--repository-name", repo)["imageDetails"]
    assert len(desc) == 1 and desc[0]["imageTags"] == ["v1"]
    assert desc[0]["imageDigest"] == info["manifest"]
    assert desc[0]["imageSizeInBytes"] == sum(os.path.getsize(_blob(layout, l))
                                              for l in info["layers"])

    # An independent client reads the registry the emulator stored into.
    ref = f"docker://{emu.registry}/111111111111/us-east-1/{repo}:v1"
    out = str(tmp_path / "out")
    r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref, f"oci:{out}:v1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    idx = json.load(open(os.path.join(out, "index.json")))
    assert idx["manifests"][0]["digest"] == info["manifest"]
    for d in blobs + [info["manifest"]]:
        assert _sha(_blob(out, d)) == d
        assert open(_blob(out, d), "rb").read() == open(_blob(layout, d), "rb").read()

    # BatchGetImage returns the exact manifest bytes.
    got = emu.aws("batch-get-image", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert got["images"][0]["imageManifest"].encode() == open(mpath, "rb").read()

    # And the download URL serves the same bytes as the registry.
    url = emu.aws("get-download-url-for-layer", "--repository-name", repo, "--layer-digest",
                  info["layers"][0])["downloadUrl"]
    r = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=120)
    assert r.returncode == 0
    assert "sha256:" + hashlib.sha256(r.stdout).hexdigest() == info["layers"][0]


def test_multiarch_index_push_and_skopeo_inspect(emu, tmp_path):
    import ecrclient
    layout = str(tmp_path / "multi")
    mi = layouts.make_multiarch_index(layout, "m1")
    top = ecrclient.push_layout(emu, layout, "cli/multi", "m1")
    assert top["digest"] == mi["index"]
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{emu.registry}/111111111111/us-east-1/cli/multi:m1"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sha256:" + hashlib.sha256(r.stdout).hexdigest() == mi["index"]
    d = emu.aws("describe-images", "--repository-name", "cli/multi", "--image-ids",
                "imageTag=m1")["imageDetails"][0]
    assert d["imageManifestMediaType"] == "application/vnd.oci.image.index.v1+json"
    untagged = emu.aws("list-images", "--repository-name", "cli/multi", "--filter",
                       "tagStatus=UNTAGGED")["imageIds"]
    assert sorted(i["imageDigest"] for i in untagged) == sorted(mi["manifests"].values())


def _skopeo_digest(emu, repo, tag):
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{emu.registry}/111111111111/us-east-1/{repo}:{tag}"],
                       capture_output=True, timeout=120)
    return "sha256:" + hashlib.sha256(r.stdout).hexdigest() if r.returncode == 0 else None


def test_registry_follows_tag_moves_and_deletes(emu, tmp_path):
    import ecrclient
    layout = str(tmp_path / "l")
    a = layouts.make_image(layout, "a", {"/f": b"one"})
    b = layouts.make_image(layout, "b", {"/f": b"two"})
    repo = "cli/tags"
    ecrclient.push_layout(emu, layout, repo, "x", ref="a")
    ecrclient.push_layout(emu, layout, repo, "y", ref="a")
    assert _skopeo_digest(emu, repo, "x") == a["manifest"]
    ecrclient.push_layout(emu, layout, repo, "x", ref="b")  # x moves
    assert _skopeo_digest(emu, repo, "x") == b["manifest"]
    emu.aws("batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=y")
    assert _skopeo_digest(emu, repo, "y") is None
    assert _skopeo_digest(emu, repo, "x") == b["manifest"]
