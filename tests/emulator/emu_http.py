"""HTTP front: routes ECR (JSON 1.1), STS (query/XML), download URLs
(/_blob/...) and the unsigned control API (/_emu/...); logs every request
and applies injected faults."""
import base64
import calendar
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import emu_partbody
import emu_sigv4
from emu_sigv4 import AuthError
from emu_ecr import check_registry_id
from emu_state import EcrError
from emu_sts import StsError, error_xml

ECR_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
JSON_TYPE = "application/x-amz-json-1.1"
BODY_MAX = 64 * 1024 * 1024
CHUNK = 1 << 20
BLACKHOLE_MAX_MS = 600_000
CONFIG_KEYS = {"tiny_pages", "sts_duration", "sts_expire_early", "url_expires", "part_size",
               "min_part_size", "max_parts"}

# AuthError kind -> its error in ECR's protocol and in STS's: (code, HTTP status)
AUTH_ERRORS = {
    "missing": (("MissingAuthenticationTokenException", 403), ("MissingAuthenticationToken", 403)),
    "incomplete": (("IncompleteSignatureException", 403), ("IncompleteSignature", 403)),
    "unknown_key": (("UnrecognizedClientException", 403), ("InvalidClientTokenId", 403)),
    "bad_signature": (("InvalidSignatureException", 403), ("SignatureDoesNotMatch", 403)),
    "skew": (("InvalidSignatureException", 403), ("SignatureDoesNotMatch", 403)),
    "scope": (("InvalidSignatureException", 403), ("SignatureDoesNotMatch", 403)),
    "expired_token": (("ExpiredTokenException", 403), ("ExpiredToken", 400)),
}
ECR_AUTH = {k: v[0] for k, v in AUTH_ERRORS.items()}
STS_AUTH = {k: v[1] for k, v in AUTH_ERRORS.items()}

STS_CODES = {"ThrottlingException": "Throttling", "ServerException": "InternalFailure",
             "ServiceUnavailableException": "ServiceUnavailable"}


class RequestLog:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()  # serializes appends and resets of the file
        open(path, "a").close()

    def append(self, entry):
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line)

    def read(self):
        with self.lock:
            with open(self.path) as f:
                return [json.loads(l) for l in f if l.strip()]

    def reset(self):
        with self.lock:
            open(self.path, "w").close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, app):
        self.app = app
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ecr-emulator"
    sys_version = ""
    timeout = 300  # idle keep-alive connections end after this

    def log_message(self, fmt, *args):
        pass

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = lambda self: self.route()

    # -- plumbing ------------------------------------------------------------
    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > BODY_MAX:
                    raise ValueError("body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        if n > BODY_MAX:
            raise ValueError("body too large")
        if not n:
            return b""
        buf = bytearray(n)  # readinto: large reads go straight into buf
        view, got = memoryview(buf), 0
        while got < n:
            k = self.rfile.readinto(view[got:])
            if not k:
                raise ValueError("body shorter than Content-Length")
            got += k
        return buf

    def send(self, status, body, ctype, headers=(), fault=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in headers:
            self.send_header(k, v)
        self.entry["status"] = status
        if fault and fault["kind"] == "truncate":
            keep = int(fault.get("keep_bytes", len(body) // 2))
            self.entry["bytes_out"] = keep
            self.commit_log()
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body[:keep])
            self.hangup()
            return
        self.entry["bytes_out"] = len(body) if self.command != "HEAD" else 0
        self.commit_log()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer(self, body, ctype, fault):
        """The 200 reply of a call that was done, unless a drop_reply fault
        loses it (the client sees the connection end)."""
        if fault and fault["kind"] == "drop_reply":
            self.entry["status"] = 0
            return self.hangup()
        if fault and fault["kind"] == "delay_reply":  # computed now, arrives later
            self.app.stop.wait(int(fault.get("delay_ms", 1000)) / 1000.0)
        self.send(200, body, ctype, fault=fault)

    def commit_log(self):
        """Appends this request's log line once, before the client can see
        the end of the reply: a test that got its answer finds its line."""
        if self.logged or not self.entry.get("op"):
            return
        self.logged = True
        self.entry["ms"] = round((time.monotonic() - self.t0) * 1000, 1)
        self.app.log.append(self.entry)

    def hangup(self):
        self.commit_log()
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def blackhole(self, fault):
        ms = min(int(fault.get("timeout_ms", 30000)), BLACKHOLE_MAX_MS)
        self.app.stop.wait(ms / 1000.0)
        self.entry["status"] = 0
        self.hangup()

    def route(self):
        self.app = self.server.app
        self.entry = {"ts": round(time.time(), 6), "op": None, "account": None, "region": None,
                      "repo": None, "status": None, "code": "", "bytes_in": 0, "bytes_out": 0,
                      "range": self.headers.get("Range"), "conn": self.client_address[1]}
        t0 = self.t0 = time.monotonic()
        self.logged = False
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return self.send(413, "request body too large or malformed", "text/plain")
        self.entry["bytes_in"] = len(body)
        self.entry["read_ms"] = round((time.monotonic() - t0) * 1000, 1)
        path = self.path
        try:
            if path.startswith("/_emu/"):
                self.entry = {}  # control calls are not logged
                return self.control(path, body)
            if path.startswith("/_blob/"):
                return self.blob(path)
            self.app.net.api_delay()
            if self.command == "POST" and self.headers.get("X-Amz-Target"):
                return self.ecr(body)
            return self.sts(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug of ours: answer 500 and say where
            traceback.print_exc(file=sys.stderr)
            self.entry["code"] = "ServerException"
            try:
                self.send(500, json.dumps({"__type": "ServerException",
                                           "message": "internal emulator error"}), JSON_TYPE)
            except OSError:
                self.close_connection = True
        finally:
            self.commit_log()

    def generic_fault(self, fault, error):
        """Apply a fault that replaces the answer; error(code, msg, status)
        writes it in the protocol's format. True when the request is done."""
        k = fault["kind"]
        self.entry["fault"] = k
        if k == "blackhole":
            self.blackhole(fault)
        elif k == "delay":
            self.app.stop.wait(int(fault.get("delay_ms", 1000)) / 1000.0)
            return False
        elif k in ("http500", "http503", "http"):
            st = {"http500": 500, "http503": 503}.get(k) or int(fault.get("status", 500))
            code = "ServiceUnavailableException" if st == 503 else "ServerException"
            error(code, "injected failure", st)
        elif k == "http429":
            self.entry["code"] = "TooManyRequests"
            self.send(429, "Too Many Requests", "text/plain")
        elif k == "throttle":
            error("ThrottlingException", "Rate exceeded", 400)
        else:
            return False
        return True

    # -- ECR -----------------------------------------------------------------
    def ecr_error(self, code, message, status=400, **extra):
        self.entry["code"] = code
        body = {"__type": code, "message": message}
        body.update(extra)
        self.send(status, json.dumps(body), JSON_TYPE)

    def ecr(self, body):
        target = self.headers.get("X-Amz-Target", "")
        op = target[len(ECR_PREFIX):] if target.startswith(ECR_PREFIX) else target
        self.entry["op"] = op
        app = self.app
        fn = app.ops.get(op) if target.startswith(ECR_PREFIX) else None
        try:
            params = (emu_partbody.parse(body) if body and op == "UploadLayerPart"
                      else json.loads(body or b"{}"))
            if not isinstance(params, dict):
                raise ValueError
        except ValueError:
            return self.ecr_error("SerializationException", "Start of structure or map found "
                                  "where not expected")
        headers = self.headers.items()
        region, _ = emu_sigv4.peek_scope(headers)
        self.entry["region"] = region
        self.entry["akid"] = emu_sigv4.peek_akid(headers)
        if not self.headers.get("Authorization"):
            return self.ecr_error("MissingAuthenticationTokenException",
                                  "Missing Authentication Token", 403)
        try:
            ident, region = emu_sigv4.verify(self.command, self.path, headers, body, "ecr",
                                              app.accounts.lookup)
        except AuthError as e:
            code, st = ECR_AUTH[e.kind]
            return self.ecr_error(code, e.message, st)
        if fn is None:
            return self.ecr_error("UnknownOperationException", "", 400)
        rid = params.get("registryId")
        account = rid if isinstance(rid, str) and rid else ident["account"]
        repo = params.get("repositoryName")
        self.entry.update(account=account, region=region,
                          repo=repo if isinstance(repo, str) else None,
                          caller=ident["arn"])
        resource = f"arn:aws:ecr:{region}:{account}:repository/{repo or '*'}"
        fault = app.faults.match(op, self.entry["repo"], account)
        if fault:
            if self.generic_fault(fault, self.ecr_error):
                return
            if fault["kind"] == "expired_token":
                return self.ecr_error("ExpiredTokenException",
                                      "The security token included in the request is expired", 403)
            if fault["kind"] == "access_denied":
                action = fault.get("action") or f"ecr:{op}"
                return self.ecr_error(
                    "AccessDeniedException",
                    f"User: {ident['arn']} is not authorized to perform: {action} on resource: "
                    f"{resource} because no identity-based policy allows the {action} action")
        try:
            check_registry_id(rid)
            why = app.accounts.denied(ident, f"ecr:{op}", account, resource)
            if why:
                return self.ecr_error("AccessDeniedException", why)
            ctx = {"account": account, "region": region, "ident": ident,
                   "endpoint": app.endpoint}
            result = fn(ctx, params)
        except EcrError as e:
            if e.status >= 500:
                print(f"ecr-emulator: {op}: {e.message}", file=sys.stderr)
            return self.ecr_error(e.code, e.message, e.status, **e.extra)
        self.answer(json.dumps(result), JSON_TYPE, fault)

    # -- STS -----------------------------------------------------------------
    def sts_error(self, code, message, status=400):
        self.entry["code"] = code
        self.send(status, error_xml(code, message), "text/xml")

    def sts(self, body):
        app = self.app
        if self.command == "POST":
            raw = body.decode("utf-8", "replace")
        else:
            raw = urllib.parse.urlsplit(self.path).query
        params = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        action = params.get("Action")
        self.entry["op"] = action or "Unknown"
        if not action:
            # Any request (ecrfs's probe of a host in back-off is a bare
            # GET /) meets the faults that name no operation: a black hole
            # answers nothing at all.
            fault = app.faults.match("Unknown")
            if fault and self.generic_fault(fault, self.sts_error):
                return
            return self.sts_error("MissingAction", "Missing Action", 400)
        ident, region = None, None
        if action != "AssumeRoleWithWebIdentity":
            if not self.headers.get("Authorization"):
                return self.sts_error("MissingAuthenticationToken",
                                      "Request is missing Authentication Token", 403)
            try:
                ident, region = emu_sigv4.verify(self.command, self.path, self.headers.items(),
                                                 body, "sts", app.accounts.lookup)
            except AuthError as e:
                code, st = STS_AUTH[e.kind]
                return self.sts_error(code, e.message, st)
        role_acct = params.get("RoleArn", "").split(":")[4:5]  # unsigned web identity
        self.entry.update(account=ident["account"] if ident else (role_acct or [None])[0],
                          region=region, caller=ident["arn"] if ident else None)
        fault = app.faults.match(action, None, self.entry["account"])
        if fault:
            if self.generic_fault(fault, lambda c, m, st: self.sts_error(STS_CODES.get(c, c), m, st)):
                return
            if fault["kind"] == "expired_token":
                return self.sts_error("ExpiredToken",
                                      "The security token included in the request is expired")
            if fault["kind"] == "access_denied":
                return self.sts_error("AccessDenied", f"User: {ident and ident['arn']} is not "
                                      f"authorized to perform: sts:{action}", 403)
        try:
            xml = app.sts.handle(action, params, ident)
        except StsError as e:
            return self.sts_error(e.code, e.message, e.status)
        self.answer(xml, "text/xml", fault)

    # -- download URLs -------------------------------------------------------
    def s3_error(self, status, code, message, extra="", headers=()):
        self.entry["code"] = code
        self.send(status, '<?xml version="1.0" encoding="UTF-8"?>\n'
                  f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}"
                  f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId>"
                  f"<HostId>emu</HostId></Error>", "application/xml", headers=headers)

    def blob(self, path):
        app = self.app
        self.entry["op"] = "BlobGet"
        app.net.first_byte_delay()
        split = urllib.parse.urlsplit(path)
        upath = urllib.parse.unquote(split.path)  # some clients encode the ':'
        parts = upath.split("/")  # '', '_blob', acct, region, repo..., digest
        q = dict(urllib.parse.parse_qsl(split.query))
        if len(parts) < 6 or self.command not in ("GET", "HEAD"):
            return self.s3_error(400, "InvalidRequest", "Malformed download URL")
        acct, region, digest = parts[2], parts[3], parts[-1]
        repo = "/".join(parts[4:-1])
        self.entry.update(account=acct, region=region, repo=repo)
        fault = app.faults.match("BlobGet", repo, acct)
        date, exp = q.get("X-Amz-Date", ""), q.get("X-Amz-Expires", "0")
        sig_ok = q.get("X-Amz-Signature") == app.layers.url_signature(upath, date, exp)
        if not sig_ok:
            return self.s3_error(403, "SignatureDoesNotMatch", "The request signature we "
                                 "calculated does not match the signature you provided.")
        if fault and self.generic_fault(fault, lambda c, m, s: self.s3_error(s, c, m)):
            return
        try:
            issued = calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            issued = 0
        now = time.time()
        if (fault and fault["kind"] == "expired_url") or now > issued + int(exp):
            return self.s3_error(403, "AccessDenied", "Request has expired",
                                 f"<X-Amz-Expires>{exp}</X-Amz-Expires>"
                                 f"<Expires>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(issued + int(exp)))}</Expires>"
                                 f"<ServerTime>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}</ServerTime>")
        with app.state.lock:
            r = app.state.repos.get((acct, region, repo))
            present = r is not None and digest in r.blobs
        if not present:
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        self.serve_blob(app.registry.name(acct, region, repo), digest, fault)

    def blob_headers(self, status, length, digest, fault, content_range):
        """Sends the headers of a download; returns how many body bytes to
        send (fewer under a truncate fault), None for HEAD (logged, done)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{digest.split(":")[1][:32]}"')
        if content_range:
            self.send_header("Content-Range", content_range)
        self.entry["status"] = status
        if self.command == "HEAD":
            self.commit_log()
            self.end_headers()
            return None
        self.end_headers()
        if fault and fault["kind"] == "truncate":
            return min(length, int(fault.get("keep_bytes", length // 2)))
        return length

    def serve_blob(self, name, digest, fault):
        """Serves the bytes from the registry's storage file with sendfile:
        on one machine the proxy below costs more CPU than the client being
        measured, where S3 behind a real download URL costs the client none.
        Anything but a missing or single simple Range goes through the
        registry (the proxy)."""
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        try:
            f = open(self.app.registry.blob_path(digest), "rb")
        except OSError:
            return self.proxy_blob(name, digest, fault)
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end, status = 0, size, 200
            if rng:
                if not m or (not m[1] and not m[2]):
                    return self.proxy_blob(name, digest, fault)
                if m[1]:
                    start = int(m[1])
                    end = min(size, int(m[2]) + 1) if m[2] else size
                else:  # suffix range: the last N bytes
                    start = max(0, size - int(m[2]))
                if start >= size or end <= start:
                    return self.s3_error(416, "InvalidRange", "The requested range is not "
                                         "satisfiable", headers=[("Content-Range",
                                                                  f"bytes */{size}")])
                status = 206
            length = end - start
            limit = self.blob_headers(status, length, digest, fault,
                                      f"bytes {start}-{end - 1}/{size}" if status == 206 else None)
            if limit is None:
                return
            pacer = self.app.net.pacer()
            sent = self.sendfile_paced(f, start, limit, pacer) if pacer else \
                self.sendfile_all(f, start, limit)
            self.entry["bytes_out"] = sent
            if sent < length:
                self.hangup()

    def sendfile_all(self, f, start, limit):
        """All but the last chunk, then the log line, then the rest.
        socket.sendfile's count 0 means "to the end of the file": a body
        truncated to 0 bytes sends none."""
        head = max(0, limit - CHUNK)
        sent = self.connection.sendfile(f, start, head) if head else 0
        if sent == head:
            self.entry["bytes_out"] = limit
            self.commit_log()
            if limit > sent:
                sent += self.connection.sendfile(f, start + sent, limit - sent)
        return sent

    def sendfile_paced(self, f, start, limit, pacer):
        """The modelled rate cap: sendfile of a slice, then sleep to the
        schedule; the log line before the last slice."""
        sent = 0
        while sent < limit:
            n = min(pacer.slice, limit - sent)
            pacer.wait(n)
            if sent + n >= limit:
                self.entry["bytes_out"] = limit
                self.commit_log()
            k = self.connection.sendfile(f, start + sent, n)
            sent += k
            if k < n:
                break
        return sent

    def proxy_blob(self, name, digest, fault):
        conn, resp = self.app.registry.open_blob(name, digest, self.headers.get("Range"),
                                                 method=self.command)
        try:
            if resp.status == 416:
                return self.s3_error(416, "InvalidRange", "The requested range is not "
                                     "satisfiable", headers=[
                                         ("Content-Range", resp.getheader("Content-Range") or "")])
            if resp.status not in (200, 206):
                return self.s3_error(502, "BadGateway",
                                     f"backing registry answered {resp.status}")
            length = int(resp.getheader("Content-Length"))
            limit = self.blob_headers(resp.status, length, digest, fault,
                                      resp.getheader("Content-Range"))
            if limit is None:
                return
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            sent = 0
            pacer = self.app.net.pacer()
            step = min(CHUNK, pacer.slice) if pacer else CHUNK
            while sent < limit:
                n = resp.readinto(view[:min(step, limit - sent)])
                if n and pacer:
                    pacer.wait(n)
                if not n:
                    break
                if sent + n >= limit:  # the last chunk: log first
                    self.entry["bytes_out"] = sent + n
                    self.commit_log()
                self.wfile.write(view[:n])
                sent += n
            self.entry["bytes_out"] = sent
            if sent < length:
                self.hangup()
        finally:
            conn.close()

    # -- control API -----------------------------------------------------------
    def control(self, path, body):
        app = self.app
        op = urllib.parse.urlsplit(path).path[len("/_emu/"):]
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return self.send(400, "body must be JSON", "text/plain")
        self.entry = {}
        res = {"ok": True}
        try:
            if op == "log":
                res = app.log.read()
            elif op == "reset_log":
                app.log.reset()
            elif op == "fault":
                res = {"id": app.faults.add(args)}
            elif op == "faults":
                res = app.faults.list()
            elif op == "clear_faults":
                app.faults.clear()
            elif op == "config":
                bad = set(args) - CONFIG_KEYS
                if bad:
                    raise ValueError(f"unknown config keys {sorted(bad)}")
                app.cfg.update(args)
                res = dict(app.cfg)
            elif op == "netmodel":
                res = app.net.update(args) if self.command == "POST" else app.net.get()
            elif op == "corrupt_blob":
                res = {"path": corrupt_blob(app.registry.blob_path(args["digest"]), args)}
            elif op == "expire_credentials":
                with app.accounts.lock:
                    for s in app.accounts.sessions.values():
                        s["expires"] = time.time() - 1
            elif op == "info":
                res = {"endpoint": app.endpoint, "registry": app.registry.address,
                       "state_dir": app.state.dir, "pid": os.getpid()}
            elif op in app.controls:
                res = app.controls[op](args)
            else:
                return self.send(404, f"unknown control call {op}", "text/plain")
        except (ValueError, KeyError, OSError) as e:
            return self.send(400, f"{type(e).__name__}: {e}", "text/plain")
        self.send(200, json.dumps(res), "application/json")


def corrupt_blob(path, args):
    """Overwrite bytes of a stored blob in place: data_b64 at offset, or
    flip `length` bytes (default 1) at offset. The size stays the same
    unless data_b64 runs past the end."""
    off = int(args.get("offset", 0))
    with open(path, "r+b") as f:
        if "data_b64" in args:
            data = base64.b64decode(args["data_b64"])
        else:
            f.seek(off)
            data = bytes(b ^ 0xFF for b in f.read(int(args.get("length", 1))))
        f.seek(off)
        f.write(data)
    return path
