#!/usr/bin/python3
"""Seeded random-operation checker: threads doing pread at random offsets,
mmap reads, whole-file reads, open/close, stat and ls over blobs of page
and chunk edge sizes, through a real mount whose cache is capped below the
working set, while the emulator injects truncations, 503s, stalls, dropped
connections and expired URLs. Every byte read is compared with the seed's
bytes; EIO is allowed and counted, a wrong byte never is.

    /usr/bin/python3 tests/stress/checker.py --seed 42 --seconds 60
    /usr/bin/python3 tests/stress/checker.py --seed 42 --ops 1000000 --build build-bench

The seed fixes the blobs, every thread's sequence of operations and
arguments, and the emulator's fault draws; the interleaving of the threads
(and so which request meets which fault) is the scheduler's. Exit status 0
only with 0 wrong bytes, 0 wrong answers, no errno but EIO, and a daemon
that lived and exited cleanly with no sanitizer report. Standard library
only."""
import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import checker_data  # noqa: E402
from checker_ops import Tally, Worker  # noqa: E402
from emu import Emulator  # noqa: E402
import mount as mountlib  # noqa: E402

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ThreadSanitizer: reported")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, help="default: a new one, printed")
    ap.add_argument("--ops", type=int, default=0, help="operations in all (0: until --seconds)")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("ECRFS_STRESS_SECONDS", 60)),
                    help="time limit (0: until --ops; default $ECRFS_STRESS_SECONDS or 60)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--fault-rate", type=float, default=1.0,
                    help="scales every fault probability (0: no faults)")
    ap.add_argument("--cache-mib", type=int, default=6,
                    help="the mount's cache_size in MiB (the working set is about 19 MiB)")
    ap.add_argument("--deadline", type=int, default=5, help="the mount's deadline= (s)")
    ap.add_argument("--no-push", dest="push", action="store_false",
                    help="no push operations (cp -rT of a small layout into a new tag)")
    ap.add_argument("--storm-every", type=float, default=30,
                    help="seconds between 503 storms on downloads longer than the deadline "
                         "(so reads end in EIO); 0: none")
    ap.add_argument("--build", default=os.environ.get("ECRFS_BUILD", os.path.join(SRC, "build-test")),
                    help="build dir holding fs/ecrfs (default $ECRFS_BUILD or build-test)")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument("--keep-log", help="copy the daemon's log to this file")
    ap.add_argument("--opts", default="", help="more -o options of the mount (e.g. debug)")
    ap.add_argument("--corrupt", action="store_true",
                    help="self-test: flip 16 bytes in the middle of each blob of 1 MiB and more "
                         "in the emulator's storage first; the run must then FAIL")
    ap.add_argument("--weights", default="",
                    help="operation weights over the defaults, e.g. push=20,pread=0")
    a = ap.parse_args(argv)
    if a.seed is None:
        a.seed = int(os.environ.get("ECRFS_STRESS_SEED") or int.from_bytes(os.urandom(4), "big"))
    if not a.ops and not a.seconds:
        ap.error("give --ops or --seconds")
    return a


def replay_command(a):
    return ("/usr/bin/python3 tests/stress/checker.py " +
            " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in
                     [("seed", a.seed), ("ops", a.ops), ("seconds", a.seconds),
                      ("threads", a.threads), ("fault-rate", a.fault_rate),
                      ("cache-mib", a.cache_mib), ("deadline", a.deadline),
                      ("storm-every", a.storm_every), ("build", a.build)]) +
            (f" --weights {a.weights}" if a.weights else "") +
            ("" if a.push else " --no-push"))


class Claims:
    """Hands out operations until --ops are done or --seconds are over."""

    def __init__(self, ops, seconds):
        self.left = ops or None
        self.end = time.monotonic() + seconds if seconds else None
        self.lock = threading.Lock()

    def __call__(self):
        if self.end is not None and time.monotonic() >= self.end:
            return False
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def storms(a, emu, stop, log, fired):
    """Every --storm-every seconds, every download fails with 503 for three
    deadlines (a read's fetches may retry for about two): uncached reads end
    in EIO, and the checker sees what the kernel and the daemon serve after."""
    plan = checker_data.fault_plan(a.seed, a.fault_rate) if a.fault_rate else []
    k = 0
    while a.storm_every and not stop.wait(a.storm_every):
        k += 1
        emu.fault(op="BlobGet", kind="http503", count=0)
        log(f"  storm {k}: every download fails for {a.deadline * 3} s")
        stop.wait(a.deadline * 3)
        fired[0] += sum(f.get("fired", 0) for f in emu.faults())  # cleared next
        emu.clear_faults()
        for f in plan:
            emu.fault(**f)
    return k


def run_workers(a, corpus, m, log, fired):
    """Runs the threads; returns (summed Tally, seconds, hung); fired[0]
    gets the faults fired before a storm cleared them."""
    stop = threading.Event()
    claim = Claims(a.ops, a.seconds)
    repo = m.repo(corpus.repo)
    push_repo = m.repo(corpus.repo + "-push") if a.push else None
    weights = {k: int(v) for k, v in (x.split("=") for x in a.weights.split(",") if x)}
    workers = [Worker(k, a.seed, corpus, repo, claim, stop, push_repo, weights)
               for k in range(a.threads)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    storm = threading.Thread(target=storms, args=(a, m.emu, stop, log, fired), daemon=True)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    storm.start()
    # a thread may wait out retries of one deadline per call; more is a hang
    limit = (a.seconds or 1e9) + 6 * a.deadline + 60
    next_report = t0 + 15
    while any(t.is_alive() for t in threads) and time.monotonic() - t0 < limit:
        threads[0].join(1)
        for t in threads:
            t.join(0)
        if time.monotonic() >= next_report:
            next_report += 15
            n = sum(w.t.ops for w in workers)
            el = time.monotonic() - t0
            log(f"  {el:.0f} s: {n} operations ({n / el:.0f}/s), "
                f"{sum(w.t.wrong_bytes for w in workers)} wrong bytes, "
                f"{sum(w.t.eio for w in workers)} EIOs")
    stop.set()
    storm.join(a.deadline * 4)
    hung = [k for k, t in enumerate(threads) if t.is_alive()]
    took = time.monotonic() - t0
    total = Tally()
    for w in workers:
        for f in Tally.FIELDS:
            setattr(total, f, getattr(total, f) + getattr(w.t, f))
        for op, n in w.t.by_op.items():
            total.by_op[op] = total.by_op.get(op, 0) + n
        for op, dt in w.t.max_s.items():
            total.max_s[op] = round(max(dt, total.max_s.get(op, 0)), 2)
        total.details += w.t.details
    return total, took, hung


def daemon_verdict(m, rc):
    """What the daemon's exit and log say: (ok, text)."""
    text = m.logtext()
    marks = sorted({k for k in SANITIZER_MARKS if k in text})
    if marks:
        i = min(text.find(k) for k in marks)
        return False, f"sanitizer report ({', '.join(marks)}):\n{text[max(0, i - 200):i + 6000]}"
    if rc != 0:
        return False, f"exited with {rc}; log ends with:\n{text[-3000:]}"
    return True, "exited 0, no sanitizer report"


def check(a, log=lambda s: print(s, file=sys.stderr, flush=True)):
    """One run; returns the result dict (result["ok"] says pass or fail)."""
    mountlib.ECRFS = os.path.join(a.build, "fs", "ecrfs")
    corpus = checker_data.Corpus(a.seed)
    res = {"seed": a.seed, "threads": a.threads, "build": a.build,
           "working_set_bytes": corpus.working_set(), "cache_size_bytes": a.cache_mib << 20}
    with Emulator() as emu, tempfile.TemporaryDirectory(prefix="ecrfs-stress-") as tmp:
        log(f"stress: seed {a.seed}: pushing {len(corpus.blobs)} blobs "
            f"({corpus.working_set() / (1 << 20):.1f} MiB) to the emulator")
        corpus.push(emu)
        if a.corrupt:
            for b in corpus.blobs:
                if b.size >= 1 << 20:
                    emu.corrupt_blob(b.digest, offset=b.size // 2, length=16)
        opts = f"cache_size={a.cache_mib}M,deadline={a.deadline},tag_ttl=2"
        if a.opts:
            opts += "," + a.opts
        m = mountlib.Mount(emu, tmp, opts=opts).start()
        hung = []
        try:
            for f in checker_data.fault_plan(a.seed, a.fault_rate) if a.fault_rate else []:
                emu.fault(**f)
            log(f"stress: {a.threads} threads, {a.ops or 'unlimited'} operations, "
                f"{a.seconds or 'no'} s limit, -o {opts}")
            fired = [0]
            total, took, hung = run_workers(a, corpus, m, log, fired)
            faults = emu.faults()
            emu.clear_faults()
            try:
                with open(m.path(".ecrfs", "stats")) as f:
                    stats = json.load(f)
            except (OSError, ValueError):
                stats = {}
        finally:
            if hung:  # unblock the stuck threads: the daemon is not answering
                os.system(f"fusermount3 -uz {shlex.quote(m.mnt)}")
            rc = m.stop()
        ok_daemon, verdict = daemon_verdict(m, rc)
        if a.keep_log:
            with open(a.keep_log, "w") as f:
                f.write(m.logtext())
    res.update({k: getattr(total, k) for k in Tally.FIELDS})
    res.update(seconds=round(took, 1), ops_per_s=round(total.ops / took, 1) if took else 0,
               by_op=total.by_op, max_op_s=total.max_s, details=total.details, hung_threads=hung,
               daemon=verdict.splitlines()[0], daemon_ok=ok_daemon,
               faults_fired=fired[0] + sum(f.get("fired", 0) for f in faults),
               faults_by_kind_since_last_storm=fired_by_kind(faults), cache=stats.get("cache", {}),
               http=stats.get("http", {}), replay=replay_command(a))
    res["ok"] = (total.wrong_bytes == 0 and total.wrong_answers == 0 and
                 total.unexpected_errno == 0 and not hung and ok_daemon)
    if not ok_daemon:
        res["daemon_report"] = verdict
    return res


def fired_by_kind(faults):
    out = {}
    for f in faults:
        k = f"{f['op']}:{f['kind']}"
        out[k] = out.get(k, 0) + f.get("fired", 0)
    return out


def report(r):
    ops = ", ".join(f"{k} {v}" for k, v in sorted(r["by_op"].items()))
    lines = [
        f"seed: {r['seed']}",
        f"operations: {r['ops']} in {r['seconds']} s ({r['ops_per_s']:.0f} ops/s; {ops})",
        "longest operation (s): " + ", ".join(f"{k} {v}" for k, v in sorted(r["max_op_s"].items())),
        f"bytes compared: {r['bytes_checked']}",
        f"wrong bytes: {r['wrong_bytes']}",
        f"wrong answers (sizes, listings, ENOENT): {r['wrong_answers']}",
        f"EIOs: {r['eio']} (of which mmap SIGBUS: {r['eio_mmap']})",
        f"other errnos: {r['unexpected_errno']}",
        f"pushes: {r['by_op'].get('push', 0)}, of which ENOENT after the commit: "
        f"{r['push_enoent']} (counted in wrong answers)",
        f"faults fired: {r['faults_fired']}",
        f"cache: {r['cache'].get('evictions', '?')} evictions, "
        f"{r['cache'].get('hits', '?')} hits, {r['cache'].get('misses', '?')} misses "
        f"(cache_size {r['cache_size_bytes'] >> 20} MiB, working set "
        f"{r['working_set_bytes'] / (1 << 20):.1f} MiB)",
        f"daemon: {r['daemon']}",
    ]
    if r["hung_threads"]:
        lines.append(f"HUNG threads: {r['hung_threads']}")
    for d in r["details"][:20]:
        lines.append(f"  failure: {d}")
    if r.get("daemon_report"):
        lines.append(r["daemon_report"])
    lines.append(f"replay: {r['replay']}")
    lines.append("PASS" if r["ok"] else "FAIL")
    return "\n".join(lines)


def main(argv=None):
    a = parse_args(argv)
    r = check(a)
    print(report(r), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
