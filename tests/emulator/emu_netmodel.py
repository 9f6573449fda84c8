"""A modelled network (README "Benchmarks"): loopback flatters a single stream, so
the emulator can make download URLs and API calls behave more like EC2's
path to S3 and ECR. Off by default; three knobs:

  get_rate        bytes/s of each download GET (per request; 0 = no cap)
  first_byte_ms   delay before a download URL's reply starts
  api_ms          delay of every ECR/STS call (its round trip)

Set at start by ECR_EMU_GET_RATE (bytes/s, or with a K/M/G suffix for
KiB/MiB/GiB: "64M"), ECR_EMU_FIRST_BYTE_MS and ECR_EMU_API_MS, and at any
time by POST /_emu/netmodel (GET answers the current model).

A fourth knob, hold (0 or 1, control URL only), models a path that stops
carrying bytes mid-stream: while it is 1 the bodies of rate-capped GETs
already in flight pause (connections open, no bytes), and go on where they
were when it returns to 0. Tests use it to stall downloads that started
before a fault, which a fault on new requests cannot reach.
"""
import threading
import time

KEYS = ("get_rate", "first_byte_ms", "api_ms", "hold")
ENV = {"get_rate": "ECR_EMU_GET_RATE", "first_byte_ms": "ECR_EMU_FIRST_BYTE_MS",
       "api_ms": "ECR_EMU_API_MS"}
SLICE_S = 0.01            # a paced GET sends about 10 ms of its rate at a time
SLICE_MIN = 16 * 1024
SLICE_MAX = 4 * 1024 * 1024
MAX_DELAY_MS = 60_000
HOLD_POLL_S = 0.02        # a held GET looks for the hold's end this often


def parse_rate(text):
    """"67108864", "64M", "512k", "1G" -> bytes/s (binary suffixes)."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    return int(float(t) * mult)


class NetModel:
    def __init__(self, environ=None):
        self.lock = threading.Lock()  # protects self.cfg (replaced whole)
        self.cfg = {k: 0 for k in KEYS}
        env = environ or {}
        self.update({k: env[v] for k, v in ENV.items() if env.get(v, "").strip()})

    def update(self, args):
        bad = set(args) - set(KEYS)
        if bad:
            raise ValueError(f"unknown netmodel keys {sorted(bad)}; known: {list(KEYS)}")
        new = dict(self.cfg)
        for k, v in args.items():
            n = parse_rate(v) if k == "get_rate" else int(v)
            if n < 0 or (k != "get_rate" and n > MAX_DELAY_MS) or (k == "hold" and n > 1):
                raise ValueError(f"netmodel {k}={v} out of range")
            new[k] = n
        with self.lock:
            self.cfg = new
        return dict(new)

    def get(self):
        with self.lock:
            return dict(self.cfg)

    def api_delay(self):
        ms = self.cfg["api_ms"]
        if ms:
            time.sleep(ms / 1000.0)

    def first_byte_delay(self):
        ms = self.cfg["first_byte_ms"]
        if ms:
            time.sleep(ms / 1000.0)

    def pacer(self):
        """A Pacer for one GET's body, or None when its rate is not capped."""
        rate = self.cfg["get_rate"]
        return Pacer(rate, self) if rate else None

    def held(self):
        return self.cfg["hold"] != 0


class Pacer:
    """Releases a body at `rate` bytes/s in slices of about SLICE_S: the
    sender sleeps between slices (sendfile of a slice, then sleep), so a
    capped GET costs a few wakeups per 10 ms, not a busy loop. A reader
    that falls behind does not earn a burst later (at most one slice of
    credit), as on a link."""

    def __init__(self, rate, model):
        self.model = model
        self.rate = float(rate)
        self.slice = max(SLICE_MIN, min(SLICE_MAX, int(rate * SLICE_S)))
        self.next = time.monotonic()

    def wait(self, nbytes):
        """Sleeps until nbytes more may leave (and while the model holds)."""
        if self.model.held():
            while self.model.held():
                time.sleep(HOLD_POLL_S)
            self.next = time.monotonic()
        now = time.monotonic()
        if self.next > now:
            time.sleep(self.next - now)
        else:
            self.next = max(self.next, now - self.slice / self.rate)
        self.next += nbytes / self.rate
