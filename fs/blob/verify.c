/* Verification of blobs: sealing (the cache hashes a complete blob), the
 * running hash of a whole-file reader whose bytes bypass the cache, the
 * verify=strict path, and the digests that failed (EIO for BAD_TTL). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob_i.h"
#include "net/digest.h"
#include "net/log.h"

/* ---- digests that failed their hash ---- */

static char bad_mark; /* the value of a failed digest's entry */

int blob_is_bad(struct fs_blobs *bs, const char *digest)
{
	fs_flights_lock(bs->bad);
	struct fs_flight *e = fs_flight_get(bs->bad, digest, 0);
	if (e)
		fs_flight_put(bs->bad, e);
	fs_flights_unlock(bs->bad);
	return e != NULL;
}

static void mark_bad(struct fs_blobs *bs, const char *digest)
{
	fs_flights_lock(bs->bad);
	struct fs_flight *e = fs_flight_get(bs->bad, digest, 1);
	if (e) {
		fs_flight_set(bs->bad, e, &bad_mark);
		fs_flight_expire_at(bs->bad, e, time(NULL) + BAD_TTL);
		fs_flight_put(bs->bad, e);
	}
	fs_flights_unlock(bs->bad);
}

static void inval(struct fs_blobs *bs, uint64_t ino)
{
	if (ino && bs->cfg.inval)
		bs->cfg.inval(bs->cfg.inval_arg, ino);
}

/* ---- sealing ---- */

/* Seals the blob if every chunk is in; a blob whose bytes do not hash to
 * its digest answers EIO from now on (and its page cache is dropped).
 * Returns cache_blob_seal's result. */
int blob_seal_or_mark_bad(struct fs_blobs *bs, const char *digest, uint64_t size, uint64_t ino)
{
	int rc = cache_blob_seal(bs->cfg.cache, digest, size);
	if (rc == -EIO) {
		log_err("blob %s: downloaded bytes do not hash to the digest; reads answer EIO",
			digest);
		mark_bad(bs, digest);
		inval(bs, ino);
	}
	return rc;
}

void blob_seal_check(struct fs_blobs *bs, const char *digest, uint64_t size, uint64_t ino)
{
	if (!cache_blob_complete(bs->cfg.cache, digest))
		blob_seal_or_mark_bad(bs, digest, size, ino);
}

/* The read that reaches the end completes a whole-file read: the blob is
 * sealed (verified) before its last bytes are served. Reads handled out of
 * order can get here while other chunks are still arriving: those are
 * waited for, so that the seal (cheap: the cache hashes as chunks come)
 * succeeds instead of the reader hashing the whole blob again. */
int blob_seal_at_end(struct fs_rstate *rs, size_t len, uint64_t off, volatile int *cancel)
{
	const struct blob_id *id = rs->id;
	cache *ca = rs->bs->cfg.cache;
	if (off + len != id->ref.size)
		return 0;
	for (int round = 0; round < 3 && !cache_blob_complete(ca, id->digest); round++) {
		int rc = blob_seal_or_mark_bad(rs->bs, id->digest, id->ref.size, id->ino);
		if (rc == -EIO)
			return -EIO;
		if (rc != -EAGAIN || !blob_wait_fetches(rs->bs, id->digest, cancel))
			break;
	}
	return 0;
}

/* Fetches the chunks of the blob that are missing, waiting for the ones
 * other threads fetch. */
static int fetch_all(struct fs_rstate *rs, volatile int *cancel)
{
	const struct blob_id *id = rs->id;
	uint64_t nch = (id->ref.size + CHUNK - 1) / CHUNK;
	uint64_t c = 0;
	while (c < nch) {
		if (cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size, c * CHUNK, 1)) {
			c++;
			continue;
		}
		uint64_t e = blob_claim_run(rs->bs, id->digest, c, nch, 64);
		if (e == c) { /* someone else fetches it: wait */
			blob_wait_chunk(rs->bs, id->digest, c, NULL);
			if (!cache_blob_has(rs->bs->cfg.cache, id->digest, id->ref.size,
					    c * CHUNK, 1))
				return -EIO;
			continue;
		}
		int rc = blob_fetch_sync(rs, c, e, NULL, 0, 0, 1, cancel);
		blob_release_range(rs->bs, id->digest, c, e);
		if (rc == -ENOSPC) {
			log_err("verify=strict: no cache space to verify %s", id->digest);
			return -EIO;
		}
		if (rc)
			return rc;
		c = e;
	}
	return 0;
}

/* verify=strict: the whole blob is fetched and sealed before any byte. */
int blob_ensure_verified(struct fs_rstate *rs, volatile int *cancel)
{
	const struct blob_id *id = rs->id;
	cache *ca = rs->bs->cfg.cache;
	for (int round = 0; round < 3 && !cache_blob_complete(ca, id->digest); round++) {
		int rc = fetch_all(rs, cancel);
		if (rc)
			return rc;
		if (blob_seal_or_mark_bad(rs->bs, id->digest, id->ref.size, 0) == -EIO)
			return -EIO;
	}
	return cache_blob_complete(ca, id->digest) ? 0 : -EIO;
}

/* ---- the running hash of a whole-file reader ---- */

/* The hash is complete: -EIO (and the blob dropped) when it mismatches. */
static int hash_final(struct fs_rstate *rs)
{
	const struct blob_id *id = rs->id;
	unsigned char md[32];
	unsigned int l = 0;
	char hex[65];
	int rc = 0;
	EVP_DigestFinal_ex(rs->sha, md, &l);
	net_hex(md, 32, hex);
	if (strcmp(hex, id->hex) != 0) {
		log_err("blob %s: content hashes to sha256:%s; answering EIO", id->digest, hex);
		mark_bad(rs->bs, id->digest);
		cache_blob_drop(rs->bs->cfg.cache, id->digest);
		inval(rs->bs, id->ino);
		rc = -EIO;
	}
	EVP_MD_CTX_free(rs->sha);
	rs->sha = NULL;
	return rc;
}

/* Feeds the sequential hash; -EIO when a whole-file read mismatches. */
static int seq_hash(struct fs_rstate *rs, const char *buf, size_t n, uint64_t off)
{
	int rc = 0;
	pthread_mutex_lock(&rs->mu);
	if (!rs->sha || off > rs->hashed || off + n <= rs->hashed)
		goto out;
	size_t skip = (size_t)(rs->hashed - off);
	EVP_DigestUpdate(rs->sha, buf + skip, n - skip);
	rs->hashed = off + n;
	if (rs->hashed == rs->id->ref.size)
		rc = hash_final(rs);
out:
	pthread_mutex_unlock(&rs->mu);
	return rc;
}

/* The read that reaches the end found the running hash stopped at a
 * read that arrived out of order (several threads serve one reader)
 * and the cache could not seal the blob: the missing part [hashed, end)
 * is read again, from the cache where it is there, else from the
 * network without storing it, and fed to the hash. */
static int hash_gap(struct fs_rstate *rs, uint64_t end, volatile int *cancel)
{
	const struct blob_id *id = rs->id;
	char *piece = malloc(PIECE);
	int rc = 0;
	if (!piece)
		return -ENOMEM;
	for (;;) {
		pthread_mutex_lock(&rs->mu);
		uint64_t pos = rs->sha ? rs->hashed : end;
		pthread_mutex_unlock(&rs->mu);
		if (pos >= end)
			break;
		if (cancel && *cancel) {
			rc = -EINTR;
			break;
		}
		size_t n = end - pos < PIECE ? (size_t)(end - pos) : PIECE;
		if (cache_blob_read(rs->bs->cfg.cache, id->digest, id->ref.size, piece, n, pos) !=
			(ssize_t)n &&
		    (rc = blob_fetch_uncached(rs, piece, n, pos, cancel)) != 0) {
			if (rc != -ENOMEM && rc != -EINTR) {
				log_err("blob %s: cannot fetch [%llu, %llu) to verify it: answering EIO",
					id->digest, (unsigned long long)pos,
					(unsigned long long)(pos + n));
				rc = -EIO;
			}
			break;
		}
		if ((rc = seq_hash(rs, piece, n, pos)) != 0)
			break;
	}
	free(piece);
	return rc;
}

/* A whole-file read of a blob the cache could not seal (disk full, the
 * cache_size cap, evicted chunks) is verified by the reader's running hash:
 * it is completed up to upto from the cache (or fetched again) before the
 * bytes there are served. A reader that asked for much less than the blob
 * (a tail read) is not a whole-file read. */
int blob_hash_to(struct fs_rstate *rs, uint64_t upto, volatile int *cancel)
{
	const struct blob_id *id = rs->id;
	if (cache_blob_complete(rs->bs->cfg.cache, id->digest))
		return 0;
	pthread_mutex_lock(&rs->mu);
	int gap = rs->sha && rs->hashed < upto && rs->requested + INFLIGHT_SLACK >= id->ref.size;
	pthread_mutex_unlock(&rs->mu);
	return gap ? hash_gap(rs, upto, cancel) : 0;
}

/* A read at offset 0 starts a new whole-file pass: its bytes are verified
 * afresh (a finished hash verified the bytes of an earlier pass, which a
 * changing source may not serve again). */
void blob_restart_hash(struct fs_rstate *rs)
{
	pthread_mutex_lock(&rs->mu);
	if (!rs->sha && (rs->sha = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (!EVP_DigestInit_ex(rs->sha, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(rs->sha);
		rs->sha = NULL;
	}
	rs->hashed = 0;
out:
	pthread_mutex_unlock(&rs->mu);
}

/* Bytes served from the cache are verified when the blob is sealed (or by
 * blob_hash_to), so only bytes that bypassed the cache feed the running
 * hash; first it catches up on what a sequential reader got from the cache,
 * so that it stays contiguous. */
int blob_hash_uncached(struct fs_rstate *rs, const char *buf, size_t len, uint64_t off,
		       volatile int *cancel)
{
	pthread_mutex_lock(&rs->mu);
	int behind = rs->sha && rs->hashed < off && rs->requested + INFLIGHT_SLACK >= off + len;
	pthread_mutex_unlock(&rs->mu);
	if (behind) {
		int rc = hash_gap(rs, off, cancel);
		if (rc)
			return rc;
	}
	return seq_hash(rs, buf, len, off);
}
