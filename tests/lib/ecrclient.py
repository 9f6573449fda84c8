"""A small standard-library ECR client for tests: seed images quickly
(push_layout), create repositories, make raw signed calls."""
import base64
import hashlib
import http.client
import json
import os
import time
import urllib.parse

import sigv4

PART = 10 * 1024 * 1024
TARGET = "AmazonEC2ContainerRegistry_V20150921."


class EcrApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        self.code = body.get("__type", "") if isinstance(body, dict) else ""
        self.message = body.get("message", "") if isinstance(body, dict) else str(body)
        super().__init__(f"{status} {self.code}: {self.message}")


class Client:
    def __init__(self, endpoint, akid, secret, region="us-east-1", token=None):
        self.endpoint = endpoint.rstrip("/")
        self.akid, self.secret, self.region, self.token = akid, secret, region, token
        self.clock_offset = 0.0  # seconds added to the signing time (skew tests)
        self._conn = None

    def _http(self, method, path, body, headers):
        # No retry here: tests inject dropped replies and must see them.
        u = urllib.parse.urlsplit(self.endpoint)
        if self._conn is None:
            self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        try:
            self._conn.request(method, path, body=body, headers=headers)
            r = self._conn.getresponse()
            st, data = r.status, r.read()
            if r.will_close:
                self.close()
            return st, data
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def raw(self, op, params, service="ecr", sign_secret=None):
        """(status, parsed body) of one ECR call, no exception on errors."""
        body = json.dumps(params).encode()
        h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + op}
        h = sigv4.sign("POST", self.endpoint + "/", h, body, self.akid,
                       sign_secret or self.secret, self.region, service, self.token,
                       now=time.time() + self.clock_offset)
        st, data = self._http("POST", "/", body, h)
        try:
            return st, json.loads(data) if data else {}
        except ValueError:
            return st, {"raw": data.decode("utf-8", "replace")}

    def call(self, op, **params):
        st, body = self.raw(op, params)
        if st != 200:
            raise EcrApiError(st, body)
        return body

    def sts(self, action, **params):
        """(status, XML text) of one signed STS call."""
        q = {"Action": action, "Version": "2011-06-15"}
        q.update(params)
        body = urllib.parse.urlencode(q).encode()
        h = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if action != "AssumeRoleWithWebIdentity":
            h = sigv4.sign("POST", self.endpoint + "/", h, body, self.akid, self.secret,
                           self.region, "sts", self.token, now=time.time() + self.clock_offset)
        st, data = self._http("POST", "/", body, h)
        return st, data.decode()

    # -- helpers -------------------------------------------------------------
    def push_blob(self, repo, path_or_bytes, digest=None, part=PART, registry_id=None):
        """Uploads one blob unless the repository has it. Returns its digest."""
        data = path_or_bytes
        if not isinstance(data, (bytes, bytearray)):
            with open(path_or_bytes, "rb") as f:
                data = f.read()
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        rid = {"registryId": registry_id} if registry_id else {}
        have = self.call("BatchCheckLayerAvailability", repositoryName=repo,
                         layerDigests=[digest], **rid)
        if have["layers"]:
            return digest
        up = self.call("InitiateLayerUpload", repositoryName=repo, **rid)
        size = min(part, up["partSize"])
        for off in range(0, len(data), size):
            chunk = data[off:off + size]
            self.call("UploadLayerPart", repositoryName=repo, uploadId=up["uploadId"],
                      partFirstByte=off, partLastByte=off + len(chunk) - 1,
                      layerPartBlob=base64.b64encode(chunk).decode(), **rid)
        try:
            self.call("CompleteLayerUpload", repositoryName=repo, uploadId=up["uploadId"],
                      layerDigests=[digest], **rid)
        except EcrApiError as e:
            if e.code != "LayerAlreadyExistsException":
                raise
        return digest

    def put_image(self, repo, manifest_bytes, media_type, tag=None, registry_id=None):
        p = {"repositoryName": repo, "imageManifest": manifest_bytes.decode("utf-8"),
             "imageManifestMediaType": media_type}
        if tag:
            p["imageTag"] = tag
        if registry_id:
            p["registryId"] = registry_id
        try:
            return self.call("PutImage", **p)
        except EcrApiError as e:
            if e.code != "ImageAlreadyExistsException":
                raise
            return None


def client_for(emu, account="111111111111", region="us-east-1", access_key=None):
    akid, secret = emu.credentials(account, access_key)
    return Client(emu.endpoint, akid, secret, region)


def create_repository(emu, repo, account="111111111111", region="us-east-1",
                      mutability="MUTABLE", exist_ok=True):
    c = client_for(emu, account, region)
    try:
        return c.call("CreateRepository", repositoryName=repo, imageTagMutability=mutability)
    except EcrApiError as e:
        if not (exist_ok and e.code == "RepositoryAlreadyExistsException"):
            raise
        return None
    finally:
        c.close()


def _blob(layout, digest):
    with open(os.path.join(layout, "blobs", *digest.split(":", 1)), "rb") as f:
        return f.read()


def _push_manifest(c, layout, repo, desc, tag):
    data = _blob(layout, desc["digest"])
    doc = json.loads(data)
    mt = desc.get("mediaType") or doc.get("mediaType")
    if "manifests" in doc:  # an index: children by digest first
        for child in doc["manifests"]:
            _push_manifest(c, layout, repo, child, None)
    else:
        for b in [doc["config"]] + doc.get("layers", []):
            c.push_blob(repo, _blob(layout, b["digest"]), b["digest"])
    c.put_image(repo, data, mt, tag)
    return desc["digest"]


def push_layout(emu, layout_dir, repo, tag, account="111111111111", region="us-east-1",
                ref=None, create=True):
    """Pushes the image `ref` (default: tag; or the only one) of an OCI
    layout as repo:tag. Returns {"digest", "mediaType"} of the top manifest."""
    if create:
        create_repository(emu, repo, account, region)
    with open(os.path.join(layout_dir, "index.json")) as f:
        idx = json.load(f)
    want = ref or tag
    descs = [d for d in idx["manifests"]
             if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == want]
    if not descs and len(idx["manifests"]) == 1:
        descs = idx["manifests"]
    if len(descs) != 1:
        raise ValueError(f"{layout_dir}: no single manifest for ref {want!r}")
    c = client_for(emu, account, region)
    try:
        d = _push_manifest(c, layout_dir, repo, descs[0], tag)
    finally:
        c.close()
    return {"digest": d, "mediaType": descs[0].get("mediaType")}
