/* Index files: files derived from blobs (a layer's index, a zstd layer's
 * decompressed copy) that callers keep under DIR/index/. The cache counts
 * them in max_bytes and evicts them only when blobs alone cannot make room
 * (an index costs a whole layer download to rebuild, a blob only what is
 * read of it again). Files whose names share their first 64 hex digits
 * (one layer's index and copy) are evicted together. */
#include "cache/cache_i.h"
#include "net/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUX_NAME_MAX 100
/* A temp file (".name.XXXXXX") not written for this long was left by a
 * process that died while building. */
#define AUX_TMP_STALE_S 3600

struct cache_aux {
	char name[AUX_NAME_MAX + 1];
	uint64_t bytes;
	uint64_t tick;
	int pins;
	unsigned evict_skip;
	struct cache_aux *next;
};

/* Lowercase letters, digits, '.', '_' and '-', not starting with '.'. */
static int aux_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > AUX_NAME_MAX || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '.' || name[i] == '_' || name[i] == '-'))
			return 0;
	return 1;
}

static void aux_path(const cache *c, const char *name, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s/index/%s", c->dir, name);
}

const char *cache_aux_dir(cache *c) { return c->aux_dir; }

static struct cache_aux *aux_find(cache *c, const char *name)
{
	for (struct cache_aux *a = c->aux; a; a = a->next)
		if (!strcmp(a->name, name))
			return a;
	return NULL;
}

/* Accounts a file of bytes under name (replacing what was known). mu held. */
static struct cache_aux *aux_set(cache *c, const char *name, uint64_t bytes, uint64_t tick)
{
	struct cache_aux *a = aux_find(c, name);
	if (!a) {
		a = calloc(1, sizeof *a);
		if (!a)
			return NULL;
		snprintf(a->name, sizeof a->name, "%s", name);
		a->next = c->aux;
		c->aux = a;
	}
	c->total -= a->bytes;
	c->aux_bytes -= a->bytes;
	a->bytes = bytes;
	a->tick = tick;
	c->total += bytes;
	c->aux_bytes += bytes;
	return a;
}

static void aux_forget(cache *c, struct cache_aux *a)
{
	for (struct cache_aux **pp = &c->aux; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	c->total -= a->bytes;
	c->aux_bytes -= a->bytes;
	free(a);
}

void cache_aux_free(cache *c)
{
	while (c->aux) {
		struct cache_aux *a = c->aux;
		c->aux = a->next;
		free(a);
	}
	c->aux_bytes = 0;
}

/* At open: what DIR/index holds; temp files of dead builds go. */
void cache_aux_scan(cache *c)
{
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(c->aux_dir);
	time_t now = time(NULL);

	if (!d)
		return;
	pthread_mutex_lock(&c->mu);
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n[0] == '.' && now - st.st_mtime > AUX_TMP_STALE_S)
			unlinkat(dirfd(d), n, 0);
		else if (aux_name_ok(n))
			aux_set(c, n, (uint64_t)st.st_size, cache_stat_tick(&st));
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
	closedir(d);
}

int cache_aux_add(cache *c, const char *name, int pin)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	if (!aux_name_ok(name))
		return -EINVAL;
	aux_path(c, name, path);
	if (stat(path, &st) < 0)
		return -errno;
	pthread_mutex_lock(&c->mu);
	/* The same file again (two images built one layer at once): its old
	 * bytes are replaced, its pins kept; with no bytes it is no victim. */
	struct cache_aux *a = aux_set(c, name, 0, cache_now_tick(c));
	ret = a ? 0 : -ENOMEM;
	/* Room first (blobs go before any other index file), then count it. */
	if (ret == 0 && (ret = cache_reserve(c, NULL, (uint64_t)st.st_size)) == 0) {
		c->total -= (uint64_t)st.st_size;
		aux_set(c, name, (uint64_t)st.st_size, a->tick);
		if (pin)
			a->pins++;
	} else if (a && !a->pins) {
		aux_forget(c, a);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
	if (ret) {
		log_warn(
		    "cache: index file %s (%llu bytes) does not fit under cache_size: not kept",
		    name, (unsigned long long)st.st_size);
		unlink(path);
	}
	return ret;
}

int cache_aux_pin(cache *c, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	const struct timespec ts[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};

	if (!aux_name_ok(name))
		return -EINVAL;
	aux_path(c, name, path);
	pthread_mutex_lock(&c->mu);
	/* Under mu: no eviction of this process runs between the stat and the pin. */
	int ret = stat(path, &st) < 0 ? -errno : 0;
	struct cache_aux *a = aux_find(c, name);
	if (ret == 0 && (!a || a->bytes != (uint64_t)st.st_size))
		a = aux_set(c, name, (uint64_t)st.st_size, 0); /* another mount wrote it */
	else if (ret && a && a->pins)
		aux_set(c, name, 0, a->tick); /* another mount evicted it */
	else if (ret && a)
		aux_forget(c, a);
	if (ret == 0 && !a)
		ret = -ENOMEM;
	if (ret == 0) {
		a->pins++;
		a->tick = cache_now_tick(c);
	}
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
	/* The access time keeps the LRU order for later mounts. */
	if (ret == 0)
		utimensat(AT_FDCWD, path, ts, 0);
	return ret;
}

void cache_aux_unpin(cache *c, const char *name)
{
	pthread_mutex_lock(&c->mu);
	struct cache_aux *a = aux_find(c, name);
	if (a && a->pins > 0)
		a->pins--;
	pthread_mutex_unlock(&c->mu);
}

void cache_aux_drop(cache *c, const char *name)
{
	char path[PATH_MAX];

	if (!aux_name_ok(name))
		return;
	aux_path(c, name, path);
	pthread_mutex_lock(&c->mu);
	unlink(path);
	struct cache_aux *a = aux_find(c, name);
	if (a)
		aux_forget(c, a);
	c->stats.bytes_total = c->total;
	pthread_mutex_unlock(&c->mu);
}

static int same_layer(const char *a, const char *b)
{
	return strlen(a) >= CACHE_HEX_LEN && cache_is_hex(a, CACHE_HEX_LEN) &&
	       !strncmp(a, b, CACHE_HEX_LEN);
}

/* Deletes a and its unpinned siblings unless another process holds one
 * (shared flock). mu held. 0 or -EBUSY. */
static int aux_delete(cache *c, struct cache_aux *a)
{
	char path[PATH_MAX];
	int fds[16], nfd = 0, ret = 0;
	struct cache_aux *group[16];

	for (struct cache_aux *s = c->aux; s && nfd < 16; s = s->next) {
		if (s != a && (s->pins || !same_layer(s->name, a->name)))
			continue;
		aux_path(c, s->name, path);
		int fd = cache_lock_for_delete(path);
		if (fd == -EBUSY) {
			ret = -EBUSY;
			break;
		}
		group[nfd] = s;
		fds[nfd++] = fd;
	}
	for (int i = 0; i < nfd; i++) {
		if (ret == 0) {
			aux_path(c, group[i]->name, path);
			if (fds[i] >= 0)
				unlink(path);
			log_debug("cache: evicted index file %s (%llu bytes)", group[i]->name,
				  (unsigned long long)group[i]->bytes);
			c->stats.index_evictions++;
			aux_forget(c, group[i]);
		}
		if (fds[i] >= 0)
			close(fds[i]);
	}
	return ret;
}

int cache_aux_evict_one(cache *c, unsigned round)
{
	for (;;) {
		struct cache_aux *victim = NULL;
		for (struct cache_aux *a = c->aux; a; a = a->next)
			if (!a->pins && a->bytes && a->evict_skip != round &&
			    (!victim || a->tick < victim->tick))
				victim = a;
		if (!victim)
			return -ENOSPC;
		if (aux_delete(c, victim) == 0)
			return 0;
		victim->evict_skip = round; /* another mount uses it */
	}
}
