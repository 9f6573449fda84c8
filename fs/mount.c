/* The mount object's life: resolve region and credentials, open the HTTP
 * pool, the ECR clients and the cache, find our own registry (setup); make
 * the node table, the handle table and the push side (start); free it all
 * in reverse order (stop). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/blob/blob.h"
#include "fs/fuse/handles.h"
#include "fs/fuse/notify.h"
#include "fs/fuse/push_side.h"
#include "fs/mount_setup.h"
#include "fs/opts.h"
#include "fs/tree/catalog.h"
#include "fs/tree/hidden.h"
#include "fs/tree/names.h"
#include "fs/tree/view_rootfs.h"
#include "net/log.h"

static int split_list(const char *s, char ***out, size_t *n)
{
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char **nv = realloc(*out, (*n + 1) * sizeof *nv);
		if (!nv)
			break;
		*out = nv;
		(*out)[(*n)++] = strdup(t);
	}
	free(copy);
	return 0;
}

static int setup_registries(struct fs_ctx *c)
{
	char **items = NULL;
	size_t n = 0;
	int rc = 0;
	if (!c->o.registries)
		return 0;
	split_list(c->o.registries, &items, &n);
	c->regs = calloc(n + 1, sizeof *c->regs);
	if (!c->regs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char *colon = strchr(items[i], ':');
		if (colon)
			*colon = 0;
		if (!fs_name_is_account(items[i])) {
			fprintf(stderr, "ecrfs: registries=: %s is not a 12-digit account id\n",
				items[i]);
			rc = -EINVAL;
			goto out;
		}
		struct fs_registry *r = &c->regs[c->nregs++];
		snprintf(r->id, sizeof r->id, "%s", items[i]);
		if (colon && colon[1]) {
			r->profile = strdup(colon + 1);
			struct cred_opts co = {.profile = r->profile, .sts_endpoint = c->o.sts_endpoint,
					       .ca_file = c->o.ca_file};
			struct ecr_opts eo = {.http = c->http, .endpoint = c->o.endpoint,
					      .sts_endpoint = c->o.sts_endpoint,
					      .deadline_ms = c->deadline_ms};
			if ((rc = cred_provider_new(&co, &r->creds)) != 0)
				goto out;
			eo.creds = r->creds;
			if ((rc = ecr_new(&eo, &r->ecr)) != 0)
				goto out;
		}
	}
out:
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
	return rc;
}

static void ctx_free(struct fs_ctx *c)
{
	for (size_t i = 0; i < c->nregs; i++) {
		ecr_free(c->regs[i].ecr);
		cred_provider_free(c->regs[i].creds);
		free(c->regs[i].profile);
	}
	free(c->regs);
	for (size_t i = 0; i < c->nregions; i++)
		free(c->regions[i]);
	free(c->regions);
	if (c->ecr)
		ecr_free(c->ecr);
	if (c->creds)
		cred_provider_free(c->creds);
	if (c->http)
		net_http_free(c->http);
	if (c->cache)
		cache_close(c->cache);
	struct fs_opts *o = &c->o;
	free(o->source);
	free(o->mountpoint);
	free(o->region);
	free(o->regions);
	free(o->registries);
	free(o->profile);
	free(o->endpoint);
	free(o->sts_endpoint);
	free(o->ca_file);
	free(o->cache_dir);
	free(o->cache_size);
	free(o->verify);
	free(o->log);
}

/* Our own account: SOURCE when it is one, else DescribeRegistry or STS;
 * remembered in the cache for offline mounts. */
static void find_own_registry(struct fs_ctx *c)
{
	char *id = NULL, *saved = NULL;
	size_t len = 0;
	if (c->o.source && fs_name_is_account(c->o.source)) {
		snprintf(c->own_registry, sizeof c->own_registry, "%s", c->o.source);
		return;
	}
	const char *region = c->regions[0];
	/* A short deadline: an offline mount must come up promptly. */
	ecr *quick = NULL;
	struct ecr_opts eo = {.creds = c->creds, .http = c->http, .endpoint = c->o.endpoint,
			      .sts_endpoint = c->o.sts_endpoint,
			      .deadline_ms = c->deadline_ms < 5000 ? c->deadline_ms : 5000};
	if (ecr_new(&eo, &quick) != 0)
		quick = NULL;
	ecr *e = quick ? quick : c->ecr;
	struct ecr_identity ident;
	if (ecr_describe_registry(e, region, &id, NULL) == 0 && id && fs_name_is_account(id))
		snprintf(c->own_registry, sizeof c->own_registry, "%s", id);
	else if (ecr_get_caller_identity(e, region, &ident, NULL) == 0 &&
		 fs_name_is_account(ident.account))
		memcpy(c->own_registry, ident.account, 13);
	if (quick)
		ecr_free(quick);
	free(id);
	char key[64];
	snprintf(key, sizeof key, "%s", cred_profile_name(c->creds));
	if (c->own_registry[0]) {
		cache_meta_put(c->cache, "account", key, c->own_registry, strlen(c->own_registry));
	} else if (cache_meta_get(c->cache, "account", key, &saved, &len) == 0 &&
		   fs_name_is_account(saved)) {
		snprintf(c->own_registry, sizeof c->own_registry, "%s", saved);
		log_warn("ECR unreachable at mount: using the last known account %s", saved);
	} else {
		log_warn("ECR unreachable at mount and no account known: only -o registries= and "
			 "names typed in full are shown");
	}
	free(saved);
}


static void start_logging(const struct fs_opts *o)
{
	int level = o->debug ? LOGL_DEBUG : LOGL_INFO;
	if (o->log)
		log_init(LOG_TO_FILE, o->log, level);
	else if (o->foreground)
		log_init(LOG_TO_STDERR, NULL, level);
	else
		log_init(LOG_TO_SYSLOG, NULL, level);
}

/* Region: -o region, regions' first, then the AWS chain. */
static int setup_regions(struct fs_ctx *c, const struct cred_opts *co)
{
	char region[64] = "";
	if (c->o.regions)
		split_list(c->o.regions, &c->regions, &c->nregions);
	if (c->o.region)
		snprintf(region, sizeof region, "%s", c->o.region);
	else if (c->nregions)
		snprintf(region, sizeof region, "%s", c->regions[0]);
	else if (cred_resolve_region(co, region, sizeof region) != 0) {
		fprintf(stderr, "ecrfs: no AWS region: use -o region=REGION or set AWS_REGION\n");
		return -EINVAL;
	}
	if (!c->nregions) {
		c->regions = calloc(1, sizeof *c->regions);
		if (!c->regions || !(c->regions[0] = strdup(region)))
			return -ENOMEM;
		c->nregions = 1;
	}
	for (size_t i = 0; i < c->nregions; i++) {
		if (!fs_name_is_region(c->regions[i])) {
			fprintf(stderr, "ecrfs: %s is not a region name\n", c->regions[i]);
			return -EINVAL;
		}
	}
	return 0;
}

/* Credentials must resolve now; the network may be down. */
static int setup_credentials(struct fs_ctx *c, const struct cred_opts *co)
{
	struct cred cr;
	if (cred_provider_new(co, &c->creds) != 0)
		return -EINVAL;
	memset(&cr, 0, sizeof cr);
	if (cred_get(c->creds, &cr) != 0) {
		fprintf(stderr, "ecrfs: no AWS credentials found (environment, profile %s, SSO, "
				"container, instance role); see the log above\n",
			cred_profile_name(c->creds));
		return -EACCES;
	}
	log_info("credentials: %s", cr.source);
	cred_clear(&cr);
	return 0;
}

static int setup_cache(struct fs_ctx *c)
{
	if (!c->o.cache_dir && !(c->o.cache_dir = fs_opts_default_cache_dir()))
		return -ENOMEM;
	fs_opts_mkdirs(c->o.cache_dir);
	int rc = cache_open(c->o.cache_dir, c->cache_size, &c->cache);
	if (rc != 0)
		fprintf(stderr, "ecrfs: cache_dir %s: %s\n", c->o.cache_dir, strerror(-rc));
	return rc;
}

int fs_mount_setup(struct fs_ctx *c)
{
	struct cred_opts co = {.profile = c->o.profile, .sts_endpoint = c->o.sts_endpoint,
			       .ca_file = c->o.ca_file};
	int rc;
	start_logging(&c->o);
	if ((rc = setup_regions(c, &co)) != 0 || (rc = setup_credentials(c, &co)) != 0)
		return rc;
	/* The prober's thread waits for fs_mount_start: main forks in between. */
	struct net_http_opts ho = {.ca_file = c->o.ca_file, .insecure = c->o.insecure,
				   .defer_probes = 1};
	if ((rc = net_http_new(&ho, &c->http)) != 0)
		return rc;
	struct ecr_opts eo = {.creds = c->creds, .http = c->http, .endpoint = c->o.endpoint,
			      .sts_endpoint = c->o.sts_endpoint, .deadline_ms = c->deadline_ms};
	if ((rc = ecr_new(&eo, &c->ecr)) != 0 || (rc = setup_registries(c)) != 0 ||
	    (rc = setup_cache(c)) != 0)
		return rc;
	find_own_registry(c);
	return 0;
}

/* The blob reader asks the kernel to drop the pages of a blob that failed
 * its digest check. */
static void blob_inval(void *arg, uint64_t ino)
{
	fs_inval_inode_async(ino);
}

int fs_mount_start(struct fs_ctx *c)
{
	struct fs_blobs_cfg bc = {.cache = c->cache, .deadline_ms = c->deadline_ms,
				  .verify_strict = c->verify_strict, .inval = blob_inval};
	int rc = fs_node_init(c->ro ? NULL : wnode_put);
	net_http_start_probes(c->http);
	if (rc == 0)
		rc = fh_table_new(&c->fhs);
	if (rc == 0)
		rc = fs_blobs_new(&bc, &c->blobs);
	/* The push side is part of every read-write mount. */
	if (rc == 0 && !c->ro)
		rc = push_side_start(c);
	return rc;
}

void fs_mount_stop(struct fs_ctx *c)
{
	/* Handles first: a writer's handle holds a file of a pending version. */
	fh_table_free(c->fhs);
	c->fhs = NULL;
	if (c->push)
		push_side_stop(c);
	push_hide_free();
	fs_rootfs_shutdown(); /* its builds read through c->blobs */
	fs_blobs_free(c->blobs);
	c->blobs = NULL;
	fs_cat_shutdown();
	fs_node_shutdown();
	ctx_free(c);
}
