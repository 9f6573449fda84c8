/* The gzip indexer and the span reader: checkpoints at block boundaries,
 * reads exact at every offset class, span digests, multi-member gzip,
 * plain tar, and streams that must be refused (truncated, wrong digest,
 * bombs). */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"
#include "fs/rootfs/rootfs_i.h"
#include "rootfs_util.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A tar of ~3 MiB: random bytes, compressible text, zeros. */
static struct tb make_tar(void)
{
	struct tb b = {0};
	size_t sizes[] = {1500000, 900000, 700000, 1, 0, 65536};
	unsigned char *data = malloc(1500000);
	for (size_t f = 0; f < sizeof(sizes) / sizeof(sizes[0]); f++) {
		for (size_t i = 0; i < sizes[f]; i++)
			data[i] =
			    f == 0 ? (unsigned char)next_rand()
			    : f == 1
				? (unsigned char)("lorem ipsum dolor "[i % 18] + (i % 977 == 0))
				: 0;
		char name[32];
		snprintf(name, sizeof(name), "file%zu", f);
		tb_entry(
		    &b,
		    &(struct tb_ent){
			.name = name, .type = '0', .mode = 0644, .data = data, .size = sizes[f]});
	}
	tb_end(&b);
	free(data);
	return b;
}

/* Reads [off, off + len) through the spans and compares with the tar. */
static void check_read(struct rootfs_spans *s, const struct rootfs_index *ix, struct mem_src *m,
		       const struct tb *tar, uint64_t off, size_t len)
{
	static unsigned char buf[200000];
	struct rootfs_source src = {mem_read, m};
	size_t want = off >= tar->len ? 0 : (tar->len - off < len ? tar->len - off : len);
	ssize_t got = rootfs_spans_read(s, ix, &src, off, buf, len);
	if (got != (ssize_t)want || (want && memcmp(buf, tar->buf + off, want) != 0))
		CHECK_FAILED("read at %llu+%zu: got %zd, want %zu%s", (unsigned long long)off, len,
			     got, want, got == (ssize_t)want ? " (bytes differ)" : "");
}

static void check_all_offsets(const struct rootfs_index *ix, const unsigned char *blob, size_t blen,
			      const struct tb *tar, size_t cache)
{
	struct mem_src m = {blob, blen, -1, 0};
	struct rootfs_spans *s = NULL;
	CHECK_INT(rootfs_spans_new(cache, &s), 0);
	CHECK_INT(rootfs_index_size(ix), tar->len);
	const size_t lens[] = {1, 3, 512, 70000, 200000};
	check_read(s, ix, &m, tar, 0, 1);
	check_read(s, ix, &m, tar, 0, 200000);
	for (size_t i = 0; i < ix->n_ck; i++)
		for (int d = -2; d <= 2; d++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
				if ((int64_t)ix->ck[i].out + d >= 0)
					check_read(s, ix, &m, tar, ix->ck[i].out + d, lens[l]);
	check_read(s, ix, &m, tar, tar->len - 1, 10);
	check_read(s, ix, &m, tar, tar->len, 10);
	check_read(s, ix, &m, tar, tar->len + 100, 10);
	for (int r = 0; r < 200; r++)
		check_read(s, ix, &m, tar, next_rand() % tar->len, next_rand() % 100000 + 1);
	uint64_t hits, misses;
	size_t bytes;
	rootfs_spans_stats(s, &hits, &misses, &bytes);
	CHECK(bytes <= cache);
	if (cache >= (8u << 20))
		CHECK(hits > misses);
	rootfs_spans_free(s);
}

static void test_gzip_levels(const struct tb *tar)
{
	const int levels[] = {0, 1, 6, 9};
	for (size_t l = 0; l < 4; l++) {
		size_t glen;
		unsigned char *g = gz(tar->buf, tar->len, levels[l], &glen);
		struct rootfs_index *ix = NULL, *ix2 = NULL;
		CHECK_INT(build_ix(g, glen, 65536, 4096, NULL, NULL, &ix), 0);
		if (!ix) {
			free(g);
			continue;
		}
		CHECK_INT(ix->comp, ROOTFS_COMP_GZIP);
		CHECK_INT(ix->n_ents, 6);
		CHECK(ix->n_ck > 20);
		CHECK_INT(ix->ck[0].out, 0);
		CHECK_INT(rootfs_index_blob_size(ix), glen);
		/* Checkpoints do not depend on how the stream was cut. */
		CHECK_INT(build_ix(g, glen, 65536, levels[l] == 6 ? 1 : 65537, NULL, NULL, &ix2),
			  0);
		CHECK(ix2 && ix2->n_ck == ix->n_ck &&
		      memcmp(ix2->ck, ix->ck, ix->n_ck * sizeof(*ix->ck)) == 0);
		rootfs_index_free(ix2);
		check_all_offsets(ix, g, glen, tar, 8u << 20);
		if (levels[l] == 6) {
			check_all_offsets(ix, g, glen, tar, 0); /* no caching */
			check_all_offsets(ix, g, glen, tar,
					  100000); /* spans bigger than the cache */
		}
		rootfs_index_free(ix);
		free(g);
	}
}

/* Two members cut at an odd place, plus trailing zeros. */
static void test_multi_member(const struct tb *tar)
{
	size_t cut = 1234567, l1, l2;
	unsigned char *g1 = gz(tar->buf, cut, 6, &l1);
	unsigned char *g2 = gz(tar->buf + cut, tar->len - cut, 1, &l2);
	unsigned char *g = malloc(l1 + l2 + 100);
	memcpy(g, g1, l1);
	memcpy(g + l1, g2, l2);
	memset(g + l1 + l2, 0, 100);
	struct rootfs_index *ix = NULL;
	CHECK_INT(build_ix(g, l1 + l2 + 100, 100000, 7777, NULL, NULL, &ix), 0);
	if (ix) {
		CHECK_INT(ix->n_ents, 6);
		check_all_offsets(ix, g, l1 + l2 + 100, tar, 8u << 20);
		rootfs_index_free(ix);
	}
	free(g);
	free(g1);
	free(g2);
}

static void test_plain_tar(const struct tb *tar)
{
	struct rootfs_index *ix = NULL;
	CHECK_INT(build_ix(tar->buf, tar->len, 65536, 1000, NULL, NULL, &ix), 0);
	if (!ix)
		return;
	CHECK_INT(ix->comp, ROOTFS_COMP_NONE);
	CHECK_INT(ix->n_ck, (tar->len + 65535) / 65536);
	check_all_offsets(ix, tar->buf, tar->len, tar, 8u << 20);
	/* A corrupted byte fails its span's digest. */
	struct mem_src m = {tar->buf, tar->len, 70000, 0};
	struct rootfs_spans *s = NULL;
	struct rootfs_source src = {mem_read, &m};
	unsigned char buf[16];
	rootfs_spans_new(8u << 20, &s);
	CHECK_INT(rootfs_spans_read(s, ix, &src, 65536 + 10, buf, 16), -EIO);
	CHECK_INT(rootfs_spans_read(s, ix, &src, 10, buf, 16), 16);
	rootfs_spans_free(s);
	rootfs_index_free(ix);
}

/* A span whose bytes fail their sha256 answers EIO, nothing is cached, and
 * the next read with good bytes works. */
static void test_span_digest(const struct tb *tar)
{
	size_t glen;
	unsigned char *g = gz(tar->buf, tar->len, 6, &glen);
	struct rootfs_index *ix = NULL;
	CHECK_INT(build_ix(g, glen, 65536, 65536, NULL, NULL, &ix), 0);
	if (ix && ix->n_ck > 5) {
		struct mem_src m = {g, glen, (long long)ix->ck[4].in + 5, 0};
		struct rootfs_source src = {mem_read, &m};
		struct rootfs_spans *s = NULL;
		unsigned char buf[100];
		rootfs_spans_new(8u << 20, &s);
		CHECK_INT(rootfs_spans_read(s, ix, &src, ix->ck[4].out + 1, buf, 100), -EIO);
		CHECK_INT(rootfs_spans_read(s, ix, &src, ix->ck[4].out + 1, buf, 100), -EIO);
		CHECK_INT(m.reads, 2);
		m.flip = -1;
		CHECK_INT(rootfs_spans_read(s, ix, &src, ix->ck[4].out + 1, buf, 100), 100);
		CHECK(memcmp(buf, tar->buf + ix->ck[4].out + 1, 100) == 0);
		CHECK_INT(rootfs_spans_read(s, ix, &src, ix->ck[4].out + 1, buf, 100), 100);
		CHECK_INT(m.reads, 3); /* the last one from the cache */
		/* A flipped byte in the bits shared with the previous span. */
		if (ix->ck[5].bits) {
			m.flip = (long long)ix->ck[5].in - 1;
			CHECK_INT(rootfs_spans_read(s, ix, &src, ix->ck[5].out, buf, 1), -EIO);
		}
		rootfs_spans_free(s);
	}
	rootfs_index_free(ix);
	free(g);
}

/* Two indexes of one blob with different span sizes share a cache safely. */
static void test_two_span_sizes(const struct tb *tar)
{
	size_t glen;
	unsigned char *g = gz(tar->buf, tar->len, 6, &glen);
	struct rootfs_index *a = NULL, *b = NULL;
	struct rootfs_spans *s = NULL;
	struct mem_src m = {g, glen, -1, 0};
	CHECK_INT(build_ix(g, glen, 65536, 65536, NULL, NULL, &a), 0);
	CHECK_INT(build_ix(g, glen, 300000, 65536, NULL, NULL, &b), 0);
	CHECK_INT(rootfs_spans_new(64u << 20, &s), 0);
	for (int r = 0; a && b && r < 100; r++) {
		uint64_t off = next_rand() % tar->len;
		check_read(s, a, &m, tar, off, 5000);
		check_read(s, b, &m, tar, off + 1, 5000);
	}
	rootfs_spans_free(s);
	rootfs_index_free(a);
	rootfs_index_free(b);
	free(g);
}

static void test_refused(const struct tb *tar)
{
	size_t glen;
	unsigned char *g = gz(tar->buf, tar->len, 6, &glen);
	struct rootfs_index *ix = NULL;
	char wrong[72];
	sha256_digest("x", 1, wrong);
	CHECK_INT(build_ix(g, glen, 0, 65536, wrong, NULL, &ix), -EIO);
	CHECK_INT(build_ix(g, glen - 20, 0, 65536, NULL, NULL, &ix), -EIO); /* truncated */
	CHECK_INT(build_ix(g, 5, 0, 65536, NULL, NULL, &ix), -EIO);
	g[glen / 2] ^= 0xff;
	CHECK_INT(build_ix(g, glen, 0, 65536, NULL, NULL, &ix), -EIO); /* corrupt data */
	CHECK(ix == NULL);
	/* A gzip of a truncated tar. */
	free(g);
	g = gz(tar->buf, 1000, 6, &glen);
	CHECK_INT(build_ix(g, glen, 0, 65536, NULL, NULL, &ix), -EIO);
	free(g);
	CHECK_INT(build_ix("\x28\xb5\x2f\xfd\0\0\0\0", 8, 0, 8, NULL, NULL, &ix), -EIO);
	CHECK_INT(build_ix("", 0, 0, 8, "sha256:", NULL, &ix), -EINVAL);
	/* An empty tar layer is a layer. */
	CHECK_INT(build_ix("", 0, 0, 8, NULL, NULL, &ix), 0);
	rootfs_index_free(ix);
}

/* Content that is no tar archive (an artifact's blob, gzip'd JSON, a
 * few bytes): -EMEDIUMTYPE, but only once the whole blob hashed to its
 * digest; the same bytes under another digest are a damaged download. */
static void test_not_tar(void)
{
	size_t n = 3u << 20, glen;
	unsigned char *rnd = malloc(n);
	struct rootfs_index *ix = NULL;
	char wrong[72];
	for (size_t i = 0; i < n; i++)
		rnd[i] = (unsigned char)next_rand();
	rnd[0] = 'R'; /* neither gzip nor zstd magic */
	sha256_digest("y", 1, wrong);
	CHECK_INT(build_ix(rnd, n, 0, 65536, NULL, NULL, &ix), -EMEDIUMTYPE);
	CHECK_INT(build_ix(rnd, n, 0, 65536, wrong, NULL, &ix), -EIO);
	CHECK_INT(build_ix(rnd, n - 1, 0, 1000, NULL, NULL, &ix), -EMEDIUMTYPE);
	const char *json = "{\"apiVersion\": \"v2\", \"name\": \"chart\"}\n";
	unsigned char *g = gz(json, strlen(json), 6, &glen);
	CHECK_INT(build_ix(g, glen, 0, 7, NULL, NULL, &ix), -EMEDIUMTYPE);
	CHECK_INT(build_ix(g, glen, 0, 7, wrong, NULL, &ix), -EIO);
	free(g);
	g = gz(rnd, n, 1, &glen);
	CHECK_INT(build_ix(g, glen, 0, 65536, NULL, NULL, &ix), -EMEDIUMTYPE);
	free(g);
	CHECK_INT(build_ix("ab", 2, 0, 1, NULL, NULL, &ix), -EMEDIUMTYPE);
	CHECK(ix == NULL);
	free(rnd);
}

/* Zeros deflate about 1000:1: the caps stop the stream, memory stays small. */
static void test_bomb(void)
{
	size_t mib = 300, cap = 4u << 20, glen = 0;
	unsigned char *zeros = calloc(1, 1u << 20), *g = malloc(cap);
	z_stream zs = {0};
	deflateInit2(&zs, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	zs.next_out = g;
	zs.avail_out = (uInt)cap;
	for (size_t i = 0; i < mib; i++) {
		zs.next_in = zeros;
		zs.avail_in = 1u << 20;
		deflate(&zs, i + 1 == mib ? Z_FINISH : Z_NO_FLUSH);
	}
	glen = zs.total_out;
	CHECK(glen < (3u << 20) && (mib << 20) / glen > 100);
	deflateEnd(&zs);
	struct rootfs_index *ix = NULL;
	struct rootfs_build_opts o = {.max_out = 64u << 20};
	CHECK_INT(build_ix(g, glen, 0, 65536, NULL, &o, &ix), -EFBIG);
	o = (struct rootfs_build_opts){.max_ratio = 100};
	CHECK_INT(build_ix(g, glen, 0, 65536, NULL, &o, &ix), -EFBIG);
	CHECK(ix == NULL);
	free(zeros);
	free(g);
}

struct reader {
	struct rootfs_spans *s;
	const struct rootfs_index *ix;
	const unsigned char *blob;
	size_t blen;
	const struct tb *tar;
	uint64_t seed;
	int bad;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct mem_src m = {r->blob, r->blen, -1, 0};
	struct rootfs_source src = {mem_read, &m};
	static __thread unsigned char buf[70000];
	for (int i = 0; i < 300; i++) {
		r->seed = r->seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = (r->seed >> 20) % r->tar->len;
		size_t len = (size_t)(r->seed >> 44) % sizeof(buf) + 1;
		ssize_t got = rootfs_spans_read(r->s, r->ix, &src, off, buf, len);
		size_t want = r->tar->len - off < len ? r->tar->len - off : len;
		if (got != (ssize_t)want || memcmp(buf, r->tar->buf + off, want) != 0)
			r->bad++;
	}
	return NULL;
}

/* Readers in parallel through a cache much smaller than the layer. */
static void test_threads(const struct tb *tar)
{
	size_t glen;
	unsigned char *g = gz(tar->buf, tar->len, 6, &glen);
	struct rootfs_index *ix = NULL;
	struct rootfs_spans *s = NULL;
	CHECK_INT(build_ix(g, glen, 65536, 65536, NULL, NULL, &ix), 0);
	CHECK_INT(rootfs_spans_new(300000, &s), 0);
	struct reader r[4];
	pthread_t th[4];
	for (int i = 0; i < 4 && ix; i++) {
		r[i] = (struct reader){s, ix, g, glen, tar, (uint64_t)i + 1, 0};
		pthread_create(&th[i], NULL, reader_main, &r[i]);
	}
	for (int i = 0; i < 4 && ix; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(r[i].bad, 0);
	}
	uint64_t hits, misses;
	size_t bytes;
	rootfs_spans_stats(s, &hits, &misses, &bytes);
	CHECK(bytes <= 300000);
	CHECK(hits > 0);
	rootfs_spans_free(s);
	rootfs_index_free(ix);
	free(g);
}

static int collect_out(void *arg, const void *buf, size_t len)
{
	tb_put(arg, buf, len);
	return 0;
}

static int refuse_out(void *arg, const void *buf, size_t len) { return -ENOSPC; }

/* zstd (two frames): indexed over the decompressed copy given to on_output. */
static void test_zstd(const struct tb *tar)
{
	size_t cut = 1000003, cap = ZSTD_compressBound(tar->len) + 64;
	unsigned char *z = malloc(cap);
	size_t l1 = ZSTD_compress(z, cap, tar->buf, cut, 3);
	size_t l2 = ZSTD_compress(z + l1, cap - l1, tar->buf + cut, tar->len - cut, 19);
	CHECK(!ZSTD_isError(l1) && !ZSTD_isError(l2));
	struct tb copy = {0};
	struct rootfs_index *ix = NULL;
	struct rootfs_build_opts o = {
	    .span_bytes = 65536, .on_output = collect_out, .output_arg = &copy};
	CHECK_INT(build_ix(z, l1 + l2, 0, 5000, NULL, &o, &ix), 0);
	CHECK(copy.len == tar->len && memcmp(copy.buf, tar->buf, tar->len) == 0);
	if (ix) {
		CHECK_INT(ix->comp, ROOTFS_COMP_ZSTD);
		CHECK_INT(ix->n_ents, 6);
		CHECK_INT(rootfs_index_blob_size(ix), l1 + l2);
		check_all_offsets(ix, copy.buf, copy.len, tar, 8u << 20);
		rootfs_index_free(ix);
	}
	copy.len = 0;
	CHECK_INT(build_ix(z, l1 + l2, 0, 3, NULL, &o, &ix), 0); /* 3-byte chunks */
	CHECK(copy.len == tar->len && memcmp(copy.buf, tar->buf, tar->len) == 0);
	rootfs_index_free(ix);
	copy.len = 0;
	CHECK_INT(build_ix(z, l1 + l2 - 3, 0, 5000, NULL, &o, &ix), -EIO); /* truncated */
	o.on_output = refuse_out;
	CHECK_INT(build_ix(z, l1 + l2, 0, 5000, NULL, &o, &ix), -ENOSPC);
	free(copy.buf);
	free(z);
}

struct slow_src {
	struct mem_src m;
	pthread_mutex_t lock;
	int fail_first; /* the first fetch fails as an interrupted one would */
};

static int slow_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct slow_src *s = arg;
	usleep(100000);
	pthread_mutex_lock(&s->lock);
	int rc = mem_read(&s->m, off, buf, len);
	if (s->fail_first && s->m.reads == 1)
		rc = -EINTR;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

struct same_span {
	struct rootfs_spans *s;
	const struct rootfs_index *ix;
	struct rootfs_source *src;
	uint64_t off;
	const struct tb *tar;
	pthread_barrier_t *go;
	int bad;
};

static void *same_span_main(void *arg)
{
	struct same_span *r = arg;
	unsigned char buf[1000];
	pthread_barrier_wait(r->go);
	ssize_t got = rootfs_spans_read(r->s, r->ix, r->src, r->off, buf, sizeof(buf));
	r->bad = got != sizeof(buf) || memcmp(buf, r->tar->buf + r->off, sizeof(buf)) != 0;
	return NULL;
}

/* Readers missing the same span at once share one fetch; when the
 * loader's fetch fails (interrupted), the waiting readers fetch again. */
static void test_single_flight(const struct tb *tar, int fail_first)
{
	size_t glen;
	unsigned char *g = gz(tar->buf, tar->len, 6, &glen);
	struct rootfs_index *ix = NULL;
	struct rootfs_spans *s = NULL;
	struct slow_src ss = {{g, glen, -1, 0}, PTHREAD_MUTEX_INITIALIZER, fail_first};
	struct rootfs_source src = {slow_read, &ss};
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 4);
	CHECK_INT(build_ix(g, glen, 65536, 65536, NULL, NULL, &ix), 0);
	CHECK_INT(rootfs_spans_new(8u << 20, &s), 0);
	struct same_span r[4];
	pthread_t th[4];
	for (int i = 0; i < 4 && ix; i++) {
		r[i] = (struct same_span){s,   ix,  &src, ix->ck[3].out + 1000 * (uint64_t)i,
					  tar, &go, 0};
		pthread_create(&th[i], NULL, same_span_main, &r[i]);
	}
	int bad = 0;
	for (int i = 0; i < 4 && ix; i++) {
		pthread_join(th[i], NULL);
		bad += r[i].bad;
	}
	CHECK_INT(bad, fail_first ? 1 : 0);
	if (fail_first)
		CHECK(ss.m.reads >= 2 && ss.m.reads <= 4);
	else
		CHECK_INT(ss.m.reads, 1);
	pthread_barrier_destroy(&go);
	rootfs_spans_free(s);
	rootfs_index_free(ix);
	free(g);
}

/* A global PAX xattr is copied to every entry: the names cap bounds it. */
static void test_global_xattr_cap(void)
{
	struct tb b = {0};
	char *val = malloc(500001);
	memset(val, 'v', 500000);
	val[500000] = 0;
	const char *kv[] = {"SCHILY.xattr.user.big", val};
	tb_pax(&b, 'g', 1, kv);
	for (int i = 0; i < 40; i++)
		tb_file(&b, "f", "", 0644);
	tb_end(&b);
	struct rootfs_index *ix = NULL;
	struct rootfs_build_opts o = {.max_names = 8u << 20};
	CHECK_INT(build_ix(b.buf, b.len, 0, 65536, NULL, &o, &ix), -EFBIG);
	o.max_names = 0;
	CHECK_INT(build_ix(b.buf, b.len, 0, 65536, NULL, &o, &ix), 0);
	if (ix)
		CHECK_INT(ix->n_xa, 40);
	rootfs_index_free(ix);
	free(val);
	free(b.buf);
}

struct bits {
	unsigned char *p;
	size_t len;
	uint32_t acc;
	int n;
};

static void put_bits(struct bits *w, uint32_t v, int n)
{
	w->acc |= v << w->n;
	w->n += n;
	while (w->n >= 8) {
		w->p[w->len++] = (unsigned char)w->acc;
		w->acc >>= 8;
		w->n -= 8;
	}
}

/* A Huffman code goes out most significant bit first. */
static void put_code(struct bits *w, uint32_t code, int n)
{
	for (int i = n - 1; i >= 0; i--)
		put_bits(w, (code >> i) & 1, 1);
}

/* One fixed-Huffman deflate block of 300 MiB of zeros (what zlib never
 * writes): refused, since every read of that span would inflate it all. */
static void test_long_block(void)
{
	size_t syms = (300u << 20) / 258;
	struct bits w = {malloc(syms * 2 + 64), 0, 0, 0};
	memcpy(w.p, "\x1f\x8b\x08\0\0\0\0\0\0\x03", 10);
	w.len = 10;
	put_bits(&w, 1, 1);    /* BFINAL */
	put_bits(&w, 1, 2);    /* fixed Huffman */
	put_code(&w, 0x30, 8); /* literal 0 */
	for (size_t i = 0; i < syms; i++) {
		put_code(&w, 0xc5, 8); /* length 258 */
		put_code(&w, 0, 5);    /* distance 1 */
	}
	put_code(&w, 0, 7); /* end of block */
	put_bits(&w, 0, 7);
	memset(w.p + w.len, 0, 8); /* trailer: never reached */
	struct rootfs_index *ix = NULL;
	CHECK_INT(build_ix(w.p, w.len + 8, 0, 1 << 20, NULL, NULL, &ix), -EFBIG);
	CHECK(ix == NULL);
	free(w.p);
}

int main(void)
{
	struct tb tar = make_tar();
	test_gzip_levels(&tar);
	test_multi_member(&tar);
	test_plain_tar(&tar);
	test_span_digest(&tar);
	test_two_span_sizes(&tar);
	test_refused(&tar);
	test_not_tar();
	test_zstd(&tar);
	test_threads(&tar);
	test_single_flight(&tar, 0);
	test_single_flight(&tar, 1);
	test_bomb();
	test_long_block();
	test_global_xattr_cap();
	free(tar.buf);
	return check_summary("test_rootfs_gzip");
}
