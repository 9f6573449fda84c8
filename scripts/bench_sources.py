#!/usr/bin/python3
"""The first look at an image's files with each index source, against the
local build of the same image in the same run (README "Benchmarks").

One image of three gzip layers made of this machine's files (/usr/share/doc,
/usr/lib/python3*, /usr/bin; --size-mib of tar each), compressed with a sync
flush every --span-mib so that a SOCI-like zTOC (tests/lib/soci.py) can
describe it, pushed three times to the local ECR emulator: plain (every
mount builds its indexes), with a SOCI v2 index, and plain again with the
indexes a first `-o rootfs_publish` mount published. For each, --runs times
with an empty cache: a new mount, `ls -R TAG@rootfs`, its wall time, the
bytes downloaded (the emulator's BlobGet log) and the API calls. Ratio =
the local build's median time / this source's.

  /usr/bin/python3 scripts/bench_sources.py --build build-bench [--quick]
"""
import argparse
import io
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

SRC = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SRC / "tests" / "lib"))

MIB = 1 << 20
PUB_TYPE = "application/vnd.ecrfs.rootfs.index.v1"
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar_of(roots, limit):
    """A tar of the regular files, directories and symlinks under roots, in
    walk order, stopping past limit bytes of file content."""
    buf, total = io.BytesIO(), 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for root in roots:
            for d, dirs, files in os.walk(root):
                dirs.sort()
                for name in [""] + sorted(files):
                    p = os.path.join(d, name) if name else d
                    try:
                        ti = tf.gettarinfo(p, arcname=p.lstrip("/"))
                    except OSError:
                        continue
                    if ti is None or not (ti.isreg() or ti.isdir() or ti.issym()):
                        continue
                    if ti.isreg():
                        try:
                            with open(p, "rb") as f:
                                tf.addfile(ti, f)
                        except OSError:
                            continue
                        total += ti.size
                    else:
                        tf.addfile(ti)
                    if total > limit:
                        return buf.getvalue()
    return buf.getvalue()


def push_image(c, repo, layers, annotations=None):
    """layers: [(gzip bytes, diff id)]; returns (manifest digest, bytes)."""
    import soci
    descs = [{"mediaType": GZ, "digest": c.push_blob(repo, gz), "size": len(gz)}
             for gz, _ in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}).encode()
    m = {"schemaVersion": 2, "mediaType": soci.MANIFEST_MT,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": c.push_blob(repo, cfg), "size": len(cfg)},
         "layers": descs}
    if annotations:
        m["annotations"] = annotations
    data = json.dumps(m).encode()
    c.put_image(repo, data, soci.MANIFEST_MT, "v1")
    return soci.digest(data), data


def blob_bytes(emu):
    return sum(e.get("bytes_out") or 0 for e in emu.log() if e.get("op") == "BlobGet")


def first_look(emu, work, repo, run, opts=""):
    from mount import Mount
    m = Mount(emu, work, name=f"{repo.replace('/', '-')}-{run}", opts=opts).start()
    try:
        emu.reset_log()
        root = os.path.join(m.mnt, "111111111111", "us-east-1", repo, "v1@rootfs")
        t0 = time.monotonic()
        subprocess.run(["ls", "-R", root], check=True, stdout=subprocess.DEVNULL, timeout=1800)
        dt = time.monotonic() - t0
        log = emu.log()
        calls = sum(1 for e in log if e.get("op") not in (None, "BlobGet"))
        state = os.getxattr(root, "user.ecr.rootfs_state").decode()
        return dt, blob_bytes(emu), calls, state, m
    except BaseException:
        m.stop()
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(SRC / "build-bench"))
    ap.add_argument("--size-mib", type=int, default=64, help="tar bytes per layer")
    ap.add_argument("--span-mib", type=int, default=4, help="zTOC span (SOCI's default: 4)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 MiB layers, 1 MiB spans")
    a = ap.parse_args()
    if a.quick:
        a.size_mib, a.span_mib = 8, 1
    os.environ["ECRFS_BUILD"] = a.build
    import ecrclient
    import soci
    from emu import Emulator

    roots = [["/usr/share/doc"], sorted(str(p) for p in pathlib.Path("/usr/lib").glob("python3*")),
             ["/usr/bin"]]
    tars = [tar_of(r, a.size_mib * MIB) for r in roots]
    gzs = [soci.gzip_spans(t, a.span_mib * MIB) for t in tars]
    layer_bytes = sum(len(gz) for gz, _ in gzs)
    work = pathlib.Path(tempfile.mkdtemp(prefix="ecrfs-bench-sources-"))
    rows = []
    with Emulator() as emu:
        for repo in ("bench/built", "bench/soci", "bench/pub"):
            ecrclient.create_repository(emu, repo)
        c = ecrclient.client_for(emu)
        layers = [(gz, soci.digest(t)) for (gz, _), t in zip(gzs, tars)]
        push_image(c, "bench/built", layers)
        pub_digest, _ = push_image(c, "bench/pub", layers)
        ztocs = [(soci.ztoc(t, gz, ck, a.span_mib * MIB), soci.digest(gz))
                 for t, (gz, ck) in zip(tars, gzs)]
        idx = soci.index_manifest(ztocs, 2)
        for z, _ in ztocs:
            c.push_blob("bench/soci", z)
        c.push_blob("bench/soci", soci.EMPTY)
        c.put_image("bench/soci", idx, soci.MANIFEST_MT)
        push_image(c, "bench/soci", layers, {soci.INDEX_ANN: soci.digest(idx)})
        c.close()
        # The published index: one mount builds and publishes it.
        _, _, _, _, m = first_look(emu, work, "bench/pub", "publisher", "rootfs_publish")
        deadline = time.monotonic() + 600
        c = ecrclient.client_for(emu)
        while time.monotonic() < deadline and not c.call(
                "ListImageReferrers", repositoryName="bench/pub",
                subjectId={"imageDigest": pub_digest},
                filter={"artifactTypes": [PUB_TYPE]})["referrers"]:
            time.sleep(0.5)
        c.close()
        m.stop()
        for name, repo in (("local build", "bench/built"), ("soci v2", "bench/soci"),
                           ("published", "bench/pub")):
            runs = []
            for r in range(a.runs):
                dt, nbytes, calls, state, m = first_look(emu, work, repo, r)
                m.stop()
                runs.append((dt, nbytes, calls, state))
            rows.append((name, statistics.median(x[0] for x in runs),
                         statistics.median(x[1] for x in runs),
                         statistics.median(x[2] for x in runs), runs[-1][3]))
    base = rows[0][1]
    print(f"image: 3 gzip layers, {sum(map(len, tars)) / MIB:.0f} MiB of tar, "
          f"{layer_bytes / MIB:.1f} MiB compressed, zTOC spans of {a.span_mib} MiB; "
          f"median of {a.runs} runs, each with an empty cache")
    print(f"{'first ls -R TAG@rootfs':24} {'time s':>8} {'ratio':>7} {'downloaded':>12} "
          f"{'of layers':>10} {'API calls':>10}  state")
    for name, dt, nbytes, calls, state in rows:
        print(f"{name:24} {dt:8.2f} {base / dt:7.2f} {nbytes / MIB:10.2f}Mi "
              f"{100 * nbytes / layer_bytes:9.1f}% {calls:10.0f}  {state}")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
