/* Endpoint health: hosts that timed out or refused a connection are
 * unreachable for a back-off (5 s, doubling to 60 s), during which calls to
 * them fail at once instead of waiting a deadline each (DESIGN §11). When the
 * back-off ends, one call (the probe) goes through: an answer ends the
 * back-off, another failure doubles it. Meanwhile a background probe
 * (net/health_probe.c) ends the back-off as soon as the host answers. Only
 * hosts in back-off have an entry; the table is bounded (the entry ending
 * soonest goes first).
 *
 * Times are CLOCK_MONOTONIC milliseconds given by the caller (tests pass
 * their own). One mutex per table protects its entries. */
#ifndef ECRFS_NET_HEALTH_H
#define ECRFS_NET_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define NET_HEALTH_MIN_MS 5000
#define NET_HEALTH_MAX_MS 60000
/* Background probes stop for an endpoint no call wanted for this long. */
#define NET_HEALTH_PROBE_IDLE_MS (10 * 60000)

struct net_health;

int net_health_new(size_t max, struct net_health **out);
void net_health_free(struct net_health *t);

/* The endpoint of url ("host:port", lower case, scheme's default port when
 * none) into key: 0, or -EINVAL when url has no host. */
int net_health_key(const char *url, char *key, size_t n);

enum net_health_go {
	NET_HEALTH_GO = 0,    /* reachable as far as we know */
	NET_HEALTH_PROBE = 1, /* the back-off ended: this call tries it */
};
/* Whether a call to key may connect now: NET_HEALTH_GO, NET_HEALTH_PROBE
 * (the caller must report its outcome), or -EHOSTUNREACH while key is in
 * back-off or another call probes it. */
int net_health_admit(struct net_health *t, const char *key, int64_t now_ms);

enum net_health_outcome {
	NET_HEALTH_NONE, /* nothing learnt (cancelled, a local error) */
	NET_HEALTH_UP,	 /* the endpoint answered */
	NET_HEALTH_DOWN, /* timeout or connection failure, no answer at all */
};
/* The outcome of a call admitted with how (NET_HEALTH_GO or _PROBE).
 * Returns the back-off in ms when key just became unreachable (or a probe
 * failed), -1 when it just became reachable again, 0 otherwise: the caller
 * logs the changes. Calls that were already in flight when key went down
 * do not lengthen its back-off. */
int net_health_report(struct net_health *t, const char *key, int how, enum net_health_outcome o,
		      int64_t now_ms);

/* Background probes (net/health_probe.c). The scheme of a key in back-off,
 * taken from url (a call to it): its probe goes to "scheme://key/", the
 * first one an interval after now_ms. 0, or -ENOENT when key has no entry. */
int net_health_set_origin(struct net_health *t, const char *key, const char *url, int64_t now_ms);
/* The endpoint whose background probe is due (none for every_ms, the
 * longest waiting first; endpoints no call wanted for
 * NET_HEALTH_PROBE_IDLE_MS are left alone): 1 with its key and origin,
 * marked as probed now;
 * else 0 with *wait_ms the time until the next is due, -1 when no endpoint
 * is in back-off. */
int net_health_due(struct net_health *t, int64_t now_ms, int every_ms, char *key, size_t keyn,
		   char *origin, size_t originn, int64_t *wait_ms);
/* A background probe of key was answered: its back-off ends. -1 when it
 * was in back-off (the caller logs it), else 0. A probe that was not
 * answered changes nothing: only calls lengthen a back-off. */
int net_health_probe_up(struct net_health *t, const char *key);

/* Hosts in back-off now (for stats and tests). */
size_t net_health_down(struct net_health *t, int64_t now_ms);
/* Entries kept (at most max). */
size_t net_health_count(struct net_health *t);

#endif
