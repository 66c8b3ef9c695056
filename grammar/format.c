/* `hero fmt` (the canonical form) and `hero dump` (the meaning of each action). */
#include <stdlib.h>
#include <string.h>

#include "heroscript.h"

enum { FMT_INDENT = 4, FMT_WIDTH = 80 };

/* ---- dump ---- */
static void dump_str(FILE *out, const char *p, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void dump_item(FILE *out, const hs_item_t *it, bool scalar)
{
    /* Quoting only changes the meaning of a scalar with a comma (an unquoted one
     * splits into a list for list parameters), so only there is it shown. */
    if (scalar && memchr(it->p, ',', it->len))
        fputc(it->quoted ? 'q' : 'u', out);
    dump_str(out, it->p, it->len);
}

void hs_dump_action(FILE *out, const hs_action_t *a)
{
    fprintf(out, "%.*s%.*s.%.*s", a->kind, "!!!!", (int)a->actor.len, a->actor.p,
            (int)a->name.len, a->name.p);
    for (uint32_t i = 0; i < a->nparams; i++) {
        const hs_param_t *p = &a->params[i];
        fputc(' ', out);
        if (p->key.p) {
            for (uint32_t k = 0; k < p->key.len; k++) {
                char c = p->key.p[k];
                fputc(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c, out);
            }
        } else {
            fputc('_', out);
        }
        fputc('=', out);
        switch (p->form) {
        case HS_VAL_EMPTY:
            fputs("<empty>", out);
            break;
        case HS_VAL_SCALAR:
            /* a bare word is one value, quoted or not: only a key:value shows it */
            dump_item(out, &hs_param_items(p)[0], p->key.p != NULL);
            break;
        default:
            fputs(p->form == HS_VAL_BRACKET ? "[" : "(", out);
            for (uint32_t j = 0; j < p->nitems; j++) {
                if (j)
                    fputc(',', out);
                dump_item(out, &hs_param_items(p)[j], false);
            }
            fputs(p->form == HS_VAL_BRACKET ? "]" : ")", out);
        }
    }
    fputc('\n', out);
}

/* ---- fmt ---- */
typedef struct fbuf {
    char *p;
    size_t n, cap;
} fbuf_t;

static void fb_put(fbuf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void fb_puts(fbuf_t *b, const char *s)
{
    fb_put(b, s, strlen(s));
}

static void fb_spaces(fbuf_t *b, int n)
{
    while (n-- > 0)
        fb_put(b, " ", 1);
}

static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '/' || c == '-'; /* as the lexer's key rule */
}

typedef enum { CTX_VALUE, CTX_LISTITEM, CTX_BRACKET, CTX_POSITIONAL } item_ctx_t;

/* Can the item be written without quotes in this place and mean the same? */
static bool can_be_bare(const hs_item_t *it, item_ctx_t ctx)
{
    if (it->len == 0)
        return false;
    const char *p = it->p;
    size_t n = it->len;
    /* An unquoted value or list item came from a bare word in this same place: it
     * reads back the same, while quotes would change the meaning of a comma in it
     * (an unquoted item splits on commas for list parameters). put_param writes no
     * blank before an item starting with `//`, which would read as a comment. */
    if (!it->quoted && (ctx == CTX_VALUE || ctx == CTX_LISTITEM))
        return true;
    if (p[0] == '\'' || p[0] == '"' || p[0] == '[' || p[0] == ',' || p[n - 1] == ',')
        return false;
    if (n >= 2 && p[0] == '/' && p[1] == '/' && ctx != CTX_VALUE)
        return false;
    /* a bare word alone on its line would read as a comment or an action */
    if (ctx == CTX_POSITIONAL && (p[0] == '#' || p[0] == '!'))
        return false;
    /* `'a', 'b'` goes on as a list only after a quoted item: keep them quoted */
    if (ctx == CTX_LISTITEM)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f)
            return false;
        if (c == ',' && (it->quoted || ctx != CTX_VALUE))
            return false;
        if (ctx == CTX_BRACKET && (c == ']' || c == '\'' || c == '"'))
            return false;
    }
    if (ctx == CTX_POSITIONAL || ctx == CTX_LISTITEM) {
        /* `word:` would read back as a key */
        size_t i = 0;
        while (i < n && is_key_char(p[i]))
            i++;
        if (i > 0 && i < n && p[i] == ':')
            return false;
    }
    return true;
}

static void put_quoted_line(fbuf_t *b, const char *p, size_t n, char q)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == q) {
            char e[2] = {'\\', q};
            fb_put(b, e, 2);
        } else if (p[i] == '\\' && (i + 1 == n || p[i + 1] == q || p[i + 1] == '\\')) {
            fb_put(b, "\\\\", 2);
        } else {
            fb_put(b, &p[i], 1);
        }
    }
}

static void put_item(fbuf_t *b, const hs_item_t *it, item_ctx_t ctx, int indent)
{
    if (can_be_bare(it, ctx)) {
        fb_put(b, it->p, it->len);
        return;
    }
    char q = memchr(it->p, '\'', it->len) && !memchr(it->p, '"', it->len) ? '"' : '\'';
    fb_put(b, &q, 1);
    if (!memchr(it->p, '\n', it->len)) {
        put_quoted_line(b, it->p, it->len, q);
    } else {
        /* one line per line of the value, indented one step deeper than the key; the
         * lexer's dedent takes exactly that indentation away again. When every line
         * of text starts with a blank, dedent would take those blanks too: then the
         * first line goes right after the quote, where it is kept as it is. */
        const char *p = it->p, *e = it->p + it->len;
        bool all_indented = true, any_text = false;
        for (const char *l = p; l <= e && all_indented;) {
            const char *le = memchr(l, '\n', (size_t)(e - l));
            if (!le)
                le = e;
            const char *t = l;
            while (t < le && (*t == ' ' || *t == '\t'))
                t++;
            if (t < le) {
                any_text = true;
                all_indented = t > l;
            }
            l = le + 1;
        }
        if (any_text && all_indented) {
            const char *le = memchr(p, '\n', (size_t)(e - p));
            put_quoted_line(b, p, (size_t)(le - p), q);
            p = le + 1;
        }
        while (p <= e) {
            const char *le = memchr(p, '\n', (size_t)(e - p));
            if (!le)
                le = e;
            fb_put(b, "\n", 1);
            if (le > p) {
                fb_spaces(b, indent + FMT_INDENT);
                put_quoted_line(b, p, (size_t)(le - p), q);
            }
            if (le == e)
                break;
            p = le + 1;
        }
        fb_put(b, "\n", 1);
        fb_spaces(b, indent);
    }
    fb_put(b, &q, 1);
}

static void put_param(fbuf_t *b, const hs_param_t *p, int indent)
{
    item_ctx_t ctx = CTX_VALUE;
    if (p->key.p) {
        for (uint32_t k = 0; k < p->key.len; k++) {
            char c = p->key.p[k];
            c = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
            fb_put(b, &c, 1);
        }
        fb_put(b, ":", 1);
    } else {
        ctx = CTX_POSITIONAL;
    }
    switch (p->form) {
    case HS_VAL_EMPTY:
        break;
    case HS_VAL_SCALAR:
        put_item(b, &hs_param_items(p)[0], ctx, indent);
        break;
    case HS_VAL_LIST:
        for (uint32_t i = 0; i < p->nitems; i++) {
            const hs_item_t *it = &hs_param_items(p)[i];
            if (i)
                fb_puts(b, !it->quoted && it->len >= 2 && it->p[0] == '/' && it->p[1] == '/'
                               ? ","
                               : ", ");
            put_item(b, &hs_param_items(p)[i], CTX_LISTITEM, indent);
        }
        break;
    case HS_VAL_BRACKET:
        fb_puts(b, "[");
        for (uint32_t i = 0; i < p->nitems; i++) {
            if (i)
                fb_puts(b, ", ");
            put_item(b, &hs_param_items(p)[i], CTX_BRACKET, indent);
        }
        fb_puts(b, "]");
        break;
    }
}

static uint32_t line_of(const hs_source_t *s, uint32_t off)
{
    uint32_t l, c;
    hs_source_linecol(s, off, &l, &c);
    return l;
}

static bool line_blank(const hs_source_t *s, uint32_t line)
{
    if (line < 1 || line > s->nlines)
        return false;
    const char *p = s->text + s->lines[line - 1];
    for (; *p && *p != '\n'; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return false;
    return true;
}

static void put_comment(fbuf_t *b, const hs_source_t *s, const hs_comment_t *c)
{
    fb_put(b, s->text + c->off, c->len);
}

void hs_format(FILE *out, const hs_doc_t *doc)
{
    const hs_source_t *s = doc->src;
    fbuf_t b = {0};
    size_t ci = 0;
    bool any = false;
    for (size_t ai = 0; ai <= doc->nactions; ai++) {
        const hs_action_t *a = ai < doc->nactions ? &doc->actions[ai] : NULL;
        uint32_t aoff = a ? a->off : UINT32_MAX;
        /* whole-line comments before this action */
        for (; ci < doc->ncomments && doc->comments[ci].off < aoff; ci++) {
            const hs_comment_t *c = &doc->comments[ci];
            if (any && line_blank(s, line_of(s, c->off) - 1))
                fb_puts(&b, "\n");
            if (c->indented || c->trailing)
                fb_spaces(&b, FMT_INDENT); /* orphan: inside a block we could not place */
            put_comment(&b, s, c);
            fb_puts(&b, "\n");
            any = true;
        }
        if (!a)
            break;
        if (any && line_blank(s, line_of(s, a->off) - 1))
            fb_puts(&b, "\n");
        any = true;
        uint32_t next_off = ai + 1 < doc->nactions ? doc->actions[ai + 1].off : UINT32_MAX;
        /* comments inside this action's span: indented lines and trailing ones */
        size_t cend = ci;
        while (cend < doc->ncomments && doc->comments[cend].off < next_off &&
               (doc->comments[cend].indented || doc->comments[cend].trailing))
            cend++;
        bool multiline = false;
        /* `key:` followed by another parameter on its line would read `key: next`
         * as key:next: an empty value ends its line */
        for (uint32_t i = 0; i + 1 < a->nparams; i++)
            multiline |= a->params[i].form == HS_VAL_EMPTY;
        for (uint32_t i = 0; i < a->nparams; i++)
            for (uint32_t j = 0; j < a->params[i].nitems; j++)
                multiline |= memchr(hs_param_items(&a->params[i])[j].p, '\n', hs_param_items(&a->params[i])[j].len) != NULL;
        /* try one line */
        fbuf_t line = {0};
        fb_put(&line, "!!!!", a->kind);
        fb_put(&line, a->actor.p, a->actor.len);
        fb_puts(&line, ".");
        fb_put(&line, a->name.p, a->name.len);
        size_t head_len = line.n;
        for (uint32_t i = 0; i < a->nparams && !multiline; i++) {
            fb_puts(&line, " ");
            put_param(&line, &a->params[i], 0);
        }
        if (!multiline && cend == ci && line.n <= FMT_WIDTH) {
            fb_put(&b, line.p, line.n);
            fb_puts(&b, "\n");
            free(line.p);
            continue;
        }
        fb_put(&b, line.p, head_len);
        free(line.p);
        /* trailing comments on the action line itself */
        uint32_t first_param_off = a->nparams ? a->params[0].key.off : next_off;
        for (; ci < cend && doc->comments[ci].off < first_param_off; ci++) {
            const hs_comment_t *c = &doc->comments[ci];
            if (c->trailing) {
                fb_puts(&b, " ");
                put_comment(&b, s, c);
            } else {
                fb_puts(&b, "\n");
                fb_spaces(&b, FMT_INDENT);
                put_comment(&b, s, c);
            }
        }
        fb_puts(&b, "\n");
        for (uint32_t i = 0; i < a->nparams; i++) {
            const hs_param_t *p = &a->params[i];
            uint32_t poff = p->key.off;
            /* indented comment lines before this parameter */
            for (; ci < cend && doc->comments[ci].off < poff; ci++) {
                fb_spaces(&b, FMT_INDENT);
                put_comment(&b, s, &doc->comments[ci]);
                fb_puts(&b, "\n");
            }
            fb_spaces(&b, FMT_INDENT);
            put_param(&b, p, FMT_INDENT);
            uint32_t pnext = i + 1 < a->nparams ? a->params[i + 1].key.off : next_off;
            /* a trailing comment that follows this parameter on its line */
            if (ci < cend && doc->comments[ci].trailing && doc->comments[ci].off < pnext) {
                fb_puts(&b, " ");
                put_comment(&b, s, &doc->comments[ci]);
                ci++;
            }
            fb_puts(&b, "\n");
        }
        for (; ci < cend; ci++) {
            fb_spaces(&b, FMT_INDENT);
            put_comment(&b, s, &doc->comments[ci]);
            fb_puts(&b, "\n");
        }
    }
    if (b.n)
        fwrite(b.p, 1, b.n, out);
    free(b.p);
}

char *hs_format_string(const hs_doc_t *doc, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        abort();
    hs_format(f, doc);
    fclose(f);
    return buf;
}
