/* ecrfs's own TAG@rootfs indexes published as a referrer of the image
 * (view_rootfs_publish.c): the producer run after a build under
 * -o rootfs_publish, and the "published" entry of rfs_index_sources[]. */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_PUBLISH_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_PUBLISH_H

#include "fs/tree/view_rootfs_sources.h"

struct rfs_image;

/* Once im is ready (called by its last build worker): under
 * -o rootfs_publish, when some layer was built here, pushes the index files
 * of each platform manifest that has no ecrfs referrer yet. Failures are
 * logged (with the IAM actions it needs), never returned. */
void rfs_publish(struct rfs_image *im);
/* The layer's index from the manifest's ecrfs referrer; -ENOENT under
 * verify=strict or when there is none. */
int rfs_src_published(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		      struct rootfs_index **index);

#endif
