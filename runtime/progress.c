/* Pull progress: a summary line off a terminal, a live region of blocks on one. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/progress.h"

#define PROGRESS_INTERVAL_NS 100000000ull /* at most 10 redraws a second */
#define PROGRESS_LINE 512

typedef struct progress_item {
    char *label;
    uint64_t total, done; /* total 0: unknown */
    uint64_t started;     /* time of the first update, 0 before */
    const char *state;    /* NULL while in progress, else a static string */
} progress_item_t;

struct hero_progress {
    FILE *out;
    bool tty;
    char *title;
    progress_item_t *items;
    int n_items, cap_items;
    uint64_t started;           /* creation time */
    uint64_t first_update;      /* time of the first update of any item, 0 before */
    struct hero_progress *next; /* in the live region (tty only) */
};

/* The live region shared by every terminal block (see progress.h). */
static hero_progress_t *region_head;
static int region_lines; /* lines drawn last time; the cursor is just below them */
static uint64_t region_drawn; /* time of the last redraw */
static bool region_ever;

/* ---- time and numbers ---- */

static uint64_t progress_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t (*progress_clock)(void) = progress_monotonic;

void hero_progress_set_clock(uint64_t (*now_ns)(void))
{
    progress_clock = now_ns ? now_ns : progress_monotonic;
}

void hero_progress_human(uint64_t bytes, char *buf, size_t n)
{
    static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
    if (bytes < 1000) {
        snprintf(buf, n, "%llu B", (unsigned long long)bytes);
        return;
    }
    double v = (double)bytes / 1000.0;
    size_t u = 0;
    while (v >= 999.95 && u + 1 < sizeof units / sizeof *units) { /* no "1000.0 kB" */
        v /= 1000.0;
        u++;
    }
    snprintf(buf, n, "%.1f %s", v, units[u]);
}

/* ", 2.8 MB/s"-style rate of bytes over ns into buf; "" when not measurable. */
static void progress_rate(uint64_t bytes, uint64_t ns, const char *sep, char *buf,
                          size_t n)
{
    buf[0] = 0;
    if (!bytes || ns < 1000000) /* under 1 ms: no meaningful rate */
        return;
    char h[32];
    hero_progress_human((uint64_t)((double)bytes * 1e9 / (double)ns), h, sizeof h);
    snprintf(buf, n, "%s%s/s", sep, h);
}

/* ---- text ---- */

/* Bytes transferred (items not "exists") and their known totals. */
static void progress_sums(const hero_progress_t *p, uint64_t *done, uint64_t *total,
                          bool *total_known)
{
    *done = *total = 0;
    *total_known = true;
    for (int i = 0; i < p->n_items; i++) {
        const progress_item_t *it = &p->items[i];
        if (it->state && !strcmp(it->state, "exists"))
            continue;
        *done += it->done;
        *total += it->total;
        if (!it->total)
            *total_known = false;
    }
}

static int progress_count(const hero_progress_t *p, const char *state)
{
    int n = 0;
    for (int i = 0; i < p->n_items; i++)
        n += p->items[i].state && !strcmp(p->items[i].state, state);
    return n;
}

/* The one-line summary: "pulled REF: 3 layers, 3.4 MB in 1.2 s (2.8 MB/s)". */
static void progress_summary(const hero_progress_t *p, uint64_t now, bool ok, char *buf,
                             size_t n)
{
    uint64_t done, total;
    bool known;
    progress_sums(p, &done, &total, &known);
    uint64_t ns = now > p->started ? now - p->started : 0;
    int present = progress_count(p, "exists"), failed = progress_count(p, "failed");
    char extra[64] = "", size[32], rate[48];
    if (!ok && failed)
        snprintf(extra, sizeof extra, " (%d failed)", failed);
    else if (present)
        snprintf(extra, sizeof extra, " (%d already present)", present);
    hero_progress_human(done, size, sizeof size);
    progress_rate(done, ns, "", rate, sizeof rate);
    snprintf(buf, n, "%s %s%s: %d layer%s%s, %s in %.1f s%s%s%s", ok ? "pulled" : "pulling",
             p->title, ok ? "" : " failed", p->n_items, p->n_items == 1 ? "" : "s", extra,
             size, (double)ns / 1e9, *rate ? " (" : "", rate, *rate ? ")" : "");
}

/* The live title line: "pulling REF: 1/3 layers, 1.2 MB / 3.4 MB, 2.8 MB/s". */
static void progress_title_line(const hero_progress_t *p, uint64_t now, char *buf,
                                size_t n)
{
    uint64_t done, total;
    bool known;
    progress_sums(p, &done, &total, &known);
    char d[32], t[32], rate[48];
    hero_progress_human(done, d, sizeof d);
    hero_progress_human(total, t, sizeof t);
    progress_rate(done, p->first_update && now > p->first_update ? now - p->first_update : 0,
                  ", ", rate, sizeof rate);
    int finished = 0;
    for (int i = 0; i < p->n_items; i++)
        finished += p->items[i].state != NULL;
    snprintf(buf, n, "pulling %s: %d/%d layers, %s%s%s%s", p->title, finished, p->n_items,
             d, known ? " / " : "", known ? t : "", rate);
}

/* One item line; width: the label column. */
static void progress_item_line(const progress_item_t *it, int width, uint64_t now,
                               char *buf, size_t n)
{
    char d[32], t[32], rate[48], pct[16] = "";
    hero_progress_human(it->done, d, sizeof d);
    hero_progress_human(it->total, t, sizeof t);
    if (it->state && !strcmp(it->state, "done")) {
        snprintf(buf, n, "  %-*s  done    %s", width, it->label, it->total ? t : d);
    } else if (it->state && !strcmp(it->state, "exists")) {
        snprintf(buf, n, "  %-*s  exists", width, it->label);
    } else if (it->state) { /* failed */
        snprintf(buf, n, "  %-*s  %-6s  %s%s%s", width, it->label, it->state, d,
                 it->total ? " / " : "", it->total ? t : "");
    } else if (!it->started) {
        snprintf(buf, n, "  %-*s  waiting", width, it->label);
    } else {
        if (it->total)
            snprintf(pct, sizeof pct, "  %3d%%",
                     (int)(it->done >= it->total ? 100 : it->done * 100 / it->total));
        progress_rate(it->done, now > it->started ? now - it->started : 0, "  ", rate,
                      sizeof rate);
        snprintf(buf, n, "  %-*s  %s%s%s%s%s", width, it->label, d, it->total ? " / " : "",
                 it->total ? t : "", pct, rate);
    }
}

/* ---- the terminal region ---- */

/* The terminal's columns and rows, 0 when unknown (not a terminal, as in tests). */
static void progress_winsize(FILE *out, int *cols, int *rows)
{
    struct winsize ws;
    *cols = *rows = 0;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

static void progress_put(FILE *out, char *line, int cols)
{
    if (cols > 1 && strlen(line) >= (size_t)cols)
        line[cols - 1] = 0; /* a wrapped line would break the cursor arithmetic */
    fprintf(out, "\r\033[K%s\n", line);
}

/* Draw block p: its title line and items; compact hides finished items. */
static int progress_block(const hero_progress_t *p, uint64_t now, bool compact,
                          int cols, FILE *out)
{
    char line[PROGRESS_LINE];
    int width = 0, lines = 1;
    for (int i = 0; i < p->n_items; i++) {
        int w = (int)strlen(p->items[i].label);
        width = w > width ? w : width;
    }
    progress_title_line(p, now, line, sizeof line);
    progress_put(out, line, cols);
    for (int i = 0; i < p->n_items; i++) {
        if (compact && p->items[i].state)
            continue;
        progress_item_line(&p->items[i], width, now, line, sizeof line);
        progress_put(out, line, cols);
        lines++;
    }
    return lines;
}

/* Redraw the whole region; `final`, already unlinked, is printed above it for good. */
static void progress_redraw(uint64_t now, hero_progress_t *final, bool ok)
{
    FILE *out = final ? final->out : region_head ? region_head->out : NULL;
    if (!out)
        return;
    int cols, rows, need = 0;
    progress_winsize(out, &cols, &rows);
    for (hero_progress_t *b = region_head; b; b = b->next)
        need += 1 + b->n_items;
    bool compact = rows > 0 && need > rows - 1;
    if (region_lines)
        fprintf(out, "\033[%dA", region_lines); /* back to the region's first line */
    if (final) {
        char line[PROGRESS_LINE];
        int width = 0;
        for (int i = 0; i < final->n_items; i++) {
            int w = (int)strlen(final->items[i].label);
            width = w > width ? w : width;
        }
        progress_summary(final, now, ok, line, sizeof line);
        progress_put(out, line, cols);
        for (int i = 0; i < final->n_items; i++) {
            progress_item_line(&final->items[i], width, now, line, sizeof line);
            progress_put(out, line, cols);
        }
    }
    int lines = 0;
    for (hero_progress_t *b = region_head; b; b = b->next)
        lines += progress_block(b, now, compact, cols, out);
    fputs("\033[J", out); /* erase what is left of a taller previous region */
    fflush(out);
    region_lines = lines;
    region_drawn = now;
    region_ever = true;
}

/* Redraw unless the last redraw was less than PROGRESS_INTERVAL_NS ago. */
static void progress_tick(const hero_progress_t *p)
{
    if (!p->tty)
        return;
    uint64_t now = progress_clock();
    if (region_ever && now - region_drawn < PROGRESS_INTERVAL_NS)
        return;
    progress_redraw(now, NULL, true);
}

void hero_progress_clear(void)
{
    if (!region_head || !region_lines)
        return;
    fprintf(region_head->out, "\033[%dA\r\033[J", region_lines);
    fflush(region_head->out);
    region_lines = 0;
}

/* ---- the API ---- */

hero_progress_t *hero_progress_new(FILE *out, bool tty, const char *title)
{
    hero_progress_t *p = hero_xcalloc(1, sizeof *p);
    p->out = out;
    p->tty = tty;
    p->title = hero_xstrdup(title ? title : "");
    p->started = progress_clock();
    if (tty) { /* append to the region */
        hero_progress_t **tail = &region_head;
        while (*tail)
            tail = &(*tail)->next;
        *tail = p;
        progress_tick(p);
    }
    return p;
}

int hero_progress_item(hero_progress_t *p, const char *label, uint64_t total)
{
    if (!p)
        return -1;
    if (p->n_items == p->cap_items) {
        p->cap_items = p->cap_items ? 2 * p->cap_items : 8;
        p->items = hero_xrealloc(p->items, (size_t)p->cap_items * sizeof *p->items);
    }
    progress_item_t *it = &p->items[p->n_items];
    memset(it, 0, sizeof *it);
    it->label = hero_xstrdup(label ? label : "");
    it->total = total;
    progress_tick(p);
    return p->n_items++;
}

void hero_progress_update(hero_progress_t *p, int item, uint64_t done)
{
    if (!p || item < 0 || item >= p->n_items)
        return;
    progress_item_t *it = &p->items[item];
    uint64_t now = progress_clock();
    if (!it->started)
        it->started = now;
    if (!p->first_update)
        p->first_update = now;
    it->done = done;
    progress_tick(p);
}

void hero_progress_item_done(hero_progress_t *p, int item, const char *state)
{
    if (!p || item < 0 || item >= p->n_items)
        return;
    progress_item_t *it = &p->items[item];
    /* keep a static string: the three documented states, anything else is "failed" */
    it->state = !state || !strcmp(state, "done") ? "done"
                : !strcmp(state, "exists")       ? "exists"
                                                 : "failed";
    if (it->state[0] == 'd' && it->total && it->done < it->total)
        it->done = it->total; /* the last update may not have been reported */
    progress_tick(p);
}

void hero_progress_finish(hero_progress_t *p, bool ok)
{
    if (!p)
        return;
    uint64_t now = progress_clock();
    if (p->tty) {
        hero_progress_t **link = &region_head;
        while (*link && *link != p)
            link = &(*link)->next;
        if (*link)
            *link = p->next;
        progress_redraw(now, p, ok);
        if (!region_head) { /* the region is empty: the next one starts afresh */
            region_lines = 0;
            region_ever = false;
        }
    } else {
        char line[PROGRESS_LINE];
        progress_summary(p, now, ok, line, sizeof line);
        fprintf(p->out, "%s\n", line);
        fflush(p->out);
    }
    for (int i = 0; i < p->n_items; i++)
        free(p->items[i].label);
    free(p->items);
    free(p->title);
    free(p);
}
