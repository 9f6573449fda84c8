/* One layer's index for TAG@rootfs: loaded from cache_dir/index, else built
 * by streaming the blob once through the verified blob path (which also
 * fills the blob cache) and saved only when the stream hashed to the layer
 * digest. zstd layers keep their decompressed copy next to the index
 * (<hex>.tar), written before the index so an index never lacks it. And the
 * reads of a layer's uncompressed bytes through the span cache. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/tree/view_rootfs_i.h"
#include "net/log.h"

#define FEED_CHUNK (1u << 20)

struct zcopy {
	char tmp[4200];
	int fd;
};

static int zcopy_write(void *arg, const void *buf, size_t len)
{
	struct zcopy *z = arg;
	if (z->fd < 0 && (z->fd = mkostemp(z->tmp, O_CLOEXEC)) < 0)
		return -errno;
	for (const char *p = buf; len;) {
		ssize_t w = write(z->fd, p, len);
		if (w < 0)
			return errno == EINTR ? 0 : -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int blob_ref_open(struct rfs_image *im, const struct rfs_layer *L, struct fs_rstate **rs)
{
	struct fs_blob_ref ref = {im->registry, im->region, im->repo,
				  L->digest,	L->size,    fs_ecr_for(im->c, im->registry)};
	return fs_blob_open(im->c->blobs, &ref, 0, rs);
}

/* Exactly len bytes at off of the blob; 0 or -errno. */
static int blob_pread(struct fs_rstate *rs, void *buf, size_t len, uint64_t off,
		      volatile int *cancel)
{
	while (len) {
		char *b = NULL;
		int fd = -1;
		ssize_t n = fs_blob_read(rs, &b, len, off, cancel, &fd);
		if (n > 0 && fd >= 0 && pread(fd, buf, (size_t)n, (off_t)off) != n)
			n = -EIO;
		else if (n > 0 && fd < 0)
			memcpy(buf, b, (size_t)n);
		if (fd >= 0)
			close(fd);
		free(b);
		if (n <= 0)
			return n ? (int)n : -EIO;
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Streams the blob into b; L->fed follows. */
static int stream(struct rfs_image *im, struct rfs_layer *L, struct rootfs_build *b)
{
	struct fs_rstate *rs = NULL;
	/* An unmount is seen between chunks (the chunk in flight ends by the
	 * blob reader's deadline); fetches get a flag of their own. */
	volatile int *stop = rfs_stop_flag(), never = 0;
	char *buf = malloc(FEED_CHUNK);
	int rc = buf ? blob_ref_open(im, L, &rs) : -ENOMEM;
	for (uint64_t off = 0; rc == 0 && off < L->size;) {
		size_t n = L->size - off < FEED_CHUNK ? (size_t)(L->size - off) : FEED_CHUNK;
		rc = __atomic_load_n(stop, __ATOMIC_RELAXED) ? -ECANCELED
							     : blob_pread(rs, buf, n, off, &never);
		if (rc == 0)
			rc = rootfs_build_feed(b, buf, n);
		off += n;
		__atomic_store_n(&L->fed, off, __ATOMIC_RELAXED);
	}
	fs_blob_close(rs);
	free(buf);
	return rc;
}

static void index_path(const struct fs_ctx *c, const struct rfs_layer *L, const char *suffix,
		       char *out, size_t size)
{
	snprintf(out, size, "%s/index/%s%s", c->o.cache_dir, L->digest + 7, suffix);
}

static int build(struct rfs_image *im, struct rfs_layer *L, const char *dir)
{
	struct zcopy z = {.fd = -1};
	struct rootfs_build_opts o = {.on_output = zcopy_write, .output_arg = &z};
	struct rootfs_build *b = NULL;
	struct rootfs_index *ix = NULL;
	char path[4200];
	snprintf(z.tmp, sizeof z.tmp, "%s/.%s.tar.XXXXXX", dir, L->digest + 7);
	int rc = rootfs_build_new(L->digest, ROOTFS_COMP_AUTO, &o, &b);
	if (rc == 0)
		rc = stream(im, L, b);
	if (rc == 0)
		rc = rootfs_build_finish(b, &ix);
	rootfs_build_free(b);
	index_path(im->c, L, ".tar", path, sizeof path);
	if (rc == 0 && z.fd >= 0 && (fdatasync(z.fd) || rename(z.tmp, path)))
		rc = -errno;
	if (rc == 0 && rootfs_index_save(ix, dir) == 0) {
		struct stat st;
		index_path(im->c, L, "", path, sizeof path);
		if (stat(path, &st) == 0)
			__atomic_add_fetch(&rfs_st_index_bytes, (uint64_t)st.st_size,
					   __ATOMIC_RELAXED);
	} else if (rc == 0) {
		/* A full cache disk: the index serves from memory, built again
		 * by a later mount (the save logged why). */
		log_warn("rootfs: index of %s not saved; kept in memory", L->digest);
	}
	if (rc && z.fd >= 0)
		unlink(z.tmp);
	if (z.fd >= 0 && rc == 0)
		L->copy_fd = z.fd;
	else if (z.fd >= 0)
		close(z.fd);
	if (rc) {
		rootfs_index_free(ix);
		log_warn("rootfs: index of %s: %s", L->digest, strerror(-rc));
		return rc;
	}
	L->ix = ix;
	return 0;
}

/* A saved index; a zstd layer's also needs its copy. */
static int load(struct rfs_image *im, struct rfs_layer *L, const char *dir)
{
	char path[4200];
	struct rootfs_index *ix = NULL;
	int rc = rootfs_index_load(dir, L->digest, &ix);
	if (rc == 0 && L->zstd) {
		index_path(im->c, L, ".tar", path, sizeof path);
		L->copy_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (L->copy_fd < 0) {
			rootfs_index_free(ix);
			rc = -EBADMSG;
		}
	}
	if (rc == -EBADMSG) {
		log_warn("rootfs: index of %s unusable: rebuilt", L->digest);
		index_path(im->c, L, "", path, sizeof path);
		unlink(path);
	}
	if (rc == 0)
		L->ix = ix;
	return rc;
}

int rfs_layer_get(struct rfs_image *im, struct rfs_layer *L)
{
	char dir[4200];
	if (L->ix)
		return 0;
	snprintf(dir, sizeof dir, "%s/index", im->c->o.cache_dir);
	/* Not fatal (a full disk): nothing loads, and the build's save fails
	 * and keeps its index in memory. */
	if (mkdir(dir, 0700) && errno != EEXIST)
		log_debug("rootfs: %s: %s", dir, strerror(errno));
	int rc = load(im, L, dir);
	if (rc == 0) {
		L->local = 1;
		__atomic_add_fetch(&rfs_st_loads, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&L->fed, L->size, __ATOMIC_RELAXED);
		return 0;
	}
	rc = build(im, L, dir);
	__atomic_add_fetch(rc ? &rfs_st_failures : &rfs_st_builds, 1, __ATOMIC_RELAXED);
	return rc;
}

/* ---- reads ---- */

struct src_arg {
	struct rfs_image *im;
	struct rfs_layer *L;
	volatile int *cancel;
};

static int read_compressed(void *arg, uint64_t off, void *buf, size_t len)
{
	struct src_arg *a = arg;
	if (a->L->copy_fd >= 0) {
		ssize_t n = pread(a->L->copy_fd, buf, len, (off_t)off);
		return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
	}
	struct fs_rstate *rs = NULL;
	int rc = blob_ref_open(a->im, a->L, &rs);
	if (rc == 0)
		rc = blob_pread(rs, buf, len, off, a->cancel);
	fs_blob_close(rs);
	return rc;
}

ssize_t rfs_read_layer(struct rfs_image *im, struct rfs_layer *L, uint64_t off, void *buf,
		       size_t len, volatile int *cancel)
{
	struct rootfs_spans *s = rfs_spans();
	struct src_arg a = {im, L, cancel};
	struct rootfs_source src = {read_compressed, &a};
	ssize_t n = s ? rootfs_spans_read(s, L->ix, &src, off, buf, len) : -ENOMEM;
	/* A span that failed its sha256 may sit in the blob cache: drop it so
	 * that the next read fetches it again. */
	if (n == -EIO && L->copy_fd < 0)
		cache_blob_drop(im->c->cache, L->digest);
	return n;
}
