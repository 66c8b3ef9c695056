/* Unit tests for actions/heropods/image.c: the embedded image is built from the host's
 * static busybox on first use (layout, applet links, etc files, store record), reused
 * while its inputs are unchanged, rebuilt when busybox changes, built once when two
 * resolves race; other names come from the store or fail with a clear message. The
 * last case runs a shell in the built root (root only). The loop must close cleanly. */
#include "actions/heropods/image.h"
#include "tests/unit/tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t loop;
static hero_store_t *store;
static char base[PATH_MAX];

typedef struct res {
    int calls;
    hero_image_t *img;
    char *err;
} res_t;

static void on_image(hero_image_t *img, hero_error_t *err, void *data)
{
    res_t *r = data;
    r->calls++;
    r->img = img;
    if (err)
        r->err = strdup(err->msg ? err->msg : "(no message)");
}

static void resolve(const char *name, res_t *r)
{
    memset(r, 0, sizeof(*r));
    hero_image_resolve(&loop, store, name, on_image, r);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void res_free(res_t *r)
{
    hero_image_free(r->img);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static char *path_in(const char *root, const char *rel)
{
    static char buf[4][PATH_MAX];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", root, rel);
    return p;
}

static bool is_link_to_busybox(const char *root, const char *rel)
{
    char t[PATH_MAX];
    ssize_t n = readlink(path_in(root, rel), t, sizeof(t) - 1);
    if (n < 0)
        return false;
    t[n] = 0;
    return strcmp(t, "/bin/busybox") == 0;
}

static bool applet(const char *root, const char *name)
{
    static const char *dirs[] = {"bin", "sbin", "usr/bin", "usr/sbin"};
    char rel[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(rel, sizeof(rel), "%s/%s", dirs[i], name);
        if (is_link_to_busybox(root, rel))
            return true;
    }
    return false;
}

static bool file_has_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[1024];
    bool found = false;
    while (!found && fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\n")] = 0;
        found = strcmp(buf, line) == 0;
    }
    fclose(f);
    return found;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* How many build leftovers (embedded.tmp.* / embedded.old.*) are in images/. */
static int leftovers(void)
{
    DIR *d = opendir(path_in(base, "images"));
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += !strncmp(de->d_name, "embedded.tmp.", 13) || !strncmp(de->d_name, "embedded.old.", 13);
    closedir(d);
    return n;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool copy_file(const char *from, const char *to, const char *extra)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    bool ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (ok && extra)
        ok = fputs(extra, out) >= 0;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    return ok && chmod(to, 0755) == 0;
}

/* Runs `/bin/sh -c 'echo ok'` chrooted into root; returns what it printed. */
static char *run_in_chroot(const char *root)
{
    static char out[256];
    int fds[2];
    if (pipe(fds) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0)
        return NULL;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (chroot(root) < 0 || chdir("/") < 0)
            _exit(126);
        char *const argv[] = {"sh", "-c", "echo ok", NULL};
        char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return NULL;
    return out;
}

static const char *json_str_at(json_t *cfg, const char *key, size_t i)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_array(v))
        v = json_array_get(v, i);
    return json_string_value(v);
}

int main(void)
{
    if (access("/bin/busybox", X_OK) != 0 && !getenv("HERO_BUSYBOX")) {
        TAP_SKIP("no /bin/busybox (make deps installs busybox-static)");
        return tap_done();
    }
    unsetenv("HERO_BUSYBOX");
    const char *bb = hero_image_busybox_path();
    TAP_STREQ(bb, "/bin/busybox", "the busybox defaults to /bin/busybox");

    snprintf(base, sizeof(base), "%s/hero-test-image.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_store_open(base, &store, &e) < 0) {
        printf("# %s\n", e.msg);
        return 1;
    }
    uv_loop_init(&loop);

    /* a leftover of a killed builder (a pid that cannot exist) is cleaned on a build */
    mkdir(path_in(base, "images"), 0755);
    mkdir(path_in(base, "images/embedded.tmp.2147483646.dead"), 0700);
    mkdir(path_in(base, "images/embedded.tmp.2147483646.dead/bin"), 0700);

    /* ---- first use builds it ---- */
    res_t r1;
    resolve("embedded", &r1);
    TAP_OK(r1.calls == 1 && r1.img && !r1.err, "embedded: resolved once, no error");
    if (r1.err)
        printf("#   error: %s\n", r1.err);
    if (!r1.img) {
        hero_store_close(store);
        uv_loop_close(&loop);
        rm_rf(base);
        return tap_done();
    }
    const char *root = r1.img->rootfs;
    TAP_STREQ(root, path_in(base, "images/embedded/rootfs"), "rootfs is <base>/images/embedded/rootfs");
    TAP_STREQ(r1.img->name, "embedded", "image name");
    TAP_OK(r1.img->digest && !strncmp(r1.img->digest, "sha256:", 7) && strlen(r1.img->digest) == 71,
           "digest is sha256:<64 hex>");
    struct stat sb;
    TAP_OK(stat(path_in(root, "bin/busybox"), &sb) == 0 && S_ISREG(sb.st_mode) &&
               (sb.st_mode & 07777) == 0755,
           "bin/busybox is a regular file, mode 0755");
    struct stat host_bb;
    TAP_OK(stat(bb, &host_bb) == 0 && host_bb.st_size == sb.st_size, "bin/busybox is a full copy");
    TAP_OK(is_link_to_busybox(root, "bin/sh"), "bin/sh -> /bin/busybox");
    TAP_OK(applet(root, "ls") && applet(root, "cat") && applet(root, "wget") &&
               applet(root, "sleep") && applet(root, "ps"),
           "applets ls, cat, wget, sleep, ps link to /bin/busybox");
    TAP_OK(is_link_to_busybox(root, "usr/bin/wget"), "usr/bin/wget where --list-full puts it");
    TAP_OK(lstat(path_in(root, "tmp"), &sb) == 0 && S_ISDIR(sb.st_mode) &&
               (sb.st_mode & 07777) == 01777,
           "tmp is 01777");
    TAP_OK(lstat(path_in(root, "var/tmp"), &sb) == 0 && (sb.st_mode & 07777) == 01777,
           "var/tmp is 01777");
    TAP_OK(lstat(path_in(root, "root"), &sb) == 0 && (sb.st_mode & 07777) == 0700, "root is 0700");
    TAP_OK(lstat(root, &sb) == 0 && (sb.st_mode & 07777) == 0755, "the rootfs itself is 0755");
    bool dirs_ok = true;
    static const char *dirs[] = {"sbin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "home"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        dirs_ok &= lstat(path_in(root, dirs[i]), &sb) == 0 && S_ISDIR(sb.st_mode);
    TAP_OK(dirs_ok, "sbin, usr/sbin, etc, proc, sys, dev, run, home exist");
    TAP_OK(file_has_line(path_in(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh"),
           "etc/passwd has root");
    TAP_OK(file_has_line(path_in(root, "etc/passwd"),
                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"),
           "etc/passwd has nobody");
    TAP_OK(file_has_line(path_in(root, "etc/group"), "root:x:0:") &&
               file_has_line(path_in(root, "etc/group"), "nogroup:x:65534:"),
           "etc/group has root and nogroup");
    TAP_OK(file_contains(path_in(root, "etc/hosts"), "127.0.0.1\tlocalhost"), "etc/hosts");
    TAP_OK(stat(path_in(root, "etc/resolv.conf"), &sb) == 0 && sb.st_size == 0 &&
               stat(path_in(root, "etc/hostname"), &sb) == 0,
           "etc/resolv.conf (empty) and etc/hostname exist");
    TAP_OK(file_contains(path_in(root, "etc/os-release"), "hero embedded (busybox 1.") ||
               file_contains(path_in(root, "etc/os-release"), "hero embedded (busybox "),
           "etc/os-release names it");
    TAP_STREQ(json_str_at(r1.img->config, "Cmd", 0), "/bin/sh", "config Cmd");
    TAP_STREQ(json_str_at(r1.img->config, "Env", 0),
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "config Env");
    TAP_STREQ(json_str_at(r1.img->config, "WorkingDir", 0), "/", "config WorkingDir");
    TAP_OK(leftovers() == 0, "no build leftovers (and the dead builder's was removed)");

    hero_image_rec_t rec = {0};
    TAP_OK(hero_store_image_get(store, "embedded", &rec, &e) == 0, "store has the record");
    TAP_STREQ(rec.digest, r1.img->digest, "record digest");
    TAP_STREQ(rec.rootfs, root, "record rootfs");
    TAP_STREQ(rec.ref, "embedded", "record ref");
    TAP_OK(rec.size >= host_bb.st_size && rec.size < host_bb.st_size + 64 * 1024,
           "record size is the rootfs bytes");
    json_t *doc = json_loads(rec.config ? rec.config : "", 0, NULL);
    TAP_STREQ(json_string_value(json_object_get(doc, "os")), "linux", "record config: os");
    TAP_OK(json_is_object(json_object_get(doc, "config")), "record config: has config");
    json_decref(doc);
    hero_image_rec_free(&rec);

    /* ---- a second resolve reuses it ---- */
    struct stat before, bb_before;
    stat(root, &before);
    stat(path_in(root, "bin/busybox"), &bb_before);
    res_t r2;
    resolve("embedded", &r2);
    struct stat after, bb_after;
    TAP_OK(r2.calls == 1 && r2.img && !r2.err, "second resolve succeeds");
    TAP_OK(r2.img && !strcmp(r2.img->digest, r1.img->digest) && !strcmp(r2.img->rootfs, root),
           "same digest and rootfs");
    TAP_OK(stat(root, &after) == 0 && after.st_ino == before.st_ino &&
               after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
               after.st_mtim.tv_nsec == before.st_mtim.tv_nsec &&
               stat(path_in(root, "bin/busybox"), &bb_after) == 0 &&
               bb_after.st_ino == bb_before.st_ino,
           "no rebuild (same inodes and mtime)");
    res_free(&r2);

    /* ---- two resolves racing for a fresh build: both succeed on one root ---- */
    hero_store_image_delete(store, "embedded", &e);
    rm_rf(path_in(base, "images/embedded/rootfs"));
    res_t ra, rb;
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    hero_image_resolve(&loop, store, "embedded", on_image, &ra);
    hero_image_resolve(&loop, store, "embedded", on_image, &rb);
    uv_run(&loop, UV_RUN_DEFAULT);
    TAP_OK(ra.calls == 1 && rb.calls == 1 && ra.img && rb.img, "two racing builds both resolve");
    if (ra.err || rb.err)
        printf("#   errors: %s / %s\n", ra.err ? ra.err : "-", rb.err ? rb.err : "-");
    TAP_OK(ra.img && rb.img && !strcmp(ra.img->rootfs, rb.img->rootfs) &&
               !strcmp(ra.img->digest, r1.img->digest),
           "they share the root, with the same digest as before");
    TAP_OK(is_link_to_busybox(root, "bin/sh") && leftovers() == 0,
           "the root is complete and the loser's temp dir is gone");
    res_free(&ra);
    res_free(&rb);

    /* ---- a changed busybox rebuilds it ---- */
    char *copy = strdup(path_in(base, "busybox"));
    TAP_OK(copy_file(bb, copy, "\n"), "made a busybox copy with one byte more");
    setenv("HERO_BUSYBOX", copy, 1);
    stat(root, &before);
    res_t r3;
    resolve("embedded", &r3);
    TAP_OK(r3.calls == 1 && r3.img && !r3.err, "resolve with a changed busybox succeeds");
    if (r3.err)
        printf("#   error: %s\n", r3.err);
    TAP_OK(r3.img && strcmp(r3.img->digest, r1.img->digest) != 0, "a different digest");
    TAP_OK(stat(root, &after) == 0 && after.st_ino != before.st_ino, "the root was rebuilt");
    TAP_OK(stat(path_in(root, "bin/busybox"), &sb) == 0 && sb.st_size == host_bb.st_size + 1,
           "with the new busybox in it");
    TAP_OK(is_link_to_busybox(root, "bin/sh") && leftovers() == 0,
           "complete, and the old root is removed");
    memset(&rec, 0, sizeof(rec));
    TAP_OK(hero_store_image_get(store, "embedded", &rec, &e) == 0 && r3.img && rec.digest &&
               !strcmp(rec.digest, r3.img->digest),
           "the record has the new digest");
    hero_image_rec_free(&rec);
    res_free(&r3);

    /* ---- errors ---- */
    setenv("HERO_BUSYBOX", path_in(base, "no-such-busybox"), 1);
    res_t r4;
    resolve("embedded", &r4);
    TAP_OK(r4.calls == 1 && !r4.img && r4.err, "a missing busybox fails");
    TAP_STREQ(r4.err,
              "the embedded image needs a static busybox at /bin/busybox (Debian package "
              "busybox-static; make deps installs it), or HERO_BUSYBOX",
              "with the busybox message");
    res_free(&r4);

    const char *dyn = access("/bin/true", R_OK) == 0 ? "/bin/true" : NULL;
    if (dyn) {
        setenv("HERO_BUSYBOX", dyn, 1);
        res_t r5;
        resolve("embedded", &r5);
        TAP_OK(r5.calls == 1 && !r5.img && r5.err && strstr(r5.err, "dynamically linked"),
               "a dynamically linked binary is refused");
        res_free(&r5);
    } else {
        TAP_SKIP("no /bin/true");
    }
    unsetenv("HERO_BUSYBOX");

    res_t r6;
    resolve("alpine:3.19", &r6);
    TAP_OK(r6.calls == 1 && !r6.img, "an unknown name fails");
    TAP_STREQ(r6.err,
              "image 'alpine:3.19' is not in the store: pull it (image_pull, or an image "
              "reference in image:), import it (image_import), or use image:'embedded'",
              "with the not-in-the-store message");
    res_free(&r6);

    /* ---- an image imported into the store ---- */
    char *imp = strdup(path_in(base, "imported"));
    mkdir(imp, 0755);
    char name[] = "imported", ref[] = "example/imported:1", dig[] = "sha256:00";
    char cfg[] = "{\"os\":\"linux\",\"config\":{\"Cmd\":[\"/app\"],\"User\":\"nobody\"}}";
    hero_image_rec_t in = {.name = name, .ref = ref, .digest = dig, .rootfs = imp, .config = cfg};
    hero_store_image_put(store, &in, &e);
    res_t r7;
    resolve("imported", &r7);
    TAP_OK(r7.calls == 1 && r7.img && !r7.err, "an image in the store resolves");
    TAP_OK(r7.img && !strcmp(r7.img->rootfs, imp) && !strcmp(r7.img->digest, dig) &&
               !strcmp(json_str_at(r7.img->config, "Cmd", 0), "/app") &&
               !strcmp(json_str_at(r7.img->config, "User", 0), "nobody"),
           "with its rootfs, digest and config object");
    res_free(&r7);
    rmdir(imp);
    res_t r8;
    resolve("imported", &r8);
    TAP_OK(r8.calls == 1 && !r8.img && r8.err && strstr(r8.err, "root filesystem"),
           "a store image whose rootfs is gone fails");
    res_free(&r8);
    free(imp);

    /* ---- the built root runs ---- */
    if (geteuid() == 0) {
        res_t r9;
        resolve("embedded", &r9);
        const char *out = r9.img ? run_in_chroot(r9.img->rootfs) : NULL;
        TAP_STREQ(out, "ok\n", "chroot <rootfs> /bin/sh -c 'echo ok' prints ok");
        res_free(&r9);
    } else {
        TAP_SKIP("not root: cannot chroot into the built root");
    }

    res_free(&r1);
    free(copy);
    hero_error_clear(&e);
    hero_store_close(store);
    TAP_OK(uv_loop_close(&loop) == 0, "the loop closes cleanly");
    rm_rf(base);
    return tap_done();
}
