/* The state of an image's TAG@rootfs and TAG@layers: its platforms and
 * layers, the layer indexes (loaded from cache_dir/index, else built by
 * streaming the layer once through the verified blob path), the trees, and
 * the reads of layer bytes through one bounded span cache. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/tree/image.h"
#include "fs/tree/view_rootfs.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/view_rootfs_publish.h"
#include "net/http.h"
#include "net/log.h"
#include "net/oci.h"

#define WORKERS_PER_IMAGE 3
#define BUILD_SLOTS 3	       /* layers streamed at once in the process */
#define SPAN_CACHE (16u << 20) /* inflated spans kept in memory */

/* tab_mu protects the table of images and every image's refs. */
static pthread_mutex_t tab_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rfs_tab_ent {
	struct rfs_image *im;
	struct rfs_tab_ent *next;
} * tab;
/* slot_mu protects slots_used (builds bounded across images), workers (the
 * build threads alive) and stopping (set at unmount; also read atomically
 * by the streams, as their cancel flag). slot_cv: a slot freed, a worker
 * gone, or stopping set. */
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static int slots_used, stopping;
static size_t workers;
static struct rootfs_spans *spans;
static pthread_once_t spans_once = PTHREAD_ONCE_INIT;
uint64_t rfs_st_builds, rfs_st_failures, rfs_st_loads, rfs_st_tocs; /* atomic */
static uint64_t st_images;					    /* atomic */

static void spans_init(void)
{
	if (rootfs_spans_new(SPAN_CACHE, &spans) != 0)
		spans = NULL;
}

struct rootfs_spans *rfs_spans(void)
{
	pthread_once(&spans_once, spans_init);
	return spans;
}

void fs_rootfs_stats(struct fs_rootfs_stats *out)
{
	memset(out, 0, sizeof *out);
	out->builds = __atomic_load_n(&rfs_st_builds, __ATOMIC_RELAXED);
	out->build_failures = __atomic_load_n(&rfs_st_failures, __ATOMIC_RELAXED);
	out->loads = __atomic_load_n(&rfs_st_loads, __ATOMIC_RELAXED);
	out->from_sources = __atomic_load_n(&rfs_st_tocs, __ATOMIC_RELAXED);
	out->images = __atomic_load_n(&st_images, __ATOMIC_RELAXED);
	out->indexes_held = rfs_held_count();
	size_t b = 0;
	if (spans)
		rootfs_spans_stats(spans, &out->span_hits, &out->span_misses, &b);
	out->span_bytes = b;
}

static void image_free(struct rfs_image *im)
{
	for (size_t p = 0; p < im->nplats; p++) {
		struct rfs_plat *pl = &im->plats[p];
		rootfs_tree_free(pl->merged);
		for (size_t k = 0; pl->ltrees && k < pl->n; k++)
			rootfs_tree_free(pl->ltrees[k]);
		free(pl->ltrees);
		free(pl->ixs);
		free(pl->lay);
		free(pl->manifest);
	}
	for (size_t i = 0; i < im->nlayers; i++) {
		rfs_held_put(im, &im->layers[i]);
		rootfs_index_free(im->layers[i].read_ix);
		free(im->layers[i].media_type);
		json_decref(im->layers[i].annot);
	}
	free(im->plats);
	free(im->layers);
	free(im->errmsg);
	pthread_mutex_destroy(&im->mu);
	pthread_cond_destroy(&im->cv);
	free(im->key);
	free(im->registry);
	free(im->region);
	free(im->repo);
	free(im->digest);
	free(im);
	__atomic_sub_fetch(&st_images, 1, __ATOMIC_RELAXED);
}

void rfs_image_put(struct rfs_image *im)
{
	if (!im)
		return;
	pthread_mutex_lock(&tab_mu);
	int last = --im->refs == 0;
	if (last)
		for (struct rfs_tab_ent **pp = &tab; *pp; pp = &(*pp)->next)
			if ((*pp)->im == im) {
				struct rfs_tab_ent *e = *pp;
				*pp = e->next;
				free(e);
				break;
			}
	pthread_mutex_unlock(&tab_mu);
	if (last)
		image_free(im);
}

static void image_ref(struct rfs_image *im)
{
	pthread_mutex_lock(&tab_mu);
	im->refs++;
	pthread_mutex_unlock(&tab_mu);
}

static int image_new(struct fs_ctx *c, const struct fs_image *img, struct rfs_image **out)
{
	struct rfs_image *im = calloc(1, sizeof *im);
	if (!im)
		return -ENOMEM;
	pthread_mutex_init(&im->mu, NULL);
	pthread_cond_init(&im->cv, NULL);
	im->refs = 1;
	im->c = c;
	__atomic_add_fetch(&st_images, 1, __ATOMIC_RELAXED);
	im->registry = strdup(img->registry);
	im->region = strdup(img->region);
	im->repo = strdup(img->repo);
	im->digest = strdup(img->digest);
	int rc = -ENOMEM;
	if (asprintf(&im->key, "%s/%s/%s@%s", img->registry, img->region, img->repo, img->digest) <
	    0)
		im->key = NULL;
	if (im->key && im->registry && im->region && im->repo && im->digest)
		rc = rfs_image_parse(im, img);
	if (rc) {
		image_free(im);
		return rc;
	}
	*out = im;
	return 0;
}

/* The table's image for img (referenced), made when absent. */
/* The table's image of registry/region/repo@digest, referenced, or NULL. */
static struct rfs_image *image_find(const char *registry, const char *region, const char *repo,
				    const char *digest)
{
	char *key = NULL;
	struct rfs_image *im = NULL;
	if (!registry || !region || !repo || !digest ||
	    asprintf(&key, "%s/%s/%s@%s", registry, region, repo, digest) < 0)
		return NULL;
	pthread_mutex_lock(&tab_mu);
	for (struct rfs_tab_ent *e = tab; e && !im; e = e->next)
		if (!strcmp(e->im->key, key))
			im = e->im;
	if (im)
		im->refs++;
	pthread_mutex_unlock(&tab_mu);
	free(key);
	return im;
}

static int image_get(struct fs_ctx *c, const struct fs_image *img, struct rfs_image **out)
{
	struct rfs_image *im = image_find(img->registry, img->region, img->repo, img->digest);
	if (im) {
		*out = im;
		return 0;
	}
	int rc = image_new(c, img, &im);
	struct rfs_tab_ent *e = rc ? NULL : calloc(1, sizeof *e);
	if (!rc && !e) {
		image_free(im);
		rc = -ENOMEM;
	}
	if (rc)
		return rc;
	/* Two first lookups may race: both states work, only one is found. */
	pthread_mutex_lock(&tab_mu);
	e->im = im;
	e->next = tab;
	tab = e;
	pthread_mutex_unlock(&tab_mu);
	*out = im;
	return 0;
}

/* ---- the build ---- */

volatile int *rfs_stop_flag(void) { return &stopping; }

static int slot_take(void)
{
	pthread_mutex_lock(&slot_mu);
	while (slots_used >= BUILD_SLOTS && !stopping)
		pthread_cond_wait(&slot_cv, &slot_mu);
	int rc = stopping ? -ECANCELED : 0;
	if (rc == 0)
		slots_used++;
	pthread_mutex_unlock(&slot_mu);
	return rc;
}

static void slot_give(void)
{
	pthread_mutex_lock(&slot_mu);
	slots_used--;
	pthread_cond_broadcast(&slot_cv);
	pthread_mutex_unlock(&slot_mu);
}

static void worker_gone(void)
{
	pthread_mutex_lock(&slot_mu);
	workers--;
	pthread_cond_broadcast(&slot_cv);
	pthread_mutex_unlock(&slot_mu);
}

void fs_rootfs_shutdown(void)
{
	pthread_mutex_lock(&slot_mu);
	__atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&slot_cv);
	while (workers)
		pthread_cond_wait(&slot_cv, &slot_mu);
	pthread_mutex_unlock(&slot_mu);
	rootfs_spans_free(spans);
	spans = NULL;
}

/* The trees, once every layer has its index. */
static int make_trees(struct rfs_image *im)
{
	for (size_t p = 0; p < im->nplats; p++) {
		struct rfs_plat *pl = &im->plats[p];
		if (pl->merged)
			continue;
		free(pl->ixs);
		pl->ixs = calloc(pl->n ? pl->n : 1, sizeof *pl->ixs);
		if (!pl->ltrees)
			pl->ltrees = calloc(pl->n ? pl->n : 1, sizeof *pl->ltrees);
		if (!pl->ixs || !pl->ltrees)
			return -ENOMEM;
		for (size_t k = 0; k < pl->n; k++)
			pl->ixs[k] = im->layers[pl->lay[k]].ix;
		int rc = rootfs_tree_merge(pl->digest, pl->ixs, pl->n, &pl->merged);
		if (rc)
			return rc;
	}
	return 0;
}

/* A layer whose verified content is no tar archive: the image answers
 * EIO and user.ecr.rootfs_state says which layer, logged once. */
static int not_tar(struct rfs_image *im, size_t i)
{
	const struct rfs_layer *L = &im->layers[i];
	size_t k = 0;
	for (size_t p = 0; p < im->nplats; p++)
		for (size_t j = 0; j < im->plats[p].n; j++)
			if (im->plats[p].lay[j] == i && !k) /* its place in the first platform */
				k = j + 1;
	char *msg = NULL;
	if (asprintf(&msg, "layer %zu is not a tar archive (mediaType %s)", k ? k - 1 : 0,
		     L->media_type ? L->media_type : "none") < 0)
		return -EIO;
	pthread_mutex_lock(&im->mu);
	int first = !im->errmsg;
	if (first)
		im->errmsg = msg;
	pthread_mutex_unlock(&im->mu);
	if (first)
		log_warn("rootfs: %s: %s, %s; no TAG@rootfs for this image", im->key, msg,
			 L->digest);
	else
		free(msg);
	return -EIO;
}

static void *worker(void *arg)
{
	struct rfs_image *im = arg;
	for (;;) {
		pthread_mutex_lock(&im->mu);
		size_t i = im->next < im->nlayers && !im->err ? im->next++ : im->nlayers;
		pthread_mutex_unlock(&im->mu);
		if (i == im->nlayers)
			break;
		int rc = slot_take();
		if (rc == 0) {
			rc = rfs_layer_get(im, &im->layers[i]);
			slot_give();
		}
		if (rc == -EMEDIUMTYPE)
			rc = not_tar(im, i);
		pthread_mutex_lock(&im->mu);
		if (rc && !im->err)
			im->err = rc;
		pthread_mutex_unlock(&im->mu);
	}
	pthread_mutex_lock(&im->mu);
	int last = --im->running == 0;
	pthread_mutex_unlock(&im->mu);
	if (last) {
		int rc = im->err ? im->err : make_trees(im);
		pthread_mutex_lock(&im->mu);
		im->err = rc;
		im->state = rc ? RFS_FAILED : RFS_READY;
		pthread_cond_broadcast(&im->cv);
		pthread_mutex_unlock(&im->mu);
		/* -o rootfs_publish: after the image is served, in this worker
		 * (unmount waits for it like for a build). */
		if (rc == 0 && !__atomic_load_n(&stopping, __ATOMIC_RELAXED))
			rfs_publish(im);
	}
	rfs_image_put(im);
	worker_gone();
	return NULL;
}

/* Starts the build unless it runs or is done. mu held. */
static void start_locked(struct rfs_image *im)
{
	if (im->state == RFS_BUILDING || im->state == RFS_READY)
		return;
	im->state = RFS_BUILDING;
	im->err = 0;
	im->next = 0;
	size_t n = im->nlayers < WORKERS_PER_IMAGE ? im->nlayers : WORKERS_PER_IMAGE;
	if (n == 0)
		n = 1; /* an image without layers: one worker makes the empty tree */
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	for (size_t i = 0; i < n; i++) {
		pthread_t t;
		image_ref(im);
		im->running++;
		pthread_mutex_lock(&slot_mu);
		workers++;
		pthread_mutex_unlock(&slot_mu);
		if (pthread_create(&t, &at, worker, im) != 0) {
			worker_gone();
			im->running--;
			rfs_image_put(im); /* the caller holds another reference */
			if (im->running == 0) {
				im->state = RFS_FAILED;
				im->err = -EAGAIN;
			}
			break;
		}
	}
	pthread_attr_destroy(&at);
}

static uint64_t progress(struct rfs_image *im, uint64_t *total)
{
	uint64_t done = 0;
	*total = 0;
	for (size_t i = 0; i < im->nlayers; i++) {
		*total += im->layers[i].size;
		done += __atomic_load_n(&im->layers[i].fed, __ATOMIC_RELAXED);
	}
	return done;
}

/* What the first lookup's wait counts as progress: bytes fed to the
 * builds, bytes of the layers arriving from the network (a chunk at a slow
 * link's rate may take longer than the deadline) and bytes the index
 * sources read. */
static uint64_t wait_progress(struct rfs_image *im)
{
	uint64_t total, p = progress(im, &total) + __atomic_load_n(&im->probed, __ATOMIC_RELAXED);
	for (size_t i = 0; i < im->nlayers; i++)
		p += fs_blob_received(im->c->blobs, im->layers[i].digest);
	return p;
}

/* Waits for the build while it makes progress; the caller's INTERRUPT
 * ends the wait, not the build. mu held. */
static int wait_locked(struct rfs_image *im)
{
	volatile int *cancel = net_http_thread_cancel_swap(NULL);
	net_http_thread_cancel_swap(cancel);
	int deadline_ms = im->c->deadline_ms > 0 ? im->c->deadline_ms : 30000;
	uint64_t last = wait_progress(im);
	struct timespec idle_since;
	clock_gettime(CLOCK_MONOTONIC, &idle_since);
	while (im->state == RFS_BUILDING) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&im->cv, &im->mu, &ts);
		if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED))
			return -EINTR;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t p = wait_progress(im);
		if (p != last) {
			last = p;
			idle_since = now;
		} else if ((now.tv_sec - idle_since.tv_sec) * 1000 +
			       (now.tv_nsec - idle_since.tv_nsec) / 1000000 >
			   deadline_ms) {
			return -ETIMEDOUT;
		}
	}
	return im->state == RFS_READY ? 0 : im->err ? im->err : -EIO;
}

static struct fs_node *view_root(const struct fs_node *n)
{
	while (n && n->kind != FS_N_VIEW)
		n = n->parent;
	return (struct fs_node *)n;
}

int rfs_image_ready(struct fs_ctx *c, struct fs_node *n, struct rfs_image **out)
{
	struct fs_node *v = view_root(n);
	struct rfs_image *im = v ? fs_node_vdata(v) : NULL;
	struct fs_image *img = NULL;
	int rc = 0;
	if (!v)
		return -ENOENT;
	if (!im) {
		if ((rc = image_of(c, v, &img)) != 0 || (rc = image_get(c, img, &im)) != 0)
			goto out;
		im = fs_node_set_vdata(v, im); /* the loser's reference is dropped */
	}
	image_ref(im);
	pthread_mutex_lock(&im->mu);
	start_locked(im);
	rc = wait_locked(im);
	pthread_mutex_unlock(&im->mu);
	if (rc)
		rfs_image_put(im);
	else
		*out = im;
out:
	if (img)
		fs_image_put(img);
	return rc;
}

struct rfs_image *rfs_image_peek(const struct fs_node *n)
{
	struct fs_node *v = view_root(n);
	struct rfs_image *im = v ? fs_node_vdata(v) : NULL;
	if (!im)
		return NULL;
	image_ref(im);
	pthread_mutex_lock(&im->mu);
	int ready = im->state == RFS_READY;
	pthread_mutex_unlock(&im->mu);
	if (ready)
		return im;
	rfs_image_put(im);
	return NULL;
}

char *rfs_image_state(const struct fs_node *n)
{
	struct fs_node *v = view_root(n);
	struct rfs_image *im = v ? fs_node_vdata(v) : NULL;
	char *s = NULL;
	uint64_t total;
	/* A new node of the view (the kernel forgot the one whose access
	 * started the build) finds the state in the table. */
	if (v && !im && (im = image_find(v->registry, v->region, v->repo, v->digest)))
		im = fs_node_set_vdata(v, im);
	if (!im)
		return strdup("not built");
	pthread_mutex_lock(&im->mu);
	/* The layers' sources are set by the workers before the state is
	 * ready (under mu): read them only then. */
	char from[128] = "";
	if (im->state == RFS_READY)
		rfs_sources_describe(im, from, sizeof from);
	uint64_t done = progress(im, &total);
	int r = -1;
	if (im->state == RFS_BUILDING)
		r = asprintf(&s, "building %d%%", total ? (int)(done * 100 / total) : 0);
	else if (im->state == RFS_READY)
		r = asprintf(&s, "ready%s%s%s", from[0] ? " (" : "", from, from[0] ? ")" : "");
	else if (im->state == RFS_FAILED)
		r = asprintf(&s, "error: %s", im->errmsg ? im->errmsg : strerror(-im->err));
	else
		r = asprintf(&s, "not built");
	pthread_mutex_unlock(&im->mu);
	return r < 0 ? NULL : s;
}

struct rootfs_tree *rfs_layer_tree(struct rfs_image *im, size_t p, size_t k)
{
	if (p >= im->nplats || k >= im->plats[p].n)
		return NULL;
	struct rfs_plat *pl = &im->plats[p];
	pthread_mutex_lock(&im->mu);
	if (!pl->ltrees[k]) {
		char ns[128];
		snprintf(ns, sizeof ns, "%s@layers/%zu", pl->digest, k);
		if (rootfs_tree_layer(ns, pl->ixs[k], (unsigned)k, &pl->ltrees[k]) != 0)
			pl->ltrees[k] = NULL;
	}
	struct rootfs_tree *t = pl->ltrees[k];
	pthread_mutex_unlock(&im->mu);
	return t;
}
