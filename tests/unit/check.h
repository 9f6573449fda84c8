/* The unit tests' checks (active under NDEBUG too): a failed check prints
 * file:line and the expression (with both values for the comparisons),
 * counts in test_failures and the test goes on. main ends with
 * `return check_summary("name");`. */
#ifndef TEST_CHECK_H
#define TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK_FAILED(fmt, ...)                                                                     \
	do {                                                                                       \
		fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);         \
		test_failures++;                                                                   \
	} while (0)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			CHECK_FAILED("%s", #cond);                                                 \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b)                                                                      \
			CHECK_FAILED("%s == %lld, expected %lld", #a, _a, _b);                     \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b) != 0)                                             \
			CHECK_FAILED("%s == \"%s\", expected \"%s\"", #a, _a ? _a : "(null)",      \
				     _b ? _b : "(null)");                                          \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
	do {                                                                                       \
		const char *_h = (hay), *_n = (needle);                                            \
		if (!_h || !strstr(_h, _n))                                                        \
			CHECK_FAILED("%s: \"%s\" does not contain \"%s\"", #hay,                   \
				     _h ? _h : "(null)", _n);                                      \
	} while (0)

/* The text of a small file (its first n-1 bytes) in buf; "" when it cannot
 * be read. Returns buf. */
static inline char *check_read_text(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t len = 0;
	if (f) {
		len = fread(buf, 1, n - 1, f);
		fclose(f);
	}
	buf[len] = '\0';
	return buf;
}

/* The exit status of a test program: 0 when every check passed. */
static inline int check_summary(const char *name)
{
	if (test_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
		return 1;
	}
	printf("%s: all checks passed\n", name);
	return 0;
}

#endif
