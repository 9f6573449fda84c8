#!/usr/bin/python3
"""ecrfs benchmarks against the local ECR emulator (README "Benchmarks").

Each measurement runs 3 times (median reported) next to a reference measured
on the same path in the same run. On loopback:

  cold_read   cat of a layer through a fresh mount  vs  curl -o FILE of the same
              download URL onto the cache_dir filesystem (curl -o /dev/null: context);
              CPU seconds per GiB of the daemon (/proc/PID/stat) and of curl
  warm_read   cat after a remount, page cache dropped  vs  cat of the cache file
  tail_read   bytes fetched (emulator request log) to read the last 1 MiB of the layer
  list_tags   ls -l of a repository with many tags  vs  /usr/bin/aws ecr describe-images,
              with the API call counts of both from the emulator's log; and find -maxdepth 1
  list_repos  ls -l of a namespace of 2,000 repositories, fresh mount  vs
              /usr/bin/aws ecr describe-repositories (API calls of both)
  rss_read    the daemon's VmHWM with 8 parallel readers
  push        cp -rT of a single-layer layout (+ sync)  vs  the same kind of parts sent one
              after another by curl --aws-sigv4 (bodies prepared on disk); UploadLayerPart
              counts
  rootfs      first ls -R of TAG@rootfs of a multi-layer image of real files  vs  skopeo
              copy + umoci unpack, and curl | gzip -dc of its layers; cat after the blob
              cache is emptied; diff -r of two tags sharing layers; VmHWM (bench_rootfs.py)
  push_layers cp -rT of an image of 8 x 64 MiB layers  vs  one sequential curl --aws-sigv4
              loop (InitiateLayerUpload calls, then every part and CompleteLayerUpload in
              order, then PutImage); parts and API calls of both
  soak_tags   memory soak: VmHWM after browsing 20,000 distinct tags
  stress      the seeded random-operation checker (tests/stress/checker.py), 1,000,000
              operations under injected faults: seed, wrong bytes (must be 0), EIOs, ops/s

On the modelled network (the emulator's: 64 MiB/s per download GET, 20 ms to
its first byte, 30 ms per API call; both sides go through it):

  net_cold_read_N   cold read of an N MiB layer (256 and 1024)  vs  one curl -o FILE stream
  net_tail_read     bytes fetched for the last 1 MiB of the largest
  net_list_tags     ls -l of the tags, fresh mount  vs  aws ecr describe-images
  net_list_repos    ls -l of the 2,000 repositories, fresh mount  vs  aws ecr describe-repositories
  net_push_layers   push_layers on the modelled network

(Warm reads do not touch the network.) Every ecrfs row reports the daemon's
peak VmHWM (the highest of the runs). Throughput ratios are
reference_time / ecrfs_time (above 1: ecrfs faster). Parts whose feature is
not in the tree yet print "not available yet".
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
sys.path.insert(0, str(SRC / "scripts"))
import bench_rootfs  # noqa: E402

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

    def config(self, reqs, k):
        """A curl -K config that sends the requests ((op, body file), ...) in order."""
        cfg = self.dir / f"curl-{k}.cfg"
        outs = []
        key, secret = self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        with open(cfg, "w") as f:
            for i, (op, body) in enumerate(reqs):
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
        return self.run_requests([(op, b) for b in bodies])

    def run_requests(self, reqs):
        """Sends (op, body) pairs in order, one curl process on one
        connection; bodies are dicts or paths. Returns (seconds, replies)."""
        k = next(self.seq)
        files, made = [], []
        for i, (op, b) in enumerate(reqs):
            if isinstance(b, (str, pathlib.Path)):
                files.append((op, b))
            else:
                p = self.dir / f"body-{k}-{i}.json"
                p.write_text(json.dumps(b))
                files.append((op, p))
                made.append(p)
        op = "+".join(sorted({o for o, _ in reqs}))
        cfg, outs = self.config(files, k)
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

    def upload_image(self, repo, blobs, tag, man_bytes, prefix):
        """The sequential reference push of an image: its InitiateLayerUpload
        calls, then every part of every blob in order, each blob's
        CompleteLayerUpload after its parts, then PutImage; two curl
        processes, one connection each. The part bodies are written to disk
        between the two, outside the timing. blobs: [(path, digest)].
        Returns (seconds, parts)."""
        dt, ups = self.run("InitiateLayerUpload",
                           [{"registryId": ACCOUNT, "repositoryName": repo}] * len(blobs))
        reqs, files = [], []
        for n, ((path, digest), up) in enumerate(zip(blobs, ups)):
            part = min(int(up.get("partSize", 10 * MIB)), 10 * MIB)
            bodies = self.part_bodies(repo, up["uploadId"], path, part, f"{prefix}-{n}")
            files += bodies
            reqs += [("UploadLayerPart", b) for b in bodies]
            reqs.append(("CompleteLayerUpload", {"registryId": ACCOUNT, "repositoryName": repo,
                                                 "uploadId": up["uploadId"],
                                                 "layerDigests": [digest]}))
        reqs.append(("PutImage", {"repositoryName": repo, "imageTag": tag,
                                  "imageManifest": man_bytes.decode(),
                                  "imageManifestMediaType": OCI_MANIFEST}))
        try:
            dt2, _ = self.run_requests(reqs)
        finally:
            for b in files:
                b.unlink(missing_ok=True)
        return dt + dt2, len(files)

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

    def cpu_s(self):
        """The daemon's CPU seconds so far (user + system, all threads)."""
        stat = pathlib.Path(f"/proc/{self.p.pid}/stat").read_text()
        f = stat.rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

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

def run_cpu(cmd):
    """Runs cmd; returns (seconds, its CPU seconds: user + system)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {err[-500:]}")
    return dt, ru.ru_utime + ru.ru_stime


def peak(xs):
    return max(xs) if xs else None


class Bench:
    def __init__(self, args, emu, work):
        self.a = args
        self.emu = emu
        self.work = pathlib.Path(work)
        self.curl = Curl(emu, self.work / "curl")
        self.results = []
        self.can_drop = can_drop_caches()
        self.size = args.size_mib * MIB
        self.read_layers = {}  # size in MiB -> (repo, tag, layer digest)
        self.tags_seeded = False
        self.repos_seeded = False
        self.model = {"get_rate": args.net_rate_mib * MIB, "first_byte_ms": args.net_first_byte_ms,
                      "api_ms": args.net_api_ms}

    def network(self, net):
        """The modelled network around a measurement (seeding stays fast)."""
        return self.emu.network(**self.model) if net else contextlib.nullcontext()

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

    def read_layer(self, size_mib):
        """A single-layer image bench/read:sNm of size_mib, pushed once per bench."""
        if size_mib not in self.read_layers:
            log(f"seeding bench/read:s{size_mib}m with one {size_mib} MiB layer")
            lay = self.work / "layout-read"
            md, layers, man = make_layout(lay, f"s{size_mib}m", [size_mib * MIB], seed=size_mib)
            self.curl.push_layout(lay, "bench/read", f"s{size_mib}m", man)
            self.read_layers[size_mib] = ("bench/read", f"s{size_mib}m", layers[0])
            shutil.rmtree(lay)
        return self.read_layers[size_mib]

    def cold_once(self, size_mib, cache):
        """One cold read: curl -o FILE and -o /dev/null of the download URL,
        then cat through a fresh mount onto cache (left for a warm read).
        Returns a dict of this run's figures."""
        repo, tag, layer = self.read_layer(size_mib)
        cache_fs_file = self.work / "curl-download.bin"
        url = self.curl.download_url(repo, layer)
        cache_fs_file.unlink(missing_ok=True)
        if self.can_drop:
            drop_caches()
        r = {}
        r["ref"], r["ref_cpu"] = run_cpu(["curl", "-sSf", "-o", str(cache_fs_file), url])
        cache_fs_file.unlink()
        r["ref_null"] = timed(["curl", "-sSf", "-o", "/dev/null", url])
        with self.mount(cache) as m:
            f = m.path(*repo.split("/"), tag, "blobs", "sha256", layer[7:])
            if f.stat().st_size != size_mib * MIB:
                raise RuntimeError(f"{f}: size {f.stat().st_size}, expected {size_mib} MiB")
            if self.can_drop:
                drop_caches()
            self.emu.reset_log()
            cpu0 = m.cpu_s()
            r["ecrfs"] = timed(["cat", str(f)])
            r["ecrfs_cpu"] = m.cpu_s() - cpu0
            r["hwm"] = m.vmhwm_kib() / 1024
            lg = self.emu.log()
            r["gets"] = sum(1 for e in lg if e.get("op") == "BlobGet")
            r["url_calls"] = sum(1 for e in lg if e.get("op") == "GetDownloadUrlForLayer")
        return r

    def tail_once(self, size_mib):
        """Bytes fetched to read the last 1 MiB of the layer on a fresh cache."""
        repo, tag, layer = self.read_layer(size_mib)
        with self.mount(self.fresh_cache()) as m:
            f = m.path(*repo.split("/"), tag, "blobs", "sha256", layer[7:])
            f.stat()
            self.emu.reset_log()
            timed(["dd", f"if={f}", "of=/dev/null", "bs=1M", f"skip={size_mib - 1}", "count=1"])
            return self.emu_bytes_out(), m.vmhwm_kib() / 1024

    def add_cold(self, name, size_mib, runs, net, goal):
        col = {k: [r[k] for r in runs] for k in runs[0]}
        mc, mr = median(col["ecrfs"]), median(col["ref"])
        gib = size_mib / 1024
        self.add(name, network="modelled" if net else "loopback", size_mib=size_mib,
                 ecrfs_s=mc, ref_curl_file_s=mr, ref_curl_devnull_s=median(col["ref_null"]),
                 ratio=mr / mc, goal=goal, ecrfs_mib_s=size_mib / mc,
                 ecrfs_cpu_s_per_gib=median(col["ecrfs_cpu"]) / gib,
                 ref_curl_cpu_s_per_gib=median(col["ref_cpu"]) / gib,
                 blob_gets=median(col["gets"]), url_calls=median(col["url_calls"]),
                 peak_rss_mib=peak(col["hwm"]), runs=col["ecrfs"])

    # cold and warm reads, tail read (loopback)
    def reads(self):
        log("cold/warm/tail reads")
        size_mib = self.a.size_mib
        repo, tag, layer = self.read_layer(size_mib)
        colds, warm, warm_ref, warm_hwm, tail, tail_hwm = [], [], [], [], [], []
        for run in range(self.a.runs):
            cache = self.fresh_cache()
            colds.append(self.cold_once(size_mib, cache))
            if self.can_drop:
                with self.mount(cache) as m:
                    f = m.path(*repo.split("/"), tag, "blobs", "sha256", layer[7:])
                    f.stat()
                    drop_caches()
                    warm.append(timed(["cat", str(f)]))
                    warm_hwm.append(m.vmhwm_kib() / 1024)
                cached = next(cache.rglob(layer[7:]), None)
                if cached:
                    drop_caches()
                    warm_ref.append(timed(["cat", str(cached)]))
            fetched, hwm = self.tail_once(size_mib)
            tail.append(fetched)
            tail_hwm.append(hwm)
        self.add_cold("cold_read", size_mib, colds, False, ">= 1.0")
        if not self.can_drop:
            self.add("warm_read", status="skipped: needs root for /proc/sys/vm/drop_caches")
        elif not warm_ref:
            self.add("warm_read", ecrfs_s=median(warm), status="cache file not found in cache_dir",
                     runs=warm)
        else:
            self.add("warm_read", network="none (cache)", size_mib=size_mib, ecrfs_s=median(warm),
                     ref_cat_cache_file_s=median(warm_ref), ratio=median(warm_ref) / median(warm),
                     peak_rss_mib=peak(warm_hwm), goal=">= 0.8", runs=warm)
        self.add("tail_read", network="loopback", size_mib=size_mib,
                 fetched_mib=median(tail) / MIB, peak_rss_mib=peak(tail_hwm), goal="<= 16 MiB",
                 runs=tail)

    # cold reads on the modelled network (warm reads do not touch it)
    def net_reads(self):
        sizes = self.a.net_read_sizes
        for size_mib in sizes:
            self.read_layer(size_mib)
        with self.network(True):
            for size_mib in sizes:
                log(f"cold read of {size_mib} MiB on the modelled network")
                runs = [self.cold_once(size_mib, self.fresh_cache()) for _ in range(self.a.runs)]
                goal = ">= 4.0" if size_mib < 1024 else ">= 6.0"
                self.add_cold(f"net_cold_read_{size_mib}", size_mib, runs, True, goal)
            big = max(sizes)
            tail = [self.tail_once(big) for _ in range(self.a.runs)]
        self.add("net_tail_read", network="modelled", size_mib=big,
                 fetched_mib=median([t[0] for t in tail]) / MIB,
                 peak_rss_mib=peak([t[1] for t in tail]), goal="<= 16 MiB",
                 runs=[t[0] for t in tail])

    def seed_tags(self):
        if self.tags_seeded:
            return
        n, repo = self.a.tags, "bench/tags"
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
        self.tags_seeded = True

    def list_tags(self, net=False):
        n = self.a.tags
        repo = "bench/tags"
        self.seed_tags()
        log(f"ls -l of {n} tags ({'modelled network' if net else 'loopback'})")
        ls, cli, ls_calls, cli_calls, hwm, finds = [], [], [], [], [], []
        env = dict(os.environ, **self.emu.env(account=ACCOUNT, region=REGION), AWS_PAGER="")
        with self.network(net):
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
                    hwm.append(m.vmhwm_kib() / 1024)
                    got = len([l for l in out.stdout.splitlines() if l.startswith("d")])
                    if got < n:
                        raise RuntimeError(f"ls -l listed {got} tag directories, expected {n}")
                with self.mount(self.fresh_cache()) as m:
                    os.listdir(m.path("bench"))
                    finds.append(timed(["find", str(m.path(repo)), "-maxdepth", "1"]))
        goal = ("< 0.6 s, <= 6 calls, faster than the CLI" if net
                else "faster than the CLI, <= 6 calls")
        self.add("net_list_tags" if net else "list_tags", network="modelled" if net else "loopback",
                 tags=n, ecrfs_s=median(ls), ref_aws_cli_s=median(cli),
                 ratio=median(cli) / median(ls), ecrfs_api_calls=median(ls_calls),
                 aws_cli_api_calls=median(cli_calls), peak_rss_mib=peak(hwm),
                 find_s=median(finds), goal=goal, runs=ls)

    def seed_repos(self):
        if self.repos_seeded:
            return
        n = self.a.repos
        log(f"seeding bench/ns with {n} repositories")
        self.curl.run_parallel("CreateRepository",
                               [{"repositoryName": f"bench/ns/r{i:05d}"} for i in range(n)])
        self.repos_seeded = True

    def list_repos(self, net=False):
        """ls -l of a namespace of many repositories on a fresh mount (the
        region's DescribeRepositories pages included) vs the AWS CLI."""
        n = self.a.repos
        self.seed_repos()
        log(f"ls -l of {n} repositories ({'modelled network' if net else 'loopback'})")
        ls, cli, ls_calls, cli_calls, hwm = [], [], [], [], []
        env = dict(os.environ, **self.emu.env(account=ACCOUNT, region=REGION), AWS_PAGER="")
        with self.network(net):
            for run in range(self.a.runs):
                self.emu.reset_log()
                cli.append(timed(["/usr/bin/aws", "--endpoint-url", self.emu.endpoint, "--output",
                                  "json", "ecr", "describe-repositories"], env=env))
                cli_calls.append(len(self.emu.log()))
                with self.mount(self.fresh_cache()) as m:
                    self.emu.reset_log()
                    t0 = time.perf_counter()
                    out = subprocess.run(["ls", "-l", str(m.path("bench", "ns"))],
                                         capture_output=True, text=True)
                    ls.append(time.perf_counter() - t0)
                    ls_calls.append(len(self.emu.log()))
                    hwm.append(m.vmhwm_kib() / 1024)
                    got = len([l for l in out.stdout.splitlines() if l.startswith("d")])
                    if got < n:
                        raise RuntimeError(f"ls -l listed {got} repositories, expected {n}")
        self.add("net_list_repos" if net else "list_repos",
                 network="modelled" if net else "loopback", repos=n, ecrfs_s=median(ls),
                 ref_aws_cli_s=median(cli), ratio=median(cli) / median(ls),
                 ecrfs_api_calls=median(ls_calls), aws_cli_api_calls=median(cli_calls),
                 peak_rss_mib=peak(hwm), goal="faster than the CLI, fewest pages", runs=ls)

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
        self.add("rss_read", network="loopback", readers=8, total_mib=self.a.rss_total_mib,
                 peak_rss_mib=peak(hwm), seconds=median(secs), goal="<= 64 MiB", runs=hwm)

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
            t, h, parts, _ = self.cp_push(lay, f"bench/push{run}")
            cp.append(t)
            hwm.append(h)
            parts_ecrfs.append(parts)
            shutil.rmtree(lay)
        self.add("push", network="loopback", size_mib=self.a.size_mib, ecrfs_s=median(cp),
                 ref_curl_sigv4_s=median(ref), ratio=median(ref) / median(cp),
                 ecrfs_upload_parts=median(parts_ecrfs), ref_upload_parts=median(parts_ref),
                 peak_rss_mib=peak(hwm), goal=">= 0.9, <= 64 MiB", runs=cp)

    def cp_push(self, lay, repo):
        """cp -rT of a layout into a new repository through a fresh mount,
        + sync; returns (seconds, VmHWM MiB, UploadLayerPart calls, API calls)."""
        if self.can_drop:
            drop_caches()
        with self.mount(self.fresh_cache()) as m:
            dest = m.path(*repo.split("/"))
            os.makedirs(dest, exist_ok=True)
            self.emu.reset_log()
            t0 = time.perf_counter()
            r = subprocess.run(["cp", "-rT", str(lay), str(dest / "v1")], capture_output=True,
                               text=True)
            if r.returncode == 0:
                r = subprocess.run(["sync", str(dest / "v1")], capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"push through the mount failed: {r.stderr}")
            lg = self.emu.log()
            return (dt, m.vmhwm_kib() / 1024,
                    sum(1 for e in lg if e.get("op") == "UploadLayerPart"),
                    sum(1 for e in lg if e.get("op") != "BlobGet"))

    def push_layers(self, net=False):
        """An image of several layers: cp -rT through the mount vs the same
        kind of parts sent one after another by curl (Curl.upload_image)."""
        k, each = self.a.push_layers, self.a.push_layer_mib
        where = "modelled network" if net else "loopback"
        log(f"push of {k} layers x {each} MiB ({where}), {self.a.runs} runs")
        cp, ref, parts_ecrfs, parts_ref, calls_ecrfs, calls_ref, hwm = [], [], [], [], [], [], []
        tagn = "net" if net else "lo"
        for run in range(self.a.runs):
            # Both sides push fresh layers (no repository has them yet).
            lay = self.work / f"layout-lref{run}"
            md, layers, man = make_layout(lay, "v1", [each * MIB] * k, seed=300 + run + 10 * net)
            bl = lay / "blobs" / "sha256"
            blobs = [(bl / d[7:], d) for d in layers]
            cfg = json.loads(man)["config"]["digest"]
            blobs.append((bl / cfg[7:], cfg))
            ref_repo = f"bench/lref-{tagn}{run}"
            self.curl.call("CreateRepository", {"repositoryName": ref_repo})
            with self.network(net):
                self.emu.reset_log()
                dt, n = self.curl.upload_image(ref_repo, blobs, "v1", man, f"lref{run}")
                calls_ref.append(len(self.emu.log()))
            ref.append(dt)
            parts_ref.append(n)
            shutil.rmtree(lay)
            lay = self.work / f"layout-lpush{run}"
            make_layout(lay, "v1", [each * MIB] * k, seed=400 + run + 10 * net)
            with self.network(net):
                t, h, parts, calls = self.cp_push(lay, f"bench/lpush-{tagn}{run}")
            cp.append(t)
            hwm.append(h)
            parts_ecrfs.append(parts)
            calls_ecrfs.append(calls)
            shutil.rmtree(lay)
        self.add("net_push_layers" if net else "push_layers",
                 network="modelled" if net else "loopback", layers=k, layer_mib=each,
                 ecrfs_s=median(cp), ref_curl_sigv4_s=median(ref),
                 ratio=median(ref) / median(cp), ecrfs_upload_parts=median(parts_ecrfs),
                 ref_upload_parts=median(parts_ref), ecrfs_api_calls=median(calls_ecrfs),
                 ref_api_calls=median(calls_ref), peak_rss_mib=peak(hwm),
                 goal=(">= 4.0" if net else ">= 0.9") + ", <= 64 MiB", runs=cp)


    def soak_tags(self):
        """Memory soak: browse many distinct tags (tests/stress/soak_tags.py);
        one run: it is a bound, not a speed."""
        sys.path.insert(0, str(SRC / "tests" / "stress"))
        import soak_tags
        n, repos = self.a.soak_tags, max(1, self.a.soak_tags // 200)
        log(f"soak: seeding {n} tags in {repos} repositories")
        names = soak_tags.seed(self.emu, repos, n)
        with self.mount(self.fresh_cache("cache-soak")) as m:
            t0 = time.perf_counter()
            seen = soak_tags.browse(lambda r: str(m.path(*r.split("/"))), names)
            took = time.perf_counter() - t0
            hwm = m.vmhwm_kib() / 1024
            with open(m.mnt / ".ecrfs" / "stats") as f:
                tables = json.load(f).get("tables", {})
        self.add("soak_tags", network="loopback", tags=seen, repos=repos, ecrfs_s=took,
                 peak_rss_mib=hwm, tables=tables, goal="<= 64 MiB")


    def stress(self):
        """The seeded random-operation checker (tests/stress/checker.py) for
        --stress-ops operations on this build, with its own emulator and
        faults (16 threads: most wait on faults; a storm every 2 minutes):
        a count of wrong bytes (must be 0), not a speed race."""
        out = self.work / "stress.json"
        cmd = ["/usr/bin/python3", str(SRC / "tests" / "stress" / "checker.py"),
               "--ops", str(self.a.stress_ops), "--seconds", "0", "--build", self.a.build,
               "--threads", "16", "--storm-every", "120", "--json", str(out)]
        if self.a.stress_seed is not None:
            cmd += ["--seed", str(self.a.stress_seed)]
        log(f"stress: {' '.join(cmd)}")
        p = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(p.stdout[-3000:])
        if not out.exists():
            raise RuntimeError(f"the checker wrote no result: {p.stderr[-2000:]}")
        r = json.loads(out.read_text())
        self.add("stress", network="loopback", seed=r["seed"], ops=r["ops"],
                 wrong_bytes=r["wrong_bytes"], wrong_answers=r["wrong_answers"],
                 eio=r["eio"], eio_mmap=r["eio_mmap"], unexpected_errno=r["unexpected_errno"],
                 push_enoent=r["push_enoent"], seconds=r["seconds"], ops_per_s=r["ops_per_s"],
                 faults_fired=r["faults_fired"], evictions=r["cache"].get("evictions"),
                 daemon=r["daemon"], checker_ok=r["ok"], replay=r["replay"],
                 goal="0 wrong bytes")


def rss_ok(r):
    return r.get("peak_rss_mib") is None or r["peak_rss_mib"] <= 64


def describe(r):
    """(ecrfs, reference, ratio, goal met) as text for one result row."""
    n = r["name"]
    ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
    hwm = f", VmHWM {r['peak_rss_mib']:.1f} MiB" if r.get("peak_rss_mib") is not None else ""
    if n == "cold_read" or n.startswith("net_cold_read"):
        goal = 1.0 if n == "cold_read" else float(r["goal"].split()[-1])
        cpu = (f", CPU {r['ecrfs_cpu_s_per_gib']:.2f} s/GiB" if n == "cold_read" else
               f", {r['blob_gets']:.0f} GETs, {r['url_calls']:.0f} URL calls")
        ref_cpu = f", CPU {r['ref_curl_cpu_s_per_gib']:.2f} s/GiB" if n == "cold_read" else ""
        return (f"{r['ecrfs_s']:.3f} s ({r['ecrfs_mib_s']:.0f} MiB/s){cpu}{hwm}",
                f"curl -o FILE {r['ref_curl_file_s']:.3f} s{ref_cpu} "
                f"(-o /dev/null {r['ref_curl_devnull_s']:.3f} s)",
                ratio, r["ratio"] >= goal and rss_ok(r))
    if n == "warm_read":
        return (f"{r['ecrfs_s']:.3f} s{hwm}", f"cat cache file {r['ref_cat_cache_file_s']:.3f} s",
                ratio, r["ratio"] >= 0.8 and rss_ok(r))
    if n in ("tail_read", "net_tail_read"):
        return (f"{r['fetched_mib']:.2f} MiB fetched{hwm}", "", "",
                r["fetched_mib"] <= 16 and rss_ok(r))
    if n in ("list_tags", "net_list_tags"):
        met = r["ratio"] > 1 and r["ecrfs_api_calls"] <= 6 and rss_ok(r)
        if n == "net_list_tags":
            met = met and r["ecrfs_s"] < 0.6
        find = f"; find -maxdepth 1 {r['find_s']:.3f} s" if "find_s" in r else ""
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_api_calls']:.0f} API calls{find}{hwm}",
                f"aws ecr describe-images {r['ref_aws_cli_s']:.3f} s, "
                f"{r['aws_cli_api_calls']:.0f} API calls",
                ratio, met)
    if n in ("list_repos", "net_list_repos"):
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_api_calls']:.0f} API calls{hwm}",
                f"aws ecr describe-repositories {r['ref_aws_cli_s']:.3f} s, "
                f"{r['aws_cli_api_calls']:.0f} API calls",
                ratio, r["ratio"] > 1 and rss_ok(r))
    if n == "rootfs":
        return bench_rootfs.describe(r)
    if n == "soak_tags":
        return (f"VmHWM {r['peak_rss_mib']:.1f} MiB after browsing in {r['ecrfs_s']:.1f} s, "
                f"{r['tables'].get('nodes', 0)} nodes kept", "", "", r["peak_rss_mib"] <= 64)
    if n == "stress":
        return (f"seed {r['seed']}: {r['ops']} ops, {r['wrong_bytes']} wrong bytes, "
                f"{r['eio']} EIOs, {r['ops_per_s']:.0f} ops/s, {r['faults_fired']} faults, "
                f"{r['evictions']} evictions", "", "", r["checker_ok"])
    if n == "rss_read":
        return (f"VmHWM {r['peak_rss_mib']:.1f} MiB ({r['total_mib']} MiB in {r['seconds']:.2f} s)",
                "", "", r["peak_rss_mib"] <= 64)
    if n == "push":
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_upload_parts']:.0f} parts{hwm}",
                f"curl --aws-sigv4 {r['ref_curl_sigv4_s']:.3f} s, {r['ref_upload_parts']:.0f} parts",
                ratio, r["ratio"] >= 0.9 and rss_ok(r))
    if n in ("push_layers", "net_push_layers"):
        goal = 4.0 if n == "net_push_layers" else 0.9
        return (f"{r['ecrfs_s']:.3f} s, {r['ecrfs_upload_parts']:.0f} parts, "
                f"{r['ecrfs_api_calls']:.0f} API calls{hwm}",
                f"curl --aws-sigv4 loop {r['ref_curl_sigv4_s']:.3f} s, "
                f"{r['ref_upload_parts']:.0f} parts, {r['ref_api_calls']:.0f} API calls",
                ratio, r["ratio"] >= goal and rss_ok(r))
    return ("", "", ratio, None)


def table(results):
    cols = ["measurement", "network", "ecrfs", "reference (same run)", "ratio", "goal", "met"]
    rows = []
    for r in results:
        if "status" in r and len(r) <= 3:
            rows.append([r["name"], "", r["status"], "", "", r.get("goal", ""), ""])
            continue
        try:
            ecrfs, ref, ratio, met = describe(r)
        except KeyError:  # a partial row (e.g. the cache file was not found)
            ecrfs, ref, ratio, met = r.get("status", ""), "", "", None
        size = f" {r['size_mib']} MiB" if "size_mib" in r else ""
        size = f" {r['tags']} tags" if "tags" in r else size
        size = f" {r['repos']} repositories" if "repos" in r else size
        size = f" {r['layers']}x{r['layer_mib']} MiB" if "layers" in r else size
        rows.append([r["name"] + size, r.get("network", ""), ecrfs, ref, ratio, r.get("goal", ""),
                     "" if met is None else ("yes" if met else "NO")])
        r["goal_met"] = met
    w = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols)).rstrip(),
             "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


LOOPBACK = ["reads", "list_tags", "list_repos", "rss_read", "push", "push_layers", "soak_tags",
            "rootfs", "stress"]
NET = ["net_reads", "net_list_tags", "net_list_repos", "net_push_layers"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=str(SRC / "build-bench"))
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--size-mib", type=int, help="layer size for loopback reads and push (default 1024, quick 32)")
    ap.add_argument("--tags", type=int, help="tags in the listing repository (default 5000, quick 500)")
    ap.add_argument("--repos", type=int, help="repositories in the listed namespace "
                    "(default 2000, quick 200)")
    ap.add_argument("--rss-total-mib", type=int, help="total read by 8 readers (default 4096, quick 128)")
    ap.add_argument("--net-read-sizes-mib", help="layer sizes of the modelled cold reads "
                    "(default 256,1024, quick 32)")
    ap.add_argument("--push-layers", type=int, help="layers of the push_layers rows (default 8, quick 4)")
    ap.add_argument("--push-layer-mib", type=int, help="their size (default 64, quick 8)")
    ap.add_argument("--net-rate-mib", type=float, default=64,
                    help="modelled network: MiB/s of each download GET (default 64)")
    ap.add_argument("--net-first-byte-ms", type=int, default=20,
                    help="modelled network: ms to a download's first byte (default 20)")
    ap.add_argument("--net-api-ms", type=int, default=30,
                    help="modelled network: ms per ECR API call (default 30)")
    ap.add_argument("--soak-tags", type=int, help="tags browsed by the memory soak "
                    "(default 20000, quick 2000)")
    ap.add_argument("--rootfs-dirs", help="comma-separated directories, one gzip layer each, "
                    "of the rootfs image (default " + ",".join(bench_rootfs.FULL) + "; quick " +
                    ",".join(bench_rootfs.QUICK) + ")")
    ap.add_argument("--stress-ops", type=int, help="operations of the stress checker "
                    "(default 1000000, quick 20000)")
    ap.add_argument("--stress-seed", type=int, help="its seed (default: a new one, printed)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="comma-separated, of: " + ",".join(LOOPBACK + NET) +
                    "; or loopback, net (all rows of that network)")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--workdir", help="scratch directory (default: a new one under /tmp)")
    a = ap.parse_args()
    a.size_mib = a.size_mib or (32 if a.quick else 1024)
    a.tags = a.tags or (500 if a.quick else 5000)
    a.repos = a.repos or (200 if a.quick else 2000)
    a.soak_tags = a.soak_tags or (2000 if a.quick else 20000)
    a.stress_ops = a.stress_ops or (20000 if a.quick else 1000000)
    a.rss_total_mib = a.rss_total_mib or (128 if a.quick else 4096)
    a.net_read_sizes = [int(x) for x in (a.net_read_sizes_mib or ("32" if a.quick else "256,1024"))
                        .split(",")]
    a.rootfs_dirs = (a.rootfs_dirs.split(",") if a.rootfs_dirs else
                     bench_rootfs.QUICK if a.quick else bench_rootfs.FULL)
    a.push_layers = a.push_layers or (4 if a.quick else 8)
    a.push_layer_mib = a.push_layer_mib or (8 if a.quick else 64)
    a.net_rate_mib = int(a.net_rate_mib) if a.net_rate_mib == int(a.net_rate_mib) else a.net_rate_mib
    only = set()
    for x in (a.only.split(",") if a.only else ["loopback", "net"]):
        x = x.strip()
        if x not in LOOPBACK + NET + ["loopback", "net"]:
            ap.error(f"--only: unknown measurement {x!r}")
        only |= set({"loopback": LOOPBACK, "net": NET}.get(x, [x]))

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
        steps = [("reads", b.reads), ("list_tags", b.list_tags), ("list_repos", b.list_repos),
                 ("rss_read", b.rss_read),
                 ("push", b.push), ("push_layers", b.push_layers), ("soak_tags", b.soak_tags),
                 ("rootfs", lambda: bench_rootfs.run(b, a.rootfs_dirs, timed, median, log)),
                 ("stress", b.stress),
                 ("net_reads", b.net_reads), ("net_list_tags", lambda: b.list_tags(net=True)),
                 ("net_list_repos", lambda: b.list_repos(net=True)),
                 ("net_push_layers", lambda: b.push_layers(net=True))]
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
    model = (f"{a.net_rate_mib} MiB/s per GET, {a.net_first_byte_ms} ms to first byte, "
             f"{a.net_api_ms} ms per API call")
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": a.runs,
            "size_mib": a.size_mib, "tags": a.tags, "repos": a.repos, "rss_total_mib": a.rss_total_mib,
            "net_read_sizes_mib": a.net_read_sizes, "push_layers": a.push_layers,
            "push_layer_mib": a.push_layer_mib, "modelled_network": model,
            "nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
            "build": a.build, "results": results}
    text = table(results)
    pathlib.Path(a.out).write_text(json.dumps(meta, indent=1) + "\n")
    print(text)
    print(f"\nmedian of {a.runs} runs (VmHWM: the highest run); ratio = reference time / ecrfs "
          f"time; written to {a.out}")
    if only & set(NET):
        print(f"modelled network: {model} (the emulator's model, both sides)")
    print(f"{os.cpu_count()} CPUs; load average {load0[0]:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at the end (other work on the machine skews times)")
    return status


if __name__ == "__main__":
    sys.exit(main())
