/* The FUSE low-level operations table. */
#ifndef ECRFS_FS_OPS_H
#define ECRFS_FS_OPS_H

#include "fs/mount.h"

#include <time.h>

struct fs_node;

/* Fills ops with the read side, write operations answering EROFS (FLUSH,
 * FSYNC and FSYNCDIR succeed: nothing is buffered), then lets the push side
 * install its operations through fs_ops_write_install() when linked in and
 * the mount is not read-only. */
void fs_ops_build(struct fuse_lowlevel_ops *ops);

/* The push side hides names unlinked inside committed tags (push_hide.c):
 * in image directories, a name hidden() reports gets a negative LOOKUP
 * (not cached), GETATTR answers ENOENT, listings leave it out and are not
 * cached by the kernel. */
void fs_ops_set_hidden(int (*hidden)(struct fs_node *dir, const char *name, time_t now));

/* Frees the handles the kernel never released (at unmount). */
void fs_ops_cleanup(void);

#endif
