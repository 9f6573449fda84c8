"""Today's ECR through the C client (ecrfs-ctl today ...) against the
emulator: mutability with exclusions, DescribeImages' new fields and the
pull time only BatchGetImage moves, referrers, archive (the errno and the
restore hint), scan findings over pages, settings round-tripped with
/usr/bin/aws, and the errno of each refusal."""
import hashlib
import json

import ecrclient

W = "111111111111/us-east-1/"
OCI_M = "application/vnd.oci.image.manifest.v1+json"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def push(emu, repo, layer, tag=None, subject=None, artifact_type=None):
    c = ecrclient.client_for(emu)
    cfg = b'{"architecture":"amd64"}'
    for b in (cfg, layer):
        c.push_blob(repo, b)
    m = {"schemaVersion": 2, "mediaType": OCI_M,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(cfg), "size": len(cfg)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": sha(layer), "size": len(layer)}]}
    if subject:
        m["subject"] = {"mediaType": OCI_M, "digest": subject, "size": 1}
        m["artifactType"] = artifact_type
    p = {"repositoryName": repo, "imageManifest": json.dumps(m)}
    if tag:
        p["imageTag"] = tag
    d = c.call("PutImage", **p)["image"]["imageId"]["imageDigest"]
    c.close()
    return d


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def kv(text):
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def test_mutability_exclusions(emu, ctl, repo):
    ok(ctl.run("today", "set-mutability", W + repo, "IMMUTABLE_WITH_EXCLUSION", "latest", "dev-*"))
    cli = emu.aws("describe-repositories", "--repository-names", repo)["repositories"][0]
    assert cli["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    out = ok(ctl.run("today", "mutability", W + repo + ":dev-7"))
    assert "mutability\tIMMUTABLE_WITH_EXCLUSION" in out and "immutable\t0" in out
    assert "filter\tlatest" in out and "filter\tdev-*" in out
    assert "tag\tdev-7\tmutable" in out
    assert "tag\tv1\timmutable" in ok(ctl.run("today", "mutability", W + repo + ":v1"))
    # What the C client answers is what the emulator enforces.
    for tag, allowed in (("dev-7", True), ("v1", False)):
        push(emu, repo, b"one " + tag.encode(), tag)
        c = ecrclient.client_for(emu)
        st, body = c.raw("PutImage", {"repositoryName": repo, "imageTag": tag,
                                      "imageManifest": json.dumps({
                                          "schemaVersion": 2, "mediaType": OCI_M,
                                          "config": {"mediaType": "x", "digest": sha(b'{"architecture":"amd64"}'), "size": 24},
                                          "layers": []})})
        c.close()
        assert (st == 200) == allowed, body
    ok(ctl.run("today", "set-mutability", W + repo, "MUTABLE_WITH_EXCLUSION", "latest"))
    out = ok(ctl.run("today", "mutability", W + repo + ":latest"))
    assert "tag\tlatest\timmutable" in out
    r = ctl.run("today", "set-mutability", W + repo, "MUTABLE_WITH_EXCLUSION")
    assert r.returncode == 1 and "Invalid argument" in r.stderr
    assert "Exclusion filters are required" in r.stderr  # ECR's message in the log


def test_image_fields_and_pull_time(emu, ctl, repo):
    d = push(emu, repo, b"pull me", "v1")
    info = kv(ok(ctl.run("today", "image", W + repo + ":v1")))
    assert info["status"] == "ACTIVE" and info["last_pulled_at"] == "0"
    emu.reset_log()
    ok(ctl.run("ls", W + repo))
    assert emu.count("BatchGetImage") == 0
    assert kv(ok(ctl.run("today", "image", W + repo + ":v1")))["last_pulled_at"] == "0"
    ok(ctl.run("get-manifest", W + repo + ":v1"))
    assert emu.count("BatchGetImage") == 1
    assert int(kv(ok(ctl.run("today", "image", W + repo + "@" + d)))["last_pulled_at"]) > 0


def test_referrers(emu, ctl, repo):
    subj = push(emu, repo, b"app", "app")
    sig = push(emu, repo, b"sig", subject=subj, artifact_type=SIG)
    sbom = push(emu, repo, b"sbom", subject=subj, artifact_type="application/spdx+json")
    out = ok(ctl.run("today", "referrers", W + repo + "@" + subj))
    rows = {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}
    assert rows == {sig: SIG, sbom: "application/spdx+json"}
    out = ok(ctl.run("today", "referrers", W + repo + "@" + subj, SIG))
    assert [line.split("\t")[0] for line in out.splitlines()] == [sig]
    assert kv(ok(ctl.run("today", "image", W + repo + "@" + sig)))["subject"] == subj


def test_archived_blob_read_fails_with_enomedium(emu, ctl, repo):
    layer = b"archived layer"
    push(emu, repo, layer, "v1")
    assert ok(ctl.run("today", "storage-class", W + repo + ":v1", "ARCHIVE")).strip() == "ARCHIVED"
    info = kv(ok(ctl.run("today", "image", W + repo + ":v1")))
    assert info["status"] == "ARCHIVED" and info["archived"] == "1"
    # Still listed: the client asks for every imageStatus.
    assert "v1" in ok(ctl.run("ls", W + repo))
    r = ctl.run("cat-blob", W + repo + "@" + sha(layer))
    assert r.returncode == 1 and "No medium found" in r.stderr
    assert "is archived" in r.stderr and "update-image-storage-class" in r.stderr
    r = ctl.run("get-manifest", W + repo + ":v1")
    assert r.returncode == 1 and "No medium found" in r.stderr
    assert ok(ctl.run("today", "storage-class", W + repo + ":v1", "STANDARD")).strip() == "ACTIVE"
    assert ok(ctl.run("cat-blob", W + repo + "@" + sha(layer))) == layer.decode()


def test_scan_findings_all_pages(emu, ctl, repo):
    push(emu, repo, b"scan me", "v1")
    r = ctl.run("today", "scan", W + repo + ":v1")
    assert r.returncode == 1 and "No data available" in r.stderr
    findings = [{"name": f"CVE-2024-{i:04d}", "severity": "HIGH" if i % 2 else "CRITICAL"}
                for i in range(7)]
    emu.control("seed_scan", {"repo": repo, "tag": "v1", "findings": findings})
    emu.config(tiny_pages=3)
    emu.reset_log()
    out = json.loads(ok(ctl.run("today", "scan", W + repo + ":v1")))
    assert out["imageScanFindings"]["findings"] == findings
    assert "nextToken" not in out
    assert emu.count("DescribeImageScanFindings") == 3
    cli = emu.aws("describe-image-scan-findings", "--repository-name", repo,
                  "--image-id", "imageTag=v1")
    assert cli["imageScanFindings"]["findings"] == findings
    info = kv(ok(ctl.run("today", "image", W + repo + ":v1")))
    assert info["scan"] == "critical=4 high=3 medium=0 low=0"


POLICY = {"rules": [{"rulePriority": 1, "description": "keep three",
                     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                   "countNumber": 3}, "action": {"type": "expire"}}]}
REPO_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "x", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}]}


def test_settings_round_trip(emu, ctl, repo, tmp_path):
    r = ctl.run("today", "lifecycle", W + repo)
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    assert "error" not in r.stderr  # a missing policy is routine, not logged as a failure
    f = tmp_path / "lp.json"
    f.write_text(json.dumps(POLICY))
    ok(ctl.run("today", "put-lifecycle", W + repo, f))
    cli = emu.aws("get-lifecycle-policy", "--repository-name", repo)
    assert json.loads(cli["lifecyclePolicyText"]) == POLICY
    assert json.loads(ok(ctl.run("today", "lifecycle", W + repo))) == POLICY
    for i in range(5):
        push(emu, repo, b"image %d" % i, f"t{i}")
    prev = json.loads(ok(ctl.run("today", "preview", W + repo)))
    assert prev["status"] == "COMPLETE" and len(prev["previewResults"]) == 2
    ok(ctl.run("today", "delete-lifecycle", W + repo))
    assert emu.aws_run("get-lifecycle-policy", "--repository-name", repo).returncode != 0

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}, "description": "no tag list here at all"}]}))
    r = ctl.run("today", "put-lifecycle", W + repo, bad)
    assert r.returncode == 1 and "Invalid argument" in r.stderr
    assert "Lifecycle policy validation failure" in r.stderr

    f.write_text(json.dumps(REPO_POLICY))
    ok(ctl.run("today", "set-policy", W + repo, f))
    cli = emu.aws("get-repository-policy", "--repository-name", repo)
    assert json.loads(cli["policyText"]) == REPO_POLICY
    ok(ctl.run("today", "delete-policy", W + repo))
    assert ctl.run("today", "policy", W + repo).returncode == 1

    ok(ctl.run("today", "scan-on-push", W + repo, "1"))
    cli = emu.aws("describe-repositories", "--repository-names", repo)["repositories"][0]
    assert cli["imageScanningConfiguration"]["scanOnPush"] is True


def test_pull_exclusions(emu, ctl):
    arn = "arn:aws:iam::111111111111:role/ecrfs-browser"
    c = ecrclient.client_for(emu)
    c.call("RegisterPullTimeUpdateExclusion", principalArn=arn)
    try:
        assert arn in ok(ctl.run("today", "pull-exclusions")).splitlines()
    finally:
        c.call("DeregisterPullTimeUpdateExclusion", principalArn=arn)
        c.close()
