/* The push glue as the rest of fs/fuse sees it: its start and stop, the
 * attributes of pending nodes, .ecrfs/pending, and the write handlers that
 * ops.c puts in the op table (absent under -o ro). */
#ifndef ECRFS_FS_FUSE_PUSH_NODES_H
#define ECRFS_FS_FUSE_PUSH_NODES_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include "fs/mount.h"
#include "fs/tree/node.h"

#include "fs/fuse/push_side.h"

int pnode_getattr(struct fs_ctx *c, struct fs_node *n, struct stat *st);
/* user.ecr.push_state / user.ecr.push_records: length, -ENODATA when none.
 * With size 0 returns the length only. */
ssize_t pnode_getxattr(struct fs_ctx *c, struct fs_node *n, const char *name, char *buf,
		       size_t size);
/* Text of .ecrfs/pending (malloc'd). */
char *push_pending_text(struct fs_ctx *c);

/* Write handlers (write_files.c, write_names.c). */
void wop_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void wop_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		struct fuse_file_info *fi);
void wop_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void wop_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi);
void wop_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void wop_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		 struct fuse_file_info *fi);
void wop_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		  size_t size, int flags);
void wop_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void wop_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		const char *newname, unsigned int flags);
void wop_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void wop_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void wop_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			 struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			 struct fuse_file_info *fi_out, size_t len, int flags);

#endif
