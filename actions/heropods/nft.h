/* Firewall rules of an instance, through libnftables in-process (one batch, so one
 * kernel transaction, per change; no program is spawned). Everything lives in a
 * table of hero's own, `ip <table>`, named by hero_nft_table_name(); the only rules
 * hero puts anywhere else are accept rules in the iptables-nft `ip filter FORWARD`
 * chain when that chain exists (docker leaves its policy at DROP, and a drop in any
 * base chain is final), each tagged with the comment "hero:<table>" so they can be
 * found and removed again. Those two rules (iifname BRIDGE accept, oifname BRIDGE
 * accept) match interface names only: a native `ct` match in that chain would make
 * iptables -S and iptables-save refuse the whole filter table.
 *
 * The table holds:
 *   - the forward policy of the bridge: everything in from it is accepted; out to
 *     it only related/established or DNAT'd (published) traffic, the rest is
 *     dropped (an accept alone would change nothing: other chains still run);
 *   - masquerade of the subnet leaving through any other interface, when nat;
 *   - masquerade of DNAT'd traffic into the bridge from 127.0.0.0/8 or from the
 *     subnet itself (a container reaching a published port through the host);
 *   - published ports: a map `ports` (proto . host port : container addr . port)
 *     used by DNAT in prerouting (for the host's local addresses) and in output
 *     (so the host reaches its own published ports, 127.0.0.1 included: the bridge
 *     gets route_localnet=1 and such connections are masqueraded).
 * Addresses are uint32_t in host byte order. Kernel and nft errors are reported
 * with nft's own message. */
#ifndef HERO_NFT_H
#define HERO_NFT_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/store.h"

/* Longest table name hero_nft_table_name() makes, plus the NUL. */
#define HERO_NFT_TABLE_MAX 48

/* "hero_" + the first 8 hex digits of the store uid + "_" + the bridge name, so two
 * base dirs (stores) on one host never share a table. */
void hero_nft_table_name(const char *store_uid, const char *bridge, char out[HERO_NFT_TABLE_MAX]);

typedef struct hero_nft_instance {
    const char *table;   /* hero_nft_table_name() */
    const char *bridge;  /* the instance's bridge (it exists already) */
    uint32_t subnet;     /* network address */
    int prefix_len;
    bool nat;            /* masquerade the subnet out of the host */
} hero_nft_instance_t;

/* Makes the instance's rules exactly what `in` says, idempotently: a second call
 * leaves one copy of every rule; published ports already in the map are kept. Also
 * the FORWARD accept rules (when `ip filter FORWARD` exists) and route_localnet on
 * the bridge. */
int hero_nft_instance_apply(const hero_nft_instance_t *in, hero_error_t *err);

/* Room for the note hero_nft_instance_ensure() keeps, NUL included. */
#define HERO_NFT_STAMP_MAX 112

/* hero_nft_instance_apply(), unless the rules are in place already: after an apply
 * whose batch was the only change to the ruleset in between, the store gets a note
 * (key "nft.applied.<table>") of the ruleset's identity (boot, network namespace,
 * generation) and of the rules; a later call that finds the kernel's ruleset still
 * at that generation, for the same rules, sends nothing. Any change to any nftables
 * rule of the namespace since then (by anyone) bumps the generation, and the rules
 * are applied again. route_localnet is written either way (a bridge made anew has
 * it off). 0 applied, 1 in place already, -1 error. */
int hero_nft_instance_ensure(const hero_nft_instance_t *in, hero_store_t *store,
                             hero_error_t *err);

/* Removes the table and hero's FORWARD rules for it; nothing there is fine. */
int hero_nft_instance_remove(const char *table, hero_error_t *err);

typedef enum { HERO_NFT_TCP = 6, HERO_NFT_UDP = 17 } hero_nft_proto_t;

typedef struct hero_nft_port {
    hero_nft_proto_t proto;
    uint16_t host_port;
    uint32_t addr;       /* the container's address */
    uint16_t ctr_port;
} hero_nft_port_t;

/* Parses "8080:80", "8080:80/tcp" or "53:53/udp" (the container_new `ports` form).
 * 0, or -1 with err naming the text. */
int hero_nft_port_parse(const char *text, hero_nft_port_t *p, hero_error_t *err);

/* Is the host port free? Tries to bind it on 0.0.0.0 for the protocol; in use is an
 * error "host port 8080/tcp is already in use on this host". */
int hero_nft_port_check_free(hero_nft_proto_t proto, uint16_t port, hero_error_t *err);

/* Publishes a port: sets the map element proto . host_port to addr . ctr_port,
 * replacing an element of the same key. The table must exist (apply). One
 * transaction; replacing another value takes a second one (delete and add together:
 * the kernel does not change a map value in place). */
int hero_nft_port_add(const char *table, const hero_nft_port_t *p, hero_error_t *err);

/* Unpublishes proto . host_port; a missing element or table is fine. */
int hero_nft_port_del(const char *table, hero_nft_proto_t proto, uint16_t host_port,
                      hero_error_t *err);

/* The reference under which a published port is recorded in the state store
 * ("<table> tcp 8080"), and its inverse (0, or -1 when `ref` is not one). */
void hero_nft_port_ref(const char *table, hero_nft_proto_t proto, uint16_t host_port,
                       char out[HERO_NFT_TABLE_MAX + 16]);
int hero_nft_port_ref_parse(const char *ref, char table[HERO_NFT_TABLE_MAX],
                            hero_nft_proto_t *proto, uint16_t *host_port);

/* The overlay's veths (vmyh-*, vygh-*) through the host's `ip6 filter FORWARD`
 * chain (ip6tables-nft; docker sets its policy to DROP): two accept rules per name
 * pattern at its top, tagged "hero:overlay", replaced on every call. Nothing when
 * the chain does not exist. */
int hero_nft_overlay_forward(hero_error_t *err);

#endif
