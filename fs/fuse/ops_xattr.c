/* GETXATTR, LISTXATTR: the tree's user.ecr.* and the push glue's
 * user.ecr.push_state / user.ecr.push_records; the files of TAG@rootfs
 * have their layers' own (any namespace). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"
#include "fs/tree/tree.h"
#include "fs/tree/view_rootfs.h"

/* The push glue's value of name on n; 1 when it answered. */
static int push_xattr(fuse_req_t req, struct fs_node *n, const char *name, size_t size)
{
	struct fs_ctx *c = req_ctx(req);
	ssize_t l = c->push ? pnode_getxattr(c, n, name, NULL, 0) : -ENODATA;
	if (l < 0)
		return 0;
	char *b = malloc((size_t)l + 1);
	if (b && (l = pnode_getxattr(c, n, name, b, (size_t)l + 1)) >= 0)
		reply_xattr(req, b, (size_t)l, size);
	else
		fuse_reply_err(req, b ? (int)-l : ENOMEM);
	free(b);
	return 1;
}

/* TAG@rootfs and TAG@layers: the image's own xattrs (binary values). */
static void rootfs_getxattr(fuse_req_t req, struct fs_node *n, const char *name, size_t size)
{
	char *val = NULL;
	size_t len = 0;
	int rc = fs_rootfs_xattr(req_ctx(req), n, name, &val, &len);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, val, len, size);
	free(val);
}

static void rootfs_listxattr(fuse_req_t req, struct fs_node *n, size_t size)
{
	ssize_t len = fs_rootfs_xattr_list(req_ctx(req), n, NULL, 0);
	char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
	if (len >= 0 && buf)
		len = fs_rootfs_xattr_list(req_ctx(req), n, buf, (size_t)len + 1);
	if (len < 0 || !buf)
		fuse_reply_err(req, len < 0 ? (int)-len : ENOMEM);
	else
		reply_xattr(req, buf, (size_t)len, size);
	free(buf);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_node *n = fs_node_get(ino);
	char *val = NULL;
	fs_op_count(req_ctx(req), FS_OP_GETXATTR, 1);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fs_rootfs_is(n)) {
		rootfs_getxattr(req, n, name, size);
	} else if (strncmp(name, "user.", 5) != 0) {
		/* Only user.* exists here. EOPNOTSUPP (not ENODATA) tells ls -l,
		 * which asks security.selinux and both POSIX ACLs of every entry,
		 * that this filesystem has none: it stops asking (per device). */
		fuse_reply_err(req, EOPNOTSUPP);
	} else if (!push_xattr(req, n, name, size)) {
		volatile int cancel;
		interruptible_begin(req, &cancel);
		int rc = fs_tree_xattr(req_ctx(req), n, name, &val);
		interruptible_end(req);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			reply_xattr(req, val, strlen(val), size);
	}
	free(val);
	fs_node_put(n);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	static const char push_state[] = "user.ecr.push_state";
	char buf[1024];
	fs_op_count(c, FS_OP_LISTXATTR, 1);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fs_rootfs_is(n)) {
		rootfs_listxattr(req, n, size);
		fs_node_put(n);
		return;
	}
	size_t pos = fs_tree_xattr_list(c, n, buf, sizeof buf - sizeof push_state);
	if (c->push && pnode_getxattr(c, n, push_state, NULL, 0) >= 0) {
		memcpy(buf + pos, push_state, sizeof push_state);
		pos += sizeof push_state;
	}
	reply_xattr(req, buf, pos, size);
	fs_node_put(n);
}
