/* Pull progress: sizes, the one summary line off a terminal, the live region on one,
 * throttling (with a fake clock), and two images at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/progress.h"
#include "tap.h"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

#define MS 1000000ull

/* An in-memory stream and its buffer. */
static FILE *mem;
static char *buf;
static size_t len;

static void mem_open(void)
{
    mem = open_memstream(&buf, &len);
}

static const char *mem_text(void)
{
    fflush(mem);
    return buf;
}

static void mem_close(void)
{
    fclose(mem);
    free(buf);
    buf = NULL;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
        n++;
    return n;
}

/* Does s hold a cursor-up sequence, ESC [ digits A? */
static bool has_cursor_up(const char *s)
{
    for (; (s = strstr(s, "\033[")); s += 2) {
        size_t d = strspn(s + 2, "0123456789");
        if (d && s[2 + d] == 'A')
            return true;
    }
    return false;
}

static void sizes(void)
{
    char b[32];
    hero_progress_human(0, b, sizeof b);
    TAP_STREQ(b, "0 B", "0 B");
    hero_progress_human(999, b, sizeof b);
    TAP_STREQ(b, "999 B", "999 B");
    hero_progress_human(1000, b, sizeof b);
    TAP_STREQ(b, "1.0 kB", "decimal kB");
    hero_progress_human(3400000, b, sizeof b);
    TAP_STREQ(b, "3.4 MB", "MB");
    hero_progress_human(999999, b, sizeof b);
    TAP_STREQ(b, "1.0 MB", "no 1000.0 kB");
    hero_progress_human(1200000000ull, b, sizeof b);
    TAP_STREQ(b, "1.2 GB", "GB");
}

/* Three layers, 3.4 MB, in 1.2 s. */
static void pull_three(hero_progress_t *p, const char *last_state)
{
    int a = hero_progress_item(p, "a1b2c3d4e5f6", 1000000);
    int b = hero_progress_item(p, "b2c3d4e5f6a1", 2000000);
    int c = hero_progress_item(p, "c3d4e5f6a1b2", 400000);
    for (int i = 1; i <= 10; i++) {
        fake_now += 100 * MS;
        hero_progress_update(p, a, 100000ull * (uint64_t)i);
        hero_progress_update(p, b, 200000ull * (uint64_t)i);
    }
    hero_progress_item_done(p, a, "done");
    hero_progress_item_done(p, b, "done");
    fake_now += 200 * MS;
    hero_progress_update(p, c, 400000);
    hero_progress_item_done(p, c, last_state);
}

static void off_tty(void)
{
    fake_now = 1000 * MS;
    mem_open();
    hero_progress_t *p = hero_progress_new(mem, false, "docker.io/library/alpine:3.20");
    pull_three(p, "done");
    TAP_STREQ(mem_text(), "", "off a terminal nothing is written before the end");
    hero_progress_finish(p, true);
    TAP_STREQ(mem_text(),
              "pulled docker.io/library/alpine:3.20: 3 layers, 3.4 MB in 1.2 s (2.8 MB/s)\n",
              "off a terminal: exactly one summary line with the numbers");
    mem_close();

    mem_open();
    p = hero_progress_new(mem, false, "x:1");
    pull_three(p, "exists");
    hero_progress_finish(p, true);
    TAP_STREQ(mem_text(), "pulled x:1: 3 layers (1 already present), 3.0 MB in 1.2 s (2.5 MB/s)\n",
              "a layer already present is not counted as transferred");
    mem_close();

    mem_open();
    p = hero_progress_new(mem, false, "x:1");
    pull_three(p, "failed");
    hero_progress_finish(p, false);
    TAP_STREQ(mem_text(), "pulling x:1 failed: 3 layers (1 failed), 3.4 MB in 1.2 s (2.8 MB/s)\n",
              "a failed pull says so");
    mem_close();

    mem_open();
    p = hero_progress_new(mem, false, "one:1");
    int i = hero_progress_item(p, "d4", 0);
    hero_progress_item_done(p, i, "exists");
    hero_progress_finish(p, true);
    TAP_STREQ(mem_text(), "pulled one:1: 1 layer (1 already present), 0 B in 0.0 s\n",
              "no rate when nothing was transferred");
    mem_close();
}

static void tty(void)
{
    fake_now = 5000 * MS;
    mem_open();
    hero_progress_t *p = hero_progress_new(mem, true, "docker.io/library/alpine:3.20");
    int a = hero_progress_item(p, "a1b2c3d4e5f6", 1000000);
    int b = hero_progress_item(p, "b2c3d4e5f6a1", 2000000);
    fake_now += 200 * MS;
    hero_progress_update(p, a, 500000);
    fake_now += 200 * MS;
    hero_progress_update(p, b, 500000);
    const char *t = mem_text();
    TAP_OK(strstr(t, "\033[K") && strstr(t, "\033[J"), "erase-line and erase-below");
    TAP_OK(strstr(t, "\033[3A"), "cursor-up over the three drawn lines");
    TAP_OK(strstr(t, "pulling docker.io/library/alpine:3.20: 0/2 layers, 1.0 MB / 3.0 MB, 5.0 MB/s"),
           "the total line");
    TAP_OK(strstr(t, "  a1b2c3d4e5f6  500.0 kB / 1.0 MB   50%  2.5 MB/s"),
           "a layer line: done, total, percent, rate");
    TAP_OK(strstr(t, "  b2c3d4e5f6a1  waiting"), "a layer not started yet");
    hero_progress_item_done(p, a, "done");
    hero_progress_item_done(p, b, "failed");
    fake_now += 600 * MS;
    hero_progress_finish(p, false);
    t = mem_text();
    const char *fin = strstr(t, "pulling docker.io/library/alpine:3.20 failed: 2 layers "
                                "(1 failed), 1.5 MB in 1.0 s (1.5 MB/s)\n");
    TAP_OK(fin, "the final summary line");
    TAP_OK(fin && strstr(fin, "  a1b2c3d4e5f6  done    1.0 MB\n") &&
               strstr(fin, "  b2c3d4e5f6a1  failed  500.0 kB / 2.0 MB\n"),
           "the final state lines follow it");
    size_t n = strlen(t);
    TAP_OK(n >= 3 && !strcmp(t + n - 3, "\033[J"), "and the region is left empty");
    mem_close();
}

static void throttle(void)
{
    fake_now = 9000 * MS;
    mem_open();
    hero_progress_t *p = hero_progress_new(mem, true, "t:1");
    int a = hero_progress_item(p, "a1", 1000000);
    int before = count(mem_text(), "\033[J");
    for (int i = 0; i < 100; i++) { /* 100 updates within 10 ms */
        fake_now += 100000;
        hero_progress_update(p, a, (uint64_t)i * 1000);
    }
    int during = count(mem_text(), "\033[J") - before;
    TAP_OK(before >= 1 && before + during <= 2, "100 updates in 10 ms: at most 2 redraws");
    printf("# redraws: %d before, %d during\n", before, during);
    fake_now += 100 * MS;
    hero_progress_update(p, a, 200000);
    TAP_OK(count(mem_text(), "\033[J") == before + during + 1, "100 ms later: one more");
    hero_progress_update(p, a, 300000);
    TAP_OK(count(mem_text(), "\033[J") == before + during + 1, "but not at once again");
    hero_progress_finish(p, true);
    TAP_OK(count(mem_text(), "\033[J") == before + during + 2, "finish always draws");
    mem_close();
}

static void two_images(void)
{
    fake_now = 20000 * MS;
    mem_open();
    hero_progress_t *p = hero_progress_new(mem, true, "one:1");
    hero_progress_t *q = hero_progress_new(mem, true, "two:2");
    int a = hero_progress_item(p, "aaaa", 100);
    int b = hero_progress_item(q, "bbbb", 100);
    fake_now += 200 * MS;
    hero_progress_update(p, a, 50);
    const char *t = mem_text();
    const char *one = strstr(t, "pulling one:1:"), *two = strstr(t, "pulling two:2:");
    TAP_OK(one && two && one < two, "both blocks are drawn, in creation order");
    hero_progress_item_done(p, a, "done");
    fake_now += 200 * MS;
    hero_progress_update(q, b, 10);
    TAP_OK(strstr(mem_text(), "\033[4A"), "and redrawn together (4 lines up)");
    fake_now += 200 * MS;
    hero_progress_finish(p, true);
    t = mem_text();
    const char *fin = strstr(t, "pulled one:1: 1 layer, 100 B");
    TAP_OK(fin && strstr(fin, "pulling two:2:") && strstr(fin, "  bbbb  10 B / 100 B   10%"),
           "a finished block's lines are printed, the other one redrawn below");
    size_t mark = strlen(t);
    hero_progress_clear();
    t = mem_text();
    TAP_STREQ(t + mark, "\033[2A\r\033[J", "hero_progress_clear erases the region");
    hero_progress_update(q, b, 100);
    hero_progress_item_done(q, b, "done");
    fake_now += 200 * MS;
    hero_progress_finish(q, true);
    t = mem_text();
    TAP_OK(strstr(t + mark, "pulled two:2: 1 layer, 100 B") &&
               !has_cursor_up(t + mark + strlen("\033[2A\r\033[J")),
           "after a clear the next draw does not move up");
    mem_close();
}

static void quiet(void)
{
    /* quiet mode: no object at all; every call is a no-op */
    TAP_OK(hero_progress_item(NULL, "x", 1) == -1, "item on NULL is -1");
    hero_progress_update(NULL, -1, 1);
    hero_progress_item_done(NULL, -1, "done");
    hero_progress_finish(NULL, true);
    TAP_OK(1, "NULL progress is a no-op");
}

int main(void)
{
    hero_progress_set_clock(fake_clock);
    sizes();
    off_tty();
    tty();
    throttle();
    two_images();
    quiet();
    hero_progress_set_clock(NULL);
    return tap_done();
}
