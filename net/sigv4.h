/* AWS Signature Version 4 over OpenSSL (HMAC-SHA256). */
#ifndef ECRFS_SIGV4_H
#define ECRFS_SIGV4_H

#include <stddef.h>
#include <time.h>

struct sigv4_header {
	const char *name;  /* as sent; canonicalised (lowercase, trimmed) inside */
	const char *value;
};

struct sigv4_request {
	const char *method;      /* "POST" */
	const char *path;        /* raw path as sent, e.g. "/" ; query separate */
	const char *query;       /* raw query string without '?', or NULL */
	const struct sigv4_header *headers; /* must include host; x-amz-date is added by caller */
	size_t nheaders;
	const char *payload_sha256_hex; /* hex sha256 of body ("UNSIGNED-PAYLOAD" allowed) */
};

struct sigv4_creds {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token; /* NULL when none; caller sends X-Amz-Security-Token */
};

/* Writes the Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=...") into out. amz_date is "YYYYMMDDTHHMMSSZ".
 * service is "ecr" or "sts". When canonical_out/sts_out are non-NULL they get
 * malloc'd copies of the canonical request and string-to-sign (tests).
 * Returns 0 or -errno (-ENOSPC when out is too small). */
int sigv4_sign(const struct sigv4_request *req, const struct sigv4_creds *creds,
	       const char *region, const char *service, const char *amz_date, char *out,
	       size_t outsize, char **canonical_out, char **sts_out);

/* Formats t as "YYYYMMDDTHHMMSSZ" (UTC) into buf[17]. */
void sigv4_amz_date(time_t t, char buf[17]);

/* hex sha256 of data into hex[65]. */
void sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
