/* Listings kept in the cache's metadata records as JSON, so that an
 * offline mount serves the last one seen (see catalog.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog_i.h"

/* ---- persistence of listings (cache metadata, JSON) ---- */

int cat_persist_save(struct fs_ctx *c, const struct persist_kind *k, const char *key,
		     const struct fs_list *l)
{
	int rc = -ENOMEM;
	char *s = NULL;
	json_t *arr;
	if (!c->cache)
		return -ENOENT;
	if (!(arr = json_array()))
		goto out;
	for (size_t i = 0; i < k->count(l); i++)
		if (json_array_append_new(arr, k->pack(l, i)))
			goto out; /* never a partial listing: it would be served as whole */
	if (!(s = json_dumps(arr, JSON_COMPACT)))
		goto out;
	rc = cache_meta_put(c->cache, k->ns, key, s, strlen(s));
out:
	json_decref(arr);
	free(s);
	return rc;
}

int cat_persist_load(struct fs_ctx *c, const struct persist_kind *k, const char *key,
		     struct fs_list **out)
{
	char *s = NULL;
	size_t len, i;
	json_t *arr = NULL, *o;
	struct fs_list *nl = NULL;
	int rc;
	*out = NULL;
	if (!c->cache)
		return -ENOENT;
	rc = cache_meta_get(c->cache, k->ns, key, &s, &len);
	if (rc)
		return rc;
	arr = json_loadb(s, len, 0, NULL);
	free(s);
	rc = -EIO;
	if (!json_is_array(arr))
		goto out;
	rc = -ENOMEM;
	if (!(nl = calloc(1, sizeof *nl)))
		goto out;
	nl->refs = 1;
	if (k->alloc(nl, json_array_size(arr)))
		goto out;
	json_array_foreach(arr, i, o)
	{
		rc = k->unpack(nl, o);
		if (rc < 0)
			goto out;
	}
	rc = 0;
	*out = nl;
	nl = NULL;
out:
	fs_list_put(nl);
	json_decref(arr);
	return rc;
}

/* The n string members keys[i] of o duplicated into *outs[i] (NULL when
 * absent). Returns 0, or -ENOMEM. */
static int dup_members(const json_t *o, size_t n, const char *const keys[], char **const outs[])
{
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(o, keys[i]));
		if (s && !(*outs[i] = strdup(s)))
			return -ENOMEM;
	}
	return 0;
}

static size_t repos_count(const struct fs_list *l) { return l->repos.n; }

static json_t *repo_pack(const struct fs_list *l, size_t i)
{
	const struct ecr_repo *r = &l->repos.v[i];
	json_t *filters = json_array();
	for (size_t f = 0; filters && f < r->nmutability_filters; f++)
		json_array_append_new(filters, json_string(r->mutability_filters[f]));
	return json_pack("{s:s, s:b, s:I, s:s?, s:s?, s:s?, s:o*}", "name", r->name, "immutable",
			 r->immutable, "created", (json_int_t)r->created_at, "uri", r->uri, "arn",
			 r->arn, "mutability", ecr_mutability_name(r->mutability), "exclusions",
			 filters);
}

static int repos_alloc(struct fs_list *nl, size_t n)
{
	nl->repos.v = calloc(n + 1, sizeof *nl->repos.v);
	return nl->repos.v ? 0 : -ENOMEM;
}

static int filters_unpack(struct ecr_repo *r, const json_t *a)
{
	size_t n = json_array_size(a);
	if (!n)
		return 0;
	r->mutability_filters = calloc(n, sizeof *r->mutability_filters);
	if (!r->mutability_filters)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *f = json_string_value(json_array_get(a, i));
		if (f && !(r->mutability_filters[r->nmutability_filters++] = strdup(f)))
			return -ENOMEM;
	}
	return 0;
}

static int repo_unpack(struct fs_list *nl, const json_t *o)
{
	if (!json_is_string(json_object_get(o, "name")))
		return 1;
	/* Counted at once: the list's destructor frees what is filled in. */
	struct ecr_repo *r = &nl->repos.v[nl->repos.n++];
	r->immutable = json_is_true(json_object_get(o, "immutable"));
	r->created_at = (time_t)json_integer_value(json_object_get(o, "created"));
	const char *m = json_string_value(json_object_get(o, "mutability"));
	/* A copy from before exclusions were kept: ECR decides at PutImage. */
	r->mutability = m ? ecr_mutability_parse(m)
			  : r->immutable ? ECR_MUT_IMMUTABLE : ECR_MUT_UNKNOWN;
	if (filters_unpack(r, json_object_get(o, "exclusions")) != 0)
		return -ENOMEM;
	return dup_members(o, 3, (const char *const[]){"name", "uri", "arn"},
			   (char **const[]){&r->name, &r->uri, &r->arn});
}

const struct persist_kind cat_persist_repos = {"repos", repos_count, repo_pack, repos_alloc,
						  repo_unpack};

static size_t images_count(const struct fs_list *l) { return l->images.n; }

static json_t *image_pack(const struct fs_list *l, size_t i)
{
	const struct ecr_image *im = &l->images.v[i];
	json_t *tags = json_array();
	for (size_t t = 0; tags && t < im->ntags; t++)
		if (json_array_append_new(tags, json_string(im->tags[t]))) {
			json_decref(tags);
			return NULL;
		}
	/* "o" takes tags, also when packing fails. */
	return json_pack("{s:s, s:o, s:I, s:I, s:s?, s:s?}", "digest", im->digest, "tags", tags,
			 "size", (json_int_t)im->size, "pushed", (json_int_t)im->pushed_at, "mt",
			 im->media_type, "scan", im->scan_status);
}

static int images_alloc(struct fs_list *nl, size_t n)
{
	nl->images.v = calloc(n + 1, sizeof *nl->images.v);
	return nl->images.v ? 0 : -ENOMEM;
}

static int image_unpack(struct fs_list *nl, const json_t *o)
{
	const json_t *tags = json_object_get(o, "tags");
	json_t *t;
	size_t i;
	if (!json_is_string(json_object_get(o, "digest")))
		return 1;
	/* Counted at once: the list's destructor frees what is filled in. */
	struct ecr_image *im = &nl->images.v[nl->images.n++];
	im->size = json_integer_value(json_object_get(o, "size"));
	im->pushed_at = (time_t)json_integer_value(json_object_get(o, "pushed"));
	if (!(im->tags = calloc(json_array_size(tags) + 1, sizeof *im->tags)))
		return -ENOMEM;
	json_array_foreach(tags, i, t)
	{
		if (!json_is_string(t))
			continue;
		if (!(im->tags[im->ntags] = strdup(json_string_value(t))))
			return -ENOMEM;
		im->ntags++;
	}
	return dup_members(o, 3, (const char *const[]){"digest", "mt", "scan"},
			   (char **const[]){&im->digest, &im->media_type, &im->scan_status});
}

const struct persist_kind cat_persist_images = {"images", images_count, image_pack, images_alloc,
						   image_unpack};
