/* ecrfs-ctl: maintainer CLI over the ECR client (no mount). Lists
 * repositories and tags, prints manifests and blobs, pushes a blob in
 * parts, shows who the credentials belong to and the client's counters.
 * Exit status: 0, or 1 with the errno's text (the client logged the cause). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/cred.h"
#include "net/digest.h"
#include "net/ecrfs_ctl_today.h"
#include "net/ecr.h"
#include "net/http.h"
#include "net/log.h"

#define MIN_PART (5 * 1024 * 1024)
#define MAX_PART (10 * 1024 * 1024)
#define MAX_PARTS 4200

struct ctl {
	const char *endpoint, *sts_endpoint, *profile, *region, *ca_file;
	int insecure, debug, stats, force;
	char default_region[64];
	net_http *http;
	cred_provider *creds;
	ecr *e;
};

/* "ACCOUNT/REGION[/REPO[:TAG|@DIGEST]]" split in place. */
struct ref {
	char *account, *region, *repo, *tag, *digest;
};

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: ecrfs-ctl [--endpoint URL] [--sts-endpoint URL] [--profile P] [--region R]\n"
	       "                 [--ca-file F] [--insecure] [-d|--debug] [--stats] COMMAND [ARGS]\n"
	       "commands:\n"
	       "  ls [ACCOUNT/REGION[/REPO]]       repositories, or tags of REPO\n"
	       "                                   (tag, digest, size, pushed-at)\n"
	       "  whoami                           account, ARN and credential source\n"
	       "  get-manifest ACCOUNT/REGION/REPO:TAG|@sha256:HEX\n"
	       "                                   the exact manifest bytes\n"
	       "  cat-blob ACCOUNT/REGION/REPO@sha256:HEX [OFFSET [LENGTH]]\n"
	       "                                   blob bytes to stdout (ranged fetches;\n"
	       "                                   a whole blob is checked against its digest)\n"
	       "  push-blob [--force] ACCOUNT/REGION/REPO FILE\n"
	       "                                   upload FILE as a layer in parts\n"
	       "  stats COMMAND [ARGS]             run COMMAND, then print the API counters\n");
	ctl_today_usage(f);
}

static int parse_ref(char *s, struct ref *r, int want_repo)
{
	char *p;

	memset(r, 0, sizeof(*r));
	r->account = s;
	p = strchr(s, '/');
	if (!p)
		return want_repo ? -EINVAL : 0;
	*p++ = '\0';
	r->region = p;
	p = strchr(p, '/');
	if (p) {
		*p++ = '\0';
		r->repo = *p ? p : NULL;
	}
	if (r->repo) {
		if ((p = strchr(r->repo, '@'))) {
			*p++ = '\0';
			r->digest = p;
		} else if ((p = strrchr(r->repo, ':'))) {
			*p++ = '\0';
			r->tag = p;
		}
	}
	if (!*r->account || !*r->region || (want_repo && !r->repo))
		return -EINVAL;
	return 0;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "ecrfs-ctl: %s: %s\n", what, strerror(-rc));
	return 1;
}

static void fmt_time(time_t t, char *buf, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- ls ---- */

struct tag_line {
	const char *tag; /* NULL: untagged */
	const struct ecr_image *img;
};

static int cmp_line(const void *a, const void *b)
{
	const struct tag_line *x = a, *y = b;
	if (!x->tag || !y->tag)
		return x->tag ? -1 : y->tag ? 1 : strcmp(x->img->digest, y->img->digest);
	return strcmp(x->tag, y->tag);
}

static int cmp_repo(const void *a, const void *b)
{
	return strcmp(((const struct ecr_repo *)a)->name, ((const struct ecr_repo *)b)->name);
}

static int ls_repos(struct ctl *c, const struct ecr_where *w)
{
	struct ecr_repo_list l;
	char when[32];
	int rc = ecr_describe_repositories(c->e, w, NULL, 0, &l, NULL);

	if (rc)
		return fail("ls", rc);
	qsort(l.v, l.n, sizeof(*l.v), cmp_repo);
	for (size_t i = 0; i < l.n; i++) {
		fmt_time(l.v[i].created_at, when, sizeof(when));
		printf("%s\t%s\t%s\t%s\n", l.v[i].name, l.v[i].immutable ? "IMMUTABLE" : "MUTABLE",
		       when, l.v[i].uri ? l.v[i].uri : "-");
	}
	ecr_repo_list_free(&l);
	return 0;
}

static int ls_tags(struct ctl *c, const struct ecr_where *w)
{
	struct ecr_image_list l;
	struct tag_line *lines = NULL;
	size_t n = 0, cap = 0;
	char when[32];
	int rc = ecr_describe_images(c->e, w, NULL, 0, &l, NULL);

	if (rc)
		return fail("ls", rc);
	for (size_t i = 0; i < l.n; i++)
		cap += l.v[i].ntags ? l.v[i].ntags : 1;
	lines = calloc(cap ? cap : 1, sizeof(*lines));
	if (!lines) {
		ecr_image_list_free(&l);
		return fail("ls", -ENOMEM);
	}
	for (size_t i = 0; i < l.n; i++) {
		if (!l.v[i].ntags)
			lines[n++] = (struct tag_line){NULL, &l.v[i]};
		for (size_t k = 0; k < l.v[i].ntags; k++)
			lines[n++] = (struct tag_line){l.v[i].tags[k], &l.v[i]};
	}
	qsort(lines, n, sizeof(*lines), cmp_line);
	for (size_t i = 0; i < n; i++) {
		fmt_time(lines[i].img->pushed_at, when, sizeof(when));
		printf("%s\t%s\t%" PRId64 "\t%s\n", lines[i].tag ? lines[i].tag : "-",
		       lines[i].img->digest, lines[i].img->size, when);
	}
	free(lines);
	ecr_image_list_free(&l);
	return 0;
}

static int cmd_ls(struct ctl *c, int argc, char **argv)
{
	struct ecr_where w = {0};
	char *own = NULL;
	struct ref r;
	int rc, ret;

	if (argc > 1) {
		usage(stderr);
		return 2;
	}
	if (argc == 1) {
		if (parse_ref(argv[0], &r, 0) || r.tag || r.digest || !r.region) {
			fprintf(stderr, "ecrfs-ctl: ls: expected ACCOUNT/REGION[/REPO]\n");
			return 2;
		}
		w.registry_id = r.account;
		w.region = r.region;
		w.repository = r.repo;
	} else {
		/* The caller's own registry in the configured region. */
		if (!c->region) {
			fprintf(stderr, "ecrfs-ctl: ls: no region: give ACCOUNT/REGION, --region, "
					"or set AWS_REGION\n");
			return 1;
		}
		w.region = c->region;
		rc = ecr_describe_registry(c->e, w.region, &own, NULL);
		if (rc)
			return fail("ls", rc);
		w.registry_id = own;
		fprintf(stderr, "registry %s region %s\n", own, w.region);
	}
	ret = w.repository ? ls_tags(c, &w) : ls_repos(c, &w);
	free(own);
	return ret;
}

/* ---- whoami ---- */

static int cmd_whoami(struct ctl *c, int argc, char **argv)
{
	struct ecr_identity id;
	int rc = ecr_get_caller_identity(c->e, c->region, &id, NULL);

	if (rc)
		return fail("whoami", rc);
	printf("account\t%s\narn\t%s\nuser_id\t%s\nsource\t%s\n", id.account, id.arn, id.user_id,
	       id.source);
	return 0;
}

/* ---- get-manifest ---- */

static int cmd_get_manifest(struct ctl *c, int argc, char **argv)
{
	struct ecr_manifest_list l;
	struct ecr_image_id id;
	struct ref r;
	int rc;

	if (argc != 1 || parse_ref(argv[0], &r, 1) || (!r.tag && !r.digest)) {
		fprintf(stderr, "ecrfs-ctl: get-manifest ACCOUNT/REGION/REPO:TAG|@DIGEST\n");
		return 2;
	}
	struct ecr_where w = {r.account, r.region, r.repo};
	id = (struct ecr_image_id){.digest = r.digest, .tag = r.tag};
	rc = ecr_batch_get_image(c->e, &w, &id, 1, &l, NULL);
	if (rc)
		return fail("get-manifest", rc);
	if (l.n != 1 || fwrite(l.v[0].bytes, 1, l.v[0].len, stdout) != l.v[0].len)
		rc = -EIO;
	if (l.n == 1)
		fprintf(stderr, "digest %s media-type %s\n", l.v[0].digest ? l.v[0].digest : "?",
			l.v[0].media_type ? l.v[0].media_type : "?");
	ecr_manifest_list_free(&l);
	return rc ? fail("get-manifest", rc) : 0;
}

/* ---- cat-blob ---- */

struct out_sink {
	EVP_MD_CTX *md;
	uint64_t n;
};

static int out_sink_cb(void *arg, const char *data, size_t n)
{
	struct out_sink *o = arg;
	if (fwrite(data, 1, n, stdout) != n)
		return -EIO;
	if (o->md)
		EVP_DigestUpdate(o->md, data, n);
	o->n += n;
	return 0;
}

static int hex_of(EVP_MD_CTX *md, char hex[65])
{
	unsigned char h[32];
	if (!EVP_DigestFinal_ex(md, h, NULL))
		return -EIO;
	net_hex(h, 32, hex);
	return 0;
}

static int cmd_cat_blob(struct ctl *c, int argc, char **argv)
{
	struct out_sink o = {0};
	char *url = NULL;
	time_t exp;
	struct ref r;
	uint64_t off = 0, len = 0;
	int rc, renewals = 0, whole;

	if (argc < 1 || argc > 3 || parse_ref(argv[0], &r, 1) || !r.digest ||
	    strncmp(r.digest, "sha256:", 7) != 0) {
		fprintf(stderr, "ecrfs-ctl: cat-blob ACCOUNT/REGION/REPO@sha256:HEX [OFF [LEN]]\n");
		return 2;
	}
	if (argc > 1)
		off = strtoull(argv[1], NULL, 10);
	if (argc > 2)
		len = strtoull(argv[2], NULL, 10);
	whole = off == 0 && len == 0;
	struct ecr_where w = {r.account, r.region, r.repo};
	if (whole) {
		o.md = EVP_MD_CTX_new();
		if (!o.md || !EVP_DigestInit_ex(o.md, EVP_sha256(), NULL)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = ecr_get_download_url(c->e, &w, r.digest, &url, &exp, NULL);
	if (rc)
		goto out;
	/* One ranged GET for all that is asked (net/http resumes it after a
	 * cut); an expired URL is re-requested and the fetch goes on. */
	for (;;) {
		rc = ecr_fetch_url_range(c->e, url, off + o.n, len ? len - o.n : 0, out_sink_cb, &o,
					 NULL);
		if (rc != -EKEYEXPIRED || renewals++ >= 3)
			break;
		free(url);
		url = NULL;
		rc = ecr_get_download_url(c->e, &w, r.digest, &url, &exp, NULL);
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (whole) {
		char hex[65];
		rc = hex_of(o.md, hex);
		if (!rc && strcmp(hex, r.digest + 7) != 0) {
			fprintf(stderr,
				"ecrfs-ctl: cat-blob: content hashes to sha256:%s, not %s\n", hex,
				r.digest);
			rc = -EIO;
		}
	}
out:
	fflush(stdout);
	EVP_MD_CTX_free(o.md);
	free(url);
	return rc ? fail("cat-blob", rc) : 0;
}

/* ---- push-blob ---- */

static int file_sha256(const unsigned char *p, size_t n, char digest[80])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char hex[65];
	int rc = -ENOMEM;

	if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, p, n))
		rc = hex_of(md, hex);
	EVP_MD_CTX_free(md);
	if (!rc)
		snprintf(digest, 80, "sha256:%s", hex);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One upload from Initiate to Complete. Returns 0, -ENOENT when the upload
 * vanished (the caller restarts), or -errno. */
static int upload_once(struct ctl *c, const struct ecr_where *w, const unsigned char *data,
		       size_t size, const char *digest, int *parts_out)
{
	char *upload_id = NULL;
	int64_t part_size = 0, last_valid;
	uint64_t pos = 0;
	int rc, resumes = 0, parts = 0;

	rc = ecr_initiate_layer_upload(c->e, w, &upload_id, &part_size, NULL);
	if (rc)
		goto out;
	/* ECR takes 5-10 MiB parts (all but the last at least 5 MiB). */
	if (part_size < MIN_PART || part_size > MAX_PART)
		part_size = part_size > MAX_PART ? MAX_PART : MIN_PART;
	if ((size + (uint64_t)part_size - 1) / (uint64_t)part_size > MAX_PARTS) {
		fprintf(stderr, "ecrfs-ctl: push-blob: %zu bytes need more than %d parts\n", size,
			MAX_PARTS);
		rc = -EFBIG;
		goto out;
	}
	while (pos < size) {
		size_t n = size - pos < (uint64_t)part_size ? size - pos : (size_t)part_size;
		rc = ecr_upload_layer_part(c->e, w, upload_id, pos, data + pos, n, &last_valid,
					   NULL);
		if (rc == -ERANGE && last_valid >= -1 && last_valid < (int64_t)size &&
		    resumes++ < 16) {
			pos = (uint64_t)(last_valid + 1); /* ECR says where it stands */
			continue;
		}
		if (rc)
			goto out;
		pos += n;
		parts++;
	}
	rc = ecr_complete_layer_upload(c->e, w, upload_id, digest, NULL);
out:
	*parts_out = parts;
	free(upload_id);
	return rc;
}

static int cmd_push_blob(struct ctl *c, int argc, char **argv)
{
	struct ref r;
	struct stat st;
	unsigned char *data = MAP_FAILED;
	char digest[80];
	int fd = -1, rc, avail = 0, parts = 0;
	double t0;

	if (argc == 3 && strcmp(argv[0], "--force") == 0) {
		c->force = 1;
		argc--;
		argv++;
	}
	if (argc != 2 || parse_ref(argv[0], &r, 1) || r.tag || r.digest) {
		fprintf(stderr, "ecrfs-ctl: push-blob [--force] ACCOUNT/REGION/REPO FILE\n");
		return 2;
	}
	struct ecr_where w = {r.account, r.region, r.repo};
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if (st.st_size == 0) {
		fprintf(stderr, "ecrfs-ctl: push-blob: ECR refuses empty layers\n");
		rc = -EINVAL;
		goto out;
	}
	data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (data == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	rc = file_sha256(data, (size_t)st.st_size, digest);
	if (rc)
		goto out;
	if (!c->force) {
		const char *d = digest;
		rc = ecr_batch_check_layers(c->e, &w, &d, 1, &avail, NULL);
		if (rc)
			goto out;
		if (avail) {
			printf("%s\t%lld\talready present\n", digest, (long long)st.st_size);
			goto out;
		}
	}
	t0 = now_s();
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = upload_once(c, &w, data, (size_t)st.st_size, digest, &parts);
		if (rc != -ENOENT)
			break; /* -ENOENT: the upload vanished, start over */
	}
	if (rc)
		goto out;
	double dt = now_s() - t0;
	printf("%s\t%lld\t%d parts\n", digest, (long long)st.st_size, parts);
	fprintf(stderr, "pushed %lld bytes in %.3f s (%.1f MiB/s)\n", (long long)st.st_size, dt,
		dt > 0 ? (double)st.st_size / 1048576.0 / dt : 0.0);
out:
	if (data != MAP_FAILED)
		munmap(data, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return rc ? fail("push-blob", rc) : 0;
}

/* ---- main ---- */

static int run(struct ctl *c, int argc, char **argv)
{
	const char *cmd = argv[0];

	if (strcmp(cmd, "ls") == 0)
		return cmd_ls(c, argc - 1, argv + 1);
	if (strcmp(cmd, "whoami") == 0)
		return cmd_whoami(c, argc - 1, argv + 1);
	if (strcmp(cmd, "get-manifest") == 0)
		return cmd_get_manifest(c, argc - 1, argv + 1);
	if (strcmp(cmd, "cat-blob") == 0)
		return cmd_cat_blob(c, argc - 1, argv + 1);
	if (strcmp(cmd, "push-blob") == 0)
		return cmd_push_blob(c, argc - 1, argv + 1);
	if (strcmp(cmd, "today") == 0)
		return ctl_today(c->e, c->region, argc - 1, argv + 1);
	fprintf(stderr, "ecrfs-ctl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"endpoint", required_argument, NULL, 'e'},
	    {"profile", required_argument, NULL, 'p'},
	    {"region", required_argument, NULL, 'r'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"debug", no_argument, NULL, 'd'},
	    {"stats", no_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ctl c = {0};
	int o, ret = 1;

	while ((o = getopt_long(argc, argv, "+dh", opts, NULL)) != -1) {
		switch (o) {
		case 'e':
			c.endpoint = optarg;
			break;
		case 't':
			c.sts_endpoint = optarg;
			break;
		case 'p':
			c.profile = optarg;
			break;
		case 'r':
			c.region = optarg;
			break;
		case 'c':
			c.ca_file = optarg;
			break;
		case 'k':
			c.insecure = 1;
			break;
		case 'd':
			c.debug = 1;
			break;
		case 's':
			c.stats = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 0 && strcmp(argv[0], "stats") == 0) {
		c.stats = 1;
		argc--;
		argv++;
	}
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	log_init(LOG_TO_STDERR, NULL, c.debug ? LOGL_DEBUG : LOGL_INFO);

	struct cred_opts co = {
	    .profile = c.profile, .sts_endpoint = c.sts_endpoint, .ca_file = c.ca_file};
	struct net_http_opts ho = {.ca_file = c.ca_file, .insecure = c.insecure};
	int rc = net_http_new(&ho, &c.http);
	if (!rc)
		rc = cred_provider_new(&co, &c.creds);
	if (rc) {
		ret = fail("setup", rc);
		goto out;
	}
	if (!c.region) {
		if (cred_resolve_region(&co, c.default_region, sizeof(c.default_region)) == 0)
			c.region = c.default_region;
	}
	struct ecr_opts eo = {.creds = c.creds,
			      .http = c.http,
			      .endpoint = c.endpoint,
			      .sts_endpoint = c.sts_endpoint};
	rc = ecr_new(&eo, &c.e);
	if (rc) {
		ret = fail("setup", rc);
		goto out;
	}
	ret = run(&c, argc, argv);
	if (c.stats) {
		char *s = ecr_stats_json(c.e);
		if (s)
			fprintf(stderr, "ecrfs-ctl stats: %s\n", s);
		free(s);
	}
out:
	ecr_free(c.e);
	cred_provider_free(c.creds);
	net_http_free(c.http);
	log_close();
	return ret;
}
