/* Test helpers: a gzip layer compressed with a sync flush every SPAN bytes
 * of tar (checkpoints on byte-aligned block boundaries) and its zTOC, a
 * flatbuffer of the soci-snapshotter's ztoc.fbs written forward by a tiny
 * writer (every table: a vtable, then one 8-byte slot per field; every
 * reference points forward). */
#ifndef TEST_ZTOC_UTIL_H
#define TEST_ZTOC_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

struct fbw {
	unsigned char *b;
	size_t len, cap;
};

static inline size_t fbw_put(struct fbw *w, const void *p, size_t n)
{
	size_t at = w->len;
	if (w->len + n + 8 > w->cap) {
		w->cap = (w->len + n + 8) * 2;
		w->b = realloc(w->b, w->cap);
	}
	if (p)
		memcpy(w->b + w->len, p, n);
	else
		memset(w->b + w->len, 0, n);
	w->len += n;
	while (w->len % 4)
		w->b[w->len++] = 0;
	return at;
}

static inline void fbw_le(struct fbw *w, size_t at, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		w->b[at + i] = (unsigned char)v;
}

/* A table of nf fields (present: bit i of mask); its position. */
static inline size_t fbw_table(struct fbw *w, unsigned nf, uint32_t mask)
{
	unsigned char vt[4 + 2 * 32] = {0};
	fbw_le(&(struct fbw){vt, 0, 0}, 0, 4 + 2 * nf, 2);
	fbw_le(&(struct fbw){vt, 0, 0}, 2, 4 + 8 * nf, 2);
	for (unsigned i = 0; i < nf; i++)
		if (mask >> i & 1)
			fbw_le(&(struct fbw){vt, 0, 0}, 4 + 2 * i, 4 + 8 * i, 2);
	size_t v = fbw_put(w, vt, 4 + 2 * nf);
	size_t t = fbw_put(w, NULL, 4 + 8 * nf);
	fbw_le(w, t, (uint64_t)(uint32_t)(int32_t)(t - v), 4);
	return t;
}

static inline size_t fbw_field(size_t t, unsigned i) { return t + 4 + 8 * i; }

/* Points the uoffset at `at` to `target` (written later: forward). */
static inline void fbw_ref(struct fbw *w, size_t at, size_t target)
{
	fbw_le(w, at, target - at, 4);
}

static inline size_t fbw_str(struct fbw *w, const char *s, size_t n)
{
	size_t at = fbw_put(w, NULL, 4);
	fbw_le(w, at, n, 4);
	size_t p = w->len;
	fbw_put(w, NULL, n + 1);
	memcpy(w->b + p, s, n);
	return at;
}

/* A vector of n elements of elem bytes: its position (length first). */
static inline size_t fbw_vec(struct fbw *w, uint32_t n, size_t elem, const void *data)
{
	size_t at = fbw_put(w, NULL, 4);
	fbw_le(w, at, n, 4);
	size_t p = w->len;
	fbw_put(w, NULL, n * elem);
	if (data)
		memcpy(w->b + p, data, n * elem);
	return at;
}

struct zt_ent {
	const char *name, *type, *link, *mtime;
	uint64_t off, size, mode, uid, gid;
	const char *xk, *xv; /* one PAX record, or NULL */
};

struct zt_ck {
	uint64_t in, out;
};

/* gzip of tar with a sync flush every span bytes; ck[] (at most 64) gets
 * the checkpoints. */
static inline unsigned char *zt_gzip(const unsigned char *tar, size_t len, size_t span,
				     struct zt_ck *ck, size_t *nck, size_t *gz_len)
{
	static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
	z_stream zs = {0};
	size_t cap = len + len / 8 + 4096, n = 10;
	unsigned char *out = malloc(cap);
	memcpy(out, head, 10);
	deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
	*nck = 0;
	for (size_t off = 0; off < len || off == 0; off += span) {
		ck[*nck].in = n;
		ck[(*nck)++].out = off;
		zs.next_in = (unsigned char *)tar + off;
		zs.avail_in = (uInt)(len - off < span ? len - off : span);
		zs.next_out = out + n;
		zs.avail_out = (uInt)(cap - n);
		deflate(&zs, off + span >= len ? Z_FINISH : Z_SYNC_FLUSH);
		n = cap - zs.avail_out;
		if (off + span >= len)
			break;
	}
	deflateEnd(&zs);
	uint32_t crc = (uint32_t)crc32(0, tar, (uInt)len), isz = (uint32_t)len;
	for (int i = 0; i < 4; i++)
		out[n++] = (unsigned char)(crc >> (8 * i));
	for (int i = 0; i < 4; i++)
		out[n++] = (unsigned char)(isz >> (8 * i));
	*gz_len = n;
	return out;
}

static inline void zt_sha(const unsigned char *p, size_t n, char out[72])
{
	unsigned char md[32];
	EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL);
	strcpy(out, "sha256:");
	for (int i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* The zTOC of (tar, gz): ents[n], checkpoints ck[nck]; digests 0: none. */
static inline unsigned char *zt_ztoc(const unsigned char *tar, size_t tar_len,
				     const unsigned char *gz, size_t gz_len,
				     const struct zt_ent *ents, size_t n, const struct zt_ck *ck,
				     size_t nck, int digests, size_t *out_len)
{
	struct fbw w = {0};
	size_t root_ref = fbw_put(&w, NULL, 4);
	size_t root = fbw_table(&w, 6, 0x3f);
	fbw_ref(&w, root_ref, root);
	fbw_le(&w, fbw_field(root, 2), gz_len, 8);
	fbw_le(&w, fbw_field(root, 3), tar_len, 8);
	fbw_ref(&w, fbw_field(root, 0), fbw_str(&w, "0.9", 3));
	fbw_ref(&w, fbw_field(root, 1), fbw_str(&w, "ecrfs unit", 10));
	size_t toc = fbw_table(&w, 1, 1);
	fbw_ref(&w, fbw_field(root, 4), toc);
	size_t mv = fbw_vec(&w, (uint32_t)n, 4, NULL);
	fbw_ref(&w, fbw_field(toc, 0), mv);
	for (size_t i = 0; i < n; i++) {
		const struct zt_ent *e = &ents[i];
		size_t t = fbw_table(&w, 14, 0x3fff);
		fbw_ref(&w, mv + 4 + 4 * i, t);
		fbw_le(&w, fbw_field(t, 2), e->off, 8);
		fbw_le(&w, fbw_field(t, 3), e->size, 8);
		fbw_le(&w, fbw_field(t, 5), e->mode, 8);
		fbw_le(&w, fbw_field(t, 6), e->uid, 4);
		fbw_le(&w, fbw_field(t, 7), e->gid, 4);
		const char *strs[] = {e->name, e->type, e->link ? e->link : "",
				      "root",  "root",	e->mtime};
		const unsigned slots[] = {0, 1, 4, 8, 9, 10};
		for (int k = 0; k < 6; k++)
			fbw_ref(&w, fbw_field(t, slots[k]), fbw_str(&w, strs[k], strlen(strs[k])));
		size_t xv = fbw_vec(&w, e->xk ? 1 : 0, 4, NULL);
		fbw_ref(&w, fbw_field(t, 13), xv);
		if (e->xk) {
			size_t x = fbw_table(&w, 2, 3);
			fbw_ref(&w, xv + 4, x);
			fbw_ref(&w, fbw_field(x, 0), fbw_str(&w, e->xk, strlen(e->xk)));
			fbw_ref(&w, fbw_field(x, 1), fbw_str(&w, e->xv, strlen(e->xv)));
		}
	}
	size_t ci = fbw_table(&w, 4, 0xf);
	fbw_ref(&w, fbw_field(root, 5), ci);
	fbw_le(&w, fbw_field(ci, 0), 1, 1);
	fbw_le(&w, fbw_field(ci, 1), nck - 1, 4);
	size_t dv = fbw_vec(&w, digests ? (uint32_t)nck : 0, 4, NULL);
	fbw_ref(&w, fbw_field(ci, 2), dv);
	for (size_t i = 0; digests && i < nck; i++) {
		char d[72];
		size_t end = i + 1 < nck ? ck[i + 1].in : gz_len;
		zt_sha(gz + ck[i].in, end - ck[i].in, d);
		fbw_ref(&w, dv + 4 + 4 * i, fbw_str(&w, d, 71));
	}
	size_t zlen = 12 + nck * (17 + 32768);
	unsigned char *z = calloc(1, zlen);
	fbw_le(&(struct fbw){z, 0, 0}, 0, nck, 4);
	fbw_le(&(struct fbw){z, 0, 0}, 4, 65536, 8);
	for (size_t i = 0; i < nck; i++) {
		unsigned char *p = z + 12 + i * (17 + 32768);
		fbw_le(&(struct fbw){p, 0, 0}, 0, ck[i].in, 8);
		fbw_le(&(struct fbw){p, 0, 0}, 8, ck[i].out, 8);
		size_t wl = ck[i].out < 32768 ? ck[i].out : 32768;
		memcpy(p + 17 + 32768 - wl, tar + ck[i].out - wl, wl);
	}
	fbw_ref(&w, fbw_field(ci, 3), fbw_vec(&w, (uint32_t)zlen, 1, z));
	free(z);
	*out_len = w.len;
	return w.b;
}

#endif
