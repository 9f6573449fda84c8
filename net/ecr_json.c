/* JSON helpers and the parsers of ECR's reply pages (pure: no I/O). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ecr_i.h"

const char *ecr_json_str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

char *ecr_json_strdup(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	char *s;

	if (!json_is_string(v))
		return NULL;
	s = malloc(json_string_length(v) + 1);
	if (s) {
		memcpy(s, json_string_value(v), json_string_length(v));
		s[json_string_length(v)] = '\0';
	}
	return s;
}

time_t ecr_json_time(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	/* ECR sends timestamps as epoch seconds (float). */
	if (json_is_number(v))
		return (time_t)json_number_value(v);
	return 0;
}

int64_t ecr_json_int(const json_t *o, const char *key, int64_t dflt)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_real(v))
		return (int64_t)json_real_value(v);
	return dflt;
}

int ecr_json_where(json_t *req, const struct ecr_where *w)
{
	if (w && w->registry_id &&
	    json_object_set_new(req, "registryId", json_string(w->registry_id)))
		return -ENOMEM;
	if (w && w->repository &&
	    json_object_set_new(req, "repositoryName", json_string(w->repository)))
		return -ENOMEM;
	return 0;
}

json_t *ecr_json_image_ids(const struct ecr_image_id *ids, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		json_t *id = json_object();
		if (!id)
			goto fail;
		if (ids[i].digest)
			json_object_set_new(id, "imageDigest", json_string(ids[i].digest));
		if (ids[i].tag)
			json_object_set_new(id, "imageTag", json_string(ids[i].tag));
		if (json_array_append_new(arr, id))
			goto fail;
	}
	return arr;
fail:
	json_decref(arr);
	return NULL;
}

static int take_next(const json_t *resp, char **next)
{
	const char *t = ecr_json_str(resp, "nextToken");

	*next = NULL;
	if (t && *t) {
		*next = strdup(t);
		if (!*next)
			return -ENOMEM;
	}
	return 0;
}

/* Grows a vector of elements of size sz to hold n+add. */
static int grow(void **v, size_t n, size_t add, size_t sz)
{
	void *p = realloc(*v, (n + add) * sz);
	if (!p && n + add)
		return -ENOMEM;
	*v = p;
	return 0;
}

/* Fills the zeroed element x from the reply's element e: 0 (kept), 1 (e is
 * malformed: skipped, nothing left allocated) or -ENOMEM (nothing left
 * allocated either). */
typedef int (*fill_fn)(void *x, const json_t *e);

/* Appends the elements of the array key of a reply to the vector *v (*n
 * elements of size sz so far), then takes nextToken when next is set. */
static int parse_array(const json_t *resp, const char *key, void **v, size_t *n, size_t sz,
		       fill_fn fill, char **next)
{
	const json_t *arr = json_object_get(resp, key);
	size_t i;
	json_t *e;
	int rc;

	if (next)
		*next = NULL;
	if (!json_is_array(arr))
		return -EPROTO;
	rc = grow(v, *n, json_array_size(arr), sz);
	if (rc)
		return rc;
	json_array_foreach(arr, i, e)
	{
		void *x = (char *)*v + *n * sz;

		memset(x, 0, sz);
		rc = fill(x, e);
		if (rc < 0)
			return rc;
		if (rc == 0)
			(*n)++;
	}
	return next ? take_next(resp, next) : 0;
}

/* The WILDCARD patterns of imageTagMutabilityExclusionFilters. */
static int fill_filters(struct ecr_repo *x, const json_t *arr)
{
	size_t i;
	json_t *f;

	if (!json_is_array(arr) || !json_array_size(arr))
		return 0;
	x->mutability_filters = calloc(json_array_size(arr), sizeof(char *));
	if (!x->mutability_filters)
		return -ENOMEM;
	json_array_foreach(arr, i, f)
	{
		const char *type = ecr_json_str(f, "filterType");

		/* Another filter type would match differently: left out, so
		 * ECR decides such tags at PutImage. */
		if (!type || strcmp(type, "WILDCARD") != 0 || !ecr_json_str(f, "filter"))
			continue;
		x->mutability_filters[x->nmutability_filters] = ecr_json_strdup(f, "filter");
		if (!x->mutability_filters[x->nmutability_filters])
			return -ENOMEM;
		x->nmutability_filters++;
	}
	return 0;
}

static void repo_free(void *p);

static int fill_repo(void *p, const json_t *r)
{
	struct ecr_repo *x = p;
	const json_t *scan = json_object_get(r, "imageScanningConfiguration");
	const json_t *enc = json_object_get(r, "encryptionConfiguration");
	const char *mut = ecr_json_str(r, "imageTagMutability");

	x->name = ecr_json_strdup(r, "repositoryName");
	if (!x->name)
		return 1; /* malformed entry: skip it rather than show "" */
	x->arn = ecr_json_strdup(r, "repositoryArn");
	x->uri = ecr_json_strdup(r, "repositoryUri");
	x->registry_id = ecr_json_strdup(r, "registryId");
	x->mutability = ecr_mutability_parse(mut);
	x->immutable = x->mutability == ECR_MUT_IMMUTABLE;
	x->scan_on_push = json_is_true(json_object_get(scan, "scanOnPush"));
	x->created_at = ecr_json_time(r, "createdAt");
	x->encryption_type = ecr_json_strdup(enc, "encryptionType");
	x->kms_key = ecr_json_strdup(enc, "kmsKey");
	if (fill_filters(x, json_object_get(r, "imageTagMutabilityExclusionFilters"))) {
		repo_free(x);
		return -ENOMEM;
	}
	return 0;
}

int ecr_parse_repos_page(const json_t *resp, struct ecr_repo_list *out, char **next)
{
	return parse_array(resp, "repositories", (void **)&out->v, &out->n, sizeof(*out->v),
			   fill_repo, next);
}

/* Fields of today's ECR (issue 14); a failed strdup leaves NULL (unknown). */
static void fill_image_today(struct ecr_image *x, const json_t *d)
{
	const json_t *sum = json_object_get(d, "imageScanFindingsSummary");
	const json_t *cnt = json_object_get(sum, "findingSeverityCounts");

	x->last_pulled_at = ecr_json_time(d, "lastRecordedPullTime");
	x->status = ecr_json_strdup(d, "imageStatus");
	x->archived_at = ecr_json_time(d, "lastArchivedAt");
	x->activated_at = ecr_json_time(d, "lastActivatedAt");
	x->subject_digest = ecr_json_strdup(d, "subjectManifestDigest");
	if (json_is_object(sum)) {
		x->scan_counts.have = 1;
		x->scan_completed_at = ecr_json_time(sum, "imageScanCompletedAt");
		x->scan_counts.critical = ecr_json_int(cnt, "CRITICAL", 0);
		x->scan_counts.high = ecr_json_int(cnt, "HIGH", 0);
		x->scan_counts.medium = ecr_json_int(cnt, "MEDIUM", 0);
		x->scan_counts.low = ecr_json_int(cnt, "LOW", 0);
		x->scan_counts.informational = ecr_json_int(cnt, "INFORMATIONAL", 0);
		x->scan_counts.undefined = ecr_json_int(cnt, "UNDEFINED", 0);
	}
}

static int fill_image(void *p, const json_t *d)
{
	struct ecr_image *x = p;
	const json_t *tags = json_object_get(d, "imageTags");
	const json_t *scan = json_object_get(d, "imageScanStatus");
	size_t j;
	json_t *t;

	x->digest = ecr_json_strdup(d, "imageDigest");
	if (!x->digest)
		return 1;
	if (json_is_array(tags) && json_array_size(tags)) {
		x->tags = calloc(json_array_size(tags), sizeof(char *));
		if (!x->tags) {
			free(x->digest);
			return -ENOMEM;
		}
		json_array_foreach(tags, j, t)
		{
			char *s = json_is_string(t) ? strdup(json_string_value(t)) : NULL;
			if (s)
				x->tags[x->ntags++] = s;
		}
	}
	x->size = ecr_json_int(d, "imageSizeInBytes", 0);
	x->pushed_at = ecr_json_time(d, "imagePushedAt");
	x->media_type = ecr_json_strdup(d, "imageManifestMediaType");
	x->artifact_media_type = ecr_json_strdup(d, "artifactMediaType");
	x->scan_status = ecr_json_strdup(scan, "status");
	fill_image_today(x, d);
	return 0;
}

int ecr_parse_images_page(const json_t *resp, struct ecr_image_list *out, char **next)
{
	return parse_array(resp, "imageDetails", (void **)&out->v, &out->n, sizeof(*out->v),
			   fill_image, next);
}

static int fill_image_ref(void *p, const json_t *d)
{
	struct ecr_image_ref *x = p;

	x->digest = ecr_json_strdup(d, "imageDigest");
	if (!x->digest)
		return 1;
	x->tag = ecr_json_strdup(d, "imageTag");
	return 0;
}

int ecr_parse_image_refs_page(const json_t *resp, struct ecr_image_ref_list *out, char **next)
{
	return parse_array(resp, "imageIds", (void **)&out->v, &out->n, sizeof(*out->v),
			   fill_image_ref, next);
}

static int fill_manifest(void *p, const json_t *d)
{
	struct ecr_manifest *m = p;
	const json_t *id = json_object_get(d, "imageId");
	const json_t *man = json_object_get(d, "imageManifest");

	if (!json_is_string(man))
		return 1;
	/* The exact bytes: the decoded string by its length (manifests
	 * may hold escapes; never re-serialise). */
	m->len = json_string_length(man);
	m->bytes = malloc(m->len + 1);
	if (!m->bytes)
		return -ENOMEM;
	memcpy(m->bytes, json_string_value(man), m->len);
	m->bytes[m->len] = '\0';
	m->digest = ecr_json_strdup(id, "imageDigest");
	m->tag = ecr_json_strdup(id, "imageTag");
	m->media_type = ecr_json_strdup(d, "imageManifestMediaType");
	return 0;
}

int ecr_parse_batch_get(const json_t *resp, struct ecr_manifest_list *out)
{
	const json_t *fails = json_object_get(resp, "failures");
	size_t i;
	json_t *d;
	int rc;

	rc = parse_array(resp, "images", (void **)&out->v, &out->n, sizeof(*out->v), fill_manifest,
			 NULL);
	if (rc)
		return rc;
	if (!json_is_array(fails) || !json_array_size(fails))
		return 0;
	rc =
	    grow((void **)&out->failed, out->nfailed, json_array_size(fails), sizeof(*out->failed));
	if (!rc)
		rc = grow((void **)&out->failure_codes, out->nfailed, json_array_size(fails),
			  sizeof(*out->failure_codes));
	if (rc)
		return rc;
	json_array_foreach(fails, i, d)
	{
		const json_t *id = json_object_get(d, "imageId");

		out->failed[out->nfailed].digest = ecr_json_strdup(id, "imageDigest");
		out->failed[out->nfailed].tag = ecr_json_strdup(id, "imageTag");
		out->failure_codes[out->nfailed] = ecr_json_strdup(d, "failureCode");
		out->nfailed++;
	}
	return 0;
}

static int fill_referrer(void *p, const json_t *d)
{
	struct ecr_referrer *x = p;
	const json_t *ann = json_object_get(d, "annotations");

	x->digest = ecr_json_strdup(d, "digest");
	if (!x->digest)
		return 1;
	x->media_type = ecr_json_strdup(d, "mediaType");
	x->artifact_type = ecr_json_strdup(d, "artifactType");
	x->status = ecr_json_strdup(d, "artifactStatus");
	x->size = ecr_json_int(d, "size", 0);
	if (json_is_object(ann) && json_object_size(ann))
		x->annotations_json = json_dumps(ann, JSON_COMPACT | JSON_SORT_KEYS);
	return 0;
}

int ecr_parse_referrers_page(const json_t *resp, struct ecr_referrer_list *out, char **next)
{
	return parse_array(resp, "referrers", (void **)&out->v, &out->n, sizeof(*out->v),
			   fill_referrer, next);
}

static int fill_string(void *p, const json_t *d)
{
	char **x = p;

	if (!json_is_string(d))
		return 1;
	*x = strdup(json_string_value(d));
	return *x ? 0 : -ENOMEM;
}

int ecr_parse_strings_page(const json_t *resp, const char *key, char ***v, size_t *n, char **next)
{
	return parse_array(resp, key, (void **)v, n, sizeof(**v), fill_string, next);
}

/* ---- list destructors ---- */

/* Frees each of the n elements of size sz at v with free_elem, then v. */
static void free_vec(void *v, size_t n, size_t sz, void (*free_elem)(void *))
{
	for (size_t i = 0; i < n; i++)
		free_elem((char *)v + i * sz);
	free(v);
}

static void repo_free(void *p)
{
	struct ecr_repo *x = p;

	free(x->name);
	free(x->arn);
	free(x->uri);
	free(x->registry_id);
	for (size_t k = 0; k < x->nmutability_filters; k++)
		free(x->mutability_filters[k]);
	free(x->mutability_filters);
	free(x->encryption_type);
	free(x->kms_key);
	memset(x, 0, sizeof(*x));
}

static void image_free(void *p)
{
	struct ecr_image *x = p;

	for (size_t k = 0; k < x->ntags; k++)
		free(x->tags[k]);
	free(x->tags);
	free(x->digest);
	free(x->media_type);
	free(x->artifact_media_type);
	free(x->scan_status);
	free(x->status);
	free(x->subject_digest);
}

static void image_ref_free(void *p)
{
	struct ecr_image_ref *x = p;

	free(x->digest);
	free(x->tag);
}

static void manifest_free(void *p)
{
	struct ecr_manifest *x = p;

	free(x->digest);
	free(x->tag);
	free(x->media_type);
	free(x->bytes);
}

static void str_free(void *p) { free(*(char **)p); }

static void referrer_free(void *p)
{
	struct ecr_referrer *x = p;

	free(x->digest);
	free(x->media_type);
	free(x->artifact_type);
	free(x->status);
	free(x->annotations_json);
}

void ecr_referrer_list_free(struct ecr_referrer_list *l)
{
	if (!l)
		return;
	free_vec(l->v, l->n, sizeof(*l->v), referrer_free);
	memset(l, 0, sizeof(*l));
}

void ecr_strv_free(char **v, size_t n) { free_vec(v, n, sizeof(*v), str_free); }

void ecr_repo_list_free(struct ecr_repo_list *l)
{
	if (!l)
		return;
	free_vec(l->v, l->n, sizeof(*l->v), repo_free);
	memset(l, 0, sizeof(*l));
}

void ecr_image_list_free(struct ecr_image_list *l)
{
	if (!l)
		return;
	free_vec(l->v, l->n, sizeof(*l->v), image_free);
	memset(l, 0, sizeof(*l));
}

void ecr_image_ref_list_free(struct ecr_image_ref_list *l)
{
	if (!l)
		return;
	free_vec(l->v, l->n, sizeof(*l->v), image_ref_free);
	memset(l, 0, sizeof(*l));
}

void ecr_manifest_list_free(struct ecr_manifest_list *l)
{
	if (!l)
		return;
	free_vec(l->v, l->n, sizeof(*l->v), manifest_free);
	free_vec(l->failed, l->nfailed, sizeof(*l->failed), image_ref_free);
	free_vec(l->failure_codes, l->nfailed, sizeof(*l->failure_codes), str_free);
	memset(l, 0, sizeof(*l));
}
