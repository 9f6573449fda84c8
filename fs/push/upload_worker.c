/* The upload's worker: sends the part in u->send, one at a time, resumes
 * after InvalidLayerPartException and restarts an upload ECR lost (moved
 * from upload.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/upload_i.h"
#include "net/log.h"

/* ---- the worker: sends the part in u->send, one at a time ---- */

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

static void set_send(upload *u, uint64_t off, size_t len)
{
	pthread_mutex_lock(&u->mu);
	u->send_off = off;
	u->send_len = len;
	pthread_mutex_unlock(&u->mu);
}

int upl_reinitiate(upload *u)
{
	char *nid = NULL;
	int64_t ps = 0;
	int rc = u->remote->ops->initiate(u->remote->ctx, &nid, &ps);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&u->mu);
	free(u->upload_id);
	u->upload_id = nid;
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* A new upload gets [0, end) again from u->reread, a part at a time through
 * the send buffer (the part in memory is re-read too). A short rest at the
 * end becomes the carry, as it may not be the file's last part. Returns 0
 * (ECR has [0, end)), 1 (carry) or -errno. */
int upl_replay(upload *u, uint64_t end)
{
	const struct push_remote_ops *ops = u->remote->ops;
	uint64_t pos = 0;
	char *id;
	int rc;

	while (pos < end) {
		size_t n = end - pos > u->part_size ? u->part_size : (size_t)(end - pos);
		int64_t lv = -1;

		rc = current_id(u, &id);
		if (rc)
			return rc;
		rc = u->reread(u->reread_arg, pos, u->send, n);
		if (rc < 0) {
			log_err("upload of %s to %s: cannot read bytes %llu-%llu again: %s", u->name,
				u->remote->desc, (unsigned long long)pos,
				(unsigned long long)(pos + n - 1), strerror(-rc));
			return rc;
		}
		if (pos + n == end && n < UPLOAD_PART_MIN) {
			set_send(u, pos, n);
			return 1;
		}
		rc = ops->upload_part(u->remote->ctx, id, pos, u->send, n, &lv);
		if (rc == 0) {
			pos += n;
			u->resumes = 0;
			continue;
		}
		if (rc == -ERANGE && lv >= 0 && (uint64_t)lv + 1 >= pos &&
		    (uint64_t)lv + 1 <= pos + n && ++u->resumes <= MAX_RESUMES) {
			pos = (uint64_t)lv + 1;
			continue;
		}
		if (rc == -ESTALE && ++u->restarts <= MAX_RESTARTS) {
			log_warn("upload of %s to %s: UploadNotFound again, starting it again",
				 u->name, u->remote->desc);
			rc = upl_reinitiate(u);
			if (rc < 0)
				return rc;
			pos = 0;
			continue;
		}
		return rc == -ERANGE || rc == -ESTALE ? -EIO : rc;
	}
	return 0;
}

/* ECR lost the upload (UploadNotFound: expired or gone). Returns -EAGAIN
 * when the part in memory is all there is to send again, else what
 * upl_replay() returns, or -EIO when the bytes sent before are gone. */
static int restart(upload *u)
{
	uint64_t end = u->send_off + u->send_len;
	int rc;

	if (u->send_off > 0 && !u->reread) {
		/* Bounded memory: earlier parts are not kept. */
		log_err("upload of %s to %s: ECR lost the upload (UploadNotFound) after %llu "
			"bytes, which are no longer held; re-run the same cp: blobs already in "
			"ECR are skipped",
			u->name, u->remote->desc, (unsigned long long)u->send_off);
		return -EIO;
	}
	if (++u->restarts > MAX_RESTARTS) {
		log_err("upload of %s to %s: ECR lost the upload (UploadNotFound) %d times; "
			"giving up; re-run the same cp: blobs already in ECR are skipped",
			u->name, u->remote->desc, u->restarts);
		return -EIO;
	}
	log_warn("upload of %s to %s: ECR lost the upload (UploadNotFound) after %llu bytes; "
		 "starting it again", u->name, u->remote->desc, (unsigned long long)u->send_off);
	rc = upl_reinitiate(u);
	if (rc < 0)
		return rc;
	return u->send_off == 0 ? -EAGAIN : upl_replay(u, end);
}

/* InvalidLayerPartException for the part in send; lv is ECR's
 * lastValidByteReceived (-1: ECR holds nothing or did not say: only the
 * first part may be sent again on that). Returns 0 (stored, its reply
 * lost), 1 (ECR kept its start: the rest is the carry), -EAGAIN (none of it
 * stored: send it again) or -EIO. */
static int part_refused(upload *u, int64_t lv)
{
	uint64_t end = u->send_off + u->send_len;
	uint64_t next = lv >= 0 ? (uint64_t)lv + 1 : 0;
	size_t done;

	if (lv >= 0 && next == end) {
		u->resumes = 0;
		return 0;
	}
	if ((lv >= 0 || u->send_off == 0) && next >= u->send_off && next < end &&
	    ++u->resumes <= MAX_RESUMES) {
		done = (size_t)(next - u->send_off);
		if (done == 0)
			return -EAGAIN;
		log_info("upload of %s: ECR kept bytes up to %llu of the part at %llu; the "
			 "rest goes with the next part", u->name, (unsigned long long)lv,
			 (unsigned long long)u->send_off);
		memmove(u->send, u->send + done, u->send_len - done);
		set_send(u, next, u->send_len - done);
		return 1;
	}
	log_err("upload of %s to %s: ECR expects byte %lld, the part is bytes %llu-%llu; "
		"giving up",
		u->name, u->remote->desc, (long long)lv + 1, (unsigned long long)u->send_off,
		(unsigned long long)end - 1);
	return -EIO;
}

/* Sends send[0..send_len) at send_off. Returns 0 when ECR has all of it,
 * 1 when ECR kept only its start (lastValidByteReceived inside the part):
 * send[0..send_len) at send_off is then the rest, the carry, which goes
 * out joined to the bytes that follow (every part but the last must be
 * >= 5 MiB, so the rest cannot go alone). Or -errno. */
static int send_part(upload *u)
{
	const struct push_remote_ops *ops = u->remote->ops;
	char *id;
	int rc;

	for (;;) {
		int64_t lv = -1;

		rc = current_id(u, &id);
		if (rc)
			return rc;
		rc = ops->upload_part(u->remote->ctx, id, u->send_off, u->send, u->send_len, &lv);
		if (rc == 0) {
			u->resumes = 0;
			return 0;
		}
		if (rc == -ESTALE)
			rc = restart(u);
		else if (rc == -ERANGE)
			rc = part_refused(u, lv);
		else
			return rc;
		if (rc != -EAGAIN)
			return rc;
	}
}

static void *worker_main(void *arg)
{
	upload *u = arg;
	int rc;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		while (!u->send_ready && !u->stop)
			pthread_cond_wait(&u->cv, &u->mu);
		if (u->stop)
			break;
		pthread_mutex_unlock(&u->mu);
		rc = send_part(u);
		pthread_mutex_lock(&u->mu);
		if (rc < 0) {
			if (rc != -ECANCELED)
				log_err("upload of %s failed at byte %llu: %s", u->name,
					(unsigned long long)u->send_off, strerror(-rc));
			u->err = rc;
			u->send_ready = 0;
			pthread_cond_broadcast(&u->cv);
			break;
		}
		u->carry = rc == 1;
		u->acked = u->carry ? u->send_off : u->send_off + u->send_len;
		u->send_ready = 0;
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

int upl_start_stream(upload *u)
{
	int rc;
	int64_t ps = 0;
	char *id = NULL;

	rc = u->remote->ops->initiate(u->remote->ctx, &id, &ps);
	if (rc < 0)
		return rc;
	/* ECR advertises partSize; parts must stay within 5-10 MiB. */
	u->part_size = ps < UPLOAD_PART_MIN ? UPLOAD_PART_MIN
		       : ps > UPLOAD_PART_MAX ? UPLOAD_PART_MAX : (size_t)ps;
	u->fill = malloc(u->part_size);
	if (!u->fill) {
		free(id);
		return -ENOMEM;
	}
	u->fill_len = 0;
	u->fill_off = 0;
	pthread_mutex_lock(&u->mu);
	u->upload_id = id;
	u->stop = 0;
	u->err = 0;
	rc = -pthread_create(&u->worker, NULL, worker_main, u);
	u->worker_on = rc == 0;
	pthread_mutex_unlock(&u->mu);
	if (rc == 0)
		u->mode = M_STREAM;
	return rc;
}

/* Hands the filled buffer to the worker (waiting for the part in flight).
 * A carry goes first, topped up from fill to a whole part: the rest of
 * fill moves to its start (once per carry; no third buffer). Nothing to
 * send (no carry, fill empty) is a no-op. */
static int hand_off(upload *u)
{
	int rc = 0;
	char *t;

	pthread_mutex_lock(&u->mu);
	while (u->send_ready && !u->err && !u->stop)
		pthread_cond_wait(&u->cv, &u->mu);
	if (u->err || u->stop) {
		rc = u->err ? u->err : -ECANCELED;
		goto out;
	}
	if (u->carry) {
		size_t k = u->part_size - u->send_len;
		if (k > u->fill_len)
			k = u->fill_len;
		memcpy(u->send + u->send_len, u->fill, k);
		memmove(u->fill, u->fill + k, u->fill_len - k);
		u->send_len += k;
		u->fill_off += k;
		u->fill_len -= k;
		u->carry = 0;
		u->send_ready = 1;
		pthread_cond_broadcast(&u->cv);
		goto out;
	}
	if (u->fill_len == 0)
		goto out;
	if (!u->send) {
		u->send = malloc(u->part_size);
		if (!u->send) {
			rc = -ENOMEM;
			goto out;
		}
	}
	t = u->send;
	u->send = u->fill;
	u->fill = t;
	u->send_off = u->fill_off;
	u->send_len = u->fill_len;
	u->send_ready = 1;
	u->fill_off += u->fill_len;
	u->fill_len = 0;
	pthread_cond_broadcast(&u->cv);
out:
	pthread_mutex_unlock(&u->mu);
	return rc;
}

int upl_stream_feed(upload *u, const char *data, size_t n)
{
	int rc;

	while (n > 0) {
		size_t k = u->part_size - u->fill_len;
		if (k > n)
			k = n;
		memcpy(u->fill + u->fill_len, data, k);
		u->fill_len += k;
		data += k;
		n -= k;
		if (u->fill_len == u->part_size) {
			rc = hand_off(u);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Waits until the worker has nothing in flight; returns its error. */
int upl_drain(upload *u)
{
	int rc;
	pthread_mutex_lock(&u->mu);
	while (u->send_ready && !u->err && !u->stop)
		pthread_cond_wait(&u->cv, &u->mu);
	rc = u->err ? u->err : u->stop ? -ECANCELED : 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static int carry_pending(upload *u)
{
	int c;
	pthread_mutex_lock(&u->mu);
	c = u->carry;
	pthread_mutex_unlock(&u->mu);
	return c;
}

/* Sends the rest and completes the layer upload. A part ECR kept only the
 * start of leaves a carry, so this loops until nothing is left. */
int upl_send_rest(upload *u)
{
	int rc;

	do {
		rc = hand_off(u); /* the last part may be short */
		if (rc == 0)
			rc = upl_drain(u);
	} while (rc == 0 && (u->fill_len > 0 || carry_pending(u)));
	return rc;
}
