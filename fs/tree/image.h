/* A loaded image and the OCI image layout synthesised for it: oci-layout,
 * index.json (one descriptor of the top manifest or index with its ref.name)
 * and blobs/sha256/ (top manifest bytes, child manifests of an index, every
 * config and layer). Built from exact manifest bytes; pure (no network: child
 * manifests come through a callback). Immutable once built; refcounted. */
#ifndef ECRFS_FS_IMAGE_H
#define ECRFS_FS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum fs_blob_kind { FS_BLOB_MANIFEST = 1, FS_BLOB_INDEX, FS_BLOB_CONFIG, FS_BLOB_LAYER };

struct fs_blob {
	char digest[72];  /* "sha256:<hex>" */
	const char *hex;  /* points into digest */
	uint64_t size;
	char *media_type; /* may be NULL */
	enum fs_blob_kind kind;
	char *data;       /* manifests and indexes: the exact bytes; else NULL */
	uint64_t st_ino;  /* hash(registry, region, repo, digest) */
	unsigned nlink;   /* places the blob appears in the repository (>= 1) */
};

struct fs_image {
	int refs;         /* atomic */
	char *registry, *region, *repo;
	char *digest;     /* top manifest or index */
	char *refname;    /* index.json ref.name: the tag, or "sha256-<hex>" */
	char *media_type; /* of the top manifest */
	uint64_t top_len;
	time_t pushed_at;
	int immutable;    /* repository tag immutability */
	int stale;        /* built from cached metadata while offline */
	char *scan_status;
	struct fs_blob *blobs; /* sorted by digest, unique */
	size_t nblobs;
	char *index_json;
	size_t index_len;
};

#define FS_OCI_LAYOUT_JSON "{\"imageLayoutVersion\":\"1.0.0\"}"

/* Gets a child manifest by digest: *bytes and *media_type malloc'd (media
 * type may be NULL). Returns 0 or -errno. */
typedef int (*fs_manifest_cb)(void *arg, const char *digest, char **bytes, size_t *len,
			      char **media_type);

struct fs_image_src {
	const char *registry, *region, *repo;
	const char *digest;     /* of bytes (checked) */
	const char *refname;
	const char *media_type; /* from ECR; NULL: from the JSON */
	const char *bytes;
	size_t len;
	time_t pushed_at;
	int immutable;
	const char *scan_status;
};

/* Builds the layout. For an image index, every child manifest is fetched
 * through cb (nested indexes up to depth 4). Returns 0, -EIO for bytes that
 * do not hash to digest or are not a manifest, -errno from cb. */
int fs_image_build(const struct fs_image_src *src, fs_manifest_cb cb, void *arg,
		   struct fs_image **out);
void fs_image_ref(struct fs_image *img);
void fs_image_put(struct fs_image *img);

/* Blob by "<hex>" (file name under blobs/sha256/), or -1. */
long fs_image_find_blob(const struct fs_image *img, const char *hex);

/* Parses a manifest or index and calls fn for every descriptor it
 * references (config, layers, child manifests) with its kind. Returns 0 or
 * -EIO when the JSON is not a manifest/index. *is_index set accordingly. */
typedef int (*fs_desc_cb)(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
			  const char *media_type);
int fs_manifest_walk(const char *bytes, size_t len, int *is_index, char **media_type_out,
		     fs_desc_cb fn, void *arg);

/* sha256 of data as "sha256:<hex>" into out (72 bytes). */
void fs_sha256_digest(const void *data, size_t len, char out[72]);

#endif
