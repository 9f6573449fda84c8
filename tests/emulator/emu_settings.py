"""Repository settings: tag mutability with exclusion filters, lifecycle
policy and its preview, repository policy, scanning configuration,
encryption. Methods take (ctx, params) like emu_ecr.Ecr's."""
import json
import re
import time

from emu_state import EcrError

MUTABILITY = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
FILTER_RE = re.compile(r"[0-9a-zA-Z._*-]{1,128}")
MAX_FILTERS = 5
ENCRYPTION = ("AES256", "KMS", "KMS_DSSE")
DAY = 86400.0


def invalid(field, constraint):
    return EcrError("InvalidParameterException",
                    f"Invalid parameter at '{field}' failed to satisfy constraint: '{constraint}'")


def wildcard_re(pattern):
    """ECR's WILDCARD filter: '*' matches any run of characters (also
    none), everything else literally, the whole tag."""
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")))


def wildcard_match(pattern, tag):
    return wildcard_re(pattern).fullmatch(tag) is not None


def check_mutability(mut, filters):
    """The (setting, filters) of a request, validated as ECR does."""
    if mut not in MUTABILITY:
        raise invalid("imageTagMutability",
                      "Member must satisfy enum value set: [" + ", ".join(MUTABILITY) + "]")
    filters = filters or []
    if not isinstance(filters, list):
        raise invalid("imageTagMutabilityExclusionFilters", "Member must be a list")
    if len(filters) > MAX_FILTERS:
        raise invalid("imageTagMutabilityExclusionFilters",
                      f"Member must have length less than or equal to {MAX_FILTERS}")
    out = []
    for i, f in enumerate(filters):
        where = f"imageTagMutabilityExclusionFilters.{i + 1}"
        if not isinstance(f, dict) or f.get("filterType") != "WILDCARD":
            raise invalid(where + ".filterType", "Member must satisfy enum value set: [WILDCARD]")
        if not isinstance(f.get("filter"), str) or not FILTER_RE.fullmatch(f["filter"]):
            raise invalid(where + ".filter",
                          "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$")
        out.append({"filterType": "WILDCARD", "filter": f["filter"]})
    if mut.endswith("_WITH_EXCLUSION") and not out:
        raise invalid("imageTagMutabilityExclusionFilters",
                      f"Exclusion filters are required when imageTagMutability is {mut}")
    if not mut.endswith("_WITH_EXCLUSION") and out:
        raise invalid("imageTagMutabilityExclusionFilters",
                      f"Exclusion filters are not allowed when imageTagMutability is {mut}")
    return mut, out


def tag_immutable(mut, filters, tag):
    """True when the setting protects this tag from being moved."""
    if mut == "MUTABLE":
        return False
    if mut == "IMMUTABLE":
        return True
    hit = any(wildcard_match(f["filter"], tag) for f in filters or [])
    return not hit if mut == "IMMUTABLE_WITH_EXCLUSION" else hit


def check_encryption(enc, account, region):
    if enc is None:
        return {"encryptionType": "AES256"}
    t = enc.get("encryptionType") if isinstance(enc, dict) else None
    if t not in ENCRYPTION:
        raise invalid("encryptionConfiguration.encryptionType",
                      "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]")
    out = {"encryptionType": t}
    key = enc.get("kmsKey")
    if key and t == "AES256":
        raise invalid("encryptionConfiguration.kmsKey",
                      "kmsKey can only be specified with encryptionType KMS or KMS_DSSE")
    if t != "AES256":
        # ECR fills in the AWS managed key when none is given.
        out["kmsKey"] = key or f"arn:aws:kms:{region}:{account}:alias/aws/ecr"
    return out


# -- lifecycle policies -----------------------------------------------------------
def _lp_fail(why):
    return invalid("LifecyclePolicyText", f"Lifecycle policy validation failure: {why}")


def parse_lifecycle(text):
    """The rules of a lifecycle policy text, sorted by priority; raises
    InvalidParameterException with ECR-like messages."""
    if not isinstance(text, str) or not 100 <= len(text) <= 30720:
        raise invalid("lifecyclePolicyText", "Member must have length between 100 and 30720")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _lp_fail(f"Could not parse the policy JSON: {e}")
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list) or not rules:
        raise _lp_fail("object has missing required properties ([\"rules\"])")
    seen = set()
    for r in rules:
        if not isinstance(r, dict):
            raise _lp_fail("each rule must be an object")
        prio = r.get("rulePriority")
        if not isinstance(prio, int) or isinstance(prio, bool) or prio < 1:
            raise _lp_fail("rulePriority must be an integer greater than or equal to 1")
        if prio in seen:
            raise _lp_fail(f"The rulePriority {prio} is used by more than one rule")
        seen.add(prio)
        _check_selection(r.get("selection"), prio)
        act = r.get("action")
        if not isinstance(act, dict) or act.get("type") not in ("expire", "transition"):
            raise _lp_fail(f"rule {prio}: action.type must be one of [expire, transition]")
    rules = sorted(rules, key=lambda r: r["rulePriority"])
    for r in rules[:-1]:
        if r["selection"]["tagStatus"] == "any":
            raise _lp_fail("A rule with tagStatus 'any' must have the highest rulePriority")
    return rules


def _check_selection(s, prio):
    if not isinstance(s, dict):
        raise _lp_fail(f"rule {prio}: object has missing required properties ([\"selection\"])")
    ts = s.get("tagStatus")
    if ts not in ("tagged", "untagged", "any"):
        raise _lp_fail(f"rule {prio}: tagStatus must be one of [tagged, untagged, any]")
    lists = [k for k in ("tagPrefixList", "tagPatternList") if k in s]
    if ts == "tagged":
        if len(lists) != 1 or not isinstance(s[lists[0]], list) or not s[lists[0]]:
            raise _lp_fail(f"rule {prio}: tagStatus 'tagged' needs exactly one non-empty "
                           "tagPrefixList or tagPatternList")
    elif lists:
        raise _lp_fail(f"rule {prio}: {lists[0]} is only allowed with tagStatus 'tagged'")
    ct = s.get("countType")
    if ct not in ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"):
        raise _lp_fail(f"rule {prio}: countType must be one of [imageCountMoreThan, "
                       "sinceImagePushed, sinceImagePulled]")
    n = s.get("countNumber")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _lp_fail(f"rule {prio}: countNumber must be an integer greater than or equal to 1")
    if ct == "imageCountMoreThan" and "countUnit" in s:
        raise _lp_fail(f"rule {prio}: countUnit is not allowed with countType imageCountMoreThan")
    if ct != "imageCountMoreThan" and s.get("countUnit") != "days":
        raise _lp_fail(f"rule {prio}: countUnit 'days' is required with countType {ct}")


def _selects(sel, tags):
    ts = sel["tagStatus"]
    if ts == "any":
        return True
    if ts == "untagged":
        return not tags
    if not tags:
        return False
    # Several entries select images that have a tag matching each of them.
    if "tagPrefixList" in sel:
        return all(any(t.startswith(p) for t in tags) for p in sel["tagPrefixList"])
    return all(any(wildcard_match(p, t) for t in tags) for p in sel["tagPatternList"])


def evaluate_lifecycle(rules, images, now=None):
    """[(digest, rule)] of images the rules would expire. images: digest ->
    {"tags", "pushedAt", "lastRecordedPullTime"}. An image selected by a rule
    is never looked at by a rule of lower priority, as ECR does."""
    now = time.time() if now is None else now
    claimed, out = set(), []
    for r in rules:
        sel = r["selection"]
        cand = [d for d, im in images.items() if d not in claimed and _selects(sel, im["tags"])]
        claimed.update(cand)
        if r["action"]["type"] != "expire":
            continue
        n = sel["countNumber"]
        if sel["countType"] == "imageCountMoreThan":
            cand.sort(key=lambda d: (images[d]["pushedAt"], d), reverse=True)
            doomed = cand[n:]
        else:
            field = "pushedAt" if sel["countType"] == "sinceImagePushed" else "lastRecordedPullTime"
            limit = now - n * DAY
            doomed = [d for d in cand
                      if (images[d].get(field) or images[d]["pushedAt"]) < limit]
        out += [(d, r) for d in sorted(doomed, key=lambda d: images[d]["pushedAt"])]
    return out


def check_repo_policy(text):
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        doc = None
    st = doc.get("Statement") if isinstance(doc, dict) else None
    if not isinstance(st, (list, dict)) or not st:
        raise invalid("PolicyText", "Invalid repository policy provided")
    for s in st if isinstance(st, list) else [st]:
        if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny") \
                or "Action" not in s:
            raise invalid("PolicyText", "Invalid repository policy provided")


def _not_found(code, what, r):
    return EcrError(code, f"{what} does not exist for the repository with name "
                          f"'{r.name}' in the registry with id '{r.account}'")


class RepoSettings:
    """The settings operations; state lives in Repo.settings (persisted)."""

    def __init__(self, ecr):
        self.ecr = ecr
        self.state = ecr.state

    def _ids(self, r, **kv):
        out = {"registryId": r.account, "repositoryName": r.name}
        out.update(kv)
        return out

    def PutImageTagMutability(self, ctx, p):
        mut, filters = check_mutability(p.get("imageTagMutability"),
                                         p.get("imageTagMutabilityExclusionFilters"))
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            r.mutability = mut
            r.settings["mutabilityFilters"] = filters
            self.state.changed()
        out = self._ids(r, imageTagMutability=mut)
        if filters:
            out["imageTagMutabilityExclusionFilters"] = filters
        return out

    def PutImageScanningConfiguration(self, ctx, p):
        cfg = p.get("imageScanningConfiguration")
        if not isinstance(cfg, dict):
            raise invalid("imageScanningConfiguration", "Member must not be null")
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            r.scan = bool(cfg.get("scanOnPush", False))
            self.state.changed()
        return self._ids(r, imageScanningConfiguration={"scanOnPush": r.scan})

    # -- lifecycle policy ------------------------------------------------------
    def PutLifecyclePolicy(self, ctx, p):
        text = p.get("lifecyclePolicyText")
        parse_lifecycle(text)
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            r.settings["lifecyclePolicy"] = {"text": text, "lastEvaluatedAt": time.time()}
            self.state.changed()
        return self._ids(r, lifecyclePolicyText=text)

    def _lifecycle(self, ctx, p, delete=False):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            lp = r.settings.get("lifecyclePolicy")
            if lp is None:
                raise _not_found("LifecyclePolicyNotFoundException", "Lifecycle policy", r)
            if delete:
                del r.settings["lifecyclePolicy"]
                self.state.changed()
        return self._ids(r, lifecyclePolicyText=lp["text"], lastEvaluatedAt=lp["lastEvaluatedAt"])

    def GetLifecyclePolicy(self, ctx, p):
        return self._lifecycle(ctx, p)

    def DeleteLifecyclePolicy(self, ctx, p):
        return self._lifecycle(ctx, p, delete=True)

    def StartLifecyclePolicyPreview(self, ctx, p):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            text = p.get("lifecyclePolicyText")
            if text is None:
                lp = r.settings.get("lifecyclePolicy")
                if lp is None:
                    raise _not_found("LifecyclePolicyNotFoundException", "Lifecycle policy", r)
                text = lp["text"]
            rules = parse_lifecycle(text)
            tix = r.tag_index()
            images = {d: {"tags": tix.get(d, []), "pushedAt": im["pushedAt"],
                          "lastRecordedPullTime": im.get("lastRecordedPullTime")}
                      for d, im in r.images.items()}
            results = []
            for d, rule in evaluate_lifecycle(rules, images):
                row = {"imageDigest": d, "imagePushedAt": images[d]["pushedAt"],
                       "action": {"type": "EXPIRE"},
                       "appliedRulePriority": rule["rulePriority"]}
                if images[d]["tags"]:
                    row["imageTags"] = images[d]["tags"]
                results.append(row)
            r.settings["lifecyclePreview"] = {"text": text, "results": results}
            self.state.changed()
        # The preview is computed at once; Get answers COMPLETE.
        return self._ids(r, lifecyclePolicyText=text, status="IN_PROGRESS")

    def GetLifecyclePolicyPreview(self, ctx, p):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            pv = r.settings.get("lifecyclePreview")
            if pv is None:
                raise _not_found("LifecyclePolicyPreviewNotFoundException",
                                 "Lifecycle policy preview", r)
            rows = pv["results"]
            ids = p.get("imageIds")
            if ids:
                want = {i.get("imageDigest") for i in ids} | {
                    r.tags.get(i.get("imageTag")) for i in ids if i.get("imageTag")}
                rows = [x for x in rows if x["imageDigest"] in want]
            page, nxt = self.ecr.pages.page(
                list(enumerate(rows)), p, key=lambda x: "%08d" % x[0])
        out = self._ids(r, lifecyclePolicyText=pv["text"], status="COMPLETE",
                        previewResults=[x for _, x in page],
                        summary={"expiringImageTotalCount": len(pv["results"])})
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- repository policy -----------------------------------------------------
    def SetRepositoryPolicy(self, ctx, p):
        text = p.get("policyText")
        check_repo_policy(text)
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            r.settings["repositoryPolicy"] = text
            self.state.changed()
        return self._ids(r, policyText=text)

    def _policy(self, ctx, p, delete=False):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            text = r.settings.get("repositoryPolicy")
            if text is None:
                raise _not_found("RepositoryPolicyNotFoundException", "Repository policy", r)
            if delete:
                del r.settings["repositoryPolicy"]
                self.state.changed()
        return self._ids(r, policyText=text)

    def GetRepositoryPolicy(self, ctx, p):
        return self._policy(ctx, p)

    def DeleteRepositoryPolicy(self, ctx, p):
        return self._policy(ctx, p, delete=True)

    OPS = ("PutImageTagMutability", "PutImageScanningConfiguration", "PutLifecyclePolicy",
           "GetLifecyclePolicy", "DeleteLifecyclePolicy", "StartLifecyclePolicyPreview",
           "GetLifecyclePolicyPreview", "SetRepositoryPolicy", "GetRepositoryPolicy",
           "DeleteRepositoryPolicy")
