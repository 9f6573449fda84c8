/* SigV4 signing of net_http requests with credentials from a provider. */
#include "net/aws_sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "net/sigv4.h"

#define MAX_SIGNED 40

int aws_sign_init(struct aws_sign_ctx *ctx, cred_provider *creds, const char *region,
		  const char *service, struct net_request *req, const char *payload_hash)
{
	memset(ctx, 0, sizeof(*ctx));
	if (!region || !service || !req || !req->method || !req->url)
		return -EINVAL;
	if (!payload_hash && req->body_cb)
		return -EINVAL; /* a streamed body cannot be hashed here */
	ctx->creds = creds;
	ctx->region = region;
	ctx->service = service;
	ctx->method = req->method;
	ctx->url = req->url;
	ctx->headers = req->headers;
	if (payload_hash) {
		if (strlen(payload_hash) >= sizeof(ctx->payload_hash))
			return -EINVAL;
		strcpy(ctx->payload_hash, payload_hash);
	} else {
		sigv4_sha256_hex(req->body ? req->body : "", req->body ? req->body_len : 0,
				 ctx->payload_hash);
	}
	req->sign_cb = aws_sign_cb;
	req->sign_arg = ctx;
	return 0;
}

static char *hdr_fmt(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s: %s", name, value);
	return s;
}

int aws_sign_headers(const struct cred *c, const char *region, const char *service,
		     const char *method, const char *url, const char *const *headers,
		     const char *payload_hash, int send_content_sha256, time_t t, char **hdrs,
		     int maxh)
{
	struct sigv4_header sh[MAX_SIGNED];
	char *hcopies[MAX_SIGNED] = {0};
	size_t nsh = 0, ncopies = 0;
	char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	char hostport[300], amz_date[17], auth[1024];
	CURLU *u = NULL;
	int n = 0, ret = 0;

	if (!c || !c->access_key_id || !c->secret_access_key || maxh < 5)
		return -EINVAL;
	u = curl_url();
	if (!u) {
		ret = -ENOMEM;
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		ret = -EINVAL;
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
		query = NULL;
	/* Only an explicit port is part of the Host header. */
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	if ((size_t)snprintf(hostport, sizeof(hostport), "%s%s%s", host, port ? ":" : "",
			     port ? port : "") >= sizeof(hostport)) {
		ret = -EINVAL;
		goto out;
	}
	sigv4_amz_date(t, amz_date);

	sh[nsh++] = (struct sigv4_header){"Host", hostport};
	sh[nsh++] = (struct sigv4_header){"X-Amz-Date", amz_date};
	if (c->session_token)
		sh[nsh++] = (struct sigv4_header){"X-Amz-Security-Token", c->session_token};
	if (send_content_sha256)
		sh[nsh++] = (struct sigv4_header){"X-Amz-Content-Sha256", payload_hash};
	/* The request's own headers ("Name: value"); "Name:" means "remove" to
	 * curl, so such entries are not sent and not signed. */
	for (const char *const *p = headers; p && *p && nsh < MAX_SIGNED; p++) {
		const char *colon = strchr(*p, ':');
		if (!colon)
			continue;
		const char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!*v)
			continue;
		char *name = strndup(*p, (size_t)(colon - *p));
		if (!name) {
			ret = -ENOMEM;
			goto out;
		}
		hcopies[ncopies++] = name;
		sh[nsh++] = (struct sigv4_header){name, v};
	}

	struct sigv4_request r = {
	    .method = method,
	    .path = path,
	    .query = query,
	    .headers = sh,
	    .nheaders = nsh,
	    .payload_sha256_hex = payload_hash,
	};
	struct sigv4_creds sc = {c->access_key_id, c->secret_access_key, c->session_token};
	ret = sigv4_sign(&r, &sc, region, service, amz_date, auth, sizeof(auth), NULL, NULL);
	if (ret)
		goto out;

	if (!(hdrs[n++] = hdr_fmt("Host", hostport)) ||
	    !(hdrs[n++] = hdr_fmt("X-Amz-Date", amz_date)) ||
	    (c->session_token &&
	     !(hdrs[n++] = hdr_fmt("X-Amz-Security-Token", c->session_token))) ||
	    (send_content_sha256 && !(hdrs[n++] = hdr_fmt("X-Amz-Content-Sha256", payload_hash))) ||
	    !(hdrs[n++] = hdr_fmt("Authorization", auth))) {
		ret = -ENOMEM;
		goto out;
	}
	ret = n;
out:
	if (ret < 0) {
		for (int i = 0; i < n; i++) {
			free(hdrs[i]);
			hdrs[i] = NULL;
		}
	}
	for (size_t i = 0; i < ncopies; i++)
		free(hcopies[i]);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return ret;
}

int aws_sign_cb(void *arg, char **hdrs, int maxh)
{
	struct aws_sign_ctx *ctx = arg;
	struct cred c = {0};
	const struct cred *use = ctx->static_creds;
	int ret;

	if (!use) {
		if (!ctx->creds)
			return ctx->last_err = -EACCES;
		ret = cred_get(ctx->creds, &c);
		if (ret)
			return ctx->last_err = ret;
		use = &c;
	}
	snprintf(ctx->source, sizeof(ctx->source), "%s", use->source);
	snprintf(ctx->access_key_id, sizeof(ctx->access_key_id), "%s", use->access_key_id);
	ret = aws_sign_headers(use, ctx->region, ctx->service, ctx->method, ctx->url, ctx->headers,
			       ctx->payload_hash, ctx->send_content_sha256,
			       time(NULL) + net_http_clock_skew(), hdrs, maxh);
	ctx->last_err = ret < 0 ? ret : 0;
	cred_clear(&c);
	return ret;
}
