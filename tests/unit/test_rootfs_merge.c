/* Merged and per-layer trees: OCI whiteouts and opaque directories,
 * delete-then-recreate, duplicates, hardlinks into lower layers, nlink,
 * missing parents, xattr hiding, inode numbers, where the bytes are. */
#include <errno.h>

#include "check.h"
#include "fs/rootfs/rootfs_i.h"
#include "rootfs_util.h"

static struct tb layers[3];
static struct rootfs_index *ix[3];

static const struct rootfs_node *at(const struct rootfs_tree *t, const char *path)
{
	char buf[256];
	const struct rootfs_node *n = rootfs_tree_root(t);
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *save, *c = strtok_r(buf, "/", &save); n && c; c = strtok_r(NULL, "/", &save))
		n = rootfs_tree_lookup(t, n, c);
	return n;
}

static struct rootfs_attr attr(const struct rootfs_tree *t, const char *path)
{
	struct rootfs_attr a = {0};
	const struct rootfs_node *n = at(t, path);
	if (n)
		rootfs_node_attr(t, n, &a);
	else
		CHECK_FAILED("%s is missing", path);
	return a;
}

/* A regular file's bytes through the span reader. */
static char *content(const struct rootfs_tree *t, const char *path)
{
	static char buf[256];
	struct rootfs_data d;
	const struct rootfs_node *n = at(t, path);
	buf[0] = 0;
	if (!n || rootfs_node_data(t, n, &d) < 0)
		return buf;
	struct mem_src m = {layers[d.layer].buf, layers[d.layer].len, -1, 0};
	struct rootfs_source src = {mem_read, &m};
	struct rootfs_spans *s = NULL;
	rootfs_spans_new(1 << 20, &s);
	ssize_t got = rootfs_spans_read(s, ix[d.layer], &src, d.offset, buf, d.size);
	buf[got > 0 ? got : 0] = 0;
	rootfs_spans_free(s);
	return buf;
}

static void make_layers(void)
{
	struct tb *b = &layers[0];
	const char *xa[] = {"SCHILY.xattr.trusted.overlay.opaque", "y",
			    "SCHILY.xattr.security.capability",	   "cap",
			    "SCHILY.xattr.user.overlay.origin",	   "o"};
	tb_entry(b, &(struct tb_ent){.name = "./", .type = '5', .mode = 0700, .uid = 5});
	tb_dir(b, "etc/");
	tb_file(b, "etc/a", "A0", 0644);
	tb_pax(b, 'x', 3, xa);
	tb_file(b, "etc/b", "B0", 0640);
	tb_file(b, "d1/x", "X", 0644);
	tb_file(b, "d1/sub/y", "Y", 0644);
	tb_file(b, "opq/lower1", "L1", 0644);
	tb_file(b, "re/old", "OLD", 0644);
	tb_file(b, "f", "F0", 0644);
	tb_file(b, "t/file", "TF", 0755);
	tb_file(b, "d2/kid", "K", 0644);
	tb_file(b, "d3/f", "D3F", 0644);
	tb_file(b, "notdir", "N", 0644);
	tb_end(b);

	b = &layers[1];
	tb_entry(b, &(struct tb_ent){.name = "etc", .type = '5', .mode = 0711});
	tb_file(b, "etc/.wh.a", "", 0644);
	tb_file(b, ".wh.d1", "", 0644);
	tb_file(b, "opq/new", "NEW", 0644); /* before the marker: still this layer's */
	tb_file(b, "opq/.wh..wh..opq", "", 0644);
	tb_file(b, ".wh.re", "", 0644);
	tb_dir(b, "re");
	tb_file(b, "re/new", "RN", 0644);
	tb_file(b, "f", "F1a", 0644);
	tb_file(b, "f", "F1b", 0600);
	tb_entry(b, &(struct tb_ent){.name = "h1", .type = '1', .link = "/t/file"});
	tb_entry(b, &(struct tb_ent){.name = "sub/h2", .type = '1', .link = "./t/file"});
	tb_entry(b, &(struct tb_ent){.name = "h3", .type = '1', .link = "sub/h2"});
	tb_entry(b, &(struct tb_ent){.name = "missing", .type = '1', .link = "nope"});
	tb_entry(b, &(struct tb_ent){.name = "la", .type = '1', .link = "lb"});
	tb_entry(b, &(struct tb_ent){.name = "lb", .type = '1', .link = "la"});
	tb_entry(b, &(struct tb_ent){.name = "self", .type = '1', .link = "self"});
	tb_entry(b, &(struct tb_ent){.name = "todir", .type = '1', .link = "etc"});
	tb_file(b, "deep/er/file", "DEEP", 0644);
	tb_file(b, "notdir/child", "C", 0644);
	tb_end(b);

	b = &layers[2];
	tb_file(b, ".wh.h1", "", 0644);
	tb_entry(b, &(struct tb_ent){.name = "etc/a", .type = '2', .link = "b"});
	tb_file(b, "d2", "NOW A FILE", 0644);
	tb_entry(b, &(struct tb_ent){.name = "d3", .type = '1', .link = "d3/f"});
	tb_dir(b, "notdir");
	tb_end(b);
	for (int i = 0; i < 3; i++)
		CHECK_INT(build_ix(layers[i].buf, layers[i].len, 4096, 512, NULL, NULL, &ix[i]), 0);
}

static void no_markers(const struct rootfs_node *n)
{
	for (size_t i = 0; i < rootfs_node_nchildren(n); i++) {
		const struct rootfs_node *k = rootfs_node_child(n, i);
		if (strncmp(rootfs_node_name(k), ".wh.", 4) == 0)
			CHECK_FAILED("marker %s shown", rootfs_node_name(k));
		if (i &&
		    strcmp(rootfs_node_name(rootfs_node_child(n, i - 1)), rootfs_node_name(k)) >= 0)
			CHECK_FAILED("children of %s out of order", rootfs_node_name(n));
		CHECK(rootfs_node_parent(k) == n);
		no_markers(k);
	}
}

static void test_merged(void)
{
	struct rootfs_tree *t = NULL;
	CHECK_INT(rootfs_tree_merge("sha256:img", ix, 3, &t), 0);
	if (!t)
		return;
	const struct rootfs_node *root = rootfs_tree_root(t);
	no_markers(root);
	/* The root's own entry. */
	CHECK_INT(attr(t, "").mode, 0700);
	CHECK_INT(attr(t, "").uid, 5);
	/* Whiteouts, opaque directories, delete-then-recreate. */
	CHECK(at(t, "d1") == NULL);
	CHECK(at(t, "d1/sub/y") == NULL);
	CHECK_INT(rootfs_node_nchildren(at(t, "opq")), 1);
	CHECK_STR(content(t, "opq/new"), "NEW");
	CHECK_INT(rootfs_node_nchildren(at(t, "re")), 1);
	CHECK_STR(content(t, "re/new"), "RN");
	/* A directory entry updates attributes and keeps children. */
	CHECK_INT(attr(t, "etc").mode, 0711);
	CHECK_STR(content(t, "etc/b"), "B0");
	CHECK_INT(attr(t, "etc/a").type, ROOTFS_SYMLINK);
	CHECK_STR(attr(t, "etc/a").symlink, "b");
	CHECK_INT(attr(t, "etc/a").size, 1);
	CHECK_INT(attr(t, "etc/a").layer, 2);
	CHECK_INT(attr(t, "etc/b").layer, 0);
	/* The last duplicate wins. */
	CHECK_STR(content(t, "f"), "F1b");
	CHECK_INT(attr(t, "f").mode, 0600);
	CHECK_INT(attr(t, "f").layer, 1);
	rootfs_tree_free(t);
}

static void test_merged_links(void)
{
	struct rootfs_tree *t = NULL;
	struct rootfs_data d1, d2;
	CHECK_INT(rootfs_tree_merge("sha256:img", ix, 3, &t), 0);
	if (!t)
		return;
	/* Hardlinks into a lower layer, absolute and relative, chained; h1 gone. */
	CHECK(at(t, "h1") == NULL);
	struct rootfs_attr tf = attr(t, "t/file"), h2 = attr(t, "sub/h2"), h3 = attr(t, "h3");
	CHECK_INT(tf.nlink, 3);
	CHECK_INT(h2.nlink, 3);
	CHECK(tf.ino == h2.ino && tf.ino == h3.ino);
	CHECK(rootfs_node_group(at(t, "t/file")) == rootfs_node_group(at(t, "h3")));
	CHECK_INT(h3.mode, 0755);
	CHECK_INT(h3.layer, 0);
	CHECK_STR(content(t, "h3"), "TF");
	CHECK_INT(rootfs_node_data(t, at(t, "h3"), &d1), 0);
	CHECK_INT(rootfs_node_data(t, at(t, "t/file"), &d2), 0);
	CHECK(d1.layer == d2.layer && d1.offset == d2.offset && d1.size == 2);
	/* Skipped links: missing, a loop, itself, a directory. */
	CHECK(at(t, "missing") == NULL && at(t, "la") == NULL && at(t, "lb") == NULL);
	CHECK(at(t, "self") == NULL && at(t, "todir") == NULL);
	/* Missing parents; a file under a file is skipped. */
	CHECK_INT(attr(t, "deep").type, ROOTFS_DIR);
	CHECK_INT(attr(t, "deep/er").mode, 0755);
	CHECK_STR(content(t, "deep/er/file"), "DEEP");
	CHECK_INT(attr(t, "notdir").type, ROOTFS_DIR);
	CHECK_INT(rootfs_node_nchildren(at(t, "notdir")), 0);
	/* A directory replaced by a file, and by a link into itself. */
	CHECK_STR(content(t, "d2"), "NOW A FILE");
	CHECK_INT(rootfs_node_nchildren(at(t, "d2")), 0);
	CHECK(rootfs_tree_lookup(t, at(t, "d2"), "kid") == NULL);
	CHECK_STR(content(t, "d3"), "D3F");
	CHECK_INT(attr(t, "d3").nlink, 1);
	/* Directory nlink = 2 + subdirectories. */
	CHECK_INT(attr(t, "deep").nlink, 3);
	CHECK_INT(attr(t, "etc").nlink, 2);
	/* Visible xattrs: overlay ones hidden. */
	const char *name;
	const void *val;
	size_t len;
	CHECK_INT(rootfs_node_xattr(t, at(t, "etc/b"), 0, &name, &val, &len), 0);
	CHECK_STR(name, "security.capability");
	CHECK(len == 3 && memcmp(val, "cap", 3) == 0);
	CHECK_INT(rootfs_node_xattr(t, at(t, "etc/b"), 1, &name, &val, &len), -ENOENT);
	CHECK_INT(rootfs_node_data(t, at(t, "etc"), &d1), -EINVAL);
	rootfs_tree_free(t);
}

/* Inode numbers: stable across builds, per image, found by number. */
static void test_inodes(void)
{
	struct rootfs_tree *t = NULL, *t2 = NULL, *t3 = NULL;
	CHECK_INT(rootfs_tree_merge("sha256:img", ix, 3, &t), 0);
	CHECK_INT(rootfs_tree_merge("sha256:img", ix, 3, &t2), 0);
	CHECK_INT(rootfs_tree_merge("sha256:other", ix, 3, &t3), 0);
	if (!t || !t2 || !t3)
		goto out;
	uint64_t tf = attr(t, "t/file").ino;
	CHECK(attr(t2, "etc/b").ino == attr(t, "etc/b").ino);
	CHECK(attr(t2, "h3").ino == tf);
	CHECK_INT(rootfs_tree_nodes(t2), rootfs_tree_nodes(t));
	CHECK(attr(t3, "etc/b").ino != attr(t, "etc/b").ino);
	CHECK(attr(t, "etc/b").ino != attr(t, "etc").ino);
	CHECK(attr(t, "").ino > 1);
	CHECK(rootfs_tree_by_ino(t, attr(t, "etc/b").ino) == at(t, "etc/b"));
	CHECK(rootfs_node_group(rootfs_tree_by_ino(t, tf)) == rootfs_node_group(at(t, "h3")));
	CHECK(rootfs_tree_by_ino(t, 12345) == NULL);
	CHECK(rootfs_tree_lookup(t, at(t, "f"), "x") == NULL);
out:
	rootfs_tree_free(t);
	rootfs_tree_free(t2);
	rootfs_tree_free(t3);
}

/* One layer as stored: markers are files; links outside it are skipped. */
static void test_layer_view(void)
{
	struct rootfs_tree *t = NULL;
	CHECK_INT(rootfs_tree_layer("sha256:img@layers/1", ix[1], 1, &t), 0);
	if (!t)
		return;
	CHECK_INT(attr(t, ".wh.d1").type, ROOTFS_REG);
	CHECK_INT(attr(t, "opq/.wh..wh..opq").layer, 1);
	CHECK_INT(attr(t, "etc/.wh.a").type, ROOTFS_REG);
	CHECK(at(t, "etc/b") == NULL);
	CHECK(at(t, "h1") == NULL);
	CHECK_STR(content(t, "f"), "F1b");
	CHECK(at(t, "sub/h2") == NULL && at(t, "h3") == NULL); /* targets in layer 0 */
	rootfs_tree_free(t);
	CHECK_INT(rootfs_tree_layer("sha256:img@layers/0", ix[0], 0, &t), 0);
	if (t) {
		CHECK_STR(content(t, "d1/sub/y"), "Y");
		CHECK_INT(rootfs_tree_nodes(t), 20);
		rootfs_tree_free(t);
	}
}

/* Parent paths through symlinks resolve inside the tree, as umoci does. */
static void test_symlink_parents(void)
{
	struct tb b[2] = {{0}, {0}};
	struct rootfs_index *l[2] = {NULL, NULL};
	struct rootfs_tree *t = NULL;
	tb_dir(&b[0], "usr");
	tb_dir(&b[0], "usr/lib");
	tb_file(&b[0], "usr/lib/a", "A", 0644);
	tb_entry(&b[0], &(struct tb_ent){.name = "lib", .type = '2', .link = "usr/lib"});
	tb_entry(&b[0], &(struct tb_ent){.name = "abs", .type = '2', .link = "/usr/lib"});
	tb_entry(&b[0], &(struct tb_ent){.name = "up", .type = '2', .link = "../../../usr"});
	tb_entry(&b[0], &(struct tb_ent){.name = "loop1", .type = '2', .link = "loop2"});
	tb_entry(&b[0], &(struct tb_ent){.name = "loop2", .type = '2', .link = "loop1"});
	tb_file(&b[0], "usr/file", "F", 0644);
	tb_entry(&b[0], &(struct tb_ent){.name = "tofile", .type = '2', .link = "usr/file"});
	tb_entry(&b[0], &(struct tb_ent){.name = "dangling", .type = '2', .link = "missing/dir"});
	tb_end(&b[0]);
	tb_file(&b[1], "lib/b", "B", 0644);
	tb_file(&b[1], "abs/c", "C", 0644);
	tb_file(&b[1], "up/lib/d", "D", 0644);
	tb_file(&b[1], "loop1/x", "X", 0644);
	tb_file(&b[1], "tofile/x", "X", 0644);
	tb_file(&b[1], "dangling/e", "E", 0644);
	tb_file(&b[1], "lib/.wh.a", "", 0644);
	tb_entry(&b[1], &(struct tb_ent){.name = "h", .type = '1', .link = "abs/b"});
	tb_end(&b[1]);
	for (int i = 0; i < 2; i++)
		CHECK_INT(build_ix(b[i].buf, b[i].len, 0, 512, NULL, NULL, &l[i]), 0);
	if (l[0] && l[1])
		CHECK_INT(rootfs_tree_merge("sha256:sym", l, 2, &t), 0);
	if (t) {
		const struct rootfs_node *lib = at(t, "usr/lib");
		CHECK_INT(rootfs_node_nchildren(lib), 3);
		CHECK(at(t, "usr/lib/b") && at(t, "usr/lib/c") && at(t, "usr/lib/d"));
		CHECK(at(t, "usr/lib/a") == NULL);
		CHECK_INT(attr(t, "lib").type, ROOTFS_SYMLINK);
		CHECK_INT(attr(t, "missing/dir/e").type, ROOTFS_REG);
		CHECK(at(t, "loop1/x") == NULL && at(t, "tofile/x") == NULL);
		CHECK_INT(attr(t, "h").nlink, 2);
		CHECK(attr(t, "h").ino == attr(t, "usr/lib/b").ino);
		rootfs_tree_free(t);
	}
	for (int i = 0; i < 2; i++) {
		rootfs_index_free(l[i]);
		free(b[i].buf);
	}
}

/* A hostile layer: thousands of nested names and links do not blow up. */
static void test_hostile(void)
{
	struct tb b = {0};
	char name[ROOTFS_PATH_MAX];
	size_t n = 0;
	for (int i = 0; i < 1000 && n + 3 < sizeof(name) - 10; i++) {
		memcpy(name + n, "d/", 2);
		n += 2;
		name[n] = 0;
		tb_gnu_long(&b, 'L', name);
		tb_dir(&b, "x");
	}
	for (int i = 0; i < 2000; i++) {
		char a[32], l[32];
		snprintf(a, sizeof(a), "l%d", i);
		snprintf(l, sizeof(l), "l%d", (i + 1) % 2000);
		tb_entry(&b, &(struct tb_ent){.name = a, .type = '1', .link = l});
	}
	tb_end(&b);
	struct rootfs_index *h = NULL;
	struct rootfs_tree *t = NULL;
	CHECK_INT(build_ix(b.buf, b.len, 0, 4096, NULL, NULL, &h), 0);
	if (h) {
		CHECK_INT(rootfs_tree_merge("sha256:h", &h, 1, &t), 0);
		if (t)
			CHECK_INT(rootfs_tree_nodes(t), 1 + 1000);
		rootfs_tree_free(t);
	}
	rootfs_index_free(h);
	free(b.buf);
}

/* Symlinked parents cannot make a path longer than a tar name. */
static void test_long_through_links(void)
{
	struct tb b = {0};
	char chain[ROOTFS_PATH_MAX], name[200];
	size_t n = 0;
	while (n + 2 < 4000) {
		memcpy(chain + n, "a/", 2);
		n += 2;
	}
	chain[n - 1] = 0; /* "a/a/.../a": n / 2 = 1999 levels */
	char *leaf = malloc(n + 8);
	memcpy(leaf, chain, n - 1);
	memcpy(leaf + n - 1, "/f", 3);
	tb_gnu_long(&b, 'L', leaf);
	tb_file(&b, "x", "leaf", 0644); /* named by the long name */
	tb_gnu_long(&b, 'K', chain);
	tb_entry(&b, &(struct tb_ent){.name = "s", .type = '2', .link = "x"});
	memset(name, 'b', sizeof(name));
	memcpy(name, "s/", 2);
	memcpy(name + 150, "/y", 3); /* 3997 + 1 + 148 + 2 > 4095 */
	tb_gnu_long(&b, 'L', name);
	tb_file(&b, "z", "too deep", 0644);
	tb_file(&b, "s/ok", "fits", 0644);
	tb_end(&b);
	struct rootfs_index *h = NULL;
	struct rootfs_tree *t = NULL;
	CHECK_INT(build_ix(b.buf, b.len, 0, 4096, NULL, NULL, &h), 0);
	if (h)
		CHECK_INT(rootfs_tree_merge("sha256:long", &h, 1, &t), 0);
	if (t) {
		/* root, the chain, f, s, ok */
		CHECK_INT(rootfs_tree_nodes(t), 1 + n / 2 + 1 + 1 + 1);
		rootfs_tree_free(t);
	}
	rootfs_index_free(h);
	free(leaf);
	free(b.buf);
}

int main(void)
{
	make_layers();
	if (ix[0] && ix[1] && ix[2]) {
		test_merged();
		test_merged_links();
		test_inodes();
		test_layer_view();
	}
	test_symlink_parents();
	test_hostile();
	test_long_through_links();
	for (int i = 0; i < 3; i++) {
		rootfs_index_free(ix[i]);
		free(layers[i].buf);
	}
	return check_summary("test_rootfs_merge");
}
