/* The configuration file (YAML). Looked up, when no path is given, as $HERO_CONFIG,
 * else ~/.config/hero/config.yaml, else /etc/hero/config.yaml. Shape:
 *
 *     registries:
 *       - prefix: docker.io          # references starting with this prefix...
 *         location: 127.0.0.1:5000   # ...are fetched from here instead
 *         insecure: true             # plain HTTP (default false)
 *     auths: ~/.docker/config.json   # optional, docker-style credentials
 *     base_dir: /var/lib/hero        # optional
 *     parallelism: 8                 # optional, a positive integer
 *
 * A plain `~` (or `null`, or nothing) is YAML's null and leaves a key unset; write
 * "~" quoted for the home directory itself.
 * Errors are "PATH:LINE:COL: message" (1-based); unknown keys are not errors but
 * warnings "PATH:LINE:COL: warning: unknown key 'foo' (ignored)", returned to the
 * caller (this module never prints). */
#ifndef HERO_CONFIG_H
#define HERO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/error.h"

/* One `registries:` entry. */
typedef struct hero_config_registry {
    char *prefix;   /* a normalised-reference prefix, e.g. "docker.io" */
    char *location; /* host[:port][/path] to fetch from instead */
    bool insecure;  /* plain HTTP */
} hero_config_registry_t;

typedef struct hero_config {
    char *path;                         /* the file it was loaded from; NULL if none */
    hero_config_registry_t *registries; /* in file order */
    size_t n_registries;
    char *auths;     /* ~ expanded; relative to the file's directory; NULL if unset */
    char *base_dir;  /* the same expansion; NULL if unset */
    int parallelism; /* 0 when unset */
} hero_config_t;

/* Load the configuration into *out (always initialised, empty on failure).
 * path != NULL: that file, which must exist. path == NULL: the search order above;
 * $HERO_CONFIG set (non-empty) but missing is an error naming it, while missing default
 * locations give an empty config with out->path == NULL.
 * warnings (may be NULL): receives a NULL-terminated array of messages, or NULL when
 * there are none (also on error); free it with hero_config_warnings_free().
 * Returns 0, or -1 with err set. */
int hero_config_load(const char *path, hero_config_t *out, char ***warnings,
                     hero_error_t *err);
void hero_config_free(hero_config_t *cfg);
void hero_config_warnings_free(char **warnings);

/* The mirror rule for a normalised reference ("docker.io/library/alpine:3.20"), or NULL.
 * The longest matching prefix wins; a prefix matches only at a boundary: the reference
 * ends there, or continues with '/', or (for a prefix that already holds a '/', i.e.
 * names a repository) with ':' or '@'. So "docker.io" matches "docker.io/library/x"
 * but not "docker.iox/x", and "localhost" does not match "localhost:5000/x". */
const hero_config_registry_t *hero_config_mirror_for(const hero_config_t *cfg,
                                                     const char *reference);

/* The configuration of this process: set once by main (which takes ownership), an
 * empty one until then. */
const hero_config_t *hero_config_current(void);
void hero_config_set_current(hero_config_t *cfg);

#endif
