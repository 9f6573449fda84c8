/* Dispatch of lookups, listings and attributes to the handler of each node
 * kind (kinds_i.h), and what all kinds share. */
#include "fs/tree/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/hidden.h"
#include "fs/tree/kinds_i.h"
#include "fs/tree/view_ecr.h"

const struct fs_kind_ops *kind_ops(enum fs_kind k)
{
	switch (k) {
	case FS_N_ROOT: return &kind_root;
	case FS_N_CTL_DIR: return &kind_ctl_dir;
	case FS_N_CTL_FILE: return &kind_ctl_file;
	case FS_N_REGISTRY: return &kind_registry;
	case FS_N_REGION: return &kind_region;
	case FS_N_NAMESPACE: return &kind_namespace;
	case FS_N_IMAGE: return &kind_image;
	case FS_N_IMG_DIR: return &kind_img_dir;
	case FS_N_IMG_FILE: return &kind_img_file;
	case FS_N_VIEW:
	case FS_N_VIEW_ENTRY: return &kind_view;
	default: return NULL; /* pending kinds: the push glue's */
	}
}

/* ---- listings ---- */

int fs_dirlist_add(struct fs_dirlist *l, const char *name, mode_t type, uint64_t ino)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		struct fs_dirent *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n].name = strdup(name);
	if (!l->v[l->n].name)
		return -ENOMEM;
	l->v[l->n].type = type;
	l->v[l->n].ino = ino;
	l->n++;
	return 0;
}

int fs_dirlist_has(const struct fs_dirlist *l, const char *name, size_t limit)
{
	for (size_t i = 0; i < l->n && i < limit; i++)
		if (!strcmp(l->v[i].name, name))
			return 1;
	return 0;
}

void fs_dirlist_clear(struct fs_dirlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof *l);
}

uint64_t name_ino(const struct fs_node *dir, const char *name)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lu", (unsigned long)dir->ino);
	const char *parts[2] = {buf, name};
	return fs_hash64(parts, 2) | (1ULL << 62);
}

int fs_tree_hidden(const struct fs_node *dir, const char *name, time_t now)
{
	return (dir->kind == FS_N_IMAGE || dir->kind == FS_N_IMG_DIR) &&
	       push_hide_is((struct fs_node *)dir, name, now);
}

int list_img_name(struct fs_dirlist *l, const struct fs_node *dir, const char *name,
		  mode_t type, uint64_t ino, time_t now)
{
	if (fs_tree_hidden(dir, name, now)) {
		l->filtered = 1;
		return 0;
	}
	return fs_dirlist_add(l, name, type, ino ? ino : name_ino(dir, name));
}

struct pend_ctx {
	struct fs_dirlist *l;
	int rc;
};

static void add_pending(struct fs_node *n, void *arg)
{
	struct pend_ctx *pc = arg;
	if (pc->rc == 0 && !fs_dirlist_has(pc->l, n->name, pc->l->n))
		pc->rc = fs_dirlist_add(pc->l, n->name,
					n->kind == FS_N_PENDING_DIR ? S_IFDIR : S_IFREG, n->ino);
}

int fs_tree_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l)
{
	struct pend_ctx pc = {l, 0};
	fs_node_foreach_pending(dir, add_pending, &pc);
	if (pc.rc)
		return pc.rc;
	const struct fs_kind_ops *k = kind_ops(dir->kind);
	int rc = k && k->list ? k->list(c, dir, l, l->n) : 0;
	/* A kind's list may also say its names never change (an image's view). */
	l->cacheable = (l->cacheable || dir->kind == FS_N_IMG_DIR || dir->kind == FS_N_CTL_DIR) &&
		       !l->filtered;
	return rc;
}

int fs_tree_list_plus(const struct fs_node *dir)
{
	return !fs_settings_is_dir(dir);
}

/* ---- lookups ---- */

/* Reuses the cached child when it still means the same thing. */
static struct fs_node *child_get_or_make(struct fs_node *dir, const char *name,
					 const struct fs_node_tmpl *t)
{
	struct fs_node *old = fs_node_child(dir, name);
	if (old) {
		if (fs_node_is_pending(old))
			return old;
		int same = old->kind == t->kind && old->blob_idx == t->blob_idx &&
			   old->immutable == t->immutable &&
			   (!t->repo || (old->repo && !strcmp(old->repo, t->repo))) &&
			   (!t->digest || (old->digest && !strcmp(old->digest, t->digest))) &&
			   (!t->region || (old->region && !strcmp(old->region, t->region))) &&
			   (!t->registry || (old->registry && !strcmp(old->registry, t->registry))) &&
			   (t->kind != FS_N_IMAGE || old->mtime == t->mtime);
		if (same) {
			/* The pull time moves without changing the image. */
			if (t->kind == FS_N_IMAGE)
				__atomic_store_n(&old->atime, t->atime, __ATOMIC_RELAXED);
			return old;
		}
		fs_node_put(old);
	}
	return fs_node_make(dir, name, t);
}

int fs_tree_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
		   struct fs_node **out)
{
	struct fs_found f;
	int rc = -ENOENT;
	*out = NULL;
	/* Pending entries (pushes in progress) come first. */
	struct fs_node *p = fs_node_child(dir, name);
	if (p && fs_node_is_pending(p)) {
		*out = p;
		return 0;
	}
	fs_node_put(p);
	memset(&f, 0, sizeof f);
	const struct fs_kind_ops *k = kind_ops(dir->kind);
	if (k && k->lookup)
		rc = k->lookup(c, dir, name, &f);
	if (rc == 0) {
		*out = child_get_or_make(dir, name, &f.t);
		rc = *out ? 0 : -ENOMEM;
	}
	fs_list_put(f.repos);
	fs_list_put(f.imgs);
	if (f.img)
		fs_image_put(f.img);
	free(f.sub);
	return rc;
}

/* ---- attributes ---- */

double ttl_hour(const struct fs_ctx *c, const struct fs_node *n)
{
	return 3600.0;
}

double ttl_tag(const struct fs_ctx *c, const struct fs_node *n)
{
	return c->o.tag_ttl;
}

double ttl_long(const struct fs_ctx *c, const struct fs_node *n)
{
	return TREE_LONG_TTL;
}

void attr_dir(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	st->st_mode = S_IFDIR | (ro ? 0555 : 0755);
	st->st_nlink = 2;
}

int fs_tree_getattr(struct fs_ctx *c, const struct fs_node *n, struct stat *st)
{
	const struct fs_kind_ops *k = kind_ops(n->kind);
	memset(st, 0, sizeof *st);
	if (!k)
		return -ENOENT;
	/* New tags can be pushed to an immutable repository: its directory is
	 * writable; its tags and their files are not. */
	int ro = c->ro || (n->immutable && n->kind != FS_N_NAMESPACE);
	st->st_ino = n->ino;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_blksize = 4096;
	time_t t = n->mtime ? n->mtime : c->mounted_at;
	st->st_mtime = st->st_ctime = st->st_atime = t;
	time_t pulled = __atomic_load_n(&n->atime, __ATOMIC_RELAXED);
	if (pulled)
		st->st_atime = pulled; /* ls -lu, find -atime: when ECR last saw a pull */
	k->attr(c, n, st, ro);
	return 0;
}

double fs_tree_entry_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	const struct fs_kind_ops *k = kind_ops(n->kind);
	return k ? k->entry_ttl(c, n) : 0.0;
}

double fs_tree_attr_ttl(const struct fs_ctx *c, const struct fs_node *n)
{
	const struct fs_kind_ops *k = kind_ops(n->kind);
	return k ? k->attr_ttl(c, n) : 0.0;
}

double fs_tree_neg_ttl(const struct fs_ctx *c, const struct fs_node *dir, int hidden)
{
	/* A hidden name comes back when the hiding ends; a pending directory
	 * fills as the writer goes; a policy may be set from elsewhere. */
	if (hidden || dir->kind == FS_N_PENDING_DIR || fs_settings_is_dir(dir))
		return 0;
	return c->o.neg_ttl;
}
