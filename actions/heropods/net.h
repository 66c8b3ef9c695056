/* The network module: links, addresses and routes over netlink, in-process (libmnl).
 * No program is ever spawned. Every request asks for the kernel's ack; a refusal is
 * reported as "<what hero tried>: <strerror of the kernel's errno>", followed by the
 * kernel's extended-ack text in parentheses when it gave one.
 *
 * "The host" below means the network namespace of the calling thread. IPv4 addresses
 * are uint32_t in host byte order (10.197.0.1 is 0x0ac50001).
 *
 * Per instance (idempotent, re-applied on every run):
 *     hero_net_bridge_ensure(bridge_name, gateway_ip, prefix_len, owner)
 *     hero_net_ipv4_forwarding()
 * Per container, after `crun create` and before `crun start`:
 *     hero_net_host_name(store uid, container id) -> host-side name
 *     hero_net_veth_attach(init pid, host name, bridge, leased addr, prefix, gateway)
 * and on stop, delete, or a failed start: hero_net_link_delete(host name). */
#ifndef HERO_NET_H
#define HERO_NET_H

#include <netinet/in.h>
#include <stdint.h>

#include "runtime/error.h"

/* Longest interface name the kernel accepts (IFNAMSIZ - 1). */
#define HERO_NET_IFNAME_MAX 15

/* Creates the bridge `name` if it does not exist, makes sure gateway/prefix_len is
 * on it (an address already there is fine) and sets it up. Idempotent. An existing
 * link of that name that is not a bridge is an error naming it. So is a subnet that
 * overlaps an IPv4 address on any other link of the host (EADDRINUSE, checked before
 * anything is made): the error names the address and the link, and the instance when
 * the link is another hero bridge.
 *
 * With owner_key (NULL: no owner), the bridge is also one instance's, checked before
 * anything is put on it: when it has no alias (IFLA_IFALIAS, what `ip -d link` shows as
 * "alias"), it gets owner_text (cut to 254 bytes), which starts with owner_key:
 * HERO_NET_OWNER_PREFIX, then what tells the owner apart (the part that is compared;
 * anything after it, after a space, is for people). A bridge whose alias is hero's and
 * names another owner is an error (EBUSY) naming that one, and is left as it is: two
 * instances on one bridge would hand out the same addresses. A bridge with an alias of
 * the user's (not hero's) is used as it is. */
#define HERO_NET_OWNER_PREFIX "hero: "
int hero_net_bridge_ensure(const char *name, uint32_t gateway, int prefix_len,
                           const char *owner_key, const char *owner_text, hero_error_t *err);

/* The checks of hero_net_bridge_ensure on an existing link `name`, on their own, before
 * anything changes: a link that is no bridge, or a bridge another instance owns, is
 * the same error; a missing link is fine. */
int hero_net_bridge_check(const char *name, const char *owner_key, hero_error_t *err);

/* The overlap check of hero_net_bridge_ensure on its own, before anything changes:
 * whether gateway/prefix_len's subnet overlaps an IPv4 address on a link of the host
 * other than skip0 and skip1 (names; NULL or a missing link: nothing skipped). */
int hero_net_subnet_check(uint32_t gateway, int prefix_len, const char *skip0,
                          const char *skip1, hero_error_t *err);

/* Deletes the bridge `name`; a missing one is fine. Refuses a link of that name that
 * is not a bridge. */
int hero_net_bridge_delete(const char *name, hero_error_t *err);

/* Writes 1 to /proc/sys/net/ipv4/ip_forward (of the caller's network namespace). */
int hero_net_ipv4_forwarding(hero_error_t *err);

/* Creates a veth pair whose peer is made directly inside the network namespace of
 * `pid` under the name eth0; the host end `host_name` is enslaved to `bridge` and
 * set up. Then, inside the namespace: eth0 gets addr/prefix_len and goes up, lo goes
 * up, and the default route goes via `gateway`. On any failure the host end (and so
 * the pair) is deleted before the error is returned. */
int hero_net_veth_attach(int pid, const char *host_name, const char *bridge, uint32_t addr,
                         int prefix_len, uint32_t gateway, hero_error_t *err);

/* Deletes the link `name` on the host (a veth end takes its peer with it); a missing
 * link is fine. */
int hero_net_link_delete(const char *name, hero_error_t *err);

/* The host-side interface name of a container: "vh" + the first 6 hex digits of the
 * store's uid + the container id in base 36 (lowercase). Always at most 15
 * characters and distinct for distinct ids of one store: ids below 36^7 (about
 * 7.8e10, so every id up to 2^36) take this form; larger or negative ids take
 * "vx" + the id as an unsigned 64-bit number in base 36 (at most 13 digits), a
 * form that cannot meet the first one. */
void hero_net_host_name(const char *store_uid, int64_t id, char out[16]);

/* ---- the IPv6 overlay (mycelium, yggdrasil) ---- */

/* Writes 1 to /proc/sys/net/ipv6/conf/all/forwarding. */
int hero_net_ipv6_forwarding(hero_error_t *err);

/* A container's overlay veth: host end `host_name` (up, fe80::1/64, a route for
 * addr/128 through it), peer `ctr_name` made in the namespace of `pid` with addr/128
 * and the route range/range_len via fe80::1. No bridge: the host routes between
 * containers and the overlay daemon's TUN. On failure the pair is deleted. */
int hero_net_overlay_attach(int pid, const char *host_name, const char *ctr_name,
                            const struct in6_addr *addr, const struct in6_addr *range,
                            int range_len, hero_error_t *err);

/* The two names of a container's overlay veth: "<p>h-<u><i>" on the host and
 * "<p>-<u><i>" in the container, where p is the 3-character prefix ("vmy" for
 * mycelium), u the first 4 hex digits of the store's uid and i the id in base 36
 * (ids up to 36^6 - 1; larger ones are an error). */
int hero_net_overlay_names(const char *prefix, const char *store_uid, int64_t id,
                           char host[16], char ctr[16], hero_error_t *err);

#endif
