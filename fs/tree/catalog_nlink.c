/* The blob census of a repository: nlink of a blob = the listed image
 * directories it appears in. Counted only from the manifests this machine
 * has (the cache's records): fetching the others would be BatchGetImage,
 * which ECR records as a pull of every image (see catalog.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog_i.h"
#include "fs/tree/names.h"

/* Under the census table's lock. Counts grow as images are learned. */
struct census {
	struct fs_list *from;  /* the image listing it counts against (referenced) */
	unsigned char *known;  /* per image of from: counted */
	size_t nshown, nknown; /* images the listing shows; of them counted */
	char (*digests)[72];
	unsigned *counts;
	size_t *chain;	    /* hash chains: index + 1 of the next entry */
	size_t heads[1024]; /* index + 1 of the first entry per bucket */
	size_t n, cap;
};

unsigned fs_cat_image_places(const struct fs_ctx *c, const struct ecr_image *im)
{
	unsigned shown = 0;
	if (c->o.show_referrers)
		return im->ntags ? (unsigned)im->ntags : 1;
	if (im->subject_digest)
		return 0;
	for (size_t t = 0; t < im->ntags; t++)
		shown += !fs_name_is_referrer_tag(im->tags[t]);
	return im->ntags ? shown : 1;
}

static size_t census_bucket(const char *digest)
{
	/* Digests are uniformly distributed hex: a few characters suffice. */
	return strtoul((char[]){digest[7], digest[8], digest[9], 0}, NULL, 16) % 1024;
}

static long census_find(const struct census *cs, const char *digest)
{
	for (size_t i = cs->heads[census_bucket(digest)]; i; i = cs->chain[i - 1])
		if (!strcmp(cs->digests[i - 1], digest))
			return (long)(i - 1);
	return -1;
}

static int census_add(struct census *cs, const char *digest, unsigned places)
{
	long f = census_find(cs, digest);
	if (f >= 0) {
		cs->counts[f] += places;
		return 0;
	}
	if (cs->n == cs->cap) {
		size_t nc = cs->cap ? cs->cap * 2 : 64;
		void *d = realloc(cs->digests, nc * sizeof *cs->digests);
		if (d)
			cs->digests = d;
		void *k = d ? realloc(cs->counts, nc * sizeof *cs->counts) : NULL;
		if (k)
			cs->counts = k;
		void *ch = k ? realloc(cs->chain, nc * sizeof *cs->chain) : NULL;
		if (!ch)
			return -ENOMEM;
		cs->chain = ch;
		cs->cap = nc;
	}
	size_t b = census_bucket(digest);
	snprintf(cs->digests[cs->n], 72, "%s", digest);
	cs->counts[cs->n] = places;
	cs->chain[cs->n] = cs->heads[b];
	cs->heads[b] = ++cs->n;
	return 0;
}

static void census_clear(struct census *cs)
{
	fs_list_put(cs->from);
	free(cs->known);
	free(cs->digests);
	free(cs->counts);
	free(cs->chain);
}

void cat_census_free(void *v)
{
	struct census *cs = v;
	if (!cs)
		return;
	census_clear(cs);
	free(cs);
}

struct count_arg {
	struct fs_ctx *c;
	struct census *cs;
	int depth, rc;
};

static int count_manifest(struct count_arg *a, const char *digest);

static int count_desc(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
		      const char *mt)
{
	struct count_arg *a = arg;
	if ((kind == FS_BLOB_MANIFEST || kind == FS_BLOB_INDEX) && a->depth < 4) {
		a->depth++;
		count_manifest(a, digest);
		a->depth--;
	} else if (kind != FS_BLOB_MANIFEST && kind != FS_BLOB_INDEX && !a->rc) {
		a->rc = census_add(a->cs, digest, 1);
	}
	return 0;
}

/* From the cache only: a manifest not there makes the image unknown. */
static int count_manifest(struct count_arg *a, const char *digest)
{
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	int rc = census_add(a->cs, digest, 1);
	if (rc == 0)
		rc = cat_manifest_cached(a->c, digest, &bytes, &len, &mt);
	if (rc == 0)
		rc = fs_manifest_walk(bytes, len, NULL, NULL, count_desc, a);
	if (rc && !a->rc)
		a->rc = rc;
	free(bytes);
	free(mt);
	return rc;
}

/* The blobs of one image, each once per place it is reached, into *out
 * (a census of its own); -ENOENT when a manifest is not cached. */
static int count_image(struct fs_ctx *c, const char *digest, struct census **out)
{
	struct count_arg a = {.c = c, .cs = calloc(1, sizeof *a.cs)};
	*out = NULL;
	if (!a.cs)
		return -ENOMEM;
	count_manifest(&a, digest);
	if (a.rc) {
		cat_census_free(a.cs);
		return a.rc;
	}
	*out = a.cs;
	return 0;
}

/* Adds image i of cs->from (counted apart in one) with its places. */
static void census_merge(struct census *cs, size_t i, const struct census *one, unsigned places)
{
	if (cs->known[i])
		return;
	/* A blob is in an image directory once, however often it is named. */
	for (size_t k = 0; k < one->n; k++)
		if (census_add(cs, one->digests[k], places) != 0)
			return; /* short of memory: the image stays unknown */
	cs->known[i] = 1;
	cs->nknown++;
}

/* A census of imgs from the manifests cached now. Outside any lock. */
static struct census *census_build(struct fs_ctx *c, struct fs_list *imgs)
{
	struct census *cs = calloc(1, sizeof *cs);
	if (!cs || !(cs->known = calloc(imgs->images.n + 1, 1))) {
		free(cs);
		return NULL;
	}
	cs->from = cat_list_ref(imgs);
	for (size_t i = 0; i < imgs->images.n; i++) {
		const struct ecr_image *im = &imgs->images.v[i];
		unsigned places = fs_cat_image_places(c, im);
		struct census *one = NULL;
		if (!places)
			continue;
		cs->nshown++;
		if (count_image(c, im->digest, &one) == 0)
			census_merge(cs, i, one, places);
		cat_census_free(one);
	}
	return cs;
}

static long list_index(const struct fs_list *l, const char *digest)
{
	for (size_t i = 0; i < l->images.n; i++)
		if (!strcmp(l->images.v[i].digest, digest))
			return (long)i;
	return -1;
}

static void census_key(char *key, size_t size, const char *registry, const char *region,
		       const char *repo)
{
	snprintf(key, size, "%s/%s/%s", registry, region, repo);
}

/* The census of the repository against its current listing: kept while
 * the listing is the same, rebuilt from the cache when it changed; with
 * the image digest (may be NULL) counted when its manifests are cached.
 * Table locked on return (unlocked meanwhile); *f held, or NULL. */
static void census_sync(struct fs_ctx *c, struct fs_flights *t, const char *registry,
			const char *region, const char *repo, const char *digest,
			struct fs_flight **f)
{
	char key[512];
	struct fs_list *imgs = NULL;
	census_key(key, sizeof key, registry, region, repo);
	*f = NULL;
	if (fs_cat_images(c, registry, region, repo, &imgs) != 0) {
		fs_flights_lock(t);
		return;
	}
	fs_flights_lock(t);
	*f = fs_flight_get(t, key, 1);
	struct census *cs = *f ? fs_flight_val(*f) : NULL;
	if (*f)
		fs_flight_expire_at(t, *f, cat_keep_until(c));
	if (*f && (!cs || cs->from != imgs)) {
		/* Two threads may both build one; the second replaces the first. */
		fs_flights_unlock(t);
		cs = census_build(c, imgs);
		fs_flights_lock(t);
		fs_flight_set(t, *f, cs);
	}
	long i = cs && digest ? list_index(imgs, digest) : -1;
	unsigned places = i >= 0 ? fs_cat_image_places(c, &imgs->images.v[i]) : 0;
	if (places && !cs->known[i]) {
		struct census *one = NULL;
		fs_flights_unlock(t);
		int rc = count_image(c, digest, &one);
		fs_flights_lock(t);
		cs = fs_flight_val(*f);
		if (rc == 0 && cs && cs->from == imgs)
			census_merge(cs, (size_t)i, one, places);
		cat_census_free(one);
	}
	fs_list_put(imgs);
}

void cat_census_learn(struct fs_ctx *c, const struct fs_image *img)
{
	struct fs_flights *t = cat_census_tab();
	struct fs_flight *f = NULL;
	if (!t)
		return;
	census_sync(c, t, img->registry, img->region, img->repo, img->digest, &f);
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
}

/* Until every listed image is counted, a blob may appear in images not
 * counted yet: it gets at least 2. du remembers (to count once) only the
 * inodes with nlink > 1, so a shared layer seen first in an image opened
 * early is still counted once; an unshared one that shows 2 changes
 * nothing, its inode number is seen once. */
unsigned fs_cat_blob_nlink(struct fs_ctx *c, const struct fs_image *img, const char *digest,
			   int *exact)
{
	struct fs_flights *t = cat_census_tab();
	char key[512];
	unsigned n = 0;
	int all = 0;
	if (!t)
		goto out;
	census_key(key, sizeof key, img->registry, img->region, img->repo);
	fs_flights_lock(t);
	struct fs_flight *f = fs_flight_get(t, key, 0);
	if (!f) {
		/* Gone from memory: rebuilt from the cache's manifests. */
		fs_flights_unlock(t);
		census_sync(c, t, img->registry, img->region, img->repo, NULL, &f);
	}
	const struct census *cs = f ? fs_flight_val(f) : NULL;
	if (cs) {
		long k = census_find(cs, digest);
		n = k >= 0 ? cs->counts[k] : 0;
		all = cs->nknown == cs->nshown;
	}
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
out:
	if (exact)
		*exact = all;
	if (all)
		return n ? n : 1; /* n 0: an image shown by name only (a referrer) */
	return n > 2 ? n : 2;
}

int fs_cat_census_complete(const char *registry, const char *region, const char *repo)
{
	struct fs_flights *t = cat_census_tab();
	char key[512];
	int all = 0;
	if (!t)
		return 0;
	census_key(key, sizeof key, registry, region, repo);
	fs_flights_lock(t);
	struct fs_flight *f = fs_flight_get(t, key, 0);
	const struct census *cs = f ? fs_flight_val(f) : NULL;
	all = cs && cs->nknown == cs->nshown;
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
	return all;
}
