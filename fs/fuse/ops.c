/* The read side of the FUSE low-level operations: LOOKUP, GETATTR, READDIR,
 * OPEN/READ of blobs and control files, extended attributes. Handlers run
 * on libfuse's worker threads (max_threads); network work is bounded by the
 * ECR client's deadline and listings come from the catalog's TTL caches. */
#include "fs/fuse/ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/tree/catalog.h"
#include "fs/tree/ctl.h"
#include "fs/tree/image.h"
#include "fs/tree/names.h"
#include "fs/fuse/reply_fd.h"
#include "net/http.h"
#include "net/log.h"

#define LONG_TTL 86400.0

/* What a user sees for an error from below: network trouble is EIO. */
static int user_errno(int rc)
{
	switch (rc) {
	case -ECONNREFUSED:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ECONNRESET:
	case -EAGAIN:
	case -EKEYEXPIRED:
	case -ECANCELED:
	case -EPROTO:
	case -EBADMSG:
		return EIO;
	default:
		return -rc;
	}
}

/* ---- attributes and timeouts ---- */

double fs_entry_timeout(const struct fs_node *n)
{
	struct fs_ctx *c = fs_ctx_get();
	switch (n->kind) {
	case FS_N_ROOT:
	case FS_N_CTL_DIR:
	case FS_N_CTL_FILE:
	case FS_N_REGISTRY:
	case FS_N_REGION:
		return 3600.0;
	case FS_N_NAMESPACE:
		return c->o.tag_ttl;
	case FS_N_IMAGE:
		return n->tag ? c->o.tag_ttl : LONG_TTL;
	case FS_N_IMG_DIR:
	case FS_N_IMG_FILE:
		return LONG_TTL;
	default:
		return 0.0;
	}
}

static double attr_timeout(const struct fs_node *n)
{
	switch (n->kind) {
	case FS_N_CTL_FILE:
	case FS_N_PENDING_DIR:
	case FS_N_PENDING_FILE:
		return 0.0;
	case FS_N_IMAGE:
	case FS_N_IMG_DIR:
	case FS_N_IMG_FILE:
		return LONG_TTL;
	default:
		return fs_ctx_get()->o.tag_ttl;
	}
}

int fs_getattr_node(struct fs_node *n, struct stat *st)
{
	struct fs_ctx *c = fs_ctx_get();
	memset(st, 0, sizeof *st);
	if (n->kind == FS_N_PENDING_DIR || n->kind == FS_N_PENDING_FILE) {
		if (fs_push_getattr)
			return fs_push_getattr(n, st);
		return -ENOENT;
	}
	/* New tags can be pushed to an immutable repository: its directory is
	 * writable; its tags and their files are not. */
	int ro = c->ro || (n->immutable && n->kind != FS_N_NAMESPACE);
	st->st_ino = n->ino;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_blksize = 4096;
	time_t t = n->mtime ? n->mtime : c->mounted_at;
	st->st_mtime = st->st_ctime = st->st_atime = t;
	switch (n->kind) {
	case FS_N_IMG_FILE: {
		st->st_mode = S_IFREG | (ro ? 0444 : 0644);
		st->st_nlink = 1;
		if (n->blob_idx == FS_IDX_OCI_LAYOUT) {
			st->st_size = (off_t)strlen(FS_OCI_LAYOUT_JSON);
		} else if (n->blob_idx == FS_IDX_INDEX_JSON) {
			st->st_size = (off_t)n->img->index_len;
		} else {
			const struct fs_blob *b = &n->img->blobs[n->blob_idx];
			st->st_size = (off_t)b->size;
			st->st_ino = b->st_ino;
			st->st_nlink = b->nlink;
		}
		st->st_blocks = (st->st_size + 511) / 512;
		break;
	}
	case FS_N_CTL_FILE:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
		break;
	default:
		st->st_mode = S_IFDIR | (ro ? 0555 : 0755);
		if (n->kind == FS_N_CTL_DIR)
			st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	}
	return 0;
}

/* ---- node construction ---- */

/* Reuses the cached child when it still means the same thing. */
static struct fs_node *child_get_or_make(struct fs_node *dir, const char *name,
					 const struct fs_node_tmpl *t)
{
	struct fs_node *old = fs_node_child(dir, name);
	if (old) {
		if (old->pending)
			return old;
		int same = old->kind == t->kind && old->blob_idx == t->blob_idx &&
			   old->immutable == t->immutable &&
			   (!t->repo || (old->repo && !strcmp(old->repo, t->repo))) &&
			   (!t->digest || (old->digest && !strcmp(old->digest, t->digest))) &&
			   (!t->region || (old->region && !strcmp(old->region, t->region))) &&
			   (!t->registry || (old->registry && !strcmp(old->registry, t->registry))) &&
			   (t->kind != FS_N_IMAGE || old->mtime == t->mtime);
		if (same)
			return old;
		fs_node_put(old);
	}
	return fs_node_make(dir, name, t);
}

/* Does any repository live at or below prefix? *is_repo: exactly prefix. */
static int ns_exists(const struct fs_list *repos, const char *prefix, int *is_repo,
		     int *immutable)
{
	size_t pl = strlen(prefix);
	int found = 0;
	*is_repo = 0;
	*immutable = 0;
	for (size_t i = 0; i < repos->repos.n; i++) {
		const char *r = repos->repos.v[i].name;
		if (!strncmp(r, prefix, pl) && (r[pl] == 0 || r[pl] == '/')) {
			found = 1;
			if (r[pl] == 0) {
				*is_repo = 1;
				*immutable = repos->repos.v[i].immutable;
			}
		}
	}
	return found;
}

/* A repository missing here but present in another listed region is the
 * classic wrong-region mistake: say where it is, once per name. */
static void hint_other_region(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo)
{
	/* Protects last_hint: the last name hinted, so a shell's repeated
	 * lookups log one line. */
	static pthread_mutex_t hint_lock = PTHREAD_MUTEX_INITIALIZER;
	static char last_hint[600];
	char key[600];
	snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
	for (size_t i = 0; i < c->nregions; i++) {
		const char *other = c->regions[i];
		struct fs_list *l = NULL;
		int is_repo, immutable;
		if (!strcmp(other, region) || fs_cat_repos(c, registry, other, &l) != 0)
			continue;
		int found = ns_exists(l, repo, &is_repo, &immutable);
		fs_list_put(l);
		if (!found)
			continue;
		pthread_mutex_lock(&hint_lock);
		int fresh = strcmp(last_hint, key) != 0;
		if (fresh)
			snprintf(last_hint, sizeof last_hint, "%s", key);
		pthread_mutex_unlock(&hint_lock);
		if (fresh)
			log_warn("repository path '%s' not found in registry %s region %s; it exists in "
				 "region %s: use %s/%s/%s",
				 repo, registry, region, other, registry, other, repo);
		return;
	}
}

static char *join_repo(const char *prefix, const char *name)
{
	char *s = NULL;
	if (!prefix || !*prefix)
		return strdup(name);
	if (asprintf(&s, "%s/%s", prefix, name) < 0)
		return NULL;
	return s;
}

/* Loads the image of an IMAGE node (once). */
static int image_of(struct fs_node *n, struct fs_image **out)
{
	struct fs_ctx *c = fs_ctx_get();
	*out = fs_node_img(n);
	if (*out)
		return 0;
	char refname[80];
	if (n->tag)
		snprintf(refname, sizeof refname, "%s", n->tag);
	else
		snprintf(refname, sizeof refname, "sha256-%s", n->digest + 7);
	struct fs_image *img = NULL;
	int rc = fs_cat_image(c, n->registry, n->region, n->repo, n->digest, refname, n->immutable,
			      n->mtime, &img);
	if (rc)
		return rc;
	*out = fs_node_set_img(n, img);
	fs_image_put(img);
	return 0;
}

/* Resolves dir/name to a node (referenced) or -errno. */
static int resolve(struct fs_node *dir, const char *name, struct fs_node **out)
{
	struct fs_ctx *c = fs_ctx_get();
	struct fs_node_tmpl t = {0};
	struct fs_list *repos = NULL, *imgs = NULL;
	struct fs_image *img = NULL;
	char *sub = NULL;
	char digest[80]; /* t.digest may point here */
	int rc = -ENOENT;
	*out = NULL;

	/* Pending entries (push side) come first. */
	struct fs_node *p = fs_node_child(dir, name);
	if (p && p->pending) {
		*out = p;
		return 0;
	}
	fs_node_put(p);

	switch (dir->kind) {
	case FS_N_ROOT:
		if (!strcmp(name, ".ecrfs")) {
			t.kind = FS_N_CTL_DIR;
		} else if (fs_name_is_account(name)) {
			t.kind = FS_N_REGISTRY;
			t.registry = name;
		} else {
			goto out;
		}
		break;
	case FS_N_CTL_DIR:
		t.kind = FS_N_CTL_FILE;
		t.ctl = fs_ctl_by_name(name);
		if (!t.ctl)
			goto out;
		break;
	case FS_N_REGISTRY:
		if (!fs_name_is_region(name))
			goto out;
		t.kind = FS_N_REGION;
		t.region = name;
		break;
	case FS_N_REGION:
	case FS_N_NAMESPACE: {
		const char *prefix = dir->kind == FS_N_REGION ? "" : dir->repo;
		size_t nl = strlen(name);
		int is_repo = 0, immutable = 0;
		if (dir->kind == FS_N_NAMESPACE && fs_name_digest_dir(name, digest, sizeof digest)) {
			/* @sha256-<hex>: an image of this repository by digest. */
			rc = fs_cat_images(c, dir->registry, dir->region, prefix, &imgs);
			if (rc)
				goto out;
			const struct ecr_image *im = fs_list_find_digest(imgs, digest);
			rc = -ENOENT;
			if (!im)
				goto out;
			t.kind = FS_N_IMAGE;
			t.digest = digest;
			t.mtime = im->pushed_at;
			t.immutable = dir->immutable;
			break;
		}
		if (nl > 1 && name[nl - 1] == '@') {
			/* N@: the namespace N when a tag N exists too. */
			char base[256];
			if (nl - 1 >= sizeof base)
				goto out;
			memcpy(base, name, nl - 1);
			base[nl - 1] = 0;
			if (dir->kind != FS_N_NAMESPACE || !fs_name_is_repo_component(base))
				goto out;
			if ((rc = fs_cat_repos(c, dir->registry, dir->region, &repos)) != 0)
				goto out;
			sub = join_repo(prefix, base);
			rc = -ENOENT;
			if (!sub || !ns_exists(repos, sub, &is_repo, &immutable))
				goto out;
			t.kind = FS_N_NAMESPACE;
			t.repo = sub;
			t.immutable = immutable;
			break;
		}
		int tag_ok = dir->kind == FS_N_NAMESPACE && fs_name_is_tag(name);
		int comp_ok = fs_name_is_repo_component(name);
		if (!tag_ok && !comp_ok)
			goto out; /* no network call for names ECR cannot have */
		if ((rc = fs_cat_repos(c, dir->registry, dir->region, &repos)) != 0)
			goto out;
		if (tag_ok && ns_exists(repos, prefix, &is_repo, &immutable) && is_repo) {
			rc = fs_cat_images(c, dir->registry, dir->region, prefix, &imgs);
			if (rc && rc != -ENOENT)
				goto out;
			const struct ecr_image *im = imgs ? fs_list_find_tag(imgs, name) : NULL;
			if (im) {
				t.kind = FS_N_IMAGE;
				t.tag = name;
				t.digest = im->digest;
				t.mtime = im->pushed_at;
				t.immutable = immutable;
				rc = 0;
				break;
			}
		}
		rc = -ENOENT;
		if (!comp_ok)
			goto out;
		sub = join_repo(prefix, name);
		if (!sub)
			goto out;
		if (!ns_exists(repos, sub, &is_repo, &immutable)) {
			hint_other_region(c, dir->registry, dir->region, sub);
			goto out;
		}
		t.kind = FS_N_NAMESPACE;
		t.repo = sub;
		t.immutable = immutable;
		t.mtime = 0;
		rc = 0;
		break;
	}
	case FS_N_IMAGE:
		if ((rc = image_of(dir, &img)) != 0)
			goto out;
		rc = -ENOENT;
		t.img = img;
		if (!strcmp(name, "oci-layout")) {
			t.kind = FS_N_IMG_FILE;
			t.blob_idx = FS_IDX_OCI_LAYOUT;
		} else if (!strcmp(name, "index.json")) {
			t.kind = FS_N_IMG_FILE;
			t.blob_idx = FS_IDX_INDEX_JSON;
		} else if (!strcmp(name, "blobs")) {
			t.kind = FS_N_IMG_DIR;
			t.blob_idx = FS_IDX_BLOBS;
		} else {
			goto out;
		}
		break;
	case FS_N_IMG_DIR:
		t.img = dir->img;
		if (dir->blob_idx == FS_IDX_BLOBS && !strcmp(name, "sha256")) {
			t.kind = FS_N_IMG_DIR;
			t.blob_idx = FS_IDX_SHA256;
		} else if (dir->blob_idx == FS_IDX_SHA256) {
			long i = fs_image_find_blob(dir->img, name);
			if (i < 0)
				goto out;
			t.kind = FS_N_IMG_FILE;
			t.blob_idx = (int)i;
		} else {
			goto out;
		}
		break;
	default:
		goto out;
	}
	*out = child_get_or_make(dir, name, &t);
	rc = *out ? 0 : -ENOMEM;
out:
	fs_list_put(repos);
	fs_list_put(imgs);
	if (img)
		fs_image_put(img);
	free(sub);
	return rc;
}

/* ---- LOOKUP, FORGET, GETATTR ---- */

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	__atomic_store_n((volatile int *)data, 1, __ATOMIC_RELAXED);
}

/* Wires a FUSE INTERRUPT of req to *cancel and to the HTTP calls this
 * thread makes until interruptible_end, which must come before the reply
 * (libfuse may call on_interrupt until it is unregistered, and the request
 * is freed by the reply). */
static void interruptible_begin(fuse_req_t req, volatile int *cancel)
{
	*cancel = 0;
	fuse_req_interrupt_func(req, on_interrupt, (void *)cancel);
	net_http_thread_cancel(cancel);
}

static void interruptible_end(fuse_req_t req)
{
	net_http_thread_cancel(NULL);
	fuse_req_interrupt_func(req, NULL, NULL);
}


static void reply_entry(fuse_req_t req, struct fs_node *n)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	int rc = fs_getattr_node(n, &e.attr);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = n->ino;
	e.attr_timeout = attr_timeout(n);
	e.entry_timeout = fs_entry_timeout(n);
	fs_node_lookup_inc(n);
	if (fuse_reply_entry(req, &e) != 0)
		fs_node_forget(n->ino, 1);
}

static int (*hidden_fn)(struct fs_node *dir, const char *name, time_t now);

void fs_ops_set_hidden(int (*hidden)(struct fs_node *dir, const char *name, time_t now))
{
	hidden_fn = hidden;
}

/* dir/name is hidden by the push side (dir an image directory). */
static int is_hidden(struct fs_node *dir, const char *name, time_t now)
{
	return hidden_fn && (dir->kind == FS_N_IMAGE || dir->kind == FS_N_IMG_DIR) &&
	       hidden_fn(dir, name, now);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_node *dir = fs_node_get(parent), *n = NULL;
	if (!dir) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	int hidden = is_hidden(dir, name, time(NULL)), rc = -ENOENT;
	if (!hidden) {
		volatile int cancel;
		interruptible_begin(req, &cancel);
		rc = resolve(dir, name, &n);
		interruptible_end(req);
	}
	if (rc == -ENOENT) {
		/* Negative entry, cached for neg_ttl; a hidden name is not
		 * cached: it comes back when the hiding ends. */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof e);
		e.entry_timeout = hidden || dir->kind == FS_N_PENDING_DIR ? 0 : fs_ctx_get()->o.neg_ttl;
		fuse_reply_entry(req, &e);
	} else if (rc) {
		fuse_reply_err(req, user_errno(rc));
	} else {
		reply_entry(req, n);
		fs_node_put(n);
	}
	fs_node_put(dir);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_node_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fs_node_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	struct stat st;
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	int rc = !fi && n->parent && (n->kind == FS_N_IMG_FILE || n->kind == FS_N_IMG_DIR) &&
			 is_hidden(n->parent, n->name, time(NULL))
		     ? -ENOENT
		     : fs_getattr_node(n, &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout(n));
	fs_node_put(n);
}

/* ---- open handles, freed at unmount when the kernel's RELEASE never came
 * (releases are asynchronous and may be dropped when the mount goes) ---- */

struct hlink {
	struct hlink *prev, *next;
	int is_dir;
	struct hlink *grave_next; /* released, freed after RELEASE_GRACE */
	time_t released_at;
	int busy; /* READs in progress (grave_mu) */
};

static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER; /* protects h_head */
static struct hlink h_head = {&h_head, &h_head, 0, NULL, 0, 0};

/* A released handle (file or directory) is freed RELEASE_GRACE seconds
 * later, not in RELEASE: a READ of a control file was seen handled by one
 * worker thread while another ran the RELEASE of the same handle (ASan:
 * use after free in op_read, in a full test run: a reader killed while its
 * READ waits is released at once). Handles released recently stay valid,
 * and one whose READ is still running (waiting for ECR, up to the
 * deadline) waits another grace; they stay tracked, so unmount frees them
 * too. */
#define RELEASE_GRACE 5
static pthread_mutex_t grave_mu = PTHREAD_MUTEX_INITIALIZER; /* protects the list */
static struct hlink *grave_head, *grave_tail;

static void hlink_free(struct hlink *l);

static void release_later(struct hlink *l)
{
	struct hlink *expired = NULL, **tail = &expired;
	time_t now = time(NULL);
	pthread_mutex_lock(&grave_mu);
	struct hlink *busy = NULL, **btail = &busy;
	while (grave_head && now - grave_head->released_at > RELEASE_GRACE) {
		struct hlink *g = grave_head;
		grave_head = g->grave_next;
		if (g->busy) {
			*btail = g;
			btail = &g->grave_next;
		} else {
			*tail = g;
			tail = &g->grave_next;
		}
	}
	*tail = NULL;
	*btail = l;
	l->grave_next = NULL;
	if (!grave_head)
		grave_tail = NULL;
	for (struct hlink *g = busy; g; g = g->grave_next) {
		g->released_at = now;
		if (grave_tail)
			grave_tail->grave_next = g;
		else
			grave_head = g;
		grave_tail = g;
	}
	pthread_mutex_unlock(&grave_mu);
	while (expired) {
		struct hlink *next = expired->grave_next;
		hlink_free(expired);
		expired = next;
	}
}

/* A READ uses its handle from here to hl_leave (see release_later). */
static void hl_enter(struct hlink *l)
{
	pthread_mutex_lock(&grave_mu);
	l->busy++;
	pthread_mutex_unlock(&grave_mu);
}

static void hl_leave(struct hlink *l)
{
	pthread_mutex_lock(&grave_mu);
	l->busy--;
	pthread_mutex_unlock(&grave_mu);
}

static void h_track(struct hlink *l, int is_dir)
{
	l->is_dir = is_dir;
	pthread_mutex_lock(&h_mu);
	l->next = h_head.next;
	l->prev = &h_head;
	h_head.next->prev = l;
	h_head.next = l;
	pthread_mutex_unlock(&h_mu);
}

static void h_untrack(struct hlink *l)
{
	pthread_mutex_lock(&h_mu);
	if (l->next) {
		l->prev->next = l->next;
		l->next->prev = l->prev;
		l->next = l->prev = NULL;
	}
	pthread_mutex_unlock(&h_mu);
}

/* ---- READDIR from a snapshot taken at OPENDIR ---- */

struct dent {
	char *name;
	mode_t type;
	uint64_t ino;
};

struct dsnap {
	struct hlink link; /* first */
	struct dent *v;
	size_t n, cap;
	int filtered; /* names were hidden: not for the kernel's cache */
};

static int snap_has_n(const struct dsnap *s, const char *name, size_t limit)
{
	for (size_t i = 0; i < s->n && i < limit; i++)
		if (!strcmp(s->v[i].name, name))
			return 1;
	return 0;
}

static int snap_has(const struct dsnap *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].name, name))
			return 1;
	return 0;
}

static int snap_add(struct dsnap *s, const char *name, mode_t type, uint64_t ino)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 32;
		struct dent *nv = realloc(s->v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	s->v[s->n].name = strdup(name);
	if (!s->v[s->n].name)
		return -ENOMEM;
	s->v[s->n].type = type;
	s->v[s->n].ino = ino;
	s->n++;
	return 0;
}

static void snap_free(struct dsnap *s)
{
	h_untrack(&s->link);
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].name);
	free(s->v);
	free(s);
}

static uint64_t name_ino(const struct fs_node *dir, const char *name)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lu", (unsigned long)dir->ino);
	const char *parts[2] = {buf, name};
	return fs_hash64(parts, 2) | (1ULL << 62);
}

/* A name of an image directory, unless the push side hides it. */
static int img_add(struct dsnap *s, struct fs_node *dir, const char *name, mode_t type,
		   uint64_t ino, time_t now)
{
	if (is_hidden(dir, name, now)) {
		s->filtered = 1;
		return 0;
	}
	return snap_add(s, name, type, ino ? ino : name_ino(dir, name));
}

struct pend_ctx {
	struct dsnap *s;
	int rc;
};

static void add_pending(struct fs_node *n, void *arg)
{
	struct pend_ctx *pc = arg;
	if (!snap_has(pc->s, n->name) && pc->rc == 0)
		pc->rc = snap_add(pc->s, n->name, n->kind == FS_N_PENDING_DIR ? S_IFDIR : S_IFREG,
				  n->ino);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names below prefix: first components of deeper repositories. */
static int list_namespaces(struct dsnap *s, struct fs_node *dir, const struct fs_list *repos,
			   const char *prefix, const struct fs_list *imgs, size_t npend)
{
	size_t pl = strlen(prefix);
	const char **names = calloc(repos->repos.n + 1, sizeof *names);
	size_t nn = 0;
	int rc = 0;
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < repos->repos.n; i++) {
		const char *r = repos->repos.v[i].name;
		if (pl && (strncmp(r, prefix, pl) != 0 || r[pl] != '/'))
			continue;
		names[nn++] = pl ? r + pl + 1 : r;
	}
	qsort(names, nn, sizeof *names, cmp_str);
	char comp[260], last[260] = "";
	for (size_t i = 0; i < nn && rc == 0; i++) {
		const char *slash = strchr(names[i], '/');
		size_t l = slash ? (size_t)(slash - names[i]) : strlen(names[i]);
		if (l + 2 > sizeof comp)
			continue;
		memcpy(comp, names[i], l);
		comp[l] = 0;
		if (!strcmp(comp, last))
			continue;
		snprintf(last, sizeof last, "%s", comp);
		if (imgs && fs_list_find_tag(imgs, comp))
			strcat(comp, "@"); /* the tag owns the plain name */
		if (!snap_has_n(s, comp, npend))
			rc = snap_add(s, comp, S_IFDIR, name_ino(dir, comp));
	}
	free(names);
	return rc;
}

static int build_snapshot(struct fs_node *dir, struct dsnap *s)
{
	struct fs_ctx *c = fs_ctx_get();
	struct fs_list *repos = NULL, *imgs = NULL;
	struct fs_image *img = NULL;
	time_t now = time(NULL);
	int rc = 0;

	struct pend_ctx pc = {s, 0};
	fs_node_foreach_pending(dir, add_pending, &pc);
	if ((rc = pc.rc) != 0)
		goto out;
	size_t npend = s->n; /* pending names shadow remote ones */

	switch (dir->kind) {
	case FS_N_ROOT:
		rc = snap_add(s, ".ecrfs", S_IFDIR, name_ino(dir, ".ecrfs"));
		if (rc == 0 && c->own_registry[0])
			rc = snap_add(s, c->own_registry, S_IFDIR, name_ino(dir, c->own_registry));
		for (size_t i = 0; rc == 0 && i < c->nregs; i++)
			if (!snap_has(s, c->regs[i].id))
				rc = snap_add(s, c->regs[i].id, S_IFDIR, name_ino(dir, c->regs[i].id));
		break;
	case FS_N_CTL_DIR:
		for (int i = 1; rc == 0 && fs_ctl_name(i); i++)
			rc = snap_add(s, fs_ctl_name(i), S_IFREG, name_ino(dir, fs_ctl_name(i)));
		break;
	case FS_N_REGISTRY:
		for (size_t i = 0; rc == 0 && i < c->nregions; i++)
			rc = snap_add(s, c->regions[i], S_IFDIR, name_ino(dir, c->regions[i]));
		break;
	case FS_N_REGION:
	case FS_N_NAMESPACE: {
		const char *prefix = dir->kind == FS_N_REGION ? "" : dir->repo;
		int is_repo = 0, immutable = 0;
		if ((rc = fs_cat_repos(c, dir->registry, dir->region, &repos)) != 0)
			goto out;
		if (*prefix && ns_exists(repos, prefix, &is_repo, &immutable) && is_repo) {
			rc = fs_cat_images(c, dir->registry, dir->region, prefix, &imgs);
			if (rc)
				goto out;
			for (size_t i = 0; rc == 0 && i < imgs->images.n; i++) {
				const struct ecr_image *im = &imgs->images.v[i];
				for (size_t t = 0; rc == 0 && t < im->ntags; t++)
					if (!snap_has_n(s, im->tags[t], npend))
						rc = snap_add(s, im->tags[t], S_IFDIR,
							      name_ino(dir, im->tags[t]));
				if (im->ntags == 0 && rc == 0 && fs_name_is_digest(im->digest)) {
					char dn[80];
					snprintf(dn, sizeof dn, "@sha256-%s", im->digest + 7);
					if (!snap_has_n(s, dn, npend))
						rc = snap_add(s, dn, S_IFDIR, name_ino(dir, dn));
				}
			}
		}
		if (rc == 0)
			rc = list_namespaces(s, dir, repos, prefix, imgs, npend);
		break;
	}
	case FS_N_IMAGE:
		if ((rc = image_of(dir, &img)) != 0)
			goto out;
		rc = img_add(s, dir, "oci-layout", S_IFREG, 0, now);
		if (rc == 0)
			rc = img_add(s, dir, "index.json", S_IFREG, 0, now);
		if (rc == 0)
			rc = img_add(s, dir, "blobs", S_IFDIR, 0, now);
		break;
	case FS_N_IMG_DIR:
		if (dir->blob_idx == FS_IDX_BLOBS) {
			rc = img_add(s, dir, "sha256", S_IFDIR, 0, now);
			break;
		}
		for (size_t i = 0; rc == 0 && i < dir->img->nblobs; i++)
			rc = img_add(s, dir, dir->img->blobs[i].hex, S_IFREG,
				     dir->img->blobs[i].st_ino, now);
		break;
	default:
		break;
	}
out:
	fs_list_put(repos);
	fs_list_put(imgs);
	if (img)
		fs_image_put(img);
	return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	struct dsnap *s = calloc(1, sizeof *s);
	int rc = -ENOMEM;
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (!s)
		goto out;
	volatile int cancel;
	interruptible_begin(req, &cancel);
	rc = build_snapshot(n, s);
	interruptible_end(req);
	if (rc)
		goto out;
	fi->fh = (uint64_t)(uintptr_t)s;
	fi->cache_readdir = (n->kind == FS_N_IMG_DIR || n->kind == FS_N_CTL_DIR) && !s->filtered;
	fi->keep_cache = fi->cache_readdir;
	/* An interrupted opendir never gets a releasedir. */
	h_track(&s->link, 1);
	if (fuse_reply_open(req, fi) == 0)
		s = NULL;
out:
	if (rc)
		fuse_reply_err(req, user_errno(rc));
	if (s)
		snap_free(s);
	fs_node_put(n);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dsnap *s = (struct dsnap *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t pos = 0;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Offsets: 1 = ".", 2 = "..", 3+i = entry i. */
	for (off_t i = off; i < (off_t)s->n + 2; i++) {
		struct stat st;
		memset(&st, 0, sizeof st);
		const char *name;
		if (i == 0) {
			name = ".";
			st.st_ino = ino;
			st.st_mode = S_IFDIR;
		} else if (i == 1) {
			name = "..";
			st.st_ino = FUSE_ROOT_ID;
			st.st_mode = S_IFDIR;
		} else {
			name = s->v[i - 2].name;
			st.st_ino = s->v[i - 2].ino;
			st.st_mode = s->v[i - 2].type;
		}
		size_t need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, i + 1);
		if (need > size - pos)
			break;
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
	release_later(&((struct dsnap *)(uintptr_t)fi->fh)->link);
}

/* ---- OPEN, READ, RELEASE ---- */

struct fh {
	struct hlink link;    /* first */
	struct fs_rstate *rs; /* blobs fetched through the cache */
	char *data;           /* in-memory files (manifests, index.json, control) */
	size_t len;
	int owned;            /* data malloc'd by us */
	struct fs_image *img; /* referenced while open */
};

static void fh_free(struct fh *h)
{
	if (!h)
		return;
	h_untrack(&h->link);
	fs_blob_close(h->rs);
	if (h->owned)
		free(h->data);
	if (h->img)
		fs_image_put(h->img);
	free(h);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx_get();
	struct fs_node *n = fs_node_get(ino);
	struct fh *h = NULL;
	int rc = 0;
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		rc = c->ro ? -EROFS : -EACCES;
		goto out;
	}
	if (n->kind != FS_N_IMG_FILE && n->kind != FS_N_CTL_FILE) {
		rc = n->kind == FS_N_PENDING_FILE ? -EBUSY : -EISDIR;
		goto out;
	}
	if (!(h = calloc(1, sizeof *h))) {
		rc = -ENOMEM;
		goto out;
	}
	if (n->kind == FS_N_CTL_FILE) {
		rc = fs_ctl_render(c, n->ctl, &h->data, &h->len);
		if (rc)
			goto out;
		h->owned = 1;
		fi->direct_io = 1;
	} else {
		h->img = n->img;
		fs_image_ref(h->img);
		fi->keep_cache = 1;
		if (n->blob_idx == FS_IDX_OCI_LAYOUT) {
			h->data = (char *)FS_OCI_LAYOUT_JSON;
			h->len = strlen(FS_OCI_LAYOUT_JSON);
		} else if (n->blob_idx == FS_IDX_INDEX_JSON) {
			h->data = n->img->index_json;
			h->len = n->img->index_len;
		} else if (n->img->blobs[n->blob_idx].data) {
			h->data = n->img->blobs[n->blob_idx].data;
			h->len = n->img->blobs[n->blob_idx].size;
		} else {
			const struct fs_blob *b = &n->img->blobs[n->blob_idx];
			struct fs_blob_ref ref = {.registry = n->img->registry,
						  .region = n->img->region,
						  .repo = n->img->repo,
						  .digest = b->digest,
						  .size = b->size,
						  .ecr = fs_ecr_for(c, n->img->registry)};
			rc = fs_blob_open(c->blobs, &ref, ino, &h->rs);
			if (rc)
				goto out;
		}
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	/* An interrupted open never gets a release: free the handle then. */
	h_track(&h->link, 0);
	if (fuse_reply_open(req, fi) == 0)
		h = NULL;
out:
	if (rc)
		fuse_reply_err(req, -rc);
	fh_free(h);
	fs_node_put(n);
}

static void reply_pread(fuse_req_t req, int fd, off_t off, size_t len)
{
	char *buf = malloc(len ? len : 1);
	ssize_t got = buf ? pread(fd, buf, len, off) : -1;
	if (got == (ssize_t)len)
		fuse_reply_buf(req, buf, len);
	else
		fuse_reply_err(req, buf ? EIO : ENOMEM);
	free(buf);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	/* Handles of files opened for writing carry bit 0 (fs/ops_write.c);
	 * a pushed file is write-only until its commit. */
	if (fi->fh & 1u) {
		fuse_reply_err(req, EBADF);
		return;
	}
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	if (!h->rs) {
		if ((uint64_t)off >= h->len)
			size = 0;
		else if (size > h->len - (uint64_t)off)
			size = h->len - (size_t)off;
		fuse_reply_buf(req, size ? h->data + off : NULL, size);
		return;
	}
	char *buf = NULL;
	int fd = -1;
	volatile int cancel = 0;
	hl_enter(&h->link);
	fuse_req_interrupt_func(req, on_interrupt, (void *)&cancel);
	ssize_t n = fs_blob_read(h->rs, &buf, size, (uint64_t)off, &cancel, &fd);
	fuse_req_interrupt_func(req, NULL, NULL);
	hl_leave(&h->link);
	if (n < 0) {
		fuse_reply_err(req, user_errno((int)n));
	} else if (fd >= 0) {
		/* From the cache file: its pages are spliced to the kernel, no
		 * copy through this process; else read and sent. */
		if (fs_reply_fd(req, fd, off, (size_t)n) != 0)
			reply_pread(req, fd, off, (size_t)n);
	} else {
		fuse_reply_buf(req, buf, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
	release_later(&((struct fh *)(uintptr_t)fi->fh)->link);
}

static void hlink_free(struct hlink *l)
{
	if (l->is_dir)
		snap_free((struct dsnap *)l);
	else
		fh_free((struct fh *)l);
}

void fs_ops_cleanup(void)
{
	/* Handles waiting out their grace are still tracked: freed below. */
	pthread_mutex_lock(&grave_mu);
	grave_head = grave_tail = NULL;
	pthread_mutex_unlock(&grave_mu);
	pthread_mutex_lock(&h_mu);
	while (h_head.next != &h_head) {
		struct hlink *l = h_head.next;
		pthread_mutex_unlock(&h_mu);
		hlink_free(l);
		pthread_mutex_lock(&h_mu);
	}
	pthread_mutex_unlock(&h_mu);
}

/* ---- extended attributes ---- */

static const char *const xattr_names[] = {
	"user.ecr.digest", "user.ecr.uri",         "user.ecr.pushed_at", "user.ecr.media_type",
	"user.ecr.size",   "user.ecr.scan_status", "user.ecr.mutability", NULL,
};

static void registry_host(const struct fs_node *n, char *buf, size_t size)
{
	snprintf(buf, size, "%s.dkr.ecr.%s.amazonaws.com%s", n->registry, n->region,
		 !strncmp(n->region, "cn-", 3) ? ".cn" : "");
}

/* Value of xattr name on n into val (malloc'd) or -ENODATA. */
static int xattr_value(struct fs_node *n, const char *name, char **val)
{
	struct fs_ctx *c = fs_ctx_get();
	char host[160], tmp[64];
	int rc = -ENODATA;
	struct fs_list *imgs = NULL;
	*val = NULL;
	if (n->kind == FS_N_NAMESPACE) {
		struct fs_list *repos = NULL;
		int is_repo = 0, immutable = 0;
		if (fs_cat_repos(c, n->registry, n->region, &repos) != 0)
			return -ENODATA;
		ns_exists(repos, n->repo, &is_repo, &immutable);
		fs_list_put(repos);
		if (!is_repo)
			return -ENODATA;
		registry_host(n, host, sizeof host);
		if (!strcmp(name, "user.ecr.uri"))
			rc = asprintf(val, "%s/%s", host, n->repo) < 0 ? -ENOMEM : 0;
		else if (!strcmp(name, "user.ecr.mutability"))
			rc = (*val = strdup(immutable ? "IMMUTABLE" : "MUTABLE")) ? 0 : -ENOMEM;
		return rc;
	}
	if (n->kind == FS_N_IMAGE) {
		const struct ecr_image *im = NULL;
		if (fs_cat_images(c, n->registry, n->region, n->repo, &imgs) == 0)
			im = fs_list_find_digest(imgs, n->digest);
		registry_host(n, host, sizeof host);
		if (!strcmp(name, "user.ecr.digest")) {
			*val = strdup(n->digest);
		} else if (!strcmp(name, "user.ecr.uri")) {
			if (n->tag)
				rc = asprintf(val, "%s/%s:%s", host, n->repo, n->tag);
			else
				rc = asprintf(val, "%s/%s@%s", host, n->repo, n->digest);
			if (rc < 0)
				*val = NULL;
		} else if (!strcmp(name, "user.ecr.pushed_at")) {
			struct tm tm;
			time_t t = n->mtime;
			gmtime_r(&t, &tm);
			strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%SZ", &tm);
			*val = strdup(tmp);
		} else if (!strcmp(name, "user.ecr.media_type")) {
			if (im && im->media_type)
				*val = strdup(im->media_type);
			else {
				struct fs_image *img = fs_node_img(n);
				if (img) {
					*val = strdup(img->media_type);
					fs_image_put(img);
				}
			}
		} else if (!strcmp(name, "user.ecr.size")) {
			if (im) {
				snprintf(tmp, sizeof tmp, "%lld", (long long)im->size);
				*val = strdup(tmp);
			}
		} else if (!strcmp(name, "user.ecr.scan_status")) {
			if (im && im->scan_status)
				*val = strdup(im->scan_status);
		} else if (!strcmp(name, "user.ecr.mutability")) {
			*val = strdup(n->immutable ? "IMMUTABLE" : "MUTABLE");
		}
		fs_list_put(imgs);
		return *val ? 0 : -ENODATA;
	}
	if (n->kind == FS_N_IMG_FILE && n->blob_idx >= 0) {
		const struct fs_blob *b = &n->img->blobs[n->blob_idx];
		if (!strcmp(name, "user.ecr.digest"))
			*val = strdup(b->digest);
		else if (!strcmp(name, "user.ecr.media_type") && b->media_type)
			*val = strdup(b->media_type);
		else if (!strcmp(name, "user.ecr.size")) {
			snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)b->size);
			*val = strdup(tmp);
		}
		return *val ? 0 : -ENODATA;
	}
	return -ENODATA;
}

static void reply_xattr(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_node *n = fs_node_get(ino);
	char *val = NULL;
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fs_push_getxattr) {
		ssize_t l = fs_push_getxattr(n, name, NULL, 0);
		if (l >= 0) {
			char *b = malloc((size_t)l + 1);
			if (b && (l = fs_push_getxattr(n, name, b, (size_t)l + 1)) >= 0)
				reply_xattr(req, b, (size_t)l, size);
			else
				fuse_reply_err(req, b ? (int)-l : ENOMEM);
			free(b);
			fs_node_put(n);
			return;
		}
	}
	volatile int cancel;
	interruptible_begin(req, &cancel);
	int rc = xattr_value(n, name, &val);
	interruptible_end(req);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, val, strlen(val), size);
	free(val);
	fs_node_put(n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_node *n = fs_node_get(ino);
	char buf[512];
	size_t pos = 0;
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (int i = 0; xattr_names[i]; i++) {
		char *val = NULL;
		if (xattr_value(n, xattr_names[i], &val) == 0) {
			size_t l = strlen(xattr_names[i]) + 1;
			memcpy(buf + pos, xattr_names[i], l);
			pos += l;
		}
		free(val);
	}
	if (fs_push_getxattr && fs_push_getxattr(n, "user.ecr.push_state", NULL, 0) >= 0) {
		const char *ps = "user.ecr.push_state";
		memcpy(buf + pos, ps, strlen(ps) + 1);
		pos += strlen(ps) + 1;
	}
	reply_xattr(req, buf, pos, size);
	fs_node_put(n);
}

/* ---- the rest ---- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	memset(&sv, 0, sizeof sv);
	sv.f_bsize = 4096;
	sv.f_frsize = 512;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* nothing buffered on the read side */
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_erofs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			    struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			     struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			      size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_erofs_cfr(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			 struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			 struct fuse_file_info *fi_out, size_t len, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Errors must come back in order: no writeback cache. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	conn->want &= ~FUSE_CAP_READDIRPLUS;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* Reads from the cache are spliced from its files (fs_blob_read). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
}

void fs_ops_build(struct fuse_lowlevel_ops *ops)
{
	memset(ops, 0, sizeof *ops);
	ops->init = op_init;
	ops->lookup = op_lookup;
	ops->forget = op_forget;
	ops->forget_multi = op_forget_multi;
	ops->getattr = op_getattr;
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->releasedir = op_releasedir;
	ops->open = op_open;
	ops->read = op_read;
	ops->release = op_release;
	ops->getxattr = op_getxattr;
	ops->listxattr = op_listxattr;
	ops->statfs = op_statfs;
	ops->flush = op_flush;
	ops->fsync = op_fsync;
	ops->fsyncdir = op_fsyncdir;
	ops->mkdir = op_erofs_mkdir;
	ops->create = op_erofs_create;
	ops->unlink = op_erofs_name;
	ops->rmdir = op_erofs_name;
	ops->removexattr = op_erofs_name;
	ops->rename = op_erofs_rename;
	ops->setattr = op_erofs_setattr;
	ops->setxattr = op_erofs_setxattr;
	ops->copy_file_range = op_erofs_cfr;
	/* The push side wraps or replaces what it needs (the previous
	 * pointers are the read side's, callable for read-only cases). */
	if (fs_ops_write_install && !fs_ctx_get()->ro)
		fs_ops_write_install(ops);
}
