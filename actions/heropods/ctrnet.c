/* The network of instances and containers: the glue between the container actions
 * and the net (netlink) and nft (nftables) modules. Everything made on the host for
 * one container (its veth, its published ports) is recorded in the store before it
 * is made, so teardown and a rerun after a killed hero can undo it. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions/actions.h"
#include "net.h"
#include "nft.h"
#include "pods.h"
#include "runtime/fs.h"

static void table_of(const hero_pods_instance_t *in, char out[HERO_NFT_TABLE_MAX])
{
    hero_nft_table_name(hero_store_uid(in->store), in->net.bridge, out);
}

static void ip_str(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

void hero_pods_net_from_settings(hero_pods_net_t *n, const char *settings)
{
    free(n->bridge);
    *n = (hero_pods_net_t){0};
    json_t *j = json_loads(settings ? settings : "{}", 0, NULL);
    const char *br = json_string_value(json_object_get(j, "bridge_name"));
    const char *sn = json_string_value(json_object_get(j, "subnet"));
    const char *gw = json_string_value(json_object_get(j, "gateway_ip"));
    n->bridge = hero_xstrdup(br ? br : "heropods0");
    if (!sn || hero_conv_ipv4_prefix(sn, strlen(sn), &n->subnet, &n->prefix_len)) {
        n->subnet = 0x0a0a0000;
        n->prefix_len = 24;
    }
    if (!gw || hero_conv_ipv4(gw, strlen(gw), &n->gateway))
        n->gateway = n->subnet + 1;
    json_t *nat = json_object_get(j, "nat");
    n->nat = nat ? json_is_true(nat) : true;
    json_decref(j);
}

void hero_pods_net_clear(hero_pods_net_t *n)
{
    free(n->bridge);
    *n = (hero_pods_net_t){0};
}

bool hero_pods_net_same(const hero_pods_net_t *a, const hero_pods_net_t *b)
{
    return strcmp(a->bridge, b->bridge) == 0 && a->subnet == b->subnet &&
           a->prefix_len == b->prefix_len && a->gateway == b->gateway;
}

char *hero_pods_net_owner_key(const hero_pods_instance_t *in)
{
    return hero_xasprintf(HERO_NET_OWNER_PREFIX "store %s instance '%s'",
                          hero_store_uid(in->store), in->name);
}

int hero_pods_net_instance_up(hero_pods_instance_t *in, bool again, hero_error_t *err)
{
    if (in->net_ready && !again)
        return 0;
    char table[HERO_NFT_TABLE_MAX];
    table_of(in, table);
    hero_nft_instance_t ni = {.table = table,
                              .bridge = in->net.bridge,
                              .subnet = in->net.subnet,
                              .prefix_len = in->net.prefix_len,
                              .nat = in->net.nat};
    /* who owns the bridge: this store (its uid, whatever path it was opened by) and
     * the instance; the base dir after them is for people reading `ip -d link` */
    char *key = hero_pods_net_owner_key(in);
    char *text = hero_xasprintf("%s of %s", key, in->base_dir);
    int rc = hero_net_bridge_ensure(in->net.bridge, in->net.gateway, in->net.prefix_len, key,
                                    text, err);
    free(key);
    free(text);
    if (rc < 0 || hero_net_ipv4_forwarding(err) < 0 ||
        hero_nft_instance_ensure(&ni, in->store, err) < 0)
        return hero_error_wrap(err, "network of instance '%s'", in->name);
    in->net_ready = true;
    return 0;
}

int hero_pods_net_instance_down(const hero_pods_instance_t *in, const hero_pods_net_t *net,
                                hero_error_t *err)
{
    char table[HERO_NFT_TABLE_MAX];
    hero_nft_table_name(hero_store_uid(in->store), net->bridge, table);
    if (hero_nft_instance_remove(table, err) < 0 || hero_net_bridge_delete(net->bridge, err) < 0)
        return hero_error_wrap(err, "removing the network of instance '%s'", in->name);
    return 0;
}

int hero_pods_net_lease(hero_pods_instance_t *in, int64_t id, uint32_t *addr, hero_error_t *err)
{
    return hero_store_lease_ipv4(in->store, in->name, in->net.subnet, in->net.prefix_len,
                                 in->net.gateway, id, addr, err);
}

/* Which container of the store publishes proto/port, other than `self`: its name in
 * *who (caller frees), or NULL. */
static int port_owner(hero_store_t *s, int64_t self, hero_nft_proto_t proto, uint16_t port,
                      char **who, hero_error_t *err)
{
    hero_container_rec_t *v = NULL;
    size_t n = 0;
    *who = NULL;
    if (hero_store_container_list(s, NULL, &v, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !*who && rc == 0; i++) {
        if (v[i].id == self)
            continue;
        hero_hostobj_t *o = NULL;
        size_t no = 0;
        rc = hero_store_hostobj_list(s, v[i].id, &o, &no, err);
        for (size_t k = 0; rc == 0 && k < no && !*who; k++) {
            char table[HERO_NFT_TABLE_MAX];
            hero_nft_proto_t p;
            uint16_t hp;
            if (o[k].kind == HERO_OBJ_RULE && !hero_nft_port_ref_parse(o[k].ref, table, &p, &hp) &&
                p == proto && hp == port)
                *who = hero_xasprintf("'%s' (instance '%s')", v[i].name, v[i].instance);
        }
        hero_hostobjs_free(o, no);
    }
    hero_container_recs_free(v, n);
    return rc;
}

static int port_claim(hero_pods_instance_t *in, int64_t id, const char *table, const char *port,
                      hero_error_t *err)
{
    hero_nft_port_t pp;
    if (hero_nft_port_parse(port, &pp, err) < 0)
        return -1;
    const char *pn = pp.proto == HERO_NFT_UDP ? "udp" : "tcp";
    char *who = NULL;
    if (port_owner(in->store, id, pp.proto, pp.host_port, &who, err) < 0)
        return -1;
    if (who) {
        hero_error_set(err, 0, "host port %u/%s is already published by container %s",
                       pp.host_port, pn, who);
        free(who);
        return -1;
    }
    /* a port this container publishes already (a rerun after a killed hero) has no
     * socket behind it, so the bind test below still answers for the host */
    if (hero_nft_port_check_free(pp.proto, pp.host_port, err) < 0)
        return -1;
    char ref[HERO_NFT_TABLE_MAX + 16];
    hero_nft_port_ref(table, pp.proto, pp.host_port, ref);
    return hero_store_hostobj_add(in->store, id, HERO_OBJ_RULE, ref, err);
}

int hero_pods_net_ports_check(hero_pods_instance_t *in, int64_t id, char **ports,
                              hero_error_t *err)
{
    if (!ports || !*ports)
        return 0;
    char table[HERO_NFT_TABLE_MAX];
    table_of(in, table);
    /* BEGIN IMMEDIATE: no other start can check or claim between our check and claim */
    if (hero_store_begin(in->store, err) < 0)
        return -1;
    for (char **p = ports; *p; p++)
        if (port_claim(in, id, table, *p, err) < 0) {
            hero_store_rollback(in->store);
            return -1;
        }
    return hero_store_commit(in->store, err);
}

int hero_pods_net_ctr_up(hero_pods_instance_t *in, int64_t id, int pid, uint32_t addr,
                         char **ports, hero_error_t *err)
{
    char host[16];
    hero_net_host_name(hero_store_uid(in->store), id, host);
    /* a link of this name is ours from an earlier start that was cut short */
    if (hero_store_hostobj_add(in->store, id, HERO_OBJ_LINK, host, err) < 0 ||
        hero_net_link_delete(host, err) < 0 ||
        hero_net_veth_attach(pid, host, in->net.bridge, addr, in->net.prefix_len,
                             in->net.gateway, err) < 0)
        return -1;
    char table[HERO_NFT_TABLE_MAX];
    table_of(in, table);
    for (char **p = ports; p && *p; p++) {
        hero_nft_port_t pp;
        if (hero_nft_port_parse(*p, &pp, err) < 0)
            return -1;
        pp.addr = addr;
        char ref[HERO_NFT_TABLE_MAX + 16];
        hero_nft_port_ref(table, pp.proto, pp.host_port, ref);
        if (hero_store_hostobj_add(in->store, id, HERO_OBJ_RULE, ref, err) < 0 ||
            hero_nft_port_add(table, &pp, err) < 0)
            return hero_error_wrap(err, "publishing port %s", *p);
    }
    return hero_pods_overlay_ctr_up(in, id, pid, err);
}

int hero_pods_net_undo(const hero_hostobj_t *o, hero_error_t *err)
{
    if (o->kind == HERO_OBJ_LINK)
        return hero_net_link_delete(o->ref, err);
    if (o->kind == HERO_OBJ_RULE) {
        char table[HERO_NFT_TABLE_MAX];
        hero_nft_proto_t p;
        uint16_t port;
        if (hero_nft_port_ref_parse(o->ref, table, &p, &port) < 0)
            return 0; /* not a rule of a kind this hero knows: nothing to undo */
        return hero_nft_port_del(table, p, port, err);
    }
    return 0;
}

int hero_pods_net_ctr_down(hero_pods_instance_t *in, int64_t id, bool ns_gone, hero_error_t *err)
{
    hero_hostobj_t *o = NULL;
    size_t n = 0;
    if (hero_store_hostobj_list(in->store, id, &o, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (o[i].kind != HERO_OBJ_LINK && o[i].kind != HERO_OBJ_RULE)
            continue;
        /* a veth pair goes with the namespace of either end: when the container's is
         * gone, the kernel removes the pair by itself, and deleting it here would only
         * wait (some 15 ms) for the kernel's RCU grace periods */
        bool kernel_does_it = ns_gone && o[i].kind == HERO_OBJ_LINK;
        if ((!kernel_does_it && hero_pods_net_undo(&o[i], err) < 0) ||
            hero_store_hostobj_del(in->store, id, o[i].kind, o[i].ref, err) < 0)
            rc = -1;
    }
    hero_hostobjs_free(o, n);
    return rc;
}

/* ---- /etc/hosts ---- */

static char *hostname_of(const hero_container_rec_t *r)
{
    json_t *j = json_loads(r->spec ? r->spec : "{}", 0, NULL);
    const char *h = json_string_value(json_object_get(j, "hostname"));
    char *out = hero_xstrdup(h && *h ? h : r->name);
    json_decref(j);
    return out;
}

int hero_pods_hosts_update(hero_pods_instance_t *in, hero_error_t *err)
{
    /* two hero processes must not interleave read-the-store and write-the-files,
     * or the slower one writes an older list last */
    char *lockp = hero_xasprintf("%s/hosts.lock", in->base_dir);
    int lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0) {
        hero_error_set(err, errno, "cannot open '%s'", lockp);
        free(lockp);
        return -1;
    }
    free(lockp);
    while (flock(lock, LOCK_EX) < 0 && errno == EINTR)
        ;
    hero_container_rec_t *v = NULL;
    size_t n = 0;
    int rc = hero_store_container_list(in->store, in->name, &v, &n, err);
    uint32_t *addr = hero_xcalloc(n + 1, sizeof(*addr));
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int g = hero_store_lease_get(in->store, in->name, v[i].id, &addr[i], err);
        if (g < 0)
            rc = -1;
        else if (g == 1)
            addr[i] = 0;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *dir = hero_pods_ctr_dir(in, v[i].id);
        char *etc = hero_xasprintf("%s/etc", dir);
        struct stat st;
        if (stat(etc, &st) == 0) {
            /* the container's own line first: its hostname (and name) at its address */
            char ip[16] = "127.0.1.1";
            if (addr[i])
                ip_str(addr[i], ip);
            char *hn = hostname_of(&v[i]);
            bool same = strcmp(hn, v[i].name) == 0;
            char *text = hero_xasprintf(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "%s\t%s%s%s\n# the other containers of instance '%s'\n",
                ip, hn, same ? "" : " ", same ? "" : v[i].name, in->name);
            for (size_t k = 0; k < n; k++) {
                if (k == i || !addr[k])
                    continue;
                ip_str(addr[k], ip);
                char *more = hero_xasprintf("%s%s\t%s\n", text, ip, v[k].name);
                free(text);
                text = more;
            }
            char *path = hero_xasprintf("%s/hosts", etc);
            /* in place: the file is bind-mounted into the running container */
            rc = hero_fs_write_file(path, text, strlen(text), err);
            free(path);
            free(text);
            free(hn);
        }
        free(etc);
        free(dir);
    }
    free(addr);
    hero_container_recs_free(v, n);
    close(lock); /* drops the lock */
    return rc;
}
