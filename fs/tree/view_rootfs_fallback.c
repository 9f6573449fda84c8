/* When a layer's bytes disagree with an index that came from the image (a
 * TOC or zTOC span digest fails): the index is dropped for reads, the layer
 * is built here once (streamed through the verified blob path, saved to
 * cache_dir/index so that the next mount loads it), and reads go through
 * that index if it lists the same entries at the same places; otherwise the
 * layer's reads stay -EIO with a log line until a remount, which loads the
 * index built here. An eStargz or zstd:chunked index places files by their
 * contents laid end to end, a build by the tar stream, so for those the
 * entries always differ: only the next mount reads them right. zstd layers
 * (their local index is over a decompressed copy) are not rebuilt here. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fs/mount.h"
#include "fs/tree/view_rootfs_i.h"
#include "fs/tree/view_rootfs_sources.h"
#include "net/log.h"

/* Protects every layer's disagrees and the writing of read_ix (set once,
 * published atomically so that reads never wait on this lock); serialises
 * the fallback builds (rare: only a layer that fails a digest). */
static pthread_mutex_t rfs_fallback_mu = PTHREAD_MUTEX_INITIALIZER;

const struct rootfs_index *rfs_read_index(struct rfs_layer *L)
{
	const struct rootfs_index *ix = __atomic_load_n(&L->read_ix, __ATOMIC_ACQUIRE);
	return ix ? ix : L->ix;
}

const struct rootfs_index *rfs_layer_fallback(struct rfs_image *im, struct rfs_layer *L)
{
	pthread_mutex_lock(&rfs_fallback_mu);
	if (!L->read_ix && !L->disagrees && !L->zstd) {
		log_err("rootfs: layer %s disagrees with its %s index: dropped, building it here",
			L->digest, L->source);
		struct rfs_layer tmp = *L;
		tmp.ix = NULL;
		tmp.read_ix = NULL;
		tmp.ranged = 0;
		tmp.copy_fd = -1;
		tmp.held = NULL;
		tmp.pin_ix = tmp.pin_copy = 0;
		int rc = rfs_layer_build(im, &tmp, cache_aux_dir(im->c->cache));
		/* The index serves from memory: its file need not stay pinned. */
		rfs_layer_unpin(im, &tmp);
		if (rc == 0 && rootfs_index_same_entries(L->ix, tmp.ix)) {
			__atomic_store_n(&L->read_ix, tmp.ix, __ATOMIC_RELEASE);
			pthread_mutex_lock(&im->mu);
			L->source = RFS_SRC_BUILT;
			pthread_mutex_unlock(&im->mu);
		} else {
			log_err("rootfs: layer %s: %s; its files read EIO until a remount",
				L->digest,
				rc ? strerror(-rc) : "its entries differ from the dropped index's");
			L->disagrees = 1;
			rootfs_index_free(tmp.ix);
		}
	}
	const struct rootfs_index *ix = L->read_ix;
	pthread_mutex_unlock(&rfs_fallback_mu);
	return ix;
}
