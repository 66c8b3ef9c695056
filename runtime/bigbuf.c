/* Huge-page buffers (bigbuf.h). */
#include <stdint.h>
#include <sys/mman.h>

#include "runtime/bigbuf.h"
#include "runtime/error.h"

#define HUGE_SIZE ((size_t)2 << 20)

static size_t rounded(size_t len)
{
    return (len + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
}

void *hero_bigbuf_new(size_t len)
{
    if (len > SIZE_MAX - 2 * HUGE_SIZE)
        hero_oom(); /* (rounding up would wrap) */
    size_t want = rounded(len ? len : 1);
    /* one huge page more than wanted, to cut an aligned region out of it */
    size_t got = want + HUGE_SIZE;
    char *m = mmap(NULL, got, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        hero_oom();
    char *p = (char *)(((uintptr_t)m + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1));
    if (p > m)
        munmap(m, (size_t)(p - m));
    char *end = m + got;
    if (end > p + want)
        munmap(p + want, (size_t)(end - (p + want)));
    /* (an error here means 4 KB pages: still a buffer) */
    madvise(p, want, MADV_HUGEPAGE);
    madvise(p, want, MADV_DONTFORK);
    return p;
}

void hero_bigbuf_free(void *p, size_t len)
{
    if (p)
        munmap(p, rounded(len ? len : 1));
}
