/* Shared by view_rootfs.c (the views' nodes) and view_rootfs_build.c (the
 * per-image state: layers, indexes, trees, the build). */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_I_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_I_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "fs/rootfs/rootfs.h"
#include "fs/tree/kinds_i.h"

struct rfs_held;

struct rfs_layer {
	char digest[72];
	uint64_t size;
	struct rootfs_index *ix; /* set once by its worker, before the image is ready */
	const char *source;	 /* where ix came from: RFS_SRC_LOCAL, a table name, RFS_SRC_BUILT */
	int zstd;		 /* its media type says zstd */
	int ranged;		 /* ix is from a TOC: every span checked, read by range */
	char *media_type;	 /* the descriptor's, or NULL */
	json_t *annot;		 /* the descriptor's annotations (a reference), or NULL */
	size_t plat, pos;	 /* the first platform naming it, and its place there */
	int copy_fd;		 /* zstd: the decompressed copy, else -1 */
	int pin_ix, pin_copy;	 /* its files are pinned in the cache */
	int not_tar;		 /* its content is no tar archive (verified) */
	struct rfs_held *held;	 /* the shared index it uses, or NULL: its own */
	uint64_t fed;		 /* bytes streamed so far (atomic) */
	/* Once a span of a TOC-made ix failed its digest: the index built here
	 * that reads use instead (the trees keep ix), or disagrees set when its
	 * entries differ from ix's (view_rootfs_fallback.c: read_ix is set once,
	 * atomically; disagrees under its lock). */
	struct rootfs_index *read_ix;
	int disagrees;
};

struct rfs_plat {
	char name[64];	 /* "linux_arm_v7"; "" for a single manifest */
	char digest[72]; /* its manifest: the namespace of inode numbers */
	char *manifest;	 /* its bytes (checked against digest), for the index sources */
	size_t manifest_len;
	size_t *lay;	 /* indexes into rfs_image.layers, base first */
	size_t n;
	struct rootfs_index **ixs;   /* the layers' indexes, base first */
	struct rootfs_tree *merged;  /* once ready */
	struct rootfs_tree **ltrees; /* TAG@layers/N, made on first use under mu */
};

enum rfs_state { RFS_IDLE = 0, RFS_BUILDING, RFS_READY, RFS_FAILED };

/* One image's state, shared by its TAG@rootfs and TAG@layers nodes and
 * the open files under them; found by digest in a per-process table. */
struct rfs_image {
	int refs;  /* under the table's lock */
	char *key; /* registry/region/repo@digest */
	char *registry, *region, *repo, *digest;
	struct fs_ctx *c;
	/* mu protects state, err, next, running, the ltrees slots; cv is
	 * signalled when the build ends. Never held over I/O. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum rfs_state state;
	int err;
	char *errmsg; /* what user.ecr.rootfs_state says after "error: ", or NULL */
	size_t next, running;
	/* bytes the index sources read (atomic): progress for the wait, though
	 * not part of "building NN%" */
	uint64_t probed;
	struct rfs_layer *layers;
	size_t nlayers;
	struct rfs_plat *plats;
	size_t nplats;
	int is_index;
};

/* The image of a view node (VIEW or VIEW_ENTRY), referenced, ready, or
 * -errno; starts the build and waits while it makes progress (the calling
 * thread's cancel flag ends the wait). */
int rfs_image_ready(struct fs_ctx *c, struct fs_node *n, struct rfs_image **out);
/* The image of a node when already ready, referenced, or NULL. */
struct rfs_image *rfs_image_peek(const struct fs_node *n);
void rfs_image_put(struct rfs_image *im);
/* "building 37%", "ready (estargz)", "ready (local index, built)", an
 * error or "not built". */
char *rfs_image_state(const struct fs_node *n);
/* Layer tree k of platform p (made on first use), or NULL. */
struct rootfs_tree *rfs_layer_tree(struct rfs_image *im, size_t p, size_t k);
/* Reads the uncompressed stream of layer L of im (span cache, verified). */
ssize_t rfs_read_layer(struct rfs_image *im, struct rfs_layer *L, uint64_t off, void *buf,
		       size_t len, volatile int *cancel);

/* Fills im's platforms and layers from the image's manifests
 * (view_rootfs_plats.c); -ENOENT for an artifact. */
int rfs_image_parse(struct rfs_image *im, const struct fs_image *img);

/* L's index from the first source that has it (view_rootfs_sources.c): an
 * index another image holds, the cache, the sources' table, the local
 * build. Index files it uses stay pinned in the cache until
 * rfs_layer_unpin. */
int rfs_layer_get(struct rfs_image *im, struct rfs_layer *L);
/* The two ends of that chain (view_rootfs_layer.c): the index saved in
 * cache_dir/index (-ENOENT or -EBADMSG when there is none to use), and the
 * build that streams the layer once and saves its index. */
int rfs_layer_load(struct rfs_image *im, struct rfs_layer *L, const char *dir);
int rfs_layer_build(struct rfs_image *im, struct rfs_layer *L, const char *dir);
void rfs_layer_unpin(struct rfs_image *im, struct rfs_layer *L);
void rfs_layer_unpin_in(cache *cc, struct rfs_layer *L);
/* Exactly len bytes at off of L's blob by range: 0 or -errno. */
int rfs_layer_pread(struct rfs_image *im, struct rfs_layer *L, uint64_t off, void *buf,
		    size_t len, volatile int *cancel);
/* A whole blob of im's repository checked against digest; *buf malloc'd. */
int rfs_blob_fetch(struct rfs_image *im, const char *digest, uint64_t size, void **buf);

/* The index reads of L use (ix, or read_ix after a fallback). */
const struct rootfs_index *rfs_read_index(struct rfs_layer *L);
/* A span of L's TOC-made index failed its digest: builds L here once and
 * returns the index to read with from now on, or NULL (-EIO stays). */
const struct rootfs_index *rfs_layer_fallback(struct rfs_image *im, struct rfs_layer *L);

/* Indexes in memory shared by layer digest (view_rootfs_held.c). find:
 * 1 when L now uses a held index (ix, copy_fd, source, ranged set). add:
 * L's new index becomes the held one (its pins move there). put: lets go
 * of L's index (the last user frees it and unpins its files). */
int rfs_held_find(struct rfs_layer *L);
void rfs_held_add(struct rfs_image *im, struct rfs_layer *L);
void rfs_held_put(struct rfs_image *im, struct rfs_layer *L);
uint64_t rfs_held_count(void);

/* Set at unmount: builds stop (the streams' cancel flag). */
volatile int *rfs_stop_flag(void);
/* The process's one span cache (made on first use), or NULL. */
struct rootfs_spans *rfs_spans(void);

/* Counters for .ecrfs/stats (atomic). */
extern uint64_t rfs_st_builds, rfs_st_failures, rfs_st_loads, rfs_st_tocs;
/* The sources of the layers' indexes for the state line, into out. */
void rfs_sources_describe(const struct rfs_image *im, char *out, size_t size);

enum where_kind { W_TREE = 0, W_PLATS, W_LAYERS };

/* What a node of the views stands for. */
struct where {
	struct rfs_image *im; /* referenced */
	enum where_kind kind;
	size_t p;	       /* platform (W_LAYERS, W_TREE) */
	int idx;	       /* blob_idx of the tree's nodes (W_TREE) */
	struct rootfs_tree *t; /* W_TREE */
	const struct rootfs_node *rn;
};

/* What node n of the views stands for; wait: start the build and wait
 * for it (else -ENOENT unless ready). w->im is referenced on success. */
int rfs_where(struct fs_ctx *c, struct fs_node *n, int wait, struct where *w);

extern const struct fs_view_ops view_rootfs_ops, view_layers_ops;

/* 1 when a config media type (DescribeImages' artifactMediaType) is not an
 * image's: the image is an artifact and has no rootfs. NULL: 0. */
int rfs_config_is_artifact(const char *config_media_type);

#endif
