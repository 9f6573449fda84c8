/* cache/cache_aux.c: index files under cache_dir/index/ are counted in
 * cache_size, evicted only after blobs (least recently used first), never
 * while pinned or held by another process, together with their layer's
 * other files, found again at open, and stale temp files are removed. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "check.h"
#include "net/sigv4.h"

#define CH CACHE_CHUNK_SIZE

static char root[64];

static unsigned char *make_data(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

struct blob {
	unsigned char *data;
	char d[72];
};

static void blob_make(struct blob *b, unsigned seed)
{
	b->data = make_data(CH, seed);
	memcpy(b->d, "sha256:", 7);
	sigv4_sha256_hex(b->data, CH, b->d + 7);
}

/* A 64-hex name as a layer's index is called, suffixed. */
static void ix_name(char out[100], unsigned seed, const char *suffix)
{
	snprintf(out, 100, "%064x%s", seed, suffix);
}

/* Writes len bytes as DIR/index/name, as a builder does (temp + rename). */
static void ix_write(cache *c, const char *name, size_t len)
{
	char tmp[512], path[512];
	unsigned char *data = make_data(len, 7);
	snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", cache_aux_dir(c), name);
	snprintf(path, sizeof path, "%s/%s", cache_aux_dir(c), name);
	int fd = mkstemp(tmp);
	CHECK(fd >= 0);
	CHECK(write(fd, data, len) == (ssize_t)len);
	close(fd);
	CHECK(rename(tmp, path) == 0);
	free(data);
}

static int ix_exists(cache *c, const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", cache_aux_dir(c), name);
	return access(path, F_OK) == 0;
}

static struct cache_stats stats(cache *c)
{
	struct cache_stats st;
	cache_get_stats(c, &st);
	return st;
}

/* Counted in cache_size; blobs go first even when the index is older;
 * the index goes when pinned blobs leave no other choice. */
static void test_blobs_first(void)
{
	char dir[256], ix[100];
	struct blob b[4];
	cache *c = NULL;
	for (int i = 0; i < 4; i++)
		blob_make(&b[i], 10 + (unsigned)i);
	snprintf(dir, sizeof dir, "%s/first", root);
	CHECK_INT(cache_open(dir, 3 * CH + CH / 2, &c), 0);
	ix_name(ix, 1, "");
	ix_write(c, ix, CH);
	CHECK_INT(cache_aux_add(c, ix, 0), 0); /* the oldest of all */
	CHECK_INT(stats(c).index_bytes, CH);
	CHECK_INT(stats(c).bytes_total, CH);
	CHECK_INT(cache_blob_put(c, b[0].d, b[0].data, CH), 0);
	CHECK_INT(cache_blob_put(c, b[1].d, b[1].data, CH), 0);
	CHECK_INT(stats(c).bytes_total, 3 * CH);
	CHECK_INT(cache_blob_put(c, b[2].d, b[2].data, CH), 0); /* evicts blob 0 */
	CHECK_INT(cache_blob_complete(c, b[0].d), 0);
	CHECK(ix_exists(c, ix));
	CHECK_INT(stats(c).index_evictions, 0);
	/* Blobs 1 and 2 in use: only the index can go. */
	cache_blob_pin(c, b[1].d);
	cache_blob_pin(c, b[2].d);
	CHECK_INT(cache_blob_put(c, b[3].d, b[3].data, CH), 0);
	CHECK(!ix_exists(c, ix));
	CHECK_INT(stats(c).index_evictions, 1);
	CHECK_INT(stats(c).index_bytes, 0);
	CHECK_INT(stats(c).bytes_total, 3 * CH);
	CHECK_INT(cache_aux_pin(c, ix), -ENOENT);
	cache_blob_unpin(c, b[1].d);
	cache_blob_unpin(c, b[2].d);
	cache_close(c);
	for (int i = 0; i < 4; i++)
		free(b[i].data);
}

/* A pinned index (a mounted view uses it) is never evicted, nor one that
 * another process holds with a shared flock; a layer's index and copy go
 * together; adding a file makes room by evicting blobs. */
static void test_pins_and_groups(void)
{
	char dir[256], a[100], b[100], bt[100], path[512];
	struct blob x[3];
	cache *c = NULL;
	for (int i = 0; i < 3; i++)
		blob_make(&x[i], 20 + (unsigned)i);
	snprintf(dir, sizeof dir, "%s/pins", root);
	CHECK_INT(cache_open(dir, 4 * CH + CH / 4, &c), 0);
	ix_name(a, 2, "");
	ix_name(b, 3, "");
	ix_name(bt, 3, ".tar");
	ix_write(c, a, CH);
	CHECK_INT(cache_aux_add(c, a, 1), 0); /* pinned */
	ix_write(c, bt, CH);
	CHECK_INT(cache_aux_add(c, bt, 0), 0);
	ix_write(c, b, CH / 2);
	CHECK_INT(cache_aux_add(c, b, 0), 0);
	CHECK_INT(stats(c).index_bytes, 2 * CH + CH / 2);
	/* Another mount reads b's copy: its shared flock keeps the group. */
	snprintf(path, sizeof path, "%s/%s", cache_aux_dir(c), bt);
	int held = open(path, O_RDONLY);
	CHECK(held >= 0 && flock(held, LOCK_SH) == 0);
	CHECK_INT(cache_blob_put(c, x[0].d, x[0].data, CH), 0);
	cache_blob_pin(c, x[0].d);
	CHECK_INT(cache_blob_put(c, x[1].d, x[1].data, CH), -ENOSPC);
	CHECK(ix_exists(c, a) && ix_exists(c, b) && ix_exists(c, bt));
	close(held);
	/* Now the group goes, both files, a (pinned) stays. */
	CHECK_INT(cache_blob_put(c, x[1].d, x[1].data, CH), 0);
	CHECK(ix_exists(c, a) && !ix_exists(c, b) && !ix_exists(c, bt));
	CHECK_INT(stats(c).index_evictions, 2);
	CHECK_INT(stats(c).index_bytes, CH);
	cache_blob_unpin(c, x[0].d);
	/* Adding an index evicts blobs to make room, never the pinned one. */
	ix_write(c, b, 2 * CH);
	CHECK_INT(cache_aux_add(c, b, 0), 0);
	CHECK_INT(cache_blob_complete(c, x[0].d), 0); /* the older blob */
	CHECK_INT(cache_blob_complete(c, x[1].d), 1);
	CHECK(ix_exists(c, a) && ix_exists(c, b));
	CHECK_INT(stats(c).bytes_total, 4 * CH);
	/* Larger than cache_size: refused and removed. */
	ix_write(c, bt, 5 * CH);
	CHECK_INT(cache_aux_add(c, bt, 1), -ENOSPC);
	CHECK(!ix_exists(c, bt) && ix_exists(c, a));
	/* Unpinned, a is the oldest and goes first. */
	cache_aux_unpin(c, a);
	CHECK_INT(cache_aux_pin(c, b), 0); /* b used now */
	cache_aux_unpin(c, b);
	CHECK_INT(cache_blob_put(c, x[2].d, x[2].data, CH), 0); /* evicts blob 1 */
	CHECK(ix_exists(c, a) && ix_exists(c, b));
	cache_blob_pin(c, x[2].d);
	CHECK_INT(cache_blob_put(c, x[0].d, x[0].data, CH), 0);
	CHECK(!ix_exists(c, a) && ix_exists(c, b));
	cache_blob_unpin(c, x[2].d);
	/* A bad file is dropped on request. */
	cache_aux_drop(c, b);
	CHECK(!ix_exists(c, b));
	CHECK_INT(stats(c).index_bytes, 0);
	CHECK_INT(cache_aux_add(c, "../blobs", 0), -EINVAL);
	CHECK_INT(cache_aux_pin(c, ".hidden"), -EINVAL);
	cache_close(c);
	for (int i = 0; i < 3; i++)
		free(x[i].data);
}

/* At open: index files are counted (and evicted down to a smaller cap,
 * least recently used first), temp files older than an hour removed. */
static void test_reopen(void)
{
	char dir[256], a[100], b[100], old_tmp[512], new_tmp[512], path[512];
	cache *c = NULL;
	snprintf(dir, sizeof dir, "%s/reopen", root);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	ix_name(a, 4, "");
	ix_name(b, 5, "");
	ix_write(c, a, CH);
	CHECK_INT(cache_aux_add(c, a, 0), 0);
	ix_write(c, b, CH);
	CHECK_INT(cache_aux_add(c, b, 0), 0);
	snprintf(old_tmp, sizeof old_tmp, "%s/.%s.AbCdEf", cache_aux_dir(c), a);
	snprintf(new_tmp, sizeof new_tmp, "%s/.%s.GhIjKl", cache_aux_dir(c), b);
	CHECK(close(open(old_tmp, O_CREAT | O_WRONLY, 0600)) == 0);
	CHECK(close(open(new_tmp, O_CREAT | O_WRONLY, 0600)) == 0);
	struct timespec t[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	CHECK(utimensat(AT_FDCWD, old_tmp, t, 0) == 0);
	/* b is the older one for the next mount. */
	snprintf(path, sizeof path, "%s/%s", cache_aux_dir(c), b);
	CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
	cache_close(c);
	CHECK_INT(cache_open(dir, 0, &c), 0);
	CHECK_INT(stats(c).index_bytes, 2 * CH);
	CHECK_INT(stats(c).bytes_total, 2 * CH);
	CHECK(access(old_tmp, F_OK) != 0 && access(new_tmp, F_OK) == 0);
	cache_close(c);
	CHECK_INT(cache_open(dir, CH + CH / 2, &c), 0);
	CHECK(ix_exists(c, a) && !ix_exists(c, b));
	CHECK_INT(stats(c).index_bytes, CH);
	cache_close(c);
}

/* Two builds of one layer (two images at once) add the same file twice:
 * counted once, and both pins hold it. */
static void test_added_twice(void)
{
	char dir[256], a[100];
	struct blob x;
	cache *c = NULL;
	blob_make(&x, 30);
	snprintf(dir, sizeof dir, "%s/twice", root);
	CHECK_INT(cache_open(dir, 2 * CH + CH / 2, &c), 0);
	ix_name(a, 6, "");
	ix_write(c, a, CH);
	CHECK_INT(cache_aux_add(c, a, 1), 0);
	ix_write(c, a, CH);
	CHECK_INT(cache_aux_add(c, a, 1), 0);
	CHECK_INT(stats(c).index_bytes, CH);
	cache_aux_unpin(c, a);
	cache_blob_pin(c, x.d);
	CHECK_INT(cache_blob_put(c, x.d, x.data, CH), 0);
	CHECK_INT(cache_blob_put(c, x.d, x.data, CH), 0);
	struct blob y;
	blob_make(&y, 31);
	CHECK_INT(cache_blob_put(c, y.d, y.data, CH), -ENOSPC); /* a is still pinned */
	CHECK(ix_exists(c, a));
	cache_aux_unpin(c, a);
	CHECK_INT(cache_blob_put(c, y.d, y.data, CH), 0);
	CHECK(!ix_exists(c, a));
	cache_blob_unpin(c, x.d);
	cache_close(c);
	free(x.data);
	free(y.data);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

int main(void)
{
	strcpy(root, "/tmp/ecrfs-test-cache-index.XXXXXX");
	if (!mkdtemp(root))
		return 1;
	test_blobs_first();
	test_pins_and_groups();
	test_reopen();
	test_added_twice();
	nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return check_summary("cache_index");
}
