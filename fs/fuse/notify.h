/* Kernel cache invalidations, sent from one worker thread (a notification
 * sent from inside the handler of the same directory could deadlock: the
 * kernel holds that directory's lock while it waits for our reply). */
#ifndef ECRFS_FS_FUSE_NOTIFY_H
#define ECRFS_FS_FUSE_NOTIFY_H

#include <stdint.h>

#include "fs/mount.h"
#include "fs/tree/node.h"

int fs_notify_start(struct fuse_session *se);
void fs_notify_stop(void);

/* Invalidates the kernel's entry dir/name (name NULL: dir's whole listing
 * and attributes) and the listing caches under dir. Safe to call inside any
 * handler, also of dir itself. */
void fs_notify_changed(struct fs_node *dir, const char *name);
/* Asks the kernel to drop its entry dir/name (nothing else changes): it
 * FORGETs the node and its children unless they are in use. */
void fs_notify_drop_entry(uint64_t dir, const char *name);
/* Invalidates the kernel's page cache of ino. */
void fs_inval_inode_async(uint64_t ino);

#endif
