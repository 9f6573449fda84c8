"""Start and drive the local ECR emulator (tests/emulator/ecr_emulator.py).

    with Emulator() as emu:
        env = dict(os.environ, **emu.env())      # for ecrfs and the AWS CLI
        emu.aws("describe-repositories")         # /usr/bin/aws ... --output json
        emu.fault(op="UploadLayerPart", kind="http503", nth=2)
        emu.count("PutImage", repo="team/app")

The emulator gets SIGTERM when the thread that started it ends
(PR_SET_PDEATHSIG), so no emulator outlives a killed test run: start it
from a thread that lives as long as you need it (pytest fixtures do).
"""
import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
EMULATOR = os.path.join(SRC, "emulator", "ecr_emulator.py")
ACCOUNTS_FILE = os.path.join(SRC, "emulator", "accounts.json")
PYTHON = "/usr/bin/python3"
AWS = "/usr/bin/aws"

with open(ACCOUNTS_FILE) as _f:
    ACCOUNTS = json.load(_f)
# account -> (access key, secret) of its "dev" user (the first listed)
KEYS = {}
for _u in ACCOUNTS["users"]:
    KEYS.setdefault(_u["account"], (_u["access_key"], _u["secret_key"]))
SECRETS = {u["access_key"]: u["secret_key"] for u in ACCOUNTS["users"]}
READONLY_KEY = "AKIAEMURO1AAAAAAAAAA"
# The knobs as the emulator starts (ecr_emulator.py, without --tiny-pages).
DEFAULT_KNOBS = {"tiny_pages": 0, "sts_duration": None, "sts_expire_early": 0, "url_expires": 600,
                 "part_size": 10 * 1024 * 1024, "min_part_size": 5 * 1024 * 1024,
                 "max_parts": 4200}
# The modelled network (emu_netmodel.py): off.
NETMODEL_OFF = {"get_rate": 0, "first_byte_ms": 0, "api_ms": 0, "hold": 0}
NETMODEL_ENV = {"get_rate": "ECR_EMU_GET_RATE", "first_byte_ms": "ECR_EMU_FIRST_BYTE_MS",
                "api_ms": "ECR_EMU_API_MS"}


class EmulatorError(Exception):
    pass


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Emulator:
    def __init__(self, state_dir=None, tiny_pages=0, accounts=None, port=0, netmodel=None):
        self._own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="ecr-emu-")
        self.tiny_pages = tiny_pages
        self.accounts = accounts
        self.port = port
        self.netmodel_at_start = netmodel or {}  # passed as ECR_EMU_* variables
        self.proc = None
        self.endpoint = None
        self.registry = None

    # -- life cycle ------------------------------------------------------------
    def start(self, timeout=60):
        os.makedirs(self.state_dir, exist_ok=True)
        cmd = [PYTHON, EMULATOR, "--state-dir", self.state_dir, "--port", str(self.port)]
        if self.tiny_pages:
            cmd += ["--tiny-pages", str(self.tiny_pages)]
        if self.accounts:
            cmd += ["--accounts", self.accounts]
        env = dict(os.environ)
        env.update({NETMODEL_ENV[k]: str(v) for k, v in self.netmodel_at_start.items()})
        log = open(os.path.join(self.state_dir, "emulator.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline and not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = os.read(self.proc.stdout.fileno(), 4096)
                if not b:
                    break
                line += b
        if not line.startswith(b"READY "):
            self.stop()
            try:
                with open(os.path.join(self.state_dir, "emulator.log"), errors="replace") as f:
                    tail = f.read()[-2000:]
            except OSError:
                tail = ""
            raise EmulatorError(f"emulator did not start: {line!r}; "
                                f"{self.state_dir}/emulator.log ends with:\n{tail}")
        kv = dict(f.split("=", 1) for f in line.decode().split()[1:])
        self.endpoint = kv["endpoint"]
        self.registry = kv["registry"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        return self

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            p.stdout.close()

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- credentials and environment -----------------------------------------
    @staticmethod
    def credentials(account="111111111111", access_key=None):
        if access_key:
            return access_key, SECRETS[access_key]
        return KEYS[account]

    def env(self, account="111111111111", region="us-east-1", access_key=None):
        """Environment for ecrfs and the AWS CLI: keys, region, endpoints,
        and empty config/credentials files so nothing of the user's leaks in."""
        akid, secret = self.credentials(account, access_key)
        cfg = os.path.join(self.state_dir, "aws-config")
        creds = os.path.join(self.state_dir, "aws-credentials")
        for p in (cfg, creds):
            if not os.path.exists(p):
                open(p, "w").close()
        return {
            "AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL_ECR": self.endpoint, "AWS_ENDPOINT_URL_STS": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": cfg, "AWS_SHARED_CREDENTIALS_FILE": creds,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def aws_run(self, *args, account="111111111111", region="us-east-1", service="ecr",
                access_key=None, env=None, timeout=120):
        """Runs /usr/bin/aws SERVICE ARGS; returns the CompletedProcess."""
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)}
        e.update(self.env(account, region, access_key))
        e.pop("AWS_SESSION_TOKEN", None)
        if env:
            e.update(env)
        cmd = [AWS, "--endpoint-url", self.endpoint, "--output", "json", "--region", region,
               service] + [str(a) for a in args]
        return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)

    def aws(self, *args, **kw):
        """Runs /usr/bin/aws SERVICE ARGS and returns its parsed JSON output;
        raises EmulatorError with stderr on failure."""
        r = self.aws_run(*args, **kw)
        if r.returncode != 0:
            raise EmulatorError(f"aws {' '.join(map(str, args))}: rc={r.returncode}: "
                                f"{r.stderr.strip()}")
        return json.loads(r.stdout) if r.stdout.strip() else {}

    # -- control API -----------------------------------------------------------
    def control(self, op, body=None, method=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint}/_emu/{op}", data=data,
                                     method=method or ("POST" if data is not None else "GET"))
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def fault(self, **spec):
        """Injects a fault (see emu_faults.py); returns its id."""
        return self.control("fault", spec)["id"]

    def faults(self):
        return self.control("faults")

    def clear_faults(self):
        self.control("clear_faults", {})

    def config(self, **kv):
        return self.control("config", kv)

    def log(self):
        return self.control("log")

    def netmodel(self, **kv):
        """Sets knobs of the modelled network (get_rate bytes/s per GET,
        first_byte_ms, api_ms; 0 = off) and returns the model; no argument:
        just returns it."""
        return self.control("netmodel", kv or None)

    @contextlib.contextmanager
    def network(self, **kv):
        """with emu.network(get_rate=64 << 20, first_byte_ms=20, api_ms=30):
        the modelled network inside, off again afterwards."""
        self.netmodel(**kv)
        try:
            yield self
        finally:
            self.netmodel(**NETMODEL_OFF)

    @contextlib.contextmanager
    def pristine(self, reset_log=False):
        """with emu.pristine(): no faults and the default knobs inside (the
        request log emptied too with reset_log), and again afterwards."""
        self.clear_faults()
        self.config(**DEFAULT_KNOBS)
        self.netmodel(**NETMODEL_OFF)
        if reset_log:
            self.reset_log()
        try:
            yield self
        finally:
            self.clear_faults()
            self.config(**DEFAULT_KNOBS)
            self.netmodel(**NETMODEL_OFF)

    def reset_log(self):
        self.control("reset_log", {})

    def count(self, op=None, **filters):
        """Number of logged requests with this op (any if None) whose fields
        equal the filters, e.g. count("PutImage", repo="a", status=200)."""
        n = 0
        for e in self.log():
            if op is not None and e.get("op") != op:
                continue
            if all(e.get(k) == v for k, v in filters.items()):
                n += 1
        return n

    def corrupt_blob(self, digest, offset=0, length=1, data=None):
        body = {"digest": digest, "offset": offset, "length": length}
        if data is not None:
            import base64
            body["data_b64"] = base64.b64encode(data).decode()
        return self.control("corrupt_blob", body)["path"]

    def expire_credentials(self):
        """Every temporary (AssumeRole) credential expires now."""
        self.control("expire_credentials", {})
