/* Streaming blob upload: see upload.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs/push/upload.h"
#include "net/log.h"

#define HOLD_CAP_DEFAULT (4u * 1024 * 1024)
#define MAX_RESUMES 8  /* InvalidLayerPart resumes without a part acknowledged */
#define MAX_RESTARTS 2 /* UploadNotFound restarts of one upload */

enum mode {
	M_NEW = 0, /* no byte yet */
	M_HOLD,    /* JSON (or hold_only) kept until finish */
	M_STREAM,  /* parts flowing to ECR */
	M_SKIP,    /* the repository has the blob: hash only */
	M_FAILED,
};

struct upload {
	/* read-only after upload_new */
	struct push_remote *remote;
	char *spill_dir;
	size_t hold_cap;
	char known[72];
	int hold_only;
	char name[256];
	/* set before the worker starts, then read-only */
	int (*reread)(void *arg, uint64_t off, void *buf, size_t len);
	void *reread_arg;

	/* wmu serialises the writer side and protects: mode, fail_rc, sha,
	 * written, hold*, spill_fd, fill*, part_size, finished, finish_rc, res. */
	pthread_mutex_t wmu;
	enum mode mode;
	int fail_rc;
	EVP_MD_CTX *sha;
	uint64_t written;
	char *hold;
	size_t hold_len;
	int spill_fd;
	char *fill;
	size_t fill_len;
	uint64_t fill_off;
	size_t part_size;
	int finished;
	int finish_rc;
	struct upload_result res;

	/* mu + cv hand parts to the worker and protect: send, send_len,
	 * send_off, send_ready, carry, upload_id, acked, err, stop, worker_on.
	 * While send_ready is set the worker alone uses send and may move
	 * send_off/send_len (a part ECR kept only the start of). carry: send
	 * holds bytes at send_off that ECR does not have yet and that are not
	 * in flight; the next hand_off sends them first, joined to fill. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *send;
	size_t send_len;
	uint64_t send_off;
	int send_ready;
	int carry;
	char *upload_id;
	uint64_t acked;
	int err;
	int stop;
	int worker_on;
	pthread_t worker;
	int resumes, restarts; /* the worker's alone (or finish's, the worker idle) */
};

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
	u->reread = o->reread;
	u->reread_arg = o->reread_arg;
	u->spill_fd = -1;
	u->sha = EVP_MD_CTX_new();
	if (!u->spill_dir || !u->sha || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(u->sha);
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

static void stop_worker(upload *u)
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

void upload_free(upload *u)
{
	if (!u)
		return;
	stop_worker(u);
	if (u->spill_fd >= 0)
		close(u->spill_fd);
	EVP_MD_CTX_free(u->sha);
	if (u->res.bytes != u->hold)
		free(u->res.bytes);
	free(u->hold);
	free(u->res.media_type);
	free(u->fill);
	free(u->send);
	free(u->upload_id);
	free(u->spill_dir);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	pthread_mutex_destroy(&u->wmu);
	free(u);
}

/* ---- the worker: sends the part in u->send, one at a time ---- */

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
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* A new upload gets [0, end) again from u->reread, a part at a time through
 * the send buffer (the part in memory is re-read too). A short rest at the
 * end becomes the carry, as it may not be the file's last part. Returns 0
 * (ECR has [0, end)), 1 (carry) or -errno. */
static int replay(upload *u, uint64_t end)
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
			rc = reinitiate(u);
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
 * replay() returns, or -EIO when the bytes sent before are gone. */
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
	rc = reinitiate(u);
	if (rc < 0)
		return rc;
	return u->send_off == 0 ? -EAGAIN : replay(u, end);
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
		uint64_t end = u->send_off + u->send_len, next;
		int64_t lv = -1;

		rc = current_id(u, &id);
		if (rc)
			return rc;
		rc = ops->upload_part(u->remote->ctx, id, u->send_off, u->send, u->send_len, &lv);
		if (rc == 0) {
			u->resumes = 0;
			return 0;
		}
		if (rc == -ESTALE) {
			rc = restart(u);
			if (rc == -EAGAIN)
				continue;
			return rc;
		}
		if (rc != -ERANGE)
			return rc;
		/* lv -1: ECR holds nothing (or did not say): only the first
		 * part may be sent again on that */
		next = lv >= 0 ? (uint64_t)lv + 1 : 0;
		if (lv >= 0 && next == end) {
			/* stored, its reply lost */
			u->resumes = 0;
			return 0;
		}
		if ((lv >= 0 || u->send_off == 0) && next >= u->send_off && next < end &&
		    ++u->resumes <= MAX_RESUMES) {
			size_t done = (size_t)(next - u->send_off);
			if (done == 0)
				continue; /* none of it stored: again */
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

/* ---- writer side (wmu held) ---- */

static int fail(upload *u, int rc)
{
	if (u->mode != M_FAILED) {
		u->mode = M_FAILED;
		u->fail_rc = rc;
	}
	return u->fail_rc;
}

static int start_stream(upload *u)
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

/* 1 when the repository already has digest, 0 when not (or unknown). */
static int remote_has(upload *u, const char *digest)
{
	int avail = 0;
	const char *d[1] = { digest };

	if (!digest || !*digest)
		return 0;
	if (u->remote->ops->check_layers(u->remote->ctx, d, 1, &avail) < 0)
		return 0; /* not fatal: upload it */
	return avail == 1;
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

static int stream_feed(upload *u, const char *data, size_t n)
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

static int hold_append(upload *u, const char *data, size_t n)
{
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
		char path[4096];
		snprintf(path, sizeof(path), "%s/ecrfs-push-XXXXXX", u->spill_dir);
		u->spill_fd = mkostemp(path, O_CLOEXEC);
		if (u->spill_fd < 0)
			return -errno;
		unlink(path);
		if (pwrite(u->spill_fd, u->hold, u->hold_len, 0) != (ssize_t)u->hold_len)
			return -EIO;
		free(u->hold);
		u->hold = NULL;
	}
	if (pwrite(u->spill_fd, data, n, (off_t)(u->written - n)) != (ssize_t)n)
		return errno ? -errno : -EIO;
	return 0;
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
		} else if (u->known[0] && remote_has(u, u->known)) {
			log_debug("%s: the repository has it, not uploading", u->name);
			u->mode = M_SKIP;
		} else {
			rc = start_stream(u);
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
		return stream_feed(u, data, n);
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

static int async_err(upload *u)
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
	rc = async_err(u);
	return rc < 0 ? fail(u, rc) : 0;
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
		rc = fail(u, -EIO); /* the running hash cannot go back */
		goto out;
	}
	rc = feed_zeros(u, off - u->written);
	if (rc == 0)
		rc = feed(u, buf, len);
	if (rc < 0)
		rc = fail(u, rc);
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
		rc = fail(u, -EIO);
		goto out;
	}
	rc = feed_zeros(u, size - u->written);
	if (rc < 0)
		rc = fail(u, rc);
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
	/* Not under wmu: a writer may hold it while waiting on the network. */
	pthread_mutex_lock(&u->mu);
	*acked = u->acked;
	*written = u->fill_off > u->acked ? u->fill_off : u->acked;
	pthread_mutex_unlock(&u->mu);
}

/* Waits until the worker has nothing in flight; returns its error. */
static int drain(upload *u)
{
	int rc;
	pthread_mutex_lock(&u->mu);
	while (u->send_ready && !u->err && !u->stop)
		pthread_cond_wait(&u->cv, &u->mu);
	rc = u->err ? u->err : u->stop ? -ECANCELED : 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
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
		rc = u->mode == M_STREAM ? drain(u) : 0;
		if (rc < 0)
			rc = fail(u, rc);
	}
	pthread_mutex_unlock(&u->wmu);
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
static int send_rest(upload *u)
{
	int rc;

	do {
		rc = hand_off(u); /* the last part may be short */
		if (rc == 0)
			rc = drain(u);
	} while (rc == 0 && (u->fill_len > 0 || carry_pending(u)));
	return rc;
}

/* CompleteLayerUpload answered not found (-ENOENT): a retried call whose
 * first try completed the layer (the upload is consumed), an upload ECR
 * lost (expired), or a repository that is gone. The worker is idle here,
 * so this thread may use the send buffer and the worker's counters. */
static int complete_not_found(upload *u, const char *digest, int rc)
{
	const char *d[1] = { digest };
	int avail = 0;

	if (u->remote->ops->check_layers(u->remote->ctx, d, 1, &avail) < 0)
		return rc; /* the repository itself: keep ENOENT */
	if (avail)
		return 0; /* the first try completed it */
	if (!u->reread || ++u->restarts > MAX_RESTARTS) {
		log_err("upload of %s to %s: ECR lost the upload (UploadNotFound) before "
			"CompleteLayerUpload; its bytes are no longer held; re-run the same cp: "
			"blobs already in ECR are skipped", u->name, u->remote->desc);
		return -EIO;
	}
	log_warn("upload of %s to %s: ECR lost the upload (UploadNotFound) before "
		 "CompleteLayerUpload; starting it again", u->name, u->remote->desc);
	rc = reinitiate(u);
	if (rc == 0)
		rc = replay(u, u->written);
	if (rc == 1) {
		/* a short rest: the last part */
		pthread_mutex_lock(&u->mu);
		u->carry = 1;
		pthread_mutex_unlock(&u->mu);
		rc = send_rest(u);
	}
	if (rc == 0)
		rc = u->remote->ops->complete(u->remote->ctx, u->upload_id, digest);
	return rc == -ENOENT ? -EIO : rc;
}

static int stream_complete(upload *u, const char *digest)
{
	int rc = send_rest(u);

	if (rc == 0)
		rc = u->remote->ops->complete(u->remote->ctx, u->upload_id, digest);
	if (rc == -ENOENT)
		rc = complete_not_found(u, digest, rc);
	if (rc == 0)
		u->res.uploaded = 1;
	return rc;
}

/* Held bytes, again, for a restarted upload: from memory or the spill file
 * (neither changes once upload_held runs: the writer is in finish). */
static int held_reread(void *arg, uint64_t off, void *buf, size_t len)
{
	upload *u = arg;

	if (off > u->written || len > u->written - off)
		return -EIO;
	if (u->spill_fd < 0) {
		memcpy(buf, u->hold + off, len);
		return 0;
	}
	while (len > 0) {
		ssize_t n = pread(u->spill_fd, buf, len, (off_t)off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (char *)buf + n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Uploads held JSON that turned out not to be a manifest (a config). */
static int upload_held(upload *u, const char *digest)
{
	int rc;
	uint64_t off = 0;
	char *buf = NULL;

	if (remote_has(u, digest))
		return 0;
	u->reread = held_reread; /* before the worker starts */
	u->reread_arg = u;
	rc = start_stream(u);
	if (rc < 0)
		return rc;
	if (u->spill_fd < 0)
		return stream_feed(u, u->hold, u->hold_len) ?: stream_complete(u, digest);
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	while (off < u->written && rc == 0) {
		ssize_t n = pread(u->spill_fd, buf, 1 << 20, (off_t)off);
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		rc = stream_feed(u, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return rc ?: stream_complete(u, digest);
}

static int finish_locked(upload *u, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc;

	if (u->mode == M_FAILED)
		return u->fail_rc;
	rc = async_err(u);
	if (rc < 0)
		return rc;
	if (EVP_DigestFinal_ex(u->sha, md, &mdlen) != 1 || mdlen != 32)
		return -EIO;
	strcpy(u->res.digest, "sha256:");
	for (unsigned i = 0; i < 32; i++)
		sprintf(u->res.digest + 7 + 2 * i, "%02x", md[i]);
	u->res.size = u->written;
	u->res.kind = PUSH_BLOB;
	if (u->hold_only || !digest) {
		/* index.json, oci-layout (also written under a temporary name) */
		if ((u->mode != M_HOLD && u->mode != M_NEW) || u->spill_fd >= 0) {
			log_err("%s: not a JSON document of at most %zu bytes", u->name, u->hold_cap);
			return -EINVAL;
		}
		u->res.bytes = u->hold ? u->hold : strdup("");
		u->res.len = u->hold_len;
		return u->res.bytes ? 0 : -ENOMEM;
	}
	if (strcmp(digest, u->res.digest)) {
		log_err("%s: content has digest %s, not the one its name gives (%s); "
			"the push is aborted", u->name, u->res.digest, digest);
		return -EIO;
	}
	switch (u->mode) {
	case M_NEW:
		/* ECR refuses empty uploads (EmptyUpload): it must be there already. */
		if (remote_has(u, digest))
			return 0;
		log_err("%s: empty blob the repository does not have; ECR cannot upload it",
			u->name);
		return -EIO;
	case M_SKIP:
		return 0;
	case M_STREAM:
		return stream_complete(u, digest);
	case M_HOLD:
		if (u->spill_fd < 0) {
			u->res.kind = push_json_classify(u->hold, u->hold_len, &u->res.media_type);
			if (u->res.kind != PUSH_BLOB) {
				u->res.bytes = u->hold;
				u->res.len = u->hold_len;
				return 0; /* goes to PutImage, never a layer */
			}
		}
		return upload_held(u, digest);
	default:
		return -EIO;
	}
}

int upload_finish(upload *u, const char *digest, const struct upload_result **res)
{
	int rc;

	pthread_mutex_lock(&u->wmu);
	if (!u->finished) {
		u->finished = 1;
		u->finish_rc = finish_locked(u, digest);
		if (u->finish_rc < 0 && u->mode != M_FAILED)
			fail(u, u->finish_rc);
		pthread_mutex_unlock(&u->wmu);
		stop_worker(u); /* nothing more to send either way */
		pthread_mutex_lock(&u->wmu);
		if (u->fill) {
			free(u->fill);
			u->fill = NULL;
		}
	}
	rc = u->finish_rc;
	if (res)
		*res = &u->res;
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
}
