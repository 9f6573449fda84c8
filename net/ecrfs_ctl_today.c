/* ecrfs-ctl today ...: mutability, image status and pull time, referrers,
 * storage class, scan findings and repository settings through net/ecr.h,
 * so tests check the C client against the emulator end to end. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/ecrfs_ctl_today.h"

void ctl_today_usage(FILE *f)
{
	fprintf(f, "  today SUB ACCOUNT/REGION/REPO[:TAG|@DIGEST] [ARGS]   today's ECR:\n"
		   "      mutability REF[:TAG]    setting, filters (and TAG's answer)\n"
		   "      set-mutability REF MODE [FILTER...]\n"
		   "      image REF:TAG           status, pull time, subject, scan counts\n"
		   "      referrers REF@DIGEST [ARTIFACT_TYPE...]\n"
		   "      storage-class REF:TAG ARCHIVE|STANDARD\n"
		   "      scan REF:TAG            all findings (JSON)\n"
		   "      lifecycle|policy REF    the policy text\n"
		   "      put-lifecycle|set-policy REF FILE; delete-lifecycle|delete-policy REF\n"
		   "      preview REF [FILE]      start a lifecycle preview, print its result\n"
		   "      scan-on-push REF 0|1\n"
		   "      pull-exclusions         principals excluded from pull-time updates\n");
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "ecrfs-ctl: today %s: %s\n", what, strerror(-rc));
	return 1;
}

/* "ACCOUNT/REGION/REPO[:TAG|@DIGEST]" split in place into w and id. */
static int parse(char *s, struct ecr_where *w, struct ecr_image_id *id)
{
	char *p = strchr(s, '/'), *q;

	memset(id, 0, sizeof(*id));
	if (!p)
		return -EINVAL;
	*p++ = '\0';
	q = strchr(p, '/');
	if (!q || !q[1])
		return -EINVAL;
	*q++ = '\0';
	*w = (struct ecr_where){.registry_id = s, .region = p, .repository = q};
	if ((p = strchr(q, '@'))) {
		*p = '\0';
		id->digest = p + 1;
	} else if ((p = strrchr(q, ':'))) {
		*p = '\0';
		id->tag = p + 1;
	}
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int print_text(const char *what, int rc, char *text)
{
	if (rc)
		return fail(what, rc);
	printf("%s\n", text);
	free(text);
	return 0;
}

static int mutability(ecr *e, const struct ecr_where *w, const char *tag)
{
	const char *name = w->repository;
	struct ecr_repo_list l;
	struct ecr_where rw = {w->registry_id, w->region, NULL};
	int rc = ecr_describe_repositories(e, &rw, &name, 1, &l, NULL);

	if (rc)
		return fail("mutability", rc);
	if (l.n == 1) {
		const struct ecr_repo *r = &l.v[0];
		const char *m = ecr_mutability_name(r->mutability);
		printf("mutability\t%s\nimmutable\t%d\n", m ? m : "UNKNOWN", r->immutable);
		for (size_t i = 0; i < r->nmutability_filters; i++)
			printf("filter\t%s\n", r->mutability_filters[i]);
		printf("encryption\t%s\n", r->encryption_type ? r->encryption_type : "");
		if (tag)
			printf("tag\t%s\t%s\n", tag,
			       ecr_repo_tag_immutable(r, tag) ? "immutable" : "mutable");
	}
	ecr_repo_list_free(&l);
	return 0;
}

static int image(ecr *e, const struct ecr_where *w, const struct ecr_image_id *id)
{
	struct ecr_image_list l;
	int rc = ecr_describe_images(e, w, id, 1, &l, NULL);

	if (rc)
		return fail("image", rc);
	for (size_t i = 0; i < l.n; i++) {
		const struct ecr_image *im = &l.v[i];
		printf("digest\t%s\nstatus\t%s\narchived\t%d\nlast_pulled_at\t%lld\n"
		       "archived_at\t%lld\nsubject\t%s\nsize\t%lld\ntags\t%zu\n",
		       im->digest, im->status ? im->status : "", ecr_image_archived(im),
		       (long long)im->last_pulled_at, (long long)im->archived_at,
		       im->subject_digest ? im->subject_digest : "", (long long)im->size,
		       im->ntags);
		if (im->scan_counts.have)
			printf("scan\tcritical=%lld high=%lld medium=%lld low=%lld\n",
			       (long long)im->scan_counts.critical, (long long)im->scan_counts.high,
			       (long long)im->scan_counts.medium, (long long)im->scan_counts.low);
	}
	ecr_image_list_free(&l);
	return 0;
}

static int referrers(ecr *e, const struct ecr_where *w, const char *digest, int n, char **types)
{
	struct ecr_referrer_list l;
	int rc = ecr_list_image_referrers(e, w, digest, (const char *const *)types, (size_t)n, 0,
					  &l, NULL);

	if (rc)
		return fail("referrers", rc);
	for (size_t i = 0; i < l.n; i++)
		printf("%s\t%s\t%lld\t%s\n", l.v[i].digest,
		       l.v[i].artifact_type ? l.v[i].artifact_type : "", (long long)l.v[i].size,
		       l.v[i].annotations_json ? l.v[i].annotations_json : "");
	ecr_referrer_list_free(&l);
	return 0;
}

static int exclusions(ecr *e, const char *region)
{
	char **v;
	size_t n;
	int rc = ecr_list_pull_time_exclusions(e, region, &v, &n, NULL);

	if (rc)
		return fail("pull-exclusions", rc);
	for (size_t i = 0; i < n; i++)
		printf("%s\n", v[i]);
	ecr_strv_free(v, n);
	return 0;
}

/* The sub-commands that take a file or a value. */
static int with_arg(ecr *e, const char *sub, const struct ecr_where *w,
		    const struct ecr_image_id *id, int argc, char **argv)
{
	char *text = NULL, *st = NULL;
	int rc;

	if (strcmp(sub, "storage-class") == 0) {
		rc = ecr_update_image_storage_class(e, w, id, argv[0], &st, NULL);
		return print_text(sub, rc, st);
	}
	if (strcmp(sub, "scan-on-push") == 0) {
		rc = ecr_put_image_scanning_configuration(e, w, atoi(argv[0]), NULL);
		return rc ? fail(sub, rc) : 0;
	}
	if (strcmp(sub, "set-mutability") == 0) {
		rc = ecr_put_image_tag_mutability(e, w, ecr_mutability_parse(argv[0]),
						  (const char *const *)argv + 1, (size_t)(argc - 1),
						  NULL);
		return rc ? fail(sub, rc) : 0;
	}
	if (!(text = slurp(argv[0])))
		return fail(argv[0], -errno);
	if (strcmp(sub, "put-lifecycle") == 0)
		rc = ecr_put_lifecycle_policy(e, w, text, NULL);
	else if (strcmp(sub, "set-policy") == 0)
		rc = ecr_set_repository_policy(e, w, text, 0, NULL);
	else
		rc = -EINVAL;
	free(text);
	return rc ? fail(sub, rc) : 0;
}

int ctl_today(ecr *e, const char *region, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	struct ecr_where w;
	struct ecr_image_id id;
	char *text = NULL;
	int rc, complete = 0;

	if (strcmp(sub, "pull-exclusions") == 0)
		return exclusions(e, region);
	if (argc < 2 || parse(argv[1], &w, &id)) {
		ctl_today_usage(stderr);
		return 2;
	}
	argc -= 2;
	argv += 2;
	if (strcmp(sub, "mutability") == 0)
		return mutability(e, &w, id.tag);
	if (strcmp(sub, "image") == 0)
		return image(e, &w, &id);
	if (strcmp(sub, "referrers") == 0 && id.digest)
		return referrers(e, &w, id.digest, argc, argv);
	/* The call first, then print: argument order is unspecified in C. */
	if (strcmp(sub, "scan") == 0) {
		rc = ecr_describe_image_scan_findings(e, &w, &id, &text, NULL);
		return print_text(sub, rc, text);
	}
	if (strcmp(sub, "lifecycle") == 0) {
		rc = ecr_get_lifecycle_policy(e, &w, &text, NULL, NULL);
		return print_text(sub, rc, text);
	}
	if (strcmp(sub, "policy") == 0) {
		rc = ecr_get_repository_policy(e, &w, &text, NULL);
		return print_text(sub, rc, text);
	}
	if (strcmp(sub, "delete-lifecycle") == 0 || strcmp(sub, "delete-policy") == 0) {
		rc = sub[7] == 'l' ? ecr_delete_lifecycle_policy(e, &w, NULL)
				   : ecr_delete_repository_policy(e, &w, NULL);
		return rc ? fail(sub, rc) : 0;
	}
	if (strcmp(sub, "preview") == 0) {
		text = argc > 0 ? slurp(argv[0]) : NULL;
		if (argc > 0 && !text)
			return fail(argv[0], -errno);
		rc = ecr_start_lifecycle_policy_preview(e, &w, text, NULL);
		free(text);
		if (rc)
			return fail(sub, rc);
		rc = ecr_get_lifecycle_policy_preview(e, &w, &text, &complete, NULL);
		return print_text(sub, rc, text);
	}
	if (argc >= 1)
		return with_arg(e, sub, &w, &id, argc, argv);
	ctl_today_usage(stderr);
	return 2;
}
