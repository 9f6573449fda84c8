/* Classification of pushed JSON and descriptor extraction. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fs/push/push_json.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"

static const char *const manifest_types[] = {
	MT_OCI_MANIFEST,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.artifact.manifest.v1+json",
	NULL,
};
static const char *const index_types[] = {
	MT_OCI_INDEX,
	"application/vnd.docker.distribution.manifest.list.v2+json",
	NULL,
};

static int in_list(const char *s, const char *const *l)
{
	for (; *l; l++)
		if (!strcmp(s, *l))
			return 1;
	return 0;
}

enum push_kind push_json_classify(const char *buf, size_t len, char **media_type)
{
	enum push_kind k = PUSH_BLOB;
	json_t *root = NULL;
	const char *mt = NULL;

	*media_type = NULL;
	if (len == 0 || buf[0] != '{')
		goto out;
	root = json_loadb(buf, len, 0, NULL);
	if (!json_is_object(root))
		goto out;
	mt = json_string_value(json_object_get(root, "mediaType"));
	if (mt && in_list(mt, manifest_types))
		k = PUSH_MANIFEST;
	else if (mt && in_list(mt, index_types))
		k = PUSH_INDEX;
	else if (mt)
		goto out; /* some other typed document: a blob */
	else if (json_is_integer(json_object_get(root, "schemaVersion")) &&
		 json_is_array(json_object_get(root, "layers")))
		k = PUSH_MANIFEST, mt = MT_OCI_MANIFEST;
	else if (json_is_integer(json_object_get(root, "schemaVersion")) &&
		 json_is_array(json_object_get(root, "manifests")))
		k = PUSH_INDEX, mt = MT_OCI_INDEX;
	if (k != PUSH_BLOB) {
		*media_type = strdup(mt);
		if (!*media_type)
			k = PUSH_BLOB;
	}
out:
	json_decref(root);
	return k;
}

int push_digest_valid(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7))
		return 0;
	d += 7;
	for (int i = 0; i < 64; i++)
		if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
			return 0;
	return d[64] == '\0';
}

void push_desc_list_free(struct push_desc_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].digest);
		free(l->v[i].media_type);
		free(l->v[i].ref_name);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int add_desc(struct push_desc_list *l, json_t *d)
{
	const char *dg = json_string_value(json_object_get(d, "digest"));
	const char *mt = json_string_value(json_object_get(d, "mediaType"));
	json_t *ann = json_object_get(d, "annotations");
	const char *ref = json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
	struct push_desc *v;

	if (!json_is_object(d) || !push_digest_valid(dg))
		return -EINVAL;
	v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	v = &l->v[l->n++];
	memset(v, 0, sizeof(*v));
	v->size = json_integer_value(json_object_get(d, "size"));
	v->digest = strdup(dg);
	v->media_type = mt ? strdup(mt) : NULL;
	v->ref_name = ref ? strdup(ref) : NULL;
	if (!v->digest || (mt && !v->media_type) || (ref && !v->ref_name))
		return -ENOMEM;
	return 0;
}

static int add_array(struct push_desc_list *l, json_t *arr)
{
	size_t i;
	json_t *d;
	int rc;

	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return -EINVAL;
	json_array_foreach(arr, i, d) {
		rc = add_desc(l, d);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int push_json_descs(const char *buf, size_t len, enum push_kind kind, struct push_desc_list *out)
{
	int rc = -EINVAL;
	json_t *root = json_loadb(buf, len, 0, NULL);
	json_t *cfg;

	out->v = NULL;
	out->n = 0;
	if (!json_is_object(root))
		goto out;
	if (kind == PUSH_INDEX) {
		rc = add_array(out, json_object_get(root, "manifests"));
		goto out;
	}
	cfg = json_object_get(root, "config");
	rc = cfg ? add_desc(out, cfg) : 0;
	if (rc == 0)
		rc = add_array(out, json_object_get(root, "layers"));
	if (rc == 0)
		rc = add_array(out, json_object_get(root, "blobs"));
out:
	if (rc < 0)
		push_desc_list_free(out);
	json_decref(root);
	return rc;
}
