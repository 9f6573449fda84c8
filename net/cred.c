/* The credential provider: walks the chain in the AWS CLI's order, caches
 * the result and refreshes it before it expires (cred.h says when). */
#include "net/cred.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "net/cred_i.h"
#include "net/http.h"
#include "net/log.h"

#define REFRESH_BEFORE_S 300
/* While another thread refreshes, credentials valid this much longer
 * (at most) are still handed out. */
#define SERVE_WHILE_REFRESH_S 10

struct cred_provider {
	/* Protects cur, have, invalid, refreshing, generation and last_ret. A
	 * chain walk (STS, IMDS: seconds) runs without it, one thread at a time
	 * (refreshing); meanwhile the others keep using credentials that are
	 * still valid, or wait on refreshed when there are none. */
	pthread_mutex_t lock;
	pthread_cond_t refreshed;
	struct cred cur;
	int have, invalid, refreshing, last_ret;
	time_t obtained;	  /* when cur was fetched: its lifetime */
	unsigned long generation; /* completed refreshes */
	char *profile;
	int profile_explicit;
	char *sts_endpoint, *ca_file;
	int timeout_ms;
	int refresh_before_s; /* 0: REFRESH_BEFORE_S or a quarter of the lifetime */
	net_http *http; /* created on first use; used only by the refreshing thread */
};

/* ---- small helpers shared by the sources ---- */

void cred_chain_note(struct cred_chain *ch, const char *fmt, ...)
{
	size_t used = strlen(ch->tried);
	va_list ap;
	if (used && used + 2 < sizeof(ch->tried)) {
		strcat(ch->tried, "; ");
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(ch->tried + used, sizeof(ch->tried) - used, fmt, ap);
	va_end(ap);
}

const char *cred_config_get(const struct cred_chain *ch, const char *profile, const char *key)
{
	return ini_get(ch->config, profile, key);
}

const char *cred_profile_get(const struct cred_chain *ch, const char *profile, const char *key)
{
	const char *v = ini_get(ch->credentials, profile, key);
	return v ? v : ini_get(ch->config, profile, key);
}

int cred_set(struct cred *out, const char *ak, const char *sk, const char *token, time_t exp,
	     const char *source_fmt, ...)
{
	va_list ap;
	memset(out, 0, sizeof(*out));
	out->access_key_id = strdup(ak);
	out->secret_access_key = strdup(sk);
	out->session_token = token && *token ? strdup(token) : NULL;
	out->expiration = exp;
	va_start(ap, source_fmt);
	vsnprintf(out->source, sizeof(out->source), source_fmt, ap);
	va_end(ap);
	if (!out->access_key_id || !out->secret_access_key ||
	    (token && *token && !out->session_token)) {
		cred_clear(out);
		return -ENOMEM;
	}
	return 0;
}

void cred_free_secret(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void cred_reply_free(struct net_response *r)
{
	if (r->body.data)
		explicit_bzero(r->body.data, r->body.len);
	net_buf_free(&r->body);
}

int cred_parse_time(const char *s, time_t *out)
{
	struct tm tm;
	const char *p;

	if (!s)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	time_t t = timegm(&tm);
	if (*p == '+' || *p == '-') {
		int hh = 0, mm = 0;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1)
			return -EINVAL;
		long off = hh * 3600L + mm * 60L;
		t -= *p == '+' ? off : -off;
	} else if (*p && *p != 'Z' && *p != 'z') {
		return -EINVAL;
	}
	*out = t;
	return 0;
}

const char *cred_sts_region(const struct cred_chain *ch, const char *profile, char *buf, size_t n)
{
	const char *r = getenv("AWS_REGION");
	if (!r || !*r)
		r = getenv("AWS_DEFAULT_REGION");
	if ((!r || !*r) && profile)
		r = cred_config_get(ch, profile, "region");
	if (!r || !*r)
		r = "us-east-1";
	snprintf(buf, n, "%s", r);
	return buf;
}

int cred_read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *s = NULL;
	size_t cap = 0, len = 0;
	int ret = 0;

	*out = NULL;
	if (!f)
		return -errno;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (1u << 20)) {
				ret = -EFBIG;
				goto out;
			}
			char *p = realloc(s, cap);
			if (!p) {
				ret = -ENOMEM;
				goto out;
			}
			s = p;
		}
		size_t got = fread(s + len, 1, 4096, f);
		len += got;
		if (got < 4096)
			break;
	}
	if (ferror(f)) {
		ret = -EIO;
		goto out;
	}
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
		       s[len - 1] == '\t'))
		len--;
	s[len] = '\0';
	size_t lead = strspn(s, " \t\r\n");
	memmove(s, s + lead, len - lead + 1);
	*out = s;
	s = NULL;
out:
	free(s);
	fclose(f);
	return ret;
}

/* ---- environment and static profile keys ---- */

int cred_from_env(struct cred_chain *ch, struct cred *out)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID");
	const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");

	if (ch->profile_explicit) {
		cred_chain_note(ch, "environment: skipped (profile given explicitly)");
		return -ENOENT;
	}
	if (!ak || !*ak || !sk || !*sk) {
		cred_chain_note(
		    ch, (ak && *ak) || (sk && *sk)
			    ? "environment: only one of AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set"
			    : "environment: not set");
		return -ENOENT;
	}
	return cred_set(out, ak, sk, tok, 0, "environment");
}

int cred_from_static_profile(struct cred_chain *ch, const char *profile, int config_only,
			     struct cred *out)
{
	const struct ini *f = config_only ? ch->config : ch->credentials;
	const char *path = config_only ? ch->config_path : ch->credentials_path;
	const char *ak = ini_get(f, profile, "aws_access_key_id");
	const char *sk = ini_get(f, profile, "aws_secret_access_key");

	if (!f) {
		cred_chain_note(ch, "%s: absent", path);
		return -ENOENT;
	}
	if (!ak || !sk) {
		cred_chain_note(ch, "%s: %s", path,
				ini_has_section(f, profile) ? "no keys in the profile"
							    : "no such profile");
		return -ENOENT;
	}
	return cred_set(out, ak, sk, ini_get(f, profile, "aws_session_token"), 0,
			"profile %s (%s file)", profile, config_only ? "config" : "credentials");
}

/* Credentials of profile as a source_profile: its own role (unless it
 * names itself), web identity, SSO, static keys, credential_process. */
int cred_resolve_profile(struct cred_chain *ch, const char *profile, int depth, struct cred *out)
{
	int ret;

	if (depth > CRED_MAX_DEPTH) {
		log_err("profile %s: source_profile chain deeper than %d (a cycle?)", profile,
			CRED_MAX_DEPTH);
		return -ELOOP;
	}
	if (!ini_has_section(ch->config, profile) && !ini_has_section(ch->credentials, profile)) {
		log_err("profile %s (a source_profile) is in neither %s nor %s", profile,
			ch->config_path, ch->credentials_path);
		return -ENOENT;
	}
	const char *src = cred_config_get(ch, profile, "source_profile");
	if (cred_config_get(ch, profile, "role_arn") && !(src && !strcmp(src, profile))) {
		ret = cred_from_role(ch, profile, depth + 1, out);
		if (ret != -ENOENT)
			return ret;
	}
	ret = cred_from_sso(ch, profile, out);
	if (ret != -ENOENT)
		return ret;
	ret = cred_from_static_profile(ch, profile, 0, out);
	if (ret != -ENOENT)
		return ret;
	ret = cred_from_static_profile(ch, profile, 1, out);
	if (ret != -ENOENT)
		return ret;
	return cred_from_process(ch, profile, out);
}

/* ---- the chain ---- */

const char *cred_home(char *buf, size_t n)
{
	const char *home = getenv("HOME");
	struct passwd pw, *res = NULL;
	char tmp[4096];

	/* mount(8) and systemd run mount helpers without HOME (fstab mounts). */
	if (!home || !*home)
		home = getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res && res->pw_dir
			   ? res->pw_dir
			   : "";
	snprintf(buf, n, "%s", home);
	return buf;
}

static void config_paths(struct cred_chain *ch)
{
	char hb[512];
	const char *home = cred_home(hb, sizeof(hb));
	const char *c = getenv("AWS_CONFIG_FILE");
	const char *k = getenv("AWS_SHARED_CREDENTIALS_FILE");
	if (c && *c)
		snprintf(ch->config_path, sizeof(ch->config_path), "%s", c);
	else
		snprintf(ch->config_path, sizeof(ch->config_path), "%s/.aws/config", home);
	if (k && *k)
		snprintf(ch->credentials_path, sizeof(ch->credentials_path), "%s", k);
	else
		snprintf(ch->credentials_path, sizeof(ch->credentials_path), "%s/.aws/credentials",
			 home);
}

static void load_files(struct cred_chain *ch)
{
	int err = 0;
	config_paths(ch);
	ch->config = ini_load(ch->config_path, 1, &err);
	if (!ch->config && err != -ENOENT)
		log_warn("cannot read %s: %s", ch->config_path, strerror(-err));
	ch->credentials = ini_load(ch->credentials_path, 0, &err);
	if (!ch->credentials && err != -ENOENT)
		log_warn("cannot read %s: %s", ch->credentials_path, strerror(-err));
}

static int walk_chain(struct cred_chain *ch, struct cred *out)
{
	const char *p = ch->profile;
	int ret;

#define TRY(call)                                                                                  \
	do {                                                                                       \
		ret = (call);                                                                      \
		if (ret != -ENOENT)                                                                \
			return ret;                                                                \
	} while (0)
	TRY(cred_from_env(ch, out));
	if (cred_config_get(ch, p, "role_arn"))
		TRY(cred_from_role(ch, p, 0, out));
	else
		cred_chain_note(ch, "assume role: no role_arn in profile %s", p);
	TRY(cred_from_web_identity_env(ch, out));
	TRY(cred_from_sso(ch, p, out));
	TRY(cred_from_static_profile(ch, p, 0, out));
	TRY(cred_from_process(ch, p, out));
	TRY(cred_from_static_profile(ch, p, 1, out));
	TRY(cred_from_container(ch, out));
	TRY(cred_from_imds(ch, out));
#undef TRY
	return -ENOENT;
}

int cred_provider_new(const struct cred_opts *opts, cred_provider **out)
{
	cred_provider *p = calloc(1, sizeof(*p));
	const char *prof = opts ? opts->profile : NULL;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->refreshed, NULL);
	if (prof && *prof) {
		p->profile_explicit = 1;
	} else {
		prof = getenv("AWS_PROFILE");
		if (!prof || !*prof)
			prof = getenv("AWS_DEFAULT_PROFILE");
		if (!prof || !*prof)
			prof = "default";
	}
	p->profile = strdup(prof);
	p->sts_endpoint = opts && opts->sts_endpoint ? strdup(opts->sts_endpoint) : NULL;
	p->ca_file = opts && opts->ca_file ? strdup(opts->ca_file) : NULL;
	p->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
	p->refresh_before_s = opts && opts->refresh_before_s > 0 ? opts->refresh_before_s : 0;
	if (!p->profile || (opts && opts->sts_endpoint && !p->sts_endpoint) ||
	    (opts && opts->ca_file && !p->ca_file)) {
		cred_provider_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

void cred_provider_free(cred_provider *p)
{
	if (!p)
		return;
	cred_clear(&p->cur);
	net_http_free(p->http);
	free(p->profile);
	free(p->sts_endpoint);
	free(p->ca_file);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->refreshed);
	free(p);
}

void cred_clear(struct cred *c)
{
	if (!c)
		return;
	free(c->access_key_id);
	cred_free_secret(c->secret_access_key);
	cred_free_secret(c->session_token);
	memset(c, 0, sizeof(*c));
}

static int cred_copy(const struct cred *src, struct cred *dst)
{
	int ret = cred_set(dst, src->access_key_id, src->secret_access_key, src->session_token,
			   src->expiration, "%s", src->source);
	return ret;
}

/* Walks the chain into *fresh. Called without p->lock, by one thread at a
 * time (p->refreshing). */
static int refresh(cred_provider *p, struct cred *fresh)
{
	struct cred_chain ch;
	int ret;

	memset(&ch, 0, sizeof(ch));
	ch.profile = p->profile;
	ch.profile_explicit = p->profile_explicit;
	ch.sts_endpoint = p->sts_endpoint;
	ch.ca_file = p->ca_file;
	ch.timeout_ms = p->timeout_ms;
	if (!p->http) {
		/* Short connects: IMDS and the container agent are local or absent. */
		struct net_http_opts ho = {.ca_file = p->ca_file, .connect_timeout_ms = 3000};
		ret = net_http_new(&ho, &p->http);
		if (ret)
			return ret;
	}
	ch.http = p->http;
	load_files(&ch);
	if (p->profile_explicit && !ini_has_section(ch.config, p->profile) &&
	    !ini_has_section(ch.credentials, p->profile))
		log_warn("profile %s is in neither %s nor %s", p->profile, ch.config_path,
			 ch.credentials_path);
	ret = walk_chain(&ch, fresh);
	if (ret == 0)
		log_info("credentials from %s", fresh->source);
	else if (ret == -ENOENT)
		log_err("no AWS credentials for profile %s; tried: %s. Check `aws configure "
			"list --profile %s`",
			p->profile, ch.tried, p->profile);
	ini_free(ch.config);
	ini_free(ch.credentials);
	return ret;
}

/* Credentials that stay valid for more than margin seconds. Under p->lock. */
static int usable(const cred_provider *p, time_t now, time_t margin)
{
	return p->have && !p->invalid &&
	       (p->cur.expiration == 0 || p->cur.expiration - now > margin);
}

/* How long before expiry cur is refreshed: 5 minutes, or a quarter of its
 * lifetime when shorter (else short-lived credentials, always within 5
 * minutes of expiry, would be refreshed on every call). Under p->lock. */
static time_t refresh_margin(const cred_provider *p)
{
	time_t life = p->cur.expiration - p->obtained;

	if (p->refresh_before_s)
		return p->refresh_before_s;
	if (life <= 0)
		return 0;
	return life / 4 < REFRESH_BEFORE_S ? life / 4 : REFRESH_BEFORE_S;
}

/* Valid this much longer, cur may still be used while another thread
 * refreshes. Under p->lock. */
static time_t serve_margin(const cred_provider *p)
{
	time_t m = refresh_margin(p) / 2;

	return m < SERVE_WHILE_REFRESH_S ? m : SERVE_WHILE_REFRESH_S;
}

int cred_get(cred_provider *p, struct cred *out)
{
	struct cred fresh = {0};
	time_t now;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	for (;;) {
		now = time(NULL);
		if (usable(p, now, refresh_margin(p)))
			goto copy;
		if (!p->refreshing)
			break;
		/* Another thread refreshes: use what still works, else wait for it. */
		if (usable(p, now, serve_margin(p)))
			goto copy;
		unsigned long gen = p->generation;
		while (p->refreshing && p->generation == gen)
			pthread_cond_wait(&p->refreshed, &p->lock);
		if (p->generation != gen && p->last_ret && !usable(p, time(NULL), serve_margin(p))) {
			ret = -EACCES; /* that refresh failed and was logged; do not repeat it */
			goto out;
		}
	}
	p->refreshing = 1;
	pthread_mutex_unlock(&p->lock);
	/* Shared by every waiter: not cancelled by this caller's INTERRUPT. */
	volatile int *cancel = net_http_thread_cancel_swap(NULL);
	ret = refresh(p, &fresh);
	net_http_thread_cancel_swap(cancel);
	pthread_mutex_lock(&p->lock);
	p->refreshing = 0;
	p->generation++;
	p->last_ret = ret;
	if (ret == 0) {
		cred_clear(&p->cur);
		p->cur = fresh;
		p->obtained = time(NULL);
		p->have = 1;
		p->invalid = 0;
	}
	pthread_cond_broadcast(&p->refreshed);
	if (ret) {
		/* Keep serving credentials that are still valid. */
		if (usable(p, time(NULL), serve_margin(p))) {
			log_warn("credential refresh failed (%s); keeping %s until it expires",
				 strerror(-ret), p->cur.source);
			ret = 0;
			goto copy;
		}
		ret = -EACCES;
		goto out;
	}
copy:
	ret = cred_copy(&p->cur, out);
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void cred_invalidate(cred_provider *p)
{
	pthread_mutex_lock(&p->lock);
	p->invalid = 1;
	pthread_mutex_unlock(&p->lock);
}

void cred_expired(cred_provider *p, const char *access_key_id)
{
	pthread_mutex_lock(&p->lock);
	if (p->have && access_key_id && p->cur.access_key_id &&
	    strcmp(p->cur.access_key_id, access_key_id) == 0)
		p->invalid = 1;
	pthread_mutex_unlock(&p->lock);
}

const char *cred_profile_name(const cred_provider *p) { return p->profile; }

int cred_resolve_region(const struct cred_opts *opts, char *buf, size_t bufsize)
{
	const char *r = getenv("AWS_REGION");
	struct cred_chain ch;
	int ret = -ENOENT;

	if (!r || !*r)
		r = getenv("AWS_DEFAULT_REGION");
	if (r && *r) {
		snprintf(buf, bufsize, "%s", r);
		return 0;
	}
	memset(&ch, 0, sizeof(ch));
	const char *prof = opts && opts->profile && *opts->profile ? opts->profile : NULL;
	if (!prof)
		prof = getenv("AWS_PROFILE");
	if (!prof || !*prof)
		prof = getenv("AWS_DEFAULT_PROFILE");
	if (!prof || !*prof)
		prof = "default";
	config_paths(&ch);
	ch.config = ini_load(ch.config_path, 1, NULL);
	r = ini_get(ch.config, prof, "region");
	if (r && *r) {
		snprintf(buf, bufsize, "%s", r);
		ret = 0;
		goto out;
	}
	const char *dis = getenv("AWS_EC2_METADATA_DISABLED");
	if (dis && !strcasecmp(dis, "true"))
		goto out;
	net_http *h = NULL;
	struct net_http_opts ho = {.ca_file = opts ? opts->ca_file : NULL,
				   .connect_timeout_ms = 1000};
	if (net_http_new(&ho, &h) == 0) {
		ret = cred_imds_region(h, buf, bufsize);
		net_http_free(h);
	}
	if (ret)
		ret = -ENOENT;
out:
	ini_free(ch.config);
	return ret;
}
