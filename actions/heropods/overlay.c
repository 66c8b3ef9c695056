/* The IPv6 overlay of an instance, once enable_mycelium or enable_yggdrasil has run:
 * what the node is (kept in the store's notes as "overlay.<instance>", so a later
 * process starts containers without asking the daemon), each container's address
 * and overlay veth, and what `configure reset:true` undoes. The actions that talk
 * to the daemons are in overlay_daemon.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "pods.h"

char *hero_pods_overlay_key(const char *instance, bool pending)
{
    return hero_xasprintf(pending ? "overlay-daemon.%s" : "overlay.%s", instance);
}

int hero_pods_overlay_prefix(const char *subnet, struct in6_addr *net)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(subnet, '/');
    if (!slash || strcmp(slash, "/64") != 0 || (size_t)(slash - subnet) >= INET6_ADDRSTRLEN)
        return -1;
    memcpy(buf, subnet, (size_t)(slash - subnet));
    buf[slash - subnet] = 0;
    if (inet_pton(AF_INET6, buf, net) != 1)
        return -1;
    memset(net->s6_addr + 8, 0, 8);
    return 0;
}

static uint64_t low64(const struct in6_addr *a)
{
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | a->s6_addr[i];
    return v;
}

static void set_low64(struct in6_addr *a, uint64_t v)
{
    for (int i = 15; i >= 8; i--) {
        a->s6_addr[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

int hero_pods_overlay_parse(const char *json, hero_pods_overlay_t *ov, hero_error_t *err)
{
    memset(ov, 0, sizeof(*ov));
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *subnet = json_string_value(json_object_get(j, "subnet"));
    const char *node = json_string_value(json_object_get(j, "node"));
    const char *range = json_string_value(json_object_get(j, "range"));
    int rc = 0;
    char rbuf[INET6_ADDRSTRLEN + 8];
    const char *slash = range ? strchr(range, '/') : NULL;
    if (!kind || !subnet || !range || !slash || (size_t)(slash - range) >= INET6_ADDRSTRLEN ||
        strlen(kind) >= sizeof(ov->kind) || strlen(subnet) >= sizeof(ov->subnet) ||
        hero_pods_overlay_prefix(subnet, &ov->prefix) < 0) {
        rc = hero_error_set(err, 0, "the stored overlay settings are damaged: %s", json);
    } else {
        snprintf(ov->kind, sizeof(ov->kind), "%s", kind);
        snprintf(ov->subnet, sizeof(ov->subnet), "%s", subnet);
        memcpy(rbuf, range, (size_t)(slash - range));
        rbuf[slash - range] = 0;
        ov->range_len = atoi(slash + 1);
        if (inet_pton(AF_INET6, rbuf, &ov->range) != 1 || ov->range_len < 1 ||
            ov->range_len > 128 || (node && inet_pton(AF_INET6, node, &ov->node) != 1))
            rc = hero_error_set(err, 0, "the stored overlay settings are damaged: %s", json);
    }
    json_decref(j);
    return rc;
}

int hero_pods_overlay_get(hero_pods_instance_t *in, const hero_pods_overlay_t **out,
                          hero_error_t *err)
{
    *out = NULL;
    if (in->overlay_state == 0) {
        char *key = hero_pods_overlay_key(in->name, false), *v = NULL;
        int rc = hero_store_meta_get(in->store, key, &v, err);
        free(key);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            in->overlay_state = 1;
        } else {
            rc = hero_pods_overlay_parse(v, &in->overlay, err);
            free(v);
            if (rc < 0)
                return -1;
            in->overlay_state = 2;
        }
    }
    if (in->overlay_state == 2)
        *out = &in->overlay;
    return 0;
}

void hero_pods_overlay_forget_cached(hero_pods_instance_t *in)
{
    in->overlay_state = 0;
}

static const char *link_prefix(const char *kind)
{
    return strcmp(kind, "yggdrasil") == 0 ? "vyg" : "vmy";
}

int hero_pods_overlay_ctr_up(hero_pods_instance_t *in, int64_t id, int pid, hero_error_t *err)
{
    const hero_pods_overlay_t *ov;
    if (hero_pods_overlay_get(in, &ov, err) < 0)
        return -1;
    if (!ov)
        return 0;
    char host[16], ctr[16];
    uint64_t h;
    if (hero_net_overlay_names(link_prefix(ov->kind), hero_store_uid(in->store), id, host, ctr,
                               err) < 0 ||
        hero_store_overlay_lease(in->store, ov->subnet, low64(&ov->node), id, &h, err) < 0)
        return -1;
    struct in6_addr a = ov->prefix;
    set_low64(&a, h);
    /* forwarding once per process (a later run, after a reboot, sets it again) */
    static bool forwarding;
    if (!forwarding && hero_net_ipv6_forwarding(err) < 0)
        return hero_error_wrap(err, "the %s overlay", ov->kind);
    forwarding = true;
    /* a link of this name is ours from an earlier start that was cut short */
    if (hero_store_hostobj_add(in->store, id, HERO_OBJ_LINK, host, err) < 0 ||
        hero_net_link_delete(host, err) < 0 ||
        hero_net_overlay_attach(pid, host, ctr, &a, &ov->range, ov->range_len, err) < 0)
        return hero_error_wrap(err, "the %s overlay", ov->kind);
    return 0;
}

int hero_pods_overlay_addr(hero_store_t *s, int64_t id, char out[INET6_ADDRSTRLEN],
                           hero_error_t *err)
{
    char *subnet = NULL;
    uint64_t h;
    int rc = hero_store_overlay_get(s, id, &subnet, &h, err);
    if (rc != 0)
        return rc;
    struct in6_addr a;
    if (hero_pods_overlay_prefix(subnet, &a) < 0) {
        free(subnet);
        return 1;
    }
    free(subnet);
    set_low64(&a, h);
    inet_ntop(AF_INET6, &a, out, INET6_ADDRSTRLEN);
    return 0;
}

/* ---- the daemon hero started, and reset ---- */

long long hero_pods_proc_start_time(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* field 22, counted after the command name's closing parenthesis (the name may
     * hold spaces and parentheses itself) */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    long long v = -1;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (++field == 3 && (tok[0] == 'Z' || tok[0] == 'X'))
            return -1; /* dead, not yet reaped: gone as far as anyone here cares */
        if (field == 22) {
            v = atoll(tok);
            break;
        }
    }
    return v;
}

bool hero_pods_proc_is(int pid, long long start)
{
    return pid > 1 && start > 0 && hero_pods_proc_start_time(pid) == start;
}

/* Resetting an instance's overlay: for each of its two notes (the node's, with the
 * daemon under "daemon", and the pending one of a daemon a killed hero started), the
 * daemon it names is stopped if it still is the process that started at the recorded
 * time (SIGTERM, then SIGKILL after 3 s; polled on a timer, the loop goes on), and the
 * note is deleted. */
#define STOP_POLL_MS 10
#define STOP_POLLS 300          /* 3 s for SIGTERM */
#define KILL_POLLS 100          /* then 1 s for SIGKILL to take effect */

typedef struct reset_op {
    uv_loop_t *loop;
    hero_pods_instance_t *in;
    int next;                   /* the note being reset: 0 the node's, 1 the pending one */
    int pid;
    long long start;
    int polls;
    uv_timer_t *timer;
    hero_pods_done_cb cb;
    void *data;
} reset_op_t;

static void reset_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void reset_note(reset_op_t *op);

static void reset_end(reset_op_t *op, int rc, hero_error_t *err)
{
    if (op->timer)
        uv_close((uv_handle_t *)op->timer, reset_timer_closed);
    hero_pods_overlay_forget_cached(op->in);
    hero_pods_done_cb cb = op->cb;
    void *data = op->data;
    free(op);
    cb(rc, err, data);
}

/* The daemon of note op->next is gone (or was never ours): the note goes, then the next. */
static void reset_note_done(reset_op_t *op)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *key = hero_pods_overlay_key(op->in->name, op->next == 1);
    int rc = hero_store_meta_del(op->in->store, key, &e);
    free(key);
    if (rc < 0) {
        reset_end(op, -1, &e);
        hero_error_clear(&e);
        return;
    }
    op->next++;
    reset_note(op);
}

static bool daemon_alive(reset_op_t *op)
{
    waitpid(op->pid, NULL, WNOHANG); /* reaps it when this hero started it */
    return hero_pods_proc_is(op->pid, op->start);
}

static void on_stop_poll(uv_timer_t *t)
{
    reset_op_t *op = t->data;
    if (!daemon_alive(op)) {
        uv_timer_stop(t);
        reset_note_done(op);
        return;
    }
    ++op->polls;
    if (op->polls == STOP_POLLS) {
        kill(op->pid, SIGKILL);
    } else if (op->polls >= STOP_POLLS + KILL_POLLS) {
        uv_timer_stop(t); /* (a process SIGKILL does not end in 1 s: nothing more to do) */
        reset_note_done(op);
    }
}

/* Another instance of the store whose overlay uses the daemon at `api` (it found it
 * answering, so it recorded no daemon of its own): the daemon is handed to it, and
 * true; it is not stopped under that instance's containers. */
static bool daemon_handed_on(reset_op_t *op, const char *api, json_t *daemon)
{
    char **keys = NULL, **values = NULL;
    size_t n = 0;
    if (!api || hero_store_meta_list(op->in->store, "overlay.", &keys, &values, &n, NULL) < 0)
        return false;
    char *own = hero_pods_overlay_key(op->in->name, false);
    bool handed = false;
    for (size_t i = 0; i < n && !handed; i++) {
        if (!strcmp(keys[i], own))
            continue;
        json_t *o = json_loads(values[i], 0, NULL);
        const char *a = json_string_value(json_object_get(o, "api"));
        if (a && !strcmp(a, api) && !json_object_get(o, "daemon")) {
            json_object_set(o, "daemon", daemon);
            char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
            handed = text && hero_store_meta_put(op->in->store, keys[i], text, NULL) == 0;
            free(text);
        }
        json_decref(o);
    }
    free(own);
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
    return handed;
}

static void reset_note(reset_op_t *op)
{
    if (op->next == 2) {
        reset_end(op, 0, NULL);
        return;
    }
    hero_error_t e = HERO_ERROR_INIT;
    char *v = NULL;
    char *key = hero_pods_overlay_key(op->in->name, op->next == 1);
    int rc = hero_store_meta_get(op->in->store, key, &v, &e);
    free(key);
    if (rc < 0) {
        reset_end(op, -1, &e);
        hero_error_clear(&e);
        return;
    }
    if (rc == 1) { /* no such note */
        op->next++;
        reset_note(op);
        return;
    }
    json_t *j = json_loads(v, 0, NULL);
    free(v);
    /* the node's note has the daemon under "daemon"; the pending one is the daemon */
    json_t *d = op->next == 0 ? json_object_get(j, "daemon") : j;
    op->pid = d ? (int)json_integer_value(json_object_get(d, "pid")) : 0;
    op->start = d ? json_integer_value(json_object_get(d, "start")) : -1;
    bool alive = daemon_alive(op);
    bool handed = alive && op->next == 0 &&
                  daemon_handed_on(op, json_string_value(json_object_get(j, "api")), d);
    json_decref(j);
    if (!alive || handed) {
        reset_note_done(op);
        return;
    }
    kill(op->pid, SIGTERM);
    op->polls = 0;
    if (!op->timer) {
        op->timer = hero_xmalloc(sizeof(*op->timer));
        uv_timer_init(op->loop, op->timer);
        op->timer->data = op;
    }
    uv_timer_start(op->timer, on_stop_poll, STOP_POLL_MS, STOP_POLL_MS);
}

void hero_pods_overlay_reset(uv_loop_t *loop, hero_pods_instance_t *in, hero_pods_done_cb cb,
                             void *data)
{
    reset_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->loop = loop;
    op->in = in;
    op->cb = cb;
    op->data = data;
    reset_note(op);
}
