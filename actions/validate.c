/* Validation of a whole playbook against the dispatch table, before anything runs.
 * Every problem of every action is reported, not just the first. */
#include <stdlib.h>
#include <string.h>

#include "actions.h"

/* The closest name among `n` candidates, or NULL when none is close enough. */
static const char *closest(const char *s, size_t sn, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = hero_edit_distance(s, sn, cands[i], strlen(cands[i]));
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    size_t limit = sn <= 4 ? 1 : sn <= 8 ? 2 : 3;
    return bestd <= limit ? best : NULL;
}

static void unknown_action(const hs_action_t *a, hs_diags_t *d)
{
    const char *cands[64];
    size_t n = 0;
    bool actor_known = false;
    for (size_t i = 0; i < hero_action_count && n < 64; i++)
        if (hs_item_eq(&a->actor, hero_action_table[i].actor)) {
            actor_known = true;
            cands[n++] = hero_action_table[i].name;
        }
    const char *m = actor_known ? closest(a->name.p, a->name.len, cands, n) : NULL;
    if (m) {
        hs_diag_add(d, HS_ERROR, a->src, a->name.off,
                    "unknown action '%.*s.%.*s' (did you mean %.*s.%s?)", (int)a->actor.len,
                    a->actor.p, (int)a->name.len, a->name.p, (int)a->actor.len, a->actor.p, m);
        return;
    }
    if (!actor_known) {
        const char *actors[64];
        size_t na = 0;
        for (size_t i = 0; i < hero_action_count && na < 64; i++) {
            bool seen = false;
            for (size_t k = 0; k < na; k++)
                seen |= strcmp(actors[k], hero_action_table[i].actor) == 0;
            if (!seen)
                actors[na++] = hero_action_table[i].actor;
        }
        m = closest(a->actor.p, a->actor.len, actors, na);
        if (m) {
            hs_diag_add(d, HS_ERROR, a->src, a->actor.off,
                        "unknown actor '%.*s' (did you mean %s?)", (int)a->actor.len, a->actor.p, m);
            return;
        }
    }
    {
        /* `!!container_new` or `!!core.container_start`: it exists under another actor */
        n = 0;
        for (size_t i = 0; i < hero_action_count && n < 64; i++)
            cands[n++] = hero_action_table[i].name;
        m = closest(a->name.p, a->name.len, cands, n);
        for (size_t i = 0; m && i < hero_action_count; i++)
            if (hero_action_table[i].name == m) {
                hs_diag_add(d, HS_ERROR, a->src, a->name.off,
                            "unknown action '%.*s.%.*s' (did you mean %s.%s?)", (int)a->actor.len,
                            a->actor.p, (int)a->name.len, a->name.p, hero_action_table[i].actor, m);
                return;
            }
    }
    if (!actor_known)
        hs_diag_add(d, HS_ERROR, a->src, a->actor.off,
                    "unknown actor '%.*s' (`hero actions` lists the actions)", (int)a->actor.len,
                    a->actor.p);
    else
        hs_diag_add(d, HS_ERROR, a->src, a->name.off,
                    "unknown action '%.*s.%.*s' (`hero actions` lists them)", (int)a->actor.len,
                    a->actor.p, (int)a->name.len, a->name.p);
}

static void unknown_param(const hs_action_t *a, const hs_param_t *p, hs_diags_t *d)
{
    const char *cands[64];
    size_t n = 0;
    for (size_t i = 0; i < a->def->nparams && n < 64; i++)
        cands[n++] = a->def->params[i].name;
    const char *m = closest(p->key.p, p->key.len, cands, n);
    if (m)
        hs_diag_add(d, HS_ERROR, a->src, p->key.off,
                    "unknown parameter '%.*s' for %s.%s (did you mean %s?)", (int)p->key.len,
                    p->key.p, a->def->actor, a->def->name, m);
    else
        hs_diag_add(d, HS_ERROR, a->src, p->key.off,
                    "unknown parameter '%.*s' for %s.%s (`hero help %s.%s` lists them)",
                    (int)p->key.len, p->key.p, a->def->actor, a->def->name, a->def->actor,
                    a->def->name);
}

static void check_item(const hs_action_t *a, const hero_param_def_t *pd, const char *s, size_t n,
                       uint32_t off, hs_diags_t *d)
{
    const char *msg = NULL;
    switch (pd->type) {
    case HERO_T_STR:
    case HERO_T_LIST:
        break;
    case HERO_T_BOOL: {
        bool b;
        msg = hero_conv_bool(s, n, &b);
        break;
    }
    case HERO_T_INT: {
        int64_t v;
        msg = hero_conv_int(s, n, &v);
        if (!msg && (pd->min || pd->max) && (v < pd->min || v > pd->max)) {
            hs_diag_add(d, HS_ERROR, a->src, off, "%s: %lld is out of range (%lld to %lld)",
                        pd->name, (long long)v, (long long)pd->min, (long long)pd->max);
            return;
        }
        break;
    }
    case HERO_T_FLOAT: {
        double v;
        msg = hero_conv_float(s, n, &v);
        if (!msg && v <= 0)
            msg = "expected a number above 0";
        break;
    }
    case HERO_T_SIZE: {
        uint64_t v;
        msg = hero_conv_size(s, n, &v);
        break;
    }
    case HERO_T_DURATION: {
        int64_t v;
        msg = hero_conv_duration(s, n, &v);
        break;
    }
    case HERO_T_IPV4_ADDR: {
        uint32_t v;
        msg = hero_conv_ipv4(s, n, &v);
        break;
    }
    case HERO_T_IPV4_PREFIX: {
        uint32_t v;
        int len;
        msg = hero_conv_ipv4_prefix(s, n, &v, &len);
        if (!msg && (pd->min || pd->max) && (len < pd->min || len > pd->max)) {
            hs_diag_add(d, HS_ERROR, a->src, off, "%s: a /%d prefix is not allowed here (/%lld to /%lld)",
                        pd->name, len, (long long)pd->min, (long long)pd->max);
            return;
        }
        break;
    }
    }
    if (!msg && pd->check)
        msg = pd->check(s, n);
    if (msg)
        hs_diag_add(d, HS_ERROR, a->src, off, "%s: '%.*s': %s", pd->name, (int)(n > 80 ? 80 : n), s,
                    msg);
}

/* Where byte i of an item is in the source (exact for items that are source text). */
static uint32_t at(const hs_action_t *a, const hs_item_t *it, size_t i)
{
    const hs_source_t *src = a->src;
    if (it->p >= src->text && it->p + it->len <= src->text + src->len)
        return (uint32_t)(it->p - src->text + i);
    return it->off;
}

static void check_value(const hs_action_t *a, const hero_param_def_t *pd, const hs_param_t *p,
                        hs_diags_t *d)
{
    if (pd->type != HERO_T_LIST) {
        if (p->form == HS_VAL_LIST || p->form == HS_VAL_BRACKET) {
            hs_diag_add(d, HS_ERROR, a->src, p->nitems ? hs_param_items(p)[0].off : p->key.off,
                        "%s takes one value (%s), not a list", pd->name, hero_type_name(pd->type));
            return;
        }
        if (p->form == HS_VAL_EMPTY) {
            if (pd->type != HERO_T_STR)
                hs_diag_add(d, HS_ERROR, a->src, p->key.off, "%s: expected a %s value after ':'",
                            pd->name, hero_type_name(pd->type));
            else if (pd->check)
                check_item(a, pd, "", 0, p->key.off, d);
            return;
        }
        check_item(a, pd, hs_param_items(p)[0].p, hs_param_items(p)[0].len, hs_param_items(p)[0].off, d);
        return;
    }
    /* a list: an unquoted item splits on commas (as hero_arg_list does); every
     * item is checked */
    for (uint32_t i = 0; i < p->nitems; i++) {
        const hs_item_t *it = &hs_param_items(p)[i];
        if (it->quoted) {
            check_item(a, pd, it->p, it->len, it->off, d);
            continue;
        }
        const char *s = it->p, *e = it->p + it->len;
        while (s <= e) {
            const char *c = memchr(s, ',', (size_t)(e - s));
            if (!c)
                c = e;
            if (c == s)
                hs_diag_add(d, HS_ERROR, a->src, at(a, it, (size_t)(s - it->p)),
                            "%s: empty list item", pd->name);
            else
                check_item(a, pd, s, (size_t)(c - s), at(a, it, (size_t)(s - it->p)), d);
            if (c == e)
                break;
            s = c + 1;
        }
    }
}

static void validate_action(hs_action_t *a, hs_diags_t *d)
{
    const hero_action_def_t *def = hero_action_find(a->actor.p, a->actor.len, a->name.p, a->name.len);
    if (!def) {
        unknown_action(a, d);
        return;
    }
    a->def = def;
    uint32_t npos = 0;
    /* which schema rows were given, for duplicates and required ones (a schema has
     * at most 64 rows: tests/unit/test_table.c checks it) */
    uint64_t seen = 0;
    for (uint32_t i = 0; i < a->nparams; i++) {
        const hs_param_t *p = &a->params[i];
        const hero_param_def_t *pd;
        if (!p->key.p) {
            if (a->bad == HS_BAD_SYNTAX)
                continue; /* maybe a piece of what the syntax error broke */
            if (!def->positional) {
                hs_diag_add(d, HS_ERROR, a->src, hs_param_items(p)[0].off,
                            "%s.%s takes no bare word: write key:value (is a ':' missing, or a "
                            "value with spaces not quoted?)",
                            def->actor, def->name);
                continue;
            }
            if (++npos > 1) {
                hs_diag_add(d, HS_ERROR, a->src, hs_param_items(p)[0].off,
                            "%s.%s takes one bare word (its %s); quote a value with spaces",
                            def->actor, def->name, def->positional);
                continue;
            }
            pd = hero_param_find(def, def->positional, strlen(def->positional));
            if (seen & (1ull << (pd - def->params)))
                hs_diag_add(d, HS_WARNING, a->src, hs_param_items(p)[0].off,
                            "%s is given twice (by key and as a bare word); the last one wins",
                            pd->name);
            seen |= 1ull << (pd - def->params);
        } else {
            pd = hero_param_find(def, p->key.p, p->key.len);
            if (!pd) {
                unknown_param(a, p, d);
                continue;
            }
            uint64_t bit = 1ull << (pd - def->params);
            if (seen & bit)
                hs_diag_add(d, HS_WARNING, a->src, p->key.off,
                            "%s is given twice; the last one wins", pd->name);
            seen |= bit;
        }
        check_value(a, pd, p, d);
    }
    if (a->bad == HS_BAD_SYNTAX)
        return; /* what is missing may be what the syntax error swallowed */
    for (size_t k = 0; k < def->nparams; k++) {
        const hero_param_def_t *pd = &def->params[k];
        if (pd->required && !(seen & (1ull << k)))
            hs_diag_add(d, HS_ERROR, a->src, a->off, "%s.%s needs %s:... (%s)", def->actor,
                        def->name, pd->name, pd->doc);
    }
    if (def->check)
        def->check(a, d);
}

size_t hero_validate(hs_playbook_t *pb)
{
    size_t before = pb->diags.nerrors;
    for (size_t i = 0; i < pb->nactions; i++)
        validate_action(pb->actions[i], &pb->diags);
    hs_diags_sort(&pb->diags);
    return pb->diags.nerrors - before;
}
