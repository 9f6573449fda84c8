/* Searches of a listing (fs/tree/catalog_index.c): a small listing is
 * searched linearly, a large one through its index; both answer the same,
 * including namespace prefixes next to names that sort between "a" and
 * "a/" ("a-b", "a.b"). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog.h"

static struct fs_list *make_list(size_t nimages, const char *const *repos, size_t nrepos)
{
	struct fs_list *l = calloc(1, sizeof *l);
	assert(l);
	l->refs = 1;
	l->images.v = calloc(nimages + 1, sizeof *l->images.v);
	l->images.n = nimages;
	for (size_t i = 0; i < nimages; i++) {
		struct ecr_image *im = &l->images.v[i];
		char buf[80];
		snprintf(buf, sizeof buf, "sha256:%064zx", i * 7919 % 100003);
		im->digest = strdup(buf);
		/* every third image untagged, every fifth with two tags */
		im->ntags = i % 3 == 0 ? 0 : i % 5 == 0 ? 2 : 1;
		im->tags = calloc(2, sizeof *im->tags);
		for (size_t t = 0; t < im->ntags; t++) {
			snprintf(buf, sizeof buf, "v%zu%s", i, t ? "-b" : "");
			im->tags[t] = strdup(buf);
		}
	}
	l->repos.v = calloc(nrepos + 1, sizeof *l->repos.v);
	l->repos.n = nrepos;
	for (size_t i = 0; i < nrepos; i++)
		l->repos.v[i].name = strdup(repos[i]);
	return l;
}

static void check_images(size_t n)
{
	struct fs_list *l = make_list(n, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		const struct ecr_image *im = &l->images.v[i];
		assert(fs_list_find_digest(l, im->digest) == im);
		for (size_t t = 0; t < im->ntags; t++)
			assert(fs_list_find_tag(l, im->tags[t]) == im);
	}
	assert(!fs_list_find_tag(l, "v0") && !fs_list_find_tag(l, "nope"));
	assert(!fs_list_find_digest(l, "sha256:ffff"));
	assert((l->index != NULL) == (n >= 32)); /* the index only when it pays */
	fs_list_put(l);
}

static void check_namespaces(size_t filler)
{
	static const char *const base[] = {"a", "a-b", "a.b", "a/c", "a/d/e", "ab", "b/x/y",
					   "a_b", "c.d/e"};
	size_t nb = sizeof base / sizeof *base, n = nb + filler;
	const char **names = calloc(n, sizeof *names);
	char (*fill)[32] = calloc(filler + 1, sizeof *fill);
	for (size_t i = 0; i < nb; i++)
		names[i] = base[i];
	for (size_t i = 0; i < filler; i++) {
		snprintf(fill[i], sizeof fill[i], "z/r%04zu", i);
		names[nb + i] = fill[i];
	}
	struct fs_list *l = make_list(0, names, n);
	const struct ecr_repo *r;
	assert(fs_list_find_ns(l, "a", &r) == 1 && r && !strcmp(r->name, "a"));
	assert(fs_list_find_ns(l, "a/d", &r) == 1 && r == NULL);
	assert(fs_list_find_ns(l, "a/d/e", &r) == 1 && r && !strcmp(r->name, "a/d/e"));
	assert(fs_list_find_ns(l, "b", &r) == 1 && r == NULL);
	assert(fs_list_find_ns(l, "b/x", &r) == 1 && r == NULL);
	assert(fs_list_find_ns(l, "c.d", &r) == 1 && r == NULL);
	assert(fs_list_find_ns(l, "c", &r) == 0 && r == NULL);
	assert(fs_list_find_ns(l, "a/", &r) == 0);
	assert(fs_list_find_ns(l, "a-", &r) == 0);
	assert(fs_list_find_ns(l, "b/x/y/z", &r) == 0);
	assert(fs_list_find_repo(l, "a_b") && !fs_list_find_repo(l, "a/d"));
	if (filler)
		assert(fs_list_find_ns(l, "z", &r) == 1 && fs_list_find_repo(l, "z/r0007"));
	assert((l->index != NULL) == (n >= 32));
	fs_list_put(l);
	free(names);
	free(fill);
}

int main(void)
{
	check_images(10);
	check_images(5000);
	check_namespaces(0);
	check_namespaces(2000);
	printf("ok\n");
	return 0;
}
