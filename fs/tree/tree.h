/* The tree a user sees, FUSE-free: what a name in a directory is (lookup),
 * what a directory lists, the attributes and extended attributes of a
 * node. One handler per node kind (kinds_i.h); fs/fuse/ calls these and
 * answers the kernel. Pending nodes (pushes in progress) are listed and
 * found here; their attributes come from the push glue (fs/fuse/). */
#ifndef ECRFS_FS_TREE_H
#define ECRFS_FS_TREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "fs/mount.h"
#include "fs/tree/node.h"

/* A directory listing, taken at OPENDIR and served by READDIR. */
struct fs_dirent {
	char *name;
	mode_t type; /* S_IFDIR or S_IFREG */
	uint64_t ino;
};
struct fs_dirlist {
	struct fs_dirent *v;
	size_t n, cap;
	int filtered; /* names were hidden: not for the kernel's cache */
	int cacheable; /* the kernel may keep the listing (immutable content) */
};
int fs_dirlist_add(struct fs_dirlist *l, const char *name, mode_t type, uint64_t ino);
/* 1 when one of the first `limit` entries is called name. */
int fs_dirlist_has(const struct fs_dirlist *l, const char *name, size_t limit);
void fs_dirlist_clear(struct fs_dirlist *l);

/* dir/name as a node (referenced) or -errno (-ENOENT: no such name).
 * Pending children come first. Network calls honour the calling thread's
 * cancel flag (net_http_thread_cancel). */
int fs_tree_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
		   struct fs_node **out);
/* The listing of dir into l (empty on entry). */
int fs_tree_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l);
/* 1 when READDIRPLUS may look up every listed name of dir: those lookups
 * are answered from what the listing loaded. 0 for REPO@settings/, whose
 * lookups read each policy from ECR. */
int fs_tree_list_plus(const struct fs_node *dir);
/* Attributes of a committed or remote node; -ENOENT for pending nodes
 * (their attributes belong to the push glue). */
int fs_tree_getattr(struct fs_ctx *c, const struct fs_node *n, struct stat *st);
/* Seconds the kernel may keep n's entry and its attributes. */
double fs_tree_entry_ttl(const struct fs_ctx *c, const struct fs_node *n);
double fs_tree_attr_ttl(const struct fs_ctx *c, const struct fs_node *n);
/* Seconds the kernel may keep "no such name" in dir (0: not cached). */
double fs_tree_neg_ttl(const struct fs_ctx *c, const struct fs_node *dir, int hidden);
/* 1 when dir/name is hidden in this mount (unlinked in a committed tag). */
int fs_tree_hidden(const struct fs_node *dir, const char *name, time_t now);

/* Extended attributes (user.ecr.*): the value of name on n (malloc'd) or
 * -ENODATA; the names n has, as a NUL-separated list into buf. */
int fs_tree_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val);
size_t fs_tree_xattr_list(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size);
/* Sets a writable user.ecr.* of n: user.ecr.storage_class STANDARD or
 * ARCHIVE on an image directory (UpdateImageStorageClass; the repository's
 * listing is forgotten). -ENOTSUP for other names, -EINVAL for values. */
int fs_tree_setxattr(struct fs_ctx *c, struct fs_node *n, const char *name, const char *value,
		     size_t size);

#endif
