/* hero_sha256 (runtime/sha256.c): the FIPS 180-2 test vectors, a digest fed in pieces
 * of every size across the 64-byte block boundary, and agreement with OpenSSL's EVP
 * SHA-256 (the path it replaced) on a large buffer. */
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

int main(void)
{
    vectors();
    pieces();
    against_evp();
    return tap_done();
}
