/* A container's directory on the host: its own writable root (an overlay over the
 * image's root, which is never written), hero-init's status dir, and the /etc files
 * it gets of its own. Each object is recorded in the store before it is made. */
#include <errno.h>
#include <fcntl.h>
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

