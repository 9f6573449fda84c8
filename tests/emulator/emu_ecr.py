"""ECR operations on repositories and images (JSON 1.1 bodies in, dicts out).

Layer uploads are in emu_upload.py. Every method takes (ctx, params) where
ctx has account (the target registry), region, endpoint and the identity.
"""
import base64
import hashlib
import json
import re
import threading
import time

from emu_artifacts import archived_error, detail_fields, image_status
from emu_registry import RegistryError
from emu_settings import check_encryption, check_mutability, tag_immutable
from emu_state import EcrError, Repo

REPO_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
REGISTRY_RE = re.compile(r"[0-9]{12}")

DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = {DOCKER_V1, DOCKER_V1_SIGNED, DOCKER_V2, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX}
INDEX_TYPES = {DOCKER_LIST, OCI_INDEX}
MANIFEST_MAX = 4 * 1024 * 1024


def invalid(field, constraint):
    return EcrError("InvalidParameterException",
                    f"Invalid parameter at '{field}' failed to satisfy constraint: '{constraint}'")


def check_repo_name(name):
    if not isinstance(name, str) or not 2 <= len(name) <= 256 or not REPO_RE.fullmatch(name):
        raise invalid("repositoryName", f"must satisfy regular expression '{REPO_RE.pattern}'")


def check_tag(tag):
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise invalid("imageTag", f"must satisfy regular expression '{TAG_RE.pattern}'")


def check_registry_id(rid):
    if rid is not None and (not isinstance(rid, str) or not REGISTRY_RE.fullmatch(rid)):
        raise invalid("registryId", "must satisfy regular expression '[0-9]{12}'")


def in_repo(r):
    """How ECR's messages name a repository."""
    return f"repository with name '{r.name}' in the registry with id '{r.account}'"


def repo_not_found(name, account):
    return EcrError("RepositoryNotFoundException",
                    f"The repository with name '{name}' does not exist in the "
                    f"registry with id '{account}'")


def with_next(out, nxt):
    """A page's reply: out, with nextToken when more pages follow."""
    if nxt:
        out["nextToken"] = nxt
    return out


def status_filter(p):
    """filter.imageStatus of a listing: ACTIVE when absent, as ECR (archived
    images are listed only when asked for)."""
    want = (p.get("filter") or {}).get("imageStatus", "ACTIVE")
    if want not in ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY"):
        raise invalid("filter.imageStatus", "Member must satisfy enum value set: "
                      "[ACTIVE, ARCHIVED, ACTIVATING, ANY]")
    return lambda im: want == "ANY" or image_status(im) == want


def image_id_str(iid):
    d, t = iid.get("imageDigest"), iid.get("imageTag")
    return "{imageDigest:'%s', imageTag:'%s'}" % (d or "null", "null" if t is None else t)


class Paginator:
    """Key-based pages: the token is the last key served, so inserts and
    deletes between pages neither repeat nor skip what stays."""

    def __init__(self, cfg):
        self.cfg = cfg

    def page(self, items, params, key):
        mr = params.get("maxResults")
        if mr is not None:
            if not isinstance(mr, int) or mr < 1:
                raise invalid("maxResults", "must be greater than or equal to 1")
            if mr > 1000:
                raise invalid("maxResults", "must be less than or equal to 1000")
        size = mr or 100
        tiny = self.cfg.get("tiny_pages") or 0
        if tiny > 0:
            size = min(size, tiny)
        items = sorted(items, key=key)
        tok = params.get("nextToken")
        if tok:
            try:
                after = json.loads(base64.urlsafe_b64decode(tok.encode()).decode())["k"]
            except (ValueError, KeyError, TypeError):
                raise invalid("nextToken", "Invalid NextToken")
            items = [i for i in items if key(i) > after]
        out = items[:size]
        nxt = None
        if len(items) > size:
            nxt = base64.urlsafe_b64encode(json.dumps({"k": key(out[-1])}).encode()).decode()
        return out, nxt


def blob_refs(doc, media_type):
    """(blob digests, child manifest digests, artifact media type) of a manifest."""
    if media_type in INDEX_TYPES:
        return [], [m["digest"] for m in doc.get("manifests", [])], None
    if media_type in (DOCKER_V1, DOCKER_V1_SIGNED):
        return [l["blobSum"] for l in doc.get("fsLayers", [])], [], None
    blobs = []
    cfg = doc.get("config") or {}
    if cfg.get("digest"):
        blobs.append(cfg["digest"])
    for l in doc.get("layers", []):
        mt = l.get("mediaType", "")
        if "foreign" in mt or "nondistributable" in mt:
            continue
        blobs.append(l["digest"])
    return blobs, [], cfg.get("mediaType")


class Ecr:
    def __init__(self, state, registry, cfg):
        self.state = state
        self.registry = registry
        self.cfg = cfg
        self.pages = Paginator(cfg)
        # One PutImage at a time per (repository, tag or digest), so the tag
        # checks and registry writes of two pushes of one tag cannot
        # interleave. The dict is guarded by state.lock.
        self.put_locks = {}
        self.artifacts = None  # emu_artifacts.Artifacts, set by the app

    # -- helpers -------------------------------------------------------------
    def repo(self, ctx, name, must=True):
        check_repo_name(name)
        r = self.state.repos.get((ctx["account"], ctx["region"], name))
        if r is None and must:
            raise repo_not_found(name, ctx["account"])
        return r

    def rname(self, r):
        return self.registry.name(r.account, r.region, r.name)

    @staticmethod
    def repo_json(r):
        out = {
            "repositoryArn": f"arn:aws:ecr:{r.region}:{r.account}:repository/{r.name}",
            "registryId": r.account, "repositoryName": r.name,
            "repositoryUri": f"{r.account}.dkr.ecr.{r.region}.amazonaws.com/{r.name}",
            "createdAt": r.created, "imageTagMutability": r.mutability,
            "imageScanningConfiguration": {"scanOnPush": r.scan},
            "encryptionConfiguration": r.settings.get("encryption", {"encryptionType": "AES256"}),
        }
        if r.settings.get("mutabilityFilters"):
            out["imageTagMutabilityExclusionFilters"] = r.settings["mutabilityFilters"]
        return out

    def image_detail(self, r, digest, tag_index=None):
        im = r.images[digest]
        d = {"registryId": r.account, "repositoryName": r.name, "imageDigest": digest,
             "imageSizeInBytes": im["size"], "imagePushedAt": im["pushedAt"],
             "imageManifestMediaType": im["mediaType"]}
        tags = tag_index.get(digest) if tag_index is not None else r.tags_of(digest)
        if tags:
            d["imageTags"] = tags
        if im.get("artifactMediaType"):
            d["artifactMediaType"] = im["artifactMediaType"]
        d.update(detail_fields(im))
        return d

    def resolve(self, r, iid):
        """Image digest for an imageId, or (None, failure code, reason)."""
        dig, tag = iid.get("imageDigest"), iid.get("imageTag")
        if not dig and not tag:
            return None, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null"
        if dig and not DIGEST_RE.fullmatch(dig):
            return None, "InvalidImageDigest", "Invalid request parameters: image digest should satisfy the regex 'sha256:[a-f0-9]{64}'"
        if tag is not None and not TAG_RE.fullmatch(tag):
            return None, "InvalidImageTag", "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}'"
        if tag:
            td = r.tags.get(tag)
            if td is None:
                return None, "ImageNotFound", "Requested image not found"
            if dig and dig != td:
                return None, "ImageTagDoesNotMatchDigest", "Invalid request parameters: given tag does not map to the given digest"
            return td, None, None
        if dig not in r.images:
            return None, "ImageNotFound", "Requested image not found"
        return dig, None, None

    @staticmethod
    def check_ids(ids, limit=100):
        if not isinstance(ids, list) or not ids:
            raise invalid("imageIds", "Member must have length greater than or equal to 1")
        if len(ids) > limit:
            raise invalid("imageIds", f"Member must have length less than or equal to {limit}")

    # -- registry and repositories -------------------------------------------
    def DescribeRegistry(self, ctx, p):
        return {"registryId": ctx["account"], "replicationConfiguration": {"rules": []}}

    def DescribeRepositories(self, ctx, p):
        names = p.get("repositoryNames")
        with self.state.lock:
            if names:
                if p.get("nextToken") or p.get("maxResults"):
                    raise invalid("maxResults", "Cannot specify maxResults or nextToken "
                                  "together with repositoryNames")
                return {"repositories": [self.repo_json(self.repo(ctx, n)) for n in names]}
            mine = [r for (a, g, _), r in self.state.repos.items()
                    if a == ctx["account"] and g == ctx["region"]]
            page, nxt = self.pages.page(mine, p, key=lambda r: r.name)
            out = {"repositories": [self.repo_json(r) for r in page]}
        return with_next(out, nxt)

    def CreateRepository(self, ctx, p):
        name = p.get("repositoryName")
        mut, filters = check_mutability(p.get("imageTagMutability", "MUTABLE"),
                                        p.get("imageTagMutabilityExclusionFilters"))
        enc = check_encryption(p.get("encryptionConfiguration"), ctx["account"], ctx["region"])
        scan = bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush", False))
        with self.state.lock:
            if self.repo(ctx, name, must=False) is not None:
                raise EcrError("RepositoryAlreadyExistsException",
                               f"The repository with name '{name}' already exists in the "
                               f"registry with id '{ctx['account']}'")
            r = Repo(ctx["account"], ctx["region"], name, mut, scan)
            r.settings["encryption"] = enc
            if filters:
                r.settings["mutabilityFilters"] = filters
            self.state.repos[(r.account, r.region, name)] = r
            self.state.changed()
            return {"repository": self.repo_json(r)}

    def DeleteRepository(self, ctx, p):
        name = p.get("repositoryName")
        with self.state.lock:
            r = self.repo(ctx, name)
            if r.images and not p.get("force"):
                raise EcrError("RepositoryNotEmptyException",
                               f"The repository with name '{name}' in registry with id "
                               f"'{ctx['account']}' cannot be deleted because it still "
                               f"contains images")
            del self.state.repos[(r.account, r.region, name)]
            self.state.changed()
            doomed = list(r.images)
        for d in doomed:
            self._registry_delete(r, d)
        return {"repository": self.repo_json(r)}

    # -- images --------------------------------------------------------------
    def ListImages(self, ctx, p):
        status = (p.get("filter") or {}).get("tagStatus", "ANY")
        shown = status_filter(p)
        with self.state.lock:
            r = self.repo(ctx, p.get("repositoryName"))
            rows = []
            tix = r.tag_index()
            for d, im in r.images.items():
                if not shown(im):
                    continue
                tags = tix.get(d)
                if tags and status in ("ANY", "TAGGED"):
                    rows += [(im["pushedAt"], d, t) for t in tags]
                if not tags and status in ("ANY", "UNTAGGED"):
                    rows.append((im["pushedAt"], d, ""))
            page, nxt = self.pages.page(rows, p, key=lambda x: "%020.6f/%s/%s" % x)
        ids = []
        for _, d, t in page:
            ids.append({"imageDigest": d, "imageTag": t} if t else {"imageDigest": d})
        out = {"imageIds": ids}
        return with_next(out, nxt)

    def DescribeImages(self, ctx, p):
        status = (p.get("filter") or {}).get("tagStatus", "ANY")
        with self.state.lock:
            r = self.repo(ctx, p.get("repositoryName"))
            ids = p.get("imageIds")
            if ids:
                if p.get("nextToken") or p.get("maxResults"):
                    raise invalid("maxResults", "Cannot specify maxResults or nextToken "
                                  "together with imageIds")
                self.check_ids(ids)
                out, seen = [], set()
                for iid in ids:
                    d, code, _ = self.resolve(r, iid)
                    if d is None:
                        if code in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                            raise EcrError("ImageNotFoundException",
                                           f"The image with imageId {image_id_str(iid)} does "
                                           f"not exist within the {in_repo(r)}")
                        raise invalid("imageIds", code)
                    if d not in seen:
                        seen.add(d)
                        out.append(self.image_detail(r, d))
                return {"imageDetails": out}
            tix = r.tag_index()
            shown = status_filter(p)
            ds = [d for d in r.images if shown(r.images[d]) and
                  (status == "ANY" or (status == "TAGGED") == bool(tix.get(d)))]
            page, nxt = self.pages.page(
                ds, p, key=lambda d: "%020.6f/%s" % (r.images[d]["pushedAt"], d))
            out = {"imageDetails": [self.image_detail(r, d, tix) for d in page]}
        return with_next(out, nxt)

    def BatchGetImage(self, ctx, p):
        accepted = p.get("acceptedMediaTypes")
        with self.state.lock:
            r = self.repo(ctx, p.get("repositoryName"))
            ids = p.get("imageIds")
            self.check_ids(ids)
            found, failures = [], []
            for iid in ids:
                d, code, reason = self.resolve(r, iid)
                if d is None:
                    failures.append({"imageId": iid, "failureCode": code, "failureReason": reason})
                    continue
                mt = r.images[d]["mediaType"]
                if image_status(r.images[d]) != "ACTIVE":
                    # Choice (ECR documents only "a 404" for pulls): a failure
                    # of the documented code ImageInaccessible.
                    failures.append({"imageId": iid, "failureCode": "ImageInaccessible",
                                     "failureReason": archived_error(r, d).message})
                    continue
                if accepted and mt not in accepted:
                    # ECR only converts schema2 to schema1; we convert nothing.
                    failures.append({"imageId": iid, "failureCode": "ImageNotFound",
                                     "failureReason": "Requested image not found"})
                    continue
                out_id = {"imageDigest": d}
                if iid.get("imageTag"):
                    out_id["imageTag"] = iid["imageTag"]
                found.append((out_id, d, mt))
            # ECR counts a BatchGetImage as a pull (lifecycle sinceImagePulled).
            if found and not self.artifacts.pull_time_excluded(ctx):
                now = round(time.time(), 3)
                for _, d, _ in found:
                    r.images[d]["lastRecordedPullTime"] = now
                self.state.changed()
        images = []
        for out_id, d, mt in found:
            images.append({"registryId": r.account, "repositoryName": r.name, "imageId": out_id,
                           "imageManifest": self.state.load_manifest(d).decode("utf-8"),
                           "imageManifestMediaType": mt})
        return {"images": images, "failures": failures}

    def PutImage(self, ctx, p):
        text = p.get("imageManifest")
        if not isinstance(text, str) or not text:
            raise invalid("imageManifest", "Member must have length greater than or equal to 1")
        data = text.encode("utf-8")
        if len(data) > MANIFEST_MAX:
            raise invalid("imageManifest", "Member must have length less than or equal to 4194304")
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            raise invalid("ImageManifest", "Invalid JSON syntax")
        mt_param, mt_doc = p.get("imageManifestMediaType"), doc.get("mediaType")
        if mt_param and mt_doc and mt_param != mt_doc:
            raise invalid("imageManifestMediaType",
                          f"Manifest media type '{mt_doc}' does not match the "
                          f"imageManifestMediaType '{mt_param}'")
        mt = mt_param or mt_doc
        if not mt:
            mt = DOCKER_V1 if doc.get("schemaVersion") == 1 else (
                OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
        if mt not in MANIFEST_TYPES:
            raise EcrError("UnsupportedImageTypeException",
                           f"Manifest media type '{mt}' is not supported")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if p.get("imageDigest") and p["imageDigest"] != digest:
            raise EcrError("ImageDigestDoesNotMatchException",
                           f"The specified image digest '{p['imageDigest']}' does not match "
                           f"the digest that Amazon ECR calculated for the image '{digest}'.")
        tag = p.get("imageTag")
        if tag is not None:
            check_tag(tag)
        try:
            blobs, children, artifact = blob_refs(doc, mt)
        except (KeyError, TypeError, AttributeError):
            raise invalid("ImageManifest", "Invalid JSON syntax")

        with self.state.lock:
            r = self.repo(ctx, p.get("repositoryName"))
            key = (r.account, r.region, r.name, tag or digest)
            lock = self.put_locks.setdefault(key, threading.Lock())
        with lock:
            return self._put_image(r, p, text, data, doc, mt, digest, tag, blobs, children,
                                   artifact)

    def _put_image(self, r, p, text, data, doc, mt, digest, tag, blobs, children, artifact):
        with self.state.lock:
            if self.state.repos.get((r.account, r.region, r.name)) is not r:
                raise repo_not_found(r.name, r.account)
            missing = ", ".join(b for b in blobs if b not in r.blobs)
            if missing:
                raise EcrError("LayersNotFoundException",
                               f"Layers with digests '[{missing}]' required for pushing image "
                               f"into {in_repo(r)} do not exist")
            absent = ", ".join(c for c in children if c not in r.images)
            if absent:
                raise EcrError("ReferencedImagesNotFoundException",
                               f"Manifest references to images '[{absent}]' in {in_repo(r)} "
                               f"could not be found")
            old = r.tags.get(tag) if tag else None
            exists = digest in r.images
            if exists and image_status(r.images[digest]) != "ACTIVE":
                # ECR: pushing an archived image again restores it.
                r.images[digest].update(imageStatus="ACTIVE",
                                        lastActivatedAt=round(time.time(), 3))
                self.state.changed()
            elif exists and (tag is None or old == digest):
                what = f"Image with digest '{digest}'" + (f" and tag '{tag}'" if tag else "")
                raise EcrError("ImageAlreadyExistsException",
                               f"{what} already exists in the repository with name "
                               f"'{r.name}' in registry with id '{r.account}'")
            if old and old != digest and tag_immutable(
                    r.mutability, r.settings.get("mutabilityFilters"), tag):
                raise EcrError("ImageTagAlreadyExistsException",
                               f"The image tag '{tag}' already exists in the '{r.name}' "
                               f"repository and cannot be overwritten because the "
                               + ("repository is immutable." if r.mutability == "IMMUTABLE"
                                  else "tag is immutable."))
            if mt in INDEX_TYPES:
                size = max([r.images[c]["size"] for c in children] or [0])
            else:
                # imageSizeInBytes: the layers as stored (compressed), as ECR.
                layers = set(blobs) if mt in (DOCKER_V1, DOCKER_V1_SIGNED) else \
                    {l.get("digest") for l in doc.get("layers", [])}
                size = sum(r.blobs[b]["size"] for b in layers if b in r.blobs)
                for l in doc.get("layers", []):
                    if l.get("digest") in r.blobs and l.get("mediaType"):
                        r.blobs[l["digest"]]["mediaType"] = l["mediaType"]
                cfgd = (doc.get("config") or {})
                if cfgd.get("digest") in r.blobs and cfgd.get("mediaType"):
                    r.blobs[cfgd["digest"]]["mediaType"] = cfgd["mediaType"]
            rname = self.rname(r)
        # The registry is written outside the state lock: a slow PUT must
        # not stall every other request.
        self.state.save_manifest(digest, data)
        try:
            if mt not in (DOCKER_V1, DOCKER_V1_SIGNED):
                # A PUT by tag also stores the manifest under its digest.
                self.registry.put_manifest(rname, tag or digest, data, mt)
        except RegistryError as e:
            raise EcrError("ServerException", f"backing registry refused the manifest: {e}", 500)
        with self.state.lock:
            if not exists:
                r.images[digest] = {"mediaType": mt, "size": size, "pushedAt": round(time.time(), 3),
                                    "artifactMediaType": artifact, "children": children,
                                    "blobs": blobs, "bytes": len(data)}
                subject = (doc.get("subject") or {}).get("digest")
                if subject:
                    # A referrer: its OCI artifactType, else its config's type.
                    r.images[digest].update(
                        subject=subject, artifactType=doc.get("artifactType") or artifact,
                        annotations=doc.get("annotations") or {})
            if tag:
                r.tags[tag] = digest
            self.state.changed()
        img_id = {"imageDigest": digest}
        if tag:
            img_id["imageTag"] = tag
        return {"image": {"registryId": r.account, "repositoryName": r.name, "imageId": img_id,
                          "imageManifest": text, "imageManifestMediaType": mt}}

    def BatchDeleteImage(self, ctx, p):
        deleted, failures, gone, retag = [], [], [], set()
        with self.state.lock:
            r = self.repo(ctx, p.get("repositoryName"))
            ids = p.get("imageIds")
            self.check_ids(ids)
            for iid in ids:
                d, code, reason = self.resolve(r, iid)
                if d is None:
                    failures.append({"imageId": iid, "failureCode": code, "failureReason": reason})
                    continue
                tag = iid.get("imageTag")
                parents = r.parents_of(d)
                if tag:
                    del r.tags[tag]
                    deleted.append({"imageDigest": d, "imageTag": tag})
                    if not r.tags_of(d) and not parents:
                        del r.images[d]
                        gone.append(d)
                    else:
                        retag.add(d)
                    continue
                if parents:
                    failures.append({"imageId": iid, "failureCode": "ImageReferencedByManifestList",
                                     "failureReason": "Requested image referenced by manifest "
                                     f"list: [{', '.join(parents)}]"})
                    continue
                tags = r.tags_of(d)
                for t in tags:
                    del r.tags[t]
                    deleted.append({"imageDigest": d, "imageTag": t})
                if not tags:
                    deleted.append({"imageDigest": d})
                del r.images[d]
                gone.append(d)
            self.state.changed()
            retag = {d: r.tags_of(d) for d in retag if d in r.images}
        for d in gone:
            self._registry_delete(r, d)
        for d, tags in retag.items():
            self._registry_retag(r, d, tags)
        return {"imageIds": deleted, "failures": failures}

    def _registry_delete(self, r, digest):
        try:
            self.registry.delete_manifest(self.rname(r), digest)
        except (RegistryError, OSError):
            pass  # ECR's answer does not depend on the backing copy

    def _registry_retag(self, r, digest, tags):
        # distribution cannot untag: delete the manifest, put it back with
        # the tags that remain.
        try:
            data = self.state.load_manifest(digest)
            mt = r.images[digest]["mediaType"]
            self.registry.delete_manifest(self.rname(r), digest)
            self.registry.put_manifest(self.rname(r), digest, data, mt)
            for t in tags:
                self.registry.put_manifest(self.rname(r), t, data, mt)
        except (RegistryError, OSError, KeyError):
            pass

    # -- archive hooks (emu_artifacts.py holds the operations) -----------------
    def download_url_guard(self, inner):
        """GetDownloadUrlForLayer refusing layers only archived images use."""
        def guarded(ctx, p):
            with self.state.lock:
                r = self.repo(ctx, p.get("repositoryName"))
                d = p.get("layerDigest")
                if isinstance(d, str) and self.artifacts.blob_archived(r, d):
                    raise archived_error(r, d)
            return inner(ctx, p)
        return guarded

    def archive_config(self, args):
        """Control call: {"restore_seconds": N}: how long ACTIVATING lasts."""
        self.cfg["restore_seconds"] = float(args.get("restore_seconds", 0))
        return {"restore_seconds": self.cfg["restore_seconds"]}
