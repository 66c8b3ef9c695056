/*
 * hero-init: PID 1 of every heropods container.
 *
 *   hero-init [--keep-alive] [--status-dir DIR] -- PROGRAM [ARGS...]
 *
 * Runs PROGRAM, forwards termination-type signals to it, reaps every process that
 * ends up as its child, and records how PROGRAM ended in DIR/status so the host can
 * read the real exit status (crun only reports init's). With --keep-alive it stays up
 * after PROGRAM exits 0, so `crun exec` keeps working on the container.
 *
 * Exit codes: PROGRAM's own, 128+signo if a signal killed it, 127 (126 for
 * EACCES/ENOEXEC) if it could not be executed, 125 if hero-init itself failed.
 *
 * Static and libc-only so it runs in any image: no shell, no /proc needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_INIT_FAILED = 125, EXIT_NOT_EXECUTABLE = 126, EXIT_NOT_FOUND = 127 };

/* What the child sends back through the exec pipe: at which step it failed, and why. */
enum child_step { STEP_SIGMASK, STEP_EXEC };
struct child_report {
    int step;
    int err;
};

/* Not forwarded: what cannot be caught, and what the kernel raises for a fault of the
 * process itself (blocking those would hide hero-init's own faults). Every other
 * signal is, real-time ones too: an image's StopSignal may be any (systemd's is
 * SIGRTMIN+3), and a namespace's PID 1 would drop one it does not handle. */
static const int unforwarded_signals[] = {
    SIGKILL, SIGSTOP, SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS,
    SIGTTIN, SIGTTOU,
};

struct init {
    bool keep_alive;
    const char *status_dir;
    char **argv;         /* PROGRAM and its arguments */
    int dirfd;           /* status_dir, or -1 when no files are written */
    pid_t child;         /* the entrypoint; 0 once it has been reaped */
    sigset_t waited;     /* signals handled synchronously by the main loop */
};

/* Global only so that fail() can record the failure from anywhere. */
static struct init g = { .dirfd = -1 };

static int write_status_file(const char *name, const char *text);

static _Noreturn void fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hero-init: %s\n", msg);
    /* Without this the entrypoint would run on unsupervised if hero-init is not PID 1. */
    if (g.child > 0)
        kill(g.child, SIGKILL);
    char line[sizeof msg + 32];
    snprintf(line, sizeof line, "init-failed %s\n", msg);
    write_status_file("status", line); /* best effort: we are failing anyway */
    exit(EXIT_INIT_FAILED);
}

static _Noreturn void usage(const char *problem)
{
    fprintf(stderr, "hero-init: %s\n"
                    "usage: hero-init [--keep-alive] [--status-dir DIR] -- PROGRAM [ARGS...]\n",
            problem);
    exit(EXIT_INIT_FAILED);
}

static void parse_args(int argc, char **argv)
{
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--keep-alive") == 0) {
            g.keep_alive = true;
        } else if (strcmp(argv[i], "--status-dir") == 0) {
            if (++i == argc)
                usage("--status-dir needs a directory");
            g.status_dir = argv[i];
        } else if (argv[i][0] == '-') {
            usage("unknown option");
        } else {
            break; /* tolerate a missing "--" before PROGRAM */
        }
    }
    if (i == argc)
        usage("no PROGRAM given");
    g.argv = &argv[i];
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * The host polls these files while we run, so it must never see a half-written one:
 * write NAME.tmp, fsync, rename over NAME. Returns 0, or -1 with errno set.
 */
static int write_status_file(const char *name, const char *text)
{
    if (g.dirfd < 0)
        return 0;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = openat(g.dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (close(fd) < 0 || renameat(g.dirfd, tmp, g.dirfd, name) < 0)
        return -1;
    /* The rename itself must survive a host crash, or the host could read a stale file. */
    return fsync(g.dirfd);
}

static void record(const char *name, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (write_status_file(name, text) < 0) {
        int saved = errno;
        g.dirfd = -1; /* the directory is unusable: do not try again from fail() */
        fail("writing %s/%s: %s", g.status_dir, name, strerror(saved));
    }
}

static void open_status_dir(void)
{
    if (!g.status_dir)
        return;
    g.dirfd = open(g.status_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g.dirfd < 0)
        fail("opening status dir %s: %s", g.status_dir, strerror(errno));
}

/*
 * Our parent may have left signals ignored (a shell does so for SIGINT and SIGQUIT of
 * background jobs) and ignored dispositions survive exec. Reset them all, for us and
 * through fork for the entrypoint. SIGCHLD matters most: ignored, the kernel would
 * reap the entrypoint itself and its exit status would be lost.
 */
static void reset_signal_dispositions(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* EINVAL: a signal number libc reserves for itself; nothing to reset there. */
        if (sigaction(sig, &dfl, NULL) < 0 && errno != EINVAL)
            fail("sigaction(%d): %s", sig, strerror(errno));
    }
}

/*
 * Signals are taken with sigwaitinfo from a blocked set rather than by handlers, so
 * no code runs in signal context. Blocked signals are also queued for a namespace's
 * PID 1, which the kernel would otherwise drop while their disposition is SIG_DFL.
 */
static void block_signals(void)
{
    sigfillset(&g.waited); /* (SIGCHLD included: reaping is done here too) */
    for (size_t i = 0; i < sizeof unforwarded_signals / sizeof unforwarded_signals[0]; i++)
        sigdelset(&g.waited, unforwarded_signals[i]);
    if (sigprocmask(SIG_BLOCK, &g.waited, NULL) < 0)
        fail("sigprocmask: %s", strerror(errno));
}

/* When hero-init is not PID 1 (tests, debugging), still become the parent of orphans. */
static void become_subreaper(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
}

/* Runs in the child: only async-signal-safe calls until exec. Never returns. */
static _Noreturn void exec_child(int report_fd)
{
    struct child_report r = { STEP_SIGMASK, 0 };
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) == 0) {
        r.step = STEP_EXEC;
        execvp(g.argv[0], g.argv);
    }
    r.err = errno;
    /* If even this write fails the parent sees EOF and takes exec as done: the
       exit code 127 below then still tells the host something went wrong. */
    (void)!write(report_fd, &r, sizeof r);
    _exit(EXIT_NOT_FOUND);
}

static void reap_failed_child(void)
{
    while (waitpid(g.child, NULL, 0) < 0) {
        if (errno != EINTR)
            fail("waitpid: %s", strerror(errno));
    }
    g.child = 0;
}

static _Noreturn void exec_failed(int err)
{
    reap_failed_child();
    record("status", "exec-failed %d %s %s\n", err, strerror(err), g.argv[0]);
    exit(err == EACCES || err == ENOEXEC ? EXIT_NOT_EXECUTABLE : EXIT_NOT_FOUND);
}

/*
 * Reads the child's report. The pipe is close-on-exec, so EOF without a report is
 * the proof that exec succeeded, which is what `started` is meant to tell the host.
 */
static void await_exec(int report_fd)
{
    struct child_report r;
    ssize_t n;
    do
        n = read(report_fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        fail("reading the exec pipe: %s", strerror(errno));
    if (close(report_fd) < 0)
        fail("closing the exec pipe: %s", strerror(errno));
    if (n == 0)
        return;
    if (n != (ssize_t)sizeof r)
        fail("short report from the child (%zd bytes)", n);
    if (r.step == STEP_EXEC)
        exec_failed(r.err);
    reap_failed_child();
    fail("child sigprocmask: %s", strerror(r.err));
}

static void start_child(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        fail("pipe2: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        exec_child(fds[1]);
    }
    g.child = pid;
    if (close(fds[1]) < 0)
        fail("closing the exec pipe: %s", strerror(errno));
    await_exec(fds[0]);
    record("started", "pid %ld\n", (long)pid);
}

static int exit_code_of(int wstatus)
{
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return WEXITSTATUS(wstatus);
}

static void record_child_end(int wstatus)
{
    if (WIFSIGNALED(wstatus))
        record("status", "signaled %d\n", WTERMSIG(wstatus));
    else
        record("status", "exited %d\n", WEXITSTATUS(wstatus));
}

/*
 * One SIGCHLD may stand for many exits (standard signals do not queue), and as PID 1
 * we inherit every orphan of the container: reap until nothing is left to reap.
 * Returns true when the entrypoint was among them, with its wait status in *wstatus.
 */
static bool reap_all(int *wstatus)
{
    bool entrypoint_done = false;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == ECHILD))
            return entrypoint_done;
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            fail("waitpid: %s", strerror(errno));
        if (pid == g.child) {
            g.child = 0;
            *wstatus = st;
            entrypoint_done = true;
        }
    }
}

/* With no entrypoint left (--keep-alive), a signal whose default action would end a
 * process ends hero-init: any stop signal an image names does. The ones a process
 * ignores by default are ignored, and so is SIGTSTP (its default pauses). */
static bool is_stop_signal(int sig)
{
    return sig != SIGCHLD && sig != SIGCONT && sig != SIGURG && sig != SIGWINCH &&
           sig != SIGTSTP;
}

static int wait_signal(void)
{
    siginfo_t info;
    for (;;) {
        int sig = sigwaitinfo(&g.waited, &info);
        if (sig > 0)
            return sig;
        if (errno != EINTR) /* EINTR: woken by SIGSTOP/SIGCONT */
            fail("sigwaitinfo: %s", strerror(errno));
    }
}

static void on_entrypoint_end(int wstatus)
{
    record_child_end(wstatus);
    bool success = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    if (!g.keep_alive || !success)
        exit(exit_code_of(wstatus));
    /* keep-alive: from now on we only reap, and a stop signal ends us. */
}

static _Noreturn void supervise(void)
{
    for (;;) {
        int sig = wait_signal();
        int wstatus;
        if (sig == SIGCHLD) {
            if (reap_all(&wstatus))
                on_entrypoint_end(wstatus);
        } else if (g.child > 0) {
            /* ESRCH: it exited and awaits reaping; the pending SIGCHLD handles that. */
            if (kill(g.child, sig) < 0 && errno != ESRCH)
                fail("forwarding signal %d: %s", sig, strerror(errno));
        } else if (is_stop_signal(sig)) {
            exit(0);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    open_status_dir(); /* first, so that any later failure can be recorded */
    reset_signal_dispositions();
    block_signals();
    become_subreaper();
    start_child();
    supervise();
}
