/* Streaming tar reader: fed chunks of any size of the uncompressed stream,
 * calls back once per entry with the offset of its data in that stream.
 * Memory is bounded: one header, one PAX/long-name record of at most
 * ROOTFS_META_MAX bytes, and the pending attributes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

enum tar_state { ST_HDR, ST_META, ST_SKIP, ST_END };

struct rootfs_tar {
	rootfs_tar_cb cb;
	void *arg;
	enum tar_state state;
	uint64_t pos; /* offset of the next byte in the stream */
	unsigned char hdr[512];
	size_t hdr_fill;
	uint64_t remain;     /* ST_SKIP/ST_META: bytes left, padding included */
	uint64_t meta_size;  /* ST_META: the record's size without padding */
	char meta_type;	     /* 'x', 'g', 'L', 'K' */
	unsigned char *meta; /* ROOTFS_META_MAX + 1 bytes, or NULL when skipping */
	size_t meta_len;
	int zero_blocks;
	int skip_next; /* a record of the next entry was too big or bad */
	char *long_name, *long_link;
	struct rootfs_pax local, global;
	uint32_t entries, max_entries;
};

int rootfs_tar_new(rootfs_tar_cb cb, void *arg, uint32_t max_entries, struct rootfs_tar **out)
{
	struct rootfs_tar *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->cb = cb;
	t->arg = arg;
	t->max_entries = max_entries ? max_entries : 2000000;
	*out = t;
	return 0;
}

void rootfs_tar_free(struct rootfs_tar *t)
{
	if (!t)
		return;
	free(t->meta);
	free(t->long_name);
	free(t->long_link);
	rootfs_pax_clear(&t->local);
	rootfs_pax_clear(&t->global);
	free(t);
}

int rootfs_tar_done(const struct rootfs_tar *t) { return t->state == ST_END; }

/* An octal or base-256 number field: 0, or -EINVAL. */
static int tar_num(const unsigned char *f, size_t len, int64_t *out)
{
	if (f[0] & 0x80) {
		int neg = (f[0] & 0x40) != 0;
		uint64_t v = neg ? UINT64_MAX : 0;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = i == 0 ? (unsigned char)(neg ? f[0] : f[0] & 0x7f) : f[i];
			if (!neg && (v >> 55) != 0)
				return -EINVAL;
			v = (v << 8) | c;
		}
		if (!neg && v > INT64_MAX)
			return -EINVAL;
		*out = (int64_t)v;
		return 0;
	}
	uint64_t v = 0;
	size_t i = 0;
	while (i < len && (f[i] == ' ' || f[i] == '\0'))
		i++;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -EINVAL;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	*out = (int64_t)v;
	return 0;
}

static int hdr_is_zero(const unsigned char *h)
{
	for (size_t i = 0; i < 512; i++)
		if (h[i])
			return 0;
	return 1;
}

static int hdr_checksum_ok(const unsigned char *h)
{
	int64_t want;
	if (tar_num(h + 148, 8, &want) < 0)
		return 0;
	int64_t us = 0, ss = 0;
	for (size_t i = 0; i < 512; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
		us += c;
		ss += (signed char)c;
	}
	return want == us || want == ss;
}

static enum rootfs_type tar_type(char tf, int *known)
{
	*known = 1;
	switch (tf) {
	case '0':
	case '\0':
	case '7':
		return ROOTFS_REG;
	case '1':
		return ROOTFS_HARDLINK;
	case '2':
		return ROOTFS_SYMLINK;
	case '3':
		return ROOTFS_CHR;
	case '4':
		return ROOTFS_BLK;
	case '5':
		return ROOTFS_DIR;
	case '6':
		return ROOTFS_FIFO;
	default:
		*known = 0;
		return ROOTFS_REG;
	}
}

/* The entry's name from the header: prefix/name for POSIX ustar. */
static void hdr_name(const unsigned char *h, char *buf, size_t sz)
{
	size_t n = 0;
	if (memcmp(h + 257, "ustar\0", 6) == 0 && h[345]) {
		n = strnlen((const char *)h + 345, 155);
		memcpy(buf, h + 345, n);
		buf[n++] = '/';
	}
	size_t l = strnlen((const char *)h, 100);
	memcpy(buf + n, h, l);
	buf[n + l] = '\0';
	(void)sz;
}

static void entry_reset(struct rootfs_tar *t)
{
	free(t->long_name);
	free(t->long_link);
	t->long_name = t->long_link = NULL;
	rootfs_pax_clear(&t->local);
	t->skip_next = 0;
}

static int header_only(enum rootfs_type ty) { return ty != ROOTFS_REG; }

/* Fills e's names from PAX, GNU long records or the header; 0 to emit,
 * 1 to skip the entry (logged). */
static int entry_names(struct rootfs_tar *t, struct rootfs_tar_entry *e, char *path, char *link)
{
	const unsigned char *h = t->hdr;
	char raw[300];
	hdr_name(h, raw, sizeof(raw));
	const char *name = t->local.path ? t->local.path : t->long_name ? t->long_name : raw;
	int rc = rootfs_path_norm(name, path, ROOTFS_PATH_MAX);
	if (rc < 0) {
		log_warn("rootfs: skipping tar entry \"%.200s\": %s", name,
			 rc == -EINVAL ? "'..' in its name" : "name too long");
		return 1;
	}
	char rawlink[101];
	memcpy(rawlink, h + 157, 100);
	rawlink[100] = '\0';
	const char *l = t->local.linkpath ? t->local.linkpath
			: t->long_link	  ? t->long_link
					  : rawlink;
	if (strlen(l) >= ROOTFS_PATH_MAX) {
		log_warn("rootfs: skipping tar entry \"%.200s\": link target too long", path);
		return 1;
	}
	if (e->type == ROOTFS_HARDLINK) {
		if (rootfs_path_norm(l, link, ROOTFS_PATH_MAX) < 0) {
			log_warn("rootfs: skipping hardlink \"%.200s\": bad target \"%.200s\"",
				 path, l);
			return 1;
		}
	} else {
		strcpy(link, l);
	}
	e->path = path;
	e->link = (e->type == ROOTFS_HARDLINK || e->type == ROOTFS_SYMLINK) ? link : NULL;
	return 0;
}

/* Numeric fields of the header with PAX overrides; -EINVAL when unreadable. */
static int entry_nums(struct rootfs_tar *t, struct rootfs_tar_entry *e, const struct rootfs_pax *x)
{
	const unsigned char *h = t->hdr;
	int64_t mode, uid, gid, mtime, maj, min;
	if (tar_num(h + 100, 8, &mode) < 0 || tar_num(h + 108, 8, &uid) < 0 ||
	    tar_num(h + 116, 8, &gid) < 0 || tar_num(h + 136, 12, &mtime) < 0 ||
	    tar_num(h + 329, 8, &maj) < 0 || tar_num(h + 337, 8, &min) < 0)
		return -EINVAL;
	e->mode = (uint32_t)mode & 07777;
	e->uid = (uint32_t)(x->has_uid ? x->uid : (uint64_t)uid);
	e->gid = (uint32_t)(x->has_gid ? x->gid : (uint64_t)gid);
	e->mtime = x->has_mtime ? x->mtime : mtime;
	e->nsec = x->has_mtime ? x->nsec : 0;
	e->major = (uint32_t)maj;
	e->minor = (uint32_t)min;
	if ((x->has_uid && x->uid > UINT32_MAX) || (x->has_gid && x->gid > UINT32_MAX) || uid < 0 ||
	    gid < 0 || uid > UINT32_MAX || gid > UINT32_MAX)
		return -EINVAL;
	return 0;
}

static void warn_plain(const char *path, char tf, int sparse)
{
	log_warn("rootfs: tar entry \"%.200s\" of type '%c'%s shown as a plain file", path,
		 tf > ' ' ? tf : '?', sparse ? " (GNU sparse)" : "");
}

/* A file entry's header: emits it and moves to its data. */
static int on_entry(struct rootfs_tar *t, uint64_t size, char tf)
{
	struct rootfs_tar_entry e = {0};
	struct rootfs_pax eff = {0};
	char *path = malloc(ROOTFS_PATH_MAX), *link = malloc(ROOTFS_PATH_MAX);
	int known, rc = -ENOMEM;
	if (!path || !link)
		goto out;
	e.type = tar_type(tf, &known);
	rc = rootfs_pax_merge(&eff, &t->global);
	if (rc == 0)
		rc = rootfs_pax_merge(&eff, &t->local);
	if (rc == -ENOMEM)
		goto out;
	if (t->local.has_size)
		size = t->local.size;
	if (size > (UINT64_MAX >> 2)) {
		log_err("rootfs: tar entry of absurd size %llu", (unsigned long long)size);
		rc = -EIO;
		goto out;
	}
	e.size = header_only(e.type) ? 0 : size;
	e.data_off = t->pos;
	e.xa = eff.xa;
	e.n_xa = eff.n_xa;
	t->remain = (e.size + 511) & ~(uint64_t)511;
	t->state = t->remain ? ST_SKIP : ST_HDR;
	if (t->skip_next || rc < 0) {
		log_warn("rootfs: skipping the tar entry at offset %llu: bad extended header",
			 (unsigned long long)t->pos - 512);
		rc = 0;
		goto out;
	}
	if (entry_names(t, &e, path, link)) {
		rc = 0;
		goto out;
	}
	if (entry_nums(t, &e, &eff) < 0) {
		log_warn("rootfs: skipping tar entry \"%.200s\": bad number field", e.path);
		rc = 0;
		goto out;
	}
	if (!known || tf == 'S' || t->local.sparse)
		warn_plain(e.path, tf, tf == 'S' || t->local.sparse);
	if (++t->entries > t->max_entries) {
		log_err("rootfs: layer has more than %u entries", t->max_entries);
		rc = -EFBIG;
		goto out;
	}
	rc = t->cb(t->arg, &e);
out:
	entry_reset(t);
	rootfs_pax_clear(&eff);
	free(path);
	free(link);
	return rc;
}

static int meta_done(struct rootfs_tar *t);

/* A PAX or GNU long-name header: its data is read into t->meta, or skipped
 * when too big (then the entry it describes is skipped too). */
static int on_meta(struct rootfs_tar *t, uint64_t size, char tf)
{
	t->state = ST_META;
	t->meta_type = tf;
	t->meta_size = size;
	t->meta_len = 0;
	t->remain = (size + 511) & ~(uint64_t)511;
	if (size > ROOTFS_META_MAX) {
		log_warn("rootfs: tar %c record of %llu bytes ignored%s", tf,
			 (unsigned long long)size, tf == 'g' ? "" : " with its entry");
		if (tf != 'g')
			t->skip_next = 1;
		free(t->meta);
		t->meta = NULL;
		return 0;
	}
	if (!t->meta) {
		t->meta = malloc(ROOTFS_META_MAX + 1);
		if (!t->meta)
			return -ENOMEM;
	}
	return t->remain ? 0 : meta_done(t);
}

static int meta_done(struct rootfs_tar *t)
{
	int rc = 0;
	if (!t->meta || t->meta_len != t->meta_size)
		goto out;
	t->meta[t->meta_len] = '\0';
	switch (t->meta_type) {
	case 'x':
		rc = rootfs_pax_parse(t->meta, t->meta_len, &t->local);
		break;
	case 'g':
		rc = rootfs_pax_parse(t->meta, t->meta_len, &t->global);
		if (rc == -EINVAL)
			log_warn("rootfs: bad global PAX header ignored");
		rc = rc == -ENOMEM ? rc : 0;
		goto out;
	case 'L':
		free(t->long_name);
		t->long_name = strdup((char *)t->meta);
		rc = t->long_name ? 0 : -ENOMEM;
		break;
	default:
		free(t->long_link);
		t->long_link = strdup((char *)t->meta);
		rc = t->long_link ? 0 : -ENOMEM;
		break;
	}
	if (rc == -EINVAL) {
		t->skip_next = 1;
		rc = 0;
	}
out:
	t->state = ST_HDR;
	return rc;
}

static int on_header(struct rootfs_tar *t)
{
	const unsigned char *h = t->hdr;
	if (hdr_is_zero(h)) {
		if (++t->zero_blocks >= 2)
			t->state = ST_END;
		return 0;
	}
	t->zero_blocks = 0;
	/* A stream whose first block fails the header checksum is not a tar
	 * archive (the caller says so once); a later one is a damaged tar. */
	int first = t->pos == 512;
	if (!hdr_checksum_ok(h)) {
		if (first)
			return -EMEDIUMTYPE;
		log_err("rootfs: bad tar header checksum at offset %llu",
			(unsigned long long)t->pos - 512);
		return -EIO;
	}
	int64_t size;
	if (tar_num(h + 124, 12, &size) < 0 || size < 0) {
		log_err("rootfs: unreadable tar size at offset %llu",
			(unsigned long long)t->pos - 512);
		return -EIO;
	}
	char tf = (char)h[156];
	if (tf == 'x' || tf == 'g' || tf == 'L' || tf == 'K' || tf == 'X')
		return on_meta(t, (uint64_t)size, tf == 'X' ? 'x' : tf);
	return on_entry(t, (uint64_t)size, tf);
}

static size_t step(struct rootfs_tar *t, const unsigned char *p, size_t len, int *rc)
{
	size_t n;
	*rc = 0;
	switch (t->state) {
	case ST_HDR:
		n = 512 - t->hdr_fill < len ? 512 - t->hdr_fill : len;
		memcpy(t->hdr + t->hdr_fill, p, n);
		t->hdr_fill += n;
		t->pos += n;
		if (t->hdr_fill == 512) {
			t->hdr_fill = 0;
			*rc = on_header(t);
		}
		return n;
	case ST_META:
		n = t->remain < len ? (size_t)t->remain : len;
		if (t->meta && t->meta_len < t->meta_size) {
			size_t c = t->meta_size - t->meta_len < n ? t->meta_size - t->meta_len : n;
			memcpy(t->meta + t->meta_len, p, c);
			t->meta_len += c;
		}
		t->remain -= n;
		t->pos += n;
		if (t->remain == 0)
			*rc = meta_done(t);
		return n;
	case ST_SKIP:
		n = t->remain < len ? (size_t)t->remain : len;
		t->remain -= n;
		t->pos += n;
		if (t->remain == 0)
			t->state = ST_HDR;
		return n;
	default:
		t->pos += len;
		return len;
	}
}

int rootfs_tar_feed(struct rootfs_tar *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len) {
		int rc;
		size_t n = step(t, p, len, &rc);
		if (rc < 0)
			return rc;
		p += n;
		len -= n;
	}
	return 0;
}

int rootfs_tar_finish(struct rootfs_tar *t)
{
	if (t->state == ST_END || (t->state == ST_HDR && t->hdr_fill == 0))
		return 0;
	if (t->pos < 512)
		return -EMEDIUMTYPE; /* shorter than one tar header */
	log_err("rootfs: tar stream truncated at offset %llu", (unsigned long long)t->pos);
	return -EIO;
}
