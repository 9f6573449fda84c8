/* A built tree: children in name order, nlink, inode numbers, and the
 * read-only accessors the mount uses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fs/rootfs/tree_i.h"

static int kid_cmp(const void *a, const void *b)
{
	const struct rootfs_node *x = *(struct rootfs_node *const *)a;
	const struct rootfs_node *y = *(struct rootfs_node *const *)b;
	return strcmp(x->name, y->name);
}

static uint64_t ino_of(const char *ns, const char *path)
{
	unsigned char md[32];
	uint64_t v = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(c, ns, strlen(ns) + 1) && EVP_DigestUpdate(c, path, strlen(path)) &&
	    EVP_DigestFinal_ex(c, md, NULL))
		memcpy(&v, md, sizeof(v));
	EVP_MD_CTX_free(c);
	return v < 2 ? v + 2 : v; /* 0 is invalid and 1 is FUSE's root */
}

/* Gives back the room an array grew into (the tree is not added to once
 * finished, and rootfs_ix_grow starts at 64 slots: most directories have a
 * few children). Keeps the array when realloc fails. */
static void shrink(void **arr, size_t *cap, size_t n, size_t elem)
{
	void *p = n < *cap ? realloc(*arr, n * elem) : NULL;
	if (p) {
		*arr = p;
		*cap = n;
	}
}

struct fin {
	struct rootfs_tree *t;
	char path[ROOTFS_PATH_MAX + 256];
	size_t cap_inos;
};

/* Sorts n's children, counts links, numbers inodes in name order. */
static int fin_node(struct fin *f, struct rootfs_node *n, size_t plen)
{
	struct tree_inode *in = n->inode;
	int rc = 0;
	if (in->type == ROOTFS_DIR)
		in->nlink = 2;
	else
		in->nlink++;
	if (!in->ino) {
		in->ino = ino_of(f->t->ns, f->path);
		rc = rootfs_ix_grow((void **)&f->t->inos, &f->cap_inos, f->t->n_inos + 1,
				    sizeof(struct ino_slot));
		if (rc < 0)
			return rc;
		f->t->inos[f->t->n_inos++] = (struct ino_slot){in->ino, n};
	}
	if (n->nkids) {
		qsort(n->kids, n->nkids, sizeof(*n->kids), kid_cmp);
		shrink((void **)&n->kids, &n->capkids, n->nkids, sizeof(*n->kids));
	}
	for (size_t i = 0; i < n->nkids && rc == 0; i++) {
		struct rootfs_node *k = n->kids[i];
		size_t l = strlen(k->name);
		k->kid_idx = i;
		if (k->inode->type == ROOTFS_DIR)
			in->nlink++;
		if (plen + 1 + l >= sizeof(f->path))
			return -ENAMETOOLONG;
		size_t p = plen;
		if (plen)
			f->path[p++] = '/';
		memcpy(f->path + p, k->name, l + 1);
		rc = fin_node(f, k, p + l);
		f->path[plen] = '\0';
	}
	return rc;
}

static int slot_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct ino_slot *)a)->ino, y = ((const struct ino_slot *)b)->ino;
	return x < y ? -1 : x > y;
}

int rootfs_tree_finalize(struct rootfs_tree *t)
{
	struct fin *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->t = t;
	int rc = fin_node(f, t->root, 0);
	size_t f_cap_inos = f->cap_inos;
	free(f);
	if (rc < 0)
		return rc;
	if (t->n_inos) {
		qsort(t->inos, t->n_inos, sizeof(*t->inos), slot_cmp);
		size_t cap = f_cap_inos;
		shrink((void **)&t->inos, &cap, t->n_inos, sizeof(*t->inos));
	}
	free(t->tab); /* lookups use the sorted children from now on */
	t->tab = NULL;
	t->nbuckets = 0;
	return 0;
}

size_t rootfs_tree_nodes(const struct rootfs_tree *t) { return t->n_nodes; }

const struct rootfs_node *rootfs_tree_root(const struct rootfs_tree *t) { return t->root; }

const struct rootfs_node *rootfs_tree_lookup(const struct rootfs_tree *t,
					     const struct rootfs_node *dir, const char *name)
{
	size_t lo = 0, hi = dir->nkids;
	(void)t;
	if (dir->inode->type != ROOTFS_DIR)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(dir->kids[mid]->name, name);
		if (c == 0)
			return dir->kids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct rootfs_node *rootfs_tree_by_ino(const struct rootfs_tree *t, uint64_t ino)
{
	struct ino_slot key = {ino, NULL};
	const struct ino_slot *s = bsearch(&key, t->inos, t->n_inos, sizeof(key), slot_cmp);
	return s ? s->node : NULL;
}

size_t rootfs_node_nchildren(const struct rootfs_node *dir) { return dir->nkids; }

const struct rootfs_node *rootfs_node_child(const struct rootfs_node *dir, size_t i)
{
	return i < dir->nkids ? dir->kids[i] : NULL;
}

const struct rootfs_node *rootfs_node_parent(const struct rootfs_node *n) { return n->parent; }

const char *rootfs_node_name(const struct rootfs_node *n) { return n->name; }

uintptr_t rootfs_node_group(const struct rootfs_node *n) { return (uintptr_t)n->inode; }

void rootfs_node_attr(const struct rootfs_tree *t, const struct rootfs_node *n,
		      struct rootfs_attr *out)
{
	const struct tree_inode *in = n->inode;
	const struct rootfs_ent *e = tree_ent(t, in);
	memset(out, 0, sizeof(*out));
	out->type = in->type;
	out->nlink = in->nlink;
	out->ino = in->ino;
	out->layer = in->layer;
	if (!e) {
		out->mode = 0755;
		return;
	}
	const struct rootfs_index *ix = t->layers[in->layer - t->layer_base];
	out->mode = e->mode & 07777;
	out->uid = e->uid;
	out->gid = e->gid;
	out->mtime_sec = e->mtime;
	out->mtime_nsec = e->nsec;
	out->rdev_major = e->major;
	out->rdev_minor = e->minor;
	if (in->type == ROOTFS_REG)
		out->size = e->size;
	if (in->type == ROOTFS_SYMLINK) {
		out->symlink = rootfs_ix_str(ix, e->link);
		out->size = e->link_len;
	}
}

int rootfs_node_data(const struct rootfs_tree *t, const struct rootfs_node *n,
		     struct rootfs_data *out)
{
	const struct rootfs_ent *e = tree_ent(t, n->inode);
	if (!e || n->inode->type != ROOTFS_REG)
		return -EINVAL;
	out->layer = n->inode->layer;
	out->offset = e->data_off;
	out->size = e->size;
	return 0;
}

static int xattr_hidden(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       strncmp(name, "user.overlay.", 13) == 0;
}

int rootfs_node_xattr(const struct rootfs_tree *t, const struct rootfs_node *n, size_t i,
		      const char **name, const void **value, size_t *len)
{
	const struct rootfs_ent *e = tree_ent(t, n->inode);
	if (!e)
		return -ENOENT;
	const struct rootfs_index *ix = t->layers[n->inode->layer - t->layer_base];
	for (uint32_t k = 0; k < e->xattr_count; k++) {
		const struct rootfs_xattr *x = &ix->xa[e->xattr_first + k];
		const char *nm = rootfs_ix_str(ix, x->name);
		if (xattr_hidden(nm))
			continue;
		if (i-- == 0) {
			*name = nm;
			*value = ix->pool + x->value;
			*len = x->value_len;
			return 0;
		}
	}
	return -ENOENT;
}
