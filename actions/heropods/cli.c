/* `hero pods`: containers and images from any later process, over the state store.
 *
 * Read-only commands (ps, inspect, logs, stats, images) never write to the store:
 * a container the store calls running whose init is gone is shown as exited. The
 * commands that change a container (start, stop, rm) run the matching heropods
 * action as a one-action playbook, so they behave exactly as in a playbook. exec
 * replaces hero with `crun exec`, so a terminal works as it does with podman. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actions/actions.h"
#include "heropods.h"
#include "image.h"
#include "oci.h"
#include "pods.h"
#include "runtime/sched.h"
#include "stats.h"

extern char **environ;

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ======================= the commands and their help ======================= */

typedef struct cli cli_t;
typedef struct opts opts_t;
typedef int (*cmd_fn)(cli_t *c, opts_t *o);

typedef struct cmd {
    const char *name;
    const char *synopsis;   /* after "hero pods " */
    const char *shorts;     /* getopt short options ("+" first: stop at the first operand) */
    const char *longs;      /* allowed long options, space separated */
    int min_args, max_args; /* operands; max -1: any */
    cmd_fn fn;
    const char *help;
} cmd_t;

static int cmd_ps(cli_t *c, opts_t *o);
static int cmd_inspect(cli_t *c, opts_t *o);
static int cmd_logs(cli_t *c, opts_t *o);
static int cmd_exec(cli_t *c, opts_t *o);
static int cmd_stats(cli_t *c, opts_t *o);
static int cmd_start(cli_t *c, opts_t *o);
static int cmd_stop(cli_t *c, opts_t *o);
static int cmd_rm(cli_t *c, opts_t *o);
static int cmd_images(cli_t *c, opts_t *o);
static int cmd_overlay(cli_t *c, opts_t *o);

static const cmd_t commands[] = {
    {"ps", "ps [-a] [--json]", "a", "all json format", 0, 0, cmd_ps,
     "List containers: the running ones, or all with -a.\n"
     "  -a, --all     also the created, stopped and exited ones\n"
     "  --json        a JSON array of objects (see hero-pods(1) for the fields)\n"},
    {"inspect", "inspect NAME [--json]", "", "json format", 1, 1, cmd_inspect,
     "Everything known about a container: its record, its definition, where its files\n"
     "are, and crun's live view of it.\n"
     "  --json        a JSON array of one object\n"},
    {"logs", "logs [-f] NAME", "f", "follow", 1, 1, cmd_logs,
     "Print what the container's processes wrote to stdout and stderr.\n"
     "  -f, --follow  keep printing new output until the container's init exits (or ^C)\n"},
    {"exec", "exec [-i] [-t] NAME [--] CMD [ARG...]", "+it", "interactive tty", 2, -1, cmd_exec,
     "Run a command in a running container (crun exec; hero is replaced by it, and its\n"
     "exit status is the command's).\n"
     "  -i, --interactive  pass stdin to the command (otherwise it reads /dev/null)\n"
     "  -t, --tty          give the command a terminal (use -it from a terminal)\n"},
    {"stats", "stats NAME... [--json] [--interval DUR]", "", "json format interval", 1, -1,
     cmd_stats,
     "CPU, memory and process counts of running containers, from their cgroups.\n"
     "  --interval DUR  CPU use is measured over this long (default 500ms)\n"
     "  --json          a JSON array of objects\n"},
    {"start", "start [--keep-alive] NAME", "", "keep-alive", 1, 1, cmd_start,
     "Start a container (the heropods.container_start action).\n"
     "  --keep-alive  wait for the entrypoint; after it exits 0 the container stays up\n"},
    {"stop", "stop [-t DUR] NAME", "t:", "timeout", 1, 1, cmd_stop,
     "Stop a container: SIGTERM, then SIGKILL after the grace period (the\n"
     "heropods.container_stop action).\n"
     "  -t, --timeout DUR  the grace period, such as 10s or 500ms (default 10s; a bare\n"
     "                     number is seconds)\n"},
    {"rm", "rm [-f] NAME", "f", "force", 1, 1, cmd_rm,
     "Delete a container: its root, its files and its record (the\n"
     "heropods.container_delete action).\n"
     "  -f, --force   also a running one (it is stopped first)\n"},
    {"images", "images [--json]", "", "json format", 0, 0, cmd_images,
     "List the images in the store and how many containers use each.\n"
     "  --json        a JSON array of objects\n"},
    {"overlay", "overlay [--json]", "", "json format", 0, 0, cmd_overlay,
     "The IPv6 overlay node of each instance that has one (enable_mycelium,\n"
     "enable_yggdrasil): its address, its /64, its daemon, and the daemon's peers and\n"
     "their state, asked live.\n"
     "  --json        a JSON array of objects\n"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char pods_usage[] =
    "usage: hero pods [--base-dir DIR] [--instance NAME] COMMAND [ARGS...]\n"
    "\n"
    "commands:\n"
    "  ps [-a] [--json]                   list containers (the running ones; -a: all)\n"
    "  inspect NAME [--json]              everything known about a container\n"
    "  logs [-f] NAME                     print (and follow) a container's output\n"
    "  exec [-it] NAME [--] CMD...        run a command in a running container\n"
    "  stats NAME... [--json] [--interval DUR]\n"
    "                                     CPU percent, memory and processes\n"
    "  start [--keep-alive] NAME          start a container\n"
    "  stop [-t DUR] NAME                 stop a container\n"
    "  rm [-f] NAME                       delete a container\n"
    "  images [--json]                    list the stored images\n"
    "  overlay [--json]                   the IPv6 overlay nodes and their peers\n"
    "\n"
    "options (before or after the command):\n"
    "  --base-dir DIR    the state directory (default: $HERO_BASE_DIR, else /var/lib/hero)\n"
    "  --instance NAME   only this instance's containers\n"
    "\n"
    "NAME is a container's name, INSTANCE/NAME when more than one instance uses the\n"
    "name, or its id. `hero pods COMMAND --help` describes a command; see hero-pods(1).\n"
    "exit status: 0 done, 1 failed, 2 usage error (exec: the command's own status).\n";

static void cmd_help(FILE *f, const cmd_t *cmd)
{
    fprintf(f, "usage: hero pods %s\n\n%s", cmd->synopsis, cmd->help);
    fputs("  --base-dir DIR, --instance NAME: as for every hero pods command\n"
          "  -h, --help    this text\n",
          f);
}

/* ======================= state of one invocation ======================= */

struct cli {
    const char *base_dir;
    const char *instance;      /* --instance, or NULL */
    hero_pods_instance_t in;   /* only base_dir is set: for the path helpers */
    hero_store_t *store;       /* NULL when the base dir has no store yet */
    const cmd_t *cmd;
};

struct opts {
    bool all, json, follow, force, interactive, tty, keep_alive;
    int64_t interval_ms, timeout_ms; /* -1: not given */
    char **args;                     /* operands */
    int nargs;
};

static int failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("hero pods: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAIL;
}

static int fail_err(hero_error_t *e)
{
    failf("%s", e->msg ? e->msg : "failed");
    hero_error_clear(e);
    return EXIT_FAIL;
}

static int usage_errf(const cmd_t *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_errf(const cmd_t *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("hero pods: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "usage: hero pods %s\n(hero pods %s --help describes it)\n", cmd->synopsis,
                cmd->name);
    else
        fputs("(hero pods --help shows the usage)\n", stderr);
    return EXIT_USAGE;
}

/* Opens the store when the base dir has one; never makes one (read-only commands on
 * a machine where hero never ran must not create /var/lib/hero). */
static int open_store(cli_t *c, hero_error_t *err)
{
    if (c->store)
        return 0;
    char *db = hero_xasprintf("%s/hero.db", c->base_dir);
    struct stat sb;
    int rc = stat(db, &sb) == 0 || errno == ENOENT || errno == ENOTDIR
                 ? 0
                 : hero_error_set(err, errno, "cannot read the state store %s", db);
    bool exists = rc == 0 && access(db, F_OK) == 0;
    free(db);
    if (!exists)
        return rc;
    return hero_pods_store(c->base_dir, &c->store, err);
}

/* ======================= human sizes, ages, times ======================= */

/* Decimal units with 3 significant digits, as podman prints them: "1.99 MB". */
static void human_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    double v = (double)n;
    size_t u = 0;
    while (u + 1 < sizeof(units) / sizeof(units[0]) && v >= 999.5) {
        v /= 1000;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.3g %s", v, units[u]);
}

/* A duration as docker's and podman's go-units words it: "5 minutes", "About an hour". */
static void human_duration(int64_t secs, char *buf, size_t len)
{
    if (secs < 1)
        snprintf(buf, len, "Less than a second");
    else if (secs == 1)
        snprintf(buf, len, "1 second");
    else if (secs < 60)
        snprintf(buf, len, "%lld seconds", (long long)secs);
    else if (secs / 60 == 1)
        snprintf(buf, len, "About a minute");
    else if (secs / 60 < 60)
        snprintf(buf, len, "%lld minutes", (long long)(secs / 60));
    else {
        int64_t hours = (secs + 1800) / 3600;
        if (hours == 1)
            snprintf(buf, len, "About an hour");
        else if (hours < 48)
            snprintf(buf, len, "%lld hours", (long long)hours);
        else if (hours < 24 * 7 * 2)
            snprintf(buf, len, "%lld days", (long long)(hours / 24));
        else if (hours < 24 * 30 * 2)
            snprintf(buf, len, "%lld weeks", (long long)(hours / 24 / 7));
        else if (hours < 24 * 365 * 2)
            snprintf(buf, len, "%lld months", (long long)(hours / 24 / 30));
        else
            snprintf(buf, len, "%lld years", (long long)(secs / 3600 / 24 / 365));
    }
}

/* "5 minutes ago" for a unix time; "-" for 0 (never). */
static void human_ago(int64_t t, char *buf, size_t len)
{
    if (t <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    char d[64];
    int64_t now = (int64_t)time(NULL);
    human_duration(now > t ? now - t : 0, d, sizeof(d));
    snprintf(buf, len, "%s ago", d);
}

/* RFC 3339 in UTC, or JSON null for 0 (never). */
static json_t *json_time(int64_t t)
{
    if (t <= 0)
        return json_null();
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[64];
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

/* ======================= tables in columns ======================= */

typedef struct table {
    size_t ncols, nrows;
    char **cells; /* row-major, owned */
} table_t;

static void table_row(table_t *t, ...)
{
    va_list ap;
    va_start(ap, t);
    t->cells = hero_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = hero_xstrdup(s ? s : "");
    }
    t->nrows++;
    va_end(ap);
}

/* Characters shown (UTF-8 continuation bytes do not count). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void table_print(table_t *t)
{
    size_t *w = hero_xcalloc(t->ncols, sizeof(size_t));
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = text_width(t->cells[r * t->ncols + c]);
            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 == t->ncols) {
                fputs(s, stdout);
                break;
            }
            fputs(s, stdout);
            for (size_t k = text_width(s); k < w[c] + 2; k++)
                fputc(' ', stdout);
        }
        fputc('\n', stdout);
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
}

/* ======================= a container as it really is ======================= */

typedef struct view {
    hero_container_rec_t r;
    char *dir;
    const char *state;     /* the store's, except "exited" for a dead "running" one */
    bool alive;            /* its init runs */
    int64_t pid;           /* when alive */
    int64_t exit_code;     /* -1: unknown; a signal's death reads 128+signal */
    int64_t exit_signal;   /* 0: none */
    int64_t finished;
} view_t;


/* pid runs (not a zombie) and is the init of the container whose root is
 * <dir>/rootfs. After pivot_root, /proc/<pid>/root reads "/", so the roots are
 * compared by identity (device and inode), not by path. */
static bool init_alive(int64_t pid, const char *dir)
{
    if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno != EPERM) || hero_pods_pid_gone(pid))
        return false;
    char path[64];
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%lld/root", (long long)pid);
    char *rootfs = hero_xasprintf("%s/rootfs", dir);
    struct stat a, b;
    int ra = stat(path, &a), ea = errno, rb = stat(rootfs, &b);
    free(rootfs);
    if (ra == 0 && rb == 0)
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (ra < 0 && ea == EACCES) {
        /* not root: the cgroup hero gave the container (in its config.json) says
         * whose it is */
        json_t *cfg = hero_oci_read(dir);
        const char *cg = json_string_value(json_object_get(json_object_get(cfg, "linux"),
                                                           "cgroupsPath"));
        snprintf(path, sizeof(path), "/proc/%lld/cgroup", (long long)pid);
        f = cg ? fopen(path, "re") : NULL;
        bool found = false;
        if (f) {
            char *line = NULL;
            size_t cap = 0, wl = strlen(cg);
            while (!found && getline(&line, &cap, f) > 0) {
                line[strcspn(line, "\n")] = 0;
                size_t ll = strlen(line);
                found = ll > wl && line[ll - wl - 1] == ':' && strcmp(line + ll - wl, cg) == 0;
            }
            free(line);
            fclose(f);
        }
        json_decref(cfg);
        return found;
    }
    return false;
}

/* Takes over r. */
static void view_make(cli_t *c, hero_container_rec_t *r, view_t *v)
{
    memset(v, 0, sizeof(*v));
    v->r = *r;
    memset(r, 0, sizeof(*r));
    v->dir = hero_pods_ctr_dir(&c->in, v->r.id);
    v->state = v->r.state;
    v->exit_code = v->r.exit_code;
    v->exit_signal = v->r.exit_signal;
    if (v->exit_code < 0 && v->exit_signal > 0)
        v->exit_code = 128 + v->exit_signal;
    v->finished = v->r.finished;
    if (strcmp(v->r.state, "running") != 0) {
        /* a start that failed never ran as far as the store knows: hero-init's status
         * file says when the entrypoint ended */
        if (!v->finished && strcmp(v->r.state, "created") != 0) {
            char *status = hero_xasprintf("%s/run/status", v->dir);
            struct stat sb;
            if (stat(status, &sb) == 0)
                v->finished = (int64_t)sb.st_mtime;
            free(status);
        }
        return;
    }
    if (init_alive(v->r.pid, v->dir)) {
        v->alive = true;
        v->pid = v->r.pid;
        return;
    }
    /* the store says running, but its init is gone: what hero-init recorded says how
     * it ended, and when */
    v->state = "exited";
    char *run = hero_xasprintf("%s/run", v->dir);
    hero_init_status_t st;
    hero_pods_read_status(run, &st);
    v->exit_code = -1;
    v->exit_signal = 0;
    if (st.state == HERO_INIT_EXITED) {
        v->exit_code = st.code;
    } else if (st.state == HERO_INIT_SIGNALED) {
        v->exit_signal = st.code;
        v->exit_code = 128 + st.code;
    } else if (st.state == HERO_INIT_EXEC_FAILED) {
        v->exit_code = st.code == EACCES || st.code == ENOEXEC ? 126 : 127;
    } else if (st.state == HERO_INIT_FAILED) {
        v->exit_code = 125;
    }
    char *status = hero_xasprintf("%s/status", run);
    struct stat sb;
    if (stat(status, &sb) == 0)
        v->finished = (int64_t)sb.st_mtime;
    free(status);
    free(run);
}

static void view_free(view_t *v)
{
    hero_container_rec_free(&v->r);
    free(v->dir);
}

/* "Up 3 minutes", "Exited (7) 2 minutes ago", "Created". */
static void status_text(const view_t *v, char *buf, size_t len)
{
    char ago[80], d[64];
    if (v->alive) {
        int64_t now = (int64_t)time(NULL);
        if (v->r.started > 0) {
            human_duration(now > v->r.started ? now - v->r.started : 0, d, sizeof(d));
            snprintf(buf, len, "Up %s", d);
        } else {
            snprintf(buf, len, "Up");
        }
        return;
    }
    if (strcmp(v->state, "created") == 0) {
        snprintf(buf, len, "Created");
        return;
    }
    human_ago(v->finished, ago, sizeof(ago));
    char code[32] = "";
    if (v->exit_code >= 0)
        snprintf(code, sizeof(code), " (%lld)", (long long)v->exit_code);
    if (v->finished > 0)
        snprintf(buf, len, "Exited%s %s", code, ago);
    else
        snprintf(buf, len, "Exited%s", code);
}

/* The argv the container runs (its definition over its image's config), or NULL. */
static char **command_of(cli_t *c, const hero_container_rec_t *r)
{
    json_t *sj = json_loads(r->spec ? r->spec : "{}", 0, NULL);
    hero_ctr_spec_t spec;
    if (!sj || hero_ctr_spec_from_json(sj, &spec, NULL) < 0) {
        json_decref(sj);
        return NULL;
    }
    json_decref(sj);
    /* the image the container was made from, not what its name stands for now */
    json_t *icfg =
        hero_image_config_of(c->store, spec.image ? spec.image : r->image, r->image_config);
    char **args = hero_oci_args(&spec, json_is_object(icfg) ? icfg : NULL, NULL);
    json_decref(icfg);
    hero_ctr_spec_free(&spec);
    return args;
}

static json_t *strv_json(char **v)
{
    json_t *a = json_array();
    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

/* The command line for a column: control characters as spaces, at most 20
 * characters ("..." when cut). */
static char *command_column(char **args)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (!f)
        abort();
    for (char **a = args; a && *a; a++)
        fprintf(f, "%s%s", a == args ? "" : " ", *a);
    fclose(f);
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (text_width(s) > 20) {
        size_t k = 0, chars = 0;
        while (s[k] && chars < 17) {
            k++;
            while (((unsigned char)s[k] & 0xC0) == 0x80)
                k++;
            chars++;
        }
        strcpy(s + k, "...");
    }
    return s;
}

/* ======================= finding a container ======================= */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Finds NAME, INSTANCE/NAME or an id. 0 found (*out filled); else prints why and
 * returns the exit code. */
static int lookup(cli_t *c, const char *arg, hero_container_rec_t *out)
{
    hero_error_t e = HERO_ERROR_INIT;
    const char *inst = c->instance;
    char *name = hero_xstrdup(arg);
    char *slash = strchr(name, '/');
    if (slash) {
        *slash = 0;
        if (inst && strcmp(inst, name) != 0) {
            int rc = usage_errf(c->cmd, "'%s' names instance '%s' but --instance is '%s'", arg, name,
                                inst);
            free(name);
            return rc;
        }
        inst = hero_xstrdup(name);
        memmove(name, slash + 1, strlen(slash + 1) + 1);
    }
    int rc = EXIT_FAIL;
    if (open_store(c, &e) < 0) {
        fail_err(&e);
        goto out;
    }
    if (!c->store) {
        failf("no such container '%s' (no hero state in %s; --base-dir or HERO_BASE_DIR names "
              "another)",
              arg, c->base_dir);
        goto out;
    }
    if (inst) {
        int r = hero_store_container_get(c->store, inst, name, out, &e);
        if (r < 0) {
            fail_err(&e);
            goto out;
        }
        if (r == 0) {
            rc = 0;
            goto out;
        }
    }
    hero_container_rec_t *v = NULL;
    size_t n = 0, hits = 0, hit = 0;
    if (hero_store_container_list(c->store, inst, &v, &n, &e) < 0) {
        fail_err(&e);
        goto out;
    }
    if (!inst) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i].name, name) == 0) {
                hits++;
                hit = i;
            }
    }
    if (hits == 0 && all_digits(name)) {
        long long id = strtoll(name, NULL, 10);
        for (size_t i = 0; i < n; i++)
            if (v[i].id == id) {
                hits = 1;
                hit = i;
            }
    }
    if (hits == 1) {
        *out = v[hit];
        memset(&v[hit], 0, sizeof(v[hit]));
        rc = 0;
    } else if (hits > 1) {
        char *list = NULL;
        size_t ll = 0;
        FILE *f = open_memstream(&list, &ll);
        for (size_t i = 0, k = 0; f && i < n; i++)
            if (strcmp(v[i].name, name) == 0)
                fprintf(f, "%s%s/%s", k++ ? ", " : "", v[i].instance, v[i].name);
        if (f)
            fclose(f);
        failf("container name '%s' is used by more than one instance (%s): say which, as "
              "INSTANCE/NAME or with --instance",
              name, list ? list : "");
        free(list);
    } else if (inst) {
        failf("no such container '%s' in instance '%s' (in %s)", name, inst, c->base_dir);
    } else {
        failf("no such container '%s' (in %s)", name, c->base_dir);
    }
    hero_container_recs_free(v, n);
out:
    if (slash)
        free((char *)inst);
    free(name);
    return rc;
}

/* lookup, then the view. */
static int lookup_view(cli_t *c, const char *arg, view_t *v)
{
    hero_container_rec_t r;
    int rc = lookup(c, arg, &r);
    if (rc == 0)
        view_make(c, &r, v);
    return rc;
}

/* ======================= running a program (crun state) ======================= */

/* Runs argv (no shell) with stdin from /dev/null, capturing stdout and stderr.
 * Returns its exit status, or -1 with err when it could not run or was killed. */
static int run_capture(char *const argv[], char **out, char **errout, hero_error_t *err)
{
    int po[2], pe[2];
    *out = *errout = NULL;
    if (pipe2(po, O_CLOEXEC) < 0)
        return hero_error_set(err, errno, "pipe");
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return hero_error_set(err, errno, "pipe");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (r != 0) {
        close(po[0]);
        close(pe[0]);
        return hero_error_set(err, r, "cannot run '%s'", argv[0]);
    }
    size_t len[2] = {0, 0}, cap[2] = {4096, 4096};
    char *buf[2] = {hero_xmalloc(cap[0]), hero_xmalloc(cap[1])};
    struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            if (cap[i] - len[i] < 1024)
                buf[i] = hero_xrealloc(buf[i], cap[i] *= 2);
            ssize_t n = read(pf[i].fd, buf[i] + len[i], cap[i] - len[i] - 1);
            if (n > 0) {
                len[i] += (size_t)n;
            } else if (n == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (pf[i].fd >= 0)
            close(pf[i].fd);
        buf[i][len[i]] = 0;
    }
    *out = buf[0];
    *errout = buf[1];
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return hero_error_set(err, errno, "waitpid");
    if (WIFSIGNALED(st))
        return hero_error_set(err, 0, "'%s' was killed by signal %d", argv[0], WTERMSIG(st));
    return WEXITSTATUS(st);
}

/* crun's last message line, without its "crun: " prefix. */
static char *last_line(const char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        n--;
    size_t b = n;
    while (b && s[b - 1] != '\n')
        b--;
    if (n - b > 6 && strncmp(s + b, "crun: ", 6) == 0)
        b += 6;
    return hero_xstrndup(s + b, n - b);
}

/* ======================= ps ======================= */

static json_t *view_json(cli_t *c, const view_t *v)
{
    char **cmd = command_of(c, &v->r);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(v->r.id));
    json_object_set_new(o, "name", json_string(v->r.name));
    json_object_set_new(o, "instance", json_string(v->r.instance));
    json_object_set_new(o, "image", json_string(v->r.image));
    json_object_set_new(o, "command", strv_json(cmd));
    json_object_set_new(o, "state", json_string(v->state));
    json_object_set_new(o, "pid", json_integer(v->alive ? v->pid : 0));
    json_object_set_new(o, "exit_code",
                        !v->alive && v->exit_code >= 0 ? json_integer(v->exit_code) : json_null());
    json_object_set_new(o, "exit_signal",
                        !v->alive && v->exit_signal > 0 ? json_integer(v->exit_signal) : json_null());
    json_object_set_new(o, "created", json_time(v->r.created));
    json_object_set_new(o, "started", json_time(v->r.started));
    json_object_set_new(o, "finished", json_time(v->alive ? 0 : v->finished));
    hero_strv_free(cmd);
    return o;
}

static int cmd_ps(cli_t *c, opts_t *o)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (open_store(c, &e) < 0)
        return fail_err(&e);
    hero_container_rec_t *v = NULL;
    size_t n = 0;
    if (c->store && hero_store_container_list(c->store, c->instance, &v, &n, &e) < 0)
        return fail_err(&e);
    json_t *arr = json_array();
    table_t t = {.ncols = 8};
    table_row(&t, "CONTAINER ID", "NAME", "INSTANCE", "IMAGE", "COMMAND", "CREATED", "STATUS", "PID");
    for (size_t i = 0; i < n; i++) {
        view_t w;
        view_make(c, &v[i], &w);
        if (!o->all && !w.alive) {
            view_free(&w);
            continue;
        }
        if (o->json) {
            json_array_append_new(arr, view_json(c, &w));
        } else {
            char id[32], pid[32], created[96], status[128];
            snprintf(id, sizeof(id), "%lld", (long long)w.r.id);
            if (w.alive)
                snprintf(pid, sizeof(pid), "%lld", (long long)w.pid);
            else
                snprintf(pid, sizeof(pid), "-");
            human_ago(w.r.created, created, sizeof(created));
            status_text(&w, status, sizeof(status));
            char **cmd = command_of(c, &w.r);
            char *col = command_column(cmd);
            table_row(&t, id, w.r.name, w.r.instance, w.r.image, col, created, status, pid);
            free(col);
            hero_strv_free(cmd);
        }
        view_free(&w);
    }
    free(v);
    if (o->json)
        print_json(arr);
    else
        table_print(&t);
    if (o->json) {
        for (size_t i = 0; i < t.nrows * t.ncols; i++)
            free(t.cells[i]);
        free(t.cells);
    }
    json_decref(arr);
    return EXIT_OK;
}

/* ======================= inspect ======================= */

static const char *obj_kind(hero_obj_kind_t k)
{
    switch (k) {
    case HERO_OBJ_DIR: return "dir";
    case HERO_OBJ_MOUNT: return "mount";
    case HERO_OBJ_CRUN: return "crun";
    case HERO_OBJ_LINK: return "link";
    case HERO_OBJ_RULE: return "rule";
    }
    return "unknown";
}

static json_t *init_status_json(const char *dir)
{
    char *run = hero_xasprintf("%s/run", dir);
    hero_init_status_t st;
    hero_pods_read_status(run, &st);
    free(run);
    static const char *const names[] = {"none", "started", "exited", "signaled", "exec-failed",
                                        "failed"};
    if (st.state == HERO_INIT_NONE)
        return json_null();
    json_t *o = json_pack("{s:s}", "state", names[st.state]);
    if (st.state == HERO_INIT_EXITED || st.state == HERO_INIT_EXEC_FAILED)
        json_object_set_new(o, "code", json_integer(st.code));
    if (st.state == HERO_INIT_SIGNALED)
        json_object_set_new(o, "signal", json_integer(st.code));
    if (st.text[0])
        json_object_set_new(o, "message", json_string(st.text));
    return o;
}

/* o[key] = "<dir>/<file>" */
static void json_set_path(json_t *o, const char *key, const char *dir, const char *file)
{
    char *p = hero_xasprintf("%s%s", dir, file);
    json_object_set_new(o, key, json_string(p));
    free(p);
}

static json_t *inspect_json(cli_t *c, const view_t *v)
{
    json_t *o = view_json(c, v);
    json_object_set_new(o, "stored_state", json_string(v->r.state));
    json_object_set_new(o, "stored_pid", json_integer(v->r.pid));
    json_t *spec = json_loads(v->r.spec ? v->r.spec : "null", JSON_DECODE_ANY, NULL);
    json_object_set_new(o, "spec", spec ? spec : json_string(v->r.spec));
    json_object_set_new(o, "spec_hash", json_string(v->r.spec_hash));
    hero_image_rec_t ir;
    if (c->store && hero_store_image_get(c->store, v->r.image, &ir, NULL) == 0) {
        /* what the container was made from; the digest only while its name still
         * stands for that */
        const char *root = v->r.image_rootfs ? v->r.image_rootfs : ir.rootfs;
        bool same = !strcmp(root, ir.rootfs);
        json_object_set_new(o, "image_digest",
                            same && ir.digest ? json_string(ir.digest) : json_null());
        json_object_set_new(o, "image_rootfs", json_string(root));
        hero_image_rec_free(&ir);
    } else if (v->r.image_rootfs) {
        json_object_set_new(o, "image_digest", json_null());
        json_object_set_new(o, "image_rootfs", json_string(v->r.image_rootfs));
    } else {
        json_object_set_new(o, "image_digest", json_null());
        json_object_set_new(o, "image_rootfs", json_null());
    }
    char *root = hero_pods_crun_root(&c->in);
    char *cid = hero_pods_crun_id(v->r.id);
    json_object_set_new(o, "dir", json_string(v->dir));
    json_set_path(o, "rootfs", v->dir, "/rootfs");
    json_set_path(o, "log", v->dir, "/log");
    json_set_path(o, "config", v->dir, "/config.json");
    json_object_set_new(o, "crun_root", json_string(root));
    json_object_set_new(o, "crun_id", json_string(cid));
    json_t *cfg = hero_oci_read(v->dir);
    json_t *cg = json_object_get(json_object_get(cfg, "linux"), "cgroupsPath");
    json_object_set(o, "cgroup", json_is_string(cg) ? cg : json_null());
    json_decref(cfg);
    json_object_set_new(o, "init_status", init_status_json(v->dir));
    /* its address: leased at its first start, kept until it is deleted */
    uint32_t a;
    if (c->store && hero_store_lease_get(c->store, v->r.instance, v->r.id, &a, NULL) == 0) {
        char ip[16];
        snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
        json_object_set_new(o, "ipv4", json_string(ip));
    } else {
        json_object_set_new(o, "ipv4", json_null());
    }
    /* its overlay address (enable_mycelium / enable_yggdrasil): leased at its first
     * start on the overlay, kept until it is deleted */
    char a6[46];
    if (c->store && hero_pods_overlay_addr(c->store, v->r.id, a6, NULL) == 0)
        json_object_set_new(o, "overlay", json_string(a6));
    else
        json_object_set_new(o, "overlay", json_null());
    /* crun's live view */
    char *rootopt = hero_xasprintf("--root=%s", root);
    char *argv[] = {"crun", rootopt, "state", cid, NULL};
    char *out = NULL, *eout = NULL;
    hero_error_t e = HERO_ERROR_INIT;
    int rc = run_capture(argv, &out, &eout, &e);
    json_t *state = NULL;
    if (rc == 0)
        state = json_loads(out, 0, NULL);
    if (state) {
        json_object_set_new(o, "crun_state", state);
    } else {
        char *why = rc < 0 ? hero_xstrdup(e.msg) : *eout ? last_line(eout) : hero_xstrdup("no answer");
        json_object_set_new(o, "crun_state", json_null());
        json_object_set_new(o, "crun_error", json_string(why));
        free(why);
    }
    hero_error_clear(&e);
    free(out);
    free(eout);
    free(rootopt);
    free(root);
    free(cid);
    hero_hostobj_t *ho = NULL;
    size_t nho = 0;
    json_t *objs = json_array();
    if (hero_store_hostobj_list(c->store, v->r.id, &ho, &nho, NULL) == 0) {
        for (size_t i = 0; i < nho; i++)
            json_array_append_new(objs, json_pack("{s:s, s:s}", "kind", obj_kind(ho[i].kind),
                                                  "ref", ho[i].ref ? ho[i].ref : ""));
        hero_hostobjs_free(ho, nho);
    }
    json_object_set_new(o, "host_objects", objs);
    return o;
}

static void print_human_value(const char *key, json_t *val)
{
    if (json_is_string(val)) {
        const char *s = json_string_value(val);
        bool is_time = !strcmp(key, "created") || !strcmp(key, "started") || !strcmp(key, "finished");
        struct tm tm = {0};
        if (is_time && strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
            char ago[96];
            human_ago((int64_t)timegm(&tm), ago, sizeof(ago));
            printf("%s (%s)\n", s, ago);
        } else {
            printf("%s\n", s);
        }
    } else if (json_is_null(val)) {
        puts("-");
    } else if (json_is_array(val) && !strcmp(key, "command")) {
        size_t i;
        json_t *x;
        json_array_foreach(val, i, x) printf("%s%s", i ? " " : "", json_string_value(x));
        putchar('\n');
    } else {
        char *s = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s\n", s ? s : "");
        free(s);
    }
}

static int cmd_inspect(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    json_t *j = inspect_json(c, &v);
    if (o->json) {
        json_t *arr = json_array();
        json_array_append(arr, j);
        print_json(arr);
        json_decref(arr);
    } else {
        const char *key;
        json_t *val;
        size_t w = 0;
        json_object_foreach(j, key, val) if (strlen(key) > w) w = strlen(key);
        json_object_foreach(j, key, val)
        {
            if (!strcmp(key, "host_objects")) {
                size_t k;
                json_t *x;
                printf("%s:%*s", key, (int)(w - strlen(key) + 1), "");
                if (!json_array_size(val))
                    puts("-");
                json_array_foreach(val, k, x)
                {
                    printf("%*s%s %s\n", k ? (int)w + 2 : 0, "",
                           json_string_value(json_object_get(x, "kind")),
                           json_string_value(json_object_get(x, "ref")));
                }
                continue;
            }
            printf("%s:%*s", key, (int)(w - strlen(key) + 1), "");
            print_human_value(key, val);
        }
    }
    json_decref(j);
    view_free(&v);
    return EXIT_OK;
}

/* ======================= logs ======================= */

/* Copies from fd (at its offset) to stdout until the end. */
static int copy_out(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return -1;
    }
}

static int cmd_logs(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    char *log = hero_xasprintf("%s/log", v.dir);
    bool follow = o->follow && v.alive;
    int ino = -1, pidfd = -1, sfd = -1;
    if (follow) {
        /* watch first, so nothing written between the first read and the watch is missed */
        ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0 || inotify_add_watch(ino, log, IN_MODIFY) < 0) {
            rc = failf("cannot watch '%s': %s", log, strerror(errno));
            goto out;
        }
        pidfd = (int)syscall(SYS_pidfd_open, (int)v.pid, 0);
        if (pidfd < 0 && errno == ESRCH) {
            follow = false; /* it has just exited: print what it wrote, and end */
        } else if (pidfd < 0 && errno != ENOSYS) {
            rc = failf("pidfd_open(%lld): %s", (long long)v.pid, strerror(errno));
            goto out;
        }
        /* ENOSYS (a kernel before 5.3): the init is checked twice a second */
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGTERM);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    }
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            rc = failf("cannot read '%s': %s", log, strerror(errno));
        goto out; /* never started: no output yet */
    }
    if (copy_out(fd) < 0) {
        rc = failf("cannot copy '%s': %s", log, strerror(errno));
        close(fd);
        goto out;
    }
    fflush(stdout);
    while (follow) {
        struct pollfd pf[3] = {{.fd = ino, .events = POLLIN},
                               {.fd = pidfd, .events = POLLIN},
                               {.fd = sfd, .events = POLLIN}};
        int pr = poll(pf, 3, pidfd >= 0 ? -1 : 500);
        if (pr == 0 && pidfd < 0 && !init_alive(v.pid, v.dir))
            pf[1].revents = POLLIN;
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents) {
            char evbuf[4096];
            while (read(ino, evbuf, sizeof(evbuf)) > 0)
                ;
        }
        /* a file cut short (truncated) starts over */
        struct stat sb;
        off_t at = lseek(fd, 0, SEEK_CUR);
        if (fstat(fd, &sb) == 0 && sb.st_size < at)
            lseek(fd, 0, SEEK_SET);
        if (copy_out(fd) < 0)
            break;
        fflush(stdout);
        if (pf[1].revents || pf[2].revents)
            break; /* init exited (everything it wrote is read), or ^C */
    }
    close(fd);
out:
    if (ino >= 0)
        close(ino);
    if (pidfd >= 0)
        close(pidfd);
    if (sfd >= 0)
        close(sfd);
    free(log);
    view_free(&v);
    return rc;
}

/* ======================= exec ======================= */

static int cmd_exec(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    char **cmdv = o->args + 1;
    int ncmd = o->nargs - 1;
    if (ncmd > 0 && strcmp(cmdv[0], "--") == 0) {
        cmdv++;
        ncmd--;
    }
    if (ncmd == 0) {
        view_free(&v);
        return usage_errf(c->cmd, "exec needs a command to run");
    }
    if (!v.alive) {
        rc = failf("container '%s' is not running (it is %s): hero pods start %s/%s first",
                   v.r.name, v.state, v.r.instance, v.r.name);
        view_free(&v);
        return rc;
    }
    char *root = hero_pods_crun_root(&c->in);
    char *rootopt = hero_xasprintf("--root=%s", root);
    char *cid = hero_pods_crun_id(v.r.id);
    const char *term = getenv("TERM");
    char *termenv = o->tty && term && *term ? hero_xasprintf("TERM=%s", term) : NULL;
    /* crun exec --env replaces the whole environment: TERM goes with the
     * container's own (from its config.json) */
    json_t *cfg = hero_oci_read(v.dir);
    /* as the container's user (crun exec would run the command as root) */
    char *user = hero_oci_exec_user(cfg);
    json_t *env = termenv ? json_object_get(json_object_get(cfg, "process"), "env") : NULL;
    size_t nenv = json_is_array(env) ? json_array_size(env) : 0;
    char **argv = hero_xcalloc((size_t)ncmd + 2 * nenv + 12, sizeof(char *));
    int k = 0;
    argv[k++] = "crun";
    argv[k++] = rootopt;
    argv[k++] = "exec";
    if (o->tty)
        argv[k++] = "--tty";
    if (user) {
        argv[k++] = "--user";
        argv[k++] = user;
    }
    if (termenv) {
        for (size_t i = 0; i < nenv; i++) {
            const char *e = json_string_value(json_array_get(env, i));
            if (e && strncmp(e, "TERM=", 5) != 0) {
                argv[k++] = "--env";
                argv[k++] = (char *)e;
            }
        }
        argv[k++] = "--env";
        argv[k++] = termenv;
    }
    argv[k++] = cid;
    for (int i = 0; i < ncmd; i++)
        argv[k++] = cmdv[i];
    argv[k] = NULL;
    if (!o->interactive) {
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
            close(nul);
        }
    }
    fflush(NULL);
    hero_heropods_shutdown(); /* the store is closed before hero becomes crun */
    execvp("crun", argv);
    rc = failf("cannot run crun: %s", strerror(errno));
    json_decref(cfg);
    free(argv);
    free(termenv);
    free(user);
    free(cid);
    free(rootopt);
    free(root);
    view_free(&v);
    return rc;
}

/* ======================= stats ======================= */

static int cmd_stats(cli_t *c, opts_t *o)
{
    int64_t interval = o->interval_ms >= 0 ? o->interval_ms : 500;
    if (interval < 10 || interval > 3600000)
        return usage_errf(c->cmd, "--interval must be from 10ms to 1h");
    int n = o->nargs;
    view_t *v = hero_xcalloc((size_t)n, sizeof(*v));
    hero_pods_stats_t *a = hero_xcalloc((size_t)n, sizeof(*a)), *b = hero_xcalloc((size_t)n, sizeof(*b));
    int rc = EXIT_OK, got = 0;
    hero_error_t e = HERO_ERROR_INIT;
    for (; got < n; got++) {
        rc = lookup_view(c, o->args[got], &v[got]);
        if (rc)
            goto out;
        if (!v[got].alive) {
            rc = failf("container '%s' is not running (it is %s)", v[got].r.name, v[got].state);
            got++;
            goto out;
        }
    }
    for (int i = 0; i < n; i++)
        if (hero_pods_stats_sample((int)v[i].pid, &a[i], &e) < 0) {
            hero_error_wrap(&e, "container '%s'", v[i].r.name);
            rc = fail_err(&e);
            goto out;
        }
    struct timespec ts = {.tv_sec = interval / 1000, .tv_nsec = (interval % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    for (int i = 0; i < n; i++)
        if (hero_pods_stats_sample((int)v[i].pid, &b[i], &e) < 0) {
            hero_error_wrap(&e, "container '%s' (it ended while being measured?)", v[i].r.name);
            rc = fail_err(&e);
            goto out;
        }
    json_t *arr = json_array();
    table_t t = {.ncols = 6};
    table_row(&t, "ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS");
    for (int i = 0; i < n; i++) {
        double cpu = hero_pods_stats_cpu_percent(&a[i], &b[i]);
        const hero_pods_stats_t *s = &b[i];
        bool lim = s->has_mem && s->mem_limit != HERO_STATS_UNLIMITED && s->mem_limit > 0;
        double memp = lim ? 100.0 * (double)s->mem_bytes / (double)s->mem_limit : 0;
        if (o->json) {
            json_t *j = json_object();
            json_object_set_new(j, "id", json_integer(v[i].r.id));
            json_object_set_new(j, "name", json_string(v[i].r.name));
            json_object_set_new(j, "instance", json_string(v[i].r.instance));
            json_object_set_new(j, "pid", json_integer(v[i].pid));
            json_object_set_new(j, "cpu_percent", json_real((double)(int64_t)(cpu * 100 + 0.5) / 100));
            json_object_set_new(j, "cpu_time_ns", json_integer((json_int_t)s->cpu_ns));
            json_object_set_new(j, "interval_ms", json_integer(interval));
            json_object_set_new(j, "mem_usage", s->has_mem ? json_integer((json_int_t)s->mem_bytes)
                                                           : json_null());
            json_object_set_new(j, "mem_cache", s->has_mem ? json_integer((json_int_t)s->mem_cache)
                                                           : json_null());
            json_object_set_new(j, "mem_limit", lim ? json_integer((json_int_t)s->mem_limit)
                                                    : json_null());
            json_object_set_new(j, "mem_percent",
                                lim ? json_real((double)(int64_t)(memp * 100 + 0.5) / 100) : json_null());
            json_object_set_new(j, "pids", s->has_pids ? json_integer((json_int_t)s->pids) : json_null());
            json_object_set_new(j, "pids_limit", s->has_pids && s->pids_limit != HERO_STATS_UNLIMITED
                                                     ? json_integer((json_int_t)s->pids_limit)
                                                     : json_null());
            json_object_set_new(j, "cgroup_version", json_integer(s->cpu_v2 ? 2 : 1));
            json_array_append_new(arr, j);
        } else {
            char id[32], cpus[32], mem[96], mp[32], pids[32], used[32], limit[32];
            snprintf(id, sizeof(id), "%lld", (long long)v[i].r.id);
            snprintf(cpus, sizeof(cpus), "%.2f%%", cpu);
            if (s->has_mem) {
                human_size(s->mem_bytes, used, sizeof(used));
                if (lim)
                    human_size(s->mem_limit, limit, sizeof(limit));
                snprintf(mem, sizeof(mem), "%s / %s", used, lim ? limit : "unlimited");
            } else {
                snprintf(mem, sizeof(mem), "--");
            }
            if (lim)
                snprintf(mp, sizeof(mp), "%.2f%%", memp);
            else
                snprintf(mp, sizeof(mp), "--");
            if (s->has_pids)
                snprintf(pids, sizeof(pids), "%llu", (unsigned long long)s->pids);
            else
                snprintf(pids, sizeof(pids), "--");
            table_row(&t, id, v[i].r.name, cpus, mem, mp, pids);
        }
    }
    if (o->json) {
        print_json(arr);
        for (size_t i = 0; i < t.nrows * t.ncols; i++)
            free(t.cells[i]);
        free(t.cells);
    } else {
        table_print(&t);
    }
    json_decref(arr);
out:
    for (int i = 0; i < got && i < n; i++)
        if (v[i].dir)
            view_free(&v[i]);
    free(v);
    free(a);
    free(b);
    return rc;
}

/* ======================= start, stop, rm: one-action playbooks ======================= */

/* Runs one heropods action on the container, as `hero run` would. The base dir
 * reaches the action through HERO_BASE_DIR (where an action finds an instance not
 * configured in its playbook), so the instance's stored settings are used as they
 * are. Names in the text come from the store, where they were checked. */
static int run_action(cli_t *c, const view_t *v, const char *action, const char *extra)
{
    if (setenv("HERO_BASE_DIR", c->base_dir, 1) < 0)
        return failf("setenv: %s", strerror(errno));
    char *text = hero_xasprintf("!!heropods.%s name:'%s' heropods:'%s'%s%s\n", action, v->r.name,
                                v->r.instance, extra ? " " : "", extra ? extra : "");
    char *srcname = hero_xasprintf("hero pods %s", c->cmd->name);
    hs_playbook_t *pb = hs_playbook_load_mem(srcname, text, strlen(text));
    hero_validate(pb);
    const char *nc = getenv("NO_COLOR");
    bool color = isatty(STDERR_FILENO) && !(nc && *nc);
    int rc;
    if (pb->diags.nerrors) {
        hs_diags_print(stderr, &pb->diags, color);
        rc = failf("internal error: the %s action did not validate", action);
    } else {
        hero_run_opts_t ro = {.jobs = 1, .color = color};
        rc = hero_run(pb, &ro);
    }
    hs_playbook_free(pb);
    free(srcname);
    free(text);
    return rc;
}

static int cmd_start(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    if (!v.alive)
        rc = run_action(c, &v, "container_start", o->keep_alive ? "keep_alive:true" : NULL);
    /* running already: nothing to do (as with podman) */
    if (rc == 0)
        printf("%s\n", v.r.name);
    view_free(&v);
    return rc;
}

static int cmd_stop(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    char extra[64] = "";
    if (o->timeout_ms >= 0)
        snprintf(extra, sizeof(extra), "timeout:'%lldms'", (long long)o->timeout_ms);
    /* a container that never started has nothing to stop */
    if (strcmp(v.r.state, "created") != 0)
        rc = run_action(c, &v, "container_stop", extra[0] ? extra : NULL);
    if (rc == 0)
        printf("%s\n", v.r.name);
    view_free(&v);
    return rc;
}

static int cmd_rm(cli_t *c, opts_t *o)
{
    view_t v;
    int rc = lookup_view(c, o->args[0], &v);
    if (rc)
        return rc;
    if (v.alive && !o->force) {
        rc = failf("container '%s' is running: stop it first (hero pods stop %s/%s), or use rm -f",
                   v.r.name, v.r.instance, v.r.name);
    } else {
        rc = run_action(c, &v, "container_delete", NULL);
        if (rc == 0)
            printf("%s\n", v.r.name);
    }
    view_free(&v);
    return rc;
}

/* ======================= images ======================= */

static int cmd_overlay(cli_t *c, opts_t *o)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (open_store(c, &e) < 0)
        return fail_err(&e);
    return hero_pods_cli_overlay(c->store, c->instance, o->json);
}

static int cmd_images(cli_t *c, opts_t *o)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (open_store(c, &e) < 0)
        return fail_err(&e);
    hero_image_rec_t *v = NULL;
    size_t n = 0;
    if (c->store && hero_store_image_list(c->store, &v, &n, &e) < 0)
        return fail_err(&e);
    json_t *arr = json_array();
    table_t t = {.ncols = 6};
    table_row(&t, "NAME", "REFERENCE", "DIGEST", "CREATED", "SIZE", "CONTAINERS");
    for (size_t i = 0; i < n; i++) {
        int64_t users = 0;
        if (hero_store_image_users(c->store, v[i].name, &users, &e) < 0) {
            hero_error_clear(&e);
            users = -1;
        }
        if (o->json) {
            json_t *j = json_object();
            json_object_set_new(j, "name", json_string(v[i].name));
            json_object_set_new(j, "ref", v[i].ref ? json_string(v[i].ref) : json_null());
            json_object_set_new(j, "digest", v[i].digest ? json_string(v[i].digest) : json_null());
            json_object_set_new(j, "size", json_integer(v[i].size));
            json_object_set_new(j, "created", json_time(v[i].created));
            json_object_set_new(j, "containers", users >= 0 ? json_integer(users) : json_null());
            json_object_set_new(j, "rootfs", json_string(v[i].rootfs));
            json_array_append_new(arr, j);
        } else {
            char digest[24] = "-", size[32], created[96], cnt[32];
            if (v[i].digest) {
                const char *d = strchr(v[i].digest, ':');
                snprintf(digest, sizeof(digest), "%.12s", d ? d + 1 : v[i].digest);
            }
            human_size((uint64_t)(v[i].size > 0 ? v[i].size : 0), size, sizeof(size));
            human_ago(v[i].created, created, sizeof(created));
            if (users >= 0)
                snprintf(cnt, sizeof(cnt), "%lld", (long long)users);
            else
                snprintf(cnt, sizeof(cnt), "?");
            table_row(&t, v[i].name, v[i].ref ? v[i].ref : "-", digest, created, size, cnt);
        }
    }
    hero_image_recs_free(v, n);
    if (o->json) {
        print_json(arr);
        for (size_t i = 0; i < t.nrows * t.ncols; i++)
            free(t.cells[i]);
        free(t.cells);
    } else {
        table_print(&t);
    }
    json_decref(arr);
    return EXIT_OK;
}

/* ======================= options ======================= */

static const struct option all_longs[] = {
    {"all", no_argument, NULL, 'a'},         {"json", no_argument, NULL, 'J'},
    {"format", required_argument, NULL, 'F'}, {"follow", no_argument, NULL, 'f'},
    {"force", no_argument, NULL, 'f'},       {"interactive", no_argument, NULL, 'i'},
    {"tty", no_argument, NULL, 't'},         {"timeout", required_argument, NULL, 'T'},
    {"interval", required_argument, NULL, 'I'}, {"keep-alive", no_argument, NULL, 'K'},
    {"base-dir", required_argument, NULL, 'B'}, {"instance", required_argument, NULL, 'N'},
    {"help", no_argument, NULL, 'h'},
};

static bool word_in(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
            return true;
    return false;
}

/* A duration: 500ms, 10s, 1m30s, or a bare number of seconds. */
static int parse_duration(const char *s, int64_t *ms)
{
    if (all_digits(s) && strlen(s) < 10) {
        *ms = strtoll(s, NULL, 10) * 1000;
        return 0;
    }
    return hero_conv_duration(s, strlen(s), ms) ? -1 : 0;
}

static int set_global(cli_t *c, int opt, const char *arg)
{
    if (!*arg)
        return usage_errf(c->cmd, "--%s needs a value", opt == 'B' ? "base-dir" : "instance");
    if (opt == 'B')
        c->base_dir = arg;
    else
        c->instance = arg;
    return 0;
}

/* Parses a command's options and operands; returns -1 to go on, or an exit code. */
static int parse_opts(cli_t *c, const cmd_t *cmd, int argc, char **argv, opts_t *o)
{
    struct option longs[sizeof(all_longs) / sizeof(all_longs[0]) + 1];
    size_t nl = 0;
    for (size_t i = 0; i < sizeof(all_longs) / sizeof(all_longs[0]); i++)
        if (word_in(cmd->longs, all_longs[i].name) || all_longs[i].val == 'B' ||
            all_longs[i].val == 'N' || all_longs[i].val == 'h')
            longs[nl++] = all_longs[i];
    memset(&longs[nl], 0, sizeof(longs[nl]));
    /* ":" first: a missing value is told apart from an unknown option */
    char shorts[16];
    bool plus = cmd->shorts[0] == '+';
    snprintf(shorts, sizeof(shorts), "%s:%sh", plus ? "+" : "", cmd->shorts + plus);
    memset(o, 0, sizeof(*o));
    o->interval_ms = o->timeout_ms = -1;
    optind = 0; /* glibc: start over */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        switch (ch) {
        case 'h': cmd_help(stdout, cmd); return EXIT_OK;
        case 'a': o->all = true; break;
        case 'J': o->json = true; break;
        case 'F':
            if (strcmp(optarg, "json") != 0)
                return usage_errf(cmd, "--format: only json is known, not '%s'", optarg);
            o->json = true;
            break;
        case 'f':
            if (!strcmp(cmd->name, "logs"))
                o->follow = true;
            else
                o->force = true;
            break;
        case 'i': o->interactive = true; break;
        case 'K': o->keep_alive = true; break;
        case 't':
            if (strcmp(cmd->name, "stop") != 0) {
                o->tty = true;
                break;
            }
            /* stop's -t is its timeout */
            __attribute__((fallthrough));
        case 'T':
            if (parse_duration(optarg, &o->timeout_ms) < 0)
                return usage_errf(cmd, "--timeout needs a duration such as 10s or 500ms, not '%s'",
                                  optarg);
            break;
        case 'I':
            if (parse_duration(optarg, &o->interval_ms) < 0)
                return usage_errf(cmd, "--interval needs a duration such as 500ms or 2s, not '%s'",
                                  optarg);
            break;
        case 'B':
        case 'N': {
            int rc = set_global(c, ch, optarg);
            if (rc)
                return rc;
            break;
        }
        case ':':
            return usage_errf(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt != '?' && (optopt < 'A' || optopt > 'Z'))
                return usage_errf(cmd, "%s: unknown option '-%c'", cmd->name, optopt);
            return usage_errf(cmd, "%s: unknown option '%s'", cmd->name, argv[optind - 1]);
        }
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    if (o->nargs < cmd->min_args)
        return usage_errf(cmd, "%s needs %s", cmd->name,
                          cmd->min_args == 1 ? "a container name" : "a container name and a command");
    if (cmd->max_args >= 0 && o->nargs > cmd->max_args)
        return usage_errf(cmd, "%s: unexpected argument '%s'", cmd->name, o->args[cmd->max_args]);
    return -1;
}

int hero_heropods_cli(int argc, char **argv)
{
    cli_t c = {.base_dir = hero_pods_default_base_dir()};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(pods_usage, stdout);
            return EXIT_OK;
        }
        int opt = !strncmp(a, "--base-dir", 10) ? 'B' : !strncmp(a, "--instance", 10) ? 'N' : 0;
        const char *rest = a + 10;
        if (opt && *rest == '=') {
            int rc = set_global(&c, opt, rest + 1);
            if (rc)
                return rc;
        } else if (opt && !*rest) {
            if (i + 1 >= argc)
                return usage_errf(NULL, "%s needs a value", a);
            int rc = set_global(&c, opt, argv[++i]);
            if (rc)
                return rc;
        } else {
            return usage_errf(NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc) {
        fputs(pods_usage, stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i];
    if (!strcmp(name, "help")) {
        if (i + 1 >= argc) {
            fputs(pods_usage, stdout);
            return EXIT_OK;
        }
        name = argv[i + 1];
        for (size_t k = 0; k < NCOMMANDS; k++)
            if (!strcmp(commands[k].name, name)) {
                cmd_help(stdout, &commands[k]);
                return EXIT_OK;
            }
        return usage_errf(NULL, "help: unknown command '%s'", name);
    }
    const cmd_t *cmd = NULL;
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (!strcmp(commands[k].name, name))
            cmd = &commands[k];
    if (!cmd) {
        fprintf(stderr, "hero pods: unknown command '%s'\n", name);
        fputs(pods_usage, stderr);
        return EXIT_USAGE;
    }
    c.cmd = cmd;
    opts_t o;
    int rc = parse_opts(&c, cmd, argc - i, argv + i, &o);
    if (rc >= 0)
        return rc;
    c.in.name = (char *)"";
    c.in.base_dir = (char *)c.base_dir;
    rc = cmd->fn(&c, &o);
    fflush(stdout);
    hero_heropods_shutdown();
    return rc;
}
