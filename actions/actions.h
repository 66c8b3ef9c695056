/* The actions module's public header: the one static dispatch table (every
 * `actor.action` with its parameter schema and handler), typed access to an action's
 * parameters, and validation of a whole playbook against the table. The table is
 * the single source for validation, `hero actions`, `hero help` and heroscript(5). */
#ifndef HERO_ACTIONS_H
#define HERO_ACTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "grammar/heroscript.h"
#include "runtime/error.h"

typedef enum {
    HERO_T_STR,
    HERO_T_BOOL,      /* true/false/yes/no/y/n/1/0, any case */
    HERO_T_INT,       /* decimal, no trailing junk */
    HERO_T_FLOAT,     /* decimal with an optional fraction: cpus:1.5 */
    HERO_T_SIZE,      /* bytes: 512M, 2G, 64k, 1024 (binary multiples) */
    HERO_T_DURATION,  /* 500ms, 10s, 2m, 1h, 1m30s */
    HERO_T_LIST,      /* a,b,c  'a', 'b'  [a, b]  ['a', 'b'] */
    HERO_T_IPV4_PREFIX, /* 10.10.0.0/24 */
    HERO_T_IPV4_ADDR, /* 10.10.0.1 */
} hero_type_t;

/* What a parameter's value names, for the scheduler: two actions that touch the same
 * resource, at least one of them exclusively, run one after the other. */
typedef enum {
    HERO_RES_NONE,
    HERO_RES_CONTAINER,     /* exclusive: container <instance>/<value> */
    HERO_RES_IMAGE,         /* exclusive: image <value> */
    HERO_RES_IMAGE_USE,     /* shared:    image <value> */
    HERO_RES_INSTANCE,      /* exclusive: instance <value> (configure) */
    HERO_RES_NAMED,         /* exclusive: each list item, as it is (core.* `resources`) */
} hero_res_t;

/* Checks one value (one item, for lists); returns NULL or a message (static storage). */
typedef const char *(*hero_check_fn)(const char *s, size_t n);

typedef struct hero_param_def {
    const char *name;
    hero_type_t type;
    bool required;
    const char *def;        /* the default, as text converted like a value; NULL: none */
    const char *doc;        /* one line */
    hero_res_t res;
    hero_check_fn check;    /* extra per-item check, or NULL */
    int64_t min, max;       /* for INT (value) and IPV4_PREFIX (prefix length); 0,0: none */
    const char *defdoc;     /* a default that depends on something else, said in words */
} hero_param_def_t;

struct hero_task;
/* Starts an action on the loop; the handler later calls hero_task_done(). Returns <0
 * (with err) when it fails at once. */
typedef int (*hero_action_start_fn)(struct hero_task *t, hero_error_t *err);
/* Cross-parameter checks that one schema row cannot express (cmd or args, ...). */
typedef void (*hero_action_check_fn)(const hs_action_t *a, hs_diags_t *d);

enum {
    HERO_ACT_DIRECTIVE = 1, /* carried out while loading (play.include, play.set) */
    HERO_ACT_INSTANCE = 2,  /* takes `heropods:` and belongs to an instance */
    HERO_ACT_INSTANCE_EXCL = 4, /* ...and changes it: runs alone among its actions */
};

typedef struct hero_action_def {
    const char *actor, *name;
    const char *doc;                    /* one line */
    const hero_param_def_t *params;
    size_t nparams;
    const char *positional;             /* the parameter bare words fill, or NULL */
    unsigned flags;
    hero_action_start_fn start;         /* NULL: not implemented in this build */
    hero_action_check_fn check;
    const char *what;                   /* for --dry-run: what it would do */
} hero_action_def_t;

extern const hero_action_def_t hero_action_table[];
extern const size_t hero_action_count;

const hero_action_def_t *hero_action_find(const char *actor, size_t alen, const char *name,
                                          size_t nlen);
const hero_param_def_t *hero_param_find(const hero_action_def_t *def, const char *key, size_t n);
const char *hero_type_name(hero_type_t t);

/* Validates every action of the playbook against the table: unknown actions and
 * parameters (with "did you mean"), missing required parameters, values of the wrong
 * type, duplicate keys (warning). Sets a->def on every known action. Diagnostics go
 * to pb->diags (sorted). Returns the number of errors found. */
size_t hero_validate(hs_playbook_t *pb);

/* ---- typed access to a validated action's parameters (defaults from the schema) ---- */
/* The parameter given for `key` (the last one when given twice; a positional
 * argument when `key` is the action's positional parameter), or NULL. */
const hs_param_t *hero_arg(const hs_action_t *a, const char *key);
/* A copy of a string parameter or its default; NULL when neither. Caller frees. */
char *hero_arg_str(const hs_action_t *a, const char *key);
bool hero_arg_bool(const hs_action_t *a, const char *key);
int64_t hero_arg_int(const hs_action_t *a, const char *key);
double hero_arg_float(const hs_action_t *a, const char *key);
uint64_t hero_arg_size(const hs_action_t *a, const char *key);
/* milliseconds; -1 when absent without a default */
int64_t hero_arg_duration_ms(const hs_action_t *a, const char *key);
/* A NULL-terminated array of copies; caller frees with hero_strv_free. */
char **hero_arg_list(const hs_action_t *a, const char *key);
void hero_strv_free(char **v);

/* ---- conversions, shared with the config file and the CLI ---- */
/* Each returns NULL on success or a message (static storage) on failure. */
const char *hero_conv_bool(const char *s, size_t n, bool *out);
const char *hero_conv_int(const char *s, size_t n, int64_t *out);
const char *hero_conv_float(const char *s, size_t n, double *out);
const char *hero_conv_size(const char *s, size_t n, uint64_t *out);
const char *hero_conv_duration(const char *s, size_t n, int64_t *ms);
const char *hero_conv_ipv4(const char *s, size_t n, uint32_t *addr);
const char *hero_conv_ipv4_prefix(const char *s, size_t n, uint32_t *addr, int *len);

/* Edit distance, for "did you mean". */
size_t hero_edit_distance(const char *a, size_t an, const char *b, size_t bn);

/* ---- documentation generated from the table ---- */
void hero_actions_list(FILE *out);                  /* `hero actions` */
int hero_action_help(FILE *out, const char *name);  /* `hero help ACTION`; <0 unknown */
void hero_actions_roff(FILE *out);                  /* the ACTIONS section of heroscript(5) */

#endif
