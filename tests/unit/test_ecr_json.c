/* Parsing ECR's reply pages: DescribeImages, DescribeRepositories,
 * ListImages, and BatchGetImage with the exact manifest bytes kept. */
#include <errno.h>
#include <openssl/sha.h>

#include "check.h"
#include "net/ecr_i.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_ALLOW_NUL, &e);
	if (!j) {
		fprintf(stderr, "bad test JSON: %s\n", e.text);
		exit(2);
	}
	return j;
}

static void test_describe_images(void)
{
	/* As ECR sends it: timestamps are epoch floats, untagged images have
	 * no imageTags, scan status optional. */
	json_t *j = parse(
	    "{\"imageDetails\":["
	    "{\"registryId\":\"111111111111\",\"repositoryName\":\"team/app\","
	    "\"imageDigest\":\"sha256:aaaa\",\"imageTags\":[\"v1\",\"latest\"],"
	    "\"imageSizeInBytes\":31415926535,\"imagePushedAt\":1700000000.123,"
	    "\"imageManifestMediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"artifactMediaType\":\"application/vnd.oci.image.config.v1+json\","
	    "\"imageScanStatus\":{\"status\":\"COMPLETE\",\"description\":\"ok\"}},"
	    "{\"registryId\":\"111111111111\",\"repositoryName\":\"team/app\","
	    "\"imageDigest\":\"sha256:bbbb\",\"imageSizeInBytes\":12,\"imagePushedAt\":1600000000}"
	    "],\"nextToken\":\"tok-2\"}");
	struct ecr_image_list l = {0};
	char *next = NULL;

	CHECK_INT(ecr_parse_images_page(j, &l, &next), 0);
	CHECK_INT(l.n, 2);
	CHECK_STR(next, "tok-2");
	CHECK_STR(l.v[0].digest, "sha256:aaaa");
	CHECK_INT(l.v[0].ntags, 2);
	CHECK_STR(l.v[0].tags[0], "v1");
	CHECK_STR(l.v[0].tags[1], "latest");
	CHECK_INT(l.v[0].size, 31415926535LL);
	CHECK_INT(l.v[0].pushed_at, 1700000000);
	CHECK_STR(l.v[0].media_type, "application/vnd.oci.image.manifest.v1+json");
	CHECK_STR(l.v[0].artifact_media_type, "application/vnd.oci.image.config.v1+json");
	CHECK_STR(l.v[0].scan_status, "COMPLETE");
	CHECK_STR(l.v[1].digest, "sha256:bbbb");
	CHECK_INT(l.v[1].ntags, 0);
	CHECK(l.v[1].media_type == NULL);
	CHECK(l.v[1].scan_status == NULL);
	CHECK_INT(l.v[1].pushed_at, 1600000000);
	free(next);
	json_decref(j);

	/* A second page appends; the last page has no nextToken. */
	j = parse("{\"imageDetails\":[{\"imageDigest\":\"sha256:cccc\",\"imageTags\":[\"x\"]}]}");
	CHECK_INT(ecr_parse_images_page(j, &l, &next), 0);
	CHECK_INT(l.n, 3);
	CHECK(next == NULL);
	CHECK_STR(l.v[2].tags[0], "x");
	json_decref(j);
	ecr_image_list_free(&l);
	CHECK_INT(l.n, 0);

	/* Not an ECR reply. */
	j = parse("{\"message\":\"x\"}");
	CHECK_INT(ecr_parse_images_page(j, &l, &next), -EPROTO);
	json_decref(j);
	ecr_image_list_free(&l);
}

static void test_repos_and_refs(void)
{
	json_t *j =
	    parse("{\"repositories\":[{\"repositoryArn\":\"arn:aws:ecr:us-east-1:111111111111:"
		  "repository/team/app\",\"registryId\":\"111111111111\",\"repositoryName\":"
		  "\"team/app\",\"repositoryUri\":\"111111111111.dkr.ecr.us-east-1.amazonaws.com/"
		  "team/app\",\"createdAt\":1690000000.5,\"imageTagMutability\":\"IMMUTABLE\","
		  "\"imageScanningConfiguration\":{\"scanOnPush\":true}},"
		  "{\"repositoryName\":\"b\",\"imageTagMutability\":\"MUTABLE\"}]}");
	struct ecr_repo_list r = {0};
	struct ecr_image_ref_list refs = {0};
	char *next = (char *)1;

	CHECK_INT(ecr_parse_repos_page(j, &r, &next), 0);
	CHECK(next == NULL);
	CHECK_INT(r.n, 2);
	CHECK_STR(r.v[0].name, "team/app");
	CHECK_STR(r.v[0].registry_id, "111111111111");
	CHECK_STR(r.v[0].uri, "111111111111.dkr.ecr.us-east-1.amazonaws.com/team/app");
	CHECK_INT(r.v[0].immutable, 1);
	CHECK_INT(r.v[0].scan_on_push, 1);
	CHECK_INT(r.v[0].created_at, 1690000000);
	CHECK_STR(r.v[1].name, "b");
	CHECK_INT(r.v[1].immutable, 0);
	ecr_repo_list_free(&r);
	json_decref(j);

	j = parse("{\"imageIds\":[{\"imageDigest\":\"sha256:a\",\"imageTag\":\"v1\"},"
		  "{\"imageDigest\":\"sha256:b\"}],\"nextToken\":\"n\"}");
	CHECK_INT(ecr_parse_image_refs_page(j, &refs, &next), 0);
	CHECK_INT(refs.n, 2);
	CHECK_STR(refs.v[0].tag, "v1");
	CHECK(refs.v[1].tag == NULL);
	CHECK_STR(refs.v[1].digest, "sha256:b");
	CHECK_STR(next, "n");
	free(next);
	ecr_image_ref_list_free(&refs);
	json_decref(j);
}

static void test_batch_get_exact_bytes(void)
{
	/* The manifest as a JSON string with escapes: quotes, backslash, a
	 * newline, tab, an escaped slash, a non-ASCII character written both
	 * as UTF-8 and as \u escapes, and a surrogate pair. The bytes kept
	 * must be the decoded string, byte for byte. */
	const char *reply =
	    "{\"images\":[{\"registryId\":\"111111111111\",\"repositoryName\":\"app\","
	    "\"imageId\":{\"imageDigest\":\"sha256:d1\",\"imageTag\":\"v1\"},"
	    "\"imageManifest\":\"{\\n\\t\\\"schemaVersion\\\": 2,\\n\\t\\\"a\\\": "
	    "\\\"q\\\\\\\"uote\\\\\\\\ \\/sl\\u00e9 \xc3\xa9 \\ud83d\\ude00\\\"\\n}\","
	    "\"imageManifestMediaType\":\"application/vnd.oci.image.manifest.v1+json\"}],"
	    "\"failures\":[{\"imageId\":{\"imageTag\":\"gone\"},\"failureCode\":"
	    "\"ImageNotFound\",\"failureReason\":\"Requested image not found\"}]}";
	const char expected[] = "{\n\t\"schemaVersion\": 2,\n\t\"a\": \"q\\\"uote\\\\ /sl"
				"\xc3\xa9 \xc3\xa9 \xf0\x9f\x98\x80\"\n}";
	json_t *j = parse(reply);
	struct ecr_manifest_list l = {0};

	CHECK_INT(ecr_parse_batch_get(j, &l), 0);
	CHECK_INT(l.n, 1);
	CHECK_INT(l.v[0].len, sizeof(expected) - 1);
	CHECK(l.v[0].len == sizeof(expected) - 1 &&
	      memcmp(l.v[0].bytes, expected, sizeof(expected) - 1) == 0);
	CHECK_INT(l.v[0].bytes[l.v[0].len], 0);
	CHECK_STR(l.v[0].digest, "sha256:d1");
	CHECK_STR(l.v[0].tag, "v1");
	CHECK_STR(l.v[0].media_type, "application/vnd.oci.image.manifest.v1+json");
	CHECK_INT(l.nfailed, 1);
	CHECK_STR(l.failed[0].tag, "gone");
	CHECK(l.failed[0].digest == NULL);
	CHECK_STR(l.failure_codes[0], "ImageNotFound");
	ecr_manifest_list_free(&l);
	json_decref(j);

	/* Round trip: a manifest serialised by jansson in a request (as
	 * PutImage sends it) and parsed back keeps the same sha256. */
	json_t *s = json_stringn(expected, sizeof(expected) - 1);
	json_t *o =
	    json_pack("{s:{s:s},s:O}", "imageId", "imageDigest", "sha256:x", "imageManifest", s);
	json_t *arr = json_pack("{s:[O]}", "images", o);
	char *text = json_dumps(arr, JSON_COMPACT);
	json_t *back = parse(text);
	unsigned char h1[32], h2[32];

	CHECK_INT(ecr_parse_batch_get(back, &l), 0);
	CHECK_INT(l.n, 1);
	SHA256((const unsigned char *)expected, sizeof(expected) - 1, h1);
	SHA256((const unsigned char *)l.v[0].bytes, l.v[0].len, h2);
	CHECK(memcmp(h1, h2, 32) == 0);
	ecr_manifest_list_free(&l);
	free(text);
	json_decref(back);
	json_decref(arr);
	json_decref(o);
	json_decref(s);
}

static void test_where_and_ids(void)
{
	struct ecr_where w = {
	    .registry_id = "111111111111", .region = "us-east-1", .repository = "team/app"};
	struct ecr_image_id ids[] = {
	    {.tag = "v1"}, {.digest = "sha256:ab"}, {.digest = "sha256:cd", .tag = "t"}};
	json_t *req = json_object();
	char *s;

	CHECK_INT(ecr_json_where(req, &w), 0);
	json_object_set_new(req, "imageIds", ecr_json_image_ids(ids, 3));
	s = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(s, "{\"imageIds\":[{\"imageTag\":\"v1\"},{\"imageDigest\":\"sha256:ab\"},"
		     "{\"imageDigest\":\"sha256:cd\",\"imageTag\":\"t\"}],\"registryId\":"
		     "\"111111111111\",\"repositoryName\":\"team/app\"}");
	free(s);
	json_decref(req);

	/* Own registry: no registryId sent. */
	w.registry_id = NULL;
	req = json_object();
	CHECK_INT(ecr_json_where(req, &w), 0);
	CHECK(json_object_get(req, "registryId") == NULL);
	json_decref(req);
}

/* Tag mutability: all four values parsed whole (IMMUTABLE is a prefix of
 * IMMUTABLE_WITH_EXCLUSION), exclusion filters kept, per-tag answers. */
static void test_mutability(void)
{
	json_t *j =
	    parse("{\"repositories\":["
		  "{\"repositoryName\":\"a\",\"imageTagMutability\":\"IMMUTABLE_WITH_EXCLUSION\","
		  "\"imageTagMutabilityExclusionFilters\":[{\"filterType\":\"WILDCARD\",\"filter\":"
		  "\"latest\"},{\"filterType\":\"WILDCARD\",\"filter\":\"dev-*\"},{\"filterType\":"
		  "\"REGEX\",\"filter\":\".*\"}],\"encryptionConfiguration\":{\"encryptionType\":"
		  "\"KMS\",\"kmsKey\":\"arn:aws:kms:us-east-1:111111111111:key/k\"}},"
		  "{\"repositoryName\":\"b\",\"imageTagMutability\":\"MUTABLE_WITH_EXCLUSION\","
		  "\"imageTagMutabilityExclusionFilters\":[{\"filterType\":\"WILDCARD\",\"filter\":"
		  "\"v*.*\"}]},"
		  "{\"repositoryName\":\"c\",\"imageTagMutability\":\"IMMUTABLE\"},"
		  "{\"repositoryName\":\"d\"},"
		  "{\"repositoryName\":\"e\",\"imageTagMutability\":\"IMMUTABLE_SOMEDAY\"}]}");
	struct ecr_repo_list r = {0};
	char *next = NULL;

	CHECK_INT(ecr_parse_repos_page(j, &r, &next), 0);
	CHECK_INT(r.n, 5);
	CHECK_INT(r.v[0].mutability, ECR_MUT_IMMUTABLE_WITH_EXCLUSION);
	CHECK_INT(r.v[0].immutable, 0); /* not every tag */
	CHECK_INT(r.v[0].nmutability_filters, 2);
	CHECK_STR(r.v[0].mutability_filters[1], "dev-*");
	CHECK_STR(r.v[0].encryption_type, "KMS");
	CHECK_STR(r.v[0].kms_key, "arn:aws:kms:us-east-1:111111111111:key/k");
	CHECK_INT(ecr_repo_tag_immutable(&r.v[0], "latest"), 0);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[0], "dev-42"), 0);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[0], "v1.0"), 1);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[0], "latest2"), 1);
	CHECK_INT(r.v[1].mutability, ECR_MUT_MUTABLE_WITH_EXCLUSION);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[1], "v1.2"), 1);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[1], "v12"), 0);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[1], "latest"), 0);
	CHECK_INT(r.v[2].mutability, ECR_MUT_IMMUTABLE);
	CHECK_INT(r.v[2].immutable, 1);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[2], "anything"), 1);
	CHECK_INT(r.v[3].mutability, ECR_MUT_MUTABLE);
	CHECK(r.v[3].encryption_type == NULL);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[3], "latest"), 0);
	CHECK_INT(r.v[4].mutability, ECR_MUT_UNKNOWN);
	CHECK_INT(r.v[4].immutable, 0);
	CHECK_INT(ecr_repo_tag_immutable(&r.v[4], "x"), 0);
	ecr_repo_list_free(&r);
	json_decref(j);

	CHECK_STR(ecr_mutability_name(ECR_MUT_MUTABLE_WITH_EXCLUSION), "MUTABLE_WITH_EXCLUSION");
	CHECK(ecr_mutability_name(ECR_MUT_UNKNOWN) == NULL);
	CHECK_INT(ecr_mutability_parse("IMMUTABLE"), ECR_MUT_IMMUTABLE);
	CHECK_INT(ecr_mutability_parse(NULL), ECR_MUT_MUTABLE);
}

static void test_wildcard(void)
{
	static const struct {
		const char *p, *s;
		int hit;
	} cases[] = {
	    {"latest", "latest", 1}, {"latest", "latest2", 0}, {"latest", "Latest", 0},
	    {"dev-*", "dev-", 1},    {"dev-*", "dev-1", 1},    {"dev-*", "xdev-1", 0},
	    {"*-rc", "1.0-rc", 1},   {"*-rc", "1.0-rc1", 0},   {"v*.*", "v1.2", 1},
	    {"v*.*", "v12", 0},	     {"a.b", "aXb", 0},	       {"*", "x", 1},
	    {"**", "x", 1},	     {"*a*b*", "xaxxbx", 1},   {"*a*b", "xaxbxc", 0},
	    {"a*a*a", "aaa", 1},     {"a*a*a", "aa", 0},       {"", "", 1},
	};
	const char *f[] = {"release-*", "latest"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (ecr_wildcard_match(cases[i].p, cases[i].s) != cases[i].hit)
			CHECK_FAILED("wildcard %s vs %s, expected %d", cases[i].p, cases[i].s,
				     cases[i].hit);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_MUTABLE, f, 2, "latest"), 0);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_IMMUTABLE, NULL, 0, "latest"), 1);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_IMMUTABLE_WITH_EXCLUSION, f, 2, "release-1"), 0);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_IMMUTABLE_WITH_EXCLUSION, f, 2, "v1"), 1);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_MUTABLE_WITH_EXCLUSION, f, 2, "release-1"), 1);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_MUTABLE_WITH_EXCLUSION, f, 2, "v1"), 0);
	CHECK_INT(ecr_tag_immutable(ECR_MUT_UNKNOWN, f, 2, "latest"), 0);
}

/* DescribeImages fields of today's ECR. */
static void test_image_today(void)
{
	json_t *j = parse(
	    "{\"imageDetails\":[{\"imageDigest\":\"sha256:aaaa\",\"imageTags\":[\"a\",\"b\",\"c\"],"
	    "\"imageSizeInBytes\":1234,\"imagePushedAt\":1700000000,"
	    "\"lastRecordedPullTime\":1700000500.75,\"imageStatus\":\"ARCHIVED\","
	    "\"lastArchivedAt\":1700000600,\"lastActivatedAt\":1700000400,"
	    "\"subjectManifestDigest\":\"sha256:subj\","
	    "\"artifactMediaType\":\"application/spdx+json\","
	    "\"imageScanStatus\":{\"status\":\"COMPLETE\"},"
	    "\"imageScanFindingsSummary\":{\"imageScanCompletedAt\":1700000700,"
	    "\"findingSeverityCounts\":{\"CRITICAL\":2,\"HIGH\":5,\"LOW\":1,\"UNDEFINED\":3}}},"
	    "{\"imageDigest\":\"sha256:bbbb\",\"imageStatus\":\"ACTIVE\"},"
	    "{\"imageDigest\":\"sha256:cccc\"}]}");
	struct ecr_image_list l = {0};
	char *next = NULL;

	CHECK_INT(ecr_parse_images_page(j, &l, &next), 0);
	CHECK_INT(l.n, 3);
	CHECK_INT(l.v[0].ntags, 3);
	CHECK_INT(l.v[0].size, 1234);
	CHECK_INT(l.v[0].last_pulled_at, 1700000500);
	CHECK_STR(l.v[0].status, "ARCHIVED");
	CHECK_INT(ecr_image_archived(&l.v[0]), 1);
	CHECK_INT(l.v[0].archived_at, 1700000600);
	CHECK_INT(l.v[0].activated_at, 1700000400);
	CHECK_STR(l.v[0].subject_digest, "sha256:subj");
	CHECK_STR(l.v[0].artifact_media_type, "application/spdx+json");
	CHECK_INT(l.v[0].scan_counts.have, 1);
	CHECK_INT(l.v[0].scan_completed_at, 1700000700);
	CHECK_INT(l.v[0].scan_counts.critical, 2);
	CHECK_INT(l.v[0].scan_counts.high, 5);
	CHECK_INT(l.v[0].scan_counts.medium, 0);
	CHECK_INT(l.v[0].scan_counts.low, 1);
	CHECK_INT(l.v[0].scan_counts.undefined, 3);
	CHECK_INT(ecr_image_archived(&l.v[1]), 0);
	CHECK(l.v[2].status == NULL && l.v[2].subject_digest == NULL);
	CHECK_INT(ecr_image_archived(&l.v[2]), 0);
	CHECK_INT(l.v[2].last_pulled_at, 0);
	CHECK_INT(l.v[2].scan_counts.have, 0);
	ecr_image_list_free(&l);
	json_decref(j);
}

static void test_referrers_page(void)
{
	json_t *j = parse(
	    "{\"referrers\":[{\"digest\":\"sha256:r1\",\"mediaType\":\"application/vnd.oci.image."
	    "manifest.v1+json\",\"artifactType\":\"application/vnd.dev.cosign.artifact.sig.v1+json"
	    "\",\"size\":512,\"annotations\":{\"b\":\"2\",\"a\":\"1\"},\"artifactStatus\":"
	    "\"ACTIVE\"},{\"mediaType\":\"x\"},{\"digest\":\"sha256:r2\",\"mediaType\":\"m\","
	    "\"size\":7}],\"nextToken\":\"t\"}");
	struct ecr_referrer_list l = {0};
	char *next = NULL;

	CHECK_INT(ecr_parse_referrers_page(j, &l, &next), 0);
	CHECK_INT(l.n, 2); /* the entry without a digest is skipped */
	CHECK_STR(next, "t");
	CHECK_STR(l.v[0].artifact_type, "application/vnd.dev.cosign.artifact.sig.v1+json");
	CHECK_INT(l.v[0].size, 512);
	CHECK_STR(l.v[0].annotations_json, "{\"a\":\"1\",\"b\":\"2\"}");
	CHECK_STR(l.v[0].status, "ACTIVE");
	CHECK(l.v[1].artifact_type == NULL && l.v[1].annotations_json == NULL);
	free(next);
	ecr_referrer_list_free(&l);
	json_decref(j);
}

int main(void)
{
	test_describe_images();
	test_repos_and_refs();
	test_batch_get_exact_bytes();
	test_where_and_ids();
	test_mutability();
	test_wildcard();
	test_image_today();
	test_referrers_page();
	return check_summary("ecr_json");
}
