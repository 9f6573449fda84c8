/* Internals of fs/push/upload*.c. */
#ifndef ECRFS_UPLOAD_I_H
#define ECRFS_UPLOAD_I_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "fs/push/upload.h"
#include "fs/push/upload_pool.h"

#define HOLD_CAP_DEFAULT (4u * 1024 * 1024)
#define MAX_RESUMES 8  /* InvalidLayerPart resumes without a part acknowledged */
#define MAX_RESTARTS 2 /* UploadNotFound restarts of one upload */

enum mode {
	M_NEW = 0, /* no byte yet */
	M_HOLD,    /* JSON (or hold_only) kept until finish */
	M_STREAM,  /* bytes go to the spill file, the worker sends parts from it */
	M_SKIP,    /* the repository has the blob (the worker found it): hash only */
	M_FAILED,
};

struct upload {
	/* read-only after upload_new */
	struct push_remote *remote;
	char *spill_dir;
	size_t hold_cap;
	char known[72];
	int hold_only;
	int async;
	char name[256];
	struct upload_pool *pool;
	int own_pool; /* no pool given: a private one of one part */

	/* wmu serialises the writer side and protects: mode, fail_rc, sha,
	 * written, hold*, finished, finish_rc, res. spill_fd is set under it
	 * before the worker starts, then read-only. */
	pthread_mutex_t wmu;
	enum mode mode;
	int fail_rc;
	EVP_MD_CTX *sha;
	uint64_t written;
	char *hold;
	size_t hold_len;
	int spill_fd;
	int finished;
	int finish_rc;
	struct upload_result res;

	/* mu + cv: the hand-off between the writer and the worker; protect
	 * avail (bytes the worker may send: in the spill file, or in hold for
	 * held JSON), final (no more bytes: send the rest, then complete with
	 * digest), upload_id, acked (the next byte ECR expects; acked_max the highest), spill_acct
	 * (spilled bytes counted in the pool), err, stop, worker_on, started, done,
	 * done_rc, part_size, had. Only the worker changes upload_id, acked,
	 * part_size and had. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t avail;
	int final;
	char digest[72];
	char *upload_id;
	uint64_t acked;
	uint64_t acked_max;
	uint64_t spill_acct;
	int err;
	int stop;
	int worker_on;
	int started; /* the worker ran (done then comes) */
	int done;
	int done_rc;
	size_t part_size; /* ECR's, once InitiateLayerUpload answered */
	int had;	  /* the repository has known: nothing was uploaded */
	int need_start;	  /* the worker begins with the check and InitiateLayerUpload */
	pthread_t worker;
	int resumes, restarts; /* the worker's alone */
};

/* upload.c: the writer side (wmu held) */
int upl_fail(upload *u, int rc);
int upl_remote_has(upload *u, const char *digest);
int upl_async_err(upload *u);
int upl_spill_open(upload *u);
int upl_spill_write(upload *u, const void *data, size_t n, uint64_t off);

/* upload_worker.c: parts to ECR from the spill file (or held bytes) */
void upl_stop_worker(upload *u);
int upl_cancelled(void *arg);
int upl_start_stream(upload *u);
int upl_start_worker(upload *u);
int upl_start_held(upload *u, const char *digest);
int upl_stream_feed(upload *u, const char *data, size_t n);
void upl_set_final(upload *u, const char *digest);
int upl_wait_done(upload *u);

#endif
