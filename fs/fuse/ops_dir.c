/* OPENDIR, READDIR, READDIRPLUS, RELEASEDIR: a listing is taken at OPENDIR
 * and served from its handle, so a `ls` sees one consistent snapshot.
 * READDIRPLUS answers each name as a LOOKUP would (a node, its attributes,
 * a kernel reference), so `ls -l` and `find` over a large directory send
 * no LOOKUP per entry. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fuse/fuse_i.h"
#include "fs/tree/tree.h"

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	struct fs_fh *h = fh_new(FH_DIR);
	int rc = -ENOMEM;
	fs_op_count(c, FS_OP_OPENDIR, 1);
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (!h)
		goto out;
	volatile int cancel;
	interruptible_begin(req, &cancel);
	rc = fs_tree_list(c, n, &h->dir);
	interruptible_end(req);
	if (rc || (rc = fh_insert(c->fhs, h, &fi->fh)) != 0)
		goto out;
	fi->cache_readdir = h->dir.cacheable;
	fi->keep_cache = fi->cache_readdir;
	/* An interrupted opendir never gets a RELEASEDIR. */
	if (fuse_reply_open(req, fi) != 0)
		fh_put(fh_remove(c->fhs, fi->fh));
out:
	if (rc)
		fuse_reply_err(req, user_errno(rc));
	fh_put(h);
	fs_node_put(n);
}

/* Offsets: 1 = ".", 2 = "..", 3+i = entry i. */
static size_t fill(fuse_req_t req, fuse_ino_t ino, const struct fs_dirlist *l, char *buf,
		   size_t size, off_t off)
{
	size_t pos = 0;
	for (off_t i = off; i < (off_t)l->n + 2; i++) {
		struct stat st;
		memset(&st, 0, sizeof st);
		const char *name;
		if (i < 2) {
			name = i == 0 ? "." : "..";
			st.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
			st.st_mode = S_IFDIR;
		} else {
			name = l->v[i - 2].name;
			st.st_ino = l->v[i - 2].ino;
			st.st_mode = l->v[i - 2].type;
		}
		size_t need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, i + 1);
		if (need > size - pos)
			break;
		pos += need;
	}
	return pos;
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct fs_fh *h = fh_get(req_ctx(req)->fhs, fi->fh);
	char *buf = malloc(size);
	fs_op_count(req_ctx(req), FS_OP_READDIR, 1);
	if (!h || h->kind != FH_DIR || !buf)
		fuse_reply_err(req, !buf ? ENOMEM : EBADF);
	else
		fuse_reply_buf(req, buf, fill(req, ino, &h->dir, buf, size, off));
	free(buf);
	fh_put(h);
}

/* The entry of listed name d as a LOOKUP would answer it: its node
 * (referenced, into *node) and attributes; a plain entry (no node: the
 * kernel looks the name up itself if it needs it) when dir's names are not
 * for READDIRPLUS, the name is hidden now, or its lookup failed. */
static void plus_entry(struct fs_ctx *c, struct fs_node *dir, const struct fs_dirent *d,
		       struct fuse_entry_param *e, struct fs_node **node)
{
	struct fs_node *n = NULL;
	memset(e, 0, sizeof *e);
	e->attr.st_ino = d->ino;
	e->attr.st_mode = d->type;
	*node = NULL;
	if (!fs_tree_list_plus(dir) || fs_tree_hidden(dir, d->name, time(NULL)) ||
	    fs_tree_lookup(c, dir, d->name, &n) != 0)
		return;
	if (node_getattr(c, n, &e->attr) != 0) {
		memset(&e->attr, 0, sizeof e->attr);
		e->attr.st_ino = d->ino;
		e->attr.st_mode = d->type;
		fs_node_put(n);
		return;
	}
	e->ino = n->ino;
	e->entry_timeout = fs_tree_entry_ttl(c, n);
	e->attr_timeout = fs_tree_attr_ttl(c, n);
	*node = n;
}

/* Fills buf from offset off (as fill); the nodes given to the kernel go to
 * given[] (*ngiven), each with a kernel reference taken before the reply,
 * as a LOOKUP reply takes it. */
static size_t fill_plus(fuse_req_t req, struct fs_node *dir, const struct fs_dirlist *l,
			char *buf, size_t size, off_t off, struct fs_node **given, size_t *ngiven)
{
	struct fs_ctx *c = req_ctx(req);
	size_t pos = 0;
	*ngiven = 0;
	for (off_t i = off; i < (off_t)l->n + 2; i++) {
		struct fuse_entry_param e;
		struct fs_node *n = NULL;
		const char *name = i == 0 ? "." : "..";
		if (i < 2) {
			/* The kernel links no node for these. */
			memset(&e, 0, sizeof e);
			e.attr.st_ino = i == 0 ? dir->ino : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			name = l->v[i - 2].name;
			plus_entry(c, dir, &l->v[i - 2], &e, &n);
		}
		size_t need = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, i + 1);
		if (need > size - pos) {
			fs_node_put(n);
			break;
		}
		pos += need;
		if (n) {
			fs_node_lookup_inc(n);
			given[(*ngiven)++] = n;
		}
	}
	return pos;
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_fh *h = fh_get(c->fhs, fi->fh);
	struct fs_node *dir = fs_node_get(ino);
	char *buf = malloc(size);
	/* An entry takes at least 152 bytes (entry_out, attributes, dirent). */
	struct fs_node **given = calloc(size / 128 + 1, sizeof *given);
	size_t ngiven = 0;
	fs_op_count(c, FS_OP_READDIRPLUS, 1);
	if (!h || h->kind != FH_DIR || !dir || !buf || !given) {
		fuse_reply_err(req, !buf || !given ? ENOMEM : !dir ? ENOENT : EBADF);
		goto out;
	}
	volatile int cancel;
	interruptible_begin(req, &cancel);
	size_t len = fill_plus(req, dir, &h->dir, buf, size, off, given, &ngiven);
	interruptible_end(req);
	/* Entries the kernel did not take (an interrupted request) get no FORGET. */
	int lost = fuse_reply_buf(req, buf, len) != 0;
	__atomic_add_fetch(&c->plus_entries, lost ? 0 : ngiven, __ATOMIC_RELAXED);
	for (size_t i = 0; i < ngiven; i++) {
		if (lost)
			fs_node_forget(given[i]->ino, 1);
		else
			fs_node_touch(given[i]);
		fs_node_put(given[i]);
	}
	drop_old_images();
out:
	free(given);
	free(buf);
	fs_node_put(dir);
	fh_put(h);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fh_put(fh_remove(req_ctx(req)->fhs, fi->fh));
	fuse_reply_err(req, 0);
}
