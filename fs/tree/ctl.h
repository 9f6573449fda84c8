/* MNT/.ecrfs/ control files: stats, identity, version, pending. */
#ifndef ECRFS_FS_CTL_H
#define ECRFS_FS_CTL_H

#include <stddef.h>

#include "fs/mount.h"
#include "fs/tree/node.h"

/* FS_CTL_* for a file name, 0 when none. */
enum fs_ctl fs_ctl_by_name(const char *name);
/* File name of FS_CTL_* i, NULL past the last. */
const char *fs_ctl_name(int i);
/* Content of a control file, malloc'd. pending: the text of .ecrfs/pending
 * (the push side's; NULL when there is none, as under -o ro). */
int fs_ctl_render(struct fs_ctx *c, enum fs_ctl which, const char *pending, char **out,
		  size_t *len);

#endif
