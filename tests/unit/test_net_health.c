/* net/health.c: endpoint keys, back-off 5 s doubling to 60 s, one probe at
 * a time, calls in flight when a host went down, the bound, threads. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "check.h"
#include "net/health.h"

static void test_keys(void)
{
	char k[64];
	CHECK(net_health_key("https://api.ecr.us-east-1.amazonaws.com/", k, sizeof k) == 0);
	CHECK_STR(k, "api.ecr.us-east-1.amazonaws.com:443");
	CHECK(net_health_key("http://127.0.0.1:8123/v2/x?X-Amz-Signature=s", k, sizeof k) == 0);
	CHECK_STR(k, "127.0.0.1:8123");
	CHECK(net_health_key("HTTP://User:pw@Host.Example:80/a", k, sizeof k) == 0);
	CHECK_STR(k, "host.example:80");
	CHECK(net_health_key("https://[::1]:9000/x", k, sizeof k) == 0);
	CHECK_STR(k, "[::1]:9000");
	CHECK(net_health_key("https://[::1]/x", k, sizeof k) == 0);
	CHECK_STR(k, "[::1]:443");
	CHECK(net_health_key("no-scheme", k, sizeof k) == -EINVAL);
	CHECK(net_health_key("https:///path", k, sizeof k) == -EINVAL);
	CHECK(net_health_key("https://a-very-long-host-name.example.com/", k, 16) == -EINVAL);
}

static void test_backoff(void)
{
	struct net_health *t;
	const char *a = "a:443";
	CHECK(net_health_new(8, &t) == 0);
	CHECK(net_health_admit(t, a, 0) == NET_HEALTH_GO);
	CHECK(net_health_report(t, a, NET_HEALTH_GO, NET_HEALTH_UP, 0) == 0);
	CHECK(net_health_count(t) == 0); /* healthy hosts take no entry */

	/* A timeout: 5 s of back-off, calls fail at once. */
	CHECK(net_health_report(t, a, NET_HEALTH_GO, NET_HEALTH_DOWN, 1000) == 5000);
	CHECK(net_health_admit(t, a, 1001) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, a, 5999) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, "b:443", 1001) == NET_HEALTH_GO);
	CHECK(net_health_down(t, 1001) == 1);
	/* Other calls that were in flight fail too: no longer back-off. */
	CHECK(net_health_report(t, a, NET_HEALTH_GO, NET_HEALTH_DOWN, 2000) == 0);
	CHECK(net_health_admit(t, a, 5999) == -EHOSTUNREACH);

	/* The back-off ends: one call probes, the others still fail at once. */
	CHECK(net_health_admit(t, a, 6000) == NET_HEALTH_PROBE);
	CHECK(net_health_admit(t, a, 6001) == -EHOSTUNREACH);
	/* The probe times out: 10 s, then 20, 40, 60, 60. */
	int64_t now = 11000;
	int want[] = {10000, 20000, 40000, 60000, 60000};
	for (int i = 0; i < 5; i++) {
		CHECK_INT(net_health_report(t, a, NET_HEALTH_PROBE, NET_HEALTH_DOWN, now), want[i]);
		CHECK(net_health_admit(t, a, now + want[i] - 1) == -EHOSTUNREACH);
		now += want[i];
		CHECK(net_health_admit(t, a, now) == NET_HEALTH_PROBE);
	}
	/* An interrupted probe says nothing: the next call probes. */
	CHECK(net_health_report(t, a, NET_HEALTH_PROBE, NET_HEALTH_NONE, now) == 0);
	CHECK(net_health_admit(t, a, now) == NET_HEALTH_PROBE);
	/* It answers: reachable at once, and the back-off starts over. */
	CHECK(net_health_report(t, a, NET_HEALTH_PROBE, NET_HEALTH_UP, now) == -1);
	CHECK(net_health_admit(t, a, now) == NET_HEALTH_GO);
	CHECK(net_health_count(t) == 0);
	CHECK(net_health_report(t, a, NET_HEALTH_GO, NET_HEALTH_DOWN, now) == 5000);
	/* Any answer ends the back-off early (a call admitted before). */
	CHECK(net_health_report(t, a, NET_HEALTH_GO, NET_HEALTH_UP, now + 1) == -1);
	CHECK(net_health_admit(t, a, now + 2) == NET_HEALTH_GO);
	net_health_free(t);
}

static void test_bound(void)
{
	struct net_health *t;
	char k[32];
	CHECK(net_health_new(4, &t) == 0);
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof k, "h%d:443", i);
		CHECK(net_health_report(t, k, NET_HEALTH_GO, NET_HEALTH_DOWN, i * 10) == 5000);
	}
	CHECK(net_health_count(t) == 4);
	/* The newest stay: their back-offs end last. */
	CHECK(net_health_admit(t, "h99:443", 1000) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, "h96:443", 1000) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, "h0:443", 1000) == NET_HEALTH_GO);
	net_health_free(t);
}

/* A probe that never reports (a bug) does not keep the host down for ever. */
static void test_lost_probe(void)
{
	struct net_health *t;
	CHECK(net_health_new(4, &t) == 0);
	net_health_report(t, "a:1", NET_HEALTH_GO, NET_HEALTH_DOWN, 0);
	CHECK(net_health_admit(t, "a:1", 5000) == NET_HEALTH_PROBE);
	CHECK(net_health_admit(t, "a:1", 5000 + NET_HEALTH_MAX_MS) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, "a:1", 5001 + 2 * NET_HEALTH_MAX_MS) == NET_HEALTH_PROBE);
	net_health_free(t);
}

/* Threads admitting and reporting at once: exactly one probe per back-off. */
static struct net_health *shared;
static int probes;
static pthread_mutex_t probes_mu = PTHREAD_MUTEX_INITIALIZER; /* protects probes */

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		int how = net_health_admit(shared, "x:443", 10000);
		if (how == NET_HEALTH_PROBE) {
			pthread_mutex_lock(&probes_mu);
			probes++;
			pthread_mutex_unlock(&probes_mu);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[4];
	CHECK(net_health_new(4, &shared) == 0);
	net_health_report(shared, "x:443", NET_HEALTH_GO, NET_HEALTH_DOWN, 0);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK_INT(probes, 1);
	net_health_free(shared);
}

/* Background probes: only endpoints in back-off with a known origin are
 * due, once per interval each, longest waiting first; an answer ends the
 * back-off, a silence changes nothing. */
static void test_due(void)
{
	struct net_health *t;
	char key[64], origin[96];
	int64_t wait;

	CHECK(net_health_new(8, &t) == 0);
	CHECK(net_health_due(t, 0, 1000, key, sizeof key, origin, sizeof origin, &wait) == 0);
	CHECK(wait == -1); /* nothing down: the prober sleeps until kicked */
	CHECK(net_health_report(t, "a:80", NET_HEALTH_GO, NET_HEALTH_DOWN, 1000) == 5000);
	CHECK(net_health_due(t, 1000, 1000, key, sizeof key, origin, sizeof origin, &wait) == 0);
	CHECK_INT(net_health_set_origin(t, "a:80", "http://u:p@A:80/v2/x?X-Amz-Signature=s", 0),
		  0);
	CHECK_INT(net_health_set_origin(t, "b:80", "http://b/", 0), -ENOENT);
	CHECK(net_health_report(t, "c:443", NET_HEALTH_GO, NET_HEALTH_DOWN, 1000) == 5000);
	CHECK_INT(net_health_set_origin(t, "c:443", "https://c/x", 500), 0);
	/* The first probe an interval after the endpoint went down. */
	CHECK(net_health_due(t, 999, 1000, key, sizeof key, origin, sizeof origin, &wait) == 0);
	CHECK(wait == 1);
	CHECK(net_health_due(t, 1500, 1000, key, sizeof key, origin, sizeof origin, &wait) == 1);
	CHECK_STR(key, "a:80");
	CHECK_STR(origin, "http://a:80/"); /* no user, path or query */
	CHECK(net_health_due(t, 1500, 1000, key, sizeof key, origin, sizeof origin, &wait) == 1);
	CHECK_STR(origin, "https://c:443/");
	CHECK(net_health_due(t, 2000, 1000, key, sizeof key, origin, sizeof origin, &wait) == 0);
	CHECK(wait == 500);
	CHECK(net_health_due(t, 2500, 1000, key, sizeof key, origin, sizeof origin, &wait) == 1);
	/* Not answered: still in back-off, not lengthened. */
	CHECK(net_health_admit(t, "a:80", 2000) == -EHOSTUNREACH);
	CHECK(net_health_admit(t, "a:80", 6000) == NET_HEALTH_PROBE);
	CHECK(net_health_report(t, "a:80", NET_HEALTH_PROBE, NET_HEALTH_NONE, 6000) == 0);
	/* Answered: the back-off ends at once, the call goes through. */
	CHECK_INT(net_health_probe_up(t, "c:443"), -1);
	CHECK_INT(net_health_probe_up(t, "c:443"), 0);
	CHECK(net_health_admit(t, "c:443", 2001) == NET_HEALTH_GO);
	CHECK(net_health_down(t, 2001) == 1);
	/* An endpoint nobody calls any more is no longer probed... */
	int64_t idle = 6000 + NET_HEALTH_PROBE_IDLE_MS + 1;
	CHECK(net_health_due(t, idle, 1000, key, sizeof key, origin, sizeof origin, &wait) == 0);
	CHECK(wait == -1);
	/* ... until a call wants it again. */
	CHECK(net_health_admit(t, "a:80", idle) == NET_HEALTH_PROBE);
	CHECK(net_health_report(t, "a:80", NET_HEALTH_PROBE, NET_HEALTH_DOWN, idle) == 10000);
	CHECK(net_health_due(t, idle, 1000, key, sizeof key, origin, sizeof origin, &wait) == 1);
	CHECK_STR(key, "a:80");
	net_health_free(t);
}

int main(void)
{
	test_due();
	test_keys();
	test_backoff();
	test_bound();
	test_lost_probe();
	test_threads();
	return check_summary("net_health");
}
