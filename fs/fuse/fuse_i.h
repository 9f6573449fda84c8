/* What the FUSE handlers share: the request's mount, errno mapping,
 * INTERRUPT wiring, entry and xattr replies, and the handlers each file
 * defines (ops.c puts them in the one op table). */
#ifndef ECRFS_FS_FUSE_I_H
#define ECRFS_FS_FUSE_I_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "fs/fuse/handles.h"
#include "fs/mount.h"
#include "fs/tree/node.h"

static inline struct fs_ctx *req_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* What a user sees for an error from below: network trouble is EIO. */
int user_errno(int rc);

/* Wires a FUSE INTERRUPT of req to *cancel and to the HTTP calls this
 * thread makes until interruptible_end, which must come before the reply
 * (libfuse may call the handler until it is unregistered, and the request
 * is freed by the reply). */
/* libfuse's INTERRUPT handler: sets the int *data points to. */
void req_interrupted(fuse_req_t req, void *data);
void interruptible_begin(fuse_req_t req, volatile int *cancel);
void interruptible_end(fuse_req_t req);

/* Attributes of any node: the tree's, or the push glue's for pending ones. */
int node_getattr(struct fs_ctx *c, struct fs_node *n, struct stat *st);
/* Replies with n's entry (a new kernel reference) and its timeouts; fi
 * non-NULL: a CREATE reply with that open file. Non-zero when nothing
 * reached the kernel (an interrupted CREATE: the caller drops fi's handle). */
int reply_entry(fuse_req_t req, struct fs_node *n, double entry_ttl, double attr_ttl,
		 struct fuse_file_info *fi);
void reply_xattr(fuse_req_t req, const char *val, size_t len, size_t size);

/* ops_node.c */
/* Asks the kernel to drop the image directories beyond the bound kept
 * (fs_node_images_over); after anything that touched IMAGE nodes. */
void drop_old_images(void);
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_statfs(fuse_req_t req, fuse_ino_t ino);
/* ops_dir.c */
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* ops_file.c */
void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
/* ops_view.c: TAG@rootfs and TAG@layers */
void op_readlink(fuse_req_t req, fuse_ino_t ino);
/* 1 when ino is a node of a read-only view: writes there answer EROFS. */
int view_ro(fuse_ino_t ino);
/* The write handlers with that check first (the push glue's otherwise). */
void vw_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void vw_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void vw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi);
void vw_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags);
void vw_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void vw_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
void vw_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void vw_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
/* ops_xattr.c */
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif
