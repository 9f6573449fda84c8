/* fs/tree/view_rootfs_layer.c against a fake blob source: a gzip layer is
 * indexed by streaming it once through the blob reader and saved under
 * cache_dir/index; a second image state loads the saved index without a
 * fetch; reads come through the span cache; a layer whose bytes do not hash
 * to its digest leaves no index file. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "fs/blob/blob.h"
#include "fs/tree/view_rootfs.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/view_rootfs_sources.h"
#include "net/sigv4.h"

static struct {
	unsigned char *data;
	size_t size;
	char digest[72];
	long corrupt_at;
	int ranges; /* atomic */
} blob;

static int fake_url(void *arg, const struct fs_blob_ref *ref, char **url, time_t *expires)
{
	*expires = time(NULL) + 900;
	return asprintf(url, "fake://%s", ref->digest) < 0 ? -ENOMEM : 0;
}

static int fake_range(void *arg, const struct fs_blob_ref *ref, const char *url, uint64_t off,
		      uint64_t len, net_sink_cb sink, void *sink_arg, volatile int *cancel)
{
	__atomic_add_fetch(&blob.ranges, 1, __ATOMIC_RELAXED);
	if (strcmp(ref->digest, blob.digest) || off + len > blob.size)
		return -ENOENT;
	unsigned char *p = malloc(len ? len : 1);
	memcpy(p, blob.data + off, len);
	if (blob.corrupt_at >= 0 && (uint64_t)blob.corrupt_at >= off &&
	    (uint64_t)blob.corrupt_at < off + len)
		p[blob.corrupt_at - (long)off] ^= 0x5a;
	int rc = sink(sink_arg, (char *)p, len);
	free(p);
	return rc;
}

static const struct fs_blob_source fake_src = {fake_url, fake_range, NULL};

/* A ustar header for a regular file of size bytes. */
static void header(unsigned char *h, const char *name, size_t size)
{
	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011zo", size);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	h[156] = '0';
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

/* A gzip layer of one file "etc/data" of n pseudo-random printable bytes;
 * *tar keeps the uncompressed stream. */
static void make_layer(size_t n, unsigned char **tar, size_t *tarlen)
{
	size_t len = 512 + (n + 511) / 512 * 512 + 1024;
	unsigned char *t = calloc(1, len);
	header(t, "etc/data", n);
	uint32_t x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		t[512 + i] = (unsigned char)('a' + (x >> 16) % 26);
	}
	z_stream z;
	memset(&z, 0, sizeof z);
	deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	blob.data = malloc(deflateBound(&z, len) + 64);
	z.next_in = t;
	z.avail_in = (uInt)len;
	z.next_out = blob.data;
	z.avail_out = (uInt)(deflateBound(&z, len) + 64);
	deflate(&z, Z_FINISH);
	blob.size = z.total_out;
	deflateEnd(&z);
	memcpy(blob.digest, "sha256:", 7);
	sigv4_sha256_hex(blob.data, blob.size, blob.digest + 7);
	*tar = t;
	*tarlen = len;
}

static void image_init(struct rfs_image *im, struct fs_ctx *c, struct rfs_layer *L)
{
	memset(im, 0, sizeof *im);
	memset(L, 0, sizeof *L);
	im->registry = "111111111111";
	im->region = "us-east-1";
	im->repo = "team/app";
	im->c = c;
	snprintf(L->digest, sizeof L->digest, "%s", blob.digest);
	L->size = blob.size;
	L->copy_fd = -1;
}

static void test_build_load_read(struct fs_ctx *c, const unsigned char *tar)
{
	struct rfs_image im;
	struct rfs_layer L;
	char path[4200], buf[5000];
	image_init(&im, c, &L);
	CHECK_INT(rfs_layer_get(&im, &L), 0);
	CHECK(L.ix != NULL && !strcmp(L.source, RFS_SRC_BUILT));
	CHECK_INT(L.fed, blob.size);
	snprintf(path, sizeof path, "%s/index/%s", c->o.cache_dir, blob.digest + 7);
	CHECK_INT(access(path, F_OK), 0);
	CHECK_INT(rfs_st_builds, 1);
	/* A read in the middle of the file, across a span boundary. */
	CHECK_INT(rfs_read_layer(&im, &L, 512 + 1048000, buf, sizeof buf, NULL), sizeof buf);
	CHECK(!memcmp(buf, tar + 512 + 1048000, sizeof buf));
	CHECK_INT(rfs_held_count(), 1);
	rfs_held_put(&im, &L);
	CHECK_INT(rfs_held_count(), 0);

	/* Another state (a remount): the saved index, no fetch. */
	struct rfs_image im2;
	struct rfs_layer L2;
	image_init(&im2, c, &L2);
	int before = blob.ranges;
	CHECK_INT(rfs_layer_get(&im2, &L2), 0);
	CHECK(!strcmp(L2.source, RFS_SRC_LOCAL));
	CHECK_INT(blob.ranges, before);
	CHECK_INT(rfs_st_loads, 1);
	CHECK_INT(rfs_read_layer(&im2, &L2, 512, buf, 100, NULL), 100);
	CHECK(!memcmp(buf, tar + 512, 100));

	/* A second image with the same layer shares the index in memory: no
	 * load, no fetch; it lives until the last image lets go. */
	struct rfs_image im3;
	struct rfs_layer L3;
	image_init(&im3, c, &L3);
	CHECK_INT(rfs_layer_get(&im3, &L3), 0);
	CHECK(L3.ix == L2.ix);
	CHECK_INT(rfs_st_loads, 1);
	CHECK_INT(blob.ranges, before);
	CHECK_INT(rfs_held_count(), 1);
	rfs_held_put(&im2, &L2);
	CHECK_INT(rfs_held_count(), 1);
	CHECK_INT(rfs_read_layer(&im3, &L3, 512, buf, 100, NULL), 100);
	CHECK(!memcmp(buf, tar + 512, 100));
	rfs_held_put(&im3, &L3);
	CHECK_INT(rfs_held_count(), 0);
}

/* The blob reader's hash check fails the stream: no index is saved. */
static void test_corrupt(struct fs_ctx *c)
{
	struct rfs_image im;
	struct rfs_layer L;
	char path[4200];
	unsigned char *tar;
	size_t tarlen;
	free(blob.data);
	make_layer(300000, &tar, &tarlen);
	blob.corrupt_at = 1000;
	image_init(&im, c, &L);
	CHECK(rfs_layer_get(&im, &L) < 0);
	CHECK(L.ix == NULL);
	snprintf(path, sizeof path, "%s/index/%s", c->o.cache_dir, blob.digest + 7);
	CHECK(access(path, F_OK) != 0);
	CHECK_INT(rfs_st_failures, 1);
	free(tar);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

int main(void)
{
	char dir[] = "/tmp/ecrfs-test-rootfs-layer-XXXXXX";
	struct fs_ctx c;
	memset(&c, 0, sizeof c);
	if (!mkdtemp(dir) || cache_open(dir, 0, &c.cache) != 0)
		return 1;
	c.o.cache_dir = dir;
	struct fs_blobs_cfg cfg = {.cache = c.cache, .src = &fake_src, .deadline_ms = 5000};
	CHECK_INT(fs_blobs_new(&cfg, &c.blobs), 0);
	unsigned char *tar;
	size_t tarlen;
	blob.corrupt_at = -1;
	make_layer(3 << 20, &tar, &tarlen);
	test_build_load_read(&c, tar);
	free(tar);
	test_corrupt(&c);
	fs_rootfs_shutdown();
	fs_blobs_free(c.blobs);
	cache_close(c.cache);
	free(blob.data);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_summary("rootfs_layer");
}
