/* Private to actions/heropods/: instances and their stores, where a container's
 * pieces live on the host, crun, the container's root, and teardown. */
#ifndef HERO_PODS_H
#define HERO_PODS_H

#include <stdbool.h>
#include <netinet/in.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/error.h"
#include "runtime/proc.h"
#include "runtime/store.h"

/* ---- instances (instance.c) ---- */
/* An instance's IPv4 network, from its configure settings. Addresses in host byte
 * order. */
typedef struct hero_pods_net {
    char *bridge;
    uint32_t subnet, gateway;
    int prefix_len;
    bool nat;
} hero_pods_net_t;

/* An instance's IPv6 overlay node, from enable_mycelium / enable_yggdrasil. */
typedef struct hero_pods_overlay {
    char kind[16];            /* "mycelium" or "yggdrasil" */
    char subnet[64];          /* the node's /64, as the daemon wrote it */
    struct in6_addr prefix;   /* its first 64 bits (the rest zero) */
    struct in6_addr node;     /* the node's own address (:: when unknown) */
    struct in6_addr range;    /* the range routed into containers */
    int range_len;
} hero_pods_overlay_t;

typedef struct hero_pods_instance {
    char *name;
    char *base_dir;
    hero_store_t *store;     /* shared by every instance of the same base dir */
    char **dns_servers;      /* NULL-terminated */
    hero_pods_net_t net;
    bool net_ready;          /* this process has applied the network since configure */
    bool use_podman;         /* images come through podman (configure use_podman:true) */
    int overlay_state;       /* 0: not read from the store yet, 1: none, 2: `overlay` holds it */
    hero_pods_overlay_t overlay;
} hero_pods_instance_t;

/* The instance for an action: configured earlier in this run, or found in the
 * store of the default base dir ($HERO_BASE_DIR, else /var/lib/hero), or, for
 * "default", created there with default settings. */
int hero_pods_instance_get(const char *name, hero_pods_instance_t **out, hero_error_t *err);
/* The default base dir (not owned). */
const char *hero_pods_default_base_dir(void);
/* Opens (once per process) the store of a base dir. */
int hero_pods_store(const char *base_dir, hero_store_t **out, hero_error_t *err);

/* ---- paths (paths.c); all returned strings are the caller's to free ---- */
char *hero_pods_ctr_dir(const hero_pods_instance_t *in, int64_t id);  /* <base>/containers/<id> */
char *hero_pods_crun_root(const hero_pods_instance_t *in);            /* <base>/crun */
char *hero_pods_crun_id(int64_t id);                                  /* hero-<id> */
/* hero-init beside the hero binary (build tree) or in ../libexec/hero (installed);
 * $HERO_INIT overrides. NULL with err when it is nowhere. */
char *hero_pods_init_path(hero_error_t *err);

/* ---- crun (crun.c) ---- */
/* The result of one crun command: status 0, or err filled with crun's own message
 * (and, for crun's "cgroups in hybrid mode" refusal, the fix). */
typedef void (*hero_crun_cb)(const hero_proc_result_t *r, hero_error_t *err, void *data);

typedef struct hero_crun_opts {
    int stdout_fd, stderr_fd;  /* > 0: the container's output goes there (create) */
    uint64_t timeout_ms;       /* 0: none */
    const char *log_path;      /* crun --log: where crun writes its own errors, or NULL */
    size_t capture_cap;        /* 0: 64 KiB */
} hero_crun_opts_t;

/* Runs `crun --root <instance's root> ARGS...`. */
int hero_crun(uv_loop_t *loop, const hero_pods_instance_t *in, const char *const *args,
              const hero_crun_opts_t *o, hero_crun_cb cb, void *data, hero_proc_t **proc,
              hero_error_t *err);
/* Adds the fix to crun's cgroup message, when that is the message. */
void hero_crun_explain(hero_error_t *err);

/* ---- a container's root and files on the host (rootfs.c) ---- */
/* Records and creates <ctr dir> with upper/, work/, rootfs/, run/, etc/. */
int hero_pods_ctr_dirs(const hero_pods_instance_t *in, int64_t id, hero_error_t *err);
/* Records and mounts the overlay (lower: image rootfs) on <ctr dir>/rootfs, unless
 * it is mounted already. */
int hero_pods_mount_root(const hero_pods_instance_t *in, int64_t id, const char *image_rootfs,
                         hero_error_t *err);
/* Unmounts <ctr dir>/rootfs (if mounted) and forgets the mount. */
int hero_pods_umount_root(const hero_pods_instance_t *in, int64_t id, hero_error_t *err);
/* Writes <ctr dir>/etc/{hostname,resolv.conf}; its hosts file is hero_pods_hosts_update's
 * (run next on every start). */
int hero_pods_write_etc(const hero_pods_instance_t *in, int64_t id, const char *hostname,
                        hero_error_t *err);
/* Clears <ctr dir>/run (hero-init's status from an earlier start). */
int hero_pods_clear_run(const hero_pods_instance_t *in, int64_t id, hero_error_t *err);

/* ---- the network of instances and containers (ctrnet.c) ---- */
/* Reads bridge_name, subnet, gateway_ip and nat from settings JSON (defaults for
 * what is missing); frees what n held. */
void hero_pods_net_from_settings(hero_pods_net_t *n, const char *settings);
void hero_pods_net_clear(hero_pods_net_t *n);
/* Same bridge, subnet and gateway (nat may differ: re-applying the rules fixes it). */
bool hero_pods_net_same(const hero_pods_net_t *a, const hero_pods_net_t *b);
/* Who owns the instance's bridge, as its alias starts (see net.h); caller frees. */
char *hero_pods_net_owner_key(const hero_pods_instance_t *in);
/* The bridge with its gateway, IPv4 forwarding and the nftables table: once per
 * process, or again when `again` (configure re-applies every time). */
int hero_pods_net_instance_up(hero_pods_instance_t *in, bool again, hero_error_t *err);
/* Removes the table and the bridge of `net` (an instance's old settings). */
int hero_pods_net_instance_down(const hero_pods_instance_t *in, const hero_pods_net_t *net,
                                hero_error_t *err);
/* The container's address: its lease, kept across stop/start, else a new one. */
int hero_pods_net_lease(hero_pods_instance_t *in, int64_t id, uint32_t *addr, hero_error_t *err);
/* Before crun create: every `ports` entry parses, is not published by another
 * container of the store, and is free on the host; then it is claimed for this
 * container (its RULE host object recorded, in the same store transaction as the
 * check), so that a start beside it, of this hero or another, finds it taken. A
 * failed start gives the claim back with the rest (hero_pods_net_ctr_down). */
int hero_pods_net_ports_check(hero_pods_instance_t *in, int64_t id, char **ports,
                              hero_error_t *err);
/* Between crun create and crun start: the veth (eth0 with addr, lo, default route)
 * in the namespace of pid, and the published ports; each recorded first. A failure
 * leaves what was made recorded, for hero_pods_net_ctr_down. */
int hero_pods_net_ctr_up(hero_pods_instance_t *in, int64_t id, int pid, uint32_t addr,
                         char **ports, hero_error_t *err);
/* Removes the container's links and published ports (on stop and failed starts;
 * the lease stays). ns_gone: the container's network namespace is gone (crun delete
 * succeeded), so its veth pair is the kernel's to remove and is only forgotten. */
int hero_pods_net_ctr_down(hero_pods_instance_t *in, int64_t id, bool ns_gone,
                           hero_error_t *err);
/* Undoes one recorded link or rule (other kinds: nothing). */
int hero_pods_net_undo(const hero_hostobj_t *o, hero_error_t *err);
/* Rewrites /etc/hosts of every container of the instance: localhost, its own name
 * at its address, and every container of the instance that holds an address. */
int hero_pods_hosts_update(hero_pods_instance_t *in, hero_error_t *err);

/* ---- hero-init's status (status.c) ---- */
typedef enum {
    HERO_INIT_NONE,        /* nothing written yet */
    HERO_INIT_STARTED,     /* the entrypoint runs */
    HERO_INIT_EXITED,      /* code */
    HERO_INIT_SIGNALED,    /* code = signal */
    HERO_INIT_EXEC_FAILED, /* code = errno; text = message */
    HERO_INIT_FAILED,      /* hero-init itself failed; text */
} hero_init_state_t;

typedef struct hero_init_status {
    hero_init_state_t state;
    int code;
    char text[256];
} hero_init_status_t;

/* Reads <run dir>/status, else <run dir>/started. */
void hero_pods_read_status(const char *run_dir, hero_init_status_t *st);
/* The process is gone, or a zombie nobody has reaped yet (a container's init is
 * not hero's child, and some hosts' pid 1 reaps slowly). */
bool hero_pods_pid_gone(int64_t pid);

/* ---- teardown (teardown.c) ---- */
/* Removes everything recorded for a container on the host, newest first: crun
 * container (delete -f), mounts, directories; then, when `forget`, its store row.
 * Safe to run again after a crash half way. */
typedef void (*hero_pods_done_cb)(int rc, hero_error_t *err, void *data);
void hero_pods_teardown(uv_loop_t *loop, hero_pods_instance_t *in, int64_t id, bool forget,
                        hero_pods_done_cb cb, void *data);

/* ---- the IPv6 overlay (overlay.c; the actions in overlay_daemon.c) ---- */
/* The instance's overlay node (*out NULL when it has none), read once from the store. */
int hero_pods_overlay_get(hero_pods_instance_t *in, const hero_pods_overlay_t **out,
                          hero_error_t *err);
/* The store note of an instance's overlay ("overlay.<instance>"), or with `pending`
 * of a daemon an enable started and has not yet made the instance's
 * ("overlay-daemon.<instance>"). The caller frees. */
char *hero_pods_overlay_key(const char *instance, bool pending);
/* "a:b:c:d::/64" -> its first 64 bits in *net (the rest zero); 0, or -1 when it is
 * not an IPv6 /64. */
int hero_pods_overlay_prefix(const char *subnet, struct in6_addr *net);
/* Parses the stored form {"kind","subnet","node","range",...}. */
int hero_pods_overlay_parse(const char *json, hero_pods_overlay_t *ov, hero_error_t *err);
/* Makes the next hero_pods_overlay_get read the store again. */
void hero_pods_overlay_forget_cached(hero_pods_instance_t *in);
/* Between crun create and start: when the instance has an overlay, the container's
 * address in the node's /64 (leased, stable across restarts) and its overlay veth,
 * recorded as a LINK host object before it is made. */
int hero_pods_overlay_ctr_up(hero_pods_instance_t *in, int64_t id, int pid, hero_error_t *err);
/* The container's overlay address as text: 0 found, 1 none, <0 error. */
int hero_pods_overlay_addr(hero_store_t *s, int64_t id, char out[46], hero_error_t *err);
/* configure reset:true: stops the daemons hero started for the instance (if they are
 * still those processes: SIGTERM, SIGKILL after 3 s, waited for on a timer) and forgets
 * the instance's overlay; cb gets the outcome (possibly before this returns). */
void hero_pods_overlay_reset(uv_loop_t *loop, hero_pods_instance_t *in, hero_pods_done_cb cb,
                             void *data);
/* `hero pods overlay` (cli_overlay.c): prints the overlays (of `instance`, or all)
 * with their daemons' peers; returns the exit status. */
int hero_pods_cli_overlay(hero_store_t *store, const char *instance, bool as_json);
/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), or -1: with the
 * pid it names one process for good, so a recorded daemon is never confused with a
 * later process that got the same pid. */
long long hero_pods_proc_start_time(int pid);
/* Whether pid is the live process that started at `start` (a start time from
 * hero_pods_proc_start_time; <= 0 is never anyone's). */
bool hero_pods_proc_is(int pid, long long start);

#endif
