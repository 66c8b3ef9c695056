/* A container's resource usage from its cgroup: cgroup v1 (also the hybrid layout,
 * with v1 controllers beside an empty unified hierarchy) and pure v2. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

/* cgroup v1 reports "no limit" as a page-aligned huge number (PAGE_COUNTER_MAX *
 * page size, about 2^63); anything this large is no limit. */
#define V1_UNLIMITED_FROM (UINT64_C(1) << 62)

/* Undoes mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static bool has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, tok, n) == 0)
            return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

/* pid's cgroup path for the controller (v2 when NULL), from /proc/<pid>/cgroup. */
static char *proc_cgroup_path(int pid, const char *controller, hero_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        hero_error_set(err, e == ENOENT ? ESRCH : e, "cannot read %s", path);
        return NULL;
    }
    char *line = NULL, *out = NULL;
    size_t cap = 0;
    ssize_t n;
    while (!out && (n = getline(&line, &cap, f)) > 0) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = 0;
        const char *ctrls = c1 + 1, *cg = c2 + 1;
        if (controller ? has_token(ctrls, controller) : (strcmp(line, "0") == 0 && !*ctrls))
            out = hero_xstrdup(cg);
    }
    free(line);
    fclose(f);
    if (!out)
        hero_error_set(err, 0, "process %d is in no cgroup %s%s%s", pid,
                       controller ? "v1 hierarchy of controller '" : "v2 hierarchy",
                       controller ? controller : "", controller ? "'" : "");
    return out;
}

char *hero_pods_cgroup_dir(int pid, const char *controller, hero_error_t *err)
{
    char *cg = proc_cgroup_path(pid, controller, err);
    if (!cg)
        return NULL;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) {
        hero_error_set(err, errno, "cannot read /proc/self/mountinfo");
        free(cg);
        return NULL;
    }
    char *line = NULL, *out = NULL;
    size_t cap = 0;
    while (!out && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = 0;
        char *save = NULL, *fields[5] = {0};
        char *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < 5; i++, tok = strtok_r(NULL, " ", &save))
            fields[i] = tok;
        save = NULL;
        char *fstype = strtok_r(sep + 3, " ", &save);
        char *source = fstype ? strtok_r(NULL, " ", &save) : NULL;
        char *super = source ? strtok_r(NULL, " ", &save) : NULL;
        if (!fields[4] || !fstype)
            continue;
        bool match = controller ? strcmp(fstype, "cgroup") == 0 && super && has_token(super, controller)
                                : strcmp(fstype, "cgroup2") == 0;
        if (!match)
            continue;
        char *root = fields[3], *mnt = fields[4];
        unescape(root);
        unescape(mnt);
        const char *rel = cg;
        size_t rl = strlen(root);
        if (strcmp(root, "/") != 0 && strncmp(cg, root, rl) == 0 && (cg[rl] == '/' || !cg[rl]))
            rel = cg + rl;
        out = hero_xasprintf("%s%s%s", mnt, *rel == '/' || !*rel ? "" : "/", rel);
        size_t ol = strlen(out);
        while (ol > 1 && out[ol - 1] == '/')
            out[--ol] = 0;
    }
    free(line);
    fclose(f);
    if (!out)
        hero_error_set(err, 0, "no cgroup %s%s%s is mounted",
                       controller ? "v1 hierarchy of controller '" : "v2 hierarchy",
                       controller ? controller : "", controller ? "'" : "");
    free(cg);
    return out;
}

/* The first number in DIR/FILE; "max" reads as HERO_STATS_UNLIMITED. */
static int read_u64(const char *dir, const char *file, uint64_t *v)
{
    char path[4096], buf[64];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    bool ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    if (strncmp(buf, "max", 3) == 0) {
        *v = HERO_STATS_UNLIMITED;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -1;
    *v = x;
    return 0;
}

/* The value of `key` in a flat keyed file (memory.stat, cpu.stat). */
static int read_keyed(const char *dir, const char *file, const char *key, uint64_t *v)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0, kl = strlen(key);
    int rc = -1;
    while (rc < 0 && getline(&line, &cap, f) > 0) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
            unsigned long long x;
            if (sscanf(line + kl + 1, "%llu", &x) == 1) {
                *v = x;
                rc = 0;
            }
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The directory to read a controller from: its v1 hierarchy if it has one, else the
 * v2 cgroup (given; may be NULL). *v2 tells which. Caller frees. */
static char *controller_dir(int pid, const char *controller, const char *v2dir, bool *v2)
{
    char *d = hero_pods_cgroup_dir(pid, controller, NULL);
    *v2 = d == NULL;
    return d ? d : v2dir ? hero_xstrdup(v2dir) : NULL;
}

int hero_pods_stats_sample(int pid, hero_pods_stats_t *out, hero_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->mem_limit = out->pids_limit = HERO_STATS_UNLIMITED;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    if (pid <= 0 || access(path, F_OK) < 0)
        return hero_error_set(err, ESRCH, "process %d", pid);
    char *v2dir = hero_pods_cgroup_dir(pid, NULL, NULL);
    int rc = 0;
    bool v2;

    /* CPU: v1 cpuacct.usage (ns), or v2 cpu.stat usage_usec */
    char *d = controller_dir(pid, "cpuacct", v2dir, &v2);
    uint64_t x;
    if (d && !v2 && read_u64(d, "cpuacct.usage", &x) == 0) {
        out->cpu_ns = x;
    } else if (v2dir && read_keyed(v2dir, "cpu.stat", "usage_usec", &x) == 0) {
        out->cpu_ns = x * 1000;
        out->cpu_v2 = true;
    } else {
        rc = hero_error_set(err, 0, "no CPU accounting for process %d (neither cgroup v1 "
                                    "cpuacct.usage nor cgroup v2 cpu.stat)", pid);
    }
    out->when_ns = now_ns();
    free(d);

    /* memory */
    d = rc == 0 ? controller_dir(pid, "memory", v2dir, &v2) : NULL;
    if (d) {
        uint64_t usage, inactive = 0, limit;
        bool ok = v2 ? read_u64(d, "memory.current", &usage) == 0
                     : read_u64(d, "memory.usage_in_bytes", &usage) == 0;
        if (ok) {
            if (read_keyed(d, "memory.stat", v2 ? "inactive_file" : "total_inactive_file",
                           &inactive) < 0)
                inactive = 0;
            out->has_mem = true;
            out->mem_v2 = v2;
            out->mem_cache = inactive < usage ? inactive : 0;
            out->mem_bytes = usage - out->mem_cache;
            if (read_u64(d, v2 ? "memory.max" : "memory.limit_in_bytes", &limit) == 0 &&
                limit < V1_UNLIMITED_FROM)
                out->mem_limit = limit;
        }
        free(d);
    }

    /* pids */
    d = rc == 0 ? controller_dir(pid, "pids", v2dir, &v2) : NULL;
    if (d) {
        if (read_u64(d, "pids.current", &x) == 0) {
            out->has_pids = true;
            out->pids = x;
            if (read_u64(d, "pids.max", &x) == 0 && x < V1_UNLIMITED_FROM)
                out->pids_limit = x;
        }
        free(d);
    }
    free(v2dir);
    /* the process may have gone while we read: then the numbers mean nothing */
    if (rc == 0 && access(path, F_OK) < 0)
        rc = hero_error_set(err, ESRCH, "process %d", pid);
    return rc;
}

double hero_pods_stats_cpu_percent(const hero_pods_stats_t *before, const hero_pods_stats_t *after)
{
    if (after->when_ns <= before->when_ns || after->cpu_ns < before->cpu_ns)
        return 0;
    return 100.0 * (double)(after->cpu_ns - before->cpu_ns) /
           (double)(after->when_ns - before->when_ns);
}
