/* A bounds-checked flatbuffers reader (fb_i.h). The wire format: a table
 * starts with an int32 soffset to its vtable (vtable = table - soffset);
 * a vtable is uint16 vtable size, uint16 table size, then one uint16 per
 * field (offset in the table, 0 = absent); reference fields hold a uint32
 * offset relative to the field's own position; strings and vectors start
 * with a uint32 length. All little endian, nothing trusted. */
#include <errno.h>
#include <string.h>

#include "fs/rootfs/fb_i.h"

static uint64_t rd(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* 1 when [pos, pos + n) lies in the buffer. */
static int in(const struct fb *fb, size_t pos, size_t n)
{
	return pos <= fb->len && n <= fb->len - pos;
}

static int table_at(const struct fb *fb, size_t pos, struct fb_table *t)
{
	if (!in(fb, pos, 4))
		return -EBADMSG;
	int32_t so = (int32_t)(uint32_t)rd(fb->b + pos, 4);
	int64_t vt = (int64_t)pos - (int64_t)so;
	if (vt < 0 || !in(fb, (size_t)vt, 4))
		return -EBADMSG;
	t->fb = fb;
	t->pos = pos;
	t->vt = (size_t)vt;
	t->vt_len = (uint16_t)rd(fb->b + vt, 2);
	t->t_len = (uint16_t)rd(fb->b + vt + 2, 2);
	if (t->vt_len < 4 || (t->vt_len & 1) || !in(fb, t->vt, t->vt_len) || t->t_len < 4 ||
	    !in(fb, pos, t->t_len))
		return -EBADMSG;
	return 0;
}

int fb_root(const struct fb *fb, struct fb_table *out)
{
	if (!in(fb, 0, 4))
		return -EBADMSG;
	return table_at(fb, (size_t)rd(fb->b, 4), out);
}

/* Position of field `field` of n bytes inside t: 1, 0 absent, -EBADMSG. */
static int field_pos(const struct fb_table *t, unsigned field, size_t n, size_t *pos)
{
	size_t slot = 4 + 2 * (size_t)field;
	if (slot + 2 > t->vt_len)
		return 0;
	uint16_t fo = (uint16_t)rd(t->fb->b + t->vt + slot, 2);
	if (fo == 0)
		return 0;
	if (fo < 4 || (size_t)fo + n > t->t_len)
		return -EBADMSG;
	*pos = t->pos + fo;
	return 1;
}

int fb_u(const struct fb_table *t, unsigned field, size_t size, uint64_t *out)
{
	size_t pos;
	int rc = field_pos(t, field, size, &pos);
	if (rc == 1)
		*out = rd(t->fb->b + pos, size);
	return rc;
}

/* Follows the uoffset at pos: the target, or -EBADMSG. */
static int deref(const struct fb *fb, size_t pos, size_t *target)
{
	if (!in(fb, pos, 4))
		return -EBADMSG;
	uint64_t to = (uint64_t)pos + rd(fb->b + pos, 4);
	if (to >= fb->len)
		return -EBADMSG;
	*target = (size_t)to;
	return 0;
}

static int str_at(const struct fb *fb, size_t pos, const char **s, size_t *len)
{
	if (!in(fb, pos, 4))
		return -EBADMSG;
	uint64_t n = rd(fb->b + pos, 4);
	/* the bytes and their NUL terminator */
	if (!in(fb, pos + 4, (size_t)n + 1) || fb->b[pos + 4 + n] != 0)
		return -EBADMSG;
	*s = (const char *)fb->b + pos + 4;
	*len = (size_t)n;
	return 0;
}

int fb_str(const struct fb_table *t, unsigned field, const char **s, size_t *len)
{
	size_t pos, to;
	int rc = field_pos(t, field, 4, &pos);
	*s = NULL;
	*len = 0;
	if (rc <= 0)
		return rc;
	if (deref(t->fb, pos, &to) < 0 || str_at(t->fb, to, s, len) < 0)
		return -EBADMSG;
	return 1;
}

int fb_sub(const struct fb_table *t, unsigned field, struct fb_table *out)
{
	size_t pos, to;
	int rc = field_pos(t, field, 4, &pos);
	if (rc <= 0)
		return rc;
	if (deref(t->fb, pos, &to) < 0 || table_at(t->fb, to, out) < 0)
		return -EBADMSG;
	return 1;
}

int fb_vec(const struct fb_table *t, unsigned field, size_t elem, struct fb_vec *out)
{
	size_t pos, to;
	int rc = field_pos(t, field, 4, &pos);
	out->fb = t->fb;
	out->pos = 0;
	out->n = 0;
	if (rc <= 0)
		return rc;
	if (deref(t->fb, pos, &to) < 0 || !in(t->fb, to, 4))
		return -EBADMSG;
	uint64_t n = rd(t->fb->b + to, 4);
	if (n > (t->fb->len - to - 4) / elem)
		return -EBADMSG;
	out->pos = to + 4;
	out->n = (uint32_t)n;
	return 1;
}

int fb_vec_table(const struct fb_vec *v, uint32_t i, struct fb_table *out)
{
	size_t to;
	if (i >= v->n || deref(v->fb, v->pos + 4 * (size_t)i, &to) < 0)
		return -EBADMSG;
	return table_at(v->fb, to, out);
}

int fb_vec_str(const struct fb_vec *v, uint32_t i, const char **s, size_t *len)
{
	size_t to;
	if (i >= v->n || deref(v->fb, v->pos + 4 * (size_t)i, &to) < 0)
		return -EBADMSG;
	return str_at(v->fb, to, s, len);
}
