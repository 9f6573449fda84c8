"""The stress checker's operations: one Worker per thread draws operations
from its own seeded generator (pread, mmap read, whole-file read,
open/close, stat, listing) and checks every answer against the corpus.

EIO is allowed (faults are injected) and counted; a wrong byte, a wrong
size or listing, any other errno, or a dead daemon is a failure."""
import errno
import os
import random
import signal
import stat
import subprocess
import sys
import time

import checker_data
from checker_data import MIB, TAGS

HERE = os.path.dirname(os.path.abspath(__file__))
MMAP_READER = [sys.executable, os.path.join(HERE, "mmap_reader.py")]
OPS = [("pread", 34), ("mmap", 10), ("whole", 4), ("openclose", 12), ("stat", 20),
       ("list", 10), ("missing", 5), ("drop", 5), ("push", 1)]
DEAD = {errno.ENOTCONN, errno.ECONNABORTED}  # the daemon is gone
FD_POOL = 4
MAX_DETAILS = 20


class Dead(Exception):
    pass


class Tally:
    """Counts of one worker (summed by the checker at the end)."""
    FIELDS = ("ops", "bytes_read", "bytes_checked", "wrong_bytes", "wrong_answers", "eio",
              "eio_mmap", "unexpected_errno", "push_enoent")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.by_op = {}
        self.max_s = {}    # op -> longest single operation (s)
        self.details = []  # the first failures, to replay by hand

    def fail(self, what):
        if len(self.details) < MAX_DETAILS:
            self.details.append(what)


# Offsets where 32-bit arithmetic would break, for the blob over 4 GiB.
WIDE = [(2 << 30) - 1, 2 << 30, (4 << 30) - 4097, (4 << 30) - 1, 4 << 30, (4 << 30) + 1]
HUGE_READ_MAX = 2 * MIB + 1  # never read the 4 GiB blob to its end from its start


def pick_offset(rng, size):
    """An offset at or near an edge most of the time, anywhere otherwise."""
    r = rng.random()
    if size > (4 << 30) and r < 0.3:
        return rng.choice(WIDE + [size - 1, size - 4097])
    if r < 0.25:
        return rng.randrange(size)
    if r < 0.35:
        return rng.choice([0, size - 1, max(0, size - 4096)])
    unit = 4096 if r < 0.7 else MIB
    k = rng.randrange(size // unit + 1)
    return min(size - 1, max(0, k * unit + rng.choice([-1, 0, 1])))


def pick_length(rng, size, off):
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 64)
    if r < 0.5:
        return rng.choice([4095, 4096, 4097, 8192])
    if r < 0.85:
        return rng.randint(1, 256 * 1024)
    if r < 0.95:
        return rng.choice([MIB - 1, MIB, MIB + 1])
    return size - off + rng.choice([0, 1, 4096])  # to the end, and past it


class Worker:
    def __init__(self, k, seed, corpus, mnt_repo, claim, stop, push_repo=None, weights=None):
        # rng draws every operation and its arguments before any I/O, so a
        # thread's sequence replays whatever failed; aux keeps the descriptors
        self.rng = random.Random(f"ecrfs-stress-ops:{seed}:{k}")
        self.aux = random.Random(f"ecrfs-stress-aux:{seed}:{k}")
        self.corpus = corpus
        self.repo = mnt_repo  # the repository's directory in the mount
        self.claim = claim    # () -> True while operations remain
        self.stop = stop      # threading.Event: the run is over
        self.t = Tally()
        self.fds = {}         # path -> fd kept open between operations
        self.mm = None        # the mmap reader child
        self.k = k
        self.seed = seed
        self.push_repo = push_repo  # where op_push writes new tags (None: no pushes)
        self.pushes = 0
        mix = dict(OPS, **(weights or {}))
        self.ops = [o for o, _ in OPS]
        self.weights = [mix[o] for o in self.ops]

    # -- helpers ---------------------------------------------------------------
    def blob_path(self, b=None, whole=False):
        pool = [x for x in self.corpus.blobs if not (whole and x.huge)]
        b = b or self.rng.choice(pool)
        tags = [t for t in TAGS if b in self.corpus.layers[t]]
        return b, os.path.join(self.repo, self.rng.choice(tags), "blobs", "sha256", b.hex)

    def fd_for(self, path):
        fd = self.fds.get(path)
        if fd is None:
            if len(self.fds) >= FD_POOL:
                old = self.aux.choice(sorted(self.fds))
                os.close(self.fds.pop(old))
            fd = self.fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def compare(self, op, b, off, length, got):
        want = b.data[off:off + length]
        self.t.bytes_read += len(got)
        self.t.bytes_checked += len(want)
        if got == want:
            return
        n = sum(1 for x, y in zip(got, want) if x != y) + abs(len(want) - len(got))
        self.t.wrong_bytes += n
        first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                     min(len(got), len(want)))
        self.t.fail(f"{op}: blob {b.i} ({b.size} B) off {off} len {length}: got {len(got)} "
                    f"bytes, want {len(want)}; {n} wrong, first at {off + first}")

    def wrong(self, what):
        self.t.wrong_answers += 1
        self.t.fail(what)

    # -- operations ------------------------------------------------------------
    def op_pread(self):
        b, p = self.blob_path()
        off = pick_offset(self.rng, b.size)
        n = pick_length(self.rng, b.size, off)
        if b.huge:
            n = min(n, HUGE_READ_MAX)
        drop = self.rng.random() < 0.6
        fd = self.fd_for(p)
        if drop:  # from the daemon, not the page cache
            os.posix_fadvise(fd, off, n, os.POSIX_FADV_DONTNEED)
        self.compare("pread", b, off, n, self.pread_all(fd, n, off))

    def pread_all(self, fd, n, off):
        """Reads like a careful reader: a short count is not EOF (Linux
        returns what it copied before an error, which the next call then
        reports); only 0 is EOF, and an EOF before the blob's end is wrong."""
        parts, got = [], 0
        while got < n:
            k = os.pread(fd, n - got, off + got)
            if not k:
                break
            parts.append(k)
            got += len(k)
        return b"".join(parts)

    def op_mmap(self):
        b, p = self.blob_path()
        off = pick_offset(self.rng, b.size)
        n = min(pick_length(self.rng, b.size, off), b.size - off,
                HUGE_READ_MAX if b.huge else b.size)
        drop = "1" if self.rng.random() < 0.6 else "0"
        if self.mm is None:
            self.mm = subprocess.Popen(MMAP_READER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.mm.stdin.write(f"{p} {off} {n} {drop}\n".encode())
        self.mm.stdin.flush()
        head = self.mm.stdout.readline()
        if not head:  # the reader died: SIGBUS is the mmap form of EIO
            rc = self.mm.wait()
            self.mm = None
            if rc == -signal.SIGBUS:
                self.t.eio += 1
                self.t.eio_mmap += 1
                return
            raise OSError(errno.EPROTO, f"mmap reader exited with {rc}")
        word, val = head.decode().split()
        if word == "ERR":
            raise OSError(int(val), os.strerror(int(val)))
        got = self.mm.stdout.read(int(val))
        self.compare("mmap", b, off, n, got)

    def op_whole(self):
        b, p = self.blob_path(whole=True)
        drop = self.rng.random() < 0.5
        with open(p, "rb", buffering=0) as f:
            if drop:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            got = f.read()  # FileIO.readall: reads until 0 (EOF)
        self.compare("whole (page cache dropped)" if drop else "whole", b, 0, b.size, got)

    def op_openclose(self):
        b, p = self.blob_path()
        fd = os.open(p, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size != b.size:
                self.wrong(f"fstat {p}: size {os.fstat(fd).st_size}, want {b.size}")
        finally:
            os.close(fd)

    def op_stat(self):
        r = self.rng.random()
        if r < 0.7:
            b, p = self.blob_path()
            st = os.stat(p)
            if st.st_size != b.size or not stat.S_ISREG(st.st_mode):
                self.wrong(f"stat {p}: size {st.st_size} mode {st.st_mode:o}, want {b.size}")
        else:
            p = os.path.join(self.repo, self.rng.choice(TAGS), "index.json")
            if not stat.S_ISREG(os.stat(p).st_mode):
                self.wrong(f"stat {p}: not a regular file")

    def op_list(self):
        r = self.rng.random()
        tag = self.rng.choice(TAGS)
        if r < 0.6:
            p = os.path.join(self.repo, tag, "blobs", "sha256")
            want = self.corpus.listing(tag)
        elif r < 0.8:
            p = os.path.join(self.repo, tag)
            want = {"oci-layout", "index.json", "blobs"}
        else:
            p, want = self.repo, set(TAGS)
        got = set(os.listdir(p))
        if got != want:
            self.wrong(f"ls {p}: extra {sorted(got - want)[:3]}, missing {sorted(want - got)[:3]}")

    def op_missing(self):
        """A name that does not exist stays ENOENT, under faults too."""
        hexd = "%064x" % self.rng.getrandbits(256)
        p = os.path.join(self.repo, self.rng.choice(TAGS), "blobs", "sha256", hexd)
        try:
            os.stat(p)
        except FileNotFoundError:
            return
        self.wrong(f"stat {p}: exists, want ENOENT")

    def op_drop(self):
        """Closes a kept descriptor (a RELEASE while others read the blob)."""
        if self.fds:
            os.close(self.fds.pop(self.aux.choice(sorted(self.fds))))

    def op_push(self):
        """Writes a one-layer OCI layout into a new tag the way cp -rT does
        (the commit's errno is index.json's close), then reads the layer
        back through the mount."""
        if not self.push_repo:
            return
        size = self.rng.choice([1, 4097, MIB + 1])
        self.pushes += 1
        tag = f"p{self.k}-{self.pushes}"
        files, layer = checker_data.push_layout(self.seed, self.k, self.pushes, size, tag)
        d = os.path.join(self.push_repo, tag)
        os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
        for name, data in files:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        p = os.path.join(d, "blobs", "sha256", layer.hex)
        try:
            with open(p, "rb", buffering=0) as f:
                got = f.read()
        except FileNotFoundError:
            self.push_missing(d, p)
            return
        self.compare("push", layer, 0, layer.size, got)

    def push_missing(self, d, p):
        """The layer of a tag whose commit returned 0 is not there: a wrong
        answer, told with what was visible then and a second later."""
        seen = [os.path.exists(x) for x in (d, os.path.join(d, "blobs"),
                                            os.path.dirname(p), p)]
        time.sleep(1)
        later = os.path.exists(p)
        self.t.push_enoent += 1
        self.t.wrong_answers += 1
        self.t.fail(f"push: {p} ENOENT after a successful commit; tag/blobs/sha256/layer "
                    f"exist: {seen}; a second later: {later}")

    # -- the loop --------------------------------------------------------------
    def run(self):
        try:
            while not self.stop.is_set() and self.claim():
                op = self.rng.choices(self.ops, self.weights)[0]
                self.t.ops += 1
                self.t.by_op[op] = self.t.by_op.get(op, 0) + 1
                t0 = time.monotonic()
                try:
                    getattr(self, "op_" + op)()
                except OSError as e:
                    self.errored(op, e)
                dt = time.monotonic() - t0
                if dt > self.t.max_s.get(op, 0):
                    self.t.max_s[op] = dt
        except Dead as e:
            self.t.fail(str(e))
            self.stop.set()
        finally:
            self.close()

    def errored(self, op, e):
        if e.errno == errno.EIO:
            self.t.eio += 1
        elif e.errno in DEAD:
            self.t.unexpected_errno += 1
            raise Dead(f"{op}: {e}: the daemon is gone")
        else:
            self.t.unexpected_errno += 1
            self.t.fail(f"{op}: unexpected {errno.errorcode.get(e.errno, e.errno)}: {e}")
        if e.errno != errno.EIO:
            return
        # a descriptor that saw EIO is closed: the next read opens afresh
        for p, fd in list(self.fds.items()):
            if self.aux.random() < 0.5:
                os.close(self.fds.pop(p))

    def close(self):
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
        if self.mm is not None:
            self.mm.stdin.close()
            try:
                self.mm.wait(10)
            except subprocess.TimeoutExpired:
                self.mm.kill()
                self.mm.wait()
            self.mm = None

