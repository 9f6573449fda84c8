/* A tiny threaded HTTP/1.1 server on 127.0.0.1 for unit tests of net/
 * (test_http.c, test_cred.c). One thread accepts, one thread per
 * connection; keep-alive; the test's handler decides each reply, or to
 * reset the connection, hang, or send a truncated body. Every request is
 * recorded for assertions. Header-only: include it in one test file. */
#ifndef ECRFS_TEST_FAKESRV_H
#define ECRFS_TEST_FAKESRV_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAKE_MAX_REQS 256
#define FAKE_MAX_CONNS 256

enum fake_action { FAKE_REPLY = 0, FAKE_RESET, FAKE_HANG, FAKE_TRUNCATE };

struct fake_req {
	char method[16];
	char target[2048];  /* path and query as sent */
	char headers[8192]; /* raw header block */
	char *body;
	size_t body_len;
	int conn; /* connection number */
};

struct fake_resp {
	int status;
	char headers[2048]; /* extra "Name: value\r\n" lines */
	char body[65536];
	size_t body_len; /* 0: strlen(body) */
	enum fake_action action;
	size_t truncate_at; /* FAKE_TRUNCATE: bytes of body sent before closing */
};

struct fakesrv;
/* n is the 0-based number of this request since the server started. */
typedef void (*fake_handler)(struct fakesrv *s, const struct fake_req *rq, int n,
			     struct fake_resp *rs);

struct fakesrv {
	int lfd, port;
	pthread_t acceptor;
	atomic_int stop; /* set by the test thread, read by the server threads */
	fake_handler handler;
	void *arg;
	/* Protects reqs, nreq, conns, nconn and conn_thr. */
	pthread_mutex_t lock;
	struct fake_req reqs[FAKE_MAX_REQS];
	int nreq;
	int conns[FAKE_MAX_CONNS];
	pthread_t conn_thr[FAKE_MAX_CONNS];
	int nconn;
};

struct fake_conn_arg {
	struct fakesrv *s;
	int fd, idx;
};

/* Finds a header's value in a raw header block (case-insensitive name). */
static inline int fake_header(const char *block, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	for (const char *p = block; p && *p;) {
		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			size_t l = strcspn(v, "\r\n");
			if (l >= n)
				l = n - 1;
			memcpy(out, v, l);
			out[l] = '\0';
			return 1;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static int fake_send_all(int fd, const char *d, size_t n)
{
	while (n) {
		ssize_t w = send(fd, d, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		d += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Waits for readable data or stop. Returns 1 readable, 0 stopped, -1 error. */
static int fake_wait(struct fakesrv *s, int fd)
{
	while (!s->stop) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, 50);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
	return 0;
}

static void *fake_conn_main(void *arg)
{
	struct fake_conn_arg *ca = arg;
	struct fakesrv *s = ca->s;
	int fd = ca->fd;
	char *buf = malloc(1 << 16);
	size_t len = 0;
	struct fake_resp *rs = malloc(sizeof(*rs));
	free(ca);

	for (;;) {
		char *end;
		/* Read a header block. */
		while (!(buf[len] = '\0', end = strstr(buf, "\r\n\r\n"))) {
			if (len >= (1 << 16) - 1 || fake_wait(s, fd) <= 0)
				goto done;
			ssize_t r = recv(fd, buf + len, (1 << 16) - 1 - len, 0);
			if (r <= 0)
				goto done;
			len += (size_t)r;
		}
		struct fake_req rq;
		memset(&rq, 0, sizeof(rq));
		size_t hlen = (size_t)(end - buf) + 4;
		sscanf(buf, "%15s %2047s", rq.method, rq.target);
		const char *hstart = strstr(buf, "\r\n") + 2;
		size_t hb = (size_t)(end + 2 - hstart);
		if (hb >= sizeof(rq.headers))
			hb = sizeof(rq.headers) - 1;
		memcpy(rq.headers, hstart, hb);
		char cl[32];
		size_t blen = fake_header(rq.headers, "Content-Length", cl, sizeof(cl))
				  ? strtoul(cl, NULL, 10)
				  : 0;
		rq.body = malloc(blen + 1);
		size_t have = len - hlen < blen ? len - hlen : blen;
		memcpy(rq.body, buf + hlen, have);
		while (have < blen) {
			if (fake_wait(s, fd) <= 0) {
				free(rq.body);
				goto done;
			}
			ssize_t r = recv(fd, rq.body + have, blen - have, 0);
			if (r <= 0) {
				free(rq.body);
				goto done;
			}
			have += (size_t)r;
		}
		rq.body[blen] = '\0';
		rq.body_len = blen;
		size_t used = hlen + (len - hlen < blen ? len - hlen : blen);
		memmove(buf, buf + used, len - used);
		len -= used;

		pthread_mutex_lock(&s->lock);
		int n = s->nreq;
		rq.conn = -1;
		for (int i = 0; i < s->nconn; i++)
			if (s->conns[i] == fd)
				rq.conn = i;
		if (s->nreq < FAKE_MAX_REQS)
			s->reqs[s->nreq++] = rq;
		else
			free(rq.body);
		pthread_mutex_unlock(&s->lock);

		memset(rs, 0, sizeof(*rs));
		rs->status = 200;
		s->handler(s, &s->reqs[n < FAKE_MAX_REQS ? n : FAKE_MAX_REQS - 1], n, rs);
		if (rs->action == FAKE_RESET) {
			struct linger lg = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			goto done;
		}
		if (rs->action == FAKE_HANG) {
			while (fake_wait(s, fd) > 0) {
				char tmp[512];
				if (recv(fd, tmp, sizeof(tmp), 0) <= 0)
					break;
			}
			goto done;
		}
		size_t bl = rs->body_len ? rs->body_len : strlen(rs->body);
		char head[4096];
		int hl =
		    snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n",
			     rs->status, bl, rs->headers);
		if (fake_send_all(fd, head, (size_t)hl))
			goto done;
		if (strcmp(rq.method, "HEAD") == 0)
			continue;
		if (rs->action == FAKE_TRUNCATE) {
			fake_send_all(fd, rs->body, rs->truncate_at < bl ? rs->truncate_at : bl);
			goto done;
		}
		if (fake_send_all(fd, rs->body, bl))
			goto done;
	}
done:
	shutdown(fd, SHUT_RDWR);
	free(buf);
	free(rs);
	return NULL;
}

static void *fake_accept_main(void *arg)
{
	struct fakesrv *s = arg;
	while (fake_wait(s, s->lfd) > 0) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&s->lock);
		if (s->nconn == FAKE_MAX_CONNS) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			continue;
		}
		struct fake_conn_arg *ca = malloc(sizeof(*ca));
		ca->s = s;
		ca->fd = fd;
		ca->idx = s->nconn;
		s->conns[s->nconn] = fd;
		pthread_create(&s->conn_thr[s->nconn], NULL, fake_conn_main, ca);
		s->nconn++;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static inline int fakesrv_start(struct fakesrv *s, fake_handler h, void *arg)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	memset(s, 0, sizeof(*s));
	s->handler = h;
	s->arg = arg;
	pthread_mutex_init(&s->lock, NULL);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 64) ||
	    getsockname(s->lfd, (struct sockaddr *)&a, &al))
		return -1;
	s->port = ntohs(a.sin_port);
	return pthread_create(&s->acceptor, NULL, fake_accept_main, s) ? -1 : 0;
}

static inline void fakesrv_stop(struct fakesrv *s)
{
	s->stop = 1;
	pthread_join(s->acceptor, NULL);
	close(s->lfd);
	for (int i = 0; i < s->nconn; i++) {
		pthread_join(s->conn_thr[i], NULL);
		close(s->conns[i]);
	}
	for (int i = 0; i < s->nreq; i++)
		free(s->reqs[i].body);
	pthread_mutex_destroy(&s->lock);
}

static inline int fakesrv_nreq(struct fakesrv *s)
{
	pthread_mutex_lock(&s->lock);
	int n = s->nreq;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static inline int fakesrv_nconn(struct fakesrv *s)
{
	pthread_mutex_lock(&s->lock);
	int n = s->nconn;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Forgets recorded requests (between sub-tests sharing a server). */
static inline void fakesrv_clear(struct fakesrv *s)
{
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->nreq; i++)
		free(s->reqs[i].body);
	s->nreq = 0;
	pthread_mutex_unlock(&s->lock);
}

/* Test traffic goes to 127.0.0.1 directly, whatever proxy the host has. */
static inline void fakesrv_no_proxy(void)
{
	static const char *const proxies[] = {"http_proxy",  "https_proxy", "HTTP_PROXY",
					      "HTTPS_PROXY", "ALL_PROXY",   "all_proxy",
					      NULL};
	for (int i = 0; proxies[i]; i++)
		unsetenv(proxies[i]);
}

#endif
