/* Derived views "X@word" (tree/names.h enum fs_view): resolved by name next
 * to a tag, a digest directory or a repository X, never listed. Each view
 * is one file of tree/ (view_*.c) giving the handlers of its root node
 * (FS_N_VIEW) and of the entries below it (FS_N_VIEW_ENTRY); views.c finds
 * X and dispatches. */
#ifndef ECRFS_FS_TREE_VIEWS_H
#define ECRFS_FS_TREE_VIEWS_H

#include "fs/tree/names.h"
#include "fs/tree/tree.h"

struct ecr_image;
struct fs_found;
struct fs_kind_ops;

struct fs_view_ops {
	/* The handlers of the view's root and of its entries. */
	const struct fs_kind_ops *root, *entry;
	/* Frees a VIEW node's vdata (may be NULL when a view keeps none). */
	void (*free_data)(void *vdata);
	/* Whether X (an image directory's node template, or a repository)
	 * has this view; NULL: always. */
	int (*has)(struct fs_ctx *c, const struct fs_found *x);
	/* Whether an image has this view, from its DescribeImages record
	 * (NULL: not known, then it has); also for user.ecr.views. NULL:
	 * always. */
	int (*image_has)(const struct ecr_image *im);
};

/* The view's handlers; NULL when this build has none for it. */
const struct fs_view_ops *fs_view_ops(enum fs_view v);
/* Resolves "base@word" in dir (a region or namespace) into f. */
int fs_view_lookup(struct fs_ctx *c, struct fs_node *dir, const char *base, enum fs_view v,
		   struct fs_found *f);
void fs_view_data_free(int view, void *vdata);
/* The views X has, comma-separated, for user.ecr.views (malloc'd; NULL when
 * none): on_image for tags and digest directories (im: its DescribeImages
 * record, or NULL), else a repository. */
char *fs_views_list(int on_image, const struct ecr_image *im);

#endif
