/* A container's resource usage, read from its cgroup (v1, hybrid, or pure v2).
 *
 * The cgroup is found from /proc/<pid>/cgroup (pid: any process in it, normally the
 * container's init) and the cgroup mounts in /proc/self/mountinfo. A controller that
 * has a v1 hierarchy is read there; the rest from the unified (v2) hierarchy. */
#ifndef HERO_PODS_STATS_H
#define HERO_PODS_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/error.h"

#define HERO_STATS_UNLIMITED UINT64_MAX

typedef struct hero_pods_stats {
    uint64_t when_ns;       /* CLOCK_MONOTONIC when sampled */
    uint64_t cpu_ns;        /* CPU time used by the cgroup since it was made */
    bool cpu_v2;            /* cpu_ns came from cgroup v2 cpu.stat (else v1 cpuacct.usage) */
    uint64_t mem_bytes;     /* memory in use, without the inactive page cache (as docker
                               and podman count it): v2 memory.current - inactive_file,
                               v1 memory.usage_in_bytes - total_inactive_file */
    uint64_t mem_cache;     /* the inactive file cache left out of mem_bytes */
    uint64_t mem_limit;     /* bytes, or HERO_STATS_UNLIMITED */
    bool mem_v2;
    uint64_t pids;          /* processes and threads in the cgroup */
    uint64_t pids_limit;    /* or HERO_STATS_UNLIMITED */
    bool has_mem, has_pids; /* false when that controller is not available */
} hero_pods_stats_t;

/* The directory of pid's cgroup for a v1 controller ("memory", "cpuacct", "pids"),
 * or of its v2 cgroup when controller is NULL. NULL with err when there is none
 * (the controller is not mounted as v1, no cgroup2 mount, the process is gone).
 * Caller frees. */
char *hero_pods_cgroup_dir(int pid, const char *controller, hero_error_t *err);

/* One sample of pid's cgroup. Fails (with err) only when the process is gone or no
 * CPU accounting can be read; memory and pids are optional (has_mem, has_pids). */
int hero_pods_stats_sample(int pid, hero_pods_stats_t *out, hero_error_t *err);

/* CPU use between two samples of the same cgroup, in percent of one core (a
 * container busy on two cores shows 200). 0 when no time passed. */
double hero_pods_stats_cpu_percent(const hero_pods_stats_t *before, const hero_pods_stats_t *after);

#endif
