#!/usr/bin/python3
"""A local Amazon ECR endpoint for tests and the demo (standard library only).

Usage: ecr_emulator.py --state-dir DIR [--port 0] [--tiny-pages N] [--accounts FILE]
Prints "READY endpoint=http://127.0.0.1:PORT registry=127.0.0.1:RPORT" once
it serves. ECR JSON 1.1 and STS on PORT; blobs and manifests are kept in a
docker-registry on RPORT that it starts and stops. See tests/emulator/README.md.
"""
import argparse
import atexit
import json
import os
import secrets
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emu_artifacts import Artifacts  # noqa: E402
from emu_auth import Accounts  # noqa: E402
from emu_ecr import Ecr  # noqa: E402
from emu_faults import Faults  # noqa: E402
from emu_http import RequestLog, Server  # noqa: E402
from emu_netmodel import NetModel  # noqa: E402
from emu_registry import Registry, RegistryError  # noqa: E402
from emu_settings import RepoSettings  # noqa: E402
from emu_sparse import sparse_blob  # noqa: E402
from emu_state import State  # noqa: E402
from emu_sts import Sts  # noqa: E402
from emu_upload import Layers  # noqa: E402


class App:
    def __init__(self, args):
        sd = os.path.abspath(args.state_dir)
        os.makedirs(sd, exist_ok=True)
        self.cfg = {"tiny_pages": args.tiny_pages, "sts_duration": None, "sts_expire_early": 0,
                    "url_expires": 600, "part_size": 10 * 1024 * 1024,
                    "min_part_size": 5 * 1024 * 1024, "max_parts": 4200}
        self.stop = threading.Event()
        self.accounts = Accounts(args.accounts)
        self.registry = Registry(os.path.join(sd, "registry"), os.path.join(sd, "registry.log"))
        self.state = State(sd)
        self.ecr = Ecr(self.state, self.registry, self.cfg)
        self.layers = Layers(self.ecr, secrets.token_bytes(32))
        self.sts = Sts(self.accounts, self.cfg)
        self.faults = Faults()
        self.net = NetModel(os.environ)  # off unless ECR_EMU_* say otherwise
        self.log = RequestLog(os.path.join(sd, "requests.jsonl"))
        self.ops = {}
        for name in ("DescribeRegistry", "DescribeRepositories", "CreateRepository",
                     "DeleteRepository", "ListImages", "DescribeImages", "BatchGetImage",
                     "PutImage", "BatchDeleteImage"):
            self.ops[name] = getattr(self.ecr, name)
        for name in ("InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload",
                     "BatchCheckLayerAvailability", "GetDownloadUrlForLayer"):
            self.ops[name] = getattr(self.layers, name)
        # Today's ECR (issue 14): settings, referrers, archive, pull time, scans.
        self.artifacts = self.ecr.artifacts = Artifacts(self.ecr)
        for obj in (RepoSettings(self.ecr), self.artifacts):
            self.ops.update((name, getattr(obj, name)) for name in obj.OPS)
        self.ops["GetDownloadUrlForLayer"] = self.ecr.download_url_guard(
            self.ops["GetDownloadUrlForLayer"])
        self.controls = {"seed_scan": self.artifacts.seed_scan,
                         "image_times": self.artifacts.set_image_times,
                         "archive_config": self.ecr.archive_config,
                         "sparse_blob": lambda args: sparse_blob(self, args)}
        self.endpoint = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tiny-pages", type=int, default=0,
                    help="force N results per page in every paginated call")
    ap.add_argument("--accounts", help="JSON file of users, grants and roles")
    args = ap.parse_args()

    app = App(args)
    stopped = threading.Event()

    def shutdown(*_):
        app.stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    atexit.register(app.registry.stop)
    try:
        app.registry.start()
    except RegistryError as e:
        print(f"ecr-emulator: {e}", file=sys.stderr)
        return 1
    server = Server(("127.0.0.1", args.port), app)
    port = server.server_address[1]
    app.endpoint = f"http://127.0.0.1:{port}"
    t = threading.Thread(target=lambda: (server.serve_forever(0.2), stopped.set()), daemon=True)
    t.start()
    info = {"endpoint": app.endpoint, "registry": app.registry.address, "pid": os.getpid()}
    with open(os.path.join(app.state.dir, "emulator.json"), "w") as f:
        json.dump(info, f)
    print(f"READY endpoint={app.endpoint} registry={app.registry.address}", flush=True)
    while not app.stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    app.state.close()
    app.registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
