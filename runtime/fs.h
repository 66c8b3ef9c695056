/* Small file-system helpers shared by the modules. */
#ifndef HERO_FS_H
#define HERO_FS_H

#include <sys/types.h>

#include "runtime/error.h"

/* mkdir -p: creates path and its missing parents with mode (existing ones stay). */
int hero_mkdir_p(const char *path, mode_t mode, hero_error_t *err);

#endif
