"""Today's per-image ECR: pull time, pull-time exclusions, referrers,
archive, scan findings."""
import json
import time
import urllib.request

import pytest

from test_rules import OCI_M, image, sha

SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"
DEV_ARN = "arn:aws:iam::111111111111:user/dev"


def push(client, repo, n, tag=None):
    m = image(client, repo, layers=(b"layer %d" % n,))
    p = {"repositoryName": repo, "imageManifest": m.decode()}
    if tag:
        p["imageTag"] = tag
    return client.call("PutImage", **p)["image"]["imageId"]["imageDigest"]


def push_referrer(client, repo, subject, artifact_type, n, tag=None):
    cfg = b"{}"
    layer = b"payload %d" % n
    for b in (cfg, layer):
        client.push_blob(repo, b)
    m = {"schemaVersion": 2, "mediaType": OCI_M, "artifactType": artifact_type,
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(cfg),
                    "size": 2},
         "layers": [{"mediaType": "application/octet-stream", "digest": sha(layer),
                     "size": len(layer)}],
         "subject": {"mediaType": OCI_M, "digest": subject, "size": 100},
         "annotations": {"n": str(n)}}
    p = {"repositoryName": repo, "imageManifest": json.dumps(m)}
    if tag:
        p["imageTag"] = tag
    return client.call("PutImage", **p)["image"]["imageId"]["imageDigest"]


def detail(client, repo, digest):
    return client.call("DescribeImages", repositoryName=repo,
                       imageIds=[{"imageDigest": digest}])["imageDetails"][0]


# -- pull time -------------------------------------------------------------------
def test_batch_get_image_records_pull_time(emu, client, repo):
    d = push(client, repo, 1, "v1")
    other = push(client, repo, 2, "v2")
    assert "lastRecordedPullTime" not in detail(client, repo, d)
    assert detail(client, repo, d)["imageStatus"] == "ACTIVE"
    t0 = time.time()
    client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert detail(client, repo, d)["lastRecordedPullTime"] >= t0 - 1
    # DescribeImages and ListImages are not pulls.
    assert "lastRecordedPullTime" not in detail(client, repo, other)
    got = emu.aws("describe-images", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert "lastRecordedPullTime" in got["imageDetails"][0]


def test_excluded_principal_does_not_update_pull_time(emu, client, repo):
    d = push(client, repo, 3, "v1")
    try:
        out = client.call("RegisterPullTimeUpdateExclusion", principalArn=DEV_ARN)
        assert out["principalArn"] == DEV_ARN and "createdAt" in out
        st, body = client.raw("RegisterPullTimeUpdateExclusion", {"principalArn": DEV_ARN})
        assert body["__type"] == "ExclusionAlreadyExistsException"
        assert client.call("ListPullTimeUpdateExclusions")["pullTimeUpdateExclusions"] == [DEV_ARN]
        client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageDigest": d}])
        assert "lastRecordedPullTime" not in detail(client, repo, d)
    finally:
        client.call("DeregisterPullTimeUpdateExclusion", principalArn=DEV_ARN)
    st, body = client.raw("DeregisterPullTimeUpdateExclusion", {"principalArn": DEV_ARN})
    assert body["__type"] == "ExclusionNotFoundException"
    st, body = client.raw("RegisterPullTimeUpdateExclusion", {"principalArn": "nobody"})
    assert body["__type"] == "InvalidParameterException"
    client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageDigest": d}])
    assert "lastRecordedPullTime" in detail(client, repo, d)
    assert emu.count("BatchGetImage", repo=repo) == 2


# -- referrers -----------------------------------------------------------------------
def test_list_image_referrers(emu, client, repo):
    subj = push(client, repo, 4, "app")
    sigs = {push_referrer(client, repo, subj, SIG_TYPE, i) for i in range(3)}
    sbom = push_referrer(client, repo, subj, SBOM_TYPE, 9, "sbom")
    d = detail(client, repo, sbom)
    assert d["subjectManifestDigest"] == subj
    assert "subjectManifestDigest" not in detail(client, repo, subj)
    got, tok, pages = [], None, 0
    while True:
        p = {"repositoryName": repo, "subjectId": {"imageDigest": subj}, "maxResults": 2}
        if tok:
            p["nextToken"] = tok
        out = client.call("ListImageReferrers", **p)
        got += out["referrers"]
        pages += 1
        tok = out.get("nextToken")
        if not tok:
            break
    assert pages == 2 and {r["digest"] for r in got} == sigs | {sbom}
    r = next(x for x in got if x["digest"] == sbom)
    assert r["artifactType"] == SBOM_TYPE and r["mediaType"] == OCI_M
    assert r["annotations"] == {"n": "9"} and r["artifactStatus"] == "ACTIVE" and r["size"] > 0
    only = client.call("ListImageReferrers", repositoryName=repo,
                       subjectId={"imageDigest": subj}, filter={"artifactTypes": [SIG_TYPE]})
    assert {r["digest"] for r in only["referrers"]} == sigs
    st, body = client.raw("ListImageReferrers", {"repositoryName": repo, "maxResults": 51,
                                                 "subjectId": {"imageDigest": subj}})
    assert body["__type"] == "InvalidParameterException"


# -- archive ------------------------------------------------------------------------
def storage(client, repo, digest, target):
    return client.call("UpdateImageStorageClass", repositoryName=repo,
                       imageId={"imageDigest": digest}, targetStorageClass=target)


def test_archive_blocks_pulls_until_restored(emu, client, repo):
    d = push(client, repo, 5, "v1")
    layer = sha(b"layer 5")
    out = storage(client, repo, d, "ARCHIVE")
    assert out["imageStatus"] == "ARCHIVED"
    det = detail(client, repo, d)
    assert det["imageStatus"] == "ARCHIVED" and det["lastArchivedAt"] > 0
    got = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageInaccessible"
    assert "archived" in got["failures"][0]["failureReason"]
    st, body = client.raw("GetDownloadUrlForLayer", {"repositoryName": repo, "layerDigest": layer})
    assert st == 400 and body["__type"] == "ImageArchivedException"
    # Listings show it only when asked (ECR's default is ACTIVE only).
    for op, key in (("ListImages", "imageIds"), ("DescribeImages", "imageDetails")):
        assert client.call(op, repositoryName=repo)[key] == []
        got = client.call(op, repositoryName=repo, filter={"imageStatus": "ANY"})[key]
        assert [x["imageDigest"] for x in got] == [d]
        got = client.call(op, repositoryName=repo, filter={"imageStatus": "ARCHIVED"})[key]
        assert [x["imageDigest"] for x in got] == [d]
    assert storage(client, repo, d, "STANDARD")["imageStatus"] == "ACTIVE"  # instant by default
    det = detail(client, repo, d)
    assert det["imageStatus"] == "ACTIVE" and det["lastActivatedAt"] >= det["lastArchivedAt"]
    assert client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]
    url = client.call("GetDownloadUrlForLayer", repositoryName=repo, layerDigest=layer)
    with urllib.request.urlopen(url["downloadUrl"]) as r:
        assert r.read() == b"layer 5"


def test_slow_restore_is_activating(emu, client, repo):
    d = push(client, repo, 6, "v1")
    storage(client, repo, d, "ARCHIVE")
    emu.control("archive_config", {"restore_seconds": 1.5})
    try:
        assert storage(client, repo, d, "STANDARD")["imageStatus"] == "ACTIVATING"
        assert detail(client, repo, d)["imageStatus"] == "ACTIVATING"
        got = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageDigest": d}])
        assert got["failures"][0]["failureCode"] == "ImageInaccessible"
        time.sleep(1.6)
        assert detail(client, repo, d)["imageStatus"] == "ACTIVE"
    finally:
        emu.control("archive_config", {"restore_seconds": 0})


def test_repush_restores_archived_image(client, repo):
    d = push(client, repo, 12, "v1")
    storage(client, repo, d, "ARCHIVE")
    assert push(client, repo, 12, "v1") == d
    assert detail(client, repo, d)["imageStatus"] == "ACTIVE"
    assert client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]


def test_shared_layer_of_active_image_stays_downloadable(client, repo):
    a = push(client, repo, 7, "a")
    m = image(client, repo, layers=(b"layer 7",), config=b'{"architecture":"arm64"}')
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="b")
    storage(client, repo, a, "ARCHIVE")
    assert client.call("GetDownloadUrlForLayer", repositoryName=repo,
                       layerDigest=sha(b"layer 7"))["downloadUrl"]


# -- scan findings ------------------------------------------------------------------
BASIC = [{"name": f"CVE-2024-{i:04d}", "severity": sev, "uri": "https://example/cve",
          "attributes": [{"key": "package_name", "value": "openssl"}]}
         for i, sev in enumerate(["CRITICAL", "HIGH", "HIGH", "LOW", "MEDIUM"])]


def test_scan_findings_basic_paginated(emu, client, repo):
    d = push(client, repo, 8, "v1")
    r = emu.aws_run("describe-image-scan-findings", "--repository-name", repo,
                    "--image-id", "imageTag=v1")
    assert r.returncode != 0 and "ScanNotFoundException" in r.stderr
    emu.control("seed_scan", {"repo": repo, "tag": "v1", "findings": BASIC})
    # The CLI pages through everything itself (3 pages of 2).
    out = emu.aws("describe-image-scan-findings", "--repository-name", repo,
                  "--image-id", "imageTag=v1", "--page-size", "2")
    assert [f["name"] for f in out["imageScanFindings"]["findings"]] == [f["name"] for f in BASIC]
    assert out["imageScanStatus"]["status"] == "COMPLETE"
    assert emu.count("DescribeImageScanFindings", repo=repo) == 4
    s = detail(client, repo, d)["imageScanFindingsSummary"]
    assert s["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 2, "LOW": 1, "MEDIUM": 1}


def test_scan_findings_enhanced(emu, client, repo):
    push(client, repo, 9, "v1")
    enh = [{"findingArn": "arn:aws:inspector2:us-east-1:111111111111:finding/1",
            "severity": "CRITICAL", "type": "PACKAGE_VULNERABILITY", "status": "ACTIVE",
            "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2024-3094"}}]
    emu.control("seed_scan", {"repo": repo, "tag": "v1", "findings": enh, "enhanced": True})
    out = client.call("DescribeImageScanFindings", repositoryName=repo, imageId={"imageTag": "v1"})
    f = out["imageScanFindings"]
    assert f["enhancedFindings"] == enh and "findings" not in f
    assert f["findingSeverityCounts"] == {"CRITICAL": 1}


@pytest.mark.parametrize("op", ["ListImageReferrers", "UpdateImageStorageClass",
                                "DescribeImageScanFindings"])
def test_unknown_repository(client, op):
    st, body = client.raw(op, {"repositoryName": "no/such", "subjectId": {"imageDigest": sha(b"")},
                               "imageId": {"imageTag": "x"}, "targetStorageClass": "ARCHIVE"})
    assert body["__type"] == "RepositoryNotFoundException"


def test_excluded_role_covers_its_sessions(emu, client, repo):
    import re
    import ecrclient
    role = "arn:aws:iam::111111111111:role/browser"
    d = push(client, repo, 11, "v1")
    client.call("RegisterPullTimeUpdateExclusion", principalArn=role)
    try:
        st, xml = client.sts("AssumeRole", RoleArn=role, RoleSessionName="du")
        get = lambda tag: re.search(f"<{tag}>([^<]+)</{tag}>", xml).group(1)  # noqa: E731
        t = ecrclient.Client(emu.endpoint, get("AccessKeyId"), get("SecretAccessKey"),
                             token=get("SessionToken"))
        assert t.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageDigest": d}])["images"]
        t.close()
        assert "lastRecordedPullTime" not in detail(client, repo, d)
    finally:
        client.call("DeregisterPullTimeUpdateExclusion", principalArn=role)
