/* The heropods actor. This build validates every heropods action; the handlers
 * (containers, images, networks, overlays) come with their modules. */
#ifndef HERO_HEROPODS_H
#define HERO_HEROPODS_H

#include "grammar/heroscript.h"
#include "runtime/error.h"

struct hero_task;
int hero_heropods_configure_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_enable_mycelium_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_enable_yggdrasil_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_new_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_start_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_exec_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_stop_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_delete_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_image_pull_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_image_import_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_image_export_start(struct hero_task *t, hero_error_t *err);
int hero_heropods_image_delete_start(struct hero_task *t, hero_error_t *err);

/* `hero pods ARGS...` (argv[0] is "pods"); returns the exit code. */
int hero_heropods_cli(int argc, char **argv);

/* Closes this process's stores; called once when hero is done. */
void hero_heropods_shutdown(void);

void hero_heropods_check_new(const hs_action_t *a, hs_diags_t *d);
void hero_heropods_check_exec(const hs_action_t *a, hs_diags_t *d);
void hero_heropods_check_configure(const hs_action_t *a, hs_diags_t *d);

#endif
