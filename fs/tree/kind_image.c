/* An image directory (a tag or @sha256-<hex>): an OCI image layout with
 * oci-layout, index.json and blobs/sha256/<hex>. Everything below the image
 * is keyed by its digest, so its entries and attributes are kept long. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs/tree/kinds_i.h"

int image_of(struct fs_ctx *c, struct fs_node *n, struct fs_image **out)
{
	*out = fs_node_img(n);
	if (*out)
		return 0;
	char refname[80];
	if (n->tag)
		snprintf(refname, sizeof refname, "%s", n->tag);
	else
		snprintf(refname, sizeof refname, "sha256-%s", n->digest + 7);
	struct fs_image *img = NULL;
	int rc = fs_cat_image(c, n->registry, n->region, n->repo, n->digest, refname, n->immutable,
			      n->mtime, &img);
	if (rc)
		return rc;
	*out = fs_node_set_img(n, img);
	fs_image_put(img);
	return 0;
}

static int image_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
			struct fs_found *f)
{
	int rc = image_of(c, dir, &f->img);
	if (rc)
		return rc;
	f->t.img = f->img;
	if (!strcmp(name, "oci-layout")) {
		f->t.kind = FS_N_IMG_FILE;
		f->t.blob_idx = FS_IDX_OCI_LAYOUT;
	} else if (!strcmp(name, "index.json")) {
		f->t.kind = FS_N_IMG_FILE;
		f->t.blob_idx = FS_IDX_INDEX_JSON;
	} else if (!strcmp(name, "blobs")) {
		f->t.kind = FS_N_IMG_DIR;
		f->t.blob_idx = FS_IDX_BLOBS;
	} else {
		return -ENOENT;
	}
	return 0;
}

static int image_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	struct fs_image *img = NULL;
	time_t now = time(NULL);
	int rc = image_of(c, dir, &img);
	if (rc)
		return rc;
	rc = list_img_name(l, dir, "oci-layout", S_IFREG, 0, now);
	if (rc == 0)
		rc = list_img_name(l, dir, "index.json", S_IFREG, 0, now);
	if (rc == 0)
		rc = list_img_name(l, dir, "blobs", S_IFDIR, 0, now);
	fs_image_put(img);
	return rc;
}

static double image_entry_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	return n->tag ? c->o.tag_ttl : TREE_LONG_TTL; /* a tag may move */
}

const struct fs_kind_ops kind_image = {image_lookup, image_list, attr_dir, image_entry_ttl,
				       ttl_long};

static int img_dir_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
			  struct fs_found *f)
{
	f->t.img = dir->img;
	if (dir->blob_idx == FS_IDX_BLOBS && !strcmp(name, "sha256")) {
		f->t.kind = FS_N_IMG_DIR;
		f->t.blob_idx = FS_IDX_SHA256;
		return 0;
	}
	if (dir->blob_idx != FS_IDX_SHA256)
		return -ENOENT;
	long i = fs_image_find_blob(dir->img, name);
	if (i < 0)
		return -ENOENT;
	f->t.kind = FS_N_IMG_FILE;
	f->t.blob_idx = (int)i;
	return 0;
}

static int img_dir_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l,
			size_t npend)
{
	time_t now = time(NULL);
	if (dir->blob_idx == FS_IDX_BLOBS)
		return list_img_name(l, dir, "sha256", S_IFDIR, 0, now);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < dir->img->nblobs; i++)
		rc = list_img_name(l, dir, dir->img->blobs[i].hex, S_IFREG,
				   dir->img->blobs[i].st_ino, now);
	return rc;
}

const struct fs_kind_ops kind_img_dir = {img_dir_lookup, img_dir_list, attr_dir, ttl_long,
					 ttl_long};

static void img_file_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	st->st_mode = S_IFREG | (ro ? 0444 : 0644);
	st->st_nlink = 1;
	if (n->blob_idx == FS_IDX_OCI_LAYOUT) {
		st->st_size = (off_t)strlen(FS_OCI_LAYOUT_JSON);
	} else if (n->blob_idx == FS_IDX_INDEX_JSON) {
		st->st_size = (off_t)n->img->index_len;
	} else {
		const struct fs_blob *b = &n->img->blobs[n->blob_idx];
		st->st_size = (off_t)b->size;
		st->st_ino = b->st_ino;
		/* The census now: it grows as images of the repository open. */
		st->st_nlink = fs_cat_blob_nlink(c, n->img, b->digest, NULL);
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

/* A blob's nlink may still grow until its repository's census is complete:
 * the kernel asks again at every stat until then. */
static double img_file_attr_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	if (n->blob_idx < 0 ||
	    fs_cat_census_complete(n->img->registry, n->img->region, n->img->repo))
		return TREE_LONG_TTL;
	return 0.0;
}

const struct fs_kind_ops kind_img_file = {NULL, NULL, img_file_attr, ttl_long, img_file_attr_ttl};
