/* The inode table: every name the kernel has looked up is an fs_node.
 *
 * Locking: one mutex (fs_node_lock/fs_node_unlock) protects the table, every
 * node's nlookup/refs counts, its child map (children by name), and the
 * pending-child list (FS_N_PENDING_* children and their `push` pointers).
 * Fields marked "immutable" are set before a node is published and never
 * change, so they may be read without the lock while holding a reference.
 *
 * Lifetime: a node lives while the kernel knows it (nlookup > 0) or someone
 * holds a reference (refs > 0, from fs_node_get / fs_node_ref), or it is a
 * pending node not yet removed (the push side owns that reference). Children
 * hold a reference on their parent.
 *
 * Pending (locally created) entries: the push side adds them with
 * fs_node_add_pending() as children of region, namespace, image or pending
 * directories. LOOKUP, GETATTR and READDIR consult them before the network
 * listing: a pending child shadows a same-named remote entry. GETATTR of a
 * pending node is answered by the push glue (fs/fuse/push_nodes.c). */
#ifndef ECRFS_FS_NODE_H
#define ECRFS_FS_NODE_H

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct fs_image; /* fs/tree/image.h: a loaded image (manifests, layout), refcounted */

enum fs_kind {
	FS_N_ROOT = 1,
	FS_N_CTL_DIR,     /* MNT/.ecrfs */
	FS_N_CTL_FILE,    /* .ecrfs/{stats,identity,version,pending,usage}; ctl = which */
	FS_N_REGISTRY,    /* 12-digit account id; registry set */
	FS_N_REGION,      /* registry, region set */
	FS_N_NAMESPACE,   /* repository path prefix (repo); may also be a repository */
	FS_N_IMAGE,       /* tag dir or @sha256-<hex> dir: an OCI layout root; img set */
	FS_N_IMG_DIR,     /* blobs/ (blob_idx -1) and blobs/sha256/ (blob_idx -2) */
	FS_N_IMG_FILE,    /* oci-layout (-1), index.json (-2), blob (blob_idx >= 0) */
	FS_N_PENDING_DIR, /* created locally by mkdir; push owns `push` */
	FS_N_PENDING_FILE,/* created locally by create; push owns `push` */
	FS_N_VIEW,        /* X@word: the root of a derived view (view set) of the image
	                     or repository X (tree/views.c) */
	FS_N_VIEW_ENTRY,  /* below a view's root: the view's own (view, vptr) */
};

/* The root's inode number (the kernel's FUSE_ROOT_ID). */
#define FS_ROOT_INO 1

enum fs_ctl { FS_CTL_STATS = 1, FS_CTL_IDENTITY, FS_CTL_VERSION, FS_CTL_PENDING, FS_CTL_USAGE };

/* Special blob_idx values for IMG_DIR / IMG_FILE nodes. */
#define FS_IDX_BLOBS (-1)      /* IMG_DIR blobs/ */
#define FS_IDX_SHA256 (-2)     /* IMG_DIR blobs/sha256/ */
#define FS_IDX_OCI_LAYOUT (-1) /* IMG_FILE oci-layout */
#define FS_IDX_INDEX_JSON (-2) /* IMG_FILE index.json */

/* Nodes are the daemon's biggest table (one per name the kernel keeps: a
 * walk of a large TAG@rootfs leaves tens of thousands), so a node is one
 * allocation with its name at the end, and the location strings a child
 * shares with its parent are the parent's (see `owns`). */
struct fs_node {
	uint64_t ino;            /* immutable: the node id the kernel knows */
	struct fs_node *parent;  /* immutable (NULL for root); referenced */
	/* Location (immutable, NULL when not applicable). Each is the node's
	 * own malloc'd copy (its bit in `owns`) or, when equal to its parent's,
	 * the parent's, which lives at least as long as the node. */
	char *registry;          /* 12-digit id */
	char *region;
	char *repo;              /* NAMESPACE: the prefix ("team/app"); IMAGE and
	                            below: the repository name */
	char *tag;               /* IMAGE and below: the tag, NULL for @sha256- dirs */
	char *digest;            /* IMAGE: the image digest ("sha256:<hex>") */
	time_t mtime;            /* IMAGE: imagePushedAt */
	time_t atime;            /* IMAGE: lastRecordedPullTime (0: never), renewed by
	                            each lookup (atomic) */
	struct fs_image *img;    /* IMG_*: immutable, referenced. IMAGE: loaded lazily,
	                            set once under the node lock (fs_node_set_img) */
	void *vdata;             /* VIEW_ENTRY: the view's, immutable (e.g. a rootfs node);
	                            VIEW: loaded lazily under the node lock (fs_node_set_vdata) */
	time_t created;          /* immutable: when the node was made (TTL checks) */

	/* Under the node lock. */
	uint64_t nlookup;        /* kernel references */
	uint64_t refs;           /* internal references */
	struct fs_node *hnext;   /* ino hash chain */
	struct fs_node *cnext;   /* child hash chain, keyed by (parent ino, name) */
	struct fs_node *pend_head, *pend_next; /* pending children of a dir */
	struct fs_node *lru_prev, *lru_next;   /* IMAGE nodes, most recently used first */

	/* Pending entries (push side). `push` is opaque to the read side. */
	void *push;

	enum fs_kind kind;       /* immutable */
	int immutable;           /* IMAGE and below: repository is IMMUTABLE */
	int blob_idx;            /* IMG_DIR/IMG_FILE: see FS_IDX_*, or index in img */
	enum fs_ctl ctl;         /* CTL_FILE */
	int view;                /* VIEW, VIEW_ENTRY: enum fs_view (tree/names.h) */
	int listed;              /* under the lock: reachable by name from its parent
	                            (child hash) */
	int in_lru;              /* under the lock: 0, or the LRU tier (FS_TIER_*) + 1 */
	int pending;             /* under the lock: 1 while listed as a pending child
	                            of parent */
	unsigned char owns;      /* immutable: which location strings are its own
	                            copies (bits: node.c) */
	char name[];             /* immutable */
};

/* Creates the root (ino FS_ROOT_INO). Call once at mount. free_push (may
 * be NULL) is called with a node's `push` when the node is freed, under the
 * node lock: it must take no lock that is held around fs_node_* calls. */
int fs_node_init(void (*free_push)(void *push));
void fs_node_shutdown(void);

void fs_node_lock(void);
void fs_node_unlock(void);

/* Looks up ino and takes a reference; NULL when unknown. */
struct fs_node *fs_node_get(uint64_t ino);
void fs_node_ref(struct fs_node *n);
/* Drops a reference; frees the node when nothing holds it any more. */
void fs_node_put(struct fs_node *n);

/* Kernel accounting: LOOKUP/CREATE/MKDIR replies add one, FORGET removes. */
void fs_node_lookup_inc(struct fs_node *n);
void fs_node_forget(uint64_t ino, uint64_t nlookup);

/* The cached child of dir called name (pending or not), referenced, or NULL. */
struct fs_node *fs_node_child(struct fs_node *dir, const char *name);

/* Template for a new child; unset fields are inherited from the parent
 * (registry, region, repo, tag, img). */
struct fs_node_tmpl {
	enum fs_kind kind;
	const char *registry, *region, *repo, *tag;
	struct fs_image *img; /* a new reference is taken */
	const char *digest;
	time_t mtime;
	time_t atime;
	int immutable;
	int blob_idx;
	enum fs_ctl ctl;
	int view;
	void *vdata;
};

/* Makes dir/name from tmpl, replacing (detaching) an older non-pending child
 * of that name. Returns the new node referenced, or NULL on ENOMEM. */
struct fs_node *fs_node_make(struct fs_node *dir, const char *name,
			     const struct fs_node_tmpl *tmpl);

/* Sets an IMAGE node's img once (takes a reference); returns the node's img
 * (the one already set if another thread won), referenced. */
struct fs_image *fs_node_set_img(struct fs_node *n, struct fs_image *img);
/* The node's img referenced, or NULL. */
struct fs_image *fs_node_img(struct fs_node *n);

/* A VIEW node's data (its view's, freed with the node): set once, the
 * value already set wins (the loser is freed); and read. */
void *fs_node_set_vdata(struct fs_node *n, void *vdata);
void *fs_node_vdata(struct fs_node *n);

/* Detaches dir/name (not pending) so the next lookup rebuilds it. */
void fs_node_drop_child(struct fs_node *dir, const char *name);

/* ---- pending entries (for the push side) ---- */
/* Adds a pending child (kind FS_N_PENDING_DIR or FS_N_PENDING_FILE) of dir
 * with the push pointer. A previous non-pending child of that name is
 * detached (shadowed). Returns the node referenced (the caller passes that
 * reference to fs_node_lookup_inc + the reply, or drops it), or NULL with
 * errno set (EEXIST when a pending child of that name exists). The node
 * stays listed until fs_node_remove_pending(). */
struct fs_node *fs_node_add_pending(struct fs_node *dir, const char *name, enum fs_kind kind,
				    void *push);
/* Whether n is listed as a pending child (`pending`, read under the node
 * lock: the push side's sweeper and commits change it from other threads). */
int fs_node_is_pending(struct fs_node *n);
/* Unlists a pending child (the node itself lives until FORGET). */
void fs_node_remove_pending(struct fs_node *n);
/* Unlists every pending descendant of n (a settled or committed tag
 * directory), and n itself when self and pending; each lives until FORGET.
 * The caller holds a reference on n. */
void fs_node_remove_pending_tree(struct fs_node *n, int self);
/* Calls fn(node, arg) for each pending child of dir, under the node lock
 * (fn must not call fs_node_* functions that lock). */
void fs_node_foreach_pending(struct fs_node *dir, void (*fn)(struct fs_node *, void *),
			     void *arg);

/* Path of a node from the root ("/111111111111/us-east-1/team/app/v1"), malloc'd. */
char *fs_node_path(struct fs_node *n);

/* Image directories the kernel may keep are bounded, in two tiers: those
 * whose image is loaded (its manifests, layout and child nodes: some KiB
 * each) and those only listed or looked up (the node alone, about 300
 * bytes, many at once after READDIRPLUS of a large repository); the kernel
 * only forgets nodes under memory pressure. fs_node_touch marks an IMAGE
 * node used (LOOKUP, READDIRPLUS); loading its image moves it to the
 * loaded tier. fs_node_images_over hands out (referenced, at most max) the
 * least recently used IMAGE nodes beyond bound[tier] of each tier, for the
 * caller to ask the kernel to drop their entries (it then FORGETs them
 * unless they are in use). Each is handed out once, then counts as used
 * again. */
enum { FS_TIER_LISTED, FS_TIER_LOADED };
void fs_node_touch(struct fs_node *n);
size_t fs_node_images_over(const size_t bound[2], struct fs_node **out, size_t max);

/* Nodes in the table (for .ecrfs/stats). */
size_t fs_node_count(void);

/* Hash for stable inode numbers shown to users (st_ino of blobs). */
uint64_t fs_hash64(const char *const *parts, size_t nparts);

#endif
