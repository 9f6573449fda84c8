/* The table of open handles (see handles.h). */
#include "fs/fuse/handles.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob.h"
#include "fs/tree/view_rootfs.h"

struct slot {
	struct fs_fh *h; /* NULL: free */
	uint32_t gen;    /* bumped at every insert */
	uint32_t next_free;
};

struct fs_fh_table {
	pthread_mutex_t mu; /* protects every field */
	struct slot *v;
	uint32_t n, cap;
	uint32_t free_head; /* slot index + 1; 0: none */
	size_t live;
};

int fh_table_new(struct fs_fh_table **out)
{
	struct fs_fh_table *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

struct fs_fh *fh_new(enum fh_kind k)
{
	struct fs_fh *h = calloc(1, sizeof *h);
	if (h) {
		h->kind = k;
		h->refs = 1;
	}
	return h;
}

static void fh_free(struct fs_fh *h)
{
	switch (h->kind) {
	case FH_DIR:
		fs_dirlist_clear(&h->dir);
		break;
	case FH_BLOB:
		fs_blob_close(h->rs);
		break;
	case FH_WRITER:
		pending_file_put(h->pf);
		break;
	case FH_SETTINGS:
		fs_node_put(h->node);
		break;
	case FH_ROOTFS:
		fs_rootfs_close(h->rf);
		break;
	default:
		break;
	}
	if (h->owned)
		free(h->data);
	if (h->img)
		fs_image_put(h->img);
	free(h);
}

void fh_put(struct fs_fh *h)
{
	if (h && __atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) == 0)
		fh_free(h);
}

static int grow_locked(struct fs_fh_table *t)
{
	uint32_t nc = t->cap ? t->cap * 2 : 64;
	if (nc > (1u << 30))
		return -EMFILE;
	struct slot *nv = realloc(t->v, nc * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	memset(nv + t->cap, 0, (nc - t->cap) * sizeof *nv);
	t->v = nv;
	t->cap = nc;
	return 0;
}

int fh_insert(struct fs_fh_table *t, struct fs_fh *h, uint64_t *fh)
{
	uint32_t i;
	int rc = 0;
	pthread_mutex_lock(&t->mu);
	if (t->free_head) {
		i = t->free_head - 1;
		t->free_head = t->v[i].next_free;
	} else {
		if (t->n == t->cap && (rc = grow_locked(t)) != 0)
			goto out;
		i = t->n++;
	}
	__atomic_add_fetch(&h->refs, 1, __ATOMIC_RELAXED);
	t->v[i].h = h;
	t->v[i].gen++;
	t->live++;
	*fh = ((uint64_t)t->v[i].gen << 32) | (i + 1);
out:
	pthread_mutex_unlock(&t->mu);
	return rc;
}

/* The slot fh names when it is live; lock held. */
static struct slot *slot_of(struct fs_fh_table *t, uint64_t fh)
{
	uint32_t i = (uint32_t)(fh & 0xffffffffu);
	if (i == 0 || i > t->n)
		return NULL;
	struct slot *s = &t->v[i - 1];
	return s->h && s->gen == (uint32_t)(fh >> 32) ? s : NULL;
}

struct fs_fh *fh_get(struct fs_fh_table *t, uint64_t fh)
{
	struct fs_fh *h = NULL;
	pthread_mutex_lock(&t->mu);
	struct slot *s = slot_of(t, fh);
	if (s) {
		h = s->h;
		__atomic_add_fetch(&h->refs, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&t->mu);
	return h;
}

struct fs_fh *fh_remove(struct fs_fh_table *t, uint64_t fh)
{
	struct fs_fh *h = NULL;
	pthread_mutex_lock(&t->mu);
	struct slot *s = slot_of(t, fh);
	if (s) {
		h = s->h;
		s->h = NULL;
		s->next_free = t->free_head;
		t->free_head = (uint32_t)(s - t->v) + 1;
		t->live--;
	}
	pthread_mutex_unlock(&t->mu);
	return h;
}

size_t fh_count(struct fs_fh_table *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->live;
	pthread_mutex_unlock(&t->mu);
	return n;
}

void fh_table_free(struct fs_fh_table *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->n; i++)
		if (t->v[i].h)
			fh_put(t->v[i].h);
	free(t->v);
	pthread_mutex_destroy(&t->mu);
	free(t);
}
