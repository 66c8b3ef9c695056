/* The container actions: new, start, exec, stop, delete. Each is a small state
 * machine on the loop whose steps are crun commands (processes), file events from
 * hero-init's status dir, and a pidfd on the container's init. Every step that
 * makes something on the host records it first, so a failure (or a killed hero)
 * can always be undone by hero_pods_teardown or the next start. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "actions/actions.h"
#include "heropods.h"
#include "image.h"
#include "oci.h"
#include "pods.h"
#include "runtime/fs.h"
#include "runtime/sched.h"
#include "spec.h"

/* How long a start without keep_alive watches for an entrypoint that dies at once. */
enum { QUICK_DEATH_MS = 50 };

/* container_exec: how long its output is read on after the command exited, while
 * something it left running in the background holds the pipes */
enum { EXEC_EOF_WAIT_MS = 200 };

typedef struct op op_t;
typedef void (*op_step)(op_t *op);
typedef void (*op_exit_cb)(op_t *op);

/* One running container action. Owned by itself: freed in op_end once every handle
 * it opened is closed. */
struct op {
    hero_task_t *t;
    hero_pods_instance_t *in;
    hero_container_rec_t rec;
    bool have_rec;
    hero_ctr_spec_t spec;
    bool have_spec;
    hero_image_t *img;
    hero_imglock_t *imglock;    /* new: shared, from the image's lookup to the record */
    char *dir, *run_dir, *cid;
    /* waiting on the container's init */
    int pidfd;
    uv_poll_t *pidpoll;
    uv_timer_t *pidtimer;   /* instead of pidpoll where pidfd_open is missing */
    op_exit_cb exit_cb;
    uv_fs_event_t *fsev;
    uv_timer_t *timer;
    int open_handles;
    bool finished;          /* the task got its result */
    bool settled;           /* the outcome is decided (a failure may still be cleaning up):
                               late events are ignored */
    int rc;
    hero_error_t err;
    /* start */
    bool keep_alive;
    bool created;           /* crun create succeeded in this action */
    int64_t pid;
    uint64_t timeout_ms;
    int retries;
    int crun_inflight;      /* crun commands running for this op */
    bool cancel_requested;  /* SIGINT during a start: undo once crun's step is done */
    int64_t log_mark;       /* the log's size before crun create: what crun adds after is its */
    uint32_t addr;          /* the container's IPv4 address (its lease) */
    /* stop */
    bool killed;
    op_step after_stop;     /* delete runs a stop first */
    hero_proc_t *proc;
};

static void op_free(op_t *op)
{
    hero_imglock_release(op->imglock);
    if (op->have_rec)
        hero_container_rec_free(&op->rec);
    if (op->have_spec)
        hero_ctr_spec_free(&op->spec);
    hero_image_free(op->img);
    free(op->dir);
    free(op->run_dir);
    free(op->cid);
    hero_error_clear(&op->err);
    free(op);
}

static void handle_closed(uv_handle_t *h)
{
    op_t *op = h->data;
    if (h->type == UV_POLL && op->pidfd >= 0) {
        close(op->pidfd);
        op->pidfd = -1;
    }
    free(h);
    if (--op->open_handles == 0 && op->finished)
        op_free(op);
}

static void close_watchers(op_t *op)
{
    if (op->pidpoll) {
        uv_close((uv_handle_t *)op->pidpoll, handle_closed);
        op->pidpoll = NULL;
    }
    if (op->pidtimer) {
        uv_close((uv_handle_t *)op->pidtimer, handle_closed);
        op->pidtimer = NULL;
    }
    if (op->fsev) {
        uv_close((uv_handle_t *)op->fsev, handle_closed);
        op->fsev = NULL;
    }
    if (op->timer) {
        uv_close((uv_handle_t *)op->timer, handle_closed);
        op->timer = NULL;
    }
}

/* Ends the action with rc (and err, taken over). */
static void op_end(op_t *op, int rc, hero_error_t *err)
{
    op->settled = true;
    close_watchers(op);
    op->finished = true;
    hero_imglock_release(op->imglock);
    op->imglock = NULL;
    hero_task_t *t = op->t;
    t->cancel = NULL;
    if (rc < 0 && err && err->msg) {
        op->err = *err;
        *err = (hero_error_t)HERO_ERROR_INIT;
    } else if (rc < 0 && !op->err.msg) {
        hero_error_set(&op->err, 0, "failed");
    }
    hero_error_t e = op->err;
    op->err = (hero_error_t)HERO_ERROR_INIT;
    if (op->open_handles == 0)
        op_free(op);
    hero_task_done(t, rc, rc < 0 ? &e : NULL);
    hero_error_clear(&e);
}

/* A crun command in flight holds the op like a handle does: its callback may come
 * after the action ended on another event (init's exit before crun kill answers). */
static void start_fail(op_t *op, hero_error_t *err);

typedef struct crun_ref {
    op_t *op;
    hero_crun_cb cb;
} crun_ref_t;

static void op_crun_done(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    crun_ref_t *ref = data;
    op_t *op = ref->op;
    hero_crun_cb cb = ref->cb;
    free(ref);
    op->open_handles--;
    op->crun_inflight--;
    if (op->finished) {
        if (op->open_handles == 0)
            op_free(op);
        return;
    }
    if (op->cancel_requested && !op->settled) {
        /* a start was interrupted while crun worked: undo now that it is done,
         * so nothing crun makes after the undo is left behind */
        hero_error_t e = HERO_ERROR_INIT;
        hero_error_set(&e, 0, "interrupted");
        start_fail(op, &e);
        return;
    }
    cb(r, err, op);
}

static int op_crun(op_t *op, const char *const *args, const hero_crun_opts_t *o, hero_crun_cb cb,
                   hero_error_t *err)
{
    crun_ref_t *ref = hero_xmalloc(sizeof(*ref));
    ref->op = op;
    ref->cb = cb;
    op->open_handles++;
    op->crun_inflight++;
    if (hero_crun(op->t->loop, op->in, args, o, op_crun_done, ref, NULL, err) < 0) {
        op->open_handles--;
        op->crun_inflight--;
        free(ref);
        return -1;
    }
    return 0;
}

/* The instance, the container's record (rc 1 when there is none) and its paths. */
static int op_load(op_t *op, hero_error_t *err)
{
    if (hero_pods_instance_get(op->t->instance ? op->t->instance : "default", &op->in, err) < 0)
        return -1;
    char *name = hero_arg_str(op->t->action, "name");
    int rc = hero_store_container_get(op->in->store, op->in->name, name, &op->rec, err);
    free(name);
    if (rc != 0)
        return rc;
    op->have_rec = true;
    op->dir = hero_pods_ctr_dir(op->in, op->rec.id);
    op->run_dir = hero_xasprintf("%s/run", op->dir);
    op->cid = hero_pods_crun_id(op->rec.id);
    return 0;
}

/* op_load for actions that need the container: frees op and fails when it is not
 * there. */
static int op_load_existing(op_t *op, hero_error_t *err)
{
    int rc = op_load(op, err);
    if (rc == 1) {
        char *name = hero_arg_str(op->t->action, "name");
        hero_error_set(err, 0, "container '%s' does not exist: container_new defines it", name);
        free(name);
    }
    if (rc != 0)
        op_free(op);
    return rc == 0 ? 0 : -1;
}

static op_t *op_new(hero_task_t *t)
{
    op_t *op = hero_xcalloc(1, sizeof(*op));
    op->t = t;
    op->pidfd = -1;
    return op;
}

static int set_state(op_t *op, const char *state, int64_t pid, int64_t code, int64_t sig,
                     hero_error_t *err)
{
    /* the record says so already (a delete stops a stopped container again): no
     * write. Not for "exited", whose times move with every run. */
    hero_container_rec_t *r = &op->rec;
    if (r->state && !strcmp(r->state, state) && strcmp(state, "exited") != 0 && r->pid == pid &&
        r->exit_code == code && r->exit_signal == sig)
        return 0;
    if (hero_store_container_set_state(op->in->store, r->id, state, pid, code, sig, err) < 0)
        return -1;
    if (!r->state || strcmp(r->state, state) != 0) {
        free(r->state);
        r->state = hero_xstrdup(state);
    }
    r->pid = pid;
    r->exit_code = code;
    r->exit_signal = sig;
    return 0;
}

/* ======================= container_new ======================= */

static void new_have_image(hero_image_t *img, hero_error_t *err, void *data);
static void new_locked(hero_imglock_t *lock, hero_error_t *err, void *data);

int hero_heropods_new_start(hero_task_t *t, hero_error_t *err)
{
    op_t *op = op_new(t);
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &op->in, err) < 0 ||
        hero_pods_spec_from_action(t->action, &op->spec, err) < 0) {
        op_free(op);
        return -1;
    }
    op->have_spec = true;
    /* (SIGINT while its image is waited for: that stops, "interrupted") */
    t->cancel = hero_image_task_cancel;
    /* an image_delete (of this process or another) waits until the container's record
     * names the image, and then refuses */
    hero_imglock_take(t->loop, op->in->store, false, new_locked, op);
    return 0;
}

static void new_locked(hero_imglock_t *lock, hero_error_t *err, void *data)
{
    op_t *op = data;
    if (!lock) {
        op_end(op, -1, err);
        return;
    }
    op->imglock = lock;
    hero_task_t *t = op->t;
    char *image = hero_arg_str(t->action, "image");
    char *cname = hero_arg_str(t->action, "custom_image_name");
    char *url = hero_arg_str(t->action, "docker_url");
    hero_image_source_t src;
    hero_image_source_of(image, cname, url, &src);
    src.podman = op->in->use_podman;
    src.quiet = hero_run_verbosity() < 0;
    hero_image_get(t->loop, op->in->store, &src, new_have_image, op);
    free(image);
    free(cname);
    free(url);
}

static void new_torn_down(int rc, hero_error_t *err, void *data);
static void new_create(op_t *op);

/* Records img as the image of a container made before the store kept it, as
 * new_create does (best effort: it is tried again at the next start). */
static void pin_now(op_t *op, const hero_image_t *img)
{
    char *cfg = json_dumps(img->config, JSON_COMPACT | JSON_SORT_KEYS);
    if (cfg)
        hero_store_container_pin(op->in->store, op->rec.id, img->rootfs, cfg, NULL);
    free(cfg);
}

/* Whether a container's pinned image (rootfs, config JSON) is img; a container made
 * before images were pinned (NULL) is taken to be on it. */
static bool pinned_is(const char *rootfs, const char *config, const hero_image_t *img)
{
    if (!rootfs || !config)
        return true;
    char *now = json_dumps(img->config, JSON_COMPACT | JSON_SORT_KEYS);
    bool same = !strcmp(rootfs, img->rootfs) && now && !strcmp(config, now);
    free(now);
    return same;
}

static void new_have_image(hero_image_t *img, hero_error_t *err, void *data)
{
    op_t *op = data;
    op->t->cancel = NULL; /* (what follows is quick, or sets its own) */
    if (!img) {
        op_end(op, -1, err);
        return;
    }
    op->img = img;
    hero_error_t e = HERO_ERROR_INIT;
    /* the entrypoint must exist in the image: found now, not at the first start */
    char **args = hero_oci_args(&op->spec, img->config, &e);
    if (!args) {
        op_end(op, -1, &e);
        return;
    }
    json_t *ienv = json_object_get(img->config, "Env");
    size_t ni = json_is_array(ienv) ? json_array_size(ienv) : 0, ns = 0;
    while (op->spec.env && op->spec.env[ns])
        ns++;
    char **env = hero_xcalloc(ni + ns + 1, sizeof(char *));
    for (size_t i = 0; i < ni; i++)
        env[i] = (char *)json_string_value(json_array_get(ienv, i));
    for (size_t i = 0; i < ns; i++)
        env[ni + i] = op->spec.env[i];
    /* a stack of layers has no one directory to look in: its entrypoint is checked
     * when it starts, on the container's mounted root */
    int rc = strchr(img->rootfs, ':') ? 0 : hero_oci_check_exec(img->rootfs, env, args[0], &e);
    free(env);
    hero_strv_free(args);
    if (rc < 0) {
        hero_error_wrap(&e, "image '%s'", op->spec.image);
        op_end(op, -1, &e);
        return;
    }
    char *name = op->spec.name;
    rc = hero_store_container_get(op->in->store, op->in->name, name, &op->rec, &e);
    if (rc < 0) {
        op_end(op, -1, &e);
        return;
    }
    if (rc == 1) {
        new_create(op);
        return;
    }
    op->have_rec = true;
    char *hash = hero_ctr_spec_hash(&op->spec);
    bool same = strcmp(hash, op->rec.spec_hash) == 0;
    free(hash);
    bool reset = hero_arg_bool(op->t->action, "reset");
    /* the image's name may stand for another image now (pulled or imported again; not
     * the embedded one, which is made again in place and used as it is) */
    bool moved = op->rec.image_rootfs && op->spec.image &&
                 strcmp(op->spec.image, "embedded") != 0 &&
                 !pinned_is(op->rec.image_rootfs, op->rec.image_config, img);
    if (same && !(moved && reset)) {
        /* the same definition again: nothing to do. Its image stays the one it was made
         * from, which is said when the name moved on (reset:true moves it along); a
         * container made before the store kept its image gets the one it runs on
         * recorded now */
        if (!op->rec.image_rootfs)
            pin_now(op, img);
        else if (moved && hero_run_verbosity() >= 0)
            fprintf(stderr,
                    "hero: container '%s' stays on the image it was made from; image '%s' "
                    "stands for another one now (container_new reset:true makes it again "
                    "on that)\n",
                    name, op->spec.image);
        op_end(op, 0, NULL);
        return;
    }
    if (!reset) {
        hero_ctr_spec_t old;
        json_t *j = json_loads(op->rec.spec, 0, NULL);
        char *diff = NULL;
        if (j && hero_ctr_spec_from_json(j, &old, NULL) == 0) {
            diff = hero_ctr_spec_diff(&old, &op->spec);
            hero_ctr_spec_free(&old);
        }
        json_decref(j);
        hero_error_set(&e, 0,
                       "container '%s' exists with another definition (%s): use reset:true to "
                       "replace it, or delete it first",
                       name, diff ? diff : "changed");
        free(diff);
        op_end(op, -1, &e);
        return;
    }
    /* reset: the old container goes entirely, then the new one is made */
    hero_pods_teardown(op->t->loop, op->in, op->rec.id, true, new_torn_down, op);
}

static void new_torn_down(int rc, hero_error_t *err, void *data)
{
    op_t *op = data;
    if (rc < 0) {
        hero_error_wrap(err, "removing the old container for reset");
        op_end(op, -1, err);
        return;
    }
    hero_container_rec_free(&op->rec);
    op->have_rec = false;
    new_create(op);
}

static void new_create(op_t *op)
{
    hero_error_t e = HERO_ERROR_INIT;
    json_t *j = hero_ctr_spec_to_json(&op->spec);
    char *spec = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    hero_container_rec_t r = {0};
    r.instance = op->in->name;
    r.name = op->spec.name;
    r.image = op->spec.image;
    r.spec = spec;
    r.spec_hash = hero_ctr_spec_hash(&op->spec);
    r.state = "created";
    /* pinned: a later pull or import of the name moves neither this container's root
     * nor its entrypoint, and garbage collection keeps its layers */
    r.image_rootfs = op->img->rootfs;
    r.image_config = json_dumps(op->img->config, JSON_COMPACT | JSON_SORT_KEYS);
    /* the row and its directories commit together: a crash leaves neither or both
     * (and the directories are recorded, so teardown finds them) */
    int rc = hero_store_begin(op->in->store, &e);
    if (rc == 0)
        rc = hero_store_container_insert(op->in->store, &r, &e);
    if (rc == 0)
        rc = hero_pods_ctr_dirs(op->in, r.id, &e);
    if (rc == 0)
        rc = hero_store_commit(op->in->store, &e);
    else
        hero_store_rollback(op->in->store);
    if (rc < 0 && r.id) {
        /* the directories may exist although their record was rolled back */
        char *dir = hero_pods_ctr_dir(op->in, r.id);
        hero_fs_rmtree(dir, NULL);
        free(dir);
    }
    free(spec);
    free(r.spec_hash);
    free(r.image_config);
    op_end(op, rc, &e);
}

/* ======================= waiting on init ======================= */

static int pidfd_open_(int pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void start_timer(op_t *op, uint64_t ms, uv_timer_cb cb)
{
    if (!op->timer) {
        op->timer = hero_xmalloc(sizeof(*op->timer));
        uv_timer_init(op->t->loop, op->timer);
        op->timer->data = op;
        op->open_handles++;
    }
    uv_timer_start(op->timer, cb, ms, 0);
}

static void pid_readable(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    op_t *op = h->data;
    uv_poll_stop(h);
    op->exit_cb(op);
}

static void pid_tick(uv_timer_t *h)
{
    op_t *op = h->data;
    if (hero_pods_pid_gone(op->pid)) {
        uv_timer_stop(h);
        op->exit_cb(op);
    }
}

static bool watching_exit(const op_t *op)
{
    return op->pidpoll || op->pidtimer;
}

/* Watches init's exit (a pidfd on the loop; where the kernel or a tool such as
 * valgrind lacks pidfd_open, a 20 ms check of /proc) and hero-init's status dir.
 * Returns 1 when init is already gone. */
static int watch_init(op_t *op, op_exit_cb on_exit, uv_fs_event_cb on_file, hero_error_t *err)
{
    if (on_file && !op->fsev) {
        op->fsev = hero_xmalloc(sizeof(*op->fsev));
        uv_fs_event_init(op->t->loop, op->fsev);
        op->fsev->data = op;
        op->open_handles++;
        int r = uv_fs_event_start(op->fsev, on_file, op->run_dir, 0);
        if (r < 0)
            return hero_error_set(err, 0, "cannot watch %s: %s", op->run_dir, uv_strerror(r));
    }
    if (on_exit && !watching_exit(op) && op->pid > 0) {
        op->exit_cb = on_exit;
        op->pidfd = pidfd_open_((int)op->pid);
        if (op->pidfd < 0 && errno == ESRCH)
            return 1;
        if (op->pidfd < 0 && errno != ENOSYS)
            return hero_error_set(err, errno, "pidfd_open(%lld)", (long long)op->pid);
        if (op->pidfd < 0) {
            op->pidtimer = hero_xmalloc(sizeof(*op->pidtimer));
            uv_timer_init(op->t->loop, op->pidtimer);
            op->pidtimer->data = op;
            op->open_handles++;
            uv_timer_start(op->pidtimer, pid_tick, 20, 20);
            return hero_pods_pid_gone(op->pid) ? 1 : 0;
        }
        op->pidpoll = hero_xmalloc(sizeof(*op->pidpoll));
        uv_poll_init(op->t->loop, op->pidpoll, op->pidfd);
        op->pidpoll->data = op;
        op->open_handles++;
        uv_poll_start(op->pidpoll, UV_READABLE, pid_readable);
    }
    return 0;
}

static char *describe_status(const hero_init_status_t *st)
{
    switch (st->state) {
    case HERO_INIT_EXITED:
        return hero_xasprintf("the entrypoint exited with code %d", st->code);
    case HERO_INIT_SIGNALED:
        return hero_xasprintf("the entrypoint was killed by signal %d (%s)", st->code,
                              strsignal(st->code));
    case HERO_INIT_EXEC_FAILED:
        return hero_xasprintf("the entrypoint could not run: %s", st->text);
    case HERO_INIT_FAILED:
        return hero_xasprintf("hero-init failed: %s", st->text);
    default:
        return hero_xstrdup("the container's init exited without a status");
    }
}

/* pid runs, and is this container's init: its root is our root mount, the same
 * device and inode (after pivot_root its root link only says "/") */
static bool init_is_ours(op_t *op, int64_t pid)
{
    if (pid <= 0 || hero_pods_pid_gone(pid))
        return false;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%lld/root/", (long long)pid);
    char *root = hero_xasprintf("%s/rootfs", op->dir);
    struct stat a, b;
    bool same = stat(path, &a) == 0 && stat(root, &b) == 0 && a.st_dev == b.st_dev &&
                a.st_ino == b.st_ino;
    free(root);
    return same;
}

/* ======================= container_start ======================= */

static void start_have_image(hero_image_t *img, hero_error_t *err, void *data);
static void start_create(op_t *op);
static void start_fail(op_t *op, hero_error_t *err);

int hero_heropods_start_start(hero_task_t *t, hero_error_t *err)
{
    op_t *op = op_new(t);
    if (op_load_existing(op, err) < 0)
        return -1;
    op->keep_alive = hero_arg_bool(t->action, "keep_alive");
    int64_t ms = hero_arg_duration_ms(t->action, "timeout");
    op->timeout_ms = ms > 0 ? (uint64_t)ms : 300000;
    json_t *j = json_loads(op->rec.spec, 0, NULL);
    if (!j || hero_ctr_spec_from_json(j, &op->spec, err) < 0) {
        json_decref(j);
        if (!err->msg)
            hero_error_set(err, 0, "the stored definition of '%s' is unreadable", op->rec.name);
        op_free(op);
        return -1;
    }
    json_decref(j);
    op->have_spec = true;
    /* running already (and really: its init is alive)? then there is nothing to do */
    if (strcmp(op->rec.state, "running") == 0 && init_is_ours(op, op->rec.pid)) {
        op_end(op, 0, NULL);
        return 0;
    }
    hero_image_t *pinned = NULL;
    if (hero_image_pinned(op->rec.name, op->spec.image, op->rec.image_rootfs,
                          op->rec.image_config, &pinned, err) < 0) {
        op_free(op);
        return -1;
    }
    if (pinned)
        start_have_image(pinned, NULL, op);
    else
        hero_image_resolve(t->loop, op->in->store, op->spec.image, start_have_image, op);
    return 0;
}

static int write_config(op_t *op, hero_error_t *err)
{
    char *init = hero_pods_init_path(err);
    if (!init)
        return -1;
    char *rootfs = hero_xasprintf("%s/rootfs", op->dir);
    char *etc = hero_xasprintf("%s/etc", op->dir);
    /* cgroups are host-wide: the store's own id keeps two base dirs apart */
    char *cg = hero_xasprintf("/hero/%s-%s", hero_store_uid(op->in->store), op->cid);
    hero_oci_opts_t o = {
        .rootfs = rootfs,
        .init_path = init,
        .run_dir = op->run_dir,
        .etc_dir = etc,
        .keep_alive = op->keep_alive,
        .cgroup_path = cg,
    };
    /* users are looked up in the image's root: for a stack of layers, through the
     * container's mounted root (o.rootfs) */
    json_t *cfg = hero_oci_config(&op->spec, op->img->config,
                                  strchr(op->img->rootfs, ':') ? NULL : op->img->rootfs, &o, err);
    int rc = -1;
    if (cfg) {
        /* hero-init runs as the container's user and writes its status into run/ */
        json_t *u = json_object_get(json_object_get(cfg, "process"), "user");
        uid_t uid = (uid_t)json_integer_value(json_object_get(u, "uid"));
        gid_t gid = (gid_t)json_integer_value(json_object_get(u, "gid"));
        if (chown(op->run_dir, uid, gid) < 0) {
            hero_error_set(err, errno, "cannot chown '%s'", op->run_dir);
            json_decref(cfg);
            cfg = NULL;
        }
    }
    if (cfg) {
        char *path = hero_xasprintf("%s/config.json", op->dir);
        rc = hero_oci_write(cfg, path, err);
        free(path);
        json_decref(cfg);
    }
    free(init);
    free(rootfs);
    free(etc);
    free(cg);
    return rc;
}

/* The address, and the record of the crun container about to be made: one commit. */
static int lease_and_record(op_t *op, hero_error_t *err)
{
    if (hero_store_batch_begin(op->in->store, err) < 0)
        return -1;
    int rc = hero_pods_net_lease(op->in, op->rec.id, &op->addr, err);
    if (rc == 0)
        rc = hero_store_hostobj_add(op->in->store, op->rec.id, HERO_OBJ_CRUN, op->cid, err);
    if (hero_store_batch_end(op->in->store, rc < 0 ? NULL : err) < 0)
        rc = -1;
    return rc;
}

static void start_have_image(hero_image_t *img, hero_error_t *err, void *data)
{
    op_t *op = data;
    if (!img) {
        op_end(op, -1, err);
        return;
    }
    op->img = img;
    if (!op->rec.image_rootfs)
        pin_now(op, img); /* a container made before the store kept its image */
    hero_error_t e = HERO_ERROR_INIT;
    const char *hostname = op->spec.hostname ? op->spec.hostname : op->spec.name;
    if (hero_pods_mount_root(op->in, op->rec.id, img->rootfs, &e) < 0 ||
        hero_pods_write_etc(op->in, op->rec.id, hostname, &e) < 0 ||
        hero_pods_clear_run(op->in, op->rec.id, &e) < 0 || write_config(op, &e) < 0 ||
        /* the network's host side, the address and the names come before crun
         * create: a taken port or a full subnet fails before anything runs */
        hero_pods_net_instance_up(op->in, false, &e) < 0 ||
        hero_pods_net_ports_check(op->in, op->rec.id, op->spec.ports, &e) < 0 ||
        lease_and_record(op, &e) < 0 || hero_pods_hosts_update(op->in, &e) < 0) {
        start_fail(op, &e);
        return;
    }
    start_create(op);
}

static void start_cleaned(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    hero_error_t e = HERO_ERROR_INIT;
    if (!err || (err->msg && strstr(err->msg, "does not exist"))) {
        hero_store_hostobj_del(op->in->store, op->rec.id, HERO_OBJ_CRUN, op->cid, &e);
        hero_error_clear(&e);
    } else if (op->err.msg) {
        /* the crun container stays recorded, so a later delete removes it; the
         * error that made the start fail comes first */
        hero_error_wrap(err, "%s; and cleaning up: crun delete", op->err.msg);
        hero_error_clear(&op->err);
        op->err = *err;
        *err = (hero_error_t)HERO_ERROR_INIT;
    }
    hero_pods_net_ctr_down(op->in, op->rec.id, false, &e);
    hero_error_clear(&e);
    hero_pods_umount_root(op->in, op->rec.id, &e);
    hero_error_clear(&e);
    op_end(op, -1, NULL);
}

/* A start failed: undo what it made (crun container, mount), keep the definition. */
static void start_fail(op_t *op, hero_error_t *err)
{
    if (op->settled)
        return;
    op->settled = true;
    if (err && err->msg && !op->err.msg) {
        op->err = *err;
        *err = (hero_error_t)HERO_ERROR_INIT;
    }
    close_watchers(op);
    hero_error_t e = HERO_ERROR_INIT;
    hero_init_status_t st;
    hero_pods_read_status(op->run_dir, &st);
    set_state(op, st.state >= HERO_INIT_EXITED ? "exited" : "created", 0,
              st.state == HERO_INIT_EXITED ? st.code : -1,
              st.state == HERO_INIT_SIGNALED ? st.code : 0, &e);
    hero_error_clear(&e);
    const char *args[] = {"delete", "-f", op->cid, NULL};
    hero_crun_opts_t co = {.timeout_ms = 30000};
    if (op_crun(op, args, &co, start_cleaned, &e) < 0) {
        /* crun delete did not run: the crun container stays recorded, for a later
         * delete (NULL here would read as "deleted") */
        start_cleaned(NULL, &e, op);
        hero_error_clear(&e);
    }
}

static void start_started(const hero_proc_result_t *r, hero_error_t *err, void *data);
static void start_created(const hero_proc_result_t *r, hero_error_t *err, void *data);

static void start_cancel(hero_task_t *t);

static void start_create(op_t *op)
{
    hero_error_t e = HERO_ERROR_INIT;
    /* from here on an interrupt undoes the start (see start_cancel) */
    op->t->state = op;
    op->t->cancel = start_cancel;
    char *log = hero_xasprintf("%s/log", op->dir);
    char *crunlog = hero_xasprintf("%s/crun.log", op->dir);
    char *pidfile = hero_xasprintf("%s/pid", op->dir);
    unlink(crunlog);
    unlink(pidfile);
    /* the container's stdout and stderr go to its log file, never to a hero pipe */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat lst;
    op->log_mark = fd >= 0 && fstat(fd, &lst) == 0 ? (int64_t)lst.st_size : 0;
    if (fd < 0) {
        hero_error_set(&e, errno, "cannot open the container's log '%s'", log);
    } else {
        const char *args[] = {"create", "--bundle", op->dir, "--pid-file", pidfile, op->cid, NULL};
        hero_crun_opts_t co = {
            .stdout_fd = fd, .stderr_fd = fd, .timeout_ms = 60000, .log_path = crunlog};
        op_crun(op, args, &co, start_created, &e);
        close(fd); /* the child has its own copy */
    }
    free(log);
    free(crunlog);
    free(pidfile);
    if (e.msg)
        start_fail(op, &e);
}

static void start_deleted_stale(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    if (err && !(err->msg && strstr(err->msg, "does not exist"))) {
        start_fail(op, err);
        return;
    }
    start_create(op);
}

/* crun create shares the container's stdio, so a crun that reports only on stderr
 * (not in its --log) leaves its message in the container's log: take the last line
 * it added. */
static void crun_message_from_log(op_t *op, hero_error_t *err)
{
    char *log = hero_xasprintf("%s/log", op->dir);
    FILE *f = fopen(log, "re");
    free(log);
    if (!f)
        return;
    char line[1024], last[1024] = "";
    if (fseek(f, (long)op->log_mark, SEEK_SET) == 0)
        while (fgets(line, sizeof(line), f))
            if (line[0] != '\n')
                snprintf(last, sizeof(last), "%s", line);
    fclose(f);
    last[strcspn(last, "\n")] = 0;
    if (last[0])
        hero_error_set(err, 0, "%s", strncmp(last, "crun: ", 6) ? last : last + 6);
}

static void start_created(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    hero_error_t e = HERO_ERROR_INIT;
    if (err) {
        if (err->msg && strstr(err->msg, "already exists") && op->retries++ == 0) {
            /* a crun container left by a hero that was killed: remove it, retry once */
            const char *args[] = {"delete", "-f", op->cid, NULL};
            hero_crun_opts_t co = {.timeout_ms = 30000};
            if (op_crun(op, args, &co, start_deleted_stale, &e) < 0)
                start_fail(op, &e);
            return;
        }
        if (err->msg && !strcmp(err->msg, "crun failed")) {
            crun_message_from_log(op, err);
            hero_crun_explain(err);
        }
        hero_error_wrap(err, "crun create");
        start_fail(op, err);
        return;
    }
    op->created = true;
    char *pidfile = hero_xasprintf("%s/pid", op->dir);
    FILE *f = fopen(pidfile, "re");
    long long pid = 0;
    if (!f || fscanf(f, "%lld", &pid) != 1 || pid <= 0)
        hero_error_set(&e, 0, "crun create wrote no pid to %s", pidfile);
    if (f)
        fclose(f);
    free(pidfile);
    op->pid = pid;
    /* between create and start: the network, so the entrypoint sees it from its
     * first instruction */
    if (!e.msg)
        hero_pods_net_ctr_up(op->in, op->rec.id, (int)pid, op->addr, op->spec.ports, &e);
    if (e.msg) {
        start_fail(op, &e);
        return;
    }
    const char *args[] = {"start", op->cid, NULL};
    hero_crun_opts_t co = {.timeout_ms = 60000};
    if (op_crun(op, args, &co, start_started, &e) < 0)
        start_fail(op, &e);
}

/* Decides from hero-init's status; false when it is too early to say. */
static bool start_decide(op_t *op, bool init_gone)
{
    hero_init_status_t st;
    hero_pods_read_status(op->run_dir, &st);
    hero_error_t e = HERO_ERROR_INIT;
    if (st.state >= HERO_INIT_EXITED) {
        bool ok = st.state == HERO_INIT_EXITED && st.code == 0;
        if (ok && op->keep_alive && !init_gone) {
            /* the entrypoint finished well; hero-init keeps the container up */
            if (set_state(op, "running", op->pid, 0, 0, &e) < 0)
                start_fail(op, &e);
            else
                op_end(op, 0, NULL);
            return true;
        }
        if (ok) {
            /* without keep_alive an entrypoint that exits 0 just ran to its end */
            close_watchers(op);
            set_state(op, "exited", 0, 0, 0, &e);
            hero_error_clear(&e);
            op_end(op, 0, NULL);
            return true;
        }
        char *what = describe_status(&st);
        hero_error_set(&e, 0, "container '%s': %s (its log: %s/log)", op->rec.name, what, op->dir);
        free(what);
        start_fail(op, &e);
        return true;
    }
    if (init_gone) {
        char *what = describe_status(&st);
        hero_error_set(&e, 0, "container '%s': %s (its log: %s/log)", op->rec.name, what, op->dir);
        free(what);
        start_fail(op, &e);
        return true;
    }
    return false; /* too early: later events or the timer decide */
}

static void start_on_exit(op_t *op)
{
    if (!op->settled)
        start_decide(op, true);
}

static void start_on_file(uv_fs_event_t *h, const char *file, int events, int status)
{
    (void)events;
    (void)status;
    op_t *op = h->data;
    /* hero-init writes NAME.tmp and renames it over NAME: only the rename's new
     * name says something new (no name: the kernel dropped events, look anyway) */
    size_t n = file ? strlen(file) : 0;
    if (n > 4 && !strcmp(file + n - 4, ".tmp"))
        return;
    if (!op->settled)
        start_decide(op, false);
}

static void start_on_timer(uv_timer_t *h)
{
    op_t *op = h->data;
    if (op->settled)
        return;
    if (start_decide(op, false))
        return;
    hero_error_t e = HERO_ERROR_INIT;
    if (!op->keep_alive) {
        /* no quick death: the container runs */
        if (set_state(op, "running", op->pid, -1, 0, &e) < 0)
            start_fail(op, &e);
        else
            op_end(op, 0, NULL);
        return;
    }
    hero_error_set(&e, 0,
                   "container '%s': the entrypoint still runs after the keep_alive timeout "
                   "(%.0f s); it was stopped",
                   op->rec.name, (double)op->timeout_ms / 1000);
    start_fail(op, &e);
}

static void start_cancel(hero_task_t *t)
{
    op_t *op = t->state;
    if (op->settled)
        return;
    op->cancel_requested = true;
    if (op->crun_inflight)
        return; /* op_crun_done undoes the start when crun's step is done */
    hero_error_t e = HERO_ERROR_INIT;
    hero_error_set(&e, 0, "interrupted");
    start_fail(op, &e);
}

static void start_started(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    if (err) {
        hero_error_wrap(err, "crun start");
        start_fail(op, err);
        return;
    }
    hero_error_t e = HERO_ERROR_INIT;
    /* watch before reading, so an event between the two is not lost */
    int w = watch_init(op, start_on_exit, start_on_file, &e);
    if (w < 0) {
        start_fail(op, &e);
        return;
    }
    op->t->state = op;
    op->t->cancel = start_cancel;
    if (start_decide(op, w == 1))
        return;
    start_timer(op, op->keep_alive ? op->timeout_ms : QUICK_DEATH_MS, start_on_timer);
}

/* ======================= container_exec ======================= */

static void exec_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    op_t *op = data;
    hero_task_t *t = op->t;
    const hs_action_t *a = t->action;
    if (hero_arg_bool(a, "stdout")) {
        hero_task_write(t, r->out, r->out_len);
        hero_task_write_err(t, r->err, r->err_len);
    }
    if (r->out_truncated)
        hero_task_printf(t, "[output cut at 1 MiB]\n");
    hero_error_t e = HERO_ERROR_INIT;
    int rc = 0;
    if (r->timed_out || r->cancelled) {
        rc = hero_error_set(&e, 0, "the command %s", r->timed_out ? "timed out" : "was interrupted");
    } else if (r->term_signal) {
        rc = hero_error_set(&e, 0, "the command was killed by signal %d", r->term_signal);
    } else if (r->exit_status && !hero_arg_bool(a, "ignore_error")) {
        /* the last line of its error output says why, most of the time */
        size_t n = r->err_len;
        while (n && r->err[n - 1] == '\n')
            n--;
        size_t b = n;
        while (b && r->err[b - 1] != '\n')
            b--;
        rc = hero_error_set(&e, 0, "the command exited with code %d%s%.*s", r->exit_status,
                            n > b ? ": " : "", (int)(n - b), r->err + b);
    }
    t->cancel = NULL;
    op->finished = true;
    op_free(op);
    hero_task_done(t, rc, &e);
    hero_error_clear(&e);
}

static void exec_cancel(hero_task_t *t)
{
    op_t *op = t->state;
    if (op->proc)
        hero_proc_cancel(op->proc);
}

/* The environment the container's process has (cfg: its config.json); empty without
 * one. NULL-terminated; caller frees. */
static char **container_env(const json_t *cfg)
{
    json_t *env = json_object_get(json_object_get(cfg, "process"), "env");
    size_t n = json_is_array(env) ? json_array_size(env) : 0;
    char **v = hero_xcalloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = json_string_value(json_array_get(env, i));
        if (e)
            v[k++] = hero_xstrdup(e);
    }
    return v;
}

int hero_heropods_exec_start(hero_task_t *t, hero_error_t *err)
{
    op_t *op = op_new(t);
    const hs_action_t *a = t->action;
    if (op_load_existing(op, err) < 0)
        return -1;
    int rc = 0;
    if (strcmp(op->rec.state, "running") != 0) {
        hero_error_set(err, 0, "container '%s' is not running (it is %s): container_start first",
                       op->rec.name, op->rec.state);
        op_free(op);
        return -1;
    }
    /* crun exec ARGS: [--env K=V]... [--cwd D] [--user U:G] ID argv... crun replaces
     * the whole environment when --env is given, so the container's own comes
     * first (from its config.json), then the action's. Without env of the action,
     * no --env at all: crun gives the process the container's own */
    json_t *cfg = hero_oci_read(op->dir);
    char **extra_env = hero_arg_list(a, "env");
    size_t ne = 0, nx = 0;
    while (extra_env[nx])
        nx++;
    char **env;
    if (nx) {
        env = container_env(cfg);
        while (env[ne])
            ne++;
        env = hero_xrealloc(env, (ne + nx + 1) * sizeof(char *));
        memcpy(env + ne, extra_env, (nx + 1) * sizeof(char *));
        free(extra_env);
    } else {
        env = extra_env; /* empty */
    }
    char **args = hero_arg_list(a, "args");
    char *cmd = hero_arg_str(a, "cmd");
    char *cwd = hero_arg_str(a, "workdir");
    char *user = hero_arg_str(a, "user");
    char *ids = NULL;
    size_t n = 0;
    for (char **e = env; *e; e++)
        n += 2;
    for (char **x = args; *x; x++)
        n++;
    const char **argv = hero_xcalloc(n + 16, sizeof(char *));
    char *root = hero_pods_crun_root(op->in);
    char *rootopt = hero_xasprintf("--root=%s", root);
    free(root);
    size_t k = 0;
    argv[k++] = "crun";
    argv[k++] = rootopt;
    argv[k++] = "exec";
    for (char **e = env; *e; e++) {
        argv[k++] = "--env";
        argv[k++] = *e;
    }
    if (cwd) {
        argv[k++] = "--cwd";
        argv[k++] = cwd;
    }
    if (user) {
        uint32_t uid, gid, *extra = NULL;
        size_t nextra = 0;
        char *rootfs = hero_xasprintf("%s/rootfs", op->dir);
        rc = hero_oci_resolve_user(rootfs, user, &uid, &gid, &extra, &nextra, err);
        free(rootfs);
        free(extra);
        if (rc == 0) {
            ids = hero_xasprintf("%u:%u", uid, gid);
            argv[k++] = "--user";
            argv[k++] = ids;
        }
    }
    if (!user) {
        /* the container's user (crun exec would run the command as root) */
        ids = hero_oci_exec_user(cfg);
        if (ids) {
            argv[k++] = "--user";
            argv[k++] = ids;
        }
    }
    argv[k++] = op->cid;
    if (cmd) {
        argv[k++] = "/bin/sh";
        argv[k++] = "-c";
        argv[k++] = cmd;
    } else {
        for (char **x = args; *x; x++)
            argv[k++] = *x;
    }
    argv[k] = NULL;
    if (rc == 0) {
        int64_t ms = hero_arg_duration_ms(a, "timeout");
        hero_proc_opts_t po = {
            .argv = argv,
            .capture_cap = 1024 * 1024,
            .timeout_ms = ms > 0 ? (uint64_t)ms : 0,
            /* a command that leaves something running (`daemon &`, a server that
             * forks) is done when it exits, as with docker exec: what it left may
             * hold the pipes for its whole life */
            .eof_wait_ms = EXEC_EOF_WAIT_MS,
        };
        rc = hero_proc_spawn(t->loop, &po, exec_done, op, &op->proc, err);
        if (rc == 0) {
            t->state = op;
            t->cancel = exec_cancel;
        }
    }
    free(argv);
    free(rootopt);
    free(ids);
    free(cwd);
    free(user);
    free(cmd);
    hero_strv_free(env);
    hero_strv_free(args);
    json_decref(cfg);
    if (rc < 0)
        op_free(op);
    return rc;
}

/* ======================= container_stop ======================= */

static void stop_killed(const hero_proc_result_t *r, hero_error_t *err, void *data);
static void stop_finish(op_t *op);

static void stop_deleted(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    hero_error_t e = HERO_ERROR_INIT;
    if (err && !(err->msg && strstr(err->msg, "does not exist"))) {
        hero_error_wrap(err, "crun delete");
        op_end(op, -1, err);
        return;
    }
    /* forgetting what is gone and the new state: one commit */
    if (hero_store_batch_begin(op->in->store, &e) < 0) {
        op_end(op, -1, &e);
        return;
    }
    int rc = 0;
    if (hero_store_hostobj_del(op->in->store, op->rec.id, HERO_OBJ_CRUN, op->cid, &e) < 0 ||
        hero_pods_net_ctr_down(op->in, op->rec.id, true, &e) < 0 ||
        hero_pods_umount_root(op->in, op->rec.id, &e) < 0)
        rc = -1;
    if (rc == 0) {
        hero_init_status_t st;
        hero_pods_read_status(op->run_dir, &st);
        rc = set_state(op, "stopped", 0, st.state == HERO_INIT_EXITED ? st.code : -1,
                       st.state == HERO_INIT_SIGNALED ? st.code : 0, &e);
    }
    if (hero_store_batch_end(op->in->store, rc < 0 ? NULL : &e) < 0)
        rc = -1;
    if (rc < 0) {
        op_end(op, -1, &e);
        return;
    }
    if (op->after_stop) {
        close_watchers(op);
        op->after_stop(op);
        return;
    }
    op_end(op, 0, NULL);
}

/* init is gone (or never ran): remove crun's record and the root mount. Runs once,
 * whether init's exit or crun kill's answer comes first. */
static bool crun_recorded(op_t *op)
{
    hero_hostobj_t *objs = NULL;
    size_t n = 0;
    hero_error_t e = HERO_ERROR_INIT;
    bool found = true; /* when unsure, ask crun */
    if (hero_store_hostobj_list(op->in->store, op->rec.id, &objs, &n, &e) == 0) {
        found = false;
        for (size_t i = 0; i < n; i++)
            found |= objs[i].kind == HERO_OBJ_CRUN;
    }
    hero_error_clear(&e);
    hero_hostobjs_free(objs, n);
    return found;
}

static void stop_finish(op_t *op)
{
    if (op->settled)
        return;
    op->settled = true;
    close_watchers(op);
    hero_error_t e = HERO_ERROR_INIT;
    if (!crun_recorded(op)) {
        /* nothing of crun's is left (stopped already, or never started) */
        stop_deleted(NULL, NULL, op);
        return;
    }
    const char *args[] = {"delete", "-f", op->cid, NULL};
    hero_crun_opts_t co = {.timeout_ms = 30000};
    if (op_crun(op, args, &co, stop_deleted, &e) < 0)
        op_end(op, -1, &e);
}

static void stop_killed(const hero_proc_result_t *r, hero_error_t *err, void *data);

/* Signals the container's init. Through its pidfd it cannot hit a recycled pid
 * and needs no crun process; without a pidfd (the /proc fallback), crun kill. */
static int signal_init(op_t *op, int sig, hero_error_t *err)
{
    if (op->pidfd >= 0) {
        if (syscall(SYS_pidfd_send_signal, op->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
            return hero_error_set(err, errno, "cannot signal container '%s'", op->rec.name);
        stop_killed(NULL, NULL, op);
        return 0;
    }
    char signame[16];
    snprintf(signame, sizeof(signame), "%d", sig);
    const char *args[] = {"kill", op->cid, signame, NULL};
    hero_crun_opts_t co = {.timeout_ms = 30000};
    return op_crun(op, args, &co, stop_killed, err);
}

static void stop_on_exit(op_t *op)
{
    if (op->timer)
        uv_timer_stop(op->timer);
    stop_finish(op);
}

static void stop_on_timer(uv_timer_t *h)
{
    op_t *op = h->data;
    if (op->settled)
        return;
    hero_error_t e = HERO_ERROR_INIT;
    if (op->killed) {
        hero_error_set(&e, 0, "container '%s' did not die after SIGKILL", op->rec.name);
        op_end(op, -1, &e);
        return;
    }
    /* the grace period is over */
    op->killed = true;
    if (signal_init(op, SIGKILL, &e) < 0)
        op_end(op, -1, &e);
}

static void stop_killed(const hero_proc_result_t *r, hero_error_t *err, void *data)
{
    (void)r;
    op_t *op = data;
    if (op->settled)
        return; /* init's exit came first */
    if (err && !(err->msg && (strstr(err->msg, "does not exist") ||
                              strstr(err->msg, "not running") || strstr(err->msg, "No such process")))) {
        hero_error_wrap(err, "crun kill");
        op_end(op, -1, err);
        return;
    }
    if (!watching_exit(op)) {
        stop_finish(op);
        return;
    }
    /* wait for init's exit: the pidfd fires; SIGKILL gets 10 s more at most */
    start_timer(op, op->killed ? 10000 : op->timeout_ms, stop_on_timer);
}

/* A signal by its name as docker takes it ("SIGQUIT", "QUIT", "3", "SIGRTMIN+3",
 * "RTMAX-1"), or 0. */
static int signal_by_name(const char *s)
{
    const char *n = strncmp(s, "SIG", 3) ? s : s + 3;
    char *end;
    if (*n >= '0' && *n <= '9') {
        long v = strtol(n, &end, 10);
        return !*end && v > 0 && v < NSIG ? (int)v : 0;
    }
    if (!strncmp(n, "RTMIN", 5) || !strncmp(n, "RTMAX", 5)) {
        long off = 0;
        if (n[5]) {
            if (n[5] != '+' && n[5] != '-')
                return 0;
            off = strtol(n + 5, &end, 10);
            if (*end || end == n + 6)
                return 0;
        }
        long v = (n[4] == 'N' ? SIGRTMIN : SIGRTMAX) + off;
        return v >= SIGRTMIN && v <= SIGRTMAX ? (int)v : 0;
    }
    for (int i = 1; i < NSIG; i++) {
        const char *ab = sigabbrev_np(i);
        if (ab && !strcmp(ab, n))
            return i;
    }
    return 0;
}

/* The signal that asks the container to stop: its image's StopSignal, else SIGTERM
 * (also for a name hero does not know). hero-init forwards it to the entrypoint. */
static int stop_signal_of(op_t *op)
{
    int sig = SIGTERM;
    /* the image the container was made from, not what its name stands for now */
    json_t *cfg = hero_image_config_of(op->in->store, op->rec.image, op->rec.image_config);
    const char *s = json_string_value(json_object_get(cfg, "StopSignal"));
    int named = s ? signal_by_name(s) : 0;
    if (named)
        sig = named;
    json_decref(cfg);
    return sig;
}

static void stop_begin(op_t *op)
{
    hero_error_t e = HERO_ERROR_INIT;
    /* the recorded pid may be long gone and reused: signal it only when it is this
     * container's init */
    bool alive = strcmp(op->rec.state, "running") == 0 && init_is_ours(op, op->rec.pid);
    op->pid = op->rec.pid;
    if (alive) {
        int w = watch_init(op, stop_on_exit, NULL, &e);
        if (w < 0) {
            op_end(op, -1, &e);
            return;
        }
        alive = w == 0;
    }
    if (!alive) {
        stop_finish(op);
        return;
    }
    if (signal_init(op, stop_signal_of(op), &e) < 0)
        op_end(op, -1, &e);
}

int hero_heropods_stop_start(hero_task_t *t, hero_error_t *err)
{
    op_t *op = op_new(t);
    if (op_load_existing(op, err) < 0)
        return -1;
    int64_t ms = hero_arg_duration_ms(t->action, "timeout");
    op->timeout_ms = ms >= 0 ? (uint64_t)ms : 10000;
    stop_begin(op);
    return 0;
}

/* ======================= container_delete ======================= */

static void delete_torn_down(int rc, hero_error_t *err, void *data)
{
    op_t *op = data;
    if (rc < 0) {
        op_end(op, -1, err);
        return;
    }
    /* its lease is gone: the other containers stop listing it */
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_pods_hosts_update(op->in, &e) < 0) {
        op_end(op, -1, &e);
        return;
    }
    op_end(op, 0, NULL);
}

static void delete_after_stop(op_t *op)
{
    hero_pods_teardown(op->t->loop, op->in, op->rec.id, true, delete_torn_down, op);
}

int hero_heropods_delete_start(hero_task_t *t, hero_error_t *err)
{
    op_t *op = op_new(t);
    int rc = op_load(op, err);
    if (rc < 0) {
        op_free(op);
        return -1;
    }
    if (rc == 1) {
        /* deleting a container that is not there is not an error */
        op_free(op);
        hero_task_done(t, 0, NULL);
        return 0;
    }
    op->timeout_ms = 10000;
    op->after_stop = delete_after_stop;
    stop_begin(op);
    return 0;
}
