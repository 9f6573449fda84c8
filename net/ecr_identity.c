/* STS GetCallerIdentity for `whoami` and .ecrfs/identity, with the
 * credential source in use (never a secret). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/ecr_i.h"
#include "net/sts.h"

int ecr_get_caller_identity(ecr *e, const char *region, struct ecr_identity *out,
			    struct ecr_error *err)
{
	struct cred c = {0};
	int rc;

	memset(out, 0, sizeof(*out));
	if (err)
		memset(err, 0, sizeof(*err));
	if (!e->creds)
		return -EACCES;
	/* Only the source's name is kept from this snapshot. */
	rc = cred_get(e->creds, &c);
	if (rc)
		goto out;
	snprintf(out->source, sizeof(out->source), "%s", c.source);
	rc = sts_get_caller_identity(e->http, e->creds, e->sts_endpoint,
				     region && *region ? region : "us-east-1", out->account,
				     sizeof(out->account), out->arn, sizeof(out->arn), out->user_id,
				     sizeof(out->user_id));
out:
	if (rc && err)
		snprintf(err->message, sizeof(err->message), "GetCallerIdentity: %s",
			 strerror(-rc));
	ecr_stats_add(e, "GetCallerIdentity", rc != 0, 0, 0, 0);
	cred_clear(&c);
	return rc;
}
