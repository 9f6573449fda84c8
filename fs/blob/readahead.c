/* Readahead of a sequential reader: a window sized from the blob, fetched
 * in pieces by the pool's workers (several GETs in flight from a
 * whole-file reader's first miss), and the cache file read ahead of a
 * reader of a cached blob. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob_i.h"
#include "net/log.h"

/* One piece: chunks [pos/CHUNK, end) claimed by the reader that queued it. */
struct piece {
	struct fetch f;
};

static void piece_free(struct piece *p)
{
	blob_id_put(p->f.id);
	cache_chunk_buf_put(p->f.chunk);
	free(p);
}

static void piece_run(void *arg)
{
	struct piece *p = arg;
	struct fetch *f = &p->f;
	const struct blob_id *id = f->id;
	uint64_t c1 = (f->end + CHUNK - 1) / CHUNK, bytes = f->end - f->pos;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = blob_fetch_run(f, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	uint64_t ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec -
		      (uint64_t)t0.tv_nsec;
	if (rc == 0 && bytes >= PIECE / 4 && ns > 0)
		__atomic_store_n(&f->bs->stream_rate, bytes * 1000000000u / ns, __ATOMIC_RELAXED);
	if (rc && rc != -ENOSPC)
		log_debug("readahead of %s failed: %s", id->digest, strerror(-rc));
	/* Seal before waking the readers of these chunks: if they completed a
	 * blob that does not hash, its readers get EIO, not its bytes. */
	if (rc == 0)
		blob_seal_check(f->bs, id->digest, id->ref.size, id->ino);
	blob_release_range(f->bs, id->digest, f->released, c1);
	piece_free(p);
}

/* Not run (unmount): the claimed chunks are let go. */
static void piece_drop(void *arg)
{
	struct piece *p = arg;
	blob_release_range(p->f.bs, p->f.id->digest, p->f.released,
			   (p->f.end + CHUNK - 1) / CHUNK);
	piece_free(p);
}

/* Queues a background fetch of chunks [c0, c1) already claimed: 0, or
 * -errno when no worker can take it (the chunks are released). */
static int start_piece(struct fs_rstate *rs, uint64_t c0, uint64_t c1)
{
	uint64_t size = rs->id->ref.size;
	int rc = -ENOMEM;
	struct piece *p = calloc(1, sizeof *p);
	if (!p || !(p->f.chunk = cache_chunk_buf_get()))
		goto out;
	p->f.bs = rs->bs;
	p->f.id = blob_id_get(rs->id);
	p->f.pos = c0 * CHUNK;
	p->f.end = c1 * CHUNK < size ? c1 * CHUNK : size;
	p->f.release_each = 1;
	p->f.released = c0;
	if ((rc = blob_pool_submit(rs->bs->pool, piece_run, piece_drop, p)) == 0)
		return 0;
	blob_id_put(p->f.id);
out:
	if (p)
		cache_chunk_buf_put(p->f.chunk);
	free(p);
	blob_release_range(rs->bs, rs->id->digest, c0, c1);
	return rc;
}

/* With a full cache disk, reads stream from the network: no readahead
 * (it would have nowhere to go). */
static int disk_full(struct fs_blobs *bs)
{
	struct cache_stats st;
	cache_get_stats(bs->cfg.cache, &st);
	return st.disk_full;
}

/* Chunks of one readahead piece of a blob: a sixteenth of it (so that a
 * whole-file reader's first miss has WIDTH streams to share the first half),
 * from one chunk to PIECE. Larger pieces pay the first-byte delay less
 * often; smaller ones spread a small blob over more streams. */
static uint64_t piece_chunks(uint64_t size)
{
	uint64_t n = (size / 16 + CHUNK - 1) / CHUNK;
	return n < 1 ? 1 : n > PIECE / CHUNK ? PIECE / CHUNK : n;
}

/* The widest window of a sequential reader of a blob of size: twice what
 * WIDTH pieces hold, so that a worker that finishes a piece finds the next
 * one to fetch while the reader still consumes the earlier ones. When one
 * GET alone is fast (loopback, a local mirror), the CPU is the limit, and
 * more streams only compete for it: half of WIDTH. */
static uint64_t ra_max(const struct fs_blobs *bs, uint64_t size)
{
	uint64_t rate = __atomic_load_n(&bs->stream_rate, __ATOMIC_RELAXED);
	return (rate >= FAST_STREAM ? WIDTH / 2 : 2 * WIDTH) * piece_chunks(size) * CHUNK;
}

/* A read continues the run when it starts where the run ends, or close to
 * it while the run goes on (the kernel's requests are handled by several
 * threads, slightly out of order). A run that starts at offset 0 is a
 * whole-file reader: its first miss gets the full width at once; another
 * run starts small and doubles. Anything else is random: no readahead. */
uint64_t blob_note_read(struct fs_rstate *rs, size_t len, uint64_t off)
{
	uint64_t ra = 0, max = ra_max(rs->bs, rs->id->ref.size);
	pthread_mutex_lock(&rs->mu);
	int exact = off == rs->next_off;
	int near = off + SEQ_SLACK >= rs->next_off && off <= rs->next_off + SEQ_SLACK;
	if (exact && !rs->in_run) {
		rs->in_run = 1;
		rs->ra = off < CHUNK ? max / 2 : RA_MIN;
	}
	if (exact || (near && rs->in_run)) {
		ra = rs->ra;
		rs->ra = rs->ra * 2 < max ? rs->ra * 2 : max;
		if (off + len > rs->next_off)
			rs->next_off = off + len;
	} else {
		rs->in_run = 0;
		rs->ra_until = 0;
		rs->next_off = off + len;
	}
	rs->requested += len;
	pthread_mutex_unlock(&rs->mu);
	return ra;
}

/* Starts background fetches of the chunks after [off, off+len) within the
 * readahead window ra, even on a hit, so that a sequential reader rarely
 * waits: whole pieces of chunks nobody fetches yet, while the pool has a
 * free worker. Where it stops, the next read goes on. */
void blob_start_readahead(struct fs_rstate *rs, size_t len, uint64_t off, uint64_t ra)
{
	const struct blob_id *id = rs->id;
	uint64_t nch = (id->ref.size + CHUNK - 1) / CHUNK, pc = piece_chunks(id->ref.size);
	uint64_t n1 = (off + len + CHUNK - 1) / CHUNK;
	uint64_t r1 = (off + len + ra + CHUNK - 1) / CHUNK;
	int full = 0;
	if (r1 > nch)
		r1 = nch;
	if (!ra || !blob_pool_room(rs->bs->pool) || disk_full(rs->bs))
		return;
	pthread_mutex_lock(&rs->mu);
	uint64_t c = rs->ra_until > n1 ? rs->ra_until : n1;
	pthread_mutex_unlock(&rs->mu);
	while (c < r1) {
		if (cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size, c * CHUNK, 1)) {
			c++;
			continue;
		}
		if (r1 - c < pc && r1 < nch)
			break; /* requests stay whole pieces: later */
		/* A piece stops before a chunk already cached (an index source's
		 * tail read leaves the last one): it is not fetched twice. */
		uint64_t stop = c + 1;
		while (stop < r1 && stop - c < pc &&
		       !cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size, stop * CHUNK, 1))
			stop++;
		uint64_t e = blob_claim_run(rs->bs, id->digest, c, stop, pc);
		if (e == c) {
			c++;
			continue;
		}
		if ((full = start_piece(rs, c, e) != 0))
			break;
		c = e;
	}
	/* Where the pool was full, the next read goes on, even when a
	 * concurrent call of this reader went further. */
	pthread_mutex_lock(&rs->mu);
	if (full ? c < rs->ra_until : c > rs->ra_until)
		rs->ra_until = c;
	pthread_mutex_unlock(&rs->mu);
}

/* The kernel hands a reader's requests to several threads, so the cache
 * file sees reads slightly out of order and its own readahead stays small:
 * after a remount (cache file not in the page cache) reading ahead of a
 * sequential reader keeps the disk busy. A window that grows to 128 MiB
 * was fastest for 1 GiB (warm reads, measured against 8 and 32 MiB); a
 * random reader gets none. */
void blob_warm_readahead(struct fs_rstate *rs, size_t len, uint64_t off)
{
	uint64_t end = off + len, size = rs->id->ref.size;
	pthread_mutex_lock(&rs->mu);
	int seq = off + WARM_SLACK >= rs->warm_next && off <= rs->warm_next + WARM_SLACK;
	if (!seq) {
		rs->warm_win = 0;
		rs->warm_until = 0;
	} else {
		rs->warm_win = rs->warm_win ? rs->warm_win * 2 : WARM_MIN;
		if (rs->warm_win > WARM_MAX)
			rs->warm_win = WARM_MAX;
	}
	if (!seq || end > rs->warm_next)
		rs->warm_next = end;
	uint64_t win = rs->warm_win;
	uint64_t from = rs->warm_until > end ? rs->warm_until : end;
	int advise = win && from < size && from < end + win / 2;
	if (advise)
		rs->warm_until = from + win;
	pthread_mutex_unlock(&rs->mu);
	if (advise)
		cache_blob_willneed(rs->bs->cfg.cache, rs->id->digest, size, from, win);
}
