/* The grammar module's public header: sources, diagnostics, the AST, and the
 * loader that turns a playbook file (with its includes and variables) into a flat
 * list of actions. Everything here is independent of what the actions mean. */
#ifndef HERO_HEROSCRIPT_H
#define HERO_HEROSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- arena: every AST node and string of a playbook lives in one arena ---- */
typedef struct hs_arena hs_arena_t;
hs_arena_t *hs_arena_new(void);
void hs_arena_free(hs_arena_t *a);
void *hs_arena_alloc(hs_arena_t *a, size_t n);       /* 8-byte aligned, never NULL */
char *hs_arena_strndup(hs_arena_t *a, const char *s, size_t n);
size_t hs_arena_used(const hs_arena_t *a);

/* ---- sources ---- */
typedef struct hs_source {
    char *path;          /* as given on the command line or resolved by an include */
    const char *text;    /* the file's bytes, NUL-terminated (read, or mapped read-only) */
    uint32_t len;
    size_t mapped;       /* the length of the mapping when text is mapped, else 0 */
    uint32_t *lines;     /* byte offset of the start of each line, built on first use */
    uint32_t nlines;
    uint32_t id;         /* load order; diagnostics sort by (id, offset) */
    bool markdown;       /* .md: text at column 0 is prose, not an error */
} hs_source_t;

/* Reads `path` into a new source; returns NULL and sets *errno_out on failure. */
hs_source_t *hs_source_read(const char *path, int *errno_out);
/* Makes a source from memory (used by tests and the fuzzer); copies `text`. */
hs_source_t *hs_source_from_mem(const char *path, const char *text, size_t len, bool markdown);
void hs_source_free(hs_source_t *s);
/* 1-based line and column (column counts bytes) of a byte offset. */
void hs_source_linecol(const hs_source_t *s, uint32_t off, uint32_t *line, uint32_t *col);

/* ---- diagnostics ---- */
typedef enum { HS_ERROR, HS_WARNING } hs_level_t;

typedef struct hs_diag {
    hs_level_t level;
    const hs_source_t *src;  /* NULL for diagnostics without a location */
    uint32_t off;
    char *msg;               /* owned */
    size_t seq;              /* insertion order, keeps the sort stable */
} hs_diag_t;

typedef struct hs_diags {
    hs_diag_t *v;
    size_t n, cap;
    size_t nerrors, nwarnings;
} hs_diags_t;

void hs_diag_add(hs_diags_t *d, hs_level_t level, const hs_source_t *src, uint32_t off,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Stable sort by (source id, offset); diagnostics without a source come first. */
void hs_diags_sort(hs_diags_t *d);
/* `file:line:col: error: message`, the source line, and a caret under the column. */
void hs_diag_print(FILE *f, const hs_diag_t *dg, bool color);
void hs_diags_print(FILE *f, const hs_diags_t *d, bool color);
void hs_diags_free(hs_diags_t *d);

/* ---- the AST ---- */
/* A piece of text with its location. `p` points into the source when the text is
 * used as written, or into the arena when escapes, dedent or variables changed it. */
typedef struct hs_item {
    const char *p;
    uint32_t off;            /* source offset where the item starts (its quote, if any) */
    uint32_t len : 31;
    uint32_t quoted : 1;
} hs_item_t;

typedef enum {
    HS_VAL_EMPTY,            /* `key:` with nothing after it */
    HS_VAL_SCALAR,           /* one item; an unquoted one may still hold commas */
    HS_VAL_LIST,             /* `a, b` or `'a', 'b'`: items separated by commas */
    HS_VAL_BRACKET,          /* `[a, b]` */
} hs_val_form_t;

typedef struct hs_param {
    hs_item_t key;           /* key.p == NULL: a positional argument */
    union {
        hs_item_t one;       /* nitems == 1: the item itself (most values: saves memory) */
        hs_item_t *many;     /* otherwise: nitems items in the arena */
    } v;
    uint32_t nitems;
    uint8_t form;            /* hs_val_form_t */
    uint8_t multiline;       /* the (single) item was a multi-line quoted string */
} hs_param_t;

/* The value's items (nitems of them). */
static inline const hs_item_t *hs_param_items(const hs_param_t *p)
{
    return p->nitems == 1 ? &p->v.one : p->v.many;
}

static inline hs_item_t *hs_param_items_mut(hs_param_t *p)
{
    return p->nitems == 1 ? &p->v.one : p->v.many;
}

struct hero_action_def;

/* 64 bytes: a big playbook holds hundreds of thousands of these. */
typedef struct hs_action {
    const hs_source_t *src;
    hs_item_t actor;         /* "core" (not in the source) when the name had one part */
    hs_item_t name;
    hs_param_t *params;
    const struct hero_action_def *def;   /* set by validation */
    uint32_t off;            /* offset of the first '!' */
    uint16_t nparams;        /* the parser refuses more than HS_MAX_PARAMS */
    uint8_t kind;            /* number of '!': 1..4 */
    uint8_t bad;             /* a parse error was reported: HS_BAD_NAME or HS_BAD_SYNTAX */
} hs_action_t;

#define HS_MAX_PARAMS 4096

/* An action whose name was refused is dropped. One with a syntax error in its
 * parameters is kept and validated leniently: what parsed is checked, but nothing
 * that error recovery may have eaten or made up (bare words, required parameters). */
enum { HS_BAD_NAME = 1, HS_BAD_SYNTAX = 2 };

/* A comment, kept so that `hero fmt` can put it back. */
typedef struct hs_comment {
    uint32_t off;            /* offset of '//' or '#' */
    uint32_t len;
    uint8_t trailing;        /* after a value on the same line */
    uint8_t indented;        /* a whole-line comment inside a parameter block */
} hs_comment_t;

/* The parse of one file. Strings point into src or into the arena given to hs_parse;
 * the two arrays are the doc's own (hs_doc_free). */
typedef struct hs_doc {
    const hs_source_t *src;
    hs_action_t *actions;
    size_t nactions;
    hs_comment_t *comments;  /* in source order */
    size_t ncomments;
} hs_doc_t;

/* Parses one source. Errors go to `diags`; what parsed is returned even then.
 * `keep_comments` records comments for the formatter. The doc's arrays live in `arena`. */
void hs_parse(const hs_source_t *src, hs_arena_t *arena, hs_diags_t *diags,
              bool keep_comments, hs_doc_t *out);
void hs_doc_free(hs_doc_t *doc);

/* ---- the loader: includes and variables ---- */
/* A playbook: every action of a file and its includes, in order, with the
 * `play.include`, `play.set` and `session.env_set` directives carried out. The
 * playbook owns its sources, its arena and its diagnostics. */
typedef struct hs_playbook {
    hs_arena_t *arena;
    hs_source_t **sources;
    hs_doc_t *docs;          /* one per source, same index */
    size_t nsources;
    hs_action_t **actions;   /* runnable actions, file order after expansion */
    size_t nactions, cap;
    hs_diags_t diags;
} hs_playbook_t;

/* Loads the files (in order) into a new playbook. Always returns a playbook;
 * check pb->diags.nerrors. */
hs_playbook_t *hs_playbook_load(const char *const *paths, size_t npaths);
/* The same from memory (one source), for tests and the fuzzer. Includes are
 * resolved relative to the current directory. */
hs_playbook_t *hs_playbook_load_mem(const char *name, const char *text, size_t len);
void hs_playbook_free(hs_playbook_t *pb);

/* Writes the canonical form of a doc (see heroscript(5), "Canonical form"). */
void hs_format(FILE *out, const hs_doc_t *doc);
/* The same into a new NUL-terminated string of *len bytes; caller frees. */
char *hs_format_string(const hs_doc_t *doc, size_t *len);

/* Prints actions one per line in a stable, unambiguous form (tests, `hero dump`). */
void hs_dump_action(FILE *out, const hs_action_t *a);

/* Helpers shared by later stages. */
bool hs_item_eq(const hs_item_t *it, const char *s);          /* exact */
bool hs_item_ieq(const hs_item_t *it, const char *s);         /* ASCII case-insensitive */

#endif
