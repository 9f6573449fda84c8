/* Replies and request plumbing the handlers share. */
#include <errno.h>
#include <string.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"
#include "fs/tree/tree.h"
#include "net/http.h"

int user_errno(int rc)
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

void req_interrupted(fuse_req_t req, void *data)
{
	__atomic_store_n((volatile int *)data, 1, __ATOMIC_RELAXED);
}

void interruptible_begin(fuse_req_t req, volatile int *cancel)
{
	*cancel = 0;
	fuse_req_interrupt_func(req, req_interrupted, (void *)cancel);
	net_http_thread_cancel(cancel);
}

void interruptible_end(fuse_req_t req)
{
	net_http_thread_cancel(NULL);
	fuse_req_interrupt_func(req, NULL, NULL);
}

int node_getattr(struct fs_ctx *c, struct fs_node *n, struct stat *st)
{
	if (n->kind == FS_N_PENDING_DIR || n->kind == FS_N_PENDING_FILE)
		return pnode_getattr(c, n, st);
	return fs_tree_getattr(c, n, st);
}

int reply_entry(fuse_req_t req, struct fs_node *n, double entry_ttl, double attr_ttl,
		struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	int rc = node_getattr(req_ctx(req), n, &e.attr);
	if (rc) {
		fuse_reply_err(req, -rc);
		return rc;
	}
	e.ino = n->ino;
	e.attr_timeout = attr_ttl;
	e.entry_timeout = entry_ttl;
	fs_node_lookup_inc(n);
	rc = fi ? fuse_reply_create(req, &e, fi) : fuse_reply_entry(req, &e);
	if (rc != 0)
		fs_node_forget(n->ino, 1);
	return rc;
}

void reply_xattr(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}
