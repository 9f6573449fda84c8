/* Index sources of TAG@rootfs: where a layer's index comes from.
 *
 * Per layer the mount tries, first match wins: an index another image
 * holds (built here), the local cache (cache_dir/index), then every entry
 * of rfs_index_sources[] in order (SOCI v2, SOCI v1, ecrfs's published
 * index, eStargz TOC, zstd:chunked TOC), then the local build (the layer
 * streamed once). The name of the source
 * that gave the index is shown in user.ecr.rootfs_state ("ready (estargz)").
 * doc/ROOTFS.md "Index sources" describes the contract.
 *
 * Adding a source is one line in rfs_index_sources[] (view_rootfs_sources.c)
 * and a try function:
 *
 *   int try_fn(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
 *              struct rootfs_index **index);
 *
 * returning
 *   0        *index is the layer's index (the caller owns it). Its spans are
 *            ranges of the layer blob, each with a digest that spans.c checks
 *            before serving a byte of it;
 *   -ENOENT  not applicable (the layer or image carries no such index): the
 *            next source is tried, nothing is logged;
 *   -errno   the index is bad (wrong digest, malformed, disagrees with the
 *            layer, or -EPERM: not chained to the image digest under
 *            verify=strict): the caller logs one line and tries the next.
 */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_SOURCES_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_SOURCES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/rootfs/rootfs.h"

struct fs_ctx;

/* The layer whose index is wanted. */
struct rfs_src_layer {
	const char *digest;	/* "sha256:<64 hex>" */
	uint64_t size;		/* from the manifest's descriptor */
	const char *media_type; /* NULL when absent */
	json_t *annotations;	/* the descriptor's annotations object (borrowed), or NULL */
	size_t pos;		/* position in its manifest's layers, base = 0 */
};

/* What a source may use. Valid for the duration of the call. */
struct rfs_src_ctx {
	struct fs_ctx *c; /* the mount (ECR clients, cache_dir, options) */
	const char *registry, *region, *repo;
	/* The manifest holding the layer (a platform's manifest for an index)
	 * and its bytes, already checked against that digest. */
	const char *image_digest;
	const char *manifest;
	size_t manifest_len;
	/* -o verify=strict: return an index only when every span's digest is
	 * chained to image_digest (e.g. a TOC whose digest is a layer
	 * annotation of the manifest); otherwise -EPERM. */
	int strict;
	/* Exactly len bytes at off of the layer's blob, fetched by range
	 * (through the blob cache). Not checked as a whole, even under
	 * verify=strict: the source checks what it reads. 0 or -errno. */
	int (*read_layer)(const struct rfs_src_ctx *ctx, uint64_t off, void *buf, size_t len);
	/* A whole blob of the repository (an index artifact's blob), checked
	 * against its digest; *buf malloc'd. size is the descriptor's. */
	int (*read_blob)(const struct rfs_src_ctx *ctx, const char *digest, uint64_t size,
			 void **buf);
	void *priv; /* the caller's, for the two readers above */
};

typedef int (*rfs_src_try_fn)(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
			      struct rootfs_index **index);

struct rfs_index_source {
	const char *name;      /* shown as "ready (NAME)" */
	rfs_src_try_fn try_fn; /* NULL: skipped */
};

/* Between the local cache and the local build, in order. */
extern const struct rfs_index_source rfs_index_sources[];
extern const size_t rfs_n_index_sources;

/* The names of the two ends of the chain, as shown in the state. */
#define RFS_SRC_LOCAL "local index"
#define RFS_SRC_BUILT "built"

/* eStargz and zstd:chunked (fs/tree/view_rootfs_toc.c). */
int rfs_src_estargz(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index);
int rfs_src_zstd_chunked(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
			 struct rootfs_index **index);

#endif
