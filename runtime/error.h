/* hero_error_t: errors are returned up, never printed deep down (libcrun style).
 * A function that can fail takes `hero_error_t *err`, returns < 0 and fills err;
 * callers may prepend context with hero_error_wrap(). Only out-of-memory aborts. */
#ifndef HERO_ERROR_H
#define HERO_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef struct hero_error {
    int code;      /* errno value, or 0 when the failure is not an OS error */
    char *msg;     /* heap string owned by the error; NULL when no error */
} hero_error_t;

#define HERO_ERROR_INIT {0, NULL}

/* Set err (if not NULL) and return -1. `code` is appended as strerror when != 0. */
int hero_error_set(hero_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the message as written (no strerror: it says what happened already),
 * `code` kept for callers that branch on it. */
int hero_error_set_plain(hero_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set err (if not NULL) to a copy of src (message and code as they are: the strerror
 * is in src's message already) and return -1. */
int hero_error_copy(hero_error_t *err, const hero_error_t *src);

/* Prepend "context: " to an existing message; returns -1. */
int hero_error_wrap(hero_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void hero_error_clear(hero_error_t *err);

/* Allocation helpers that abort on out-of-memory, the one failure we do not return. */
/* Says "hero: out of memory" and aborts: for an allocator of hero's own. */
void hero_oom(void) __attribute__((noreturn));
void *hero_xmalloc(size_t n);
void *hero_xcalloc(size_t n, size_t size);
void *hero_xrealloc(void *p, size_t n);
char *hero_xstrdup(const char *s);
char *hero_xstrndup(const char *s, size_t n);
char *hero_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *hero_xvasprintf(const char *fmt, va_list ap);

#endif
