/* A layer's index in memory: growable arrays and the string pool. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/rootfs/rootfs_i.h"
#include "net/log.h"

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

int rootfs_index_comp(const struct rootfs_index *ix) { return (int)ix->comp; }

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
		    x->mtime != y->mtime || x->major != y->major || x->minor != y->minor ||
		    strcmp(rootfs_ix_str(a, x->path), rootfs_ix_str(b, y->path)))
			return 0;
		/* A link target the trees keep from the dropped index must be right. */
		if ((x->link == ROOTFS_NONE) != (y->link == ROOTFS_NONE) ||
		    (x->link != ROOTFS_NONE &&
		     strcmp(rootfs_ix_str(a, x->link), rootfs_ix_str(b, y->link))))
			return 0;
	}
	return 1;
}
int rootfs_ix_add_entry(struct rootfs_index *ix, const struct rootfs_tar_entry *e,
			uint64_t max_names)
{
	struct rootfs_ent ent = {0};
	size_t need = strlen(e->path) + (e->link ? strlen(e->link) : 0) + 2;
	for (size_t i = 0; i < e->n_xa; i++)
		need += strlen(e->xa[i].name) + e->xa[i].len + 2;
	if (ix->n_pool + need > max_names) {
		log_err("rootfs: layer %s: names and xattrs over %llu MiB; refusing it", ix->digest,
			(unsigned long long)(max_names >> 20));
		return -EFBIG;
	}
	int rc = rootfs_ix_grow((void **)&ix->ents, &ix->cap_ents, ix->n_ents + 1, sizeof(ent));
	if (rc == 0)
		rc = rootfs_ix_grow((void **)&ix->xa, &ix->cap_xa, ix->n_xa + e->n_xa,
				    sizeof(*ix->xa));
	if (rc < 0)
		return rc;
	ent.path_len = (uint32_t)strlen(e->path);
	rc = rootfs_ix_pool_add(ix, e->path, ent.path_len, &ent.path);
	ent.link = ROOTFS_NONE;
	if (rc == 0 && e->link) {
		ent.link_len = (uint32_t)strlen(e->link);
		rc = rootfs_ix_pool_add(ix, e->link, ent.link_len, &ent.link);
	}
	ent.xattr_first = (uint32_t)ix->n_xa;
	for (size_t i = 0; rc == 0 && i < e->n_xa; i++) {
		struct rootfs_xattr *x = &ix->xa[ix->n_xa];
		memset(x, 0, sizeof(*x));
		x->name_len = (uint32_t)strlen(e->xa[i].name);
		x->value_len = (uint32_t)e->xa[i].len;
		rc = rootfs_ix_pool_add(ix, e->xa[i].name, x->name_len, &x->name);
		if (rc == 0)
			rc = rootfs_ix_pool_add(ix, e->xa[i].value, x->value_len, &x->value);
		ix->n_xa += rc == 0;
	}
	if (rc < 0)
		return rc;
	ent.xattr_count = (uint32_t)e->n_xa;
	ent.size = e->size;
	ent.data_off = e->data_off;
	ent.mtime = e->mtime;
	ent.nsec = e->nsec;
	ent.mode = e->mode;
	ent.uid = e->uid;
	ent.gid = e->gid;
	ent.major = e->major;
	ent.minor = e->minor;
	ent.type = (uint8_t)e->type;
	ix->ents[ix->n_ents++] = ent;
	return 0;
}

