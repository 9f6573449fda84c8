/* Copies by reference between repositories (retag across repositories,
 * promotion across regions or accounts, copy_file_range of a whole blob):
 * nothing passes through the writer; the daemon streams a blob from the
 * source's download URL into the destination's layer upload only when the
 * destination lacks it. */
#ifndef ECRFS_PUSH_COPY_H
#define ECRFS_PUSH_COPY_H

#include <stdint.h>

#include "fs/tree/image.h"
#include "fs/push/push_remote.h"
#include "net/ecr.h"

/* Blob digest (size bytes) of src/sw into dst unless dst has it; *copied
 * (may be NULL) = 1 when bytes were sent. Returns 0 or -errno. */
int push_copy_blob(ecr *src, const struct ecr_where *sw, const char *digest, uint64_t size,
		   struct push_remote *dst, int *copied);

/* The whole image img into dst: blobs dst lacks, child manifests by digest,
 * then the top manifest or index with tag (NULL: by digest only). */
int push_copy_image(ecr *src, const struct fs_image *img, struct push_remote *dst,
		    const char *tag);

#endif
