/* The heropods actor. This build validates every heropods action; the handlers
 * (containers, images, networks, overlays) come with their modules. */
#ifndef HERO_HEROPODS_H
#define HERO_HEROPODS_H

#include "grammar/heroscript.h"

void hero_heropods_check_new(const hs_action_t *a, hs_diags_t *d);
void hero_heropods_check_exec(const hs_action_t *a, hs_diags_t *d);
void hero_heropods_check_configure(const hs_action_t *a, hs_diags_t *d);

#endif
