"""Emulator state: repositories, images, tags, per-repository blobs.

Everything is in memory, flushed to STATE_DIR/state.json by a background
thread (and at stop) so a restart on the same state dir keeps the picture.
Manifest bytes are stored exactly as pushed in STATE_DIR/manifests/.
"""
import json
import os
import threading
import time


class EcrError(Exception):
    def __init__(self, code, message, status=400, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


class Repo:
    def __init__(self, account, region, name, mutability="MUTABLE", scan=False, created=None):
        self.account = account
        self.region = region
        self.name = name
        self.mutability = mutability
        self.scan = scan
        self.created = created if created is not None else time.time()
        self.blobs = {}   # digest -> {"size": n, "mediaType": str or None}
        self.images = {}  # digest -> {"mediaType", "size", "pushedAt", "artifactMediaType",
        #                              "children": [digests], "blobs": [digests]}
        self.tags = {}    # tag -> digest
        # mutabilityFilters, lifecyclePolicy, lifecyclePreview, repositoryPolicy,
        # encryption (emu_settings.py)
        self.settings = {}

    def tags_of(self, digest):
        return sorted(t for t, d in self.tags.items() if d == digest)

    def tag_index(self):
        """digest -> sorted tags, in one pass (listings of 5,000 tags)."""
        idx = {}
        for t, d in self.tags.items():
            idx.setdefault(d, []).append(t)
        for v in idx.values():
            v.sort()
        return idx

    def parents_of(self, digest):
        return sorted(d for d, im in self.images.items() if digest in im.get("children", ()))

    def to_json(self):
        return {"account": self.account, "region": self.region, "name": self.name,
                "mutability": self.mutability, "scan": self.scan, "created": self.created,
                "blobs": self.blobs, "images": self.images, "tags": self.tags,
                "settings": self.settings}

    @classmethod
    def from_json(cls, j):
        r = cls(j["account"], j["region"], j["name"], j["mutability"], j["scan"], j["created"])
        r.blobs, r.images, r.tags = j["blobs"], j["images"], j["tags"]
        r.settings = j.get("settings", {})
        return r


class State:
    def __init__(self, state_dir):
        self.dir = state_dir
        self.path = os.path.join(state_dir, "state.json")
        self.manifest_dir = os.path.join(state_dir, "manifests")
        os.makedirs(self.manifest_dir, exist_ok=True)
        # lock protects repos and dirty; held only for short in-memory work.
        self.lock = threading.RLock()
        self.repos = {}  # (account, region, name) -> Repo
        self.settings = {}  # registry-wide: pullTimeExclusions (emu_artifacts.py)
        self.dirty = False
        if os.path.exists(self.path):
            with open(self.path) as f:
                saved = json.load(f)
                self.settings = saved.get("settings", {})
                for j in saved.get("repos", []):
                    r = Repo.from_json(j)
                    self.repos[(r.account, r.region, r.name)] = r
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
        self._flusher.start()

    def changed(self):
        self.dirty = True

    def _flush_loop(self):
        while not self._stop.wait(2.0):
            self.flush()

    def flush(self):
        with self.lock:
            if not self.dirty:
                return
            data = json.dumps({"repos": [r.to_json() for r in self.repos.values()],
                               "settings": self.settings})
            self.dirty = False
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, self.path)

    def close(self):
        self._stop.set()
        self._flusher.join(5)
        self.flush()

    def manifest_path(self, digest):
        return os.path.join(self.manifest_dir, digest.replace(":", "-"))

    def save_manifest(self, digest, data):
        p = self.manifest_path(digest)
        if not os.path.exists(p):
            tmp = p + ".%d.tmp" % threading.get_ident()
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)

    def load_manifest(self, digest):
        with open(self.manifest_path(digest), "rb") as f:
            return f.read()
