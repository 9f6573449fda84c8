/* Disk cache: blobs content-addressed by digest (shared across
 * repositories), stored partially by chunk until complete and verified;
 * small opaque metadata records (manifests by digest, last known tag ->
 * digest). Knows nothing of ECR or its JSON.
 *
 * Layout under dir (mode 0700): blobs/sha256/<hex> (complete, verified)
 * and <hex>.sum (its chunks' CRC32s), partial/<hex>.data + .map (chunks
 * present, their CRC32s), meta/<ns>/<key-hash>, index/ (files derived
 * from blobs, counted and evicted after them: cache_aux_*), lock, format
 * (the layout's version). Bytes at rest are checked: each chunk's CRC32 the first time a
 * process serves it (cache_check.c); a chunk that fails reads as missing.
 * Writes are atomic (temp + rename). An LRU by access time keeps the total
 * under max_bytes and never evicts a pinned (open) blob. Two mounts on one
 * dir coordinate through flock. Thread-safe. */
#ifndef ECRFS_CACHE_H
#define ECRFS_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct cache cache;

#define CACHE_CHUNK_SIZE (1024 * 1024)

/* max_bytes 0: unlimited. Creates dir (0700) and tightens an existing one's
 * mode to 0700. Returns 0 or -errno. */
int cache_open(const char *dir, uint64_t max_bytes, cache **out);
void cache_close(cache *c);
const char *cache_dir(const cache *c);
/* on: fdatasync each blob before it is renamed into place (and start the
 * writeback of each chunk as it is stored). off (the default): no waiting
 * on the disk; a blob a system crash cut short is dropped on the read that
 * finds it, and after an unclean shutdown partial blobs start again. */
void cache_set_sync(cache *c, int on);

/* CACHE_CHUNK_SIZE buffers from a small process-wide pool (cache_bufs.c):
 * get may return NULL (out of memory); put takes NULL. Release frees the
 * idle ones (cache_close does it). */
void *cache_chunk_buf_get(void);
void cache_chunk_buf_put(void *buf);
void cache_chunk_bufs_release(void);

/* ---- blobs ("sha256:<hex>") ---- */
/* Pin/unpin keep a blob from eviction while a file is open on it. */
void cache_blob_pin(cache *c, const char *digest);
void cache_blob_unpin(cache *c, const char *digest);

/* 1 if the complete, verified blob is cached. */
int cache_blob_complete(cache *c, const char *digest);

/* Reads [off, off+len) if every chunk covering it is present (complete blob
 * or partial chunks). Returns bytes read (short only at end of blob), or
 * -ENOENT when some chunk is missing or fails its checksum (then it is
 * discarded: a partial chunk, or the whole complete blob, with a log line).
 * size is the blob's full size. */
ssize_t cache_blob_read(cache *c, const char *digest, uint64_t size, void *buf, size_t len,
			uint64_t off);

/* As cache_blob_read, without copying: *fd is a new descriptor of the
 * file that holds the bytes at offset off (the caller reads or splices it
 * and closes it; an open descriptor keeps the bytes even if the blob is
 * evicted). Returns the length available or -ENOENT. */
ssize_t cache_blob_read_fd(cache *c, const char *digest, uint64_t size, size_t len, uint64_t off,
			   int *fd);

/* Asks the kernel to read [off, off+len) of the blob's file ahead (a
 * sequential reader of a cached blob). No effect when it is not cached. */
void cache_blob_willneed(cache *c, const char *digest, uint64_t size, uint64_t off, uint64_t len);

/* 1 if every chunk covering [off, off+len) is present (or the blob is
 * complete), else 0. A cheap probe for fetch planning: no stats counted,
 * no data copied or checked (a read may still find a chunk bad). */
int cache_blob_has(cache *c, const char *digest, uint64_t size, uint64_t off, size_t len);

/* Stores one chunk: off must be a multiple of CACHE_CHUNK_SIZE and len the
 * full chunk (or the blob's tail). -ENOSPC when the disk is full or
 * cache_size is taken by pinned blobs (the caller streams from the network
 * instead; a full disk is logged once); -EAGAIN if the partial blob kept
 * being dropped under it. Nothing stored either way. */
int cache_blob_write_chunk(cache *c, const char *digest, uint64_t size, uint64_t off,
			   const void *buf, size_t len);

/* When every chunk is present: hashes the data; on match, moves it to
 * blobs/ and returns 0; on mismatch deletes it and returns -EIO. -EAGAIN
 * while chunks are missing. */
int cache_blob_seal(cache *c, const char *digest, uint64_t size);

/* Stores a whole blob known to hash to digest (e.g. a manifest we hold). */
int cache_blob_put(cache *c, const char *digest, const void *data, size_t len);

/* Path of the complete blob file (for benchmarks and `cat` comparisons);
 * -ENOENT if not complete. */
int cache_blob_path(cache *c, const char *digest, char *buf, size_t bufsize);

void cache_blob_drop(cache *c, const char *digest);

/* ---- metadata records: opaque bytes under (namespace, key) ---- */
int cache_meta_put(cache *c, const char *ns, const char *key, const void *data, size_t len);
/* *data malloc'd (NUL-terminated), *len excludes the NUL. -ENOENT when absent. */
int cache_meta_get(cache *c, const char *ns, const char *key, char **data, size_t *len);
int cache_meta_del(cache *c, const char *ns, const char *key);

/* ---- index files: files derived from blobs (a layer's index, a zstd
 * layer's decompressed copy) kept under DIR/index/ by the caller ----
 * Written under a temp name starting with '.' (left ones older than an
 * hour are removed at open), renamed, then added: the cache counts them in
 * max_bytes and evicts them, least recently used first, only when blobs
 * alone cannot make room; never one this process pins, nor one another
 * process holds a shared flock on. Files whose names share their first 64
 * hex digits (one layer's) are evicted together. Names: [a-z0-9._-],
 * not starting with '.'. */
/* DIR/index (absolute; made at open). */
const char *cache_aux_dir(cache *c);
/* Counts DIR/index/name, pinned if pin, after making room for it.
 * -ENOSPC: no room (the file is removed, with a log line). */
int cache_aux_add(cache *c, const char *name, int pin);
/* Pins name and marks it used now: 0, or -ENOENT when the file is gone. */
int cache_aux_pin(cache *c, const char *name);
void cache_aux_unpin(cache *c, const char *name);
/* Removes the file (an unusable index) and forgets it. */
void cache_aux_drop(cache *c, const char *name);

struct cache_stats {
	uint64_t hits, misses, bytes_stored, evictions, bytes_total;
	uint64_t index_bytes, index_evictions; /* index files: part of bytes_total */
	int disk_full;
};
void cache_get_stats(cache *c, struct cache_stats *out);

#endif
