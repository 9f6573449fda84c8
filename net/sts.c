/* STS: AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity. */
#include "net/sts.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "net/aws_sign.h"
#include "net/cred_i.h"
#include "net/log.h"

static const char *const form_headers[] = {
    "Content-Type: application/x-www-form-urlencoded; charset=utf-8",
    "Accept: text/xml",
    NULL,
};

const char *sts_endpoint(const char *override, const char *region, char *buf, size_t n)
{
	const char *e = override;
	if (!e || !*e)
		e = getenv("AWS_ENDPOINT_URL_STS");
	if (!e || !*e)
		e = getenv("AWS_ENDPOINT_URL");
	if (e && *e) {
		snprintf(buf, n, "%s", e);
	} else {
		if (!region || !*region)
			region = "us-east-1";
		const char *fips = getenv("AWS_USE_FIPS_ENDPOINT");
		snprintf(buf, n, "https://sts%s.%s.amazonaws.com%s",
			 fips && !strcasecmp(fips, "true") ? "-fips" : "", region,
			 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
	}
	return buf;
}

/* Appends "&key=urlencoded(value)" to the form. */
static int form_add(struct net_buf *f, const char *key, const char *value)
{
	char *enc = curl_easy_escape(NULL, value, 0);
	int ret;
	if (!enc)
		return -ENOMEM;
	ret = net_buf_append(f, "&", f->len ? 1 : 0);
	if (!ret)
		ret = net_buf_append(f, key, strlen(key));
	if (!ret)
		ret = net_buf_append(f, "=", 1);
	if (!ret)
		ret = net_buf_append(f, enc, strlen(enc));
	curl_free(enc);
	return ret;
}

/* Depth-first search for the first element named name. */
static xmlNode *find_el(xmlNode *n, const char *name)
{
	for (; n; n = n->next) {
		if (n->type == XML_ELEMENT_NODE && !xmlStrcmp(n->name, (const xmlChar *)name))
			return n;
		xmlNode *c = find_el(n->children, name);
		if (c)
			return c;
	}
	return NULL;
}

/* Text of the first element name below root into buf ("" when absent). */
static void el_text(xmlNode *root, const char *name, char *buf, size_t n)
{
	xmlNode *e = find_el(root, name);
	xmlChar *t = e ? xmlNodeGetContent(e) : NULL;
	if (buf && n)
		snprintf(buf, n, "%s", t ? (const char *)t : "");
	xmlFree(t);
}

/* libxml2 2.9 initialises itself lazily, which is not thread-safe. */
static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void) { xmlInitParser(); }

static xmlDoc *parse_xml(const struct net_buf *b)
{
	pthread_once(&xml_once, xml_init);
	if (!b->data || !b->len)
		return NULL;
	return xmlReadMemory(b->data, (int)b->len, "sts.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Maps an STS error reply to -errno and logs it. */
static int sts_error(const char *action, const char *endpoint, const struct net_response *r)
{
	char code[96] = "", msg[512] = "", url[256];
	xmlDoc *d = parse_xml(&r->body);
	if (d) {
		xmlNode *root = xmlDocGetRootElement(d);
		el_text(root, "Code", code, sizeof(code));
		el_text(root, "Message", msg, sizeof(msg));
		xmlFreeDoc(d);
	}
	log_url_safe(endpoint, url, sizeof(url));
	log_err("STS %s at %s failed: HTTP %ld %s%s%s", action, url, r->status,
		code[0] ? code : "(no error code)", msg[0] ? ": " : "", msg);
	if (r->status == 403 || !strcmp(code, "AccessDenied") || !strcmp(code, "ExpiredToken") ||
	    !strcmp(code, "InvalidClientTokenId") || !strcmp(code, "SignatureDoesNotMatch") ||
	    !strcmp(code, "InvalidIdentityToken") || !strcmp(code, "IDPRejectedClaim") ||
	    !strcmp(code, "UnrecognizedClientException"))
		return -EACCES;
	return -EIO;
}

/* STS answers 400 with Throttling in the body. */
static int sts_retry_cb(void *arg, long status, const struct net_buf *body)
{
	return status == 400 && body->data &&
	       (strstr(body->data, "<Code>Throttling</Code>") ||
		strstr(body->data, "<Code>IDPCommunicationError</Code>"));
}

/* POSTs form to endpoint (signed with c unless NULL); parses the XML reply. */
static int sts_call(net_http *h, const struct cred *c, const char *endpoint, const char *region,
		    const char *action, const struct net_buf *form, int timeout_ms, xmlDoc **doc)
{
	struct net_request req = {
	    .method = "POST",
	    .url = endpoint,
	    .headers = form_headers,
	    .body = form->data,
	    .body_len = form->len,
	    .retry_cb = sts_retry_cb,
	    .deadline_ms = timeout_ms > 0 ? timeout_ms : 10000,
	};
	struct net_response resp;
	struct aws_sign_ctx sc;
	int ret;

	*doc = NULL;
	if (c) {
		ret = aws_sign_init(&sc, NULL, region, "sts", &req, NULL);
		if (ret)
			return ret;
		sc.static_creds = c;
	}
	ret = net_http_do(h, &req, &resp);
	if (ret) {
		char url[256];
		log_err("STS %s at %s: %s", action, log_url_safe(endpoint, url, sizeof(url)),
			strerror(-ret));
		goto out;
	}
	if (resp.status != 200) {
		ret = sts_error(action, endpoint, &resp);
		goto out;
	}
	*doc = parse_xml(&resp.body);
	if (!*doc) {
		log_err("STS %s: reply is not XML", action);
		ret = -EIO;
	}
out:
	net_buf_free(&resp.body);
	return ret;
}

/* Credentials element of an AssumeRole* reply into out. */
static int creds_from_doc(xmlDoc *d, const char *source_fmt, const char *arn, struct cred *out)
{
	char ak[256], sk[256], exp[64];
	char *tok = malloc(8192);
	time_t t = 0;
	int ret;

	if (!tok)
		return -ENOMEM;
	xmlNode *root = xmlDocGetRootElement(d);
	xmlNode *cr = find_el(root, "Credentials");
	el_text(cr, "AccessKeyId", ak, sizeof(ak));
	el_text(cr, "SecretAccessKey", sk, sizeof(sk));
	el_text(cr, "SessionToken", tok, 8192);
	el_text(cr, "Expiration", exp, sizeof(exp));
	if (!cr || !ak[0] || !sk[0] || cred_parse_time(exp, &t)) {
		log_err("STS reply for %s lacks credentials or expiration", arn);
		ret = -EIO;
		goto out;
	}
	ret = cred_set(out, ak, sk, tok, t, source_fmt, arn);
out:
	explicit_bzero(sk, sizeof(sk));
	explicit_bzero(tok, 8192);
	free(tok);
	return ret;
}

static int role_form(struct net_buf *f, const char *action, const char *role_arn,
		     const char *session_name, int duration_s)
{
	char sn[64], dur[16];
	int ret;

	if (!session_name || !*session_name) {
		snprintf(sn, sizeof(sn), "ecrfs-%lld", (long long)time(NULL));
		session_name = sn;
	}
	ret = form_add(f, "Action", action);
	if (!ret)
		ret = form_add(f, "Version", "2011-06-15");
	if (!ret)
		ret = form_add(f, "RoleArn", role_arn);
	if (!ret)
		ret = form_add(f, "RoleSessionName", session_name);
	if (!ret && duration_s > 0) {
		snprintf(dur, sizeof(dur), "%d", duration_s);
		ret = form_add(f, "DurationSeconds", dur);
	}
	return ret;
}

int sts_assume_role(net_http *h, const struct cred *src, const char *endpoint, const char *region,
		    const char *role_arn, const char *session_name, const char *external_id,
		    int duration_s, int timeout_ms, struct cred *out)
{
	struct net_buf form = {0};
	xmlDoc *d = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!src || !role_arn)
		return -EINVAL;
	ret = role_form(&form, "AssumeRole", role_arn, session_name, duration_s);
	if (!ret && external_id && *external_id)
		ret = form_add(&form, "ExternalId", external_id);
	if (ret)
		goto out;
	ret = sts_call(h, src, endpoint, region, "AssumeRole", &form, timeout_ms, &d);
	if (ret)
		goto out;
	ret = creds_from_doc(d, "assume-role %s", role_arn, out);
out:
	xmlFreeDoc(d);
	net_buf_free(&form);
	return ret;
}

int sts_assume_role_with_web_identity(net_http *h, const char *endpoint, const char *region,
				      const char *role_arn, const char *session_name,
				      const char *token, int duration_s, int timeout_ms,
				      struct cred *out)
{
	struct net_buf form = {0};
	xmlDoc *d = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!role_arn || !token)
		return -EINVAL;
	ret = role_form(&form, "AssumeRoleWithWebIdentity", role_arn, session_name, duration_s);
	if (!ret)
		ret = form_add(&form, "WebIdentityToken", token);
	if (ret)
		goto out;
	ret =
	    sts_call(h, NULL, endpoint, region, "AssumeRoleWithWebIdentity", &form, timeout_ms, &d);
	if (ret)
		goto out;
	ret = creds_from_doc(d, "web identity %s", role_arn, out);
out:
	xmlFreeDoc(d);
	if (form.data)
		explicit_bzero(form.data, form.len);
	net_buf_free(&form);
	return ret;
}

int sts_get_caller_identity_with(net_http *h, const struct cred *c, const char *endpoint,
				 const char *region, char *account, size_t account_size, char *arn,
				 size_t arn_size, char *user_id, size_t user_id_size)
{
	struct net_buf form = {0};
	char ep[512];
	xmlDoc *d = NULL;
	int ret;

	if (!endpoint)
		endpoint = sts_endpoint(NULL, region, ep, sizeof(ep));
	if (!region || !*region)
		region = "us-east-1";
	ret = form_add(&form, "Action", "GetCallerIdentity");
	if (!ret)
		ret = form_add(&form, "Version", "2011-06-15");
	if (ret)
		goto out;
	ret = sts_call(h, c, endpoint, region, "GetCallerIdentity", &form, 10000, &d);
	if (ret)
		goto out;
	xmlNode *root = xmlDocGetRootElement(d);
	xmlNode *res = find_el(root, "GetCallerIdentityResult");
	if (!res) {
		log_err("STS GetCallerIdentity: no result in the reply");
		ret = -EIO;
		goto out;
	}
	el_text(res, "Account", account, account_size);
	el_text(res, "Arn", arn, arn_size);
	el_text(res, "UserId", user_id, user_id_size);
out:
	xmlFreeDoc(d);
	net_buf_free(&form);
	return ret;
}

int sts_get_caller_identity(net_http *h, cred_provider *creds, const char *endpoint,
			    const char *region, char *account, size_t account_size, char *arn,
			    size_t arn_size, char *user_id, size_t user_id_size)
{
	struct cred c;
	int ret = cred_get(creds, &c);
	if (ret)
		return ret;
	ret = sts_get_caller_identity_with(h, &c, endpoint, region, account, account_size, arn,
					   arn_size, user_id, user_id_size);
	cred_clear(&c);
	return ret;
}
