/* Manifests by digest (the cache's records, then BatchGetImage), the blob
 * censuses of repositories (nlink) and loaded images (see catalog.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog_i.h"
#include "fs/tree/names.h"
#include "net/http.h"
#include "net/log.h"

/* ---- manifests ---- */

static int meta_manifest_get(struct fs_ctx *c, const char *digest, char **bytes, size_t *len,
			     char **media_type)
{
	char *s = NULL;
	size_t sl = 0;
	if (!c->cache)
		return -ENOENT;
	int rc = cache_meta_get(c->cache, "manifest", digest, &s, &sl);
	if (rc)
		return rc;
	char *nl = memchr(s, '\n', sl);
	if (!nl) {
		free(s);
		return -EIO;
	}
	char check[72];
	size_t off = (size_t)(nl + 1 - s);
	fs_sha256_digest(s + off, sl - off, check);
	if (strcmp(check, digest) != 0) {
		free(s);
		cache_meta_del(c->cache, "manifest", digest);
		return -ENOENT;
	}
	*len = sl - off;
	*bytes = malloc(*len + 1);
	*media_type = nl == s ? NULL : strndup(s, (size_t)(nl - s));
	if (!*bytes) {
		free(s);
		free(*media_type);
		return -ENOMEM;
	}
	memcpy(*bytes, s + off, *len);
	(*bytes)[*len] = 0;
	free(s);
	return 0;
}

static void meta_manifest_put(struct fs_ctx *c, const struct ecr_manifest *m)
{
	char check[72];
	if (!c->cache || !m->bytes || !m->digest)
		return;
	fs_sha256_digest(m->bytes, m->len, check);
	if (strcmp(check, m->digest) != 0) {
		log_err("BatchGetImage returned bytes for %s that hash to %s", m->digest, check);
		return;
	}
	const char *mt = m->media_type ? m->media_type : "";
	size_t ml = strlen(mt);
	char *s = malloc(ml + 1 + m->len);
	if (!s)
		return;
	memcpy(s, mt, ml);
	s[ml] = '\n';
	memcpy(s + ml + 1, m->bytes, m->len);
	cache_meta_put(c->cache, "manifest", m->digest, s, ml + 1 + m->len);
	free(s);
}

/* BatchGetImage for the digests not cached yet (one call per 100). */
static int prefetch_manifests(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo, const char *const *digests, size_t n)
{
	int rc = 0;
	struct ecr_image_id *ids = calloc(n + 1, sizeof *ids);
	size_t nids = 0;
	struct ecr_manifest_list ml = {0};
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char *b = NULL, *mt = NULL;
		size_t len;
		if (meta_manifest_get(c, digests[i], &b, &len, &mt) == 0) {
			free(b);
			free(mt);
			continue;
		}
		ids[nids++].digest = digests[i];
	}
	if (nids == 0)
		goto out;
	struct ecr_where wh = {.registry_id = registry, .region = region, .repository = repo};
	rc = ecr_batch_get_image(fs_ecr_for(c, registry), &wh, ids, nids, &ml, NULL);
	if (rc)
		goto out;
	for (size_t i = 0; i < ml.n; i++)
		meta_manifest_put(c, &ml.v[i]);
out:
	ecr_manifest_list_free(&ml);
	free(ids);
	return rc;
}

int fs_cat_manifest(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		    const char *digest, char **bytes, size_t *len, char **media_type)
{
	*bytes = *media_type = NULL;
	int rc = meta_manifest_get(c, digest, bytes, len, media_type);
	if (rc == 0)
		return 0;
	struct ecr_image_id id = {.digest = digest};
	struct ecr_manifest_list ml = {0};
	struct ecr_where wh = {.registry_id = registry, .region = region, .repository = repo};
	rc = ecr_batch_get_image(fs_ecr_for(c, registry), &wh, &id, 1, &ml, NULL);
	if (rc)
		goto out;
	rc = -ENOENT;
	for (size_t i = 0; i < ml.n; i++) {
		const struct ecr_manifest *m = &ml.v[i];
		char check[72];
		if (!m->bytes)
			continue;
		fs_sha256_digest(m->bytes, m->len, check);
		if (strcmp(check, digest) != 0)
			continue;
		meta_manifest_put(c, m);
		*bytes = malloc(m->len + 1);
		*media_type = m->media_type ? strdup(m->media_type) : NULL;
		if (!*bytes) {
			free(*media_type);
			*media_type = NULL;
			rc = -ENOMEM;
			goto out;
		}
		memcpy(*bytes, m->bytes, m->len + 1);
		*len = m->len;
		rc = 0;
		break;
	}
	if (rc == -ENOENT && ml.nfailed)
		log_warn("BatchGetImage %s in %s (%s): %s", digest, repo, region,
			 ml.failure_codes && ml.failure_codes[0] ? ml.failure_codes[0] : "failed");
out:
	ecr_manifest_list_free(&ml);
	return rc;
}

/* ---- blob reference counts over a repository (nlink) ---- */

/* Immutable once built; read under the census table's lock. */
struct census {
	struct fs_list *from;  /* the image listing it was counted from (referenced) */
	char (*digests)[72];
	unsigned *counts;
	size_t *chain;         /* hash chains: index + 1 of the next entry */
	size_t heads[1024];    /* index + 1 of the first entry per bucket */
	size_t n, cap;
};

struct count_arg {
	struct census *cs;
	unsigned places;
	struct fs_ctx *c;
	const char *registry, *region, *repo;
	int depth;
};

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

static void census_add(struct census *cs, const char *digest, unsigned places)
{
	long f = census_find(cs, digest);
	if (f >= 0) {
		cs->counts[f] += places;
		return;
	}
	if (cs->n == cs->cap) {
		size_t nc = cs->cap ? cs->cap * 2 : 64;
		void *d = realloc(cs->digests, nc * sizeof *cs->digests);
		if (!d)
			return;
		cs->digests = d;
		void *k = realloc(cs->counts, nc * sizeof *cs->counts);
		if (!k)
			return;
		cs->counts = k;
		void *ch = realloc(cs->chain, nc * sizeof *cs->chain);
		if (!ch)
			return;
		cs->chain = ch;
		cs->cap = nc;
	}
	size_t b = census_bucket(digest);
	snprintf(cs->digests[cs->n], 72, "%s", digest);
	cs->counts[cs->n] = places;
	cs->chain[cs->n] = cs->heads[b];
	cs->heads[b] = ++cs->n;
}

static int count_manifest(struct count_arg *a, const char *digest);

static int count_desc(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
		      const char *mt)
{
	struct count_arg *a = arg;
	if (kind == FS_BLOB_MANIFEST || kind == FS_BLOB_INDEX) {
		if (a->depth < 4) {
			a->depth++;
			count_manifest(a, digest);
			a->depth--;
		}
		return 0;
	}
	census_add(a->cs, digest, a->places);
	return 0;
}

static int count_manifest(struct count_arg *a, const char *digest)
{
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	census_add(a->cs, digest, a->places);
	int rc = fs_cat_manifest(a->c, a->registry, a->region, a->repo, digest, &bytes, &len, &mt);
	if (rc == 0)
		rc = fs_manifest_walk(bytes, len, NULL, NULL, count_desc, a);
	free(bytes);
	free(mt);
	return rc;
}

void cat_census_free(void *v)
{
	struct census *cs = v;
	if (!cs)
		return;
	fs_list_put(cs->from);
	free(cs->digests);
	free(cs->counts);
	free(cs->chain);
	free(cs);
}

struct collect {
	char **v;
	size_t n, cap;
};

static int collect_child(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
			 const char *mt)
{
	struct collect *cl = arg;
	if (kind != FS_BLOB_MANIFEST && kind != FS_BLOB_INDEX)
		return 0;
	if (cl->n == cl->cap) {
		size_t nc = cl->cap ? cl->cap * 2 : 32;
		char **nv = realloc(cl->v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		cl->v = nv;
		cl->cap = nc;
	}
	if (!(cl->v[cl->n] = strdup(digest)))
		return -ENOMEM;
	cl->n++;
	return 0;
}

/* The child manifests of the repository's image indexes, in batches too
 * (one BatchGetImage per 100 rather than one call each). */
static void prefetch_children(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo, const struct fs_list *imgs)
{
	struct collect cl = {0};
	for (size_t i = 0; i < imgs->images.n; i++) {
		char *bytes = NULL, *mt = NULL;
		size_t len = 0;
		if (meta_manifest_get(c, imgs->images.v[i].digest, &bytes, &len, &mt) == 0)
			fs_manifest_walk(bytes, len, NULL, NULL, collect_child, &cl);
		free(bytes);
		free(mt);
	}
	if (cl.n)
		prefetch_manifests(c, registry, region, repo, (const char *const *)cl.v, cl.n);
	for (size_t i = 0; i < cl.n; i++)
		free(cl.v[i]);
	free(cl.v);
}

/* Counts, for each blob of the repository, the listed image directories it
 * appears in (each tag, and each untagged image's @sha256- directory). */
static struct census *census_build(struct fs_ctx *c, const char *registry, const char *region,
				   const char *repo, struct fs_list *imgs)
{
	struct census *cs = calloc(1, sizeof *cs);
	const char **dg = calloc(imgs->images.n + 1, sizeof *dg);
	if (!cs || !dg)
		goto fail;
	for (size_t i = 0; i < imgs->images.n; i++)
		dg[i] = imgs->images.v[i].digest;
	if (imgs->images.n)
		prefetch_manifests(c, registry, region, repo, dg, imgs->images.n);
	prefetch_children(c, registry, region, repo, imgs);
	struct count_arg a = {.cs = cs, .c = c, .registry = registry, .region = region, .repo = repo};
	for (size_t i = 0; i < imgs->images.n; i++) {
		const struct ecr_image *im = &imgs->images.v[i];
		a.places = im->ntags ? (unsigned)im->ntags : 1;
		count_manifest(&a, im->digest);
	}
	free(dg);
	cs->from = cat_list_ref(imgs);
	return cs;
fail:
	free(dg);
	free(cs);
	return NULL;
}

static unsigned census_count(const struct census *cs, const char *digest)
{
	long f = census_find(cs, digest);
	return f >= 0 ? cs->counts[f] : 0;
}

/* Builds the census of the repository from its listing imgs, outside any
 * lock (it may call ECR). Kept for every image of the repository: not cut
 * short by this caller's INTERRUPT. */
static struct census *census_make(struct fs_ctx *c, const struct fs_image *img,
				  struct fs_list *imgs)
{
	volatile int *cancel = net_http_thread_cancel_swap(NULL);
	struct census *cs = census_build(c, img->registry, img->region, img->repo, imgs);
	net_http_thread_cancel_swap(cancel);
	return cs;
}

static void apply_census(struct fs_ctx *c, struct fs_image *img)
{
	char key[512];
	struct fs_list *imgs = NULL;
	struct fs_flights *t = cat_census_tab();
	snprintf(key, sizeof key, "%s/%s/%s", img->registry, img->region, img->repo);
	if (!t || fs_cat_images(c, img->registry, img->region, img->repo, &imgs) != 0)
		return;
	fs_flights_lock(t);
	/* Held, so not evicted while it is built or applied. */
	struct fs_flight *f = fs_flight_get(t, key, 1);
	struct census *cs = f ? fs_flight_val(f) : NULL;
	if (f)
		fs_flight_expire_at(t, f, cat_keep_until(c));
	if (cs && cs->from != imgs) {
		fs_flight_set(t, f, NULL);
		cs = NULL;
	}
	if (f && !cs) {
		/* Two threads may both build one; the second replaces the first. */
		fs_flights_unlock(t);
		cs = census_make(c, img, imgs);
		fs_flights_lock(t);
		fs_flight_set(t, f, cs);
	}
	/* The image is not shared yet: its nlinks may be written. */
	for (size_t i = 0; cs && i < img->nblobs; i++) {
		unsigned n = census_count(cs, img->blobs[i].digest);
		img->blobs[i].nlink = n ? n : 1;
	}
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
	fs_list_put(imgs);
}

/* ---- images ---- */

struct mcb {
	struct fs_ctx *c;
	const char *registry, *region, *repo;
};

static int manifest_cb(void *arg, const char *digest, char **bytes, size_t *len, char **mt)
{
	struct mcb *m = arg;
	return fs_cat_manifest(m->c, m->registry, m->region, m->repo, digest, bytes, len, mt);
}

int fs_cat_image(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		 const char *digest, const char *refname, int immutable, time_t pushed_at,
		 struct fs_image **out)
{
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = fs_cat_manifest(c, registry, region, repo, digest, &bytes, &len, &mt);
	if (rc)
		goto out;
	struct fs_image_src src = {.registry = registry, .region = region, .repo = repo,
				   .digest = digest, .refname = refname, .media_type = mt,
				   .bytes = bytes, .len = len, .pushed_at = pushed_at,
				   .immutable = immutable};
	struct mcb m = {c, registry, region, repo};
	rc = fs_image_build(&src, manifest_cb, &m, out);
	if (rc)
		goto out;
	apply_census(c, *out);
out:
	free(bytes);
	free(mt);
	return rc;
}
