/* Shared by view_rootfs.c (the views' nodes) and view_rootfs_build.c (the
 * per-image state: layers, indexes, trees, the build). */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_I_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_I_H

#include <pthread.h>
#include <stdint.h>

#include "fs/rootfs/rootfs.h"
#include "fs/tree/kinds_i.h"

struct rfs_layer {
	char digest[72];
	uint64_t size;
	struct rootfs_index *ix; /* set once by its worker, before the image is ready */
	int local;		 /* loaded from cache_dir/index */
	int zstd;		 /* its media type says zstd */
	int copy_fd;		 /* zstd: the decompressed copy, else -1 */
	uint64_t fed;		 /* bytes streamed so far (atomic) */
	/* Where ix came from: NULL built here, "local index" (cache_dir),
	 * "soci v2", "soci v1", or "local build" (built after an index
	 * source was refused or disagreed with the layer). */
	const char *source;
	int refused; /* an index source was offered and not used */
	const char *foreign; /* the source of ix when not ecrfs's (set once) */
	/* A zTOC for this layer (find_soci, under the image's soci_mu). */
	char ztoc[72];
	uint64_t ztoc_size;
	int ztoc_ver;
	/* Reads use this index once a foreign index's span failed its digest
	 * (fallback_mu in view_rootfs_layer.c); ix stays, the trees use it. */
	struct rootfs_index *read_ix;
	int disagrees; /* the foreign index's entries differ from the layer's */
};

struct rfs_plat {
	char name[64];	 /* "linux_arm_v7"; "" for a single manifest */
	char digest[72]; /* its manifest: the namespace of inode numbers */
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
	size_t next, running;
	struct rfs_layer *layers;
	size_t nlayers;
	struct rfs_plat *plats;
	size_t nplats;
	int is_index;
	/* soci_mu serialises the one lookup of SOCI indexes (soci_done). */
	pthread_mutex_t soci_mu;
	int soci_done;
};

/* The image of a view node (VIEW or VIEW_ENTRY), referenced, ready, or
 * -errno; starts the build and waits while it makes progress (the calling
 * thread's cancel flag ends the wait). */
int rfs_image_ready(struct fs_ctx *c, struct fs_node *n, struct rfs_image **out);
/* The image of a node when already ready, referenced, or NULL. */
struct rfs_image *rfs_image_peek(const struct fs_node *n);
void rfs_image_put(struct rfs_image *im);
/* "building 37%", "ready", "ready (local index)", an error or "not built". */
char *rfs_image_state(const struct fs_node *n);
/* Layer tree k of platform p (made on first use), or NULL. */
struct rootfs_tree *rfs_layer_tree(struct rfs_image *im, size_t p, size_t k);
/* Reads the uncompressed stream of layer L of im (span cache, verified). */
ssize_t rfs_read_layer(struct rfs_image *im, struct rfs_layer *L, uint64_t off, void *buf,
		       size_t len, volatile int *cancel);

/* Loads or builds L's index (view_rootfs_layer.c): the local cache, then
 * the image's SOCI zTOC, then a local build. */
int rfs_layer_get(struct rfs_image *im, struct rfs_layer *L);
/* L's index from the image's SOCI v2 or v1 zTOC (view_rootfs_soci.c):
 * 0, -ENOENT when there is none, or the reason it was refused. */
int rfs_soci_try(struct rfs_image *im, struct rfs_layer *L);
/* Blob digest of the image's repository read whole and checked (malloc'd). */
int rfs_blob_whole(struct rfs_image *im, const char *digest, uint64_t size, char **out);

/* Set at unmount: builds stop (the streams' cancel flag). */
volatile int *rfs_stop_flag(void);
/* The process's one span cache (made on first use), or NULL. */
struct rootfs_spans *rfs_spans(void);

/* Counters for .ecrfs/stats (atomic). */
extern uint64_t rfs_st_builds, rfs_st_failures, rfs_st_loads, rfs_st_index_bytes;

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

#endif
