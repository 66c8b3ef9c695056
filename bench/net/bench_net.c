/* bench/net: per-container network set-up and teardown, through hero's netlink module
 * and IP leases (actions/heropods/net.h, runtime/store.h) against the reference's
 * sequence of `ip` and `nsenter` commands that reaches the same result.
 *
 *   sudo build/bench_net [-n N]
 *
 * Everything happens in a private network namespace made at the top of main, so the
 * host's interfaces are never seen or touched, and no packet is sent anywhere. The
 * "containers" are child processes in network namespaces of their own, as after
 * `crun create`. A benchmark, not a test: it exits 0 whether the targets are met or
 * not, 1 when hero or the reference fails (or a result does not check out), 2 on a
 * usage error or when it cannot run at all. README.md beside this file says more. */
#include "actions/heropods/net.h"
#include "runtime/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))
#define BRIDGE "hbnbench0"
#define NET IP(10, 199, 0, 0)
#define PREFIX 16
#define GATEWAY IP(10, 199, 0, 1)
/* hero leases from the bottom of the /16 (10.199.0.2 up); the reference's
 * containers get 10.199.128.1 up, so both share the bridge and the prefix */
#define REF_BASE IP(10, 199, 128, 0)
#define INSTANCE "bench"
#define N_MAX 10000

#define TARGET_SETUP_MS 2.0 /* hero set-up per container, median: at most */
#define TARGET_RATIO 10.0   /* reference set-up / hero set-up, medians: at least */

/* the reference's per-container commands (set-up), in its order */
enum { R_ADD, R_MASTER, R_UP, R_NETNS, R_RENAME, R_ADDR, R_ETH0UP, R_LOUP, R_ROUTE, R_STEPS };
static const char *const ref_step_name[R_STEPS] = {
    "ip link add H type veth peer name C", "ip link set H master " BRIDGE,
    "ip link set H up", "ip link set C netns PID",
    "nsenter -t PID -n ip link set C name eth0", "nsenter -t PID -n ip addr add A/16 dev eth0",
    "nsenter -t PID -n ip link set dev eth0 up", "nsenter -t PID -n ip link set lo up",
    "nsenter -t PID -n ip route add default via G",
};

typedef struct ctr {
    pid_t pid;           /* the "container": a child in its own network namespace */
    int64_t id;          /* hero: the store's container id */
    char host[16];       /* host-side veth name */
    char peer[16];       /* reference: the container end's name before it becomes eth0 */
    uint32_t addr;
    bool linked;         /* a host-side link may exist: delete it on cleanup */
} ctr_t;

static volatile sig_atomic_t stop;
static int self_ns = -1, devnull = -1;
static char ip_bin[256], nsenter_bin[256];

static ctr_t *hero_c, *ref_c; /* n + 1 each: [0] is the warm-up container */
static int n_ctr;
static hero_store_t *store;
static char tmpdir[256];
static bool bridge_made;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU of this process (who = RUSAGE_SELF) or of its reaped children, ms */
static double cpu_ms(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void ip4_str(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile p (0..100) of v[0..n-1]; v is sorted in place */
static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    if (p == 50 && n % 2 == 0)
        return (v[n / 2 - 1] + v[n / 2]) / 2;
    int k = (int)(p / 100.0 * n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* ---- the "containers" ---- */

static int child_start(ctr_t *c)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    pid_t parent = getpid();
    c->pid = fork();
    if (c->pid < 0) {
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (c->pid == 0) {
        /* gone with the benchmark, whatever way it ends */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_DFL);
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char x;
    ssize_t n;
    while ((n = read(ready[0], &x, 1)) < 0 && errno == EINTR) {
    }
    close(ready[0]);
    return n == 1 ? 0 : -1;
}

static void child_stop(ctr_t *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
    }
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
        perror("bench_net: cannot return to its own network namespace");
        _exit(2);
    }
}

/* ---- commands (the reference), posix_spawn and waitpid, no shell ---- */

static int find_bin(const char *name, char out[256])
{
    const char *path = getenv("PATH");
    char *dirs = NULL;
    if (asprintf(&dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "") < 0)
        return -1;
    int rc = -1;
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (!*d)
            continue;
        snprintf(out, 256, "%s/%s", d, name);
        if (access(out, X_OK) == 0) {
            rc = 0;
            break;
        }
    }
    free(dirs);
    return rc;
}

static void print_argv(FILE *f, char *const argv[])
{
    for (int i = 0; argv[i]; i++)
        fprintf(f, "%s%s", i ? " " : "", argv[i]);
}

/* Runs argv[0] (an absolute path) with stdin and stdout on /dev/null, or stdout on
 * out_fd when >= 0; stderr is the benchmark's. 0 when it exits 0. */
static int run_cmd(char *const argv[], int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, devnull, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd >= 0 ? out_fd : devnull, 1);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        fprintf(stderr, "bench_net: cannot run %s: %s\n", argv[0], strerror(e));
        return -1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fprintf(stderr, "bench_net: `");
    print_argv(stderr, argv);
    if (WIFEXITED(st))
        fprintf(stderr, "` exited %d\n", WEXITSTATUS(st));
    else
        fprintf(stderr, "` was killed by signal %d\n", WTERMSIG(st));
    return -1;
}

/* The reference's set-up of one container; step times (ms) go to t[R_STEPS]. */
static int ref_setup(ctr_t *c, double t[R_STEPS])
{
    char pid[16], addr[24], gw[16], a[16];
    snprintf(pid, sizeof(pid), "%d", (int)c->pid);
    ip4_str(c->addr, a);
    snprintf(addr, sizeof(addr), "%s/%d", a, PREFIX);
    ip4_str(GATEWAY, gw);
    char *I = ip_bin, *E = nsenter_bin, *H = c->host, *C = c->peer;
    char *const *cmds[R_STEPS] = {
        [R_ADD] = (char *const[]){I, "link", "add", H, "type", "veth", "peer", "name", C, NULL},
        [R_MASTER] = (char *const[]){I, "link", "set", H, "master", BRIDGE, NULL},
        [R_UP] = (char *const[]){I, "link", "set", H, "up", NULL},
        [R_NETNS] = (char *const[]){I, "link", "set", C, "netns", pid, NULL},
        [R_RENAME] = (char *const[]){E, "-t", pid, "-n", I, "link", "set", C, "name", "eth0", NULL},
        [R_ADDR] = (char *const[]){E, "-t", pid, "-n", I, "addr", "add", addr, "dev", "eth0", NULL},
        [R_ETH0UP] = (char *const[]){E, "-t", pid, "-n", I, "link", "set", "dev", "eth0", "up", NULL},
        [R_LOUP] = (char *const[]){E, "-t", pid, "-n", I, "link", "set", "lo", "up", NULL},
        [R_ROUTE] = (char *const[]){E, "-t", pid, "-n", I, "route", "add", "default", "via", gw, NULL},
    };
    for (int s = 0; s < R_STEPS; s++) {
        double t0 = now_ms();
        if (s == R_ADD)
            c->linked = true;
        if (run_cmd(cmds[s], -1) < 0)
            return -1;
        t[s] = now_ms() - t0;
    }
    return 0;
}

static int ref_teardown(ctr_t *c)
{
    char *const argv[] = {ip_bin, "link", "delete", c->host, NULL};
    if (run_cmd(argv, -1) < 0)
        return -1;
    c->linked = false;
    return 0;
}

/* ---- hero ---- */

static int hero_setup(ctr_t *c, double *lease_ms, double *attach_ms)
{
    hero_error_t err = HERO_ERROR_INIT;
    double t0 = now_ms();
    if (hero_store_lease_ipv4(store, INSTANCE, NET, PREFIX, GATEWAY, c->id, &c->addr, &err) < 0) {
        fprintf(stderr, "bench_net: hero: %s\n", err.msg);
        hero_error_clear(&err);
        return -1;
    }
    double t1 = now_ms();
    hero_net_host_name(hero_store_uid(store), c->id, c->host);
    c->linked = true;
    if (hero_net_veth_attach(c->pid, c->host, BRIDGE, c->addr, PREFIX, GATEWAY, &err) < 0) {
        fprintf(stderr, "bench_net: hero: %s\n", err.msg);
        hero_error_clear(&err);
        return -1;
    }
    double t2 = now_ms();
    *lease_ms = t1 - t0;
    *attach_ms = t2 - t1;
    return 0;
}

static int hero_teardown(ctr_t *c, double *del_ms, double *rel_ms)
{
    hero_error_t err = HERO_ERROR_INIT;
    double t0 = now_ms();
    if (hero_net_link_delete(c->host, &err) < 0) {
        fprintf(stderr, "bench_net: hero: %s\n", err.msg);
        hero_error_clear(&err);
        return -1;
    }
    c->linked = false;
    double t1 = now_ms();
    if (hero_store_lease_release(store, c->id, &err) < 0) {
        fprintf(stderr, "bench_net: hero: %s\n", err.msg);
        hero_error_clear(&err);
        return -1;
    }
    double t2 = now_ms();
    *del_ms = t1 - t0;
    *rel_ms = t2 - t1;
    return 0;
}

/* ---- checking the result (outside every timed region) ---- */

typedef struct link_q {
    int index, master;
    unsigned flags;
} link_q_t;

static int on_link(const struct nlmsghdr *m, void *data)
{
    link_q_t *q = data;
    if (m->nlmsg_type != RTM_NEWLINK)
        return MNL_CB_OK;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(m);
    q->index = ifm->ifi_index;
    q->flags = ifm->ifi_flags;
    const struct nlattr *a;
    mnl_attr_for_each(a, m, sizeof(*ifm)) {
        if (mnl_attr_get_type(a) == IFLA_MASTER && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
            q->master = (int)mnl_attr_get_u32(a);
    }
    return MNL_CB_OK;
}

/* The link `name` of the calling thread's namespace: 0 found, 1 none, -1 error. */
static int link_query(const char *name, link_q_t *q)
{
    memset(q, 0, sizeof(*q));
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return -1;
    int rc = -1;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
        goto out;
    char buf[8192];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    nlh->nlmsg_seq = 1;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        goto out;
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
    if (n < 0)
        goto out;
    int r = mnl_cb_run(buf, (size_t)n, 1, mnl_socket_get_portid(nl), on_link, q);
    if (r >= 0)
        rc = q->index > 0 ? 0 : 1;
    else if (errno == ENODEV)
        rc = 1;
out:
    mnl_socket_close(nl);
    return rc;
}

/* The IPv4 address and netmask of ifname in the current namespace, 0 when none. */
static uint32_t if_addr(const char *ifname, uint32_t *mask)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    uint32_t a = 0;
    *mask = 0;
    if (ioctl(s, SIOCGIFADDR, &ifr) == 0)
        a = ntohl(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr);
    if (ioctl(s, SIOCGIFNETMASK, &ifr) == 0)
        *mask = ntohl(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr);
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

/* 1 when the current namespace's default route goes via gateway out of ifname */
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

/* After set-up: eth0 in the container has addr/16 and is up, lo is up, the default
 * route goes via the gateway, and the host end is up on the bridge. NULL when all
 * holds, else what does not. */
static const char *check_up(const ctr_t *c, int bridge_index)
{
    link_q_t q;
    if (link_query(c->host, &q) != 0)
        return "no host-side link";
    if (!(q.flags & IFF_UP))
        return "the host-side link is down";
    if (q.master != bridge_index)
        return "the host-side link is not on the bridge";
    if (enter(c->pid) < 0)
        return "cannot enter the container's namespace";
    const char *why = NULL;
    uint32_t mask;
    if (if_addr("eth0", &mask) != c->addr || mask != ~(uint32_t)0 << (32 - PREFIX))
        why = "eth0 does not have the address";
    else if (!if_up("eth0"))
        why = "eth0 is down";
    else if (!if_up("lo"))
        why = "lo is down";
    else if (!default_route_via("eth0", GATEWAY))
        why = "no default route via the gateway";
    leave();
    return why;
}

/* After teardown: no host link, no eth0 in the container. */
static const char *check_down(const ctr_t *c)
{
    link_q_t q;
    if (link_query(c->host, &q) != 1)
        return "the host-side link is still there";
    if (enter(c->pid) < 0)
        return "cannot enter the container's namespace";
    const char *why = if_nametoindex("eth0") ? "eth0 is still in the container" : NULL;
    leave();
    return why;
}

/* `nsenter -t PID -n ip -o -4 addr show dev eth0`, printed with a prefix */
static void show_sample(const char *who, const ctr_t *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)c->pid);
    char *const argv[] = {nsenter_bin, "-t", pid, "-n", ip_bin, "-o", "-4", "addr", "show",
                          "dev", "eth0", NULL};
    int rc = run_cmd(argv, p[1]);
    close(p[1]);
    char buf[512];
    ssize_t n = rc == 0 ? read(p[0], buf, sizeof(buf) - 1) : -1;
    close(p[0]);
    if (n <= 0)
        return;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    /* `ip -o` ends the line with a backslash and the lifetimes: keep the address part */
    char *bs = strchr(buf, '\\');
    if (bs)
        *bs = 0;
    printf("  %-9s (pid %d, host end %s): %s\n", who, (int)c->pid, c->host, buf);
}

/* ---- clean-up: children, links, the bridge, the store; idempotent ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void cleanup(void)
{
    hero_error_t err = HERO_ERROR_INIT;
    ctr_t *sets[2] = {hero_c, ref_c};
    for (int k = 0; k < 2; k++)
        for (int i = 0; sets[k] && i <= n_ctr; i++) {
            if (sets[k][i].linked) {
                /* a netlink delete of the host end, for both paths: it takes the peer */
                if (hero_net_link_delete(sets[k][i].host, &err) < 0) {
                    fprintf(stderr, "bench_net: clean-up: %s\n", err.msg);
                    hero_error_clear(&err);
                }
                sets[k][i].linked = false;
            }
            child_stop(&sets[k][i]);
        }
    if (bridge_made) {
        if (hero_net_bridge_delete(BRIDGE, &err) < 0) {
            fprintf(stderr, "bench_net: clean-up: %s\n", err.msg);
            hero_error_clear(&err);
        }
        bridge_made = false;
    }
    if (store) {
        hero_store_close(store);
        store = NULL;
    }
    if (tmpdir[0]) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        tmpdir[0] = 0;
    }
}

static double mean_of(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

/* median, p90, mean of v[0..n-1] (v is left as it is; tmp holds n) */
static void stats(const double *v, int n, double *tmp, double out[3])
{
    memcpy(tmp, v, (size_t)n * sizeof(double));
    out[0] = pct(tmp, n, 50);
    out[1] = pct(tmp, n, 90);
    out[2] = mean_of(v, n);
}

static void row(const char *label, const double v[3])
{
    printf("%-34s %9.3f %8.3f %8.3f\n", label, v[0], v[1], v[2]);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sudo build/bench_net [-n N]\n"
               "  -n N   containers per path (default 50, at most %d)\n", N_MAX);
}

static const char *mark(bool ok)
{
    return ok ? "PASS" : "MISS";
}

int main(int argc, char **argv)
{
    int n = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > N_MAX) {
                fprintf(stderr, "bench_net: -n needs a count from 1 to %d\n", N_MAX);
                return 2;
            }
            n = (int)v;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_net: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (geteuid() != 0) {
        fprintf(stderr, "bench_net: network namespaces need root: sudo %s\n", argv[0]);
        return 2;
    }
    /* first of all: a network namespace of our own; nothing below can reach the host's */
    if (unshare(CLONE_NEWNET) < 0) {
        perror("bench_net: unshare(CLONE_NEWNET)");
        return 2;
    }
    self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (self_ns < 0 || devnull < 0) {
        perror("bench_net: open");
        return 2;
    }
    if (find_bin("ip", ip_bin) < 0 || find_bin("nsenter", nsenter_bin) < 0) {
        fprintf(stderr, "bench_net: the reference needs `ip` (iproute2) and `nsenter` "
                        "(util-linux)\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 2;
    hero_error_t err = HERO_ERROR_INIT;
    n_ctr = n;
    hero_c = calloc((size_t)n + 1, sizeof(ctr_t));
    ref_c = calloc((size_t)n + 1, sizeof(ctr_t));
    double *h_set = calloc((size_t)n, sizeof(double)), *h_lease = calloc((size_t)n, sizeof(double)),
           *h_att = calloc((size_t)n, sizeof(double)), *h_down = calloc((size_t)n, sizeof(double)),
           *h_del = calloc((size_t)n, sizeof(double)), *h_rel = calloc((size_t)n, sizeof(double)),
           *r_set = calloc((size_t)n, sizeof(double)), *r_down = calloc((size_t)n, sizeof(double)),
           *r_step = calloc((size_t)n * R_STEPS, sizeof(double)), *tmp = calloc((size_t)n, sizeof(double));
    if (!hero_c || !ref_c || !h_set || !h_lease || !h_att || !h_down || !h_del || !h_rel ||
        !r_set || !r_down || !r_step || !tmp) {
        fprintf(stderr, "bench_net: out of memory\n");
        return 2;
    }

    /* the temporary store: hero's real base dirs are on disk, and so is this one */
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/hero-bench-net.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("bench_net: mkdtemp");
        tmpdir[0] = 0;
        goto out;
    }
    char base[300];
    snprintf(base, sizeof(base), "%s/base", tmpdir);
    if (hero_store_open(base, &store, &err) < 0) {
        fprintf(stderr, "bench_net: %s\n", err.msg);
        goto out;
    }

    struct utsname un;
    uname(&un);
    double la[3] = {0};
    getloadavg(la, 3);
    printf("hero network benchmark: %d containers per path, in a private network namespace\n", n);
    printf("machine: %ld CPUs, Linux %s; load average %.2f %.2f %.2f\n",
           sysconf(_SC_NPROCESSORS_ONLN), un.release, la[0], la[1], la[2]);
    printf("bridge %s 10.199.0.1/16; hero leases from 10.199.0.2 up (store %s/hero.db),\n"
           "the reference's containers get 10.199.128.1 up; reference commands: %s, %s\n",
           BRIDGE, base, ip_bin, nsenter_bin);
    fflush(stdout);

    if (hero_net_bridge_ensure(BRIDGE, GATEWAY, PREFIX, NULL, NULL, &err) < 0) {
        fprintf(stderr, "bench_net: %s\n", err.msg);
        goto out;
    }
    bridge_made = true;
    int bridge_index = (int)if_nametoindex(BRIDGE);

    /* the containers: [0] of each path is a warm-up, not counted */
    for (int i = 0; i <= n && !stop; i++) {
        if (child_start(&hero_c[i]) < 0 || child_start(&ref_c[i]) < 0) {
            perror("bench_net: cannot start a container process");
            goto out;
        }
        hero_c[i].id = i + 1;
        ref_c[i].addr = REF_BASE + 1 + (uint32_t)i;
        snprintf(ref_c[i].host, sizeof(ref_c[i].host), "vbr-%06x", (unsigned)i);
        snprintf(ref_c[i].peer, sizeof(ref_c[i].peer), "veth-%06x", (unsigned)i);
    }
    if (stop)
        goto interrupted;
    rc = 1;

    /* ---- hero: a warm-up, then set-up, check, teardown, check ---- */
    double warm[4], d1, d2, t0;
    t0 = now_ms();
    if (hero_setup(&hero_c[0], &d1, &d2) < 0)
        goto out;
    warm[0] = now_ms() - t0;
    t0 = now_ms();
    if (hero_teardown(&hero_c[0], &d1, &d2) < 0)
        goto out;
    warm[1] = now_ms() - t0;

    double cpu0 = cpu_ms(RUSAGE_SELF), w0 = now_ms();
    for (int i = 1; i <= n && !stop; i++) {
        t0 = now_ms();
        if (hero_setup(&hero_c[i], &h_lease[i - 1], &h_att[i - 1]) < 0)
            goto out;
        h_set[i - 1] = now_ms() - t0;
    }
    double h_set_wall = now_ms() - w0, h_set_cpu = cpu_ms(RUSAGE_SELF) - cpu0;
    if (stop)
        goto interrupted;

    int bad = 0;
    for (int i = 1; i <= n; i++) {
        const char *why = check_up(&hero_c[i], bridge_index);
        uint32_t leased = 0;
        if (!why && (hero_store_lease_get(store, INSTANCE, hero_c[i].id, &leased, &err) != 0 ||
                     leased != hero_c[i].addr))
            why = "the store has no matching lease";
        hero_error_clear(&err);
        if (why && bad++ < 5)
            fprintf(stderr, "bench_net: hero, container %d (pid %d, %s): %s\n", i,
                    (int)hero_c[i].pid, hero_c[i].host, why);
    }
    if (bad) {
        fprintf(stderr, "bench_net: hero's set-up is wrong in %d of %d containers\n", bad, n);
        goto out;
    }
    printf("\nchecked after set-up, in every container of both paths (netlink, ioctl, /proc):\n"
           "  eth0 has its address/16 and is up, lo is up, the default route goes via\n"
           "  10.199.0.1, the host end is up on %s, hero's lease matches. Samples:\n", BRIDGE);
    show_sample("hero", &hero_c[1]);
    fflush(stdout);

    cpu0 = cpu_ms(RUSAGE_SELF);
    w0 = now_ms();
    for (int i = 1; i <= n && !stop; i++) {
        t0 = now_ms();
        if (hero_teardown(&hero_c[i], &h_del[i - 1], &h_rel[i - 1]) < 0)
            goto out;
        h_down[i - 1] = now_ms() - t0;
    }
    double h_down_wall = now_ms() - w0, h_down_cpu = cpu_ms(RUSAGE_SELF) - cpu0;
    if (stop)
        goto interrupted;
    for (int i = 1; i <= n; i++) {
        const char *why = check_down(&hero_c[i]);
        uint32_t leased;
        if (!why && hero_store_lease_get(store, INSTANCE, hero_c[i].id, &leased, &err) != 1)
            why = "its lease is still in the store";
        hero_error_clear(&err);
        if (why) {
            fprintf(stderr, "bench_net: hero teardown, container %d: %s\n", i, why);
            goto out;
        }
    }

    /* ---- the reference: the same ---- */
    double st[R_STEPS];
    t0 = now_ms();
    if (ref_setup(&ref_c[0], st) < 0)
        goto out;
    warm[2] = now_ms() - t0;
    t0 = now_ms();
    if (ref_teardown(&ref_c[0]) < 0)
        goto out;
    warm[3] = now_ms() - t0;

    double rcpu0 = cpu_ms(RUSAGE_SELF), rch0 = cpu_ms(RUSAGE_CHILDREN);
    w0 = now_ms();
    for (int i = 1; i <= n && !stop; i++) {
        t0 = now_ms();
        if (ref_setup(&ref_c[i], st) < 0)
            goto out;
        r_set[i - 1] = now_ms() - t0;
        for (int s = 0; s < R_STEPS; s++)
            r_step[s * n + (i - 1)] = st[s];
    }
    double r_set_wall = now_ms() - w0, r_set_self = cpu_ms(RUSAGE_SELF) - rcpu0,
           r_set_child = cpu_ms(RUSAGE_CHILDREN) - rch0;
    if (stop)
        goto interrupted;
    bad = 0;
    for (int i = 1; i <= n; i++) {
        const char *why = check_up(&ref_c[i], bridge_index);
        if (why && bad++ < 5)
            fprintf(stderr, "bench_net: reference, container %d (pid %d, %s): %s\n", i,
                    (int)ref_c[i].pid, ref_c[i].host, why);
    }
    if (bad) {
        fprintf(stderr, "bench_net: the reference's set-up is wrong in %d of %d containers\n",
                bad, n);
        goto out;
    }
    show_sample("reference", &ref_c[1]);
    fflush(stdout);

    rcpu0 = cpu_ms(RUSAGE_SELF);
    rch0 = cpu_ms(RUSAGE_CHILDREN);
    w0 = now_ms();
    for (int i = 1; i <= n && !stop; i++) {
        t0 = now_ms();
        if (ref_teardown(&ref_c[i]) < 0)
            goto out;
        r_down[i - 1] = now_ms() - t0;
    }
    double r_down_wall = now_ms() - w0, r_down_self = cpu_ms(RUSAGE_SELF) - rcpu0,
           r_down_child = cpu_ms(RUSAGE_CHILDREN) - rch0;
    if (stop)
        goto interrupted;
    for (int i = 1; i <= n; i++) {
        const char *why = check_down(&ref_c[i]);
        if (why) {
            fprintf(stderr, "bench_net: reference teardown, container %d: %s\n", i, why);
            goto out;
        }
    }
    printf("checked after teardown: no host link and no eth0 left in any container, no lease "
           "left in the store\n");

    /* ---- figures ---- */
    printf("\nfirst container of each path (warm-up, not counted): hero set-up %.3f ms, "
           "teardown %.3f ms;\n  reference set-up %.3f ms, teardown %.3f ms\n",
           warm[0], warm[1], warm[2], warm[3]);
    double hs[3], hl[3], ha[3], hd[3], hk[3], hr[3], rs[3], rd[3];
    stats(h_set, n, tmp, hs);
    stats(h_lease, n, tmp, hl);
    stats(h_att, n, tmp, ha);
    stats(h_down, n, tmp, hd);
    stats(h_del, n, tmp, hk);
    stats(h_rel, n, tmp, hr);
    stats(r_set, n, tmp, rs);
    stats(r_down, n, tmp, rd);
    printf("\nper container, ms (wall)              median      p90     mean\n");
    row("hero set-up", hs);
    row("  lease (SQLite transaction)", hl);
    row("  hero_net_veth_attach", ha);
    row("hero teardown", hd);
    row("  hero_net_link_delete", hk);
    row("  hero_store_lease_release", hr);
    row("reference set-up (9 commands)", rs);
    row("reference teardown (1 command)", rd);
    printf("\nreference set-up by command, median ms:\n");
    for (int s = 0; s < R_STEPS; s++) {
        double v[3];
        stats(r_step + (size_t)s * n, n, tmp, v);
        printf("  %-48s %7.3f\n", ref_step_name[s], v[0]);
    }
    printf("\nCPU per container, ms (getrusage):\n"
           "  hero:      set-up %.3f, teardown %.3f (all of it in hero's own process)\n"
           "  reference: set-up %.3f in the commands + %.3f spawning them, "
           "teardown %.3f + %.3f\n",
           h_set_cpu / n, h_down_cpu / n, r_set_child / n, r_set_self / n, r_down_child / n,
           r_down_self / n);
    printf("whole loops, ms per container: hero set-up %.3f, teardown %.3f; reference set-up "
           "%.3f, teardown %.3f\n",
           h_set_wall / n, h_down_wall / n, r_set_wall / n, r_down_wall / n);
    double ratio_set = rs[0] / hs[0], ratio_down = rd[0] / hd[0],
           ratio_both = (rs[0] + rd[0]) / (hs[0] + hd[0]);
    printf("\nreference/hero (medians): set-up %.1fx, teardown %.1fx, set-up + teardown %.1fx\n",
           ratio_set, ratio_down, ratio_both);
    printf("\ntarget hero set-up <= %.0f ms per container: %s (median %.3f ms, p90 %.3f ms)\n",
           TARGET_SETUP_MS, mark(hs[0] <= TARGET_SETUP_MS), hs[0], hs[1]);
    printf("target reference/hero set-up >= %.0fx: %s (%.1fx)\n", TARGET_RATIO,
           mark(ratio_set >= TARGET_RATIO), ratio_set);
    printf("  (for information, the same bar on teardown: %s, %.1fx; on set-up + teardown: "
           "%s, %.1fx)\n",
           mark(ratio_down >= TARGET_RATIO), ratio_down, mark(ratio_both >= TARGET_RATIO),
           ratio_both);
    getloadavg(la, 3);
    printf("load average at the end: %.2f %.2f %.2f (other work on the machine skews wall "
           "times)\n", la[0], la[1], la[2]);
    rc = 0;
    goto out;

interrupted:
    printf("\ninterrupted: cleaning up\n");
    rc = 130;
out:
    hero_error_clear(&err);
    cleanup();
    return rc;
}
