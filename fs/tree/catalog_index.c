/* Finding a tag, a digest or a repository in a listing. A listing is an
 * immutable snapshot; the first search of a large one builds its index
 * (names sorted, binary search), published once with a compare-and-swap,
 * so READDIRPLUS and `ls -l` of 5,000 tags cost n log n, not n². */
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog.h"

/* Below this many entries a linear search is as quick as the index. */
#define INDEX_MIN 32

struct name_ref {
	const char *name;
	const void *v; /* the ecr_image or ecr_repo */
};

struct fs_list_index {
	struct name_ref *tags, *digests, *repos;
	size_t ntags, ndigests, nrepos;
};

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct name_ref *)a)->name, ((const struct name_ref *)b)->name);
}

void fs_list_index_free(struct fs_list_index *x)
{
	if (!x)
		return;
	free(x->tags);
	free(x->digests);
	free(x->repos);
	free(x);
}

static struct fs_list_index *index_build(const struct fs_list *l)
{
	struct fs_list_index *x = calloc(1, sizeof *x);
	size_t ntags = 0;
	for (size_t i = 0; i < l->images.n; i++)
		ntags += l->images.v[i].ntags;
	if (!x || !(x->tags = calloc(ntags + 1, sizeof *x->tags)) ||
	    !(x->digests = calloc(l->images.n + 1, sizeof *x->digests)) ||
	    !(x->repos = calloc(l->repos.n + 1, sizeof *x->repos))) {
		fs_list_index_free(x);
		return NULL;
	}
	for (size_t i = 0; i < l->images.n; i++) {
		const struct ecr_image *im = &l->images.v[i];
		for (size_t t = 0; t < im->ntags; t++)
			x->tags[x->ntags++] = (struct name_ref){im->tags[t], im};
		x->digests[x->ndigests++] = (struct name_ref){im->digest, im};
	}
	for (size_t i = 0; i < l->repos.n; i++)
		x->repos[x->nrepos++] = (struct name_ref){l->repos.v[i].name, &l->repos.v[i]};
	/* Stable order is not needed: tags, digests and names are unique. */
	qsort(x->tags, x->ntags, sizeof *x->tags, cmp_ref);
	qsort(x->digests, x->ndigests, sizeof *x->digests, cmp_ref);
	qsort(x->repos, x->nrepos, sizeof *x->repos, cmp_ref);
	return x;
}

/* l's index, built by the first caller; NULL when l is small (or out of
 * memory: the callers then search linearly). */
static const struct fs_list_index *index_of(const struct fs_list *l)
{
	struct fs_list *m = (struct fs_list *)l; /* only the index is set, once */
	struct fs_list_index *x = __atomic_load_n(&m->index, __ATOMIC_ACQUIRE);
	if (x || l->images.n + l->repos.n < INDEX_MIN)
		return x;
	struct fs_list_index *mine = index_build(l), *none = NULL;
	if (!mine)
		return NULL;
	if (__atomic_compare_exchange_n(&m->index, &none, mine, 0, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return mine;
	fs_list_index_free(mine);
	return none; /* another thread's, published first */
}

static const void *index_find(const struct name_ref *v, size_t n, const char *name)
{
	struct name_ref key = {name, NULL};
	const struct name_ref *r = v ? bsearch(&key, v, n, sizeof *v, cmp_ref) : NULL;
	return r ? r->v : NULL;
}

const struct ecr_repo *fs_list_find_repo(const struct fs_list *l, const char *name)
{
	const struct fs_list_index *x = index_of(l);
	if (x)
		return index_find(x->repos, x->nrepos, name);
	for (size_t i = 0; i < l->repos.n; i++)
		if (!strcmp(l->repos.v[i].name, name))
			return &l->repos.v[i];
	return NULL;
}

/* The first of v[0..n) not below name. */
static size_t lower_bound(const struct name_ref *v, size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(v[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int fs_list_find_ns(const struct fs_list *l, const char *prefix, const struct ecr_repo **repo)
{
	size_t pl = strlen(prefix);
	const struct fs_list_index *x = index_of(l);
	*repo = NULL;
	if (!x) {
		int found = 0;
		for (size_t i = 0; i < l->repos.n; i++) {
			const char *r = l->repos.v[i].name;
			if (!strncmp(r, prefix, pl) && (r[pl] == 0 || r[pl] == '/')) {
				found = 1;
				if (r[pl] == 0)
					*repo = &l->repos.v[i];
			}
		}
		return found;
	}
	*repo = index_find(x->repos, x->nrepos, prefix);
	if (*repo)
		return 1;
	/* "a/b" sorts after "a-b" and "a.b": look for prefix + "/" itself. */
	char *deeper = malloc(pl + 2);
	if (!deeper)
		return 0;
	memcpy(deeper, prefix, pl);
	memcpy(deeper + pl, "/", 2);
	size_t i = lower_bound(x->repos, x->nrepos, deeper);
	int found = i < x->nrepos && !strncmp(x->repos[i].name, deeper, pl + 1);
	free(deeper);
	return found;
}

const struct ecr_image *fs_list_find_tag(const struct fs_list *l, const char *tag)
{
	const struct fs_list_index *x = index_of(l);
	if (x)
		return index_find(x->tags, x->ntags, tag);
	for (size_t i = 0; i < l->images.n; i++)
		for (size_t t = 0; t < l->images.v[i].ntags; t++)
			if (!strcmp(l->images.v[i].tags[t], tag))
				return &l->images.v[i];
	return NULL;
}

const struct ecr_image *fs_list_find_digest(const struct fs_list *l, const char *digest)
{
	const struct fs_list_index *x = index_of(l);
	if (x)
		return index_find(x->digests, x->ndigests, digest);
	for (size_t i = 0; i < l->images.n; i++)
		if (!strcmp(l->images.v[i].digest, digest))
			return &l->images.v[i];
	return NULL;
}
