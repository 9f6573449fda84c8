/* A bounds-checked reader of the flatbuffers wire format (little endian
 * tables with vtables, strings, vectors), enough for one known schema
 * without generated code. Every offset, vtable, length and element read is
 * checked against the buffer: a hostile buffer gives -EBADMSG, never a read
 * outside it. Not for use outside fs/rootfs/. */
#ifndef ECRFS_ROOTFS_FB_I_H
#define ECRFS_ROOTFS_FB_I_H

#include <stddef.h>
#include <stdint.h>

struct fb {
	const uint8_t *b;
	size_t len;
};

/* A table: its position, its vtable's, and their sizes (checked). */
struct fb_table {
	const struct fb *fb;
	size_t pos, vt;
	uint16_t vt_len, t_len;
};

/* A vector: position of its first element and its length. */
struct fb_vec {
	const struct fb *fb;
	size_t pos;
	uint32_t n;
};

/* The root table (uoffset at byte 0). */
int fb_root(const struct fb *fb, struct fb_table *out);
/* Scalar field (size 1, 2, 4 or 8 bytes, unsigned little endian into *out):
 * 1 present, 0 absent (*out untouched), -EBADMSG. */
int fb_u(const struct fb_table *t, unsigned field, size_t size, uint64_t *out);
/* String field: 1 (s points into the buffer, NUL-terminated at len), 0
 * absent (s = NULL, len = 0), -EBADMSG. */
int fb_str(const struct fb_table *t, unsigned field, const char **s, size_t *len);
/* Sub-table field: 1, 0 absent, -EBADMSG. */
int fb_sub(const struct fb_table *t, unsigned field, struct fb_table *out);
/* Vector field of elem-byte elements (4 for tables and strings): 1, 0
 * absent (n = 0), -EBADMSG when it does not fit in the buffer. */
int fb_vec(const struct fb_table *t, unsigned field, size_t elem, struct fb_vec *out);
/* Element i (< v->n) of a vector of tables / of strings. */
int fb_vec_table(const struct fb_vec *v, uint32_t i, struct fb_table *out);
int fb_vec_str(const struct fb_vec *v, uint32_t i, const char **s, size_t *len);

#endif
