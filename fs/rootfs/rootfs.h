/* rootfs: FUSE-free core of the image-files views (doc/ROOTFS.md).
 *
 * Four objects, used in this order by the mount:
 *
 * 1. struct rootfs_build streams one layer blob once (fed in chunks of any
 *    size), scans its tar headers and, for gzip layers, records a checkpoint
 *    about every 1 MiB of output plus the sha256 of each span of compressed
 *    bytes (plain tar: spans of the blob; zstd: spans of the decompressed
 *    copy the caller keeps, see on_output). rootfs_build_finish() refuses
 *    (-EIO) a stream whose sha256 is not the layer digest, so a committed
 *    index always describes the real blob.
 * 2. struct rootfs_index is one layer's index: entry table, attributes,
 *    xattrs, checkpoints, span digests. rootfs_index_save() writes it to
 *    DIR/<digest hex> (temp + rename, trailing sha256); rootfs_index_load()
 *    checks the checksum and every bound (-EBADMSG: rebuild it).
 * 3. struct rootfs_tree is the merged tree of an image (whiteouts, opaque
 *    directories, hardlinks, nlink; OCI layer.md) or one layer as stored
 *    (TAG@layers/N). Nodes are plain pointers valid for the tree's lifetime.
 * 4. struct rootfs_spans reads bytes of a layer's uncompressed stream: it
 *    asks a source for the compressed span, checks the span's sha256, inflates
 *    from the checkpoint and keeps inflated spans in a bounded LRU.
 *
 * Ownership: the caller owns indexes, trees and the span cache; a tree keeps
 * pointers into the indexes it was built from, so they must outlive it.
 * Indexes and trees are immutable once built: any number of threads may
 * read them without a lock. The span cache has its own lock.
 *
 * Errors: functions return 0 (or a count) or -errno. Logging goes through
 * net/log.h (one line per skipped or refused entry).
 *
 * A typical mount: per layer, rootfs_index_load(cache_dir/index, digest);
 * on -ENOENT/-EBADMSG a build fed from the verified blob path, then
 * rootfs_index_save(). Then rootfs_tree_merge(image digest, indexes). A
 * LOOKUP is rootfs_tree_lookup(), a READDIR walks rootfs_node_child(), a
 * GETATTR is rootfs_node_attr() (user.ecr.layer = attr.layer and
 * rootfs_index_digest(layers[attr.layer])), a READ is rootfs_node_data() and
 * rootfs_spans_read() on that layer's index with a source for its blob.
 * doc/ROOTFS.md has the formats, the rules and the limits.
 */
#ifndef ECRFS_ROOTFS_H
#define ECRFS_ROOTFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- building a layer index ------------------------------------------- */

enum rootfs_compression {
	ROOTFS_COMP_AUTO = 0, /* from the first 4 bytes: gzip or zstd magic, else tar */
	ROOTFS_COMP_NONE,     /* plain tar */
	ROOTFS_COMP_GZIP,     /* gzip, one or several members */
	ROOTFS_COMP_ZSTD,     /* zstd: decompressed once; see on_output */
};

struct rootfs_build_opts {
	uint32_t span_bytes;  /* uncompressed bytes between checkpoints (0: 1 MiB) */
	uint64_t max_out;     /* uncompressed size cap (0: 64 GiB) -> -EFBIG */
	uint32_t max_ratio;   /* out/in cap once out > 256 MiB (0: 1100) -> -EFBIG */
	uint32_t max_entries; /* entry count cap (0: 2,000,000) -> -EFBIG */
	/* Names, link targets and xattr values of the layer (0: 512 MiB) ->
	 * -EFBIG; a PAX g record's xattrs are copied to every later entry. */
	uint64_t max_names;
	/* zstd layers only: called in order with every byte of the decompressed
	 * stream (a non-zero return stops the build with it). zstd has no
	 * random access, so the caller keeps this copy (in the cache) and the
	 * index's spans are ranges of it: its rootfs_source serves bytes of the
	 * copy, not of the blob. Frames needing a window over 16 MiB are -EIO. */
	int (*on_output)(void *arg, const void *buf, size_t len);
	void *output_arg;
};

struct rootfs_build;
struct rootfs_index;

/* digest is the layer digest "sha256:<64 hex>": the stream must hash to it. */
int rootfs_build_new(const char *digest, enum rootfs_compression comp,
		     const struct rootfs_build_opts *opts, struct rootfs_build **out);
/* Feeds the next len bytes of the blob. An error is sticky: later calls
 * return it again. */
int rootfs_build_feed(struct rootfs_build *b, const void *buf, size_t len);
/* Ends the stream: -EIO when it is truncated, is not a valid tar/gzip, or
 * does not hash to the digest; -EMEDIUMTYPE when it hashed to the digest
 * but its (decompressed) content does not start with a tar header (a layer
 * that is no tar archive; nothing logged, the caller says which layer).
 * On success *out is the index (caller frees). */
int rootfs_build_finish(struct rootfs_build *b, struct rootfs_index **out);
/* Compressed bytes fed so far (progress = this / blob size). */
uint64_t rootfs_build_fed(const struct rootfs_build *b);
void rootfs_build_free(struct rootfs_build *b);

/* ---- layer index -------------------------------------------------------- */

struct rootfs_index;

/* Writes DIR/<hex of the index's digest>, atomically. */
int rootfs_index_save(const struct rootfs_index *ix, const char *dir);
/* Loads DIR/<hex of digest>: -ENOENT when absent, -EBADMSG when corrupt or
 * not for this digest (delete it and rebuild). */
int rootfs_index_load(const char *dir, const char *digest, struct rootfs_index **out);
/* The same checks on the bytes of an index file from elsewhere (a
 * published index): -EBADMSG unless it is a sound index of digest. */
int rootfs_index_from_bytes(const char *digest, const void *buf, size_t len,
			    struct rootfs_index **out);
/* ROOTFS_COMP_NONE, _GZIP or _ZSTD: what the index's spans are ranges of. */
int rootfs_index_comp(const struct rootfs_index *ix);
void rootfs_index_free(struct rootfs_index *ix);
const char *rootfs_index_digest(const struct rootfs_index *ix);
size_t rootfs_index_entries(const struct rootfs_index *ix);
/* Size of the uncompressed stream and of the blob. */
uint64_t rootfs_index_size(const struct rootfs_index *ix);
uint64_t rootfs_index_blob_size(const struct rootfs_index *ix);
/* 1 when a and b list the same entries (path, type, size, data offset,
 * mode, ids, mtime) in the same order: an index from elsewhere agrees with
 * one built from the layer. */
int rootfs_index_same_entries(const struct rootfs_index *a, const struct rootfs_index *b);
/* Bytes of memory the index uses (for stats). */
size_t rootfs_index_mem(const struct rootfs_index *ix);

/* ---- indexes carried by images ------------------------------------------ */

/* The index of gzip layer `digest` (blob_size bytes) from its SOCI zTOC
 * (the flatbuffers blob of the soci-snapshotter's ztoc.fbs, already checked
 * against its own digest by the caller). The zTOC's span digests become the
 * checkpoints' sha256, so every span read is checked as for a local index.
 * -EBADMSG when malformed or not for this blob size, -ENOTSUP for a zTOC
 * ecrfs does not use (uncompressed layer, spans without digests), -EFBIG
 * over the caps. Every offset, length and field of buf is checked. */
int rootfs_index_from_ztoc(const char *digest, uint64_t blob_size, const void *buf, size_t len,
			   struct rootfs_index **out);
/* ---- indexes from a layer's own table of contents -------------------------- */
/* eStargz and zstd:chunked layers carry a TOC: an index made from it lists
 * the layer after a ranged read or two, and its spans are the files'
 * chunks, each checked against the TOC's chunk digest before any byte of it
 * is served (rootfs_spans_read). Such indexes are not saved. A TOC that is
 * malformed, fails its digest or points outside the blob is -EBADMSG
 * (-ENOTSUP for features not handled); the caller builds the index then. */

/* eStargz: tail holds the last tail_len bytes of the blob (at least the
 * 51-byte footer; the 47-byte one of legacy stargz is read too). -ENOENT
 * when there is no footer; else *toc_off is where the TOC's gzip member
 * starts and *toc_end where it ends (the footer). */
int rootfs_estargz_locate(const void *tail, size_t tail_len, uint64_t blob_size,
			  uint64_t *toc_off, uint64_t *toc_end);
/* member: the blob's bytes [toc_off, toc_end), the gzip member holding the
 * tar entry stargz.index.json. toc_digest ("sha256:<hex>", the layer's
 * containerd.io/snapshot/stargz/toc.digest annotation) is checked against
 * the TOC's JSON when not NULL. */
int rootfs_estargz_index(const char *digest, uint64_t blob_size, const void *member, size_t len,
			 uint64_t toc_off, uint64_t toc_end, const char *toc_digest,
			 struct rootfs_index **out);

/* zstd:chunked: where the manifest (the TOC, zstd-compressed) is. */
struct rootfs_zchunked_pos {
	uint64_t off, len, ulen; /* compressed bytes [off, off + len), ulen uncompressed */
};
/* From the annotation io.github.containers.zstd-chunked.manifest-position
 * ("off:len:ulen:type", type 1). -EBADMSG when malformed or out of the blob. */
int rootfs_zchunked_annotation(const char *value, uint64_t blob_size,
			       struct rootfs_zchunked_pos *pos);
/* From the footer frame: tail holds the last tail_len (>= 72) bytes of the
 * blob. -ENOENT when there is none. */
int rootfs_zchunked_footer(const void *tail, size_t tail_len, uint64_t blob_size,
			   struct rootfs_zchunked_pos *pos);
/* manifest: the blob's bytes at pos. checksum ("sha256:<hex>", the
 * ...zstd-chunked.manifest-checksum annotation, of the compressed bytes) is
 * checked when not NULL. */
int rootfs_zchunked_index(const char *digest, uint64_t blob_size, const void *manifest,
			  const struct rootfs_zchunked_pos *pos, const char *checksum,
			  struct rootfs_index **out);

/* ---- reading bytes ---------------------------------------------------------- */

/* Fills buf with exactly len bytes at off of the blob (of the decompressed
 * copy for a zstd layer), or returns -errno. Called without any rootfs lock
 * held, possibly from several threads at once; it should have a deadline,
 * since readers of the same span wait for the one fetching it. */
struct rootfs_source {
	int (*read_compressed)(void *arg, uint64_t off, void *buf, size_t len);
	void *arg;
};

struct rootfs_spans;

/* A cache of inflated spans bounded by max_bytes (0: no caching). */
int rootfs_spans_new(size_t max_bytes, struct rootfs_spans **out);
/* No read may be in flight. */
void rootfs_spans_free(struct rootfs_spans *s);
/* Reads up to len bytes of ix's uncompressed stream at off: returns the
 * count (short only at the end of the stream) or -errno; -EIO when a span's
 * compressed bytes fail their sha256 (nothing is cached then, so the next
 * read fetches again). Thread-safe; concurrent misses of one span share one
 * fetch and inflate (single-flight). Spans are cached by (layer digest,
 * first uncompressed offset), so indexes of one layer share them. */
ssize_t rootfs_spans_read(struct rootfs_spans *s, const struct rootfs_index *ix,
			  const struct rootfs_source *src, uint64_t off, void *buf, size_t len);
/* Counters for stats. */
void rootfs_spans_stats(struct rootfs_spans *s, uint64_t *hits, uint64_t *misses, size_t *bytes);

/* ---- trees ------------------------------------------------------------------ */

struct rootfs_tree;
struct rootfs_node;

enum rootfs_type {
	ROOTFS_REG = 0,
	ROOTFS_DIR,
	ROOTFS_SYMLINK,
	ROOTFS_HARDLINK, /* in a layer's entries only; tree nodes are the target's type */
	ROOTFS_CHR,
	ROOTFS_BLK,
	ROOTFS_FIFO,
};

struct rootfs_attr {
	enum rootfs_type type;
	uint32_t mode; /* permission bits with setuid, setgid, sticky (07777) */
	uint32_t uid, gid;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint64_t size; /* regular files: bytes; symlinks: target length */
	uint32_t rdev_major, rdev_minor;
	uint32_t nlink;	     /* over the final tree; directories: 2 + subdirectories */
	uint64_t ino;	     /* hash of (namespace, path); shared by a hardlink group */
	unsigned layer;	     /* index of the layer the node comes from (0 = base) */
	const char *symlink; /* target, NULL unless ROOTFS_SYMLINK */
};

/* Where a regular file's bytes are: in layer `layer`'s uncompressed stream,
 * [offset, offset + size). For a hardlink, the target's. */
struct rootfs_data {
	unsigned layer;
	uint64_t offset, size;
};

/* The merged tree of layers[0..n) (base first). ns names the image (its
 * manifest digest): inode numbers hash (ns, path). */
int rootfs_tree_merge(const char *ns, struct rootfs_index *const *layers, size_t n,
		      struct rootfs_tree **out);
/* Layer number `layer_no` as stored (whiteout markers visible); ix is that
 * layer's index, ns should differ from the merged tree's (e.g. "DIGEST@layers/3"). */
int rootfs_tree_layer(const char *ns, const struct rootfs_index *ix, unsigned layer_no,
		      struct rootfs_tree **out);
void rootfs_tree_free(struct rootfs_tree *t);
size_t rootfs_tree_nodes(const struct rootfs_tree *t);

const struct rootfs_node *rootfs_tree_root(const struct rootfs_tree *t);
/* NULL when absent or dir is not a directory. */
const struct rootfs_node *rootfs_tree_lookup(const struct rootfs_tree *t,
					     const struct rootfs_node *dir, const char *name);
/* A node by inode number, NULL when absent. Any one link of a hardlink group. */
const struct rootfs_node *rootfs_tree_by_ino(const struct rootfs_tree *t, uint64_t ino);
/* Children of a directory in name order (strcmp): stable across builds. */
size_t rootfs_node_nchildren(const struct rootfs_node *dir);
const struct rootfs_node *rootfs_node_child(const struct rootfs_node *dir, size_t i);
const struct rootfs_node *rootfs_node_parent(const struct rootfs_node *n);
const char *rootfs_node_name(const struct rootfs_node *n);
void rootfs_node_attr(const struct rootfs_tree *t, const struct rootfs_node *n,
		      struct rootfs_attr *out);
/* -EINVAL unless a regular file. */
int rootfs_node_data(const struct rootfs_tree *t, const struct rootfs_node *n,
		     struct rootfs_data *out);
/* The i-th visible xattr (trusted.overlay.* and user.overlay.* hidden):
 * 0, or -ENOENT past the last. Pointers live as long as the tree. */
int rootfs_node_xattr(const struct rootfs_tree *t, const struct rootfs_node *n, size_t i,
		      const char **name, const void **value, size_t *len);
/* Hardlink group id: equal for nodes that are links of one file. */
uintptr_t rootfs_node_group(const struct rootfs_node *n);

#endif
