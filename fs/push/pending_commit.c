/* Evaluation of a pending version and its commit (moved from pending.c). */
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
		pending_file *f = pend_find_digest_locked(v, l->v[i].digest);
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
	return rc;
}

/* Evaluates the pending version; commits when complete. Returns 0
 * (committed or nothing to do), -ENODATA (incomplete, v->missing set), or
 * the errno of a failure (the version is then FAILED). *committed is set
 * when this call ran the commit. */
int pend_evaluate_locked(pending_version *v, int *committed)
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
	layout = pend_find_locked(v, "oci-layout", NULL);
	index = pend_find_locked(v, "index.json", NULL);
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
			if (pend_find_digest_locked(v, idx.v[i].digest))
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
				if (!pend_find_digest_locked(v, idx.v[i].digest))
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
		sel = pend_find_digest_locked(v, idx.v[pick].digest);
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
			pending_file *c = pend_find_digest_locked(v, reach.v[i].digest);
			struct push_desc_list cl = { 0 };
			if (!c) {
				int has;
				pend_net_begin(v);
				has = v->remote->ops->image_exists(v->remote->ctx, reach.v[i].digest);
				pend_net_end(v);
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
	pend_fail_version_locked(v, rc);
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
