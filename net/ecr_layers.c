/* Layer download: GetDownloadUrlForLayer and ranged GETs of the presigned
 * URL (not signed by us: the URL carries its own signature). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/ecr_i.h"
#include "net/log.h"

/* Finds "name=" among the query parameters of url; returns its value span. */
static const char *query_param(const char *url, const char *name, size_t *len)
{
	const char *q = strchr(url, '?');
	size_t nl = strlen(name);

	while (q) {
		q++;
		if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
			q += nl + 1;
			*len = strcspn(q, "&#");
			return q;
		}
		q = strchr(q, '&');
	}
	return NULL;
}

time_t ecr_url_expiry(const char *url, time_t now)
{
	const char *v;
	size_t n;
	char buf[32];
	time_t base = now;

	/* SigV4 presign: X-Amz-Date=YYYYMMDDTHHMMSSZ & X-Amz-Expires=seconds. */
	v = query_param(url, "X-Amz-Date", &n);
	if (v && n == 16) {
		struct tm tm = {0};
		snprintf(buf, sizeof(buf), "%.*s", (int)n, v);
		if (strptime(buf, "%Y%m%dT%H%M%SZ", &tm))
			base = timegm(&tm);
	}
	v = query_param(url, "X-Amz-Expires", &n);
	if (v && n && n < 12) {
		long secs;
		snprintf(buf, sizeof(buf), "%.*s", (int)n, v);
		secs = strtol(buf, NULL, 10);
		/* Re-request a little early: a request in flight must not
		 * cross the expiry. */
		if (secs > 0)
			return base + secs - (secs > 120 ? 60 : secs / 2);
	}
	/* SigV2 style: Expires=epoch. */
	v = query_param(url, "Expires", &n);
	if (v && n && n < 12) {
		snprintf(buf, sizeof(buf), "%.*s", (int)n, v);
		return (time_t)strtoll(buf, NULL, 10) - 30;
	}
	return now + 600;
}

int ecr_get_download_url(ecr *e, const struct ecr_where *w, const char *digest, char **url_out,
			 time_t *expires_out, struct ecr_error *err)
{
	struct ecr_call c = {
	    .op = "GetDownloadUrlForLayer", .region = w->region, .w = w, .subject = digest};
	int rc;

	*url_out = NULL;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		json_decref(c.req);
		return -ENOMEM;
	}
	json_object_set_new(c.req, "layerDigest", json_string(digest));
	rc = ecr_call_string(e, &c, "downloadUrl", url_out, NULL, err);
	if (rc == 0 && expires_out)
		*expires_out = ecr_url_expiry(*url_out, time(NULL));
	return rc;
}

/* Wraps the caller's sink: checks every response's Content-Range against
 * the bytes asked for before passing data on, and counts what was given. */
struct range_sink {
	net_sink_cb sink;
	void *arg;
	const struct net_response *resp; /* filled by net/http as headers arrive */
	uint64_t off, len;		 /* len 0: to the end */
	uint64_t delivered;
	uint64_t total;	   /* from Content-Range, 0 unknown */
	char seen_cr[128]; /* Content-Range of the response in progress */
	int checked;
};

/* Parses "bytes A-B/T" (T may be '*'). */
static int parse_content_range(const char *cr, uint64_t *a, uint64_t *b, uint64_t *t)
{
	unsigned long long x, y, z = 0;
	if (sscanf(cr, "bytes %llu-%llu/%llu", &x, &y, &z) < 2 || y < x)
		return -1;
	*a = x;
	*b = y;
	*t = z;
	return 0;
}

static int range_sink_cb(void *arg, const char *data, size_t n)
{
	struct range_sink *rs = arg;
	const char *cr = rs->resp->content_range;

	if (!rs->checked || strcmp(cr, rs->seen_cr) != 0) {
		/* A new response (first attempt or a resumed one). */
		uint64_t a, b, t;
		snprintf(rs->seen_cr, sizeof(rs->seen_cr), "%s", cr);
		rs->checked = 1;
		if (*cr) {
			if (parse_content_range(cr, &a, &b, &t) || a != rs->off + rs->delivered ||
			    (rs->len && b > rs->off + rs->len - 1)) {
				log_err("layer download: unexpected Content-Range '%s' for bytes "
					"%" PRIu64 "+%" PRIu64,
					cr, rs->off + rs->delivered, rs->len);
				return -EIO;
			}
			rs->total = t;
		} else if (rs->off + rs->delivered != 0) {
			/* The server ignored Range: these bytes start at 0. */
			log_err("layer download: server ignored the Range request");
			return -EIO;
		}
	}
	size_t give = n;
	if (rs->len && rs->delivered + n > rs->len)
		give = (size_t)(rs->len - rs->delivered); /* a 200 with the whole blob */
	if (give) {
		int rc = rs->sink(rs->arg, data, give);
		if (rc)
			return rc;
	}
	rs->delivered += give;
	if (give < n)
		return -ECANCELED; /* all asked for is here: stop the longer body */
	return 0;
}

/* A fixed 30 s cannot move a big blob over a slow link: the deadline grows
 * with the size asked (at least 1 MiB/s), and an open-ended fetch relies
 * on net/http's "no progress for 30 s" stall check. */
static int fetch_deadline_ms(const ecr *e, uint64_t len)
{
	uint64_t ms;

	if (!len)
		return 6 * 3600 * 1000;
	ms = (uint64_t)e->deadline_ms + len / 1024 / 1024 * 1000;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int ecr_fetch_url_range(ecr *e, const char *url, uint64_t off, uint64_t len, net_sink_cb sink,
			void *sink_arg, volatile int *cancel)
{
	struct net_response resp;
	struct range_sink rs = {
	    .sink = sink, .arg = sink_arg, .resp = &resp, .off = off, .len = len};
	char safe[512];
	int rc;

	memset(&resp, 0, sizeof(resp));
	/* Open-ended ranges are sent with a far end the server clamps (RFC 9110),
	 * so net/http can resume them after a cut connection. */
	struct net_request req = {
	    .method = "GET",
	    .url = url,
	    .sink = range_sink_cb,
	    .sink_arg = &rs,
	    .range_start = off,
	    .range_len = len ? len : (UINT64_C(1) << 53) - off,
	    .deadline_ms = fetch_deadline_ms(e, len),
	    .cancel = cancel,
	};
	log_url_safe(url, safe, sizeof(safe));
	rc = e->transport(e->transport_arg, &req, &resp);
	if (rc == -ECANCELED && len && rs.delivered == len)
		rc = 0;
	if (rc < 0) {
		/* ENOSPC: the caller's sink stopped (a full cache, logged there). */
		if (rc != -EINTR && rc != -ENOSPC)
			log_err("layer download %s bytes %" PRIu64 "+%" PRIu64 ": %s", safe, off,
				len, strerror(-rc));
		goto out;
	}
	if (resp.status == 403) {
		/* Presigned URLs expire: the caller asks ECR for a new one. */
		log_info("layer download %s: URL expired or refused (403); re-requesting it", safe);
		rc = -EKEYEXPIRED;
		goto out;
	}
	if (resp.status == 404) {
		log_err("layer download %s: not found (404)", safe);
		rc = -ENOENT;
		goto out;
	}
	if (resp.status != 200 && resp.status != 206) {
		log_err("layer download %s: HTTP %ld", safe, resp.status);
		rc = -EIO;
		goto out;
	}
	if (len && rs.delivered != len) {
		log_err("layer download %s: short body: %" PRIu64 " of %" PRIu64 " bytes", safe,
			rs.delivered, len);
		rc = -EIO;
		goto out;
	}
	if (!len && rs.total && rs.delivered != rs.total - off) {
		log_err("layer download %s: short body: %" PRIu64 " of %" PRIu64 " bytes", safe,
			rs.delivered, rs.total - off);
		rc = -EIO;
		goto out;
	}
	if (!len && !rs.total && resp.content_length && resp.status == 200 &&
	    rs.delivered != resp.content_length) {
		rc = -EIO;
		goto out;
	}
out:
	ecr_stats_add(e, "DownloadLayer", rc != 0, resp.retries, rs.delivered, 0);
	net_buf_free(&resp.body);
	return rc;
}
