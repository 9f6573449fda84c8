/* The two ends of a layer's chain of index sources (view_rootfs_sources.c):
 * the index loaded from cache_dir/index, and the build that streams the
 * blob once through the verified blob path (which also fills the blob
 * cache) and saves the index only when the stream hashed to the layer
 * digest. zstd layers keep their decompressed copy next to the index
 * (<hex>.tar), written before the index so an index never lacks it. And the
 * reads of a layer's bytes: by range, and uncompressed through the span
 * cache. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

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
	int rc = fs_blob_open(im->c->blobs, &ref, 0, rs);
	if (rc == 0 && L->ranged)
		fs_blob_caller_checks(*rs);
	return rc;
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

/* Names under cache_dir/index/ (the cache counts and evicts them): the
 * index "<hex>", a zstd layer's decompressed copy "<hex>.tar". */
static void aux_name(const struct rfs_layer *L, const char *suffix, char *out, size_t size)
{
	snprintf(out, size, "%s%s", L->digest + 7, suffix);
}

static void aux_path(const struct rfs_image *im, const struct rfs_layer *L, const char *suffix,
		     char *out, size_t size)
{
	snprintf(out, size, "%s/%s%s", cache_aux_dir(im->c->cache), L->digest + 7, suffix);
}

/* The copy is kept open for reads; a shared flock keeps other mounts on
 * this cache_dir from evicting it meanwhile. */
static void copy_hold(struct rfs_layer *L, int fd)
{
	flock(fd, LOCK_SH);
	L->copy_fd = fd;
}

/* Hands a finished build's files to the cache, pinned: the copy first
 * (an index never lacks it), then the index. No room: the index serves
 * this mount from memory and is rebuilt by a later one. */
static void commit(struct rfs_image *im, struct rfs_layer *L, struct rootfs_index *ix,
		   struct zcopy *z, const char *dir)
{
	char name[100], path[4200];
	cache *cc = im->c->cache;
	if (z->fd >= 0) {
		aux_path(im, L, ".tar", path, sizeof path);
		aux_name(L, ".tar", name, sizeof name);
		if (fdatasync(z->fd) || rename(z->tmp, path)) {
			log_warn("rootfs: copy of %s: %s", L->digest, strerror(errno));
			unlink(z->tmp);
			return;
		}
		if (cache_aux_add(cc, name, 1) != 0)
			return;
		L->pin_copy = 1;
	}
	aux_name(L, "", name, sizeof name);
	if (rootfs_index_save(ix, dir) == 0 && cache_aux_add(cc, name, 1) == 0)
		L->pin_ix = 1;
}

int rfs_layer_build(struct rfs_image *im, struct rfs_layer *L, const char *dir)
{
	struct zcopy z = {.fd = -1};
	struct rootfs_build_opts o = {.on_output = zcopy_write, .output_arg = &z};
	struct rootfs_build *b = NULL;
	struct rootfs_index *ix = NULL;
	snprintf(z.tmp, sizeof z.tmp, "%s/.%s.tar.XXXXXX", dir, L->digest + 7);
	int rc = rootfs_build_new(L->digest, ROOTFS_COMP_AUTO, &o, &b);
	if (rc == 0)
		rc = stream(im, L, b);
	if (rc == 0)
		rc = rootfs_build_finish(b, &ix);
	rootfs_build_free(b);
	if (rc == 0)
		commit(im, L, ix, &z, dir);
	else if (z.fd >= 0)
		unlink(z.tmp);
	if (z.fd >= 0 && rc == 0)
		copy_hold(L, z.fd);
	else if (z.fd >= 0)
		close(z.fd);
	if (rc == -EMEDIUMTYPE)
		L->not_tar = 1; /* verified: a retry need not download it again */
	else if (rc)
		log_warn("rootfs: index of %s: %s", L->digest, strerror(-rc));
	if (rc) {
		rootfs_index_free(ix);
		return rc;
	}
	L->ix = ix;
	return 0;
}

/* A saved index, pinned in the cache while this image holds it; a zstd
 * layer's also needs its copy. */
int rfs_layer_load(struct rfs_image *im, struct rfs_layer *L, const char *dir)
{
	char path[4200], name[100];
	struct rootfs_index *ix = NULL;
	cache *cc = im->c->cache;
	aux_name(L, "", name, sizeof name);
	int rc = cache_aux_pin(cc, name);
	if (rc)
		return rc;
	L->pin_ix = 1;
	rc = rootfs_index_load(dir, L->digest, &ix);
	if (rc == 0 && L->zstd) {
		aux_name(L, ".tar", name, sizeof name);
		aux_path(im, L, ".tar", path, sizeof path);
		int fd = -1;
		if (cache_aux_pin(cc, name) == 0) {
			L->pin_copy = 1;
			fd = open(path, O_RDONLY | O_CLOEXEC);
		}
		if (fd >= 0)
			copy_hold(L, fd);
		else
			rc = -EBADMSG;
	}
	if (rc) {
		rootfs_index_free(ix);
		rfs_layer_unpin(im, L);
	}
	if (rc == -EBADMSG) {
		log_warn("rootfs: index of %s unusable: rebuilt", L->digest);
		aux_name(L, "", name, sizeof name);
		cache_aux_drop(cc, name);
	}
	if (rc == 0)
		L->ix = ix;
	return rc;
}

void rfs_layer_unpin_in(cache *cc, struct rfs_layer *L)
{
	char name[100];
	if (L->pin_ix) {
		aux_name(L, "", name, sizeof name);
		cache_aux_unpin(cc, name);
		L->pin_ix = 0;
	}
	if (L->pin_copy) {
		aux_name(L, ".tar", name, sizeof name);
		cache_aux_unpin(cc, name);
		L->pin_copy = 0;
	}
}

void rfs_layer_unpin(struct rfs_image *im, struct rfs_layer *L)
{
	rfs_layer_unpin_in(im->c->cache, L);
}

int rfs_layer_pread(struct rfs_image *im, struct rfs_layer *L, uint64_t off, void *buf,
		    size_t len, volatile int *cancel)
{
	struct fs_rstate *rs = NULL;
	struct rfs_layer r = *L; /* the sources check what they read */
	r.ranged = 1;
	if (off > L->size || len > L->size - off)
		return -EINVAL;
	int rc = blob_ref_open(im, &r, &rs);
	if (rc == 0)
		rc = blob_pread(rs, buf, len, off, cancel);
	fs_blob_close(rs);
	return rc;
}

#define OTHER_BLOB_MAX (64u << 20)

int rfs_blob_fetch(struct rfs_image *im, const char *digest, uint64_t size, void **out)
{
	struct rfs_layer tmp = {.size = size}; /* checked as a whole below */
	unsigned char md[32];
	char hex[65];
	volatile int never = 0;
	if (size > OTHER_BLOB_MAX || strlen(digest) != 71 || strncmp(digest, "sha256:", 7))
		return -EFBIG;
	snprintf(tmp.digest, sizeof tmp.digest, "%s", digest);
	void *buf = malloc(size ? size : 1);
	int rc = buf ? rfs_layer_pread(im, &tmp, 0, buf, (size_t)size, &never) : -ENOMEM;
	if (rc == 0 && EVP_Digest(buf, (size_t)size, md, NULL, EVP_sha256(), NULL) != 1)
		rc = -EIO;
	for (size_t i = 0; rc == 0 && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (rc == 0 && strcmp(hex, digest + 7) != 0)
		rc = -EIO;
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
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
	const struct rootfs_index *ix = rfs_read_index(L);
	ssize_t n = s ? rootfs_spans_read(s, ix, &src, off, buf, len) : -ENOMEM;
	/* A span that failed its sha256 may sit in the blob cache: drop it so
	 * that the next read fetches it again. */
	if (n == -EIO && L->copy_fd < 0)
		cache_blob_drop(im->c->cache, L->digest);
	/* The layer's bytes disagree with a TOC's digest: the local build. */
	if (n == -EIO && ix == L->ix && L->ranged && (ix = rfs_layer_fallback(im, L)))
		n = rootfs_spans_read(s, ix, &src, off, buf, len);
	return n;
}
