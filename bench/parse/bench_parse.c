/* bench_parse: parse-and-validate throughput and peak memory of `hero run --check`.
 *
 * 1. Generates a realistic playbook of --size MB (default 50) into a temp file (or
 *    --keep FILE): heropods deployments as users write them, with comments, blank
 *    lines, every list form, quoted strings with escapes and multi-line commands.
 *    The PRNG seed is fixed, so every run generates the same bytes.
 * 2. Runs `HERO run --check FILE` --runs times (fork + execv, no shell), timing each
 *    run with CLOCK_MONOTONIC and reading the child's peak RSS from wait4().
 * 3. Prints size, best and median MB/s, peak RSS and peak/size, and whether the
 *    targets (>= 100 MB/s, peak <= 3x file size) are met.
 *
 * A benchmark, not a test: exits 0 whether the targets are met or not, 1 when hero
 * fails (its exit status and first diagnostics are printed), 2 on a usage error or
 * when the benchmark itself cannot run. 1 MB = 1048576 bytes throughout.
 *
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o build/bench_parse \
 *      bench/parse/bench_parse.c
 *   build/bench_parse --hero build/hero [--size MB] [--runs N] [--keep FILE]
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB 1048576.0
#define TARGET_MBPS 100.0
#define TARGET_RATIO 3.0
#define SEED 0x5eed0fb0a7c0ffeeULL

/* ------------------------------------------------------------------ PRNG */

static uint64_t rng_state = SEED;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rnd(unsigned n) /* 0 .. n-1 */
{
    return (unsigned)(rng_next() % n);
}

static bool chance(unsigned percent)
{
    return rnd(100) < percent;
}

#define PICK(arr) ((arr)[rnd(sizeof(arr) / sizeof((arr)[0]))])

/* ------------------------------------------------------------------ output */

static FILE *out;
static uint64_t out_bytes;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(out, fmt, ap);
    va_end(ap);
    if (n < 0) {
        perror("bench_parse: write");
        exit(1);
    }
    out_bytes += (uint64_t)n;
}

/* A parameter as it is written: `key:value`. A multi-line value is emitted on its own
 * continuation line(s), since its closing quote ends the line. */
#define MAXP 24
#define PLEN 1024

typedef struct {
    char text[PLEN];
    bool multiline;
} param_t;

static param_t params[MAXP];
static int nparams;

static void P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void P(const char *fmt, ...)
{
    if (nparams == MAXP)
        abort();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(params[nparams].text, PLEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PLEN)
        abort();
    params[nparams].multiline = strchr(params[nparams].text, '\n') != NULL;
    nparams++;
}

static const char *const trailing_notes[] = {
    "// TODO: tune", "// keep in sync with prod", "// see ops runbook", "// was 256M",
    "// ticket OPS-1142", "// default would do", "// do not change", "// from staging",
};
static const char *const block_comments[] = {
    "# limits", "# networking", "// runtime settings", "# mounts and env",
    "// keep the config read-only", "# ports published on the host",
};

/* Writes the action: its first parameters inline, the rest on indented lines (one to
 * three per line), with the occasional indented comment, blank line or trailing note. */
static void emit_action(const char *name)
{
    const char *indent = chance(80) ? "    " : chance(50) ? "  " : "\t";
    const char *bang = chance(99) ? "!!" : "!";
    emit("%s%s", bang, name);
    int i = 0;
    int inline_n = chance(25) ? nparams : (int)rnd(3);
    for (; i < nparams && i < inline_n && !params[i].multiline; i++)
        emit(" %s", params[i].text);
    if (i < nparams && chance(5))
        emit(" %s", PICK(trailing_notes));
    emit("\n");
    while (i < nparams) {
        if (chance(3))
            emit("\n");
        if (chance(4))
            emit("%s%s\n", indent, PICK(block_comments));
        emit("%s%s", indent, params[i].text);
        bool ml = params[i].multiline;
        i++;
        for (int k = (int)rnd(3); !ml && k > 0 && i < nparams && !params[i].multiline; k--, i++)
            emit(" %s", params[i].text);
        if (!ml && chance(6))
            emit(" %s", PICK(trailing_notes));
        emit("\n");
    }
    nparams = 0;
}

/* ------------------------------------------------------------------ vocabulary */

static const char *const bools_true[] = {"true", "true", "true", "yes", "1", "True"};
static const char *const bools_false[] = {"false", "false", "false", "no", "0", "False"};
static const char *B(bool v)
{
    return v ? PICK(bools_true) : PICK(bools_false);
}

static const char *const roles[] = {
    "web", "api", "db", "cache", "worker", "redis", "nginx", "build", "ci-runner", "test",
    "gateway", "queue", "mail", "metrics", "grafana", "postgres", "minio", "app", "auth",
    "search", "Proxy", "svc", "cron", "backup",
};
static const char *const envs[] = {"prod", "staging", "dev", "qa", "eu1", "us2", "lab"};
static const char *const images[] = {
    "alpine_3_20", "alpine_3_20", "alpine_3_20", "ubuntu_24_04", "ubuntu_24_04", "ubuntu_25_04",
    "embedded", "docker.io/library/nginx:alpine", "docker.io/library/redis:7-alpine",
    "docker.io/library/postgres:16", "ghcr.io/example/api:1.4.2", "custom",
};
static const char *const mems[] = {"64M", "128M", "256M", "512M", "512M", "1G", "1536M", "2G", "4G"};
static const char *const cpus[] = {"0.25", "0.5", "1", "1", "1.5", "2", "4"};
static const char *const durations[] = {"500ms", "5s", "10s", "30s", "1m", "90s", "2m", "1m30s", "5m"};
static const char *const env_vars[] = {
    "APP_ENV=production", "LOG_LEVEL=info", "LOG_LEVEL=debug", "TZ=UTC", "PORT=8080",
    "WORKERS=4", "LANG=C.UTF-8", "REDIS_URL=redis://10.10.0.5:6379/0", "FEATURE_X=1",
    "PGDATA=/var/lib/postgresql/data", "HTTP_PROXY=http://proxy.internal:3128",
};
static const char *const caps[] = {"NET_ADMIN", "SYS_PTRACE", "NET_RAW", "MKNOD", "SYS_TIME"};

static const char *const single_cmds[] = {
    "cmd:'apk add --no-cache curl ca-certificates'",
    "cmd:'apt-get update && apt-get install -y nginx'",
    "cmd:'cat /etc/os-release'",
    "cmd:'ls -la /app'",
    "cmd:'ps aux | grep -v grep | grep nginx'",
    "cmd:'echo \"hello from $HOSTNAME\"'",
    "cmd:'echo \"it\\'s alive\" > /tmp/status'",
    "cmd:\"echo 'single' and \\\"double\\\" quotes\"",
    "cmd:\"printf '%s\\\\n' one two three\"",
    "cmd:'grep \"a\\.b\" /etc/hosts || true'",
    "cmd:'wget -qO- http://127.0.0.1:8080/health // not a comment'",
    "cmd:'df -h / | tail -n 1'",
    "cmd:'uname -a'",
    "cmd:'id && whoami'",
    "cmd:'sleep 1; date -u +%Y-%m-%dT%H:%M:%SZ'",
    "cmd:'awk -F: \\'{print $1}\\' /etc/passwd | sort | head -n 5'",
    "cmd:'nginx -t'",
    "cmd:'redis-cli ping'",
    "cmd:'test -f /app/config.yml'",
    "cmd:'rc-service nginx reload || nginx -s reload'",
    "cmd:'find /var/log -name \"*.log\" -mtime +7 -delete'",
    "cmd:'mkdir -p /data/backups && tar czf /data/backups/etc.tgz /etc'",
    "cmd:'ip -4 addr show eth0 && ip route'",
    "cmd:'cat /etc/resolv.conf'",
    "cmd:'sh -c \"exit 0\"'",
    "cmd:'C:\\\\temp is not a path here'",
};
static const char *const args_cmds[] = {
    "args:['ls', '-la', '/']",
    "args:['/bin/echo', 'hello world']",
    "args:[cat, /etc/hostname]",
    "args:'nginx', '-t'",
    "args:id,-u",
    "args:['sh', '-c', 'echo $PATH']",
};
static const char *const echo_msgs[] = {
    "msg:'deploying %s'", "msg:'--- %s: done ---'", "msg:\"starting %s, don't panic\"",
    "msg:'%s is up, see https://status.example.com/'", "msg:'cleaning up %s'",
    "msg:'%s: it\\'s ready'",
};

/* Multi-line commands: `%1$s` is the block's indent, `%2$s` the container name. The body of a '...' value has no
 * unescaped ', the body of a "..." none of ", and triple quotes contain anything. */
static const char *const ml_cmds[] = {
    "cmd:'\n%1$s    set -e\n%1$s    mkdir -p /app/data\n%1$s    echo \"ready\" > "
    "/app/data/status\n%1$s    chown -R 1000:1000 /app\n%1$s    '",
    "cmd:\"\"\"\n%1$s    cat > /etc/motd <<'EOF'\n%1$s    Welcome to %2$s\n%1$s    Don't "
    "store secrets here.\n%1$s    EOF\n%1$s    chmod 644 /etc/motd\n%1$s    \"\"\"",
    "cmd:'''\n%1$s    for i in 1 2 3; do\n%1$s        echo \"attempt $i\"\n%1$s        "
    "wget -q -O /dev/null http://localhost/ && break\n%1$s        sleep 1\n%1$s    done\n"
    "%1$s    '''",
    "cmd:\"\n%1$s    apk update\n%1$s    apk add --no-cache python3 py3-pip\n%1$s    "
    "python3 -c 'print(42)'\n%1$s    \"",
    "cmd:'\n%1$s    if [ ! -d /var/lib/postgresql/data/base ]; then\n%1$s        initdb -D "
    "/var/lib/postgresql/data\n%1$s    fi\n%1$s    echo \\'init done\\'\n%1$s    '",
};

/* ------------------------------------------------------------------ playbook pieces */

static unsigned container_seq, instance_seq;
static char cur_instance[64];
static bool have_instance;

static void gen_configure(void)
{
    unsigned n = instance_seq++;
    snprintf(cur_instance, sizeof(cur_instance), "%s%u", PICK(envs), n);
    have_instance = true;
    P("name:'%s'", cur_instance);
    if (chance(70)) {
        /* distinct subnets: /24s in 10.20.0.0/14 and up by instance number, and a
         * few /20s (172.16.0.0/12) and /26s (192.168.0.0/16) while they last */
        unsigned kind = rnd(3);
        if ((kind == 1 && n >= 256) || (kind == 2 && n >= 1024))
            kind = 0;
        unsigned a = n % 256, b = 20 + (n / 256) % 200;
        char subnet[32], gw[32];
        if (kind == 0) { /* /24 */
            snprintf(subnet, sizeof(subnet), "10.%u.%u.0/24", b, a);
            snprintf(gw, sizeof(gw), "10.%u.%u.1", b, a);
        } else if (kind == 1) { /* /20 inside 172.16.0.0/12 */
            unsigned x = (n % 256) & 0xf0;
            snprintf(subnet, sizeof(subnet), "172.%u.%u.0/20", 16 + (n / 16) % 16, x);
            snprintf(gw, sizeof(gw), "172.%u.%u.1", 16 + (n / 16) % 16, x);
        } else { /* /26 */
            unsigned q = (n % 4) * 64;
            snprintf(subnet, sizeof(subnet), "192.168.%u.%u/26", (n / 4) % 256, q);
            snprintf(gw, sizeof(gw), "192.168.%u.%u", (n / 4) % 256, q + 1);
        }
        P(chance(50) ? "subnet:'%s'" : "subnet:%s", subnet);
        if (chance(60))
            P("gateway_ip:%s", gw);
    }
    if (chance(50))
        P("bridge_name:hp%u", n % 100000);
    switch (rnd(5)) {
    case 0: P("dns_servers:['8.8.8.8', '8.8.4.4']"); break;
    case 1: P("dns_servers:1.1.1.1,1.0.0.1"); break;
    case 2: P("dns_servers:'9.9.9.9', '149.112.112.112'"); break;
    case 3: P("dns_servers:[10.0.0.53, 10.0.1.53]"); break;
    default: break;
    }
    if (chance(40))
        P("base_dir:'/var/lib/hero/%s'", cur_instance);
    if (chance(40))
        P("use_podman:%s", B(chance(20)));
    if (chance(30))
        P("reset:%s", B(chance(50)));
    if (chance(30))
        P("nat:%s", B(chance(80)));
    emit_action("heropods.configure");
}

static void maybe_instance(void)
{
    if (have_instance && chance(25))
        P("heropods:%s", cur_instance);
}

static void gen_list(const char *key, const char *const *items, unsigned nitems, unsigned max)
{
    char buf[PLEN];
    size_t len = 0;
    unsigned n = 1 + rnd(max);
    unsigned form = rnd(4);
    unsigned start = rnd(nitems);
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s:%s", key,
                            form >= 2 ? "[" : "");
    for (unsigned i = 0; i < n; i++) {
        const char *it = items[(start + i) % nitems];
        const char *sep = i == 0 ? "" : form == 0 ? "," : ", ";
        const char *q = form == 1 || form == 3 ? "'" : "";
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s%s%s", sep, q, it, q);
    }
    if (form >= 2)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "]");
    P("%s", buf);
}

static void gen_container(const char *project)
{
    char name[80];
    unsigned id = container_seq++;
    const char *role = PICK(roles);
    switch (rnd(4)) {
    case 0: snprintf(name, sizeof(name), "%s-%u", role, id); break;
    case 1: snprintf(name, sizeof(name), "%s_%s_%u", project, role, id); break;
    case 2: snprintf(name, sizeof(name), "%s.%s-%u", role, PICK(envs), id); break;
    default: snprintf(name, sizeof(name), "%u%s", id, role); break;
    }
    name[63] = 0;
    bool q = chance(60); /* name quoted or not */

    if (chance(20))
        emit("// %s: %s container\n", name, role);

    /* container_new */
    P(q ? "name:'%s'" : "name:%s", name);
    const char *img = PICK(images);
    if (!strcmp(img, "custom")) {
        P("image:'custom'");
        P("custom_image_name:'%s_img'", role);
        P("docker_url:'docker.io/library/%s:latest'", chance(50) ? "busybox" : "debian");
    } else if (chance(90)) {
        P(strchr(img, '/') ? "image:'%s'" : "image:%s", img);
    }
    if (chance(70))
        P("memory:%s", PICK(mems));
    if (chance(60))
        P("cpus:%s", PICK(cpus));
    if (chance(30))
        P("pids_limit:%u", 64u << rnd(6));
    if (chance(60))
        gen_list("env", env_vars, sizeof(env_vars) / sizeof(env_vars[0]), 4);
    if (chance(50)) {
        char m[3][160];
        snprintf(m[0], sizeof(m[0]), "/srv/%s/data:/data", name);
        snprintf(m[1], sizeof(m[1]), "/etc/ssl/certs:/etc/ssl/certs:ro");
        snprintf(m[2], sizeof(m[2]), "/var/log/hero/%s:/var/log/app", name);
        const char *ms[3] = {m[0], m[1], m[2]};
        gen_list("mounts", ms, 3, 3);
    }
    if (chance(50)) {
        char pbuf[3][32];
        unsigned base = 8000 + (id % 50000);
        snprintf(pbuf[0], sizeof(pbuf[0]), "%u:80/tcp", base);
        snprintf(pbuf[1], sizeof(pbuf[1]), "%u:443", base + 1);
        snprintf(pbuf[2], sizeof(pbuf[2]), "%u:53/udp", base + 2);
        const char *ps[3] = {pbuf[0], pbuf[1], pbuf[2]};
        gen_list("ports", ps, 3, 3);
    }
    if (chance(20))
        P("hostname:%s", role);
    if (chance(20))
        P("workdir:/app");
    if (chance(15))
        P("user:'1000:1000'");
    if (chance(10))
        gen_list("cap_add", caps, 2, 2);
    if (chance(8))
        gen_list("cap_drop", caps + 2, 3, 2);
    if (chance(10))
        P("entrypoint:['/bin/sh', '-c', 'sleep infinity']");
    if (chance(8))
        P("cmd:[nginx, -g, 'daemon off;']");
    if (chance(15))
        P("reset:%s", B(chance(50)));
    maybe_instance();
    emit_action("heropods.container_new");
    if (chance(40))
        emit("\n");

    /* container_start */
    P(q ? "name:'%s'" : "name:%s", name);
    if (chance(80))
        P("keep_alive:%s", B(chance(85)));
    if (chance(30))
        P("timeout:%s", PICK(durations));
    maybe_instance();
    emit_action("heropods.container_start");

    /* container_exec */
    for (unsigned n = 1 + rnd(5); n > 0; n--) {
        if (chance(10))
            emit(chance(50) ? "// check %s\n" : "# step for %s\n", name);
        P(q ? "name:'%s'" : "name:%s", name);
        if (chance(12)) {
            char indent[8];
            snprintf(indent, sizeof(indent), "%s", chance(80) ? "    " : "  ");
            P(PICK(ml_cmds), indent, name);
        } else if (chance(8)) {
            P("%s", PICK(args_cmds));
        } else {
            P("%s", PICK(single_cmds));
        }
        if (chance(30))
            P("stdout:%s", B(chance(60)));
        if (chance(15))
            P("timeout:%s", PICK(durations));
        if (chance(10))
            P("ignore_error:%s", B(chance(70)));
        if (chance(8))
            gen_list("env", env_vars, sizeof(env_vars) / sizeof(env_vars[0]), 2);
        if (chance(8))
            P("workdir:'/app'");
        if (chance(5))
            P("user:root");
        maybe_instance();
        emit_action("heropods.container_exec");
    }

    /* container_stop / container_delete */
    if (chance(60)) {
        P(q ? "name:'%s'" : "name:%s", name);
        if (chance(40))
            P("timeout:%s", PICK(durations));
        maybe_instance();
        emit_action("heropods.container_stop");
    }
    if (chance(40)) {
        P(q ? "name:'%s'" : "name:%s", name);
        maybe_instance();
        emit_action("heropods.container_delete");
    }
    if (chance(70))
        emit("\n");
}

static const char *const projects[] = {
    "shop", "blog", "ci", "mon", "infra", "chat", "wiki", "pay", "etl", "ml",
};

static void gen_playbook(void)
{
    const char *project = PICK(projects);
    emit("%s", chance(50) ? "\n" : "");
    switch (rnd(3)) {
    case 0: emit("// ---- %s: deploy #%u ----\n", project, instance_seq); break;
    case 1: emit("# %s stack, generated by ops tooling\n", project); break;
    default: emit("// %s\n// owner: team-%s\n\n", project, PICK(envs)); break;
    }
    if (!have_instance || chance(35)) {
        gen_configure();
        emit("\n");
    }
    if (chance(50)) {
        P(PICK(echo_msgs), project);
        emit_action("core.echo");
    }
    for (unsigned n = 1 + rnd(4); n > 0; n--)
        gen_container(project);
    if (chance(30)) {
        P(PICK(echo_msgs), project);
        emit_action("core.echo");
    }
}

/* Writes about `target` bytes (whole playbooks, so it ends a little past it). */
static int generate(const char *path, uint64_t target)
{
    out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "bench_parse: %s: %s\n", path, strerror(errno));
        return -1;
    }
    static char buf[1 << 16];
    setvbuf(out, buf, _IOFBF, sizeof(buf));
    rng_state = SEED;
    container_seq = instance_seq = 0;
    have_instance = false;
    out_bytes = 0;
    emit("#!/usr/bin/env hero\n// generated by bench/parse/bench_parse.c (seed %#llx)\n",
         (unsigned long long)SEED);
    while (out_bytes < target)
        gen_playbook();
    if (fclose(out) != 0) {
        fprintf(stderr, "bench_parse: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ running hero */

typedef struct {
    int status;        /* from wait4 */
    double seconds;
    long maxrss_kb;
} run_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv with stdout to /dev/null and stderr to `errfd` (-1: /dev/null). */
static int run(char *const argv[], int errfd, run_t *r)
{
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_parse: fork");
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(errfd >= 0 ? errfd : nul, 2);
        }
        execv(argv[0], argv);
        dprintf(errfd >= 0 ? errfd : 2, "bench_parse: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    struct rusage ru;
    pid_t w;
    do
        w = wait4(pid, &r->status, 0, &ru);
    while (w < 0 && errno == EINTR);
    r->seconds = now() - t0;
    if (w < 0) {
        perror("bench_parse: wait4");
        return -1;
    }
    r->maxrss_kb = ru.ru_maxrss;
    return 0;
}

static bool run_ok(const run_t *r)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "status %#x", status);
}

/* Prints (on stdout, with the figures) up to `maxlines` lines of what hero wrote to
 * stderr; returns its size. */
static off_t show_stderr(int fd, int maxlines, const char *prefix)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0)
        return 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return st.st_size;
    FILE *f = fdopen(dup(fd), "r");
    if (!f)
        return st.st_size;
    char line[1024];
    int n = 0;
    while (n < maxlines && fgets(line, sizeof(line), f)) {
        printf("%s%s", prefix, line);
        if (!strchr(line, '\n'))
            putchar('\n');
        n++;
    }
    if (n == maxlines)
        printf("%s... (%lld bytes on stderr in all)\n", prefix, (long long)st.st_size);
    fclose(f);
    return st.st_size;
}

static int tmpfile_fd(char *path, size_t n, const char *suffix)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    snprintf(path, n, "%s/bench_parse.XXXXXX%s", dir, suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    if (fd < 0)
        fprintf(stderr, "bench_parse: mkstemps %s: %s\n", path, strerror(errno));
    return fd;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_parse [--size MB] [--runs N] [--hero PATH] [--keep FILE]\n"
            "  --size MB    size of the generated playbook (default 50; 1 MB = 1048576 bytes)\n"
            "  --runs N     how many times to run hero (default 3)\n"
            "  --hero PATH  the hero binary (default ./build/hero)\n"
            "  --keep FILE  generate the playbook at FILE and keep it\n");
}

static char probe_path[PATH_MAX], gen_path[PATH_MAX];
static bool gen_is_temp;

static void cleanup(void)
{
    if (probe_path[0])
        unlink(probe_path);
    if (gen_is_temp && gen_path[0])
        unlink(gen_path);
}

int main(int argc, char **argv)
{
    double size_mb = 50;
    long runs = 3;
    const char *hero = "./build/hero", *keep = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[i + 1];
        bool known = (klen == 6 && !strncmp(a, "--size", 6)) || (klen == 6 && !strncmp(a, "--runs", 6)) ||
                     (klen == 6 && !strncmp(a, "--hero", 6)) || (klen == 6 && !strncmp(a, "--keep", 6));
        if (!known) {
            fprintf(stderr, "bench_parse: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "bench_parse: %s needs a value\n", a);
            return 2;
        }
        if (!eq)
            i++;
        char *end;
        if (!strncmp(a, "--size", 6)) {
            errno = 0;
            size_mb = strtod(v, &end);
            if (errno || *end || !(size_mb > 0) || size_mb > 4000) {
                fprintf(stderr, "bench_parse: --size: expected MB in (0, 4000], got '%s'\n", v);
                return 2;
            }
        } else if (!strncmp(a, "--runs", 6)) {
            errno = 0;
            runs = strtol(v, &end, 10);
            if (errno || *end || runs < 1 || runs > 1000) {
                fprintf(stderr, "bench_parse: --runs: expected 1..1000, got '%s'\n", v);
                return 2;
            }
        } else if (!strncmp(a, "--hero", 6)) {
            hero = v;
        } else {
            keep = v;
        }
    }
    if (access(hero, X_OK) != 0) {
        fprintf(stderr, "bench_parse: %s: %s (build it with `make`, or pass --hero PATH)\n", hero,
                strerror(errno));
        return 2;
    }
    atexit(cleanup);

    /* 1. generate */
    uint64_t target = (uint64_t)(size_mb * MIB);
    if (keep) {
        snprintf(gen_path, sizeof(gen_path), "%s", keep);
    } else {
        int fd = tmpfile_fd(gen_path, sizeof(gen_path), ".heroscript");
        if (fd < 0)
            return 2;
        close(fd);
        gen_is_temp = true;
    }
    printf("generating %.1f MB playbook at %s ...\n", size_mb, gen_path);
    fflush(stdout);
    double g0 = now();
    if (generate(gen_path, target) != 0)
        return 2;
    double gen_s = now() - g0;
    struct stat st;
    if (stat(gen_path, &st) != 0) {
        fprintf(stderr, "bench_parse: %s: %s\n", gen_path, strerror(errno));
        return 2;
    }
    double file_mb = (double)st.st_size / MIB;
    printf("generated %lld bytes (%.2f MB), %u containers, %u instances, in %.2f s\n",
           (long long)st.st_size, file_mb, container_seq, instance_seq, gen_s);

    /* 2. find out how to ask hero for a check: `run --check FILE`, or, while that does
     * not exist yet, the plain `hero FILE` (which parses, validates, and dumps) */
    int pfd = tmpfile_fd(probe_path, sizeof(probe_path), ".heroscript");
    if (pfd < 0)
        return 2;
    const char probe[] = "!!core.echo msg:'probe'\n";
    if (write(pfd, probe, sizeof(probe) - 1) != (ssize_t)(sizeof(probe) - 1)) {
        perror("bench_parse: write probe");
        return 2;
    }
    close(pfd);
    bool use_check = true;
    {
        char *pv[] = {(char *)hero, "run", "--check", probe_path, NULL};
        run_t r;
        if (run(pv, -1, &r) != 0)
            return 2;
        if (!run_ok(&r)) {
            char *pv2[] = {(char *)hero, probe_path, NULL};
            run_t r2;
            if (run(pv2, -1, &r2) != 0)
                return 2;
            if (run_ok(&r2)) {
                use_check = false;
                printf("note: `%s run --check` is not available yet; measuring `%s FILE` "
                       "instead (its stdout is discarded)\n",
                       hero, hero);
            }
        }
    }
    unlink(probe_path);
    probe_path[0] = 0;

    /* 3. measure */
    char *hv[6];
    int k = 0;
    hv[k++] = (char *)hero;
    if (use_check) {
        hv[k++] = "run";
        hv[k++] = "--check";
    }
    hv[k++] = gen_path;
    hv[k] = NULL;
    printf("running:");
    for (int j = 0; hv[j]; j++)
        printf(" %s", hv[j]);
    printf("  (%ld runs)\n", runs);
    fflush(stdout);

    char errpath[PATH_MAX];
    int errfd = tmpfile_fd(errpath, sizeof(errpath), ".err");
    if (errfd < 0)
        return 2;
    unlink(errpath);

    double *mbps = calloc((size_t)runs, sizeof(double));
    if (!mbps)
        return 2;
    long peak_kb = 0;
    bool warned = false;
    for (long j = 0; j < runs; j++) {
        if (ftruncate(errfd, 0) != 0 || lseek(errfd, 0, SEEK_SET) < 0) {
            perror("bench_parse: stderr file");
            return 2;
        }
        run_t r;
        if (run(hv, errfd, &r) != 0)
            return 2;
        if (!run_ok(&r)) {
            char how[96];
            describe_status(r.status, how, sizeof(how));
            printf("run %ld: hero failed: %s after %.3f s\n", j + 1, how, r.seconds);
            fflush(stdout);
            show_stderr(errfd, 20, "  hero: ");
            free(mbps);
            return 1;
        }
        mbps[j] = file_mb / r.seconds;
        if (r.maxrss_kb > peak_kb)
            peak_kb = r.maxrss_kb;
        printf("run %ld: %.3f s, %.1f MB/s, peak RSS %.1f MB\n", j + 1, r.seconds, mbps[j],
               (double)r.maxrss_kb * 1024 / MIB);
        fflush(stdout);
        if (!warned) {
            struct stat es;
            if (fstat(errfd, &es) == 0 && es.st_size > 0) {
                printf("warning: hero exited 0 but wrote on stderr:\n");
                fflush(stdout);
                show_stderr(errfd, 10, "  hero: ");
                warned = true;
            }
        }
    }
    close(errfd);

    qsort(mbps, (size_t)runs, sizeof(double), cmp_double);
    double best = mbps[runs - 1];
    double median = runs % 2 ? mbps[runs / 2] : (mbps[runs / 2 - 1] + mbps[runs / 2]) / 2;
    double peak_mb = (double)peak_kb * 1024 / MIB;
    double ratio = peak_mb / file_mb;
    free(mbps);

    printf("\n");
    printf("file size      %10.2f MB\n", file_mb);
    printf("throughput     %10.1f MB/s best, %.1f MB/s median (%ld runs)\n", best, median, runs);
    printf("peak RSS       %10.1f MB (%.2fx file size)\n", peak_mb, ratio);
    printf("target: throughput >= %.0f MB/s (median): %s\n", TARGET_MBPS,
           median >= TARGET_MBPS ? "met" : "missed");
    printf("target: peak RSS <= %.0fx file size:     %s\n", TARGET_RATIO,
           ratio <= TARGET_RATIO ? "met" : "missed");
    if (keep)
        printf("kept the playbook at %s\n", gen_path);
    return 0;
}
