/* rootfs internals shared by its files: the index layout, the tar reader,
 * PAX records. Not for use outside fs/rootfs/. */
#ifndef ECRFS_ROOTFS_I_H
#define ECRFS_ROOTFS_I_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/rootfs/rootfs.h"

#define ROOTFS_WINDOW 32768u
#define ROOTFS_PATH_MAX 4096u
#define ROOTFS_META_MAX (1u << 20) /* a PAX or GNU long-name record */
#define ROOTFS_NONE UINT64_MAX
/* Output of one span at most: deflate blocks longer than this (real
 * encoders write a few MiB at most) would make every read of the span
 * inflate that much, so such a layer is refused. */
#define ROOTFS_MAX_SPAN_OUT (256ull << 20)

/* One tar entry of a layer. Strings and xattr values live in the index's
 * string pool; fixed-size fields so the index file is these arrays as is. */
struct rootfs_ent {
	uint64_t path, link; /* pool offsets (link: ROOTFS_NONE when absent) */
	uint64_t size, data_off;
	int64_t mtime;
	uint32_t nsec, mode, uid, gid, major, minor;
	uint32_t xattr_first, xattr_count;
	uint32_t path_len, link_len;
	uint8_t type; /* enum rootfs_type */
	uint8_t pad[7];
};

struct rootfs_xattr {
	uint64_t name, value; /* pool offsets */
	uint32_t name_len, value_len;
	uint64_t pad;
};

/* Index kinds made from a layer's own table of contents (toc.c), kept in
 * memory only (never saved): every checkpoint is one chunk of a file,
 * compressed in [in, in_end) of the blob as gzip members (eStargz) or zstd
 * frames (zstd:chunked) whose output holds the chunk's bytes after
 * dict_len bytes (eStargz's innerOffset, or the TOC's own tar header), and
 * sha is the sha256 of the chunk's bytes, checked before any is served;
 * bits is ROOTFS_CK_ZEROS for a chunk of zeros (zstd:chunked "zeros").
 * The uncompressed stream is the chunks one after another. */
#define ROOTFS_COMP_GZIP_CHUNKS 100u
#define ROOTFS_COMP_ZSTD_CHUNKS 101u
#define ROOTFS_CHUNK_MAX (64u << 20) /* uncompressed bytes of one chunk */
/* bits of a chunk: its bytes are zeros (nothing fetched; still checked) */
#define ROOTFS_CK_ZEROS 1u

static inline int rootfs_comp_chunks(uint32_t comp)
{
	return comp == ROOTFS_COMP_GZIP_CHUNKS || comp == ROOTFS_COMP_ZSTD_CHUNKS;
}

/* A place where inflating can start: uncompressed offset out, compressed
 * offset in (bits > 0: the byte before in holds `bits` more bits), the last
 * dict_len bytes of output before it stored deflated at win_off/win_len of
 * the window pool. sha is the sha256 of the span that starts here (of its
 * uncompressed bytes for the chunk kinds above, whose in_end replaces the
 * window offset). */
struct rootfs_ckpt {
	uint64_t out, in;
	union {
		uint64_t win_off;
		uint64_t in_end;
	};
	uint32_t win_len, dict_len, bits, pad;
	uint8_t sha[32];
};

struct rootfs_index {
	char digest[80]; /* "sha256:<hex>" */
	uint32_t comp;	 /* ROOTFS_COMP_NONE or ROOTFS_COMP_GZIP */
	uint64_t blob_size, out_size;
	struct rootfs_ent *ents;
	size_t n_ents, cap_ents;
	struct rootfs_xattr *xa;
	size_t n_xa, cap_xa;
	struct rootfs_ckpt *ck;
	size_t n_ck, cap_ck;
	unsigned char *pool; /* strings (NUL-terminated) and xattr values */
	size_t n_pool, cap_pool;
	unsigned char *wins; /* deflated windows */
	size_t n_wins, cap_wins;
};

static inline const char *rootfs_ix_str(const struct rootfs_index *ix, uint64_t off)
{
	return off == ROOTFS_NONE ? NULL : (const char *)ix->pool + off;
}

/* index.c */
int rootfs_ix_new(const char *digest, struct rootfs_index **out);
int rootfs_ix_pool_add(struct rootfs_index *ix, const void *p, size_t len, uint64_t *off);
int rootfs_ix_grow(void **arr, size_t *cap, size_t need, size_t elem);
void rootfs_ix_shrink(struct rootfs_index *ix);
int rootfs_digest_hex(const char *digest, char hex[65]);

/* ---- tar reader (tar.c, tar_pax.c) ---- */

struct rootfs_tar_xattr {
	char *name;
	unsigned char *value;
	size_t len;
};

/* Attributes from PAX records (x: next entry; g: all later entries). */
struct rootfs_pax {
	char *path, *linkpath;
	int has_size, has_uid, has_gid, has_mtime, sparse;
	uint64_t size, uid, gid;
	int64_t mtime;
	uint32_t nsec;
	struct rootfs_tar_xattr *xa;
	size_t n_xa;
};

struct rootfs_tar_entry {
	const char *path; /* normalised: no ./, no leading or trailing /; "" = root */
	const char *link; /* symlink target as stored, or normalised hardlink target */
	enum rootfs_type type;
	uint32_t mode, uid, gid, major, minor, nsec;
	int64_t mtime;
	uint64_t size, data_off;
	const struct rootfs_tar_xattr *xa;
	size_t n_xa;
};

typedef int (*rootfs_tar_cb)(void *arg, const struct rootfs_tar_entry *e);
struct rootfs_tar;

int rootfs_tar_new(rootfs_tar_cb cb, void *arg, uint32_t max_entries, struct rootfs_tar **out);
int rootfs_tar_feed(struct rootfs_tar *t, const void *buf, size_t len);
/* -EIO when the stream stopped inside a header or an entry's data. */
int rootfs_tar_finish(struct rootfs_tar *t);
int rootfs_tar_done(const struct rootfs_tar *t); /* end-of-archive seen */
void rootfs_tar_free(struct rootfs_tar *t);

/* Normalises a tar name into out: length, -EINVAL for a ".." component,
 * -ENAMETOOLONG. */
int rootfs_path_norm(const char *in, char *out, size_t outsz);

/* Appends entry e (its strings and xattrs copied into the pool): -EFBIG
 * once the pool would pass max_names. */
int rootfs_ix_add_entry(struct rootfs_index *ix, const struct rootfs_tar_entry *e,
			uint64_t max_names);

/* toc.c: an index of a chunk kind from a TOC's JSON (eStargz and
 * zstd:chunked share the entry format). toc_end: where the TOC starts in
 * the blob (an eStargz chunk ends at the next chunk's member or there). */
int rootfs_toc_index(const char *digest, uint32_t comp, uint64_t blob_size, uint64_t toc_end,
		     const char *json, size_t len, struct rootfs_index **out);
/* zstd_chunked.c: whole zstd frames of src (skippable ones skipped), each
 * decompressed in one pass (no window buffer: frames of any window size),
 * until n bytes are in dst; frames after those are ignored. -EBADMSG when
 * src ends first or a frame does not fit. */
int rootfs_zstd_frames(const void *src, size_t len, void *dst, size_t n);
/* sha256 of buf into sha; -EBADMSG when digest ("sha256:<hex>") is not
 * NULL and differs. */
int rootfs_sha256_check(const void *buf, size_t len, const char *digest, unsigned char sha[32]);
/* toc_scan.c: cb(arg, entry) for each element of the top-level "entries"
 * array, each parsed alone (the caller's reference is dropped after cb);
 * -EBADMSG when the JSON is not an object with one such array, else what
 * cb returned first. */
typedef int (*rootfs_toc_entry_cb)(void *arg, json_t *entry);
int rootfs_toc_each_entry(const char *json, size_t len, rootfs_toc_entry_cb cb, void *arg);
/* Appends file e, whose bytes are in the member at [in, in_end) after skip
 * bytes (eStargz: the TOC file itself, a tar entry of the layer too). */
int rootfs_toc_append(struct rootfs_index *ix, const struct rootfs_tar_entry *e, uint64_t in,
		      uint64_t in_end, uint64_t skip, const unsigned char sha[32]);

void rootfs_pax_clear(struct rootfs_pax *p);
/* Parses a PAX header's records into p (later records override earlier). */
int rootfs_pax_parse(const unsigned char *buf, size_t len, struct rootfs_pax *p);
/* Adds (a copy of) every field set in src to dst. */
int rootfs_pax_merge(struct rootfs_pax *dst, const struct rootfs_pax *src);

#endif
