/* Private to actions/heropods/: a container_new action's resolved definition. */
#ifndef HERO_PODS_SPEC_H
#define HERO_PODS_SPEC_H

#include "grammar/heroscript.h"
#include "oci.h"

/* Fills s from the action (mount sources resolved and checked). */
int hero_pods_spec_from_action(const hs_action_t *a, hero_ctr_spec_t *s, hero_error_t *err);

#endif
