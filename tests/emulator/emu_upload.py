"""Layer operations: chunked uploads, availability, download URLs.

Parts are appended to a temp file in STATE_DIR/uploads (hashing as they
arrive); CompleteLayerUpload checks the digest and moves the file into the
backing registry's storage (emu_registry.place_blob_file).
"""
import binascii
import hashlib
import hmac
import os
import threading
import time
import urllib.parse
import uuid

import emu_faults
import emu_partbody
from emu_ecr import DIGEST_RE, invalid
from emu_registry import RegistryError
from emu_state import EcrError

MIB = 1024 * 1024


class Upload:
    def __init__(self, account, region, repo, path):
        self.account, self.region, self.repo = account, region, repo
        self.path = path
        self.lock = threading.Lock()  # protects size, parts, hash and the file
        self.size = 0
        self.parts = []
        self.hash = hashlib.sha256()
        self.done = False


class Layers:
    def __init__(self, ecr, url_key):
        self.ecr = ecr
        self.state = ecr.state
        self.cfg = ecr.cfg
        self.dir = os.path.join(self.state.dir, "uploads")
        os.makedirs(self.dir, exist_ok=True)
        for stale in os.listdir(self.dir):  # uploads do not survive a restart
            os.unlink(os.path.join(self.dir, stale))
        self.url_key = url_key
        self.lock = threading.Lock()  # protects self.uploads
        self.uploads = {}

    def _upload(self, ctx, p, r):
        uid = p.get("uploadId")
        with self.lock:
            u = self.uploads.get(uid)
        if u is None or (u.account, u.region, u.repo) != (r.account, r.region, r.name):
            raise EcrError("UploadNotFoundException",
                           f"The upload with id '{uid}' does not exist in the repository with "
                           f"name '{r.name}' in the registry with id '{r.account}'")
        return u

    def _drop(self, uid, u):
        with self.lock:
            self.uploads.pop(uid, None)
        u.done = True
        try:
            os.unlink(u.path)
        except FileNotFoundError:
            pass

    def InitiateLayerUpload(self, ctx, p):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
        uid = str(uuid.uuid4())
        u = Upload(r.account, r.region, r.name, os.path.join(self.dir, uid))
        open(u.path, "wb").close()
        with self.lock:
            self.uploads[uid] = u
        return {"uploadId": uid, "partSize": self.cfg["part_size"]}

    def UploadLayerPart(self, ctx, p):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
        u = self._upload(ctx, p, r)
        first, last = p.get("partFirstByte"), p.get("partLastByte")
        try:
            blob = emu_partbody.decode(p.get("layerPartBlob"))
        except (binascii.Error, ValueError):
            raise invalid("layerPartBlob", "must be valid base64")
        uid = p["uploadId"]

        def bad(msg):
            return EcrError("InvalidLayerPartException", msg, registryId=r.account,
                            repositoryName=r.name, uploadId=uid,
                            lastValidByteReceived=u.size - 1)
        with u.lock:
            if u.done:
                raise EcrError("UploadNotFoundException",
                               f"The upload with id '{uid}' does not exist in the repository "
                               f"with name '{r.name}' in the registry with id '{r.account}'")
            if not isinstance(first, int) or not isinstance(last, int) or first != u.size:
                raise bad("The layer part size is not valid, or the first byte specified is "
                          "not consecutive to the last byte of a previous layer part upload.")
            if last - first + 1 != len(blob) or not blob:
                raise bad(f"The layer part size is not valid: partFirstByte {first} and "
                          f"partLastByte {last} do not match the {len(blob)} bytes sent.")
            if len(blob) > self.cfg["part_size"]:
                raise bad(f"The layer part size {len(blob)} is larger than the partSize "
                          f"{self.cfg['part_size']} of the upload.")
            fault = emu_faults.current() or {}
            if fault.get("kind") == "upload_lost":
                u.done = True
                self._drop(uid, u)
                raise EcrError("UploadNotFoundException",
                               f"The upload with id '{uid}' does not exist in the repository "
                               f"with name '{r.name}' in the registry with id '{r.account}'")
            if fault.get("kind") == "partial_part" and len(blob) > 1:
                # only the start of the part arrived
                blob = blob[:max(1, min(int(fault.get("keep_bytes", len(blob) // 2)),
                                        len(blob) - 1))]
                with open(u.path, "ab") as f:
                    f.write(blob)
                u.hash.update(blob)
                u.size += len(blob)
                u.parts.append(len(blob))
                raise bad("The layer part was not received in full.")
            if len(u.parts) >= self.cfg["max_parts"]:
                raise EcrError("LimitExceededException",
                               "The operation did not succeed because it would have exceeded "
                               "a service limit for your account. (layer parts per upload: "
                               f"{self.cfg['max_parts']})")
            with open(u.path, "ab") as f:
                f.write(blob)
            u.hash.update(blob)
            u.size += len(blob)
            u.parts.append(len(blob))
            received = u.size - 1
        return {"registryId": r.account, "repositoryName": r.name, "uploadId": uid,
                "lastByteReceived": received}

    def CompleteLayerUpload(self, ctx, p):
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
        u = self._upload(ctx, p, r)
        uid = p["uploadId"]
        digests = p.get("layerDigests") or []
        if len(digests) != 1 or not DIGEST_RE.fullmatch(str(digests[0])):
            raise invalid("layerDigests", "Member must contain one digest matching "
                          "'sha256:[a-f0-9]{64}'")
        want = digests[0]
        with u.lock:
            if u.done:
                raise EcrError("UploadNotFoundException",
                               f"The upload with id '{uid}' does not exist in the repository "
                               f"with name '{r.name}' in the registry with id '{r.account}'")
            try:
                if not u.parts:
                    raise EcrError("EmptyUploadException",
                                   f"The upload with id '{uid}' does not contain any layer parts.")
                small = [i for i, n in enumerate(u.parts[:-1]) if n < self.cfg["min_part_size"]]
                if small:
                    raise EcrError("LayerPartTooSmallException",
                                   f"Layer part {small[0] + 1} of upload '{uid}' is "
                                   f"{u.parts[small[0]]} bytes; every part but the last must "
                                   f"be at least {self.cfg['min_part_size']} bytes.")
                got = "sha256:" + u.hash.hexdigest()
                if got != want:
                    raise EcrError("InvalidLayerException",
                                   f"The layer digest calculated for the uploaded layer parts "
                                   f"'{got}' does not match the expected digest '{want}'.")
                with self.state.lock:
                    if want in r.blobs:
                        raise EcrError("LayerAlreadyExistsException",
                                       f"The layer with digest '{want}' already exists in the "
                                       f"repository with name '{r.name}' in the registry with "
                                       f"id '{r.account}'")
                try:
                    self.ecr.registry.place_blob_file(self.ecr.rname(r), u.path, want, u.size)
                except (RegistryError, OSError) as e:
                    raise EcrError("ServerException", f"backing registry: {e}", 500)
                with self.state.lock:
                    r.blobs[want] = {"size": u.size, "mediaType": None}
                    self.state.changed()
            finally:
                self._drop(uid, u)
        return {"registryId": r.account, "repositoryName": r.name, "uploadId": uid,
                "layerDigest": want}

    def BatchCheckLayerAvailability(self, ctx, p):
        digests = p.get("layerDigests") or []
        if not 1 <= len(digests) <= 100:
            raise invalid("layerDigests", "Member must have length between 1 and 100")
        layers, failures = [], []
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            for d in digests:
                if not DIGEST_RE.fullmatch(str(d)):
                    failures.append({"layerDigest": d, "failureCode": "InvalidLayerDigest",
                                     "failureReason": "Invalid layer digest"})
                elif d not in r.blobs:
                    failures.append({"layerDigest": d, "failureCode": "MissingLayerDigest",
                                     "failureReason": "Could not find layer"})
                else:
                    b = r.blobs[d]
                    row = {"layerDigest": d, "layerAvailability": "AVAILABLE",
                           "layerSize": b["size"]}
                    if b.get("mediaType"):
                        row["mediaType"] = b["mediaType"]
                    layers.append(row)
        return {"layers": layers, "failures": failures}

    def GetDownloadUrlForLayer(self, ctx, p):
        d = p.get("layerDigest")
        if not isinstance(d, str) or not DIGEST_RE.fullmatch(d):
            raise invalid("layerDigest", "must satisfy regular expression 'sha256:[a-f0-9]{64}'")
        with self.state.lock:
            r = self.ecr.repo(ctx, p.get("repositoryName"))
            if d not in r.blobs:
                raise EcrError("LayersNotFoundException",
                               f"The specified layer '{d}' does not exist in the repository "
                               f"with name '{r.name}' in the registry with id '{r.account}'")
        path = "/_blob/%s/%s/%s/%s" % (r.account, r.region, r.name, d)
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        exp = int(self.cfg["url_expires"])
        q = urllib.parse.urlencode([
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Date", date),
            ("X-Amz-Expires", str(exp)), ("X-Amz-Signature", self.url_signature(path, date, exp))])
        return {"downloadUrl": f"{ctx['endpoint']}{path}?{q}", "layerDigest": d}

    def url_signature(self, path, date, exp):
        return hmac.new(self.url_key, f"{path}\n{date}\n{exp}".encode(), hashlib.sha256).hexdigest()
