/* Options of the mount (fuse_opt tables): parsing, checks, help. */
#ifndef ECRFS_FS_OPTS_H
#define ECRFS_FS_OPTS_H

#include <fuse_opt.h>
#include <stdio.h>

#include "fs/mount.h"

/* Parses args into o (defaults first); -EINVAL on a bad option. */
int fs_opts_parse(struct fuse_args *args, struct fs_opts *o);
/* Checks c->o and derives the mount's settings from it (deadline, cache
 * size, ids); prints the reason and returns -EINVAL when an option is bad. */
int fs_opts_check(struct fs_ctx *c);
void fs_opts_usage(FILE *f);
/* $XDG_CACHE_HOME/ecrfs, ~/.cache/ecrfs, or /var/cache/ecrfs for root. */
char *fs_opts_default_cache_dir(void);
/* mkdir -p with mode 0700 for the directories we create. */
void fs_opts_mkdirs(const char *path);

#endif
