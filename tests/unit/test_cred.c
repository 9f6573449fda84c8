/* The credential chain (net/cred*.c) and STS client (net/sts.c), each source
 * against fake files and a fake HTTP server playing IMDS, the ECS agent,
 * STS and the SSO portal. Everything stays on 127.0.0.1. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "check.h"
#include "fakesrv.h"
#include "net/cred.h"
#include "net/ecr_i.h"
#include "net/log.h"
#include "net/sts.h"

static struct fakesrv srv;
static char base[64];
static char tmpdir[256];
static char logpath[300];

/* ---- what the fake server plays ---- */
static struct {
	int imds_no_role;
	int imds_v1;	       /* IMDSv2 off: the token PUT answers 403 */
	int imds_ttl;	       /* seconds until the IMDS credentials expire */
	int imds_cred_fetches; /* GETs of the role's credentials */
	const char *container_auth;
	const char *expect_web_token;
	int block_fetch; /* hold the next role-credentials GET until released */
	int blocked;	 /* a GET is being held */
} fx;
/* Protects fx.block_fetch and fx.blocked (server thread vs test thread). */
static pthread_mutex_t fx_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fx_cond = PTHREAD_COND_INITIALIZER;

/* With fx_lock held: waits on fx_cond while *flag == value, 20 s at most
 * (so a broken provider fails the test instead of hanging it). */
static void wait_while(const int *flag, int value)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	while (*flag == value)
		if (pthread_cond_timedwait(&fx_cond, &fx_lock, &until))
			break;
}

/* Sets fx.block_fetch and wakes whoever waits on fx_cond. */
static void set_block_fetch(int on)
{
	pthread_mutex_lock(&fx_lock);
	fx.block_fetch = on;
	pthread_cond_broadcast(&fx_cond);
	pthread_mutex_unlock(&fx_lock);
}

/* Holds the server thread while fx.block_fetch is set. */
static void maybe_block(void)
{
	pthread_mutex_lock(&fx_lock);
	if (fx.block_fetch) {
		fx.blocked = 1;
		pthread_cond_broadcast(&fx_cond);
		wait_while(&fx.block_fetch, 1);
		fx.blocked = 0;
	}
	pthread_mutex_unlock(&fx_lock);
}

static void iso_time(time_t t, char *buf, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int form_has(const char *body, const char *kv)
{
	size_t l = strlen(kv);
	for (const char *p = body; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL)
		if (!strncmp(p, kv, l) && (p[l] == '&' || p[l] == '\0'))
			return 1;
	return 0;
}

static void handler(struct fakesrv *s, const struct fake_req *rq, int n, struct fake_resp *rs)
{
	char h[512], exp[64];
	const char *t = rq->target;

	if (!strcmp(rq->method, "PUT") && !strcmp(t, "/latest/api/token")) {
		if (fx.imds_v1)
			rs->status = 403;
		else if (!fake_header(rq->headers, "X-aws-ec2-metadata-token-ttl-seconds", h,
				      sizeof(h)))
			rs->status = 400;
		else
			strcpy(rs->body, "IMDSTOKEN");
		return;
	}
	if (!strncmp(t, "/latest/", 8)) {
		int has = fake_header(rq->headers, "X-aws-ec2-metadata-token", h, sizeof(h));
		if (fx.imds_v1 ? has : (!has || strcmp(h, "IMDSTOKEN"))) {
			rs->status = 401;
			return;
		}
		if (!strcmp(t, "/latest/meta-data/placement/region")) {
			strcpy(rs->body, "ap-south-2");
		} else if (!strcmp(t, "/latest/meta-data/iam/security-credentials/")) {
			if (fx.imds_no_role)
				rs->status = 404;
			else
				strcpy(rs->body, "test-role\n");
		} else if (!strcmp(t, "/latest/meta-data/iam/security-credentials/test-role")) {
			maybe_block();
			int k = __atomic_add_fetch(&fx.imds_cred_fetches, 1, __ATOMIC_SEQ_CST);
			iso_time(time(NULL) + fx.imds_ttl, exp, sizeof(exp));
			snprintf(rs->body, sizeof(rs->body),
				 "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":"
				 "\"ASIAIMDS%d\",\"SecretAccessKey\":\"imds-secret\",\"Token\":"
				 "\"imds-token\",\"Expiration\":\"%s\"}",
				 k, exp);
		} else {
			rs->status = 404;
		}
		return;
	}
	if (!strcmp(t, "/creds")) {
		if (fx.container_auth &&
		    (!fake_header(rq->headers, "Authorization", h, sizeof(h)) ||
		     strcmp(h, fx.container_auth))) {
			rs->status = 401;
			return;
		}
		iso_time(time(NULL) + 3600, exp, sizeof(exp));
		snprintf(rs->body, sizeof(rs->body),
			 "{\"AccessKeyId\":\"ASIACONTAINER\",\"SecretAccessKey\":\"c-secret\","
			 "\"Token\":\"c-token\",\"Expiration\":\"%s\"}",
			 exp);
		return;
	}
	if (!strcmp(t, "/sts")) {
		iso_time(time(NULL) + 3600, exp, sizeof(exp));
		const char *b = rq->body ? rq->body : "";
		int signed_req = fake_header(rq->headers, "Authorization", h, sizeof(h));
		if (form_has(b, "Action=AssumeRole")) {
			/* Key id of the signer becomes part of the new key: chains show. */
			char signer[64] = "";
			const char *c = strstr(h, "Credential=");
			if (!signed_req || !c) {
				rs->status = 403;
				strcpy(rs->body,
				       "<ErrorResponse><Error><Code>MissingAuthenticationToken"
				       "</Code></Error></ErrorResponse>");
				return;
			}
			sscanf(c + 11, "%63[^/]", signer);
			snprintf(
			    rs->body, sizeof(rs->body),
			    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/"
			    "\"><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE-%s"
			    "</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>"
			    "<SessionToken>role-token</SessionToken><Expiration>%s</Expiration>"
			    "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
			    signer, exp);
			return;
		}
		if (form_has(b, "Action=AssumeRoleWithWebIdentity")) {
			char want[256];
			snprintf(want, sizeof(want), "WebIdentityToken=%s",
				 fx.expect_web_token ? fx.expect_web_token : "");
			if (signed_req || !form_has(b, want)) {
				rs->status = 400;
				strcpy(rs->body,
				       "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
				       "<Message>bad token</Message></Error></ErrorResponse>");
				return;
			}
			snprintf(
			    rs->body, sizeof(rs->body),
			    "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
			    "<Credentials><AccessKeyId>ASIAWEB</AccessKeyId><SecretAccessKey>w-s"
			    "</SecretAccessKey><SessionToken>w-t</SessionToken><Expiration>%s"
			    "</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
			    "</AssumeRoleWithWebIdentityResponse>",
			    exp);
			return;
		}
		if (form_has(b, "Action=GetCallerIdentity")) {
			snprintf(
			    rs->body, sizeof(rs->body),
			    "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::"
			    "123456789012:user/tester</Arn><UserId>AIDATEST</UserId><Account>"
			    "123456789012</Account></GetCallerIdentityResult>"
			    "</GetCallerIdentityResponse>");
			return;
		}
		rs->status = 400;
		return;
	}
	if (!strncmp(t, "/federation/credentials?", 24)) {
		if (!fake_header(rq->headers, "x-amz-sso_bearer_token", h, sizeof(h)) ||
		    strcmp(h, "SSOTOKEN")) {
			rs->status = 401;
			return;
		}
		if (!strstr(t, "role_name=ECRRead") || !strstr(t, "account_id=210987654321")) {
			rs->status = 404;
			return;
		}
		snprintf(rs->body, sizeof(rs->body),
			 "{\"roleCredentials\":{\"accessKeyId\":\"ASIASSO\",\"secretAccessKey\":"
			 "\"sso-secret\",\"sessionToken\":\"sso-token\",\"expiration\":%lld000}}",
			 (long long)time(NULL) + 3600);
		return;
	}
	rs->status = 404;
}

/* ---- environment and files ---- */

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_USE_FIPS_ENDPOINT",
    NULL,
};

static void write_file(const char *name, const char *fmt, ...)
{
	char path[512];
	va_list ap;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		test_failures++;
		return;
	}
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* A clean slate: no AWS variables, empty config files, IMDS off, a new log. */
static void fresh(void)
{
	char p[512];
	for (int i = 0; aws_vars[i]; i++)
		unsetenv(aws_vars[i]);
	setenv("HOME", tmpdir, 1);
	snprintf(p, sizeof(p), "%s/config", tmpdir);
	setenv("AWS_CONFIG_FILE", p, 1);
	snprintf(p, sizeof(p), "%s/credentials", tmpdir);
	setenv("AWS_SHARED_CREDENTIALS_FILE", p, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	snprintf(p, sizeof(p), "%s/sts", base);
	setenv("AWS_ENDPOINT_URL_STS", p, 1);
	write_file("config", "\n");
	write_file("credentials", "\n");
	memset(&fx, 0, sizeof(fx));
	fx.imds_ttl = 3600;
	fakesrv_clear(&srv);
	log_close();
	unlink(logpath);
	log_init(LOG_TO_FILE, logpath, LOGL_DEBUG);
}

static void use_imds(void)
{
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", base, 1);
}

static int log_has(const char *needle)
{
	char buf[65536];
	return strstr(check_read_text(logpath, buf, sizeof(buf)), needle) != NULL;
}

/* cred_get with a fresh provider for profile (NULL: default resolution). */
static int get(const char *profile, struct cred *c)
{
	cred_provider *p = NULL;
	struct cred_opts o = {.profile = profile, .timeout_ms = 5000};
	int rc = cred_provider_new(&o, &p);
	if (rc)
		return rc;
	rc = cred_get(p, c);
	cred_provider_free(p);
	return rc;
}

/* get(profile) succeeded with access key ak (c filled: the caller clears
 * it); says what it got otherwise. */
static int got(const char *profile, struct cred *c, const char *ak)
{
	int rc = get(profile, c);
	if (rc == 0 && c->access_key_id && !strcmp(c->access_key_id, ak))
		return 1;
	fprintf(stderr, "get(%s) == %d, access key %s, expected %s\n", profile ? profile : "NULL",
		rc, rc == 0 && c->access_key_id ? c->access_key_id : "-", ak);
	return 0;
}

static const struct fake_req *find_req(const char *needle)
{
	for (int i = fakesrv_nreq(&srv) - 1; i >= 0; i--)
		if ((srv.reqs[i].body && strstr(srv.reqs[i].body, needle)) ||
		    strstr(srv.reqs[i].target, needle))
			return &srv.reqs[i];
	return NULL;
}

/* ---- tests ---- */

static void test_env(void)
{
	struct cred c;
	fresh();
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
	setenv("AWS_SESSION_TOKEN", "env-token", 1);
	CHECK(got(NULL, &c, "AKIAENV"));
	CHECK_STR(c.secret_access_key, "env-secret");
	CHECK_STR(c.session_token, "env-token");
	CHECK(!strcmp(c.source, "environment") && c.expiration == 0);
	cred_clear(&c);
	/* The environment's keys must never reach the log. */
	CHECK(!log_has("env-secret") && !log_has("env-token"));
}

static void test_profiles(void)
{
	struct cred c;
	fresh();
	write_file("credentials",
		   "# comment\n[default]\naws_access_key_id = AKIADEFAULT\n"
		   "aws_secret_access_key = def-secret\n\n[dev]\naws_access_key_id=AKIADEV\n"
		   "aws_secret_access_key=dev=secret\n; other comment\n");
	write_file("config", "[default]\nregion = eu-west-1\n[profile cfg]\nregion = us-west-2\n"
			     "s3 =\n  max_concurrent_requests = 4\naws_access_key_id = AKIACFG\n"
			     "aws_secret_access_key = cfg-secret\n");
	CHECK(got(NULL, &c, "AKIADEFAULT"));
	CHECK(strstr(c.source, "profile default"));
	cred_clear(&c);
	CHECK(got("dev", &c, "AKIADEV"));
	CHECK(!strcmp(c.secret_access_key, "dev=secret")); /* '=' inside a value */
	CHECK(c.session_token == NULL);
	cred_clear(&c);
	/* Keys in the config file's [profile cfg] (after a nested s3 block). */
	CHECK(got("cfg", &c, "AKIACFG"));
	CHECK(strstr(c.source, "config"));
	cred_clear(&c);

	/* Environment beats AWS_PROFILE, but an explicit profile skips it. */
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
	setenv("AWS_PROFILE", "dev", 1);
	CHECK(got(NULL, &c, "AKIAENV"));
	cred_clear(&c);
	CHECK(got("dev", &c, "AKIADEV"));
	cred_clear(&c);
	unsetenv("AWS_ACCESS_KEY_ID");
	CHECK(got(NULL, &c, "AKIADEV")); /* AWS_PROFILE */
	cred_clear(&c);

	/* Regions: env, then the profile's. */
	char r[64];
	unsetenv("AWS_PROFILE");
	struct cred_opts o = {.profile = "cfg"};
	CHECK(cred_resolve_region(&o, r, sizeof(r)) == 0 && !strcmp(r, "us-west-2"));
	CHECK(cred_resolve_region(NULL, r, sizeof(r)) == 0 && !strcmp(r, "eu-west-1"));
	setenv("AWS_DEFAULT_REGION", "sa-east-1", 1);
	CHECK(cred_resolve_region(&o, r, sizeof(r)) == 0 && !strcmp(r, "sa-east-1"));
	setenv("AWS_REGION", "ca-central-1", 1);
	CHECK(cred_resolve_region(&o, r, sizeof(r)) == 0 && !strcmp(r, "ca-central-1"));
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	struct cred_opts none = {.profile = "nosuch"};
	CHECK(cred_resolve_region(&none, r, sizeof(r)) == -ENOENT); /* IMDS disabled */
}

static void test_process(void)
{
	struct cred c;
	fresh();
	write_file("config",
		   "[profile proc]\ncredential_process = printf '%%s' '{\"Version\": 1, "
		   "\"AccessKeyId\": \"AKIAPROC\", \"SecretAccessKey\": \"proc-secret\", "
		   "\"SessionToken\": \"proc-token\", \"Expiration\": \"2099-01-02T03:04:05Z\"}'\n"
		   "[profile procfail]\ncredential_process = echo nope >&2; exit 3\n"
		   "[profile procbad]\ncredential_process = echo '{\"Version\": 2}'\n");
	CHECK(got("proc", &c, "AKIAPROC"));
	CHECK_STR(c.session_token, "proc-token");
	CHECK(c.expiration == 4071006245); /* 2099-01-02T03:04:05Z */
	CHECK(strstr(c.source, "credential_process"));
	cred_clear(&c);
	CHECK(get("procfail", &c) == -EACCES);
	CHECK(log_has("exited with status 3"));
	CHECK(get("procbad", &c) == -EACCES);
	CHECK(log_has("not Version 1"));
}

static void test_assume_role(void)
{
	struct cred c;
	const struct fake_req *rq;
	char h[512];
	fresh();
	write_file("credentials", "[base]\naws_access_key_id = AKIABASE\n"
				  "aws_secret_access_key = base-secret\n");
	write_file("config",
		   "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/ECR Reader\n"
		   "source_profile = base\nexternal_id = ext-42\nduration_seconds = 900\n"
		   "region = eu-central-1\n"
		   "[profile chained]\nrole_arn = arn:aws:iam::210987654321:role/Second\n"
		   "source_profile = role\nrole_session_name = mysession\n"
		   "[profile loop-a]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = loop-b\n"
		   "[profile loop-b]\nrole_arn = arn:aws:iam::1:role/B\nsource_profile = loop-a\n"
		   "[profile fromenv]\nrole_arn = arn:aws:iam::1:role/E\n"
		   "credential_source = Environment\n");
	CHECK(got("role", &c, "ASIAROLE-AKIABASE"));
	CHECK_STR(c.session_token, "role-token");
	CHECK(c.expiration > time(NULL) + 3000);
	CHECK(strstr(c.source, "assume-role arn:aws:iam::123456789012:role/ECR Reader"));
	CHECK(strstr(c.source, "via profile base"));
	cred_clear(&c);
	rq = find_req("Action=AssumeRole");
	CHECK(rq != NULL);
	if (rq) {
		CHECK(form_has(rq->body,
			       "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2FECR%20Reader"));
		CHECK(form_has(rq->body, "ExternalId=ext-42"));
		CHECK(form_has(rq->body, "DurationSeconds=900"));
		CHECK(form_has(rq->body, "Version=2011-06-15"));
		CHECK(strstr(rq->body, "RoleSessionName=ecrfs-"));
		CHECK(fake_header(rq->headers, "Authorization", h, sizeof(h)));
		CHECK(strstr(h, "Credential=AKIABASE/") &&
		      strstr(h, "/eu-central-1/sts/aws4_request"));
	}

	/* role -> role: the second call is signed with the first role's keys. */
	fakesrv_clear(&srv);
	CHECK(got("chained", &c, "ASIAROLE-ASIAROLE-AKIABASE"));
	cred_clear(&c);
	CHECK(fakesrv_nreq(&srv) == 2);
	rq = find_req("RoleSessionName=mysession");
	CHECK(rq && fake_header(rq->headers, "X-Amz-Security-Token", h, sizeof(h)) &&
	      !strcmp(h, "role-token"));

	/* A cycle ends with an error, not a hang. */
	CHECK(get("loop-a", &c) == -EACCES);
	CHECK(log_has("cycle"));

	/* credential_source = Environment */
	setenv("AWS_ACCESS_KEY_ID", "AKIAENVSRC", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
	CHECK(got("fromenv", &c, "ASIAROLE-AKIAENVSRC"));
	cred_clear(&c);
	CHECK(!log_has("base-secret") && !log_has("role-secret") && !log_has("role-token"));
}

static void test_web_identity(void)
{
	struct cred c;
	char p[512];
	fresh();
	write_file("webtoken", "eyJhbGciOiJSUzI1NiJ9.payload.sig\n");
	snprintf(p, sizeof(p), "%s/webtoken", tmpdir);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", p, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa", 1);
	setenv("AWS_ROLE_SESSION_NAME", "pod-1", 1);
	fx.expect_web_token = "eyJhbGciOiJSUzI1NiJ9.payload.sig";
	CHECK(got(NULL, &c, "ASIAWEB"));
	CHECK(strstr(c.source, "web identity"));
	cred_clear(&c);
	const struct fake_req *rq = find_req("AssumeRoleWithWebIdentity");
	CHECK(rq && form_has(rq->body, "RoleSessionName=pod-1"));
	/* A rejected token is an error of that source. */
	fx.expect_web_token = "other";
	CHECK(get(NULL, &c) == -EACCES);
	CHECK(log_has("InvalidIdentityToken"));
	CHECK(!log_has("payload.sig"));

	/* The profile form: role_arn + web_identity_token_file. */
	fresh();
	write_file("webtoken", "tok2");
	fx.expect_web_token = "tok2";
	write_file("config",
		   "[profile web]\nrole_arn = arn:aws:iam::1:role/w\n"
		   "web_identity_token_file = %s/webtoken\n",
		   tmpdir);
	CHECK(got("web", &c, "ASIAWEB"));
	cred_clear(&c);
}

static void sha1_hex(const char *s, char hex[41])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(s, strlen(s), d, &n, EVP_sha1(), NULL);
	for (unsigned int i = 0; i < 20; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
}

static void test_sso(void)
{
	struct cred c;
	char hex[41], name[128], exp[64], d[512];
	fresh();
	setenv("AWS_ENDPOINT_URL_SSO", base, 1);
	write_file("config", "[profile sso]\nsso_session = my-sso\nsso_account_id = 210987654321\n"
			     "sso_role_name = ECRRead\nregion = eu-west-1\n"
			     "[sso-session my-sso]\nsso_region = eu-west-1\n"
			     "sso_start_url = https://example.awsapps.com/start\n"
			     "[profile legacy]\nsso_start_url = https://legacy.awsapps.com/start\n"
			     "sso_region = us-east-1\nsso_account_id = 210987654321\n"
			     "sso_role_name = ECRRead\n");
	snprintf(d, sizeof(d), "%s/.aws", tmpdir);
	mkdir(d, 0700);
	snprintf(d, sizeof(d), "%s/.aws/sso", tmpdir);
	mkdir(d, 0700);
	snprintf(d, sizeof(d), "%s/.aws/sso/cache", tmpdir);
	mkdir(d, 0700);

	/* No cache yet: a clear hint, no network call. */
	CHECK(get("sso", &c) == -EACCES);
	CHECK(log_has("aws sso login --profile sso") && log_has("credential_process"));
	CHECK(fakesrv_nreq(&srv) == 0);

	sha1_hex("my-sso", hex);
	snprintf(name, sizeof(name), ".aws/sso/cache/%s.json", hex);
	iso_time(time(NULL) + 3600, exp, sizeof(exp));
	write_file(name,
		   "{\"accessToken\": \"SSOTOKEN\", \"expiresAt\": \"%s\", \"region\": "
		   "\"eu-west-1\", \"startUrl\": \"https://example.awsapps.com/start\"}",
		   exp);
	CHECK(got("sso", &c, "ASIASSO"));
	CHECK_STR(c.session_token, "sso-token");
	CHECK(c.expiration > time(NULL) + 3000 && c.expiration < time(NULL) + 4000);
	CHECK(strstr(c.source, "sso"));
	cred_clear(&c);
	CHECK(!log_has("SSOTOKEN"));

	/* Legacy profile: the cache key is the start URL. */
	sha1_hex("https://legacy.awsapps.com/start", hex);
	snprintf(name, sizeof(name), ".aws/sso/cache/%s.json", hex);
	write_file(name, "{\"accessToken\": \"SSOTOKEN\", \"expiresAt\": \"%s\"}", exp);
	CHECK(got("legacy", &c, "ASIASSO"));
	cred_clear(&c);

	/* Expired token: the hint again. */
	iso_time(time(NULL) - 60, exp, sizeof(exp));
	write_file(name, "{\"accessToken\": \"SSOTOKEN\", \"expiresAt\": \"%s\"}", exp);
	fresh();
	setenv("AWS_ENDPOINT_URL_SSO", base, 1);
	write_file("config", "[profile legacy]\nsso_start_url = https://legacy.awsapps.com/start\n"
			     "sso_region = us-east-1\nsso_account_id = 210987654321\n"
			     "sso_role_name = ECRRead\n");
	CHECK(get("legacy", &c) == -EACCES);
	CHECK(log_has("expired") && log_has("aws sso login --profile legacy"));
}

static void test_container(void)
{
	struct cred c;
	char u[256], p[512];
	fresh();
	snprintf(u, sizeof(u), "%s/creds", base);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", u, 1);
	write_file("eks-token", "pod-identity-token\n");
	snprintf(p, sizeof(p), "%s/eks-token", tmpdir);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", p, 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ignored-when-file-set", 1);
	fx.container_auth = "pod-identity-token";
	CHECK(got(NULL, &c, "ASIACONTAINER"));
	CHECK_STR(c.session_token, "c-token");
	CHECK(strstr(c.source, "container"));
	cred_clear(&c);
	/* Token from the variable when there is no file. */
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token", 1);
	CHECK(get(NULL, &c) == 0);
	cred_clear(&c);
	/* Wrong token: the source fails. */
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong", 1);
	CHECK(get(NULL, &c) == -EACCES);
	CHECK(!log_has("pod-identity-token") && !log_has("wrong"));
	/* Plain http to a non-loopback host is refused (never contacted). */
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds", 1);
	CHECK(get(NULL, &c) == -EACCES);
	CHECK(log_has("plain http"));
}

static void test_imds(void)
{
	struct cred c;
	cred_provider *p = NULL;
	fresh();
	use_imds();
	CHECK(got(NULL, &c, "ASIAIMDS1"));
	CHECK_STR(c.session_token, "imds-token");
	CHECK(!strcmp(c.source, "instance role test-role"));
	cred_clear(&c);
	/* The token flow: PUT first, then GETs carrying the token (the fake
	 * answers 401 without it). */
	CHECK(fakesrv_nreq(&srv) == 3 && !strcmp(srv.reqs[0].method, "PUT"));

	/* Refresh driven by expiry: credentials at the end of their life are
	 * fetched again; the others are served from the cache. */
	fx.imds_cred_fetches = 0;
	fx.imds_ttl = 0;
	CHECK(cred_provider_new(NULL, &p) == 0);
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS1"));
	cred_clear(&c);
	fx.imds_ttl = 3600;
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS2"));
	cred_clear(&c);
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS2"));
	cred_clear(&c);
	CHECK(fx.imds_cred_fetches == 2);
	/* After ExpiredToken the caller invalidates: the next get refetches. */
	cred_invalidate(p);
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS3"));
	cred_clear(&c);
	cred_provider_free(p);

	/* Region from IMDS when nothing else says. */
	char r[64];
	CHECK(cred_resolve_region(NULL, r, sizeof(r)) == 0 && !strcmp(r, "ap-south-2"));

	/* IMDSv2 not offered (token PUT 403): IMDSv1 requests without a token. */
	fresh();
	use_imds();
	fx.imds_v1 = 1;
	CHECK(got(NULL, &c, "ASIAIMDS1"));
	cred_clear(&c);

	/* An instance without a role: the log says so. */
	fresh();
	use_imds();
	fx.imds_no_role = 1;
	CHECK(get(NULL, &c) == -EACCES);
	CHECK(log_has("no IAM role"));
}

struct thr_arg {
	cred_provider *p;
	int errors;
};

static void *getter(void *arg)
{
	struct thr_arg *a = arg;
	for (int i = 0; i < 25; i++) {
		struct cred c;
		if (cred_get(a->p, &c) || strncmp(c.access_key_id, "ASIAIMDS", 8))
			a->errors++;
		cred_clear(&c);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[4];
	struct thr_arg a[4];
	cred_provider *p = NULL;
	fresh();
	use_imds();
	CHECK(cred_provider_new(NULL, &p) == 0);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr_arg){p, 0};
		pthread_create(&t[i], NULL, getter, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(a[i].errors == 0);
	}
	CHECK(fx.imds_cred_fetches == 1); /* one refresh served every thread */
	cred_provider_free(p);
}

static void *bg_get(void *arg)
{
	struct cred c;
	char *key = NULL;
	if (cred_get(arg, &c) == 0) {
		key = strdup(c.access_key_id);
		cred_clear(&c);
	}
	return key;
}

/* While one thread refreshes (slowly), others keep getting the credentials
 * that are still valid instead of queueing behind the network call. */
static void test_refresh_does_not_block(void)
{
	struct cred c;
	cred_provider *p = NULL;
	pthread_t t;
	void *bgkey = NULL;
	fresh();
	use_imds();
	fx.imds_ttl = 120; /* inside a 5-minute window: every get wants a refresh */
	struct cred_opts o = {.refresh_before_s = 300};
	CHECK(cred_provider_new(&o, &p) == 0);
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS1"));
	cred_clear(&c);

	set_block_fetch(1);
	pthread_create(&t, NULL, bg_get, p);
	pthread_mutex_lock(&fx_lock);
	wait_while(&fx.blocked, 0);
	int held = fx.blocked;
	pthread_mutex_unlock(&fx_lock);
	CHECK(held);

	/* The refresh is held in the server: this get must not wait for it. */
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS1"));
	cred_clear(&c);

	set_block_fetch(0);
	pthread_join(t, &bgkey);
	CHECK(bgkey && !strcmp(bgkey, "ASIAIMDS2"));
	free(bgkey);
	cred_provider_free(p);
}

static void test_nothing(void)
{
	struct cred c;
	struct fakesrv dead;
	char u[64];
	fresh();
	/* IMDS at a port nobody listens on. */
	CHECK(fakesrv_start(&dead, handler, NULL) == 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d", dead.port);
	fakesrv_stop(&dead);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", u, 1);
	CHECK(get("nosuch", &c) == -EACCES);
	CHECK(log_has("no AWS credentials for profile nosuch"));
	CHECK(log_has("environment: skipped"));
	CHECK(log_has("credential_process: not set"));
	CHECK(log_has("EC2 IMDS: no answer"));
	CHECK(get(NULL, &c) == -EACCES);
	CHECK(log_has("environment: not set"));
}

static void test_sts_identity(void)
{
	cred_provider *p = NULL;
	char acct[32], arn[128], uid[64], ep[256];
	net_http *h = NULL;
	fresh();
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
	CHECK(net_http_new(NULL, &h) == 0);
	CHECK(cred_provider_new(NULL, &p) == 0);
	snprintf(ep, sizeof(ep), "%s/sts", base);
	CHECK(sts_get_caller_identity(h, p, ep, "eu-west-1", acct, sizeof(acct), arn, sizeof(arn),
				      uid, sizeof(uid)) == 0);
	CHECK(!strcmp(acct, "123456789012") && !strcmp(uid, "AIDATEST"));
	CHECK(!strcmp(arn, "arn:aws:iam::123456789012:user/tester"));
	/* Endpoint resolution. */
	unsetenv("AWS_ENDPOINT_URL_STS");
	CHECK(!strcmp(sts_endpoint(NULL, "eu-west-1", ep, sizeof(ep)),
		      "https://sts.eu-west-1.amazonaws.com"));
	CHECK(!strcmp(sts_endpoint(NULL, "cn-north-1", ep, sizeof(ep)),
		      "https://sts.cn-north-1.amazonaws.com.cn"));
	setenv("AWS_USE_FIPS_ENDPOINT", "true", 1);
	CHECK(!strcmp(sts_endpoint(NULL, "us-east-2", ep, sizeof(ep)),
		      "https://sts-fips.us-east-2.amazonaws.com"));
	unsetenv("AWS_USE_FIPS_ENDPOINT");
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9", 1);
	CHECK(!strcmp(sts_endpoint(NULL, "eu-west-1", ep, sizeof(ep)), "http://127.0.0.1:9"));
	setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:10", 1);
	CHECK(!strcmp(sts_endpoint(NULL, "eu-west-1", ep, sizeof(ep)), "http://127.0.0.1:10"));
	CHECK(!strcmp(sts_endpoint("http://x", "eu-west-1", ep, sizeof(ep)), "http://x"));
	cred_provider_free(p);
	net_http_free(h);
}

/* Credentials that live a minute are refreshed at three quarters of their
 * life, not on every call because they are always within 5 minutes of
 * expiry. */
static void test_short_lived(void)
{
	struct cred c;
	cred_provider *p = NULL;
	fresh();
	use_imds();
	fx.imds_ttl = 60;
	CHECK(cred_provider_new(NULL, &p) == 0);
	for (int i = 0; i < 5; i++) {
		CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS1"));
		cred_clear(&c);
	}
	CHECK_INT(__atomic_load_n(&fx.imds_cred_fetches, __ATOMIC_SEQ_CST), 1);
	cred_provider_free(p);
}

/* The fake ECR endpoint: ListImages answers ExpiredTokenException when
 * signed with fx_expired_key, else an empty page. Refusals after the first
 * come 0.7 s late: after the first caller's refresh. */
static char fx_expired_key[64];
static int fx_refusals;

static void ecr_handler(struct fakesrv *s, const struct fake_req *rq, int n, struct fake_resp *rs)
{
	char h[512], key[64] = "";
	const char *c;

	if (fake_header(rq->headers, "Authorization", h, sizeof(h)) &&
	    (c = strstr(h, "Credential=")))
		sscanf(c + 11, "%63[^/]", key);
	pthread_mutex_lock(&fx_lock);
	int expired = !strcmp(key, fx_expired_key), late = expired && fx_refusals++ > 0;
	pthread_mutex_unlock(&fx_lock);
	if (late)
		usleep(700 * 1000);
	if (expired) {
		rs->status = 403;
		strcpy(rs->body, "{\"__type\":\"ExpiredTokenException\",\"message\":\"The security "
				 "token included in the request is expired\"}");
		return;
	}
	strcpy(rs->body, "{\"imageIds\":[]}");
}

struct ecr_thr {
	ecr *e;
	int rc;
};

static void *ecr_caller(void *arg)
{
	struct ecr_thr *t = arg;
	struct ecr_call c = {.op = "ListImages", .region = "us-east-1"};
	c.req = json_pack("{s:s}", "repositoryName", "team/app");
	t->rc = ecr_call(t->e, &c, NULL, NULL);
	json_decref(c.req);
	return NULL;
}

/* Credentials refused as expired by calls on several threads at once: one
 * refresh, which they all wait for, then each call retried once: no error.
 * A refusal seen after the refresh (a slow thread) refreshes nothing. */
static void test_expired_shared(void)
{
	struct fakesrv esrv;
	struct ecr_thr t[6];
	pthread_t th[6];
	struct cred c;
	cred_provider *p = NULL;
	struct ecr_opts eo = {0};
	char ep[96];
	ecr *e = NULL;
	net_http *h = NULL;

	fresh();
	CHECK(fakesrv_start(&esrv, ecr_handler, NULL) == 0);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", base, 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", esrv.port);
	CHECK(cred_provider_new(NULL, &p) == 0);
	CHECK_INT(net_http_new(NULL, &h), 0);
	eo.creds = p;
	eo.http = h;
	eo.endpoint = ep;
	CHECK_INT(ecr_new(&eo, &e), 0);
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS1"));
	cred_clear(&c);
	pthread_mutex_lock(&fx_lock);
	strcpy(fx_expired_key, "ASIAIMDS1");
	fx_refusals = 0;
	pthread_mutex_unlock(&fx_lock);
	for (int i = 0; i < 6; i++) {
		t[i] = (struct ecr_thr){e, -1};
		pthread_create(&th[i], NULL, ecr_caller, &t[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(t[i].rc, 0);
	}
	CHECK_INT(__atomic_load_n(&fx.imds_cred_fetches, __ATOMIC_SEQ_CST), 2);
	cred_expired(p, "ASIAIMDS1"); /* late: already replaced */
	CHECK(cred_get(p, &c) == 0 && !strcmp(c.access_key_id, "ASIAIMDS2"));
	cred_clear(&c);
	CHECK_INT(__atomic_load_n(&fx.imds_cred_fetches, __ATOMIC_SEQ_CST), 2);
	CHECK(log_has("credentials expired; refreshing them and retrying once"));
	ecr_free(e);
	net_http_free(h);
	cred_provider_free(p);
	fakesrv_stop(&esrv);
	pthread_mutex_lock(&fx_lock);
	fx_expired_key[0] = '\0';
	pthread_mutex_unlock(&fx_lock);
}

int main(void)
{
	fakesrv_no_proxy();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ecrfs-test-cred-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 2;
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	if (fakesrv_start(&srv, handler, NULL))
		return 2;
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", srv.port);

	test_env();
	test_profiles();
	test_process();
	test_assume_role();
	test_web_identity();
	test_sso();
	test_container();
	test_imds();
	test_threads();
	test_refresh_does_not_block();
	test_short_lived();
	test_expired_shared();
	test_nothing();
	test_sts_identity();

	log_close();
	fakesrv_stop(&srv);
	if (!test_failures) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	} else {
		fprintf(stderr, "files and log kept in %s\n", tmpdir);
	}
	return check_summary("cred");
}
