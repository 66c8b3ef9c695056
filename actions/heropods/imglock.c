/* The store's image lock, <base>/images/.lock (an flock; see image.h). Shared for a
 * pull or an import, from its start until its image is recorded (until then the layer
 * dirs it found or made are named by no image record), and for container_new, from
 * the image's lookup until the container's record names it. Exclusive for
 * image_delete, which counts an image's containers and then removes what no record
 * names. Hero processes and actions within one process take it alike (each taker
 * opens the file: flocks on two open files conflict even in one process).
 *
 * Taking it never blocks the loop: a try without waiting, then another every
 * POLL_MS until it is free. The holders are short-lived (a pull, a sweep), and a hero
 * killed while holding it lets go with its last file descriptor. A wait ends early,
 * with ECANCELED, when hero is interrupted (hero_imglock_cancel_waits). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "image.h"
#include "runtime/fs.h"

#define POLL_MS 50

struct hero_imglock {
    int fd;
    bool exclusive;
    uv_timer_t *timer;          /* while it waits */
    hero_imglock_cb cb;
    void *data;
    struct hero_imglock *next;  /* in `waiting`, while it waits */
};

/* The locks of this process that wait, for hero_imglock_cancel_waits. */
static hero_imglock_t *waiting;

static void unlist(hero_imglock_t *l)
{
    for (hero_imglock_t **pp = &waiting; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    l->next = NULL;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

/* 1: taken; 0: busy; -1: an error */
static int try_take(hero_imglock_t *l, hero_error_t *err)
{
    if (flock(l->fd, (l->exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
        return 1;
    if (errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return hero_error_set(err, errno, "cannot lock the image store");
}

static void finish(hero_imglock_t *l, int rc, hero_error_t *err)
{
    if (l->timer) {
        uv_close((uv_handle_t *)l->timer, timer_closed);
        l->timer = NULL;
        unlist(l);
    }
    if (rc < 0) {
        hero_imglock_cb cb = l->cb;
        void *data = l->data;
        hero_imglock_release(l);
        cb(NULL, err, data);
        return;
    }
    l->cb(l, NULL, l->data);
}

static void on_poll(uv_timer_t *t)
{
    hero_imglock_t *l = t->data;
    hero_error_t e = HERO_ERROR_INIT;
    int rc = try_take(l, &e);
    if (rc != 0)
        finish(l, rc, &e);
    hero_error_clear(&e);
}

void hero_imglock_take(uv_loop_t *loop, hero_store_t *st, bool exclusive, hero_imglock_cb cb,
                       void *data)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *dir = hero_xasprintf("%s/images", hero_store_base_dir(st));
    char *path = hero_xasprintf("%s/.lock", dir);
    hero_imglock_t *l = hero_xcalloc(1, sizeof(*l));
    l->fd = -1;
    l->exclusive = exclusive;
    l->cb = cb;
    l->data = data;
    int rc = hero_mkdir_p(dir, 0755, &e); /* as image.c makes it: containers traverse it */
    if (rc == 0) {
        l->fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
        rc = l->fd < 0 ? hero_error_set(&e, errno, "cannot open %s", path) : try_take(l, &e);
    }
    free(path);
    free(dir);
    if (rc == 0) {
        l->timer = hero_xmalloc(sizeof(*l->timer));
        uv_timer_init(loop, l->timer);
        l->timer->data = l;
        uv_timer_start(l->timer, on_poll, POLL_MS, POLL_MS);
        l->next = waiting;
        waiting = l;
        return;
    }
    finish(l, rc, &e);
    hero_error_clear(&e);
}

void hero_imglock_cancel_waits(void)
{
    while (waiting) {
        hero_error_t e = HERO_ERROR_INIT;
        hero_error_set_plain(&e, ECANCELED, "interrupted while waiting for the image store, "
                                            "which another hero (or action) was using");
        finish(waiting, -1, &e); /* (takes it off the list) */
        hero_error_clear(&e);
    }
}

void hero_imglock_release(hero_imglock_t *l)
{
    if (!l)
        return;
    if (l->timer) {
        uv_close((uv_handle_t *)l->timer, timer_closed);
        unlist(l);
    }
    if (l->fd >= 0)
        close(l->fd); /* lets go of the lock */
    free(l);
}
