/* Private helpers of the credential chain (net/cred*.c). */
#ifndef ECRFS_CRED_I_H
#define ECRFS_CRED_I_H

#include <stddef.h>
#include <time.h>

#include "net/cred.h"
#include "net/http.h"

/* ---- INI files (~/.aws/config, ~/.aws/credentials) ---- */

/* A parsed file. Section names are normalised: in the config file
 * "[profile x]" and "[x]" both become "x" ("default" stays "default"), other
 * typed sections keep their type ("sso-session x"). */
struct ini;

/* Loads path; returns NULL with *err = -ENOENT when the file is absent. */
struct ini *ini_load(const char *path, int is_config, int *err);
void ini_free(struct ini *f);
/* Value of key in section, or NULL. Keys are case-sensitive like the CLI's. */
const char *ini_get(const struct ini *f, const char *section, const char *key);
int ini_has_section(const struct ini *f, const char *section);

/* ---- one resolution of the chain ---- */

/* What one chain walk works with; filled by cred.c, used by each source. */
struct cred_chain {
	const char *profile;
	int profile_explicit; /* given by the caller (then environment keys are skipped) */
	struct ini *config, *credentials;
	char config_path[512], credentials_path[512];
	const char *sts_endpoint; /* override, may be NULL */
	const char *ca_file;
	int timeout_ms;
	net_http *http;	  /* for STS, SSO, container and IMDS calls */
	char tried[1024]; /* "environment: not set; profile x: ..." for the failure log */
};

void cred_chain_note(struct cred_chain *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Looks key up in profile of the config file, then the credentials file. */
const char *cred_profile_get(const struct cred_chain *ch, const char *profile, const char *key);
/* Same, config file only (role_arn, sso_*, credential_source, region ...). */
const char *cred_config_get(const struct cred_chain *ch, const char *profile, const char *key);

/* Fills *out from strings (all duplicated). Returns 0 or -ENOMEM. */
int cred_set(struct cred *out, const char *ak, const char *sk, const char *token, time_t exp,
	     const char *source_fmt, ...) __attribute__((format(printf, 6, 7)));

/* Wipes then frees a secret string (NULL-safe). */
void cred_free_secret(char *s);
/* Wipes then frees the body of a reply that may carry keys or tokens. */
void cred_reply_free(struct net_response *r);

/* Parses an ISO 8601 / RFC 3339 UTC time ("2026-01-02T03:04:05Z", with an
 * optional fraction and "+00:00" offset). Returns 0 or -EINVAL. */
int cred_parse_time(const char *s, time_t *out);

/* Region for STS calls: AWS_REGION, AWS_DEFAULT_REGION, the profile's
 * region, else "us-east-1". */
const char *cred_sts_region(const struct cred_chain *ch, const char *profile, char *buf, size_t n);

/* The home directory: $HOME, else the passwd entry of the effective user
 * (mount helpers run without HOME). Returns buf. */
const char *cred_home(char *buf, size_t n);

/* Reads a whole small file into a malloc'd NUL-terminated string with
 * surrounding whitespace trimmed. Returns 0 or -errno. */
int cred_read_file(const char *path, char **out);

/* ---- sources: 0 when credentials were obtained, -ENOENT when the source is
 * not configured (the chain goes on), another -errno when it is configured
 * but failed (the chain stops, like the AWS CLI). ---- */

int cred_from_env(struct cred_chain *ch, struct cred *out);
int cred_from_static_profile(struct cred_chain *ch, const char *profile, int config_only,
			     struct cred *out);
int cred_from_role(struct cred_chain *ch, const char *profile, int depth, struct cred *out);
int cred_from_web_identity_env(struct cred_chain *ch, struct cred *out);
int cred_from_sso(struct cred_chain *ch, const char *profile, struct cred *out);
int cred_from_process(struct cred_chain *ch, const char *profile, struct cred *out);
int cred_from_container(struct cred_chain *ch, struct cred *out);
int cred_from_imds(struct cred_chain *ch, struct cred *out);

/* Credentials of a profile used as a source_profile (static keys, its own
 * role, web identity, SSO or credential_process), cycle-safe via depth. */
int cred_resolve_profile(struct cred_chain *ch, const char *profile, int depth, struct cred *out);

/* Credentials from a JSON reply of IMDS or the container endpoint
 * (AccessKeyId, SecretAccessKey, Token, Expiration). Returns 0 or -EIO. */
int cred_from_json_reply(const char *body, struct cred *out, const char *source_fmt,
			 const char *arg);

/* IMDSv2 region (placement/region). Returns 0 or -errno. */
int cred_imds_region(net_http *h, char *buf, size_t n);

#define CRED_MAX_DEPTH 8

#endif
