/* TAG@rootfs and TAG@layers: files, symlinks and xattrs for fs/fuse/
 * (view_rootfs.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/view_rootfs.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/views.h"

/* ---- what fs/fuse/ asks besides lookups (view_rootfs.h) ---- */

int fs_rootfs_is(const struct fs_node *n)
{
	return (n->kind == FS_N_VIEW || n->kind == FS_N_VIEW_ENTRY) &&
	       (n->view == FS_VIEW_ROOTFS || n->view == FS_VIEW_LAYERS);
}

struct fs_rootfs_file {
	struct rfs_image *im; /* referenced: keeps the index and the layer */
	struct rfs_layer *L;
	struct rootfs_data d;
};

int fs_rootfs_open(struct fs_ctx *c, struct fs_node *n, struct fs_rootfs_file **out)
{
	struct where w;
	struct rootfs_attr a;
	struct fs_rootfs_file *f = NULL;
	int rc = rfs_where(c, n, 1, &w);
	if (rc)
		return rc;
	if (w.kind != W_TREE) {
		rc = -EISDIR;
		goto out;
	}
	rootfs_node_attr(w.t, w.rn, &a);
	if (a.type == ROOTFS_DIR) {
		rc = -EISDIR;
		goto out;
	}
	if (!(f = calloc(1, sizeof *f))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = rootfs_node_data(w.t, w.rn, &f->d)) != 0 || f->d.layer >= w.im->plats[w.p].n) {
		rc = rc ? rc : -EIO;
		goto out;
	}
	f->L = &w.im->layers[w.im->plats[w.p].lay[f->d.layer]];
	f->im = w.im;
	w.im = NULL;
	*out = f;
	f = NULL;
out:
	free(f);
	rfs_image_put(w.im);
	return rc;
}

ssize_t fs_rootfs_read(struct fs_rootfs_file *f, void *buf, size_t len, uint64_t off,
		       volatile int *cancel)
{
	if (off >= f->d.size)
		return 0;
	if (len > f->d.size - off)
		len = (size_t)(f->d.size - off);
	size_t got = 0;
	while (got < len) {
		ssize_t n = rfs_read_layer(f->im, f->L, f->d.offset + off + got, (char *)buf + got,
					   len - got, cancel);
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO; /* the stream ends inside the file: a bad index */
		got += (size_t)n;
	}
	return (ssize_t)got;
}

void fs_rootfs_close(struct fs_rootfs_file *f)
{
	if (f) {
		rfs_image_put(f->im);
		free(f);
	}
}

int fs_rootfs_readlink(struct fs_ctx *c, struct fs_node *n, char **target)
{
	struct where w;
	struct rootfs_attr a;
	int rc = rfs_where(c, n, 1, &w);
	if (rc)
		return rc;
	rc = -EINVAL;
	if (w.kind == W_TREE) {
		rootfs_node_attr(w.t, w.rn, &a);
		if (a.type == ROOTFS_SYMLINK && a.symlink)
			rc = (*target = strdup(a.symlink)) ? 0 : -ENOMEM;
	}
	rfs_image_put(w.im);
	return rc;
}

static int dup_val(const void *v, size_t len, char **val, size_t *outlen)
{
	if (!(*val = malloc(len ? len : 1)))
		return -ENOMEM;
	memcpy(*val, v, len);
	*outlen = len;
	return 0;
}

static int entry_xattr(struct where *w, const char *name, char **val, size_t *len)
{
	struct rootfs_attr a;
	const char *xn;
	const void *xv;
	size_t xl;
	rootfs_node_attr(w->t, w->rn, &a);
	if (!strcmp(name, "user.ecr.layer")) {
		const struct rfs_plat *pl = &w->im->plats[w->p];
		if (a.layer >= pl->n)
			return -ENODATA;
		int r = asprintf(val, "%u %s", a.layer, w->im->layers[pl->lay[a.layer]].digest);
		*len = r < 0 ? 0 : (size_t)r;
		return r < 0 ? -ENOMEM : 0;
	}
	for (size_t i = 0; rootfs_node_xattr(w->t, w->rn, i, &xn, &xv, &xl) == 0; i++)
		if (!strcmp(xn, name))
			return dup_val(xv, xl, val, len);
	return -ENODATA;
}

int fs_rootfs_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val, size_t *len)
{
	struct where w;
	*val = NULL;
	if (n->kind == FS_N_VIEW) {
		if (strcmp(name, "user.ecr.rootfs_state"))
			return -ENODATA;
		*val = rfs_image_state(n);
		*len = *val ? strlen(*val) : 0;
		return *val ? 0 : -ENOMEM;
	}
	int rc = rfs_where(c, n, 0, &w);
	if (rc)
		return -ENODATA;
	rc = w.kind == W_TREE ? entry_xattr(&w, name, val, len) : -ENODATA;
	rfs_image_put(w.im);
	return rc;
}

static int add_name(char *buf, size_t size, size_t *pos, const char *name)
{
	size_t l = strlen(name) + 1;
	if (size && *pos + l > size)
		return -ERANGE;
	if (size)
		memcpy(buf + *pos, name, l);
	*pos += l;
	return 0;
}

ssize_t fs_rootfs_xattr_list(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size)
{
	struct where w;
	size_t pos = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	if (n->kind == FS_N_VIEW)
		return add_name(buf, size, &pos, "user.ecr.rootfs_state") ?: (ssize_t)pos;
	if (rfs_where(c, n, 0, &w) != 0)
		return 0;
	int rc = 0;
	if (w.kind == W_TREE) {
		for (size_t i = 0; rc == 0 && rootfs_node_xattr(w.t, w.rn, i, &xn, &xv, &xl) == 0;
		     i++)
			rc = add_name(buf, size, &pos, xn);
		if (rc == 0)
			rc = add_name(buf, size, &pos, "user.ecr.layer");
	}
	rfs_image_put(w.im);
	return rc ? rc : (ssize_t)pos;
}
