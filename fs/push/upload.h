/* Streaming upload of one blob written sequentially through FUSE.
 *
 * Writes must be sequential; a forward gap (or a truncate up) is
 * zero-filled, a write below what was already accepted is -EIO (the running
 * SHA-256 cannot go back). A blob whose first byte is not '{' starts
 * uploading at once: its bytes go to an unlinked spill file under
 * spill_dir and the upload's worker thread asks whether the repository
 * already has it (when the name gives the digest: then nothing is sent),
 * calls InitiateLayerUpload and sends them in ECR's partSize clamped to
 * 5-10 MiB, strictly in order, one part in flight per blob. The writer never waits for ECR, only for spill room
 * (upload_pool.h), so a writer that moves on to the next file leaves the
 * worker sending and several blobs upload at once; memory is the pool's
 * part buffers, not a per-file amount. Since every byte stays in the spill
 * file until CompleteLayerUpload, InvalidLayerPartException resumes at
 * lastValidByteReceived+1 and UploadNotFound starts the upload again from
 * byte 0 (at most MAX_RESTARTS times). JSON is held (in memory up to
 * hold_cap, then in the spill file) until upload_finish() classifies it:
 * manifests and indexes are returned as bytes (for PutImage), anything
 * else goes through the layer upload. An error of the worker is returned
 * by the next write/truncate/sync/finish. upload_finish() checks the digest
 * before CompleteLayerUpload and is idempotent; with opts.async it returns
 * once the digest is checked and the worker completes the upload alone
 * (upload_wait() gives its outcome).
 *
 * Thread-safety: calls on one upload may come from any thread; they are
 * serialised inside (upload_i.h: wmu for the writer side, mu for the
 * hand-off to the worker), except upload_abort(), which never blocks on
 * them. The code: upload.c (writer side), upload_worker.c (the worker),
 * upload_finish.c (the end), upload_pool.c (what uploads share). */
#ifndef ECRFS_UPLOAD_H
#define ECRFS_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "fs/push/push_json.h"
#include "fs/push/push_remote.h"
#include "fs/push/upload_pool.h"

#define UPLOAD_PART_MIN (5u * 1024 * 1024)
#define UPLOAD_PART_MAX (10u * 1024 * 1024)

typedef struct upload upload;

struct upload_opts {
	struct push_remote *remote; /* borrowed; outlives the upload */
	const char *spill_dir;      /* NULL: $TMPDIR or /tmp */
	size_t hold_cap;            /* JSON kept in memory, 0: 4 MiB */
	const char *digest;         /* the file's digest name when known at create
	                               (skips blobs the repository has), else NULL */
	int hold_only;              /* oci-layout, index.json: keep the bytes (at most
	                               hold_cap, else -EFBIG), never upload */
	const char *name;           /* for log lines */
	/* Shared part buffers and spill cap; NULL: a private pool of one part. */
	struct upload_pool *pool;
	/* upload_finish returns once the digest is checked; the worker sends
	 * what is left and completes alone (upload_wait). */
	int async;
};

struct upload_result {
	char digest[72];     /* "sha256:<hex>" of what was written */
	uint64_t size;
	enum push_kind kind; /* PUSH_BLOB for layers, configs, hold_only files */
	char *media_type;    /* manifests and indexes */
	char *bytes;         /* manifests, indexes, hold_only: exact bytes, NUL-terminated */
	size_t len;
	int uploaded;        /* 1: CompleteLayerUpload ran; 0: not a layer or already there */
};

int upload_new(const struct upload_opts *o, upload **out);
void upload_free(upload *u); /* aborts unfinished work and joins the worker */

int upload_write(upload *u, const void *buf, size_t len, uint64_t off);
/* size >= current size zero-fills; smaller is -EIO (unless equal). */
int upload_truncate(upload *u, uint64_t size);
uint64_t upload_size(upload *u);
/* The upload's error so far, without waiting for ECR (the bytes are in the
 * spill file already). */
int upload_sync(upload *u);

/* Finishes under the final name: digest ("sha256:<hex>") must equal the
 * SHA-256 of the bytes (-EIO otherwise, nothing completed); NULL for
 * index.json and oci-layout (hold_only, or written under a temporary name):
 * their bytes are kept, never uploaded (-EINVAL unless held JSON). *res
 * (may be NULL) points into the upload and lives until upload_free.
 * Idempotent: later calls return the first result. */
int upload_finish(upload *u, const char *digest, const struct upload_result **res);

/* After an async upload_finish: waits until the worker completed the
 * upload (or failed); its errno. Otherwise upload_finish's result. */
int upload_wait(upload *u);
/* Like upload_wait without waiting: 1 while the worker still works. */
int upload_poll(upload *u, int *rc);

/* Stops the upload without completing it (the version was aborted). */
void upload_abort(upload *u);

/* Progress for summaries: bytes written and bytes acknowledged by ECR. */
void upload_progress(upload *u, uint64_t *written, uint64_t *acked);

#endif
