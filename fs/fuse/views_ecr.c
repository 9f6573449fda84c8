/* Files of TAG@scan.json and REPO@settings/ (tree/view_ecr.h). Reads get
 * the text ECR gives at OPEN, with direct_io so every open is fresh. A
 * settings file opened for writing collects the bytes in its handle
 * (FH_SETTINGS, at most FS_SETTINGS_MAX) and the FLUSH of the close that
 * ends the write sends them with one Put call: its errno is that close's.
 * TAG@referrers/ holds image directories: only their removal is refused
 * here (the view is read only). */
#include "fs/fuse/views_ecr.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/view_ecr.h"

/* Protects data, len and dirty of FH_SETTINGS handles (a leaf lock, never
 * held over a network call). */
static pthread_mutex_t vf_mu = PTHREAD_MUTEX_INITIALIZER;

static int is_file(const struct fs_node *n)
{
	return n && (fs_scan_is_file(n) || fs_settings_is_file(n));
}

/* A reader's handle: the file's text now. */
static int open_read(fuse_req_t req, struct fs_node *n, struct fs_fh *h)
{
	struct fs_ctx *c = req_ctx(req);
	volatile int cancel;
	int rc;

	interruptible_begin(req, &cancel);
	if (fs_scan_is_file(n))
		rc = fs_scan_render(c, n, &h->data, &h->len);
	else
		rc = fs_settings_read(c, n, &h->data, &h->len);
	interruptible_end(req);
	h->owned = 1;
	return rc;
}

int vf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	struct fs_fh *h = NULL;
	int wr = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC), rc;

	if (!is_file(n)) {
		fs_node_put(n);
		return 0;
	}
	/* Root passes the mode bits: the file decides. */
	rc = !wr ? 0 : c->ro ? -EROFS : fs_settings_writable(n) ? 0 : -EACCES;
	if (rc == 0 && !(h = fh_new(wr ? FH_SETTINGS : FH_MEM)))
		rc = -ENOMEM;
	if (rc)
		goto out;
	if (wr) {
		h->node = n; /* the handle keeps the reference */
		n = NULL;
	} else if ((rc = open_read(req, n, h)) != 0) {
		goto out;
	}
	fi->direct_io = 1;
	if ((rc = fh_insert(c->fhs, h, &fi->fh)) != 0)
		goto out;
	if (fuse_reply_open(req, fi) != 0) /* interrupted: no RELEASE comes */
		fh_put(fh_remove(c->fhs, fi->fh));
out:
	if (rc)
		fuse_reply_err(req, user_errno(rc));
	fh_put(h);
	fs_node_put(n);
	return 1;
}

/* Sets the buffer's size to size (zeros fill a gap), NUL-terminated. */
static int resize_locked(struct fs_fh *h, size_t size)
{
	if (size > FS_SETTINGS_MAX)
		return -EFBIG;
	char *d = realloc(h->data, size + 1);
	if (!d)
		return -ENOMEM;
	if (size > h->len)
		memset(d + h->len, 0, size - h->len);
	d[size] = 0;
	h->data = d;
	h->len = size;
	h->owned = 1;
	return 0;
}

static int buf_write(struct fs_fh *h, const char *buf, size_t size, off_t off)
{
	int rc = 0;
	if (off < 0 || (uint64_t)off + size > FS_SETTINGS_MAX)
		return -EFBIG;
	pthread_mutex_lock(&vf_mu);
	if ((size_t)off + size > h->len)
		rc = resize_locked(h, (size_t)off + size);
	if (rc == 0) {
		memcpy(h->data + off, buf, size);
		h->dirty = 1;
	}
	pthread_mutex_unlock(&vf_mu);
	return rc;
}

int vf_write(fuse_req_t req, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	if (!h || h->kind != FH_SETTINGS) {
		fh_put(h);
		return 0;
	}
	int rc = buf_write(h, buf, size, off);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
	fh_put(h);
	return 1;
}

int vf_flush(fuse_req_t req, struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	char *text = NULL;
	size_t len = 0;
	int rc = 0;

	if (!h || h->kind != FH_SETTINGS) {
		fh_put(h);
		return 0;
	}
	/* Only the close that ends a write sends it, once. */
	pthread_mutex_lock(&vf_mu);
	if (h->dirty && !(text = malloc(h->len + 1))) {
		rc = -ENOMEM;
	} else if (h->dirty) {
		len = h->len;
		memcpy(text, h->data ? h->data : "", len);
		text[len] = 0;
		h->dirty = 0;
	}
	pthread_mutex_unlock(&vf_mu);
	if (text) {
		volatile int cancel;
		interruptible_begin(req, &cancel);
		rc = fs_settings_write(req_ctx(req), h->node, text, len);
		interruptible_end(req);
	}
	fuse_reply_err(req, rc ? user_errno(rc) : 0);
	free(text);
	fh_put(h);
	return 1;
}

/* A size through the file's write handle resizes what will be sent; a
 * truncation to 0 by name (before a write) changes nothing. */
static int set_size(fuse_req_t req, struct fs_node *n, off_t size, struct fuse_file_info *fi)
{
	struct fs_fh *h = fi ? fh_get(req_ctx(req)->fhs, fi->fh) : NULL;
	int rc;

	if (!fs_settings_writable(n))
		rc = req_ctx(req)->ro ? -EROFS : -EACCES;
	else if (h && h->kind == FH_SETTINGS && size >= 0) {
		pthread_mutex_lock(&vf_mu);
		rc = resize_locked(h, (size_t)size);
		if (rc == 0)
			h->dirty = 1;
		pthread_mutex_unlock(&vf_mu);
	} else {
		rc = size == 0 ? 0 : -EINVAL;
	}
	fh_put(h);
	return rc;
}

int vf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	       struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	struct stat st;
	int rc = 0;

	if (!is_file(n)) {
		fs_node_put(n);
		return 0;
	}
	if (to_set & FUSE_SET_ATTR_SIZE)
		rc = set_size(req, n, attr->st_size, fi);
	/* Times, mode and owner: accepted and ignored, as elsewhere. */
	if (rc == 0)
		rc = fs_tree_getattr(c, n, &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
	fs_node_put(n);
	return 1;
}

int vf_create(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *dir = fs_node_get(parent), *n = NULL;
	struct fs_fh *h = NULL;
	int rc;

	if (!dir || !fs_settings_is_dir(dir)) {
		fs_node_put(dir);
		return 0;
	}
	if ((rc = fs_settings_create(c, dir, name, &n)) != 0)
		goto out;
	if (!(h = fh_new(FH_SETTINGS))) {
		rc = -ENOMEM;
		goto out;
	}
	fs_node_ref(n);
	h->node = n;
	fi->direct_io = 1;
	if ((rc = fh_insert(c->fhs, h, &fi->fh)) != 0)
		goto out;
	if (reply_entry(req, n, 0, 0, fi) != 0)
		fh_put(fh_remove(c->fhs, fi->fh)); /* no RELEASE will come */
out:
	if (rc)
		fuse_reply_err(req, -rc);
	fh_put(h);
	fs_node_put(n);
	fs_node_put(dir);
	return 1;
}

int vf_remove(fuse_req_t req, fuse_ino_t parent, const char *name, int rmdir)
{
	struct fs_node *dir = fs_node_get(parent);
	volatile int cancel;
	int rc;

	if (!dir || dir->kind != FS_N_VIEW) {
		fs_node_put(dir);
		return 0;
	}
	if (!fs_settings_is_dir(dir)) {
		rc = -EPERM; /* a referrer is removed as the repository's @sha256-<hex>/ */
	} else if (rmdir) {
		rc = -ENOTDIR;
	} else {
		interruptible_begin(req, &cancel);
		rc = fs_settings_unlink(req_ctx(req), dir, name);
		interruptible_end(req);
	}
	fuse_reply_err(req, user_errno(rc));
	fs_node_put(dir);
	return 1;
}
