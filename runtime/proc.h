/* The process primitive: run a program from an argv array on the libuv loop (never
 * a shell), capture its stdout and stderr up to a cap, enforce a deadline (SIGTERM to
 * its process group, then SIGKILL after a grace period), and report the exit status
 * and the terminating signal apart. libuv's handle rules hold: the hero_proc_t is
 * freed only after the last of its handles' close callbacks has run, also when
 * uv_spawn fails. */
#ifndef HERO_PROC_H
#define HERO_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/error.h"

typedef struct hero_proc hero_proc_t;

typedef struct hero_proc_result {
    int exit_status;       /* valid when term_signal == 0 */
    int term_signal;       /* the signal that ended it, or 0 */
    bool timed_out;        /* the deadline passed and hero signalled it */
    bool cancelled;        /* hero_proc_cancel() was called */
    const char *out;       /* captured stdout (NUL-terminated), valid during the callback */
    size_t out_len;
    bool out_truncated;    /* more than the cap was written; the rest was read and dropped */
    const char *err;       /* captured stderr, likewise */
    size_t err_len;
    bool err_truncated;
    uint64_t elapsed_ms;
} hero_proc_result_t;

/* Called once, when the process has exited and both pipes are drained. The result
 * and its buffers are valid only during the call. */
typedef void (*hero_proc_cb)(hero_proc_t *p, const hero_proc_result_t *r, void *data);

typedef struct hero_proc_opts {
    const char *const *argv;   /* argv[0] is looked up in PATH when it has no '/' */
    const char *const *env;    /* NULL: inherit hero's environment */
    const char *cwd;           /* NULL: hero's */
    size_t capture_cap;        /* per stream; 0: 1 MiB */
    bool inherit_stdout;       /* pass hero's stdout/stderr through instead of capturing */
    bool inherit_stderr;
    int stdout_fd;             /* > 0: the child writes its stdout to this fd of hero's (a log
                                  file) instead; 0: capture or inherit as above */
    int stderr_fd;
    uint64_t timeout_ms;       /* 0: none */
    uint64_t eof_wait_ms;      /* once it has exited, how long hero reads on while something
                                  else holds its pipes open (a child it left running in the
                                  background), before it closes them and reports; 0: until
                                  they are closed */
    uint64_t kill_grace_ms;    /* after SIGTERM; 0: 2000 */
} hero_proc_opts_t;

/* Spawns the process in a new process group. On failure returns <0 with err set (for
 * example "cannot run 'crun': No such file or directory"); the callback is not called. */
int hero_proc_spawn(uv_loop_t *loop, const hero_proc_opts_t *opts, hero_proc_cb cb, void *data,
                    hero_proc_t **out, hero_error_t *err);

/* SIGTERM to the process group now, SIGKILL after the grace period. Safe to call
 * more than once, and after exit (then it does nothing). */
void hero_proc_cancel(hero_proc_t *p);

/* Lets the process run on without hero: no deadline, no callback, the handles
 * closed (the hero_proc_t is freed from their close callbacks). It stays hero's
 * child, in a session of its own: waitpid(pid, WNOHANG) tells whether it is still
 * there while hero runs, and init takes it over when hero exits. For daemons hero
 * starts (the overlay's); give it stdout_fd/stderr_fd rather than captured pipes. */
void hero_proc_detach(hero_proc_t *p);

/* The process id (for tests and logs). */
int hero_proc_pid(const hero_proc_t *p);

#endif
