/* libcurl, libarchive's writer and libnftables, loaded when hero first calls them.
 *
 * Linked the usual way, these bring some 40 shared libraries into every hero process
 * (libcurl alone: gnutls, krb5, ldap, ssh2, rtmp, ...; libarchive: libxml2 and ICU),
 * and the dynamic loader maps and relocates all of them before main(): some 10-20 ms
 * of CPU per `hero run` on these VMs, where a page fault is dear. Most runs need
 * none of them: libcurl only for an https registry pull, libarchive's writer only for
 * an image export, libnftables only when the instance's rules must be written. So
 * hero is not linked against them (see LIBS in the Makefile); this file defines
 * every function of theirs that hero calls, with the libraries' own prototypes, and
 * each one opens its library (dlopen, once, which looks up all its wrapped functions)
 * and calls the real function.
 *
 * libarchive's tar reader (layers, imports) is linked in statically instead: it needs
 * only zlib and libzstd, which hero links anyway, while opening the shared library
 * (15 libraries with libxml2, ICU and libstdc++) cost every pull 5-8 ms of CPU, just
 * when the registry sends its first bytes. The export's functions (the disk reader,
 * the writer and the pax format, which bring xar and so libxml2 along) come from the
 * shared library under names of hero's own, hero_ar_* (lazylib.h).
 *
 * Using a function of these libraries that is not here fails at link time with
 * "undefined reference to `curl_...'": add one line for it below (its prototype is
 * in the library's header; the compiler checks the line against it). For libarchive
 * the link would take libarchive.a's copy instead (or fail on libxml2): the Makefile
 * refuses a hero that has libarchive's writer or disk reader linked in.
 *
 * Opening a library also looks up every function of it that hero wraps (each
 * wrapper leaves a record in the linker section hero_lazysyms), so that once it is
 * open no call needs the dynamic loader again: the loader opens one library at a time
 * (dlsym waits for a dlopen under way), and a library opening ahead on another thread
 * (hero_lazylib_preload) must not stall calls into one already open. (Other users of
 * the loader still wait behind it: NSS modules on a first getaddrinfo, and exit(),
 * which lets a dlopen under way finish first: a pull that fails at once may end some
 * 10 ms later than it would.)
 *
 * libcrypto is linked statically for SHA-256 alone (runtime/sha256.c): its EVP key
 * functions would bring OpenSSL's providers along, 3.4 MB of code and 16000
 * relocations the loader would apply at every start. The one caller that needs them
 * (a new ed25519 key for the yggdrasil overlay, once per node) gets them by name from
 * the shared libcrypto, hero_lazylib_crypto_sym, which reports a failure as an error
 * rather than exiting.
 *
 * A library that cannot be opened is fatal, as it was for the dynamic loader: hero
 * says which one and why, and exits with 127, when a function of it is called (not
 * when hero_lazylib_preload opens it ahead). Safe from any thread. */
#define CURL_DISABLE_TYPECHECK /* the wrappers are functions, not curl's checking macros */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lazylib.h"

typedef struct lazylib {
    const char *soname;
    const char *needed_for;
    void (*open)(void); /* for pthread_once: opens this library */
    pthread_once_t once;
    void *handle;
    char *error;        /* dlerror() when it could not be opened */
} lazylib_t;

/* A wrapped function: where its address goes once its library is open. Pointers to
 * the records of all wrappers are gathered by the linker between __start_ and
 * __stop_hero_lazysyms (GNU ld makes those symbols for a section named like a C
 * identifier). Pointers, not the records: the compiler may pad a 24-byte object to
 * 32, which would break walking them as an array. */
typedef struct lazysym {
    lazylib_t *lib;
    const char *name;
    void **slot;
} lazysym_t;
extern const lazysym_t *const __start_hero_lazysyms[], *const __stop_hero_lazysyms[];

/* Opens l and looks up all its wrapped functions (a missing one stays NULL: it is an
 * error only if called). Runs once per library, under its pthread_once. */
static void lazy_open(lazylib_t *l)
{
    l->handle = dlopen(l->soname, RTLD_LAZY | RTLD_LOCAL);
    if (!l->handle) {
        const char *e = dlerror();
        l->error = strdup(e ? e : "unknown error");
        return;
    }
    for (const lazysym_t *const *s = __start_hero_lazysyms; s < __stop_hero_lazysyms; s++)
        if ((*s)->lib == l)
            *(*s)->slot = dlsym(l->handle, (*s)->name);
}

static void lazy_fail(const char *soname, const char *needed_for, const char *what)
{
    fprintf(stderr, "hero: cannot load %s, which hero needs for %s: %s\n", soname, needed_for,
            what ? what : "unknown error");
    exit(127);
}

#define LAZYLIB(var, so, why)                                               \
    static void open_##var(void);                                           \
    static lazylib_t var = {so, why, open_##var, PTHREAD_ONCE_INIT, NULL, NULL}; \
    static void open_##var(void)                                            \
    {                                                                       \
        lazy_open(&var);                                                    \
    }
LAZYLIB(lib_curl, "libcurl.so.4", "HTTP transfers (image pulls)")
LAZYLIB(lib_archive, "libarchive.so.13", "writing tar archives (image export)")
LAZYLIB(lib_nft, "libnftables.so.1", "firewall rules (nftables)")
LAZYLIB(lib_crypto, "libcrypto.so.3", "ed25519 keys (the yggdrasil overlay)")

/* The address of a wrapped function (its library opened first if need be). */
static void *lazy_fn(lazylib_t *l, void *const *slot, const char *name)
{
    pthread_once(&l->once, l->open); /* (which also makes the slot's write visible) */
    if (!l->handle)
        lazy_fail(l->soname, l->needed_for, l->error);
    if (!*slot) {
        char what[256];
        snprintf(what, sizeof(what), "no function %s in it", name);
        lazy_fail(l->soname, l->needed_for, what);
    }
    return *slot;
}

/* ---- libcrypto, by symbol (lazylib.h) ---- */

void *hero_lazylib_crypto_sym(const char *name, hero_error_t *err)
{
    pthread_once(&lib_crypto.once, lib_crypto.open);
    if (!lib_crypto.handle) {
        hero_error_set(err, 0, "cannot load %s, which hero needs for %s: %s", lib_crypto.soname,
                       lib_crypto.needed_for, lib_crypto.error ? lib_crypto.error : "?");
        return NULL;
    }
    void *f = dlsym(lib_crypto.handle, name);
    if (!f)
        hero_error_set(err, 0, "no function %s in %s", name, lib_crypto.soname);
    return f;
}

/* ---- opening ahead (lazylib.h) ---- */

static unsigned preloading; /* HERO_LAZY_* asked for already */

static void *preload_main(void *arg)
{
    unsigned libs = (unsigned)(uintptr_t)arg;
    /* in the order of lazylib.h: the one needed first opens first */
    if (libs & HERO_LAZY_CURL)
        pthread_once(&lib_curl.once, lib_curl.open);
    if (libs & HERO_LAZY_NFT)
        pthread_once(&lib_nft.once, lib_nft.open);
    return NULL;
}

void hero_lazylib_preload(unsigned libs)
{
    libs &= ~__atomic_fetch_or(&preloading, libs, __ATOMIC_ACQ_REL);
    if (!libs)
        return;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the thread takes no signal: they are the caller's business */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    /* (if it cannot start, each library opens when first called, as without it) */
    pthread_create(&t, &attr, preload_main, (void *)(uintptr_t)libs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

/* ---- the wrappers ---- */

/* The record of wrapped function `name` of library `lib`, and its slot. */
#define LAZY_SYM(lib, name)                                                      \
    static void *fn_##name;                                                      \
    static const lazysym_t sym_##name = {&lib, #name, &fn_##name};               \
    static const lazysym_t *const symp_##name                                    \
        __attribute__((used, retain, section("hero_lazysyms"))) = &sym_##name;

/* `f` gets the real function `name` of library `lib` (declared with LAZY_SYM). */
#define LAZY_FN(lib, name, f)                                               \
    __typeof__(&name) f;                                                    \
    {                                                                       \
        void *p_ = lazy_fn(&lib, &fn_##name, #name);                        \
        memcpy(&f, &p_, sizeof(f));                                         \
    }

/* A wrapper named `wname` around function `name` of library `lib`, with that
 * function's type: one that returns a value, and one that does not. */
#define LAZY_AS(lib, ret, wname, name, params, args) \
    LAZY_SYM(lib, name)                              \
    ret wname params                                 \
    {                                                \
        LAZY_FN(lib, name, f)                        \
        return f args;                               \
    }
#define LAZY_AS_VOID(lib, wname, name, params, args) \
    LAZY_SYM(lib, name)                              \
    void wname params                                \
    {                                                \
        LAZY_FN(lib, name, f)                        \
        f args;                                      \
    }
/* The same under the library's own name (the compiler checks it against the
 * library's header). */
#define LAZY(lib, ret, name, params, args) LAZY_AS(lib, ret, name, name, params, args)
#define LAZY_VOID(lib, name, params, args) LAZY_AS_VOID(lib, name, name, params, args)

/* ---- libcurl ---- */
#define C lib_curl
LAZY(C, CURLcode, curl_global_init, (long flags), (flags))
LAZY(C, CURL *, curl_easy_init, (void), ())
LAZY_VOID(C, curl_easy_cleanup, (CURL *curl), (curl))
LAZY(C, CURLcode, curl_easy_pause, (CURL *curl, int bitmask), (curl, bitmask))
LAZY(C, const char *, curl_easy_strerror, (CURLcode code), (code))
LAZY(C, struct curl_slist *, curl_slist_append, (struct curl_slist *list, const char *data),
     (list, data))
LAZY_VOID(C, curl_slist_free_all, (struct curl_slist *list), (list))
LAZY(C, CURLM *, curl_multi_init, (void), ())
LAZY(C, CURLMcode, curl_multi_cleanup, (CURLM *m), (m))
LAZY(C, CURLMcode, curl_multi_add_handle, (CURLM *m, CURL *e), (m, e))
LAZY(C, CURLMcode, curl_multi_remove_handle, (CURLM *m, CURL *e), (m, e))
LAZY(C, CURLMcode, curl_multi_assign, (CURLM *m, curl_socket_t s, void *p), (m, s, p))
LAZY(C, CURLMsg *, curl_multi_info_read, (CURLM *m, int *left), (m, left))
LAZY(C, CURLMcode, curl_multi_socket_action, (CURLM *m, curl_socket_t s, int ev, int *running),
     (m, s, ev, running))

/* The variadic ones take exactly one more argument, whose type the option's number
 * says (curl's own rule, CURLOPTTYPE_*, for easy and multi options alike). */
typedef void (*any_fn_t)(void);
#define SETOPT_FORWARD(f, h, opt, ap)                                              \
    ((opt) < CURLOPTTYPE_OBJECTPOINT     ? f(h, opt, va_arg(ap, long))             \
     : (opt) < CURLOPTTYPE_FUNCTIONPOINT ? f(h, opt, va_arg(ap, void *))           \
     : (opt) < CURLOPTTYPE_OFF_T         ? f(h, opt, va_arg(ap, any_fn_t))         \
     : (opt) < CURLOPTTYPE_BLOB          ? f(h, opt, va_arg(ap, curl_off_t))       \
                                         : f(h, opt, va_arg(ap, void *)))

LAZY_SYM(C, curl_easy_setopt)
CURLcode curl_easy_setopt(CURL *curl, CURLoption option, ...)
{
    LAZY_FN(C, curl_easy_setopt, f)
    va_list ap;
    va_start(ap, option);
    CURLcode rc = SETOPT_FORWARD(f, curl, option, ap);
    va_end(ap);
    return rc;
}

LAZY_SYM(C, curl_multi_setopt)
CURLMcode curl_multi_setopt(CURLM *m, CURLMoption option, ...)
{
    LAZY_FN(C, curl_multi_setopt, f)
    va_list ap;
    va_start(ap, option);
    CURLMcode rc = SETOPT_FORWARD(f, m, option, ap);
    va_end(ap);
    return rc;
}

/* Every CURLINFO takes a pointer to where the answer goes. */
LAZY_SYM(C, curl_easy_getinfo)
CURLcode curl_easy_getinfo(CURL *curl, CURLINFO info, ...)
{
    LAZY_FN(C, curl_easy_getinfo, f)
    va_list ap;
    va_start(ap, info);
    CURLcode rc = f(curl, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}
#undef C

/* ---- libarchive's disk reader and writer, for image_export (lazylib.h) ----
 * hero links libarchive's tar reader in (for layers and imports); these come from the
 * shared library, under names of hero's own, since the linked-in copy has the
 * library's. The shared libarchive binds to its own functions (hero exports none). */
#define A lib_archive
/* (each wrapper's type is checked against its declaration in lazylib.h) */
typedef struct archive arc_t;
typedef struct archive_entry ent_t;
LAZY_AS(A, const char *, hero_ar_error_string, archive_error_string, (arc_t *a), (a))
LAZY_AS(A, arc_t *, hero_ar_read_disk_new, archive_read_disk_new, (void), ())
LAZY_AS(A, int, hero_ar_read_disk_set_symlink_physical, archive_read_disk_set_symlink_physical,
        (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_read_disk_set_standard_lookup, archive_read_disk_set_standard_lookup,
        (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_read_disk_open, archive_read_disk_open, (arc_t *a, const char *path),
        (a, path))
LAZY_AS(A, int, hero_ar_read_disk_descend, archive_read_disk_descend, (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_read_next_header2, archive_read_next_header2, (arc_t *a, ent_t *e), (a, e))
LAZY_AS(A, int, hero_ar_read_close, archive_read_close, (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_read_free, archive_read_free, (arc_t *a), (a))
LAZY_AS(A, arc_t *, hero_ar_write_new, archive_write_new, (void), ())
LAZY_AS(A, int, hero_ar_write_add_filter_gzip, archive_write_add_filter_gzip, (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_write_set_filter_option, archive_write_set_filter_option,
        (arc_t *a, const char *m, const char *o, const char *v), (a, m, o, v))
LAZY_AS(A, int, hero_ar_write_set_format_pax_restricted, archive_write_set_format_pax_restricted,
        (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_write_open_fd, archive_write_open_fd, (arc_t *a, int fd), (a, fd))
LAZY_AS(A, int, hero_ar_write_header, archive_write_header, (arc_t *a, ent_t *e), (a, e))
LAZY_AS(A, la_ssize_t, hero_ar_write_data, archive_write_data,
        (arc_t *a, const void *buf, size_t len), (a, buf, len))
LAZY_AS(A, int, hero_ar_write_close, archive_write_close, (arc_t *a), (a))
LAZY_AS(A, int, hero_ar_write_free, archive_write_free, (arc_t *a), (a))
LAZY_AS(A, ent_t *, hero_ar_entry_new, archive_entry_new, (void), ())
LAZY_AS_VOID(A, hero_ar_entry_free, archive_entry_free, (ent_t *e), (e))
LAZY_AS(A, const char *, hero_ar_entry_pathname, archive_entry_pathname, (ent_t *e), (e))
LAZY_AS(A, const char *, hero_ar_entry_sourcepath, archive_entry_sourcepath, (ent_t *e), (e))
LAZY_AS(A, mode_t, hero_ar_entry_filetype, archive_entry_filetype, (ent_t *e), (e))
LAZY_AS(A, dev_t, hero_ar_entry_rdev, archive_entry_rdev, (ent_t *e), (e))
LAZY_AS(A, la_int64_t, hero_ar_entry_size, archive_entry_size, (ent_t *e), (e))
LAZY_AS_VOID(A, hero_ar_entry_copy_pathname, archive_entry_copy_pathname,
             (ent_t *e, const char *p), (e, p))
#undef A

/* ---- libnftables ---- */
#define N lib_nft
LAZY(N, struct nft_ctx *, nft_ctx_new, (uint32_t flags), (flags))
LAZY_VOID(N, nft_ctx_free, (struct nft_ctx *ctx), (ctx))
LAZY(N, int, nft_ctx_buffer_output, (struct nft_ctx *ctx), (ctx))
LAZY(N, int, nft_ctx_buffer_error, (struct nft_ctx *ctx), (ctx))
LAZY_VOID(N, nft_ctx_output_set_flags, (struct nft_ctx *ctx, unsigned int flags), (ctx, flags))
LAZY(N, int, nft_run_cmd_from_buffer, (struct nft_ctx *ctx, const char *buf), (ctx, buf))
LAZY(N, const char *, nft_ctx_get_output_buffer, (struct nft_ctx *ctx), (ctx))
LAZY(N, const char *, nft_ctx_get_error_buffer, (struct nft_ctx *ctx), (ctx))
#undef N
