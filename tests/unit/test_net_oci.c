/* net/oci.h (media types, the manifest walker) and net/digest.h (hex). */
#include <errno.h>

#include "check.h"
#include "net/digest.h"
#include "net/oci.h"

#define H(c)                                                                                       \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
	    c c c c c c c c c c c c c c c c c c c
#define D(c) "\"sha256:" H(c) "\""

struct seen {
	char text[1024];
	int n;
	int stop_at; /* 1-based; 0: never */
};

static int record(void *arg, const struct oci_desc *d)
{
	struct seen *s = arg;
	size_t l = strlen(s->text);

	snprintf(s->text + l, sizeof(s->text) - l, "%s%d:%.8s:%lld:%d:%s:%s:%d", l ? " " : "",
		 (int)d->list, d->digest + 7, (long long)d->size, d->size_valid,
		 d->media_type ? d->media_type : "-", d->ref_name ? d->ref_name : "-",
		 (int)d->kind);
	return ++s->n == s->stop_at ? -ENOENT : 0;
}

static void test_media_types(void)
{
	size_t n = 0;

	CHECK_INT(oci_media_kind(OCI_MT_MANIFEST), OCI_MANIFEST);
	CHECK_INT(oci_media_kind(OCI_MT_DOCKER_MANIFEST), OCI_MANIFEST);
	CHECK_INT(oci_media_kind(OCI_MT_ARTIFACT), OCI_MANIFEST);
	CHECK_INT(oci_media_kind(OCI_MT_INDEX), OCI_INDEX);
	CHECK_INT(oci_media_kind(OCI_MT_DOCKER_LIST), OCI_INDEX);
	CHECK_INT(oci_media_kind(OCI_MT_DOCKER_V1_SIGNED), OCI_SCHEMA1);
	CHECK_INT(oci_media_kind("application/vnd.oci.image.config.v1+json"), OCI_OTHER);
	CHECK_INT(oci_media_kind(NULL), OCI_OTHER);
	/* What BatchGetImage sends, in this order. */
	const char *ecr[] = {OCI_MT_DOCKER_MANIFEST, OCI_MT_DOCKER_LIST,      OCI_MT_MANIFEST,
			     OCI_MT_INDEX,	     OCI_MT_DOCKER_V1_SIGNED, OCI_MT_DOCKER_V1};
	for (const struct oci_media_type *t = oci_media_types; t->name; t++)
		if (t->ecr_accepted) {
			CHECK(n < 6);
			if (n < 6)
				CHECK_STR(t->name, ecr[n]);
			n++;
		}
	CHECK_INT(n, 6);
}

static void test_walk_manifest(void)
{
	const char *m = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\","
			"\"config\":{\"mediaType\":\"c\",\"digest\":" D(
			    "c") ",\"size\":7},"
				 "\"layers\":[{\"digest\":" D(
				     "a") ",\"size\":100,\"mediaType\":\"l\"},"
					  "{\"digest\":" D("b") "}],"
								"\"blobs\":[{\"digest\":" D(
								    "d") ",\"size\":-1}]}";
	struct seen s = {0};
	enum oci_kind k;
	char *mt = NULL;

	CHECK_INT(oci_walk(m, strlen(m), OCI_LIST_CONFIG | OCI_LIST_LAYERS | OCI_LIST_BLOBS, &k,
			   &mt, record, &s),
		  0);
	CHECK_INT(k, OCI_MANIFEST);
	CHECK_STR(mt, OCI_MT_MANIFEST);
	free(mt);
	CHECK_STR(s.text, "1:cccccccc:7:1:c:-:0 2:aaaaaaaa:100:1:l:-:0 2:bbbbbbbb:0:0:-:-:0 "
			  "4:dddddddd:-1:0:-:-:0");
	/* Only the lists asked for. */
	memset(&s, 0, sizeof(s));
	CHECK_INT(oci_walk(m, strlen(m), OCI_LIST_LAYERS, NULL, NULL, record, &s), 0);
	CHECK_INT(s.n, 2);
	/* A callback's error stops the walk and is returned. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	CHECK_INT(oci_walk(m, strlen(m), OCI_LIST_CONFIG | OCI_LIST_LAYERS, NULL, NULL, record, &s),
		  -ENOENT);
	CHECK_INT(s.n, 2);
}

static void test_walk_index(void)
{
	const char *ix =
	    "{\"schemaVersion\":2,\"manifests\":["
	    "{\"mediaType\":\"" OCI_MT_DOCKER_LIST
	    "\",\"digest\":" D("e") ",\"size\":3},"
				    "{\"mediaType\":\"" OCI_MT_MANIFEST
				    "\",\"digest\":" D("f") ",\"size\":4,"
							    "\"annotations\":{\"" OCI_REF_NAME
							    "\":\"v1\"}}]}";
	struct seen s = {0};
	enum oci_kind k;
	char *mt = NULL;

	CHECK_INT(oci_walk(ix, strlen(ix), OCI_LIST_MANIFESTS, &k, &mt, record, &s), 0);
	CHECK_INT(k, OCI_INDEX);
	CHECK_STR(mt, OCI_MT_INDEX); /* none in the document: the OCI type */
	free(mt);
	CHECK_STR(s.text, "8:eeeeeeee:3:1:" OCI_MT_DOCKER_LIST
			  ":-:2 8:ffffffff:4:1:" OCI_MT_MANIFEST ":v1:1");
}

static void test_kinds(void)
{
	const char *cfg = "{\"architecture\":\"amd64\",\"config\":{\"Env\":[]},\"rootfs\":{}}";
	const char *bare = "{\"schemaVersion\":2,\"layers\":[]}";
	const char *unknown = "{\"mediaType\":\"x/y\",\"config\":{\"digest\":" D("c") "}}";
	const char *v1 = "{\"schemaVersion\":1,\"mediaType\":\"" OCI_MT_DOCKER_V1 "\"}";
	enum oci_kind k;
	char *mt = NULL;

	/* By type: an image config is not a manifest, though it has "config". */
	CHECK_INT(oci_walk(cfg, strlen(cfg), 0, &k, &mt, NULL, NULL), 0);
	CHECK_INT(k, OCI_OTHER);
	CHECK(mt == NULL);
	CHECK_INT(oci_walk(cfg, strlen(cfg), OCI_IMAGE_ONLY, &k, NULL, NULL, NULL), -EINVAL);
	CHECK_INT(oci_walk(bare, strlen(bare), 0, &k, NULL, NULL, NULL), 0);
	CHECK_INT(k, OCI_MANIFEST);
	CHECK_INT(oci_walk(unknown, strlen(unknown), 0, &k, NULL, NULL, NULL), 0);
	CHECK_INT(k, OCI_OTHER);
	CHECK_INT(oci_walk(v1, strlen(v1), 0, &k, NULL, NULL, NULL), 0);
	CHECK_INT(k, OCI_SCHEMA1);
	/* By shape (bytes ECR gave as a manifest). */
	CHECK_INT(oci_walk(unknown, strlen(unknown), OCI_BY_SHAPE, &k, &mt, NULL, NULL), 0);
	CHECK_INT(k, OCI_MANIFEST);
	CHECK_STR(mt, "x/y");
	free(mt);
	CHECK_INT(oci_walk(bare, strlen(bare), OCI_BY_SHAPE | OCI_IMAGE_ONLY, &k, NULL, NULL, NULL),
		  -EINVAL);
	CHECK_INT(oci_walk(v1, strlen(v1), OCI_BY_SHAPE, &k, NULL, NULL, NULL), 0);
	CHECK_INT(k, OCI_OTHER);
}

static void test_malformed(void)
{
	const char *bad[] = {
	    "{not json",
	    "[1]",
	    "{\"schemaVersion\":2,\"layers\":{\"digest\":" D("a") "}}",
	    "{\"schemaVersion\":2,\"layers\":[\"x\"]}",
	    "{\"schemaVersion\":2,\"layers\":[{\"size\":1}]}",
	    "{\"schemaVersion\":2,\"layers\":[],\"config\":[]}",
	    "{\"schemaVersion\":2,\"manifests\":[{\"digest\":5}]}",
	};
	struct seen s = {0};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(oci_walk(bad[i], strlen(bad[i]),
				   OCI_LIST_CONFIG | OCI_LIST_LAYERS | OCI_LIST_MANIFESTS, NULL,
				   NULL, record, &s),
			  -EINVAL);
	CHECK_INT(s.n, 0);
}

static void test_digest(void)
{
	const unsigned char md[3] = {0x00, 0xab, 0xf1};
	char hex[7], d[NET_DIGEST_LEN], h[65];

	net_hex(md, 3, hex);
	CHECK_STR(hex, "00abf1");
	net_sha256_digest("abc", 3, d);
	CHECK_STR(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	net_sha256_hex("", 0, h);
	CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

int main(void)
{
	test_media_types();
	test_walk_manifest();
	test_walk_index();
	test_kinds();
	test_malformed();
	test_digest();
	return check_summary("net_oci");
}
