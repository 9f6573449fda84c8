/* AWS Signature Version 4 (header form) over OpenSSL HMAC-SHA256.
 * Canonicalisation follows the AWS test suite for non-S3 services: the path
 * is normalised (dot segments removed, repeated slashes collapsed) and each
 * byte outside the unreserved set is percent-encoded; query parameters are
 * decoded, re-encoded and sorted; header values trimmed with inner runs of
 * whitespace collapsed, duplicates joined with ','. */
#include "net/sigv4.h"
#include "net/digest.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* Growable string used while building the canonical request. */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_chr(struct sbuf *b, char c) { sb_add(b, &c, 1); }

static int unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void sb_encode(struct sbuf *b, const char *s, size_t n, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			sb_chr(b, (char)c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			sb_add(b, e, 3);
		}
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into a new string ('+' is left as is). */
static char *pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

/* RFC 3986 remove_dot_segments plus collapsing of empty segments. */
static char *normalize_path(const char *path)
{
	size_t n = strlen(path);
	char *out = malloc(n + 2);
	size_t o = 0;
	const char *p = path;
	int trailing = 0;

	if (!out)
		return NULL;
	while (*p) {
		while (*p == '/')
			p++;
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t sl = (size_t)(p - seg);
		trailing = (*p == '/') || sl == 0;
		if (sl == 0)
			break;
		if (sl == 1 && seg[0] == '.') {
			trailing = 1;
			continue;
		}
		if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* drop the slash before the removed segment */
			trailing = 1;
			continue;
		}
		out[o++] = '/';
		memcpy(out + o, seg, sl);
		o += sl;
		trailing = (*p == '/');
	}
	if (o == 0 || trailing)
		out[o++] = '/';
	out[o] = '\0';
	return out;
}

struct qparam {
	char *key; /* encoded */
	char *val; /* encoded */
};

static int qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int r = strcmp(x->key, y->key);
	return r ? r : strcmp(x->val, y->val);
}

static char *encode_dup(const char *s, size_t n)
{
	char *dec = pct_decode(s, n);
	struct sbuf b = {0};
	if (!dec)
		return NULL;
	sb_encode(&b, dec, strlen(dec), 0);
	free(dec);
	if (b.oom || !b.p) {
		free(b.p);
		return b.oom ? NULL : strdup("");
	}
	return b.p;
}

static int canonical_query(struct sbuf *out, const char *query)
{
	struct qparam *ps = NULL;
	size_t np = 0, cap = 0;
	int ret = 0;

	if (!query || !*query)
		return 0;
	for (const char *p = query; *p;) {
		const char *end = p + strcspn(p, "&");
		if (end > p) {
			const char *eq = memchr(p, '=', (size_t)(end - p));
			if (np == cap) {
				cap = cap ? cap * 2 : 8;
				struct qparam *nps = realloc(ps, cap * sizeof(*ps));
				if (!nps) {
					ret = -ENOMEM;
					goto out;
				}
				ps = nps;
			}
			ps[np].key = encode_dup(p, (size_t)((eq ? eq : end) - p));
			ps[np].val = eq ? encode_dup(eq + 1, (size_t)(end - eq - 1)) : strdup("");
			np++;
			if (!ps[np - 1].key || !ps[np - 1].val) {
				ret = -ENOMEM;
				goto out;
			}
		}
		p = *end ? end + 1 : end;
	}
	qsort(ps, np, sizeof(*ps), qparam_cmp);
	for (size_t i = 0; i < np; i++) {
		if (i)
			sb_chr(out, '&');
		sb_str(out, ps[i].key);
		sb_chr(out, '=');
		sb_str(out, ps[i].val);
	}
out:
	for (size_t i = 0; i < np; i++) {
		free(ps[i].key);
		free(ps[i].val);
	}
	free(ps);
	return ret;
}

struct chdr {
	char *name;  /* lowercase */
	char *value; /* trimmed, whitespace collapsed */
	size_t order;
};

static int chdr_cmp(const void *a, const void *b)
{
	const struct chdr *x = a, *y = b;
	int r = strcmp(x->name, y->name);
	if (r)
		return r;
	return x->order < y->order ? -1 : x->order > y->order;
}

static char *lower_trim_name(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	char *o = malloc(n + 1);
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o[i] = (char)tolower((unsigned char)s[i]);
	o[n] = '\0';
	return o;
}

static char *trim_collapse(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n + 1);
	int space = 0;
	if (!out)
		return NULL;
	while (isspace((unsigned char)*s))
		s++;
	for (; *s; s++) {
		if (isspace((unsigned char)*s)) {
			space = 1;
			continue;
		}
		if (space && o)
			out[o++] = ' ';
		space = 0;
		out[o++] = *s;
	}
	out[o] = '\0';
	return out;
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;
	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

void sigv4_sha256_hex(const void *data, size_t len, char hex[65])
{
	net_sha256_hex(data, len, hex);
}

void sigv4_amz_date(time_t t, char buf[17])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int sigv4_sign(const struct sigv4_request *req, const struct sigv4_creds *creds, const char *region,
	       const char *service, const char *amz_date, char *out, size_t outsize,
	       char **canonical_out, char **sts_out)
{
	struct sbuf cr = {0}, sh = {0}, sts = {0};
	struct chdr *hs = NULL;
	char *npath = NULL;
	size_t nh = 0;
	int ret = 0;

	if (canonical_out)
		*canonical_out = NULL;
	if (sts_out)
		*sts_out = NULL;
	if (!req || !req->method || !req->path || !creds || !creds->access_key_id ||
	    !creds->secret_access_key || !region || !service || !amz_date ||
	    strlen(amz_date) != 16 || !req->payload_sha256_hex) {
		ret = -EINVAL;
		goto out;
	}

	/* Canonical request. */
	sb_str(&cr, req->method);
	sb_chr(&cr, '\n');
	npath = normalize_path(req->path[0] ? req->path : "/");
	if (!npath) {
		ret = -ENOMEM;
		goto out;
	}
	sb_encode(&cr, npath, strlen(npath), 1);
	sb_chr(&cr, '\n');
	ret = canonical_query(&cr, req->query);
	if (ret)
		goto out;
	sb_chr(&cr, '\n');

	hs = calloc(req->nheaders ? req->nheaders : 1, sizeof(*hs));
	if (!hs) {
		ret = -ENOMEM;
		goto out;
	}
	for (nh = 0; nh < req->nheaders; nh++) {
		hs[nh].name = lower_trim_name(req->headers[nh].name);
		hs[nh].value = trim_collapse(req->headers[nh].value ? req->headers[nh].value : "");
		hs[nh].order = nh;
		if (!hs[nh].name || !hs[nh].value) {
			nh++;
			ret = -ENOMEM;
			goto out;
		}
	}
	qsort(hs, nh, sizeof(*hs), chdr_cmp);
	for (size_t i = 0; i < nh; i++) {
		int dup = i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0;
		if (dup) {
			sb_chr(&cr, ',');
		} else {
			if (i) {
				sb_chr(&cr, '\n');
				sb_chr(&sh, ';');
			}
			sb_str(&cr, hs[i].name);
			sb_chr(&cr, ':');
			sb_str(&sh, hs[i].name);
		}
		sb_str(&cr, hs[i].value);
	}
	if (nh)
		sb_chr(&cr, '\n');
	sb_chr(&cr, '\n');
	if (sh.p)
		sb_str(&cr, sh.p);
	sb_chr(&cr, '\n');
	sb_str(&cr, req->payload_sha256_hex);
	if (cr.oom || sh.oom) {
		ret = -ENOMEM;
		goto out;
	}

	/* String to sign. */
	char date[9], scope[256], crhash[65];
	memcpy(date, amz_date, 8);
	date[8] = '\0';
	if ((size_t)snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, region,
			     service) >= sizeof(scope)) {
		ret = -EINVAL;
		goto out;
	}
	sigv4_sha256_hex(cr.p, cr.len, crhash);
	sb_str(&sts, "AWS4-HMAC-SHA256\n");
	sb_str(&sts, amz_date);
	sb_chr(&sts, '\n');
	sb_str(&sts, scope);
	sb_chr(&sts, '\n');
	sb_str(&sts, crhash);
	if (sts.oom) {
		ret = -ENOMEM;
		goto out;
	}

	/* Signing key: HMAC chain over date, region, service. */
	unsigned char k[32], sig[32];
	char sighex[65];
	size_t sklen = strlen(creds->secret_access_key) + 5;
	char *secret = malloc(sklen);
	if (!secret) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(secret, sklen, "AWS4%s", creds->secret_access_key);
	hmac(secret, strlen(secret), date, k);
	OPENSSL_cleanse(secret, sklen);
	free(secret);
	hmac(k, 32, region, k);
	hmac(k, 32, service, k);
	hmac(k, 32, "aws4_request", k);
	hmac(k, 32, sts.p, sig);
	OPENSSL_cleanse(k, sizeof(k));
	net_hex(sig, 32, sighex);

	int n = snprintf(out, outsize,
			 "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
			 creds->access_key_id, scope, sh.p ? sh.p : "", sighex);
	if (n < 0 || (size_t)n >= outsize) {
		ret = -ENOSPC;
		goto out;
	}
	if (canonical_out) {
		*canonical_out = cr.p;
		cr.p = NULL;
	}
	if (sts_out) {
		*sts_out = sts.p;
		sts.p = NULL;
	}
out:
	for (size_t i = 0; i < nh; i++) {
		free(hs[i].name);
		free(hs[i].value);
	}
	free(hs);
	free(npath);
	free(cr.p);
	free(sh.p);
	free(sts.p);
	return ret;
}
