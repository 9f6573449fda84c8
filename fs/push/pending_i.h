/* Internals of fs/push/pending*.c. */
#ifndef ECRFS_PENDING_I_H
#define ECRFS_PENDING_I_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "fs/push/pending.h"
#include "fs/push/upload.h"

enum fstate { F_WRITING = 0, F_FINAL, F_FAILED };

struct pending_file {
	pending_version *v;
	/* v->mu protects: name, state, rc, gen, open, refs, listed. */
	char *name;
	enum fstate state;
	int rc;
	unsigned gen;
	int open;
	int refs;
	int listed; /* in v->files */
	upload *up; /* NULL for a reference */
	int by_ref;   /* copied by reference (pending_ref): no bytes written */
	int finished; /* finish_file ran: later flushes return outcome */
	long writer;  /* the process that created it, 0: unknown (immutable) */
	int discard;  /* created after the commit by its writer: hashed, dropped */
	int outcome;
	/* final results (v->mu): */
	char digest[72];
	uint64_t size;
	enum push_kind kind;
	char *media_type; /* manifests and indexes */
	char *bytes;      /* manifests, indexes, index.json, oci-layout */
	size_t len;
	uint64_t id;
};

struct pending_version {
	pending *p;
	char *registry; /* may be NULL: the caller's */
	char *region;
	char *repo;
	char *tag;
	struct push_remote *remote; /* borrowed */
	struct pending_version *next; /* p->mu */

	/* mu protects everything below, and the files' fields. A thread that
	 * changes the version takes it with pend_vlock(), which also waits while
	 * `busy`: network calls of an evaluation or commit run without mu
	 * (pend_net_begin/pend_net_end), so LOOKUP, GETATTR and summaries (plain lock,
	 * read-only) never wait for ECR, while changes still wait their turn. */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* busy dropped to 0 */
	int busy;
	enum pending_state state;
	int rc;
	unsigned gen;
	pending_file **files;
	size_t nfiles;
	int repo_ready;
	int open_files;
	time_t last_activity;
	char committed[72];
	int via_repo;  /* the last evaluation counted blobs the writer has not written */
	int dropped;   /* EMPTY because the push was dropped (timeout, rm -r): sync says so */
	char *missing; /* what the last evaluation lacked, for summaries */
	/* Set when index.json named another image than an immutable tag's
	 * (EEXIST at its close): until an index.json passes or the push is
	 * dropped, later creates by that writer (the process that wrote
	 * index.json) fail with EEXIST too, so it stops uploading an image that
	 * cannot be tagged. Other writers start their own push. */
	char refused[72];
	long refused_writer; /* the refusal ends after REFUSAL_S idle seconds */
	/* The writer one of whose files failed the version (a write, a copy by
	 * reference, a finish; 0: unknown). Its later creates of names the
	 * version does not have yet (the rest of that cp) join the failed
	 * version, whose errno their closes and sync TAGDIR keep answering;
	 * any other create (another process: the re-run) starts a new one. */
	long failed_writer;
	/* The writer whose close or rename ran the commit (0: unknown). Its
	 * later creates (blobs of other refs in its layout) are hashed and
	 * dropped, not uploaded, until a new version starts. */
	long commit_writer;
	char **avail;  /* digests the repository was seen to have */
	size_t navail;
	/* Files no longer listed (a new version, a replaced name) whose blob
	 * upload still runs after their close: kept (one reference each) until
	 * it ends, so a failed push's verified blobs still reach ECR and a
	 * re-run counts or waits for them instead of sending them again. */
	pending_file **drain;
	size_t ndrain;
};

#define REFUSAL_S 30

struct pending {
	struct pending_opts o;
	char *spill_dir;
	struct upload_pool *pool; /* shared by every upload (own locks) */
	pthread_mutex_t mu; /* protects versions (taken before any version's mu) */
	uint64_t next_id;   /* atomic */
	pending_version *versions;
};

/* pending.c: the table of versions and a version's life */
void pend_vlock(pending_version *v);
void pend_net_begin(pending_version *v);
void pend_net_end(pending_version *v);
void pend_file_free(pending_file *f);
void pend_file_unref_locked(pending_file *f);
void pend_unlist_locked(pending_version *v, size_t i);
void pend_avail_clear(pending_version *v);
void pend_digest_of_name(const char *rel, char *buf, size_t n);
pending_file *pend_find_locked(pending_version *v, const char *rel, size_t *idx);
pending_file *pend_find_digest_locked(pending_version *v, const char *digest);
pending_file *pend_drain_find_locked(pending_version *v, const char *digest);
int pend_drain_wait_locked(pending_version *v, const char *rel);
int pend_ensure_repo_locked(pending_version *v);
void pend_new_version_locked(pending_version *v, int keep_current_gen);
void pend_fail_version_locked(pending_version *v, int rc);

/* pending_commit.c: evaluation and commit */
int pend_evaluate_locked(pending_version *v, int *committed);
int pend_immutable_check_locked(pending_version *v, pending_file *index);
void pend_notify(pending_version *v, int did, int rc);

#endif
