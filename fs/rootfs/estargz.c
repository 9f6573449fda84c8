/* eStargz layers: the footer (the last gzip member, whose extra field
 * holds the TOC's offset), and the TOC (a gzip member holding the tar entry
 * stargz.index.json) turned into an index of chunks (toc.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define FOOTER 51	 /* eStargz: extra field 'S' 'G' 22 "%016xSTARGZ" */
#define FOOTER_LEGACY 47 /* stargz: extra field "%016xSTARGZ" */
#define TOC_TAR_MAX (256u << 20)

/* The TOC offset in the footer of flen bytes at f; -ENOENT if it is not one. */
static int footer_at(const unsigned char *f, size_t flen, uint64_t *off)
{
	const unsigned char *p = f + 12;
	size_t xlen = (size_t)f[10] | (size_t)f[11] << 8;
	if (f[0] != 0x1f || f[1] != 0x8b || f[2] != 8 || !(f[3] & 4))
		return -ENOENT;
	if (flen == FOOTER) {
		if (xlen != 26 || f[12] != 'S' || f[13] != 'G' || f[14] != 22 || f[15] != 0)
			return -ENOENT;
		p = f + 16;
	} else if (xlen != 22) {
		return -ENOENT;
	}
	if (memcmp(p + 16, "STARGZ", 6) != 0)
		return -ENOENT;
	uint64_t v = 0;
	for (size_t i = 0; i < 16; i++) {
		char c = (char)p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return -ENOENT;
		v = v << 4 | (uint64_t)d;
	}
	*off = v;
	return 0;
}

int rootfs_estargz_locate(const void *tail, size_t tail_len, uint64_t blob_size, uint64_t *toc_off,
			  uint64_t *toc_end)
{
	const unsigned char *t = tail;
	static const size_t sizes[] = {FOOTER, FOOTER_LEGACY};
	if (tail_len > blob_size)
		return -EINVAL;
	for (size_t i = 0; i < 2; i++) {
		uint64_t off;
		size_t fl = sizes[i];
		if (tail_len < fl || footer_at(t + tail_len - fl, fl, &off) != 0)
			continue;
		if (off >= blob_size - fl)
			return -EBADMSG;
		*toc_off = off;
		*toc_end = blob_size - fl;
		return 0;
	}
	return -ENOENT;
}

/* The tar stream of the TOC member, malloc'd. */
static int gunzip_member(const void *member, size_t len, unsigned char **out, size_t *out_len)
{
	z_stream zs = {0};
	size_t cap = 1u << 16, got = 0;
	unsigned char *buf = malloc(cap);
	if (!buf || inflateInit2(&zs, 15 + 16) != Z_OK) {
		free(buf);
		return -ENOMEM;
	}
	zs.next_in = (unsigned char *)member;
	zs.avail_in = (uInt)len;
	int ret = Z_OK, rc = 0;
	while (rc == 0 && ret != Z_STREAM_END) {
		if (got == cap) {
			unsigned char *nb = cap < TOC_TAR_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				rc = cap < TOC_TAR_MAX ? -ENOMEM : -EFBIG;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		zs.next_out = buf + got;
		zs.avail_out = (uInt)(cap - got);
		ret = inflate(&zs, Z_NO_FLUSH);
		got = cap - zs.avail_out;
		if (ret != Z_OK && ret != Z_STREAM_END)
			rc = -EBADMSG;
		else if (ret == Z_OK && zs.avail_in == 0 && zs.avail_out)
			rc = -EBADMSG; /* the member stops early */
	}
	inflateEnd(&zs);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = got;
	return 0;
}

struct toc_entry {
	struct rootfs_tar_entry e;
	int seen;
};

/* The TOC member holds one entry: stargz.index.json. */
static int on_toc_entry(void *arg, const struct rootfs_tar_entry *e)
{
	struct toc_entry *t = arg;
	if (t->seen++ || e->type != ROOTFS_REG || strcmp(e->path, "stargz.index.json") != 0)
		return -EBADMSG;
	t->e = *e;
	t->e.path = "stargz.index.json";
	t->e.link = NULL;
	t->e.xa = NULL; /* not kept: the local build would show them, none are written */
	t->e.n_xa = 0;
	return 0;
}

/* The JSON's place in the TOC member's tar stream. */
static int toc_json(const unsigned char *tar, size_t len, struct toc_entry *te)
{
	struct rootfs_tar *t = NULL;
	int rc = rootfs_tar_new(on_toc_entry, te, 4, &t);
	if (rc == 0)
		rc = rootfs_tar_feed(t, tar, len);
	if (rc == 0)
		rc = rootfs_tar_finish(t);
	rootfs_tar_free(t);
	if (rc == 0 && (!te->seen || te->e.data_off > len || te->e.size > len - te->e.data_off))
		rc = -EBADMSG;
	return rc < 0 ? -EBADMSG : 0;
}

int rootfs_estargz_index(const char *digest, uint64_t blob_size, const void *member, size_t len,
			 uint64_t toc_off, uint64_t toc_end, const char *toc_digest,
			 struct rootfs_index **out)
{
	unsigned char *tar = NULL, sha[32];
	size_t tlen = 0;
	struct toc_entry te = {0};
	struct rootfs_index *ix = NULL;
	if (toc_end > blob_size || toc_off >= toc_end || toc_end - toc_off != len)
		return -EINVAL;
	int rc = gunzip_member(member, len, &tar, &tlen);
	if (rc == 0)
		rc = toc_json(tar, tlen, &te);
	const char *json = rc ? NULL : (const char *)tar + te.e.data_off;
	if (rc == 0)
		rc = rootfs_sha256_check(json, (size_t)te.e.size, toc_digest, sha);
	if (rc == -EBADMSG && json)
		log_err("rootfs: layer %s: its eStargz TOC does not match the digest %s", digest,
			toc_digest);
	if (rc == 0)
		rc = rootfs_toc_index(digest, ROOTFS_COMP_GZIP_CHUNKS, blob_size, toc_off, json,
				      (size_t)te.e.size, &ix);
	if (rc == 0)
		rc = rootfs_toc_append(ix, &te.e, toc_off, toc_end, te.e.data_off, sha);
	free(tar);
	if (rc) {
		rootfs_index_free(ix);
		return rc;
	}
	rootfs_ix_shrink(ix);
	*out = ix;
	return 0;
}
