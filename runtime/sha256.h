/* SHA-256, the digest of every blob, manifest, config and diff_id hero checks.
 *
 * One implementation for the whole program: OpenSSL's SHA-256 block functions (with
 * the SHA extensions or AVX where the CPU has them), called directly rather than
 * through EVP. EVP has to set up OpenSSL 3's library context first (read
 * openssl.cnf, load the default provider, fetch the algorithm): ~2 ms on these VMs,
 * which a pull paid between its manifest and its first layer request. */
#ifndef HERO_RUNTIME_SHA256_H
#define HERO_RUNTIME_SHA256_H

#include <stddef.h>

/* "sha256:" and 64 lower-case hex digits, and the NUL */
#define HERO_SHA256_HEX_LEN 72

/* A digest under way; plain memory (no allocation, nothing to free). */
typedef struct hero_sha256 {
    _Alignas(8) unsigned char state[112];
} hero_sha256_t;

void hero_sha256_init(hero_sha256_t *s);
void hero_sha256_update(hero_sha256_t *s, const void *buf, size_t len);
/* Ends s (init it again to reuse it) and writes "sha256:<hex>" into out. */
void hero_sha256_final_hex(hero_sha256_t *s, char out[HERO_SHA256_HEX_LEN]);
/* Ends s and writes the 32 bytes of the digest into out. */
void hero_sha256_final(hero_sha256_t *s, unsigned char out[32]);
/* The digest of buf in one call. */
void hero_sha256_hex(const void *buf, size_t len, char out[HERO_SHA256_HEX_LEN]);

/* NULL when d is "sha256:" and 64 lower-case hex digits (OCI's form, and the only one
 * hero names a blob or layer file after), else why not, in words for a message. */
const char *hero_sha256_digest_problem(const char *d);

#endif
