/* crun, driven as a program (there is no libcrun package on Debian 12), always
 * under hero's own root so the host's crun containers are never touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pods.h"

typedef struct crun_call {
    hero_crun_cb cb;
    void *data;
    char *log_path;
} crun_call_t;

void hero_crun_explain(hero_error_t *err)
{
    if (err && err->msg && strstr(err->msg, "cgroups in hybrid mode not supported"))
        hero_error_wrap(err, "%s",
                        "crun refuses this machine's cgroup layout (hybrid, with a controller "
                        "left on cgroup v2). Fix, once per boot, as root: mkdir -p "
                        "/sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup "
                        "/sys/fs/cgroup/hugetlb (then /sys/fs/cgroup/unified/cgroup.controllers "
                        "is empty)");
}

/* crun's message: the last non-empty line it wrote, without its "crun: " prefix. */
static char *last_line(const char *s, size_t n)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        n--;
    size_t b = n;
    while (b && s[b - 1] != '\n')
        b--;
    const char *l = s + b;
    size_t len = n - b;
    if (len > 6 && strncmp(l, "crun: ", 6) == 0) {
        l += 6;
        len -= 6;
    }
    return hero_xstrndup(l, len);
}

static char *read_small(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = hero_xmalloc(65536);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void crun_done(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    crun_call_t *c = data;
    hero_error_t err = HERO_ERROR_INIT;
    hero_error_t *e = NULL;
    if (r->term_signal || r->exit_status) {
        char *msg = NULL;
        if (r->err_len)
            msg = last_line(r->err, r->err_len);
        if ((!msg || !*msg) && c->log_path) {
            char *log = read_small(c->log_path);
            if (log) {
                free(msg);
                msg = last_line(log, strlen(log));
                free(log);
            }
        }
        if (r->timed_out)
            hero_error_set(&err, 0, "crun did not finish in time%s%s", msg && *msg ? ": " : "",
                           msg ? msg : "");
        else if (r->term_signal)
            hero_error_set(&err, 0, "crun was killed by signal %d", r->term_signal);
        else
            hero_error_set(&err, 0, "%s", msg && *msg ? msg : "crun failed");
        free(msg);
        hero_crun_explain(&err);
        e = &err;
    }
    c->cb(r, e, c->data);
    hero_error_clear(&err);
    free(c->log_path);
    free(c);
}

int hero_crun(uv_loop_t *loop, const hero_pods_instance_t *in, const char *const *args,
              const hero_crun_opts_t *o, hero_crun_cb cb, void *data, hero_proc_t **proc,
              hero_error_t *err)
{
    size_t n = 0;
    while (args[n])
        n++;
    const char **argv = hero_xcalloc(n + 5, sizeof(char *));
    char *root = hero_pods_crun_root(in);
    char *rootopt = hero_xasprintf("--root=%s", root);
    char *logopt = o && o->log_path ? hero_xasprintf("--log=%s", o->log_path) : NULL;
    size_t k = 0;
    argv[k++] = "crun";
    argv[k++] = rootopt;
    if (logopt)
        argv[k++] = logopt;
    for (size_t i = 0; i < n; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    crun_call_t *c = hero_xcalloc(1, sizeof(*c));
    c->cb = cb;
    c->data = data;
    c->log_path = o && o->log_path ? hero_xstrdup(o->log_path) : NULL;
    hero_proc_opts_t po = {
        .argv = argv,
        .capture_cap = o && o->capture_cap ? o->capture_cap : 64 * 1024,
        .timeout_ms = o ? o->timeout_ms : 0,
        .stdout_fd = o ? o->stdout_fd : 0,
        .stderr_fd = o ? o->stderr_fd : 0,
    };
    hero_proc_t *p = NULL;
    int rc = hero_proc_spawn(loop, &po, crun_done, c, &p, err);
    free(argv);
    free(rootopt);
    free(logopt);
    free(root);
    if (rc < 0) {
        free(c->log_path);
        free(c);
        hero_error_wrap(err, "crun is needed to run containers (Debian package crun)");
        return -1;
    }
    if (proc)
        *proc = p;
    return 0;
}
