/* Role credentials: role_arn with source_profile or credential_source
 * (AssumeRole), and web identity tokens (AssumeRoleWithWebIdentity). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/cred_i.h"
#include "net/log.h"
#include "net/sts.h"

static int web_identity(struct cred_chain *ch, const char *token_file, const char *role_arn,
			const char *session_name, const char *profile, int duration_s,
			struct cred *out)
{
	char region[64], ep[512];
	char *token = NULL;
	int ret = cred_read_file(token_file, &token);

	if (ret) {
		log_err("web identity token file %s: %s", token_file, strerror(-ret));
		return ret == -ENOENT ? -EACCES : ret;
	}
	cred_sts_region(ch, profile, region, sizeof(region));
	sts_endpoint(ch->sts_endpoint, region, ep, sizeof(ep));
	ret = sts_assume_role_with_web_identity(ch->http, ep, region, role_arn, session_name, token,
						duration_s, ch->timeout_ms, out);
	explicit_bzero(token, strlen(token));
	free(token);
	return ret;
}

int cred_from_web_identity_env(struct cred_chain *ch, struct cred *out)
{
	const char *tf = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *arn = getenv("AWS_ROLE_ARN");

	if (!tf || !*tf || !arn || !*arn) {
		cred_chain_note(ch,
				"web identity: AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN not set");
		return -ENOENT;
	}
	return web_identity(ch, tf, arn, getenv("AWS_ROLE_SESSION_NAME"), ch->profile, 0, out);
}

/* credential_source = Environment | Ec2InstanceMetadata | EcsContainer */
static int from_credential_source(struct cred_chain *ch, const char *profile, const char *cs,
				  struct cred *out)
{
	int ret;
	if (!strcasecmp(cs, "Environment")) {
		int explicit = ch->profile_explicit;
		ch->profile_explicit = 0; /* the profile asks for the environment */
		ret = cred_from_env(ch, out);
		ch->profile_explicit = explicit;
	} else if (!strcasecmp(cs, "Ec2InstanceMetadata")) {
		ret = cred_from_imds(ch, out);
	} else if (!strcasecmp(cs, "EcsContainer")) {
		ret = cred_from_container(ch, out);
	} else {
		log_err("profile %s: credential_source %s is not one of Environment, "
			"Ec2InstanceMetadata, EcsContainer",
			profile, cs);
		return -EINVAL;
	}
	if (ret == -ENOENT) {
		log_err("profile %s: credential_source %s gave no credentials", profile, cs);
		ret = -EACCES;
	}
	return ret;
}

int cred_from_role(struct cred_chain *ch, const char *profile, int depth, struct cred *out)
{
	const char *arn = cred_config_get(ch, profile, "role_arn");
	const char *src = cred_config_get(ch, profile, "source_profile");
	const char *cs = cred_config_get(ch, profile, "credential_source");
	const char *wif = cred_config_get(ch, profile, "web_identity_token_file");
	const char *sn = cred_config_get(ch, profile, "role_session_name");
	const char *xid = cred_config_get(ch, profile, "external_id");
	const char *dur = cred_config_get(ch, profile, "duration_seconds");
	struct cred base = {0};
	char region[64], ep[512];
	int duration = dur ? atoi(dur) : 0;
	int ret;

	if (!arn) {
		cred_chain_note(ch, "assume role: no role_arn in profile %s", profile);
		return -ENOENT;
	}
	if (depth > CRED_MAX_DEPTH) {
		log_err("profile %s: source_profile chain deeper than %d (a cycle?)", profile,
			CRED_MAX_DEPTH);
		return -ELOOP;
	}
	if (wif && !src && !cs)
		return web_identity(ch, wif, arn, sn, profile, duration, out);
	if (src && cs) {
		log_err("profile %s has both source_profile and credential_source; use one",
			profile);
		return -EINVAL;
	}
	if (cred_config_get(ch, profile, "mfa_serial"))
		log_warn("profile %s: mfa_serial is not supported by ecrfs (no terminal); "
			 "AssumeRole will likely be denied. Use credential_process instead",
			 profile);
	if (src) {
		/* A profile naming itself uses its own static keys as the source. */
		if (!strcmp(src, profile)) {
			ret = cred_from_static_profile(ch, profile, 0, &base);
			if (ret == -ENOENT)
				ret = cred_from_static_profile(ch, profile, 1, &base);
		} else {
			ret = cred_resolve_profile(ch, src, depth + 1, &base);
		}
		if (ret == -ENOENT) {
			log_err("profile %s: source_profile %s has no credentials", profile, src);
			ret = -EACCES;
		}
	} else if (cs) {
		ret = from_credential_source(ch, profile, cs, &base);
	} else {
		log_err("profile %s has role_arn but neither source_profile, credential_source "
			"nor web_identity_token_file",
			profile);
		ret = -EINVAL;
	}
	if (ret)
		goto out;
	cred_sts_region(ch, profile, region, sizeof(region));
	sts_endpoint(ch->sts_endpoint, region, ep, sizeof(ep));
	ret = sts_assume_role(ch->http, &base, ep, region, arn, sn, xid, duration, ch->timeout_ms,
			      out);
	if (ret == 0 && snprintf(out->source, sizeof(out->source), "assume-role %s via %s", arn,
				 base.source) >= (int)sizeof(out->source))
		log_debug("credential source name truncated");
out:
	cred_clear(&base);
	return ret;
}
