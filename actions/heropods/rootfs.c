/* A container's directory on the host: its own writable root (an overlay over the
 * image's root, which is never written), hero-init's status dir, and the /etc files
 * it gets of its own. Each object is recorded in the store before it is made. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "pods.h"
#include "runtime/fs.h"

int hero_pods_ctr_dirs(const hero_pods_instance_t *in, int64_t id, hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    int rc = hero_store_hostobj_add(in->store, id, HERO_OBJ_DIR, dir, err);
    static const char *const subs[] = {"upper", "work", "rootfs", "run", "etc"};
    for (size_t i = 0; rc == 0 && i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *p = hero_xasprintf("%s/%s", dir, subs[i]);
        rc = hero_mkdir_p(p, 0700, err);
        free(p);
    }
    /* the overlay's upper dir becomes the container's "/": not 0700 */
    if (rc == 0) {
        char *p = hero_xasprintf("%s/upper", dir);
        if (chmod(p, 0755) < 0)
            rc = hero_error_set(err, errno, "cannot chmod '%s'", p);
        free(p);
    }
    free(dir);
    return rc;
}

static bool is_mounted(const char *path)
{
    /* a mount point has a different device than its parent */
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
    if (is_mounted(target) && umount2(target, MNT_DETACH) < 0 && errno != EINVAL &&
        errno != ENOENT)
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
static int write_file(const char *path, const char *text, hero_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot write '%s'", path);
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return hero_error_set(err, e, "cannot write '%s'", path);
        }
        off += (size_t)w;
    }
    if (close(fd) < 0)
        return hero_error_set(err, errno, "cannot write '%s'", path);
    return 0;
}

int hero_pods_write_etc(const hero_pods_instance_t *in, int64_t id, const char *hostname,
                        hero_error_t *err)
{
    char *dir = hero_pods_ctr_dir(in, id);
    char *p = hero_xasprintf("%s/etc/hostname", dir);
    char *text = hero_xasprintf("%s\n", hostname);
    int rc = write_file(p, text, err);
    free(p);
    free(text);
    if (rc == 0) {
        p = hero_xasprintf("%s/etc/hosts", dir);
        text = hero_xasprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                              "127.0.1.1\t%s\n",
                              hostname);
        rc = write_file(p, text, err);
        free(p);
        free(text);
    }
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
        rc = write_file(p, text, err);
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

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int hero_pods_rmtree(const char *path, hero_error_t *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : hero_error_set(err, errno, "cannot remove '%s'", path);
    /* FTW_MOUNT: never cross into a mount that is still there (a container's
     * root must be unmounted first, or its image would be emptied) */
    if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
        return hero_error_set(err, errno, "cannot remove '%s'", path);
    return 0;
}
