/* SOCI indexes as sources of layer indexes for TAG@rootfs (doc/ROOTFS.md,
 * "Index sources"). Per platform manifest: SOCI v2 (the manifest's
 * com.amazon.soci.index-digest annotation names the SOCI index manifest),
 * then SOCI v1 (ListImageReferrers of the manifest filtered by the v1
 * artifact type, once per image; its subject must be the manifest). A SOCI
 * index lists one zTOC per image layer (annotation com.amazon.soci.image-
 * layer-digest); the layer's zTOC is read whole, checked against its digest
 * and turned into the layer's index by rootfs_index_from_ztoc. v2 is chained
 * to the image digest (manifest -> annotation -> SOCI index -> zTOC -> span
 * digests); v1 is not (whoever may push to the repository can add a
 * referrer), so -o verify=strict skips it. Both are entries of
 * rfs_index_sources[] (view_rootfs_sources.c). */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/mount.h"
#include "fs/tree/catalog.h"
#include "fs/tree/image.h"
#include "fs/tree/view_rootfs_soci.h"
#include "net/ecr.h"
#include "net/log.h"

#define SOCI_V1_TYPE "application/vnd.amazon.soci.index.v1+json"
#define SOCI_V2_TYPE "application/vnd.amazon.soci.index.v2+json"
#define SOCI_INDEX_ANN "com.amazon.soci.index-digest"
#define SOCI_LAYER_ANN "com.amazon.soci.image-layer-digest"
#define ZTOC_MAX (64u << 20)
#define V1_MEMO 64     /* images whose v1 lookup is remembered */
#define V1_MEMO_TTL 60 /* seconds */

static int is_digest(const char *d)
{
	return d && strlen(d) == 71 && !strncmp(d, "sha256:", 7) &&
	       strspn(d + 7, "0123456789abcdef") == 64;
}

/* Manifest digest of the repository, checked against its digest. */
static int get_manifest(const struct rfs_src_ctx *ctx, const char *digest, json_t **out)
{
	char *bytes = NULL, *mt = NULL, got[72];
	size_t len = 0;
	int rc = fs_cat_manifest(ctx->c, ctx->registry, ctx->region, ctx->repo, digest, &bytes,
				 &len, &mt);
	free(mt);
	if (rc)
		return rc;
	fs_sha256_digest(bytes, len, got);
	*out = strcmp(got, digest) ? NULL : json_loadb(bytes, len, 0, NULL);
	free(bytes);
	return *out ? 0 : -EIO;
}

static const char *ann(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "annotations"), key));
}

/* The type of a SOCI index manifest (artifactType, else config mediaType). */
static const char *soci_type(json_t *m)
{
	const char *t = json_string_value(json_object_get(m, "artifactType"));
	return t ? t
		 : json_string_value(json_object_get(json_object_get(m, "config"), "mediaType"));
}

/* The layer's index from the zTOC that SOCI index idx lists for it. */
static int from_index(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer, json_t *idx,
		      struct rootfs_index **out)
{
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(idx, "layers"), i, l)
	{
		const char *dg = json_string_value(json_object_get(l, "digest"));
		const char *for_layer = ann(l, SOCI_LAYER_ANN);
		json_int_t size = json_integer_value(json_object_get(l, "size"));
		if (!for_layer || strcmp(for_layer, layer->digest))
			continue;
		if (!is_digest(dg) || size <= 0 || size > ZTOC_MAX)
			return -EBADMSG;
		void *buf = NULL;
		int rc = ctx->read_blob(ctx, dg, (uint64_t)size, &buf);
		if (rc == 0)
			rc = rootfs_index_from_ztoc(layer->digest, layer->size, buf, (size_t)size,
						    out);
		free(buf);
		return rc;
	}
	return -ENOENT;
}

int rfs_src_soci_v2(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index)
{
	json_t *man = json_loadb(ctx->manifest, ctx->manifest_len, 0, NULL), *idx = NULL;
	const char *dg = ann(man, SOCI_INDEX_ANN);
	int rc = -ENOENT;
	if (dg && (!is_digest(dg) || (rc = get_manifest(ctx, dg, &idx)) != 0))
		rc = rc ? rc : -EBADMSG;
	else if (dg && (!soci_type(idx) || strcmp(soci_type(idx), SOCI_V2_TYPE)))
		rc = -EBADMSG; /* the annotation names something else */
	else if (dg)
		rc = from_index(ctx, layer, idx, index);
	json_decref(idx);
	json_decref(man);
	return rc;
}

/* ---- v1: a referrer of the manifest, looked up once per image ---- */

struct v1_memo {
	char key[600];
	char index[72]; /* "" when the image has none */
	time_t at;
};

/* memo_mu protects memo and is held over the lookup itself, so that the
 * layers of one image ask ECR once (lookups of other images wait). */
static pthread_mutex_t memo_mu = PTHREAD_MUTEX_INITIALIZER;
static struct v1_memo memo[V1_MEMO];

/* The digest of a v1 SOCI index whose subject is the manifest ("" none). */
static int v1_lookup(const struct rfs_src_ctx *ctx, char out[72])
{
	struct ecr_referrer_list l = {0};
	struct ecr_where w = {ctx->registry, ctx->region, ctx->repo};
	const char *types[] = {SOCI_V1_TYPE};
	out[0] = 0;
	int rc = ecr_list_image_referrers(fs_ecr_for(ctx->c, ctx->registry), &w, ctx->image_digest,
					  types, 1, 0, &l, NULL);
	for (size_t i = 0; rc == 0 && !out[0] && i < l.n; i++) {
		json_t *idx = NULL;
		if (!is_digest(l.v[i].digest) || get_manifest(ctx, l.v[i].digest, &idx) != 0)
			continue;
		const char *subj =
		    json_string_value(json_object_get(json_object_get(idx, "subject"), "digest"));
		const char *t = soci_type(idx);
		if (subj && !strcmp(subj, ctx->image_digest) && t && !strcmp(t, SOCI_V1_TYPE))
			snprintf(out, 72, "%s", l.v[i].digest);
		json_decref(idx);
	}
	ecr_referrer_list_free(&l);
	return rc;
}

static int v1_index(const struct rfs_src_ctx *ctx, char out[72])
{
	char key[600];
	time_t now = time(NULL);
	struct v1_memo *slot = &memo[0];
	int rc = 0;
	snprintf(key, sizeof key, "%s/%s/%s@%s", ctx->registry, ctx->region, ctx->repo,
		 ctx->image_digest);
	pthread_mutex_lock(&memo_mu);
	for (size_t i = 0; i < V1_MEMO; i++) {
		if (memo[i].at && !strcmp(memo[i].key, key) && now - memo[i].at < V1_MEMO_TTL) {
			snprintf(out, 72, "%s", memo[i].index);
			goto out;
		}
		if (memo[i].at < slot->at)
			slot = &memo[i];
	}
	if ((rc = v1_lookup(ctx, out)) == 0) {
		snprintf(slot->key, sizeof slot->key, "%s", key);
		snprintf(slot->index, sizeof slot->index, "%s", out);
		slot->at = now;
	}
out:
	pthread_mutex_unlock(&memo_mu);
	return rc;
}

int rfs_src_soci_v1(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index)
{
	char dg[72];
	json_t *idx = NULL;
	/* A referrer is not chained to the image digest: strict never asks. */
	if (ctx->strict)
		return -ENOENT;
	int rc = v1_index(ctx, dg);
	if (rc || !dg[0])
		return -ENOENT; /* no referrers answer: the local build */
	if ((rc = get_manifest(ctx, dg, &idx)) == 0)
		rc = from_index(ctx, layer, idx, index);
	json_decref(idx);
	return rc;
}
