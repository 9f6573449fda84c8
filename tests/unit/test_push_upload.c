/* The streaming uploader against an in-memory ECR with ECR's part rules. */
#include "push_upload_util.h"

static void test_classify(void)
{
	char *mt = NULL;
	const char *oci = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
			  "\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:"
			  "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":2},"
			  "\"layers\":[]}";
	CHECK(push_json_classify(oci, strlen(oci), &mt) == PUSH_MANIFEST);
	CHECK(!strcmp(mt, "application/vnd.oci.image.manifest.v1+json"));
	free(mt);
	const char *bare = "{\"schemaVersion\":2,\"layers\":[]}";
	CHECK(push_json_classify(bare, strlen(bare), &mt) == PUSH_MANIFEST);
	CHECK(!strcmp(mt, "application/vnd.oci.image.manifest.v1+json"));
	free(mt);
	const char *dock = "{\"schemaVersion\":2,\"mediaType\":"
			   "\"application/vnd.docker.distribution.manifest.list.v2+json\",\"manifests\":[]}";
	CHECK(push_json_classify(dock, strlen(dock), &mt) == PUSH_INDEX);
	CHECK(!strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json"));
	free(mt);
	const char *idx = "{\"schemaVersion\":2,\"manifests\":[]}";
	CHECK(push_json_classify(idx, strlen(idx), &mt) == PUSH_INDEX);
	free(mt);
	const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{}}";
	CHECK(push_json_classify(cfg, strlen(cfg), &mt) == PUSH_BLOB && !mt);
	CHECK(push_json_classify("{not json", 9, &mt) == PUSH_BLOB && !mt);
	CHECK(push_json_classify("\x1f\x8b", 2, &mt) == PUSH_BLOB && !mt);

	struct push_desc_list l;
	CHECK(push_json_descs(oci, strlen(oci), PUSH_MANIFEST, &l) == 0 && l.n == 1);
	CHECK(l.v[0].size == 2);
	push_desc_list_free(&l);
	CHECK(push_json_descs("{\"manifests\":[{\"digest\":\"sha256:12\"}]}", 38, PUSH_INDEX, &l) ==
	      -EINVAL);
	CHECK(push_digest_valid("sha256:0000000000000000000000000000000000000000000000000000000000000000"));
	CHECK(!push_digest_valid("sha256:000000000000000000000000000000000000000000000000000000000000000"));
	CHECK(!push_digest_valid("sha256:000000000000000000000000000000000000000000000000000000000000000A"));
}

/* 23 MiB + 5 bytes in 1 MiB writes with a 20 MiB advertised partSize:
 * parts are clamped to 10 MiB, sent in order, the bytes arrive intact. */
static void test_stream(void)
{
	size_t n = 23 * MiB + 5;
	char *b = fake_bytes(n, 1), d[72];
	const struct upload_result *res;
	upload *u;

	fake_init(&F, &R, 20 * MiB);
	fake_sha(b, n, d);
	u = new_upload(d, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_size(u) == n);
	CHECK(upload_finish(u, d, &res) == 0);
	CHECK(res->uploaded == 1 && res->size == n && !strcmp(res->digest, d));
	CHECK(F.n_initiate == 1 && F.n_complete == 1);
	CHECK(F.up[0].parts == 3);
	CHECK(F.up[0].len == n && !memcmp(F.up[0].data, b, n));
	CHECK(fake_has_layer(&F, d));
	/* idempotent: a second FLUSH returns the same result, no new calls */
	CHECK(upload_finish(u, d, &res) == 0 && F.n_complete == 1);
	CHECK(upload_write(u, "x", 1, n) == -EIO); /* after finish */
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* partSize below the minimum is raised to 5 MiB. */
static void test_part_min(void)
{
	size_t n = 11 * MiB;
	char *b = fake_bytes(n, 2), d[72];
	upload *u;

	fake_init(&F, &R, 1 * MiB);
	F.part_size = 1 * MiB;
	fake_sha(b, n, d);
	u = new_upload(NULL, 0, 0);
	/* the fake checks len <= partSize: give it room for 5 MiB parts */
	F.part_size = 5 * MiB;
	CHECK(write_all(u, b, n, 128 * 1024) == 0);
	CHECK(upload_finish(u, d, NULL) == 0);
	CHECK(F.up[0].parts == 3 && F.up[0].len == n);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* Gaps and ftruncate up are zeros; writes below what was taken are EIO. */
static void test_gaps(void)
{
	size_t n = 7 * MiB;
	char *b = fake_bytes(n, 3), d[72];
	upload *u;

	fake_init(&F, &R, 5 * MiB);
	memset(b + 100, 0, 3 * MiB);        /* a hole cp would skip */
	memset(b + n - 4096, 0, 4096);      /* a hole at the end: ftruncate */
	fake_sha(b, n, d);
	u = new_upload(d, 0, 0);
	CHECK(upload_write(u, b, 100, 0) == 0);
	CHECK(upload_write(u, b + 100 + 3 * MiB, n - 4096 - 100 - 3 * MiB, 100 + 3 * MiB) == 0);
	CHECK(upload_truncate(u, n) == 0);
	CHECK(upload_write(u, b, 10, 50) == -EIO);
	/* the failure is sticky: the file cannot complete */
	CHECK(upload_finish(u, d, NULL) == -EIO);
	CHECK(F.n_complete == 0);
	upload_free(u);

	u = new_upload(d, 0, 0);
	CHECK(upload_write(u, b, 100, 0) == 0);
	CHECK(upload_write(u, b + 100 + 3 * MiB, n - 4096 - 100 - 3 * MiB, 100 + 3 * MiB) == 0);
	CHECK(upload_truncate(u, n) == 0);
	CHECK(upload_truncate(u, n) == 0); /* same size: nothing to do */
	CHECK(upload_finish(u, d, NULL) == 0);
	CHECK(F.n_complete == 1 && F.up[1].len == n && !memcmp(F.up[1].data, b, n));
	upload_free(u);

	u = new_upload(NULL, 0, 0);
	CHECK(upload_write(u, b, 100, 0) == 0);
	CHECK(upload_truncate(u, 99) == -EIO);
	CHECK(upload_write(u, b + 100, 100, 100) == -EIO);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* Digest mismatch: EIO and no CompleteLayerUpload. */
static void test_mismatch(void)
{
	size_t n = 6 * MiB;
	char *b = fake_bytes(n, 4), d[72];
	upload *u;

	fake_init(&F, &R, 10 * MiB);
	fake_sha(b, n, d);
	b[n / 2] ^= 1;
	u = new_upload(d, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, NULL) == -EIO);
	CHECK(upload_finish(u, d, NULL) == -EIO);
	CHECK(F.n_complete == 0 && F.nlayers == 0);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* A blob the repository has is hashed, not uploaded; its digest is still checked. */
static void test_skip_existing(void)
{
	size_t n = 3 * MiB;
	char *b = fake_bytes(n, 5), d[72];
	upload *u;

	fake_init(&F, &R, 10 * MiB);
	fake_sha(b, n, d);
	strcpy(F.layers[F.nlayers++], d);
	u = new_upload(d, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	const struct upload_result *res;
	CHECK(upload_finish(u, d, &res) == 0 && res->uploaded == 0);
	CHECK(F.n_initiate == 0 && F.n_part == 0);
	upload_free(u);

	u = new_upload(d, 0, 0);
	b[7] ^= 1;
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, NULL) == -EIO);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* Upload errors surface in a later write or the finish: the first write
 * does not wait for InitiateLayerUpload (the worker calls it). */
static void test_denied(void)
{
	char *b = fake_bytes(MiB, 8), d[72];
	uint64_t off = MiB;
	upload *u;
	int rc = 0;

	fake_init(&F, &R, 10 * MiB);
	F.deny_initiate = 1;
	fake_sha(b, MiB, d);
	u = new_upload(d, 0, 0);
	CHECK(upload_write(u, b, MiB, 0) == 0);
	for (int i = 0; i < 5000 && rc == 0; i++, off += 10)
		if ((rc = upload_write(u, b, 10, off)) == 0)
			usleep(1000);
	CHECK(rc == -EACCES);
	CHECK(upload_write(u, b, 10, off) == -EACCES);
	CHECK(upload_finish(u, d, NULL) == -EACCES);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* JSON: manifests are held and returned, never uploaded; configs are
 * uploaded at finish (also when spilled beyond the cap). */
static void test_json(void)
{
	const char *man = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
			  "\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:"
			  "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":2},"
			  "\"layers\":[]}";
	char d[72];
	const struct upload_result *res;
	upload *u;

	fake_init(&F, &R, 10 * MiB);
	fake_sha(man, strlen(man), d);
	u = new_upload(d, 0, 0);
	CHECK(upload_write(u, man, 10, 0) == 0);
	CHECK(upload_write(u, man + 10, strlen(man) - 10, 10) == 0);
	CHECK(upload_finish(u, d, &res) == 0);
	CHECK(res->kind == PUSH_MANIFEST && res->len == strlen(man) && !memcmp(res->bytes, man, res->len));
	CHECK(!strcmp(res->media_type, "application/vnd.oci.image.manifest.v1+json"));
	CHECK(F.n_initiate == 0 && F.n_part == 0 && F.n_check == 0);
	upload_free(u);

	/* a config of 3000 bytes with a 1 KiB hold cap: spilled, then uploaded */
	size_t n = 3000;
	char *cfg = malloc(n);
	memset(cfg, ' ', n);
	memcpy(cfg, "{\"os\":\"linux\",\"x\":\"", 19);
	memcpy(cfg + n - 3, "\"} ", 3);
	fake_sha(cfg, n, d);
	u = new_upload(d, 1024, 0);
	CHECK(write_all(u, cfg, n, 700) == 0);
	CHECK(F.n_initiate == 0);
	CHECK(upload_finish(u, d, &res) == 0);
	CHECK(res->kind == PUSH_BLOB && res->uploaded == 1);
	CHECK(F.n_complete == 1 && F.up[0].len == n && !memcmp(F.up[0].data, cfg, n));
	upload_free(u);

	/* hold_only (index.json) beyond the cap is refused */
	u = new_upload(NULL, 1024, 1);
	CHECK(write_all(u, cfg, n, 700) == -EFBIG);
	upload_free(u);
	u = new_upload(NULL, 0, 1);
	CHECK(write_all(u, cfg, n, 700) == 0);
	CHECK(upload_finish(u, NULL, &res) == 0 && res->len == n && !memcmp(res->bytes, cfg, n));
	upload_free(u);
	free(cfg);
	fake_fini(&F);
}

/* Several layers at once from several threads. */
struct par {
	int i;
	int rc;
};
static void *par_main(void *arg)
{
	struct par *p = arg;
	size_t n = 12 * MiB + (size_t)p->i * 1000;
	char *b = fake_bytes(n, 100 + (unsigned)p->i), d[72];
	upload *u;
	fake_sha(b, n, d);
	u = new_upload(d, 0, 0);
	p->rc = write_all(u, b, n, MiB);
	if (p->rc == 0)
		p->rc = upload_finish(u, d, NULL);
	upload_free(u);
	free(b);
	return NULL;
}
static void test_parallel(void)
{
	pthread_t t[4];
	struct par p[4];
	fake_init(&F, &R, 5 * MiB);
	for (int i = 0; i < 4; i++) {
		p[i].i = i;
		CHECK(pthread_create(&t[i], NULL, par_main, &p[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(p[i].rc == 0);
	}
	CHECK(F.nlayers == 4 && F.n_complete == 4);
	fake_fini(&F);
}

/* Waits (bounded) until F.inflight reaches want. */
static void wait_inflight(int want)
{
	int got = 0;
	for (int i = 0; i < 4000 && got != want; i++) {
		pthread_mutex_lock(&F.mu);
		got = F.inflight;
		pthread_mutex_unlock(&F.mu);
		if (got != want)
			usleep(2000);
	}
	CHECK(got == want);
}

/* Files written one after another (as cp does) with async finishes: each
 * close returns before its parts reach ECR, layers then upload at once,
 * one part in flight per layer and in order, and never more part buffers
 * than the shared budget allows. */
static void test_width(void)
{
	enum { K = 4 };
	size_t n = 23 * MiB + 9;
	char *b[K], d[K][72];
	upload *u[K];
	struct upload_pool *pool;
	struct upload_pool_stats st;

	fake_init(&F, &R, 5 * MiB);
	CHECK(upload_pool_new(15 * MiB, 0, &pool) == 0); /* three parts */
	F.gate = 1;
	for (int i = 0; i < K; i++) {
		struct upload_opts o = { .remote = &R, .name = "w", .pool = pool, .async = 1 };
		b[i] = fake_bytes(n, 50 + (unsigned)i);
		fake_sha(b[i], n, d[i]);
		CHECK(upload_new(&o, &u[i]) == 0);
		CHECK(write_all(u[i], b[i], n, MiB) == 0);
		CHECK(upload_finish(u[i], d[i], NULL) == 0); /* the close: no part sent yet */
	}
	wait_inflight(3); /* the budget: three layers, one part each */
	usleep(20000);
	pthread_mutex_lock(&F.mu);
	CHECK(F.inflight == 3 && F.n_complete == 0 && F.n_part == 0);
	F.gate = 0;
	F.part_delay_us = 3000;
	pthread_cond_broadcast(&F.gate_cv);
	pthread_mutex_unlock(&F.mu);
	for (int i = 0; i < K; i++)
		CHECK(upload_wait(u[i]) == 0);
	upload_pool_stats(pool, &st);
	/* The budget is in bytes: a short last part may let a fourth in. */
	CHECK(F.inflight_peak >= 3 && st.parts_peak >= 3 && st.bytes_peak <= 15 * MiB);
	CHECK(st.parts_now == 0 && st.spilled == 0 && st.spilled_peak >= (uint64_t)K * n);
	CHECK(F.n_complete == K && F.nlayers == K);
	for (int i = 0; i < K; i++) {
		CHECK(F.up[i].inflight_peak == 1); /* in order: the fake refuses gaps */
		check_parts(i, b[i], n);
		upload_free(u[i]);
		free(b[i]);
	}
	upload_pool_free(pool);
	fake_fini(&F);
}

struct getter {
	struct upload_pool *pool;
	size_t len;
	void *buf;
	int done; /* atomic */
};

static int never(void *arg)
{
	(void)arg;
	return 0;
}

static void *getter_main(void *arg)
{
	struct getter *g = arg;
	g->buf = upload_pool_get(g->pool, g->len, never, NULL);
	__atomic_store_n(&g->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int done_within(struct getter *g, int ms)
{
	for (int i = 0; i < ms && !__atomic_load_n(&g->done, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	return __atomic_load_n(&g->done, __ATOMIC_SEQ_CST);
}

/* With the budget taken by layers' parts, a config's small part still gets
 * its buffer at once; a big part waits for one to come back. */
static void test_small_parts_pass(void)
{
	struct upload_pool *pool;
	struct getter small = { 0 }, big = { 0 };
	pthread_t ts, tb;
	void *b[3];

	CHECK(upload_pool_new(15 * MiB, 0, &pool) == 0);
	for (int i = 0; i < 3; i++)
		CHECK((b[i] = upload_pool_get(pool, 5 * MiB, never, NULL)) != NULL);
	small = (struct getter){ .pool = pool, .len = 64 * 1024 };
	big = (struct getter){ .pool = pool, .len = 5 * MiB };
	pthread_create(&ts, NULL, getter_main, &small);
	pthread_create(&tb, NULL, getter_main, &big);
	CHECK(done_within(&small, 2000));
	CHECK(!done_within(&big, 100));
	pthread_join(ts, NULL);
	CHECK(small.buf != NULL);
	upload_pool_put(pool, small.buf, small.len);
	upload_pool_put(pool, b[0], 5 * MiB);
	CHECK(done_within(&big, 2000));
	pthread_join(tb, NULL);
	CHECK(big.buf != NULL);
	upload_pool_put(pool, big.buf, big.len);
	upload_pool_put(pool, b[1], 5 * MiB);
	upload_pool_put(pool, b[2], 5 * MiB);
	upload_pool_free(pool);
}

/* The spill cap holds a writer back until ECR takes bytes (back-pressure),
 * but never while its own upload has less than a part to send (a cap
 * below a part would wait for ever). */
static void test_spill_cap(void)
{
	size_t n = 31 * MiB;
	char *b = fake_bytes(n, 60), d[72];
	struct upload_pool *pool;
	struct upload_pool_stats st;
	upload *u;

	fake_sha(b, n, d);
	for (int tiny = 0; tiny < 2; tiny++) {
		fake_init(&F, &R, 5 * MiB);
		F.part_delay_us = 2000;
		CHECK(upload_pool_new(5 * MiB, tiny ? MiB : 12 * MiB, &pool) == 0);
		struct upload_opts o = { .remote = &R, .name = "s", .pool = pool };
		CHECK(upload_new(&o, &u) == 0);
		CHECK(write_all(u, b, n, MiB) == 0);
		CHECK(upload_finish(u, d, NULL) == 0);
		upload_pool_stats(pool, &st);
		CHECK(st.spilled_peak <= (tiny ? 6 : 12) * MiB && st.spilled == 0);
		CHECK(st.parts_peak == 1);
		check_parts(0, b, n);
		upload_free(u);
		upload_pool_free(pool);
		fake_fini(&F);
	}
	free(b);
}

/* An abandoned upload (abort, free before finish) stops cleanly. */
static void test_abort(void)
{
	size_t n = 17 * MiB;
	char *b = fake_bytes(n, 9);
	upload *u;
	fake_init(&F, &R, 5 * MiB);
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	upload_abort(u);
	CHECK(upload_write(u, b, 1, n) == -ECANCELED);
	upload_free(u);
	CHECK(F.n_complete == 0);
	fake_fini(&F);
	free(b);
}

int main(void)
{
	int fd = mkstemp(log_path);
	CHECK(fd >= 0);
	close(fd);
	CHECK(log_init(LOG_TO_FILE, log_path, LOGL_INFO) == 0);
	test_classify();
	test_stream();
	test_part_min();
	test_gaps();
	test_mismatch();
	test_skip_existing();
	test_denied();
	test_json();
	test_parallel();
	test_width();
	test_small_parts_pass();
	test_spill_cap();
	test_abort();
	log_close();
	unlink(log_path);
	printf("push upload tests passed\n");
	return 0;
}
