/* Signs net_http requests with SigV4 using current credentials: a
 * net_sign_cb that adds Host, X-Amz-Date, X-Amz-Security-Token (when the
 * credentials carry one), X-Amz-Content-Sha256 (only when asked) and
 * Authorization before each attempt, so retries get a fresh date and
 * refreshed credentials.
 *
 * Usage:
 *   struct aws_sign_ctx sc;
 *   struct net_request req = {.method = "POST", .url = url, .headers = hdrs,
 *                             .body = body, .body_len = len};
 *   aws_sign_init(&sc, creds, "eu-west-1", "ecr", &req, NULL);
 *   net_http_do(h, &req, &resp);     // req.sign_cb/sign_arg were set
 *
 * The ctx, the request's url and headers must stay alive during net_http_do.
 * Every fixed header of the request (req->headers) is signed too. */
#ifndef ECRFS_AWS_SIGN_H
#define ECRFS_AWS_SIGN_H

#include <stddef.h>
#include <time.h>

#include "net/cred.h"
#include "net/http.h"

struct aws_sign_ctx {
	cred_provider *creds;		 /* credentials come from here ... */
	const struct cred *static_creds; /* ... or from this snapshot (borrowed) */
	const char *region;
	const char *service; /* "ecr", "sts" */
	const char *method;
	const char *url;
	const char *const *headers; /* the request's fixed headers */
	char payload_hash[65];	    /* hex sha256 of the body, or "UNSIGNED-PAYLOAD" */
	int send_content_sha256;    /* also send X-Amz-Content-Sha256 */
	int last_err;		    /* -errno of the last failed signing, 0 otherwise */
	char source[128];	    /* credential source used by the last signing */
	char access_key_id[128];    /* the key that signed the last attempt (not a secret) */
};

/* Fills ctx and sets req->sign_cb/sign_arg. payload_hash: the hex sha256 of
 * the body (required for a streaming body_cb, which cannot be hashed here),
 * "UNSIGNED-PAYLOAD", or NULL to hash req->body/body_len now.
 * Returns 0 or -EINVAL. */
int aws_sign_init(struct aws_sign_ctx *ctx, cred_provider *creds, const char *region,
		  const char *service, struct net_request *req, const char *payload_hash);

/* The net_sign_cb. Each header string is malloc'd; net_http_do frees them.
 * Returns the header count or -errno (-EACCES when there are no credentials). */
int aws_sign_cb(void *arg, char **hdrs, int maxh);

/* The building block of aws_sign_cb (exposed for tests): signs a request
 * for url with credentials c at time t; writes malloc'd "Name: value"
 * strings (Host, X-Amz-Date, [X-Amz-Security-Token], [X-Amz-Content-Sha256],
 * Authorization) into hdrs. Returns their count or -errno. */
int aws_sign_headers(const struct cred *c, const char *region, const char *service,
		     const char *method, const char *url, const char *const *headers,
		     const char *payload_hash, int send_content_sha256, time_t t, char **hdrs,
		     int maxh);

#endif
