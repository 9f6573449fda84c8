/* The inode table (see node.h for the locking and lifetime rules). */
#include "fs/tree/node.h"
#include "fs/tree/views.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/image.h"

#define NBUCKETS 8192

/* Protects everything below and every node's mutable fields. */
static pthread_mutex_t node_mu = PTHREAD_MUTEX_INITIALIZER;
static void node_unlock(void);
static struct fs_node *ino_hash[NBUCKETS];
static struct fs_node *child_hash[NBUCKETS];
static uint64_t next_ino = FS_ROOT_INO + 1;
static struct fs_node *root;

void fs_node_lock(void)
{
	pthread_mutex_lock(&node_mu);
}

void fs_node_unlock(void)
{
	node_unlock();
}

uint64_t fs_hash64(const char *const *parts, size_t nparts)
{
	/* FNV-1a over the parts, separated by a 0 byte. */
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < nparts; i++) {
		const char *p = parts[i] ? parts[i] : "";
		for (; *p; p++) {
			h ^= (unsigned char)*p;
			h *= 1099511628211ULL;
		}
		h ^= 0;
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t child_bucket(uint64_t parent, const char *name)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lu", (unsigned long)parent);
	const char *parts[2] = {buf, name};
	return fs_hash64(parts, 2) % NBUCKETS;
}

static size_t live_nodes; /* under the node lock */
/* Under the node lock: VIEW nodes freed with their view's data still to
 * free. That data is freed after the lock is dropped (node_unlock): the
 * last release of a rootfs image takes the rootfs table lock and frees its
 * trees and descriptors, none of which needs the inode table held, and the
 * table lock then stays a leaf. Linked by hnext. */
static struct fs_node *graveyard;

static void ino_insert(struct fs_node *n)
{
	live_nodes++;
	size_t b = n->ino % NBUCKETS;
	n->hnext = ino_hash[b];
	ino_hash[b] = n;
}

static void ino_remove(struct fs_node *n)
{
	live_nodes--;
	struct fs_node **pp = &ino_hash[n->ino % NBUCKETS];
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			return;
		}
	}
}

static void child_unlist(struct fs_node *n)
{
	if (!n->listed || !n->parent)
		return;
	struct fs_node **pp = &child_hash[child_bucket(n->parent->ino, n->name)];
	for (; *pp; pp = &(*pp)->cnext) {
		if (*pp == n) {
			*pp = n->cnext;
			break;
		}
	}
	n->listed = 0;
}

static void child_list(struct fs_node *n)
{
	size_t b = child_bucket(n->parent->ino, n->name);
	n->cnext = child_hash[b];
	child_hash[b] = n;
	n->listed = 1;
}

static struct fs_node *child_find(struct fs_node *dir, const char *name)
{
	struct fs_node *n = child_hash[child_bucket(dir->ino, name)];
	for (; n; n = n->cnext)
		if (n->parent == dir && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void (*push_free)(void *push); /* given to fs_node_init */

/* Bits of fs_node.owns: the location strings a node copied (the others
 * are NULL or its parent's). */
enum {
	OWN_REGISTRY = 1 << 0,
	OWN_REGION = 1 << 1,
	OWN_REPO = 1 << 2,
	OWN_TAG = 1 << 3,
	OWN_DIGEST = 1 << 4,
};

/* IMAGE nodes the kernel knows, in use order (under the node lock), head
 * most recent; one list per tier (node.h): in_lru is the tier + 1. */
struct lru {
	struct fs_node *head, *tail;
	size_t count;
};
static struct lru lru[2];

static void lru_unlink_locked(struct fs_node *n)
{
	if (!n->in_lru)
		return;
	struct lru *l = &lru[n->in_lru - 1];
	n->in_lru = 0;
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		l->head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		l->tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
	l->count--;
}

static void lru_front_locked(struct fs_node *n, int tier)
{
	struct lru *l = &lru[tier];
	lru_unlink_locked(n);
	n->in_lru = tier + 1;
	n->lru_next = l->head;
	if (l->head)
		l->head->lru_prev = n;
	l->head = n;
	if (!l->tail)
		l->tail = n;
	l->count++;
}

void fs_node_touch(struct fs_node *n)
{
	if (n->kind != FS_N_IMAGE)
		return;
	pthread_mutex_lock(&node_mu);
	if (n->listed || n->nlookup)
		lru_front_locked(n, n->img ? FS_TIER_LOADED : FS_TIER_LISTED);
	node_unlock();
}

/* Hands out the tail of a tier beyond bound. Lock held. */
static size_t lru_over_locked(struct lru *l, size_t bound, struct fs_node **out, size_t max)
{
	size_t n = 0;
	while (l->count > bound && n < max && l->tail) {
		struct fs_node *v = l->tail;
		lru_unlink_locked(v);
		v->refs++;
		out[n++] = v;
	}
	return n;
}

size_t fs_node_images_over(const size_t bound[2], struct fs_node **out, size_t max)
{
	pthread_mutex_lock(&node_mu);
	size_t n = lru_over_locked(&lru[FS_TIER_LOADED], bound[FS_TIER_LOADED], out, max);
	n += lru_over_locked(&lru[FS_TIER_LISTED], bound[FS_TIER_LISTED], out + n, max - n);
	node_unlock();
	return n;
}

static void node_free(struct fs_node *n)
{
	lru_unlink_locked(n);
	if (n->push && push_free)
		push_free(n->push);
	if (n->owns & OWN_REGISTRY)
		free(n->registry);
	if (n->owns & OWN_REGION)
		free(n->region);
	if (n->owns & OWN_REPO)
		free(n->repo);
	if (n->owns & OWN_TAG)
		free(n->tag);
	if (n->owns & OWN_DIGEST)
		free(n->digest);
	if (n->img)
		fs_image_put(n->img);
	if (n->kind == FS_N_VIEW && n->vdata) {
		n->hnext = graveyard; /* freed by node_unlock */
		graveyard = n;
		return;
	}
	free(n);
}

/* Drops the node lock, then frees the view data of the VIEW nodes freed
 * under it. */
static void node_unlock(void)
{
	struct fs_node *g = graveyard;
	graveyard = NULL;
	pthread_mutex_unlock(&node_mu);
	while (g) {
		struct fs_node *next = g->hnext;
		fs_view_data_free(g->view, g->vdata);
		free(g);
		g = next;
	}
}

/* Frees n and the parents it was the last holder of. Lock held. */
static void maybe_free_locked(struct fs_node *n)
{
	while (n && n->nlookup == 0 && n->refs == 0 && !n->pending && n != root) {
		struct fs_node *parent = n->parent;
		child_unlist(n);
		ino_remove(n);
		node_free(n);
		n = parent;
		if (n)
			n->refs--;
	}
}

/* A node with room for its name, zeroed. */
static struct fs_node *node_alloc(const char *name)
{
	size_t len = strlen(name);
	struct fs_node *n = calloc(1, sizeof *n + len + 1);
	if (n)
		memcpy(n->name, name, len + 1);
	return n;
}

/* Sets *field to v: the parent's string when equal to it (the parent
 * outlives its children), else n's own copy (bit in n->owns). -1 when out
 * of memory. */
static int set_str(struct fs_node *n, char **field, const char *v, char *parent_v, unsigned bit)
{
	if (!v) {
		*field = NULL;
		return 0;
	}
	if (parent_v && (v == parent_v || strcmp(v, parent_v) == 0)) {
		*field = parent_v;
		return 0;
	}
	if (!(*field = strdup(v)))
		return -1;
	n->owns |= bit;
	return 0;
}

int fs_node_init(void (*free_push)(void *push))
{
	int rc = 0;
	pthread_mutex_lock(&node_mu);
	push_free = free_push;
	if (root)
		goto out;
	root = node_alloc("");
	if (!root) {
		rc = -ENOMEM;
		goto out;
	}
	root->ino = FS_ROOT_INO;
	root->kind = FS_N_ROOT;
	root->created = time(NULL);
	root->nlookup = 1;
	ino_insert(root);
out:
	node_unlock();
	return rc;
}

void fs_node_shutdown(void)
{
	pthread_mutex_lock(&node_mu);
	for (size_t b = 0; b < NBUCKETS; b++) {
		struct fs_node *n = ino_hash[b];
		while (n) {
			struct fs_node *next = n->hnext;
			node_free(n);
			n = next;
		}
		ino_hash[b] = NULL;
		child_hash[b] = NULL;
	}
	root = NULL;
	live_nodes = 0;
	memset(lru, 0, sizeof lru);
	next_ino = FS_ROOT_INO + 1;
	node_unlock();
}

struct fs_node *fs_node_get(uint64_t ino)
{
	pthread_mutex_lock(&node_mu);
	struct fs_node *n = ino_hash[ino % NBUCKETS];
	for (; n; n = n->hnext)
		if (n->ino == ino)
			break;
	if (n)
		n->refs++;
	node_unlock();
	return n;
}

void fs_node_ref(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	n->refs++;
	node_unlock();
}

void fs_node_put(struct fs_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&node_mu);
	n->refs--;
	maybe_free_locked(n);
	node_unlock();
}

void fs_node_lookup_inc(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	n->nlookup++;
	node_unlock();
}

void fs_node_forget(uint64_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&node_mu);
	struct fs_node *n = ino_hash[ino % NBUCKETS];
	for (; n; n = n->hnext)
		if (n->ino == ino)
			break;
	if (n && n != root) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		maybe_free_locked(n);
	}
	node_unlock();
}

struct fs_node *fs_node_child(struct fs_node *dir, const char *name)
{
	pthread_mutex_lock(&node_mu);
	struct fs_node *n = child_find(dir, name);
	if (n)
		n->refs++;
	node_unlock();
	return n;
}

static struct fs_node *node_new(struct fs_node *dir, const char *name, enum fs_kind kind,
				const struct fs_node_tmpl *t)
{
	struct fs_node *n = node_alloc(name);
	if (!n)
		return NULL;
	n->kind = kind;
	n->parent = dir;
	/* An image's tag is its template's: an image by digest below a tag's
	 * view (TAG@referrers/@sha256-...) has none. */
	int own_tag = t && t->kind == FS_N_IMAGE;
	if (set_str(n, &n->registry, t && t->registry ? t->registry : dir->registry, dir->registry,
		    OWN_REGISTRY) ||
	    set_str(n, &n->region, t && t->region ? t->region : dir->region, dir->region,
		    OWN_REGION) ||
	    set_str(n, &n->repo, t && t->repo ? t->repo : dir->repo, dir->repo, OWN_REPO) ||
	    set_str(n, &n->tag, t && t->tag ? t->tag : own_tag ? NULL : dir->tag, dir->tag,
		    OWN_TAG) ||
	    set_str(n, &n->digest, t ? t->digest : NULL, dir->digest, OWN_DIGEST)) {
		node_free(n);
		return NULL;
	}
	n->img = t && t->img ? t->img : dir->img;
	n->mtime = t && t->mtime ? t->mtime : dir->mtime;
	n->atime = t && t->kind == FS_N_IMAGE ? t->atime : 0;
	/* An image's or a namespace's own setting (a tag's exclusion filters may
	 * make it mutable in a protected repository); files inherit theirs. */
	if (t && (t->kind == FS_N_IMAGE || t->kind == FS_N_NAMESPACE))
		n->immutable = t->immutable;
	else
		n->immutable = t && t->immutable ? t->immutable : dir->immutable;
	n->blob_idx = t ? t->blob_idx : 0;
	n->ctl = t ? t->ctl : 0;
	n->view = t && t->view ? t->view : dir->view;
	n->vdata = t ? t->vdata : NULL;
	n->created = time(NULL);
	if (n->img)
		fs_image_ref(n->img);
	return n;
}

/* Publishes n as a child of dir. Lock held. */
static void publish_locked(struct fs_node *dir, struct fs_node *n)
{
	n->ino = next_ino++;
	n->refs = 1;
	dir->refs++; /* held by the child */
	ino_insert(n);
	child_list(n);
}

struct fs_node *fs_node_make(struct fs_node *dir, const char *name,
			     const struct fs_node_tmpl *tmpl)
{
	struct fs_node *n = node_new(dir, name, tmpl->kind, tmpl);
	if (!n)
		return NULL;
	pthread_mutex_lock(&node_mu);
	struct fs_node *old = child_find(dir, name);
	if (old && old->pending) {
		/* A pending entry shadows the remote one: keep it. */
		old->refs++;
		node_unlock();
		node_free(n);
		return old;
	}
	if (old)
		child_unlist(old);
	publish_locked(dir, n);
	if (old)
		maybe_free_locked(old);
	node_unlock();
	return n;
}

struct fs_image *fs_node_set_img(struct fs_node *n, struct fs_image *img)
{
	pthread_mutex_lock(&node_mu);
	if (!n->img) {
		fs_image_ref(img);
		n->img = img;
		/* Its image is in memory now: it counts with the loaded ones. */
		if (n->in_lru)
			lru_front_locked(n, FS_TIER_LOADED);
	}
	img = n->img;
	fs_image_ref(img);
	node_unlock();
	return img;
}

struct fs_image *fs_node_img(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	struct fs_image *img = n->img;
	if (img)
		fs_image_ref(img);
	node_unlock();
	return img;
}

void fs_node_drop_child(struct fs_node *dir, const char *name)
{
	pthread_mutex_lock(&node_mu);
	struct fs_node *old = child_find(dir, name);
	if (old && !old->pending) {
		child_unlist(old);
		maybe_free_locked(old);
	}
	node_unlock();
}

struct fs_node *fs_node_add_pending(struct fs_node *dir, const char *name, enum fs_kind kind,
				    void *push)
{
	struct fs_node *n = node_new(dir, name, kind, NULL);
	if (!n) {
		errno = ENOMEM;
		return NULL;
	}
	n->push = push;
	pthread_mutex_lock(&node_mu);
	struct fs_node *old = child_find(dir, name);
	if (old && old->pending) {
		node_unlock();
		node_free(n);
		errno = EEXIST;
		return NULL;
	}
	if (old)
		child_unlist(old);
	publish_locked(dir, n);
	n->pending = 1;
	n->pend_next = dir->pend_head;
	dir->pend_head = n;
	if (old)
		maybe_free_locked(old);
	node_unlock();
	return n;
}

/* Unlists a pending n from its parent (it may be freed). Lock held. */
static void unlist_pending_locked(struct fs_node *n)
{
	struct fs_node **pp;

	if (!n->pending)
		return;
	for (pp = &n->parent->pend_head; *pp; pp = &(*pp)->pend_next) {
		if (*pp == n) {
			*pp = n->pend_next;
			break;
		}
	}
	n->pending = 0;
	n->pend_next = NULL;
	child_unlist(n);
	maybe_free_locked(n);
}

void fs_node_remove_pending(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	unlist_pending_locked(n);
	node_unlock();
}

/* Unlists n's pending descendants, children first, and n itself when self
 * (see fs_node_remove_pending_tree). Lock held; the caller holds a
 * reference on n. */
static void remove_tree_locked(struct fs_node *n, int self)
{
	while (n->pend_head)
		remove_tree_locked(n->pend_head, 1);
	if (self)
		unlist_pending_locked(n);
}

void fs_node_remove_pending_tree(struct fs_node *n, int self)
{
	pthread_mutex_lock(&node_mu);
	remove_tree_locked(n, self);
	node_unlock();
}

void fs_node_foreach_pending(struct fs_node *dir, void (*fn)(struct fs_node *, void *),
			     void *arg)
{
	pthread_mutex_lock(&node_mu);
	for (struct fs_node *n = dir->pend_head; n; n = n->pend_next)
		fn(n, arg);
	node_unlock();
}

char *fs_node_path(struct fs_node *n)
{
	size_t len = 1;
	for (struct fs_node *p = n; p && p->parent; p = p->parent)
		len += strlen(p->name) + 1;
	char *buf = malloc(len + 1);
	if (!buf)
		return NULL;
	size_t pos = len;
	buf[pos] = 0;
	for (struct fs_node *p = n; p && p->parent; p = p->parent) {
		size_t l = strlen(p->name);
		pos -= l;
		memcpy(buf + pos, p->name, l);
		buf[--pos] = '/';
	}
	if (pos == len) /* root */
		buf[--pos] = '/';
	memmove(buf, buf + pos, len - pos + 1);
	return buf;
}

size_t fs_node_count(void)
{
	pthread_mutex_lock(&node_mu);
	size_t n = live_nodes;
	node_unlock();
	return n;
}

void *fs_node_set_vdata(struct fs_node *n, void *vdata)
{
	void *loser = NULL;
	pthread_mutex_lock(&node_mu);
	if (!n->vdata)
		n->vdata = vdata;
	else
		loser = vdata;
	vdata = n->vdata;
	node_unlock();
	if (loser)
		fs_view_data_free(n->view, loser);
	return vdata;
}

void *fs_node_vdata(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	void *v = n->vdata;
	node_unlock();
	return v;
}

int fs_node_is_pending(struct fs_node *n)
{
	pthread_mutex_lock(&node_mu);
	int p = n->pending;
	node_unlock();
	return p;
}
