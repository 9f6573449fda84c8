/* Parser for the AWS CLI's INI files (config and credentials). Handles
 * comments (# and ;), "[profile x]" sections, values with '=' inside, and
 * indented sub-keys of nested sections (e.g. "s3 =\n  max_concurrent = 4"),
 * which are skipped. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/cred_i.h"

struct ini_kv {
	char *section, *key, *value;
};

struct ini {
	struct ini_kv *kv;
	size_t n, cap;
	char **sections;
	size_t nsec;
};

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int add_kv(struct ini *f, const char *sec, const char *k, const char *v)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 32;
		struct ini_kv *p = realloc(f->kv, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		f->kv = p;
		f->cap = cap;
	}
	struct ini_kv *e = &f->kv[f->n];
	e->section = strdup(sec);
	e->key = strdup(k);
	e->value = strdup(v);
	f->n++;
	if (!e->section || !e->key || !e->value)
		return -ENOMEM;
	return 0;
}

static int add_section(struct ini *f, const char *sec)
{
	char **p = realloc(f->sections, (f->nsec + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	f->sections = p;
	if (!(f->sections[f->nsec] = strdup(sec)))
		return -ENOMEM;
	f->nsec++;
	return 0;
}

/* "[profile  x ]" -> "x" in config files; "[default]" -> "default". */
static void normalise_section(char *name, int is_config, char *out, size_t n)
{
	char *s = trim(name);
	if (is_config && strncmp(s, "profile", 7) == 0 && isspace((unsigned char)s[7]))
		s = trim(s + 8);
	snprintf(out, n, "%s", s);
}

struct ini *ini_load(const char *path, int is_config, int *err)
{
	struct ini *f = NULL;
	FILE *fp = NULL;
	char *line = NULL;
	size_t lcap = 0;
	char section[256] = "";
	int in_section = 0, nested = 0, ret = 0;

	fp = fopen(path, "re");
	if (!fp) {
		ret = -errno;
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		ret = -ENOMEM;
		goto out;
	}
	while (getline(&line, &lcap, fp) > 0) {
		int indented = isspace((unsigned char)line[0]);
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (!end) {
				in_section = 0;
				continue;
			}
			*end = '\0';
			normalise_section(s + 1, is_config, section, sizeof(section));
			in_section = 1;
			nested = 0;
			if ((ret = add_section(f, section)))
				goto out;
			continue;
		}
		if (!in_section)
			continue;
		if (indented && nested)
			continue; /* sub-key of a nested section */
		char *eq = strchr(s, '=');
		if (!eq)
			continue;
		*eq = '\0';
		char *k = trim(s), *v = trim(eq + 1);
		nested = (*v == '\0'); /* "s3 =" starts a nested block */
		if (nested)
			continue;
		/* A later duplicate key wins, like configparser. */
		int replaced = 0;
		for (size_t i = 0; i < f->n; i++) {
			if (!strcmp(f->kv[i].section, section) && !strcmp(f->kv[i].key, k)) {
				char *nv = strdup(v);
				if (!nv) {
					ret = -ENOMEM;
					goto out;
				}
				free(f->kv[i].value);
				f->kv[i].value = nv;
				replaced = 1;
				break;
			}
		}
		if (!replaced && (ret = add_kv(f, section, k, v)))
			goto out;
	}
out:
	free(line);
	if (fp)
		fclose(fp);
	if (ret) {
		ini_free(f);
		f = NULL;
	}
	if (err)
		*err = ret;
	return f;
}

void ini_free(struct ini *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free(f->kv[i].section);
		free(f->kv[i].key);
		free(f->kv[i].value);
	}
	for (size_t i = 0; i < f->nsec; i++)
		free(f->sections[i]);
	free(f->sections);
	free(f->kv);
	free(f);
}

const char *ini_get(const struct ini *f, const char *section, const char *key)
{
	if (!f || !section || !key)
		return NULL;
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->kv[i].section, section) && !strcmp(f->kv[i].key, key))
			return f->kv[i].value;
	return NULL;
}

int ini_has_section(const struct ini *f, const char *section)
{
	if (!f || !section)
		return 0;
	for (size_t i = 0; i < f->nsec; i++)
		if (!strcmp(f->sections[i], section))
			return 1;
	return 0;
}
