/* IAM Identity Center (SSO): the access token that `aws sso login` left in
 * ~/.aws/sso/cache/<sha1(session name or start URL)>.json is exchanged for
 * role credentials with GetRoleCredentials on the SSO portal
 * (https://portal.sso.REGION.amazonaws.com; AWS_ENDPOINT_URL_SSO overrides).
 * ecrfs never runs the device login itself: without a valid token the log
 * says how to log in or to use credential_process instead. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "net/cred_i.h"
#include "net/digest.h"
#include "net/log.h"

static void sha1_hex(const char *s, char hex[41])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(s, strlen(s), d, &n, EVP_sha1(), NULL);
	net_hex(d, n < 20 ? n : 20, hex);
	hex[40] = '\0';
}

static void login_hint(const char *profile, const char *why)
{
	log_err("profile %s uses IAM Identity Center (SSO) but %s: run `aws sso login "
		"--profile %s`, or set credential_process in the profile to a command that "
		"prints credentials (e.g. `aws configure export-credentials --profile %s "
		"--format process`)",
		profile, why, profile, profile);
}

int cred_from_sso(struct cred_chain *ch, const char *profile, struct cred *out)
{
	const char *session = cred_config_get(ch, profile, "sso_session");
	const char *account = cred_config_get(ch, profile, "sso_account_id");
	const char *role = cred_config_get(ch, profile, "sso_role_name");
	const char *start_url = cred_config_get(ch, profile, "sso_start_url");
	const char *region = cred_config_get(ch, profile, "sso_region");
	char sec[300], hex[41], path[1024], ep[512], url[1200], th[8300];
	char *text = NULL, *er = NULL, *ea = NULL;
	json_t *cache = NULL, *reply = NULL;
	struct net_response resp = {0};
	time_t exp = 0;
	int ret;

	if (!session && !start_url) {
		cred_chain_note(ch, "sso: no sso_session/sso_start_url in profile %s", profile);
		return -ENOENT;
	}
	if (session) {
		snprintf(sec, sizeof(sec), "sso-session %s", session);
		if (!ini_has_section(ch->config, sec)) {
			log_err("profile %s: sso_session %s has no [%s] section in %s", profile,
				session, sec, ch->config_path);
			return -EACCES;
		}
		const char *r = ini_get(ch->config, sec, "sso_region");
		if (r)
			region = r;
	}
	if (!account || !role || !region) {
		log_err("profile %s: SSO needs sso_account_id, sso_role_name and sso_region",
			profile);
		return -EACCES;
	}
	/* The cache key is the session name, or the start URL (legacy form). */
	sha1_hex(session ? session : start_url, hex);
	char hb[512];
	snprintf(path, sizeof(path), "%s/.aws/sso/cache/%s.json", cred_home(hb, sizeof(hb)), hex);
	ret = cred_read_file(path, &text);
	if (ret) {
		login_hint(profile, "there is no cached token");
		ret = -EACCES;
		goto out;
	}
	cache = json_loads(text, 0, NULL);
	const char *at = json_string_value(json_object_get(cache, "accessToken"));
	const char *ex = json_string_value(json_object_get(cache, "expiresAt"));
	time_t tex = 0;
	if (!at || !ex || cred_parse_time(ex, &tex)) {
		login_hint(profile, "the cached token is unreadable");
		ret = -EACCES;
		goto out;
	}
	if (tex <= time(NULL)) {
		login_hint(profile, "the cached token has expired");
		ret = -EACCES;
		goto out;
	}

	const char *e = getenv("AWS_ENDPOINT_URL_SSO");
	if (e && *e)
		snprintf(ep, sizeof(ep), "%s", e);
	else
		snprintf(ep, sizeof(ep), "https://portal.sso.%s.amazonaws.com", region);
	size_t l = strlen(ep);
	while (l && ep[l - 1] == '/')
		ep[--l] = '\0';
	er = curl_easy_escape(NULL, role, 0);
	ea = curl_easy_escape(NULL, account, 0);
	if (!er || !ea) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(url, sizeof(url), "%s/federation/credentials?role_name=%s&account_id=%s", ep, er,
		 ea);
	if (strpbrk(at, "\r\n") ||
	    (size_t)snprintf(th, sizeof(th), "x-amz-sso_bearer_token: %s", at) >= sizeof(th)) {
		login_hint(profile, "the cached token is malformed");
		ret = -EACCES;
		goto out;
	}
	const char *hdrs[] = {th, NULL};
	struct net_request req = {
	    .method = "GET", .url = url, .headers = hdrs, .deadline_ms = ch->timeout_ms};
	ret = net_http_do(ch->http, &req, &resp);
	explicit_bzero(th, sizeof(th));
	if (ret || resp.status != 200) {
		if (!ret && (resp.status == 401 || resp.status == 403))
			login_hint(profile, "the portal rejected the cached token");
		else
			log_err("SSO GetRoleCredentials for profile %s: %s %ld", profile,
				ret ? strerror(-ret) : "HTTP", resp.status);
		ret = -EACCES;
		goto out;
	}
	reply = json_loads(resp.body.data, 0, NULL);
	json_t *rc = json_object_get(reply, "roleCredentials");
	const char *ak = json_string_value(json_object_get(rc, "accessKeyId"));
	const char *sk = json_string_value(json_object_get(rc, "secretAccessKey"));
	const char *st = json_string_value(json_object_get(rc, "sessionToken"));
	json_int_t ms = json_integer_value(json_object_get(rc, "expiration"));
	if (!ak || !sk) {
		log_err("SSO GetRoleCredentials for profile %s: no roleCredentials in the reply",
			profile);
		ret = -EACCES;
		goto out;
	}
	exp = ms > 0 ? (time_t)(ms / 1000) : 0;
	ret = cred_set(out, ak, sk, st, exp, "sso %s/%s (profile %s)", account, role, profile);
out:
	json_decref(cache);
	json_decref(reply);
	curl_free(er);
	curl_free(ea);
	if (resp.body.data)
		explicit_bzero(resp.body.data, resp.body.len);
	net_buf_free(&resp.body);
	if (text) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	return ret;
}
