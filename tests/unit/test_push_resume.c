/* The uploader when ECR misbehaves: lost replies, a part ECR kept only the
 * start of, uploads ECR lost (restarted from the spill file), against the
 * in-memory ECR of push_fake.h. */
#include "push_upload_util.h"

/* A lost reply (part stored) resumes after lastValidByteReceived. */
static void test_lost_reply(void)
{
	size_t n = 25 * MiB;
	char *b = fake_bytes(n, 6), d[72];
	upload *u;

	fake_init(&F, &R, 10 * MiB);
	F.drop_reply_at = 2;
	fake_sha(b, n, d);
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, NULL) == 0);
	CHECK(F.up[0].parts == 3 && F.up[0].len == n && !memcmp(F.up[0].data, b, n));
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* ECR keeps only the start of a part (lastValidByteReceived inside it): the
 * rest goes out joined to the following bytes, never as a short part in the
 * middle (LayerPartTooSmall at CompleteLayerUpload). */
static void mid_part_case(size_t n, int64_t part, int at, size_t keep, size_t step,
			  const size_t *want, int nwant)
{
	char *b = fake_bytes(n, 20 + (unsigned)at), d[72];
	const struct upload_result *res;
	upload *u;

	fake_init(&F, &R, part);
	F.mid_part_at = at;
	F.mid_part_keep = keep;
	fake_sha(b, n, d);
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, step) == 0);
	CHECK(upload_finish(u, d, &res) == 0 && res->uploaded == 1);
	CHECK(F.n_initiate == 1 && F.n_complete == 1 && fake_has_layer(&F, d));
	check_parts(0, b, n);
	CHECK(F.up[0].parts == nwant);
	for (int k = 0; k < nwant; k++)
		CHECK(F.up[0].part_len[k] == want[k]);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

static void test_mid_part(void)
{
	/* second part keeps 6 MiB+3: its 4 MiB-3 rest starts the third part */
	const size_t a[] = { 10 * MiB, 6 * MiB + 3, 10 * MiB, 7 * MiB + 4 };
	mid_part_case(33 * MiB + 7, 10 * MiB, 2, 6 * MiB + 3, MiB, a, 4);
	/* the same with small writes */
	mid_part_case(33 * MiB + 7, 10 * MiB, 2, 6 * MiB + 3, 96 * 1024, a, 4);
	/* at the finish: the 4 MiB rest and 9 MiB still to send make a whole
	 * part and a short last one */
	const size_t c[] = { 10 * MiB, 6 * MiB, 10 * MiB, 3 * MiB };
	mid_part_case(29 * MiB, 10 * MiB, 2, 6 * MiB, MiB, c, 4);
	/* the last part keeps its start: the rest goes alone, as the last */
	const size_t e[] = { 10 * MiB, 10 * MiB, 6 * MiB, 2 * MiB };
	mid_part_case(28 * MiB, 10 * MiB, 3, 6 * MiB, MiB, e, 4);
	/* the first part, with an 8 MiB partSize */
	const size_t g[] = { 5 * MiB, 8 * MiB, 8 * MiB, 3 * MiB };
	mid_part_case(24 * MiB, 8 * MiB, 1, 5 * MiB, MiB, g, 4);
	/* none of the part kept: the same part again */
	const size_t h[] = { 10 * MiB, 2 * MiB };
	mid_part_case(12 * MiB, 10 * MiB, 1, 0, MiB, h, 2);
}

/* UploadNotFound after the first part: every byte is still in the spill
 * file, so a new upload gets them all again, transparently. */
static void restart_case(size_t n, int64_t part, int not_found_at, int mid_at, size_t keep)
{
	char *b = fake_bytes(n, 30 + (unsigned)not_found_at), d[72];
	upload *u = NULL;

	fake_init(&F, &R, part);
	F.not_found_at = not_found_at;
	F.mid_part_at = mid_at;
	F.mid_part_keep = keep;
	fake_sha(b, n, d);
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, NULL) == 0);
	CHECK(F.n_initiate == 2 && F.n_complete == 1);
	CHECK(!F.up[0].done || F.up[0].len < n); /* the lost one never completed */
	check_parts(1, b, n);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* Waits (bounded) until the worker's error reaches upload_sync. */
static int sync_error(upload *u)
{
	int rc = 0;
	for (int i = 0; i < 2000 && rc == 0; i++) {
		rc = upload_sync(u);
		if (rc == 0)
			usleep(5000);
	}
	return rc;
}

/* UploadNotFound restarts the upload from the spill file, at any part. */
static void test_not_found(void)
{
	size_t n = 12 * MiB;
	char *b = fake_bytes(n, 7), d[72];
	upload *u;

	fake_init(&F, &R, 10 * MiB);
	F.not_found_at = 1;
	fake_sha(b, n, d);
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, NULL) == 0);
	CHECK(F.n_initiate == 2 && F.up[1].len == n);
	upload_free(u);
	fake_fini(&F);
	/* the log names the blob and the repository */
	CHECK(log_has("upload of test to fake repository: ECR lost the upload (UploadNotFound) "
		      "at its first part; starting it again"));

	restart_case(12 * MiB, 5 * MiB, 2, 0, 0);
	restart_case(25 * MiB, 10 * MiB, 2, 0, 0);
	restart_case(33 * MiB, 10 * MiB, 3, 1, 6 * MiB); /* after a kept start: parts re-cut */
	restart_case(21 * MiB, 10 * MiB, 3, 0, 0);       /* during the last part */

	/* a part's error reaches the writer at its next write, sync, finish */
	fake_init(&F, &R, 5 * MiB);
	F.fail_part_at = 2;
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, 10 * MiB, MiB) == 0); /* two whole parts */
	CHECK(sync_error(u) == -EACCES);            /* fsync, FLUSH of a temp name */
	CHECK(upload_write(u, b + 10 * MiB, MiB, 10 * MiB) == -EACCES);
	CHECK(upload_finish(u, d, NULL) == -EACCES);
	CHECK(F.n_complete == 0);
	upload_free(u);
	fake_fini(&F);
	free(b);
}

/* CompleteLayerUpload answers not found: after a lost reply the layer is
 * there (success); an expired upload starts again from the spill file. */
static void test_complete_not_found(void)
{
	size_t n = 13 * MiB + 5;
	char *b = fake_bytes(n, 40), d[72];
	const struct upload_result *res;
	upload *u = NULL;

	fake_sha(b, n, d);
	fake_init(&F, &R, 10 * MiB);
	F.complete_reply_lost_at = 1;
	u = new_upload(NULL, 0, 0);
	CHECK(write_all(u, b, n, MiB) == 0);
	CHECK(upload_finish(u, d, &res) == 0 && res->uploaded == 1);
	CHECK(F.n_complete == 1 && F.n_initiate == 1 && fake_has_layer(&F, d));
	upload_free(u);
	fake_fini(&F);

	for (size_t len = n; len > 0; len = len == n ? 3 * MiB : 0) {
		fake_init(&F, &R, 10 * MiB);
		F.complete_expired_at = 1;
		fake_sha(b, len, d);
		u = new_upload(NULL, 0, 0);
		CHECK(write_all(u, b, len, MiB) == 0);
		CHECK(upload_finish(u, d, NULL) == 0);
		CHECK(F.n_initiate == 2 && F.n_complete == 2 && fake_has_layer(&F, d));
		check_parts(1, b, len);
		upload_free(u);
		fake_fini(&F);
	}
	CHECK(log_has("ECR lost the upload (UploadNotFound) before CompleteLayerUpload; "
		      "starting it again"));
	free(b);
}

/* Held JSON (a config) is read again from memory or its spill file when ECR
 * loses the upload after the first part. */
static void test_held_restart(void)
{
	size_t n = 12 * MiB + 11;
	char *cfg = malloc(n), d[72];
	const struct upload_result *res;
	upload *u;

	memset(cfg, ' ', n);
	memcpy(cfg, "{\"os\":\"linux\",\"x\":\"", 19);
	memcpy(cfg + n - 3, "\"} ", 3);
	for (size_t i = 100; i < n - 100; i += 4099)
		cfg[i] = (char)('a' + i % 26);
	fake_sha(cfg, n, d);
	for (int spilled = 0; spilled < 2; spilled++) {
		fake_init(&F, &R, 5 * MiB);
		F.not_found_at = 2;
		u = new_upload(d, spilled ? 1024 : 16 * MiB, 0);
		CHECK(write_all(u, cfg, n, MiB) == 0);
		CHECK(F.n_initiate == 0);
		CHECK(upload_finish(u, d, &res) == 0);
		CHECK(res->kind == PUSH_BLOB && res->uploaded == 1);
		CHECK(F.n_initiate == 2 && F.n_complete == 1);
		check_parts(1, cfg, n);
		upload_free(u);
		fake_fini(&F);
	}
	free(cfg);
}

int main(void)
{
	int fd = mkstemp(log_path);
	CHECK(fd >= 0);
	close(fd);
	CHECK(log_init(LOG_TO_FILE, log_path, LOGL_INFO) == 0);
	test_lost_reply();
	test_mid_part();
	test_not_found();
	test_held_restart();
	test_complete_not_found();
	log_close();
	unlink(log_path);
	printf("push resume tests passed\n");
	return 0;
}
