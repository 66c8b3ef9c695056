/* The HeroScript lexer (re2c). HeroScript is line-oriented: a line is blank, a
 * comment, an action line (`!!actor.name ...`), a parameter line (indented, inside an
 * action's block), or text. The lexer tracks the block, so the grammar only sees
 * tokens. Modes: LINE (at the start of a line), PARAMS (between parameters), VALUE
 * (right after `key:`), AFTERV (after a value item: a ',' continues a list) and LIST
 * (inside `[...]`). Quoted strings, which may span lines, are scanned by hand. */
#include <string.h>

#include "grammar/parse_int.h"
#include "parser.h"
#include "runtime/error.h"

enum { M_LINE, M_PARAMS, M_VALUE, M_AFTERV, M_LIST };

/*!re2c
    re2c:define:YYCTYPE = "unsigned char";
    re2c:define:YYCURSOR = "lx->cur";
    re2c:define:YYLIMIT = "lx->lim";
    re2c:define:YYMARKER = "marker";
    re2c:yyfill:enable = 0;
    re2c:eof = 0;

    ws   = [ \t];
    eol  = "\r"? "\n";
    nl   = [\r\n];
    key  = [A-Za-z0-9_./-]+;   /* '-' is never valid, but `keep-alive:` reads as a (wrong) key */
    any  = [^ \t\r\n\x00];
*/

void hs_lexer_init(hs_lexer_t *lx, const hs_source_t *src, hs_arena_t *arena, hs_diags_t *diags,
                   bool keep_comments)
{
    memset(lx, 0, sizeof(*lx));
    lx->src = src;
    lx->arena = arena;
    lx->diags = diags;
    lx->cur = (const unsigned char *)src->text;
    lx->lim = lx->cur + src->len;
    lx->mode = M_LINE;
    lx->keep_comments = keep_comments;
}

static uint32_t off_of(const hs_lexer_t *lx, const unsigned char *p)
{
    return (uint32_t)(p - (const unsigned char *)lx->src->text);
}

static void add_comment(hs_lexer_t *lx, const unsigned char *p, bool trailing, bool indented)
{
    if (!lx->keep_comments)
        return;
    const unsigned char *e = p;
    while (e < lx->lim && *e != '\n')
        e++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    if (lx->ncomments == lx->capcomments) {
        lx->capcomments = lx->capcomments ? lx->capcomments * 2 : 16;
        lx->comments = hero_xrealloc(lx->comments, lx->capcomments * sizeof(hs_comment_t));
    }
    lx->comments[lx->ncomments++] =
        (hs_comment_t){off_of(lx, p), (uint32_t)(e - p), trailing, indented};
}

/* Moves to the start of the next line. */
static void skip_line(hs_lexer_t *lx)
{
    const unsigned char *e = memchr(lx->cur, '\n', (size_t)(lx->lim - lx->cur));
    lx->cur = e ? e + 1 : lx->lim;
}

static void set_item(hs_item_t *it, const char *p, size_t len, uint32_t off, bool quoted)
{
    it->p = p;
    it->len = (uint32_t)len;
    it->off = off;
    it->quoted = quoted;
}

static bool is_lower_ident(const char *p, size_t n)
{
    if (n == 0 || !(p[0] >= 'a' && p[0] <= 'z'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
            return false;
    return true;
}

/* An action line: `lx->cur` is at the first '!'. */
static int lex_action(hs_lexer_t *lx, hs_tok_t *t)
{
    const unsigned char *start = lx->cur, *p = lx->cur;
    while (p < lx->lim && *p == '!')
        p++;
    const unsigned char *ns = p;
    while (p < lx->lim && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p)
        p++;
    lx->cur = p;
    size_t nbang = (size_t)(ns - start);
    memset(t, 0, sizeof(*t));
    t->off = off_of(lx, start);
    t->kind = nbang > 4 ? 4 : (uint8_t)nbang;
    const char *name = (const char *)ns;
    size_t n = (size_t)(p - ns);
    if (nbang > 4) {
        hs_diag_add(lx->diags, HS_ERROR, lx->src, t->off,
                    "an action starts with one to four '!', not %zu", nbang);
        t->bad = 1;
    }
    const char *dot = memchr(name, '.', n);
    if (!dot) {
        set_item(&t->a, "core", 4, off_of(lx, ns), false);
        set_item(&t->b, name, n, off_of(lx, ns), false);
    } else {
        set_item(&t->a, name, (size_t)(dot - name), off_of(lx, ns), false);
        set_item(&t->b, dot + 1, n - (size_t)(dot - name) - 1,
                 off_of(lx, (const unsigned char *)dot + 1), false);
    }
    if (t->bad)
        return HS_T_ACTION;
    if (dot && memchr(dot + 1, '.', n - (size_t)(dot - name) - 1)) {
        hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, ns),
                    "action name '%.*s' has more than two parts; expected actor.action",
                    (int)n, name);
        t->bad = 1;
    } else if (!is_lower_ident(t->a.p, t->a.len) || !is_lower_ident(t->b.p, t->b.len)) {
        bool upper = false;
        for (size_t i = 0; i < n; i++)
            upper |= name[i] >= 'A' && name[i] <= 'Z';
        if (upper)
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, ns),
                        "action names are lower-case: '%.*s'", (int)n, name);
        else
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, ns),
                        "invalid action name '%.*s': expected actor.action, each part a "
                        "lower-case identifier",
                        (int)n, name);
        t->bad = 1;
    }
    return HS_T_ACTION;
}

/* Dedents a multi-line string: a first line holding only blanks is dropped, so is a
 * last line holding only blanks (the closing quote's indent), and the indentation
 * common to the remaining non-blank lines is removed. A first line with text (the
 * value went on right after the opening quote) is kept as written and does not count
 * for the common indentation. Works in place; returns the new length. */
static bool blank_span(const char *p, const char *e)
{
    for (; p < e; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return false;
    return true;
}

static size_t dedent(char *s, size_t n)
{
    char *end = s + n;
    char *nl0 = memchr(s, '\n', n);
    if (!nl0)
        return n;
    bool keep_first = !blank_span(s, nl0);
    /* the content lines run from `from` to `to` (exclusive, without its '\n') */
    char *from = keep_first ? s : nl0 + 1;
    char *lastl = end;
    while (lastl > s && lastl[-1] != '\n')
        lastl--;
    char *to = end;
    if (blank_span(lastl, end) && lastl > s)
        to = lastl - 1 >= from ? lastl - 1 : from; /* drop it and the '\n' before it */
    size_t common = (size_t)-1;
    for (char *p = keep_first ? nl0 + 1 : from; p < to;) {
        char *le = memchr(p, '\n', (size_t)(to - p));
        if (!le)
            le = to;
        size_t ind = 0;
        while (p + ind < le && (p[ind] == ' ' || p[ind] == '\t'))
            ind++;
        if (!blank_span(p, le) && ind < common)
            common = ind;
        p = le + 1;
    }
    if (common == (size_t)-1)
        common = 0;
    char *w = s;
    bool first = true;
    for (char *p = from; p <= to;) {
        char *le = p < to ? memchr(p, '\n', (size_t)(to - p)) : NULL;
        if (!le)
            le = to;
        size_t ind = 0;
        if (!(first && keep_first))
            while (ind < common && p + ind < le && (p[ind] == ' ' || p[ind] == '\t'))
                ind++;
        if (!first)
            *w++ = '\n';
        size_t len = (size_t)(le - p) - ind;
        while (len && p[ind + len - 1] == '\r')
            len--; /* a CRLF file: the value's lines end in '\n' alone */
        if (!(first && keep_first) && blank_span(p, le))
            len = 0; /* a line of blanks is an empty line, as textwrap.dedent has it */
        memmove(w, p + ind, len);
        w += len;
        first = false;
        if (le == to)
            break;
        p = le + 1;
    }
    return (size_t)(w - s);
}

/* A quoted string at lx->cur. Returns 0 and reports when it is never closed (and
 * then resumes at the end of the opening line). */
static int lex_quoted(hs_lexer_t *lx, hs_tok_t *t)
{
    const unsigned char *q = lx->cur;
    unsigned char qc = *q;
    bool triple = lx->lim - q >= 3 && q[1] == qc && q[2] == qc;
    const unsigned char *p = q + (triple ? 3 : 1), *body = p;
    bool escapes = false, multiline = false, closed = false;
    while (p < lx->lim) {
        if (*p == '\\' && p + 1 < lx->lim && (p[1] == qc || p[1] == '\\')) {
            escapes = true;
            p += 2;
            continue;
        }
        if (*p == '\n')
            multiline = true;
        if (*p == qc && (!triple || (lx->lim - p >= 3 && p[1] == qc && p[2] == qc))) {
            closed = true;
            break;
        }
        p++;
    }
    memset(t, 0, sizeof(*t));
    t->off = off_of(lx, q);
    if (!closed) {
        hs_diag_add(lx->diags, HS_ERROR, lx->src, t->off,
                    triple ? "unclosed quote: this %c%c%c is never closed"
                           : "unclosed quote: this %c is never closed",
                    qc, qc, qc);
        /* By the language everything after it is inside the string, so nothing
         * after it is read: no errors that follow from this one. */
        lx->cur = lx->lim;
        lx->mode = M_LINE;
        lx->taint = true;
        return 0;
    }
    const unsigned char *bend = p;
    lx->cur = p + (triple ? 3 : 1);
    size_t n = (size_t)(bend - body);
    if (!escapes && !multiline) {
        set_item(&t->a, (const char *)body, n, t->off, true);
        return HS_T_QSTRING;
    }
    char *s = hs_arena_strndup(lx->arena, (const char *)body, n);
    if (multiline)
        n = dedent(s, n);
    if (escapes) {
        char *w = s;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\\' && i + 1 < n && (s[i + 1] == (char)qc || s[i + 1] == '\\'))
                i++;
            *w++ = s[i];
        }
        n = (size_t)(w - s);
    }
    s[n] = 0;
    set_item(&t->a, s, n, t->off, true);
    t->multiline = multiline;
    return HS_T_QSTRING;
}

/* The start of a line. Returns a token, or 0 when the line produced none. */
static int lex_line(hs_lexer_t *lx, hs_tok_t *t, bool *eof)
{
    const unsigned char *ls = lx->cur, *q = ls;
    while (q < lx->lim && (*q == ' ' || *q == '\t'))
        q++;
    bool indent = q > ls;
    if (q >= lx->lim) {
        *eof = true;
        return 0;
    }
    if (*q == '\n' || (*q == '\r' && q + 1 < lx->lim && q[1] == '\n')) {
        lx->cur = q; /* a blank line: the block goes on */
        skip_line(lx);
        return 0;
    }
    if (*q == '#' || (*q == '/' && q + 1 < lx->lim && q[1] == '/')) {
        add_comment(lx, q, false, indent && lx->in_block);
        if (!indent)
            lx->in_block = false;
        lx->cur = q;
        skip_line(lx);
        return 0;
    }
    if (*q == '!') {
        const unsigned char *b = q;
        while (b < lx->lim && *b == '!')
            b++;
        if (b < lx->lim && *b != '[' && *b != ' ' && *b != '\t' && *b != '\r' && *b != '\n' &&
            *b != 0) {
            lx->cur = q;
            lx->in_block = true;
            lx->mode = M_PARAMS;
            return lex_action(lx, t);
        }
        if (!lx->src->markdown && b - q >= 2 && (b >= lx->lim || *b != '[')) {
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, b),
                        "the action's name follows the '!' directly: !!actor.name");
            lx->in_block = false;
            lx->cur = q;
            skip_line(lx);
            return 0;
        }
    }
    if (indent && lx->in_block) {
        lx->cur = q;
        lx->mode = M_PARAMS;
        lx->after_ws = true;
        return 0;
    }
    if (!indent)
        lx->in_block = false;
    if (!lx->src->markdown) {
        if (*q == 0 && q < lx->lim)
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, q), "NUL byte in the file");
        else if (indent)
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, q),
                        "indented text outside an action: parameter lines belong under an "
                        "action line (`!!actor.name`)");
        else
            hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, q),
                        "text at column 0 is not an action or a comment: actions start with "
                        "'!!', parameter lines are indented, comments start with '//' or '#'");
    }
    lx->cur = q;
    skip_line(lx);
    return 0;
}

int hs_lex(hs_lexer_t *lx, hs_tok_t *t)
{
    if (lx->pending) {
        int c = lx->pending;
        *t = lx->pending_tok;
        lx->pending = 0;
        return c;
    }
    const unsigned char *marker = NULL;
    (void)marker;
    for (;;) {
        lx->tok = lx->cur;
        switch (lx->mode) {
        case M_LINE: {
            bool eof = false;
            int c = lex_line(lx, t, &eof);
            if (eof)
                return 0;
            if (c)
                return c;
            continue;
        }
        case M_PARAMS:
            /*!re2c
                re2c:define:YYCTYPE = "unsigned char"; re2c:define:YYCURSOR = "lx->cur"; re2c:define:YYLIMIT = "lx->lim"; re2c:define:YYMARKER = "marker"; re2c:yyfill:enable = 0; re2c:eof = 0;
                $            { return 0; }
                [\x00]       { hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, lx->tok), "NUL byte in the file"); continue; }
                ws+          { lx->after_ws = true; continue; }
                eol | "\r"   { lx->mode = M_LINE; lx->after_ws = false; continue; }
                "//" [^\n\x00]* {
                    add_comment(lx, lx->tok, true, false);
                    continue;
                }
                key ":" any* {
                    /* the key rule wins ties with the word rule below; the value is
                     * lexed in VALUE mode */
                    const unsigned char *c = lx->tok;
                    while (*c != ':') c++;
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->tok);
                    set_item(&t->a, (const char *)lx->tok, (size_t)(c - lx->tok), t->off, false);
                    lx->cur = c + 1;
                    lx->mode = M_VALUE;
                    lx->after_ws = false;
                    lx->in_list = false;
                    return HS_T_KEY;
                }
                ['"] {
                    lx->cur = lx->tok;
                    int c = lex_quoted(lx, t);
                    lx->after_ws = false;
                    if (c) return c;
                    continue;
                }
                [^ \t\r\n\x00'"] any* {
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->tok);
                    set_item(&t->a, (const char *)lx->tok, (size_t)(lx->cur - lx->tok), t->off, false);
                    lx->after_ws = false;
                    return HS_T_RAW;
                }
            */
        case M_VALUE:
            /*!re2c
                re2c:define:YYCTYPE = "unsigned char"; re2c:define:YYCURSOR = "lx->cur"; re2c:define:YYLIMIT = "lx->lim"; re2c:define:YYMARKER = "marker"; re2c:yyfill:enable = 0; re2c:eof = 0;
                $            { lx->mode = M_PARAMS; memset(t, 0, sizeof(*t)); t->off = off_of(lx, lx->tok); return HS_T_EMPTYVAL; }
                ws+          { lx->after_ws = true; continue; }
                [\x00] | eol | "\r" {
                    lx->cur = lx->tok;
                    lx->mode = M_PARAMS;
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->tok);
                    return HS_T_EMPTYVAL;
                }
                "//" [^\n\x00]* {
                    if (lx->after_ws) {
                        /* `key: // note`: an empty value and a comment */
                        lx->cur = lx->tok;
                        lx->mode = M_PARAMS;
                        memset(t, 0, sizeof(*t));
                        t->off = off_of(lx, lx->tok);
                        return HS_T_EMPTYVAL;
                    }
                    /* `url://x` keeps its slashes: lex as a word */
                    lx->cur = lx->tok;
                    while (lx->cur < lx->lim && *lx->cur != ' ' && *lx->cur != '\t' && *lx->cur != '\n' && *lx->cur != '\r' && *lx->cur)
                        lx->cur++;
                    goto value_word;
                }
                "[" {
                    lx->mode = M_LIST;
                    lx->list_open = off_of(lx, lx->tok);
                    memset(t, 0, sizeof(*t));
                    t->off = lx->list_open;
                    return HS_T_LBRACK;
                }
                ['"] {
                    lx->cur = lx->tok;
                    int c = lex_quoted(lx, t);
                    if (!c) {
                        /* reported; stand in an empty value so the action survives */
                        memset(t, 0, sizeof(*t));
                        t->off = off_of(lx, lx->tok);
                        return HS_T_EMPTYVAL;
                    }
                    lx->mode = M_AFTERV;
                    lx->in_list = true;
                    return c;
                }
                [^ \t\r\n\x00'"[] any* { goto value_word; }
            */
        value_word: {
            size_t n = (size_t)(lx->cur - lx->tok);
            memset(t, 0, sizeof(*t));
            t->off = off_of(lx, lx->tok);
            lx->after_ws = false;
            if (lx->in_list && n > 1 && lx->tok[n - 1] == ',') {
                /* `'a', b, c`: inside a list begun by a quoted item, a word's trailing
                 * comma continues the list (a plain `a,b` stays one word) */
                set_item(&t->a, (const char *)lx->tok, n - 1, t->off, false);
                lx->pending = HS_T_COMMA;
                memset(&lx->pending_tok, 0, sizeof(lx->pending_tok));
                lx->pending_tok.off = t->off + (uint32_t)n - 1;
                lx->mode = M_VALUE;
                return HS_T_RAW;
            }
            if (lx->in_list && lx->tok[0] == ',') {
                /* `'a',,'b'`: a second comma is a separator with nothing before it */
                lx->cur = lx->tok + 1;
                lx->mode = M_VALUE;
                return HS_T_COMMA;
            }
            set_item(&t->a, (const char *)lx->tok, n, t->off, false);
            lx->mode = lx->in_list ? M_AFTERV : M_PARAMS;
            return HS_T_RAW;
        }
        case M_AFTERV:
            /*!re2c
                re2c:define:YYCTYPE = "unsigned char"; re2c:define:YYCURSOR = "lx->cur"; re2c:define:YYLIMIT = "lx->lim"; re2c:define:YYMARKER = "marker"; re2c:yyfill:enable = 0; re2c:eof = 0;
                ws* "," {
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->cur - 1);
                    lx->mode = M_VALUE;
                    lx->after_ws = false;
                    return HS_T_COMMA;
                }
                *  { lx->cur = lx->tok; lx->mode = M_PARAMS; continue; }
                $  { lx->cur = lx->tok; lx->mode = M_PARAMS; continue; }
            */
        case M_LIST:
            /*!re2c
                re2c:define:YYCTYPE = "unsigned char"; re2c:define:YYCURSOR = "lx->cur"; re2c:define:YYLIMIT = "lx->lim"; re2c:define:YYMARKER = "marker"; re2c:yyfill:enable = 0; re2c:eof = 0;
                [\x00] { hs_diag_add(lx->diags, HS_ERROR, lx->src, off_of(lx, lx->tok), "NUL byte in the file"); continue; }
                $ {
                    hs_diag_add(lx->diags, HS_ERROR, lx->src, lx->list_open,
                                "unclosed '[': the list is never closed");
                    lx->cur = lx->lim;
                    lx->mode = M_PARAMS;
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->cur);
                    return HS_T_RBRACK;
                }
                ws+ | eol | "\r" { continue; }
                eol ws* "!"+ [a-z] {
                    /* an action line: the list was never closed */
                    hs_diag_add(lx->diags, HS_ERROR, lx->src, lx->list_open,
                                "unclosed '[': the list is never closed");
                    lx->cur = lx->tok;
                    skip_line(lx);
                    lx->mode = M_LINE;
                    memset(t, 0, sizeof(*t));
                    t->off = lx->list_open;
                    return HS_T_RBRACK;
                }
                "//" [^\n\x00]* { add_comment(lx, lx->tok, true, false); continue; }
                "," { memset(t, 0, sizeof(*t)); t->off = off_of(lx, lx->tok); return HS_T_COMMA; }
                "]" { memset(t, 0, sizeof(*t)); t->off = off_of(lx, lx->tok); lx->mode = M_PARAMS; return HS_T_RBRACK; }
                ['"] {
                    lx->cur = lx->tok;
                    int c = lex_quoted(lx, t);
                    if (!c) {
                        /* the list cannot be trusted any more */
                        lx->mode = M_LINE;
                        memset(t, 0, sizeof(*t));
                        t->off = lx->list_open;
                        return HS_T_RBRACK;
                    }
                    return c;
                }
                [^ \t\r\n\x00,\]'"] [^ \t\r\n\x00,\]]* {
                    memset(t, 0, sizeof(*t));
                    t->off = off_of(lx, lx->tok);
                    set_item(&t->a, (const char *)lx->tok, (size_t)(lx->cur - lx->tok), t->off, false);
                    return HS_T_RAW;
                }
            */
        }
    }
}
