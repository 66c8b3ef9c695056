/* The overlay actions: enable_mycelium and enable_yggdrasil. Each finds the node's
 * daemon (mycelium: its HTTP API; yggdrasil: its admin socket in the base dir) or
 * starts one, detached, with its log in <base>/overlay/, and waits until it answers;
 * then it saves what the node is (kind, /64, address, the range containers route)
 * as the instance's overlay. Everything waits on the loop: HTTP through
 * runtime/http, programs through runtime/proc, polls on a timer. A daemon hero
 * started and could not get an answer from is stopped again before the action
 * fails. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actions/actions.h"
#include "heropods.h"
#include "net.h"
#include "nft.h"
#include "pods.h"
#include "runtime/fs.h"
#include "runtime/http.h"
#include "runtime/lazylib.h"
#include "runtime/sched.h"

/* How long a daemon hero started has to answer, and how often hero asks. */
#define DAEMON_WAIT_MS 15000
#define POLL_MS 100

typedef enum { OV_MYCELIUM, OV_YGGDRASIL } ov_kind_t;

typedef struct ov_op {
    hero_task_t *t;
    hero_pods_instance_t *in;
    ov_kind_t kind;
    char *version;        /* mycelium: the minimum */
    char *range;          /* the range routed into containers */
    char *key;            /* key file, ~ expanded */
    char **peers;
    char **listen;        /* yggdrasil */
    bool multicast;       /* yggdrasil */
    char *api;            /* mycelium: host:port; yggdrasil: unix://<sock> */
    char *tun;            /* mycelium */
    char *dir;            /* <base>/overlay */
    char *log;            /* the daemon's log, when hero starts it */

    hero_http_t *http;
    uv_timer_t timer;
    bool running;         /* mycelium: a daemon answered before hero started any */
    int daemon_pid;       /* > 0: hero started this daemon during the action */
    long long daemon_start;
    uint64_t deadline;
    json_t *admin;        /* mycelium: GET /api/v1/admin; yggdrasil: getSelf */
    json_t *have_peers;   /* mycelium: the daemon's peers, as endpoint strings */
    size_t next_peer;
    hero_error_t err;
} ov_op_t;

static const char *kind_name(const ov_op_t *op)
{
    return op->kind == OV_MYCELIUM ? "mycelium" : "yggdrasil";
}

/* ---- ending ---- */

static void op_free_cb(uv_handle_t *h)
{
    ov_op_t *op = h->data;
    free(op->version);
    free(op->range);
    free(op->key);
    hero_strv_free(op->peers);
    hero_strv_free(op->listen);
    free(op->api);
    free(op->tun);
    free(op->dir);
    free(op->log);
    json_decref(op->admin);
    json_decref(op->have_peers);
    free(op);
}

/* The last lines of the daemon's log, for an error (caller frees; "" when none). */
static char *log_tail(const char *path)
{
    FILE *f = path ? fopen(path, "re") : NULL;
    if (!f)
        return hero_xstrdup("");
    char buf[1024];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    /* the last three lines */
    char *p = buf + n;
    int lines = 0;
    while (p > buf && lines < 3)
        if (*--p == '\n')
            lines++;
    if (*p == '\n')
        p++;
    char *out = hero_xstrdup(p);
    for (char *c = out; *c; c++)
        if (*c == '\n')
            *c = '|';
    return out;
}

/* {pid, start, log} of the daemon hero started: how a later process finds it (and
 * knows it is still that process). */
static json_t *daemon_json(const ov_op_t *op)
{
    return json_pack("{s:i, s:I, s:s}", "pid", op->daemon_pid, "start",
                     (json_int_t)op->daemon_start, "log", op->log);
}

/* The note that names a daemon hero started and has not yet made the instance's
 * (see hero_pods_overlay_reset): written as soon as it runs, so a hero killed while
 * waiting for it leaves a record a later reset acts on. */
static void forget_pending(ov_op_t *op)
{
    char *key = hero_pods_overlay_key(op->in->name, true);
    hero_store_meta_del(op->in->store, key, NULL);
    free(key);
}

static void stop_started_daemon(ov_op_t *op)
{
    if (op->daemon_pid <= 0)
        return;
    if (hero_pods_proc_is(op->daemon_pid, op->daemon_start)) {
        kill(op->daemon_pid, SIGKILL);
        waitpid(op->daemon_pid, NULL, 0);
    }
    op->daemon_pid = 0;
    forget_pending(op);
}

static void op_end(ov_op_t *op, int rc, hero_error_t *err)
{
    if (rc < 0)
        stop_started_daemon(op);
    hero_http_close(op->http);
    op->http = NULL;
    hero_task_t *t = op->t;
    uv_close((uv_handle_t *)&op->timer, op_free_cb);
    hero_task_done(t, rc, err);
}

static void op_fail(ov_op_t *op, hero_error_t *err)
{
    op_end(op, -1, err);
}

static void op_failf(ov_op_t *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op_failf(ov_op_t *op, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_t e = HERO_ERROR_INIT;
    hero_error_set(&e, 0, "%s", m);
    free(m);
    op_fail(op, &e);
}

/* ---- versions ---- */

/* "mycelium 0.7.10", "myceliumd 0.6.2", "v0.7.1", "0.7": the numbers of the last
 * word. 0, or -1 when there are none. */
static int parse_version(const char *s, long v[3])
{
    v[0] = v[1] = v[2] = 0;
    const char *w = s, *p = s;
    while (*p) {
        if ((*p == ' ' || *p == '\t' || *p == '\n') && p[1] && p[1] != ' ' && p[1] != '\n')
            w = p + 1;
        p++;
    }
    if (*w == 'v' || *w == 'V')
        w++;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        long n = strtol(w, &end, 10);
        if (end == w || errno || n < 0)
            return i == 0 ? -1 : 0;
        v[i] = n;
        if (*end != '.')
            return 0;
        w = end + 1;
    }
    return 0;
}

/* 0 when `have` is at least `need`; else -1 with the error. */
static int version_check(ov_op_t *op, const char *have, const char *from, hero_error_t *err)
{
    long h[3], n[3];
    char *line = hero_xstrndup(have, strcspn(have, "\n"));
    int rc = 0;
    if (parse_version(line, h) < 0)
        rc = hero_error_set(err, 0, "cannot read a version in '%s' (%s)", line, from);
    else if (parse_version(op->version, n) == 0 &&
             (h[0] < n[0] || (h[0] == n[0] && (h[1] < n[1] || (h[1] == n[1] && h[2] < n[2])))))
        rc = hero_error_set(err, 0,
                            "mycelium %ld.%ld.%ld (%s) is older than the required version %s",
                            h[0], h[1], h[2], from, op->version);
    free(line);
    return rc;
}

/* ---- the result ---- */

/* The node's own address: on some interface of this host, inside the node's /64
 * (mycelium puts it on its TUN). :: when none is. */
static void node_address_in(const char *subnet, char out[INET6_ADDRSTRLEN])
{
    strcpy(out, "::");
    struct in6_addr prefix;
    struct ifaddrs *ifs;
    if (hero_pods_overlay_prefix(subnet, &prefix) < 0 || getifaddrs(&ifs) < 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6)
            continue;
        const struct in6_addr *a = &((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (memcmp(a->s6_addr, prefix.s6_addr, 8) == 0) {
            inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN);
            break;
        }
    }
    freeifaddrs(ifs);
}

/* Saves the instance's overlay and ends the action. */
static void op_finish(ov_op_t *op, const char *subnet, const char *node)
{
    hero_error_t e = HERO_ERROR_INIT;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", kind_name(op), "subnet", subnet,
                          "node", node, "range", op->range, "api", op->api);
    char *key = hero_pods_overlay_key(op->in->name, false);
    if (op->daemon_pid > 0) {
        json_object_set_new(j, "daemon", daemon_json(op));
    } else {
        /* the daemon an earlier enable started stays recorded while it runs */
        char *old = NULL;
        if (hero_store_meta_get(op->in->store, key, &old, NULL) == 0) {
            json_t *o = json_loads(old, 0, NULL);
            json_t *d = json_object_get(o, "daemon");
            int pid = (int)json_integer_value(json_object_get(d, "pid"));
            if (d && hero_pods_proc_is(pid, json_integer_value(json_object_get(d, "start"))))
                json_object_set(j, "daemon", d);
            json_decref(o);
        }
        free(old);
    }
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    hero_pods_overlay_t ov;
    int rc = 0;
    /* saved last: a failure before leaves nothing of the overlay recorded */
    if (hero_pods_overlay_parse(text, &ov, &e) < 0 || hero_net_ipv6_forwarding(&e) < 0 ||
        hero_nft_overlay_forward(&e) < 0 || hero_store_meta_put(op->in->store, key, text, &e) < 0)
        rc = -1;
    free(key);
    free(text);
    if (rc < 0) {
        hero_error_wrap(&e, "%s overlay", kind_name(op));
        op_fail(op, &e);
        return;
    }
    hero_pods_overlay_forget_cached(op->in);
    if (op->daemon_pid > 0)
        hero_task_printf(op->t, "%s: node %s, subnet %s (started the daemon, pid %d, log %s)\n",
                         kind_name(op), node, subnet, op->daemon_pid, op->log);
    else
        hero_task_printf(op->t, "%s: node %s, subnet %s (the daemon at %s)\n", kind_name(op),
                         node, subnet, op->api);
    if (op->daemon_pid > 0)
        forget_pending(op); /* recorded in the instance's overlay now */
    op->daemon_pid = 0;
    op_end(op, 0, NULL);
}

/* ---- starting a daemon ---- */

static int open_log(ov_op_t *op, hero_error_t *err)
{
    if (hero_mkdir_p(op->dir, 0700, err) < 0)
        return -1;
    int fd = open(op->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot open the %s log %s", kind_name(op), op->log);
    return fd;
}

static void daemon_spawn_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    (void)r;
    (void)data; /* never called: the process is detached at once */
}

static int spawn_daemon(ov_op_t *op, const char *const *argv, hero_error_t *err)
{
    int fd = open_log(op, err);
    if (fd < 0)
        return -1;
    hero_proc_opts_t o = {.argv = argv, .stdout_fd = fd, .stderr_fd = fd};
    hero_proc_t *p;
    int rc = hero_proc_spawn(op->t->loop, &o, daemon_spawn_done, NULL, &p, err);
    close(fd);
    if (rc < 0)
        return hero_error_wrap(err, "cannot start the %s daemon", kind_name(op));
    op->daemon_pid = hero_proc_pid(p);
    hero_proc_detach(p);
    op->daemon_start = hero_pods_proc_start_time(op->daemon_pid);
    json_t *j = daemon_json(op);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    char *key = hero_pods_overlay_key(op->in->name, true);
    json_decref(j);
    rc = hero_store_meta_put(op->in->store, key, text, err);
    free(key);
    free(text);
    op->deadline = uv_now(op->t->loop) + DAEMON_WAIT_MS;
    if (rc < 0)
        stop_started_daemon(op);
    return rc;
}

/* While waiting: has the daemon hero started died? Then fail with its log. */
static bool daemon_died(ov_op_t *op)
{
    if (op->daemon_pid <= 0)
        return false;
    int ws = 0;
    pid_t r = waitpid(op->daemon_pid, &ws, WNOHANG);
    if (r == 0 || (r < 0 && hero_pods_proc_is(op->daemon_pid, op->daemon_start)))
        return false;
    char *tail = log_tail(op->log);
    int pid = op->daemon_pid;
    op->daemon_pid = 0;
    forget_pending(op);
    if (r > 0)
        op_failf(op, "the %s daemon hero started (pid %d) exited with %s %d before it answered: "
                     "%s (log %s)",
                 kind_name(op), pid, WIFSIGNALED(ws) ? "signal" : "status",
                 WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws), tail, op->log);
    else
        op_failf(op, "the %s daemon hero started (pid %d) is gone: %s (log %s)", kind_name(op),
                 pid, tail, op->log);
    free(tail);
    return true;
}

static bool daemon_late(ov_op_t *op)
{
    if (uv_now(op->t->loop) < op->deadline)
        return false;
    char *tail = log_tail(op->log);
    op_failf(op, "the %s daemon hero started (pid %d) did not answer at %s within %d s: %s "
                 "(log %s)",
             kind_name(op), op->daemon_pid, op->api, DAEMON_WAIT_MS / 1000, tail, op->log);
    free(tail);
    return true;
}

/* ======================= mycelium ======================= */

static void my_admin(ov_op_t *op);
static void my_peers_next(ov_op_t *op);
static void my_version_done(hero_proc_t *p, const hero_proc_result_t *r, void *data);
static void my_peers_listed(hero_http_req_t *req, const hero_http_resp_t *resp, void *data);

/* Runs `mycelium -V`; my_version_done goes on. */
static int my_version(ov_op_t *op, hero_error_t *err)
{
    const char *argv[] = {"mycelium", "-V", NULL};
    hero_proc_opts_t o = {.argv = argv, .timeout_ms = 10000, .capture_cap = 4096};
    if (hero_proc_spawn(op->t->loop, &o, my_version_done, op, NULL, err) < 0) {
        if (err && err->code == ENOENT)
            hero_error_set(err, 0,
                           op->running
                               ? "cannot check the version of the mycelium daemon at %s: its "
                                 "API does not report one and mycelium is not installed (not "
                                 "in PATH)"
                               : "no mycelium daemon answers at %s and mycelium is not "
                                 "installed (not in PATH)",
                           op->api);
        return -1;
    }
    return 0;
}

static char *api_url(const ov_op_t *op, const char *path)
{
    return hero_xasprintf("http://%s%s", op->api, path);
}

static int my_get(ov_op_t *op, const char *path, unsigned timeout_ms, hero_http_done_cb cb,
                  hero_error_t *err)
{
    char *url = api_url(op, path);
    hero_http_opts_t o = {.url = url,
                          .connect_timeout_ms = timeout_ms,
                          .timeout_ms = timeout_ms,
                          .max_body = 1 << 20};
    int rc = hero_http_start(op->http, &o, cb, op, NULL, err);
    free(url);
    return rc;
}

static void my_on_timer(uv_timer_t *t)
{
    ov_op_t *op = t->data;
    if (daemon_died(op) || daemon_late(op))
        return;
    my_admin(op);
}

/* The node facts are in; the version is right: now the peers, or the end. */
static void my_have_admin(ov_op_t *op)
{
    const char *subnet = json_string_value(json_object_get(op->admin, "nodeSubnet"));
    if (op->daemon_pid > 0) {
        /* hero gave it the peers on its command line */
        char node[INET6_ADDRSTRLEN];
        node_address_in(subnet, node);
        op_finish(op, subnet, node);
        return;
    }
    my_peers_next(op);
}

static void my_admin_done(hero_http_req_t *req, const hero_http_resp_t *resp, void *data)
{
    (void)req;
    ov_op_t *op = data;
    json_t *j = resp->status == 200 ? json_loads(resp->body, 0, NULL) : NULL;
    const char *subnet = json_string_value(json_object_get(j, "nodeSubnet"));
    if (!subnet) {
        json_decref(j);
        if (op->daemon_pid > 0) {
            /* started by hero and not up yet */
            uv_timer_start(&op->timer, my_on_timer, POLL_MS, 0);
            return;
        }
        if (resp->status != 0) {
            op_failf(op, "the mycelium API at %s answered GET /api/v1/admin with HTTP %ld and "
                         "no nodeSubnet: is it mycelium?",
                     op->api, resp->status);
            return;
        }
        /* nothing answers: hero starts the daemon */
        hero_error_t e = HERO_ERROR_INIT;
        struct stat st;
        if (stat(op->key, &st) < 0) {
            hero_error_set(&e, errno, "mycelium key file %s (key_path)", op->key);
            hero_error_wrap(&e, "no mycelium daemon answers at %s, and hero cannot start one",
                            op->api);
            op_fail(op, &e);
            return;
        }
        /* the version first: an old daemon must not start */
        if (my_version(op, &e) < 0)
            op_fail(op, &e);
        return;
    }
    json_decref(op->admin);
    op->admin = j;
    if (op->daemon_pid <= 0) {
        /* a daemon that was there: its version, as the API reports it (mycelium 0.7
         * does not; then from `mycelium -V`, the binary beside it) */
        op->running = true;
        const char *v = json_string_value(json_object_get(j, "version"));
        hero_error_t e = HERO_ERROR_INIT;
        int rc;
        if (v) {
            char *from = hero_xasprintf("the daemon at %s", op->api);
            rc = version_check(op, v, from, &e);
            free(from);
        } else {
            rc = my_version(op, &e);
            if (rc == 0)
                return; /* goes on in my_version_done */
        }
        if (rc < 0) {
            op_fail(op, &e);
            return;
        }
    }
    my_have_admin(op);
}

static void my_admin(ov_op_t *op)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (my_get(op, "/api/v1/admin", 2000, my_admin_done, &e) < 0)
        op_fail(op, &e);
}

static void my_version_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    ov_op_t *op = data;
    hero_error_t e = HERO_ERROR_INIT;
    if (r->term_signal || r->exit_status != 0) {
        op_failf(op, "mycelium -V failed (%s %d): %.200s", r->term_signal ? "signal" : "status",
                 r->term_signal ? r->term_signal : r->exit_status, r->err);
        return;
    }
    if (version_check(op, r->out, "mycelium -V", &e) < 0) {
        op_fail(op, &e);
        return;
    }
    if (op->running) {
        my_have_admin(op);
        return;
    }
    /* mycelium --key-file K --peers P... --tun-name T --api-addr A */
    size_t np = 0;
    while (op->peers && op->peers[np])
        np++;
    const char **argv = hero_xcalloc(np + 10, sizeof(char *));
    size_t n = 0;
    argv[n++] = "mycelium";
    argv[n++] = "--key-file";
    argv[n++] = op->key;
    if (np) {
        argv[n++] = "--peers";
        for (size_t i = 0; i < np; i++)
            argv[n++] = op->peers[i];
    }
    argv[n++] = "--tun-name";
    argv[n++] = op->tun;
    argv[n++] = "--api-addr";
    argv[n++] = op->api;
    argv[n] = NULL;
    int rc = spawn_daemon(op, argv, &e);
    free(argv);
    if (rc < 0) {
        op_fail(op, &e);
        return;
    }
    uv_timer_start(&op->timer, my_on_timer, POLL_MS, 0);
}

/* ---- peers of a daemon that was running: add the missing ones ---- */

static void my_peer_added(hero_http_req_t *req, const hero_http_resp_t *resp, void *data)
{
    (void)req;
    ov_op_t *op = data;
    /* 409: it has it (another hero added it in between) */
    if (!(resp->status >= 200 && resp->status < 300) && resp->status != 409) {
        op_failf(op, "the mycelium API at %s refused the peer %s: %s%ld %.200s", op->api,
                 op->peers[op->next_peer - 1], resp->status ? "HTTP " : "",
                 resp->status, resp->status ? resp->body : resp->error);
        return;
    }
    my_peers_next(op);
}

static bool my_has_peer(const ov_op_t *op, const char *peer)
{
    size_t i;
    json_t *v;
    json_array_foreach(op->have_peers, i, v) if (strcasecmp(json_string_value(v), peer) == 0)
        return true;
    return false;
}

static void my_peers_next(ov_op_t *op)
{
    while (op->peers && op->peers[op->next_peer] && op->have_peers &&
           my_has_peer(op, op->peers[op->next_peer]))
        op->next_peer++;
    if (!op->peers || !op->peers[op->next_peer]) {
        const char *subnet = json_string_value(json_object_get(op->admin, "nodeSubnet"));
        char node[INET6_ADDRSTRLEN];
        node_address_in(subnet, node);
        op_finish(op, subnet, node);
        return;
    }
    if (!op->have_peers) {
        hero_error_t e = HERO_ERROR_INIT;
        if (my_get(op, "/api/v1/admin/peers", 5000, my_peers_listed, &e) < 0)
            op_fail(op, &e);
        return;
    }
    const char *peer = op->peers[op->next_peer++];
    json_t *b = json_pack("{s:s}", "endpoint", peer);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    char *url = api_url(op, "/api/v1/admin/peers");
    const char *hdr[] = {"Content-Type: application/json", NULL};
    hero_http_opts_t o = {.url = url,
                          .method = "POST",
                          .headers = hdr,
                          .body = body,
                          .body_len = strlen(body),
                          .connect_timeout_ms = 2000,
                          .timeout_ms = 5000};
    hero_error_t e = HERO_ERROR_INIT;
    int rc = hero_http_start(op->http, &o, my_peer_added, op, NULL, &e);
    free(url);
    free(body);
    if (rc < 0)
        op_fail(op, &e);
}

/* The peers' endpoints as "proto://socketAddr" strings. */
static void my_peers_listed(hero_http_req_t *req, const hero_http_resp_t *resp, void *data)
{
    (void)req;
    ov_op_t *op = data;
    json_t *j = resp->status == 200 ? json_loads(resp->body, 0, NULL) : NULL;
    if (!json_is_array(j)) {
        json_decref(j);
        op_failf(op, "the mycelium API at %s did not list its peers (GET /api/v1/admin/peers: "
                     "%s%ld)",
                 op->api, resp->status ? "HTTP " : "", resp->status);
        return;
    }
    op->have_peers = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(j, i, p)
    {
        json_t *ep = json_object_get(p, "endpoint");
        const char *proto = json_string_value(json_object_get(ep, "proto"));
        const char *sa = json_string_value(json_object_get(ep, "socketAddr"));
        if (proto && sa)
            json_array_append_new(op->have_peers, json_sprintf("%s://%s", proto, sa));
        else if (json_is_string(ep))
            json_array_append(op->have_peers, ep);
    }
    json_decref(j);
    my_peers_next(op);
}

/* ======================= yggdrasil ======================= */

static void yg_self(ov_op_t *op);

static void yg_on_timer(uv_timer_t *t)
{
    ov_op_t *op = t->data;
    if (daemon_died(op) || daemon_late(op))
        return;
    yg_self(op);
}

static int yg_ctl(ov_op_t *op, const char *const *cmd, hero_proc_cb cb, hero_error_t *err)
{
    const char *argv[8];
    size_t n = 0;
    argv[n++] = "yggdrasilctl";
    argv[n++] = "-json";
    argv[n++] = "-endpoint";
    argv[n++] = op->api;
    for (size_t i = 0; cmd[i] && n < 7; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    hero_proc_opts_t o = {.argv = argv, .timeout_ms = 5000, .capture_cap = 64 * 1024};
    if (hero_proc_spawn(op->t->loop, &o, cb, op, NULL, err) < 0) {
        if (err && err->code == ENOENT)
            hero_error_set(err, 0, "yggdrasilctl is not installed (not in PATH): install "
                                   "Debian's yggdrasil package (make deps)");
        return -1;
    }
    return 0;
}

static int yg_write_config(ov_op_t *op, hero_error_t *err);
static int yg_key(ov_op_t *op, char **hex, hero_error_t *err);
static void yg_peer_added(hero_proc_t *p, const hero_proc_result_t *r, void *data);

static void yg_add_next_peer(ov_op_t *op)
{
    if (!op->peers || !op->peers[op->next_peer]) {
        const char *subnet = json_string_value(json_object_get(op->admin, "subnet"));
        const char *node = json_string_value(json_object_get(op->admin, "address"));
        op_finish(op, subnet, node ? node : "::");
        return;
    }
    char *arg = hero_xasprintf("uri=%s", op->peers[op->next_peer++]);
    const char *cmd[] = {"addpeer", arg, NULL};
    hero_error_t e = HERO_ERROR_INIT;
    int rc = yg_ctl(op, cmd, yg_peer_added, &e);
    free(arg);
    if (rc < 0)
        op_fail(op, &e);
}

static void yg_peer_added(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    ov_op_t *op = data;
    bool had = strstr(r->out, "already") || strstr(r->err, "already");
    if ((r->term_signal || r->exit_status != 0) && !had) {
        op_failf(op, "yggdrasilctl addpeer %s failed: %.200s%.200s", op->peers[op->next_peer - 1],
                 r->out, r->err);
        return;
    }
    yg_add_next_peer(op);
}

static void yg_self_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    ov_op_t *op = data;
    json_t *j = !r->term_signal && r->exit_status == 0 ? json_loads(r->out, 0, NULL) : NULL;
    const char *subnet = json_string_value(json_object_get(j, "subnet"));
    if (subnet) {
        json_decref(op->admin);
        op->admin = j;
        if (op->daemon_pid > 0) {
            const char *node = json_string_value(json_object_get(j, "address"));
            op_finish(op, subnet, node ? node : "::");
        } else {
            yg_add_next_peer(op);
        }
        return;
    }
    json_decref(j);
    if (op->daemon_pid > 0) {
        uv_timer_start(&op->timer, yg_on_timer, POLL_MS, 0);
        return;
    }
    /* no daemon at hero's socket: start one */
    hero_error_t e = HERO_ERROR_INIT;
    if (yg_write_config(op, &e) < 0) {
        op_fail(op, &e);
        return;
    }
    char *conf = hero_xasprintf("%s/yggdrasil.conf", op->dir);
    const char *argv[] = {"yggdrasil", "-useconffile", conf, "-logto", op->log, NULL};
    int rc = spawn_daemon(op, argv, &e);
    free(conf);
    if (rc < 0) {
        if (e.code == ENOENT || (e.msg && strstr(e.msg, "no such file")))
            hero_error_set(&e, 0, "yggdrasil is not installed (not in PATH): install Debian's "
                                  "yggdrasil package (make deps)");
        op_fail(op, &e);
        return;
    }
    uv_timer_start(&op->timer, yg_on_timer, POLL_MS, 0);
}

static void yg_self(ov_op_t *op)
{
    const char *cmd[] = {"getSelf", NULL};
    hero_error_t e = HERO_ERROR_INIT;
    if (yg_ctl(op, cmd, yg_self_done, &e) < 0)
        op_fail(op, &e);
}

static char *hex_of(const unsigned char *b, size_t n)
{
    char *s = hero_xmalloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", b[i]);
    return s;
}

/* A new ed25519 key in yggdrasil's form: hex of seed (32) then public key (32). The
 * OpenSSL functions come from the shared libcrypto (hero_lazylib_crypto_sym says why):
 * called through pointers of their own types, so that none is linked in. */
static char *yg_new_key(hero_error_t *err)
{
    struct {
        __typeof__(&EVP_PKEY_CTX_new_id) ctx_new;
        __typeof__(&EVP_PKEY_keygen_init) keygen_init;
        __typeof__(&EVP_PKEY_keygen) keygen;
        __typeof__(&EVP_PKEY_get_raw_private_key) get_priv;
        __typeof__(&EVP_PKEY_get_raw_public_key) get_pub;
        __typeof__(&EVP_PKEY_free) key_free;
        __typeof__(&EVP_PKEY_CTX_free) ctx_free;
    } f;
    static const char *const names[] = {
        "EVP_PKEY_CTX_new_id",         "EVP_PKEY_keygen_init",        "EVP_PKEY_keygen",
        "EVP_PKEY_get_raw_private_key", "EVP_PKEY_get_raw_public_key", "EVP_PKEY_free",
        "EVP_PKEY_CTX_free"};
    void *p[sizeof(names) / sizeof(*names)];
    _Static_assert(sizeof(p) == sizeof(f), "one name per function pointer");
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
        if (!(p[i] = hero_lazylib_crypto_sym(names[i], err)))
            return NULL;
    memcpy(&f, p, sizeof(f));
    EVP_PKEY_CTX *c = f.ctx_new(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *k = NULL;
    unsigned char raw[64];
    size_t priv = 32, pub = 32;
    char *out = NULL;
    if (c && f.keygen_init(c) == 1 && f.keygen(c, &k) == 1 && f.get_priv(k, raw, &priv) == 1 &&
        f.get_pub(k, raw + 32, &pub) == 1 && priv == 32 && pub == 32)
        out = hex_of(raw, 64);
    else
        hero_error_set(err, 0, "cannot make an ed25519 key for yggdrasil (OpenSSL)");
    f.key_free(k);
    f.ctx_free(c);
    return out;
}

/* The node's private key, hex: from key_path (the form of yggdrasil's PrivateKey,
 * 128 hex digits), or hero's own in <base>/overlay/yggdrasil.key, made once. */
static int yg_key(ov_op_t *op, char **hex, hero_error_t *err)
{
    char *path = op->key ? hero_xstrdup(op->key) : hero_xasprintf("%s/yggdrasil.key", op->dir);
    FILE *f = fopen(path, "re");
    if (!f && (errno != ENOENT || op->key)) {
        hero_error_set(err, errno, "yggdrasil key file %s", path);
        free(path);
        return -1;
    }
    if (!f) {
        char *k = yg_new_key(err);
        int rc = k ? hero_fs_write_atomic(path, k, strlen(k), err) : -1;
        if (rc == 0)
            chmod(path, 0600);
        free(path);
        *hex = k;
        return rc;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    n = strcspn(buf, " \t\r\n");
    buf[n] = 0;
    bool ok = n == 128;
    for (size_t i = 0; ok && i < n; i++)
        ok = (buf[i] >= '0' && buf[i] <= '9') || ((buf[i] | 0x20) >= 'a' && (buf[i] | 0x20) <= 'f');
    if (!ok) {
        hero_error_set(err, 0, "yggdrasil key file %s does not hold a private key (128 hex "
                               "digits, as yggdrasil's PrivateKey)",
                       path);
        free(path);
        return -1;
    }
    free(path);
    *hex = hero_xstrdup(buf);
    return 0;
}

static json_t *strv_json(char **v)
{
    json_t *a = json_array();
    for (char **p = v; p && *p; p++)
        json_array_append_new(a, json_string(*p));
    return a;
}

static int yg_write_config(ov_op_t *op, hero_error_t *err)
{
    char *key = NULL;
    if (hero_mkdir_p(op->dir, 0700, err) < 0 || yg_key(op, &key, err) < 0)
        return -1;
    /* multicast off unless asked: no discovery beyond the listed peers */
    json_t *mc = json_array();
    if (op->multicast)
        json_array_append_new(mc, json_pack("{s:s, s:b, s:b, s:i, s:i}", "Regex", ".*", "Beacon",
                                            1, "Listen", 1, "Port", 0, "Priority", 0));
    json_t *c = json_pack("{s:o, s:{}, s:o, s:s, s:o, s:[], s:s, s:s, s:i, s:b, s:n}", "Peers",
                          strv_json(op->peers), "InterfacePeers", "Listen",
                          strv_json(op->listen), "AdminListen", op->api,
                          "MulticastInterfaces", mc, "AllowedPublicKeys", "PrivateKey", key,
                          "IfName", "auto", "IfMTU", 65535, "NodeInfoPrivacy", 1, "NodeInfo");
    char *text = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    free(key);
    char *path = hero_xasprintf("%s/yggdrasil.conf", op->dir);
    int rc = hero_fs_write_atomic(path, text, strlen(text), err);
    if (rc == 0)
        chmod(path, 0600); /* it holds the private key */
    free(path);
    free(text);
    return rc;
}

/* ======================= the actions ======================= */

static ov_op_t *op_new(hero_task_t *t, ov_kind_t kind, hero_error_t *err)
{
    hero_pods_instance_t *in;
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &in, err) < 0)
        return NULL;
    /* both actions take key_path ("~" expands); yggdrasil's may be absent */
    char *key = hero_arg_str(t->action, "key_path"), *expanded = NULL;
    if (key && !(expanded = hero_fs_expand_home(key, err))) {
        hero_error_wrap(err, "key_path");
        free(key);
        return NULL;
    }
    free(key);
    ov_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->key = expanded;
    op->t = t;
    op->in = in;
    op->kind = kind;
    op->dir = hero_xasprintf("%s/overlay", in->base_dir);
    op->log = hero_xasprintf("%s/%s.log", op->dir, kind == OV_MYCELIUM ? "mycelium" : "yggdrasil");
    uv_timer_init(t->loop, &op->timer);
    op->timer.data = op;
    if (hero_http_new(t->loop, &op->http, err) < 0) {
        uv_close((uv_handle_t *)&op->timer, op_free_cb);
        return NULL;
    }
    return op;
}

int hero_heropods_enable_mycelium_start(hero_task_t *t, hero_error_t *err)
{
    ov_op_t *op = op_new(t, OV_MYCELIUM, err);
    if (!op)
        return -1;
    const hs_action_t *a = t->action;
    op->version = hero_arg_str(a, "version");
    op->range = hero_arg_str(a, "ipv6_range");
    op->peers = hero_arg_list(a, "peers");
    op->api = hero_arg_str(a, "api_addr");
    op->tun = hero_arg_str(a, "tun_name");
    my_admin(op);
    return 0;
}

int hero_heropods_enable_yggdrasil_start(hero_task_t *t, hero_error_t *err)
{
    ov_op_t *op = op_new(t, OV_YGGDRASIL, err);
    if (!op)
        return -1;
    const hs_action_t *a = t->action;
    op->range = hero_xstrdup("200::/7");
    op->peers = hero_arg_list(a, "peers");
    op->listen = hero_arg_list(a, "listen");
    op->multicast = hero_arg_bool(a, "multicast");
    op->api = hero_xasprintf("unix://%s/yggdrasil.sock", op->dir);
    yg_self(op);
    return 0;
}
