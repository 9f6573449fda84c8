/* File helpers of the cache: full reads/writes, atomic files, sha256. */
#include "cache/cache_i.h"
#include "net/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int cache_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

int cache_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int cache_write_atomic(cache *c, const char *path, const void *hdr, size_t hdrlen, const void *data,
		       size_t len, int sync)
{
	char tmp[PATH_MAX];
	int fd, ret;

	cache_path_tmp(c, tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = cache_pwrite_full(fd, hdr, hdrlen, 0);
	if (!ret)
		ret = cache_pwrite_full(fd, data, len, hdrlen);
	if (!ret && sync && fdatasync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int cache_sha256_fd(int fd, EVP_MD_CTX *ctx, uint64_t from, uint64_t size, unsigned char md[32])
{
	const size_t bufsize = 256 * 1024;
	unsigned char *buf = malloc(bufsize);
	uint64_t off = ctx ? from : 0;
	unsigned int mdlen = 0;
	int ret = -ENOMEM;

	if (!ctx) {
		ctx = EVP_MD_CTX_new();
		if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
			ret = -EIO;
			goto out;
		}
	}
	if (!ctx || !buf)
		goto out;
	while (off < size) {
		size_t want = size - off < bufsize ? (size_t)(size - off) : bufsize;
		size_t got = 0;
		ret = cache_pread_full(fd, buf, want, off, &got);
		if (ret)
			goto out;
		ret = -EIO;
		if (got != want) /* shorter than the descriptor says */
			goto out;
		if (EVP_DigestUpdate(ctx, buf, got) != 1)
			goto out;
		off += got;
	}
	ret = -EIO;
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	ret = 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return ret;
}

void cache_md_to_hex(const unsigned char md[32], char hex[CACHE_HEX_LEN + 1])
{
	net_hex(md, 32, hex);
}

void cache_sha256_hex(const void *data, size_t len, char hex[CACHE_HEX_LEN + 1])
{
	net_sha256_hex(data, len, hex);
}

int cache_open_locked(const char *path, int flags, mode_t mode)
{
	for (int tries = 0; tries < 100; tries++) {
		struct stat a, b;
		int fd = open(path, flags | O_CLOEXEC, mode);
		if (fd < 0)
			return -errno;
		/* A filesystem without flock: work unlocked (open fds still
		 * read what another mount unlinks). */
		if (flock(fd, LOCK_SH) < 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
			int err = -errno;
			close(fd);
			return err;
		}
		/* An evicting process may have unlinked it before we locked. */
		int serr = stat(path, &b) < 0 ? errno : 0;
		if (!serr && fstat(fd, &a) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
		if (serr == ENOENT && !(flags & O_CREAT))
			return -ENOENT;
	}
	return -EAGAIN;
}
