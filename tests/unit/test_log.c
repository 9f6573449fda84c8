/* log_url_safe: presigned query strings and userinfo never reach a log. */
#include <stdio.h>
#include <string.h>

#include "net/log.h"

static int failures;

static void expect(const char *url, size_t bufsize, const char *want)
{
	char buf[256];
	const char *got = log_url_safe(url, buf, bufsize);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "log_url_safe(%s, %zu) = '%s', want '%s'\n", url, bufsize, got, want);
		failures++;
	}
}

int main(void)
{
	expect("https://h.example/a/b?X-Amz-Signature=s#f", 256, "https://h.example/a/b");
	expect("http://user:secret@127.0.0.1:9/x?y", 256, "http://127.0.0.1:9/x");
	expect("http://user:secret@127.0.0.1:9", 256, "http://127.0.0.1:9");
	expect("http://127.0.0.1:9/p@q?z", 256, "http://127.0.0.1:9/p@q");
	expect("/relative?q=1", 256, "/relative");
	expect("https://h.example/abcdef", 12, "https://h.e");
	if (failures == 0)
		printf("log tests passed\n");
	return failures ? 1 : 0;
}
