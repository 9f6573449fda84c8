/* TAG@referrers/: one @sha256-<hex>/ per referrer of the image (signatures,
 * SBOMs, attestations: manifests whose subject is this image), from
 * ListImageReferrers. Each is the repository's image directory by digest:
 * the same FS_N_IMAGE node a digest directory gets (kind_repo.c), so its
 * layout, reads and `skopeo copy oci:DIR:sha256-<hex>` work unchanged. The
 * list is kept on the VIEW node for the listing TTL (tag_ttl). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/kinds_i.h"
#include "fs/tree/names.h"
#include "fs/tree/view_ecr.h"

/* The VIEW node's vdata. */
struct refs {
	pthread_mutex_t mu; /* protects digests, n, at */
	char **digests;
	size_t n;
	time_t at; /* when fetched; 0: never */
};

static void refs_free(void *vdata)
{
	struct refs *r = vdata;
	if (!r)
		return;
	ecr_strv_free(r->digests, r->n);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static struct refs *refs_of(struct fs_node *view)
{
	struct refs *r = fs_node_vdata(view);
	if (r)
		return r;
	if (!(r = calloc(1, sizeof *r)))
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	return fs_node_set_vdata(view, r);
}

/* ListImageReferrers of the view's image (every page, any status: archived
 * referrers are listed like archived images) into a fresh list. */
static int fetch(struct fs_ctx *c, const struct fs_node *view, char ***out, size_t *nout)
{
	struct ecr_where w = {view->registry, view->region, view->repo};
	struct ecr_referrer_list l = {0};
	int rc = ecr_list_image_referrers(fs_ecr_for(c, view->registry), &w, view->digest, NULL, 0,
					  1, &l, NULL);
	*out = NULL;
	*nout = 0;
	if (rc)
		goto out;
	rc = -ENOMEM;
	if (!(*out = calloc(l.n + 1, sizeof **out)))
		goto out;
	for (; *nout < l.n; (*nout)++)
		if (!((*out)[*nout] = strdup(l.v[*nout].digest)))
			goto out;
	rc = 0;
out:
	if (rc) {
		ecr_strv_free(*out, *nout);
		*out = NULL;
		*nout = 0;
	}
	ecr_referrer_list_free(&l);
	return rc;
}

/* The referrers' digests, fetched again after tag_ttl: a copy for l, or
 * only whether digest is one of them (*found). */
static int refs_get(struct fs_ctx *c, struct fs_node *view, const char *digest, int *found,
		    struct fs_dirlist *l)
{
	struct refs *r = refs_of(view);
	char **fresh = NULL, dn[80];
	size_t nfresh = 0;
	int rc = 0;

	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&r->mu);
	int stale = !r->at || time(NULL) - r->at >= c->o.tag_ttl;
	pthread_mutex_unlock(&r->mu);
	/* Fetched outside the lock: a slow ECR holds no other reader. */
	if (stale && (rc = fetch(c, view, &fresh, &nfresh)) != 0)
		return rc;
	pthread_mutex_lock(&r->mu);
	if (stale) {
		ecr_strv_free(r->digests, r->n);
		r->digests = fresh;
		r->n = nfresh;
		r->at = time(NULL);
	}
	for (size_t i = 0; i < r->n && rc == 0; i++) {
		if (found && !strcmp(r->digests[i], digest))
			*found = 1;
		if (l && fs_name_is_digest(r->digests[i])) {
			snprintf(dn, sizeof dn, "@sha256-%s", r->digests[i] + 7);
			rc = fs_dirlist_add(l, dn, S_IFDIR, name_ino(view, dn));
		}
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* @sha256-<hex>: a referrer, as lookup_digest_dir (kind_repo.c) makes the
 * repository's digest directory. */
static int ref_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name, struct fs_found *f)
{
	const struct ecr_repo *r = NULL;
	int found = 0;
	if (!fs_name_digest_dir(name, f->digest, sizeof f->digest))
		return -ENOENT;
	int rc = refs_get(c, dir, f->digest, &found, NULL);
	if (rc || !found)
		return rc ? rc : -ENOENT;
	if ((rc = fs_cat_repos(c, dir->registry, dir->region, &f->repos)) != 0 ||
	    (rc = fs_cat_images(c, dir->registry, dir->region, dir->repo, &f->imgs)) != 0)
		return rc;
	ns_exists(f->repos, dir->repo, &r);
	/* A referrer newer than the image listing takes its subject's time
	 * until the listing catches up. */
	const struct ecr_image *im = fs_list_find_digest(f->imgs, f->digest);
	f->t.kind = FS_N_IMAGE;
	f->t.digest = f->digest;
	f->t.mtime = im ? im->pushed_at : 0;
	f->t.immutable = repo_protects_untagged(r);
	return 0;
}

static int ref_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	return refs_get(c, dir, NULL, NULL, l);
}

/* The view itself is read only: its entries come and go with ECR. */
static void ref_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	attr_dir(c, n, st, 1);
}

static const struct fs_kind_ops refs_root = {ref_lookup, ref_list, ref_attr, ttl_tag, ttl_tag};

const struct fs_view_ops fs_view_referrers = {&refs_root, NULL, refs_free, NULL, NULL};
