/* Pulling images from registries into the store (pull.c). Private to
 * actions/heropods/. */
#ifndef HERO_PULL_H
#define HERO_PULL_H

#include <stdbool.h>
#include <uv.h>

#include "image.h"
#include "runtime/store.h"

typedef struct hero_pull_opts {
    const char *name;      /* the store name */
    const char *ref;       /* the image reference, as written */
    const char *platform;  /* "os/arch[/variant]"; NULL: the host's */
    bool reset;            /* pull again, even when the image is stored */
    bool check;            /* a stored image of this reference: ask the registry whether
                              the reference moved (one HEAD) and pull if it did */
    bool quiet;            /* no progress on stderr */
} hero_pull_opts_t;

/* Pulls (or finds stored) the image and calls cb with it, as hero_image_resolve does.
 * Two pulls of one name in this process share the work. */
void hero_image_pull(uv_loop_t *loop, hero_store_t *st, const hero_pull_opts_t *o,
                     hero_image_cb cb, void *data);

/* Closes the registry client (when the last pull of the process has ended: an idle
 * client would keep the loop alive; the next pull makes a new one). */
void hero_pull_shutdown(void);

/* hero was interrupted: every pull under way in this process stops (its callback gets
 * ECANCELED, "interrupted"), and none starts any more. */
void hero_pull_cancel_all(void);

#endif
