"""SigV4, identities and STS: what the AWS CLI v2 and ecrfs rely on."""
import json
import re

import ecrclient
from emu import READONLY_KEY


def test_cli_v2_accepted(emu, repo):
    out = emu.aws("describe-repositories", "--repository-names", repo)
    assert out["repositories"][0]["repositoryName"] == repo
    assert out["repositories"][0]["registryId"] == "111111111111"
    assert emu.count("DescribeRepositories", repo=None, status=200) >= 1


def test_cli_wrong_secret_rejected(emu):
    r = emu.aws_run("describe-repositories", env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert r.returncode != 0
    assert "(InvalidSignatureException)" in r.stderr
    assert "The request signature we calculated does not match" in r.stderr


def test_cli_unknown_key_rejected(emu):
    r = emu.aws_run("describe-repositories", env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000"})
    assert r.returncode != 0
    assert "(UnrecognizedClientException)" in r.stderr


def test_clock_skew_rejected(emu, client):
    client.clock_offset = -600
    st, body = client.raw("DescribeRepositories", {})
    assert st == 403
    assert body["__type"] == "InvalidSignatureException"
    assert body["message"].startswith("Signature expired:")
    client.clock_offset = 0
    assert client.raw("DescribeRepositories", {})[0] == 200


def test_signature_covers_body(emu, client):
    # Signed for one body, sent with another: rejected.
    import sigv4
    body = b'{"repositoryNames":["a"]}'
    h = {"Content-Type": "application/x-amz-json-1.1",
         "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"}
    h = sigv4.sign("POST", emu.endpoint + "/", h, body, client.akid, client.secret,
                   "us-east-1", "ecr")
    st, data = client._http("POST", "/", b'{"repositoryNames":["b"]}', h)
    assert st == 403 and json.loads(data)["__type"] == "InvalidSignatureException"


def test_wrong_service_scope_rejected(emu, client):
    st, body = client.raw("DescribeRepositories", {}, service="s3")
    assert st == 403 and body["__type"] == "InvalidSignatureException"


def test_region_is_the_scope_region(emu):
    name = "scope/regional"
    emu.aws("create-repository", "--repository-name", name, region="eu-west-1")
    assert [r["repositoryName"] for r in
            emu.aws("describe-repositories", region="eu-west-1")["repositories"]] == [name]
    r = emu.aws_run("describe-repositories", "--repository-names", name, region="us-east-1")
    assert "(RepositoryNotFoundException)" in r.stderr
    assert (f"The repository with name '{name}' does not exist in the registry with id "
            f"'111111111111'") in r.stderr


def test_cross_account_grant(emu, repo):
    # 222 is granted read and write on 111's registry; 333 is not.
    out = emu.aws("describe-repositories", "--registry-id", "111111111111",
                  "--repository-names", repo, account="222222222222")
    assert out["repositories"][0]["registryId"] == "111111111111"
    r = emu.aws_run("describe-repositories", "--registry-id", "111111111111",
                    account="333333333333")
    assert "(AccessDeniedException)" in r.stderr
    assert "arn:aws:iam::333333333333:user/dev is not authorized to perform: " \
           "ecr:DescribeRepositories" in r.stderr
    # Own registry of 333 works, and is separate.
    assert emu.aws("describe-repositories", account="333333333333")["repositories"] == []


def test_readonly_user_denied_writes(emu, repo):
    assert emu.aws("describe-images", "--repository-name", repo,
                   access_key=READONLY_KEY)["imageDetails"] == []
    r = emu.aws_run("initiate-layer-upload", "--repository-name", repo,
                    access_key=READONLY_KEY)
    assert r.returncode != 0
    assert (f"An error occurred (AccessDeniedException) when calling the InitiateLayerUpload "
            f"operation: User: arn:aws:iam::111111111111:user/readonly is not authorized to "
            f"perform: ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:"
            f"111111111111:repository/{repo} because no identity-based policy allows the "
            f"ecr:InitiateLayerUpload action") in r.stderr


def test_sts_get_caller_identity_cli(emu):
    out = emu.aws("get-caller-identity", service="sts")
    assert out["Account"] == "111111111111"
    assert out["Arn"] == "arn:aws:iam::111111111111:user/dev"


def test_sts_xml_has_namespace(emu, client):
    st, xml = client.sts("GetCallerIdentity")
    assert st == 200
    assert '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">' in xml
    bad = ecrclient.Client(emu.endpoint, client.akid, "wrong", "us-east-1")
    st, xml = bad.sts("GetCallerIdentity")
    assert st == 403 and "<Code>SignatureDoesNotMatch</Code>" in xml
    assert '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">' in xml


def test_assume_role_round_trip(emu, repo):
    out = emu.aws("assume-role", "--role-arn", "arn:aws:iam::111111111111:role/ecr-admin",
                  "--role-session-name", "s1", service="sts", account="222222222222")
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and c["SessionToken"] and c["Expiration"]
    assert out["AssumedRoleUser"]["Arn"] == "arn:aws:sts::111111111111:assumed-role/ecr-admin/s1"
    tmp = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
           "AWS_SESSION_TOKEN": c["SessionToken"]}
    who = emu.aws("get-caller-identity", service="sts", env=tmp)
    assert who["Arn"] == "arn:aws:sts::111111111111:assumed-role/ecr-admin/s1"
    assert who["Account"] == "111111111111"
    names = [r["repositoryName"] for r in emu.aws("describe-repositories", env=tmp)["repositories"]]
    assert repo in names
    # A session key without its token, or with another, is not accepted.
    r = emu.aws_run("describe-repositories", env=dict(tmp, AWS_SESSION_TOKEN="bogus"))
    assert "(UnrecognizedClientException)" in r.stderr
    emu.expire_credentials()
    r = emu.aws_run("describe-repositories", env=tmp)
    assert "(ExpiredTokenException)" in r.stderr


def test_assume_role_duration_knob(emu):
    emu.config(sts_duration=900)
    c = ecrclient.client_for(emu)
    st, xml = c.sts("AssumeRole", RoleArn="arn:aws:iam::111111111111:role/r",
                    RoleSessionName="short", DurationSeconds="3600")
    assert st == 200
    import calendar
    import time
    exp = re.search(r"<Expiration>([^<]+)</Expiration>", xml).group(1)
    left = calendar.timegm(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")) - time.time()
    assert 0 < left <= 900


def test_short_lived_credentials_refused_early(emu, repo):
    """sts_duration=20, sts_expire_early=18: the Expiration says 20 s, the
    session is refused with ExpiredTokenException after 2 s; the log shows
    the refused call with its key."""
    import time
    emu.config(sts_duration=20, sts_expire_early=18)
    out = emu.aws("assume-role", "--role-arn", "arn:aws:iam::111111111111:role/dev",
                  "--role-session-name", "short", service="sts")
    c = out["Credentials"]
    tmp = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
           "AWS_SESSION_TOKEN": c["SessionToken"]}
    import datetime
    exp = datetime.datetime.fromisoformat(c["Expiration"].replace("Z", "+00:00"))
    left = exp.timestamp() - time.time()
    assert 15 < left <= 20
    time.sleep(2.5)
    r = emu.aws_run("describe-repositories", env=tmp)
    assert "(ExpiredTokenException)" in r.stderr
    last = [e for e in emu.log() if e["op"] == "DescribeRepositories"][-1]
    assert last["code"] == "ExpiredTokenException" and last["status"] == 403
    assert last["akid"] == c["AccessKeyId"]


def test_assume_role_unknown_account_denied(emu, client):
    st, xml = client.sts("AssumeRole", RoleArn="arn:aws:iam::999999999999:role/x",
                         RoleSessionName="s2")
    assert st == 403 and "<Code>AccessDenied</Code>" in xml


def test_assume_role_with_web_identity_unsigned(emu, tmp_path):
    out = emu.aws("assume-role-with-web-identity", "--role-arn",
                  "arn:aws:iam::222222222222:role/ci", "--role-session-name", "gh",
                  "--web-identity-token", "eyJhbGciOi.fake.token", service="sts")
    assert out["AssumedRoleUser"]["Arn"] == "arn:aws:sts::222222222222:assumed-role/ci/gh"
    assert out["Credentials"]["AccessKeyId"].startswith("ASIA")
    last = [e for e in emu.log() if e["op"] == "AssumeRoleWithWebIdentity"][-1]
    assert last["status"] == 200


def test_readonly_role(emu):
    c = ecrclient.client_for(emu)
    st, xml = c.sts("AssumeRole", RoleArn="arn:aws:iam::111111111111:role/readonly",
                    RoleSessionName="ro")
    assert st == 200
    get = lambda tag: re.search(f"<{tag}>([^<]+)</{tag}>", xml).group(1)
    t = ecrclient.Client(emu.endpoint, get("AccessKeyId"), get("SecretAccessKey"),
                         token=get("SessionToken"))
    assert t.raw("DescribeRepositories", {})[0] == 200
    st, body = t.raw("CreateRepository", {"repositoryName": "nope/ro"})
    assert st == 400 and body["__type"] == "AccessDeniedException"
    t.close()


def test_chunked_request_body(emu, client, repo):
    # A client streaming its body (Transfer-Encoding: chunked) signs the bytes.
    import http.client
    import urllib.parse
    import sigv4
    body = json.dumps({"repositoryNames": [repo]}).encode()
    h = {"Content-Type": "application/x-amz-json-1.1",
         "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"}
    h = sigv4.sign("POST", emu.endpoint + "/", h, body, client.akid, client.secret,
                   "us-east-1", "ecr")
    u = urllib.parse.urlsplit(emu.endpoint)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        c.request("POST", "/", body=iter([body[:7], body[7:]]), headers=h, encode_chunked=True)
        r = c.getresponse()
        assert r.status == 200, r.read()
        assert json.loads(r.read())["repositories"][0]["repositoryName"] == repo
    finally:
        c.close()


def test_curl_aws_sigv4_accepted(emu, repo):
    # The bench compares with curl --aws-sigv4: the emulator must accept it.
    import subprocess
    akid, secret = emu.credentials()
    r = subprocess.run(["curl", "-sS", "--fail-with-body", "--aws-sigv4", "aws:amz:us-east-1:ecr",
                        "--user", f"{akid}:{secret}", "-H",
                        "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
                        "-H", "Content-Type: application/x-amz-json-1.1",
                        "-d", json.dumps({"repositoryNames": [repo]}), emu.endpoint + "/"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["repositories"][0]["repositoryName"] == repo


def test_sts_signed_get_query(emu, client):
    import http.client
    import urllib.parse
    import sigv4
    url = emu.endpoint + "/?Action=GetCallerIdentity&Version=2011-06-15"
    h = sigv4.sign("GET", url, {}, b"", client.akid, client.secret, "us-east-1", "sts")
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        c.request("GET", u.path + "?" + u.query, headers=h)
        r = c.getresponse()
        body = r.read().decode()
    finally:
        c.close()
    assert r.status == 200 and "<Account>111111111111</Account>" in body
