/* The network module over netlink (libmnl): the instance's bridge and its gateway
 * address, IPv4 forwarding, and per container a veth pair whose peer is created
 * directly inside the container's network namespace. Never spawns `ip`: each step
 * is one request with NLM_F_ACK, and the kernel's refusal is reported with its own
 * errno text (plus its extended-ack message when it sends one). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Requests are small; replies are one link (a few KB) or a dump of addresses, whose
 * parts the kernel may make up to 32 KiB (a smaller buffer would cut them). */
#define REQ_SIZE 1024
#define REPLY_SIZE 32768
/* A dump the kernel says changed while it was read (NLM_F_DUMP_INTR) is read again. */
#define DUMP_TRIES 3
#define EXTACK_SIZE 256

typedef struct nl {
    struct mnl_socket *sock;
    unsigned portid;
    unsigned seq;
    char extack[EXTACK_SIZE]; /* the kernel's message for the last refusal, or "" */
} nl_t;

/* ---- errors ---- */

/* "what: strerror(code)" or, when the kernel explained itself,
 * "what: strerror(code) (kernel's text)". Returns -1. */
static int nl_fail(hero_error_t *err, const nl_t *nl, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int nl_fail(hero_error_t *err, const nl_t *nl, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = hero_xvasprintf(fmt, ap);
    va_end(ap);
    if (nl && nl->extack[0]) {
        hero_error_set(err, 0, "%s: %s (%s)", what, strerror(code), nl->extack);
        if (err)
            err->code = code;
    } else {
        hero_error_set(err, code, "%s", what);
    }
    free(what);
    return -1;
}

static int check_ifname(const char *name, const char *role, hero_error_t *err)
{
    if (!name || !*name)
        return hero_error_set(err, EINVAL, "the %s name is empty", role);
    if (strlen(name) > HERO_NET_IFNAME_MAX)
        return hero_error_set(err, 0, "the %s name %s is longer than %d characters", role,
                              name, HERO_NET_IFNAME_MAX);
    if (strchr(name, '/') || strchr(name, ':') || strpbrk(name, " \t\n") ||
        !strcmp(name, ".") || !strcmp(name, ".."))
        return hero_error_set(err, 0, "the %s name %s is not a valid interface name", role,
                              name);
    return 0;
}

/* ---- sockets ---- */

static int nl_bind(nl_t *nl, hero_error_t *err)
{
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        hero_error_set(err, errno, "cannot bind a netlink socket");
        mnl_socket_close(nl->sock);
        nl->sock = NULL;
        return -1;
    }
    /* Extended acks carry the kernel's own text; capped acks keep replies small.
     * Both are optional: an old kernel simply does not send them. */
    int on = 1;
    mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &on, sizeof(on));
    mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &on, sizeof(on));
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    nl->extack[0] = 0;
    return 0;
}

/* A socket in the calling thread's network namespace (the host's). */
static int nl_open(nl_t *nl, hero_error_t *err)
{
    memset(nl, 0, sizeof(*nl));
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl->sock)
        return hero_error_set(err, errno, "cannot open a netlink socket");
    return nl_bind(nl, err);
}

/* A socket that lives in the namespace nsfd: setns() affects only the calling thread
 * and a socket keeps the namespace it was made in, so switch, open, switch back. */
static int nl_open_in(nl_t *nl, int nsfd, int pid, hero_error_t *err)
{
    memset(nl, 0, sizeof(*nl));
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return hero_error_set(err, errno, "cannot open hero's own network namespace");
    int rc = -1;
    if (setns(nsfd, CLONE_NEWNET) < 0) {
        hero_error_set(err, errno, "cannot enter the network namespace of pid %d", pid);
    } else {
        nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
        int e = errno;
        if (setns(self, CLONE_NEWNET) < 0) {
            /* hero would go on in the container's namespace: nothing safe is left */
            perror("hero: cannot return to its own network namespace");
            _exit(70);
        }
        if (!nl->sock)
            hero_error_set(err, e, "cannot open a netlink socket in the network namespace "
                                   "of pid %d", pid);
        else
            rc = nl_bind(nl, err);
    }
    close(self);
    return rc;
}

static void nl_close(nl_t *nl)
{
    if (nl->sock)
        mnl_socket_close(nl->sock);
    nl->sock = NULL;
}

/* ---- one request, its replies, its ack ---- */

static void read_extack(nl_t *nl, const struct nlmsghdr *m)
{
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
    if (!(m->nlmsg_flags & NLM_F_ACK_TLVS))
        return;
    size_t off = sizeof(*e);
    if (!(m->nlmsg_flags & NLM_F_CAPPED))
        off += MNL_ALIGN(mnl_nlmsg_get_payload_len(&e->msg));
    if (MNL_NLMSG_HDRLEN + off > m->nlmsg_len)
        return;
    const struct nlattr *a;
    mnl_attr_for_each(a, m, off) {
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0) {
            snprintf(nl->extack, sizeof(nl->extack), "%s", mnl_attr_get_str(a));
            /* the kernel's sentences sometimes end with a newline or a full stop */
            size_t n = strlen(nl->extack);
            while (n && (nl->extack[n - 1] == '\n' || nl->extack[n - 1] == ' '))
                nl->extack[--n] = 0;
        }
    }
}

/* Sends nlh and reads until its ack (or the end of a dump). Every other message
 * answering this request goes to cb. Returns 0, or -errno: the kernel's (a dump that
 * failed partway says so in its end), or the socket's; -EINTR for a dump that changed
 * while it was read (its parts may disagree). nl->extack holds the kernel's text for a
 * refusal. */
static int nl_talk(nl_t *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    nl->extack[0] = 0;
    unsigned seq = nlh->nlmsg_seq = ++nl->seq;
    if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    char *buf = hero_xmalloc(REPLY_SIZE);
    int rc = 0;
    bool interrupted = false;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, buf, REPLY_SIZE);
        if (n < 0) {
            rc = -errno;
            break;
        }
        int len = (int)n;
        for (const struct nlmsghdr *m = (const void *)buf; mnl_nlmsg_ok(m, len);
             m = mnl_nlmsg_next(m, &len)) {
            if (m->nlmsg_seq != seq || m->nlmsg_pid != nl->portid)
                continue; /* not ours (a late answer to something else) */
            if (m->nlmsg_flags & NLM_F_DUMP_INTR)
                interrupted = true;
            if (m->nlmsg_type == NLMSG_ERROR) {
                if (m->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr))) {
                    rc = -EBADMSG;
                } else {
                    const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
                    rc = e->error; /* 0 for an ack, -errno for a refusal */
                    if (rc)
                        read_extack(nl, m);
                }
                goto out;
            }
            if (m->nlmsg_type == NLMSG_DONE) {
                if (m->nlmsg_len >= mnl_nlmsg_size(sizeof(int)))
                    rc = *(const int *)mnl_nlmsg_get_payload(m); /* 0, or -errno */
                if (rc == 0 && interrupted)
                    rc = -EINTR;
                goto out;
            }
            if (cb && m->nlmsg_type >= NLMSG_MIN_TYPE)
                cb(m, data);
        }
    }
out:
    free(buf);
    return rc;
}

static struct nlmsghdr *req_init(char *buf, uint16_t type, uint16_t flags)
{
    memset(buf, 0, REQ_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    return nlh;
}

/* ---- links ---- */

typedef struct link_info {
    int index;
    char name[IFNAMSIZ]; /* IFLA_IFNAME */
    char kind[32]; /* IFLA_INFO_KIND ("bridge", "veth", ...), "" for none */
    char alias[256]; /* IFLA_IFALIAS, "" for none */
} link_info_t;

static int on_link(const struct nlmsghdr *m, void *data)
{
    link_info_t *li = data;
    if (m->nlmsg_type != RTM_NEWLINK)
        return MNL_CB_OK;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(m);
    li->index = ifm->ifi_index;
    const struct nlattr *a, *b;
    mnl_attr_for_each(a, m, sizeof(*ifm)) {
        if (mnl_attr_get_type(a) == IFLA_IFNAME && mnl_attr_validate(a, MNL_TYPE_STRING) == 0)
            snprintf(li->name, sizeof(li->name), "%.*s",
                     (int)strnlen(mnl_attr_get_payload(a), mnl_attr_get_payload_len(a)),
                     (const char *)mnl_attr_get_payload(a));
        if (mnl_attr_get_type(a) == IFLA_IFALIAS && mnl_attr_validate(a, MNL_TYPE_STRING) == 0)
            snprintf(li->alias, sizeof(li->alias), "%.*s",
                     (int)strnlen(mnl_attr_get_payload(a), mnl_attr_get_payload_len(a)),
                     (const char *)mnl_attr_get_payload(a));
        if (mnl_attr_get_type(a) != IFLA_LINKINFO)
            continue;
        mnl_attr_for_each_nested(b, a) {
            if (mnl_attr_get_type(b) == IFLA_INFO_KIND &&
                mnl_attr_validate(b, MNL_TYPE_STRING) == 0)
                snprintf(li->kind, sizeof(li->kind), "%.*s",
                         (int)strnlen(mnl_attr_get_payload(b), mnl_attr_get_payload_len(b)),
                         (const char *)mnl_attr_get_payload(b));
        }
    }
    return MNL_CB_OK;
}

/* The link named `name`, or (name NULL) the one of index `index`: 0 and li filled,
 * -ENODEV when there is no such link, or another -errno. */
static int link_get_by(nl_t *nl, const char *name, int index, link_info_t *li)
{
    memset(li, 0, sizeof(*li));
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_GETLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    if (name)
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    else
        ifm->ifi_index = index;
    mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    int rc = nl_talk(nl, nlh, on_link, li);
    if (rc == 0 && li->index <= 0)
        rc = -ENODEV;
    return rc;
}

static int link_get(nl_t *nl, const char *name, link_info_t *li)
{
    return link_get_by(nl, name, 0, li);
}

static int link_set_up(nl_t *nl, int index)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = index;
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    return nl_talk(nl, nlh, NULL, NULL);
}

static int link_del_by_name(nl_t *nl, const char *name)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_DELLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    return nl_talk(nl, nlh, NULL, NULL);
}

static int addr_add(nl_t *nl, int index, uint32_t addr, int prefix_len)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = (unsigned char)prefix_len;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)index;
    mnl_attr_put_u32(nlh, IFA_LOCAL, htonl(addr));
    mnl_attr_put_u32(nlh, IFA_ADDRESS, htonl(addr));
    if (prefix_len < 31) {
        uint32_t host_mask = prefix_len == 0 ? 0xffffffffu : (1u << (32 - prefix_len)) - 1;
        mnl_attr_put_u32(nlh, IFA_BROADCAST, htonl(addr | host_mask));
    }
    return nl_talk(nl, nlh, NULL, NULL);
}

static int route_default_add(nl_t *nl, int index, uint32_t gateway)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = 0;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put_u32(nlh, RTA_GATEWAY, htonl(gateway));
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, nlh, NULL, NULL);
}

static void ip4_str(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

static int check_prefix(int prefix_len, hero_error_t *err)
{
    if (prefix_len < 1 || prefix_len > 32)
        return hero_error_set(err, 0, "prefix length %d is not between 1 and 32", prefix_len);
    return 0;
}

/* ---- addresses already on the host ---- */

/* What on_addr looks for, and the first address it found. */
typedef struct addr_clash {
    uint32_t net;    /* the subnet, prefix_len bits of it */
    int prefix_len;
    int skip[2];     /* links whose addresses are no clash (0: none) */
    int index;       /* out: the link of the first overlapping address, 0 for none */
    uint32_t addr;   /* out: that address */
    int addr_len;    /* out: and its prefix length */
} addr_clash_t;

static bool prefixes_overlap(uint32_t a, int a_len, uint32_t b, int b_len)
{
    int len = a_len < b_len ? a_len : b_len;
    uint32_t mask = len ? 0xffffffffu << (32 - len) : 0;
    return (a & mask) == (b & mask);
}

static int on_addr(const struct nlmsghdr *m, void *data)
{
    addr_clash_t *c = data;
    if (m->nlmsg_type != RTM_NEWADDR || c->index)
        return MNL_CB_OK;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(m);
    if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index == c->skip[0] ||
        (int)ifa->ifa_index == c->skip[1])
        return MNL_CB_OK;
    /* IFA_LOCAL is the address; IFA_ADDRESS is the same, or on a point-to-point link
     * the peer, whose prefix is the one given (the local address is then a /32) */
    bool has_local = false, has_peer = false;
    uint32_t local = 0, peer = 0;
    const struct nlattr *a;
    mnl_attr_for_each(a, m, sizeof(*ifa)) {
        int t = mnl_attr_get_type(a);
        if ((t != IFA_LOCAL && t != IFA_ADDRESS) || mnl_attr_validate(a, MNL_TYPE_U32) < 0)
            continue;
        if (t == IFA_LOCAL) {
            has_local = true;
            local = ntohl(mnl_attr_get_u32(a));
        } else {
            has_peer = true;
            peer = ntohl(mnl_attr_get_u32(a));
        }
    }
    if (!has_local) { /* (some links give only IFA_ADDRESS) */
        has_local = has_peer;
        local = peer;
    }
    bool ptp = has_local && has_peer && local != peer;
    int local_len = ptp ? 32 : ifa->ifa_prefixlen;
    if (has_local && prefixes_overlap(local, local_len, c->net, c->prefix_len)) {
        c->addr = local;
        c->addr_len = local_len;
    } else if (ptp && prefixes_overlap(peer, ifa->ifa_prefixlen, c->net, c->prefix_len)) {
        c->addr = peer;
        c->addr_len = ifa->ifa_prefixlen;
    } else {
        return MNL_CB_OK;
    }
    c->index = (int)ifa->ifa_index;
    return MNL_CB_OK;
}

/* Refuses a subnet that overlaps an IPv4 address on any link of the host but the
 * two skipped: another instance's bridge, a LAN, a VPN. Two networks with one range
 * would route each other's traffic into the wrong one (and two instances would hand
 * out the same addresses on different bridges). */
static int subnet_free(nl_t *nl, uint32_t gateway, int prefix_len, int skip0, int skip1,
                       hero_error_t *err)
{
    addr_clash_t c;
    int r = -EINTR;
    for (int i = 0; i < DUMP_TRIES && r == -EINTR; i++) {
        c = (addr_clash_t){.net = gateway & (0xffffffffu << (32 - prefix_len)),
                           .prefix_len = prefix_len,
                           .skip = {skip0, skip1}};
        char buf[REQ_SIZE];
        struct nlmsghdr *nlh = req_init(buf, RTM_GETADDR, NLM_F_DUMP);
        struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
        ifa->ifa_family = AF_INET;
        r = nl_talk(nl, nlh, on_addr, &c);
    }
    if (r < 0)
        return nl_fail(err, nl, -r, "cannot list the host's IPv4 addresses");
    if (!c.index)
        return 0;
    char net[16], addr[16];
    ip4_str(c.net, net);
    ip4_str(c.addr, addr);
    link_info_t li;
    if (link_get_by(nl, NULL, c.index, &li) < 0)
        snprintf(li.name, sizeof(li.name), "link %d", c.index);
    bool hero = !strncmp(li.alias, HERO_NET_OWNER_PREFIX, strlen(HERO_NET_OWNER_PREFIX));
    return hero_error_set_plain(err, EADDRINUSE,
                                "subnet %s/%d overlaps %s/%d on %s%s%s%s: give this instance "
                                "a subnet of its own",
                                net, prefix_len, addr, c.addr_len, li.name,
                                hero ? " (the bridge of " : "",
                                hero ? li.alias + strlen(HERO_NET_OWNER_PREFIX) : "",
                                hero ? ")" : "");
}

/* ---- the bridge ---- */

static const char *kind_name(const link_info_t *li)
{
    return li->kind[0] ? li->kind : "device without a kind";
}

/* Whether the alias names owner_key's owner: it starts with the key, and the key ends
 * there or a space follows. */
static bool alias_is(const char *alias, const char *owner_key)
{
    size_t n = strlen(owner_key);
    return !strncmp(alias, owner_key, n) && (alias[n] == 0 || alias[n] == ' ');
}

/* The error for a link of the bridge's name that is no bridge; 0 for a bridge. */
static int not_a_bridge(const char *name, const link_info_t *li, hero_error_t *err)
{
    if (strcmp(li->kind, "bridge") == 0)
        return 0;
    return hero_error_set(err, 0, "cannot use %s as the bridge: a link of that name exists and "
                                  "is a %s, not a bridge", name, kind_name(li));
}

/* The error for a bridge another hero instance owns; 0 when it is ours, or the
 * user's own bridge with an alias of theirs, or has no alias yet. */
static int owner_refusal(const char *name, const link_info_t *li, const char *owner_key,
                         hero_error_t *err)
{
    if (!strncmp(li->alias, HERO_NET_OWNER_PREFIX, strlen(HERO_NET_OWNER_PREFIX)) &&
        !alias_is(li->alias, owner_key)) {
        return hero_error_set_plain(err, EBUSY,
                                    "bridge %s belongs to another hero instance (%s): give "
                                    "this one another bridge_name (or, if that instance is "
                                    "gone, remove the bridge: ip link del %s)",
                                    name, li->alias + strlen(HERO_NET_OWNER_PREFIX), name);
    }
    return 0;
}

/* The ownership part of hero_net_bridge_ensure (see net.h), on the bridge li is. */
static int bridge_claim(nl_t *nl, const char *name, link_info_t *li, const char *owner_key,
                        const char *owner_text, hero_error_t *err)
{
    if (!li->alias[0]) {
        /* the kernel takes at most IFALIASZ - 1 bytes, its NUL included */
        char alias[sizeof(li->alias) - 1];
        snprintf(alias, sizeof(alias), "%s", owner_text);
        char buf[REQ_SIZE];
        struct nlmsghdr *nlh = req_init(buf, RTM_NEWLINK, 0);
        struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
        ifm->ifi_family = AF_UNSPEC;
        ifm->ifi_index = li->index;
        mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias);
        int r = nl_talk(nl, nlh, NULL, NULL);
        if (r < 0)
            return nl_fail(err, nl, -r, "cannot set the alias of bridge %s", name);
        /* read back: another hero may have claimed it at the same moment */
        r = link_get(nl, name, li);
        if (r < 0)
            return nl_fail(err, nl, -r, "cannot look up bridge %s", name);
    }
    return owner_refusal(name, li, owner_key, err);
}

int hero_net_bridge_ensure(const char *name, uint32_t gateway, int prefix_len,
                           const char *owner_key, const char *owner_text, hero_error_t *err)
{
    if (check_ifname(name, "bridge", err) < 0 || check_prefix(prefix_len, err) < 0)
        return -1;
    nl_t nl;
    if (nl_open(&nl, err) < 0)
        return -1;
    int rc = -1;
    link_info_t li;
    int r = link_get(&nl, name, &li);
    if (r < 0 && r != -ENODEV) {
        nl_fail(err, &nl, -r, "cannot look up bridge %s", name);
        goto out;
    }
    if (r == 0 && not_a_bridge(name, &li, err) < 0)
        goto out;
    /* before anything is made: the bridge's own address is no clash */
    if (subnet_free(&nl, gateway, prefix_len, r == 0 ? li.index : 0, 0, err) < 0)
        goto out;
    if (r == -ENODEV) {
        char buf[REQ_SIZE];
        struct nlmsghdr *nlh = req_init(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
        ifm->ifi_family = AF_UNSPEC;
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
        struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
        mnl_attr_nest_end(nlh, info);
        r = nl_talk(&nl, nlh, NULL, NULL);
        /* EEXIST: another hero made it in between; look at what is there now */
        if (r < 0 && r != -EEXIST) {
            nl_fail(err, &nl, -r, "cannot create bridge %s", name);
            goto out;
        }
        r = link_get(&nl, name, &li);
    }
    if (r < 0) {
        nl_fail(err, &nl, -r, "cannot look up bridge %s", name);
        goto out;
    }
    if (not_a_bridge(name, &li, err) < 0) /* (another hero may have made it meanwhile) */
        goto out;
    /* before anything of this instance goes onto it */
    if (owner_key && bridge_claim(&nl, name, &li, owner_key, owner_text, err) < 0)
        goto out;
    r = addr_add(&nl, li.index, gateway, prefix_len);
    if (r < 0 && r != -EEXIST) {
        char a[16];
        ip4_str(gateway, a);
        nl_fail(err, &nl, -r, "cannot add address %s/%d to bridge %s", a, prefix_len, name);
        goto out;
    }
    r = link_set_up(&nl, li.index);
    if (r < 0) {
        nl_fail(err, &nl, -r, "cannot set bridge %s up", name);
        goto out;
    }
    rc = 0;
out:
    nl_close(&nl);
    return rc;
}

int hero_net_bridge_check(const char *name, const char *owner_key, hero_error_t *err)
{
    if (check_ifname(name, "bridge", err) < 0)
        return -1;
    nl_t nl;
    if (nl_open(&nl, err) < 0)
        return -1;
    link_info_t li;
    int rc = 0, r = link_get(&nl, name, &li);
    if (r == -ENODEV)
        rc = 0;
    else if (r < 0)
        rc = nl_fail(err, &nl, -r, "cannot look up bridge %s", name);
    else if ((rc = not_a_bridge(name, &li, err)) == 0)
        rc = owner_refusal(name, &li, owner_key, err);
    nl_close(&nl);
    return rc;
}

int hero_net_subnet_check(uint32_t gateway, int prefix_len, const char *skip0,
                          const char *skip1, hero_error_t *err)
{
    if (check_prefix(prefix_len, err) < 0)
        return -1;
    nl_t nl;
    if (nl_open(&nl, err) < 0)
        return -1;
    int skip[2] = {0, 0};
    const char *names[2] = {skip0, skip1};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        link_info_t li;
        int r = names[i] ? link_get(&nl, names[i], &li) : -ENODEV;
        if (r == 0)
            skip[i] = li.index;
        else if (r != -ENODEV)
            rc = nl_fail(err, &nl, -r, "cannot look up link %s", names[i]);
    }
    if (rc == 0)
        rc = subnet_free(&nl, gateway, prefix_len, skip[0], skip[1], err);
    nl_close(&nl);
    return rc;
}

int hero_net_bridge_delete(const char *name, hero_error_t *err)
{
    if (check_ifname(name, "bridge", err) < 0)
        return -1;
    nl_t nl;
    if (nl_open(&nl, err) < 0)
        return -1;
    int rc = 0;
    link_info_t li;
    int r = link_get(&nl, name, &li);
    if (r == -ENODEV)
        goto out;
    if (r < 0) {
        rc = nl_fail(err, &nl, -r, "cannot look up bridge %s", name);
        goto out;
    }
    if (strcmp(li.kind, "bridge") != 0) {
        rc = hero_error_set(err, 0, "will not delete %s: it is a %s, not a bridge", name,
                            kind_name(&li));
        goto out;
    }
    r = link_del_by_name(&nl, name);
    if (r < 0 && r != -ENODEV)
        rc = nl_fail(err, &nl, -r, "cannot delete bridge %s", name);
out:
    nl_close(&nl);
    return rc;
}

/* Writes "1" to a /proc/sys file of the caller's network namespace. */
static int sysctl_on(const char *path, const char *what, hero_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot open %s", path);
    ssize_t n = write(fd, "1\n", 2);
    int e = errno;
    if (close(fd) < 0 && n == 2) {
        n = -1;
        e = errno;
    }
    if (n != 2)
        return hero_error_set(err, n < 0 ? e : EIO, "cannot enable %s (%s)", what, path);
    return 0;
}

int hero_net_ipv4_forwarding(hero_error_t *err)
{
    return sysctl_on("/proc/sys/net/ipv4/ip_forward", "IPv4 forwarding", err);
}

int hero_net_link_delete(const char *name, hero_error_t *err)
{
    if (check_ifname(name, "link", err) < 0)
        return -1;
    nl_t nl;
    if (nl_open(&nl, err) < 0)
        return -1;
    int rc = 0;
    int r = link_del_by_name(&nl, name);
    if (r < 0 && r != -ENODEV)
        rc = nl_fail(err, &nl, -r, "cannot delete link %s", name);
    nl_close(&nl);
    return rc;
}

/* ---- a container's veth ---- */

/* Opens the network namespace of `pid` (the fd is returned) and a netlink socket of
 * the host's in *nl; -1 with err when either fails (nothing is left open then). */
static int ns_and_socket(int pid, nl_t *nl, hero_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0)
        return hero_error_set(err, errno, "cannot open the network namespace of pid %d", pid);
    if (nl_open(nl, err) < 0) {
        close(nsfd);
        return -1;
    }
    return nsfd;
}

/* A veth pair: `host_name` here, up (enslaved to the link `master` unless it is 0),
 * and `peer_name` made directly in the namespace nsfd. 0 or -errno. */
static int veth_create(nl_t *nl, const char *host_name, int master, const char *peer_name,
                       int nsfd)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_name);
    if (master)
        mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifm));
    pifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_name);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)nsfd);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    return nl_talk(nl, nlh, NULL, NULL);
}

/* Inside the container: eth0 gets its address and goes up, lo goes up, and the
 * default route goes via the gateway. */
static int configure_inside(int nsfd, int pid, uint32_t addr, int prefix_len,
                            uint32_t gateway, hero_error_t *err)
{
    nl_t nl;
    if (nl_open_in(&nl, nsfd, pid, err) < 0)
        return -1;
    int rc = -1, r;
    char a[16], g[16];
    ip4_str(addr, a);
    ip4_str(gateway, g);
    link_info_t eth0, lo;
    if ((r = link_get(&nl, "eth0", &eth0)) < 0) {
        nl_fail(err, &nl, -r, "cannot find eth0 in the container (pid %d)", pid);
        goto out;
    }
    if ((r = addr_add(&nl, eth0.index, addr, prefix_len)) < 0) {
        nl_fail(err, &nl, -r, "cannot add address %s/%d to eth0 in the container (pid %d)", a,
                prefix_len, pid);
        goto out;
    }
    if ((r = link_set_up(&nl, eth0.index)) < 0) {
        nl_fail(err, &nl, -r, "cannot set eth0 up in the container (pid %d)", pid);
        goto out;
    }
    if ((r = link_get(&nl, "lo", &lo)) < 0 || (r = link_set_up(&nl, lo.index)) < 0) {
        nl_fail(err, &nl, -r, "cannot bring up lo in the container (pid %d)", pid);
        goto out;
    }
    if ((r = route_default_add(&nl, eth0.index, gateway)) < 0) {
        nl_fail(err, &nl, -r, "cannot add the default route via %s in the container (pid %d)",
                g, pid);
        goto out;
    }
    rc = 0;
out:
    nl_close(&nl);
    return rc;
}

int hero_net_veth_attach(int pid, const char *host_name, const char *bridge, uint32_t addr,
                         int prefix_len, uint32_t gateway, hero_error_t *err)
{
    if (pid <= 0)
        return hero_error_set(err, EINVAL, "cannot attach %s: no container pid", host_name);
    if (check_ifname(host_name, "host-side veth", err) < 0 ||
        check_ifname(bridge, "bridge", err) < 0 || check_prefix(prefix_len, err) < 0)
        return -1;
    nl_t nl;
    int nsfd = ns_and_socket(pid, &nl, err);
    if (nsfd < 0)
        return -1;
    int rc = -1, r;
    link_info_t br;
    if ((r = link_get(&nl, bridge, &br)) < 0) {
        nl_fail(err, &nl, -r, "cannot attach %s to bridge %s", host_name, bridge);
        goto out;
    }

    if ((r = veth_create(&nl, host_name, br.index, "eth0", nsfd)) < 0) {
        /* nothing was created: a link of this name, if any, is not ours to remove */
        nl_fail(err, &nl, -r, "cannot create veth %s on bridge %s", host_name, bridge);
        goto out;
    }

    if (configure_inside(nsfd, pid, addr, prefix_len, gateway, err) < 0) {
        /* deleting the host end deletes its peer in the container too */
        link_del_by_name(&nl, host_name);
        hero_error_wrap(err, "cannot set up the network of veth %s", host_name);
        goto out;
    }
    rc = 0;
out:
    nl_close(&nl);
    close(nsfd);
    return rc;
}

/* ---- a container's overlay (IPv6) veth ---- */

static int addr6_add(nl_t *nl, int index, const struct in6_addr *a, int prefix_len)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET6;
    ifa->ifa_prefixlen = (unsigned char)prefix_len;
    ifa->ifa_scope = IN6_IS_ADDR_LINKLOCAL(a) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    /* no duplicate address detection: the address is hero's alone on a two-ended
     * link, and DAD would keep it unusable for a second */
    ifa->ifa_flags = IFA_F_NODAD;
    ifa->ifa_index = (unsigned)index;
    mnl_attr_put(nlh, IFA_LOCAL, sizeof(*a), a);
    mnl_attr_put(nlh, IFA_ADDRESS, sizeof(*a), a);
    mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    return nl_talk(nl, nlh, NULL, NULL);
}

/* dst/len via gw (NULL: on the link) out of `index`; replaces one that is there. */
static int route6_add(nl_t *nl, int index, const struct in6_addr *dst, int len,
                      const struct in6_addr *gw)
{
    char buf[REQ_SIZE];
    struct nlmsghdr *nlh = req_init(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET6;
    rtm->rtm_dst_len = (unsigned char)len;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_DST, sizeof(*dst), dst);
    if (gw)
        mnl_attr_put(nlh, RTA_GATEWAY, sizeof(*gw), gw);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, nlh, NULL, NULL);
}

/* fe80::1, the host end's address on every overlay veth (link-local: one per link) */
static const struct in6_addr host_end_ll = {{{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}};

static int overlay_inside(int nsfd, int pid, const char *ctr_name, const struct in6_addr *addr,
                          const struct in6_addr *range, int range_len, hero_error_t *err)
{
    nl_t nl;
    if (nl_open_in(&nl, nsfd, pid, err) < 0)
        return -1;
    int rc = -1, r;
    char a[INET6_ADDRSTRLEN], rg[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, addr, a, sizeof(a));
    inet_ntop(AF_INET6, range, rg, sizeof(rg));
    link_info_t li, lo;
    if ((r = link_get(&nl, ctr_name, &li)) < 0) {
        nl_fail(err, &nl, -r, "cannot find %s in the container (pid %d)", ctr_name, pid);
        goto out;
    }
    /* a /128: the rest of the node's /64 is other containers, reached through the host */
    if ((r = addr6_add(&nl, li.index, addr, 128)) < 0) {
        nl_fail(err, &nl, -r, "cannot add address %s/128 to %s in the container (pid %d)", a,
                ctr_name, pid);
        goto out;
    }
    if ((r = link_set_up(&nl, li.index)) < 0 || (r = link_get(&nl, "lo", &lo)) < 0 ||
        (r = link_set_up(&nl, lo.index)) < 0) {
        nl_fail(err, &nl, -r, "cannot set %s up in the container (pid %d)", ctr_name, pid);
        goto out;
    }
    if ((r = route6_add(&nl, li.index, range, range_len, &host_end_ll)) < 0) {
        nl_fail(err, &nl, -r, "cannot add the route %s/%d via fe80::1 in the container (pid %d)",
                rg, range_len, pid);
        goto out;
    }
    rc = 0;
out:
    nl_close(&nl);
    return rc;
}

int hero_net_overlay_attach(int pid, const char *host_name, const char *ctr_name,
                            const struct in6_addr *addr, const struct in6_addr *range,
                            int range_len, hero_error_t *err)
{
    if (pid <= 0)
        return hero_error_set(err, EINVAL, "cannot attach %s: no container pid", host_name);
    if (check_ifname(host_name, "host-side veth", err) < 0 ||
        check_ifname(ctr_name, "container-side veth", err) < 0)
        return -1;
    if (range_len < 1 || range_len > 128)
        return hero_error_set(err, 0, "prefix length %d is not between 1 and 128", range_len);
    nl_t nl;
    int nsfd = ns_and_socket(pid, &nl, err);
    if (nsfd < 0)
        return -1;
    int rc = -1, r;
    if ((r = veth_create(&nl, host_name, 0, ctr_name, nsfd)) < 0) {
        nl_fail(err, &nl, -r, "cannot create veth %s", host_name);
        goto out;
    }
    link_info_t li;
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, addr, a, sizeof(a));
    if ((r = link_get(&nl, host_name, &li)) < 0 ||
        (r = addr6_add(&nl, li.index, &host_end_ll, 64)) < 0) {
        nl_fail(err, &nl, -r, "cannot add fe80::1/64 to %s", host_name);
        goto undo;
    }
    if (overlay_inside(nsfd, pid, ctr_name, addr, range, range_len, err) < 0)
        goto undo;
    if ((r = route6_add(&nl, li.index, addr, 128, NULL)) < 0) {
        nl_fail(err, &nl, -r, "cannot add the route %s/128 dev %s", a, host_name);
        goto undo;
    }
    rc = 0;
    goto out;
undo:
    /* deleting the host end deletes its peer and every route through it */
    link_del_by_name(&nl, host_name);
    hero_error_wrap(err, "cannot set up the overlay veth %s", host_name);
out:
    nl_close(&nl);
    close(nsfd);
    return rc;
}

int hero_net_ipv6_forwarding(hero_error_t *err)
{
    return sysctl_on("/proc/sys/net/ipv6/conf/all/forwarding", "IPv6 forwarding", err);
}

/* ---- names ---- */

static int base36(uint64_t v, char *out)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

void hero_net_host_name(const char *store_uid, int64_t id, char out[16])
{
    /* 36^7: the largest id whose 7 base-36 digits fit after "vh" and 6 uid digits */
    const int64_t short_limit = 78364164096;
    if (id >= 0 && id < short_limit) {
        out[0] = 'v';
        out[1] = 'h';
        bool end = !store_uid;
        for (int i = 0; i < 6; i++) {
            char c = end ? 0 : store_uid[i];
            if (!c)
                end = true;
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                c = '0';
            out[2 + i] = c;
        }
        base36((uint64_t)id, out + 8);
    } else {
        out[0] = 'v';
        out[1] = 'x';
        base36((uint64_t)id, out + 2);
    }
}

int hero_net_overlay_names(const char *prefix, const char *store_uid, int64_t id,
                           char host[16], char ctr[16], hero_error_t *err)
{
    /* prefix (3) + "h-" + 4 uid digits + up to 6 base-36 digits = 15 */
    if (strlen(prefix) != 3)
        return hero_error_set(err, EINVAL, "overlay link prefix '%s' is not 3 characters", prefix);
    if (id < 0 || id >= 2176782336) /* 36^6 */
        return hero_error_set(err, 0, "container id %lld is too large for an overlay link name",
                              (long long)id);
    char u[5];
    for (int i = 0; i < 4; i++) {
        char c = store_uid && (int)strlen(store_uid) > i ? store_uid[i] : '0';
        u[i] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ? c : '0';
    }
    u[4] = 0;
    char b[8];
    base36((uint64_t)id, b);
    snprintf(host, 16, "%sh-%s%s", prefix, u, b);
    snprintf(ctr, 16, "%s-%s%s", prefix, u, b);
    return 0;
}
