/* The inode table: children, kernel lookups and forgets, pending entries,
 * the two tiers of image directories kept. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/image.h"
#include "fs/tree/node.h"

static void count_pending(struct fs_node *n, void *arg)
{
	(void)n;
	(*(int *)arg)++;
}

static struct fs_image *an_image(void)
{
	static const char man[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
	    "\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":7},"
	    "\"layers\":[]}";
	char digest[72];
	fs_sha256_digest(man, strlen(man), digest);
	struct fs_image_src src = {.registry = "111111111111", .region = "us-east-1",
				   .repo = "team", .digest = digest, .refname = "v", .bytes = man,
				   .len = strlen(man)};
	struct fs_image *img = NULL;
	assert(fs_image_build(&src, NULL, NULL, &img) == 0);
	return img;
}

/* Image directories known to the kernel, in two tiers: listed ones (no
 * image in memory) and loaded ones; each tier gives up its least recently
 * used beyond its own bound, and loading an image moves its node. */
static void test_image_tiers(struct fs_node *ns)
{
	const size_t bound[2] = {[FS_TIER_LISTED] = 4, [FS_TIER_LOADED] = 2};
	struct fs_node *v[8], *out[8];
	char name[16];
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof name, "t%d", i);
		struct fs_node_tmpl t = {.kind = FS_N_IMAGE, .tag = name, .digest = "sha256:00"};
		v[i] = fs_node_make(ns, name, &t);
		fs_node_lookup_inc(v[i]); /* as READDIRPLUS or LOOKUP gives it */
		fs_node_touch(v[i]);
	}
	/* t0..t2 open their image: the loaded tier holds 3, bound 2 */
	struct fs_image *img = an_image();
	for (int i = 0; i < 3; i++)
		fs_image_put(fs_node_set_img(v[i], img));
	fs_node_touch(v[1]); /* t1 used again: t0 is the oldest loaded */
	size_t n = fs_node_images_over(bound, out, 8);
	/* loaded: t0 beyond 2; listed t3..t7 (5): t3 beyond 4 */
	assert(n == 2 && out[0] == v[0] && out[1] == v[3]);
	for (size_t i = 0; i < n; i++)
		fs_node_put(out[i]);
	/* each is handed out once */
	assert(fs_node_images_over(bound, out, 8) == 0);
	/* a small max hands out the rest later */
	const size_t tight[2] = {1, 1};
	assert(fs_node_images_over(tight, out, 1) == 1 && out[0] == v[2]);
	fs_node_put(out[0]);
	assert(fs_node_images_over(tight, out, 8) == 3);
	assert(out[0] == v[4] && out[1] == v[5] && out[2] == v[6]);
	for (int i = 0; i < 3; i++)
		fs_node_put(out[i]);
	for (int i = 0; i < 8; i++) {
		uint64_t ino = v[i]->ino;
		fs_node_put(v[i]);
		fs_node_forget(ino, 1);
		assert(fs_node_get(ino) == NULL);
	}
	fs_image_put(img);
}

/* A child keeps its parent's location strings instead of copies (the
 * parent lives as long as its children): the thousands of nodes under a
 * walked TAG@rootfs cost their struct and name only. Strings that differ
 * are the node's own. */
static void test_shared_strings(struct fs_node *ns)
{
	struct fs_node_tmpl ti = {.kind = FS_N_IMAGE, .tag = "v9", .digest = "sha256:99"};
	struct fs_node *tag = fs_node_make(ns, "v9", &ti);
	assert(tag && tag->repo == ns->repo && tag->registry == ns->registry &&
	       tag->region == ns->region && !strcmp(tag->tag, "v9") && !strcmp(tag->digest, "sha256:99"));
	struct fs_node_tmpl tv = {.kind = FS_N_VIEW, .view = 1};
	struct fs_node *view = fs_node_make(tag, "v9@x", &tv);
	struct fs_node_tmpl te = {.kind = FS_N_VIEW_ENTRY, .blob_idx = 3};
	struct fs_node *ent = fs_node_make(view, "a-rather-long-file-name-of-the-image.txt", &te);
	assert(view && ent && view->tag == tag->tag && ent->tag == tag->tag &&
	       ent->repo == ns->repo && ent->registry == ns->registry && ent->region == ns->region &&
	       ent->digest == NULL && ent->blob_idx == 3 && ent->view == 1);
	assert(!strcmp(ent->name, "a-rather-long-file-name-of-the-image.txt"));
	/* a repository below the namespace has its own name */
	struct fs_node_tmpl tr = {.kind = FS_N_NAMESPACE, .repo = "team/app"};
	struct fs_node *app = fs_node_make(ns, "app", &tr);
	assert(app && app->repo != ns->repo && !strcmp(app->repo, "team/app") &&
	       app->registry == ns->registry);
	fs_node_put(app);
	/* the entry alone keeps the tag and view nodes, and so the strings */
	uint64_t ent_ino = ent->ino, tag_ino = tag->ino;
	fs_node_lookup_inc(ent);
	fs_node_put(ent);
	fs_node_put(view);
	fs_node_drop_child(ns, "v9");
	fs_node_put(tag);
	struct fs_node *g = fs_node_get(ent_ino);
	assert(g == ent && !strcmp(g->tag, "v9") && !strcmp(g->repo, "team"));
	assert(!strcmp(g->parent->parent->digest, "sha256:99"));
	fs_node_put(g);
	fs_node_forget(ent_ino, 1);
	assert(fs_node_get(ent_ino) == NULL && fs_node_get(tag_ino) == NULL);
}

int main(void)
{
	assert(fs_node_init(NULL) == 0);
	struct fs_node *root = fs_node_get(FS_ROOT_INO);
	assert(root && root->kind == FS_N_ROOT);

	struct fs_node_tmpl t = {.kind = FS_N_REGISTRY, .registry = "111111111111"};
	struct fs_node *reg = fs_node_make(root, "111111111111", &t);
	assert(reg && reg->ino != FS_ROOT_INO && !strcmp(reg->registry, "111111111111"));
	struct fs_node_tmpl tr = {.kind = FS_N_REGION, .region = "us-east-1"};
	struct fs_node *rg = fs_node_make(reg, "us-east-1", &tr);
	assert(rg && !strcmp(rg->registry, "111111111111") && !strcmp(rg->region, "us-east-1"));
	char *p = fs_node_path(rg);
	assert(!strcmp(p, "/111111111111/us-east-1"));
	free(p);
	p = fs_node_path(root);
	assert(!strcmp(p, "/"));
	free(p);

	/* The cached child is found by name while referenced. */
	struct fs_node *again = fs_node_child(reg, "us-east-1");
	assert(again == rg);
	fs_node_put(again);

	/* Kernel reference: survives our put, goes at FORGET. */
	uint64_t rg_ino = rg->ino;
	fs_node_lookup_inc(rg);
	fs_node_put(rg);
	struct fs_node *g = fs_node_get(rg_ino);
	assert(g == rg);
	fs_node_put(g);
	fs_node_forget(rg_ino, 1);
	assert(fs_node_get(rg_ino) == NULL);
	assert(fs_node_child(reg, "us-east-1") == NULL);

	/* Pending children shadow remote ones and are listed until removed. */
	struct fs_node_tmpl tn = {.kind = FS_N_NAMESPACE, .repo = "team"};
	struct fs_node *ns = fs_node_make(reg, "team", &tn);
	assert(ns);
	int dummy;
	struct fs_node *pd = fs_node_add_pending(ns, "newtag", FS_N_PENDING_DIR, &dummy);
	assert(pd && pd->pending && pd->push == &dummy && pd->kind == FS_N_PENDING_DIR);
	assert(!strcmp(pd->repo, "team"));
	errno = 0;
	assert(fs_node_add_pending(ns, "newtag", FS_N_PENDING_DIR, NULL) == NULL && errno == EEXIST);
	int n = 0;
	fs_node_foreach_pending(ns, count_pending, &n);
	assert(n == 1);
	/* a remote node of the same name does not replace the pending one */
	struct fs_node_tmpl ti = {.kind = FS_N_IMAGE, .tag = "newtag", .digest = "sha256:00"};
	struct fs_node *img = fs_node_make(ns, "newtag", &ti);
	assert(img == pd);
	fs_node_put(img);
	struct fs_node *c = fs_node_child(ns, "newtag");
	assert(c == pd);
	fs_node_put(c);
	uint64_t pd_ino = pd->ino;
	fs_node_lookup_inc(pd);
	fs_node_put(pd);
	fs_node_remove_pending(pd);
	n = 0;
	fs_node_foreach_pending(ns, count_pending, &n);
	assert(n == 0);
	assert(fs_node_child(ns, "newtag") == NULL);
	/* still valid for the kernel until FORGET */
	g = fs_node_get(pd_ino);
	assert(g == pd);
	fs_node_put(g);
	fs_node_forget(pd_ino, 1);
	assert(fs_node_get(pd_ino) == NULL);

	/* Replacing a remote child detaches the old one. */
	struct fs_node *i1 = fs_node_make(ns, "v1", &ti);
	fs_node_lookup_inc(i1);
	struct fs_node_tmpl ti2 = {.kind = FS_N_IMAGE, .tag = "v1", .digest = "sha256:11"};
	struct fs_node *i2 = fs_node_make(ns, "v1", &ti2);
	assert(i2 != i1 && i2->ino != i1->ino);
	c = fs_node_child(ns, "v1");
	assert(c == i2);
	fs_node_put(c);
	g = fs_node_get(i1->ino); /* the old one lives while the kernel knows it */
	assert(g == i1 && !strcmp(g->digest, "sha256:00"));
	fs_node_put(g);
	fs_node_forget(i1->ino, 1);
	fs_node_put(i1);
	fs_node_put(i2);

	test_image_tiers(ns);
	test_shared_strings(ns);
	fs_node_put(ns);
	fs_node_put(reg);
	fs_node_put(root);
	fs_node_shutdown();
	printf("ok\n");
	return 0;
}
