/* The firewall module over libnftables, in-process: every change is one command
 * buffer, which libnftables sends as one batch, so the kernel applies all of it or
 * none of it. Never spawns `nft`. A refusal is reported as "<what hero tried>: <nft's
 * own error text> (in: <the command nft pointed at>)".
 *
 * Names that go into a command buffer (table, bridge) are checked first, so no text
 * from outside can add a command of its own.
 *
 * libnftables is loaded on first use (runtime/lazylib.c): a configure that finds its
 * rules in place (hero_nft_instance_ensure) needs none of it. A context is made per
 * change, so each talks to the network namespace the thread is in at that moment. */
#include "nft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

/* Appends to *cmds the deletion of every rule tagged `tag` in `chain` (a FORWARD
 * chain of iptables-nft: "ip filter FORWARD" or "ip6 filter FORWARD") and, for each
 * interface name (nft's `*` wildcard allowed) of the NULL-terminated `ifnames` (NULL:
 * none), the insertion of fresh accept rules at its top. Nothing when there is no
 * such chain. */
static int fwd_rules(nft_t *n, const char *chain, const char *tag, const char *const *ifnames,
                     char **cmds, hero_error_t *err)
{
    char *list = hero_xasprintf("list chain %s", chain);
    int r = nft_run(n, list, true);
    free(list);
    if (r < 0) {
        if (nft_said(n, ENOENT))
            return 0; /* no iptables-nft filter table: nothing drops our traffic there */
        return nft_fail(err, n, "cannot list the chain %s", chain);
    }
    json_error_t jerr;
    json_t *j = json_loads(n->out, 0, &jerr);
    json_t *items = json_object_get(j, "nftables");
    if (!json_is_array(items)) {
        json_decref(j);
        return hero_error_set(err, 0, "cannot read the listing of %s from nftables: %s", chain,
                              jerr.text[0] ? jerr.text : "no \"nftables\" array");
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *rule = json_object_get(it, "rule");
        const char *comment = json_string_value(json_object_get(rule, "comment"));
        json_t *handle = json_object_get(rule, "handle");
        if (comment && !strcmp(comment, tag) && json_is_integer(handle))
            cat(cmds, "delete rule %s handle %lld\n", chain,
                (long long)json_integer_value(handle));
    }
    json_decref(j);
    /* Only what iptables-nft can read back (interface names, a comment, accept): a
     * native `ct` match here makes iptables -S and iptables-save refuse the whole
     * filter table. The state checks live in hero's own forward chain, whose final
     * drop keeps everything else out. Each insert goes to the top. */
    for (const char *const *f = ifnames; f && *f; f++) {
        cat(cmds, "insert rule %s oifname \"%s\" accept comment \"%s\"\n", chain, *f, tag);
        cat(cmds, "insert rule %s iifname \"%s\" accept comment \"%s\"\n", chain, *f, tag);
    }
    return 0;
}

/* Runs `base` plus hero's changes to `chain` (see fwd_rules) as one batch, listing
 * the chain again and retrying when it changed under us. */
static int run_with_fwd(nft_t *n, const char *base, const char *chain, const char *tag,
                        const char *const *ifnames, hero_error_t *err, const char *what)
{
    for (int attempt = 1;; attempt++) {
        char *fwd = NULL;
        if (fwd_rules(n, chain, tag, ifnames, &fwd, err) < 0)
            return -1;
        char *cmds = hero_xasprintf("%s%s", base, fwd ? fwd : "");
        int rc = cmds[0] ? nft_run(n, cmds, false) : 0;
        bool touched = fwd != NULL;
        free(fwd);
        free(cmds);
        if (rc == 0)
            return 0;
        if (!touched || attempt == FWD_ATTEMPTS)
            return nft_fail(err, n, "%s", what);
    }
}

/* The tag of an instance's FORWARD rules: "hero:<table>". */
static void fwd_tag(const char *table, char out[HERO_NFT_TABLE_MAX + 8])
{
    snprintf(out, HERO_NFT_TABLE_MAX + 8, "hero:%s", table);
}

int hero_nft_overlay_forward(hero_error_t *err)
{
    static const char *const links[] = {"vmyh-*", "vygh-*", NULL};
    nft_t n;
    if (nft_open(&n, err) < 0)
        return -1;
    int rc = run_with_fwd(&n, "", "ip6 filter FORWARD", "hero:overlay", links, err,
                          "cannot let the overlay's traffic through ip6 filter FORWARD");
    nft_close(&n);
    return rc;
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

/* The command buffer that makes the instance's table what `in` says (without the
 * FORWARD rules, which depend on what the kernel holds). */
static int instance_rules(const hero_nft_instance_t *in, char **out, hero_error_t *err)
{
    *out = NULL;
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

    *out = c;
    return 0;
}

/* Sends the rules (and hero's FORWARD rules) as one batch, then route_localnet. */
static int instance_write(const hero_nft_instance_t *in, const char *rules, hero_error_t *err)
{
    nft_t n;
    if (nft_open(&n, err) < 0)
        return -1;
    char *what = hero_xasprintf("cannot set up the firewall rules of bridge %s (table ip %s)",
                                in->bridge, in->table);
    char tag[HERO_NFT_TABLE_MAX + 8];
    fwd_tag(in->table, tag);
    const char *const links[] = {in->bridge, NULL};
    int rc = run_with_fwd(&n, rules, FWD_CHAIN, tag, links, err, what);
    free(what);
    nft_close(&n);
    if (rc == 0)
        rc = write_route_localnet(in->bridge, err);
    return rc;
}

int hero_nft_instance_apply(const hero_nft_instance_t *in, hero_error_t *err)
{
    char *c;
    if (instance_rules(in, &c, err) < 0)
        return -1;
    int rc = instance_write(in, c, err);
    free(c);
    return rc;
}

/* ---- is the ruleset still the one hero left? ---- */

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* Names the nftables ruleset of this network namespace as it is now: the boot, the
 * namespace (its cookie, which the kernel never hands out twice in one boot) and
 * the ruleset's generation, which every committed change bumps by one. */
typedef struct ruleset_id {
    char boot[40];
    unsigned long long netns;
    uint32_t gen;
} ruleset_id_t;

typedef struct gen_reply {
    uint32_t gen;
    bool found;
} gen_reply_t;

static int gen_attr(const struct nlattr *a, void *data)
{
    gen_reply_t *g = data;
    if (mnl_attr_get_type(a) == NFTA_GEN_ID && mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
        g->gen = ntohl(mnl_attr_get_u32(a));
        g->found = true;
    }
    return MNL_CB_OK;
}

static int gen_msg(const struct nlmsghdr *m, void *data)
{
    if ((m->nlmsg_type & 0xff) == NFT_MSG_NEWGEN)
        mnl_attr_parse(m, sizeof(struct nfgenmsg), gen_attr, data);
    return MNL_CB_OK;
}

static bool boot_id(char out[40])
{
    static char id[40];
    if (!id[0]) {
        char buf[64] = {0};
        int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
        if (fd >= 0)
            close(fd);
        size_t len = n > 0 ? strcspn(buf, "\n") : 0;
        if (len < 16 || len >= sizeof(id))
            return false;
        memcpy(id, buf, len);
        id[len] = 0;
    }
    memcpy(out, id, sizeof(id));
    return true;
}

/* false when something cannot be read (then nothing can be vouched for). */
static bool ruleset_now(ruleset_id_t *r)
{
    if (!boot_id(r->boot))
        return false;
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!nl)
        return false;
    bool ok = false;
    uint64_t cookie = 0;
    socklen_t clen = sizeof(cookie);
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0 &&
        getsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &clen) == 0 &&
        clen == sizeof(cookie)) {
        char buf[MNL_SOCKET_BUFFER_SIZE];
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        uint32_t seq = nlh->nlmsg_seq = (uint32_t)time(NULL);
        struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
        g->nfgen_family = AF_UNSPEC;
        g->version = NFNETLINK_V0;
        g->res_id = 0;
        uint32_t portid = mnl_socket_get_portid(nl);
        gen_reply_t reply = {0};
        int rc = -1;
        if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0) {
            do {
                ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
                rc = n > 0 ? mnl_cb_run(buf, (size_t)n, seq, portid, gen_msg, &reply) : MNL_CB_ERROR;
            } while (rc > MNL_CB_STOP);
        }
        ok = rc == MNL_CB_STOP && reply.found;
        r->netns = cookie;
        r->gen = reply.gen;
    }
    mnl_socket_close(nl);
    return ok;
}

/* FNV-1a: tells one set of rules from another (nothing adversarial here). */
static uint64_t rules_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The note: where, at which generation, which rules. */
static void stamp_of(const ruleset_id_t *r, uint64_t hash, char out[HERO_NFT_STAMP_MAX])
{
    snprintf(out, HERO_NFT_STAMP_MAX, "%s %llu %u %016llx", r->boot, r->netns, (unsigned)r->gen,
             (unsigned long long)hash);
}

int hero_nft_instance_ensure(const hero_nft_instance_t *in, hero_store_t *store,
                             hero_error_t *err)
{
    char *c;
    if (instance_rules(in, &c, err) < 0)
        return -1;
    uint64_t hash = rules_hash(c);
    char key[HERO_NFT_TABLE_MAX + 16];
    snprintf(key, sizeof(key), "nft.applied.%s", in->table);
    ruleset_id_t before;
    bool known = ruleset_now(&before);
    if (known) {
        char want[HERO_NFT_STAMP_MAX];
        stamp_of(&before, hash, want);
        char *note = NULL;
        bool same = hero_store_meta_get(store, key, &note, NULL) == 0 && !strcmp(note, want);
        free(note);
        if (same) {
            free(c);
            /* a bridge made anew (ensure recreates a deleted one) has it off again */
            return write_route_localnet(in->bridge, err) < 0 ? -1 : 1;
        }
    }
    int rc = instance_write(in, c, err);
    free(c);
    if (rc < 0)
        return -1;
    /* Vouch for the result only when hero's batch was the one change in between: any
     * other (another process, in this table or elsewhere) makes it more than one, and
     * the next call applies again. A note that cannot be written costs the same. */
    ruleset_id_t after;
    if (known && ruleset_now(&after) && after.netns == before.netns &&
        !strcmp(after.boot, before.boot) && after.gen == before.gen + 1) {
        char stamp[HERO_NFT_STAMP_MAX];
        stamp_of(&after, hash, stamp);
        hero_store_meta_put(store, key, stamp, NULL);
    }
    return 0;
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
        char tag[HERO_NFT_TABLE_MAX + 8];
        fwd_tag(table, tag);
        rc = run_with_fwd(&n, c, FWD_CHAIN, tag, NULL, err, what);
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
