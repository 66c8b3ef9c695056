/* Private to grammar/: what the re2c lexer, the lemon parser and the driver share. */
#ifndef HERO_PARSE_INT_H
#define HERO_PARSE_INT_H

#include "heroscript.h"

/* A token. For ACTION, `a` is the actor and `b` the action name; otherwise `a` is the
 * token's text (KEY without its colon, RAW, QSTRING after unquoting). */
typedef struct hs_tok {
    hs_item_t a, b;
    uint32_t off;
    uint8_t kind;        /* ACTION: number of '!' */
    uint8_t bad;         /* ACTION: its name was rejected (already reported) */
    uint8_t multiline;   /* QSTRING spanned lines */
} hs_tok_t;

typedef struct hs_lexer {
    const hs_source_t *src;
    hs_arena_t *arena;
    hs_diags_t *diags;
    const unsigned char *cur, *lim, *tok;
    int mode;
    bool in_block;       /* the previous non-blank line belonged to an action */
    bool after_ws;       /* whitespace came just before the current position */
    bool in_list;        /* the value so far is `'a', ...`: a comma goes on with it */
    bool taint;          /* an error inside the current action: do not validate it */
    int pending;         /* a token to return before lexing on (0: none) */
    hs_tok_t pending_tok;
    uint32_t list_open;  /* offset of the '[' of the list being lexed */
    /* comments, for the formatter */
    bool keep_comments;
    hs_comment_t *comments;
    size_t ncomments, capcomments;
} hs_lexer_t;

void hs_lexer_init(hs_lexer_t *lx, const hs_source_t *src, hs_arena_t *arena, hs_diags_t *diags,
                   bool keep_comments);
/* Returns the next token code (parser.h), 0 at end of input. */
int hs_lex(hs_lexer_t *lx, hs_tok_t *t);

/* The parser's context (lemon %extra_context). */
typedef struct hs_pctx {
    const hs_source_t *src;
    hs_arena_t *arena;
    hs_diags_t *diags;
    /* scratch stacks, reused for every action */
    hs_item_t *items;
    uint32_t nitems, capitems;
    hs_param_t *params;
    uint32_t nparams, capparams;
    hs_tok_t head;       /* the ACTION token of the action being parsed */
    /* the result */
    hs_action_t *actions;
    size_t nactions, capactions;
    bool taint;          /* the current action had a lexical or syntax error */
    int prev_major;      /* the last token handed to the parser, for error messages */
    hs_tok_t prev_tok;
} hs_pctx_t;

typedef struct hs_val {
    uint32_t start, n;
    uint8_t form, multiline;
} hs_val_t;

uint32_t hs_pctx_push_item(hs_pctx_t *c, const hs_tok_t *t);
hs_val_t hs_pctx_value(hs_pctx_t *c, uint32_t start, uint8_t form);
void hs_pctx_param(hs_pctx_t *c, const hs_tok_t *key, const hs_val_t *v);
void hs_pctx_positional(hs_pctx_t *c, const hs_tok_t *t);
void hs_pctx_action_begin(hs_pctx_t *c, const hs_tok_t *head);
void hs_pctx_action_end(hs_pctx_t *c);
void hs_pctx_syntax_error(hs_pctx_t *c, int major, const hs_tok_t *t);

/* lemon's interface (generated parser.c) */
void *hs_ParseAlloc(void *(*malloc_fn)(size_t), hs_pctx_t *ctx);
void hs_Parse(void *p, int major, hs_tok_t minor);
void hs_ParseFree(void *p, void (*free_fn)(void *));

#endif
