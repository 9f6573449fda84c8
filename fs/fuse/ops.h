/* The FUSE session of the mount: the op table, and running it. */
#ifndef ECRFS_FS_FUSE_OPS_H
#define ECRFS_FS_FUSE_OPS_H

#include "fs/mount.h"

struct fuse_lowlevel_ops;
struct fuse_args;

/* Fills ops with every handler; writable: the push side is there (not
 * -o ro), else writes answer EROFS. */
void fs_fuse_ops(struct fuse_lowlevel_ops *ops, int writable);

/* Mounts c at c->o.mountpoint and serves it until unmount or a signal.
 * on_mounted (may be NULL) is called once the mount is in place. Returns 0
 * or 1 (the process's exit status). */
int fs_fuse_run(struct fs_ctx *c, struct fuse_args *args, void (*on_mounted)(void *arg),
		void *arg);

/* The libfuse version in use (for --version). */
const char *fs_fuse_lib_version(void);

#endif
