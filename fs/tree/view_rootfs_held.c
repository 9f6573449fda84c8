/* The layer indexes held in memory, one per layer digest for the whole
 * process: images that share a layer (two tags of one repository, `diff -r
 * v1@rootfs v2@rootfs`) share its index, its zstd copy and their pins in
 * the cache, instead of each loading its own. Counted references; the last
 * image to let go frees them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/tree/view_rootfs_i.h"

struct rfs_held {
	char digest[72];
	struct rootfs_index *ix;
	int copy_fd;
	const char *source; /* where ix came from (a static name) */
	int ranged;	    /* ix is from a TOC: read by range */
	int pin_ix, pin_copy;
	cache *cc;
	int refs;
	struct rfs_held *next;
};

/* held_mu protects the list and every entry's refs (the rest is
 * immutable once listed). A leaf lock. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rfs_held *held;
static uint64_t held_count; /* under held_mu */

static void take(struct rfs_layer *L, struct rfs_held *h)
{
	h->refs++;
	L->held = h;
	L->ix = h->ix;
	L->copy_fd = h->copy_fd;
	L->source = h->source;
	L->ranged = h->ranged;
}

int rfs_held_find(struct rfs_layer *L)
{
	pthread_mutex_lock(&held_mu);
	struct rfs_held *h = held;
	while (h && strcmp(h->digest, L->digest))
		h = h->next;
	if (h)
		take(L, h);
	pthread_mutex_unlock(&held_mu);
	return h != NULL;
}

void rfs_held_add(struct rfs_image *im, struct rfs_layer *L)
{
	struct rfs_held *h = calloc(1, sizeof *h);
	if (!h)
		return; /* L keeps its own index, freed with its image */
	memcpy(h->digest, L->digest, sizeof h->digest);
	h->ix = L->ix;
	h->copy_fd = L->copy_fd;
	h->source = L->source;
	h->ranged = L->ranged;
	h->pin_ix = L->pin_ix;
	h->pin_copy = L->pin_copy;
	h->cc = im->c->cache;
	pthread_mutex_lock(&held_mu);
	struct rfs_held *o = held;
	while (o && strcmp(o->digest, L->digest))
		o = o->next;
	if (!o) { /* else another image made it meanwhile: L keeps its own */
		h->next = held;
		held = h;
		held_count++;
		L->pin_ix = L->pin_copy = 0; /* the entry's now */
		take(L, h);
		h = NULL;
	}
	pthread_mutex_unlock(&held_mu);
	free(h);
}

void rfs_held_put(struct rfs_image *im, struct rfs_layer *L)
{
	struct rfs_held *h = L->held;
	if (!h) { /* its own */
		rootfs_index_free(L->ix);
		rfs_layer_unpin(im, L);
		if (L->copy_fd >= 0)
			close(L->copy_fd);
		return;
	}
	pthread_mutex_lock(&held_mu);
	int last = --h->refs == 0;
	if (last) {
		for (struct rfs_held **pp = &held; *pp; pp = &(*pp)->next)
			if (*pp == h) {
				*pp = h->next;
				break;
			}
		held_count--;
	}
	pthread_mutex_unlock(&held_mu);
	L->held = NULL;
	if (!last)
		return;
	rootfs_index_free(h->ix);
	if (h->copy_fd >= 0)
		close(h->copy_fd);
	struct rfs_layer tmp = {.pin_ix = h->pin_ix, .pin_copy = h->pin_copy};
	memcpy(tmp.digest, h->digest, sizeof tmp.digest);
	rfs_layer_unpin_in(h->cc, &tmp);
	free(h);
}

uint64_t rfs_held_count(void)
{
	pthread_mutex_lock(&held_mu);
	uint64_t n = held_count;
	pthread_mutex_unlock(&held_mu);
	return n;
}
