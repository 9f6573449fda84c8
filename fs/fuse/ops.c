/* The one FUSE op table: every handler of the mount, read and write. Under
 * -o ro the write handlers answer EROFS (FLUSH, FSYNC and FSYNCDIR succeed:
 * nothing is buffered; never ENOSYS, which turns a call off for the whole
 * mount). */
#include "fs/fuse/ops.h"

#include <errno.h>
#include <string.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs_ctx *c = userdata;
	/* Errors must come back in order: no writeback cache. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Every READDIR is a READDIRPLUS (ops_dir.c), not the kernel's "auto"
	 * mode: with it (kernel 6.18) `find DIR -maxdepth 1` of 5,000 tags got
	 * READDIRPLUS for its first buffers only, then plain READDIR and 4,804
	 * LOOKUPs. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* Reads from the cache are spliced from its files (reply_fd.c). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	/* O_TRUNC arrives with OPEN (a new pending version), not as a SETATTR. */
	if (c->push && (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC))
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_fsyncdir_ro(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void erofs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_cfr(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
		      struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
		      struct fuse_file_info *fi_out, size_t len, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void erofs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

void fs_fuse_ops(struct fuse_lowlevel_ops *ops, int writable)
{
	memset(ops, 0, sizeof *ops);
	ops->init = op_init;
	ops->lookup = op_lookup;
	ops->forget = op_forget;
	ops->forget_multi = op_forget_multi;
	ops->getattr = op_getattr;
	ops->statfs = op_statfs;
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->readdirplus = op_readdirplus;
	ops->releasedir = op_releasedir;
	ops->open = op_open;
	ops->read = op_read;
	ops->flush = op_flush;
	ops->fsync = op_fsync;
	ops->release = op_release;
	ops->getxattr = op_getxattr;
	ops->listxattr = op_listxattr;
	ops->readlink = op_readlink;
	/* vw_*: EROFS inside TAG@rootfs and TAG@layers, else the push glue. */
	ops->mkdir = writable ? vw_mkdir : erofs_mkdir;
	ops->create = writable ? vw_create : erofs_create;
	ops->write = writable ? wop_write : erofs_write;
	ops->fsyncdir = writable ? wop_fsyncdir : op_fsyncdir_ro;
	ops->setattr = writable ? vw_setattr : erofs_setattr;
	ops->setxattr = writable ? vw_setxattr : erofs_setxattr;
	ops->removexattr = writable ? vw_removexattr : erofs_name;
	ops->rename = writable ? vw_rename : erofs_rename;
	ops->unlink = writable ? vw_unlink : erofs_name;
	ops->rmdir = writable ? vw_rmdir : erofs_name;
	ops->copy_file_range = writable ? wop_copy_file_range : erofs_cfr;
}
