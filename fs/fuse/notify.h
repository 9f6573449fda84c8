/* The kernel notification worker (see fs_notify_changed in fs.h). */
#ifndef ECRFS_FS_NOTIFY_H
#define ECRFS_FS_NOTIFY_H

#include "fs/mount.h"

int fs_notify_start(struct fuse_session *se);
void fs_notify_stop(void);

/* Invalidates the kernel page cache of ino from a worker thread. */
void fs_inval_inode_async(fuse_ino_t ino);

#endif
