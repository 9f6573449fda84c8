/* An in-memory ECR repository behind push_remote, with ECR's upload rules
 * (strict part order, 5 MiB minimum but the last, partSize maximum, digest
 * check at CompleteLayerUpload, PutImage only of manifests whose blobs are
 * present) and a few faults. For the push engine's unit tests. */
#ifndef TEST_PUSH_FAKE_H
#define TEST_PUSH_FAKE_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs/push/push_json.h"
#include "fs/push/push_remote.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define FAKE_MAX 64
#define FAKE_PARTS 64

struct fake_upload {
	char id[32];
	char *data;
	size_t len, cap;
	int parts;
	size_t part_len[FAKE_PARTS]; /* what each stored part held, in order */
	int small_part; /* a part < 5 MiB that was not the last */
	int done;
	int inflight, inflight_peak; /* UploadLayerPart calls of this upload at once */
};

struct fake_image {
	char digest[72];
	char tag[130];
	char *bytes;
	size_t len;
	char media_type[128];
};

struct fake {
	pthread_mutex_t mu;
	int64_t part_size;
	char layers[FAKE_MAX][72];
	int nlayers;
	struct fake_upload up[FAKE_MAX];
	int nup;
	struct fake_image img[FAKE_MAX];
	int nimg;
	int immutable;
	int repo_exists;
	/* counters */
	int n_check, n_initiate, n_part, n_complete, n_put, n_create;
	/* faults: the Nth part call (1-based, counting all) is stored but its
	 * reply lost (ERANGE with last_valid), or answered UploadNotFound */
	int drop_reply_at;
	int not_found_at;
	/* the Nth part call stores only its first mid_part_keep bytes and
	 * answers InvalidLayerPartException with lastValidByteReceived inside it */
	int mid_part_at;
	size_t mid_part_keep;
	/* the Nth CompleteLayerUpload completes but answers not found (the
	 * client's retry after a lost reply), or finds the upload expired */
	int complete_reply_lost_at;
	int complete_expired_at;
	int deny_initiate; /* -EACCES */
	int fail_part_at;  /* the Nth part call answers -EACCES */
	/* parts wait while gate is set (pthread_cond), then sleep part_delay_us */
	pthread_cond_t gate_cv;
	int gate;
	int part_delay_us;
	int inflight, inflight_peak; /* UploadLayerPart calls at once, all uploads */
};

static void fake_sha(const void *d, size_t n, char out[72])
{
	unsigned char md[32];
	unsigned int l = 0;
	EVP_Digest(d, n, md, &l, EVP_sha256(), NULL);
	strcpy(out, "sha256:");
	for (int i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static int fake_has_layer(struct fake *f, const char *d)
{
	for (int i = 0; i < f->nlayers; i++)
		if (!strcmp(f->layers[i], d))
			return 1;
	return 0;
}

static int fk_check(void *ctx, const char *const *d, size_t n, int *av)
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->n_check++;
	if (!f->repo_exists) {
		pthread_mutex_unlock(&f->mu);
		return -ENOENT;
	}
	for (size_t i = 0; i < n; i++)
		av[i] = fake_has_layer(f, d[i]);
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static int fk_initiate(void *ctx, char **id, int64_t *ps)
{
	struct fake *f = ctx;
	int rc = 0;
	pthread_mutex_lock(&f->mu);
	f->n_initiate++;
	if (f->deny_initiate) {
		rc = -EACCES;
		goto out;
	}
	CHECK(f->nup < FAKE_MAX);
	struct fake_upload *u = &f->up[f->nup++];
	memset(u, 0, sizeof(*u));
	snprintf(u->id, sizeof(u->id), "up-%d", f->nup);
	*id = strdup(u->id);
	*ps = f->part_size;
out:
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static struct fake_upload *fake_find(struct fake *f, const char *id)
{
	for (int i = 0; i < f->nup; i++)
		if (!strcmp(f->up[i].id, id))
			return &f->up[i];
	return NULL;
}

static int fk_part_locked(struct fake *f, const char *id, uint64_t first, const void *data,
			  size_t len, int64_t *last_valid)
{
	struct fake_upload *u;
	int rc = 0;
	f->n_part++;
	if (f->n_part == f->fail_part_at)
		return -EACCES;
	u = fake_find(f, id);
	if (!u || u->done || f->n_part == f->not_found_at) {
		if (u && f->n_part == f->not_found_at)
			u->done = 1; /* expired */
		rc = -ESTALE;
		goto out;
	}
	if (first != u->len) {
		*last_valid = (int64_t)u->len - 1;
		rc = -ERANGE;
		goto out;
	}
	CHECK(len <= (size_t)(f->part_size > 10485760 ? 10485760 : f->part_size));
	CHECK(len > 0);
	if (f->n_part == f->mid_part_at && f->mid_part_keep < len)
		len = f->mid_part_keep; /* the rest of the part is lost */
	if (u->parts > 0 && u->small_part && len > 0)
		u->small_part = 2; /* a short part was followed by another: ECR refuses at complete */
	if (len > 0 && len < 5 * 1024 * 1024)
		u->small_part = u->small_part ? u->small_part : 1;
	if (u->len + len > u->cap) {
		u->cap = (u->len + len) * 2;
		u->data = realloc(u->data, u->cap);
	}
	CHECK(u->parts < FAKE_PARTS);
	if (len > 0) {
		memcpy(u->data + u->len, data, len);
		u->len += len;
		u->part_len[u->parts++] = len;
	}
	if (f->n_part == f->drop_reply_at || f->n_part == f->mid_part_at) {
		/* stored, reply lost: the retry learns where ECR stands */
		*last_valid = (int64_t)u->len - 1;
		rc = -ERANGE;
	}
out:
	return rc;
}

/* Counts parts in flight (per upload and in all), waits at the gate. */
static int fk_part(void *ctx, const char *id, uint64_t first, const void *data, size_t len,
		   int64_t *last_valid)
{
	struct fake *f = ctx;
	struct fake_upload *u;
	int rc;
	pthread_mutex_lock(&f->mu);
	u = fake_find(f, id);
	if (u && ++u->inflight > u->inflight_peak)
		u->inflight_peak = u->inflight;
	if (++f->inflight > f->inflight_peak)
		f->inflight_peak = f->inflight;
	while (f->gate)
		pthread_cond_wait(&f->gate_cv, &f->mu);
	if (f->part_delay_us) {
		pthread_mutex_unlock(&f->mu);
		usleep((useconds_t)f->part_delay_us);
		pthread_mutex_lock(&f->mu);
	}
	rc = fk_part_locked(f, id, first, data, len, last_valid);
	if (u)
		u->inflight--;
	f->inflight--;
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int fk_complete(void *ctx, const char *id, const char *digest)
{
	struct fake *f = ctx;
	struct fake_upload *u;
	char d[72];
	int rc = 0;
	pthread_mutex_lock(&f->mu);
	f->n_complete++;
	u = fake_find(f, id);
	CHECK(u && !u->done);
	if (f->n_complete == f->complete_expired_at) {
		u->done = 1;
		rc = -ENOENT;
		goto out;
	}
	CHECK(u->small_part != 2); /* LayerPartTooSmall: a bug of ours */
	fake_sha(u->data, u->len, d);
	u->done = 1;
	if (strcmp(d, digest)) {
		rc = -EIO;
		goto out;
	}
	if (!fake_has_layer(f, d)) {
		CHECK(f->nlayers < FAKE_MAX);
		strcpy(f->layers[f->nlayers++], d);
	}
	if (f->n_complete == f->complete_reply_lost_at)
		rc = -ENOENT;
out:
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static struct fake_image *fake_image_by_tag(struct fake *f, const char *tag)
{
	for (int i = 0; i < f->nimg; i++)
		if (!strcmp(f->img[i].tag, tag))
			return &f->img[i];
	return NULL;
}

static int fake_image_exists_locked(struct fake *f, const char *digest)
{
	for (int i = 0; i < f->nimg; i++)
		if (!strcmp(f->img[i].digest, digest))
			return 1;
	return 0;
}

static int fk_put(void *ctx, const char *tag, const char *bytes, size_t len, const char *mt,
		  const char *digest)
{
	struct fake *f = ctx;
	char d[72];
	struct push_desc_list l = { 0 };
	char *m = NULL;
	enum push_kind k = push_json_classify(bytes, len, &m);
	int rc = 0;

	pthread_mutex_lock(&f->mu);
	f->n_put++;
	fake_sha(bytes, len, d);
	CHECK(!digest || !strcmp(d, digest));
	CHECK(k != PUSH_BLOB);
	CHECK(mt && !strcmp(mt, m));
	CHECK(push_json_descs(bytes, len, k, &l) == 0);
	for (size_t i = 0; i < l.n; i++) {
		int ok = k == PUSH_INDEX ? fake_image_exists_locked(f, l.v[i].digest)
					 : fake_has_layer(f, l.v[i].digest);
		if (!ok) {
			rc = -EIO; /* LayersNotFound / ReferencedImagesNotFound */
			goto out;
		}
	}
	if (tag) {
		struct fake_image *old = fake_image_by_tag(f, tag);
		if (old && strcmp(old->digest, d) && f->immutable) {
			rc = -EEXIST;
			goto out;
		}
		if (old)
			old->tag[0] = '\0';
	}
	CHECK(f->nimg < FAKE_MAX);
	struct fake_image *im = &f->img[f->nimg++];
	strcpy(im->digest, d);
	snprintf(im->tag, sizeof(im->tag), "%s", tag ? tag : "");
	im->bytes = malloc(len);
	memcpy(im->bytes, bytes, len);
	im->len = len;
	snprintf(im->media_type, sizeof(im->media_type), "%s", mt);
out:
	pthread_mutex_unlock(&f->mu);
	free(m);
	push_desc_list_free(&l);
	return rc;
}

static int fk_image_exists(void *ctx, const char *digest)
{
	struct fake *f = ctx;
	int r;
	pthread_mutex_lock(&f->mu);
	r = fake_image_exists_locked(f, digest);
	pthread_mutex_unlock(&f->mu);
	return r;
}

static int fk_create(void *ctx)
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->n_create++;
	f->repo_exists = 1;
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static int fk_tag_info(void *ctx, const char *tag, int *immutable, char *digest, size_t n)
{
	struct fake *f = ctx;
	struct fake_image *im;
	pthread_mutex_lock(&f->mu);
	*immutable = f->immutable;
	im = fake_image_by_tag(f, tag);
	snprintf(digest, n, "%s", im ? im->digest : "");
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static const struct push_remote_ops fake_ops = {
	.check_layers = fk_check,
	.initiate = fk_initiate,
	.upload_part = fk_part,
	.complete = fk_complete,
	.put_image = fk_put,
	.image_exists = fk_image_exists,
	.create_repository = fk_create,
	.tag_info = fk_tag_info,
	.free = NULL,
};

static void fake_init(struct fake *f, struct push_remote *r, int64_t part_size)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->gate_cv, NULL);
	f->part_size = part_size;
	f->repo_exists = 1;
	memset(r, 0, sizeof(*r));
	r->ops = &fake_ops;
	r->ctx = f;
	snprintf(r->desc, sizeof(r->desc), "fake repository");
}

static void fake_fini(struct fake *f)
{
	for (int i = 0; i < f->nup; i++)
		free(f->up[i].data);
	for (int i = 0; i < f->nimg; i++)
		free(f->img[i].bytes);
	pthread_cond_destroy(&f->gate_cv);
	pthread_mutex_destroy(&f->mu);
}

/* Deterministic bytes that do not start with '{'. */
static char *fake_bytes(size_t n, unsigned seed)
{
	char *b = malloc(n ? n : 1);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (char)x;
	}
	if (n)
		b[0] = 0x1f; /* gzip's first byte */
	return b;
}

#endif
