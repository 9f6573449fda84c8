/* Internals of fs/push/upload*.c (moved from upload.c). */
#ifndef ECRFS_UPLOAD_I_H
#define ECRFS_UPLOAD_I_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "fs/push/upload.h"

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

/* upload.c: the writer side (wmu held) */
int upl_fail(upload *u, int rc);
int upl_remote_has(upload *u, const char *digest);
int upl_async_err(upload *u);

/* upload_worker.c: parts to ECR, one in flight */
void upl_stop_worker(upload *u);
int upl_reinitiate(upload *u);
int upl_replay(upload *u, uint64_t end);
int upl_start_stream(upload *u);
int upl_stream_feed(upload *u, const char *data, size_t n);
int upl_drain(upload *u);
int upl_send_rest(upload *u);

#endif
