/* The background probe of endpoints in back-off (DESIGN §11): one thread
 * per HTTP pool, started the first time an endpoint goes down, asks each
 * endpoint in back-off once a second with a cheap request (GET of the
 * origin, a short timeout, no retry, no credentials). Any HTTP answer ends
 * the back-off, so the first call after the network returns succeeds
 * instead of failing until the back-off runs out. One probe at a time. */
#ifndef ECRFS_NET_HEALTH_PROBE_H
#define ECRFS_NET_HEALTH_PROBE_H

#include "net/health.h"

#define NET_PROBE_EVERY_MS 1000
#define NET_PROBE_TIMEOUT_MS 2000

struct net_prober;

/* call(arg, origin, cancel): 1 when origin gave an HTTP answer, else 0; it
 * must end soon once *cancel is set. */
typedef int (*net_probe_call)(void *arg, const char *origin, volatile int *cancel);

/* deferred: no thread until net_prober_enable (a process that forks after
 * its first calls must not start one before the fork). */
int net_prober_new(struct net_health *t, net_probe_call call, void *arg, int deferred,
		   struct net_prober **out);
/* An endpoint went down: starts the thread if needed, wakes it. */
void net_prober_kick(struct net_prober *p);
/* Threads may start now: the thread starts (it probes what is already
 * down, then waits for the next kick). */
void net_prober_enable(struct net_prober *p);
/* Stops the thread (a probe in flight is cancelled) and frees p. */
void net_prober_free(struct net_prober *p);

#endif
