/* Name syntax: what LOOKUP refuses without a network call. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "fs/names.h"

int main(void)
{
	assert(fs_name_is_account("111111111111"));
	assert(!fs_name_is_account("11111111111"));
	assert(!fs_name_is_account("1111111111111"));
	assert(!fs_name_is_account("11111111111a"));

	assert(fs_name_is_region("us-east-1"));
	assert(fs_name_is_region("eu-west-3"));
	assert(fs_name_is_region("us-gov-west-1"));
	assert(fs_name_is_region("cn-north-1"));
	assert(!fs_name_is_region("us-east"));
	assert(!fs_name_is_region("US-east-1"));
	assert(!fs_name_is_region("us--east-1"));
	assert(!fs_name_is_region(".ecrfs"));

	assert(fs_name_is_tag("v1.4.2"));
	assert(fs_name_is_tag("_x"));
	assert(fs_name_is_tag("sha256-abc"));
	assert(!fs_name_is_tag(".hidden"));
	assert(!fs_name_is_tag("-x"));
	assert(!fs_name_is_tag("a:b"));
	assert(!fs_name_is_tag("ci@"));
	char big[200];
	memset(big, 'a', 128);
	big[128] = 0;
	assert(fs_name_is_tag(big));
	big[128] = 'a';
	big[129] = 0;
	assert(!fs_name_is_tag(big));

	assert(fs_name_is_repo_component("team"));
	assert(fs_name_is_repo_component("a.b"));
	assert(fs_name_is_repo_component("a__b"));
	assert(fs_name_is_repo_component("a---b"));
	assert(!fs_name_is_repo_component("a___b"));
	assert(!fs_name_is_repo_component("a..b"));
	assert(!fs_name_is_repo_component("Team"));
	assert(!fs_name_is_repo_component("a-"));
	assert(!fs_name_is_repo_component("-a"));
	assert(!fs_name_is_repo_component(""));

	assert(fs_name_is_repo("team/app"));
	assert(fs_name_is_repo("ab"));
	assert(!fs_name_is_repo("a"));
	assert(!fs_name_is_repo("team//app"));
	assert(!fs_name_is_repo("team/app/"));

	char d[80];
	const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char name[100];
	snprintf(name, sizeof name, "@sha256-%s", hex);
	assert(fs_name_digest_dir(name, d, sizeof d));
	assert(strcmp(d + 7, hex) == 0 && strncmp(d, "sha256:", 7) == 0);
	assert(fs_name_is_digest(d));
	name[10] = 'G';
	assert(!fs_name_digest_dir(name, d, sizeof d));
	assert(!fs_name_digest_dir("@sha256-abc", d, sizeof d));
	assert(!fs_name_is_digest("sha512:abc"));
	printf("ok\n");
	return 0;
}
