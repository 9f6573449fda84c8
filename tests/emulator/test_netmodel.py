"""The modelled network (emu_netmodel.py): a rate cap per download GET, a
first-byte delay on download URLs, a delay per API call. Timings are
checked coarsely (lower bounds, and upper bounds with a wide margin) so a
busy machine does not fail them."""
import http.client
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from emu import Emulator, NETMODEL_OFF

MIB = 1 << 20


def timed_get(url, headers=None, method="GET"):
    """(status, body, seconds to the headers, seconds to the last byte)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        t0 = time.monotonic()
        c.request(method, u.path + "?" + u.query, headers=headers or {})
        r = c.getresponse()
        t1 = time.monotonic()
        body = r.read()
        return r.status, body, t1 - t0, time.monotonic() - t0
    finally:
        c.close()


@pytest.fixture
def blob8(emu, client, repo):
    data = os.urandom(8 * MIB)
    d = client.push_blob(repo, data)
    url = client.call("GetDownloadUrlForLayer", repositoryName=repo,
                      layerDigest=d)["downloadUrl"]
    return data, url


def test_knobs_round_trip(emu):
    assert emu.netmodel() == NETMODEL_OFF
    got = emu.netmodel(get_rate=64 * MIB, first_byte_ms=20, api_ms=30)
    assert got == {"get_rate": 64 * MIB, "first_byte_ms": 20, "api_ms": 30, "hold": 0}
    assert emu.netmodel() == got
    assert emu.netmodel(get_rate="16M")["get_rate"] == 16 * MIB  # the env's form too
    assert emu.netmodel(api_ms=0) == {"get_rate": 16 * MIB, "first_byte_ms": 20, "api_ms": 0,
                                      "hold": 0}
    for bad in ({"rate": 1}, {"api_ms": -1}, {"first_byte_ms": "x"}, {"hold": 2}):
        with pytest.raises(urllib.error.HTTPError) as e:
            emu.netmodel(**bad)
        assert e.value.code == 400
    assert emu.netmodel()["get_rate"] == 16 * MIB  # a refused update changes nothing
    with emu.pristine():
        assert emu.netmodel() == NETMODEL_OFF


def test_rate_cap(emu, blob8):
    data, url = blob8
    emu.netmodel(get_rate=16 * MIB)
    st, body, _, total = timed_get(url)
    assert st == 200 and body == data
    assert 0.45 <= total < 5, total  # 8 MiB at 16 MiB/s: 0.5 s
    st, body, _, total = timed_get(url, {"Range": f"bytes={MIB}-{5 * MIB - 1}"})
    assert st == 206 and body == data[MIB:5 * MIB]
    assert 0.2 <= total < 4, total
    st, body, _, total = timed_get(url, {"Range": "bytes=0-9,20-29"})  # the proxied path
    assert st == 206 and total < 4
    e = [x for x in emu.log() if x["op"] == "BlobGet"][-3]
    assert e["bytes_out"] == len(data) and e["ms"] >= 400  # logged before the last slice


def test_rate_cap_is_per_get(emu, blob8):
    """Four GETs at once each get the full rate: the emulator serves them
    concurrently, so together they take about as long as one."""
    data, url = blob8
    emu.netmodel(get_rate=8 * MIB)
    res = [None] * 4

    def one(i):
        res[i] = timed_get(url, {"Range": f"bytes={i * 2 * MIB}-{(i + 1) * 2 * MIB - 1}"})
    ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    for i, (st, body, _, total) in enumerate(res):
        assert st == 206 and body == data[i * 2 * MIB:(i + 1) * 2 * MIB]
        assert total >= 0.2, total  # 2 MiB at 8 MiB/s: 0.25 s each
    assert wall < 0.8, wall  # one after another: 1 s


def test_hold_pauses_bodies_in_flight(emu, blob8):
    """hold=1 stops a capped GET that already started, mid-body, with its
    connection open; hold=0 lets it finish with the right bytes."""
    data, url = blob8
    emu.netmodel(get_rate=4 * MIB)  # 8 MiB: 2 s
    res = {}
    t = threading.Thread(target=lambda: res.update(r=timed_get(url)))
    t.start()
    time.sleep(0.5)
    emu.netmodel(hold=1)
    t.join(timeout=2.5)
    assert t.is_alive(), "the body finished while held"
    emu.netmodel(hold=0)
    t.join(timeout=10)
    st, body, _, total = res["r"]
    assert st == 200 and body == data
    assert total >= 4.0, total  # 2 s of sending and the 2.5 s held


def test_first_byte_delay(emu, blob8):
    data, url = blob8
    emu.netmodel(first_byte_ms=300)
    st, body, first, _ = timed_get(url, {"Range": "bytes=0-0"})
    assert st == 206 and body == data[:1] and first >= 0.3
    st, _, first, _ = timed_get(url, method="HEAD")
    assert st == 200 and first >= 0.3
    st, _, first, _ = timed_get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert st == 403 and first >= 0.3  # an error reply crosses the same network


def test_api_delay(emu, client, repo):
    emu.netmodel(api_ms=300)
    for call in (lambda: client.call("DescribeRepositories", repositoryNames=[repo]),
                 lambda: client.sts("GetCallerIdentity")):
        t0 = time.monotonic()
        call()
        assert time.monotonic() - t0 >= 0.3
    # Download URLs and control calls are not API calls.
    t0 = time.monotonic()
    emu.log()
    assert time.monotonic() - t0 < 0.3


def test_model_off_is_fast(emu, blob8):
    data, url = blob8
    assert emu.netmodel() == NETMODEL_OFF
    st, body, first, total = timed_get(url)
    assert st == 200 and body == data
    assert total < 0.4, total  # at 16 MiB/s this would be 0.5 s


def test_model_from_environment(tmp_path):
    with Emulator(state_dir=str(tmp_path / "emu"),
                  netmodel={"get_rate": "64M", "first_byte_ms": 20, "api_ms": 30}) as e:
        assert e.netmodel() == {"get_rate": 64 * MIB, "first_byte_ms": 20, "api_ms": 30, "hold": 0}
