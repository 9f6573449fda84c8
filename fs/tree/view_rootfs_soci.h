/* The SOCI index sources of TAG@rootfs (view_rootfs_soci.c), entries of
 * rfs_index_sources[] with the contract of view_rootfs_sources.h. */
#ifndef ECRFS_FS_TREE_VIEW_ROOTFS_SOCI_H
#define ECRFS_FS_TREE_VIEW_ROOTFS_SOCI_H

#include "fs/tree/view_rootfs_sources.h"

/* The zTOC named by the SOCI v2 index of the manifest's annotation. */
int rfs_src_soci_v2(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index);
/* The zTOC of a SOCI v1 index whose subject is the manifest (referrers);
 * -ENOENT under verify=strict. */
int rfs_src_soci_v1(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index);

#endif
