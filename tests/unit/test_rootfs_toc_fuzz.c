/* Seeded mutation test of the TOC parsers (fs/rootfs/estargz.c,
 * zstd_chunked.c, toc.c): valid eStargz and zstd:chunked layers are made
 * here, then their TOC JSON, compressed TOC, footer and annotation are
 * mutated (bit flips, bytes set to JSON punctuation, truncations, huge
 * numbers, repeated slices) thousands of times within a time bound. Every
 * input sits in a buffer of its exact size, so under ASan a read outside it
 * fails the test; an index that parses is read whole through the span
 * reader and merged into a tree. The valid seeds must give the right bytes.
 *   test_rootfs_toc_fuzz [ITERATIONS [SEED]] */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "fs/rootfs/rootfs.h"
#include "net/log.h"

#define LAYER "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define TIME_BOUND 25 /* seconds per parser */

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct buf {
	unsigned char *p;
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void sha_hex(const void *p, size_t n, char out[72])
{
	unsigned char md[32];
	EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL);
	strcpy(out, "sha256:");
	for (int i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static void gz_member(struct buf *b, const void *p, size_t n)
{
	z_stream z = {0};
	unsigned char out[1 << 16];
	deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (unsigned char *)p;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = sizeof out;
	deflate(&z, Z_FINISH);
	put(b, out, sizeof out - z.avail_out);
	deflateEnd(&z);
}

static void zst_frame(struct buf *b, const void *p, size_t n)
{
	unsigned char out[1 << 16];
	size_t r = ZSTD_compress(out, sizeof out, p, n, 3);
	put(b, out, ZSTD_isError(r) ? 0 : r);
}

/* A ustar header of a regular file. */
static void tar_header(unsigned char h[512], const char *name, size_t size)
{
	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011zo", size);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	h[156] = '0';
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

static const char A[] = "hello ", B[] = "world, from a second chunk\n";

#define ZEROS 4096

/* The TOC JSON of a layer whose two chunks of etc/hello are at o1 and o2
 * (zstd:chunked as older writers make it: the file's entry ends at e2, the
 * end of the whole file, the chunk entry has no end; and a file of zeros). */
static char *toc_json(uint64_t o1, uint64_t e1, uint64_t o2, uint64_t e2, int zstd)
{
	char da[72], db[72], whole[72], *s = NULL;
	char ab[sizeof A + sizeof B];
	snprintf(ab, sizeof ab, "%s%s", A, B);
	sha_hex(A, strlen(A), da);
	sha_hex(B, strlen(B), db);
	sha_hex(ab, strlen(ab), whole);
	char ends1[64] = "", zeros[400] = "", dz[72];
	static const unsigned char z[ZEROS];
	sha_hex(z, sizeof z, dz);
	(void)e1;
	if (zstd) {
		snprintf(ends1, sizeof ends1, ",\"endOffset\":%llu", (unsigned long long)e2);
		snprintf(
		    zeros, sizeof zeros,
		    ",{\"name\":\"zeros\",\"type\":\"reg\",\"size\":%d,\"digest\":\"%s\","
		    "\"offset\":0,\"chunkSize\":%d,\"chunkDigest\":\"%s\",\"chunkType\":\"zeros\"}",
		    ZEROS, dz, ZEROS, dz);
	}
	if (asprintf(
		&s,
		"{\"version\":1,\"entries\":["
		"{\"name\":\"etc/"
		"\",\"type\":\"dir\",\"mode\":493,\"modtime\":\"2023-11-14T22:13:20Z\"},"
		"{\"name\":\"etc/hello\",\"type\":\"reg\",\"size\":%zu,\"mode\":420,\"uid\":1,"
		"\"gid\":2,\"modtime\":\"2023-11-14T22:13:20.5+01:00\",\"offset\":%llu%s,"
		"\"chunkSize\":%zu,\"chunkDigest\":\"%s\",\"digest\":\"%s\","
		"\"xattrs\":{\"user.a\":\"dmFsdWU=\"}},"
		"{\"name\":\"etc/hello\",\"type\":\"chunk\",\"offset\":%llu,\"chunkOffset\":%zu,"
		"\"chunkDigest\":\"%s\"},"
		"{\"name\":\"etc/link\",\"type\":\"symlink\",\"linkName\":\"hello\"},"
		"{\"name\":\"hard\",\"type\":\"hardlink\",\"linkName\":\"etc/hello\"},"
		"{\"name\":\"dev/null\",\"type\":\"char\",\"devMajor\":1,\"devMinor\":3},"
		"{\"name\":\"fifo\",\"type\":\"fifo\"},{\"name\":\"empty\",\"type\":\"reg\"}%s]}",
		strlen(A) + strlen(B), (unsigned long long)o1, ends1, strlen(A), da, whole,
		(unsigned long long)o2, strlen(A), db, zeros) < 0)
		return NULL;
	return s;
}

/* Reads the whole stream of ix from blob through the span reader and
 * merges a tree: must not crash; returns the bytes read or -errno. */
static int blob_read(void *arg, uint64_t off, void *out, size_t len)
{
	const struct buf *b = arg;
	if (off > b->n || len > b->n - off)
		return -EIO;
	memcpy(out, b->p + off, len);
	return 0;
}

static ssize_t exercise(struct rootfs_index *ix, const struct buf *blob, unsigned char *got,
			size_t cap)
{
	struct rootfs_spans *s = NULL;
	struct rootfs_tree *t = NULL;
	struct rootfs_source src = {blob_read, (void *)blob};
	ssize_t total = 0;
	rootfs_spans_new(1 << 20, &s);
	for (uint64_t off = 0; off < rootfs_index_size(ix) && total >= 0;) {
		unsigned char tmp[4096];
		ssize_t n = rootfs_spans_read(s, ix, &src, off, tmp, sizeof tmp);
		if (n <= 0) {
			total = n ? n : -EIO;
			break;
		}
		if (got && (size_t)total + (size_t)n <= cap)
			memcpy(got + total, tmp, (size_t)n);
		total += n;
		off += (uint64_t)n;
	}
	if (rootfs_tree_merge("ns", &ix, 1, &t) == 0)
		rootfs_tree_free(t);
	rootfs_spans_free(s);
	return total;
}

static const char *const HUGE_NUMS[] = {"99999999999999999999",
					"-1",
					"1e400",
					"18446744073709551615",
					"4611686018427387904",
					"\"\"",
					"null",
					"[]",
					"{}"};

/* A mutated copy of in, in a buffer of its exact size (+1 for a NUL the
 * parsers never read: *out_n excludes it). */
static unsigned char *mutate(const unsigned char *in, size_t n, size_t *out_n)
{
	static const char interesting[] = "0123456789\"{}[],:-.eE \\\xff";
	size_t cap = n + 256, len = n;
	unsigned char *w = malloc(cap);
	memcpy(w, in, n);
	for (int k = 1 + (int)(next() % 4); k > 0; k--) {
		size_t pos = len ? next() % len : 0;
		switch (next() % 6) {
		case 0:
			if (len)
				w[pos] ^= (unsigned char)(1u << (next() % 8));
			break;
		case 1:
			if (len)
				w[pos] =
				    (unsigned char)interesting[next() % (sizeof interesting - 1)];
			break;
		case 2:
			len = len ? next() % len : 0;
			break;
		case 3: {
			const char *s =
			    HUGE_NUMS[next() % (sizeof HUGE_NUMS / sizeof HUGE_NUMS[0])];
			size_t sl = strlen(s);
			if (len + sl > cap)
				break;
			memmove(w + pos + sl, w + pos, len - pos);
			memcpy(w + pos, s, sl);
			len += sl;
			break;
		}
		case 4: {
			size_t from = len ? next() % len : 0, sl = 1 + next() % 32;
			if (from + sl > len || len + sl > cap)
				break;
			memmove(w + pos + sl, w + pos, len - pos);
			memmove(w + pos, w + (from >= pos ? from + sl : from), sl);
			len += sl;
			break;
		}
		default: {
			size_t sl = 1 + next() % 16;
			if (pos + sl <= len) {
				memmove(w + pos, w + pos + sl, len - pos - sl);
				len -= sl;
			}
		}
		}
	}
	unsigned char *out = malloc(len + 1);
	memcpy(out, w, len);
	out[len] = 0;
	free(w);
	*out_n = len;
	return out;
}

static unsigned char *exact(const unsigned char *p, size_t n)
{
	unsigned char *o = malloc(n ? n : 1);
	memcpy(o, p, n);
	return o;
}

/* ---- eStargz ---- */

static void estargz_footer(struct buf *b, uint64_t off)
{
	unsigned char f[51] = {0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 26, 0, 'S', 'G', 22, 0};
	char hex[17];
	snprintf(hex, sizeof hex, "%016llx", (unsigned long long)off);
	memcpy(f + 16, hex, 16);
	memcpy(f + 32, "STARGZ", 6);
	memcpy(f + 38, "\x01\x00\x00\xff\xff", 5);
	put(b, f, sizeof f);
}

/* The TOC member of json. */
static void toc_member(struct buf *m, const unsigned char *json, size_t n)
{
	struct buf t = {0};
	unsigned char h[512], zero[1536] = {0};
	tar_header(h, "stargz.index.json", n);
	put(&t, h, 512);
	put(&t, json, n);
	put(&t, zero, (512 - n % 512) % 512 + 1024);
	gz_member(m, t.p, t.n);
	free(t.p);
}

/* prefix (the chunks' members) + member + footer. */
static void esgz_blob(struct buf *out, const struct buf *prefix, const unsigned char *member,
		      size_t mlen)
{
	out->n = 0;
	put(out, prefix->p, prefix->n);
	put(out, member, mlen);
	estargz_footer(out, prefix->n);
}

static int esgz_try(const struct buf *blob, const char *toc_digest, unsigned char *got, size_t cap,
		    ssize_t *read)
{
	uint64_t off, end;
	struct rootfs_index *ix = NULL;
	size_t tail = blob->n < 200 ? blob->n : 200;
	unsigned char *t = exact(blob->p + blob->n - tail, tail);
	int rc = rootfs_estargz_locate(t, tail, blob->n, &off, &end);
	free(t);
	if (rc)
		return rc;
	unsigned char *m = exact(blob->p + off, (size_t)(end - off));
	rc =
	    rootfs_estargz_index(LAYER, blob->n, m, (size_t)(end - off), off, end, toc_digest, &ix);
	free(m);
	if (rc == 0) {
		*read = exercise(ix, blob, got, cap);
		rootfs_index_free(ix);
	}
	return rc;
}

static long fuzz_estargz(long iters)
{
	struct buf prefix = {0}, member = {0}, blob = {0};
	gz_member(&prefix, A, strlen(A));
	uint64_t o2 = prefix.n;
	gz_member(&prefix, B, strlen(B));
	char *json = toc_json(0, 0, o2, 0, 0), dg[72];
	size_t jn = strlen(json);
	sha_hex(json, jn, dg);
	toc_member(&member, (unsigned char *)json, jn);
	esgz_blob(&blob, &prefix, member.p, member.n);
	/* The seed: the file's bytes, then the TOC file's. */
	unsigned char got[4096];
	ssize_t r = -1;
	CHECK_INT(esgz_try(&blob, dg, got, sizeof got, &r), 0);
	CHECK_INT(r, strlen(A) + strlen(B) + jn);
	CHECK(memcmp(got, A, strlen(A)) == 0 && memcmp(got + strlen(A), B, strlen(B)) == 0);
	CHECK(memcmp(got + strlen(A) + strlen(B), json, jn) == 0);
	dg[10] ^= 1;
	CHECK_INT(esgz_try(&blob, dg, got, sizeof got, &r), -EBADMSG);
	dg[10] ^= 1;
	long ok = 0, i;
	time_t t0 = time(NULL);
	for (i = 0; i < iters && time(NULL) - t0 < TIME_BOUND; i++) {
		struct buf b = {0}, mm = {0};
		size_t n;
		unsigned char *mut = NULL;
		char d2[72];
		if (i % 3 == 0) { /* the JSON */
			mut = mutate((unsigned char *)json, jn, &n);
			toc_member(&mm, mut, n);
			sha_hex(mut, n, d2);
			esgz_blob(&b, &prefix, mm.p, mm.n);
		} else if (i % 3 == 1) { /* the compressed member */
			mut = mutate(member.p, member.n, &n);
			esgz_blob(&b, &prefix, mut, n);
		} else { /* the footer and what precedes it */
			put(&b, blob.p, blob.n - 64);
			mut = mutate(blob.p + blob.n - 64, 64, &n);
			put(&b, mut, n);
		}
		ok += esgz_try(&b, i % 2 && i % 3 == 0 ? d2 : NULL, NULL, 0, &r) == 0;
		free(mut);
		free(mm.p);
		free(b.p);
	}
	printf("estargz: %ld mutations, %ld parsed\n", i, ok);
	free(json);
	free(prefix.p);
	free(member.p);
	free(blob.p);
	return i;
}

/* One layer read through an eStargz index (offsets of the files' contents
 * laid end to end) and through a built one (offsets of the tar stream) in
 * one span cache: both have a span at offset 0, and neither may be served
 * the other's bytes. */
static void test_sources_keep_their_spans_apart(void)
{
	struct buf tar = {0}, prefix = {0}, member = {0}, blob = {0};
	unsigned char h[512], zero[1024] = {0}, got[8];
	char hex[72], digest[80];
	tar_header(h, "etc/hello", strlen(A) + strlen(B));
	put(&tar, h, 512);
	put(&tar, A, strlen(A));
	put(&tar, B, strlen(B));
	put(&tar, zero, 512 - (strlen(A) + strlen(B)) % 512);
	put(&tar, zero, sizeof zero);
	sha_hex(tar.p, tar.n, hex);
	snprintf(digest, sizeof digest, "%s", hex); /* sha_hex writes "sha256:<hex>" */
	struct rootfs_build *b = NULL;
	struct rootfs_index *built = NULL, *toc = NULL;
	CHECK_INT(rootfs_build_new(digest, ROOTFS_COMP_NONE, NULL, &b), 0);
	CHECK_INT(rootfs_build_feed(b, tar.p, tar.n), 0);
	CHECK_INT(rootfs_build_finish(b, &built), 0);
	rootfs_build_free(b);
	/* The eStargz index of the same layer digest (its blob's own bytes). */
	gz_member(&prefix, A, strlen(A));
	uint64_t o2 = prefix.n;
	gz_member(&prefix, B, strlen(B));
	char *json = toc_json(0, 0, o2, 0, 0);
	toc_member(&member, (unsigned char *)json, strlen(json));
	esgz_blob(&blob, &prefix, member.p, member.n);
	uint64_t off, end;
	CHECK_INT(rootfs_estargz_locate(blob.p + blob.n - 200, 200, blob.n, &off, &end), 0);
	CHECK_INT(rootfs_estargz_index(digest, blob.n, blob.p + off, (size_t)(end - off), off, end,
				       NULL, &toc),
		  0);
	struct rootfs_spans *s = NULL;
	struct rootfs_source from_blob = {blob_read, &blob}, from_tar = {blob_read, &tar};
	CHECK_INT(rootfs_spans_new(1 << 20, &s), 0);
	if (toc && built && s) {
		CHECK_INT(rootfs_spans_read(s, toc, &from_blob, 0, got, 5), 5);
		CHECK(memcmp(got, A, 5) == 0);
		CHECK_INT(rootfs_spans_read(s, built, &from_tar, 0, got, 5), 5);
		CHECK(memcmp(got, "etc/h", 5) == 0); /* the tar header, not "hello" */
	}
	rootfs_spans_free(s);
	rootfs_index_free(toc);
	rootfs_index_free(built);
	free(json);
	free(tar.p);
	free(prefix.p);
	free(member.p);
	free(blob.p);
}

/* ---- zstd:chunked ---- */

static void skippable(struct buf *b, const void *p, size_t n)
{
	unsigned char h[8] = {0x50,
			      0x2a,
			      0x4d,
			      0x18,
			      (unsigned char)n,
			      (unsigned char)(n >> 8),
			      (unsigned char)(n >> 16),
			      (unsigned char)(n >> 24)};
	put(b, h, 8);
	put(b, p, n);
}

static void le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* prefix + the manifest's frame + the footer frame. */
static void zc_blob(struct buf *out, const struct buf *prefix, const unsigned char *man,
		    size_t mlen, size_t ulen, struct rootfs_zchunked_pos *pos)
{
	unsigned char f[64] = {0};
	out->n = 0;
	put(out, prefix->p, prefix->n);
	pos->off = out->n + 8;
	pos->len = mlen;
	pos->ulen = ulen;
	skippable(out, man, mlen);
	le64(f, pos->off);
	le64(f + 8, mlen);
	le64(f + 16, ulen);
	le64(f + 24, 1);
	memcpy(f + 56, "GNUlInUx", 8);
	skippable(out, f, sizeof f);
}

static int zc_try(const struct buf *blob, const struct rootfs_zchunked_pos *pos, const char *sum,
		  unsigned char *got, size_t cap, ssize_t *read)
{
	struct rootfs_index *ix = NULL;
	if (pos->off > blob->n || pos->len > blob->n - pos->off)
		return -EINVAL;
	unsigned char *m = exact(blob->p + pos->off, (size_t)pos->len);
	int rc = rootfs_zchunked_index(LAYER, blob->n, m, pos, sum, &ix);
	free(m);
	if (rc == 0) {
		*read = exercise(ix, blob, got, cap);
		rootfs_index_free(ix);
	}
	return rc;
}

/* The place of the manifest by a mutated footer or annotation. */
static int zc_locate(const struct buf *blob, int annotation, struct rootfs_zchunked_pos *pos)
{
	size_t n;
	int rc;
	if (annotation) {
		char a[128];
		snprintf(a, sizeof a, "%llu:%llu:%llu:1", (unsigned long long)pos->off,
			 (unsigned long long)pos->len, (unsigned long long)pos->ulen);
		unsigned char *m = mutate((unsigned char *)a, strlen(a), &n);
		rc = rootfs_zchunked_annotation((char *)m, blob->n, pos);
		free(m);
		return rc;
	}
	struct buf b = {0};
	put(&b, blob->p, blob->n - 72);
	unsigned char *m = mutate(blob->p + blob->n - 72, 72, &n);
	put(&b, m, n);
	unsigned char *tail = exact(b.p + b.n - (b.n < 100 ? b.n : 100), b.n < 100 ? b.n : 100);
	rc = rootfs_zchunked_footer(tail, b.n < 100 ? b.n : 100, b.n, pos);
	free(tail);
	free(m);
	free(b.p);
	return rc;
}

static long fuzz_zchunked(long iters)
{
	struct buf prefix = {0}, man = {0}, blob = {0};
	struct rootfs_zchunked_pos pos;
	zst_frame(&prefix, A, strlen(A));
	uint64_t e1 = prefix.n;
	zst_frame(&prefix, B, strlen(B));
	char *json = toc_json(0, e1, e1, prefix.n, 1), sum[72];
	size_t jn = strlen(json);
	zst_frame(&man, json, jn);
	sha_hex(man.p, man.n, sum);
	zc_blob(&blob, &prefix, man.p, man.n, jn, &pos);
	unsigned char got[8192];
	ssize_t r = -1;
	struct rootfs_zchunked_pos fp;
	unsigned char *tail = exact(blob.p + blob.n - 72, 72);
	CHECK_INT(rootfs_zchunked_footer(tail, 72, blob.n, &fp), 0);
	free(tail);
	CHECK(fp.off == pos.off && fp.len == pos.len && fp.ulen == pos.ulen);
	CHECK_INT(zc_try(&blob, &pos, sum, got, sizeof got, &r), 0);
	CHECK_INT(r, strlen(A) + strlen(B) + ZEROS);
	CHECK(memcmp(got, A, strlen(A)) == 0 && memcmp(got + strlen(A), B, strlen(B)) == 0);
	static const unsigned char z[ZEROS];
	CHECK(memcmp(got + strlen(A) + strlen(B), z, ZEROS) == 0);
	sum[20] ^= 1;
	CHECK_INT(zc_try(&blob, &pos, sum, got, sizeof got, &r), -EBADMSG);
	long ok = 0, i;
	time_t t0 = time(NULL);
	for (i = 0; i < iters && time(NULL) - t0 < TIME_BOUND; i++) {
		struct buf b = {0}, mm = {0};
		struct rootfs_zchunked_pos p = pos;
		size_t n;
		unsigned char *mut = NULL;
		int rc = 0;
		if (i % 4 == 0) { /* the JSON */
			mut = mutate((unsigned char *)json, jn, &n);
			zst_frame(&mm, mut, n);
			zc_blob(&b, &prefix, mm.p, mm.n, n, &p);
		} else if (i % 4 == 1) { /* the compressed manifest, its size */
			mut = mutate(man.p, man.n, &n);
			zc_blob(&b, &prefix, mut, n, next() % 2 ? jn : next() % (2 * jn + 1), &p);
		} else { /* the footer or the annotation */
			put(&b, blob.p, blob.n);
			rc = zc_locate(&b, i % 4 == 3, &p);
		}
		if (rc == 0)
			ok += zc_try(&b, &p, NULL, NULL, 0, &r) == 0;
		free(mut);
		free(mm.p);
		free(b.p);
	}
	printf("zstd:chunked: %ld mutations, %ld parsed\n", i, ok);
	free(json);
	free(prefix.p);
	free(man.p);
	free(blob.p);
	return i;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 4000;
	rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ull;
	printf("seed 0x%llx\n", (unsigned long long)rng);
	log_init(LOG_TO_FILE, "/dev/null", LOGL_ERR);
	test_sources_keep_their_spans_apart();
	CHECK(fuzz_estargz(iters) >= 1000 || iters < 1000);
	CHECK(fuzz_zchunked(iters) >= 1000 || iters < 1000);
	return check_summary("rootfs_toc_fuzz");
}
