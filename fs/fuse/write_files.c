/* The FUSE handlers that write files of a push: MKDIR of pending
 * directories, CREATE and OPEN for writing of layout files, WRITE,
 * FSYNCDIR (`sync TAGDIR`), SETATTR, SETXATTR. */
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

/* The record of a new directory dir/name: a namespace or tag to be, or
 * blobs/ and blobs/sha256/ of a tag; EINVAL or EPERM for anything else. */
static int mkdir_record(struct fs_node *dir, const struct where *wh, const char *name,
			struct wnode **out)
{
	struct wnode *w = NULL;
	*out = NULL;
	if (dir->kind == FS_N_REGION || dir->kind == FS_N_NAMESPACE || wh->could_be_tag) {
		/* A namespace or a tag to be: a repository component or a tag name. */
		const char *prefix = dir->kind == FS_N_REGION ? ""
				     : dir->kind == FS_N_NAMESPACE ? dir->repo : wh->dirw->path;
		if (!fs_name_is_repo_component(name) && !fs_name_is_tag(name)) {
			log_err("mkdir %s: not a valid repository or tag name", name);
			return -EINVAL;
		}
		if (!(w = wnode_new(W_DIR)))
			return -ENOMEM;
		*out = w;
		if (asprintf(&w->path, "%s%s%s", prefix, *prefix ? "/" : "", name) < 0) {
			w->path = NULL;
			return -ENOMEM;
		}
		return 0;
	}
	if (wh->v && ((!*wh->prefix && !strcmp(name, "blobs")) ||
		      (!strcmp(wh->prefix, "blobs") && !strcmp(name, "sha256")))) {
		if (!(w = wnode_new(*wh->prefix ? W_SHA256 : W_BLOBS)))
			return -ENOMEM;
		*out = w;
		w->v = wh->v;
		return pending_begin(wh->v);
	}
	if (wh->v || wh->dirw)
		log_err("mkdir %s: a tag directory holds only oci-layout, index.json and "
			"blobs/sha256/; to push a layout use cp -rT LAYOUT TAGDIR", name);
	return -EPERM;
}

void wop_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs_node *dir, *n = NULL;
	struct wnode *w = NULL;
	struct where wh;
	int rc = dir_where(parent, &dir, &wh);

	if (rc < 0 || (rc = mkdir_record(dir, &wh, name, &w)) < 0)
		goto out;
	if (wh.could_be_tag && !strcmp(name, "blobs")) {
		/* blobs/ in a W_DIR: the directory becomes a tag. */
		rc = become_tag(dir, wh.dirw);
		if (rc < 0)
			goto out;
		pthread_mutex_lock(&wmu);
		w->kind = W_BLOBS;
		w->v = wh.dirw->v;
		pthread_mutex_unlock(&wmu);
	}
	n = add_pending(dir, name, FS_N_PENDING_DIR, w);
	rc = n ? 0 : -errno;
	if (rc)
		goto out;
	reply_new_entry(req, n, NULL);
	fs_node_put(n);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	wnode_put(w); /* the node holds its own */
	fs_node_put(dir);
}

/* ---- CREATE, OPEN for writing ---- */

/* The process behind a request (its thread group: skopeo writes from
 * several threads), 0 when unknown. Tells one writer's later files apart
 * from another push's (pending_create_as). */
static long writer_of(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char path[64], line[128];
	long tgid = 0;
	FILE *f;

	if (!ctx || ctx->pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
	f = fopen(path, "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "Tgid: %ld", &tgid) == 1)
				break;
		fclose(f);
	}
	return tgid > 0 ? tgid : (long)ctx->pid;
}

/* Takes fi's writer handle out of the table and releases its file, as
 * RELEASE would. */
static void drop_writer(fuse_req_t req, struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_remove(req_ctx(req)->fhs, fi->fh);
	if (h)
		pending_release(h->pf);
	fh_put(h);
}

static int open_writer(fuse_req_t req, pending_version *v, const char *rel,
		       struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_new(FH_WRITER);
	int rc;

	if (!h)
		return -ENOMEM;
	rc = pending_create_as(v, rel, writer_of(req), &h->pf);
	if (rc == 0 && (rc = fh_insert(req_ctx(req)->fhs, h, &fi->fh)) != 0)
		pending_release(h->pf);
	fh_put(h);
	if (rc < 0)
		return rc;
	/* Every write reaches us in order, and readers keep the committed bytes. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

void wop_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	if (vf_create(req, parent, name, fi))
		return; /* a REPO@settings/ file */
	struct fs_node *dir, *n = NULL;
	struct wnode *w = NULL;
	struct where wh;
	char *rel = NULL;
	int rc = dir_where(parent, &dir, &wh);

	if (rc < 0)
		goto out;
	if (wh.could_be_tag) {
		/* The first file in a new directory makes it a tag. */
		rc = become_tag(dir, wh.dirw);
		if (rc < 0)
			goto out;
		pthread_mutex_lock(&wmu);
		wh.v = wh.dirw->v;
		pthread_mutex_unlock(&wmu);
	}
	if (!wh.v || !strcmp(wh.prefix, "blobs")) {
		log_err("create %s: files go in a tag directory or its blobs/sha256/; "
			"to push a layout use cp -rT LAYOUT TAGDIR", name);
		rc = -EPERM;
		goto out;
	}
	rc = -ENOMEM;
	rel = rel_join(wh.prefix, name);
	w = wnode_new(W_FILE);
	if (!rel || !w)
		goto out;
	rc = open_writer(req, wh.v, rel, fi);
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&wmu);
	w->v = wh.v;
	w->rel = rel;
	rel = NULL;
	pthread_mutex_unlock(&wmu);
	n = add_pending(dir, name, FS_N_PENDING_FILE, w);
	if (!n) {
		rc = -errno;
		drop_writer(req, fi);
		goto out;
	}
	if (reply_new_entry(req, n, fi) != 0)
		drop_writer(req, fi); /* the kernel never got the file: no RELEASE comes */
	fs_node_put(n);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(rel);
	wnode_put(w); /* the node holds its own */
	fs_node_put(dir);
}

/* Name of an IMG_FILE relative to its tag root. */
static char *img_file_rel(struct fs_node *n)
{
	char *s = NULL;
	if (n->blob_idx == FS_IDX_OCI_LAYOUT)
		return strdup("oci-layout");
	if (n->blob_idx == FS_IDX_INDEX_JSON)
		return strdup("index.json");
	if (asprintf(&s, "blobs/sha256/%s", n->img->blobs[n->blob_idx].hex) < 0)
		return NULL;
	return s;
}

void wop_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n;
	pending_version *v = NULL;
	char *rel = NULL;
	int rc = 0;

	n = fs_node_get(ino);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!(fi->flags & O_TRUNC)) {
		/* Blobs are written whole, from the start. */
		rc = -EPERM;
		goto out;
	}
	if (n->kind == FS_N_PENDING_FILE) {
		struct wnode *w = n->push;
		pthread_mutex_lock(&wmu);
		v = w->v;
		rel = w->rel ? strdup(w->rel) : NULL;
		pthread_mutex_unlock(&wmu);
	} else if (n->kind == FS_N_IMG_FILE && n->tag) {
		/* O_TRUNC in a committed tag: a new pending version; this inode
		 * keeps answering the committed image to readers. */
		rc = version_for(n->registry, n->region, n->repo, n->tag, &v);
		if (rc < 0)
			goto out;
		note_image_of(v, n);
		rel = img_file_rel(n);
	} else {
		rc = -EPERM;
		goto out;
	}
	if (!v || !rel) {
		rc = -ENOMEM;
		goto out;
	}
	rc = open_writer(req, v, rel, fi);
	if (rc == 0 && fuse_reply_open(req, fi) != 0)
		drop_writer(req, fi); /* an interrupted open gets no RELEASE */
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(rel);
	fs_node_put(n);
}

/* ---- WRITE (FLUSH, FSYNC, RELEASE: ops_file.c) ---- */

void wop_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	if (vf_write(req, buf, size, off, fi))
		return; /* a REPO@settings/ file */
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	int rc = h && h->kind == FH_WRITER ? pending_write(h->pf, buf, size, (uint64_t)off) : -EBADF;

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
	fh_put(h);
}

/* ---- FSYNCDIR: `sync TAGDIR` ---- */

void wop_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	pending_version *v = NULL;
	int rc = 0;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (wn(n)) {
		pthread_mutex_lock(&wmu);
		v = wn(n)->v;
		pthread_mutex_unlock(&wmu);
	} else if ((n->kind == FS_N_IMAGE || n->kind == FS_N_IMG_DIR) && n->tag) {
		v = pending_version_find(P, n->registry, n->region, n->repo, n->tag);
	}
	/* Evaluates only: never waits on writers of this directory. */
	if (v)
		rc = pending_status(v);
	if (v && rc == 0 && wn(n) && pending_version_state(v) == PV_COMMITTED)
		settle(v); /* the writer is done: show what ECR lists */
	fuse_reply_err(req, -rc);
	fs_node_put(n);
}

/* ---- SETATTR, SETXATTR ---- */

void wop_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	if (vf_setattr(req, ino, attr, to_set, fi))
		return; /* TAG@scan.json, REPO@settings/ files */
	struct fs_node *n = fs_node_get(ino);
	struct fs_fh *h = fi ? fh_get(req_ctx(req)->fhs, fi->fh) : NULL;
	struct stat st;
	int rc = 0;

	if (h && h->kind != FH_WRITER) {
		fh_put(h);
		h = NULL;
	}
	if (!n) {
		fuse_reply_err(req, ENOENT);
		fh_put(h);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		pending_file *pf = h ? h->pf : NULL;
		if (!pf && n->kind == FS_N_PENDING_FILE) {
			struct wnode *w = n->push;
			pthread_mutex_lock(&wmu);
			if (w->v && w->rel)
				pf = pending_file_get(w->v, w->rel);
			pthread_mutex_unlock(&wmu);
			if (pf) {
				rc = pending_truncate(pf, (uint64_t)attr->st_size);
				pending_release(pf);
				pending_file_put(pf);
			} else {
				rc = -EPERM;
			}
		} else if (pf) {
			rc = pending_truncate(pf, (uint64_t)attr->st_size);
		} else {
			rc = n->kind == FS_N_IMG_FILE ? -EPERM : -EISDIR;
		}
		if (rc < 0)
			goto out;
	}
	/* Times, mode and owner: accepted and ignored (cp -a, rsync set them
	 * after the last file; ECR keeps none of them). */
	rc = node_getattr(pside_ctx, n, &st);
	if (rc == 0 && h && (to_set & FUSE_SET_ATTR_SIZE) == 0)
		st.st_size = (off_t)pending_file_size(h->pf);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
	fs_node_put(n);
	fh_put(h);
}

/* user.ecr.storage_class on an image directory moves the image between the
 * archive and standard storage; other names are not settable. */
void wop_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fs_node *n = fs_node_get(ino);
	int rc = n ? fs_tree_setxattr(req_ctx(req), n, name, value, size) : -ENOENT;
	if (rc == 0 && n->parent)
		fs_notify_changed(n->parent, n->name); /* its status and listing change */
	fuse_reply_err(req, rc ? user_errno(rc) : 0);
	if (n)
		fs_node_put(n);
}

void wop_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOTSUP);
}
