/* AWS credential chain in the AWS CLI's order:
 *   1. environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)
 *   2. profile with role_arn: AssumeRole from source_profile or credential_source
 *   3. web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, or profile keys)
 *   4. IAM Identity Center (SSO) token cache (~/.aws/sso/cache); when absent a
 *      log line explains how to use credential_process instead
 *   5. shared credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials)
 *   6. credential_process
 *   7. config file keys (AWS_CONFIG_FILE, ~/.aws/config)
 *   8. ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI /
 *      _FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
 *   9. EC2 IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address,
 *      AWS_EC2_METADATA_DISABLED=true skips it)
 * Temporary credentials are refreshed before they expire: 5 minutes before,
 * or at three quarters of their lifetime when that is shorter (credentials
 * that live a minute are refreshed after 45 s, not on every call). One
 * refresh at a time serves every thread. Thread-safe. */
#ifndef ECRFS_CRED_H
#define ECRFS_CRED_H

#include <stddef.h>
#include <time.h>

typedef struct cred_provider cred_provider;

struct cred_opts {
	const char *profile;      /* NULL: AWS_PROFILE, then "default" */
	const char *sts_endpoint; /* NULL: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, default */
	const char *ca_file;      /* CA bundle for STS/IMDS/ECS over https, NULL: system */
	int timeout_ms;           /* per HTTP call made by the chain, 0: 5000 */
	int refresh_before_s;     /* refresh this long before expiry; 0: the rule above */
};

/* A snapshot of credentials; strings owned by the struct (cred_clear). */
struct cred {
	char *access_key_id;
	char *secret_access_key;
	char *session_token; /* NULL when none */
	time_t expiration;   /* 0 when static */
	char source[128];    /* "environment", "profile dev", "assume-role arn:... via profile x",
	                        "web identity", "sso", "credential_process", "container",
	                        "instance role NAME"; never a secret */
};

/* Never fails for missing credentials: that is reported by cred_get. */
int cred_provider_new(const struct cred_opts *opts, cred_provider **out);
void cred_provider_free(cred_provider *p);

/* Fills out with current credentials (refreshing them when they are about
 * to expire). Returns 0, or -EACCES with a log line listing the sources tried
 * (and, for IMDS, whether the instance has a role). */
int cred_get(cred_provider *p, struct cred *out);
void cred_clear(struct cred *c);

/* Forces the next cred_get to refresh (after ExpiredToken). */
void cred_invalidate(cred_provider *p);

/* A call signed with access_key_id was refused as expired: the next
 * cred_get refreshes, unless that key was replaced already. So however many
 * threads saw the refusal, one refresh (which they all wait for) follows. */
void cred_expired(cred_provider *p, const char *access_key_id);

/* Region resolution: AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
 * then IMDS. Writes into buf; returns 0 or -ENOENT. */
int cred_resolve_region(const struct cred_opts *opts, char *buf, size_t bufsize);

/* Resolved profile name (for logs/identity). Never NULL. */
const char *cred_profile_name(const cred_provider *p);

#endif
