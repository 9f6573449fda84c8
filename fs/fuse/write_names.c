/* The FUSE handlers that change names: RENAME (temporary names, retag,
 * promotion), UNLINK and RMDIR (hide, untag, delete image or repository),
 * COPY_FILE_RANGE by reference. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fuse/notify.h"
#include "fs/fuse/push_nodes_i.h"
#include "fs/fuse/views_ecr.h"
#include "fs/push/push_copy.h"
#include "fs/tree/catalog.h"
#include "fs/tree/hidden.h"
#include "fs/tree/image.h"
#include "fs/tree/names.h"
#include "fs/tree/tree.h"
#include "net/log.h"

/* ---- RENAME ---- */

/* mv TAG NEW: PutImage with NEW, then untag TAG. Into another repository,
 * region or account: promotion by reference (blobs the destination lacks
 * are streamed from the source by the daemon), then untag. Not atomic. */
/* Whether repo:tag exists in ECR (1), not (0), or an errno; asked of ECR,
 * not the listing cache: the kernel's negative entry for the name may be
 * older than the tag. */
static int tag_exists(struct fs_ctx *c, const char *registry, const char *region,
		      const char *repo, const char *tag)
{
	struct ecr_where w = { registry, region, repo };
	struct ecr_image_id id = { NULL, tag };
	struct ecr_image_list il = { 0 };
	int rc = ecr_describe_images(fs_ecr_for(c, registry), &w, &id, 1, &il, NULL);
	if (rc == -ENOENT)
		return 0;
	if (rc == 0)
		rc = il.n > 0;
	ecr_image_list_free(&il);
	return rc;
}

/* The repository a rename into ndir lands in (malloc'd), or NULL with
 * *rc: ndir must be a namespace or a pending directory. */
static char *target_repo(struct fs_node *ndir, int *rc)
{
	struct wnode *w = wn(ndir);
	char *repo = NULL;
	*rc = -EPERM;
	if (ndir->kind == FS_N_NAMESPACE) {
		repo = strdup(ndir->repo);
	} else if (w) {
		pthread_mutex_lock(&wmu);
		repo = w->kind == W_DIR && w->path ? strdup(w->path) : NULL;
		pthread_mutex_unlock(&wmu);
		if (!repo)
			return NULL;
	} else {
		return NULL;
	}
	*rc = repo ? 0 : -ENOMEM;
	return repo;
}

/* After a retag into the pending directory ndir: it exists in ECR now. */
static void retag_done(struct fs_node *src, struct fs_node *ndir, const char *newname)
{
	fs_notify_changed(src->parent, src->name);
	fs_notify_changed(ndir, newname);
	if (wn(ndir) && count_pending(ndir) == 0) {
		struct fs_node *up = ndir->parent;
		fs_node_remove_pending(ndir);
		fs_notify_changed(up, ndir->name);
	}
}

static int retag(struct fs_node *src, struct fs_node *ndir, const char *newname,
		 int noreplace)
{
	struct fs_ctx *c = pside_ctx;
	struct ecr_where sw = { src->registry, src->region, src->repo };
	struct ecr_image_id id = { NULL, src->tag };
	struct fs_image *img = NULL;
	struct push_remote *dst;
	int rc;
	char *repo = target_repo(ndir, &rc);

	if (!repo)
		return rc;
	rc = -EINVAL;
	if (!fs_name_is_tag(newname) || !fs_name_is_repo(repo)) {
		log_err("mv to %s/%s: not a repository and tag name", repo, newname);
		goto out;
	}
	if (noreplace) {
		/* mv -n: an existing tag (or one being pushed here) stays. */
		struct fs_node *t = fs_node_child(ndir, newname);
		rc = t && fs_node_is_pending(t) ? 1 : tag_exists(c, ndir->registry, ndir->region, repo,
						       newname);
		fs_node_put(t);
		if (rc != 0) {
			if (rc > 0)
				rc = -EEXIST;
			goto out;
		}
	}
	rc = -ENOMEM;
	dst = remote_for(ndir->registry, ndir->region, repo);
	if (!dst)
		goto out;
	rc = fs_cat_image(c, src->registry, src->region, src->repo, src->digest, src->tag,
			  src->immutable, src->mtime, &img);
	if (rc < 0)
		goto out;
	if (strcmp(ndir->registry, src->registry) || strcmp(ndir->region, src->region) ||
	    strcmp(repo, src->repo)) {
		rc = c->o.no_create_repos ? 0 : dst->ops->create_repository(dst->ctx);
		if (rc < 0)
			goto out;
	}
	rc = push_copy_image(fs_ecr_for(c, src->registry), img, dst, newname);
	if (rc < 0)
		goto out;
	log_info("%s:%s is now also %s:%s (%s)", src->repo, src->tag, repo, newname, src->digest);
	rc = ecr_batch_delete_image(fs_ecr_for(c, src->registry), &sw, &id, 1, NULL);
	if (rc < 0)
		goto out;
	retag_done(src, ndir, newname);
out:
	if (img)
		fs_image_put(img);
	free(repo);
	return rc;
}

/* Renames the pending file src of dir/name to ndir/newname within one
 * pending tag (a writer's temporary name onto its layout name). */
static int rename_file(struct fs_node *dir, struct fs_node *src, const char *name,
		       struct fs_node *ndir, const char *newname)
{
	struct where a, b;
	char *from = NULL, *to = NULL;
	int rc = where_of(dir, &a);
	if (rc == 0)
		rc = where_of(ndir, &b);
	if (rc < 0)
		return rc;
	if (!a.v || a.v != b.v || !strcmp(b.prefix, "blobs") || !src ||
	    src->kind != FS_N_PENDING_FILE)
		return -EPERM; /* only files within one pending tag */
	from = rel_join(a.prefix, name);
	to = rel_join(b.prefix, newname);
	rc = -ENOMEM;
	if (!from || !to)
		goto out;
	/* Finishes the file when newname is a layout name: its errno (a
	 * digest mismatch, the commit's) is this call's. */
	rc = pending_rename(a.v, from, to);
	if (rc < 0 && rc != -EIO && rc != -EEXIST && rc != -EINVAL && rc != -EACCES &&
	    rc != -ENOENT)
		goto out;
	/* The node follows the file either way (the rename happened locally). */
	struct wnode *w = src->push;
	pthread_mutex_lock(&wmu);
	free(w->rel);
	w->rel = to;
	to = NULL;
	pthread_mutex_unlock(&wmu);
	fs_node_remove_pending(src);
	struct fs_node *n = add_pending(ndir, newname, FS_N_PENDING_FILE, w);
	if (!n && rc == 0)
		rc = -errno;
	fs_node_put(n);
out:
	free(from);
	free(to);
	return rc;
}

void wop_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		const char *newname, unsigned int flags)
{
	struct fs_node *dir = fs_node_get(parent), *ndir = fs_node_get(newparent);
	struct fs_node *src = NULL;
	int rc;

	if (!dir || !ndir)
		rc = -ENOENT;
	else if (flags & ~(unsigned)RENAME_NOREPLACE)
		rc = -EINVAL;
	else if ((src = fs_node_child(dir, name)) && src->kind == FS_N_IMAGE && src->tag)
		rc = retag(src, ndir, newname, !!(flags & RENAME_NOREPLACE));
	else
		rc = rename_file(dir, src, name, ndir, newname);
	fuse_reply_err(req, -rc);
	fs_node_put(src);
	fs_node_put(dir);
	fs_node_put(ndir);
}

/* ---- UNLINK, RMDIR ---- */

/* Hidden names come back after the listing TTL if the tag stays. */
static time_t hide_until(void)
{
	int ttl = pside_ctx->o.tag_ttl;
	return time(NULL) + (ttl > 0 ? ttl : 1);
}

/* UNLINK and RMDIR: dir/name resolved to a node, then fn's errno. */
static void name_op(fuse_req_t req, fuse_ino_t parent, const char *name,
		    int (*fn)(struct fs_node *dir, struct fs_node *n, const char *name))
{
	struct fs_node *dir = fs_node_get(parent);
	struct fs_node *n = dir ? fs_node_child(dir, name) : NULL;
	int rc = n ? fn(dir, n, name) : -ENOENT;

	fuse_reply_err(req, -rc);
	fs_node_put(n);
	fs_node_put(dir);
}

static int unlink_node(struct fs_node *dir, struct fs_node *n, const char *name)
{
	if (n->kind == FS_N_PENDING_FILE) {
		struct wnode *w = n->push;
		pending_version *v;
		char *rel;
		pthread_mutex_lock(&wmu);
		v = w->v;
		rel = w->rel ? strdup(w->rel) : NULL;
		pthread_mutex_unlock(&wmu);
		if (v && rel)
			pending_unlink(v, rel);
		free(rel);
		fs_node_remove_pending(n);
		return 0;
	}
	if (n->kind == FS_N_IMG_FILE) {
		/* Inside a committed image nothing is sent, the name is only
		 * hidden here: `rm -r TAG` ends with the rmdir of the tag, which
		 * untags. */
		return push_hide_add(dir, name, hide_until());
	}
	return -EPERM;
}

void wop_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (vf_remove(req, parent, name, 0))
		return; /* in REPO@settings/, TAG@referrers/ */
	name_op(req, parent, name, unlink_node);
}

/* rmdir of blobs/ or blobs/sha256/ of a committed image (rm -r TAG):
 * hidden like the files, once everything in it is. */
static int rmdir_img_dir(struct fs_node *dir, struct fs_node *n)
{
	time_t now = time(NULL);

	if (n->blob_idx == FS_IDX_BLOBS) {
		if (!push_hide_is(n, "sha256", now))
			return -ENOTEMPTY;
	} else {
		for (size_t i = 0; n->img && i < n->img->nblobs; i++)
			if (!push_hide_is(n, n->img->blobs[i].hex, now))
				return -ENOTEMPTY;
	}
	return push_hide_add(dir, n->name, hide_until());
}

static int rmdir_image(struct fs_node *n)
{
	struct fs_ctx *c = pside_ctx;
	struct ecr_where w = { n->registry, n->region, n->repo };
	struct ecr_image_id id = { NULL, NULL };
	int rc;

	if (n->tag)
		id.tag = n->tag; /* untag; ECR deletes the image with its last tag */
	else
		id.digest = n->digest; /* the image and all its tags */
	rc = ecr_batch_delete_image(fs_ecr_for(c, n->registry), &w, &id, 1, NULL);
	if (rc == 0) {
		push_hide_forget(n->registry, n->region, n->repo, n->name);
		if (n->tag) {
			pending_version *v = pending_version_find(P, n->registry, n->region,
								  n->repo, n->tag);
			if (v)
				pending_status(v); /* nothing to wait for; keeps state fresh */
		}
		fs_notify_changed(n->parent, n->name);
	}
	return rc;
}

static int rmdir_repo(struct fs_node *n)
{
	struct fs_ctx *c = pside_ctx;
	struct ecr_where w = { n->registry, n->region, n->repo };
	int rc = ecr_delete_repository(fs_ecr_for(c, n->registry), &w, 0, NULL);
	if (rc == -ENOTEMPTY)
		log_err("rmdir %s: the repository still has images; remove its tags first "
			"(rm -r TAG)", n->repo);
	if (rc == 0) {
		pending_repo_deleted(P, n->registry, n->region, n->repo);
		fs_notify_changed(n->parent, n->name);
	}
	return rc;
}

/* rmdir of a tag directory this mount created and committed: untag. */
static int rmdir_committed(struct fs_node *n, pending_version *v)
{
	struct fs_ctx *c = pside_ctx;
	char repo[300];
	const char *tag;
	struct wnode *w = n->push;
	struct ecr_image_id id = { NULL, NULL };
	int rc;

	pthread_mutex_lock(&wmu);
	rc = split_tag_path(w->path, repo, sizeof(repo), &tag);
	pthread_mutex_unlock(&wmu);
	if (rc < 0)
		return rc;
	struct ecr_where where = { n->registry, n->region, repo };
	id.tag = tag;
	rc = ecr_batch_delete_image(fs_ecr_for(c, n->registry), &where, &id, 1, NULL);
	if (rc == 0)
		settle(v);
	return rc;
}

static int rmdir_node(struct fs_node *dir, struct fs_node *n, const char *name)
{
	pending_version *v;

	switch (n->kind) {
	case FS_N_PENDING_DIR:
		v = version_of_node(n);
		if (v && pending_version_state(v) == PV_COMMITTED)
			return rmdir_committed(n, v); /* a tag pushed here, not settled yet */
		if (count_pending(n) > 0)
			return -ENOTEMPTY;
		if (v)
			pending_drop(v); /* rm -r of an unfinished push */
		fs_node_remove_pending(n);
		return 0;
	case FS_N_IMG_DIR:
		return rmdir_img_dir(dir, n); /* rm -r TAG: hidden here, the tag's rmdir untags */
	case FS_N_IMAGE:
		return rmdir_image(n);
	case FS_N_NAMESPACE:
		return rmdir_repo(n);
	default:
		return -EPERM;
	}
}

void wop_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (vf_remove(req, parent, name, 1))
		return; /* in REPO@settings/, TAG@referrers/ */
	name_op(req, parent, name, rmdir_node);
}

/* ---- COPY_FILE_RANGE ---- */

struct cfr_src {
	struct fs_node *n; /* the source blob's IMG_FILE */
	const struct fs_blob *b;
};

static int cfr_copy(void *arg, struct push_remote *dst)
{
	struct cfr_src *s = arg;
	struct ecr_where sw = { s->n->img->registry, s->n->img->region, s->n->img->repo };
	return push_copy_blob(fs_ecr_for(pside_ctx, sw.registry_id), &sw, s->b->digest,
			      s->b->size, dst, NULL);
}

/* A whole blob from offset 0 into the file named by its digest is taken by
 * reference (no read, no hash here; an upload only when the destination
 * lacks it). Anything else is EOPNOTSUPP so the kernel and cp fall back to
 * read/write; never ENOSYS, which would turn the call off for the mount. */
void wop_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fs_fh *h = fi_out ? fh_get(req_ctx(req)->fhs, fi_out->fh) : NULL;
	struct fs_node *in = fs_node_get(ino_in), *out = fs_node_get(ino_out);
	struct wnode *w = out ? wn(out) : NULL;
	struct cfr_src s = { in, NULL };
	char want[96] = "";
	int rc = -EOPNOTSUPP;
	ssize_t done = 0;

	if (!h || h->kind != FH_WRITER || !in || in->kind != FS_N_IMG_FILE || in->blob_idx < 0 || flags)
		goto out;
	s.b = &in->img->blobs[in->blob_idx];
	if (w) {
		pthread_mutex_lock(&wmu);
		if (w->rel)
			snprintf(want, sizeof(want), "%s", w->rel);
		pthread_mutex_unlock(&wmu);
	} else if (out && out->kind == FS_N_IMG_FILE && out->blob_idx >= 0) {
		snprintf(want, sizeof(want), "blobs/sha256/%s", out->img->blobs[out->blob_idx].hex);
	}
	if (strncmp(want, "blobs/sha256/", 13) || strcmp(want + 13, s.b->hex))
		goto out;
	if ((uint64_t)off_in >= s.b->size && (uint64_t)off_out == pending_file_size(h->pf)) {
		rc = 0; /* past the end: cp's last call */
		goto out;
	}
	if (off_in != 0 || off_out != 0 || len < s.b->size)
		goto out;
	if (s.b->data) {
		/* Manifests are in memory: written as bytes (they go to PutImage). */
		rc = pending_write(h->pf, s.b->data, s.b->size, 0);
	} else {
		rc = pending_ref(h->pf, s.b->digest, s.b->size, cfr_copy, &s);
	}
	if (rc == 0)
		done = (ssize_t)s.b->size;
out:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, (size_t)done);
	fs_node_put(in);
	fs_node_put(out);
	fh_put(h);
}
