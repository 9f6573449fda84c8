"""Per-image features of today's ECR: referrers (ListImageReferrers), the
archive storage class (UpdateImageStorageClass), pull-time update
exclusions, scan findings (DescribeImageScanFindings, seeded by tests)."""
import re
import time

from emu_state import EcrError

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
ROLE_ARN_RE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]{1,512}")
STATUSES = ("ACTIVE", "ARCHIVED", "ACTIVATING")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")


def invalid(field, constraint):
    return EcrError("InvalidParameterException",
                    f"Invalid parameter at '{field}' failed to satisfy constraint: '{constraint}'")


def image_status(im, now=None):
    """ACTIVE, ARCHIVED or ACTIVATING; a restore whose time has come
    becomes ACTIVE here (lazily, no timer thread)."""
    st = im.get("imageStatus", "ACTIVE")
    if st == "ACTIVATING" and (now or time.time()) >= im.get("activateAt", 0):
        im["imageStatus"] = st = "ACTIVE"
        im["lastActivatedAt"] = round(im.get("activateAt", time.time()), 3)
    return st


def archived_error(r, digest):
    return EcrError("ImageArchivedException",
                    f"The image with digest '{digest}' in the repository with name '{r.name}' "
                    f"in the registry with id '{r.account}' is archived. Restore it with "
                    f"UpdateImageStorageClass (targetStorageClass STANDARD) before pulling it.")


def caller_principal(ident):
    """The IAM principal a pull-time exclusion names: the role of an
    assumed-role session, else the user."""
    return ident.get("role_arn") or ident.get("arn")


def detail_fields(im, now=None):
    """DescribeImages fields of today's ECR for one image record."""
    d = {"imageStatus": image_status(im, now)}
    for k in ("lastRecordedPullTime", "lastArchivedAt", "lastActivatedAt"):
        if im.get(k) is not None:
            d[k] = im[k]
    if im.get("subject"):
        d["subjectManifestDigest"] = im["subject"]
    scan = im.get("scan")
    if scan:
        d["imageScanStatus"] = {"status": scan["status"], "description": scan["description"]}
        if scan["status"] == "COMPLETE":
            d["imageScanFindingsSummary"] = {
                "imageScanCompletedAt": scan["completedAt"],
                "vulnerabilitySourceUpdatedAt": scan["completedAt"],
                "findingSeverityCounts": severity_counts(scan["findings"])}
    return d


def severity_counts(findings):
    out = {}
    for f in findings:
        s = f.get("severity", "UNDEFINED")
        out[s] = out.get(s, 0) + 1
    return out


class Artifacts:
    def __init__(self, ecr):
        self.ecr = ecr
        self.state = ecr.state
        self.cfg = ecr.cfg

    # -- referrers ---------------------------------------------------------------
    def ListImageReferrers(self, ctx, p):
        subj = (p.get("subjectId") or {}).get("imageDigest")
        if not isinstance(subj, str) or not DIGEST_RE.fullmatch(subj):
            raise invalid("subjectId.imageDigest",
                          "must satisfy regular expression 'sha256:[a-f0-9]{64}'")
        mr = p.get("maxResults")
        if mr is not None and (not isinstance(mr, int) or not 1 <= mr <= 50):
            raise invalid("maxResults", "Member must have value between 1 and 50")
        flt = p.get("filter") or {}
        types = flt.get("artifactTypes")
        want = flt.get("artifactStatus", "ACTIVE")
        if want not in STATUSES + ("ANY",):
            raise invalid("filter.artifactStatus",
                          "Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]")
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            rows = []
            for d, im in r.images.items():
                if im.get("subject") != subj:
                    continue
                st = image_status(im)
                if want != "ANY" and st != want:
                    continue
                if types and im.get("artifactType") not in types:
                    continue
                row = {"digest": d, "mediaType": im["mediaType"], "size": im.get("bytes", 0),
                       "artifactStatus": st}
                if im.get("artifactType"):
                    row["artifactType"] = im["artifactType"]
                if im.get("annotations"):
                    row["annotations"] = im["annotations"]
                rows.append(row)
            q = dict(p, maxResults=mr or 50)
            page, nxt = self.ecr.pages.page(rows, q, key=lambda x: x["digest"])
        out = {"referrers": page}
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- archive -----------------------------------------------------------------
    def UpdateImageStorageClass(self, ctx, p):
        target = p.get("targetStorageClass")
        if target not in ("STANDARD", "ARCHIVE"):
            raise invalid("targetStorageClass", "Member must satisfy enum value set: "
                          "[STANDARD, ARCHIVE]")
        iid = p.get("imageId")
        if not isinstance(iid, dict):
            raise invalid("imageId", "Member must not be null")
        now = time.time()
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            d, code, reason = self.ecr.resolve(r, iid)
            if d is None:
                if code in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                    raise EcrError("ImageNotFoundException", reason)
                raise invalid("imageId", reason)
            im = r.images[d]
            st = image_status(im, now)
            if target == "ARCHIVE" and st == "ACTIVE":
                im["imageStatus"] = "ARCHIVED"
                im["lastArchivedAt"] = round(now, 3)
            elif target == "ARCHIVE" and st == "ACTIVATING":
                raise EcrError("ImageStorageClassUpdateNotSupportedException",
                               "The image is being restored and cannot be archived now")
            elif target == "STANDARD" and st == "ARCHIVED":
                delay = float(self.cfg.get("restore_seconds") or 0)
                im["imageStatus"] = "ACTIVATING"
                im["activateAt"] = now + delay
                image_status(im, now)
            self.state.changed()
            out_id = {"imageDigest": d}
            if iid.get("imageTag"):
                out_id["imageTag"] = iid["imageTag"]
            return {"registryId": r.account, "repositoryName": r.name, "imageId": out_id,
                    "imageStatus": image_status(im, now)}

    def blob_archived(self, r, digest):
        """True when every image of r that uses this blob is not ACTIVE
        (a layer shared with an active image stays downloadable)."""
        users = [im for im in r.images.values() if digest in im.get("blobs", ())]
        return bool(users) and all(image_status(im) != "ACTIVE" for im in users)

    # -- pull-time update exclusions ---------------------------------------------
    def _exclusions(self, account):
        return self.state.settings.setdefault("pullTimeExclusions", {}).setdefault(account, {})

    def pull_time_excluded(self, ctx):
        with self.state.lock:
            return caller_principal(ctx["ident"]) in self._exclusions(ctx["account"])

    def _principal(self, p):
        arn = p.get("principalArn")
        if not isinstance(arn, str) or not ROLE_ARN_RE.fullmatch(arn):
            raise invalid("principalArn", "must be the ARN of an IAM role or user")
        return arn

    def RegisterPullTimeUpdateExclusion(self, ctx, p):
        arn = self._principal(p)
        with self.state.lock:
            ex = self._exclusions(ctx["account"])
            if arn in ex:
                raise EcrError("ExclusionAlreadyExistsException",
                               f"The principal '{arn}' is already excluded from pull time updates")
            ex[arn] = round(time.time(), 3)
            self.state.changed()
            return {"principalArn": arn, "createdAt": ex[arn]}

    def DeregisterPullTimeUpdateExclusion(self, ctx, p):
        arn = self._principal(p)
        with self.state.lock:
            ex = self._exclusions(ctx["account"])
            if arn not in ex:
                raise EcrError("ExclusionNotFoundException",
                               f"The principal '{arn}' is not excluded from pull time updates")
            del ex[arn]
            self.state.changed()
        return {"principalArn": arn}

    def ListPullTimeUpdateExclusions(self, ctx, p):
        with self.state.lock:
            arns = list(self._exclusions(ctx["account"]))
        page, nxt = self.ecr.pages.page(arns, p, key=lambda a: a)
        out = {"pullTimeUpdateExclusions": page}
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- scan findings -------------------------------------------------------------
    def DescribeImageScanFindings(self, ctx, p):
        iid = p.get("imageId")
        if not isinstance(iid, dict):
            raise invalid("imageId", "Member must not be null")
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            d, code, reason = self.ecr.resolve(r, iid)
            if d is None:
                raise EcrError("ImageNotFoundException", reason) \
                    if code in ("ImageNotFound", "ImageTagDoesNotMatchDigest") \
                    else invalid("imageId", reason)
            scan = r.images[d].get("scan")
            if scan is None:
                raise EcrError("ScanNotFoundException",
                               f"Image scan does not exist for the image with '{d}' in the "
                               f"repository with name '{r.name}' in the registry with id "
                               f"'{r.account}'")
            rows = list(enumerate(scan["findings"]))
            page, nxt = self.ecr.pages.page(rows, p, key=lambda x: "%08d" % x[0])
        out_id = {"imageDigest": d}
        if iid.get("imageTag"):
            out_id["imageTag"] = iid["imageTag"]
        out = {"registryId": r.account, "repositoryName": r.name, "imageId": out_id,
               "imageScanStatus": {"status": scan["status"], "description": scan["description"]}}
        if scan["status"] == "COMPLETE":
            f = {"imageScanCompletedAt": scan["completedAt"],
                 "vulnerabilitySourceUpdatedAt": scan["completedAt"],
                 "findingSeverityCounts": severity_counts(scan["findings"])}
            f["enhancedFindings" if scan["enhanced"] else "findings"] = [x for _, x in page]
            out["imageScanFindings"] = f
        if nxt:
            out["nextToken"] = nxt
        return out

    def seed_scan(self, args):
        """Control call: {account?, region?, repo, digest|tag, findings,
        enhanced?, status?} stores what DescribeImageScanFindings answers."""
        key = (args.get("account", "111111111111"), args.get("region", "us-east-1"), args["repo"])
        status = args.get("status", "COMPLETE")
        with self.state.lock:
            r = self.state.repos[key]
            d = args.get("digest") or r.tags[args["tag"]]
            r.images[d]["scan"] = {
                "status": status, "enhanced": bool(args.get("enhanced")),
                "description": args.get("description", "The scan was completed successfully."
                                        if status == "COMPLETE" else status),
                "completedAt": round(time.time(), 3), "findings": list(args.get("findings", []))}
            self.state.changed()
        return {"digest": d, "counts": severity_counts(args.get("findings", []))}

    def set_image_times(self, args):
        """Control call: {account?, region?, repo, digest|tag, pushedAt?,
        lastRecordedPullTime?, lastArchivedAt?} (epoch seconds, null clears)
        so tests can age images (lifecycle rules, find -atime)."""
        key = (args.get("account", "111111111111"), args.get("region", "us-east-1"), args["repo"])
        with self.state.lock:
            r = self.state.repos[key]
            d = args.get("digest") or r.tags[args["tag"]]
            im = r.images[d]
            for k in ("pushedAt", "lastRecordedPullTime", "lastArchivedAt"):
                if k in args:
                    if args[k] is None and k != "pushedAt":
                        im.pop(k, None)
                    else:
                        im[k] = float(args[k])
            self.state.changed()
            return {"digest": d, "pushedAt": im["pushedAt"],
                    "lastRecordedPullTime": im.get("lastRecordedPullTime")}

    OPS = ("ListImageReferrers", "UpdateImageStorageClass", "RegisterPullTimeUpdateExclusion",
           "DeregisterPullTimeUpdateExclusion", "ListPullTimeUpdateExclusions",
           "DescribeImageScanFindings")
