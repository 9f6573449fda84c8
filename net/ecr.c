/* The ECR client's core: the handle, endpoint resolution and the one call
 * path (JSON 1.1 POST, SigV4 per attempt, retry policy, error mapping). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/aws_sign.h"
#include "net/ecr_i.h"
#include "net/log.h"
#include "net/sigv4.h"

static int http_transport(void *arg, const struct net_request *req, struct net_response *resp)
{
	return net_http_do(arg, req, resp);
}

static char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? strdup(v) : NULL;
}

int ecr_new(const struct ecr_opts *opts, ecr **out)
{
	ecr *e;

	*out = NULL;
	if (!opts)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->creds = opts->creds;
	e->http = opts->http;
	e->fips = opts->fips;
	e->deadline_ms = opts->deadline_ms > 0 ? opts->deadline_ms : 30000;
	e->transport = http_transport;
	e->transport_arg = opts->http;
	if (opts->endpoint && *opts->endpoint)
		e->endpoint = strdup(opts->endpoint);
	else if (!(e->endpoint = env_nonempty("AWS_ENDPOINT_URL_ECR")))
		e->endpoint = env_nonempty("AWS_ENDPOINT_URL");
	if (opts->sts_endpoint && *opts->sts_endpoint)
		e->sts_endpoint = strdup(opts->sts_endpoint);
	pthread_mutex_init(&e->stats_lock, NULL);
	*out = e;
	return 0;
}

void ecr_free(ecr *e)
{
	if (!e)
		return;
	pthread_mutex_destroy(&e->stats_lock);
	free(e->endpoint);
	free(e->sts_endpoint);
	free(e);
}

int ecr_endpoint_url(const ecr *e, const char *region, char *buf, size_t size)
{
	int n;

	if (e->endpoint) {
		size_t len = strlen(e->endpoint);
		/* The request path is "/": drop a trailing slash of the base. */
		while (len > 1 && e->endpoint[len - 1] == '/')
			len--;
		n = snprintf(buf, size, "%.*s", (int)len, e->endpoint);
	} else {
		if (!region || !*region)
			return -EINVAL;
		n = snprintf(buf, size, "https://%s.%s.amazonaws.com%s",
			     e->fips ? "ecr-fips" : "api.ecr", region,
			     strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
	}
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* ---- stats ---- */

void ecr_stats_add(ecr *e, const char *op, int failed, int retries, uint64_t bytes_in,
		   uint64_t bytes_out)
{
	struct ecr_op_stats *s = NULL;

	pthread_mutex_lock(&e->stats_lock);
	for (size_t i = 0; i < e->nstats; i++)
		if (strcmp(e->stats[i].op, op) == 0)
			s = &e->stats[i];
	if (!s && e->nstats < ECR_MAX_OPS) {
		s = &e->stats[e->nstats++];
		s->op = op;
	}
	if (s) {
		s->calls++;
		s->errors += failed ? 1 : 0;
		s->retries += retries > 0 ? (uint64_t)retries : 0;
		s->bytes_in += bytes_in;
		s->bytes_out += bytes_out;
	}
	pthread_mutex_unlock(&e->stats_lock);
}

char *ecr_stats_json(ecr *e)
{
	json_t *root = json_object(), *calls = json_object(), *errors = json_object(),
	       *ops = json_object();
	uint64_t retries = 0, bin = 0, bout = 0;
	char *s = NULL;

	if (!root || !calls || !errors || !ops)
		goto out;
	pthread_mutex_lock(&e->stats_lock);
	for (size_t i = 0; i < e->nstats; i++) {
		const struct ecr_op_stats *st = &e->stats[i];
		json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I}", "calls", (json_int_t)st->calls,
				      "errors", (json_int_t)st->errors, "retries",
				      (json_int_t)st->retries, "bytes_in", (json_int_t)st->bytes_in,
				      "bytes_out", (json_int_t)st->bytes_out);
		json_object_set_new(calls, st->op, json_integer((json_int_t)st->calls));
		json_object_set_new(errors, st->op, json_integer((json_int_t)st->errors));
		if (o)
			json_object_set_new(ops, st->op, o);
		retries += st->retries;
		bin += st->bytes_in;
		bout += st->bytes_out;
	}
	pthread_mutex_unlock(&e->stats_lock);
	json_object_set(root, "calls", calls);
	json_object_set(root, "errors", errors);
	json_object_set_new(root, "retries", json_integer((json_int_t)retries));
	json_object_set_new(root, "bytes_in", json_integer((json_int_t)bin));
	json_object_set_new(root, "bytes_out", json_integer((json_int_t)bout));
	json_object_set(root, "ops", ops);
	s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(calls);
	json_decref(errors);
	json_decref(ops);
	json_decref(root);
	return s;
}

/* ---- the call path ---- */

struct retry_state {
	ecr *e;
	const struct aws_sign_ctx *sc; /* which key signed the refused attempt */
	int expired_retried;	       /* ExpiredToken retried once already */
};

static int is_retryable_code(const char *code)
{
	static const char *const codes[] = {"ThrottlingException",
					    "TooManyRequestsException",
					    "ServerException",
					    "ServiceUnavailableException",
					    "InternalFailure",
					    "ServiceUnavailable",
					    NULL};
	for (int i = 0; codes[i]; i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

/* Reads __type from an error body without keeping the parse. */
static void body_code(const struct net_buf *body, char *code, size_t size)
{
	json_t *j;

	code[0] = '\0';
	if (!body || !body->len)
		return;
	j = json_loadb(body->data, body->len, JSON_ALLOW_NUL, NULL);
	if (j) {
		ecr_error_code(ecr_json_str(j, "__type"), code, size);
		json_decref(j);
	}
}

static int retry_cb(void *arg, long status, const struct net_buf *body)
{
	struct retry_state *rs = arg;
	char code[96];

	if (status == 429 || status >= 500)
		return 1;
	if (status < 400)
		return 0;
	body_code(body, code, sizeof(code));
	if (is_retryable_code(code))
		return 1;
	if (strcmp(code, "ExpiredTokenException") == 0 && !rs->expired_retried && rs->e->creds) {
		/* Temporary credentials ran out early: fetch fresh ones once.
		 * Only if that key is still current: threads refused together
		 * share one refresh. */
		rs->expired_retried = 1;
		log_info("ecr: credentials expired; refreshing them and retrying once");
		cred_expired(rs->e->creds, rs->sc->access_key_id);
		return 1;
	}
	return 0;
}

static void fill_error(struct ecr_error *err, const json_t *j, long status)
{
	const char *msg;

	err->http_status = status;
	err->code[0] = '\0';
	err->message[0] = '\0';
	if (!j)
		return;
	ecr_error_code(ecr_json_str(j, "__type"), err->code, sizeof(err->code));
	msg = ecr_json_str(j, "message");
	if (!msg)
		msg = ecr_json_str(j, "Message");
	snprintf(err->message, sizeof(err->message), "%s", msg ? msg : "");
}

static int is_expected(const struct ecr_call *c, const char *code)
{
	for (int i = 0; c->expected && c->expected[i]; i++)
		if (strcmp(c->expected[i], code) == 0)
			return 1;
	return 0;
}

int ecr_call(ecr *e, struct ecr_call *c, json_t **resp_out, struct ecr_error *err_out)
{
	struct ecr_error errbuf, *err = err_out ? err_out : &errbuf;
	char url[512], target[160];
	char *body = NULL;
	size_t body_len = 0;
	char payload_hash[65];
	struct aws_sign_ctx sc;
	struct retry_state rs = {.e = e, .sc = &sc};
	struct net_response resp;
	json_t *j = NULL;
	int rc;

	memset(err, 0, sizeof(*err));
	memset(&resp, 0, sizeof(resp));
	memset(&sc, 0, sizeof(sc));
	if (resp_out)
		*resp_out = NULL;
	rc = ecr_endpoint_url(e, c->region, url, sizeof(url));
	if (rc)
		goto out;
	snprintf(target, sizeof(target), "X-Amz-Target: " ECR_TARGET_PREFIX "%s", c->op);
	const char *headers[] = {"Content-Type: application/x-amz-json-1.1", target, NULL};

	if (c->req) {
		body = json_dumps(c->req, JSON_COMPACT);
		if (!body) {
			rc = -ENOMEM;
			goto out;
		}
		body_len = strlen(body);
		sigv4_sha256_hex(body, body_len, payload_hash);
	} else {
		snprintf(payload_hash, sizeof(payload_hash), "%s",
			 c->payload_hash ? c->payload_hash : "");
		body_len = c->body_len;
	}

	struct net_request req = {
	    .method = "POST",
	    .url = url,
	    .headers = headers,
	    .body = body,
	    .body_len = body_len,
	    .body_cb = c->req ? NULL : c->body_cb,
	    .body_arg = c->body_arg,
	    .retry_cb = retry_cb,
	    .retry_arg = &rs,
	    .deadline_ms = c->deadline_ms > 0 ? c->deadline_ms : e->deadline_ms,
	    .stall_ms = c->stall_ms,
	    .max_attempts = ECR_MAX_ATTEMPTS,
	};
	rc = aws_sign_init(&sc, e->creds, c->region, "ecr", &req, payload_hash);
	if (rc)
		goto out;
	char safe_url[512];
	log_debug("ecr %s %s region %s repository %s", c->op,
		  log_url_safe(url, safe_url, sizeof(safe_url)), c->region ? c->region : "-",
		  c->w && c->w->repository ? c->w->repository : "-");
	rc = e->transport(e->transport_arg, &req, &resp);
	c->retries = resp.retries;
	c->request_id = resp.request_id;
	if (rc < 0) {
		err->http_status = resp.status;
		if (sc.last_err < 0 && resp.status == 0) {
			rc = sc.last_err; /* no credentials: cred_get logged the sources */
			snprintf(err->message, sizeof(err->message), "no credentials");
		} else {
			rc = ecr_errno(NULL, 0, rc);
		}
		goto fail;
	}
	if (resp.body.len) {
		j = json_loadb(resp.body.data, resp.body.len, JSON_ALLOW_NUL, NULL);
		if (!j && resp.status >= 200 && resp.status < 300) {
			rc = -EPROTO;
			err->http_status = resp.status;
			snprintf(err->message, sizeof(err->message), "reply is not JSON");
			goto fail;
		}
	}
	if (resp.status >= 200 && resp.status < 300) {
		if (!j)
			j = json_object(); /* some calls answer an empty body */
		err->http_status = resp.status;
		rc = 0;
		goto out;
	}
	fill_error(err, j, resp.status);
	rc = ecr_errno(err->code, resp.status, 0);
	/* net/http stops retrying at its attempt limit or at the deadline;
	 * still retryable with attempts left means the deadline passed. */
	if (rc == -EIO &&
	    (resp.status == 429 || (resp.status >= 500 && resp.status != 501) ||
	     is_retryable_code(err->code)) &&
	    resp.attempts < ECR_MAX_ATTEMPTS)
		rc = -ETIMEDOUT;
	if (rc == 0 || is_expected(c, err->code)) {
		log_debug("ecr %s: %s (%s)", c->op, err->code, err->message);
		goto out;
	}
fail:
	if (rc == -EHOSTUNREACH && resp.attempts == 0)
		/* endpoint in back-off: net/http logged it going down */
		log_debug("ecr %s: endpoint unreachable, not tried", c->op);
	else
		ecr_log_failure(c, err, rc, sc.source, resp.attempts > 0 ? resp.attempts : 1);
out:
	c->request_id = NULL; /* points into resp */
	if (c->op)
		ecr_stats_add(e, c->op, rc != 0, resp.retries, resp.body.len, body_len);
	if (resp_out)
		*resp_out = j;
	else
		json_decref(j);
	net_buf_free(&resp.body);
	free(body);
	return rc;
}

int ecr_call_pages(ecr *e, struct ecr_call *c, ecr_page_fn page, void *out, struct ecr_error *err)
{
	char *next = NULL, *prev = NULL;
	json_t *j = NULL;
	int rc, pages = 0;

	if (json_object_set_new(c->req, "maxResults",
				json_integer(c->page_size ? c->page_size : ECR_PAGE_SIZE)))
		return -ENOMEM;
	for (;;) {
		rc = ecr_call(e, c, &j, err);
		if (rc)
			goto out;
		free(prev);
		prev = next;
		next = NULL;
		rc = page(j, out, &next);
		json_decref(j);
		j = NULL;
		if (rc || !next)
			goto out;
		/* A token that repeats would loop forever: a server bug. */
		if ((prev && strcmp(prev, next) == 0) || ++pages > 1000000) {
			log_err("ecr %s: pagination does not advance; stopping", c->op);
			rc = -EPROTO;
			goto out;
		}
		if (json_object_set_new(c->req, "nextToken", json_string(next))) {
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	json_object_del(c->req, "nextToken");
	json_decref(j);
	free(prev);
	free(next);
	return rc;
}

int ecr_call_parse(ecr *e, struct ecr_call *c, ecr_reply_fn parse, void *arg, struct ecr_error *err)
{
	json_t *j = NULL;
	int rc = ecr_call(e, c, parse ? &j : NULL, err);

	if (rc == 0 && parse)
		rc = parse(j, arg);
	json_decref(j);
	json_decref(c->req);
	c->req = NULL;
	return rc;
}

struct unpaged {
	ecr_page_fn page;
	void *out;
};

static int unpaged_reply(const json_t *resp, void *arg)
{
	const struct unpaged *u = arg;
	char *next = NULL;
	int rc = u->page(resp, u->out, &next);

	free(next);
	return rc;
}

int ecr_call_unpaged(ecr *e, struct ecr_call *c, ecr_page_fn page, void *out, struct ecr_error *err)
{
	struct unpaged u = {.page = page, .out = out};

	return ecr_call_parse(e, c, unpaged_reply, &u, err);
}

int ecr_call_string(ecr *e, struct ecr_call *c, const char *key, char **out, json_t **resp,
		    struct ecr_error *err)
{
	json_t *j = NULL;
	int rc;

	*out = NULL;
	if (resp)
		*resp = NULL;
	rc = ecr_call(e, c, &j, err);
	if (rc == 0 && !(*out = ecr_json_strdup(j, key)))
		rc = -EPROTO;
	json_decref(c->req);
	c->req = NULL;
	if (rc == 0 && resp)
		*resp = j;
	else
		json_decref(j);
	return rc;
}
