/* Blob reads through the cache (see blob.h). */
#include "fs/blob/blob.h"
#include "fs/fuse/notify.h" /* until blob takes an invalidation callback */

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/log.h"

#define CHUNK ((uint64_t)CACHE_CHUNK_SIZE)
#define RA_MIN (1u << 20)
#define RA_MAX (64u << 20)
#define PIECE (16u << 20)  /* a background worker fetches up to this much */
#define MAX_WORKERS 8      /* background fetches in flight, process-wide */
#define BAD_TTL 60         /* seconds a blob that failed its hash answers EIO */
#define WARM_MIN (4u << 20)   /* cache file read ahead of a sequential reader of a */
#define WARM_MAX (128u << 20) /* cached blob: grows from MIN to MAX */
#define WARM_SLACK (4u << 20) /* reads handled out of order still count as sequential */

struct fs_rstate {
	struct fs_ctx *c;
	struct fs_image *img; /* referenced */
	const struct fs_blob *b;
	uint64_t ino;
	pthread_mutex_t mu;   /* protects the fields below */
	uint64_t next_off;    /* where a sequential reader reads next */
	uint32_t ra;          /* readahead for the next sequential miss */
	uint64_t ra_until;    /* chunks below this were already considered */
	int complete;         /* the verified blob is in the cache: plain reads */
	EVP_MD_CTX *sha;      /* hash of [0, hashed) while reads are in order */
	uint64_t hashed;
	uint64_t requested;   /* bytes asked for on the general path */
	uint64_t warm_until;  /* the cache file is read ahead up to here */
	uint64_t warm_next;   /* end of the furthest read of a cached blob */
	uint64_t warm_win;    /* its read-ahead window (0: reads are random) */
};

/* ---- in-flight chunks (single-flight) and bad blobs ---- */

struct flight {
	char digest[72];
	uint64_t chunk;
	struct flight *next;
};

struct bad {
	char digest[72];
	time_t at;
	struct bad *next;
};

/* Protects flights, bads, nworkers and the URL cache. */
static pthread_mutex_t bl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bl_cv = PTHREAD_COND_INITIALIZER; /* a flight ended / a worker exited */
static struct flight *flights;
static struct bad *bads;
static int nworkers;

static struct flight *flight_find(const char *digest, uint64_t chunk)
{
	for (struct flight *f = flights; f; f = f->next)
		if (f->chunk == chunk && !strcmp(f->digest, digest))
			return f;
	return NULL;
}

/* Claims a chunk for fetching; 0 if someone else fetches it. Lock held. */
static int claim_locked(const char *digest, uint64_t chunk)
{
	if (flight_find(digest, chunk))
		return 0;
	struct flight *f = calloc(1, sizeof *f);
	if (!f)
		return 0;
	snprintf(f->digest, sizeof f->digest, "%s", digest);
	f->chunk = chunk;
	f->next = flights;
	flights = f;
	return 1;
}

/* Claims the chunks from c on that nobody fetches, up to end and at most
 * max of them; returns the end of the claimed run (c: none claimed). */
static uint64_t claim_run(const char *digest, uint64_t c, uint64_t end, uint64_t max)
{
	uint64_t e = c;
	pthread_mutex_lock(&bl_mu);
	while (e < end && e - c < max && claim_locked(digest, e))
		e++;
	pthread_mutex_unlock(&bl_mu);
	return e;
}

static void release_range(const char *digest, uint64_t c0, uint64_t c1)
{
	pthread_mutex_lock(&bl_mu);
	for (struct flight **pp = &flights; *pp;) {
		struct flight *f = *pp;
		if (f->chunk >= c0 && f->chunk < c1 && !strcmp(f->digest, digest)) {
			*pp = f->next;
			free(f);
		} else {
			pp = &f->next;
		}
	}
	pthread_cond_broadcast(&bl_cv);
	pthread_mutex_unlock(&bl_mu);
}

static int is_bad(const char *digest)
{
	int bad = 0;
	time_t now = time(NULL);
	pthread_mutex_lock(&bl_mu);
	for (struct bad *b = bads; b; b = b->next)
		if (!strcmp(b->digest, digest) && now - b->at < BAD_TTL)
			bad = 1;
	pthread_mutex_unlock(&bl_mu);
	return bad;
}

static void mark_bad(const char *digest)
{
	struct bad *b = calloc(1, sizeof *b);
	if (!b)
		return;
	snprintf(b->digest, sizeof b->digest, "%s", digest);
	b->at = time(NULL);
	pthread_mutex_lock(&bl_mu);
	b->next = bads;
	bads = b;
	pthread_mutex_unlock(&bl_mu);
}

/* ---- download URLs, cached until they expire ---- */

struct url {
	char *key; /* registry/region/repo/digest */
	char *url;
	time_t expires;
	struct url *next;
};
static struct url *urls; /* under bl_mu */

static int get_url(struct fs_ctx *c, const struct fs_image *img, const char *digest, int renew,
		   char **out)
{
	char key[600];
	snprintf(key, sizeof key, "%s/%s/%s/%s", img->registry, img->region, img->repo, digest);
	time_t now = time(NULL);
	pthread_mutex_lock(&bl_mu);
	for (struct url *u = urls; u; u = u->next) {
		if (!strcmp(u->key, key)) {
			if (!renew && u->expires > now + 5) {
				*out = strdup(u->url);
				pthread_mutex_unlock(&bl_mu);
				return *out ? 0 : -ENOMEM;
			}
			break;
		}
	}
	pthread_mutex_unlock(&bl_mu);

	char *url = NULL;
	time_t exp = 0;
	struct ecr_where w = {.registry_id = img->registry, .region = img->region,
			      .repository = img->repo};
	int rc = ecr_get_download_url(fs_ecr_for(c, img->registry), &w, digest, &url, &exp, NULL);
	if (rc)
		return rc;
	pthread_mutex_lock(&bl_mu);
	struct url *u;
	for (u = urls; u; u = u->next)
		if (!strcmp(u->key, key))
			break;
	if (!u && (u = calloc(1, sizeof *u)) && !(u->key = strdup(key))) {
		free(u);
		u = NULL;
	} else if (u && !u->url) {
		u->next = urls;
		urls = u;
	}
	if (u) {
		char *copy = strdup(url);
		if (copy) {
			free(u->url);
			u->url = copy;
			u->expires = exp;
		}
	}
	pthread_mutex_unlock(&bl_mu);
	*out = url;
	return 0;
}

/* ---- fetching a range of chunks into the cache ---- */

struct fetch {
	struct fs_ctx *c;
	struct fs_image *img; /* referenced by workers */
	char digest[72];
	uint64_t size;
	uint64_t pos;     /* offset of the chunk being filled */
	uint64_t end;     /* end of the range (chunk-aligned or size) */
	char *chunk;      /* CHUNK bytes */
	size_t fill;
	int cache_err;    /* a chunk could not be stored (-ENOSPC...) */
	char *out;        /* direct copy of [out_off, out_off+out_len) */
	uint64_t out_off;
	size_t out_len;
	uint64_t delivered; /* bytes of the range received */
	int release_each;   /* a worker: wake readers chunk by chunk */
	uint64_t released;  /* chunks below this index are released */
};

static int fetch_sink(void *arg, const char *data, size_t n)
{
	struct fetch *f = arg;
	while (n > 0) {
		uint64_t abs = f->pos + f->fill;
		uint64_t clen = (f->pos + CHUNK <= f->size ? CHUNK : f->size - f->pos);
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
			if (!f->cache_err) {
				int rc = cache_blob_write_chunk(f->c->cache, f->digest, f->size, f->pos,
								f->chunk, clen);
				if (rc)
					f->cache_err = rc;
				/* Readers waiting for this chunk go on now, not when
				 * the whole piece is in. The blob's last chunk waits
				 * for the seal (see worker_main). */
				else if (f->release_each && f->pos + clen < f->size) {
					uint64_t next = f->pos / CHUNK + 1;
					release_range(f->digest, f->released, next);
					f->released = next;
				}
			}
			f->pos += clen;
			f->fill = 0;
			/* A readahead that cannot store what it fetches stops. */
			if (f->cache_err && !f->out)
				return f->cache_err;
		}
	}
	return 0;
}

/* Fetches [f->pos, f->end) (chunk-aligned start) with resumption after a
 * short body and URL renewal after a 403. */
static int fetch_run(struct fetch *f, volatile int *cancel)
{
	int rc = 0, renew = 0;
	char *url = NULL;
	time_t deadline = time(NULL) + f->c->deadline_ms / 1000 + 1;
	for (int attempt = 0; attempt < 6; attempt++) {
		if (!url && (rc = get_url(f->c, f->img, f->digest, renew, &url)) != 0)
			break;
		uint64_t from = f->pos + f->fill;
		rc = ecr_fetch_url_range(fs_ecr_for(f->c, f->img->registry), url, from, f->end - from,
					 fetch_sink, f, cancel);
		if (rc == 0 && f->pos + f->fill < f->end)
			rc = -EIO;
		if (rc == 0 || rc == -EINTR || rc == -ENOENT || (cancel && *cancel))
			break;
		if (f->cache_err && !f->out) {
			rc = f->cache_err; /* stopped by the sink: the disk is full */
			break;
		}
		if (rc == -EKEYEXPIRED) {
			free(url);
			url = NULL;
			renew = 1;
		}
		if (time(NULL) >= deadline)
			break;
		/* A short body keeps the bytes received: resume after them. */
	}
	free(url);
	if (rc == 0 && f->cache_err == 0)
		return 0;
	return rc ? rc : f->cache_err;
}

/* Seals the blob if every chunk is in; a blob whose bytes do not hash to
 * its digest answers EIO from now on (and its page cache is dropped).
 * Returns cache_blob_seal's result. */
static int seal_or_mark_bad(struct fs_ctx *c, const char *digest, uint64_t size, uint64_t ino)
{
	int rc = cache_blob_seal(c->cache, digest, size);
	if (rc == -EIO) {
		log_err("blob %s: downloaded bytes do not hash to the digest; reads answer EIO",
			digest);
		mark_bad(digest);
		if (ino)
			fs_inval_inode_async(ino);
	}
	return rc;
}

static void seal_check(struct fs_ctx *c, const char *digest, uint64_t size, uint64_t ino)
{
	if (!cache_blob_complete(c->cache, digest))
		seal_or_mark_bad(c, digest, size, ino);
}

struct worker_arg {
	struct fetch f;
	uint64_t ino;
};

static void *worker_main(void *arg)
{
	struct worker_arg *w = arg;
	struct fetch *f = &w->f;
	uint64_t c1 = (f->end + CHUNK - 1) / CHUNK;
	int rc = fetch_run(f, NULL);
	if (rc && rc != -ENOSPC)
		log_debug("readahead of %s failed: %s", f->digest, strerror(-rc));
	/* Seal before waking the readers of these chunks: if they completed a
	 * blob that does not hash, its readers get EIO, not its bytes. */
	if (rc == 0)
		seal_check(f->c, f->digest, f->size, w->ino);
	release_range(f->digest, f->released, c1);
	fs_image_put(f->img);
	cache_chunk_buf_put(f->chunk);
	free(w);
	pthread_mutex_lock(&bl_mu);
	nworkers--;
	pthread_cond_broadcast(&bl_cv);
	pthread_mutex_unlock(&bl_mu);
	return NULL;
}

/* Starts a background fetch of chunks [c0, c1) already claimed; releases
 * them when no worker can start. */
static void start_worker(struct fs_rstate *rs, uint64_t c0, uint64_t c1)
{
	struct worker_arg *w = calloc(1, sizeof *w);
	pthread_t t;
	pthread_attr_t at;
	int started = 0;
	pthread_mutex_lock(&bl_mu);
	int ok = nworkers < MAX_WORKERS;
	if (ok)
		nworkers++;
	pthread_mutex_unlock(&bl_mu);
	if (!ok || !w || !(w->f.chunk = cache_chunk_buf_get()))
		goto out;
	w->f.c = rs->c;
	w->f.img = rs->img;
	fs_image_ref(rs->img);
	snprintf(w->f.digest, sizeof w->f.digest, "%s", rs->b->digest);
	w->f.size = rs->b->size;
	w->f.pos = c0 * CHUNK;
	w->f.end = c1 * CHUNK < rs->b->size ? c1 * CHUNK : rs->b->size;
	w->f.release_each = 1;
	w->f.released = c0;
	w->ino = rs->ino;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	started = pthread_create(&t, &at, worker_main, w) == 0;
	pthread_attr_destroy(&at);
	if (!started)
		fs_image_put(rs->img);
out:
	if (!started) {
		if (w)
			cache_chunk_buf_put(w->f.chunk);
		free(w);
		release_range(rs->b->digest, c0, c1);
		if (ok) {
			pthread_mutex_lock(&bl_mu);
			nworkers--;
			pthread_cond_broadcast(&bl_cv);
			pthread_mutex_unlock(&bl_mu);
		}
	}
}

/* With a full cache disk, reads stream from the network: no readahead
 * (it would have nowhere to go). */
static int disk_full(struct fs_ctx *c)
{
	struct cache_stats st;
	cache_get_stats(c->cache, &st);
	return st.disk_full;
}

/* 1 when chunk ci of the blob is in the cache. */
static int chunk_cached(struct fs_rstate *rs, uint64_t ci)
{
	return cache_blob_has(rs->c->cache, rs->b->digest, rs->b->size, ci * CHUNK, 1);
}

/* ---- the read path ---- */

int fs_blob_open(struct fs_ctx *c, struct fs_image *img, int blob_idx, uint64_t ino,
		 struct fs_rstate **out)
{
	struct fs_rstate *rs = calloc(1, sizeof *rs);
	if (!rs)
		return -ENOMEM;
	rs->c = c;
	rs->img = img;
	fs_image_ref(img);
	rs->b = &img->blobs[blob_idx];
	rs->ino = ino;
	rs->ra = RA_MIN;
	pthread_mutex_init(&rs->mu, NULL);
	rs->complete = !rs->b->data && cache_blob_complete(c->cache, rs->b->digest);
	if (!rs->b->data && !rs->complete) {
		rs->sha = EVP_MD_CTX_new();
		if (rs->sha && !EVP_DigestInit_ex(rs->sha, EVP_sha256(), NULL)) {
			EVP_MD_CTX_free(rs->sha);
			rs->sha = NULL;
		}
	}
	if (!rs->b->data)
		cache_blob_pin(c->cache, rs->b->digest);
	*out = rs;
	return 0;
}

void fs_blob_close(struct fs_rstate *rs)
{
	if (!rs)
		return;
	if (!rs->b->data)
		cache_blob_unpin(rs->c->cache, rs->b->digest);
	EVP_MD_CTX_free(rs->sha);
	pthread_mutex_destroy(&rs->mu);
	fs_image_put(rs->img);
	free(rs);
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
	if (rs->hashed == rs->b->size) {
		unsigned char md[32];
		unsigned int l = 0;
		char hex[65];
		EVP_DigestFinal_ex(rs->sha, md, &l);
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		if (strcmp(hex, rs->b->hex) != 0) {
			log_err("blob %s: content hashes to sha256:%s; answering EIO",
				rs->b->digest, hex);
			mark_bad(rs->b->digest);
			cache_blob_drop(rs->c->cache, rs->b->digest);
			fs_inval_inode_async(rs->ino);
			rc = -EIO;
		}
		EVP_MD_CTX_free(rs->sha);
		rs->sha = NULL;
	}
out:
	pthread_mutex_unlock(&rs->mu);
	return rc;
}

/* Bytes a whole-file reader may still have in flight, not yet counted in
 * requested, when the read that reaches the end arrives first: the
 * kernel's readahead (max_readahead 1 MiB, about two windows) and a few
 * synchronous reads. A reader that asked for less than size - this is
 * not reading the whole file (a tail read), and is not made to fetch it. */
#define INFLIGHT_SLACK (4ull << 20)

/* Synchronous fetch of the chunks [c0, c1), copying the reader's part
 * [off, off+len) into buf on the way; stored in the cache unless store is 0. */
static int fetch_sync(struct fs_rstate *rs, uint64_t c0, uint64_t c1, char *buf, size_t len,
		      uint64_t off, int store, volatile int *cancel)
{
	struct fetch f = {.c = rs->c, .img = rs->img, .size = rs->b->size, .pos = c0 * CHUNK,
			  .out = buf, .out_off = off, .out_len = len,
			  .cache_err = store ? 0 : -ENOSPC};
	snprintf(f.digest, sizeof f.digest, "%s", rs->b->digest);
	f.end = c1 * CHUNK < rs->b->size ? c1 * CHUNK : rs->b->size;
	f.chunk = cache_chunk_buf_get();
	if (!f.chunk)
		return -ENOMEM;
	int rc = fetch_run(&f, cancel);
	cache_chunk_buf_put(f.chunk);
	return rc;
}

/* Fetches exactly [off, off+len) into buf without the cache (another
 * reader's fetch failed, the disk is full, or the hash needs bytes the
 * cache does not have). */
static int fetch_uncached(struct fs_rstate *rs, char *buf, size_t len, uint64_t off,
			  volatile int *cancel)
{
	int frc = fetch_sync(rs, off / CHUNK, (off + len + CHUNK - 1) / CHUNK, buf, len, off, 0,
			     cancel);
	if (frc && frc != -ENOSPC)
		return frc == -ENOENT ? -EIO : frc;
	return 0;
}

/* The read that reaches the end found the running hash stopped at a
 * read that arrived out of order (FUSE_CAP_ASYNC_READ, several threads)
 * and the cache could not seal the blob: the missing part [hashed, end)
 * is read again, from the cache where it is there, else from the
 * network without storing it, and fed to the hash. */
static int hash_gap(struct fs_rstate *rs, uint64_t end, volatile int *cancel)
{
	const struct fs_blob *b = rs->b;
	char *piece = malloc(PIECE);
	if (!piece)
		return -ENOMEM;
	int rc = 0;
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
		if (cache_blob_read(rs->c->cache, b->digest, b->size, piece, n, pos) != (ssize_t)n &&
		    (rc = fetch_uncached(rs, piece, n, pos, cancel)) != 0) {
			if (rc != -ENOMEM && rc != -EINTR) {
				log_err("blob %s: cannot fetch [%llu, %llu) to verify it: answering EIO",
					b->digest, (unsigned long long)pos, (unsigned long long)(pos + n));
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

/* verify=strict: the whole blob is fetched and sealed before any byte. */
static int ensure_verified(struct fs_rstate *rs, volatile int *cancel)
{
	const char *dg = rs->b->digest;
	uint64_t nch = (rs->b->size + CHUNK - 1) / CHUNK;
	for (int round = 0; round < 3 && !cache_blob_complete(rs->c->cache, dg); round++) {
		uint64_t c = 0;
		while (c < nch) {
			if (chunk_cached(rs, c)) {
				c++;
				continue;
			}
			uint64_t e = claim_run(dg, c, nch, 64);
			if (e == c) { /* someone else fetches it: wait */
				pthread_mutex_lock(&bl_mu);
				while (flight_find(dg, c))
					pthread_cond_wait(&bl_cv, &bl_mu);
				pthread_mutex_unlock(&bl_mu);
				if (!chunk_cached(rs, c))
					return -EIO;
				continue;
			}
			int rc = fetch_sync(rs, c, e, NULL, 0, 0, 1, cancel);
			release_range(dg, c, e);
			if (rc == -ENOSPC) {
				log_err("verify=strict: no cache space to verify %s", dg);
				return -EIO;
			}
			if (rc)
				return rc;
			c = e;
		}
		if (seal_or_mark_bad(rs->c, dg, rs->b->size, 0) == -EIO)
			return -EIO;
	}
	return cache_blob_complete(rs->c->cache, dg) ? 0 : -EIO;
}

/* Bookkeeping of a sequential reader: the readahead to start after this
 * read (0 for a random read). */
static uint32_t note_read(struct fs_rstate *rs, size_t len, uint64_t off)
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
static void start_readahead(struct fs_rstate *rs, size_t len, uint64_t off, uint32_t ra)
{
	const struct fs_blob *b = rs->b;
	uint64_t nch = (b->size + CHUNK - 1) / CHUNK;
	uint64_t n1 = (off + len + CHUNK - 1) / CHUNK;
	uint64_t r1 = (off + len + ra + CHUNK - 1) / CHUNK;
	if (r1 > nch)
		r1 = nch;
	if (!ra || disk_full(rs->c))
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
		if (chunk_cached(rs, c)) {
			c++;
			continue;
		}
		uint64_t e = claim_run(b->digest, c, r1, PIECE / CHUNK);
		if (e == c) {
			c++;
			continue;
		}
		start_worker(rs, c, e);
		c = e;
	}
}

/* Fetches the chunks of [off, off+len) that nobody fetches and waits for
 * the others, copying the reader's bytes into buf on the way. *all is set
 * when this reader fetched every chunk itself (then buf is filled). */
static int fetch_missing(struct fs_rstate *rs, char *buf, size_t len, uint64_t off,
			 volatile int *cancel, int *all)
{
	const struct fs_blob *b = rs->b;
	uint64_t n0 = off / CHUNK, n1 = (off + len + CHUNK - 1) / CHUNK;
	uint64_t c = n0;
	*all = 1;
	while (c < n1) {
		if (chunk_cached(rs, c)) {
			c++;
			*all = 0;
			continue;
		}
		uint64_t e = claim_run(b->digest, c, n1, UINT64_MAX);
		if (e == c) {
			*all = 0;
			pthread_mutex_lock(&bl_mu);
			while (flight_find(b->digest, c) && !(cancel && *cancel))
				pthread_cond_wait(&bl_cv, &bl_mu);
			pthread_mutex_unlock(&bl_mu);
			if (cancel && *cancel)
				return -EINTR;
			c++;
			continue;
		}
		int frc = fetch_sync(rs, c, e, buf, len, off, 1, cancel);
		if (frc == 0)
			seal_check(rs->c, b->digest, b->size, rs->ino);
		release_range(b->digest, c, e);
		if (frc && frc != -ENOSPC)
			return frc == -EINTR ? -EINTR : frc == -ENOENT ? -EIO : frc;
		c = e;
	}
	return 0;
}

/* Waits until no chunk of digest is being fetched; 1 if it waited. */
static int wait_fetches(const char *digest, volatile int *cancel)
{
	int waited = 0;
	pthread_mutex_lock(&bl_mu);
	for (;;) {
		struct flight *f = flights;
		while (f && strcmp(f->digest, digest))
			f = f->next;
		if (!f || (cancel && *cancel))
			break;
		waited = 1;
		pthread_cond_wait(&bl_cv, &bl_mu);
	}
	pthread_mutex_unlock(&bl_mu);
	return waited;
}

/* The read that reaches the end completes a whole-file read: the blob is
 * sealed (verified) before its last bytes are served. Reads handled out of
 * order can get here while other chunks are still arriving: those are
 * waited for, so that the seal (cheap: the cache hashes as chunks come)
 * succeeds instead of the reader hashing the whole blob again. */
static int seal_at_end(struct fs_rstate *rs, size_t len, uint64_t off, volatile int *cancel)
{
	const struct fs_blob *b = rs->b;
	if (off + len != b->size)
		return 0;
	for (int round = 0; round < 3 && !cache_blob_complete(rs->c->cache, b->digest); round++) {
		int rc = seal_or_mark_bad(rs->c, b->digest, b->size, rs->ino);
		if (rc == -EIO)
			return -EIO;
		if (rc != -EAGAIN || !wait_fetches(b->digest, cancel))
			break;
	}
	return 0;
}

/* A whole-file read of a blob the cache could not seal (disk full, the
 * cache_size cap, evicted chunks) is verified by the reader's running hash:
 * it is completed up to upto from the cache (or fetched again) before the
 * bytes there are served. A reader that asked for much less than the blob
 * (a tail read) is not a whole-file read. */
static int hash_to(struct fs_rstate *rs, uint64_t upto, volatile int *cancel)
{
	const struct fs_blob *b = rs->b;
	if (cache_blob_complete(rs->c->cache, b->digest))
		return 0;
	pthread_mutex_lock(&rs->mu);
	int gap = rs->sha && rs->hashed < upto && rs->requested + INFLIGHT_SLACK >= b->size;
	pthread_mutex_unlock(&rs->mu);
	return gap ? hash_gap(rs, upto, cancel) : 0;
}

/* A read at offset 0 starts a new whole-file pass: its bytes are verified
 * afresh (a finished hash verified the bytes of an earlier pass, which a
 * changing source may not serve again). */
static void restart_hash(struct fs_rstate *rs)
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
 * hash_to), so only bytes that bypassed the cache feed the running
 * hash; first it catches up on what a sequential reader got from the cache,
 * so that it stays contiguous. */
static int hash_uncached(struct fs_rstate *rs, const char *buf, size_t len, uint64_t off,
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

/* The kernel hands a reader's requests to several threads, so the cache
 * file sees reads slightly out of order and its own readahead stays small:
 * after a remount (cache file not in the page cache) reading ahead of a
 * sequential reader keeps the disk busy. A window that grows to 128 MiB
 * was fastest for 1 GiB (warm reads, measured against 8 and 32 MiB); a
 * random reader gets none. */
static void warm_readahead(struct fs_rstate *rs, size_t len, uint64_t off)
{
	uint64_t end = off + len;
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
	int advise = win && from < rs->b->size && from < end + win / 2;
	if (advise)
		rs->warm_until = from + win;
	pthread_mutex_unlock(&rs->mu);
	if (advise)
		cache_blob_willneed(rs->c->cache, rs->b->digest, rs->b->size, from, win);
}

ssize_t fs_blob_read(struct fs_rstate *rs, char **bufp, size_t len, uint64_t off,
		     volatile int *cancel, int *fd)
{
	const struct fs_blob *b = rs->b;
	ssize_t rc;
	*bufp = NULL;
	*fd = -1;
	if (off >= b->size)
		return 0;
	if (len > b->size - off)
		len = (size_t)(b->size - off);
	if (b->data) {
		if (!(*bufp = malloc(len)))
			return -ENOMEM;
		memcpy(*bufp, b->data + off, len);
		return (ssize_t)len;
	}
	if (rs->complete) {
		/* Verified and cached (pinned while open): no bookkeeping; the
		 * pages are spliced from the cache file (one copy less than pread
		 * and reply: 0.57 vs 0.68 s for 1 GiB after a remount). */
		rc = cache_blob_read_fd(rs->c->cache, b->digest, b->size, len, off, fd);
		if (rc == (ssize_t)len) {
			warm_readahead(rs, len, off);
			return rc;
		}
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		rs->complete = 0; /* evicted by another mount: the general path */
	}
	if (is_bad(b->digest))
		return -EIO;
	if (rs->c->verify_strict && (rc = ensure_verified(rs, cancel)) != 0)
		return rc;

	if (off == 0)
		restart_hash(rs);
	start_readahead(rs, len, off, note_read(rs, len, off));
	int all = 0;
	if (!cache_blob_has(rs->c->cache, b->digest, b->size, off, len)) {
		if (!*bufp && !(*bufp = malloc(len)))
			return -ENOMEM;
		if ((rc = fetch_missing(rs, *bufp, len, off, cancel, &all)) != 0)
			return rc;
		if (is_bad(b->digest))
			return -EIO;
	}
	if ((rc = seal_at_end(rs, len, off, cancel)) != 0)
		return rc;
	rc = cache_blob_read_fd(rs->c->cache, b->digest, b->size, len, off, fd);
	if (rc == (ssize_t)len) {
		/* The last bytes of a blob the cache could not seal: the running
		 * hash covers the whole blob before they are served. */
		ssize_t hrc = off + len == b->size ? hash_to(rs, b->size, cancel) : 0;
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
	/* Not in the cache (disk full, evicted): the bytes come from the wire. */
	if (!*bufp && !(*bufp = malloc(len)))
		return -ENOMEM;
	if (!all && (rc = fetch_uncached(rs, *bufp, len, off, cancel)) != 0)
		return rc;
	if (hash_uncached(rs, *bufp, len, off, cancel) != 0)
		return -EIO;
	return (ssize_t)len;
}

void fs_blob_shutdown(void)
{
	pthread_mutex_lock(&bl_mu);
	while (nworkers > 0)
		pthread_cond_wait(&bl_cv, &bl_mu);
	while (flights) {
		struct flight *f = flights;
		flights = f->next;
		free(f);
	}
	while (bads) {
		struct bad *b = bads;
		bads = b->next;
		free(b);
	}
	while (urls) {
		struct url *u = urls;
		urls = u->next;
		free(u->key);
		free(u->url);
		free(u);
	}
	pthread_mutex_unlock(&bl_mu);
}
