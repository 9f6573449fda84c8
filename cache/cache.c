/* Cache handle: open/close, directory layout, digest names, the startup
 * scan that seeds the LRU, pins, and the small blob queries. */
#include "cache/cache_i.h"
#include "net/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int cache_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* Digests come from the network and become file names: accept exactly
 * "sha256:" + 64 lowercase hex digits. */
int cache_hex_of(const char *digest, char hex[CACHE_HEX_LEN + 1])
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0)
		return -EINVAL;
	digest += 7;
	if (strlen(digest) != CACHE_HEX_LEN || !cache_is_hex(digest, CACHE_HEX_LEN))
		return -EINVAL;
	memcpy(hex, digest, CACHE_HEX_LEN + 1);
	return 0;
}

void cache_path_blob(const cache *c, const char *hex, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s/blobs/sha256/%s", c->dir, hex);
}

void cache_path_data(const cache *c, const char *hex, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s/partial/%s.data", c->dir, hex);
}

void cache_path_map(const cache *c, const char *hex, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s/partial/%s.map", c->dir, hex);
}

void cache_path_sum(const cache *c, const char *hex, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s/blobs/sha256/%s.sum", c->dir, hex);
}

/* pid.tid.counter: unique across mounts sharing the dir and across threads;
 * the pid lets cache_open remove leftovers of dead processes. */
void cache_path_tmp(cache *c, char buf[PATH_MAX])
{
	unsigned n = atomic_fetch_add(&c->tmp_counter, 1);
	snprintf(buf, PATH_MAX, "%s/tmp/%ld.%ld.%u", c->dir, (long)getpid(), (long)gettid(), n);
}

int cache_write_error(cache *c, int err)
{
	if (err != -ENOSPC && err != -EDQUOT && err != -EFBIG)
		return err;
	pthread_mutex_lock(&c->mu);
	c->stats.disk_full = 1;
	if (!c->disk_full_logged) {
		c->disk_full_logged = 1;
		log_warn("cache_dir %s is full; reading from the network without caching", c->dir);
	}
	pthread_mutex_unlock(&c->mu);
	return -ENOSPC;
}

void cache_room_again(cache *c)
{
	struct statvfs st;

	if (!c->stats.disk_full)
		return;
	/* A disk that is nearly full takes a chunk now and then (a failed
	 * one gave its space back): only real room ends the state, so it
	 * does not flap (and log) at every chunk. */
	if (statvfs(c->dir, &st) == 0 &&
	    (uint64_t)st.f_bavail * st.f_frsize < CACHE_ROOM_AGAIN_BYTES)
		return;
	c->stats.disk_full = 0;
	c->disk_full_logged = 0; /* the next full disk is logged again */
	log_info("cache_dir %s has room again; caching resumes", c->dir);
}

/* mkdir -p with mode 0700 for what it creates. */
static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			ret = -errno;
			goto out;
		}
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		ret = -errno;
out:
	free(p);
	return ret;
}

static int make_layout(const char *dir)
{
	static const char *const subs[] = {"blobs", "blobs/sha256", "partial",
					   "meta",  "tmp",	    "index"};
	char path[PATH_MAX];
	struct stat st;
	int fd, ret;

	ret = mkdir_p(dir);
	if (ret)
		return ret;
	/* Tighten an existing dir too: blobs may be private images. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = 0;
	if (fstat(fd, &st) < 0 || ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0))
		ret = -errno;
	close(fd);
	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

uint64_t cache_stat_tick(const struct stat *st)
{
	uint64_t a = (uint64_t)st->st_atim.tv_sec * 1000000000u + (uint64_t)st->st_atim.tv_nsec;
	uint64_t m = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
	return a > m ? a : m;
}

/* Bytes a partial blob holds, from its map (chunks present). */
static uint64_t partial_bytes(const cache *c, const char *hex, const struct stat *dst)
{
	char path[PATH_MAX];
	unsigned char hdr[CACHE_MAP_HDR], buf[4096];
	uint64_t size = 0, bytes = 0, idx = 0;
	size_t got = 0;
	int fd;

	cache_path_map(c, hex, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) /* no map: no chunk is present, but the file takes room */
		return (uint64_t)dst->st_blocks * 512;
	if (cache_pread_full(fd, hdr, sizeof(hdr), 0, &got) || got != sizeof(hdr) ||
	    memcmp(hdr, CACHE_MAP_MAGIC, 8) != 0)
		goto out;
	for (int i = 0; i < 8; i++)
		size |= (uint64_t)hdr[8 + i] << (8 * i);
	for (;;) {
		if (cache_pread_full(fd, buf, sizeof(buf), CACHE_MAP_HDR + idx, &got) || !got)
			break;
		for (size_t i = 0; i < got; i++, idx++) {
			uint64_t off = idx * CACHE_CHUNK_SIZE;
			if (buf[i] == 1 && off < size)
				bytes +=
				    size - off < CACHE_CHUNK_SIZE ? size - off : CACHE_CHUNK_SIZE;
		}
	}
out:
	close(fd);
	return bytes;
}

static void scan_dir(cache *c, const char *sub, int partial)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", c->dir, sub);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		struct cache_entry *e;
		char hex[CACHE_HEX_LEN + 1];

		if (len < CACHE_HEX_LEN || !cache_is_hex(n, CACHE_HEX_LEN))
			continue;
		memcpy(hex, n, CACHE_HEX_LEN);
		hex[CACHE_HEX_LEN] = '\0';
		if (partial && len == CACHE_HEX_LEN + 4 && strcmp(n + CACHE_HEX_LEN, ".map") == 0) {
			/* A map whose data is gone (a seal or an eviction cut
			 * short) can only mislead: remove it. */
			cache_path_data(c, hex, path);
			if (access(path, F_OK) < 0 && errno == ENOENT)
				unlinkat(dirfd(d), n, 0);
			continue;
		}
		if (partial ? (len != CACHE_HEX_LEN + 5 || strcmp(n + CACHE_HEX_LEN, ".data") != 0)
			    : len != CACHE_HEX_LEN)
			continue;
		if (fstatat(dirfd(d), n, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		e = cache_entry_get(c, hex);
		if (!e)
			break;
		if (partial && e->complete) {
			/* The complete blob supersedes it (unless in use). */
			cache_unlink_partial(c, hex);
			continue;
		}
		if (partial && c->crashed) {
			/* After a crash a flag may name data that was lost. We
			 * are the only user: remove the partial copy. */
			c->crashed_dropped++;
			if (cache_unlink_partial(c, hex) == 0) {
				cache_entry_maybe_free(c, e);
				continue;
			}
			cache_path_map(c, hex, path); /* in use after all? no flags */
			unlink(path);
		}
		e->complete = !partial;
		e->bytes = partial ? partial_bytes(c, hex, &st) : (uint64_t)st.st_size;
		e->tick = cache_stat_tick(&st);
		c->total += e->bytes;
	}
	closedir(d);
}

/* Removes temp files of processes that are gone (a crash mid-write). */
static void clean_tmp(cache *c)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/tmp", c->dir);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid;

		if (de->d_name[0] == '.')
			continue;
		pid = strtol(de->d_name, &end, 10);
		if (*end != '.' || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/* Serialises cache_open/cache_close of all processes on dir (held only
 * during those): -1 when flock is not available. */
static int open_close_lock(const cache *c)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/lock.open", c->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* 1 if no other process has the cache open (a fresh exclusive flock on
 * DIR/lock succeeds). Call under open_close_lock. */
static int sole_user(const cache *c)
{
	char path[PATH_MAX];
	int fd, sole;

	snprintf(path, sizeof(path), "%s/lock", c->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	sole = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return sole;
}

/* DIR/lock held shared while open. DIR/dirty exists while some process has
 * the cache open; the last clean close removes it after syncing partial
 * data. Found by the first opener, it means a crash: the chunk flags of
 * partial blobs may then name data that never reached the disk. */
static int take_dir_lock(cache *c)
{
	char path[PATH_MAX];
	int ocl = open_close_lock(c), fd, ret = 0, sole = sole_user(c);

	snprintf(path, sizeof(path), "%s/dirty", c->dir);
	if (sole) {
		c->crashed = access(path, F_OK) == 0;
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	cache_format_check(c, sole);
	snprintf(path, sizeof(path), "%s/lock", c->dir);
	c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->lock_fd < 0) {
		ret = -errno;
	} else if (flock(c->lock_fd, LOCK_SH) < 0) {
		if (errno == ENOLCK || errno == EOPNOTSUPP)
			log_warn("cache_dir %s: no flock on this filesystem; do not share it "
				 "between mounts",
				 c->dir);
		else
			ret = -errno;
	}
	if (ocl >= 0)
		close(ocl);
	return ret;
}

/* Makes this process's partial data durable, then gives up DIR/lock and,
 * as the last user, removes DIR/dirty. */
static void release_dir_lock(cache *c)
{
	char path[PATH_MAX];
	int ocl;

	for (int b = 0; b < CACHE_BUCKETS; b++)
		for (struct cache_entry *e = c->buckets[b]; e; e = e->next) {
			int fd;
			if (!e->dirty || e->complete)
				continue;
			cache_path_data(c, e->hex, path);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				fdatasync(fd);
				close(fd);
			}
		}
	ocl = open_close_lock(c);
	close(c->lock_fd);
	c->lock_fd = -1;
	if (sole_user(c)) {
		snprintf(path, sizeof(path), "%s/dirty", c->dir);
		unlink(path);
	}
	if (ocl >= 0)
		close(ocl);
}

int cache_open(const char *dir, uint64_t max_bytes, cache **out)
{
	cache *c = NULL;
	int ret;

	*out = NULL;
	if (!dir || !*dir || strlen(dir) > PATH_MAX - 128)
		return -EINVAL;
	ret = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out;
	c->lock_fd = -1;
	for (int i = 0; i < CACHE_SLOTS; i++)
		c->slots[i].data_fd = c->slots[i].map_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->hash_cv, NULL);
	c->dir = strdup(dir);
	if (!c->dir)
		goto out;
	/* Keep a trailing slash out of the names we build. */
	for (size_t n = strlen(c->dir); n > 1 && c->dir[n - 1] == '/'; n--)
		c->dir[n - 1] = '\0';
	c->max_bytes = max_bytes;
	ret = make_layout(c->dir);
	if (ret)
		goto out;
	/* Absolute: the daemon may chdir("/") after this. */
	{
		char *abs = realpath(c->dir, NULL);
		if (!abs) {
			ret = -errno;
			goto out;
		}
		free(c->dir);
		c->dir = abs;
		if (asprintf(&c->aux_dir, "%s/index", abs) < 0) {
			c->aux_dir = NULL;
			ret = -ENOMEM;
			goto out;
		}
	}
	ret = take_dir_lock(c);
	if (ret)
		goto out;
	clean_tmp(c);
	scan_dir(c, "blobs/sha256", 0);
	scan_dir(c, "partial", 1);
	cache_aux_scan(c);
	if (c->crashed_dropped)
		log_info("cache_dir %s was not closed cleanly; %u partial blobs start again",
			 c->dir, c->crashed_dropped);
	/* cache_size may be smaller than last time: evict down to it now
	 * (what other mounts hold open stays). */
	pthread_mutex_lock(&c->mu);
	if (c->max_bytes && c->total > c->max_bytes)
		cache_reserve(c, NULL, 0);
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
	ret = 0;
out:
	if (ret) {
		if (ret != -EINVAL)
			log_err("cache_dir %s: %s", dir, strerror(-ret));
		cache_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

void cache_close(cache *c)
{
	if (!c)
		return;
	cache_slots_close(c);
	if (c->lock_fd >= 0)
		release_dir_lock(c);
	cache_index_free(c);
	cache_aux_free(c);
	free(c->aux_dir);
	pthread_cond_destroy(&c->hash_cv);
	pthread_mutex_destroy(&c->mu);
	free(c->dir);
	free(c);
	cache_chunk_bufs_release();
}

const char *cache_dir(const cache *c) { return c->dir; }

void cache_set_sync(cache *c, int on) { c->sync = on; }

void cache_blob_pin(cache *c, const char *digest)
{
	char hex[CACHE_HEX_LEN + 1];
	struct cache_entry *e;

	if (cache_hex_of(digest, hex))
		return;
	pthread_mutex_lock(&c->mu);
	e = cache_entry_get(c, hex);
	if (e)
		e->pins++;
	pthread_mutex_unlock(&c->mu);
}

void cache_blob_unpin(cache *c, const char *digest)
{
	char hex[CACHE_HEX_LEN + 1];
	struct cache_entry *e;

	if (cache_hex_of(digest, hex))
		return;
	pthread_mutex_lock(&c->mu);
	e = cache_entry_find(c, hex);
	if (e && e->pins > 0) {
		e->pins--;
		if (!e->pins)
			cache_slots_trim(c);
		cache_entry_maybe_free(c, e);
	}
	pthread_mutex_unlock(&c->mu);
}

/* Adopts a complete blob another mount stored, or forgets one it evicted. */
int cache_refresh_complete(cache *c, const char *hex)
{
	char path[PATH_MAX];
	struct stat st;
	struct cache_entry *e;
	int present;

	cache_path_blob(c, hex, path);
	present = stat(path, &st) == 0 && S_ISREG(st.st_mode);
	pthread_mutex_lock(&c->mu);
	e = cache_entry_find(c, hex);
	if (present && (!e || !e->complete)) {
		e = cache_entry_get(c, hex);
		if (e) {
			c->total -= e->bytes;
			e->complete = 1;
			e->bytes = (uint64_t)st.st_size;
			e->tick = cache_now_tick(c);
			c->total += e->bytes;
		}
	} else if (!present && e && e->complete) {
		c->total -= e->bytes;
		e->bytes = 0;
		e->complete = 0;
		cache_entry_maybe_free(c, e);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
	return present;
}

int cache_blob_complete(cache *c, const char *digest)
{
	char hex[CACHE_HEX_LEN + 1];

	if (cache_hex_of(digest, hex))
		return 0;
	return cache_refresh_complete(c, hex);
}

int cache_blob_path(cache *c, const char *digest, char *buf, size_t bufsize)
{
	char hex[CACHE_HEX_LEN + 1], path[PATH_MAX];
	int ret = cache_hex_of(digest, hex);

	if (ret)
		return ret;
	if (!cache_refresh_complete(c, hex))
		return -ENOENT;
	cache_path_blob(c, hex, path);
	if (strlen(path) >= bufsize)
		return -ERANGE;
	strcpy(buf, path);
	return 0;
}

void cache_blob_drop(cache *c, const char *digest)
{
	char hex[CACHE_HEX_LEN + 1], path[PATH_MAX];
	struct cache_entry *e;

	if (cache_hex_of(digest, hex))
		return;
	pthread_mutex_lock(&c->mu);
	cache_slot_invalidate(c, hex);
	/* Explicit drop (bad data): the complete file goes even if another
	 * mount reads it (its open fds keep working); see discard_partial. */
	cache_path_blob(c, hex, path);
	unlink(path);
	cache_path_sum(c, hex, path);
	unlink(path);
	cache_discard_partial(c, hex);
	e = cache_entry_find(c, hex);
	if (e) {
		c->total -= e->bytes;
		e->bytes = 0;
		e->complete = 0;
		cache_hash_reset(e);
		cache_vbits_reset(e);
		cache_entry_maybe_free(c, e);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
}

void cache_get_stats(cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->stats;
	out->bytes_total = c->total;
	out->index_bytes = c->aux_bytes;
	pthread_mutex_unlock(&c->mu);
}
