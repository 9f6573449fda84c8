/* OPENDIR, READDIR, RELEASEDIR: a listing is taken at OPENDIR and served
 * from its handle, so a `ls` sees one consistent snapshot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fuse/fuse_i.h"
#include "fs/tree/tree.h"

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	struct fs_fh *h = fh_new(FH_DIR);
	int rc = -ENOMEM;
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
	if (!h || h->kind != FH_DIR || !buf)
		fuse_reply_err(req, !buf ? ENOMEM : EBADF);
	else
		fuse_reply_buf(req, buf, fill(req, ino, &h->dir, buf, size, off));
	free(buf);
	fh_put(h);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fh_put(fh_remove(req_ctx(req)->fhs, fi->fh));
	fuse_reply_err(req, 0);
}
