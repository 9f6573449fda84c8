/* The mount object: options, and every handle the mount owns (HTTP pool,
 * credentials, ECR clients, cache, the push side). Made by fs/mount.c at
 * start, handed to libfuse as the session's userdata (fuse_req_userdata),
 * passed explicitly to fs/tree, fs/blob and fs/push; fields are set before
 * the session starts and read-only afterwards. */
#ifndef ECRFS_FS_MOUNT_H
#define ECRFS_FS_MOUNT_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "cache/cache.h"
#include "net/cred.h"
#include "net/ecr.h"
#include "net/http.h"

struct fuse_session;
struct fs_push_side; /* fs/fuse/push_nodes.h: the push side, NULL under -o ro */
struct fs_fh_table;  /* fs/fuse/handles.h */
struct fs_blobs;     /* fs/blob/blob.h */

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
	int show_referrers;  /* list signature/SBOM tags and untagged referrers */
	int rootfs_publish;  /* push TAG@rootfs indexes built here as a referrer */
	int show_help, show_version;
};

struct fs_registry {
	char id[16];
	char *profile;          /* NULL: the default credentials */
	cred_provider *creds;   /* owned when profile set */
	ecr *ecr;               /* owned when profile set */
};


/* Requests the kernel sent, by FUSE operation (.ecrfs/stats "fuse"):
 * atomics, counted by fs/fuse/ as each handler starts. */
enum fs_op {
	FS_OP_LOOKUP,
	FS_OP_FORGET, /* FORGET and each entry of a BATCH_FORGET */
	FS_OP_GETATTR,
	FS_OP_OPENDIR,
	FS_OP_READDIR,
	FS_OP_READDIRPLUS,
	FS_OP_GETXATTR,
	FS_OP_LISTXATTR,
	FS_OP_OPEN,
	FS_OP_READ,
	FS_OP_COUNT
};

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
	struct fs_push_side *push; /* NULL under -o ro */
	struct fs_fh_table *fhs;   /* open handles (fs/fuse/handles.h) */
	struct fs_blobs *blobs; /* the blob reader (fs/blob), from mount to unmount */
	uint64_t ops[FS_OP_COUNT]; /* requests by operation; atomic, the one mutable field */
	/* Entries READDIRPLUS answered with a node (each one LOOKUP saved). */
	uint64_t plus_entries;
};

static inline void fs_op_count(struct fs_ctx *c, enum fs_op op, uint64_t n)
{
	__atomic_add_fetch(&c->ops[op], n, __ATOMIC_RELAXED);
}

/* The ECR client for a registry (its profile's, or the default). */
static inline ecr *fs_ecr_for(struct fs_ctx *c, const char *registry)
{
	for (size_t i = 0; registry && i < c->nregs; i++)
		if (c->regs[i].ecr && !strcmp(c->regs[i].id, registry))
			return c->regs[i].ecr;
	return c->ecr;
}

#endif
