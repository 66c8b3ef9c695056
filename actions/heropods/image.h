/* The image module's interface, as containers use it: resolve an image name to a
 * root filesystem and its OCI image config. This build knows the `embedded` image
 * (built from the host's static busybox on first use, kept in the store) and images
 * already in the store; registry pulls come with the images module. */
#ifndef HERO_IMAGE_H
#define HERO_IMAGE_H

#include <jansson.h>
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

/* Called once with the image (the callee owns it) or an error. */
typedef void (*hero_image_cb)(hero_image_t *img, hero_error_t *err, void *data);

/* Resolves `name` for a container: "embedded" (built into <base>/images/embedded on
 * first use, then reused), or a name in the store. Any other name fails with a
 * message that says images are not pulled in this build. The callback may run
 * before this returns. */
void hero_image_resolve(uv_loop_t *loop, hero_store_t *st, const char *name, hero_image_cb cb,
                        void *data);

/* The static busybox the embedded image is built from: $HERO_BUSYBOX, else
 * /bin/busybox. */
const char *hero_image_busybox_path(void);

#endif
