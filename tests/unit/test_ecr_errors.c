/* The errno table (README "Errors and what to do"), error code extraction, the IAM denial
 * message parser and the cause/fix log lines. */
#include <errno.h>

#include "check.h"
#include "net/ecr_i.h"

static void test_table(void)
{
	static const struct {
		const char *code;
		int err;
	} cases[] = {
	    {"AccessDeniedException", -EACCES},
	    {"UnrecognizedClientException", -EACCES},
	    {"InvalidSignatureException", -EACCES},
	    {"ExpiredTokenException", -EACCES},
	    {"MissingAuthenticationToken", -EACCES},
	    {"MissingAuthenticationTokenException", -EACCES},
	    {"RepositoryNotFoundException", -ENOENT},
	    {"ImageNotFoundException", -ENOENT},
	    {"UploadNotFoundException", -ENOENT},
	    {"RegistryPolicyNotFoundException", -ENOENT},
	    {"ImageTagAlreadyExistsException", -EEXIST},
	    {"LayersNotFoundException", -EIO},
	    {"ReferencedImagesNotFoundException", -EIO},
	    {"InvalidLayerException", -EIO},
	    {"LayerPartTooSmallException", -EIO},
	    {"EmptyUploadException", -EIO},
	    {"RepositoryNotEmptyException", -ENOTEMPTY},
	    {"InvalidParameterException", -EINVAL},
	    {"LimitExceededException", -EDQUOT},
	    {"ImageReferencedByManifestListException", -EBUSY},
	    {"ThrottlingException", -EIO},
	    {"TooManyRequestsException", -EIO},
	    {"ServerException", -EIO},
	    {"InvalidLayerPartException", -ERANGE},
	    {"LayerAlreadyExistsException", 0},
	    {"ImageAlreadyExistsException", 0},
	    {"RepositoryAlreadyExistsException", 0},
	    {"LifecyclePolicyNotFoundException", -ENOENT},
	    {"LifecyclePolicyPreviewNotFoundException", -ENOENT},
	    {"RepositoryPolicyNotFoundException", -ENOENT},
	    {"ScanNotFoundException", -ENODATA},
	    {"ImageArchivedException", -ENOMEDIUM},
	    {"ImageStorageClassUpdateNotSupportedException", -EINVAL},
	    {"ExclusionNotFoundException", -ENOENT},
	    {"ExclusionAlreadyExistsException", -EEXIST},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = ecr_errno(cases[i].code, 400, 0);
		if (got != cases[i].err) {
			fprintf(stderr, "ecr_errno(%s) = %d, expected %d\n", cases[i].code, got,
				cases[i].err);
			test_failures++;
		}
	}
	/* A prefix of a known code is not that code. */
	CHECK_INT(ecr_errno("InvalidLayerPartsException", 400, 0), -EINVAL);
	CHECK_INT(ecr_errno("ImageNotFoundExceptionX", 404, 0), -ENOENT); /* by status */

	/* No code: by HTTP status. */
	CHECK_INT(ecr_errno(NULL, 200, 0), 0);
	CHECK_INT(ecr_errno("", 403, 0), -EACCES);
	CHECK_INT(ecr_errno("", 404, 0), -ENOENT);
	CHECK_INT(ecr_errno("", 503, 0), -EIO);
	CHECK_INT(ecr_errno("", 429, 0), -EIO);
	CHECK_INT(ecr_errno("SomethingNew", 500, 0), -EIO);

	/* Transport: timeouts keep ETIMEDOUT, the rest become EIO. */
	CHECK_INT(ecr_errno(NULL, 0, -ETIMEDOUT), -ETIMEDOUT);
	CHECK_INT(ecr_errno(NULL, 0, -EINTR), -EINTR);
	CHECK_INT(ecr_errno(NULL, 0, -ECONNRESET), -EIO);
	CHECK_INT(ecr_errno(NULL, 0, -EPIPE), -EIO);
	CHECK_INT(ecr_errno(NULL, 0, -ECONNREFUSED), -ECONNREFUSED);
}

static void test_code(void)
{
	char c[96];

	ecr_error_code("com.amazonaws.ecr#RepositoryNotFoundException", c, sizeof(c));
	CHECK_STR(c, "RepositoryNotFoundException");
	ecr_error_code("a#b#ThrottlingException", c, sizeof(c));
	CHECK_STR(c, "ThrottlingException");
	ecr_error_code("ImageNotFoundException", c, sizeof(c));
	CHECK_STR(c, "ImageNotFoundException");
	ecr_error_code("ValidationException:http://internal.amazon.com/coral/", c, sizeof(c));
	CHECK_STR(c, "ValidationException");
	ecr_error_code(NULL, c, sizeof(c));
	CHECK_STR(c, "");
}

static void test_denied(void)
{
	char p[256], a[96], r[256];
	const char *msg = "User: arn:aws:iam::111111111111:user/readonly is not authorized to "
			  "perform: ecr:InitiateLayerUpload on resource: "
			  "arn:aws:ecr:us-east-1:111111111111:repository/team/app because no "
			  "identity-based policy allows the ecr:InitiateLayerUpload action";

	CHECK_INT(ecr_parse_denied(msg, p, sizeof(p), a, sizeof(a), r, sizeof(r)), 0);
	CHECK_STR(p, "arn:aws:iam::111111111111:user/readonly");
	CHECK_STR(a, "ecr:InitiateLayerUpload");
	CHECK_STR(r, "arn:aws:ecr:us-east-1:111111111111:repository/team/app");

	/* Assumed-role principal, explicit deny, resource at the end. */
	CHECK_INT(ecr_parse_denied("User: arn:aws:sts::222222222222:assumed-role/ci/s1 is not "
				   "authorized to perform: ecr:PutImage on resource: "
				   "arn:aws:ecr:eu-west-1:111111111111:repository/x",
				   p, sizeof(p), a, sizeof(a), r, sizeof(r)),
		  0);
	CHECK_STR(p, "arn:aws:sts::222222222222:assumed-role/ci/s1");
	CHECK_STR(a, "ecr:PutImage");
	CHECK_STR(r, "arn:aws:ecr:eu-west-1:111111111111:repository/x");

	/* No resource part. */
	CHECK_INT(ecr_parse_denied("User: arn:aws:iam::1:user/u is not authorized to perform: "
				   "ecr:DescribeRegistry",
				   p, sizeof(p), a, sizeof(a), r, sizeof(r)),
		  0);
	CHECK_STR(a, "ecr:DescribeRegistry");
	CHECK_STR(r, "");

	/* Small buffers truncate, never overflow. */
	char tiny[8];
	CHECK_INT(ecr_parse_denied(msg, tiny, sizeof(tiny), NULL, 0, NULL, 0), 0);
	CHECK_STR(tiny, "arn:aws");

	CHECK(ecr_parse_denied("Access denied", p, sizeof(p), a, sizeof(a), r, sizeof(r)) < 0);
	CHECK(ecr_parse_denied(NULL, p, sizeof(p), a, sizeof(a), r, sizeof(r)) < 0);
}

static void line_for(char *buf, size_t size, const char *op, const char *code, const char *msg,
		     const char *repo, const char *subject, int rc)
{
	struct ecr_where w = {.region = "us-east-1", .repository = repo};
	struct ecr_call c = {.op = op, .region = "us-east-1", .w = &w, .subject = subject};
	struct ecr_error err = {.http_status = 400};

	snprintf(err.code, sizeof(err.code), "%s", code);
	snprintf(err.message, sizeof(err.message), "%s", msg);
	ecr_format_failure(buf, size, &c, &err, rc, "environment", 1);
}

static void test_lines(void)
{
	char l[1536];

	line_for(l, sizeof(l), "InitiateLayerUpload", "AccessDeniedException",
		 "User: arn:aws:iam::111111111111:user/readonly is not authorized to perform: "
		 "ecr:InitiateLayerUpload on resource: "
		 "arn:aws:ecr:us-east-1:111111111111:repository/app because no identity-based "
		 "policy allows the ecr:InitiateLayerUpload action",
		 "app", NULL, -EACCES);
	CHECK_CONTAINS(l, "ecr:InitiateLayerUpload");
	CHECK_CONTAINS(l, "arn:aws:iam::111111111111:user/readonly");
	CHECK_CONTAINS(l, "repository/app");

	line_for(l, sizeof(l), "DescribeImages", "InvalidSignatureException",
		 "The request signature we calculated does not match the signature you provided.",
		 "app", NULL, -EACCES);
	CHECK_CONTAINS(l, "check clock and credentials");
	CHECK_CONTAINS(l, "environment");
	line_for(l, sizeof(l), "DescribeImages", "UnrecognizedClientException", "bad key", "app",
		 NULL, -EACCES);
	CHECK_CONTAINS(l, "check clock and credentials");
	line_for(l, sizeof(l), "DescribeImages", "ExpiredTokenException", "expired", "app", NULL,
		 -EACCES);
	CHECK_CONTAINS(l, "check clock and credentials");

	line_for(l, sizeof(l), "DescribeImages", "RepositoryNotFoundException",
		 "The repository with name 'x' does not exist in the registry with id "
		 "'111111111111'",
		 "x", NULL, -ENOENT);
	CHECK_CONTAINS(l, "repository 'x' not found in registry 111111111111 region us-east-1");

	line_for(l, sizeof(l), "PutImage", "ImageTagAlreadyExistsException",
		 "The image tag 'v1' already exists in the 'app' repository and cannot be "
		 "overwritten because the repository is immutable.",
		 "app", "v1", -EEXIST);
	CHECK_CONTAINS(l, "tag 'v1'");
	CHECK_CONTAINS(l, "immutable");
	CHECK_CONTAINS(l, "old image is kept");

	line_for(l, sizeof(l), "CompleteLayerUpload", "LayerPartTooSmallException", "too small",
		 "app", NULL, -EIO);
	CHECK_CONTAINS(l, "BUG in ecrfs");
	line_for(l, sizeof(l), "CompleteLayerUpload", "EmptyUploadException", "empty", "app", NULL,
		 -EIO);
	CHECK_CONTAINS(l, "BUG in ecrfs");

	line_for(l, sizeof(l), "DescribeImages", "ThrottlingException", "Rate exceeded", "app",
		 NULL, -ETIMEDOUT);
	CHECK_CONTAINS(l, "deadline passed");

	/* No credentials at all. */
	line_for(l, sizeof(l), "DescribeRegistry", "", "no credentials", NULL, NULL, -EACCES);
	CHECK_CONTAINS(l, "check clock and credentials");
}

int main(void)
{
	test_table();
	test_code();
	test_denied();
	test_lines();
	return check_summary("ecr_errors");
}
