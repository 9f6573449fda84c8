/* Private to net/ecr*.c and their unit tests: the handle, the one call path
 * and the pure helpers (JSON parsing, error text parsing, upload body). */
#ifndef ECRFS_ECR_I_H
#define ECRFS_ECR_I_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "net/ecr.h"
#include "net/http.h"

/* Each call is signed by net/aws_sign (req.sign_arg is its struct
 * aws_sign_ctx, whose payload_hash tests compare with the body sent). */

#define ECR_TARGET_PREFIX "AmazonEC2ContainerRegistry_V20150921."
#define ECR_MAX_OPS 64
#define ECR_PAGE_SIZE 1000
#define ECR_BATCH_MAX 100
#define ECR_MAX_ATTEMPTS 8 /* per call, throttling and 5xx included */

/* Transport seam: net_http_do in production, a fake in unit tests. */
typedef int (*ecr_transport_fn)(void *arg, const struct net_request *req,
				struct net_response *resp);

struct ecr_op_stats {
	const char *op; /* static string */
	uint64_t calls, errors, retries, bytes_in, bytes_out;
};

struct ecr {
	cred_provider *creds; /* borrowed */
	net_http *http;	      /* borrowed */
	char *endpoint;	      /* fixed override (option or env), NULL: per region */
	char *sts_endpoint;   /* NULL: resolved by the STS helper */
	int fips;
	int deadline_ms;
	ecr_transport_fn transport;
	void *transport_arg;
	/* Protects stats[] and nstats (calls run on many threads). */
	pthread_mutex_t stats_lock;
	struct ecr_op_stats stats[ECR_MAX_OPS];
	size_t nstats;
};

/* One ECR API call. Either req (a JSON object, serialised compactly) or a
 * streaming body (body_cb, body_len, payload_hash precomputed). */
struct ecr_call {
	const char *op; /* "DescribeImages" */
	const char *region;
	const struct ecr_where *w; /* for log lines, may be NULL */
	const char *subject;	   /* tag/digest/upload for log lines, may be NULL */
	json_t *req;
	net_body_cb body_cb;
	void *body_arg;
	size_t body_len;
	const char *payload_hash;
	int deadline_ms; /* 0: the handle's */
	int stall_ms;	 /* 0: net/http's default */
	int page_size;	 /* maxResults of ecr_call_pages, 0: ECR_PAGE_SIZE */
	/* Error codes the caller handles itself (logged at debug, not as
	 * failures); NULL-terminated, may be NULL. */
	const char *const *expected;
	/* Out: retries done by net/http for this call, and the reply's
	 * x-amzn-RequestId (valid while ecr_call runs; named in failure lines
	 * so AWS support can find the call). */
	int retries;
	const char *request_id;
};

/* POSTs the call, signing each attempt; retries throttling and 5xx (through
 * net/http), ExpiredToken once after invalidating the credentials. On return
 * *resp (when resp is non-NULL) holds the parsed body of the reply, success
 * or error, or NULL. Returns 0 or ecr_errno() of the failure; err filled. */
int ecr_call(ecr *e, struct ecr_call *c, json_t **resp, struct ecr_error *err);

/* Runs a paginated call (maxResults 1000, nextToken loop): page() parses
 * each reply into out and returns the next token (malloc'd) or NULL. */
typedef int (*ecr_page_fn)(const json_t *resp, void *out, char **next);
int ecr_call_pages(ecr *e, struct ecr_call *c, ecr_page_fn page, void *out, struct ecr_error *err);

/* The call -> parse -> release wrapper of one call. Each runs ecr_call on
 * c->req (built by the caller) and releases both the reply and c->req
 * (c->req is NULL on return). Returns ecr_call's result, else the parser's. */
/* parse (may be NULL) reads a successful reply into arg. */
typedef int (*ecr_reply_fn)(const json_t *resp, void *arg);
int ecr_call_parse(ecr *e, struct ecr_call *c, ecr_reply_fn parse, void *arg,
		   struct ecr_error *err);
/* One call of a batch (by ids or names: not paginated): page() parses the
 * reply into out; a nextToken is dropped. */
int ecr_call_unpaged(ecr *e, struct ecr_call *c, ecr_page_fn page, void *out,
		     struct ecr_error *err);
/* The reply's string field key is the answer: *out, malloc'd (-EPROTO when
 * the reply lacks it). resp non-NULL: on success the reply is kept there for
 * other fields (the caller releases it), else NULL. */
int ecr_call_string(ecr *e, struct ecr_call *c, const char *key, char **out, json_t **resp,
		    struct ecr_error *err);

/* Base URL for region ("https://api.ecr.REGION.amazonaws.com" or override). */
int ecr_endpoint_url(const ecr *e, const char *region, char *buf, size_t size);

/* Stats accounting. */
void ecr_stats_add(ecr *e, const char *op, int failed, int retries, uint64_t bytes_in,
		   uint64_t bytes_out);

/* ---- errors (ecr_errors.c) ---- */
/* Code without namespace: text after the last '#' of __type (and of ':'). */
void ecr_error_code(const char *type, char *out, size_t size);
/* Parses "User: ARN is not authorized to perform: ACTION on resource: RES..."
 * Returns 0 when found. Any output may be NULL. */
int ecr_parse_denied(const char *msg, char *principal, size_t psize, char *action, size_t asize,
		     char *resource, size_t rsize);
/* Writes the one log line that names cause and fix. */
void ecr_log_failure(const struct ecr_call *c, const struct ecr_error *err, int rc,
		     const char *cred_source, int attempts);
/* Formats the failure line into buf (what ecr_log_failure logs). */
void ecr_format_failure(char *buf, size_t size, const struct ecr_call *c,
			const struct ecr_error *err, int rc, const char *cred_source, int attempts);

/* ---- JSON helpers (ecr_json.c) ---- */
const char *ecr_json_str(const json_t *o, const char *key);
char *ecr_json_strdup(const json_t *o, const char *key);
time_t ecr_json_time(const json_t *o, const char *key);
int64_t ecr_json_int(const json_t *o, const char *key, int64_t dflt);
/* Adds registryId (when non-NULL) and repositoryName (when non-NULL). */
int ecr_json_where(json_t *req, const struct ecr_where *w);
json_t *ecr_json_image_ids(const struct ecr_image_id *ids, size_t n);

/* Page parsers: append what the page holds to out; the nextToken (or NULL)
 * is returned malloc'd in *next. */
int ecr_parse_repos_page(const json_t *resp, struct ecr_repo_list *out, char **next);
int ecr_parse_images_page(const json_t *resp, struct ecr_image_list *out, char **next);
int ecr_parse_image_refs_page(const json_t *resp, struct ecr_image_ref_list *out, char **next);
int ecr_parse_batch_get(const json_t *resp, struct ecr_manifest_list *out);
int ecr_parse_referrers_page(const json_t *resp, struct ecr_referrer_list *out, char **next);
int ecr_parse_strings_page(const json_t *resp, const char *key, char ***v, size_t *n, char **next);

/* Pages merged into one reply (ecr_artifacts.c): the first page kept whole,
 * each later page's arrays at paths ("a" or "a/b") appended to the first's. */
struct ecr_merged {
	const char *const *paths; /* NULL-terminated */
	json_t *first;
};
int ecr_merge_page(const json_t *resp, void *merged, char **next);

/* ---- upload body (ecr_upload.c) ---- */
struct ecr_part_body {
	char *prefix; /* {"registryId":...,"layerPartBlob":" */
	size_t prefix_len;
	const unsigned char *data; /* the part, or NULL: read through raw */
	int (*raw)(void *arg, uint64_t off, char *dst, size_t n);
	void *raw_arg;
	size_t data_len;
	size_t b64_len;
	size_t total; /* prefix + base64 + suffix */
};
int ecr_part_body_init(struct ecr_part_body *b, const char *registry_id, const char *repository,
		       const char *upload_id, uint64_t first_byte, const void *data, size_t len);
void ecr_part_body_free(struct ecr_part_body *b);
/* net_body_cb over a struct ecr_part_body. */
ssize_t ecr_part_body_read(void *arg, char *dst, size_t n, uint64_t off);
/* hex sha256 of the whole body, computed by streaming it once. */
int ecr_part_body_hash(struct ecr_part_body *b, char hex[65]);

/* Download URL expiry (ecr_layers.c). */
time_t ecr_url_expiry(const char *url, time_t now);

#endif
