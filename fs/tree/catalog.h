/* What ECR holds, as the tree needs it, with TTLs: the repositories of a
 * (registry, region), the images of a repository (tags, digests, pushed_at),
 * manifests by digest and loaded images (fs_image). Listings are cached for
 * tag_ttl (errors for neg_ttl), single-flight per key, bounded in number
 * and number of unused minutes, and persisted in the cache's metadata
 * records so that an offline mount serves the last known state (marked
 * stale). */
#ifndef ECRFS_FS_CATALOG_H
#define ECRFS_FS_CATALOG_H

#include "fs/mount.h"
#include "fs/tree/image.h"
#include "net/ecr.h"

/* A refcounted, immutable snapshot of a listing. */
struct fs_list_index; /* catalog_index.c */
struct fs_list {
	int refs;
	int stale; /* served from an older copy because ECR could not be reached */
	struct ecr_repo_list repos;   /* for repository listings */
	struct ecr_image_list images; /* for image listings */
	struct fs_list_index *index;  /* built at the first search of a large list, atomic */
};
void fs_list_put(struct fs_list *l);
void fs_list_index_free(struct fs_list_index *x);

int fs_cat_repos(struct fs_ctx *c, const char *registry, const char *region,
		 struct fs_list **out);
int fs_cat_images(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		  struct fs_list **out);

/* Searches of a listing (catalog_index.c): binary search once it is large. */
const struct ecr_repo *fs_list_find_repo(const struct fs_list *l, const char *name);
/* Does a repository live at or below prefix? *repo: the one named exactly
 * prefix, or NULL. */
int fs_list_find_ns(const struct fs_list *l, const char *prefix, const struct ecr_repo **repo);
const struct ecr_image *fs_list_find_tag(const struct fs_list *l, const char *tag);
const struct ecr_image *fs_list_find_digest(const struct fs_list *l, const char *digest);

/* A manifest by digest (cache, then BatchGetImage); -ENOMEDIUM when ECR
 * answers that the image is archived (logged by net/ecr_images.c). */
int fs_cat_manifest(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		    const char *digest, char **bytes, size_t *len, char **media_type);
/* A manifest known from elsewhere (this mount's PutImage): kept in the
 * cache's records when bytes hash to digest, as BatchGetImage's answer is. */
void fs_cat_manifest_learn(struct fs_ctx *c, const char *digest, const char *media_type,
			   const char *bytes, size_t len);

/* The loaded image for (registry, region, repo, digest) with ref.name refname.
 * BatchGetImage (a pull for ECR) only for manifests not cached: the image's
 * own and, in one call, its children; other images are never fetched. */
int fs_cat_image(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		 const char *digest, const char *refname, int immutable, time_t pushed_at,
		 struct fs_image **out);

/* Places im has in a repository listing: its tags shown, 1 for an
 * untagged image, 0 when not listed (referrers, unless -o show_referrers). */
unsigned fs_cat_image_places(const struct fs_ctx *c, const struct ecr_image *im);
/* nlink of the blob digest of img now: exact (*exact 1, may be NULL) once
 * every listed image of the repository is counted, else at least 2 (the
 * census grows as images are opened; see catalog_nlink.c). */
unsigned fs_cat_blob_nlink(struct fs_ctx *c, const struct fs_image *img, const char *digest,
			   int *exact);
/* 1 when the census of the repository counts every listed image. */
int fs_cat_census_complete(const char *registry, const char *region, const char *repo);

/* user.ecr.referrers of the image digest: "artifactType=N,..." by type
 * (ListImageReferrers, kept for tag_ttl); -ENODATA when it has none or ECR
 * would not say. */
int fs_cat_referrer_counts(struct fs_ctx *c, const char *registry, const char *region,
			   const char *repo, const char *digest, char **val);
void fs_cat_referrers_shutdown(void);

/* The caller's own registry id ("" when unknown): DescribeRegistry, else STS. */
int fs_cat_identity(struct fs_ctx *c, struct ecr_identity *out);

/* Forgets the cached tag/repository listings of a repository (repo NULL:
 * of the region). */
void fs_cat_invalidate(const char *registry, const char *region, const char *repo);

/* Entries kept in memory: listings (at most 256, least recently used go
 * first; unused ones go tag_ttl + 10 min after their last use) and blob
 * censuses (at most 32, the same expiry). */
struct fs_cat_stats {
	size_t listings, censuses;
};
void fs_cat_stats(struct fs_cat_stats *out);

void fs_cat_shutdown(void);

#endif
