/* ECS / EKS Pod Identity container credentials:
 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (against http://169.254.170.2) or
 * AWS_CONTAINER_CREDENTIALS_FULL_URI, with an Authorization header from
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read at every refresh: it rotates)
 * or AWS_CONTAINER_AUTHORIZATION_TOKEN. Like the SDKs, a plain-http full
 * URI must point at a loopback address or the ECS/EKS agent addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "net/cred_i.h"
#include "net/log.h"

#define ECS_HOST "http://169.254.170.2"

static int allowed_http_host(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL;
	int ok = 0;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		ok = !strncmp(host, "127.", 4) || !strcmp(host, "localhost") ||
		     !strcmp(host, "[::1]") || !strcmp(host, "169.254.170.2") ||
		     !strcmp(host, "169.254.170.23") || !strcasecmp(host, "[fd00:ec2::23]");
	}
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

int cred_from_container(struct cred_chain *ch, struct cred *out)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *tokfile = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *tokenv = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	char url[1024], safe[512];
	char *token = NULL, *auth = NULL;
	const char *hdrs[2] = {NULL, NULL};
	struct net_response resp = {0};
	int ret;

	if (rel && *rel) {
		snprintf(url, sizeof(url), "%s%s%s", ECS_HOST, rel[0] == '/' ? "" : "/", rel);
	} else if (full && *full) {
		if (strncasecmp(full, "https://", 8) && !allowed_http_host(full)) {
			log_err("AWS_CONTAINER_CREDENTIALS_FULL_URI %s: plain http is allowed only "
				"to loopback or the ECS/EKS agent address",
				log_url_safe(full, safe, sizeof(safe)));
			return -EACCES;
		}
		snprintf(url, sizeof(url), "%s", full);
	} else {
		cred_chain_note(ch, "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI "
				    "not set");
		return -ENOENT;
	}
	if (tokfile && *tokfile) {
		ret = cred_read_file(tokfile, &token);
		if (ret) {
			log_err("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s", tokfile,
				strerror(-ret));
			ret = -EACCES;
			goto out;
		}
	} else if (tokenv && *tokenv) {
		token = strdup(tokenv);
		if (!token) {
			ret = -ENOMEM;
			goto out;
		}
	}
	if (token) {
		if (strpbrk(token, "\r\n")) {
			log_err("container authorization token contains a line break");
			ret = -EACCES;
			goto out;
		}
		size_t n = strlen(token) + 32;
		auth = malloc(n);
		if (!auth) {
			ret = -ENOMEM;
			goto out;
		}
		snprintf(auth, n, "Authorization: %s", token);
		hdrs[0] = auth;
	}
	struct net_request req = {.method = "GET",
				  .url = url,
				  .headers = hdrs,
				  .deadline_ms = ch->timeout_ms,
				  .max_attempts = 3};
	log_url_safe(url, safe, sizeof(safe));
	ret = net_http_do(ch->http, &req, &resp);
	if (ret || resp.status != 200) {
		log_err("container credentials at %s: %s %ld", safe, ret ? strerror(-ret) : "HTTP",
			resp.status);
		ret = -EACCES;
		goto out;
	}
	ret = cred_from_json_reply(resp.body.data, out, "container %s", safe);
	if (ret) {
		log_err("container credentials at %s: reply lacks AccessKeyId/SecretAccessKey",
			safe);
		ret = -EACCES;
	}
out:
	cred_reply_free(&resp);
	cred_free_secret(token);
	cred_free_secret(auth);
	return ret;
}
