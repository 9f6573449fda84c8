/* Classification of pushed JSON and descriptor extraction, over the
 * walker of net/oci.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/push_json.h"
#include "net/oci.h"

enum push_kind push_json_classify(const char *buf, size_t len, char **media_type)
{
	enum oci_kind k = OCI_OTHER;

	*media_type = NULL;
	if (len == 0 || buf[0] != '{')
		return PUSH_BLOB;
	if (oci_walk(buf, len, OCI_IMAGE_ONLY, &k, media_type, NULL, NULL) < 0) {
		free(*media_type);
		*media_type = NULL;
		return PUSH_BLOB;
	}
	return k == OCI_INDEX ? PUSH_INDEX : PUSH_MANIFEST;
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

static int add_desc(void *arg, const struct oci_desc *d)
{
	struct push_desc_list *l = arg;
	struct push_desc *v;

	if (!push_digest_valid(d->digest))
		return -EINVAL;
	v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	v = &l->v[l->n++];
	memset(v, 0, sizeof(*v));
	v->size = d->size;
	v->digest = strdup(d->digest);
	v->media_type = d->media_type ? strdup(d->media_type) : NULL;
	v->ref_name = d->ref_name ? strdup(d->ref_name) : NULL;
	if (!v->digest || (d->media_type && !v->media_type) || (d->ref_name && !v->ref_name))
		return -ENOMEM;
	return 0;
}

int push_json_descs(const char *buf, size_t len, enum push_kind kind, struct push_desc_list *out)
{
	unsigned lists = kind == PUSH_INDEX ? OCI_LIST_MANIFESTS
					    : OCI_LIST_CONFIG | OCI_LIST_LAYERS | OCI_LIST_BLOBS;
	int rc;

	out->v = NULL;
	out->n = 0;
	rc = oci_walk(buf, len, lists, NULL, NULL, add_desc, out);
	if (rc < 0)
		push_desc_list_free(out);
	return rc;
}
