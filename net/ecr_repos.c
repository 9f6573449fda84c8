/* Registry and repository calls: DescribeRegistry, DescribeRepositories,
 * CreateRepository, DeleteRepository. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ecr_i.h"

int ecr_describe_registry(ecr *e, const char *region, char **registry_id_out, struct ecr_error *err)
{
	struct ecr_call c = {.op = "DescribeRegistry", .region = region};

	*registry_id_out = NULL;
	c.req = json_object();
	if (!c.req)
		return -ENOMEM;
	return ecr_call_string(e, &c, "registryId", registry_id_out, NULL, err);
}

static int repos_page(const json_t *resp, void *out, char **next)
{
	return ecr_parse_repos_page(resp, out, next);
}

int ecr_describe_repositories(ecr *e, const struct ecr_where *w, const char *const *names,
			      size_t nnames, struct ecr_repo_list *out, struct ecr_error *err)
{
	struct ecr_where rw = {.registry_id = w ? w->registry_id : NULL,
			       .region = w ? w->region : NULL};
	struct ecr_call c = {.op = "DescribeRepositories", .region = rw.region, .w = &rw};
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!names) {
		c.req = json_object();
		if (!c.req || ecr_json_where(c.req, &rw)) {
			rc = -ENOMEM;
			goto out;
		}
		rc = ecr_call_pages(e, &c, repos_page, out, err);
		goto out;
	}
	/* By name: batches of 100 (maxResults is not allowed with names). */
	for (size_t i = 0; i < nnames; i += ECR_BATCH_MAX) {
		json_t *arr = json_array();

		struct ecr_where reg = {rw.registry_id, rw.region, NULL};

		c.req = json_object();
		if (!c.req || !arr || ecr_json_where(c.req, &reg)) {
			json_decref(arr);
			rc = -ENOMEM;
			goto out;
		}
		for (size_t k = i; k < nnames && k < i + ECR_BATCH_MAX; k++)
			json_array_append_new(arr, json_string(names[k]));
		json_object_set_new(c.req, "repositoryNames", arr);
		rw.repository = names[i]; /* named in the not-found log line */
		rc = ecr_call_unpaged(e, &c, repos_page, out, err);
		if (rc)
			goto out;
	}
out:
	json_decref(c.req);
	if (rc)
		ecr_repo_list_free(out);
	return rc;
}

int ecr_create_repository(ecr *e, const struct ecr_where *w, int immutable, int *created,
			  struct ecr_error *err)
{
	struct ecr_call c = {.op = "CreateRepository", .region = w->region, .w = w};
	struct ecr_error eb, *er = err ? err : &eb;
	int rc;

	if (created)
		*created = 0;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		rc = -ENOMEM;
		goto out;
	}
	json_object_set_new(c.req, "imageTagMutability",
			    json_string(immutable ? "IMMUTABLE" : "MUTABLE"));
	rc = ecr_call(e, &c, NULL, er);
	/* RepositoryAlreadyExists maps to 0: someone (or our retry) made it. */
	if (rc == 0 && created && !er->code[0])
		*created = 1;
out:
	json_decref(c.req);
	return rc;
}

int ecr_delete_repository(ecr *e, const struct ecr_where *w, int force, struct ecr_error *err)
{
	static const char *const expected[] = {"RepositoryNotFoundException", NULL};
	struct ecr_call c = {.op = "DeleteRepository", .region = w->region, .w = w};
	struct ecr_error eb, *er = err ? err : &eb;
	int rc;

	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		rc = -ENOMEM;
		goto out;
	}
	if (force)
		json_object_set_new(c.req, "force", json_true());
	c.expected = expected;
	rc = ecr_call(e, &c, NULL, er);
	/* Not found after a retried delete: our first attempt did it. */
	if (rc == -ENOENT && c.retries > 0)
		rc = 0;
	else if (rc == -ENOENT)
		ecr_log_failure(&c, er, rc, NULL, 1);
out:
	json_decref(c.req);
	return rc;
}
