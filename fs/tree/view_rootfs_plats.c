/* The platforms and layers of an image for TAG@rootfs: one platform for a
 * manifest, one per named platform of an index (attestations and
 * artifacts left out), each a list of layers shared by digest. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/image.h"
#include "fs/tree/view_rootfs_i.h"
#include "net/oci.h"

static int add_layer(struct rfs_image *im, struct rfs_plat *pl, const struct oci_desc *d)
{
	size_t i;
	for (i = 0; i < im->nlayers && strcmp(im->layers[i].digest, d->digest); i++)
		;
	if (i == im->nlayers) {
		struct rfs_layer *nv = realloc(im->layers, (i + 1) * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		im->layers = nv;
		memset(&nv[i], 0, sizeof nv[i]);
		snprintf(nv[i].digest, sizeof nv[i].digest, "%s", d->digest);
		nv[i].size = (uint64_t)d->size;
		nv[i].copy_fd = -1;
		nv[i].zstd = d->media_type && strstr(d->media_type, "zstd");
		nv[i].plat = (size_t)(pl - im->plats);
		nv[i].pos = pl->n;
		if (d->media_type && !(nv[i].media_type = strdup(d->media_type)))
			return -ENOMEM;
		im->nlayers++;
	}
	size_t *nl = realloc(pl->lay, (pl->n + 1) * sizeof *nl);
	if (!nl)
		return -ENOMEM;
	pl->lay = nl;
	nl[pl->n++] = i;
	return 0;
}

struct walk_arg {
	struct rfs_image *im;
	struct rfs_plat *pl;
};

static int on_layer(void *arg, const struct oci_desc *d)
{
	struct walk_arg *w = arg;
	if (strncmp(d->digest, "sha256:", 7) || strlen(d->digest) != 71 || !d->size_valid)
		return -EIO;
	return add_layer(w->im, w->pl, d);
}

/* Keeps each new layer's descriptor annotations (TOC digests, positions)
 * for the index sources. */
static int layer_annotations(struct rfs_image *im, const struct rfs_plat *pl)
{
	json_t *root = json_loadb(pl->manifest, pl->manifest_len, 0, NULL);
	json_t *ls = json_object_get(root, "layers"), *d;
	size_t k;
	json_array_foreach(ls, k, d)
	{
		json_t *an = json_object_get(d, "annotations");
		const char *dg = json_string_value(json_object_get(d, "digest"));
		for (size_t i = 0; dg && json_is_object(an) && i < im->nlayers; i++) {
			struct rfs_layer *L = &im->layers[i];
			if (!L->annot && L->plat == (size_t)(pl - im->plats) && !strcmp(L->digest, dg))
				L->annot = json_incref(an);
		}
	}
	json_decref(root);
	return 0;
}

int rfs_config_is_artifact(const char *mt)
{
	return mt && strcmp(mt, "application/vnd.oci.image.config.v1+json") &&
	       strcmp(mt, "application/vnd.docker.container.image.v1+json");
}

/* An artifact manifest or index: an artifactType, or a config that is not
 * an image's (Helm's, the empty one of OCI 1.1 artifacts, cosign's). */
static int is_artifact(const struct fs_blob *b)
{
	json_t *root = json_loadb(b->data, b->size, 0, NULL);
	json_t *cfg = json_object_get(root, "config");
	int art = json_string_value(json_object_get(root, "artifactType")) != NULL ||
		  rfs_config_is_artifact(json_string_value(json_object_get(cfg, "mediaType")));
	json_decref(root);
	return art;
}

/* Appends a platform made from manifest digest of img; -ENOENT when it is
 * an artifact. */
static int add_plat(struct rfs_image *im, const struct fs_image *img, const char *digest,
		    const char *name)
{
	long bi = strlen(digest) == 71 ? fs_image_find_blob(img, digest + 7) : -1;
	if (bi < 0 || !img->blobs[bi].data)
		return -EIO;
	if (is_artifact(&img->blobs[bi]))
		return -ENOENT;
	struct rfs_plat *nv = realloc(im->plats, (im->nplats + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	im->plats = nv;
	struct rfs_plat *pl = &nv[im->nplats++];
	memset(pl, 0, sizeof *pl);
	snprintf(pl->name, sizeof pl->name, "%s", name);
	snprintf(pl->digest, sizeof pl->digest, "%s", digest);
	struct walk_arg w = {im, pl};
	if (!(pl->manifest = malloc(img->blobs[bi].size ? img->blobs[bi].size : 1)))
		return -ENOMEM;
	memcpy(pl->manifest, img->blobs[bi].data, img->blobs[bi].size);
	pl->manifest_len = img->blobs[bi].size;
	int rc = oci_walk(img->blobs[bi].data, img->blobs[bi].size,
			  OCI_BY_SHAPE | OCI_LIST_LAYERS, NULL, NULL, on_layer, &w);
	return rc ? rc : layer_annotations(im, pl);
}

/* "linux_arm_v7" from a descriptor's platform; "" when it has none or is
 * an attestation (unknown/unknown). */
static void plat_name(json_t *m, char *out, size_t size)
{
	json_t *p = json_object_get(m, "platform");
	const char *os = json_string_value(json_object_get(p, "os"));
	const char *arch = json_string_value(json_object_get(p, "architecture"));
	const char *var = json_string_value(json_object_get(p, "variant"));
	out[0] = 0;
	if (!os || !arch || !strcmp(os, "unknown") || !strcmp(arch, "unknown") || strchr(os, '/') ||
	    strchr(arch, '/') || (var && strchr(var, '/')))
		return;
	snprintf(out, size, "%s_%s%s%s", os, arch, var ? "_" : "", var ? var : "");
}

static int index_plats(struct rfs_image *im, const struct fs_image *img, const struct fs_blob *b)
{
	json_t *root = json_loadb(b->data, b->size, 0, NULL);
	json_t *ms = json_object_get(root, "manifests");
	size_t i;
	json_t *m;
	int rc = root ? 0 : -EIO;
	size_t artifacts = 0;
	json_array_foreach(ms, i, m)
	{
		char name[64];
		const char *dg = json_string_value(json_object_get(m, "digest"));
		plat_name(m, name, sizeof name);
		int dup = 0;
		for (size_t p = 0; p < im->nplats; p++)
			dup |= !strcmp(im->plats[p].name, name);
		if (!dg || !name[0] || dup)
			continue;
		if ((rc = add_plat(im, img, dg, name)) == -ENOENT) {
			artifacts++; /* a platform's artifact: left out */
			rc = 0;
		} else if (rc) {
			break;
		}
	}
	json_decref(root);
	return rc == 0 && im->nplats == 0 && artifacts ? -ENOENT : rc;
}

int rfs_image_parse(struct rfs_image *im, const struct fs_image *img)
{
	long bi = fs_image_find_blob(img, img->digest + 7);
	if (bi < 0 || !img->blobs[bi].data)
		return -EIO;
	im->is_index = img->blobs[bi].kind == FS_BLOB_INDEX;
	if (im->is_index && is_artifact(&img->blobs[bi]))
		return -ENOENT;
	return im->is_index ? index_plats(im, img, &img->blobs[bi])
			    : add_plat(im, img, img->digest, "");
}
