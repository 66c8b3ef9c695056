/* The image actions (pull, import, export, delete), the podman path, and garbage
 * collection of blobs and layers nothing uses any more. Blocking file work (applying
 * a tarball, writing one) runs on libuv's threadpool, never on the loop. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "actions/actions.h"
#include "heropods.h"
#include "image.h"
#include "layer.h"
#include "pods.h"
#include "pull.h"
#include "registry.h"
#include "runtime/config.h"
#include "runtime/fs.h"
#include "runtime/lazylib.h"
#include "runtime/proc.h"
#include "runtime/sched.h"

/* ---- shared pieces ---- */

static char *layers_dir(hero_store_t *st)
{
    return hero_xasprintf("%s/images/layers", hero_store_base_dir(st));
}

/* A minimal image config for a root filesystem that came without one (import, the
 * podman path fills in more): a shell, the usual PATH. */
static char *plain_config(const char *diff_id, json_t *process)
{
    hero_platform_t hp;
    hero_platform_host(&hp);
    json_t *cfg = process ? json_incref(process)
                          : json_pack("{s:[s], s:[s]}", "Env",
                                      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                      "/sbin:/bin",
                                      "Cmd", "/bin/sh");
    json_t *doc = json_pack("{s:s, s:s, s:o, s:{s:s, s:[s]}}", "architecture", hp.arch, "os",
                            hp.os, "config", cfg, "rootfs", "type", "layers", "diff_ids",
                            diff_id);
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    hero_platform_free(&hp);
    return s;
}

/* A single-layer image from a tarball: apply it (threadpool) into a temp dir under
 * images/layers, rename it to its diff_id, record the image. */
typedef void (*tar_image_cb)(int rc, hero_error_t *err, void *data);

typedef struct tar_image {
    uv_work_t work;
    uv_loop_t *loop;
    hero_store_t *st;
    hero_imglock_t *lock;       /* shared, until the image is recorded */
    char *tar, *name, *ref, *layers, *tmp, *final;
    json_t *process;            /* the image's "config" object, or NULL for the default */
    hero_layer_result_t res;
    int rc;
    hero_error_t err;
    tar_image_cb cb;
    void *data;
} tar_image_t;

static void tar_image_work(uv_work_t *w)
{
    tar_image_t *ti = w->data;
    ti->rc = -1;
    char *tmpl = hero_xasprintf("%s/.tmp-%ld-import-XXXXXX", ti->layers, (long)getpid());
    if (!mkdtemp(tmpl)) {
        hero_error_set(&ti->err, errno, "cannot make a directory in %s", ti->layers);
        free(tmpl);
        return;
    }
    ti->tmp = tmpl;
    if (hero_layer_apply(ti->tar, ti->tmp, NULL, &ti->res, &ti->err) < 0)
        return;
    int fd = open(ti->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) < 0) {
        hero_error_set(&ti->err, errno, "cannot sync %s", ti->tmp);
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    ti->final = hero_xasprintf("%s/%s", ti->layers, ti->res.diff_id + 7);
    if (rename(ti->tmp, ti->final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
        hero_error_set(&ti->err, errno, "cannot rename %s to %s", ti->tmp, ti->final);
        return;
    }
    if (access(ti->tmp, F_OK) != 0) {
        free(ti->tmp);
        ti->tmp = NULL;
    }
    ti->rc = 0;
}

static void tar_image_done(uv_work_t *w, int status)
{
    tar_image_t *ti = w->data;
    hero_error_t e = HERO_ERROR_INIT;
    if (ti->tmp) {
        hero_fs_rmtree(ti->tmp, &e);
        hero_error_clear(&e);
    }
    int rc = status < 0 ? -1 : ti->rc;
    if (rc == 0) {
        char *cfg = plain_config(ti->res.diff_id, ti->process);
        hero_image_rec_t r = {.name = ti->name, .ref = ti->ref, .digest = ti->res.diff_id,
                              .rootfs = ti->final, .config = cfg,
                              .size = (int64_t)ti->res.bytes_written, .created = (int64_t)time(NULL)};
        if (hero_store_image_put(ti->st, &r, &ti->err) < 0)
            rc = -1;
        free(cfg);
    }
    if (rc < 0 && !ti->err.msg)
        hero_error_set(&ti->err, ECANCELED, "cancelled");
    hero_imglock_release(ti->lock);
    ti->cb(rc, rc < 0 ? &ti->err : NULL, ti->data);
    hero_error_clear(&ti->err);
    json_decref(ti->process);
    free(ti->tar);
    free(ti->name);
    free(ti->ref);
    free(ti->layers);
    free(ti->tmp);
    free(ti->final);
    free(ti);
}

static void tar_image_locked(hero_imglock_t *lock, hero_error_t *err, void *data)
{
    tar_image_t *ti = data;
    if (!lock) {
        hero_error_copy(&ti->err, err);
        tar_image_done(&ti->work, -1);
        return;
    }
    ti->lock = lock;
    uv_queue_work(ti->loop, &ti->work, tar_image_work, tar_image_done);
}

static int tar_image(uv_loop_t *loop, hero_store_t *st, const char *tar, const char *name,
                     const char *ref, json_t *process, tar_image_cb cb, void *data,
                     hero_error_t *err)
{
    tar_image_t *ti = hero_xcalloc(1, sizeof(*ti));
    ti->st = st;
    ti->tar = hero_xstrdup(tar);
    ti->name = hero_xstrdup(name);
    ti->ref = hero_xstrdup(ref);
    ti->layers = layers_dir(st);
    ti->process = process ? json_incref(process) : NULL;
    ti->cb = cb;
    ti->data = data;
    ti->work.data = ti;
    if (hero_mkdir_p(ti->layers, 0700, err) < 0) {
        json_decref(ti->process);
        free(ti->tar);
        free(ti->name);
        free(ti->ref);
        free(ti->layers);
        free(ti);
        return -1;
    }
    hero_fs_remove_stale(ti->layers, ".tmp-", 600);
    ti->loop = loop;
    /* garbage collection must not take the layer dir before the record names it */
    hero_imglock_take(loop, st, false, tar_image_locked, ti);
    return 0;
}

/* ======================= image_pull ======================= */

static void pull_done(hero_image_t *img, hero_error_t *err, void *data)
{
    hero_task_t *t = data;
    if (!img) {
        hero_task_done(t, -1, err);
        return;
    }
    hero_image_free(img);
    hero_task_done(t, 0, NULL);
}

int hero_heropods_image_pull_start(hero_task_t *t, hero_error_t *err)
{
    hero_pods_instance_t *in;
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &in, err) < 0)
        return -1;
    char *name = hero_arg_str(t->action, "name");
    char *ref = hero_arg_str(t->action, "ref");
    char *platform = hero_arg_str(t->action, "platform");
    hero_image_source_t src = {.name = name, .ref = ref, .platform = platform,
                               .reset = hero_arg_bool(t->action, "reset"), .check = true,
                               .podman = in->use_podman, .quiet = hero_run_verbosity() < 0};
    t->cancel = hero_image_task_cancel;
    hero_image_get(t->loop, in->store, &src, pull_done, t);
    free(name);
    free(ref);
    free(platform);
    return 0;
}

/* ======================= image_import ======================= */

static void import_done(int rc, hero_error_t *err, void *data)
{
    hero_task_done(data, rc, err);
}

int hero_heropods_image_import_start(hero_task_t *t, hero_error_t *err)
{
    hero_pods_instance_t *in;
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &in, err) < 0)
        return -1;
    char *src = hero_arg_str(t->action, "source_path");
    char *name = hero_arg_str(t->action, "name");
    char *abs = realpath(src, NULL);
    int rc = 0;
    if (!abs) {
        rc = hero_error_set(err, errno, "cannot read '%s'", src);
    } else {
        char *ref = hero_xasprintf("import:%s", abs);
        hero_image_rec_t rec = {0};
        int g = hero_store_image_get(in->store, name, &rec, err);
        if (g < 0) {
            rc = -1;
        } else if (g == 0 && !hero_arg_bool(t->action, "reset")) {
            if (rec.ref && !strcmp(rec.ref, ref))
                hero_task_done(t, 0, NULL); /* imported from this file already */
            else
                rc = hero_error_set(err, EEXIST,
                                    "image '%s' is in the store already (from %s): reset:true "
                                    "replaces it",
                                    name, rec.ref ? rec.ref : "?");
        } else if (tar_image(t->loop, in->store, abs, name, ref, NULL, import_done, t, err) < 0) {
            rc = -1;
        } else {
            t->cancel = hero_image_task_cancel;
        }
        hero_image_rec_free(&rec);
        free(ref);
    }
    free(abs);
    free(src);
    free(name);
    return rc;
}

/* ======================= image_export ======================= */

typedef struct export_op {
    uv_work_t work;
    hero_task_t *t;
    hero_pods_instance_t *in;
    char *name;
    hero_imglock_t *lock;       /* shared: no image_delete takes the layers meanwhile */
    char **layers;              /* top first, NULL-terminated */
    char *dest, *tmp, *mnt;
    int level;
    int rc;
    hero_error_t err;
    uint64_t entries;
} export_op_t;

/* Adds the tree under root to the archive, names relative to it ("./etc/passwd").
 * Overlay whiteouts (char 0/0) are not files of the image: skipped. */
static int export_tree(export_op_t *op, struct archive *out, const char *root)
{
    struct archive *disk = hero_ar_read_disk_new();
    hero_ar_read_disk_set_symlink_physical(disk);
    /* (no user and group names: the host's would name the image's ids wrongly, and
     * tar takes names before numbers) */
    int rc = 0;
    if (hero_ar_read_disk_open(disk, root) != ARCHIVE_OK) {
        rc = hero_error_set(&op->err, 0, "cannot read %s: %s", root, hero_ar_error_string(disk));
        hero_ar_read_free(disk);
        return rc;
    }
    size_t rl = strlen(root);
    char buf[1 << 16];
    for (;;) {
        struct archive_entry *e = hero_ar_entry_new();
        int r = hero_ar_read_next_header2(disk, e);
        if (r == ARCHIVE_EOF) {
            hero_ar_entry_free(e);
            break;
        }
        if (r < ARCHIVE_WARN) {
            rc = hero_error_set(&op->err, 0, "cannot read %s: %s", root,
                                hero_ar_error_string(disk));
            hero_ar_entry_free(e);
            break;
        }
        hero_ar_read_disk_descend(disk);
        const char *src = hero_ar_entry_sourcepath(e);
        if (!src)
            src = hero_ar_entry_pathname(e);
        bool whiteout = hero_ar_entry_filetype(e) == AE_IFCHR && hero_ar_entry_rdev(e) == 0;
        if (whiteout) {
            hero_ar_entry_free(e);
            continue;
        }
        const char *rel = src + (strncmp(src, root, rl) == 0 ? rl : 0);
        while (*rel == '/')
            rel++;
        char *name = hero_xasprintf("./%s", rel);
        hero_ar_entry_copy_pathname(e, name);
        free(name);
        if (hero_ar_write_header(out, e) < ARCHIVE_WARN) {
            rc = hero_error_set(&op->err, 0, "cannot write %s: %s", op->tmp,
                                hero_ar_error_string(out));
            hero_ar_entry_free(e);
            break;
        }
        op->entries++;
        if (hero_ar_entry_filetype(e) == AE_IFREG && hero_ar_entry_size(e) > 0) {
            int fd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                rc = hero_error_set(&op->err, errno, "cannot read %s", src);
                hero_ar_entry_free(e);
                break;
            }
            ssize_t n;
            while ((n = read(fd, buf, sizeof(buf))) > 0)
                if (hero_ar_write_data(out, buf, (size_t)n) < 0) {
                    rc = hero_error_set(&op->err, 0, "cannot write %s: %s", op->tmp,
                                        hero_ar_error_string(out));
                    break;
                }
            if (n < 0 && rc == 0)
                rc = hero_error_set(&op->err, errno, "cannot read %s", src);
            close(fd);
        }
        hero_ar_entry_free(e);
        if (rc < 0)
            break;
    }
    hero_ar_read_close(disk);
    hero_ar_read_free(disk);
    return rc;
}

static void export_work(uv_work_t *w)
{
    export_op_t *op = w->data;
    op->rc = -1;
    const char *root = op->layers[0];
    if (op->layers[1]) {
        /* several layers: their merged view, read-only, under a temp name that the next
         * export cleans up if this process dies before it unmounts */
        char *lower = NULL;
        for (char **l = op->layers; *l; l++) {
            char *x = hero_xasprintf("%s%s%s", lower ? lower : "", lower ? ":" : "", *l);
            free(lower);
            lower = x;
        }
        char *opts = hero_xasprintf("lowerdir=%s", lower);
        free(lower);
        if (!mkdtemp(op->mnt) ||
            mount("overlay", op->mnt, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) {
            hero_error_set(&op->err, errno, "cannot mount the image's layers at %s", op->mnt);
            free(opts);
            return;
        }
        free(opts);
        root = op->mnt;
    }
    int fd = mkostemp(op->tmp, O_CLOEXEC);
    /* readable as a file written under the user's umask would be, not mkostemp's 0600 */
    if (fd >= 0 && fchmod(fd, 0666 & ~hero_fs_umask()) < 0) {
        close(fd);
        unlink(op->tmp);
        fd = -1;
    }
    struct archive *out = hero_ar_write_new();
    char level[32];
    snprintf(level, sizeof(level), "compression-level=%d", op->level);
    if (fd < 0) {
        hero_error_set(&op->err, errno, "cannot write beside %s", op->dest);
    } else if (hero_ar_write_add_filter_gzip(out) != ARCHIVE_OK ||
               hero_ar_write_set_filter_option(out, "gzip", "compression-level",
                                               level + strlen("compression-level=")) !=
                   ARCHIVE_OK ||
               hero_ar_write_set_format_pax_restricted(out) != ARCHIVE_OK ||
               hero_ar_write_open_fd(out, fd) != ARCHIVE_OK) {
        hero_error_set(&op->err, 0, "cannot write %s: %s", op->tmp, hero_ar_error_string(out));
    } else if (export_tree(op, out, root) == 0) {
        if (hero_ar_write_close(out) != ARCHIVE_OK)
            hero_error_set(&op->err, 0, "cannot write %s: %s", op->tmp,
                           hero_ar_error_string(out));
        else if (fsync(fd) < 0 || rename(op->tmp, op->dest) < 0)
            hero_error_set(&op->err, errno, "cannot write %s", op->dest);
        else
            op->rc = 0;
    }
    hero_ar_write_free(out);
    if (fd >= 0)
        close(fd);
    if (op->rc < 0 && fd >= 0)
        unlink(op->tmp);
    if (root == op->mnt) {
        umount2(op->mnt, MNT_DETACH);
        rmdir(op->mnt);
    }
}

static void export_done(uv_work_t *w, int status)
{
    export_op_t *op = w->data;
    int rc = status < 0 ? -1 : op->rc;
    if (rc < 0 && !op->err.msg)
        hero_error_set(&op->err, ECANCELED, "cancelled");
    hero_imglock_release(op->lock);
    hero_task_done(op->t, rc, rc < 0 ? &op->err : NULL);
    hero_error_clear(&op->err);
    free(op->name);
    hero_strv_free(op->layers);
    free(op->dest);
    free(op->tmp);
    free(op->mnt);
    free(op);
}

/* Unmounts and removes the mount points exports of dead processes left (a hero killed
 * while exporting): ".export-<pid>-XXXXXX". A live process's export is its own, however
 * old its layers (the mount root shows the top layer's times); a point without a pid
 * (made by an older hero) goes once it is an hour old. */
static void clean_export_mounts(const char *images)
{
    DIR *d = opendir(images);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, ".export-", 8))
            continue;
        long pid = hero_fs_name_pid(de->d_name + 8, '-');
        char *p = hero_xasprintf("%s/%s", images, de->d_name);
        struct stat a;
        bool stale = pid ? !hero_fs_pid_runs(pid)
                         : lstat(p, &a) == 0 && time(NULL) - a.st_ctime > 3600;
        if (stale) {
            umount2(p, MNT_DETACH | UMOUNT_NOFOLLOW);
            rmdir(p);
        }
        free(p);
    }
    closedir(d);
}

static void export_locked(hero_imglock_t *lock, hero_error_t *err, void *data)
{
    export_op_t *op = data;
    op->lock = lock;
    op->t->cancel = NULL;
    if (!lock) {
        hero_error_copy(&op->err, err);
        export_done(&op->work, -1);
        return;
    }
    hero_image_rec_t rec = {0};
    int g = hero_store_image_get(op->in->store, op->name, &rec, &op->err);
    if (g == 1)
        hero_error_set(&op->err, ENOENT, "image '%s' is not in the store", op->name);
    if (g != 0) {
        hero_image_rec_free(&rec);
        export_done(&op->work, -1);
        return;
    }
    op->layers = hero_image_layer_dirs(rec.rootfs);
    hero_image_rec_free(&rec);
    char *images = hero_xasprintf("%s/images", op->in->base_dir);
    clean_export_mounts(images);
    op->mnt = hero_xasprintf("%s/.export-%ld-XXXXXX", images, (long)getpid());
    free(images);
    uv_queue_work(op->t->loop, &op->work, export_work, export_done);
}

int hero_heropods_image_export_start(hero_task_t *t, hero_error_t *err)
{
    hero_pods_instance_t *in;
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &in, err) < 0)
        return -1;
    export_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->t = t;
    op->in = in;
    op->name = hero_arg_str(t->action, "name");
    op->dest = hero_arg_str(t->action, "dest_path");
    op->tmp = hero_xasprintf("%s.tmp-XXXXXX", op->dest);
    op->level = (int)hero_arg_int(t->action, "compress_level");
    op->work.data = op;
    /* (SIGINT while another hero's image_delete holds the lock: that stops the wait) */
    t->cancel = hero_image_task_cancel;
    hero_imglock_take(t->loop, in->store, false, export_locked, op);
    return 0;
}

/* ======================= image_delete and garbage collection ======================= */

/* Adds the digests a stored manifest names (config, layers) to `keep`. */
static void keep_manifest(const char *blobs, const char *digest, json_t *keep)
{
    if (!digest || strncmp(digest, "sha256:", 7))
        return;
    json_object_set_new(keep, digest + 7, json_true());
    char *path = hero_xasprintf("%s/%s", blobs, digest + 7);
    json_t *m = json_load_file(path, 0, NULL);
    free(path);
    const char *c = json_string_value(json_object_get(json_object_get(m, "config"), "digest"));
    if (c && !strncmp(c, "sha256:", 7))
        json_object_set_new(keep, c + 7, json_true());
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(m, "layers"), i, l)
    {
        const char *d = json_string_value(json_object_get(l, "digest"));
        if (d && !strncmp(d, "sha256:", 7))
            json_object_set_new(keep, d + 7, json_true());
    }
    json_decref(m);
}

/* Removes the entries of dir that are not in keep (temporary names are the pulls'). */
static int sweep(const char *dir, json_t *keep, hero_error_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : hero_error_set(err, errno, "cannot read %s", dir);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || json_object_get(keep, de->d_name) ||
            strstr(de->d_name, ".partial") || strstr(de->d_name, ".tmp-"))
            continue;
        char *p = hero_xasprintf("%s/%s", dir, de->d_name);
        rc = hero_fs_rmtree(p, err);
        free(p);
    }
    closedir(d);
    return rc;
}

/* Adds the layer dirs (under `layers`) of a rootfs to keep. */
static void keep_rootfs(const char *layers, const char *rootfs, json_t *keep)
{
    size_t ll = strlen(layers);
    char **dirs = hero_image_layer_dirs(rootfs);
    for (char **l = dirs; *l; l++)
        if (!strncmp(*l, layers, ll) && (*l)[ll] == '/')
            json_object_set_new(keep, *l + ll + 1, json_true());
    hero_strv_free(dirs);
}

int hero_image_gc(hero_store_t *st, hero_error_t *err)
{
    hero_image_rec_t *v = NULL;
    size_t n = 0;
    hero_container_rec_t *c = NULL;
    size_t nc = 0;
    if (hero_store_image_list(st, &v, &n, err) < 0)
        return -1;
    if (hero_store_container_list(st, NULL, &c, &nc, err) < 0) {
        hero_image_recs_free(v, n);
        return -1;
    }
    const char *base = hero_store_base_dir(st);
    char *blobs = hero_xasprintf("%s/images/blobs/sha256", base);
    char *layers = hero_xasprintf("%s/images/layers", base);
    json_t *keep_blobs = json_object(), *keep_layers = json_object();
    for (size_t i = 0; i < n; i++) {
        keep_manifest(blobs, v[i].digest, keep_blobs);
        keep_rootfs(layers, v[i].rootfs, keep_layers);
    }
    /* a container keeps the layers it was made from, whatever its image's name now
     * stands for (pulled again, imported again) */
    for (size_t i = 0; i < nc; i++)
        if (c[i].image_rootfs)
            keep_rootfs(layers, c[i].image_rootfs, keep_layers);
    hero_image_recs_free(v, n);
    hero_container_recs_free(c, nc);
    int rc = sweep(layers, keep_layers, err);
    if (rc == 0)
        rc = sweep(blobs, keep_blobs, err);
    json_decref(keep_blobs);
    json_decref(keep_layers);
    free(blobs);
    free(layers);
    return rc;
}

typedef struct delete_op {
    hero_task_t *t;
    hero_pods_instance_t *in;
    char *name;
} delete_op_t;

/* image_delete with the image lock held exclusive: no pull is between finding a layer
 * dir and recording its image, no container_new between finding its image and
 * recording the container, so the users counted are all there are. */
static void delete_locked(hero_imglock_t *lock, hero_error_t *err, void *data)
{
    delete_op_t *op = data;
    hero_store_t *st = op->in->store;
    hero_error_t e = HERO_ERROR_INIT;
    int64_t users = 0;
    int rc = lock ? hero_store_image_users(st, op->name, &users, &e) : hero_error_copy(&e, err);
    if (rc == 0 && users > 0) {
        /* name them, so the message says what to delete */
        hero_container_rec_t *v = NULL;
        size_t n = 0;
        char *who = hero_xstrdup("");
        if (hero_store_container_list(st, NULL, &v, &n, NULL) == 0)
            for (size_t i = 0; i < n; i++)
                if (v[i].image && !strcmp(v[i].image, op->name)) {
                    char *x = hero_xasprintf("%s%s'%s'", who, *who ? ", " : "", v[i].name);
                    free(who);
                    who = x;
                }
        hero_container_recs_free(v, n);
        rc = hero_error_set(&e, EBUSY, "image '%s' is used by container%s %s: delete %s first",
                            op->name, users == 1 ? "" : "s", who, users == 1 ? "it" : "them");
        free(who);
    }
    if (rc == 0)
        rc = hero_store_image_delete(st, op->name, &e);
    if (rc == 0)
        rc = hero_image_gc(st, &e);
    hero_imglock_release(lock);
    hero_task_done(op->t, rc, rc < 0 ? &e : NULL);
    hero_error_clear(&e);
    free(op->name);
    free(op);
}

int hero_heropods_image_delete_start(hero_task_t *t, hero_error_t *err)
{
    hero_pods_instance_t *in;
    if (hero_pods_instance_get(t->instance ? t->instance : "default", &in, err) < 0)
        return -1;
    delete_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->t = t;
    op->in = in;
    op->name = hero_arg_str(t->action, "name");
    /* waits for the pulls and container_news in flight, of any hero process */
    t->cancel = hero_image_task_cancel;
    hero_imglock_take(t->loop, in->store, true, delete_locked, op);
    return 0;
}

/* ======================= the podman path ======================= */

typedef struct podman_op {
    uv_loop_t *loop;
    hero_store_t *st;
    char *name, *ref, *pullref, *id, *cid, *tar;
    bool tls_verify;
    json_t *process;
    hero_image_cb cb;
    void *data;
    hero_error_t err;
    hero_proc_t *proc;          /* the podman command under way, or NULL */
    bool cancelled;             /* hero was interrupted: no next step but the cleanup */
    struct podman_op *next;     /* in podman_ops */
} podman_op_t;

/* The podman pulls under way in this process, for hero_image_podman_cancel_all. */
static podman_op_t *podman_ops;

static void podman_free(podman_op_t *op)
{
    for (podman_op_t **pp = &podman_ops; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    free(op->name);
    free(op->ref);
    free(op->pullref);
    free(op->id);
    free(op->cid);
    if (op->tar) {
        unlink(op->tar);
        free(op->tar);
    }
    json_decref(op->process);
    hero_error_clear(&op->err);
    free(op);
}

static void podman_end(podman_op_t *op, hero_error_t *err)
{
    if (err)
        op->cb(NULL, err, op->data);
    else
        hero_image_resolve_stored(op->st, op->name, op->cb, op->data);
    podman_free(op);
}

static int podman_run(podman_op_t *op, const char *const *argv, hero_proc_cb cb);
static void podman_removed(hero_proc_t *p, const hero_proc_result_t *r, void *data);

/* Ends the op, with op->err when it is set: the container podman made for the export
 * (if any) is removed first (podman_removed comes back here). */
static void podman_finish(podman_op_t *op)
{
    if (op->cid) {
        const char *argv[] = {"podman", "rm", "--force", op->cid, NULL};
        podman_run(op, argv, podman_removed);
        return;
    }
    if (!op->err.msg) {
        podman_end(op, NULL);
        return;
    }
    hero_error_t e = op->err;
    op->err = (hero_error_t)HERO_ERROR_INIT;
    podman_end(op, &e);
    hero_error_clear(&e);
}

/* podman's message: the last line of its stderr */
static void podman_fail(podman_op_t *op, const char *what, const hero_proc_result_t *r)
{
    const char *s = r->err_len ? r->err : r->out;
    size_t n = r->err_len ? r->err_len : r->out_len;
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        n--;
    size_t b = n;
    while (b && s[b - 1] != '\n')
        b--;
    if (op->cancelled)
        hero_error_set(&op->err, ECANCELED, "podman %s: interrupted", what);
    else if (r->timed_out)
        hero_error_set(&op->err, ETIMEDOUT, "podman %s: timed out", what);
    else
        hero_error_set(&op->err, EIO, "podman %s: %.*s", what, (int)(n - b), s + b);
    podman_finish(op);
}

/* The step `what` ended (its callback runs): false when the op ended instead, because
 * the step failed or hero was interrupted meanwhile. */
static bool podman_step_ok(podman_op_t *op, const char *what, const hero_proc_result_t *r)
{
    op->proc = NULL;
    if (r->exit_status || r->term_signal || op->cancelled) {
        podman_fail(op, what, r);
        return false;
    }
    return true;
}

void hero_image_podman_cancel_all(void)
{
    for (podman_op_t *op = podman_ops; op; op = op->next) {
        op->cancelled = true;
        if (op->proc)
            hero_proc_cancel(op->proc); /* SIGTERM to its session; its callback ends it */
    }
}

static int podman_run(podman_op_t *op, const char *const *argv, hero_proc_cb cb)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_proc_opts_t po = {.argv = argv, .capture_cap = 4 << 20, .timeout_ms = 30 * 60 * 1000};
    if (hero_proc_spawn(op->loop, &po, cb, op, &op->proc, &e) < 0) {
        hero_error_wrap(&e, "the podman path (use_podman:true) needs podman");
        podman_end(op, &e);
        hero_error_clear(&e);
        return -1;
    }
    return 0;
}

static void podman_imported(int rc, hero_error_t *err, void *data)
{
    podman_op_t *op = data;
    if (rc < 0)
        hero_error_copy(&op->err, err);
    podman_finish(op);
}

static void podman_removed(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    (void)r;
    podman_op_t *op = data;
    op->proc = NULL;
    free(op->cid); /* (gone, or podman could not remove it: nothing more to do) */
    op->cid = NULL;
    podman_finish(op);
}

static void podman_exported(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    podman_op_t *op = data;
    if (!podman_step_ok(op, "export", r))
        return;
    hero_error_t e = HERO_ERROR_INIT;
    char *ref = hero_xasprintf("podman:%s", op->ref);
    if (tar_image(op->loop, op->st, op->tar, op->name, ref, op->process, podman_imported, op,
                  &e) < 0) {
        /* through podman_finish: the container podman made goes too */
        hero_error_copy(&op->err, &e);
        hero_error_clear(&e);
        podman_finish(op);
    }
    free(ref);
}

static void podman_created(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    podman_op_t *op = data;
    if (!(r->exit_status || r->term_signal) && r->out_len) /* to remove, even if interrupted */
        op->cid = hero_xstrndup(r->out, strcspn(r->out, "\n"));
    if (!podman_step_ok(op, "create", r))
        return;
    char *dir = hero_xasprintf("%s/images", hero_store_base_dir(op->st));
    /* the exports of dead hero processes (".tmp-podman-<pid>-<cid>.tar", as large as the
     * image): every one of them carries its pid, so no age is needed */
    hero_fs_remove_stale(dir, ".tmp-podman-", 0);
    op->tar = hero_xasprintf("%s/.tmp-podman-%d-%s.tar", dir, (int)getpid(), op->cid);
    free(dir);
    const char *argv[] = {"podman", "export", "--output", op->tar, op->cid, NULL};
    podman_run(op, argv, podman_exported);
}

static void podman_inspected(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    podman_op_t *op = data;
    if (!podman_step_ok(op, "image inspect", r))
        return;
    /* podman's Config has the OCI config's fields (Entrypoint, Cmd, Env, ...) */
    json_t *j = json_loads(r->out, 0, NULL);
    json_t *c = json_object_get(json_array_get(j, 0), "Config");
    if (json_is_object(c))
        op->process = json_incref(c);
    json_decref(j);
    const char *argv[] = {"podman", "create", op->id, NULL};
    podman_run(op, argv, podman_created);
}

static void podman_pulled(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    podman_op_t *op = data;
    if (!podman_step_ok(op, "pull", r))
        return;
    /* the image id is the last line podman pull prints */
    size_t n = r->out_len;
    while (n && r->out[n - 1] == '\n')
        n--;
    size_t b = n;
    while (b && r->out[b - 1] != '\n')
        b--;
    op->id = hero_xstrndup(r->out + b, n - b);
    const char *argv[] = {"podman", "image", "inspect", op->id, NULL};
    podman_run(op, argv, podman_inspected);
}

void hero_image_podman(uv_loop_t *loop, hero_store_t *st, const char *name, const char *ref,
                       hero_image_cb cb, void *data)
{
    podman_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->loop = loop;
    op->st = st;
    op->name = hero_xstrdup(name);
    op->ref = hero_xstrdup(ref);
    op->cb = cb;
    op->data = data;
    op->next = podman_ops;
    podman_ops = op;
    /* hero's mirror rules apply to podman too: it is given the mirror's reference */
    hero_ref_t pr;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_ref_parse(ref, &pr, &e) < 0) {
        podman_end(op, &e);
        hero_error_clear(&e);
        return;
    }
    const hero_config_registry_t *m = hero_config_mirror_for(hero_config_current(), pr.canonical);
    op->tls_verify = true;
    if (m) {
        op->pullref = hero_xasprintf("%s%s", m->location, pr.canonical + strlen(m->prefix));
        op->tls_verify = !m->insecure;
    } else {
        op->pullref = hero_xstrdup(pr.canonical);
    }
    /* as hero's own client does: a registry on a loopback address speaks plain http */
    const char *host = op->pullref;
    if (!strncmp(host, "localhost", 9) || !strncmp(host, "127.", 4) || !strncmp(host, "[::1]", 5))
        op->tls_verify = false;
    hero_ref_free(&pr);
    char *images = hero_xasprintf("%s/images", hero_store_base_dir(st));
    int mk = hero_mkdir_p(images, 0700, &e);
    free(images);
    if (mk < 0) {
        podman_end(op, &e);
        hero_error_clear(&e);
        return;
    }
    const char *argv[] = {"podman", "pull", "--quiet",
                          op->tls_verify ? "--tls-verify=true" : "--tls-verify=false",
                          op->pullref, NULL};
    podman_run(op, argv, podman_pulled);
}
