/* Today's per-image calls: ListImageReferrers, UpdateImageStorageClass,
 * DescribeImageScanFindings (pages merged), ListPullTimeUpdateExclusions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ecr_i.h"
#include "net/log.h"

#define REFERRERS_PAGE 50 /* ListImageReferrers' maximum */

/* The array at "a" or "a/b" of o, or NULL. */
static json_t *array_at(const json_t *o, const char *path)
{
	const char *slash = strchr(path, '/');
	char head[64];

	if (!slash)
		return json_is_array(json_object_get(o, path)) ? json_object_get(o, path) : NULL;
	if ((size_t)(slash - path) >= sizeof(head))
		return NULL;
	memcpy(head, path, (size_t)(slash - path));
	head[slash - path] = '\0';
	return array_at(json_object_get(o, head), slash + 1);
}

int ecr_merge_page(const json_t *resp, void *arg, char **next)
{
	struct ecr_merged *m = arg;
	const char *t = ecr_json_str(resp, "nextToken");

	*next = NULL;
	if (!m->first) {
		m->first = json_deep_copy(resp);
		if (!m->first)
			return -ENOMEM;
		json_object_del(m->first, "nextToken");
	} else {
		for (const char *const *p = m->paths; *p; p++) {
			json_t *to = array_at(m->first, *p), *from = array_at(resp, *p);
			if (from && to && json_array_extend(to, from))
				return -ENOMEM;
			/* The first page had none of these: take the later page's. */
			if (from && !to && !strchr(*p, '/') && json_object_set(m->first, *p, from))
				return -ENOMEM;
		}
	}
	if (t && *t && !(*next = strdup(t)))
		return -ENOMEM;
	return 0;
}

static int referrers_page(const json_t *resp, void *out, char **next)
{
	return ecr_parse_referrers_page(resp, out, next);
}

int ecr_list_image_referrers(ecr *e, const struct ecr_where *w, const char *subject_digest,
			     const char *const *artifact_types, size_t ntypes, int any_status,
			     struct ecr_referrer_list *out, struct ecr_error *err)
{
	struct ecr_call c = {.op = "ListImageReferrers",
			     .region = w->region,
			     .w = w,
			     .subject = subject_digest,
			     .page_size = REFERRERS_PAGE};
	json_t *filter = NULL, *types = NULL;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w) ||
	    json_object_set_new(c.req, "subjectId",
				json_pack("{s:s}", "imageDigest", subject_digest)))
		goto out;
	if (ntypes || any_status) {
		filter = json_object();
		if (!filter)
			goto out;
		if (any_status)
			json_object_set_new(filter, "artifactStatus", json_string("ANY"));
		if (ntypes) {
			types = json_array();
			for (size_t i = 0; types && i < ntypes; i++)
				json_array_append_new(types, json_string(artifact_types[i]));
			if (!types || json_object_set_new(filter, "artifactTypes", types))
				goto out;
		}
		if (json_object_set_new(c.req, "filter", filter)) {
			filter = NULL;
			goto out;
		}
		filter = NULL;
	}
	rc = ecr_call_pages(e, &c, referrers_page, out, err);
out:
	json_decref(filter);
	json_decref(c.req);
	if (rc)
		ecr_referrer_list_free(out);
	return rc;
}

int ecr_update_image_storage_class(ecr *e, const struct ecr_where *w, const struct ecr_image_id *id,
				   const char *target, char **status_out, struct ecr_error *err)
{
	struct ecr_call c = {.op = "UpdateImageStorageClass",
			     .region = w->region,
			     .w = w,
			     .subject = id->tag ? id->tag : id->digest};
	json_t *ids = NULL, *j = NULL;
	int rc = -ENOMEM;

	if (status_out)
		*status_out = NULL;
	c.req = json_object();
	ids = ecr_json_image_ids(id, 1);
	if (!c.req || !ids || ecr_json_where(c.req, w) ||
	    json_object_set(c.req, "imageId", json_array_get(ids, 0)) ||
	    json_object_set_new(c.req, "targetStorageClass", json_string(target)))
		goto out;
	rc = ecr_call(e, &c, &j, err);
	if (rc == 0 && status_out && !(*status_out = ecr_json_strdup(j, "imageStatus")))
		rc = -EPROTO;
out:
	json_decref(ids);
	json_decref(j);
	json_decref(c.req);
	return rc;
}

/* Runs a paginated call and returns its merged reply as compact text. */
static int merged_text(ecr *e, struct ecr_call *c, const char *const *paths, char **json_out,
		       struct ecr_error *err)
{
	struct ecr_merged m = {.paths = paths};
	int rc = ecr_call_pages(e, c, ecr_merge_page, &m, err);

	if (rc == 0 && !(*json_out = json_dumps(m.first, JSON_COMPACT)))
		rc = -ENOMEM;
	json_decref(m.first);
	return rc;
}

int ecr_describe_image_scan_findings(ecr *e, const struct ecr_where *w,
				     const struct ecr_image_id *id, char **json_out,
				     struct ecr_error *err)
{
	static const char *const expected[] = {"ScanNotFoundException", NULL};
	static const char *const paths[] = {"imageScanFindings/findings",
					    "imageScanFindings/enhancedFindings", NULL};
	struct ecr_call c = {.op = "DescribeImageScanFindings",
			     .region = w->region,
			     .w = w,
			     .subject = id->tag ? id->tag : id->digest,
			     .expected = expected};
	json_t *ids = NULL;
	int rc = -ENOMEM;

	*json_out = NULL;
	c.req = json_object();
	ids = ecr_json_image_ids(id, 1);
	if (!c.req || !ids || ecr_json_where(c.req, w) ||
	    json_object_set(c.req, "imageId", json_array_get(ids, 0)))
		goto out;
	rc = merged_text(e, &c, paths, json_out, err);
out:
	json_decref(ids);
	json_decref(c.req);
	return rc;
}

static int exclusions_page(const json_t *resp, void *out, char **next)
{
	struct {
		char **v;
		size_t n;
	} *l = out;
	return ecr_parse_strings_page(resp, "pullTimeUpdateExclusions", &l->v, &l->n, next);
}

int ecr_list_pull_time_exclusions(ecr *e, const char *region, char ***arns_out, size_t *n_out,
				  struct ecr_error *err)
{
	struct ecr_call c = {.op = "ListPullTimeUpdateExclusions", .region = region};
	struct {
		char **v;
		size_t n;
	} l = {0};
	int rc;

	*arns_out = NULL;
	*n_out = 0;
	c.req = json_object();
	if (!c.req)
		return -ENOMEM;
	rc = ecr_call_pages(e, &c, exclusions_page, &l, err);
	json_decref(c.req);
	if (rc) {
		ecr_strv_free(l.v, l.n);
		return rc;
	}
	*arns_out = l.v;
	*n_out = l.n;
	return 0;
}
