/* Background fdatasync of files being written (see flush.h for why). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/flush.h"

/* Requests waiting: a file is pushed every few MB, and a flush of one takes about as
 * long as writing the next few, so a handful is plenty. */
#define FLUSH_QUEUE 8

struct hero_flush {
    pthread_t thread;
    bool started;
    bool stopping;
    bool discard;                 /* stopping, and what is queued is not wanted */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fds[FLUSH_QUEUE];         /* duplicates, owned here until synced */
    char *what[FLUSH_QUEUE];      /* their names, for an error */
    unsigned head, n;
    int first_errno;              /* of the first failed fdatasync, 0: none */
    char *first_what;             /* ... and what it was */
};

hero_flush_t *hero_flush_new(void)
{
    hero_flush_t *f = hero_xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    return f;
}

static void *flush_main(void *arg)
{
    hero_flush_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->n == 0 && !f->stopping)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->n == 0)
            break; /* stopping, and nothing left */
        int fd = f->fds[f->head];
        char *what = f->what[f->head];
        f->head = (f->head + 1) % FLUSH_QUEUE;
        f->n--;
        bool skip = f->discard;
        pthread_mutex_unlock(&f->mu);
        int e = !skip && fdatasync(fd) < 0 ? errno : 0;
        close(fd);
        pthread_mutex_lock(&f->mu);
        if (e && !f->first_errno) {
            f->first_errno = e;
            f->first_what = what;
            what = NULL;
        }
        free(what);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

void hero_flush_push(hero_flush_t *f, int fd, const char *what)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    bool full = f->n == FLUSH_QUEUE;
    if (!full && !f->started) {
        /* the thread takes no signal: they are the caller's business */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        f->started = pthread_create(&f->thread, NULL, flush_main, f) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    int d = !full && f->started ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    if (d >= 0) {
        unsigned slot = (f->head + f->n) % FLUSH_QUEUE;
        f->fds[slot] = d;
        f->what[slot] = hero_xstrdup(what ? what : "?");
        f->n++;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
}

int hero_flush_end(hero_flush_t *f, hero_error_t *err)
{
    if (!f)
        return 0;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stopping = true;
        f->discard = err == NULL;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    int e = f->first_errno;
    int rc = 0;
    if (e && err)
        rc = hero_error_set(err, e, "cannot write '%s' to disk", f->first_what);
    free(f->first_what);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return rc;
}
