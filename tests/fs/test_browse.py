"""Browsing: the tree, names, stat, du and extended attributes, checked
against what the AWS CLI says about the same registry."""
import errno
import json
import os
import subprocess
from datetime import datetime, timezone

import pytest

from conftest import ACCT, REGION, ecrclient, sha256_file


def describe(emu, repo):
    out = emu.aws("describe-images", "--repository-name", repo)
    return out["imageDetails"]


def test_tree(seeded, mount):
    m = mount()
    imgs = seeded["images"]
    assert sorted(os.listdir(m.mnt)) == [".ecrfs", ACCT]
    assert os.listdir(m.path(ACCT)) == [REGION]
    assert sorted(os.listdir(m.path(ACCT, REGION))) == ["dock", "multi", "team"]
    assert os.listdir(m.path(ACCT, REGION, "team")) == ["app"]
    app = sorted(os.listdir(m.repo("team/app")))
    # tags, the untagged image by digest, and the namespace team/app/ci
    # shown as ci@ because the tag ci owns the plain name.
    untagged = "@sha256-" + imgs["untagged"]["manifest"].split(":")[1]
    assert app == sorted(["ci", "ci@", "latest", "mix", "v1", "v2", untagged])
    assert os.listdir(m.repo("team/app", "ci@")) == ["c1"]
    assert sorted(os.listdir(m.repo("team/app", "v1"))) == ["blobs", "index.json", "oci-layout"]
    assert os.listdir(m.repo("team/app", "v1", "blobs")) == ["sha256"]
    v1 = imgs["v1"]
    want = {d.split(":")[1] for d in [v1["manifest"], v1["config"]] + v1["layers"]}
    assert set(os.listdir(m.repo("team/app", "v1", "blobs", "sha256"))) == want
    # blob files: readdir's inode numbers are the ones stat shows
    for e in os.scandir(m.repo("team/app", "v1", "blobs", "sha256")):
        assert e.inode() == os.stat(e.path).st_ino, e.path
    # the tag's own layout is a different image from the namespace
    ci_blobs = os.listdir(m.repo("team/app", "ci", "blobs", "sha256"))
    assert imgs["ci"]["manifest"].split(":")[1] in ci_blobs


def test_layout_files_and_digests(seeded, mount):
    m = mount()
    v1 = seeded["images"]["v1"]
    d = m.repo("team/app", "v1")
    with open(os.path.join(d, "oci-layout")) as f:
        assert json.load(f) == {"imageLayoutVersion": "1.0.0"}
    with open(os.path.join(d, "index.json")) as f:
        idx = json.load(f)
    assert idx["schemaVersion"] == 2
    assert len(idx["manifests"]) == 1
    desc = idx["manifests"][0]
    assert desc["digest"] == v1["manifest"]
    assert desc["size"] == v1["size"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    # every blob file hashes to its name (exact manifest bytes included)
    bd = os.path.join(d, "blobs", "sha256")
    for name in os.listdir(bd):
        assert sha256_file(os.path.join(bd, name)) == name
    # the manifest bytes are exactly what BatchGetImage returns
    emu = seeded["emu"]
    got = emu.aws("batch-get-image", "--repository-name", "team/app", "--image-ids",
                  "imageTag=v1")
    ecr_bytes = got["images"][0]["imageManifest"].encode()
    with open(os.path.join(bd, v1["manifest"].split(":")[1]), "rb") as f:
        assert f.read() == ecr_bytes


def test_digest_dir_index_ref(seeded, mount):
    m = mount()
    v1 = seeded["images"]["v1"]["manifest"]
    hexd = v1.split(":")[1]
    # tagged images are reachable by digest without being listed
    d = m.repo("team/app", "@sha256-" + hexd)
    assert "@sha256-" + hexd not in os.listdir(m.repo("team/app"))
    with open(os.path.join(d, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    assert desc["digest"] == v1
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "sha256-" + hexd


@pytest.mark.parametrize("name", [
    "UPPER", "a:b", ".hidden", "-x", "x" * 200, "@sha256-abc", "@sha256-" + "g" * 64,
])
def test_invalid_names_enoent_without_network(seeded, mount, name):
    m = mount("tag_ttl=3600")  # the warm listings stay valid however slow the run
    os.listdir(m.repo("team/app"))  # warm the listings
    emu = seeded["emu"]
    before = len(emu.log())
    with pytest.raises(FileNotFoundError):
        os.stat(m.repo("team/app", name))
    with pytest.raises(FileNotFoundError):
        os.stat(m.path(ACCT, REGION, name))
    assert len(emu.log()) == before  # no ECR call for names ECR cannot have


def test_missing_names(seeded, mount):
    m = mount()
    for p in [m.path("123"), m.path(ACCT, "nowhere"), m.repo("team/nope"),
              m.repo("team/app", "v9"), m.repo("team/app", "v1", "blobs", "sha256", "0" * 64),
              m.repo("team/app", "v1", "extra")]:
        with pytest.raises(FileNotFoundError):
            os.stat(p)
    # any 12-digit account and valid region resolves by name
    assert os.path.isdir(m.path("222222222222", "eu-west-1"))


def test_stat_sizes_times_modes(seeded, mount):
    m = mount()
    emu = seeded["emu"]
    details = {d["imageDigest"]: d for d in describe(emu, "team/app")}
    v1 = seeded["images"]["v1"]
    st = os.stat(m.repo("team/app", "v1"))
    pushed = details[v1["manifest"]]["imagePushedAt"]
    if isinstance(pushed, str):
        pushed = datetime.fromisoformat(pushed).timestamp()
    assert int(st.st_mtime) == int(pushed)
    assert st.st_size == 0 and oct(st.st_mode & 0o777) == "0o755"
    assert st.st_uid == os.getuid()
    man = json.loads(open(m.repo("team/app", "v1", "blobs", "sha256",
                                 v1["manifest"].split(":")[1]), "rb").read())
    for desc in [man["config"]] + man["layers"]:
        p = m.repo("team/app", "v1", "blobs", "sha256", desc["digest"].split(":")[1])
        st = os.stat(p)
        assert st.st_size == desc["size"]
        assert st.st_blocks == (desc["size"] + 511) // 512
        assert oct(st.st_mode & 0o777) == "0o644"


def test_stat_needs_no_blob_download(seeded, mount):
    m = mount()
    emu = seeded["emu"]
    emu.reset_log()
    subprocess.run(["ls", "-lR", m.repo("team/app")], check=True, capture_output=True)
    assert emu.count("BlobGet") == 0
    assert emu.count("GetDownloadUrlForLayer") == 0


def test_du_counts_shared_layers_once(seeded, mount):
    m = mount()
    imgs = seeded["images"]
    # what the repository stores: every distinct blob once
    sizes = {}
    bd = m.repo("team/app", "{}", "blobs", "sha256")
    for tag in ["v1", "latest", "v2", "mix", "ci"]:
        d = bd.format(tag)
        for name in os.listdir(d):
            sizes[name] = os.stat(os.path.join(d, name)).st_size
    lost = "@sha256-" + imgs["untagged"]["manifest"].split(":")[1]
    d = bd.format(lost)
    for name in os.listdir(d):
        sizes[name] = os.stat(os.path.join(d, name)).st_size
    # team/app/ci (under ci@) is another repository: its blobs count apart
    ci_repo = {}
    d = m.repo("team/app", "ci@", "c1", "blobs", "sha256")
    for name in os.listdir(d):
        ci_repo[name] = os.stat(os.path.join(d, name)).st_size
    # oci-layout and index.json are distinct small files in each image dir
    per_dir = 0
    for tag in ["v1", "latest", "v2", "mix", "ci", lost, "ci@/c1"]:
        for f in ["oci-layout", "index.json"]:
            per_dir += os.stat(m.repo("team/app", *tag.split("/"), f)).st_size
    out = subprocess.run(["du", "-sb", m.repo("team/app")], check=True, capture_output=True,
                         text=True).stdout
    total = int(out.split()[0])
    assert total == sum(sizes.values()) + sum(ci_repo.values()) + per_dir
    # the shared layer: one inode number, nlink = the places it appears
    shared = imgs["v1"]["layers"][0].split(":")[1]
    a = os.stat(os.path.join(bd.format("v1"), shared))
    b = os.stat(os.path.join(bd.format("mix"), shared))
    c = os.stat(os.path.join(bd.format("latest"), shared))
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3  # v1, latest (same image) and mix


def test_xattrs_match_aws_cli(seeded, mount):
    m = mount()
    emu = seeded["emu"]
    v1 = seeded["images"]["v1"]
    det = [d for d in describe(emu, "team/app") if d["imageDigest"] == v1["manifest"]][0]
    p = m.repo("team/app", "v1")
    x = {k: os.getxattr(p, k).decode() for k in os.listxattr(p)}
    assert x["user.ecr.digest"] == det["imageDigest"]
    assert x["user.ecr.uri"] == f"{ACCT}.dkr.ecr.{REGION}.amazonaws.com/team/app:v1"
    assert int(x["user.ecr.size"]) == det["imageSizeInBytes"]
    assert x["user.ecr.media_type"] == det["imageManifestMediaType"]
    assert x["user.ecr.mutability"] == "MUTABLE"
    pushed = det["imagePushedAt"]
    if not isinstance(pushed, str):
        pushed = datetime.fromtimestamp(pushed, timezone.utc).isoformat()
    want = datetime.fromisoformat(pushed).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert x["user.ecr.pushed_at"] == want
    assert sorted(x["user.ecr.tags"].split(",")) == sorted(det["imageTags"])
    assert int(x["user.ecr.image_bytes"]) == det["imageSizeInBytes"]
    # repository directory
    r = m.repo("team/app")
    assert os.getxattr(r, "user.ecr.mutability") == b"MUTABLE"
    assert os.getxattr(r, "user.ecr.uri").decode() == \
        f"{ACCT}.dkr.ecr.{REGION}.amazonaws.com/team/app"
    # getfattr -d shows them
    out = subprocess.run(["getfattr", "-d", p], capture_output=True, text=True, check=True).stdout
    assert "user.ecr.digest=" in out
    # a missing attribute
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.nope")
    assert e.value.errno == errno.ENODATA


def test_control_files(seeded, mount):
    m = mount()
    os.listdir(m.repo("team/app"))
    assert sorted(os.listdir(m.path(".ecrfs"))) == ["identity", "pending", "stats", "usage", "version"]
    with open(m.path(".ecrfs", "version")) as f:
        assert f.read().startswith("ecrfs ")
    with open(m.path(".ecrfs", "identity")) as f:
        ident = json.load(f)
    assert ident["account"] == ACCT
    assert ident["arn"] == f"arn:aws:iam::{ACCT}:user/dev"
    assert ident["credential_source"] == "environment"
    assert "emu-secret" not in json.dumps(ident)
    with open(m.path(".ecrfs", "stats")) as f:
        s1 = json.load(f)
    assert s1["ecr"]["calls"]["DescribeImages"] >= 1
    os.listdir(m.repo("dock"))
    with open(m.path(".ecrfs", "stats")) as f:  # fresh at every read (direct_io)
        s2 = json.load(f)
    assert s2["ecr"]["calls"]["DescribeImages"] > s1["ecr"]["calls"]["DescribeImages"]


def test_read_only_refuses_writes(seeded, mount):
    m = mount("ro")
    with pytest.raises(OSError) as e:
        os.mkdir(m.repo("team/app", "newtag"))
    assert e.value.errno == errno.EROFS
    with pytest.raises(OSError) as e:
        open(m.repo("team/app", "v1", "index.json"), "w")
    assert e.value.errno == errno.EROFS
    st = os.stat(m.repo("team/app", "v1", "index.json"))
    assert oct(st.st_mode & 0o777) == "0o444"


def test_immutable_repository_modes(seeded, mount):
    emu = seeded["emu"]
    import ecrclient
    ecrclient.create_repository(emu, "frozen", mutability="IMMUTABLE")
    ecrclient.push_layout(emu, seeded["layout"], "frozen", "f1", ref="v2")
    m = mount()
    # New tags may be pushed to an immutable repository, existing ones not.
    assert oct(os.stat(m.repo("frozen")).st_mode & 0o777) == "0o755"
    assert oct(os.stat(m.repo("frozen", "f1")).st_mode & 0o777) == "0o555"
    assert oct(os.stat(m.repo("frozen", "f1", "index.json")).st_mode & 0o777) == "0o444"
    assert os.getxattr(m.repo("frozen", "f1"), "user.ecr.mutability") == b"IMMUTABLE"


def test_referrer_tags_hidden_but_reachable(seeded, mount):
    """Tags signing tools make (cosign's sha256-<hex>.sig, the OCI referrers
    tag) are left out of listings unless -o show_referrers; by name they
    are ordinary tags."""
    emu, layout = seeded["emu"], seeded["layout"]
    v1 = seeded["images"]["v1"]["manifest"]
    sig = "sha256-" + v1[7:] + ".sig"
    ecrclient.push_layout(emu, layout, "signed/app", "v1", ref="v1")
    ecrclient.push_layout(emu, layout, "signed/app", sig, ref="v2")
    tags = {t for d in describe(emu, "signed/app") for t in d.get("imageTags", [])}
    assert tags == {"v1", sig}  # the AWS CLI sees both
    m = mount()
    assert sorted(os.listdir(m.repo("signed/app"))) == ["v1"]
    assert os.path.isdir(m.repo("signed/app", sig))
    assert os.path.exists(m.repo("signed/app", sig, "index.json"))
    shown = mount(opts="show_referrers", name="shown")
    assert sorted(os.listdir(shown.repo("signed/app"))) == sorted(["v1", sig])
