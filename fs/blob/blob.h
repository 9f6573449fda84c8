/* The blob reader: reads a blob's bytes through the disk cache, fetching
 * missing chunks with ranged GETs of the layer's download URL. Concurrent
 * misses on one (digest, chunk) share one download; sequential readers get a
 * growing readahead fetched by background workers in parallel pieces;
 * random reads fetch only the chunks they touch. A blob that completes in the
 * cache is sealed (hashed); a mismatch, or a whole-file sequential read whose
 * hash differs, answers EIO and invalidates the file's page cache. */
#ifndef ECRFS_FS_BLOB_H
#define ECRFS_FS_BLOB_H

#include <stdint.h>
#include <sys/types.h>

#include "fs/mount.h"
#include "fs/tree/image.h"

struct fs_rstate; /* per open file */

int fs_blob_open(struct fs_ctx *c, struct fs_image *img, int blob_idx, uint64_t ino,
		 struct fs_rstate **out);
void fs_blob_close(struct fs_rstate *rs);

/* Reads up to len bytes at off. Returns bytes (0 at EOF) or -errno. The
 * bytes are either in the cache, then *fd is a descriptor to read (or
 * splice) them from at offset off, or in *buf. The caller closes *fd when
 * it is not -1 and frees *buf in every case. cancel: set non-zero by a
 * FUSE INTERRUPT. */
ssize_t fs_blob_read(struct fs_rstate *rs, char **buf, size_t len, uint64_t off,
		     volatile int *cancel, int *fd);

/* Waits for the background fetches to end (unmount). */
void fs_blob_shutdown(void);

#endif
