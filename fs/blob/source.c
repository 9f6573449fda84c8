/* The blob source of a mount: ECR's GetDownloadUrlForLayer, then ranged
 * GETs of the URL it returns (see blob.h). */
#include "fs/blob/blob.h"

static int ecr_url(void *arg, const struct fs_blob_ref *ref, char **url, time_t *expires)
{
	struct ecr_where w = {.registry_id = ref->registry, .region = ref->region,
			      .repository = ref->repo};
	return ecr_get_download_url(ref->ecr, &w, ref->digest, url, expires, NULL);
}

static int ecr_range(void *arg, const struct fs_blob_ref *ref, const char *url, uint64_t off,
		     uint64_t len, net_sink_cb sink, void *sink_arg, volatile int *cancel)
{
	return ecr_fetch_url_range(ref->ecr, url, off, len, sink, sink_arg, cancel);
}

const struct fs_blob_source fs_blob_source_ecr = {ecr_url, ecr_range, NULL};
