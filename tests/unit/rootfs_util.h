/* Helpers for the rootfs unit tests: tar streams written byte by byte
 * (ustar, PAX, GNU long names, base-256), gzip, and index building. */
#ifndef TEST_ROOTFS_UTIL_H
#define TEST_ROOTFS_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "fs/rootfs/rootfs.h"

struct tb {
	unsigned char *buf;
	size_t len, cap;
};

struct tb_ent {
	const char *name, *link, *prefix;
	char type;
	uint32_t mode, uid, gid, major, minor;
	int64_t mtime;
	const void *data;
	uint64_t size; /* header size field; data bytes written = data ? size : 0 */
	int b256;      /* size, uid and mtime in base-256 */
	int bad_checksum;
};

static inline void tb_put(struct tb *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->buf = realloc(b->buf, b->cap);
	}
	if (p)
		memcpy(b->buf + b->len, p, n);
	else
		memset(b->buf + b->len, 0, n);
	b->len += n;
}

static inline void tb_pad(struct tb *b)
{
	size_t r = b->len % 512;
	if (r)
		tb_put(b, NULL, 512 - r);
}

/* len-1 octal digits and a NUL, the high digits cut when v does not fit
 * (as a tar writer must not let happen: tests use base-256 for those). */
static inline void tb_octal(unsigned char *f, size_t len, uint64_t v)
{
	f[len - 1] = 0;
	for (size_t i = len - 1; i-- > 0; v >>= 3)
		f[i] = (unsigned char)('0' + (v & 7));
}

static inline void tb_b256(unsigned char *f, size_t len, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (size_t i = len; i-- > 0;) {
		f[i] = (unsigned char)(u & 0xff);
		u >>= 8;
	}
	f[0] = v < 0 ? 0xff : 0x80;
}

static inline void tb_entry(struct tb *b, const struct tb_ent *e)
{
	unsigned char h[512] = {0};
	strncpy((char *)h, e->name, 100);
	tb_octal(h + 100, 8, e->mode);
	if (e->b256) {
		tb_b256(h + 108, 8, e->uid);
		tb_b256(h + 124, 12, (int64_t)e->size);
		tb_b256(h + 136, 12, e->mtime);
	} else {
		tb_octal(h + 108, 8, e->uid);
		tb_octal(h + 124, 12, e->size);
		tb_octal(h + 136, 12, (uint64_t)e->mtime);
	}
	tb_octal(h + 116, 8, e->gid);
	h[156] = (unsigned char)(e->type ? e->type : '0');
	if (e->link)
		strncpy((char *)h + 157, e->link, 100);
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	tb_octal(h + 329, 8, e->major);
	tb_octal(h + 337, 8, e->minor);
	if (e->prefix)
		strncpy((char *)h + 345, e->prefix, 155);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += h[i];
	tb_octal(h + 148, 7, sum + (e->bad_checksum ? 1 : 0));
	tb_put(b, h, 512);
	if (e->data) {
		tb_put(b, e->data, e->size);
		tb_pad(b);
	}
}

static inline void tb_file(struct tb *b, const char *name, const char *content, uint32_t mode)
{
	tb_entry(b, &(struct tb_ent){.name = name,
				     .type = '0',
				     .mode = mode,
				     .data = content,
				     .size = strlen(content),
				     .mtime = 1700000000});
}

static inline void tb_dir(struct tb *b, const char *name)
{
	tb_entry(b, &(struct tb_ent){.name = name, .type = '5', .mode = 0755, .mtime = 1700000000});
}

/* A PAX header of type t ('x' or 'g') with n key/value records. */
static inline void tb_pax(struct tb *b, char t, size_t n, const char *const *kv)
{
	struct tb rec = {0};
	for (size_t i = 0; i < n; i++) {
		size_t body = strlen(kv[2 * i]) + strlen(kv[2 * i + 1]) + 3, len = body + 1;
		while (snprintf(NULL, 0, "%zu", len) + body != len)
			len++;
		char *line = malloc(len + 1);
		snprintf(line, len + 1, "%zu %s=%s\n", len, kv[2 * i], kv[2 * i + 1]);
		tb_put(&rec, line, len);
		free(line);
	}
	tb_entry(
	    b, &(struct tb_ent){
		   .name = "PaxHeader", .type = t, .data = rec.buf, .size = rec.len, .mode = 0644});
	free(rec.buf);
}

static inline void tb_gnu_long(struct tb *b, char t, const char *s)
{
	tb_entry(b, &(struct tb_ent){
			.name = "././@LongLink", .type = t, .data = s, .size = strlen(s) + 1});
}

static inline void tb_end(struct tb *b) { tb_put(b, NULL, 1024); }

static inline void sha256_digest(const void *p, size_t n, char out[72])
{
	unsigned char md[32];
	EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL);
	strcpy(out, "sha256:");
	for (size_t i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* gzip of in (one member). */
static inline unsigned char *gz(const void *in, size_t len, int level, size_t *out_len)
{
	z_stream zs = {0};
	deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	size_t cap = deflateBound(&zs, len) + 64;
	unsigned char *out = malloc(cap);
	zs.next_in = (unsigned char *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	deflate(&zs, Z_FINISH);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* Builds an index from blob in chunks of `chunk` bytes (digest from the blob
 * unless given). Returns the build's result. */
static inline int build_ix(const void *blob, size_t len, uint32_t span, size_t chunk,
			   const char *digest, const struct rootfs_build_opts *opts,
			   struct rootfs_index **out)
{
	char d[72];
	struct rootfs_build *b = NULL;
	struct rootfs_build_opts o = {.span_bytes = span};
	if (opts)
		o = *opts;
	if (!digest) {
		sha256_digest(blob, len, d);
		digest = d;
	}
	*out = NULL;
	int rc = rootfs_build_new(digest, ROOTFS_COMP_AUTO, &o, &b);
	for (size_t off = 0; rc == 0 && off < len; off += chunk)
		rc = rootfs_build_feed(b, (const char *)blob + off,
				       len - off < chunk ? len - off : chunk);
	if (rc == 0)
		rc = rootfs_build_finish(b, out);
	rootfs_build_free(b);
	return rc;
}

/* A source over a memory blob; flip >= 0 corrupts that byte on reads. */
struct mem_src {
	const unsigned char *p;
	size_t len;
	long long flip;
	unsigned reads;
};

static inline int mem_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct mem_src *m = arg;
	m->reads++;
	if (off > m->len || len > m->len - off)
		return -EIO;
	memcpy(buf, m->p + off, len);
	if (m->flip >= 0 && (uint64_t)m->flip >= off && (uint64_t)m->flip < off + len)
		((unsigned char *)buf)[m->flip - (long long)off] ^= 0x55;
	return 0;
}

#endif
