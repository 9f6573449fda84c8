/* The index sources of layers that carry their own table of contents
 * (view_rootfs_sources.h): eStargz (the footer found by one ranged read of
 * the blob's tail, the TOC digest from the layer annotation when present)
 * and zstd:chunked (the manifest found by its position annotation or the
 * footer frame, its checksum annotation checked when present). The parsing
 * is fs/rootfs/ (estargz.c, zstd_chunked.c, toc.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/view_rootfs_sources.h"
#include "net/log.h"

#define TAIL_READ (256u << 10)	 /* one ranged read finds the footer, often the TOC */
#define TOC_READ_MAX (64u << 20) /* a compressed TOC bigger than this is not used */

#define ESTARGZ_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
/* containers/storage's keys, and the older ones of other writers. */
#define ZCHUNKED_POSITION "io.github.containers.zstd-chunked.manifest-position"
#define ZCHUNKED_CHECKSUM "io.github.containers.zstd-chunked.manifest-checksum"
#define ZCHUNKED_POSITION_OLD "io.containers.zstd-chunked.manifest-position"
#define ZCHUNKED_CHECKSUM_OLD "io.containers.zstd-chunked.manifest-checksum"

static const char *annotation(const struct rfs_src_layer *layer, const char *key)
{
	return json_string_value(json_object_get(layer->annotations, key));
}

/* The blob's tail: *buf malloc'd, *len bytes ending at layer->size. */
static int read_tail(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		     unsigned char **buf, size_t *len)
{
	size_t n = layer->size < TAIL_READ ? (size_t)layer->size : TAIL_READ;
	unsigned char *b = malloc(n ? n : 1);
	int rc = b ? ctx->read_layer(ctx, layer->size - n, b, n) : -ENOMEM;
	if (rc) {
		free(b);
		return rc;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* [off, end) of the blob, from the tail when it holds it, else one read. */
static int read_part(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		     const unsigned char *tail, size_t tail_len, uint64_t off, uint64_t end,
		     unsigned char **out)
{
	if (end < off || end - off > TOC_READ_MAX || end > layer->size)
		return -EFBIG;
	unsigned char *b = malloc(end - off ? end - off : 1);
	uint64_t tail_off = layer->size - tail_len;
	int rc = b ? 0 : -ENOMEM;
	if (rc == 0 && tail && off >= tail_off)
		memcpy(b, tail + (off - tail_off), end - off);
	else if (rc == 0)
		rc = ctx->read_layer(ctx, off, b, end - off);
	if (rc) {
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

int rfs_src_estargz(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
		    struct rootfs_index **index)
{
	const char *mt = layer->media_type, *dg = annotation(layer, ESTARGZ_TOC_DIGEST);
	unsigned char *tail = NULL, *toc = NULL;
	size_t tail_len = 0;
	uint64_t off = 0, end = 0;
	if (mt && !strstr(mt, "gzip"))
		return -ENOENT;
	int rc = read_tail(ctx, layer, &tail, &tail_len);
	if (rc == 0)
		rc = rootfs_estargz_locate(tail, tail_len, layer->size, &off, &end);
	if (rc == 0 && ctx->strict && !dg)
		rc = -EPERM; /* a TOC found through the blob only is not chained */
	if (rc == 0)
		rc = read_part(ctx, layer, tail, tail_len, off, end, &toc);
	if (rc == 0)
		rc = rootfs_estargz_index(layer->digest, layer->size, toc, (size_t)(end - off), off,
					  end, dg, index);
	free(tail);
	free(toc);
	return rc;
}

/* The manifest's place: the annotation, else the footer frame. */
static int zchunked_pos(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
			unsigned char **tail, size_t *tail_len, struct rootfs_zchunked_pos *pos)
{
	const char *at = annotation(layer, ZCHUNKED_POSITION);
	if (!at)
		at = annotation(layer, ZCHUNKED_POSITION_OLD);
	if (at)
		return rootfs_zchunked_annotation(at, layer->size, pos);
	int rc = read_tail(ctx, layer, tail, tail_len);
	return rc ? rc : rootfs_zchunked_footer(*tail, *tail_len, layer->size, pos);
}

int rfs_src_zstd_chunked(const struct rfs_src_ctx *ctx, const struct rfs_src_layer *layer,
			 struct rootfs_index **index)
{
	const char *mt = layer->media_type, *sum = annotation(layer, ZCHUNKED_CHECKSUM);
	if (!sum)
		sum = annotation(layer, ZCHUNKED_CHECKSUM_OLD);
	unsigned char *tail = NULL, *man = NULL;
	size_t tail_len = 0;
	struct rootfs_zchunked_pos pos;
	if (!mt || !strstr(mt, "zstd"))
		return -ENOENT;
	int rc = zchunked_pos(ctx, layer, &tail, &tail_len, &pos);
	if (rc == 0 && ctx->strict && !sum)
		rc = -EPERM;
	if (rc == 0)
		rc = read_part(ctx, layer, tail, tail_len, pos.off, pos.off + pos.len, &man);
	if (rc == 0)
		rc = rootfs_zchunked_index(layer->digest, layer->size, man, &pos, sum, index);
	free(tail);
	free(man);
	return rc;
}
