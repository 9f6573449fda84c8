/* The push glue: pending nodes (mkdir'd directories, files being written)
 * and their records, where a directory stands in a push, the attributes
 * and xattrs of pending nodes, what a commit makes visible, the sweeper.
 * The FUSE handlers of writes are write_files.c and write_names.c; the push
 * engine itself is fs/push/.
 *
 * Pending nodes carry a `struct wnode` (n->push), reference counted: each
 * node holding it has one (dropped when the node is freed, after FORGET;
 * a renamed file's old and new nodes share it) and its creator one for the
 * handler's duration. Tag-directory records (tagdirs) are dropped by the
 * sweeper once their version is committed or dropped and idle, so a mount
 * that pushes many tags does not grow.
 * File handles of writers are FH_WRITER entries of the handle table
 * (handles.h). The state below is the push glue's, one per process,
 * created by push_side_start and freed by push_side_stop. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/notify.h"
#include "fs/fuse/push_nodes_i.h"
#include "fs/mount.h"
#include "fs/tree/image.h"
#include "fs/tree/catalog.h"
#include "fs/tree/names.h"
#include "fs/push/pending.h"
#include "fs/push/push_copy.h"
#include "fs/tree/hidden.h"
#include "fs/push/push_remote.h"
#include "net/log.h"

/* wmu protects: wnode kind/v/rel changes, remotes, tagdirs. Taken before
 * the node lock (tagdir_note), never inside it: wnodes are freed from the
 * node table's free hook without it. */
pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static long live_wnodes; /* atomic: for user.ecr.push_records */
struct wremote *remotes;
struct wtagdir *tagdirs;
pending *P;
struct fs_ctx *pside_ctx; /* the mount, set by push_side_start */


struct wnode *wnode_new(enum wkind kind)
{
	struct wnode *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->kind = kind;
	w->created = time(NULL);
	w->refs = 1;
	__atomic_add_fetch(&live_wnodes, 1, __ATOMIC_RELAXED);
	return w;
}

void wnode_get(struct wnode *w)
{
	__atomic_add_fetch(&w->refs, 1, __ATOMIC_RELAXED);
}

/* Also the node table's free hook: called under the node lock, so it
 * takes no other lock. */
void wnode_put(void *arg)
{
	struct wnode *w = arg;
	if (!w || __atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	free(w->path);
	free(w->rel);
	free(w);
	__atomic_sub_fetch(&live_wnodes, 1, __ATOMIC_RELAXED);
}

struct wnode *wn(const struct fs_node *n)
{
	return (n->kind == FS_N_PENDING_DIR || n->kind == FS_N_PENDING_FILE) ? n->push : NULL;
}

struct push_remote *remote_for(const char *registry, const char *region, const char *repo)
{
	struct fs_ctx *c = pside_ctx;
	struct wremote *r;
	struct push_remote *pr = NULL;

	pthread_mutex_lock(&wmu);
	for (r = remotes; r; r = r->next)
		if (!strcmp(r->registry, registry) && !strcmp(r->region, region) &&
		    !strcmp(r->repo, repo))
			break;
	if (!r && (r = calloc(1, sizeof(*r)))) {
		r->registry = strdup(registry);
		r->region = strdup(region);
		r->repo = strdup(repo);
		if (r->registry && r->region && r->repo &&
		    push_remote_ecr_new(fs_ecr_for(c, registry), registry, region, repo,
					&r->r) == 0) {
			r->next = remotes;
			remotes = r;
		} else { /* listed only whole: the lookup above compares every name */
			free(r->registry);
			free(r->region);
			free(r->repo);
			free(r);
			r = NULL;
		}
	}
	if (r)
		pr = r->r;
	pthread_mutex_unlock(&wmu);
	return pr;
}

int version_for(const char *registry, const char *region, const char *repo,
		       const char *tag, pending_version **out)
{
	struct push_remote *r = remote_for(registry, region, repo);
	if (!r)
		return -ENOMEM;
	return pending_version_get(P, registry, region, repo, tag, r, out);
}

/* Remembers dir as a tag directory of v (for the commit's invalidation). */
void tagdir_note(pending_version *v, struct fs_node *dir)
{
	struct wtagdir *t;
	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t; t = t->next)
		if (t->node == dir)
			break;
	if (!t && (t = calloc(1, sizeof(*t)))) {
		t->v = v;
		t->node = dir;
		fs_node_ref(dir);
		t->next = tagdirs;
		tagdirs = t;
	}
	pthread_mutex_unlock(&wmu);
}

/* Notes the IMAGE node at or above n (a committed tag being rewritten). */
void note_image_of(pending_version *v, struct fs_node *n)
{
	while (n && n->kind != FS_N_IMAGE)
		n = n->parent;
	if (n)
		tagdir_note(v, n);
}

/* ---- where a directory stands ---- */

/* Splits "team/app/v2" into repo "team/app" and tag "v2"; EINVAL when they
 * are not a valid repository name and tag. */
int split_tag_path(const char *path, char *repo, size_t rs, const char **tag)
{
	const char *sl = strrchr(path, '/');
	if (!sl || (size_t)(sl - path) >= rs)
		goto bad;
	memcpy(repo, path, (size_t)(sl - path));
	repo[sl - path] = '\0';
	*tag = sl + 1;
	if (fs_name_is_repo(repo) && fs_name_is_tag(*tag))
		return 0;
bad:
	log_err("%s cannot be a tag: the path below the region must be a repository name "
		"(lowercase [a-z0-9._-] components) and the last component a tag "
		"([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})", path);
	return -EINVAL;
}

/* Makes the W_DIR dir a tag (repository created first). */
int become_tag(struct fs_node *dir, struct wnode *w)
{
	char repo[300];
	const char *tag;
	pending_version *v = NULL;
	int rc;

	pthread_mutex_lock(&wmu);
	v = w->kind == W_TAG ? w->v : NULL;
	pthread_mutex_unlock(&wmu);
	if (v)
		return pending_begin(v);
	rc = split_tag_path(w->path, repo, sizeof(repo), &tag);
	if (rc == 0)
		rc = version_for(dir->registry, dir->region, repo, tag, &v);
	if (rc == 0)
		rc = pending_begin(v);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&wmu);
	w->kind = W_TAG;
	w->v = v;
	pthread_mutex_unlock(&wmu);
	tagdir_note(v, dir);
	return 0;
}

int where_of(struct fs_node *dir, struct where *wh)
{
	struct wnode *w = wn(dir);
	int rc = 0;

	memset(wh, 0, sizeof(*wh));
	wh->prefix = "";
	if (w) {
		pthread_mutex_lock(&wmu);
		wh->dirw = w;
		wh->v = w->v;
		switch (w->kind) {
		case W_DIR:
			wh->could_be_tag = 1;
			break;
		case W_TAG:
			break;
		case W_BLOBS:
			wh->prefix = "blobs";
			break;
		case W_SHA256:
			wh->prefix = "blobs/sha256";
			break;
		default:
			rc = -ENOTDIR;
		}
		pthread_mutex_unlock(&wmu);
		return rc;
	}
	if ((dir->kind == FS_N_IMAGE || dir->kind == FS_N_IMG_DIR) && dir->tag) {
		rc = version_for(dir->registry, dir->region, dir->repo, dir->tag, &wh->v);
		if (rc < 0)
			return rc;
		if (dir->kind == FS_N_IMG_DIR)
			wh->prefix = dir->blob_idx == FS_IDX_BLOBS ? "blobs" : "blobs/sha256";
		note_image_of(wh->v, dir);
		return 0;
	}
	return 0;
}

/* The directory of a MKDIR or CREATE (referenced, NULL when unknown: the
 * caller puts it either way) and where it stands. */
int dir_where(fuse_ino_t parent, struct fs_node **dir, struct where *wh)
{
	*dir = fs_node_get(parent);
	return *dir ? where_of(*dir, wh) : -ENOENT;
}

char *rel_join(const char *prefix, const char *name)
{
	char *s = NULL;
	if (!*prefix)
		return strdup(name);
	return asprintf(&s, "%s/%s", prefix, name) < 0 ? NULL : s;
}

/* ---- replies ---- */

int reply_new_entry(fuse_req_t req, struct fs_node *n, struct fuse_file_info *fi)
{
	/* Pending entries change as the writer goes: nothing is cached. */
	return reply_entry(req, n, 0, 0, fi);
}

/* fs_node_add_pending with a reference on w for the new node (the node
 * table drops it when it frees the node, also when adding fails on EEXIST). */
static struct fs_node *attach(struct fs_node *dir, const char *name, enum fs_kind kind,
			      struct wnode *w)
{
	struct fs_node *n;
	int e;

	wnode_get(w);
	n = fs_node_add_pending(dir, name, kind, w);
	e = errno;
	if (!n && e != EEXIST)
		wnode_put(w); /* no node was made */
	errno = e;
	return n;
}

/* Adds a pending child, replacing a pending one of that name. */
struct fs_node *add_pending(struct fs_node *dir, const char *name, enum fs_kind kind,
				   struct wnode *w)
{
	struct fs_node *n = attach(dir, name, kind, w);
	if (!n && errno == EEXIST) {
		struct fs_node *old = fs_node_child(dir, name);
		if (old) {
			if (fs_node_is_pending(old))
				fs_node_remove_pending(old);
			fs_node_put(old);
		}
		n = attach(dir, name, kind, w);
	}
	return n;
}

/* ---- attributes and xattrs of pending nodes ---- */

int pnode_getattr(struct fs_ctx *c, struct fs_node *n, struct stat *st)
{
	struct wnode *w = n->push;
	pending_version *v;
	char *rel = NULL;

	memset(st, 0, sizeof(*st));
	if (!w)
		return -ENOENT;
	st->st_ino = n->ino;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_blksize = 4096;
	st->st_mtime = st->st_ctime = st->st_atime = w->created;
	if (n->kind == FS_N_PENDING_DIR) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	pthread_mutex_lock(&wmu);
	v = w->v;
	rel = w->rel ? strdup(w->rel) : NULL;
	pthread_mutex_unlock(&wmu);
	if (v && rel) {
		struct pending_stat ps;
		if (pending_stat_file(v, rel, &ps) == 0)
			st->st_size = (off_t)ps.size;
	}
	free(rel);
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

pending_version *version_of_node(struct fs_node *n)
{
	struct wnode *w = wn(n);
	pending_version *v = NULL;
	if (w) {
		pthread_mutex_lock(&wmu);
		v = w->kind == W_TAG ? w->v : NULL;
		pthread_mutex_unlock(&wmu);
		return v;
	}
	if (n->kind == FS_N_IMAGE && n->tag)
		return pending_version_find(P, n->registry, n->region, n->repo, n->tag);
	return NULL;
}

/* `getfattr -n user.ecr.push_records MNT`: what the push side holds (a
 * long-lived mount must not grow with every tag pushed). */
static ssize_t push_records(char *buf, size_t size)
{
	char s[200];
	size_t nv, nf, nt = 0;
	struct wtagdir *t;
	int l;

	pending_counts(P, &nv, &nf);
	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t; t = t->next)
		nt++;
	pthread_mutex_unlock(&wmu);
	l = snprintf(s, sizeof(s),
		     "{\"wnodes\":%ld,\"tag_records\":%zu,\"versions\":%zu,\"files\":%zu}",
		     __atomic_load_n(&live_wnodes, __ATOMIC_RELAXED), nt, nv, nf);
	if (size && (size_t)l > size)
		return -ERANGE;
	if (size)
		memcpy(buf, s, (size_t)l);
	return l;
}

ssize_t pnode_getxattr(struct fs_ctx *c, struct fs_node *n, const char *name, char *buf,
		       size_t size)
{
	pending_version *v;
	char *s;
	size_t l;

	if (P && n->kind == FS_N_ROOT && !strcmp(name, "user.ecr.push_records"))
		return push_records(buf, size);
	if (!P || strcmp(name, "user.ecr.push_state"))
		return -ENODATA;
	v = version_of_node(n);
	if (!v || pending_version_state(v) == PV_EMPTY)
		return -ENODATA;
	s = pending_push_state(v);
	if (!s)
		return -ENOMEM;
	l = strlen(s);
	if (size) {
		if (l > size) {
			free(s);
			return -ERANGE;
		}
		memcpy(buf, s, l);
	}
	free(s);
	return (ssize_t)l;
}

char *push_pending_text(struct fs_ctx *c)
{
	return P ? pending_summary_json(P) : strdup("[]");
}
