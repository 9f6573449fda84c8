/* Copies by reference (see push_copy.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/push/push_copy.h"
#include "fs/push/upload.h"
#include "net/log.h"

#define FETCH_CHUNK (8u << 20)

struct sink_ctx {
	upload *u;
	uint64_t off;
};

static int sink(void *arg, const char *data, size_t n)
{
	struct sink_ctx *s = arg;
	int rc = upload_write(s->u, data, n, s->off);
	if (rc == 0)
		s->off += n;
	return rc;
}

int push_copy_blob(ecr *src, const struct ecr_where *sw, const char *digest, uint64_t size,
		   struct push_remote *dst, int *copied)
{
	struct upload_opts uo = { 0 };
	struct sink_ctx s = { 0 };
	const char *d[1] = { digest };
	char *url = NULL;
	time_t exp = 0;
	int have = 0, rc, renewed = 0;

	if (copied)
		*copied = 0;
	rc = dst->ops->check_layers(dst->ctx, d, 1, &have);
	if (rc < 0 || have == 1)
		return rc;
	uo.remote = dst;
	uo.name = digest;
	rc = upload_new(&uo, &s.u);
	if (rc < 0)
		return rc;
	rc = ecr_get_download_url(src, sw, digest, &url, &exp, NULL);
	while (rc == 0 && s.off < size) {
		uint64_t n = size - s.off > FETCH_CHUNK ? FETCH_CHUNK : size - s.off;
		uint64_t before = s.off;
		rc = ecr_fetch_url_range(src, url, s.off, n, sink, &s, NULL);
		if (rc == -EKEYEXPIRED && !renewed++) {
			/* The URL expired: ask again, once per blob. */
			free(url);
			url = NULL;
			s.off = before;
			rc = ecr_get_download_url(src, sw, digest, &url, &exp, NULL);
			continue;
		}
		if (rc == 0 && s.off != before + n)
			rc = -EIO;
	}
	if (rc == 0)
		rc = upload_finish(s.u, digest, NULL); /* checks the digest, then completes */
	if (rc == 0 && copied)
		*copied = 1;
	if (rc < 0)
		log_err("copying %s from %s to %s failed: %s", digest, sw->repository, dst->desc,
			strerror(-rc));
	upload_free(s.u);
	free(url);
	return rc;
}

int push_copy_image(ecr *src, const struct fs_image *img, struct push_remote *dst,
		    const char *tag)
{
	struct ecr_where sw = { img->registry, img->region, img->repo };
	const struct fs_blob *top = NULL;
	int rc = 0;

	/* Blobs first, then child manifests by digest, then the top one. */
	for (size_t i = 0; i < img->nblobs && rc == 0; i++) {
		const struct fs_blob *b = &img->blobs[i];
		if (!b->data)
			rc = push_copy_blob(src, &sw, b->digest, b->size, dst, NULL);
	}
	for (size_t i = 0; i < img->nblobs && rc == 0; i++) {
		const struct fs_blob *b = &img->blobs[i];
		if (!b->data)
			continue;
		if (!strcmp(b->digest, img->digest)) {
			top = b;
			continue;
		}
		rc = dst->ops->put_image(dst->ctx, NULL, b->data, b->size, b->media_type, b->digest);
	}
	if (rc == 0 && !top)
		rc = -EIO;
	if (rc == 0)
		rc = dst->ops->put_image(dst->ctx, tag, top->data, top->size,
					 top->media_type ? top->media_type : img->media_type,
					 top->digest);
	return rc;
}
