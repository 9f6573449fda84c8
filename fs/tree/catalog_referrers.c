/* user.ecr.referrers: an image's referrers counted per artifact type, from
 * ListImageReferrers (IAM: ecr:BatchGetImage, yet not a pull: no pull time
 * changes), kept for tag_ttl like the listings. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/tree/catalog.h"

/* Answers kept (a tag's getfattr -d asks once per TTL); the oldest goes. */
#define REF_KEEP 128

struct ref_entry {
	char key[600];
	char *text; /* "type=N,type=N" by type; NULL with rc */
	int rc;
	time_t at;
};

/* Protects ref_tab. */
static pthread_mutex_t ref_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ref_entry ref_tab[REF_KEEP];

static int cmp_type(const void *a, const void *b)
{
	const struct ecr_referrer *x = a, *y = b;
	const char *tx = x->artifact_type ? x->artifact_type : x->media_type;
	const char *ty = y->artifact_type ? y->artifact_type : y->media_type;
	return strcmp(tx ? tx : "", ty ? ty : "");
}

/* "type=N,..." of l (sorted here), or NULL when l is empty or memory short. */
static char *counts_text(struct ecr_referrer_list *l)
{
	size_t len = 1;
	for (size_t i = 0; i < l->n; i++)
		len += strlen(l->v[i].artifact_type ? l->v[i].artifact_type
			      : l->v[i].media_type  ? l->v[i].media_type
						    : "") +
		       24;
	qsort(l->v, l->n, sizeof *l->v, cmp_type);
	char *s = l->n ? calloc(1, len) : NULL;
	size_t pos = 0;
	for (size_t i = 0; s && i < l->n;) {
		size_t j = i;
		while (j < l->n && cmp_type(&l->v[i], &l->v[j]) == 0)
			j++;
		const char *t = l->v[i].artifact_type ? l->v[i].artifact_type : l->v[i].media_type;
		pos += (size_t)snprintf(s + pos, len - pos, "%s%s=%zu", pos ? "," : "", t ? t : "",
					j - i);
		i = j;
	}
	return s;
}

/* The entry for key: 1 with a copy of its answer when fresh, else 0. */
static int ref_cached(const struct fs_ctx *c, const char *key, char **val, int *rc)
{
	int hit = 0;
	time_t now = time(NULL);
	pthread_mutex_lock(&ref_mu);
	for (size_t i = 0; i < REF_KEEP && !hit; i++) {
		struct ref_entry *e = &ref_tab[i];
		if (!e->at || strcmp(e->key, key) != 0 || now - e->at >= c->o.tag_ttl)
			continue;
		hit = 1;
		*rc = e->rc;
		*val = e->text ? strdup(e->text) : NULL;
		if (e->text && !*val)
			*rc = -ENOMEM;
	}
	pthread_mutex_unlock(&ref_mu);
	return hit;
}

static void ref_store(const char *key, const char *text, int rc)
{
	size_t slot = 0;
	pthread_mutex_lock(&ref_mu);
	for (size_t i = 0; i < REF_KEEP; i++) {
		if (!strcmp(ref_tab[i].key, key) || !ref_tab[i].at) {
			slot = i;
			break;
		}
		if (ref_tab[i].at < ref_tab[slot].at)
			slot = i;
	}
	struct ref_entry *e = &ref_tab[slot];
	free(e->text);
	snprintf(e->key, sizeof e->key, "%s", key);
	e->text = text ? strdup(text) : NULL;
	e->rc = text && !e->text ? -ENOMEM : rc;
	e->at = time(NULL);
	pthread_mutex_unlock(&ref_mu);
}

int fs_cat_referrer_counts(struct fs_ctx *c, const char *registry, const char *region,
			   const char *repo, const char *digest, char **val)
{
	char key[600];
	struct ecr_referrer_list l = {0};
	int rc = 0;
	*val = NULL;
	snprintf(key, sizeof key, "%s/%s/%s@%s", registry, region, repo, digest);
	if (ref_cached(c, key, val, &rc))
		goto out;
	struct ecr_where w = {.registry_id = registry, .region = region, .repository = repo};
	rc = ecr_list_image_referrers(fs_ecr_for(c, registry), &w, digest, NULL, 0, 0, &l, NULL);
	if (rc == 0 && !(*val = counts_text(&l)))
		rc = -ENODATA; /* none */
	if (rc != -EINTR)
		ref_store(key, *val, rc);
out:
	ecr_referrer_list_free(&l);
	if (rc) {
		free(*val);
		*val = NULL;
		return -ENODATA; /* none, or ECR would not say (logged) */
	}
	return 0;
}

void fs_cat_referrers_shutdown(void)
{
	pthread_mutex_lock(&ref_mu);
	for (size_t i = 0; i < REF_KEEP; i++) {
		free(ref_tab[i].text);
		memset(&ref_tab[i], 0, sizeof ref_tab[i]);
	}
	pthread_mutex_unlock(&ref_mu);
}
