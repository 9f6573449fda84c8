/* OCI layout synthesis: index.json, blobs of a manifest and of an index. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/image.h"

#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static char child[2048], child_digest[72];

static int get_child(void *arg, const char *digest, char **bytes, size_t *len, char **mt)
{
	(void)arg;
	if (strcmp(digest, child_digest) != 0)
		return -ENOENT;
	*bytes = strdup(child);
	*len = strlen(child);
	*mt = NULL;
	return 0;
}

static void check_index_json(const struct fs_image *img, const char *mt, const char *ref)
{
	json_error_t e;
	json_t *j = json_loadb(img->index_json, img->index_len, 0, &e);
	assert(j);
	assert(json_integer_value(json_object_get(j, "schemaVersion")) == 2);
	json_t *m = json_object_get(j, "manifests");
	assert(json_array_size(m) == 1);
	json_t *d = json_array_get(m, 0);
	assert(!strcmp(json_string_value(json_object_get(d, "mediaType")), mt));
	assert(!strcmp(json_string_value(json_object_get(d, "digest")), img->digest));
	assert((uint64_t)json_integer_value(json_object_get(d, "size")) == img->top_len);
	const char *r = json_string_value(
		json_object_get(json_object_get(d, "annotations"), "org.opencontainers.image.ref.name"));
	assert(r && !strcmp(r, ref));
	json_decref(j);
}

int main(void)
{
	/* A docker schema 2 manifest whose two layers share one digest. */
	snprintf(child, sizeof child,
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
		 "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":7,\"digest\":\"sha256:" H("c") "\"},"
		 "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":100,\"digest\":\"sha256:" H("a") "\"},"
		 "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":100,\"digest\":\"sha256:" H("a") "\"},"
		 "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":5,\"digest\":\"sha256:" H("b") "\"}]}");
	fs_sha256_digest(child, strlen(child), child_digest);

	struct fs_image_src src = {.registry = "111111111111", .region = "us-east-1", .repo = "team/app",
				   .digest = child_digest, .refname = "v1", .media_type = NULL,
				   .bytes = child, .len = strlen(child), .pushed_at = 1234};
	struct fs_image *img = NULL;
	assert(fs_image_build(&src, NULL, NULL, &img) == 0);
	assert(img->nblobs == 4); /* manifest, config, two distinct layers */
	for (size_t i = 1; i < img->nblobs; i++)
		assert(strcmp(img->blobs[i - 1].digest, img->blobs[i].digest) < 0);
	assert(!strcmp(img->media_type, "application/vnd.docker.distribution.manifest.v2+json"));
	check_index_json(img, img->media_type, "v1");
	long i = fs_image_find_blob(img, H("a"));
	assert(i >= 0 && img->blobs[i].size == 100 && img->blobs[i].kind == FS_BLOB_LAYER);
	i = fs_image_find_blob(img, H("c"));
	assert(i >= 0 && img->blobs[i].size == 7 && img->blobs[i].kind == FS_BLOB_CONFIG);
	i = fs_image_find_blob(img, child_digest + 7);
	assert(i >= 0 && img->blobs[i].data && !strcmp(img->blobs[i].data, child));
	assert(img->blobs[i].size == strlen(child));
	assert(fs_image_find_blob(img, H("d")) == -1);
	uint64_t ino_a = img->blobs[fs_image_find_blob(img, H("a"))].st_ino;
	fs_image_put(img);

	/* Same blob in another image of the same repository: same st_ino. */
	src.refname = "v2";
	assert(fs_image_build(&src, NULL, NULL, &img) == 0);
	assert(img->blobs[fs_image_find_blob(img, H("a"))].st_ino == ino_a);
	fs_image_put(img);

	/* Bytes that do not hash to the digest. */
	src.digest = "sha256:" H("0");
	assert(fs_image_build(&src, NULL, NULL, &img) == -EIO);
	assert(img == NULL);

	/* An OCI index over the child manifest. */
	char index[2048], index_digest[72];
	snprintf(index, sizeof index,
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
		 "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":%zu,\"digest\":\"%s\","
		 "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
		 strlen(child), child_digest);
	fs_sha256_digest(index, strlen(index), index_digest);
	struct fs_image_src isrc = {.registry = "111111111111", .region = "us-east-1", .repo = "r1",
				    .digest = index_digest, .refname = "sha256-x", .bytes = index,
				    .len = strlen(index), .media_type = "application/vnd.oci.image.index.v1+json"};
	assert(fs_image_build(&isrc, get_child, NULL, &img) == 0);
	assert(img->nblobs == 5);
	i = fs_image_find_blob(img, index_digest + 7);
	assert(i >= 0 && img->blobs[i].kind == FS_BLOB_INDEX);
	i = fs_image_find_blob(img, child_digest + 7);
	assert(i >= 0 && img->blobs[i].kind == FS_BLOB_MANIFEST && img->blobs[i].data);
	check_index_json(img, "application/vnd.oci.image.index.v1+json", "sha256-x");
	fs_image_put(img);

	/* Child manifest missing -> error, no leak. */
	child_digest[10] = child_digest[10] == '0' ? '1' : '0';
	assert(fs_image_build(&isrc, get_child, NULL, &img) != 0);

	/* Not a manifest. */
	const char *junk = "{\"hello\":1}";
	char jd[72];
	fs_sha256_digest(junk, strlen(junk), jd);
	struct fs_image_src jsrc = {.registry = "1", .region = "r", .repo = "x", .digest = jd,
				    .refname = "t", .bytes = junk, .len = strlen(junk)};
	assert(fs_image_build(&jsrc, NULL, NULL, &img) == -EIO);
	printf("ok\n");
	return 0;
}
