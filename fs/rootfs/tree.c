/* Building trees from layer entry tables: the merged tree (OCI image-spec
 * layer.md: whiteouts, opaque directories, hardlinks into lower layers)
 * and one layer as stored. Each layer is applied in two passes: its
 * whiteouts against the tree of the layers below, then its entries in tar
 * order (a later duplicate replaces an earlier one). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/rootfs/tree_i.h"
#include "net/log.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

static size_t hash_key(const struct rootfs_node *parent, const char *name)
{
	uint64_t h = (uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ull;
	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
	return (size_t)h;
}

static int tab_grow(struct rootfs_tree *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : 1024;
	struct rootfs_node **tab = calloc(nb, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct rootfs_node *n = t->tab[i], *next; n; n = next) {
			next = n->hnext;
			size_t b = hash_key(n->parent, n->name) % nb;
			n->hnext = tab[b];
			tab[b] = n;
		}
	free(t->tab);
	t->tab = tab;
	t->nbuckets = nb;
	return 0;
}

static struct rootfs_node *child(const struct rootfs_tree *t, const struct rootfs_node *dir,
				 const char *name, size_t len)
{
	char buf[ROOTFS_PATH_MAX];
	memcpy(buf, name, len);
	buf[len] = '\0';
	for (struct rootfs_node *n = t->tab[hash_key(dir, buf) % t->nbuckets]; n; n = n->hnext)
		if (n->parent == dir && strcmp(n->name, buf) == 0)
			return n;
	return NULL;
}

static struct tree_inode *inode_new(enum rootfs_type type, unsigned layer, uint32_t ent)
{
	struct tree_inode *in = calloc(1, sizeof(*in));
	if (in) {
		in->type = type;
		in->layer = layer;
		in->ent = ent;
	}
	return in;
}

static void inode_put(struct tree_inode *in)
{
	if (in && --in->refs == 0)
		free(in);
}

/* Adds a node named name[0..len) under dir, taking a reference on in. */
static int node_add(struct rootfs_tree *t, struct rootfs_node *dir, const char *name, size_t len,
		    struct tree_inode *in, struct rootfs_node **out)
{
	struct rootfs_node *n = NULL;
	int rc = -ENAMETOOLONG;
	/* Symlinked parents could otherwise build paths (and depths) without
	 * bound; every path stays a valid tar name. */
	if (dir->plen + 1 + len >= ROOTFS_PATH_MAX)
		goto out;
	rc = -ENOMEM;
	if (!(n = calloc(1, sizeof(*n))) || !(n->name = strndup(name, len)))
		goto out;
	n->plen = dir->plen + (dir->parent ? 1 : 0) + (uint32_t)len;
	if (t->n_nodes >= t->nbuckets && (rc = tab_grow(t)) < 0)
		goto out;
	rc = rootfs_ix_grow((void **)&dir->kids, &dir->capkids, dir->nkids + 1, sizeof(n));
	if (rc < 0)
		goto out;
	n->parent = dir;
	n->inode = in;
	in->refs++;
	n->kid_idx = dir->nkids;
	dir->kids[dir->nkids++] = n;
	size_t b = hash_key(dir, n->name) % t->nbuckets;
	n->hnext = t->tab[b];
	t->tab[b] = n;
	t->n_nodes++;
	*out = n;
	return 0;
out:
	if (n)
		free(n->name);
	free(n);
	return rc;
}

/* Removes n and its subtree. */
static void node_remove(struct rootfs_tree *t, struct rootfs_node *n)
{
	while (n->nkids)
		node_remove(t, n->kids[n->nkids - 1]);
	struct rootfs_node **pp = &t->tab[hash_key(n->parent, n->name) % t->nbuckets];
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	struct rootfs_node *dir = n->parent;
	struct rootfs_node *last = dir->kids[--dir->nkids];
	dir->kids[n->kid_idx] = last;
	last->kid_idx = n->kid_idx;
	inode_put(n->inode);
	free(n->kids);
	free(n->name);
	free(n);
	t->n_nodes--;
}

/* Frees a finished tree's nodes (no hash table upkeep). */
static void node_free(struct rootfs_node *n)
{
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	inode_put(n->inode);
	free(n->kids);
	free(n->name);
	free(n);
}

void rootfs_tree_free(struct rootfs_tree *t)
{
	if (!t)
		return;
	if (t->root)
		node_free(t->root);
	free(t->tab);
	free(t->inos);
	free(t->ns);
	free(t);
}

#define MAX_HOPS 40

static const char *symlink_target(const struct rootfs_tree *t, const struct rootfs_node *n)
{
	const struct rootfs_ent *e = tree_ent(t, n->inode);
	return e ? rootfs_ix_str(t->layers[n->inode->layer - t->layer_base], e->link) : "";
}

/* The directory at path[0..len) from cur, following symlinks at every
 * component within the tree (as umoci's securejoin: ".." stops at the
 * root, at most MAX_HOPS links) and, with `create`, making missing
 * directories 0755. NULL when a component is not a directory or a link
 * leads nowhere; *rc is set on allocation failure only. */
static struct rootfs_node *resolve(struct rootfs_tree *t, struct rootfs_node *cur, const char *p,
				   size_t len, unsigned layer, int create, int *hops, int *rc)
{
	for (size_t i = 0, e; cur && i < len; i = e + 1) {
		for (e = i; e < len && p[e] != '/';)
			e++;
		size_t n = e - i;
		if (n == 0 || (n == 1 && p[i] == '.'))
			continue;
		if (n == 2 && p[i] == '.' && p[i + 1] == '.') {
			cur = cur->parent ? cur->parent : cur;
			continue;
		}
		struct rootfs_node *k = child(t, cur, p + i, n);
		if (!k && create) {
			struct tree_inode *in = inode_new(ROOTFS_DIR, layer, TREE_NO_ENT);
			if (!in || (*rc = node_add(t, cur, p + i, n, in, &k)) < 0) {
				*rc = !in ? -ENOMEM : *rc == -ENAMETOOLONG ? 0 : *rc;
				free(in);
				return NULL;
			}
		}
		if (k && k->inode->type == ROOTFS_SYMLINK) {
			const char *tg = symlink_target(t, k);
			if (++*hops > MAX_HOPS)
				return NULL;
			k = resolve(t, *tg == '/' ? t->root : cur, tg, strlen(tg), layer, create,
				    hops, rc);
		}
		if (!k || k->inode->type != ROOTFS_DIR)
			return NULL;
		cur = k;
	}
	return cur;
}

/* The parent directory of a normalised path and its last component. */
static struct rootfs_node *parent_of(struct rootfs_tree *t, const char *path, unsigned layer,
				     int create, const char **base, int *rc)
{
	const char *slash = strrchr(path, '/');
	int hops = 0;
	*base = slash ? slash + 1 : path;
	*rc = 0;
	return resolve(t, t->root, path, slash ? (size_t)(slash - path) : 0, layer, create, &hops,
		       rc);
}

/* Pass one: this layer's whiteouts against the layers below. */
static void apply_whiteouts(struct rootfs_tree *t, const struct rootfs_index *ix)
{
	for (size_t i = 0; i < ix->n_ents; i++) {
		const char *path = rootfs_ix_str(ix, ix->ents[i].path), *base;
		const char *slash = strrchr(path, '/');
		if (strncmp(slash ? slash + 1 : path, WH_PREFIX, 4) != 0)
			continue;
		int rc;
		struct rootfs_node *dir = parent_of(t, path, 0, 0, &base, &rc);
		if (!dir)
			continue;
		if (strcmp(base, WH_OPAQUE) == 0) {
			while (dir->nkids)
				node_remove(t, dir->kids[dir->nkids - 1]);
			continue;
		}
		const char *name = base + 4;
		struct rootfs_node *n = *name ? child(t, dir, name, strlen(name)) : NULL;
		if (n)
			node_remove(t, n);
	}
}

/* The inode an entry shows: a new one, or a hardlink's target's. NULL with
 * *rc == 0 when the entry is skipped (logged). */
static struct tree_inode *entry_inode(struct rootfs_tree *t, const struct rootfs_index *ix,
				      unsigned layer, uint32_t ei, int *rc)
{
	const struct rootfs_ent *e = &ix->ents[ei];
	*rc = 0;
	if (e->type != ROOTFS_HARDLINK) {
		struct tree_inode *in = inode_new((enum rootfs_type)e->type, layer, ei);
		*rc = in ? 0 : -ENOMEM;
		return in;
	}
	const char *path = rootfs_ix_str(ix, e->path), *link = rootfs_ix_str(ix, e->link), *base;
	struct rootfs_node *dir = *link ? parent_of(t, link, layer, 0, &base, rc) : NULL;
	struct rootfs_node *tgt = dir ? child(t, dir, base, strlen(base)) : NULL;
	if (!tgt || tgt->inode->type == ROOTFS_DIR || strcmp(path, link) == 0) {
		log_warn("rootfs: layer %u: hardlink \"%.200s\" -> \"%.200s\" skipped: %s", layer,
			 path, link,
			 !tgt				  ? "no such target"
			 : tgt->inode->type == ROOTFS_DIR ? "a directory"
							  : "a loop");
		return NULL;
	}
	return tgt->inode;
}

/* Pass two: one entry of a layer. */
static int apply_entry(struct rootfs_tree *t, const struct rootfs_index *ix, unsigned layer,
		       uint32_t ei, int markers)
{
	const struct rootfs_ent *e = &ix->ents[ei];
	const char *path = rootfs_ix_str(ix, e->path), *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	struct rootfs_node *dir = NULL, *old, *n;
	int rc = 0;
	if (!markers && strncmp(base, WH_PREFIX, 4) == 0)
		return 0;
	if (*path && !(dir = parent_of(t, path, layer, 1, &base, &rc)) && rc < 0)
		return rc;
	if (*path && !dir) {
		log_warn("rootfs: layer %u: \"%.200s\" skipped: its parent is a file, a link loop "
			 "or too deep",
			 layer, path);
		return 0;
	}
	if (!*path && e->type != ROOTFS_DIR)
		return 0;
	struct tree_inode *in = entry_inode(t, ix, layer, ei, &rc);
	if (!in)
		return rc;
	in->refs++; /* held while old (which may contain the target) goes */
	old = *path ? child(t, dir, base, strlen(base)) : t->root;
	if (old && old->inode->type == ROOTFS_DIR && in->type == ROOTFS_DIR) {
		inode_put(old->inode);
		old->inode = in; /* keeps our reference */
		return 0;
	}
	if (old)
		node_remove(t, old);
	rc = node_add(t, dir, base, strlen(base), in, &n);
	inode_put(in);
	if (rc == -ENAMETOOLONG) {
		log_warn(
		    "rootfs: layer %u: \"%.200s\" skipped: its path through symlinks is too long",
		    layer, path);
		rc = 0;
	}
	return rc;
}

static int tree_new(const char *ns, const struct rootfs_index *const *layers, size_t n,
		    unsigned base, struct rootfs_tree **out)
{
	struct rootfs_tree *t = calloc(1, sizeof(*t));
	int rc = -ENOMEM;
	if (!t || !(t->ns = strdup(ns)) || (rc = tab_grow(t)) < 0)
		goto out;
	rc = -ENOMEM;
	t->layers = layers;
	t->n_layers = n;
	t->layer_base = base;
	if (!(t->root = calloc(1, sizeof(*t->root))) || !(t->root->name = strdup("")) ||
	    !(t->root->inode = inode_new(ROOTFS_DIR, base, TREE_NO_ENT)))
		goto out;
	t->root->inode->refs = 1;
	t->n_nodes = 1;
	*out = t;
	return 0;
out:
	rootfs_tree_free(t);
	return rc;
}

int rootfs_tree_merge(const char *ns, struct rootfs_index *const *layers, size_t n,
		      struct rootfs_tree **out)
{
	struct rootfs_tree *t = NULL;
	int rc = tree_new(ns, (const struct rootfs_index *const *)layers, n, 0, &t);
	for (size_t l = 0; rc == 0 && l < n; l++) {
		apply_whiteouts(t, layers[l]);
		for (size_t i = 0; rc == 0 && i < layers[l]->n_ents; i++)
			rc = apply_entry(t, layers[l], (unsigned)l, (uint32_t)i, 0);
	}
	if (rc == 0)
		rc = rootfs_tree_finalize(t);
	if (rc < 0) {
		rootfs_tree_free(t);
		t = NULL;
	}
	*out = t;
	return rc;
}

int rootfs_tree_layer(const char *ns, const struct rootfs_index *ix, unsigned layer_no,
		      struct rootfs_tree **out)
{
	struct rootfs_tree *t = NULL;
	int rc = tree_new(ns, NULL, 1, layer_no, &t);
	if (rc == 0) {
		t->single = ix;
		t->layers = &t->single;
	}
	for (size_t i = 0; rc == 0 && i < ix->n_ents; i++)
		rc = apply_entry(t, ix, layer_no, (uint32_t)i, 1);
	if (rc == 0)
		rc = rootfs_tree_finalize(t);
	if (rc < 0) {
		rootfs_tree_free(t);
		t = NULL;
	}
	*out = t;
	return rc;
}
