/* libcurl, libarchive and libnftables are opened when hero first calls them
 * (runtime/lazylib.c says why and how). Opening one costs some 10 ms on these VMs
 * (libcurl maps 32 libraries, libarchive brings libxml2 and ICU); a caller that knows
 * it will need one soon has it opened ahead, on a thread of its own, while it goes
 * on. */
#ifndef HERO_RUNTIME_LAZYLIB_H
#define HERO_RUNTIME_LAZYLIB_H

#include "runtime/error.h"

enum {
    HERO_LAZY_CURL = 1,
    HERO_LAZY_ARCHIVE = 2,
    HERO_LAZY_NFT = 4,
};

/* Opens these libraries (HERO_LAZY_* ORed) on a detached thread, in the order above,
 * and returns at once. Each library is opened once per process, by whoever asks
 * first; one that cannot be opened is reported when a function of it is called. */
void hero_lazylib_preload(unsigned libs);

/* The address of function `name` of the shared libcrypto (libcrypto.so.3), opened
 * on first use: for the few OpenSSL functions hero does not link in (see lazylib.c).
 * NULL with err set when the library or the function is missing. Any thread. */
void *hero_lazylib_crypto_sym(const char *name, hero_error_t *err);

#endif
