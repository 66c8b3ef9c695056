/* cputime: runs a command and reports its wall time and the CPU time of that process
 * alone (all its threads), without the CPU time of the processes it started.
 *
 * wait4()'s rusage and RUSAGE_CHILDREN both add in every descendant the command
 * waited for (for hero: every crun it ran), so they cannot say what hero itself
 * costs. Instead, once the command has exited, cputime waits for it with
 * waitid(WEXITED | WNOWAIT), which leaves it a zombie whose /proc/PID/stat still
 * holds its final counters, reads utime and stime (fields 14 and 15: this process
 * and its threads only; cutime and cstime, fields 16 and 17, are its reaped
 * children), and only then reaps it.
 *
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -o cputime cputime.c
 *   cputime -o OUT -- COMMAND [ARGS...]
 *
 * OUT gets one line: `wall_s=S self_user_ms=U self_sys_ms=S child_user_ms=U
 * child_sys_ms=S status=N` (the ms figures have the kernel's clock-tick resolution,
 * 10 ms at USER_HZ 100). cputime exits with the command's exit code (128+signal if
 * it was killed), 125 if it cannot run it at all.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime, stime, cutime, cstime of pid, in clock ticks; -1 when unreadable. */
static int read_times(pid_t pid, unsigned long long t[4])
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name (field 2) is in parentheses and may hold spaces or ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    /* after ')': field 3 (state) is token 1, so field k is token k-2 */
    char *save = NULL;
    int field = 2;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field >= 14 && field <= 17)
            t[field - 14] = strtoull(tok, NULL, 10);
        if (field == 17)
            return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[i + 1];
            i += 2;
            continue;
        }
        fprintf(stderr, "usage: cputime -o OUT -- COMMAND [ARGS...]\n");
        return 125;
    }
    if (!out || i >= argc) {
        fprintf(stderr, "usage: cputime -o OUT -- COMMAND [ARGS...]\n");
        return 125;
    }
    /* Ctrl-C goes to the whole foreground group: let the command handle it, and
     * report what happened */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("cputime: fork");
        return 125;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execvp(argv[i], argv + i);
        fprintf(stderr, "cputime: %s: %s\n", argv[i], strerror(errno));
        _exit(125);
    }
    siginfo_t si;
    int r;
    do
        r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
    while (r < 0 && errno == EINTR);
    double wall = now() - t0;
    if (r < 0) {
        perror("cputime: waitid");
        return 125;
    }
    unsigned long long t[4] = {0, 0, 0, 0};
    int have = read_times(pid, t);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    double ms = 1000.0 / (double)sysconf(_SC_CLK_TCK);
    FILE *f = fopen(out, "we");
    if (!f) {
        fprintf(stderr, "cputime: %s: %s\n", out, strerror(errno));
        return 125;
    }
    if (have == 0)
        fprintf(f, "wall_s=%.6f self_user_ms=%.0f self_sys_ms=%.0f child_user_ms=%.0f "
                   "child_sys_ms=%.0f status=%d\n",
                wall, (double)t[0] * ms, (double)t[1] * ms, (double)t[2] * ms, (double)t[3] * ms,
                code);
    else
        fprintf(f, "wall_s=%.6f self_user_ms=NA self_sys_ms=NA child_user_ms=NA child_sys_ms=NA "
                   "status=%d\n",
                wall, code);
    fclose(f);
    return code;
}
