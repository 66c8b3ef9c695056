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
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 22) {
            v = atoll(tok);
            break;
        }
    }
    return v;
}

/* Stops the process pid if it still is the one that started at `start`: SIGTERM,
 * then SIGKILL after 3 s. */
static void stop_daemon(int pid, long long start)
{
    if (pid <= 1 || hero_pods_proc_start_time(pid) != start)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        waitpid(pid, NULL, WNOHANG); /* reaps it when this hero started it */
        if (hero_pods_proc_start_time(pid) != start)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, WNOHANG);
}

/* Stops the daemon the note `key` names ({"daemon": {...}} when `nested`, else the
 * note itself) and deletes the note. */
static int reset_note(hero_store_t *st, const char *key, bool nested, hero_error_t *err)
{
    char *v = NULL;
    int rc = hero_store_meta_get(st, key, &v, err);
    if (rc == 0) {
        json_t *j = json_loads(v, 0, NULL);
        json_t *d = nested ? json_object_get(j, "daemon") : j;
        if (d)
            stop_daemon((int)json_integer_value(json_object_get(d, "pid")),
                        json_integer_value(json_object_get(d, "start")));
        json_decref(j);
        rc = hero_store_meta_del(st, key, err);
    }
    free(v);
    return rc < 0 ? -1 : 0;
}

int hero_pods_overlay_reset(hero_pods_instance_t *in, hero_error_t *err)
{
    char *key = hero_pods_overlay_key(in->name, false);
    /* a daemon an enable started and a killed hero never made the instance's */
    char *pending = hero_pods_overlay_key(in->name, true);
    int rc = reset_note(in->store, key, true, err);
    if (rc == 0)
        rc = reset_note(in->store, pending, false, err);
    free(pending);
    free(key);
    hero_pods_overlay_forget_cached(in);
    return rc;
}
