/* Unit tests for runtime/proc.c: capture, exit status vs signal, caps, deadlines,
 * process-group kill, cancel, spawn failure, env and cwd. Every case runs the loop
 * to completion, and the loop must close cleanly at the end. */
#include "runtime/proc.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct run {
    int rc;
    int calls;
    bool nul_terminated;
    hero_proc_t *p;
    hero_error_t e;
    hero_proc_result_t r; /* out/err point at the copies below */
    char *out, *err;
} run_t;

static uv_loop_t loop;

static char *copy_bytes(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static void on_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    run_t *t = data;
    t->calls++;
    t->nul_terminated = r->out[r->out_len] == 0 && r->err[r->err_len] == 0;
    free(t->out);
    free(t->err);
    t->out = copy_bytes(r->out, r->out_len);
    t->err = copy_bytes(r->err, r->err_len);
    t->r = *r;
    t->r.out = t->out;
    t->r.err = t->err;
    /* After the exit a cancel must be a harmless no-op (valgrind/ASan watch this). */
    hero_proc_cancel(p);
}

static void run_free(run_t *t)
{
    free(t->out);
    free(t->err);
    hero_error_clear(&t->e);
    memset(t, 0, sizeof(*t));
}

static int start(run_t *t, const hero_proc_opts_t *o)
{
    memset(t, 0, sizeof(*t));
    t->rc = hero_proc_spawn(&loop, o, on_done, t, &t->p, &t->e);
    return t->rc;
}

static void run(run_t *t, const hero_proc_opts_t *o)
{
    start(t, o);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static bool plain_exit(const run_t *t, int status)
{
    return t->rc == 0 && t->calls == 1 && t->r.term_signal == 0 && t->r.exit_status == status &&
           !t->r.timed_out && !t->r.cancelled;
}

/* ---- cases ---- */

static void test_echo(void)
{
    const char *argv[] = {"/bin/echo", "hello", "world", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(plain_exit(&t, 0), "echo: exits 0 with no signal, callback once");
    TAP_STREQ(t.out, "hello world\n", "echo: stdout captured exactly");
    TAP_OK(t.r.out_len == 12 && !t.r.out_truncated, "echo: out_len 12, not truncated");
    TAP_OK(t.r.err_len == 0, "echo: stderr empty");
    TAP_OK(t.nul_terminated, "echo: buffers NUL-terminated");
    run_free(&t);
}

static void test_path_lookup(void)
{
    const char *argv[] = {"echo", "from PATH", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(plain_exit(&t, 0), "path lookup: argv[0] without '/' is found in PATH");
    TAP_STREQ(t.out, "from PATH\n", "path lookup: output");
    run_free(&t);
}

static void test_exit_status(void)
{
    const char *argv[] = {"sh", "-c", "exit 3", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(t.calls == 1 && t.r.exit_status == 3, "exit 3: exit_status is 3");
    TAP_OK(t.r.term_signal == 0, "exit 3: term_signal is 0");
    run_free(&t);
}

static void test_killed_by_signal(void)
{
    const char *argv[] = {"/bin/sleep", "30", NULL};
    run_t t;
    start(&t, &(hero_proc_opts_t){.argv = argv});
    int pid = hero_proc_pid(t.p);
    TAP_OK(t.rc == 0 && pid > 0, "SIGKILL: spawned, pid known");
    if (pid > 0)
        kill(pid, SIGKILL);
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(t.calls == 1 && t.r.term_signal == SIGKILL, "SIGKILL: term_signal 9");
    TAP_OK(!t.r.timed_out && !t.r.cancelled, "SIGKILL: neither timed_out nor cancelled");
    run_free(&t);
}

static void test_stderr_apart(void)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo out2", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(plain_exit(&t, 0), "stderr: exits 0");
    TAP_STREQ(t.out, "out\nout2\n", "stderr: stdout holds only stdout");
    TAP_STREQ(t.err, "err\n", "stderr: stderr captured apart");
    run_free(&t);
}

static char *seq_prefix(size_t n)
{
    char *s = malloc(n + 32);
    size_t len = 0;
    for (int i = 1; len < n; i++)
        len += (size_t)sprintf(s + len, "%d\n", i);
    s[n] = 0;
    return s;
}

static void test_cap(void)
{
    /* seq 1 1000000 writes about 6.9 MB, far beyond any pipe buffer: if the excess
     * were not drained, seq would block forever and the loop would never return. */
    const char *argv[] = {"seq", "1", "1000000", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .capture_cap = 1000});
    TAP_OK(plain_exit(&t, 0), "cap 1000: the writer was drained and exited 0");
    TAP_OK(t.r.out_len == 1000 && t.r.out_truncated, "cap 1000: out_len 1000, truncated");
    char *want = seq_prefix(1000);
    TAP_STREQ(t.out, want, "cap 1000: the first 1000 bytes are kept");
    free(want);
    run_free(&t);

    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(plain_exit(&t, 0), "default cap: exits 0");
    TAP_OK(t.r.out_len == 1024 * 1024 && t.r.out_truncated, "default cap: 1 MiB kept, truncated");
    want = seq_prefix(1024 * 1024);
    TAP_OK(t.out && memcmp(t.out, want, 1024 * 1024) == 0, "default cap: content intact");
    free(want);
    run_free(&t);
}

static void test_cap_edges(void)
{
    const char *argv[] = {"printf", "abcde", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .capture_cap = 5});
    TAP_OK(t.r.out_len == 5 && !t.r.out_truncated, "cap 5, 5 bytes written: not truncated");
    TAP_STREQ(t.out, "abcde", "cap 5: content");
    run_free(&t);

    run(&t, &(hero_proc_opts_t){.argv = argv, .capture_cap = 4});
    TAP_OK(t.r.out_len == 4 && t.r.out_truncated, "cap 4, 5 bytes written: truncated");
    TAP_STREQ(t.out, "abcd", "cap 4: content");
    run_free(&t);

    const char *argv_err[] = {"sh", "-c", "printf 0123456789 >&2", NULL};
    run(&t, &(hero_proc_opts_t){.argv = argv_err, .capture_cap = 3});
    TAP_OK(t.r.err_len == 3 && t.r.err_truncated && !t.r.out_truncated,
           "cap applies to stderr on its own");
    TAP_STREQ(t.err, "012", "stderr cap: content");
    run_free(&t);
}

static void test_timeout(void)
{
    const char *argv[] = {"/bin/sleep", "30", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .timeout_ms = 200});
    TAP_OK(t.calls == 1 && t.r.timed_out && !t.r.cancelled, "timeout: timed_out set");
    TAP_OK(t.r.term_signal == SIGTERM, "timeout: ended by SIGTERM");
    TAP_OK(t.r.elapsed_ms >= 150 && t.r.elapsed_ms < 5000, "timeout: elapsed ~200 ms");
    run_free(&t);
}

static bool pid_gone(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* An orphan killed with its group may linger as a zombie until init reaps it. */
    const char *rp = strrchr(buf, ')');
    return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

static bool wait_pid_gone(int pid)
{
    for (int i = 0; i < 100; i++) {
        if (pid_gone(pid))
            return true;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return false;
}

static void test_group_kill(void)
{
    /* TERM is ignored by the shell and, inherited, by its background sleep: only the
     * SIGKILL to the whole group ends both. The sleep holds the stdout pipe, so the
     * callback itself can only run once the grandchild is dead too. */
    const char *argv[] = {"sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .timeout_ms = 200, .kill_grace_ms = 300});
    TAP_OK(t.calls == 1 && t.r.timed_out, "group kill: timed_out");
    TAP_OK(t.r.term_signal == SIGKILL, "group kill: TERM ignored, ended by SIGKILL");
    TAP_OK(t.r.elapsed_ms >= 450 && t.r.elapsed_ms < 3000,
           "group kill: callback after deadline + grace, within ~2 s");
    int child = t.out ? atoi(t.out) : 0;
    TAP_OK(child > 0 && wait_pid_gone(child), "group kill: the backgrounded grandchild died too");
    run_free(&t);
}

static void test_waits_for_eof(void)
{
    /* The leader exits at once; a background subshell keeps stdout open and writes
     * later. The callback must wait for that EOF, not stop at the exit. */
    const char *argv[] = {"sh", "-c", "(sleep 0.3; echo late) & echo early", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(plain_exit(&t, 0), "eof: exits 0");
    TAP_STREQ(t.out, "early\nlate\n", "eof: output written after the leader's exit is kept");
    run_free(&t);
}

static void test_eof_wait(void)
{
    /* eof_wait_ms: a background child that holds stdout for 20 s is not waited for;
     * what came before the wait ran out is kept */
    const char *argv[] = {"sh", "-c", "sleep 20 & echo $!; echo early", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .eof_wait_ms = 150});
    TAP_OK(plain_exit(&t, 0), "eof_wait: exits 0");
    TAP_OK(t.r.elapsed_ms >= 100 && t.r.elapsed_ms < 3000,
           "eof_wait: reported once the wait ran out, not when the background child ends");
    TAP_OK(t.out && strstr(t.out, "\nearly\n"), "eof_wait: the output before it is kept");
    int child = t.out ? atoi(t.out) : 0;
    if (child > 0)
        kill(child, SIGKILL);
    run_free(&t);

    /* a child that ends within the wait: its output is all there */
    const char *argv2[] = {"sh", "-c", "(sleep 0.1; echo late) & echo early", NULL};
    run(&t, &(hero_proc_opts_t){.argv = argv2, .eof_wait_ms = 2000});
    TAP_OK(plain_exit(&t, 0) && t.r.elapsed_ms < 1500, "eof_wait: a child ending in time");
    TAP_STREQ(t.out, "early\nlate\n", "eof_wait: ... is read to its end");
    run_free(&t);
}

static int closed_count;

static void count_close(uv_handle_t *h)
{
    (void)h;
    closed_count++;
}

static void test_missing_program(void)
{
    const char *argv[] = {"hero-no-such-program-xyz", "arg", NULL};
    run_t t;
    start(&t, &(hero_proc_opts_t){.argv = argv});
    TAP_OK(t.rc < 0, "missing program: rc < 0");
    TAP_OK(t.p == NULL, "missing program: no handle returned");
    TAP_OK(t.e.msg && strstr(t.e.msg, "cannot run 'hero-no-such-program-xyz': "),
           "missing program: error names it");
    if (t.e.msg)
        printf("#   message: %s\n", t.e.msg);
    TAP_OK(t.e.code == ENOENT, "missing program: code ENOENT");
    uv_run(&loop, UV_RUN_DEFAULT); /* lets the close callbacks free it */
    TAP_OK(t.calls == 0, "missing program: callback never called");
    run_free(&t);

    const char *argv_abs[] = {"/nonexistent/dir/prog", NULL};
    start(&t, &(hero_proc_opts_t){.argv = argv_abs, .timeout_ms = 100});
    TAP_OK(t.rc < 0 && t.e.msg && strstr(t.e.msg, "'/nonexistent/dir/prog'"),
           "missing absolute path: rc < 0 and named");
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(t.calls == 0, "missing absolute path: callback never called");
    run_free(&t);

    const char *argv_empty[] = {NULL};
    start(&t, &(hero_proc_opts_t){.argv = argv_empty});
    TAP_OK(t.rc < 0 && t.e.msg != NULL, "empty argv: rejected with an error");
    run_free(&t);
}

static void on_cancel_timer(uv_timer_t *timer)
{
    run_t *t = timer->data;
    hero_proc_cancel(t->p);
    hero_proc_cancel(t->p); /* idempotent */
    uv_close((uv_handle_t *)timer, count_close);
}

static void test_cancel(void)
{
    const char *argv[] = {"/bin/sleep", "30", NULL};
    run_t t;
    start(&t, &(hero_proc_opts_t){.argv = argv, .timeout_ms = 20000});
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &t;
    uv_timer_start(&timer, on_cancel_timer, 100, 0);
    closed_count = 0;
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(t.rc == 0 && t.calls == 1 && t.r.cancelled, "cancel: cancelled set, callback once");
    TAP_OK(!t.r.timed_out && t.r.term_signal == SIGTERM, "cancel: SIGTERM, not timed out");
    TAP_OK(t.r.elapsed_ms >= 80 && t.r.elapsed_ms < 5000 && closed_count == 1,
           "cancel: ended soon after the cancel");
    run_free(&t);
}

static void test_env(void)
{
    const char *argv[] = {"/usr/bin/env", NULL};
    const char *env[] = {"HERO_TEST_VAR=hello42", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .env = env});
    TAP_OK(plain_exit(&t, 0), "env: exits 0");
    TAP_STREQ(t.out, "HERO_TEST_VAR=hello42\n", "env: exactly the given environment");
    run_free(&t);
}

static void test_cwd(void)
{
    char tmpl[] = "/tmp/hero-proc-XXXXXX";
    char real[PATH_MAX];
    bool have = mkdtemp(tmpl) && realpath(tmpl, real);
    TAP_OK(have, "cwd: temporary directory made");
    if (!have)
        return;
    const char *argv[] = {"/bin/pwd", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .cwd = real});
    char want[PATH_MAX + 2];
    snprintf(want, sizeof(want), "%s\n", real);
    TAP_OK(plain_exit(&t, 0), "cwd: exits 0");
    TAP_STREQ(t.out, want, "cwd: pwd prints the given directory");
    run_free(&t);
    rmdir(tmpl);
}

static void test_inherit_stdout(void)
{
    /* The child's line goes straight to our stdout, where TAP reads it as a comment. */
    const char *argv[] = {"sh", "-c", "echo '# inherited stdout'; echo captured >&2", NULL};
    run_t t;
    run(&t, &(hero_proc_opts_t){.argv = argv, .inherit_stdout = true});
    TAP_OK(plain_exit(&t, 0), "inherit stdout: exits 0");
    TAP_OK(t.r.out_len == 0 && t.out && t.out[0] == 0, "inherit stdout: nothing captured");
    TAP_STREQ(t.err, "captured\n", "inherit stdout: stderr still captured");
    run_free(&t);
}

static void test_concurrent(void)
{
    const char *a[] = {"sh", "-c", "sleep 0.1; echo a", NULL};
    const char *b[] = {"/bin/echo", "b", NULL};
    run_t ta, tb;
    start(&ta, &(hero_proc_opts_t){.argv = a});
    start(&tb, &(hero_proc_opts_t){.argv = b});
    TAP_OK(hero_proc_pid(ta.p) != hero_proc_pid(tb.p), "concurrent: two pids");
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(ta.calls == 1 && tb.calls == 1, "concurrent: both callbacks once");
    TAP_STREQ(ta.out, "a\n", "concurrent: first output");
    TAP_STREQ(tb.out, "b\n", "concurrent: second output");
    run_free(&ta);
    run_free(&tb);
}

int main(void)
{
    if (uv_loop_init(&loop) != 0) {
        printf("Bail out! uv_loop_init failed\n");
        return 1;
    }
    test_echo();
    test_path_lookup();
    test_exit_status();
    test_killed_by_signal();
    test_stderr_apart();
    test_cap();
    test_cap_edges();
    test_timeout();
    test_group_kill();
    test_waits_for_eof();
    test_eof_wait();
    test_missing_program();
    test_cancel();
    test_env();
    test_cwd();
    test_inherit_stdout();
    test_concurrent();
    TAP_OK(uv_run(&loop, UV_RUN_NOWAIT) == 0, "loop: no handles left alive");
    TAP_OK(uv_loop_close(&loop) == 0, "loop: uv_loop_close returns 0");
    return tap_done();
}
