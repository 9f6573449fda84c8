/* The push side as the mount starts and stops it (FUSE-free: fs/mount.c
 * includes this, not push_nodes.h). */
#ifndef ECRFS_FS_FUSE_PUSH_SIDE_H
#define ECRFS_FS_FUSE_PUSH_SIDE_H

#include "fs/mount.h"

/* Creates the push engine and its sweeper; sets c->push. */
int push_side_start(struct fs_ctx *c);
/* Stops the sweeper and frees the push side (unmount, after the handles). */
void push_side_stop(struct fs_ctx *c);
/* The node table's hook: a pending node's record goes with the node. */
void wnode_put(void *w);

#endif
