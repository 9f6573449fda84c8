"""The stress checker's data: blobs whose bytes come from the seed, the
images that hold them, their push to the emulator, and the faults the
emulator injects. Standard library only (tests/lib on sys.path)."""
import base64
import hashlib
import json
import random
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import ecrclient  # noqa: E402

KIB, MIB = 1024, 1024 * 1024
# Page and chunk edges (the cache's chunk is 1 MiB, the kernel's page 4 KiB,
# the daemon's larger fetches 16 MiB): the sizes where off-by-ones live.
SIZES = [1, 4095, 4096, 4097, MIB - 1, MIB, MIB + 1, 16 * MIB + 1]
TAGS = ["all", "odd", "even"]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


# The blob over 4 GiB: zeros with four 4 KiB patches (at its start, across
# 2 GiB, across 4 GiB, at its end), stored sparse by the emulator
# (emu_sparse.py). Its bytes do not depend on the seed, so its digest is
# computed once: `python3 tests/stress/checker_data.py --huge-digest`.
HUGE_SIZE = (4 << 30) + 4097
HUGE_PATCHES = [0, (2 << 30) - 2048, (4 << 30) - 2048, HUGE_SIZE - 4096]
HUGE_DIGEST = "sha256:68897c81e880e46419f746211f58fc309983b6435a20675691145895eb6cc23c"


class SparseBytes:
    """Zeros with patches, sliced like bytes (only [a:b] is needed)."""

    def __init__(self, size, patches):
        self.size = size
        self.patches = patches  # [(offset, bytes)]

    def __len__(self):
        return self.size

    def __getitem__(self, sl):
        a, b, _ = sl.indices(self.size)
        out = bytearray(max(0, b - a))
        for off, data in self.patches:
            lo, hi = max(a, off), min(b, off + len(data))
            if lo < hi:
                out[lo - a:hi - a] = data[lo - off:hi - off]
        return bytes(out)


def huge_patches():
    return [(off, random.Random(f"ecrfs-stress-huge:{k}").randbytes(4096))
            for k, off in enumerate(HUGE_PATCHES)]


def blob_bytes(seed, i, size):
    """Blob i of the seed: pseudo-random bytes, the same on every run."""
    return random.Random(f"ecrfs-stress:{seed}:{i}").randbytes(size)


class Blob:
    huge = False

    def __init__(self, seed, i, size):
        self.i = i
        self.size = size
        self.data = blob_bytes(seed, i, size)
        self.digest = "sha256:" + hashlib.sha256(self.data).hexdigest()
        self.hex = self.digest[7:]


class HugeBlob:
    """The blob over 4 GiB (Blob's fields; never read whole)."""

    def __init__(self, i):
        self.i = i
        self.size = HUGE_SIZE
        self.data = SparseBytes(HUGE_SIZE, huge_patches())
        self.digest = HUGE_DIGEST
        self.hex = HUGE_DIGEST[7:]
        self.huge = True


class Corpus:
    """The blobs, and per tag the names its blobs/sha256 lists."""

    def __init__(self, seed, sizes=SIZES, huge=True):
        self.seed = seed
        self.repo = f"stress/s{seed}"
        self.blobs = [Blob(seed, i, s) for i, s in enumerate(sizes)]
        if huge:
            self.blobs.append(HugeBlob(len(self.blobs)))
        self.by_hex = {b.hex: b for b in self.blobs}
        pick = {"all": lambda i: True, "odd": lambda i: i % 2 == 1, "even": lambda i: i % 2 == 0}
        self.layers = {t: [b for b in self.blobs if pick[t](b.i)] for t in TAGS}
        self.images = {}  # tag -> (manifest bytes, config bytes)
        for t in TAGS:
            cfg = json.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": []},
                              "history": [{"comment": f"ecrfs stress {seed} {t}"}]}).encode()
            man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": OCI_CONFIG, "size": len(cfg),
                                         "digest": "sha256:" + hashlib.sha256(cfg).hexdigest()},
                              "layers": [{"mediaType": OCI_LAYER, "digest": b.digest,
                                          "size": b.size} for b in self.layers[t]]}).encode()
            self.images[t] = (man, cfg)

    def listing(self, tag):
        """The names blobs/sha256 of the tag must list: layers, config, manifest."""
        man, cfg = self.images[tag]
        names = {b.hex for b in self.layers[tag]}
        names.add(hashlib.sha256(cfg).hexdigest())
        names.add(hashlib.sha256(man).hexdigest())
        return names

    def working_set(self):
        """Bytes of the blobs a run reads whole (not the sparse one)."""
        return sum(b.size for b in self.blobs if not b.huge)

    def push(self, emu):
        """Pushes every blob and image with the tests' ECR client."""
        ecrclient.create_repository(emu, self.repo)
        # where the checker's pushes go: created here, so its directory is a
        # repository, not a pending one (a pending repository directory
        # hides tags committed in it while other pushes in it go on)
        ecrclient.create_repository(emu, self.repo + "-push")
        c = ecrclient.client_for(emu)
        try:
            for b in self.blobs:
                if b.huge:
                    emu.control("sparse_blob", {
                        "repo": self.repo, "digest": b.digest, "size": b.size,
                        "patches": [{"offset": o, "data_b64": base64.b64encode(d).decode()}
                                    for o, d in b.data.patches]})
                else:
                    c.push_blob(self.repo, b.data, b.digest)
            for t in TAGS:
                man, cfg = self.images[t]
                c.push_blob(self.repo, cfg)
                c.put_image(self.repo, man, OCI_MANIFEST, t)
        finally:
            c.close()


class Pushed:
    """A layer a checker thread pushes (Blob's fields, its own bytes)."""

    def __init__(self, data):
        self.i = -1
        self.size = len(data)
        self.data = data
        self.hex = hashlib.sha256(data).hexdigest()
        self.digest = "sha256:" + self.hex


def push_layout(seed, k, n, size, tag):
    """The files of thread k's n-th push, in the order cp -rT writes them
    (blobs, then oci-layout and index.json), and its layer."""
    layer = Pushed(random.Random(f"ecrfs-stress-push:{seed}:{k}:{n}").randbytes(size))
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": []},
                      "history": [{"comment": f"ecrfs stress push {seed} {k} {n}"}]}).encode()
    cd = hashlib.sha256(cfg).hexdigest()
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "size": len(cfg),
                                 "digest": "sha256:" + cd},
                      "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest,
                                  "size": layer.size}]}).encode()
    md = hashlib.sha256(man).hexdigest()
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + md,
                                       "size": len(man),
                                       "annotations": {"org.opencontainers.image.ref.name":
                                                       tag}}]}).encode()
    files = [(f"blobs/sha256/{layer.hex}", layer.data), (f"blobs/sha256/{cd}", cfg),
             (f"blobs/sha256/{md}", man), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
             ("index.json", index)]
    return files, layer


def fault_plan(seed, rate=1.0):
    """The faults of a run: seeded storms of truncations, 503s, stalls,
    dropped connections and expired URLs on downloads, and 503s, stalls and
    lost replies on the API calls a read or a listing makes. Stalls stay far
    under the mount's deadline; rate scales every probability."""
    plan = []
    k = 0

    def add(op, kind, p, **kw):
        nonlocal k
        k += 1
        plan.append(dict(op=op, kind=kind, count=0, probability=p * rate,
                         seed=seed * 100 + k, **kw))
    add("BlobGet", "truncate", 0.02, keep_bytes=0)          # headers, then hang up
    add("BlobGet", "truncate", 0.02, keep_bytes=4097)
    add("BlobGet", "truncate", 0.02, keep_bytes=300000)
    add("BlobGet", "http503", 0.04)
    add("BlobGet", "delay", 0.01, delay_ms=1500)            # a stall
    add("BlobGet", "blackhole", 0.01, timeout_ms=200)       # accepted, dropped unanswered
    add("BlobGet", "expired_url", 0.01)
    for op in ("GetDownloadUrlForLayer", "DescribeImages", "ListImages", "BatchGetImage",
               "DescribeRepositories"):
        add(op, "http503", 0.04)
        add(op, "drop_reply", 0.02)
        add(op, "delay", 0.01, delay_ms=800)
    return plan


def huge_digest():
    """The sha256 of the blob over 4 GiB (a minute): for HUGE_DIGEST."""
    h = hashlib.sha256()
    data, step = SparseBytes(HUGE_SIZE, huge_patches()), 64 << 20
    for off in range(0, HUGE_SIZE, step):
        h.update(data[off:off + step])
    return "sha256:" + h.hexdigest()


if __name__ == "__main__" and sys.argv[1:] == ["--huge-digest"]:
    print(huge_digest())
