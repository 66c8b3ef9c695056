/* From a container_new action to the container's resolved definition. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "actions/actions.h"
#include "oci.h"
#include "spec.h"

static char **list_or_null(const hs_action_t *a, const char *key)
{
    if (!hero_arg(a, key))
        return NULL;
    return hero_arg_list(a, key);
}

/* A relative host path of a mount is relative to the playbook's own directory, as
 * compose reads it; the path must exist (bind mounts do not create it). */
static int mount_of(const hs_action_t *a, const char *item, hero_mount_spec_t *m,
                    hero_error_t *err)
{
    const char *c1 = strchr(item, ':');
    const char *c2 = strchr(c1 + 1, ':');
    char *host = hero_xstrndup(item, (size_t)(c1 - item));
    m->dst = c2 ? hero_xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)) : hero_xstrdup(c1 + 1);
    m->ro = c2 && strcmp(c2 + 1, "ro") == 0;
    if (host[0] != '/') {
        const char *slash = strrchr(a->src->path, '/');
        char *joined = slash ? hero_xasprintf("%.*s/%s", (int)(slash - a->src->path),
                                              a->src->path, host)
                             : hero_xstrdup(host);
        free(host);
        host = joined;
    }
    char real[PATH_MAX];
    if (!realpath(host, real)) {
        int e = errno;
        hero_error_set(err, 0, "mount source '%s' %s", host,
                       e == ENOENT ? "does not exist" : strerror(e));
        free(host);
        return -1;
    }
    free(host);
    m->src = hero_xstrdup(real);
    return 0;
}

int hero_pods_spec_from_action(const hs_action_t *a, hero_ctr_spec_t *s, hero_error_t *err)
{
    memset(s, 0, sizeof(*s));
    s->name = hero_arg_str(a, "name");
    char *image = hero_arg_str(a, "image");
    if (image && strcmp(image, "custom") == 0) {
        free(image);
        image = hero_arg_str(a, "custom_image_name");
    }
    s->image = image;
    s->hostname = hero_arg_str(a, "hostname");
    s->env = list_or_null(a, "env");
    s->entrypoint = list_or_null(a, "entrypoint");
    s->cmd = list_or_null(a, "cmd");
    s->workdir = hero_arg_str(a, "workdir");
    s->user = hero_arg_str(a, "user");
    s->cap_add = list_or_null(a, "cap_add");
    s->cap_drop = list_or_null(a, "cap_drop");
    s->ports = list_or_null(a, "ports");
    if (hero_arg(a, "memory"))
        s->memory = hero_arg_size(a, "memory");
    if (hero_arg(a, "cpus"))
        s->cpus = hero_arg_float(a, "cpus");
    if (hero_arg(a, "pids_limit"))
        s->pids_limit = hero_arg_int(a, "pids_limit");
    char **mounts = list_or_null(a, "mounts");
    for (char **m = mounts; m && *m; m++) {
        s->mounts = hero_xrealloc(s->mounts, (s->nmounts + 1) * sizeof(*s->mounts));
        memset(&s->mounts[s->nmounts], 0, sizeof(*s->mounts));
        if (mount_of(a, *m, &s->mounts[s->nmounts], err) < 0) {
            hero_strv_free(mounts);
            hero_ctr_spec_free(s);
            return -1;
        }
        s->nmounts++;
    }
    hero_strv_free(mounts);
    return 0;
}
