/* Building a layer's index from one pass over its blob: the whole stream is
 * hashed (checked against the layer digest at the end), gzip is inflated
 * with Z_BLOCK so that checkpoints fall on deflate block boundaries (the
 * approach of zlib's examples/zran.c), and the tar reader sees the output.
 * Memory: the inflate state, one 32 KiB window, one compressed-window
 * scratch buffer, the tar reader's bounded state, and the index itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/digest.h"
#include "net/log.h"

struct rootfs_build {
	struct rootfs_index *ix;
	struct rootfs_tar *tar;
	struct rootfs_build_opts o;
	enum rootfs_compression comp;
	int err;
	int not_tar; /* its content is no tar: only hashed from then on */
	EVP_MD_CTX *whole, *span;
	uint64_t fed; /* compressed bytes so far */
	uint64_t out; /* uncompressed bytes so far */
	/* gzip */
	z_stream zs;
	int zinit, member_end, trailing;
	unsigned char *win;	/* the last ROOTFS_WINDOW bytes of output, circular */
	unsigned char *scratch; /* a deflated window */
	uint64_t hashed;	/* compressed offset the span hash has reached */
	unsigned char last_byte;
	/* zstd */
	ZSTD_DStream *zd;
	unsigned char *zout;
	size_t zret;	       /* 0 once a frame is complete */
	unsigned char head[4]; /* ROOTFS_COMP_AUTO: bytes before the decision */
	size_t head_len;
};

static int on_tar_entry(void *arg, const struct rootfs_tar_entry *e)
{
	struct rootfs_build *b = arg;
	return rootfs_ix_add_entry(b->ix, e, b->o.max_names);
}

int rootfs_build_new(const char *digest, enum rootfs_compression comp,
		     const struct rootfs_build_opts *opts, struct rootfs_build **out)
{
	struct rootfs_build *b = calloc(1, sizeof(*b));
	int rc = -ENOMEM;
	if (!b)
		return -ENOMEM;
	if (opts)
		b->o = *opts;
	if (!b->o.span_bytes)
		b->o.span_bytes = 1u << 20;
	if (b->o.span_bytes > (64u << 20))
		b->o.span_bytes = 64u << 20;
	if (!b->o.max_out)
		b->o.max_out = 64ull << 30;
	if (!b->o.max_ratio)
		b->o.max_ratio = 1100;
	if (!b->o.max_names)
		b->o.max_names = 512ull << 20;
	b->comp = comp;
	rc = rootfs_ix_new(digest, &b->ix);
	if (rc < 0)
		goto out;
	rc = rootfs_tar_new(on_tar_entry, b, b->o.max_entries, &b->tar);
	if (rc < 0)
		goto out;
	b->whole = EVP_MD_CTX_new();
	b->span = EVP_MD_CTX_new();
	rc = -ENOMEM;
	if (!b->whole || !b->span || !EVP_DigestInit_ex(b->whole, EVP_sha256(), NULL))
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		rootfs_build_free(b);
		b = NULL;
	}
	*out = b;
	return rc;
}

void rootfs_build_free(struct rootfs_build *b)
{
	if (!b)
		return;
	if (b->zinit)
		inflateEnd(&b->zs);
	rootfs_tar_free(b->tar);
	rootfs_index_free(b->ix);
	EVP_MD_CTX_free(b->whole);
	EVP_MD_CTX_free(b->span);
	ZSTD_freeDStream(b->zd);
	free(b->zout);
	free(b->win);
	free(b->scratch);
	free(b);
}

uint64_t rootfs_build_fed(const struct rootfs_build *b) { return b->fed; }

/* Ends the current span (if any) and starts a new checkpoint's span. */
static int ckpt_add(struct rootfs_build *b, uint64_t in, uint32_t bits, uint64_t out)
{
	struct rootfs_index *ix = b->ix;
	int rc = rootfs_ix_grow((void **)&ix->ck, &ix->cap_ck, ix->n_ck + 1, sizeof(*ix->ck));
	if (rc < 0)
		return rc;
	if (ix->n_ck && !EVP_DigestFinal_ex(b->span, ix->ck[ix->n_ck - 1].sha, NULL))
		return -ENOMEM;
	if (!EVP_DigestInit_ex(b->span, EVP_sha256(), NULL))
		return -ENOMEM;
	struct rootfs_ckpt *c = &ix->ck[ix->n_ck++];
	memset(c, 0, sizeof(*c));
	c->out = out;
	c->in = in;
	c->bits = bits;
	b->hashed = in;
	return 0;
}

static int check_caps(struct rootfs_build *b)
{
	const struct rootfs_index *ix = b->ix;
	if (b->comp == ROOTFS_COMP_GZIP && ix->n_ck &&
	    b->out - ix->ck[ix->n_ck - 1].out > ROOTFS_MAX_SPAN_OUT) {
		log_err("rootfs: layer %s has a deflate block of more than 256 MiB; refusing it",
			ix->digest);
		return -EFBIG;
	}
	if (b->out > b->o.max_out ||
	    (b->out > (256ull << 20) && b->out / b->o.max_ratio > b->fed)) {
		log_err("rootfs: layer %s inflates to more than %s; refusing it (gzip bomb?)",
			b->ix->digest, b->out > b->o.max_out ? "the size cap" : "the ratio cap");
		return -EFBIG;
	}
	return 0;
}

/* Plain tar, or zstd's output: a checkpoint every span_bytes of the
 * uncompressed stream, in == out, no window. */
static int raw_out(struct rootfs_build *b, const unsigned char *p, size_t len)
{
	while (len) {
		uint64_t span = b->o.span_bytes;
		int rc = 0;
		if (b->out % span == 0 && b->out / span == b->ix->n_ck)
			rc = ckpt_add(b, b->out, 0, b->out);
		size_t n = span - b->out % span < len ? (size_t)(span - b->out % span) : len;
		if (rc == 0 && !EVP_DigestUpdate(b->span, p, n))
			rc = -ENOMEM;
		if (rc == 0)
			rc = rootfs_tar_feed(b->tar, p, n);
		if (rc < 0)
			return rc;
		b->out += n;
		p += n;
		len -= n;
	}
	return check_caps(b);
}

static int raw_feed(struct rootfs_build *b, const unsigned char *p, size_t len)
{
	b->fed += len;
	return raw_out(b, p, len);
}

static int zstd_init(struct rootfs_build *b)
{
	b->zd = ZSTD_createDStream();
	b->zout = malloc(ZSTD_DStreamOutSize());
	if (!b->zd || !b->zout)
		return -ENOMEM;
	/* Bounds the decoder's memory: 16 MiB of window at most. */
	if (ZSTD_isError(ZSTD_DCtx_setParameter(b->zd, ZSTD_d_windowLogMax, 24)))
		return -ENOMEM;
	b->zret = 1;
	return 0;
}

static int zstd_feed(struct rootfs_build *b, const unsigned char *p, size_t len)
{
	ZSTD_inBuffer in = {p, len, 0};
	int rc = 0;
	if (!b->zd && (rc = zstd_init(b)) < 0)
		return rc;
	b->fed += len;
	for (;;) {
		ZSTD_outBuffer out = {b->zout, ZSTD_DStreamOutSize(), 0};
		size_t r = ZSTD_decompressStream(b->zd, &out, &in);
		if (ZSTD_isError(r)) {
			log_err("rootfs: layer %s is not valid zstd: %s", b->ix->digest,
				ZSTD_getErrorName(r));
			return -EIO;
		}
		b->zret = r;
		if (out.pos && b->o.on_output &&
		    (rc = b->o.on_output(b->o.output_arg, b->zout, out.pos)) != 0)
			return rc < 0 ? rc : -EIO;
		if ((rc = raw_out(b, b->zout, out.pos)) < 0)
			return rc;
		if (in.pos == in.size && out.pos < out.size)
			return 0;
	}
}

/* Stores the window before the checkpoint just added, deflated. */
static int ckpt_window(struct rootfs_build *b)
{
	struct rootfs_index *ix = b->ix;
	struct rootfs_ckpt *c = &ix->ck[ix->n_ck - 1];
	unsigned char *dict = b->scratch + compressBound(ROOTFS_WINDOW);
	size_t have = b->out < ROOTFS_WINDOW ? (size_t)b->out : ROOTFS_WINDOW;
	size_t pos = (size_t)(b->out % ROOTFS_WINDOW);
	if (b->out >= ROOTFS_WINDOW) {
		memcpy(dict, b->win + pos, ROOTFS_WINDOW - pos);
		memcpy(dict + ROOTFS_WINDOW - pos, b->win, pos);
	} else {
		memcpy(dict, b->win, have);
	}
	uLongf clen = compressBound(ROOTFS_WINDOW);
	if (compress2(b->scratch, &clen, dict, have, 6) != Z_OK)
		return -ENOMEM;
	int rc = rootfs_ix_grow((void **)&ix->wins, &ix->cap_wins, ix->n_wins + clen, 1);
	if (rc < 0)
		return rc;
	memcpy(ix->wins + ix->n_wins, b->scratch, clen);
	c->win_off = ix->n_wins;
	c->win_len = (uint32_t)clen;
	c->dict_len = (uint32_t)have;
	ix->n_wins += clen;
	return 0;
}

/* At a block boundary with enough output since the last checkpoint: add one
 * at compressed offset `in`, moving the span hash along. */
static int gz_maybe_ckpt(struct rootfs_build *b, const unsigned char *chunk, uint64_t base)
{
	struct rootfs_index *ix = b->ix;
	if ((b->zs.data_type & 0xc0) != 0x80)
		return 0;
	if (ix->n_ck && b->out - ix->ck[ix->n_ck - 1].out < b->o.span_bytes)
		return 0;
	uint64_t in = base + (uint64_t)(b->zs.next_in - chunk);
	uint32_t bits = (uint32_t)b->zs.data_type & 7;
	if (ix->n_ck && !EVP_DigestUpdate(b->span, chunk + (b->hashed - base), in - b->hashed))
		return -ENOMEM;
	int rc = ckpt_add(b, in, bits, b->out);
	if (rc == 0 && bits) {
		/* The span starts with the byte holding the checkpoint's first bits. */
		const unsigned char *prev =
		    in - 1 >= base ? chunk + (in - 1 - base) : &b->last_byte;
		if (!EVP_DigestUpdate(b->span, prev, 1))
			rc = -ENOMEM;
	}
	return rc ? rc : ckpt_window(b);
}

static int gz_init(struct rootfs_build *b)
{
	b->win = malloc(ROOTFS_WINDOW);
	b->scratch = malloc(compressBound(ROOTFS_WINDOW) + ROOTFS_WINDOW);
	if (!b->win || !b->scratch)
		return -ENOMEM;
	if (inflateInit2(&b->zs, 15 + 16) != Z_OK)
		return -ENOMEM;
	b->zinit = 1;
	return 0;
}

/* Starts the next gzip member, or stops inflating at trailing bytes that
 * are not one (what gzip -d calls trailing garbage). */
static int gz_next_member(struct rootfs_build *b)
{
	if (*b->zs.next_in != 0x1f) {
		log_warn("rootfs: layer %s: %llu bytes after its last gzip member ignored",
			 b->ix->digest, (unsigned long long)b->zs.avail_in);
		b->trailing = 1;
		return 0;
	}
	b->member_end = 0;
	return inflateReset2(&b->zs, 15 + 16) == Z_OK ? 0 : -EIO;
}

static int gz_step(struct rootfs_build *b)
{
	size_t pos = (size_t)(b->out % ROOTFS_WINDOW);
	b->zs.next_out = b->win + pos;
	b->zs.avail_out = ROOTFS_WINDOW - (uInt)pos;
	int ret = inflate(&b->zs, Z_BLOCK);
	size_t n = ROOTFS_WINDOW - pos - b->zs.avail_out;
	if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR || ret == Z_MEM_ERROR ||
	    ret == Z_STREAM_ERROR) {
		log_err("rootfs: layer %s is not valid gzip: %s", b->ix->digest,
			b->zs.msg ? b->zs.msg : "inflate error");
		return -EIO;
	}
	b->out += n;
	int rc = rootfs_tar_feed(b->tar, b->win + pos, n);
	if (rc == 0)
		rc = check_caps(b);
	if (rc == 0 && ret == Z_STREAM_END)
		b->member_end = 1;
	return rc;
}

static int gz_feed(struct rootfs_build *b, const unsigned char *p, size_t len)
{
	uint64_t base = b->fed;
	int rc = 0;
	if (!b->zinit && (rc = gz_init(b)) < 0)
		return rc;
	b->fed += len;
	b->zs.next_in = (unsigned char *)p;
	b->zs.avail_in = (uInt)len;
	while (b->zs.avail_in && !b->trailing) {
		if (b->member_end && (rc = gz_next_member(b)) < 0)
			return rc;
		if (b->trailing)
			break;
		uInt before_in = b->zs.avail_in;
		uint64_t before_out = b->out;
		if ((rc = gz_step(b)) < 0 || (rc = gz_maybe_ckpt(b, p, base)) < 0)
			return rc;
		if (b->zs.avail_in == before_in && b->out == before_out && !b->member_end)
			break; /* no progress: needs more input */
	}
	if (b->ix->n_ck && !EVP_DigestUpdate(b->span, p + (b->hashed - base), b->fed - b->hashed))
		return -ENOMEM;
	b->hashed = b->fed;
	b->last_byte = p[len - 1];
	return 0;
}

static int feed_bytes(struct rootfs_build *b, const unsigned char *p, size_t len)
{
	if (!EVP_DigestUpdate(b->whole, p, len))
		return -ENOMEM;
	int rc = 0;
	/* zlib counts avail_in in uInt. */
	while (len && rc == 0) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		rc = b->comp == ROOTFS_COMP_GZIP   ? gz_feed(b, p, n)
		     : b->comp == ROOTFS_COMP_ZSTD ? zstd_feed(b, p, n)
						   : raw_feed(b, p, n);
		p += n;
		len -= n;
	}
	return rc;
}

/* ROOTFS_COMP_AUTO: the first 4 bytes (or fewer at the end) decide. */
static int detect(struct rootfs_build *b)
{
	const unsigned char *h = b->head;
	b->comp = b->head_len && h[0] == 0x1f				      ? ROOTFS_COMP_GZIP
		  : b->head_len == 4 && memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0 ? ROOTFS_COMP_ZSTD
									      : ROOTFS_COMP_NONE;
	return feed_bytes(b, b->head, b->head_len);
}

int rootfs_build_feed(struct rootfs_build *b, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	if (b->err || len == 0)
		return b->err;
	if (b->comp == ROOTFS_COMP_AUTO) {
		size_t n = 4 - b->head_len < len ? 4 - b->head_len : len;
		memcpy(b->head + b->head_len, p, n);
		b->head_len += n;
		p += n;
		len -= n;
		if (b->head_len < 4)
			return 0;
		if ((b->err = detect(b)) < 0)
			return b->err;
	}
	if (b->not_tar) {
		b->fed += len;
		return EVP_DigestUpdate(b->whole, p, len) ? 0 : (b->err = -ENOMEM);
	}
	b->err = feed_bytes(b, p, len);
	if (b->err == -EMEDIUMTYPE) {
		/* Said only once the whole blob hashed to its digest: a damaged
		 * download is an EIO, not a verdict on the layer. */
		b->not_tar = 1;
		b->err = 0;
	}
	return b->err;
}

static int check_digest(struct rootfs_build *b)
{
	unsigned char md[32];
	char hex[65];
	if (!EVP_DigestFinal_ex(b->whole, md, NULL))
		return -ENOMEM;
	net_hex(md, 32, hex);
	if (strcmp(hex, b->ix->digest + 7) != 0) {
		log_err("rootfs: layer %s hashes to sha256:%s; index not built", b->ix->digest,
			hex);
		return -EIO;
	}
	return 0;
}

int rootfs_build_finish(struct rootfs_build *b, struct rootfs_index **out)
{
	struct rootfs_index *ix = b->ix;
	int rc = b->err;
	*out = NULL;
	if (rc == 0 && b->comp == ROOTFS_COMP_AUTO && (rc = detect(b)) == -EMEDIUMTYPE)
		rc = 0, b->not_tar = 1; /* a blob shorter than 4 bytes */
	if (rc == 0 && !b->not_tar && b->comp == ROOTFS_COMP_GZIP && !b->member_end &&
	    !b->trailing) {
		log_err("rootfs: layer %s: gzip stream truncated", ix->digest);
		rc = -EIO;
	}
	if (rc == 0 && !b->not_tar && b->comp == ROOTFS_COMP_ZSTD && (!b->zd || b->zret != 0)) {
		log_err("rootfs: layer %s: zstd stream truncated", ix->digest);
		rc = -EIO;
	}
	if (rc == 0 && !b->not_tar && (rc = rootfs_tar_finish(b->tar)) == -EMEDIUMTYPE)
		rc = 0, b->not_tar = 1;
	if (rc == 0)
		rc = check_digest(b);
	if (rc == 0 && b->not_tar)
		rc = -EMEDIUMTYPE;
	if (rc == 0 && ix->n_ck && !EVP_DigestFinal_ex(b->span, ix->ck[ix->n_ck - 1].sha, NULL))
		rc = -ENOMEM;
	if (rc < 0) {
		b->err = rc;
		return rc;
	}
	ix->comp = b->comp == ROOTFS_COMP_AUTO ? ROOTFS_COMP_NONE : b->comp;
	ix->blob_size = b->fed;
	ix->out_size = b->out;
	rootfs_ix_shrink(ix);
	b->ix = NULL;
	b->err = -EINVAL; /* finished */
	*out = ix;
	return 0;
}
