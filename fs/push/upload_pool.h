/* What all layer uploads of a mount share: a budget of part buffers (the
 * memory of UploadLayerPart bodies in flight) and a cap on bytes written to
 * spill files but not yet acknowledged by ECR (the disk a push may use
 * ahead of the network). Both are back-pressure: a worker waits for a
 * buffer, a writer (and so its FUSE WRITE) waits for spill room; neither
 * is an error.
 *
 * Part buffers are mapped and unmapped by the pool, not malloc'd, so the
 * memory goes back to the system instead of staying in an allocator arena:
 * while parts are in flight a freed buffer is kept for the next part of
 * its size (within the budget), and all go once none is in flight.
 * Thread-safe: mu protects every field. */
#ifndef ECRFS_UPLOAD_POOL_H
#define ECRFS_UPLOAD_POOL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Three UploadLayerPart bodies of 10 MiB parts (base64 in JSON: 13.4 MiB
 * each, net/ecr.h ecr_part_room), as much memory as four raw parts took. */
#define UPLOAD_POOL_PARTS_DEFAULT (41u * 1024 * 1024)
/* Buffers of at most SMALL bytes (the body of a config) are granted past
 * the budget, by up to SMALL_EXTRA bytes in all, so they never wait behind
 * layers' parts. */
#define UPLOAD_POOL_SMALL (1u * 1024 * 1024)
#define UPLOAD_POOL_SMALL_EXTRA (4u * 1024 * 1024)
#define UPLOAD_POOL_SPILL_DEFAULT (2ull * 1024 * 1024 * 1024)

struct upload_pool_stats {
	size_t parts_now, parts_peak;	/* part buffers handed out */
	size_t bytes_now, bytes_peak;	/* their bytes */
	uint64_t spilled, spilled_peak; /* written, not yet acknowledged */
};

struct upload_pool;

/* part_bytes: total of part buffers at once (0: UPLOAD_POOL_PARTS_DEFAULT;
 * one buffer is always granted, even a larger one); spill_bytes: 0 for
 * UPLOAD_POOL_SPILL_DEFAULT. */
int upload_pool_new(size_t part_bytes, uint64_t spill_bytes, struct upload_pool **out);
void upload_pool_free(struct upload_pool *p);

/* A buffer of len bytes; waits for the budget. NULL when cancelled(arg)
 * says to stop (checked whenever the pool wakes) or out of memory. */
void *upload_pool_get(struct upload_pool *p, size_t len, int (*cancelled)(void *), void *arg);
void upload_pool_put(struct upload_pool *p, void *buf, size_t len);

/* Room for n more spilled bytes: waits while the cap is used, unless
 * nothing is spilled or !may_wait (the caller's own upload has less than a
 * part to send: its worker could not free room, so waiting could be for
 * ever); 0, or -ECANCELED when cancelled(arg). */
int upload_pool_spill(struct upload_pool *p, uint64_t n, int may_wait, int (*cancelled)(void *),
		      void *arg);
/* n spilled bytes acknowledged (or given up). */
void upload_pool_unspill(struct upload_pool *p, uint64_t n);

/* Wakes every waiter (an upload was stopped: its waiters re-check). */
void upload_pool_wake(struct upload_pool *p);
void upload_pool_stats(struct upload_pool *p, struct upload_pool_stats *s);

/* A part's whole life, its reply included (it may give its buffer back
 * before): kept buffers stay while any part is between the two. */
void upload_pool_part_begin(struct upload_pool *p);
void upload_pool_part_end(struct upload_pool *p);

#endif
