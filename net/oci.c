/* Manifest and index media types, and the walker (see oci.h). */
#include "net/oci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

const struct oci_media_type oci_media_types[] = {
    {OCI_MT_DOCKER_MANIFEST, OCI_MANIFEST, 1},
    {OCI_MT_DOCKER_LIST, OCI_INDEX, 1},
    {OCI_MT_MANIFEST, OCI_MANIFEST, 1},
    {OCI_MT_INDEX, OCI_INDEX, 1},
    {OCI_MT_DOCKER_V1_SIGNED, OCI_SCHEMA1, 1},
    {OCI_MT_DOCKER_V1, OCI_SCHEMA1, 1},
    /* Pushed as a manifest; ECR does not serve it. */
    {OCI_MT_ARTIFACT, OCI_MANIFEST, 0},
    {NULL, OCI_OTHER, 0},
};

enum oci_kind oci_media_kind(const char *media_type)
{
	if (!media_type)
		return OCI_OTHER;
	for (const struct oci_media_type *t = oci_media_types; t->name; t++)
		if (!strcmp(t->name, media_type))
			return t->kind;
	return OCI_OTHER;
}

static enum oci_kind kind_by_type(json_t *root, const char *mt)
{
	int versioned = json_is_integer(json_object_get(root, "schemaVersion"));

	if (mt)
		return oci_media_kind(mt);
	if (versioned && json_is_array(json_object_get(root, "layers")))
		return OCI_MANIFEST;
	if (versioned && json_is_array(json_object_get(root, "manifests")))
		return OCI_INDEX;
	return OCI_OTHER;
}

static enum oci_kind kind_by_shape(json_t *root, const char *mt)
{
	if (json_is_array(json_object_get(root, "manifests")) || oci_media_kind(mt) == OCI_INDEX)
		return OCI_INDEX;
	if (json_is_object(json_object_get(root, "config")))
		return OCI_MANIFEST;
	return OCI_OTHER;
}

static int visit(json_t *d, enum oci_list list, oci_desc_cb cb, void *arg)
{
	struct oci_desc o = {.list = list};
	json_t *size = json_object_get(d, "size");
	json_t *ann = json_object_get(d, "annotations");

	o.digest = json_string_value(json_object_get(d, "digest"));
	if (!json_is_object(d) || !o.digest)
		return -EINVAL;
	o.media_type = json_string_value(json_object_get(d, "mediaType"));
	o.ref_name = json_string_value(json_object_get(ann, OCI_REF_NAME));
	o.size = json_integer_value(size);
	o.size_valid = json_is_integer(size) && o.size >= 0;
	o.kind = oci_media_kind(o.media_type);
	return cb(arg, &o);
}

static int visit_lists(json_t *root, unsigned flags, oci_desc_cb cb, void *arg)
{
	static const struct {
		enum oci_list list;
		const char *key;
	} lists[] = {
	    {OCI_LIST_CONFIG, "config"},
	    {OCI_LIST_LAYERS, "layers"},
	    {OCI_LIST_BLOBS, "blobs"},
	    {OCI_LIST_MANIFESTS, "manifests"},
	};
	int rc = 0;

	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]) && rc == 0; l++) {
		json_t *j = json_object_get(root, lists[l].key);
		size_t i;
		json_t *d;

		if (!(flags & lists[l].list) || !j)
			continue;
		if (lists[l].list == OCI_LIST_CONFIG) {
			rc = visit(j, lists[l].list, cb, arg);
			continue;
		}
		if (!json_is_array(j))
			return -EINVAL;
		json_array_foreach(j, i, d) {
			rc = visit(d, lists[l].list, cb, arg);
			if (rc)
				break;
		}
	}
	return rc;
}

int oci_walk(const char *bytes, size_t len, unsigned flags, enum oci_kind *kind, char **media_type,
	     oci_desc_cb cb, void *arg)
{
	json_t *root = json_loadb(bytes, len, 0, NULL);
	enum oci_kind k = OCI_OTHER;
	const char *mt;
	int rc = -EINVAL;

	if (kind)
		*kind = OCI_OTHER;
	if (media_type)
		*media_type = NULL;
	if (!json_is_object(root))
		goto out;
	mt = json_string_value(json_object_get(root, "mediaType"));
	k = flags & OCI_BY_SHAPE ? kind_by_shape(root, mt) : kind_by_type(root, mt);
	if (kind)
		*kind = k;
	if ((flags & OCI_IMAGE_ONLY) && k != OCI_MANIFEST && k != OCI_INDEX)
		goto out;
	rc = 0;
	if (media_type && (k == OCI_MANIFEST || k == OCI_INDEX)) {
		*media_type = strdup(mt ? mt : k == OCI_INDEX ? OCI_MT_INDEX : OCI_MT_MANIFEST);
		if (!*media_type)
			rc = -ENOMEM;
	}
	if (rc == 0 && cb)
		rc = visit_lists(root, flags, cb, arg);
out:
	json_decref(root);
	return rc;
}
