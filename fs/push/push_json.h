/* What a pushed JSON file is (manifest, index, something else) and the
 * descriptors it names. Pure functions over bytes, over the manifest walker
 * and media types of net/oci.h. */
#ifndef ECRFS_PUSH_JSON_H
#define ECRFS_PUSH_JSON_H

#include <stddef.h>
#include <stdint.h>

enum push_kind {
	PUSH_BLOB = 0,     /* a layer, a config, any non-manifest blob */
	PUSH_MANIFEST,     /* image manifest: goes to PutImage */
	PUSH_INDEX,        /* image index / manifest list: goes to PutImage */
};

/* Classifies bytes: a JSON object with a manifest/index mediaType, or
 * schemaVersion with "layers" (manifest) or "manifests" (index). Anything
 * else (configs, non-JSON) is PUSH_BLOB. *media_type (malloc'd, may be NULL
 * for PUSH_BLOB) gets the mediaType to send to PutImage: the field's value,
 * or the OCI type when the field is absent. */
enum push_kind push_json_classify(const char *buf, size_t len, char **media_type);

struct push_desc {
	char *digest;     /* "sha256:<hex>" */
	char *media_type; /* may be NULL */
	int64_t size;
	char *ref_name;   /* org.opencontainers.image.ref.name, may be NULL */
};
struct push_desc_list {
	struct push_desc *v;
	size_t n;
};
void push_desc_list_free(struct push_desc_list *l);

/* Descriptors a manifest reaches (config, layers, blobs) or an index
 * reaches (manifests[]); for index.json too (its manifests[] with ref
 * names). Returns 0, -EINVAL for malformed JSON or descriptors. */
int push_json_descs(const char *buf, size_t len, enum push_kind kind, struct push_desc_list *out);

/* 1 when name is "sha256:" + 64 lowercase hex. */
int push_digest_valid(const char *digest);

#endif
