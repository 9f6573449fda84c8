/* The top of the tree: the root (registries), .ecrfs/ and its control
 * files, a registry (regions). */
#include <errno.h>
#include <string.h>

#include "fs/tree/ctl.h"
#include "fs/tree/kinds_i.h"
#include "fs/tree/names.h"

static double ttl_zero(const struct fs_ctx *c, const struct fs_node *n)
{
	return 0.0;
}

static int root_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
		       struct fs_found *f)
{
	if (!strcmp(name, ".ecrfs")) {
		f->t.kind = FS_N_CTL_DIR;
		return 0;
	}
	if (!fs_name_is_account(name))
		return -ENOENT;
	f->t.kind = FS_N_REGISTRY;
	f->t.registry = name;
	return 0;
}

static int root_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l, size_t npend)
{
	int rc = fs_dirlist_add(l, ".ecrfs", S_IFDIR, name_ino(dir, ".ecrfs"));
	if (rc == 0 && c->own_registry[0])
		rc = fs_dirlist_add(l, c->own_registry, S_IFDIR, name_ino(dir, c->own_registry));
	for (size_t i = 0; rc == 0 && i < c->nregs; i++)
		if (!fs_dirlist_has(l, c->regs[i].id, l->n))
			rc = fs_dirlist_add(l, c->regs[i].id, S_IFDIR, name_ino(dir, c->regs[i].id));
	return rc;
}

const struct fs_kind_ops kind_root = {root_lookup, root_list, attr_dir, ttl_hour, ttl_tag};

static int ctl_dir_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
			  struct fs_found *f)
{
	f->t.kind = FS_N_CTL_FILE;
	f->t.ctl = fs_ctl_by_name(name);
	return f->t.ctl ? 0 : -ENOENT;
}

static int ctl_dir_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l,
			size_t npend)
{
	int rc = 0;
	for (int i = 1; rc == 0 && fs_ctl_name(i); i++)
		rc = fs_dirlist_add(l, fs_ctl_name(i), S_IFREG, name_ino(dir, fs_ctl_name(i)));
	return rc;
}

static void ctl_dir_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
}

const struct fs_kind_ops kind_ctl_dir = {ctl_dir_lookup, ctl_dir_list, ctl_dir_attr, ttl_hour,
					 ttl_tag};

static void ctl_file_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
}

/* Control files change at every read: attributes are never cached. */
const struct fs_kind_ops kind_ctl_file = {NULL, NULL, ctl_file_attr, ttl_hour, ttl_zero};

static int registry_lookup(struct fs_ctx *c, struct fs_node *dir, const char *name,
			   struct fs_found *f)
{
	if (!fs_name_is_region(name))
		return -ENOENT;
	f->t.kind = FS_N_REGION;
	f->t.region = name;
	return 0;
}

static int registry_list(struct fs_ctx *c, struct fs_node *dir, struct fs_dirlist *l,
			 size_t npend)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < c->nregions; i++)
		rc = fs_dirlist_add(l, c->regions[i], S_IFDIR, name_ino(dir, c->regions[i]));
	return rc;
}

const struct fs_kind_ops kind_registry = {registry_lookup, registry_list, attr_dir, ttl_hour,
					  ttl_tag};
