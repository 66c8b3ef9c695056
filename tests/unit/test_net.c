/* Tests for actions/heropods/net.c. The names part runs everywhere; the netlink part
 * needs root and runs in a private network namespace of its own (unshare at the top
 * of main), so it never sees or touches the host's interfaces. Its "containers" are
 * child processes in namespaces of their own; all traffic stays between those
 * namespaces and the test's bridge hnbtest0 (10.197.0.0/24). */
#include "actions/heropods/net.h"
#include "tests/unit/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))
#define BRIDGE "hnbtest0"
#define UID "0123456789abcdef"

static int self_ns = -1;

/* ---- names (no root needed) ---- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_names(void)
{
    char a[16], b[16];
    hero_net_host_name(UID, 1, a);
    hero_net_host_name(UID, 2, b);
    TAP_STREQ(a, "vh0123451", "host name: vh + 6 hex of the store uid + the id");
    TAP_OK(strcmp(a, b) != 0, "host name: two ids give two names");
    hero_net_host_name(UID, 35, a);
    hero_net_host_name(UID, 36, b);
    TAP_OK(!strcmp(a, "vh012345z") && !strcmp(b, "vh01234510"), "host name: id in base 36");
    hero_net_host_name("fedcba9876543210", 1, b);
    hero_net_host_name(UID, 1, a);
    TAP_OK(strcmp(a, b) != 0, "host name: two stores give two names");

    int64_t ids[] = {0, 1, 9, 10, 35, 36, 1295, 1296, 65535, 2147483647LL, 2147483648LL,
                     4294967296LL, 78364164095LL, 78364164096LL, 1LL << 40, INT64_MAX,
                     -1, INT64_MIN};
    size_t nids = sizeof(ids) / sizeof(ids[0]);
    char (*names)[16] = calloc(nids, 16);
    int fits = 1, valid = 1;
    for (size_t i = 0; i < nids; i++) {
        memset(names[i], 'X', 16);
        hero_net_host_name(UID, ids[i], names[i]);
        if (memchr(names[i], 0, 16) == NULL || strlen(names[i]) > 15)
            fits = 0;
        else
            for (const char *p = names[i]; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
                    valid = 0;
    }
    TAP_OK(fits, "host name: at most 15 characters for every id up to INT64_MAX and negatives");
    TAP_OK(valid, "host name: only [0-9a-z]");
    qsort(names, nids, 16, cmp_name);
    int distinct = 1;
    for (size_t i = 1; i < nids; i++)
        if (!strcmp(names[i - 1], names[i]))
            distinct = 0;
    TAP_OK(distinct, "host name: the edge-case ids give distinct names");
    free(names);

    /* every id from 0 to 2^20, and a stride up to past 2^31 */
    size_t n = (1u << 20) + 4096;
    names = calloc(n, 16);
    size_t k = 0;
    for (int64_t id = 0; id <= (1 << 20); id++)
        hero_net_host_name(UID, id, names[k++]);
    for (int64_t id = (1 << 20) + 1; k < n; id += 1048573)
        hero_net_host_name(UID, id, names[k++]);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) > 15)
            ok = 0;
    qsort(names, n, 16, cmp_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            ok = 0;
    TAP_OK(ok, "host name: a million ids and a stride past 2^31: distinct, <= 15 chars");
    free(names);

    hero_net_host_name(NULL, 7, a);
    TAP_STREQ(a, "vh0000007", "host name: a missing uid is zeros, not a crash");
    hero_net_host_name("AB", 7, a);
    TAP_STREQ(a, "vhab00007", "host name: a short uid is padded, upper case folded");
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
        /* keep no other child's pipe open, or that child would never see EOF */
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

/* Runs the calling thread inside pid's network namespace until leave(). */
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
        perror("test_net: cannot return to its own namespace");
        _exit(2);
    }
}

/* The IPv4 address and netmask of ifname in the current namespace, 0 when none. */
static uint32_t if_addr(const char *ifname, uint32_t *mask)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    uint32_t a = 0;
    if (ioctl(s, SIOCGIFADDR, &ifr) == 0)
        a = ntohl(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr);
    if (mask) {
        *mask = 0;
        if (ioctl(s, SIOCGIFNETMASK, &ifr) == 0)
            *mask = ntohl(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr);
    }
    close(s);
    return a;
}

static int if_up(const char *ifname)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int up = ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
    close(s);
    return up;
}

static int if_set_down(const char *ifname)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags &= ~IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

/* The default route of the current namespace from /proc/thread-self/net/route:
 * 1 when it goes via gateway out of ifname. */
static int default_route_via(const char *ifname, uint32_t gateway)
{
    FILE *f = fopen("/proc/thread-self/net/route", "re");
    if (!f)
        return 0;
    char line[256], iface[32];
    unsigned dest, gw, flags;
    int found = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "%31s %x %x %x", iface, &dest, &gw, &flags) == 4 && dest == 0 &&
            !strcmp(iface, ifname) && gw == htonl(gateway) && (flags & 0x2 /*RTF_GATEWAY*/))
            found = 1;
    fclose(f);
    return found;
}

static struct sockaddr_in sin_of(uint32_t addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(addr);
    return sa;
}

static void timeouts(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A TCP listener on addr:port inside `in` (0: the test's own namespace), a client
 * inside `from`; one message across. Returns 1 when it arrived and the listener saw
 * the connection come from `from_addr`. Addresses are all the test's own. */
static int tcp_across(pid_t in, uint32_t addr, int port, pid_t from, uint32_t from_addr)
{
    int ok = 0, lfd = -1, cfd = -1, afd = -1;
    if (in && enter(in) < 0)
        return 0;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (in)
        leave();
    if (from && enter(from) < 0)
        goto out;
    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (from)
        leave();
    if (lfd < 0 || cfd < 0)
        goto out;
    int on = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    timeouts(lfd);
    timeouts(cfd);
    struct sockaddr_in sa = sin_of(addr, port);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
        goto out;
    if (connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    afd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    if (afd < 0)
        goto out;
    timeouts(afd);
    char buf[8] = {0};
    if (send(cfd, "hello", 5, 0) != 5 || recv(afd, buf, 5, MSG_WAITALL) != 5)
        goto out;
    ok = !strcmp(buf, "hello") && ntohl(peer.sin_addr.s_addr) == from_addr;
out:
    if (afd >= 0)
        close(afd);
    if (cfd >= 0)
        close(cfd);
    if (lfd >= 0)
        close(lfd);
    return ok;
}

static int has_eth0(pid_t pid)
{
    if (enter(pid) < 0)
        return -1;
    int idx = (int)if_nametoindex("eth0");
    leave();
    return idx > 0;
}

static int contains(const hero_error_t *e, const char *s)
{
    return e->msg && strstr(e->msg, s);
}

static void diag(const hero_error_t *e)
{
    if (e->msg)
        printf("#   error: %s\n", e->msg);
}

static void test_netlink(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    const uint32_t gw = IP(10, 197, 0, 1), a_ip = IP(10, 197, 0, 10), b_ip = IP(10, 197, 0, 11);

    /* the bridge, twice */
    int rc = hero_net_bridge_ensure(BRIDGE, gw, 24, NULL, NULL, &e);
    diag(&e);
    TAP_OK(rc == 0, "bridge_ensure creates " BRIDGE);
    unsigned idx = if_nametoindex(BRIDGE);
    uint32_t mask;
    TAP_OK(idx > 0 && if_addr(BRIDGE, &mask) == gw && mask == 0xffffff00u && if_up(BRIDGE),
           "the bridge exists, is up and holds 10.197.0.1/24");
    rc = hero_net_bridge_ensure(BRIDGE, gw, 24, NULL, NULL, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_nametoindex(BRIDGE) == idx, "bridge_ensure again: no error, same link");
    if_set_down(BRIDGE);
    rc = hero_net_bridge_ensure(BRIDGE, gw, 24, NULL, NULL, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_up(BRIDGE) && if_addr(BRIDGE, NULL) == gw,
           "bridge_ensure on a bridge that is down sets it up again");

    /* a subnet that overlaps an address on another link */
    rc = hero_net_bridge_ensure("hnbclash0", IP(10, 197, 128, 1), 16, NULL, NULL, &e);
    TAP_OK(rc < 0 && e.code == EADDRINUSE && contains(&e, "subnet 10.197.0.0/16") &&
               contains(&e, "10.197.0.1/24 on " BRIDGE) && !contains(&e, "the bridge of"),
           "a /16 around the bridge's /24: refused, naming the address and the link");
    diag(&e);
    TAP_OK(if_nametoindex("hnbclash0") == 0, "the refused bridge was not made");
    rc = hero_net_bridge_ensure("hnbclash0", IP(10, 197, 0, 129), 25, NULL, NULL, &e);
    TAP_OK(rc < 0 && contains(&e, "subnet 10.197.0.128/25") && if_nametoindex("hnbclash0") == 0,
           "a /25 inside the bridge's /24: refused too");
    diag(&e);
    hero_error_clear(&e);
    rc = hero_net_bridge_ensure("hnbclash0", IP(10, 196, 255, 1), 24, NULL, NULL, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_addr("hnbclash0", NULL) == IP(10, 196, 255, 1),
           "the /24 just below: no overlap, made");
    rc = hero_net_bridge_ensure("hnbclash1", IP(10, 196, 255, 1), 24, HERO_NET_OWNER_PREFIX "x",
                                HERO_NET_OWNER_PREFIX "x of /base", &e);
    TAP_OK(rc < 0 && if_nametoindex("hnbclash1") == 0 &&
               contains(&e, "10.196.255.1/24 on hnbclash0"),
           "another bridge with the same subnet: refused");
    diag(&e);
    hero_error_clear(&e);
    hero_net_bridge_delete("hnbclash0", NULL);
    rc = hero_net_bridge_ensure("hnbclash0", IP(10, 196, 255, 1), 24, HERO_NET_OWNER_PREFIX "i1",
                                HERO_NET_OWNER_PREFIX "i1 of /b1", &e);
    diag(&e);
    rc = hero_net_bridge_ensure("hnbclash1", IP(10, 196, 255, 1), 24, HERO_NET_OWNER_PREFIX "i2",
                                HERO_NET_OWNER_PREFIX "i2 of /b2", &e);
    TAP_OK(rc < 0 && contains(&e, "on hnbclash0 (the bridge of i1 of /b1)") &&
               if_nametoindex("hnbclash1") == 0,
           "a hero bridge in the way: the error names its instance");
    diag(&e);
    hero_error_clear(&e);
    rc = hero_net_bridge_ensure("hnbclash0", IP(10, 196, 255, 1), 24, HERO_NET_OWNER_PREFIX "i1",
                                HERO_NET_OWNER_PREFIX "i1 of /b1", &e);
    diag(&e);
    TAP_OK(rc == 0, "the bridge's own address is no clash (configure again)");
    hero_net_bridge_delete("hnbclash0", NULL);
    rc = hero_net_subnet_check(gw, 24, NULL, NULL, &e);
    TAP_OK(rc < 0 && e.code == EADDRINUSE && contains(&e, "on " BRIDGE),
           "subnet_check alone: the bridge's own subnet is taken, by it");
    hero_error_clear(&e);
    rc = hero_net_subnet_check(gw, 24, "hnbmissing0", BRIDGE, &e);
    diag(&e);
    TAP_OK(rc == 0, "subnet_check skipping that bridge (and a missing link): free");
    rc = hero_net_subnet_check(IP(10, 197, 0, 1), 32, NULL, NULL, &e);
    TAP_OK(rc < 0 && contains(&e, "subnet 10.197.0.1/32 overlaps"), "a /32 on the gateway: taken");
    hero_error_clear(&e);
    rc = hero_net_subnet_check(IP(10, 197, 1, 1), 32, NULL, NULL, &e);
    diag(&e);
    TAP_OK(rc == 0, "a /32 just outside: free");

    rc = hero_net_ipv4_forwarding(&e);
    diag(&e);
    char fwd[8] = {0};
    FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "re");
    if (f) {
        if (!fgets(fwd, sizeof(fwd), f))
            fwd[0] = 0;
        fclose(f);
    }
    TAP_OK(rc == 0 && fwd[0] == '1', "ipv4_forwarding (in the test's own namespace)");

    /* two containers */
    child_t ca = {0}, cb = {0}, cc = {0};
    if (child_start(&ca) < 0 || child_start(&cb) < 0 || child_start(&cc) < 0) {
        TAP_OK(0, "fork three children in namespaces of their own");
        goto out;
    }
    char ha[16], hb[16], hc[16];
    hero_net_host_name(UID, 1, ha);
    hero_net_host_name(UID, 2, hb);
    hero_net_host_name(UID, 3, hc);

    rc = hero_net_veth_attach(ca.pid, ha, BRIDGE, a_ip, 24, gw, &e);
    diag(&e);
    TAP_OK(rc == 0, "veth_attach container A (10.197.0.10)");
    rc = hero_net_veth_attach(cb.pid, hb, BRIDGE, b_ip, 24, gw, &e);
    diag(&e);
    TAP_OK(rc == 0, "veth_attach container B (10.197.0.11)");
    TAP_OK(if_nametoindex(ha) > 0 && if_up(ha) && if_nametoindex(hb) > 0 && if_up(hb),
           "the host ends exist and are up");

    pid_t pids[2] = {ca.pid, cb.pid};
    uint32_t ips[2] = {a_ip, b_ip};
    for (int i = 0; i < 2; i++) {
        char what[96];
        if (enter(pids[i]) < 0) {
            TAP_OK(0, "enter the container's namespace");
            continue;
        }
        uint32_t m = 0;
        uint32_t got = if_addr("eth0", &m);
        int eth_up = if_up("eth0"), lo_up = if_up("lo");
        int route = default_route_via("eth0", gw);
        leave();
        snprintf(what, sizeof(what), "container %c: eth0 holds %s/24 and is up", 'A' + i,
                 i ? "10.197.0.11" : "10.197.0.10");
        TAP_OK(got == ips[i] && m == 0xffffff00u && eth_up, what);
        snprintf(what, sizeof(what), "container %c: lo is up", 'A' + i);
        TAP_OK(lo_up, what);
        snprintf(what, sizeof(what), "container %c: default route via 10.197.0.1 on eth0",
                 'A' + i);
        TAP_OK(route, what);
    }

    TAP_OK(tcp_across(ca.pid, a_ip, 8080, cb.pid, b_ip),
           "TCP from B to A (10.197.0.10:8080) across the bridge");
    TAP_OK(tcp_across(0, gw, 8081, ca.pid, a_ip),
           "TCP from A to the gateway address (10.197.0.1:8081) on the bridge");

    /* error cases */
    rc = hero_net_bridge_ensure(ha, gw, 24, NULL, NULL, &e);
    TAP_OK(rc < 0 && contains(&e, ha) && contains(&e, "not a bridge"),
           "bridge_ensure on a veth of that name: an error naming it");
    diag(&e);
    rc = hero_net_bridge_delete(ha, &e);
    TAP_OK(rc < 0 && if_nametoindex(ha) > 0, "bridge_delete refuses a link that is no bridge");
    hero_error_clear(&e);

    rc = hero_net_veth_attach(cc.pid, hc, "hnbmissing0", IP(10, 197, 0, 12), 24, gw, &e);
    TAP_OK(rc < 0 && contains(&e, "hnbmissing0") && contains(&e, strerror(ENODEV)),
           "attach to a missing bridge: the error names it, with the kernel's text");
    diag(&e);
    TAP_OK(if_nametoindex(hc) == 0 && has_eth0(cc.pid) == 0,
           "attach to a missing bridge leaves nothing behind");

    rc = hero_net_veth_attach(cc.pid, hc, BRIDGE, IP(10, 197, 0, 12), 24, IP(10, 198, 0, 1), &e);
    TAP_OK(rc < 0 && contains(&e, "default route") && contains(&e, strerror(ENETUNREACH)),
           "a gateway off the subnet: the route fails with the kernel's text");
    diag(&e);
    TAP_OK(if_nametoindex(hc) == 0 && has_eth0(cc.pid) == 0,
           "a failure after the veth was made deletes the pair (host end and eth0)");

    rc = hero_net_veth_attach(ca.pid, hc, BRIDGE, IP(10, 197, 0, 12), 24, gw, &e);
    char want[64];
    snprintf(want, sizeof(want), "cannot create veth %s", hc);
    TAP_OK(rc < 0 && contains(&e, want) && contains(&e, strerror(EEXIST)),
           "eth0 already in the namespace: \"cannot create veth ...: File exists\"");
    diag(&e);
    TAP_OK(if_nametoindex(hc) == 0 && has_eth0(ca.pid) == 1 && if_nametoindex(ha) > 0,
           "... and the failed attach removed nothing that was there");

    rc = hero_net_veth_attach(cc.pid, ha, BRIDGE, IP(10, 197, 0, 12), 24, gw, &e);
    TAP_OK(rc < 0 && contains(&e, strerror(EEXIST)) && if_nametoindex(ha) > 0 &&
               has_eth0(cc.pid) == 0,
           "a host name already taken: File exists, the other link stays");
    diag(&e);

    rc = hero_net_veth_attach(cc.pid, "vh0123456789abcd", BRIDGE, IP(10, 197, 0, 12), 24, gw,
                              &e);
    TAP_OK(rc < 0 && contains(&e, "longer than 15"), "a 16-character host name is refused");
    diag(&e);
    rc = hero_net_veth_attach(999999999, hc, BRIDGE, IP(10, 197, 0, 12), 24, gw, &e);
    TAP_OK(rc < 0 && contains(&e, "999999999") && if_nametoindex(hc) == 0,
           "a pid that does not exist: an error naming it");
    diag(&e);
    hero_error_clear(&e);

    /* teardown */
    rc = hero_net_link_delete(ha, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_nametoindex(ha) == 0 && has_eth0(ca.pid) == 0,
           "link_delete removes the host end and eth0 in the container");
    rc = hero_net_link_delete(hb, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_nametoindex(hb) == 0 && has_eth0(cb.pid) == 0, "link_delete B");
    rc = hero_net_link_delete(ha, &e);
    diag(&e);
    TAP_OK(rc == 0, "link_delete of a missing link is fine");
    rc = hero_net_bridge_delete(BRIDGE, &e);
    diag(&e);
    TAP_OK(rc == 0 && if_nametoindex(BRIDGE) == 0, "bridge_delete removes " BRIDGE);
    rc = hero_net_bridge_delete(BRIDGE, &e);
    diag(&e);
    TAP_OK(rc == 0, "bridge_delete of a missing bridge is fine");

out:
    child_stop(&cc);
    child_stop(&cb);
    child_stop(&ca);
    hero_net_bridge_delete(BRIDGE, NULL);
    hero_net_bridge_delete("hnbclash0", NULL);
    hero_net_bridge_delete("hnbclash1", NULL);
    hero_error_clear(&e);
}

int main(void)
{
    test_names();
    if (geteuid() != 0) {
        TAP_SKIP("netlink tests: not root (they need CAP_NET_ADMIN and a private network "
                 "namespace)");
        return tap_done();
    }
    if (unshare(CLONE_NEWNET) < 0) {
        char why[128];
        snprintf(why, sizeof(why), "netlink tests: cannot make a private network namespace: %s",
                 strerror(errno));
        TAP_SKIP(why);
        return tap_done();
    }
    self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    test_netlink();
    close(self_ns);
    return tap_done();
}
