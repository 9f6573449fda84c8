/* In-memory index of cached blobs (size, last access, pins) and the LRU
 * eviction that keeps the total under max_bytes. Callers hold c->mu. */
#include "cache/cache_i.h"
#include "net/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t cache_now_tick(cache *c)
{
	struct timespec ts;
	uint64_t t;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	/* Strictly increasing, so two accesses in one clock tick still order. */
	if (t <= c->last_tick)
		t = c->last_tick + 1;
	c->last_tick = t;
	return t;
}

static unsigned bucket_of(const char *hex)
{
	unsigned h = 0;

	for (int i = 0; i < 8; i++)
		h = h * 16 + (unsigned)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
	return h % CACHE_BUCKETS;
}

struct cache_entry *cache_entry_find(cache *c, const char *hex)
{
	for (struct cache_entry *e = c->buckets[bucket_of(hex)]; e; e = e->next)
		if (memcmp(e->hex, hex, CACHE_HEX_LEN) == 0)
			return e;
	return NULL;
}

struct cache_entry *cache_entry_get(cache *c, const char *hex)
{
	struct cache_entry *e = cache_entry_find(c, hex);
	unsigned b;

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->hex, hex, CACHE_HEX_LEN + 1);
	e->tick = cache_now_tick(c);
	b = bucket_of(hex);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	return e;
}

void cache_entry_remove(cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[bucket_of(e->hex)];

	while (*pp && *pp != e)
		pp = &(*pp)->next;
	if (*pp)
		*pp = e->next;
	EVP_MD_CTX_free(e->sha); /* not hashing: a feeder keeps it busy */
	free(e->vbits);
	free(e);
}

void cache_entry_maybe_free(cache *c, struct cache_entry *e)
{
	if (!e->pins && !e->busy && !e->bytes && !e->complete)
		cache_entry_remove(c, e);
}

void cache_index_free(cache *c)
{
	for (int b = 0; b < CACHE_BUCKETS; b++) {
		struct cache_entry *e = c->buckets[b];
		while (e) {
			struct cache_entry *next = e->next;
			EVP_MD_CTX_free(e->sha);
			free(e->vbits);
			free(e);
			e = next;
		}
		c->buckets[b] = NULL;
	}
}

int cache_lock_for_delete(const char *path)
{
	struct stat a, b;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		close(fd);
		return -EBUSY; /* replaced meanwhile: look again next round */
	}
	return fd;
}

int cache_unlink_blob(cache *c, const char *hex)
{
	char path[PATH_MAX];
	int fd;

	cache_path_blob(c, hex, path);
	fd = cache_lock_for_delete(path);
	if (fd == -EBUSY)
		return -EBUSY;
	if (fd >= 0) {
		unlink(path);
		cache_path_sum(c, hex, path);
		unlink(path);
		close(fd);
	}
	return cache_unlink_partial(c, hex);
}

int cache_unlink_partial(cache *c, const char *hex)
{
	char path[PATH_MAX], map[PATH_MAX];
	int fd;

	cache_path_data(c, hex, path);
	fd = cache_lock_for_delete(path);
	if (fd == -EBUSY)
		return -EBUSY;
	/* Map first: a map never claims chunks of a data file that is gone. */
	cache_path_map(c, hex, map);
	unlink(map);
	if (fd >= 0) {
		unlink(path);
		close(fd);
	}
	return 0;
}

void cache_discard_partial(cache *c, const char *hex)
{
	char map[PATH_MAX];

	if (cache_unlink_partial(c, hex) == -EBUSY) {
		cache_path_map(c, hex, map);
		unlink(map);
	}
}

int cache_reserve(cache *c, const char *keep_hex, uint64_t len)
{
	unsigned round = ++c->evict_round;

	if (c->max_bytes && len > c->max_bytes)
		return -ENOSPC;
	while (c->max_bytes && c->total + len > c->max_bytes) {
		struct cache_entry *victim = NULL;

		for (int b = 0; b < CACHE_BUCKETS; b++)
			for (struct cache_entry *e = c->buckets[b]; e; e = e->next) {
				if (e->pins || e->busy || !e->bytes || e->evict_skip == round)
					continue;
				if (keep_hex && memcmp(e->hex, keep_hex, CACHE_HEX_LEN) == 0)
					continue;
				if (!victim || e->tick < victim->tick)
					victim = e;
			}
		/* Index files go only when no blob can. */
		if (!victim && cache_aux_evict_one(c, round) == 0)
			continue;
		if (!victim) {
			log_debug("cache: %llu bytes do not fit under cache_size (all pinned)",
				  (unsigned long long)len);
			return -ENOSPC;
		}
		cache_slot_invalidate(c, victim->hex);
		if (cache_unlink_blob(c, victim->hex) == -EBUSY) {
			victim->evict_skip = round; /* another mount reads it */
			continue;
		}
		log_debug("cache: evicted sha256:%s (%llu bytes)", victim->hex,
			  (unsigned long long)victim->bytes);
		c->total -= victim->bytes;
		c->stats.evictions++;
		victim->bytes = 0;
		victim->complete = 0;
		cache_entry_remove(c, victim);
	}
	c->total += len;
	c->stats.bytes_total = c->total;
	return 0;
}
