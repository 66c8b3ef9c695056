/* The image module's interface, as containers use it: resolve an image name to a
 * root filesystem and its OCI image config. This build knows the `embedded` image
 * (built from the host's static busybox on first use, kept in the store) and images
 * already in the store; registry pulls come with the images module. */
#ifndef HERO_IMAGE_H
#define HERO_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "runtime/error.h"
#include "runtime/store.h"

typedef struct hero_image {
    char *name;       /* the store name */
    char *rootfs;     /* absolute path of its root filesystem: read-only, the overlay's lower dir */
    json_t *config;   /* the image config's "config" object (Entrypoint, Cmd, Env, WorkingDir,
                         User, StopSignal); owned by the image */
    char *digest;     /* content digest, or NULL (the embedded image: a hash of its inputs) */
} hero_image_t;

void hero_image_free(hero_image_t *img);

/* The image container `ctr` was made from, as its record keeps it (rootfs, config
 * JSON), named `name`, in *out; *out NULL (and 0) when the record keeps none (made
 * before the store did) or the image is the embedded one (made again in place): the
 * name is then resolved. A directory of the rootfs that is gone is an error saying
 * how to make the container again. */
int hero_image_pinned(const char *ctr, const char *name, const char *rootfs, const char *config,
                      hero_image_t **out, hero_error_t *err);

/* A container's image config (its "config" object: Entrypoint, Cmd, StopSignal, ...):
 * `pinned` (the container record's) when set, else the one stored for `name`; a new
 * reference, or NULL. */
json_t *hero_image_config_of(hero_store_t *st, const char *name, const char *pinned);

/* Called once with the image (the callee owns it) or an error. */
typedef void (*hero_image_cb)(hero_image_t *img, hero_error_t *err, void *data);

/* Resolves `name` for a container: "embedded" (built into <base>/images/embedded on
 * first use, then reused), or a name in the store. Any other name fails with a
 * message that says images are not pulled in this build. The callback may run
 * before this returns. */
void hero_image_resolve(uv_loop_t *loop, hero_store_t *st, const char *name, hero_image_cb cb,
                        void *data);

/* Where an image comes from: a store name, and the reference to pull it from when it
 * is not stored (NULL: it must be). */
typedef struct hero_image_source {
    const char *name;       /* the store name ("embedded", "alpine_3_20", a reference) */
    const char *ref;        /* the image reference, or NULL */
    const char *platform;   /* NULL: the host's */
    bool reset;             /* fetch again even when stored */
    bool check;             /* stored: ask the registry whether the reference moved */
    bool podman;            /* through podman (configure use_podman:true) */
    bool quiet;             /* no pull progress */
} hero_image_source_t;

/* container_new's image forms: "embedded"; the reference's names (alpine_3_20,
 * ubuntu_24_04, ubuntu_25_04: docker.io/library/alpine:3.20 ...); "custom" with
 * custom_image_name (the store name) and docker_url (its reference); a reference
 * (anything with '/', ':', '@' or '.'), stored under itself; else a store name.
 * out's strings point into the arguments. */
void hero_image_source_of(const char *image, const char *custom_name, const char *docker_url,
                          hero_image_source_t *out);

/* The image from its source: stored, or pulled (by hero's client or podman). */
void hero_image_get(uv_loop_t *loop, hero_store_t *st, const hero_image_source_t *src,
                    hero_image_cb cb, void *data);

/* The cancel (hero_task_t's) of the actions that wait for images: hero was
 * interrupted, so the image work of this process that waits on the network, on podman
 * or on another hero (pulls by hero's client or podman, waits for the image lock)
 * stops, all of it, its callbacks getting ECANCELED; an import (a local file) runs to
 * its end. The task itself is not needed. */
struct hero_task;
void hero_image_task_cancel(struct hero_task *t);

/* A stored image only. */
void hero_image_resolve_stored(hero_store_t *st, const char *name, hero_image_cb cb,
                               void *data);

/* The directories of an image root as stored (one, or a stack "top:...:bottom"), as a
 * NULL-terminated array (hero_strv_free). */
char **hero_image_layer_dirs(const char *rootfs);

/* Pulls through podman (pull, create, export) into a single-layer image (imgops.c). */
void hero_image_podman(uv_loop_t *loop, hero_store_t *st, const char *name, const char *ref,
                       hero_image_cb cb, void *data);
/* hero was interrupted: the podman command of each such pull is stopped (SIGTERM to
 * its session, SIGKILL after 2 s), the container made for an export removed, and the
 * pull fails with "interrupted" (one whose image is being recorded completes). */
void hero_image_podman_cancel_all(void);

/* Removes blobs and layer dirs that no stored image and no container uses (imgops.c).
 * The caller holds the image lock exclusive. */
int hero_image_gc(hero_store_t *st, hero_error_t *err);

/* The store's image lock (imglock.c): pulls and imports hold it shared until their
 * image is recorded, container_new until its record names its image, image_export
 * while it reads the layers, image_delete exclusive. The callback gets the lock once it is
 * taken (it may run before hero_imglock_take returns), or NULL and an error. */
typedef struct hero_imglock hero_imglock_t;
typedef void (*hero_imglock_cb)(hero_imglock_t *lock, hero_error_t *err, void *data);
void hero_imglock_take(uv_loop_t *loop, hero_store_t *st, bool exclusive, hero_imglock_cb cb,
                       void *data);
/* Lets go of it (NULL: nothing). */
void hero_imglock_release(hero_imglock_t *lock);
/* Ends every wait for the lock in this process: their callbacks get ECANCELED. */
void hero_imglock_cancel_waits(void);

/* The static busybox the embedded image is built from: $HERO_BUSYBOX, else
 * /bin/busybox. */
const char *hero_image_busybox_path(void);

#endif
