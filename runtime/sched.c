/* The plan and the scheduler (see sched.h). Completions are queued and handled by
 * one pump loop, so a handler that finishes inside its start function does not
 * recurse into the scheduler. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actions/actions.h"
#include "runtime/sched.h"

enum { ST_WAITING, ST_READY, ST_RUNNING, ST_DONE, ST_FAILED, ST_SKIPPED, ST_NOT_RUN };

typedef struct res {
    char *key;
    bool excl;
} res_t;

typedef struct node {
    hs_action_t *a;
    const char *instance;   /* owned by the plan's string list */
    res_t *res;
    size_t nres;
    size_t *dependents;
    size_t ndependents;
    size_t pending;         /* unfinished prerequisites */
    bool prereq_failed;
    int state;
    hero_task_t task;
} node_t;

typedef struct plan {
    node_t *nodes;
    size_t n;
    char **strings;         /* instance names, owned */
    size_t nstrings;
} plan_t;

struct hero_sched {
    plan_t plan;
    const hero_run_opts_t *opts;
    uv_loop_t loop;
    size_t *heap;           /* ready nodes, lowest index first */
    size_t nheap;
    size_t *completed;      /* completions not yet handled */
    size_t ncompleted, capcompleted;
    size_t running;
    size_t next_print;
    bool stopping;          /* a failure (without --keep-going) or a signal */
    bool interrupted;
    bool pumping;
    size_t nfailed;
    uv_signal_t sigint, sigterm;
};

/* ---- the plan ---- */
static void add_res(node_t *nd, char *key, bool excl)
{
    for (size_t i = 0; i < nd->nres; i++)
        if (strcmp(nd->res[i].key, key) == 0) {
            nd->res[i].excl |= excl;
            free(key);
            return;
        }
    nd->res = hero_xrealloc(nd->res, (nd->nres + 1) * sizeof(res_t));
    nd->res[nd->nres++] = (res_t){key, excl};
}

static const char *plan_string(plan_t *p, char *s)
{
    for (size_t i = 0; i < p->nstrings; i++)
        if (strcmp(p->strings[i], s) == 0) {
            free(s);
            return p->strings[i];
        }
    p->strings = hero_xrealloc(p->strings, (p->nstrings + 1) * sizeof(char *));
    p->strings[p->nstrings++] = s;
    return s;
}

static void node_resources(plan_t *p, node_t *nd, const char **current_instance)
{
    const hs_action_t *a = nd->a;
    const hero_action_def_t *def = a->def;
    if (def->flags & HERO_ACT_INSTANCE) {
        char *inst = hero_arg_str(a, "heropods");
        nd->instance = inst ? plan_string(p, inst) : *current_instance;
        add_res(nd, hero_xasprintf("instance:%s", nd->instance),
                (def->flags & HERO_ACT_INSTANCE_EXCL) != 0);
    }
    for (size_t k = 0; k < def->nparams; k++) {
        const hero_param_def_t *pd = &def->params[k];
        if (pd->res == HERO_RES_NONE)
            continue;
        if (pd->res == HERO_RES_NAMED) {
            char **v = hero_arg_list(a, pd->name);
            for (char **s = v; *s; s++)
                add_res(nd, hero_xasprintf("named:%s", *s), true);
            hero_strv_free(v);
            continue;
        }
        char *val = hero_arg_str(a, pd->name);
        if (!val)
            continue;
        switch (pd->res) {
        case HERO_RES_CONTAINER:
            add_res(nd, hero_xasprintf("container:%s/%s", nd->instance, val), true);
            break;
        case HERO_RES_IMAGE:
        case HERO_RES_IMAGE_USE:
            add_res(nd, hero_xasprintf("image:%s", val), pd->res == HERO_RES_IMAGE);
            break;
        case HERO_RES_INSTANCE:
            nd->instance = plan_string(p, hero_xstrdup(val));
            *current_instance = nd->instance;
            add_res(nd, hero_xasprintf("instance:%s", val), true);
            break;
        default:
            break;
        }
        free(val);
    }
}

/* resource key -> the last exclusive user and the shared users since */
typedef struct rstate {
    const char *key;
    size_t writer;          /* SIZE_MAX: none */
    size_t *readers;
    size_t nreaders;
} rstate_t;

static void add_dep(plan_t *p, size_t from, size_t to)
{
    node_t *f = &p->nodes[from];
    if (f->ndependents && f->dependents[f->ndependents - 1] == to)
        return;
    f->dependents = hero_xrealloc(f->dependents, (f->ndependents + 1) * sizeof(size_t));
    f->dependents[f->ndependents++] = to;
    p->nodes[to].pending++;
}

static void plan_build(plan_t *p, hs_playbook_t *pb)
{
    memset(p, 0, sizeof(*p));
    p->nodes = hero_xcalloc(pb->nactions ? pb->nactions : 1, sizeof(node_t));
    const char *current = plan_string(p, hero_xstrdup("default"));
    rstate_t *rs = NULL;
    size_t nrs = 0;
    for (size_t i = 0; i < pb->nactions; i++) {
        hs_action_t *a = pb->actions[i];
        if (a->def->flags & HERO_ACT_DIRECTIVE)
            continue;
        size_t idx = p->n++;
        node_t *nd = &p->nodes[idx];
        nd->a = a;
        node_resources(p, nd, &current);
        for (size_t r = 0; r < nd->nres; r++) {
            rstate_t *st = NULL;
            for (size_t k = 0; k < nrs; k++)
                if (strcmp(rs[k].key, nd->res[r].key) == 0)
                    st = &rs[k];
            if (!st) {
                rs = hero_xrealloc(rs, (nrs + 1) * sizeof(rstate_t));
                st = &rs[nrs++];
                *st = (rstate_t){nd->res[r].key, SIZE_MAX, NULL, 0};
            }
            if (nd->res[r].excl) {
                if (st->writer != SIZE_MAX)
                    add_dep(p, st->writer, idx);
                for (size_t k = 0; k < st->nreaders; k++)
                    add_dep(p, st->readers[k], idx);
                st->writer = idx;
                st->nreaders = 0;
            } else {
                if (st->writer != SIZE_MAX)
                    add_dep(p, st->writer, idx);
                st->readers = hero_xrealloc(st->readers, (st->nreaders + 1) * sizeof(size_t));
                st->readers[st->nreaders++] = idx;
            }
        }
    }
    for (size_t k = 0; k < nrs; k++)
        free(rs[k].readers);
    free(rs);
}

static void plan_free(plan_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        node_t *nd = &p->nodes[i];
        for (size_t r = 0; r < nd->nres; r++)
            free(nd->res[r].key);
        free(nd->res);
        free(nd->dependents);
        free(nd->task.out);
        free(nd->task.errout);
        hero_error_clear(&nd->task.err);
    }
    free(p->nodes);
    for (size_t i = 0; i < p->nstrings; i++)
        free(p->strings[i]);
    free(p->strings);
}

void hero_plan_print(FILE *out, const hs_playbook_t *pb)
{
    plan_t p;
    plan_build(&p, (hs_playbook_t *)pb);
    for (size_t i = 0; i < p.n; i++) {
        const node_t *nd = &p.nodes[i];
        uint32_t line, col;
        hs_source_linecol(nd->a->src, nd->a->off, &line, &col);
        fprintf(out, "%zu. %s.%s  (%s:%u)\n", i + 1, nd->a->def->actor, nd->a->def->name,
                nd->a->src->path, line);
        fprintf(out, "   would: %s%s\n", nd->a->def->what ? nd->a->def->what : "run",
                nd->a->def->start ? "" : " [not implemented in this build]");
        if (nd->nres) {
            fputs("   touches:", out);
            for (size_t r = 0; r < nd->nres; r++)
                fprintf(out, " %s%s", nd->res[r].key, nd->res[r].excl ? "" : " (shared)");
            fputs("\n", out);
        }
        if (nd->pending) {
            fputs("   after:", out);
            for (size_t k = 0; k < i; k++)
                for (size_t d = 0; d < p.nodes[k].ndependents; d++)
                    if (p.nodes[k].dependents[d] == i)
                        fprintf(out, " %zu", k + 1);
            fputs("\n", out);
        }
    }
    plan_free(&p);
}

/* ---- output ---- */
void hero_task_write(hero_task_t *t, const char *data, size_t len)
{
    if (t->out_len + len + 1 > t->out_cap) {
        t->out_cap = (t->out_len + len + 1) * 2;
        t->out = hero_xrealloc(t->out, t->out_cap);
    }
    memcpy(t->out + t->out_len, data, len);
    t->out_len += len;
}

void hero_task_write_err(hero_task_t *t, const char *data, size_t len)
{
    if (t->errout_len + len + 1 > t->errout_cap) {
        t->errout_cap = (t->errout_len + len + 1) * 2;
        t->errout = hero_xrealloc(t->errout, t->errout_cap);
    }
    memcpy(t->errout + t->errout_len, data, len);
    t->errout_len += len;
}

void hero_task_printf(hero_task_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_task_write(t, s, strlen(s));
    free(s);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* a closed stdout must not stop the run */
        p += w;
        n -= (size_t)w;
    }
}

static void report_failure(hero_sched_t *s, const node_t *nd)
{
    hs_diag_t dg = {HS_ERROR, nd->a->src, nd->a->off, NULL, 0};
    dg.msg = hero_xasprintf("%s.%s failed: %s", nd->a->def->actor, nd->a->def->name,
                            nd->task.err.msg ? nd->task.err.msg : "unknown error");
    hs_diag_print(stderr, &dg, s->opts->color);
    free(dg.msg);
}

/* Prints the output of every finished action whose predecessors are all printed. */
static void flush_in_order(hero_sched_t *s, bool all)
{
    while (s->next_print < s->plan.n) {
        node_t *nd = &s->plan.nodes[s->next_print];
        if (nd->state < ST_DONE && !all)
            return;
        if (nd->task.out_len) {
            fflush(stdout);
            write_all(STDOUT_FILENO, nd->task.out, nd->task.out_len);
        }
        if (nd->task.errout_len)
            write_all(STDERR_FILENO, nd->task.errout, nd->task.errout_len);
        if (nd->state == ST_FAILED)
            report_failure(s, nd);
        if (s->opts->verbosity > 0 && nd->state >= ST_DONE) {
            uint32_t line, col;
            hs_source_linecol(nd->a->src, nd->a->off, &line, &col);
            const char *what = nd->state == ST_DONE     ? "ok"
                               : nd->state == ST_FAILED ? "FAILED"
                               : nd->state == ST_SKIPPED ? "skipped (a prerequisite failed)"
                                                         : "not run";
            if (nd->state == ST_DONE || nd->state == ST_FAILED)
                fprintf(stderr, "hero: [%zu/%zu] %s.%s (%s:%u) %s in %.1f ms\n", s->next_print + 1,
                        s->plan.n, nd->a->def->actor, nd->a->def->name, nd->a->src->path, line,
                        what, (double)(nd->task.ended_ns - nd->task.started_ns) / 1e6);
            else
                fprintf(stderr, "hero: [%zu/%zu] %s.%s (%s:%u) %s\n", s->next_print + 1, s->plan.n,
                        nd->a->def->actor, nd->a->def->name, nd->a->src->path, line, what);
        }
        s->next_print++;
    }
}

/* ---- the ready heap (lowest plan index first, so file order breaks ties) ---- */
static void heap_push(hero_sched_t *s, size_t v)
{
    size_t i = s->nheap++;
    s->heap[i] = v;
    while (i && s->heap[(i - 1) / 2] > s->heap[i]) {
        size_t par = (i - 1) / 2, t = s->heap[par];
        s->heap[par] = s->heap[i];
        s->heap[i] = t;
        i = par;
    }
}

static size_t heap_pop(hero_sched_t *s)
{
    size_t top = s->heap[0];
    s->heap[0] = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->nheap && s->heap[l] < s->heap[m])
            m = l;
        if (r < s->nheap && s->heap[r] < s->heap[m])
            m = r;
        if (m == i)
            break;
        size_t t = s->heap[m];
        s->heap[m] = s->heap[i];
        s->heap[i] = t;
        i = m;
    }
    return top;
}

/* ---- running ---- */
static void pump(hero_sched_t *s);

void hero_task_done(hero_task_t *t, int rc, hero_error_t *err)
{
    hero_sched_t *s = t->sched;
    node_t *nd = &s->plan.nodes[t->index];
    t->ended_ns = uv_hrtime();
    t->cancel = NULL;
    if (rc < 0) {
        t->err = err && err->msg ? *err : (hero_error_t){0, hero_xstrdup("failed")};
        if (err)
            *err = (hero_error_t)HERO_ERROR_INIT;
    }
    nd->state = rc < 0 ? ST_FAILED : ST_DONE;
    if (s->ncompleted == s->capcompleted) {
        s->capcompleted = s->capcompleted ? s->capcompleted * 2 : 16;
        s->completed = hero_xrealloc(s->completed, s->capcompleted * sizeof(size_t));
    }
    s->completed[s->ncompleted++] = t->index;
    pump(s);
}

static void finish_node(hero_sched_t *s, size_t idx)
{
    node_t *nd = &s->plan.nodes[idx];
    bool failed = nd->state != ST_DONE;
    if (nd->state == ST_FAILED) {
        s->nfailed++;
        if (!s->opts->keep_going)
            s->stopping = true;
    }
    for (size_t k = 0; k < nd->ndependents; k++) {
        node_t *dn = &s->plan.nodes[nd->dependents[k]];
        if (failed)
            dn->prereq_failed = true;
        if (--dn->pending == 0) {
            if (dn->prereq_failed) {
                dn->state = ST_SKIPPED;
                s->completed[s->ncompleted++] = nd->dependents[k]; /* cascades */
            } else {
                dn->state = ST_READY;
                heap_push(s, nd->dependents[k]);
            }
        }
    }
}

static void start_node(hero_sched_t *s, size_t idx)
{
    node_t *nd = &s->plan.nodes[idx];
    hero_task_t *t = &nd->task;
    t->action = nd->a;
    t->index = idx;
    t->loop = &s->loop;
    t->sched = s;
    t->instance = nd->instance;
    t->started_ns = uv_hrtime();
    nd->state = ST_RUNNING;
    s->running++;
    if (s->opts->verbosity > 0) {
        uint32_t line, col;
        hs_source_linecol(nd->a->src, nd->a->off, &line, &col);
        fprintf(stderr, "hero: [%zu/%zu] %s.%s (%s:%u) started\n", idx + 1, s->plan.n,
                nd->a->def->actor, nd->a->def->name, nd->a->src->path, line);
    }
    hero_error_t err = HERO_ERROR_INIT;
    int rc;
    if (!nd->a->def->start)
        rc = hero_error_set(&err, 0,
                            "%s.%s is not implemented in this build (it validates, but nothing "
                            "can run it yet)",
                            nd->a->def->actor, nd->a->def->name);
    else
        rc = nd->a->def->start(t, &err);
    if (rc < 0)
        hero_task_done(t, rc, &err);
}

static void pump(hero_sched_t *s)
{
    if (s->pumping)
        return;
    s->pumping = true;
    for (;;) {
        if (s->ncompleted) {
            size_t idx = s->completed[--s->ncompleted];
            node_t *nd = &s->plan.nodes[idx];
            if (nd->state == ST_DONE || nd->state == ST_FAILED)
                s->running--;
            /* room for cascaded skips */
            if (s->capcompleted < s->ncompleted + nd->ndependents + 1) {
                s->capcompleted = s->ncompleted + nd->ndependents + 16;
                s->completed = hero_xrealloc(s->completed, s->capcompleted * sizeof(size_t));
            }
            finish_node(s, idx);
            continue;
        }
        if (!s->stopping && s->nheap && s->running < (size_t)s->opts->jobs) {
            start_node(s, heap_pop(s));
            continue;
        }
        break;
    }
    flush_in_order(s, false);
    s->pumping = false;
}

static void on_signal(uv_signal_t *h, int signum)
{
    hero_sched_t *s = h->data;
    if (s->interrupted) {
        fprintf(stderr, "hero: %s again: giving up on a clean stop\n", strsignal(signum));
        signal(signum, SIG_DFL);
        raise(signum);
        return;
    }
    s->interrupted = true;
    s->stopping = true;
    fprintf(stderr, "hero: %s: stopping; running actions clean up (again to force)\n",
            strsignal(signum));
    for (size_t i = 0; i < s->plan.n; i++) {
        hero_task_t *t = &s->plan.nodes[i].task;
        if (s->plan.nodes[i].state == ST_RUNNING && t->cancel)
            t->cancel(t);
    }
}

/* The options of the run in progress (one per process), for handlers that print
 * something of their own, such as pull progress. */
static int run_verbosity;

int hero_run_verbosity(void)
{
    return run_verbosity;
}

int hero_run(hs_playbook_t *pb, const hero_run_opts_t *opts)
{
    hero_sched_t *s = hero_xcalloc(1, sizeof(*s));
    s->opts = opts;
    run_verbosity = opts->verbosity;
    plan_build(&s->plan, pb);
    s->heap = hero_xmalloc((s->plan.n + 1) * sizeof(size_t));
    uv_loop_init(&s->loop);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    /* the signal watchers must not keep the loop alive once the actions are done */
    uv_unref((uv_handle_t *)&s->sigint);
    uv_unref((uv_handle_t *)&s->sigterm);

    for (size_t i = 0; i < s->plan.n; i++)
        if (s->plan.nodes[i].pending == 0) {
            s->plan.nodes[i].state = ST_READY;
            heap_push(s, i);
        }
    pump(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);

    for (size_t i = 0; i < s->plan.n; i++)
        if (s->plan.nodes[i].state < ST_DONE)
            s->plan.nodes[i].state = ST_NOT_RUN;
    flush_in_order(s, true);
    size_t not_run = 0, skipped = 0;
    for (size_t i = 0; i < s->plan.n; i++) {
        not_run += s->plan.nodes[i].state == ST_NOT_RUN;
        skipped += s->plan.nodes[i].state == ST_SKIPPED;
    }
    if ((s->nfailed || s->interrupted) && opts->verbosity >= 0) {
        if (s->interrupted)
            fprintf(stderr, "hero: interrupted");
        else
            fprintf(stderr, "hero: %zu action%s failed", s->nfailed, s->nfailed == 1 ? "" : "s");
        if (not_run + skipped)
            fprintf(stderr, "; %zu not run", not_run + skipped);
        fputs("\n", stderr);
    }
    int rc = s->nfailed || s->interrupted ? 1 : 0;

    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0) {
        /* a handler left a handle open: a bug, reported so tests catch it */
        fprintf(stderr, "hero: internal error: the event loop still had open handles at exit\n");
        rc = rc ? rc : 1;
    }
    plan_free(&s->plan);
    free(s->heap);
    free(s->completed);
    free(s);
    return rc;
}
