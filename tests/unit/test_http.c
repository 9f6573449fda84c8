/* net/http.c and net/aws_sign.c against a fake HTTP server: retries on 503,
 * resets and throttling bodies, the deadline, stall detection, streaming
 * bodies and sinks, ranged resume, cancel, connection reuse, signing on
 * every attempt, and no query string in the logs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fakesrv.h"
#include "net/aws_sign.h"
#include "net/health.h"
#include "net/http.h"
#include "net/log.h"
#include "net/sigv4.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The scenario the handler plays, chosen by each test. */
enum scenario {
	SC_OK,
	SC_503_TWICE,
	SC_RESET_TWICE,
	SC_503_ALWAYS,
	SC_HANG,
	SC_THROTTLE_BODY_ONCE,
	SC_RANGE,
	SC_RANGE_TRUNCATE_ONCE,
	SC_RANGE_TRUNCATE_THEN_503,
	SC_ECHO_BODY_503_ONCE,
	SC_FORBIDDEN,
	SC_SKEWED,   /* the server's clock is an hour ahead; checks X-Amz-Date */
	SC_DATE_NOW, /* the server's clock agrees with ours */
};
/* Set by the test thread, read by connection threads (keep-alive). */
static _Atomic enum scenario scenario;
static const char blob[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

static void handler(struct fakesrv *s, const struct fake_req *rq, int n, struct fake_resp *rs)
{
	char range[64];
	snprintf(rs->headers, sizeof(rs->headers), "x-amzn-RequestId: req-%d\r\n", n);
	switch (scenario) {
	case SC_OK:
		snprintf(rs->body, sizeof(rs->body), "hello %s %s", rq->method, rq->target);
		break;
	case SC_503_TWICE:
		if (n < 2) {
			rs->status = 503;
			strcpy(rs->body, "busy");
		} else {
			strcpy(rs->body, "finally");
		}
		break;
	case SC_RESET_TWICE:
		if (n < 2)
			rs->action = FAKE_RESET;
		else
			strcpy(rs->body, "after resets");
		break;
	case SC_503_ALWAYS:
		rs->status = 503;
		strcpy(rs->body, "always busy");
		break;
	case SC_HANG:
		rs->action = FAKE_HANG;
		break;
	case SC_THROTTLE_BODY_ONCE:
		if (n == 0) {
			rs->status = 400;
			strcpy(rs->body, "{\"__type\":\"ThrottlingException\"}");
		} else {
			strcpy(rs->body, "{}");
		}
		break;
	case SC_RANGE:
	case SC_RANGE_TRUNCATE_ONCE:
	case SC_RANGE_TRUNCATE_THEN_503: {
		if (scenario == SC_RANGE_TRUNCATE_THEN_503 && n == 1) {
			rs->status = 503;
			break;
		}
		unsigned long a = 0, b = 0;
		if (!fake_header(rq->headers, "Range", range, sizeof(range)) ||
		    sscanf(range, "bytes=%lu-%lu", &a, &b) != 2 || b >= sizeof(blob) - 1 || a > b) {
			rs->status = 416;
			break;
		}
		rs->status = 206;
		size_t l = b - a + 1;
		memcpy(rs->body, blob + a, l);
		rs->body_len = l;
		snprintf(rs->headers + strlen(rs->headers),
			 sizeof(rs->headers) - strlen(rs->headers),
			 "Content-Range: bytes %lu-%lu/%zu\r\n", a, b, sizeof(blob) - 1);
		if (scenario != SC_RANGE && n == 0) {
			rs->action = FAKE_TRUNCATE;
			rs->truncate_at = 5;
		}
		break;
	}
	case SC_ECHO_BODY_503_ONCE:
		if (n == 0) {
			rs->status = 503;
			break;
		}
		memcpy(rs->body, rq->body, rq->body_len);
		rs->body_len = rq->body_len;
		break;
	case SC_SKEWED:
	case SC_DATE_NOW: {
		time_t server_now = time(NULL) + (scenario == SC_SKEWED ? 3600 : 0);
		struct tm tm;
		char date[64], amz[32];
		gmtime_r(&server_now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		snprintf(rs->headers + strlen(rs->headers),
			 sizeof(rs->headers) - strlen(rs->headers), "Date: %s\r\n", date);
		if (fake_header(rq->headers, "X-Amz-Date", amz, sizeof(amz))) {
			memset(&tm, 0, sizeof(tm));
			strptime(amz, "%Y%m%dT%H%M%SZ", &tm);
			time_t t = timegm(&tm);
			if (t < server_now - 300 || t > server_now + 300) {
				rs->status = 403;
				strcpy(rs->body, "{\"__type\":\"InvalidSignatureException\","
						 "\"message\":\"Signature expired\"}");
				break;
			}
		}
		strcpy(rs->body, "{}");
		break;
	}
	case SC_FORBIDDEN:
		rs->status = 403;
		strcpy(rs->body, "<Error><Code>AccessDenied</Code></Error>");
		break;
	}
}

static struct fakesrv srv;
static char base[64];
static net_http *h;

/* The log so far (its first MiB; "" when unreadable); the caller frees it. */
static char *log_text(const char *logpath)
{
	char *text = malloc(1 << 20);
	if (!text)
		abort();
	return check_read_text(logpath, text, 1 << 20);
}

static void url(char *buf, size_t n, const char *path) { snprintf(buf, n, "%s%s", base, path); }

static void reset(enum scenario sc)
{
	fakesrv_clear(&srv);
	scenario = sc;
}

/* reset(sc), and the URL of path on the fake server. */
static const char *play(enum scenario sc, const char *path)
{
	static char u[256];
	reset(sc);
	url(u, sizeof(u), path);
	return u;
}

static void test_basic(void)
{
	struct net_response r;
	const char *u = play(SC_OK, "/a/b?x=1");
	struct net_request q = {.method = "GET", .url = u};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200);
	CHECK(r.body.data && strcmp(r.body.data, "hello GET /a/b?x=1") == 0);
	CHECK(strcmp(r.request_id, "req-0") == 0);
	CHECK(r.attempts == 1 && r.retries == 0);
	net_buf_free(&r.body);
	/* A second call reuses the kept-alive connection. */
	int conns = fakesrv_nconn(&srv);
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 200);
	CHECK(fakesrv_nconn(&srv) == conns);
	net_buf_free(&r.body);
}

static void test_retry_503(void)
{
	struct net_response r;
	struct net_http_stats before, after;
	const char *u = play(SC_503_TWICE, "/retry");
	net_http_get_stats(h, &before);
	struct net_request q = {.method = "GET", .url = u};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200);
	CHECK(r.body.data && strcmp(r.body.data, "finally") == 0);
	CHECK(r.attempts == 3 && r.retries == 2);
	net_http_get_stats(h, &after);
	CHECK(after.retries - before.retries == 2);
	CHECK(after.requests - before.requests == 3);
	CHECK(fakesrv_nreq(&srv) == 3);
	net_buf_free(&r.body);
}

static void test_retry_reset(void)
{
	struct net_response r;
	const char *u = play(SC_RESET_TWICE, "/reset");
	struct net_request q = {.method = "POST", .url = u, .body = "abc", .body_len = 3};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200 && r.body.data && !strcmp(r.body.data, "after resets"));
	/* curl itself retries once when a reused connection dies, so the
	 * server count is what proves both resets were survived. */
	CHECK(r.retries >= 1);
	CHECK(fakesrv_nreq(&srv) == 3);
	net_buf_free(&r.body);
}

static void test_attempts_exhausted(void)
{
	struct net_response r;
	const char *u = play(SC_503_ALWAYS, "/busy");
	struct net_request q = {.method = "GET", .url = u, .max_attempts = 3};
	CHECK(net_http_do(h, &q, &r) == 0); /* a response was received */
	CHECK(r.status == 503 && r.attempts == 3);
	CHECK(r.body.data && !strcmp(r.body.data, "always busy"));
	CHECK(fakesrv_nreq(&srv) == 3);
	net_buf_free(&r.body);
}

/* A handle with an empty endpoint health table: after a test that leaves
 * the fake server in back-off (net/health.h). */
static void renew(void)
{
	struct net_http_opts o = {.connect_timeout_ms = 2000};
	net_http_free(h);
	h = NULL;
	if (net_http_new(&o, &h))
		abort();
}

static void test_deadline(void)
{
	struct net_response r;
	const char *u = play(SC_HANG, "/hang");
	struct net_request q = {.method = "GET", .url = u, .deadline_ms = 1500};
	int64_t t0 = mono_ms();
	int rc = net_http_do(h, &q, &r);
	int64_t took = mono_ms() - t0;
	CHECK(rc == -ETIMEDOUT);
	/* Bound, not a timing measurement: the call must not run far past its
	 * deadline (an unbounded call would hang the suite). */
	CHECK(took < 1500 + 5000);
	net_buf_free(&r.body);

	/* The endpoint that timed out is in back-off: the next call fails at
	 * once, without a request. */
	int nreq = fakesrv_nreq(&srv);
	struct net_http_stats st;
	t0 = mono_ms();
	CHECK(net_http_do(h, &q, &r) == -EHOSTUNREACH);
	CHECK(mono_ms() - t0 < 500);
	CHECK(r.attempts == 0);
	CHECK(fakesrv_nreq(&srv) == nreq);
	net_http_get_stats(h, &st);
	CHECK(st.fast_fails == 1 && st.hosts_down == 1);
	renew();

	/* A busy server and a short deadline: retries stop at the deadline. */
	reset(SC_503_ALWAYS);
	struct net_request q2 = {
	    .method = "GET", .url = u, .deadline_ms = 800, .max_attempts = 1000};
	t0 = mono_ms();
	rc = net_http_do(h, &q2, &r);
	took = mono_ms() - t0;
	CHECK(rc == 0 && r.status == 503);
	CHECK(r.attempts < 1000);
	CHECK(took < 800 + 5000);
	net_buf_free(&r.body);
}

/* The background probe (net/health_probe.h): once the server that hung
 * answers, a probe (GET /, an interval after the endpoint went down) ends
 * the back-off well before its 5 s run out, and the next call goes
 * through. Freeing the handle stops the prober, also in the middle of a
 * probe the server does not answer. */
static void test_background_probe(const char *logpath)
{
	struct net_response r;
	struct net_http_stats st;
	const char *u = play(SC_HANG, "/probe");
	struct net_request q = {.method = "GET", .url = u, .deadline_ms = 800};

	renew();
	CHECK(net_http_do(h, &q, &r) == -ETIMEDOUT);
	int64_t down = mono_ms();
	scenario = SC_OK;
	net_http_get_stats(h, &st);
	CHECK(st.hosts_down == 1);
	do {
		usleep(50 * 1000);
		net_http_get_stats(h, &st);
	} while (st.hosts_down && mono_ms() - down < NET_HEALTH_MIN_MS);
	CHECK(st.hosts_down == 0);
	CHECK(mono_ms() - down < NET_HEALTH_MIN_MS); /* not the back-off's end */
	CHECK(fakesrv_nreq(&srv) == 2);
	CHECK_STR(srv.reqs[1].target, "/");
	CHECK(strcasestr(srv.reqs[1].headers, "Authorization") == NULL);
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 200);
	net_buf_free(&r.body);
	char *text = log_text(logpath);
	CHECK(strstr(text, "answers again (background probe)") != NULL);
	free(text);

	/* Down again, probed when freed: the free ends the probe at once. */
	reset(SC_HANG);
	CHECK(net_http_do(h, &q, &r) == -ETIMEDOUT);
	while (fakesrv_nreq(&srv) < 2 && mono_ms() - down < 15000)
		usleep(20 * 1000);
	int64_t t0 = mono_ms();
	renew();
	CHECK(mono_ms() - t0 < 1000);
}

static void test_stall(void)
{
	struct net_response r;
	const char *u = play(SC_HANG, "/stall");
	struct net_request q = {
	    .method = "GET", .url = u, .stall_ms = 300, .max_attempts = 2, .deadline_ms = 60000};
	int rc = net_http_do(h, &q, &r);
	CHECK(rc == -ETIMEDOUT);
	CHECK(r.attempts == 2);
	CHECK(fakesrv_nreq(&srv) == 2); /* the stalled attempt was retried */
	net_buf_free(&r.body);
	renew();
}

static int retry_throttle(void *arg, long status, const struct net_buf *b)
{
	(*(int *)arg)++;
	return status == 400 && b->data && strstr(b->data, "ThrottlingException");
}

static void test_retry_cb(void)
{
	struct net_response r;
	int calls = 0;
	const char *u = play(SC_THROTTLE_BODY_ONCE, "/");
	struct net_request q = {.method = "POST",
				.url = u,
				.body = "{}",
				.body_len = 2,
				.retry_cb = retry_throttle,
				.retry_arg = &calls};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200 && r.retries == 1 && calls == 2);
	net_buf_free(&r.body);
}

struct sinkbuf {
	char data[256];
	size_t len;
};

static int sink(void *arg, const char *d, size_t n)
{
	struct sinkbuf *s = arg;
	if (s->len + n > sizeof(s->data))
		return -ENOSPC;
	memcpy(s->data + s->len, d, n);
	s->len += n;
	return 0;
}

/* A sinked GET of bytes 10-19 under scenario sc: the sink gets exactly
 * those bytes (the body nothing) after nreq requests, the last of them
 * asking for last_range. Then the same request answered 403: error replies
 * never reach the sink. */
static void range_case(enum scenario sc, int nreq, const char *last_range)
{
	char u[256], rh[64];
	struct net_response r;
	struct sinkbuf sb = {0};
	reset(sc);
	url(u, sizeof(u), "/blob");
	struct net_request q = {.method = "GET",
				.url = u,
				.sink = sink,
				.sink_arg = &sb,
				.range_start = 10,
				.range_len = 10};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 206);
	CHECK(sb.len == 10 && memcmp(sb.data, blob + 10, 10) == 0);
	CHECK(r.body.len == 0); /* went to the sink */
	CHECK(fakesrv_nreq(&srv) == nreq);
	if (sc == SC_RANGE)
		CHECK(strcmp(r.content_range, "bytes 10-19/62") == 0);
	CHECK(fakesrv_nreq(&srv) >= nreq &&
	      fake_header(srv.reqs[nreq - 1].headers, "Range", rh, sizeof(rh)) &&
	      !strcmp(rh, last_range));
	net_buf_free(&r.body);

	memset(&sb, 0, sizeof(sb));
	reset(SC_FORBIDDEN);
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 403 && sb.len == 0);
	CHECK(r.body.data && strstr(r.body.data, "AccessDenied"));
	net_buf_free(&r.body);
}

static void test_range_sink(void)
{
	range_case(SC_RANGE, 1, "bytes=10-19");
	/* The first answer breaks after 5 bytes: the retry asks for the rest. */
	range_case(SC_RANGE_TRUNCATE_ONCE, 2, "bytes=15-19");
	/* Broken, then busy, then whole: the resumed range survives a 503. */
	range_case(SC_RANGE_TRUNCATE_THEN_503, 3, "bytes=15-19");
}

static int body_calls;
static ssize_t body_cb(void *arg, char *dst, size_t n, uint64_t off)
{
	const char *src = arg;
	size_t len = strlen(src);
	body_calls++;
	if (off >= len)
		return 0;
	if (n > 7)
		n = 7; /* small pieces: exercise several reads */
	if (n > len - off)
		n = len - (size_t)off;
	memcpy(dst, src + off, n);
	return (ssize_t)n;
}

static void test_stream_body(void)
{
	struct net_response r;
	const char *payload = "streamed body that is sent in pieces of seven bytes";
	const char *u = play(SC_ECHO_BODY_503_ONCE, "/upload");
	struct net_request q = {.method = "PUT",
				.url = u,
				.body_cb = body_cb,
				.body_arg = (void *)payload,
				.body_len = strlen(payload)};
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200 && r.retries == 1);
	CHECK(fakesrv_nreq(&srv) == 2);
	/* Both attempts carried the whole body (restarted at offset 0). */
	CHECK(srv.reqs[0].body_len == strlen(payload) && !strcmp(srv.reqs[0].body, payload));
	CHECK(srv.reqs[1].body_len == strlen(payload) && !strcmp(srv.reqs[1].body, payload));
	CHECK(r.body.data && !strcmp(r.body.data, payload));
	CHECK(!strcmp(srv.reqs[1].method, "PUT"));
	net_buf_free(&r.body);
}

static volatile int cancel_flag;
static void *canceller(void *arg)
{
	struct timespec ts = {0, 300 * 1000000L};
	nanosleep(&ts, NULL);
	__atomic_store_n(&cancel_flag, 1, __ATOMIC_RELAXED); /* as a FUSE INTERRUPT would */
	return NULL;
}

static void test_cancel(void)
{
	char u[256];
	struct net_response r;
	pthread_t t;
	reset(SC_HANG);
	url(u, sizeof(u), "/cancel");
	cancel_flag = 0;
	struct net_request q = {
	    .method = "GET", .url = u, .cancel = &cancel_flag, .deadline_ms = 60000};
	pthread_create(&t, NULL, canceller, NULL);
	CHECK(net_http_do(h, &q, &r) == -EINTR);
	pthread_join(t, NULL);
	net_buf_free(&r.body);
	/* Cancelled while connecting: a listener whose accept queue is full
	 * drops SYNs, so the connect hangs (on 127.0.0.1). */
	int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	CHECK(lfd >= 0 && !bind(lfd, (struct sockaddr *)&a, sizeof(a)) && !listen(lfd, 0) &&
	      !getsockname(lfd, (struct sockaddr *)&a, &al));
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(fill[i], (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS)
			CHECK(!"fill connect");
	}
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	cancel_flag = 0;
	struct net_request qc = {.method = "GET",
				 .url = u,
				 .cancel = &cancel_flag,
				 .deadline_ms = 60000,
				 .max_attempts = 1};
	pthread_create(&t, NULL, canceller, NULL);
	CHECK(net_http_do(h, &qc, &r) == -EINTR); /* not a connect timeout */
	pthread_join(t, NULL);
	net_buf_free(&r.body);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);

	/* Already cancelled: nothing is sent. */
	reset(SC_OK);
	url(u, sizeof(u), "/cancel");
	CHECK(net_http_do(h, &q, &r) == -EINTR);
	CHECK(fakesrv_nreq(&srv) == 0);
	net_buf_free(&r.body);
}

static void test_refused(void)
{
	struct net_response r;
	struct fakesrv tmp;
	char u[128];
	/* A port that was just free. */
	CHECK(fakesrv_start(&tmp, handler, NULL) == 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", tmp.port);
	fakesrv_stop(&tmp);
	struct net_request q = {.method = "GET", .url = u, .max_attempts = 2, .deadline_ms = 5000};
	CHECK(net_http_do(h, &q, &r) == -ECONNREFUSED);
	CHECK(r.attempts == 2);
	net_buf_free(&r.body);
}

/* aws_sign: every attempt signed afresh, headers as SigV4 expects. */
static void test_sign_each_attempt(void)
{
	char auth[512], host[128], tok[128], date[32];
	struct net_response r;
	struct cred c = {.access_key_id = "AKIDEXAMPLE",
			 .secret_access_key = "secret",
			 .session_token = "TOKEN123",
			 .source = "test"};
	static const char *const hdrs[] = {"Content-Type: application/x-amz-json-1.1",
					   "X-Amz-Target: Svc.Op", NULL};
	struct aws_sign_ctx sc;
	const char *u = play(SC_503_TWICE, "/");
	struct net_request q = {
	    .method = "POST", .url = u, .headers = hdrs, .body = "{}", .body_len = 2};
	CHECK(aws_sign_init(&sc, NULL, "eu-west-1", "ecr", &q, NULL) == 0);
	sc.static_creds = &c;
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 200);
	CHECK(fakesrv_nreq(&srv) == 3);
	for (int i = 0; i < 3 && i < fakesrv_nreq(&srv); i++) {
		const char *hb = srv.reqs[i].headers;
		CHECK(fake_header(hb, "Authorization", auth, sizeof(auth)));
		CHECK(strstr(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") == auth);
		CHECK(strstr(auth, "/eu-west-1/ecr/aws4_request, SignedHeaders=content-type;host;"
				   "x-amz-date;x-amz-security-token;x-amz-target, Signature="));
		CHECK(fake_header(hb, "Host", host, sizeof(host)) && !strcmp(host, base + 7));
		CHECK(fake_header(hb, "X-Amz-Security-Token", tok, sizeof(tok)) &&
		      !strcmp(tok, "TOKEN123"));
		CHECK(fake_header(hb, "X-Amz-Date", date, sizeof(date)) && strlen(date) == 16);
		CHECK(!fake_header(hb, "X-Amz-Content-Sha256", tok, sizeof(tok)));

		/* Recompute the signature from what the server received. */
		struct sigv4_header sh[] = {{"Content-Type", "application/x-amz-json-1.1"},
					    {"Host", host},
					    {"X-Amz-Date", date},
					    {"X-Amz-Security-Token", tok},
					    {"X-Amz-Target", "Svc.Op"}};
		char hash[65], want[512];
		sigv4_sha256_hex(srv.reqs[i].body, srv.reqs[i].body_len, hash);
		struct sigv4_request sr = {"POST", "/", NULL, sh, 5, hash};
		struct sigv4_creds scr = {"AKIDEXAMPLE", "secret", "TOKEN123"};
		CHECK(sigv4_sign(&sr, &scr, "eu-west-1", "ecr", date, want, sizeof(want), NULL,
				 NULL) == 0);
		CHECK(!strcmp(want, auth));
	}
	net_buf_free(&r.body);

	/* X-Amz-Content-Sha256 only when asked; a streamed body needs its hash. */
	reset(SC_OK);
	struct net_request q2 = {.method = "PUT",
				 .url = u,
				 .body_cb = body_cb,
				 .body_arg = (void *)"xyz",
				 .body_len = 3};
	CHECK(aws_sign_init(&sc, NULL, "eu-west-1", "ecr", &q2, NULL) == -EINVAL);
	char hx[65];
	sigv4_sha256_hex("xyz", 3, hx);
	CHECK(aws_sign_init(&sc, NULL, "eu-west-1", "ecr", &q2, hx) == 0);
	sc.static_creds = &c;
	sc.send_content_sha256 = 1;
	CHECK(net_http_do(h, &q2, &r) == 0 && r.status == 200);
	CHECK(fake_header(srv.reqs[0].headers, "X-Amz-Content-Sha256", tok, sizeof(tok)) &&
	      !strcmp(tok, hx));
	net_buf_free(&r.body);

	/* No credentials: the sign callback's error is returned, nothing sent. */
	reset(SC_OK);
	struct net_request q3 = {.method = "GET", .url = u};
	CHECK(aws_sign_init(&sc, NULL, "eu-west-1", "ecr", &q3, NULL) == 0);
	CHECK(net_http_do(h, &q3, &r) == -EACCES);
	CHECK(fakesrv_nreq(&srv) == 0);
	net_buf_free(&r.body);
}

/* Nothing secret in the logs: presigned-style query strings, signatures. */
static void test_log_no_query(const char *logpath)
{
	char u[512];
	struct net_response r;
	struct cred c = {.access_key_id = "AKIDLOGTEST",
			 .secret_access_key = "SECRETKEYLOG",
			 .session_token = "SESSIONTOKENLOG",
			 .source = "test"};
	struct aws_sign_ctx sc;

	reset(SC_503_TWICE);
	snprintf(u, sizeof(u), "%s/layer?X-Amz-Signature=SIGQUERYSECRET&X-Amz-Credential=CREDQ",
		 base);
	struct net_request q = {.method = "GET", .url = u};
	CHECK(aws_sign_init(&sc, NULL, "us-east-1", "ecr", &q, NULL) == 0);
	sc.static_creds = &c;
	CHECK(net_http_do(h, &q, &r) == 0);
	net_buf_free(&r.body);
	reset(SC_RESET_TWICE);
	CHECK(net_http_do(h, &q, &r) == 0);
	net_buf_free(&r.body);
	reset(SC_HANG);
	struct net_request q2 = {.method = "GET", .url = u, .deadline_ms = 500};
	CHECK(net_http_do(h, &q2, &r) == -ETIMEDOUT);
	net_buf_free(&r.body);
	log_close();

	char *text = log_text(logpath);
	CHECK(strstr(text, "/layer") != NULL); /* the calls were logged ... */
	CHECK(strstr(text, "retry") != NULL);
	CHECK(strstr(text, "SIGQUERYSECRET") == NULL); /* ... without their query */
	CHECK(strstr(text, "CREDQ") == NULL);
	CHECK(strstr(text, "X-Amz-Signature") == NULL);
	CHECK(strstr(text, "SECRETKEYLOG") == NULL);
	CHECK(strstr(text, "SESSIONTOKENLOG") == NULL);
	CHECK(strstr(text, "Authorization") == NULL);
	free(text);
}

struct par_arg {
	int ok;
	char body[8];
};

static void *par_worker(void *arg)
{
	struct par_arg *a = arg;
	char u[256];
	for (int i = 0; i < 25; i++) {
		struct net_response r;
		snprintf(u, sizeof(u), "%s/par/%s/%d", base, a->body, i);
		struct net_request q = {
		    .method = "POST", .url = u, .body = a->body, .body_len = strlen(a->body)};
		if (net_http_do(h, &q, &r) == 0 && r.status == 200 && r.body.data &&
		    strstr(r.body.data, u + strlen(base)))
			a->ok++;
		net_buf_free(&r.body);
	}
	return NULL;
}

/* Many threads share one handle (pool + shared connection cache). */
static void test_parallel(void)
{
	pthread_t t[8];
	struct par_arg a[8];
	reset(SC_OK);
	int conns0 = fakesrv_nconn(&srv);
	for (int i = 0; i < 8; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		snprintf(a[i].body, sizeof(a[i].body), "t%d", i);
		pthread_create(&t[i], NULL, par_worker, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK(a[i].ok == 25);
	}
	CHECK(fakesrv_nreq(&srv) == 200);
	/* Connections are reused: far fewer than requests. */
	fprintf(stderr, "parallel: %d new connections\n", fakesrv_nconn(&srv) - conns0);
	CHECK(fakesrv_nconn(&srv) - conns0 <= 16);
}

/* A signed request rejected because our clock is off is signed again with
 * the server's time (from its Date header), once; later calls use it. */
static void test_clock_skew(const char *logpath)
{
	struct net_response r;
	struct cred c = {.access_key_id = "AKIDSKEW", .secret_access_key = "s", .source = "test"};
	struct aws_sign_ctx sc;
	const char *u = play(SC_SKEWED, "/");
	struct net_request q = {.method = "POST", .url = u, .body = "{}", .body_len = 2};
	CHECK(aws_sign_init(&sc, NULL, "us-east-1", "ecr", &q, NULL) == 0);
	sc.static_creds = &c;
	CHECK(net_http_do(h, &q, &r) == 0);
	CHECK(r.status == 200 && r.attempts == 2);
	long skew = net_http_clock_skew();
	CHECK(skew > 3500 && skew < 3700);
	net_buf_free(&r.body);
	/* The next call is right the first time. */
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 200 && r.attempts == 1);
	net_buf_free(&r.body);
	/* A rejection that has nothing to do with the clock is not retried. */
	reset(SC_FORBIDDEN);
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 403 && r.attempts == 1);
	net_buf_free(&r.body);
	/* The server's clock agrees again: no more correction. */
	reset(SC_DATE_NOW);
	CHECK(net_http_do(h, &q, &r) == 0 && r.status == 200);
	CHECK(net_http_clock_skew() == 0);
	net_buf_free(&r.body);

	char *text = log_text(logpath);
	CHECK(strstr(text, "local clock is") != NULL);
	free(text);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &al))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int port_open(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* TLS: verification is on by default (a self-signed server is refused and
 * not retried), ca_file makes it trusted, insecure skips the check and says
 * so in the log. The server is `openssl s_server -www`. */
static void test_tls(const char *logpath)
{
	char dir[] = "/tmp/ecrfs-test-tls-XXXXXX", cmd[1024], u[128], ca[300], ps[16];
	struct net_response r;
	net_http *plain = NULL, *trusted = NULL, *insecure = NULL;
	int port, inpipe[2] = {-1, -1};
	pid_t pid = -1;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
		 "-nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 "
		 "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
		 dir);
	CHECK(system(cmd) == 0);
	port = free_port();
	snprintf(ps, sizeof(ps), "%d", port);
	snprintf(ca, sizeof(ca), "%s/cert.pem", dir);
	CHECK(pipe(inpipe) == 0);
	pid = fork();
	if (pid == 0) {
		/* stdin stays open (a pipe) so s_server keeps serving. */
		dup2(inpipe[0], 0);
		int dn = open("/dev/null", O_WRONLY);
		dup2(dn, 1);
		dup2(dn, 2);
		if (chdir(dir) == 0)
			execlp("openssl", "openssl", "s_server", "-accept", ps, "-cert", "cert.pem",
			       "-key", "key.pem", "-www", (char *)NULL);
		_exit(127);
	}
	close(inpipe[0]);
	for (int i = 0; i < 200 && !port_open(port); i++) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	CHECK(port_open(port));
	snprintf(u, sizeof(u), "https://127.0.0.1:%d/", port);

	struct net_http_opts po = {0}, to = {.ca_file = ca}, io = {.insecure = 1};
	CHECK(net_http_new(&po, &plain) == 0);
	CHECK(net_http_new(&to, &trusted) == 0);
	CHECK(net_http_new(&io, &insecure) == 0);
	struct net_request q = {.method = "GET", .url = u, .deadline_ms = 20000};
	if (plain) {
		CHECK(net_http_do(plain, &q, &r) == -EIO);
		CHECK(r.attempts == 1); /* a certificate error is not retried */
		net_buf_free(&r.body);
	}
	if (trusted) {
		CHECK(net_http_do(trusted, &q, &r) == 0);
		CHECK(r.status == 200);
		net_buf_free(&r.body);
	}
	if (insecure) {
		CHECK(net_http_do(insecure, &q, &r) == 0);
		CHECK(r.status == 200);
		net_buf_free(&r.body);
	}
	net_http_free(plain);
	net_http_free(trusted);
	net_http_free(insecure);

	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	if (inpipe[1] >= 0)
		close(inpipe[1]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);

	char *text = log_text(logpath);
	CHECK(strstr(text, "TLS certificate verification is off") != NULL);
	free(text);
}

int main(void)
{
	fakesrv_no_proxy();
	char logpath[] = "/tmp/ecrfs-test-http-XXXXXX";
	int lfd = mkstemp(logpath);
	if (lfd < 0)
		return 2;
	close(lfd);
	if (log_init(LOG_TO_FILE, logpath, LOGL_DEBUG))
		return 2;
	if (fakesrv_start(&srv, handler, NULL))
		return 2;
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", srv.port);
	struct net_http_opts o = {.connect_timeout_ms = 2000};
	if (net_http_new(&o, &h))
		return 2;

	test_basic();
	test_retry_503();
	test_retry_reset();
	test_attempts_exhausted();
	test_deadline();
	test_background_probe(logpath);
	test_stall();
	test_retry_cb();
	test_range_sink();
	test_stream_body();
	test_cancel();
	test_parallel();
	test_refused();
	test_sign_each_attempt();
	test_tls(logpath);
	test_clock_skew(logpath);
	test_log_no_query(logpath);

	net_http_free(h);
	fakesrv_stop(&srv);
	if (!test_failures)
		unlink(logpath);
	else
		fprintf(stderr, "log kept in %s\n", logpath);
	return check_summary("http");
}
