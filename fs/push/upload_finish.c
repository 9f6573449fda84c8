/* The end of an upload: digest check, CompleteLayerUpload, held JSON
 * classified or uploaded (moved from upload.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/push/upload_i.h"
#include "net/digest.h"
#include "net/log.h"

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
	rc = upl_reinitiate(u);
	if (rc == 0)
		rc = upl_replay(u, u->written);
	if (rc == 1) {
		/* a short rest: the last part */
		pthread_mutex_lock(&u->mu);
		u->carry = 1;
		pthread_mutex_unlock(&u->mu);
		rc = upl_send_rest(u);
	}
	if (rc == 0)
		rc = u->remote->ops->complete(u->remote->ctx, u->upload_id, digest);
	return rc == -ENOENT ? -EIO : rc;
}

static int stream_complete(upload *u, const char *digest)
{
	int rc = upl_send_rest(u);

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

	if (upl_remote_has(u, digest))
		return 0;
	u->reread = held_reread; /* before the worker starts */
	u->reread_arg = u;
	rc = upl_start_stream(u);
	if (rc < 0)
		return rc;
	if (u->spill_fd < 0)
		return upl_stream_feed(u, u->hold, u->hold_len) ?: stream_complete(u, digest);
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	while (off < u->written && rc == 0) {
		ssize_t n = pread(u->spill_fd, buf, 1 << 20, (off_t)off);
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		rc = upl_stream_feed(u, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return rc ?: stream_complete(u, digest);
}

/* index.json, oci-layout (also written under a temporary name): their
 * held bytes are the result, never uploaded. */
static int finish_held_only(upload *u)
{
	if ((u->mode != M_HOLD && u->mode != M_NEW) || u->spill_fd >= 0) {
		log_err("%s: not a JSON document of at most %zu bytes", u->name, u->hold_cap);
		return -EINVAL;
	}
	u->res.bytes = u->hold ? u->hold : strdup("");
	u->res.len = u->hold_len;
	return u->res.bytes ? 0 : -ENOMEM;
}

/* A blob whose digest matched its name: completed by the mode it is in. */
static int finish_blob(upload *u, const char *digest)
{
	switch (u->mode) {
	case M_NEW:
		/* ECR refuses empty uploads (EmptyUpload): it must be there already. */
		if (upl_remote_has(u, digest))
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

static int finish_locked(upload *u, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc;

	if (u->mode == M_FAILED)
		return u->fail_rc;
	rc = upl_async_err(u);
	if (rc < 0)
		return rc;
	if (EVP_DigestFinal_ex(u->sha, md, &mdlen) != 1 || mdlen != 32)
		return -EIO;
	net_digest_of_md(md, u->res.digest);
	u->res.size = u->written;
	u->res.kind = PUSH_BLOB;
	if (u->hold_only || !digest)
		return finish_held_only(u);
	if (strcmp(digest, u->res.digest)) {
		log_err("%s: content has digest %s, not the one its name gives (%s); "
			"the push is aborted", u->name, u->res.digest, digest);
		return -EIO;
	}
	return finish_blob(u, digest);
}

int upload_finish(upload *u, const char *digest, const struct upload_result **res)
{
	int rc;

	pthread_mutex_lock(&u->wmu);
	if (!u->finished) {
		u->finished = 1;
		u->finish_rc = finish_locked(u, digest);
		if (u->finish_rc < 0 && u->mode != M_FAILED)
			upl_fail(u, u->finish_rc);
		pthread_mutex_unlock(&u->wmu);
		upl_stop_worker(u); /* nothing more to send either way */
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
