/* Typed access to the parameters of a validated action. Validation has already
 * checked every value, so a conversion here cannot fail; a value that is absent
 * takes the schema's default. */
#include <stdlib.h>
#include <string.h>

#include "actions.h"

const hs_param_t *hero_arg(const hs_action_t *a, const char *key)
{
    const hs_param_t *found = NULL;
    bool pos_key = a->def && a->def->positional && strcasecmp(a->def->positional, key) == 0;
    bool pos_seen = false;
    for (uint32_t i = 0; i < a->nparams; i++) {
        const hs_param_t *p = &a->params[i];
        if (p->key.p) {
            if (hs_item_ieq(&p->key, key))
                found = p; /* the last one wins, bare or keyed */
        } else if (pos_key && !pos_seen) {
            found = p; /* only the first bare word (validation refuses a second) */
            pos_seen = true;
        }
    }
    return found;
}

static const hero_param_def_t *pdef(const hs_action_t *a, const char *key)
{
    return a->def ? hero_param_find(a->def, key, strlen(key)) : NULL;
}

/* The value's text (one item) or the default's; false when neither. */
static bool text_of(const hs_action_t *a, const char *key, const char **s, size_t *n)
{
    const hs_param_t *p = hero_arg(a, key);
    if (p) {
        if (p->nitems) {
            *s = hs_param_items(p)[0].p;
            *n = hs_param_items(p)[0].len;
        } else {
            *s = "";
            *n = 0;
        }
        return true;
    }
    const hero_param_def_t *d = pdef(a, key);
    if (d && d->def) {
        *s = d->def;
        *n = strlen(d->def);
        return true;
    }
    return false;
}

char *hero_arg_str(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    return text_of(a, key, &s, &n) ? hero_xstrndup(s, n) : NULL;
}

bool hero_arg_bool(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    bool v = false;
    if (text_of(a, key, &s, &n))
        hero_conv_bool(s, n, &v);
    return v;
}

int64_t hero_arg_int(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    int64_t v = 0;
    if (text_of(a, key, &s, &n))
        hero_conv_int(s, n, &v);
    return v;
}

double hero_arg_float(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    double v = 0;
    if (text_of(a, key, &s, &n))
        hero_conv_float(s, n, &v);
    return v;
}

uint64_t hero_arg_size(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    uint64_t v = 0;
    if (text_of(a, key, &s, &n))
        hero_conv_size(s, n, &v);
    return v;
}

int64_t hero_arg_duration_ms(const hs_action_t *a, const char *key)
{
    const char *s;
    size_t n;
    int64_t v = -1;
    if (text_of(a, key, &s, &n) && hero_conv_duration(s, n, &v))
        v = -1;
    return v;
}

static void strv_push(char ***v, size_t *n, const char *s, size_t len)
{
    *v = hero_xrealloc(*v, (*n + 2) * sizeof(char *));
    (*v)[(*n)++] = hero_xstrndup(s, len);
    (*v)[*n] = NULL;
}

/* Splits an unquoted scalar on commas, trimming blanks around items. */
static void split_commas(char ***v, size_t *n, const char *s, size_t len)
{
    const char *e = s + len;
    while (s <= e) {
        const char *c = memchr(s, ',', (size_t)(e - s));
        if (!c)
            c = e;
        const char *a = s, *b = c;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        strv_push(v, n, a, (size_t)(b - a));
        if (c == e)
            break;
        s = c + 1;
    }
}

char **hero_arg_list(const hs_action_t *a, const char *key)
{
    char **v = hero_xcalloc(1, sizeof(char *));
    size_t n = 0;
    const hs_param_t *p = hero_arg(a, key);
    if (p) {
        /* an unquoted item splits on commas in every form: `a,b`, `'x', a,b`, `[a,b]` */
        const hs_item_t *it = hs_param_items(p);
        for (uint32_t i = 0; i < p->nitems; i++) {
            if (it[i].quoted)
                strv_push(&v, &n, it[i].p, it[i].len);
            else
                split_commas(&v, &n, it[i].p, it[i].len);
        }
        return v;
    }
    const hero_param_def_t *d = pdef(a, key);
    if (d && d->def && d->def[0])
        split_commas(&v, &n, d->def, strlen(d->def));
    return v;
}

void hero_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}
