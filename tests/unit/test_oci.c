/* Unit tests for actions/heropods/oci.c and oci_user.c: the container spec's canonical
 * JSON, hash and diff; argv composition; users, groups and entrypoints looked up
 * inside a fake root filesystem (symlinks resolved inside it, never on the host);
 * and the config.json crun gets. No root needed, nothing is run. */
#include "actions/actions.h"
#include "actions/heropods/oci.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64]; /* the fake image root filesystem */
static char tmp[64];  /* everything else */

static void must(int ok, const char *what)
{
    if (!ok) {
        printf("Bail out! setting up: %s: %s\n", what, strerror(errno));
        exit(1);
    }
}

static void write_file(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char *p = hero_xasprintf("%s/%s", dir, rel);
    FILE *f = fopen(p, "w");
    must(f != NULL, p);
    fputs(text, f);
    fclose(f);
    must(chmod(p, mode) == 0, p);
    free(p);
}

static void mkdir_in(const char *dir, const char *rel)
{
    char *p = hero_xasprintf("%s/%s", dir, rel);
    must(mkdir(p, 0755) == 0, p);
    free(p);
}

static void symlink_in(const char *dir, const char *rel, const char *target)
{
    char *p = hero_xasprintf("%s/%s", dir, rel);
    must(symlink(target, p) == 0, p);
    free(p);
}

static void make_rootfs(void)
{
    strcpy(root, "/tmp/hero-oci-root-XXXXXX");
    must(mkdtemp(root) != NULL, "mkdtemp");
    strcpy(tmp, "/tmp/hero-oci-tmp-XXXXXX");
    must(mkdtemp(tmp) != NULL, "mkdtemp");
    mkdir_in(root, "etc");
    mkdir_in(root, "bin");
    mkdir_in(root, "usr");
    mkdir_in(root, "usr/bin");
    mkdir_in(root, "usr/bin/adir");
    mkdir_in(root, "home");
    mkdir_in(root, "home/app");
    write_file(root, "etc/passwd",
               "root:x:0:0:root:/root:/bin/sh\n"
               "# a comment\n"
               "\n"
               "broken line\n"
               "app:x:1000:1000::/home/app:/bin/sh\n"
               "nobody:x:65534:65534:nobody:/:/sbin/nologin\n",
               0644);
    write_file(root, "etc/group",
               "root:x:0:root\n"
               "wheel:x:10:app\n"
               "audio:x:29:root,app\n"
               "app:x:1000:\n"
               "nogroup:x:65534:\n",
               0644);
    write_file(root, "bin/busybox", "#!/not/really\n", 0755);
    write_file(root, "bin/noexec", "data\n", 0644);
    symlink_in(root, "bin/sh", "/bin/busybox");           /* absolute, inside the root */
    symlink_in(root, "usr/bin/env", "../../bin/busybox"); /* relative */
    symlink_in(root, "usr/bin/escape", "../../../../bin/true");
    symlink_in(root, "usr/bin/abs-true", "/bin/true");
}

static void rm_rf(const char *dir)
{
    /* the test made these trees: walk them without a shell */
    char *cmd[] = {"rm", "-rf", (char *)dir, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execvp("rm", cmd);
        _exit(127);
    }
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
}

static char **strv(const char *first, ...)
{
    va_list ap;
    size_t n = 0;
    char **v = hero_xcalloc(1, sizeof *v);
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        v = hero_xrealloc(v, (n + 2) * sizeof *v);
        v[n++] = hero_xstrdup(s);
        v[n] = NULL;
    }
    va_end(ap);
    return v;
}

static char *joined(char *const *v)
{
    char *out = hero_xstrdup("");
    for (size_t i = 0; v && v[i]; i++) {
        char *n = hero_xasprintf("%s%s%s", out, i ? "|" : "", v[i]);
        free(out);
        out = n;
    }
    return out;
}

/* The strings of a JSON array joined with '|' (objects: their "destination"). */
static char *jjoined(const json_t *a)
{
    char *out = hero_xstrdup("");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *e = json_array_get(a, i);
        const char *s = json_is_object(e) ? json_string_value(json_object_get(e, "destination"))
                                          : json_string_value(e);
        char *n = hero_xasprintf("%s%s%s", out, i ? "|" : "", s ? s : "?");
        free(out);
        out = n;
    }
    return out;
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void base_spec(hero_ctr_spec_t *s)
{
    memset(s, 0, sizeof *s);
    s->name = hero_xstrdup("web");
    s->image = hero_xstrdup("embedded");
}

static json_t *image_cfg(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) {
        printf("Bail out! bad test JSON: %s\n", je.text);
        exit(1);
    }
    return j;
}

static hero_oci_opts_t opts(bool keep_alive)
{
    hero_oci_opts_t o = {
        .rootfs = "/var/lib/hero/containers/web/merged",
        .init_path = "/usr/libexec/hero/hero-init",
        .run_dir = "/run/hero/web",
        .etc_dir = "/var/lib/hero/containers/web/etc",
        .keep_alive = keep_alive,
        .cgroup_path = "/hero/hero-web",
    };
    return o;
}

/* ------------------------------------------------------------------------- args */

static void test_args(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s;
    base_spec(&s);
    json_t *img = image_cfg("{\"Entrypoint\": [\"/bin/sh\", \"-c\"], \"Cmd\": [\"echo hi\"]}");

    char **a = hero_oci_args(&s, img, &e);
    char *t = joined(a);
    TAP_STREQ(t, "/bin/sh|-c|echo hi", "args: image Entrypoint + Cmd");
    free(t);
    hero_strv_free(a);

    s.cmd = strv("date", NULL);
    a = hero_oci_args(&s, img, &e);
    t = joined(a);
    TAP_STREQ(t, "/bin/sh|-c|date", "args: cmd replaces the image's Cmd only");
    free(t);
    hero_strv_free(a);

    hero_strv_free(s.cmd);
    s.cmd = NULL;
    s.entrypoint = strv("/bin/busybox", "sleep", NULL);
    a = hero_oci_args(&s, img, &e);
    t = joined(a);
    TAP_STREQ(t, "/bin/busybox|sleep", "args: entrypoint drops the image's Cmd");
    free(t);
    hero_strv_free(a);

    s.cmd = strv("5", NULL);
    a = hero_oci_args(&s, img, &e);
    t = joined(a);
    TAP_STREQ(t, "/bin/busybox|sleep|5", "args: entrypoint + cmd");
    free(t);
    hero_strv_free(a);
    json_decref(img);

    hero_ctr_spec_free(&s);
    base_spec(&s);
    img = image_cfg("{\"Entrypoint\": null, \"Cmd\": [\"/bin/sh\"]}");
    a = hero_oci_args(&s, img, &e);
    t = joined(a);
    TAP_STREQ(t, "/bin/sh", "args: null Entrypoint, Cmd only");
    free(t);
    hero_strv_free(a);
    json_decref(img);

    img = image_cfg("{\"Env\": [\"A=1\"]}");
    a = hero_oci_args(&s, img, &e);
    TAP_OK(a == NULL, "args: neither entrypoint nor cmd fails");
    TAP_STREQ(e.msg, "image 'embedded' has neither an entrypoint nor a cmd: give cmd:[...]",
              "args: the error says what to do");
    hero_error_clear(&e);
    a = hero_oci_args(&s, NULL, &e);
    TAP_OK(a == NULL && e.msg, "args: no image config and no cmd fails");
    hero_error_clear(&e);
    json_decref(img);

    img = image_cfg("{\"Cmd\": \"/bin/sh\"}");
    a = hero_oci_args(&s, img, &e);
    TAP_OK(a == NULL && e.msg && strstr(e.msg, "Cmd"), "args: a Cmd that is not a list fails");
    hero_error_clear(&e);
    json_decref(img);

    s.cmd = strv("/bin/true", NULL);
    a = hero_oci_args(&s, NULL, &e);
    t = joined(a);
    TAP_STREQ(t, "/bin/true", "args: cmd with no image config");
    free(t);
    hero_strv_free(a);
    hero_ctr_spec_free(&s);
}

/* ------------------------------------------------------------------------ users */

static void check_user(const char *user, int ok, uint32_t euid, uint32_t egid, const char *egids,
                       const char *emsg)
{
    hero_error_t e = HERO_ERROR_INIT;
    uint32_t uid = 99, gid = 99, *gids = NULL;
    size_t n = 0;
    int rc = hero_oci_resolve_user(root, user, &uid, &gid, &gids, &n, &e);
    char what[160];
    snprintf(what, sizeof what, "user '%s'", user ? user : "(null)");
    if (ok) {
        char *g = hero_xstrdup("");
        for (size_t i = 0; i < n; i++) {
            char *x = hero_xasprintf("%s%s%u", g, i ? "," : "", gids[i]);
            free(g);
            g = x;
        }
        int good = rc == 0 && uid == euid && gid == egid && streq(g, egids);
        if (!TAP_OK(good, what))
            printf("#   rc %d uid %u gid %u groups [%s] (%s)\n", rc, uid, gid, g,
                   e.msg ? e.msg : "");
        free(g);
    } else {
        TAP_OK(rc < 0, what);
        TAP_STREQ(e.msg, emsg, "  ...and its error");
    }
    free(gids);
    hero_error_clear(&e);
}

static void test_users(void)
{
    check_user(NULL, 1, 0, 0, "29", NULL);
    check_user("", 1, 0, 0, "29", NULL);
    check_user("root", 1, 0, 0, "29", NULL);
    check_user("0", 1, 0, 0, "29", NULL);
    check_user("app", 1, 1000, 1000, "10,29", NULL);
    check_user("1000", 1, 1000, 1000, "10,29", NULL);
    check_user("app:wheel", 1, 1000, 10, "", NULL);
    check_user("app:55", 1, 1000, 55, "", NULL);
    check_user("1000:1000", 1, 1000, 1000, "", NULL);
    check_user("2000", 1, 2000, 0, "", NULL);
    check_user("2000:33", 1, 2000, 33, "", NULL);
    check_user("2000:nogroup", 1, 2000, 65534, "", NULL);
    check_user("nobody", 1, 65534, 65534, "", NULL);
    check_user("ghost", 0, 0, 0, NULL, "user 'ghost' is not in the image's /etc/passwd");
    check_user("app:ghosts", 0, 0, 0, NULL, "group 'ghosts' is not in the image's /etc/group");
    check_user("app:", 0, 0, 0, NULL,
               "invalid user 'app:': expected name, uid, name:group or uid:gid");
    check_user(":10", 0, 0, 0, NULL,
               "invalid user ':10': expected name, uid, name:group or uid:gid");
    check_user("4294967295", 0, 0, 0, NULL,
               "user '4294967295' is not in the image's /etc/passwd");

    /* an image without /etc/passwd: numeric ids work, names do not */
    char *bare = hero_xasprintf("%s/bare%d", tmp, tap_n);
    must(mkdir(bare, 0755) == 0, bare);
    uint32_t uid = 1, gid = 1, *g = NULL;
    size_t n = 5;
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_oci_resolve_user(bare, "123:45", &uid, &gid, &g, &n, &e) == 0 && uid == 123 &&
               gid == 45 && n == 0,
           "user: uid:gid in an image without /etc/passwd");
    TAP_OK(hero_oci_resolve_user(bare, NULL, &uid, &gid, NULL, NULL, &e) == 0 && uid == 0 &&
               gid == 0,
           "user: root in an image without /etc/passwd (extra gids not wanted)");
    TAP_OK(hero_oci_resolve_user(bare, "app", &uid, &gid, &g, &n, &e) < 0 && e.msg &&
               streq(e.msg, "user 'app' is not in the image's /etc/passwd"),
           "user: a name in an image without /etc/passwd fails");
    hero_error_clear(&e);
    free(g);

    /* /etc/passwd a symlink that climbs out of the root: read inside it, never the
     * host's */
    char *esc = hero_xasprintf("%s/escape%d", tmp, tap_n);
    must(mkdir(esc, 0755) == 0, esc);
    mkdir_in(esc, "etc");
    symlink_in(esc, "etc/passwd", "../../../../../../../../etc/passwd");
    TAP_OK(hero_oci_resolve_user(esc, "root", &uid, &gid, NULL, NULL, &e) < 0 && e.msg &&
               strstr(e.msg, "not in the image's /etc/passwd"),
           "user: /etc/passwd escaping the root is not the host's");
    hero_error_clear(&e);
    TAP_OK(hero_oci_resolve_user("/nonexistent/root", "0", &uid, &gid, NULL, NULL, &e) < 0 &&
               e.msg && strstr(e.msg, "/nonexistent/root"),
           "user: a missing root filesystem fails with its path");
    hero_error_clear(&e);
    free(bare);
    free(esc);
}

/* ------------------------------------------------------------------- check_exec */

static void check_exec(char *const *env, const char *argv0, const char *emsg)
{
    hero_error_t e = HERO_ERROR_INIT;
    int rc = hero_oci_check_exec(root, env, argv0, &e);
    char what[160];
    snprintf(what, sizeof what, "check_exec '%s'%s", argv0, emsg ? " fails" : "");
    if (!emsg) {
        if (!TAP_OK(rc == 0, what))
            printf("#   %s\n", e.msg ? e.msg : "");
    } else {
        TAP_OK(rc < 0, what);
        TAP_STREQ(e.msg, emsg, "  ...and its error");
    }
    hero_error_clear(&e);
}

static void test_check_exec(void)
{
    char **env = strv("PATH=/usr/bin", "A=1", "PATH=/nowhere:relative::/bin", NULL);
    check_exec(NULL, "/bin/busybox", NULL);
    check_exec(NULL, "/bin/sh", NULL);           /* absolute symlink, inside the root */
    check_exec(NULL, "/usr/bin/env", NULL);      /* relative symlink */
    check_exec(NULL, "busybox", NULL);           /* default PATH */
    check_exec(NULL, "env", NULL);               /* default PATH, /usr/bin */
    check_exec(env, "sh", NULL);                 /* PATH from env, the last one */
    check_exec(env, "env", "entrypoint 'env' does not exist in the image");
    check_exec(NULL, "/bin/nothere", "entrypoint '/bin/nothere' does not exist in the image");
    check_exec(NULL, "nothere", "entrypoint 'nothere' does not exist in the image");
    check_exec(NULL, "/bin/noexec", "entrypoint '/bin/noexec' is not executable");
    check_exec(NULL, "noexec", "entrypoint 'noexec' is not executable");
    check_exec(NULL, "/usr/bin/adir", "entrypoint '/usr/bin/adir' is not executable");
    check_exec(NULL, "/bin/busybox/x", "entrypoint '/bin/busybox/x' does not exist in the image");
    check_exec(NULL, "./run.sh", NULL); /* relative to the workdir: not checked */
    check_exec(NULL, "", "the entrypoint is an empty string");

    /* Links that leave the root must not find the host's /bin/true */
    if (access("/bin/true", X_OK) == 0) {
        check_exec(NULL, "/usr/bin/escape", "entrypoint '/usr/bin/escape' does not exist in the image");
        check_exec(NULL, "/usr/bin/abs-true",
                   "entrypoint '/usr/bin/abs-true' does not exist in the image");
        check_exec(NULL, "/../../../../bin/true",
                   "entrypoint '/../../../../bin/true' does not exist in the image");
        check_exec(NULL, "true", "entrypoint 'true' does not exist in the image");
    } else {
        for (int i = 0; i < 8; i++)
            TAP_SKIP("no /bin/true on the host to escape to");
    }
    /* ...but a link that stays inside does resolve */
    symlink_in(root, "bin/true", "busybox");
    check_exec(NULL, "/usr/bin/escape", NULL);
    check_exec(NULL, "/usr/bin/abs-true", NULL);
    char *t = hero_xasprintf("%s/bin/true", root);
    unlink(t);
    free(t);
    /* loops and dangling links */
    symlink_in(root, "bin/loop1", "loop2");
    symlink_in(root, "bin/loop2", "/bin/loop1");
    symlink_in(root, "bin/dangling", "/opt/nothing");
    check_exec(NULL, "/bin/loop1", "entrypoint '/bin/loop1' does not exist in the image");
    check_exec(NULL, "dangling", "entrypoint 'dangling' does not exist in the image");
    check_exec(NULL, "/usr/bin/../../bin/./sh", NULL);
    check_exec(NULL, "/bin/sh/", "entrypoint '/bin/sh/' does not exist in the image");
    t = hero_xasprintf("%s/bin/loop1", root);
    unlink(t);
    t[strlen(t) - 1] = '2';
    unlink(t);
    free(t);
    t = hero_xasprintf("%s/bin/dangling", root);
    unlink(t);
    free(t);
    hero_strv_free(env);
}

/* ----------------------------------------------------------------------- config */

static json_t *config(const hero_ctr_spec_t *s, const json_t *img, bool keep_alive,
                      hero_error_t *e)
{
    hero_oci_opts_t o = opts(keep_alive);
    return hero_oci_config(s, img, root, &o, e);
}

static const json_t *jget(const json_t *j, const char *path)
{
    char *p = hero_xstrdup(path), *save = NULL;
    for (char *k = strtok_r(p, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = json_object_get(j, k);
    free(p);
    return j;
}

static void test_config_process(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s;
    base_spec(&s);
    json_t *img = image_cfg("{\"Entrypoint\": [\"/bin/sh\", \"-c\"], \"Cmd\": [\"echo hi\"],"
                            " \"Env\": [\"A=1\", \"PATH=/bin:/usr/bin\", \"X\"],"
                            " \"WorkingDir\": \"/srv\", \"User\": \"app\"}");
    json_t *c = config(&s, img, false, &e);
    if (!TAP_OK(c != NULL, "config: built"))
        printf("#   %s\n", e.msg ? e.msg : "");
    char *t = jjoined(jget(c, "process.args"));
    TAP_STREQ(t, "/.hero-init|--status-dir|/.hero|--|/bin/sh|-c|echo hi",
              "config: process.args run hero-init, then the entrypoint");
    free(t);
    t = jjoined(jget(c, "process.env"));
    TAP_STREQ(t, "A=1|PATH=/bin:/usr/bin|X|HOSTNAME=web", "config: image env kept, HOSTNAME set");
    free(t);
    TAP_STREQ(json_string_value(jget(c, "process.cwd")), "/srv", "config: image WorkingDir");
    TAP_OK(json_integer_value(jget(c, "process.user.uid")) == 1000 &&
               json_integer_value(jget(c, "process.user.gid")) == 1000,
           "config: image User resolved");
    t = hero_xstrdup("");
    const json_t *ag = jget(c, "process.user.additionalGids");
    for (size_t i = 0; i < json_array_size(ag); i++) {
        char *x = hero_xasprintf("%s%s%lld", t, i ? "," : "",
                                 (long long)json_integer_value(json_array_get(ag, i)));
        free(t);
        t = x;
    }
    TAP_STREQ(t, "10,29", "config: additionalGids from /etc/group");
    free(t);
    TAP_OK(json_is_false(jget(c, "process.terminal")), "config: terminal false");
    TAP_OK(json_is_true(jget(c, "process.noNewPrivileges")), "config: noNewPrivileges");
    TAP_STREQ(json_string_value(jget(c, "hostname")), "web", "config: hostname is the name");
    TAP_STREQ(json_string_value(jget(c, "ociVersion")), "1.0.2", "config: ociVersion");
    TAP_STREQ(json_string_value(jget(c, "root.path")), "/var/lib/hero/containers/web/merged",
              "config: root.path is the container's own root");
    TAP_OK(json_is_false(jget(c, "root.readonly")), "config: root writable");
    json_decref(c);

    /* the spec over the image */
    s.env = strv("A=2", "B=3", "X=4", NULL);
    s.workdir = hero_xstrdup("/home/app");
    s.user = hero_xstrdup("2000:33");
    s.hostname = hero_xstrdup("box");
    s.cmd = strv("echo bye", NULL);
    c = config(&s, img, true, &e);
    TAP_OK(c != NULL, "config: built with overrides");
    t = jjoined(jget(c, "process.args"));
    TAP_STREQ(t, "/.hero-init|--keep-alive|--status-dir|/.hero|--|/bin/sh|-c|echo bye",
              "config: keep_alive passes --keep-alive to hero-init");
    free(t);
    t = jjoined(jget(c, "process.env"));
    TAP_STREQ(t, "A=2|PATH=/bin:/usr/bin|X=4|B=3|HOSTNAME=box",
              "config: spec env replaces the same key, appends the rest");
    free(t);
    TAP_STREQ(json_string_value(jget(c, "process.cwd")), "/home/app", "config: spec workdir");
    TAP_OK(json_integer_value(jget(c, "process.user.uid")) == 2000 &&
               json_integer_value(jget(c, "process.user.gid")) == 33 &&
               !jget(c, "process.user.additionalGids"),
           "config: spec user uid:gid");
    TAP_STREQ(json_string_value(jget(c, "hostname")), "box", "config: spec hostname");
    json_decref(c);

    /* HOSTNAME given in env: kept, as docker keeps it */
    hero_strv_free(s.env);
    s.env = strv("HOSTNAME=mine", NULL);
    c = config(&s, img, true, &e);
    t = c ? jjoined(jget(c, "process.env")) : NULL;
    TAP_OK(t && strstr(t, "HOSTNAME=mine") && !strstr(t, "HOSTNAME=box"),
           "config: a HOSTNAME in env is kept");
    if (!c)
        printf("# %s\n", e.msg);
    free(t);
    json_decref(c);
    json_decref(img);

    /* no image config at all: defaults */
    hero_ctr_spec_free(&s);
    base_spec(&s);
    s.cmd = strv("sh", "-c", "true", NULL);
    c = config(&s, NULL, false, &e);
    TAP_OK(c != NULL, "config: built without an image config");
    t = jjoined(jget(c, "process.env"));
    TAP_STREQ(t, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|HOSTNAME=web",
              "config: PATH defaulted");
    free(t);
    TAP_STREQ(json_string_value(jget(c, "process.cwd")), "/", "config: cwd defaults to /");
    TAP_OK(json_integer_value(jget(c, "process.user.uid")) == 0 &&
               json_integer_value(jget(c, "process.user.gid")) == 0,
           "config: user defaults to root");
    json_decref(c);

    /* errors */
    hero_strv_free(s.cmd);
    s.cmd = strv("/opt/app/run", NULL);
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL, "config: a missing entrypoint fails");
    TAP_STREQ(e.msg, "entrypoint '/opt/app/run' does not exist in the image",
              "  ...and says which");
    hero_error_clear(&e);
    hero_strv_free(s.cmd);
    s.cmd = strv("/bin/sh", NULL);
    s.user = hero_xstrdup("ghost");
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL, "config: an unknown user fails");
    TAP_STREQ(e.msg, "user 'ghost' is not in the image's /etc/passwd", "  ...and says which");
    hero_error_clear(&e);
    free(s.user);
    s.user = NULL;
    s.workdir = hero_xstrdup("relative/dir");
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL && e.msg && strstr(e.msg, "not an absolute path"),
           "config: a relative workdir fails");
    hero_error_clear(&e);
    free(s.workdir);
    s.workdir = NULL;
    s.cap_add = strv("CAP_FLY", NULL);
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL, "config: an unknown capability fails");
    TAP_STREQ(e.msg, "unknown capability 'CAP_FLY'", "  ...and says which");
    hero_error_clear(&e);
    hero_strv_free(s.cmd);
    s.cmd = NULL;
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL && e.msg && strstr(e.msg, "neither an entrypoint nor a cmd"),
           "config: nothing to run fails");
    hero_error_clear(&e);
    hero_strv_free(s.cap_add);
    s.cap_add = NULL;
    s.cmd = strv("/bin/sh", NULL);
    s.env = strv("A=\xff", NULL);
    c = config(&s, NULL, false, &e);
    TAP_OK(c == NULL, "config: env that is not UTF-8 fails (rather than vanish)");
    TAP_STREQ(e.msg, "env: not valid UTF-8", "  ...and says where");
    hero_error_clear(&e);
    hero_strv_free(s.env);
    s.env = NULL;
    hero_strv_free(s.cmd);
    s.cmd = NULL;
    hero_oci_opts_t o = opts(false);
    o.rootfs = NULL;
    c = hero_oci_config(&s, NULL, root, &o, &e);
    TAP_OK(c == NULL && e.msg, "config: missing opts fail, not crash");
    hero_error_clear(&e);
    hero_ctr_spec_free(&s);
}

static char *caps_of(const hero_ctr_spec_t *s, hero_error_t *e, bool *same)
{
    json_t *c = config(s, NULL, false, e);
    if (!c)
        return NULL;
    const json_t *caps = jget(c, "process.capabilities");
    const json_t *b = json_object_get(caps, "bounding");
    *same = json_equal(b, json_object_get(caps, "effective")) &&
            json_equal(b, json_object_get(caps, "permitted")) &&
            json_is_array(json_object_get(caps, "inheritable")) &&
            json_array_size(json_object_get(caps, "inheritable")) == 0 &&
            json_is_array(json_object_get(caps, "ambient")) &&
            json_array_size(json_object_get(caps, "ambient")) == 0;
    char *t = jjoined(b);
    json_decref(c);
    return t;
}

static void test_caps(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s;
    base_spec(&s);
    s.cmd = strv("/bin/sh", NULL);
    bool same = false;
    char *t = caps_of(&s, &e, &same);
    TAP_STREQ(t,
              "CAP_CHOWN|CAP_DAC_OVERRIDE|CAP_FOWNER|CAP_FSETID|CAP_KILL|CAP_SETGID|CAP_SETUID|"
              "CAP_SETPCAP|CAP_NET_BIND_SERVICE|CAP_SYS_CHROOT|CAP_SETFCAP",
              "caps: podman's default set");
    TAP_OK(same, "caps: bounding = effective = permitted; inheritable, ambient empty");
    free(t);

    s.cap_add = strv("net_raw", "CAP_SYS_ADMIN", "Cap_Chown", NULL);
    s.cap_drop = strv("chown", "cap_kill", "SETFCAP", NULL);
    t = caps_of(&s, &e, &same);
    TAP_STREQ(t,
              "CAP_CHOWN|CAP_DAC_OVERRIDE|CAP_FOWNER|CAP_FSETID|CAP_SETGID|CAP_SETUID|"
              "CAP_SETPCAP|CAP_NET_BIND_SERVICE|CAP_NET_RAW|CAP_SYS_CHROOT|CAP_SYS_ADMIN",
              "caps: drop, then add (any case, CAP_ optional)");
    free(t);

    hero_strv_free(s.cap_add);
    s.cap_add = strv("ALL", NULL);
    t = caps_of(&s, &e, &same);
    int held = 0, held_dropped = 0;
    for (int c = 0; c <= 40; c++)
        if (prctl(PR_CAPBSET_READ, (unsigned long)c, 0, 0, 0) == 1) {
            held++;
            held_dropped += c == 0 || c == 5 || c == 31; /* CHOWN, KILL, SETFCAP */
        }
    size_t n = 0;
    for (char *p = t; p && *p; p++)
        n += *p == '|';
    /* all that hero holds but the three dropped */
    TAP_OK(t && (int)n + 1 == held - held_dropped && !strstr(t, "CAP_KILL") &&
               strstr(t, "CAP_SYS_ADMIN"),
           "caps: cap_add ALL gives every capability but the dropped ones");
    free(t);

    hero_strv_free(s.cap_add);
    hero_strv_free(s.cap_drop);
    s.cap_add = strv("NET_BIND_SERVICE", NULL);
    s.cap_drop = strv("all", NULL);
    t = caps_of(&s, &e, &same);
    TAP_STREQ(t, "CAP_NET_BIND_SERVICE", "caps: cap_drop ALL keeps only the added ones");
    free(t);
    hero_strv_free(s.cap_add);
    s.cap_add = NULL;
    t = caps_of(&s, &e, &same);
    TAP_STREQ(t, "", "caps: cap_drop ALL alone: none");
    TAP_OK(same, "caps: empty lists are still lists");
    free(t);
    hero_ctr_spec_free(&s);
}

/* Capabilities hero does not hold itself: run last, it drops them from this process's
 * bounding set for good (needs CAP_SETPCAP). */
static void test_caps_not_held(void)
{
    if (prctl(PR_CAPBSET_DROP, 22 /* CAP_SYS_BOOT */, 0, 0, 0) < 0 ||
        prctl(PR_CAPBSET_DROP, 31 /* CAP_SETFCAP */, 0, 0, 0) < 0) {
        for (int i = 0; i < 5; i++)
            TAP_SKIP("cannot drop capabilities from the bounding set (not root)");
        return;
    }
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s;
    base_spec(&s);
    s.cmd = strv("/bin/sh", NULL);
    bool same = false;
    char *t = caps_of(&s, &e, &same);
    TAP_STREQ(t,
              "CAP_CHOWN|CAP_DAC_OVERRIDE|CAP_FOWNER|CAP_FSETID|CAP_KILL|CAP_SETGID|CAP_SETUID|"
              "CAP_SETPCAP|CAP_NET_BIND_SERVICE|CAP_SYS_CHROOT",
              "caps: a default capability hero lacks is left out");
    free(t);
    s.cap_add = strv("ALL", NULL);
    t = caps_of(&s, &e, &same);
    TAP_OK(t && !strstr(t, "CAP_SYS_BOOT") && !strstr(t, "CAP_SETFCAP") && strstr(t, "CAP_BPF"),
           "caps: ALL is what hero holds");
    free(t);
    hero_strv_free(s.cap_add);
    s.cap_add = strv("sys_boot", NULL);
    t = caps_of(&s, &e, &same);
    TAP_OK(t == NULL, "caps: adding one hero lacks fails");
    TAP_STREQ(e.msg,
              "cannot add capability CAP_SYS_BOOT: hero does not hold it on this host (it is "
              "not in hero's bounding set)",
              "  ...and says why");
    hero_error_clear(&e);
    hero_strv_free(s.cap_add);
    s.cap_add = NULL;
    s.cap_drop = strv("ALL", NULL);
    t = caps_of(&s, &e, &same);
    TAP_STREQ(t, "", "caps: dropping all needs nothing held");
    free(t);
    hero_ctr_spec_free(&s);
}

static void test_linux(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s;
    base_spec(&s);
    s.cmd = strv("/bin/sh", NULL);
    json_t *c = config(&s, NULL, false, &e);

    /* rlimits */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1048576 ? 1048576
                                                                           : rl.rlim_max;
    const json_t *r = json_array_get(jget(c, "process.rlimits"), 0);
    TAP_STREQ(json_string_value(json_object_get(r, "type")), "RLIMIT_NOFILE", "rlimit: NOFILE");
    TAP_OK((uint64_t)json_integer_value(json_object_get(r, "hard")) == want &&
               (uint64_t)json_integer_value(json_object_get(r, "soft")) == want,
           "rlimit: soft = hard = min(1048576, this process's hard limit)");
    TAP_OK(rl.rlim_max == RLIM_INFINITY ||
               (uint64_t)json_integer_value(json_object_get(r, "hard")) <= rl.rlim_max,
           "rlimit: never above the host's hard limit");

    /* namespaces and the rest of linux */
    const json_t *ns = jget(c, "linux.namespaces");
    char *t = hero_xstrdup("");
    for (size_t i = 0; i < json_array_size(ns); i++) {
        const json_t *o = json_array_get(ns, i);
        char *x = hero_xasprintf("%s%s%s%s", t, i ? "|" : "",
                                 json_string_value(json_object_get(o, "type")),
                                 json_object_get(o, "path") ? "(path)" : "");
        free(t);
        t = x;
    }
    TAP_STREQ(t, "pid|network|ipc|uts|mount|cgroup", "linux: six new namespaces");
    free(t);
    TAP_STREQ(json_string_value(jget(c, "linux.cgroupsPath")), "/hero/hero-web",
              "linux: cgroupsPath");
    const json_t *res = jget(c, "linux.resources");
    TAP_OK(!json_object_get(res, "memory") && !json_object_get(res, "cpu") &&
               !json_object_get(res, "pids"),
           "resources: none when unlimited");
    const json_t *d0 = json_array_get(json_object_get(res, "devices"), 0);
    TAP_OK(json_is_false(json_object_get(d0, "allow")) &&
               json_string_value(json_object_get(d0, "access")) &&
               streq(json_string_value(json_object_get(d0, "access")), "rwm") &&
               !json_object_get(d0, "type"),
           "resources: devices start by denying all");
    bool null_ok = false;
    const json_t *devs = json_object_get(res, "devices");
    for (size_t i = 0; i < json_array_size(devs); i++) {
        const json_t *d = json_array_get(devs, i);
        if (json_is_true(json_object_get(d, "allow")) &&
            json_integer_value(json_object_get(d, "major")) == 1 &&
            json_integer_value(json_object_get(d, "minor")) == 3)
            null_ok = true;
    }
    TAP_OK(null_ok, "resources: /dev/null allowed");
    t = jjoined(jget(c, "linux.maskedPaths"));
    TAP_STREQ(t,
              "/proc/acpi|/proc/asound|/proc/kcore|/proc/keys|/proc/latency_stats|"
              "/proc/timer_list|/proc/timer_stats|/proc/sched_debug|/proc/scsi|/sys/firmware|"
              "/sys/fs/selinux|/sys/dev/block",
              "linux: maskedPaths");
    free(t);
    t = jjoined(jget(c, "linux.readonlyPaths"));
    TAP_STREQ(t, "/proc/bus|/proc/fs|/proc/irq|/proc/sys|/proc/sysrq-trigger",
              "linux: readonlyPaths");
    free(t);

    /* mounts */
    t = jjoined(json_object_get(c, "mounts"));
    TAP_STREQ(t,
              "/proc|/dev|/dev/pts|/dev/shm|/dev/mqueue|/sys|/sys/fs/cgroup|/.hero-init|/.hero|"
              "/etc/resolv.conf|/etc/hosts|/etc/hostname",
              "mounts: the usual ones, hero's, then /etc files, in order");
    free(t);
    const json_t *m = json_array_get(json_object_get(c, "mounts"), 7);
    t = jjoined(json_object_get(m, "options"));
    TAP_OK(streq(json_string_value(json_object_get(m, "source")),
                  "/usr/libexec/hero/hero-init") &&
               streq(t, "bind|ro|nosuid|nodev"),
           "mounts: hero-init bound read-only");
    free(t);
    m = json_array_get(json_object_get(c, "mounts"), 10);
    TAP_STREQ(json_string_value(json_object_get(m, "source")),
              "/var/lib/hero/containers/web/etc/hosts", "mounts: /etc/hosts from etc_dir");
    m = json_array_get(json_object_get(c, "mounts"), 5);
    t = jjoined(json_object_get(m, "options"));
    TAP_STREQ(t, "nosuid|noexec|nodev|ro", "mounts: /sys read-only");
    free(t);
    json_decref(c);

    /* limits and user mounts */
    s.memory = 256u << 20;
    s.cpus = 1.5;
    s.pids_limit = 100;
    s.nmounts = 2;
    s.mounts = hero_xcalloc(2, sizeof *s.mounts);
    s.mounts[0] = (hero_mount_spec_t){hero_xstrdup("/srv/data"), hero_xstrdup("/data"), false};
    s.mounts[1] = (hero_mount_spec_t){hero_xstrdup("/srv/conf"), hero_xstrdup("/etc/app"), true};
    c = config(&s, NULL, false, &e);
    res = jget(c, "linux.resources");
    TAP_OK(json_integer_value(jget(res, "memory.limit")) == 268435456 &&
               json_integer_value(jget(res, "memory.swap")) == 268435456,
           "resources: memory limit, swap = limit");
    TAP_OK(json_integer_value(jget(res, "cpu.quota")) == 150000 &&
               json_integer_value(jget(res, "cpu.period")) == 100000,
           "resources: cpus 1.5 = quota 150000 / period 100000");
    TAP_OK(json_integer_value(jget(res, "pids.limit")) == 100, "resources: pids limit");
    const json_t *ms = json_object_get(c, "mounts");
    size_t nm = json_array_size(ms);
    const json_t *u0 = json_array_get(ms, nm - 2), *u1 = json_array_get(ms, nm - 1);
    char *o0 = jjoined(json_object_get(u0, "options")), *o1 = jjoined(json_object_get(u1, "options"));
    TAP_OK(nm == 14 && streq(json_string_value(json_object_get(u0, "destination")), "/data") &&
               streq(json_string_value(json_object_get(u0, "source")), "/srv/data") &&
               streq(json_string_value(json_object_get(u0, "type")), "bind") &&
               streq(o0, "rbind|rw"),
           "mounts: a user bind mount, read-write, after hero's");
    TAP_OK(streq(json_string_value(json_object_get(u1, "destination")), "/etc/app") &&
               streq(o1, "rbind|ro"),
           "mounts: a read-only user bind mount, in the given order");
    free(o0);
    free(o1);
    json_decref(c);

    s.cpus = 0.001;
    c = config(&s, NULL, false, &e);
    TAP_OK(json_integer_value(jget(c, "linux.resources.cpu.quota")) == 1000,
           "resources: tiny cpus clamp to the kernel's 1ms minimum quota");
    json_decref(c);

    /* no etc_dir: no /etc binds */
    hero_oci_opts_t o = opts(false);
    o.etc_dir = NULL;
    o.cgroup_path = NULL;
    c = hero_oci_config(&s, NULL, root, &o, &e);
    TAP_OK(c && json_array_size(json_object_get(c, "mounts")) == 11 &&
               !jget(c, "linux.cgroupsPath"),
           "config: etc_dir and cgroup_path are optional");
    json_decref(c);
    hero_ctr_spec_free(&s);
}

/* ------------------------------------------------------------------------ spec */

static void full_spec(hero_ctr_spec_t *s)
{
    base_spec(s);
    s->hostname = hero_xstrdup("h1");
    s->env = strv("A=1", "B=2", NULL);
    s->entrypoint = strv("/bin/sh", "-c", NULL);
    s->cmd = strv("echo hi", NULL);
    s->workdir = hero_xstrdup("/srv");
    s->user = hero_xstrdup("app:wheel");
    s->cap_add = strv("NET_RAW", NULL);
    s->cap_drop = strv("KILL", NULL);
    s->nmounts = 1;
    s->mounts = hero_xcalloc(1, sizeof *s->mounts);
    s->mounts[0] = (hero_mount_spec_t){hero_xstrdup("/a"), hero_xstrdup("/b"), true};
    s->memory = 256u << 20;
    s->cpus = 1.5;
    s->pids_limit = 64;
    s->ports = strv("8080:80", "5353:53/udp", NULL);
}

static void test_spec(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_ctr_spec_t s, r;
    base_spec(&s);
    json_t *j = hero_ctr_spec_to_json(&s);
    char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    TAP_STREQ(t, "{\"image\":\"embedded\",\"name\":\"web\"}", "spec: defaults are omitted");
    free(t);
    json_decref(j);
    s.env = hero_xcalloc(1, sizeof *s.env); /* empty list = none */
    char *h0 = hero_ctr_spec_hash(&s);
    hero_strv_free(s.env);
    s.env = NULL;
    char *h1 = hero_ctr_spec_hash(&s);
    TAP_OK(h0 && h1 && strlen(h1) == 64 && strspn(h1, "0123456789abcdef") == 64,
           "spec: the hash is 64 hex digits");
    TAP_STREQ(h0, h1, "spec: an empty env hashes as no env");
    free(h0);
    s.entrypoint = hero_xcalloc(1, sizeof *s.entrypoint); /* entrypoint:[] is not "image's" */
    h0 = hero_ctr_spec_hash(&s);
    TAP_OK(strcmp(h0, h1) != 0, "spec: entrypoint [] differs from no entrypoint");
    free(h0);
    free(h1);
    j = hero_ctr_spec_to_json(&s);
    TAP_OK(hero_ctr_spec_from_json(j, &r, &e) == 0 && r.entrypoint && !r.entrypoint[0] && !r.cmd,
           "spec: entrypoint [] survives the round trip");
    hero_ctr_spec_free(&r);
    json_decref(j);
    hero_ctr_spec_free(&s);

    full_spec(&s);
    j = hero_ctr_spec_to_json(&s);
    t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    TAP_STREQ(t,
              "{\"cap_add\":[\"NET_RAW\"],\"cap_drop\":[\"KILL\"],\"cmd\":[\"echo hi\"],"
              "\"cpus\":1.5,\"entrypoint\":[\"/bin/sh\",\"-c\"],\"env\":[\"A=1\",\"B=2\"],"
              "\"hostname\":\"h1\",\"image\":\"embedded\",\"memory\":268435456,"
              "\"mounts\":[{\"dst\":\"/b\",\"ro\":true,\"src\":\"/a\"}],\"name\":\"web\","
              "\"pids_limit\":64,\"ports\":[\"8080:80\",\"5353:53/udp\"],\"user\":\"app:wheel\","
              "\"workdir\":\"/srv\"}",
              "spec: canonical JSON of every field");
    /* through text, as the state store keeps it */
    json_t *back = json_loads(t, 0, NULL);
    free(t);
    int rc = hero_ctr_spec_from_json(back, &r, &e);
    json_decref(back);
    TAP_OK(rc == 0, "spec: from_json accepts it");
    h0 = hero_ctr_spec_hash(&s);
    h1 = hero_ctr_spec_hash(&r);
    TAP_STREQ(h0, h1, "spec: round trip keeps the hash");
    TAP_OK(hero_ctr_spec_diff(&s, &r) == NULL, "spec: no diff after the round trip");
    TAP_OK(r.nmounts == 1 && r.mounts[0].ro && streq(r.mounts[0].dst, "/b") &&
               r.memory == 268435456 && r.cpus == 1.5 && r.pids_limit == 64,
           "spec: round trip keeps mounts and limits");
    free(h1);
    r.memory = 512u << 20;
    h1 = hero_ctr_spec_hash(&r);
    TAP_OK(strcmp(h0, h1) != 0, "spec: the hash changes with memory");
    free(h1);
    t = hero_ctr_spec_diff(&s, &r);
    TAP_STREQ(t, "memory: 256M -> 512M", "diff: memory in human sizes");
    free(t);
    hero_strv_free(r.env);
    r.env = strv("A=1", NULL);
    hero_strv_free(s.env);
    s.env = strv("A=1", "B=2", NULL);
    t = hero_ctr_spec_diff(&r, &s);
    TAP_STREQ(t, "env: [A=1] -> [A=1, B=2]; memory: 512M -> 256M", "diff: env and memory");
    free(t);
    free(r.hostname);
    r.hostname = NULL;
    r.nmounts = 0;
    free(r.mounts[0].src);
    free(r.mounts[0].dst);
    r.memory = 256u << 20;
    hero_strv_free(r.env);
    r.env = strv("A=1", "B=2", NULL);
    r.cpus = 2;
    t = hero_ctr_spec_diff(&r, &s);
    TAP_STREQ(t, "hostname: (none) -> h1; mounts: (none) -> [/a:/b:ro]; cpus: 2 -> 1.5",
              "diff: absent fields are (none)");
    free(t);
    free(h0);
    hero_ctr_spec_free(&r);
    hero_ctr_spec_free(&s);

    /* text that is not UTF-8 still counts */
    base_spec(&s);
    base_spec(&r);
    s.env = strv("A=\xff", NULL);
    r.env = strv("A=\xfe", NULL);
    h0 = hero_ctr_spec_hash(&s);
    h1 = hero_ctr_spec_hash(&r);
    TAP_OK(strcmp(h0, h1) != 0, "spec: values that are not UTF-8 are not dropped from the hash");
    t = hero_ctr_spec_diff(&s, &r);
    TAP_STREQ(t, "env: [A=\\xff] -> [A=\\xfe]", "diff: stray bytes shown as \\xNN");
    free(t);
    hero_strv_free(r.env);
    r.env = strv("A=\xc3\xa9\xff\xe2\x82", NULL);
    j = hero_ctr_spec_to_json(&r);
    TAP_STREQ(json_string_value(json_array_get(json_object_get(j, "env"), 0)),
              "A=\xc3\xa9\\xff\\xe2\\x82", "spec: good UTF-8 kept, stray bytes escaped");
    json_decref(j);
    free(h0);
    free(h1);
    hero_ctr_spec_free(&s);
    hero_ctr_spec_free(&r);

    /* from_json errors */
    static const char *const bad[] = {
        "[]",
        "{\"name\": \"a\"}",
        "{\"name\": \"a\", \"image\": \"b\", \"colour\": \"red\"}",
        "{\"name\": \"a\", \"image\": \"b\", \"env\": \"A=1\"}",
        "{\"name\": \"a\", \"image\": \"b\", \"env\": [1]}",
        "{\"name\": \"a\", \"image\": \"b\", \"memory\": -1}",
        "{\"name\": \"a\", \"image\": \"b\", \"memory\": \"1G\"}",
        "{\"name\": \"a\", \"image\": \"b\", \"mounts\": [{\"src\": \"/a\"}]}",
        "{\"name\": 1, \"image\": \"b\"}",
    };
    int nbad = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *b = json_loads(bad[i], 0, NULL);
        if (hero_ctr_spec_from_json(b, &r, &e) < 0 && e.msg && !r.name && !r.mounts)
            nbad++;
        else
            printf("#   accepted: %s\n", bad[i]);
        hero_error_clear(&e);
        json_decref(b);
    }
    TAP_OK(nbad == (int)(sizeof bad / sizeof *bad), "spec: from_json rejects bad input");
}

/* --------------------------------------------------- a bundle crun could take */

static int copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (n < 0)
        rc = -1;
    close(in);
    close(out);
    return rc;
}

static void test_bundle(void)
{
    if (access("/bin/busybox", R_OK) != 0) {
        for (int i = 0; i < 6; i++)
            TAP_SKIP("no /bin/busybox on the host");
        return;
    }
    char *bundle = hero_xasprintf("%s/bundle", tmp);
    must(mkdir(bundle, 0755) == 0, bundle);
    mkdir_in(bundle, "rootfs");
    mkdir_in(bundle, "rootfs/bin");
    mkdir_in(bundle, "rootfs/etc");
    mkdir_in(bundle, "run");
    mkdir_in(bundle, "etc");
    char *rfs = hero_xasprintf("%s/rootfs", bundle);
    char *bb = hero_xasprintf("%s/bin/busybox", rfs);
    must(copy_file("/bin/busybox", bb, 0755) == 0, "copy busybox");
    symlink_in(rfs, "bin/sh", "busybox");
    symlink_in(rfs, "bin/true", "/bin/busybox");
    write_file(bundle, "etc/hosts", "127.0.0.1 localhost\n", 0644);
    write_file(bundle, "etc/hostname", "t1\n", 0644);
    write_file(bundle, "etc/resolv.conf", "", 0644);
    char *run = hero_xasprintf("%s/run", bundle), *etc = hero_xasprintf("%s/etc", bundle);

    hero_ctr_spec_t s;
    base_spec(&s);
    s.cmd = strv("true", NULL);
    hero_oci_opts_t o = {.rootfs = rfs, .init_path = bb, .run_dir = run, .etc_dir = etc,
                         .cgroup_path = "/hero/t1"};
    hero_error_t e = HERO_ERROR_INIT;
    json_t *c = hero_oci_config(&s, NULL, rfs, &o, &e);
    TAP_OK(c != NULL, "bundle: config for a busybox rootfs");
    char *path = hero_xasprintf("%s/config.json", bundle);
    TAP_OK(c && json_dump_file(c, path, JSON_INDENT(2)) == 0, "bundle: config.json written");
    json_decref(c);

    json_error_t je;
    json_t *l = json_load_file(path, 0, &je);
    TAP_OK(l != NULL, "bundle: config.json is well-formed JSON");
    TAP_OK(json_is_string(json_object_get(l, "ociVersion")) &&
               json_is_array(jget(l, "process.args")) &&
               json_array_size(jget(l, "process.args")) > 0 &&
               json_is_string(jget(l, "process.cwd")) && json_is_object(jget(l, "process.user")),
           "bundle: ociVersion, process.args, cwd, user present");
    TAP_OK(json_is_string(jget(l, "root.path")) &&
               streq(json_string_value(jget(l, "root.path")), rfs),
           "bundle: root.path is the rootfs");
    TAP_OK(json_is_array(jget(l, "linux.namespaces")) && json_is_array(json_object_get(l, "mounts")),
           "bundle: linux.namespaces and mounts present");
    json_decref(l);
    hero_ctr_spec_free(&s);
    free(path);
    free(run);
    free(etc);
    free(bb);
    free(rfs);
    free(bundle);
}

/* Makes openat2 fail with ENOSYS from now on, as on Linux < 5.6, so that the walk
 * that replaces it is tested as well. */
static int deny_openat2(void)
{
#ifdef __NR_openat2
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof *f, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -1;
    errno = 0;
    long r = syscall(__NR_openat2, AT_FDCWD, "/", NULL, 0);
    return r < 0 && errno == ENOSYS ? 0 : -1;
#else
    return 0;
#endif
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a reader that goes away must not leave the dirs behind */
    make_rootfs();
    test_args();
    test_users();
    test_check_exec();
    test_config_process();
    test_caps();
    test_linux();
    test_spec();
    test_bundle();

    if (deny_openat2() == 0) {
        printf("# again, without openat2 (as on Linux < 5.6)\n");
        test_users();
        test_check_exec();
        test_config_process();
    } else {
        TAP_SKIP("cannot filter openat2 out with seccomp here");
    }
    test_caps_not_held();
    rm_rf(root);
    rm_rf(tmp);
    return tap_done();
}
