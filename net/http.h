/* HTTP over libcurl: connection reuse (a pool of easy handles sharing a
 * connection cache), TLS verification on (ca_file for tests), per-call
 * deadline, retries with jittered exponential backoff for transport errors,
 * 429 and 5xx (the caller decides for 4xx bodies through retry_cb). */
#ifndef ECRFS_HTTP_H
#define ECRFS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct net_http net_http;

struct net_http_opts {
	const char *ca_file;   /* NULL: system store */
	int insecure;          /* 1 only when the user asked (-o insecure); logged */
	int connect_timeout_ms;/* 0: 5000 */
	int max_conns;         /* connection cache size, 0: 32 */
	int defer_probes;      /* 1: no background probe thread before
	                          net_http_start_probes (a process that forks) */
};

int net_http_new(const struct net_http_opts *opts, net_http **out);
void net_http_free(net_http *h);
/* Lets the background probe of endpoints in back-off (net/health_probe.h)
 * start its thread, when defer_probes was set. */
void net_http_start_probes(net_http *h);

struct net_buf {
	char *data; /* NUL-terminated for convenience; len excludes the NUL */
	size_t len;
	size_t cap;
};
void net_buf_free(struct net_buf *b);
int net_buf_append(struct net_buf *b, const void *data, size_t len);

/* Body supplier for streaming uploads: copy up to n bytes at offset off of
 * the body into dst, return bytes written (0 at end) or -errno. Must be
 * restartable at off=0 (retries). */
typedef ssize_t (*net_body_cb)(void *arg, char *dst, size_t n, uint64_t off);
/* Response sink; return 0 to go on or -errno to abort the transfer. */
typedef int (*net_sink_cb)(void *arg, const char *data, size_t n);
/* Called before each attempt (SigV4 signs here: the date changes). It may
 * set extra headers into hdrs (array of "Name: value" strings, up to maxh),
 * returns the count or -errno. Each string is malloc'd by the callback and
 * freed by net_http_do (net/aws_sign.h's aws_sign_cb is the usual one). */
typedef int (*net_sign_cb)(void *arg, char **hdrs, int maxh);
/* After a complete response: return 1 to retry (e.g. ThrottlingException in
 * a 400 body), 0 to accept. */
typedef int (*net_retry_cb)(void *arg, long status, const struct net_buf *body);

struct net_request {
	const char *method;             /* "GET", "POST", "PUT" */
	const char *url;
	const char *const *headers;     /* fixed "Name: value" headers, NULL-terminated */
	const void *body;               /* either body/body_len ... */
	size_t body_len;
	net_body_cb body_cb;            /* ... or a streaming body of body_len bytes */
	void *body_arg;
	net_sign_cb sign_cb;
	void *sign_arg;
	net_retry_cb retry_cb;
	void *retry_arg;
	net_sink_cb sink;               /* NULL: collect into resp->body (<= 16 MiB, else -EFBIG) */
	void *sink_arg;
	uint64_t range_start, range_len;/* range_len>0: "Range: bytes=start-(start+len-1)" */
	int deadline_ms;                /* whole call incl. retries; 0: 30000 */
	int stall_ms;                   /* abort an attempt with no progress for this long, 0: 30000 */
	int max_attempts;               /* 0: 8 */
	volatile int *cancel;           /* non-NULL: abort soon when *cancel becomes non-zero */
};

struct net_response {
	long status;                    /* 0 when no HTTP response */
	struct net_buf body;
	char content_range[128];
	char request_id[128];
	uint64_t content_length;
	int attempts;
	int retries;
};

/* Performs the request. Returns 0 when an HTTP response was received (any
 * status; retries exhausted leave the last one), -ETIMEDOUT when the deadline
 * passed, -EINTR when cancelled, -EIO for transport failures after retries,
 * -ECONNREFUSED/-EHOSTUNREACH kept as such. Caller frees resp->body.
 * After a timeout or a refused connection with no answer, the endpoint
 * (host:port) is in back-off (net/health.h): calls to it return
 * -EHOSTUNREACH at once, with resp->attempts 0, until one call tries it
 * again after the back-off and it answers. */
int net_http_do(net_http *h, const struct net_request *req, struct net_response *resp);

/* Sets the cancel flag used by the requests this thread makes whose
 * net_request has none, until cleared with NULL: fs/ sets it around the
 * network part of a FUSE request so that an INTERRUPT (Ctrl-C of ls) aborts
 * the listing calls made deep inside the ECR client. */
void net_http_thread_cancel(volatile int *cancel);
/* Sets the flag and returns the previous one: work shared with other
 * threads (a credential refresh, a census) runs with NULL so that one
 * caller's INTERRUPT does not fail it for everyone. */
volatile int *net_http_thread_cancel_swap(volatile int *cancel);

/* Counters for .ecrfs/stats */
struct net_http_stats {
	uint64_t requests, retries, errors, bytes_in, bytes_out;
	uint64_t fast_fails; /* calls failed at once: endpoint in back-off */
	uint64_t hosts_down; /* endpoints in back-off now (net/health.h) */
};
void net_http_get_stats(net_http *h, struct net_http_stats *out);

/* Seconds to add to the local clock to get the servers' (from the Date of
 * the latest response; 0 while they agree within a minute). SigV4 signing
 * (net/aws_sign.c) uses it, and a signed request rejected with 400/401/403
 * right when the skew was learnt is retried once, like the AWS SDKs'
 * clock-skew correction. */
long net_http_clock_skew(void);

#endif
