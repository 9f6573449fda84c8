/* REPO@settings/: the files (view_settings.c) and what each reads and
 * writes in ECR (settings_io.c). */
#ifndef ECRFS_FS_TREE_VIEW_SETTINGS_I_H
#define ECRFS_FS_TREE_VIEW_SETTINGS_I_H

#include <stddef.h>

#include "net/ecr.h"

enum settings_id {
	SF_MUTABILITY,	   /* PutImageTagMutability; DescribeRepositories */
	SF_LIFECYCLE,	   /* Put/Get/DeleteLifecyclePolicy */
	SF_REPO_POLICY,	   /* Set/Get/DeleteRepositoryPolicy */
	SF_SCANNING,	   /* PutImageScanningConfiguration; DescribeRepositories */
	SF_ENCRYPTION,	   /* DescribeRepositories (set at creation only) */
	SF_PREVIEW,	   /* StartLifecyclePolicyPreview; the previewed policy */
	SF_PREVIEW_RESULT, /* GetLifecyclePolicyPreview */
};

/* The bytes of file id of repository w (malloc'd); -ENOENT when the
 * policy it shows does not exist. */
int settings_io_read(ecr *e, const struct ecr_where *w, enum settings_id id, char **out,
		     size_t *len);
/* The file's one Put call with text (NUL-terminated); -EINVAL with one
 * log line for text the file does not take or ECR refuses. */
int settings_io_write(ecr *e, const struct ecr_where *w, enum settings_id id, const char *name,
		      const char *text, size_t len);

#endif
