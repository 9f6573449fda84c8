/* push_remote over net/ecr.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/push_remote.h"
#include "net/log.h"

struct ecr_remote {
	ecr *e;
	char *registry; /* NULL: the caller's registry */
	char *region;
	char *repo;
};

static struct ecr_where where_of(const struct ecr_remote *r)
{
	struct ecr_where w = { r->registry, r->region, r->repo };
	return w;
}

static int r_check(void *ctx, const char *const *digests, size_t n, int *available)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	return ecr_batch_check_layers(r->e, &w, digests, n, available, NULL);
}

static int r_initiate(void *ctx, char **upload_id, int64_t *part_size)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	return ecr_initiate_layer_upload(r->e, &w, upload_id, part_size, NULL);
}

static int r_part(void *ctx, const char *upload_id, uint64_t first_byte, const void *data,
		  size_t len, int64_t *last_valid)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	struct ecr_error err = { 0 };
	int rc = ecr_upload_layer_part(r->e, &w, upload_id, first_byte, data, len, last_valid,
				       &err);
	if (rc == -ENOENT && strstr(err.code, "UploadNotFound"))
		rc = -ESTALE;
	return rc;
}

static int r_part_in(void *ctx, const char *upload_id, uint64_t first_byte, char *buf,
		     size_t cap, size_t len, struct ecr_part_built *built, int64_t *last_valid)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	struct ecr_error err = { 0 };
	int rc = ecr_upload_layer_part_in(r->e, &w, upload_id, first_byte, buf, cap, len, built,
					  last_valid, &err);
	if (rc == -ENOENT && strstr(err.code, "UploadNotFound"))
		rc = -ESTALE;
	return rc;
}

static int r_complete(void *ctx, const char *upload_id, const char *digest)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	return ecr_complete_layer_upload(r->e, &w, upload_id, digest, NULL);
}

static int r_put(void *ctx, const char *tag, const char *bytes, size_t len,
		 const char *media_type, const char *digest)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	return ecr_put_image(r->e, &w, tag, bytes, len, media_type, digest, NULL, NULL);
}

static int r_image_exists(void *ctx, const char *digest)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	struct ecr_image_id id = { digest, NULL };
	struct ecr_image_list l = { 0 };
	int rc = ecr_describe_images(r->e, &w, &id, 1, &l, NULL);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	rc = l.n > 0;
	ecr_image_list_free(&l);
	return rc;
}

static int r_create(void *ctx)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	int created = 0;
	int rc = ecr_create_repository(r->e, &w, 0, &created, NULL);
	if (rc == 0 && created)
		log_info("created repository %s in %s", r->repo, r->region);
	return rc;
}

static int r_tag_info(void *ctx, const char *tag, int *immutable, char *digest, size_t n)
{
	struct ecr_remote *r = ctx;
	struct ecr_where w = where_of(r);
	const char *names[1] = { r->repo };
	struct ecr_repo_list rl = { 0 };
	struct ecr_image_list il = { 0 };
	struct ecr_image_id id = { NULL, tag };
	int rc;

	*immutable = 0;
	digest[0] = '\0';
	rc = ecr_describe_repositories(r->e, &w, names, 1, &rl, NULL);
	if (rc < 0)
		return rc;
	*immutable = rl.n > 0 && ecr_repo_tag_immutable(&rl.v[0], tag);
	ecr_repo_list_free(&rl);
	if (!*immutable)
		return 0;
	rc = ecr_describe_images(r->e, &w, &id, 1, &il, NULL);
	if (rc == -ENOENT)
		return 0;
	if (rc == 0 && il.n > 0 && il.v[0].digest)
		snprintf(digest, n, "%s", il.v[0].digest);
	ecr_image_list_free(&il);
	return rc;
}

static void r_free(void *ctx)
{
	struct ecr_remote *r = ctx;
	if (!r)
		return;
	free(r->registry);
	free(r->region);
	free(r->repo);
	free(r);
}

static const struct push_remote_ops ecr_remote_ops = {
	.check_layers = r_check,
	.initiate = r_initiate,
	.upload_part = r_part,
	.part_room = ecr_part_room,
	.upload_part_in = r_part_in,
	.complete = r_complete,
	.put_image = r_put,
	.image_exists = r_image_exists,
	.create_repository = r_create,
	.tag_info = r_tag_info,
	.free = r_free,
};

int push_remote_ecr_new(ecr *e, const char *registry, const char *region, const char *repo,
			struct push_remote **out)
{
	int rc = -ENOMEM;
	struct push_remote *pr = calloc(1, sizeof(*pr));
	struct ecr_remote *r = calloc(1, sizeof(*r));
	if (!pr || !r)
		goto out;
	r->e = e;
	r->registry = registry ? strdup(registry) : NULL;
	r->region = strdup(region);
	r->repo = strdup(repo);
	if ((registry && !r->registry) || !r->region || !r->repo)
		goto out;
	pr->ops = &ecr_remote_ops;
	pr->ctx = r;
	snprintf(pr->desc, sizeof(pr->desc), "repository %s in %s of %s", repo, region,
		 registry ? registry : "the caller's registry");
	*out = pr;
	pr = NULL;
	r = NULL;
	rc = 0;
out:
	r_free(r);
	free(pr);
	return rc;
}

void push_remote_free(struct push_remote *r)
{
	if (!r)
		return;
	if (r->ops && r->ops->free)
		r->ops->free(r->ctx);
	free(r);
}
