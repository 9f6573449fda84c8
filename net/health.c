/* Endpoint health (see health.h): a small array of hosts in back-off. */
#include "net/health.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_MAX 264

struct hentry {
	char key[KEY_MAX];
	char origin[KEY_MAX + 16]; /* "scheme://host:port/" for background probes */
	int64_t bg_at;		   /* when the last background probe was handed out */
	int64_t wanted;		   /* the last call to it (background probes stop after idle) */
	int64_t until;		   /* calls fail at once before this */
	int64_t probe_at;	   /* when the running probe was admitted (probing) */
	int fails;		   /* back-offs in a row: the next is 5 s << fails */
	int probing;		   /* a call admitted as the probe has not reported */
};

struct net_health {
	pthread_mutex_t mu; /* protects v and n */
	struct hentry *v;
	size_t n, max;
};

int net_health_new(size_t max, struct net_health **out)
{
	struct net_health *t = calloc(1, sizeof *t);
	*out = NULL;
	if (!t || !(t->v = calloc(max ? max : 1, sizeof *t->v))) {
		free(t);
		return -ENOMEM;
	}
	t->max = max ? max : 1;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

void net_health_free(struct net_health *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t->v);
	free(t);
}

int net_health_key(const char *url, char *key, size_t n)
{
	const char *p = strstr(url, "://"), *port = NULL;
	const char *dflt = !strncasecmp(url, "https://", 8) ? "443" : "80";
	size_t len, plen = 0;

	if (!p || n < 8)
		return -EINVAL;
	p += 3;
	const char *at = p + strcspn(p, "/?#");
	const char *cred = memchr(p, '@', (size_t)(at - p));
	if (cred)
		p = cred + 1; /* never key (or log) user information */
	len = (size_t)(at - p);
	const char *colon = len && p[0] != '[' ? memchr(p, ':', len) : NULL;
	if (p[0] == '[') { /* an IPv6 literal */
		const char *rb = memchr(p, ']', len);
		colon = rb && rb + 1 < at && rb[1] == ':' ? rb + 1 : NULL;
	}
	if (colon) {
		port = colon + 1;
		plen = (size_t)(at - port);
		len = (size_t)(colon - p);
	}
	if (!len || len + 8 >= n)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		key[i] = (char)tolower((unsigned char)p[i]);
	key[len] = ':';
	if (!port || !plen || plen > 5) {
		port = dflt;
		plen = strlen(dflt);
	}
	memcpy(key + len + 1, port, plen);
	key[len + 1 + plen] = '\0';
	return 0;
}

static struct hentry *find(struct net_health *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].key, key))
			return &t->v[i];
	return NULL;
}

static void drop(struct net_health *t, struct hentry *e) { *e = t->v[--t->n]; }

/* A new entry for key; when the table is full, the one whose back-off ends
 * first goes (a probe's entry last). Locked. */
static struct hentry *add(struct net_health *t, const char *key)
{
	struct hentry *e;
	if (t->n == t->max) {
		e = &t->v[0];
		for (size_t i = 1; i < t->n; i++) {
			struct hentry *x = &t->v[i];
			if ((e->probing && !x->probing) ||
			    (e->probing == x->probing && x->until < e->until))
				e = x;
		}
		drop(t, e);
	}
	e = &t->v[t->n++];
	memset(e, 0, sizeof *e);
	strncpy(e->key, key, KEY_MAX - 1);
	return e;
}

int net_health_admit(struct net_health *t, const char *key, int64_t now_ms)
{
	int rc = NET_HEALTH_GO;
	pthread_mutex_lock(&t->mu);
	struct hentry *e = find(t, key);
	if (!e)
		goto out;
	/* A probe is bounded by its call's deadline; one that never reported
	 * (a bug) must not keep the host down for ever. */
	if (e->probing && now_ms - e->probe_at > 2 * NET_HEALTH_MAX_MS)
		e->probing = 0;
	e->wanted = now_ms;
	if (now_ms < e->until || e->probing) {
		rc = -EHOSTUNREACH;
		goto out;
	}
	e->probing = 1;
	e->probe_at = now_ms;
	rc = NET_HEALTH_PROBE;
out:
	pthread_mutex_unlock(&t->mu);
	return rc;
}

static int backoff_ms(int fails)
{
	int64_t ms = NET_HEALTH_MIN_MS;
	for (int i = 1; i < fails && ms < NET_HEALTH_MAX_MS; i++)
		ms *= 2;
	return (int)(ms < NET_HEALTH_MAX_MS ? ms : NET_HEALTH_MAX_MS);
}

int net_health_report(struct net_health *t, const char *key, int how, enum net_health_outcome o,
		      int64_t now_ms)
{
	int rc = 0;
	pthread_mutex_lock(&t->mu);
	struct hentry *e = find(t, key);
	if (o == NET_HEALTH_UP) {
		if (e) {
			drop(t, e);
			rc = -1;
		}
		goto out;
	}
	if (o == NET_HEALTH_NONE) {
		if (e && how == NET_HEALTH_PROBE)
			e->probing = 0;
		goto out;
	}
	/* Down. A call admitted before the host went down says nothing new. */
	if (e && how != NET_HEALTH_PROBE)
		goto out;
	if (!e)
		e = add(t, key);
	e->fails++;
	e->probing = 0;
	rc = backoff_ms(e->fails);
	e->until = now_ms + rc;
out:
	pthread_mutex_unlock(&t->mu);
	return rc;
}

size_t net_health_down(struct net_health *t, int64_t now_ms)
{
	size_t n = 0;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->n; i++)
		n += now_ms < t->v[i].until || t->v[i].probing;
	pthread_mutex_unlock(&t->mu);
	return n;
}

size_t net_health_count(struct net_health *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int net_health_set_origin(struct net_health *t, const char *key, const char *url, int64_t now_ms)
{
	const char *sep = strstr(url, "://");
	size_t slen = sep ? (size_t)(sep - url) : 0;
	int rc = -ENOENT;

	if (!sep || slen == 0 || slen > 8)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	struct hentry *e = find(t, key);
	if (e) {		   /* the key, never the URL's path, query or user information */
		if (!e->origin[0]) /* it just failed: probed an interval from now */
			e->bg_at = e->wanted = now_ms;
		snprintf(e->origin, sizeof e->origin, "%.*s://%s/", (int)slen, url, e->key);
		rc = 0;
	}
	pthread_mutex_unlock(&t->mu);
	return rc;
}

int net_health_due(struct net_health *t, int64_t now_ms, int every_ms, char *key, size_t keyn,
		   char *origin, size_t originn, int64_t *wait_ms)
{
	struct hentry *best = NULL;
	int64_t wait = -1;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->n; i++) {
		struct hentry *e = &t->v[i];
		/* Nobody called it for a while: no probing in the background
		 * (the next call, once the back-off ends, tries it itself). */
		if (!e->origin[0] || now_ms - e->wanted > NET_HEALTH_PROBE_IDLE_MS)
			continue;
		int64_t at = e->bg_at + every_ms;
		if (at <= now_ms && (!best || e->bg_at < best->bg_at))
			best = e;
		else if (at > now_ms && (wait < 0 || at - now_ms < wait))
			wait = at - now_ms;
	}
	if (best) {
		best->bg_at = now_ms;
		snprintf(key, keyn, "%s", best->key);
		snprintf(origin, originn, "%s", best->origin);
	}
	pthread_mutex_unlock(&t->mu);
	*wait_ms = best ? 0 : wait;
	return best != NULL;
}

int net_health_probe_up(struct net_health *t, const char *key)
{
	int rc = 0;
	pthread_mutex_lock(&t->mu);
	struct hentry *e = find(t, key);
	if (e) {
		drop(t, e);
		rc = -1;
	}
	pthread_mutex_unlock(&t->mu);
	return rc;
}
