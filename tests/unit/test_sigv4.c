/* SigV4 against the published AWS signing test suite (tests/data/sigv4). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "net/sigv4.h"

#define VEC_DIR "data/sigv4"

static int failures;

static char *slurp(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/%s", VEC_DIR, dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	if (fread(s, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	s[n] = '\0';
	fclose(f);
	return s;
}

static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static void check_str(const char *tcase, const char *what, const char *got, const char *want)
{
	if (!got || !want || strcmp(got, want) != 0) {
		fprintf(stderr, "FAIL %s: %s\n--- got\n%s\n--- want\n%s\n", tcase, what,
			got ? got : "(null)", want ? want : "(null)");
		failures++;
	}
}

/* Parses request.txt: request line, headers (continuation lines start with
 * whitespace and are joined with '\n'), blank line, body. */
struct vreq {
	char method[16];
	char *path, *query;
	struct sigv4_header hdr[32];
	char *hbuf[64];
	size_t nh, nbuf;
	const char *body;
};

static char *keep(struct vreq *r, char *s)
{
	r->hbuf[r->nbuf++] = s;
	return s;
}

static int parse_request(char *txt, struct vreq *r)
{
	memset(r, 0, sizeof(*r));
	char *line = txt, *next;
	next = strchr(line, '\n');
	if (!next)
		return -1;
	*next++ = '\0';
	char *sp1 = strchr(line, ' ');
	char *sp2 = strrchr(line, ' ');
	if (!sp1 || sp2 == sp1)
		return -1;
	*sp1 = '\0';
	*sp2 = '\0';
	snprintf(r->method, sizeof(r->method), "%s", line);
	char *uri = sp1 + 1;
	char *q = strchr(uri, '?');
	if (q)
		*q++ = '\0';
	r->path = uri;
	r->query = q;
	line = next;
	while (line && *line && *line != '\n') {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if ((*line == ' ' || *line == '\t') && r->nh) {
			const char *prev = r->hdr[r->nh - 1].value;
			size_t n = strlen(prev) + strlen(line) + 2;
			char *v = keep(r, malloc(n));
			snprintf(v, n, "%s\n%s", prev, line);
			r->hdr[r->nh - 1].value = v;
		} else {
			char *colon = strchr(line, ':');
			if (!colon)
				return -1;
			*colon = '\0';
			r->hdr[r->nh].name = line;
			r->hdr[r->nh].value = colon + 1;
			r->nh++;
		}
		line = next;
	}
	r->body = (line && *line == '\n') ? line + 1 : "";
	return 0;
}

static void run_case(const char *name)
{
	char *reqtxt = slurp(name, "request.txt");
	char *ctxtxt = slurp(name, "context.json");
	char *want_cr = slurp(name, "header-canonical-request.txt");
	char *want_sts = slurp(name, "header-string-to-sign.txt");
	char *want_sig = slurp(name, "header-signature.txt");
	char *want_signed = slurp(name, "header-signed-request.txt");
	char *cr = NULL, *sts = NULL;
	json_t *ctx = NULL;
	struct vreq r = {0};

	if (!reqtxt || !ctxtxt || !want_cr || !want_sts || !want_sig || !want_signed) {
		fprintf(stderr, "FAIL %s: missing vector files\n", name);
		failures++;
		goto out;
	}
	ctx = json_loads(ctxtxt, 0, NULL);
	if (!ctx || parse_request(reqtxt, &r) != 0) {
		fprintf(stderr, "FAIL %s: cannot parse vector\n", name);
		failures++;
		goto out;
	}
	json_t *jc = json_object_get(ctx, "credentials");
	const char *ak = json_string_value(json_object_get(jc, "access_key_id"));
	const char *sk = json_string_value(json_object_get(jc, "secret_access_key"));
	const char *tok = json_string_value(json_object_get(jc, "token"));
	const char *region = json_string_value(json_object_get(ctx, "region"));
	const char *service = json_string_value(json_object_get(ctx, "service"));
	const char *ts = json_string_value(json_object_get(ctx, "timestamp"));
	int sign_body = json_is_true(json_object_get(ctx, "sign_body"));
	int omit_token = json_is_true(json_object_get(ctx, "omit_session_token"));

	/* "2015-08-30T12:36:00Z" -> "20150830T123600Z" */
	char amz_date[17];
	snprintf(amz_date, sizeof(amz_date), "%.4s%.2s%.2sT%.2s%.2s%.2sZ", ts, ts + 5, ts + 8,
		 ts + 11, ts + 14, ts + 17);

	char bodyhash[65];
	sigv4_sha256_hex(r.body, strlen(r.body), bodyhash);

	/* What a caller adds before signing: X-Amz-Date, the session token unless
	 * the case signs it afterwards, and X-Amz-Content-Sha256 when asked. */
	r.hdr[r.nh].name = "X-Amz-Date";
	r.hdr[r.nh++].value = amz_date;
	if (tok && !omit_token) {
		r.hdr[r.nh].name = "X-Amz-Security-Token";
		r.hdr[r.nh++].value = tok;
	}
	if (sign_body) {
		r.hdr[r.nh].name = "x-amz-content-sha256";
		r.hdr[r.nh++].value = bodyhash;
	}

	struct sigv4_request sr = {
	    .method = r.method,
	    .path = r.path,
	    .query = r.query,
	    .headers = r.hdr,
	    .nheaders = r.nh,
	    .payload_sha256_hex = bodyhash,
	};
	struct sigv4_creds sc = {ak, sk, tok};
	char auth[512];
	int rc = sigv4_sign(&sr, &sc, region, service, amz_date, auth, sizeof(auth), &cr, &sts);
	if (rc != 0) {
		fprintf(stderr, "FAIL %s: sigv4_sign returned %d\n", name, rc);
		failures++;
		goto out;
	}
	chomp(want_cr);
	chomp(want_sts);
	chomp(want_sig);
	check_str(name, "canonical request", cr, want_cr);
	check_str(name, "string to sign", sts, want_sts);

	/* The Authorization line of the signed request, and its signature. */
	char *al = strstr(want_signed, "Authorization:");
	if (!al) {
		fprintf(stderr, "FAIL %s: no Authorization in signed request\n", name);
		failures++;
		goto out;
	}
	al += strlen("Authorization:");
	al[strcspn(al, "\r\n")] = '\0';
	check_str(name, "Authorization", auth, al);
	const char *sig = strstr(auth, "Signature=");
	check_str(name, "signature", sig ? sig + 10 : NULL, want_sig);
	if (!failures)
		printf("ok %s\n", name);
out:
	for (size_t i = 0; reqtxt && i < r.nbuf; i++)
		free(r.hbuf[i]);
	json_decref(ctx);
	free(cr);
	free(sts);
	free(reqtxt);
	free(ctxtxt);
	free(want_cr);
	free(want_sts);
	free(want_sig);
	free(want_signed);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The signature must change with every input that is signed. */
static void negative_checks(void)
{
	struct sigv4_header h[] = {{"Host", "api.ecr.eu-west-1.amazonaws.com"},
				   {"X-Amz-Date", "20260101T000000Z"}};
	struct sigv4_request r = {
	    "POST", "/", NULL,
	    h,	    2,	 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
	struct sigv4_creds c = {"AKIAEXAMPLE", "secret", NULL};
	struct sigv4_creds c2 = {"AKIAEXAMPLE", "secreT", NULL};
	char a[512], b[512], small[20];

	if (sigv4_sign(&r, &c, "eu-west-1", "ecr", "20260101T000000Z", a, sizeof(a), NULL, NULL) ||
	    sigv4_sign(&r, &c2, "eu-west-1", "ecr", "20260101T000000Z", b, sizeof(b), NULL, NULL) ||
	    strcmp(a, b) == 0) {
		fprintf(stderr, "FAIL: secret change did not change the signature\n");
		failures++;
	}
	if (sigv4_sign(&r, &c, "eu-west-2", "ecr", "20260101T000000Z", b, sizeof(b), NULL, NULL) ||
	    strcmp(a, b) == 0) {
		fprintf(stderr, "FAIL: region change did not change the signature\n");
		failures++;
	}
	if (sigv4_sign(&r, &c, "eu-west-1", "ecr", "20260101T000000Z", small, sizeof(small), NULL,
		       NULL) != -ENOSPC) {
		fprintf(stderr, "FAIL: small buffer not reported\n");
		failures++;
	}
	if (sigv4_sign(&r, &c, "eu-west-1", "ecr", "2026", a, sizeof(a), NULL, NULL) != -EINVAL) {
		fprintf(stderr, "FAIL: bad date accepted\n");
		failures++;
	}
	char d[17];
	sigv4_amz_date(1440938160, d);
	check_str("amz_date", "format", d, "20150830T123600Z");
}

int main(void)
{
	DIR *d = opendir(VEC_DIR);
	char *names[128];
	size_t n = 0;
	struct dirent *e;

	if (!d) {
		perror(VEC_DIR);
		return 1;
	}
	while ((e = readdir(d)) && n < 128) {
		if (e->d_name[0] == '.' || strchr(e->d_name, '.'))
			continue;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	if (n < 25) {
		fprintf(stderr, "FAIL: only %zu vector cases found\n", n);
		failures++;
	}
	for (size_t i = 0; i < n; i++) {
		run_case(names[i]);
		free(names[i]);
	}
	negative_checks();
	printf("%zu vector cases, %d failures\n", n, failures);
	return failures ? 1 : 0;
}
