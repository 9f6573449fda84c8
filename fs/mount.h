/* The mount: options, handles shared by the FUSE operations, and the hooks
 * between the read side (ops.c) and the push side (ops_write.c, pending.c).
 * One fs_ctx per process (fs_ctx_get()); fields are set at mount and read-only
 * afterwards. */
#ifndef ECRFS_FS_H
#define ECRFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "fs/tree/node.h"
#include "net/cred.h"
#include "net/ecr.h"
#include "net/http.h"

struct fs_opts {
	char *source;        /* "ecr" or a 12-digit default registry */
	char *mountpoint;
	char *region;
	char *regions;       /* "a,b" */
	char *registries;    /* "ID[:PROFILE],..." */
	char *profile;
	char *endpoint;
	char *sts_endpoint;
	char *ca_file;
	int insecure;
	char *cache_dir;
	char *cache_size;    /* "10G" */
	int tag_ttl;         /* seconds, default 30 */
	int neg_ttl;         /* seconds, default 5 */
	int deadline;        /* seconds, default 30 */
	char *verify;        /* "strict" */
	char *log;
	int ro;
	int allow_other;
	int debug;
	int foreground;
	int max_threads;     /* default 16 */
	int pending_timeout; /* seconds, push side; default 600 */
	int no_create_repos; /* push side */
	int show_help, show_version;
};

struct fs_registry {
	char id[16];
	char *profile;          /* NULL: the default credentials */
	cred_provider *creds;   /* owned when profile set */
	ecr *ecr;               /* owned when profile set */
};

struct fs_blobs;

struct fs_ctx {
	struct fs_opts o;
	struct fuse_session *se;
	net_http *http;
	cred_provider *creds;   /* default credentials */
	ecr *ecr;               /* default ECR client */
	cache *cache;
	char own_registry[16];  /* caller's account; "" when unknown (offline) */
	char **regions;         /* listed regions */
	size_t nregions;
	struct fs_registry *regs; /* listed registries besides our own */
	size_t nregs;
	uid_t uid;
	gid_t gid;
	int verify_strict;
	int ro;
	uint64_t cache_size;
	int deadline_ms;
	time_t mounted_at;
	struct fs_blobs *blobs; /* the blob reader (fs/blob), from mount to unmount */
};

struct fs_ctx *fs_ctx_get(void);

/* The ECR client for a registry (its profile's, or the default). */
ecr *fs_ecr_for(struct fs_ctx *c, const char *registry);

/* ---- for the push side ---- */
/* Invalidates the kernel's entry dir/name (name NULL: dir's whole listing and
 * attributes) and the listing caches under dir, from a worker thread (safe to
 * call inside any handler, also of dir itself). */
void fs_notify_changed(struct fs_node *dir, const char *name);
/* Forgets the cached tag/repository listings of a repository or region. */
void fs_cat_invalidate(const char *registry, const char *region, const char *repo);

/* Fills st for any node (read side), including pending nodes through
 * fs_push_getattr. Returns 0 or -errno. */
int fs_getattr_node(struct fs_node *n, struct stat *st);
/* Entry timeouts used by LOOKUP for a node kind. */
double fs_entry_timeout(const struct fs_node *n);

/* Implemented by the push side when it is linked in (weak references). */
void fs_ops_write_install(struct fuse_lowlevel_ops *ops) __attribute__((weak));
/* Attributes of a pending node. */
int fs_push_getattr(struct fs_node *n, struct stat *st) __attribute__((weak));
/* Text of .ecrfs/pending (malloc'd). */
char *fs_push_pending_text(void) __attribute__((weak));
/* user.ecr.push_state etc. on a node: value length, -ENODATA when none.
 * With size 0 returns the length only. */
ssize_t fs_push_getxattr(struct fs_node *n, const char *name, char *buf, size_t size)
	__attribute__((weak));
/* Called at unmount. */
void fs_push_shutdown(void) __attribute__((weak));

#endif
