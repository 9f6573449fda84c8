"""The storage backend: Debian's docker-registry (CNCF distribution) on a
loopback port. Blobs and manifests live there; tags are kept by the
emulator because distribution cannot delete a tag."""
import ctypes
import errno
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

BINARY = "/usr/bin/docker-registry"
CHUNK = 1 << 20
NAME_MAX = 255  # distribution's limit on a repository name


class RegistryError(Exception):
    pass


def _die_with_parent():
    # The registry must not outlive the emulator, even after a SIGKILL.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, data_dir, log_path):
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        last = "not started"
        for _ in range(5):  # the port picked may be taken meanwhile
            self.port = _free_port()
            conf = os.path.join(os.path.dirname(self.log_path), "registry-config.yml")
            with open(conf, "w") as f:
                f.write(
                    "version: 0.1\n"
                    "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\n"
                    "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                    "http:\n  addr: 127.0.0.1:%d\n" % (self.data_dir, self.port))
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([BINARY, "serve", conf], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, preexec_fn=_die_with_parent)
            log.close()
            deadline = time.time() + 30
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    st, _, _ = self.request("GET", "/v2/")
                    if st == 200:
                        return
                except OSError as e:
                    last = str(e)
                time.sleep(0.05)
            last = f"exit {self.proc.poll()}: see {self.log_path}"
            self.stop()
        raise RegistryError(f"docker-registry did not start ({last})")

    def stop(self):
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def conn(self, timeout=300):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          blocksize=CHUNK)

    def request(self, method, path, body=None, headers=None):
        c = self.conn(timeout=60)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    @staticmethod
    def name(account, region, repo):
        n = f"{account}/{region}/{repo}".lower()
        if len(n) > NAME_MAX:
            n = f"{account}/{region}/long/{hashlib.sha256(repo.encode()).hexdigest()}"
        return n

    def push_blob_file(self, name, path, digest, size):
        st, hdr, body = self.request("POST", f"/v2/{name}/blobs/uploads/")
        if st != 202:
            raise RegistryError(f"start upload {name}: {st} {body[:200]!r}")
        loc = urllib.parse.urlsplit(hdr["Location"])
        q = loc.query + ("&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        c = self.conn()
        try:
            with open(path, "rb") as f:
                c.request("PUT", f"{loc.path}?{q}", body=f, headers={
                    "Content-Length": str(size), "Content-Type": "application/octet-stream"})
                r = c.getresponse()
                out = r.read()
            if r.status != 201:
                raise RegistryError(f"put blob {digest} in {name}: {r.status} {out[:200]!r}")
        finally:
            c.close()

    def place_blob_file(self, name, path, digest, size):
        """Stores a file the caller has verified as blob digest of
        repository name by moving it into the registry's filesystem storage
        (distribution's layout: the blob's data, and the repository's link
        to it), as its blob upload would leave them. The HTTP upload cost
        the registry and the emulator more CPU than the client being
        measured; the file is in STATE_DIR, on the storage's filesystem.
        Falls back to the upload when it cannot be moved there."""
        algo, _, hexd = digest.partition(":")
        data = self.blob_path(digest)
        link = os.path.join(self.data_dir, "docker", "registry", "v2", "repositories", name,
                            "_layers", algo, hexd, "link")
        try:
            os.makedirs(os.path.dirname(data), exist_ok=True)
            if os.path.getsize(path) != size:
                raise RegistryError(f"{path}: not {size} bytes")
            os.replace(path, data)  # atomic; the same bytes if already there
            os.makedirs(os.path.dirname(link), exist_ok=True)
            tmp = f"{link}.{os.getpid()}.{threading.get_ident()}"
            with open(tmp, "w") as f:
                f.write(digest)
            os.replace(tmp, link)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            self.push_blob_file(name, path, digest, size)

    def put_manifest(self, name, ref, data, media_type):
        st, _, body = self.request("PUT", f"/v2/{name}/manifests/{ref}", body=data,
                                   headers={"Content-Type": media_type})
        if st != 201:
            raise RegistryError(f"put manifest {name}:{ref}: {st} {body[:300]!r}")

    def delete_manifest(self, name, digest):
        st, _, body = self.request("DELETE", f"/v2/{name}/manifests/{digest}")
        if st not in (202, 404):
            raise RegistryError(f"delete manifest {name}@{digest}: {st} {body[:200]!r}")

    def open_blob(self, name, digest, range_header=None, method="GET"):
        """Returns (connection, response); the caller streams and closes."""
        c = self.conn()
        h = {"Range": range_header} if range_header else {}
        c.request(method, f"/v2/{name}/blobs/{digest}", headers=h)
        return c, c.getresponse()

    def blob_path(self, digest):
        algo, _, hexd = digest.partition(":")
        return os.path.join(self.data_dir, "docker", "registry", "v2", "blobs", algo,
                            hexd[:2], hexd, "data")
