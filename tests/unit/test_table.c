/* Invariants of the dispatch table that the compiler cannot check. */
#include <stdlib.h>
#include <string.h>

#include "actions/actions.h"
#include "tap.h"

static bool default_converts(const hero_param_def_t *p)
{
    const char *s = p->def;
    size_t n = strlen(s);
    switch (p->type) {
    case HERO_T_BOOL: { bool v; return !hero_conv_bool(s, n, &v); }
    case HERO_T_INT: { int64_t v; return !hero_conv_int(s, n, &v); }
    case HERO_T_FLOAT: { double v; return !hero_conv_float(s, n, &v); }
    case HERO_T_SIZE: { uint64_t v; return !hero_conv_size(s, n, &v); }
    case HERO_T_DURATION: { int64_t v; return !hero_conv_duration(s, n, &v); }
    case HERO_T_IPV4_ADDR: { uint32_t v; return !hero_conv_ipv4(s, n, &v); }
    case HERO_T_IPV4_PREFIX: { uint32_t v; int l; return !hero_conv_ipv4_prefix(s, n, &v, &l); }
    default: return true;
    }
}

int main(void)
{
    char what[256];
    for (size_t i = 0; i < hero_action_count; i++) {
        const hero_action_def_t *d = &hero_action_table[i];
        snprintf(what, sizeof(what), "%s.%s: at most 64 parameters", d->actor, d->name);
        TAP_OK(d->nparams <= 64, what);
        snprintf(what, sizeof(what), "%s.%s: found by its name", d->actor, d->name);
        TAP_OK(hero_action_find(d->actor, strlen(d->actor), d->name, strlen(d->name)) == d, what);
        bool unique = true, defaults = true, docs = d->doc && *d->doc;
        for (size_t k = 0; k < d->nparams; k++) {
            const hero_param_def_t *p = &d->params[k];
            for (size_t j = 0; j < k; j++)
                unique &= strcasecmp(p->name, d->params[j].name) != 0;
            if (p->def)
                defaults &= default_converts(p);
            docs &= p->doc && *p->doc;
            if (p->required && (p->def || p->defdoc))
                defaults = false;
        }
        snprintf(what, sizeof(what), "%s.%s: parameter names unique", d->actor, d->name);
        TAP_OK(unique, what);
        snprintf(what, sizeof(what), "%s.%s: defaults convert to their types; required ones have none",
                 d->actor, d->name);
        TAP_OK(defaults, what);
        snprintf(what, sizeof(what), "%s.%s: action and parameters documented", d->actor, d->name);
        TAP_OK(docs, what);
        if (d->positional) {
            snprintf(what, sizeof(what), "%s.%s: positional parameter exists", d->actor, d->name);
            TAP_OK(hero_param_find(d, d->positional, strlen(d->positional)) != NULL, what);
        }
        if (strcmp(d->actor, "heropods") == 0 && strcmp(d->name, "configure") != 0) {
            snprintf(what, sizeof(what), "%s.%s: takes heropods:", d->actor, d->name);
            TAP_OK(hero_param_find(d, "heropods", 8) != NULL, what);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(hero_action_table[j].actor, d->actor) && !strcmp(hero_action_table[j].name, d->name)) {
                snprintf(what, sizeof(what), "%s.%s: listed once", d->actor, d->name);
                TAP_OK(0, what);
            }
    }
    /* every action and parameter of ../shared/heropods-actions.md is registered */
    static const char *const spec[][2] = {
        {"configure", "name,reset,use_podman,base_dir,bridge_name,subnet,gateway_ip,dns_servers,nat"},
        {"enable_mycelium", "version,ipv6_range,key_path,peers,api_addr,tun_name"},
        {"enable_yggdrasil", "listen,peers,multicast,key_path"},
        {"container_new", "name,image,custom_image_name,docker_url,reset,memory,cpus,pids_limit,env,"
                          "mounts,workdir,user,hostname,cap_add,cap_drop,entrypoint,cmd,ports"},
        {"container_start", "name,keep_alive,timeout"},
        {"container_exec", "name,cmd,args,stdout,timeout,env,workdir,user,ignore_error"},
        {"container_stop", "name,timeout"},
        {"container_delete", "name"},
        {"image_pull", "name,ref,reset,platform"},
        {"image_import", "source_path,name,reset"},
        {"image_export", "name,dest_path,compress_level"},
        {"image_delete", "name"},
    };
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        const hero_action_def_t *d = hero_action_find("heropods", 8, spec[i][0], strlen(spec[i][0]));
        snprintf(what, sizeof(what), "heropods.%s is registered", spec[i][0]);
        TAP_OK(d != NULL, what);
        if (!d)
            continue;
        char *list = strdup(spec[i][1]), *save = NULL;
        for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            snprintf(what, sizeof(what), "heropods.%s takes %s", spec[i][0], p);
            TAP_OK(hero_param_find(d, p, strlen(p)) != NULL, what);
        }
        free(list);
    }
    return tap_done();
}
