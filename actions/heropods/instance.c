/* Instances: the base dir and settings of each, this process's open stores, and
 * the configure action. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "actions/actions.h"
#include "heropods.h"
#include "net.h"
#include "pods.h"
#include "runtime/config.h"
#include "runtime/sched.h"

/* This process's instances and stores; they live until hero_heropods_shutdown(). */
static hero_pods_instance_t **instances;
static size_t ninstances;
static hero_store_t **stores;
static size_t nstores;

const char *hero_pods_default_base_dir(void)
{
    const char *e = getenv("HERO_BASE_DIR");
    if (e && *e)
        return e;
    const char *c = hero_config_current()->base_dir;
    return c && *c ? c : "/var/lib/hero";
}

int hero_pods_store(const char *base_dir, hero_store_t **out, hero_error_t *err)
{
    for (size_t i = 0; i < nstores; i++)
        if (strcmp(hero_store_base_dir(stores[i]), base_dir) == 0) {
            *out = stores[i];
            return 0;
        }
    hero_store_t *s;
    if (hero_store_open(base_dir, &s, err) < 0)
        return -1;
    stores = hero_xrealloc(stores, (nstores + 1) * sizeof(*stores));
    stores[nstores++] = s;
    *out = s;
    return 0;
}

static hero_pods_instance_t *registered(const char *name)
{
    for (size_t i = 0; i < ninstances; i++)
        if (strcmp(instances[i]->name, name) == 0)
            return instances[i];
    return NULL;
}

static char **dns_from_settings(const char *settings)
{
    json_t *j = json_loads(settings, 0, NULL);
    json_t *dns = j ? json_object_get(j, "dns_servers") : NULL;
    size_t n = json_is_array(dns) ? json_array_size(dns) : 0;
    char **v = hero_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        v[i] = hero_xstrdup(json_string_value(json_array_get(dns, i)) ?: "");
    json_decref(j);
    return v;
}

/* Makes (or refreshes) this process's record of an instance. */
static hero_pods_instance_t *register_instance(const char *name, const char *base_dir,
                                               hero_store_t *store, const char *settings)
{
    hero_pods_instance_t *in = registered(name);
    if (!in) {
        in = hero_xcalloc(1, sizeof(*in));
        in->name = hero_xstrdup(name);
        instances = hero_xrealloc(instances, (ninstances + 1) * sizeof(*instances));
        instances[ninstances++] = in;
    } else {
        free(in->base_dir);
        hero_strv_free(in->dns_servers);
    }
    in->base_dir = hero_xstrdup(base_dir);
    in->store = store;
    in->dns_servers = dns_from_settings(settings);
    hero_pods_net_from_settings(&in->net, settings);
    in->net_ready = false;
    hero_pods_overlay_forget_cached(in);
    json_t *j = json_loads(settings ? settings : "{}", 0, NULL);
    in->use_podman = json_is_true(json_object_get(j, "use_podman"));
    json_decref(j);
    return in;
}

static json_t *default_settings(void)
{
    json_t *dns = json_pack("[ss]", "8.8.8.8", "8.8.4.4");
    return json_pack("{s:s, s:s, s:s, s:o, s:b, s:b}", "bridge_name", "heropods0", "subnet",
                     "10.10.0.0/24", "gateway_ip", "10.10.0.1", "dns_servers", dns, "nat", 1,
                     "use_podman", 0);
}

int hero_pods_instance_get(const char *name, hero_pods_instance_t **out, hero_error_t *err)
{
    hero_pods_instance_t *in = registered(name);
    if (in) {
        *out = in;
        return 0;
    }
    const char *base = hero_pods_default_base_dir();
    hero_store_t *st;
    if (hero_pods_store(base, &st, err) < 0)
        return -1;
    char *settings = NULL;
    int rc = hero_store_instance_get(st, name, &settings, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (strcmp(name, "default") != 0)
            return hero_error_set(err, 0,
                                  "instance '%s' is not configured (in %s): add "
                                  "!!heropods.configure name:'%s' before it",
                                  name, base, name);
        json_t *d = default_settings();
        settings = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(d);
        if (hero_store_instance_put(st, name, settings, err) < 0) {
            free(settings);
            return -1;
        }
    }
    *out = register_instance(name, base, st, settings);
    free(settings);
    return 0;
}

void hero_heropods_shutdown(void)
{
    for (size_t i = 0; i < ninstances; i++) {
        free(instances[i]->name);
        free(instances[i]->base_dir);
        hero_strv_free(instances[i]->dns_servers);
        hero_pods_net_clear(&instances[i]->net);
        free(instances[i]);
    }
    free(instances);
    instances = NULL;
    ninstances = 0;
    for (size_t i = 0; i < nstores; i++)
        hero_store_close(stores[i]);
    free(stores);
    stores = NULL;
    nstores = 0;
}

/* ---- configure ---- */
typedef struct configure_op {
    hero_task_t *t;
    hero_pods_instance_t *in;
    char *settings;
    char *old_settings;      /* the stored settings before this configure, or NULL */
    hero_container_rec_t *ctrs;
    size_t nctrs, next;
} configure_op_t;

static json_t *settings_of(const hs_action_t *a)
{
    json_t *j = json_object();
    static const char *const strs[] = {"bridge_name", "subnet"};
    for (size_t i = 0; i < 2; i++) {
        char *v = hero_arg_str(a, strs[i]);
        json_object_set_new(j, strs[i], json_string(v));
        free(v);
    }
    char *gw = hero_arg_str(a, "gateway_ip");
    if (!gw) {
        /* the first host of the subnet */
        char *sn = hero_arg_str(a, "subnet");
        uint32_t net;
        int len;
        if (!hero_conv_ipv4_prefix(sn, strlen(sn), &net, &len)) {
            uint32_t g = net + 1;
            gw = hero_xasprintf("%u.%u.%u.%u", g >> 24, (g >> 16) & 255, (g >> 8) & 255, g & 255);
        }
        free(sn);
    }
    json_object_set_new(j, "gateway_ip", json_string(gw ? gw : ""));
    free(gw);
    char **dns = hero_arg_list(a, "dns_servers");
    json_t *arr = json_array();
    for (char **d = dns; *d; d++)
        json_array_append_new(arr, json_string(*d));
    hero_strv_free(dns);
    json_object_set_new(j, "dns_servers", arr);
    json_object_set_new(j, "nat", json_boolean(hero_arg_bool(a, "nat")));
    json_object_set_new(j, "use_podman", json_boolean(hero_arg_bool(a, "use_podman")));
    return j;
}

/* Which network settings differ, for the error when containers exist. */
static char *network_diff(const char *old, const json_t *new_)
{
    json_t *o = json_loads(old, 0, NULL);
    static const char *const keys[] = {"bridge_name", "subnet", "gateway_ip", "dns_servers", "nat"};
    char *out = NULL;
    for (size_t i = 0; o && i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *a = json_object_get(o, keys[i]), *b = json_object_get(new_, keys[i]);
        if (json_equal(a, b))
            continue;
        char *as = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : hero_xstrdup("(none)");
        char *bs = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT) : hero_xstrdup("(none)");
        char *line = hero_xasprintf("%s%s%s: %s -> %s", out ? out : "", out ? "; " : "", keys[i],
                                    as, bs);
        free(out);
        out = line;
        free(as);
        free(bs);
    }
    json_decref(o);
    return out;
}

static void configure_op_free(configure_op_t *op)
{
    hero_container_recs_free(op->ctrs, op->nctrs);
    free(op->settings);
    free(op->old_settings);
    free(op->in->name);
    free(op->in->base_dir);
    free(op->in);
    free(op);
}

/* The old network goes when the new one is another bridge, subnet or gateway (or
 * on reset): its rules and bridge would otherwise be left behind. */
static int old_network_down(configure_op_t *op, bool reset, hero_error_t *err)
{
    if (!op->old_settings)
        return 0;
    hero_pods_net_t old = {0}, new_ = {0};
    hero_pods_net_from_settings(&old, op->old_settings);
    hero_pods_net_from_settings(&new_, op->settings);
    int rc = 0;
    if (reset || !hero_pods_net_same(&old, &new_))
        rc = hero_pods_net_instance_down(op->in, &old, err);
    hero_pods_net_clear(&old);
    hero_pods_net_clear(&new_);
    return rc;
}

/* The new network against the host, before anything is torn down or saved: its bridge
 * name must not be another instance's bridge (or no bridge), and its subnet must not
 * overlap an address of the host's (the instance's own bridges, old, which goes first,
 * and new, are no clash). */
static int network_check(const configure_op_t *op, hero_error_t *err)
{
    hero_pods_net_t old = {0}, new_ = {0};
    if (op->old_settings)
        hero_pods_net_from_settings(&old, op->old_settings);
    hero_pods_net_from_settings(&new_, op->settings);
    char *key = hero_pods_net_owner_key(op->in);
    int rc = hero_net_bridge_check(new_.bridge, key, err);
    free(key);
    if (rc == 0)
        rc = hero_net_subnet_check(new_.gateway, new_.prefix_len, new_.bridge, old.bridge, err);
    hero_pods_net_clear(&old);
    hero_pods_net_clear(&new_);
    if (rc < 0)
        return hero_error_wrap(err, "network of instance '%s'", op->in->name);
    return 0;
}

/* Saves the settings and applies the network (on success), and ends the action. */
static void configure_finish(configure_op_t *op, int rc, hero_error_t *err)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (rc == 0 && hero_store_instance_put(op->in->store, op->in->name, op->settings, &e) < 0) {
        rc = -1;
        err = &e;
    } else if (rc == 0) {
        hero_pods_instance_t *in =
            register_instance(op->in->name, op->in->base_dir, op->in->store, op->settings);
        /* checked on every configure: a missing bridge is made again, and the rules
         * are sent again unless the kernel still holds what hero last sent */
        if (hero_pods_net_instance_up(in, true, &e) < 0) {
            rc = -1;
            err = &e;
        }
    }
    hero_task_t *t = op->t;
    configure_op_free(op);
    hero_task_done(t, rc, err);
    hero_error_clear(&e);
}

static void reset_next(int rc, hero_error_t *err, void *data);

static void reset_overlay_done(int rc, hero_error_t *err, void *data)
{
    configure_finish(data, rc, err);
}

static void reset_step(configure_op_t *op)
{
    if (op->next == op->nctrs) {
        hero_error_t e = HERO_ERROR_INIT;
        if (old_network_down(op, true, &e) < 0) {
            configure_finish(op, -1, &e);
            hero_error_clear(&e);
            return;
        }
        hero_pods_overlay_reset(op->t->loop, op->in, reset_overlay_done, op);
        return;
    }
    int64_t id = op->ctrs[op->next++].id;
    hero_pods_teardown(op->t->loop, op->in, id, true, reset_next, op);
}

static void reset_next(int rc, hero_error_t *err, void *data)
{
    configure_op_t *op = data;
    if (rc < 0) {
        hero_error_wrap(err, "reset of instance '%s'", op->in->name);
        configure_finish(op, -1, err);
        return;
    }
    reset_step(op);
}

int hero_heropods_configure_start(hero_task_t *t, hero_error_t *err)
{
    const hs_action_t *a = t->action;
    char *name = hero_arg_str(a, "name");
    char *base = hero_arg_str(a, "base_dir");
    if (!base)
        base = hero_xstrdup(hero_pods_default_base_dir());
    hero_store_t *st;
    if (hero_pods_store(base, &st, err) < 0) {
        free(name);
        free(base);
        return -1;
    }
    json_t *settings = settings_of(a);
    configure_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->t = t;
    op->settings = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    /* a private instance record until the action succeeds */
    op->in = hero_xcalloc(1, sizeof(*op->in));
    op->in->name = name;
    op->in->base_dir = base;
    op->in->store = st;
    int rc = hero_store_container_list(st, name, &op->ctrs, &op->nctrs, err);
    if (rc == 0 && hero_store_instance_get(st, name, &op->old_settings, err) < 0)
        rc = -1;
    if (rc == 0)
        rc = network_check(op, err);
    if (rc == 0 && hero_arg_bool(a, "reset")) {
        json_decref(settings);
        reset_step(op);
        return 0;
    }
    if (rc == 0 && op->nctrs && op->old_settings) {
        char *diff = network_diff(op->old_settings, settings);
        if (diff) {
            rc = hero_error_set(err, 0,
                                "instance '%s' has %zu container%s and its network settings "
                                "differ (%s): delete them first, or use reset:true",
                                name, op->nctrs, op->nctrs == 1 ? "" : "s", diff);
            free(diff);
        }
    }
    if (rc == 0)
        rc = old_network_down(op, false, err);
    json_decref(settings);
    configure_finish(op, rc, err);
    return 0;
}
