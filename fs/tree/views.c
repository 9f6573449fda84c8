/* Derived views: finding X of "X@word" and dispatching to the view's
 * handlers (views.h). */
#include "fs/tree/views.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog.h"
#include "fs/tree/kinds_i.h"
#include "fs/tree/view_ecr.h"
#include "fs/tree/view_rootfs_i.h"

/* The views this build has, by enum fs_view. */
static const struct fs_view_ops *const views[] = {
	[FS_VIEW_ROOTFS] = &view_rootfs_ops,
	[FS_VIEW_LAYERS] = &view_layers_ops,
	[FS_VIEW_REFERRERS] = &fs_view_referrers,
	[FS_VIEW_SCAN] = &fs_view_scan,
	[FS_VIEW_SETTINGS] = &fs_view_settings,
};

const struct fs_view_ops *fs_view_ops(enum fs_view v)
{
	return v > FS_VIEW_NONE && v <= FS_VIEW_SETTINGS ? views[v] : NULL;
}

void fs_view_data_free(int view, void *vdata)
{
	const struct fs_view_ops *o = fs_view_ops((enum fs_view)view);
	if (o && o->free_data)
		o->free_data(vdata);
}

int fs_view_lookup(struct fs_ctx *c, struct fs_node *dir, const char *base, enum fs_view v,
		   struct fs_found *f)
{
	const struct fs_view_ops *o = fs_view_ops(v);
	if (!o)
		return -ENOENT;
	/* X itself, as a lookup of base in dir would find it. */
	const struct fs_kind_ops *k = kind_ops(dir->kind);
	int rc = k && k->lookup ? k->lookup(c, dir, base, f) : -ENOENT;
	if (rc)
		return rc;
	int on_image = f->t.kind == FS_N_IMAGE;
	if (on_image == (v == FS_VIEW_SETTINGS))
		return -ENOENT; /* settings are a repository's, the rest an image's */
	if (!on_image && !f->t.repo)
		return -ENOENT;
	if (o->has && !o->has(c, f))
		return -ENOENT;
	if (on_image && o->image_has &&
	    !o->image_has(f->imgs && f->t.digest ? fs_list_find_digest(f->imgs, f->t.digest) : NULL))
		return -ENOENT;
	f->t.kind = FS_N_VIEW;
	f->t.view = v;
	return 0;
}

char *fs_views_list(int on_image, const struct ecr_image *im)
{
	char buf[128] = "";
	for (int v = FS_VIEW_ROOTFS; v <= FS_VIEW_SETTINGS; v++) {
		if (!views[v] || on_image == (v == FS_VIEW_SETTINGS))
			continue;
		if (on_image && views[v]->image_has && !views[v]->image_has(im))
			continue;
		if (buf[0])
			strcat(buf, ",");
		strcat(buf, fs_view_word((enum fs_view)v));
	}
	return buf[0] ? strdup(buf) : NULL;
}

/* FS_N_VIEW and FS_N_VIEW_ENTRY dispatch to the view's handlers. */
static const struct fs_kind_ops *of(const struct fs_node *n)
{
	const struct fs_view_ops *o = fs_view_ops((enum fs_view)n->view);
	return !o ? NULL : n->kind == FS_N_VIEW ? o->root : o->entry;
}

static int view_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
		       struct fs_found *f)
{
	const struct fs_kind_ops *k = of(dir);
	return k && k->lookup ? k->lookup(c, dir, name, f) : -ENOENT;
}

static int view_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	const struct fs_kind_ops *k = of(dir);
	return k && k->list ? k->list(c, dir, l, npend) : 0;
}

static void view_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	const struct fs_kind_ops *k = of(n);
	if (k && k->attr)
		k->attr(c, n, st, ro);
	else
		attr_dir(c, n, st, 1);
}

static double view_entry_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	const struct fs_kind_ops *k = of(n);
	return k && k->entry_ttl ? k->entry_ttl(c, n) : 0.0;
}

static double view_attr_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	const struct fs_kind_ops *k = of(n);
	return k && k->attr_ttl ? k->attr_ttl(c, n) : 0.0;
}

const struct fs_kind_ops kind_view = {view_lookup, view_list, view_attr, view_entry_ttl,
				      view_attr_ttl};
