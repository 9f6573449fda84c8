/* cache/: layout and modes, chunked partial blobs, sealing, puts, LRU under a
 * cap with pins, persistence across reopen, metadata records, full disk,
 * threads, and a second process on the same cache_dir. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cache/cache.h"
#include "cache/cache_i.h"
#include "check.h"
#include "net/log.h"
#include "net/sigv4.h"

#define CH CACHE_CHUNK_SIZE
#define MIB (1024 * 1024)

static char root[64];

/* Deterministic bytes that differ per seed and per offset. */
static unsigned char *make_data(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

/* "sha256:<hex>" of data, computed outside cache/ (net/sigv4.c, checked
 * against AWS's test vectors in test_sigv4). */
static void digest_of(const void *data, size_t len, char out[72])
{
	memcpy(out, "sha256:", 7);
	sigv4_sha256_hex(data, len, out + 7);
}

static void subdir(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", root, name); }

/* A cache at root/name (its path into dir) with cap; NULL, after a failed
 * check, when it does not open. */
static cache *open_at(const char *name, char dir[256], uint64_t cap)
{
	cache *c = NULL;
	int rc;

	subdir(dir, 256, name);
	rc = cache_open(dir, cap, &c);
	if (rc)
		CHECK_FAILED("cache_open(%s) == %d", dir, rc);
	return c;
}

static int exists(const char *fmt, const char *dir, const char *digest)
{
	char path[1024];
	snprintf(path, sizeof(path), fmt, dir, digest + 7);
	return access(path, F_OK) == 0;
}

/* Runs fn(args + i * sz) for each i < n (8 at most), each in its own
 * thread, and waits for them all. */
static void run_threads(void *(*fn)(void *), void *args, size_t sz, int n)
{
	pthread_t t[8];
	int started = 0;

	for (; started < n && started < 8; started++)
		if (pthread_create(&t[started], NULL, fn, (char *)args + (size_t)started * sz)) {
			CHECK_FAILED("pthread_create of thread %d failed", started);
			break;
		}
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
}

static int write_all_chunks(cache *c, const char *d, const unsigned char *data, size_t size)
{
	for (size_t off = 0; off < size; off += CH) {
		size_t len = size - off < CH ? size - off : CH;
		int r = cache_blob_write_chunk(c, d, size, off, data + off, len);
		if (r)
			return r;
	}
	return 0;
}

static void test_dir_mode(void)
{
	char dir[256], sub[300];
	struct stat st;
	cache *c = NULL;

	c = open_at("new/nested/cache", dir, 0);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	static const char *const subs[] = {"blobs/sha256", "partial", "meta", "tmp", "lock"};
	for (size_t i = 0; i < 5; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		CHECK(access(sub, F_OK) == 0);
	}
	CHECK(strcmp(cache_dir(c), dir) == 0);
	cache_close(c);

	subdir(dir, sizeof(dir), "open755");
	CHECK(mkdir(dir, 0755) == 0);
	CHECK(chmod(dir, 0755) == 0);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	cache_close(c);
}

static void test_invalid_digest(void)
{
	static const char *const bad[] = {
	    "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
	    "sha256:../../../../../../etc/passwd0123456789abcdef0123456789abcdef0123",
	    "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    "",
	};
	char dir[256], path[512], buf[16];
	cache *c = NULL;

	c = open_at("invalid", dir, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(cache_blob_write_chunk(c, bad[i], 4, 0, "abcd", 4), -EINVAL);
		CHECK_INT(cache_blob_read(c, bad[i], 4, buf, 4, 0), -EINVAL);
		CHECK_INT(cache_blob_seal(c, bad[i], 4), -EINVAL);
		CHECK_INT(cache_blob_put(c, bad[i], "abcd", 4), -EINVAL);
		CHECK_INT(cache_blob_path(c, bad[i], path, sizeof(path)), -EINVAL);
		CHECK_INT(cache_blob_complete(c, bad[i]), 0);
		cache_blob_pin(c, bad[i]);
		cache_blob_unpin(c, bad[i]);
		cache_blob_drop(c, bad[i]);
	}
	CHECK_INT(cache_blob_read(c, NULL, 4, buf, 4, 0), -EINVAL);
	/* Nothing was created from those names. */
	snprintf(path, sizeof(path), "%s/partial", dir);
	CHECK(rmdir(path) == 0 && mkdir(path, 0700) == 0);
	cache_close(c);
}

static void test_chunks_and_seal(void)
{
	const size_t size = 2 * CH + CH / 2 + 7;
	unsigned char *data = make_data(size, 1), *buf = malloc(size);
	char dir[256], d[72], path[512], cmd[600], line[200];
	struct cache_stats st;
	cache *c = NULL;

	digest_of(data, size, d);
	c = open_at("chunks", dir, 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, 0), -ENOENT);
	/* Offsets must be chunk aligned, lengths a full chunk or the tail. */
	CHECK_INT(cache_blob_write_chunk(c, d, size, 5, data, CH), -EINVAL);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH - 1), -EINVAL);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 2 * CH, data, CH), -EINVAL);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 3 * CH, data, 1), -EINVAL);

	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 2 * CH, data + 2 * CH, size - 2 * CH), 0);
	CHECK(exists("%s/partial/%s.data", dir, d) && exists("%s/partial/%s.map", dir, d));
	CHECK_INT(cache_blob_complete(c, d), 0);
	/* Present chunks read; any range touching the hole is -ENOENT. */
	CHECK_INT(cache_blob_read(c, d, size, buf, CH, 0), CH);
	CHECK(memcmp(buf, data, CH) == 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 100, CH - 50), -ENOENT);
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, CH + 5), -ENOENT);
	/* The tail, with a read running past the end: short at the end only. */
	CHECK_INT(cache_blob_read(c, d, size, buf, 4096, size - 100), 100);
	CHECK(memcmp(buf, data + size - 100, 100) == 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, size), 0);
	CHECK_INT(cache_blob_seal(c, d, size), -EAGAIN);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, size - CH);

	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	/* Writing a present chunk again is harmless and not counted twice. */
	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	memset(buf, 0, size);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	CHECK(!exists("%s/partial/%s.data", dir, d) && !exists("%s/partial/%s.map", dir, d));
	CHECK_INT(cache_blob_path(c, d, path, sizeof(path)), 0);
	CHECK_INT(cache_blob_path(c, d, path, 10), -ERANGE);
	CHECK_INT(cache_blob_path(c, d, path, sizeof(path)), 0);
	/* Independent check of the stored file: sha256sum agrees with the name. */
	snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
	FILE *p = popen(cmd, "r");
	CHECK(p && fgets(line, sizeof(line), p) && strncmp(line, d + 7, 64) == 0);
	if (p)
		pclose(p);
	memset(buf, 0, size);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0); /* idempotent */
	/* A complete blob ignores further chunk writes. */
	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, size);
	CHECK(st.hits >= 4 && st.misses >= 3);

	cache_blob_drop(c, d);
	CHECK_INT(cache_blob_complete(c, d), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, 0), -ENOENT);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, 0);
	cache_close(c);
	free(data);
	free(buf);
}

static void test_seal_mismatch(void)
{
	const size_t size = CH + 10;
	unsigned char *data = make_data(size, 2), *other = make_data(size, 3);
	char dir[256], d[72], buf[16];
	struct cache_stats st;
	cache *c = NULL;

	digest_of(data, size, d);
	c = open_at("mismatch", dir, 0);
	CHECK_INT(cache_blob_seal(c, d, size), -EAGAIN);
	CHECK_INT(write_all_chunks(c, d, other, size), 0); /* wrong bytes */
	CHECK_INT(cache_blob_seal(c, d, size), -EIO);
	CHECK(!exists("%s/partial/%s.data", dir, d) && !exists("%s/partial/%s.map", dir, d));
	CHECK(!exists("%s/blobs/sha256/%s", dir, d));
	CHECK_INT(cache_blob_complete(c, d), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 4, 0), -ENOENT);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, 0);
	/* The right bytes afterwards seal fine. */
	CHECK_INT(write_all_chunks(c, d, data, size), 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	cache_close(c);
	free(data);
	free(other);
}

static void test_put_and_empty(void)
{
	unsigned char *data = make_data(3000, 4);
	char dir[256], d[72], e[72], buf[4000];
	cache *c = NULL;

	digest_of(data, 3000, d);
	digest_of("", 0, e);
	c = open_at("put", dir, 0);
	CHECK_INT(cache_blob_put(c, d, data, 2999), -EIO); /* does not hash to d */
	CHECK_INT(cache_blob_complete(c, d), 0);
	CHECK_INT(cache_blob_put(c, d, data, 3000), 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	CHECK_INT(cache_blob_read(c, d, 3000, buf, sizeof(buf), 0), 3000);
	CHECK(memcmp(buf, data, 3000) == 0);
	CHECK_INT(cache_blob_read(c, d, 3000, buf, 10, 2995), 5);
	CHECK_INT(cache_blob_put(c, d, data, 3000), 0); /* again: fine */
	/* A complete blob cut short (a crash before its data reached the
	 * disk) is never served: dropped on the read that finds it. */
	{
		char path[512];
		CHECK_INT(cache_blob_path(c, d, path, sizeof(path)), 0);
		CHECK(truncate(path, 2999) == 0);
		cache_close(c); /* the crash and the remount */
		CHECK_INT(cache_open(dir, 0, &c), 0);
		CHECK_INT(cache_blob_read(c, d, 3000, buf, 10, 0), -ENOENT);
		CHECK_INT(cache_blob_complete(c, d), 0);
		CHECK_INT(cache_blob_put(c, d, data, 3000), 0);
		CHECK_INT(cache_blob_read(c, d, 3000, buf, 10, 2990), 10);
		CHECK(memcmp(buf, data + 2990, 10) == 0);
	}
	/* The empty blob (size 0) works both ways. */
	CHECK_INT(cache_blob_put(c, e, "", 0), 0);
	CHECK_INT(cache_blob_read(c, e, 0, buf, 10, 0), 0);
	CHECK_INT(cache_blob_complete(c, e), 1);
	cache_blob_drop(c, e);
	CHECK_INT(cache_blob_write_chunk(c, e, 0, 0, "", 0), 0);
	CHECK_INT(cache_blob_seal(c, e, 0), 0);
	CHECK_INT(cache_blob_complete(c, e), 1);
	cache_close(c);
	free(data);
}

static void test_meta(cache *c)
{
	char *v = NULL;
	size_t n = 0;

	CHECK_INT(cache_meta_get(c, "tags", "r/a:v1", &v, &n), -ENOENT);
	CHECK_INT(cache_meta_put(c, "tags", "r/a:v1", "sha256:aa", 9), 0);
	CHECK_INT(cache_meta_put(c, "tags", "r/a:v2", "sha256:bb", 9), 0);
	CHECK_INT(cache_meta_get(c, "tags", "r/a:v1", &v, &n), 0);
	CHECK(v && n == 9 && strcmp(v, "sha256:aa") == 0);
	free(v);
	CHECK_INT(cache_meta_put(c, "tags", "r/a:v1", "sha256:cc", 9), 0); /* replace */
	CHECK_INT(cache_meta_get(c, "tags", "r/a:v1", &v, &n), 0);
	CHECK(v && n == 9 && strcmp(v, "sha256:cc") == 0);
	free(v);
	/* Binary data with NULs, and an empty record. */
	CHECK_INT(cache_meta_put(c, "manifests", "sha256:x", "a\0b\nc", 5), 0);
	CHECK_INT(cache_meta_get(c, "manifests", "sha256:x", &v, &n), 0);
	CHECK(v && n == 5 && memcmp(v, "a\0b\nc", 6) == 0);
	free(v);
	CHECK_INT(cache_meta_put(c, "manifests", "empty", "", 0), 0);
	CHECK_INT(cache_meta_get(c, "manifests", "empty", &v, &n), 0);
	CHECK(v && n == 0 && v[0] == '\0');
	free(v);
	/* Namespaces become directory names: only [a-z0-9_-]. */
	CHECK_INT(cache_meta_put(c, "../x", "k", "v", 1), -EINVAL);
	CHECK_INT(cache_meta_put(c, "a/b", "k", "v", 1), -EINVAL);
	CHECK_INT(cache_meta_put(c, "", "k", "v", 1), -EINVAL);
	CHECK_INT(cache_meta_get(c, "Tags", "k", &v, &n), -EINVAL);
	CHECK_INT(cache_meta_del(c, "tags", "r/a:v2"), 0);
	CHECK_INT(cache_meta_get(c, "tags", "r/a:v2", &v, &n), -ENOENT);
	CHECK_INT(cache_meta_del(c, "tags", "r/a:v2"), -ENOENT);
}

static void test_meta_key_check(const char *dir)
{
	/* A record file holding another key (a collision, a copied file) is
	 * never returned for this key. */
	char src[512], dst[512], cmd[1800];
	cache *c = NULL;
	char *v = NULL;
	size_t n = 0;

	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_meta_put(c, "coll", "key-one", "1", 1), 0);
	CHECK_INT(cache_meta_put(c, "coll", "key-two", "2", 1), 0);
	/* Copy key-one's file over key-two's name, found by listing. */
	snprintf(cmd, sizeof(cmd),
		 "cd '%s/meta/coll' && for f in *; do grep -q key-one \"$f\" && echo \"$f\"; done",
		 dir);
	FILE *p = popen(cmd, "r");
	CHECK(p && fgets(src, sizeof(src), p));
	if (p)
		pclose(p);
	src[strcspn(src, "\n")] = '\0';
	snprintf(cmd, sizeof(cmd),
		 "cd '%s/meta/coll' && for f in *; do grep -q key-two \"$f\" && echo \"$f\"; done",
		 dir);
	p = popen(cmd, "r");
	CHECK(p && fgets(dst, sizeof(dst), p));
	if (p)
		pclose(p);
	dst[strcspn(dst, "\n")] = '\0';
	snprintf(cmd, sizeof(cmd), "cd '%s/meta/coll' && cp '%s' '%s'", dir, src, dst);
	CHECK(system(cmd) == 0);
	CHECK_INT(cache_meta_get(c, "coll", "key-two", &v, &n), -ENOENT);
	CHECK_INT(cache_meta_get(c, "coll", "key-one", &v, &n), 0);
	free(v);
	/* A record torn by a crash (short) or with a flipped byte reads as
	 * absent, never as different data. */
	CHECK_INT(cache_meta_put(c, "torn", "k1", "0123456789", 10), 0);
	CHECK_INT(cache_meta_put(c, "torn", "k2", "0123456789", 10), 0);
	snprintf(cmd, sizeof(cmd),
		 "cd '%s/meta/torn' && for f in *; do if grep -q k1 \"$f\"; then "
		 "truncate -s -1 \"$f\"; else sed -i 's/56789$/56780/' \"$f\"; fi; done",
		 dir);
	CHECK(system(cmd) == 0);
	CHECK_INT(cache_meta_get(c, "torn", "k1", &v, &n), -ENOENT);
	CHECK_INT(cache_meta_get(c, "torn", "k2", &v, &n), -ENOENT);
	CHECK_INT(cache_meta_del(c, "torn", "k1"), 0);
	CHECK_INT(cache_meta_put(c, "torn", "k2", "abc", 3), 0);
	CHECK_INT(cache_meta_get(c, "torn", "k2", &v, &n), 0);
	CHECK(v && n == 3 && strcmp(v, "abc") == 0);
	free(v);
	cache_close(c);
}

static void test_persistence(void)
{
	const size_t size = 3 * CH;
	unsigned char *data = make_data(size, 5), *small = make_data(5000, 6);
	unsigned char *buf = malloc(size);
	char dir[256], d[72], s[72];
	struct cache_stats st;
	cache *c = NULL;
	char *v = NULL;
	size_t n = 0;

	digest_of(data, size, d);
	digest_of(small, 5000, s);
	c = open_at("persist", dir, 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	CHECK_INT(cache_blob_put(c, s, small, 5000), 0);
	test_meta(c);
	cache_close(c);

	CHECK_INT(cache_open(dir, 0, &c), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, CH + 5000);
	CHECK_INT(cache_blob_complete(c, s), 1);
	CHECK_INT(cache_blob_read(c, s, 5000, buf, 5000, 0), 5000);
	CHECK(memcmp(buf, small, 5000) == 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, CH, CH), CH);
	CHECK(memcmp(buf, data + CH, CH) == 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 1, 0), -ENOENT);
	CHECK_INT(cache_meta_get(c, "tags", "r/a:v1", &v, &n), 0);
	CHECK(v && strcmp(v, "sha256:cc") == 0);
	free(v);
	/* Finish the partial blob across the remount. */
	CHECK_INT(cache_blob_seal(c, d, size), -EAGAIN);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 2 * CH, data + 2 * CH, CH), 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, size + 5000);
	cache_close(c);

	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	cache_close(c);
	test_meta_key_check(dir);
	free(data);
	free(small);
	free(buf);
}

struct blob {
	unsigned char *data;
	char d[72];
};

static void blobs_make(struct blob *b, int n, size_t size, unsigned seed)
{
	for (int i = 0; i < n; i++) {
		b[i].data = make_data(size, seed + (unsigned)i);
		digest_of(b[i].data, size, b[i].d);
	}
}

static void blobs_free(struct blob *b, int n)
{
	for (int i = 0; i < n; i++)
		free(b[i].data);
}

static void test_lru(void)
{
	struct blob b[6];
	char dir[256], path[512], buf[8];
	struct cache_stats st;
	cache *c = NULL;

	blobs_make(b, 6, CH, 100);
	subdir(dir, sizeof(dir), "lru");
	/* Room for three 1 MiB blobs. */
	CHECK_INT(cache_open(dir, 3 * CH + CH / 2, &c), 0);
	CHECK_INT(cache_blob_put(c, b[0].d, b[0].data, CH), 0);
	CHECK_INT(write_all_chunks(c, b[1].d, b[1].data, CH), 0); /* partial counts too */
	CHECK_INT(cache_blob_put(c, b[2].d, b[2].data, CH), 0);
	CHECK_INT(cache_blob_read(c, b[0].d, CH, buf, 1, 0), 1); /* 0 is now newest */
	CHECK_INT(cache_blob_put(c, b[3].d, b[3].data, CH), 0);	 /* evicts 1 */
	CHECK_INT(cache_blob_read(c, b[1].d, CH, buf, 1, 0), -ENOENT);
	CHECK(!exists("%s/partial/%s.data", dir, b[1].d));
	CHECK_INT(cache_blob_complete(c, b[0].d), 1);
	CHECK_INT(cache_blob_complete(c, b[2].d), 1);
	cache_get_stats(c, &st);
	CHECK_INT(st.evictions, 1);
	CHECK(st.bytes_total <= 3 * CH + CH / 2);

	/* 2 is the oldest now, but pinned: 0 goes instead. */
	cache_blob_pin(c, b[2].d);
	CHECK_INT(cache_blob_put(c, b[4].d, b[4].data, CH), 0);
	CHECK_INT(cache_blob_complete(c, b[2].d), 1);
	CHECK_INT(cache_blob_complete(c, b[0].d), 0);
	/* Everything pinned: a write fails with ENOSPC, nothing is evicted. */
	cache_blob_pin(c, b[3].d);
	cache_blob_pin(c, b[4].d);
	CHECK_INT(cache_blob_put(c, b[5].d, b[5].data, CH), -ENOSPC);
	CHECK_INT(cache_blob_write_chunk(c, b[5].d, CH, 0, b[5].data, CH), -ENOSPC);
	CHECK_INT(cache_blob_complete(c, b[2].d) + cache_blob_complete(c, b[3].d) +
		      cache_blob_complete(c, b[4].d),
		  3);
	cache_get_stats(c, &st);
	CHECK(st.bytes_total <= 3 * CH + CH / 2);
	CHECK_INT(st.disk_full, 0); /* the cap is not a full disk */
	/* Pins count: one unpin of a twice-pinned blob still protects it. */
	cache_blob_pin(c, b[2].d);
	cache_blob_unpin(c, b[2].d);
	cache_blob_unpin(c, b[3].d);
	CHECK_INT(cache_blob_put(c, b[5].d, b[5].data, CH), 0); /* evicts 3 */
	CHECK_INT(cache_blob_complete(c, b[3].d), 0);
	CHECK_INT(cache_blob_complete(c, b[2].d), 1);
	cache_blob_unpin(c, b[2].d);
	cache_blob_unpin(c, b[4].d);
	/* Larger than the whole cap: refused without evicting anything. */
	unsigned char *big = make_data(4 * CH, 9);
	char bd[72];
	digest_of(big, 4 * CH, bd);
	CHECK_INT(cache_blob_put(c, bd, big, 4 * CH), -ENOSPC);
	CHECK_INT(cache_blob_complete(c, b[5].d), 1);
	free(big);
	cache_close(c);

	/* After a remount the order comes from the files' access times. */
	struct timespec t[2];
	int order[3] = {5, 2, 4}; /* oldest first */
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, b[order[i]].d + 7);
		t[0].tv_sec = t[1].tv_sec = 1000000000 + i * 1000;
		t[0].tv_nsec = t[1].tv_nsec = 0;
		CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
	}
	CHECK_INT(cache_open(dir, 3 * CH + CH / 2, &c), 0);
	CHECK_INT(cache_blob_put(c, b[0].d, b[0].data, CH), 0);
	CHECK_INT(cache_blob_complete(c, b[5].d), 0);
	CHECK_INT(cache_blob_complete(c, b[2].d), 1);
	CHECK_INT(cache_blob_complete(c, b[4].d), 1);
	cache_close(c);
	blobs_free(b, 6);
}

static int count_lines(const char *path, const char *needle)
{
	char line[4096];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

/* Runs in a child: RLIMIT_FSIZE makes writes past 1.5 MiB fail with EFBIG
 * (SIGXFSZ ignored), which the cache treats as a full disk. */
static int disk_full_child(const char *dir, const char *logpath)
{
	struct blob b[2];
	struct rlimit rl = {.rlim_cur = CH + CH / 2, .rlim_max = RLIM_INFINITY};
	struct cache_stats st;
	char buf[8];
	cache *c = NULL;
	int before = test_failures;

	blobs_make(b, 2, 2 * CH, 200);
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	signal(SIGXFSZ, SIG_IGN);
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &rl), 0);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_blob_write_chunk(c, b[0].d, 2 * CH, 0, b[0].data, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, b[0].d, 2 * CH, CH, b[0].data + CH, CH), -ENOSPC);
	CHECK_INT(cache_blob_write_chunk(c, b[0].d, 2 * CH, CH, b[0].data + CH, CH), -ENOSPC);
	CHECK_INT(cache_blob_put(c, b[1].d, b[1].data, 2 * CH), -ENOSPC);
	cache_get_stats(c, &st);
	CHECK_INT(st.disk_full, 1);
	CHECK_INT(st.bytes_total, CH); /* failed writes are not counted */
	/* What was stored still reads; the failed chunk is missing. */
	CHECK_INT(cache_blob_read(c, b[0].d, 2 * CH, buf, 1, 0), 1);
	CHECK_INT(cache_blob_read(c, b[0].d, 2 * CH, buf, 1, CH), -ENOENT);
	CHECK_INT(cache_blob_complete(c, b[1].d), 0);
	cache_close(c);
	log_close();
	blobs_free(b, 2);
	return test_failures != before;
}

/* Runs in a child: a real ENOSPC from a 2 MiB tmpfs mounted in a private
 * mount namespace (gone with the child, whatever happens). 77: cannot
 * mount here (not root, no namespaces), the caller reports a skip. */
static int tmpfs_child(const char *dir, const char *logpath)
{
	struct blob b;
	struct cache_stats st;
	char buf[8];
	cache *c = NULL;
	int before = test_failures;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mkdir(dir, 0700) < 0 || mount("tmpfs", dir, "tmpfs", 0, "size=2m") < 0)
		return 77;
	blobs_make(&b, 1, 4 * CH, 250);
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_blob_write_chunk(c, b.d, 4 * CH, 0, b.data, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, b.d, 4 * CH, CH, b.data + CH, CH), -ENOSPC);
	CHECK_INT(cache_blob_write_chunk(c, b.d, 4 * CH, 2 * CH, b.data + 2 * CH, CH), -ENOSPC);
	cache_get_stats(c, &st);
	CHECK_INT(st.disk_full, 1);
	CHECK_INT(st.bytes_total, CH);
	CHECK_INT(cache_blob_read(c, b.d, 4 * CH, buf, 8, 0), 8);
	CHECK(memcmp(buf, b.data, 8) == 0);
	CHECK_INT(cache_blob_read(c, b.d, 4 * CH, buf, 8, CH), -ENOENT);
	/* The failed chunk's space went back (hole punched): small records fit. */
	CHECK_INT(cache_meta_put(c, "tags", "k", "v", 1), 0);
	/* A little room: a chunk is stored, the disk is still nearly full. */
	CHECK_INT(mount(NULL, dir, NULL, MS_REMOUNT, "size=4m"), 0);
	CHECK_INT(cache_blob_write_chunk(c, b.d, 4 * CH, 3 * CH, b.data + 3 * CH, CH), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.disk_full, 1);
	/* Space comes back: the next chunk is stored and the flag goes down. */
	CHECK_INT(mount(NULL, dir, NULL, MS_REMOUNT, "size=64m"), 0);
	CHECK_INT(cache_blob_write_chunk(c, b.d, 4 * CH, CH, b.data + CH, CH), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.disk_full, 0);
	CHECK_INT(cache_blob_read(c, b.d, 4 * CH, buf, 8, CH), 8);
	CHECK(memcmp(buf, b.data + CH, 8) == 0);
	cache_close(c);
	log_close();
	free(b.data);
	return test_failures != before;
}

/* Runs child(dir, logpath) in a forked process, with dir = root/name and
 * logpath = root/name.log; returns its exit status, -1 if it did not exit. */
static int in_child(int (*child)(const char *dir, const char *logpath), const char *name,
		    char dir[256], char logpath[256])
{
	char lname[64];
	int status = 0;
	pid_t pid;

	subdir(dir, 256, name);
	snprintf(lname, sizeof(lname), "%s.log", name);
	subdir(logpath, 256, lname);
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		exit(child(dir, logpath));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_disk_full_tmpfs(void)
{
	char dir[256], logpath[256];
	int rc = in_child(tmpfs_child, "tmpfs", dir, logpath);

	if (rc == 77) {
		printf("skipped: tmpfs full-disk check (cannot mount here)\n");
		return;
	}
	CHECK_INT(rc, 0);
	CHECK_INT(count_lines(logpath, "is full; reading from the network without caching"), 1);
	CHECK_INT(count_lines(logpath, "has room again; caching resumes"), 1);
}

static void test_disk_full(void)
{
	char dir[256], logpath[256];

	CHECK_INT(in_child(disk_full_child, "full", dir, logpath), 0);
	CHECK_INT(count_lines(logpath, "is full; reading from the network without caching"), 1);
	CHECK_INT(count_lines(logpath, dir), 1);
}

struct writer_arg {
	cache *c;
	const char *d;
	const unsigned char *data;
	size_t size;
	int first, step;
	int ret;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	char buf[16];

	for (size_t i = (size_t)a->first; i * CH < a->size; i += (size_t)a->step) {
		size_t off = i * CH, len = a->size - off < CH ? a->size - off : CH;
		int r = cache_blob_write_chunk(a->c, a->d, a->size, off, a->data + off, len);
		if (r && !a->ret)
			a->ret = r;
		/* Reads of other threads' chunks race with their writes. */
		ssize_t n = cache_blob_read(a->c, a->d, a->size, buf, sizeof(buf), off);
		if (n != (ssize_t)sizeof(buf) || memcmp(buf, a->data + off, sizeof(buf)) != 0)
			a->ret = -EIO;
	}
	return NULL;
}

static void test_threads(void)
{
	const size_t size = 8 * CH + 123;
	unsigned char *data = make_data(size, 7), *buf = malloc(size);
	struct writer_arg a[4];
	char dir[256], d[72];
	struct cache_stats st;
	cache *c = NULL;

	digest_of(data, size, d);
	c = open_at("threads", dir, 0);
	for (int i = 0; i < 4; i++)
		a[i] = (struct writer_arg){c, d, data, size, i, 4, 0};
	run_threads(writer, a, sizeof(a[0]), 4);
	for (int i = 0; i < 4; i++)
		CHECK_INT(a[i].ret, 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, size);
	cache_close(c);
	free(data);
	free(buf);
}

/* Child of test_two_processes: a second cache_open on the same dir. */
static int second_mount(const char *dir, struct blob *x, size_t xsize, struct blob *y,
			struct blob *w, int go_fd)
{
	struct cache_stats st;
	cache *c = NULL;
	char ch;
	int before = test_failures;

	CHECK_INT(cache_open(dir, 0, &c), 0);
	/* Odd chunks of x, concurrently with the parent's even ones. */
	for (size_t i = 1; i * CH < xsize; i += 2)
		CHECK_INT(cache_blob_write_chunk(c, x->d, xsize, i * CH, x->data + i * CH,
						 xsize - i * CH < CH ? xsize - i * CH : CH),
			  0);
	CHECK_INT(cache_blob_put(c, y->d, y->data, CH / 2), 0);
	cache_close(c);
	/* Once the parent holds x and z open (z pinned), a mount whose cap
	 * forces eviction must leave both alone: they are in use there. */
	CHECK(read(go_fd, &ch, 1) == 1);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	cache_get_stats(c, &st);
	cache_close(c);
	CHECK_INT(st.bytes_total, xsize + CH / 2 + CH);
	CHECK_INT(cache_open(dir, st.bytes_total + CH / 2, &c), 0);
	cache_blob_pin(c, y->d);
	CHECK_INT(cache_blob_put(c, w->d, w->data, CH), -ENOSPC);
	CHECK(exists("%s/blobs/sha256/%s", dir, y->d));
	cache_blob_unpin(c, y->d);
	cache_close(c);
	return test_failures != before;
}

static void test_two_processes(void)
{
	const size_t xsize = 6 * CH + 99;
	struct blob x, y, z, w;
	char dir[256], buf[64];
	unsigned char *out = malloc(xsize);
	int go[2], status = 0;
	cache *c = NULL;
	pid_t pid;

	x.data = make_data(xsize, 300);
	digest_of(x.data, xsize, x.d);
	y.data = make_data(CH / 2, 301);
	digest_of(y.data, CH / 2, y.d);
	z.data = make_data(CH, 302);
	digest_of(z.data, CH, z.d);
	w.data = make_data(CH, 303);
	digest_of(w.data, CH, w.d);
	c = open_at("shared", dir, 0);
	CHECK_INT(cache_blob_put(c, z.d, z.data, CH), 0);
	CHECK(pipe(go) == 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		cache_close(c); /* the parent's handle is not the child's to use */
		close(go[1]);
		int bad = second_mount(dir, &x, xsize, &y, &w, go[0]);
		free(x.data);
		free(y.data);
		free(z.data);
		free(w.data);
		free(out);
		exit(bad);
	}
	close(go[0]);
	for (size_t i = 0; i * CH < xsize; i += 2)
		CHECK_INT(cache_blob_write_chunk(c, x.d, xsize, i * CH, x.data + i * CH,
						 xsize - i * CH < CH ? xsize - i * CH : CH),
			  0);
	cache_blob_pin(c, z.d);
	CHECK_INT(cache_blob_read(c, z.d, CH, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	CHECK(write(go[1], "g", 1) == 1);
	close(go[1]);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The chunks both processes wrote make the whole blob. */
	CHECK_INT(cache_blob_seal(c, x.d, xsize), 0);
	CHECK_INT(cache_blob_read(c, x.d, xsize, out, xsize, 0), (ssize_t)xsize);
	CHECK(memcmp(out, x.data, xsize) == 0);
	/* What the other mount stored is visible here. */
	CHECK_INT(cache_blob_complete(c, y.d), 1);
	CHECK_INT(cache_blob_read(c, y.d, CH / 2, buf, sizeof(buf), 100), (ssize_t)sizeof(buf));
	CHECK(memcmp(buf, y.data + 100, sizeof(buf)) == 0);
	CHECK_INT(cache_blob_complete(c, z.d), 1);
	CHECK_INT(cache_blob_read(c, z.d, CH, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cache_blob_unpin(c, z.d);
	cache_close(c);
	free(x.data);
	free(y.data);
	free(z.data);
	free(w.data);
	free(out);
}

/* cache_blob_has probes without counting hits or misses. */
static void test_has(void)
{
	const size_t size = 3 * CH + 5;
	unsigned char *data = make_data(size, 500);
	char dir[256], d[72];
	struct cache_stats st;
	cache *c = NULL;

	digest_of(data, size, d);
	c = open_at("has", dir, 0);
	CHECK_INT(cache_blob_has(c, d, size, 0, 1), 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	CHECK_INT(cache_blob_has(c, d, size, CH, CH), 1);
	CHECK_INT(cache_blob_has(c, d, size, CH + 10, 20), 1);
	CHECK_INT(cache_blob_has(c, d, size, CH - 1, 2), 0);
	CHECK_INT(cache_blob_has(c, d, size, 3 * CH, 5), 0);
	CHECK_INT(cache_blob_has(c, d, size, size, 5), 1); /* past the end */
	CHECK_INT(cache_blob_has(c, "sha256:nope", size, 0, 1), 0);
	CHECK_INT(write_all_chunks(c, d, data, size), 0);
	CHECK_INT(cache_blob_has(c, d, size, 0, size), 1);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK_INT(cache_blob_has(c, d, size, 0, size), 1);
	cache_get_stats(c, &st);
	CHECK_INT(st.hits, 0);
	CHECK_INT(st.misses, 0);
	cache_close(c);
	free(data);
}

/* Open fds on files under root: the cache's own (a sanitizer's runtime may
 * hold a file of its own open for a moment). */
static int count_fds(void)
{
	char path[300], target[PATH_MAX];
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		ssize_t len;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, root, strlen(root)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Many blobs open (pinned) at once: all read, fds stay bounded. */
static void test_many_open(void)
{
	enum { N = 100 };
	struct blob b[N];
	char dir[256], buf[100];
	cache *c = NULL;

	blobs_make(b, N, 4096, 600);
	subdir(dir, sizeof(dir), "many");
	int fds0 = count_fds();
	CHECK_INT(cache_open(dir, 0, &c), 0);
	fds0++; /* the lock file */
	for (int i = 0; i < N; i++) {
		cache_blob_pin(c, b[i].d);
		if (i % 2)
			CHECK_INT(cache_blob_put(c, b[i].d, b[i].data, 4096), 0);
		else
			CHECK_INT(cache_blob_write_chunk(c, b[i].d, 4096, 0, b[i].data, 4096), 0);
	}
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < N; i++) {
			CHECK_INT(cache_blob_read(c, b[i].d, 4096, buf, sizeof(buf), 1000),
				  (ssize_t)sizeof(buf));
			CHECK(memcmp(buf, b[i].data + 1000, sizeof(buf)) == 0);
		}
	/* Open blobs keep their files open (and locked against other mounts). */
	CHECK(count_fds() >= fds0 + N);
	for (int i = 0; i < N; i++)
		cache_blob_unpin(c, b[i].d);
	/* Closed ones: at most 32 kept open (two fds each: the data and its
	 * map, or its sums). */
	CHECK(count_fds() <= fds0 + 64);
	for (int i = 0; i < N; i++)
		CHECK_INT(cache_blob_read(c, b[i].d, 4096, buf, 10, 0), 10);
	CHECK(count_fds() <= fds0 + 64);
	cache_close(c);
	CHECK_INT(count_fds(), fds0 - 1); /* nothing leaks */
	blobs_free(b, N);
}

/* What cache_open tidies: temp files of dead processes, maps without
 * data, partial copies of complete blobs, and a cap smaller than before. */
static void test_open_cleanup(void)
{
	struct blob b[3];
	char dir[256], path[600], rel[300], cwd[256];
	struct cache_stats st;
	cache *c = NULL;
	pid_t dead;
	int fd;

	blobs_make(b, 3, CH, 700);
	c = open_at("cleanup", dir, 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(cache_blob_put(c, b[i].d, b[i].data, CH), 0);
	cache_close(c);
	dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	snprintf(path, sizeof(path), "%s/tmp/%ld.%ld.7", dir, (long)dead, (long)dead);
	CHECK((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp/1.1.7", dir); /* pid 1 lives */
	CHECK((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/partial/%s.map", dir, b[0].d + 7 + 0);
	path[strlen(path) - 68] = 'f'; /* a map for another digest, no data */
	CHECK((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/partial/%s.data", dir, b[1].d + 7);
	CHECK((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	/* Relative dir, and a cap that fits two of the three blobs. */
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK(chdir(root) == 0);
	snprintf(rel, sizeof(rel), "./cleanup/");
	CHECK_INT(cache_open(rel, 2 * CH, &c), 0);
	CHECK(chdir(cwd) == 0);
	CHECK(strcmp(cache_dir(c), dir) == 0);
	snprintf(path, sizeof(path), "cd '%s/tmp' && ls | tr '\\n' ' '", dir);
	FILE *p = popen(path, "r");
	char line[200] = "";
	CHECK(p && fgets(line, sizeof(line), p));
	if (p)
		pclose(p);
	CHECK(strcmp(line, "1.1.7 ") == 0);
	snprintf(path, sizeof(path), "%s/partial", dir);
	CHECK(rmdir(path) == 0 && mkdir(path, 0700) == 0); /* emptied */
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, 2 * CH);
	CHECK_INT(st.evictions, 1);
	CHECK_INT(cache_blob_complete(c, b[0].d) + cache_blob_complete(c, b[1].d) +
		      cache_blob_complete(c, b[2].d),
		  2);
	cache_close(c);
	blobs_free(b, 3);
}

struct sealer_arg {
	cache *c;
	const char *d;
	const unsigned char *data;
	size_t size;
	int start;
	int bad; /* a seal answered something else than 0 or -EAGAIN */
};

static void *sealer(void *p)
{
	struct sealer_arg *a = p;
	size_t n = (a->size + CH - 1) / CH;

	for (size_t k = 0; k < n; k++) {
		size_t i = (k + (size_t)a->start) % n, off = i * CH;
		size_t len = a->size - off < CH ? a->size - off : CH;
		if (cache_blob_write_chunk(a->c, a->d, a->size, off, a->data + off, len))
			a->bad = 1;
		int r = cache_blob_seal(a->c, a->d, a->size);
		if (r != 0 && r != -EAGAIN)
			a->bad = 1;
	}
	return NULL;
}

/* Threads of two processes write overlapping chunks of one blob and seal
 * whenever they like: every seal answers 0 or -EAGAIN, one blob results. */
static int seal_race(const char *dir, const char *d, const unsigned char *data, size_t size,
		     int base)
{
	struct sealer_arg a[3];
	cache *c = NULL;
	int before = test_failures;

	CHECK_INT(cache_open(dir, 0, &c), 0);
	for (int i = 0; i < 3; i++)
		a[i] = (struct sealer_arg){c, d, data, size, base + 2 * i, 0};
	run_threads(sealer, a, sizeof(a[0]), 3);
	for (int i = 0; i < 3; i++)
		CHECK_INT(a[i].bad, 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	cache_close(c);
	return test_failures != before;
}

static void test_seal_race(void)
{
	const size_t size = 5 * CH + 1;
	unsigned char *data = make_data(size, 800), *buf = malloc(size);
	char dir[256], d[72], path[512];
	struct cache_stats st;
	int status = 0;
	cache *c = NULL;
	pid_t pid;

	digest_of(data, size, d);
	subdir(dir, sizeof(dir), "sealrace");
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int bad = seal_race(dir, d, data, size, 1);
		free(data);
		free(buf);
		exit(bad);
	}
	seal_race(dir, d, data, size, 0);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, size);
	snprintf(path, sizeof(path), "%s/partial", dir);
	CHECK(rmdir(path) == 0 && mkdir(path, 0700) == 0); /* no leftovers */
	cache_close(c);
	free(data);
	free(buf);
}

/* Another mount evicts a blob this one knows but does not hold open. */
static void test_evicted_elsewhere(void)
{
	struct blob b[3];
	char dir[256], buf[8];
	struct cache_stats st;
	cache *c = NULL, *c2 = NULL;
	int status = 0;
	pid_t pid;

	blobs_make(b, 3, CH, 900);
	c = open_at("elsewhere", dir, 0);
	CHECK_INT(cache_blob_put(c, b[0].d, b[0].data, CH), 0);
	CHECK_INT(cache_blob_put(c, b[1].d, b[1].data, CH), 0);
	/* File times are coarse: make b[0] the older one for the other mount. */
	for (int i = 0; i < 2; i++) {
		char path[512];
		struct timespec t[2] = {{.tv_sec = 1000000000 + i}, {.tv_sec = 1000000000 + i}};
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, b[i].d + 7);
		CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int bad;
		cache_close(c);
		bad = cache_open(dir, 2 * CH, &c2) != 0 ||
		      cache_blob_put(c2, b[2].d, b[2].data, CH) != 0;
		cache_close(c2);
		blobs_free(b, 3); /* the parent's copies: leak-free exit */
		exit(bad);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(cache_blob_read(c, b[0].d, CH, buf, 1, 0), -ENOENT);
	CHECK_INT(cache_blob_complete(c, b[0].d), 0);
	CHECK_INT(cache_blob_complete(c, b[2].d), 1);
	CHECK_INT(cache_blob_read(c, b[2].d, CH, buf, 8, 0), 8);
	CHECK(memcmp(buf, b[2].data, 8) == 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, 2 * CH);
	cache_close(c);
	blobs_free(b, 3);
}

/* A process that dies without cache_close (a crash, kill -9, power loss)
 * leaves DIR/dirty: the next first opener forgets the partial chunk flags
 * (their data may not have reached the disk) but keeps complete blobs and
 * records. A clean close by the last user removes the marker. */
static void test_unclean_shutdown(void)
{
	const size_t size = 2 * CH;
	unsigned char *data = make_data(size, 1000), *small = make_data(100, 1001);
	char dir[256], marker[300], d[72], s[72], buf[100];
	struct cache_stats st;
	cache *c = NULL, *c2 = NULL;
	char *v = NULL;
	size_t n = 0;
	int status = 0;
	pid_t pid;

	digest_of(data, size, d);
	digest_of(small, 100, s);
	subdir(dir, sizeof(dir), "unclean");
	snprintf(marker, sizeof(marker), "%s/dirty", dir);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		cache *cc = NULL;
		int bad =
		    cache_open(dir, 0, &cc) || cache_blob_write_chunk(cc, d, size, 0, data, CH) ||
		    cache_blob_put(cc, s, small, 100) || cache_meta_put(cc, "tags", "t", "x", 1);
		_exit(bad); /* no cache_close: the crash */
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(access(marker, F_OK) == 0);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	cache_get_stats(c, &st);
	CHECK_INT(st.bytes_total, 100); /* the partial copy is gone */
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, 0), -ENOENT);
	CHECK_INT(cache_blob_read(c, s, 100, buf, 100, 0), 100);
	CHECK(memcmp(buf, small, 100) == 0);
	CHECK_INT(cache_meta_get(c, "tags", "t", &v, &n), 0);
	free(v);
	/* A second user closing leaves the marker; the last one removes it. */
	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH), 0);
	CHECK_INT(cache_open(dir, 0, &c2), 0);
	cache_close(c2);
	CHECK(access(marker, F_OK) == 0);
	cache_close(c);
	CHECK(access(marker, F_OK) < 0 && errno == ENOENT);
	/* After a clean close the chunks stay. */
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, 0), 10);
	CHECK(memcmp(buf, data, 10) == 0);
	cache_close(c);
	free(data);
	free(small);
}

/* Random operations from threads of two processes on a few blobs under a
 * small cap: every read that succeeds returns the right bytes, every call
 * answers one of its documented results, and the books balance after. */
enum { STRESS_BLOBS = 4, STRESS_ITERS = 250 };
#define STRESS_SIZE (2 * CH + 777)

struct stress_arg {
	cache *c;
	struct blob *b;
	unsigned seed;
	int bad;
};

static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	unsigned char *buf = malloc(STRESS_SIZE);

	for (int it = 0; it < STRESS_ITERS && buf; it++) {
		struct blob *b = &a->b[rand_r(&a->seed) % STRESS_BLOBS];
		size_t ci = (size_t)rand_r(&a->seed) % 3, off = ci * CH;
		size_t len = STRESS_SIZE - off < CH ? STRESS_SIZE - off : CH;
		size_t roff = (size_t)rand_r(&a->seed) % STRESS_SIZE;
		size_t rlen = 1 + (size_t)rand_r(&a->seed) % (STRESS_SIZE - roff);
		ssize_t n;
		int r;

		switch (rand_r(&a->seed) % 8) {
		case 0:
		case 1:
			r = cache_blob_write_chunk(a->c, b->d, STRESS_SIZE, off, b->data + off,
						   len);
			if (r && r != -ENOSPC && r != -EAGAIN)
				fprintf(stderr, "stress: write_chunk %d\n", r), a->bad = 1;
			break;
		case 2:
		case 3:
			n = cache_blob_read(a->c, b->d, STRESS_SIZE, buf, rlen, roff);
			if (n >= 0 &&
			    (n != (ssize_t)rlen || memcmp(buf, b->data + roff, rlen) != 0))
				fprintf(stderr, "stress: read %zd of %zu at %zu: wrong bytes\n", n,
					rlen, roff),
				    a->bad = 1;
			if (n < 0 && n != -ENOENT)
				fprintf(stderr, "stress: read %zd\n", n), a->bad = 1;
			break;
		case 4:
			r = cache_blob_seal(a->c, b->d, STRESS_SIZE);
			if (r && r != -EAGAIN)
				fprintf(stderr, "stress: seal %d\n", r), a->bad = 1;
			break;
		case 5:
			r = cache_blob_put(a->c, b->d, b->data, STRESS_SIZE);
			if (r && r != -ENOSPC)
				fprintf(stderr, "stress: put %d\n", r), a->bad = 1;
			break;
		case 6:
			cache_blob_pin(a->c, b->d);
			n = cache_blob_read(a->c, b->d, STRESS_SIZE, buf, rlen, roff);
			if (n >= 0 &&
			    (n != (ssize_t)rlen || memcmp(buf, b->data + roff, rlen) != 0))
				fprintf(stderr, "stress: pinned read %zd: wrong bytes\n", n),
				    a->bad = 1;
			cache_blob_unpin(a->c, b->d);
			break;
		default:
			if (rand_r(&a->seed) % 4 == 0)
				cache_blob_drop(a->c, b->d);
			else if (cache_blob_has(a->c, b->d, STRESS_SIZE, roff, rlen) &&
				 cache_blob_read(a->c, b->d, STRESS_SIZE, buf, 1, roff) == 1 &&
				 buf[0] != b->data[roff])
				fprintf(stderr, "stress: has/read wrong byte\n"), a->bad = 1;
			break;
		}
	}
	free(buf);
	return NULL;
}

static int stress_run(const char *dir, struct blob *b, unsigned seed)
{
	struct stress_arg a[3];
	cache *c = NULL;
	int before = test_failures;

	char logpath[300];

	/* Every byte stored is right: no chunk may ever fail its checksum. */
	snprintf(logpath, sizeof(logpath), "%s-%u.log", dir, seed);
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	CHECK_INT(cache_open(dir, 5 * CH, &c), 0);
	for (int i = 0; i < 3; i++)
		a[i] = (struct stress_arg){c, b, seed + (unsigned)i, 0};
	run_threads(stress_thread, a, sizeof(a[0]), 3);
	for (int i = 0; i < 3; i++)
		CHECK_INT(a[i].bad, 0);
	cache_close(c);
	log_close();
	CHECK_INT(count_lines(logpath, "checksum"), 0);
	return test_failures != before;
}

static void test_stress(void)
{
	struct blob b[STRESS_BLOBS];
	char dir[256], cmd[400], line[64] = "";
	struct cache_stats st;
	unsigned char *buf = malloc(STRESS_SIZE);
	cache *c = NULL;
	int status = 0;
	pid_t pid;

	blobs_make(b, STRESS_BLOBS, STRESS_SIZE, 1100);
	subdir(dir, sizeof(dir), "stress");
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int bad = stress_run(dir, b, 77);
		blobs_free(b, STRESS_BLOBS);
		free(buf);
		exit(bad);
	}
	stress_run(dir, b, 1);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* What a fresh open counts is what the disk holds. */
	CHECK_INT(cache_open(dir, 0, &c), 0);
	cache_get_stats(c, &st);
	/* The blob files only: their .sum files are not counted in the cache
	 * size (a few bytes per MiB, but many blobs add up past the margin). */
	snprintf(cmd, sizeof(cmd),
		 "du -B1 --apparent-size -s --exclude='*.sum' '%s/blobs/sha256' | cut -f1", dir);
	FILE *p = popen(cmd, "r");
	CHECK(p && fgets(line, sizeof(line), p));
	if (p)
		pclose(p);
	CHECK(st.bytes_total >= (uint64_t)atoll(line) - 4096);
	for (int i = 0; i < STRESS_BLOBS; i++) {
		if (!cache_blob_complete(c, b[i].d))
			continue;
		CHECK_INT(cache_blob_read(c, b[i].d, STRESS_SIZE, buf, STRESS_SIZE, 0),
			  (ssize_t)STRESS_SIZE);
		CHECK(memcmp(buf, b[i].data, STRESS_SIZE) == 0);
	}
	cache_close(c);
	blobs_free(b, STRESS_BLOBS);
	free(buf);
}

/* Flips one byte of the file at dir/fmt(digest) at off. */
static void flip_byte(const char *fmt, const char *dir, const char *digest, off_t off)
{
	char path[1024];
	unsigned char b = 0;
	int fd;

	snprintf(path, sizeof(path), fmt, dir, digest + 7);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
	b ^= 0x5a;
	CHECK(fd >= 0 && pwrite(fd, &b, 1, off) == 1);
	if (fd >= 0)
		close(fd);
}

/* A rotten partial chunk after a reopen: a miss (not the flipped byte),
 * one log line, the chunk's flag gone so it is stored again; the other
 * chunks still serve. */
static void test_rot_partial(void)
{
	const size_t size = 3 * CH;
	unsigned char *data = make_data(size, 41), *buf = malloc(size);
	char dir[256], d[72], logpath[300];
	cache *c;

	digest_of(data, size, d);
	subdir(logpath, sizeof(logpath), "rot-partial.log");
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	c = open_at("rot-partial", dir, 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 0, data, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	cache_close(c);
	flip_byte("%s/partial/%s.data", dir, d, CH + 1234);
	c = open_at("rot-partial", dir, 0);
	CHECK_INT(cache_blob_has(c, d, size, CH, 10), 1); /* a probe reads no data */
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, CH + 1230), -ENOENT);
	CHECK_INT(cache_blob_has(c, d, size, CH, 10), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, CH, 0), CH);
	CHECK(memcmp(buf, data, CH) == 0);
	/* Fetched again: stored again, served, and the blob seals. */
	CHECK_INT(cache_blob_write_chunk(c, d, size, CH, data + CH, CH), 0);
	CHECK_INT(cache_blob_write_chunk(c, d, size, 2 * CH, data + 2 * CH, CH), 0);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	cache_close(c);
	log_close();
	CHECK_INT(count_lines(logpath, "does not match its checksum"), 1);
	free(data);
	free(buf);
}

/* Sealed blobs (by seal and by put): a flipped byte after a reopen is a
 * miss with one log line and the blob is dropped. Without its .sum a blob
 * is checked whole against its digest: served and given sums when it
 * matches, dropped when not. */
static void test_rot_sealed(void)
{
	const size_t size = 2 * CH + 99;
	unsigned char *data = make_data(size, 42), *p = make_data(5000, 43);
	unsigned char *q = make_data(7000, 44), *r = make_data(6000, 46), *buf = malloc(size);
	char dir[256], d[72], dp[72], dq[72], dr[72], logpath[300], sum[512];
	cache *c;
	int fd = -1;

	digest_of(data, size, d);
	digest_of(p, 5000, dp);
	digest_of(q, 7000, dq);
	digest_of(r, 6000, dr);
	subdir(logpath, sizeof(logpath), "rot-sealed.log");
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	c = open_at("rot-sealed", dir, 0);
	CHECK_INT(write_all_chunks(c, d, data, size), 0);
	CHECK_INT(cache_blob_seal(c, d, size), 0);
	CHECK(exists("%s/blobs/sha256/%s.sum", dir, d));
	CHECK_INT(cache_blob_put(c, dp, p, 5000), 0);
	CHECK_INT(cache_blob_put(c, dq, q, 7000), 0);
	CHECK_INT(cache_blob_put(c, dr, r, 6000), 0);
	CHECK(exists("%s/blobs/sha256/%s.sum", dir, dp));
	cache_close(c);

	flip_byte("%s/blobs/sha256/%s", dir, d, 2 * CH + 5);
	flip_byte("%s/blobs/sha256/%s", dir, dp, 4999);
	flip_byte("%s/blobs/sha256/%s", dir, dr, 0);
	snprintf(sum, sizeof(sum), "%s/blobs/sha256/%s.sum", dir, dq + 7);
	CHECK_INT(unlink(sum), 0);
	snprintf(sum, sizeof(sum), "%s/blobs/sha256/%s.sum", dir, dr + 7);
	CHECK_INT(unlink(sum), 0);
	c = open_at("rot-sealed", dir, 0);
	CHECK_INT(cache_blob_complete(c, d), 1);
	CHECK_INT(cache_blob_read(c, d, size, buf, CH, 0), CH); /* chunk 0 is fine */
	CHECK(memcmp(buf, data, CH) == 0);
	CHECK_INT(cache_blob_read_fd(c, d, size, 10, 2 * CH, &fd), -ENOENT);
	CHECK_INT(fd, -1);
	CHECK_INT(cache_blob_complete(c, d), 0);
	CHECK(!exists("%s/blobs/sha256/%s", dir, d) && !exists("%s/blobs/sha256/%s.sum", dir, d));
	CHECK_INT(cache_blob_read(c, dp, 5000, buf, 5000, 0), -ENOENT);
	CHECK_INT(cache_blob_complete(c, dp), 0);
	/* No sums, right bytes: verified, served, summed. */
	CHECK_INT(cache_blob_read(c, dq, 7000, buf, 7000, 0), 7000);
	CHECK(memcmp(buf, q, 7000) == 0);
	CHECK(exists("%s/blobs/sha256/%s.sum", dir, dq));
	CHECK_INT(cache_blob_read(c, dq, 7000, buf, 10, 6990), 10);
	/* No sums, wrong bytes: dropped. */
	CHECK_INT(cache_blob_read(c, dr, 6000, buf, 10, 100), -ENOENT);
	CHECK_INT(cache_blob_complete(c, dr), 0);

	/* Stored again, checked once per process. */
	CHECK_INT(cache_blob_put(c, dp, p, 5000), 0);
	CHECK_INT(cache_blob_read(c, dp, 5000, buf, 5000, 0), 5000);
	CHECK(memcmp(buf, p, 5000) == 0);
	cache_close(c);
	log_close();
	CHECK_INT(count_lines(logpath, "does not match its checksum"), 2);
	CHECK_INT(count_lines(logpath, "does not match its digest"), 1);
	free(data);
	free(p);
	free(q);
	free(r);
	free(buf);
}

/* Writes a blob and a partial the way the previous format did (no sums,
 * no DIR/format, an "ECRFSMP2" map). */
static void make_old_format(const char *dir, const char *d, const unsigned char *data,
			    size_t size)
{
	char path[1024];
	unsigned char map[25] = "ECRFSMP2";
	FILE *f;

	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, d + 7);
	f = fopen(path, "w");
	CHECK(f && fwrite(data, 1, size, f) == size);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/partial/%064d.data", dir, 7);
	f = fopen(path, "w");
	CHECK(f && fwrite(data, 1, size, f) == size);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/partial/%064d.map", dir, 7);
	map[8] = (unsigned char)size;
	map[9] = (unsigned char)(size >> 8);
	map[24] = 1;
	f = fopen(path, "w");
	CHECK(f && fwrite(map, 1, sizeof(map), f) == sizeof(map));
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/format", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s.sum", dir, d + 7);
	unlink(path);
}

/* A cache_dir of the older format: the first opener discards its partial
 * blobs (one log line, meta records kept) and stamps it; its sealed blobs
 * are checked whole against their digest when first read. While an older
 * process still has it open, nothing is removed and the same holds. */
static void test_old_format(void)
{
	const size_t size = 3000;
	unsigned char *data = make_data(size, 45), buf[3000];
	char dir[256], d[72], d7[72], logpath[300], path[512], text[64];
	char *meta = NULL;
	size_t mlen = 0;
	cache *c;
	int lock;

	digest_of(data, size, d);
	snprintf(d7, sizeof(d7), "sha256:%064d", 7);
	subdir(logpath, sizeof(logpath), "old-format.log");
	CHECK_INT(log_init(LOG_TO_FILE, logpath, LOGL_INFO), 0);
	c = open_at("old-format", dir, 0);
	CHECK_INT(cache_meta_put(c, "tags", "k", "v", 1), 0);
	cache_close(c);
	snprintf(path, sizeof(path), "%s/format", dir);
	CHECK_STR(check_read_text(path, text, sizeof(text)), "ecrfs-cache 3\n");

	/* Another (older) process holds it: nothing is removed; the old map
	 * is not trusted, the old blob is verified before it is served. */
	make_old_format(dir, d, data, size);
	snprintf(path, sizeof(path), "%s/lock", dir);
	lock = open(path, O_RDWR);
	CHECK(lock >= 0 && flock(lock, LOCK_SH) == 0);
	c = open_at("old-format", dir, 0);
	CHECK_INT(cache_blob_read(c, d7, size, buf, 10, 0), -ENOENT);
	CHECK_INT(cache_blob_read(c, d, size, buf, size, 0), (ssize_t)size);
	CHECK(memcmp(buf, data, size) == 0);
	cache_close(c);
	close(lock);

	/* Alone: the old partial goes, the stamp is written, meta and the
	 * (verified) blob stay; a rotten old blob is dropped when read. */
	make_old_format(dir, d, data, size);
	flip_byte("%s/blobs/sha256/%s", dir, d, 17);
	c = open_at("old-format", dir, 0);
	CHECK(!exists("%s/partial/%s.data", dir, d7) && !exists("%s/partial/%s.map", dir, d7));
	CHECK(exists("%s/blobs/sha256/%s", dir, d));
	CHECK_INT(cache_blob_read(c, d, size, buf, 10, 0), -ENOENT);
	CHECK_INT(cache_blob_complete(c, d), 0);
	CHECK_INT(cache_meta_get(c, "tags", "k", &meta, &mlen), 0);
	free(meta);
	snprintf(path, sizeof(path), "%s/format", dir);
	CHECK_STR(check_read_text(path, text, sizeof(text)), "ecrfs-cache 3\n");
	cache_close(c);
	log_close();
	CHECK_INT(count_lines(logpath, "older format; 2 partial files discarded"), 1);
	CHECK_INT(count_lines(logpath, "does not match its digest"), 1);
	free(data);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* The chunk checksums on disk are zlib's CRC-32, whoever computes them:
 * caches written by earlier versions stay valid. */
static void test_crc_format(void)
{
	static char big[3 << 20];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i * 31 ^ (i >> 11));
	CHECK(cache_crc("123456789", 9) == 0xCBF43926u); /* the standard check value */
	CHECK(cache_crc("", 0) == 0);
	CHECK(cache_crc(big, sizeof big) == (uint32_t)crc32_z(0, (const Bytef *)big, sizeof big));
}

int main(void)
{
	strcpy(root, "/tmp/ecrfs-test-cache.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	static void (*const tests[])(void) = {
	    test_crc_format,
	    test_dir_mode,
	    test_invalid_digest,
	    test_chunks_and_seal,
	    test_seal_mismatch,
	    test_put_and_empty,
	    test_persistence,
	    test_lru,
	    test_disk_full,
	    test_disk_full_tmpfs,
	    test_threads,
	    test_two_processes,
	    test_has,
	    test_many_open,
	    test_open_cleanup,
	    test_seal_race,
	    test_evicted_elsewhere,
	    test_unclean_shutdown,
	    test_stress,
	    test_rot_partial,
	    test_rot_sealed,
	    test_old_format,
	};
	static const char *const names[] = {
	    "test_crc_format",
	    "test_dir_mode",
	    "test_invalid_digest",
	    "test_chunks_and_seal",
	    "test_seal_mismatch",
	    "test_put_and_empty",
	    "test_persistence",
	    "test_lru",
	    "test_disk_full",
	    "test_disk_full_tmpfs",
	    "test_threads",
	    "test_two_processes",
	    "test_has",
	    "test_many_open",
	    "test_open_cleanup",
	    "test_seal_race",
	    "test_evicted_elsewhere",
	    "test_unclean_shutdown",
	    "test_stress",
	    "test_rot_partial",
	    "test_rot_sealed",
	    "test_old_format",
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		tests[i]();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%-24s %.2fs\n", names[i],
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return check_summary("cache");
}
