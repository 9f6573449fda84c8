/* The write side of the FUSE operations (DESIGN §2): mkdir of pending
 * directories, create/open-for-write/write/flush/fsync/release of layout
 * files, fsyncdir (`sync TAGDIR`), rename of temporary names, unlink, rmdir
 * (untag, delete image, delete repository), setattr, setxattr,
 * copy_file_range. Installed over the read side's table by
 * fs_ops_write_install() (not under -o ro, where everything stays EROFS).
 *
 * Pending nodes carry a `struct wnode` (n->push), reference counted: each
 * node holding it has one (dropped when the node is freed, after FORGET;
 * a renamed file's old and new nodes share it) and its creator one for the
 * handler's duration. Tag-directory records (tagdirs) are dropped by the
 * sweeper once their version is committed or dropped and idle, so a mount
 * that pushes many tags does not grow.
 * File handles of writers are `struct wfh` pointers tagged with bit 0 so
 * they are told apart from the read side's handles in FLUSH/RELEASE. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/mount.h"
#include "fs/tree/image.h"
#include "fs/tree/catalog.h"
#include "fs/tree/names.h"
#include "fs/push/pending.h"
#include "fs/push/push_copy.h"
#include "fs/tree/hidden.h"
#include "fs/push/push_remote.h"
#include "net/log.h"

enum wkind {
	W_DIR = 1, /* mkdir below a region: a namespace, or a tag once a layout file comes */
	W_TAG,     /* a pending tag directory (layout root) */
	W_BLOBS,   /* its blobs/ */
	W_SHA256,  /* its blobs/sha256/ */
	W_FILE,
};

struct wnode {
	enum wkind kind;  /* W_DIR -> W_TAG under wmu */
	char *path;       /* W_DIR/W_TAG: repository path of this directory */
	pending_version *v; /* W_TAG, W_BLOBS, W_SHA256, W_FILE (under wmu) */
	char *rel;        /* W_FILE: name relative to the tag root (under wmu) */
	time_t created;
	int refs;         /* atomic: nodes holding it, and its creator */
};

struct wfh {
	pending_file *pf; /* referenced */
};

/* A repository's remote, kept for the mount. */
struct wremote {
	char *registry, *region, *repo;
	struct push_remote *r;
	struct wremote *next;
};

/* A tag directory node whose version may commit (to invalidate at commit). */
struct wtagdir {
	pending_version *v;
	struct fs_node *node; /* referenced */
	struct wtagdir *next;
};

/* wmu protects: wnode kind/v/rel changes, remotes, tagdirs. Taken before
 * the node lock (tagdir_note), never inside it: wnodes are freed from the
 * node table's free hook without it. */
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static long live_wnodes; /* atomic: for user.ecr.push_records */
static struct wremote *remotes;
static struct wtagdir *tagdirs;
static pending *P;

/* The sweeper drops abandoned versions; sweep_mu/sweep_cv wake it to stop. */
static pthread_t sweeper;
static int sweeper_on, sweeper_stop;
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweep_cv = PTHREAD_COND_INITIALIZER;

static void (*prev_init)(void *, struct fuse_conn_info *);
static void (*prev_open)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*prev_flush)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*prev_fsync)(fuse_req_t, fuse_ino_t, int, struct fuse_file_info *);
static void (*prev_release)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*prev_getattr)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

#define FH_TAG 1u

static struct wfh *my_fh(const struct fuse_file_info *fi)
{
	if (!fi || !(fi->fh & FH_TAG))
		return NULL;
	return (struct wfh *)(uintptr_t)(fi->fh & ~(uint64_t)FH_TAG);
}

static struct wnode *wnode_new(enum wkind kind)
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

static void wnode_get(struct wnode *w)
{
	__atomic_add_fetch(&w->refs, 1, __ATOMIC_RELAXED);
}

/* Also the node table's free hook: called under the node lock, so it
 * takes no other lock. */
static void wnode_put(void *arg)
{
	struct wnode *w = arg;
	if (!w || __atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	free(w->path);
	free(w->rel);
	free(w);
	__atomic_sub_fetch(&live_wnodes, 1, __ATOMIC_RELAXED);
}

static struct wnode *wn(const struct fs_node *n)
{
	return (n->kind == FS_N_PENDING_DIR || n->kind == FS_N_PENDING_FILE) ? n->push : NULL;
}

static struct push_remote *remote_for(const char *registry, const char *region, const char *repo)
{
	struct fs_ctx *c = fs_ctx_get();
	struct wremote *r;
	struct push_remote *pr = NULL;

	pthread_mutex_lock(&wmu);
	for (r = remotes; r; r = r->next)
		if (!strcmp(r->registry, registry) && !strcmp(r->region, region) &&
		    !strcmp(r->repo, repo))
			break;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (r && push_remote_ecr_new(fs_ecr_for(c, registry), registry, region, repo,
					     &r->r) == 0) {
			r->registry = strdup(registry);
			r->region = strdup(region);
			r->repo = strdup(repo);
			r->next = remotes;
			remotes = r;
		} else {
			free(r);
			r = NULL;
		}
	}
	if (r && r->registry && r->region && r->repo)
		pr = r->r;
	pthread_mutex_unlock(&wmu);
	return pr;
}

static int version_for(const char *registry, const char *region, const char *repo,
		       const char *tag, pending_version **out)
{
	struct push_remote *r = remote_for(registry, region, repo);
	if (!r)
		return -ENOMEM;
	return pending_version_get(P, registry, region, repo, tag, r, out);
}

/* Remembers dir as a tag directory of v (for the commit's invalidation). */
static void tagdir_note(pending_version *v, struct fs_node *dir)
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
static void note_image_of(pending_version *v, struct fs_node *n)
{
	while (n && n->kind != FS_N_IMAGE)
		n = n->parent;
	if (n)
		tagdir_note(v, n);
}

/* ---- where a directory stands ---- */

struct where {
	pending_version *v; /* NULL: not inside a tag */
	const char *prefix; /* "", "blobs", "blobs/sha256" */
	struct wnode *dirw; /* the pending dir's wnode, if pending */
	int could_be_tag;   /* a W_DIR: becomes a tag with its first layout file */
};

/* Splits "team/app/v2" into repo "team/app" and tag "v2"; EINVAL when they
 * are not a valid repository name and tag. */
static int split_tag_path(const char *path, char *repo, size_t rs, const char **tag)
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
static int become_tag(struct fs_node *dir, struct wnode *w)
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

static int where_of(struct fs_node *dir, struct where *wh)
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
static int dir_where(fuse_ino_t parent, struct fs_node **dir, struct where *wh)
{
	*dir = fs_node_get(parent);
	return *dir ? where_of(*dir, wh) : -ENOENT;
}

static char *rel_join(const char *prefix, const char *name)
{
	char *s = NULL;
	if (!*prefix)
		return strdup(name);
	return asprintf(&s, "%s/%s", prefix, name) < 0 ? NULL : s;
}

/* ---- replies ---- */

static void reply_new_entry(fuse_req_t req, struct fs_node *n, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = fs_getattr_node(n, &e.attr);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = n->ino;
	e.attr_timeout = 0;
	e.entry_timeout = 0;
	fs_node_lookup_inc(n);
	if ((fi ? fuse_reply_create(req, &e, fi) : fuse_reply_entry(req, &e)) != 0)
		fs_node_forget(n->ino, 1);
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
static struct fs_node *add_pending(struct fs_node *dir, const char *name, enum fs_kind kind,
				   struct wnode *w)
{
	struct fs_node *n = attach(dir, name, kind, w);
	if (!n && errno == EEXIST) {
		struct fs_node *old = fs_node_child(dir, name);
		if (old) {
			if (old->pending)
				fs_node_remove_pending(old);
			fs_node_put(old);
		}
		n = attach(dir, name, kind, w);
	}
	return n;
}

/* ---- attributes and xattrs of pending nodes (called by the read side) ---- */

int fs_push_getattr(struct fs_node *n, struct stat *st)
{
	struct fs_ctx *c = fs_ctx_get();
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

static pending_version *version_of_node(struct fs_node *n)
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

ssize_t fs_push_getxattr(struct fs_node *n, const char *name, char *buf, size_t size)
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

char *fs_push_pending_text(void)
{
	return P ? pending_summary_json(P) : strdup("[]");
}

/* ---- commit: make the new tag visible ---- */

static int count_pending(struct fs_node *dir)
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
static void settle(pending_version *v)
{
	struct fs_node *hits[16];
	int nh = 0;
	struct wtagdir *t;

	pthread_mutex_lock(&wmu);
	for (t = tagdirs; t && nh < 16; t = t->next)
		if (t->v == v && t->node->pending) {
			fs_node_ref(t->node);
			hits[nh++] = t->node;
		}
	pthread_mutex_unlock(&wmu);
	for (int i = 0; i < nh; i++) {
		struct fs_node *n = hits[i], *dir = n->parent;
		fs_node_remove_pending_tree(n, 1); /* its files and blobs/ too */
		while (dir && dir->kind == FS_N_PENDING_DIR && dir->pending &&
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
		if (t->v == v && !t->node->pending && t->node->kind == FS_N_IMAGE) {
			fs_node_ref(t->node);
			hits[nh++] = t->node;
		}
	pthread_mutex_unlock(&wmu);
	for (int i = 0; i < nh; i++) {
		fs_notify_changed(hits[i]->parent, hits[i]->name);
		fs_node_put(hits[i]);
	}
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
		if (t->node->pending && pending_version_state(t->v) == PV_COMMITTED &&
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
		if (!t->node->pending && pending_version_state(t->v) != PV_PENDING &&
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

/* ---- MKDIR ---- */

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs_node *dir, *n = NULL;
	struct wnode *w = NULL;
	struct where wh;
	int rc = dir_where(parent, &dir, &wh);

	if (rc < 0)
		goto out;
	if (dir->kind == FS_N_REGION || dir->kind == FS_N_NAMESPACE || wh.could_be_tag) {
		/* A namespace or a tag to be: a repository component or a tag name. */
		const char *prefix = dir->kind == FS_N_REGION ? ""
				     : dir->kind == FS_N_NAMESPACE ? dir->repo : wh.dirw->path;
		if (!fs_name_is_repo_component(name) && !fs_name_is_tag(name)) {
			log_err("mkdir %s: not a valid repository or tag name", name);
			rc = -EINVAL;
			goto out;
		}
		rc = -ENOMEM;
		w = wnode_new(W_DIR);
		if (!w)
			goto out;
		if (asprintf(&w->path, "%s%s%s", prefix, *prefix ? "/" : "", name) < 0) {
			w->path = NULL;
			goto out;
		}
	} else if (wh.v && ((!*wh.prefix && !strcmp(name, "blobs")) ||
			    (!strcmp(wh.prefix, "blobs") && !strcmp(name, "sha256")))) {
		rc = -ENOMEM;
		w = wnode_new(*wh.prefix ? W_SHA256 : W_BLOBS);
		if (!w)
			goto out;
		w->v = wh.v;
		rc = pending_begin(wh.v);
		if (rc < 0)
			goto out;
	} else if (wh.v || wh.dirw) {
		log_err("mkdir %s: a tag directory holds only oci-layout, index.json and "
			"blobs/sha256/; to push a layout use cp -rT LAYOUT TAGDIR", name);
		rc = -EPERM;
		goto out;
	} else {
		rc = -EPERM;
		goto out;
	}
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

static int open_writer(fuse_req_t req, pending_version *v, const char *rel,
		       struct fuse_file_info *fi)
{
	struct wfh *h = calloc(1, sizeof(*h));
	pending_file *pf = NULL;
	int rc;

	if (!h)
		return -ENOMEM;
	rc = pending_create_as(v, rel, writer_of(req), &pf);
	if (rc < 0) {
		free(h);
		return rc;
	}
	h->pf = pf;
	fi->fh = (uint64_t)(uintptr_t)h | FH_TAG;
	/* Every write reaches us in order, and readers keep the committed bytes. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
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
		struct wfh *h = my_fh(fi);
		rc = -errno;
		pending_release(h->pf);
		pending_file_put(h->pf);
		free(h);
		goto out;
	}
	reply_new_entry(req, n, fi);
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

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n;
	pending_version *v = NULL;
	char *rel = NULL;
	int rc = 0;

	if ((fi->flags & O_ACCMODE) == O_RDONLY && !(fi->flags & O_TRUNC)) {
		prev_open(req, ino, fi);
		return;
	}
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
	if (rc == 0)
		fuse_reply_open(req, fi);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(rel);
	fs_node_put(n);
}

/* ---- WRITE, FLUSH, FSYNC, RELEASE ---- */

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct wfh *h = my_fh(fi);
	int rc;

	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	rc = pending_write(h->pf, buf, size, (uint64_t)off);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct wfh *h = my_fh(fi);
	if (!h) {
		prev_flush(req, ino, fi);
		return;
	}
	fuse_reply_err(req, -pending_flush(h->pf));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct wfh *h = my_fh(fi);
	if (!h) {
		prev_fsync(req, ino, datasync, fi);
		return;
	}
	fuse_reply_err(req, -pending_fsync(h->pf));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct wfh *h = my_fh(fi);
	if (!h) {
		prev_release(req, ino, fi);
		return;
	}
	pending_release(h->pf);
	pending_file_put(h->pf);
	free(h);
	fuse_reply_err(req, 0);
}

/* ---- FSYNCDIR: `sync TAGDIR` ---- */

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
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

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	struct wfh *h = my_fh(fi);
	struct stat st;
	int rc = 0;

	if (!n) {
		fuse_reply_err(req, ENOENT);
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
	rc = fs_getattr_node(n, &st);
	if (rc == 0 && h && (to_set & FUSE_SET_ATTR_SIZE) == 0)
		st.st_size = (off_t)pending_file_size(h->pf);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
	fs_node_put(n);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, ENOTSUP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOTSUP);
}

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

static int retag(struct fs_node *src, struct fs_node *ndir, const char *newname,
		 int noreplace)
{
	struct fs_ctx *c = fs_ctx_get();
	struct wnode *w = wn(ndir);
	struct ecr_where sw = { src->registry, src->region, src->repo };
	struct ecr_image_id id = { NULL, src->tag };
	struct fs_image *img = NULL;
	struct push_remote *dst;
	char *repo = NULL;
	int rc;

	if (ndir->kind == FS_N_NAMESPACE) {
		repo = strdup(ndir->repo);
	} else if (w) {
		pthread_mutex_lock(&wmu);
		repo = w->kind == W_DIR && w->path ? strdup(w->path) : NULL;
		pthread_mutex_unlock(&wmu);
		if (!repo)
			return -EPERM;
	} else {
		return -EPERM;
	}
	if (!repo)
		return -ENOMEM;
	rc = -EINVAL;
	if (!fs_name_is_tag(newname) || !fs_name_is_repo(repo)) {
		log_err("mv to %s/%s: not a repository and tag name", repo, newname);
		goto out;
	}
	if (noreplace) {
		/* mv -n: an existing tag (or one being pushed here) stays. */
		struct fs_node *t = fs_node_child(ndir, newname);
		rc = t && t->pending ? 1 : tag_exists(c, ndir->registry, ndir->region, repo,
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
	fs_notify_changed(src->parent, src->name);
	fs_notify_changed(ndir, newname);
	if (w) {
		/* The pending namespace now exists in ECR: let lookups find it. */
		struct fs_node *up = ndir->parent;
		if (count_pending(ndir) == 0) {
			fs_node_remove_pending(ndir);
			fs_notify_changed(up, ndir->name);
		}
	}
out:
	if (img)
		fs_image_put(img);
	free(repo);
	return rc;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs_node *dir = fs_node_get(parent), *ndir = fs_node_get(newparent);
	struct fs_node *src = NULL, *n = NULL;
	struct where a, b;
	char *from = NULL, *to = NULL;
	struct wnode *w;
	int rc;

	if (!dir || !ndir) {
		rc = -ENOENT;
		goto out;
	}
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		rc = -EINVAL;
		goto out;
	}
	src = fs_node_child(dir, name);
	if (src && src->kind == FS_N_IMAGE && src->tag) {
		rc = retag(src, ndir, newname, !!(flags & RENAME_NOREPLACE));
		goto out;
	}
	rc = where_of(dir, &a);
	if (rc == 0)
		rc = where_of(ndir, &b);
	if (rc < 0)
		goto out;
	if (!a.v || a.v != b.v || !strcmp(b.prefix, "blobs")) {
		rc = -EPERM; /* only files within one pending tag */
		goto out;
	}
	if (!src || src->kind != FS_N_PENDING_FILE) {
		rc = -EPERM;
		goto out;
	}
	from = rel_join(a.prefix, name);
	to = rel_join(b.prefix, newname);
	if (!from || !to) {
		rc = -ENOMEM;
		goto out;
	}
	/* Finishes the file when newname is a layout name: its errno (a
	 * digest mismatch, the commit's) is this call's. */
	rc = pending_rename(a.v, from, to);
	if (rc < 0 && rc != -EIO && rc != -EEXIST && rc != -EINVAL && rc != -EACCES &&
	    rc != -ENOENT)
		goto out;
	/* The node follows the file either way (the rename happened locally). */
	w = src->push;
	pthread_mutex_lock(&wmu);
	free(w->rel);
	w->rel = to;
	to = NULL;
	pthread_mutex_unlock(&wmu);
	fs_node_remove_pending(src);
	n = add_pending(ndir, newname, FS_N_PENDING_FILE, w);
	if (!n && rc == 0)
		rc = -errno;
	fs_node_put(n);
out:
	fuse_reply_err(req, -rc);
	free(from);
	free(to);
	fs_node_put(src);
	fs_node_put(dir);
	fs_node_put(ndir);
}

/* ---- UNLINK, RMDIR ---- */

/* Hidden names come back after the listing TTL if the tag stays. */
static time_t hide_until(void)
{
	int ttl = fs_ctx_get()->o.tag_ttl;
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

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
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
	struct fs_ctx *c = fs_ctx_get();
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
	struct fs_ctx *c = fs_ctx_get();
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
	struct fs_ctx *c = fs_ctx_get();
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

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
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
	return push_copy_blob(fs_ecr_for(fs_ctx_get(), sw.registry_id), &sw, s->b->digest,
			      s->b->size, dst, NULL);
}

/* A whole blob from offset 0 into the file named by its digest is taken by
 * reference (no read, no hash here; an upload only when the destination
 * lacks it). Anything else is EOPNOTSUPP so the kernel and cp fall back to
 * read/write; never ENOSYS, which would turn the call off for the mount. */
static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct wfh *h = my_fh(fi_out);
	struct fs_node *in = fs_node_get(ino_in), *out = fs_node_get(ino_out);
	struct wnode *w = out ? wn(out) : NULL;
	struct cfr_src s = { in, NULL };
	char want[96] = "";
	int rc = -EOPNOTSUPP;
	ssize_t done = 0;

	if (!h || !in || in->kind != FS_N_IMG_FILE || in->blob_idx < 0 || flags)
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
}

/* ---- GETATTR: modes of repository directories ---- */

/* New tags can be pushed to an immutable repository, so its directory (and
 * any namespace) is writable on a read-write mount; its committed tags stay
 * 0555/0444 (the read side's modes). A LOOKUP's attributes come from the
 * read side, but the kernel asks GETATTR again before it refuses a write
 * (default_permissions), so this answer is the one that decides. */
static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	struct stat st;
	int rc;

	if (!n || n->kind != FS_N_NAMESPACE || !n->immutable) {
		fs_node_put(n);
		prev_getattr(req, ino, fi);
		return;
	}
	rc = fs_getattr_node(n, &st);
	if (rc == 0)
		st.st_mode = S_IFDIR | 0755;
	fs_node_put(n);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs_ctx_get()->o.tag_ttl);
}

/* ---- INIT and installation ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	if (prev_init)
		prev_init(userdata, conn);
	/* O_TRUNC arrives with OPEN (a new pending version), not as a SETATTR. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->max_write > (1u << 20) || conn->max_write == 0)
		conn->max_write = 1u << 20;
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

void fs_ops_write_install(struct fuse_lowlevel_ops *ops)
{
	struct fs_ctx *c = fs_ctx_get();
	struct pending_opts po = { 0 };

	po.timeout_s = c->o.pending_timeout > 0 ? c->o.pending_timeout : 600;
	po.spill_dir = c->cache ? cache_dir(c->cache) : NULL;
	po.no_create_repos = c->o.no_create_repos;
	po.on_commit = on_commit;
	if (!P && pending_new(&po, &P) < 0) {
		log_err("push side: out of memory; the mount stays read-only");
		return;
	}
	fs_node_on_push_free(wnode_put);
	if (!sweeper_on && pthread_create(&sweeper, NULL, sweep_main, NULL) == 0)
		sweeper_on = 1;

	prev_init = ops->init;
	prev_open = ops->open;
	prev_flush = ops->flush;
	prev_fsync = ops->fsync;
	prev_release = ops->release;
	prev_getattr = ops->getattr;
	ops->init = op_init;
	ops->open = op_open;
	ops->flush = op_flush;
	ops->fsync = op_fsync;
	ops->release = op_release;
	ops->mkdir = op_mkdir;
	ops->create = op_create;
	ops->write = op_write;
	ops->fsyncdir = op_fsyncdir;
	ops->setattr = op_setattr;
	ops->setxattr = op_setxattr;
	ops->removexattr = op_removexattr;
	ops->rename = op_rename;
	ops->unlink = op_unlink;
	ops->rmdir = op_rmdir;
	ops->copy_file_range = op_copy_file_range;
	ops->getattr = op_getattr;
	push_hide_install();
}

void fs_push_shutdown(void)
{
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
	push_hide_free();
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
