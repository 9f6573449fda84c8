/* Helpers of the uploader's unit tests (test_push_upload.c,
 * test_push_resume.c): the fake ECR, uploads, writes and checks. */
#ifndef TEST_PUSH_UPLOAD_UTIL_H
#define TEST_PUSH_UPLOAD_UTIL_H

#include "push_fake.h"

#include <unistd.h>

#include "fs/push/upload.h"
#include "fs/push/upload_pool.h"
#include "net/log.h"

#define MiB (1024 * 1024)

static char log_path[] = "/tmp/test_push_upload_log_XXXXXX"; /* log_has reads it */

static struct fake F;
static struct push_remote R;

static inline upload *new_upload(const char *digest, size_t hold_cap, int hold_only)
{
	struct upload_opts o = { .remote = &R, .digest = digest, .hold_cap = hold_cap,
				 .hold_only = hold_only, .name = "test" };
	upload *u = NULL;
	CHECK(upload_new(&o, &u) == 0);
	return u;
}

/* Writes buf in pieces of step bytes (FUSE's max_write is 1 MiB). */
static inline int write_all(upload *u, const char *buf, size_t n, size_t step)
{
	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step;
		int rc = upload_write(u, buf + off, k, off);
		if (rc)
			return rc;
	}
	return 0;
}
/* Every part of upload i but its last holds >= 5 MiB and at most partSize;
 * the upload holds exactly b[0..n) and was completed. */
static inline void check_parts(int i, const char *b, size_t n)
{
	struct fake_upload *fu = &F.up[i];
	size_t sum = 0;

	CHECK(fu->done && fu->len == n && !memcmp(fu->data, b, n));
	for (int k = 0; k < fu->parts; k++) {
		if (k < fu->parts - 1)
			CHECK(fu->part_len[k] >= 5 * MiB);
		CHECK(fu->part_len[k] <= 10 * MiB);
		sum += fu->part_len[k];
	}
	CHECK(sum == n && fu->small_part != 2);
}

static inline int log_has(const char *needle)
{
	char buf[65536];
	FILE *f = fopen(log_path, "r");
	size_t n;
	CHECK(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return strstr(buf, needle) != NULL;
}

#endif
