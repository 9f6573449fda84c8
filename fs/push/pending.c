/* Pending pushes: versions, completeness and the commit (see pending.h).
 *
 * Version rules (what one tag directory goes through across several writes):
 * - EMPTY -> PENDING at the first create (the repository is made sure of
 *   first).
 * - COMMITTED: files created afterwards (blobs of other refs that cp copies
 *   after the selected image completed) join it without changing its
 *   outcome; creating oci-layout or index.json, or replacing an existing
 *   name, starts a new version that keeps only those later files.
 * - FAILED: at once when one of its files fails (a write's ENOSPC, a copy
 *   by reference, a digest), not at the next evaluation, so no later
 *   writer joins a version holding a failed file. The next create starts a
 *   new version from nothing, so running the copy again works after a full
 *   disk, a killed cp or a corrupted blob; only the rest of the failing
 *   writer's own copy (new names, see failed_writer) joins the failed
 *   version, so sync TAGDIR still answers its errno. After an immutable tag
 *   refused index.json, the refused writer's creates fail with EEXIST
 *   instead (see refused), and sync TAGDIR keeps answering EEXIST.
 * - A version with no open file for timeout_s is dropped (EMPTY). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/pending_i.h"
#include "net/log.h"

int pending_new(const struct pending_opts *o, pending **out)
{
	pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->o = *o;
	if (!p->o.timeout_s)
		p->o.timeout_s = 600;
	p->spill_dir = o->spill_dir ? strdup(o->spill_dir) : NULL;
	p->o.spill_dir = p->spill_dir;
	if (upload_pool_new(o->part_bytes, o->spill_bytes, &p->pool) < 0) {
		free(p->spill_dir);
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	*out = p;
	return 0;
}

/* Locks v to change it: waits until no network call of v is under way. */
void pend_vlock(pending_version *v)
{
	pthread_mutex_lock(&v->mu);
	while (v->busy)
		pthread_cond_wait(&v->cv, &v->mu);
}

/* Around a network call made while changing v (mu held on entry and on
 * return): other changes keep waiting, readers go on. */
void pend_net_begin(pending_version *v)
{
	v->busy++;
	pthread_mutex_unlock(&v->mu);
}

void pend_net_end(pending_version *v)
{
	pthread_mutex_lock(&v->mu);
	if (--v->busy == 0)
		pthread_cond_broadcast(&v->cv);
}

void pend_file_free(pending_file *f)
{
	upload_free(f->up);
	free(f->name);
	free(f->media_type);
	free(f->bytes);
	free(f);
}

/* Drops one reference; v->mu held. */
void pend_file_unref_locked(pending_file *f)
{
	if (--f->refs == 0)
		pend_file_free(f);
}

/* 1 when f's blob upload still runs after its close. */
static int uploading(pending_file *f)
{
	int rc;
	return f->state == F_FINAL && f->up && !f->by_ref && upload_poll(f->up, &rc);
}

/* Drops drained files whose upload ended. */
static void drain_reap_locked(pending_version *v)
{
	for (size_t i = v->ndrain; i-- > 0;) {
		pending_file *f = v->drain[i];
		if (uploading(f))
			continue;
		v->drain[i] = v->drain[--v->ndrain];
		pend_file_unref_locked(f);
	}
}

static void drain_add_locked(pending_version *v, pending_file *f)
{
	pending_file **n = realloc(v->drain, (v->ndrain + 1) * sizeof(*n));
	if (!n)
		return; /* its upload stops with it */
	v->drain = n;
	v->drain[v->ndrain++] = f;
	f->refs++;
}

pending_file *pend_drain_find_locked(pending_version *v, const char *digest)
{
	for (size_t i = 0; i < v->ndrain; i++)
		if (!strcmp(v->drain[i]->digest, digest))
			return v->drain[i];
	return NULL;
}

/* A create of blob rel whose upload from an earlier version still runs
 * waits for it (busy raised, mu let go), so the new file finds the blob in
 * ECR and is only hashed. */
int pend_drain_wait_locked(pending_version *v, const char *rel)
{
	char digest[80];
	pending_file *d;
	int rc = 0;

	pend_digest_of_name(rel, digest, sizeof(digest));
	d = digest[0] ? pend_drain_find_locked(v, digest) : NULL;
	if (d && uploading(d)) {
		pend_net_begin(v);
		rc = upload_wait(d->up);
		pend_net_end(v);
	}
	drain_reap_locked(v);
	return rc;
}

void pend_unlist_locked(pending_version *v, size_t i)
{
	pending_file *f = v->files[i];
	v->files[i] = v->files[--v->nfiles];
	f->listed = 0;
	if (f->state == F_WRITING && f->up)
		upload_abort(f->up);
	else if (uploading(f))
		drain_add_locked(v, f);
	drain_reap_locked(v);
	pend_file_unref_locked(f);
}

void pend_avail_clear(pending_version *v)
{
	for (size_t i = 0; i < v->navail; i++)
		free(v->avail[i]);
	free(v->avail);
	v->avail = NULL;
	v->navail = 0;
}

static void version_free(pending_version *v)
{
	while (v->nfiles)
		pend_unlist_locked(v, v->nfiles - 1);
	while (v->ndrain) /* unmount: their uploads stop */
		pend_file_unref_locked(v->drain[--v->ndrain]);
	free(v->drain);
	free(v->files);
	pend_avail_clear(v);
	free(v->missing);
	free(v->registry);
	free(v->region);
	free(v->repo);
	free(v->tag);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->cv);
	free(v);
}

void pending_free(pending *p)
{
	if (!p)
		return;
	while (p->versions) {
		pending_version *v = p->versions;
		p->versions = v->next;
		version_free(v);
	}
	pthread_mutex_destroy(&p->mu);
	upload_pool_free(p->pool); /* after the uploads: they are all freed */
	free(p->spill_dir);
	free(p);
}

static int streq0(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

pending_version *pending_version_find(pending *p, const char *registry, const char *region,
				      const char *repo, const char *tag)
{
	pending_version *v;
	pthread_mutex_lock(&p->mu);
	for (v = p->versions; v; v = v->next)
		if (streq0(v->registry, registry) && !strcmp(v->region, region) &&
		    !strcmp(v->repo, repo) && !strcmp(v->tag, tag))
			break;
	pthread_mutex_unlock(&p->mu);
	return v;
}

void pending_repo_deleted(pending *p, const char *registry, const char *region,
			  const char *repo)
{
	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next)
		if (streq0(v->registry, registry) && !strcmp(v->region, region) &&
		    !strcmp(v->repo, repo)) {
			pthread_mutex_lock(&v->mu);
			v->repo_ready = 0;
			pend_avail_clear(v);
			pthread_mutex_unlock(&v->mu);
		}
	pthread_mutex_unlock(&p->mu);
}

int pending_version_get(pending *p, const char *registry, const char *region, const char *repo,
			const char *tag, struct push_remote *remote, pending_version **out)
{
	pending_version *v = pending_version_find(p, registry, region, repo, tag);
	int rc = -ENOMEM;

	if (v) {
		*out = v;
		return 0;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cv, NULL);
	v->p = p;
	v->remote = remote;
	v->registry = registry ? strdup(registry) : NULL;
	v->region = strdup(region);
	v->repo = strdup(repo);
	v->tag = strdup(tag);
	if ((registry && !v->registry) || !v->region || !v->repo || !v->tag)
		goto out;
	pthread_mutex_lock(&p->mu);
	/* Another thread may have made it meanwhile. */
	for (pending_version *w = p->versions; w; w = w->next)
		if (streq0(w->registry, registry) && !strcmp(w->region, region) &&
		    !strcmp(w->repo, repo) && !strcmp(w->tag, tag)) {
			pthread_mutex_unlock(&p->mu);
			version_free(v);
			*out = w;
			return 0;
		}
	v->next = p->versions;
	p->versions = v;
	pthread_mutex_unlock(&p->mu);
	*out = v;
	v = NULL;
	rc = 0;
out:
	if (v)
		version_free(v);
	return rc;
}

enum pending_state pending_version_state(pending_version *v)
{
	enum pending_state s;
	pthread_mutex_lock(&v->mu);
	s = v->state;
	pthread_mutex_unlock(&v->mu);
	return s;
}

const char *pending_version_tag(pending_version *v)
{
	return v->tag;
}

int pending_is_layout_name(const char *rel)
{
	if (!strcmp(rel, "oci-layout") || !strcmp(rel, "index.json"))
		return 1;
	if (strncmp(rel, "blobs/sha256/", 13))
		return 0;
	rel += 13;
	for (int i = 0; i < 64; i++)
		if (!((rel[i] >= '0' && rel[i] <= '9') || (rel[i] >= 'a' && rel[i] <= 'f')))
			return 0;
	return rel[64] == '\0';
}

/* "blobs/sha256/<hex>" -> "sha256:<hex>" into buf; "" for other names. */
void pend_digest_of_name(const char *rel, char *buf, size_t n)
{
	buf[0] = '\0';
	if (pending_is_layout_name(rel) && !strncmp(rel, "blobs/", 6))
		snprintf(buf, n, "sha256:%s", rel + 13);
}

pending_file *pend_find_locked(pending_version *v, const char *rel, size_t *idx)
{
	for (size_t i = 0; i < v->nfiles; i++)
		if (!strcmp(v->files[i]->name, rel)) {
			if (idx)
				*idx = i;
			return v->files[i];
		}
	return NULL;
}

pending_file *pend_find_digest_locked(pending_version *v, const char *digest)
{
	char rel[96];
	if (strncmp(digest, "sha256:", 7))
		return NULL;
	snprintf(rel, sizeof(rel), "blobs/sha256/%s", digest + 7);
	return pend_find_locked(v, rel, NULL);
}

/* Makes sure the repository exists; v->mu held (through pend_vlock), let go
 * over the network call. */
int pend_ensure_repo_locked(pending_version *v)
{
	int rc;

	if (v->repo_ready)
		return 0;
	pend_net_begin(v);
	if (v->p->o.no_create_repos) {
		/* Existence is learnt from a harmless call on the repository. */
		int avail = 0;
		const char *d[1] = { "sha256:0000000000000000000000000000000000000000000000000000000000000000" };
		rc = v->remote->ops->check_layers(v->remote->ctx, d, 1, &avail);
		if (rc == -ENOENT)
			log_err("%s does not exist and no_create_repos is set: create it with "
				"`aws ecr create-repository --repository-name %s --region %s`",
				v->remote->desc, v->repo, v->region);
	} else {
		rc = v->remote->ops->create_repository(v->remote->ctx);
	}
	pend_net_end(v);
	if (rc == 0)
		v->repo_ready = 1;
	return rc;
}

/* Starts a new version keeping only files of the current generation (those
 * created after a commit); v->mu held. */
void pend_new_version_locked(pending_version *v, int keep_current_gen)
{
	/* Dropped files were never uploaded: the new version cannot count them
	 * (the repository is asked instead). */
	for (size_t i = v->nfiles; i-- > 0;)
		if (!keep_current_gen || v->files[i]->gen != v->gen || v->files[i]->discard)
			pend_unlist_locked(v, i);
	v->commit_writer = 0;
	v->failed_writer = 0;
	if (!keep_current_gen)
		v->gen++;
	v->state = PV_PENDING;
	v->rc = 0;
	v->dropped = 0;
	v->committed[0] = '\0';
	free(v->missing);
	v->missing = NULL;
	pend_avail_clear(v);
}

static int begin_locked(pending_version *v)
{
	int rc = pend_ensure_repo_locked(v);
	if (rc < 0)
		return rc;
	if (v->state == PV_EMPTY || v->state == PV_FAILED)
		pend_new_version_locked(v, 0);
	v->last_activity = time(NULL);
	return 0;
}

int pending_begin(pending_version *v)
{
	int rc;
	pend_vlock(v);
	rc = begin_locked(v);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

void pend_fail_version_locked(pending_version *v, int rc)
{
	v->state = PV_FAILED;
	v->rc = rc;
	v->gen++;
	for (size_t i = 0; i < v->nfiles; i++)
		if (v->files[i]->state == F_WRITING && v->files[i]->up)
			upload_abort(v->files[i]->up);
}

int pending_committed_via_repo(pending_version *v)
{
	int r;
	pthread_mutex_lock(&v->mu);
	r = v->state == PV_COMMITTED && v->via_repo;
	pthread_mutex_unlock(&v->mu);
	return r;
}

int pending_idle_s(pending_version *v, time_t now)
{
	int s;
	pthread_mutex_lock(&v->mu);
	s = v->open_files > 0 ? -1 : (int)(now - v->last_activity);
	pthread_mutex_unlock(&v->mu);
	return s;
}

void pending_drop(pending_version *v)
{
	pend_vlock(v);
	if (v->state == PV_PENDING || v->state == PV_FAILED) {
		log_info("push of %s:%s abandoned (its directory was removed)", v->repo, v->tag);
		pend_new_version_locked(v, 0);
		v->state = PV_EMPTY;
		v->dropped = 1;
		v->refused[0] = '\0';
	}
	pthread_mutex_unlock(&v->mu);
}

int pending_sweep(pending *p, time_t now)
{
	int n = 0;

	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next) {
		pthread_mutex_lock(&v->mu);
		if (v->refused[0] && !v->busy && v->open_files == 0 &&
		    now - v->last_activity >= REFUSAL_S)
			v->refused[0] = '\0'; /* that writer may try again (a long-lived process) */
		if (!v->busy && v->state == PV_PENDING && v->open_files == 0 &&
		    now - v->last_activity >= p->o.timeout_s) {
			log_warn("dropping the unfinished push of %s:%s (nothing written for %d s); "
				 "the tag is unchanged", v->repo, v->tag, p->o.timeout_s);
			pend_new_version_locked(v, 0);
			v->state = PV_EMPTY;
			v->dropped = 1;
			v->refused[0] = '\0';
			n++;
		}
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return n;
}

void pending_trim_idle(pending *p, time_t now, int idle_s,
		       int (*keep)(pending_version *v, void *arg), void *arg)
{
	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next) {
		if (keep && keep(v, arg))
			continue;
		pthread_mutex_lock(&v->mu);
		if (!v->busy && v->state == PV_COMMITTED && v->nfiles && v->open_files == 0 &&
		    now - v->last_activity >= idle_s) {
			for (size_t i = v->nfiles; i-- > 0;)
				if (v->files[i]->open == 0)
					pend_unlist_locked(v, i);
			if (!v->nfiles) {
				free(v->files);
				v->files = NULL;
			}
			pend_avail_clear(v);
		}
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&p->mu);
}

void pending_counts(pending *p, size_t *versions, size_t *files)
{
	*versions = *files = 0;
	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next) {
		pthread_mutex_lock(&v->mu);
		(*versions)++;
		*files += v->nfiles;
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&p->mu);
}
