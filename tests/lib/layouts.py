"""Small real OCI image layouts built with umoci, for tests and the demo."""
import hashlib
import json
import os
import subprocess
import tempfile

UMOCI = "/usr/bin/umoci"
INDEX = "application/vnd.oci.image.index.v1+json"
REF = "org.opencontainers.image.ref.name"


def _run(*args):
    r = subprocess.run([UMOCI] + list(args), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"umoci {' '.join(args)}: {r.stderr.strip()}")


def _index(layout):
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)


def _blob(layout, digest):
    with open(os.path.join(layout, "blobs", *digest.split(":", 1)), "rb") as f:
        return f.read()


def _write_blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(layout, "blobs", "sha256", d)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return "sha256:" + d


def descriptor(layout, ref):
    for m in _index(layout)["manifests"]:
        if (m.get("annotations") or {}).get(REF) == ref:
            return m
    raise KeyError(f"{layout}: no ref {ref}")


def make_image(layout, tag, files=None, n_layers=1, os_name=None, arch=None):
    """Builds image `tag` in the OCI layout `layout` (created if missing):
    `files` {path: bytes} spread over n_layers layers (one umoci repack each).
    Returns {"manifest", "config", "layers", "size"} (digests; size of the
    manifest)."""
    files = files or {"/etc/emu-release": f"image {tag}\n".encode()}
    if not os.path.exists(os.path.join(layout, "index.json")):
        _run("init", "--layout", layout)
    _run("new", "--image", f"{layout}:{tag}")
    items = sorted(files.items())
    # unpack + repack, not `umoci insert`: umoci 0.4.7's insert writes tars
    # cut short (no padding, no end blocks) that tar(1) rejects.
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_layers):
            bundle = os.path.join(tmp, f"bundle{i}")
            _run("unpack", "--rootless", "--image", f"{layout}:{tag}", bundle)
            for path, data in items[i::n_layers]:
                p = os.path.join(bundle, "rootfs", path.lstrip("/"))
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data)
            _run("repack", "--image", f"{layout}:{tag}", bundle)
    if os_name or arch:
        args = ["config", "--image", f"{layout}:{tag}"]
        if os_name:
            args += ["--os", os_name]
        if arch:
            args += ["--architecture", arch]
        _run(*args)
    desc = descriptor(layout, tag)
    m = json.loads(_blob(layout, desc["digest"]))
    return {"manifest": desc["digest"], "config": m["config"]["digest"],
            "layers": [l["digest"] for l in m["layers"]], "size": desc["size"]}


def make_multiarch_index(layout, tag, platforms=("linux/amd64", "linux/arm64"), files=None):
    """An OCI image index `tag` over one umoci image per platform ("os/arch").
    Child images are also tagged TAG-os-arch. Returns {"index", "manifests":
    {platform: digest}, "children": {platform: make_image result}}."""
    children, descs = {}, []
    for plat in platforms:
        os_name, arch = plat.split("/", 1)
        sub = f"{tag}-{os_name}-{arch.replace('/', '-')}"
        f = files or {"/etc/platform": f"{plat}\n".encode()}
        info = make_image(layout, sub, f, os_name=os_name, arch=arch)
        children[plat] = info
        d = descriptor(layout, sub)
        descs.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                      "platform": {"architecture": arch, "os": os_name}})
    data = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": descs},
                      indent=2).encode()
    digest = _write_blob(layout, data)
    idx = _index(layout)
    idx["manifests"] = [m for m in idx["manifests"]
                        if (m.get("annotations") or {}).get(REF) != tag]
    idx["manifests"].append({"mediaType": INDEX, "digest": digest, "size": len(data),
                             "annotations": {REF: tag}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)
    return {"index": digest, "manifests": {p: c["manifest"] for p, c in children.items()},
            "children": children}
