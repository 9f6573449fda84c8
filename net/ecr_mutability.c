/* Tag mutability as ECR decides it: the repository's setting with its
 * WILDCARD exclusion filters applied (pure: no I/O). */
#include <string.h>

#include "net/ecr.h"

static const char *const names[] = {
    [ECR_MUT_MUTABLE] = "MUTABLE",
    [ECR_MUT_IMMUTABLE] = "IMMUTABLE",
    [ECR_MUT_IMMUTABLE_WITH_EXCLUSION] = "IMMUTABLE_WITH_EXCLUSION",
    [ECR_MUT_MUTABLE_WITH_EXCLUSION] = "MUTABLE_WITH_EXCLUSION",
};

const char *ecr_mutability_name(enum ecr_mutability m)
{
	if (m <= ECR_MUT_UNKNOWN || m > ECR_MUT_MUTABLE_WITH_EXCLUSION)
		return NULL;
	return names[m];
}

enum ecr_mutability ecr_mutability_parse(const char *s)
{
	if (!s)
		return ECR_MUT_MUTABLE;
	/* Whole-string matches: "IMMUTABLE" is a prefix of another value. */
	for (int m = ECR_MUT_MUTABLE; m <= ECR_MUT_MUTABLE_WITH_EXCLUSION; m++)
		if (strcmp(s, names[m]) == 0)
			return (enum ecr_mutability)m;
	return ECR_MUT_UNKNOWN;
}

int ecr_wildcard_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	/* Iterative glob with one backtrack point: linear enough for the
	 * 128-character patterns ECR allows, and no recursion. */
	while (*s) {
		if (*p == '*') {
			star = ++p;
			resume = s;
		} else if (*p == *s) {
			p++;
			s++;
		} else if (star) {
			p = star;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

int ecr_tag_immutable(enum ecr_mutability m, const char *const *filters, size_t nfilters,
		      const char *tag)
{
	int hit = 0;

	for (size_t i = 0; i < nfilters && !hit; i++)
		hit = filters[i] && ecr_wildcard_match(filters[i], tag);
	switch (m) {
	case ECR_MUT_IMMUTABLE:
		return 1;
	case ECR_MUT_IMMUTABLE_WITH_EXCLUSION:
		return !hit;
	case ECR_MUT_MUTABLE_WITH_EXCLUSION:
		return hit;
	default:
		return 0;
	}
}

int ecr_repo_tag_immutable(const struct ecr_repo *r, const char *tag)
{
	return ecr_tag_immutable(r->mutability, (const char *const *)r->mutability_filters,
				 r->nmutability_filters, tag);
}

int ecr_image_archived(const struct ecr_image *im)
{
	return im->status && strcmp(im->status, "ACTIVE") != 0;
}
