/* The core actions: echo and sleep, so the runner is testable without containers. */
#ifndef HERO_CORE_H
#define HERO_CORE_H

#include "runtime/error.h"

struct hero_task;
int hero_core_echo_start(struct hero_task *t, hero_error_t *err);
int hero_core_fail_start(struct hero_task *t, hero_error_t *err);
int hero_core_sleep_start(struct hero_task *t, hero_error_t *err);

#endif
