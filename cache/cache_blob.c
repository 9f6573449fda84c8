/* Blob data: chunked writes into partial files, reads from complete or
 * partial files, sealing (verify + move into blobs/), whole-blob puts. */
#include "cache/cache_i.h"
#include "net/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Adds delta (may be negative) to the blob's accounted bytes. */
static void account(cache *c, const char *hex, int64_t delta)
{
	struct cache_entry *e;

	pthread_mutex_lock(&c->mu);
	e = cache_entry_find(c, hex);
	if (e) {
		e->bytes += (uint64_t)delta;
		c->total += (uint64_t)delta;
		e->tick = cache_now_tick(c);
		cache_entry_maybe_free(c, e);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
}

/* 1 when every chunk covering [off, off+len) is flagged in the map. */
static int chunks_present(int map_fd, uint64_t off, size_t len)
{
	uint64_t first = off / CACHE_CHUNK_SIZE, last = (off + len - 1) / CACHE_CHUNK_SIZE;
	unsigned char flags[64];

	while (first <= last) {
		size_t n =
		    last - first + 1 < sizeof(flags) ? (size_t)(last - first + 1) : sizeof(flags);
		size_t got = 0;
		if (cache_pread_full(map_fd, flags, n, CACHE_MAP_HDR + first, &got) || got != n)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (flags[i] != 1)
				return 0;
		first += n;
	}
	return 1;
}

/* Counts a hit (and refreshes the blob's LRU position) or a miss. */
static void count(cache *c, const char *hex, int hit)
{
	struct cache_entry *e;

	pthread_mutex_lock(&c->mu);
	if (hit) {
		c->stats.hits++;
		e = cache_entry_find(c, hex);
		if (e)
			e->tick = cache_now_tick(c);
	} else {
		c->stats.misses++;
	}
	pthread_mutex_unlock(&c->mu);
}

/* Holds the open files of a blob whose [off, off+len) is all present:
 * 0 with f held (the caller puts it), -ENOENT when some chunk is missing,
 * or another -errno. */
static int find_range(cache *c, const char *hex, uint64_t size, uint64_t off, size_t len,
		      struct cache_fds *f)
{
	for (int attempt = 0;; attempt++) {
		int ret = cache_fds_get(c, hex, size, 0, f);
		if (ret == -ENOENT)
			cache_refresh_complete(c, hex); /* forget what another mount evicted */
		if (ret)
			return ret;
		if (f->complete || chunks_present(f->map_fd, off, len))
			return 0;
		cache_fds_put(c, f);
		/* Another mount may have sealed it since we opened it. */
		if (attempt == 0 && cache_refresh_complete(c, hex)) {
			pthread_mutex_lock(&c->mu);
			cache_slot_invalidate(c, hex);
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		return -ENOENT;
	}
}

/* A complete file shorter than its size was cut by a crash before its data
 * reached the disk: never served, dropped so that it is fetched again. */
static void drop_short(cache *c, const char *digest, const char *hex, uint64_t size)
{
	log_warn("cache: sha256:%s is shorter than %llu bytes; dropped", hex,
		 (unsigned long long)size);
	cache_blob_drop(c, digest);
}

/* Clamps [off, off+len) to the blob; 0 when nothing is left to read. */
static size_t clamp_len(uint64_t size, uint64_t off, size_t len)
{
	if (off >= size || !len)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	return len > SSIZE_MAX ? SSIZE_MAX : len;
}

static int writer_lock(cache *c, const char *hex, int map_fd);
static void account(cache *c, const char *hex, int64_t delta);

/* A partial chunk that failed its check loses its flag (so it is fetched
 * and stored again), under the writers' lock and checked once more there:
 * another process may have replaced it meanwhile. */
static void discard_chunk(cache *c, const struct cache_fds *f, uint64_t size, uint64_t idx)
{
	static const unsigned char zero = 0;
	uint64_t off = idx * CACHE_CHUNK_SIZE;
	size_t clen = size - off < CACHE_CHUNK_SIZE ? (size_t)(size - off) : CACHE_CHUNK_SIZE;
	unsigned char *buf = cache_chunk_buf_get();
	int lock_fd = writer_lock(c, f->hex, f->map_fd);
	struct cache_entry *e;

	if (lock_fd < 0 || !buf || cache_chunk_ok(f, size, idx, buf) != 0)
		goto out;
	if (cache_pwrite_full(f->map_fd, &zero, 1, CACHE_MAP_HDR + idx))
		goto out;
	fallocate(f->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)clen);
	account(c, f->hex, -(int64_t)clen);
	/* The running hash may have read the bad bytes: a seal rereads all. */
	pthread_mutex_lock(&c->mu);
	e = cache_entry_find(c, f->hex);
	if (e)
		cache_hash_reset(e);
	pthread_mutex_unlock(&c->mu);
out:
	if (lock_fd >= 0)
		close(lock_fd);
	cache_chunk_buf_put(buf);
}

/* Checks the chunks of [off, off+len) (once per process): 0, or -ENOENT
 * after discarding what failed, with one log line. f is put either way. */
static int checked(cache *c, const char *digest, struct cache_fds *f, uint64_t size, uint64_t off,
		   size_t len)
{
	uint64_t bad = 0;
	int complete = f->complete, ret = cache_check_range(c, f, size, off, len, &bad);

	if (ret == -ENODATA) {
		ret = cache_sum_rebuild(c, f, size);
		if (ret == -EBADMSG)
			log_warn("cache: sha256:%s: cached blob does not match its digest; dropped "
				 "and fetched again",
				 f->hex);
	} else if (ret == -EBADMSG) {
		log_warn("cache: sha256:%s: chunk %llu does not match its checksum; %s", f->hex,
			 (unsigned long long)bad,
			 complete ? "the blob is dropped and fetched again" : "fetched again");
		if (!complete)
			discard_chunk(c, f, size, bad);
	}
	cache_fds_put(c, f);
	if (ret == -EBADMSG && complete)
		cache_blob_drop(c, digest);
	return ret == -EBADMSG ? -ENOENT : ret;
}

ssize_t cache_blob_read_fd(cache *c, const char *digest, uint64_t size, size_t len, uint64_t off,
			   int *fd)
{
	char hex[CACHE_HEX_LEN + 1];
	struct cache_fds f;
	ssize_t ret = cache_hex_of(digest, hex);

	*fd = -1;
	if (ret)
		return ret;
	if (!(len = clamp_len(size, off, len)))
		return 0;
	ret = find_range(c, hex, size, off, len, &f);
	if (!ret) {
		int short_file = f.complete && f.file_size < size;
		if (short_file) {
			cache_fds_put(c, &f);
			drop_short(c, digest, hex, size);
			ret = -ENOENT;
		} else if ((*fd = fcntl(f.data_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
			ret = -errno;
			cache_fds_put(c, &f);
		} else {
			ret = checked(c, digest, &f, size, off, len);
		}
		if (ret && *fd >= 0) {
			close(*fd);
			*fd = -1;
		}
		if (!ret)
			ret = (ssize_t)len;
	}
	count(c, hex, ret >= 0);
	return ret;
}

ssize_t cache_blob_read(cache *c, const char *digest, uint64_t size, void *buf, size_t len,
			uint64_t off)
{
	size_t got = 0;
	int fd, ret;
	ssize_t n = cache_blob_read_fd(c, digest, size, len, off, &fd);

	if (n <= 0)
		return n;
	ret = cache_pread_full(fd, buf, (size_t)n, off, &got);
	close(fd);
	if (ret)
		return ret;
	return got == (size_t)n ? n : -ENOENT;
}

int cache_blob_has(cache *c, const char *digest, uint64_t size, uint64_t off, size_t len)
{
	char hex[CACHE_HEX_LEN + 1];
	struct cache_fds f;
	int has;

	if (cache_hex_of(digest, hex))
		return 0;
	if (off >= size || !len)
		return 1; /* nothing to fetch */
	if (len > size - off)
		len = (size_t)(size - off);
	if (cache_fds_get(c, hex, size, 0, &f))
		return 0;
	has = f.complete || chunks_present(f.map_fd, off, len);
	cache_fds_put(c, &f);
	/* Sealed by another mount since our fds were opened. */
	return has || cache_refresh_complete(c, hex);
}

static int chunk_args_ok(uint64_t size, uint64_t off, size_t len)
{
	if (off % CACHE_CHUNK_SIZE)
		return 0;
	if (size == 0)
		return off == 0 && len == 0;
	if (off >= size)
		return 0;
	return len == (size - off < CACHE_CHUNK_SIZE ? size - off : CACHE_CHUNK_SIZE);
}

/* Exclusive flock on the map through a fresh open file (flock is per open
 * file, so this excludes other threads too): writers of one blob take turns
 * (checking a flag and storing its chunk is atomic, so a flagged chunk is
 * never written again), and a seal never hashes or moves data being
 * written. -ESTALE when map_fd is no longer the live map (sealed, dropped). */
static int writer_lock(cache *c, const char *hex, int map_fd)
{
	char path[PATH_MAX];
	struct stat a, b;
	int fd;

	cache_path_map(c, hex, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESTALE : -errno;
	if (flock(fd, LOCK_EX) < 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (fstat(fd, &a) < 0 || fstat(map_fd, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev || a.st_nlink == 0) {
		close(fd);
		return -ESTALE;
	}
	return fd;
}

int cache_blob_write_chunk(cache *c, const char *digest, uint64_t size, uint64_t off,
			   const void *buf, size_t len)
{
	static const unsigned char one = 1;
	char hex[CACHE_HEX_LEN + 1];
	struct cache_fds f;
	unsigned char flag = 0;
	uint64_t idx = off / CACHE_CHUNK_SIZE, nonce = 0;
	size_t got = 0;
	int ret = cache_hex_of(digest, hex), reserved = 0, lock_fd = -1;

	if (ret)
		return ret;
	if (!chunk_args_ok(size, off, len))
		return -EINVAL;
	for (int attempt = 0;; attempt++) {
		ret = cache_fds_get(c, hex, size, 1, &f);
		if (ret)
			return cache_write_error(c, ret);
		if (f.complete)
			goto out; /* already verified and stored */
		lock_fd = writer_lock(c, hex, f.map_fd);
		if (lock_fd >= 0 || lock_fd != -ESTALE || attempt == 2)
			break;
		/* Sealed or dropped since our fds were opened: look again. */
		cache_fds_put(c, &f);
		pthread_mutex_lock(&c->mu);
		cache_slot_invalidate(c, hex);
		pthread_mutex_unlock(&c->mu);
	}
	if (lock_fd < 0) {
		ret = lock_fd == -ESTALE ? -EAGAIN : lock_fd; /* dropped again and again */
		goto out;
	}
	ret = cache_pread_full(f.map_fd, &flag, 1, CACHE_MAP_HDR + idx, &got);
	if (ret)
		goto out;
	if (got == 1 && flag == 1)
		goto out; /* same digest, same bytes: nothing to do */
	pthread_mutex_lock(&c->mu);
	ret = cache_reserve(c, hex, len);
	if (!ret) {
		struct cache_entry *e = cache_entry_find(c, hex);
		if (e) { /* busy while we hold the fds, so it exists */
			e->bytes += len;
			e->tick = cache_now_tick(c);
			e->dirty = 1;
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (ret) {
		close(lock_fd);
		cache_fds_put(c, &f);
		return ret; /* the cap, not the disk: no disk_full */
	}
	reserved = 1;
	/* Data before flag: a flag never claims bytes not written. */
	ret = cache_pwrite_full(f.data_fd, buf, len, off);
	/* Start writeback now (no wait), so the fdatasync at seal is short. */
	if (!ret && c->sync && len)
		sync_file_range(f.data_fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
	/* Its checksum before its flag: a flag never claims an unset CRC. */
	if (!ret)
		ret = cache_map_put_crc(f.map_fd, size, idx, cache_crc(buf, len));
	if (!ret)
		ret = cache_pwrite_full(f.map_fd, &one, 1, CACHE_MAP_HDR + idx);
	if (ret)
		goto out;
	pthread_mutex_lock(&c->mu);
	c->stats.bytes_stored += len;
	cache_room_again(c);
	pthread_mutex_unlock(&c->mu);
	if (cache_map_nonce(f.map_fd, size, &nonce) == 0)
		cache_chunk_checked(c, hex, nonce, size, idx); /* its CRC is of our bytes */
	close(lock_fd); /* hashing below needs no lock: flagged chunks are final */
	lock_fd = -1;
	cache_hash_advance(c, hex, size, &f, buf, off, len);
out:
	if (ret && reserved) {
		/* Give the space back to the disk and to the cap. */
		if (len)
			fallocate(f.data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				  (off_t)len);
		account(c, hex, -(int64_t)len);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	cache_fds_put(c, &f);
	return ret ? cache_write_error(c, ret) : 0;
}

/* Marks hex complete with size bytes, or forgets it (complete 0). */
static void set_state(cache *c, const char *hex, int complete, uint64_t size)
{
	struct cache_entry *e;

	pthread_mutex_lock(&c->mu);
	cache_slot_invalidate(c, hex);
	e = complete ? cache_entry_get(c, hex) : cache_entry_find(c, hex);
	if (e) {
		uint64_t bytes = complete ? size : 0;
		c->total = c->total - e->bytes + bytes;
		e->bytes = bytes;
		e->complete = complete;
		e->tick = cache_now_tick(c);
		cache_hash_reset(e);
		cache_entry_maybe_free(c, e);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
}

static int all_flags_set(int map_fd, uint64_t size, uint64_t *nonce)
{
	if (cache_map_nonce(map_fd, size, nonce))
		return -EIO;
	return size == 0 || chunks_present(map_fd, 0, (size_t)size) ? 1 : 0;
}

/* Writes the sealed map's flags and sums as blobs/sha256/<hex>.sum, from
 * map_fd (the map we hold locked and found complete: by then the map's
 * path may name a newer map, after a drop). */
static int write_sum(cache *c, const char *hex, int map_fd, uint64_t size)
{
	size_t len = (size_t)cache_map_len(size), got = 0;
	unsigned char *buf = malloc(len);
	char sum[PATH_MAX];
	int ret = -ENOMEM;

	if (!buf)
		return ret;
	ret = cache_pread_full(map_fd, buf, len, 0, &got);
	if (!ret && got != len)
		ret = -EAGAIN; /* torn: seal again later */
	cache_path_sum(c, hex, sum);
	if (!ret)
		ret = cache_write_atomic(c, sum, NULL, 0, buf, len, c->sync);
	free(buf);
	return ret;
}

int cache_blob_seal(cache *c, const char *digest, uint64_t size)
{
	char hex[CACHE_HEX_LEN + 1], got_hex[CACHE_HEX_LEN + 1];
	char map[PATH_MAX], data[PATH_MAX], blob[PATH_MAX];
	unsigned char md[32];
	struct stat a, b;
	uint64_t nonce = 0;
	int map_fd = -1, data_fd = -1, ret = cache_hex_of(digest, hex);

	if (ret)
		return ret;
	if (cache_refresh_complete(c, hex))
		return 0;
	cache_path_map(c, hex, map);
	cache_path_data(c, hex, data);
	cache_path_blob(c, hex, blob);
	map_fd = open(map, O_RDWR | O_CLOEXEC);
	if (map_fd < 0) {
		/* No map: nothing written, or sealed since the check above. */
		ret = errno != ENOENT ? -errno : cache_refresh_complete(c, hex) ? 0 : -EAGAIN;
		goto out;
	}
	/* Exclusive on the map: one sealer at a time, across mounts too. */
	if (flock(map_fd, LOCK_EX) < 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
		ret = -errno;
		goto out;
	}
	if (fstat(map_fd, &a) < 0 || stat(map, &b) < 0 || a.st_ino != b.st_ino) {
		/* Sealed (or dropped) by someone else while we waited. */
		ret = cache_refresh_complete(c, hex) ? 0 : -EAGAIN;
		goto out;
	}
	ret = all_flags_set(map_fd, size, &nonce);
	if (ret <= 0) {
		if (ret < 0) /* a map for another size: forget its flags */
			unlink(map);
		ret = -EAGAIN;
		goto out;
	}
	/* Shared lock: no eviction unlinks the data while we verify. An
	 * eviction that got in first has unlinked the map before the data. */
	data_fd = cache_open_locked(data, O_RDONLY, 0);
	if (data_fd < 0 || stat(map, &b) < 0 || a.st_ino != b.st_ino) {
		ret = data_fd < 0 && data_fd != -ENOENT ? data_fd : -EAGAIN;
		goto out;
	}
	{
		/* Continue the running hash of this partial if there is one. */
		uint64_t from = 0;
		EVP_MD_CTX *ctx = cache_hash_take(c, hex, nonce, &from);
		ret = cache_sha256_fd(data_fd, ctx, from, size, md);
	}
	if (!ret) {
		cache_md_to_hex(md, got_hex);
		if (strcmp(got_hex, hex) != 0)
			ret = -EIO;
	}
	if (ret == -EIO) {
		log_warn("cache: sha256:%s: cached data does not match the digest; dropped", hex);
		set_state(c, hex, 0, 0);
		if (data_fd >= 0)
			close(data_fd); /* our own shared lock would keep it */
		data_fd = -1;
		cache_discard_partial(c, hex);
		goto out;
	}
	if (ret)
		goto out;
	if (c->sync && fdatasync(data_fd) < 0) {
		ret = cache_write_error(c, -errno);
		goto out;
	}
	/* The map's sums become the blob's, before the blob appears, so it
	 * never lacks them. */
	ret = write_sum(c, hex, map_fd, size);
	if (ret) {
		ret = cache_write_error(c, ret);
		goto out;
	}
	if (rename(data, blob) < 0) {
		ret = errno == ENOENT ? -EAGAIN : -errno; /* dropped meanwhile */
		cache_path_sum(c, hex, map);
		unlink(map);
		goto out;
	}
	unlink(map);
	set_state(c, hex, 1, size);
	ret = 0;
out:
	if (data_fd >= 0)
		close(data_fd);
	if (map_fd >= 0)
		close(map_fd);
	return ret;
}

int cache_blob_put(cache *c, const char *digest, const void *data, size_t len)
{
	char hex[CACHE_HEX_LEN + 1], got_hex[CACHE_HEX_LEN + 1], path[PATH_MAX];
	int ret = cache_hex_of(digest, hex);

	if (ret)
		return ret;
	cache_sha256_hex(data, len, got_hex);
	if (strcmp(got_hex, hex) != 0)
		return -EIO;
	if (cache_refresh_complete(c, hex)) {
		account(c, hex, 0);
		return 0;
	}
	pthread_mutex_lock(&c->mu);
	ret = cache_reserve(c, hex, len);
	pthread_mutex_unlock(&c->mu);
	if (ret)
		return ret;
	ret = cache_sum_put(c, hex, data, len); /* before the blob: never without */
	cache_path_blob(c, hex, path);
	if (!ret)
		ret = cache_write_atomic(c, path, NULL, 0, data, len, c->sync);
	if (ret) {
		pthread_mutex_lock(&c->mu);
		c->total -= len;
		c->stats.bytes_total = c->total;
		pthread_mutex_unlock(&c->mu);
		return cache_write_error(c, ret);
	}
	pthread_mutex_lock(&c->mu);
	c->total -= len; /* set_state accounts the blob's final size */
	c->stats.bytes_stored += len;
	pthread_mutex_unlock(&c->mu);
	set_state(c, hex, 1, len);
	/* The whole blob supersedes any partial copy. */
	cache_discard_partial(c, hex);
	return 0;
}

void cache_blob_willneed(cache *c, const char *digest, uint64_t size, uint64_t off, uint64_t len)
{
	char hex[CACHE_HEX_LEN + 1];
	struct cache_fds f;

	if (cache_hex_of(digest, hex) || off >= size || cache_fds_get(c, hex, size, 0, &f))
		return;
	posix_fadvise(f.data_fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
	cache_fds_put(c, &f);
}
