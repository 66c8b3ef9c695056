/* The firewall module over libnftables, in-process: every change is one command
 * buffer, which libnftables sends as one batch, so the kernel applies all of it or
 * none of it. Never spawns `nft`. A refusal is reported as "<what hero tried>: <nft's
 * own error text> (in: <the command nft pointed at>)".
 *
 * Names that go into a command buffer (table, bridge) are checked first, so no text
 * from outside can add a command of its own. */
#include "nft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The iptables-nft chain docker drops forwarded traffic in (its policy is DROP). */
#define FWD_CHAIN "ip filter FORWARD"
/* A batch that deletes FORWARD rules by handle fails when someone else changed that
 * chain since hero listed it; listing again and retrying settles it. */
#define FWD_ATTEMPTS 3

typedef struct nft {
    struct nft_ctx *ctx;
    const char *out;  /* output of the last command (valid until the next one) */
    const char *errs; /* nft's error text for the last command, "" when none */
} nft_t;

/* ---- small helpers ---- */

/* Appends to a heap string (NULL is the empty string). */
static void cat(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cat(char **s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *more = hero_xvasprintf(fmt, ap);
    va_end(ap);
    char *all = hero_xasprintf("%s%s", *s ? *s : "", more);
    free(more);
    free(*s);
    *s = all;
}

static void ip4_str(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

static const char *proto_name(hero_nft_proto_t p)
{
    return p == HERO_NFT_UDP ? "udp" : "tcp";
}

/* Letters, digits, '_', '.', '-': what nft takes as (part of) an identifier and
 * what no quoting can be broken with. */
static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static int check_name(const char *name, size_t max, const char *role, hero_error_t *err)
{
    bool table = !strcmp(role, "table");
    if (!name || !*name)
        return hero_error_set(err, EINVAL, "the %s name is empty", role);
    if (strlen(name) > max)
        return hero_error_set(err, 0, "the %s name %s is longer than %zu characters", role,
                              name, max);
    /* a table name must start with a letter, or nft reads it as something else */
    bool ok = !table || (name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z');
    for (const char *p = name; *p && ok; p++)
        ok = name_char(*p);
    if (!ok)
        return hero_error_set(err, 0, "the %s name %s has characters hero does not use in "
                                      "firewall rules (allowed: letters, digits, _ . -)",
                              role, name);
    return 0;
}

/* ---- libnftables ---- */

static int nft_open(nft_t *n, hero_error_t *err)
{
    n->out = n->errs = "";
    n->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!n->ctx)
        return hero_error_set(err, ENOMEM, "cannot create an nftables context");
    /* nft would print to hero's stdout/stderr otherwise */
    if (nft_ctx_buffer_output(n->ctx) < 0 || nft_ctx_buffer_error(n->ctx) < 0) {
        nft_ctx_free(n->ctx);
        n->ctx = NULL;
        return hero_error_set(err, ENOMEM, "cannot buffer the output of nftables");
    }
    return 0;
}

static void nft_close(nft_t *n)
{
    if (n->ctx)
        nft_ctx_free(n->ctx);
    n->ctx = NULL;
}

/* Runs one command buffer (one transaction); json asks for JSON output with rule
 * handles. 0 or -1; n->out and n->errs hold what nft said. */
static int nft_run(nft_t *n, const char *cmds, bool json)
{
    nft_ctx_output_set_flags(n->ctx, json ? NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE : 0);
    int rc = nft_run_cmd_from_buffer(n->ctx, cmds);
    /* each getter hands back its buffer and starts a new one */
    n->out = nft_ctx_get_output_buffer(n->ctx);
    n->errs = nft_ctx_get_error_buffer(n->ctx);
    if (!n->out)
        n->out = "";
    if (!n->errs)
        n->errs = "";
    return rc == 0 ? 0 : -1;
}

/* Did the last command fail with this errno? nft says so only in words (strerror),
 * and hero never changes its locale. */
static bool nft_said(const nft_t *n, int code)
{
    return strstr(n->errs, strerror(code)) != NULL;
}

/* "what: <nft's first error> (in: <the command it points at>)". nft writes
 * "Error: text", then the command, then a line of carets under the culprit. */
static int nft_fail(hero_error_t *err, const nft_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int nft_fail(hero_error_t *err, const nft_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = hero_xvasprintf(fmt, ap);
    va_end(ap);
    const char *e = strstr(n->errs, "Error: ");
    if (!e) {
        hero_error_set(err, 0, "%s: nftables refused it%s%.200s", what, *n->errs ? ": " : "",
                       n->errs);
    } else {
        e += strlen("Error: ");
        int elen = (int)strcspn(e, "\n");
        const char *cmd = e[elen] ? e + elen + 1 : "";
        int clen = (int)strcspn(cmd, "\n");
        while (clen && (cmd[clen - 1] == ' ' || cmd[clen - 1] == '\t'))
            clen--;
        if (clen && strspn(cmd, " \t^~") < (size_t)clen)
            hero_error_set(err, 0, "%s: %.*s (in: %.*s)", what, elen, e, clen, cmd);
        else
            hero_error_set(err, 0, "%s: %.*s", what, elen, e);
    }
    free(what);
    return -1;
}

/* ---- hero's rules in the iptables-nft FORWARD chain ---- */

/* Appends to *cmds the deletion of every rule tagged "hero:<table>" in FORWARD and,
 * when `bridge` is not NULL, the insertion of fresh ones at its top. Nothing when
 * there is no such chain. */
static int fwd_rules(nft_t *n, const char *table, const char *bridge, char **cmds,
                     hero_error_t *err)
{
    if (nft_run(n, "list chain " FWD_CHAIN, true) < 0) {
        if (nft_said(n, ENOENT))
            return 0; /* no iptables-nft filter table: nothing drops our traffic there */
        return nft_fail(err, n, "cannot list the chain " FWD_CHAIN);
    }
    json_error_t jerr;
    json_t *j = json_loads(n->out, 0, &jerr);
    json_t *items = json_object_get(j, "nftables");
    if (!json_is_array(items)) {
        json_decref(j);
        return hero_error_set(err, 0, "cannot read the listing of " FWD_CHAIN " from nftables: "
                                      "%s", jerr.text[0] ? jerr.text : "no \"nftables\" array");
    }
    char tag[HERO_NFT_TABLE_MAX + 8];
    snprintf(tag, sizeof(tag), "hero:%s", table);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *rule = json_object_get(it, "rule");
        const char *comment = json_string_value(json_object_get(rule, "comment"));
        json_t *handle = json_object_get(rule, "handle");
        if (comment && !strcmp(comment, tag) && json_is_integer(handle))
            cat(cmds, "delete rule " FWD_CHAIN " handle %lld\n",
                (long long)json_integer_value(handle));
    }
    json_decref(j);
    if (bridge) {
        /* Only what iptables-nft can read back (interface names, a comment, accept):
         * a native `ct` match here makes iptables -S and iptables-save refuse the
         * whole filter table. The state checks live in hero's own forward chain,
         * whose final drop keeps everything else out. Each insert goes to the top. */
        cat(cmds, "insert rule " FWD_CHAIN " oifname \"%s\" accept comment \"%s\"\n", bridge, tag);
        cat(cmds, "insert rule " FWD_CHAIN " iifname \"%s\" accept comment \"%s\"\n", bridge, tag);
    }
    return 0;
}

/* Runs `base` plus hero's FORWARD changes as one batch, listing FORWARD again and
 * retrying when it changed under us. */
static int run_with_fwd(nft_t *n, const char *base, const char *table, const char *bridge,
                        hero_error_t *err, const char *what)
{
    for (int attempt = 1;; attempt++) {
        char *fwd = NULL;
        if (fwd_rules(n, table, bridge, &fwd, err) < 0)
            return -1;
        char *cmds = hero_xasprintf("%s%s", base, fwd ? fwd : "");
        int rc = nft_run(n, cmds, false);
        bool touched = fwd != NULL;
        free(fwd);
        free(cmds);
        if (rc == 0)
            return 0;
        if (!touched || attempt == FWD_ATTEMPTS)
            return nft_fail(err, n, "%s", what);
    }
}

/* ---- instance ---- */

void hero_nft_table_name(const char *store_uid, const char *bridge, char out[HERO_NFT_TABLE_MAX])
{
    char uid[9];
    bool end = !store_uid;
    for (int i = 0; i < 8; i++) {
        char c = end ? 0 : store_uid[i];
        if (!c)
            end = true;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            c = '0';
        uid[i] = c;
    }
    uid[8] = 0;
    int n = snprintf(out, HERO_NFT_TABLE_MAX, "hero_%s_%s", uid, bridge ? bridge : "");
    /* a character nft would not take in a name becomes '_' (bridges are checked
     * before any rule is made, so this only keeps the name printable) */
    for (int i = 14; i < n && i < HERO_NFT_TABLE_MAX - 1; i++)
        if (!name_char(out[i]))
            out[i] = '_';
}

static int write_route_localnet(const char *bridge, hero_error_t *err)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", bridge);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot open %s", path);
    ssize_t w = write(fd, "1\n", 2);
    int e = errno;
    if (close(fd) < 0 && w == 2) {
        w = -1;
        e = errno;
    }
    if (w != 2)
        return hero_error_set(err, w < 0 ? e : EIO, "cannot let bridge %s route 127.0.0.0/8 "
                                                    "(%s)", bridge, path);
    return 0;
}

int hero_nft_instance_apply(const hero_nft_instance_t *in, hero_error_t *err)
{
    if (check_name(in->table, HERO_NFT_TABLE_MAX - 1, "table", err) < 0 ||
        check_name(in->bridge, 15, "bridge", err) < 0)
        return -1;
    if (in->prefix_len < 1 || in->prefix_len > 32)
        return hero_error_set(err, 0, "prefix length %d is not between 1 and 32", in->prefix_len);
    const char *t = in->table, *br = in->bridge;
    char net[16];
    ip4_str(in->subnet & (0xffffffffu << (32 - in->prefix_len)), net);

    /* `add` of a table, chain or map that exists is a no-op and keeps its content,
     * so the map's published ports survive; the chains are flushed and refilled,
     * which makes a second apply leave one copy of each rule. */
    char *c = NULL;
    cat(&c, "add table ip %s\n", t);
    cat(&c, "add chain ip %s forward { type filter hook forward priority filter; }\n", t);
    cat(&c, "add chain ip %s postrouting { type nat hook postrouting priority srcnat; }\n", t);
    cat(&c, "add chain ip %s prerouting { type nat hook prerouting priority dstnat; }\n", t);
    cat(&c, "add chain ip %s output { type nat hook output priority -100; }\n", t);
    cat(&c, "add map ip %s ports { type inet_proto . inet_service : "
            "ipv4_addr . inet_service; }\n", t);
    cat(&c, "flush chain ip %s forward\nflush chain ip %s postrouting\n"
            "flush chain ip %s prerouting\nflush chain ip %s output\n", t, t, t, t);

    /* An accept in one base chain does not spare a packet a drop in another, so this
     * chain is what keeps the containers closed: out of the bridge goes only what
     * answers them or what a published port DNAT'd; into the bridge, everything. */
    cat(&c, "add rule ip %s forward iifname \"%s\" accept\n", t, br);
    cat(&c, "add rule ip %s forward oifname \"%s\" ct state established,related accept\n", t, br);
    cat(&c, "add rule ip %s forward oifname \"%s\" ct status dnat accept\n", t, br);
    cat(&c, "add rule ip %s forward oifname \"%s\" drop\n", t, br);

    if (in->nat)
        cat(&c, "add rule ip %s postrouting ip saddr %s/%d oifname != \"%s\" masquerade\n", t,
            net, in->prefix_len, br);
    /* A published port reached from 127.0.0.1 (source not routable on the bridge)
     * or from a container of this bridge (the answer would go straight back, not
     * through the DNAT): the container must see the gateway as the source. */
    cat(&c, "add rule ip %s postrouting oifname \"%s\" ct status dnat "
            "ip saddr { 127.0.0.0/8, %s/%d } masquerade\n", t, br, net, in->prefix_len);

    /* Published ports: for the host's own addresses only, arriving (prerouting)
     * or made on this host (output). */
    cat(&c, "add rule ip %s prerouting fib daddr type local "
            "dnat ip to meta l4proto . th dport map @ports\n", t);
    cat(&c, "add rule ip %s output fib daddr type local "
            "dnat ip to meta l4proto . th dport map @ports\n", t);

    nft_t n;
    if (nft_open(&n, err) < 0) {
        free(c);
        return -1;
    }
    char *what = hero_xasprintf("cannot set up the firewall rules of bridge %s (table ip %s)",
                                br, t);
    int rc = run_with_fwd(&n, c, t, br, err, what);
    free(what);
    nft_close(&n);
    free(c);
    if (rc == 0)
        rc = write_route_localnet(br, err);
    return rc;
}

int hero_nft_instance_remove(const char *table, hero_error_t *err)
{
    if (check_name(table, HERO_NFT_TABLE_MAX - 1, "table", err) < 0)
        return -1;
    /* `delete` of a missing table fails; adding it first makes "missing" fine */
    char *c = hero_xasprintf("add table ip %s\ndelete table ip %s\n", table, table);
    nft_t n;
    int rc = -1;
    if (nft_open(&n, err) == 0) {
        char what[HERO_NFT_TABLE_MAX + 48];
        snprintf(what, sizeof(what), "cannot remove the firewall table ip %s", table);
        rc = run_with_fwd(&n, c, table, NULL, err, what);
        nft_close(&n);
    }
    free(c);
    return rc;
}

/* ---- published ports ---- */

/* A decimal port 1..65535 of exactly len characters. */
static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

int hero_nft_port_parse(const char *text, hero_nft_port_t *p, hero_error_t *err)
{
    *p = (hero_nft_port_t){.proto = HERO_NFT_TCP};
    const char *colon = text ? strchr(text, ':') : NULL;
    if (!colon)
        return hero_error_set(err, 0, "port \"%s\" is not HOST:CONTAINER[/tcp|/udp]",
                              text ? text : "");
    const char *slash = strchr(colon, '/');
    size_t clen = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
    if (!parse_port(text, (size_t)(colon - text), &p->host_port) ||
        !parse_port(colon + 1, clen, &p->ctr_port))
        return hero_error_set(err, 0, "port \"%s\" is not HOST:CONTAINER[/tcp|/udp] with ports "
                                      "from 1 to 65535", text);
    if (slash) {
        if (!strcmp(slash + 1, "udp"))
            p->proto = HERO_NFT_UDP;
        else if (strcmp(slash + 1, "tcp") != 0)
            return hero_error_set(err, 0, "port \"%s\": the protocol must be tcp or udp", text);
    }
    return 0;
}

int hero_nft_port_check_free(hero_nft_proto_t proto, uint16_t port, hero_error_t *err)
{
    int fd = socket(AF_INET, (proto == HERO_NFT_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot open a socket to test host port %u/%s", port,
                              proto_name(proto));
    /* no SO_REUSEADDR: any socket on the port, on any address, makes bind fail */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    if (e == EADDRINUSE)
        return hero_error_set(err, 0, "host port %u/%s is already in use on this host", port,
                              proto_name(proto));
    return hero_error_set(err, e, "cannot test whether host port %u/%s is free", port,
                          proto_name(proto));
}

int hero_nft_port_add(const char *table, const hero_nft_port_t *p, hero_error_t *err)
{
    if (check_name(table, HERO_NFT_TABLE_MAX - 1, "table", err) < 0)
        return -1;
    if (!p->host_port || !p->ctr_port || (p->proto != HERO_NFT_TCP && p->proto != HERO_NFT_UDP))
        return hero_error_set(err, EINVAL, "cannot publish port %u:%u of protocol %d",
                              p->host_port, p->ctr_port, (int)p->proto);
    const char *pn = proto_name(p->proto);
    char a[16];
    ip4_str(p->addr, a);
    char *add = hero_xasprintf("add element ip %s ports { %s . %u : %s . %u }\n", table, pn,
                               p->host_port, a, p->ctr_port);
    nft_t n;
    if (nft_open(&n, err) < 0) {
        free(add);
        return -1;
    }
    /* The usual case (a new port, or the same value again) is one transaction. An
     * element of that key with another value makes `add` fail with EEXIST (the
     * kernel refuses to change a value in place), and `delete` of a missing one
     * fails: so only then delete and add, together. */
    int rc = nft_run(&n, add, false);
    if (rc < 0 && nft_said(&n, EEXIST)) {
        char *swap = hero_xasprintf("delete element ip %s ports { %s . %u }\n%s", table, pn,
                                    p->host_port, add);
        rc = nft_run(&n, swap, false);
        free(swap);
    }
    if (rc < 0)
        nft_fail(err, &n, "cannot publish host port %u/%s on %s:%u (table ip %s)", p->host_port,
                 pn, a, p->ctr_port, table);
    nft_close(&n);
    free(add);
    return rc;
}

int hero_nft_port_del(const char *table, hero_nft_proto_t proto, uint16_t host_port,
                      hero_error_t *err)
{
    if (check_name(table, HERO_NFT_TABLE_MAX - 1, "table", err) < 0)
        return -1;
    char *del = hero_xasprintf("delete element ip %s ports { %s . %u }\n", table,
                               proto_name(proto), host_port);
    nft_t n;
    int rc = -1;
    if (nft_open(&n, err) == 0) {
        rc = nft_run(&n, del, false);
        /* no element, map or table: the port is not published, which was the point */
        if (rc < 0 && nft_said(&n, ENOENT))
            rc = 0;
        if (rc < 0)
            nft_fail(err, &n, "cannot unpublish host port %u/%s (table ip %s)", host_port,
                     proto_name(proto), table);
        nft_close(&n);
    }
    free(del);
    return rc;
}

void hero_nft_port_ref(const char *table, hero_nft_proto_t proto, uint16_t host_port,
                       char out[HERO_NFT_TABLE_MAX + 16])
{
    snprintf(out, HERO_NFT_TABLE_MAX + 16, "%s %s %u", table, proto_name(proto), host_port);
}

int hero_nft_port_ref_parse(const char *ref, char table[HERO_NFT_TABLE_MAX],
                            hero_nft_proto_t *proto, uint16_t *host_port)
{
    const char *sp1 = ref ? strchr(ref, ' ') : NULL;
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2 || sp1 == ref || sp1 - ref >= HERO_NFT_TABLE_MAX)
        return -1;
    hero_nft_proto_t pr;
    if (sp2 - sp1 == 4 && !strncmp(sp1 + 1, "tcp", 3))
        pr = HERO_NFT_TCP;
    else if (sp2 - sp1 == 4 && !strncmp(sp1 + 1, "udp", 3))
        pr = HERO_NFT_UDP;
    else
        return -1;
    uint16_t port;
    if (!parse_port(sp2 + 1, strlen(sp2 + 1), &port))
        return -1;
    memcpy(table, ref, (size_t)(sp1 - ref));
    table[sp1 - ref] = 0;
    *proto = pr;
    *host_port = port;
    return 0;
}
