/* EC2 instance metadata (IMDSv2): a session token from PUT /latest/api/token,
 * then the instance role's credentials. Short timeouts so that a machine
 * without IMDS (a laptop) is not slowed down; IMDSv1 is used only when the
 * token call answers 403/404/405 (IMDSv2 not offered). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "net/cred_i.h"
#include "net/log.h"

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define IMDS_FIRST_MS 1000 /* the first call: is anybody there? */
#define IMDS_CALL_MS 3000

int cred_from_json_reply(const char *body, struct cred *out, const char *source_fmt,
			 const char *arg)
{
	json_t *j = json_loads(body ? body : "", 0, NULL);
	const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
	const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	const char *tok = json_string_value(json_object_get(j, "Token"));
	const char *es = json_string_value(json_object_get(j, "Expiration"));
	time_t exp = 0;
	int ret = -EIO;

	if (ak && sk && (!es || cred_parse_time(es, &exp) == 0))
		ret = cred_set(out, ak, sk, tok, exp, source_fmt, arg);
	json_decref(j);
	return ret;
}

static void imds_base(char *buf, size_t n)
{
	const char *e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	const char *def = mode && !strcasecmp(mode, "IPv6") ? IMDS_DEFAULT_V6 : IMDS_DEFAULT;
	snprintf(buf, n, "%s", e && *e ? e : def);
	size_t l = strlen(buf);
	while (l && buf[l - 1] == '/')
		buf[--l] = '\0';
}

static int imds_disabled(void)
{
	const char *d = getenv("AWS_EC2_METADATA_DISABLED");
	return d && !strcasecmp(d, "true");
}

/* GET base+path with the token (NULL: IMDSv1). */
static int imds_get(net_http *h, const char *base, const char *path, const char *token,
		    struct net_response *resp)
{
	char url[1100], th[600];
	const char *hdrs[2] = {NULL, NULL};
	if (token) {
		snprintf(th, sizeof(th), "X-aws-ec2-metadata-token: %s", token);
		hdrs[0] = th;
	}
	snprintf(url, sizeof(url), "%s%s", base, path);
	struct net_request req = {.method = "GET",
				  .url = url,
				  .headers = hdrs,
				  .deadline_ms = IMDS_CALL_MS,
				  .max_attempts = 3};
	return net_http_do(h, &req, resp);
}

/* Fetches a session token. Returns 0 (token in tok, or tok[0]=0 for IMDSv1),
 * -EHOSTUNREACH when nobody answered. */
static int imds_token(net_http *h, const char *base, char *tok, size_t n)
{
	char url[600];
	static const char *const hdrs[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
	struct net_response resp;
	snprintf(url, sizeof(url), "%s/latest/api/token", base);
	struct net_request req = {.method = "PUT",
				  .url = url,
				  .headers = hdrs,
				  .deadline_ms = IMDS_FIRST_MS,
				  .max_attempts = 1};
	int ret = net_http_do(h, &req, &resp);

	tok[0] = '\0';
	if (ret) {
		net_buf_free(&resp.body);
		return -EHOSTUNREACH;
	}
	if (resp.status == 200 && resp.body.data)
		snprintf(tok, n, "%s", resp.body.data);
	else if (resp.status != 403 && resp.status != 404 && resp.status != 405)
		ret = -EIO;
	net_buf_free(&resp.body);
	return ret;
}

int cred_from_imds(struct cred_chain *ch, struct cred *out)
{
	char base[512], tok[512], role[256], path[512];
	struct net_response resp = {0};
	int ret;

	if (imds_disabled()) {
		cred_chain_note(ch, "EC2 IMDS: disabled (AWS_EC2_METADATA_DISABLED)");
		return -ENOENT;
	}
	imds_base(base, sizeof(base));
	ret = imds_token(ch->http, base, tok, sizeof(tok));
	if (ret == -EHOSTUNREACH) {
		cred_chain_note(ch, "EC2 IMDS: no answer at %s (not on EC2?)", base);
		return -ENOENT;
	}
	if (ret) {
		cred_chain_note(ch, "EC2 IMDS: token request failed at %s", base);
		return -ENOENT;
	}
	const char *t = tok[0] ? tok : NULL;
	ret = imds_get(ch->http, base, "/latest/meta-data/iam/security-credentials/", t, &resp);
	if (ret || resp.status != 200 || !resp.body.data || !resp.body.len) {
		if (!ret && resp.status == 404)
			cred_chain_note(ch,
					"EC2 IMDS: answered at %s, but the instance has no "
					"IAM role (instance profile)",
					base);
		else
			cred_chain_note(ch, "EC2 IMDS: answered at %s, role list failed (%s %ld)",
					base, ret ? strerror(-ret) : "HTTP", resp.status);
		ret = -ENOENT;
		goto out;
	}
	size_t rl = strcspn(resp.body.data, "\r\n");
	snprintf(role, sizeof(role), "%.*s", (int)rl, resp.body.data);
	net_buf_free(&resp.body);
	snprintf(path, sizeof(path), "/latest/meta-data/iam/security-credentials/%s", role);
	ret = imds_get(ch->http, base, path, t, &resp);
	if (ret || resp.status != 200) {
		log_err("EC2 IMDS: credentials of role %s: %s %ld", role,
			ret ? strerror(-ret) : "HTTP", resp.status);
		ret = -EACCES;
		goto out;
	}
	ret = cred_from_json_reply(resp.body.data, out, "instance role %s", role);
	if (ret) {
		log_err("EC2 IMDS: credentials of role %s are not valid JSON", role);
		ret = -EACCES;
	}
out:
	if (resp.body.data)
		explicit_bzero(resp.body.data, resp.body.len);
	net_buf_free(&resp.body);
	return ret;
}

int cred_imds_region(net_http *h, char *buf, size_t n)
{
	char base[512], tok[512];
	struct net_response resp = {0};
	int ret;

	if (imds_disabled())
		return -ENOENT;
	imds_base(base, sizeof(base));
	ret = imds_token(h, base, tok, sizeof(tok));
	if (ret)
		return -ENOENT;
	ret = imds_get(h, base, "/latest/meta-data/placement/region", tok[0] ? tok : NULL, &resp);
	if (!ret && resp.status == 200 && resp.body.len && resp.body.len < n) {
		snprintf(buf, n, "%.*s", (int)strcspn(resp.body.data, "\r\n"), resp.body.data);
	} else {
		ret = -ENOENT;
	}
	net_buf_free(&resp.body);
	return ret;
}
