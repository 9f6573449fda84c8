/* zstd:chunked layers: the manifest (TOC) sits in a zstd skippable frame
 * near the end, found by the layer's manifest-position annotation or by the
 * footer frame; its JSON is the eStargz entry format with endOffset, and
 * every file or chunk is its own zstd frame (toc.c makes the index). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define MANIFEST_MAX (256u << 20)
#define SKIPPABLE_HEADER 8

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int pos_check(const struct rootfs_zchunked_pos *p, uint64_t type, uint64_t blob_size)
{
	if (type != 1 || p->len == 0 || p->off < SKIPPABLE_HEADER || p->off > blob_size ||
	    p->len > blob_size - p->off || p->len > MANIFEST_MAX || p->ulen > MANIFEST_MAX)
		return -EBADMSG;
	return 0;
}

int rootfs_zchunked_annotation(const char *value, uint64_t blob_size,
			       struct rootfs_zchunked_pos *pos)
{
	uint64_t type = 0;
	int n = -1;
	if (!value ||
	    sscanf(value, "%" SCNu64 ":%" SCNu64 ":%" SCNu64 ":%" SCNu64 "%n", &pos->off, &pos->len,
		   &pos->ulen, &type, &n) != 4 ||
	    n < 0 || value[n] != '\0' || value[0] == '-' || strchr(value, '-') ||
	    strchr(value, '+'))
		return -EBADMSG;
	return pos_check(pos, type, blob_size);
}

/* The footer's data: 64 bytes (containers/storage), 48 or 40 (older
 * writers); all start with offset, length, uncompressed length, type and
 * end with the magic "GNUlInUx" (older: "GnUlInUx"). */
int rootfs_zchunked_footer(const void *tail, size_t tail_len, uint64_t blob_size,
			   struct rootfs_zchunked_pos *pos)
{
	static const unsigned char skippable[4] = {0x50, 0x2a, 0x4d, 0x18};
	static const size_t sizes[] = {64, 48, 40};
	if (tail_len > blob_size)
		return -ENOENT;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		if (tail_len < n + SKIPPABLE_HEADER)
			continue;
		const unsigned char *f = (const unsigned char *)tail + tail_len - n - 8, *d = f + 8;
		if (memcmp(f, skippable, 4) != 0 || le64(f + 4) % (1ull << 32) != n ||
		    (memcmp(d + n - 8, "GNUlInUx", 8) != 0 &&
		     memcmp(d + n - 8, "GnUlInUx", 8) != 0))
			continue;
		pos->off = le64(d);
		pos->len = le64(d + 8);
		pos->ulen = le64(d + 16);
		return pos_check(pos, le64(d + 24), blob_size);
	}
	return -ENOENT;
}

int rootfs_zstd_frames(const void *src, size_t len, void *dst, size_t n)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	const unsigned char *p = src;
	size_t got = 0;
	int rc = d ? 0 : -ENOMEM;
	while (rc == 0 && got < n) {
		size_t fl = len ? ZSTD_findFrameCompressedSize(p, len) : 0;
		if (len == 0 || ZSTD_isError(fl) || fl > len) {
			rc = -EBADMSG;
			break;
		}
		/* Single pass: no window buffer, whatever the frame's window. */
		size_t r = ZSTD_decompressDCtx(d, (char *)dst + got, n - got, p, fl);
		if (ZSTD_isError(r))
			rc = -EBADMSG;
		else
			got += r;
		p += fl;
		len -= fl;
	}
	ZSTD_freeDCtx(d);
	return rc;
}

/* The manifest's JSON (exactly ulen bytes), malloc'd. */
static int unzstd(const void *src, size_t len, size_t ulen, char **out)
{
	char *buf = malloc(ulen + 1);
	int rc = buf ? rootfs_zstd_frames(src, len, buf, ulen) : -ENOMEM;
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int rootfs_zchunked_index(const char *digest, uint64_t blob_size, const void *manifest,
			  const struct rootfs_zchunked_pos *pos, const char *checksum,
			  struct rootfs_index **out)
{
	unsigned char sha[32];
	char *json = NULL;
	struct rootfs_index *ix = NULL;
	int rc = pos_check(pos, 1, blob_size);
	if (rc == 0 && (rc = rootfs_sha256_check(manifest, (size_t)pos->len, checksum, sha)) != 0)
		log_err("rootfs: layer %s: its zstd:chunked manifest does not match the digest %s",
			digest, checksum);
	if (rc == 0)
		rc = unzstd(manifest, (size_t)pos->len, (size_t)pos->ulen, &json);
	/* Chunks lie before the manifest's frame. */
	if (rc == 0)
		rc = rootfs_toc_index(digest, ROOTFS_COMP_ZSTD_CHUNKS, blob_size,
				      pos->off - SKIPPABLE_HEADER, json, (size_t)pos->ulen, &ix);
	free(json);
	if (rc)
		return rc;
	rootfs_ix_shrink(ix);
	*out = ix;
	return 0;
}
