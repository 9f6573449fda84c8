/* Streaming blob upload: see upload.h. The writer side: sequential
 * writes, zero-filled gaps, held JSON; the worker is in upload_worker.c,
 * the end in upload_finish.c. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/push/upload_i.h"
#include "net/log.h"

int upload_new(const struct upload_opts *o, upload **out)
{
	upload *u = calloc(1, sizeof(*u));
	const char *tmp = getenv("TMPDIR");

	if (!u)
		return -ENOMEM;
	u->remote = o->remote;
	u->spill_dir = strdup(o->spill_dir ? o->spill_dir : (tmp && *tmp ? tmp : "/tmp"));
	u->hold_cap = o->hold_cap ? o->hold_cap : HOLD_CAP_DEFAULT;
	if (o->digest)
		snprintf(u->known, sizeof(u->known), "%s", o->digest);
	u->hold_only = o->hold_only;
	snprintf(u->name, sizeof(u->name), "%s", o->name ? o->name : "blob");
	u->async = o->async;
	u->pool = o->pool;
	u->spill_fd = -1;
	u->sha = EVP_MD_CTX_new();
	if (!u->pool && upload_pool_new(1, 0, &u->pool) == 0)
		u->own_pool = 1; /* one part at a time */
	if (!u->spill_dir || !u->sha || !u->pool ||
	    EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(u->sha);
		if (u->own_pool)
			upload_pool_free(u->pool);
		free(u->spill_dir);
		free(u);
		return -ENOMEM;
	}
	pthread_mutex_init(&u->wmu, NULL);
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	*out = u;
	return 0;
}

void upload_free(upload *u)
{
	if (!u)
		return;
	upl_stop_worker(u);
	upload_pool_unspill(u->pool, u->spill_acct); /* what ECR never took */
	if (u->own_pool)
		upload_pool_free(u->pool);
	if (u->spill_fd >= 0)
		close(u->spill_fd);
	EVP_MD_CTX_free(u->sha);
	if (u->res.bytes != u->hold)
		free(u->res.bytes);
	free(u->hold);
	free(u->res.media_type);
	free(u->upload_id);
	free(u->spill_dir);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	pthread_mutex_destroy(&u->wmu);
	free(u);
}

/* ---- writer side (wmu held) ---- */

int upl_fail(upload *u, int rc)
{
	if (u->mode != M_FAILED) {
		u->mode = M_FAILED;
		u->fail_rc = rc;
		/* A failed upload never completes: its spilled bytes give their
		 * disk back now (a full disk must not stay full until the
		 * version is dropped). Truncated, not closed: the worker may
		 * still read it, and then fails too. */
		if (u->spill_fd >= 0 && ftruncate(u->spill_fd, 0) < 0)
			log_debug("%s: truncating the spill file: %s", u->name, strerror(errno));
	}
	return u->fail_rc;
}

/* 1 when the repository already has digest, 0 when not (or unknown). */
int upl_remote_has(upload *u, const char *digest)
{
	int avail = 0;
	const char *d[1] = { digest };

	if (!digest || !*digest)
		return 0;
	if (u->remote->ops->check_layers(u->remote->ctx, d, 1, &avail) < 0)
		return 0; /* not fatal: upload it */
	return avail == 1;
}

/* An unlinked file under spill_dir for bytes that do not stay in memory. */
int upl_spill_open(upload *u)
{
	char path[4096];

	if (u->spill_fd >= 0)
		return 0;
	snprintf(path, sizeof(path), "%s/ecrfs-push-XXXXXX", u->spill_dir);
	u->spill_fd = mkostemp(path, O_CLOEXEC);
	if (u->spill_fd < 0) {
		log_err("%s: cannot create a spill file in %s: %s", u->name, u->spill_dir,
			strerror(errno));
		return -errno;
	}
	unlink(path);
	return 0;
}

/* All n bytes at off in the spill file, or -errno: a short write goes on,
 * so a full disk answers ENOSPC (what the writer's write() then returns),
 * never a made-up EIO. */
int upl_spill_write(upload *u, const void *data, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t k = pwrite(u->spill_fd, data, n, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int rc = k < 0 ? -errno : -EIO;
			int full = rc == -ENOSPC || rc == -EDQUOT;
			log_err("%s: writing the spill file in %s: %s%s", u->name, u->spill_dir,
				strerror(-rc),
				full ? "; free space there (or mount with another cache_dir) and "
				       "re-run the same cp: blobs already in ECR are skipped"
				     : "");
			return rc;
		}
		data = (const char *)data + k;
		off += (uint64_t)k;
		n -= (size_t)k;
	}
	return 0;
}

static int hold_append(upload *u, const char *data, size_t n)
{
	int rc;

	if (u->spill_fd < 0 && u->hold_len + n <= u->hold_cap) {
		char *h = realloc(u->hold, u->hold_len + n + 1);
		if (!h)
			return -ENOMEM;
		u->hold = h;
		memcpy(h + u->hold_len, data, n);
		u->hold_len += n;
		h[u->hold_len] = '\0';
		return 0;
	}
	if (u->hold_only) {
		log_err("%s: larger than %zu bytes, refused", u->name, u->hold_cap);
		return -EFBIG;
	}
	if (u->spill_fd < 0) {
		/* Past the cap: move what we hold to an unlinked file. */
		rc = upl_spill_open(u);
		if (rc < 0)
			return rc;
		rc = upl_spill_write(u, u->hold, u->hold_len, 0);
		if (rc < 0)
			return rc;
		free(u->hold);
		u->hold = NULL;
	}
	return upl_spill_write(u, data, n, u->written - n);
}

/* Takes n bytes at the current end. */
static int feed(upload *u, const char *data, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if (u->mode == M_NEW) {
		if (u->hold_only || data[0] == '{') {
			u->mode = M_HOLD;
		} else {
			rc = upl_start_stream(u);
			if (rc < 0)
				return rc;
		}
	}
	if (EVP_DigestUpdate(u->sha, data, n) != 1)
		return -ENOMEM;
	u->written += n;
	switch (u->mode) {
	case M_HOLD:
		return hold_append(u, data, n);
	case M_STREAM:
		return upl_stream_feed(u, data, n);
	case M_SKIP:
		return 0;
	default:
		return -EIO;
	}
}

static int feed_zeros(upload *u, uint64_t n)
{
	static const char zeros[65536];
	int rc = 0;

	while (n > 0 && rc == 0) {
		size_t k = n > sizeof(zeros) ? sizeof(zeros) : (size_t)n;
		rc = feed(u, zeros, k);
		n -= k;
	}
	return rc;
}

int upl_async_err(upload *u)
{
	int rc;
	pthread_mutex_lock(&u->mu);
	rc = u->err;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static int writable(upload *u)
{
	int rc;
	if (u->mode == M_FAILED)
		return u->fail_rc;
	if (u->finished) {
		log_err("%s: written after it was finished", u->name);
		return -EIO;
	}
	rc = upl_async_err(u);
	return rc < 0 ? upl_fail(u, rc) : 0;
}

int upload_write(upload *u, const void *buf, size_t len, uint64_t off)
{
	int rc;

	pthread_mutex_lock(&u->wmu);
	rc = writable(u);
	if (rc < 0)
		goto out;
	if (off < u->written) {
		log_err("%s: write at %llu below %llu already taken (writes must be sequential)",
			u->name, (unsigned long long)off, (unsigned long long)u->written);
		rc = upl_fail(u, -EIO); /* the running hash cannot go back */
		goto out;
	}
	rc = feed_zeros(u, off - u->written);
	if (rc == 0)
		rc = feed(u, buf, len);
	if (rc < 0)
		rc = upl_fail(u, rc);
out:
	pthread_mutex_unlock(&u->wmu);
	return rc;
}

int upload_truncate(upload *u, uint64_t size)
{
	int rc;

	pthread_mutex_lock(&u->wmu);
	rc = writable(u);
	if (rc < 0)
		goto out;
	if (size < u->written) {
		log_err("%s: truncate to %llu below %llu already written", u->name,
			(unsigned long long)size, (unsigned long long)u->written);
		rc = upl_fail(u, -EIO);
		goto out;
	}
	rc = feed_zeros(u, size - u->written);
	if (rc < 0)
		rc = upl_fail(u, rc);
out:
	pthread_mutex_unlock(&u->wmu);
	return rc;
}

uint64_t upload_size(upload *u)
{
	uint64_t n;
	pthread_mutex_lock(&u->wmu);
	n = u->written;
	pthread_mutex_unlock(&u->wmu);
	return n;
}

void upload_progress(upload *u, uint64_t *written, uint64_t *acked)
{
	/* Not under wmu: a writer may hold it while waiting for spill room. */
	pthread_mutex_lock(&u->mu);
	*acked = u->acked;
	*written = u->avail > u->acked ? u->avail : u->acked;
	pthread_mutex_unlock(&u->mu);
}

int upload_sync(upload *u)
{
	int rc;

	pthread_mutex_lock(&u->wmu);
	if (u->mode == M_FAILED) {
		rc = u->fail_rc;
	} else if (u->finished) {
		rc = u->finish_rc;
	} else {
		rc = upl_async_err(u);
		if (rc < 0)
			rc = upl_fail(u, rc);
	}
	pthread_mutex_unlock(&u->wmu);
	return rc;
}

void upload_abort(upload *u)
{
	pthread_mutex_lock(&u->mu);
	u->stop = 1;
	if (!u->err)
		u->err = -ECANCELED;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	upload_pool_wake(u->pool); /* its worker or writer may wait there */
}
