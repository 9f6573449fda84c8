"""The ECR client (net/ecr*.c) through ecrfs-ctl against the emulator:
listings checked against the AWS CLI, pagination call counts from the
emulator's request log, retries under 503 storms and throttling, the errno
and the cause line of auth failures, blob push/read-back byte-exact (read
back independently from the backing registry), and no secret in debug logs."""
import concurrent.futures
import hashlib
import json
import math
import os
import time
import urllib.request

import pytest

import ecrclient
from ctlhelp import measured, stats_of

ACCOUNT = "111111111111"
REGION = "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SECRET = "emu-secret-111"


def where(repo=None):
    return f"{ACCOUNT}/{REGION}" + (f"/{repo}" if repo else "")


def seed_images(emu, repo, n, tag_fn=lambda i: [f"t{i:05d}"], threads=8):
    """Pushes n distinct images (one shared config blob, no layers) into repo,
    with tags tag_fn(i) (a list, may be empty). Returns {index: digest}."""
    c = ecrclient.client_for(emu)
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    try:
        dc = c.push_blob(repo, cfg)
    finally:
        c.close()

    def manifest(i):
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": dc, "size": len(cfg)},
            "layers": [], "annotations": {"n": str(i)}}).encode()

    def work(k):
        cc = ecrclient.client_for(emu)
        out = {}
        try:
            for i in range(k, n, threads):
                m = manifest(i)
                tags = tag_fn(i)
                for t in tags or [None]:
                    cc.put_image(repo, m, OCI_MANIFEST, tag=t)
                out[i] = "sha256:" + hashlib.sha256(m).hexdigest()
        finally:
            cc.close()
        return out

    digests = {}
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        for part in ex.map(work, range(threads)):
            digests.update(part)
    return digests


def parse_ls(stdout):
    """ecrfs-ctl ls REPO: tag, digest, size, pushed-at per line."""
    rows = []
    for line in stdout.splitlines():
        tag, digest, size, pushed = line.split("\t")
        rows.append((tag, digest, int(size), pushed))
    return rows


def cli_rows(emu, repo):
    """The same rows from `aws ecr describe-images` (all pages)."""
    out = emu.aws("describe-images", "--repository-name", repo)
    rows = set()
    for d in out["imageDetails"]:
        for t in d.get("imageTags") or ["-"]:
            rows.add((t, d["imageDigest"], d["imageSizeInBytes"]))
    return rows


# ---- listings ----------------------------------------------------------------

def test_ls_matches_aws_cli(emu, ctl, repo):
    digests = seed_images(emu, repo, 5, lambda i: {0: ["v1", "latest"], 1: ["v2"],
                                                   2: [], 3: ["rc-3"], 4: ["x_4"]}[i])
    r = ctl.run("ls", where(repo))
    assert r.returncode == 0, r.stderr
    rows = parse_ls(r.stdout)
    assert {(t, d, s) for t, d, s, _ in rows} == cli_rows(emu, repo)
    assert {t for t, *_ in rows} == {"v1", "latest", "v2", "-", "rc-3", "x_4"}
    assert ("-", digests[2]) in {(t, d) for t, d, *_ in rows}
    assert all(p.endswith("Z") and p.startswith("20") for *_, p in rows)

    r = ctl.run("ls", where())
    assert r.returncode == 0, r.stderr
    names = [line.split("\t")[0] for line in r.stdout.splitlines()]
    cli = emu.aws("describe-repositories")["repositories"]
    assert sorted(names) == sorted(x["repositoryName"] for x in cli)
    assert repo in names

    # The caller's own registry, no argument: DescribeRegistry first.
    r = ctl.run("ls")
    assert r.returncode == 0, r.stderr
    assert repo in [line.split("\t")[0] for line in r.stdout.splitlines()]


def test_ls_missing_repository(emu, ctl):
    r = ctl.run("ls", where("no/such-repo"))
    assert r.returncode == 1
    assert "No such file or directory" in r.stderr
    assert (f"repository 'no/such-repo' not found in registry {ACCOUNT} region {REGION}"
            in r.stderr)


def test_tiny_pages_exact_calls(emu, ctl, repo):
    seed_images(emu, repo, 7, threads=2)
    emu.config(tiny_pages=2)
    emu.reset_log()
    r = ctl.run("ls", where(repo))
    assert r.returncode == 0, r.stderr
    assert sorted(t for t, *_ in parse_ls(r.stdout)) == [f"t{i:05d}" for i in range(7)]
    assert emu.count("DescribeImages") == math.ceil(7 / 2)
    assert emu.count() == math.ceil(7 / 2)  # nothing else was called

    emu.reset_log()
    r = ctl.run("ls", where())
    assert r.returncode == 0, r.stderr
    nrepos = len(r.stdout.splitlines())
    assert repo in r.stdout
    assert emu.count("DescribeRepositories") == max(1, math.ceil(nrepos / 2))


@pytest.fixture(scope="module")
def big_repo(emulator):
    """5,000 images with one tag each (seeded once for the module)."""
    name = "net/five-thousand"
    ecrclient.create_repository(emulator, name)
    seed_images(emulator, name, 5000)
    return name


def test_5000_tags_call_count(emu, ctl, big_repo):
    t0 = time.monotonic()
    r = ctl.run("--stats", "ls", where(big_repo))
    t_ctl = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rows = parse_ls(r.stdout)
    assert len(rows) == 5000
    assert {t for t, *_ in rows} == {f"t{i:05d}" for i in range(5000)}
    calls = emu.count("DescribeImages", repo=big_repo)
    assert calls == emu.count()  # only DescribeImages was called
    assert stats_of(r.stderr)["calls"]["DescribeImages"] == calls
    emu.reset_log()
    t0 = time.monotonic()
    assert len(cli_rows(emu, big_repo)) == 5000
    t_cli = time.monotonic() - t0
    cli_calls = emu.count("DescribeImages", repo=big_repo)
    measured(f"listing 5,000 tags: ecrfs-ctl ls made {calls} DescribeImages calls "
             f"(maxResults 1000) in {t_ctl:.2f} s; /usr/bin/aws ecr describe-images made "
             f"{cli_calls} in {t_cli:.2f} s (ASan build when run by scripts/test)")
    assert calls <= 6


# ---- retries -----------------------------------------------------------------

def test_503_storm_listing_correct(emu, ctl, repo):
    seed_images(emu, repo, 12, threads=3)
    emu.config(tiny_pages=1)
    # Half of this repository's DescribeImages calls get a 503 (seeded).
    emu.fault(kind="http503", op="DescribeImages", repo=repo, probability=0.5, seed=11,
              count=0)
    emu.reset_log()
    r = ctl.run("--stats", "ls", where(repo))
    assert r.returncode == 0, r.stderr
    assert sorted(t for t, *_ in parse_ls(r.stdout)) == [f"t{i:05d}" for i in range(12)]
    log = [e for e in emu.log() if e.get("op") == "DescribeImages"]
    failed = sum(1 for e in log if e.get("status") == 503)
    ok = sum(1 for e in log if e.get("status") == 200)
    st = stats_of(r.stderr)
    measured(f"50% injected 503s on DescribeImages (1 image per page): listing complete "
             f"and correct; {ok} pages, {failed} 503s retried, client counted "
             f"{st['retries']} retries, 0 errors")
    assert ok == 12
    assert failed >= 4
    assert st["retries"] == failed
    assert st["ops"]["DescribeImages"]["errors"] == 0


def test_throttling_retried(emu, ctl, repo):
    seed_images(emu, repo, 2, threads=1)
    emu.fault(kind="throttle", op="DescribeImages", repo=repo, count=3)
    r = ctl.run("--stats", "ls", where(repo))
    assert r.returncode == 0, r.stderr
    assert len(parse_ls(r.stdout)) == 2
    assert stats_of(r.stderr)["retries"] == 3
    codes = [e.get("code") for e in emu.log() if e.get("op") == "DescribeImages"]
    assert codes.count("ThrottlingException") == 3


def test_throttling_forever_is_eio(emu, ctl, repo):
    emu.fault(kind="throttle", op="DescribeImages", repo=repo, count=0)
    r = ctl.run("ls", where(repo))
    assert r.returncode == 1
    # EIO once the attempts run out; ETIMEDOUT if a slow machine reaches
    # the 30 s deadline first (both are what the README error table promises).
    assert ("ls: Input/output error" in r.stderr or "ls: Connection timed out" in r.stderr)
    assert "ThrottlingException" in r.stderr and "attempt" in r.stderr


def test_expired_token_refreshed_once(emu, ctl, repo):
    seed_images(emu, repo, 1, threads=1)
    emu.fault(kind="expired_token", op="DescribeImages", repo=repo, count=1)
    r = ctl.run("ls", where(repo))
    assert r.returncode == 0, r.stderr
    assert emu.count("DescribeImages", repo=repo) == 2


# ---- auth failures -----------------------------------------------------------

def test_wrong_secret_eacces(emu, ctl, repo):
    r = ctl.run("ls", where(repo), env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert "check clock and credentials" in r.stderr
    assert "InvalidSignatureException" in r.stderr
    assert "not-the-secret" not in r.stderr


def test_unknown_key_eacces(emu, ctl, repo):
    r = ctl.run("ls", where(repo), env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNAAAAAAAAA"})
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert "check clock and credentials" in r.stderr


def test_denied_action_names_action_and_principal(emu, ctl, repo, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(1000))
    r = ctl.run("push-blob", where(repo), blob, access_key="AKIAEMURO1AAAAAAAAAA")
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert "ecr:InitiateLayerUpload" in r.stderr
    assert "arn:aws:iam::111111111111:user/readonly" in r.stderr
    # Reading is allowed for that user.
    r = ctl.run("ls", where(repo), access_key="AKIAEMURO1AAAAAAAAAA")
    assert r.returncode == 0, r.stderr


def test_whoami_matches_sts(emu, ctl):
    r = ctl.run("whoami")
    assert r.returncode == 0, r.stderr
    got = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    cli = emu.aws("get-caller-identity", service="sts")
    assert got["account"] == cli["Account"] == ACCOUNT
    assert got["arn"] == cli["Arn"]
    assert got["user_id"] == cli["UserId"]
    assert got["source"] == "environment"


# ---- manifests and blobs -----------------------------------------------------

def test_get_manifest_exact_bytes(emu, ctl, repo):
    c = ecrclient.client_for(emu)
    try:
        cfg = b'{"os":"linux"}'
        dc = c.push_blob(repo, cfg)
        # Odd formatting and escapes: the bytes must come back unchanged.
        text = ('{\n   "schemaVersion" : 2,\t"mediaType": "' + OCI_MANIFEST + '",\n'
                '"config": {"mediaType": "application/vnd.oci.image.config.v1+json", '
                f'"digest": "{dc}", "size": {len(cfg)}}},\n "layers": [],\n'
                ' "annotations": {"q": "a \\"quoted\\" \\\\ value \\u00e9 \u00e9 \\/ end"}\n}\n')
        data = text.encode("utf-8")
        c.put_image(repo, data, OCI_MANIFEST, tag="odd")
    finally:
        c.close()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = ctl.run("get-manifest", f"{where(repo)}:odd", binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    r2 = ctl.run("get-manifest", f"{where(repo)}@{digest}", binary=True)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == data
    cli = emu.aws("batch-get-image", "--repository-name", repo, "--image-ids",
                  "imageTag=odd")
    assert cli["images"][0]["imageManifest"].encode("utf-8") == data
    assert cli["images"][0]["imageId"]["imageDigest"] == digest


def registry_blob(emu, repo, digest):
    """The blob as the backing registry (CNCF distribution) serves it."""
    url = f"http://{emu.registry}/v2/{ACCOUNT}/{REGION}/{repo}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def test_push_blob_read_back(emu, ctl, repo, tmp_path):
    emu.config(part_size=5 * 1024 * 1024)
    data = os.urandom(12 * 1024 * 1024 + 12345)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    f = tmp_path / "blob"
    f.write_bytes(data)
    r = ctl.run("--stats", "push-blob", where(repo), f)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[:2] == [digest, str(len(data))]
    assert emu.count("UploadLayerPart", repo=repo) == 3
    assert emu.count("CompleteLayerUpload", repo=repo) == 1
    # Independent read-back: the registry's own blob API.
    assert hashlib.sha256(registry_blob(emu, repo, digest)).hexdigest() == digest[7:]
    # And through the client: whole, and a range across a part boundary.
    r = ctl.run("cat-blob", f"{where(repo)}@{digest}", binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    off, n = 5 * 1024 * 1024 - 100, 300
    r = ctl.run("cat-blob", f"{where(repo)}@{digest}", off, n, binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data[off:off + n]
    # A second push finds the layer present and uploads nothing.
    emu.reset_log()
    r = ctl.run("push-blob", where(repo), f)
    assert r.returncode == 0, r.stderr
    assert "already present" in r.stdout
    assert emu.count("InitiateLayerUpload") == 0


def test_push_blob_part_reply_dropped(emu, ctl, repo, tmp_path):
    """The second part is stored but its reply is lost: the retry learns
    from InvalidLayerPartException that ECR has it and goes on."""
    emu.config(part_size=5 * 1024 * 1024)
    data = os.urandom(11 * 1024 * 1024)
    f = tmp_path / "blob"
    f.write_bytes(data)
    emu.fault(kind="drop_reply", op="UploadLayerPart", repo=repo, nth=2)
    r = ctl.run("push-blob", where(repo), f)
    assert r.returncode == 0, r.stderr
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert registry_blob(emu, repo, digest) == data
    codes = [e.get("code") for e in emu.log() if e.get("op") == "UploadLayerPart"]
    assert "InvalidLayerPartException" in codes


def test_push_blob_503_on_part(emu, ctl, repo, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 1)
    f = tmp_path / "blob"
    f.write_bytes(data)
    emu.config(part_size=5 * 1024 * 1024)
    emu.fault(kind="http503", op="UploadLayerPart", repo=repo, nth=1, count=2)
    r = ctl.run("--stats", "push-blob", where(repo), f)
    assert r.returncode == 0, r.stderr
    assert stats_of(r.stderr)["ops"]["UploadLayerPart"]["retries"] == 2
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert registry_blob(emu, repo, digest) == data


def test_cat_blob_expired_url_and_truncation(emu, ctl, repo, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    c = ecrclient.client_for(emu)
    try:
        digest = c.push_blob(repo, data)
    finally:
        c.close()
    emu.fault(kind="expired_url", op="BlobGet", nth=1)
    r = ctl.run("cat-blob", f"{where(repo)}@{digest}", binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    assert emu.count("GetDownloadUrlForLayer", repo=repo) == 2

    emu.reset_log()
    emu.fault(kind="truncate", op="BlobGet", nth=1, keep_bytes=1000000)
    r = ctl.run("cat-blob", f"{where(repo)}@{digest}", binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    assert emu.count("BlobGet") == 2


def test_cat_blob_wrong_content_fails(emu, ctl, repo):
    data = os.urandom(100000)
    c = ecrclient.client_for(emu)
    try:
        digest = c.push_blob(repo, data)
    finally:
        c.close()
    emu.corrupt_blob(digest, offset=500)
    r = ctl.run("cat-blob", f"{where(repo)}@{digest}", binary=True)
    assert r.returncode == 1
    assert b"Input/output error" in r.stderr


# ---- logs --------------------------------------------------------------------

def test_debug_log_has_no_secret(emu, ctl, repo, tmp_path):
    data = os.urandom(200000)
    f = tmp_path / "blob"
    f.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    outs = []
    for args in (("push-blob", where(repo), f), ("ls", where(repo)),
                 ("cat-blob", f"{where(repo)}@{digest}"), ("whoami",)):
        r = ctl.run(*args, debug=True, binary=True)
        assert r.returncode == 0, r.stderr
        outs.append(r.stderr.decode("utf-8", "replace"))
    # A wrong secret's failure path too.
    r = ctl.run("ls", where(repo), debug=True, env={"AWS_SECRET_ACCESS_KEY": "wrong-secret-42"})
    outs.append(r.stderr)
    log = "\n".join(outs)
    # The debug log is really on (the requests are there, URLs without query).
    assert "debug:" in log and "/_blob/" in log and "UploadLayerPart" in log
    for bad in (SECRET, "wrong-secret-42", "X-Amz-Signature", "Authorization",
                "X-Amz-Credential", "Signature="):
        assert bad not in log, f"{bad!r} leaked into the debug log"


def test_endpoint_option_and_stats_command(emu, ctl, repo):
    """--endpoint alone reaches the emulator (no endpoint variables), and
    `stats CMD` prints the counters of the calls CMD made."""
    seed_images(emu, repo, 1, threads=1)
    no_env = {"AWS_ENDPOINT_URL_ECR": "", "AWS_ENDPOINT_URL": ""}
    r = ctl.run("--endpoint", emu.endpoint, "stats", "ls", where(repo), env=no_env)
    assert r.returncode == 0, r.stderr
    assert [t for t, *_ in parse_ls(r.stdout)] == ["t00000"]
    st = stats_of(r.stderr)
    assert st["calls"] == {"DescribeImages": 1}
    assert st["bytes_in"] > 0 and st["bytes_out"] > 0
