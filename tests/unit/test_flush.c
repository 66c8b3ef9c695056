/* The background flusher (runtime/flush.h): syncs what it is given, never blocks
 * the writer, and reports the first error at its end. */
#include "runtime/flush.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
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

int main(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_flush_end(NULL, &e) == 0 && !e.msg, "no flusher: nothing to report");

    /* a file written in pieces, each handed over; closed at once after */
    char path[] = "/tmp/hero-test-flush-XXXXXX";
    int fd = mkstemp(path);
    TAP_OK(fd >= 0, "a temp file");
    hero_flush_t *f = hero_flush_new();
    static char buf[1 << 20];
    memset(buf, 'x', sizeof buf);
    bool wrote = true;
    for (int i = 0; i < 8; i++) {
        wrote = wrote && write(fd, buf, sizeof buf) == (ssize_t)sizeof buf;
        hero_flush_push(f, fd);
    }
    close(fd); /* the flusher has its own descriptor */
    TAP_OK(wrote && hero_flush_end(f, &e) == 0 && !e.msg,
           "syncs of a file being written end well");
    struct stat st;
    TAP_OK(stat(path, &st) == 0 && st.st_size == 8 << 20, "the file is whole");

    /* far more pushes than the queue holds: none waits for a sync */
    fd = open(path, O_WRONLY);
    f = hero_flush_new();
    double t0 = now_ms();
    for (int i = 0; i < 1000; i++)
        hero_flush_push(f, fd);
    double took = now_ms() - t0;
    close(fd);
    TAP_OK(hero_flush_end(f, &e) == 0, "a full queue drops requests instead of failing");
    printf("# 1000 pushes took %.2f ms\n", took);
    TAP_OK(took < 200, "pushing never waits for the disk");

    /* fdatasync of a pipe fails (EINVAL): the error comes back at the end */
    int p[2];
    TAP_OK(pipe(p) == 0, "a pipe");
    f = hero_flush_new();
    hero_flush_push(f, p[1]);
    TAP_OK(hero_flush_end(f, &e) < 0 && e.code == EINVAL && e.msg &&
               strstr(e.msg, "cannot write file data to disk"),
           "a failed sync is reported, with its errno");
    hero_error_clear(&e);
    close(p[0]);
    close(p[1]);
    unlink(path);
    return tap_done();
}
