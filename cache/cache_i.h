/* Private parts of the disk cache, shared by the cache/ sources only. */
#ifndef ECRFS_CACHE_I_H
#define ECRFS_CACHE_I_H

#include "cache/cache.h"

#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#define CACHE_HEX_LEN 64
/* Buckets of the in-memory index (digests are random: the first bytes hash). */
#define CACHE_BUCKETS 1024
/* Open-file table: pinned (open) blobs keep their slot, and so their lock,
 * up to CACHE_SLOTS; unpinned blobs keep at most CACHE_SLOTS_IDLE open. */
#define CACHE_SLOTS 128
#define CACHE_SLOTS_IDLE 32

/* Partial map file: 24-byte header ("ECRFSMP3", size, nonce; little
 * endian), then one byte per chunk (1 = present), then one CRC32 per chunk
 * (4 bytes, little endian; cache_check.c). A flag is one byte written with
 * one pwrite under an exclusive flock on the map (writer_lock), after the
 * chunk's data and CRC, so writers never overwrite each other's flags and a
 * flagged chunk is never written again. The nonce tells one partial copy
 * from a later one. A sealed blob keeps its map as blobs/sha256/<hex>.sum. */
#define CACHE_MAP_MAGIC "ECRFSMP3"
#define CACHE_MAP_HDR 24
/* DIR/format: caches without it (or with another text) hold blobs without
 * checksums (cache_check.c). */
#define CACHE_FORMAT "ecrfs-cache 3\n"

/* One blob known to this process (complete, partial, or only pinned). */
struct cache_entry {
	char hex[CACHE_HEX_LEN + 1];
	int complete;
	uint64_t bytes; /* bytes it occupies in the cache (chunks present) */
	uint64_t tick;	/* last access, ns since the epoch; the LRU key */
	int pins;
	int busy;  /* operations using its files right now */
	int dirty; /* partial data written, not yet fdatasync'd */
	/* Running sha256 of chunks [0, hashed) of the partial whose map has
	 * hash_nonce, fed as chunks arrive so a seal need not read it all. */
	EVP_MD_CTX *sha;
	uint64_t hashed;
	uint64_t hash_nonce;
	int hashing;	     /* a thread feeds sha outside mu */
	int hash_reset;	     /* that thread drops sha when done */
	unsigned evict_skip; /* reservation round that found it locked elsewhere */
	/* Chunks whose CRC this process checked (bit per chunk) in the copy
	 * with map nonce vnonce; NULL until the first check. */
	unsigned char *vbits;
	uint64_t vnonce;
	struct cache_entry *next;
};

/* An open blob: the read/write fds and a shared flock on the data file that
 * tells other processes not to evict it. */
struct cache_slot {
	int used;
	char hex[CACHE_HEX_LEN + 1];
	int complete;
	int data_fd;
	int map_fd; /* complete: the .sum sidecar, -1 when it is missing */
	uint64_t size;
	uint64_t file_size; /* st_size at open (complete files never change) */
	int refs;	    /* operations using the fds right now */
	int stale;	    /* close when refs drops to 0 (sealed, dropped, evicted) */
	uint64_t tick;
};

/* Fds borrowed for one operation: a slot's, or temporary ones (slot < 0).
 * While borrowed, the blob's entry is busy and cannot be evicted. */
struct cache_fds {
	int slot;
	char hex[CACHE_HEX_LEN + 1];
	int complete;
	int data_fd;
	int map_fd;
	uint64_t file_size;
};

struct cache {
	char *dir;
	uint64_t max_bytes;
	int lock_fd; /* DIR/lock, held LOCK_SH while open */
	int crashed; /* DIR/dirty was there at open: partial flags untrusted */
	unsigned crashed_dropped;
	atomic_int sync; /* fdatasync before renames into place */

	/* mu protects: buckets (the index), total, slots, stats, disk_full_logged,
	 * last_tick and evict_round. File I/O on slot fds happens outside it,
	 * with the slot's refs held. */
	pthread_mutex_t mu;
	struct cache_entry *buckets[CACHE_BUCKETS];
	uint64_t total;
	struct cache_slot slots[CACHE_SLOTS];
	struct cache_stats stats;
	int disk_full_logged;
	pthread_cond_t hash_cv; /* an entry's hashing went to 0 */
	uint64_t last_tick;
	unsigned evict_round;

	atomic_uint tmp_counter; /* unique temp names (lock-free) */

	/* Index files (cache_aux.c): their list and bytes (part of total),
	 * under mu. aux_dir is DIR/index, set at open. */
	char *aux_dir;
	struct cache_aux *aux;
	uint64_t aux_bytes;
};

/* cache.c */
/* 1 if the complete blob file exists; syncs the index with what another
 * mount stored or evicted. Takes mu. */
int cache_refresh_complete(cache *c, const char *hex);
int cache_hex_of(const char *digest, char hex[CACHE_HEX_LEN + 1]);
int cache_is_hex(const char *s, size_t n);
void cache_path_blob(const cache *c, const char *hex, char buf[PATH_MAX]);
void cache_path_data(const cache *c, const char *hex, char buf[PATH_MAX]);
void cache_path_map(const cache *c, const char *hex, char buf[PATH_MAX]);
void cache_path_sum(const cache *c, const char *hex, char buf[PATH_MAX]);
void cache_path_tmp(cache *c, char buf[PATH_MAX]);
/* Maps a write error (negative errno) to what the caller gets: ENOSPC,
 * EDQUOT and EFBIG become -ENOSPC with one warning, and stats.disk_full
 * stays 1 until a chunk is stored with room to spare. Takes mu. */
int cache_write_error(cache *c, int err);
/* A chunk was stored: a full disk has room again (readahead resumes), with
 * one log line, once the disk has CACHE_ROOM_AGAIN_BYTES free. Caller
 * holds mu. */
#define CACHE_ROOM_AGAIN_BYTES (32u * 1024 * 1024)
void cache_room_again(cache *c);

/* cache_index.c (callers hold mu) */
uint64_t cache_now_tick(cache *c);
struct cache_entry *cache_entry_find(cache *c, const char *hex);
struct cache_entry *cache_entry_get(cache *c, const char *hex);
void cache_entry_remove(cache *c, struct cache_entry *e);
/* Removes the entry if nothing is stored and nothing pins it. */
void cache_entry_maybe_free(cache *c, struct cache_entry *e);
void cache_index_free(cache *c);
/* Makes room for len more bytes under max_bytes by evicting least recently
 * used unpinned blobs other than keep_hex, then accounts len. -ENOSPC when
 * not possible. */
int cache_reserve(cache *c, const char *keep_hex, uint64_t len);
/* Exclusive non-blocking flock on path: fails while any reader (this or
 * another process) holds its shared lock. Returns fd, -ENOENT or -EBUSY. */
int cache_lock_for_delete(const char *path);
/* Deletes a blob's files if no other process holds it open (non-blocking
 * exclusive flock). 0, or -EBUSY when locked elsewhere. */
int cache_unlink_blob(cache *c, const char *hex);
/* The same for the partial files only. */
int cache_unlink_partial(cache *c, const char *hex);
/* Removes a partial copy's chunks for good: the map always (its flags
 * vanish), the data file only when nobody holds it open. A data file is
 * never unlinked under an open holder: the holder could pair it with a
 * new map, and a later opener a new empty data file with that map. */
void cache_discard_partial(cache *c, const char *hex);

/* cache_aux.c: index files */
void cache_aux_scan(cache *c); /* takes mu */
void cache_aux_free(cache *c);
/* Evicts the least recently used unpinned index file (and its layer's
 * other files) that no other process holds; for cache_reserve when no
 * blob can go. mu held. 0 or -ENOSPC. */
int cache_aux_evict_one(cache *c, unsigned round);
/* max(atime, mtime) in ns: the LRU tick of a file found at open. */
uint64_t cache_stat_tick(const struct stat *st);

/* cache_slot.c (take mu themselves) */
int cache_fds_get(cache *c, const char *hex, uint64_t size, int create, struct cache_fds *f);
void cache_fds_put(cache *c, struct cache_fds *f);
/* Marks the blob's slot stale (closed now if unused). Caller holds mu. */
void cache_slot_invalidate(cache *c, const char *hex);
void cache_slots_close(cache *c);
/* Closes idle slots of unpinned blobs beyond CACHE_SLOTS_IDLE. Holds mu. */
void cache_slots_trim(cache *c);

/* cache_hash.c */
/* Validates a map's header against size and returns its nonce. */
int cache_map_nonce(int map_fd, uint64_t size, uint64_t *nonce);
/* Forgets the entry's running hash (now, or when its feeder is done).
 * Caller holds mu. */
void cache_hash_reset(struct cache_entry *e);
/* After chunk [off, off+len) = buf was stored: feeds the running hash with
 * it and with the flagged chunks after it, when they are next in order. */
void cache_hash_advance(cache *c, const char *hex, uint64_t size, const struct cache_fds *f,
			const void *buf, uint64_t off, size_t len);
/* For a seal: takes the running hash if it belongs to the partial with
 * nonce (*from = bytes covered), else returns NULL (*from = 0). */
EVP_MD_CTX *cache_hash_take(cache *c, const char *hex, uint64_t nonce, uint64_t *from);

/* cache_check.c: checksums at rest */
static inline uint64_t cache_nchunks(uint64_t size)
{
	return (size + CACHE_CHUNK_SIZE - 1) / CACHE_CHUNK_SIZE;
}
/* Bytes of a map (or .sum) for a blob of size. */
static inline uint64_t cache_map_len(uint64_t size) { return CACHE_MAP_HDR + 5 * cache_nchunks(size); }
uint64_t cache_new_nonce(cache *c);
void cache_map_header(unsigned char hdr[CACHE_MAP_HDR], uint64_t size, uint64_t nonce);
uint32_t cache_crc(const void *buf, size_t len);
int cache_map_put_crc(int map_fd, uint64_t size, uint64_t idx, uint32_t crc);
/* 1 when chunk idx of f's data matches its flag and CRC, 0 when not, or
 * -errno (ENOMEM) when it could not be checked. buf: a chunk buffer. */
int cache_chunk_ok(const struct cache_fds *f, uint64_t size, uint64_t idx, unsigned char *buf);
/* Checks the chunks covering [off, off+len) not yet checked in this
 * process: 0, -EBADMSG with *bad the first chunk that fails, -ENODATA for
 * a complete blob without a valid .sum, or another -errno. */
int cache_check_range(cache *c, const struct cache_fds *f, uint64_t size, uint64_t off, size_t len,
		      uint64_t *bad);
/* Marks chunk idx of the copy with nonce as checked (this process stored
 * it). Takes mu. */
void cache_chunk_checked(cache *c, const char *hex, uint64_t nonce, uint64_t size, uint64_t idx);
/* Forgets the checked bits of an entry. Caller holds mu. */
void cache_vbits_reset(struct cache_entry *e);
/* A complete blob without sums: 0 when it hashes to its digest (its sums
 * are then written and its chunks count as checked), -EBADMSG when not. */
int cache_sum_rebuild(cache *c, const struct cache_fds *f, uint64_t size);
/* Writes blobs/sha256/<hex>.sum for data held whole in memory. */
int cache_sum_put(cache *c, const char *hex, const void *data, size_t len);
/* Under the open/close lock, when no other process uses the dir (sole):
 * removes .sum files without their blob, and brings a cache of an older
 * format to this one (stamps DIR/format). */
void cache_format_check(cache *c, int sole);

/* cache_io.c */
int cache_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got);
int cache_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Writes a file atomically: temp in DIR/tmp, fdatasync if sync, rename. */
int cache_write_atomic(cache *c, const char *path, const void *hdr, size_t hdrlen, const void *data,
		       size_t len, int sync);
/* sha256 of the fd's bytes [0, size): continues ctx (bytes [0, from) done)
 * when given, and frees it. */
int cache_sha256_fd(int fd, EVP_MD_CTX *ctx, uint64_t from, uint64_t size, unsigned char md[32]);
void cache_sha256_hex(const void *data, size_t len, char hex[CACHE_HEX_LEN + 1]);
void cache_md_to_hex(const unsigned char md[32], char hex[CACHE_HEX_LEN + 1]);
/* Opens path and takes a shared flock, retrying until the open file is the
 * one at path (it may be unlinked or replaced in between). */
int cache_open_locked(const char *path, int flags, mode_t mode);

#endif
