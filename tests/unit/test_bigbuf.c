/* hero_bigbuf (runtime/bigbuf.c): regions 2 MB aligned, zeroed, as large as asked,
 * asking the kernel for huge pages and kept from forked children (VmFlags "hg" and
 * "dc" in /proc/self/smaps), and gone from the address space once freed. */
#include "runtime/bigbuf.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MB ((size_t)1 << 20)

/* The VmFlags line of the mapping that starts at p, or "" when none starts there. */
static void vmflags(void *p, char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    char line[512];
    bool ours = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            ours = lo == (uintptr_t)p;
            continue;
        }
        if (ours && !strncmp(line, "VmFlags:", 8)) {
            size_t n = strlen(line + 8);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, line + 8, n);
            out[n] = 0;
            break;
        }
    }
    fclose(f);
}

static bool mapped(void *p)
{
    unsigned char v;
    return mincore(p, 4096, &v) == 0 || errno != ENOMEM;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        if (p[i] || p[i + 4095])
            return false;
    return true;
}

int main(void)
{
    unsigned char *a = hero_bigbuf_new(1);
    TAP_OK(a && ((uintptr_t)a & (2 * MB - 1)) == 0, "a small region is 2 MB aligned");
    TAP_OK(all_zero(a, 2 * MB), "and zeroed across its 2 MB");
    memset(a, 0xa5, 2 * MB);
    TAP_OK(a[0] == 0xa5 && a[2 * MB - 1] == 0xa5, "and writable");

    size_t len = 3 * MB + 12345;
    unsigned char *b = hero_bigbuf_new(len);
    TAP_OK(b && ((uintptr_t)b & (2 * MB - 1)) == 0 && b != a, "a 3 MB region, aligned too");
    /* rounded up to 4 MB, and what mmap gave beyond that unmapped again */
    TAP_OK(mapped(b + 4 * MB - 4096) && !mapped(b + 4 * MB), "it ends at 4 MB");
    TAP_OK(all_zero(b, len - 4095), "zeroed");
    b[len - 1] = 1;
    TAP_OK(b[len - 1] == 1, "its last byte is there");

    char flags[256];
    vmflags(b, flags, sizeof(flags));
    if (madvise(b, 2 * MB, MADV_HUGEPAGE) != 0)
        TAP_SKIP("this kernel has no transparent huge pages");
    else
        TAP_OK(strstr(flags, " hg"), "it asks for huge pages (MADV_HUGEPAGE)");
    TAP_OK(strstr(flags, " dc"), "and is left out of a forked child (MADV_DONTFORK)");
    printf("# VmFlags:%s", flags);

    hero_bigbuf_free(b, len);
    TAP_OK(!mapped(b) && !mapped(b + 2 * MB) && !mapped(b + 4 * MB - 4096),
           "freed: no longer mapped, to its end");
    TAP_OK(a[0] == 0xa5, "another region is untouched by that");
    hero_bigbuf_free(a, 1);
    TAP_OK(!mapped(a), "the small one freed too");
    hero_bigbuf_free(NULL, 5);
    TAP_OK(1, "freeing NULL is nothing");
    return tap_done();
}
