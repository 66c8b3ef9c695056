/* Buffers of a megabyte and more, in transparent huge pages where the kernel gives
 * them.
 *
 * A fresh 4 KB page costs a page fault when first written, and on these VMs one costs
 * some 13 us (shadow page tables): a 2 MB buffer written once, 512 faults, takes 7 ms
 * of CPU, as long as a 20 MB layer's SHA-256. A 2 MB huge page comes in one fault
 * (0.1-0.3 ms here, the kernel reusing a freed one). With the kernel's THP setting
 * "madvise" (Debian's default) a region must ask for them (MADV_HUGEPAGE) and be 2 MB
 * aligned, which malloc does not do. Where the kernel has no THP, or none is free,
 * the region gets 4 KB pages as from malloc. */
#ifndef HERO_RUNTIME_BIGBUF_H
#define HERO_RUNTIME_BIGBUF_H

#include <stddef.h>

/* A region of at least len bytes (len rounded up to 2 MB), 2 MB aligned, zeroed, for
 * hero_bigbuf_free with the same len. Exits like hero_xmalloc when there is no
 * memory. Any thread. */
void *hero_bigbuf_new(size_t len);

void hero_bigbuf_free(void *p, size_t len);

#endif
