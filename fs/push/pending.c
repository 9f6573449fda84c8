/* Pending pushes: versions, completeness and the commit (see pending.h).
 *
 * Version rules (DESIGN §2, and what they mean across several writes):
 * - EMPTY -> PENDING at the first create (the repository is made sure of
 *   first).
 * - COMMITTED: files created afterwards (blobs of other refs that cp copies
 *   after the selected image completed) join it without changing its
 *   outcome; creating oci-layout or index.json, or replacing an existing
 *   name, starts a new version that keeps only those later files.
 * - FAILED: the next create starts a new version from nothing, so running
 *   the copy again works after a killed cp or a corrupted blob. After an
 *   immutable tag refused index.json, the refused writer's creates fail with
 *   EEXIST instead (see refused), and sync TAGDIR keeps answering EEXIST.
 * - A version with no open file for timeout_s is dropped (EMPTY). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fs/push/pending.h"
#include "fs/push/upload.h"
#include "net/log.h"

enum fstate { F_WRITING = 0, F_FINAL, F_FAILED };

struct pending_file {
	pending_version *v;
	/* v->mu protects: name, state, rc, gen, open, refs, listed. */
	char *name;
	enum fstate state;
	int rc;
	unsigned gen;
	int open;
	int refs;
	int listed; /* in v->files */
	upload *up; /* NULL for a reference */
	int by_ref;   /* copied by reference (pending_ref): no bytes written */
	int finished; /* finish_file ran: later flushes return outcome */
	long writer;  /* the process that created it, 0: unknown (immutable) */
	int discard;  /* created after the commit by its writer: hashed, dropped */
	int outcome;
	/* final results (v->mu): */
	char digest[72];
	uint64_t size;
	enum push_kind kind;
	char *media_type; /* manifests and indexes */
	char *bytes;      /* manifests, indexes, index.json, oci-layout */
	size_t len;
	uint64_t id;
};

struct pending_version {
	pending *p;
	char *registry; /* may be NULL: the caller's */
	char *region;
	char *repo;
	char *tag;
	struct push_remote *remote; /* borrowed */
	struct pending_version *next; /* p->mu */

	/* mu protects everything below, and the files' fields. A thread that
	 * changes the version takes it with vlock(), which also waits while
	 * `busy`: network calls of an evaluation or commit run without mu
	 * (net_begin/net_end), so LOOKUP, GETATTR and summaries (plain lock,
	 * read-only) never wait for ECR, while changes still wait their turn. */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* busy dropped to 0 */
	int busy;
	enum pending_state state;
	int rc;
	unsigned gen;
	pending_file **files;
	size_t nfiles;
	int repo_ready;
	int open_files;
	time_t last_activity;
	char committed[72];
	int via_repo;  /* the last evaluation counted blobs the writer has not written */
	int dropped;   /* EMPTY because the push was dropped (timeout, rm -r): sync says so */
	char *missing; /* what the last evaluation lacked, for summaries */
	/* Set when index.json named another image than an immutable tag's
	 * (EEXIST at its close): until an index.json passes or the push is
	 * dropped, later creates by that writer (the process that wrote
	 * index.json) fail with EEXIST too, so it stops uploading an image that
	 * cannot be tagged. Other writers start their own push. */
	char refused[72];
	long refused_writer; /* the refusal ends after REFUSAL_S idle seconds */
	/* The writer whose close or rename ran the commit (0: unknown). Its
	 * later creates (blobs of other refs in its layout) are hashed and
	 * dropped, not uploaded, until a new version starts. */
	long commit_writer;
	char **avail;  /* digests the repository was seen to have */
	size_t navail;
};

#define REFUSAL_S 30

struct pending {
	struct pending_opts o;
	char *spill_dir;
	pthread_mutex_t mu; /* protects versions (taken before any version's mu) */
	uint64_t next_id;   /* atomic */
	pending_version *versions;
};

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
	pthread_mutex_init(&p->mu, NULL);
	*out = p;
	return 0;
}

/* Locks v to change it: waits until no network call of v is under way. */
static void vlock(pending_version *v)
{
	pthread_mutex_lock(&v->mu);
	while (v->busy)
		pthread_cond_wait(&v->cv, &v->mu);
}

/* Around a network call made while changing v (mu held on entry and on
 * return): other changes keep waiting, readers go on. */
static void net_begin(pending_version *v)
{
	v->busy++;
	pthread_mutex_unlock(&v->mu);
}

static void net_end(pending_version *v)
{
	pthread_mutex_lock(&v->mu);
	if (--v->busy == 0)
		pthread_cond_broadcast(&v->cv);
}

static void file_free(pending_file *f)
{
	upload_free(f->up);
	free(f->name);
	free(f->media_type);
	free(f->bytes);
	free(f);
}

/* Drops one reference; v->mu held. */
static void file_unref_locked(pending_file *f)
{
	if (--f->refs == 0)
		file_free(f);
}

static void unlist_locked(pending_version *v, size_t i)
{
	pending_file *f = v->files[i];
	v->files[i] = v->files[--v->nfiles];
	f->listed = 0;
	if (f->state == F_WRITING && f->up)
		upload_abort(f->up);
	file_unref_locked(f);
}

static void avail_clear(pending_version *v)
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
		unlist_locked(v, v->nfiles - 1);
	free(v->files);
	avail_clear(v);
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
			avail_clear(v);
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
static void digest_of_name(const char *rel, char *buf, size_t n)
{
	buf[0] = '\0';
	if (pending_is_layout_name(rel) && !strncmp(rel, "blobs/", 6))
		snprintf(buf, n, "sha256:%s", rel + 13);
}

static pending_file *find_locked(pending_version *v, const char *rel, size_t *idx)
{
	for (size_t i = 0; i < v->nfiles; i++)
		if (!strcmp(v->files[i]->name, rel)) {
			if (idx)
				*idx = i;
			return v->files[i];
		}
	return NULL;
}

static pending_file *find_digest_locked(pending_version *v, const char *digest)
{
	char rel[96];
	if (strncmp(digest, "sha256:", 7))
		return NULL;
	snprintf(rel, sizeof(rel), "blobs/sha256/%s", digest + 7);
	return find_locked(v, rel, NULL);
}

/* Makes sure the repository exists; v->mu held (through vlock), let go
 * over the network call. */
static int ensure_repo_locked(pending_version *v)
{
	int rc;

	if (v->repo_ready)
		return 0;
	net_begin(v);
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
	net_end(v);
	if (rc == 0)
		v->repo_ready = 1;
	return rc;
}

/* Starts a new version keeping only files of the current generation (those
 * created after a commit); v->mu held. */
static void new_version_locked(pending_version *v, int keep_current_gen)
{
	/* Dropped files were never uploaded: the new version cannot count them
	 * (the repository is asked instead). */
	for (size_t i = v->nfiles; i-- > 0;)
		if (!keep_current_gen || v->files[i]->gen != v->gen || v->files[i]->discard)
			unlist_locked(v, i);
	v->commit_writer = 0;
	if (!keep_current_gen)
		v->gen++;
	v->state = PV_PENDING;
	v->rc = 0;
	v->dropped = 0;
	v->committed[0] = '\0';
	free(v->missing);
	v->missing = NULL;
	avail_clear(v);
}

static int begin_locked(pending_version *v)
{
	int rc = ensure_repo_locked(v);
	if (rc < 0)
		return rc;
	if (v->state == PV_EMPTY || v->state == PV_FAILED)
		new_version_locked(v, 0);
	v->last_activity = time(NULL);
	return 0;
}

int pending_begin(pending_version *v)
{
	int rc;
	vlock(v);
	rc = begin_locked(v);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

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

int pending_create_as(pending_version *v, const char *rel, long writer, pending_file **out)
{
	pending_file *f = NULL, *old;
	size_t idx;
	char digest[80];
	struct upload_opts uo = { 0 };
	int rc;

	digest_of_name(rel, digest, sizeof(digest));
	vlock(v);
	if (v->refused[0] && writer && writer == v->refused_writer) {
		/* The rest of a push the immutable tag refused: not one byte. */
		v->last_activity = time(NULL);
		log_err("%s:%s is immutable and this push names %s: %s not written (File exists)",
			v->repo, v->tag, v->refused, rel);
		rc = -EEXIST;
		goto out;
	}
	rc = ensure_repo_locked(v);
	if (rc < 0)
		goto out;
	old = find_locked(v, rel, &idx);
	if (v->state == PV_EMPTY || v->state == PV_FAILED)
		new_version_locked(v, 0);
	else if (v->state == PV_COMMITTED &&
		 (old || !strcmp(rel, "index.json") || !strcmp(rel, "oci-layout")))
		new_version_locked(v, 1); /* a new push over the committed tag */
	old = find_locked(v, rel, &idx);
	if (old)
		unlist_locked(v, idx); /* O_TRUNC or a new create: the name starts over */
	rc = -ENOMEM;
	f = file_new(v, rel);
	if (!f)
		goto out;
	f->writer = writer;
	/* After the commit its writer goes on with blobs of other refs (cp
	 * copies the whole layout): they are checked and dropped. */
	f->discard = v->state == PV_COMMITTED && writer && writer == v->commit_writer;
	uo.remote = f->discard ? &discard_remote : v->remote;
	uo.spill_dir = v->p->o.spill_dir;
	uo.hold_cap = v->p->o.hold_cap;
	uo.digest = digest[0] ? digest : NULL;
	uo.hold_only = !strcmp(rel, "index.json") || !strcmp(rel, "oci-layout");
	uo.name = rel;
	rc = upload_new(&uo, &f->up);
	if (rc < 0)
		goto out;
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
		file_free(f);
	return rc;
}

int pending_write(pending_file *f, const void *buf, size_t len, uint64_t off)
{
	int rc = upload_write(f->up, buf, len, off);
	if (rc < 0) {
		pthread_mutex_lock(&f->v->mu);
		if (f->state == F_WRITING) {
			f->state = F_FAILED;
			f->rc = rc;
		}
		pthread_mutex_unlock(&f->v->mu);
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

/* ---- evaluation and commit (v->mu held) ---- */

struct strbuf {
	char *s;
	size_t len;
};

static void sb_add(struct strbuf *b, const char *s)
{
	size_t n = strlen(s);
	char *t = realloc(b->s, b->len + n + 3);
	if (!t)
		return;
	b->s = t;
	if (b->len) {
		memcpy(b->s + b->len, ", ", 2);
		b->len += 2;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

static int avail_has(pending_version *v, const char *d)
{
	for (size_t i = 0; i < v->navail; i++)
		if (!strcmp(v->avail[i], d))
			return 1;
	return 0;
}

static void avail_add(pending_version *v, const char *d)
{
	char **n = realloc(v->avail, (v->navail + 1) * sizeof(*n));
	if (!n)
		return;
	v->avail = n;
	if ((n[v->navail] = strdup(d)))
		v->navail++;
}

/* A reached blob: 1 present, 0 not yet (named in missing), <0 failed. */
enum presence { P_MISSING = 0, P_PRESENT = 1, P_UNKNOWN = 2 };

static int file_final(pending_file *f)
{
	return f && f->state == F_FINAL;
}

/* Checks reached blobs; the ones neither written nor known present are
 * asked in one BatchCheckLayerAvailability. */
static int check_blobs_locked(pending_version *v, struct push_desc_list *l, struct strbuf *miss)
{
	const char **ask = NULL;
	int *av = NULL;
	size_t nask = 0;
	int rc = 0;

	ask = calloc(l->n + 1, sizeof(*ask));
	av = calloc(l->n + 1, sizeof(*av));
	if (!ask || !av) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l->n; i++) {
		pending_file *f = find_digest_locked(v, l->v[i].digest);
		if (f) {
			if (f->state == F_FAILED) {
				rc = f->rc ? f->rc : -EIO;
				goto out;
			}
			if (f->state != F_FINAL)
				sb_add(miss, l->v[i].digest);
			continue;
		}
		if (!avail_has(v, l->v[i].digest))
			ask[nask++] = l->v[i].digest;
		else
			v->via_repo = 1;
	}
	if (nask) {
		net_begin(v);
		rc = v->remote->ops->check_layers(v->remote->ctx, ask, nask, av);
		net_end(v);
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < nask; i++) {
			if (av[i] == 1) {
				avail_add(v, ask[i]);
				v->via_repo = 1;
			}
			else
				sb_add(miss, ask[i]);
		}
	}
out:
	free(ask);
	free(av);
	return rc;
}

static void fail_version_locked(pending_version *v, int rc)
{
	v->state = PV_FAILED;
	v->rc = rc;
	v->gen++;
	for (size_t i = 0; i < v->nfiles; i++)
		if (v->files[i]->state == F_WRITING && v->files[i]->up)
			upload_abort(v->files[i]->up);
}

/* PutImage without mu: m stays listed (no change runs meanwhile), and a
 * final file's bytes never change. */
static int put_locked(pending_version *v, const char *tag, pending_file *m)
{
	int rc;
	net_begin(v);
	rc = v->remote->ops->put_image(v->remote->ctx, tag, m->bytes, m->len, m->media_type,
				       m->digest);
	net_end(v);
	return rc;
}

/* Evaluates the pending version; commits when complete. Returns 0
 * (committed or nothing to do), -ENODATA (incomplete, v->missing set), or
 * the errno of a failure (the version is then FAILED). *committed is set
 * when this call ran the commit. */
static int evaluate_locked(pending_version *v, int *committed)
{
	struct strbuf miss = { 0 };
	struct push_desc_list idx = { 0 }, reach = { 0 }, kids = { 0 };
	pending_file *layout, *index, *sel = NULL, **childm = NULL;
	size_t nchild = 0;
	int rc = 0;

	*committed = 0;
	if (v->state != PV_PENDING)
		return v->state == PV_FAILED ? v->rc : 0;
	v->via_repo = 0;
	layout = find_locked(v, "oci-layout", NULL);
	index = find_locked(v, "index.json", NULL);
	if (!file_final(layout))
		sb_add(&miss, "oci-layout");
	if (!file_final(index)) {
		sb_add(&miss, "index.json");
		goto incomplete;
	}
	rc = push_json_descs(index->bytes, index->len, PUSH_INDEX, &idx);
	if (rc < 0) {
		log_err("%s:%s: index.json is not a valid OCI index", v->repo, v->tag);
		goto failed;
	}
	/* Candidates: descriptors whose manifest was written in this version. */
	{
		size_t ncand = 0, pick = 0, nref = 0;
		for (size_t i = 0; i < idx.n; i++)
			if (find_digest_locked(v, idx.v[i].digest))
				ncand++, pick = i;
		if (ncand == 0) {
			for (size_t i = 0; i < idx.n; i++)
				sb_add(&miss, idx.v[i].digest);
			if (idx.n == 0)
				sb_add(&miss, "a manifest in index.json");
			goto incomplete;
		}
		if (ncand > 1) {
			struct strbuf refs = { 0 };
			for (size_t i = 0; i < idx.n; i++) {
				if (!find_digest_locked(v, idx.v[i].digest))
					continue;
				sb_add(&refs, idx.v[i].ref_name ? idx.v[i].ref_name : "(no ref.name)");
				if (idx.v[i].ref_name && !strcmp(idx.v[i].ref_name, v->tag))
					nref++, pick = i;
			}
			if (nref != 1) {
				log_err("%s:%s: index.json names several images written here (refs: %s) "
					"and %s ref.name \"%s\"", v->repo, v->tag, refs.s ? refs.s : "",
					nref ? "more than one has" : "none has", v->tag);
				free(refs.s);
				rc = -EINVAL;
				goto failed;
			}
			free(refs.s);
		}
		sel = find_digest_locked(v, idx.v[pick].digest);
	}
	if (sel->state == F_FAILED) {
		rc = sel->rc ? sel->rc : -EIO;
		goto failed;
	}
	if (sel->state != F_FINAL) {
		sb_add(&miss, sel->digest[0] ? sel->digest : sel->name);
		goto incomplete;
	}
	if (sel->kind == PUSH_BLOB) {
		log_err("%s:%s: %s named by index.json is not a manifest or index", v->repo,
			v->tag, sel->digest);
		rc = -EINVAL;
		goto failed;
	}
	rc = push_json_descs(sel->bytes, sel->len, sel->kind, &reach);
	if (rc < 0) {
		log_err("%s:%s: manifest %s has malformed descriptors", v->repo, v->tag, sel->digest);
		goto failed;
	}
	if (sel->kind == PUSH_INDEX) {
		/* Children: written here (then their blobs count) or in ECR. */
		childm = calloc(reach.n + 1, sizeof(*childm));
		if (!childm) {
			rc = -ENOMEM;
			goto failed;
		}
		for (size_t i = 0; i < reach.n; i++) {
			pending_file *c = find_digest_locked(v, reach.v[i].digest);
			struct push_desc_list cl = { 0 };
			if (!c) {
				int has;
				net_begin(v);
				has = v->remote->ops->image_exists(v->remote->ctx, reach.v[i].digest);
				net_end(v);
				if (has < 0) {
					rc = has;
					goto failed;
				}
				if (!has)
					sb_add(&miss, reach.v[i].digest);
				v->via_repo = 1;
				continue;
			}
			if (c->state != F_FINAL || c->kind != PUSH_MANIFEST) {
				if (c->state == F_FINAL)
					log_err("%s:%s: %s in the index is not an image manifest",
						v->repo, v->tag, c->digest);
				if (c->state == F_FAILED || c->state == F_FINAL) {
					rc = c->rc ? c->rc : -EINVAL;
					goto failed;
				}
				sb_add(&miss, reach.v[i].digest);
				continue;
			}
			childm[nchild++] = c;
			rc = push_json_descs(c->bytes, c->len, PUSH_MANIFEST, &cl);
			if (rc < 0)
				goto failed;
			for (size_t j = 0; j < cl.n; j++) {
				struct push_desc *nv = realloc(kids.v, (kids.n + 1) * sizeof(*nv));
				if (!nv) {
					push_desc_list_free(&cl);
					rc = -ENOMEM;
					goto failed;
				}
				kids.v = nv;
				kids.v[kids.n++] = cl.v[j];
				memset(&cl.v[j], 0, sizeof(cl.v[j]));
			}
			push_desc_list_free(&cl);
		}
		rc = check_blobs_locked(v, &kids, &miss);
	} else {
		rc = check_blobs_locked(v, &reach, &miss);
	}
	if (rc < 0)
		goto failed;
	if (miss.len)
		goto incomplete;

	/* Complete: children by digest, then the top one with the tag. */
	for (size_t i = 0; i < nchild; i++) {
		rc = put_locked(v, NULL, childm[i]);
		if (rc < 0)
			goto failed;
	}
	rc = put_locked(v, v->tag, sel);
	if (rc < 0)
		goto failed;
	log_info("pushed %s:%s (%s) to %s", v->repo, v->tag, sel->digest, v->remote->desc);
	snprintf(v->committed, sizeof(v->committed), "%s", sel->digest);
	v->refused[0] = '\0';
	v->state = PV_COMMITTED;
	v->rc = 0;
	v->gen++;
	*committed = 1;
	free(v->missing);
	v->missing = NULL;
	goto out;
incomplete:
	free(v->missing);
	v->missing = miss.s;
	miss.s = NULL;
	rc = -ENODATA;
	goto out;
failed:
	if (rc == -ENODATA)
		rc = -EIO;
	log_err("push of %s:%s to %s failed: %s; the tag is unchanged", v->repo, v->tag,
		v->remote->desc, strerror(-rc));
	fail_version_locked(v, rc);
	*committed = 1; /* an outcome to report */
out:
	free(miss.s);
	free(childm);
	push_desc_list_free(&idx);
	push_desc_list_free(&reach);
	push_desc_list_free(&kids);
	return rc;
}

/* index.json of an immutable repository's existing tag names another
 * image: EEXIST at its close, before any more is uploaded. */
static int immutable_check_locked(pending_version *v, pending_file *index)
{
	struct push_desc_list idx = { 0 };
	const char *pick = NULL;
	char cur[80];
	int imm = 0, rc;

	if (!v->remote->ops->tag_info || !index->bytes)
		return 0;
	if (push_json_descs(index->bytes, index->len, PUSH_INDEX, &idx) < 0)
		return 0; /* the evaluation reports it */
	for (size_t i = 0; i < idx.n; i++)
		if (idx.n == 1 || (idx.v[i].ref_name && !strcmp(idx.v[i].ref_name, v->tag)))
			pick = idx.v[i].digest;
	rc = 0;
	if (pick) {
		net_begin(v);
		rc = v->remote->ops->tag_info(v->remote->ctx, v->tag, &imm, cur, sizeof(cur));
		net_end(v);
	}
	if (rc == 0 && imm && cur[0] && strcmp(cur, pick)) {
		log_err("%s:%s: the tag is immutable and points to %s; index.json names %s; "
			"the old image is kept (later files of this push fail with EEXIST)",
			v->repo, v->tag, cur, pick);
		snprintf(v->refused, sizeof(v->refused), "%s", pick);
		v->refused_writer = index->writer;
		rc = -EEXIST;
	} else {
		v->refused[0] = '\0';
		rc = 0; /* not decisive: the commit's PutImage decides */
	}
	push_desc_list_free(&idx);
	return rc;
}

static void notify(pending_version *v, int did, int rc)
{
	if (did && v->p->o.on_commit)
		v->p->o.on_commit(v->p->o.on_commit_arg, v, rc);
}

/* The end of finish_file: the outcome later flushes return, v->mu let go,
 * the commit hook told when this call ran a commit or failed the version. */
static int finished(pending_file *f, int did, int rc)
{
	pending_version *v = f->v;
	f->finished = 1;
	f->outcome = rc;
	pthread_mutex_unlock(&v->mu);
	notify(v, did, rc);
	return rc;
}

/* Finishes f under its (layout) name, records the result, evaluates.
 * Returns the file's error, else the commit's, else 0. */
static int finish_file(pending_file *f)
{
	pending_version *v = f->v;
	char digest[80];
	const struct upload_result *res = NULL;
	int rc, erc, did = 0;

	pthread_mutex_lock(&v->mu);
	digest_of_name(f->name, digest, sizeof(digest));
	if (f->finished) {
		rc = f->outcome;
		pthread_mutex_unlock(&v->mu);
		return rc;
	}
	pthread_mutex_unlock(&v->mu);
	if (f->by_ref) {
		/* The name must be the digest that was copied. */
		vlock(v);
		rc = f->state == F_FAILED ? f->rc : strcmp(digest, f->digest) ? -EIO : 0;
		if (rc == 0 && f->state == F_WRITING)
			f->state = F_FINAL;
		f->kind = PUSH_BLOB;
		pthread_mutex_unlock(&v->mu);
	}
	rc = f->by_ref ? rc : f->up ? upload_finish(f->up, digest[0] ? digest : NULL, &res) : 0;
	vlock(v);
	v->last_activity = time(NULL);
	if (f->by_ref && rc < 0 && f->state == F_WRITING) {
		f->state = F_FAILED;
		f->rc = rc;
	}
	if (f->state == F_WRITING && f->up && !f->by_ref) {
		if (rc < 0) {
			f->state = F_FAILED;
			f->rc = rc;
		} else {
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
				f->rc = rc = -ENOMEM;
			}
		}
	}
	if (f->state == F_FAILED)
		rc = f->rc;
	if (!f->listed || f->gen != v->gen) {
		/* Replaced, or written after the commit: not part of a pending set. */
		return finished(f, 0, rc);
	}
	if (rc < 0) {
		if (v->state == PV_PENDING) {
			log_err("push of %s:%s aborted: %s failed (%s)", v->repo, v->tag, f->name,
				strerror(-rc));
			fail_version_locked(v, rc);
			did = 1;
		}
		return finished(f, did, rc);
	}
	erc = strcmp(f->name, "index.json") ? 0 : immutable_check_locked(v, f);
	if (erc < 0) {
		fail_version_locked(v, erc);
		did = 1;
	} else {
		erc = evaluate_locked(v, &did);
		if (did && erc == 0 && v->state == PV_COMMITTED)
			v->commit_writer = f->writer;
	}
	/* Incomplete is not an error of this close (sync TAGDIR reports it). */
	return finished(f, did, erc == -ENODATA ? 0 : erc);
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
	file_unref_locked(f);
	pthread_mutex_unlock(&v->mu);
}

pending_file *pending_file_get(pending_version *v, const char *rel)
{
	pending_file *f;
	pthread_mutex_lock(&v->mu);
	f = find_locked(v, rel, NULL);
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

	vlock(v);
	f = find_locked(v, from, NULL);
	if (!f) {
		pthread_mutex_unlock(&v->mu);
		return -ENOENT;
	}
	nn = strdup(to);
	if (!nn) {
		pthread_mutex_unlock(&v->mu);
		return -ENOMEM;
	}
	old = find_locked(v, to, &idx);
	/* As in pending_create: renaming onto a name of the committed version
	 * or onto index.json/oci-layout (rsync's .index.json.XXXXXX) starts a
	 * new push over the committed tag; files written since the commit
	 * (the renamed one among them) are kept. */
	if (v->state == PV_COMMITTED &&
	    (old || !strcmp(to, "index.json") || !strcmp(to, "oci-layout"))) {
		new_version_locked(v, 1);
		old = find_locked(v, to, &idx);
	}
	if (old && old != f)
		unlist_locked(v, idx); /* rename over an existing name replaces it */
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
	vlock(v);
	if (find_locked(v, rel, &idx)) {
		unlist_locked(v, idx);
		rc = 0;
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int pending_ref(pending_file *f, const char *digest, uint64_t size, pending_copy_cb copy,
		void *arg)
{
	pending_version *v = f->v;
	int rc;

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
	vlock(v);
	if (rc < 0) {
		if (f->state == F_WRITING) {
			f->state = F_FAILED;
			f->rc = rc;
		}
	} else {
		f->by_ref = 1;
		snprintf(f->digest, sizeof(f->digest), "%s", digest);
		f->size = size;
		if (f->up)
			upload_abort(f->up); /* nothing was written through it */
	}
	v->last_activity = time(NULL);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int pending_stat_file(pending_version *v, const char *rel, struct pending_stat *st)
{
	pending_file *f;
	int rc = -ENOENT;

	pthread_mutex_lock(&v->mu);
	f = find_locked(v, rel, NULL);
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

int pending_status(pending_version *v)
{
	int rc, did = 0;

	vlock(v);
	if (v->state == PV_EMPTY && v->dropped) {
		/* Not "nothing to do": the writer's files were thrown away. */
		log_err("%s:%s: the unfinished push was dropped; nothing was pushed and the tag "
			"is unchanged: write the image again", v->repo, v->tag);
		pthread_mutex_unlock(&v->mu);
		return -ENODATA;
	}
	rc = evaluate_locked(v, &did);
	if (rc == -ENODATA && v->refused[0]) {
		/* The latest outcome is the refusal; what came after it is moot. */
		log_err("%s:%s is immutable: the push of %s was refused", v->repo, v->tag,
			v->refused);
		rc = -EEXIST;
	} else if (rc == -ENODATA) {
		log_err("%s:%s is not complete; missing: %s", v->repo, v->tag,
			v->missing ? v->missing : "?");
	}
	pthread_mutex_unlock(&v->mu);
	notify(v, did, rc);
	return rc;
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
	vlock(v);
	if (v->state == PV_PENDING || v->state == PV_FAILED) {
		log_info("push of %s:%s abandoned (its directory was removed)", v->repo, v->tag);
		new_version_locked(v, 0);
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
			new_version_locked(v, 0);
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
					unlist_locked(v, i);
			if (!v->nfiles) {
				free(v->files);
				v->files = NULL;
			}
			avail_clear(v);
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

static const char *state_name(enum pending_state s)
{
	switch (s) {
	case PV_PENDING: return "pending";
	case PV_COMMITTED: return "committed";
	case PV_FAILED: return "failed";
	default: return "none";
	}
}

static json_t *version_json_locked(pending_version *v)
{
	json_t *o = json_object(), *files = json_array();

	json_object_set_new(o, "registry", json_string(v->registry ? v->registry : ""));
	json_object_set_new(o, "region", json_string(v->region));
	json_object_set_new(o, "repository", json_string(v->repo));
	json_object_set_new(o, "tag", json_string(v->tag));
	json_object_set_new(o, "state", json_string(state_name(v->state)));
	if (v->state == PV_FAILED)
		json_object_set_new(o, "error", json_string(strerror(-v->rc)));
	if (v->committed[0])
		json_object_set_new(o, "digest", json_string(v->committed));
	if (v->missing)
		json_object_set_new(o, "missing", json_string(v->missing));
	for (size_t i = 0; i < v->nfiles; i++) {
		pending_file *f = v->files[i];
		json_t *fo = json_object();
		uint64_t w = f->size, a = f->size;
		if (f->state == F_WRITING && f->up)
			upload_progress(f->up, &w, &a);
		json_object_set_new(fo, "name", json_string(f->name));
		json_object_set_new(fo, "state", json_string(f->state == F_FINAL ? "final"
							      : f->state == F_FAILED ? "failed"
										     : "writing"));
		json_object_set_new(fo, "bytes", json_integer((json_int_t)w));
		json_object_set_new(fo, "uploaded", json_integer((json_int_t)a));
		json_array_append_new(files, fo);
	}
	json_object_set_new(o, "files", files);
	return o;
}

char *pending_push_state(pending_version *v)
{
	char *s;
	json_t *o;

	pthread_mutex_lock(&v->mu);
	o = version_json_locked(v);
	pthread_mutex_unlock(&v->mu);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *pending_summary_json(pending *p)
{
	json_t *arr = json_array();
	char *s;

	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next) {
		pthread_mutex_lock(&v->mu);
		/* In progress or failed; committed pushes are done. */
		if (v->state == PV_PENDING || v->state == PV_FAILED)
			json_array_append_new(arr, version_json_locked(v));
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&p->mu);
	s = json_dumps(arr, JSON_INDENT(2));
	json_decref(arr);
	return s;
}
