/* Keyed single-flight table with per-key waiters, expiry and an LRU bound
 * (see flight.h). Entries are chained in hash buckets and in one LRU list,
 * most recently used first. */
#include "fs/blob/flight.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_POLL_NS 100000000L /* a cancellable wait looks at its flag this often */

struct fs_flight {
	char *key;
	uint64_t hash;
	void *val;
	time_t expires;          /* 0: never */
	int holds;               /* holders (fs_flight_get without put) */
	int busy;                /* a thread loads it */
	int linked;              /* in the table (else freed at the last put) */
	pthread_cond_t cv;       /* busy ended */
	struct fs_flight *hnext; /* bucket chain */
	struct fs_flight *prev, *next; /* LRU list */
};

struct fs_flights {
	/* Protects everything in the table and in its entries. */
	pthread_mutex_t mu;
	struct fs_flights_cfg cfg;
	struct fs_flight **buckets;
	size_t nbuckets, n;
	size_t ntimed; /* linked entries with an expiry */
	struct fs_flight *head, *tail;
	time_t swept; /* when expired entries were last looked for */
	size_t wakeups; /* waits that returned from their condition variable */
};

static uint64_t key_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int fs_flights_new(const struct fs_flights_cfg *cfg, struct fs_flights **out)
{
	struct fs_flights *t = calloc(1, sizeof *t);
	*out = NULL;
	if (!t || !(t->buckets = calloc(64, sizeof *t->buckets))) {
		free(t);
		return -ENOMEM;
	}
	t->nbuckets = 64;
	t->cfg = *cfg;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

static void entry_destroy(struct fs_flights *t, struct fs_flight *e)
{
	if (e->val && t->cfg.free_val)
		t->cfg.free_val(e->val);
	pthread_cond_destroy(&e->cv);
	free(e->key);
	free(e);
}

static void unlink_entry(struct fs_flights *t, struct fs_flight *e)
{
	if (!e->linked)
		return;
	struct fs_flight **pp = &t->buckets[e->hash % t->nbuckets];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	*(e->prev ? &e->prev->next : &t->head) = e->next;
	*(e->next ? &e->next->prev : &t->tail) = e->prev;
	e->prev = e->next = e->hnext = NULL;
	e->linked = 0;
	t->n--;
	if (e->expires)
		t->ntimed--;
}

static int expired(const struct fs_flight *e, time_t now)
{
	return e->expires && now >= e->expires;
}

/* Frees e when it is idle and has nothing left to keep. */
static void maybe_free(struct fs_flights *t, struct fs_flight *e, time_t now)
{
	if (e->holds || e->busy)
		return;
	if (e->linked && e->val && !expired(e, now))
		return;
	unlink_entry(t, e);
	entry_destroy(t, e);
}

/* Drops the expired idle entries, at most once a second. */
static void sweep(struct fs_flights *t, time_t now, int force)
{
	if (!t->ntimed || (!force && now == t->swept))
		return;
	t->swept = now;
	for (struct fs_flight *e = t->head, *next; e; e = next) {
		next = e->next;
		if (expired(e, now)) {
			unlink_entry(t, e); /* a held one goes at its last put */
			maybe_free(t, e, now);
		}
	}
}

/* Evicts idle entries, least recently used first, down to the bound. */
static void evict(struct fs_flights *t)
{
	for (struct fs_flight *e = t->tail, *prev; e && t->cfg.max && t->n > t->cfg.max; e = prev) {
		prev = e->prev;
		if (!e->holds && !e->busy) {
			unlink_entry(t, e);
			entry_destroy(t, e);
		}
	}
}

static void lru_front(struct fs_flights *t, struct fs_flight *e)
{
	if (t->head == e)
		return;
	if (e->prev || e->next || t->tail == e) {
		*(e->prev ? &e->prev->next : &t->head) = e->next;
		*(e->next ? &e->next->prev : &t->tail) = e->prev;
	}
	e->prev = NULL;
	e->next = t->head;
	*(t->head ? &t->head->prev : &t->tail) = e;
	t->head = e;
}

/* Doubles the buckets when chains grow long (best effort). */
static void grow(struct fs_flights *t)
{
	size_t nb = t->nbuckets * 2;
	struct fs_flight **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct fs_flight *e = t->buckets[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash % nb];
			b[e->hash % nb] = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
}

static struct fs_flight *insert(struct fs_flights *t, const char *key, uint64_t h)
{
	struct fs_flight *e = calloc(1, sizeof *e);
	pthread_condattr_t ca;
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (t->n >= t->nbuckets * 2)
		grow(t);
	e->hash = h;
	e->linked = 1;
	e->hnext = t->buckets[h % t->nbuckets];
	t->buckets[h % t->nbuckets] = e;
	lru_front(t, e);
	t->n++;
	return e;
}

struct fs_flight *fs_flight_get(struct fs_flights *t, const char *key, int create)
{
	time_t now = time(NULL);
	uint64_t h = key_hash(key);
	struct fs_flight *e;
	sweep(t, now, 0);
	for (e = t->buckets[h % t->nbuckets]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->key, key))
			break;
	if (e && expired(e, now)) {
		unlink_entry(t, e); /* its holders keep it; a new one replaces it */
		maybe_free(t, e, now);
		e = NULL;
	}
	if (e) {
		lru_front(t, e);
	} else {
		if (!create || !(e = insert(t, key, h)))
			return NULL;
	}
	e->holds++;
	evict(t);
	return e;
}

struct fs_flight *fs_flights_find_busy(struct fs_flights *t,
				       int (*match)(const char *key, void *arg), void *arg)
{
	for (struct fs_flight *e = t->head; e; e = e->next) {
		if (e->busy && match(e->key, arg)) {
			e->holds++;
			return e;
		}
	}
	return NULL;
}

void fs_flight_put(struct fs_flights *t, struct fs_flight *e)
{
	e->holds--;
	maybe_free(t, e, time(NULL));
}

int fs_flight_claim(struct fs_flight *e)
{
	if (e->busy)
		return 0;
	e->busy = 1;
	return 1;
}

int fs_flight_busy(const struct fs_flight *e) { return e->busy; }

void fs_flight_done(struct fs_flight *e)
{
	e->busy = 0;
	pthread_cond_broadcast(&e->cv);
}

int fs_flight_wait(struct fs_flights *t, struct fs_flight *e, volatile int *cancel)
{
	while (e->busy) {
		if (!cancel) {
			pthread_cond_wait(&e->cv, &t->mu);
			t->wakeups++;
			continue;
		}
		if (__atomic_load_n(cancel, __ATOMIC_RELAXED))
			return -EINTR;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += WAIT_POLL_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&e->cv, &t->mu, &ts) == 0)
			t->wakeups++;
	}
	return 0;
}

const char *fs_flight_key(const struct fs_flight *e) { return e->key; }

void *fs_flight_val(const struct fs_flight *e) { return e->val; }

void fs_flight_set(struct fs_flights *t, struct fs_flight *e, void *val)
{
	if (e->val && e->val != val && t->cfg.free_val)
		t->cfg.free_val(e->val);
	e->val = val;
}

void fs_flight_expire_at(struct fs_flights *t, struct fs_flight *e, time_t expires)
{
	if (e->linked && expires && !e->expires)
		t->ntimed++;
	else if (e->linked && !expires && e->expires)
		t->ntimed--;
	e->expires = expires;
}

void fs_flight_remove(struct fs_flights *t, struct fs_flight *e)
{
	unlink_entry(t, e);
	maybe_free(t, e, time(NULL));
}

size_t fs_flights_count(struct fs_flights *t)
{
	sweep(t, time(NULL), 1);
	return t->n;
}

size_t fs_flights_wakeups(const struct fs_flights *t) { return t->wakeups; }

void fs_flights_lock(struct fs_flights *t) { pthread_mutex_lock(&t->mu); }

void fs_flights_unlock(struct fs_flights *t) { pthread_mutex_unlock(&t->mu); }

void fs_flights_free(struct fs_flights *t)
{
	if (!t)
		return;
	while (t->head) {
		struct fs_flight *e = t->head;
		unlink_entry(t, e);
		entry_destroy(t, e);
	}
	free(t->buckets);
	pthread_mutex_destroy(&t->mu);
	free(t);
}
