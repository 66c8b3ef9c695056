/* The HeroScript grammar (lemon). The lexer has already split lines into actions
 * and parameter lines, so the grammar only sees tokens; what it builds lives in the
 * arena of the parse, and the scratch stacks of hs_pctx_t, so no grammar symbol
 * carries a pointer and no %destructor is needed. Conflicts fail the build. */

%name hs_Parse
%token_prefix HS_T_
%token_type {hs_tok_t}
%extra_context {hs_pctx_t *ctx}
%start_symbol file

%include {
#include <assert.h>
#include "grammar/parse_int.h"
}

%syntax_error {
    hs_pctx_syntax_error(ctx, yymajor, &yyminor);
}

%parse_failure {
    /* Only a syntax error at the very end of the input gets here (lemon does not
     * recover at end of input); it has been reported, and every earlier action kept. */
    (void)ctx;
}

/* Tokens own nothing (their text lives in the source or the arena), so discarding
 * one during error recovery frees nothing; the destructor says so explicitly. */
%token_destructor { (void)$$; (void)ctx; }

%token ACTION KEY RAW QSTRING COMMA LBRACK RBRACK EMPTYVAL.

%type seq {uint32_t}
%type value {hs_val_t}

file ::= actions.

actions ::= actions action.
actions ::= .

action ::= action_head params.              { hs_pctx_action_end(ctx); }
action_head ::= ACTION(A).                  { hs_pctx_action_begin(ctx, &A); }

params ::= params param.
params ::= params error.
params ::= .

param ::= KEY(K) value(V).                  { hs_pctx_param(ctx, &K, &V); }
param ::= RAW(W).                           { hs_pctx_positional(ctx, &W); }
param ::= QSTRING(W).                       { hs_pctx_positional(ctx, &W); }

value(V) ::= EMPTYVAL.                      { V = (hs_val_t){0, 0, HS_VAL_EMPTY, 0}; }
value(V) ::= seq(S).                        { V = hs_pctx_value(ctx, S, HS_VAL_LIST); }
value(V) ::= LBRACK RBRACK.                 { V = hs_pctx_value(ctx, ctx->nitems, HS_VAL_BRACKET); }
value(V) ::= LBRACK seq(S) RBRACK.          { V = hs_pctx_value(ctx, S, HS_VAL_BRACKET); }
value(V) ::= LBRACK seq(S) COMMA RBRACK.    { V = hs_pctx_value(ctx, S, HS_VAL_BRACKET); }

seq(S) ::= item(I).                         { S = I; }
seq(S) ::= seq(A) COMMA item.               { S = A; }

%type item {uint32_t}
item(I) ::= RAW(T).                         { I = hs_pctx_push_item(ctx, &T); }
item(I) ::= QSTRING(T).                     { I = hs_pctx_push_item(ctx, &T); }
