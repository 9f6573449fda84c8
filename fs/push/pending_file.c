/* Files of a pending version: create, write, flush, rename, copy by
 * reference, listing. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/pending_i.h"
#include "net/log.h"

static pending_file *file_new(pending_version *v, const char *rel)
{
	pending_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->v = v;
	f->name = strdup(rel);
	if (!f->name) {
		free(f);
		return NULL;
	}
	f->gen = v->gen;
	/* Atomic, not p->mu: v->mu is held here, and p->mu comes before v->mu. */
	f->id = __atomic_add_fetch(&v->p->next_id, 1, __ATOMIC_RELAXED);
	return f;
}

static int list_add_locked(pending_version *v, pending_file *f)
{
	pending_file **n = realloc(v->files, (v->nfiles + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	v->files = n;
	v->files[v->nfiles++] = f;
	f->listed = 1;
	f->refs++;
	return 0;
}

/* Where files created after the commit go: nowhere. The repository "has"
 * every digest (a named blob is only hashed and checked), and anything
 * streamed is accepted and forgotten. */
static int nul_check(void *ctx, const char *const *d, size_t n, int *available)
{
	for (size_t i = 0; i < n; i++)
		available[i] = 1;
	return 0;
}

static int nul_initiate(void *ctx, char **upload_id, int64_t *part_size)
{
	*upload_id = strdup("dropped");
	*part_size = UPLOAD_PART_MAX;
	return *upload_id ? 0 : -ENOMEM;
}

static int nul_part(void *ctx, const char *id, uint64_t first, const void *data, size_t len,
		    int64_t *last_valid)
{
	return 0;
}

static int nul_complete(void *ctx, const char *id, const char *digest)
{
	return 0;
}

static int nul_put(void *ctx, const char *tag, const char *bytes, size_t len,
		   const char *media_type, const char *digest)
{
	return -EPERM; /* never: dropped files take no part in a commit */
}

static int nul_exists(void *ctx, const char *digest)
{
	return 1;
}

static int nul_create(void *ctx)
{
	return 0;
}

static const struct push_remote_ops discard_ops = {
	.check_layers = nul_check,
	.initiate = nul_initiate,
	.upload_part = nul_part,
	.complete = nul_complete,
	.put_image = nul_put,
	.image_exists = nul_exists,
	.create_repository = nul_create,
};
static struct push_remote discard_remote = { &discard_ops, NULL, "nowhere (dropped)" };

int pending_create(pending_version *v, const char *rel, pending_file **out)
{
	return pending_create_as(v, rel, 0, out);
}

/* The rest of a push an immutable tag refused (see pending_version.refused):
 * -EEXIST for that writer, not one byte. */
static int refused_locked(pending_version *v, const char *rel, long writer)
{
	if (!v->refused[0] || !writer || writer != v->refused_writer)
		return 0;
	v->last_activity = time(NULL);
	log_err("%s:%s is immutable and this push names %s: %s not written (File exists)",
		v->repo, v->tag, v->refused, rel);
	return -EEXIST;
}

/* The version a create of rel joins: a new one after a failure (but the
 * failed one for the rest of the failing writer's copy: a name it has not
 * written yet), or over a committed tag when rel replaces a name or is
 * index.json or oci-layout. The old file of that name, if any, is removed
 * (O_TRUNC or a new create: the name starts over). */
static void version_for_create_locked(pending_version *v, const char *rel, long writer)
{
	size_t idx;
	pending_file *old = pend_find_locked(v, rel, &idx);
	int rest_of_failed = v->state == PV_FAILED && writer && writer == v->failed_writer && !old;

	if (v->state == PV_EMPTY || (v->state == PV_FAILED && !rest_of_failed))
		pend_new_version_locked(v, 0);
	else if (v->state == PV_COMMITTED &&
		 (old || !strcmp(rel, "index.json") || !strcmp(rel, "oci-layout")))
		pend_new_version_locked(v, 1); /* a new push over the committed tag */
	if (pend_find_locked(v, rel, &idx))
		pend_unlist_locked(v, idx);
}

static int upload_start(pending_version *v, pending_file *f, const char *rel)
{
	char digest[80];
	struct upload_opts uo = { 0 };

	pend_digest_of_name(rel, digest, sizeof(digest));
	uo.remote = f->discard ? &discard_remote : v->remote;
	uo.spill_dir = v->p->o.spill_dir;
	uo.hold_cap = v->p->o.hold_cap;
	uo.digest = digest[0] ? digest : NULL;
	uo.hold_only = !strcmp(rel, "index.json") || !strcmp(rel, "oci-layout");
	uo.name = rel;
	uo.pool = v->p->pool;
	uo.async = 1; /* the commit waits (pending_commit.c) */
	return upload_new(&uo, &f->up);
}

int pending_create_as(pending_version *v, const char *rel, long writer, pending_file **out)
{
	pending_file *f = NULL;
	int rc;

	pend_vlock(v);
	rc = refused_locked(v, rel, writer);
	if (rc == 0)
		rc = pend_ensure_repo_locked(v);
	if (rc < 0)
		goto out;
	version_for_create_locked(v, rel, writer);
	pend_drain_wait_locked(v, rel); /* its outcome: the new file asks ECR */
	rc = -ENOMEM;
	f = file_new(v, rel);
	if (!f)
		goto out;
	f->writer = writer;
	/* After the commit its writer goes on with blobs of other refs (cp
	 * copies the whole layout): they are checked and dropped. */
	f->discard = v->state == PV_COMMITTED && writer && writer == v->commit_writer;
	rc = upload_start(v, f, rel);
	if (rc == 0)
		rc = list_add_locked(v, f);
	if (rc < 0)
		goto out;
	f->refs++; /* the caller's */
	f->open = 1;
	v->open_files++;
	v->last_activity = time(NULL);
	*out = f;
	f = NULL;
out:
	pthread_mutex_unlock(&v->mu);
	if (f)
		pend_file_free(f);
	return rc;
}

/* f failed with rc (a write, a copy by reference, its finish): so does its
 * version, at once, while f is one of its files. The writer's later closes
 * and sync TAGDIR answer rc, and the next create starts a new version from
 * nothing: a version left pending with a failed file would fail the next
 * writer's evaluation (a re-run of the same cp) with this writer's errno.
 * v->mu held through pend_vlock (the version's state changes); *did is set
 * when the version failed here. Returns f's error. */
static int file_failed_locked(pending_file *f, int rc, int *did)
{
	pending_version *v = f->v;

	if (f->state == F_WRITING) {
		f->state = F_FAILED;
		f->rc = rc;
	}
	if (f->state == F_FAILED && f->listed && f->gen == v->gen && v->state == PV_PENDING) {
		log_err("push of %s:%s aborted: %s failed (%s)", v->repo, v->tag, f->name,
			strerror(-f->rc));
		pend_fail_version_locked(v, f->rc);
		v->failed_writer = f->writer;
		*did = 1;
	}
	return f->state == F_FAILED ? f->rc : rc;
}

int pending_write(pending_file *f, const void *buf, size_t len, uint64_t off)
{
	pending_version *v = f->v;
	int rc = upload_write(f->up, buf, len, off), did = 0;

	if (rc < 0) {
		pend_vlock(v);
		file_failed_locked(f, rc, &did);
		pthread_mutex_unlock(&v->mu);
		pend_notify(v, did, rc);
	}
	return rc;
}

int pending_truncate(pending_file *f, uint64_t size)
{
	if (!f->up)
		return size == f->size ? 0 : -EPERM;
	return upload_truncate(f->up, size);
}

uint64_t pending_file_size(pending_file *f)
{
	return f->by_ref || !f->up ? f->size : upload_size(f->up);
}

pending_version *pending_file_version(pending_file *f)
{
	return f->v;
}

/* The end of finish_file: the outcome later flushes return, v->mu let go,
 * the commit hook told when this call ran a commit or failed the version. */
static int finished(pending_file *f, int did, int rc)
{
	pending_version *v = f->v;
	f->finished = 1;
	f->outcome = rc;
	pthread_mutex_unlock(&v->mu);
	pend_notify(v, did, rc);
	return rc;
}

/* A copy by reference finishes when its name is the digest that was
 * copied. */
static int finish_ref(pending_file *f, const char *digest)
{
	pending_version *v = f->v;
	int rc;

	pend_vlock(v);
	rc = f->state == F_FAILED ? f->rc : strcmp(digest, f->digest) ? -EIO : 0;
	if (rc == 0 && f->state == F_WRITING)
		f->state = F_FINAL;
	f->kind = PUSH_BLOB;
	pthread_mutex_unlock(&v->mu);
	return rc;
}

/* Keeps the upload's result in f: digest, size, kind, and the bytes of
 * manifests, indexes, index.json and oci-layout. */
static int take_result_locked(pending_file *f, const struct upload_result *res)
{
	f->state = F_FINAL;
	snprintf(f->digest, sizeof(f->digest), "%s", res->digest);
	f->size = res->size;
	f->kind = res->kind;
	if (res->media_type)
		f->media_type = strdup(res->media_type);
	if (res->bytes) {
		f->bytes = malloc(res->len + 1);
		if (f->bytes) {
			memcpy(f->bytes, res->bytes, res->len);
			f->bytes[res->len] = '\0';
		}
		f->len = res->len;
	}
	if ((res->media_type && !f->media_type) || (res->bytes && !f->bytes)) {
		f->state = F_FAILED;
		f->rc = -ENOMEM;
		return -ENOMEM;
	}
	return 0;
}

/* Records the outcome of finishing f (rc, res from upload_finish or
 * finish_ref) in f's state; returns f's error or rc. */
static int record_locked(pending_file *f, int rc, const struct upload_result *res)
{
	if (f->state == F_WRITING && (f->by_ref || f->up) && rc < 0) {
		f->state = F_FAILED;
		f->rc = rc;
	} else if (f->state == F_WRITING && f->up && !f->by_ref) {
		rc = take_result_locked(f, res);
	}
	return f->state == F_FAILED ? f->rc : rc;
}

/* f is final (or failed) with rc: a failure aborts the version; a success
 * evaluates it, index.json first checked against an immutable tag. */
static int settle_locked(pending_file *f, int rc)
{
	pending_version *v = f->v;
	int erc, did = 0;

	if (!f->listed || f->gen != v->gen) {
		/* Replaced, or written after the commit: not part of a pending set. */
		return finished(f, 0, rc);
	}
	if (rc < 0)
		return finished(f, did, file_failed_locked(f, rc, &did));
	erc = strcmp(f->name, "index.json") ? 0 : pend_immutable_check_locked(v, f);
	if (erc < 0) {
		pend_fail_version_locked(v, erc);
		did = 1;
	} else {
		erc = pend_evaluate_locked(v, &did);
		if (did && erc == 0 && v->state == PV_COMMITTED)
			v->commit_writer = f->writer;
	}
	/* Incomplete is not an error of this close (sync TAGDIR reports it). */
	return finished(f, did, erc == -ENODATA ? 0 : erc);
}

/* Finishes f under its (layout) name, records the result, evaluates.
 * Returns the file's error, else the commit's, else 0. */
static int finish_file(pending_file *f)
{
	pending_version *v = f->v;
	char digest[80];
	const struct upload_result *res = NULL;
	int rc;

	pthread_mutex_lock(&v->mu);
	pend_digest_of_name(f->name, digest, sizeof(digest));
	if (f->finished) {
		rc = f->outcome;
		pthread_mutex_unlock(&v->mu);
		return rc;
	}
	pthread_mutex_unlock(&v->mu);
	if (f->by_ref)
		rc = finish_ref(f, digest);
	else
		rc = f->up ? upload_finish(f->up, digest[0] ? digest : NULL, &res) : 0;
	pend_vlock(v);
	v->last_activity = time(NULL);
	rc = record_locked(f, rc, res);
	return settle_locked(f, rc);
}

int pending_flush(pending_file *f)
{
	char name[512];
	int rc;

	pthread_mutex_lock(&f->v->mu);
	snprintf(name, sizeof(name), "%s", f->name);
	rc = f->state == F_FAILED ? f->rc : 0;
	pthread_mutex_unlock(&f->v->mu);
	if (rc < 0)
		return rc;
	if (!pending_is_layout_name(name))
		return f->up ? upload_sync(f->up) : 0; /* final at its rename */
	return finish_file(f);
}

int pending_fsync(pending_file *f)
{
	int rc;
	pthread_mutex_lock(&f->v->mu);
	rc = f->state == F_FAILED ? f->rc : 0;
	pthread_mutex_unlock(&f->v->mu);
	if (rc == 0 && f->up)
		rc = upload_sync(f->up);
	return rc;
}

void pending_release(pending_file *f)
{
	pending_version *v = f->v;
	pthread_mutex_lock(&v->mu);
	if (f->open > 0) {
		f->open--;
		v->open_files--;
	}
	v->last_activity = time(NULL);
	pthread_mutex_unlock(&v->mu);
}

void pending_file_put(pending_file *f)
{
	pending_version *v;
	if (!f)
		return;
	v = f->v;
	pthread_mutex_lock(&v->mu);
	pend_file_unref_locked(f);
	pthread_mutex_unlock(&v->mu);
}

pending_file *pending_file_get(pending_version *v, const char *rel)
{
	pending_file *f;
	pthread_mutex_lock(&v->mu);
	f = pend_find_locked(v, rel, NULL);
	if (f) {
		f->refs++;
		f->open++;
		v->open_files++;
	}
	pthread_mutex_unlock(&v->mu);
	return f;
}

int pending_rename(pending_version *v, const char *from, const char *to)
{
	pending_file *f, *old;
	size_t idx;
	char *nn;
	int rc = 0;

	pend_vlock(v);
	f = pend_find_locked(v, from, NULL);
	if (!f) {
		pthread_mutex_unlock(&v->mu);
		return -ENOENT;
	}
	nn = strdup(to);
	if (!nn) {
		pthread_mutex_unlock(&v->mu);
		return -ENOMEM;
	}
	old = pend_find_locked(v, to, &idx);
	/* As in pending_create: renaming onto a name of the committed version
	 * or onto index.json/oci-layout (rsync's .index.json.XXXXXX) starts a
	 * new push over the committed tag; files written since the commit
	 * (the renamed one among them) are kept. */
	if (v->state == PV_COMMITTED &&
	    (old || !strcmp(to, "index.json") || !strcmp(to, "oci-layout"))) {
		pend_new_version_locked(v, 1);
		old = pend_find_locked(v, to, &idx);
	}
	if (old && old != f)
		pend_unlist_locked(v, idx); /* rename over an existing name replaces it */
	free(f->name);
	f->name = nn;
	f->refs++;
	pthread_mutex_unlock(&v->mu);
	if (pending_is_layout_name(to))
		rc = finish_file(f);
	pending_file_put(f);
	return rc;
}

int pending_unlink(pending_version *v, const char *rel)
{
	size_t idx;
	int rc = -ENOENT;
	pend_vlock(v);
	if (pend_find_locked(v, rel, &idx)) {
		pend_unlist_locked(v, idx);
		rc = 0;
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int pending_ref(pending_file *f, const char *digest, uint64_t size, pending_copy_cb copy,
		void *arg)
{
	pending_version *v = f->v;
	int rc, did = 0;

	/* upload_size outside v->mu: it may wait on a writer of this file. */
	uint64_t written = f->up ? upload_size(f->up) : 0;
	pthread_mutex_lock(&v->mu);
	rc = f->state != F_WRITING || f->by_ref || written > 0 ? -EOPNOTSUPP : 0;
	pthread_mutex_unlock(&v->mu);
	if (rc < 0)
		return rc;
	/* Network work without the version lock: the destination gets the
	 * blob only if it lacks it. */
	rc = copy(arg, v->remote);
	pend_vlock(v);
	if (rc < 0) {
		file_failed_locked(f, rc, &did);
	} else {
		f->by_ref = 1;
		snprintf(f->digest, sizeof(f->digest), "%s", digest);
		f->size = size;
		if (f->up)
			upload_abort(f->up); /* nothing was written through it */
	}
	v->last_activity = time(NULL);
	pthread_mutex_unlock(&v->mu);
	pend_notify(v, did, rc);
	return rc;
}

int pending_stat_file(pending_version *v, const char *rel, struct pending_stat *st)
{
	pending_file *f;
	int rc = -ENOENT;

	pthread_mutex_lock(&v->mu);
	f = pend_find_locked(v, rel, NULL);
	if (f) {
		st->final = f->state == F_FINAL;
		st->failed = f->state == F_FAILED;
		st->ino_hint = f->id;
		st->size = f->state == F_FINAL || f->by_ref ? f->size : 0;
		rc = 0;
	}
	pthread_mutex_unlock(&v->mu);
	if (rc == 0 && !st->final && !f->by_ref && f->up)
		st->size = upload_size(f->up); /* not under v->mu: may wait on a writer */
	return rc;
}

void pending_list(pending_version *v, const char *dir,
		  void (*cb)(void *arg, const char *name, const struct pending_stat *st),
		  void *arg)
{
	size_t dl = strlen(dir);

	pthread_mutex_lock(&v->mu);
	for (size_t i = 0; i < v->nfiles; i++) {
		pending_file *f = v->files[i];
		const char *n = f->name;
		struct pending_stat st = { 0 };
		if (dl) {
			if (strncmp(n, dir, dl) || n[dl] != '/')
				continue;
			n += dl + 1;
		}
		if (strchr(n, '/'))
			continue;
		st.final = f->state == F_FINAL;
		st.failed = f->state == F_FAILED;
		st.size = f->size;
		st.ino_hint = f->id;
		cb(arg, n, &st);
	}
	pthread_mutex_unlock(&v->mu);
}
