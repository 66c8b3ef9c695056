/* Pull progress. One progress object per image; its items are the layers (blobs).
 *
 * Off a terminal (tty == false) nothing is written until hero_progress_finish(), which
 * writes exactly one line:
 *     pulled docker.io/library/alpine:3.20: 3 layers, 3.4 MB in 1.2 s (2.8 MB/s)
 *     pulled REF: 3 layers (1 already present), ...   when some layers were "exists"
 *     pulling REF failed: 3 layers (1 failed), 1.1 MB in 0.8 s (1.4 MB/s)
 * The bytes counted are those transferred: items ending "exists" do not count.
 *
 * On a terminal each object is a block, redrawn in place (ANSI cursor-up and erase):
 *     pulling docker.io/library/alpine:3.20: 1/3 layers, 1.2 MB / 3.4 MB, 2.8 MB/s
 *       a1b2c3d4e5f6  done    3.4 MB
 *       b2c3d4e5f6a1  1.2 MB / 3.4 MB  35%  2.8 MB/s
 *       c3d4e5f6a1b2  waiting
 * Redraws are throttled to one per 100 ms (monotonic clock), so callers may call
 * hero_progress_update() as often as data arrives. hero_progress_finish() prints the
 * block's final state (the summary line above, then one line per item) once, as
 * ordinary scrolling output.
 *
 * Several images at once: every terminal block lives in one module-level region that
 * is redrawn as a whole, blocks in creation order; a finished block's final lines are
 * printed above the region and the rest is redrawn below them. Limitations: all
 * terminal blocks must write to the same stream (normally stderr); anything else
 * written to that terminal while blocks are active must call hero_progress_clear()
 * first; when the region is taller than the terminal, finished items are hidden, and
 * a region still taller than the screen draws badly. No locking: use from one thread
 * (the loop thread).
 *
 * Sizes are decimal (1 kB = 1000 B), as docker and podman print them.
 * Quiet mode (-q) is not creating one: every function accepts p == NULL and does
 * nothing (hero_progress_item returns -1, which the others ignore). */
#ifndef HERO_PROGRESS_H
#define HERO_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct hero_progress hero_progress_t;

/* A progress for `title` (the image reference) written to out. tty: draw the live
 * block (the caller decides, e.g. isatty(fileno(out))). Never NULL. */
hero_progress_t *hero_progress_new(FILE *out, bool tty, const char *title);
/* Add an item (a short digest like "a1b2c3d4e5f6"); total 0 means unknown. Returns
 * its index, counted from 0. */
int hero_progress_item(hero_progress_t *p, const char *label, uint64_t total);
/* done bytes of item so far (absolute, not an increment). */
void hero_progress_update(hero_progress_t *p, int item, uint64_t done);
/* The item's final state: "done", "exists" (already present) or "failed". */
void hero_progress_item_done(hero_progress_t *p, int item, const char *state);
/* Print the final output (see above) and free p. */
void hero_progress_finish(hero_progress_t *p, bool ok);

/* Erase the live region from the terminal; the next redraw starts below whatever is
 * printed meanwhile. Call before writing other lines to the same terminal. */
void hero_progress_clear(void);

/* "512 B", "3.4 MB", "1.2 GB" (decimal units) into buf. */
void hero_progress_human(uint64_t bytes, char *buf, size_t n);

/* Test hook: the time source in nanoseconds (NULL restores CLOCK_MONOTONIC). */
void hero_progress_set_clock(uint64_t (*now_ns)(void));

#endif
