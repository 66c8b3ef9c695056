/* hero_fs_rmtree (runtime/fs_rmtree.c): removes hero's own trees, never through a
 * symlink or into another mount, and deep trees too. The mount cases run in a mount
 * namespace of the test's own (root only), so nothing is left mounted on the host. */
#include "runtime/fs.h"
#include "tests/unit/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[] = "/tmp/hero-fs-test.XXXXXX";

static char *P(const char *fmt, const char *a)
{
    char *rel = hero_xasprintf(fmt, a);
    char *p = hero_xasprintf("%s/%s", base, rel);
    free(rel);
    return p;
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void touch(const char *p)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, "x", 1) != 1)
            perror("write");
        close(fd);
    }
}

static void mk(const char *p)
{
    hero_mkdir_p(p, 0755, NULL);
}

static void plain_trees(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *missing = P("%s", "nothing-here");
    TAP_OK(hero_fs_rmtree(missing, &e) == 0 && !e.msg, "a missing path is fine");
    free(missing);

    char *file = P("%s", "a-file");
    touch(file);
    TAP_OK(hero_fs_rmtree(file, &e) == 0 && !exists(file), "a file is removed");
    free(file);

    /* outside the tree: what its symlinks point at */
    char *out = P("%s", "outside"), *outf = P("%s", "outside/keep");
    mk(out);
    touch(outf);
    char *t = P("%s", "tree");
    char *sub = P("%s", "tree/a/b/c"), *f1 = P("%s", "tree/a/b/c/f"), *f2 = P("%s", "tree/a/g");
    char *l1 = P("%s", "tree/a/to-outside"), *l2 = P("%s", "tree/a/b/to-keep");
    char *fifo = P("%s", "tree/a/b/fifo"), *ro = P("%s", "tree/ro"), *rof = P("%s", "tree/ro/f");
    mk(sub);
    touch(f1);
    touch(f2);
    if (symlink(out, l1) < 0 || symlink(outf, l2) < 0 || mkfifo(fifo, 0600) < 0)
        perror("setup");
    mk(ro);
    touch(rof);
    if (geteuid() == 0)
        chmod(ro, 0500); /* (root removes what is in it all the same) */
    TAP_OK(hero_fs_rmtree(t, &e) == 0 && !e.msg && !exists(t),
           "a tree with files, symlinks, a fifo and a directory without write access "
           "(for root) is removed");
    TAP_OK(exists(outf), "what its symlinks point at is left alone");
    if (e.msg)
        printf("#   %s\n", e.msg);
    hero_error_clear(&e);
    free(sub);
    free(f1);
    free(f2);
    free(l1);
    free(l2);
    free(fifo);
    free(ro);
    free(rof);

    /* deeper than the levels that keep their fd open */
    size_t cap = 4096;
    char *deep = hero_xmalloc(cap);
    snprintf(deep, cap, "%s/deep", base);
    for (int i = 0; i < 70; i++)
        strncat(deep, "/d", cap - strlen(deep) - 1);
    mk(deep);
    char *leaf = hero_xasprintf("%s/leaf", deep);
    touch(leaf);
    char *top = P("%s", "deep");
    TAP_OK(exists(leaf) && hero_fs_rmtree(top, &e) == 0 && !exists(top),
           "a tree 70 directories deep is removed");
    hero_error_clear(&e);
    free(leaf);
    free(deep);
    free(top);
    free(t);
    hero_fs_rmtree(out, NULL);
    free(out);
    free(outf);
}

/* Makes `levels` directories one in the other under dir, each named `name`, by fds
 * (a full path could pass PATH_MAX), with a file at the bottom. */
static bool make_deep(const char *dir, int levels, const char *name)
{
    mk(dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; fd >= 0 && i < levels; i++) {
        int next = mkdirat(fd, name, 0755) == 0 ? openat(fd, name, O_RDONLY | O_DIRECTORY |
                                                                        O_CLOEXEC)
                                                : -1;
        close(fd);
        fd = next;
    }
    if (fd < 0)
        return false;
    int f = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(fd);
    if (f < 0)
        return false;
    close(f);
    return true;
}

static void deep_trees(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    /* names of 200 characters, 30 deep: 6000 characters, past PATH_MAX */
    char name[201];
    memset(name, 'n', 200);
    name[200] = 0;
    char *longt = P("%s", "long");
    TAP_OK(make_deep(longt, 30, name) && hero_fs_rmtree(longt, &e) == 0 && !exists(longt),
           "a tree whose paths are longer than PATH_MAX is removed");
    if (e.msg)
        printf("#   %s\n", e.msg);
    hero_error_clear(&e);
    hero_fs_rmtree(longt, NULL);
    free(longt);

    /* 600 deep with at most 64 fds: a directory deep down does not keep its fd */
    struct rlimit old, low = {64, 64};
    getrlimit(RLIMIT_NOFILE, &old);
    char *deep = P("%s", "fds");
    bool made = make_deep(deep, 600, "d");
    low.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_NOFILE, &low);
    int rc = made ? hero_fs_rmtree(deep, &e) : -1;
    setrlimit(RLIMIT_NOFILE, &old);
    TAP_OK(made && rc == 0 && !exists(deep), "a tree 600 deep is removed with 64 fds at most");
    if (e.msg)
        printf("#   %s\n", e.msg);
    hero_error_clear(&e);
    hero_fs_rmtree(deep, NULL);
    free(deep);

    /* deep enough to overflow a stack of one frame per level */
    char *vdeep = P("%s", "vdeep");
    made = make_deep(vdeep, 20000, "d");
    TAP_OK(made && hero_fs_rmtree(vdeep, &e) == 0 && !exists(vdeep),
           "a tree 20000 deep is removed (no recursion down there)");
    hero_error_clear(&e);
    hero_fs_rmtree(vdeep, NULL);
    free(vdeep);

}

/* rm_tree's level: a directory 60 down with files and subdirectories mixed, made by
 * fds (the full path is short here, but the levels are what counts) */
static void wide_deep(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *top = P("%s", "wd");
    mk(top);
    int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; fd >= 0 && i < 60; i++) {
        int next = mkdirat(fd, "d", 0755) == 0 ? openat(fd, "d", O_RDONLY | O_DIRECTORY |
                                                                    O_CLOEXEC)
                                              : -1;
        close(fd);
        fd = next;
    }
    bool ok = fd >= 0;
    for (int i = 0; ok && i < 40; i++) {
        char n[16];
        snprintf(n, sizeof n, "f%02d", i);
        int f = openat(fd, n, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ok = f >= 0;
        if (f >= 0)
            close(f);
        snprintf(n, sizeof n, "s%02d", i);
        ok = ok && mkdirat(fd, n, 0755) == 0;
        int sd = ok ? openat(fd, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (sd >= 0) {
            ok = mkdirat(sd, "inner", 0755) == 0;
            int g = openat(sd, "g", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (g >= 0)
                close(g);
            close(sd);
        }
    }
    if (fd >= 0)
        close(fd);
    TAP_OK(ok && hero_fs_rmtree(top, &e) == 0 && !exists(top),
           "60 down, 40 files and 40 subdirectories side by side: all removed");
    if (e.msg)
        printf("#   %s\n", e.msg);
    hero_error_clear(&e);
    hero_fs_rmtree(top, NULL);
    free(top);
}

/* Two processes remove one tree at once (hero_fs_remove_stale may race another hero):
 * both succeed, whatever the other removed first. At `depth` levels, 8 branches. */
static bool two_at_once(int depth)
{
    char *top = P("%s", "race");
    mk(top);
    for (int b = 0; b < 8; b++) {
        char n[16];
        snprintf(n, sizeof n, "b%d", b);
        char *br = hero_xasprintf("%s/%s", top, n);
        if (!make_deep(br, depth, "d"))
            return false;
        free(br);
    }
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            hero_error_t e = HERO_ERROR_INIT;
            int rc = hero_fs_rmtree(top, &e);
            if (rc < 0)
                printf("#   process %d: %s\n", k, e.msg ? e.msg : "?");
            fflush(stdout);
            _exit(rc < 0 ? 1 : 0);
        }
    }
    bool ok = true;
    for (int k = 0; k < 2; k++) {
        int st = 0;
        ok &= kids[k] > 0 && waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) &&
              WEXITSTATUS(st) == 0;
    }
    ok &= !exists(top);
    hero_fs_rmtree(top, NULL);
    free(top);
    return ok;
}

static void concurrent(void)
{
    bool shallow = true, deep = true;
    for (int round = 0; round < 10; round++) {
        shallow &= two_at_once(10);
        deep &= two_at_once(60);
    }
    TAP_OK(shallow, "two processes removing one tree 10 deep at once both succeed (10 rounds)");
    TAP_OK(deep, "... and one 60 deep (10 rounds)");
}

/* "link/" and "link/." name what a symlink points at: refused, or the link itself */
static void slashes(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *out = P("%s", "sl-out"), *keep = P("%s", "sl-out/keep"), *link = P("%s", "sl-link");
    mk(out);
    touch(keep);
    if (symlink(out, link) < 0)
        perror("symlink");
    char *slash = hero_xasprintf("%s/", link), *dot = hero_xasprintf("%s/.", link);
    int r1 = hero_fs_rmtree(dot, &e);
    hero_error_clear(&e);
    TAP_OK(r1 < 0 && exists(keep), "'link/.' is refused, nothing removed where it points");
    int r2 = hero_fs_rmtree(slash, &e);
    hero_error_clear(&e);
    TAP_OK(r2 == 0 && !exists(link) && exists(keep),
           "'link/' removes the link, not what it points at");
    hero_fs_rmtree(out, NULL);
    free(out);
    free(keep);
    free(link);
    free(slash);
    free(dot);
}

static void mounts(void)
{
    if (geteuid() != 0) {
        TAP_SKIP("mount cases: need root (a mount namespace of their own)");
        return;
    }
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        TAP_SKIP("mount cases: cannot make a private mount namespace");
        return;
    }
    hero_error_t e = HERO_ERROR_INIT;
    /* a bind mount of the same file system inside the tree: st_dev is the same */
    char *src = P("%s", "src"), *keep = P("%s", "src/keep");
    char *t = P("%s", "mtree"), *mp = P("%s", "mtree/x/mnt"), *other = P("%s", "mtree/y/f");
    mk(src);
    touch(keep);
    mk(mp);
    char *ydir = P("%s", "mtree/y");
    mk(ydir);
    touch(other);
    bool bound = mount(src, mp, NULL, MS_BIND, NULL) == 0;
    if (TAP_OK(bound, "a bind mount inside the tree")) {
        int rc = hero_fs_rmtree(t, &e);
        TAP_OK(rc < 0 && e.msg && strstr(e.msg, "a file system is mounted there") &&
                   strstr(e.msg, "mtree/x/mnt"),
               "a tree with a mount inside is not removed: the error names the mount");
        if (e.msg)
            printf("#   %s\n", e.msg);
        TAP_OK(exists(keep), "nothing is removed through the mount");
        hero_error_clear(&e);
        int pfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = hero_fs_rmtree_at(pfd, "mtree", &e);
        TAP_OK(rc < 0 && e.msg && strstr(e.msg, "'mtree/x/mnt'") &&
                   strstr(e.msg, "a file system is mounted there") && exists(keep),
               "at: a mount inside is refused, the error names it from the name given");
        hero_error_clear(&e);
        close(pfd);
        char *xdir = P("%s", "mtree/x");
        pfd = open(xdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = hero_fs_rmtree_at(pfd, "mnt", &e);
        TAP_OK(rc < 0 && e.msg && strstr(e.msg, "mounted there") && exists(keep),
               "at: a name that is itself a mount is refused");
        hero_error_clear(&e);
        close(pfd);
        free(xdir);
        umount2(mp, MNT_DETACH);
        TAP_OK(hero_fs_rmtree(t, &e) == 0 && !exists(t) && exists(keep),
               "once unmounted, the tree goes (and the bound directory stays)");
        hero_error_clear(&e);
    }
    hero_fs_rmtree(t, NULL);

    /* mounts deep down (where directories let go of their fds) and on the path itself */
    static const int depths[] = {47, 48, 49, 60};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        char *dt = P("%s", "dtree");
        size_t cap = 512;
        char *m = hero_xmalloc(cap);
        snprintf(m, cap, "%s", dt);
        for (int k = 0; k < depths[i]; k++)
            strncat(m, "/d", cap - strlen(m) - 1);
        mk(m);
        bool ok = mount(src, m, NULL, MS_BIND, NULL) == 0;
        int rc = ok ? hero_fs_rmtree(dt, &e) : 0;
        char *what = hero_xasprintf("a bind mount %d directories down: refused, nothing "
                                    "removed through it", depths[i]);
        TAP_OK(ok && rc < 0 && e.msg && strstr(e.msg, "mounted there") && exists(keep), what);
        if (e.msg && rc < 0)
            printf("#   %s\n", e.msg);
        free(what);
        hero_error_clear(&e);
        if (ok)
            umount2(m, MNT_DETACH);
        hero_fs_rmtree(dt, NULL);
        free(m);
        free(dt);
    }
    char *self = P("%s", "self");
    mk(self);
    bool ok = mount(src, self, NULL, MS_BIND, NULL) == 0;
    TAP_OK(ok && hero_fs_rmtree(self, &e) < 0 && e.msg && strstr(e.msg, "mounted there") &&
               exists(keep),
           "a path that is itself a mount is refused");
    hero_error_clear(&e);
    if (ok)
        umount2(self, MNT_DETACH);
    hero_fs_rmtree(self, NULL);
    free(self);

    hero_fs_rmtree(src, NULL);
    free(src);
    free(keep);
    free(t);
    free(mp);
    free(other);
    free(ydir);
}

/* hero_fs_rmtree_at: the same removal from a directory fd and a name */
static void at_dirfd(void)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *top = P("%s", "at");
    mk(top);
    int dfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *f = P("%s", "at/file"), *t = P("%s", "at/tree/a/b"), *tf = P("%s", "at/tree/a/b/f");
    char *outside = P("%s", "at-outside"), *of = P("%s", "at-outside/keep");
    touch(f);
    mk(t);
    touch(tf);
    mk(outside);
    touch(of);
    char *ln = P("%s", "at/link");
    TAP_OK(symlink(outside, ln) == 0, "at: a symlink to a directory outside");
    TAP_OK(hero_fs_rmtree_at(dfd, "missing", &e) == 0 && !e.msg, "at: a missing name is fine");
    TAP_OK(hero_fs_rmtree_at(dfd, "file", &e) == 0 && !exists(f), "at: a file is removed");
    char *tree = P("%s", "at/tree");
    TAP_OK(hero_fs_rmtree_at(dfd, "tree", &e) == 0 && !exists(tree),
           "at: a directory goes with what it holds");
    TAP_OK(hero_fs_rmtree_at(dfd, "link", &e) == 0 && !exists(ln) && exists(of),
           "at: a symlink is removed, not followed");
    hero_error_clear(&e);

    /* one name only: ".", ".." or a path would reach what holds dirfd */
    char *sub = P("%s", "at/sub"), *kept = P("%s", "at/sub/kept");
    mk(sub);
    touch(kept);
    int sfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    static const char *const bad[] = {"", ".", "..", "../sub", "kept/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *what = hero_xasprintf("at: '%s' is refused, nothing removed", bad[i]);
        TAP_OK(hero_fs_rmtree_at(sfd, bad[i], &e) < 0 && e.code == EINVAL && exists(kept) &&
                   exists(top),
               what);
        free(what);
        hero_error_clear(&e);
    }
    close(sfd);
    free(sub);
    free(kept);

    /* 600 deep with at most 64 fds, as hero_fs_rmtree */
    char *deep = P("%s", "at/deep");
    bool made = make_deep(deep, 600, "d");
    struct rlimit old, low = {64, 64};
    getrlimit(RLIMIT_NOFILE, &old);
    low.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_NOFILE, &low);
    int rc = made ? hero_fs_rmtree_at(dfd, "deep", &e) : -1;
    setrlimit(RLIMIT_NOFILE, &old);
    TAP_OK(made && rc == 0 && !exists(deep), "at: a tree 600 deep is removed with 64 fds at most");
    if (e.msg)
        printf("#   %s\n", e.msg);
    hero_error_clear(&e);

    close(dfd);
    hero_fs_rmtree(top, NULL);
    hero_fs_rmtree(outside, NULL);
    free(top);
    free(f);
    free(t);
    free(tf);
    free(outside);
    free(of);
    free(ln);
    free(deep);
    free(tree);
}

/* hero_fs_remove_stale: a temporary name whose maker runs stays, whatever its age */
static void stale(void)
{
    char *dir = P("%s", "stale");
    mk(dir);
    char live[64];
    snprintf(live, sizeof(live), "stale/.tmp-%ld-live", (long)getpid());
    char *a = P("%s", live), *b = P("%s", "stale/.tmp-999999999-dead"),
         *c = P("%s", "stale/.tmp-nopid"), *d = P("%s", "stale/other");
    mk(a);
    touch(b); /* (a file: entries of any kind) */
    mk(c);
    mk(d);
    hero_fs_remove_stale(dir, ".tmp-", 0);
    TAP_OK(exists(a), "remove_stale keeps what a running process is making");
    TAP_OK(!exists(b) && !exists(c), "remove_stale removes a dead process's, and a name without a pid");
    TAP_OK(exists(d), "remove_stale leaves other names alone");
    mk(c);
    hero_fs_remove_stale(dir, ".tmp-", 3600);
    TAP_OK(exists(c), "remove_stale keeps what is younger than the age given");
    hero_fs_rmtree(dir, NULL);
    mode_t old = umask(027);
    TAP_OK(hero_fs_umask() == 027, "hero_fs_umask reads the umask");
    TAP_OK(umask(old) == 027, "and leaves it as it was");
    free(dir);
    free(a);
    free(b);
    free(c);
    free(d);
}

int main(void)
{
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    plain_trees();
    deep_trees();
    wide_deep();
    concurrent();
    slashes();
    at_dirfd();
    mounts();
    stale();
    hero_fs_rmtree(base, NULL);
    return tap_done();
}
