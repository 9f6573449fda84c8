"""Tag mutability with exclusion filters (CreateRepository,
PutImageTagMutability, DescribeRepositories, PutImage)."""
import pytest

from emu_settings import tag_immutable, wildcard_match
from test_rules import image

F = "imageTagMutabilityExclusionFilters"


def wild(*pats):
    return [{"filterType": "WILDCARD", "filter": p} for p in pats]


@pytest.mark.parametrize("pat,tag,hit", [
    ("latest", "latest", True), ("latest", "latest2", False), ("dev-*", "dev-1", True),
    ("dev-*", "dev-", True), ("dev-*", "xdev-1", False), ("*-rc", "1.0-rc", True),
    ("v*.*", "v1.2", True), ("v*.*", "v12", False), ("a.b", "aXb", False), ("*", "x", True)])
def test_wildcard(pat, tag, hit):
    assert wildcard_match(pat, tag) is hit


def test_tag_immutable_four_values():
    f = wild("latest", "dev-*")
    assert not tag_immutable("MUTABLE", [], "v1")
    assert tag_immutable("IMMUTABLE", [], "latest")
    assert tag_immutable("IMMUTABLE_WITH_EXCLUSION", f, "v1")
    assert not tag_immutable("IMMUTABLE_WITH_EXCLUSION", f, "dev-3")
    assert not tag_immutable("MUTABLE_WITH_EXCLUSION", f, "v1")
    assert tag_immutable("MUTABLE_WITH_EXCLUSION", f, "latest")


def put(client, repo, tag, layer):
    m = image(client, repo, layers=(layer,))
    return client.raw("PutImage", {"repositoryName": repo, "imageManifest": m.decode(),
                                   "imageTag": tag})


@pytest.mark.parametrize("mode,free,protected", [
    ("IMMUTABLE_WITH_EXCLUSION", "latest", "v1"),
    ("MUTABLE_WITH_EXCLUSION", "v1", "latest")])
def test_put_image_follows_exclusions(emu, client, repo, mode, free, protected):
    client.call("PutImageTagMutability", repositoryName=repo, imageTagMutability=mode,
                **{F: wild("latest")})
    for tag in (free, protected):
        assert put(client, repo, tag, b"one")[0] == 200
    assert put(client, repo, free, b"two")[0] == 200
    st, body = put(client, repo, protected, b"two")
    assert st == 400 and body["__type"] == "ImageTagAlreadyExistsException"
    # The same digest again under a protected tag is not a tag move.
    st, body = put(client, repo, protected, b"one")
    assert body["__type"] == "ImageAlreadyExistsException"
    # A new tag, protected or not, may always be created.
    assert put(client, repo, protected + "-new", b"two")[0] == 200
    r = emu.aws("describe-repositories", "--repository-names", repo)["repositories"][0]
    assert r["imageTagMutability"] == mode


def test_create_with_filters_and_describe(emu, client):
    out = client.call("CreateRepository", repositoryName="mut/create",
                      imageTagMutability="MUTABLE_WITH_EXCLUSION", **{F: wild("rel-*", "prod")})
    assert out["repository"][F] == wild("rel-*", "prod")
    r = client.call("DescribeRepositories", repositoryNames=["mut/create"])["repositories"][0]
    assert r["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION" and r[F] == wild("rel-*", "prod")
    # Back to plain MUTABLE (with the AWS CLI, which knows that form): filters gone.
    emu.aws("put-image-tag-mutability", "--repository-name", "mut/create",
            "--image-tag-mutability", "MUTABLE")
    r = client.call("DescribeRepositories", repositoryNames=["mut/create"])["repositories"][0]
    assert r["imageTagMutability"] == "MUTABLE" and F not in r


@pytest.mark.parametrize("mut,filters,where", [
    ("IMMUTABLE_WITH_EXCLUSION", [], F),
    ("IMMUTABLE", wild("x"), F),
    ("MUTABLE_WITH_EXCLUSION", wild("a", "b", "c", "d", "e", "f"), F),
    ("MUTABLE_WITH_EXCLUSION", wild("bad/char"), F + ".1.filter"),
    ("MUTABLE_WITH_EXCLUSION", [{"filterType": "REGEX", "filter": "x"}], F + ".1.filterType"),
    ("SOMETIMES", [], "imageTagMutability")])
def test_invalid_settings_refused(client, repo, mut, filters, where):
    body = {"repositoryName": repo, "imageTagMutability": mut}
    if filters:
        body[F] = filters
    for op, p in (("PutImageTagMutability", body),
                  ("CreateRepository", dict(body, repositoryName=repo + "-n"))):
        st, out = client.raw(op, p)
        assert st == 400 and out["__type"] == "InvalidParameterException", (op, out)
        assert f"'{where}'" in out["message"]


def test_five_filters_accepted(client, repo):
    out = client.call("PutImageTagMutability", repositoryName=repo,
                      imageTagMutability="IMMUTABLE_WITH_EXCLUSION", **{F: wild(*"abcde")})
    assert len(out[F]) == 5
