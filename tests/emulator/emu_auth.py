"""Identities: access keys, temporary sessions, cross-account grants, denies."""
import hashlib
import json
import os
import secrets
import threading
import time

from emu_sigv4 import AuthError

READ_ACTIONS = {
    "ecr:DescribeRegistry", "ecr:DescribeRepositories", "ecr:ListImages",
    "ecr:DescribeImages", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    # AWS's AmazonEC2ContainerRegistryReadOnly policy allows this one too.
    "ecr:BatchCheckLayerAvailability",
    "ecr:ListImageReferrers", "ecr:DescribeImageScanFindings", "ecr:GetLifecyclePolicy",
    "ecr:GetLifecyclePolicyPreview", "ecr:GetRepositoryPolicy",
    "ecr:ListPullTimeUpdateExclusions",
}
WRITE_ACTIONS = {
    "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
    "ecr:PutImage", "ecr:CreateRepository", "ecr:BatchDeleteImage",
    "ecr:DeleteRepository",
    "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:PutLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy", "ecr:StartLifecyclePolicyPreview", "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy", "ecr:UpdateImageStorageClass",
    "ecr:RegisterPullTimeUpdateExclusion", "ecr:DeregisterPullTimeUpdateExclusion",
}
DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accounts.json")
INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"


def _expand(names):
    out = set()
    for n in names or []:
        if n == "write":
            out |= WRITE_ACTIONS
        elif n == "read":
            out |= READ_ACTIONS
        else:
            out.add(n)
    return out


def _uid(prefix, seed):
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:17].upper()


class Accounts:
    def __init__(self, path=None):
        with open(path or DEFAULT_FILE) as f:
            cfg = json.load(f)
        self.users = {}
        for u in cfg.get("users", []):
            self.users[u["access_key"]] = {
                "secret": u["secret_key"], "account": u["account"], "arn": u["arn"],
                "user_id": _uid("AIDA", u["arn"]), "deny": _expand(u.get("deny")),
                "temporary": False,
            }
        self.grants = {acct: {g: set(v) for g, v in m.items()}
                       for acct, m in cfg.get("grants", {}).items()}
        self.roles = {name: _expand(r.get("deny")) for name, r in cfg.get("roles", {}).items()}
        self.known = {u["account"] for u in self.users.values()}
        self.lock = threading.Lock()  # protects self.sessions
        self.sessions = {}            # ASIA key -> identity with token and expiry

    def lookup(self, akid, token):
        ident = self.users.get(akid)
        if ident is not None:
            return ident
        with self.lock:
            ident = self.sessions.get(akid)
        if ident is None or token != ident["token"]:
            raise AuthError("unknown_key", INVALID_TOKEN)
        if time.time() >= ident["expires"]:
            raise AuthError("expired_token", EXPIRED_TOKEN)
        return ident

    def new_session(self, account, role, session, duration, early=0):
        """A temporary identity announced to expire after duration seconds;
        it is refused (ExpiredToken) from `early` seconds before that, as a
        clock running ahead or a revoked session would have it."""
        akid = "ASIA" + secrets.token_hex(8).upper()
        now = time.time()
        ident = {
            "secret": secrets.token_urlsafe(30), "token": "EMU" + secrets.token_urlsafe(96),
            "account": account, "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "user_id": _uid("AROA", f"{account}/{role}") + ":" + session,
            "role_arn": f"arn:aws:iam::{account}:role/{role}",
            "deny": set(self.roles.get(role, set())), "temporary": True,
            "expires": now + duration - early, "announced": now + duration, "akid": akid,
        }
        with self.lock:
            self.sessions[akid] = ident
        return akid, ident

    def denied(self, ident, action, target, resource):
        """None when allowed, else ECR's AccessDeniedException message."""
        who = ident["arn"]
        if action in ident["deny"]:
            return (f"User: {who} is not authorized to perform: {action} on resource: "
                    f"{resource} because no identity-based policy allows the {action} action")
        if target != ident["account"]:
            kind = "read" if action in READ_ACTIONS else "write"
            if kind not in self.grants.get(target, {}).get(ident["account"], set()):
                return (f"User: {who} is not authorized to perform: {action} on resource: "
                        f"{resource} because no resource-based policy allows the {action} action")
        return None
