/* LOOKUP, FORGET, GETATTR, STATFS. */
#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/notify.h"
#include "fs/tree/tree.h"

/* Image directories the kernel keeps are bounded (fs_node_images_over):
 * the kernel forgets nodes only under memory pressure, so a mount browsing
 * many tags would grow without it. Those with their image loaded hold it
 * in memory; the others are the node alone (about half a KiB), so many
 * more are kept: a READDIRPLUS of a large repository makes one for every
 * tag, and `ls -l` then stats them all. */
static const size_t images_kept[2] = {[FS_TIER_LISTED] = 16384, [FS_TIER_LOADED] = 2048};

void drop_old_images(void)
{
	struct fs_node *v[16];
	size_t n;
	do {
		n = fs_node_images_over(images_kept, v, 16);
		for (size_t i = 0; i < n; i++) {
			if (v[i]->parent)
				fs_notify_drop_entry(v[i]->parent->ino, v[i]->name);
			fs_node_put(v[i]);
		}
	} while (n == 16);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *dir = fs_node_get(parent), *n = NULL;
	fs_op_count(c, FS_OP_LOOKUP, 1);
	if (!dir) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	int hidden = fs_tree_hidden(dir, name, time(NULL)), rc = -ENOENT;
	if (!hidden) {
		volatile int cancel;
		interruptible_begin(req, &cancel);
		rc = fs_tree_lookup(c, dir, name, &n);
		interruptible_end(req);
	}
	if (rc == -ENOENT) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof e);
		e.entry_timeout = fs_tree_neg_ttl(c, dir, hidden);
		fuse_reply_entry(req, &e);
	} else if (rc) {
		fuse_reply_err(req, user_errno(rc));
	} else {
		fs_node_touch(n);
		reply_entry(req, n, fs_tree_entry_ttl(c, n), fs_tree_attr_ttl(c, n), NULL);
		fs_node_put(n);
		drop_old_images();
	}
	fs_node_put(dir);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_op_count(req_ctx(req), FS_OP_FORGET, 1);
	fs_node_forget(ino, nlookup);
	fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fs_op_count(req_ctx(req), FS_OP_FORGET, count);
	for (size_t i = 0; i < count; i++)
		fs_node_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = req_ctx(req);
	struct fs_node *n = fs_node_get(ino);
	struct stat st;
	fs_op_count(c, FS_OP_GETATTR, 1);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* A name hidden by `rm` is gone for path lookups, not for open files. */
	int hidden = !fi && n->parent && (n->kind == FS_N_IMG_FILE || n->kind == FS_N_IMG_DIR) &&
		     fs_tree_hidden(n->parent, n->name, time(NULL));
	int rc = hidden ? -ENOENT : node_getattr(c, n, &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs_tree_attr_ttl(c, n));
	fs_node_put(n);
}

void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	memset(&sv, 0, sizeof sv);
	sv.f_bsize = 4096;
	sv.f_frsize = 512;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}
