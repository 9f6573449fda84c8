/* Extended attributes of the tree (user.ecr.*): what ECR knows and a file
 * cannot show. Values come from the listings (no manifest fetch). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/kinds_i.h"
#include "fs/tree/view_ecr.h"
#include "fs/tree/views.h"

static const char *const xattr_names[] = {
	"user.ecr.digest", "user.ecr.uri",         "user.ecr.pushed_at", "user.ecr.media_type",
	"user.ecr.size",   "user.ecr.scan_status", "user.ecr.mutability", "user.ecr.tags",
	"user.ecr.image_bytes", "user.ecr.mutability_exclusions", "user.ecr.views",
	"user.ecr.status", "user.ecr.archived_at", "user.ecr.storage_class", "user.ecr.referrers",
	NULL,
};

static void registry_host(const struct fs_node *n, char *buf, size_t size)
{
	snprintf(buf, size, "%s.dkr.ecr.%s.amazonaws.com%s", n->registry, n->region,
		 !strncmp(n->region, "cn-", 3) ? ".cn" : "");
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Strings comma-separated ("" for none). */
static char *joined(char *const *v, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	char *s = calloc(1, len);
	for (size_t i = 0; s && i < n; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, v[i]);
	}
	return s;
}

static char *printed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *printed(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static int namespace_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val)
{
	struct fs_list *repos = NULL;
	const struct ecr_repo *r = NULL;
	char host[160];
	if (fs_cat_repos(c, n->registry, n->region, &repos) != 0)
		return -ENODATA;
	ns_exists(repos, n->repo, &r);
	registry_host(n, host, sizeof host);
	if (!r)
		*val = NULL;
	else if (!strcmp(name, "user.ecr.uri"))
		*val = printed("%s/%s", host, n->repo);
	else if (!strcmp(name, "user.ecr.mutability"))
		*val = xstrdup(r->mutability != ECR_MUT_UNKNOWN ? ecr_mutability_name(r->mutability)
		       : r->immutable ? "IMMUTABLE" : "MUTABLE");
	else if (!strcmp(name, "user.ecr.views"))
		*val = fs_views_list(0, NULL);
	else if (!strcmp(name, "user.ecr.mutability_exclusions") && r->nmutability_filters)
		*val = joined(r->mutability_filters, r->nmutability_filters);
	fs_list_put(repos);
	return *val ? 0 : -ENODATA;
}

static char *image_media_type(struct fs_node *n, const struct ecr_image *im)
{
	if (im && im->media_type)
		return strdup(im->media_type);
	struct fs_image *img = fs_node_img(n);
	char *s = img ? xstrdup(img->media_type) : NULL;
	if (img)
		fs_image_put(img);
	return s;
}

static char *utc(time_t t)
{
	char tmp[64];
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return strdup(tmp);
}

/* The archive: imageStatus, when it was archived, and the storage class
 * setfattr changes (ARCHIVED and ACTIVATING images are in ARCHIVE until
 * restored). */
static char *archive_value(const struct ecr_image *im, const char *name)
{
	if (!im || !im->status)
		return NULL;
	if (!strcmp(name, "user.ecr.status"))
		return strdup(im->status);
	if (!strcmp(name, "user.ecr.archived_at"))
		return im->archived_at && ecr_image_archived(im) ? utc(im->archived_at) : NULL;
	if (!strcmp(name, "user.ecr.storage_class"))
		return strdup(ecr_image_archived(im) ? "ARCHIVE" : "STANDARD");
	return NULL;
}

static char *image_value(struct fs_node *n, const struct ecr_image *im, const char *name)
{
	char host[160];
	registry_host(n, host, sizeof host);
	if (!strcmp(name, "user.ecr.digest"))
		return strdup(n->digest);
	if (!strcmp(name, "user.ecr.uri"))
		return n->tag ? printed("%s/%s:%s", host, n->repo, n->tag)
			      : printed("%s/%s@%s", host, n->repo, n->digest);
	if (!strcmp(name, "user.ecr.pushed_at"))
		return utc(n->mtime);
	if (!strcmp(name, "user.ecr.media_type"))
		return image_media_type(n, im);
	if (!strcmp(name, "user.ecr.size"))
		return im ? printed("%lld", (long long)im->size) : NULL;
	if (!strcmp(name, "user.ecr.scan_status"))
		return im ? xstrdup(im->scan_status) : NULL;
	if (!strcmp(name, "user.ecr.mutability"))
		return strdup(n->immutable ? "IMMUTABLE" : "MUTABLE");
	if (!strcmp(name, "user.ecr.tags"))
		return im ? joined(im->tags, im->ntags) : NULL;
	if (!strcmp(name, "user.ecr.views"))
		return fs_views_list(1, im);
	if (!strcmp(name, "user.ecr.image_bytes"))
		return im ? printed("%lld", (long long)im->size) : NULL;
	if (!strncmp(name, "user.ecr.scan.", 14))
		return fs_scan_xattr(im, name); /* severity counts (view_scan.c) */
	return archive_value(im, name);
}

static int image_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val)
{
	struct fs_list *imgs = NULL;
	const struct ecr_image *im = NULL;
	if (!strcmp(name, "user.ecr.referrers"))
		return fs_cat_referrer_counts(c, n->registry, n->region, n->repo, n->digest, val);
	if (fs_cat_images(c, n->registry, n->region, n->repo, &imgs) == 0)
		im = fs_list_find_digest(imgs, n->digest);
	*val = image_value(n, im, name);
	fs_list_put(imgs);
	return *val ? 0 : -ENODATA;
}

static int blob_xattr(struct fs_node *n, const char *name, char **val)
{
	const struct fs_blob *b = &n->img->blobs[n->blob_idx];
	if (!strcmp(name, "user.ecr.digest"))
		*val = strdup(b->digest);
	else if (!strcmp(name, "user.ecr.media_type"))
		*val = xstrdup(b->media_type);
	else if (!strcmp(name, "user.ecr.size"))
		*val = printed("%llu", (unsigned long long)b->size);
	return *val ? 0 : -ENODATA;
}

int fs_tree_xattr(struct fs_ctx *c, struct fs_node *n, const char *name, char **val)
{
	*val = NULL;
	if (n->kind == FS_N_NAMESPACE)
		return namespace_xattr(c, n, name, val);
	if (n->kind == FS_N_IMAGE)
		return image_xattr(c, n, name, val);
	if (n->kind == FS_N_IMG_FILE && n->blob_idx >= 0)
		return blob_xattr(n, name, val);
	return -ENODATA;
}

/* The names of more that n has, into buf. */
static size_t xattr_list_more(struct fs_ctx *c, struct fs_node *n, const char *const *more,
			      char *buf, size_t size)
{
	size_t pos = 0;
	for (int i = 0; n->kind == FS_N_IMAGE && more[i]; i++) {
		char *val = NULL;
		size_t l = strlen(more[i]) + 1;
		if (fs_tree_xattr(c, n, more[i], &val) == 0 && pos + l <= size) {
			memcpy(buf + pos, more[i], l);
			pos += l;
		}
		free(val);
	}
	return pos;
}

size_t fs_tree_xattr_list(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size)
{
	size_t pos = 0;
	for (int i = 0; xattr_names[i]; i++) {
		char *val = NULL;
		size_t l = strlen(xattr_names[i]) + 1;
		if (fs_tree_xattr(c, n, xattr_names[i], &val) == 0 && pos + l <= size) {
			memcpy(buf + pos, xattr_names[i], l);
			pos += l;
		}
		free(val);
	}
	return pos + xattr_list_more(c, n, fs_scan_xattr_names, buf + pos, size - pos);
}

int fs_tree_setxattr(struct fs_ctx *c, struct fs_node *n, const char *name, const char *value,
		     size_t size)
{
	char target[16];
	if (n->kind != FS_N_IMAGE || strcmp(name, "user.ecr.storage_class") != 0)
		return -ENOTSUP;
	snprintf(target, sizeof target, "%.*s", (int)(size < 15 ? size : 15), value);
	target[strcspn(target, "\n")] = 0;
	if (strcmp(target, "STANDARD") != 0 && strcmp(target, "ARCHIVE") != 0)
		return -EINVAL;
	struct ecr_where w = {
	    .registry_id = n->registry, .region = n->region, .repository = n->repo};
	struct ecr_image_id id = {.digest = n->digest};
	int rc =
	    ecr_update_image_storage_class(fs_ecr_for(c, n->registry), &w, &id, target, NULL, NULL);
	fs_cat_invalidate(n->registry, n->region, n->repo);
	return rc;
}
