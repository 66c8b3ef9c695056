/* The plan and the scheduler. The plan lists the playbook's actions in file order,
 * each with the resources it touches; the scheduler runs them on the libuv loop: an
 * action starts when every earlier action that shares a resource with it (one of
 * them exclusively) has finished, at most `jobs` at once. Output is kept per action
 * and printed in file order, whatever the concurrency. */
#ifndef HERO_SCHED_H
#define HERO_SCHED_H

#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

#include "grammar/heroscript.h"
#include "runtime/error.h"

typedef struct hero_sched hero_sched_t;

/* One running action, handed to its handler. The scheduler owns it. */
typedef struct hero_task {
    const hs_action_t *action;
    size_t index;              /* in the plan */
    uv_loop_t *loop;
    hero_sched_t *sched;
    const char *instance;      /* the heropods instance it belongs to, or NULL */
    void *state;               /* the handler's own */
    /* Set by a handler that can be interrupted: asks it to stop soon and clean up;
     * it still calls hero_task_done. */
    void (*cancel)(struct hero_task *t);
    /* private to the scheduler */
    char *out, *errout;
    size_t out_len, out_cap, errout_len, errout_cap;
    int status;
    hero_error_t err;
    uint64_t started_ns, ended_ns;
} hero_task_t;

/* Appends to the action's output (printed to stdout, in file order). */
void hero_task_write(hero_task_t *t, const char *data, size_t len);
/* The same for what goes to stderr (a command's error output), also in file order. */
void hero_task_write_err(hero_task_t *t, const char *data, size_t len);
void hero_task_printf(hero_task_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends the action: rc 0 success; rc < 0 failure with `err` (its message is taken
 * over and err cleared). Must be called exactly once, from the loop thread. */
void hero_task_done(hero_task_t *t, int rc, hero_error_t *err);

typedef struct hero_run_opts {
    int jobs;                  /* at most this many actions at once (>= 1) */
    bool keep_going;           /* run every action whose prerequisites succeeded */
    int verbosity;             /* -1 quiet, 0 normal, 1 verbose */
    bool color;                /* diagnostics on a terminal */
} hero_run_opts_t;

/* Runs the validated playbook. Returns the exit code: 0 all succeeded, 1 an action
 * failed or hero was interrupted. SIGINT/SIGTERM cancel running actions. */
int hero_run(hs_playbook_t *pb, const hero_run_opts_t *opts);

/* The verbosity of the run in progress (-1 quiet, 0 normal, 1 verbose). */
int hero_run_verbosity(void);

/* `--dry-run`: prints each action, its resources and what it would do. */
void hero_plan_print(FILE *out, const hs_playbook_t *pb);

#endif
