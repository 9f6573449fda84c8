/* The chain of index sources of a layer (view_rootfs_sources.h): the local
 * cache, the table below in order, the local build. First match wins; a
 * source whose index is bad is dropped with one log line. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs/mount.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/view_rootfs_publish.h"
#include "fs/tree/view_rootfs_soci.h"
#include "fs/tree/view_rootfs_sources.h"
#include "net/log.h"

/* One line per source, tried in this order; a NULL try_fn is skipped. */
const struct rfs_index_source rfs_index_sources[] = {
    /* First those that cost no layer byte to find (an annotation, one
     * ListImageReferrers per image), then the footer probes (a tail read
     * of every layer). */
    {"soci v2", rfs_src_soci_v2},	    {"soci v1", rfs_src_soci_v1},
    {"published", rfs_src_published},	    {"estargz", rfs_src_estargz},
    {"zstd:chunked", rfs_src_zstd_chunked},
};
const size_t rfs_n_index_sources = sizeof rfs_index_sources / sizeof rfs_index_sources[0];

struct src_priv {
	struct rfs_image *im;
	struct rfs_layer *L;
};

static int ctx_read_layer(const struct rfs_src_ctx *ctx, uint64_t off, void *buf, size_t len)
{
	const struct src_priv *p = ctx->priv;
	volatile int never = 0;
	int rc = rfs_layer_pread(p->im, p->L, off, buf, len, &never);
	if (rc == 0)
		__atomic_add_fetch(&p->im->probed, len, __ATOMIC_RELAXED);
	return rc;
}

static int ctx_read_blob(const struct rfs_src_ctx *ctx, const char *digest, uint64_t size,
			 void **buf)
{
	const struct src_priv *p = ctx->priv;
	int rc = rfs_blob_fetch(p->im, digest, size, buf);
	if (rc == 0)
		__atomic_add_fetch(&p->im->probed, size, __ATOMIC_RELAXED);
	return rc;
}

/* The table's sources in order: 0 when one gave L its index. */
static int try_table(struct rfs_image *im, struct rfs_layer *L)
{
	if (L->plat >= im->nplats)
		return -ENOENT;
	const struct rfs_plat *pl = &im->plats[L->plat];
	struct src_priv priv = {im, L};
	struct rfs_src_ctx ctx = {
	    .c = im->c,
	    .registry = im->registry,
	    .region = im->region,
	    .repo = im->repo,
	    .image_digest = pl->digest,
	    .manifest = pl->manifest,
	    .manifest_len = pl->manifest_len,
	    .strict = im->c->verify_strict,
	    .read_layer = ctx_read_layer,
	    .read_blob = ctx_read_blob,
	    .priv = &priv,
	};
	struct rfs_src_layer lay = {L->digest, L->size, L->media_type, L->annot, L->pos};
	for (size_t i = 0; i < rfs_n_index_sources; i++) {
		const struct rfs_index_source *s = &rfs_index_sources[i];
		struct rootfs_index *ix = NULL;
		if (!s->try_fn)
			continue;
		int rc = s->try_fn(&ctx, &lay, &ix);
		if (rc == 0 && ix && strcmp(rootfs_index_digest(ix), L->digest) == 0) {
			L->ix = ix;
			L->source = s->name;
			L->ranged = 1;
			return 0;
		}
		if (rc == 0) {
			rootfs_index_free(ix);
			rc = -EBADMSG;
		}
		if (rc != -ENOENT)
			log_warn("rootfs: layer %s: index from %s dropped (%s)", L->digest, s->name,
				 strerror(-rc));
	}
	return -ENOENT;
}

int rfs_layer_get(struct rfs_image *im, struct rfs_layer *L)
{
	const char *dir = cache_aux_dir(im->c->cache);
	int rc, own = 1; /* made from the layer's bytes */
	if (L->ix)
		return 0;
	if (L->not_tar)
		return -EMEDIUMTYPE;
	/* Another image holds this layer's index: share it. */
	if (rfs_held_find(L)) {
		__atomic_store_n(&L->fed, L->size, __ATOMIC_RELAXED);
		return 0;
	}
	if ((rc = rfs_layer_load(im, L, dir)) == 0) {
		L->source = RFS_SRC_LOCAL;
		__atomic_add_fetch(&rfs_st_loads, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&L->fed, L->size, __ATOMIC_RELAXED);
	} else if ((rc = try_table(im, L)) == 0) {
		own = 0;
		__atomic_add_fetch(&rfs_st_tocs, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&L->fed, L->size, __ATOMIC_RELAXED);
	} else {
		rc = rfs_layer_build(im, L, dir);
		__atomic_add_fetch(rc ? &rfs_st_failures : &rfs_st_builds, 1, __ATOMIC_RELAXED);
		if (rc == 0)
			L->source = RFS_SRC_BUILT;
	}
	/* Only indexes made from the layer's bytes are shared: one from an
	 * image's own TOC or referrer stays that image's. */
	if (rc == 0 && own)
		rfs_held_add(im, L);
	return rc;
}

/* "estargz" when every layer's index came from one source, else the
 * distinct names in layer order ("local index, built"). */
void rfs_sources_describe(const struct rfs_image *im, char *out, size_t size)
{
	size_t len = 0;
	out[0] = 0;
	for (size_t i = 0; i < im->nlayers; i++) {
		const char *s = im->layers[i].source;
		int seen = !s;
		for (size_t j = 0; j < i && !seen; j++)
			seen = im->layers[j].source == s;
		if (seen)
			continue;
		int n = snprintf(out + len, size - len, "%s%s", len ? ", " : "", s);
		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
}
