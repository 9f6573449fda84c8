"""Fault injection: the Nth matching request (or a seeded probability)
gets an error, a delay, a truncated or dropped reply, or a black hole.

A spec (JSON from POST /_emu/fault) has:
  kind      http500 | http503 | http (with status) | throttle | http429 | delay |
            delay_reply | truncate | expired_url | expired_token | access_denied |
            drop_reply | blackhole | partial_part | upload_lost
            (delay waits before the call is done; delay_reply after: the
            answer is what was true delay_ms before it arrives)
  op        operation name, STS action, "BlobGet", or "Unknown" for a request
            that names none, such as a bare GET / ("*" or absent: any)
  repo, account   optional filters
  nth       first matching request to hit, counted from now (default 1)
  count     how many times to fire (default 1; 0 = unlimited)
  probability, seed   fire at random instead of by position (storms)
  delay_ms, timeout_ms, status, action, keep_bytes   per kind
UploadLayerPart only: partial_part stores the first keep_bytes of the part
(default half) and answers InvalidLayerPartException with
lastValidByteReceived inside it; upload_lost forgets the upload (expired)
and answers UploadNotFoundException (both read by the operation itself
through current(), the fault matched for this request on this thread).
"""
import random
import threading

KINDS = {"http500", "http503", "http", "throttle", "http429", "delay", "delay_reply", "truncate",
         "expired_url", "expired_token", "access_denied", "drop_reply", "blackhole",
         "partial_part", "upload_lost"}

_request = threading.local()  # .fault: what match() chose for this thread's request


def current():
    """The fault match() chose for the request this thread is handling."""
    return getattr(_request, "fault", None)


class Faults:
    def __init__(self):
        self.lock = threading.Lock()  # protects self.faults and their counters
        self.faults = []
        self.next_id = 1

    def add(self, spec):
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        f = dict(spec)
        f.setdefault("nth", 1)
        f.setdefault("count", 1)
        f["seen"] = 0
        f["fired"] = 0
        if "probability" in f:
            f["_rng"] = random.Random(f.get("seed", 1234))
        with self.lock:
            f["id"] = self.next_id
            self.next_id += 1
            self.faults.append(f)
        return f["id"]

    def clear(self):
        with self.lock:
            self.faults = []

    def list(self):
        with self.lock:
            return [{k: v for k, v in f.items() if not k.startswith("_")} for f in self.faults]

    def match(self, op, repo=None, account=None):
        """The fault to apply to this request, or None."""
        chosen = None
        with self.lock:
            for f in self.faults:
                if f.get("op") not in (None, "*", op):
                    continue
                if f.get("repo") is not None and f["repo"] != repo:
                    continue
                if f.get("account") is not None and f["account"] != account:
                    continue
                f["seen"] += 1
                if f["count"] and f["fired"] >= f["count"]:
                    continue
                if "_rng" in f:
                    fire = f["_rng"].random() < float(f["probability"])
                else:
                    fire = f["seen"] >= int(f["nth"])
                if fire and chosen is None:
                    f["fired"] += 1
                    chosen = dict(f)
        _request.fault = chosen
        return chosen
