/* Small file-system helpers shared by the modules. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "runtime/fs.h"

int hero_mkdir_p(const char *path, mode_t mode, hero_error_t *err)
{
    char *p = hero_xstrdup(path);
    for (char *c = p + 1;; c++) {
        if (*c == '/' || !*c) {
            char saved = *c;
            *c = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                int e = errno;
                hero_error_set(err, e, "cannot create '%s'", p);
                free(p);
                return -1;
            }
            *c = saved;
            if (!saved)
                break;
        }
    }
    free(p);
    return 0;
}
