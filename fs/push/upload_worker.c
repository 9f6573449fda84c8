/* The upload's worker: sends the bytes of the spill file (or of held JSON)
 * in parts, strictly in order, resumes after InvalidLayerPartException,
 * starts again after UploadNotFound and completes the upload. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/push/upload_i.h"
#include "net/log.h"

enum { W_SEND = 0, W_COMPLETE = 1 };

int upl_cancelled(void *arg)
{
	upload *u = arg;
	int s;

	pthread_mutex_lock(&u->mu);
	s = u->stop;
	pthread_mutex_unlock(&u->mu);
	return s;
}

/* Stops the worker and joins it (a part in flight finishes first). */
void upl_stop_worker(upload *u)
{
	int on;

	pthread_mutex_lock(&u->mu);
	u->stop = 1;
	on = u->worker_on;
	u->worker_on = 0;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	upload_pool_wake(u->pool);
	if (on)
		pthread_join(u->worker, NULL);
}

/* The upload id to use, or -ECANCELED once the upload is stopped. Only the
 * worker replaces the id, so the pointer stays valid for it. */
static int current_id(upload *u, char **id)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	*id = u->upload_id;
	rc = u->stop ? -ECANCELED : 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static int reinitiate(upload *u)
{
	char *nid = NULL;
	int64_t ps = 0;
	int rc = u->remote->ops->initiate(u->remote->ctx, &nid, &ps);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&u->mu);
	free(u->upload_id);
	u->upload_id = nid;
	u->acked = 0;
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* ECR lost the upload (UploadNotFound: expired, or gone): every byte is
 * still in the spill file (or held), so it starts again from byte 0. */
static int restart(upload *u, const char *when)
{
	if (++u->restarts > MAX_RESTARTS) {
		log_err("upload of %s to %s: ECR lost the upload (UploadNotFound) %s %d times; "
			"giving up; re-run the same cp: blobs already in ECR are skipped",
			u->name, u->remote->desc, when, u->restarts);
		return -EIO;
	}
	log_warn("upload of %s to %s: ECR lost the upload (UploadNotFound) %s; starting it again",
		 u->name, u->remote->desc, when);
	return reinitiate(u);
}

/* ECR has every byte below end. Spill room of bytes acknowledged for the
 * first time goes back to the pool. */
static void set_acked(upload *u, uint64_t end)
{
	uint64_t give = 0;

	pthread_mutex_lock(&u->mu);
	u->acked = end;
	if (end > u->acked_max) {
		give = end - u->acked_max;
		give = give > u->spill_acct ? u->spill_acct : give;
		u->spill_acct -= give;
		u->acked_max = end;
	}
	pthread_mutex_unlock(&u->mu);
	upload_pool_unspill(u->pool, give);
}

/* InvalidLayerPartException for the part [off, off+n); lv is ECR's
 * lastValidByteReceived (-1: ECR holds nothing or did not say: only the
 * first part may be sent again on that). Returns 0 (ECR has a new acked:
 * the part was stored and its reply lost, or ECR kept its start and the
 * rest goes out joined to the bytes that follow, as every part but the
 * last must be >= 5 MiB), -EAGAIN (none of it stored: send it again) or
 * -EIO. */
static int part_refused(upload *u, uint64_t off, size_t n, int64_t lv)
{
	uint64_t end = off + n;
	uint64_t next = lv >= 0 ? (uint64_t)lv + 1 : 0;

	if (lv >= 0 && next == end) {
		u->resumes = 0;
		set_acked(u, end);
		return 0;
	}
	if ((lv >= 0 || off == 0) && next >= off && next < end && ++u->resumes <= MAX_RESUMES) {
		if (next == off)
			return -EAGAIN;
		log_info("upload of %s: ECR kept bytes up to %llu of the part at %llu; the "
			 "rest goes with the next part", u->name, (unsigned long long)lv,
			 (unsigned long long)off);
		set_acked(u, next);
		return 0;
	}
	log_err("upload of %s to %s: ECR expects byte %lld, the part is bytes %llu-%llu; "
		"giving up",
		u->name, u->remote->desc, (long long)lv + 1, (unsigned long long)off,
		(unsigned long long)end - 1);
	return -EIO;
}

static int read_bytes(upload *u, uint64_t off, char *buf, size_t len);

/* A part's pool buffer, lent to the remote until its body is sent. */
struct part_lend {
	upload *u;
	char *buf;
	size_t cap;
	uint64_t off; /* the part's first byte */
	int back;     /* the buffer went back to the pool */
};

/* The body's last byte left: the buffer goes back to the pool while ECR
 * processes the part, so the next part can use it (as many parts in
 * flight as the budget holds bodies being built or sent, not awaited). */
static void part_release(void *arg)
{
	struct part_lend *l = arg;
	upload_pool_put(l->u->pool, l->buf, l->cap);
	l->back = 1;
}

/* A resend after the release: the part's bytes again, from the spill file. */
static int part_raw(void *arg, uint64_t off, char *dst, size_t n)
{
	struct part_lend *l = arg;
	return read_bytes(l->u, l->off + off, dst, n);
}

/* Sends bytes [off, off+n), the last n of buf's cap; 0 when ECR moved on
 * (acked updated, possibly back to 0 after a restart), or -errno. A remote
 * that builds the body in place rewrites buf once and resends that body
 * (or, once buf went back through l, encodes it again from the spill):
 * the id does not change within this loop (restart returns). */
static int send_part(upload *u, uint64_t off, struct part_lend *l, size_t n)
{
	const struct push_remote_ops *ops = u->remote->ops;
	struct ecr_part_built built = {.release = part_release, .raw = part_raw, .arg = l};
	char *buf = l->buf;
	size_t cap = l->cap;
	char *id;
	int rc;

	for (;;) {
		int64_t lv = -1;

		rc = current_id(u, &id);
		if (rc)
			break;
		if (ops->upload_part_in && ops->part_room)
			rc = ops->upload_part_in(u->remote->ctx, id, off, buf, cap, n, &built,
						 &lv);
		else
			rc = ops->upload_part(u->remote->ctx, id, off, buf + cap - n, n, &lv);
		if (rc == 0) {
			u->resumes = 0;
			set_acked(u, off + n);
			break;
		}
		if (rc == -ESTALE) {
			rc = restart(u, off ? "after its first part" : "at its first part");
			break;
		}
		if (rc != -ERANGE)
			break;
		rc = part_refused(u, off, n, lv);
		if (rc != -EAGAIN)
			break;
	}
	ecr_part_built_free(&built);
	return rc;
}

/* Bytes [off, off+len) of the blob: the spill file, or held JSON in
 * memory (which no longer changes once the worker runs on it). */
static int read_bytes(upload *u, uint64_t off, char *buf, size_t len)
{
	if (u->spill_fd < 0) {
		memcpy(buf, u->hold + off, len);
		return 0;
	}
	while (len > 0) {
		ssize_t k = pread(u->spill_fd, buf, len, (off_t)off);
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		buf += k;
		off += (uint64_t)k;
		len -= (size_t)k;
	}
	return 0;
}

/* The next step: W_SEND of *n bytes at *off (a whole part, or the rest once
 * final), W_COMPLETE, or -ECANCELED. Waits for the writer meanwhile. */
static int next_step(upload *u, uint64_t *off, size_t *n)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		uint64_t left = u->avail - u->acked;
		if (u->stop) {
			rc = -ECANCELED;
			break;
		}
		if (left >= u->part_size || (u->final && left > 0)) {
			*off = u->acked;
			*n = left > u->part_size ? u->part_size : (size_t)left;
			rc = W_SEND;
			break;
		}
		if (u->final) {
			rc = W_COMPLETE;
			break;
		}
		pthread_cond_wait(&u->cv, &u->mu);
	}
	pthread_mutex_unlock(&u->mu);
	return rc;
}

/* CompleteLayerUpload. Not found (-ENOENT): a retried call whose first try
 * completed the layer, an upload ECR lost (then 1: send it all again), or
 * a repository that is gone (-ENOENT). */
static int complete(upload *u)
{
	const char *d[1] = { u->digest };
	int avail = 0, rc;
	char *id;

	rc = current_id(u, &id);
	if (rc == 0)
		rc = u->remote->ops->complete(u->remote->ctx, id, u->digest);
	if (rc != -ENOENT)
		return rc;
	if (u->remote->ops->check_layers(u->remote->ctx, d, 1, &avail) < 0)
		return rc;
	if (avail)
		return 0; /* the first try completed it */
	rc = restart(u, "before CompleteLayerUpload");
	return rc < 0 ? rc : 1;
}

/* One part in a buffer of the pool: the bytes at its end, and room before
 * them for a remote that encodes the body in place. */
static int one_part(upload *u, uint64_t off, size_t n)
{
	const struct push_remote_ops *ops = u->remote->ops;
	size_t cap = ops->upload_part_in && ops->part_room ? ops->part_room(n) : n;
	struct part_lend l = {.u = u, .cap = cap, .off = off};
	int rc;

	l.buf = upload_pool_get(u->pool, cap, upl_cancelled, u);
	if (!l.buf)
		return upl_cancelled(u) ? -ECANCELED : -ENOMEM;
	upload_pool_part_begin(u->pool);
	rc = read_bytes(u, off, l.buf + cap - n, n);
	if (rc == 0)
		rc = send_part(u, off, &l, n);
	if (!l.back)
		upload_pool_put(u->pool, l.buf, cap);
	upload_pool_part_end(u->pool);
	return rc;
}

static int start(upload *u);

static void *worker_main(void *arg)
{
	upload *u = arg;
	uint64_t off = 0, give;
	size_t n = 0;
	int rc = u->need_start ? start(u) : 0;

	while (rc == 0) { /* start() gives 1 when the repository has the blob */
		rc = next_step(u, &off, &n);
		if (rc == W_SEND)
			rc = one_part(u, off, n);
		else if (rc == W_COMPLETE && (rc = complete(u)) == 0)
			break;
		if (rc < 0)
			break;
		rc = 0; /* a part sent, or complete() started the upload again */
	}
	if (rc > 0)
		rc = 0;
	pthread_mutex_lock(&u->mu);
	if (rc < 0 && rc != -ECANCELED)
		log_err("upload of %s failed at byte %llu: %s", u->name,
			(unsigned long long)u->acked, strerror(-rc));
	if (rc < 0 && !u->err)
		u->err = rc;
	u->done = 1;
	u->done_rc = rc;
	give = u->spill_acct; /* done either way: its spill room goes back */
	u->spill_acct = 0;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	upload_pool_unspill(u->pool, give);
	return NULL;
}

/* Starts the worker over what avail says is there (wmu held). */
int upl_start_worker(upload *u)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	rc = -pthread_create(&u->worker, NULL, worker_main, u);
	u->worker_on = rc == 0;
	u->started = rc == 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

/* InitiateLayerUpload and the part size. */
static int initiate(upload *u)
{
	int64_t ps = 0;
	char *id = NULL;
	int rc = u->remote->ops->initiate(u->remote->ctx, &id, &ps);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&u->mu);
	/* ECR advertises partSize; parts must stay within 5-10 MiB. */
	u->part_size = ps < UPLOAD_PART_MIN ? UPLOAD_PART_MIN
		       : ps > UPLOAD_PART_MAX ? UPLOAD_PART_MAX : (size_t)ps;
	u->upload_id = id;
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* The worker's first step for a layer: a blob the repository already has
 * (its name gave the digest) is not uploaded, else InitiateLayerUpload.
 * Here rather than in the writer's first write so that cp never waits for
 * these two round trips: it goes on writing into the spill file meanwhile.
 * Returns 1 when the repository has it. */
static int start(upload *u)
{
	if (u->known[0] && upl_remote_has(u, u->known)) {
		log_debug("%s: the repository has it, not uploading", u->name);
		pthread_mutex_lock(&u->mu);
		u->had = 1;
		pthread_mutex_unlock(&u->mu);
		return 1;
	}
	return initiate(u);
}

/* The first byte of a layer (wmu held): the worker starts with start(). */
int upl_start_stream(upload *u)
{
	int rc = upl_spill_open(u);

	if (rc == 0) {
		u->need_start = 1;
		rc = upl_start_worker(u);
	}
	if (rc == 0)
		u->mode = M_STREAM;
	return rc;
}

/* Held JSON that is a blob (a config): its bytes, already all there, go
 * through the layer upload (wmu held). */
int upl_start_held(upload *u, const char *digest)
{
	int rc = initiate(u);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&u->mu);
	u->avail = u->written;
	pthread_mutex_unlock(&u->mu);
	upl_set_final(u, digest);
	return upl_start_worker(u);
}

/* n bytes that end at u->written (already counted) go to the spill file
 * (wmu held); waits for spill room. */
int upl_stream_feed(upload *u, const char *data, size_t n)
{
	uint64_t off = u->written - n;
	uint64_t mine;
	size_t part;
	int rc, had;

	pthread_mutex_lock(&u->mu);
	mine = u->spill_acct;
	part = u->part_size ? u->part_size : UPLOAD_PART_MAX; /* before ECR said */
	had = u->had;
	pthread_mutex_unlock(&u->mu);
	if (had) {
		u->mode = M_SKIP; /* the worker found it in the repository: hash only */
		return 0;
	}
	rc = upload_pool_spill(u->pool, n, mine >= part, upl_cancelled, u);
	if (rc < 0)
		return upl_async_err(u) ?: rc;
	pthread_mutex_lock(&u->mu);
	u->spill_acct += n;
	pthread_mutex_unlock(&u->mu);
	rc = upl_spill_write(u, data, n, off);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&u->mu);
	u->avail = u->written;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* No more bytes: the worker sends the rest and completes as digest. */
void upl_set_final(upload *u, const char *digest)
{
	pthread_mutex_lock(&u->mu);
	u->final = 1;
	snprintf(u->digest, sizeof(u->digest), "%s", digest);
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

/* Waits for the worker's end; its result (0 when it never started). */
int upl_wait_done(upload *u)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	while (u->started && !u->done)
		pthread_cond_wait(&u->cv, &u->mu);
	rc = u->started ? u->done_rc : 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
}
