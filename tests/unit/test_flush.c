/* The background flusher (runtime/flush.h): syncs what it is given on its own thread,
 * never blocks the writer, and reports the first error at its end. */
#include "runtime/flush.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static char buf[1 << 20];

/* writes MB megabytes to fd */
static bool write_mb(int fd, int mb)
{
    for (int i = 0; i < mb; i++)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            return false;
    return true;
}

int main(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    memset(buf, 'x', sizeof buf);
    TAP_OK(hero_flush_end(NULL, &e) == 0 && !e.msg, "no flusher: nothing to report");

    /* a file written in pieces, each handed over; closed at once after */
    char path[] = "/tmp/hero-test-flush-XXXXXX";
    int fd = mkstemp(path);
    TAP_OK(fd >= 0, "a temp file");
    hero_flush_t *f = hero_flush_new();
    bool wrote = true;
    for (int i = 0; i < 8; i++) {
        wrote = wrote && write_mb(fd, 1);
        hero_flush_push(f, fd, "piece");
    }
    close(fd); /* the flusher has its own descriptor */
    TAP_OK(wrote && hero_flush_end(f, &e) == 0 && !e.msg,
           "syncs of a file being written end well");
    struct stat st;
    TAP_OK(stat(path, &st) == 0 && st.st_size == 8 << 20, "the file is whole");

    /* A sync with much to write (64 MB of dirty data) is under way on the flusher's
     * thread: pushing more returns at once, requests past the queue's room are
     * dropped, and the end waits for the sync. */
    fd = open(path, O_WRONLY | O_TRUNC);
    TAP_OK(write_mb(fd, 64), "64 MB written, not synced");
    f = hero_flush_new();
    double t0 = now_ms();
    for (int i = 0; i < 1000; i++)
        hero_flush_push(f, fd, "big");
    double pushed = now_ms() - t0;
    close(fd);
    t0 = now_ms();
    int rc = hero_flush_end(f, &e);
    double ended = now_ms() - t0;
    printf("# 1000 pushes took %.2f ms, the end (waiting for the sync) %.2f ms\n", pushed, ended);
    TAP_OK(rc == 0, "a full queue drops requests instead of failing");
    TAP_OK(pushed < 10 && ended > pushed, "pushing never waits for the disk; the end does");

    /* fdatasync of a pipe fails (EINVAL): the error comes back at the end, named */
    int p[2];
    TAP_OK(pipe(p) == 0, "a pipe");
    f = hero_flush_new();
    hero_flush_push(f, p[1], "the pipe");
    TAP_OK(hero_flush_end(f, &e) < 0 && e.code == EINVAL && e.msg &&
               strstr(e.msg, "cannot write 'the pipe' to disk"),
           "a failed sync is reported, with its errno and its name");
    hero_error_clear(&e);
    /* ... but not to a caller that throws the files away */
    f = hero_flush_new();
    hero_flush_push(f, p[1], "the pipe");
    TAP_OK(hero_flush_end(f, NULL) == 0, "without err, nothing is reported");
    close(p[0]);
    close(p[1]);
    unlink(path);
    return tap_done();
}
