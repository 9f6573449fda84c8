"""A registry that accepts connections and answers nothing (DESIGN §11): it
costs one deadline, not one per call. Uncached reads end with EIO within a
deadline (the kernel's retry of the failed readahead fails at once),
cached data is served at once even after its listings expired, a reader
killed while it waits goes at once, and when the registry answers again
everything works in the same mount (a background probe notices it before
the back-off runs out). Listings whose TTL expired are
answered from the old copy after a short wait while ECR is slow."""
import errno
import json
import os
import signal
import subprocess
import time

import pytest

import ecrclient
import layouts
from conftest import ACCT, ECRFS, REGION, Mount, sha256_file

# A short deadline keeps the suite short; the old behaviour (two deadlines
# per read) is told apart from the new one (one) for any D > 5.
D = 8
TAGS = ["h1", "h2", "h3", "h4", "h5"]


@pytest.fixture(scope="module")
def hole(seeded, tmp_path_factory):
    """A repository of its own: each tag has a layer of unique bytes."""
    emu = seeded["emu"]
    layout = str(tmp_path_factory.mktemp("hole") / "layout")
    imgs = {}
    for tag in TAGS + ["later"]:
        imgs[tag] = layouts.make_image(layout, tag, {"/data.bin": os.urandom(2 << 20),
                                                     "/name": tag.encode()})
    for tag in TAGS:
        ecrclient.push_layout(emu, layout, "hole", tag)
    yield {"layout": layout, "imgs": imgs}
    # Other modules list the suite's repositories.
    c = ecrclient.client_for(emu)
    try:
        c.call("DeleteRepository", repositoryName="hole", force=True)
    finally:
        c.close()


def layer(m, hole, tag):
    """Path and digest hex of tag's biggest layer; its LOOKUPs are done
    (listings and manifest known), its bytes not read."""
    d = m.repo("hole", tag, "blobs", "sha256")
    hexes = [x[7:] for x in hole["imgs"][tag]["layers"]]
    big = max(hexes, key=lambda h: os.path.getsize(os.path.join(d, h)))
    return os.path.join(d, big), big


def black_hole(emu):
    # Longer than the deadline: only ecrfs's deadline ends a call.
    return emu.fault(kind="blackhole", count=0, timeout_ms=(D + 30) * 1000)


def cat(path, timeout):
    t0 = time.monotonic()
    r = subprocess.run(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r, time.monotonic() - t0


def test_uncached_read_ends_within_one_deadline(emu, hole, mount):
    m = mount(f"deadline={D}")
    p, _ = layer(m, hole, "h1")
    # Both images opened now: a manifest is fetched only for an image being
    # opened (browsing is not a pull), and the hole would answer that EIO.
    p2, _ = layer(m, hole, "h2")
    black_hole(emu)
    try:
        r, took = cat(p, timeout=4 * D)
        assert r.returncode != 0
        assert b"Input/output error" in r.stderr
        print(f"black hole, uncached cat: EIO after {took:.2f} s (deadline {D} s)")
        assert took <= D + 5, f"cat took {took:.1f} s with a {D} s deadline"
        # The endpoint is in back-off: another uncached read fails at once.
        r, took = cat(p2, timeout=4 * D)
        print(f"black hole, next uncached cat: EIO after {took:.2f} s")
        assert r.returncode != 0 and took < 1.0, took
        with open(m.path(".ecrfs", "stats")) as f:
            http = json.load(f)["http"]
        assert http["hosts_down"] == 1 and http["fast_fails"] >= 1, http
    finally:
        emu.clear_faults()
    assert "does not answer" in m.logtext()


def test_cached_read_after_ttl_is_fast(emu, hole, mount):
    m = mount(f"deadline={D},tag_ttl=1")
    p, hexd = layer(m, hole, "h3")
    assert sha256_file(p) == hexd  # now in the disk cache
    black_hole(emu)
    try:
        time.sleep(2.5)  # the tag and repository listings expired
        t0 = time.monotonic()
        got = sha256_file(p)
        took = time.monotonic() - t0
        assert got == hexd
        print(f"black hole, cached 2 MiB blob after its TTL: {took:.2f} s")
        assert took < 1.0, f"a cached blob took {took:.2f} s"
        # A name ECR never listed still fails normally.
        with pytest.raises(FileNotFoundError):
            os.stat(m.repo("hole", "never-listed"))
    finally:
        emu.clear_faults()


def test_killed_reader_goes_at_once(emu, hole, mount, tmp_path):
    # libfuse keeps an INTERRUPT that arrives after its request was answered
    # (the kernel dropped the killed reader's READ) and never frees it: 128
    # bytes inside libfuse3, reported by LeakSanitizer at exit now and then.
    supp = tmp_path / "lsan.supp"
    supp.write_text("leak:libfuse3.so\n")
    m = mount("deadline=120", env={"LSAN_OPTIONS": f"suppressions={supp}"})
    p, _ = layer(m, hole, "h4")
    fid = black_hole(emu)
    try:
        proc = subprocess.Popen(["cat", p], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not any(f["id"] == fid and f["fired"] for f in emu.faults()):
            assert time.monotonic() < end, "the read never reached the registry"
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None  # waiting on the registry
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        took = time.monotonic() - t0
        print(f"black hole, kill -9 of a waiting reader: gone after {took:.2f} s")
        assert took < 2.0, f"the killed reader took {took:.1f} s to go"
    finally:
        emu.clear_faults()


def test_reads_work_again_when_the_hole_closes(emu, hole, mount):
    m = mount(f"deadline={D}")
    p, hexd = layer(m, hole, "h5")
    black_hole(emu)
    try:
        r, _ = cat(p, timeout=4 * D)
        assert r.returncode != 0
    finally:
        emu.clear_faults()
    # Within the back-off reads fail at once; after it one call tries the
    # registry again and everything works, in the same mount.
    t0 = time.monotonic()
    end = t0 + 60 + D
    while True:
        try:
            assert sha256_file(p) == hexd
            break
        except OSError as e:
            assert e.errno == errno.EIO
            assert time.monotonic() < end, "reads still fail after the back-off"
            time.sleep(0.5)
    print(f"hole closed: reads work again after {time.monotonic() - t0:.1f} s")
    assert "answers again" in m.logtext()


def test_probe_ends_the_back_off_early(emu, hole, mount):
    """While the endpoint is in back-off a background probe asks it once a
    second: when the hole closes, the first read succeeds, long before the
    back-off would have run out."""
    m = mount(f"deadline={D}")
    p, hexd = layer(m, hole, "h1")
    emu.reset_log()
    black_hole(emu)
    try:
        r, _ = cat(p, timeout=4 * D)  # down: 5 s of back-off
        assert r.returncode != 0
        time.sleep(5.5)
        # The back-off ran out: this read tries the hole and fails; the
        # back-off doubles to 10 s. Background probes failed all along.
        r, _ = cat(p, timeout=4 * D)
        assert r.returncode != 0
        down = time.monotonic()
    finally:
        emu.clear_faults()
    time.sleep(4)  # probes once a second, each waits at most 2 s
    t0 = time.monotonic()
    assert t0 - down < 9, "too slow to tell: the back-off is nearly over"
    assert sha256_file(p) == hexd  # the first read after the hole closed
    print(f"hole closed: the first read worked {t0 - down:.1f} s into a 10 s back-off")
    assert "answers again (background probe)" in m.logtext()
    # The probe is one cheap unsigned GET of the origin (the emulator logs
    # it as an unknown STS call), answered once the hole closed.
    probes = [e for e in emu.log() if e.get("op") == "Unknown" and e.get("status")]
    print(f"answered probes in the emulator's log: {len(probes)}")
    assert 1 <= len(probes) <= 2, probes


def test_probe_in_a_daemon_mounted_into_the_hole(emu, hole, tmp_path):
    """Without -f the daemon forks after its first calls: a mount made while
    the registry is black-holed (the endpoint goes down before the fork)
    still probes it, so reads work as soon as the hole closes."""
    mnt, log = tmp_path / "dmnt", tmp_path / "dmnt.log"
    mnt.mkdir()
    env = Mount(emu, tmp_path).env
    black_hole(emu)
    try:
        r = subprocess.run([ECRFS, str(mnt), "-o", f"cache_dir={tmp_path / 'dcache'},"
                            f"log={log},deadline={D}"], env=env, capture_output=True,
                           timeout=60)
        down = time.monotonic()
    finally:
        emu.clear_faults()
    assert r.returncode == 0, r.stderr
    try:
        time.sleep(3)  # within the 5 s back-off
        p = mnt / ACCT / REGION / "hole" / "h3" / "blobs" / "sha256"
        hexd = max((x[7:] for x in hole["imgs"]["h3"]["layers"]),
                   key=lambda h: os.path.getsize(p / h))
        assert time.monotonic() - down < 5, "too slow to tell"
        assert sha256_file(str(p / hexd)) == hexd
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        # The daemon ends after the unmount (a thread lost in the fork
        # would hang its teardown).
        end = time.monotonic() + 20
        while True:
            pids = subprocess.run(["pgrep", "-f", f"{ECRFS} {mnt} "], capture_output=True,
                                  text=True).stdout.split()
            if not pids:
                break
            if time.monotonic() > end:
                for pid in pids:
                    os.kill(int(pid), signal.SIGKILL)
                pytest.fail("the daemon did not end after its unmount")
            time.sleep(0.2)
    text = log.read_text()
    assert "does not answer" in text and "answers again (background probe)" in text, text


def test_persisted_listing_answers_at_once_after_remount(emu, hole, mount, tmp_path):
    """A listing this mount never loaded but an earlier mount persisted is
    an expired answer like any other: into a black hole, the first call
    waits a fraction of a second, then the persisted listing answers."""
    cache = str(tmp_path / "shared-cache")
    m = mount(f"deadline={D}", name="m1", cache_dir=cache)
    p, hexd = layer(m, hole, "h2")
    assert sha256_file(p) == hexd  # listings, manifest and blob persisted
    assert m.stop() == 0
    m = mount(f"deadline={D}", name="m2", cache_dir=cache)
    black_hole(emu)
    try:
        t0 = time.monotonic()
        names = os.listdir(m.repo("hole"))
        took_ls = time.monotonic() - t0
        t0 = time.monotonic()
        got = sha256_file(m.repo("hole", "h2", "blobs", "sha256", hexd))
        took_cat = time.monotonic() - t0
    finally:
        emu.clear_faults()
    print(f"black hole, remount: ls of a persisted listing {took_ls:.2f} s, "
          f"cat of a cached blob {took_cat:.2f} s")
    assert set(TAGS) <= set(names), names
    assert got == hexd
    assert took_ls < 1.5, f"the first listing took {took_ls:.1f} s"
    assert took_cat < 1.0, f"the cached blob took {took_cat:.1f} s"


def test_slow_listing_answers_stale_then_fresh(emu, hole, mount):
    """ECR slower than a second: an expired listing is answered from the
    old copy after a short wait, and the next call sees the refresh."""
    m = mount("tag_ttl=1")
    d = m.repo("hole")
    assert "later" not in os.listdir(d)
    ecrclient.push_layout(emu, hole["layout"], "hole", "later")
    try:
        time.sleep(1.5)  # the listing expired
        emu.fault(op="DescribeImages", kind="delay", delay_ms=3000, repo="hole")
        t0 = time.monotonic()
        names = os.listdir(d)
        took = time.monotonic() - t0
        print(f"DescribeImages 3 s slow, expired listing: {took:.2f} s")
        assert took < 1.5, f"an expired listing took {took:.2f} s"
        assert "later" not in names  # the old copy
        time.sleep(3.5)  # the refresh went on in the background
        assert "later" in os.listdir(d)
    finally:
        emu.clear_faults()
