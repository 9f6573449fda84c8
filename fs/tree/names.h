/* Syntax of the names the tree accepts (doc/ARCHITECTURE.md, "ECR naming rules"). Pure functions: a
 * name that fails them is ENOENT without any network call. */
#ifndef ECRFS_FS_NAMES_H
#define ECRFS_FS_NAMES_H

#include <stddef.h>

/* 12 decimal digits. */
int fs_name_is_account(const char *s);
/* AWS region syntax: "us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1". */
int fs_name_is_region(const char *s);
/* ECR tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
int fs_name_is_tag(const char *s);
/* One '/'-separated component of a repository name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
int fs_name_is_repo_component(const char *s);
/* A whole repository name: components joined by '/', 2..256 chars. */
int fs_name_is_repo(const char *s);
/* "sha256:<64 lowercase hex>" */
int fs_name_is_digest(const char *s);
/* "@sha256-<hex>" -> "sha256:<hex>" into out (72 bytes). Returns 1 on match. */
int fs_name_digest_dir(const char *name, char *out, size_t outsize);

/* Derived views: "X@word" next to a tag, digest directory or repository X.
 * Resolved by name, never listed. */
enum fs_view {
	FS_VIEW_NONE = 0,
	FS_VIEW_ROOTFS,    /* TAG@rootfs/: the merged root filesystem */
	FS_VIEW_LAYERS,    /* TAG@layers/N/: each layer's files as stored */
	FS_VIEW_REFERRERS, /* TAG@referrers/: one OCI layout per referrer */
	FS_VIEW_SCAN,      /* TAG@scan.json: the image's scan findings */
	FS_VIEW_SETTINGS,  /* REPO@settings/: the repository's settings as files */
};
/* 1 when name is "X@word" with word a view's name: X into base, the view
 * into *view. */
int fs_name_view(const char *name, char *base, size_t basesize, enum fs_view *view);
/* The word of a view ("rootfs"), NULL for FS_VIEW_NONE. */
const char *fs_view_word(enum fs_view v);

/* A tag made for a referrer rather than an image a user runs: the OCI
 * referrers tag schema ("sha256-<hex>") and cosign's "sha256-<hex>.sig",
 * ".att", ".sbom". */
int fs_name_is_referrer_tag(const char *s);

/* The namespace N when a tag N owns the plain name: "N@". The one place
 * the form is made (fs_name_ns_alias) and read (fs_name_ns_alias_base:
 * 1 and the base into out when name is "N@" with N a repository name
 * component). */
int fs_name_ns_alias(const char *comp, char *out, size_t outsize);
int fs_name_ns_alias_base(const char *name, char *out, size_t outsize);

#endif
