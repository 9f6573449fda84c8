/* Metadata records: opaque bytes under (namespace, key), one file each at
 * meta/<ns>/<sha256(key)>. The file repeats the key, so a hash collision or
 * a foreign file can never be read as another key's record. Not counted
 * against max_bytes (records are small: manifests, tag -> digest). */
#include "cache/cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_MAGIC "ECRFSMETA1 "
#define META_MAX (64u * 1024 * 1024) /* refuse to load absurd records */

/* ns becomes a directory name: short, [a-z0-9_-] only. */
static int ns_ok(const char *ns)
{
	size_t n = ns ? strlen(ns) : 0;

	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((ns[i] >= 'a' && ns[i] <= 'z') || (ns[i] >= '0' && ns[i] <= '9') ||
		      ns[i] == '_' || ns[i] == '-'))
			return 0;
	return 1;
}

static int meta_path(const cache *c, const char *ns, const char *key, char path[PATH_MAX])
{
	char hex[CACHE_HEX_LEN + 1];

	if (!ns_ok(ns) || !key)
		return -EINVAL;
	cache_sha256_hex(key, strlen(key), hex);
	snprintf(path, PATH_MAX, "%s/meta/%s/%s", c->dir, ns, hex);
	return 0;
}

int cache_meta_put(cache *c, const char *ns, const char *key, const void *data, size_t len)
{
	char path[PATH_MAX], hdr[64];
	char *head = NULL;
	size_t klen, hlen;
	int ret = meta_path(c, ns, key, path);

	if (ret)
		return ret;
	if (len > META_MAX)
		return -EFBIG;
	{
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/meta/%s", c->dir, ns);
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return cache_write_error(c, -errno);
	}
	klen = strlen(key);
	hlen = (size_t)snprintf(hdr, sizeof(hdr), META_MAGIC "%zu\n", klen);
	head = malloc(hlen + klen);
	if (!head)
		return -ENOMEM;
	memcpy(head, hdr, hlen);
	memcpy(head + hlen, key, klen);
	ret = cache_write_atomic(c, path, head, hlen + klen, data, len);
	free(head);
	return ret ? cache_write_error(c, ret) : 0;
}

int cache_meta_get(cache *c, const char *ns, const char *key, char **data, size_t *len)
{
	char path[PATH_MAX];
	struct stat st;
	char *buf = NULL, *p, *end;
	size_t got = 0, klen;
	int fd = -1, ret = meta_path(c, ns, key, path);

	*data = NULL;
	*len = 0;
	if (ret)
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = -EIO;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > META_MAX + 4096)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = cache_pread_full(fd, buf, (size_t)st.st_size, 0, &got);
	if (ret)
		goto out;
	buf[got] = '\0';
	/* Header "ECRFSMETA1 <keylen>\n", then the key, then the data. */
	ret = -ENOENT;
	if (got < sizeof(META_MAGIC) || memcmp(buf, META_MAGIC, sizeof(META_MAGIC) - 1) != 0)
		goto out;
	p = buf + sizeof(META_MAGIC) - 1;
	klen = strtoul(p, &end, 10);
	if (end == p || *end != '\n')
		goto out;
	p = end + 1;
	if (klen != strlen(key) || (size_t)(buf + got - p) < klen || memcmp(p, key, klen) != 0)
		goto out;
	p += klen;
	*len = (size_t)(buf + got - p);
	memmove(buf, p, *len);
	buf[*len] = '\0';
	*data = buf;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int cache_meta_del(cache *c, const char *ns, const char *key)
{
	char path[PATH_MAX];
	int ret = meta_path(c, ns, key, path);

	if (ret)
		return ret;
	/* Check it is this key's record before removing it. */
	{
		char *data = NULL;
		size_t len = 0;
		ret = cache_meta_get(c, ns, key, &data, &len);
		free(data);
		if (ret)
			return ret;
	}
	return unlink(path) < 0 ? -errno : 0;
}
