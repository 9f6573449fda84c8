"""A small SigV4 signer (client side) for test helpers."""
import hashlib
import hmac
import time
import urllib.parse


def _enc(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def sign(method, url, headers, body, akid, secret, region, service, token=None, now=None):
    """Returns a new header dict with Host, X-Amz-Date, Authorization (and
    X-Amz-Security-Token) for the request."""
    u = urllib.parse.urlsplit(url)
    t = time.gmtime(time.time() if now is None else now)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", t)
    date = amz_date[:8]
    h = {k: v for k, v in headers.items()}
    h["Host"] = u.netloc
    h["X-Amz-Date"] = amz_date
    if token:
        h["X-Amz-Security-Token"] = token
    names = sorted(k.lower() for k in h)
    low = {k.lower(): " ".join(str(v).strip().split()) for k, v in h.items()}
    pairs = sorted((_enc(k), _enc(v)) for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    creq = "\n".join([
        method, _enc(u.path or "/", safe="/-_.~"), "&".join(f"{k}={v}" for k, v in pairs),
        "".join(f"{n}:{low[n]}\n" for n in names), ";".join(names),
        hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return h
