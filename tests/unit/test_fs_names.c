/* Name syntax: what LOOKUP refuses without a network call. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "fs/tree/names.h"

/* fn accepts every name of ok and refuses every name of bad (both end with
 * NULL); a failure names the function and the name. */
static void check_names(const char *what, int (*fn)(const char *), const char *const ok[],
			const char *const bad[])
{
	for (size_t i = 0; ok[i]; i++)
		if (!fn(ok[i]))
			CHECK_FAILED("%s refuses \"%s\"", what, ok[i]);
	for (size_t i = 0; bad[i]; i++)
		if (fn(bad[i]))
			CHECK_FAILED("%s accepts \"%s\"", what, bad[i]);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

int main(void)
{
	char tag128[129], tag129[130];
	memset(tag128, 'a', 128);
	tag128[128] = 0;
	memset(tag129, 'a', 129);
	tag129[129] = 0;

	check_names("fs_name_is_account", fs_name_is_account, NAMES("111111111111"),
		    NAMES("11111111111", "1111111111111", "11111111111a"));
	check_names("fs_name_is_region", fs_name_is_region,
		    NAMES("us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1"),
		    NAMES("us-east", "US-east-1", "us--east-1", ".ecrfs"));
	check_names("fs_name_is_tag", fs_name_is_tag, NAMES("v1.4.2", "_x", "sha256-abc", tag128),
		    NAMES(".hidden", "-x", "a:b", "ci@", tag129));
	check_names("fs_name_is_repo_component", fs_name_is_repo_component,
		    NAMES("team", "a.b", "a__b", "a---b"),
		    NAMES("a___b", "a..b", "Team", "a-", "-a", ""));
	check_names("fs_name_is_repo", fs_name_is_repo, NAMES("team/app", "ab"),
		    NAMES("a", "team//app", "team/app/"));

	char d[80], name[100];
	const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	snprintf(name, sizeof name, "@sha256-%s", hex);
	CHECK(fs_name_digest_dir(name, d, sizeof d));
	CHECK(strcmp(d + 7, hex) == 0 && strncmp(d, "sha256:", 7) == 0);
	CHECK(fs_name_is_digest(d));
	name[10] = 'G';
	CHECK(!fs_name_digest_dir(name, d, sizeof d));
	CHECK(!fs_name_digest_dir("@sha256-abc", d, sizeof d));
	CHECK(!fs_name_is_digest("sha512:abc"));

	/* Referrer tags: the OCI fallback tag and cosign's, nothing else. */
	char t[120];
	snprintf(t, sizeof t, "sha256-%s", hex);
	CHECK(fs_name_is_referrer_tag(t));
	snprintf(t, sizeof t, "sha256-%s.sig", hex);
	CHECK(fs_name_is_referrer_tag(t));
	snprintf(t, sizeof t, "sha256-%s.att", hex);
	CHECK(fs_name_is_referrer_tag(t));
	snprintf(t, sizeof t, "sha256-%s.", hex);
	CHECK(!fs_name_is_referrer_tag(t));
	snprintf(t, sizeof t, "sha256-%.63s", hex);
	CHECK(!fs_name_is_referrer_tag(t));
	CHECK(!fs_name_is_referrer_tag("sha256-latest"));
	CHECK(!fs_name_is_referrer_tag("v1.2"));

	/* N@: made and read in one place. */
	char base[64];
	CHECK(fs_name_ns_alias("ci", t, sizeof t) == 0 && strcmp(t, "ci@") == 0);
	CHECK(fs_name_ns_alias_base("ci@", base, sizeof base) && strcmp(base, "ci") == 0);
	CHECK(!fs_name_ns_alias_base("@", base, sizeof base));
	CHECK(!fs_name_ns_alias_base("Ci@", base, sizeof base));
	CHECK(!fs_name_ns_alias_base("ci", base, sizeof base));
	return check_summary("fs_names");
}
