/* A layer index from a SOCI zTOC (doc/ROOTFS.md, "SOCI zTOCs"): the
 * flatbuffers table of the soci-snapshotter's ztoc.fbs read with fb.c, its
 * file metadata turned into entries as the tar reader would make them, and
 * its gzip checkpoints (the "zinfo" blob: uint32 count, int64 span size,
 * then per checkpoint int64 in, int64 out, uint8 bits, the 32 KiB window;
 * version 1 omits checkpoint 0) turned into ecrfs checkpoints whose span
 * digests are the zTOC's own. Everything is input: every field is checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fs/rootfs/fb_i.h"
#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

/* field numbers of ztoc.fbs */
enum { Z_VERSION = 0, Z_CSIZE = 2, Z_USIZE = 3, Z_TOC = 4, Z_CINFO = 5 };
enum { C_ALGO = 0, C_MAXSPAN = 1, C_DIGESTS = 2, C_CKPTS = 3 };
enum {
	F_NAME = 0,
	F_TYPE,
	F_OFF,
	F_SIZE,
	F_LINK,
	F_MODE,
	F_UID,
	F_GID,
	F_UNAME,
	F_GNAME,
	F_MTIME,
	F_MAJOR,
	F_MINOR,
	F_XATTRS
};

#define ZINFO_HEAD 12u
#define ZINFO_CKPT (8u + 8u + 1u + ROOTFS_WINDOW)
#define ZTOC_MAX_ENTRIES 2000000u
#define ZTOC_MAX_POOL (512ull << 20)
#define ZTOC_MAX_SPAN_OUT (64ull << 20)

static uint64_t le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, const char *end, unsigned n, unsigned *out)
{
	*out = 0;
	for (unsigned i = 0; i < n; i++, (*p)++) {
		if (*p >= end || **p < '0' || **p > '9')
			return -1;
		*out = *out * 10 + (unsigned)(**p - '0');
	}
	return 0;
}

/* RFC 3339 as Go's time.MarshalText writes it:
 * 2006-01-02T15:04:05.999999999Z07:00 (fraction optional, Z or +hh:mm). */
static int parse_time(const char *s, size_t len, int64_t *sec, uint32_t *nsec)
{
	const char *p = s, *end = s + len;
	unsigned y, mo, d, h, mi, se, oh = 0, om = 0, frac = 0, nd = 0;
	if (digits(&p, end, 4, &y) || p >= end || *p++ != '-' || digits(&p, end, 2, &mo) ||
	    p >= end || *p++ != '-' || digits(&p, end, 2, &d) || p >= end || *p++ != 'T' ||
	    digits(&p, end, 2, &h) || p >= end || *p++ != ':' || digits(&p, end, 2, &mi) ||
	    p >= end || *p++ != ':' || digits(&p, end, 2, &se))
		return -1;
	if (p < end && *p == '.')
		for (p++; p < end && *p >= '0' && *p <= '9'; p++, nd++)
			if (nd < 9)
				frac = frac * 10 + (unsigned)(*p - '0');
	for (unsigned i = nd; i < 9; i++)
		frac *= 10;
	int sign = 0;
	if (p < end && *p == 'Z')
		p++;
	else if (p < end && (*p == '+' || *p == '-')) {
		sign = *p++ == '+' ? 1 : -1;
		if (digits(&p, end, 2, &oh) || p >= end || *p++ != ':' || digits(&p, end, 2, &om))
			return -1;
	} else
		return -1;
	if (p != end || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 ||
	    (nd > 0 && nd > 9) || oh > 23 || om > 59)
		return -1;
	*sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
	       sign * (int64_t)(oh * 3600 + om * 60);
	*nsec = frac;
	return 0;
}

static int type_of(const char *t, size_t len)
{
	static const char *const names[] = {
	    [ROOTFS_REG] = "reg",	    [ROOTFS_DIR] = "dir",  [ROOTFS_SYMLINK] = "symlink",
	    [ROOTFS_HARDLINK] = "hardlink", [ROOTFS_CHR] = "char", [ROOTFS_BLK] = "block",
	    [ROOTFS_FIFO] = "fifo"};
	for (int i = 0; t && i <= ROOTFS_FIFO; i++)
		if (strlen(names[i]) == len && !memcmp(t, names[i], len))
			return i;
	return -1;
}

/* The entry's xattrs from its PAX records, through the tar reader's own
 * parser (SCHILY.xattr.* and LIBARCHIVE.xattr.*), so both agree. */
static int entry_xattrs(const struct fb_table *m, uint64_t *budget, struct rootfs_pax *pax)
{
	struct fb_vec v;
	char *rec = NULL;
	size_t used = 0, cap = 0;
	int rc = fb_vec(m, F_XATTRS, 4, &v);
	for (uint32_t i = 0; rc >= 0 && i < v.n; i++) {
		struct fb_table x;
		const char *k, *val;
		size_t kl, vl;
		if (fb_vec_table(&v, i, &x) < 0 || fb_str(&x, 0, &k, &kl) != 1 ||
		    fb_str(&x, 1, &val, &vl) < 0) {
			rc = -EBADMSG;
			break;
		}
		if (kl + vl + 32 > *budget) {
			rc = -EFBIG;
			break;
		}
		*budget -= kl + vl + 32;
		if (strncmp(k, "SCHILY.xattr.", 13) && strncmp(k, "LIBARCHIVE.xattr.", 17))
			continue;
		/* "<len> key=value\n", len counting its own digits */
		size_t body = 1 + kl + 1 + vl + 1, n = body + 1;
		while (snprintf(NULL, 0, "%zu", n) + body > n)
			n++;
		if (n > ROOTFS_META_MAX || used + n > ROOTFS_META_MAX) {
			rc = -EBADMSG;
			break;
		}
		if (used + n > cap) {
			char *nr = realloc(rec, cap = (used + n) * 2);
			if (!nr) {
				rc = -ENOMEM;
				break;
			}
			rec = nr;
		}
		used += (size_t)sprintf(rec + used, "%zu ", n);
		memcpy(rec + used, k, kl);
		rec[used + kl] = '=';
		memcpy(rec + used + kl + 1, val, vl);
		rec[used + kl + 1 + vl] = '\n';
		used += kl + vl + 2;
	}
	if (rc >= 0 && used)
		rc = rootfs_pax_parse((const unsigned char *)rec, used, pax);
	free(rec);
	return rc < 0 ? rc : 0;
}

struct zt {
	struct rootfs_index *ix;
	uint64_t next_header; /* where the next tar header may start */
	/* Bytes of names and xattrs still allowed: flatbuffers may point many
	 * entries at one string, so a small zTOC could ask for huge work. */
	uint64_t budget;
};

static int add_xattrs(struct rootfs_index *ix, const struct rootfs_pax *pax, struct rootfs_ent *e)
{
	int rc =
	    rootfs_ix_grow((void **)&ix->xa, &ix->cap_xa, ix->n_xa + pax->n_xa, sizeof(*ix->xa));
	e->xattr_first = (uint32_t)ix->n_xa;
	for (size_t i = 0; rc == 0 && i < pax->n_xa; i++) {
		struct rootfs_xattr *x = &ix->xa[ix->n_xa];
		memset(x, 0, sizeof(*x));
		x->name_len = (uint32_t)strlen(pax->xa[i].name);
		x->value_len = (uint32_t)pax->xa[i].len;
		rc = rootfs_ix_pool_add(ix, pax->xa[i].name, x->name_len, &x->name);
		if (rc == 0)
			rc = rootfs_ix_pool_add(ix, pax->xa[i].value, x->value_len, &x->value);
		ix->n_xa += rc == 0;
	}
	e->xattr_count = (uint32_t)(ix->n_xa - e->xattr_first);
	return rc;
}

/* Name and link of entry m into e; 1 when the entry is skipped (a ".."
 * name, as the tar reader does). */
static int entry_names(struct rootfs_index *ix, const struct fb_table *m, struct rootfs_ent *e)
{
	const char *name, *link;
	size_t nl, ll;
	char norm[ROOTFS_PATH_MAX], lnorm[ROOTFS_PATH_MAX];
	if (fb_str(m, F_NAME, &name, &nl) != 1 || fb_str(m, F_LINK, &link, &ll) < 0 ||
	    memchr(name, 0, nl) || (link && memchr(link, 0, ll)))
		return -EBADMSG;
	int n = rootfs_path_norm(name, norm, sizeof(norm));
	if (n == -EINVAL || n == -ENAMETOOLONG) {
		log_warn("rootfs: zTOC of %s: entry %.200s skipped", ix->digest, name);
		return 1;
	}
	if (n < 0)
		return n;
	e->link = ROOTFS_NONE;
	if (e->type == ROOTFS_HARDLINK || e->type == ROOTFS_SYMLINK) {
		if (!link || ll >= ROOTFS_PATH_MAX)
			return -EBADMSG;
		const char *lk = link;
		if (e->type == ROOTFS_HARDLINK) {
			int r = rootfs_path_norm(link, lnorm, sizeof(lnorm));
			if (r < 0) {
				log_warn("rootfs: zTOC of %s: link %.200s skipped", ix->digest,
					 name);
				return 1;
			}
			lk = lnorm;
		}
		e->link_len = (uint32_t)strlen(lk);
		int rc = rootfs_ix_pool_add(ix, lk, e->link_len, &e->link);
		if (rc < 0)
			return rc;
	}
	e->path_len = (uint32_t)n;
	return rootfs_ix_pool_add(ix, norm, (size_t)n, &e->path);
}

/* Numbers of entry m; offsets must follow tar order inside the stream. */
static int entry_numbers(struct zt *z, const struct fb_table *m, struct rootfs_ent *e)
{
	uint64_t off = 0, size = 0, mode = 0, uid = 0, gid = 0, maj = 0, min = 0;
	const char *t;
	size_t tl;
	if (fb_u(m, F_OFF, 8, &off) < 0 || fb_u(m, F_SIZE, 8, &size) < 0 ||
	    fb_u(m, F_MODE, 8, &mode) < 0 || fb_u(m, F_UID, 4, &uid) < 0 ||
	    fb_u(m, F_GID, 4, &gid) < 0 || fb_u(m, F_MAJOR, 8, &maj) < 0 ||
	    fb_u(m, F_MINOR, 8, &min) < 0 || fb_str(m, F_MTIME, &t, &tl) != 1 ||
	    parse_time(t, tl, &e->mtime, &e->nsec) < 0)
		return -EBADMSG;
	uint64_t out = z->ix->out_size;
	if (off > out || size > out - off || off < z->next_header || off - z->next_header < 512 ||
	    maj > UINT32_MAX || min > UINT32_MAX)
		return -EBADMSG;
	int header_only = e->type != ROOTFS_REG;
	e->data_off = off;
	e->size = header_only ? 0 : size;
	z->next_header = (off + e->size + 511) & ~(uint64_t)511;
	e->mode = (uint32_t)mode & 07777;
	e->uid = (uint32_t)uid;
	e->gid = (uint32_t)gid;
	e->major = (uint32_t)maj;
	e->minor = (uint32_t)min;
	return 0;
}

static int add_entry(struct zt *z, const struct fb_table *m)
{
	struct rootfs_index *ix = z->ix;
	struct rootfs_ent e = {0};
	struct rootfs_pax pax = {0};
	const char *t, *name, *link;
	size_t tl, nl, ll;
	int type, rc;
	if (fb_str(m, F_TYPE, &t, &tl) != 1 || (type = type_of(t, tl)) < 0 ||
	    fb_str(m, F_NAME, &name, &nl) < 0 || fb_str(m, F_LINK, &link, &ll) < 0)
		return -EBADMSG;
	if (nl + ll + 64 > z->budget)
		return -EFBIG;
	z->budget -= nl + ll + 64;
	e.type = (uint8_t)type;
	if ((rc = entry_numbers(z, m, &e)) < 0 || (rc = entry_names(ix, m, &e)) != 0)
		return rc < 0 ? rc : 0;
	if ((rc = entry_xattrs(m, &z->budget, &pax)) == 0 &&
	    (rc = rootfs_ix_grow((void **)&ix->ents, &ix->cap_ents, ix->n_ents + 1, sizeof(e))) ==
		0 &&
	    (rc = add_xattrs(ix, &pax, &e)) == 0)
		ix->ents[ix->n_ents++] = e;
	rootfs_pax_clear(&pax);
	return rc;
}

static int read_toc(struct zt *z, const struct fb_table *root)
{
	struct fb_table toc, m;
	struct fb_vec v;
	if (fb_sub(root, Z_TOC, &toc) != 1 || fb_vec(&toc, 0, 4, &v) < 0)
		return -EBADMSG;
	if (v.n > ZTOC_MAX_ENTRIES)
		return -EFBIG;
	for (uint32_t i = 0; i < v.n; i++) {
		int rc = fb_vec_table(&v, i, &m);
		if (rc < 0 || (rc = add_entry(z, &m)) < 0)
			return rc;
	}
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Checkpoint i of the zinfo blob (v1 blobs omit checkpoint 0: in 10, out
 * 0, no bits, no window). */
static int add_ckpt(struct rootfs_index *ix, const uint8_t *p, const char *sha_hex, size_t sha_len,
		    unsigned char *scratch)
{
	struct rootfs_ckpt c = {0};
	if (p) {
		c.in = le(p, 8);
		c.out = le(p + 8, 8);
		c.bits = p[16];
	} else
		c.in = 10;
	if (sha_len != 71 || strncmp(sha_hex, "sha256:", 7))
		return -EBADMSG;
	for (int k = 0; k < 64; k++) {
		int h = hexval(sha_hex[7 + k]);
		if (h < 0)
			return -EBADMSG;
		c.sha[k / 2] = (uint8_t)(c.sha[k / 2] << 4 | h);
	}
	const struct rootfs_ckpt *prev = ix->n_ck ? &ix->ck[ix->n_ck - 1] : NULL;
	if (c.bits > 7 || (c.bits && c.in == 0) || c.in > ix->blob_size || c.out > ix->out_size ||
	    (prev ? (c.out <= prev->out || c.in < prev->in || c.out - prev->out > ZTOC_MAX_SPAN_OUT)
		  : c.out != 0))
		return -EBADMSG;
	c.dict_len = c.out < ROOTFS_WINDOW ? (uint32_t)c.out : ROOTFS_WINDOW;
	int rc = rootfs_ix_grow((void **)&ix->ck, &ix->cap_ck, ix->n_ck + 1, sizeof(c));
	if (rc == 0 && c.dict_len) {
		uLongf zl = compressBound(ROOTFS_WINDOW);
		if (compress2(scratch, &zl, p + 17 + ROOTFS_WINDOW - c.dict_len, c.dict_len, 6) !=
		    Z_OK)
			return -ENOMEM;
		rc = rootfs_ix_grow((void **)&ix->wins, &ix->cap_wins, ix->n_wins + zl, 1);
		if (rc == 0) {
			memcpy(ix->wins + ix->n_wins, scratch, zl);
			c.win_off = ix->n_wins;
			c.win_len = (uint32_t)zl;
			ix->n_wins += zl;
		}
	}
	if (rc == 0)
		ix->ck[ix->n_ck++] = c;
	return rc;
}

static int read_zinfo(struct rootfs_index *ix, const struct fb_table *root)
{
	struct fb_table ci;
	struct fb_vec dg, cp;
	uint64_t algo = 1, max_span = 0;
	if (fb_sub(root, Z_CINFO, &ci) != 1 || fb_u(&ci, C_ALGO, 1, &algo) < 0 ||
	    fb_u(&ci, C_MAXSPAN, 4, &max_span) < 0 || fb_vec(&ci, C_DIGESTS, 4, &dg) < 0 ||
	    fb_vec(&ci, C_CKPTS, 1, &cp) != 1)
		return -EBADMSG;
	if (algo != 1) {
		log_warn("rootfs: zTOC of %s is not for a gzip layer: not used", ix->digest);
		return -ENOTSUP;
	}
	const uint8_t *z = cp.fb->b + cp.pos;
	if (cp.n < ZINFO_HEAD)
		return -EBADMSG;
	uint64_t count = le(z, 4), body = cp.n - ZINFO_HEAD;
	int v1 = body == (count - 1) * (uint64_t)ZINFO_CKPT;
	if (count == 0 || count > (1u << 24) || max_span != count - 1 ||
	    (body != count * (uint64_t)ZINFO_CKPT && !v1))
		return -EBADMSG;
	/* Like the SOCI snapshotter: no span read without its digest. */
	if (dg.n != count) {
		log_warn("rootfs: zTOC of %s has %u span digests for %llu spans: not used",
			 ix->digest, dg.n, (unsigned long long)count);
		return -ENOTSUP;
	}
	unsigned char *scratch = malloc(compressBound(ROOTFS_WINDOW));
	int rc = scratch ? 0 : -ENOMEM;
	for (uint64_t i = 0; rc == 0 && i < count; i++) {
		const char *s;
		size_t sl;
		const uint8_t *p = v1 && i == 0 ? NULL : z + ZINFO_HEAD + (i - v1) * ZINFO_CKPT;
		rc = fb_vec_str(&dg, (uint32_t)i, &s, &sl);
		if (rc == 0)
			rc = add_ckpt(ix, p, s, sl, scratch);
	}
	free(scratch);
	if (rc == 0 && ix->out_size - ix->ck[ix->n_ck - 1].out > ZTOC_MAX_SPAN_OUT)
		rc = -EBADMSG;
	return rc;
}

int rootfs_index_from_ztoc(const char *digest, uint64_t blob_size, const void *buf, size_t len,
			   struct rootfs_index **out)
{
	struct fb fb = {buf, len};
	struct fb_table root;
	struct rootfs_index *ix = NULL;
	uint64_t csize = 0, usize = 0;
	int rc = rootfs_ix_new(digest, &ix);
	*out = NULL;
	if (rc < 0)
		return rc;
	rc = -EBADMSG;
	if (fb_root(&fb, &root) < 0 || fb_u(&root, Z_CSIZE, 8, &csize) != 1 ||
	    fb_u(&root, Z_USIZE, 8, &usize) != 1 || usize > (1ull << 62))
		goto out;
	if (csize != blob_size) {
		log_warn("rootfs: zTOC of %s describes %llu bytes, the layer has %llu: not used",
			 digest, (unsigned long long)csize, (unsigned long long)blob_size);
		goto out;
	}
	ix->comp = ROOTFS_COMP_GZIP;
	ix->blob_size = blob_size;
	ix->out_size = usize;
	/* A real zTOC stores each name once: 4x its size is plenty. */
	uint64_t budget = 4 * (uint64_t)len + (1u << 20);
	struct zt z = {ix, 0, budget < ZTOC_MAX_POOL ? budget : ZTOC_MAX_POOL};
	if ((rc = read_toc(&z, &root)) < 0 || (rc = read_zinfo(ix, &root)) < 0)
		goto out;
	rootfs_ix_shrink(ix);
	*out = ix;
	ix = NULL;
out:
	if (rc == -EBADMSG)
		log_warn("rootfs: zTOC of %s is malformed: not used", digest);
	rootfs_index_free(ix);
	return rc;
}
