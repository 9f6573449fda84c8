/* The module object and the read path of an open blob (see blob.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/blob/blob_i.h"

/* ---- the module ---- */

int fs_blobs_new(const struct fs_blobs_cfg *cfg, struct fs_blobs **out)
{
	int rc = -ENOMEM;
	struct fs_blobs *b = calloc(1, sizeof *b);
	*out = NULL;
	if (!b)
		goto out;
	b->cfg = *cfg;
	if (!b->cfg.src)
		b->cfg.src = &fs_blob_source_ecr;
	if ((rc = fs_flights_new(&(struct fs_flights_cfg){0}, &b->chunks)) ||
	    (rc = fs_flights_new(&(struct fs_flights_cfg){MAX_URLS, free}, &b->urls)) ||
	    (rc = fs_flights_new(&(struct fs_flights_cfg){MAX_BAD, NULL}, &b->bad)) ||
	    (rc = blob_pool_new(MAX_WORKERS, &b->pool)))
		goto out;
	*out = b;
	b = NULL;
out:
	fs_blobs_free(b);
	return rc;
}

void fs_blobs_free(struct fs_blobs *b)
{
	if (!b)
		return;
	blob_pool_free(b->pool); /* first: its jobs use the tables */
	fs_flights_free(b->chunks);
	fs_flights_free(b->urls);
	fs_flights_free(b->bad);
	free(b);
}

static size_t count(struct fs_flights *t)
{
	fs_flights_lock(t);
	size_t n = fs_flights_count(t);
	fs_flights_unlock(t);
	return n;
}

void fs_blobs_stats(struct fs_blobs *b, struct fs_blobs_stats *out)
{
	out->flights = count(b->chunks);
	out->urls = count(b->urls);
	out->bad = count(b->bad);
	blob_pool_stats(b->pool, &out->ra_running, &out->ra_queued);
}

size_t blob_received_slot(const char *digest)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)digest; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % RECEIVED_SLOTS;
}

uint64_t fs_blob_received(struct fs_blobs *b, const char *digest)
{
	return __atomic_load_n(&b->received[blob_received_slot(digest)], __ATOMIC_RELAXED);
}

/* ---- a blob's name ---- */

struct blob_id *blob_id_new(const struct fs_blob_ref *ref, uint64_t ino)
{
	const char *rg = ref->registry ? ref->registry : "";
	const char *rn = ref->region ? ref->region : "", *rp = ref->repo ? ref->repo : "";
	size_t lg = strlen(rg) + 1, ln = strlen(rn) + 1, lr = strlen(rp) + 1;
	struct blob_id *id = calloc(1, sizeof *id + lg + ln + lr);
	if (!id)
		return NULL;
	id->refs = 1;
	id->ref = *ref;
	id->ref.registry = memcpy(id->buf, rg, lg);
	id->ref.region = memcpy(id->buf + lg, rn, ln);
	id->ref.repo = memcpy(id->buf + lg + ln, rp, lr);
	snprintf(id->digest, sizeof id->digest, "%s", ref->digest);
	id->ref.digest = id->digest;
	const char *colon = strchr(id->digest, ':');
	id->hex = colon ? colon + 1 : id->digest;
	id->ino = ino;
	return id;
}

struct blob_id *blob_id_get(struct blob_id *id)
{
	__atomic_add_fetch(&id->refs, 1, __ATOMIC_RELAXED);
	return id;
}

void blob_id_put(struct blob_id *id)
{
	if (id && __atomic_sub_fetch(&id->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(id);
}

/* ---- open, close ---- */

int fs_blob_open(struct fs_blobs *b, const struct fs_blob_ref *ref, uint64_t ino,
		 struct fs_rstate **out)
{
	struct fs_rstate *rs = calloc(1, sizeof *rs);
	*out = NULL;
	if (!rs || !(rs->id = blob_id_new(ref, ino))) {
		free(rs);
		return -ENOMEM;
	}
	rs->bs = b;
	pthread_mutex_init(&rs->mu, NULL);
	rs->complete = cache_blob_complete(b->cfg.cache, rs->id->digest);
	if (!rs->complete) {
		rs->sha = EVP_MD_CTX_new();
		if (rs->sha && !EVP_DigestInit_ex(rs->sha, EVP_sha256(), NULL)) {
			EVP_MD_CTX_free(rs->sha);
			rs->sha = NULL;
		}
	}
	cache_blob_pin(b->cfg.cache, rs->id->digest);
	*out = rs;
	return 0;
}

void fs_blob_caller_checks(struct fs_rstate *rs) { rs->caller_checks = 1; }

void fs_blob_close(struct fs_rstate *rs)
{
	if (!rs)
		return;
	cache_blob_unpin(rs->bs->cfg.cache, rs->id->digest);
	EVP_MD_CTX_free(rs->sha);
	pthread_mutex_destroy(&rs->mu);
	blob_id_put(rs->id);
	free(rs);
}

/* ---- read ---- */

/* Fetches the chunks of [off, off+len) that nobody fetches and waits for
 * the others, copying the reader's bytes into buf on the way. *all is set
 * when this reader fetched every chunk itself (then buf is filled). */
static int fetch_missing(struct fs_rstate *rs, char *buf, size_t len, uint64_t off,
			 volatile int *cancel, int *all)
{
	const struct blob_id *id = rs->id;
	cache *ca = rs->bs->cfg.cache;
	uint64_t n1 = (off + len + CHUNK - 1) / CHUNK;
	uint64_t c = off / CHUNK;
	*all = 1;
	while (c < n1) {
		if (cache_blob_has(ca, id->digest, id->ref.size, c * CHUNK, 1)) {
			c++;
			*all = 0;
			continue;
		}
		uint64_t e = blob_claim_run(rs->bs, id->digest, c, n1, UINT64_MAX);
		if (e == c) {
			*all = 0;
			if (blob_wait_chunk(rs->bs, id->digest, c, cancel) || (cancel && *cancel))
				return -EINTR;
			c++;
			continue;
		}
		int frc = blob_fetch_sync(rs, c, e, buf, len, off, 1, cancel);
		if (frc == 0)
			blob_seal_check(rs->bs, id->digest, id->ref.size, id->ino);
		blob_release_range(rs->bs, id->digest, c, e);
		if (frc && frc != -ENOSPC)
			return frc == -EINTR ? -EINTR : frc == -ENOENT ? -EIO : frc;
		c = e;
	}
	return 0;
}

/* The verified blob is cached (pinned while open): no bookkeeping; the
 * pages are spliced from the cache file (one copy less than pread and
 * reply: 0.57 vs 0.68 s for 1 GiB after a remount). 0 when it is no
 * longer there (evicted by another mount): the general path. */
static ssize_t read_complete(struct fs_rstate *rs, size_t len, uint64_t off, int *fd)
{
	ssize_t rc = cache_blob_read_fd(rs->bs->cfg.cache, rs->id->digest, rs->id->ref.size, len,
					off, fd);
	if (rc == (ssize_t)len) {
		blob_warm_readahead(rs, len, off);
		return rc;
	}
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	rs->complete = 0;
	return 0;
}

/* The bytes are in the cache now, or come from the wire (disk full,
 * evicted); all: buf already holds them. */
static ssize_t read_filled(struct fs_rstate *rs, char **bufp, size_t len, uint64_t off,
			   volatile int *cancel, int *fd, int all)
{
	const struct blob_id *id = rs->id;
	ssize_t rc = cache_blob_read_fd(rs->bs->cfg.cache, id->digest, id->ref.size, len, off, fd);
	if (rc == (ssize_t)len) {
		/* The last bytes of a blob the cache could not seal: the running
		 * hash covers the whole blob before they are served (unless the
		 * caller checks them: a TOC's tail read must not fetch it all). */
		ssize_t hrc = off + len == id->ref.size && !rs->caller_checks
				  ? blob_hash_to(rs, id->ref.size, cancel)
				  : 0;
		if (hrc) {
			close(*fd);
			*fd = -1;
			return hrc;
		}
		return rc;
	}
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (!*bufp && !(*bufp = malloc(len)))
		return -ENOMEM;
	if (!all && (rc = blob_fetch_uncached(rs, *bufp, len, off, cancel)) != 0)
		return rc;
	if (blob_hash_uncached(rs, *bufp, len, off, cancel) != 0)
		return -EIO;
	return (ssize_t)len;
}

ssize_t fs_blob_read(struct fs_rstate *rs, char **bufp, size_t len, uint64_t off,
		     volatile int *cancel, int *fd)
{
	const struct blob_id *id = rs->id;
	ssize_t rc;
	int all = 0;
	*bufp = NULL;
	*fd = -1;
	if (off >= id->ref.size || len == 0)
		return 0;
	if (len > id->ref.size - off)
		len = (size_t)(id->ref.size - off);
	if (rs->complete && (rc = read_complete(rs, len, off, fd)) != 0)
		return rc;
	if (blob_is_bad(rs->bs, id->digest))
		return -EIO;
	if (rs->bs->cfg.verify_strict && !rs->caller_checks &&
	    (rc = blob_ensure_verified(rs, cancel)) != 0)
		return rc;
	if (off == 0)
		blob_restart_hash(rs);
	blob_start_readahead(rs, len, off, blob_note_read(rs, len, off));
	if (!cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size, off, len)) {
		if (!(*bufp = malloc(len)))
			return -ENOMEM;
		if ((rc = fetch_missing(rs, *bufp, len, off, cancel, &all)) != 0)
			return rc;
		if (blob_is_bad(rs->bs, id->digest))
			return -EIO;
	}
	if ((rc = blob_seal_at_end(rs, len, off, cancel)) != 0)
		return rc;
	return read_filled(rs, bufp, len, off, cancel, fd, all);
}
