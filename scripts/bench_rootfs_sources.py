#!/usr/bin/python3
"""First `ls -R TAG@rootfs` with each index source against the local build
of the same files (README "Index sources"): one image per source made from
the same directory (eStargz and zstd:chunked by tests/rootfs/toc_layers.py,
and a plain tar+gzip of the eStargz image's tar stream, which ecrfs builds),
pushed to the emulator; each run is a fresh mount with an empty cache.
Prints the median time and the bytes downloaded by the first look.

  scripts/bench_rootfs_sources.py [--src DIR] [--runs N] [--build DIR]
"""
import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "rootfs"))


def entries(src):
    """(TarInfo kwargs, data) of src's directories, files and symlinks."""
    out = []
    for d, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(d, src)
        if rel != ".":
            st = os.lstat(d)
            out.append((dict(name=rel, type=tarfile.DIRTYPE, mode=0o755, mtime=int(st.st_mtime)),
                        None))
        for f in sorted(files):
            p = os.path.join(d, f)
            st = os.lstat(p)
            name = os.path.normpath(os.path.join(rel, f))
            if os.path.islink(p):
                out.append((dict(name=name, type=tarfile.SYMTYPE, linkname=os.readlink(p),
                                 mode=0o777, mtime=int(st.st_mtime)), None))
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    out.append((dict(name=name, type=tarfile.REGTYPE, mode=st.st_mode & 0o777,
                                     mtime=int(st.st_mtime)), fh.read()))
    return out


def first_look(emu, mounts_tmp, repo, tag, run):
    from mount import Mount
    m = Mount(emu, mounts_tmp, name=f"{repo.replace('/', '-')}-{run}").start()
    try:
        emu.reset_log()
        root = m.repo(repo, tag + "@rootfs")
        t0 = time.monotonic()
        subprocess.run(["ls", "-R", root], check=True, stdout=subprocess.DEVNULL, timeout=1800)
        secs = time.monotonic() - t0
        state = os.getxattr(root, "user.ecr.rootfs_state").decode()
        got = sum(e.get("bytes_out") or 0 for e in emu.log() if e.get("op") == "BlobGet")
        with open(f"/proc/{m.proc.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        return secs, got, state, hwm
    finally:
        m.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="/usr/share/doc")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    a = ap.parse_args()
    os.environ["ECRFS_BUILD"] = a.build
    import ecrclient
    import toc_layers as tl
    from emu import Emulator
    sys.path.insert(0, os.path.join(ROOT, "tests", "rootfs"))
    from test_rootfs_sources import add_raw_image, GZ, ZST

    work = tempfile.mkdtemp(prefix="bench-rootfs-")
    layout = os.path.join(work, "layout")
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    ents = entries(a.src)
    t0 = time.monotonic()
    eb, ed, et = tl.estargz(ents)
    zb, za, zt = tl.zstd_chunked(ents)
    print(f"{len(ents)} entries from {a.src}; layers made in {time.monotonic() - t0:.0f} s", flush=True)
    add_raw_image(layout, "esgz", [(eb, GZ, {tl.ESTARGZ_TOC_DIGEST: ed}, et)])
    add_raw_image(layout, "zc", [(zb, ZST, za, zt)])
    gb = gzip.compress(et, compresslevel=6, mtime=0)
    add_raw_image(layout, "plain", [(gb, GZ, None, et)])
    emu = Emulator(state_dir=os.path.join(work, "emu"))
    emu.start()
    try:
        rows = []
        for repo, tag, size in (("b/plain", "plain", len(gb)), ("b/esgz", "esgz", len(eb)),
                                ("b/zc", "zc", len(zb))):
            ecrclient.push_layout(emu, layout, repo, tag)
            runs = [first_look(emu, work, repo, tag, r) for r in range(a.runs)]
            rows.append((repo, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs), size, runs[0][2],
                         max(r[3] for r in runs)))
    finally:
        emu.stop()
    base = rows[0][1]
    print(f"{'image':10} {'state':24} {'ls -R (median)':>15} {'vs built':>9} {'downloaded':>12} "
          f"{'layer':>12} {'VmHWM KiB':>10}")
    for repo, secs, got, size, state, hwm in rows:
        print(f"{repo:10} {state:24} {secs:13.2f} s {base / secs:8.1f}x {got:12,} {size:12,} "
              f"{hwm:10,}")


if __name__ == "__main__":
    main()
