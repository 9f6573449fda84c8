/* Fetching chunks of a blob into the cache: which chunks are in flight
 * (single-flight per chunk), download URLs until they expire, and ranged
 * fetches through the blob source with resumption and URL renewal. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob_i.h"

/* ---- chunks in flight ---- */

static void chunk_key(char *key, size_t n, const char *digest, uint64_t c)
{
	snprintf(key, n, "%s/%" PRIu64, digest, c);
}

uint64_t blob_claim_run(struct fs_blobs *bs, const char *digest, uint64_t c, uint64_t end,
			uint64_t max)
{
	char key[100];
	uint64_t e = c;
	fs_flights_lock(bs->chunks);
	for (; e < end && e - c < max; e++) {
		chunk_key(key, sizeof key, digest, e);
		struct fs_flight *f = fs_flight_get(bs->chunks, key, 1);
		int mine = f && fs_flight_claim(f);
		if (f)
			fs_flight_put(bs->chunks, f);
		if (!mine)
			break;
	}
	fs_flights_unlock(bs->chunks);
	return e;
}

void blob_release_range(struct fs_blobs *bs, const char *digest, uint64_t c0, uint64_t c1)
{
	char key[100];
	fs_flights_lock(bs->chunks);
	for (uint64_t c = c0; c < c1; c++) {
		chunk_key(key, sizeof key, digest, c);
		struct fs_flight *f = fs_flight_get(bs->chunks, key, 0);
		if (!f)
			continue;
		fs_flight_done(f);
		fs_flight_remove(bs->chunks, f);
		fs_flight_put(bs->chunks, f);
	}
	fs_flights_unlock(bs->chunks);
}

int blob_wait_chunk(struct fs_blobs *bs, const char *digest, uint64_t c, volatile int *cancel)
{
	char key[100];
	int rc = 0;
	struct fs_flight *f;
	chunk_key(key, sizeof key, digest, c);
	fs_flights_lock(bs->chunks);
	while (rc == 0 && (f = fs_flight_get(bs->chunks, key, 0)) != NULL) {
		rc = fs_flight_wait(bs->chunks, f, cancel);
		fs_flight_put(bs->chunks, f);
	}
	fs_flights_unlock(bs->chunks);
	return rc;
}

static int same_blob(const char *key, void *arg)
{
	size_t n = strlen(arg);
	return !strncmp(key, arg, n) && key[n] == '/';
}

int blob_wait_fetches(struct fs_blobs *bs, const char *digest, volatile int *cancel)
{
	int waited = 0;
	struct fs_flight *f;
	fs_flights_lock(bs->chunks);
	while ((f = fs_flights_find_busy(bs->chunks, same_blob, (void *)digest)) != NULL) {
		waited = 1;
		int rc = fs_flight_wait(bs->chunks, f, cancel);
		fs_flight_put(bs->chunks, f);
		if (rc)
			break;
	}
	fs_flights_unlock(bs->chunks);
	return waited;
}

/* ---- download URLs: one request per blob, kept until they expire ---- */

/* Asks the source for key's URL while holding the claim on u (the table
 * unlocked meanwhile), keeps it and wakes the waiters. */
static int url_load(struct fs_blobs *bs, const struct blob_id *id, struct fs_flight *u, char **out)
{
	char *url = NULL, *kept = NULL;
	time_t exp = 0;
	fs_flights_unlock(bs->urls);
	int rc = bs->cfg.src->url(bs->cfg.src->arg, &id->ref, &url, &exp);
	if (rc == 0 && !(kept = strdup(url)))
		rc = -ENOMEM;
	fs_flights_lock(bs->urls);
	if (rc == 0) {
		fs_flight_set(bs->urls, u, kept);
		/* Gone 5 s before it expires: never handed out past that. */
		fs_flight_expire_at(bs->urls, u, exp > 5 ? exp - 5 : 1);
		*out = url;
	} else {
		free(url);
	}
	fs_flight_done(u);
	return rc;
}

/* The blob's download URL in *out (malloc'd). Concurrent callers share one
 * GetDownloadUrlForLayer; a kept URL serves until it expires. stale: a URL
 * that was refused (403): asked again only while it is still the kept one,
 * so that fetches that met the same 403 renew it once between them. */
static int get_url(struct fs_blobs *bs, const struct blob_id *id, const char *stale, char **out,
		   volatile int *cancel)
{
	char key[600];
	const struct fs_blob_ref *r = &id->ref;
	int rc = -EAGAIN;
	snprintf(key, sizeof key, "%s/%s/%s/%s", r->registry, r->region, r->repo, id->digest);
	*out = NULL;
	fs_flights_lock(bs->urls);
	for (int round = 0; rc == -EAGAIN && round < 6; round++) {
		struct fs_flight *u = fs_flight_get(bs->urls, key, 1);
		const char *val = u ? fs_flight_val(u) : NULL;
		if (!u)
			rc = -ENOMEM;
		else if (fs_flight_busy(u)) /* another caller asks: share its answer */
			rc = fs_flight_wait(bs->urls, u, cancel) ? -EINTR : -EAGAIN;
		else if (val && (!stale || strcmp(val, stale)))
			rc = (*out = strdup(val)) ? 0 : -ENOMEM;
		else if (fs_flight_claim(u))
			rc = url_load(bs, id, u, out);
		if (u)
			fs_flight_put(bs->urls, u);
	}
	fs_flights_unlock(bs->urls);
	return rc == -EAGAIN ? -EIO : rc;
}

/* ---- ranged fetches ---- */

/* A full chunk was received: stores it and, for readahead, lets its
 * readers go on now rather than when the whole piece is in. The blob's
 * last chunk waits for the seal (see readahead.c). */
static void chunk_filled(struct fetch *f, uint64_t clen)
{
	const struct blob_id *id = f->id;
	if (f->cache_err)
		return;
	int rc = cache_blob_write_chunk(f->bs->cfg.cache, id->digest, id->ref.size, f->pos,
					f->chunk, clen);
	if (rc) {
		f->cache_err = rc;
	} else if (f->release_each && f->pos + clen < id->ref.size) {
		uint64_t next = f->pos / CHUNK + 1;
		blob_release_range(f->bs, id->digest, f->released, next);
		f->released = next;
	}
}

static int fetch_sink(void *arg, const char *data, size_t n)
{
	struct fetch *f = arg;
	uint64_t size = f->id->ref.size;
	__atomic_add_fetch(&f->bs->received[blob_received_slot(f->id->digest)], n,
			   __ATOMIC_RELAXED);
	while (n > 0) {
		uint64_t abs = f->pos + f->fill;
		uint64_t clen = (f->pos + CHUNK <= size ? CHUNK : size - f->pos);
		size_t take = (size_t)(clen - f->fill) < n ? (size_t)(clen - f->fill) : n;
		if (abs >= f->end)
			return -EIO; /* more than asked */
		memcpy(f->chunk + f->fill, data, take);
		/* Serve the reader straight from the wire when it asked for this. */
		if (f->out && abs < f->out_off + f->out_len && abs + take > f->out_off) {
			uint64_t s = abs > f->out_off ? abs : f->out_off;
			uint64_t e = abs + take < f->out_off + f->out_len ? abs + take
									 : f->out_off + f->out_len;
			memcpy(f->out + (s - f->out_off), data + (s - abs), (size_t)(e - s));
		}
		f->fill += take;
		f->delivered += take;
		data += take;
		n -= take;
		if (f->fill == clen) {
			chunk_filled(f, clen);
			f->pos += clen;
			f->fill = 0;
			/* A readahead that cannot store what it fetches stops. */
			if (f->cache_err && !f->out)
				return f->cache_err;
		}
	}
	return 0;
}

int blob_fetch_run(struct fetch *f, volatile int *cancel)
{
	const struct fs_blob_source *src = f->bs->cfg.src;
	int rc = 0;
	char *url = NULL, *stale = NULL;
	time_t deadline = time(NULL) + f->bs->cfg.deadline_ms / 1000 + 1;
	for (int attempt = 0; attempt < 6; attempt++) {
		if (!url && (rc = get_url(f->bs, f->id, stale, &url, cancel)) != 0)
			break;
		uint64_t from = f->pos + f->fill;
		rc = src->get_range(src->arg, &f->id->ref, url, from, f->end - from, fetch_sink, f,
				    cancel);
		if (rc == 0 && f->pos + f->fill < f->end)
			rc = -EIO;
		if (rc == 0 || rc == -EINTR || rc == -ENOENT || (cancel && *cancel))
			break;
		if (f->cache_err && !f->out) {
			rc = f->cache_err; /* stopped by the sink: the disk is full */
			break;
		}
		if (rc == -EKEYEXPIRED) {
			free(stale);
			stale = url;
			url = NULL;
		}
		if (time(NULL) >= deadline)
			break;
		/* A short body keeps the bytes received: resume after them. */
	}
	free(url);
	free(stale);
	if (rc == 0 && f->cache_err == 0)
		return 0;
	return rc ? rc : f->cache_err;
}

int blob_fetch_sync(struct fs_rstate *rs, uint64_t c0, uint64_t c1, char *buf, size_t len,
		    uint64_t off, int store, volatile int *cancel)
{
	uint64_t size = rs->id->ref.size;
	struct fetch f = {.bs = rs->bs, .id = rs->id, .pos = c0 * CHUNK, .out = buf,
			  .out_off = off, .out_len = len, .cache_err = store ? 0 : -ENOSPC};
	f.end = c1 * CHUNK < size ? c1 * CHUNK : size;
	f.chunk = cache_chunk_buf_get();
	if (!f.chunk)
		return -ENOMEM;
	int rc = blob_fetch_run(&f, cancel);
	cache_chunk_buf_put(f.chunk);
	return rc;
}

/* Another reader's fetch failed, the disk is full, or the hash needs
 * bytes the cache does not have. */
int blob_fetch_uncached(struct fs_rstate *rs, char *buf, size_t len, uint64_t off,
			volatile int *cancel)
{
	int frc = blob_fetch_sync(rs, off / CHUNK, (off + len + CHUNK - 1) / CHUNK, buf, len, off,
				  0, cancel);
	if (frc && frc != -ENOSPC)
		return frc == -ENOENT ? -EIO : frc;
	return 0;
}
