/* Private to the catalog (catalog.c, catalog_persist.c, catalog_census.c). */
#ifndef ECRFS_FS_CATALOG_I_H
#define ECRFS_FS_CATALOG_I_H

#include <jansson.h>
#include <time.h>

#include "fs/blob/flight.h"
#include "fs/tree/catalog.h"

/* How one kind of listing is kept in the cache's metadata records, so that
 * an offline mount serves the last one seen: the records' namespace, and
 * one element to and from JSON. */
struct persist_kind {
	const char *ns;
	size_t (*count)(const struct fs_list *l);
	json_t *(*pack)(const struct fs_list *l, size_t i); /* NULL: no memory */
	int (*alloc)(struct fs_list *nl, size_t n);	    /* room for n elements */
	/* Appends o to nl: 0, 1 when o is malformed (skipped), or -ENOMEM. */
	int (*unpack)(struct fs_list *nl, const json_t *o);
};
extern const struct persist_kind cat_persist_repos, cat_persist_images;

int cat_persist_save(struct fs_ctx *c, const struct persist_kind *k, const char *key,
		     const struct fs_list *l);
/* *out: a new listing (refs 1) from the record; -ENOENT when there is none,
 * -EIO when it is not a listing. */
int cat_persist_load(struct fs_ctx *c, const struct persist_kind *k, const char *key,
		     struct fs_list **out);

struct fs_list *cat_list_ref(struct fs_list *l);
/* The census table (NULL when out of memory) and how long an entry used
 * now is kept. */
struct fs_flights *cat_census_tab(void);
time_t cat_keep_until(const struct fs_ctx *c);
void cat_census_free(void *v);
/* A manifest from the cache's records only (never ECR): 0 or -ENOENT. */
int cat_manifest_cached(struct fs_ctx *c, const char *digest, char **bytes, size_t *len,
			char **media_type);
/* Counts img (its manifests now cached) in its repository's census. */
void cat_census_learn(struct fs_ctx *c, const struct fs_image *img);

#endif
