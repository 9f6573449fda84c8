/* Private to fs/blob/: the module object, a reader's state, and the
 * helpers its files share (reader.c, fetch.c, verify.c, readahead.c,
 * pool.c). */
#ifndef ECRFS_FS_BLOB_I_H
#define ECRFS_FS_BLOB_I_H

#include <openssl/evp.h>
#include <pthread.h>

#include "fs/blob/blob.h"
#include "fs/blob/flight.h"

#define CHUNK ((uint64_t)CACHE_CHUNK_SIZE)
#define RA_MIN (1u << 20)     /* readahead of a run that did not start at 0, at first */
#define PIECE (16u << 20)     /* a readahead worker fetches up to this much */
#define WIDTH 8               /* pieces a whole-file reader's first miss starts at once */
/* Readahead pieces running or queued, per mount: 16 GETs at the modelled
 * 64 MiB/s per GET read 1 GiB in 1.9 s where 8 took 3.0 s (scripts/bench
 * --only net_reads); each costs a chunk buffer (8 readers: VmHWM 49 MiB). */
#define MAX_WORKERS 16
#define FAST_STREAM (256ull << 20) /* bytes/s of one GET beyond which width buys little */
#define SEQ_SLACK (2u << 20)  /* reads handled out of order stay in a sequential run */
#define BAD_TTL 60            /* seconds a blob that failed its hash answers EIO */
#define MAX_BAD 1024          /* failed digests kept (LRU beyond) */
#define MAX_URLS 1024         /* download URLs kept (LRU beyond; each until it expires) */
#define WARM_MIN (4u << 20)   /* cache file read ahead of a sequential reader of a */
#define WARM_MAX (128u << 20) /* cached blob: grows from MIN to MAX */
#define WARM_SLACK (4u << 20) /* reads handled out of order still count as sequential */

/* Bytes a whole-file reader may still have in flight, not yet counted in
 * requested, when the read that reaches the end arrives first: the
 * kernel's readahead (max_readahead 1 MiB, about two windows) and a few
 * synchronous reads. A reader that asked for less than size - this is
 * not reading the whole file (a tail read), and is not made to fetch it. */
#define INFLIGHT_SLACK (4ull << 20)

/* A blob's name, shared by its reader and its readahead pieces; immutable
 * once made, reference counted. */
struct blob_id {
	int refs; /* atomic */
	struct fs_blob_ref ref; /* its strings point into buf */
	char digest[72];
	const char *hex; /* points into digest */
	uint64_t ino;
	char buf[];
};
struct blob_id *blob_id_new(const struct fs_blob_ref *ref, uint64_t ino);
struct blob_id *blob_id_get(struct blob_id *id);
void blob_id_put(struct blob_id *id);

struct blob_pool;

/* Counts of bytes received, one per group of digests (a hash of the name):
 * a shared slot only makes a wait see another blob's bytes as progress. */
#define RECEIVED_SLOTS 64

struct fs_blobs {
	struct fs_blobs_cfg cfg;            /* cfg.src never NULL */
	struct fs_flights *chunks;          /* chunks in flight: "digest/index", no value */
	struct fs_flights *urls;            /* download URLs: "registry/region/repo/digest" */
	struct fs_flights *bad;             /* digests that failed their hash */
	struct blob_pool *pool;             /* readahead workers */
	uint64_t stream_rate;               /* atomic: bytes/s of the last whole piece */
	uint64_t received[RECEIVED_SLOTS];  /* atomic: bytes received, by blob_received_slot */
};
/* The slot of digest's count of bytes received. */
size_t blob_received_slot(const char *digest);

struct fs_rstate {
	struct fs_blobs *bs;
	struct blob_id *id;
	pthread_mutex_t mu;  /* protects the fields below */
	uint64_t next_off;   /* end of the furthest read of the current run */
	int in_run;          /* reads are sequential (else random: no readahead) */
	uint64_t ra;         /* readahead for the next sequential read */
	uint64_t ra_until;   /* chunks below this were already considered */
	int complete;        /* the verified blob is in the cache: plain reads */
	EVP_MD_CTX *sha;     /* hash of [0, hashed) while reads are in order */
	uint64_t hashed;
	uint64_t requested;  /* bytes asked for on the general path */
	uint64_t warm_until; /* the cache file is read ahead up to here */
	uint64_t warm_next;  /* end of the furthest read of a cached blob */
	uint64_t warm_win;   /* its read-ahead window (0: reads are random) */
	int caller_checks;   /* fs_blob_caller_checks: no whole-blob check first */
};

/* ---- fetch.c: chunks in flight, download URLs, ranged fetches ---- */

/* Claims the chunks from c on that nobody fetches, up to end and at most
 * max of them; returns the end of the claimed run (c: none claimed). */
uint64_t blob_claim_run(struct fs_blobs *bs, const char *digest, uint64_t c, uint64_t end,
			uint64_t max);
/* Ends the fetch of chunks [c0, c1) and wakes their waiters. */
void blob_release_range(struct fs_blobs *bs, const char *digest, uint64_t c0, uint64_t c1);
/* Waits while chunk c is being fetched: 0, or -EINTR once *cancel is set. */
int blob_wait_chunk(struct fs_blobs *bs, const char *digest, uint64_t c, volatile int *cancel);
/* Waits until no chunk of digest is being fetched; 1 if it waited. */
int blob_wait_fetches(struct fs_blobs *bs, const char *digest, volatile int *cancel);

/* One ranged fetch of chunks into the cache (and a reader's buffer). */
struct fetch {
	struct fs_blobs *bs;
	struct blob_id *id;
	uint64_t pos;       /* offset of the chunk being filled */
	uint64_t end;       /* end of the range (chunk-aligned or size) */
	char *chunk;        /* CHUNK bytes */
	size_t fill;
	int cache_err;      /* a chunk could not be stored (-ENOSPC...) */
	char *out;          /* direct copy of [out_off, out_off+out_len) */
	uint64_t out_off;
	size_t out_len;
	uint64_t delivered; /* bytes of the range received */
	int release_each;   /* readahead: wake readers chunk by chunk */
	uint64_t released;  /* chunks below this index are released */
};
/* Fetches [f->pos, f->end) with resumption after a short body and URL
 * renewal after a 403. */
int blob_fetch_run(struct fetch *f, volatile int *cancel);
/* Fetches the chunks [c0, c1), copying the reader's part [off, off+len)
 * into buf on the way; stored in the cache unless store is 0. */
int blob_fetch_sync(struct fs_rstate *rs, uint64_t c0, uint64_t c1, char *buf, size_t len,
		    uint64_t off, int store, volatile int *cancel);
/* Fetches exactly [off, off+len) into buf without the cache. */
int blob_fetch_uncached(struct fs_rstate *rs, char *buf, size_t len, uint64_t off,
			volatile int *cancel);

/* ---- verify.c: failed digests, sealing, the running hash ---- */

int blob_is_bad(struct fs_blobs *bs, const char *digest);
/* Seals the blob if every chunk is in; see verify.c. */
int blob_seal_or_mark_bad(struct fs_blobs *bs, const char *digest, uint64_t size, uint64_t ino);
void blob_seal_check(struct fs_blobs *bs, const char *digest, uint64_t size, uint64_t ino);
int blob_ensure_verified(struct fs_rstate *rs, volatile int *cancel);
int blob_seal_at_end(struct fs_rstate *rs, size_t len, uint64_t off, volatile int *cancel);
int blob_hash_to(struct fs_rstate *rs, uint64_t upto, volatile int *cancel);
void blob_restart_hash(struct fs_rstate *rs);
int blob_hash_uncached(struct fs_rstate *rs, const char *buf, size_t len, uint64_t off,
		       volatile int *cancel);

/* ---- readahead.c: the windows of a sequential reader ---- */

/* Bookkeeping of a read: the readahead to start after it (0: random). */
uint64_t blob_note_read(struct fs_rstate *rs, size_t len, uint64_t off);
void blob_start_readahead(struct fs_rstate *rs, size_t len, uint64_t off, uint64_t ra);
/* Reads the cache file ahead of a sequential reader of a cached blob. */
void blob_warm_readahead(struct fs_rstate *rs, size_t len, uint64_t off);

/* ---- pool.c: a fixed pool of worker threads ---- */

/* n threads with small stacks, started now. */
int blob_pool_new(int n, struct blob_pool **out);
/* Runs fn(arg) on a worker; -EAGAIN when n jobs are already running or
 * queued (the caller keeps arg). */
int blob_pool_submit(struct blob_pool *p, void (*fn)(void *), void (*drop)(void *), void *arg);
/* Waits for the running jobs, drops the queued ones (drop(arg)), joins. */
void blob_pool_free(struct blob_pool *p);
void blob_pool_stats(struct blob_pool *p, size_t *running, size_t *queued);
/* Jobs that could be submitted now. */
size_t blob_pool_room(struct blob_pool *p);

#endif
