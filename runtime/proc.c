/* The process primitive on libuv: argv-only spawn into a new session, capped capture
 * of stdout/stderr, a deadline with SIGTERM then SIGKILL to the whole process group.
 *
 * Two ways to start the child. Where the kernel has pidfds, clone with vfork
 * semantics (CLONE_VM | CLONE_VFORK: no copy of hero's page tables, no copy-on-write
 * faults afterwards; fork was most of hero's own CPU time per container) on a stack
 * kept for the process's life, with the exit watched as a pidfd (CLONE_PIDFD) on
 * the loop. Elsewhere (old kernels, valgrind), uv_spawn. Both give the same child:
 * its own session, default signals, stdin on /dev/null, argv only. */
#include "runtime/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum {
    HERO_PROC_DEFAULT_CAP = 1024 * 1024,
    HERO_PROC_DEFAULT_GRACE_MS = 2000,
    /* Large enough that a chatty child costs few syscalls once its output is only
     * being drained, small enough not to matter per process. */
    HERO_PROC_DISCARD_SIZE = 64 * 1024,
};

typedef struct hero_proc_capture {
    uv_pipe_t pipe;
    bool used;       /* the pipe handle was initialised and must be closed */
    bool done;       /* EOF or a read error: nothing more will arrive */
    bool truncated;
    char *buf;       /* the kept bytes, one spare byte for the NUL */
    size_t len, size;
} hero_proc_capture_t;

struct hero_proc {
    uv_loop_t *loop;
    uv_process_t process;
    bool process_used;  /* uv_spawn was called: the handle must be closed */
    uv_poll_t exit_poll; /* the fast path: the child's pidfd */
    int pidfd;          /* -1 when not used */
    uv_timer_t deadline;
    uv_timer_t grace;
    uv_timer_t eof;     /* eof_wait_ms after the exit */
    bool timers_used;
    uint64_t eof_wait_ms;

    hero_proc_capture_t out, err;
    /* One scratch buffer serves both streams: libuv calls alloc_cb and read_cb back
     * to back for one stream, so the two can never be using it at the same time. */
    char *discard;
    size_t cap;
    uint64_t grace_ms;

    hero_proc_cb cb;
    void *data;
    int pid;
    uint64_t start_ns;

    bool exited;
    int exit_status;
    int term_signal;
    bool term_sent;
    bool timed_out;
    bool cancelled;
    bool finished;      /* the callback ran; from here on only closing remains */
    int pending_closes;
};

/* ---- teardown ---- */

static void hero_proc_free(hero_proc_t *p)
{
    free(p->out.buf);
    free(p->err.buf);
    free(p->discard);
    free(p);
}

static void hero_proc_on_close(uv_handle_t *h)
{
    hero_proc_t *p = h->data;
    if (--p->pending_closes == 0)
        hero_proc_free(p);
}

static void hero_proc_close_handle(hero_proc_t *p, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    p->pending_closes++;
    uv_close(h, hero_proc_on_close);
}

static void hero_proc_on_poll_close(uv_handle_t *h)
{
    hero_proc_t *p = h->data;
    close(p->pidfd);
    p->pidfd = -1;
    hero_proc_on_close(h);
}

/* The process handle is closed whenever uv_spawn was called: it initialises the
 * handle even when it fails. */
static void hero_proc_close_all(hero_proc_t *p)
{
    if (p->process_used)
        hero_proc_close_handle(p, (uv_handle_t *)&p->process);
    if (p->pidfd >= 0 && !uv_is_closing((uv_handle_t *)&p->exit_poll)) {
        p->pending_closes++;
        uv_close((uv_handle_t *)&p->exit_poll, hero_proc_on_poll_close);
    }
    if (p->out.used)
        hero_proc_close_handle(p, (uv_handle_t *)&p->out.pipe);
    if (p->err.used)
        hero_proc_close_handle(p, (uv_handle_t *)&p->err.pipe);
    if (p->timers_used) {
        hero_proc_close_handle(p, (uv_handle_t *)&p->deadline);
        hero_proc_close_handle(p, (uv_handle_t *)&p->grace);
        hero_proc_close_handle(p, (uv_handle_t *)&p->eof);
    }
}

/* ---- completion ---- */

static void hero_proc_stop_timers(hero_proc_t *p)
{
    if (p->timers_used) {
        uv_timer_stop(&p->deadline);
        uv_timer_stop(&p->grace);
        uv_timer_stop(&p->eof);
    }
}

static void hero_proc_fill_result(hero_proc_t *p, hero_proc_result_t *r)
{
    memset(r, 0, sizeof(*r));
    r->exit_status = p->exit_status;
    r->term_signal = p->term_signal;
    r->timed_out = p->timed_out;
    r->cancelled = p->cancelled;
    r->out = p->out.buf ? p->out.buf : "";
    r->out_len = p->out.len;
    r->out_truncated = p->out.truncated;
    r->err = p->err.buf ? p->err.buf : "";
    r->err_len = p->err.len;
    r->err_truncated = p->err.truncated;
    r->elapsed_ms = (uv_hrtime() - p->start_ns) / 1000000u;
}

/* Waiting for EOF as well as for the exit is what makes the capture complete: data
 * still sitting in a pipe when SIGCHLD arrives would otherwise be lost. */
static void hero_proc_maybe_finish(hero_proc_t *p)
{
    if (p->finished || !p->exited || !p->out.done || !p->err.done)
        return;
    p->finished = true;
    hero_proc_stop_timers(p);
    if (p->out.buf)
        p->out.buf[p->out.len] = 0;
    if (p->err.buf)
        p->err.buf[p->err.len] = 0;
    hero_proc_result_t r;
    hero_proc_fill_result(p, &r);
    p->cb(p, &r, p->data);
    hero_proc_close_all(p);
}

/* eof_wait_ms after the exit, the pipes are still open: what holds them is not the
 * process hero ran, and not waited for. (Its next write gets EPIPE, and SIGPIPE,
 * which ends it unless it handles that: as with docker exec.) */
static void hero_proc_on_eof_wait(uv_timer_t *t)
{
    hero_proc_t *p = t->data;
    hero_proc_capture_t *cs[] = {&p->out, &p->err};
    for (size_t i = 0; i < 2; i++)
        if (!cs[i]->done) {
            uv_read_stop((uv_stream_t *)&cs[i]->pipe);
            cs[i]->done = true;
        }
    hero_proc_maybe_finish(p);
}

static void hero_proc_exited(hero_proc_t *p)
{
    p->exited = true;
    hero_proc_maybe_finish(p);
    if (!p->finished && p->eof_wait_ms && p->timers_used)
        uv_timer_start(&p->eof, hero_proc_on_eof_wait, p->eof_wait_ms, 0);
}

/* The fast path: the pidfd is readable once the child has exited; reap it. */
static void hero_proc_on_pidfd(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    hero_proc_t *p = h->data;
    int ws = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &ws, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return; /* not yet: another readable event follows */
    uv_poll_stop(h);
    if (r > 0 && WIFSIGNALED(ws)) {
        p->term_signal = WTERMSIG(ws);
    } else if (r > 0) {
        p->exit_status = WEXITSTATUS(ws);
    } else {
        p->exit_status = 127; /* reaped elsewhere: nothing better is known */
    }
    hero_proc_exited(p);
}

static void hero_proc_on_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    hero_proc_t *p = proc->data;
    p->exit_status = (int)exit_status;
    p->term_signal = term_signal;
    hero_proc_exited(p);
}

/* ---- signalling ---- */

/* kill(2) rather than uv_kill: only kill(2) takes a negative pid, and the whole group
 * must go so that grandchildren do not outlive the step and hold its pipes open.
 * ESRCH (the group is already gone) is the expected race and needs no handling. */
static void hero_proc_signal_group(hero_proc_t *p, int sig)
{
    if (p->pid > 0)
        (void)kill(-(pid_t)p->pid, sig);
}

static void hero_proc_on_grace(uv_timer_t *t)
{
    hero_proc_signal_group(t->data, SIGKILL);
}

static void hero_proc_terminate(hero_proc_t *p)
{
    if (p->term_sent)
        return;
    p->term_sent = true;
    hero_proc_signal_group(p, SIGTERM);
    uv_timer_start(&p->grace, hero_proc_on_grace, p->grace_ms, 0);
}

static void hero_proc_on_deadline(uv_timer_t *t)
{
    hero_proc_t *p = t->data;
    p->timed_out = true;
    hero_proc_terminate(p);
}

/* Once the leader has exited we still signal while the pipes are open: the group id
 * cannot be reused while members of that group (the ones holding the pipes) live. */
void hero_proc_cancel(hero_proc_t *p)
{
    if (!p || p->finished || !p->timers_used)
        return;
    p->cancelled = true;
    hero_proc_terminate(p);
}

void hero_proc_detach(hero_proc_t *p)
{
    if (!p || p->finished)
        return;
    p->finished = true; /* the callback is never called */
    hero_proc_stop_timers(p);
    hero_proc_close_all(p);
}

int hero_proc_pid(const hero_proc_t *p)
{
    return p ? p->pid : 0;
}

/* ---- capture ---- */

static hero_proc_capture_t *hero_proc_capture_of(hero_proc_t *p, uv_handle_t *h)
{
    return h == (uv_handle_t *)&p->out.pipe ? &p->out : &p->err;
}

/* Grow geometrically, never past cap (+1 for the NUL), so a small cap stays small. */
static void hero_proc_capture_grow(hero_proc_capture_t *c, size_t cap, size_t suggested)
{
    size_t want = c->size * 2;
    if (want < c->len + suggested + 1)
        want = c->len + suggested + 1;
    if (want > cap + 1)
        want = cap + 1;
    if (want > c->size) {
        c->buf = hero_xrealloc(c->buf, want);
        c->size = want;
    }
}

static void hero_proc_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hero_proc_t *p = h->data;
    hero_proc_capture_t *c = hero_proc_capture_of(p, h);
    if (c->len < p->cap) {
        size_t room = c->size ? c->size - 1 - c->len : 0;
        size_t want = p->cap - c->len < suggested ? p->cap - c->len : suggested;
        if (room < want)
            hero_proc_capture_grow(c, p->cap, suggested);
        size_t avail = c->size - 1 - c->len;
        *buf = uv_buf_init(c->buf + c->len, avail > UINT_MAX ? UINT_MAX : (unsigned)avail);
        return;
    }
    /* Past the cap the child must still be read, or it would block on a full pipe
     * and never exit; the bytes land here and are dropped. */
    if (!p->discard)
        p->discard = hero_xmalloc(HERO_PROC_DISCARD_SIZE);
    *buf = uv_buf_init(p->discard, HERO_PROC_DISCARD_SIZE);
}

static void hero_proc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hero_proc_t *p = s->data;
    hero_proc_capture_t *c = hero_proc_capture_of(p, (uv_handle_t *)s);
    if (nread > 0) {
        if (buf->base == p->discard)
            c->truncated = true;
        else
            c->len += (size_t)nread;
        return;
    }
    if (nread == 0)
        return; /* EAGAIN: libuv will call again */
    /* EOF, or a read error: either way nothing more will come from this stream. */
    uv_read_stop(s);
    c->done = true;
    hero_proc_maybe_finish(p);
}

/* ---- spawn ---- */

static void hero_proc_stdio(hero_proc_t *p, hero_proc_capture_t *c, bool inherit, int fd,
                            int to_fd, uv_stdio_container_t *sc)
{
    if (inherit || to_fd > 0) {
        sc->flags = UV_INHERIT_FD;
        sc->data.fd = to_fd > 0 ? to_fd : fd;
        c->done = true;
        return;
    }
    uv_pipe_init(p->loop, &c->pipe, 0);
    c->pipe.data = p;
    c->used = true;
    sc->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    sc->data.stream = (uv_stream_t *)&c->pipe;
}

static void hero_proc_start_reading(hero_proc_capture_t *c)
{
    if (c->done)
        return;
    /* Without a reader the capture can never complete; treat it as empty rather than
     * wait for an EOF that will not be reported. */
    if (uv_read_start((uv_stream_t *)&c->pipe, hero_proc_on_alloc, hero_proc_on_read) < 0)
        c->done = true;
}

/* ---- clone (vfork semantics) with a pidfd ---- */

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Whether pidfds work here (not under valgrind 3.19, not before Linux 5.3). */
static bool pidfds_work(void)
{
    static int state = -1;
    if (state < 0) {
        int fd = pidfd_open_(getpid());
        state = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    return state == 1;
}

/* One output stream of the child: captured through a pipe whose read end goes to
 * the loop, or sent to a descriptor of hero's. *src: the fd the child dup2s onto fd
 * (-1: leave fd as it is). */
static int hero_proc_fast_stream(hero_proc_t *p, hero_proc_capture_t *c, bool inherit, int fd,
                                 int to_fd, int *src, int *close_after)
{
    *src = -1;
    if (inherit || to_fd > 0) {
        int from = to_fd > 0 ? to_fd : fd;
        c->done = true;
        if (from != fd)
            *src = from;
        return 0;
    }
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0)
        return -1;
    uv_pipe_init(p->loop, &c->pipe, 0);
    c->pipe.data = p;
    c->used = true;
    if (uv_pipe_open(&c->pipe, pp[0]) < 0) {
        close(pp[0]);
        close(pp[1]);
        return -1;
    }
    *src = pp[1];
    *close_after = pp[1];
    return 0;
}

typedef struct spawn_ctx {
    const hero_proc_opts_t *opts;
    char *const *envp;
    int out_src, err_src, devnull;
    bool path_search;
    int err;            /* the child's errno when it could not exec */
} spawn_ctx_t;

/* The child, on the parent's memory (CLONE_VM | CLONE_VFORK: the parent waits until
 * it execs or exits): only system calls from here on. */
static int spawn_child(void *arg)
{
    spawn_ctx_t *c = arg;
    /* every signal at its default, a session of its own (so one kill(-pid) reaches
     * all it starts), stdin on /dev/null, no blocked signals */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL);
    if (setsid() < 0)
        goto fail;
    if (dup2(c->devnull, 0) < 0)
        goto fail;
    if (c->out_src >= 0 && dup2(c->out_src, 1) < 0)
        goto fail;
    if (c->err_src >= 0 && dup2(c->err_src, 2) < 0)
        goto fail;
    if (c->opts->cwd && chdir(c->opts->cwd) < 0)
        goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (c->path_search)
        execvpe(c->opts->argv[0], (char *const *)c->opts->argv, c->envp);
    else
        execve(c->opts->argv[0], (char *const *)c->opts->argv, c->envp);
fail:
    c->err = errno ? errno : ENOEXEC;
    _exit(127);
}

/* The stack the child runs on: one is enough, as the parent waits (CLONE_VFORK) and
 * only the loop's thread spawns. Kept for the process's life: posix_spawn maps and
 * unmaps a stack per child, and the unmap of memory the child used on another CPU
 * is a TLB shootdown there (an IPI; a VM exit on a VM): about a tenth of hero's own
 * CPU time per container. Sized as glibc sizes its own (execvpe may copy argv onto
 * it for a script), grown for a long argv. */
static char *spawn_stack_top(const char *const *argv)
{
    static char *stack;
    static size_t size;
    size_t argc = 0;
    while (argv[argc])
        argc++;
    size_t need = 64 * 1024 + (argc + 2) * sizeof(char *);
    if (need > size) {
        free(stack);
        size = need < 128 * 1024 ? 128 * 1024 : need;
        stack = hero_xmalloc(size);
    }
    return stack + (size & ~(size_t)15);
}

/* The child's stdin, opened once. */
static int devnull_fd(void)
{
    static int fd = -1;
    if (fd < 0)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

static int hero_proc_spawn_fast(hero_proc_t *p, const hero_proc_opts_t *opts, hero_error_t *err)
{
    int out_w = -1, err_w = -1, rc = 0;
    spawn_ctx_t c = {.opts = opts, .devnull = -1, .out_src = -1, .err_src = -1};
    if (hero_proc_fast_stream(p, &p->out, opts->inherit_stdout, 1, opts->stdout_fd, &c.out_src,
                              &out_w) < 0 ||
        hero_proc_fast_stream(p, &p->err, opts->inherit_stderr, 2, opts->stderr_fd, &c.err_src,
                              &err_w) < 0) {
        rc = hero_error_set(err, errno, "cannot run '%s': pipe", opts->argv[0]);
        goto out;
    }
    c.devnull = devnull_fd();
    if (c.devnull < 0) {
        rc = hero_error_set(err, errno, "cannot run '%s': /dev/null", opts->argv[0]);
        goto out;
    }
    c.envp = opts->env ? (char *const *)opts->env : environ;
    c.path_search = !strchr(opts->argv[0], '/');
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int pidfd = -1;
    char *stack = spawn_stack_top(opts->argv);
    pid_t pid = clone(spawn_child, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &c,
                      &pidfd);
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        rc = hero_error_set(err, e, "cannot run '%s'", opts->argv[0]);
        goto out;
    }
    if (c.err) {
        waitpid(pid, NULL, 0);
        close(pidfd);
        rc = hero_error_set(err, 0, "cannot run '%s': %s", opts->argv[0],
                            c.err == ENOENT ? "no such file or directory" : strerror(c.err));
        if (err)
            err->code = c.err;
        goto out;
    }
    p->pid = pid;
    p->pidfd = pidfd;
    uv_poll_init(p->loop, &p->exit_poll, p->pidfd);
    p->exit_poll.data = p;
    uv_poll_start(&p->exit_poll, UV_READABLE, hero_proc_on_pidfd);
out:
    if (out_w >= 0)
        close(out_w);
    if (err_w >= 0)
        close(err_w);
    return rc;
}

static void hero_proc_start_timers(hero_proc_t *p, uint64_t timeout_ms)
{
    uv_timer_init(p->loop, &p->deadline);
    uv_timer_init(p->loop, &p->grace);
    uv_timer_init(p->loop, &p->eof);
    p->deadline.data = p;
    p->grace.data = p;
    p->eof.data = p;
    p->timers_used = true;
    if (timeout_ms)
        uv_timer_start(&p->deadline, hero_proc_on_deadline, timeout_ms, 0);
}

int hero_proc_spawn(uv_loop_t *loop, const hero_proc_opts_t *opts, hero_proc_cb cb, void *data,
                    hero_proc_t **out, hero_error_t *err)
{
    if (out)
        *out = NULL;
    if (!loop || !opts || !opts->argv || !opts->argv[0] || !cb)
        return hero_error_set(err, EINVAL, "cannot run a process");

    hero_proc_t *p = hero_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->cb = cb;
    p->data = data;
    p->cap = opts->capture_cap ? opts->capture_cap : HERO_PROC_DEFAULT_CAP;
    if (p->cap > SIZE_MAX / 2)
        p->cap = SIZE_MAX / 2; /* keeps cap + 1 and the doubling from overflowing */
    p->grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : HERO_PROC_DEFAULT_GRACE_MS;
    p->eof_wait_ms = opts->eof_wait_ms;
    p->process.data = p;
    p->pidfd = -1;

    if (pidfds_work()) {
        p->start_ns = uv_hrtime();
        if (hero_proc_spawn_fast(p, opts, err) < 0) {
            hero_proc_close_all(p);
            if (p->pending_closes == 0)
                hero_proc_free(p);
            return -1;
        }
        hero_proc_start_timers(p, opts->timeout_ms);
        hero_proc_start_reading(&p->out);
        hero_proc_start_reading(&p->err);
        if (out)
            *out = p;
        return 0;
    }

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE; /* libuv opens /dev/null for it */
    hero_proc_stdio(p, &p->out, opts->inherit_stdout, 1, opts->stdout_fd, &stdio[1]);
    hero_proc_stdio(p, &p->err, opts->inherit_stderr, 2, opts->stderr_fd, &stdio[2]);

    /* libuv's option struct is not const-qualified but does not modify the arrays. */
    uv_process_options_t o = {
        .exit_cb = hero_proc_on_exit,
        .file = opts->argv[0],
        .args = (char **)opts->argv,
        .env = (char **)opts->env,
        .cwd = opts->cwd,
        /* A session of its own makes the child the leader of a fresh process group,
         * so one kill(-pid) reaches everything it starts. */
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    p->start_ns = uv_hrtime();
    p->process_used = true;
    int r = uv_spawn(loop, &p->process, &o);
    if (r < 0) {
        hero_error_set(err, 0, "cannot run '%s': %s", opts->argv[0], uv_strerror(r));
        if (err)
            err->code = -r;
        hero_proc_close_all(p);
        return -1;
    }
    p->pid = p->process.pid;
    hero_proc_start_timers(p, opts->timeout_ms);
    hero_proc_start_reading(&p->out);
    hero_proc_start_reading(&p->err);
    if (out)
        *out = p;
    return 0;
}
