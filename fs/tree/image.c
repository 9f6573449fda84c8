/* OCI layout synthesis from exact manifest bytes (see image.h). */
#include "fs/tree/image.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/names.h"
#include "fs/tree/node.h"
#include "net/digest.h"
#include "net/log.h"
#include "net/oci.h"

void fs_sha256_digest(const void *data, size_t len, char out[72])
{
	net_sha256_digest(data, len, out);
}

struct walk {
	fs_desc_cb fn;
	void *arg;
	int rc; /* fn's, to tell it from the walker's own -EINVAL */
};

static int walk_desc(void *arg, const struct oci_desc *d)
{
	struct walk *w = arg;
	enum fs_blob_kind kind = d->list == OCI_LIST_CONFIG   ? FS_BLOB_CONFIG
				 : d->list == OCI_LIST_LAYERS ? FS_BLOB_LAYER
							      : FS_BLOB_MANIFEST;

	if (!d->size_valid)
		return -EIO;
	if (!fs_name_is_digest(d->digest)) {
		log_warn("manifest references %s: only sha256 blobs are shown", d->digest);
		return 0;
	}
	if (kind == FS_BLOB_MANIFEST && d->kind == OCI_INDEX)
		kind = FS_BLOB_INDEX;
	w->rc = w->fn(w->arg, kind, d->digest, (uint64_t)d->size, d->media_type);
	return w->rc;
}

int fs_manifest_walk(const char *bytes, size_t len, int *is_index, char **media_type_out,
		     fs_desc_cb fn, void *arg)
{
	struct walk w = { fn, arg, 0 };
	enum oci_kind kind;
	/* Bytes ECR gave as a manifest: told by shape; schema 1 has no config
	 * and is not supported. */
	unsigned flags = OCI_BY_SHAPE | OCI_IMAGE_ONLY | OCI_LIST_CONFIG | OCI_LIST_LAYERS |
			 OCI_LIST_MANIFESTS;
	int rc = oci_walk(bytes, len, flags, &kind, media_type_out, fn ? walk_desc : NULL, &w);

	if (rc && rc != w.rc && rc != -ENOMEM)
		rc = -EIO; /* not a manifest or index, or malformed descriptors */
	if (rc == 0 && is_index)
		*is_index = kind == OCI_INDEX;
	return rc;
}

struct build {
	struct fs_image *img;
	size_t cap;
	fs_manifest_cb cb;
	void *arg;
	int depth;
};

static struct fs_blob *add_blob(struct build *b, enum fs_blob_kind kind, const char *digest,
				uint64_t size, const char *media_type)
{
	struct fs_image *img = b->img;
	for (size_t i = 0; i < img->nblobs; i++)
		if (!strcmp(img->blobs[i].digest, digest))
			return &img->blobs[i]; /* same blob twice (shared config, ...) */
	if (img->nblobs == b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 16;
		struct fs_blob *nv = realloc(img->blobs, nc * sizeof *nv);
		if (!nv)
			return NULL;
		img->blobs = nv;
		b->cap = nc;
	}
	struct fs_blob *bl = &img->blobs[img->nblobs];
	memset(bl, 0, sizeof *bl);
	snprintf(bl->digest, sizeof bl->digest, "%s", digest);
	bl->size = size;
	bl->kind = kind;
	bl->nlink = 1;
	if (media_type && !(bl->media_type = strdup(media_type)))
		return NULL;
	const char *parts[4] = {img->registry, img->region, img->repo, digest};
	bl->st_ino = fs_hash64(parts, 4) | (1ULL << 63);
	img->nblobs++;
	return bl;
}

static int add_manifest(struct build *b, enum fs_blob_kind kind, const char *digest,
			const char *bytes, size_t len, const char *media_type);

static int on_desc(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
		   const char *media_type)
{
	struct build *b = arg;
	if (kind == FS_BLOB_CONFIG || kind == FS_BLOB_LAYER)
		return add_blob(b, kind, digest, size, media_type) ? 0 : -ENOMEM;
	/* A child manifest or index of an index: fetch and walk it too. */
	for (size_t i = 0; i < b->img->nblobs; i++)
		if (!strcmp(b->img->blobs[i].digest, digest))
			return 0;
	if (b->depth >= 4) {
		log_warn("image index nested deeper than 4 levels at %s", digest);
		return -EIO;
	}
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	int rc = b->cb ? b->cb(b->arg, digest, &bytes, &len, &mt) : -ENOENT;
	if (rc == 0) {
		if (len != size) {
			log_err("manifest %s: %zu bytes, descriptor says %llu", digest, len,
				(unsigned long long)size);
			rc = -EIO;
		} else {
			b->depth++;
			rc = add_manifest(b, kind, digest, bytes, len, mt ? mt : media_type);
			b->depth--;
		}
	}
	free(bytes);
	free(mt);
	return rc;
}

static int add_manifest(struct build *b, enum fs_blob_kind kind, const char *digest,
			const char *bytes, size_t len, const char *media_type)
{
	char actual[72];
	fs_sha256_digest(bytes, len, actual);
	if (strcmp(actual, digest) != 0) {
		log_err("manifest %s: bytes hash to %s", digest, actual);
		return -EIO;
	}
	int is_index = 0;
	char *mt = NULL;
	int rc = fs_manifest_walk(bytes, len, &is_index, &mt, NULL, NULL);
	if (rc)
		return rc;
	struct fs_blob *bl = add_blob(b, is_index ? FS_BLOB_INDEX : FS_BLOB_MANIFEST, digest, len,
				      media_type ? media_type : mt);
	free(mt);
	if (!bl)
		return -ENOMEM;
	(void)kind;
	bl->data = malloc(len + 1);
	if (!bl->data)
		return -ENOMEM;
	memcpy(bl->data, bytes, len);
	bl->data[len] = 0;
	return fs_manifest_walk(bytes, len, NULL, NULL, on_desc, b);
}

static int blob_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fs_blob *)a)->digest, ((const struct fs_blob *)b)->digest);
}

static int make_index_json(struct fs_image *img)
{
	int rc = -ENOMEM;
	json_t *root = json_object();
	json_t *arr = json_array();
	json_t *desc = json_object();
	json_t *ann = json_object();
	if (!root || !arr || !desc || !ann)
		goto out;
	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType", json_string(OCI_MT_INDEX));
	json_object_set_new(desc, "mediaType", json_string(img->media_type));
	json_object_set_new(desc, "digest", json_string(img->digest));
	json_object_set_new(desc, "size", json_integer((json_int_t)img->top_len));
	json_object_set_new(ann, "org.opencontainers.image.ref.name", json_string(img->refname));
	json_object_set_new(desc, "annotations", ann);
	ann = NULL;
	json_array_append_new(arr, desc);
	desc = NULL;
	json_object_set_new(root, "manifests", arr);
	arr = NULL;
	img->index_json = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!img->index_json)
		goto out;
	img->index_len = strlen(img->index_json);
	rc = 0;
out:
	json_decref(ann);
	json_decref(desc);
	json_decref(arr);
	json_decref(root);
	return rc;
}

int fs_image_build(const struct fs_image_src *src, fs_manifest_cb cb, void *arg,
		   struct fs_image **out)
{
	int rc = -ENOMEM;
	struct build b = {.cb = cb, .arg = arg};
	struct fs_image *img = calloc(1, sizeof *img);
	*out = NULL;
	if (!img)
		goto out;
	img->refs = 1;
	b.img = img;
	if (!(img->registry = strdup(src->registry)) || !(img->region = strdup(src->region)) ||
	    !(img->repo = strdup(src->repo)) || !(img->digest = strdup(src->digest)) ||
	    !(img->refname = strdup(src->refname)))
		goto out;
	if (src->scan_status && !(img->scan_status = strdup(src->scan_status)))
		goto out;
	img->pushed_at = src->pushed_at;
	img->immutable = src->immutable;
	img->top_len = src->len;
	rc = add_manifest(&b, FS_BLOB_MANIFEST, src->digest, src->bytes, src->len, src->media_type);
	if (rc)
		goto out;
	/* The top manifest is the first blob added. */
	img->media_type = strdup(img->blobs[0].media_type ? img->blobs[0].media_type
							  : OCI_MT_MANIFEST);
	if (!img->media_type) {
		rc = -ENOMEM;
		goto out;
	}
	qsort(img->blobs, img->nblobs, sizeof *img->blobs, blob_cmp);
	for (size_t i = 0; i < img->nblobs; i++)
		img->blobs[i].hex = img->blobs[i].digest + 7;
	rc = make_index_json(img);
out:
	if (rc && img) {
		fs_image_put(img);
		img = NULL;
	}
	*out = img;
	return rc;
}

void fs_image_ref(struct fs_image *img)
{
	__atomic_add_fetch(&img->refs, 1, __ATOMIC_RELAXED);
}

void fs_image_put(struct fs_image *img)
{
	if (!img || __atomic_sub_fetch(&img->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < img->nblobs; i++) {
		free(img->blobs[i].media_type);
		free(img->blobs[i].data);
	}
	free(img->blobs);
	free(img->registry);
	free(img->region);
	free(img->repo);
	free(img->digest);
	free(img->refname);
	free(img->media_type);
	free(img->scan_status);
	free(img->index_json);
	free(img);
}

long fs_image_find_blob(const struct fs_image *img, const char *hex)
{
	size_t lo = 0, hi = img->nblobs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(img->blobs[mid].hex, hex);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}
