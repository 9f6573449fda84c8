/* The background prober of endpoints in back-off (see health_probe.h). */
#include "net/health_probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "net/log.h"

struct net_prober {
	struct net_health *t;
	net_probe_call call;
	void *arg;
	pthread_mutex_t mu; /* protects started, stop, kicked, enabled */
	pthread_cond_t cv;  /* kicked or stop changed */
	pthread_t thread;
	int started, kicked, enabled;
	volatile int stop; /* also the cancel flag of the probe in flight */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int net_prober_new(struct net_health *t, net_probe_call call, void *arg, int deferred,
		   struct net_prober **out)
{
	struct net_prober *p = calloc(1, sizeof *p);
	pthread_condattr_t ca;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->t = t;
	p->call = call;
	p->arg = arg;
	p->enabled = !deferred;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = p;
	return 0;
}

/* Waits (mu held) until kicked, stopped or wait_ms passed (-1: no limit). */
static void idle(struct net_prober *p, int64_t wait_ms)
{
	struct timespec ts;

	if (p->kicked || p->stop)
		return;
	if (wait_ms < 0) {
		pthread_cond_wait(&p->cv, &p->mu);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (wait_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void *prober_main(void *arg)
{
	struct net_prober *p = arg;
	char key[280], origin[300];
	int64_t wait_ms;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		p->kicked = 0;
		pthread_mutex_unlock(&p->mu);
		int due = net_health_due(p->t, mono_ms(), NET_PROBE_EVERY_MS, key, sizeof key,
					 origin, sizeof origin, &wait_ms);
		if (due && p->call(p->arg, origin, &p->stop) && net_health_probe_up(p->t, key))
			log_info("%s answers again (background probe)", key);
		pthread_mutex_lock(&p->mu);
		if (!due)
			idle(p, wait_ms);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* mu held. */
static void start_locked(struct net_prober *p)
{
	if (!p->started && !p->stop && p->enabled)
		p->started = pthread_create(&p->thread, NULL, prober_main, p) == 0;
	pthread_cond_broadcast(&p->cv);
}

void net_prober_kick(struct net_prober *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->kicked = 1;
	start_locked(p);
	pthread_mutex_unlock(&p->mu);
}

void net_prober_enable(struct net_prober *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->enabled = 1;
	p->kicked = 1; /* look at what went down before */
	start_locked(p);
	pthread_mutex_unlock(&p->mu);
}

void net_prober_free(struct net_prober *p)
{
	int started;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED); /* read atomically by the call */
	started = p->started;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (started)
		pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
