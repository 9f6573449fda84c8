/* Digests as text (see digest.h). */
#include "net/digest.h"

#include <string.h>

#include <openssl/sha.h>

void net_hex(const unsigned char *md, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * n] = '\0';
}

void net_digest_of_md(const unsigned char md[32], char out[NET_DIGEST_LEN])
{
	memcpy(out, "sha256:", 7);
	net_hex(md, 32, out + 7);
}

void net_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	net_hex(md, sizeof(md), out);
}

void net_sha256_digest(const void *data, size_t len, char out[NET_DIGEST_LEN])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	net_digest_of_md(md, out);
}
