/* The parse driver: runs the lexer into the lemon parser and builds the AST. */
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"
#include "parser.h"
#include "runtime/error.h"

uint32_t hs_pctx_push_item(hs_pctx_t *c, const hs_tok_t *t)
{
    if (c->nitems == c->capitems) {
        c->capitems = c->capitems ? c->capitems * 2 : 16;
        c->items = hero_xrealloc(c->items, c->capitems * sizeof(hs_item_t));
    }
    c->items[c->nitems] = t->a;
    return c->nitems++;
}

hs_val_t hs_pctx_value(hs_pctx_t *c, uint32_t start, uint8_t form)
{
    hs_val_t v = {start, c->nitems - start, form, 0};
    if (form == HS_VAL_LIST && v.n == 1) {
        /* the driver keeps the token before the lookahead: the value's only item */
        v.form = HS_VAL_SCALAR;
        v.multiline = c->prev_tok.multiline;
    }
    return v;
}

void hs_pctx_param(hs_pctx_t *c, const hs_tok_t *key, const hs_val_t *v)
{
    if (c->nparams >= HS_MAX_PARAMS) {
        if (c->nparams == HS_MAX_PARAMS)
            hs_diag_add(c->diags, HS_ERROR, c->src, key->off,
                        "an action has at most %d parameters", HS_MAX_PARAMS);
        c->nparams = HS_MAX_PARAMS + 1; /* report once; keep what fits */
        c->taint = true;
        c->nitems = v->start;
        return;
    }
    if (c->nparams == c->capparams) {
        c->capparams = c->capparams ? c->capparams * 2 : 16;
        c->params = hero_xrealloc(c->params, c->capparams * sizeof(hs_param_t));
    }
    hs_param_t *p = &c->params[c->nparams++];
    memset(p, 0, sizeof(*p));
    p->key = key->a;
    p->form = v->form;
    p->multiline = v->multiline;
    p->nitems = v->n;
    if (v->n == 1) {
        p->v.one = c->items[v->start];
    } else if (v->n) {
        p->v.many = hs_arena_alloc(c->arena, v->n * sizeof(hs_item_t));
        memcpy(p->v.many, c->items + v->start, v->n * sizeof(hs_item_t));
    }
    c->nitems = v->start;
}

void hs_pctx_positional(hs_pctx_t *c, const hs_tok_t *t)
{
    hs_tok_t key;
    memset(&key, 0, sizeof(key));
    key.a.off = t->off;
    uint32_t start = hs_pctx_push_item(c, t);
    hs_val_t v = {start, 1, HS_VAL_SCALAR, t->multiline};
    hs_pctx_param(c, &key, &v);
}

void hs_pctx_action_begin(hs_pctx_t *c, const hs_tok_t *head)
{
    c->head = *head;
    c->nparams = 0;
    c->nitems = 0;
}

void hs_pctx_action_end(hs_pctx_t *c)
{
    if (c->nactions == c->capactions) {
        c->capactions = c->capactions ? c->capactions * 2 : 64;
        c->actions = hero_xrealloc(c->actions, c->capactions * sizeof(hs_action_t));
    }
    hs_action_t *a = &c->actions[c->nactions++];
    memset(a, 0, sizeof(*a));
    a->src = c->src;
    a->off = c->head.off;
    a->kind = c->head.kind;
    a->bad = c->head.bad ? HS_BAD_NAME : c->taint ? HS_BAD_SYNTAX : 0;
    c->taint = false;
    a->actor = c->head.a;
    a->name = c->head.b;
    uint32_t np = c->nparams > HS_MAX_PARAMS ? HS_MAX_PARAMS : c->nparams;
    a->nparams = (uint16_t)np;
    if (np) {
        a->params = hs_arena_alloc(c->arena, np * sizeof(hs_param_t));
        memcpy(a->params, c->params, np * sizeof(hs_param_t));
    }
    c->nparams = 0;
    c->nitems = 0;
}

void hs_pctx_syntax_error(hs_pctx_t *c, int major, const hs_tok_t *t)
{
    uint32_t off = t->off;
    const char *msg;
    switch (major) {
    case HS_T_EMPTYVAL:
    case HS_T_RBRACK:
        msg = c->prev_major == HS_T_COMMA ? "expected a list item after ','"
              : major == HS_T_RBRACK      ? "unexpected ']'"
                                          : "expected a value";
        if (c->prev_major == HS_T_COMMA)
            off = c->prev_tok.off;
        break;
    case HS_T_COMMA:
        msg = c->prev_major == HS_T_COMMA || c->prev_major == HS_T_LBRACK
                  ? "expected a list item before ','"
                  : "unexpected ','";
        break;
    case HS_T_RAW:
    case HS_T_QSTRING:
        msg = "expected ',' or ']' between list items";
        break;
    case HS_T_KEY:
    case HS_T_ACTION:
    case 0:
        if (c->prev_major == HS_T_COMMA) {
            msg = "expected a list item after ','";
            off = c->prev_tok.off;
        } else {
            msg = "unexpected end of the value";
        }
        break;
    default:
        msg = "syntax error";
        break;
    }
    hs_diag_add(c->diags, HS_ERROR, c->src, off, "%s", msg);
    c->taint = true;
}

void hs_parse(const hs_source_t *src, hs_arena_t *arena, hs_diags_t *diags, bool keep_comments,
              hs_doc_t *out)
{
    hs_lexer_t lx;
    hs_lexer_init(&lx, src, arena, diags, keep_comments);
    hs_pctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.src = src;
    ctx.arena = arena;
    ctx.diags = diags;
    void *parser = hs_ParseAlloc(hero_xmalloc, &ctx);
    hs_tok_t t;
    int code;
    while ((code = hs_lex(&lx, &t)) != 0) {
        /* a lexical error inside an action taints it; the action is reduced (and
         * reads the taint) no earlier than on the next token */
        ctx.taint |= lx.taint;
        lx.taint = false;
        hs_Parse(parser, code, t);
        ctx.prev_major = code;
        ctx.prev_tok = t;
    }
    ctx.taint |= lx.taint;
    memset(&t, 0, sizeof(t));
    t.off = src->len;
    hs_Parse(parser, 0, t);
    hs_ParseFree(parser, free);
    free(ctx.items);
    free(ctx.params);
    memset(out, 0, sizeof(*out));
    out->src = src;
    out->actions = ctx.actions; /* the doc owns both arrays now */
    out->nactions = ctx.nactions;
    out->comments = lx.comments;
    out->ncomments = lx.ncomments;
}

void hs_doc_free(hs_doc_t *doc)
{
    free(doc->actions);
    free(doc->comments);
    memset(doc, 0, sizeof(*doc));
}
