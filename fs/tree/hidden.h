/* Names hidden in committed images of this mount (`rm -r TAG`).
 *
 * `rm -r TAG` unlinks every file and removes blobs/sha256/ and blobs/ before
 * the rmdir of TAG, which untags. Those unlinks send nothing to ECR; the
 * names only disappear from this mount (LOOKUP answers a negative entry,
 * READDIR leaves them out, GETATTR answers ENOENT) until `until`, the
 * listing TTL: a tag that was not removed shows its files again then.
 *
 * An entry is keyed by the image directory (registry, region, repository,
 * the directory's name: a tag or @sha256-<hex>, and the image digest, so a
 * tag that moves shows its new image whole) and the name relative to it
 * ("oci-layout", "blobs/sha256/<hex>", "blobs").
 *
 * Thread-safe: one mutex protects the table. */
#ifndef ECRFS_PUSH_HIDE_H
#define ECRFS_PUSH_HIDE_H

#include <time.h>

#include "fs/tree/node.h"

/* Hides dir/name, where dir is an image directory (FS_N_IMAGE) or one of
 * its FS_N_IMG_DIR below it. Returns 0 or -errno. */
int push_hide_add(struct fs_node *dir, const char *name, time_t until);
/* 1 when dir/name is hidden now (fs_tree_hidden asks it for LOOKUP, GETATTR
 * and listings). */
int push_hide_is(struct fs_node *dir, const char *name, time_t now);
/* The tag (or digest dir) `name` of repository repo was removed or
 * rewritten: its hidden names are forgotten. */
void push_hide_forget(const char *registry, const char *region, const char *repo,
		      const char *name);
/* Names hidden now (for .ecrfs/stats). */
size_t push_hide_count(void);
/* Frees the table (unmount). */
void push_hide_free(void);

#endif
