/* Running sha256 of a partial blob, fed in chunk order as chunks arrive
 * (by whichever writer stores the next chunk in order, continuing with the
 * chunks already present after it), so sealing a blob downloaded front to
 * back costs no second read. Chunks out of order wait in the file until the
 * hash reaches them (then read back with pread into a reused chunk buffer:
 * on this project's 2-CPU test VM a mapping of each chunk cost 1.27 s per
 * GiB hashed against 0.71 s for pread and hash, its page-table work being
 * dearer than the copy). The state lives in the index entry under c->mu; the
 * hashing itself runs outside mu with e->hashing set. A flagged chunk is
 * never written again (writer_lock), so the bytes hashed are the bytes a
 * seal moves into place. */
#include "cache/cache_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cache_map_nonce(int map_fd, uint64_t size, uint64_t *nonce)
{
	unsigned char hdr[CACHE_MAP_HDR];
	uint64_t hsize = 0, n = 0;
	size_t got = 0;

	if (cache_pread_full(map_fd, hdr, sizeof(hdr), 0, &got) || got != sizeof(hdr) ||
	    memcmp(hdr, CACHE_MAP_MAGIC, 8) != 0)
		return -EIO;
	for (int i = 0; i < 8; i++) {
		hsize |= (uint64_t)hdr[8 + i] << (8 * i);
		n |= (uint64_t)hdr[16 + i] << (8 * i);
	}
	if (hsize != size)
		return -EIO;
	*nonce = n;
	return 0;
}

void cache_hash_reset(struct cache_entry *e)
{
	if (e->hashing) {
		e->hash_reset = 1;
		return;
	}
	EVP_MD_CTX_free(e->sha);
	e->sha = NULL;
	e->hashed = 0;
}

static int flag_set(int map_fd, uint64_t pos)
{
	unsigned char flag = 0;
	size_t got = 0;

	return !cache_pread_full(map_fd, &flag, 1, CACHE_MAP_HDR + pos / CACHE_CHUNK_SIZE, &got) &&
	       got == 1 && flag == 1;
}

/* Feeds ctx from pos while the chunks are present; returns the new pos. */
static uint64_t feed(EVP_MD_CTX *ctx, const struct cache_fds *f, uint64_t pos, uint64_t size,
		     const void *buf, uint64_t off, size_t len, unsigned char **tmp)
{
	while (pos < size) {
		size_t clen =
		    size - pos < CACHE_CHUNK_SIZE ? (size_t)(size - pos) : CACHE_CHUNK_SIZE;
		size_t got = 0;

		if (buf && pos == off && len == clen) {
			if (EVP_DigestUpdate(ctx, buf, len) != 1)
				break;
		} else {
			if (!flag_set(f->map_fd, pos))
				break;
			if (!*tmp && !(*tmp = cache_chunk_buf_get()))
				break;
			if (cache_pread_full(f->data_fd, *tmp, clen, pos, &got) || got != clen ||
			    EVP_DigestUpdate(ctx, *tmp, clen) != 1)
				break;
		}
		pos += clen;
	}
	return pos;
}

void cache_hash_advance(cache *c, const char *hex, uint64_t size, const struct cache_fds *f,
			const void *buf, uint64_t off, size_t len)
{
	unsigned char *tmp = NULL;
	uint64_t nonce;

	if (f->complete || cache_map_nonce(f->map_fd, size, &nonce))
		return;
	for (;;) {
		struct cache_entry *e;
		EVP_MD_CTX *ctx;
		uint64_t pos;
		int again;

		pthread_mutex_lock(&c->mu);
		e = cache_entry_find(c, hex); /* exists: f keeps it busy */
		if (!e || e->hashing) {
			pthread_mutex_unlock(&c->mu);
			break; /* the thread hashing now will look at our chunk */
		}
		if (e->sha && e->hash_nonce != nonce)
			cache_hash_reset(e);
		if (!e->sha && off == 0 && buf) {
			e->sha = EVP_MD_CTX_new();
			if (e->sha && EVP_DigestInit_ex(e->sha, EVP_sha256(), NULL) != 1) {
				EVP_MD_CTX_free(e->sha);
				e->sha = NULL;
			}
			e->hashed = 0;
			e->hash_nonce = nonce;
		}
		if (!e->sha || e->hashed >= size) {
			pthread_mutex_unlock(&c->mu);
			break; /* no hash from chunk 0 in this process: seal reads it all */
		}
		ctx = e->sha;
		pos = e->hashed;
		e->hashing = 1;
		pthread_mutex_unlock(&c->mu);

		pos = feed(ctx, f, pos, size, buf, off, len, &tmp);

		pthread_mutex_lock(&c->mu);
		e = cache_entry_find(c, hex);
		e->hashing = 0;
		e->hashed = pos;
		if (e->hash_reset) {
			e->hash_reset = 0;
			cache_hash_reset(e);
		}
		pthread_cond_broadcast(&c->hash_cv);
		/* A chunk stored while we hashed was left to us: take it too. */
		again = e->sha && pos < size && flag_set(f->map_fd, pos);
		pthread_mutex_unlock(&c->mu);
		if (!again)
			break;
		buf = NULL;
	}
	cache_chunk_buf_put(tmp);
}

EVP_MD_CTX *cache_hash_take(cache *c, const char *hex, uint64_t nonce, uint64_t *from)
{
	struct cache_entry *e;
	EVP_MD_CTX *ctx = NULL;

	*from = 0;
	pthread_mutex_lock(&c->mu);
	while ((e = cache_entry_find(c, hex)) && e->hashing)
		pthread_cond_wait(&c->hash_cv, &c->mu);
	if (e && e->sha && e->hash_nonce == nonce) {
		ctx = e->sha;
		*from = e->hashed;
		e->sha = NULL;
		e->hashed = 0;
	} else if (e) {
		cache_hash_reset(e);
	}
	pthread_mutex_unlock(&c->mu);
	return ctx;
}
