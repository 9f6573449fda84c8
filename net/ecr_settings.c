/* Repository settings: lifecycle policy and its preview, repository policy,
 * scanning configuration, tag mutability. A missing policy is -ENOENT and
 * not logged (a settings file that does not exist); a refused one is
 * -EINVAL, logged with ECR's message by ecr_call. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ecr_i.h"

#define PREVIEW_PAGE 100 /* GetLifecyclePolicyPreview's maximum */

static const char *const no_lifecycle[] = {"LifecyclePolicyNotFoundException", NULL};
static const char *const no_preview[] = {"LifecyclePolicyPreviewNotFoundException", NULL};
static const char *const no_policy[] = {"RepositoryPolicyNotFoundException", NULL};

/* A call on w whose request is w plus the (key, string) pairs of kv (NULL
 * values left out); *resp (may be NULL) keeps the reply. */
static int simple(ecr *e, const struct ecr_where *w, const char *op, const char *const *expected,
		  const char *const *kv, json_t **resp, struct ecr_error *err)
{
	struct ecr_call c = {.op = op, .region = w->region, .w = w, .expected = expected};
	int rc = -ENOMEM;

	if (resp)
		*resp = NULL;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w))
		goto out;
	for (; kv && kv[0]; kv += 2)
		if (kv[1] && json_object_set_new(c.req, kv[0], json_string(kv[1])))
			goto out;
	rc = ecr_call(e, &c, resp, err);
out:
	json_decref(c.req);
	return rc;
}

/* simple() whose answer is the reply's string field key. */
static int simple_string(ecr *e, const struct ecr_where *w, const char *op,
			 const char *const *expected, const char *key, char **out, json_t **resp,
			 struct ecr_error *err)
{
	json_t *j = NULL;
	int rc = simple(e, w, op, expected, NULL, &j, err);

	*out = NULL;
	if (rc == 0 && !(*out = ecr_json_strdup(j, key)))
		rc = -EPROTO;
	if (rc == 0 && resp)
		*resp = j;
	else
		json_decref(j);
	return rc;
}

int ecr_get_lifecycle_policy(ecr *e, const struct ecr_where *w, char **text_out,
			     time_t *last_evaluated, struct ecr_error *err)
{
	json_t *j = NULL;
	int rc = simple_string(e, w, "GetLifecyclePolicy", no_lifecycle, "lifecyclePolicyText",
			       text_out, &j, err);

	if (last_evaluated)
		*last_evaluated = rc ? 0 : ecr_json_time(j, "lastEvaluatedAt");
	json_decref(j);
	return rc;
}

int ecr_put_lifecycle_policy(ecr *e, const struct ecr_where *w, const char *text,
			     struct ecr_error *err)
{
	const char *kv[] = {"lifecyclePolicyText", text, NULL};
	return simple(e, w, "PutLifecyclePolicy", NULL, kv, NULL, err);
}

int ecr_delete_lifecycle_policy(ecr *e, const struct ecr_where *w, struct ecr_error *err)
{
	return simple(e, w, "DeleteLifecyclePolicy", no_lifecycle, NULL, NULL, err);
}

int ecr_start_lifecycle_policy_preview(ecr *e, const struct ecr_where *w, const char *text,
				       struct ecr_error *err)
{
	const char *kv[] = {"lifecyclePolicyText", text, NULL};
	return simple(e, w, "StartLifecyclePolicyPreview", no_lifecycle, kv, NULL, err);
}

int ecr_get_lifecycle_policy_preview(ecr *e, const struct ecr_where *w, char **json_out,
				     int *complete, struct ecr_error *err)
{
	static const char *const paths[] = {"previewResults", NULL};
	struct ecr_call c = {.op = "GetLifecyclePolicyPreview",
			     .region = w->region,
			     .w = w,
			     .expected = no_preview,
			     .page_size = PREVIEW_PAGE};
	struct ecr_merged m = {.paths = paths};
	int rc = -ENOMEM;

	*json_out = NULL;
	if (complete)
		*complete = 0;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w))
		goto out;
	rc = ecr_call_pages(e, &c, ecr_merge_page, &m, err);
	if (rc)
		goto out;
	if (complete) {
		const char *st = ecr_json_str(m.first, "status");
		*complete = st && strcmp(st, "COMPLETE") == 0;
	}
	if (!(*json_out = json_dumps(m.first, JSON_COMPACT)))
		rc = -ENOMEM;
out:
	json_decref(m.first);
	json_decref(c.req);
	return rc;
}

int ecr_get_repository_policy(ecr *e, const struct ecr_where *w, char **text_out,
			      struct ecr_error *err)
{
	return simple_string(e, w, "GetRepositoryPolicy", no_policy, "policyText", text_out, NULL,
			     err);
}

int ecr_set_repository_policy(ecr *e, const struct ecr_where *w, const char *text, int force,
			      struct ecr_error *err)
{
	struct ecr_call c = {.op = "SetRepositoryPolicy", .region = w->region, .w = w};
	int rc = -ENOMEM;

	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w) ||
	    json_object_set_new(c.req, "policyText", json_string(text)) ||
	    (force && json_object_set_new(c.req, "force", json_true())))
		goto out;
	rc = ecr_call(e, &c, NULL, err);
out:
	json_decref(c.req);
	return rc;
}

int ecr_delete_repository_policy(ecr *e, const struct ecr_where *w, struct ecr_error *err)
{
	return simple(e, w, "DeleteRepositoryPolicy", no_policy, NULL, NULL, err);
}

int ecr_put_image_scanning_configuration(ecr *e, const struct ecr_where *w, int scan_on_push,
					 struct ecr_error *err)
{
	struct ecr_call c = {.op = "PutImageScanningConfiguration", .region = w->region, .w = w};
	int rc = -ENOMEM;

	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w) ||
	    json_object_set_new(c.req, "imageScanningConfiguration",
				json_pack("{s:b}", "scanOnPush", scan_on_push)))
		goto out;
	rc = ecr_call(e, &c, NULL, err);
out:
	json_decref(c.req);
	return rc;
}

int ecr_put_image_tag_mutability(ecr *e, const struct ecr_where *w, enum ecr_mutability m,
				 const char *const *filters, size_t nfilters, struct ecr_error *err)
{
	struct ecr_call c = {.op = "PutImageTagMutability", .region = w->region, .w = w};
	const char *name = ecr_mutability_name(m);
	json_t *arr = NULL;
	int rc = -EINVAL;

	if (!name)
		return rc;
	rc = -ENOMEM;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w) ||
	    json_object_set_new(c.req, "imageTagMutability", json_string(name)))
		goto out;
	if (nfilters) {
		arr = json_array();
		for (size_t i = 0; arr && i < nfilters; i++)
			if (json_array_append_new(arr, json_pack("{s:s,s:s}", "filterType",
								 "WILDCARD", "filter", filters[i])))
				goto out;
		if (!arr || json_object_set_new(c.req, "imageTagMutabilityExclusionFilters", arr)) {
			arr = NULL;
			goto out;
		}
		arr = NULL;
	}
	rc = ecr_call(e, &c, NULL, err);
out:
	json_decref(arr);
	json_decref(c.req);
	return rc;
}
