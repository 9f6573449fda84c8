/* Table of open blob files, so reads do not open/close per call. Bounded:
 * the least recently used idle slot of an unpinned blob is recycled; when
 * none is free an operation gets temporary fds. Each open data file holds a
 * shared flock, which other mounts' eviction respects. */
#include "cache/cache_i.h"
#include "net/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Opens the map, checking its header against size. With create, a missing
 * map is made whole in tmp/ and linked into place (link never replaces, so
 * a racing creator's map and its flags survive). */
static int open_map(cache *c, const char *hex, uint64_t size, int create)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	unsigned char hdr[CACHE_MAP_HDR], got_hdr[CACHE_MAP_HDR];
	size_t got = 0;
	int fd, ret;

	cache_map_header(hdr, size, cache_new_nonce(c));
	cache_path_map(c, hex, path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	/* Retried: a drop may unlink the map between our link and open. */
	for (int tries = 0; fd < 0 && errno == ENOENT && create && tries < 5; tries++) {
		cache_path_tmp(c, tmp);
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		ret = cache_pwrite_full(fd, hdr, sizeof(hdr), 0);
		if (!ret && ftruncate(fd, (off_t)cache_map_len(size)) < 0)
			ret = -errno;
		if (!ret && link(tmp, path) < 0 && errno != EEXIST)
			ret = -errno;
		close(fd);
		unlink(tmp);
		if (ret)
			return ret;
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	if (cache_pread_full(fd, got_hdr, sizeof(got_hdr), 0, &got) || got != sizeof(got_hdr) ||
	    memcmp(got_hdr, hdr, 16) != 0) {
		close(fd);
		return -ESTALE; /* torn or another size: not ours to trust */
	}
	return fd;
}

static int open_partial(cache *c, const char *hex, uint64_t size, int create, int *data_fd,
			int *map_fd)
{
	char path[PATH_MAX];
	int dfd, mfd;

	cache_path_data(c, hex, path);
	/* Data first, map second: a map exists only beside its data file. */
	dfd = cache_open_locked(path, create ? O_RDWR | O_CREAT : O_RDWR, 0600);
	if (dfd < 0)
		return dfd;
	mfd = open_map(c, hex, size, create);
	if (mfd == -ESTALE && create) {
		/* A map we cannot trust: forget the chunks (rarely happens). */
		log_warn("cache: partial sha256:%s has a bad map; starting it again", hex);
		cache_path_map(c, hex, path);
		unlink(path);
		mfd = open_map(c, hex, size, create);
	}
	if (mfd < 0) {
		close(dfd);
		return mfd == -ESTALE ? -ENOENT : mfd;
	}
	*data_fd = dfd;
	*map_fd = mfd;
	return 0;
}

static void slot_close(struct cache_slot *s)
{
	if (s->data_fd >= 0)
		close(s->data_fd);
	if (s->map_fd >= 0)
		close(s->map_fd);
	s->data_fd = s->map_fd = -1;
	s->used = 0;
	s->stale = 0;
	s->refs = 0;
}

static struct cache_slot *slot_find(cache *c, const char *hex)
{
	for (int i = 0; i < CACHE_SLOTS; i++) {
		struct cache_slot *s = &c->slots[i];
		if (s->used && !s->stale && memcmp(s->hex, hex, CACHE_HEX_LEN) == 0)
			return s;
	}
	return NULL;
}

/* A slot for a new open file: a free one, or the least recently used idle
 * slot of an unpinned blob (always so once unpinned blobs hold
 * CACHE_SLOTS_IDLE slots, unless the new one is pinned). NULL: none. */
static struct cache_slot *slot_take(cache *c, int pinned)
{
	struct cache_slot *best = NULL, *free_slot = NULL;
	int unpinned = 0;

	for (int i = 0; i < CACHE_SLOTS; i++) {
		struct cache_slot *s = &c->slots[i];
		struct cache_entry *e;
		if (!s->used) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		e = cache_entry_find(c, s->hex);
		if (e && e->pins)
			continue; /* keeps its lock: other mounts must not evict it */
		unpinned++;
		if (!s->refs && (!best || s->tick < best->tick))
			best = s;
	}
	if (best && (!free_slot || (!pinned && unpinned >= CACHE_SLOTS_IDLE))) {
		slot_close(best);
		return best;
	}
	return free_slot;
}

/* Brings the index in line with a file found on disk (another mount may
 * have stored it, or this process scanned before it was sealed). */
static void adopt(cache *c, struct cache_entry *e, int complete, int fd, uint64_t size)
{
	struct stat st;
	uint64_t bytes;

	/* A partial known here is accounted chunk by chunk already. */
	if (e->bytes && e->complete == complete)
		return;
	if (fstat(fd, &st) < 0)
		return;
	bytes = complete ? (uint64_t)st.st_size : (uint64_t)st.st_blocks * 512;
	if (!complete && bytes > size)
		bytes = size;
	c->total = c->total - e->bytes + bytes;
	e->bytes = bytes;
	e->complete = complete;
	c->stats.bytes_total = c->total;
}

int cache_fds_get(cache *c, const char *hex, uint64_t size, int create, struct cache_fds *f)
{
	char path[PATH_MAX];
	struct cache_slot *s;
	struct cache_entry *e;
	struct stat st;
	int dfd = -1, mfd = -1, complete = 0, ret;

	memcpy(f->hex, hex, CACHE_HEX_LEN + 1);
	f->slot = -1;
	pthread_mutex_lock(&c->mu);
	e = cache_entry_get(c, hex);
	if (!e) {
		ret = -ENOMEM;
		goto out;
	}
	s = slot_find(c, hex);
	if (s) {
		s->refs++;
		s->tick = cache_now_tick(c);
		f->slot = (int)(s - c->slots);
		f->complete = s->complete;
		f->data_fd = s->data_fd;
		f->map_fd = s->map_fd;
		f->file_size = s->file_size;
		e->busy++;
		ret = 0;
		goto out;
	}
	cache_path_blob(c, hex, path);
	for (int tries = 0;; tries++) {
		dfd = cache_open_locked(path, O_RDONLY, 0);
		if (dfd >= 0) {
			/* Its sums; -1 when missing: then it is never served. */
			cache_path_sum(c, hex, path);
			mfd = open(path, O_RDONLY | O_CLOEXEC);
			complete = 1;
			break;
		}
		ret = dfd;
		if (ret != -ENOENT)
			goto out;
		ret = open_partial(c, hex, size, create, &dfd, &mfd);
		if (ret)
			goto out;
		if (access(path, F_OK) < 0 || tries == 2)
			break;
		/* Sealed between our two opens: use the complete blob, and
		 * remove the partial we may just have created (if unused). */
		close(dfd);
		close(mfd);
		dfd = mfd = -1;
		cache_unlink_partial(c, hex);
	}
	adopt(c, e, complete, dfd, size);
	f->file_size = fstat(dfd, &st) == 0 ? (uint64_t)st.st_size : 0;
	/* Refresh the on-disk access time: the LRU order of the next mount. */
	futimens(dfd, (struct timespec[2]){{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}});
	e->busy++;
	f->complete = complete;
	f->data_fd = dfd;
	f->map_fd = mfd;
	s = slot_take(c, e->pins > 0);
	if (s) {
		s->used = 1;
		memcpy(s->hex, hex, CACHE_HEX_LEN + 1);
		s->complete = complete;
		s->data_fd = dfd;
		s->map_fd = mfd;
		s->size = size;
		s->file_size = f->file_size;
		s->refs = 1;
		s->stale = 0;
		s->tick = cache_now_tick(c);
		f->slot = (int)(s - c->slots);
	}
	ret = 0;
out:
	if (ret && e)
		cache_entry_maybe_free(c, e);
	pthread_mutex_unlock(&c->mu);
	return ret;
}

void cache_fds_put(cache *c, struct cache_fds *f)
{
	struct cache_entry *e;

	pthread_mutex_lock(&c->mu);
	if (f->slot >= 0) {
		struct cache_slot *s = &c->slots[f->slot];
		if (--s->refs == 0 && s->stale)
			slot_close(s);
	} else {
		close(f->data_fd);
		if (f->map_fd >= 0)
			close(f->map_fd);
	}
	e = cache_entry_find(c, f->hex);
	if (e) {
		e->busy--;
		cache_entry_maybe_free(c, e);
	}
	pthread_mutex_unlock(&c->mu);
	f->data_fd = f->map_fd = -1;
}

void cache_slot_invalidate(cache *c, const char *hex)
{
	for (int i = 0; i < CACHE_SLOTS; i++) {
		struct cache_slot *s = &c->slots[i];
		if (!s->used || memcmp(s->hex, hex, CACHE_HEX_LEN) != 0)
			continue;
		s->stale = 1;
		if (!s->refs)
			slot_close(s);
	}
}

void cache_slots_trim(cache *c)
{
	for (;;) {
		struct cache_slot *oldest = NULL;
		int unpinned = 0;

		for (int i = 0; i < CACHE_SLOTS; i++) {
			struct cache_slot *s = &c->slots[i];
			struct cache_entry *e;
			if (!s->used)
				continue;
			e = cache_entry_find(c, s->hex);
			if (e && e->pins)
				continue;
			unpinned++;
			if (!s->refs && (!oldest || s->tick < oldest->tick))
				oldest = s;
		}
		if (unpinned <= CACHE_SLOTS_IDLE || !oldest)
			return;
		slot_close(oldest);
	}
}

void cache_slots_close(cache *c)
{
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].used)
			slot_close(&c->slots[i]);
}
