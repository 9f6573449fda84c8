"""The views of what ECR keeps beside images and repositories:
TAG@scan.json, TAG@referrers/ and REPO@settings/, checked with the AWS CLI.
Their repositories live in region eu-west-1 of the suite's emulator, so the
listings the other tests check stay as they are."""
import errno
import json
import os
import subprocess
import time

import pytest

from conftest import ACCT, ecrclient, layouts

REGION = "eu-west-1"
REPO = "views/app"
OCI_M = "application/vnd.oci.image.manifest.v1+json"
FINDINGS = [{"name": f"CVE-2024-{i:04d}", "severity": sev, "uri": "https://example/cve",
             "attributes": [{"key": "package_name", "value": "openssl"}]}
            for i, sev in enumerate(["CRITICAL", "HIGH", "HIGH", "LOW", "MEDIUM"])]
KEEP1 = {"rules": [{"rulePriority": 1, "description": "keep one release image",
                    "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
                                  "countType": "imageCountMoreThan", "countNumber": 1},
                    "action": {"type": "expire"}}]}


def aws(emu, *args):
    return emu.aws(*args, region=REGION)


def aws_run(emu, *args):
    return emu.aws_run(*args, region=REGION)


def push_referrer(emu, layout, subject):
    """An image whose manifest has `subject` (a signature, say), pushed by
    digest only; returns its digest."""
    info = layouts.make_image(layout, "sig", {"/sig": b"signed\n"})
    m = json.loads(layouts._blob(layout, info["manifest"]))
    m["subject"] = {"mediaType": OCI_M, "digest": subject["digest"], "size": subject["size"]}
    m["artifactType"] = "application/vnd.example.signature"
    data = json.dumps(m).encode()
    c = ecrclient.client_for(emu, region=REGION)
    try:
        for b in [m["config"]] + m["layers"]:
            c.push_blob(REPO, layouts._blob(layout, b["digest"]), b["digest"])
        out = c.put_image(REPO, data, OCI_M)
    finally:
        c.close()
    return out["image"]["imageId"]["imageDigest"]


@pytest.fixture(scope="module")
def views(seeded, tmp_path_factory):
    emu = seeded["emu"]
    layout = str(tmp_path_factory.mktemp("views") / "layout")
    v1 = layouts.make_image(layout, "v1", {"/etc/v1": b"one\n"})
    layouts.make_image(layout, "v2", {"/etc/v2": b"two\n"})
    ecrclient.push_layout(emu, layout, REPO, "v1", region=REGION)
    ecrclient.push_layout(emu, layout, REPO, "v2", region=REGION)
    sig = push_referrer(emu, layout, {"digest": v1["manifest"], "size": v1["size"]})
    emu.control("seed_scan", {"repo": REPO, "tag": "v1", "findings": FINDINGS,
                              "region": REGION})
    return {"emu": emu, "v1": v1, "sig": sig}


@pytest.fixture
def m(views, mount):
    return mount(opts="tag_ttl=1")


def repo_path(m, *parts):
    return m.repo(REPO, *parts, region=REGION)


def settings(m, name=""):
    return m.path(ACCT, REGION, "views", "app@settings", name)


# ---- TAG@scan.json -------------------------------------------------------------------
def test_scan_json_is_the_findings(views, m):
    emu = views["emu"]
    want = aws(emu, "describe-image-scan-findings", "--repository-name", REPO,
               "--image-id", "imageTag=v1", "--page-size", "2")
    with open(repo_path(m, "v1@scan.json")) as f:
        got = json.load(f)
    assert got["imageScanFindings"]["findings"] == want["imageScanFindings"]["findings"]
    assert got["imageScanFindings"]["findingSeverityCounts"] == \
        want["imageScanFindings"]["findingSeverityCounts"]
    assert got["imageScanStatus"] == want["imageScanStatus"]
    # grep over several tags' files (views are not listed: name them)
    paths = [repo_path(m, t + "@scan.json") for t in ("v1", "v2")]
    r = subprocess.run(["grep", "-l", "CVE-2024-0003"] + paths, capture_output=True, text=True)
    assert r.stdout.split() == [paths[0]]
    # an image without a scan reads as {}
    with open(paths[1]) as f:
        assert json.load(f) == {}
    st = os.stat(paths[0])
    assert oct(st.st_mode & 0o7777) == "0o444" and not os.path.isdir(paths[0])
    assert "v1@scan.json" not in os.listdir(repo_path(m))


def test_scan_json_enhanced_on_a_digest_directory(views, m):
    emu = views["emu"]
    enh = [{"findingArn": f"arn:aws:inspector2:{REGION}:{ACCT}:finding/{i}",
            "severity": "HIGH", "type": "PACKAGE_VULNERABILITY", "status": "ACTIVE",
            "packageVulnerabilityDetails": {"vulnerabilityId": f"CVE-2025-{i:04d}"}}
           for i in range(3)]
    emu.control("seed_scan", {"repo": REPO, "digest": views["sig"], "findings": enh,
                              "enhanced": True, "region": REGION})
    p = repo_path(m, "@sha256-" + views["sig"].split(":")[1] + "@scan.json")
    with open(p) as f:
        got = json.load(f)
    assert got["imageScanFindings"]["enhancedFindings"] == enh
    assert "findings" not in got["imageScanFindings"]


def test_scan_xattrs(views, m):
    v1 = repo_path(m, "v1")
    get = lambda n: os.getxattr(v1, "user.ecr.scan." + n).decode()  # noqa: E731
    assert (get("critical"), get("high"), get("medium"), get("low")) == ("1", "2", "1", "1")
    assert get("informational") == "0" and get("undefined") == "0"
    assert "user.ecr.scan.high" in os.listxattr(v1)
    views_x = os.getxattr(v1, "user.ecr.views").decode().split(",")
    assert {"referrers", "scan.json"} <= set(views_x)
    with pytest.raises(OSError) as e:
        os.getxattr(repo_path(m, "v2"), "user.ecr.scan.high")
    assert e.value.errno == errno.ENODATA
    assert "settings" in os.getxattr(repo_path(m), "user.ecr.views").decode()


# ---- TAG@referrers/ --------------------------------------------------------------------
def test_referrers_are_oci_layouts(views, m, tmp_path):
    hexd = views["sig"].split(":")[1]
    refs = repo_path(m, "v1@referrers")
    assert os.listdir(refs) == ["@sha256-" + hexd]
    d = os.path.join(refs, "@sha256-" + hexd)
    assert sorted(os.listdir(d)) == ["blobs", "index.json", "oci-layout"]
    with open(os.path.join(d, "index.json")) as f:
        idx = json.load(f)
    assert idx["manifests"][0]["digest"] == views["sig"]
    assert idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == \
        "sha256-" + hexd
    r = subprocess.run(["skopeo", "inspect", f"oci:{d}:sha256-{hexd}"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == views["sig"]
    out = tmp_path / "copy"
    r = subprocess.run(["skopeo", "copy", f"oci:{d}:sha256-{hexd}", f"oci:{out}:sig"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # a referrer is not the tag: writing into it pushes nothing
    with pytest.raises(OSError) as e:
        open(os.path.join(d, "index.json"), "w")
    assert e.value.errno in (errno.EPERM, errno.EACCES)
    # the view is read only; v2 has no referrers
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno in (errno.EPERM, errno.EACCES)
    assert os.listdir(repo_path(m, "v2@referrers")) == []
    assert not os.path.exists(os.path.join(refs, "@sha256-" + "0" * 64))


def test_referrers_listing_is_kept_for_the_ttl(views, mount):
    emu = views["emu"]
    m = mount(opts="tag_ttl=60", name="ttl")
    refs = repo_path(m, "v1@referrers")
    calls = emu.count("ListImageReferrers", repo=REPO)
    for _ in range(3):
        assert len(os.listdir(refs)) == 1
    os.stat(os.path.join(refs, "@sha256-" + views["sig"].split(":")[1], "index.json"))
    assert emu.count("ListImageReferrers", repo=REPO) == calls + 1


# ---- REPO@settings/ --------------------------------------------------------------------
def write(path, text):
    """open, write, close: returns the errno of the close (0 when fine)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, text.encode())
    try:
        os.close(fd)
        return 0
    except OSError as e:
        return e.errno


def read(path):
    with open(path) as f:
        return f.read()


def test_settings_listing_and_reads(views, m):
    emu = views["emu"]
    names = sorted(os.listdir(settings(m)))
    assert names == sorted(["mutability.json", "scanning.json", "encryption.json",
                            "lifecycle-preview.json"])
    repo = aws(emu, "describe-repositories", "--repository-names", REPO)["repositories"][0]
    assert json.loads(read(settings(m, "mutability.json")))["imageTagMutability"] == \
        repo["imageTagMutability"]
    assert json.loads(read(settings(m, "scanning.json"))) == \
        {"imageScanningConfiguration": repo["imageScanningConfiguration"]}
    assert json.loads(read(settings(m, "encryption.json")))["encryptionConfiguration"] == \
        repo["encryptionConfiguration"]
    assert not os.path.exists(settings(m, "lifecycle-policy.json"))
    assert read(settings(m, "lifecycle-preview.json")) == "{}\n"  # no preview yet
    assert not os.path.exists(settings(m, "lifecycle-preview-result.json"))
    assert oct(os.stat(settings(m, "encryption.json")).st_mode & 0o777) == "0o444"
    with pytest.raises(OSError) as e:
        open(settings(m, "encryption.json"), "w")
    assert e.value.errno == errno.EACCES
    # only the settings files: no other name, no removal of the others
    with pytest.raises(OSError) as e:
        open(settings(m, "notes.txt"), "w")
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.unlink(settings(m, "mutability.json"))
    assert e.value.errno == errno.EPERM
    # settings are a repository's; the prefix "views" is none
    assert not os.path.exists(m.path(ACCT, REGION, "views@settings"))


def test_settings_of_a_repository_named_like_a_tag(seeded, mount):
    # team/app has a tag "ci" and a repository team/app/ci: the tag owns
    # "ci@settings" (images have no settings), the namespace is "ci@".
    m = mount()
    assert not os.path.exists(m.repo("team/app", "ci@settings"))
    got = json.loads(read(m.repo("team/app", "ci@@settings", "mutability.json")))
    assert got["imageTagMutability"] == "MUTABLE"


def test_lifecycle_policy_round_trip(views, m, tmp_path):
    emu = views["emu"]
    p = settings(m, "lifecycle-policy.json")
    text = json.dumps(KEEP1, indent=1)
    puts = emu.count("PutLifecyclePolicy", repo=REPO)
    assert write(p, text) == 0
    assert emu.count("PutLifecyclePolicy", repo=REPO) == puts + 1  # one call per close
    got = aws(emu, "get-lifecycle-policy", "--repository-name", REPO)
    assert json.loads(got["lifecyclePolicyText"]) == KEEP1
    assert json.loads(read(p)) == KEEP1
    assert "lifecycle-policy.json" in os.listdir(settings(m))
    # a policy ECR refuses fails the close with EINVAL; the log quotes ECR
    bad = json.dumps({"rules": [dict(KEEP1["rules"][0], selection={
        "tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1})]})
    assert write(p, bad) == errno.EINVAL
    assert "Lifecycle policy validation failure" in m.logtext()
    assert json.loads(aws(emu, "get-lifecycle-policy", "--repository-name",
                          REPO)["lifecyclePolicyText"]) == KEEP1
    # not JSON: EINVAL, nothing sent
    assert write(p, "{not json") == errno.EINVAL
    assert "lifecycle-policy.json: not JSON" in m.logtext()
    # rm deletes the policy
    os.unlink(p)
    r = aws_run(emu, "get-lifecycle-policy", "--repository-name", REPO)
    assert r.returncode != 0 and "LifecyclePolicyNotFoundException" in r.stderr
    assert not os.path.exists(p)
    with pytest.raises(OSError) as e:
        os.unlink(p)
    assert e.value.errno == errno.ENOENT
    # set from elsewhere: the file is there at once (no cached absence)
    aws(emu, "put-lifecycle-policy", "--repository-name", REPO, "--lifecycle-policy-text",
        json.dumps(KEEP1))
    assert json.loads(read(p)) == KEEP1
    # a shell redirection and cp replace it
    r = subprocess.run(["sh", "-c", f"echo '{json.dumps(KEEP1)}' > {p}"], capture_output=True)
    assert r.returncode == 0, r.stderr
    local = tmp_path / "policy.json"
    local.write_text(json.dumps(dict(KEEP1, rules=[dict(KEEP1["rules"][0], description="cp")])))
    r = subprocess.run(["cp", str(local), p], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = aws(emu, "get-lifecycle-policy", "--repository-name", REPO)
    assert json.loads(got["lifecyclePolicyText"])["rules"][0]["description"] == "cp"
    os.unlink(p)


def test_repository_policy_round_trip(views, m):
    emu = views["emu"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
        "Action": ["ecr:BatchGetImage"]}]}
    p = settings(m, "repository-policy.json")
    assert write(p, json.dumps(policy)) == 0
    got = aws(emu, "get-repository-policy", "--repository-name", REPO)
    assert json.loads(got["policyText"]) == policy
    assert write(p, json.dumps({"Version": "2012-10-17"})) == errno.EINVAL
    os.unlink(p)
    r = aws_run(emu, "get-repository-policy", "--repository-name", REPO)
    assert r.returncode != 0 and "RepositoryPolicyNotFoundException" in r.stderr


def test_mutability_and_scanning_writes(views, m):
    emu = views["emu"]
    p = settings(m, "mutability.json")
    want = {"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "dev-*"}]}
    try:
        assert write(p, json.dumps(want)) == 0
        repo = aws(emu, "describe-repositories", "--repository-names", REPO)["repositories"][0]
        assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        # this AWS CLI predates the filters: ask with a raw call
        c = ecrclient.client_for(emu, region=REGION)
        try:
            raw = c.call("DescribeRepositories", repositoryNames=[REPO])["repositories"][0]
        finally:
            c.close()
        assert raw["imageTagMutabilityExclusionFilters"] == \
            want["imageTagMutabilityExclusionFilters"]
        assert json.loads(read(p)) == want
        assert write(p, json.dumps({"imageTagMutability": "SOMETIMES"})) == errno.EINVAL
    finally:
        assert write(p, json.dumps({"imageTagMutability": "MUTABLE"})) == 0
    assert aws(emu, "describe-repositories", "--repository-names",
               REPO)["repositories"][0]["imageTagMutability"] == "MUTABLE"
    s = settings(m, "scanning.json")
    assert write(s, '{"imageScanningConfiguration": {"scanOnPush": true}}') == 0
    repo = aws(emu, "describe-repositories", "--repository-names", REPO)["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert write(s, '{"scanOnPush": false}') == 0
    assert json.loads(read(s)) == {"imageScanningConfiguration": {"scanOnPush": False}}
    # truncation by name sends nothing; only to 0
    os.truncate(s, 0)
    assert json.loads(read(s)) == {"imageScanningConfiguration": {"scanOnPush": False}}
    with pytest.raises(OSError) as e:
        os.truncate(s, 5)
    assert e.value.errno == errno.EINVAL


def test_lifecycle_preview(views, m):
    p = settings(m, "lifecycle-preview.json")
    assert write(p, json.dumps(KEEP1)) == 0
    res = settings(m, "lifecycle-preview-result.json")
    deadline = time.time() + 30
    while True:
        got = json.loads(read(res))
        if got.get("status") == "COMPLETE" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert got["status"] == "COMPLETE"
    # two tagged "v" images, one kept: the older one expires
    assert [r["imageTags"] for r in got["previewResults"]] == [["v1"]]
    assert json.loads(read(p)) == KEEP1
    assert oct(os.stat(res).st_mode & 0o777) == "0o444"


def test_settings_read_only_mount(views, mount):
    m = mount(opts="ro", name="ro")
    assert json.loads(read(settings(m, "mutability.json")))["imageTagMutability"]
    for name in ("mutability.json", "lifecycle-policy.json"):
        with pytest.raises(OSError) as e:
            open(settings(m, name), "w")
        assert e.value.errno == errno.EROFS
