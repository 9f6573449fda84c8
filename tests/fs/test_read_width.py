"""The read path's fast paths, checked from the emulator's request log (not
timed): one GetDownloadUrlForLayer per blob (single-flight, reused between
misses), a cold sequential read that opens several ranged GETs at its
first miss, small random reads that fetch close to what they ask, and no
byte fetched twice. The modelled network (slow GETs, a first-byte delay,
slow API calls) makes overlapping requests visible in the log's times and
races between readers deterministic enough to count."""
import hashlib
import json
import os
import subprocess
import threading

import pytest

import ecrclient

MIB = 1 << 20
BIG = 64 * MIB
REPO = "width/big"
# Slow enough that a 1 MiB GET lasts ~80 ms: overlap shows in the log.
SLOW = {"get_rate": 16 * MIB, "first_byte_ms": 20, "api_ms": 30}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def big(seeded):
    """A 64 MiB single-layer image width/big:v1; returns (layer digest, bytes)."""
    emu = seeded["emu"]
    data = os.urandom(BIG)
    ecrclient.create_repository(emu, REPO)
    c = ecrclient.client_for(emu)
    try:
        layer = c.push_blob(REPO, data)
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
        cd = c.push_blob(REPO, cfg)
        man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": cd, "size": len(cfg)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": layer, "size": BIG}]}).encode()
        c.put_image(REPO, man, OCI_MANIFEST, "v1")
    finally:
        c.close()
    return layer, data


def blob_path(m, layer):
    p = m.repo(REPO, "v1", "blobs", "sha256", layer.split(":")[1])
    assert os.stat(p).st_size == BIG  # listings and manifests before the log is reset
    return p


def gets(log):
    return [e for e in log if e["op"] == "BlobGet"]


def url_calls(log):
    return [e for e in log if e["op"] == "GetDownloadUrlForLayer"]


def span(r):
    """(first, last) byte of a logged Range 'bytes=A-B'."""
    a, b = r.split("=", 1)[1].split("-")
    return int(a), int(b)


def cat(p):
    r = subprocess.run(["cat", p], stdout=subprocess.PIPE, timeout=300)
    assert r.returncode == 0
    return r.stdout


def test_cold_read_fetches_each_byte_once_in_ranges(emu, mount, big):
    layer, data = big
    m = mount()
    p = blob_path(m, layer)
    with emu.network(**SLOW):
        emu.reset_log()
        out = cat(p)
        log = emu.log()
    assert hashlib.sha256(out).hexdigest() == layer.split(":")[1]
    g = gets(log)
    assert g and all(e["status"] == 206 and e["range"] for e in g)
    assert sum(e["bytes_out"] for e in g) == BIG
    covered = sorted(span(e["range"]) for e in g)
    assert covered[0][0] == 0 and covered[-1][1] == BIG - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(covered, covered[1:]))  # no overlap, no hole


def test_one_download_url_per_cold_read(emu, mount, big):
    layer, _ = big
    m = mount()
    p = blob_path(m, layer)
    with emu.network(**SLOW):
        emu.reset_log()
        cat(p)
        log = emu.log()
    n = len(url_calls(log))
    assert n == 1, f"{n} GetDownloadUrlForLayer calls for one cold read"


def test_one_download_url_for_concurrent_readers(emu, mount, big):
    layer, _ = big
    m = mount()
    p = blob_path(m, layer)
    outs = [None, None]

    def read(i):
        outs[i] = cat(p)
    with emu.network(**SLOW):
        emu.reset_log()
        ts = [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        log = emu.log()
    assert outs[0] == outs[1] and len(outs[0]) == BIG
    n = len(url_calls(log))
    assert n == 1, f"{n} GetDownloadUrlForLayer calls for two readers"
    assert sum(e["bytes_out"] for e in gets(log)) == BIG  # nothing fetched twice


def test_first_miss_opens_several_gets_at_once(emu, mount, big):
    layer, _ = big
    m = mount()
    p = blob_path(m, layer)
    with emu.network(**SLOW):
        emu.reset_log()
        cat(p)
        g = sorted(gets(emu.log()), key=lambda e: e["ts"])
    first_end = g[0]["ts"] + g[0]["ms"] / 1000.0
    at_once = [e for e in g if e["ts"] < first_end]
    # Several ranged GETs in flight together before the first one is done,
    # asking for a good part of the blob between them.
    assert len(at_once) >= 4, [(e["range"], e["ts"] - g[0]["ts"]) for e in g]
    assert sum(e["bytes_out"] for e in at_once) >= BIG // 4


def test_small_random_reads_fetch_close_to_the_ask(emu, mount, big):
    layer, data = big
    m = mount()
    p = blob_path(m, layer)
    offsets = [40 * MIB + 123, 10 * MIB + 4567, 25 * MIB + 89]
    fetched = []
    with emu.network(**SLOW):
        emu.reset_log()
        with open(p, "rb", buffering=0) as f:
            for off in offsets:
                n = len(gets(emu.log()))
                assert os.pread(f.fileno(), 4096, off) == data[off:off + 4096]
                fetched.append(sum(e["bytes_out"] for e in gets(emu.log())[n:]))
        log = emu.log()
    # Each 4 KiB read costs at most a small chunk, not a readahead window.
    assert all(0 < b <= 2 * MIB for b in fetched), fetched
    # The URL is kept between misses of the same blob.
    assert len(url_calls(log)) == 1
    # Requests one after another share connections.
    assert len({e["conn"] for e in log}) < len(log), [(e["op"], e["conn"]) for e in log]
