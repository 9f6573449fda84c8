/* Reusable chunk-sized buffers. A fresh 1 MiB malloc is an mmap whose pages
 * are faulted in and zeroed on every use, then unmapped: on the download
 * path (one buffer per ranged request in flight, one per out-of-order chunk
 * hashed) that was a large part of the CPU spent per byte. Idle buffers are
 * kept up to a small bound, so memory stays bounded by the requests in
 * flight. */
#include "cache/cache.h"

#include <pthread.h>
#include <stdlib.h>

#define IDLE_MAX 12

static pthread_mutex_t bufs_mu = PTHREAD_MUTEX_INITIALIZER; /* protects idle, nidle */
static void *idle[IDLE_MAX];
static int nidle;

void *cache_chunk_buf_get(void)
{
	void *b = NULL;
	pthread_mutex_lock(&bufs_mu);
	if (nidle > 0)
		b = idle[--nidle];
	pthread_mutex_unlock(&bufs_mu);
	return b ? b : malloc(CACHE_CHUNK_SIZE);
}

void cache_chunk_buf_put(void *buf)
{
	if (!buf)
		return;
	pthread_mutex_lock(&bufs_mu);
	if (nidle < IDLE_MAX) {
		idle[nidle++] = buf;
		buf = NULL;
	}
	pthread_mutex_unlock(&bufs_mu);
	free(buf);
}

void cache_chunk_bufs_release(void)
{
	pthread_mutex_lock(&bufs_mu);
	while (nidle > 0)
		free(idle[--nidle]);
	pthread_mutex_unlock(&bufs_mu);
}
