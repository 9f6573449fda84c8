/* A layer index from a table of contents in the eStargz / zstd:chunked
 * JSON format ({"version": 1, "entries": [...]}, entries in tar order, a
 * regular file followed by its "chunk" entries). Every chunk becomes a
 * checkpoint of a chunk kind (rootfs_i.h): its compressed range and the
 * sha256 of its bytes. A TOC that is not well formed, whose chunks do not
 * tile each file, lack a digest, or point outside the blob is -EBADMSG. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

#define TOC_MAX_ENTRIES 2000000u
#define TOC_MAX_NAMES (512ull << 20)
#define TOC_MAX_FILE (1ull << 62)

struct toc_build {
	struct rootfs_index *ix;
	uint64_t blob_size, toc_end;
	/* the regular file whose chunks come next (copies: its entry's JSON is
	 * freed before they come) */
	char *file;
	uint64_t file_size, file_next;
	uint64_t file_end;    /* its "endOffset" (zstd:chunked), 0 when absent */
	char file_digest[80]; /* "" when absent */
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "sha256:<64 lowercase hex>" into 32 bytes. */
static int parse_digest(const char *s, unsigned char out[32])
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
		return -EBADMSG;
	for (size_t i = 0; i < 32; i++) {
		int h = hexval(s[7 + 2 * i]), l = hexval(s[8 + 2 * i]);
		if (h < 0 || l < 0)
			return -EBADMSG;
		out[i] = (unsigned char)(h << 4 | l);
	}
	return 0;
}

int rootfs_sha256_check(const void *buf, size_t len, const char *digest, unsigned char sha[32])
{
	unsigned char want[32];
	if (EVP_Digest(buf, len, sha, NULL, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	if (!digest)
		return 0;
	return parse_digest(digest, want) == 0 && memcmp(want, sha, 32) == 0 ? 0 : -EBADMSG;
}

/* A JSON integer in [0, max], 0 when absent. */
static int get_u64(json_t *e, const char *key, uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(e, key);
	*out = 0;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return -EBADMSG;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static const char *get_str(json_t *e, const char *key)
{
	return json_string_value(json_object_get(e, key));
}

/* RFC 3339 ("2006-01-02T15:04:05.999Z", "+01:00" zones); absent: 0. */
static int parse_time(const char *s, int64_t *sec, uint32_t *nsec)
{
	struct tm tm = {0};
	int n = 0;
	*sec = 0;
	*nsec = 0;
	if (!s)
		return 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
	    n != 19)
		return -EBADMSG;
	const char *p = s + n;
	if (*p == '.') {
		uint32_t scale = 100000000;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			*nsec += (uint32_t)(*p - '0') * scale;
	}
	int64_t off = 0;
	if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int hh = 0, mm = 0;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
			return -EBADMSG;
		off = (*p == '-' ? -1 : 1) * (int64_t)(hh * 3600 + mm * 60);
	} else if (strcmp(p, "Z") != 0) {
		return -EBADMSG;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*sec = (int64_t)timegm(&tm) - off;
	return 0;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 (padded) into a malloc'd buffer. */
static int b64_decode(const char *s, unsigned char **out, size_t *len)
{
	size_t n = strlen(s), o = 0;
	if (n % 4)
		return -EBADMSG;
	unsigned char *b = malloc(n / 4 * 3 + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		int last = i + 4 == n, v[4];
		for (int k = 0; k < 4; k++)
			v[k] = s[i + k] == '=' && last && k >= 2 ? -2 : b64val(s[i + k]);
		/* '=' only as the last one or two characters */
		if (v[0] < 0 || v[1] < 0 || v[2] == -1 || v[3] == -1 ||
		    (v[2] == -2 && v[3] != -2)) {
			free(b);
			return -EBADMSG;
		}
		b[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			b[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (v[3] >= 0)
			b[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	*out = b;
	*len = o;
	return 0;
}

static void xattrs_free(struct rootfs_tar_xattr *xa, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(xa[i].name);
		free(xa[i].value);
	}
	free(xa);
}

/* The "xattrs" object: names to base64 values. */
static int get_xattrs(json_t *e, struct rootfs_tar_xattr **out, size_t *n)
{
	json_t *o = json_object_get(e, "xattrs"), *v;
	const char *k;
	*out = NULL;
	*n = 0;
	if (!o)
		return 0;
	if (!json_is_object(o) || json_object_size(o) > 1024)
		return -EBADMSG;
	struct rootfs_tar_xattr *xa = calloc(json_object_size(o) + 1, sizeof *xa);
	if (!xa)
		return -ENOMEM;
	int rc = 0;
	json_object_foreach(o, k, v)
	{
		if (!json_is_string(v) || !*k) {
			rc = -EBADMSG;
			break;
		}
		if (!(xa[*n].name = strdup(k))) {
			rc = -ENOMEM;
			break;
		}
		rc = b64_decode(json_string_value(v), &xa[*n].value, &xa[*n].len);
		(*n)++;
		if (rc)
			break;
	}
	if (rc) {
		xattrs_free(xa, *n);
		*n = 0;
		return rc;
	}
	*out = xa;
	return 0;
}

/* Appends a chunk of len bytes at the end of the stream: its compressed
 * bytes start at in and end at in_end when the TOC says (0: unknown; set_ends
 * makes it the next chunk's start at most). */
static int add_chunk(struct rootfs_index *ix, uint64_t toc_end, uint64_t in, uint64_t in_end,
		     uint64_t skip, uint64_t len, const unsigned char sha[32])
{
	if (len > ROOTFS_CHUNK_MAX || skip > ROOTFS_CHUNK_MAX || in >= toc_end)
		return -EBADMSG;
	int rc = rootfs_ix_grow((void **)&ix->ck, &ix->cap_ck, ix->n_ck + 1, sizeof *ix->ck);
	if (rc)
		return rc;
	struct rootfs_ckpt *c = &ix->ck[ix->n_ck++];
	memset(c, 0, sizeof *c);
	c->out = ix->out_size;
	c->in = in;
	c->in_end = in_end;
	c->dict_len = (uint32_t)skip;
	memcpy(c->sha, sha, 32);
	ix->out_size += len;
	return 0;
}

/* One chunk of the current file (its "reg" entry or a "chunk" entry). */
static int on_chunk(struct toc_build *t, json_t *e, int first)
{
	uint64_t coff, csize, off, end, inner;
	unsigned char sha[32];
	int rc = get_u64(e, "chunkOffset", TOC_MAX_FILE, &coff);
	if (!rc)
		rc = get_u64(e, "chunkSize", TOC_MAX_FILE, &csize);
	if (!rc)
		rc = get_u64(e, "offset", t->blob_size, &off);
	if (!rc)
		rc = get_u64(e, "endOffset", t->blob_size, &end);
	if (!rc)
		rc = get_u64(e, "innerOffset", TOC_MAX_FILE, &inner);
	if (rc || coff != t->file_next)
		return -EBADMSG;
	const char *ct = get_str(e, "chunkType");
	int zeros = ct && !strcmp(ct, "zeros"); /* zstd:chunked: a hole */
	if (ct && !zeros && strcmp(ct, "data") != 0) {
		log_warn("rootfs: layer %s: TOC chunks of type %.20s are not supported",
			 t->ix->digest, ct);
		return -ENOTSUP;
	}
	uint64_t rest = t->file_size - t->file_next;
	if (csize == 0)
		csize = rest;
	const char *dg = get_str(e, "chunkDigest");
	if (!dg && first && csize == t->file_size)
		dg = t->file_digest[0] ? t->file_digest : NULL; /* one chunk: the file's */
	if (csize > rest || parse_digest(dg, sha) != 0)
		return -EBADMSG;
	if (first)
		t->file_end = end;
	else if (!end)
		end = t->file_end; /* older zstd:chunked: only the file's end */
	if ((rc = add_chunk(t->ix, t->toc_end, off, end, inner, csize, sha)) == 0)
		t->file_next += csize;
	if (rc == 0 && zeros)
		t->ix->ck[t->ix->n_ck - 1].bits = ROOTFS_CK_ZEROS;
	return rc;
}

static int type_of(const char *s, enum rootfs_type *out)
{
	static const struct {
		const char *name;
		enum rootfs_type type;
	} types[] = {{"reg", ROOTFS_REG},	  {"dir", ROOTFS_DIR},
		     {"symlink", ROOTFS_SYMLINK}, {"hardlink", ROOTFS_HARDLINK},
		     {"char", ROOTFS_CHR},	  {"block", ROOTFS_BLK},
		     {"fifo", ROOTFS_FIFO}};
	for (size_t i = 0; s && i < sizeof types / sizeof types[0]; i++)
		if (!strcmp(s, types[i].name)) {
			*out = types[i].type;
			return 0;
		}
	return -EBADMSG;
}

/* The attributes of entry e into te (names in path/link, xattrs malloc'd). */
static int entry_attrs(json_t *e, struct rootfs_tar_entry *te, struct rootfs_tar_xattr **xa,
		       size_t *nxa)
{
	uint64_t mode, uid, gid, maj, min, size;
	int rc = get_u64(e, "mode", UINT32_MAX, &mode);
	if (!rc)
		rc = get_u64(e, "uid", UINT32_MAX, &uid);
	if (!rc)
		rc = get_u64(e, "gid", UINT32_MAX, &gid);
	if (!rc)
		rc = get_u64(e, "devMajor", UINT32_MAX, &maj);
	if (!rc)
		rc = get_u64(e, "devMinor", UINT32_MAX, &min);
	if (!rc)
		rc = get_u64(e, "size", TOC_MAX_FILE, &size);
	if (!rc)
		rc = parse_time(get_str(e, "modtime"), &te->mtime, &te->nsec);
	if (!rc)
		rc = get_xattrs(e, xa, nxa);
	if (rc)
		return rc;
	te->mode = (uint32_t)mode & 07777;
	te->uid = (uint32_t)uid;
	te->gid = (uint32_t)gid;
	te->major = (uint32_t)maj;
	te->minor = (uint32_t)min;
	te->size = te->type == ROOTFS_REG ? size : 0;
	te->xa = *xa;
	te->n_xa = *nxa;
	return 0;
}

/* The current file's chunks must cover it exactly. */
static int file_end(struct toc_build *t)
{
	int rc = t->file && t->file_next != t->file_size ? -EBADMSG : 0;
	free(t->file);
	t->file = NULL;
	return rc;
}

static int on_entry(void *arg, json_t *e)
{
	struct toc_build *t = arg;
	const char *type = get_str(e, "type"), *name = get_str(e, "name");
	if (!json_is_object(e) || !type || !name)
		return -EBADMSG;
	if (!strcmp(type, "chunk"))
		return t->file && !strcmp(name, t->file) ? on_chunk(t, e, 0) : -EBADMSG;
	int rc = file_end(t);
	struct rootfs_tar_entry te = {0};
	struct rootfs_tar_xattr *xa = NULL;
	size_t nxa = 0;
	char path[ROOTFS_PATH_MAX], link[ROOTFS_PATH_MAX];
	if (rc || (rc = type_of(type, &te.type)) || (rc = entry_attrs(e, &te, &xa, &nxa)))
		return rc;
	const char *ln = get_str(e, "linkName");
	if (rootfs_path_norm(name, path, sizeof path) < 0 ||
	    (te.type == ROOTFS_HARDLINK && (!ln || rootfs_path_norm(ln, link, sizeof link) < 0))) {
		/* as the tar reader does: the entry is skipped */
		log_warn("rootfs: skipping TOC entry \"%.200s\"", name);
		xattrs_free(xa, nxa);
		return 0;
	}
	te.path = path;
	te.link = te.type == ROOTFS_HARDLINK  ? link
		  : te.type == ROOTFS_SYMLINK ? ln ? ln : ""
					      : NULL;
	te.data_off = t->ix->out_size;
	rc = t->ix->n_ents >= TOC_MAX_ENTRIES ? -EFBIG
					      : rootfs_ix_add_entry(t->ix, &te, TOC_MAX_NAMES);
	xattrs_free(xa, nxa);
	if (rc || te.type != ROOTFS_REG || te.size == 0)
		return rc;
	if (!(t->file = strdup(name)))
		return -ENOMEM;
	t->file_size = te.size;
	t->file_next = 0;
	const char *fd = get_str(e, "digest");
	snprintf(t->file_digest, sizeof t->file_digest, "%s", fd && strlen(fd) < 80 ? fd : "");
	return on_chunk(t, e, 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A chunk's bytes end where the next chunk's start (or the TOC), sooner
 * when the TOC gives its end (zstd:chunked "endOffset"; older writers give
 * only the file's); eStargz headers in between are read and ignored. */
static int set_ends(struct toc_build *t)
{
	struct rootfs_index *ix = t->ix;
	uint64_t *ins = malloc((ix->n_ck + 1) * sizeof *ins);
	if (!ins)
		return -ENOMEM;
	for (size_t i = 0; i < ix->n_ck; i++)
		ins[i] = ix->ck[i].in;
	qsort(ins, ix->n_ck, sizeof *ins, cmp_u64);
	size_t n = 0; /* distinct members: chunks with an innerOffset share one */
	for (size_t i = 0; i < ix->n_ck; i++)
		if (n == 0 || ins[n - 1] != ins[i])
			ins[n++] = ins[i];
	int rc = 0;
	for (size_t i = 0; i < ix->n_ck && !rc; i++) {
		struct rootfs_ckpt *c = &ix->ck[i];
		uint64_t *p = bsearch(&c->in, ins, n, sizeof *ins, cmp_u64);
		uint64_t next = p + 1 < ins + n ? p[1] : t->toc_end;
		if (c->in_end && c->in_end < next)
			next = c->in_end;
		c->in_end = next;
		rc = c->in_end > c->in && c->in_end <= t->toc_end ? 0 : -EBADMSG;
	}
	free(ins);
	return rc;
}

int rootfs_toc_index(const char *digest, uint32_t comp, uint64_t blob_size, uint64_t toc_end,
		     const char *json, size_t len, struct rootfs_index **out)
{
	struct toc_build t = {.blob_size = blob_size, .toc_end = toc_end};
	int rc = toc_end <= blob_size ? rootfs_ix_new(digest, &t.ix) : -EBADMSG;
	if (rc == 0) {
		t.ix->comp = comp;
		t.ix->blob_size = blob_size;
		rc = rootfs_toc_each_entry(json, len, on_entry, &t);
	}
	if (rc == 0)
		rc = file_end(&t);
	if (rc == 0)
		rc = set_ends(&t);
	free(t.file);
	if (rc) {
		rootfs_index_free(t.ix);
		return rc;
	}
	*out = t.ix;
	return 0;
}

int rootfs_toc_append(struct rootfs_index *ix, const struct rootfs_tar_entry *e, uint64_t in,
		      uint64_t in_end, uint64_t skip, const unsigned char sha[32])
{
	struct rootfs_tar_entry te = *e;
	te.data_off = ix->out_size;
	int rc = rootfs_ix_add_entry(ix, &te, TOC_MAX_NAMES);
	if (rc == 0 && te.size)
		rc = add_chunk(ix, in_end, in, in_end, skip, te.size, sha);
	if (rc == 0 && te.size)
		ix->ck[ix->n_ck - 1].in_end = in_end;
	return rc;
}
