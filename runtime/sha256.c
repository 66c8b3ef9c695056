/* SHA-256 through OpenSSL's low-level functions (sha256.h says why not EVP). They are
 * deprecated in OpenSSL 3 (still there, and what EVP's own provider calls), hence the
 * define below; the digest is plain data, so it cannot fail. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "runtime/sha256.h"

#include <assert.h>
#include <openssl/sha.h>
#include <string.h>

static_assert(sizeof(SHA256_CTX) <= sizeof(((hero_sha256_t *)0)->state),
              "hero_sha256_t too small for SHA256_CTX");
static_assert(_Alignof(SHA256_CTX) <= 8, "SHA256_CTX needs more alignment");

void hero_sha256_init(hero_sha256_t *s)
{
    SHA256_Init((SHA256_CTX *)s->state);
}

void hero_sha256_update(hero_sha256_t *s, const void *buf, size_t len)
{
    SHA256_Update((SHA256_CTX *)s->state, buf, len);
}

void hero_sha256_final(hero_sha256_t *s, unsigned char out[32])
{
    SHA256_Final(out, (SHA256_CTX *)s->state);
}

void hero_sha256_final_hex(hero_sha256_t *s, char out[HERO_SHA256_HEX_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    hero_sha256_final(s, d);
    char *o = out;
    for (const char *p = "sha256:"; *p; p++)
        *o++ = *p;
    for (int i = 0; i < 32; i++) {
        *o++ = hex[d[i] >> 4];
        *o++ = hex[d[i] & 15];
    }
    *o = 0;
}

void hero_sha256_hex(const void *buf, size_t len, char out[HERO_SHA256_HEX_LEN])
{
    hero_sha256_t s;
    hero_sha256_init(&s);
    hero_sha256_update(&s, buf, len);
    hero_sha256_final_hex(&s, out);
}

const char *hero_sha256_digest_problem(const char *d)
{
    const char *colon = strchr(d, ':');
    if (!colon || colon == d)
        return "a digest is algorithm:hex";
    if ((size_t)(colon - d) != 6 || memcmp(d, "sha256", 6) != 0)
        return "unsupported digest algorithm (only sha256)";
    const char *hex = colon + 1;
    if (strlen(hex) != 64)
        return "a sha256 digest has 64 hex digits";
    for (const char *c = hex; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return "a sha256 digest is lowercase hex";
    return NULL;
}
