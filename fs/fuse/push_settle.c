/* What a commit makes visible: the pending tag directory gives way to the
 * tag ECR lists, the kernel's entries are invalidated; the sweeper drops
 * abandoned versions and the records of settled ones. Start and stop of
 * the push side. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fuse/notify.h"
#include "fs/fuse/push_nodes_i.h"
#include "fs/tree/catalog.h"
#include "fs/tree/hidden.h"
#include "net/log.h"

/* The sweeper drops abandoned versions; sweep_mu/sweep_cv wake it to stop. */
static pthread_t sweeper;
static int sweeper_on, sweeper_stop;
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweep_cv = PTHREAD_COND_INITIALIZER;

/* ---- commit: make the new tag visible ---- */

int count_pending(struct fs_node *dir)
{
	int n = 0;
	struct fs_node *p;
	fs_node_lock();
	for (p = dir->pend_head; p; p = p->pend_next)
		n++;
	fs_node_unlock();
	return n;
}

/* The pending tag directories of v give way to what ECR now lists, and
 * pending namespace dirs left empty above them too. Open handles and kernel
 * references keep working on the old nodes until FORGET. */
void settle(pending_version *v)
{
	struct fs_node *hits[16];
	int nh = 0;
	struct wtagdir *t;

	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t && nh < 16; t = t->next)
		if (t->v == v && fs_node_is_pending(t->node)) {
			fs_node_ref(t->node);
			hits[nh++] = t->node;
		}
	pthread_mutex_unlock(&wmu);
	for (int i = 0; i < nh; i++) {
		struct fs_node *n = hits[i], *dir = n->parent;
		fs_node_remove_pending_tree(n, 1); /* its files and blobs/ too */
		while (dir && dir->kind == FS_N_PENDING_DIR && fs_node_is_pending(dir) &&
		       count_pending(dir) == 0) {
			struct fs_node *up = dir->parent;
			fs_node_remove_pending(dir);
			fs_notify_changed(up, dir->name);
			dir = up;
		}
		fs_notify_changed(n->parent, n->name);
		fs_node_put(n);
	}
}

/* After a commit. A tag directory this mount created gives way to the
 * committed tag at once when the writer wrote every name of the image.
 * When the commit counted blobs the repository already had, the writer may
 * still create them, with O_EXCL since cp made that directory, which the
 * committed image's names would refuse: the directory then stays until
 * `sync TAGDIR`, rmdir, or SETTLE_S idle seconds (sweeper); its files are
 * not readable meanwhile (EBUSY). An existing tag rewritten in place moves
 * at once. */
static void on_commit(void *arg, pending_version *v, int rc)
{
	struct fs_node *hits[16];
	int nh = 0;
	struct wtagdir *t;

	if (rc != 0)
		return;
	if (!pending_committed_via_repo(v))
		settle(v); /* every name of the image was written: nothing can collide */
	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t && nh < 16; t = t->next)
		if (t->v == v && !fs_node_is_pending(t->node) && t->node->kind == FS_N_IMAGE) {
			fs_node_ref(t->node);
			hits[nh++] = t->node;
		}
	pthread_mutex_unlock(&wmu);
	for (int i = 0; i < nh; i++) {
		fs_notify_changed(hits[i]->parent, hits[i]->name);
		fs_node_put(hits[i]);
	}
}

/* A manifest this mount pushed: kept as if BatchGetImage had answered it,
 * so the first look at the new tag (`sync TAGDIR`, `ls`) needs no call
 * for it, and is no pull. */
static void on_put(void *arg, const char *digest, const char *media_type, const char *bytes,
		   size_t len)
{
	if (pside_ctx)
		fs_cat_manifest_learn(pside_ctx, digest, media_type, bytes, len);
}

/* Sweeper: committed pending tag dirs idle for SETTLE_S give way. */
#define SETTLE_S 30
static void settle_idle(time_t now)
{
	pending_version *vs[32];
	int nv = 0;
	struct wtagdir *t;

	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t && nv < 32; t = t->next)
		if (fs_node_is_pending(t->node) && pending_version_state(t->v) == PV_COMMITTED &&
		    pending_idle_s(t->v, now) >= SETTLE_S)
			vs[nv++] = t->v;
	pthread_mutex_unlock(&wmu);
	for (int i = 0; i < nv; i++)
		settle(vs[i]);
}

/* Sweeper: records of tag directories whose version is committed or
 * dropped and idle for TRIM_S go (their node can then be freed at FORGET),
 * and so do the files of committed versions nothing refers to. */
#define TRIM_S 5
static int version_noted(pending_version *v, void *arg)
{
	struct wtagdir *t;
	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t; t = t->next)
		if (t->v == v)
			break;
	pthread_mutex_unlock(&wmu);
	return t != NULL;
}

/* Files written into an existing tag directory (a rewrite) are pending
 * children of the image's nodes: once the version is over they give way. */
static void drop_pending_below(struct fs_node *img)
{
	struct fs_node *blobs = fs_node_child(img, "blobs");
	struct fs_node *sha = blobs ? fs_node_child(blobs, "sha256") : NULL;

	if (sha)
		fs_node_remove_pending_tree(sha, 0);
	if (blobs)
		fs_node_remove_pending_tree(blobs, 0);
	fs_node_remove_pending_tree(img, 0);
	fs_node_put(sha);
	fs_node_put(blobs);
}

static void forget_settled(time_t now)
{
	struct wtagdir **pp, *t, *gone = NULL;

	pthread_mutex_lock(&wmu);
	for (pp = &tagdirs; (t = *pp);) {
		if (!fs_node_is_pending(t->node) && pending_version_state(t->v) != PV_PENDING &&
		    pending_idle_s(t->v, now) >= TRIM_S) {
			*pp = t->next;
			t->next = gone;
			gone = t;
		} else {
			pp = &t->next;
		}
	}
	pthread_mutex_unlock(&wmu);
	while (gone) {
		t = gone;
		gone = t->next;
		if (t->node->kind == FS_N_IMAGE)
			drop_pending_below(t->node);
		fs_node_put(t->node);
		free(t);
	}
	pending_trim_idle(P, now, TRIM_S, version_noted, NULL);
}


static void *sweep_main(void *arg)
{
	struct timespec ts;
	pthread_mutex_lock(&sweep_mu);
	while (!sweeper_stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&sweep_cv, &sweep_mu, &ts);
		if (sweeper_stop)
			break;
		pthread_mutex_unlock(&sweep_mu);
		pending_sweep(P, time(NULL));
		settle_idle(time(NULL));
		forget_settled(time(NULL));
		pthread_mutex_lock(&sweep_mu);
	}
	pthread_mutex_unlock(&sweep_mu);
	return NULL;
}

int push_side_start(struct fs_ctx *c)
{
	struct pending_opts po = { 0 };

	po.timeout_s = c->o.pending_timeout > 0 ? c->o.pending_timeout : 600;
	po.spill_dir = c->cache ? cache_dir(c->cache) : NULL;
	po.no_create_repos = c->o.no_create_repos;
	po.on_commit = on_commit;
	po.on_put = on_put;
	if (!P && pending_new(&po, &P) < 0) {
		log_err("push side: out of memory");
		return -ENOMEM;
	}
	pside_ctx = c;
	c->push = (struct fs_push_side *)P;
	if (!sweeper_on && pthread_create(&sweeper, NULL, sweep_main, NULL) == 0)
		sweeper_on = 1;
	return 0;
}


void push_side_stop(struct fs_ctx *c)
{
	c->push = NULL;
	if (sweeper_on) {
		pthread_mutex_lock(&sweep_mu);
		sweeper_stop = 1;
		pthread_cond_broadcast(&sweep_cv);
		pthread_mutex_unlock(&sweep_mu);
		pthread_join(sweeper, NULL);
		sweeper_on = 0;
	}
	pending_free(P);
	P = NULL;
	pthread_mutex_lock(&wmu);
	while (tagdirs) {
		struct wtagdir *t = tagdirs;
		tagdirs = t->next;
		fs_node_put(t->node);
		free(t);
	}
	while (remotes) {
		struct wremote *r = remotes;
		remotes = r->next;
		push_remote_free(r->r);
		free(r->registry);
		free(r->region);
		free(r->repo);
		free(r);
	}
	pthread_mutex_unlock(&wmu);
	/* wnodes still held by nodes go with them (fs_node_shutdown). */
}
