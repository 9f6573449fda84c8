/* The views that show what ECR keeps beside an image or a repository:
 * TAG@scan.json (view_scan.c), TAG@referrers/ (view_referrers.c) and
 * REPO@settings/ (view_settings.c, settings_io.c). The handlers of their
 * nodes are in views.c's table; these are the calls fs/fuse makes to open,
 * write and remove their files. Every file here is read fresh at each open
 * (the glue sets direct_io; sizes are 0 like .ecrfs/ files). */
#ifndef ECRFS_FS_TREE_VIEW_ECR_H
#define ECRFS_FS_TREE_VIEW_ECR_H

#include <stddef.h>

#include "fs/tree/tree.h"
#include "fs/tree/views.h"

extern const struct fs_view_ops fs_view_scan, fs_view_referrers, fs_view_settings;

/* ---- TAG@scan.json ---- */
/* 1 when n is a TAG@scan.json file. */
int fs_scan_is_file(const struct fs_node *n);
/* The scan findings of the VIEW node n's image as pretty JSON (every page);
 * "{}" when the image has no scan. malloc'd. */
int fs_scan_render(struct fs_ctx *c, const struct fs_node *n, char **out, size_t *len);
/* user.ecr.scan.critical ... .undefined: names (NULL-terminated) and the
 * value of one from the image's listing entry (malloc'd; NULL when ECR sent
 * no summary). */
extern const char *const fs_scan_xattr_names[];
char *fs_scan_xattr(const struct ecr_image *im, const char *name);

/* ---- REPO@settings/ ---- */
/* Caps what one open may write to a settings file. */
#define FS_SETTINGS_MAX (1u << 20)

/* 1 when n is a file of a REPO@settings/ directory. */
int fs_settings_is_file(const struct fs_node *n);
/* 1 when dir is a REPO@settings/ directory. */
int fs_settings_is_dir(const struct fs_node *dir);
/* 1 when the file n may be written (not encryption.json, nor the preview's
 * result). */
int fs_settings_writable(const struct fs_node *n);
/* The file's text as ECR gives it now (malloc'd); -ENOENT when the policy
 * it shows does not exist. */
int fs_settings_read(struct fs_ctx *c, const struct fs_node *n, char **out, size_t *len);
/* Sends text (len bytes, NUL-terminated) with the file's one Put call:
 * -EINVAL for text that is not what the file takes or that ECR refuses
 * (one log line says why). */
int fs_settings_write(struct fs_ctx *c, const struct fs_node *n, const char *text, size_t len);
/* The node of dir/name for a CREATE (referenced): -EACCES for files that
 * cannot be written, -EPERM (logged) for names the directory never has. */
int fs_settings_create(struct fs_ctx *c, struct fs_node *dir, const char *name,
		       struct fs_node **out);
/* rm dir/name: deletes the policy a policy file shows (-ENOENT when there
 * is none); -EPERM for the other files. */
int fs_settings_unlink(struct fs_ctx *c, struct fs_node *dir, const char *name);

#endif
