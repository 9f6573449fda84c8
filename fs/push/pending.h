/* Pending pushes: one record per tag directory written through this mount,
 * holding its latest version. How a push flows through fs/push/ is in
 * doc/ARCHITECTURE.md ("How a push flows").
 *
 * A version collects the files written into the tag directory (name ->
 * upload and state). Names are relative to the tag root: "oci-layout",
 * "index.json", "blobs/sha256/<hex>" are layout names; anything else is a
 * temporary name (skopeo's oci-put-blob*, rsync's .name.XXXXXX) that becomes
 * a layout name by pending_rename. A file is final at its flush (layout
 * name) or at that rename. Each finish re-evaluates the version; when
 * oci-layout, index.json, the selected manifest (or index) and every blob it
 * reaches are present and final, the commit runs in that call (PutImage of
 * child manifests by digest, then the top one with the tag) and its errno is
 * that call's return value.
 *
 * Lifetimes: versions live until pending_free (a dropped or committed
 * version is reset, not freed), so a pending_version pointer stays valid for
 * the mount. pending_file handles are reference counted: pending_create and
 * pending_file_get take a reference, pending_file_put drops it.
 *
 * Locking (lock order: pending.mu, then a version's mu, then an upload's
 * own locks):
 * - pending.mu protects the table of versions (the list and each version's
 *   next). pending_repo_deleted, pending_sweep, pending_trim_idle,
 *   pending_counts and pending_summary_json hold it while they take each
 *   version's mu; pending_trim_idle calls keep() under it alone. File ids
 *   come from an atomic counter, not under it.
 * - A version's mu protects the version's state, its file list and every
 *   field of its files (name, state, refs, open count, results). It is not
 *   held over the network: an evaluation, the commit and
 *   CreateRepository raise the version's busy count and let go of mu for
 *   each ECR call (BatchCheckLayerAvailability, PutImage, ...). The calls
 *   that change what an evaluation reads (begin, create, finish, rename,
 *   unlink, copy by reference, status, drop, a write's failure, which fails
 *   the version) take mu through pend_vlock, which waits until busy is 0,
 *   so they run one at a time. The others take mu alone and never wait for
 *   ECR: reads (state, stat, list, summaries), open and reference counts,
 *   pending_repo_deleted.
 *   pending_sweep and pending_trim_idle skip a busy version.
 * - Blob uploads run outside the version's mu: writes, upload_finish and
 *   the copy of pending_ref take no pending lock while they talk to ECR.
 *   A layer's close only checks its digest; its worker sends the last
 *   parts and CompleteLayerUpload afterwards, and the commit waits for the
 *   uploads of the blobs it names (upload_wait, busy raised, mu let go), so
 *   an upload that fails after its close fails the commit (or the next
 *   evaluation, e.g. sync TAGDIR). Under mu only upload_abort, upload_progress
 *   (neither waits on the network) and upload_free (when the last
 *   reference goes; it joins the upload's worker) are called. */
#ifndef ECRFS_PENDING_H
#define ECRFS_PENDING_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "fs/push/push_json.h"
#include "fs/push/push_remote.h"

typedef struct pending pending;
typedef struct pending_version pending_version;
typedef struct pending_file pending_file;

struct pending_opts {
	int timeout_s;        /* drop a version with no open file for this long, 0: 600 */
	const char *spill_dir;/* for JSON beyond hold_cap; NULL: $TMPDIR or /tmp */
	size_t hold_cap;      /* 0: 4 MiB */
	int no_create_repos;  /* never CreateRepository: a missing repository is ENOENT */
	size_t part_bytes;    /* part buffers of all uploads at once, 0: 41 MiB */
	uint64_t spill_bytes; /* spilled bytes ECR has not taken yet, 0: 2 GiB */
	/* Called (without locks) after a commit attempt, e.g. to invalidate the
	 * kernel's entries; may be NULL. */
	void (*on_commit)(void *arg, pending_version *v, int rc);
	void *on_commit_arg;
	/* Called (without locks) after each manifest or index ECR accepted by
	 * PutImage, with its bytes, so the mount knows them without asking
	 * (BatchGetImage); may be NULL. */
	void (*on_put)(void *arg, const char *digest, const char *media_type, const char *bytes,
		       size_t len);
	void *on_put_arg;
};

int pending_new(const struct pending_opts *o, pending **out);
void pending_free(pending *p);

/* The record of tag directory (registry, region, repo, tag); created when
 * missing. remote is borrowed and must outlive p (one per repository). */
int pending_version_get(pending *p, const char *registry, const char *region, const char *repo,
			const char *tag, struct push_remote *remote, pending_version **out);
/* The repository was deleted: the next write to any of its tags creates it
 * again (and asks again which blobs it holds). */
void pending_repo_deleted(pending *p, const char *registry, const char *region,
			  const char *repo);
/* Existing record or NULL. */
pending_version *pending_version_find(pending *p, const char *registry, const char *region,
				      const char *repo, const char *tag);

enum pending_state { PV_EMPTY = 0, PV_PENDING, PV_COMMITTED, PV_FAILED };
enum pending_state pending_version_state(pending_version *v);
const char *pending_version_tag(pending_version *v);

/* The directory becomes a tag (first layout file or blobs/ dir): makes sure
 * the repository exists (CreateRepository unless no_create_repos) and starts
 * a version if none is pending. */
int pending_begin(pending_version *v);

/* 1 for "oci-layout", "index.json", "blobs/sha256/<64 hex>". */
int pending_is_layout_name(const char *rel);

/* Creates (or truncates: replaces) file rel in the version; starts a new
 * version after a commit or failure (see pending_file.c). *out holds a
 * reference and counts as one open handle. */
int pending_create(pending_version *v, const char *rel, pending_file **out);
/* The same, knowing the writer (a process id; 0: unknown): after an
 * immutable tag refused a writer's index.json, its later creates fail with
 * EEXIST. */
int pending_create_as(pending_version *v, const char *rel, long writer, pending_file **out);

int pending_write(pending_file *f, const void *buf, size_t len, uint64_t off);
int pending_truncate(pending_file *f, uint64_t size);
/* FLUSH: finishes a layout-named file and evaluates (maybe commits);
 * for a temporary name returns the upload's pending error. Idempotent. */
int pending_flush(pending_file *f);
/* FSYNC: the file's error so far (its bytes are in the spill file). */
int pending_fsync(pending_file *f);
/* RELEASE: one open handle less (nothing important happens here). */
void pending_release(pending_file *f);
void pending_file_put(pending_file *f);

/* Rename within the version: from must be a file of the version (-ENOENT
 * otherwise); a layout name as destination finishes and evaluates. */
int pending_rename(pending_version *v, const char *from, const char *to);

/* Removes a file of the pending version (its upload is abandoned). */
int pending_unlink(pending_version *v, const char *rel);

/* A writer's whole blob copied by reference (copy_file_range within the
 * mount): copy(arg, the version's remote) makes sure the destination has
 * the blob (it uploads only what is missing); the file then finishes at its
 * flush as that digest, no bytes written. -EOPNOTSUPP when the file already
 * has bytes. */
typedef int (*pending_copy_cb)(void *arg, struct push_remote *dst);
int pending_ref(pending_file *f, const char *digest, uint64_t size, pending_copy_cb copy,
		void *arg);

/* What LOOKUP/GETATTR/READDIR of pending files need. */
struct pending_stat {
	uint64_t size;
	int final;          /* 1 once finished */
	int failed;
	uint64_t ino_hint;  /* stable per file object */
};
/* 0 and *st for a file of the current version, -ENOENT otherwise. */
int pending_stat_file(pending_version *v, const char *rel, struct pending_stat *st);
/* Calls cb for each file directly in directory dir ("" = tag root,
 * "blobs/sha256"), with the name relative to dir. */
void pending_list(pending_version *v, const char *dir,
		  void (*cb)(void *arg, const char *name, const struct pending_stat *st),
		  void *arg);
/* Finds an open handle's file by name (reference taken) or NULL. */
pending_file *pending_file_get(pending_version *v, const char *rel);
pending_version *pending_file_version(pending_file *f);
uint64_t pending_file_size(pending_file *f);

/* `sync TAGDIR`: 0 when the latest version committed (or nothing is
 * pending), its errno when it failed, -ENODATA (missing blobs logged) while
 * incomplete. Evaluates, so it commits a version that became complete. */
int pending_status(pending_version *v);

/* 1 when the version committed counting blobs the repository had but the
 * writer had not written (it may still write them). */
int pending_committed_via_repo(pending_version *v);

/* Seconds since the version's last activity, -1 while a file is open. */
int pending_idle_s(pending_version *v, time_t now);

/* Drops the pending or failed version (rm -r of a pending tag directory). */
void pending_drop(pending_version *v);

/* Drops versions with no open file for timeout_s (log line); returns how many. */
int pending_sweep(pending *p, time_t now);

/* Frees the files of committed versions idle for idle_s with no open file
 * (a long-lived mount keeps one small record per tag), except versions
 * keep() says are still in use (e.g. a tag directory not settled yet). */
void pending_trim_idle(pending *p, time_t now, int idle_s,
		       int (*keep)(pending_version *v, void *arg), void *arg);
/* Records held: versions, and files listed in them. */
void pending_counts(pending *p, size_t *versions, size_t *files);

/* Text for `user.ecr.push_state` of one version (malloc'd) and the JSON
 * document for .ecrfs/pending (malloc'd): versions pending or failed, "[]"
 * when none. */
char *pending_push_state(pending_version *v);
char *pending_summary_json(pending *p);

#endif
