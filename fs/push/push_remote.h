/* The remote side of a push, one repository at a time: the few ECR calls
 * the uploader and the commit make. A table of functions so the push engine
 * is tested without a network (tests/unit/test_push_*.c give a fake); the
 * real one forwards to net/ecr.h. */
#ifndef ECRFS_PUSH_REMOTE_H
#define ECRFS_PUSH_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "net/ecr.h"

/* Every function returns 0 or -errno (ecr_errno's mapping). */
struct push_remote_ops {
	/* BatchCheckLayerAvailability: available[i] = 1 when present. */
	int (*check_layers)(void *ctx, const char *const *digests, size_t n, int *available);
	int (*initiate)(void *ctx, char **upload_id, int64_t *part_size);
	/* -ERANGE with *last_valid (lastValidByteReceived, -1 if unknown) on
	 * InvalidLayerPartException; -ESTALE on UploadNotFoundException. */
	int (*upload_part)(void *ctx, const char *upload_id, uint64_t first_byte, const void *data,
			   size_t len, int64_t *last_valid);
	/* Optional (NULL: upload_part only): a part sent as one body built in
	 * place in the uploader's buffer (net/ecr.h ecr_upload_layer_part_in):
	 * part_room(len) bytes, the part at their end; errors as upload_part. */
	size_t (*part_room)(size_t len);
	int (*upload_part_in)(void *ctx, const char *upload_id, uint64_t first_byte, char *buf,
			      size_t cap, size_t len, struct ecr_part_built *built,
			      int64_t *last_valid);
	/* LayerAlreadyExists is success. */
	int (*complete)(void *ctx, const char *upload_id, const char *digest);
	/* tag NULL: by digest. ImageAlreadyExists is success; immutable tag -> -EEXIST. */
	int (*put_image)(void *ctx, const char *tag, const char *bytes, size_t len,
			 const char *media_type, const char *digest);
	/* 1 when the repository holds the image (manifest) digest, 0 when not. */
	int (*image_exists)(void *ctx, const char *digest);
	/* CreateRepository; already-exists is success. */
	int (*create_repository)(void *ctx);
	/* Whether the repository is IMMUTABLE and the digest tag points to
	 * ("" when the tag does not exist). May be NULL. */
	int (*tag_info)(void *ctx, const char *tag, int *immutable, char *digest, size_t n);
	void (*free)(void *ctx);
};

struct push_remote {
	const struct push_remote_ops *ops;
	void *ctx;
	char desc[400]; /* "repository R in REGION of ACCOUNT" for log lines */
};

/* A remote over an ecr handle (borrowed; outlives the remote). registry may
 * be NULL (the caller's registry). */
int push_remote_ecr_new(ecr *e, const char *registry, const char *region, const char *repo,
			struct push_remote **out);
void push_remote_free(struct push_remote *r);

#endif
