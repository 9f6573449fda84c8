/* The FUSE low-level operations table. */
#ifndef ECRFS_FS_OPS_H
#define ECRFS_FS_OPS_H

#include "fs/fs.h"

/* Fills ops with the read side, write operations answering EROFS (FLUSH,
 * FSYNC and FSYNCDIR succeed: nothing is buffered), then lets the push side
 * install its operations through fs_ops_write_install() when linked in and
 * the mount is not read-only. */
void fs_ops_build(struct fuse_lowlevel_ops *ops);

/* Frees the handles the kernel never released (at unmount). */
void fs_ops_cleanup(void);

#endif
