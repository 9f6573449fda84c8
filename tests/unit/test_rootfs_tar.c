/* The streaming tar reader: ustar, PAX x/g, GNU long names, base-256,
 * name normalisation, and hostile streams, fed in chunks of every size. */
#include <errno.h>

#include "check.h"
#include "fs/rootfs/rootfs_i.h"
#include "rootfs_util.h"

#define MAXE 64

struct got {
	size_t n;
	struct {
		char path[ROOTFS_PATH_MAX], link[ROOTFS_PATH_MAX];
		int has_link;
		enum rootfs_type type;
		uint32_t mode, uid, gid, major, minor, nsec;
		int64_t mtime;
		uint64_t size, data_off;
		size_t n_xa;
		char xa_name[4][64];
		unsigned char xa_val[4][64];
		size_t xa_len[4];
	} e[MAXE];
};

static int collect(void *arg, const struct rootfs_tar_entry *e)
{
	struct got *g = arg;
	if (g->n >= MAXE)
		return 0;
	typeof(g->e[0]) *o = &g->e[g->n++];
	memset(o, 0, sizeof(*o));
	snprintf(o->path, sizeof(o->path), "%s", e->path);
	o->has_link = e->link != NULL;
	if (e->link)
		snprintf(o->link, sizeof(o->link), "%s", e->link);
	o->type = e->type;
	o->mode = e->mode;
	o->uid = e->uid;
	o->gid = e->gid;
	o->major = e->major;
	o->minor = e->minor;
	o->mtime = e->mtime;
	o->nsec = e->nsec;
	o->size = e->size;
	o->data_off = e->data_off;
	o->n_xa = e->n_xa;
	for (size_t i = 0; i < e->n_xa && i < 4; i++) {
		snprintf(o->xa_name[i], 64, "%s", e->xa[i].name);
		memcpy(o->xa_val[i], e->xa[i].value, e->xa[i].len < 64 ? e->xa[i].len : 64);
		o->xa_len[i] = e->xa[i].len;
	}
	return 0;
}

/* Feeds the stream in pieces of `chunk` bytes; feed error or finish's. */
static int parse(const struct tb *b, size_t chunk, uint32_t max_entries, struct got *g)
{
	struct rootfs_tar *t = NULL;
	int rc = rootfs_tar_new(collect, g, max_entries, &t);
	memset(g, 0, sizeof(*g));
	for (size_t off = 0; rc == 0 && off < b->len; off += chunk)
		rc = rootfs_tar_feed(t, b->buf + off, b->len - off < chunk ? b->len - off : chunk);
	if (rc == 0)
		rc = rootfs_tar_finish(t);
	rootfs_tar_free(t);
	return rc;
}

static void test_norm(void)
{
	char out[64];
	CHECK_INT(rootfs_path_norm("./a//b/./c/", out, sizeof(out)), 5);
	CHECK_STR(out, "a/b/c");
	CHECK_INT(rootfs_path_norm("/etc/passwd", out, sizeof(out)), 10);
	CHECK_STR(out, "etc/passwd");
	CHECK_INT(rootfs_path_norm("./", out, sizeof(out)), 0);
	CHECK_STR(out, "");
	CHECK_INT(rootfs_path_norm("a/../b", out, sizeof(out)), -EINVAL);
	CHECK_INT(rootfs_path_norm("..", out, sizeof(out)), -EINVAL);
	CHECK_INT(rootfs_path_norm("a/..b/c..", out, sizeof(out)), 9);
	CHECK_INT(rootfs_path_norm("aaaaaaaaaa/bbbbbbbbbb", out, 8), -ENAMETOOLONG);
}

static char longname[300], longlink[300], paxpath[1200];

/* One stream with every feature. */
static void features_stream(struct tb *tb)
{
	struct tb b = {0};
	memset(longname, 'n', sizeof(longname));
	memcpy(longname, "dir/", 4);
	longname[299] = 0;
	memset(longlink, 'k', sizeof(longlink));
	longlink[299] = 0;
	memset(paxpath, 'p', sizeof(paxpath));
	memcpy(paxpath, "./pax/", 6);
	paxpath[1199] = 0;

	tb_dir(&b, "./");
	tb_dir(&b, "./etc/");
	tb_file(&b, "./etc/hostname", "box\n", 0644);
	tb_entry(&b, &(struct tb_ent){.name = "usr/bin/su",
				      .type = '0',
				      .mode = 04755,
				      .data = "elf",
				      .size = 3,
				      .uid = 0,
				      .gid = 0});
	tb_entry(&b, &(struct tb_ent){.name = "tmp", .type = '5', .mode = 01777});
	tb_entry(
	    &b, &(struct tb_ent){
		    .name = "lib", .prefix = "usr", .type = '2', .link = "../lib64", .mode = 0777});
	tb_entry(&b, &(struct tb_ent){.name = "/bin/ls2", .type = '1', .link = "/usr/bin/su"});
	tb_entry(&b, &(struct tb_ent){
			 .name = "dev/null", .type = '3', .major = 1, .minor = 3, .mode = 0666});
	tb_entry(&b, &(struct tb_ent){.name = "dev/sda", .type = '4', .major = 8, .minor = 0});
	tb_entry(&b, &(struct tb_ent){.name = "run/fifo", .type = '6', .mode = 0600});
	tb_gnu_long(&b, 'L', longname);
	tb_gnu_long(&b, 'K', longlink);
	tb_entry(&b, &(struct tb_ent){.name = "trunc", .type = '2', .link = "trunc"});
	const char *g_kv[] = {"uid", "4242", "comment", "global"};
	tb_pax(&b, 'g', 2, g_kv);
	const char *x_kv[] = {"path",
			      paxpath,
			      "mtime",
			      "1700000000.123456789",
			      "gid",
			      "3000000000",
			      "SCHILY.xattr.security.capability",
			      "\x01\x02",
			      "LIBARCHIVE.xattr.user.a%3Db",
			      "aGVsbG8=",
			      "size",
			      "5"};
	tb_pax(&b, 'x', 6, x_kv);
	tb_entry(&b, &(struct tb_ent){
			 .name = "short", .type = '0', .data = "12345", .size = 5, .mode = 0600});
	tb_entry(&b, &(struct tb_ent){.name = "big",
				      .type = '0',
				      .b256 = 1,
				      .mtime = -5,
				      .uid = 7,
				      .size = 3,
				      .data = "abc"});
	tb_end(&b);
	tb_file(&b, "after-end", "x", 0644);
	*tb = b;
}

static void check_features(const struct got *gp, const struct tb *bp)
{
	CHECK_INT(gp->n, 13);
	CHECK_STR(gp->e[0].path, "");
	CHECK_STR(gp->e[1].path, "etc");
	CHECK_INT(gp->e[1].type, ROOTFS_DIR);
	CHECK_STR(gp->e[2].path, "etc/hostname");
	CHECK_INT(gp->e[2].size, 4);
	CHECK(memcmp(bp->buf + gp->e[2].data_off, "box\n", 4) == 0);
	CHECK_INT(gp->e[3].mode, 04755);
	CHECK_INT(gp->e[4].mode, 01777);
	CHECK_STR(gp->e[5].path, "usr/lib");
	CHECK_STR(gp->e[5].link, "../lib64");
	CHECK_INT(gp->e[6].type, ROOTFS_HARDLINK);
	CHECK_STR(gp->e[6].link, "usr/bin/su");
	CHECK_INT(gp->e[7].type, ROOTFS_CHR);
	CHECK_INT(gp->e[7].major, 1);
	CHECK_INT(gp->e[7].minor, 3);
	CHECK_INT(gp->e[8].type, ROOTFS_BLK);
	CHECK_INT(gp->e[9].type, ROOTFS_FIFO);
	CHECK_STR(gp->e[10].path, longname);
	CHECK_STR(gp->e[10].link, longlink);
	CHECK_STR(gp->e[11].path, paxpath + 2);
	CHECK_INT(gp->e[11].size, 5);
	CHECK(memcmp(bp->buf + gp->e[11].data_off, "12345", 5) == 0);
	CHECK_INT(gp->e[11].mtime, 1700000000);
	CHECK_INT(gp->e[11].nsec, 123456789);
	CHECK_INT(gp->e[11].uid, 4242);
	CHECK_INT(gp->e[11].gid, 3000000000u);
	CHECK_INT(gp->e[11].n_xa, 2);
	CHECK_STR(gp->e[11].xa_name[0], "security.capability");
	CHECK_INT(gp->e[11].xa_len[0], 2);
	CHECK_STR(gp->e[11].xa_name[1], "user.a=b");
	CHECK(gp->e[11].xa_len[1] == 5 && memcmp(gp->e[11].xa_val[1], "hello", 5) == 0);
	CHECK_STR(gp->e[12].path, "big");
	CHECK_INT(gp->e[12].mtime, -5);
	CHECK_INT(gp->e[12].uid, 4242); /* the global record still applies */
	CHECK(memcmp(bp->buf + gp->e[12].data_off, "abc", 3) == 0);
}

/* Parsed at every chunk size from one byte to the whole stream. */
static void test_features(void)
{
	struct tb b;
	static struct got g;
	features_stream(&b);
	size_t chunks[] = {1, 7, 511, 512, 513, 4096, b.len};
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		CHECK_INT(parse(&b, chunks[c], 0, &g), 0);
		check_features(&g, &b);
	}
	free(b.buf);
}

static void test_pax_time(void)
{
	struct tb b = {0};
	static struct got g;
	const char *kv[] = {"mtime", "-1.25"};
	tb_pax(&b, 'x', 1, kv);
	tb_file(&b, "old", "", 0644);
	tb_end(&b);
	CHECK_INT(parse(&b, 100, 0, &g), 0);
	CHECK_INT(g.n, 1);
	CHECK_INT(g.e[0].mtime, -2);
	CHECK_INT(g.e[0].nsec, 750000000);
	free(b.buf);
}

/* Refused and odd entries are skipped or shown plainly; the rest goes on. */
static void test_skips(void)
{
	struct tb b = {0};
	static struct got g;
	tb_file(&b, "../escape", "x", 0644);
	tb_file(&b, "a/../../b", "x", 0644);
	tb_entry(&b, &(struct tb_ent){.name = "hl", .type = '1', .link = "../etc/shadow"});
	tb_entry(&b, &(struct tb_ent){.name = "sparse", .type = 'S', .data = "sp", .size = 2});
	tb_entry(&b, &(struct tb_ent){.name = "weird", .type = 'Z', .data = "zz", .size = 2});
	char *huge = malloc(ROOTFS_PATH_MAX + 10);
	memset(huge, 'h', ROOTFS_PATH_MAX + 9);
	huge[ROOTFS_PATH_MAX + 9] = 0;
	const char *kv[] = {"path", huge};
	tb_pax(&b, 'x', 1, kv);
	tb_file(&b, "too-long", "x", 0644);
	const char *bad[] = {"mtime", "12x"};
	tb_pax(&b, 'x', 1, bad);
	tb_file(&b, "bad-mtime", "y", 0644);
	tb_file(&b, "ok", "fine", 0644);
	tb_end(&b);
	CHECK_INT(parse(&b, 333, 0, &g), 0);
	CHECK_INT(g.n, 4);
	CHECK_STR(g.e[0].path, "sparse");
	CHECK_INT(g.e[0].type, ROOTFS_REG);
	CHECK_INT(g.e[0].size, 2);
	CHECK_STR(g.e[1].path, "weird");
	CHECK_STR(g.e[2].path, "bad-mtime"); /* the bad record alone is ignored */
	CHECK_INT(g.e[2].mtime, 1700000000);
	CHECK_STR(g.e[3].path, "ok");
	CHECK(memcmp(b.buf + g.e[3].data_off, "fine", 4) == 0);
	free(huge);
	free(b.buf);
}

static void test_hostile(void)
{
	struct tb b = {0};
	static struct got g;

	/* A header cut short, and data cut short. */
	tb_file(&b, "a", "hello", 0644);
	size_t full = b.len;
	b.len = 300; /* shorter than a tar header: not a tar archive */
	CHECK_INT(parse(&b, 64, 0, &g), -EMEDIUMTYPE);
	b.len = 512 + 3;
	CHECK_INT(parse(&b, 64, 0, &g), -EIO);
	CHECK_INT(g.n, 1);
	b.len = full;
	CHECK_INT(parse(&b, 64, 0, &g), 0); /* no end blocks: accepted at a boundary */

	/* Absurd sizes: 8 GiB declared in a short stream; 2^62 and more; negative. */
	b.len = 0;
	tb_entry(&b, &(struct tb_ent){.name = "huge", .type = '0', .size = 077777777777ull});
	tb_put(&b, NULL, 4096);
	CHECK_INT(parse(&b, 4096, 0, &g), -EIO);
	b.len = 0;
	tb_entry(&b, &(struct tb_ent){
			 .name = "huger", .type = '0', .b256 = 1, .size = (uint64_t)INT64_MAX});
	CHECK_INT(parse(&b, 512, 0, &g), -EIO);
	b.len = 0;
	tb_entry(&b, &(struct tb_ent){.name = "neg", .type = '0', .b256 = 1, .size = (uint64_t)-7});
	CHECK_INT(parse(&b, 512, 0, &g), -EIO);

	/* A PAX record declared at 100 MiB (skipped, not buffered), cut short. */
	b.len = 0;
	tb_entry(&b, &(struct tb_ent){.name = "PaxHeader", .type = 'x', .size = 100u << 20});
	tb_put(&b, NULL, 1 << 20);
	CHECK_INT(parse(&b, 65536, 0, &g), -EIO);

	free(b.buf);
}

static void test_hostile_records(void)
{
	struct tb b = {0};
	static struct got g;

	/* A real 2 MiB PAX record: it and its entry are skipped, the next is kept. */
	char *big = malloc(2u << 20);
	memset(big, 'v', (2u << 20) - 1);
	big[(2u << 20) - 1] = 0;
	tb_entry(&b,
		 &(struct tb_ent){.name = "PaxHeader", .type = 'x', .data = big, .size = 2u << 20});
	tb_file(&b, "described", "d", 0644);
	tb_file(&b, "next", "n", 0644);
	tb_end(&b);
	CHECK_INT(parse(&b, 100000, 0, &g), 0);
	CHECK_INT(g.n, 1);
	CHECK_STR(g.e[0].path, "next");
	free(big);

	/* A bad checksum in the first header: not a tar; in a later one: a
	 * damaged tar. */
	b.len = 0;
	tb_entry(&b, &(struct tb_ent){.name = "x", .type = '0', .bad_checksum = 1});
	CHECK_INT(parse(&b, 512, 0, &g), -EMEDIUMTYPE);
	b.len = 0;
	tb_file(&b, "fine", "f", 0644);
	tb_entry(&b, &(struct tb_ent){.name = "x", .type = '0', .bad_checksum = 1});
	CHECK_INT(parse(&b, 512, 0, &g), -EIO);

	/* Too many entries. */
	b.len = 0;
	for (int i = 0; i < 5; i++)
		tb_file(&b, "many", "", 0644);
	tb_end(&b);
	CHECK_INT(parse(&b, 512, 3, &g), -EFBIG);
	CHECK_INT(parse(&b, 512, 5, &g), 0);

	/* Garbage that is not a tar at all. */
	b.len = 0;
	tb_put(&b, "this is not a tar archive", 25);
	tb_put(&b, NULL, 600);
	b.buf[700] = 1;
	CHECK_INT(parse(&b, 10, 0, &g), -EMEDIUMTYPE);
	free(b.buf);
}

int main(void)
{
	test_norm();
	test_features();
	test_pax_time();
	test_skips();
	test_hostile();
	test_hostile_records();
	return check_summary("test_rootfs_tar");
}
