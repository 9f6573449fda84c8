/* A table of keyed entries shared by threads: single-flight loads with
 * per-key waiters, an optional expiry per entry, and a bound on the number
 * of entries (the least recently used idle ones go first).
 *
 * One mutex per table protects the table and every entry's fields and
 * value; each entry has its own condition variable, so the end of one
 * key's load wakes only the threads waiting for that key.
 *
 * An entry is held by whoever got it (fs_flight_get) until fs_flight_put;
 * it is idle when nobody holds it and nobody loads it. Only idle entries
 * are evicted or expired, so a table can exceed its bound while more
 * entries than that are held or loading. An idle entry without a value is
 * not kept (a finished flight leaves nothing behind). */
#ifndef ECRFS_FS_FLIGHT_H
#define ECRFS_FS_FLIGHT_H

#include <stddef.h>
#include <time.h>

struct fs_flights; /* the table */
struct fs_flight;  /* one key's entry */

struct fs_flights_cfg {
	size_t max;                  /* entries kept (0: no bound) */
	void (*free_val)(void *val); /* frees a value that goes (NULL: nothing) */
};

int fs_flights_new(const struct fs_flights_cfg *cfg, struct fs_flights **out);
/* Frees the table and every value; no entry may be held. */
void fs_flights_free(struct fs_flights *t);

void fs_flights_lock(struct fs_flights *t);
void fs_flights_unlock(struct fs_flights *t);

/* The functions below are called with the table locked. */

/* key's entry, held: created without a value when absent (or expired) and
 * create is set; NULL when absent, or when memory is short. */
struct fs_flight *fs_flight_get(struct fs_flights *t, const char *key, int create);
/* The first entry being loaded whose key matches, held; NULL when none. */
struct fs_flight *fs_flights_find_busy(struct fs_flights *t,
				       int (*match)(const char *key, void *arg), void *arg);
void fs_flight_put(struct fs_flights *t, struct fs_flight *e);

/* 1 when the caller now loads e, 0 when another thread already does. */
int fs_flight_claim(struct fs_flight *e);
int fs_flight_busy(const struct fs_flight *e);
/* Ends the caller's load of e and wakes e's waiters (no one else's). */
void fs_flight_done(struct fs_flight *e);
/* Waits, unlocked meanwhile, until e's load ends: 0, or -EINTR once
 * *cancel is set (cancel may be NULL; it is looked at every 100 ms). */
int fs_flight_wait(struct fs_flights *t, struct fs_flight *e, volatile int *cancel);

const char *fs_flight_key(const struct fs_flight *e);
void *fs_flight_val(const struct fs_flight *e);
/* Replaces e's value (the old one is freed: holders read values only
 * under the lock). */
void fs_flight_set(struct fs_flights *t, struct fs_flight *e, void *val);
/* e goes at expires (0: never). */
void fs_flight_expire_at(struct fs_flights *t, struct fs_flight *e, time_t expires);
/* Takes e out of the table now; its holders keep it until they put it. */
void fs_flight_remove(struct fs_flights *t, struct fs_flight *e);

/* Entries in the table (expired idle ones are dropped first). */
size_t fs_flights_count(struct fs_flights *t);
/* Times a waiter was woken (not counting timeouts): one key's end wakes
 * only its own waiters. */
size_t fs_flights_wakeups(const struct fs_flights *t);

#endif
