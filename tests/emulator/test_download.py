"""Download URLs: full and ranged GETs with exact bytes, expiry, forgery,
corruption, truncation."""
import hashlib
import http.client
import os
import urllib.parse

import pytest


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def get(url, headers=None, method="GET"):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        c.request(method, u.path + "?" + u.query, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


@pytest.fixture
def layer(emu, client, repo):
    data = os.urandom(3 * 1024 * 1024 + 17)
    d = client.push_blob(repo, data)
    url = client.call("GetDownloadUrlForLayer", repositoryName=repo,
                      layerDigest=d)["downloadUrl"]
    return data, d, url


def test_full_and_ranged_get(emu, repo, layer):
    data, d, url = layer
    assert url.startswith(f"{emu.endpoint}/_blob/111111111111/us-east-1/{repo}/{d}?")
    assert "X-Amz-Expires=" in url and "X-Amz-Signature=" in url
    st, h, body = get(url)
    assert st == 200 and body == data and int(h["Content-Length"]) == len(data)
    for a, b in [(0, 0), (100, 1_048_675), (len(data) - 10, len(data) - 1)]:
        st, h, body = get(url, {"Range": f"bytes={a}-{b}"})
        assert st == 206 and body == data[a:b + 1]
        assert h["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
    st, h, body = get(url, {"Range": f"bytes={len(data) - 5}-"})
    assert st == 206 and body == data[-5:]
    st, h, _ = get(url, {"Range": f"bytes={len(data) + 5}-{len(data) + 9}"})
    assert st == 416 and h["Content-Range"] == f"bytes */{len(data)}"
    st, h, body = get(url, {"Range": "bytes=-7"})  # suffix: the last 7 bytes
    assert st == 206 and body == data[-7:]
    assert h["Content-Range"] == f"bytes {len(data) - 7}-{len(data) - 1}/{len(data)}"
    st, h, body = get(url, {"Range": f"bytes=10-{len(data) + 100}"})  # clipped at the end
    assert st == 206 and body == data[10:]
    st, h, body = get(url, method="HEAD")
    assert st == 200 and int(h["Content-Length"]) == len(data)
    e = [x for x in emu.log() if x["op"] == "BlobGet"][-5]
    assert e["range"] == f"bytes={len(data) - 5}-" and e["bytes_out"] == 5


def test_forged_and_foreign_urls_refused(emu, repo, layer):
    data, d, url = layer
    st, _, body = get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert st == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    st, _, body = get(url.replace(repo, repo + "x"))
    assert st == 403  # the signature covers the path


def test_url_for_missing_layer(emu, client, repo):
    st, body = client.raw("GetDownloadUrlForLayer", {"repositoryName": repo,
                                                     "layerDigest": sha(b"absent")})
    assert st == 400 and body["__type"] == "LayersNotFoundException"


def test_expired_url_real_and_injected(emu, client, repo, layer):
    data, d, url = layer
    emu.fault(op="BlobGet", kind="expired_url", repo=repo)
    st, _, body = get(url)
    assert st == 403 and b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body
    assert get(url)[0] == 200
    emu.config(url_expires=-1)
    old = client.call("GetDownloadUrlForLayer", repositoryName=repo,
                      layerDigest=d)["downloadUrl"]
    st, _, body = get(old)
    assert st == 403 and b"Request has expired" in body


def test_truncated_download(emu, repo, layer):
    data, d, url = layer
    emu.fault(op="BlobGet", kind="truncate", keep_bytes=1000)
    with pytest.raises(http.client.IncompleteRead) as e:
        get(url)
    assert e.value.partial == data[:1000]
    assert get(url)[2] == data


def test_download_truncated_to_nothing_ends_at_once(emu, repo, layer):
    """keep_bytes=0: the headers, then the connection closes (socket.sendfile
    with a count of 0 would send the whole rest of the file instead)."""
    data, d, url = layer
    emu.fault(op="BlobGet", kind="truncate", keep_bytes=0)
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request("GET", u.path + "?" + u.query, headers={"Range": "bytes=1048576-2097151"})
        r = c.getresponse()
        with pytest.raises(http.client.IncompleteRead) as e:
            r.read()
        assert e.value.partial == b""
    finally:
        c.close()
    assert get(url)[2] == data


def test_corrupt_blob(emu, repo, layer):
    data, d, url = layer
    emu.corrupt_blob(d, offset=10, length=4)
    st, _, body = get(url)
    assert st == 200 and len(body) == len(data) and body != data
    assert body[:10] == data[:10] and body[14:] == data[14:]
    emu.corrupt_blob(d, offset=10, length=4)  # flipping twice restores it
    assert get(url)[2] == data


def test_encoded_colon_in_url_path(emu, repo, layer):
    data, d, url = layer
    st, _, body = get(url.replace("sha256:", "sha256%3A"))
    assert st == 200 and body == data


def test_sparse_blob_over_4_gib(emu, client, repo):
    """sparse_blob: a 4 GiB + 4099 blob stored as a hole with patches serves
    its ranges, and PutImage of an image naming it succeeds."""
    import base64
    import json
    size = (4 << 30) + 4099
    patch = os.urandom(4096)
    # any digest will do for serving ranges: the emulator trusts the caller
    d = "sha256:" + "ab" * 32
    emu.control("sparse_blob", {"repo": repo, "digest": d, "size": size,
                                "patches": [{"offset": (4 << 30) - 2048,
                                             "data_b64": base64.b64encode(patch).decode()}]})
    url = client.call("GetDownloadUrlForLayer", repositoryName=repo, layerDigest=d)["downloadUrl"]
    a = (4 << 30) - 4096
    st, h, body = get(url, {"Range": f"bytes={a}-{a + 8191}"})
    assert st == 206 and h["Content-Range"] == f"bytes {a}-{a + 8191}/{size}"
    assert body == bytes(2048) + patch + bytes(2048)
    st, h, body = get(url, {"Range": "bytes=-3"})
    assert st == 206 and body == bytes(3)
    cfg = b'{"architecture":"amd64","os":"linux"}'
    cd = client.push_blob(repo, cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": cd, "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": d, "size": size}]}).encode()
    client.put_image(repo, man, "application/vnd.oci.image.manifest.v1+json", "huge")
    imgs = client.call("DescribeImages", repositoryName=repo)["imageDetails"]
    assert any("huge" in i.get("imageTags", []) for i in imgs)
