/* The mount object's life (mount.c). */
#ifndef ECRFS_FS_MOUNT_SETUP_H
#define ECRFS_FS_MOUNT_SETUP_H

#include "fs/mount.h"

/* Logging, regions, credentials, HTTP, ECR clients, cache, own registry.
 * Prints the reason and returns -errno when the mount cannot be made. */
int fs_mount_setup(struct fs_ctx *c);
/* Node table, handle table, push side (not under -o ro). Call in the
 * process that serves the mount (after daemonizing: it starts threads). */
int fs_mount_start(struct fs_ctx *c);
/* Frees everything the mount owns (after the session ended). */
void fs_mount_stop(struct fs_ctx *c);

#endif
