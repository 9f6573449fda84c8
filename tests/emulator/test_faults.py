"""Every fault kind triggers on the request it targets, and only there."""
import base64
import hashlib
import http.client
import json
import os
import urllib.parse

import pytest

import ecrclient


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def last(emu, op):
    return [e for e in emu.log() if e["op"] == op][-1]


@pytest.mark.parametrize("kind,status,code", [
    ("http500", 500, "ServerException"),
    ("http503", 503, "ServiceUnavailableException"),
    ("throttle", 400, "ThrottlingException"),
    ("http", 502, "ServerException"),
])
def test_error_faults(emu, client, repo, kind, status, code):
    emu.fault(op="DescribeImages", kind=kind, status=status)
    st, body = client.raw("DescribeImages", {"repositoryName": repo})
    assert st == status and body["__type"] == code
    assert client.raw("DescribeImages", {"repositoryName": repo})[0] == 200  # count=1
    e = [x for x in emu.log() if x["op"] == "DescribeImages"][-2]
    assert e["status"] == status and e["fault"] == kind


def test_plain_429(emu, client):
    emu.fault(op="DescribeRepositories", kind="http429")
    st, body = client.raw("DescribeRepositories", {})
    assert st == 429


def test_nth_and_count(emu, client, repo):
    emu.fault(op="ListImages", kind="http503", nth=2, count=2)
    got = [client.raw("ListImages", {"repositoryName": repo})[0] for _ in range(5)]
    assert got == [200, 503, 503, 200, 200]
    f = emu.faults()[0]
    assert f["seen"] == 5 and f["fired"] == 2


def test_filters_by_repo_and_account(emu, client, repo):
    other = repo + "-b"
    ecrclient.create_repository(emu, other)
    emu.fault(op="ListImages", kind="http500", repo=other, count=0)
    assert client.raw("ListImages", {"repositoryName": repo})[0] == 200
    assert client.raw("ListImages", {"repositoryName": other})[0] == 500
    emu.clear_faults()
    emu.fault(op="ListImages", kind="http500", account="222222222222")
    assert client.raw("ListImages", {"repositoryName": repo})[0] == 200


def test_probability_storm_is_seeded(emu, client, repo):
    def run():
        emu.clear_faults()
        emu.fault(op="ListImages", kind="http503", probability=0.5, seed=7, count=0)
        return [client.raw("ListImages", {"repositoryName": repo})[0] for _ in range(30)]
    a, b = run(), run()
    assert a == b  # same seed, same storm
    assert 5 < a.count(503) < 25 and a.count(200) + a.count(503) == 30


def test_delay(emu, client, repo):
    emu.fault(op="ListImages", kind="delay", delay_ms=300)
    assert client.raw("ListImages", {"repositoryName": repo})[0] == 200
    e = last(emu, "ListImages")
    assert e["fault"] == "delay" and e["ms"] >= 300


def test_expired_token_and_access_denied(emu, client, repo):
    emu.fault(op="ListImages", kind="expired_token")
    st, body = client.raw("ListImages", {"repositoryName": repo})
    assert st == 403 and body["__type"] == "ExpiredTokenException"
    emu.fault(op="PutImage", kind="access_denied")
    st, body = client.raw("PutImage", {"repositoryName": repo, "imageManifest": "{}"})
    assert st == 400 and body["__type"] == "AccessDeniedException"
    assert "is not authorized to perform: ecr:PutImage on resource: " \
           f"arn:aws:ecr:us-east-1:111111111111:repository/{repo}" in body["message"]


def test_truncated_json_reply(emu, client, repo):
    emu.fault(op="DescribeRepositories", kind="truncate")
    with pytest.raises(http.client.IncompleteRead):
        client.raw("DescribeRepositories", {})
    client.close()
    assert client.raw("DescribeRepositories", {})[0] == 200


def test_part_stored_but_reply_dropped(emu, client, repo):
    data = os.urandom(5 * 1024 * 1024 + 100)
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    p1 = data[:5 * 1024 * 1024]
    emu.fault(op="UploadLayerPart", kind="drop_reply", repo=repo)
    args = {"repositoryName": repo, "uploadId": uid, "partFirstByte": 0,
            "partLastByte": len(p1) - 1, "layerPartBlob": base64.b64encode(p1).decode()}
    import sigv4
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        body = json.dumps(args).encode()
        h = sigv4.sign("POST", emu.endpoint + "/", {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart"},
            body, client.akid, client.secret, "us-east-1", "ecr")
        u = urllib.parse.urlsplit(emu.endpoint)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            c.request("POST", "/", body=body, headers=h)
            c.getresponse()
        finally:
            c.close()
    # The part was applied: a retry is out of order and says where to resume.
    st, body = client.raw("UploadLayerPart", args)
    assert st == 400 and body["__type"] == "InvalidLayerPartException"
    assert body["lastValidByteReceived"] == len(p1) - 1
    rest = data[len(p1):]
    client.call("UploadLayerPart", repositoryName=repo, uploadId=uid, partFirstByte=len(p1),
                partLastByte=len(data) - 1, layerPartBlob=base64.b64encode(rest).decode())
    client.call("CompleteLayerUpload", repositoryName=repo, uploadId=uid,
                layerDigests=[sha(data)])


def test_blackhole(emu, client, repo):
    emu.fault(op="ListImages", kind="blackhole", timeout_ms=500)
    u = urllib.parse.urlsplit(emu.endpoint)
    import sigv4
    body = json.dumps({"repositoryName": repo}).encode()
    h = sigv4.sign("POST", emu.endpoint + "/", {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.ListImages"},
        body, client.akid, client.secret, "us-east-1", "ecr")
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.request("POST", "/", body=body, headers=h)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            c.getresponse()
    finally:
        c.close()
    e = last(emu, "ListImages")
    assert e["fault"] == "blackhole" and e["ms"] >= 500
    assert client.raw("ListImages", {"repositoryName": repo})[0] == 200


def test_sts_faults(emu, client):
    emu.fault(op="GetCallerIdentity", kind="throttle")
    st, xml = client.sts("GetCallerIdentity")
    assert st == 400 and "<Code>Throttling</Code>" in xml
    emu.fault(op="GetCallerIdentity", kind="expired_token")
    st, xml = client.sts("GetCallerIdentity")
    assert "<Code>ExpiredToken</Code>" in xml
    assert client.sts("GetCallerIdentity")[0] == 200
