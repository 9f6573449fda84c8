/* A scripted fake ECR transport for the unit tests of net/ecr*.c: each
 * call's X-Amz-Target and parsed body are recorded, f->reply() decides
 * the answer. Header-only: include it in one test file. */
#ifndef ECRFS_TEST_FAKE_ECR_H
#define ECRFS_TEST_FAKE_ECR_H

#include <errno.h>
#include <openssl/sha.h>

#include "check.h"
#include "net/aws_sign.h"
#include "net/ecr_i.h"

#define MAX_CALLS 64

struct fake {
	int ncalls;
	char *targets[MAX_CALLS];  /* X-Amz-Target of each call */
	json_t *bodies[MAX_CALLS]; /* parsed request bodies */
	/* reply producer */
	int (*reply)(struct fake *f, int i, const json_t *req, long *status, char **body);
	int hash_mismatch; /* a streamed body whose sha256 != signed payload hash */
	size_t max_body;
	int attempts; /* reported per call, 0: 1 */
	void *ctx;
};

static int fake_transport(void *arg, const struct net_request *req, struct net_response *resp)
{
	struct fake *f = arg;
	const struct aws_sign_ctx *sc = req->sign_arg;
	char *data = malloc(req->body_len + 1);
	size_t got = 0;
	long status = 200;
	char *reply = NULL;
	int i = f->ncalls++;

	memset(resp, 0, sizeof(*resp));
	if (i >= MAX_CALLS || !data)
		abort();
	/* Read the body the way curl does: odd chunk sizes, a restart at 0
	 * (a retry) halfway through the first pass. */
	if (req->body_cb) {
		size_t chunk = 1;
		while (got < req->body_len / 2) {
			ssize_t n = req->body_cb(req->body_arg, data + got, chunk, got);
			if (n <= 0)
				abort();
			got += (size_t)n;
			chunk = chunk * 3 + 1;
			if (chunk > 70000)
				chunk = 4093;
		}
		got = 0;
		while (got < req->body_len) {
			size_t want = req->body_len - got < 16384 ? req->body_len - got : 16384;
			ssize_t n = req->body_cb(req->body_arg, data + got, want, got);
			if (n <= 0)
				abort();
			got += (size_t)n;
		}
		if (req->body_cb(req->body_arg, data, 10, got) != 0)
			abort(); /* the end */
	} else {
		memcpy(data, req->body, req->body_len);
		got = req->body_len;
	}
	data[got] = '\0';
	if (got > f->max_body)
		f->max_body = got;
	/* The payload hash that is signed must be the sha256 of what is sent. */
	{
		unsigned char h[32];
		char hex[65];
		SHA256((unsigned char *)data, got, h);
		for (int k = 0; k < 32; k++)
			sprintf(hex + 2 * k, "%02x", h[k]);
		if (!sc || strcmp(sc->payload_hash, hex) != 0)
			f->hash_mismatch++;
	}
	for (const char *const *h = req->headers; h && *h; h++)
		if (strncmp(*h, "X-Amz-Target: ", 14) == 0)
			f->targets[i] = strdup(*h + 14);
	f->bodies[i] = json_loadb(data, got, 0, NULL);
	free(data);
	int rr = f->reply(f, i, f->bodies[i], &status, &reply);
	if (rr)
		return rr < 0 ? rr : -EIO;
	resp->status = status;
	resp->attempts = f->attempts ? f->attempts : 1;
	if (reply)
		net_buf_append(&resp->body, reply, strlen(reply));
	free(reply);
	return 0;
}

static void fake_reset(struct fake *f)
{
	for (int i = 0; i < f->ncalls && i < MAX_CALLS; i++) {
		free(f->targets[i]);
		json_decref(f->bodies[i]);
	}
	memset(f, 0, sizeof(*f));
}

static ecr *new_ecr(struct fake *f)
{
	struct ecr_opts o = {.endpoint = "http://127.0.0.1:9/"};
	ecr *e = NULL;

	if (ecr_new(&o, &e))
		abort();
	e->transport = fake_transport;
	e->transport_arg = f;
	return e;
}

#endif
