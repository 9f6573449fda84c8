/* SOCI zTOCs as layer indexes, and a seeded mutation test of the two
 * readers of untrusted index bytes: rootfs_index_from_ztoc (flatbuffers)
 * and rootfs_index_load (ecrfs's index files, resealed half of the time so
 * that the bounds checks, not the checksum, must refuse). Every index a
 * mutation leaves acceptable is merged into a tree and read through the
 * spans, so a bad bound shows up under ASan/UBSan as a crash or a read
 * outside a buffer. ECRFS_FUZZ_ITERS (default 3000 each) and
 * ECRFS_FUZZ_SECONDS (default 20 each) bound the run; ECRFS_FUZZ_SEED
 * replays one. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"
#include "rootfs_util.h"
#include "ztoc_util.h"

#define SPAN 65536

static unsigned char *tar, *gzb, *ztoc;
static size_t tar_len, gz_len, ztoc_len, nents, nck;
static struct zt_ent ents[8];
static struct zt_ck ck[64];
static char layer[72];
static unsigned char *big;

static struct zt_ent ze(const char *name, const char *type, const char *link, const char *mtime,
			uint64_t off, uint64_t size, uint64_t mode)
{
	struct zt_ent e = {.name = name,
			   .type = type,
			   .link = link,
			   .mtime = mtime,
			   .off = off,
			   .size = size,
			   .mode = mode};
	return e;
}

/* A layer of a directory, a PAX-xattr file of 300,000 pseudo-random bytes,
 * a small file, a symlink and a hardlink. */
static void make_layer(void)
{
	struct tb b = {0};
	const char *kv[] = {"SCHILY.xattr.user.k", "v"};
	uint32_t x = 7;
	big = malloc(300000);
	for (size_t i = 0; i < 300000; i++) {
		x = x * 1103515245u + 12345u;
		big[i] = (unsigned char)(x >> 24);
	}
	ents[nents++] = ze("etc", "dir", NULL, "2023-11-14T22:13:20Z", 512, 0, 0755);
	tb_dir(&b, "etc");
	tb_pax(&b, 'x', 1, kv);
	ents[nents] =
	    ze("etc/big", "reg", NULL, "2023-11-14T22:13:20.5Z", b.len + 512, 300000, 0644);
	ents[nents].uid = 1000;
	ents[nents].gid = 1001;
	ents[nents].xk = "SCHILY.xattr.user.k";
	ents[nents++].xv = "v";
	tb_entry(&b, &(struct tb_ent){.name = "etc/big",
				      .type = '0',
				      .mode = 0644,
				      .uid = 1000,
				      .gid = 1001,
				      .data = big,
				      .size = 300000,
				      .mtime = 1700000000});
	ents[nents++] = ze("etc/small", "reg", NULL, "2023-11-14T22:13:20Z", b.len + 512, 6, 04755);
	tb_entry(&b, &(struct tb_ent){.name = "etc/small",
				      .type = '0',
				      .mode = 04755,
				      .data = "small\n",
				      .size = 6,
				      .mtime = 1700000000});
	ents[nents++] =
	    ze("l", "symlink", "etc/small", "2023-11-14T23:13:20+01:00", b.len + 512, 0, 0777);
	tb_entry(
	    &b,
	    &(struct tb_ent){
		.name = "l", .type = '2', .link = "etc/small", .mode = 0777, .mtime = 1700000000});
	ents[nents++] =
	    ze("h", "hardlink", "etc/small", "2023-11-14T22:13:20Z", b.len + 512, 0, 0644);
	tb_entry(
	    &b,
	    &(struct tb_ent){
		.name = "h", .type = '1', .link = "etc/small", .mode = 0644, .mtime = 1700000000});
	tb_end(&b);
	tar = b.buf;
	tar_len = b.len;
	gzb = zt_gzip(tar, tar_len, SPAN, ck, &nck, &gz_len);
	sha256_digest(gzb, gz_len, layer);
	ztoc = zt_ztoc(tar, tar_len, gzb, gz_len, ents, nents, ck, nck, 1, &ztoc_len);
}

/* Reads up to 64 KiB of every regular file of ix through the spans. */
static void read_all(const struct rootfs_index *ix, int must_succeed)
{
	struct rootfs_spans *s = NULL;
	struct mem_src m = {.p = gzb, .len = gz_len};
	struct rootfs_source src = {mem_read, &m};
	unsigned char *buf = malloc(65536);
	CHECK_INT(rootfs_spans_new(1 << 20, &s), 0);
	for (size_t i = 0; i < ix->n_ents; i++) {
		const struct rootfs_ent *e = &ix->ents[i];
		if (e->type != ROOTFS_REG)
			continue;
		size_t n = e->size < 65536 ? (size_t)e->size : 65536;
		ssize_t got = rootfs_spans_read(s, ix, &src, e->data_off, buf, n);
		if (must_succeed) {
			CHECK_INT(got, n);
			CHECK(got == (ssize_t)n && memcmp(buf, tar + e->data_off, n) == 0);
		}
	}
	rootfs_spans_free(s);
	free(buf);
}

static void exercise(struct rootfs_index *ix)
{
	struct rootfs_tree *t = NULL;
	struct rootfs_index *l[1] = {ix};
	if (rootfs_tree_merge("sha256:ns", l, 1, &t) == 0) {
		rootfs_tree_free(t);
	}
	read_all(ix, 0);
}

static void test_round_trip(void)
{
	struct rootfs_index *z = NULL, *local = NULL;
	CHECK(nck >= 5);
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len, ztoc, ztoc_len, &z), 0);
	CHECK_INT(build_ix(gzb, gz_len, SPAN, 100000, NULL, NULL, &local), 0);
	if (!z || !local)
		return;
	/* The same entries as the local build of the same blob. */
	CHECK(rootfs_index_same_entries(z, local));
	CHECK_INT(z->n_ck, nck);
	CHECK_INT(z->n_xa, 1);
	CHECK_INT(z->ents[1].nsec, 500000000);
	CHECK_INT(z->ents[3].mtime, 1700000000);
	CHECK_INT(z->ents[2].mode, 04755);
	CHECK_STR(rootfs_ix_str(z, z->ents[4].link), "etc/small");
	read_all(z, 1);
	/* A span whose digest is wrong: -EIO, never its bytes. */
	z->ck[2].sha[0] ^= 1;
	struct rootfs_spans *s = NULL;
	struct mem_src m = {.p = gzb, .len = gz_len};
	struct rootfs_source src = {mem_read, &m};
	unsigned char b[16];
	rootfs_spans_new(1 << 20, &s);
	CHECK_INT(rootfs_spans_read(s, z, &src, z->ck[2].out, b, sizeof b), -EIO);
	rootfs_spans_free(s);
	rootfs_index_free(z);
	rootfs_index_free(local);
}

static void test_refused(void)
{
	struct rootfs_index *z = NULL;
	size_t len;
	/* Another blob size; no span digests; cut in half. */
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len + 1, ztoc, ztoc_len, &z), -EBADMSG);
	unsigned char *nod = zt_ztoc(tar, tar_len, gzb, gz_len, ents, nents, ck, nck, 0, &len);
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len, nod, len, &z), -ENOTSUP);
	free(nod);
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len, ztoc, ztoc_len / 2, &z), -EBADMSG);
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len, ztoc, 3, &z), -EBADMSG);
	/* Entries out of tar order. */
	struct zt_ent swapped[8];
	memcpy(swapped, ents, sizeof ents);
	swapped[1] = ents[2];
	swapped[2] = ents[1];
	unsigned char *bad = zt_ztoc(tar, tar_len, gzb, gz_len, swapped, nents, ck, nck, 1, &len);
	CHECK_INT(rootfs_index_from_ztoc(layer, gz_len, bad, len, &z), -EBADMSG);
	free(bad);
	CHECK(z == NULL);
}

/* ---- seeded mutations ---- */

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Mutations land in [0, hot) three times in four: the tables and
 * headers, not the bulk of checkpoint windows. */
static size_t hot = SIZE_MAX;

/* One mutation of p (len bytes, room for len + 64): the new length. */
static size_t mutate(unsigned char *p, size_t len)
{
	static const uint64_t huge[] = {0xffffffffu,	       0x7fffffffu, 0x80000000u,
					0xffffffffffffffffull, 1ull << 62,  0};
	size_t span = next() % 4 && hot < len ? hot : len;
	size_t at = span ? (size_t)(next() % span) : 0;
	switch (next() % 6) {
	case 0: /* bit flips */
		for (int k = (int)(next() % 8) + 1; k-- && len;)
			p[next() % len] ^= (unsigned char)(1u << (next() % 8));
		break;
	case 1: /* a huge number at a 4-aligned place */
		at &= ~(size_t)3;
		for (size_t i = 0; i < 8 && at + i < len; i++)
			p[at + i] = (unsigned char)(huge[next() % 6] >> (8 * i));
		break;
	case 2: /* truncation */
		return at;
	case 3: /* a byte set to an edge value */
		if (len)
			p[at] = (unsigned char[]){0, 0xff, 0x7f, 0x80}[next() % 4];
		break;
	case 4: { /* a copy of 4 bytes from elsewhere (offsets into offsets) */
		size_t from = len ? (size_t)(next() % len) : 0;
		for (size_t i = 0; i < 4 && at + i < len && from + i < len; i++)
			p[at + i] = p[from + i];
		break;
	}
	default: /* a small offset at a 4-aligned place */
		at &= ~(size_t)3;
		for (size_t i = 0; i < 4 && at + i < len; i++)
			p[at + i] = (unsigned char)((next() % 64) >> (8 * i));
	}
	return len;
}

static long budget(const char *env, long dflt)
{
	const char *v = getenv(env);
	return v && *v ? strtol(v, NULL, 10) : dflt;
}

static int expired(const struct timespec *t0, long seconds)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - t0->tv_sec >= seconds;
}

static void fuzz_ztoc(long iters, long seconds)
{
	unsigned char *p = malloc(ztoc_len + 64);
	struct timespec t0;
	hot = ztoc_len - nck * (17 + 32768) + 64;
	long done = 0, ok = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (; done < iters && !expired(&t0, seconds); done++) {
		memcpy(p, ztoc, ztoc_len);
		size_t len = ztoc_len;
		for (int k = (int)(next() % 3) + 1; k--;)
			len = mutate(p, len);
		/* An allocation of exactly len bytes: ASan sees any read past it. */
		unsigned char *exact = malloc(len ? len : 1);
		memcpy(exact, p, len);
		struct rootfs_index *ix = NULL;
		int rc = rootfs_index_from_ztoc(layer, gz_len, exact, len, &ix);
		free(exact);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOTSUP || rc == -EFBIG);
		CHECK((rc == 0) == (ix != NULL));
		if (ix) {
			ok++;
			exercise(ix);
			rootfs_index_free(ix);
		}
	}
	printf("zTOC: %ld mutations, %ld accepted\n", done, ok);
	CHECK(done >= 100);
	free(p);
}

static void fuzz_index_file(long iters, long seconds)
{
	char dir[] = "/tmp/test_rootfs_ztoc.XXXXXX", path[256];
	struct rootfs_index *ix = NULL;
	struct timespec t0;
	long done = 0, ok = 0;
	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(build_ix(gzb, gz_len, 16384, 100000, NULL, NULL, &ix), 0);
	CHECK_INT(rootfs_index_save(ix, dir), 0);
	rootfs_index_free(ix);
	snprintf(path, sizeof path, "%s/%s", dir, layer + 7);
	int fd = open(path, O_RDONLY);
	struct stat st;
	fstat(fd, &st);
	size_t orig_len = (size_t)st.st_size;
	unsigned char *orig = malloc(orig_len), *p = malloc(orig_len + 64);
	CHECK_INT(read(fd, orig, orig_len), orig_len);
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	hot = SIZE_MAX;
	for (; done < iters && !expired(&t0, seconds); done++) {
		memcpy(p, orig, orig_len);
		size_t len = orig_len;
		for (int k = (int)(next() % 3) + 1; k--;)
			len = mutate(p, len);
		if (len > 32 && next() % 2) /* resealed: only the bounds checks refuse */
			EVP_Digest(p, len - 32, p + len - 32, NULL, EVP_sha256(), NULL);
		fd = open(path, O_WRONLY | O_TRUNC);
		CHECK_INT(write(fd, p, len), len);
		close(fd);
		int rc = rootfs_index_load(dir, layer, &ix);
		CHECK(rc == 0 || rc == -EBADMSG);
		if (rc == 0) {
			ok++;
			exercise(ix);
			rootfs_index_free(ix);
		}
	}
	printf("index files: %ld mutations, %ld accepted\n", done, ok);
	CHECK(done >= 100);
	unlink(path);
	rmdir(dir);
	free(orig);
	free(p);
}

int main(void)
{
	long iters = budget("ECRFS_FUZZ_ITERS", 3000), secs = budget("ECRFS_FUZZ_SECONDS", 20);
	rng = (uint64_t)budget("ECRFS_FUZZ_SEED", 0);
	if (!rng)
		rng = (uint64_t)time(NULL) | 1;
	printf("seed %llu (ECRFS_FUZZ_SEED replays it)\n", (unsigned long long)rng);
	log_init(LOG_TO_STDERR, NULL, LOGL_ERR); /* refusals are expected: quiet */
	make_layer();
	test_round_trip();
	test_refused();
	fuzz_ztoc(iters, secs);
	fuzz_index_file(iters, secs);
	free(tar);
	free(gzb);
	free(ztoc);
	free(big);
	return check_summary("rootfs_ztoc");
}
