/* The blob reader: reads a blob's bytes through the disk cache, fetching
 * missing chunks with ranged GETs of the layer's download URL (asked once
 * per blob and kept until it expires). Concurrent misses on one (digest,
 * chunk) share one download; sequential readers get a readahead fetched by a
 * fixed pool of workers in parallel pieces sized from the blob, several at
 * once from a whole-file reader's first miss; random reads fetch only the
 * chunks they touch. A blob that completes in the
 * cache is sealed (hashed); a mismatch, or a whole-file sequential read whose
 * hash differs, answers EIO and invalidates the file's page cache.
 *
 * Knows nothing of FUSE or of the tree: a blob is named by a fs_blob_ref and
 * the page-cache invalidation is a callback. */
#ifndef ECRFS_FS_BLOB_H
#define ECRFS_FS_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "cache/cache.h"
#include "net/ecr.h"
#include "net/http.h"

/* A blob of a repository. The strings are copied by fs_blob_open. */
struct fs_blob_ref {
	const char *registry, *region, *repo;
	const char *digest; /* "sha256:<hex>" */
	uint64_t size;
	ecr *ecr; /* the registry's client (used by the ECR source) */
};

/* Where bytes come from. fs_blob_source_ecr asks ECR
 * (GetDownloadUrlForLayer, then ranged GETs of the URL); tests use a fake. */
struct fs_blob_source {
	/* A download URL: *url malloc'd, valid until *expires. 0 or -errno. */
	int (*url)(void *arg, const struct fs_blob_ref *ref, char **url, time_t *expires);
	/* Sends [off, off+len) of the blob at url to sink. 0, -EKEYEXPIRED
	 * when the URL has expired (ask for another), -EIO for a short body,
	 * or another -errno. */
	int (*get_range)(void *arg, const struct fs_blob_ref *ref, const char *url, uint64_t off,
			 uint64_t len, net_sink_cb sink, void *sink_arg, volatile int *cancel);
	void *arg;
};
extern const struct fs_blob_source fs_blob_source_ecr;

struct fs_blobs_cfg {
	cache *cache;
	const struct fs_blob_source *src; /* NULL: fs_blob_source_ecr */
	int deadline_ms;                  /* a fetch gives up retrying after this */
	int verify_strict;                /* verify a blob before serving any of it */
	/* Drops the kernel's page cache of ino; called from any thread, never
	 * waits for the kernel. NULL: nothing to drop. */
	void (*inval)(void *arg, uint64_t ino);
	void *inval_arg;
};

struct fs_blobs; /* the module: flights, URLs, failed digests, the readahead pool */
struct fs_rstate; /* per open file */

/* Starts the readahead workers (after any fork). 0 or -errno. */
int fs_blobs_new(const struct fs_blobs_cfg *cfg, struct fs_blobs **out);
/* Waits for the running readahead, drops the queued one and frees b. No
 * reader may be open. NULL is a no-op. */
void fs_blobs_free(struct fs_blobs *b);

struct fs_blobs_stats {
	size_t flights; /* chunks being fetched */
	size_t urls;    /* download URLs kept (until they expire) */
	size_t bad;     /* digests that failed their hash (kept for a minute) */
	size_t ra_running, ra_queued; /* readahead pieces */
};
void fs_blobs_stats(struct fs_blobs *b, struct fs_blobs_stats *out);
/* Bytes of digest received from the network so far by any reader (and of
 * the few digests that share its count): moves as the bytes arrive, before
 * a chunk is complete, so that a wait can tell a slow download from a
 * stalled one. */
uint64_t fs_blob_received(struct fs_blobs *b, const char *digest);

/* Opens a reader of ref; ino is handed to cfg.inval when the blob turns out
 * corrupt. Pins the blob in the cache while open. 0 or -errno. */
int fs_blob_open(struct fs_blobs *b, const struct fs_blob_ref *ref, uint64_t ino,
		 struct fs_rstate **out);
/* NULL is a no-op. */
void fs_blob_close(struct fs_rstate *rs);
/* The caller checks every range it reads against digests chained to the
 * image (the chunks of an eStargz or zstd:chunked TOC, a footer that must
 * lead to a TOC with a digest): under verify_strict reads of rs fetch their
 * ranges instead of the whole blob first, and a read of the blob's last
 * bytes does not hash the whole blob. */
void fs_blob_caller_checks(struct fs_rstate *rs);

/* Reads up to len bytes at off. Returns bytes (0 at EOF) or -errno. The
 * bytes are either in the cache, then *fd is a descriptor to read (or
 * splice) them from at offset off, or in *buf. The caller closes *fd when
 * it is not -1 and frees *buf in every case. cancel: set non-zero by a
 * FUSE INTERRUPT. */
ssize_t fs_blob_read(struct fs_rstate *rs, char **buf, size_t len, uint64_t off,
		     volatile int *cancel, int *fd);

#endif
