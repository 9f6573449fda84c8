"""The `rootfs` row of scripts/bench (README "Results: TAG@rootfs").

An image of several gzip layers made from this machine's real files (tar
of a directory each, gzip -6), pushed twice: v1 and v2 share every layer
but the top one. Measured on loopback, each run on a fresh mount and cache:

  first `ls -R v1@rootfs` (each layer downloaded once and indexed, 3 at a
      time)  vs  `skopeo copy` of v1 from the emulator's backing registry +
      `umoci unpack` (what a user does instead), and the floor: `curl URL |
      gzip -dc > /dev/null` of every layer, all in parallel;
  the daemon's VmHWM after that first listing (several large layers
      indexed at once, default cache settings);
  `cat` of one small file after the blob cache was emptied (indexes kept;
      a remount): seconds, GETs and bytes from the emulator's request log;
  `diff -r v1@rootfs v2@rootfs` on a fresh cache: seconds, bytes
      downloaded against the sum of the distinct layers, VmHWM.
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import time

ACCOUNT, REGION = "111111111111", "us-east-1"
MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REPO = "bench/rootfs"

# Layers of the image, base first; the last one differs between v1 and v2.
FULL = ["/usr/share/doc", "/usr/share/locale", "/usr/lib/python3", "/usr/lib/gcc"]
QUICK = ["/usr/share/perl", "/usr/lib/python3.11"]
TOPS = ["/etc/ssl", "/usr/share/perl5"]


def gzip_dir(src, bl):
    """tar of src (paths as in the image: no leading /), gzip -6, into the
    layout's blobs; returns (its descriptor, its diff_id)."""
    tmp = bl / "tmp-layer"
    diff_id = hashlib.sha256()
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", "/", "-cf", "-", "--numeric-owner",
                                src.lstrip("/")], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        gz = subprocess.Popen(["gzip", "-6", "-n"], stdin=subprocess.PIPE, stdout=out)
        for chunk in iter(lambda: tar.stdout.read(MIB), b""):
            diff_id.update(chunk)
            gz.stdin.write(chunk)
        gz.stdin.close()
        if gz.wait() != 0 or tar.wait() not in (0, 1):  # 1: a file changed while read
            raise RuntimeError(f"tar | gzip of {src} failed")
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for b in iter(lambda: f.read(4 * MIB), b""):
            h.update(b)
    d = "sha256:" + h.hexdigest()
    size = tmp.stat().st_size
    tmp.rename(bl / d[7:])
    return {"mediaType": OCI_LAYER, "digest": d, "size": size}, "sha256:" + diff_id.hexdigest()


def blob_put(layout, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / d[7:]).write_bytes(data)
    return d


def manifest(layout, layers, diff_ids, tag):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      "history": [{"comment": f"ecrfs bench rootfs {tag}"}]}).encode()
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": blob_put(layout, cfg),
                                  "size": len(cfg)}, "layers": layers}).encode()


def small_file(base):
    """A small regular file of the base layer (its path in the image)."""
    for d, _, files in sorted(os.walk(base)):
        for n in sorted(files):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p) and 100 < os.path.getsize(p) < 4096:
                return p.lstrip("/")
    raise RuntimeError(f"no small file under {base}")


def seed(b, dirs, log):
    lay = b.work / "layout-rootfs"
    bl = lay / "blobs" / "sha256"
    bl.mkdir(parents=True, exist_ok=True)
    log(f"rootfs: making {len(dirs) + 2} gzip layers of {', '.join(dirs + TOPS)}")
    base = [gzip_dir(d, bl) for d in dirs]
    tops = [gzip_dir(d, bl) for d in TOPS]
    v1, v2 = base + tops[:1], base + tops[1:]
    m1 = manifest(lay, [l for l, _ in v1], [i for _, i in v1], "v1")
    m2 = manifest(lay, [l for l, _ in v2], [i for _, i in v2], "v2")
    v1, v2, tops = [l for l, _ in v1], [l for l, _ in v2], [l for l, _ in tops]
    log(f"rootfs: pushing {sum(l['size'] for l in v1 + tops[1:]) / MIB:.0f} MiB")
    b.curl.push_layout(lay, REPO, "v1", m1)
    b.curl.push_layout(lay, REPO, "v2", m2)
    shutil.rmtree(lay)
    return {"v1": v1, "v2": v2, "small": small_file(dirs[0])}


def floor_once(b, layers):
    """curl URL | gzip -dc > /dev/null of every layer at once."""
    urls = [b.curl.download_url(REPO, l["digest"]) for l in layers]
    script = " ".join(f"(curl -sSf '{u}' | gzip -dc > /dev/null) &" for u in urls) + " wait"
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - t0


def user_way_once(b, timed):
    """skopeo copy from the backing registry + umoci unpack: (s, s)."""
    oci, bundle = b.work / "skopeo-oci", b.work / "umoci-bundle"
    shutil.rmtree(oci, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    src = f"docker://{b.emu.registry}/{ACCOUNT}/{REGION}/{REPO}:v1"
    cp = timed(["skopeo", "copy", "--src-tls-verify=false", src, f"oci:{oci}:v1"])
    unpack = ["umoci", "unpack"] + ([] if os.geteuid() == 0 else ["--rootless"])
    up = timed(unpack + ["--image", f"{oci}:v1", str(bundle)])
    shutil.rmtree(oci, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return cp, up


def ecrfs_once(b, info, timed):
    """First ls -R, then cat after the blob cache is emptied, then diff -r
    on a fresh cache. Returns this run's figures."""
    r = {}
    cache = b.fresh_cache("cache-rootfs")
    with b.mount(cache, "mnt-rootfs") as m:
        root = m.path(*REPO.split("/"), "v1@rootfs")
        m.path(*REPO.split("/"), "v1").stat()
        b.emu.reset_log()
        r["ls"] = timed(["ls", "-R", str(root)])
        r["ls_bytes"] = b.emu_bytes_out()
        r["ls_hwm"] = m.vmhwm_kib() / 1024
    for sub in ("blobs/sha256", "partial"):
        for p in (cache / sub).iterdir():
            p.unlink()
    with b.mount(cache, "mnt-rootfs") as m:
        f = m.path(*REPO.split("/"), "v1@rootfs", *info["small"].split("/"))
        f.parent.stat()
        b.emu.reset_log()
        r["cat"] = timed(["cat", str(f)])
        lg = [e for e in b.emu.log() if e.get("op") == "BlobGet"]
        r["cat_gets"], r["cat_bytes"] = len(lg), sum(int(e.get("bytes_out") or 0) for e in lg)
    with b.mount(b.fresh_cache("cache-rootfs"), "mnt-rootfs") as m:
        v1, v2 = (m.path(*REPO.split("/"), t + "@rootfs") for t in ("v1", "v2"))
        m.path(*REPO.split("/"), "v1").stat()
        m.path(*REPO.split("/"), "v2").stat()
        b.emu.reset_log()
        t0 = time.perf_counter()
        d = subprocess.run(["diff", "-r", "--no-dereference", str(v1), str(v2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        r["diff"] = time.perf_counter() - t0
        if d.returncode != 1:
            raise RuntimeError(f"diff -r: exit {d.returncode}: {d.stderr[-500:]}")
        r["diff_bytes"] = b.emu_bytes_out()
        r["diff_hwm"] = m.vmhwm_kib() / 1024
    return r


def run(b, dirs, timed, median, log):
    info = seed(b, dirs, log)
    v1 = info["v1"]
    distinct = {l["digest"]: l["size"] for l in info["v1"] + info["v2"]}
    runs = []
    for i in range(b.a.runs):
        log(f"rootfs: run {i + 1}")
        r = ecrfs_once(b, info, timed)
        r["floor"] = floor_once(b, v1)
        r["skopeo"], r["umoci"] = user_way_once(b, timed)
        runs.append(r)
    col = {k: [r[k] for r in runs] for k in runs[0]}
    ls, user = median(col["ls"]), median([r["skopeo"] + r["umoci"] for r in runs])
    b.add("rootfs", network="loopback", layers=len(v1), layer_mib=round(
        sum(l["size"] for l in v1) / MIB / len(v1)), image_mib=sum(l["size"] for l in v1) / MIB,
        ecrfs_ls_s=ls, ls_fetched_mib=median(col["ls_bytes"]) / MIB,
        ref_skopeo_s=median(col["skopeo"]), ref_umoci_unpack_s=median(col["umoci"]),
        ref_user_s=user, ratio=user / ls, floor_curl_gzip_s=median(col["floor"]),
        cat_after_evict_s=median(col["cat"]), cat_gets=median(col["cat_gets"]),
        cat_fetched_kib=median(col["cat_bytes"]) / 1024, diff_s=median(col["diff"]),
        diff_fetched_mib=median(col["diff_bytes"]) / MIB,
        distinct_layers_mib=sum(distinct.values()) / MIB,
        peak_rss_mib=max(col["ls_hwm"] + col["diff_hwm"]), ls_hwm_mib=max(col["ls_hwm"]),
        diff_hwm_mib=max(col["diff_hwm"]), small_file=info["small"],
        goal=">= 2.0 vs skopeo + umoci, <= 64 MiB", runs=col["ls"])


def describe(r):
    """(ecrfs, reference, ratio, goal met) as text."""
    ecrfs = (f"ls -R {r['ecrfs_ls_s']:.2f} s ({r['ls_fetched_mib']:.0f} MiB fetched), "
             f"VmHWM {r['ls_hwm_mib']:.1f} MiB; cat after eviction {r['cat_after_evict_s']:.3f} s, "
             f"{r['cat_gets']:.0f} GET {r['cat_fetched_kib']:.0f} KiB; diff -r v1 v2 "
             f"{r['diff_s']:.1f} s, {r['diff_fetched_mib']:.0f} of "
             f"{r['distinct_layers_mib']:.0f} MiB, VmHWM {r['diff_hwm_mib']:.1f} MiB")
    ref = (f"skopeo {r['ref_skopeo_s']:.2f} s + umoci unpack {r['ref_umoci_unpack_s']:.2f} s; "
           f"curl | gzip -dc {r['floor_curl_gzip_s']:.2f} s")
    met = r["ratio"] >= 2.0 and r["peak_rss_mib"] <= 64
    return ecrfs, ref, f"{r['ratio']:.2f}x", met
