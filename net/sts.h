/* AWS STS calls used by the credential chain and .ecrfs/identity:
 * form-encoded POSTs (Version 2011-06-15), XML replies parsed by libxml2.
 * Errors are logged with STS's code and message (never a secret) and
 * returned as -errno: -EACCES for AccessDenied, expired/invalid tokens or
 * signatures; -EIO for other service errors; transport errors as net_http_do
 * returns them. */
#ifndef ECRFS_STS_H
#define ECRFS_STS_H

#include <stddef.h>

#include "net/cred.h"
#include "net/http.h"

/* Endpoint for region: override, else AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL,
 * else https://sts.REGION.amazonaws.com (.com.cn for cn-*; sts-fips when
 * AWS_USE_FIPS_ENDPOINT=true). Returns buf. */
const char *sts_endpoint(const char *override, const char *region, char *buf, size_t n);

/* AssumeRole signed with src. session_name NULL: "ecrfs-<epoch>";
 * external_id NULL: none; duration_s 0: STS's default. */
int sts_assume_role(net_http *h, const struct cred *src, const char *endpoint, const char *region,
		    const char *role_arn, const char *session_name, const char *external_id,
		    int duration_s, int timeout_ms, struct cred *out);

/* AssumeRoleWithWebIdentity (unsigned). */
int sts_assume_role_with_web_identity(net_http *h, const char *endpoint, const char *region,
				      const char *role_arn, const char *session_name,
				      const char *token, int duration_s, int timeout_ms,
				      struct cred *out);

/* GetCallerIdentity with the provider's current credentials. endpoint NULL:
 * sts_endpoint(NULL, region). Any output buffer may be NULL. */
int sts_get_caller_identity(net_http *h, cred_provider *creds, const char *endpoint,
			    const char *region, char *account, size_t account_size, char *arn,
			    size_t arn_size, char *user_id, size_t user_id_size);

/* Same with a credentials snapshot instead of a provider. */
int sts_get_caller_identity_with(net_http *h, const struct cred *c, const char *endpoint,
				 const char *region, char *account, size_t account_size, char *arn,
				 size_t arn_size, char *user_id, size_t user_id_size);

#endif
