"""ECR's rules as the emulator enforces them (uploads, PutImage, names,
immutability, deletes, media types, pagination)."""
import base64
import hashlib
import json
import os

import pytest

import ecrclient

OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
DOCKER_M = "application/vnd.docker.distribution.manifest.v2+json"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def part(client, repo, uid, first, data):
    return client.raw("UploadLayerPart", {
        "repositoryName": repo, "uploadId": uid, "partFirstByte": first,
        "partLastByte": first + len(data) - 1,
        "layerPartBlob": base64.b64encode(data).decode()})


def err(client, op, **params):
    st, body = client.raw(op, params)
    assert st == 400, (st, body)
    return body


def small_parts(emu):
    emu.config(part_size=4096, min_part_size=1024)


def image(client, repo, layers=(b"layer-one",), config=b'{"architecture":"amd64"}', mt=OCI_M):
    for b in list(layers) + [config]:
        client.push_blob(repo, b)
    m = {"schemaVersion": 2, "mediaType": mt,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(config), "size": len(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": sha(b), "size": len(b)} for b in layers]}
    return json.dumps(m).encode()


# -- layer uploads -------------------------------------------------------------
def test_part_order_violation_reports_last_valid_byte(emu, client, repo):
    data = os.urandom(6 * 1024 * 1024)
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    p1 = data[:5 * 1024 * 1024]
    assert part(client, repo, uid, 0, p1)[1]["lastByteReceived"] == len(p1) - 1
    # A gap, then a repeat of the first part: both refused with the resume point.
    for first in (len(p1) + 10, 0):
        st, body = part(client, repo, uid, first, data[first:first + 100])
        assert st == 400
        assert body["__type"] == "InvalidLayerPartException"
        assert body["lastValidByteReceived"] == len(p1) - 1
        assert body["uploadId"] == uid and body["repositoryName"] == repo
    assert part(client, repo, uid, len(p1), data[len(p1):])[0] == 200
    done = client.call("CompleteLayerUpload", repositoryName=repo, uploadId=uid,
                       layerDigests=[sha(data)])
    assert done["layerDigest"] == sha(data)


def test_first_part_must_start_at_zero(emu, client, repo):
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    st, body = part(client, repo, uid, 5, b"abc")
    assert body["__type"] == "InvalidLayerPartException"
    assert body["lastValidByteReceived"] == -1


def test_part_range_must_match_bytes(emu, client, repo):
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    st, body = client.raw("UploadLayerPart", {
        "repositoryName": repo, "uploadId": uid, "partFirstByte": 0, "partLastByte": 99,
        "layerPartBlob": base64.b64encode(b"x" * 10).decode()})
    assert st == 400 and body["__type"] == "InvalidLayerPartException"


def test_part_larger_than_part_size_rejected(emu, client, repo):
    small_parts(emu)
    uid = client.call("InitiateLayerUpload", repositoryName=repo)
    assert uid["partSize"] == 4096
    st, body = part(client, repo, uid["uploadId"], 0, b"x" * 4097)
    assert st == 400 and body["__type"] == "InvalidLayerPartException"


def test_small_middle_part_rejected_at_complete(emu, client, repo):
    small_parts(emu)
    data = os.urandom(3000)
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    assert part(client, repo, uid, 0, data[:1000])[0] == 200   # < 1024, not last
    assert part(client, repo, uid, 1000, data[1000:])[0] == 200
    body = err(client, "CompleteLayerUpload", repositoryName=repo, uploadId=uid,
               layerDigests=[sha(data)])
    assert body["__type"] == "LayerPartTooSmallException"


def test_part_count_limit(emu, client, repo):
    emu.config(part_size=4096, min_part_size=1, max_parts=3)
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    for i in range(3):
        assert part(client, repo, uid, i, b"x")[0] == 200
    st, body = part(client, repo, uid, 3, b"x")
    assert body["__type"] == "LimitExceededException"


def test_complete_checks_digest_and_emptiness(emu, client, repo):
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    body = err(client, "CompleteLayerUpload", repositoryName=repo, uploadId=uid,
               layerDigests=[sha(b"nothing")])
    assert body["__type"] == "EmptyUploadException"
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    part(client, repo, uid, 0, b"hello")
    body = err(client, "CompleteLayerUpload", repositoryName=repo, uploadId=uid,
               layerDigests=[sha(b"other")])
    assert body["__type"] == "InvalidLayerException"
    assert client.call("BatchCheckLayerAvailability", repositoryName=repo,
                       layerDigests=[sha(b"hello")])["layers"] == []
    # The upload is gone after its outcome.
    body = err(client, "UploadLayerPart", repositoryName=repo, uploadId=uid, partFirstByte=5,
               partLastByte=5, layerPartBlob=base64.b64encode(b"x").decode())
    assert body["__type"] == "UploadNotFoundException"


def test_layer_already_exists(emu, client, repo):
    client.push_blob(repo, b"same bytes")
    uid = client.call("InitiateLayerUpload", repositoryName=repo)["uploadId"]
    part(client, repo, uid, 0, b"same bytes")
    body = err(client, "CompleteLayerUpload", repositoryName=repo, uploadId=uid,
               layerDigests=[sha(b"same bytes")])
    assert body["__type"] == "LayerAlreadyExistsException"
    chk = client.call("BatchCheckLayerAvailability", repositoryName=repo,
                      layerDigests=[sha(b"same bytes"), sha(b"absent")])
    assert [l["layerDigest"] for l in chk["layers"]] == [sha(b"same bytes")]
    assert chk["layers"][0]["layerSize"] == len(b"same bytes")
    assert chk["failures"][0]["failureCode"] == "MissingLayerDigest"


def test_blobs_are_per_repository(emu, client, repo):
    client.push_blob(repo, b"only here")
    other = repo + "-other"
    ecrclient.create_repository(emu, other)
    assert client.call("BatchCheckLayerAvailability", repositoryName=other,
                       layerDigests=[sha(b"only here")])["layers"] == []


def test_upload_into_missing_repository(emu, client):
    body = err(client, "InitiateLayerUpload", repositoryName="no/such-repo")
    assert body["__type"] == "RepositoryNotFoundException"
    assert body["message"] == ("The repository with name 'no/such-repo' does not exist in "
                               "the registry with id '111111111111'")


# -- PutImage ------------------------------------------------------------------
def test_put_image_requires_layers(emu, client, repo):
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_M,
                    "config": {"mediaType": "x", "digest": sha(b"c"), "size": 1},
                    "layers": []})
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m, imageTag="v1")
    assert body["__type"] == "LayersNotFoundException"
    assert sha(b"c") in body["message"]


def test_put_image_index_requires_children(emu, client, repo):
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        {"mediaType": OCI_M, "digest": sha(b"child"), "size": 5}]})
    body = err(client, "PutImage", repositoryName=repo, imageManifest=idx, imageTag="i")
    assert body["__type"] == "ReferencedImagesNotFoundException"


def test_put_image_digest_and_exact_bytes(emu, client, repo):
    m = image(client, repo)
    # Pretty-printed differently: a different image, kept byte for byte.
    m2 = json.dumps(json.loads(m), indent=3).encode()
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m.decode(),
               imageDigest=sha(b"wrong"), imageTag="v1")
    assert body["__type"] == "ImageDigestDoesNotMatchException"
    r = client.call("PutImage", repositoryName=repo, imageManifest=m2.decode(),
                    imageDigest=sha(m2), imageTag="pretty")
    assert r["image"]["imageId"]["imageDigest"] == sha(m2)
    got = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "pretty"}])
    assert got["images"][0]["imageManifest"].encode() == m2


def test_image_already_exists_and_mutable_tag_moves(emu, client, repo):
    m1 = image(client, repo, layers=[b"a1"])
    m2 = image(client, repo, layers=[b"a2"])
    client.call("PutImage", repositoryName=repo, imageManifest=m1.decode(), imageTag="v1")
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m1.decode(), imageTag="v1")
    assert body["__type"] == "ImageAlreadyExistsException"
    client.call("PutImage", repositoryName=repo, imageManifest=m2.decode(), imageTag="v1")
    ids = client.call("ListImages", repositoryName=repo)["imageIds"]
    assert {"imageDigest": sha(m2), "imageTag": "v1"} in ids
    assert {"imageDigest": sha(m1)} in ids  # the old image stays, untagged


def test_immutable_repository(emu, client):
    repo = "t/immutable"
    client.call("CreateRepository", repositoryName=repo, imageTagMutability="IMMUTABLE")
    m1 = image(client, repo, layers=[b"i1"])
    m2 = image(client, repo, layers=[b"i2"])
    client.call("PutImage", repositoryName=repo, imageManifest=m1.decode(), imageTag="v1")
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m2.decode(), imageTag="v1")
    assert body["__type"] == "ImageTagAlreadyExistsException"
    assert body["message"] == ("The image tag 'v1' already exists in the 't/immutable' "
                               "repository and cannot be overwritten because the repository "
                               "is immutable.")
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m1.decode(), imageTag="v1")
    assert body["__type"] == "ImageAlreadyExistsException"
    client.call("PutImage", repositoryName=repo, imageManifest=m2.decode(), imageTag="v2")
    r = client.call("DescribeRepositories", repositoryNames=[repo])["repositories"][0]
    assert r["imageTagMutability"] == "IMMUTABLE"


@pytest.mark.parametrize("name", ["A", "a", "Upper/case", "bad//slash", "trailing-", "-x",
                                  "a" * 257, "sp ace"])
def test_invalid_repository_names(emu, client, name):
    body = err(client, "CreateRepository", repositoryName=name)
    assert body["__type"] == "InvalidParameterException"
    assert body["message"].startswith(
        "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
        "'must satisfy regular expression '")


@pytest.mark.parametrize("name", ["ab", "team/app", "a__b/c.d-e", "x--y", "n" * 256])
def test_valid_repository_names(emu, client, name):
    st, body = client.raw("CreateRepository", {"repositoryName": name})
    assert st == 200 or body["__type"] == "RepositoryAlreadyExistsException"


@pytest.mark.parametrize("tag", [".dot", "-dash", "a" * 129, "sp ace", "x:y"])
def test_invalid_tags(emu, client, repo, tag):
    m = image(client, repo)
    body = err(client, "PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag=tag)
    assert body["__type"] == "InvalidParameterException"
    assert "imageTag" in body["message"]


def test_registry_id_validated(emu, client):
    body = err(client, "DescribeRepositories", registryId="123")
    assert body["__type"] == "InvalidParameterException"


# -- BatchGetImage -----------------------------------------------------------------
def test_accepted_media_types(emu, client, repo):
    m = image(client, repo, mt=DOCKER_M)
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="d")
    ok = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "d"}],
                     acceptedMediaTypes=[DOCKER_M, OCI_M])
    assert ok["images"][0]["imageManifestMediaType"] == DOCKER_M and not ok["failures"]
    no = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "d"}],
                     acceptedMediaTypes=[OCI_M])
    assert no["images"] == [] and no["failures"][0]["imageId"] == {"imageTag": "d"}
    miss = client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "zz"}])
    assert miss["failures"][0]["failureCode"] == "ImageNotFound"


# -- deletes -------------------------------------------------------------------
def test_delete_last_tag_deletes_image(emu, client, repo):
    m = image(client, repo)
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="a")
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="b")
    r = client.call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert r["imageIds"] == [{"imageDigest": sha(m), "imageTag": "a"}]
    assert client.call("ListImages", repositoryName=repo)["imageIds"] == [
        {"imageDigest": sha(m), "imageTag": "b"}]
    client.call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert client.call("ListImages", repositoryName=repo)["imageIds"] == []
    r = client.call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert r["failures"][0]["failureCode"] == "ImageNotFound"


def test_delete_by_digest_and_manifest_list_reference(emu, client, repo):
    m = image(client, repo)
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode())
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        {"mediaType": OCI_M, "digest": sha(m), "size": len(m)}]})
    client.call("PutImage", repositoryName=repo, imageManifest=idx, imageTag="multi")
    r = client.call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageDigest": sha(m)}])
    assert r["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    r = client.call("BatchDeleteImage", repositoryName=repo,
                    imageIds=[{"imageDigest": sha(idx.encode())}])
    assert r["imageIds"] == [{"imageDigest": sha(idx.encode()), "imageTag": "multi"}]
    r = client.call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageDigest": sha(m)}])
    assert r["imageIds"] == [{"imageDigest": sha(m)}] and not r["failures"]


def test_delete_repository(emu, client, repo):
    m = image(client, repo)
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="x")
    body = err(client, "DeleteRepository", repositoryName=repo)
    assert body["__type"] == "RepositoryNotEmptyException"
    client.call("DeleteRepository", repositoryName=repo, force=True)
    body = err(client, "DescribeImages", repositoryName=repo)
    assert body["__type"] == "RepositoryNotFoundException"


def test_describe_images_by_id(emu, client, repo):
    m = image(client, repo)
    client.call("PutImage", repositoryName=repo, imageManifest=m.decode(), imageTag="v9")
    d = client.call("DescribeImages", repositoryName=repo,
                    imageIds=[{"imageTag": "v9"}])["imageDetails"][0]
    assert d["imageDigest"] == sha(m) and d["imageTags"] == ["v9"]
    assert d["imageSizeInBytes"] == len(b"layer-one")
    assert isinstance(d["imagePushedAt"], float)
    assert d["imageManifestMediaType"] == OCI_M
    body = err(client, "DescribeImages", repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    assert body["__type"] == "ImageNotFoundException"
    assert body["message"] == ("The image with imageId {imageDigest:'null', imageTag:'nope'} "
                               f"does not exist within the repository with name '{repo}' in "
                               "the registry with id '111111111111'")


# -- pagination ----------------------------------------------------------------
def test_pagination_tiny_pages(emu, client, repo):
    tags = [f"t{i:02d}" for i in range(7)]
    m = image(client, repo)
    for t in tags:
        client.put_image(repo, m, OCI_M, t)
    emu.config(tiny_pages=2)
    emu.reset_log()
    seen, tok, calls = [], None, 0
    while True:
        p = {"repositoryName": repo}
        if tok:
            p["nextToken"] = tok
        r = client.call("ListImages", **p)
        calls += 1
        assert len(r["imageIds"]) <= 2
        seen += [i["imageTag"] for i in r["imageIds"]]
        tok = r.get("nextToken")
        if not tok:
            break
    assert sorted(seen) == tags and calls == 4
    assert emu.count("ListImages", repo=repo) == 4
    # The AWS CLI follows nextToken itself.
    out = emu.aws("describe-images", "--repository-name", repo)
    assert sorted(out["imageDetails"][0]["imageTags"]) == tags
    emu.config(tiny_pages=0)
    r = client.call("ListImages", repositoryName=repo, maxResults=3)
    assert len(r["imageIds"]) == 3 and r["nextToken"]
    assert len(client.call("ListImages", repositoryName=repo)["imageIds"]) == 7


def test_max_results_bounds(emu, client, repo):
    for mr in (0, 1001):
        body = err(client, "ListImages", repositoryName=repo, maxResults=mr)
        assert body["__type"] == "InvalidParameterException"
    body = err(client, "ListImages", repositoryName=repo, nextToken="garbage!")
    assert body["__type"] == "InvalidParameterException"


def test_repository_pages_default_100(emu):
    c = ecrclient.client_for(emu, region="ap-south-1")
    for i in range(105):
        c.call("CreateRepository", repositoryName=f"many/r{i:03d}")
    r = c.call("DescribeRepositories")
    assert len(r["repositories"]) == 100 and r["nextToken"]
    r2 = c.call("DescribeRepositories", nextToken=r["nextToken"])
    assert len(r2["repositories"]) == 5 and "nextToken" not in r2
    c.close()
