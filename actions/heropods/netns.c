/* The container's network namespace, over netlink (never `ip`): for now only the
 * loopback interface; the bridge and the overlay come with the network modules. */
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pods.h"

/* A netlink socket that lives in pid's network namespace: setns() affects only the
 * calling thread and the socket keeps the namespace it was made in, so switch,
 * open, and switch back. */
static struct mnl_socket *socket_in_netns(int pid, hero_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
        hero_error_set(err, errno, "cannot open the network namespace of pid %d", pid);
        return NULL;
    }
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) {
        hero_error_set(err, errno, "cannot open hero's own network namespace");
        close(target);
        return NULL;
    }
    struct mnl_socket *nl = NULL;
    if (setns(target, CLONE_NEWNET) < 0) {
        hero_error_set(err, errno, "cannot enter the network namespace of pid %d", pid);
    } else {
        nl = mnl_socket_open(NETLINK_ROUTE);
        int e = errno;
        if (setns(self, CLONE_NEWNET) < 0) {
            /* hero would go on in the container's namespace: nothing safe is left */
            perror("hero: cannot return to its own network namespace");
            _exit(70);
        }
        if (!nl)
            hero_error_set(err, e, "cannot open a netlink socket");
        else if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
            hero_error_set(err, errno, "cannot bind a netlink socket");
            mnl_socket_close(nl);
            nl = NULL;
        }
    }
    close(self);
    close(target);
    return nl;
}

/* Sends one request and reads the kernel's ack; its error is the kernel's text. */
static int talk(struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what, hero_error_t *err)
{
    unsigned seq = nlh->nlmsg_seq = (unsigned)time(NULL);
    unsigned portid = mnl_socket_get_portid(nl);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return hero_error_set(err, errno, "%s: netlink send", what);
    char buf[MNL_SOCKET_BUFFER_SIZE];
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
    if (n < 0)
        return hero_error_set(err, errno, "%s: netlink receive", what);
    if (mnl_cb_run(buf, (size_t)n, seq, portid, NULL, NULL) < 0)
        return hero_error_set(err, errno, "%s", what);
    return 0;
}

int hero_pods_loopback_up(int pid, hero_error_t *err)
{
    struct mnl_socket *nl = socket_in_netns(pid, err);
    if (!nl)
        return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = 1; /* lo is always the first interface of a namespace */
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    int rc = talk(nl, nlh, "cannot bring up lo in the container", err);
    mnl_socket_close(nl);
    return rc;
}
