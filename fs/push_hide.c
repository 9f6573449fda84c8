/* Names hidden in committed images of this mount (see push_hide.h). */
#include "fs/push_hide.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "fs/image.h"

struct hidden {
	char *img;    /* "registry/region/repo/dirname" of the image directory */
	char *digest; /* the image's digest when hidden */
	char *rel;    /* name relative to the image directory */
	time_t until;
	struct hidden *next;
};

/* Protects hidden (the list and every entry). */
static pthread_mutex_t hide_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hidden *hidden;

static void entry_free(struct hidden *h)
{
	free(h->img);
	free(h->digest);
	free(h->rel);
	free(h);
}

/* Drops expired entries; hide_mu held. */
static void prune_locked(time_t now)
{
	struct hidden **pp = &hidden;
	while (*pp) {
		struct hidden *h = *pp;
		if (h->until <= now) {
			*pp = h->next;
			entry_free(h);
		} else {
			pp = &h->next;
		}
	}
}

/* The image directory at or above n, or NULL. */
static struct fs_node *image_dir(struct fs_node *n)
{
	while (n && n->kind != FS_N_IMAGE)
		n = n->parent;
	return n;
}

static char *image_key(struct fs_node *img)
{
	char *s = NULL;
	if (!img->registry || !img->region || !img->repo)
		return NULL;
	if (asprintf(&s, "%s/%s/%s/%s", img->registry, img->region, img->repo, img->name) < 0)
		return NULL;
	return s;
}

/* Name of dir/name relative to the image directory (malloc'd), or NULL. */
static char *rel_of(struct fs_node *dir, const char *name)
{
	const char *prefix;
	char *s = NULL;

	if (dir->kind == FS_N_IMAGE)
		prefix = "";
	else if (dir->kind == FS_N_IMG_DIR && dir->blob_idx == FS_IDX_BLOBS)
		prefix = "blobs/";
	else if (dir->kind == FS_N_IMG_DIR && dir->blob_idx == FS_IDX_SHA256)
		prefix = "blobs/sha256/";
	else
		return NULL;
	return asprintf(&s, "%s%s", prefix, name) < 0 ? NULL : s;
}

int push_hide_add(struct fs_node *dir, const char *name, time_t until)
{
	struct fs_node *img = image_dir(dir);
	struct hidden *h;

	if (!img || !img->digest)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->img = image_key(img);
	h->digest = strdup(img->digest);
	h->rel = rel_of(dir, name);
	h->until = until;
	if (!h->img || !h->digest || !h->rel) {
		entry_free(h);
		return -ENOMEM;
	}
	pthread_mutex_lock(&hide_mu);
	prune_locked(time(NULL));
	h->next = hidden;
	hidden = h;
	pthread_mutex_unlock(&hide_mu);
	return 0;
}

/* Whether an entry matches (rel NULL: any name of that image); hide_mu held. */
static int match_locked(const char *key, const char *digest, const char *rel, time_t now)
{
	for (struct hidden *h = hidden; h; h = h->next)
		if (h->until > now && !strcmp(h->img, key) && !strcmp(h->digest, digest) &&
		    (!rel || !strcmp(h->rel, rel)))
			return 1;
	return 0;
}

static int lookup(struct fs_node *dir, const char *name, time_t now)
{
	struct fs_node *img = image_dir(dir);
	char *key, *rel = NULL;
	int r = 0;

	if (!img || !img->digest)
		return 0;
	pthread_mutex_lock(&hide_mu);
	r = hidden != NULL;
	pthread_mutex_unlock(&hide_mu);
	if (!r)
		return 0; /* the usual case: nothing hidden, nothing allocated */
	key = image_key(img);
	if (name)
		rel = rel_of(dir, name);
	r = 0;
	if (key && (!name || rel)) {
		pthread_mutex_lock(&hide_mu);
		r = match_locked(key, img->digest, rel, now);
		pthread_mutex_unlock(&hide_mu);
	}
	free(key);
	free(rel);
	return r;
}

int push_hide_is(struct fs_node *dir, const char *name, time_t now)
{
	return lookup(dir, name, now);
}

int push_hide_node(struct fs_node *n, time_t now)
{
	if ((n->kind != FS_N_IMG_FILE && n->kind != FS_N_IMG_DIR) || !n->parent)
		return 0;
	return lookup(n->parent, n->name, now);
}

int push_hide_any(struct fs_node *dir, time_t now)
{
	return lookup(dir, NULL, now);
}

void push_hide_forget(const char *registry, const char *region, const char *repo,
		      const char *name)
{
	char *key = NULL;
	struct hidden **pp;

	if (asprintf(&key, "%s/%s/%s/%s", registry, region, repo, name) < 0)
		return;
	pthread_mutex_lock(&hide_mu);
	for (pp = &hidden; *pp;) {
		struct hidden *h = *pp;
		if (!strcmp(h->img, key)) {
			*pp = h->next;
			entry_free(h);
		} else {
			pp = &h->next;
		}
	}
	pthread_mutex_unlock(&hide_mu);
	free(key);
}

/* ---- the FUSE side: what LOOKUP, GETATTR and READDIR show ---- */

static void (*prev_lookup)(fuse_req_t, fuse_ino_t, const char *);
static void (*prev_getattr)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*prev_opendir)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*prev_readdir)(fuse_req_t, fuse_ino_t, size_t, off_t, struct fuse_file_info *);
static void (*prev_releasedir)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

/* A listing of an image directory with hidden names left out, taken at
 * OPENDIR. Its handle carries bit 0 (the read side's are aligned pointers). */
struct hsnap {
	struct hsnap *prev, *next; /* open listings (snap_mu), freed at unmount */
	char **names;
	mode_t *types;
	uint64_t *inos;
	size_t n;
};

#define HS_TAG 1u
/* Protects snaps: listings an interrupted OPENDIR never releases. */
static pthread_mutex_t snap_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hsnap snaps = { &snaps, &snaps, NULL, NULL, NULL, 0 };

static int is_image_dir(const struct fs_node *n)
{
	return n->kind == FS_N_IMAGE || n->kind == FS_N_IMG_DIR;
}

static void hsnap_free(struct hsnap *s)
{
	pthread_mutex_lock(&snap_mu);
	if (s->next) {
		s->prev->next = s->next;
		s->next->prev = s->prev;
	}
	pthread_mutex_unlock(&snap_mu);
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->types);
	free(s->inos);
	free(s);
}

/* d_ino of a name that is not a blob, as the read side numbers it. */
static uint64_t name_ino(const struct fs_node *dir, const char *name)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lu", (unsigned long)dir->ino);
	const char *parts[2] = { buf, name };
	return fs_hash64(parts, 2) | (1ULL << 62);
}

static int hsnap_add(struct hsnap *s, struct fs_node *dir, const char *name, mode_t type,
		     uint64_t ino, time_t now)
{
	if (push_hide_is(dir, name, now))
		return 0;
	s->names[s->n] = strdup(name);
	if (!s->names[s->n])
		return -ENOMEM;
	s->types[s->n] = type;
	s->inos[s->n] = ino ? ino : name_ino(dir, name);
	s->n++;
	return 0;
}

/* The names an image directory has (as the read side lists them), minus
 * the hidden ones. */
static int hsnap_build(struct fs_node *dir, struct hsnap *s)
{
	time_t now = time(NULL);
	size_t cap = 3;
	int rc = 0;

	if (dir->kind == FS_N_IMG_DIR && dir->blob_idx == FS_IDX_SHA256)
		cap = dir->img->nblobs;
	s->names = calloc(cap + 1, sizeof(*s->names));
	s->types = calloc(cap + 1, sizeof(*s->types));
	s->inos = calloc(cap + 1, sizeof(*s->inos));
	if (!s->names || !s->types || !s->inos)
		return -ENOMEM;
	if (dir->kind == FS_N_IMAGE) {
		rc = hsnap_add(s, dir, "oci-layout", S_IFREG, 0, now);
		if (rc == 0)
			rc = hsnap_add(s, dir, "index.json", S_IFREG, 0, now);
		if (rc == 0)
			rc = hsnap_add(s, dir, "blobs", S_IFDIR, 0, now);
	} else if (dir->blob_idx == FS_IDX_BLOBS) {
		rc = hsnap_add(s, dir, "sha256", S_IFDIR, 0, now);
	} else {
		for (size_t i = 0; rc == 0 && i < dir->img->nblobs; i++)
			rc = hsnap_add(s, dir, dir->img->blobs[i].hex, S_IFREG,
				       dir->img->blobs[i].st_ino, now);
	}
	return rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_node *dir = fs_node_get(parent);
	int hide = dir && is_image_dir(dir) && push_hide_is(dir, name, time(NULL));

	fs_node_put(dir);
	if (hide) {
		/* Not cached (timeout 0): the name comes back when the entry expires. */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		fuse_reply_entry(req, &e);
		return;
	}
	prev_lookup(req, parent, name);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n = fi ? NULL : fs_node_get(ino);
	int hide = n && push_hide_node(n, time(NULL));

	fs_node_put(n);
	if (hide) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	prev_getattr(req, ino, fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node *n = fs_node_get(ino);
	struct hsnap *s = NULL;
	int rc;

	if (!n || !is_image_dir(n) || !push_hide_any(n, time(NULL)) ||
	    (n->kind == FS_N_IMG_DIR && !n->img)) {
		fs_node_put(n);
		prev_opendir(req, ino, fi);
		return;
	}
	rc = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (s)
		rc = hsnap_build(n, s);
	fs_node_put(n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		if (s)
			hsnap_free(s);
		return;
	}
	pthread_mutex_lock(&snap_mu);
	s->next = snaps.next;
	s->prev = &snaps;
	snaps.next->prev = s;
	snaps.next = s;
	pthread_mutex_unlock(&snap_mu);
	fi->fh = (uint64_t)(uintptr_t)s | HS_TAG;
	fi->cache_readdir = 0;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) != 0)
		hsnap_free(s);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct hsnap *s;
	char *buf;
	size_t pos = 0;

	if (!(fi->fh & HS_TAG)) {
		prev_readdir(req, ino, size, off, fi);
		return;
	}
	s = (struct hsnap *)(uintptr_t)(fi->fh & ~(uint64_t)HS_TAG);
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Offsets as the read side's: 1 = ".", 2 = "..", 3+i = entry i. */
	for (off_t i = off; i < (off_t)s->n + 2; i++) {
		struct stat st;
		const char *name;
		size_t need;

		memset(&st, 0, sizeof(st));
		st.st_mode = S_IFDIR;
		if (i == 0) {
			name = ".";
			st.st_ino = ino;
		} else if (i == 1) {
			name = "..";
			st.st_ino = FUSE_ROOT_ID;
		} else {
			name = s->names[i - 2];
			st.st_ino = s->inos[i - 2];
			st.st_mode = s->types[i - 2];
		}
		need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, i + 1);
		if (need > size - pos)
			break;
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!(fi->fh & HS_TAG)) {
		prev_releasedir(req, ino, fi);
		return;
	}
	hsnap_free((struct hsnap *)(uintptr_t)(fi->fh & ~(uint64_t)HS_TAG));
	fuse_reply_err(req, 0);
}

void push_hide_install(struct fuse_lowlevel_ops *ops)
{
	prev_lookup = ops->lookup;
	prev_getattr = ops->getattr;
	prev_opendir = ops->opendir;
	prev_readdir = ops->readdir;
	prev_releasedir = ops->releasedir;
	ops->lookup = op_lookup;
	ops->getattr = op_getattr;
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->releasedir = op_releasedir;
}

void push_hide_free(void)
{
	pthread_mutex_lock(&snap_mu);
	while (snaps.next != &snaps) {
		struct hsnap *s = snaps.next;
		pthread_mutex_unlock(&snap_mu);
		hsnap_free(s);
		pthread_mutex_lock(&snap_mu);
	}
	pthread_mutex_unlock(&snap_mu);
	pthread_mutex_lock(&hide_mu);
	while (hidden) {
		struct hidden *h = hidden;
		hidden = h->next;
		entry_free(h);
	}
	pthread_mutex_unlock(&hide_mu);
}
