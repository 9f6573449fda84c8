/* The end of an upload: digest check, held JSON classified, the rest and
 * CompleteLayerUpload handed to the worker. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/upload_i.h"
#include "net/digest.h"
#include "net/log.h"

/* The rest of the bytes and CompleteLayerUpload are the worker's; an async
 * upload leaves them to it (upload_wait), else this waits. */
static int complete_by_worker(upload *u)
{
	int rc;

	if (u->async) {
		pthread_mutex_lock(&u->mu);
		u->res.uploaded = !u->had;
		pthread_mutex_unlock(&u->mu);
		return 0;
	}
	rc = upl_wait_done(u);
	pthread_mutex_lock(&u->mu);
	if (rc == 0 && !u->had) /* had: the repository had it, nothing was sent */
		u->res.uploaded = 1;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

/* Uploads held JSON that turned out not to be a manifest (a config). */
static int upload_held(upload *u, const char *digest)
{
	int rc;

	if (upl_remote_has(u, digest))
		return 0;
	rc = upl_start_held(u, digest);
	return rc < 0 ? rc : complete_by_worker(u);
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
		upl_set_final(u, digest);
		return complete_by_worker(u);
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
		if (u->finish_rc < 0 || !u->async) {
			pthread_mutex_unlock(&u->wmu);
			upl_stop_worker(u); /* nothing more to send */
			pthread_mutex_lock(&u->wmu);
		}
	}
	rc = u->finish_rc;
	if (res)
		*res = &u->res;
	pthread_mutex_unlock(&u->wmu);
	return rc;
}

int upload_wait(upload *u)
{
	int rc, fin;

	pthread_mutex_lock(&u->wmu);
	fin = u->finished;
	rc = u->mode == M_FAILED ? u->fail_rc : fin ? u->finish_rc : 0;
	pthread_mutex_unlock(&u->wmu);
	if (rc < 0 || !fin)
		return rc < 0 ? rc : upl_async_err(u);
	return upl_wait_done(u);
}

int upload_poll(upload *u, int *rc)
{
	int busy;

	pthread_mutex_lock(&u->mu);
	busy = u->started && !u->done;
	*rc = u->started && u->done ? u->done_rc : u->err;
	pthread_mutex_unlock(&u->mu);
	return busy;
}
