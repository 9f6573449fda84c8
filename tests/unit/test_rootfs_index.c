/* Index files: a round trip keeps every byte; a flipped byte, a cut file,
 * another layer's file or bounds out of range are refused (-EBADMSG). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fs/rootfs/rootfs_i.h"
#include "rootfs_util.h"

static char dir[] = "/tmp/test_rootfs_index.XXXXXX";
static char path[256];

static void same(const struct rootfs_index *a, const struct rootfs_index *b)
{
	CHECK_STR(a->digest, b->digest);
	CHECK_INT(a->comp, b->comp);
	CHECK_INT(a->blob_size, b->blob_size);
	CHECK_INT(a->out_size, b->out_size);
	CHECK(a->n_ents == b->n_ents &&
	      memcmp(a->ents, b->ents, a->n_ents * sizeof(*a->ents)) == 0);
	CHECK(a->n_xa == b->n_xa && memcmp(a->xa, b->xa, a->n_xa * sizeof(*a->xa)) == 0);
	CHECK(a->n_ck == b->n_ck && memcmp(a->ck, b->ck, a->n_ck * sizeof(*a->ck)) == 0);
	CHECK(a->n_pool == b->n_pool && memcmp(a->pool, b->pool, a->n_pool) == 0);
	CHECK(a->n_wins == b->n_wins && memcmp(a->wins, b->wins, a->n_wins) == 0);
}

static unsigned char *slurp(size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	fstat(fd, &st);
	unsigned char *p = malloc((size_t)st.st_size);
	*len = (size_t)read(fd, p, (size_t)st.st_size);
	close(fd);
	return p;
}

static void spit(const unsigned char *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	CHECK_INT(write(fd, p, len), len);
	close(fd);
}

/* Rewrites the trailing sha256 so that only the bounds checks can refuse. */
static void reseal(unsigned char *p, size_t len)
{
	EVP_Digest(p, len - 32, p + len - 32, NULL, EVP_sha256(), NULL);
}

/* A gzip layer with xattrs, links and several checkpoints. */
static struct rootfs_index *make_index(void)
{
	struct tb b = {0};
	const char *kv[] = {"SCHILY.xattr.security.capability", "\x01\x00\x00\x02",
			    "SCHILY.xattr.user.k", "v"};
	unsigned char *data = malloc(300000), *g;
	uint32_t x = 12345;
	for (size_t i = 0; i < 300000; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (unsigned char)(x >> 24);
	}
	tb_dir(&b, "etc");
	tb_pax(&b, 'x', 2, kv);
	tb_entry(&b,
		 &(struct tb_ent){
		     .name = "bin/ping", .type = '0', .mode = 04755, .data = data, .size = 300000});
	tb_entry(&b, &(struct tb_ent){.name = "l", .type = '2', .link = "bin/ping"});
	tb_entry(&b, &(struct tb_ent){.name = "h", .type = '1', .link = "bin/ping"});
	tb_end(&b);
	size_t glen;
	struct rootfs_index *ix = NULL;
	g = gz(b.buf, b.len, 6, &glen);
	CHECK_INT(build_ix(g, glen, 65536, 10000, NULL, NULL, &ix), 0);
	free(g);
	free(data);
	free(b.buf);
	return ix;
}

/* Any flipped byte, cut files, another layer's name. */
static void test_damaged(const struct rootfs_index *ix)
{
	struct rootfs_index *back = NULL;
	size_t flen;
	unsigned char *f = slurp(&flen);
	for (size_t pos = 0; pos < flen; pos += (pos < 200 ? 1 : 97)) {
		f[pos] ^= 0x01;
		spit(f, flen);
		back = NULL;
		int rc = rootfs_index_load(dir, ix->digest, &back);
		if (rc != -EBADMSG)
			CHECK_FAILED("flipped byte %zu: load gives %d", pos, rc);
		rootfs_index_free(back);
		f[pos] ^= 0x01;
	}
	size_t cuts[] = {0, 10, 159, 160, flen / 2, flen - 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		spit(f, cuts[i]);
		CHECK_INT(rootfs_index_load(dir, ix->digest, &back), -EBADMSG);
	}
	/* The header names the real layer. */
	spit(f, flen);
	char other[80], opath[300];
	strcpy(other, ix->digest);
	other[7] = other[7] == 'a' ? 'b' : 'a';
	snprintf(opath, sizeof(opath), "%s/%s", dir, other + 7);
	CHECK_INT(rename(path, opath), 0);
	CHECK_INT(rootfs_index_load(dir, other, &back), -EBADMSG);
	CHECK_INT(rename(opath, path), 0);
	free(f);
}

/* Saves ix, applies edit to the file, reseals it: load must refuse it. */
static void check_sealed(const struct rootfs_index *ix,
			 void (*edit)(const struct rootfs_index *, unsigned char *, size_t))
{
	struct rootfs_index *back = NULL;
	size_t flen;
	CHECK_INT(rootfs_index_save(ix, dir), 0);
	unsigned char *f = slurp(&flen);
	edit(ix, f, flen);
	reseal(f, flen);
	spit(f, flen);
	CHECK_INT(rootfs_index_load(dir, ix->digest, &back), -EBADMSG);
	rootfs_index_free(back);
	free(f);
}

static void bad_path_offset(const struct rootfs_index *ix, unsigned char *f, size_t flen)
{
	struct rootfs_ent e;
	memcpy(&e, f + 160, sizeof(e));
	e.path = ix->n_pool + 5;
	memcpy(f + 160, &e, sizeof(e));
}

static void bad_window(const struct rootfs_index *ix, unsigned char *f, size_t flen)
{
	size_t ck = 160 + ix->n_ents * sizeof(struct rootfs_ent) +
		    ix->n_xa * sizeof(struct rootfs_xattr) + sizeof(struct rootfs_ckpt);
	struct rootfs_ckpt c;
	memcpy(&c, f + ck, sizeof(c));
	c.win_len = 1u << 30;
	memcpy(f + ck, &c, sizeof(c));
}

static void dotdot_name(const struct rootfs_index *ix, unsigned char *f, size_t flen)
{
	unsigned char *hit = memmem(f, flen, "bin/ping", 8);
	CHECK(hit != NULL);
	if (hit)
		memcpy(hit, "../aping", 8);
}

int main(void)
{
	struct rootfs_index *ix = make_index(), *back = NULL;
	CHECK(mkdtemp(dir) != NULL);
	if (!ix)
		return check_summary("test_rootfs_index");
	CHECK_INT(ix->n_xa, 2);
	CHECK(ix->n_ck >= 2);
	snprintf(path, sizeof(path), "%s/%s", dir, ix->digest + 7);

	CHECK_INT(rootfs_index_load(dir, ix->digest, &back), -ENOENT);
	CHECK_INT(rootfs_index_save(ix, dir), 0);
	CHECK_INT(rootfs_index_load(dir, ix->digest, &back), 0);
	if (back)
		same(ix, back);
	rootfs_index_free(back);
	CHECK(rootfs_index_mem(ix) > 0);

	test_damaged(ix);
	/* Well sealed but out of bounds or not a tar name. */
	check_sealed(ix, bad_path_offset);
	check_sealed(ix, bad_window);
	check_sealed(ix, dotdot_name);
	/* A good save replaces a bad file. */
	CHECK_INT(rootfs_index_save(ix, dir), 0);
	CHECK_INT(rootfs_index_load(dir, ix->digest, &back), 0);
	rootfs_index_free(back);
	CHECK_INT(rootfs_index_load(dir, "sha256:nothex", &back), -EINVAL);

	unlink(path);
	rmdir(dir);
	rootfs_index_free(ix);
	return check_summary("test_rootfs_index");
}
