/* Buffers of a megabyte and more, in transparent huge pages where the kernel gives
 * them.
 *
 * A fresh 4 KB page costs a page fault when first written, and on these VMs one costs
 * some 13 us (shadow page tables): a 2 MB buffer written once, 512 faults, takes 7 ms
 * of CPU, as long as a 20 MB layer's SHA-256. A 2 MB huge page comes in one fault
 * (0.1-0.3 ms here, the kernel reusing a freed one). With the kernel's THP setting
 * "madvise" (Debian's default) a region must ask for them (MADV_HUGEPAGE) and be 2 MB
 * aligned, which malloc does not do. Where the kernel has no THP the region gets 4 KB
 * pages as from malloc. Where it has no free huge page, the faulting thread may first
 * reclaim and compact memory (THP "defrag" set to "madvise", Debian's default) before
 * it falls back to 4 KB pages: a stall on a fragmented host, taken as the price of the
 * common case. A child forked meanwhile does not get these regions (MADV_DONTFORK):
 * hero's children exec at once, and a copy-on-write huge page would be split. */
#ifndef HERO_RUNTIME_BIGBUF_H
#define HERO_RUNTIME_BIGBUF_H

#include <stddef.h>

/* A region of at least len bytes (len rounded up to 2 MB), 2 MB aligned, zeroed, for
 * hero_bigbuf_free with the same len. Exits like hero_xmalloc when there is no
 * memory. Any thread. */
void *hero_bigbuf_new(size_t len);

/* Unmaps a region of hero_bigbuf_new; len is the one given to it. NULL is nothing. */
void hero_bigbuf_free(void *p, size_t len);

#endif
