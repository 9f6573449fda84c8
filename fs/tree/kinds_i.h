/* One handler per node kind: lookup of a child, listing, attributes.
 * tree.c dispatches through kind_ops(); each kind_*.c fills its entries. */
#ifndef ECRFS_FS_TREE_KINDS_I_H
#define ECRFS_FS_TREE_KINDS_I_H

#include "fs/tree/catalog.h"
#include "fs/tree/tree.h"

/* What a lookup found, and what it borrowed to say so (freed by tree.c). */
struct fs_found {
	struct fs_node_tmpl t;
	char digest[80];         /* t.digest may point here */
	char *sub;               /* t.repo may point here */
	struct fs_list *repos, *imgs;
	struct fs_image *img;    /* t.img may point here */
};

struct fs_kind_ops {
	/* Fills f for dir/name; 0, -ENOENT or -errno. NULL: no children. */
	int (*lookup)(struct fs_ctx *c, struct fs_node *dir, const char *name, struct fs_found *f);
	/* Adds dir's names to l; the first npend entries (pending names)
	 * shadow remote names. NULL: empty. */
	int (*list)(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend);
	/* Type, mode, size, nlink of n (the rest is common); ro: read only. */
	void (*attr)(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro);
	double (*entry_ttl)(const struct fs_ctx *c, const struct fs_node *n);
	double (*attr_ttl)(const struct fs_ctx *c, const struct fs_node *n);
};

const struct fs_kind_ops *kind_ops(enum fs_kind k);

extern const struct fs_kind_ops kind_root, kind_ctl_dir, kind_ctl_file, kind_registry;
extern const struct fs_kind_ops kind_region, kind_namespace;
extern const struct fs_kind_ops kind_image, kind_img_dir, kind_img_file;
extern const struct fs_kind_ops kind_view; /* FS_N_VIEW, FS_N_VIEW_ENTRY (views.c) */

/* Shared pieces. */
#define TREE_LONG_TTL 86400.0
double ttl_hour(const struct fs_ctx *c, const struct fs_node *n);
double ttl_tag(const struct fs_ctx *c, const struct fs_node *n);
double ttl_long(const struct fs_ctx *c, const struct fs_node *n);
void attr_dir(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro);
/* Inode number of a listed name that has no node yet. */
uint64_t name_ino(const struct fs_node *dir, const char *name);
/* Adds an image directory's name unless the push side hid it. */
int list_img_name(struct fs_dirlist *l, const struct fs_node *dir, const char *name,
		  mode_t type, uint64_t ino, time_t now);
/* Loads the image of an IMAGE node (once); referenced. */
int image_of(struct fs_ctx *c, struct fs_node *n, struct fs_image **out);
/* Does any repository live at or below prefix? *repo: the one named
 * exactly prefix, or NULL. */
int ns_exists(const struct fs_list *repos, const char *prefix, const struct ecr_repo **repo);
/* Whether images of r that no tag names are protected (the mode of
 * @sha256- directories): IMMUTABLE and IMMUTABLE_WITH_EXCLUSION. */
int repo_protects_untagged(const struct ecr_repo *r);

#endif
