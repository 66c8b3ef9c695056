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
 * Down to RM_FD_DEPTH levels each directory's fd stays open while its subdirectories
 * are emptied; deeper, a directory lets go of its fd while below, and comes back to it
 * by ".." (checked to be the same directory), so a tree of any depth needs a bounded
 * number of fds. The C stack holds little per level: the getdents buffers are on the
 * heap. */
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
    int depth;
} rmtree_t;

/* Directories that keep their fd open while below them. */
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
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != dev || mount_root(fd))) {
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

/* Empties directory fd (t->path; on device dev) and closes fd. With up, it opens its
 * parent (by "..") into *up first. */
static int rm_below(rmtree_t *t, int fd, dev_t dev, int *up, hero_error_t *err)
{
    int rc = 0;
    char *buf = hero_xmalloc(RM_DENTS);
    t->depth++;
    for (;;) {
        /* entries removed while reading are not seen again; the ones not read yet
         * still come (after fd was opened again: from the start, without those) */
        ssize_t n = getdents64(fd, buf, RM_DENTS);
        if (n <= 0) {
            if (n < 0)
                rc = rm_fail(t, NULL, err);
            break;
        }
        for (ssize_t off = 0; rc == 0 && off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
                continue;
            unsigned char type = d->d_type;
            if (type == DT_UNKNOWN) {
                struct stat es;
                if (fstatat(fd, name, &es, AT_SYMLINK_NOFOLLOW) < 0) {
                    if (errno != ENOENT)
                        rc = rm_fail(t, name, err);
                    continue;
                }
                type = S_ISDIR(es.st_mode) ? DT_DIR : DT_REG;
            }
            if (type != DT_DIR) {
                if (unlinkat(fd, name, 0) < 0 && errno != ENOENT)
                    rc = errno == EBUSY ? rm_mounted(t, name, err) : rm_fail(t, name, err);
                continue;
            }
            int sub = rm_open_dir(fd, dev, name);
            if (sub < 0) {
                if (errno == EXDEV) /* another mount: left alone, and so is the rest */
                    rc = rm_mounted(t, name, err);
                else if (errno != ENOENT)
                    rc = rm_fail(t, name, err);
                continue;
            }
            rm_push(t, name);
            if (t->depth < RM_FD_DEPTH) {
                rc = rm_below(t, sub, dev, NULL, err);
                rm_pop(t);
            } else {
                /* deep: let go of this directory while below it, and come back by "..",
                 * which must be this very directory (nothing renamed meanwhile) */
                struct stat me, back;
                int again = -1;
                if (fstat(fd, &me) < 0) {
                    rc = rm_fail(t, NULL, err);
                    close(sub);
                } else {
                    close(fd);
                    fd = -1;
                    rc = rm_below(t, sub, dev, &again, err);
                }
                rm_pop(t);
                if (again >= 0 && (fstat(again, &back) < 0 || back.st_dev != me.st_dev ||
                                   back.st_ino != me.st_ino)) {
                    close(again);
                    again = -1;
                    if (rc == 0)
                        rc = hero_error_set(err, 0, "cannot remove '%s': it moved while it "
                                                    "was being removed", t->path);
                }
                if (fd < 0)
                    fd = again;
                if (fd < 0) {
                    if (rc == 0)
                        rc = rm_fail(t, NULL, err);
                    break;
                }
            }
            if (rc == 0 && unlinkat(fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                rc = rm_fail(t, name, err);
        }
        if (rc < 0 || fd < 0)
            break;
    }
    if (up) {
        *up = -1;
        if (rc == 0 && fd >= 0) {
            *up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (*up < 0)
                rc = rm_fail(t, NULL, err);
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    t->depth--;
    return rc;
}

int hero_fs_rmtree(const char *path, hero_error_t *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : hero_error_set(err, errno, "cannot remove '%s'", path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT)
            return hero_error_set(err, errno, "cannot remove '%s'", path);
        return 0;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : hero_error_set(err, errno, "cannot remove '%s'", path);
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return hero_error_set(err, e, "cannot remove '%s'", path);
    }
    if (mount_root(fd)) {
        close(fd);
        return hero_error_set(err, 0, "refusing to remove '%s': a file system is mounted "
                                      "there", path);
    }
    rmtree_t t = {0};
    t.len = strlen(path);
    t.cap = t.len + 256;
    t.path = hero_xmalloc(t.cap);
    memcpy(t.path, path, t.len + 1);
    int rc = rm_below(&t, fd, st.st_dev, NULL, err);
    free(t.path);
    if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
        rc = hero_error_set(err, errno, "cannot remove '%s'", path);
    return rc;
}
