/* SOCI indexes as a source of layer indexes for TAG@rootfs (doc/ROOTFS.md,
 * "Index sources"). Once per image: per platform manifest, SOCI v2 (the
 * manifest's com.amazon.soci.index-digest annotation names the SOCI index
 * manifest) else SOCI v1 (ListImageReferrers of the manifest filtered by
 * the v1 artifact type; its subject must be the manifest). Each SOCI index
 * lists one zTOC per image layer (annotation com.amazon.soci.image-layer-
 * digest). A layer's zTOC is read whole, checked against its digest, and
 * turned into the layer's index by rootfs_index_from_ztoc. v2 is chained to
 * the image digest (manifest -> annotation -> SOCI index -> zTOC -> span
 * digests); v1 is not (any referrer pusher), so -o verify=strict refuses it. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/tree/catalog.h"
#include "fs/tree/image.h"
#include "fs/tree/view_rootfs_i.h"
#include "net/ecr.h"
#include "net/log.h"

#define SOCI_V1_TYPE "application/vnd.amazon.soci.index.v1+json"
#define SOCI_V2_TYPE "application/vnd.amazon.soci.index.v2+json"
#define SOCI_INDEX_ANN "com.amazon.soci.index-digest"
#define SOCI_LAYER_ANN "com.amazon.soci.image-layer-digest"
#define ZTOC_MAX (256u << 20)

static int is_digest(const char *d)
{
	return d && strlen(d) == 71 && !strncmp(d, "sha256:", 7) &&
	       strspn(d + 7, "0123456789abcdef") == 64;
}

/* The manifest bytes of digest, checked against it (malloc'd). */
static int get_manifest(struct rfs_image *im, const char *digest, json_t **out)
{
	char *bytes = NULL, *mt = NULL, got[72];
	size_t len = 0;
	int rc = fs_cat_manifest(im->c, im->registry, im->region, im->repo, digest, &bytes, &len,
				 &mt);
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

/* Records the zTOC of every layer of im that the SOCI index idx lists. */
static void map_ztocs(struct rfs_image *im, json_t *idx, int ver)
{
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(idx, "layers"), i, l)
	{
		const char *dg = json_string_value(json_object_get(l, "digest"));
		const char *for_layer = ann(l, SOCI_LAYER_ANN);
		json_int_t size = json_integer_value(json_object_get(l, "size"));
		if (!is_digest(dg) || !for_layer || size <= 0 || size > ZTOC_MAX)
			continue;
		for (size_t k = 0; k < im->nlayers; k++) {
			struct rfs_layer *L = &im->layers[k];
			if (strcmp(L->digest, for_layer) || L->ztoc[0])
				continue;
			snprintf(L->ztoc, sizeof L->ztoc, "%s", dg);
			L->ztoc_size = (uint64_t)size;
			L->ztoc_ver = ver;
		}
	}
}

/* The type of a SOCI index manifest (artifactType, else config mediaType). */
static const char *soci_type(json_t *m)
{
	const char *t = json_string_value(json_object_get(m, "artifactType"));
	return t ? t : json_string_value(json_object_get(json_object_get(m, "config"), "mediaType"));
}

static void find_v2(struct rfs_image *im, json_t *man)
{
	const char *dg = ann(man, SOCI_INDEX_ANN);
	json_t *idx = NULL;
	if (!is_digest(dg) || get_manifest(im, dg, &idx) != 0)
		return;
	const char *t = soci_type(idx);
	if (t && !strcmp(t, SOCI_V2_TYPE))
		map_ztocs(im, idx, 2);
	else
		log_warn("rootfs: %s names %s as its SOCI index, which is not one", im->digest, dg);
	json_decref(idx);
}

static void find_v1(struct rfs_image *im, const char *man_digest)
{
	struct ecr_referrer_list l = {0};
	struct ecr_where w = {im->registry, im->region, im->repo};
	const char *types[] = {SOCI_V1_TYPE};
	if (ecr_list_image_referrers(fs_ecr_for(im->c, im->registry), &w, man_digest, types, 1, 0,
				     &l, NULL) != 0)
		return;
	for (size_t i = 0; i < l.n; i++) {
		json_t *idx = NULL;
		if (!is_digest(l.v[i].digest) || get_manifest(im, l.v[i].digest, &idx) != 0)
			continue;
		const char *subj = json_string_value(
		    json_object_get(json_object_get(idx, "subject"), "digest"));
		const char *t = soci_type(idx);
		if (subj && !strcmp(subj, man_digest) && t && !strcmp(t, SOCI_V1_TYPE))
			map_ztocs(im, idx, 1);
		json_decref(idx);
	}
	ecr_referrer_list_free(&l);
}

/* Once per image: which layers have a zTOC. */
static void find_soci(struct rfs_image *im)
{
	pthread_mutex_lock(&im->soci_mu);
	for (size_t p = 0; !im->soci_done && p < im->nplats; p++) {
		json_t *man = NULL;
		if (get_manifest(im, im->plats[p].digest, &man) != 0)
			continue;
		find_v2(im, man);
		json_decref(man);
		int missing = 0;
		for (size_t k = 0; k < im->plats[p].n; k++)
			missing |= !im->layers[im->plats[p].lay[k]].ztoc[0];
		if (missing && !im->c->verify_strict)
			find_v1(im, im->plats[p].digest);
	}
	im->soci_done = 1;
	pthread_mutex_unlock(&im->soci_mu);
}

/* Reads blob digest (size bytes) whole and checks its sha256. */
int rfs_blob_whole(struct rfs_image *im, const char *digest, uint64_t size, char **out)
{
	struct fs_blob_ref ref = {im->registry, im->region, im->repo,
				  digest,	size,	    fs_ecr_for(im->c, im->registry)};
	struct fs_rstate *rs = NULL;
	char *buf = malloc(size ? size : 1), got[72];
	volatile int never = 0;
	int rc = buf ? fs_blob_open(im->c->blobs, &ref, 0, &rs) : -ENOMEM;
	for (uint64_t off = 0; rc == 0 && off < size;) {
		char *b = NULL;
		int fd = -1;
		ssize_t n = fs_blob_read(rs, &b, size - off, off, &never, &fd);
		if (n > 0 && fd >= 0 && pread(fd, buf + off, (size_t)n, (off_t)off) != n)
			n = -EIO;
		else if (n > 0 && fd < 0)
			memcpy(buf + off, b, (size_t)n);
		if (fd >= 0)
			close(fd);
		free(b);
		rc = n > 0 ? 0 : n ? (int)n : -EIO;
		off += n > 0 ? (uint64_t)n : 0;
	}
	fs_blob_close(rs);
	if (rc == 0) {
		fs_sha256_digest(buf, size, got);
		rc = strcmp(got, digest) ? -EIO : 0;
	}
	if (rc)
		free(buf);
	else
		*out = buf;
	return rc;
}

int rfs_soci_try(struct rfs_image *im, struct rfs_layer *L)
{
	char *buf = NULL;
	struct rootfs_index *ix = NULL;
	if (L->zstd)
		return -ENOENT;
	find_soci(im);
	if (!L->ztoc[0] || (L->ztoc_ver == 1 && im->c->verify_strict))
		return -ENOENT;
	int rc = rfs_blob_whole(im, L->ztoc, L->ztoc_size, &buf);
	if (rc == 0)
		rc = rootfs_index_from_ztoc(L->digest, L->size, buf, L->ztoc_size, &ix);
	free(buf);
	if (rc) {
		log_warn("rootfs: SOCI v%d zTOC %s of layer %s not used (%s): built locally",
			 L->ztoc_ver, L->ztoc, L->digest, strerror(-rc));
		L->refused = 1;
		return rc;
	}
	L->ix = ix;
	L->source = L->foreign = L->ztoc_ver == 2 ? "soci v2" : "soci v1";
	return 0;
}
