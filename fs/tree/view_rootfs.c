/* TAG@rootfs/ and TAG@layers/N/ (doc/ROOTFS.md): the nodes of the two views.
 * A VIEW_ENTRY's vdata is its rootfs node (immutable, owned by the image
 * state the VIEW node holds) and its blob_idx says which tree: for
 * TAG@rootfs the platform p, for TAG@layers (p << 16 | layer), or -(p + 1)
 * for the platform directory of an index that lists its layers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "fs/tree/view_rootfs.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/views.h"
#include "net/ecr.h"

static const struct rootfs_node *root_of(struct rootfs_tree *t)
{
	return t ? rootfs_tree_root(t) : NULL;
}

int rfs_where(struct fs_ctx *c, struct fs_node *n, int wait, struct where *w)
{
	memset(w, 0, sizeof *w);
	int rc = wait ? rfs_image_ready(c, n, &w->im) : (w->im = rfs_image_peek(n)) ? 0 : -ENOENT;
	if (rc)
		return rc;
	struct rfs_image *im = w->im;
	if (n->kind == FS_N_VIEW) {
		w->kind = im->is_index ? W_PLATS : n->view == FS_VIEW_ROOTFS ? W_TREE : W_LAYERS;
		if (w->kind == W_TREE && im->nplats)
			w->rn = root_of(w->t = im->plats[0].merged);
	} else if (n->view == FS_VIEW_LAYERS && n->blob_idx < 0) {
		w->kind = W_LAYERS;
		w->p = (size_t)(-n->blob_idx - 1);
	} else {
		w->idx = n->blob_idx;
		w->p = n->view == FS_VIEW_ROOTFS ? (size_t)n->blob_idx : (size_t)n->blob_idx >> 16;
		w->t = n->view == FS_VIEW_ROOTFS
			   ? (w->p < im->nplats ? im->plats[w->p].merged : NULL)
			   : rfs_layer_tree(im, w->p, (size_t)n->blob_idx & 0xffff);
		w->rn = n->vdata;
	}
	if ((w->kind == W_TREE && (!w->t || !w->rn)) || w->p >= im->nplats + (w->kind == W_PLATS)) {
		rfs_image_put(im);
		w->im = NULL;
		return -ENOENT;
	}
	return 0;
}

static int plat_by_name(const struct rfs_image *im, const char *name)
{
	for (size_t p = 0; p < im->nplats; p++)
		if (!strcmp(im->plats[p].name, name))
			return (int)p;
	return -1;
}

/* "N" for 0 <= N < n, canonical decimal; -1 otherwise. */
static int layer_by_name(const char *name, size_t n)
{
	char *end;
	unsigned long k = strtoul(name, &end, 10);
	if (!*name || *end || (name[0] == '0' && name[1]) || name[0] == '-' || k >= n)
		return -1;
	return (int)k;
}

static int rfs_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name, struct fs_found *f)
{
	struct where w;
	int rc = rfs_where(c, dir, 1, &w);
	if (rc)
		return rc;
	struct rfs_image *im = w.im;
	const struct rootfs_node *rn = NULL;
	int p, k;
	rc = -ENOENT;
	f->t.kind = FS_N_VIEW_ENTRY;
	if (w.kind == W_PLATS && (p = plat_by_name(im, name)) >= 0) {
		f->t.blob_idx = dir->view == FS_VIEW_ROOTFS ? p : -(p + 1);
		rn = dir->view == FS_VIEW_ROOTFS ? root_of(im->plats[p].merged) : NULL;
		rc = dir->view == FS_VIEW_ROOTFS && !rn ? -ENOENT : 0;
	} else if (w.kind == W_LAYERS && (k = layer_by_name(name, im->plats[w.p].n)) >= 0) {
		f->t.blob_idx = (int)(w.p << 16 | (size_t)k);
		rn = root_of(rfs_layer_tree(im, w.p, (size_t)k));
		rc = rn ? 0 : -EIO;
	} else if (w.kind == W_TREE && (rn = rootfs_tree_lookup(w.t, w.rn, name))) {
		f->t.blob_idx = w.idx;
		rc = 0;
	}
	f->t.vdata = (void *)rn;
	rfs_image_put(im);
	return rc;
}

static mode_t type_bits(enum rootfs_type t)
{
	switch (t) {
	case ROOTFS_DIR:
		return S_IFDIR;
	case ROOTFS_SYMLINK:
		return S_IFLNK;
	case ROOTFS_CHR:
		return S_IFCHR;
	case ROOTFS_BLK:
		return S_IFBLK;
	case ROOTFS_FIFO:
		return S_IFIFO;
	default:
		return S_IFREG;
	}
}

static int list_tree(struct fs_dirlist *l, struct rootfs_tree *t, const struct rootfs_node *dir)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < rootfs_node_nchildren(dir); i++) {
		const struct rootfs_node *ch = rootfs_node_child(dir, i);
		struct rootfs_attr a;
		rootfs_node_attr(t, ch, &a);
		rc = fs_dirlist_add(l, rootfs_node_name(ch), type_bits(a.type), a.ino);
	}
	return rc;
}

static int rfs_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	struct where w;
	char name[32];
	int rc = rfs_where(c, dir, 1, &w);
	if (rc)
		return rc;
	if (w.kind == W_TREE) {
		rc = list_tree(l, w.t, w.rn);
	} else if (w.kind == W_PLATS) {
		for (size_t p = 0; rc == 0 && p < w.im->nplats; p++)
			rc = fs_dirlist_add(l, w.im->plats[p].name, S_IFDIR,
					    name_ino(dir, w.im->plats[p].name));
	} else {
		for (size_t k = 0; rc == 0 && k < w.im->plats[w.p].n; k++) {
			snprintf(name, sizeof name, "%zu", k);
			rc = fs_dirlist_add(l, name, S_IFDIR, name_ino(dir, name));
		}
	}
	l->cacheable = 1; /* the image's files never change */
	rfs_image_put(w.im);
	return rc;
}

static void rfs_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	struct where w;
	attr_dir(c, n, st, 1);
	if (n->kind == FS_N_VIEW || rfs_where(c, (struct fs_node *)n, 0, &w) != 0)
		return;
	if (w.kind == W_TREE) {
		struct rootfs_attr a;
		rootfs_node_attr(w.t, w.rn, &a);
		st->st_ino = a.ino;
		st->st_mode = type_bits(a.type) | (a.mode & 07777);
		st->st_uid = a.uid;
		st->st_gid = a.gid;
		st->st_size = (off_t)a.size;
		st->st_nlink = a.nlink;
		st->st_rdev = makedev(a.rdev_major, a.rdev_minor);
		st->st_mtim.tv_sec = a.mtime_sec;
		st->st_mtim.tv_nsec = a.mtime_nsec;
		st->st_atim = st->st_ctim = st->st_mtim;
		st->st_blocks = (blkcnt_t)((a.size + 511) / 512);
	}
	rfs_image_put(w.im);
}

static double rfs_root_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	return c->o.tag_ttl; /* a tag may move */
}

static const struct fs_kind_ops rootfs_root = {rfs_lookup, rfs_list, rfs_attr, rfs_root_ttl,
					       rfs_root_ttl};
static const struct fs_kind_ops rootfs_entry = {rfs_lookup, rfs_list, rfs_attr, ttl_long, ttl_long};

static void rfs_free_data(void *vdata) { rfs_image_put(vdata); }

/* An artifact (a Helm chart, a signature, an SBOM: its config is not an
 * image config) has no files to show: ENOENT, and not in user.ecr.views.
 * DescribeImages says so without a pull; the manifest is checked again
 * when the view is built (rfs_manifest_is_artifact). */
static int rfs_has(const struct ecr_image *im)
{
	return !im || !rfs_config_is_artifact(im->artifact_media_type);
}

const struct fs_view_ops view_rootfs_ops = {&rootfs_root, &rootfs_entry, rfs_free_data, NULL,
					    rfs_has};
const struct fs_view_ops view_layers_ops = {&rootfs_root, &rootfs_entry, rfs_free_data, NULL,
					    rfs_has};
