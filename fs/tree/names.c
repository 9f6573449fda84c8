/* Name syntax checks (the ECR naming rules of doc/ARCHITECTURE.md, written
 * out by hand because they are tiny and run on every LOOKUP). */
#include "fs/tree/names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_hex(char c)
{
	return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}

int fs_name_is_account(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return i == 12;
}

int fs_name_is_region(const char *s)
{
	/* area(-sub)*-direction-N: lowercase words separated by '-', ending
	 * in a number, at least three parts, first part two letters. */
	size_t len = strlen(s), parts = 1;
	if (len < 6 || len > 32)
		return 0;
	if (!(s[0] >= 'a' && s[0] <= 'z' && s[1] >= 'a' && s[1] <= 'z' && s[2] == '-'))
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '-') {
			if (i == 0 || s[i - 1] == '-' || i + 1 == len)
				return 0;
			parts++;
		} else if (!is_lower_alnum(c)) {
			return 0;
		}
	}
	const char *last = strrchr(s, '-') + 1;
	for (const char *p = last; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return parts >= 3;
}

int fs_name_is_tag(const char *s)
{
	size_t len = strlen(s);
	if (len < 1 || len > 128)
		return 0;
	char c = s[0];
	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
		return 0;
	for (size_t i = 1; i < len; i++) {
		c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* Matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* on s[0..len). */
static int component(const char *s, size_t len)
{
	size_t i = 0;
	if (len == 0 || !is_lower_alnum(s[0]))
		return 0;
	while (i < len) {
		while (i < len && is_lower_alnum(s[i]))
			i++;
		if (i == len)
			return 1;
		/* separator */
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < len && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < len && s[i] == '-')
				i++;
		} else {
			return 0;
		}
		if (i == len || !is_lower_alnum(s[i]))
			return 0;
	}
	return 1;
}

int fs_name_is_repo_component(const char *s)
{
	return component(s, strlen(s));
}

int fs_name_is_repo(const char *s)
{
	size_t len = strlen(s);
	if (len < 2 || len > 256)
		return 0;
	const char *p = s;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);
		if (!component(p, l))
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

int fs_name_is_digest(const char *s)
{
	if (strncmp(s, "sha256:", 7) != 0)
		return 0;
	size_t i;
	for (i = 0; s[7 + i]; i++)
		if (!is_hex(s[7 + i]))
			return 0;
	return i == 64;
}

int fs_name_digest_dir(const char *name, char *out, size_t outsize)
{
	if (strncmp(name, "@sha256-", 8) != 0 || strlen(name) != 8 + 64)
		return 0;
	for (size_t i = 0; i < 64; i++)
		if (!is_hex(name[8 + i]))
			return 0;
	if (outsize < 72)
		return 0;
	snprintf(out, outsize, "sha256:%s", name + 8);
	return 1;
}

int fs_name_ns_alias(const char *comp, char *out, size_t outsize)
{
	int n = snprintf(out, outsize, "%s@", comp);
	return n > 0 && (size_t)n < outsize ? 0 : -ENAMETOOLONG;
}

int fs_name_ns_alias_base(const char *name, char *out, size_t outsize)
{
	size_t nl = strlen(name);
	if (nl < 2 || name[nl - 1] != '@' || nl - 1 >= outsize)
		return 0;
	memcpy(out, name, nl - 1);
	out[nl - 1] = 0;
	return fs_name_is_repo_component(out);
}

int fs_name_is_referrer_tag(const char *s)
{
	if (strncmp(s, "sha256-", 7) != 0)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((s[7 + i] >= '0' && s[7 + i] <= '9') || (s[7 + i] >= 'a' && s[7 + i] <= 'f')))
			return 0;
	const char *rest = s + 71;
	if (!*rest)
		return 1;
	if (*rest++ != '.' || !*rest)
		return 0;
	for (; *rest; rest++)
		if (*rest < 'a' || *rest > 'z')
			return 0;
	return 1;
}

static const char *const view_words[] = {
	[FS_VIEW_ROOTFS] = "rootfs",       [FS_VIEW_LAYERS] = "layers",
	[FS_VIEW_REFERRERS] = "referrers", [FS_VIEW_SCAN] = "scan.json",
	[FS_VIEW_SETTINGS] = "settings",
};

const char *fs_view_word(enum fs_view v)
{
	return v > FS_VIEW_NONE && v <= FS_VIEW_SETTINGS ? view_words[v] : NULL;
}

int fs_name_view(const char *name, char *base, size_t basesize, enum fs_view *view)
{
	const char *at = strrchr(name, '@');
	if (!at || at == name || (size_t)(at - name) >= basesize)
		return 0;
	for (int v = FS_VIEW_ROOTFS; v <= FS_VIEW_SETTINGS; v++) {
		if (strcmp(at + 1, view_words[v]) != 0)
			continue;
		memcpy(base, name, (size_t)(at - name));
		base[at - name] = 0;
		*view = (enum fs_view)v;
		return 1;
	}
	return 0;
}
