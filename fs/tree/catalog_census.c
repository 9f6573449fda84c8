/* Manifests by digest (the cache's records, then BatchGetImage: ECR records
 * it as a pull, so only for an image being opened) and loaded images (see
 * catalog.h); the blob census is in catalog_nlink.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog_i.h"
#include "fs/tree/names.h"
#include "net/http.h"
#include "net/log.h"

/* ---- manifests ---- */

int cat_manifest_cached(struct fs_ctx *c, const char *digest, char **bytes, size_t *len,
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

void fs_cat_manifest_learn(struct fs_ctx *c, const char *digest, const char *media_type,
			   const char *bytes, size_t len)
{
	/* Only the record: its bytes are checked against digest there. */
	struct ecr_manifest m = {.digest = (char *)digest, .media_type = (char *)media_type,
				 .bytes = (char *)bytes, .len = len};
	meta_manifest_put(c, &m);
}

/* BatchGetImage for the digests not cached yet (one call per 100): the
 * child manifests of an index being opened. */
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
		if (cat_manifest_cached(c, digests[i], &b, &len, &mt) == 0) {
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
	int rc = cat_manifest_cached(c, digest, bytes, len, media_type);
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

/* An index's child manifests in one BatchGetImage rather than one each. */
static void prefetch_children(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo, const char *bytes, size_t len)
{
	struct collect cl = {0};
	fs_manifest_walk(bytes, len, NULL, NULL, collect_child, &cl);
	if (cl.n)
		prefetch_manifests(c, registry, region, repo, (const char *const *)cl.v, cl.n);
	for (size_t i = 0; i < cl.n; i++)
		free(cl.v[i]);
	free(cl.v);
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
	prefetch_children(c, registry, region, repo, bytes, len);
	struct fs_image_src src = {.registry = registry, .region = region, .repo = repo,
				   .digest = digest, .refname = refname, .media_type = mt,
				   .bytes = bytes, .len = len, .pushed_at = pushed_at,
				   .immutable = immutable};
	struct mcb m = {c, registry, region, repo};
	rc = fs_image_build(&src, manifest_cb, &m, out);
	if (rc)
		goto out;
	cat_census_learn(c, *out);
	/* The census at build time; attributes read the current one. */
	for (size_t i = 0; i < (*out)->nblobs; i++)
		(*out)->blobs[i].nlink = fs_cat_blob_nlink(c, *out, (*out)->blobs[i].digest, NULL);
out:
	free(bytes);
	free(mt);
	return rc;
}
