/* Command-line and fstab options (-o ...), their checks and defaults. */
#include "fs/opts.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/tree/names.h"

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FG,
	KEY_DEBUG,
	KEY_RO,
	KEY_ALLOW_OTHER,
	KEY_DROP,
	KEY_REGIONS,
	KEY_REGISTRIES,
};

/* -o regions=a,b: fuse_opt splits options at commas, so the items after the
 * first arrive as separate unknown options; they are appended to the list
 * option seen last when they look like its items. */
static int last_list;

static int append_item(char **list, const char *item)
{
	char *s = NULL;
	if (asprintf(&s, "%s%s%s", *list ? *list : "", *list ? "," : "", item) < 0)
		return -1;
	free(*list);
	*list = s;
	return 0;
}

#define OPT(t, p) {t, offsetof(struct fs_opts, p), 1}
#define OPTV(t, p, v) {t, offsetof(struct fs_opts, p), v}

static const struct fuse_opt fs_opt_spec[] = {
	OPT("region=%s", region),
	FUSE_OPT_KEY("regions=", KEY_REGIONS),
	FUSE_OPT_KEY("registries=", KEY_REGISTRIES),
	OPT("profile=%s", profile),
	OPT("endpoint=%s", endpoint),
	OPT("sts_endpoint=%s", sts_endpoint),
	OPT("ca_file=%s", ca_file),
	OPTV("insecure", insecure, 1),
	OPT("cache_dir=%s", cache_dir),
	OPT("cache_size=%s", cache_size),
	OPT("tag_ttl=%d", tag_ttl),
	OPT("neg_ttl=%d", neg_ttl),
	OPT("deadline=%d", deadline),
	OPT("verify=%s", verify),
	OPT("log=%s", log),
	OPT("max_threads=%d", max_threads),
	OPT("pending_timeout=%d", pending_timeout),
	OPTV("no_create_repos", no_create_repos, 1),
	OPTV("show_referrers", show_referrers, 1),
	OPTV("rootfs_publish", rootfs_publish, 1),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FG),
	FUSE_OPT_KEY("foreground", KEY_FG),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("--debug", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	/* fstab-only options mount(8) may pass along. */
	FUSE_OPT_KEY("_netdev", KEY_DROP),
	FUSE_OPT_KEY("nofail", KEY_DROP),
	FUSE_OPT_KEY("noauto", KEY_DROP),
	FUSE_OPT_KEY("auto", KEY_DROP),
	FUSE_OPT_KEY("user", KEY_DROP),
	FUSE_OPT_KEY("users", KEY_DROP),
	FUSE_OPT_KEY("rw", KEY_DROP),
	FUSE_OPT_END,
};

static const char usage[] =
	"usage: ecrfs [SOURCE] MOUNTPOINT [-o option[,option...]]\n"
	"\n"
	"Shows Amazon ECR as a directory tree: MNT/ACCOUNT/REGION/REPO/TAG is an OCI\n"
	"image layout read lazily; cp -rT LAYOUT MNT/.../REPO/TAG pushes an image.\n"
	"SOURCE is \"ecr\" or the 12-digit default registry (mount -t fuse.ecrfs ecr MNT).\n"
	"\n"
	"AWS:\n"
	"    -o region=R            region (default: AWS_REGION, AWS_DEFAULT_REGION, profile, IMDS)\n"
	"    -o regions=R1,R2       regions listed under each registry (default: region)\n"
	"    -o registries=ID[:PROFILE],...  registries listed besides your own\n"
	"    -o profile=NAME        AWS profile (default: AWS_PROFILE, then default)\n"
	"    -o endpoint=URL        ECR endpoint (default: AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL)\n"
	"    -o sts_endpoint=URL    STS endpoint\n"
	"    -o ca_file=FILE        CA bundle for TLS\n"
	"    -o insecure            do not verify TLS certificates (testing only)\n"
	"Cache and consistency:\n"
	"    -o cache_dir=DIR       (default: $XDG_CACHE_HOME/ecrfs, ~/.cache/ecrfs, /var/cache/ecrfs for root)\n"
	"    -o cache_size=SIZE     cap of the disk cache, e.g. 10G (default 10G)\n"
	"    -o tag_ttl=S           seconds tags and repository lists are cached (default 30)\n"
	"    -o neg_ttl=S           seconds a missing name is cached (default 5)\n"
	"    -o deadline=S          deadline of each operation (default 30)\n"
	"    -o verify=strict       verify a blob's digest before serving any byte of it\n"
	"                           (TAG@rootfs: only TOCs whose digest the manifest annotates)\n"
	"    -o show_referrers      list referrers (images with a subject) and signature tags\n"
	"Mount:\n"
	"    -o ro                  read-only: every write fails with EROFS\n"
	"    -o allow_other         let other users read (default_permissions always on)\n"
	"    -o max_threads=N       FUSE worker threads (default 16)\n"
	"    -o log=FILE            log to FILE (default: stderr with -f, else syslog)\n"
	"    -o debug, -d           debug logging (implies -f)\n"
	"    -f                     stay in the foreground\n"
	"Push:\n"
	"    -o pending_timeout=S   drop an idle unfinished push after S seconds (default 600)\n"
	"    -o no_create_repos     do not create missing repositories on push\n"
	"    -o rootfs_publish      push TAG@rootfs indexes built here as a referrer\n"
	"Other:\n"
	"    -h, --help             this help\n"
	"    -V, --version          version\n";

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct fs_opts *o = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
			return 0;
		}
		if (!o->source) {
			/* Two positional arguments: SOURCE MOUNTPOINT. */
			o->source = o->mountpoint;
			o->mountpoint = strdup(arg);
			return 0;
		}
		fprintf(stderr, "ecrfs: unexpected argument %s\n", arg);
		return -1;
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case KEY_FG:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = 1;
		o->foreground = 1;
		return 0;
	case KEY_RO:
		o->ro = 1;
		return 1; /* the kernel mount is read-only too */
	case KEY_ALLOW_OTHER:
		o->allow_other = 1;
		return 1;
	case KEY_DROP:
		return 0;
	case KEY_REGIONS:
		last_list = KEY_REGIONS;
		return append_item(&o->regions, arg + strlen("regions="));
	case KEY_REGISTRIES:
		last_list = KEY_REGISTRIES;
		return append_item(&o->registries, arg + strlen("registries="));
	case FUSE_OPT_KEY_OPT:
		if (last_list == KEY_REGIONS && fs_name_is_region(arg))
			return append_item(&o->regions, arg);
		if (last_list == KEY_REGISTRIES && strlen(arg) >= 12 &&
		    strspn(arg, "0123456789") == 12 && (arg[12] == 0 || arg[12] == ':'))
			return append_item(&o->registries, arg);
		return 1;
	default:
		return 1;
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	uint64_t mul = 1;
	switch (toupper((unsigned char)*end)) {
	case 'K': mul = 1ULL << 10; end++; break;
	case 'M': mul = 1ULL << 20; end++; break;
	case 'G': mul = 1ULL << 30; end++; break;
	case 'T': mul = 1ULL << 40; end++; break;
	case 0: break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	*out = (uint64_t)(v * (double)mul);
	return 0;
}

char *fs_opts_default_cache_dir(void)
{
	char *s = NULL;
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	if (geteuid() == 0)
		return strdup("/var/cache/ecrfs");
	if (xdg && *xdg) {
		if (asprintf(&s, "%s/ecrfs", xdg) < 0)
			return NULL;
		return s;
	}
	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : "/tmp";
	}
	if (asprintf(&s, "%s/.cache/ecrfs", home) < 0)
		return NULL;
	return s;
}

/* mkdir -p with mode 0700 for the directories we create. */
void fs_opts_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(buf, 0700);
			*p = '/';
		}
	}
}


int fs_opts_parse(struct fuse_args *args, struct fs_opts *o)
{
	o->tag_ttl = 30;
	o->neg_ttl = 5;
	o->deadline = 30;
	o->max_threads = 16;
	o->pending_timeout = 600;
	return fuse_opt_parse(args, o, fs_opt_spec, opt_proc) == -1 ? -EINVAL : 0;
}

void fs_opts_usage(FILE *f)
{
	fputs(usage, f);
}

int fs_opts_check(struct fs_ctx *c)
{
	const struct fs_opts *o = &c->o;
	if (o->source && strcmp(o->source, "ecr") != 0 && !fs_name_is_account(o->source)) {
		fprintf(stderr, "ecrfs: SOURCE must be \"ecr\" or a 12-digit registry id, not %s\n",
			o->source);
		return -EINVAL;
	}
	if (o->verify && strcmp(o->verify, "strict") != 0) {
		fprintf(stderr, "ecrfs: verify= accepts only \"strict\"\n");
		return -EINVAL;
	}
	if (o->tag_ttl < 0 || o->neg_ttl < 0 || o->deadline <= 0 || o->max_threads <= 0) {
		fprintf(stderr, "ecrfs: tag_ttl, neg_ttl, deadline and max_threads must be positive\n");
		return -EINVAL;
	}
	c->verify_strict = o->verify != NULL;
	c->ro = o->ro;
	c->deadline_ms = o->deadline * 1000;
	c->uid = getuid();
	c->gid = getgid();
	c->mounted_at = time(NULL);
	c->cache_size = 10ULL << 30;
	if (o->cache_size && parse_size(o->cache_size, &c->cache_size) != 0) {
		fprintf(stderr, "ecrfs: cache_size=%s: expected a size such as 10G\n", o->cache_size);
		return -EINVAL;
	}
	return 0;
}
