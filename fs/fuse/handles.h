/* Open files and directories: a table of reference-counted handles. The
 * kernel's file handle (fi->fh) names a slot and its generation, so a
 * released or reused slot is never mistaken for a live one. The table holds
 * one reference from OPEN to RELEASE; every handler using a handle holds
 * another for its duration (fh_get/fh_put), so a RELEASE that arrives while
 * a READ or WRITE of the same handle still runs frees nothing under it:
 * the last reference frees. FUSE-free apart from the names. */
#ifndef ECRFS_FS_FUSE_HANDLES_H
#define ECRFS_FS_FUSE_HANDLES_H

#include <stddef.h>
#include <stdint.h>

#include "fs/push/pending.h"
#include "fs/tree/image.h"
#include "fs/tree/tree.h"

enum fh_kind {
	FH_DIR = 1, /* a directory listing taken at OPENDIR */
	FH_MEM,     /* bytes in memory: manifests, index.json, control files */
	FH_BLOB,    /* a blob read through the cache */
	FH_WRITER,  /* a file of a push, open for writing */
	FH_SETTINGS, /* a REPO@settings/ file open for writing: bytes in data/len,
	                sent at FLUSH (fuse/views_ecr.c) */
	FH_ROOTFS,  /* a file of TAG@rootfs or TAG@layers (tree/view_rootfs.h) */
};

struct fs_rstate;
struct fs_rootfs_file;

struct fs_fh {
	enum fh_kind kind;
	int refs;             /* atomic */
	struct fs_dirlist dir;  /* FH_DIR */
	char *data;           /* FH_MEM */
	size_t len;
	int owned;            /* data malloc'd by the handle */
	struct fs_image *img; /* FH_MEM, FH_BLOB: referenced while open */
	struct fs_rstate *rs; /* FH_BLOB */
	pending_file *pf;     /* FH_WRITER: referenced */
	struct fs_node *node; /* FH_SETTINGS: the file, referenced */
	int dirty;            /* FH_SETTINGS: written since the last FLUSH */
	struct fs_rootfs_file *rf; /* FH_ROOTFS */
};

struct fs_fh_table;

int fh_table_new(struct fs_fh_table **out);
/* Frees every handle the kernel never released (at unmount: releases are
 * asynchronous and may be dropped when the mount goes). */
void fh_table_free(struct fs_fh_table *t);

/* A new handle of kind k with one reference (the caller's). */
struct fs_fh *fh_new(enum fh_kind k);
/* Puts h in the table (which takes its own reference): *fh for the kernel. */
int fh_insert(struct fs_fh_table *t, struct fs_fh *h, uint64_t *fh);
/* The handle of fh with a new reference, or NULL when fh is not open. */
struct fs_fh *fh_get(struct fs_fh_table *t, uint64_t fh);
/* RELEASE: takes fh out of the table and hands its reference to the
 * caller (NULL when fh is not open). */
struct fs_fh *fh_remove(struct fs_fh_table *t, uint64_t fh);
/* Drops a reference; the last one frees the handle (closing its reader,
 * dropping its pending file). */
void fh_put(struct fs_fh *h);
/* Open handles, for .ecrfs/stats. */
size_t fh_count(struct fs_fh_table *t);

#endif
