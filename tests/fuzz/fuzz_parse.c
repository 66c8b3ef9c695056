/* libFuzzer target for the HeroScript front end: the loader (variables, includes),
 * validation, diagnostics, typed argument access, and `hero fmt`.
 *
 * Every input is tried twice: as `fuzz.heroscript` and as `fuzz.md` (prose allowed).
 * For the .heroscript form, when the input parses with no errors, the formatter must
 * hold three invariants, and the harness aborts (after a short message on stderr)
 * when one breaks:
 *   (a) the formatted text parses with no errors;
 *   (b) formatting the formatted text gives the same bytes (fmt is idempotent);
 *   (c) the original and the formatted text have the same actions (hs_dump_action,
 *       and the quoting of every item that holds a comma, which the dump shows only
 *       for scalars).
 * And one invariant of actions/args.c: after a playbook validates with no errors,
 *   (d) every typed parameter (and every default) converts (`a conversion here
 *       cannot fail`). Build with -DFUZZ_NO_ARGS_CHECK to leave (d) out.
 *
 * Includes: an input naming `play.include` is loaded only when every `path:` and
 * every bare word of every include is a plain relative name (letters, digits,
 * `_ . - /`, no `..`, no `$` or `{`), and then as a file of a sandbox directory of
 * fixtures made at start-up ($TMPDIR/hero-fuzz-sandbox.UID, left in place for the
 * next run), so nothing outside it is ever opened. Other include inputs skip the
 * load step (the fmt checks still run: they never include).
 *
 * Nothing is printed except on an invariant failure. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions/actions.h"
#include "grammar/heroscript.h"

/* ---- the include sandbox ---- */
static char g_sandbox[96];       /* "" when it could not be made */
static char g_name_hs[128], g_name_md[128];

static const struct {
    const char *path, *text;
} g_fixtures[] = {
    {"a.heroscript", "!!core.echo msg:'from a'\n"},
    {"b.heroscript", "// b includes a\n!!play.include path:'a.heroscript'\n"
                     "!!play.set name:'bvar' value:'set in b'\n"},
    {"self.heroscript", "!!play.include path:'self.heroscript'\n"},
    {"loop1.heroscript", "!!play.include path:'loop2.heroscript'\n"},
    {"loop2.heroscript", "!!play.include path:'loop1.heroscript'\n"},
    {"bad.heroscript", "!!core.echo msg:'${nope}'\nstray text\n!!x.y.z\n"},
    {"vars.heroscript", "!!play.set name:'v' value:'1s'\n!!session.env_set key:'w' val:'x'\n"},
    {"fuzz.heroscript", "!!core.echo msg:'the real file'\n"},
    {"doc.md", "# Title\nprose\n!!core.echo msg:'in md'\n"},
    {"dir/1.heroscript", "!!core.sleep 1ms\n"},
    {"dir/2.heroscript", "!!play.include path:'../a.heroscript'\n!!core.echo '${bvar}'\n"},
    {"dir/skip.txt", "!!core.fail msg:'not a .heroscript file'\n"},
    {"dir/.hidden.heroscript", "!!core.fail msg:'hidden'\n"},
    {"empty/", NULL},
    {"dir/sub/", NULL},
};

/* One sandbox per user, made (or refreshed) by every fuzzer process: a crash ends the
 * process without atexit, so a per-process directory would be left behind each time.
 * Files are written to a temporary name and renamed, so that parallel fuzzers
 * (-jobs) never read a half-written fixture. */
static bool write_atomic(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return false;
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return false;
    }
    return true;
}

static bool mkdir_own(const char *p)
{
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return false;
    struct stat st;
    return lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid();
}

static bool sandbox_make(void)
{
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || tmpdir[0] != '/' || strlen(tmpdir) > 40)
        tmpdir = "/tmp";
    snprintf(g_sandbox, sizeof(g_sandbox), "%s/hero-fuzz-sandbox.%ld", tmpdir, (long)getuid());
    char p[256];
    snprintf(p, sizeof(p), "%s/dir", g_sandbox);
    if (!mkdir_own(g_sandbox) || !mkdir_own(p))
        return false;
    for (size_t i = 0; i < sizeof(g_fixtures) / sizeof(g_fixtures[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", g_sandbox, g_fixtures[i].path);
        if (!(g_fixtures[i].text ? write_atomic(p, g_fixtures[i].text) : mkdir_own(p)))
            return false;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sandbox_make()) {
        snprintf(g_name_hs, sizeof(g_name_hs), "%s/fuzz.heroscript", g_sandbox);
        snprintf(g_name_md, sizeof(g_name_md), "%s/fuzz.md", g_sandbox);
    } else {
        g_sandbox[0] = 0; /* inputs with includes skip the load step */
    }
    return 0;
}

/* Is every include of this input confined to the sandbox? */
static bool path_item_safe(const hs_item_t *it)
{
    if (it->len == 0)
        return true; /* the loader ignores it (validation reports it) */
    if (it->len > 64 || it->p[0] == '/')
        return false;
    for (uint32_t i = 0; i < it->len; i++) {
        char c = it->p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-' || c == '/';
        if (!ok)
            return false;
        if (c == '.' && i + 1 < it->len && it->p[i + 1] == '.')
            return false;
    }
    return true;
}

static bool includes_safe(const char *data, size_t size, bool markdown)
{
    hs_source_t *src = hs_source_from_mem("fuzz", data, size, markdown);
    if (!src)
        return false;
    hs_arena_t *arena = hs_arena_new();
    hs_diags_t diags = {0};
    hs_doc_t doc;
    hs_parse(src, arena, &diags, false, &doc);
    bool safe = true;
    for (size_t i = 0; i < doc.nactions && safe; i++) {
        const hs_action_t *a = &doc.actions[i];
        if (!hs_item_eq(&a->actor, "play") || !hs_item_eq(&a->name, "include"))
            continue;
        for (uint32_t k = 0; k < a->nparams && safe; k++) {
            const hs_param_t *p = &a->params[k];
            /* the loader takes `path:`, or a bare word when there is none */
            if (p->key.p && !hs_item_ieq(&p->key, "path"))
                continue;
            for (uint32_t j = 0; j < p->nitems && safe; j++)
                safe = path_item_safe(&hs_param_items(p)[j]);
        }
    }
    hs_doc_free(&doc);
    hs_diags_free(&diags);
    hs_arena_free(arena);
    hs_source_free(src);
    return safe;
}

/* ---- helpers ---- */

static char *dump_actions(const hs_action_t *acts, size_t n, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        abort();
    for (size_t i = 0; i < n; i++)
        hs_dump_action(f, &acts[i]);
    fclose(f);
    return buf;
}

static void sink_diags(const hs_diags_t *d, bool color)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    hs_diags_print(f, d, color);
    fclose(f);
    free(buf);
}

static void show(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "---- %s (%zu bytes) ----\n", what, n);
    fwrite(s, 1, n, stderr);
    fprintf(stderr, "\n---- end of %s ----\n", what);
}

static void show_diags(const char *what, const hs_diags_t *d)
{
    fprintf(stderr, "---- %s ----\n", what);
    hs_diags_print(stderr, d, false);
}

#ifndef FUZZ_NO_ARGS_CHECK
/* (d): the typed accessors of a validated action never meet a value they cannot
 * convert (args.c relies on validation for that). */
static void check_args(const hs_action_t *a)
{
    const hero_action_def_t *def = a->def;
    if (!def)
        return;
    for (size_t k = 0; k < def->nparams; k++) {
        const hero_param_def_t *pd = &def->params[k];
        const hs_param_t *p = hero_arg(a, pd->name);
        const char *s = NULL;
        size_t n = 0;
        if (p) {
            if (pd->type == HERO_T_LIST || p->nitems == 0)
                goto access;
            s = hs_param_items(p)[0].p;
            n = hs_param_items(p)[0].len;
        } else if (pd->def) {
            s = pd->def;
            n = strlen(pd->def);
        } else {
            goto access;
        }
        const char *msg = NULL;
        union {
            bool b;
            int64_t i;
            double d;
            uint64_t u;
            uint32_t a;
        } v;
        int plen;
        switch (pd->type) {
        case HERO_T_BOOL: msg = hero_conv_bool(s, n, &v.b); break;
        case HERO_T_INT: msg = hero_conv_int(s, n, &v.i); break;
        case HERO_T_FLOAT: msg = hero_conv_float(s, n, &v.d); break;
        case HERO_T_SIZE: msg = hero_conv_size(s, n, &v.u); break;
        case HERO_T_DURATION: msg = hero_conv_duration(s, n, &v.i); break;
        case HERO_T_IPV4_ADDR: msg = hero_conv_ipv4(s, n, &v.a); break;
        case HERO_T_IPV4_PREFIX: msg = hero_conv_ipv4_prefix(s, n, &v.a, &plen); break;
        default: break;
        }
        if (msg) {
            fprintf(stderr,
                    "fuzz_parse: invariant (d) broken: %s.%s %s:'%.*s' passed validation but "
                    "does not convert: %s\n",
                    def->actor, def->name, pd->name, (int)n, s, msg);
            abort();
        }
    access:
        switch (pd->type) {
        case HERO_T_STR: free(hero_arg_str(a, pd->name)); break;
        case HERO_T_BOOL: (void)hero_arg_bool(a, pd->name); break;
        case HERO_T_INT: (void)hero_arg_int(a, pd->name); break;
        case HERO_T_FLOAT: (void)hero_arg_float(a, pd->name); break;
        case HERO_T_SIZE: (void)hero_arg_size(a, pd->name); break;
        case HERO_T_DURATION: (void)hero_arg_duration_ms(a, pd->name); break;
        case HERO_T_LIST: hero_strv_free(hero_arg_list(a, pd->name)); break;
        default: free(hero_arg_str(a, pd->name)); break;
        }
    }
}
#endif

/* ---- the load step: loader, validation, diagnostics ---- */
static void load_and_validate(const char *data, size_t size, bool markdown)
{
    const char *name = markdown ? "fuzz.md" : "fuzz.heroscript";
    if (memmem(data, size, "include", 7)) {
        if (!g_sandbox[0] || !includes_safe(data, size, markdown))
            return;
        name = markdown ? g_name_md : g_name_hs;
    }
    hs_playbook_t *pb = hs_playbook_load_mem(name, data, size);
    hero_validate(pb);
    sink_diags(&pb->diags, markdown);
    {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
            abort();
        for (size_t i = 0; i < pb->nactions; i++)
            hs_dump_action(f, pb->actions[i]);
        fclose(f);
        free(buf);
    }
#ifndef FUZZ_NO_ARGS_CHECK
    if (pb->diags.nerrors == 0)
        for (size_t i = 0; i < pb->nactions; i++)
            check_args(pb->actions[i]);
#endif
    hs_playbook_free(pb);
}

/* hs_dump_action shows whether an item was quoted only for a scalar with a comma,
 * but an unquoted list item with a comma splits too (`k:'x', a,b` is three items for
 * a list parameter): this compares the quoting of every item of a key:value that
 * holds a comma. Returns NULL or what differs. */
static const char *same_quoting(const hs_doc_t *d1, const hs_doc_t *d2, size_t *ai)
{
    for (size_t i = 0; i < d1->nactions && i < d2->nactions; i++) {
        const hs_action_t *a = &d1->actions[i], *b = &d2->actions[i];
        *ai = i;
        if (a->nparams != b->nparams)
            return "the number of parameters";
        for (uint32_t k = 0; k < a->nparams; k++) {
            const hs_param_t *p = &a->params[k], *q = &b->params[k];
            if (p->nitems != q->nitems)
                return "the number of items of a parameter";
            if (!p->key.p)
                continue; /* a bare word: hs_dump_action shows its quoting */
            const hs_item_t *x = p->nitems ? hs_param_items(p) : NULL;
            const hs_item_t *y = q->nitems ? hs_param_items(q) : NULL;
            for (uint32_t j = 0; j < p->nitems; j++)
                if (memchr(x[j].p, ',', x[j].len) && x[j].quoted != y[j].quoted)
                    return "the quoting of an item with a comma (unquoted ones split)";
        }
    }
    return NULL;
}

/* ---- the fmt invariants (no includes, no variables: hs_parse only) ---- */
static void check_fmt(const char *data, size_t size)
{
    hs_source_t *src1 = hs_source_from_mem("fuzz.heroscript", data, size, false);
    if (!src1)
        return;
    hs_arena_t *arena1 = hs_arena_new();
    hs_diags_t d1 = {0};
    hs_doc_t doc1;
    hs_parse(src1, arena1, &d1, true, &doc1);
    if (d1.nerrors == 0) {
        size_t len1 = 0;
        char *out1 = hs_format_string(&doc1, &len1);

        hs_source_t *src2 = hs_source_from_mem("fuzz.heroscript", out1, len1, false);
        hs_arena_t *arena2 = hs_arena_new();
        hs_diags_t d2 = {0};
        hs_doc_t doc2;
        hs_parse(src2, arena2, &d2, true, &doc2);
        if (d2.nerrors) {
            fprintf(stderr,
                    "fuzz_parse: invariant (a) broken: the formatted text does not parse\n");
            show("input", data, size);
            show("formatted", out1, len1);
            hs_diags_sort(&d2);
            show_diags("errors in the formatted text", &d2);
            abort();
        }

        size_t len2 = 0;
        char *out2 = hs_format_string(&doc2, &len2);
        if (len1 != len2 || memcmp(out1, out2, len1) != 0) {
            fprintf(stderr, "fuzz_parse: invariant (b) broken: fmt is not idempotent\n");
            show("input", data, size);
            show("fmt(input)", out1, len1);
            show("fmt(fmt(input))", out2, len2);
            abort();
        }

        size_t dl1 = 0, dl2 = 0;
        char *dump1 = dump_actions(doc1.actions, doc1.nactions, &dl1);
        char *dump2 = dump_actions(doc2.actions, doc2.nactions, &dl2);
        if (doc1.nactions != doc2.nactions || dl1 != dl2 || memcmp(dump1, dump2, dl1) != 0) {
            fprintf(stderr, "fuzz_parse: invariant (c) broken: fmt changed the actions "
                            "(%zu actions before, %zu after)\n",
                    doc1.nactions, doc2.nactions);
            show("input", data, size);
            show("formatted", out1, len1);
            show("actions of the input", dump1, dl1);
            show("actions of the formatted text", dump2, dl2);
            abort();
        }
        size_t ai = 0;
        const char *what = same_quoting(&doc1, &doc2, &ai);
        if (what) {
            fprintf(stderr, "fuzz_parse: invariant (c) broken: fmt changed %s in action %zu\n",
                    what, ai + 1);
            show("input", data, size);
            show("formatted", out1, len1);
            abort();
        }
        free(dump1);
        free(dump2);
        free(out2);
        hs_doc_free(&doc2);
        hs_diags_free(&d2);
        hs_arena_free(arena2);
        hs_source_free(src2);
        free(out1);
    }
    hs_doc_free(&doc1);
    hs_diags_free(&d1);
    hs_arena_free(arena1);
    hs_source_free(src1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    load_and_validate(text, size, false);
    load_and_validate(text, size, true);
    check_fmt(text, size);
    return 0;
}
