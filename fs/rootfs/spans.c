/* Reading a layer's uncompressed stream through its index: the span of
 * compressed bytes around the offset is fetched from the caller's source,
 * checked against its sha256, inflated from its checkpoint, and kept in a
 * bounded LRU of inflated spans. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define SPAN_MAX_COMPRESSED (64u << 20) /* refuse a span bigger than this */
#define SPAN_MAX_CACHED (16u << 20)	/* bigger spans are inflated per read */
#define SPAN_BUCKETS 256u

struct span {
	struct span *prev, *next, *hnext; /* LRU list (head = newest), bucket chain */
	char layer[64];			  /* digest hex */
	uint64_t idx; /* first uncompressed offset: the same bytes whatever the span size */
	unsigned char *data;
	size_t len;
};

/* A span being loaded: later readers of it wait instead of fetching too. */
struct flight {
	struct flight *next;
	char layer[64];
	uint64_t idx;
	int done, rc;
	unsigned waiters; /* the last one out frees a done flight */
};

struct rootfs_spans {
	/* lock protects tab, lru, bytes, flights and the counters; it is never
	 * held while fetching or inflating, only while copying out of a span.
	 * landed is signalled (broadcast) when a flight is done. */
	pthread_mutex_t lock;
	pthread_cond_t landed;
	struct span *tab[SPAN_BUCKETS];
	struct span lru; /* sentinel */
	struct flight *flights;
	size_t max, bytes;
	uint64_t hits, misses;
};

int rootfs_spans_new(size_t max_bytes, struct rootfs_spans **out)
{
	struct rootfs_spans *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->landed, NULL);
	s->lru.prev = s->lru.next = &s->lru;
	s->max = max_bytes;
	*out = s;
	return 0;
}

void rootfs_spans_free(struct rootfs_spans *s)
{
	if (!s)
		return;
	for (struct span *p = s->lru.next, *n; p != &s->lru; p = n) {
		n = p->next;
		free(p->data);
		free(p);
	}
	pthread_cond_destroy(&s->landed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void rootfs_spans_stats(struct rootfs_spans *s, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
	pthread_mutex_lock(&s->lock);
	*hits = s->hits;
	*misses = s->misses;
	*bytes = s->bytes;
	pthread_mutex_unlock(&s->lock);
}

static size_t bucket(const char *layer, uint64_t idx)
{
	uint64_t h = idx * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < 16; i++)
		h = (h ^ (unsigned char)layer[i]) * 0x100000001b3ull;
	return (size_t)(h % SPAN_BUCKETS);
}

/* Under lock. */
static struct span *find(struct rootfs_spans *s, const char *layer, uint64_t idx)
{
	for (struct span *p = s->tab[bucket(layer, idx)]; p; p = p->hnext)
		if (p->idx == idx && memcmp(p->layer, layer, 64) == 0)
			return p;
	return NULL;
}

/* Under lock. */
static void unlink_span(struct rootfs_spans *s, struct span *p)
{
	struct span **pp = &s->tab[bucket(p->layer, p->idx)];
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	p->prev->next = p->next;
	p->next->prev = p->prev;
	s->bytes -= p->len;
}

/* Under lock. */
static void push_front(struct rootfs_spans *s, struct span *p)
{
	p->next = s->lru.next;
	p->prev = &s->lru;
	s->lru.next->prev = p;
	s->lru.next = p;
}

/* Under lock: copies [from, from + n) of a cached span to dst; 0, or
 * -ENOENT when it is not cached. */
static int cache_copy(struct rootfs_spans *s, const char *layer, uint64_t idx, size_t from,
		      void *dst, size_t n)
{
	struct span *p = find(s, layer, idx);
	if (!p || from + n > p->len)
		return -ENOENT;
	p->prev->next = p->next;
	p->next->prev = p->prev;
	push_front(s, p);
	memcpy(dst, p->data + from, n);
	s->hits++;
	return 0;
}

/* Takes ownership of data; evicts the oldest spans beyond the bound. */
static void cache_put(struct rootfs_spans *s, const char *layer, uint64_t idx, unsigned char *data,
		      size_t len)
{
	struct span *p = NULL;
	if (len > s->max || !(p = calloc(1, sizeof(*p)))) {
		free(data);
		return;
	}
	memcpy(p->layer, layer, 64);
	p->idx = idx;
	p->data = data;
	p->len = len;
	pthread_mutex_lock(&s->lock);
	struct span *old = find(s, layer, idx);
	if (old) {
		unlink_span(s, old);
		free(old->data);
		free(old);
	}
	size_t b = bucket(layer, idx);
	p->hnext = s->tab[b];
	s->tab[b] = p;
	push_front(s, p);
	s->bytes += len;
	while (s->bytes > s->max) {
		struct span *v = s->lru.prev;
		unlink_span(s, v);
		free(v->data);
		free(v);
	}
	pthread_mutex_unlock(&s->lock);
}

/* The span containing uncompressed offset off (ix->n_ck > 0). */
static size_t span_of(const struct rootfs_index *ix, uint64_t off)
{
	size_t lo = 0, hi = ix->n_ck;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (ix->ck[mid].out <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t span_end_out(const struct rootfs_index *ix, size_t i)
{
	return i + 1 < ix->n_ck ? ix->ck[i + 1].out : ix->out_size;
}

/* Fetches span i's compressed bytes and checks their sha256 (chunk kinds:
 * only fetches them). */
static int fetch_span(const struct rootfs_index *ix, const struct rootfs_source *src, size_t i,
		      unsigned char **out, size_t *out_len)
{
	const struct rootfs_ckpt *c = &ix->ck[i];
	int chunks = rootfs_comp_chunks(ix->comp);
	uint64_t from = c->in - (c->bits && !chunks ? 1 : 0);
	if (chunks && c->bits == ROOTFS_CK_ZEROS) { /* nothing to fetch */
		*out = NULL;
		*out_len = 0;
		return 0;
	}
	/* Spans of plain and zstd layers are ranges of the uncompressed stream. */
	uint64_t end = ix->comp == ROOTFS_COMP_GZIP ? ix->blob_size : ix->out_size;
	uint64_t to = chunks ? c->in_end : i + 1 < ix->n_ck ? ix->ck[i + 1].in : end;
	unsigned char md[32], *buf = NULL;
	int rc = -EIO;
	if (to < from || to - from > SPAN_MAX_COMPRESSED) {
		log_err("rootfs: layer %s span %zu is %llu bytes: refused", ix->digest, i,
			(unsigned long long)(to - from));
		goto out;
	}
	rc = -ENOMEM;
	if (!(buf = malloc(to - from ? to - from : 1)))
		goto out;
	if ((rc = src->read_compressed(src->arg, from, buf, to - from)) < 0)
		goto out;
	rc = -EIO;
	/* A chunk's digest is of its uncompressed bytes: chunk_load checks it. */
	if (!chunks && EVP_Digest(buf, to - from, md, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	if (!chunks && memcmp(md, c->sha, 32) != 0) {
		log_err("rootfs: layer %s span %zu (bytes %llu-%llu) fails its sha256", ix->digest,
			i, (unsigned long long)from, (unsigned long long)to);
		goto out;
	}
	*out = buf;
	*out_len = to - from;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

/* Sets up raw inflate at checkpoint c: primed bits and the dictionary. */
static int inflate_at(z_stream *zs, const struct rootfs_index *ix, const struct rootfs_ckpt *c,
		      unsigned char *cbuf, size_t clen)
{
	unsigned char *dict = malloc(ROOTFS_WINDOW);
	uLongf dlen = ROOTFS_WINDOW;
	int rc = -ENOMEM;
	if (!dict || inflateInit2(zs, -15) != Z_OK)
		goto out;
	rc = -EIO;
	if (c->dict_len && (uncompress(dict, &dlen, ix->wins + c->win_off, c->win_len) != Z_OK ||
			    dlen != c->dict_len))
		goto out;
	zs->next_in = cbuf;
	zs->avail_in = (uInt)clen;
	if (c->bits) {
		if (inflatePrime(zs, (int)c->bits, cbuf[0] >> (8 - c->bits)) != Z_OK)
			goto out;
		zs->next_in++;
		zs->avail_in--;
	}
	if (c->dict_len && inflateSetDictionary(zs, dict, c->dict_len) != Z_OK)
		goto out;
	rc = 0;
out:
	free(dict);
	return rc;
}

/* After the end of a member: skips its trailer (raw mode only) and starts
 * the next member. 1 when there is none. */
static int next_member(z_stream *zs, int *gz)
{
	if (!*gz) {
		if (zs->avail_in < 8)
			return 1;
		zs->next_in += 8;
		zs->avail_in -= 8;
	}
	if (zs->avail_in == 0 || *zs->next_in != 0x1f)
		return 1;
	*gz = 1;
	return inflateReset2(zs, 15 + 16) == Z_OK ? 0 : -EIO;
}

/* Inflates span i from its checkpoint: skips `skip` output bytes, then
 * fills dst with n bytes. */
static int inflate_span(const struct rootfs_index *ix, size_t i, unsigned char *cbuf, size_t clen,
			uint64_t skip, unsigned char *dst, size_t n)
{
	z_stream zs = {0};
	unsigned char *junk = malloc(ROOTFS_WINDOW);
	int rc = junk ? inflate_at(&zs, ix, &ix->ck[i], cbuf, clen) : -ENOMEM, gz = 0;
	size_t got = 0;
	while (rc == 0 && got < n) {
		int discard = skip > 0;
		zs.next_out = discard ? junk : dst + got;
		zs.avail_out =
		    discard ? (uInt)(skip < ROOTFS_WINDOW ? skip : ROOTFS_WINDOW) : (uInt)(n - got);
		uInt before = zs.avail_out;
		int ret = inflate(&zs, Z_NO_FLUSH);
		size_t made = before - zs.avail_out;
		if (discard)
			skip -= made;
		else
			got += made;
		if (ret == Z_STREAM_END)
			rc = got < n ? next_member(&zs, &gz) : 0;
		else if (ret != Z_OK && !(ret == Z_BUF_ERROR && made))
			rc = 1;
	}
	if (rc == 1 || (rc == 0 && got < n)) {
		log_err("rootfs: layer %s span %zu inflates short (%zu of %zu bytes): %s",
			ix->digest, i, got, n, zs.msg ? zs.msg : "no more input");
		rc = -EIO;
	}
	inflateEnd(&zs);
	free(junk);
	return rc;
}

/* Gzip members from cbuf until n bytes are out (a chunk of eStargz starts a
 * member; its tar padding and the next headers may follow). */
static int gunzip_chunk(const unsigned char *cbuf, size_t clen, unsigned char *dst, size_t n)
{
	z_stream zs = {0};
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return -ENOMEM;
	zs.next_in = (unsigned char *)cbuf;
	zs.avail_in = (uInt)clen;
	zs.next_out = dst;
	zs.avail_out = (uInt)n;
	int rc = 0;
	while (rc == 0 && zs.avail_out) {
		int ret = inflate(&zs, Z_NO_FLUSH);
		if (ret == Z_STREAM_END && zs.avail_out)
			rc = zs.avail_in && *zs.next_in == 0x1f && inflateReset(&zs) == Z_OK ? 0
											      : -EIO;
		else if (ret != Z_OK && ret != Z_STREAM_END)
			rc = -EIO;
		else if (ret == Z_OK && zs.avail_in == 0 && zs.avail_out)
			rc = -EIO;
	}
	inflateEnd(&zs);
	return rc;
}

/* The cache key of span i: its first uncompressed offset. Offsets of a
 * chunk kind's index (eStargz, zstd:chunked) count the files' contents laid
 * end to end, those of every other index the tar stream: bit 63 keeps the
 * two apart, so indexes of one layer from different sources never serve
 * each other's bytes. */
static uint64_t span_key(const struct rootfs_index *ix, size_t i)
{
	return ix->ck[i].out | (rootfs_comp_chunks(ix->comp) ? 1ull << 63 : 0);
}

/* A chunk kind's span: decompressed whole, its sha256 checked, then
 * [pos, pos + n) copied to dst and the chunk cached. */
static int chunk_load(struct rootfs_spans *s, const struct rootfs_index *ix, size_t i,
		      const unsigned char *cbuf, size_t clen, uint64_t pos, unsigned char *dst,
		      size_t n)
{
	uint64_t start = ix->ck[i].out, slen = span_end_out(ix, i) - start;
	size_t skip = ix->ck[i].dict_len, all = (size_t)slen + skip;
	int fits = slen <= ROOTFS_CHUNK_MAX && skip <= ROOTFS_CHUNK_MAX;
	unsigned char md[32], *full = fits ? malloc(all ? all : 1) : NULL;
	if (!full)
		return fits ? -ENOMEM : -EIO;
	int rc = 0;
	if (ix->ck[i].bits == ROOTFS_CK_ZEROS)
		memset(full, 0, all);
	else if (ix->comp == ROOTFS_COMP_GZIP_CHUNKS)
		rc = gunzip_chunk(cbuf, clen, full, all);
	else
		rc = rootfs_zstd_frames(cbuf, clen, full, all) ? -EIO : 0;
	if (rc == 0 && skip)
		memmove(full, full + skip, (size_t)slen);
	if (rc == 0 && (EVP_Digest(full, (size_t)slen, md, NULL, EVP_sha256(), NULL) != 1 ||
			memcmp(md, ix->ck[i].sha, 32) != 0))
		rc = -EIO;
	if (rc) {
		log_err("rootfs: layer %s chunk %zu (bytes %llu-%llu) fails to decompress or its "
			"sha256",
			ix->digest, i, (unsigned long long)ix->ck[i].in,
			(unsigned long long)ix->ck[i].in_end);
		free(full);
		return -EIO;
	}
	memcpy(dst, full + (pos - start), n);
	cache_put(s, ix->digest + 7, span_key(ix, i), full, (size_t)slen);
	return 0;
}

/* Fetches, checks and inflates span i, caches it when it fits, and copies
 * [pos, pos + n) of it to dst. */
static int load_span(struct rootfs_spans *s, const struct rootfs_index *ix,
		     const struct rootfs_source *src, size_t i, uint64_t pos, unsigned char *dst,
		     size_t n)
{
	const char *layer = ix->digest + 7;
	uint64_t start = ix->ck[i].out, slen = span_end_out(ix, i) - start;
	unsigned char *cbuf = NULL, *full = NULL;
	size_t clen;
	int rc = fetch_span(ix, src, i, &cbuf, &clen);
	if (rc < 0)
		goto out;
	if (rootfs_comp_chunks(ix->comp)) {
		rc = chunk_load(s, ix, i, cbuf, clen, pos, dst, n);
		goto out;
	}
	if (ix->comp != ROOTFS_COMP_GZIP) {
		memcpy(dst, cbuf + (pos - start), n);
		cache_put(s, layer, span_key(ix, i), cbuf, clen);
		cbuf = NULL;
		goto out;
	}
	if (slen > SPAN_MAX_CACHED || slen > s->max) {
		rc = inflate_span(ix, i, cbuf, clen, pos - start, dst, n);
		goto out;
	}
	rc = -ENOMEM;
	if (!(full = malloc(slen ? slen : 1)))
		goto out;
	if ((rc = inflate_span(ix, i, cbuf, clen, 0, full, (size_t)slen)) < 0)
		goto out;
	memcpy(dst, full + (pos - start), n);
	cache_put(s, layer, span_key(ix, i), full, (size_t)slen);
	full = NULL;
out:
	free(cbuf);
	free(full);
	return rc;
}

/* Under lock: waits for flight f to land; its result, or -ENOENT when the
 * span did not stay cached or the loader's source failed (an interrupted or
 * timed-out fetch is the loader's own; only a bad digest is shared): the
 * caller then loads the span itself. */
static int wait_flight(struct rootfs_spans *s, struct flight *f, size_t from, void *dst, size_t n)
{
	f->waiters++;
	while (!f->done)
		pthread_cond_wait(&s->landed, &s->lock);
	int rc = f->rc;
	if (rc == 0)
		rc = cache_copy(s, f->layer, f->idx, from, dst, n);
	else if (rc != -EIO)
		rc = -ENOENT;
	if (--f->waiters == 0)
		free(f);
	return rc;
}

/* Reads [pos, pos + n) lying inside span i: from the cache, by waiting for
 * another reader loading the same span, or by loading it (single-flight). */
static int read_in_span(struct rootfs_spans *s, const struct rootfs_index *ix,
			const struct rootfs_source *src, size_t i, uint64_t pos, unsigned char *dst,
			size_t n)
{
	const char *layer = ix->digest + 7;
	uint64_t key = span_key(ix, i);
	size_t from = (size_t)(pos - ix->ck[i].out);
	struct flight *f;
	int rc;
	pthread_mutex_lock(&s->lock);
	if ((rc = cache_copy(s, layer, key, from, dst, n)) == 0)
		goto unlock;
	for (f = s->flights; f && (f->idx != key || memcmp(f->layer, layer, 64)); f = f->next)
		;
	if (f && (rc = wait_flight(s, f, from, dst, n)) != -ENOENT)
		goto unlock;
	s->misses++;
	f = f ? NULL : calloc(1, sizeof(*f));
	if (f) {
		memcpy(f->layer, layer, 64);
		f->idx = key;
		f->next = s->flights;
		s->flights = f;
	}
	pthread_mutex_unlock(&s->lock);
	rc = load_span(s, ix, src, i, pos, dst, n);
	if (!f)
		return rc;
	pthread_mutex_lock(&s->lock);
	struct flight **pp = &s->flights;
	while (*pp != f)
		pp = &(*pp)->next;
	*pp = f->next;
	f->done = 1;
	f->rc = rc;
	pthread_cond_broadcast(&s->landed);
	if (f->waiters == 0)
		free(f);
unlock:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

ssize_t rootfs_spans_read(struct rootfs_spans *s, const struct rootfs_index *ix,
			  const struct rootfs_source *src, uint64_t off, void *buf, size_t len)
{
	size_t done = 0;
	if (off >= ix->out_size || ix->n_ck == 0)
		return 0;
	if (len > ix->out_size - off)
		len = (size_t)(ix->out_size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	while (done < len) {
		uint64_t pos = off + done;
		size_t i = span_of(ix, pos);
		uint64_t end = span_end_out(ix, i);
		size_t n = end - pos < len - done ? (size_t)(end - pos) : len - done;
		int rc = read_in_span(s, ix, src, i, pos, (unsigned char *)buf + done, n);
		if (rc < 0)
			return rc;
		done += n;
	}
	return (ssize_t)done;
}
