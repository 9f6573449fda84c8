/* OPEN, READ, FLUSH, FSYNC, RELEASE of files. Readers get an in-memory
 * handle (manifests, index.json, control files) or a blob reader; opens
 * for writing and the handles of writers go to the push glue. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"
#include "fs/fuse/reply_fd.h"
#include "fs/fuse/views_ecr.h"
#include "fs/tree/ctl.h"
#include "fs/tree/view_rootfs.h"

static int open_ctl(struct fs_ctx *c, struct fs_node *n, struct fs_fh *h,
		    struct fuse_file_info *fi)
{
	char *pending = n->ctl == FS_CTL_PENDING && c->push ? push_pending_text(c) : NULL;
	int rc = fs_ctl_render(c, n->ctl, pending, &h->data, &h->len);
	free(pending);
	h->owned = 1;
	fi->direct_io = 1; /* every read is fresh */
	return rc;
}

static int open_img_file(struct fs_ctx *c, struct fs_node *n, struct fs_fh *h,
			 struct fuse_file_info *fi)
{
	h->img = n->img;
	fs_image_ref(h->img);
	fi->keep_cache = 1; /* keyed by digest: the bytes never change */
	if (n->blob_idx == FS_IDX_OCI_LAYOUT) {
		h->data = (char *)FS_OCI_LAYOUT_JSON;
		h->len = strlen(FS_OCI_LAYOUT_JSON);
	} else if (n->blob_idx == FS_IDX_INDEX_JSON) {
		h->data = n->img->index_json;
		h->len = n->img->index_len;
	} else if (n->img->blobs[n->blob_idx].data) {
		h->data = n->img->blobs[n->blob_idx].data;
		h->len = n->img->blobs[n->blob_idx].size;
	} else {
		const struct fs_blob *b = &n->img->blobs[n->blob_idx];
		struct fs_blob_ref ref = {n->img->registry, n->img->region, n->img->repo, b->digest,
					  b->size, fs_ecr_for(c, n->img->registry)};
		h->kind = FH_BLOB;
		return fs_blob_open(c->blobs, &ref, n->ino, &h->rs);
	}
	return 0;
}


/* A file of TAG@rootfs or TAG@layers: the bytes never change. */
static int open_rootfs(struct fs_ctx *c, fuse_req_t req, struct fs_node *n,
		       struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_new(FH_ROOTFS);
	volatile int cancel;
	int rc = h ? 0 : -ENOMEM;
	if (rc == 0) {
		interruptible_begin(req, &cancel);
		rc = fs_rootfs_open(c, n, &h->rf);
		interruptible_end(req);
	}
	if (rc == 0 && (rc = fh_insert(c->fhs, h, &fi->fh)) == 0) {
		fi->keep_cache = 1;
		if (fuse_reply_open(req, fi) != 0)
			fh_put(fh_remove(c->fhs, fi->fh));
	}
	fh_put(h);
	return rc ? -user_errno(rc) : 0;
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	fs_op_count(c, FS_OP_OPEN, 1);
	if (vf_open(req, ino, fi))
		return; /* TAG@scan.json, REPO@settings/ files */
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		if (view_ro(ino))
			fuse_reply_err(req, EROFS);
		else if (c->push)
			wop_open(req, ino, fi);
		else
			fuse_reply_err(req, c->ro ? EROFS : EACCES);
		return;
	}
	struct fs_node *n = fs_node_get(ino);
	struct fs_fh *h = NULL;
	int rc = 0;
	if (n && fs_rootfs_is(n)) {
		rc = open_rootfs(c, req, n, fi);
		goto out;
	}
	if (!n || (n->kind != FS_N_IMG_FILE && n->kind != FS_N_CTL_FILE)) {
		rc = !n ? -ENOENT : n->kind == FS_N_PENDING_FILE ? -EBUSY : -EISDIR;
		goto out;
	}
	if (!(h = fh_new(FH_MEM))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = n->kind == FS_N_CTL_FILE ? open_ctl(c, n, h, fi) : open_img_file(c, n, h, fi);
	if (rc || (rc = fh_insert(c->fhs, h, &fi->fh)) != 0)
		goto out;
	/* An interrupted open never gets a RELEASE. */
	if (fuse_reply_open(req, fi) != 0)
		fh_put(fh_remove(c->fhs, fi->fh));
out:
	if (rc)
		fuse_reply_err(req, -rc);
	fh_put(h);
	fs_node_put(n);
}

static void reply_pread(fuse_req_t req, int fd, off_t off, size_t len)
{
	char *buf = malloc(len ? len : 1);
	ssize_t got = buf ? pread(fd, buf, len, off) : -1;
	if (got == (ssize_t)len)
		fuse_reply_buf(req, buf, len);
	else
		fuse_reply_err(req, buf ? EIO : ENOMEM);
	free(buf);
}

static void read_blob(fuse_req_t req, struct fs_fh *h, size_t size, off_t off)
{
	char *buf = NULL;
	int fd = -1;
	volatile int cancel = 0;
	fuse_req_interrupt_func(req, req_interrupted, (void *)&cancel);
	ssize_t n = fs_blob_read(h->rs, &buf, size, (uint64_t)off, &cancel, &fd);
	fuse_req_interrupt_func(req, NULL, NULL);
	if (n < 0) {
		fuse_reply_err(req, user_errno((int)n));
	} else if (fd >= 0) {
		/* From the cache file: its pages are spliced to the kernel, no
		 * copy through this process; else read and sent. */
		if (fs_reply_fd(req, fd, off, (size_t)n) != 0)
			reply_pread(req, fd, off, (size_t)n);
	} else {
		fuse_reply_buf(req, buf, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
}

static void read_rootfs(fuse_req_t req, struct fs_fh *h, size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	volatile int cancel = 0;
	fuse_req_interrupt_func(req, req_interrupted, (void *)&cancel);
	ssize_t n = buf ? fs_rootfs_read(h->rf, buf, size, (uint64_t)off, &cancel) : -ENOMEM;
	fuse_req_interrupt_func(req, NULL, NULL);
	if (n < 0)
		fuse_reply_err(req, user_errno((int)n));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	fs_op_count(req_ctx(req), FS_OP_READ, 1);
	/* The handle's reference keeps it alive if a RELEASE comes meanwhile. */
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	if (!h || h->kind == FH_WRITER || h->kind == FH_DIR || h->kind == FH_SETTINGS) {
		/* A pushed file is write-only until its commit. */
		fuse_reply_err(req, EBADF);
	} else if (h->kind == FH_BLOB) {
		read_blob(req, h, size, off);
	} else if (h->kind == FH_ROOTFS) {
		read_rootfs(req, h, size, off);
	} else {
		if ((uint64_t)off >= h->len)
			size = 0;
		else if (size > h->len - (uint64_t)off)
			size = h->len - (size_t)off;
		fuse_reply_buf(req, size ? h->data + off : NULL, size);
	}
	fh_put(h);
}

void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (vf_flush(req, fi))
		return; /* a REPO@settings/ file: its Put call */
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	if (h && h->kind == FH_WRITER)
		fuse_reply_err(req, -pending_flush(h->pf));
	else
		fuse_reply_err(req, 0); /* nothing buffered on the read side */
	fh_put(h);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	if (h && h->kind == FH_WRITER)
		fuse_reply_err(req, -pending_fsync(h->pf));
	else
		fuse_reply_err(req, 0);
	fh_put(h);
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_remove(req_ctx(req)->fhs, fi->fh);
	if (h && h->kind == FH_WRITER)
		pending_release(h->pf);
	fh_put(h);
	fuse_reply_err(req, 0);
}
