"""SigV4 verification: rebuild the canonical request from the raw request.

The handler gives us what came over the wire (method, raw path with query,
header list, body) so a client that signs something else than it sends is
caught, as AWS would catch it.
"""
import calendar
import hashlib
import hmac
import time
import urllib.parse

ALGO = "AWS4-HMAC-SHA256"
MAX_SKEW = 300  # seconds, as AWS


class AuthError(Exception):
    """kind: missing | unknown_key | bad_signature | expired_token |
    skew | scope | incomplete. The protocol layer picks ECR or STS codes."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _uri_encode(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def canonical_query(raw_query):
    pairs = []
    if raw_query:
        for part in raw_query.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            k = urllib.parse.unquote(k)
            v = urllib.parse.unquote(v)
            pairs.append((_uri_encode(k), _uri_encode(v)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_uri(raw_path):
    # Non-S3 services encode the (already encoded) path once more.
    path = raw_path or "/"
    return _uri_encode(path, safe="/-_.~")


def _norm_value(v):
    return " ".join(v.strip().split())


def canonical_request(method, raw_target, headers, signed, payload_hash):
    path, _, query = raw_target.partition("?")
    lines = [method, canonical_uri(path), canonical_query(query)]
    by_name = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(_norm_value(value))
    for h in signed:
        lines.append(f"{h}:{','.join(by_name.get(h, []))}")
    lines.append("")
    lines.append(";".join(signed))
    lines.append(payload_hash)
    return "\n".join(lines)


def signing_key(secret, date, region, service):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def parse_authorization(value):
    if not value or not value.startswith(ALGO + " "):
        raise AuthError("incomplete", "Authorization header requires 'Credential' parameter. "
                        "Authorization header requires 'Signature' parameter. "
                        "Authorization header requires 'SignedHeaders' parameter.")
    fields = {}
    for item in value[len(ALGO) + 1:].split(","):
        k, _, v = item.strip().partition("=")
        fields[k] = v
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise AuthError("incomplete", " ".join(
            f"Authorization header requires '{k}' parameter." for k in missing))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthError("scope", "Credential should be scoped to a valid region.")
    return {
        "akid": scope[0], "date": scope[1], "region": scope[2],
        "service": scope[3], "signed": fields["SignedHeaders"].split(";"),
        "signature": fields["Signature"],
    }


def _fmt(t):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def peek_akid(headers):
    """The access key id a request is signed with (for the request log; not
    a secret), or None."""
    for name, value in headers:
        if name.lower() == "authorization":
            i = value.find("Credential=")
            if i >= 0:
                return value[i + 11:].split("/", 1)[0] or None
    return None


def verify(method, raw_target, headers, body, service, lookup, now=None):
    """Check one request. lookup(akid, token) returns the identity dict
    (with 'secret') or raises AuthError. Returns (identity, region)."""
    hdr = {}
    for name, value in headers:
        hdr.setdefault(name.lower(), value)
    auth = parse_authorization(hdr.get("authorization"))
    token = hdr.get("x-amz-security-token")
    ident = lookup(auth["akid"], token)

    amz_date = hdr.get("x-amz-date", "")
    try:
        t = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise AuthError("bad_signature", "Authorization header requires existence of "
                        "either a 'X-Amz-Date' or a 'Date' header.")
    now = time.time() if now is None else now
    if t < now - MAX_SKEW:
        raise AuthError("skew", f"Signature expired: {amz_date} is now earlier than "
                        f"{_fmt(now - MAX_SKEW)} ({_fmt(now)} - 5 min.)")
    if t > now + MAX_SKEW:
        raise AuthError("skew", f"Signature not yet current: {amz_date} is still later "
                        f"than {_fmt(now + MAX_SKEW)} ({_fmt(now)} + 5 min.)")
    if auth["date"] != amz_date[:8]:
        raise AuthError("scope", f"Date in Credential scope does not match YYYYMMDD from "
                        f"ISO-8601 version of date from HTTP: '{auth['date']}' != "
                        f"'{amz_date[:8]}', from '{amz_date}'.")
    if auth["service"] != service:
        raise AuthError("scope", f"Credential should be scoped to correct service: '{service}'. ")
    if "host" not in auth["signed"]:
        raise AuthError("bad_signature", "'Host' or ':authority' must be a 'SignedHeader' "
                        "in the AWS Authorization.")

    payload = hashlib.sha256(body).hexdigest()
    creq = canonical_request(method, raw_target, headers, auth["signed"], payload)
    scope = f"{auth['date']}/{auth['region']}/{service}/aws4_request"
    sts = "\n".join([ALGO, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(ident["secret"], auth["date"], auth["region"], service)
    want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, auth["signature"]):
        raise AuthError("bad_signature", "The request signature we calculated does not match "
                        "the signature you provided. Check your AWS Secret Access Key and "
                        "signing method. Consult the service documentation for details.")
    return ident, auth["region"]


def peek_scope(headers):
    """Region and service of a request's credential scope, or (None, None)."""
    for name, value in headers:
        if name.lower() == "authorization":
            try:
                a = parse_authorization(value)
                return a["region"], a["service"]
            except AuthError:
                break
    return None, None
