/* OCI and Docker manifests: the one list of manifest and index media types
 * of ecrfs, and the one walker over manifest and index JSON. Pure functions
 * over bytes (jansson inside); the bytes are never re-serialised. */
#ifndef ECRFS_NET_OCI_H
#define ECRFS_NET_OCI_H

#include <stddef.h>
#include <stdint.h>

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_ARTIFACT "application/vnd.oci.artifact.manifest.v1+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define OCI_MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

#define OCI_REF_NAME "org.opencontainers.image.ref.name"

enum oci_kind {
	OCI_OTHER = 0, /* not a manifest or an index: a config, other JSON */
	OCI_MANIFEST,  /* OCI image manifest, Docker schema 2, OCI artifact manifest */
	OCI_INDEX,     /* OCI image index, Docker manifest list */
	OCI_SCHEMA1,   /* Docker schema 1: ECR may hold it; ecrfs does not walk it */
};

struct oci_media_type {
	const char *name;
	enum oci_kind kind;
	int ecr_accepted; /* sent in BatchGetImage's acceptedMediaTypes */
};

/* Every manifest and index type, ECR's accepted ones first in the order
 * they are sent; ends with { NULL }. */
extern const struct oci_media_type oci_media_types[];

/* The kind a media type names; OCI_OTHER for NULL or a type not listed. */
enum oci_kind oci_media_kind(const char *media_type);

/* The descriptor lists of a document, as bits of oci_walk's flags. */
enum oci_list {
	OCI_LIST_CONFIG = 1 << 0,    /* "config": one descriptor (an object) */
	OCI_LIST_LAYERS = 1 << 1,    /* "layers" */
	OCI_LIST_BLOBS = 1 << 2,     /* "blobs" (OCI artifact manifest) */
	OCI_LIST_MANIFESTS = 1 << 3, /* "manifests" (index, index.json) */
};

/* How the kind of a document is told (oci_walk's flags):
 * default: by its mediaType when it has one (a type not listed is
 *   OCI_OTHER), else a schemaVersion with a "layers" array is a manifest
 *   and one with a "manifests" array an index. Strict enough that an image
 *   config (which has a "config" object) is OCI_OTHER.
 * OCI_BY_SHAPE: for bytes known to be a manifest (ECR returned them as
 *   one): a "manifests" array or an index mediaType is an index, else a
 *   "config" object is a manifest. */
#define OCI_BY_SHAPE (1u << 8)
/* Only a manifest or an index is walked: another kind is -EINVAL before
 * any callback. */
#define OCI_IMAGE_ONLY (1u << 9)

struct oci_desc {
	enum oci_list list;	/* the list it is in */
	const char *digest;	/* a string; its syntax is the caller's to check */
	const char *media_type; /* NULL when absent */
	const char *ref_name;	/* the OCI_REF_NAME annotation, NULL when absent */
	int64_t size;		/* 0 when absent or not an integer */
	int size_valid;		/* size is an integer >= 0 */
	enum oci_kind kind;	/* oci_media_kind(media_type) */
};

/* Returns 0 to go on, anything else stops the walk and is returned. */
typedef int (*oci_desc_cb)(void *arg, const struct oci_desc *d);

/* Parses a manifest or an index: *kind (may be NULL) gets its kind by the
 * rule flags choose; *media_type (may be NULL; malloc'd) its mediaType, or
 * the OCI type of its kind when absent (NULL unless a manifest or index).
 * Then calls cb (may be NULL) for every descriptor of the lists flags name,
 * in the order config, layers, blobs, manifests. Returns 0, -EINVAL for
 * bytes that are not a JSON object, a list of the wrong shape ("config" not
 * an object, another list not an array) or a descriptor that is not an
 * object with a string "digest", -ENOMEM, or what cb returned. */
int oci_walk(const char *bytes, size_t len, unsigned flags, enum oci_kind *kind, char **media_type,
	     oci_desc_cb cb, void *arg);

#endif
