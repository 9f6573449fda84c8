#!/usr/bin/python3
"""ecrfs benchmarks against the local ECR emulator (DESIGN §9).

Each measurement runs 3 times (median reported) next to a reference measured
on the same path in the same run:

  cold_read   cat of a layer through a fresh mount  vs  curl -o FILE of the same
              download URL onto the cache_dir filesystem (curl -o /dev/null: context)
  warm_read   cat after a remount, page cache dropped  vs  cat of the cache file
  tail_read   bytes fetched (emulator request log) to read the last 1 MiB of the layer
  list_tags   ls -l of a repository with many tags  vs  /usr/bin/aws ecr describe-images,
              with the API call counts of both from the emulator's log
  rss_read    the daemon's VmHWM with 8 parallel readers
  push        cp -rT of a single-layer layout (+ sync)  vs  the same kind of parts sent one
              after another by curl --aws-sigv4 (bodies prepared on disk); UploadLayerPart
              counts and the daemon's VmHWM

Throughput ratios are reference_time / ecrfs_time (above 1: ecrfs faster).
Parts whose feature is not in the tree yet print "not available yet".
"""
import argparse
import base64
import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SRC / "tests" / "lib"))

ACCOUNT, REGION = "111111111111", "us-east-1"
MIB = 1 << 20
TARGET = "AmazonEC2ContainerRegistry_V20150921."
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class NotAvailable(Exception):
    pass


T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def timed(cmd, **kw):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr[-500:]}")
    return dt


def drop_caches():
    os.sync()
    pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")


def can_drop_caches():
    try:
        drop_caches()
        return True
    except OSError:
        return False


def median(xs):
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------ layouts

def random_file(path, size, seed):
    """size bytes that differ per seed (so no two runs share a layer), hashed."""
    h = hashlib.sha256()
    block = os.urandom(4 * MIB)
    with open(path, "wb") as f:
        left = size
        n = 0
        while left > 0:
            # Cheap uniqueness: the block counter and seed in every 4 MiB.
            b = seed.to_bytes(8, "little") + n.to_bytes(8, "little") + block[16:]
            b = b[:left]
            f.write(b)
            h.update(b)
            left -= len(b)
            n += 1
    return "sha256:" + h.hexdigest()


def blob_put(layout, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / d[7:]).write_bytes(data)
    return d


def make_layout(layout, tag, layer_sizes, seed):
    """An OCI image layout with random layers; returns (manifest digest, layer digests)."""
    bl = layout / "blobs" / "sha256"
    bl.mkdir(parents=True, exist_ok=True)
    layers = []
    for i, size in enumerate(layer_sizes):
        tmp = bl / f"tmp-{i}"
        d = random_file(tmp, size, seed * 1000 + i)
        tmp.rename(bl / d[7:])
        layers.append({"mediaType": OCI_LAYER, "digest": d, "size": size})
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
                      "history": [{"comment": f"ecrfs bench seed {seed}"}]}).encode()
    cd = blob_put(layout, cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
                      "layers": layers}).encode()
    md = blob_put(layout, man)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": len(man),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return md, [l["digest"] for l in layers], man


# ------------------------------------------------------------ ECR through curl --aws-sigv4

class Curl:
    """Sends ECR API requests with curl --aws-sigv4, several per curl process
    (one after another on one connection), bodies read from files."""

    def __init__(self, emu, workdir):
        self.env = emu.env(account=ACCOUNT, region=REGION)
        self.endpoint = emu.endpoint.rstrip("/") + "/"
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seq = itertools.count(1)  # file names; next() is atomic under the GIL

    def config(self, op, body_files, k):
        """A curl -K config that sends one request per body file."""
        cfg = self.dir / f"curl-{k}.cfg"
        outs = []
        key, secret = self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        with open(cfg, "w") as f:
            for i, body in enumerate(body_files):
                out = self.dir / f"curl-{k}-{i}.out"
                outs.append(out)
                if i:
                    f.write("next\n")
                f.write(f'url = "{self.endpoint}"\n'
                        f'aws-sigv4 = "aws:amz:{REGION}:ecr"\n'
                        f'user = "{key}:{secret}"\n'
                        'header = "Content-Type: application/x-amz-json-1.1"\n'
                        f'header = "X-Amz-Target: {TARGET}{op}"\n'
                        f'data-binary = "@{body}"\n'
                        f'output = "{out}"\n'
                        'write-out = "%{http_code}\\n"\n'
                        'silent\nshow-error\n')
        return cfg, outs

    def run(self, op, bodies):
        """Sends the bodies (dicts or paths) in order; returns (seconds, replies)."""
        k = next(self.seq)
        files, made = [], []
        for i, b in enumerate(bodies):
            if isinstance(b, (str, pathlib.Path)):
                files.append(b)
            else:
                p = self.dir / f"body-{k}-{i}.json"
                p.write_text(json.dumps(b))
                files.append(p)
                made.append(p)
        cfg, outs = self.config(op, files, k)
        t0 = time.perf_counter()
        r = subprocess.run(["curl", "-K", str(cfg)], capture_output=True, text=True)
        dt = time.perf_counter() - t0
        codes = r.stdout.split()
        replies = [json.loads(o.read_text() or "{}") if o.exists() else {} for o in outs]
        for o in outs + made + [cfg]:
            o.unlink(missing_ok=True)
        if r.returncode != 0 or any(c != "200" for c in codes) or len(codes) != len(outs):
            bad = next((rep for c, rep in zip(codes, replies) if c != "200"), r.stderr)
            raise RuntimeError(f"curl {op}: codes {set(codes)}: {bad}")
        return dt, replies

    def run_parallel(self, op, bodies, jobs=8):
        """Seeding only: the bodies split over several curl processes at once."""
        from concurrent.futures import ThreadPoolExecutor
        chunks = [bodies[i::jobs] for i in range(jobs) if bodies[i::jobs]]
        with ThreadPoolExecutor(len(chunks) or 1) as ex:
            for f in [ex.submit(self.run, op, c) for c in chunks]:
                f.result()

    def call(self, op, body):
        return self.run(op, [body])[1][0]

    def part_bodies(self, repo, upload_id, path, part_size, prefix):
        """UploadLayerPart JSON bodies on disk, one per part of the file at path."""
        files = []
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            for i, first in enumerate(range(0, size, part_size)):
                data = f.read(part_size)
                p = self.dir / f"{prefix}-part{i:05d}.json"
                with open(p, "w") as out:
                    out.write(json.dumps({"registryId": ACCOUNT, "repositoryName": repo,
                                          "uploadId": upload_id, "partFirstByte": first,
                                          "partLastByte": first + len(data) - 1})[:-1])
                    out.write(', "layerPartBlob": "')
                    out.write(base64.b64encode(data).decode())
                    out.write('"}')
                files.append(p)
        return files

    def upload_blob(self, repo, path, digest, prefix="seed"):
        """Initiate, parts one after another, complete. Returns (seconds of parts+complete, nparts)."""
        r = self.call("InitiateLayerUpload", {"registryId": ACCOUNT, "repositoryName": repo})
        part = min(int(r.get("partSize", 10 * MIB)), 10 * MIB)
        bodies = self.part_bodies(repo, r["uploadId"], path, part, prefix)
        dt, _ = self.run("UploadLayerPart", bodies)
        t0 = time.perf_counter()
        self.call("CompleteLayerUpload", {"registryId": ACCOUNT, "repositoryName": repo,
                                          "uploadId": r["uploadId"], "layerDigests": [digest]})
        dt += time.perf_counter() - t0
        for b in bodies:
            b.unlink()
        return dt, len(bodies)

    def push_layout(self, layout, repo, tag, man_bytes):
        man_digest = "sha256:" + hashlib.sha256(man_bytes).hexdigest()
        self.call("CreateRepository", {"repositoryName": repo}) if not self.repo_exists(repo) else None
        for p in sorted((layout / "blobs" / "sha256").iterdir()):
            d = "sha256:" + p.name
            avail = self.call("BatchCheckLayerAvailability",
                              {"repositoryName": repo, "layerDigests": [d]})
            if any(l.get("layerAvailability") == "AVAILABLE" for l in avail.get("layers", [])):
                continue
            if d == man_digest:
                continue  # the manifest goes through PutImage
            self.upload_blob(repo, p, d)
        self.call("PutImage", {"repositoryName": repo, "imageTag": tag,
                               "imageManifest": man_bytes.decode(),
                               "imageManifestMediaType": OCI_MANIFEST})

    def repo_exists(self, repo):
        try:
            self.call("DescribeRepositories", {"repositoryNames": [repo]})
            return True
        except RuntimeError:
            return False

    def download_url(self, repo, digest):
        return self.call("GetDownloadUrlForLayer", {"repositoryName": repo,
                                                    "layerDigest": digest})["downloadUrl"]


# ------------------------------------------------------------ the mount

class Mount:
    def __init__(self, build, emu, workdir, cache_dir, name="mnt"):
        self.bin = pathlib.Path(build) / "fs" / "ecrfs"
        if not self.bin.exists():
            raise NotAvailable("the mount (fs/ecrfs not built yet)")
        self.mnt = pathlib.Path(workdir) / name
        self.cache = pathlib.Path(cache_dir)
        self.env = dict(os.environ, **emu.env(account=ACCOUNT, region=REGION))
        self.logf = pathlib.Path(workdir) / f"{name}.log"
        self.p = None

    def __enter__(self):
        self.mnt.mkdir(parents=True, exist_ok=True)
        with open(self.logf, "a") as lf:
            self.p = subprocess.Popen([str(self.bin), "-f", str(self.mnt), "-o",
                                       f"cache_dir={self.cache},regions={REGION}"],
                                      env=self.env, stdout=lf, stderr=lf,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 60
        while time.monotonic() < end and self.p.poll() is None and not os.path.ismount(self.mnt):
            time.sleep(0.05)
        if not os.path.ismount(self.mnt):
            self.__exit__()
            raise RuntimeError(f"ecrfs did not mount: {self.logf.read_text()[-1000:]}")
        return self

    def path(self, *parts):
        return self.mnt.joinpath(ACCOUNT, REGION, *parts)

    def vmhwm_kib(self):
        for line in pathlib.Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def __exit__(self, *exc):
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)


# ------------------------------------------------------------ measurements

class Bench:
    def __init__(self, args, emu, work):
        self.a = args
        self.emu = emu
        self.work = pathlib.Path(work)
        self.curl = Curl(emu, self.work / "curl")
        self.results = []
        self.can_drop = can_drop_caches()
        self.size = args.size_mib * MIB

    def fresh_cache(self, name="cache"):
        c = self.work / name
        shutil.rmtree(c, ignore_errors=True)
        return c

    def mount(self, cache, name="mnt"):
        return Mount(self.a.build, self.emu, self.work, cache, name)

    def add(self, name, **kv):
        row = {"name": name, **kv}
        self.results.append(row)
        log(f"  -> {json.dumps(row)}")

    def emu_bytes_out(self, op="BlobGet"):
        return sum(int(e.get("bytes_out") or 0) for e in self.emu.log() if e.get("op") == op)

    def seed_read_image(self):
        log(f"seeding bench/read:big with one {self.a.size_mib} MiB layer")
        lay = self.work / "layout-read"
        md, layers, man = make_layout(lay, "big", [self.size], seed=1)
        self.curl.push_layout(lay, "bench/read", "big", man)
        self.read_layer = layers[0]
        shutil.rmtree(lay)

    # cold and warm reads, tail read
    def reads(self):
        log("cold/warm/tail reads")
        repo, hexd = "bench/read", self.read_layer[7:]
        cache_fs_file = self.work / "curl-download.bin"
        cold, ref, ref_null, warm, warm_ref, tail = [], [], [], [], [], []
        for run in range(self.a.runs):
            url = self.curl.download_url(repo, self.read_layer)
            cache_fs_file.unlink(missing_ok=True)
            if self.can_drop:
                drop_caches()
            ref.append(timed(["curl", "-sSf", "-o", str(cache_fs_file), url]))
            cache_fs_file.unlink()
            ref_null.append(timed(["curl", "-sSf", "-o", "/dev/null", url]))
            cache = self.fresh_cache()
            with self.mount(cache) as m:
                f = m.path("bench", "read", "big", "blobs", "sha256", hexd)
                if f.stat().st_size != self.size:
                    raise RuntimeError(f"{f}: size {f.stat().st_size}, expected {self.size}")
                if self.can_drop:
                    drop_caches()
                cold.append(timed(["cat", str(f)]))
            if self.can_drop:
                with self.mount(cache) as m:
                    f = m.path("bench", "read", "big", "blobs", "sha256", hexd)
                    f.stat()
                    drop_caches()
                    warm.append(timed(["cat", str(f)]))
                cached = next(cache.rglob(hexd), None)
                if cached:
                    drop_caches()
                    warm_ref.append(timed(["cat", str(cached)]))
            # tail: the last 1 MiB on a fresh cache
            cache = self.fresh_cache()
            with self.mount(cache) as m:
                f = m.path("bench", "read", "big", "blobs", "sha256", hexd)
                f.stat()
                self.emu.reset_log()
                skip = self.size // MIB - 1
                timed(["dd", f"if={f}", "of=/dev/null", "bs=1M", f"skip={skip}", "count=1"])
                tail.append(self.emu_bytes_out())
        mc, mr = median(cold), median(ref)
        self.add("cold_read", size_mib=self.a.size_mib, ecrfs_s=mc, ref_curl_file_s=mr,
                 ref_curl_devnull_s=median(ref_null), ratio=mr / mc, goal=">= 1.0",
                 ecrfs_mib_s=self.a.size_mib / mc, runs=cold)
        if not self.can_drop:
            self.add("warm_read", status="skipped: needs root for /proc/sys/vm/drop_caches")
        elif not warm_ref:
            self.add("warm_read", ecrfs_s=median(warm), status="cache file not found in cache_dir",
                     runs=warm)
        else:
            self.add("warm_read", size_mib=self.a.size_mib, ecrfs_s=median(warm),
                     ref_cat_cache_file_s=median(warm_ref), ratio=median(warm_ref) / median(warm),
                     goal=">= 0.8", runs=warm)
        self.add("tail_read", size_mib=self.a.size_mib, fetched_mib=median(tail) / MIB,
                 goal="<= 16 MiB", runs=tail)

    def list_tags(self):
        n = self.a.tags
        repo = "bench/tags"
        log(f"seeding {repo} with {n} tags")
        lay = self.work / "layout-tags"
        md, _, man = make_layout(lay, "t0", [4096], seed=2)
        self.curl.push_layout(lay, repo, "t0", man)
        # One image per tag, as in a real repository: the manifests differ by
        # an annotation and share the config and layer.
        doc = json.loads(man)
        bodies = []
        for i in range(1, n):
            doc["annotations"] = {"org.opencontainers.image.version": f"t{i}"}
            bodies.append({"repositoryName": repo, "imageTag": f"t{i}",
                           "imageManifest": json.dumps(doc), "imageManifestMediaType": OCI_MANIFEST})
        self.curl.run_parallel("PutImage", bodies)
        shutil.rmtree(lay)
        ls, cli, ls_calls, cli_calls = [], [], [], []
        env = dict(os.environ, **self.emu.env(account=ACCOUNT, region=REGION), AWS_PAGER="")
        for run in range(self.a.runs):
            self.emu.reset_log()
            cli.append(timed(["/usr/bin/aws", "--endpoint-url", self.emu.endpoint, "--output",
                              "json", "ecr", "describe-images", "--repository-name", repo],
                             env=env))
            cli_calls.append(len(self.emu.log()))
            with self.mount(self.fresh_cache()) as m:
                os.listdir(m.path("bench"))
                self.emu.reset_log()
                t0 = time.perf_counter()
                out = subprocess.run(["ls", "-l", str(m.path(repo))], capture_output=True,
                                     text=True)
                ls.append(time.perf_counter() - t0)
                ls_calls.append(len(self.emu.log()))
                got = len([l for l in out.stdout.splitlines() if l.startswith("d")])
                if got < n:
                    raise RuntimeError(f"ls -l listed {got} tag directories, expected {n}")
        self.add("list_tags", tags=n, ecrfs_s=median(ls), ref_aws_cli_s=median(cli),
                 ratio=median(cli) / median(ls), ecrfs_api_calls=median(ls_calls),
                 aws_cli_api_calls=median(cli_calls), goal="faster than the CLI, <= 6 calls",
                 runs=ls)

    def rss_read(self):
        total = self.a.rss_total_mib * MIB
        each = total // 8
        log(f"seeding bench/rss:8x with 8 layers of {each // MIB} MiB")
        lay = self.work / "layout-rss"
        md, layers, man = make_layout(lay, "8x", [each] * 8, seed=3)
        self.curl.push_layout(lay, "bench/rss", "8x", man)
        shutil.rmtree(lay)
        hwm, secs = [], []
        for run in range(self.a.runs):
            with self.mount(self.fresh_cache()) as m:
                files = [m.path("bench", "rss", "8x", "blobs", "sha256", d[7:]) for d in layers]
                for f in files:
                    f.stat()
                t0 = time.perf_counter()
                ps = [subprocess.Popen(["cat", str(f)], stdout=subprocess.DEVNULL) for f in files]
                rcs = [p.wait() for p in ps]
                secs.append(time.perf_counter() - t0)
                if any(rcs):
                    raise RuntimeError(f"parallel readers failed: {rcs}")
                hwm.append(m.vmhwm_kib() / 1024)
        self.add("rss_read", readers=8, total_mib=self.a.rss_total_mib, peak_rss_mib=median(hwm),
                 seconds=median(secs), goal="<= 64 MiB", runs=hwm)

    def push(self):
        log(f"push of a {self.a.size_mib} MiB single-layer layout, {self.a.runs} runs")
        cp, ref, parts_ecrfs, parts_ref, hwm = [], [], [], [], []
        for run in range(self.a.runs):
            # The reference: a fresh blob, its part bodies prepared before timing.
            blob = self.work / "ref-layer.bin"
            d = random_file(blob, self.size, seed=100 + run)
            self.curl.call("CreateRepository", {"repositoryName": f"bench/ref{run}"})
            self.emu.reset_log()
            dt, n = self.curl.upload_blob(f"bench/ref{run}", blob, d, prefix=f"ref{run}")
            ref.append(dt)
            parts_ref.append(n)
            blob.unlink()
            # ecrfs: a fresh layout (a layer no repository has yet).
            lay = self.work / f"layout-push{run}"
            make_layout(lay, "v1", [self.size], seed=200 + run)
            if self.can_drop:
                drop_caches()
            with self.mount(self.fresh_cache()) as m:
                dest = m.path("bench", f"push{run}")
                os.makedirs(dest, exist_ok=True)
                self.emu.reset_log()
                t0 = time.perf_counter()
                r = subprocess.run(["cp", "-rT", str(lay), str(dest / "v1")], capture_output=True,
                                   text=True)
                if r.returncode == 0:
                    r = subprocess.run(["sync", str(dest / "v1")], capture_output=True, text=True)
                cp.append(time.perf_counter() - t0)
                if r.returncode != 0:
                    raise RuntimeError(f"push through the mount failed: {r.stderr}")
                hwm.append(m.vmhwm_kib() / 1024)
                parts_ecrfs.append(self.emu.count("UploadLayerPart"))
            shutil.rmtree(lay)
        self.add("push", size_mib=self.a.size_mib, ecrfs_s=median(cp), ref_curl_sigv4_s=median(ref),
                 ratio=median(ref) / median(cp), ecrfs_upload_parts=median(parts_ecrfs),
                 ref_upload_parts=median(parts_ref), peak_rss_mib=median(hwm),
                 goal=">= 0.9, <= 64 MiB", runs=cp)


def describe(r):
    """(ecrfs, reference, ratio, goal met) as text for one result row."""
    n = r["name"]
    ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
    if n == "cold_read":
        return (f"{r['ecrfs_s']:.3f} s ({r['ecrfs_mib_s']:.0f} MiB/s)",
                f"curl -o FILE {r['ref_curl_file_s']:.3f} s (-o /dev/null {r['ref_curl_devnull_s']:.3f} s)",
                ratio, r["ratio"] >= 1.0)
    if n == "warm_read":
        return (f"{r['ecrfs_s']:.3f} s", f"cat cache file {r['ref_cat_cache_file_s']:.3f} s",
                ratio, r["ratio"] >= 0.8)
    if n == "tail_read":
        return (f"{r['fetched_mib']:.2f} MiB fetched", "", "", r["fetched_mib"] <= 16)
    if n == "list_tags":
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_api_calls']:.0f} API calls",
                f"aws ecr describe-images {r['ref_aws_cli_s']:.3f} s, "
                f"{r['aws_cli_api_calls']:.0f} API calls",
                ratio, r["ratio"] > 1 and r["ecrfs_api_calls"] <= 6)
    if n == "rss_read":
        return (f"VmHWM {r['peak_rss_mib']:.1f} MiB ({r['total_mib']} MiB in {r['seconds']:.2f} s)",
                "", "", r["peak_rss_mib"] <= 64)
    if n == "push":
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_upload_parts']:.0f} parts, "
                f"VmHWM {r['peak_rss_mib']:.1f} MiB",
                f"curl --aws-sigv4 {r['ref_curl_sigv4_s']:.3f} s, {r['ref_upload_parts']:.0f} parts",
                ratio, r["ratio"] >= 0.9 and r["peak_rss_mib"] <= 64)
    return ("", "", ratio, None)


def table(results):
    cols = ["measurement", "ecrfs", "reference (same run)", "ratio", "goal", "met"]
    rows = []
    for r in results:
        if "status" in r and len(r) <= 3:
            rows.append([r["name"], r["status"], "", "", r.get("goal", ""), ""])
            continue
        try:
            ecrfs, ref, ratio, met = describe(r)
        except KeyError:  # a partial row (e.g. the cache file was not found)
            ecrfs, ref, ratio, met = r.get("status", ""), "", "", None
        size = f" {r['size_mib']} MiB" if "size_mib" in r else ""
        size = f" {r['tags']} tags" if "tags" in r else size
        rows.append([r["name"] + size, ecrfs, ref, ratio, r.get("goal", ""),
                     "" if met is None else ("yes" if met else "NO")])
        r["goal_met"] = met
    w = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols)).rstrip(),
             "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=str(SRC / "build-bench"))
    ap.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes)")
    ap.add_argument("--size-mib", type=int, help="layer size for reads and push (default 1024, quick 32)")
    ap.add_argument("--tags", type=int, help="tags in the listing repository (default 5000, quick 500)")
    ap.add_argument("--rss-total-mib", type=int, help="total read by 8 readers (default 4096, quick 128)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="comma-separated: reads,list_tags,rss_read,push")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--workdir", help="scratch directory (default: a new one under /tmp)")
    a = ap.parse_args()
    a.size_mib = a.size_mib or (32 if a.quick else 1024)
    a.tags = a.tags or (500 if a.quick else 5000)
    a.rss_total_mib = a.rss_total_mib or (128 if a.quick else 4096)
    only = set(a.only.split(",")) if a.only else {"reads", "list_tags", "rss_read", "push"}

    try:
        from emu import Emulator
    except ImportError as e:
        log(f"bench: the emulator helper tests/lib/emu.py is not in the tree yet ({e})")
        return 1
    load0 = os.getloadavg()
    work = pathlib.Path(a.workdir or tempfile.mkdtemp(prefix="ecrfs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    status = 0
    results = []
    with Emulator() as emu:
        b = Bench(a, emu, work)
        if not b.can_drop:
            log("bench: not root: page caches cannot be dropped; warm reads are skipped")
        steps = [("reads", lambda: (b.seed_read_image(), b.reads())), ("list_tags", b.list_tags),
                 ("rss_read", b.rss_read), ("push", b.push)]
        for name, fn in steps:
            if name not in only:
                continue
            try:
                fn()
            except NotAvailable as e:
                b.add(name, status=f"not available yet: {e}")
            except Exception as e:  # report and go on with the next measurement
                b.add(name, status=f"failed: {e}")
                status = 1
        results = b.results
    shutil.rmtree(work, ignore_errors=True)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": a.runs,
            "size_mib": a.size_mib, "tags": a.tags, "rss_total_mib": a.rss_total_mib,
            "nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
            "build": a.build, "results": results}
    text = table(results)
    pathlib.Path(a.out).write_text(json.dumps(meta, indent=1) + "\n")
    print(text)
    print(f"\nmedian of {a.runs} runs; ratio = reference time / ecrfs time; written to {a.out}")
    print(f"{os.cpu_count()} CPUs; load average {load0[0]:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at the end (other work on the machine skews times)")
    return status


if __name__ == "__main__":
    sys.exit(main())
