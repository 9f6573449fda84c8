/* TAG@rootfs/ and TAG@layers/N/ (doc/ROOTFS.md): what fs/fuse/ calls for the
 * nodes of these views besides lookup, list and attributes (which go
 * through views.c): opening and reading files, symlink targets, the
 * entries' own xattrs (binary values) and the counters of .ecrfs/stats.
 * The FUSE-free core is fs/rootfs/ (doc/ROOTFS.md). */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs/mount.h"
#include "fs/tree/node.h"

struct fs_rootfs_file; /* an open regular file of a view: holds its image */

/* 1 when n is the root or an entry of TAG@rootfs or TAG@layers. */
int fs_rootfs_is(const struct fs_node *n);
/* Opens a regular file; -EISDIR, -EINVAL (not a regular file) or -errno. */
int fs_rootfs_open(struct fs_ctx *c, struct fs_node *n, struct fs_rootfs_file **out);
/* Up to len bytes at off (short only at the end of the file). cancel: a
 * FUSE INTERRUPT of the read. */
ssize_t fs_rootfs_read(struct fs_rootfs_file *f, void *buf, size_t len, uint64_t off,
		       volatile int *cancel);
void fs_rootfs_close(struct fs_rootfs_file *f);
/* A symlink's target (malloc'd) or -EINVAL. */
int fs_rootfs_readlink(struct fs_ctx *c, struct fs_node *n, char **target);
/* The value of xattr name (malloc'd, *len bytes; may be binary), or
 * -ENODATA: the entry's own xattrs, user.ecr.layer, and on a view's root
 * user.ecr.rootfs_state. */
int fs_rootfs_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val, size_t *len);
/* The names of n's xattrs, NUL-separated, into buf (size 0: the length
 * needed); -ERANGE when buf is too small. */
ssize_t fs_rootfs_xattr_list(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size);

struct fs_rootfs_stats {
	uint64_t builds, build_failures, loads; /* layer indexes built, failed, loaded */
	uint64_t from_sources;			/* taken from an image's own index (eStargz...) */
	uint64_t index_bytes;			/* index files on disk (the cache's count) */
	uint64_t indexes_held;			/* distinct layer indexes in memory */
	uint64_t images;			/* image states in memory */
	uint64_t span_hits, span_misses, span_bytes;
};
void fs_rootfs_stats(struct fs_rootfs_stats *out);
/* At unmount, before the blob reader goes: stops the builds, waits for
 * their threads and frees the span cache. */
void fs_rootfs_shutdown(void);

#endif
