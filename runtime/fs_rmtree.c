/* hero_fs_rmtree (runtime/fs.h): rm -rf for hero's own trees.
 *
 * By directory fds and names (unlinkat), with the entry types getdents gives: no
 * stat of every entry and no full path to look up again for each, as nftw did.
 * Another mount met on the way (a bind mount of the same file system too: openat2's
 * RESOLVE_NO_XDEV says EXDEV for it) is never entered or removed: the removal stops
 * there and fails, as a container's root that is still mounted must make it (its
 * image would be emptied otherwise). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
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

struct rm_open_how {
    uint64_t flags, mode, resolve;
};

typedef struct rmtree {
    char *path;        /* of the directory being emptied, for messages and nftw */
    size_t len, cap;
    int depth;
} rmtree_t;

/* Deeper than this, the rest of a branch goes to nftw, which needs no fd per level.
 * nftw's FTW_MOUNT tells mounts by st_dev only, so a bind mount of the same file
 * system that deep would be removed through; hero's trees have their mounts near the
 * top (a container's rootfs is one level down), where openat2 sees every mount. */
enum { RM_FD_DEPTH = 48 };

/* the kernel has none (before 5.6): openat and fstat (any thread may find it out) */
static atomic_bool no_openat2;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
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
 * EXDEV when it is another mount. */
static int rm_open_dir(int dfd, dev_t dev, const char *name)
{
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    if (!atomic_load(&no_openat2)) {
        struct rm_open_how how = {.flags = (uint64_t)flags,
                                  .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS};
        int fd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        atomic_store(&no_openat2, true);
    }
    int fd = openat(dfd, name, flags);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != dev)) {
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

/* Empties directory fd (t->path; on device dev) and closes fd. */
static int rm_below(rmtree_t *t, int fd, dev_t dev, hero_error_t *err)
{
    int rc = 0;
    char buf[4096];
    t->depth++;
    for (;;) {
        /* entries removed while reading are not seen again; the ones not read yet
         * still come */
        ssize_t n = getdents64(fd, buf, sizeof(buf));
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
                    rc = rm_fail(t, name, err);
                continue;
            }
            if (t->depth >= RM_FD_DEPTH) {
                rm_push(t, name);
                if (nftw(t->path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                    rc = rm_fail(t, NULL, err);
                rm_pop(t);
                continue;
            }
            int sub = rm_open_dir(fd, dev, name);
            if (sub < 0) {
                if (errno == EXDEV) /* another mount: left alone, and so is the rest */
                    rc = hero_error_set(err, 0, "refusing to remove '%s/%s': a file system "
                                                "is mounted there", t->path, name);
                else if (errno != ENOENT)
                    rc = rm_fail(t, name, err);
                continue;
            }
            rm_push(t, name);
            rc = rm_below(t, sub, dev, err);
            rm_pop(t);
            if (rc == 0 && unlinkat(fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                rc = rm_fail(t, name, err);
        }
        if (rc < 0)
            break;
    }
    close(fd);
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
    rmtree_t t = {0};
    t.len = strlen(path);
    t.cap = t.len + 256;
    t.path = hero_xmalloc(t.cap);
    memcpy(t.path, path, t.len + 1);
    int rc = rm_below(&t, fd, st.st_dev, err);
    free(t.path);
    if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
        rc = hero_error_set(err, errno, "cannot remove '%s'", path);
    return rc;
}
