/* rootfs-dump: a test tool (not installed). Indexes local layer blobs (base
 * first), merges them and prints one JSON object per node, in name order,
 * with the sha256 of every regular file read through the span reader.
 *   rootfs-dump [-b] [-c CACHE_MIB] [-i INDEX_DIR] [-l LAYER_NO] [-n NS] [-s SPAN] LAYER...
 * -i saves every index and loads it back before use; -l prints the tree of
 * one layer as stored instead of the merged one; -b only builds the indexes
 * and prints their sizes (for measurements). Strings are hex. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs/rootfs/rootfs.h"
#include "net/digest.h"

struct file_src {
	int fd;
};

static int read_file(void *arg, uint64_t off, void *buf, size_t len)
{
	struct file_src *s = arg;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(s->fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (size_t)n;
	}
	return 0;
}

static void hex(const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", ((const unsigned char *)p)[i]);
}

/* "sha256:<hex>" of a file. */
static int file_digest(int fd, char out[72])
{
	unsigned char buf[1 << 16], md[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	ssize_t n;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(c, buf, (size_t)n);
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	lseek(fd, 0, SEEK_SET);
	net_digest_of_md(md, out);
	return n < 0 ? -errno : 0;
}

/* zstd layers: the decompressed copy goes to an unlinked temporary file. */
static int write_copy(void *arg, const void *buf, size_t len)
{
	return fwrite(buf, 1, len, arg) == len ? 0 : -EIO;
}

/* Builds the index of the blob open on *fd; for zstd, *fd becomes the
 * decompressed copy that reads are served from. */
static int build(int *fd, const char *idir, uint32_t span, struct rootfs_index **out)
{
	char digest[72];
	unsigned char buf[100000]; /* an odd chunk size on purpose */
	struct rootfs_build *b = NULL;
	struct rootfs_build_opts o = {.span_bytes = span, .on_output = write_copy};
	FILE *copy = tmpfile();
	ssize_t n;
	int rc = copy ? file_digest(*fd, digest) : -errno;
	o.output_arg = copy;
	if (rc == 0)
		rc = rootfs_build_new(digest, ROOTFS_COMP_AUTO, &o, &b);
	while (rc == 0 && (n = read(*fd, buf, sizeof(buf))) > 0)
		rc = rootfs_build_feed(b, buf, (size_t)n);
	if (rc == 0)
		rc = rootfs_build_finish(b, out);
	rootfs_build_free(b);
	if (rc == 0 && fflush(copy) == 0 && ftell(copy) > 0) {
		close(*fd);
		*fd = dup(fileno(copy));
	}
	if (copy)
		fclose(copy);
	if (rc == 0 && idir) {
		rc = rootfs_index_save(*out, idir);
		rootfs_index_free(*out);
		*out = NULL;
		if (rc == 0)
			rc = rootfs_index_load(idir, digest, out);
	}
	return rc;
}

struct dump {
	struct rootfs_tree *t;
	struct rootfs_index **ix;
	struct file_src *src;
	struct rootfs_spans *spans;
	char path[8192];
};

/* The sha256 of a regular file's bytes, read in odd-sized pieces. */
static int content_sha(struct dump *d, const struct rootfs_node *n)
{
	struct rootfs_data data;
	unsigned char buf[77777], md[32];
	int rc = rootfs_node_data(d->t, n, &data);
	if (rc < 0)
		return rc;
	struct rootfs_source src = {read_file, &d->src[data.layer]};
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (uint64_t off = 0; off < data.size;) {
		size_t want = data.size - off < sizeof(buf) ? data.size - off : sizeof(buf);
		ssize_t got = rootfs_spans_read(d->spans, d->ix[data.layer], &src,
						data.offset + off, buf, want);
		if (got <= 0) {
			rc = got < 0 ? (int)got : -EIO;
			break;
		}
		EVP_DigestUpdate(c, buf, (size_t)got);
		off += (uint64_t)got;
	}
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	if (rc == 0) {
		printf(",\"sha256\":\"");
		hex(md, 32);
		printf("\"");
	}
	return rc;
}

static int print_node(struct dump *d, const struct rootfs_node *n)
{
	struct rootfs_attr a;
	const char *types = "fdlhcbp", *xn;
	const void *xv;
	size_t xl;
	rootfs_node_attr(d->t, n, &a);
	printf("{\"path\":\"");
	hex(d->path, strlen(d->path));
	printf("\",\"type\":\"%c\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"mtime\":%lld,"
	       "\"nsec\":%u,\"size\":%llu,\"nlink\":%u,\"ino\":%llu,\"layer\":%u,"
	       "\"rdev\":[%u,%u],\"group\":%llu",
	       types[a.type], a.mode, a.uid, a.gid, (long long)a.mtime_sec, a.mtime_nsec,
	       (unsigned long long)a.size, a.nlink, (unsigned long long)a.ino, a.layer,
	       a.rdev_major, a.rdev_minor, (unsigned long long)rootfs_node_group(n));
	if (a.symlink) {
		printf(",\"link\":\"");
		hex(a.symlink, strlen(a.symlink));
		printf("\"");
	}
	printf(",\"xattrs\":{");
	for (size_t i = 0; rootfs_node_xattr(d->t, n, i, &xn, &xv, &xl) == 0; i++) {
		printf("%s\"%s\":\"", i ? "," : "", xn);
		hex(xv, xl);
		printf("\"");
	}
	printf("}");
	int rc = a.type == ROOTFS_REG ? content_sha(d, n) : 0;
	printf("}\n");
	return rc;
}

static int walk(struct dump *d, const struct rootfs_node *n, size_t plen)
{
	int rc = print_node(d, n);
	for (size_t i = 0; rc == 0 && i < rootfs_node_nchildren(n); i++) {
		const struct rootfs_node *k = rootfs_node_child(n, i);
		const char *name = rootfs_node_name(k);
		if (plen + strlen(name) + 2 > sizeof(d->path))
			return -ENAMETOOLONG;
		sprintf(d->path + plen, "%s%s", plen ? "/" : "", name);
		rc = walk(d, k, strlen(d->path));
		d->path[plen] = '\0';
	}
	return rc;
}

int main(int argc, char **argv)
{
	const char *idir = NULL, *ns = "sha256:dump";
	int opt, layer = -1, rc = 0, build_only = 0;
	size_t cache = 4u << 20;
	uint32_t span = 0;
	while ((opt = getopt(argc, argv, "bc:i:l:n:s:")) != -1) {
		if (opt == 'b')
			build_only = 1;
		else if (opt == 'c')
			cache = (size_t)strtoul(optarg, NULL, 0) << 20;
		else if (opt == 'i')
			idir = optarg;
		else if (opt == 'l')
			layer = atoi(optarg);
		else if (opt == 'n')
			ns = optarg;
		else if (opt == 's')
			span = (uint32_t)strtoul(optarg, NULL, 0);
		else
			return 2;
	}
	size_t nl = (size_t)(argc - optind);
	struct dump d = {0};
	d.ix = calloc(nl + 1, sizeof(*d.ix));
	d.src = calloc(nl + 1, sizeof(*d.src));
	for (size_t i = 0; rc == 0 && i < nl; i++) {
		d.src[i].fd = open(argv[optind + i], O_RDONLY);
		rc = d.src[i].fd < 0 ? -errno : build(&d.src[i].fd, idir, span, &d.ix[i]);
		if (rc < 0)
			fprintf(stderr, "rootfs-dump: %s: %s\n", argv[optind + i], strerror(-rc));
	}
	for (size_t i = 0; rc == 0 && build_only && i < nl; i++)
		printf("%s entries %zu out %llu memory %zu\n", rootfs_index_digest(d.ix[i]),
		       rootfs_index_entries(d.ix[i]),
		       (unsigned long long)rootfs_index_size(d.ix[i]), rootfs_index_mem(d.ix[i]));
	if (rc == 0 && !build_only)
		rc = rootfs_spans_new(cache, &d.spans);
	if (rc < 0 || build_only)
		;
	else if (layer >= 0 && (size_t)layer < nl)
		rc = rootfs_tree_layer(ns, d.ix[layer], (unsigned)layer, &d.t);
	else
		rc = rootfs_tree_merge(ns, d.ix, nl, &d.t);
	if (rc == 0 && d.t)
		rc = walk(&d, rootfs_tree_root(d.t), 0);
	if (rc < 0)
		fprintf(stderr, "rootfs-dump: %s\n", strerror(-rc));
	rootfs_tree_free(d.t);
	rootfs_spans_free(d.spans);
	for (size_t i = 0; i < nl; i++) {
		rootfs_index_free(d.ix[i]);
		close(d.src[i].fd);
	}
	free(d.ix);
	free(d.src);
	return rc < 0 ? 1 : 0;
}
