/* The listing caches, their tables and the caller's identity (see
 * catalog.h); manifests and censuses are in catalog_census.c, the offline
 * copies of listings in catalog_persist.c. */
#include "fs/tree/catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/tree/catalog_i.h"
#include "net/http.h"
#include "net/log.h"

/* Listings kept in memory (a region's repositories, a repository's
 * images): beyond this the least recently used go. A listing of a few
 * hundred images takes some 100 KiB. */
#define CAT_MAX_LISTS 256
/* Blob censuses kept (one per repository, 8 KiB plus 84 bytes a blob);
 * one that went is rebuilt from the manifests in the cache. */
#define CAT_MAX_CENSUSES 32
/* An unused listing or census goes this long after its tag_ttl: past the
 * TTL it only serves as the offline copy, which the cache's metadata
 * records also keep. */
#define CAT_KEEP 600
/* Stale answers first (DESIGN §11): a caller with an expired listing waits
 * this long for its refresh, then takes the old listing while the refresh
 * goes on. Well below a second: a path crosses two listings (repositories,
 * tags), and a cached read must stay under one. ECR answers a listing page
 * in about 0.1 s. */
#define CAT_STALE_WAIT_MS 300
/* Refreshes running in the background at most; past this an expired
 * listing is served as it is and refreshed by a later call. */
#define CAT_MAX_REFRESH 8

/* ---- the tables ---- */

/* Protects the two table pointers (made at first use, freed at shutdown);
 * each table has its own lock for its entries. */
static pthread_mutex_t tabs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fs_flights *lists;    /* struct entry by key */
static struct fs_flights *censuses; /* struct census by registry/region/repo */

static void entry_free(void *v);

static struct fs_flights *table(struct fs_flights **t, size_t max, void (*free_val)(void *))
{
	pthread_mutex_lock(&tabs_mu);
	if (!*t && fs_flights_new(&(struct fs_flights_cfg){max, free_val}, t) != 0)
		*t = NULL;
	struct fs_flights *r = *t;
	pthread_mutex_unlock(&tabs_mu);
	return r;
}

static struct fs_flights *lists_tab(void) { return table(&lists, CAT_MAX_LISTS, entry_free); }

struct fs_flights *cat_census_tab(void)
{
	return table(&censuses, CAT_MAX_CENSUSES, cat_census_free);
}

time_t cat_keep_until(const struct fs_ctx *c) { return time(NULL) + c->o.tag_ttl + CAT_KEEP; }

/* ---- a keyed cache of fs_list snapshots ---- */

struct refresh;

struct entry {
	struct fs_list *val; /* referenced by the entry */
	time_t fetched;	     /* when val was loaded */
	int err;	     /* last error (0: none) */
	time_t err_at;
	struct refresh *refresh; /* the background load running, or NULL */
	int forgotten;		 /* changed by this mount: val must not be served */
	int persist_tried;	 /* the copy an earlier mount persisted was looked for */
	unsigned gen;		 /* bumped by each forget: a load begun before one
				    does not make val fresh (it may lack the change) */
};

void fs_list_put(struct fs_list *l)
{
	if (!l || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	ecr_repo_list_free(&l->repos);
	ecr_image_list_free(&l->images);
	fs_list_index_free(l->index);
	free(l);
}

struct fs_list *cat_list_ref(struct fs_list *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
	return l;
}

static void entry_free(void *v)
{
	struct entry *e = v;
	fs_list_put(e->val);
	free(e);
}

/* Errors after which the last known listing is served instead. */
static int is_transient(int rc)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -EAGAIN || rc == -EINTR || rc == -ECONNRESET;
}

/* Where a listing comes from: a registry's region (repositories), or a
 * repository in it (images) when repo is set. */
struct where_arg {
	const char *registry, *region, *repo;
};

static int load_list(struct fs_ctx *c, const struct where_arg *w, struct fs_list **out);

/* The entry of key, held, kept for a while from now. Table locked. */
static int entry_hold(struct fs_flights *t, struct fs_ctx *c, const char *key,
		      struct fs_flight **out)
{
	struct fs_flight *f = fs_flight_get(t, key, 1);
	*out = NULL;
	if (!f)
		return -ENOMEM;
	if (!fs_flight_val(f)) {
		struct entry *e = calloc(1, sizeof *e);
		if (!e) {
			fs_flight_put(t, f);
			return -ENOMEM;
		}
		fs_flight_set(t, f, e);
	}
	fs_flight_expire_at(t, f, cat_keep_until(c));
	*out = f;
	return 0;
}

/* What the entry answers now: 0 with *out, -errno, or 1 when it must be
 * loaded. Table locked. */
static int entry_answer(const struct fs_ctx *c, const struct entry *e, struct fs_list **out)
{
	time_t now = time(NULL);
	if (e->val && now - e->fetched < c->o.tag_ttl && !e->err) {
		*out = cat_list_ref(e->val);
		return 0;
	}
	if (e->err && now - e->err_at < c->o.neg_ttl) {
		if (e->val && is_transient(e->err)) {
			*out = cat_list_ref(e->val); /* stale, until the next try */
			return 0;
		}
		return e->err;
	}
	return 1;
}

/* ECR could not be reached: the last listing, from memory or persisted by
 * an earlier mount, marked stale. Table locked (unlocked meanwhile). */
static int entry_offline(struct fs_flights *t, struct fs_ctx *c, struct entry *e, const char *key,
			 const struct persist_kind *kind, int rc, struct fs_list **out)
{
	if (!e->val) {
		fs_flights_unlock(t);
		struct fs_list *old = NULL;
		int prc = cat_persist_load(c, kind, key, &old);
		fs_flights_lock(t);
		if (prc == 0 && old && !e->val) {
			old->stale = 1;
			e->val = old;
		} else if (old) {
			fs_list_put(old);
		}
	}
	if (!e->val)
		return rc;
	if (!e->val->stale)
		log_warn("%s: ECR unreachable, serving the last known listing", key);
	e->val->stale = 1;
	*out = cat_list_ref(e->val);
	return 0;
}

/* Keeps the outcome of a load (rc, l) begun at generation gen in e. A
 * listing begun before a forget is kept (for offline use) but not fresh:
 * the next call loads again. Table locked. */
static int entry_store(struct fs_flights *t, struct fs_ctx *c, struct entry *e, const char *key,
		       const struct persist_kind *kind, int rc, struct fs_list *l, unsigned gen,
		       struct fs_list **out)
{
	time_t now = time(NULL);
	if (rc == 0) {
		if (e->val)
			fs_list_put(e->val);
		e->val = l;
		e->err = 0;
		if (gen == e->gen) {
			e->fetched = now;
			e->forgotten = 0;
		}
		*out = cat_list_ref(l);
		return 0;
	}
	if (rc == -EINTR)
		return rc; /* this caller was interrupted: not the listing's outcome */
	e->err = rc;
	e->err_at = now;
	return is_transient(rc) ? entry_offline(t, c, e, key, kind, rc, out) : rc;
}

/* A listing this mount never loaded: the copy an earlier mount persisted,
 * if any, becomes the entry's value, already expired (fetched 0), so the
 * caller goes the stale-first way instead of waiting for ECR in full. 1
 * when the entry got a value. Table locked (unlocked meanwhile). */
static int entry_from_persist(struct fs_flights *t, struct fs_ctx *c, struct entry *e,
			      const char *key, const struct persist_kind *kind)
{
	struct fs_list *old = NULL;

	if (e->val || e->forgotten || e->persist_tried)
		return 0;
	e->persist_tried = 1;
	fs_flights_unlock(t);
	int prc = cat_persist_load(c, kind, key, &old);
	fs_flights_lock(t);
	if (prc || !old || e->val || e->forgotten) {
		fs_list_put(old);
		return e->val != NULL;
	}
	old->stale = 1;
	e->val = old;
	e->fetched = 0;
	return 1;
}

/* ---- background refreshes of expired listings ---- */

/* One refresh: the entry (held) and where its listing comes from. */
struct refresh {
	struct fs_ctx *c;
	struct fs_flights *t;
	struct fs_flight *f;
	const struct persist_kind *kind;
	char key[512], registry[64], region[64], repo[512];
	int overdue;  /* a caller stopped waiting for it */
	unsigned gen; /* the entry's generation when it began */
};

/* Protected by the lists table's lock: refreshes running, and how many of
 * them callers stopped waiting for (while any is, ECR is slow and expired
 * listings are served at once). */
static int refreshing, overdue;
/* Set at shutdown: running refreshes give up (their net calls see it). */
static volatile int refresh_stop;

static void *refresh_main(void *arg)
{
	struct refresh *r = arg;
	struct where_arg w = {r->registry, r->region, r->repo[0] ? r->repo : NULL};
	struct fs_list *l = NULL, *got = NULL;

	net_http_thread_cancel(&refresh_stop); /* no FUSE request to interrupt it */
	int rc = load_list(r->c, &w, &l);
	if (rc == 0)
		cat_persist_save(r->c, r->kind, r->key, l);
	fs_flights_lock(r->t);
	struct entry *e = fs_flight_val(r->f);
	e->refresh = NULL;
	entry_store(r->t, r->c, e, r->key, r->kind, rc, l, r->gen, &got);
	if (got)
		fs_list_put(got);
	fs_flight_done(r->f);
	fs_flight_put(r->t, r->f);
	overdue -= r->overdue;
	refreshing--;
	fs_flights_unlock(r->t);
	free(r);
	return NULL;
}

/* Starts the refresh of f's expired listing in a thread, unless too many
 * run. Table locked; f not being loaded. */
static void refresh_start(struct fs_flights *t, struct fs_flight *f, struct fs_ctx *c,
			  const char *key, const struct persist_kind *kind,
			  const struct where_arg *w)
{
	pthread_attr_t at;
	pthread_t th;
	struct refresh *r;

	if (refreshing >= CAT_MAX_REFRESH || __atomic_load_n(&refresh_stop, __ATOMIC_RELAXED) ||
	    !(r = calloc(1, sizeof *r)))
		return;
	*r = (struct refresh){.c = c, .t = t, .kind = kind};
	snprintf(r->key, sizeof r->key, "%s", key);
	snprintf(r->registry, sizeof r->registry, "%s", w->registry);
	snprintf(r->region, sizeof r->region, "%s", w->region);
	snprintf(r->repo, sizeof r->repo, "%s", w->repo ? w->repo : "");
	r->f = fs_flight_get(t, key, 0); /* the thread's hold of f */
	if (r->f != f || !fs_flight_claim(f)) {
		if (r->f)
			fs_flight_put(t, r->f);
		free(r);
		return;
	}
	r->gen = ((struct entry *)fs_flight_val(f))->gen;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, refresh_main, r) == 0) {
		((struct entry *)fs_flight_val(f))->refresh = r;
		refreshing++;
	} else {
		fs_flight_done(f);
		fs_flight_put(t, f);
		free(r);
	}
	pthread_attr_destroy(&at);
}

/* The offline copy of a listing just loaded is written by a thread, after
 * the caller (an OPENDIR or LOOKUP) has its answer: for 5,000 images it is
 * a third of the daemon's work in `ls -l`. It counts as a refresh, so
 * fs_cat_shutdown waits for it. */
struct persist {
	struct fs_ctx *c;
	struct fs_flights *t;
	const struct persist_kind *kind;
	struct fs_list *l; /* referenced */
	char key[512];
};

static void *persist_main(void *arg)
{
	struct persist *p = arg;
	cat_persist_save(p->c, p->kind, p->key, p->l);
	fs_list_put(p->l);
	fs_flights_lock(p->t);
	refreshing--;
	fs_flights_unlock(p->t);
	free(p);
	return NULL;
}

/* Saves l as key's offline copy, in a thread unless too many refreshes
 * run (then here). Table not locked. */
static void persist_later(struct fs_flights *t, struct fs_ctx *c, const struct persist_kind *kind,
			  const char *key, struct fs_list *l)
{
	pthread_attr_t at;
	pthread_t th;
	struct persist *p = calloc(1, sizeof *p);
	int started = 0;
	if (p) {
		*p = (struct persist){.c = c, .t = t, .kind = kind, .l = cat_list_ref(l)};
		snprintf(p->key, sizeof p->key, "%s", key);
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		fs_flights_lock(t);
		if (refreshing < CAT_MAX_REFRESH && !__atomic_load_n(&refresh_stop, __ATOMIC_RELAXED) &&
		    pthread_create(&th, &at, persist_main, p) == 0) {
			refreshing++;
			started = 1;
		}
		fs_flights_unlock(t);
		pthread_attr_destroy(&at);
	}
	if (started)
		return;
	cat_persist_save(c, kind, key, l);
	if (p)
		fs_list_put(p->l);
	free(p);
}

/* f's listing expired and is being refreshed (or could not be): waits for
 * the refresh at most CAT_STALE_WAIT_MS, not at all while another is
 * overdue, then answers the new listing or the old one. Table locked. */
static int entry_stale(struct fs_flights *t, struct fs_flight *f, struct fs_ctx *c,
		       struct fs_list **out)
{
	struct entry *e = fs_flight_val(f);
	int rc;
	for (int waited = 0; fs_flight_busy(f) && !overdue; waited += 20) {
		if (waited >= CAT_STALE_WAIT_MS) {
			if (e->refresh && !e->refresh->overdue) {
				e->refresh->overdue = 1;
				overdue++;
			}
			break;
		}
		fs_flights_unlock(t);
		nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
		fs_flights_lock(t);
	}
	if ((rc = entry_answer(c, e, out)) != 1)
		return rc;
	if (!e->val)
		return -EIO; /* not reached: entries with a refresh keep their value */
	if (!e->fetched)
		log_info("%s: ECR is slow, serving the listing an earlier mount kept",
			 fs_flight_key(f));
	else
		log_debug("%s: ECR is slow, serving the listing of %lld s ago", fs_flight_key(f),
			  (long long)(time(NULL) - e->fetched));
	*out = cat_list_ref(e->val);
	return 0;
}

static int cat_get(struct fs_ctx *c, const char *key, const struct persist_kind *kind,
		   const struct where_arg *w, struct fs_list **out)
{
	struct fs_flights *t = lists_tab();
	struct fs_flight *f = NULL;
	struct fs_list *l = NULL;
	int rc, loads = 0;
	*out = NULL;
	if (!t)
		return -ENOMEM;
	fs_flights_lock(t);
	if ((rc = entry_hold(t, c, key, &f)) != 0)
		goto out;
again:
	/* One load per key; the others wait for it and take its outcome, or,
	 * when an older listing is there, wait briefly and take that. */
	while ((rc = entry_answer(c, fs_flight_val(f), out)) == 1) {
		struct entry *e = fs_flight_val(f);
		if (entry_from_persist(t, c, e, key, kind))
			continue; /* now an expired listing: answered stale-first */
		if (e->val && !e->forgotten) {
			if (!fs_flight_busy(f))
				refresh_start(t, f, c, key, kind, w);
			rc = entry_stale(t, f, c, out);
			goto out;
		}
		if (fs_flight_claim(f))
			break;
		fs_flight_wait(t, f, NULL);
	}
	if (rc != 1)
		goto out;
	unsigned gen = ((struct entry *)fs_flight_val(f))->gen;
	fs_flights_unlock(t);
	rc = load_list(c, w, &l);
	struct fs_list *copy = rc == 0 && l ? cat_list_ref(l) : NULL; /* the offline copy's */
	fs_flights_lock(t);
	rc = entry_store(t, c, fs_flight_val(f), key, kind, rc, l, gen, out);
	fs_flight_done(f);
	int changed = gen != ((struct entry *)fs_flight_val(f))->gen;
	if (copy) {
		/* Only a listing no change of this mount overtook becomes the
		 * offline copy: an older one saved last would lack the change. */
		fs_flights_unlock(t);
		if (rc == 0 && !changed)
			persist_later(t, c, kind, key, copy);
		fs_list_put(copy);
		fs_flights_lock(t);
	}
	/* This mount changed the listing while it loaded: load it again. */
	if (rc == 0 && changed && ++loads < 3) {
		fs_list_put(*out);
		*out = NULL;
		l = NULL;
		goto again;
	}
out:
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
	return rc;
}

static void cat_forget(const char *key)
{
	struct fs_flights *t = lists_tab();
	if (!t)
		return;
	fs_flights_lock(t);
	struct fs_flight *f = fs_flight_get(t, key, 0);
	if (f) {
		struct entry *e = fs_flight_val(f);
		e->fetched = 0;
		e->err = 0;
		e->forgotten = 1; /* the next call waits for ECR's new answer */
		e->gen++;	  /* and so do the callers of a load already running */
		fs_flight_put(t, f);
	}
	fs_flights_unlock(t);
}

/* ---- repositories and images ---- */

static int load_list(struct fs_ctx *c, const struct where_arg *w, struct fs_list **out)
{
	struct fs_list *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->refs = 1;
	struct ecr_where wh = {
	    .registry_id = w->registry, .region = w->region, .repository = w->repo};
	ecr *e = fs_ecr_for(c, w->registry);
	int rc = w->repo ? ecr_describe_images(e, &wh, NULL, 0, &l->images, NULL)
			 : ecr_describe_repositories(e, &wh, NULL, 0, &l->repos, NULL);
	if (rc) {
		fs_list_put(l);
		return rc;
	}
	*out = l;
	return 0;
}

int fs_cat_repos(struct fs_ctx *c, const char *registry, const char *region, struct fs_list **out)
{
	char key[128];
	snprintf(key, sizeof key, "%s/%s", registry, region);
	struct where_arg w = {registry, region, NULL};
	return cat_get(c, key, &cat_persist_repos, &w, out);
}

int fs_cat_images(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		  struct fs_list **out)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
	struct where_arg w = {registry, region, repo};
	return cat_get(c, key, &cat_persist_images, &w, out);
}

void fs_cat_invalidate(const char *registry, const char *region, const char *repo)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s", registry, region);
	cat_forget(key);
	if (repo) {
		snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
		cat_forget(key);
	}
}

/* ---- identity ---- */

static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER; /* protects id_cache */
static struct ecr_identity id_cache;
static int id_have;

int fs_cat_identity(struct fs_ctx *c, struct ecr_identity *out)
{
	pthread_mutex_lock(&id_mu);
	int have = id_have;
	if (have)
		*out = id_cache;
	pthread_mutex_unlock(&id_mu);
	if (have)
		return 0;
	const char *region = c->nregions ? c->regions[0] : "us-east-1";
	int rc = ecr_get_caller_identity(c->ecr, region, out, NULL);
	if (rc == 0) {
		pthread_mutex_lock(&id_mu);
		id_cache = *out;
		id_have = 1;
		pthread_mutex_unlock(&id_mu);
	}
	return rc;
}

void fs_cat_stats(struct fs_cat_stats *out)
{
	struct fs_flights *t;
	memset(out, 0, sizeof *out);
	if ((t = lists_tab()) != NULL) {
		fs_flights_lock(t);
		out->listings = fs_flights_count(t);
		fs_flights_unlock(t);
	}
	if ((t = cat_census_tab()) != NULL) {
		fs_flights_lock(t);
		out->censuses = fs_flights_count(t);
		fs_flights_unlock(t);
	}
}

void fs_cat_shutdown(void)
{
	struct fs_flights *t = lists_tab();
	__atomic_store_n(&refresh_stop, 1, __ATOMIC_RELAXED);
	for (int n = 1; t && n;) { /* refreshes hold entries: wait for them */
		fs_flights_lock(t);
		n = refreshing;
		fs_flights_unlock(t);
		if (n)
			nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	}
	pthread_mutex_lock(&tabs_mu);
	fs_flights_free(lists);
	fs_flights_free(censuses);
	lists = censuses = NULL;
	pthread_mutex_unlock(&tabs_mu);
	fs_cat_referrers_shutdown();
	__atomic_store_n(&refresh_stop, 0, __ATOMIC_RELAXED); /* a next mount */
}
