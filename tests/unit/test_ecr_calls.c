/* The ECR call path against a fake transport: the streaming UploadLayerPart
 * body (decoded and compared; its sha256 is the payload hash that gets
 * signed), pagination and batching (exact calls), the retry policy, error
 * mapping of replies, ranged fetch checks, endpoints and URL expiry. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "check.h"
#include "fake_ecr.h"
#include "net/aws_sign.h"
#include "net/ecr_i.h"
#include "net/log.h"

/* ---- the streaming upload body ---- */

static void check_body(size_t len)
{
	unsigned char *data = malloc(len);
	struct ecr_part_body b;
	char hex[65];

	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 8) * 7 + 3);
	CHECK_INT(ecr_part_body_init(&b, "111111111111", "team/app\"x", "up-1", 5242880, data, len),
		  0);
	/* Independently: the whole JSON with the base64 of the whole part. */
	size_t b64len = 4 * ((len + 2) / 3);
	unsigned char *b64 = malloc(b64len + 1);
	EVP_EncodeBlock(b64, data, (int)len);
	char *expected = NULL;
	int n = asprintf(&expected,
			 "{\"registryId\":\"111111111111\",\"repositoryName\":\"team/app\\\"x\","
			 "\"uploadId\":\"up-1\",\"partFirstByte\":5242880,\"partLastByte\":%zu,"
			 "\"layerPartBlob\":\"%s\"}",
			 (size_t)5242880 + len - 1, (char *)b64);
	CHECK(n > 0);
	CHECK_INT(b.total, strlen(expected));

	/* Read in every chunk size pattern, from 0 and from odd offsets. */
	char *got = calloc(1, b.total + 1);
	static const size_t chunks[] = {1, 2, 3, 5, 7, 4095, 4096, 4097, 65536, 1 << 22};
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		size_t off = 0;
		memset(got, 0, b.total + 1);
		while (off < b.total) {
			ssize_t r = ecr_part_body_read(&b, got + off, chunks[c], off);
			if (r <= 0)
				break;
			off += (size_t)r;
		}
		CHECK_INT(off, b.total);
		if (memcmp(got, expected, b.total) != 0) {
			fprintf(stderr, "body mismatch for len %zu chunk %zu\n", len, chunks[c]);
			test_failures++;
		}
	}
	/* Reads starting in the middle of a base64 group. */
	for (size_t start = b.prefix_len; start < b.prefix_len + 9 && start < b.total; start++) {
		char small[6];
		ssize_t r = ecr_part_body_read(&b, small, sizeof(small), start);
		CHECK(r > 0 && memcmp(small, expected + start, (size_t)r) == 0);
	}
	/* It is the JSON ECR expects: the blob decodes to the part. */
	json_t *j = json_loads(got, 0, NULL);
	CHECK(j != NULL);
	const char *blob = ecr_json_str(j, "layerPartBlob");
	CHECK(blob != NULL);
	if (blob) {
		unsigned char *dec = malloc(strlen(blob) + 3);
		int dl = EVP_DecodeBlock(dec, (const unsigned char *)blob, (int)strlen(blob));
		/* EVP_DecodeBlock counts the '=' padding as zero bytes. */
		dl -= (len % 3) ? (int)(3 - len % 3) : 0;
		CHECK_INT(dl, len);
		CHECK(dl == (int)len && memcmp(dec, data, len) == 0);
		free(dec);
	}
	CHECK_INT(ecr_json_int(j, "partLastByte", -1), 5242880 + (int64_t)len - 1);
	CHECK_STR(ecr_json_str(j, "repositoryName"), "team/app\"x");
	json_decref(j);

	/* The hash pass equals the sha256 of the body. */
	unsigned char h[32];
	char want[65];
	SHA256((unsigned char *)expected, strlen(expected), h);
	for (int k = 0; k < 32; k++)
		sprintf(want + 2 * k, "%02x", h[k]);
	CHECK_INT(ecr_part_body_hash(&b, hex), 0);
	CHECK_STR(hex, want);

	free(got);
	free(expected);
	free(b64);
	free(data);
	ecr_part_body_free(&b);
}

static void test_part_body(void)
{
	static const size_t lens[] = {
	    1, 2, 3, 4, 5, 6, 7, 1000, 3071, 3072, 3073, 3 * 4096 + 1, 1048576 + 2};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		check_body(lens[i]);
	/* Own registry: no registryId key. */
	struct ecr_part_body b;
	char c = 'x';
	CHECK_INT(ecr_part_body_init(&b, NULL, "r", "u", 0, &c, 1), 0);
	CHECK(strncmp(b.prefix, "{\"repositoryName\":\"r\",", 22) == 0);
	ecr_part_body_free(&b);
	CHECK_INT(ecr_part_body_init(&b, NULL, "r", "u", 0, &c, 0), -EINVAL);
}

/* ---- UploadLayerPart through the call path ---- */

static int reply_part(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	int mode = *(int *)f->ctx;
	int64_t last = ecr_json_int(req, "partLastByte", -1);

	if (mode == 0) {
		*status = 200;
		return asprintf(body, "{\"uploadId\":\"u\",\"lastByteReceived\":%lld}",
				(long long)last) < 0;
	}
	*status = 400;
	return asprintf(body,
			"{\"__type\":\"InvalidLayerPartException\",\"message\":\"The layer part "
			"is out of order\",\"lastValidByteReceived\":%lld}",
			(long long)(mode == 1 ? 10485759 : last)) < 0;
}

static void test_upload_part(void)
{
	struct fake f = {0};
	size_t len = 7 * 1024 * 1024 + 5;
	unsigned char *data = malloc(len);
	struct ecr_where w = {.region = "us-east-1", .repository = "app"};
	int64_t lv = 0;
	int mode = 0;
	ecr *e;

	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(i ^ (i >> 11));
	f.reply = reply_part;
	f.ctx = &mode;
	e = new_ecr(&f);

	CHECK_INT(ecr_upload_layer_part(e, &w, "u", 20971520, data, len, &lv, NULL), 0);
	CHECK_INT(lv, 20971520 + (int64_t)len - 1);
	CHECK_INT(f.ncalls, 1);
	CHECK_INT(f.hash_mismatch, 0);
	CHECK_STR(f.targets[0], "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart");
	CHECK_INT(ecr_json_int(f.bodies[0], "partFirstByte", -1), 20971520);
	/* base64 is 4/3 of the part: the body is never several times it. */
	CHECK(f.max_body < len * 4 / 3 + 512);

	/* Out of order: -ERANGE with where ECR stands. */
	mode = 1;
	CHECK_INT(ecr_upload_layer_part(e, &w, "u", 20971520, data, len, &lv, NULL), -ERANGE);
	CHECK_INT(lv, 10485759);
	/* A part ECR already has (its reply was lost): success. */
	mode = 2;
	CHECK_INT(ecr_upload_layer_part(e, &w, "u", 20971520, data, len, &lv, NULL), 0);
	CHECK_INT(f.hash_mismatch, 0);

	char *stats = ecr_stats_json(e);
	CHECK_CONTAINS(stats, "\"UploadLayerPart\":3");
	free(stats);
	ecr_free(e);
	fake_reset(&f);
	free(data);
}

/* The body built in place carries the part's bytes (base64 decoded back),
 * is signed with its own hash, and is sent again as is after a refusal. */
/* A lender of the part buffer: the release poisons it (as the pool's next
 * user would overwrite it); raw gives the part's bytes back. */
struct lend {
	char *buf;
	size_t cap;
	const unsigned char *data;
	int released;
};

static void lend_release(void *arg)
{
	struct lend *l = arg;
	memset(l->buf, 0xAA, l->cap);
	l->released++;
}

static int lend_raw(void *arg, uint64_t off, char *dst, size_t n)
{
	struct lend *l = arg;
	memcpy(dst, l->data + off, n);
	return 0;
}

static void upload_part_in_len(size_t len, int lent)
{
	struct fake f = {0};
	size_t cap = ecr_part_room(len);
	char *buf = malloc(cap);
	unsigned char *data = malloc(len), *dec = malloc(len + 3);
	struct ecr_where w = {.region = "us-east-1", .repository = "team/app"};
	struct lend l = {.buf = buf, .cap = cap, .data = data};
	struct ecr_part_built built = {0};
	int64_t lv = 0;
	int mode = 0;
	ecr *e;

	if (lent) {
		built.release = lend_release;
		built.raw = lend_raw;
		built.arg = &l;
	}

	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(i * 7 ^ (i >> 9));
	memcpy(buf + cap - len, data, len);
	f.reply = reply_part;
	f.ctx = &mode;
	e = new_ecr(&f);

	CHECK_INT(ecr_upload_layer_part_in(e, &w, "u", 5242880, buf, cap - 1, len, &built, &lv,
					   NULL), -EINVAL);
	CHECK_INT(built.done, 0);
	CHECK_INT(ecr_upload_layer_part_in(e, &w, "u", 5242880, buf, cap, len, &built, &lv, NULL),
		  0);
	CHECK_INT(built.done, 1);
	CHECK_INT(lv, 5242880 + (int64_t)len - 1);
	CHECK_INT(f.hash_mismatch, 0);
	CHECK_INT(ecr_json_int(f.bodies[0], "partFirstByte", -1), 5242880);
	CHECK_INT(ecr_json_int(f.bodies[0], "partLastByte", -1), 5242880 + (int64_t)len - 1);
	CHECK_STR(ecr_json_str(f.bodies[0], "repositoryName"), "team/app");
	const char *b64 = ecr_json_str(f.bodies[0], "layerPartBlob");
	CHECK(b64 && strlen(b64) == 4 * ((len + 2) / 3));
	int n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)strlen(b64));
	size_t pad = len % 3 ? 3 - len % 3 : 0;
	CHECK_INT(n, (int)(len + pad));
	CHECK(memcmp(dec, data, len) == 0);
	/* Lent: the buffer went back once the body was sent, not before. */
	CHECK_INT(l.released, lent ? 1 : 0);

	/* Refused: the same body goes again, still matching its hash (lent:
	 * encoded again from raw, the buffer being someone else's now). */
	mode = 1;
	CHECK_INT(ecr_upload_layer_part_in(e, &w, "u", 5242880, buf, cap, len, &built, &lv, NULL),
		  -ERANGE);
	CHECK_INT(f.ncalls, 2);
	CHECK_INT(f.hash_mismatch, 0);
	CHECK_STR(ecr_json_str(f.bodies[1], "layerPartBlob"), b64);
	CHECK_INT(l.released, lent ? 1 : 0);
	ecr_part_built_free(&built);
	ecr_free(e);
	fake_reset(&f);
	free(buf);
	free(data);
	free(dec);
}

static void test_upload_part_in(void)
{
	for (int lent = 0; lent < 2; lent++) {
		upload_part_in_len(3 * 400000, lent);	      /* no padding */
		upload_part_in_len(5 * 1024 * 1024 + 1, lent); /* "==" */
		upload_part_in_len(1, lent);
		upload_part_in_len(10 * 1024 * 1024, lent);	/* a full part: "=" */
	}
}

/* ---- pagination and batching ---- */

struct pager {
	int total; /* images in the fake repository */
	int page;  /* per page */
};

static int reply_pages(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	struct pager *p = f->ctx;
	const char *tok = ecr_json_str(req, "nextToken");
	int start = tok ? atoi(tok + 4) : 0;
	json_t *r = json_object(), *arr = json_array();

	for (int k = start; k < start + p->page && k < p->total; k++) {
		char d[80], t[32];
		snprintf(d, sizeof(d), "sha256:%064d", k);
		snprintf(t, sizeof(t), "t%05d", k);
		json_array_append_new(arr, json_pack("{s:s,s:[s],s:i,s:f}", "imageDigest", d,
						     "imageTags", t, "imageSizeInBytes", k,
						     "imagePushedAt", 1700000000.5));
	}
	json_object_set_new(r, "imageDetails", arr);
	if (start + p->page < p->total) {
		char n[32];
		snprintf(n, sizeof(n), "tok-%d", start + p->page);
		json_object_set_new(r, "nextToken", json_string(n));
	}
	*status = 200;
	*body = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return 0;
}

static void test_pagination(void)
{
	struct fake f = {0};
	struct pager p = {.total = 2500, .page = 1000};
	struct ecr_where w = {
	    .registry_id = "111111111111", .region = "us-east-1", .repository = "app"};
	struct ecr_image_list l;
	ecr *e;

	f.reply = reply_pages;
	f.ctx = &p;
	e = new_ecr(&f);
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, NULL), 0);
	CHECK_INT(l.n, 2500);
	CHECK_INT(f.ncalls, 3);
	CHECK_INT(ecr_json_int(f.bodies[0], "maxResults", 0), 1000);
	CHECK(json_object_get(f.bodies[0], "nextToken") == NULL);
	/* Archived images are listed too (ECR's default filter is ACTIVE). */
	CHECK_STR(ecr_json_str(json_object_get(f.bodies[0], "filter"), "imageStatus"), "ANY");
	CHECK_STR(ecr_json_str(f.bodies[1], "nextToken"), "tok-1000");
	CHECK_STR(ecr_json_str(f.bodies[2], "nextToken"), "tok-2000");
	CHECK_STR(ecr_json_str(f.bodies[0], "registryId"), "111111111111");
	CHECK_STR(l.v[2499].tags[0], "t02499");
	CHECK_INT(l.v[1234].size, 1234);
	ecr_image_list_free(&l);
	fake_reset(&f);

	/* Tiny pages (a server that ignores maxResults): still all, in order. */
	p = (struct pager){.total = 7, .page = 2};
	f.reply = reply_pages;
	f.ctx = &p;
	e->transport_arg = &f;
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, NULL), 0);
	CHECK_INT(l.n, 7);
	CHECK_INT(f.ncalls, 4);
	for (size_t k = 0; k < l.n; k++) {
		char t[32];
		snprintf(t, sizeof(t), "t%05zu", k);
		CHECK_STR(l.v[k].tags[0], t);
	}
	ecr_image_list_free(&l);
	fake_reset(&f);
	ecr_free(e);
}

static int reply_batch(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	const json_t *ids = json_object_get(req, "imageIds");
	json_t *r = json_object(), *imgs = json_array();
	size_t k;
	json_t *id;

	json_array_foreach(ids, k, id)
	{
		char m[64];
		snprintf(m, sizeof(m), "{\"n\":\"%s\"}", ecr_json_str(id, "imageTag"));
		json_array_append_new(imgs,
				      json_pack("{s:O,s:s,s:s}", "imageId", id, "imageManifest", m,
						"imageManifestMediaType", "x"));
	}
	json_object_set_new(r, "images", imgs);
	json_object_set_new(r, "failures", json_array());
	*status = 200;
	*body = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return 0;
}

/* net/http refuses replies over its size cap: more than 30 ids here. */
static int reply_batch_capped(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	if (json_array_size(json_object_get(req, "imageIds")) > 30)
		return -EFBIG;
	return reply_batch(f, i, req, status, body);
}

static void test_batching(void)
{
	struct fake f = {0};
	struct ecr_where w = {.region = "us-east-1", .repository = "app"};
	struct ecr_image_id ids[250];
	char tags[250][16];
	struct ecr_manifest_list l;
	ecr *e;

	for (int i = 0; i < 250; i++) {
		snprintf(tags[i], sizeof(tags[i]), "v%d", i);
		ids[i] = (struct ecr_image_id){.tag = tags[i]};
	}
	f.reply = reply_batch;
	e = new_ecr(&f);
	CHECK_INT(ecr_batch_get_image(e, &w, ids, 250, &l, NULL), 0);
	CHECK_INT(f.ncalls, 3);
	CHECK_INT(json_array_size(json_object_get(f.bodies[0], "imageIds")), 100);
	CHECK_INT(json_array_size(json_object_get(f.bodies[1], "imageIds")), 100);
	CHECK_INT(json_array_size(json_object_get(f.bodies[2], "imageIds")), 50);
	CHECK_INT(json_array_size(json_object_get(f.bodies[0], "acceptedMediaTypes")), 6);
	CHECK_INT(l.n, 250);
	CHECK_STR(l.v[249].bytes, "{\"n\":\"v249\"}");
	ecr_manifest_list_free(&l);
	fake_reset(&f);

	/* Too big a reply: asked again in halves (100 -> 50 -> 25). */
	f.reply = reply_batch_capped;
	e->transport_arg = &f;
	CHECK_INT(ecr_batch_get_image(e, &w, ids, 100, &l, NULL), 0);
	CHECK_INT(l.n, 100);
	CHECK_INT(f.ncalls, 7);
	for (size_t k = 0; k < l.n && k < 100; k++)
		CHECK_STR(l.v[k].tag, tags[k]);
	ecr_manifest_list_free(&l);
	ecr_free(e);
	fake_reset(&f);
}

/* DescribeImages by id: ECR fails the whole call when one id is missing. */
static int reply_describe_ids(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	const json_t *ids = json_object_get(req, "imageIds");
	json_t *r = json_object(), *arr = json_array(), *id;
	size_t k;

	CHECK(json_object_get(req, "maxResults") == NULL);
	json_array_foreach(ids, k, id)
	{
		const char *t = ecr_json_str(id, "imageTag");
		if (t && strncmp(t, "missing", 7) == 0) {
			json_decref(r);
			json_decref(arr);
			*status = 400;
			*body = strdup(
			    "{\"__type\":\"ImageNotFoundException\",\"message\":"
			    "\"The image with imageId {imageTag:'missing'} does not exist\"}");
			return 0;
		}
		json_array_append_new(
		    arr, json_pack("{s:s,s:[s]}", "imageDigest", "sha256:d", "imageTags", t));
	}
	json_object_set_new(r, "imageDetails", arr);
	*status = 200;
	*body = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return 0;
}

static void test_describe_ids(void)
{
	struct fake f = {0};
	struct ecr_where w = {.region = "us-east-1", .repository = "app"};
	struct ecr_image_id ids[] = {{.tag = "a"}, {.tag = "missing1"}, {.tag = "b"}};
	struct ecr_image_list l;
	ecr *e;

	f.reply = reply_describe_ids;
	e = new_ecr(&f);
	CHECK_INT(ecr_describe_images(e, &w, ids, 3, &l, NULL), 0);
	CHECK_INT(l.n, 2);
	CHECK_INT(f.ncalls, 4); /* the batch, then one by one */
	if (l.n == 2) {
		CHECK_STR(l.v[0].tags[0], "a");
		CHECK_STR(l.v[1].tags[0], "b");
	}
	ecr_image_list_free(&l);
	CHECK_INT(ecr_describe_images(e, &w, ids + 1, 1, &l, NULL), -ENOENT);
	CHECK_INT(l.n, 0);
	ecr_free(e);
	fake_reset(&f);
}

static int reply_put(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	*status = 200;
	return asprintf(body, "{\"image\":{\"imageId\":{\"imageDigest\":\"sha256:from-ecr\","
			      "\"imageTag\":\"v1\"}}}") < 0;
}

static void test_put_image_body(void)
{
	/* Exact bytes with escapes and UTF-8 travel as a JSON string and come
	 * out of the request body unchanged. */
	static const char m[] =
	    "{\n  \"schemaVersion\": 2,\t\"a\": \"\\\"\xc3\xa9\xf0\x9f\x98\x80/\"\n}";
	struct fake f = {0};
	struct ecr_where w = {
	    .registry_id = "222222222222", .region = "eu-west-1", .repository = "team/app"};
	char *dg = NULL;
	ecr *e;

	f.reply = reply_put;
	e = new_ecr(&f);
	CHECK_INT(ecr_put_image(e, &w, "v1", m, sizeof(m) - 1,
				"application/vnd.oci.image.manifest.v1+json", "sha256:abc", &dg,
				NULL),
		  0);
	CHECK_STR(dg, "sha256:from-ecr");
	CHECK_STR(f.targets[0], "AmazonEC2ContainerRegistry_V20150921.PutImage");
	const json_t *man = json_object_get(f.bodies[0], "imageManifest");
	CHECK(json_is_string(man) && json_string_length(man) == sizeof(m) - 1 &&
	      memcmp(json_string_value(man), m, sizeof(m) - 1) == 0);
	CHECK_STR(ecr_json_str(f.bodies[0], "imageManifestMediaType"),
		  "application/vnd.oci.image.manifest.v1+json");
	CHECK_STR(ecr_json_str(f.bodies[0], "imageTag"), "v1");
	CHECK_STR(ecr_json_str(f.bodies[0], "imageDigest"), "sha256:abc");
	CHECK_STR(ecr_json_str(f.bodies[0], "registryId"), "222222222222");
	CHECK_STR(ecr_json_str(f.bodies[0], "repositoryName"), "team/app");
	CHECK_INT(f.hash_mismatch, 0);
	free(dg);

	/* Not UTF-8: refused before any call. */
	CHECK_INT(ecr_put_image(e, &w, NULL, "\xff\xfe", 2, NULL, NULL, NULL, NULL), -EINVAL);
	CHECK_INT(f.ncalls, 1);
	ecr_free(e);
	fake_reset(&f);
}

/* ---- errors from replies, retry policy ---- */

static int reply_error(struct fake *f, int i, const json_t *req, long *status, char **body)
{
	*status = 400;
	*body = strdup(f->ctx);
	return 0;
}

static void test_error_replies(void)
{
	struct fake f = {0};
	struct ecr_where w = {.region = "us-east-1", .repository = "nope"};
	struct ecr_error err;
	struct ecr_image_list l;
	int created = 7;
	ecr *e;

	f.reply = reply_error;
	f.ctx = "{\"__type\":\"com.amazonaws.ecr#RepositoryNotFoundException\",\"message\":\"The "
		"repository with name 'nope' does not exist in the registry with id "
		"'111111111111'\"}";
	e = new_ecr(&f);
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, &err), -ENOENT);
	CHECK_STR(err.code, "RepositoryNotFoundException");
	CHECK_INT(err.http_status, 400);
	CHECK_CONTAINS(err.message, "does not exist");

	f.ctx = "{\"__type\":\"RepositoryAlreadyExistsException\",\"message\":\"exists\"}";
	CHECK_INT(ecr_create_repository(e, &w, 0, &created, &err), 0);
	CHECK_INT(created, 0);

	f.ctx = "{\"__type\":\"ImageTagAlreadyExistsException\",\"message\":\"immutable\"}";
	CHECK_INT(ecr_put_image(e, &w, "v1", "{}", 2, "application/vnd.oci.image.manifest.v1+json",
				NULL, NULL, &err),
		  -EEXIST);
	f.ctx = "{\"__type\":\"LimitExceededException\",\"message\":\"quota\"}";
	CHECK_INT(ecr_create_repository(e, &w, 0, NULL, &err), -EDQUOT);
	f.ctx = "{\"__type\":\"ImageAlreadyExistsException\",\"message\":\"same\"}";
	char *dg = NULL;
	CHECK_INT(ecr_put_image(e, &w, "v1", "{}", 2, "x", NULL, &dg, &err), 0);
	/* sha256("{}") */
	CHECK_STR(dg, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
	free(dg);
	f.ctx = "{\"__type\":\"LayerAlreadyExistsException\",\"message\":\"have it\"}";
	CHECK_INT(ecr_complete_layer_upload(e, &w, "u", "sha256:ab", &err), 0);

	/* Throttled to the end: EIO when the attempts ran out, ETIMEDOUT when
	 * net/http stopped early because the deadline passed. */
	f.ctx = "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}";
	f.attempts = ECR_MAX_ATTEMPTS;
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, &err), -EIO);
	CHECK_STR(err.code, "ThrottlingException");
	f.attempts = 3;
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, &err), -ETIMEDOUT);
	f.attempts = 0;

	/* Not JSON at all (a proxy's HTML page) on a 400. */
	f.ctx = "<html>bad gateway</html>";
	CHECK_INT(ecr_describe_images(e, &w, NULL, 0, &l, &err), -EINVAL);
	ecr_free(e);
	fake_reset(&f);
}

struct probe {
	const char *bodies[8];
	long statuses[8];
	int n;
	int results[8];
};

/* Calls the request's retry_cb on scripted replies, then answers 200. */
static int probe_transport(void *arg, const struct net_request *req, struct net_response *resp)
{
	struct probe *p = arg;

	memset(resp, 0, sizeof(*resp));
	for (int i = 0; i < p->n; i++) {
		struct net_buf b = {0};
		net_buf_append(&b, p->bodies[i], strlen(p->bodies[i]));
		p->results[i] = req->retry_cb(req->retry_arg, p->statuses[i], &b);
		net_buf_free(&b);
	}
	resp->status = 200;
	resp->attempts = p->n + 1;
	return net_buf_append(&resp->body, "{}", 2);
}

static void test_retry_policy(void)
{
	struct probe p = {
	    .bodies = {"{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}",
		       "{\"__type\":\"TooManyRequestsException\"}",
		       "{\"__type\":\"ServerException\"}", "", "",
		       "{\"__type\":\"RepositoryNotFoundException\"}",
		       "{\"__type\":\"ExpiredTokenException\",\"message\":\"expired\"}",
		       "{\"__type\":\"ExpiredTokenException\",\"message\":\"expired\"}"},
	    .statuses = {400, 400, 500, 503, 429, 400, 403, 403},
	    .n = 8,
	};
	static const int want[8] = {1, 1, 1, 1, 1, 0, 1, 0};
	struct cred_opts co = {0};
	cred_provider *cp = NULL;
	struct ecr_opts o = {.endpoint = "http://127.0.0.1:9"};
	struct ecr_call c = {.op = "ListImages", .region = "us-east-1"};
	ecr *e = NULL;

	CHECK_INT(cred_provider_new(&co, &cp), 0);
	o.creds = cp;
	CHECK_INT(ecr_new(&o, &e), 0);
	e->transport = probe_transport;
	e->transport_arg = &p;
	c.req = json_object();
	CHECK_INT(ecr_call(e, &c, NULL, NULL), 0);
	/* ExpiredToken: credentials invalidated and retried once, not twice. */
	for (int i = 0; i < 8; i++)
		if (p.results[i] != want[i]) {
			fprintf(stderr, "retry_cb(%ld, %s) = %d, expected %d\n", p.statuses[i],
				p.bodies[i], p.results[i], want[i]);
			test_failures++;
		}
	json_decref(c.req);
	ecr_free(e);
	cred_provider_free(cp);
}

/* ---- ranged fetch ---- */

struct range_script {
	long status;
	const char *content_range;
	size_t deliver;
	uint64_t want_start, want_len;
};

static int range_transport(void *arg, const struct net_request *req, struct net_response *resp)
{
	struct range_script *s = arg;
	char buf[4096];

	memset(resp, 0, sizeof(*resp));
	memset(buf, 'z', sizeof(buf));
	s->want_start = req->range_start;
	s->want_len = req->range_len;
	resp->status = s->status;
	if (s->status < 200 || s->status > 299)
		return 0;
	snprintf(resp->content_range, sizeof(resp->content_range), "%s", s->content_range);
	for (size_t done = 0; done < s->deliver;) {
		size_t n = s->deliver - done < 1000 ? s->deliver - done : 1000;
		int rc = req->sink(req->sink_arg, buf, n);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

static int count_sink(void *arg, const char *data, size_t n)
{
	*(size_t *)arg += n;
	return 0;
}

static void test_fetch_range(void)
{
	struct fake f = {0};
	struct range_script s;
	size_t got;
	ecr *e = new_ecr(&f);

	e->transport = range_transport;
	e->transport_arg = &s;

	s = (struct range_script){
	    .status = 206, .content_range = "bytes 100-2099/10000", .deliver = 2000};
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b?X-Amz-Signature=s", 100, 2000, count_sink,
				      &got, NULL),
		  0);
	CHECK_INT(got, 2000);
	CHECK_INT(s.want_start, 100);
	CHECK_INT(s.want_len, 2000);

	/* Short body. */
	s = (struct range_script){
	    .status = 206, .content_range = "bytes 100-2099/10000", .deliver = 1500};
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 100, 2000, count_sink, &got, NULL), -EIO);
	/* Wrong Content-Range: nothing reaches the caller. */
	s = (struct range_script){
	    .status = 206, .content_range = "bytes 0-1999/10000", .deliver = 2000};
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 100, 2000, count_sink, &got, NULL), -EIO);
	CHECK_INT(got, 0);
	/* Range ignored (200 from byte 0) for a read at 100: refused. */
	s = (struct range_script){.status = 200, .content_range = "", .deliver = 10000};
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 100, 2000, count_sink, &got, NULL), -EIO);
	CHECK_INT(got, 0);
	/* ... but fine at 0: the first len bytes are kept. */
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 0, 2000, count_sink, &got, NULL), 0);
	CHECK_INT(got, 2000);
	/* Expired URL. */
	s = (struct range_script){.status = 403, .content_range = "", .deliver = 0};
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 0, 2000, count_sink, &got, NULL),
		  -EKEYEXPIRED);
	/* To the end: complete by Content-Range's total, short otherwise. */
	s = (struct range_script){
	    .status = 206, .content_range = "bytes 9000-9999/10000", .deliver = 1000};
	got = 0;
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 9000, 0, count_sink, &got, NULL), 0);
	CHECK_INT(got, 1000);
	s = (struct range_script){
	    .status = 206, .content_range = "bytes 9000-9999/10000", .deliver = 999};
	CHECK_INT(ecr_fetch_url_range(e, "http://x/b", 9000, 0, count_sink, &got, NULL), -EIO);
	ecr_free(e);
}

/* ---- endpoints, URL expiry ---- */

static void test_endpoints(void)
{
	struct ecr_opts o = {0};
	char buf[256];
	ecr *e;

	unsetenv("AWS_ENDPOINT_URL_ECR");
	unsetenv("AWS_ENDPOINT_URL");
	CHECK_INT(ecr_new(&o, &e), 0);
	CHECK_INT(ecr_endpoint_url(e, "eu-west-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "https://api.ecr.eu-west-1.amazonaws.com");
	CHECK_INT(ecr_endpoint_url(e, "cn-north-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "https://api.ecr.cn-north-1.amazonaws.com.cn");
	ecr_free(e);
	o.fips = 1;
	CHECK_INT(ecr_new(&o, &e), 0);
	CHECK_INT(ecr_endpoint_url(e, "us-gov-west-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "https://ecr-fips.us-gov-west-1.amazonaws.com");
	ecr_free(e);

	o.fips = 0;
	setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
	CHECK_INT(ecr_new(&o, &e), 0);
	CHECK_INT(ecr_endpoint_url(e, "eu-west-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "http://generic:1");
	ecr_free(e);
	setenv("AWS_ENDPOINT_URL_ECR", "http://ecr-only:2/", 1);
	CHECK_INT(ecr_new(&o, &e), 0);
	CHECK_INT(ecr_endpoint_url(e, "eu-west-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "http://ecr-only:2");
	ecr_free(e);
	o.endpoint = "http://option:3";
	CHECK_INT(ecr_new(&o, &e), 0);
	CHECK_INT(ecr_endpoint_url(e, "eu-west-1", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "http://option:3");
	ecr_free(e);
	unsetenv("AWS_ENDPOINT_URL_ECR");
	unsetenv("AWS_ENDPOINT_URL");
}

static void test_url_expiry(void)
{
	/* 2023-11-14T22:13:20Z = 1700000000 */
	time_t t = ecr_url_expiry("https://s3/x?X-Amz-Algorithm=A&X-Amz-Date=20231114T221320Z&"
				  "X-Amz-Expires=3600&X-Amz-Signature=abc",
				  1700000100);
	CHECK_INT(t, 1700000000 + 3600 - 60);
	CHECK_INT(ecr_url_expiry("https://s3/x?X-Amz-Expires=600&X-Amz-Signature=abc", 1000),
		  1000 + 600 - 60);
	CHECK_INT(ecr_url_expiry("https://s3/x?Signature=a&Expires=1700000900", 1700000000),
		  1700000900 - 30);
	CHECK_INT(ecr_url_expiry("https://s3/x", 5000), 5600);
}

int main(void)
{
	log_init(LOG_TO_STDERR, NULL, LOGL_ERR);
	test_part_body();
	test_upload_part();
	test_upload_part_in();
	test_pagination();
	test_batching();
	test_describe_ids();
	test_put_image_body();
	test_error_replies();
	test_retry_policy();
	test_fetch_range();
	test_endpoints();
	test_url_expiry();
	return check_summary("ecr_calls");
}
