/* REPO@settings/: a repository's settings as files (settings_io.c says
 * what each holds). The directory is found next to the repository's
 * directory; its files are FS_N_VIEW_ENTRY nodes whose vdata is their row
 * of the table below. A policy file exists while ECR has the policy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/kinds_i.h"
#include "fs/tree/view_ecr.h"
#include "fs/tree/view_settings_i.h"
#include "net/log.h"

struct settings_file {
	const char *name;
	enum settings_id id;
	int writable;
	int optional; /* exists only while ECR has it */
};

static struct settings_file files[] = {
    {"mutability.json", SF_MUTABILITY, 1, 0},
    {"lifecycle-policy.json", SF_LIFECYCLE, 1, 1},
    {"repository-policy.json", SF_REPO_POLICY, 1, 1},
    {"scanning.json", SF_SCANNING, 1, 0},
    {"encryption.json", SF_ENCRYPTION, 0, 0},
    {"lifecycle-preview.json", SF_PREVIEW, 1, 0},
    {"lifecycle-preview-result.json", SF_PREVIEW_RESULT, 0, 1},
};
#define NFILES (sizeof files / sizeof files[0])

static struct settings_file *by_name(const char *name)
{
	for (size_t i = 0; i < NFILES; i++)
		if (!strcmp(files[i].name, name))
			return &files[i];
	return NULL;
}

static ecr *ecr_of(struct fs_ctx *c, const struct fs_node *n, struct ecr_where *w)
{
	w->registry_id = n->registry;
	w->region = n->region;
	w->repository = n->repo;
	return fs_ecr_for(c, n->registry);
}

/* 0 when dir/f exists now (asks ECR for the optional ones). */
static int exists(struct fs_ctx *c, const struct fs_node *dir, const struct settings_file *f)
{
	struct ecr_where w;
	char *text = NULL;
	size_t len;
	if (!f->optional)
		return 0;
	int rc = settings_io_read(ecr_of(c, dir, &w), &w, f->id, &text, &len);
	free(text);
	return rc;
}

static int settings_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
			   struct fs_found *f)
{
	struct settings_file *sf = by_name(name);
	int rc = sf ? exists(c, dir, sf) : -ENOENT;
	if (rc)
		return rc;
	f->t.kind = FS_N_VIEW_ENTRY;
	f->t.vdata = sf;
	return 0;
}

static int settings_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	int rc = 0;
	for (size_t i = 0; i < NFILES && rc == 0; i++)
		if (exists(c, dir, &files[i]) == 0) /* a policy ECR cannot give is left out */
			rc =
			    fs_dirlist_add(l, files[i].name, S_IFREG, name_ino(dir, files[i].name));
	return rc;
}

/* Settings are written whatever the repository's tag mutability: only
 * -o ro makes them read only. */
static void settings_dir_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	attr_dir(c, n, st, c->ro);
}

static void settings_file_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	const struct settings_file *sf = n->vdata;
	st->st_mode = S_IFREG | (sf && sf->writable && !c->ro ? 0644 : 0444);
	st->st_nlink = 1;
	st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
}

/* Anyone (the console, the CLI) may change a setting: nothing is kept. */
static double ttl_zero(const struct fs_ctx *c, const struct fs_node *n) { return 0.0; }

/* Only a repository (not a bare prefix) has settings. */
static int settings_has(struct fs_ctx *c, const struct fs_found *x)
{
	const struct ecr_repo *r = NULL;
	return x->repos && ns_exists(x->repos, x->t.repo, &r) && r;
}

static const struct fs_kind_ops settings_root = {settings_lookup, settings_list, settings_dir_attr,
						 ttl_tag, ttl_tag};
static const struct fs_kind_ops settings_entry = {NULL, NULL, settings_file_attr, ttl_zero,
						  ttl_zero};

const struct fs_view_ops fs_view_settings = {&settings_root, &settings_entry, NULL, settings_has,
					      NULL};

/* ---- calls of the FUSE glue ---- */

int fs_settings_is_dir(const struct fs_node *dir)
{
	return dir->kind == FS_N_VIEW && dir->view == FS_VIEW_SETTINGS;
}

int fs_settings_is_file(const struct fs_node *n)
{
	return n->kind == FS_N_VIEW_ENTRY && n->view == FS_VIEW_SETTINGS && n->vdata;
}

int fs_settings_writable(const struct fs_node *n)
{
	const struct settings_file *sf = n->vdata;
	return fs_settings_is_file(n) && sf->writable;
}

int fs_settings_read(struct fs_ctx *c, const struct fs_node *n, char **out, size_t *len)
{
	const struct settings_file *sf = n->vdata;
	struct ecr_where w;
	return settings_io_read(ecr_of(c, n, &w), &w, sf->id, out, len);
}

int fs_settings_write(struct fs_ctx *c, const struct fs_node *n, const char *text, size_t len)
{
	const struct settings_file *sf = n->vdata;
	struct ecr_where w;
	if (!sf->writable)
		return -EACCES;
	int rc = settings_io_write(ecr_of(c, n, &w), &w, sf->id, sf->name, text, len);
	/* Listings keep the repository's mutability and scanning setting. */
	if (rc == 0 && (sf->id == SF_MUTABILITY || sf->id == SF_SCANNING))
		fs_cat_invalidate(n->registry, n->region, n->repo);
	return rc;
}

int fs_settings_create(struct fs_ctx *c, struct fs_node *dir, const char *name,
		       struct fs_node **out)
{
	struct settings_file *sf = by_name(name);
	struct fs_node_tmpl t = {.kind = FS_N_VIEW_ENTRY, .vdata = sf};
	*out = NULL;
	if (!sf) {
		log_err("create %s@settings/%s: the directory holds only its settings files "
			"(mutability.json, lifecycle-policy.json, repository-policy.json, "
			"scanning.json, lifecycle-preview.json); write one of them in place",
			dir->repo, name);
		return -EPERM;
	}
	if (!sf->writable)
		return -EACCES;
	*out = fs_node_make(dir, name, &t);
	return *out ? 0 : -ENOMEM;
}

int fs_settings_unlink(struct fs_ctx *c, struct fs_node *dir, const char *name)
{
	const struct settings_file *sf = by_name(name);
	struct ecr_where w;
	ecr *e = ecr_of(c, dir, &w);
	if (!sf)
		return -ENOENT;
	if (sf->id == SF_LIFECYCLE)
		return ecr_delete_lifecycle_policy(e, &w, NULL);
	if (sf->id == SF_REPO_POLICY)
		return ecr_delete_repository_policy(e, &w, NULL);
	return -EPERM; /* the other files always exist */
}
