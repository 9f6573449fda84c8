/* What each REPO@settings/ file reads and writes in ECR. A file holds the
 * JSON its Put call takes, without registryId and repositoryName (policies:
 * their text as ECR keeps it); reading asks ECR each time. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/view_settings_i.h"
#include "net/log.h"

#define MAX_FILTERS 5 /* imageTagMutabilityExclusionFilters */

static int pretty(json_t *j, char **out, size_t *len)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	int rc = s && asprintf(out, "%s\n", s) >= 0 ? 0 : -ENOMEM;
	free(s);
	if (rc)
		*out = NULL;
	*len = rc ? 0 : strlen(*out);
	return rc;
}

static json_t *mutability_json(const struct ecr_repo *r)
{
	const char *m = ecr_mutability_name(r->mutability);
	json_t *filters = json_array();
	for (size_t i = 0; filters && i < r->nmutability_filters; i++)
		json_array_append_new(filters, json_pack("{s:s, s:s}", "filterType", "WILDCARD",
							 "filter", r->mutability_filters[i]));
	return json_pack("{s:s, s:o*}", "imageTagMutability",
			 m		? m
			 : r->immutable ? "IMMUTABLE"
					: "MUTABLE",
			 "imageTagMutabilityExclusionFilters", filters);
}

static json_t *encryption_json(const struct ecr_repo *r)
{
	json_t *enc = json_pack("{s:s}", "encryptionType",
				r->encryption_type ? r->encryption_type : "AES256");
	if (enc && r->kms_key)
		json_object_set_new(enc, "kmsKey", json_string(r->kms_key));
	return json_pack("{s:o*}", "encryptionConfiguration", enc);
}

/* mutability.json, scanning.json, encryption.json: DescribeRepositories. */
static int read_repo(ecr *e, const struct ecr_where *w, enum settings_id id, char **out,
		     size_t *len)
{
	struct ecr_where rw = {w->registry_id, w->region, NULL};
	struct ecr_repo_list l = {0};
	const char *names[] = {w->repository};
	json_t *j = NULL;
	int rc = ecr_describe_repositories(e, &rw, names, 1, &l, NULL);
	if (rc == 0 && l.n != 1)
		rc = -ENOENT;
	if (rc)
		goto out;
	if (id == SF_MUTABILITY)
		j = mutability_json(&l.v[0]);
	else if (id == SF_SCANNING)
		j = json_pack("{s:{s:b}}", "imageScanningConfiguration", "scanOnPush",
			      l.v[0].scan_on_push);
	else
		j = encryption_json(&l.v[0]);
	rc = pretty(j, out, len);
out:
	json_decref(j);
	ecr_repo_list_free(&l);
	return rc;
}

/* lifecycle-preview.json: the policy of the last preview ({} before any,
 * as TAG@scan.json without a scan); lifecycle-preview-result.json: the
 * whole preview. */
static int read_preview(ecr *e, const struct ecr_where *w, enum settings_id id, char **out,
			size_t *len)
{
	char *raw = NULL;
	json_t *j = NULL;
	int rc = ecr_get_lifecycle_policy_preview(e, w, &raw, NULL, NULL);
	if (rc == -ENOENT && id == SF_PREVIEW) {
		rc = (*out = strdup("{}\n")) ? 0 : -ENOMEM;
		*len = rc ? 0 : strlen(*out);
		return rc;
	}
	if (rc)
		goto out;
	if (!(j = json_loads(raw, 0, NULL))) {
		rc = -EPROTO;
		goto out;
	}
	if (id == SF_PREVIEW_RESULT) {
		rc = pretty(j, out, len);
		goto out;
	}
	const char *text = json_string_value(json_object_get(j, "lifecyclePolicyText"));
	rc = (*out = strdup(text ? text : "")) ? 0 : -ENOMEM;
	*len = rc ? 0 : strlen(*out);
out:
	json_decref(j);
	free(raw);
	return rc;
}

int settings_io_read(ecr *e, const struct ecr_where *w, enum settings_id id, char **out,
		     size_t *len)
{
	int rc;
	*out = NULL;
	*len = 0;
	switch (id) {
	case SF_LIFECYCLE:
		rc = ecr_get_lifecycle_policy(e, w, out, NULL, NULL);
		break;
	case SF_REPO_POLICY:
		rc = ecr_get_repository_policy(e, w, out, NULL);
		break;
	case SF_PREVIEW:
	case SF_PREVIEW_RESULT:
		return read_preview(e, w, id, out, len);
	default:
		return read_repo(e, w, id, out, len);
	}
	if (rc == 0)
		*len = strlen(*out);
	return rc;
}

/* ---- writes ---- */

/* The written text as JSON; NULL and one log line when it is not. */
static json_t *parsed(const struct ecr_where *w, const char *name, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr);
	if (!j)
		log_err("%s@settings/%s: not JSON (line %d: %s); nothing sent to ECR",
			w->repository, name, jerr.line, jerr.text);
	return j;
}

static int invalid(const struct ecr_where *w, const char *name, const char *why)
{
	log_err("%s@settings/%s: %s; nothing sent to ECR", w->repository, name, why);
	return -EINVAL;
}

/* {"imageTagMutability": ..., "imageTagMutabilityExclusionFilters":
 * [{"filterType": "WILDCARD", "filter": ...}]} (filters may be plain
 * strings too). */
static int write_mutability(ecr *e, const struct ecr_where *w, const char *name, json_t *j)
{
	const char *filters[MAX_FILTERS + 1];
	size_t nf = 0, i;
	json_t *f, *arr = json_object_get(j, "imageTagMutabilityExclusionFilters");
	const char *m = json_string_value(json_object_get(j, "imageTagMutability"));
	enum ecr_mutability mut = m ? ecr_mutability_parse(m) : ECR_MUT_UNKNOWN;

	if (mut == ECR_MUT_UNKNOWN)
		return invalid(w, name,
			       "imageTagMutability must be MUTABLE, IMMUTABLE, "
			       "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION");
	if (arr && !json_is_array(arr))
		return invalid(w, name, "imageTagMutabilityExclusionFilters must be a list");
	json_array_foreach(arr, i, f)
	{
		const char *s = json_is_string(f) ? json_string_value(f)
						  : json_string_value(json_object_get(f, "filter"));
		if (!s)
			return invalid(w, name, "an exclusion filter has no \"filter\"");
		if (nf == MAX_FILTERS)
			return invalid(w, name, "at most 5 exclusion filters");
		filters[nf++] = s;
	}
	return ecr_put_image_tag_mutability(e, w, mut, filters, nf, NULL);
}

/* {"imageScanningConfiguration": {"scanOnPush": true}}, or {"scanOnPush": true}. */
static int write_scanning(ecr *e, const struct ecr_where *w, const char *name, json_t *j)
{
	json_t *conf = json_object_get(j, "imageScanningConfiguration");
	json_t *b = json_object_get(conf ? conf : j, "scanOnPush");
	if (!json_is_boolean(b))
		return invalid(w, name, "scanOnPush must be true or false");
	return ecr_put_image_scanning_configuration(e, w, json_is_true(b), NULL);
}

static int blank(const char *text) { return text[strspn(text, " \t\r\n")] == 0; }

int settings_io_write(ecr *e, const struct ecr_where *w, enum settings_id id, const char *name,
		      const char *text, size_t len)
{
	json_t *j = NULL;
	int rc = -EINVAL;

	/* Writing nothing but blanks to lifecycle-preview.json previews the
	 * stored policy. */
	if (id == SF_PREVIEW && blank(text))
		return ecr_start_lifecycle_policy_preview(e, w, NULL, NULL);
	if (strlen(text) != len)
		return invalid(w, name, "the text holds a NUL byte");
	if (!(j = parsed(w, name, text, len)))
		goto out;
	switch (id) {
	case SF_MUTABILITY:
		rc = write_mutability(e, w, name, j);
		break;
	case SF_SCANNING:
		rc = write_scanning(e, w, name, j);
		break;
	case SF_LIFECYCLE:
		rc = ecr_put_lifecycle_policy(e, w, text, NULL);
		break;
	case SF_REPO_POLICY:
		rc = ecr_set_repository_policy(e, w, text, 0, NULL);
		break;
	case SF_PREVIEW:
		rc = ecr_start_lifecycle_policy_preview(e, w, text, NULL);
		break;
	default:
		rc = -EACCES; /* read only */
		break;
	}
out:
	json_decref(j);
	return rc;
}
