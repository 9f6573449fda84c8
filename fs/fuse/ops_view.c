/* TAG@rootfs and TAG@layers in the op table: READLINK, and EROFS for
 * every write inside them (the image's files are read only; without this
 * the push glue would answer EPERM). */
#include <errno.h>
#include <stdlib.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"
#include "fs/tree/view_rootfs.h"

void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_node *n = fs_node_get(ino);
	char *target = NULL;
	int rc = n && fs_rootfs_is(n) ? 0 : n ? -EINVAL : -ENOENT;
	if (rc == 0) {
		volatile int cancel;
		interruptible_begin(req, &cancel);
		rc = fs_rootfs_readlink(req_ctx(req), n, &target);
		interruptible_end(req);
	}
	if (rc)
		fuse_reply_err(req, user_errno(rc));
	else
		fuse_reply_readlink(req, target);
	free(target);
	fs_node_put(n);
}

int view_ro(fuse_ino_t ino)
{
	struct fs_node *n = fs_node_get(ino);
	int ro = n && fs_rootfs_is(n);
	fs_node_put(n);
	return ro;
}

void vw_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	if (view_ro(parent))
		fuse_reply_err(req, EROFS);
	else
		wop_mkdir(req, parent, name, mode);
}

void vw_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	if (view_ro(parent))
		fuse_reply_err(req, EROFS);
	else
		wop_create(req, parent, name, mode, fi);
}

void vw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi)
{
	if (view_ro(ino))
		fuse_reply_err(req, EROFS);
	else
		wop_setattr(req, ino, attr, to_set, fi);
}

void vw_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags)
{
	if (view_ro(ino))
		fuse_reply_err(req, EROFS);
	else
		wop_setxattr(req, ino, name, value, size, flags);
}

void vw_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (view_ro(ino))
		fuse_reply_err(req, EROFS);
	else
		wop_removexattr(req, ino, name);
}

void vw_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	if (view_ro(parent) || view_ro(newparent))
		fuse_reply_err(req, EROFS);
	else
		wop_rename(req, parent, name, newparent, newname, flags);
}

void vw_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (view_ro(parent))
		fuse_reply_err(req, EROFS);
	else
		wop_unlink(req, parent, name);
}

void vw_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (view_ro(parent))
		fuse_reply_err(req, EROFS);
	else
		wop_rmdir(req, parent, name);
}
