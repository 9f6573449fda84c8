/* fs/blob/ against a fake source that serves blobs from memory and counts
 * its calls: single-flight of one chunk, readahead of a sequential reader,
 * download URLs kept, asked once for concurrent readers and renewed once,
 * several GETs at a whole-file reader's first miss, a corrupted byte
 * answering EIO on the read that completes the blob, and the tables left
 * behind. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs/blob/blob.h"
#include "net/sigv4.h"

#define MIB (1024 * 1024)

struct fake_blob {
	char digest[72];
	unsigned char *data;
	size_t size;
	long corrupt_at; /* served with this byte flipped (-1: none) */
};

/* The fake source. mu protects every field. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* gate opened, or a caller arrived at it */
	struct fake_blob blobs[8];
	int n;
	int url_calls, range_calls;
	uint64_t bytes;
	uint64_t max_end;  /* the furthest byte asked for */
	uint64_t asked;    /* bytes asked for by ranges that arrived */
	int expire_next;   /* the next range answers -EKEYEXPIRED */
	int expired_upto;  /* ranges of URLs with a serial up to this answer it too */
	int gate;          /* ranges wait while set */
	int at_gate;       /* ranges waiting at the gate */
	int url_gate;      /* URL requests wait while set */
	int at_url_gate;   /* URL requests waiting at it */
	int in_flight, max_in_flight; /* ranges being served, and the most at once */
} fk = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int invals;
static uint64_t inval_ino;

static void on_inval(void *arg, uint64_t ino)
{
	__atomic_add_fetch(&invals, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&inval_ino, ino, __ATOMIC_RELAXED);
}

static struct fake_blob *fake_find(const char *digest)
{
	for (int i = 0; i < fk.n; i++)
		if (!strcmp(fk.blobs[i].digest, digest))
			return &fk.blobs[i];
	return NULL;
}

/* Each URL differs (a serial), as presigned URLs do. */
static int fake_url(void *arg, const struct fs_blob_ref *ref, char **url, time_t *expires)
{
	pthread_mutex_lock(&fk.mu);
	int serial = ++fk.url_calls;
	fk.at_url_gate++;
	pthread_cond_broadcast(&fk.cv);
	while (fk.url_gate)
		pthread_cond_wait(&fk.cv, &fk.mu);
	fk.at_url_gate--;
	pthread_mutex_unlock(&fk.mu);
	if (asprintf(url, "fake://%s#%d", ref->digest, serial) < 0)
		return -ENOMEM;
	*expires = time(NULL) + 900;
	return 0;
}

static int fake_serve(const struct fs_blob_ref *ref, const char *url, uint64_t off, uint64_t len,
		      net_sink_cb sink, void *sink_arg)
{
	pthread_mutex_lock(&fk.mu);
	struct fake_blob *b = fake_find(ref->digest);
	fk.range_calls++;
	fk.asked += len;
	fk.at_gate++;
	pthread_cond_broadcast(&fk.cv);
	while (fk.gate)
		pthread_cond_wait(&fk.cv, &fk.mu);
	fk.at_gate--;
	const char *hash = strchr(url, '#');
	int expire = fk.expire_next || (hash && atoi(hash + 1) <= fk.expired_upto);
	fk.expire_next = 0;
	if (!expire && b && off + len <= b->size) {
		fk.bytes += len;
		if (off + len > fk.max_end)
			fk.max_end = off + len;
	}
	pthread_mutex_unlock(&fk.mu);
	if (expire)
		return -EKEYEXPIRED;
	if (!b || off + len > b->size || strncmp(url + 7, ref->digest, strlen(ref->digest)))
		return -ENOENT;
	/* Streamed in pieces, as the network does. */
	char piece[65536];
	for (uint64_t pos = off; pos < off + len;) {
		size_t n = off + len - pos < sizeof piece ? (size_t)(off + len - pos) : sizeof piece;
		memcpy(piece, b->data + pos, n);
		if (b->corrupt_at >= 0 && (uint64_t)b->corrupt_at >= pos &&
		    (uint64_t)b->corrupt_at < pos + n)
			piece[b->corrupt_at - (long)pos] ^= 0x5a;
		int rc = sink(sink_arg, piece, n);
		if (rc)
			return rc;
		pos += n;
	}
	return 0;
}

static int fake_range(void *arg, const struct fs_blob_ref *ref, const char *url, uint64_t off,
		      uint64_t len, net_sink_cb sink, void *sink_arg, volatile int *cancel)
{
	pthread_mutex_lock(&fk.mu);
	if (++fk.in_flight > fk.max_in_flight)
		fk.max_in_flight = fk.in_flight;
	pthread_mutex_unlock(&fk.mu);
	int rc = fake_serve(ref, url, off, len, sink, sink_arg);
	pthread_mutex_lock(&fk.mu);
	fk.in_flight--;
	pthread_mutex_unlock(&fk.mu);
	return rc;
}

static const struct fs_blob_source fake_src = {fake_url, fake_range, NULL};

/* A new blob of size bytes (deterministic per seed) known to the fake. */
static struct fake_blob *add_blob(size_t size, unsigned seed, long corrupt_at)
{
	struct fake_blob *b = &fk.blobs[fk.n++];
	uint32_t x = seed * 2654435761u + 1;
	b->data = malloc(size);
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b->data[i] = (unsigned char)x;
	}
	b->size = size;
	b->corrupt_at = corrupt_at;
	memcpy(b->digest, "sha256:", 7);
	sigv4_sha256_hex(b->data, size, b->digest + 7);
	return b;
}

static struct fs_rstate *open_blob(struct fs_blobs *bs, const struct fake_blob *b, uint64_t ino)
{
	struct fs_blob_ref ref = {.registry = "111111111111", .region = "us-east-1",
				  .repo = "team/app", .digest = b->digest, .size = b->size};
	struct fs_rstate *rs = NULL;
	CHECK_INT(fs_blob_open(bs, &ref, ino, &rs), 0);
	return rs;
}

/* Reads [off, off+len) through the reader into out: bytes or -errno. */
static ssize_t read_at(struct fs_rstate *rs, void *out, size_t len, uint64_t off)
{
	char *buf = NULL;
	int fd = -1;
	ssize_t n = fs_blob_read(rs, &buf, len, off, NULL, &fd);
	if (n > 0 && fd >= 0 && pread(fd, out, (size_t)n, (off_t)off) != n)
		n = -EIO;
	else if (n > 0 && fd < 0)
		memcpy(out, buf, (size_t)n);
	if (fd >= 0)
		close(fd);
	free(buf);
	return n;
}

static int read_ok(struct fs_rstate *rs, const struct fake_blob *b, size_t len, uint64_t off)
{
	char *out = malloc(len);
	ssize_t n = read_at(rs, out, len, off);
	int ok = n == (ssize_t)len && !memcmp(out, b->data + off, len);
	free(out);
	return ok;
}

/* Waits until no readahead runs or waits and no chunk is in flight. */
static void settle(struct fs_blobs *bs)
{
	struct fs_blobs_stats st;
	for (int i = 0; i < 500; i++) {
		fs_blobs_stats(bs, &st);
		if (!st.ra_running && !st.ra_queued && !st.flights)
			return;
		usleep(10000);
	}
	CHECK_FAILED("%s", "readahead did not settle");
}

static void reset_counts(void)
{
	pthread_mutex_lock(&fk.mu);
	fk.url_calls = fk.range_calls = fk.max_in_flight = 0;
	fk.bytes = fk.max_end = fk.asked = 0;
	pthread_mutex_unlock(&fk.mu);
}

/* Waits until *field (a count of fk) reaches n: 1, or 0 after 5 s. */
static int wait_fk(const int *field, int n)
{
	int ok = 1;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&fk.mu);
	while (ok && *field < n)
		ok = pthread_cond_timedwait(&fk.cv, &fk.mu, &ts) == 0;
	pthread_mutex_unlock(&fk.mu);
	return ok;
}

static void open_gate(int *gate)
{
	pthread_mutex_lock(&fk.mu);
	*gate = 0;
	pthread_cond_broadcast(&fk.cv);
	pthread_mutex_unlock(&fk.mu);
}

struct reader {
	struct fs_rstate *rs;
	const struct fake_blob *b;
	uint64_t off;
	int ok;
	size_t len; /* 0: 4096 */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	r->ok = read_ok(r->rs, r->b, r->len ? r->len : 4096, r->off);
	return NULL;
}

/* Two readers of one chunk: one fetch, both get the bytes. */
static void test_single_flight(struct fs_blobs *bs)
{
	struct fake_blob *b = add_blob(4 * MIB + 100, 1, -1);
	struct fs_rstate *r1 = open_blob(bs, b, 11), *r2 = open_blob(bs, b, 11);
	struct reader a = {r1, b, 2 * MIB + 10, 0, 0}, c = {r2, b, 2 * MIB + 10, 0, 0};
	pthread_t ta, tc;
	reset_counts();
	fk.gate = 1;
	pthread_create(&ta, NULL, reader_main, &a);
	pthread_mutex_lock(&fk.mu);
	while (fk.at_gate < 1)
		pthread_cond_wait(&fk.cv, &fk.mu);
	pthread_mutex_unlock(&fk.mu);
	pthread_create(&tc, NULL, reader_main, &c);
	usleep(300000); /* the second reader finds the chunk in flight */
	pthread_mutex_lock(&fk.mu);
	CHECK_INT(fk.range_calls, 1);
	fk.gate = 0;
	pthread_cond_broadcast(&fk.cv);
	pthread_mutex_unlock(&fk.mu);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	CHECK(a.ok && c.ok);
	CHECK_INT(fk.range_calls, 1);
	CHECK_INT(fk.bytes, MIB); /* the chunk, once; random reads: no readahead */
	CHECK_INT(fk.url_calls, 1);
	fs_blob_close(r1);
	fs_blob_close(r2);
}

/* A sequential reader gets chunks fetched ahead of it, each chunk once;
 * the whole read seals the blob. */
static void test_readahead(struct fs_blobs *bs, cache *ca)
{
	struct fake_blob *b = add_blob(12 * MIB + 7, 2, -1);
	struct fs_rstate *rs = open_blob(bs, b, 12);
	reset_counts();
	uint64_t off = 0;
	for (; off < 3 * MIB; off += 128 * 1024)
		CHECK(read_ok(rs, b, 128 * 1024, off));
	settle(bs);
	CHECK(fk.max_end >= off + 4 * MIB);
	CHECK(cache_blob_has(ca, b->digest, b->size, off + 2 * MIB, 1));
	CHECK(fk.range_calls < 3 * MIB / (128 * 1024)); /* pieces, not one call per read */
	for (; off < b->size; off += 128 * 1024) {
		size_t len = b->size - off < 128 * 1024 ? (size_t)(b->size - off) : 128 * 1024;
		CHECK(read_ok(rs, b, len, off));
	}
	settle(bs);
	CHECK_INT(fk.bytes, b->size);
	CHECK_INT(fk.url_calls, 1);
	CHECK(cache_blob_complete(ca, b->digest));
	fs_blob_close(rs);
}

/* The kept URL serves later fetches; a 403 (expired) asks for a new one. */
static void test_url_renewal(struct fs_blobs *bs)
{
	struct fake_blob *b = add_blob(3 * MIB, 3, -1);
	struct fs_rstate *rs = open_blob(bs, b, 13);
	reset_counts();
	CHECK(read_ok(rs, b, 100, 2 * MIB));
	CHECK(read_ok(rs, b, 100, 0));
	CHECK_INT(fk.url_calls, 1);
	fk.expire_next = 1;
	CHECK(read_ok(rs, b, 100, MIB + 5));
	CHECK_INT(fk.url_calls, 2);
	CHECK_INT(fk.range_calls, 4);
	fs_blob_close(rs);
}

/* Two readers missing different chunks of a blob at once share one URL
 * request; two GETs refused with 403 at once renew it once. */
static void test_url_single_flight(struct fs_blobs *bs)
{
	struct fake_blob *b = add_blob(4 * MIB, 6, -1);
	struct fs_rstate *r1 = open_blob(bs, b, 16), *r2 = open_blob(bs, b, 16);
	struct reader a = {r1, b, MIB + 10, 0, 0}, c = {r2, b, 3 * MIB + 10, 0, 0};
	pthread_t ta, tc;
	reset_counts();
	fk.url_gate = 1;
	pthread_create(&ta, NULL, reader_main, &a);
	pthread_create(&tc, NULL, reader_main, &c);
	CHECK(wait_fk(&fk.at_url_gate, 1));
	usleep(200000); /* the other reader finds the request in flight */
	CHECK_INT(fk.url_calls, 1);
	open_gate(&fk.url_gate);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	CHECK(a.ok && c.ok);
	CHECK_INT(fk.url_calls, 1);
	CHECK_INT(fk.range_calls, 2);

	a.off = 10;
	c.off = 2 * MIB + 10;
	fk.gate = 1;
	pthread_create(&ta, NULL, reader_main, &a);
	pthread_create(&tc, NULL, reader_main, &c);
	CHECK(wait_fk(&fk.at_gate, 2));
	fk.expired_upto = fk.url_calls; /* the kept URL expired */
	open_gate(&fk.gate);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	CHECK(a.ok && c.ok);
	CHECK_INT(fk.url_calls, 2);
	CHECK_INT(fk.range_calls, 6);
	fk.expired_upto = 0;
	fs_blob_close(r1);
	fs_blob_close(r2);
}

/* A whole-file reader's first miss of a large blob has several GETs in
 * flight together, asking for a good part of it; each byte is fetched
 * once. A read of the last bytes of another fetches one chunk. */
static void test_initial_width(struct fs_blobs *bs, cache *ca)
{
	struct fake_blob *b = add_blob(64 * MIB, 7, -1);
	struct fs_rstate *rs = open_blob(bs, b, 17);
	struct reader r = {rs, b, 0, 0, 128 * 1024};
	pthread_t t;
	reset_counts();
	fk.gate = 1;
	pthread_create(&t, NULL, reader_main, &r);
	CHECK(wait_fk(&fk.at_gate, 5));
	usleep(100000);
	pthread_mutex_lock(&fk.mu); /* the fetch threads write these under it */
	int at_gate = fk.at_gate, url_calls = fk.url_calls;
	uint64_t asked = fk.asked;
	pthread_mutex_unlock(&fk.mu);
	CHECK(at_gate >= 5);
	CHECK(asked >= 16 * MIB);
	CHECK_INT(url_calls, 1);
	open_gate(&fk.gate);
	pthread_join(t, NULL);
	CHECK(r.ok);
	settle(bs);
	CHECK(fk.max_in_flight >= 5);
	CHECK_INT(fk.bytes, fk.asked); /* nothing asked twice */
	fs_blob_close(rs);

	struct fake_blob *tail = add_blob(64 * MIB, 8, -1);
	rs = open_blob(bs, tail, 18);
	reset_counts();
	CHECK(read_ok(rs, tail, 4096, tail->size - 4096));
	CHECK(read_ok(rs, tail, 4096, 33 * MIB));
	settle(bs);
	CHECK_INT(fk.bytes, 2 * MIB);
	CHECK(!cache_blob_complete(ca, tail->digest));
	fs_blob_close(rs);
}

/* A corrupted byte: reads of a blob that is not complete yet are served
 * (partial reads are checked for length only); the read that completes it
 * answers EIO, drops the page cache, and so do later reads. */
static void test_corrupt(struct fs_blobs *bs, cache *ca)
{
	/* Larger than the slack of a whole-file reader (4 MiB): its tail read
	 * is not taken for the end of a whole-file read. */
	struct fake_blob *b = add_blob(8 * MIB + 5, 4, 3 * MIB / 2);
	struct fs_rstate *rs = open_blob(bs, b, 14);
	char buf[4096];
	__atomic_store_n(&invals, 0, __ATOMIC_RELAXED);
	/* Chunks last to first: random reads, no readahead. */
	CHECK_INT(read_at(rs, buf, 5, 8 * MIB), 5);
	for (uint64_t c = 7; c >= 2; c--)
		CHECK(read_ok(rs, b, 4096, c * MIB));
	CHECK_INT(read_at(rs, buf, 4096, MIB), 4096);
	CHECK_INT(__atomic_load_n(&invals, __ATOMIC_RELAXED), 0);
	CHECK_INT(read_at(rs, buf, 4096, 0), -EIO);
	CHECK_INT(__atomic_load_n(&invals, __ATOMIC_RELAXED), 1);
	CHECK_INT(__atomic_load_n(&inval_ino, __ATOMIC_RELAXED), 14);
	CHECK(!cache_blob_complete(ca, b->digest));
	CHECK_INT(read_at(rs, buf, 4096, 2 * MIB), -EIO);
	fs_blob_close(rs);

	/* A sequential whole-file read of another corrupted blob: EIO at the
	 * end at the latest, never after a successful read of the end. */
	struct fake_blob *s = add_blob(5 * MIB + 3, 5, 4 * MIB + 1);
	rs = open_blob(bs, s, 15);
	__atomic_store_n(&invals, 0, __ATOMIC_RELAXED);
	static char big[64 * 1024];
	ssize_t last = 0;
	int eio_then_ok = 0, seen_eio = 0;
	for (uint64_t off = 0; off < s->size; off += 64 * 1024) {
		size_t len = s->size - off < 64 * 1024 ? (size_t)(s->size - off) : 64 * 1024;
		last = read_at(rs, big, len, off);
		eio_then_ok |= seen_eio && last >= 0;
		seen_eio |= last == -EIO;
	}
	CHECK_INT(last, -EIO);
	CHECK_INT(eio_then_ok, 0);
	CHECK(__atomic_load_n(&invals, __ATOMIC_RELAXED) >= 1);
	fs_blob_close(rs);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

int main(void)
{
	char dir[] = "/tmp/ecrfs-test-blob-XXXXXX";
	cache *ca = NULL;
	struct fs_blobs *bs = NULL;
	if (!mkdtemp(dir) || cache_open(dir, 0, &ca) != 0) {
		fprintf(stderr, "cannot make a cache in %s\n", dir);
		return 1;
	}
	struct fs_blobs_cfg cfg = {.cache = ca, .src = &fake_src, .deadline_ms = 5000,
				   .inval = on_inval};
	CHECK_INT(fs_blobs_new(&cfg, &bs), 0);
	test_single_flight(bs);
	test_readahead(bs, ca);
	test_url_renewal(bs);
	test_url_single_flight(bs);
	test_initial_width(bs, ca);
	test_corrupt(bs, ca);

	struct fs_blobs_stats st;
	settle(bs);
	fs_blobs_stats(bs, &st);
	CHECK_INT(st.flights, 0);
	CHECK_INT(st.urls, fk.n);
	CHECK_INT(st.bad, 2);
	fs_blobs_free(bs);
	cache_close(ca);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < fk.n; i++)
		free(fk.blobs[i].data);
	return check_summary("blob");
}
