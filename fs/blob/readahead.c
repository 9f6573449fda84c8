/* Readahead of a sequential reader: a window that grows from RA_MIN to
 * RA_MAX, fetched in pieces of up to PIECE by the pool's workers, and the
 * cache file read ahead of a reader of a cached blob. */
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
	uint64_t c1 = (f->end + CHUNK - 1) / CHUNK;
	int rc = blob_fetch_run(f, NULL);
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

/* Queues a background fetch of chunks [c0, c1) already claimed; releases
 * them when no worker can take it. */
static void start_piece(struct fs_rstate *rs, uint64_t c0, uint64_t c1)
{
	uint64_t size = rs->id->ref.size;
	struct piece *p = calloc(1, sizeof *p);
	if (!p || !(p->f.chunk = cache_chunk_buf_get()))
		goto fail;
	p->f.bs = rs->bs;
	p->f.id = blob_id_get(rs->id);
	p->f.pos = c0 * CHUNK;
	p->f.end = c1 * CHUNK < size ? c1 * CHUNK : size;
	p->f.release_each = 1;
	p->f.released = c0;
	if (blob_pool_submit(rs->bs->pool, piece_run, piece_drop, p) == 0)
		return;
	blob_id_put(p->f.id);
fail:
	if (p)
		cache_chunk_buf_put(p->f.chunk);
	free(p);
	blob_release_range(rs->bs, rs->id->digest, c0, c1);
}

/* With a full cache disk, reads stream from the network: no readahead
 * (it would have nowhere to go). */
static int disk_full(struct fs_blobs *bs)
{
	struct cache_stats st;
	cache_get_stats(bs->cfg.cache, &st);
	return st.disk_full;
}

uint32_t blob_note_read(struct fs_rstate *rs, size_t len, uint64_t off)
{
	pthread_mutex_lock(&rs->mu);
	int sequential = off == rs->next_off;
	uint32_t ra = sequential ? rs->ra : 0;
	if (sequential && rs->ra < RA_MAX)
		rs->ra *= 2;
	else if (!sequential) {
		rs->ra = RA_MIN;
		rs->ra_until = 0;
	}
	rs->next_off = off + len;
	rs->requested += len;
	pthread_mutex_unlock(&rs->mu);
	return ra;
}

/* Starts background fetches of the chunks after [off, off+len) within the
 * readahead window ra, even on a hit, so that a sequential reader rarely
 * waits. Only chunks nobody fetches yet. */
void blob_start_readahead(struct fs_rstate *rs, size_t len, uint64_t off, uint32_t ra)
{
	const struct blob_id *id = rs->id;
	uint64_t nch = (id->ref.size + CHUNK - 1) / CHUNK;
	uint64_t n1 = (off + len + CHUNK - 1) / CHUNK;
	uint64_t r1 = (off + len + ra + CHUNK - 1) / CHUNK;
	if (r1 > nch)
		r1 = nch;
	if (!ra || disk_full(rs->bs))
		return;
	pthread_mutex_lock(&rs->mu);
	uint64_t c = rs->ra_until > n1 ? rs->ra_until : n1;
	/* Refill the window only when less than half of it is ahead, so that
	 * requests are large (whole pieces), not one chunk each time the
	 * reader crosses a chunk boundary. */
	if (c < r1 && (c - n1) * CHUNK <= ra / 2)
		rs->ra_until = r1;
	else
		c = r1;
	pthread_mutex_unlock(&rs->mu);
	while (c < r1) {
		if (cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size, c * CHUNK, 1)) {
			c++;
			continue;
		}
		uint64_t e = blob_claim_run(rs->bs, id->digest, c, r1, PIECE / CHUNK);
		if (e == c) {
			c++;
			continue;
		}
		start_piece(rs, c, e);
		c = e;
	}
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
