/* ecrfs [SOURCE] MOUNTPOINT [-o options]: option parsing, credential and
 * region checks, cache, then the FUSE session (multi-threaded loop). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "fs/blob/blob.h"
#include "fs/tree/catalog.h"
#include "fs/mount.h"
#include "fs/tree/names.h"
#include "fs/fuse/notify.h"
#include "fs/fuse/ops.h"
#include "net/log.h"


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

static char *default_cache_dir(void)
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
static void mkdirs(const char *path)
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

static int split_list(const char *s, char ***out, size_t *n)
{
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char **nv = realloc(*out, (*n + 1) * sizeof *nv);
		if (!nv)
			break;
		*out = nv;
		(*out)[(*n)++] = strdup(t);
	}
	free(copy);
	return 0;
}

static int setup_registries(struct fs_ctx *c)
{
	char **items = NULL;
	size_t n = 0;
	int rc = 0;
	if (!c->o.registries)
		return 0;
	split_list(c->o.registries, &items, &n);
	c->regs = calloc(n + 1, sizeof *c->regs);
	if (!c->regs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char *colon = strchr(items[i], ':');
		if (colon)
			*colon = 0;
		if (!fs_name_is_account(items[i])) {
			fprintf(stderr, "ecrfs: registries=: %s is not a 12-digit account id\n",
				items[i]);
			rc = -EINVAL;
			goto out;
		}
		struct fs_registry *r = &c->regs[c->nregs++];
		snprintf(r->id, sizeof r->id, "%s", items[i]);
		if (colon && colon[1]) {
			r->profile = strdup(colon + 1);
			struct cred_opts co = {.profile = r->profile, .sts_endpoint = c->o.sts_endpoint,
					       .ca_file = c->o.ca_file};
			struct ecr_opts eo = {.http = c->http, .endpoint = c->o.endpoint,
					      .sts_endpoint = c->o.sts_endpoint,
					      .deadline_ms = c->deadline_ms};
			if ((rc = cred_provider_new(&co, &r->creds)) != 0)
				goto out;
			eo.creds = r->creds;
			if ((rc = ecr_new(&eo, &r->ecr)) != 0)
				goto out;
		}
	}
out:
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
	return rc;
}

static void ctx_free(struct fs_ctx *c)
{
	for (size_t i = 0; i < c->nregs; i++) {
		ecr_free(c->regs[i].ecr);
		cred_provider_free(c->regs[i].creds);
		free(c->regs[i].profile);
	}
	free(c->regs);
	for (size_t i = 0; i < c->nregions; i++)
		free(c->regions[i]);
	free(c->regions);
	if (c->ecr)
		ecr_free(c->ecr);
	if (c->creds)
		cred_provider_free(c->creds);
	if (c->http)
		net_http_free(c->http);
	if (c->cache)
		cache_close(c->cache);
	struct fs_opts *o = &c->o;
	free(o->source);
	free(o->mountpoint);
	free(o->region);
	free(o->regions);
	free(o->registries);
	free(o->profile);
	free(o->endpoint);
	free(o->sts_endpoint);
	free(o->ca_file);
	free(o->cache_dir);
	free(o->cache_size);
	free(o->verify);
	free(o->log);
}

/* Our own account: SOURCE when it is one, else DescribeRegistry or STS;
 * remembered in the cache for offline mounts. */
static void find_own_registry(struct fs_ctx *c)
{
	char *id = NULL, *saved = NULL;
	size_t len = 0;
	if (c->o.source && fs_name_is_account(c->o.source)) {
		snprintf(c->own_registry, sizeof c->own_registry, "%s", c->o.source);
		return;
	}
	const char *region = c->regions[0];
	/* A short deadline: an offline mount must come up promptly. */
	ecr *quick = NULL;
	struct ecr_opts eo = {.creds = c->creds, .http = c->http, .endpoint = c->o.endpoint,
			      .sts_endpoint = c->o.sts_endpoint,
			      .deadline_ms = c->deadline_ms < 5000 ? c->deadline_ms : 5000};
	if (ecr_new(&eo, &quick) != 0)
		quick = NULL;
	ecr *e = quick ? quick : c->ecr;
	struct ecr_identity ident;
	if (ecr_describe_registry(e, region, &id, NULL) == 0 && id && fs_name_is_account(id))
		snprintf(c->own_registry, sizeof c->own_registry, "%s", id);
	else if (ecr_get_caller_identity(e, region, &ident, NULL) == 0 &&
		 fs_name_is_account(ident.account))
		memcpy(c->own_registry, ident.account, 13);
	if (quick)
		ecr_free(quick);
	free(id);
	char key[64];
	snprintf(key, sizeof key, "%s", cred_profile_name(c->creds));
	if (c->own_registry[0]) {
		cache_meta_put(c->cache, "account", key, c->own_registry, strlen(c->own_registry));
	} else if (cache_meta_get(c->cache, "account", key, &saved, &len) == 0 &&
		   fs_name_is_account(saved)) {
		snprintf(c->own_registry, sizeof c->own_registry, "%s", saved);
		log_warn("ECR unreachable at mount: using the last known account %s", saved);
	} else {
		log_warn("ECR unreachable at mount and no account known: only -o registries= and "
			 "names typed in full are shown");
	}
	free(saved);
}

/* Forks before any thread exists (the ops table may start threads, e.g.
 * the push side's sweeper; fuse_daemonize forks later, after the mount, and
 * a thread would then be lost in the child, or hold a lock forever). The
 * parent waits for the child's word on the mount and exits with it. */
static int daemonize_early(int *status_fd)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		char st = 1;
		close(fds[1]);
		if (read(fds[0], &st, 1) != 1)
			st = 1; /* the child died before mounting */
		_exit(st);
	}
	close(fds[0]);
	setsid();
	*status_fd = fds[1];
	return 0;
}

/* The child mounted: detach from the terminal and release the parent. */
static void daemon_ready(int status_fd)
{
	char ok = 0;
	int nul = open("/dev/null", O_RDWR);
	if (chdir("/") != 0)
		log_warn("chdir /: %s", strerror(errno));
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	if (write(status_fd, &ok, 1) != 1)
		log_warn("could not report the mount to the parent process");
	close(status_fd);
}

/* The blob reader's page-cache invalidation (fs/blob knows no FUSE). */
static void blob_inval(void *arg, uint64_t ino)
{
	fs_inval_inode_async((fuse_ino_t)ino);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fs_ctx *c = fs_ctx_get();
	struct fuse_session *se = NULL;
	struct fuse_loop_config *lc = NULL;
	struct fuse_lowlevel_ops ops;
	int rc = 1, mounted = 0, sig = 0, notify = 0, status_fd = -1;
	char *fsname = NULL;

	c->o.tag_ttl = 30;
	c->o.neg_ttl = 5;
	c->o.deadline = 30;
	c->o.max_threads = 16;
	c->o.pending_timeout = 600;
	if (fuse_opt_parse(&args, &c->o, fs_opt_spec, opt_proc) == -1)
		goto out;
	if (c->o.show_help) {
		fputs(usage, stdout);
		rc = 0;
		goto out;
	}
	if (c->o.show_version) {
		printf("ecrfs %s (libfuse %s)\n", ECRFS_VERSION, fuse_pkgversion());
		rc = 0;
		goto out;
	}
	if (!c->o.mountpoint) {
		fputs(usage, stderr);
		goto out;
	}
	if (c->o.source && strcmp(c->o.source, "ecr") != 0 && !fs_name_is_account(c->o.source)) {
		fprintf(stderr, "ecrfs: SOURCE must be \"ecr\" or a 12-digit registry id, not %s\n",
			c->o.source);
		goto out;
	}
	if (c->o.verify && strcmp(c->o.verify, "strict") != 0) {
		fprintf(stderr, "ecrfs: verify= accepts only \"strict\"\n");
		goto out;
	}
	if (c->o.tag_ttl < 0 || c->o.neg_ttl < 0 || c->o.deadline <= 0 || c->o.max_threads <= 0) {
		fprintf(stderr, "ecrfs: tag_ttl, neg_ttl, deadline and max_threads must be positive\n");
		goto out;
	}
	c->verify_strict = c->o.verify != NULL;
	c->ro = c->o.ro;
	c->deadline_ms = c->o.deadline * 1000;
	c->uid = getuid();
	c->gid = getgid();
	c->mounted_at = time(NULL);
	c->cache_size = 10ULL << 30;
	if (c->o.cache_size && parse_size(c->o.cache_size, &c->cache_size) != 0) {
		fprintf(stderr, "ecrfs: cache_size=%s: expected a size such as 10G\n",
			c->o.cache_size);
		goto out;
	}

	if (c->o.log)
		log_init(LOG_TO_FILE, c->o.log, c->o.debug ? LOGL_DEBUG : LOGL_INFO);
	else if (c->o.foreground)
		log_init(LOG_TO_STDERR, NULL, c->o.debug ? LOGL_DEBUG : LOGL_INFO);
	else
		log_init(LOG_TO_SYSLOG, NULL, c->o.debug ? LOGL_DEBUG : LOGL_INFO);

	/* Region: -o region, regions' first, then the AWS chain. */
	struct cred_opts co = {.profile = c->o.profile, .sts_endpoint = c->o.sts_endpoint,
			       .ca_file = c->o.ca_file};
	if (c->o.regions)
		split_list(c->o.regions, &c->regions, &c->nregions);
	char region[64] = "";
	if (c->o.region)
		snprintf(region, sizeof region, "%s", c->o.region);
	else if (c->nregions)
		snprintf(region, sizeof region, "%s", c->regions[0]);
	else if (cred_resolve_region(&co, region, sizeof region) != 0) {
		fprintf(stderr, "ecrfs: no AWS region: use -o region=REGION or set AWS_REGION\n");
		goto out;
	}
	if (!c->nregions) {
		c->regions = calloc(1, sizeof *c->regions);
		if (!c->regions || !(c->regions[0] = strdup(region)))
			goto out;
		c->nregions = 1;
	}
	for (size_t i = 0; i < c->nregions; i++) {
		if (!fs_name_is_region(c->regions[i])) {
			fprintf(stderr, "ecrfs: %s is not a region name\n", c->regions[i]);
			goto out;
		}
	}

	/* Credentials must resolve now; the network may be down. */
	if (cred_provider_new(&co, &c->creds) != 0)
		goto out;
	struct cred cr;
	memset(&cr, 0, sizeof cr);
	if (cred_get(c->creds, &cr) != 0) {
		fprintf(stderr, "ecrfs: no AWS credentials found (environment, profile %s, SSO, "
				"container, instance role); see the log above\n",
			cred_profile_name(c->creds));
		goto out;
	}
	log_info("credentials: %s", cr.source);
	cred_clear(&cr);

	struct net_http_opts ho = {.ca_file = c->o.ca_file, .insecure = c->o.insecure};
	if (net_http_new(&ho, &c->http) != 0)
		goto out;
	struct ecr_opts eo = {.creds = c->creds, .http = c->http, .endpoint = c->o.endpoint,
			      .sts_endpoint = c->o.sts_endpoint, .deadline_ms = c->deadline_ms};
	if (ecr_new(&eo, &c->ecr) != 0)
		goto out;
	if (setup_registries(c) != 0)
		goto out;

	if (!c->o.cache_dir && !(c->o.cache_dir = default_cache_dir()))
		goto out;
	mkdirs(c->o.cache_dir);
	int crc = cache_open(c->o.cache_dir, c->cache_size, &c->cache);
	if (crc != 0) {
		fprintf(stderr, "ecrfs: cache_dir %s: %s\n", c->o.cache_dir, strerror(-crc));
		goto out;
	}
	find_own_registry(c);

	if (!c->o.foreground && daemonize_early(&status_fd) != 0) {
		fprintf(stderr, "ecrfs: cannot fork: %s\n", strerror(errno));
		goto out;
	}
	if (fs_node_init() != 0)
		goto out;
	struct fs_blobs_cfg bc = {.cache = c->cache, .deadline_ms = c->deadline_ms,
				  .verify_strict = c->verify_strict, .inval = blob_inval};
	if (fs_blobs_new(&bc, &c->blobs) != 0)
		goto out;
	if (asprintf(&fsname, "-ofsname=%s,subtype=ecrfs,default_permissions",
		     c->o.source ? c->o.source : "ecr") < 0) {
		fsname = NULL;
		goto out;
	}
	fuse_opt_add_arg(&args, fsname);
	if (c->o.debug)
		fuse_opt_add_arg(&args, "-odebug");
	fs_ops_build(&ops);
	se = fuse_session_new(&args, &ops, sizeof ops, c);
	if (!se)
		goto out;
	c->se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, c->o.mountpoint) != 0)
		goto out;
	mounted = 1;
	log_info("mounted %s on %s (registry %s, region %s)", c->o.source ? c->o.source : "ecr",
		 c->o.mountpoint, c->own_registry[0] ? c->own_registry : "unknown",
		 c->regions[0]);
	if (status_fd >= 0) {
		daemon_ready(status_fd);
		status_fd = -1;
	}
	if (fs_notify_start(se) != 0)
		goto out;
	notify = 1;

	lc = fuse_loop_cfg_create();
	if (!lc)
		goto out;
	fuse_loop_cfg_set_max_threads(lc, (unsigned)c->o.max_threads);
	/* Idle workers stay: libfuse otherwise ends the ones above the idle
	 * count after each burst of reads and starts new ones (with a new
	 * splice pipe) for the next, a thread per read for a sequential cat. */
	fuse_loop_cfg_set_idle_threads(lc, (unsigned)c->o.max_threads);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	sig = fuse_session_loop_mt(se, lc);
	rc = sig < 0 ? 1 : 0;
out:
	if (notify)
		fs_notify_stop();
	if (fs_push_shutdown)
		fs_push_shutdown();
	fs_ops_cleanup();
	fs_blobs_free(c->blobs);
	c->blobs = NULL;
	if (mounted)
		fuse_session_unmount(se);
	if (se) {
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	if (lc)
		fuse_loop_cfg_destroy(lc);
	fs_cat_shutdown();
	fs_node_shutdown();
	ctx_free(c);
	free(fsname);
	fuse_opt_free_args(&args);
	log_close();
	return rc;
}
