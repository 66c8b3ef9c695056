/* A container's directory on the host: its own writable root (an overlay over the
 * image's root, which is never written), hero-init's status dir, and the /etc files
 * it gets of its own. Each object is recorded in the store before it is made. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pods.h"
#include "runtime/fs.h"

int hero_pods_ctr_dirs(const hero_pods_instance_t *in, int64_t id, hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    int rc = hero_store_hostobj_add(in->store, id, HERO_OBJ_DIR, dir, err);
    /* <base>/containers exists after the first container: mkdir -p (a mkdir for each
     * component of the path) only when it does not */
    if (rc == 0 && mkdir(dir, 0700) < 0 && errno != EEXIST)
        rc = errno == ENOENT ? hero_mkdir_p(dir, 0700, err)
                             : hero_error_set(err, errno, "cannot create '%s'", dir);
    /* the overlay's upper dir becomes the container's "/": not 0700 */
    static const struct {
        const char *name;
        mode_t mode;
    } subs[] = {{"upper", 0755}, {"work", 0700}, {"rootfs", 0700}, {"run", 0700}, {"etc", 0700}};
    for (size_t i = 0; rc == 0 && i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *p = hero_xasprintf("%s/%s", dir, subs[i].name);
        if (mkdir(p, subs[i].mode) < 0 && errno != EEXIST)
            rc = hero_error_set(err, errno, "cannot create '%s'", p);
        /* explicit, as the umask may have taken bits away */
        else if (subs[i].mode != 0700 && chmod(p, subs[i].mode) < 0)
            rc = hero_error_set(err, errno, "cannot chmod '%s'", p);
        free(p);
    }
    free(dir);
    return rc;
}

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

static bool is_mounted(const char *path)
{
    /* one statx says it (Linux 5.8 and later) */
    struct statx sx;
    if (statx(AT_FDCWD, path, AT_NO_AUTOMOUNT, 0, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    /* else: a mount point has a different device than its parent */
    struct stat a, b;
    char *parent = hero_xasprintf("%s/..", path);
    bool m = stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
    free(parent);
    return m;
}

int hero_pods_mount_root(const hero_pods_instance_t *in, int64_t id, const char *image_rootfs,
                         hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    char *target = hero_xasprintf("%s/rootfs", dir);
    int rc = 0;
    if (!is_mounted(target)) {
        rc = hero_store_hostobj_add(in->store, id, HERO_OBJ_MOUNT, target, err);
        if (rc == 0) {
            char *opts = hero_xasprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work",
                                        image_rootfs, dir, dir);
            if (mount("overlay", target, "overlay", MS_NODEV, opts) < 0)
                rc = hero_error_set(err, errno, "cannot mount the container's root (overlay on %s)",
                                    target);
            free(opts);
        }
    }
    free(target);
    free(dir);
    return rc;
}

int hero_pods_umount_root(const hero_pods_instance_t *in, int64_t id, hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    char *target = hero_xasprintf("%s/rootfs", dir);
    int rc = 0;
    /* no check first: umount2 itself says EINVAL when nothing is mounted there, and
     * ENOENT when the directory is gone */
    if (umount2(target, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        rc = hero_error_set(err, errno, "cannot unmount '%s'", target);
    if (rc == 0)
        rc = hero_store_hostobj_del(in->store, id, HERO_OBJ_MOUNT, target, err);
    free(target);
    free(dir);
    return rc;
}

/* Written in place, not through a temporary file and rename: the container sees
 * the file through a bind mount, which keeps the inode it was given, so a renamed
 * new file would never reach a running container. */

int hero_pods_write_etc(const hero_pods_instance_t *in, int64_t id, const char *hostname,
                        hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    char *p = hero_xasprintf("%s/etc/hostname", dir);
    char *text = hero_xasprintf("%s\n", hostname);
    int rc = hero_fs_write_file(p, text, strlen(text), err);
    free(p);
    free(text);
    if (rc == 0) {
        size_t cap = 64;
        text = hero_xmalloc(cap);
        text[0] = 0;
        for (char **d = in->dns_servers; d && *d; d++) {
            char *line = hero_xasprintf("%snameserver %s\n", text, *d);
            free(text);
            text = line;
        }
        p = hero_xasprintf("%s/etc/resolv.conf", dir);
        rc = hero_fs_write_file(p, text, strlen(text), err);
        free(p);
        free(text);
    }
    free(dir);
    return rc;
}

int hero_pods_clear_run(const hero_pods_instance_t *in, int64_t id, hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    static const char *const files[] = {"status", "status.tmp", "started", "started.tmp"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && rc == 0; i++) {
        char *p = hero_xasprintf("%s/run/%s", dir, files[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            rc = hero_error_set(err, errno, "cannot remove '%s'", p);
        free(p);
    }
    free(dir);
    return rc;
}

/* ---- removing a tree ----
 *
 * By directory fds and names (unlinkat), with the entry types getdents gives: no
 * stat of every entry and no full path to look up again for each, as nftw did.
 * Another mount met on the way is never entered or removed (openat2's
 * RESOLVE_NO_XDEV says EXDEV for it): the directory holding it then cannot be
 * removed, and the whole removal fails, as a container's root that is still
 * mounted must make it (its image would be emptied otherwise). */

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

/* Deeper than this, the rest of a branch goes to nftw, which needs no fd per level. */
enum { RM_FD_DEPTH = 48 };

static bool no_openat2; /* the kernel has none (before 5.6): openat and fstat */

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
    if (!no_openat2) {
        struct rm_open_how how = {.flags = (uint64_t)flags,
                                  .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS};
        int fd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        no_openat2 = true;
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
                /* EXDEV: another mount, left alone (so this directory stays) */
                if (errno != ENOENT && errno != EXDEV)
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

int hero_pods_rmtree(const char *path, hero_error_t *err)
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
