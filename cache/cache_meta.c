/* Metadata records: opaque bytes under (namespace, key), one file each at
 * meta/<ns>/<sha256(key)>. The file repeats the key, so a hash collision or
 * a foreign file can never be read as another key's record, and carries the
 * data's length and sha256, so a record torn by a crash reads as absent
 * (hence no fdatasync: records are rebuilt from the network). Not counted
 * against max_bytes (records are small: manifests, tag -> digest). */
#include "cache/cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header: "ECRFSMETA2 <keylen> <datalen> <sha256 hex of data>\n", then the
 * key, then the data. */
#define META_MAGIC "ECRFSMETA2 "
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
	char path[PATH_MAX], dir[PATH_MAX], hdr[160], hex[CACHE_HEX_LEN + 1];
	char *head = NULL;
	size_t klen, hlen;
	int ret = meta_path(c, ns, key, path);

	if (ret)
		return ret;
	if (len > META_MAX)
		return -EFBIG;
	snprintf(dir, sizeof(dir), "%s/meta/%s", c->dir, ns);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cache_write_error(c, -errno);
	klen = strlen(key);
	cache_sha256_hex(data, len, hex);
	hlen = (size_t)snprintf(hdr, sizeof(hdr), META_MAGIC "%zu %zu %s\n", klen, len, hex);
	head = malloc(hlen + klen);
	if (!head)
		return -ENOMEM;
	memcpy(head, hdr, hlen);
	memcpy(head + hlen, key, klen);
	ret = cache_write_atomic(c, path, head, hlen + klen, data, len, 0);
	free(head);
	return ret ? cache_write_error(c, ret) : 0;
}

/* Checks the record in buf[0..got) against key; on success *data and *len
 * point at its data inside buf. -ENOENT when it is not key's intact record. */
static int parse_record(char *buf, size_t got, const char *key, char **data, size_t *len)
{
	char hex[CACHE_HEX_LEN + 1], *p, *end;
	unsigned long long klen, dlen;

	if (got < sizeof(META_MAGIC) || memcmp(buf, META_MAGIC, sizeof(META_MAGIC) - 1) != 0)
		return -ENOENT;
	p = buf + sizeof(META_MAGIC) - 1;
	klen = strtoull(p, &end, 10);
	if (end == p || *end != ' ')
		return -ENOENT;
	p = end + 1;
	dlen = strtoull(p, &end, 10);
	if (end == p || *end != ' ')
		return -ENOENT;
	p = end + 1;
	if ((size_t)(buf + got - p) < CACHE_HEX_LEN + 1 || p[CACHE_HEX_LEN] != '\n')
		return -ENOENT;
	end = p;
	p += CACHE_HEX_LEN + 1;
	if (klen != strlen(key) || (size_t)(buf + got - p) != klen + dlen ||
	    memcmp(p, key, klen) != 0)
		return -ENOENT;
	p += klen;
	cache_sha256_hex(p, dlen, hex);
	if (memcmp(hex, end, CACHE_HEX_LEN) != 0)
		return -ENOENT;
	*data = p;
	*len = dlen;
	return 0;
}

int cache_meta_get(cache *c, const char *ns, const char *key, char **data, size_t *len)
{
	char path[PATH_MAX];
	struct stat st;
	char *buf = NULL, *p = NULL;
	size_t got = 0;
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
	ret = parse_record(buf, got, key, &p, len);
	if (ret)
		goto out;
	memmove(buf, p, *len);
	buf[*len] = '\0';
	*data = buf;
	buf = NULL;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int cache_meta_del(cache *c, const char *ns, const char *key)
{
	char path[PATH_MAX], *data = NULL;
	size_t len = 0;
	int ret = meta_path(c, ns, key, path);

	if (ret)
		return ret;
	/* Only this key's record goes; a torn one (-ENOENT) goes too. */
	ret = cache_meta_get(c, ns, key, &data, &len);
	free(data);
	if (ret && ret != -ENOENT)
		return ret;
	if (unlink(path) < 0)
		return -errno;
	return 0;
}
