/* `hero pods overlay`: the overlay node of each instance that has one (what
 * enable_mycelium / enable_yggdrasil saved) and, asked live, its peers and their
 * state: mycelium through its HTTP API, yggdrasil through yggdrasilctl. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "actions/actions.h"
#include "pods.h"
#include "runtime/http.h"
#include "runtime/proc.h"

typedef struct ask {
    json_t *answer;     /* the parsed reply, or NULL */
    char *error;        /* why there is none */
} ask_t;

static void http_done(hero_http_req_t *req, const hero_http_resp_t *resp, void *data)
{
    (void)req;
    ask_t *a = data;
    if (resp->status == 200)
        a->answer = json_loads(resp->body, 0, NULL);
    if (!a->answer)
        a->error = resp->status ? hero_xasprintf("HTTP %ld", resp->status)
                                : hero_xstrdup(resp->error ? resp->error : "no answer");
}

static void proc_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    ask_t *a = data;
    if (!r->term_signal && r->exit_status == 0)
        a->answer = json_loads(r->out, 0, NULL);
    if (!a->answer) {
        const char *why = r->err_len ? r->err : "no answer";
        a->error = hero_xstrndup(why, strcspn(why, "\n"));
    }
}

/* The daemon's peers as [{"endpoint","type","state"}], or NULL with a->error. */
static json_t *peers_of(const char *kind, const char *api, ask_t *a)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    hero_error_t e = HERO_ERROR_INIT;
    if (!strcmp(kind, "mycelium")) {
        hero_http_t *h = NULL;
        char *url = hero_xasprintf("http://%s/api/v1/admin/peers", api);
        hero_http_opts_t o = {.url = url, .connect_timeout_ms = 2000, .timeout_ms = 5000};
        if (hero_http_new(&loop, &h, &e) == 0 && hero_http_start(h, &o, http_done, a, NULL, &e) == 0)
            uv_run(&loop, UV_RUN_DEFAULT);
        free(url);
        hero_http_close(h);
    } else {
        const char *argv[] = {"yggdrasilctl", "-json", "-endpoint", api, "getPeers", NULL};
        hero_proc_opts_t o = {.argv = argv, .timeout_ms = 5000, .capture_cap = 1 << 20};
        if (hero_proc_spawn(&loop, &o, proc_done, a, NULL, &e) == 0)
            uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* the close callbacks */
    uv_loop_close(&loop);
    if (e.msg && !a->error)
        a->error = hero_xstrdup(e.msg);
    hero_error_clear(&e);
    if (!a->answer)
        return NULL;
    json_t *out = json_array(), *list = a->answer, *p;
    size_t i;
    if (!strcmp(kind, "yggdrasil"))
        list = json_object_get(a->answer, "peers");
    json_array_foreach(list, i, p)
    {
        json_t *ep = json_object_get(p, "endpoint");
        char *endpoint;
        if (json_is_object(ep))
            endpoint = hero_xasprintf("%s://%s",
                                      json_string_value(json_object_get(ep, "proto")) ?: "?",
                                      json_string_value(json_object_get(ep, "socketAddr")) ?: "?");
        else
            endpoint = hero_xstrdup(json_string_value(json_object_get(p, "remote"))
                                        ?: json_string_value(ep) ?: "?");
        const char *state = json_string_value(json_object_get(p, "connectionState"));
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!state)
            state = json_is_true(json_object_get(p, "up")) ? "up" : "connected";
        if (!type)
            type = json_is_true(json_object_get(p, "inbound")) ? "inbound" : "outbound";
        json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "endpoint", endpoint, "type", type,
                                             "state", state));
        free(endpoint);
    }
    return out;
}

int hero_pods_cli_overlay(hero_store_t *store, const char *instance, bool as_json)
{
    char **keys = NULL, **vals = NULL;
    size_t n = 0;
    hero_error_t e = HERO_ERROR_INIT;
    if (store && hero_store_meta_list(store, "overlay.", &keys, &vals, &n, &e) < 0) {
        fprintf(stderr, "hero pods: %s\n", e.msg);
        hero_error_clear(&e);
        return 1;
    }
    json_t *all = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *name = keys[i] + strlen("overlay.");
        if (instance && strcmp(instance, name) != 0)
            continue;
        json_t *j = json_loads(vals[i], 0, NULL);
        if (!j)
            continue;
        json_object_set_new(j, "instance", json_string(name));
        json_t *d = json_object_get(j, "daemon");
        if (d) {
            int pid = (int)json_integer_value(json_object_get(d, "pid"));
            bool alive = hero_pods_proc_is(pid, json_integer_value(json_object_get(d, "start")));
            json_object_set_new(d, "running", json_boolean(alive));
        }
        ask_t a = {0};
        json_t *peers = peers_of(json_string_value(json_object_get(j, "kind")) ?: "",
                                 json_string_value(json_object_get(j, "api")) ?: "", &a);
        json_object_set_new(j, "peers", peers ? peers : json_null());
        json_object_set_new(j, "daemon_error", a.error ? json_string(a.error) : json_null());
        json_decref(a.answer);
        free(a.error);
        json_array_append_new(all, j);
    }
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    free(keys);
    free(vals);
    if (as_json) {
        char *s = json_dumps(all, JSON_INDENT(2));
        puts(s);
        free(s);
    } else if (json_array_size(all) == 0) {
        puts("no instance has an overlay (enable_mycelium or enable_yggdrasil)");
    }
    size_t i;
    json_t *j;
    json_array_foreach(all, i, j)
    {
        if (as_json)
            break;
        const char *g = NULL;
        printf("%sinstance %s: %s\n", i ? "\n" : "", json_string_value(json_object_get(j, "instance")),
               json_string_value(json_object_get(j, "kind")));
        printf("  node      %s\n", json_string_value(json_object_get(j, "node")));
        printf("  subnet    %s (containers' addresses)\n", json_string_value(json_object_get(j, "subnet")));
        printf("  routes    %s into each container\n", json_string_value(json_object_get(j, "range")));
        json_t *d = json_object_get(j, "daemon");
        printf("  daemon    %s", json_string_value(json_object_get(j, "api")));
        if (d)
            printf(" (started by hero: pid %lld, %s; log %s)",
                   (long long)json_integer_value(json_object_get(d, "pid")),
                   json_is_true(json_object_get(d, "running")) ? "running" : "gone",
                   json_string_value(json_object_get(d, "log")));
        putchar('\n');
        json_t *peers = json_object_get(j, "peers");
        if ((g = json_string_value(json_object_get(j, "daemon_error"))))
            printf("  peers     unknown: the daemon does not answer (%s)\n", g);
        else if (json_array_size(peers) == 0)
            printf("  peers     none\n");
        size_t k;
        json_t *p;
        json_array_foreach(peers, k, p)
            printf("  %s %-32s %-10s %s\n", k ? "         " : "peers    ",
                   json_string_value(json_object_get(p, "endpoint")),
                   json_string_value(json_object_get(p, "state")),
                   json_string_value(json_object_get(p, "type")));
    }
    json_decref(all);
    return 0;
}
