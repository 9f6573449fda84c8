/* Names hidden in committed images of this mount (see hidden.h). */
#include "fs/tree/hidden.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/mount.h"
#include "fs/tree/image.h"

struct hidden {
	char *img;    /* "registry/region/repo/dirname" of the image directory */
	char *digest; /* the image's digest when hidden */
	char *rel;    /* name relative to the image directory */
	time_t until;
	struct hidden *next;
};

/* Protects hidden (the list and every entry). */
static pthread_mutex_t hide_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hidden *hidden;

static void entry_free(struct hidden *h)
{
	free(h->img);
	free(h->digest);
	free(h->rel);
	free(h);
}

/* Drops expired entries; hide_mu held. */
static void prune_locked(time_t now)
{
	struct hidden **pp = &hidden;
	while (*pp) {
		struct hidden *h = *pp;
		if (h->until <= now) {
			*pp = h->next;
			entry_free(h);
		} else {
			pp = &h->next;
		}
	}
}

/* The image directory at or above n, or NULL. */
static struct fs_node *image_dir(struct fs_node *n)
{
	while (n && n->kind != FS_N_IMAGE)
		n = n->parent;
	return n;
}

static char *image_key(struct fs_node *img)
{
	char *s = NULL;
	if (!img->registry || !img->region || !img->repo)
		return NULL;
	if (asprintf(&s, "%s/%s/%s/%s", img->registry, img->region, img->repo, img->name) < 0)
		return NULL;
	return s;
}

/* Name of dir/name relative to the image directory (malloc'd), or NULL. */
static char *rel_of(struct fs_node *dir, const char *name)
{
	const char *prefix;
	char *s = NULL;

	if (dir->kind == FS_N_IMAGE)
		prefix = "";
	else if (dir->kind == FS_N_IMG_DIR && dir->blob_idx == FS_IDX_BLOBS)
		prefix = "blobs/";
	else if (dir->kind == FS_N_IMG_DIR && dir->blob_idx == FS_IDX_SHA256)
		prefix = "blobs/sha256/";
	else
		return NULL;
	return asprintf(&s, "%s%s", prefix, name) < 0 ? NULL : s;
}

int push_hide_add(struct fs_node *dir, const char *name, time_t until)
{
	struct fs_node *img = image_dir(dir);
	struct hidden *h;

	if (!img || !img->digest)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->img = image_key(img);
	h->digest = strdup(img->digest);
	h->rel = rel_of(dir, name);
	h->until = until;
	if (!h->img || !h->digest || !h->rel) {
		entry_free(h);
		return -ENOMEM;
	}
	pthread_mutex_lock(&hide_mu);
	prune_locked(time(NULL));
	h->next = hidden;
	hidden = h;
	pthread_mutex_unlock(&hide_mu);
	return 0;
}

/* Whether an entry matches; hide_mu held. */
static int match_locked(const char *key, const char *digest, const char *rel, time_t now)
{
	for (struct hidden *h = hidden; h; h = h->next)
		if (h->until > now && !strcmp(h->img, key) && !strcmp(h->digest, digest) &&
		    !strcmp(h->rel, rel))
			return 1;
	return 0;
}

int push_hide_is(struct fs_node *dir, const char *name, time_t now)
{
	struct fs_node *img = image_dir(dir);
	char *key, *rel = NULL;
	int r = 0;

	if (!img || !img->digest)
		return 0;
	pthread_mutex_lock(&hide_mu);
	r = hidden != NULL;
	pthread_mutex_unlock(&hide_mu);
	if (!r)
		return 0; /* the usual case: nothing hidden, nothing allocated */
	key = image_key(img);
	rel = rel_of(dir, name);
	r = 0;
	if (key && rel) {
		pthread_mutex_lock(&hide_mu);
		r = match_locked(key, img->digest, rel, now);
		pthread_mutex_unlock(&hide_mu);
	}
	free(key);
	free(rel);
	return r;
}

void push_hide_forget(const char *registry, const char *region, const char *repo,
		      const char *name)
{
	char *key = NULL;
	struct hidden **pp;

	if (asprintf(&key, "%s/%s/%s/%s", registry, region, repo, name) < 0)
		return;
	pthread_mutex_lock(&hide_mu);
	for (pp = &hidden; *pp;) {
		struct hidden *h = *pp;
		if (!strcmp(h->img, key)) {
			*pp = h->next;
			entry_free(h);
		} else {
			pp = &h->next;
		}
	}
	pthread_mutex_unlock(&hide_mu);
	free(key);
}

void push_hide_free(void)
{
	pthread_mutex_lock(&hide_mu);
	while (hidden) {
		struct hidden *h = hidden;
		hidden = h->next;
		entry_free(h);
	}
	pthread_mutex_unlock(&hide_mu);
}

size_t push_hide_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&hide_mu);
	prune_locked(time(NULL));
	for (struct hidden *h = hidden; h; h = h->next)
		n++;
	pthread_mutex_unlock(&hide_mu);
	return n;
}
