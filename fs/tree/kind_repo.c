/* A region (repositories) and a namespace: a repository path prefix that
 * may itself be a repository (then it lists its tags and untagged images
 * too). A tag N owns the plain name N; the namespace N is then "N@". */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/kinds_i.h"
#include "fs/tree/names.h"
#include "fs/tree/views.h"
#include "net/log.h"

int ns_exists(const struct fs_list *repos, const char *prefix, const struct ecr_repo **repo)
{
	return fs_list_find_ns(repos, prefix, repo);
}

int repo_protects_untagged(const struct ecr_repo *r)
{
	return r && (r->immutable || r->mutability == ECR_MUT_IMMUTABLE_WITH_EXCLUSION);
}

/* A repository missing here but present in another listed region is the
 * classic wrong-region mistake: say where it is, once per name. */
static void hint_other_region(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo)
{
	/* Protects last_hint: the last name hinted, so a shell's repeated
	 * lookups log one line. */
	static pthread_mutex_t hint_lock = PTHREAD_MUTEX_INITIALIZER;
	static char last_hint[600];
	char key[600];
	snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
	for (size_t i = 0; i < c->nregions; i++) {
		const char *other = c->regions[i];
		struct fs_list *l = NULL;
		const struct ecr_repo *r;
		if (!strcmp(other, region) || fs_cat_repos(c, registry, other, &l) != 0)
			continue;
		int found = ns_exists(l, repo, &r);
		fs_list_put(l);
		if (!found)
			continue;
		pthread_mutex_lock(&hint_lock);
		int fresh = strcmp(last_hint, key) != 0;
		if (fresh)
			snprintf(last_hint, sizeof last_hint, "%s", key);
		pthread_mutex_unlock(&hint_lock);
		if (fresh)
			log_warn("repository path '%s' not found in registry %s region %s; it exists in "
				 "region %s: use %s/%s/%s",
				 repo, registry, region, other, registry, other, repo);
		return;
	}
}

static char *join_repo(const char *prefix, const char *name)
{
	char *s = NULL;
	if (!prefix || !*prefix)
		return strdup(name);
	if (asprintf(&s, "%s/%s", prefix, name) < 0)
		return NULL;
	return s;
}

static const char *prefix_of(const struct fs_node *dir)
{
	return dir->kind == FS_N_REGION ? "" : dir->repo;
}

/* @sha256-<hex>: an image of this repository by digest. */
static int lookup_digest_dir(struct fs_ctx *c, struct fs_node *dir, struct fs_found *f)
{
	int rc = fs_cat_images(c, dir->registry, dir->region, dir->repo, &f->imgs);
	if (rc)
		return rc;
	const struct ecr_image *im = fs_list_find_digest(f->imgs, f->digest);
	if (!im)
		return -ENOENT;
	f->t.kind = FS_N_IMAGE;
	f->t.digest = f->digest;
	f->t.mtime = im->pushed_at;
	f->t.atime = im->last_pulled_at;
	f->t.immutable = dir->immutable;
	return 0;
}

/* The namespace `base` below dir (found as "base@" or "base"). */
static int lookup_namespace(struct fs_ctx *c, struct fs_node *dir, const char *base,
			    struct fs_found *f, int hint)
{
	const struct ecr_repo *r;
	f->sub = join_repo(prefix_of(dir), base);
	if (!f->sub)
		return -ENOMEM;
	if (!ns_exists(f->repos, f->sub, &r)) {
		if (hint)
			hint_other_region(c, dir->registry, dir->region, f->sub);
		return -ENOENT;
	}
	f->t.kind = FS_N_NAMESPACE;
	f->t.repo = f->sub;
	f->t.immutable = repo_protects_untagged(r);
	return 0;
}

/* A tag of the repository dir; -ENOENT when dir has no such tag. */
static int lookup_tag(struct fs_ctx *c, struct fs_node *dir, const char *name, struct fs_found *f)
{
	const struct ecr_repo *r;
	if (!ns_exists(f->repos, dir->repo, &r) || !r)
		return -ENOENT;
	int rc = fs_cat_images(c, dir->registry, dir->region, dir->repo, &f->imgs);
	if (rc)
		return rc;
	const struct ecr_image *im = fs_list_find_tag(f->imgs, name);
	if (!im)
		return -ENOENT;
	f->t.kind = FS_N_IMAGE;
	f->t.tag = name;
	f->t.digest = im->digest;
	f->t.mtime = im->pushed_at;
	f->t.atime = im->last_pulled_at;
	/* The repository's setting with its exclusion filters applied. */
	f->t.immutable = ecr_repo_tag_immutable(r, name);
	return 0;
}

static int repo_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
		       struct fs_found *f)
{
	int ns = dir->kind == FS_N_NAMESPACE;
	char base[256];
	enum fs_view view;
	if (fs_name_view(name, base, sizeof base, &view))
		return fs_view_lookup(c, dir, base, view, f);
	if (ns && fs_name_digest_dir(name, f->digest, sizeof f->digest))
		return lookup_digest_dir(c, dir, f);
	if (name[0] && name[strlen(name) - 1] == '@') {
		if (!ns || !fs_name_ns_alias_base(name, base, sizeof base))
			return -ENOENT;
		int rc = fs_cat_repos(c, dir->registry, dir->region, &f->repos);
		return rc ? rc : lookup_namespace(c, dir, base, f, 0);
	}
	int tag_ok = ns && fs_name_is_tag(name);
	int comp_ok = fs_name_is_repo_component(name);
	if (!tag_ok && !comp_ok)
		return -ENOENT; /* no network call for names ECR cannot have */
	int rc = fs_cat_repos(c, dir->registry, dir->region, &f->repos);
	if (rc)
		return rc;
	if (tag_ok) {
		rc = lookup_tag(c, dir, name, f);
		if (rc != -ENOENT)
			return rc;
	}
	return comp_ok ? lookup_namespace(c, dir, name, f, 1) : -ENOENT;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names below prefix: first components of deeper repositories. */
static int list_namespaces(struct fs_dirlist *l, struct fs_node *dir, const struct fs_list *repos,
			   const char *prefix, const struct fs_list *imgs, size_t npend)
{
	size_t pl = strlen(prefix);
	const char **names = calloc(repos->repos.n + 1, sizeof *names);
	size_t nn = 0;
	int rc = 0;
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < repos->repos.n; i++) {
		const char *r = repos->repos.v[i].name;
		if (pl && (strncmp(r, prefix, pl) != 0 || r[pl] != '/'))
			continue;
		names[nn++] = pl ? r + pl + 1 : r;
	}
	qsort(names, nn, sizeof *names, cmp_str);
	char comp[260], shown[262], last[260] = "";
	for (size_t i = 0; i < nn && rc == 0; i++) {
		const char *slash = strchr(names[i], '/');
		size_t cl = slash ? (size_t)(slash - names[i]) : strlen(names[i]);
		if (cl + 2 > sizeof comp)
			continue;
		memcpy(comp, names[i], cl);
		comp[cl] = 0;
		if (!strcmp(comp, last))
			continue;
		snprintf(last, sizeof last, "%s", comp);
		if (imgs && fs_list_find_tag(imgs, comp))
			fs_name_ns_alias(comp, shown, sizeof shown); /* the tag owns the name */
		else
			snprintf(shown, sizeof shown, "%s", comp);
		if (!fs_dirlist_has(l, shown, npend))
			rc = fs_dirlist_add(l, shown, S_IFDIR, name_ino(dir, shown));
	}
	free(names);
	return rc;
}

/* The tags and untagged images of the repository dir->repo. Referrers
 * (images whose manifest has a subject: signatures, SBOMs, attestations)
 * and tags made for them (cosign's sha256-<hex>.sig) are left out unless
 * -o show_referrers: they are found by name. */
static int list_images(struct fs_ctx *c, struct fs_dirlist *l, struct fs_node *dir,
		       const struct fs_list *imgs, size_t npend)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < imgs->images.n; i++) {
		const struct ecr_image *im = &imgs->images.v[i];
		if (im->subject_digest && !c->o.show_referrers)
			continue;
		for (size_t t = 0; rc == 0 && t < im->ntags; t++)
			if ((c->o.show_referrers || !fs_name_is_referrer_tag(im->tags[t])) &&
			    !fs_dirlist_has(l, im->tags[t], npend))
				rc = fs_dirlist_add(l, im->tags[t], S_IFDIR,
						    name_ino(dir, im->tags[t]));
		if (im->ntags == 0 && rc == 0 && fs_name_is_digest(im->digest)) {
			char dn[80];
			snprintf(dn, sizeof dn, "@sha256-%s", im->digest + 7);
			if (!fs_dirlist_has(l, dn, npend))
				rc = fs_dirlist_add(l, dn, S_IFDIR, name_ino(dir, dn));
		}
	}
	return rc;
}

static int repo_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	struct fs_list *repos = NULL, *imgs = NULL;
	const char *prefix = prefix_of(dir);
	const struct ecr_repo *r = NULL;
	int rc = fs_cat_repos(c, dir->registry, dir->region, &repos);
	if (rc)
		goto out;
	if (*prefix && ns_exists(repos, prefix, &r) && r) {
		if ((rc = fs_cat_images(c, dir->registry, dir->region, prefix, &imgs)) != 0)
			goto out;
		rc = list_images(c, l, dir, imgs, npend);
	}
	if (rc == 0)
		rc = list_namespaces(l, dir, repos, prefix, imgs, npend);
out:
	fs_list_put(repos);
	fs_list_put(imgs);
	return rc;
}

const struct fs_kind_ops kind_region = {repo_lookup, repo_list, attr_dir, ttl_hour, ttl_tag};
const struct fs_kind_ops kind_namespace = {repo_lookup, repo_list, attr_dir, ttl_tag, ttl_tag};
