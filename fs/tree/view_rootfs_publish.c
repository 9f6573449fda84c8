/* ecrfs's own layer indexes shared through the registry (doc/ROOTFS.md,
 * "Published indexes"). Producer (-o rootfs_publish): once an image's
 * TAG@rootfs is ready and some of its layers were built here, each platform
 * manifest without an ecrfs referrer gets one: the index files of its
 * layers (cache_dir/index/<hex>, as rootfs_index_save wrote them) uploaded
 * as blobs, and an untagged OCI manifest with artifactType RFS_PUB_TYPE and
 * subject = the manifest, so another mount finds it with
 * ListImageReferrers. Never a SOCI artifact type (that would turn other
 * tools' lazy loading on). Consumer (the "published" index source): the
 * referrer of the manifest, its blob for the layer read whole and checked
 * against its digest, then as an index file (trailing sha256, every bound,
 * the layer digest it names, the layer's size). It is not saved to
 * cache_dir/index: a later mount with -o verify=strict on the same cache
 * would take it for one built here, and a referrer is not chained to the
 * image digest, so -o verify=strict never looks. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs/mount.h"
#include "fs/tree/catalog.h"
#include "fs/tree/image.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/view_rootfs_publish.h"
#include "net/ecr.h"
#include "net/log.h"

#define RFS_PUB_TYPE "application/vnd.ecrfs.rootfs.index.v1"
#define RFS_PUB_LAYER_MT "application/vnd.ecrfs.rootfs.index.v1.layer"
#define RFS_PUB_LAYER_ANN "dev.ecrfs.rootfs.layer-digest"
#define EMPTY_MT "application/vnd.oci.empty.v1+json"
#define OCI_MANIFEST_MT "application/vnd.oci.image.manifest.v1+json"
#define INDEX_BLOB_MAX (64u << 20)
#define PART_MAX (10u << 20)
#define MEMO 64
#define MEMO_TTL 60

static int is_digest(const char *d)
{
	return d && strlen(d) == 71 && !strncmp(d, "sha256:", 7) &&
	       strspn(d + 7, "0123456789abcdef") == 64;
}

/* The digest of the newest ecrfs referrer of manifest (in repo), "" none. */
static int find_referrer(struct fs_ctx *c, const struct ecr_where *w, const char *manifest,
			 char out[72])
{
	struct ecr_referrer_list l = {0};
	const char *types[] = {RFS_PUB_TYPE};
	out[0] = 0;
	int rc = ecr_list_image_referrers(fs_ecr_for(c, w->registry_id), w, manifest, types, 1, 0,
					  &l, NULL);
	for (size_t i = 0; rc == 0 && i < l.n && !out[0]; i++)
		if (is_digest(l.v[i].digest) && l.v[i].artifact_type &&
		    !strcmp(l.v[i].artifact_type, RFS_PUB_TYPE))
			snprintf(out, 72, "%s", l.v[i].digest);
	ecr_referrer_list_free(&l);
	return rc;
}

/* ---- producer ---- */

/* One blob into the repository unless it is there already. */
static int upload(ecr *e, const struct ecr_where *w, const void *data, size_t len,
		  const char *digest)
{
	const char *one[] = {digest};
	int have = 0;
	char *id = NULL;
	int64_t part = 0, last = -1;
	int rc = ecr_batch_check_layers(e, w, one, 1, &have, NULL);
	if (rc || have)
		return rc;
	if ((rc = ecr_initiate_layer_upload(e, w, &id, &part, NULL)) != 0)
		return rc;
	size_t psz = part >= (5 << 20) && part <= PART_MAX ? (size_t)part : PART_MAX;
	for (size_t off = 0; rc == 0 && off < len;) {
		size_t n = len - off < psz ? len - off : psz;
		rc = ecr_upload_layer_part(e, w, id, off, (const char *)data + off, n, &last, NULL);
		if (rc == -ERANGE && last >= (int64_t)off - 1 && (size_t)(last + 1) < off + n) {
			off = (size_t)(last + 1); /* resume after what ECR kept */
			rc = 0;
			continue;
		}
		off += n;
	}
	if (rc == 0)
		rc = ecr_complete_layer_upload(e, w, id, digest, NULL);
	free(id);
	return rc;
}

/* Reads cache_dir/index/<hex of layer> (malloc'd). */
static int read_index_file(struct fs_ctx *c, const char *layer, char **buf, size_t *len)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/index/%s", c->o.cache_dir, layer + 7);
	FILE *f = fopen(path, "rb");
	int rc = -ENOENT;
	*buf = NULL;
	if (f && fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size <= INDEX_BLOB_MAX &&
	    (*buf = malloc((size_t)st.st_size)) &&
	    fread(*buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size) {
		*len = (size_t)st.st_size;
		rc = 0;
	}
	if (f)
		fclose(f);
	if (rc) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

/* Uploads the index file of layer L and appends its descriptor to layers. */
static int publish_layer(struct rfs_image *im, const struct ecr_where *w, const struct rfs_layer *L,
			 json_t *layers)
{
	char *buf = NULL, dg[72];
	size_t len = 0;
	struct rootfs_index *ix = NULL;
	/* Only indexes over the blob itself: a zstd layer's is over a copy. */
	if (L->zstd || read_index_file(im->c, L->digest, &buf, &len) != 0)
		return 0;
	int rc = rootfs_index_from_bytes(L->digest, buf, len, &ix);
	if (rc == 0 && rootfs_index_comp(ix) != ROOTFS_COMP_ZSTD) {
		fs_sha256_digest(buf, len, dg);
		rc = upload(fs_ecr_for(im->c, im->registry), w, buf, len, dg);
		json_t *d = json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", RFS_PUB_LAYER_MT,
				      "digest", dg, "size", (json_int_t)len, "annotations",
				      RFS_PUB_LAYER_ANN, L->digest);
		if (rc == 0)
			json_array_append_new(layers, d);
		else
			json_decref(d);
	}
	rootfs_index_free(ix);
	free(buf);
	return rc == -EBADMSG ? 0 : rc;
}

/* The referrer of platform p, unless one is there. */
static int publish_plat(struct rfs_image *im, size_t p)
{
	const struct rfs_plat *pl = &im->plats[p];
	struct ecr_where w = {im->registry, im->region, im->repo};
	ecr *e = fs_ecr_for(im->c, im->registry);
	char have[72], cfg[72];
	int rc = find_referrer(im->c, &w, pl->digest, have);
	if (rc || have[0])
		return rc;
	json_t *layers = json_array();
	for (size_t k = 0; rc == 0 && k < pl->n; k++)
		rc = publish_layer(im, &w, &im->layers[pl->lay[k]], layers);
	fs_sha256_digest("{}", 2, cfg);
	if (rc == 0 && json_array_size(layers))
		rc = upload(e, &w, "{}", 2, cfg);
	if (rc || !json_array_size(layers)) {
		json_decref(layers);
		return rc;
	}
	json_t *man = json_loadb(pl->manifest, pl->manifest_len, 0, NULL);
	const char *smt = json_string_value(json_object_get(man, "mediaType"));
	json_t *m =
	    json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:i}, s:o, s:{s:s, s:s, s:I}}", "schemaVersion",
		      2, "mediaType", OCI_MANIFEST_MT, "artifactType", RFS_PUB_TYPE, "config",
		      "mediaType", EMPTY_MT, "digest", cfg, "size", 2, "layers", layers, "subject",
		      "mediaType", smt ? smt : OCI_MANIFEST_MT, "digest", pl->digest, "size",
		      (json_int_t)pl->manifest_len);
	char *bytes = m ? json_dumps(m, JSON_COMPACT) : NULL;
	rc = bytes ? ecr_put_image(e, &w, NULL, bytes, strlen(bytes), OCI_MANIFEST_MT, NULL, NULL,
				   NULL)
		   : -ENOMEM;
	if (rc == 0)
		log_info("rootfs: published the indexes of %s in %s (%zu layers)", pl->digest,
			 im->repo, json_array_size(layers));
	free(bytes);
	json_decref(m);
	json_decref(man);
	return rc;
}

void rfs_publish(struct rfs_image *im)
{
	int built = 0;
	if (!im->c->o.rootfs_publish || im->c->ro)
		return;
	pthread_mutex_lock(&im->mu); /* a fallback may set a layer's source */
	for (size_t i = 0; i < im->nlayers; i++)
		built |= im->layers[i].source && !strcmp(im->layers[i].source, RFS_SRC_BUILT);
	pthread_mutex_unlock(&im->mu);
	if (!built)
		return;
	for (size_t p = 0; p < im->nplats; p++) {
		int rc = publish_plat(im, p);
		if (rc)
			log_warn("rootfs: indexes of %s not published in %s: %s (needs "
				 "ecr:InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload, "
				 "BatchCheckLayerAvailability, PutImage)",
				 im->plats[p].digest, im->repo, strerror(-rc));
	}
}

/* ---- consumer ---- */

struct memo_ent {
	char key[600];
	char ref[72]; /* "" none */
	time_t at;
};

/* memo_mu protects memo; held over the lookup so that the layers of one
 * image ask ECR once. */
static pthread_mutex_t memo_mu = PTHREAD_MUTEX_INITIALIZER;
static struct memo_ent memo[MEMO];

static int referrer_of(const struct rfs_src_ctx *ctx, char out[72])
{
	char key[600];
	struct ecr_where w = {ctx->registry, ctx->region, ctx->repo};
	time_t now = time(NULL);
	struct memo_ent *slot = &memo[0];
	int rc = 0;
	snprintf(key, sizeof key, "%s/%s/%s@%s", ctx->registry, ctx->region, ctx->repo,
		 ctx->image_digest);
	pthread_mutex_lock(&memo_mu);
	for (size_t i = 0; i < MEMO; i++) {
		if (memo[i].at && !strcmp(memo[i].key, key) && now - memo[i].at < MEMO_TTL) {
			snprintf(out, 72, "%s", memo[i].ref);
			goto out;
		}
		if (memo[i].at < slot->at)
			slot = &memo[i];
	}
	if ((rc = find_referrer(ctx->c, &w, ctx->image_digest, out)) == 0) {
		snprintf(slot->key, sizeof slot->key, "%s", key);
		snprintf(slot->ref, sizeof slot->ref, "%s", out);
		slot->at = now;
	}
out:
	pthread_mutex_unlock(&memo_mu);
	return rc;
}

/* The descriptor of layer's index blob in referrer manifest m, or NULL. */
static json_t *layer_desc(json_t *m, const char *ctx_digest, const char *layer)
{
	size_t i;
	json_t *l;
	const char *subj =
	    json_string_value(json_object_get(json_object_get(m, "subject"), "digest"));
	const char *t = json_string_value(json_object_get(m, "artifactType"));
	if (!subj || strcmp(subj, ctx_digest) || !t || strcmp(t, RFS_PUB_TYPE))
		return NULL;
	json_array_foreach(json_object_get(m, "layers"), i, l)
	{
		const char *for_layer = json_string_value(
		    json_object_get(json_object_get(l, "annotations"), RFS_PUB_LAYER_ANN));
		if (for_layer && !strcmp(for_layer, layer))
			return l;
	}
	return NULL;
}

int rfs_src_published(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		      struct rootfs_index **index)
{
	char ref[72], *bytes = NULL, *mt = NULL;
	size_t len = 0;
	void *buf = NULL;
	json_t *m = NULL;
	if (ctx->strict || referrer_of(ctx, ref) != 0 || !ref[0])
		return -ENOENT;
	int rc =
	    fs_cat_manifest(ctx->c, ctx->registry, ctx->region, ctx->repo, ref, &bytes, &len, &mt);
	char got[72];
	if (rc == 0) {
		fs_sha256_digest(bytes, len, got);
		m = strcmp(got, ref) ? NULL : json_loadb(bytes, len, 0, NULL);
	}
	json_t *d = m ? layer_desc(m, ctx->image_digest, layer->digest) : NULL;
	const char *dg = json_string_value(json_object_get(d, "digest"));
	json_int_t size = json_integer_value(json_object_get(d, "size"));
	if (rc == 0)
		rc = !m ? -EBADMSG : !d ? -ENOENT : !is_digest(dg) || size <= 0 ? -EBADMSG : 0;
	if (rc == 0)
		rc = ctx->read_blob(ctx, dg, (uint64_t)size, &buf);
	if (rc == 0)
		rc = rootfs_index_from_bytes(layer->digest, buf, (size_t)size, index);
	if (rc == 0 && (rootfs_index_blob_size(*index) != layer->size ||
			rootfs_index_comp(*index) == ROOTFS_COMP_ZSTD)) {
		rootfs_index_free(*index);
		*index = NULL;
		rc = -EBADMSG;
	}
	free(buf);
	free(bytes);
	free(mt);
	json_decref(m);
	return rc;
}
