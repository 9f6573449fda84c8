/* fs/blob/flight.c: the LRU bound, expiry, entries without a value, held
 * entries, single-flight claims, per-key waiters and cancellable waits. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs/blob/flight.h"

static int freed;

static void free_val(void *v)
{
	freed++;
	free(v);
}

static struct fs_flights *new_table(size_t max)
{
	struct fs_flights *t = NULL;
	CHECK_INT(fs_flights_new(&(struct fs_flights_cfg){max, free_val}, &t), 0);
	return t;
}

/* Sets key's value (a copy of the key) and lets it go. */
static void put_key(struct fs_flights *t, const char *key)
{
	struct fs_flight *e = fs_flight_get(t, key, 1);
	CHECK(e != NULL);
	if (!e)
		return;
	fs_flight_set(t, e, strdup(key));
	fs_flight_put(t, e);
}

static int has_key(struct fs_flights *t, const char *key)
{
	struct fs_flight *e = fs_flight_get(t, key, 0);
	if (e)
		fs_flight_put(t, e);
	return e != NULL;
}

/* Many keys: the table stays at its bound, the least recently used go. */
static void test_bound(void)
{
	struct fs_flights *t = new_table(16);
	char key[32];
	freed = 0;
	fs_flights_lock(t);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		put_key(t, key);
		if (i == 500)
			CHECK(has_key(t, "k490")); /* recently used: moved to the front */
		CHECK(fs_flights_count(t) <= 16);
	}
	CHECK_INT(fs_flights_count(t), 16);
	CHECK_INT(freed, 1000 - 16);
	CHECK(!has_key(t, "k0"));
	CHECK(!has_key(t, "k983"));
	CHECK(has_key(t, "k984"));
	CHECK(has_key(t, "k999"));

	/* A held entry is not evicted; the bound is met again once it is put. */
	struct fs_flight *held = fs_flight_get(t, "k984", 0);
	CHECK(held != NULL);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "h%d", i);
		put_key(t, key);
	}
	CHECK(has_key(t, "k984"));
	CHECK_STR(fs_flight_val(held), "k984");
	fs_flight_put(t, held);
	CHECK_INT(fs_flights_count(t), 16);
	fs_flights_unlock(t);
	fs_flights_free(t);
	CHECK_INT(freed, 1000 + 100);
}

/* Expired entries go (a held one when its holder puts it); a new entry
 * replaces an expired one under the same key. */
static void test_expiry(void)
{
	struct fs_flights *t = new_table(0);
	time_t now = time(NULL);
	freed = 0;
	fs_flights_lock(t);
	for (int i = 0; i < 50; i++) {
		char key[32];
		snprintf(key, sizeof key, "e%d", i);
		struct fs_flight *e = fs_flight_get(t, key, 1);
		fs_flight_set(t, e, strdup(key));
		fs_flight_expire_at(t, e, i < 40 ? now + 1 : 0);
		fs_flight_put(t, e);
	}
	struct fs_flight *held = fs_flight_get(t, "e0", 0);
	CHECK_INT(fs_flights_count(t), 50);
	fs_flights_unlock(t);
	sleep(2);
	fs_flights_lock(t);
	CHECK_INT(fs_flights_count(t), 10);
	CHECK_INT(freed, 39); /* e0 is held */
	CHECK(!has_key(t, "e1"));
	CHECK(has_key(t, "e45"));
	struct fs_flight *fresh = fs_flight_get(t, "e0", 1);
	CHECK(fresh != NULL && fresh != held && fs_flight_val(fresh) == NULL);
	CHECK_STR(fs_flight_val(held), "e0");
	fs_flight_put(t, held);
	CHECK_INT(freed, 40);
	fs_flight_put(t, fresh); /* no value: not kept */
	CHECK_INT(fs_flights_count(t), 10);
	fs_flights_unlock(t);
	fs_flights_free(t);
}

/* Claims: one loader per key; an idle entry without a value goes, also
 * when it was removed while held. */
static void test_claim(void)
{
	struct fs_flights *t = new_table(0);
	fs_flights_lock(t);
	struct fs_flight *a = fs_flight_get(t, "a", 1);
	CHECK_INT(fs_flight_claim(a), 1);
	fs_flight_put(t, a); /* busy: stays */
	struct fs_flight *a2 = fs_flight_get(t, "a", 1);
	CHECK(a2 == a);
	CHECK_INT(fs_flight_claim(a2), 0);
	CHECK_INT(fs_flight_busy(a2), 1);
	fs_flight_done(a2);
	fs_flight_remove(t, a2);
	CHECK_INT(fs_flights_count(t), 0);
	CHECK(!has_key(t, "a"));
	fs_flight_put(t, a2);
	fs_flights_unlock(t);
	fs_flights_free(t);
}

struct waiter {
	struct fs_flights *t;
	const char *key;
	volatile int *cancel;
	int rc;       /* set before returned */
	int returned; /* atomic */
};

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	fs_flights_lock(w->t);
	struct fs_flight *e = fs_flight_get(w->t, w->key, 0);
	w->rc = e ? fs_flight_wait(w->t, e, w->cancel) : -ENOENT;
	if (e)
		fs_flight_put(w->t, e);
	fs_flights_unlock(w->t);
	__atomic_store_n(&w->returned, 1, __ATOMIC_RELEASE);
	return NULL;
}

static struct fs_flight *claim(struct fs_flights *t, const char *key)
{
	fs_flights_lock(t);
	struct fs_flight *e = fs_flight_get(t, key, 1);
	CHECK_INT(fs_flight_claim(e), 1);
	fs_flights_unlock(t);
	return e;
}

static void done(struct fs_flights *t, struct fs_flight *e)
{
	fs_flights_lock(t);
	fs_flight_done(e);
	fs_flight_put(t, e);
	fs_flights_unlock(t);
}

/* The end of one key's load does not wake the waiters of another. */
static void test_waiters(void)
{
	struct fs_flights *t = new_table(0);
	struct fs_flight *a = claim(t, "a"), *b = claim(t, "b");
	struct waiter wa = {t, "a", NULL, -1, 0};
	pthread_t th;
	pthread_create(&th, NULL, wait_main, &wa);
	usleep(200000);
	fs_flights_lock(t);
	size_t before = fs_flights_wakeups(t);
	fs_flights_unlock(t);
	done(t, b);
	usleep(200000);
	fs_flights_lock(t);
	CHECK_INT(fs_flights_wakeups(t), before); /* a's waiter slept on */
	fs_flights_unlock(t);
	CHECK_INT(__atomic_load_n(&wa.returned, __ATOMIC_ACQUIRE), 0);
	done(t, a);
	pthread_join(th, NULL);
	CHECK_INT(wa.rc, 0);
	CHECK_INT(wa.returned, 1);
	fs_flights_lock(t);
	CHECK(fs_flights_wakeups(t) > before);
	CHECK_INT(fs_flights_count(t), 0);
	fs_flights_unlock(t);
	fs_flights_free(t);
}

/* A cancellable wait gives up soon after its flag is set. */
static void test_cancel(void)
{
	struct fs_flights *t = new_table(0);
	struct fs_flight *a = claim(t, "a");
	volatile int cancel = 0;
	struct waiter wa = {t, "a", &cancel, -1, 0};
	pthread_t th;
	pthread_create(&th, NULL, wait_main, &wa);
	usleep(150000);
	CHECK_INT(__atomic_load_n(&wa.returned, __ATOMIC_ACQUIRE), 0);
	__atomic_store_n(&cancel, 1, __ATOMIC_RELAXED);
	usleep(400000);
	CHECK_INT(__atomic_load_n(&wa.returned, __ATOMIC_ACQUIRE), 1);
	pthread_join(th, NULL);
	CHECK_INT(wa.rc, -EINTR);
	done(t, a);
	fs_flights_free(t);
}

static int starts_with_x(const char *key, void *arg) { return key[0] == *(char *)arg; }

static void test_find_busy(void)
{
	struct fs_flights *t = new_table(0);
	struct fs_flight *a = claim(t, "xa");
	fs_flights_lock(t);
	put_key(t, "xb"); /* not busy */
	struct fs_flight *f = fs_flights_find_busy(t, starts_with_x, "x");
	CHECK(f == a);
	if (f)
		fs_flight_put(t, f);
	CHECK(fs_flights_find_busy(t, starts_with_x, "y") == NULL);
	fs_flights_unlock(t);
	done(t, a);
	fs_flights_free(t);
}

int main(void)
{
	test_bound();
	test_expiry();
	test_claim();
	test_waiters();
	test_cancel();
	test_find_busy();
	return check_summary("flight");
}
