/* PAX extended header records and tar name normalisation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define PAX_MAX_XATTRS 1024

int rootfs_path_norm(const char *in, char *out, size_t outsz)
{
	size_t n = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 0)
			break;
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (!(len == 1 && p[0] == '.')) {
			if (n + (n ? 1 : 0) + len + 1 > outsz)
				return -ENAMETOOLONG;
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p = e;
	}
	if (outsz == 0)
		return -ENAMETOOLONG;
	out[n] = '\0';
	return (int)n;
}

void rootfs_pax_clear(struct rootfs_pax *p)
{
	free(p->path);
	free(p->linkpath);
	for (size_t i = 0; i < p->n_xa; i++) {
		free(p->xa[i].name);
		free(p->xa[i].value);
	}
	free(p->xa);
	memset(p, 0, sizeof(*p));
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes base64 (padding optional) in place: the decoded length or -EINVAL. */
static ssize_t b64_decode(unsigned char *s, size_t len)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '=')
			break;
		int v = b64val(s[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			s[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (ssize_t)o;
}

/* %XX decoding of LIBARCHIVE.xattr names, in place. */
static void pct_decode(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '%' && s[1] && s[2]) {
			char hex[3] = {s[1], s[2], 0}, *end;
			long v = strtol(hex, &end, 16);
			if (*end == '\0' && v > 0) {
				*o++ = (char)v;
				s += 2;
				continue;
			}
		}
		*o++ = *s;
	}
	*o = '\0';
}

static int parse_u64(const char *v, size_t len, uint64_t *out)
{
	uint64_t x = 0;
	if (len == 0 || len > 19)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* "SEC[.FRAC]", possibly negative, into seconds and nanoseconds >= 0. */
static int parse_time(const char *v, size_t len, int64_t *sec, uint32_t *nsec)
{
	int neg = len > 0 && v[0] == '-';
	const char *dot = memchr(v, '.', len);
	size_t ilen = (dot ? (size_t)(dot - v) : len) - (size_t)neg;
	uint64_t s, ns = 0;
	if (parse_u64(v + neg, ilen, &s) < 0 || s > INT64_MAX / 2)
		return -EINVAL;
	if (dot) {
		size_t flen = len - (size_t)(dot - v) - 1;
		uint64_t scale = 100000000;
		for (size_t i = 0; i < flen; i++) {
			char c = dot[1 + i];
			if (c < '0' || c > '9')
				return -EINVAL;
			ns += (uint64_t)(c - '0') * scale;
			scale /= 10;
		}
	}
	*sec = neg ? -(int64_t)s : (int64_t)s;
	*nsec = (uint32_t)ns;
	if (neg && ns) {
		*sec -= 1;
		*nsec = (uint32_t)(1000000000 - ns);
	}
	return 0;
}

static int add_xattr(struct rootfs_pax *p, const char *name, size_t nlen, const char *val,
		     size_t vlen, int b64)
{
	if (p->n_xa >= PAX_MAX_XATTRS)
		return -E2BIG;
	struct rootfs_tar_xattr *xa = realloc(p->xa, (p->n_xa + 1) * sizeof(*xa));
	if (!xa)
		return -ENOMEM;
	p->xa = xa;
	char *n = strndup(name, nlen);
	unsigned char *v = malloc(vlen + 1);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	memcpy(v, val, vlen);
	ssize_t dl = (ssize_t)vlen;
	if (b64) {
		pct_decode(n);
		dl = b64_decode(v, vlen);
	}
	if (dl < 0 || !*n) {
		free(n);
		free(v);
		return -EINVAL;
	}
	/* A later record for the same name replaces the earlier one. */
	for (size_t i = 0; i < p->n_xa; i++)
		if (strcmp(p->xa[i].name, n) == 0) {
			free(p->xa[i].name);
			free(p->xa[i].value);
			p->xa[i] = p->xa[--p->n_xa];
			break;
		}
	p->xa[p->n_xa++] = (struct rootfs_tar_xattr){n, v, (size_t)dl};
	return 0;
}

static int set_str(char **dst, const char *v, size_t len)
{
	char *s = strndup(v, len);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int pax_record(struct rootfs_pax *p, const char *k, size_t klen, const char *v, size_t vlen)
{
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(k, s, klen) == 0)
#define PFX(s) (klen > sizeof(s) - 1 && memcmp(k, s, sizeof(s) - 1) == 0)
	if (KEY("path"))
		return set_str(&p->path, v, vlen);
	if (KEY("linkpath"))
		return set_str(&p->linkpath, v, vlen);
	if (KEY("size"))
		return (p->has_size = parse_u64(v, vlen, &p->size) == 0) ? 0 : -EINVAL;
	if (KEY("uid"))
		return (p->has_uid = parse_u64(v, vlen, &p->uid) == 0) ? 0 : -EINVAL;
	if (KEY("gid"))
		return (p->has_gid = parse_u64(v, vlen, &p->gid) == 0) ? 0 : -EINVAL;
	if (KEY("mtime"))
		return (p->has_mtime = parse_time(v, vlen, &p->mtime, &p->nsec) == 0) ? 0 : -EINVAL;
	if (PFX("SCHILY.xattr."))
		return add_xattr(p, k + 13, klen - 13, v, vlen, 0);
	if (PFX("LIBARCHIVE.xattr."))
		return add_xattr(p, k + 17, klen - 17, v, vlen, 1);
	if (PFX("GNU.sparse."))
		p->sparse = 1;
	return 0; /* uname, gname, atime, ctime, comments: not shown */
#undef KEY
#undef PFX
}

int rootfs_pax_parse(const unsigned char *buf, size_t len, struct rootfs_pax *p)
{
	size_t pos = 0;
	while (pos < len) {
		if (buf[pos] == '\0')
			break; /* NUL padding after the last record */
		size_t rlen = 0, i = pos;
		while (i < len && buf[i] >= '0' && buf[i] <= '9' && rlen < len)
			rlen = rlen * 10 + (size_t)(buf[i++] - '0');
		if (i >= len || buf[i] != ' ' || rlen <= i - pos + 1 || rlen > len - pos ||
		    buf[pos + rlen - 1] != '\n')
			return -EINVAL;
		const char *k = (const char *)buf + i + 1;
		const char *end = (const char *)buf + pos + rlen - 1;
		const char *eq = memchr(k, '=', (size_t)(end - k));
		if (!eq)
			return -EINVAL;
		int rc = pax_record(p, k, (size_t)(eq - k), eq + 1, (size_t)(end - eq - 1));
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			log_warn("rootfs: ignoring a bad PAX record %.*s", (int)(eq - k), k);
		pos += rlen;
	}
	return 0;
}

int rootfs_pax_merge(struct rootfs_pax *dst, const struct rootfs_pax *src)
{
	if (src->has_uid)
		dst->uid = src->uid, dst->has_uid = 1;
	if (src->has_gid)
		dst->gid = src->gid, dst->has_gid = 1;
	if (src->has_mtime)
		dst->mtime = src->mtime, dst->nsec = src->nsec, dst->has_mtime = 1;
	for (size_t i = 0; i < src->n_xa; i++) {
		int rc = add_xattr(dst, src->xa[i].name, strlen(src->xa[i].name),
				   (const char *)src->xa[i].value, src->xa[i].len, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}
