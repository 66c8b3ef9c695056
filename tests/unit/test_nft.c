/* Tests for actions/heropods/nft.c. Parsing and names run everywhere; the rest needs
 * root and runs in a private network namespace of its own (unshare at the top of
 * main), so it never sees or touches the host's rules. Its "containers" are child
 * processes in namespaces of their own on the test's bridges hnftest0 (10.198.0.0/24,
 * the instance) and hnftest1 (10.199.0.0/24, "another network" that routes through
 * the test's namespace); all traffic stays between those namespaces. */
#include "actions/heropods/net.h"
#include "actions/heropods/nft.h"
#include "runtime/store.h"
#include "tests/unit/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))
#define BRIDGE "hnftest0"
#define OTHER "hnftest1"
#define UID "0123456789abcdef"

static int self_ns = -1;

static int contains(const hero_error_t *e, const char *s)
{
    return e->msg && strstr(e->msg, s);
}

/* Shows the error, if any, and clears it (so a later success shows nothing). */
static void diag(hero_error_t *e)
{
    if (e->msg)
        printf("#   error: %s\n", e->msg);
    hero_error_clear(e);
}

/* ---- parsing and names (no root needed) ---- */

static void test_parse(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_nft_port_t p;
    TAP_OK(hero_nft_port_parse("8080:80", &p, &e) == 0 && p.proto == HERO_NFT_TCP &&
               p.host_port == 8080 && p.ctr_port == 80 && p.addr == 0,
           "parse 8080:80 (tcp by default)");
    TAP_OK(hero_nft_port_parse("8080:80/tcp", &p, &e) == 0 && p.proto == HERO_NFT_TCP &&
               p.host_port == 8080 && p.ctr_port == 80,
           "parse 8080:80/tcp");
    TAP_OK(hero_nft_port_parse("53:5353/udp", &p, &e) == 0 && p.proto == HERO_NFT_UDP &&
               p.host_port == 53 && p.ctr_port == 5353,
           "parse 53:5353/udp");
    TAP_OK(hero_nft_port_parse("65535:1", &p, &e) == 0 && p.host_port == 65535 && p.ctr_port == 1,
           "parse the edges 65535:1");
    diag(&e);
    const char *bad[] = {"80", "a:b", "0:80", "80:0", "70000:80", "80:70000", "80:80/sctp",
                         "80:80/", ":80", "80:", " 80:80", "80:80 ", "80:80/tcp/udp",
                         "-1:80", "+80:80", "80:80:80", "", "099999:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[80];
        snprintf(what, sizeof(what), "parse rejects \"%s\" and names it", bad[i]);
        char quoted[40];
        snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i]);
        TAP_OK(hero_nft_port_parse(bad[i], &p, &e) < 0 && contains(&e, quoted), what);
    }
    diag(&e);

    char t[HERO_NFT_TABLE_MAX];
    hero_nft_table_name(UID, "heropods0", t);
    TAP_STREQ(t, "hero_01234567_heropods0", "table name: hero_ + 8 hex of the uid + _ + bridge");
    hero_nft_table_name("FEDCBA9876", "br0", t);
    TAP_STREQ(t, "hero_fedcba98_br0", "table name: the uid is folded to lower case");
    hero_nft_table_name(NULL, "br0", t);
    TAP_STREQ(t, "hero_00000000_br0", "table name: a missing uid is zeros");
    hero_nft_table_name(UID, "abcdefghijklmno", t);
    TAP_OK(strlen(t) < HERO_NFT_TABLE_MAX, "table name: a 15-character bridge fits");

    char ref[HERO_NFT_TABLE_MAX + 16], rt[HERO_NFT_TABLE_MAX];
    hero_nft_proto_t pr;
    uint16_t port;
    hero_nft_port_ref("hero_01234567_br0", HERO_NFT_UDP, 5353, ref);
    TAP_STREQ(ref, "hero_01234567_br0 udp 5353", "port ref: \"<table> <proto> <port>\"");
    TAP_OK(hero_nft_port_ref_parse(ref, rt, &pr, &port) == 0 && !strcmp(rt, "hero_01234567_br0") &&
               pr == HERO_NFT_UDP && port == 5353,
           "port ref parses back");
    hero_nft_port_ref("hero_01234567_br0", HERO_NFT_TCP, 65535, ref);
    TAP_OK(hero_nft_port_ref_parse(ref, rt, &pr, &port) == 0 && pr == HERO_NFT_TCP &&
               port == 65535,
           "port ref tcp 65535 parses back");
    const char *badref[] = {"", "t tcp", "t sctp 80", "t tcp 0", "t tcp 70000", "t tcp 80 x",
                            " tcp 80", "t tcp 8a", "link vh0123451", NULL};
    int all = 1;
    for (const char **r = badref; *r; r++)
        if (hero_nft_port_ref_parse(*r, rt, &pr, &port) == 0) {
            printf("#   accepted: '%s'\n", *r);
            all = 0;
        }
    TAP_OK(all && hero_nft_port_ref_parse(NULL, rt, &pr, &port) < 0,
           "port ref parse refuses what is not a ref");
    hero_error_clear(&e);
}

/* ---- nft, seen through libnftables ---- */

/* Runs cmds; returns nft's output (or its error text when it failed) in a heap
 * string, and the result in *rc. */
static char *nft(const char *cmds, int *rc)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int r = nft_run_cmd_from_buffer(ctx, cmds);
    const char *out = nft_ctx_get_output_buffer(ctx);
    const char *errs = nft_ctx_get_error_buffer(ctx);
    char *s = strdup(r == 0 ? (out ? out : "") : (errs ? errs : ""));
    nft_ctx_free(ctx);
    if (rc)
        *rc = r;
    return s;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void show(const char *text)
{
    for (const char *p = text; p && *p;) {
        int len = (int)strcspn(p, "\n");
        printf("#   | %.*s\n", len, p);
        p += len + (p[len] ? 1 : 0);
    }
}

/* ---- containers: child processes in their own network namespaces ---- */

typedef struct child {
    pid_t pid;
    int go; /* closing it lets the child exit */
} child_t;

static int child_start(child_t *c)
{
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
        return -1;
    c->pid = fork();
    if (c->pid < 0)
        return -1;
    if (c->pid == 0) {
        for (int fd = 3; fd < 256; fd++)
            if (fd != ready[1] && fd != go[0])
                close(fd);
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        char x;
        while (read(go[0], &x, 1) > 0) {
        }
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    c->go = go[1];
    char x;
    ssize_t n = read(ready[0], &x, 1);
    close(ready[0]);
    return n == 1 ? 0 : -1;
}

static void child_stop(child_t *c)
{
    if (c->pid <= 0)
        return;
    close(c->go);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

static int enter(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

static void leave(void)
{
    if (setns(self_ns, CLONE_NEWNET) < 0) {
        perror("test_nft: cannot return to its own namespace");
        _exit(2);
    }
}

/* A socket of the namespace of pid (0: the test's own). */
static int socket_in(pid_t pid, int type)
{
    if (pid && enter(pid) < 0)
        return -1;
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (pid)
        leave();
    return fd;
}

static struct sockaddr_in sin_of(uint32_t addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(addr);
    return sa;
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    return poll(&p, 1, ms) == 1;
}

/* From the namespace of `from` (0: the test's), connects to dst:port, which the
 * listener lfd should end up answering; one message across. 1 when it arrived, and
 * *peer is the source address the listener saw. A connection that gets no answer
 * gives up after 700 ms (a drop), so "0" is quick either way. */
static int reach(pid_t from, uint32_t dst, int port, int lfd, uint32_t *peer)
{
    int ok = 0, afd = -1;
    int cfd = socket_in(from, SOCK_STREAM | SOCK_NONBLOCK);
    if (cfd < 0)
        return 0;
    struct sockaddr_in sa = sin_of(dst, port);
    if (connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        goto out;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (!wait_fd(cfd, POLLOUT, 700) ||
        getsockopt(cfd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
        goto out;
    if (!wait_fd(lfd, POLLIN, 2000))
        goto out;
    struct sockaddr_in pa;
    socklen_t plen = sizeof(pa);
    afd = accept4(lfd, (struct sockaddr *)&pa, &plen, SOCK_CLOEXEC);
    if (afd < 0)
        goto out;
    char buf[8] = {0};
    if (send(cfd, "hello", 5, 0) != 5 || !wait_fd(afd, POLLIN, 2000) ||
        recv(afd, buf, 5, MSG_WAITALL) != 5)
        goto out;
    ok = !strcmp(buf, "hello");
    if (peer)
        *peer = ntohl(pa.sin_addr.s_addr);
out:
    if (afd >= 0)
        close(afd);
    close(cfd);
    return ok;
}

static long long usec_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000000LL + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

static int read_route_localnet(const char *ifname)
{
    char path[96], v[8] = {0};
    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", ifname);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    if (!fgets(v, sizeof(v), f))
        v[0] = 0;
    fclose(f);
    return v[0] == '1';
}

/* ---- the rules ---- */

static char table[HERO_NFT_TABLE_MAX];

static const char *const rules[] = {
    "iifname \"" BRIDGE "\" accept",
    "oifname \"" BRIDGE "\" ct state established,related accept",
    "oifname \"" BRIDGE "\" ct status dnat accept",
    "oifname \"" BRIDGE "\" drop",
    "ip saddr 10.198.0.0/24 oifname != \"" BRIDGE "\" masquerade",
    "oifname \"" BRIDGE "\" ct status dnat ip saddr { 10.198.0.0/24, 127.0.0.0/8 } masquerade",
    "type filter hook forward priority filter;",
    "type nat hook postrouting priority srcnat;",
    "type nat hook prerouting priority dstnat;",
    "type nat hook output priority -100;",
    "type inet_proto . inet_service : ipv4_addr . inet_service",
    NULL,
};

/* Every rule of the table once; 1 when so (the listing shown otherwise). */
static int table_is_right(bool nat)
{
    char *cmd = hero_xasprintf("list table ip %s", table);
    int rc;
    char *out = nft(cmd, &rc);
    free(cmd);
    int ok = rc == 0;
    for (const char *const *r = rules; *r && ok; r++) {
        int want = (strstr(*r, "!=") && !nat) ? 0 : 1;
        if (count(out, *r) != want) {
            printf("#   %d times, wanted %d: %s\n", count(out, *r), want, *r);
            ok = 0;
        }
    }
    if (ok && count(out, "fib daddr type local dnat ip to meta l4proto . th dport map @ports") != 2)
        ok = 0;
    if (!ok)
        show(out);
    free(out);
    return ok;
}

static char *list_forward(void)
{
    int rc;
    char *out = nft("list chain ip filter FORWARD", &rc);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The map's listing. */
static char *list_ports(void)
{
    char *cmd = hero_xasprintf("list map ip %s ports", table);
    char *out = nft(cmd, NULL);
    free(cmd);
    return out;
}

static void test_nft(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    const uint32_t gw = IP(10, 198, 0, 1), a_ip = IP(10, 198, 0, 10), b_ip = IP(10, 198, 0, 11);
    const uint32_t gw1 = IP(10, 199, 0, 1), c_ip = IP(10, 199, 0, 10);
    child_t ca = {0}, cb = {0}, cc = {0};
    int lfd = -1;
    hero_nft_table_name(UID, BRIDGE, table);
    hero_nft_instance_t in = {.table = table, .bridge = BRIDGE, .subnet = IP(10, 198, 0, 0),
                              .prefix_len = 24, .nat = true};

    int rc = hero_net_bridge_ensure(BRIDGE, gw, 24, NULL, NULL, &e);
    if (rc == 0)
        rc = hero_net_bridge_ensure(OTHER, gw1, 24, NULL, NULL, &e);
    if (rc == 0)
        rc = hero_net_ipv4_forwarding(&e);
    diag(&e);
    if (!TAP_OK(rc == 0, "the test's bridges " BRIDGE " and " OTHER ", forwarding on"))
        goto out;

    /* ---- the instance's table ---- */
    rc = hero_nft_instance_apply(&in, &e);
    diag(&e);
    TAP_OK(rc == 0, "apply");
    TAP_OK(table_is_right(true), "the table holds every rule, the map and the four chains");
    TAP_OK(read_route_localnet(BRIDGE) == 1, "route_localnet is 1 on the bridge");
    char *fw = list_forward();
    TAP_OK(fw == NULL, "no ip filter FORWARD chain: apply makes none");
    free(fw);
    rc = hero_nft_instance_apply(&in, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true), "apply twice: one copy of every rule");
    in.nat = false;
    rc = hero_nft_instance_apply(&in, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(false), "apply with nat off: no masquerade out, the rest stays");
    in.nat = true;
    rc = hero_nft_instance_apply(&in, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true), "apply with nat on again");

    /* ---- ports: replace, keep over apply ---- */
    hero_nft_port_t p = {.proto = HERO_NFT_TCP, .host_port = 18080, .addr = b_ip, .ctr_port = 81};
    rc = hero_nft_port_add(table, &p, &e);
    diag(&e);
    TAP_OK(rc == 0, "port_add 18080 -> 10.198.0.11:81");
    rc = hero_nft_port_add(table, &p, &e);
    diag(&e);
    TAP_OK(rc == 0, "port_add of the same element again is fine");
    p.addr = a_ip;
    p.ctr_port = 80;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = hero_nft_port_add(table, &p, &e);
    long long replace_us = usec_since(&t0);
    diag(&e);
    char *ports = list_ports();
    TAP_OK(rc == 0 && count(ports, "18080") == 1 &&
               count(ports, "tcp . 18080 : 10.198.0.10 . 80") == 1,
           "port_add with another value replaces the element (one, with the last value)");
    free(ports);
    hero_nft_port_t u = {.proto = HERO_NFT_UDP, .host_port = 18080, .addr = b_ip, .ctr_port = 53};
    rc = hero_nft_port_add(table, &u, &e);
    diag(&e);
    rc |= hero_nft_instance_apply(&in, &e);
    diag(&e);
    ports = list_ports();
    TAP_OK(rc == 0 && count(ports, "tcp . 18080 : 10.198.0.10 . 80") == 1 &&
               count(ports, "udp . 18080 : 10.198.0.11 . 53") == 1,
           "udp and tcp of one port are two elements; apply keeps both");
    free(ports);
    rc = hero_nft_port_del(table, HERO_NFT_UDP, 18080, &e);
    diag(&e);
    ports = list_ports();
    TAP_OK(rc == 0 && count(ports, "udp . 18080") == 0 && count(ports, "tcp . 18080") == 1,
           "port_del udp 18080 leaves tcp 18080");
    free(ports);
    rc = hero_nft_port_del(table, HERO_NFT_UDP, 18080, &e);
    diag(&e);
    TAP_OK(rc == 0, "port_del of a missing element is fine");

    /* ---- traffic through a published port ---- */
    if (child_start(&ca) < 0 || child_start(&cb) < 0 || child_start(&cc) < 0) {
        TAP_OK(0, "fork three children in namespaces of their own");
        goto out;
    }
    char ha[16], hb[16], hc[16];
    hero_net_host_name(UID, 1, ha);
    hero_net_host_name(UID, 2, hb);
    hero_net_host_name(UID, 3, hc);
    rc = hero_net_veth_attach(ca.pid, ha, BRIDGE, a_ip, 24, gw, &e);
    if (rc == 0)
        rc = hero_net_veth_attach(cb.pid, hb, BRIDGE, b_ip, 24, gw, &e);
    if (rc == 0)
        rc = hero_net_veth_attach(cc.pid, hc, OTHER, c_ip, 24, gw1, &e);
    diag(&e);
    if (!TAP_OK(rc == 0, "containers A, B (10.198.0.10, .11) and C on the other bridge"))
        goto out;
    lfd = socket_in(ca.pid, SOCK_STREAM);
    int on = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in sa = sin_of(a_ip, 80);
    if (!TAP_OK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                    listen(lfd, 8) == 0,
                "A listens on 10.198.0.10:80"))
        goto out;

    uint32_t peer = 0;
    TAP_OK(reach(0, IP(127, 0, 0, 1), 18080, lfd, &peer) && peer == gw,
           "host -> 127.0.0.1:18080 reaches A:80, masqueraded to the gateway");
    TAP_OK(reach(0, gw, 18080, lfd, &peer) && peer == gw,
           "host -> gateway 10.198.0.1:18080 reaches A:80");
    TAP_OK(reach(cb.pid, gw, 18080, lfd, &peer) && peer == gw,
           "container B -> gateway:18080 reaches A:80 (hairpin, masqueraded)");
    TAP_OK(reach(cc.pid, gw1, 18080, lfd, &peer) && peer == c_ip,
           "another network (C) -> a host address:18080 reaches A:80, its source kept");
    TAP_OK(!reach(cc.pid, a_ip, 80, lfd, NULL),
           "another network (C) -> A:80 directly is dropped (not published)");
    TAP_OK(reach(cb.pid, a_ip, 80, lfd, &peer) && peer == b_ip,
           "B -> A:80 directly, on the bridge, is untouched");

    /* ---- docker's FORWARD chain with policy drop ---- */
    int frc;
    free(nft("add table ip filter\n"
             "add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }\n"
             "add rule ip filter FORWARD iifname \"other9\" accept\n",
             &frc));
    TAP_OK(frc == 0, "the test makes ip filter FORWARD, policy drop, with a rule of its own");
    TAP_OK(!reach(cb.pid, gw, 18080, lfd, NULL), "... which drops the hairpin before apply");
    char tag[HERO_NFT_TABLE_MAX + 24];
    snprintf(tag, sizeof(tag), "comment \"hero:%s\"", table);
    rc = hero_nft_instance_apply(&in, &e);
    diag(&e);
    rc |= hero_nft_instance_apply(&in, &e);
    diag(&e);
    fw = list_forward();
    char *want_top = hero_xasprintf("policy drop;\n\t\tiifname \"%s\" accept %s\n"
                                    "\t\toifname \"%s\" accept %s\n"
                                    "\t\tiifname \"other9\" accept\n",
                                    BRIDGE, tag, BRIDGE, tag);
    TAP_OK(rc == 0 && count(fw, tag) == 2 && count(fw, want_top) == 1,
           "apply twice: two tagged accepts at the top of FORWARD, once; its own rule stays");
    if (count(fw, want_top) != 1)
        show(fw);
    free(want_top);
    free(fw);
    if (access("/usr/sbin/iptables-nft", X_OK) == 0) {
        /* a native match iptables cannot read back makes it refuse the whole table */
        int st = system("/usr/sbin/iptables-nft -S FORWARD >/dev/null 2>&1 && "
                        "/usr/sbin/iptables-nft-save >/dev/null 2>&1 && "
                        "/usr/sbin/iptables-nft-save 2>/dev/null | grep -q 'hero:'");
        TAP_OK(st == 0, "iptables-nft -S and iptables-nft-save still read the filter table");
    } else {
        TAP_SKIP("iptables-nft is not installed");
    }
    TAP_OK(reach(cb.pid, gw, 18080, lfd, &peer) && peer == gw,
           "with FORWARD at drop: the hairpin gets through after apply");
    TAP_OK(reach(cc.pid, gw1, 18080, lfd, &peer) && peer == c_ip,
           "with FORWARD at drop: another network reaches the published port");
    TAP_OK(!reach(cc.pid, a_ip, 80, lfd, NULL),
           "with FORWARD at drop: another network still cannot reach A:80 directly");

    /* ---- unpublish ---- */
    rc = hero_nft_port_del(table, HERO_NFT_TCP, 18080, &e);
    diag(&e);
    TAP_OK(rc == 0, "port_del tcp 18080");
    TAP_OK(!reach(0, IP(127, 0, 0, 1), 18080, lfd, NULL) && !reach(0, gw, 18080, lfd, NULL) &&
               !reach(cb.pid, gw, 18080, lfd, NULL),
           "after port_del, 18080 leads nowhere (127.0.0.1, the gateway, the hairpin)");

    /* ---- timing ---- */
    long long best_add = -1, best_del = -1, best_ctx = -1;
    for (int i = 0; i < 20; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        hero_nft_port_add(table, &p, &e);
        long long us = usec_since(&t0);
        best_add = best_add < 0 || us < best_add ? us : best_add;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        hero_nft_port_del(table, HERO_NFT_TCP, 18080, &e);
        us = usec_since(&t0);
        best_del = best_del < 0 || us < best_del ? us : best_del;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        nft_ctx_free(nft_ctx_new(NFT_CTX_DEFAULT));
        us = usec_since(&t0);
        best_ctx = best_ctx < 0 || us < best_ctx ? us : best_ctx;
    }
    printf("# timing (best of 20): port_add %lld us, port_del %lld us, nft_ctx_new+free %lld us;"
           " replacing a value %lld us\n", best_add, best_del, best_ctx, replace_us);

    /* ---- errors ---- */
    hero_nft_instance_t badin = in;
    badin.bridge = "br\"x";
    rc = hero_nft_instance_apply(&badin, &e);
    TAP_OK(rc < 0 && contains(&e, "br\"x"), "a bridge name with a quote is refused, named");
    diag(&e);
    rc = hero_nft_port_add("hero_00000000_nosuch", &p, &e);
    TAP_OK(rc < 0 && contains(&e, "hero_00000000_nosuch") &&
               contains(&e, strerror(ENOENT)),
           "port_add on a missing table: an error naming it, with nft's text");
    diag(&e);
    rc = hero_nft_port_del("hero_00000000_nosuch", HERO_NFT_TCP, 1, &e);
    diag(&e);
    TAP_OK(rc == 0, "port_del on a missing table is fine");

    /* ---- remove ---- */
    rc = hero_nft_instance_remove(table, &e);
    diag(&e);
    char *cmd = hero_xasprintf("list table ip %s", table);
    int lrc;
    free(nft(cmd, &lrc));
    free(cmd);
    fw = list_forward();
    TAP_OK(rc == 0 && lrc != 0, "remove deletes the table");
    TAP_OK(fw && count(fw, tag) == 0 && count(fw, "iifname \"other9\" accept") == 1,
           "remove takes hero's FORWARD rules away and leaves the others");
    free(fw);
    rc = hero_nft_instance_remove(table, &e);
    diag(&e);
    TAP_OK(rc == 0, "remove again is fine");
    free(nft("delete table ip filter", NULL));
    rc = hero_nft_instance_remove(table, &e);
    diag(&e);
    TAP_OK(rc == 0, "remove without any filter table is fine");

out:
    if (lfd >= 0)
        close(lfd);
    child_stop(&cc);
    child_stop(&cb);
    child_stop(&ca);
    hero_nft_instance_remove(table, NULL);
    hero_net_bridge_delete(BRIDGE, NULL);
    hero_net_bridge_delete(OTHER, NULL);
    hero_error_clear(&e);
}

/* ---- ensure: skip when the kernel still holds what hero applied ---- */

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"hero.db", "hero.db-wal", "hero.db-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *f = hero_xasprintf("%s/%s", dir, files[i]);
        unlink(f);
        free(f);
    }
    rmdir(dir);
}

static int set_route_localnet(const char *ifname, const char *v)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", ifname);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = write(fd, v, strlen(v)) == (ssize_t)strlen(v);
    close(fd);
    return ok ? 0 : -1;
}

static void test_ensure(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    char tmpl[] = "/tmp/hero-nft-test.XXXXXX";
    const char *dir = mkdtemp(tmpl);
    hero_store_t *st = NULL;
    child_t other = {0};
    char key[HERO_NFT_TABLE_MAX + 16];
    hero_nft_table_name(UID, BRIDGE, table);
    snprintf(key, sizeof(key), "nft.applied.%s", table);
    hero_nft_instance_t in = {.table = table, .bridge = BRIDGE, .subnet = IP(10, 198, 0, 0),
                              .prefix_len = 24, .nat = true};
    int rc = dir ? hero_store_open(dir, &st, &e) : -1;
    if (rc == 0)
        rc = hero_net_bridge_ensure(BRIDGE, IP(10, 198, 0, 1), 24, NULL, NULL, &e);
    diag(&e);
    if (!TAP_OK(rc == 0, "ensure: a store in a temporary directory, and the bridge " BRIDGE))
        goto out;

    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    char *note = NULL;
    TAP_OK(rc == 0 && table_is_right(true) && hero_store_meta_get(st, key, &note, NULL) == 0,
           "ensure on a fresh namespace applies, and notes it in the store");
    if (note)
        printf("#   note: %s\n", note);
    free(note);
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 1 && table_is_right(true), "ensure again: the rules are in place, nothing sent");

    set_route_localnet(BRIDGE, "0");
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 1 && read_route_localnet(BRIDGE) == 1,
           "ensure with nothing to send still sets route_localnet (a bridge made anew)");

    free(nft("add table ip hero_test_unrelated", NULL));
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true),
           "another change to the ruleset (an unrelated table): ensure applies again");
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 1, "... and then has nothing to send");
    free(nft("delete table ip hero_test_unrelated", NULL));

    char *cmd = hero_xasprintf("flush chain ip %s forward", table);
    free(nft(cmd, NULL));
    free(cmd);
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true), "someone flushed hero's forward chain: ensure refills it");

    cmd = hero_xasprintf("delete table ip %s", table);
    free(nft(cmd, NULL));
    free(cmd);
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true), "someone deleted the table: ensure makes it again");

    in.nat = false;
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(false), "other rules (nat off): ensure applies them");
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 1, "... and then has nothing to send");
    in.nat = true;
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0 && table_is_right(true), "nat on again: applied");

    /* a note from another boot (the same namespace cookie and generation can come
     * back after a reboot) is not trusted */
    note = NULL;
    if (hero_store_meta_get(st, key, &note, NULL) == 0 && note[0]) {
        note[0] = note[0] == '0' ? '1' : '0';
        hero_store_meta_put(st, key, note, NULL);
    }
    free(note);
    rc = hero_nft_instance_ensure(&in, st, &e);
    diag(&e);
    TAP_OK(rc == 0, "a note from another boot: ensure applies");

    /* the same store from another network namespace: its ruleset is not this one */
    if (child_start(&other) == 0 && enter(other.pid) == 0) {
        int brc = hero_net_bridge_ensure(BRIDGE, IP(10, 198, 0, 1), 24, NULL, NULL, &e);
        rc = brc < 0 ? -1 : hero_nft_instance_ensure(&in, st, &e);
        diag(&e);
        bool right = rc == 0 && table_is_right(true);
        int again = rc == 0 ? hero_nft_instance_ensure(&in, st, &e) : -1;
        diag(&e);
        leave();
        TAP_OK(right && again == 1,
               "the same store in another network namespace: ensure applies there, then skips");
        rc = hero_nft_instance_ensure(&in, st, &e);
        diag(&e);
        TAP_OK(rc == 0 && table_is_right(true),
               "back in the first namespace, the note (of the other one) is not trusted");
    } else {
        TAP_OK(0, "a child in a network namespace of its own");
    }

    hero_nft_instance_t badin = in;
    badin.bridge = "br\"x";
    rc = hero_nft_instance_ensure(&badin, st, &e);
    TAP_OK(rc < 0 && contains(&e, "br\"x"), "ensure refuses a bridge name with a quote, named");
    diag(&e);

out:
    child_stop(&other);
    if (st)
        hero_store_close(st);
    if (dir)
        remove_dir(dir);
    hero_nft_instance_remove(table, NULL);
    hero_net_bridge_delete(BRIDGE, NULL);
    hero_error_clear(&e);
}

static void test_check_free(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in lo = sin_of(IP(127, 0, 0, 1), 18081);
    struct sockaddr_in any = sin_of(0, 18082);
    int ok = bind(t, (struct sockaddr *)&lo, sizeof(lo)) == 0 && listen(t, 1) == 0 &&
             bind(u, (struct sockaddr *)&any, sizeof(any)) == 0;
    if (!TAP_OK(ok, "the test listens on 127.0.0.1:18081/tcp and 0.0.0.0:18082/udp"))
        goto out;
    int rc = hero_nft_port_check_free(HERO_NFT_TCP, 18081, &e);
    TAP_OK(rc < 0 && contains(&e, "host port 18081/tcp is already in use on this host"),
           "check_free: a tcp port listened on (on 127.0.0.1) is in use");
    diag(&e);
    rc = hero_nft_port_check_free(HERO_NFT_UDP, 18082, &e);
    TAP_OK(rc < 0 && contains(&e, "host port 18082/udp is already in use on this host"),
           "check_free: a udp port bound is in use");
    diag(&e);
    hero_error_clear(&e);
    rc = hero_nft_port_check_free(HERO_NFT_UDP, 18081, &e);
    rc |= hero_nft_port_check_free(HERO_NFT_TCP, 18082, &e);
    rc |= hero_nft_port_check_free(HERO_NFT_TCP, 18083, &e);
    diag(&e);
    TAP_OK(rc == 0, "check_free: the other protocol, and a free port, are free");
out:
    close(t);
    close(u);
    hero_error_clear(&e);
}

int main(void)
{
    test_parse();
    if (geteuid() != 0) {
        TAP_SKIP("nftables tests: not root (they need CAP_NET_ADMIN and a private network "
                 "namespace)");
        return tap_done();
    }
    if (unshare(CLONE_NEWNET) < 0) {
        char why[128];
        snprintf(why, sizeof(why), "nftables tests: cannot make a private network namespace: %s",
                 strerror(errno));
        TAP_SKIP(why);
        return tap_done();
    }
    self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    /* lo is down in a new namespace, and without 127.0.0.1 */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    test_check_free();
    test_nft();
    test_ensure();
    close(self_ns);
    return tap_done();
}
