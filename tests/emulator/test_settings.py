"""Repository settings: lifecycle policy and preview, repository policy,
scanning configuration, encryption (checked with /usr/bin/aws)."""
import json
import time

import pytest

from test_rules import image

KEEP2 = {"rules": [{"rulePriority": 1, "description": "keep two release images",
                    "selection": {"tagStatus": "tagged", "tagPrefixList": ["rel"],
                                  "countType": "imageCountMoreThan", "countNumber": 2},
                    "action": {"type": "expire"}},
                   {"rulePriority": 2, "description": "untagged after a day",
                    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                  "countUnit": "days", "countNumber": 1},
                    "action": {"type": "expire"}}]}
POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}


def test_lifecycle_policy_round_trip(emu, repo):
    text = json.dumps(KEEP2)
    emu.aws("put-lifecycle-policy", "--repository-name", repo, "--lifecycle-policy-text", text)
    got = emu.aws("get-lifecycle-policy", "--repository-name", repo)
    assert json.loads(got["lifecyclePolicyText"]) == KEEP2 and "lastEvaluatedAt" in got
    emu.aws("delete-lifecycle-policy", "--repository-name", repo)
    r = emu.aws_run("get-lifecycle-policy", "--repository-name", repo)
    assert r.returncode != 0 and "LifecyclePolicyNotFoundException" in r.stderr


@pytest.mark.parametrize("mutate,why", [
    (lambda p: "{not json" + " " * 100, "Could not parse"),
    (lambda p: json.dumps({"rules": [], "pad": "x" * 100}), "rules"),
    (lambda p: json.dumps(dict(p, rules=[dict(p["rules"][0], rulePriority=2), p["rules"][1]])),
     "more than one rule"),
    (lambda p: json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]}), "tagPrefixList or tagPatternList"),
    (lambda p: json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "sinceImagePulled", "countNumber": 3},
        "action": {"type": "expire"}, "description": "x" * 60}]}), "countUnit"),
])
def test_invalid_lifecycle_policy_refused(emu, client, repo, mutate, why):
    st, body = client.raw("PutLifecyclePolicy", {"repositoryName": repo,
                                                 "lifecyclePolicyText": mutate(KEEP2)})
    assert st == 400 and body["__type"] == "InvalidParameterException", body
    assert why in body["message"]
    assert "Lifecycle policy validation failure" in body["message"] or "length" in body["message"]


def push(client, repo, n, tag=None):
    m = image(client, repo, layers=(b"layer %d" % n,))
    p = {"repositoryName": repo, "imageManifest": m.decode()}
    if tag:
        p["imageTag"] = tag
    return client.call("PutImage", **p)["image"]["imageId"]["imageDigest"]


def test_lifecycle_preview_evaluates_rules(emu, client, repo):
    rel = [push(client, repo, i, f"rel-{i}") for i in range(4)]
    keep = push(client, repo, 10, "main")
    emu.aws("start-lifecycle-policy-preview", "--repository-name", repo,
            "--lifecycle-policy-text", json.dumps(KEEP2))
    out = emu.aws("get-lifecycle-policy-preview", "--repository-name", repo)
    assert out["status"] == "COMPLETE"
    doomed = {r["imageDigest"]: r for r in out["previewResults"]}
    assert set(doomed) == set(rel[:2])  # the two oldest release images
    assert keep not in doomed and all(r["appliedRulePriority"] == 1 for r in doomed.values())
    assert out["summary"]["expiringImageTotalCount"] == 2


def test_lifecycle_preview_since_pulled(emu, client, repo):
    old = push(client, repo, 1, "old")
    fresh = push(client, repo, 2, "fresh")
    rule = {"rules": [{"rulePriority": 1, "description": "not pulled for 30 days",
                       "selection": {"tagStatus": "any", "countType": "sinceImagePulled",
                                     "countUnit": "days", "countNumber": 30},
                       "action": {"type": "expire"}}]}
    # Both pushed 90 days ago; only "fresh" pulled since (a BatchGetImage).
    for tag in ("old", "fresh"):
        emu.control("image_times", {"repo": repo, "tag": tag,
                                    "pushedAt": time.time() - 90 * 86400})
    client.call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "fresh"}])
    client.call("StartLifecyclePolicyPreview", repositoryName=repo,
                lifecyclePolicyText=json.dumps(rule))
    out = client.call("GetLifecyclePolicyPreview", repositoryName=repo)
    assert [r["imageDigest"] for r in out["previewResults"]] == [old]
    # Pulled long ago counts as not pulled.
    emu.control("image_times", {"repo": repo, "tag": "fresh",
                                "lastRecordedPullTime": time.time() - 40 * 86400})
    client.call("StartLifecyclePolicyPreview", repositoryName=repo,
                lifecyclePolicyText=json.dumps(rule))
    out = client.call("GetLifecyclePolicyPreview", repositoryName=repo)
    assert {r["imageDigest"] for r in out["previewResults"]} == {old, fresh}


def test_preview_without_start_or_policy(client, repo):
    st, body = client.raw("GetLifecyclePolicyPreview", {"repositoryName": repo})
    assert body["__type"] == "LifecyclePolicyPreviewNotFoundException"
    st, body = client.raw("StartLifecyclePolicyPreview", {"repositoryName": repo})
    assert body["__type"] == "LifecyclePolicyNotFoundException"


def test_repository_policy_round_trip(emu, client, repo):
    emu.aws("set-repository-policy", "--repository-name", repo,
            "--policy-text", json.dumps(POLICY))
    got = emu.aws("get-repository-policy", "--repository-name", repo)
    assert json.loads(got["policyText"]) == POLICY
    emu.aws("delete-repository-policy", "--repository-name", repo)
    r = emu.aws_run("get-repository-policy", "--repository-name", repo)
    assert r.returncode != 0 and "RepositoryPolicyNotFoundException" in r.stderr
    st, body = client.raw("SetRepositoryPolicy", {"repositoryName": repo, "policyText": "{}"})
    assert body["__type"] == "InvalidParameterException"
    assert "Invalid repository policy provided" in body["message"]


def test_scanning_and_encryption(emu, client):
    emu.aws("create-repository", "--repository-name", "enc/kms",
            "--encryption-configuration", "encryptionType=KMS")
    r = emu.aws("describe-repositories", "--repository-names", "enc/kms")["repositories"][0]
    assert r["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert r["encryptionConfiguration"]["kmsKey"].startswith("arn:aws:kms:us-east-1:")
    out = emu.aws("put-image-scanning-configuration", "--repository-name", "enc/kms",
                  "--image-scanning-configuration", "scanOnPush=true")
    assert out["imageScanningConfiguration"] == {"scanOnPush": True}
    r = emu.aws("describe-repositories", "--repository-names", "enc/kms")["repositories"][0]
    assert r["imageScanningConfiguration"]["scanOnPush"] is True
    st, body = client.raw("CreateRepository", {"repositoryName": "enc/bad",
                                               "encryptionConfiguration": {"encryptionType": "X"}})
    assert body["__type"] == "InvalidParameterException"


def test_readonly_cannot_change_settings(emu, repo):
    from emu import READONLY_KEY
    r = emu.aws_run("put-lifecycle-policy", "--repository-name", repo,
                    "--lifecycle-policy-text", json.dumps(KEEP2), access_key=READONLY_KEY)
    assert r.returncode != 0 and "AccessDenied" in r.stderr
    r = emu.aws_run("get-lifecycle-policy", "--repository-name", repo, access_key=READONLY_KEY)
    assert "LifecyclePolicyNotFoundException" in r.stderr


def test_settings_survive_restart(tmp_path):
    from emu import Emulator
    import ecrclient
    sd = str(tmp_path / "s")
    filters = [{"filterType": "WILDCARD", "filter": "dev-*"}]
    emu = Emulator(state_dir=sd).start()
    try:
        c = ecrclient.client_for(emu)
        c.call("CreateRepository", repositoryName="keep/settings",
               imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
               imageTagMutabilityExclusionFilters=filters)
        c.call("PutLifecyclePolicy", repositoryName="keep/settings",
               lifecyclePolicyText=json.dumps(KEEP2))
        c.call("RegisterPullTimeUpdateExclusion",
               principalArn="arn:aws:iam::111111111111:role/browser")
        c.close()
    finally:
        emu.stop()
    emu = Emulator(state_dir=sd).start()
    try:
        c = ecrclient.client_for(emu)
        r = c.call("DescribeRepositories", repositoryNames=["keep/settings"])["repositories"][0]
        assert r["imageTagMutabilityExclusionFilters"] == filters
        got = c.call("GetLifecyclePolicy", repositoryName="keep/settings")
        assert json.loads(got["lifecyclePolicyText"]) == KEEP2
        assert c.call("ListPullTimeUpdateExclusions")["pullTimeUpdateExclusions"] == [
            "arn:aws:iam::111111111111:role/browser"]
        c.close()
    finally:
        emu.cleanup()
