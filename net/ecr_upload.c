/* Layer upload: BatchCheckLayerAvailability, InitiateLayerUpload,
 * UploadLayerPart (JSON body with base64 built streaming, never as one big
 * string), CompleteLayerUpload. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "net/digest.h"
#include "net/ecr_i.h"
#include "net/log.h"

#define UPLOAD_STALL_MS 30000
/* Uploads have no fixed total: only "no progress for 30 s" ends an attempt;
 * this bound just keeps retries from going on forever. */
#define UPLOAD_DEADLINE_MS (15 * 60 * 1000)

static const char part_suffix[] = "\"}";

/* ---- the streaming body ---- */

/* Appends ,"key":<json string> using jansson's escaping. */
static int append_str(char **buf, size_t *len, const char *key, const char *val)
{
	json_t *s = json_string(val);
	char *enc = s ? json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	char *p;
	int n, rc = -ENOMEM;

	if (!enc)
		goto out;
	n = asprintf(&p, "%s%s\"%s\":%s", *buf ? *buf : "{", *buf ? "," : "", key, enc);
	if (n < 0)
		goto out;
	free(*buf);
	*buf = p;
	*len = (size_t)n;
	rc = 0;
out:
	free(enc);
	json_decref(s);
	return rc;
}

int ecr_part_body_init(struct ecr_part_body *b, const char *registry_id, const char *repository,
		       const char *upload_id, uint64_t first_byte, const void *data, size_t len)
{
	char *p = NULL;
	int n, rc;

	memset(b, 0, sizeof(*b));
	if (!len || !repository || !upload_id)
		return -EINVAL;
	if (registry_id && (rc = append_str(&b->prefix, &b->prefix_len, "registryId", registry_id)))
		goto fail;
	if ((rc = append_str(&b->prefix, &b->prefix_len, "repositoryName", repository)) ||
	    (rc = append_str(&b->prefix, &b->prefix_len, "uploadId", upload_id)))
		goto fail;
	n = asprintf(&p,
		     "%s,\"partFirstByte\":%" PRIu64 ",\"partLastByte\":%" PRIu64
		     ",\"layerPartBlob\":\"",
		     b->prefix, first_byte, first_byte + len - 1);
	if (n < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	free(b->prefix);
	b->prefix = p;
	b->prefix_len = (size_t)n;
	b->data = data;
	b->data_len = len;
	b->b64_len = 4 * ((len + 2) / 3);
	b->total = b->prefix_len + b->b64_len + sizeof(part_suffix) - 1;
	return 0;
fail:
	ecr_part_body_free(b);
	return rc;
}

void ecr_part_body_free(struct ecr_part_body *b)
{
	free(b->prefix);
	b->prefix = NULL;
}

/* Copies base64 characters [pos, pos+n) of the encoded data into dst.
 * Encodes 3-byte-aligned slices with EVP_EncodeBlock, from data or from
 * what raw reads (-EIO when it fails). */
static ssize_t b64_copy(const struct ecr_part_body *b, char *dst, size_t n, size_t pos)
{
	unsigned char tmp[4 * 1024 + 1], in[3 * 1024];
	size_t done = 0;

	while (done < n && pos < b->b64_len) {
		size_t group = pos / 4, skip = pos % 4;
		size_t in_off = group * 3;
		size_t in_len = b->data_len - in_off;
		size_t want = n - done;

		/* Enough input for want (+skip) characters, in whole groups. */
		size_t groups = (want + skip + 3) / 4;
		if (groups > sizeof(tmp) / 4 - 1)
			groups = sizeof(tmp) / 4 - 1;
		if (in_len > groups * 3)
			in_len = groups * 3;
		const unsigned char *src = b->data ? b->data + in_off : in;
		if (!b->data && b->raw(b->raw_arg, in_off, (char *)in, in_len))
			return -EIO;
		int out = EVP_EncodeBlock(tmp, src, (int)in_len);
		size_t avail = (size_t)out - skip;
		if (avail > want)
			avail = want;
		memcpy(dst + done, tmp + skip, avail);
		done += avail;
		pos += avail;
	}
	return (ssize_t)done;
}

ssize_t ecr_part_body_read(void *arg, char *dst, size_t n, uint64_t off)
{
	const struct ecr_part_body *b = arg;
	size_t done = 0;

	if (off >= b->total)
		return 0;
	while (done < n && off < b->total) {
		size_t k;
		if (off < b->prefix_len) {
			k = b->prefix_len - (size_t)off;
			if (k > n - done)
				k = n - done;
			memcpy(dst + done, b->prefix + off, k);
		} else if (off < b->prefix_len + b->b64_len) {
			ssize_t r = b64_copy(b, dst + done, n - done, (size_t)off - b->prefix_len);
			if (r <= 0)
				return r < 0 ? r : -EIO;
			k = (size_t)r;
		} else {
			size_t s = (size_t)off - b->prefix_len - b->b64_len;
			k = sizeof(part_suffix) - 1 - s;
			if (k > n - done)
				k = n - done;
			memcpy(dst + done, part_suffix + s, k);
		}
		done += k;
		off += k;
	}
	return (ssize_t)done;
}

int ecr_part_body_hash(struct ecr_part_body *b, char hex[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[32];
	char *buf = malloc(64 * 1024);
	uint64_t off = 0;
	int rc = -ENOMEM;

	if (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		goto out;
	while (off < b->total) {
		ssize_t got = ecr_part_body_read(b, buf, 64 * 1024, off);
		if (got <= 0) {
			rc = -EIO;
			goto out;
		}
		EVP_DigestUpdate(md, buf, (size_t)got);
		off += (uint64_t)got;
	}
	EVP_DigestFinal_ex(md, h, NULL);
	net_hex(h, 32, hex);
	rc = 0;
out:
	free(buf);
	EVP_MD_CTX_free(md);
	return rc;
}

/* ---- the calls ---- */

struct check_reply {
	const char *const *digests; /* the batch's */
	size_t n;
	int *available;
};

/* Marks the digests a BatchCheckLayerAvailability reply says AVAILABLE. */
static int check_reply(const json_t *resp, void *arg)
{
	const struct check_reply *r = arg;
	const json_t *l;
	size_t k;

	json_array_foreach(json_object_get(resp, "layers"), k, l)
	{
		const char *d = ecr_json_str(l, "layerDigest");
		const char *av = ecr_json_str(l, "layerAvailability");
		if (!d || !av || strcmp(av, "AVAILABLE") != 0)
			continue;
		for (size_t q = 0; q < r->n; q++)
			if (strcmp(r->digests[q], d) == 0)
				r->available[q] = 1;
	}
	return 0;
}

int ecr_batch_check_layers(ecr *e, const struct ecr_where *w, const char *const *digests, size_t n,
			   int *available, struct ecr_error *err)
{
	struct ecr_call c = {.op = "BatchCheckLayerAvailability", .region = w->region, .w = w};
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		available[i] = 0;
	for (size_t i = 0; i < n; i += ECR_BATCH_MAX) {
		size_t m = n - i < ECR_BATCH_MAX ? n - i : ECR_BATCH_MAX;
		struct check_reply r = {.digests = digests + i, .n = m, .available = available + i};
		json_t *arr = json_array();

		c.req = json_object();
		if (!arr || !c.req || ecr_json_where(c.req, w)) {
			json_decref(arr);
			rc = -ENOMEM;
			goto out;
		}
		for (size_t k = 0; k < m; k++)
			json_array_append_new(arr, json_string(digests[i + k]));
		json_object_set_new(c.req, "layerDigests", arr);
		c.subject = digests[i];
		rc = ecr_call_parse(e, &c, check_reply, &r, err);
		if (rc)
			goto out;
	}
out:
	json_decref(c.req);
	return rc;
}

int ecr_initiate_layer_upload(ecr *e, const struct ecr_where *w, char **upload_id_out,
			      int64_t *part_size_out, struct ecr_error *err)
{
	struct ecr_call c = {.op = "InitiateLayerUpload", .region = w->region, .w = w};
	json_t *j;
	int rc;

	*upload_id_out = NULL;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		json_decref(c.req);
		return -ENOMEM;
	}
	rc = ecr_call_string(e, &c, "uploadId", upload_id_out, &j, err);
	if (rc == 0 && part_size_out)
		*part_size_out = ecr_json_int(j, "partSize", 0);
	json_decref(j);
	return rc;
}

/* Sends an UploadLayerPart body of total bytes read by body_cb, whose sha256
 * is hash, for the part [first_byte, first_byte + len). */
static int send_part(ecr *e, const struct ecr_where *w, const char *upload_id,
		     uint64_t first_byte, size_t len, net_body_cb body_cb, void *body_arg,
		     size_t total, const char *hash, int64_t *last_valid_byte,
		     struct ecr_error *err)
{
	static const char *const expected[] = {"InvalidLayerPartException",
					       "UploadNotFoundException", NULL};
	struct ecr_call c = {.op = "UploadLayerPart",
			     .region = w->region,
			     .w = w,
			     .subject = upload_id,
			     .expected = expected};
	struct ecr_error eb, *er = err ? err : &eb;
	json_t *j = NULL;
	int rc;

	if (last_valid_byte)
		*last_valid_byte = -1;
	c.body_cb = body_cb;
	c.body_arg = body_arg;
	c.body_len = total;
	c.payload_hash = hash;
	c.stall_ms = UPLOAD_STALL_MS;
	c.deadline_ms = UPLOAD_DEADLINE_MS;
	rc = ecr_call(e, &c, &j, er);
	if (rc == -ERANGE) {
		int64_t lv = ecr_json_int(j, "lastValidByteReceived", -1);
		if (last_valid_byte)
			*last_valid_byte = lv;
		if (lv == (int64_t)(first_byte + len - 1)) {
			/* The part was stored but its reply got lost (our retry
			 * saw the upload already past it): that is success. */
			log_info("ecr UploadLayerPart: bytes %" PRIu64 "-%" PRIu64
				 " of upload %s already stored",
				 first_byte, first_byte + len - 1, upload_id);
			rc = 0;
		} else {
			log_info("ecr UploadLayerPart: repository '%s' upload %s expects byte "
				 "%" PRId64 ", not %" PRIu64 "; resuming there",
				 w->repository, upload_id, lv + 1, first_byte);
		}
	} else if (rc == -ENOENT && strcmp(er->code, "UploadNotFoundException") == 0) {
		log_info("ecr UploadLayerPart: upload %s of repository '%s' is gone; the upload "
			 "restarts",
			 upload_id, w->repository);
	} else if (rc == 0 && last_valid_byte) {
		*last_valid_byte = ecr_json_int(j, "lastByteReceived", -1);
	}
	json_decref(j);
	return rc;
}

int ecr_upload_layer_part(ecr *e, const struct ecr_where *w, const char *upload_id,
			  uint64_t first_byte, const void *data, size_t len,
			  int64_t *last_valid_byte, struct ecr_error *err)
{
	struct ecr_part_body b;
	char hash[65];
	int rc;

	if (last_valid_byte)
		*last_valid_byte = -1;
	rc =
	    ecr_part_body_init(&b, w->registry_id, w->repository, upload_id, first_byte, data, len);
	if (rc)
		return rc;
	rc = ecr_part_body_hash(&b, hash);
	if (rc == 0)
		rc = send_part(e, w, upload_id, first_byte, len, ecr_part_body_read, &b, b.total,
			       hash, last_valid_byte, err);
	ecr_part_body_free(&b);
	return rc;
}

/* ---- a part's body built once, in place ---- */

#define PART_PREFIX_ROOM 4096u	     /* the JSON before the base64, at most */
#define PART_BLOCK (3u * 16384)	     /* input bytes encoded at a time */
#define PART_SLACK (PART_BLOCK + 64) /* keeps the output behind the input */

size_t ecr_part_room(size_t len)
{
	return PART_PREFIX_ROOM + 4 * ((len + 2) / 3) + sizeof(part_suffix) + PART_SLACK;
}

/* The body of a built part: from buf while the caller lends it, else
 * encoded again from the part's raw bytes. */
struct built_body {
	struct ecr_part_built *b;
	const char *buf;
	size_t len; /* the part's raw bytes */
};

static ssize_t built_body_read(void *arg, char *dst, size_t n, uint64_t off)
{
	struct built_body *bb = arg;
	struct ecr_part_built *b = bb->b;

	if (off >= b->total)
		return 0;
	if (n > b->total - off)
		n = (size_t)(b->total - off);
	if (!b->released) {
		memcpy(dst, bb->buf + off, n);
		if (off + n == b->total && b->release) {
			b->released = 1; /* curl holds the last bytes now */
			b->release(b->arg);
		}
		return (ssize_t)n;
	}
	/* The buffer is someone else's now: the streaming form over raw. */
	struct ecr_part_body sb = {.prefix = b->prefix, .prefix_len = b->prefix_len,
				   .raw = b->raw, .raw_arg = b->arg, .data_len = bb->len,
				   .b64_len = 4 * ((bb->len + 2) / 3), .total = b->total};
	return ecr_part_body_read(&sb, dst, n, off);
}

void ecr_part_built_free(struct ecr_part_built *b)
{
	free(b->prefix);
	b->prefix = NULL;
}

/* The body of b in buf, whose last len bytes are the part: the prefix,
 * then each block's base64 written where the part's bytes already read
 * were (with PART_SLACK, the output [0, P + 4(i+k)/3) never reaches the
 * input still unread at cap - len + i), hashed while it is hot. */
static int build_in_place(const struct ecr_part_body *b, char *buf, size_t cap, size_t len,
			  size_t *total, char hex[65])
{
	const unsigned char *in = (const unsigned char *)buf + cap - len;
	unsigned char *out = (unsigned char *)buf, h[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t o = b->prefix_len;

	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	memcpy(out, b->prefix, o);
	EVP_DigestUpdate(md, out, o);
	for (size_t i = 0; i < len; i += PART_BLOCK) {
		size_t k = len - i < PART_BLOCK ? len - i : PART_BLOCK;
		int n = EVP_EncodeBlock(out + o, in + i, (int)k);
		EVP_DigestUpdate(md, out + o, (size_t)n);
		o += (size_t)n;
	}
	memcpy(out + o, part_suffix, sizeof(part_suffix) - 1);
	EVP_DigestUpdate(md, out + o, sizeof(part_suffix) - 1);
	o += sizeof(part_suffix) - 1;
	EVP_DigestFinal_ex(md, h, NULL);
	EVP_MD_CTX_free(md);
	net_hex(h, 32, hex);
	*total = o;
	return 0;
}

int ecr_upload_layer_part_in(ecr *e, const struct ecr_where *w, const char *upload_id,
			     uint64_t first_byte, char *buf, size_t cap, size_t len,
			     struct ecr_part_built *built, int64_t *last_valid_byte,
			     struct ecr_error *err)
{
	struct ecr_part_body b;
	struct built_body bb = {.b = built, .buf = buf, .len = len};
	int rc;

	if (cap < ecr_part_room(len))
		return -EINVAL;
	if (!built->done) {
		rc = ecr_part_body_init(&b, w->registry_id, w->repository, upload_id, first_byte,
					buf + cap - len, len);
		if (rc)
			return rc;
		if (b.prefix_len > PART_PREFIX_ROOM) {
			/* Names longer than ECR allows: the streaming form. */
			ecr_part_body_free(&b);
			return ecr_upload_layer_part(e, w, upload_id, first_byte,
						     buf + cap - len, len, last_valid_byte, err);
		}
		if (!built->raw)
			built->release = NULL; /* no rebuild possible: keep buf */
		rc = build_in_place(&b, buf, cap, len, &built->total, built->hash);
		if (rc == 0 && built->release) {
			built->prefix = b.prefix; /* kept for a rebuild */
			built->prefix_len = b.prefix_len;
			b.prefix = NULL;
		}
		ecr_part_body_free(&b);
		if (rc)
			return rc;
		built->done = 1;
	}
	return send_part(e, w, upload_id, first_byte, len, built_body_read, &bb, built->total,
			 built->hash, last_valid_byte, err);
}

int ecr_complete_layer_upload(ecr *e, const struct ecr_where *w, const char *upload_id,
			      const char *digest, struct ecr_error *err)
{
	struct ecr_call c = {
	    .op = "CompleteLayerUpload", .region = w->region, .w = w, .subject = digest};
	json_t *arr;
	int rc;

	c.req = json_object();
	arr = json_array();
	if (!c.req || !arr || ecr_json_where(c.req, w)) {
		json_decref(arr);
		rc = -ENOMEM;
		goto out;
	}
	json_array_append_new(arr, json_string(digest));
	json_object_set_new(c.req, "uploadId", json_string(upload_id));
	json_object_set_new(c.req, "layerDigests", arr);
	c.stall_ms = UPLOAD_STALL_MS;
	c.deadline_ms = UPLOAD_DEADLINE_MS / 5;
	/* LayerAlreadyExists maps to 0 (ecr_errno). */
	rc = ecr_call(e, &c, NULL, err);
out:
	json_decref(c.req);
	return rc;
}
