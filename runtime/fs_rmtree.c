/* hero_fs_rmtree (runtime/fs.h): rm -rf for hero's own trees, which may hold what an
 * image's layers put there (any depth, long names, odd types).
 *
 * By directory fds and names (unlinkat), with the entry types getdents gives: no stat
 * of every entry and no full path for the kernel to walk again, so no PATH_MAX limit.
 * Subdirectories are opened with openat2(RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS): a
 * mount met on the way (a bind mount of the same file system too) is never entered
 * nor removed; the removal stops there and fails, as a container's root that is still
 * mounted must make it (its image would be emptied otherwise).
 *
 * The first RM_FD_DEPTH levels keep their directory's fd open (and their place in
 * it) while a subdirectory is emptied (rm_below). Deeper, a directory is left (its fd
 * closed) for its first subdirectory and come back to by ".." once that is empty
 * (checked to be the same directory), then read again from its start (rm_tree): a
 * tree of any depth and any path length takes a bounded number of fds and no more
 * stack than those levels.
 *
 * Two processes may remove one tree at once: whatever the other removed first is
 * gone, not an error (getdents on a directory removed meanwhile says ENOENT). A
 * btrfs subvolume has a device of its own and is taken for a mount where devices are
 * compared (the top path; everywhere without openat2). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/fs.h"

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

struct rm_open_how {
    uint64_t flags, mode, resolve;
};

typedef struct rmtree {
    char *path;        /* of the directory being emptied, for messages */
    size_t len, cap;
} rmtree_t;

/* Directories whose fd stays open while their subdirectories are emptied (rm_below);
 * below them, rm_tree. And the size of a getdents buffer. */
enum { RM_FD_DEPTH = 48, RM_DENTS = 8192 };

/* Whether openat2 can be used: not before Linux 5.6, nor where a seccomp filter
 * refuses it (ENOSYS, or EPERM as Docker's and systemd-nspawn's do). Asked once. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool have_openat2;

static void probe_openat2(void)
{
    struct rm_open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                              .resolve = RESOLVE_NO_XDEV};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
    have_openat2 = fd >= 0;
    if (fd >= 0)
        close(fd);
}

/* Whether fd is the root of a mount (statx says it since Linux 5.8; before, false). */
static bool mount_root(int fd)
{
    struct statx sx;
    return statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, 0, &sx) == 0 &&
           (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static void rm_push(rmtree_t *t, const char *name)
{
    size_t n = strlen(name);
    if (t->len + n + 2 > t->cap) {
        t->cap = (t->len + n + 2) * 2;
        t->path = hero_xrealloc(t->path, t->cap);
    }
    t->path[t->len] = '/';
    memcpy(t->path + t->len + 1, name, n + 1);
    t->len += n + 1;
}

static void rm_pop(rmtree_t *t)
{
    while (t->len && t->path[t->len - 1] != '/')
        t->len--;
    if (t->len)
        t->len--;
    t->path[t->len] = 0;
}

/* Subdirectory `name` of dfd (on device dev), opened for reading; -1 with errno,
 * EXDEV when it is another mount. Without openat2: openat, then the device and (Linux
 * 5.8 and later) statx's mount-root flag, which also tells a bind mount. */
static int rm_open_dir(int dfd, dev_t dev, const char *name)
{
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    pthread_once(&probe_once, probe_openat2);
    if (have_openat2) {
        struct rm_open_how how = {.flags = (uint64_t)flags,
                                  .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS};
        return (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
    }
    int fd = openat(dfd, name, flags);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (fd >= 0 && (st.st_dev != dev || mount_root(fd))) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

static int rm_fail(rmtree_t *t, const char *name, hero_error_t *err)
{
    int e = errno;
    if (name)
        return hero_error_set(err, e, "cannot remove '%s/%s'", t->path, name);
    return hero_error_set(err, e, "cannot remove '%s'", t->path);
}

static int rm_mounted(rmtree_t *t, const char *name, hero_error_t *err)
{
    if (name)
        return hero_error_set(err, 0, "refusing to remove '%s/%s': a file system is mounted "
                                      "there", t->path, name);
    return hero_error_set(err, 0, "refusing to remove '%s': a file system is mounted there",
                          t->path);
}

/* One entry of directory fd: a file, link or node removed (0; also when it is gone
 * already), or a subdirectory opened into *sub (1), or an error (-1). */
static int rm_entry(rmtree_t *t, int fd, dev_t dev, const struct dirent64 *d, int *sub,
                    hero_error_t *err)
{
    const char *name = d->d_name;
    if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
        return 0;
    unsigned char type = d->d_type;
    if (type == DT_UNKNOWN) {
        struct stat es;
        if (fstatat(fd, name, &es, AT_SYMLINK_NOFOLLOW) < 0)
            return errno == ENOENT ? 0 : rm_fail(t, name, err);
        type = S_ISDIR(es.st_mode) ? DT_DIR : DT_REG;
    }
    if (type != DT_DIR) {
        if (unlinkat(fd, name, 0) < 0 && errno != ENOENT)
            return errno == EBUSY ? rm_mounted(t, name, err) : rm_fail(t, name, err);
        return 0;
    }
    *sub = rm_open_dir(fd, dev, name);
    if (*sub >= 0)
        return 1;
    if (errno == EXDEV) /* another mount: left alone, and so is the rest */
        return rm_mounted(t, name, err);
    return errno == ENOENT ? 0 : rm_fail(t, name, err);
}

/* One pass over directory fd: files, links and nodes removed; *sub set to the first
 * subdirectory met (opened, its name in *subname, malloc'd), or -1 when there is none
 * left. */
static int rm_pass(rmtree_t *t, int fd, dev_t dev, char *buf, int *sub, char **subname,
                   hero_error_t *err)
{
    *sub = -1;
    *subname = NULL;
    for (;;) {
        /* entries removed while reading are not seen again; the ones not read yet
         * still come */
        ssize_t n = getdents64(fd, buf, RM_DENTS);
        if (n <= 0) /* (ENOENT: another process removed it, so it was empty) */
            return n < 0 && errno != ENOENT ? rm_fail(t, NULL, err) : 0;
        for (ssize_t off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            int r = rm_entry(t, fd, dev, d, sub, err);
            if (r < 0)
                return -1;
            if (r == 1) {
                *subname = hero_xstrdup(d->d_name);
                return 0;
            }
        }
    }
}

typedef struct rm_level {
    dev_t dev;
    ino_t ino;
    char *name;        /* of the subdirectory being emptied, in this directory */
} rm_level_t;

/* Empties directory fd (t->path, on device dev) and closes fd, without recursion: a
 * directory is left (its fd closed) for its first subdirectory, whose emptying ends by
 * opening ".." (which must be the directory left: same device and inode), removing
 * the subdirectory and reading the directory again from its start. So a tree of any
 * depth needs two fds and one getdents buffer; what it keeps per level is the
 * directory's identity and the subdirectory's name. */
static int rm_tree(rmtree_t *t, int fd, dev_t dev, hero_error_t *err)
{
    char *buf = hero_xmalloc(RM_DENTS);
    rm_level_t *lv = NULL;
    size_t nlv = 0, caplv = 0;
    int rc = 0;
    for (;;) {
        int sub;
        char *subname;
        rc = rm_pass(t, fd, dev, buf, &sub, &subname, err);
        if (rc < 0)
            break;
        if (sub >= 0) { /* down into it */
            struct stat me;
            if (fstat(fd, &me) < 0) {
                rc = rm_fail(t, NULL, err);
                close(sub);
                free(subname);
                break;
            }
            if (nlv == caplv) {
                caplv = caplv ? 2 * caplv : 64;
                lv = hero_xrealloc(lv, caplv * sizeof(*lv));
            }
            lv[nlv++] = (rm_level_t){.dev = me.st_dev, .ino = me.st_ino, .name = subname};
            close(fd);
            fd = sub;
            rm_push(t, subname);
            continue;
        }
        if (nlv == 0)
            break; /* fd is empty: the caller removes it */
        /* fd is empty: back up by "..", and remove it there */
        int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (up < 0) {
            rc = rm_fail(t, NULL, err);
            break;
        }
        close(fd);
        fd = up;
        rm_level_t *l = &lv[--nlv];
        rm_pop(t);
        struct stat back;
        if (fstat(fd, &back) < 0 || back.st_dev != l->dev || back.st_ino != l->ino) {
            rc = hero_error_set(err, 0, "cannot remove '%s/%s': it was moved while it was "
                                        "being removed", t->path, l->name);
            free(l->name);
            break;
        }
        if (unlinkat(fd, l->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            rc = errno == EBUSY ? rm_mounted(t, l->name, err) : rm_fail(t, l->name, err);
        free(l->name);
        if (rc < 0)
            break;
    }
    while (nlv > 0) {
        free(lv[--nlv].name);
        rm_pop(t);
    }
    free(lv);
    free(buf);
    close(fd);
    return rc;
}

/* Empties directory fd (t->path, on device dev; `depth` levels below the top) and
 * closes fd: subdirectories with their fd open down to RM_FD_DEPTH, rm_tree below. */
static int rm_below(rmtree_t *t, int fd, dev_t dev, int depth, hero_error_t *err)
{
    int rc = 0;
    char *buf = hero_xmalloc(RM_DENTS);
    for (;;) {
        /* entries removed while reading are not seen again; the ones not read yet
         * still come */
        ssize_t n = getdents64(fd, buf, RM_DENTS);
        if (n <= 0) {
            if (n < 0 && errno != ENOENT) /* (another process removed it: empty) */
                rc = rm_fail(t, NULL, err);
            break;
        }
        for (ssize_t off = 0; rc == 0 && off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            int sub = -1;
            rc = rm_entry(t, fd, dev, d, &sub, err);
            if (rc <= 0)
                continue;
            rm_push(t, name);
            rc = depth + 1 < RM_FD_DEPTH ? rm_below(t, sub, dev, depth + 1, err)
                                         : rm_tree(t, sub, dev, err);
            rm_pop(t);
            if (rc == 0 && unlinkat(fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                rc = errno == EBUSY ? rm_mounted(t, name, err) : rm_fail(t, name, err);
        }
        if (rc < 0)
            break;
    }
    free(buf);
    close(fd);
    return rc;
}

/* The parent of path (without trailing slashes, not "/"): a heap string. */
static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return hero_xstrdup(".");
    if (slash == path)
        return hero_xstrdup("/");
    return hero_xstrndup(path, (size_t)(slash - path));
}

int hero_fs_rmtree(const char *given, hero_error_t *err)
{
    /* "dir/" and "dir/." would follow a symlink named dir: trailing slashes go, and a
     * last component "." or ".." is refused */
    char *path = hero_xstrdup(given);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = 0;
    const char *last = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int rc = 0;
    struct stat st;
    if (!*path || !strcmp(last, ".") || !strcmp(last, "..") || !strcmp(path, "/")) {
        rc = hero_error_set(err, EINVAL, "refusing to remove '%s'", given);
    } else if (lstat(path, &st) < 0) {
        if (errno != ENOENT)
            rc = hero_error_set(err, errno, "cannot remove '%s'", path);
    } else if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT)
            rc = errno == EBUSY ? hero_error_set(err, 0, "refusing to remove '%s': a file "
                                                         "system is mounted there", path)
                                : hero_error_set(err, errno, "cannot remove '%s'", path);
    } else {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat up;
        char *parent = parent_of(path);
        if (fd < 0) {
            if (errno != ENOENT)
                rc = hero_error_set(err, errno, "cannot remove '%s'", path);
        } else if (fstat(fd, &st) < 0) {
            rc = hero_error_set(err, errno, "cannot remove '%s'", path);
            close(fd);
        } else if (mount_root(fd) || (stat(parent, &up) == 0 && up.st_dev != st.st_dev)) {
            rc = hero_error_set(err, 0, "refusing to remove '%s': a file system is mounted "
                                        "there", path);
            close(fd);
        } else {
            rmtree_t t = {0};
            t.len = len;
            t.cap = len + 256;
            t.path = hero_xmalloc(t.cap);
            memcpy(t.path, path, len + 1);
            rc = rm_below(&t, fd, st.st_dev, 0, err);
            free(t.path);
            if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
                rc = hero_error_set(err, errno, "cannot remove '%s'", path);
        }
        free(parent);
    }
    free(path);
    return rc;
}

int hero_fs_rmtree_at(int dirfd, const char *name, hero_error_t *err)
{
    /* one name in dirfd: "." or ".." (or a path) would empty what holds it */
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        return hero_error_set(err, EINVAL, "refusing to remove '%s'", name);
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR)
        return errno == EBUSY ? hero_error_set(err, 0, "refusing to remove '%s': a file "
                                                        "system is mounted there", name)
                              : hero_error_set(err, errno, "cannot remove '%s'", name);
    struct stat st;
    if (fstat(dirfd, &st) < 0)
        return hero_error_set(err, errno, "cannot remove '%s'", name);
    /* (a directory that is a mount root is another device for rm_open_dir: EXDEV) */
    int fd = rm_open_dir(dirfd, st.st_dev, name);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return errno == EXDEV ? hero_error_set(err, 0, "refusing to remove '%s': a file "
                                                       "system is mounted there", name)
                              : hero_error_set(err, errno, "cannot remove '%s'", name);
    }
    rmtree_t t = {0};
    t.len = strlen(name);
    t.cap = t.len + 256;
    t.path = hero_xmalloc(t.cap);
    memcpy(t.path, name, t.len + 1);
    int rc = rm_below(&t, fd, st.st_dev, 0, err); /* (closes fd) */
    if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = errno == EBUSY ? rm_mounted(&t, NULL, err) : rm_fail(&t, NULL, err);
    free(t.path);
    return rc;
}
