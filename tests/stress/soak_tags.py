"""Memory soak: seed many repositories with many tags (one small image per
tag, so every tag is a distinct image), browse them all through a mount the
way a user does (ls -l of each repository, stat and a read of each tag's
index.json and manifest), and report the daemon's peak memory (VmHWM).

    /usr/bin/python3 tests/stress/soak_tags.py --tags 20000 --repos 100

Also used by tests/fs/test_soak.py. Standard library only."""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import ecrclient  # noqa: E402
from emu import Emulator  # noqa: E402
from mount import Mount  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def seed(emu, repos, tags, jobs=8):
    """repos repositories soak/rNNN, tags tags spread over them; returns
    the repository names."""
    names = [f"soak/r{i:03d}" for i in range(repos)]
    cfg = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
    for r in names:
        ecrclient.create_repository(emu, r)
        c = ecrclient.client_for(emu)
        c.push_blob(r, CONFIG, cfg)
        c.close()
    work = [(names[i % repos], f"t{i}") for i in range(tags)]

    def put(chunk):
        c = ecrclient.client_for(emu)
        try:
            for repo, tag in chunk:
                m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                "digest": cfg, "size": len(CONFIG)},
                     "layers": [], "annotations": {"org.opencontainers.image.version": tag}}
                c.put_image(repo, json.dumps(m).encode(), OCI_MANIFEST, tag)
        finally:
            c.close()

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(put, [work[i::jobs] for i in range(jobs)]))
    return names


def vmhwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def browse(repo_path, names):
    """Every tag once: ls -l of its repository, stat of the tag, its
    index.json and manifest read; repo_path(name) is the repository's
    directory in the mount. Returns the number of tags seen."""
    seen = 0
    for r in names:
        repo = repo_path(r)
        for tag in os.listdir(repo):
            t = os.path.join(repo, tag)
            os.stat(t)
            with open(os.path.join(t, "index.json"), "rb") as f:
                idx = json.load(f)
            d = idx["manifests"][0]["digest"].split(":", 1)[1]
            with open(os.path.join(t, "blobs", "sha256", d), "rb") as f:
                f.read()
            seen += 1
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=20000)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--opts", default="", help="extra -o options of the mount")
    a = ap.parse_args()
    with Emulator() as emu, tempfile.TemporaryDirectory(prefix="ecrfs-soak-") as tmp:
        t0 = time.monotonic()
        names = seed(emu, a.repos, a.tags)
        t1 = time.monotonic()
        m = Mount(emu, tmp, opts=a.opts).start()
        try:
            seen = browse(m.repo, names)
            t2 = time.monotonic()
            hwm = vmhwm_kib(m.proc.pid)
            with open(m.path(".ecrfs", "stats")) as f:
                stats = json.load(f)
        finally:
            m.stop()
    print(json.dumps({"tags": seen, "repos": a.repos, "seed_s": round(t1 - t0, 1),
                      "browse_s": round(t2 - t1, 1), "vmhwm_mib": round(hwm / 1024, 1),
                      "stats": stats}, indent=1))


if __name__ == "__main__":
    main()
