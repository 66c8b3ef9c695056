/* Where a container's pieces live on the host. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pods.h"

char *hero_pods_ctr_dir(const hero_pods_instance_t *in, int64_t id)
{
    return hero_xasprintf("%s/containers/%lld", in->base_dir, (long long)id);
}

char *hero_pods_crun_root(const hero_pods_instance_t *in)
{
    return hero_xasprintf("%s/crun", in->base_dir);
}

char *hero_pods_crun_id(int64_t id)
{
    return hero_xasprintf("hero-%lld", (long long)id);
}

static char *init_path_find(hero_error_t *err)
{
    const char *env = getenv("HERO_INIT");
    if (env && *env)
        return access(env, X_OK) == 0
                   ? hero_xstrdup(env)
                   : (hero_error_set(err, 0, "HERO_INIT=%s is not an executable file", env), NULL);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            /* the build tree keeps it beside hero; an install, in libexec */
            char *p = hero_xasprintf("%s/hero-init", self);
            if (access(p, X_OK) == 0)
                return p;
            free(p);
            p = hero_xasprintf("%s/../libexec/hero/hero-init", self);
            if (access(p, X_OK) == 0)
                return p;
            free(p);
        }
    }
    hero_error_set(err, 0,
                   "hero-init not found beside hero or in ../libexec/hero (make builds it; "
                   "HERO_INIT names another)");
    return NULL;
}

char *hero_pods_init_path(hero_error_t *err)
{
    /* beside hero: looked for once per process (every start asks), then only
     * checked to be still there */
    static char *found;
    const char *env = getenv("HERO_INIT");
    if (env && *env)
        return init_path_find(err);
    if (found && access(found, X_OK) == 0)
        return hero_xstrdup(found);
    char *p = init_path_find(err);
    if (p) {
        free(found);
        found = hero_xstrdup(p);
    }
    return p;
}
