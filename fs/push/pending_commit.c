/* Evaluation of a pending version and its commit. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/pending_i.h"
#include "net/log.h"

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

static int file_final(pending_file *f)
{
	return f && f->state == F_FINAL;
}

/* A final blob whose upload failed after its close (the worker sends the
 * last parts and completes alone) is failed now. */
static void upload_failed_locked(pending_file *f)
{
	int rc = 0;

	if (f->state != F_FINAL || !f->up || f->by_ref || upload_poll(f->up, &rc) || rc >= 0)
		return;
	f->state = F_FAILED;
	f->rc = rc;
}

/* Before PutImage: the uploads of reached blobs have finished (they go on
 * after their close so the writer can write the next file meanwhile). The
 * files stay listed: changes wait while busy. */
static int wait_uploads_locked(pending_version *v, pending_file **wait, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		pending_file *f = wait[i];
		pend_net_begin(v);
		rc = upload_wait(f->up);
		pend_net_end(v);
		if (rc < 0) {
			log_err("push of %s:%s: the upload of %s failed: %s", v->repo, v->tag,
				f->name, strerror(-rc));
			f->state = F_FAILED;
			f->rc = rc;
		}
	}
	return rc;
}

/* Checks reached blobs; the ones neither written nor known present are
 * asked in one BatchCheckLayerAvailability. */
static int check_blobs_locked(pending_version *v, struct push_desc_list *l, struct strbuf *miss,
			      pending_file **wait, size_t *nwait)
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
		pending_file *f = pend_find_digest_locked(v, l->v[i].digest);
		if (f) {
			upload_failed_locked(f);
			if (f->state == F_FAILED) {
				rc = f->rc ? f->rc : -EIO;
				goto out;
			}
			if (f->state != F_FINAL)
				sb_add(miss, l->v[i].digest);
			else if (f->up && !f->by_ref)
				wait[(*nwait)++] = f;
			continue;
		}
		f = pend_drain_find_locked(v, l->v[i].digest);
		if (f && f->state == F_FINAL) {
			wait[(*nwait)++] = f; /* closed in an earlier version, still sending */
			continue;
		}
		if (!avail_has(v, l->v[i].digest))
			ask[nask++] = l->v[i].digest;
		else
			v->via_repo = 1;
	}
	if (nask) {
		pend_net_begin(v);
		rc = v->remote->ops->check_layers(v->remote->ctx, ask, nask, av);
		pend_net_end(v);
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

/* PutImage without mu: m stays listed (no change runs meanwhile), and a
 * final file's bytes never change. */
static int put_locked(pending_version *v, const char *tag, pending_file *m)
{
	int rc;
	pend_net_begin(v);
	rc = v->remote->ops->put_image(v->remote->ctx, tag, m->bytes, m->len, m->media_type,
				       m->digest);
	pend_net_end(v);
	if (rc == 0 && v->p->o.on_put)
		v->p->o.on_put(v->p->o.on_put_arg, m->digest, m->media_type, m->bytes, m->len);
	return rc;
}

/* One evaluation: selection, child manifests, blob presence, commit. A step
 * returns 0 (go on), EVAL_INCOMPLETE (what is missing is in miss) or the
 * errno that fails the version. */
#define EVAL_INCOMPLETE 1

struct eval {
	struct strbuf miss;
	struct push_desc_list idx;   /* index.json's descriptors */
	struct push_desc_list reach; /* what the selected manifest or index names */
	struct push_desc_list kids;  /* blobs of the child manifests written here */
	pending_file *sel;           /* the selected manifest or index */
	pending_file **childm;       /* child manifests written here, PutImage first */
	size_t nchild;
	pending_file **wait;         /* reached blobs written here: their uploads */
	size_t nwait;
};

static void eval_free(struct eval *e)
{
	free(e->miss.s);
	free(e->childm);
	free(e->wait);
	push_desc_list_free(&e->idx);
	push_desc_list_free(&e->reach);
	push_desc_list_free(&e->kids);
}

/* Several candidates: the one whose ref.name is the tag, else -EINVAL with
 * the refs in the log. */
static int pick_by_ref(pending_version *v, struct eval *e, size_t *pick)
{
	struct strbuf refs = { 0 };
	size_t nref = 0;
	int rc = 0;

	for (size_t i = 0; i < e->idx.n; i++) {
		const char *ref = e->idx.v[i].ref_name;
		if (!pend_find_digest_locked(v, e->idx.v[i].digest))
			continue;
		sb_add(&refs, ref ? ref : "(no ref.name)");
		if (ref && !strcmp(ref, v->tag))
			nref++, *pick = i;
	}
	if (nref != 1) {
		log_err("%s:%s: index.json names several images written here (refs: %s) "
			"and %s ref.name \"%s\"", v->repo, v->tag, refs.s ? refs.s : "",
			nref ? "more than one has" : "none has", v->tag);
		rc = -EINVAL;
	}
	free(refs.s);
	return rc;
}

/* Candidates: descriptors of index.json whose manifest was written in this
 * version. One is the pick; several go by ref.name; none is incomplete. */
static int pick_candidate(pending_version *v, struct eval *e, size_t *pick)
{
	size_t ncand = 0;

	for (size_t i = 0; i < e->idx.n; i++)
		if (pend_find_digest_locked(v, e->idx.v[i].digest))
			ncand++, *pick = i;
	if (ncand == 0) {
		for (size_t i = 0; i < e->idx.n; i++)
			sb_add(&e->miss, e->idx.v[i].digest);
		if (e->idx.n == 0)
			sb_add(&e->miss, "a manifest in index.json");
		return EVAL_INCOMPLETE;
	}
	return ncand > 1 ? pick_by_ref(v, e, pick) : 0;
}

/* The selected file must be a final manifest or index; its descriptors go
 * to e->reach. */
static int selected_ready(pending_version *v, struct eval *e)
{
	pending_file *sel = e->sel;
	int rc;

	if (sel->state == F_FAILED)
		return sel->rc ? sel->rc : -EIO;
	if (sel->state != F_FINAL) {
		sb_add(&e->miss, sel->digest[0] ? sel->digest : sel->name);
		return EVAL_INCOMPLETE;
	}
	if (sel->kind == PUSH_BLOB) {
		log_err("%s:%s: %s named by index.json is not a manifest or index", v->repo,
			v->tag, sel->digest);
		return -EINVAL;
	}
	rc = push_json_descs(sel->bytes, sel->len, sel->kind, &e->reach);
	if (rc < 0)
		log_err("%s:%s: manifest %s has malformed descriptors", v->repo, v->tag, sel->digest);
	return rc;
}

/* Selection: oci-layout and index.json final, and the manifest or index
 * index.json names among those written here. */
static int select_locked(pending_version *v, struct eval *e)
{
	pending_file *layout = pend_find_locked(v, "oci-layout", NULL);
	pending_file *index = pend_find_locked(v, "index.json", NULL);
	size_t pick = 0;
	int rc;

	if (!file_final(layout))
		sb_add(&e->miss, "oci-layout");
	if (!file_final(index)) {
		sb_add(&e->miss, "index.json");
		return EVAL_INCOMPLETE;
	}
	rc = push_json_descs(index->bytes, index->len, PUSH_INDEX, &e->idx);
	if (rc < 0) {
		log_err("%s:%s: index.json is not a valid OCI index", v->repo, v->tag);
		return rc;
	}
	rc = pick_candidate(v, e, &pick);
	if (rc != 0)
		return rc;
	e->sel = pend_find_digest_locked(v, e->idx.v[pick].digest);
	return selected_ready(v, e);
}

/* Moves every descriptor of from to the end of to. */
static int desc_list_move(struct push_desc_list *to, struct push_desc_list *from)
{
	for (size_t j = 0; j < from->n; j++) {
		struct push_desc *nv = realloc(to->v, (to->n + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		to->v = nv;
		to->v[to->n++] = from->v[j];
		memset(&from->v[j], 0, sizeof(from->v[j]));
	}
	return 0;
}

/* A child not written here must be in the repository already. */
static int child_in_repo_locked(pending_version *v, struct eval *e, const char *digest)
{
	int has;

	pend_net_begin(v);
	has = v->remote->ops->image_exists(v->remote->ctx, digest);
	pend_net_end(v);
	if (has < 0)
		return has;
	if (!has)
		sb_add(&e->miss, digest);
	v->via_repo = 1;
	return 0;
}

/* One child of the selected index: written here (then its blobs count, in
 * e->kids) or in ECR. Missing children are named in e->miss. */
static int child_locked(pending_version *v, struct eval *e, const char *digest)
{
	pending_file *c = pend_find_digest_locked(v, digest);
	struct push_desc_list cl = { 0 };
	int rc;

	if (!c)
		return child_in_repo_locked(v, e, digest);
	if (c->state != F_FINAL || c->kind != PUSH_MANIFEST) {
		if (c->state == F_FINAL)
			log_err("%s:%s: %s in the index is not an image manifest", v->repo,
				v->tag, c->digest);
		if (c->state == F_FAILED || c->state == F_FINAL)
			return c->rc ? c->rc : -EINVAL;
		sb_add(&e->miss, digest);
		return 0;
	}
	e->childm[e->nchild++] = c;
	rc = push_json_descs(c->bytes, c->len, PUSH_MANIFEST, &cl);
	if (rc == 0)
		rc = desc_list_move(&e->kids, &cl);
	push_desc_list_free(&cl);
	return rc;
}

/* Child manifests of a selected index. */
static int children_locked(pending_version *v, struct eval *e)
{
	int rc = 0;

	e->childm = calloc(e->reach.n + 1, sizeof(*e->childm));
	if (!e->childm)
		return -ENOMEM;
	for (size_t i = 0; i < e->reach.n && rc == 0; i++)
		rc = child_locked(v, e, e->reach.v[i].digest);
	return rc;
}

/* Complete: children by digest, then the top one with the tag. */
static int commit_locked(pending_version *v, struct eval *e)
{
	int rc = 0;

	for (size_t i = 0; i < e->nchild && rc == 0; i++)
		rc = put_locked(v, NULL, e->childm[i]);
	if (rc == 0)
		rc = put_locked(v, v->tag, e->sel);
	if (rc < 0)
		return rc;
	log_info("pushed %s:%s (%s) to %s", v->repo, v->tag, e->sel->digest, v->remote->desc);
	snprintf(v->committed, sizeof(v->committed), "%s", e->sel->digest);
	v->refused[0] = '\0';
	v->state = PV_COMMITTED;
	v->rc = 0;
	v->gen++;
	free(v->missing);
	v->missing = NULL;
	return 0;
}

/* A failed step: the version is FAILED with rc (-ENODATA becomes -EIO, as
 * that errno means "incomplete"). */
static int failed_locked(pending_version *v, int rc)
{
	if (rc == -ENODATA)
		rc = -EIO;
	log_err("push of %s:%s to %s failed: %s; the tag is unchanged", v->repo, v->tag,
		v->remote->desc, strerror(-rc));
	pend_fail_version_locked(v, rc);
	return rc;
}

/* Evaluates the pending version; commits when complete. Returns 0
 * (committed or nothing to do), -ENODATA (incomplete, v->missing set), or
 * the errno of a failure (the version is then FAILED). *committed is set
 * when this call ran the commit or failed the version. */
int pend_evaluate_locked(pending_version *v, int *committed)
{
	struct eval e = { 0 };
	int rc;

	*committed = 0;
	if (v->state != PV_PENDING)
		return v->state == PV_FAILED ? v->rc : 0;
	v->via_repo = 0;
	rc = select_locked(v, &e);
	if (rc == 0 && e.sel->kind == PUSH_INDEX)
		rc = children_locked(v, &e);
	if (rc == 0) {
		struct push_desc_list *l = e.sel->kind == PUSH_INDEX ? &e.kids : &e.reach;
		e.wait = calloc(l->n + 1, sizeof(*e.wait));
		rc = e.wait ? check_blobs_locked(v, l, &e.miss, e.wait, &e.nwait) : -ENOMEM;
	}
	if (rc == 0 && e.miss.len)
		rc = EVAL_INCOMPLETE;
	if (rc == 0)
		rc = wait_uploads_locked(v, e.wait, e.nwait);
	if (rc == 0)
		rc = commit_locked(v, &e);
	if (rc == EVAL_INCOMPLETE) {
		free(v->missing);
		v->missing = e.miss.s;
		e.miss.s = NULL;
		rc = -ENODATA;
	} else {
		if (rc < 0)
			rc = failed_locked(v, rc);
		*committed = 1; /* an outcome to report */
	}
	eval_free(&e);
	return rc;
}

/* index.json of an immutable repository's existing tag names another
 * image: EEXIST at its close, before any more is uploaded. */
int pend_immutable_check_locked(pending_version *v, pending_file *index)
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
		pend_net_begin(v);
		rc = v->remote->ops->tag_info(v->remote->ctx, v->tag, &imm, cur, sizeof(cur));
		pend_net_end(v);
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

void pend_notify(pending_version *v, int did, int rc)
{
	if (did && v->p->o.on_commit)
		v->p->o.on_commit(v->p->o.on_commit_arg, v, rc);
}

int pending_status(pending_version *v)
{
	int rc, did = 0;

	pend_vlock(v);
	if (v->state == PV_EMPTY && v->dropped) {
		/* Not "nothing to do": the writer's files were thrown away. */
		log_err("%s:%s: the unfinished push was dropped; nothing was pushed and the tag "
			"is unchanged: write the image again", v->repo, v->tag);
		pthread_mutex_unlock(&v->mu);
		return -ENODATA;
	}
	rc = pend_evaluate_locked(v, &did);
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
	pend_notify(v, did, rc);
	return rc;
}
