/* hero_sha256 (runtime/sha256.c): the FIPS 180-2 test vectors, a digest fed in pieces
 * of every size across the 64-byte block boundary, and agreement with OpenSSL's EVP
 * SHA-256 (the path it replaced) on a large buffer. */
#include "runtime/error.h"
#include "runtime/sha256.h"
#include "tests/unit/tap.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vectors(void)
{
    char d[HERO_SHA256_HEX_LEN];
    hero_sha256_hex("", 0, d);
    TAP_OK(!strcmp(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
           "sha256 of nothing");
    hero_sha256_hex("abc", 3, d);
    TAP_OK(!strcmp(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
           "sha256 of abc");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hero_sha256_hex(two, strlen(two), d);
    TAP_OK(!strcmp(d, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
           "sha256 of the two-block vector");
    /* a million 'a', fed 1000 at a time */
    char a[1000];
    memset(a, 'a', sizeof(a));
    hero_sha256_t s;
    hero_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        hero_sha256_update(&s, a, sizeof(a));
    hero_sha256_final_hex(&s, d);
    TAP_OK(!strcmp(d, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
           "sha256 of a million 'a', in pieces");
    /* a context is plain memory: init makes it new again */
    hero_sha256_init(&s);
    hero_sha256_update(&s, "abc", 3);
    hero_sha256_final_hex(&s, d);
    TAP_OK(!strcmp(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
           "a context used again after init");
}

/* pieces of every length from 1 to 130 give the digest of the whole */
static void pieces(void)
{
    unsigned char buf[4099];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    char whole[HERO_SHA256_HEX_LEN];
    hero_sha256_hex(buf, sizeof(buf), whole);
    int bad = 0;
    for (size_t step = 1; step <= 130; step++) {
        hero_sha256_t s;
        hero_sha256_init(&s);
        for (size_t off = 0; off < sizeof(buf); off += step)
            hero_sha256_update(&s, buf + off, off + step > sizeof(buf) ? sizeof(buf) - off : step);
        char d[HERO_SHA256_HEX_LEN];
        hero_sha256_final_hex(&s, d);
        bad += strcmp(d, whole) != 0;
    }
    TAP_OK(bad == 0, "fed in pieces of 1 to 130 bytes: the digest of the whole every time");
}

/* the same as OpenSSL's EVP SHA-256, on 9 MB of varied bytes */
static void against_evp(void)
{
    size_t n = 9 * 1024 * 1024 + 13;
    unsigned char *buf = malloc(n);
    if (!buf)
        abort();
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(buf, n, md, &mdlen, EVP_sha256(), NULL);
    char want[HERO_SHA256_HEX_LEN] = "sha256:";
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(want + 7 + 2 * i, 3, "%02x", md[i]);
    char got[HERO_SHA256_HEX_LEN];
    hero_sha256_hex(buf, n, got);
    TAP_OK(mdlen == 32 && !strcmp(got, want), "9 MB: the same digest as OpenSSL's EVP");
    unsigned char raw[32];
    hero_sha256_t s;
    hero_sha256_init(&s);
    hero_sha256_update(&s, buf, n);
    hero_sha256_final(&s, raw);
    TAP_OK(!memcmp(raw, md, 32), "the 32 raw bytes too");
    free(buf);
}

/* the one digest validator (blobs, manifests, configs, diff_ids) */
static void digest_forms(void)
{
    char d[HERO_SHA256_HEX_LEN];
    hero_sha256_hex("abc", 3, d);
    TAP_OK(hero_sha256_digest_problem(d) == NULL, "a digest hero made is fine");
    struct {
        const char *d, *why;
    } bad[] = {
        {"", "algorithm:hex"},
        {":abc", "algorithm:hex"},
        {"0123", "algorithm:hex"},
        {"sha512:00", "only sha256"},
        {"SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "only sha256"},
        {"sha256:ba7816bf", "64 hex digits"},
        {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", "64 hex"},
        {"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", "lowercase"},
        {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag", "lowercase"},
        {"sha256:../../../../../../../../../../../../../../../../../../../../etcx", "lowercase"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = hero_sha256_digest_problem(bad[i].d);
        char *what = hero_xasprintf("'%s' is refused (%s)", bad[i].d, bad[i].why);
        TAP_OK(why && strstr(why, bad[i].why), what);
        free(what);
    }
}

int main(void)
{
    vectors();
    pieces();
    against_evp();
    digest_forms();
    return tap_done();
}
