/* The loader: parses a playbook file and its includes, carries out the variable
 * directives, and flattens every action into one list in file order. Directives stay
 * in the list (validation checks their parameters like any action's) but are marked
 * by their actor/name, and the runner skips them. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "heroscript.h"
#include "runtime/error.h"

typedef struct var {
    char *name, *value;   /* arena strings */
    size_t vlen;
} var_t;

typedef struct loader {
    hs_playbook_t *pb;
    var_t *vars;
    size_t nvars, capvars;
    /* the chain of files being included, for cycle detection */
    char **chain_real;
    char **chain_show;
    size_t depth, capdepth;
} loader_t;

static bool is_action(const hs_action_t *a, const char *actor, const char *name)
{
    return hs_item_eq(&a->actor, actor) && hs_item_eq(&a->name, name);
}

static const hs_param_t *find_param(const hs_action_t *a, const char *key)
{
    const hs_param_t *found = NULL;
    for (uint32_t i = 0; i < a->nparams; i++)
        if (a->params[i].key.p && hs_item_ieq(&a->params[i].key, key))
            found = &a->params[i]; /* the last one wins */
    return found;
}

static var_t *var_find(loader_t *l, const char *name, size_t n)
{
    for (size_t i = l->nvars; i-- > 0;)
        if (strlen(l->vars[i].name) == n && memcmp(l->vars[i].name, name, n) == 0)
            return &l->vars[i];
    return NULL;
}

static void var_set(loader_t *l, const hs_item_t *name, const hs_item_t *value)
{
    var_t *v = var_find(l, name->p, name->len);
    if (!v) {
        if (l->nvars == l->capvars) {
            l->capvars = l->capvars ? l->capvars * 2 : 16;
            l->vars = hero_xrealloc(l->vars, l->capvars * sizeof(var_t));
        }
        v = &l->vars[l->nvars++];
        v->name = hs_arena_strndup(l->pb->arena, name->p, name->len);
    }
    v->value = hs_arena_strndup(l->pb->arena, value->p, value->len);
    v->vlen = value->len;
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Where, in the source, byte i of the item is: exact when the item is the source's
 * own text. An unescaped or dedented item lives in the arena; then the `len` bytes
 * at i (a `${...}`) are looked for in the source from the item's start, counting
 * the same text earlier in the item, so that the caret lands on the right line. */
static uint32_t item_off(const hs_source_t *src, const hs_item_t *it, size_t i, size_t len)
{
    if (it->p >= src->text && it->p + it->len <= src->text + src->len)
        return (uint32_t)(it->p - src->text + i);
    const char *needle = it->p + i;
    size_t nth = 0;
    for (const char *q = it->p; (q = memmem(q, (size_t)(needle - q), needle, len)); q++)
        nth++;
    const char *from = src->text + it->off, *end = src->text + src->len;
    for (const char *q = from; q < end && (q = memmem(q, (size_t)(end - q), needle, len)); q++)
        if (nth-- == 0)
            return (uint32_t)(q - src->text);
    return it->off;
}

/* Expands ${name}, ${ENV:NAME}, {name} (only when defined) and $${ (a literal "${").
 * Returns false after reporting an error. */
static bool expand_item(loader_t *l, const hs_source_t *src, hs_item_t *it)
{
    /* most values hold neither: one short scan, no allocation */
    uint32_t k = 0;
    while (k < it->len && it->p[k] != '$' && it->p[k] != '{')
        k++;
    if (k == it->len)
        return true;
    size_t cap = it->len + 64, n = 0;
    char *out = hero_xmalloc(cap);
    bool changed = false, ok = true;
    for (size_t i = 0; i < it->len;) {
        const char *rep = NULL;
        size_t replen = 0, skip = 0;
        const char *p = it->p + i;
        size_t left = it->len - i;
        if (left >= 3 && p[0] == '$' && p[1] == '$' && p[2] == '{') {
            rep = "${";
            replen = 2;
            skip = 3;
        } else if (left >= 2 && p[0] == '$' && p[1] == '{') {
            const char *close = memchr(p + 2, '}', left - 2);
            if (!close) {
                hs_diag_add(&l->pb->diags, HS_ERROR, src, item_off(src, it, i, 2),
                            "unclosed '${': write $${ for a literal ${");
                ok = false;
                break;
            }
            const char *nm = p + 2;
            size_t nlen = (size_t)(close - nm);
            skip = (size_t)(close - p) + 1;
            if (nlen > 4 && memcmp(nm, "ENV:", 4) == 0) {
                char *env = hero_xstrndup(nm + 4, nlen - 4);
                rep = getenv(env);
                if (!rep) {
                    hs_diag_add(&l->pb->diags, HS_ERROR, src, item_off(src, it, i, skip),
                                "environment variable '%s' is not set", env);
                    ok = false;
                }
                free(env);
                replen = rep ? strlen(rep) : 0;
            } else {
                bool valid = nlen > 0 && is_ident_start(nm[0]);
                for (size_t k = 1; k < nlen && valid; k++)
                    valid = is_ident(nm[k]);
                var_t *v = valid ? var_find(l, nm, nlen) : NULL;
                if (!valid) {
                    hs_diag_add(&l->pb->diags, HS_ERROR, src, item_off(src, it, i, skip),
                                "'${%.*s}' is not a variable name (letters, digits, '_'); "
                                "write $${ for a literal ${",
                                (int)nlen, nm);
                    ok = false;
                } else if (!v) {
                    hs_diag_add(&l->pb->diags, HS_ERROR, src, item_off(src, it, i, skip),
                                "undefined variable '%.*s' (define it with !!play.set "
                                "name:'%.*s' value:'...', or write $${ for a literal ${)",
                                (int)nlen, nm, (int)nlen, nm);
                    ok = false;
                } else {
                    rep = v->value;
                    replen = v->vlen;
                }
            }
        } else if (p[0] == '{' && left >= 3 && is_ident_start(p[1])) {
            size_t k = 1;
            while (k < left && is_ident(p[k]))
                k++;
            if (k < left && p[k] == '}') {
                var_t *v = var_find(l, p + 1, k - 1);
                if (v) {
                    rep = v->value;
                    replen = v->vlen;
                    skip = k + 1;
                }
            }
        }
        if (!skip) {
            rep = p;
            replen = 1;
            skip = 1;
        } else {
            changed = true;
        }
        if (n + replen + 1 > cap) {
            cap = (n + replen + 1) * 2;
            out = hero_xrealloc(out, cap);
        }
        if (replen)
            memcpy(out + n, rep, replen);
        n += replen;
        i += skip;
    }
    if (ok && changed) {
        if (n > INT32_MAX) {
            hs_diag_add(&l->pb->diags, HS_ERROR, src, it->off, "value too long after expansion");
            ok = false;
        } else {
            it->p = hs_arena_strndup(l->pb->arena, out, n);
            it->len = (uint32_t)n;
        }
    }
    free(out);
    return ok;
}

static bool expand_action(loader_t *l, hs_action_t *a)
{
    bool ok = true;
    for (uint32_t i = 0; i < a->nparams; i++)
        for (uint32_t j = 0; j < a->params[i].nitems; j++)
            ok &= expand_item(l, a->src, &hs_param_items_mut(&a->params[i])[j]);
    return ok;
}

static void push_action(hs_playbook_t *pb, hs_action_t *a)
{
    if (pb->nactions == pb->cap) {
        pb->cap = pb->cap ? pb->cap * 2 : 64;
        pb->actions = hero_xrealloc(pb->actions, pb->cap * sizeof(hs_action_t *));
    }
    pb->actions[pb->nactions++] = a;
}

static void load_source(loader_t *l, hs_source_t *src);

static hs_source_t *add_source(hs_playbook_t *pb, hs_source_t *src)
{
    pb->sources = hero_xrealloc(pb->sources, (pb->nsources + 1) * sizeof(*pb->sources));
    pb->docs = hero_xrealloc(pb->docs, (pb->nsources + 1) * sizeof(*pb->docs));
    memset(&pb->docs[pb->nsources], 0, sizeof(hs_doc_t));
    src->id = (uint32_t)pb->nsources;
    pb->sources[pb->nsources++] = src;
    return src;
}

static void chain_push(loader_t *l, const char *real, const char *show)
{
    if (l->depth == l->capdepth) {
        l->capdepth = l->capdepth ? l->capdepth * 2 : 8;
        l->chain_real = hero_xrealloc(l->chain_real, l->capdepth * sizeof(char *));
        l->chain_show = hero_xrealloc(l->chain_show, l->capdepth * sizeof(char *));
    }
    l->chain_real[l->depth] = hero_xstrdup(real);
    l->chain_show[l->depth] = hero_xstrdup(show);
    l->depth++;
}

static void chain_pop(loader_t *l)
{
    l->depth--;
    free(l->chain_real[l->depth]);
    free(l->chain_show[l->depth]);
}

/* Loads one file; `from`/`from_off` locate the include that asked for it (NULL for a
 * file named on the command line). */
static void load_file(loader_t *l, const char *path, const hs_source_t *from, uint32_t from_off)
{
    hs_playbook_t *pb = l->pb;
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        /* a pipe such as /dev/stdin has no real path; its name serves for cycles */
        if (errno != ENOENT || access(path, R_OK) != 0) {
            int e = errno;
            hs_diag_add(&pb->diags, HS_ERROR, from, from_off, "cannot read '%s': %s", path,
                        strerror(e));
            return;
        }
        snprintf(real, sizeof(real), "%s", path);
    }
    for (size_t i = 0; i < l->depth; i++) {
        if (strcmp(l->chain_real[i], real) == 0) {
            size_t cap = 64, n = 0;
            char *msg = hero_xmalloc(cap);
            msg[0] = 0;
            for (size_t k = i; k <= l->depth; k++) {
                const char *s = k < l->depth ? l->chain_show[k] : path;
                size_t need = n + strlen(s) + 5;
                if (need > cap) {
                    cap = need * 2;
                    msg = hero_xrealloc(msg, cap);
                }
                n += (size_t)sprintf(msg + n, "%s%s", k > i ? " -> " : "", s);
            }
            hs_diag_add(&pb->diags, HS_ERROR, from, from_off, "include cycle: %s", msg);
            free(msg);
            return;
        }
    }
    int err = 0;
    hs_source_t *src = hs_source_read(path, &err);
    if (!src) {
        hs_diag_add(&pb->diags, HS_ERROR, from, from_off, "cannot read '%s': %s", path,
                    strerror(err));
        return;
    }
    chain_push(l, real, path);
    load_source(l, add_source(pb, src));
    chain_pop(l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void include_dir(loader_t *l, const char *dir, const hs_source_t *from, uint32_t off)
{
    DIR *d = opendir(dir);
    if (!d) {
        hs_diag_add(&l->pb->diags, HS_ERROR, from, off, "cannot read '%s': %s", dir,
                    strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 11 && strcmp(e->d_name + len - 11, ".heroscript") == 0 && e->d_name[0] != '.') {
            names = hero_xrealloc(names, (n + 1) * sizeof(char *));
            names[n++] = hero_xasprintf("%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), cmp_str);
    if (n == 0)
        hs_diag_add(&l->pb->diags, HS_WARNING, from, off, "'%s' holds no .heroscript file", dir);
    for (size_t i = 0; i < n; i++) {
        load_file(l, names[i], from, off);
        free(names[i]);
    }
    free(names);
}

static void do_include(loader_t *l, hs_action_t *a)
{
    const hs_param_t *p = find_param(a, "path");
    for (uint32_t i = 0; !p && i < a->nparams; i++)
        if (!a->params[i].key.p)
            p = &a->params[i]; /* `!!play.include dir/`: a bare word is the path */
    if (!p || p->form != HS_VAL_SCALAR || hs_param_items(p)[0].len == 0)
        return; /* validation says what is wrong with it */
    const hs_item_t *it = &hs_param_items(p)[0];
    char *rel = hero_xstrndup(it->p, it->len);
    char *path;
    const char *slash = strrchr(a->src->path, '/');
    if (rel[0] == '/' || !slash)
        path = hero_xstrdup(rel);
    else
        path = hero_xasprintf("%.*s/%s", (int)(slash - a->src->path), a->src->path, rel);
    free(rel);
    DIR *d = opendir(path);
    if (d) {
        closedir(d);
        include_dir(l, path, a->src, it->off);
    } else {
        load_file(l, path, a->src, it->off);
    }
    free(path);
}

static void do_set(loader_t *l, hs_action_t *a, const char *kname, const char *vname)
{
    const hs_param_t *k = find_param(a, kname), *v = find_param(a, vname);
    if (!k || k->form != HS_VAL_SCALAR)
        return; /* validation says what is wrong with it */
    const hs_item_t *name = &hs_param_items(k)[0];
    bool valid = name->len > 0 && is_ident_start(name->p[0]);
    for (uint32_t i = 1; i < name->len && valid; i++)
        valid = is_ident(name->p[i]);
    if (!valid) {
        hs_diag_add(&l->pb->diags, HS_ERROR, a->src, name->off,
                    "'%.*s' is not a variable name (letters, digits and '_', not starting "
                    "with a digit)",
                    (int)name->len, name->p);
        return;
    }
    hs_item_t empty = {"", name->off, 0, 0};
    const hs_item_t *val = &empty;
    if (v && v->form == HS_VAL_SCALAR)
        val = &hs_param_items(v)[0];
    else if (v && v->form != HS_VAL_EMPTY)
        return; /* a list: validation says so */
    var_set(l, name, val);
}

static void load_source(loader_t *l, hs_source_t *src)
{
    hs_playbook_t *pb = l->pb;
    hs_parse(src, pb->arena, &pb->diags, false, &pb->docs[src->id]);
    /* pb->docs moves when an include adds a source; the action array does not */
    hs_action_t *acts = pb->docs[src->id].actions;
    size_t nacts = pb->docs[src->id].nactions;
    for (size_t i = 0; i < nacts; i++) {
        hs_action_t *a = &acts[i];
        if (a->bad == HS_BAD_NAME)
            continue;
        bool ok = expand_action(l, a);
        push_action(pb, a);
        if (!ok)
            continue;
        if (a->actor.len != 4 && a->actor.len != 7)
            continue; /* neither "play" nor "session": the common case, decided at once */
        if (is_action(a, "play", "include"))
            do_include(l, a);
        else if (is_action(a, "play", "set"))
            do_set(l, a, "name", "value");
        else if (is_action(a, "session", "env_set"))
            do_set(l, a, "key", "val");
    }
}

static hs_playbook_t *playbook_new(void)
{
    hs_playbook_t *pb = hero_xcalloc(1, sizeof(*pb));
    pb->arena = hs_arena_new();
    return pb;
}

static void loader_done(loader_t *l)
{
    free(l->vars);
    free(l->chain_real);
    free(l->chain_show);
    hs_diags_sort(&l->pb->diags);
}

hs_playbook_t *hs_playbook_load(const char *const *paths, size_t npaths)
{
    loader_t l = {0};
    l.pb = playbook_new();
    for (size_t i = 0; i < npaths; i++)
        load_file(&l, paths[i], NULL, 0);
    loader_done(&l);
    return l.pb;
}

hs_playbook_t *hs_playbook_load_mem(const char *name, const char *text, size_t len)
{
    loader_t l = {0};
    l.pb = playbook_new();
    size_t n = strlen(name);
    hs_source_t *src =
        hs_source_from_mem(name, text, len, n >= 3 && strcmp(name + n - 3, ".md") == 0);
    if (!src) {
        hs_diag_add(&l.pb->diags, HS_ERROR, NULL, 0, "%s: too large", name);
    } else {
        chain_push(&l, name, name);
        load_source(&l, add_source(l.pb, src));
        chain_pop(&l);
    }
    loader_done(&l);
    return l.pb;
}

void hs_playbook_free(hs_playbook_t *pb)
{
    if (!pb)
        return;
    for (size_t i = 0; i < pb->nsources; i++) {
        hs_doc_free(&pb->docs[i]);
        hs_source_free(pb->sources[i]);
    }
    free(pb->docs);
    free(pb->sources);
    free(pb->actions);
    hs_diags_free(&pb->diags);
    hs_arena_free(pb->arena);
    free(pb);
}
