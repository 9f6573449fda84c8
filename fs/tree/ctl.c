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

static const char *const names[] = {NULL, "stats", "identity", "version", "pending", NULL};

enum fs_ctl fs_ctl_by_name(const char *name)
{
	for (int i = 1; names[i]; i++)
		if (!strcmp(names[i], name))
			return (enum fs_ctl)i;
	return 0;
}

const char *fs_ctl_name(int i)
{
	return i >= 1 && i <= 4 ? names[i] : NULL;
}

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
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "hits", (json_int_t)cs.hits,
				      "misses", (json_int_t)cs.misses, "bytes_stored",
				      (json_int_t)cs.bytes_stored, "evictions",
				      (json_int_t)cs.evictions, "bytes_total",
				      (json_int_t)cs.bytes_total, "disk_full", cs.disk_full));
	json_object_set_new(root, "tables", tables_json(c));
	*out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	rc = *out ? 0 : -ENOMEM;
	json_decref(root);
	return rc;
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
