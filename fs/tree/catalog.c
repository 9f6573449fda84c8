/* Listing and manifest caches (see catalog.h). */
#include "fs/tree/catalog.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/blob/flight.h"
#include "fs/tree/names.h"
#include "net/http.h"
#include "net/log.h"

/* Listings kept in memory (a region's repositories, a repository's
 * images): beyond this the least recently used go. */
#define CAT_MAX_LISTS 512
/* Blob censuses kept (one per repository, sized by its blobs). */
#define CAT_MAX_CENSUSES 64
/* An unused listing or census goes this long after its tag_ttl: past the
 * TTL it only serves as the offline copy, which the cache's metadata
 * records also keep. */
#define CAT_KEEP 600

/* ---- the tables ---- */

/* Protects the two table pointers (made at first use, freed at shutdown);
 * each table has its own lock for its entries. */
static pthread_mutex_t tabs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fs_flights *lists;    /* struct entry by key */
static struct fs_flights *censuses; /* struct census by registry/region/repo */

static void entry_free(void *v);
static void census_free(void *v);

static struct fs_flights *table(struct fs_flights **t, size_t max, void (*free_val)(void *))
{
	pthread_mutex_lock(&tabs_mu);
	if (!*t && fs_flights_new(&(struct fs_flights_cfg){max, free_val}, t) != 0)
		*t = NULL;
	struct fs_flights *r = *t;
	pthread_mutex_unlock(&tabs_mu);
	return r;
}

static struct fs_flights *lists_tab(void) { return table(&lists, CAT_MAX_LISTS, entry_free); }

static struct fs_flights *census_tab(void)
{
	return table(&censuses, CAT_MAX_CENSUSES, census_free);
}

static time_t keep_until(const struct fs_ctx *c) { return time(NULL) + c->o.tag_ttl + CAT_KEEP; }

/* ---- a keyed cache of fs_list snapshots ---- */

struct entry {
	struct fs_list *val; /* referenced by the entry */
	time_t fetched;      /* when val was loaded */
	int err;             /* last error (0: none) */
	time_t err_at;
};

void fs_list_put(struct fs_list *l)
{
	if (!l || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	ecr_repo_list_free(&l->repos);
	ecr_image_list_free(&l->images);
	free(l);
}

static struct fs_list *list_ref(struct fs_list *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
	return l;
}

static void entry_free(void *v)
{
	struct entry *e = v;
	fs_list_put(e->val);
	free(e);
}

/* Errors after which the last known listing is served instead. */
static int is_transient(int rc)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -EAGAIN || rc == -EINTR || rc == -ECONNRESET;
}

/* Where a listing comes from: a registry's region (repositories), or a
 * repository in it (images) when repo is set. */
struct where_arg {
	const char *registry, *region, *repo;
};

/* How one kind of listing is kept in the cache's metadata records, so that
 * an offline mount serves the last one seen: the records' namespace, and
 * one element to and from JSON. */
struct persist_kind {
	const char *ns;
	size_t (*count)(const struct fs_list *l);
	json_t *(*pack)(const struct fs_list *l, size_t i); /* NULL: no memory */
	int (*alloc)(struct fs_list *nl, size_t n);	    /* room for n elements */
	/* Appends o to nl: 0, 1 when o is malformed (skipped), or -ENOMEM. */
	int (*unpack)(struct fs_list *nl, const json_t *o);
};

static int persist_save(struct fs_ctx *c, const struct persist_kind *k, const char *key,
			const struct fs_list *l);
static int persist_load(struct fs_ctx *c, const struct persist_kind *k, const char *key,
			struct fs_list **out);
static int load_list(struct fs_ctx *c, const struct where_arg *w, struct fs_list **out);

/* The entry of key, held, kept for a while from now. Table locked. */
static int entry_hold(struct fs_flights *t, struct fs_ctx *c, const char *key,
		      struct fs_flight **out)
{
	struct fs_flight *f = fs_flight_get(t, key, 1);
	*out = NULL;
	if (!f)
		return -ENOMEM;
	if (!fs_flight_val(f)) {
		struct entry *e = calloc(1, sizeof *e);
		if (!e) {
			fs_flight_put(t, f);
			return -ENOMEM;
		}
		fs_flight_set(t, f, e);
	}
	fs_flight_expire_at(t, f, keep_until(c));
	*out = f;
	return 0;
}

/* What the entry answers now: 0 with *out, -errno, or 1 when it must be
 * loaded. Table locked. */
static int entry_answer(const struct fs_ctx *c, const struct entry *e, struct fs_list **out)
{
	time_t now = time(NULL);
	if (e->val && now - e->fetched < c->o.tag_ttl && !e->err) {
		*out = list_ref(e->val);
		return 0;
	}
	if (e->err && now - e->err_at < c->o.neg_ttl) {
		if (e->val && is_transient(e->err)) {
			*out = list_ref(e->val); /* stale, until the next try */
			return 0;
		}
		return e->err;
	}
	return 1;
}

/* ECR could not be reached: the last listing, from memory or persisted by
 * an earlier mount, marked stale. Table locked (unlocked meanwhile). */
static int entry_offline(struct fs_flights *t, struct fs_ctx *c, struct entry *e, const char *key,
			 const struct persist_kind *kind, int rc, struct fs_list **out)
{
	if (!e->val) {
		fs_flights_unlock(t);
		struct fs_list *old = NULL;
		int prc = persist_load(c, kind, key, &old);
		fs_flights_lock(t);
		if (prc == 0 && old && !e->val) {
			old->stale = 1;
			e->val = old;
		} else if (old) {
			fs_list_put(old);
		}
	}
	if (!e->val)
		return rc;
	if (!e->val->stale)
		log_warn("%s: ECR unreachable, serving the last known listing", key);
	e->val->stale = 1;
	*out = list_ref(e->val);
	return 0;
}

/* Keeps the outcome of a load (rc, l) in e. Table locked. */
static int entry_store(struct fs_flights *t, struct fs_ctx *c, struct entry *e, const char *key,
		       const struct persist_kind *kind, int rc, struct fs_list *l,
		       struct fs_list **out)
{
	time_t now = time(NULL);
	if (rc == 0) {
		if (e->val)
			fs_list_put(e->val);
		e->val = l;
		e->fetched = now;
		e->err = 0;
		*out = list_ref(l);
		return 0;
	}
	if (rc == -EINTR)
		return rc; /* this caller was interrupted: not the listing's outcome */
	e->err = rc;
	e->err_at = now;
	return is_transient(rc) ? entry_offline(t, c, e, key, kind, rc, out) : rc;
}

static int cat_get(struct fs_ctx *c, const char *key, const struct persist_kind *kind,
		   const struct where_arg *w, struct fs_list **out)
{
	struct fs_flights *t = lists_tab();
	struct fs_flight *f = NULL;
	struct fs_list *l = NULL;
	int rc;
	*out = NULL;
	if (!t)
		return -ENOMEM;
	fs_flights_lock(t);
	if ((rc = entry_hold(t, c, key, &f)) != 0)
		goto out;
	/* One load per key; the others wait for it and take its outcome. */
	while ((rc = entry_answer(c, fs_flight_val(f), out)) == 1 && !fs_flight_claim(f))
		fs_flight_wait(t, f, NULL);
	if (rc != 1)
		goto out;
	fs_flights_unlock(t);
	rc = load_list(c, w, &l);
	if (rc == 0)
		persist_save(c, kind, key, l);
	fs_flights_lock(t);
	rc = entry_store(t, c, fs_flight_val(f), key, kind, rc, l, out);
	fs_flight_done(f);
out:
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
	return rc;
}

static void cat_forget(const char *key)
{
	struct fs_flights *t = lists_tab();
	if (!t)
		return;
	fs_flights_lock(t);
	struct fs_flight *f = fs_flight_get(t, key, 0);
	if (f) {
		struct entry *e = fs_flight_val(f);
		e->fetched = 0;
		e->err = 0;
		fs_flight_put(t, f);
	}
	fs_flights_unlock(t);
}

/* ---- persistence of listings (cache metadata, JSON) ---- */

static int persist_save(struct fs_ctx *c, const struct persist_kind *k, const char *key,
			const struct fs_list *l)
{
	int rc = -ENOMEM;
	char *s = NULL;
	json_t *arr;
	if (!c->cache)
		return -ENOENT;
	if (!(arr = json_array()))
		goto out;
	for (size_t i = 0; i < k->count(l); i++)
		if (json_array_append_new(arr, k->pack(l, i)))
			goto out; /* never a partial listing: it would be served as whole */
	if (!(s = json_dumps(arr, JSON_COMPACT)))
		goto out;
	rc = cache_meta_put(c->cache, k->ns, key, s, strlen(s));
out:
	json_decref(arr);
	free(s);
	return rc;
}

/* *out: a new listing (refs 1) from the record; -ENOENT when there is none,
 * -EIO when it is not a listing. */
static int persist_load(struct fs_ctx *c, const struct persist_kind *k, const char *key,
			struct fs_list **out)
{
	char *s = NULL;
	size_t len, i;
	json_t *arr = NULL, *o;
	struct fs_list *nl = NULL;
	int rc;
	*out = NULL;
	if (!c->cache)
		return -ENOENT;
	rc = cache_meta_get(c->cache, k->ns, key, &s, &len);
	if (rc)
		return rc;
	arr = json_loadb(s, len, 0, NULL);
	free(s);
	rc = -EIO;
	if (!json_is_array(arr))
		goto out;
	rc = -ENOMEM;
	if (!(nl = calloc(1, sizeof *nl)))
		goto out;
	nl->refs = 1;
	if (k->alloc(nl, json_array_size(arr)))
		goto out;
	json_array_foreach(arr, i, o)
	{
		rc = k->unpack(nl, o);
		if (rc < 0)
			goto out;
	}
	rc = 0;
	*out = nl;
	nl = NULL;
out:
	fs_list_put(nl);
	json_decref(arr);
	return rc;
}

/* The n string members keys[i] of o duplicated into *outs[i] (NULL when
 * absent). Returns 0, or -ENOMEM. */
static int dup_members(const json_t *o, size_t n, const char *const keys[], char **const outs[])
{
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(o, keys[i]));
		if (s && !(*outs[i] = strdup(s)))
			return -ENOMEM;
	}
	return 0;
}

static size_t repos_count(const struct fs_list *l) { return l->repos.n; }

static json_t *repo_pack(const struct fs_list *l, size_t i)
{
	const struct ecr_repo *r = &l->repos.v[i];
	return json_pack("{s:s, s:b, s:I, s:s?, s:s?}", "name", r->name, "immutable", r->immutable,
			 "created", (json_int_t)r->created_at, "uri", r->uri, "arn", r->arn);
}

static int repos_alloc(struct fs_list *nl, size_t n)
{
	nl->repos.v = calloc(n + 1, sizeof *nl->repos.v);
	return nl->repos.v ? 0 : -ENOMEM;
}

static int repo_unpack(struct fs_list *nl, const json_t *o)
{
	if (!json_is_string(json_object_get(o, "name")))
		return 1;
	/* Counted at once: the list's destructor frees what is filled in. */
	struct ecr_repo *r = &nl->repos.v[nl->repos.n++];
	r->immutable = json_is_true(json_object_get(o, "immutable"));
	r->created_at = (time_t)json_integer_value(json_object_get(o, "created"));
	return dup_members(o, 3, (const char *const[]){"name", "uri", "arn"},
			   (char **const[]){&r->name, &r->uri, &r->arn});
}

static const struct persist_kind persist_repos = {"repos", repos_count, repo_pack, repos_alloc,
						  repo_unpack};

static size_t images_count(const struct fs_list *l) { return l->images.n; }

static json_t *image_pack(const struct fs_list *l, size_t i)
{
	const struct ecr_image *im = &l->images.v[i];
	json_t *tags = json_array();
	for (size_t t = 0; tags && t < im->ntags; t++)
		if (json_array_append_new(tags, json_string(im->tags[t]))) {
			json_decref(tags);
			return NULL;
		}
	/* "o" takes tags, also when packing fails. */
	return json_pack("{s:s, s:o, s:I, s:I, s:s?, s:s?}", "digest", im->digest, "tags", tags,
			 "size", (json_int_t)im->size, "pushed", (json_int_t)im->pushed_at, "mt",
			 im->media_type, "scan", im->scan_status);
}

static int images_alloc(struct fs_list *nl, size_t n)
{
	nl->images.v = calloc(n + 1, sizeof *nl->images.v);
	return nl->images.v ? 0 : -ENOMEM;
}

static int image_unpack(struct fs_list *nl, const json_t *o)
{
	const json_t *tags = json_object_get(o, "tags");
	json_t *t;
	size_t i;
	if (!json_is_string(json_object_get(o, "digest")))
		return 1;
	/* Counted at once: the list's destructor frees what is filled in. */
	struct ecr_image *im = &nl->images.v[nl->images.n++];
	im->size = json_integer_value(json_object_get(o, "size"));
	im->pushed_at = (time_t)json_integer_value(json_object_get(o, "pushed"));
	if (!(im->tags = calloc(json_array_size(tags) + 1, sizeof *im->tags)))
		return -ENOMEM;
	json_array_foreach(tags, i, t)
	{
		if (!json_is_string(t))
			continue;
		if (!(im->tags[im->ntags] = strdup(json_string_value(t))))
			return -ENOMEM;
		im->ntags++;
	}
	return dup_members(o, 3, (const char *const[]){"digest", "mt", "scan"},
			   (char **const[]){&im->digest, &im->media_type, &im->scan_status});
}

static const struct persist_kind persist_images = {"images", images_count, image_pack, images_alloc,
						   image_unpack};

/* ---- repositories and images ---- */

static int load_list(struct fs_ctx *c, const struct where_arg *w, struct fs_list **out)
{
	struct fs_list *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->refs = 1;
	struct ecr_where wh = {
	    .registry_id = w->registry, .region = w->region, .repository = w->repo};
	ecr *e = fs_ecr_for(c, w->registry);
	int rc = w->repo ? ecr_describe_images(e, &wh, NULL, 0, &l->images, NULL)
			 : ecr_describe_repositories(e, &wh, NULL, 0, &l->repos, NULL);
	if (rc) {
		fs_list_put(l);
		return rc;
	}
	*out = l;
	return 0;
}

int fs_cat_repos(struct fs_ctx *c, const char *registry, const char *region, struct fs_list **out)
{
	char key[128];
	snprintf(key, sizeof key, "%s/%s", registry, region);
	struct where_arg w = {registry, region, NULL};
	return cat_get(c, key, &persist_repos, &w, out);
}

int fs_cat_images(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		  struct fs_list **out)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
	struct where_arg w = {registry, region, repo};
	return cat_get(c, key, &persist_images, &w, out);
}

void fs_cat_invalidate(const char *registry, const char *region, const char *repo)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s", registry, region);
	cat_forget(key);
	if (repo) {
		snprintf(key, sizeof key, "%s/%s/%s", registry, region, repo);
		cat_forget(key);
	}
}

const struct ecr_repo *fs_list_find_repo(const struct fs_list *l, const char *name)
{
	for (size_t i = 0; i < l->repos.n; i++)
		if (!strcmp(l->repos.v[i].name, name))
			return &l->repos.v[i];
	return NULL;
}

const struct ecr_image *fs_list_find_tag(const struct fs_list *l, const char *tag)
{
	for (size_t i = 0; i < l->images.n; i++)
		for (size_t t = 0; t < l->images.v[i].ntags; t++)
			if (!strcmp(l->images.v[i].tags[t], tag))
				return &l->images.v[i];
	return NULL;
}

const struct ecr_image *fs_list_find_digest(const struct fs_list *l, const char *digest)
{
	for (size_t i = 0; i < l->images.n; i++)
		if (!strcmp(l->images.v[i].digest, digest))
			return &l->images.v[i];
	return NULL;
}

/* ---- manifests ---- */

static int meta_manifest_get(struct fs_ctx *c, const char *digest, char **bytes, size_t *len,
			     char **media_type)
{
	char *s = NULL;
	size_t sl = 0;
	if (!c->cache)
		return -ENOENT;
	int rc = cache_meta_get(c->cache, "manifest", digest, &s, &sl);
	if (rc)
		return rc;
	char *nl = memchr(s, '\n', sl);
	if (!nl) {
		free(s);
		return -EIO;
	}
	char check[72];
	size_t off = (size_t)(nl + 1 - s);
	fs_sha256_digest(s + off, sl - off, check);
	if (strcmp(check, digest) != 0) {
		free(s);
		cache_meta_del(c->cache, "manifest", digest);
		return -ENOENT;
	}
	*len = sl - off;
	*bytes = malloc(*len + 1);
	*media_type = nl == s ? NULL : strndup(s, (size_t)(nl - s));
	if (!*bytes) {
		free(s);
		free(*media_type);
		return -ENOMEM;
	}
	memcpy(*bytes, s + off, *len);
	(*bytes)[*len] = 0;
	free(s);
	return 0;
}

static void meta_manifest_put(struct fs_ctx *c, const struct ecr_manifest *m)
{
	char check[72];
	if (!c->cache || !m->bytes || !m->digest)
		return;
	fs_sha256_digest(m->bytes, m->len, check);
	if (strcmp(check, m->digest) != 0) {
		log_err("BatchGetImage returned bytes for %s that hash to %s", m->digest, check);
		return;
	}
	const char *mt = m->media_type ? m->media_type : "";
	size_t ml = strlen(mt);
	char *s = malloc(ml + 1 + m->len);
	if (!s)
		return;
	memcpy(s, mt, ml);
	s[ml] = '\n';
	memcpy(s + ml + 1, m->bytes, m->len);
	cache_meta_put(c->cache, "manifest", m->digest, s, ml + 1 + m->len);
	free(s);
}

/* BatchGetImage for the digests not cached yet (one call per 100). */
static int prefetch_manifests(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo, const char *const *digests, size_t n)
{
	int rc = 0;
	struct ecr_image_id *ids = calloc(n + 1, sizeof *ids);
	size_t nids = 0;
	struct ecr_manifest_list ml = {0};
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char *b = NULL, *mt = NULL;
		size_t len;
		if (meta_manifest_get(c, digests[i], &b, &len, &mt) == 0) {
			free(b);
			free(mt);
			continue;
		}
		ids[nids++].digest = digests[i];
	}
	if (nids == 0)
		goto out;
	struct ecr_where wh = {.registry_id = registry, .region = region, .repository = repo};
	rc = ecr_batch_get_image(fs_ecr_for(c, registry), &wh, ids, nids, &ml, NULL);
	if (rc)
		goto out;
	for (size_t i = 0; i < ml.n; i++)
		meta_manifest_put(c, &ml.v[i]);
out:
	ecr_manifest_list_free(&ml);
	free(ids);
	return rc;
}

int fs_cat_manifest(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		    const char *digest, char **bytes, size_t *len, char **media_type)
{
	*bytes = *media_type = NULL;
	int rc = meta_manifest_get(c, digest, bytes, len, media_type);
	if (rc == 0)
		return 0;
	struct ecr_image_id id = {.digest = digest};
	struct ecr_manifest_list ml = {0};
	struct ecr_where wh = {.registry_id = registry, .region = region, .repository = repo};
	rc = ecr_batch_get_image(fs_ecr_for(c, registry), &wh, &id, 1, &ml, NULL);
	if (rc)
		goto out;
	rc = -ENOENT;
	for (size_t i = 0; i < ml.n; i++) {
		const struct ecr_manifest *m = &ml.v[i];
		char check[72];
		if (!m->bytes)
			continue;
		fs_sha256_digest(m->bytes, m->len, check);
		if (strcmp(check, digest) != 0)
			continue;
		meta_manifest_put(c, m);
		*bytes = malloc(m->len + 1);
		*media_type = m->media_type ? strdup(m->media_type) : NULL;
		if (!*bytes) {
			free(*media_type);
			*media_type = NULL;
			rc = -ENOMEM;
			goto out;
		}
		memcpy(*bytes, m->bytes, m->len + 1);
		*len = m->len;
		rc = 0;
		break;
	}
	if (rc == -ENOENT && ml.nfailed)
		log_warn("BatchGetImage %s in %s (%s): %s", digest, repo, region,
			 ml.failure_codes && ml.failure_codes[0] ? ml.failure_codes[0] : "failed");
out:
	ecr_manifest_list_free(&ml);
	return rc;
}

/* ---- blob reference counts over a repository (nlink) ---- */

/* Immutable once built; read under the census table's lock. */
struct census {
	struct fs_list *from;  /* the image listing it was counted from (referenced) */
	char (*digests)[72];
	unsigned *counts;
	size_t *chain;         /* hash chains: index + 1 of the next entry */
	size_t heads[1024];    /* index + 1 of the first entry per bucket */
	size_t n, cap;
};

struct count_arg {
	struct census *cs;
	unsigned places;
	struct fs_ctx *c;
	const char *registry, *region, *repo;
	int depth;
};

static size_t census_bucket(const char *digest)
{
	/* Digests are uniformly distributed hex: a few characters suffice. */
	return strtoul((char[]){digest[7], digest[8], digest[9], 0}, NULL, 16) % 1024;
}

static long census_find(const struct census *cs, const char *digest)
{
	for (size_t i = cs->heads[census_bucket(digest)]; i; i = cs->chain[i - 1])
		if (!strcmp(cs->digests[i - 1], digest))
			return (long)(i - 1);
	return -1;
}

static void census_add(struct census *cs, const char *digest, unsigned places)
{
	long f = census_find(cs, digest);
	if (f >= 0) {
		cs->counts[f] += places;
		return;
	}
	if (cs->n == cs->cap) {
		size_t nc = cs->cap ? cs->cap * 2 : 64;
		void *d = realloc(cs->digests, nc * sizeof *cs->digests);
		if (!d)
			return;
		cs->digests = d;
		void *k = realloc(cs->counts, nc * sizeof *cs->counts);
		if (!k)
			return;
		cs->counts = k;
		void *ch = realloc(cs->chain, nc * sizeof *cs->chain);
		if (!ch)
			return;
		cs->chain = ch;
		cs->cap = nc;
	}
	size_t b = census_bucket(digest);
	snprintf(cs->digests[cs->n], 72, "%s", digest);
	cs->counts[cs->n] = places;
	cs->chain[cs->n] = cs->heads[b];
	cs->heads[b] = ++cs->n;
}

static int count_manifest(struct count_arg *a, const char *digest);

static int count_desc(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
		      const char *mt)
{
	struct count_arg *a = arg;
	if (kind == FS_BLOB_MANIFEST || kind == FS_BLOB_INDEX) {
		if (a->depth < 4) {
			a->depth++;
			count_manifest(a, digest);
			a->depth--;
		}
		return 0;
	}
	census_add(a->cs, digest, a->places);
	return 0;
}

static int count_manifest(struct count_arg *a, const char *digest)
{
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	census_add(a->cs, digest, a->places);
	int rc = fs_cat_manifest(a->c, a->registry, a->region, a->repo, digest, &bytes, &len, &mt);
	if (rc == 0)
		rc = fs_manifest_walk(bytes, len, NULL, NULL, count_desc, a);
	free(bytes);
	free(mt);
	return rc;
}

static void census_free(void *v)
{
	struct census *cs = v;
	if (!cs)
		return;
	fs_list_put(cs->from);
	free(cs->digests);
	free(cs->counts);
	free(cs->chain);
	free(cs);
}

struct collect {
	char **v;
	size_t n, cap;
};

static int collect_child(void *arg, enum fs_blob_kind kind, const char *digest, uint64_t size,
			 const char *mt)
{
	struct collect *cl = arg;
	if (kind != FS_BLOB_MANIFEST && kind != FS_BLOB_INDEX)
		return 0;
	if (cl->n == cl->cap) {
		size_t nc = cl->cap ? cl->cap * 2 : 32;
		char **nv = realloc(cl->v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		cl->v = nv;
		cl->cap = nc;
	}
	if (!(cl->v[cl->n] = strdup(digest)))
		return -ENOMEM;
	cl->n++;
	return 0;
}

/* The child manifests of the repository's image indexes, in batches too
 * (one BatchGetImage per 100 rather than one call each). */
static void prefetch_children(struct fs_ctx *c, const char *registry, const char *region,
			      const char *repo, const struct fs_list *imgs)
{
	struct collect cl = {0};
	for (size_t i = 0; i < imgs->images.n; i++) {
		char *bytes = NULL, *mt = NULL;
		size_t len = 0;
		if (meta_manifest_get(c, imgs->images.v[i].digest, &bytes, &len, &mt) == 0)
			fs_manifest_walk(bytes, len, NULL, NULL, collect_child, &cl);
		free(bytes);
		free(mt);
	}
	if (cl.n)
		prefetch_manifests(c, registry, region, repo, (const char *const *)cl.v, cl.n);
	for (size_t i = 0; i < cl.n; i++)
		free(cl.v[i]);
	free(cl.v);
}

/* Counts, for each blob of the repository, the listed image directories it
 * appears in (each tag, and each untagged image's @sha256- directory). */
static struct census *census_build(struct fs_ctx *c, const char *registry, const char *region,
				   const char *repo, struct fs_list *imgs)
{
	struct census *cs = calloc(1, sizeof *cs);
	const char **dg = calloc(imgs->images.n + 1, sizeof *dg);
	if (!cs || !dg)
		goto fail;
	for (size_t i = 0; i < imgs->images.n; i++)
		dg[i] = imgs->images.v[i].digest;
	if (imgs->images.n)
		prefetch_manifests(c, registry, region, repo, dg, imgs->images.n);
	prefetch_children(c, registry, region, repo, imgs);
	struct count_arg a = {.cs = cs, .c = c, .registry = registry, .region = region, .repo = repo};
	for (size_t i = 0; i < imgs->images.n; i++) {
		const struct ecr_image *im = &imgs->images.v[i];
		a.places = im->ntags ? (unsigned)im->ntags : 1;
		count_manifest(&a, im->digest);
	}
	free(dg);
	cs->from = list_ref(imgs);
	return cs;
fail:
	free(dg);
	free(cs);
	return NULL;
}

static unsigned census_count(const struct census *cs, const char *digest)
{
	long f = census_find(cs, digest);
	return f >= 0 ? cs->counts[f] : 0;
}

/* Builds the census of the repository from its listing imgs, outside any
 * lock (it may call ECR). Kept for every image of the repository: not cut
 * short by this caller's INTERRUPT. */
static struct census *census_make(struct fs_ctx *c, const struct fs_image *img,
				  struct fs_list *imgs)
{
	volatile int *cancel = net_http_thread_cancel_swap(NULL);
	struct census *cs = census_build(c, img->registry, img->region, img->repo, imgs);
	net_http_thread_cancel_swap(cancel);
	return cs;
}

static void apply_census(struct fs_ctx *c, struct fs_image *img)
{
	char key[512];
	struct fs_list *imgs = NULL;
	struct fs_flights *t = census_tab();
	snprintf(key, sizeof key, "%s/%s/%s", img->registry, img->region, img->repo);
	if (!t || fs_cat_images(c, img->registry, img->region, img->repo, &imgs) != 0)
		return;
	fs_flights_lock(t);
	/* Held, so not evicted while it is built or applied. */
	struct fs_flight *f = fs_flight_get(t, key, 1);
	struct census *cs = f ? fs_flight_val(f) : NULL;
	if (f)
		fs_flight_expire_at(t, f, keep_until(c));
	if (cs && cs->from != imgs) {
		fs_flight_set(t, f, NULL);
		cs = NULL;
	}
	if (f && !cs) {
		/* Two threads may both build one; the second replaces the first. */
		fs_flights_unlock(t);
		cs = census_make(c, img, imgs);
		fs_flights_lock(t);
		fs_flight_set(t, f, cs);
	}
	/* The image is not shared yet: its nlinks may be written. */
	for (size_t i = 0; cs && i < img->nblobs; i++) {
		unsigned n = census_count(cs, img->blobs[i].digest);
		img->blobs[i].nlink = n ? n : 1;
	}
	if (f)
		fs_flight_put(t, f);
	fs_flights_unlock(t);
	fs_list_put(imgs);
}

/* ---- images ---- */

struct mcb {
	struct fs_ctx *c;
	const char *registry, *region, *repo;
};

static int manifest_cb(void *arg, const char *digest, char **bytes, size_t *len, char **mt)
{
	struct mcb *m = arg;
	return fs_cat_manifest(m->c, m->registry, m->region, m->repo, digest, bytes, len, mt);
}

int fs_cat_image(struct fs_ctx *c, const char *registry, const char *region, const char *repo,
		 const char *digest, const char *refname, int immutable, time_t pushed_at,
		 struct fs_image **out)
{
	char *bytes = NULL, *mt = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = fs_cat_manifest(c, registry, region, repo, digest, &bytes, &len, &mt);
	if (rc)
		goto out;
	struct fs_image_src src = {.registry = registry, .region = region, .repo = repo,
				   .digest = digest, .refname = refname, .media_type = mt,
				   .bytes = bytes, .len = len, .pushed_at = pushed_at,
				   .immutable = immutable};
	struct mcb m = {c, registry, region, repo};
	rc = fs_image_build(&src, manifest_cb, &m, out);
	if (rc)
		goto out;
	apply_census(c, *out);
out:
	free(bytes);
	free(mt);
	return rc;
}

/* ---- identity ---- */

static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER; /* protects id_cache */
static struct ecr_identity id_cache;
static int id_have;

int fs_cat_identity(struct fs_ctx *c, struct ecr_identity *out)
{
	pthread_mutex_lock(&id_mu);
	int have = id_have;
	if (have)
		*out = id_cache;
	pthread_mutex_unlock(&id_mu);
	if (have)
		return 0;
	const char *region = c->nregions ? c->regions[0] : "us-east-1";
	int rc = ecr_get_caller_identity(c->ecr, region, out, NULL);
	if (rc == 0) {
		pthread_mutex_lock(&id_mu);
		id_cache = *out;
		id_have = 1;
		pthread_mutex_unlock(&id_mu);
	}
	return rc;
}

void fs_cat_stats(struct fs_cat_stats *out)
{
	struct fs_flights *t;
	memset(out, 0, sizeof *out);
	if ((t = lists_tab()) != NULL) {
		fs_flights_lock(t);
		out->listings = fs_flights_count(t);
		fs_flights_unlock(t);
	}
	if ((t = census_tab()) != NULL) {
		fs_flights_lock(t);
		out->censuses = fs_flights_count(t);
		fs_flights_unlock(t);
	}
}

void fs_cat_shutdown(void)
{
	pthread_mutex_lock(&tabs_mu);
	fs_flights_free(lists);
	fs_flights_free(censuses);
	lists = censuses = NULL;
	pthread_mutex_unlock(&tabs_mu);
}
