/* A very small TAP producer for the C unit tests. Each check prints `ok N - what` or
 * `not ok N - what` (with the failing expression and location as a `#` comment);
 * tap_done() prints the plan and returns the exit code. tests/run counts the lines. */
#ifndef HERO_TAP_H
#define HERO_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_check(int cond, const char *expr, const char *file, int line,
                            const char *what)
{
    tap_n++;
    if (cond) {
        printf("ok %d - %s\n", tap_n, what);
    } else {
        tap_failed++;
        printf("not ok %d - %s\n#   %s:%d: %s\n", tap_n, what, file, line, expr);
    }
    fflush(stdout);
    return cond;
}

#define TAP_OK(cond, what) tap_check(!!(cond), #cond, __FILE__, __LINE__, (what))
#define TAP_STREQ(a, b, what)                                                             \
    do {                                                                                  \
        const char *tap_a_ = (a), *tap_b_ = (b);                                          \
        int tap_c_ = tap_a_ && tap_b_ && strcmp(tap_a_, tap_b_) == 0;                     \
        if (!tap_check(tap_c_, #a " == " #b, __FILE__, __LINE__, (what)))                 \
            printf("#   got:      '%s'\n#   expected: '%s'\n", tap_a_ ? tap_a_ : "(null)", \
                   tap_b_ ? tap_b_ : "(null)");                                           \
    } while (0)
#define TAP_SKIP(why)                                                                     \
    do {                                                                                  \
        tap_n++;                                                                          \
        printf("ok %d # SKIP %s\n", tap_n, (why));                                        \
    } while (0)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
