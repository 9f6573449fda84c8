/* The single ECR/HTTP error -> errno table and the one log line
 * per failure that names its cause and the fix. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/ecr_i.h"
#include "net/log.h"

struct code_map {
	const char *code; /* without the "Exception" suffix */
	int err;	  /* positive errno, 0 = success */
};

static const struct code_map code_table[] = {
    {"AccessDenied", EACCES},
    {"UnrecognizedClient", EACCES},
    {"InvalidSignature", EACCES},
    {"SignatureDoesNotMatch", EACCES},
    {"IncompleteSignature", EACCES},
    {"ExpiredToken", EACCES},
    {"MissingAuthenticationToken", EACCES},
    {"InvalidClientTokenId", EACCES},
    {"RepositoryNotFound", ENOENT},
    {"ImageNotFound", ENOENT},
    {"UploadNotFound", ENOENT},
    {"RegistryPolicyNotFound", ENOENT},
    {"RepositoryPolicyNotFound", ENOENT},
    {"LifecyclePolicyNotFound", ENOENT},
    {"ImageTagAlreadyExists", EEXIST},
    {"LayersNotFound", EIO},
    {"ReferencedImagesNotFound", EIO},
    {"InvalidLayer", EIO},
    {"LayerPartTooSmall", EIO},
    {"EmptyUpload", EIO},
    {"ImageDigestDoesNotMatch", EIO},
    {"KmsError", EIO},
    {"Kms", EIO},
    {"InvalidLayerPart", ERANGE},
    {"RepositoryNotEmpty", ENOTEMPTY},
    {"InvalidParameter", EINVAL},
    {"InvalidTagParameter", EINVAL},
    {"Validation", EINVAL},
    {"UnsupportedImageType", EINVAL},
    {"LimitExceeded", EDQUOT},
    {"TooManyTags", EDQUOT},
    {"ImageReferencedByManifestList", EBUSY},
    {"Throttling", EIO},
    {"TooManyRequests", EIO},
    {"Server", EIO},
    {"ServiceUnavailable", EIO},
    {"InternalFailure", EIO},
    {"LayerAlreadyExists", 0},
    {"ImageAlreadyExists", 0},
    {"RepositoryAlreadyExists", 0},
};

static int code_is(const char *code, const char *base)
{
	size_t n = strlen(base);
	if (strncmp(code, base, n) != 0)
		return 0;
	return code[n] == '\0' || strcmp(code + n, "Exception") == 0;
}

int ecr_errno(const char *code, long http_status, int transport_rc)
{
	if (transport_rc < 0) {
		switch (-transport_rc) {
		case ETIMEDOUT:
		case EINTR:
		case ECONNREFUSED:
		case EHOSTUNREACH:
		case ENETUNREACH:
		case ENOMEM:
		case EFBIG:
		case EKEYEXPIRED:
			return transport_rc;
		default:
			return -EIO;
		}
	}
	if (code && *code) {
		for (size_t i = 0; i < sizeof(code_table) / sizeof(code_table[0]); i++)
			if (code_is(code, code_table[i].code))
				return -code_table[i].err;
	}
	if (http_status >= 200 && http_status < 300)
		return 0;
	if (http_status == 401 || http_status == 403)
		return -EACCES;
	if (http_status == 404)
		return -ENOENT;
	if (http_status == 413)
		return -EFBIG;
	if (http_status == 400 || http_status == 422)
		return -EINVAL;
	return -EIO;
}

void ecr_error_code(const char *type, char *out, size_t size)
{
	const char *p;

	if (!size)
		return;
	out[0] = '\0';
	if (!type)
		return;
	/* "com.amazonaws.ecr#RepositoryNotFoundException" or, from some
	 * front ends, "RepositoryNotFoundException:http://..." */
	p = strrchr(type, '#');
	p = p ? p + 1 : type;
	snprintf(out, size, "%.*s", (int)strcspn(p, ":"), p);
}

static void copy_span(char *dst, size_t size, const char *src, size_t n)
{
	if (!dst || !size)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int ecr_parse_denied(const char *msg, char *principal, size_t psize, char *action, size_t asize,
		     char *resource, size_t rsize)
{
	static const char k_user[] = "User: ";
	static const char k_perf[] = " is not authorized to perform: ";
	static const char k_res[] = " on resource: ";
	const char *u, *p, *a_end, *r, *r_end;

	if (!msg)
		return -ENOENT;
	u = strstr(msg, k_user);
	if (!u)
		return -ENOENT;
	u += sizeof(k_user) - 1;
	p = strstr(u, k_perf);
	if (!p)
		return -ENOENT;
	copy_span(principal, psize, u, (size_t)(p - u));
	p += sizeof(k_perf) - 1;
	r = strstr(p, k_res);
	a_end = r ? r : p + strcspn(p, " ");
	copy_span(action, asize, p, (size_t)(a_end - p));
	if (r) {
		r += sizeof(k_res) - 1;
		r_end = r + strcspn(r, " ");
		/* "...repository/x because no identity-based policy..." */
		copy_span(resource, rsize, r, (size_t)(r_end - r));
	} else {
		copy_span(resource, rsize, "", 0);
	}
	return 0;
}

/* ECR's not-found messages name the registry id: "... registry with id '1111'". */
static void registry_of(const struct ecr_call *c, const struct ecr_error *err, char *buf,
			size_t size)
{
	const char *p;

	if (c->w && c->w->registry_id) {
		snprintf(buf, size, "%s", c->w->registry_id);
		return;
	}
	p = strstr(err->message, "with id '");
	if (p) {
		p += strlen("with id '");
		snprintf(buf, size, "%.*s", (int)strcspn(p, "'"), p);
		return;
	}
	snprintf(buf, size, "(caller's own)");
}

void ecr_format_failure(char *buf, size_t size, const struct ecr_call *c,
			const struct ecr_error *err, int rc, const char *cred_source, int attempts)
{
	const char *code = err->code;
	const char *repo = c->w && c->w->repository ? c->w->repository : "";
	const char *region = c->region ? c->region : "?";
	const char *subj = c->subject ? c->subject : "";
	const char *src = cred_source && *cred_source ? cred_source : "none";
	char reg[64];

	registry_of(c, err, reg, sizeof(reg));
	if (!*code && rc == -EACCES) {
		snprintf(buf, size,
			 "ecr %s in %s: no usable credentials (%s); check clock and credentials",
			 c->op, region, *err->message ? err->message : "see the sources tried");
	} else if (!*code && err->http_status > 0) {
		snprintf(buf, size,
			 "ecr %s in %s: HTTP %ld without an ECR error code (a proxy, or not an "
			 "ECR endpoint?) after %d attempt(s)",
			 c->op, region, err->http_status, attempts);
	} else if (!*code) {
		snprintf(buf, size,
			 "ecr %s in %s failed after %d attempt(s): %s%s%s (HTTP %ld); check "
			 "network access to the ECR endpoint",
			 c->op, region, attempts, strerror(-rc), *err->message ? ": " : "",
			 err->message, err->http_status);
	} else if (code_is(code, "AccessDenied")) {
		char principal[256], action[96], resource[256];
		if (ecr_parse_denied(err->message, principal, sizeof(principal), action,
				     sizeof(action), resource, sizeof(resource)) == 0)
			snprintf(buf, size,
				 "ecr %s denied: IAM principal %s is not allowed %s on %s; "
				 "grant %s to that principal (identity or repository policy)",
				 c->op, principal, action, *resource ? resource : "the resource",
				 action);
		else
			snprintf(buf, size,
				 "ecr %s denied (AccessDeniedException: %s); grant ecr:%s to the "
				 "caller (credentials from %s)",
				 c->op, err->message, c->op, src);
	} else if (code_is(code, "UnrecognizedClient") || code_is(code, "InvalidSignature") ||
		   code_is(code, "SignatureDoesNotMatch") || code_is(code, "ExpiredToken") ||
		   code_is(code, "IncompleteSignature") ||
		   code_is(code, "MissingAuthenticationToken") ||
		   code_is(code, "InvalidClientTokenId")) {
		snprintf(buf, size,
			 "ecr %s rejected in %s: %s (%s); credentials from %s: check clock and "
			 "credentials",
			 c->op, region, code, err->message, src);
	} else if (code_is(code, "RepositoryNotFound")) {
		snprintf(buf, size, "ecr %s: repository '%s' not found in registry %s region %s",
			 c->op, repo, reg, region);
	} else if (code_is(code, "ImageNotFound")) {
		snprintf(buf, size,
			 "ecr %s: image %s not found in repository '%s' (registry %s region %s)",
			 c->op, *subj ? subj : "", repo, reg, region);
	} else if (code_is(code, "UploadNotFound")) {
		snprintf(buf, size,
			 "ecr %s: upload %s of repository '%s' no longer exists; the upload "
			 "restarts",
			 c->op, subj, repo);
	} else if (code_is(code, "ImageTagAlreadyExists")) {
		snprintf(buf, size,
			 "ecr %s: tag '%s' of repository '%s' is immutable and points to "
			 "another image; the old image is kept (%s)",
			 c->op, subj, repo, err->message);
	} else if (code_is(code, "LayerPartTooSmall") || code_is(code, "EmptyUpload")) {
		snprintf(buf, size,
			 "BUG in ecrfs: ecr %s in repository '%s' answered %s (%s); please "
			 "report this with the log",
			 c->op, repo, code, err->message);
	} else if (code_is(code, "LayersNotFound") || code_is(code, "ReferencedImagesNotFound") ||
		   code_is(code, "InvalidLayer") || code_is(code, "ImageDigestDoesNotMatch")) {
		snprintf(buf, size, "ecr %s in repository '%s': %s: %s", c->op, repo, code,
			 err->message);
	} else if (code_is(code, "RepositoryNotEmpty")) {
		snprintf(buf, size,
			 "ecr %s: repository '%s' still holds images (%s); delete them first",
			 c->op, repo, err->message);
	} else if (code_is(code, "LimitExceeded") || code_is(code, "TooManyTags")) {
		snprintf(buf, size, "ecr %s in repository '%s': quota reached: %s", c->op, repo,
			 err->message);
	} else if (code_is(code, "ImageReferencedByManifestList")) {
		snprintf(buf, size,
			 "ecr %s in repository '%s': %s is used by an image index: %s; delete "
			 "the index first",
			 c->op, repo, subj, err->message);
	} else if (code_is(code, "Throttling") || code_is(code, "TooManyRequests") ||
		   code_is(code, "Server") || code_is(code, "ServiceUnavailable") ||
		   code_is(code, "InternalFailure")) {
		snprintf(buf, size, "ecr %s in %s still failing after %d attempt(s): %s (%s)%s",
			 c->op, region, attempts, code, err->message,
			 rc == -ETIMEDOUT ? "; deadline passed" : "");
	} else if (code_is(code, "InvalidParameter") || code_is(code, "Validation")) {
		snprintf(buf, size, "ecr %s%s%s: invalid parameter: %s", c->op,
			 *repo ? " repository " : "", repo, err->message);
	} else {
		snprintf(buf, size, "ecr %s%s%s in %s failed: %s (%s), HTTP %ld", c->op,
			 *repo ? " repository " : "", repo, region, code, err->message,
			 err->http_status);
	}
}

void ecr_log_failure(const struct ecr_call *c, const struct ecr_error *err, int rc,
		     const char *cred_source, int attempts)
{
	char line[1536];

	ecr_format_failure(line, sizeof(line), c, err, rc, cred_source, attempts);
	if (c->request_id && *c->request_id) {
		size_t n = strlen(line);
		snprintf(line + n, sizeof(line) - n, " [request id %s]", c->request_id);
	}
	if (code_is(err->code, "LayerPartTooSmall") || code_is(err->code, "EmptyUpload"))
		log_err("%s", line);
	else if (code_is(err->code, "ImageNotFound") || code_is(err->code, "RepositoryNotFound"))
		log_info("%s", line); /* lookups of missing names are routine */
	else
		log_err("%s", line);
}
