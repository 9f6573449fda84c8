/* Index files: DIR/<digest hex> = a header, the index's arrays as they are
 * in memory, and the sha256 of everything before it. Written to a temporary
 * name and renamed; everything is checked on load (the file is input). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define IX_MAGIC "ECRFSIX1"
#define IX_VERSION 1u
#define IX_ENDIAN 0x01020304u
#define IX_MAX_FILE (4ull << 30)

struct ix_header {
	char magic[8];
	uint32_t version, endian;
	char digest[80];
	uint32_t comp, pad;
	uint64_t blob_size, out_size;
	uint64_t n_ents, n_xa, n_ck, n_pool, n_wins;
};

_Static_assert(sizeof(struct ix_header) == 160, "index header layout");
_Static_assert(sizeof(struct rootfs_ent) == 88, "index entry layout");
_Static_assert(sizeof(struct rootfs_xattr) == 32, "index xattr layout");
_Static_assert(sizeof(struct rootfs_ckpt) == 72, "index checkpoint layout");

static int write_all(int fd, EVP_MD_CTX *md, const void *p, size_t len)
{
	const char *c = p;
	if (md && !EVP_DigestUpdate(md, p, len))
		return -ENOMEM;
	while (len) {
		ssize_t n = write(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_body(int fd, const struct rootfs_index *ix)
{
	struct ix_header h = {.version = IX_VERSION, .endian = IX_ENDIAN};
	unsigned char sum[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = -ENOMEM;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		goto out;
	memcpy(h.magic, IX_MAGIC, 8);
	memcpy(h.digest, ix->digest, sizeof(h.digest));
	h.comp = ix->comp;
	h.blob_size = ix->blob_size;
	h.out_size = ix->out_size;
	h.n_ents = ix->n_ents;
	h.n_xa = ix->n_xa;
	h.n_ck = ix->n_ck;
	h.n_pool = ix->n_pool;
	h.n_wins = ix->n_wins;
	if ((rc = write_all(fd, md, &h, sizeof(h))) < 0 ||
	    (rc = write_all(fd, md, ix->ents, ix->n_ents * sizeof(*ix->ents))) < 0 ||
	    (rc = write_all(fd, md, ix->xa, ix->n_xa * sizeof(*ix->xa))) < 0 ||
	    (rc = write_all(fd, md, ix->ck, ix->n_ck * sizeof(*ix->ck))) < 0 ||
	    (rc = write_all(fd, md, ix->pool, ix->n_pool)) < 0 ||
	    (rc = write_all(fd, md, ix->wins, ix->n_wins)) < 0)
		goto out;
	rc = -ENOMEM;
	if (!EVP_DigestFinal_ex(md, sum, NULL))
		goto out;
	rc = write_all(fd, NULL, sum, sizeof(sum));
out:
	EVP_MD_CTX_free(md);
	return rc;
}

int rootfs_index_save(const struct rootfs_index *ix, const char *dir)
{
	char hex[65], path[4096], tmp[4096];
	int fd = -1, rc = rootfs_digest_hex(ix->digest, hex);
	if (rc < 0)
		return rc;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", dir, hex);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, hex);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = write_body(fd, ix);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		log_err("rootfs: cannot write index %s: %s", path, strerror(-rc));
	}
	return rc;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
	struct stat st;
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char *p = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = -EBADMSG;
	if (st.st_size < (off_t)(sizeof(struct ix_header) + 32) ||
	    (uint64_t)st.st_size > IX_MAX_FILE)
		goto out;
	rc = -ENOMEM;
	if (!(p = malloc((size_t)st.st_size)))
		goto out;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EBADMSG;
			goto out;
		}
		got += (size_t)n;
	}
	*buf = p;
	*len = got;
	p = NULL;
	rc = 0;
out:
	free(p);
	close(fd);
	return rc;
}

/* A pool string: in bounds, NUL-terminated, no NUL inside. */
static int pool_str_ok(const struct rootfs_index *ix, uint64_t off, uint64_t len)
{
	return off < ix->n_pool && len < ix->n_pool - off && ix->pool[off + len] == '\0' &&
	       memchr(ix->pool + off, 0, len) == NULL;
}

/* A name as the tar reader leaves it: normalised, no "..". */
static int name_ok(const struct rootfs_index *ix, uint64_t off)
{
	char norm[ROOTFS_PATH_MAX];
	const char *s = rootfs_ix_str(ix, off);
	return rootfs_path_norm(s, norm, sizeof(norm)) >= 0 && strcmp(s, norm) == 0;
}

static int check_entries(const struct rootfs_index *ix)
{
	for (size_t i = 0; i < ix->n_ents; i++) {
		const struct rootfs_ent *e = &ix->ents[i];
		if (e->type > ROOTFS_FIFO || e->path_len >= ROOTFS_PATH_MAX ||
		    !pool_str_ok(ix, e->path, e->path_len) ||
		    (e->link != ROOTFS_NONE && !pool_str_ok(ix, e->link, e->link_len)) ||
		    e->xattr_first > ix->n_xa || e->xattr_count > ix->n_xa - e->xattr_first ||
		    e->size > ix->out_size || e->data_off > ix->out_size - e->size ||
		    e->nsec >= 1000000000u)
			return -EBADMSG;
		if ((e->type == ROOTFS_SYMLINK || e->type == ROOTFS_HARDLINK) &&
		    e->link == ROOTFS_NONE)
			return -EBADMSG;
		if (!name_ok(ix, e->path) || (e->type == ROOTFS_HARDLINK && !name_ok(ix, e->link)))
			return -EBADMSG;
	}
	for (size_t i = 0; i < ix->n_xa; i++) {
		const struct rootfs_xattr *x = &ix->xa[i];
		if (!pool_str_ok(ix, x->name, x->name_len) || x->value >= ix->n_pool ||
		    x->value_len >= ix->n_pool - x->value)
			return -EBADMSG;
	}
	return 0;
}

static int check_ckpts(const struct rootfs_index *ix)
{
	/* Spans of plain and zstd layers are ranges of the uncompressed stream. */
	uint64_t in_end = ix->comp == ROOTFS_COMP_GZIP ? ix->blob_size : ix->out_size;
	for (size_t i = 0; i < ix->n_ck; i++) {
		const struct rootfs_ckpt *c = &ix->ck[i];
		if (c->out > ix->out_size || c->in > in_end || c->bits > 7 ||
		    (c->bits && c->in == 0) || c->dict_len > ROOTFS_WINDOW ||
		    c->win_off > ix->n_wins || c->win_len > ix->n_wins - c->win_off)
			return -EBADMSG;
		if (i ? (c->out <= ix->ck[i - 1].out || c->in < ix->ck[i - 1].in) : c->out != 0)
			return -EBADMSG;
		if (ix->comp != ROOTFS_COMP_GZIP && (c->in != c->out || c->win_len || c->bits))
			return -EBADMSG;
		uint64_t end = i + 1 < ix->n_ck ? ix->ck[i + 1].out : ix->out_size;
		if (end - c->out > ROOTFS_MAX_SPAN_OUT)
			return -EBADMSG;
	}
	return 0;
}

/* Copies n elements of elem bytes at *pos into a fresh array. */
static int take(const unsigned char *buf, size_t *pos, uint64_t n, size_t elem, void **out,
		size_t *cap)
{
	size_t bytes = (size_t)n * elem;
	*out = malloc(bytes ? bytes : 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, buf + *pos, bytes);
	*pos += bytes;
	*cap = (size_t)n;
	return 0;
}

static int parse(const unsigned char *buf, size_t len, const char *digest, struct rootfs_index *ix)
{
	struct ix_header h;
	memcpy(&h, buf, sizeof(h));
	uint64_t body = len - sizeof(h) - 32, need = 0;
	if (memcmp(h.magic, IX_MAGIC, 8) || h.version != IX_VERSION || h.endian != IX_ENDIAN ||
	    strncmp(h.digest, digest, sizeof(h.digest)) ||
	    (h.comp != ROOTFS_COMP_NONE && h.comp != ROOTFS_COMP_GZIP &&
	     h.comp != ROOTFS_COMP_ZSTD))
		return -EBADMSG;
	const uint64_t n[5] = {h.n_ents, h.n_xa, h.n_ck, h.n_pool, h.n_wins};
	const size_t el[5] = {sizeof(struct rootfs_ent), sizeof(struct rootfs_xattr),
			      sizeof(struct rootfs_ckpt), 1, 1};
	for (size_t i = 0; i < 5; i++) {
		if (n[i] > body / el[i] || n[i] * el[i] > body - need)
			return -EBADMSG;
		need += n[i] * el[i];
	}
	if (need != body)
		return -EBADMSG;
	size_t pos = sizeof(h);
	ix->comp = h.comp;
	ix->blob_size = h.blob_size;
	ix->out_size = h.out_size;
	ix->n_ents = h.n_ents;
	ix->n_xa = h.n_xa;
	ix->n_ck = h.n_ck;
	ix->n_pool = h.n_pool;
	ix->n_wins = h.n_wins;
	if (take(buf, &pos, h.n_ents, el[0], (void **)&ix->ents, &ix->cap_ents) < 0 ||
	    take(buf, &pos, h.n_xa, el[1], (void **)&ix->xa, &ix->cap_xa) < 0 ||
	    take(buf, &pos, h.n_ck, el[2], (void **)&ix->ck, &ix->cap_ck) < 0 ||
	    take(buf, &pos, h.n_pool, 1, (void **)&ix->pool, &ix->cap_pool) < 0 ||
	    take(buf, &pos, h.n_wins, 1, (void **)&ix->wins, &ix->cap_wins) < 0)
		return -ENOMEM;
	if (check_entries(ix) < 0 || check_ckpts(ix) < 0)
		return -EBADMSG;
	return 0;
}

/* Checks the trailing sha256 and every bound of an index file's bytes. */
static int from_bytes(const unsigned char *buf, size_t len, const char *digest,
		      struct rootfs_index **out)
{
	unsigned char sum[32];
	struct rootfs_index *ix = NULL;
	int rc = -EBADMSG;
	if (len < sizeof(struct ix_header) + 32 ||
	    EVP_Digest(buf, len - 32, sum, NULL, EVP_sha256(), NULL) != 1 ||
	    memcmp(sum, buf + len - 32, 32) != 0)
		return rc;
	if ((rc = rootfs_ix_new(digest, &ix)) == 0 && (rc = parse(buf, len, digest, ix)) == 0) {
		*out = ix;
		ix = NULL;
	}
	rootfs_index_free(ix);
	return rc;
}

int rootfs_index_from_bytes(const char *digest, const void *buf, size_t len,
			    struct rootfs_index **out)
{
	char hex[65];
	int rc = rootfs_digest_hex(digest, hex);
	*out = NULL;
	if (rc < 0)
		return rc;
	return len > IX_MAX_FILE ? -EBADMSG : from_bytes(buf, len, digest, out);
}

int rootfs_index_load(const char *dir, const char *digest, struct rootfs_index **out)
{
	char hex[65], path[4096];
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = rootfs_digest_hex(digest, hex);
	*out = NULL;
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", dir, hex);
	if ((rc = read_file(path, &buf, &len)) == 0)
		rc = from_bytes(buf, len, digest, out);
	if (rc == -EBADMSG)
		log_warn("rootfs: index %s is corrupt; it will be rebuilt", path);
	free(buf);
	return rc;
}
