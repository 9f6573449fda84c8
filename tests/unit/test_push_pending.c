/* Pending versions: classification of what is written, candidates of
 * index.json, completeness, the commit and its errno, version rules. */
#include "push_fake.h"

#include "fs/push/pending.h"

#define MiB (1024 * 1024)

static struct fake F;
static struct push_remote R;
static pending *P;
static int commits;

static void on_commit(void *arg, pending_version *v, int rc)
{
	commits++;
}

struct blob {
	char *data;
	size_t len;
	char digest[72];
	char rel[96];
};

static void blob_set(struct blob *b, char *data, size_t len)
{
	b->data = data;
	b->len = len;
	fake_sha(data, len, b->digest);
	snprintf(b->rel, sizeof(b->rel), "blobs/sha256/%s", b->digest + 7);
}

static char *xstrdup(const char *s)
{
	char *r = strdup(s);
	CHECK(r);
	return r;
}

struct image {
	struct blob layer, config, manifest;
};

static void image_make(struct image *im, unsigned seed, size_t layer_len)
{
	char buf[4096];
	blob_set(&im->layer, fake_bytes(layer_len, seed), layer_len);
	snprintf(buf, sizeof(buf), "{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":%u}", seed);
	blob_set(&im->config, xstrdup(buf), strlen(buf));
	snprintf(buf, sizeof(buf),
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		 "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
		 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"%s\",\"size\":%zu}]}",
		 im->config.digest, im->config.len, im->layer.digest, im->layer.len);
	blob_set(&im->manifest, xstrdup(buf), strlen(buf));
}

static void image_free(struct image *im)
{
	free(im->layer.data);
	free(im->config.data);
	free(im->manifest.data);
}

static char *index_json(const struct image *const *ims, const char *const *refs, int n,
			const char *mt)
{
	char *s = malloc(8192);
	size_t o = 0;
	o += (size_t)sprintf(s + o, "{\"schemaVersion\":2,\"manifests\":[");
	for (int i = 0; i < n; i++) {
		o += (size_t)sprintf(s + o, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu",
				     i ? "," : "", mt, ims[i]->manifest.digest, ims[i]->manifest.len);
		if (refs && refs[i])
			o += (size_t)sprintf(s + o, ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"%s\"}",
					     refs[i]);
		o += (size_t)sprintf(s + o, "}");
	}
	sprintf(s + o, "]}");
	return s;
}

static const char *LAYOUT = "{\"imageLayoutVersion\": \"1.0.0\"}";

/* create + write in 1 MiB pieces + flush + release, like cp (process
 * writer, 0: unknown). Returns flush's rc. */
static int put_file_as(pending_version *v, const char *rel, const char *data, size_t len,
		       long writer)
{
	pending_file *f = NULL;
	int rc = pending_create_as(v, rel, writer, &f);
	if (rc)
		return rc;
	for (size_t off = 0; off < len && rc == 0; off += MiB)
		rc = pending_write(f, data + off, len - off < MiB ? len - off : MiB, off);
	int frc = pending_flush(f);
	if (rc == 0)
		rc = frc;
	CHECK(pending_flush(f) == frc); /* FLUSH may come again */
	pending_release(f);
	pending_file_put(f);
	return rc;
}

static int put_file(pending_version *v, const char *rel, const char *data, size_t len)
{
	return put_file_as(v, rel, data, len, 0);
}

static int put_blob(pending_version *v, const struct blob *b)
{
	return put_file(v, b->rel, b->data, b->len);
}

static void setup(void)
{
	struct pending_opts o = { .on_commit = on_commit };
	fake_init(&F, &R, 5 * MiB);
	F.repo_exists = 0;
	commits = 0;
	CHECK(pending_new(&o, &P) == 0);
}

static void teardown(void)
{
	pending_free(P);
	fake_fini(&F);
}

static pending_version *version(const char *tag)
{
	pending_version *v = NULL;
	CHECK(pending_version_get(P, "111111111111", "us-east-1", "team/app", tag, &R, &v) == 0);
	CHECK(v);
	return v;
}

/* cp -rT order varies: index.json before the blobs. The commit runs in the
 * flush that completes the set; nothing is put before. */
static void test_push_basic(void)
{
	struct image im;
	setup();
	image_make(&im, 1, 6 * MiB + 3);
	pending_version *v = version("v1");
	char *idx = index_json((const struct image *[]){ &im }, NULL, 1,
			       "application/vnd.oci.image.manifest.v1+json");

	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(F.n_create == 1 && F.repo_exists); /* the repository first */
	CHECK(pending_status(v) == -ENODATA);
	CHECK(put_blob(v, &im.manifest) == 0);
	CHECK(put_blob(v, &im.config) == 0);
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(pending_status(v) == -ENODATA);
	CHECK(F.n_put == 0);
	CHECK(put_blob(v, &im.layer) == 0); /* completes the set: commits */
	CHECK(F.n_put == 1 && commits == 1);
	CHECK(!strcmp(F.img[0].tag, "v1") && !strcmp(F.img[0].digest, im.manifest.digest));
	CHECK(!strcmp(F.img[0].media_type, "application/vnd.oci.image.manifest.v1+json"));
	CHECK(F.img[0].len == im.manifest.len && !memcmp(F.img[0].bytes, im.manifest.data, im.manifest.len));
	/* the manifest never went through the layer upload; config and layer did */
	CHECK(F.nlayers == 2 && !fake_has_layer(&F, im.manifest.digest));
	CHECK(pending_status(v) == 0);
	CHECK(pending_version_state(v) == PV_COMMITTED);
	char *st = pending_push_state(v);
	CHECK(st && strstr(st, "\"committed\""));
	free(st);
	st = pending_summary_json(P); /* .ecrfs/pending: only pushes in progress or failed */
	CHECK(st && !strstr(st, "\"v1\""));
	free(st);

	/* the same image again: blobs skipped, same digest, no new layer upload */
	int parts = F.n_part;
	CHECK(put_blob(v, &im.layer) == 0);
	CHECK(put_blob(v, &im.config) == 0);
	CHECK(put_blob(v, &im.manifest) == 0);
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(F.n_part == parts && F.n_put == 2);
	CHECK(pending_status(v) == 0);
	free(idx);
	image_free(&im);
	teardown();
}

/* A blob missing: every close succeeds, sync says ENODATA, no tag. */
static void test_incomplete(void)
{
	struct image im;
	setup();
	image_make(&im, 2, 1000);
	pending_version *v = version("v2");
	char *idx = index_json((const struct image *[]){ &im }, NULL, 1,
			       "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(v, &im.manifest) == 0);
	CHECK(put_blob(v, &im.config) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(pending_status(v) == -ENODATA);
	CHECK(F.n_put == 0);
	char *sum = pending_summary_json(P);
	CHECK(sum && strstr(sum, im.layer.digest) && strstr(sum, "\"pending\""));
	free(sum);
	/* the repository gets the layer some other way: sync commits (the fake
	 * is locked: the config's upload worker writes it when it completes) */
	pthread_mutex_lock(&F.mu);
	strcpy(F.layers[F.nlayers++], im.layer.digest);
	pthread_mutex_unlock(&F.mu);
	CHECK(pending_status(v) == 0);
	CHECK(F.n_put == 1);
	free(idx);
	image_free(&im);
	teardown();
}

/* A corrupted blob fails its close with EIO and aborts the version; no
 * tag. Running the copy again (new version) succeeds. */
static void test_corrupt_then_rerun(void)
{
	struct image im;
	setup();
	image_make(&im, 3, 7 * MiB);
	pending_version *v = version("v3");
	char *idx = index_json((const struct image *[]){ &im }, NULL, 1,
			       "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(put_blob(v, &im.manifest) == 0);
	CHECK(put_blob(v, &im.config) == 0);
	im.layer.data[12345] ^= 0x40;
	CHECK(put_blob(v, &im.layer) == -EIO);
	CHECK(pending_status(v) == -EIO && F.n_put == 0);
	im.layer.data[12345] ^= 0x40;

	/* a killed cp: the partial file is flushed (FLUSH of the dying fd) */
	pending_file *f = NULL;
	CHECK(pending_create(v, im.layer.rel, &f) == 0);
	CHECK(pending_write(f, im.layer.data, MiB, 0) == 0);
	CHECK(pending_flush(f) == -EIO);
	pending_release(f);
	pending_file_put(f);
	CHECK(F.n_put == 0);

	/* re-run: only what the repository lacks is uploaded (the config is
	 * there, or its upload, still running after the failure, is waited for) */
	int inits = F.n_initiate;
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(put_blob(v, &im.manifest) == 0);
	CHECK(put_blob(v, &im.config) == 0);
	CHECK(F.n_initiate == inits);
	CHECK(put_blob(v, &im.layer) == 0);
	CHECK(F.n_initiate == inits + 1);
	CHECK(F.n_put == 1 && pending_status(v) == 0);
	free(idx);
	image_free(&im);
	teardown();
}

/* Immutable tag: a different image fails the completing close with EEXIST;
 * the same image again succeeds. */
static void test_immutable(void)
{
	struct image a, b;
	setup();
	F.immutable = 1;
	image_make(&a, 4, 100);
	image_make(&b, 5, 100);
	pending_version *v = version("v4");
	char *ia = index_json((const struct image *[]){ &a }, NULL, 1,
			      "application/vnd.oci.image.manifest.v1+json");
	char *ib = index_json((const struct image *[]){ &b }, NULL, 1,
			      "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_blob(v, &a.layer) == 0 && put_blob(v, &a.config) == 0 && put_blob(v, &a.manifest) == 0);
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "index.json", ia, strlen(ia)) == 0);
	CHECK(pending_status(v) == 0);

	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(v, &b.layer) == 0 && put_blob(v, &b.config) == 0 && put_blob(v, &b.manifest) == 0);
	CHECK(put_file(v, "index.json", ib, strlen(ib)) == -EEXIST);
	CHECK(pending_status(v) == -EEXIST);
	CHECK(!strcmp(fake_image_by_tag(&F, "v4")->digest, a.manifest.digest));
	/* index.json first: EEXIST at its close, before any blob is sent */
	int puts = F.n_put, inits = F.n_initiate;
	CHECK(put_file(v, "index.json", ib, strlen(ib)) == -EEXIST);
	CHECK(F.n_put == puts && F.n_initiate == inits);

	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(v, &a.manifest) == 0);
	CHECK(put_file(v, "index.json", ia, strlen(ia)) == 0);
	CHECK(pending_status(v) == 0);
	free(ia);
	free(ib);
	image_free(&a);
	image_free(&b);
	teardown();
}

/* Several images in index.json: the candidate is chosen by ref.name; with
 * no match the close of index.json is EINVAL. Only manifests written in this
 * version are candidates (skopeo's merged index.json). */
static void test_candidates(void)
{
	struct image a, b, old;
	setup();
	image_make(&a, 6, 100);
	image_make(&b, 7, 100);
	image_make(&old, 8, 100);
	/* old is in the repository already (a committed image) */
	strcpy(F.layers[F.nlayers++], old.layer.digest);
	strcpy(F.layers[F.nlayers++], old.config.digest);
	CHECK(fk_put(&F, "other", old.manifest.data, old.manifest.len,
		     "application/vnd.oci.image.manifest.v1+json", NULL) == 0);

	pending_version *v = version("b");
	const struct image *all[] = { &old, &a, &b };
	const char *refs[] = { "b", "a", "b2" };
	char *idx = index_json(all, refs, 3, "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(v, &a.layer) == 0 && put_blob(v, &a.config) == 0 && put_blob(v, &a.manifest) == 0);
	CHECK(put_blob(v, &b.layer) == 0 && put_blob(v, &b.config) == 0 && put_blob(v, &b.manifest) == 0);
	/* "old" has ref b but was not written here; a and b2 do not match: EINVAL */
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == -EINVAL);
	CHECK(F.n_put == 1);
	free(idx);

	const char *refs2[] = { "x", "a", "b" };
	idx = index_json(all, refs2, 3, "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(v, &a.manifest) == 0 && put_blob(v, &b.manifest) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(pending_status(v) == 0);
	CHECK(!strcmp(fake_image_by_tag(&F, "b")->digest, b.manifest.digest));
	free(idx);

	/* one written candidate among committed ones: that one, whatever its ref
	 * (a's blobs reach ECR after their close in version b: wait for them) */
	for (int i = 0; i < 4000; i++) {
		pthread_mutex_lock(&F.mu);
		int there = fake_has_layer(&F, a.layer.digest) && fake_has_layer(&F, a.config.digest);
		pthread_mutex_unlock(&F.mu);
		if (there)
			break;
		usleep(2000);
	}
	pending_version *w = version("merged");
	const char *refs3[] = { "merged", "zzz", NULL };
	idx = index_json(all, refs3, 2, "application/vnd.oci.image.manifest.v1+json");
	CHECK(put_file(w, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_blob(w, &a.manifest) == 0); /* layers are in the repository */
	CHECK(put_file(w, "index.json", idx, strlen(idx)) == 0);
	CHECK(!strcmp(fake_image_by_tag(&F, "merged")->digest, a.manifest.digest));
	free(idx);
	image_free(&a);
	image_free(&b);
	image_free(&old);
	teardown();
}

/* Temporary names (skopeo's oci-put-blob*, rsync's .name.XXXXXX) are
 * final at the rename; their errors come from fsync and rename. */
static void test_temp_names(void)
{
	struct image im;
	setup();
	image_make(&im, 9, 6 * MiB);
	pending_version *v = version("t");
	char *idx = index_json((const struct image *[]){ &im }, NULL, 1,
			       "application/vnd.oci.image.manifest.v1+json");
	const struct blob *bl[] = { &im.layer, &im.config, &im.manifest };
	for (int i = 0; i < 3; i++) {
		char tmp[64];
		snprintf(tmp, sizeof(tmp), "oci-put-blob%d", i);
		CHECK(put_file(v, tmp, bl[i]->data, bl[i]->len) == 0);
		CHECK(F.n_put == 0);
		CHECK(pending_rename(v, tmp, bl[i]->rel) == 0);
	}
	CHECK(put_file(v, ".index.json.Ab12Cd", idx, strlen(idx)) == 0);
	CHECK(pending_rename(v, ".index.json.Ab12Cd", "index.json") == 0);
	CHECK(F.n_put == 0);
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(F.n_put == 1 && pending_status(v) == 0);

	/* a temp file renamed onto the wrong digest: the rename fails with EIO */
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "tmpx", im.config.data, im.config.len) == 0);
	CHECK(pending_rename(v, "tmpx", im.layer.rel) == -EIO);
	CHECK(pending_rename(v, "nope", im.layer.rel) == -ENOENT);
	free(idx);
	image_free(&im);
	teardown();
}

/* A multi-arch index: children by digest first, then the index with the tag. */
static void test_index(void)
{
	struct image a, b;
	char buf[4096];
	struct blob ix;
	setup();
	image_make(&a, 10, 100);
	image_make(&b, 11, 100);
	snprintf(buf, sizeof(buf),
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
		 "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
		 "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}}]}",
		 a.manifest.digest, a.manifest.len, b.manifest.digest, b.manifest.len);
	blob_set(&ix, xstrdup(buf), strlen(buf));
	pending_version *v = version("multi");
	struct image top = { .manifest = ix };
	char *idx = index_json((const struct image *[]){ &top }, (const char *[]){ "multi" }, 1,
			       "application/vnd.oci.image.index.v1+json");
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	CHECK(put_file(v, "index.json", idx, strlen(idx)) == 0);
	CHECK(put_blob(v, &ix) == 0);
	CHECK(put_blob(v, &a.manifest) == 0 && put_blob(v, &a.config) == 0 && put_blob(v, &a.layer) == 0);
	CHECK(put_blob(v, &b.manifest) == 0 && put_blob(v, &b.config) == 0);
	CHECK(pending_status(v) == -ENODATA && F.n_put == 0);
	CHECK(put_blob(v, &b.layer) == 0);
	CHECK(F.n_put == 3);
	CHECK(F.img[0].tag[0] == '\0' && F.img[1].tag[0] == '\0');
	CHECK(!strcmp(F.img[2].tag, "multi") && !strcmp(F.img[2].digest, ix.digest));
	CHECK(!strcmp(F.img[2].media_type, "application/vnd.oci.image.index.v1+json"));
	free(idx);
	free(ix.data);
	image_free(&a);
	image_free(&b);
	teardown();
}

/* Abandoned versions are dropped after the timeout; open files keep them. */
static void test_sweep(void)
{
	struct image im;
	setup();
	image_make(&im, 12, 100);
	pending_version *v = version("s");
	CHECK(put_blob(v, &im.layer) == 0);
	pending_file *f = NULL;
	CHECK(pending_create(v, im.config.rel, &f) == 0);
	CHECK(pending_sweep(P, time(NULL) + 100000) == 0); /* a file is open */
	pending_release(f);
	pending_file_put(f);
	CHECK(pending_sweep(P, time(NULL) + 1) == 0);
	CHECK(pending_sweep(P, time(NULL) + 601) == 1);
	CHECK(pending_version_state(v) == PV_EMPTY);
	struct pending_stat st;
	CHECK(pending_stat_file(v, im.layer.rel, &st) == -ENOENT);
	image_free(&im);
	teardown();
}

static void count_cb(void *arg, const char *name, const struct pending_stat *st)
{
	(*(int *)arg)++;
}

/* Listing and stat of pending files for LOOKUP/READDIR. */
static void test_list(void)
{
	struct image im;
	setup();
	image_make(&im, 13, 100);
	pending_version *v = version("l");
	CHECK(put_blob(v, &im.layer) == 0);
	CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
	int n = 0;
	pending_list(v, "", count_cb, &n);
	CHECK(n == 1);
	n = 0;
	pending_list(v, "blobs/sha256", count_cb, &n);
	CHECK(n == 1);
	struct pending_stat st;
	CHECK(pending_stat_file(v, im.layer.rel, &st) == 0 && st.final && st.size == 100);
	CHECK(pending_unlink(v, im.layer.rel) == 0);
	CHECK(pending_stat_file(v, im.layer.rel, &st) == -ENOENT);
	CHECK(pending_version_state(v) == PV_PENDING);
	pending_drop(v); /* rm -r of the pending tag directory */
	CHECK(pending_version_state(v) == PV_EMPTY);
	CHECK(pending_stat_file(v, "oci-layout", &st) == -ENOENT);
	CHECK(pending_is_layout_name("index.json") && !pending_is_layout_name("oci-put-blob1"));
	CHECK(!pending_is_layout_name("blobs/sha256/abc"));
	image_free(&im);
	teardown();
}

/* A layer's close returns before its parts reach ECR (the writer goes on
 * with the next file); the commit waits for them. A part refused after
 * the close fails the commit with its errno, and sync reports it. */
static void test_close_before_parts(void)
{
	struct image im;
	for (int fail = 0; fail < 2; fail++) {
		setup();
		image_make(&im, 40 + (unsigned)fail, 12 * MiB + 5);
		pending_version *v = version("late");
		char *idx = index_json((const struct image *[]){ &im }, NULL, 1,
				       "application/vnd.oci.image.manifest.v1+json");
		pthread_mutex_lock(&F.mu);
		F.gate = 1; /* parts wait until the test lets them go */
		F.fail_part_at = fail ? 2 : 0;
		pthread_mutex_unlock(&F.mu);
		CHECK(put_blob(v, &im.layer) == 0);
		CHECK(put_blob(v, &im.config) == 0);
		CHECK(put_blob(v, &im.manifest) == 0);
		CHECK(put_file(v, "oci-layout", LAYOUT, strlen(LAYOUT)) == 0);
		pthread_mutex_lock(&F.mu);
		CHECK(F.n_part == 0 && F.n_complete == 0); /* every close came first */
		F.gate = 0;
		pthread_cond_broadcast(&F.gate_cv);
		pthread_mutex_unlock(&F.mu);
		/* completes the set: waits for the layer's and the config's uploads */
		int rc = put_file(v, "index.json", idx, strlen(idx));
		CHECK(rc == (fail ? -EACCES : 0));
		CHECK(F.n_put == (fail ? 0 : 1));
		CHECK(pending_status(v) == (fail ? -EACCES : 0));
		CHECK(pending_version_state(v) == (fail ? PV_FAILED : PV_COMMITTED));
		free(idx);
		image_free(&im);
		teardown();
	}
}

/* A copy by reference that cannot store the blob (a full $TMPDIR). */
static int copy_enospc(void *arg, struct push_remote *dst)
{
	return -ENOSPC;
}

/* cp -rT of an image whose layer cannot be stored (ENOSPC at its copy by
 * reference), then the same cp again once space is back. */
struct rerun {
	pending_version *v;
	struct image im;
	char *idx;
};

static int copy_layout(struct rerun *r, long writer)
{
	int rc = put_file_as(r->v, "oci-layout", LAYOUT, strlen(LAYOUT), writer);
	if (rc == 0)
		rc = put_file_as(r->v, "index.json", r->idx, strlen(r->idx), writer);
	return rc;
}

static int copy_blob(struct rerun *r, const struct blob *b, long writer)
{
	return put_file_as(r->v, b->rel, b->data, b->len, writer);
}

static int copy_layer_enospc(struct rerun *r, long writer)
{
	pending_file *f = NULL;
	CHECK(pending_create_as(r->v, r->im.layer.rel, writer, &f) == 0);
	CHECK(pending_ref(f, r->im.layer.digest, r->im.layer.len, copy_enospc, NULL) == -ENOSPC);
	int rc = pending_flush(f);
	pending_release(f);
	pending_file_put(f);
	return rc;
}

/* The re-run: every close succeeds, the last one commits. */
static void rerun_commits(struct rerun *r, long writer)
{
	CHECK(copy_layout(r, writer) == 0);
	CHECK(copy_blob(r, &r->im.manifest, writer) == 0);
	CHECK(copy_blob(r, &r->im.config, writer) == 0);
	CHECK(copy_blob(r, &r->im.layer, writer) == 0);
	CHECK(F.n_put == 1 && pending_status(r->v) == 0);
	CHECK(pending_version_state(r->v) == PV_COMMITTED);
}

/* mode 0, 1: the layer is the last file of the cp (writer 7): its close
 * answers ENOSPC and the version is over at once, so the re-run (writer 8),
 * with or without a sync TAGDIR first (ENOSPC until a new version starts),
 * starts a clean version and commits. It used to fail at its first close
 * with the old ENOSPC: the failed layer stayed in a pending version that
 * the re-run joined and evaluated.
 * mode 2: the layer fails first; the rest of that cp (new names) joins the
 * failed version, whose ENOSPC its closes and sync answer, and nothing is
 * put; the same process copying again (names it wrote) starts a new
 * version and commits. */
static void test_failed_file_then_rerun(void)
{
	for (int mode = 0; mode < 3; mode++) {
		struct rerun r;
		setup();
		image_make(&r.im, 50 + (unsigned)mode, 6 * MiB + 1);
		r.v = version("full");
		r.idx = index_json((const struct image *[]){ &r.im }, NULL, 1,
				   "application/vnd.oci.image.manifest.v1+json");
		if (mode < 2) {
			CHECK(copy_layout(&r, 7) == 0);
			CHECK(copy_blob(&r, &r.im.manifest, 7) == 0);
			CHECK(copy_blob(&r, &r.im.config, 7) == 0);
			CHECK(copy_layer_enospc(&r, 7) == -ENOSPC);
			if (mode == 1) {
				CHECK(pending_version_state(r.v) == PV_FAILED);
				CHECK(pending_status(r.v) == -ENOSPC);
				CHECK(pending_status(r.v) == -ENOSPC);
			}
			rerun_commits(&r, 8);
		} else {
			CHECK(copy_layer_enospc(&r, 7) == -ENOSPC);
			CHECK(copy_blob(&r, &r.im.manifest, 7) == -ENOSPC);
			CHECK(copy_blob(&r, &r.im.config, 7) == -ENOSPC);
			CHECK(copy_layout(&r, 7) == -ENOSPC);
			CHECK(pending_version_state(r.v) == PV_FAILED);
			CHECK(pending_status(r.v) == -ENOSPC && F.n_put == 0);
			rerun_commits(&r, 7);
		}
		free(r.idx);
		image_free(&r.im);
		teardown();
	}
}

int main(void)
{
	test_push_basic();
	test_incomplete();
	test_corrupt_then_rerun();
	test_immutable();
	test_candidates();
	test_temp_names();
	test_index();
	test_sweep();
	test_list();
	test_close_before_parts();
	test_failed_file_then_rerun();
	printf("push pending tests passed\n");
	return 0;
}
