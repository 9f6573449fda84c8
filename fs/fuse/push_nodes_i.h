/* What the push glue's files share (push_nodes.c, write_files.c,
 * write_names.c): the record of a pending node (struct wnode, n->push),
 * where a directory stands in a push, and the glue's state. */
#ifndef ECRFS_FS_FUSE_PUSH_NODES_I_H
#define ECRFS_FS_FUSE_PUSH_NODES_I_H

#include <pthread.h>
#include <time.h>

#include "fs/fuse/fuse_i.h"
#include "fs/fuse/push_nodes.h"
#include "fs/push/pending.h"
#include "fs/push/push_remote.h"

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

struct where {
	pending_version *v; /* NULL: not inside a tag */
	const char *prefix; /* "", "blobs", "blobs/sha256" */
	struct wnode *dirw; /* the pending dir's wnode, if pending */
	int could_be_tag;   /* a W_DIR: becomes a tag with its first layout file */
};

/* wmu protects: wnode kind/v/rel changes, the remotes and tagdirs tables.
 * Taken before the node lock, never inside it: wnodes are freed from the
 * node table's free hook without it. */
extern pthread_mutex_t wmu;
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
extern struct wremote *remotes;
extern struct wtagdir *tagdirs;
extern pending *P;
extern struct fs_ctx *pside_ctx;

struct wnode *wnode_new(enum wkind kind);
void wnode_get(struct wnode *w);
/* The record of a pending node, NULL for other nodes. */
struct wnode *wn(const struct fs_node *n);
int version_for(const char *registry, const char *region, const char *repo, const char *tag,
		pending_version **out);
/* Remembers dir as a tag directory of v (for the commit's invalidation). */
void tagdir_note(pending_version *v, struct fs_node *dir);
/* Notes the IMAGE node at or above n (a committed tag being rewritten). */
void note_image_of(pending_version *v, struct fs_node *n);
/* Makes the W_DIR dir a tag (repository created first). */
int become_tag(struct fs_node *dir, struct wnode *w);
int where_of(struct fs_node *dir, struct where *wh);
/* The directory of a MKDIR or CREATE (referenced, NULL when unknown: the
 * caller puts it either way) and where it stands. */
int dir_where(fuse_ino_t parent, struct fs_node **dir, struct where *wh);
char *rel_join(const char *prefix, const char *name);
/* Replies with a new pending entry (CREATE when fi); non-zero when the
 * kernel did not take it (then the caller releases what fi holds). */
int reply_new_entry(fuse_req_t req, struct fs_node *n, struct fuse_file_info *fi);
/* Adds a pending child, replacing a pending one of that name. */
struct fs_node *add_pending(struct fs_node *dir, const char *name, enum fs_kind kind,
			    struct wnode *w);
/* The pending tag directories of v give way to what ECR now lists. */
void settle(pending_version *v);
pending_version *version_of_node(struct fs_node *n);
/* The remote of a repository, kept for the mount. */
struct push_remote *remote_for(const char *registry, const char *region, const char *repo);
/* Pending children of dir. */
int count_pending(struct fs_node *dir);
/* Splits "team/app/v2" into repo "team/app" and tag "v2"; EINVAL (logged)
 * when they are not a valid repository name and tag. */
int split_tag_path(const char *path, char *repo, size_t rs, const char **tag);

#endif
