#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hero_oom(void)
{
    fputs("hero: out of memory\n", stderr);
    abort();
}

void *hero_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        hero_oom();
    return p;
}

void *hero_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        hero_oom();
    return p;
}

void *hero_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        hero_oom();
    return p;
}

char *hero_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        hero_oom();
    return p;
}

char *hero_xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        hero_oom();
    return p;
}

char *hero_xvasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        hero_oom();
    return s;
}

char *hero_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = hero_xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

static int error_vset(hero_error_t *err, int code, bool with_strerror, const char *fmt,
                      va_list ap)
{
    if (!err)
        return -1;
    char *m = hero_xvasprintf(fmt, ap);
    free(err->msg);
    if (code && with_strerror) {
        err->msg = hero_xasprintf("%s: %s", m, strerror(code));
        free(m);
    } else {
        err->msg = m;
    }
    err->code = code;
    return -1;
}

int hero_error_set(hero_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, true, fmt, ap);
    va_end(ap);
    return -1;
}

int hero_error_set_plain(hero_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, false, fmt, ap);
    va_end(ap);
    return -1;
}

int hero_error_copy(hero_error_t *err, const hero_error_t *src)
{
    if (!err)
        return -1;
    if (err == src)
        return -1;
    free(err->msg);
    err->msg = hero_xstrdup(src->msg ? src->msg : "unknown error");
    err->code = src->code;
    return -1;
}

int hero_error_wrap(hero_error_t *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = hero_xvasprintf(fmt, ap);
    va_end(ap);
    char *m = hero_xasprintf("%s: %s", ctx, err->msg ? err->msg : "unknown error");
    free(ctx);
    free(err->msg);
    err->msg = m;
    return -1;
}

void hero_error_clear(hero_error_t *err)
{
    if (!err)
        return;
    free(err->msg);
    err->msg = NULL;
    err->code = 0;
}
