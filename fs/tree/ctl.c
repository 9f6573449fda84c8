/* Control files under MNT/.ecrfs/ (direct_io: rendered at every open). */
#include "fs/tree/ctl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob.h"
#include "fs/tree/catalog.h"
#include "fs/tree/hidden.h"
#include "fs/tree/view_rootfs.h"

static const char *const names[] = {NULL, "stats", "identity", "version", "pending", "usage", NULL};

enum fs_ctl fs_ctl_by_name(const char *name)
{
	for (int i = 1; names[i]; i++)
		if (!strcmp(names[i], name))
			return (enum fs_ctl)i;
	return 0;
}

const char *fs_ctl_name(int i) { return i >= 1 && i <= FS_CTL_USAGE ? names[i] : NULL; }

/* The size of every in-memory table: each has a bound or an expiry, and a
 * long-lived mount shows here that they hold. */
static json_t *tables_json(struct fs_ctx *c)
{
	struct fs_cat_stats cat;
	struct fs_blobs_stats bs;
	memset(&bs, 0, sizeof bs);
	fs_cat_stats(&cat);
	if (c->blobs)
		fs_blobs_stats(c->blobs, &bs);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "nodes",
			 (json_int_t)fs_node_count(), "listings", (json_int_t)cat.listings,
			 "censuses", (json_int_t)cat.censuses, "download_urls", (json_int_t)bs.urls,
			 "failed_digests", (json_int_t)bs.bad, "chunk_flights",
			 (json_int_t)bs.flights, "readahead_running", (json_int_t)bs.ra_running,
			 "readahead_queued", (json_int_t)bs.ra_queued, "hidden_names",
			 (json_int_t)push_hide_count());
}

/* TAG@rootfs indexes and the span cache. */
static json_t *rootfs_json(const struct cache_stats *cs)
{
	struct fs_rootfs_stats r;
	fs_rootfs_stats(&r);
	r.index_bytes = cs->index_bytes; /* on disk, counted in cache_size */
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "index_builds",
			 (json_int_t)r.builds, "index_build_failures", (json_int_t)r.build_failures,
			 "index_from_sources", (json_int_t)r.from_sources,
			 "index_loads", (json_int_t)r.loads, "index_bytes", (json_int_t)r.index_bytes,
			 "index_evictions", (json_int_t)cs->index_evictions,
			 "images", (json_int_t)r.images, "indexes_held",
			 (json_int_t)r.indexes_held, "span_hits", (json_int_t)r.span_hits,
			 "span_misses", (json_int_t)r.span_misses, "span_bytes",
			 (json_int_t)r.span_bytes);
}

/* Requests by FUSE operation (enum fs_op), and the LOOKUPs READDIRPLUS saved. */
static json_t *fuse_json(struct fs_ctx *c)
{
	static const char *const op_names[FS_OP_COUNT] = {
	    "lookup", "forget", "getattr", "opendir", "readdir", "readdirplus",
	    "getxattr", "listxattr", "open", "read"};
	json_t *o = json_object();
	for (int i = 0; o && i < FS_OP_COUNT; i++)
		json_object_set_new(o, op_names[i],
				    json_integer((json_int_t)__atomic_load_n(&c->ops[i],
									     __ATOMIC_RELAXED)));
	if (o)
		json_object_set_new(o, "readdirplus_entries",
				    json_integer((json_int_t)__atomic_load_n(&c->plus_entries,
									     __ATOMIC_RELAXED)));
	return o ? o : json_object();
}

static int render_stats(struct fs_ctx *c, char **out)
{
	json_t *root = json_object();
	int rc = -ENOMEM;
	if (!root)
		return rc;
	/* API calls by operation, errors, retries (from the ECR client). */
	char *api = ecr_stats_json(c->ecr);
	json_t *aj = api ? json_loads(api, 0, NULL) : NULL;
	free(api);
	json_object_set_new(root, "ecr", aj ? aj : json_object());
	for (size_t i = 0; i < c->nregs; i++) {
		if (!c->regs[i].profile || !c->regs[i].ecr)
			continue;
		char *s = ecr_stats_json(c->regs[i].ecr);
		json_t *j = s ? json_loads(s, 0, NULL) : NULL;
		free(s);
		if (j) {
			char key[64];
			snprintf(key, sizeof key, "ecr_%s", c->regs[i].id);
			json_object_set_new(root, key, j);
		}
	}
	struct net_http_stats hs;
	net_http_get_stats(c->http, &hs);
	json_object_set_new(
	    root, "http",
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)hs.requests,
		      "retries", (json_int_t)hs.retries, "errors", (json_int_t)hs.errors,
		      "bytes_in", (json_int_t)hs.bytes_in, "bytes_out", (json_int_t)hs.bytes_out,
		      "fast_fails", (json_int_t)hs.fast_fails, "hosts_down",
		      (json_int_t)hs.hosts_down));
	struct cache_stats cs;
	cache_get_stats(c->cache, &cs);
	json_object_set_new(root, "cache",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "hits", (json_int_t)cs.hits,
				      "misses", (json_int_t)cs.misses, "bytes_stored",
				      (json_int_t)cs.bytes_stored, "evictions",
				      (json_int_t)cs.evictions, "bytes_total",
				      (json_int_t)cs.bytes_total, "index_bytes",
				      (json_int_t)cs.index_bytes, "disk_full", cs.disk_full));
	json_object_set_new(root, "tables", tables_json(c));
	json_object_set_new(root, "fuse", fuse_json(c));
	json_object_set_new(root, "rootfs", rootfs_json(&cs));
	*out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	rc = *out ? 0 : -ENOMEM;
	json_decref(root);
	return rc;
}

/* The IAM ARN an exclusion names for arn: an assumed role's session ARN
 * (arn:P:sts::A:assumed-role/R/S) stands for its role; roles may have a
 * path, so a role matches by its last name. */
static int principal_matches(const char *arn, const char *excluded)
{
	char part[32], acct[32], role[128];
	if (!strcmp(arn, excluded))
		return 1;
	if (sscanf(arn, "arn:%31[^:]:sts::%31[^:]:assumed-role/%127[^/]/", part, acct, role) != 3)
		return 0;
	char prefix[128];
	snprintf(prefix, sizeof prefix, "arn:%s:iam::%s:role/", part, acct);
	size_t pl = strlen(prefix), el = strlen(excluded), rl = strlen(role);
	return !strncmp(excluded, prefix, pl) && el >= pl + rl &&
	       !strcmp(excluded + el - rl, role) && (el == pl + rl || excluded[el - rl - 1] == '/');
}

/* Whether ECR leaves the pull time of images alone when this caller reads
 * a manifest (RegisterPullTimeUpdateExclusion): true, false, or "unknown"
 * when ECR does not tell (AccessDenied, another account's registry). */
static json_t *pull_time_excluded(struct fs_ctx *c, const struct ecr_identity *id)
{
	char **arns = NULL;
	size_t n = 0;
	const char *region = c->nregions ? c->regions[0] : "us-east-1";
	if (!*id->arn || ecr_list_pull_time_exclusions(c->ecr, region, &arns, &n, NULL) != 0)
		return json_string("unknown");
	int found = 0;
	for (size_t i = 0; i < n && !found; i++)
		found = principal_matches(id->arn, arns[i]);
	ecr_strv_free(arns, n);
	return json_boolean(found);
}

static int render_identity(struct fs_ctx *c, char **out)
{
	struct ecr_identity id;
	memset(&id, 0, sizeof id);
	int rc = fs_cat_identity(c, &id);
	json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s}", "account",
				 rc == 0 ? id.account : c->own_registry, "arn", rc == 0 ? id.arn : "",
				 "user_id", rc == 0 ? id.user_id : "", "credential_source",
				 rc == 0 ? id.source : "", "profile", cred_profile_name(c->creds));
	if (!root)
		return -ENOMEM;
	if (rc)
		json_object_set_new(root, "error", json_string(strerror(-rc)));
	json_object_set_new(root, "pull_time_update_excluded",
			    rc ? json_string("unknown") : pull_time_excluded(c, &id));
	*out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return *out ? 0 : -ENOMEM;
}

/* One region of a registry: images and bytes (imageSizeInBytes, ECR's
 * figure: a layer shared by images counts in each) per repository. */
static json_t *usage_region(struct fs_ctx *c, const char *registry, const char *region)
{
	struct fs_list *repos = NULL;
	json_int_t all_n = 0, all_b = 0;
	int rc = fs_cat_repos(c, registry, region, &repos);
	if (rc)
		return json_pack("{s:s}", "error", strerror(-rc));
	json_t *per = json_object();
	for (size_t i = 0; per && i < repos->repos.n; i++) {
		struct fs_list *imgs = NULL;
		const char *name = repos->repos.v[i].name;
		if ((rc = fs_cat_images(c, registry, region, name, &imgs)) != 0) {
			json_object_set_new(per, name, json_pack("{s:s}", "error", strerror(-rc)));
			continue;
		}
		json_int_t b = 0;
		for (size_t k = 0; k < imgs->images.n; k++)
			b += imgs->images.v[k].size;
		json_object_set_new(
		    per, name,
		    json_pack("{s:I, s:I}", "images", (json_int_t)imgs->images.n, "bytes", b));
		all_n += (json_int_t)imgs->images.n;
		all_b += b;
		fs_list_put(imgs);
	}
	fs_list_put(repos);
	return json_pack("{s:I, s:I, s:o*}", "images", all_n, "bytes", all_b, "repositories", per);
}

/* .ecrfs/usage: every listed registry and region, from DescribeRepositories
 * and DescribeImages only (never a pull). */
static int render_usage(struct fs_ctx *c, char **out)
{
	json_t *root = json_object();
	size_t nreg = 1 + c->nregs;
	for (size_t r = 0; root && r < nreg; r++) {
		const char *id = r == 0 ? c->own_registry : c->regs[r - 1].id;
		if (!id || !*id || json_object_get(root, id))
			continue;
		json_t *regions = json_object();
		for (size_t i = 0; regions && i < c->nregions; i++)
			json_object_set_new(regions, c->regions[i],
					    usage_region(c, id, c->regions[i]));
		json_object_set_new(root, id, regions ? regions : json_null());
	}
	if (!root)
		return -ENOMEM;
	*out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return *out ? 0 : -ENOMEM;
}

int fs_ctl_render(struct fs_ctx *c, enum fs_ctl which, const char *pending, char **out,
		  size_t *len)
{
	int rc = 0;
	*out = NULL;
	switch (which) {
	case FS_CTL_STATS:
		rc = render_stats(c, out);
		break;
	case FS_CTL_IDENTITY:
		rc = render_identity(c, out);
		break;
	case FS_CTL_VERSION:
		rc = asprintf(out, "ecrfs %s\n", ECRFS_VERSION) < 0 ? -ENOMEM : 0;
		if (rc)
			*out = NULL;
		break;
	case FS_CTL_PENDING:
		*out = strdup(pending ? pending : "");
		rc = *out ? 0 : -ENOMEM;
		break;
	case FS_CTL_USAGE:
		rc = render_usage(c, out);
		break;
	default:
		rc = -ENOENT;
	}
	if (rc == 0) {
		/* Text files end with a newline. */
		size_t l = strlen(*out);
		if (l && (*out)[l - 1] != '\n') {
			char *n = realloc(*out, l + 2);
			if (n) {
				n[l] = '\n';
				n[l + 1] = 0;
				*out = n;
				l++;
			}
		}
		*len = l;
	}
	return rc;
}
