/* HTTP over libcurl: a pool of easy handles sharing one connection cache, DNS
 * cache and TLS sessions; per-call deadline, per-attempt stall detection,
 * retries with full-jitter exponential backoff. Each attempt runs in its own
 * multi handle polled every POLL_MS, so a cancel (FUSE INTERRUPT) or a stall
 * is noticed in any state, connecting included. */
#include "net/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "net/health.h"
#include "net/health_probe.h"
#include "net/log.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define MAX_SIGN_HDRS 16
#define POLL_MS 100
/* Collected (non-sink) bodies are capped: a BatchGetImage reply carrying one
 * 4 MiB manifest is larger once JSON-escaped, so 16 MiB. Beyond: -EFBIG. */
#define MAX_ERR_BODY (16u << 20)
/* Endpoints remembered as unreachable (net/health.h). */
#define HEALTH_MAX 64

static int probe_call(void *arg, const char *origin, volatile int *cancel);

/* An easy handle and the multi handle that drives it. */
struct handle {
	CURL *e;
	CURLM *m;
};

struct net_http {
	CURLSH *share;
	/* One lock per curl_lock_data kind; each protects that shared cache. */
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	/* Protects pool/npool: idle handles ready for reuse. */
	pthread_mutex_t pool_lock;
	struct handle *pool;
	size_t npool, pool_cap;
	char *ca_file;
	int insecure;
	int connect_timeout_ms;
	int max_conns;
	struct net_health *health; /* endpoints in back-off; locks itself */
	struct net_prober *prober; /* probes them in the background; locks itself */
	_Atomic uint64_t st_requests, st_retries, st_errors, st_bytes_in, st_bytes_out;
	_Atomic uint64_t st_fast_fails;
};

/* Protects the curl_global_init/cleanup reference count. */
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static int global_refs;
static atomic_int insecure_logged;
/* Server clock minus ours, in seconds, when they differ by a minute or more
 * (from the Date header of the latest response); SigV4 signs with it. */
static atomic_long clock_skew;

#define SKEW_MIN_S 60

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Thread-local splitmix64; jitter needs no cryptographic quality. */
static uint64_t rnd(void)
{
	static __thread uint64_t state;
	if (!state) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
			(uint64_t)(uintptr_t)&state;
	}
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void share_lock_cb(CURL *c, curl_lock_data data, curl_lock_access access, void *arg)
{
	net_http *h = arg;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->share_lock[data]);
}

static void share_unlock_cb(CURL *c, curl_lock_data data, void *arg)
{
	net_http *h = arg;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->share_lock[data]);
}

int net_http_new(const struct net_http_opts *opts, net_http **out)
{
	net_http *h = NULL;
	int ret = 0;

	*out = NULL;
	pthread_mutex_lock(&global_lock);
	if (global_refs == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		pthread_mutex_unlock(&global_lock);
		return -ENOMEM;
	}
	global_refs++;
	pthread_mutex_unlock(&global_lock);

	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->share_lock[i], NULL);
	pthread_mutex_init(&h->pool_lock, NULL);
	h->connect_timeout_ms =
	    opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000;
	h->max_conns = opts && opts->max_conns > 0 ? opts->max_conns : 32;
	h->insecure = opts ? opts->insecure : 0;
	if (opts && opts->ca_file && !(h->ca_file = strdup(opts->ca_file))) {
		ret = -ENOMEM;
		goto out;
	}
	h->share = curl_share_init();
	if (!h->share || net_health_new(HEALTH_MAX, &h->health) ||
	    net_prober_new(h->health, probe_call, h, opts && opts->defer_probes, &h->prober)) {
		ret = -ENOMEM;
		goto out;
	}
	curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock_cb);
	curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock_cb);
	curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	if (h->insecure && !atomic_exchange(&insecure_logged, 1))
		log_warn("TLS certificate verification is off (insecure was requested)");
	*out = h;
	h = NULL;
out:
	if (h)
		net_http_free(h);
	else if (ret) {
		pthread_mutex_lock(&global_lock);
		if (--global_refs == 0)
			curl_global_cleanup();
		pthread_mutex_unlock(&global_lock);
	}
	return ret;
}

void net_http_free(net_http *h)
{
	if (!h)
		return;
	net_prober_free(h->prober); /* first: its probe uses the handles */
	for (size_t i = 0; i < h->npool; i++) {
		curl_multi_cleanup(h->pool[i].m);
		curl_easy_cleanup(h->pool[i].e);
	}
	free(h->pool);
	if (h->share)
		curl_share_cleanup(h->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_lock[i]);
	pthread_mutex_destroy(&h->pool_lock);
	free(h->ca_file);
	net_health_free(h->health);
	free(h);
	pthread_mutex_lock(&global_lock);
	if (--global_refs == 0)
		curl_global_cleanup();
	pthread_mutex_unlock(&global_lock);
}

void net_buf_free(struct net_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int net_buf_append(struct net_buf *b, const void *data, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + len + 1)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

void net_http_start_probes(net_http *h) { net_prober_enable(h->prober); }

void net_http_get_stats(net_http *h, struct net_http_stats *out)
{
	out->requests = atomic_load(&h->st_requests);
	out->retries = atomic_load(&h->st_retries);
	out->errors = atomic_load(&h->st_errors);
	out->bytes_in = atomic_load(&h->st_bytes_in);
	out->bytes_out = atomic_load(&h->st_bytes_out);
	out->fast_fails = atomic_load(&h->st_fast_fails);
	out->hosts_down = net_health_down(h->health, now_ms());
}

static int pool_get(net_http *h, struct handle *out)
{
	int have = 0;
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool) {
		*out = h->pool[--h->npool];
		have = 1;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (have) {
		curl_easy_reset(out->e);
		return 0;
	}
	out->e = curl_easy_init();
	out->m = curl_multi_init();
	if (out->e && out->m) {
		/* Caps the shared connection cache when a transfer ends (the
		 * default, 4 per easy handle, would close pooled connections). */
		curl_multi_setopt(out->m, CURLMOPT_MAXCONNECTS, (long)h->max_conns);
		return 0;
	}
	curl_easy_cleanup(out->e);
	curl_multi_cleanup(out->m);
	return -ENOMEM;
}

static void pool_put(net_http *h, struct handle *hd)
{
	int kept = 0;
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool == h->pool_cap && h->pool_cap < 64) {
		size_t cap = h->pool_cap ? h->pool_cap * 2 : 8;
		struct handle *p = realloc(h->pool, cap * sizeof(*p));
		if (p) {
			h->pool = p;
			h->pool_cap = cap;
		}
	}
	if (h->npool < h->pool_cap) {
		h->pool[h->npool++] = *hd;
		kept = 1;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (!kept) {
		curl_multi_cleanup(hd->m);
		curl_easy_cleanup(hd->e);
	}
}

/* State of one net_http_do call, shared by the curl callbacks. */
struct xfer {
	const struct net_request *req;
	struct net_response *resp;
	uint64_t body_off;    /* next byte of the request body to send */
	uint64_t delivered;   /* bytes given to the sink over all attempts */
	uint64_t resume_from; /* bytes already delivered when this attempt began */
	long status;	      /* status line of the current response */
	int sink_mode;	      /* -1 undecided, 1 to sink, 0 collect */
	int sink_err, body_err;
	int cancelled, stalled, too_big;
	time_t server_date; /* Date header of the current response, 0 if none */
	curl_off_t last_bytes;
	int64_t last_progress;
	int stall_ms;
};

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	const struct net_request *r = x->req;
	size_t n = size * nmemb;

	if (x->body_off >= r->body_len)
		return 0;
	if (n > r->body_len - x->body_off)
		n = (size_t)(r->body_len - x->body_off);
	if (r->body_cb) {
		ssize_t got = r->body_cb(r->body_arg, dst, n, x->body_off);
		if (got < 0) {
			x->body_err = (int)got;
			return CURL_READFUNC_ABORT;
		}
		if (got == 0 && n > 0) {
			x->body_err = -EIO; /* body shorter than body_len */
			return CURL_READFUNC_ABORT;
		}
		n = (size_t)got;
	} else {
		memcpy(dst, (const char *)r->body + x->body_off, n);
	}
	x->body_off += n;
	return n;
}

static int seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct xfer *x = arg;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->req->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->body_off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static void copy_hval(char *dst, size_t dsz, const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	if (n >= dsz)
		n = dsz - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	if (n > 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (redirect, 100-continue): forget the previous one. */
		const char *sp = memchr(data, ' ', n);
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->resp->content_range[0] = '\0';
		x->resp->request_id[0] = '\0';
		x->server_date = 0;
		return n;
	}
	const char *colon = memchr(data, ':', n);
	if (!colon)
		return n;
	size_t nl = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	if (nl == 4 && strncasecmp(data, "Date", nl) == 0) {
		char d[64];
		copy_hval(d, sizeof(d), v, vl);
		time_t t = curl_getdate(d, NULL);
		x->server_date = t > 0 ? t : 0;
	} else if (nl == 13 && strncasecmp(data, "Content-Range", nl) == 0)
		copy_hval(x->resp->content_range, sizeof(x->resp->content_range), v, vl);
	else if ((nl == 16 && strncasecmp(data, "x-amzn-RequestId", nl) == 0) ||
		 (nl == 16 && strncasecmp(data, "x-amz-request-id", nl) == 0 &&
		  !x->resp->request_id[0]))
		copy_hval(x->resp->request_id, sizeof(x->resp->request_id), v, vl);
	return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	if (x->sink_mode < 0)
		x->sink_mode = x->req->sink && x->status >= 200 && x->status < 300;
	if (x->sink_mode) {
		int rc = x->req->sink(x->req->sink_arg, data, n);
		if (rc) {
			x->sink_err = rc < 0 ? rc : -EIO;
			return 0; /* CURLE_WRITE_ERROR */
		}
		x->delivered += n;
		return n;
	}
	if (x->resp->body.len + n > MAX_ERR_BODY) {
		x->too_big = 1;
		return 0;
	}
	if (net_buf_append(&x->resp->body, data, n)) {
		x->sink_err = -ENOMEM;
		return 0;
	}
	return n;
}

/* A cancel flag is set by another thread (FUSE INTERRUPT): read atomically. */
static int is_cancelled(volatile int *cancel)
{
	return cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED);
}

/* Cancel and stall checks, between polls. Returns 1 to abort the attempt. */
static int check_progress(struct xfer *x, CURL *c)
{
	curl_off_t dl = 0, ul = 0;
	int64_t t = now_ms();

	if (is_cancelled(x->req->cancel)) {
		x->cancelled = 1;
		return 1;
	}
	curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &dl);
	curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &ul);
	if (dl + ul != x->last_bytes) {
		x->last_bytes = dl + ul;
		x->last_progress = t;
	} else if (t - x->last_progress > x->stall_ms) {
		x->stalled = 1;
		return 1;
	}
	return 0;
}

/* Runs one attempt on hd: like curl_easy_perform, but wakes every POLL_MS
 * to check for a cancel or a stall. */
static CURLcode perform(struct handle *hd, struct xfer *x)
{
	CURLcode rc = CURLE_OK;
	int running = 1, queued;
	CURLMsg *msg;

	if (curl_multi_add_handle(hd->m, hd->e) != CURLM_OK)
		return CURLE_FAILED_INIT;
	for (;;) {
		if (curl_multi_perform(hd->m, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			goto out;
		}
		if (!running)
			break;
		if (check_progress(x, hd->e)) {
			rc = CURLE_ABORTED_BY_CALLBACK;
			goto out;
		}
		if (curl_multi_poll(hd->m, NULL, 0, POLL_MS, NULL) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			goto out;
		}
	}
	while ((msg = curl_multi_info_read(hd->m, &queued)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == hd->e)
			rc = msg->data.result;
out:
	/* Removing an unfinished transfer closes its connection. */
	curl_multi_remove_handle(hd->m, hd->e);
	return rc;
}

long net_http_clock_skew(void) { return atomic_load(&clock_skew); }

/* Updates the skew from a response's Date. Returns 1 when it moved by a
 * minute or more (signatures made before were made with a wrong clock). */
static int note_server_date(time_t server_date, const char *safe_url)
{
	if (server_date <= 0)
		return 0;
	long d = (long)(server_date - time(NULL));
	long skew = labs(d) >= SKEW_MIN_S ? d : 0;
	long old = atomic_exchange(&clock_skew, skew);
	if (labs(skew - old) < SKEW_MIN_S)
		return 0;
	if (skew)
		log_warn("the local clock is %ld s %s the server's (%s); signing with the "
			 "server's time. Check the clock (timedatectl, chrony)",
			 labs(skew), skew > 0 ? "behind" : "ahead of", safe_url);
	else
		log_info("the local clock agrees with the server's again (%s)", safe_url);
	return 1;
}

static int retryable_status(long s) { return s == 429 || (s >= 500 && s <= 599 && s != 501); }

/* Transport errors worth another attempt. */
static int retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_WEIRD_SERVER_REPLY:
		return 1;
	default:
		return 0;
	}
}

static int curl_errno(CURL *c, CURLcode rc)
{
	long oserr = 0;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
		if (oserr == ECONNREFUSED)
			return -ECONNREFUSED;
		if (oserr == EHOSTUNREACH || oserr == ENETUNREACH)
			return -EHOSTUNREACH;
		return -EIO;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* Sleeps up to ms, waking early when cancelled. Returns -EINTR if cancelled. */
static int backoff_sleep(int64_t ms, volatile int *cancel)
{
	while (ms > 0) {
		if (is_cancelled(cancel))
			return -EINTR;
		int64_t step = ms < 50 ? ms : 50;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return is_cancelled(cancel) ? -EINTR : 0;
}

/* Builds the header list of one attempt: fixed headers, signed headers,
 * Range. Returns NULL on allocation failure. */
static struct curl_slist *build_headers(const struct net_request *r, char **signed_hdrs,
					int nsigned, uint64_t range_start, uint64_t range_len)
{
	struct curl_slist *l = NULL, *t;
	char range[96];

#define ADD(s)                                                                                     \
	do {                                                                                       \
		t = curl_slist_append(l, (s));                                                     \
		if (!t)                                                                            \
			goto fail;                                                                 \
		l = t;                                                                             \
	} while (0)
	for (const char *const *p = r->headers; p && *p; p++)
		ADD(*p);
	for (int i = 0; i < nsigned; i++)
		ADD(signed_hdrs[i]);
	if (range_len) {
		snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
			 (unsigned long long)range_start,
			 (unsigned long long)(range_start + range_len - 1));
		ADD(range);
	}
	ADD("Expect:"); /* no 100-continue round trip */
#undef ADD
	return l;
fail:
	curl_slist_free_all(l);
	return NULL;
}

static void setup_easy(net_http *h, CURL *c, const struct net_request *r, struct xfer *x,
		       struct curl_slist *hl, int64_t remaining)
{
	int64_t ct = h->connect_timeout_ms < remaining ? h->connect_timeout_ms : remaining;

	curl_easy_setopt(c, CURLOPT_URL, r->url);
	curl_easy_setopt(c, CURLOPT_SHARE, h->share);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_MAXCONNECTS, (long)h->max_conns);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ecrfs/" ECRFS_VERSION);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(remaining > 0 ? remaining : 1));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(ct > 0 ? ct : 1));
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, h->insecure ? 0L : 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, h->insecure ? 0L : 2L);
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Larger buffers than curl's 16/64 KiB: fewer callbacks on layer
	 * downloads and part uploads (several MiB each). */
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 128L * 1024);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 128L * 1024);

	int has_body = r->body_len > 0 || r->body_cb;
	if (has_body) {
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, x);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
	}
	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		if (has_body) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		} else {
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
		}
	} else {
		if (has_body || strcmp(r->method, "PUT") == 0) {
			curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
			if (!has_body) {
				curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
				curl_easy_setopt(c, CURLOPT_READDATA, x);
			}
		}
		if (strcmp(r->method, "PUT") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
}

/* This thread's cancel flag for requests that carry none (see http.h). */
static __thread volatile int *thread_cancel;

void net_http_thread_cancel(volatile int *cancel) { thread_cancel = cancel; }

volatile int *net_http_thread_cancel_swap(volatile int *cancel)
{
	volatile int *old = thread_cancel;
	thread_cancel = cancel;
	return old;
}

/* One call with its attempts; *answered is set when any attempt got an HTTP
 * response or a byte (the endpoint is alive). */
static int http_call(net_http *h, const struct net_request *req_in, struct net_response *resp,
		     int *answered)
{
	struct net_request req_copy = *req_in;
	const struct net_request *req = &req_copy;
	if (!req_copy.cancel)
		req_copy.cancel = thread_cancel;
	struct xfer x;
	const int deadline_ms = req->deadline_ms > 0 ? req->deadline_ms : 30000;
	const int max_attempts = req->max_attempts > 0 ? req->max_attempts : 8;
	const int64_t start = now_ms(), deadline = start + deadline_ms;
	char safe_url[512];
	int ret = -EIO, have_resp = 0, skew_retried = 0;

	memset(resp, 0, sizeof(*resp));
	memset(&x, 0, sizeof(x));
	x.req = req;
	x.resp = resp;
	x.stall_ms = req->stall_ms > 0 ? req->stall_ms : 30000;
	if (!req->method || !req->url || (req->body_cb && req->body)) {
		ret = -EINVAL;
		goto out;
	}
	log_url_safe(req->url, safe_url, sizeof(safe_url));

	for (int attempt = 1;; attempt++) {
		char *shdrs[MAX_SIGN_HDRS] = {0};
		int nsigned = 0, retry = 0, err = 0;
		struct curl_slist *hl = NULL;
		struct handle hd;
		CURL *c;
		CURLcode rc;
		int64_t remaining = deadline - now_ms();

		if (is_cancelled(req->cancel)) {
			ret = -EINTR;
			goto out;
		}
		if (remaining <= 0) {
			ret = have_resp ? 0 : -ETIMEDOUT;
			goto out;
		}
		/* A fresh attempt: drop what the previous one collected. */
		net_buf_free(&resp->body);
		resp->status = 0;
		resp->content_range[0] = resp->request_id[0] = '\0';
		x.body_off = 0;
		x.status = 0;
		x.sink_mode = -1;
		x.sink_err = x.body_err = x.cancelled = x.stalled = x.too_big = 0;
		x.server_date = 0;
		x.last_bytes = 0;
		x.last_progress = now_ms();
		x.resume_from = x.delivered;
		have_resp = 0;
		resp->attempts = attempt;

		if (req->sign_cb) {
			nsigned = req->sign_cb(req->sign_arg, shdrs, MAX_SIGN_HDRS);
			if (nsigned < 0) {
				ret = nsigned;
				goto out;
			}
			if (nsigned > MAX_SIGN_HDRS)
				nsigned = MAX_SIGN_HDRS;
		}
		/* A ranged download that already delivered bytes resumes after them. */
		uint64_t rs = req->range_start + x.delivered;
		uint64_t rl = req->range_len ? req->range_len - x.delivered : 0;
		hl = build_headers(req, shdrs, nsigned, rs, rl);
		for (int i = 0; i < nsigned; i++) {
			explicit_bzero(shdrs[i], strlen(shdrs[i])); /* session token */
			free(shdrs[i]);
		}
		if (!hl || pool_get(h, &hd)) {
			curl_slist_free_all(hl);
			ret = -ENOMEM;
			goto out;
		}
		c = hd.e;
		setup_easy(h, c, req, &x, hl, remaining);
		atomic_fetch_add(&h->st_requests, 1);
		rc = perform(&hd, &x);

		curl_off_t din = 0, dout = 0;
		curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &din);
		curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &dout);
		atomic_fetch_add(&h->st_bytes_in, (uint64_t)(din > 0 ? din : 0));
		atomic_fetch_add(&h->st_bytes_out, (uint64_t)(dout > 0 ? dout : 0));
		if (din > 0)
			*answered = 1;

		if (rc == CURLE_OK) {
			long status = 0;
			curl_off_t cl = -1;
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
			curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
			resp->status = status;
			resp->content_length = cl > 0 ? (uint64_t)cl : 0;
			have_resp = *answered = 1;
			log_debug("http %s %s -> %ld (attempt %d)", req->method, safe_url, status,
				  attempt);
			int skew_moved = note_server_date(x.server_date, safe_url);
			if (retryable_status(status)) {
				retry = 1;
			} else if (skew_moved && req->sign_cb && !skew_retried &&
				   (status == 400 || status == 401 || status == 403)) {
				/* Rejected while our clock was off: sign again with the
				 * server's time, once. */
				retry = skew_retried = 1;
			} else if (x.resume_from && status >= 200 && status < 300 &&
				   status != 206) {
				/* A resumed range answered with the whole body: the
				 * sink already has the first bytes, so give up. */
				err = -EIO;
			} else if (req->retry_cb && x.sink_mode != 1 &&
				   req->retry_cb(req->retry_arg, status, &resp->body) == 1) {
				retry = 1;
			}
		} else if (x.cancelled) {
			err = -EINTR;
		} else if (x.sink_err) {
			err = x.sink_err;
		} else if (x.body_err) {
			err = x.body_err;
		} else if (x.too_big) {
			err = -EFBIG;
		} else {
			log_debug("http %s %s: %s%s (attempt %d)", req->method, safe_url,
				  x.stalled ? "stalled, " : "", curl_easy_strerror(rc), attempt);
			if (rc == CURLE_OPERATION_TIMEDOUT && now_ms() >= deadline - 5) {
				err = -ETIMEDOUT; /* the whole call's deadline, not a connect
						     timeout */
			} else if (x.stalled || retryable_curl(rc)) {
				retry = 1;
				ret = x.stalled ? -ETIMEDOUT : curl_errno(c, rc);
			} else {
				err = curl_errno(c, rc);
				log_warn("http %s %s: %s", req->method, safe_url,
					 curl_easy_strerror(rc));
			}
		}
		if (!retry && !err && rc == CURLE_OK) {
			ret = 0;
			pool_put(h, &hd);
			curl_slist_free_all(hl);
			goto out;
		}
		pool_put(h, &hd);
		curl_slist_free_all(hl);
		if (err) {
			ret = err;
			goto out;
		}
		/* Retry: a streamed body without a range cannot resume. */
		if (x.delivered && !req->range_len) {
			ret = -EIO;
			goto out;
		}
		if (attempt >= max_attempts) {
			ret = have_resp ? 0 : ret;
			if (!have_resp)
				log_warn("http %s %s: giving up after %d attempts", req->method,
					 safe_url, attempt);
			goto out;
		}
		int exp = attempt - 1 < 16 ? attempt - 1 : 16;
		int64_t ceiling = (int64_t)BACKOFF_BASE_MS << exp;
		if (ceiling > BACKOFF_CAP_MS)
			ceiling = BACKOFF_CAP_MS;
		int64_t sleep = (int64_t)(rnd() % (uint64_t)(ceiling + 1));
		if (now_ms() + sleep >= deadline) {
			/* No time for another attempt: keep what we have. */
			ret = have_resp ? 0 : -ETIMEDOUT;
			goto out;
		}
		resp->retries++;
		atomic_fetch_add(&h->st_retries, 1);
		log_debug("http %s %s: retry %d in %lld ms (status %ld)", req->method, safe_url,
			  attempt, (long long)sleep, resp->status);
		if (backoff_sleep(sleep, req->cancel)) {
			ret = -EINTR;
			goto out;
		}
	}
out:
	if (ret < 0)
		atomic_fetch_add(&h->st_errors, 1);
	return ret;
}

/* What a call's outcome says of its endpoint: an answer of any kind means
 * alive; a timeout or a refused connection with no answer means down. */
static enum net_health_outcome health_outcome(int rc, int answered)
{
	if (answered)
		return NET_HEALTH_UP;
	if (rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EHOSTUNREACH)
		return NET_HEALTH_DOWN;
	return NET_HEALTH_NONE; /* cancelled, or a local error */
}

/* A background probe (net/health_probe.h): GET of the origin, one short
 * attempt, no credentials; 1 when anything HTTP answered. */
static int probe_call(void *arg, const char *origin, volatile int *cancel)
{
	struct net_request req = {.method = "GET", .url = origin,
				  .deadline_ms = NET_PROBE_TIMEOUT_MS,
				  .stall_ms = NET_PROBE_TIMEOUT_MS, .max_attempts = 1,
				  .cancel = cancel};
	struct net_response resp;
	int answered = 0;

	http_call(arg, &req, &resp, &answered);
	net_buf_free(&resp.body);
	return answered;
}

/* The call, unless its endpoint is in back-off (DESIGN §11: a registry that
 * stops answering costs one deadline, not one per call). A call failed at
 * once makes no attempt (resp->attempts 0) and returns -EHOSTUNREACH. */
int net_http_do(net_http *h, const struct net_request *req, struct net_response *resp)
{
	char key[280];
	int answered = 0, how = NET_HEALTH_GO, rc, changed;
	int keyed = req->url && net_health_key(req->url, key, sizeof key) == 0;

	if (keyed && (how = net_health_admit(h->health, key, now_ms())) < 0) {
		memset(resp, 0, sizeof(*resp));
		atomic_fetch_add(&h->st_fast_fails, 1);
		atomic_fetch_add(&h->st_errors, 1);
		log_debug("http %s %s: in back-off, failed at once", req->method, key);
		return -EHOSTUNREACH;
	}
	rc = http_call(h, req, resp, &answered);
	if (!keyed)
		return rc;
	changed = net_health_report(h->health, key, how, health_outcome(rc, answered), now_ms());
	if (changed > 0 && net_health_set_origin(h->health, key, req->url, now_ms()) == 0)
		net_prober_kick(h->prober);
	if (changed > 0)
		log_warn("%s does not answer (%s): calls to it fail at once for %d s, "
			 "cached data is served",
			 key, strerror(-rc), changed / 1000);
	else if (changed < 0)
		log_info("%s answers again", key);
	return rc;
}
