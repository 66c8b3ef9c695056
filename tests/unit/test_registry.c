/* The registry client (actions/heropods/registry.h) and its HTTP layer.
 *
 *   1. references and platforms: normalisation as docker does, and refusals
 *   2. endpoints: docker.io -> registry-1.docker.io, mirrors, loopback is http
 *   3. a registry double (build/fixtures/regfix serve) over a layout this test
 *      writes: basic auth, a blob redirect to a "CDN" port that refuses
 *      Authorization, wrong bytes, a connection dropped midway, 6 downloads at once,
 *      503/429 retried, an index with an attestation entry, mirrors, bearer tokens
 *      refreshed on 401 and shared by concurrent requests; the HTTP layer alone
 *   4. Debian's docker-registry on loopback, filled with umoci and skopeo from the
 *      static busybox: OCI, Docker v2s2, a multi-platform index (pushed with curl),
 *      HEAD before GET, and a token-auth registry with regfix's token server
 *
 * Network: only 127.0.0.1, only servers this test starts (killed by pid at exit,
 * and by PR_SET_PDEATHSIG if the test dies). Parts 3 and 4 skip with a reason when
 * their programs are missing. */
#include "actions/heropods/registry.h"
#include "runtime/http.h"
#include "tests/unit/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t loop;
static char tmp[PATH_MAX];
static char regfix[PATH_MAX];
static pid_t pids[64];
static int n_pids;

/* ---- process and file helpers (blocking: the loop is not running here) ---- */

static void cleanup(void)
{
    for (int i = 0; i < n_pids; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    }
    n_pids = 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void remove_tmp(void)
{
    if (tmp[0] && !getenv("HERO_REGISTRY_TEST_KEEP"))
        nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_in(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_in(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *rel = hero_xvasprintf(fmt, ap);
    va_end(ap);
    char *p = hero_xasprintf("%s/%s", tmp, rel);
    free(rel);
    return p;
}

/* Starts argv in the background; stdout to a pipe (returned in *out_fd when not
 * NULL), stderr (and stdout otherwise) to logfile. Dies with us. */
static pid_t start_bg(const char *const *argv, int *out_fd, const char *logfile)
{
    int pp[2] = {-1, -1};
    if (out_fd && pipe(pp) < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        int log = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out_fd) {
            dup2(pp[1], 1);
            close(pp[0]);
            close(pp[1]);
        } else if (log >= 0) {
            dup2(log, 1);
        }
        if (log >= 0)
            dup2(log, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (out_fd) {
        close(pp[1]);
        *out_fd = pp[0];
    }
    if (pid > 0 && n_pids < (int)(sizeof(pids) / sizeof(pids[0])))
        pids[n_pids++] = pid;
    return pid;
}

/* Runs argv to completion; output to logfile. Returns the exit status. */
static int run_cmd(const char *logfile, const char *const *argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return 127;
    int ws;
    waitpid(pid, &ws, 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128;
}

/* The first line the program prints (its ports), within 10 s. */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = 0;
    return 0;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    bind(s, (struct sockaddr *)&a, sizeof(a));
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    return ntohs(a.sin_port);
}

static bool wait_port(int port)
{
    for (int i = 0; i < 200; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(s);
        if (ok)
            return true;
        usleep(25000);
    }
    return false;
}

static bool have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dup = hero_xstrdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = hero_xasprintf("%s/%s", d, name);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(dup);
    return found;
}

static void sha256_hex(const void *p, size_t n, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    unsigned dl;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[d[i] >> 4];
        out[8 + 2 * i] = hex[d[i] & 15];
    }
    out[71] = 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = hero_xmalloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len)
        *len = got;
    return b;
}

static bool file_has_digest(const char *path, const char *digest)
{
    size_t n;
    char *b = read_all(path, &n);
    if (!b)
        return false;
    char d[72];
    sha256_hex(b, n, d);
    free(b);
    return !strcmp(d, digest);
}

static int count_lines(const char *path, const char *needle)
{
    char *b = read_all(path, NULL);
    int n = 0;
    for (char *p = b; p && (p = strstr(p, needle)); p++)
        n++;
    free(b);
    return n;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static bool exists(const char *p)
{
    return access(p, F_OK) == 0;
}

/* ---- driving the loop ---- */

/* Runs the loop until *flag reaches want; false if the loop ran dry first. */
static bool run_until(const int *flag, int want)
{
    while (*flag < want)
        if (uv_run(&loop, UV_RUN_ONCE) == 0 && *flag < want)
            return false;
    return true;
}

static void on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* run_until, for at most ms milliseconds: false when the time ran out (or the loop ran
 * dry) first. For a wait that may never end on a regression. */
static bool run_until_ms(const int *flag, int want, uint64_t ms)
{
    bool late = false;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &late;
    uv_timer_start(&t, on_deadline, ms, 0);
    while (*flag < want && !late)
        if (uv_run(&loop, UV_RUN_ONCE) == 0)
            break;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* the close callback */
    return *flag >= want;
}

typedef struct resolved {
    int calls;
    hero_registry_image_t *img;
    int code;
    char *msg;
    /* the manifest callback: how often, and what it saw */
    int manifest_calls;
    size_t manifest_layers;
    bool manifest_without_config;
    bool manifest_first;        /* it came before the resolve callback */
} resolved_t;

static void on_manifest_known(const hero_registry_image_t *img, void *data)
{
    resolved_t *r = data;
    r->manifest_calls++;
    r->manifest_layers = img->n_layers;
    r->manifest_without_config = img->config == NULL && img->config_digest != NULL;
    r->manifest_first = r->calls == 0;
}

static void on_resolved(hero_registry_image_t *img, hero_error_t *err, void *data)
{
    resolved_t *r = data;
    r->calls++;
    r->img = img;
    if (err) {
        r->code = err->code;
        r->msg = hero_xstrdup(err->msg ? err->msg : "");
    }
}

static void resolved_free(resolved_t *r)
{
    hero_registry_image_free(r->img);
    free(r->msg);
    memset(r, 0, sizeof(*r));
}

static resolved_t resolve(hero_registry_t *reg, const char *text, const char *platform,
                          const char *known)
{
    resolved_t r = {0};
    hero_ref_t ref;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_ref_parse(text, &ref, &e) < 0) {
        r.calls = 1;
        r.code = e.code;
        r.msg = e.msg;
        return r;
    }
    hero_registry_resolve_opts_t o = {.platform = platform, .known_digest = known,
                                      .manifest = on_manifest_known};
    hero_registry_resolve(reg, &ref, &o, on_resolved, &r);
    hero_ref_free(&ref);
    if (!run_until(&r.calls, 1) && !r.msg)
        r.msg = hero_xstrdup("the loop ran dry before the callback");
    if (r.msg)
        fprintf(stderr, "resolve %s: %s\n", text, r.msg); /* expected ones too: not TAP */
    return r;
}

typedef struct fetched {
    int calls;
    int seq;                    /* the order its callback came in, among all fetches */
    int code;
    char *msg;
    uint64_t progress_done, progress_total;
    char partial[PATH_MAX];     /* PATH.partial */
    bool progress_ahead;        /* progress reported bytes the partial did not hold */
} fetched_t;

static int fetch_seq;

static void on_fetched(hero_error_t *err, void *data)
{
    fetched_t *f = data;
    f->calls++;
    f->seq = ++fetch_seq;
    if (err) {
        f->code = err->code;
        f->msg = hero_xstrdup(err->msg ? err->msg : "");
    }
}

static void on_progress(const char *digest, uint64_t done, uint64_t total, void *data)
{
    (void)digest;
    fetched_t *f = data;
    f->progress_done = done;
    f->progress_total = total;
    /* the bytes reported are in the file: a reader may follow it (pull.c does) */
    struct stat st;
    if (stat(f->partial, &st) < 0 || (uint64_t)st.st_size < done)
        f->progress_ahead = true;
}

static void fetch_start(hero_registry_t *reg, const char *text, const char *digest, int64_t size,
                        const char *path, fetched_t *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->partial, sizeof f->partial, "%s.partial", path ? path : "");
    hero_ref_t ref;
    if (hero_ref_parse(text, &ref, NULL) < 0) {
        f->calls = 1;
        f->msg = hero_xstrdup("bad reference");
        return;
    }
    hero_registry_blob_opts_t o = {.digest = digest, .size = size, .path = path,
                                   .progress = on_progress};
    hero_registry_fetch_blob(reg, &ref, &o, on_fetched, f);
    hero_ref_free(&ref);
}

static fetched_t fetch(hero_registry_t *reg, const char *text, const char *digest, int64_t size,
                       const char *path)
{
    fetched_t f;
    fetch_start(reg, text, digest, size, path, &f);
    run_until(&f.calls, 1);
    if (f.msg)
        fprintf(stderr, "fetch %s: %s\n", digest, f.msg);
    return f;
}

/* Closes the client and runs the loop dry: everything must be freed and closed. */
static void close_client(hero_registry_t *reg)
{
    hero_registry_close(reg);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Fetches every layer of img into dir; true when all arrived verified. */
static bool fetch_layers(hero_registry_t *reg, const char *ref, const hero_registry_image_t *img,
                         const char *dir)
{
    mkdir(dir, 0755);
    bool ok = img && img->n_layers > 0;
    for (size_t i = 0; ok && i < img->n_layers; i++) {
        char *p = hero_xasprintf("%s/%s", dir, img->layers[i].digest + 7);
        fetched_t f = fetch(reg, ref, img->layers[i].digest, img->layers[i].size, p);
        ok = f.calls == 1 && !f.msg && file_has_digest(p, img->layers[i].digest);
        free(f.msg);
        free(p);
    }
    return ok;
}

/* ---- 1. references and platforms ---- */

static void check_ref(const char *in, const char *reg, const char *repo, const char *tag,
                      const char *digest, const char *canonical)
{
    hero_ref_t r;
    hero_error_t e = HERO_ERROR_INIT;
    char what[256];
    snprintf(what, sizeof(what), "ref '%s' -> %s", in, canonical);
    int rc = hero_ref_parse(in, &r, &e);
    bool ok = rc == 0 && !strcmp(r.registry, reg) && !strcmp(r.repository, repo) &&
              ((!tag && !r.tag) || (tag && r.tag && !strcmp(tag, r.tag))) &&
              ((!digest && !r.digest) || (digest && r.digest && !strcmp(digest, r.digest))) &&
              !strcmp(r.canonical, canonical);
    TAP_OK(ok, what);
    if (!ok)
        printf("#   got rc=%d %s (%s)\n", rc, rc == 0 ? r.canonical : "", e.msg ? e.msg : "");
    hero_ref_free(&r);
    hero_error_clear(&e);
}

static void check_bad_ref(const char *in, const char *why)
{
    hero_ref_t r;
    hero_error_t e = HERO_ERROR_INIT;
    char what[256];
    snprintf(what, sizeof(what), "ref '%s' refused (%s)", in, why);
    int rc = hero_ref_parse(in, &r, &e);
    TAP_OK(rc < 0 && e.code == EINVAL && e.msg && strstr(e.msg, why) && !r.registry, what);
    if (e.msg && !strstr(e.msg, why))
        printf("#   message: %s\n", e.msg);
    if (rc == 0)
        hero_ref_free(&r);
    hero_error_clear(&e);
}

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_refs(void)
{
    check_ref("alpine", "docker.io", "library/alpine", "latest", NULL,
              "docker.io/library/alpine:latest");
    check_ref("alpine:3.20", "docker.io", "library/alpine", "3.20", NULL,
              "docker.io/library/alpine:3.20");
    check_ref("library/alpine", "docker.io", "library/alpine", "latest", NULL,
              "docker.io/library/alpine:latest");
    check_ref("docker.io/alpine", "docker.io", "library/alpine", "latest", NULL,
              "docker.io/library/alpine:latest");
    check_ref("index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", NULL,
              "docker.io/library/alpine:edge");
    check_ref("user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest");
    check_ref("ghcr.io/a/b:1", "ghcr.io", "a/b", "1", NULL, "ghcr.io/a/b:1");
    check_ref("localhost:5000/x", "localhost:5000", "x", "latest", NULL, "localhost:5000/x:latest");
    check_ref("localhost/x", "localhost", "x", "latest", NULL, "localhost/x:latest");
    check_ref("127.0.0.1:5000/x@sha256:" D64, "127.0.0.1:5000", "x", NULL, "sha256:" D64,
              "127.0.0.1:5000/x@sha256:" D64);
    check_ref("alpine:3.20@sha256:" D64, "docker.io", "library/alpine", "3.20", "sha256:" D64,
              "docker.io/library/alpine:3.20@sha256:" D64);
    check_ref("Quay.IO/org/some_app-x__y.z:v1.2-rc_3", "quay.io", "org/some_app-x__y.z",
              "v1.2-rc_3", NULL, "quay.io/org/some_app-x__y.z:v1.2-rc_3");
    check_ref("[::1]:5000/x:t", "[::1]:5000", "x", "t", NULL, "[::1]:5000/x:t");
    check_ref("localhost:5000", "docker.io", "library/localhost", "5000", NULL,
              "docker.io/library/localhost:5000");

    check_bad_ref("", "empty");
    check_bad_ref("Alpine", "lowercase");
    check_bad_ref("docker.io/Library/alpine", "lowercase");
    check_bad_ref("alpine:", "invalid tag");
    check_bad_ref("alpine:-x", "invalid tag");
    check_bad_ref(":tag", "no repository");
    check_bad_ref("a//b", "invalid repository");
    check_bad_ref("-a/b", "invalid repository");
    check_bad_ref("a_/b", "invalid repository");
    check_bad_ref("a b", "blank");
    check_bad_ref("alpine@sha256:abc", "64 hex");
    check_bad_ref("alpine@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                  "lowercase hex");
    check_bad_ref("alpine@md5:0123456789abcdef0123456789abcdef", "unsupported digest");
    check_bad_ref("host:99999/x", "invalid registry host");
    check_bad_ref("-host.io/x", "invalid registry host");

    hero_platform_t p;
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_platform_parse("linux/arm64/v8", &p, &e) == 0 && !strcmp(p.os, "linux") &&
               !strcmp(p.arch, "arm64") && p.variant && !strcmp(p.variant, "v8"),
           "platform linux/arm64/v8");
    hero_platform_free(&p);
    TAP_OK(hero_platform_parse("x86_64", &p, &e) == 0 && !strcmp(p.os, "linux") &&
               !strcmp(p.arch, "amd64") && !p.variant,
           "platform x86_64 -> linux/amd64");
    hero_platform_free(&p);
    TAP_OK(hero_platform_parse("linux/a/b/c", &p, &e) < 0 && e.code == EINVAL,
           "platform with four parts refused");
    hero_error_clear(&e);
    hero_platform_host(&p);
#if defined(__x86_64__)
    TAP_OK(!strcmp(p.os, "linux") && !strcmp(p.arch, "amd64"), "host platform is linux/amd64");
#else
    TAP_OK(!strcmp(p.os, "linux") && p.arch, "host platform known");
#endif
    hero_platform_free(&p);
}

/* ---- 2. endpoints ---- */

static void check_url(hero_registry_t *reg, const char *in, const char *url)
{
    hero_ref_t r;
    char *got = NULL;
    if (hero_ref_parse(in, &r, NULL) == 0) {
        got = hero_registry_manifest_url(reg, &r);
        hero_ref_free(&r);
    }
    char what[256];
    snprintf(what, sizeof(what), "%s is fetched from %s", in, url);
    TAP_STREQ(got, url, what);
    free(got);
}

static void test_endpoints(void)
{
    hero_registry_mirror_t mirrors[] = {
        {.prefix = "docker.io/library", .location = "mirror.example:5000/hub", .insecure = true},
        {.prefix = "quay.io", .location = "https://quay-mirror.example"},
        {.prefix = "ghcr.io/org/app", .location = "127.0.0.1:5001/apps/app"},
    };
    hero_registry_config_t cfg = {.mirrors = mirrors, .n_mirrors = 3};
    hero_registry_t *reg;
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_registry_new(&loop, &cfg, &reg, &e) == 0, "a client with mirrors");
    check_url(reg, "alpine", "http://mirror.example:5000/v2/hub/alpine/manifests/latest");
    check_url(reg, "user/app:1", "https://registry-1.docker.io/v2/user/app/manifests/1");
    check_url(reg, "quay.io/a/b", "https://quay-mirror.example/v2/a/b/manifests/latest");
    check_url(reg, "ghcr.io/org/app:2", "https://127.0.0.1:5001/v2/apps/app/manifests/2");
    check_url(reg, "ghcr.io/org/application", "https://ghcr.io/v2/org/application/manifests/latest");
    check_url(reg, "localhost:5000/x@sha256:" D64,
              "http://localhost:5000/v2/x/manifests/sha256:" D64);
    check_url(reg, "127.0.0.1:5000/x", "http://127.0.0.1:5000/v2/x/manifests/latest");
    close_client(reg);

    char *aj = path_in("auth-bad.json");
    write_file(aj, "{\"auths\": {\"h\": {\"auth\": \"bm9jb2xvbg==\"}}}", 42);
    TAP_OK(hero_registry_new(&loop, &(hero_registry_config_t){.auth_json = aj}, &reg, &e) < 0 &&
               e.msg && strstr(e.msg, "base64(user:password)"),
           "an auth.json entry without user:password is refused");
    hero_error_clear(&e);
    free(aj);
    TAP_OK(hero_registry_new(&loop, &(hero_registry_config_t){.auth_json = "/nonexistent/a.json"},
                             &reg, &e) == 0,
           "a missing auth.json is fine");
    close_client(reg);
}

/* ---- 3. the registry double ---- */

typedef struct layout {
    char *dir;
    char *config, *big, *layers[10], *manifest, *many, *arm_manifest, *attest, *index;
    size_t big_size, layer_size[10];
} layout_t;

static layout_t L;

static char *put_blob(const char *dir, const void *p, size_t n)
{
    char d[72];
    sha256_hex(p, n, d);
    char *path = hero_xasprintf("%s/blobs/sha256/%s", dir, d + 7);
    write_file(path, p, n);
    free(path);
    return hero_xstrdup(d);
}

static char *put_json(const char *dir, json_t *j, size_t *size)
{
    char *s = json_dumps(j, JSON_COMPACT);
    *size = strlen(s);
    char *d = put_blob(dir, s, *size);
    free(s);
    json_decref(j);
    return d;
}

static json_t *desc(const char *mt, const char *digest, size_t size)
{
    return json_pack("{s:s, s:s, s:I}", "mediaType", mt, "digest", digest, "size",
                     (json_int_t)size);
}

static char *random_bytes(size_t n, uint32_t seed)
{
    char *b = hero_xmalloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (char)x;
    }
    return b;
}

static json_t *manifest_json(const char *config, size_t config_size, json_t *layers)
{
    return json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType",
                     "application/vnd.oci.image.manifest.v1+json", "config",
                     desc("application/vnd.oci.image.config.v1+json", config, config_size),
                     "layers", layers);
}

/* An OCI layout: "latest" (one 1 MiB layer), "many" (10 layers), "multi" (an index:
 * an attestation entry claiming linux/amd64 first, then arm64, then amd64). */
static void make_layout(void)
{
    L.dir = path_in("layout");
    char *blobs = hero_xasprintf("%s/blobs/sha256", L.dir);
    char *b1 = hero_xasprintf("%s/blobs", L.dir);
    mkdir(L.dir, 0755);
    mkdir(b1, 0755);
    mkdir(blobs, 0755);
    free(b1);
    free(blobs);
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},"
                      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    const char *armcfg = "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\","
                         "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    size_t cfg_size = strlen(cfg), armcfg_size = strlen(armcfg), n;
    L.config = put_blob(L.dir, cfg, cfg_size);
    char *armconfig = put_blob(L.dir, armcfg, armcfg_size);
    L.big_size = 1024 * 1024;
    char *big = random_bytes(L.big_size, 99);
    L.big = put_blob(L.dir, big, L.big_size);
    free(big);
    json_t *many = json_array();
    for (int i = 0; i < 10; i++) {
        L.layer_size[i] = 40000 + (size_t)i * 1111;
        char *b = random_bytes(L.layer_size[i], (uint32_t)i + 1);
        L.layers[i] = put_blob(L.dir, b, L.layer_size[i]);
        free(b);
        json_array_append_new(many, desc("application/vnd.oci.image.layer.v1.tar+gzip",
                                         L.layers[i], L.layer_size[i]));
    }
    size_t msize, manysize, armsize, attsize, idxsize;
    L.manifest = put_json(L.dir,
                          manifest_json(L.config, cfg_size,
                                        json_pack("[o]", desc("application/vnd.oci.image.layer.v1.tar+gzip",
                                                              L.big, L.big_size))),
                          &msize);
    L.many = put_json(L.dir, manifest_json(L.config, cfg_size, many), &manysize);
    L.arm_manifest =
        put_json(L.dir,
                 manifest_json(armconfig, armcfg_size,
                               json_pack("[o]", desc("application/vnd.oci.image.layer.v1.tar+gzip",
                                                     L.layers[0], L.layer_size[0]))),
                 &armsize);
    L.attest = put_json(L.dir,
                        manifest_json(L.config, cfg_size,
                                      json_pack("[o]", desc("application/vnd.in-toto+json",
                                                            L.layers[1], L.layer_size[1]))),
                        &attsize);
    json_t *att = desc("application/vnd.oci.image.manifest.v1+json", L.attest, attsize);
    json_object_set_new(att, "platform", json_pack("{s:s, s:s}", "os", "linux", "architecture", "amd64"));
    json_object_set_new(att, "annotations",
                        json_pack("{s:s, s:s}", "vnd.docker.reference.type", "attestation-manifest",
                                  "vnd.docker.reference.digest", L.manifest));
    json_t *arm = desc("application/vnd.oci.image.manifest.v1+json", L.arm_manifest, armsize);
    json_object_set_new(arm, "platform", json_pack("{s:s, s:s, s:s}", "os", "linux", "architecture",
                                                   "arm64", "variant", "v8"));
    json_t *amd = desc("application/vnd.oci.image.manifest.v1+json", L.manifest, msize);
    json_object_set_new(amd, "platform", json_pack("{s:s, s:s}", "os", "linux", "architecture", "amd64"));
    L.index = put_json(L.dir,
                       json_pack("{s:i, s:s, s:[o,o,o]}", "schemaVersion", 2, "mediaType",
                                 "application/vnd.oci.image.index.v1+json", "manifests", att, arm, amd),
                       &idxsize);
    free(armconfig);
    json_t *refs = json_array();
    const char *names[] = {"latest", "many", "multi"};
    const char *digests[] = {L.manifest, L.many, L.index};
    size_t sizes[] = {msize, manysize, idxsize};
    for (int i = 0; i < 3; i++) {
        json_t *d = desc(i == 2 ? "application/vnd.oci.image.index.v1+json"
                                : "application/vnd.oci.image.manifest.v1+json",
                         digests[i], sizes[i]);
        json_object_set_new(d, "annotations",
                            json_pack("{s:s}", "org.opencontainers.image.ref.name", names[i]));
        json_array_append_new(refs, d);
    }
    char *ip = hero_xasprintf("%s/index.json", L.dir);
    json_t *top = json_pack("{s:i, s:o}", "schemaVersion", 2, "manifests", refs);
    json_dump_file(top, ip, 0);
    json_decref(top);
    free(ip);
    (void)n;
}

static void layout_free(void)
{
    free(L.dir);
    free(L.config);
    free(L.big);
    for (int i = 0; i < 10; i++)
        free(L.layers[i]);
    free(L.manifest);
    free(L.many);
    free(L.arm_manifest);
    free(L.attest);
    free(L.index);
}

typedef struct fixture {
    pid_t pid;
    int port, cdn;
    char *log;
    char host[64];   /* "127.0.0.1:PORT" */
} fixture_t;

/* Starts `regfix serve` over the layout with extra arguments. */
static bool fixture_start(fixture_t *f, const char *name, const char *const *extra)
{
    memset(f, 0, sizeof(*f));
    f->log = path_in("%s.log", name);
    char *stderr_log = path_in("%s.stderr", name);
    const char *argv[32] = {regfix, "serve", "--dir", L.dir, "--log", f->log};
    int n = 6;
    for (const char *const *e = extra; e && *e && n < 30; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    int out;
    f->pid = start_bg(argv, &out, stderr_log);
    free(stderr_log);
    char line[64];
    bool ok = f->pid > 0 && read_line(out, line, sizeof(line)) == 0 &&
              sscanf(line, "%d %d", &f->port, &f->cdn) == 2;
    close(out);
    snprintf(f->host, sizeof(f->host), "127.0.0.1:%d", f->port);
    return ok;
}

static void fixture_stop(fixture_t *f)
{
    for (int i = 0; i < n_pids; i++)
        if (pids[i] == f->pid) {
            kill(f->pid, SIGTERM);
            waitpid(f->pid, NULL, 0);
            pids[i] = 0;
        }
    free(f->log);
}

/* GET /_stats of the double, through hero's own HTTP client. */
typedef struct stats_get {
    int calls;
    long status;
    json_t *j;
} stats_get_t;

static void on_stats(hero_http_req_t *q, const hero_http_resp_t *resp, void *data)
{
    (void)q;
    stats_get_t *s = data;
    s->calls++;
    s->status = resp->status;
    s->j = json_loadb(resp->body, resp->body_len, 0, NULL);
}

static int fixture_stat(const fixture_t *f, const char *key)
{
    hero_http_t *h;
    if (hero_http_new(&loop, &h, NULL) < 0)
        return -1;
    char *url = hero_xasprintf("http://%s/_stats", f->host);
    stats_get_t s = {0};
    hero_http_start(h, &(hero_http_opts_t){.url = url}, on_stats, &s, NULL, NULL);
    run_until(&s.calls, 1);
    hero_http_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(url);
    int v = (int)json_integer_value(json_object_get(s.j, key));
    json_decref(s.j);
    return s.status == 200 ? v : -1;
}

/* The CDN port refuses Authorization: checked directly, so that a pull through it
 * proves the header was not forwarded. */
static void test_cdn_refuses_auth(const fixture_t *f)
{
    hero_http_t *h;
    hero_http_new(&loop, &h, NULL);
    char *url = hero_xasprintf("http://127.0.0.1:%d/cdn/%s", f->cdn, L.layers[0]);
    stats_get_t s = {0};
    hero_http_start(h, &(hero_http_opts_t){.url = url, .authorization = "Basic aGVybzpzZWNyZXQ="},
                    on_stats, &s, NULL, NULL);
    run_until(&s.calls, 1);
    TAP_OK(s.status == 400, "the CDN double answers 400 to a request with Authorization");
    json_decref(s.j);
    hero_http_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(url);
}

static void test_http_layer(const fixture_t *f, bool curl);

static hero_registry_t *client(const hero_registry_config_t *cfg)
{
    hero_registry_t *reg = NULL;
    hero_error_t e = HERO_ERROR_INIT;
    hero_registry_config_t c = cfg ? *cfg : (hero_registry_config_t){0};
    if (!c.backoff_ms)
        c.backoff_ms = 20;
    if (hero_registry_new(&loop, &c, &reg, &e) < 0) {
        printf("# %s\n", e.msg);
        hero_error_clear(&e);
        exit(1);
    }
    return reg;
}

/* basic auth on the registry, blobs redirected to the CDN, an index, HEAD */
static void test_double_redirect(void)
{
    fixture_t f;
    const char *extra[] = {"--user", "hero:secret", "--redirect", NULL};
    if (!TAP_OK(fixture_start(&f, "redirect", extra), "regfix serve --user --redirect starts")) {
        fixture_stop(&f);
        return;
    }
    test_cdn_refuses_auth(&f);

    /* credentials through a docker-style auth.json */
    char *aj = path_in("auth.json");
    char *json = hero_xasprintf("{\"auths\": {\"http://%s/v1/\": {\"auth\": \"aGVybzpzZWNyZXQ=\"}}}",
                                f.host);
    write_file(aj, json, strlen(json));
    free(json);
    hero_registry_t *reg = client(&(hero_registry_config_t){.auth_json = aj});
    free(aj);
    char *ref = hero_xasprintf("%s/test/img:latest", f.host);
    resolved_t r = resolve(reg, ref, NULL, NULL);
    TAP_OK(r.img && !r.msg && !strcmp(r.img->manifest_digest, L.manifest) &&
               !strcmp(r.img->ref_digest, L.manifest),
           "redirect: the manifest resolves with basic credentials from auth.json");
    TAP_OK(r.img && r.img->config && strstr(r.img->config, "\"architecture\":\"amd64\"") &&
               !strcmp(r.img->config_digest, L.config),
           "redirect: the config came through the CDN redirect, verified");
    TAP_OK(r.img && r.img->n_layers == 1 && !strcmp(r.img->layers[0].digest, L.big) &&
               r.img->layers[0].size == (int64_t)L.big_size &&
               !strcmp(r.img->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip"),
           "redirect: the layer list (digest, size, media type)");
    char *dir = path_in("redirect-blobs");
    TAP_OK(fetch_layers(reg, ref, r.img, dir), "redirect: the layer arrives from the CDN, verified");
    free(dir);
    TAP_OK(fixture_stat(&f, "cdn_auth_refused") == 1,
           "redirect: the CDN saw no Authorization header after the probe above");
    TAP_OK(count_lines(f.log, "/blobs/sha256:") == 2 &&
               count_lines(f.log, "?expires=1 range=- auth=none") == 2 &&
               count_lines(f.log, "?expires=1 range=- auth=basic") == 0,
           "redirect: config and layer went registry (with auth) -> CDN (without)");
    int unauth = count_lines(f.log, "/v2/test/img/manifests/latest range=- auth=none");
    TAP_OK(unauth == 1, "redirect: one 401 round trip, then basic sent up front");
    resolved_free(&r);

    /* the index: attestation entry (claiming linux/amd64) skipped, platform picked */
    char *multi = hero_xasprintf("%s/test/img:multi", f.host);
    r = resolve(reg, multi, NULL, NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.manifest) &&
               !strcmp(r.img->ref_digest, L.index),
           "index: the host's entry is picked, the attestation entry skipped");
    resolved_free(&r);
    r = resolve(reg, multi, "linux/arm64", NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.arm_manifest) &&
               strstr(r.img->config, "arm64"),
           "index: platform linux/arm64 picks the arm64 entry (v8 is arm64's default)");
    resolved_free(&r);
    r = resolve(reg, multi, "linux/s390x", NULL);
    TAP_OK(!r.img && r.code == ENOENT && r.msg && strstr(r.msg, "linux/s390x") &&
               strstr(r.msg, "linux/arm64/v8, linux/amd64"),
           "index: a missing platform names the ones offered");
    resolved_free(&r);

    /* HEAD before GET */
    hero_registry_stats_t s0, s1;
    hero_registry_stats(reg, &s0);
    r = resolve(reg, multi, NULL, L.index);
    hero_registry_stats(reg, &s1);
    TAP_OK(r.img && r.img->unchanged && !strcmp(r.img->ref_digest, L.index) && !r.img->manifest,
           "HEAD: a known digest that still matches is reported unchanged");
    TAP_OK(s1.manifest_heads == s0.manifest_heads + 1 && s1.manifest_gets == s0.manifest_gets &&
               s1.blob_gets == s0.blob_gets,
           "HEAD: one HEAD, no GET");
    resolved_free(&r);
    r = resolve(reg, multi, NULL, L.manifest);
    TAP_OK(r.img && !r.img->unchanged && !strcmp(r.img->manifest_digest, L.manifest),
           "HEAD: a different known digest leads to a full resolve");
    resolved_free(&r);
    free(multi);

    /* errors carry the registry's error document, status and URL */
    char *missing = hero_xasprintf("%s/test/img:nope", f.host);
    r = resolve(reg, missing, NULL, NULL);
    char *want = hero_xasprintf("GET http://%s/v2/test/img/manifests/nope: HTTP 404: "
                                "MANIFEST_UNKNOWN: manifest unknown",
                                f.host);
    TAP_OK(r.code == ENOENT && r.msg && !strcmp(r.msg, want),
           "a missing tag: ENOENT, URL, status and MANIFEST_UNKNOWN text");
    free(want);
    free(missing);
    resolved_free(&r);
    close_client(reg);

    /* a mirror never gets the origin's password, only its own */
    hero_registry_mirror_t mirror = {.prefix = "docker.io", .location = f.host, .insecure = true};
    hero_registry_cred_t hub = {.registry = "docker.io", .username = "hero", .password = "secret"};
    reg = client(&(hero_registry_config_t){.mirrors = &mirror, .n_mirrors = 1, .creds = &hub,
                                           .n_creds = 1});
    r = resolve(reg, "test/img", NULL, NULL);
    TAP_OK(!r.img && r.code == EACCES, "mirror: docker.io credentials are not sent to the mirror");
    resolved_free(&r);
    close_client(reg);
    hero_registry_cred_t own = {.registry = f.host, .username = "hero", .password = "secret"};
    reg = client(&(hero_registry_config_t){.mirrors = &mirror, .n_mirrors = 1, .creds = &own,
                                           .n_creds = 1});
    r = resolve(reg, "test/img", NULL, NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.manifest),
           "mirror: the mirror host's own credentials are");
    resolved_free(&r);
    close_client(reg);

    /* wrong credentials: the second 401 is reported */
    hero_registry_cred_t bad = {.registry = f.host, .username = "hero", .password = "wrong"};
    reg = client(&(hero_registry_config_t){.creds = &bad, .n_creds = 1});
    r = resolve(reg, ref, NULL, NULL);
    TAP_OK(!r.img && r.code == EACCES && r.msg && strstr(r.msg, "HTTP 401: UNAUTHORIZED"),
           "wrong credentials: EACCES with the registry's UNAUTHORIZED text");
    resolved_free(&r);
    close_client(reg);
    free(ref);
    test_http_layer(&f, false);
    test_http_layer(&f, true);
    fixture_stop(&f);
}

static void test_double_wrong_bytes(void)
{
    fixture_t f;
    const char *extra[] = {"--corrupt", L.big, NULL};
    if (!TAP_OK(fixture_start(&f, "corrupt", extra), "regfix serve --corrupt starts")) {
        fixture_stop(&f);
        return;
    }
    hero_registry_t *reg = client(NULL);
    char *ref = hero_xasprintf("%s/test/img", f.host);
    char *path = path_in("corrupt-blob");
    char *partial = hero_xasprintf("%s.partial", path);
    fetched_t b = fetch(reg, ref, L.big, (int64_t)L.big_size, path);
    char *want = hero_xasprintf("digest mismatch for blob %s: got sha256:", L.big);
    TAP_OK(b.calls == 1 && b.code == EBADMSG && b.msg && strstr(b.msg, want),
           "wrong bytes: the pull fails with a digest mismatch (EBADMSG)");
    TAP_OK(!exists(path) && !exists(partial), "wrong bytes: neither the file nor a .partial is kept");
    TAP_OK(b.progress_done == L.big_size && b.progress_total == L.big_size,
           "wrong bytes: progress reported up to the full size");
    free(b.msg);
    free(want);

    /* the size from the manifest is enforced as well */
    b = fetch(reg, ref, L.layers[0], (int64_t)L.layer_size[0] - 10, path);
    TAP_OK(b.code == EBADMSG && b.msg && strstr(b.msg, "larger than") && !exists(path) &&
               !exists(partial),
           "a blob longer than its manifest size is refused, nothing kept");
    free(b.msg);

    /* and a blob that is not there */
    b = fetch(reg, ref, "sha256:" D64, 10, path);
    TAP_OK(b.code == ENOENT && b.msg && strstr(b.msg, "HTTP 404: BLOB_UNKNOWN") && !exists(partial),
           "a missing blob: ENOENT with BLOB_UNKNOWN, no partial left");
    free(b.msg);
    free(path);
    free(partial);
    free(ref);
    close_client(reg);
    fixture_stop(&f);
}

/* One fetch of L.big from a fixture of its own: started with `extra` (its log and
 * files named after `name`), fetched with a fresh client into PATH; the outcome and
 * the client's stats are kept for the checks, big_end frees it all. */
typedef struct big_run {
    fixture_t f;
    bool started;
    fetched_t b;
    hero_registry_stats_t s;
    char *path, *partial;
} big_run_t;

static bool big_fetch_sized(big_run_t *r, const char *name, const char *const *extra,
                            int64_t size)
{
    memset(r, 0, sizeof(*r));
    char *what = hero_xasprintf("regfix serve (%s) starts", name);
    r->started = TAP_OK(fixture_start(&r->f, name, extra), what);
    free(what);
    if (!r->started)
        return false;
    hero_registry_t *reg = client(NULL);
    char *ref = hero_xasprintf("%s/test/img", r->f.host);
    r->path = path_in("%s-blob", name);
    r->partial = hero_xasprintf("%s.partial", r->path);
    r->b = fetch(reg, ref, L.big, size, r->path);
    hero_registry_stats(reg, &r->s);
    if (r->b.msg)
        printf("#   %s\n", r->b.msg);
    free(ref);
    close_client(reg);
    return true;
}

static bool big_fetch(big_run_t *r, const char *name, const char *const *extra)
{
    return big_fetch_sized(r, name, extra, (int64_t)L.big_size);
}

static bool big_whole(const big_run_t *r)
{
    return r->b.calls == 1 && !r->b.msg && file_has_digest(r->path, L.big) &&
           !exists(r->partial);
}

static void big_end(big_run_t *r)
{
    free(r->b.msg);
    free(r->path);
    free(r->partial);
    fixture_stop(&r->f);
}

static void test_double_drop(void)
{
    big_run_t r;
    char *drop = hero_xasprintf("%s=300000", L.big);
    const char *extra[] = {"--drop", drop, NULL};
    if (big_fetch(&r, "drop", extra)) {
        TAP_OK(big_whole(&r), "dropped midway: the blob completes, verified, renamed");
        TAP_OK(count_lines(r.f.log, "range=bytes=300000- ") == 1 && r.s.resumes == 1 &&
                   r.s.blob_gets == 2,
               "dropped midway: the second request asked for Range: bytes=300000-");
        TAP_OK(r.s.blob_bytes == L.big_size, "dropped midway: no byte fetched twice");
        TAP_OK(r.b.progress_done == L.big_size && !r.b.progress_ahead,
               "dropped midway: progress reports bytes that are in the file, resumes included");
    }
    big_end(&r);
    free(drop);
}

/* dropped midway, and the resumes answered in pieces (206s that end before the blob
 * does): each piece is kept and the rest asked for at once, until the blob is whole */
static void test_double_drop_pieces(void)
{
    big_run_t r;
    char *drop = hero_xasprintf("%s=300000", L.big);
    /* 1 MiB - 300000 = 748576 bytes left: four pieces, the last one short */
    const char *extra[] = {"--drop", drop, "--piece", "200000", NULL};
    if (big_fetch(&r, "pieces", extra)) {
        TAP_OK(big_whole(&r), "resumed in 200000-byte pieces: the blob completes, verified");
        TAP_OK(count_lines(r.f.log, "range=bytes=300000- ") == 1 &&
                   count_lines(r.f.log, "range=bytes=500000- ") == 1 &&
                   count_lines(r.f.log, "range=bytes=900000- ") == 1 && r.s.resumes == 4 &&
                   r.s.blob_gets == 5 && r.s.retries == 1,
               "resumed in pieces: each next piece asked for where the last one ended, "
               "without a backoff (one retry: the drop)");
        TAP_OK(r.s.blob_bytes == L.big_size, "resumed in pieces: no byte fetched twice");
    }
    big_end(&r);
    free(drop);
}

/* the manifest says the blob is larger than what the registry has: its pieces end at
 * the registry's end, which is no reason to ask for more (a 416): the size mismatch */
static void test_double_pieces_short_blob(void)
{
    big_run_t r;
    char *drop = hero_xasprintf("%s=300000", L.big);
    const char *extra[] = {"--drop", drop, "--piece", "200000", NULL};
    if (big_fetch_sized(&r, "pieces-short", extra, (int64_t)L.big_size + 4096)) {
        TAP_OK(r.b.msg && strstr(r.b.msg, "size mismatch") && !strstr(r.b.msg, "416") &&
                   count_lines(r.f.log, "range=bytes=1048576- ") == 0 && !exists(r.path) &&
                   !exists(r.partial),
               "pieces of a blob shorter than the manifest says: a size mismatch, not a 416");
    }
    big_end(&r);
    free(drop);
}

/* dropped midway (progress: the attempts start again), then every resume answered
 * 503: the error counts every attempt, the first one included */
static void test_double_drop_then_503(void)
{
    big_run_t r;
    char *drop = hero_xasprintf("%s=300000", L.big);
    const char *extra[] = {"--drop", drop, "--fail-ranges", NULL};
    if (big_fetch(&r, "drop-503", extra)) {
        TAP_OK(r.b.calls == 1 && r.b.msg && strstr(r.b.msg, "HTTP 503") &&
                   strstr(r.b.msg, "after 4 attempts") && r.s.blob_gets == 4 &&
                   !exists(r.path) && !exists(r.partial),
               "dropped, then 503 three times: \"after 4 attempts\", nothing left behind");
    }
    big_end(&r);
    free(drop);
}

/* every byte came, then the connection closed before the chunked body's last chunk:
 * the blob is whole, nothing is asked for again (bytes=SIZE- would be a 416) */
static void test_double_cut(void)
{
    big_run_t r;
    const char *extra[] = {"--cut", L.big, NULL};
    if (big_fetch(&r, "cut", extra)) {
        TAP_OK(big_whole(&r), "cut before its last chunk: the whole blob is kept, verified, renamed");
        TAP_OK(r.s.blob_gets == 1 && count_lines(r.f.log, "range=bytes=") == 0,
               "cut before its last chunk: nothing asked for again");
    }
    big_end(&r);
}

/* a download dropped midway after its token went stale (as one expiring during a long
 * download): the resume answers the 401 with a new token */
static void test_double_drop_stale_token(void)
{
    big_run_t r;
    char *drop = hero_xasprintf("%s=300000", L.big);
    const char *extra[] = {"--bearer", "--drop", drop, "--rotate-on-drop", NULL};
    if (big_fetch(&r, "drop-stale", extra)) {
        TAP_OK(big_whole(&r), "dropped midway, token stale by then: the blob completes");
        TAP_OK(r.s.token_fetches == 2 && r.s.resumes >= 1 &&
                   count_lines(r.f.log, "range=bytes=300000- auth=bearer") == 2,
               "dropped midway, token stale by then: a new token, then the resume with it");
    }
    big_end(&r);
    free(drop);
}

static void test_double_concurrency(void)
{
    fixture_t f;
    const char *extra[] = {"--delay", "150", NULL};
    if (!TAP_OK(fixture_start(&f, "many", extra), "regfix serve --delay starts")) {
        fixture_stop(&f);
        return;
    }
    hero_registry_t *reg = client(NULL);
    char *ref = hero_xasprintf("%s/test/img:many", f.host);
    resolved_t r = resolve(reg, ref, NULL, NULL);
    TAP_OK(r.img && r.img->n_layers == 10, "many: ten layers listed");
    TAP_OK(r.manifest_calls == 1 && r.manifest_layers == 10 && r.manifest_without_config &&
               r.manifest_first,
           "many: the manifest callback came once, with the ten layers, before the config");
    char *dir = path_in("many");
    mkdir(dir, 0755);
    fetched_t b[10];
    int done = 0;
    for (size_t i = 0; r.img && i < r.img->n_layers; i++) {
        char *p = hero_xasprintf("%s/%zu", dir, i);
        fetch_start(reg, ref, r.img->layers[i].digest, r.img->layers[i].size, p, &b[i]);
        free(p);
    }
    for (int i = 0; r.img && i < 10; i++) {
        run_until(&b[i].calls, 1);
        done += b[i].calls == 1 && !b[i].msg;
        free(b[i].msg);
    }
    hero_registry_stats_t s;
    hero_registry_stats(reg, &s);
    int server_max = fixture_stat(&f, "max_concurrent");
    TAP_OK(done == 10, "many: all ten blobs downloaded");
    TAP_OK(s.max_downloads == 6 && server_max == 6,
           "many: six downloads at once, no more (client count and server count)");
    if (server_max != 6)
        printf("#   client max %u, server max %d\n", s.max_downloads, server_max);
    free(dir);
    free(ref);
    resolved_free(&r);
    close_client(reg);
    fixture_stop(&f);
}

/* ---- blobs that wait for another process's download ----
 *
 * The setup they share: regfix (holding every blob GET delay_ms) serving test/img:many,
 * a client with `slots` download slots (0: the default), the image resolved, a
 * directory for the blobs, and blob 0's partial locked as another process would. */
typedef struct waiting {
    fixture_t f;
    hero_registry_t *reg;
    char *ref, *dir, *p[3], *part0;
    resolved_t r;
    int other;                  /* the "other process's" lock on part0; -1: let go */
} waiting_t;

static bool waiting_start(waiting_t *w, const char *name, const char *delay_ms, unsigned slots)
{
    memset(w, 0, sizeof(*w));
    w->other = -1;
    const char *extra[] = {"--delay", delay_ms, NULL};
    char *what = hero_xasprintf("%s: regfix serve starts", name);
    bool up = TAP_OK(fixture_start(&w->f, name, delay_ms ? extra : NULL), what);
    free(what);
    if (!up) {
        fixture_stop(&w->f);
        return false;
    }
    w->reg = client(&(hero_registry_config_t){.max_downloads = slots});
    w->ref = hero_xasprintf("%s/test/img:many", w->f.host);
    w->r = resolve(w->reg, w->ref, NULL, NULL);
    w->dir = path_in("%s", name);
    mkdir(w->dir, 0755);
    for (int i = 0; i < 3; i++)
        w->p[i] = hero_xasprintf("%s/%d", w->dir, i);
    w->part0 = hero_xasprintf("%s.partial", w->p[0]);
    w->other = open(w->part0, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    bool locked = w->other >= 0 && flock(w->other, LOCK_EX | LOCK_NB) == 0;
    what = hero_xasprintf("%s: blob 0's partial is locked", name);
    bool ok = TAP_OK(w->r.img && w->r.img->n_layers >= 3 && locked, what);
    free(what);
    return ok;
}

/* Starts fetching blob i of the image into p[i] with client reg. */
static void waiting_fetch(waiting_t *w, hero_registry_t *reg, int i, fetched_t *f)
{
    fetch_start(reg, w->ref, w->r.img->layers[i].digest, w->r.img->layers[i].size, w->p[i], f);
}

/* The other process lets go of blob 0's partial. */
static void waiting_release(waiting_t *w)
{
    if (w->other >= 0)
        close(w->other);
    w->other = -1;
}

static void waiting_stop(waiting_t *w)
{
    waiting_release(w);
    close_client(w->reg);
    for (int i = 0; i < 3; i++)
        free(w->p[i]);
    free(w->part0);
    free(w->dir);
    free(w->ref);
    resolved_free(&w->r);
    fixture_stop(&w->f);
}

/* Runs the loop for ms milliseconds. */
static void run_for_ms(uint64_t ms)
{
    int never = 0;
    run_until_ms(&never, 1, ms);
}

/* A blob that another process is downloading (its .partial locked) waits without holding
 * one of the download slots: the other downloads go on meanwhile. */
static void test_double_wait_frees_slot(void)
{
    waiting_t w;
    fetched_t b[2] = {{0}};
    if (waiting_start(&w, "waiting", NULL, 1)) {
        waiting_fetch(&w, w.reg, 0, &b[0]);
        waiting_fetch(&w, w.reg, 1, &b[1]);
        bool one = run_until_ms(&b[1].calls, 1, 3000);
        TAP_OK(one && !b[1].msg && file_has_digest(w.p[1], w.r.img->layers[1].digest) &&
                   b[0].calls == 0,
               "waiting: with one download slot, blob 1 downloads while blob 0 waits");
        waiting_release(&w); /* the other process is gone: blob 0 is taken over */
        bool zero = run_until_ms(&b[0].calls, 1, 3000);
        TAP_OK(zero && !b[0].msg && file_has_digest(w.p[0], w.r.img->layers[0].digest) &&
                   !exists(w.part0),
               "waiting: blob 0 is downloaded once the partial is free");
        run_until_ms(&b[1].calls, 1, 3000); /* (on a regression: let it end) */
        hero_registry_stats_t s;
        hero_registry_stats(w.reg, &s);
        TAP_OK(s.max_downloads == 1, "waiting: never more than the one slot");
    }
    waiting_stop(&w);
    free(b[0].msg); /* (after the close: a wait it cancelled sets one) */
    free(b[1].msg);
}

/* A waiting blob whose partial comes free while every slot is busy goes first when a
 * slot frees, before the blobs queued behind it. */
static void test_double_waiter_first(void)
{
    waiting_t w;
    fetched_t b[3] = {{0}};
    if (waiting_start(&w, "waiter", "400", 1)) {
        for (int i = 0; i < 3; i++)
            waiting_fetch(&w, w.reg, i, &b[i]);
        run_for_ms(100); /* 0 waits, 1 downloads (400 ms), 2 is queued */
        waiting_release(&w); /* free while the one slot is busy */
        bool all = run_until_ms(&b[0].calls, 1, 5000) && run_until_ms(&b[2].calls, 1, 5000);
        TAP_OK(all && !b[0].msg && !b[1].msg && !b[2].msg &&
                   file_has_digest(w.p[0], w.r.img->layers[0].digest),
               "waiter: all three downloaded");
        TAP_OK(b[1].seq < b[0].seq && b[0].seq < b[2].seq,
               "waiter: blob 0 went before blob 2, which was queued behind it");
        if (!(b[1].seq < b[0].seq && b[0].seq < b[2].seq))
            printf("#   order: 0 -> %d, 1 -> %d, 2 -> %d\n", b[0].seq, b[1].seq, b[2].seq);
    }
    waiting_stop(&w);
    for (int i = 0; i < 3; i++)
        free(b[i].msg);
}

/* Two processes (two clients: flock locks are per open file) wait for a third one's
 * download of blob 0: A has its one slot busy with blob 1, B has slots free. When the
 * third lets go, B takes blob 0 over; A, busy, does not lock it meanwhile (it waits for
 * B then, and finds it done). */
static void test_double_busy_waiter_leaves_lock(void)
{
    waiting_t w;
    fetched_t a0 = {0}, a1 = {0}, b0 = {0};
    hero_registry_t *rb = NULL;
    if (waiting_start(&w, "busy", "1500", 1)) {
        rb = client(NULL);
        waiting_fetch(&w, w.reg, 0, &a0);
        waiting_fetch(&w, w.reg, 1, &a1);
        waiting_fetch(&w, rb, 0, &b0);
        run_for_ms(100);
        waiting_release(&w);
        bool all = run_until_ms(&a0.calls, 1, 8000) && run_until_ms(&b0.calls, 1, 8000) &&
                   run_until_ms(&a1.calls, 1, 8000);
        TAP_OK(all && !a0.msg && !a1.msg && !b0.msg &&
                   file_has_digest(w.p[0], w.r.img->layers[0].digest),
               "busy: everything arrives");
        hero_registry_stats_t sa, sb;
        hero_registry_stats(w.reg, &sa);
        hero_registry_stats(rb, &sb);
        uint64_t x = (uint64_t)w.r.img->layers[0].size, y = (uint64_t)w.r.img->layers[1].size;
        TAP_OK(sb.blob_bytes == x && sa.blob_bytes == y,
               "busy: B, with a slot free, took blob 0 over; A did not hold it while busy");
        if (!(sb.blob_bytes == x && sa.blob_bytes == y))
            printf("#   bytes: A %" PRIu64 ", B %" PRIu64 " (blob 0: %" PRIu64 ", 1: %" PRIu64
                   ")\n", sa.blob_bytes, sb.blob_bytes, x, y);
    }
    if (rb)
        close_client(rb);
    waiting_stop(&w);
    free(a0.msg);
    free(a1.msg);
    free(b0.msg);
}

/* A callback that cancels its own download again (which has ended by then). */
typedef struct recancel {
    hero_registry_t *reg;
    int calls;
} recancel_t;

static void on_recancel(hero_error_t *err, void *data)
{
    (void)err;
    recancel_t *c = data;
    if (++c->calls == 1)
        hero_registry_cancel_blob(c->reg, on_recancel, c);
}

/* hero_registry_cancel_blob: a queued download, one waiting for another process's, and
 * one whose request is in flight each end with ECANCELED at once; the partial of the
 * one in flight is removed. */
static void test_double_cancel_blob(void)
{
    waiting_t w;
    fetched_t b[3] = {{0}};
    if (waiting_start(&w, "cancel", "3000", 1)) {
        for (int i = 0; i < 3; i++)
            waiting_fetch(&w, w.reg, i, &b[i]);
        run_for_ms(300); /* blob 1's request goes out; regfix holds it */
        char *part1 = hero_xasprintf("%s.partial", w.p[1]);
        TAP_OK(b[0].calls == 0 && b[1].calls == 0 && b[2].calls == 0 && exists(part1),
               "cancel: 0 waits, 1 downloads, 2 is queued");
        hero_registry_cancel_blob(w.reg, on_fetched, &b[2]);
        TAP_OK(b[2].calls == 1 && b[2].code == ECANCELED && b[0].calls == 0 && b[1].calls == 0,
               "cancel: the queued one ends at once with ECANCELED, the others go on");
        hero_registry_cancel_blob(w.reg, on_fetched, &b[0]);
        TAP_OK(b[0].calls == 1 && b[0].code == ECANCELED && exists(w.part0),
               "cancel: the waiting one ends (the other process's partial stays)");
        hero_registry_cancel_blob(w.reg, on_fetched, &b[1]);
        TAP_OK(b[1].calls == 1 && b[1].code == ECANCELED && !exists(part1) && !exists(w.p[1]),
               "cancel: the one in flight ends, its partial removed");
        hero_registry_cancel_blob(w.reg, on_fetched, &b[1]); /* ended: nothing happens */
        TAP_OK(b[1].calls == 1, "cancel: a download that ended is not called again");
        free(part1);
        /* one more that waits (blob 0 is still locked), whose callback cancels it again */
        recancel_t rc = {.reg = w.reg};
        hero_ref_t hr;
        if (hero_ref_parse(w.ref, &hr, NULL) == 0) {
            hero_registry_blob_opts_t o = {.digest = w.r.img->layers[0].digest,
                                           .size = w.r.img->layers[0].size, .path = w.p[0]};
            hero_registry_fetch_blob(w.reg, &hr, &o, on_recancel, &rc);
            hero_ref_free(&hr);
        }
        run_for_ms(100);
        hero_registry_cancel_blob(w.reg, on_recancel, &rc);
        TAP_OK(rc.calls == 1, "cancel: a callback that cancels its own download again is "
                              "called once");
    }
    waiting_stop(&w);
    for (int i = 0; i < 3; i++)
        free(b[i].msg);
}

/* 503s are retried; a mirror maps docker.io names onto the double */
static void test_double_mirror(void)
{
    fixture_t f;
    if (!TAP_OK(fixture_start(&f, "mirror", NULL), "regfix serve starts")) {
        fixture_stop(&f);
        return;
    }
    hero_registry_mirror_t m = {.prefix = "docker.io", .location = f.host, .insecure = true};
    hero_registry_t *reg = client(&(hero_registry_config_t){.mirrors = &m, .n_mirrors = 1});
    resolved_t r = resolve(reg, "test/img:multi", "linux/amd64", NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.manifest) &&
               count_lines(f.log, "GET /v2/test/img/manifests/multi") == 1,
           "mirror: docker.io/test/img is served by the mirror location");
    resolved_free(&r);

    /* a pinned digest must match what comes back */
    char *pinned = hero_xasprintf("test/img@%s", L.many);
    r = resolve(reg, pinned, NULL, NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.many) && !strcmp(r.img->ref_digest, L.many),
           "pinned: a manifest fetched by digest, verified");
    resolved_free(&r);
    r = resolve(reg, pinned, NULL, L.many);
    TAP_OK(r.img && r.img->unchanged, "pinned: a known pinned digest needs no request");
    resolved_free(&r);
    free(pinned);
    close_client(reg);

    /* closing with work pending fails it with ECANCELED */
    reg = client(NULL);
    char *ref = hero_xasprintf("%s/test/img:many", f.host);
    resolved_t r2 = {0};
    hero_ref_t pr;
    hero_ref_parse(ref, &pr, NULL);
    hero_registry_resolve(reg, &pr, NULL, on_resolved, &r2);
    fetched_t b;
    char *p = path_in("cancelled");
    fetch_start(reg, ref, L.big, (int64_t)L.big_size, p, &b);
    hero_registry_close(reg);
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(r2.calls == 1 && r2.code == ECANCELED && b.calls == 1 && b.code == ECANCELED &&
               !exists(p),
           "close: pending resolve and fetch fail with ECANCELED, nothing left on disk");
    free(r2.msg);
    free(b.msg);
    free(p);
    hero_ref_free(&pr);
    free(ref);
    fixture_stop(&f);
}

/* The HTTP layer on its own, against the double. */
typedef struct http_got {
    int calls;
    long status;
    char *error;
    size_t body_len;
    uint64_t body_offset, body_bytes;
    bool auth_dropped;
    unsigned redirects;
    char *digest_header;
    uint64_t observed;          /* bytes the data callback saw */
    unsigned slow_us;           /* the data callback takes this long per chunk */
    uint64_t fail_at;           /* the data callback fails a chunk that starts here or
                                   later (0: never) */
} http_got_t;

static int on_http_data(hero_http_req_t *q, const hero_http_resp_t *resp, uint64_t offset,
                        const char *buf, size_t len, void *data)
{
    (void)q;
    (void)resp;
    (void)buf;
    http_got_t *g = data;
    if (offset != g->observed || (g->fail_at && offset >= g->fail_at))
        return -1;
    g->observed += len;
    if (g->slow_us)
        usleep(g->slow_us); /* like hashing and writing it: the socket fills meanwhile */
    return 0;
}

static void on_http(hero_http_req_t *q, const hero_http_resp_t *resp, void *data)
{
    (void)q;
    http_got_t *g = data;
    g->calls++;
    g->status = resp->status;
    g->error = resp->error ? hero_xstrdup(resp->error) : NULL;
    g->body_len = resp->body_len;
    g->body_offset = resp->body_offset;
    g->body_bytes = resp->body_bytes;
    g->auth_dropped = resp->auth_dropped;
    g->redirects = resp->redirects;
    const char *d = hero_http_header(resp, "docker-content-digest");
    g->digest_header = d ? hero_xstrdup(d) : NULL;
}

static http_got_t http_get(hero_http_t *h, const hero_http_opts_t *o)
{
    http_got_t g = {0};
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_http_start(h, o, on_http, &g, NULL, &e) < 0) {
        g.calls = 1;
        g.error = e.msg;
        return g;
    }
    run_until(&g.calls, 1);
    return g;
}

static void http_got_free(http_got_t *g)
{
    free(g->error);
    free(g->digest_header);
}

/* A check of test_http_layer, named after the transport it ran on. */
static const char *http_tr;
#define HT(cond, what)                                                                    \
    do {                                                                                  \
        char ht_[256];                                                                    \
        snprintf(ht_, sizeof(ht_), "http (%s): %s", http_tr, (what));                     \
        TAP_OK(cond, ht_);                                                                \
    } while (0)

static void test_http_layer(const fixture_t *f, bool curl)
{
    http_tr = curl ? "curl" : "plain";
    hero_http_t *h;
    hero_error_t e = HERO_ERROR_INIT;
    HT(hero_http_new(&loop, &h, &e) == 0, "a client");
    hero_http_curl_only(h, curl);
    char *stats = hero_xasprintf("http://%s/_stats", f->host);
    http_got_t g = http_get(h, &(hero_http_opts_t){.url = stats, .max_body = 10});
    HT(g.status == 200 && g.error && strstr(g.error, "larger than 10 bytes"),
           "a body over max_body fails the request");
    http_got_free(&g);

    char *man = hero_xasprintf("http://%s/v2/test/img/manifests/latest", f->host);
    g = http_get(h, &(hero_http_opts_t){.url = man, .method = "HEAD",
                                         .authorization = "Basic aGVybzpzZWNyZXQ="});
    HT(g.status == 200 && !g.error && g.body_len == 0 && g.digest_header &&
               !strcmp(g.digest_header, L.manifest),
           "HEAD, headers looked up case-insensitively");
    http_got_free(&g);

    /* Range into a file, through the redirect: Authorization stays home */
    char *blob = hero_xasprintf("http://%s/v2/test/img/blobs/%s", f->host, L.big);
    char *path = path_in("http-range");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    g = http_get(h, &(hero_http_opts_t){.url = blob, .fd = fd, .range_from = 1000,
                                         .authorization = "Basic aGVybzpzZWNyZXQ="});
    close(fd);
    size_t n = 0;
    char *got = read_all(path, &n);
    char *src = hero_xasprintf("%s/blobs/sha256/%s", L.dir, L.big + 7);
    size_t sn = 0;
    char *want = read_all(src, &sn);
    HT(g.status == 206 && !g.error && g.body_offset == 1000 && g.body_bytes == sn - 1000 &&
               n == sn && got && want && !memcmp(got + 1000, want + 1000, sn - 1000),
           "a Range answer lands at its offset in the file");
    HT(g.redirects == 1 && g.auth_dropped,
           "the redirect to another port was followed without Authorization");
    http_got_free(&g);
    free(got);
    free(want);
    free(src);

    /* fd < 0: the body goes to the observer only */
    g = http_get(h, &(hero_http_opts_t){.url = blob, .fd = -1, .on_data = on_http_data,
                                         .authorization = "Basic aGVybzpzZWNyZXQ="});
    HT(g.status == 200 && !g.error && g.body_len == 0 && g.body_bytes == sn &&
               g.observed == sn,
           "fd < 0 gives the body to the observer only");
    http_got_free(&g);
    g = http_get(h, &(hero_http_opts_t){.url = blob, .fd = -1});
    HT(g.error && strstr(g.error, "no place for its body"),
           "fd < 0 without an observer is refused");
    http_got_free(&g);

    /* A body that is always ready (zeros as fast as the double can send them, read
     * slower than that) must not keep the loop from other transfers: before, curl read
     * it to its end in one call, and a small request started meanwhile was answered
     * only after it. */
    enum { FAIR_BIG = 64 * 1024 * 1024 };
    char *zeros = hero_xasprintf("http://%s/_bytes/%d", f->host, FAIR_BIG);
    http_got_t big = {.slow_us = 200}, small = {0};
    hero_http_start(h, &(hero_http_opts_t){.url = zeros, .fd = -1, .on_data = on_http_data},
                    on_http, &big, NULL, NULL);
    while (big.calls == 0 && big.observed < 1024 * 1024 && uv_run(&loop, UV_RUN_ONCE))
        ;
    hero_http_start(h, &(hero_http_opts_t){.url = stats}, on_http, &small, NULL, NULL);
    run_until(&small.calls, 1);
    uint64_t big_then = big.observed;
    run_until(&big.calls, 1);
    printf("# fairness: the small answer came with %llu of %d bytes of the big one in\n",
           (unsigned long long)big_then, FAIR_BIG);
    HT(small.status == 200 && !small.error && big.status == 200 && !big.error &&
               big.observed == FAIR_BIG,
           "a big body and a small one, at once, both arrive whole");
    HT(big_then < FAIR_BIG / 2,
           "the small answer does not wait for the big body (at most 1 MB per transfer "
           "per turn of the loop)");
    http_got_free(&big);
    http_got_free(&small);
    /* An observer that refuses the first chunk starting at 1 MB or later (http.c's
     * budget per turn): that is, mostly, the one curl kept over a pause and hands over
     * as the transfer resumes. The request fails, once, at once: before, a refused
     * resume left the transfer with no socket or timer, and it ended only if a timer
     * curl had set earlier happened to fire (here, its 200 ms one), else never. */
    for (int k = 0; k < 3; k++) {
        big = (http_got_t){.slow_us = 50, .fail_at = 1024 * 1024};
        hero_http_start(h, &(hero_http_opts_t){.url = zeros, .fd = -1, .on_data = on_http_data},
                        on_http, &big, NULL, NULL);
        uint64_t t0 = uv_hrtime();
        bool ended = run_until(&big.calls, 1);
        double ms = (double)(uv_hrtime() - t0) / 1e6;
        HT(ended && big.calls == 1 && big.error &&
                   strstr(big.error, "aborted by the data callback") &&
                   big.observed < 2 * 1024 * 1024 && hero_http_active(h) == 0 && ms < 150,
               "a data callback that fails as a paused transfer resumes ends it");
        printf("# ended %d after %.1f ms, %llu bytes seen\n", ended, ms,
               (unsigned long long)big.observed);
        http_got_free(&big);
    }
    free(zeros);

    /* a cancelled request never calls back, and leaves nothing running */
    hero_http_req_t *q = NULL;
    http_got_t c = {0};
    hero_http_start(h, &(hero_http_opts_t){.url = man}, on_http, &c, &q, NULL);
    hero_http_cancel(q);
    HT(hero_http_active(h) == 0, "cancel stops the request");
    HT(hero_http_start(h, &(hero_http_opts_t){.url = "ftp://x/"}, on_http, &c, NULL, &e) < 0 &&
               e.msg && strstr(e.msg, "not an http(s) URL"),
           "only http and https");
    hero_error_clear(&e);
    hero_http_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    HT(c.calls == 0, "no callback for the cancelled request");
    free(stats);
    free(man);
    free(blob);
    free(path);
}

/* 503 and 429 are retried; out of attempts, the last answer is the error */
static void test_double_flaky(void)
{
    fixture_t f;
    const char *extra[] = {"--flaky", "4", NULL};
    if (!TAP_OK(fixture_start(&f, "flaky", extra), "regfix serve --flaky starts")) {
        fixture_stop(&f);
        return;
    }
    hero_registry_t *reg = client(NULL);
    char *ref = hero_xasprintf("%s/test/img", f.host);
    resolved_t r = resolve(reg, ref, NULL, NULL);
    TAP_OK(!r.img && r.code == EIO && r.msg && strstr(r.msg, "after 3 attempts") &&
               strstr(r.msg, "HTTP 503: UNAVAILABLE: try again"),
           "503 three times: the pull fails after 3 attempts with the registry's text");
    resolved_free(&r);
    hero_registry_stats_t s0, s1;
    hero_registry_stats(reg, &s0);
    r = resolve(reg, ref, NULL, NULL);
    hero_registry_stats(reg, &s1);
    TAP_OK(r.img && !strcmp(r.img->manifest_digest, L.manifest) &&
               s1.retries - s0.retries == 2 && s1.manifest_gets - s0.manifest_gets == 3,
           "503 then 429 (Retry-After: 0): retried with backoff, third attempt succeeds");
    resolved_free(&r);
    free(ref);
    close_client(reg);
    fixture_stop(&f);
}

static void fixture_get(const fixture_t *f, const char *what)
{
    hero_http_t *h;
    hero_http_new(&loop, &h, NULL);
    char *url = hero_xasprintf("http://%s/%s", f->host, what);
    http_got_t g = http_get(h, &(hero_http_opts_t){.url = url});
    http_got_free(&g);
    free(url);
    hero_http_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Docker Hub's shape: a bearer challenge, a token server wanting basic credentials,
 * blobs redirected to a CDN that refuses Authorization; then stale tokens. */
static void test_double_bearer(void)
{
    fixture_t f;
    const char *extra[] = {"--bearer", "--redirect", "--user", "hero:secret", NULL};
    if (!TAP_OK(fixture_start(&f, "bearer", extra), "regfix serve --bearer --redirect starts")) {
        fixture_stop(&f);
        return;
    }
    hero_registry_cred_t cred = {.registry = f.host, .username = "hero", .password = "secret"};
    hero_registry_t *reg = client(&(hero_registry_config_t){.creds = &cred, .n_creds = 1});
    char *ref = hero_xasprintf("%s/test/img", f.host);
    resolved_t r = resolve(reg, ref, NULL, NULL);
    char *dir = path_in("bearer-blobs");
    TAP_OK(r.img && fetch_layers(reg, ref, r.img, dir),
           "bearer: challenge, token, manifest, config and layer through the CDN");
    free(dir);
    resolved_free(&r);
    TAP_OK(fixture_stat(&f, "cdn_auth_refused") == 0 &&
               count_lines(f.log, "?expires=1 range=- auth=none") == 2,
           "bearer: the token never reached the CDN");
    hero_registry_stats_t s;
    hero_registry_stats(reg, &s);
    TAP_OK(s.token_fetches == 1 && count_lines(f.log, "GET /token?service=regfix&scope=") == 1 &&
               count_lines(f.log, "/token?service=regfix&scope=repository%3Atest%2Fimg%3Apull "
                                  "range=- auth=basic") == 1,
           "bearer: one token, asked for with service, scope and basic credentials");

    /* the registry stops accepting the cached token: refreshed on 401, once */
    fixture_get(&f, "_rotate");
    char *many = hero_xasprintf("%s/test/img:many", f.host);
    r = resolve(reg, many, NULL, NULL);
    hero_registry_stats(reg, &s);
    TAP_OK(r.img && s.token_fetches == 2, "bearer: a stale cached token is refreshed on 401");

    /* ten downloads hitting a stale token at once share one token fetch */
    fixture_get(&f, "_rotate");
    char *mdir = path_in("bearer-many");
    mkdir(mdir, 0755);
    fetched_t b[10];
    int ok = 0;
    for (size_t i = 0; r.img && i < r.img->n_layers && i < 10; i++) {
        char *p = hero_xasprintf("%s/%zu", mdir, i);
        fetch_start(reg, many, r.img->layers[i].digest, r.img->layers[i].size, p, &b[i]);
        free(p);
    }
    for (int i = 0; r.img && i < 10; i++) {
        run_until(&b[i].calls, 1);
        ok += !b[i].msg;
        free(b[i].msg);
    }
    hero_registry_stats(reg, &s);
    TAP_OK(ok == 10 && s.token_fetches == 3 && fixture_stat(&f, "tokens_issued") == 3,
           "bearer: concurrent 401s wait on one token fetch");
    resolved_free(&r);
    free(mdir);
    free(many);
    free(ref);
    close_client(reg);
    fixture_stop(&f);
}

/* Nothing listens: transport errors are retried, then reported. */
static void test_unreachable(void)
{
    int port = free_port();
    hero_registry_t *reg = client(&(hero_registry_config_t){.backoff_ms = 10});
    char *ref = hero_xasprintf("127.0.0.1:%d/x", port);
    resolved_t r = resolve(reg, ref, NULL, NULL);
    hero_registry_stats_t s;
    hero_registry_stats(reg, &s);
    TAP_OK(!r.img && r.code == ECONNREFUSED && r.msg && strstr(r.msg, "after 3 attempts") &&
               s.requests == 3 && s.retries == 2,
           "connection refused: 3 attempts, then ECONNREFUSED");
    resolved_free(&r);
    free(ref);
    close_client(reg);
}

/* ---- 4. the real registry ---- */

typedef struct registry_proc {
    int port;
    char host[64];
    pid_t pid;
} registry_proc_t;

static bool registry_start(registry_proc_t *rp, const char *name, const char *storage,
                           const char *auth_yaml)
{
    rp->port = free_port();
    snprintf(rp->host, sizeof(rp->host), "127.0.0.1:%d", rp->port);
    char *cfg = path_in("%s.yml", name);
    char *log = path_in("%s.log", name);
    char *text = hero_xasprintf("version: 0.1\n"
                                "log: {level: warn, accesslog: {disabled: false}}\n"
                                "storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\n"
                                "http: {addr: 127.0.0.1:%d}\n%s",
                                storage, rp->port, auth_yaml ? auth_yaml : "");
    write_file(cfg, text, strlen(text));
    const char *argv[] = {"docker-registry", "serve", cfg, NULL};
    rp->pid = start_bg(argv, NULL, log);
    bool ok = rp->pid > 0 && wait_port(rp->port);
    free(text);
    free(cfg);
    free(log);
    return ok;
}

static int tool(const char *const *argv)
{
    char *log = path_in("tools.log");
    int rc = run_cmd(log, argv);
    free(log);
    return rc;
}

/* PUTs a manifest with curl (hero's client only pulls). */
static bool put_manifest(const registry_proc_t *rp, const char *repo, const char *ref,
                         const char *mt, const char *body)
{
    char *file = path_in("put-%s.json", ref);
    write_file(file, body, strlen(body));
    char *url = hero_xasprintf("http://%s/v2/%s/manifests/%s", rp->host, repo, ref);
    char *ct = hero_xasprintf("Content-Type: %s", mt);
    char *data = hero_xasprintf("@%s", file);
    const char *argv[] = {"curl", "-sf", "--noproxy", "*", "-X", "PUT", "-H", ct,
                          "--data-binary", data, url, NULL};
    bool ok = tool(argv) == 0;
    free(file);
    free(url);
    free(ct);
    free(data);
    return ok;
}

/* Builds bb (amd64) and bb:arm (arm64) with umoci from the static busybox and pushes
 * them with skopeo: test/bb (OCI), test/bb2 (Docker v2s2), test/multi:{amd,arm}. */
static bool populate(const registry_proc_t *rp)
{
    char *oci = path_in("oci");
    char *img = hero_xasprintf("%s:bb", oci), *arm = hero_xasprintf("%s:arm", oci);
    const char *init[] = {"umoci", "init", "--layout", oci, NULL};
    const char *mk[] = {"umoci", "new", "--image", img, NULL};
    const char *ins[] = {"umoci", "insert", "--image", img, "/bin/busybox", "/bin/busybox", NULL};
    const char *cfg[] = {"umoci", "config", "--image", img, "--config.cmd", "/bin/sh", NULL};
    const char *cfgarm[] = {"umoci", "config", "--image", img, "--architecture", "arm64",
                            "--tag", "arm", NULL};
    bool ok = tool(init) == 0 && tool(mk) == 0 && tool(ins) == 0 && tool(cfg) == 0 &&
              tool(cfgarm) == 0;
    char *src = hero_xasprintf("oci:%s", img), *srcarm = hero_xasprintf("oci:%s", arm);
    struct {
        const char *src, *dst, *fmt;
    } copies[] = {{src, "test/bb:latest", NULL},
                  {src, "test/bb2:latest", "v2s2"},
                  {src, "test/multi:amd", NULL},
                  {srcarm, "test/multi:arm", NULL}};
    for (size_t i = 0; ok && i < 4; i++) {
        char *dst = hero_xasprintf("docker://%s/%s", rp->host, copies[i].dst);
        const char *full[10];
        int n = 0;
        full[n++] = "skopeo";
        full[n++] = "copy";
        full[n++] = "-q";
        full[n++] = "--dest-tls-verify=false";
        if (copies[i].fmt) {
            full[n++] = "--format";
            full[n++] = copies[i].fmt;
        }
        full[n++] = copies[i].src;
        full[n++] = dst;
        full[n] = NULL;
        ok = tool(full) == 0;
        free(dst);
    }
    free(oci);
    free(img);
    free(arm);
    free(src);
    free(srcarm);
    return ok;
}

static char *manifest_with_platform_entry(const char *digest, size_t size, const char *os,
                                          const char *arch, const char *variant)
{
    json_t *d = desc("application/vnd.oci.image.manifest.v1+json", digest, size);
    json_t *p = json_pack("{s:s, s:s}", "os", os, "architecture", arch);
    if (variant)
        json_object_set_new(p, "variant", json_string(variant));
    json_object_set_new(d, "platform", p);
    char *s = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return s;
}

static void test_real_registry(void)
{
    if (!have_program("docker-registry") || !have_program("umoci") || !have_program("skopeo") ||
        !have_program("curl") || access("/bin/busybox", R_OK) != 0) {
        TAP_SKIP("real registry: docker-registry, umoci, skopeo, curl or /bin/busybox missing "
                 "(make deps)");
        return;
    }
    char *storage = path_in("storage");
    registry_proc_t rp;
    if (!TAP_OK(registry_start(&rp, "registry", storage, NULL),
                "docker-registry serves on 127.0.0.1") ||
        !TAP_OK(populate(&rp), "umoci + skopeo push test/bb (OCI), test/bb2 (v2s2), test/multi")) {
        free(storage);
        return;
    }
    hero_registry_t *reg = client(NULL);
    char *bb = hero_xasprintf("%s/test/bb", rp.host);
    char *bb2 = hero_xasprintf("%s/test/bb2:latest", rp.host);

    /* OCI */
    resolved_t r = resolve(reg, bb, NULL, NULL);
    TAP_OK(r.img && !strcmp(r.img->manifest_media_type, "application/vnd.oci.image.manifest.v1+json") &&
               r.img->n_layers == 1 &&
               !strcmp(r.img->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip"),
           "OCI: manifest with one gzip layer");
    TAP_OK(r.img && strstr(r.img->config, "\"/bin/sh\"") && strstr(r.img->config, "amd64"),
           "OCI: the config (Cmd /bin/sh, amd64), verified");
    char *dir = path_in("bb-blobs");
    TAP_OK(fetch_layers(reg, bb, r.img, dir), "OCI: the busybox layer pulled, sha256 verified");
    char *oci_layer = r.img ? hero_xstrdup(r.img->layers[0].digest) : hero_xstrdup("");
    char *oci_ref_digest = r.img ? hero_xstrdup(r.img->ref_digest) : hero_xstrdup("");
    resolved_free(&r);

    /* Docker v2s2 */
    r = resolve(reg, bb2, NULL, NULL);
    TAP_OK(r.img &&
               !strcmp(r.img->manifest_media_type,
                       "application/vnd.docker.distribution.manifest.v2+json") &&
               r.img->n_layers == 1 &&
               !strcmp(r.img->layers[0].media_type,
                       "application/vnd.docker.image.rootfs.diff.tar.gzip") &&
               strstr(r.img->config, "\"/bin/sh\""),
           "v2s2: Docker manifest and config");
    char *dir2 = path_in("bb2-blobs");
    TAP_OK(fetch_layers(reg, bb2, r.img, dir2), "v2s2: the layer pulled, verified");
    resolved_free(&r);

    /* HEAD before GET against distribution */
    hero_registry_stats_t s0, s1;
    hero_registry_stats(reg, &s0);
    r = resolve(reg, bb, NULL, oci_ref_digest);
    hero_registry_stats(reg, &s1);
    TAP_OK(r.img && r.img->unchanged && s1.manifest_heads == s0.manifest_heads + 1 &&
               s1.manifest_gets == s0.manifest_gets,
           "HEAD: unchanged tag costs one HEAD (Docker-Content-Digest matched)");
    resolved_free(&r);

    /* MANIFEST_UNKNOWN from distribution itself */
    char *nope = hero_xasprintf("%s/test/bb:nope", rp.host);
    r = resolve(reg, nope, NULL, NULL);
    TAP_OK(r.code == ENOENT && r.msg && strstr(r.msg, "HTTP 404: MANIFEST_UNKNOWN: manifest unknown") &&
               strstr(r.msg, "/v2/test/bb/manifests/nope"),
           "distribution's own 404 text comes through");
    resolved_free(&r);
    free(nope);

    /* the index, pushed by hand: attestation (unknown/unknown) first, then arm64, amd64 */
    char *amd_ref = hero_xasprintf("%s/test/multi:amd", rp.host);
    char *arm_ref = hero_xasprintf("%s/test/multi:arm", rp.host);
    resolved_t ra = resolve(reg, amd_ref, NULL, NULL);
    resolved_t rm = resolve(reg, arm_ref, "linux/arm64", NULL);
    bool pushed = false;
    char *index_digest = NULL;
    if (ra.img && rm.img) {
        char *att = hero_xasprintf(
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
            "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
            "\"size\":%zu},\"layers\":[{\"mediaType\":\"application/vnd.in-toto+json\",\"digest\":"
            "\"%s\",\"size\":%lld}]}",
            ra.img->config_digest, ra.img->config_len, ra.img->layers[0].digest,
            (long long)ra.img->layers[0].size);
        char att_digest[72];
        sha256_hex(att, strlen(att), att_digest);
        char *e_arm = manifest_with_platform_entry(rm.img->manifest_digest, rm.img->manifest_len,
                                                   "linux", "arm64", "v8");
        char *e_amd = manifest_with_platform_entry(ra.img->manifest_digest, ra.img->manifest_len,
                                                   "linux", "amd64", NULL);
        char *index = hero_xasprintf(
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
            "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
            "\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"unknown\",\"os\":"
            "\"unknown\"},\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\","
            "\"vnd.docker.reference.digest\":\"%s\"}},%s,%s]}",
            att_digest, strlen(att), ra.img->manifest_digest, e_arm, e_amd);
        char idx_digest[72];
        sha256_hex(index, strlen(index), idx_digest);
        index_digest = hero_xstrdup(idx_digest);
        pushed = put_manifest(&rp, "test/multi", att_digest,
                              "application/vnd.oci.image.manifest.v1+json", att) &&
                 put_manifest(&rp, "test/multi", "latest", "application/vnd.oci.image.index.v1+json",
                              index);
        free(att);
        free(e_arm);
        free(e_amd);
        free(index);
    }
    if (TAP_OK(pushed, "an OCI index with an attestation entry pushed with curl")) {
        char *multi = hero_xasprintf("%s/test/multi", rp.host);
        r = resolve(reg, multi, NULL, NULL);
        TAP_OK(r.img && !strcmp(r.img->ref_digest, index_digest) &&
                   !strcmp(r.img->manifest_digest, ra.img->manifest_digest),
               "index: the host's (amd64) manifest picked, index digest reported");
        resolved_free(&r);
        r = resolve(reg, multi, "linux/arm64/v8", NULL);
        TAP_OK(r.img && !strcmp(r.img->manifest_digest, rm.img->manifest_digest) &&
                   strstr(r.img->config, "arm64"),
               "index: platform linux/arm64/v8 picked");
        resolved_free(&r);
        r = resolve(reg, multi, "linux/riscv64", NULL);
        TAP_OK(r.code == ENOENT && r.msg && !strstr(r.msg, "unknown"),
               "index: no riscv64 entry; the attestation entry is not offered");
        resolved_free(&r);
        free(multi);
    }
    free(index_digest);
    resolved_free(&ra);
    resolved_free(&rm);
    free(amd_ref);
    free(arm_ref);
    close_client(reg);

    /* a token-auth registry on the same storage, a token server on another port */
    char *cert = path_in("token.pem"), *toklog = path_in("token.log"),
         *tokerr = path_in("token.stderr");
    const char *targv[] = {regfix, "token", "--cert", cert, "--issuer", "hero-test-issuer",
                           "--service", "hero-test", "--user", "puller:pw", "--log", toklog, NULL};
    int out = -1;
    char line[32] = "";
    bool tok_ok = access(regfix, X_OK) == 0 && start_bg(targv, &out, tokerr) > 0 &&
                  read_line(out, line, sizeof(line)) == 0;
    if (out >= 0)
        close(out);
    registry_proc_t ar;
    char *auth = hero_xasprintf("auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n"
                                "    service: hero-test\n    issuer: hero-test-issuer\n"
                                "    rootcertbundle: %s\n",
                                line, cert);
    if (TAP_OK(tok_ok && registry_start(&ar, "auth-registry", storage, auth),
               "token server and a token-auth docker-registry start")) {
        hero_registry_cred_t cred = {.registry = ar.host, .username = "puller", .password = "pw"};
        reg = client(&(hero_registry_config_t){.creds = &cred, .n_creds = 1});
        char *aref = hero_xasprintf("%s/test/bb", ar.host);
        r = resolve(reg, aref, NULL, NULL);
        TAP_OK(r.img && !strcmp(r.img->ref_digest, oci_ref_digest),
               "token auth: 401, token fetched, manifest and config pulled");
        char *adir = path_in("auth-blobs");
        TAP_OK(fetch_layers(reg, aref, r.img, adir), "token auth: the layer pulled with the token");
        free(adir);
        resolved_free(&r);
        r = resolve(reg, aref, NULL, NULL);
        hero_registry_stats_t s;
        hero_registry_stats(reg, &s);
        TAP_OK(r.img && s.token_fetches == 1 && count_lines(toklog, "GET /token") == 1,
               "token auth: one token for the scope, cached across requests and pulls");
        TAP_OK(count_lines(toklog, "scope=repository%3Atest%2Fbb%3Apull") == 1 &&
                   count_lines(toklog, "auth=basic") == 1,
               "token auth: scope repository:test/bb:pull asked with basic credentials");
        resolved_free(&r);
        close_client(reg);

        /* without credentials the token server says no: the error says so */
        reg = client(NULL);
        r = resolve(reg, aref, NULL, NULL);
        TAP_OK(!r.img && r.code == EACCES && r.msg && strstr(r.msg, "cannot get a token") &&
                   strstr(r.msg, "HTTP 401"),
               "token auth: a refused token request is reported (EACCES)");
        resolved_free(&r);
        close_client(reg);
        free(aref);
    }
    free(auth);
    free(cert);
    free(toklog);
    free(tokerr);
    free(oci_layer);
    free(oci_ref_digest);
    free(dir);
    free(dir2);
    free(bb);
    free(bb2);
    free(storage);
}

int main(void)
{
    alarm(120); /* a hang is a failure, not a stuck CI */
    signal(SIGPIPE, SIG_IGN);
    /* loopback only: never through a proxy from the environment */
    const char *proxies[] = {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                             "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);
    snprintf(tmp, sizeof(tmp), "%s/hero-registry-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(remove_tmp);
    atexit(cleanup);
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(regfix, sizeof(regfix), "%s/../fixtures/regfix", exe);
    uv_loop_init(&loop);

    test_refs();
    test_endpoints();
    test_unreachable();
    if (access(regfix, X_OK) != 0) {
        TAP_SKIP("registry double: build/fixtures/regfix missing (make unit builds it)");
    } else {
        make_layout();
        test_double_redirect();
        test_double_wrong_bytes();
        test_double_drop();
        test_double_cut();
        test_double_drop_pieces();
        test_double_drop_then_503();
        test_double_pieces_short_blob();
        test_double_drop_stale_token();
        test_double_concurrency();
        test_double_wait_frees_slot();
        test_double_waiter_first();
        test_double_busy_waiter_leaves_lock();
        test_double_cancel_blob();
        test_double_mirror();
        test_double_flaky();
        test_double_bearer();
    }
    test_real_registry();
    layout_free();

    TAP_OK(uv_loop_close(&loop) == 0, "every handle closed: the loop closes cleanly");
    cleanup();
    return tap_done();
}
