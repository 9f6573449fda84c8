/* Today's ECR calls against the fake transport: what each sends (targets,
 * bodies, page sizes), how pages are merged, and the errno of each
 * refusal (ENOENT for a missing policy, ENODATA for a missing scan, EINVAL
 * with ECR's message, ENOMEDIUM for an archived image). */
#include <errno.h>

#include "check.h"
#include "fake_ecr.h"
#include "net/ecr_i.h"
#include "net/log.h"

#define T ECR_TARGET_PREFIX

/* f->ctx: NULL-terminated replies, one per call; an error body is a 400. */
static int reply_script(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	const char *const *r = f->ctx;

	(void)req;
	for (int k = 0; k < i; k++)
		if (!r[k])
			abort();
	if (!r[i])
		abort();
	*status = strstr(r[i], "\"__type\"") ? 400 : 200;
	*body = strdup(r[i]);
	return 0;
}

static ecr *scripted(struct fake *f, const char *const *replies)
{
	fake_reset(f);
	f->reply = reply_script;
	f->ctx = (void *)replies;
	return new_ecr(f);
}

static const struct ecr_where W = {
    .registry_id = "111111111111", .region = "us-east-1", .repository = "team/app"};

static void test_referrers(void)
{
	static const char *const r[] = {
	    "{\"referrers\":[{\"digest\":\"sha256:r1\",\"mediaType\":\"m\",\"size\":1}],"
	    "\"nextToken\":\"p2\"}",
	    "{\"referrers\":[{\"digest\":\"sha256:r2\",\"mediaType\":\"m\",\"size\":2,"
	    "\"artifactType\":\"application/spdx+json\"}]}",
	    NULL};
	const char *types[] = {"application/spdx+json",
			       "application/vnd.dev.cosign.artifact.sig.v1+json"};
	struct ecr_referrer_list l;
	struct fake f = {0};
	ecr *e = scripted(&f, r);

	CHECK_INT(ecr_list_image_referrers(e, &W, "sha256:subj", types, 2, 1, &l, NULL), 0);
	CHECK_INT(l.n, 2);
	CHECK_STR(l.v[1].artifact_type, "application/spdx+json");
	CHECK_INT(f.ncalls, 2);
	CHECK_STR(f.targets[0], T "ListImageReferrers");
	CHECK_INT(ecr_json_int(f.bodies[0], "maxResults", 0), 50);
	CHECK_STR(ecr_json_str(json_object_get(f.bodies[0], "subjectId"), "imageDigest"),
		  "sha256:subj");
	CHECK_STR(ecr_json_str(json_object_get(f.bodies[0], "filter"), "artifactStatus"), "ANY");
	CHECK_INT(json_array_size(
		      json_object_get(json_object_get(f.bodies[0], "filter"), "artifactTypes")),
		  2);
	CHECK_STR(ecr_json_str(f.bodies[1], "nextToken"), "p2");
	CHECK_STR(ecr_json_str(f.bodies[0], "repositoryName"), "team/app");
	ecr_referrer_list_free(&l);
	ecr_free(e);
	fake_reset(&f);
}

static void test_scan_findings(void)
{
	static const char *const r[] = {
	    "{\"registryId\":\"111111111111\",\"imageScanStatus\":{\"status\":\"COMPLETE\"},"
	    "\"imageScanFindings\":{\"findingSeverityCounts\":{\"HIGH\":3},\"findings\":"
	    "[{\"name\":\"CVE-1\"}]},\"nextToken\":\"a\"}",
	    "{\"imageScanFindings\":{\"findings\":[{\"name\":\"CVE-2\"}]},\"nextToken\":\"b\"}",
	    "{\"imageScanFindings\":{\"findings\":[{\"name\":\"CVE-3\"}]}}",
	    "{\"__type\":\"ScanNotFoundException\",\"message\":\"Image scan does not exist\"}",
	    NULL};
	struct ecr_image_id id = {.tag = "v1"};
	struct ecr_error err;
	struct fake f = {0};
	ecr *e = scripted(&f, r);
	char *text = NULL;

	CHECK_INT(ecr_describe_image_scan_findings(e, &W, &id, &text, &err), 0);
	CHECK_INT(f.ncalls, 3);
	CHECK_STR(ecr_json_str(json_object_get(f.bodies[0], "imageId"), "imageTag"), "v1");
	json_t *j = json_loads(text ? text : "", 0, NULL);
	const json_t *fs = json_object_get(json_object_get(j, "imageScanFindings"), "findings");
	CHECK_INT(json_array_size(fs), 3);
	CHECK_STR(ecr_json_str(json_array_get(fs, 2), "name"), "CVE-3");
	CHECK(json_object_get(j, "nextToken") == NULL);
	CHECK_STR(ecr_json_str(json_object_get(j, "imageScanStatus"), "status"), "COMPLETE");
	json_decref(j);
	free(text);
	CHECK_INT(ecr_describe_image_scan_findings(e, &W, &id, &text, &err), -ENODATA);
	CHECK(text == NULL);
	CHECK_STR(err.code, "ScanNotFoundException");
	ecr_free(e);
	fake_reset(&f);
}

static void test_lifecycle(void)
{
	static const char *const r[] = {
	    "{\"__type\":\"LifecyclePolicyNotFoundException\",\"message\":\"Lifecycle policy "
	    "does not exist\"}",
	    "{\"__type\":\"InvalidParameterException\",\"message\":\"Invalid parameter at "
	    "'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation "
	    "failure: rules'\"}",
	    "{\"registryId\":\"111111111111\",\"repositoryName\":\"team/app\","
	    "\"lifecyclePolicyText\":\"{}\"}",
	    "{\"lifecyclePolicyText\":\"{\\\"rules\\\":[]}\",\"lastEvaluatedAt\":1700000000.5}",
	    "{\"status\":\"IN_PROGRESS\"}",
	    "{\"status\":\"COMPLETE\",\"previewResults\":[{\"imageDigest\":\"sha256:1\"}],"
	    "\"summary\":{\"expiringImageTotalCount\":2},\"nextToken\":\"n\"}",
	    "{\"status\":\"COMPLETE\",\"previewResults\":[{\"imageDigest\":\"sha256:2\"}]}",
	    "{}",
	    NULL};
	struct ecr_error err;
	struct fake f = {0};
	ecr *e = scripted(&f, r);
	char *text = NULL;
	time_t at = 7;
	int complete = 0;

	CHECK_INT(ecr_get_lifecycle_policy(e, &W, &text, &at, &err), -ENOENT);
	CHECK(text == NULL);
	CHECK_INT(at, 0);
	CHECK_INT(ecr_put_lifecycle_policy(e, &W, "{\"rules\":[]}", &err), -EINVAL);
	CHECK_CONTAINS(err.message, "Lifecycle policy validation failure");
	CHECK_STR(ecr_json_str(f.bodies[1], "lifecyclePolicyText"), "{\"rules\":[]}");
	CHECK_INT(ecr_put_lifecycle_policy(e, &W, "{}", &err), 0);
	CHECK_INT(ecr_get_lifecycle_policy(e, &W, &text, &at, &err), 0);
	CHECK_STR(text, "{\"rules\":[]}");
	CHECK_INT(at, 1700000000);
	free(text);
	CHECK_INT(ecr_start_lifecycle_policy_preview(e, &W, NULL, &err), 0);
	CHECK(json_object_get(f.bodies[4], "lifecyclePolicyText") == NULL);
	CHECK_INT(ecr_get_lifecycle_policy_preview(e, &W, &text, &complete, &err), 0);
	CHECK_INT(complete, 1);
	CHECK_INT(ecr_json_int(f.bodies[5], "maxResults", 0), 100);
	json_t *j = json_loads(text ? text : "", 0, NULL);
	CHECK_INT(json_array_size(json_object_get(j, "previewResults")), 2);
	json_decref(j);
	free(text);
	CHECK_INT(ecr_delete_lifecycle_policy(e, &W, &err), 0);
	CHECK_STR(f.targets[7], T "DeleteLifecyclePolicy");
	ecr_free(e);
	fake_reset(&f);
}

static void test_repository_policy_and_settings(void)
{
	static const char *const r[] = {
	    "{\"__type\":\"RepositoryPolicyNotFoundException\",\"message\":\"none\"}",
	    "{\"policyText\":\"{}\"}",
	    "{\"policyText\":\"{\\\"Statement\\\":[]}\"}",
	    "{\"__type\":\"RepositoryPolicyNotFoundException\",\"message\":\"none\"}",
	    "{}",
	    "{}",
	    "{}",
	    NULL};
	const char *filters[] = {"latest", "dev-*"};
	struct ecr_error err;
	struct fake f = {0};
	ecr *e = scripted(&f, r);
	char *text = NULL;

	CHECK_INT(ecr_get_repository_policy(e, &W, &text, &err), -ENOENT);
	CHECK_INT(ecr_set_repository_policy(e, &W, "{}", 1, &err), 0);
	CHECK(json_is_true(json_object_get(f.bodies[1], "force")));
	CHECK_INT(ecr_get_repository_policy(e, &W, &text, &err), 0);
	CHECK_STR(text, "{\"Statement\":[]}");
	free(text);
	CHECK_INT(ecr_delete_repository_policy(e, &W, &err), -ENOENT);
	CHECK_INT(ecr_put_image_scanning_configuration(e, &W, 1, &err), 0);
	CHECK(json_is_true(json_object_get(
	    json_object_get(f.bodies[4], "imageScanningConfiguration"), "scanOnPush")));
	CHECK_INT(
	    ecr_put_image_tag_mutability(e, &W, ECR_MUT_IMMUTABLE_WITH_EXCLUSION, filters, 2, &err),
	    0);
	CHECK_STR(ecr_json_str(f.bodies[5], "imageTagMutability"), "IMMUTABLE_WITH_EXCLUSION");
	const json_t *fl = json_object_get(f.bodies[5], "imageTagMutabilityExclusionFilters");
	CHECK_INT(json_array_size(fl), 2);
	CHECK_STR(ecr_json_str(json_array_get(fl, 1), "filter"), "dev-*");
	CHECK_STR(ecr_json_str(json_array_get(fl, 1), "filterType"), "WILDCARD");
	CHECK_INT(ecr_put_image_tag_mutability(e, &W, ECR_MUT_MUTABLE, NULL, 0, &err), 0);
	CHECK(json_object_get(f.bodies[6], "imageTagMutabilityExclusionFilters") == NULL);
	CHECK_INT(ecr_put_image_tag_mutability(e, &W, ECR_MUT_UNKNOWN, NULL, 0, &err), -EINVAL);
	CHECK_INT(f.ncalls, 7);
	ecr_free(e);
	fake_reset(&f);
}

static void test_archive(void)
{
	static const char *const r[] = {
	    "{\"imageId\":{\"imageDigest\":\"sha256:a\"},\"imageStatus\":\"ACTIVATING\"}",
	    "{\"__type\":\"ImageArchivedException\",\"message\":\"is archived\"}",
	    "{\"images\":[],\"failures\":[{\"imageId\":{\"imageTag\":\"v1\"},"
	    "\"failureCode\":\"ImageInaccessible\",\"failureReason\":\"archived\"}]}",
	    NULL};
	struct ecr_image_id id = {.digest = "sha256:a"}, tag = {.tag = "v1"};
	struct ecr_manifest_list ml;
	struct ecr_error err;
	struct fake f = {0};
	ecr *e = scripted(&f, r);
	char *st = NULL, *url = NULL;
	time_t exp;

	CHECK_INT(ecr_update_image_storage_class(e, &W, &id, "STANDARD", &st, &err), 0);
	CHECK_STR(st, "ACTIVATING");
	free(st);
	CHECK_STR(ecr_json_str(f.bodies[0], "targetStorageClass"), "STANDARD");
	CHECK_STR(ecr_json_str(json_object_get(f.bodies[0], "imageId"), "imageDigest"), "sha256:a");
	CHECK_INT(ecr_get_download_url(e, &W, "sha256:l", &url, &exp, &err), -ENOMEDIUM);
	CHECK_INT(ecr_batch_get_image(e, &W, &tag, 1, &ml, &err), -ENOMEDIUM);
	ecr_free(e);
	fake_reset(&f);
}

static void test_pull_time_exclusions(void)
{
	static const char *const r[] = {
	    "{\"pullTimeUpdateExclusions\":[\"arn:aws:iam::1:role/a\"],\"nextToken\":\"x\"}",
	    "{\"pullTimeUpdateExclusions\":[\"arn:aws:iam::1:role/b\"]}", NULL};
	struct fake f = {0};
	ecr *e = scripted(&f, r);
	char **arns = NULL;
	size_t n = 0;

	CHECK_INT(ecr_list_pull_time_exclusions(e, "us-east-1", &arns, &n, NULL), 0);
	CHECK_INT(n, 2);
	CHECK_STR(n == 2 ? arns[1] : NULL, "arn:aws:iam::1:role/b");
	CHECK_STR(f.targets[1], T "ListPullTimeUpdateExclusions");
	CHECK(json_object_get(f.bodies[0], "registryId") == NULL);
	ecr_strv_free(arns, n);
	ecr_free(e);
	fake_reset(&f);
}

int main(void)
{
	log_init(LOG_TO_STDERR, NULL, LOGL_ERR);
	test_referrers();
	test_scan_findings();
	test_lifecycle();
	test_repository_policy_and_settings();
	test_archive();
	test_pull_time_exclusions();
	return check_summary("ecr_today");
}
