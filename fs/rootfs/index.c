/* A layer's index in memory: growable arrays and the string pool. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/rootfs/rootfs_i.h"

int rootfs_digest_hex(const char *digest, char hex[65])
{
	if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + 64)
		return -EINVAL;
	for (size_t i = 0; i < 64; i++) {
		char c = digest[7 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -EINVAL;
		hex[i] = c;
	}
	hex[64] = '\0';
	return 0;
}

int rootfs_ix_new(const char *digest, struct rootfs_index **out)
{
	char hex[65];
	if (rootfs_digest_hex(digest, hex) < 0)
		return -EINVAL;
	struct rootfs_index *ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	strcpy(ix->digest, digest);
	*out = ix;
	return 0;
}

int rootfs_ix_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need) {
		if (n > SIZE_MAX / 2 / elem)
			return -ENOMEM;
		n *= 2;
	}
	void *p = realloc(*arr, n * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

/* Appends len bytes and a NUL; *off is where they start. */
int rootfs_ix_pool_add(struct rootfs_index *ix, const void *p, size_t len, uint64_t *off)
{
	int rc = rootfs_ix_grow((void **)&ix->pool, &ix->cap_pool, ix->n_pool + len + 1, 1);
	if (rc < 0)
		return rc;
	*off = ix->n_pool;
	memcpy(ix->pool + ix->n_pool, p, len);
	ix->pool[ix->n_pool + len] = '\0';
	ix->n_pool += len + 1;
	return 0;
}

/* Gives back the slack of the growable arrays once the index is complete. */
static void shrink(void **arr, size_t *cap, size_t n, size_t elem)
{
	void *p = n ? realloc(*arr, n * elem) : NULL;
	if (p || !n) {
		if (!n)
			free(*arr);
		*arr = p;
		*cap = n;
	}
}

void rootfs_ix_shrink(struct rootfs_index *ix)
{
	shrink((void **)&ix->ents, &ix->cap_ents, ix->n_ents, sizeof(*ix->ents));
	shrink((void **)&ix->xa, &ix->cap_xa, ix->n_xa, sizeof(*ix->xa));
	shrink((void **)&ix->ck, &ix->cap_ck, ix->n_ck, sizeof(*ix->ck));
	shrink((void **)&ix->pool, &ix->cap_pool, ix->n_pool, 1);
	shrink((void **)&ix->wins, &ix->cap_wins, ix->n_wins, 1);
}

void rootfs_index_free(struct rootfs_index *ix)
{
	if (!ix)
		return;
	free(ix->ents);
	free(ix->xa);
	free(ix->ck);
	free(ix->pool);
	free(ix->wins);
	free(ix);
}

const char *rootfs_index_digest(const struct rootfs_index *ix) { return ix->digest; }

size_t rootfs_index_entries(const struct rootfs_index *ix) { return ix->n_ents; }

uint64_t rootfs_index_size(const struct rootfs_index *ix) { return ix->out_size; }

uint64_t rootfs_index_blob_size(const struct rootfs_index *ix) { return ix->blob_size; }

size_t rootfs_index_mem(const struct rootfs_index *ix)
{
	return sizeof(*ix) + ix->cap_ents * sizeof(*ix->ents) + ix->cap_xa * sizeof(*ix->xa) +
	       ix->cap_ck * sizeof(*ix->ck) + ix->cap_pool + ix->cap_wins;
}

int rootfs_index_same_entries(const struct rootfs_index *a, const struct rootfs_index *b)
{
	if (a->n_ents != b->n_ents || a->out_size != b->out_size)
		return 0;
	for (size_t i = 0; i < a->n_ents; i++) {
		const struct rootfs_ent *x = &a->ents[i], *y = &b->ents[i];
		if (x->type != y->type || x->size != y->size || x->data_off != y->data_off ||
		    x->mode != y->mode || x->uid != y->uid || x->gid != y->gid ||
		    x->mtime != y->mtime || strcmp(rootfs_ix_str(a, x->path), rootfs_ix_str(b, y->path)))
			return 0;
	}
	return 1;
}
