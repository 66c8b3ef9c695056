/* Diagnostics: `file:line:col: error: message`, the source line, a caret. */
#include "heroscript.h"
#include "runtime/error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void hs_diag_add(hs_diags_t *d, hs_level_t level, const hs_source_t *src, uint32_t off,
                 const char *fmt, ...)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->v = hero_xrealloc(d->v, d->cap * sizeof(hs_diag_t));
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = hero_xvasprintf(fmt, ap);
    va_end(ap);
    d->v[d->n] = (hs_diag_t){level, src, off, msg, d->n};
    d->n++;
    if (level == HS_ERROR)
        d->nerrors++;
    else
        d->nwarnings++;
}

static long long diag_key(const hs_diag_t *x)
{
    return x->src ? ((long long)x->src->id << 32 | x->off) : -1;
}

static int cmp_diag(const void *a, const void *b)
{
    const hs_diag_t *x = a, *y = b;
    long long kx = diag_key(x), ky = diag_key(y);
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq); /* stable: insertion order on ties */
}

void hs_diags_sort(hs_diags_t *d)
{
    if (d->n > 1)
        qsort(d->v, d->n, sizeof(hs_diag_t), cmp_diag);
}

void hs_diag_print(FILE *f, const hs_diag_t *dg, bool color)
{
    const char *lvl = dg->level == HS_ERROR ? "error" : "warning";
    const char *on = "", *off = "", *bold = "";
    if (color) {
        on = dg->level == HS_ERROR ? "\033[1;31m" : "\033[1;35m";
        off = "\033[0m";
        bold = "\033[1m";
    }
    if (!dg->src) {
        fprintf(f, "%shero:%s %s%s:%s %s\n", bold, off, on, lvl, off, dg->msg);
        return;
    }
    uint32_t line, bytecol;
    hs_source_linecol(dg->src, dg->off, &line, &bytecol);
    const char *ls = dg->src->text + dg->src->lines[line - 1];
    const char *le = strchr(ls, '\n');
    size_t n = le ? (size_t)(le - ls) : strlen(ls);
    if (n && ls[n - 1] == '\r')
        n--;
    /* The column counts characters, not bytes, so that it and the caret agree with
     * what an editor shows for UTF-8 text. */
    uint32_t col = 1;
    for (uint32_t i = 0; i + 1 < bytecol && i < n; i++)
        col += ((unsigned char)ls[i] & 0xc0) != 0x80;
    fprintf(f, "%s%s:%u:%u:%s %s%s:%s %s\n", bold, dg->src->path, line, col, off, on, lvl, off,
            dg->msg);
    fprintf(f, "    %.*s\n    ", (int)n, ls);
    /* Copy tabs so the caret lines up whatever the tab width. */
    for (uint32_t i = 0; i + 1 < bytecol && i < n; i++) {
        if (((unsigned char)ls[i] & 0xc0) == 0x80)
            continue;
        fputc(ls[i] == '\t' ? '\t' : ' ', f);
    }
    fprintf(f, "%s^%s\n", on, off);
}

void hs_diags_print(FILE *f, const hs_diags_t *d, bool color)
{
    for (size_t i = 0; i < d->n; i++)
        hs_diag_print(f, &d->v[i], color);
}

void hs_diags_free(hs_diags_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].msg);
    free(d->v);
    memset(d, 0, sizeof(*d));
}
