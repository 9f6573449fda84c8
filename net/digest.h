/* Digests as text: lowercase hex, and "sha256:<hex>" as OCI and ECR name
 * blobs and images. The one encoder of the project (OpenSSL underneath). */
#ifndef ECRFS_NET_DIGEST_H
#define ECRFS_NET_DIGEST_H

#include <stddef.h>

#define NET_DIGEST_LEN 72 /* "sha256:" + 64 hex + NUL */

/* n bytes of md as 2n lowercase hex digits and a NUL into out. */
void net_hex(const unsigned char *md, size_t n, char *out);

/* A finished SHA-256 (32 bytes) as "sha256:<hex>". */
void net_digest_of_md(const unsigned char md[32], char out[NET_DIGEST_LEN]);

/* SHA-256 of data as 64 hex digits. */
void net_sha256_hex(const void *data, size_t len, char out[65]);

/* SHA-256 of data as "sha256:<hex>". */
void net_sha256_digest(const void *data, size_t len, char out[NET_DIGEST_LEN]);

#endif
