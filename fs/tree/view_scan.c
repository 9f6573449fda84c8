/* TAG@scan.json: the image's scan findings as DescribeImageScanFindings
 * gives them (every page merged, basic or enhanced), pretty printed. The
 * VIEW node is the file itself; its bytes are fetched at each open. And
 * user.ecr.scan.* on images: the severity counts of DescribeImages'
 * imageScanFindingsSummary (no extra call). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/kinds_i.h"
#include "fs/tree/view_ecr.h"

static void scan_attr(struct fs_ctx *c, const struct fs_node *n, struct stat *st, int ro)
{
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
}

/* A new scan may finish at any time: attributes are not kept. */
static double ttl_zero(const struct fs_ctx *c, const struct fs_node *n) { return 0.0; }

static const struct fs_kind_ops scan_root = {NULL, NULL, scan_attr, ttl_tag, ttl_zero};

const struct fs_view_ops fs_view_scan = {&scan_root, NULL, NULL, NULL, NULL};

int fs_scan_is_file(const struct fs_node *n)
{
	return n->kind == FS_N_VIEW && n->view == FS_VIEW_SCAN;
}

/* An image without a scan reads as an empty object, so scripts that loop
 * over tags (grep, jq) need no special case; ECR's ScanNotFoundException
 * is not an error of the file. */
#define NO_SCAN "{}"

int fs_scan_render(struct fs_ctx *c, const struct fs_node *n, char **out, size_t *len)
{
	struct ecr_where w = {n->registry, n->region, n->repo};
	struct ecr_image_id id = {n->digest, NULL};
	char *raw = NULL, *pretty = NULL;
	json_t *j = NULL;
	int rc = ecr_describe_image_scan_findings(fs_ecr_for(c, n->registry), &w, &id, &raw, NULL);

	*out = NULL;
	*len = 0;
	if (rc == -ENODATA)
		rc = (raw = strdup(NO_SCAN)) ? 0 : -ENOMEM;
	if (rc)
		goto out;
	rc = -EPROTO;
	if (!(j = json_loads(raw, 0, NULL)))
		goto out;
	rc = -ENOMEM;
	if (!(pretty = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
		goto out;
	if (asprintf(out, "%s\n", pretty) < 0) {
		*out = NULL;
		goto out;
	}
	*len = strlen(*out);
	rc = 0;
out:
	json_decref(j);
	free(pretty);
	free(raw);
	return rc;
}

const char *const fs_scan_xattr_names[] = {
    "user.ecr.scan.critical",
    "user.ecr.scan.high",
    "user.ecr.scan.medium",
    "user.ecr.scan.low",
    "user.ecr.scan.informational",
    "user.ecr.scan.undefined",
    NULL,
};

char *fs_scan_xattr(const struct ecr_image *im, const char *name)
{
	char *val = NULL;

	if (!im || !im->scan_counts.have)
		return NULL;
	const struct ecr_scan_counts *s = &im->scan_counts;
	const int64_t v[] = {s->critical, s->high,	    s->medium,
			     s->low,	  s->informational, s->undefined};
	for (int i = 0; fs_scan_xattr_names[i]; i++)
		if (!strcmp(name, fs_scan_xattr_names[i]) && asprintf(&val, "%" PRId64, v[i]) < 0)
			return NULL;
	return val;
}
