/* Undoing a container on the host, from the store's record of what was made:
 * newest first, each object forgotten once it is gone. A hero killed half way
 * leaves the rest recorded, so running this again finishes the job. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "pods.h"
#include "runtime/fs.h"

typedef struct teardown {
    uv_loop_t *loop;
    hero_pods_instance_t *in;
    int64_t id;
    bool forget;
    hero_pods_done_cb cb;
    void *data;
    hero_hostobj_t *objs;
    size_t n, next;
} teardown_t;

static void teardown_step(teardown_t *td);

static void teardown_end(teardown_t *td, int rc, hero_error_t *err)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (rc == 0 && td->forget && hero_store_container_forget(td->in->store, td->id, &e) < 0) {
        rc = -1;
        err = &e;
    }
    td->cb(rc, err, td->data);
    hero_error_clear(&e);
    hero_hostobjs_free(td->objs, td->n);
    free(td);
}

static void forget_and_go_on(teardown_t *td, const hero_hostobj_t *o)
{
    hero_error_t e = HERO_ERROR_INIT;
    /* when the container goes too, its records all go in one commit at the end (a
     * teardown cut short finds the undone objects again, and they are gone already) */
    if (!td->forget && hero_store_hostobj_del(td->in->store, td->id, o->kind, o->ref, &e) < 0) {
        teardown_end(td, -1, &e);
        return;
    }
    teardown_step(td);
}

static void crun_deleted(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    teardown_t *td = data;
    const hero_hostobj_t *o = &td->objs[td->next - 1];
    if (err && !(err->msg && strstr(err->msg, "does not exist"))) {
        hero_error_wrap(err, "crun delete %s", o->ref);
        teardown_end(td, -1, err);
        return;
    }
    forget_and_go_on(td, o);
}

static void teardown_step(teardown_t *td)
{
    if (td->next == td->n) {
        teardown_end(td, 0, NULL);
        return;
    }
    const hero_hostobj_t *o = &td->objs[td->next++];
    hero_error_t e = HERO_ERROR_INIT;
    switch (o->kind) {
    case HERO_OBJ_CRUN: {
        const char *args[] = {"delete", "-f", o->ref, NULL};
        hero_crun_opts_t co = {.timeout_ms = 30000};
        if (hero_crun(td->loop, td->in, args, &co, crun_deleted, td, NULL, &e) < 0) {
            teardown_end(td, -1, &e);
            return;
        }
        return;
    }
    case HERO_OBJ_MOUNT:
        if (umount2(o->ref, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
            hero_error_set(&e, errno, "cannot unmount '%s'", o->ref);
            teardown_end(td, -1, &e);
            return;
        }
        break;
    case HERO_OBJ_DIR:
        if (hero_fs_rmtree(o->ref, &e) < 0) {
            teardown_end(td, -1, &e);
            return;
        }
        break;
    case HERO_OBJ_LINK:
    case HERO_OBJ_RULE:
        if (hero_pods_net_undo(o, &e) < 0) {
            teardown_end(td, -1, &e);
            return;
        }
        break;
    default:
        break; /* a kind a newer hero made: forget it */
    }
    forget_and_go_on(td, o);
}

void hero_pods_teardown(uv_loop_t *loop, hero_pods_instance_t *in, int64_t id, bool forget,
                        hero_pods_done_cb cb, void *data)
{
    teardown_t *td = hero_xcalloc(1, sizeof(*td));
    td->loop = loop;
    td->in = in;
    td->id = id;
    td->forget = forget;
    td->cb = cb;
    td->data = data;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_store_hostobj_list(in->store, id, &td->objs, &td->n, &e) < 0) {
        teardown_end(td, -1, &e);
        return;
    }
    teardown_step(td);
}
