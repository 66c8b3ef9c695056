/* The configuration file: locate it, parse it with libyaml's document API, check the
 * shape, and collect warnings for unknown keys. Nothing is printed here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "runtime/config.h"
#include "runtime/fs.h"

#define CONFIG_SYSTEM_PATH "/etc/hero/config.yaml"
#define CONFIG_USER_PATH ".config/hero/config.yaml" /* under $HOME */
#define CONFIG_MAX_PARALLELISM 4096

/* The state of one load: the file's name and document, and where results go. */
typedef struct config_loader {
    const char *path;
    yaml_document_t *doc;
    char **warnings; /* NULL-terminated, or NULL */
    size_t n_warnings;
    hero_error_t *err;
} config_loader_t;

/* ---- messages ---- */

/* Fail with "PATH:LINE:COL: message" at node n (libyaml marks are 0-based). */
__attribute__((format(printf, 3, 4))) static int config_fail(config_loader_t *l,
                                                             const yaml_node_t *n,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_set(l->err, 0, "%s:%zu:%zu: %s", l->path, n->start_mark.line + 1,
                   n->start_mark.column + 1, msg);
    free(msg);
    return -1;
}

__attribute__((format(printf, 3, 4))) static void config_warn(config_loader_t *l,
                                                              const yaml_node_t *n,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = hero_xvasprintf(fmt, ap);
    va_end(ap);
    l->warnings = hero_xrealloc(l->warnings, (l->n_warnings + 2) * sizeof(char *));
    l->warnings[l->n_warnings++] =
        hero_xasprintf("%s:%zu:%zu: warning: %s", l->path, n->start_mark.line + 1,
                       n->start_mark.column + 1, msg);
    l->warnings[l->n_warnings] = NULL;
    free(msg);
}

static const char *config_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE    ? "a mapping"
           : n->type == YAML_SEQUENCE_NODE ? "a list"
                                           : "a scalar";
}

/* ---- scalars ---- */

static const char *config_scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain `~`, `null` or empty value: the key is present but unset. */
static bool config_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = config_scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* A non-empty string value for `what` (a path like "registries[0].prefix"). */
static int config_string(config_loader_t *l, const yaml_node_t *n, const char *what,
                         char **dst)
{
    if (n->type != YAML_SCALAR_NODE)
        return config_fail(l, n, "%s: expected a string, got %s", what, config_kind(n));
    if (config_is_null(n) || !*config_scalar(n))
        return config_fail(l, n, "%s: expected a non-empty string", what);
    free(*dst);
    *dst = hero_xstrdup(config_scalar(n));
    return 0;
}

static int config_bool(config_loader_t *l, const yaml_node_t *n, const char *what,
                       bool *dst)
{
    const char *s = n->type == YAML_SCALAR_NODE ? config_scalar(n) : NULL;
    if (s && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")))
        *dst = true;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")))
        *dst = false;
    else if (s)
        return config_fail(l, n, "%s: expected true or false, got '%s'", what, s);
    else
        return config_fail(l, n, "%s: expected true or false, got %s", what,
                           config_kind(n));
    return 0;
}

static int config_int(config_loader_t *l, const yaml_node_t *n, const char *what,
                      int *dst)
{
    if (n->type != YAML_SCALAR_NODE)
        return config_fail(l, n, "%s: expected a positive integer, got %s", what,
                           config_kind(n));
    const char *s = config_scalar(n);
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v < 1 || v > CONFIG_MAX_PARALLELISM)
        return config_fail(l, n, "%s: expected a positive integer up to %d, got '%s'",
                           what, CONFIG_MAX_PARALLELISM, s);
    *dst = (int)v;
    return 0;
}

/* A path value: "~" and "~/x" use the home directory, "~user/x" that user's; a
 * relative path is taken relative to the configuration file's directory. */
static int config_path(config_loader_t *l, const yaml_node_t *n, const char *what,
                       char **dst)
{
    if (n->type == YAML_SCALAR_NODE && config_is_null(n)) {
        free(*dst);
        *dst = NULL; /* present but unset */
        return 0;
    }
    char *v = NULL;
    if (config_string(l, n, what, &v) < 0)
        return -1;
    char *out;
    if (v[0] == '~') {
        hero_error_t e = HERO_ERROR_INIT;
        out = hero_fs_expand_home(v, &e);
        if (!out) {
            config_fail(l, n, "%s: %s", what, e.msg);
            hero_error_clear(&e);
            free(v);
            return -1;
        }
    } else if (v[0] != '/') {
        const char *slash = strrchr(l->path, '/');
        out = slash ? hero_xasprintf("%.*s/%s", (int)(slash - l->path), l->path, v)
                    : hero_xstrdup(v);
    } else {
        out = hero_xstrdup(v);
    }
    free(v);
    free(*dst);
    *dst = out;
    return 0;
}

/* ---- the shape ---- */

/* The key of a mapping pair, which must be a string. NULL (err set) if not. */
static const char *config_key(config_loader_t *l, const yaml_node_t *k)
{
    if (k->type != YAML_SCALAR_NODE) {
        config_fail(l, k, "expected a string key, got %s", config_kind(k));
        return NULL;
    }
    return config_scalar(k);
}

/* Refuse a key seen before in the same mapping (bit i of *seen). */
static int config_once(config_loader_t *l, const yaml_node_t *k, const char *where,
                       unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return config_fail(l, k, "%s%sduplicate key '%s'", where, *where ? ": " : "",
                           config_scalar(k));
    *seen |= bit;
    return 0;
}

static int config_registry(config_loader_t *l, const yaml_node_t *n, size_t i,
                           hero_config_registry_t *r)
{
    char where[64];
    snprintf(where, sizeof where, "registries[%zu]", i);
    if (n->type != YAML_MAPPING_NODE)
        return config_fail(l, n, "%s: expected a mapping (prefix, location, insecure), "
                                 "got %s", where, config_kind(n));
    unsigned seen = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        const char *key = config_key(l, k);
        if (!key)
            return -1;
        char what[96];
        snprintf(what, sizeof what, "%s.%s", where, key);
        int rc = 0;
        if (!strcmp(key, "prefix")) {
            if ((rc = config_once(l, k, where, &seen, 1)) == 0 &&
                (rc = config_string(l, v, what, &r->prefix)) == 0 && strstr(r->prefix, "://"))
                rc = config_fail(l, v, "%s: expected a reference prefix without a scheme, "
                                       "got '%s'", what, r->prefix);
        } else if (!strcmp(key, "location")) {
            if ((rc = config_once(l, k, where, &seen, 2)) == 0 &&
                (rc = config_string(l, v, what, &r->location)) == 0 &&
                strstr(r->location, "://"))
                rc = config_fail(l, v, "%s: expected host[:port] without a scheme (use "
                                       "insecure: true for plain HTTP), got '%s'",
                                 what, r->location);
        } else if (!strcmp(key, "insecure")) {
            if ((rc = config_once(l, k, where, &seen, 4)) == 0)
                rc = config_bool(l, v, what, &r->insecure);
        } else {
            config_warn(l, k, "unknown key '%s' in %s (ignored)", key, where);
        }
        if (rc < 0)
            return -1;
    }
    if (!r->prefix)
        return config_fail(l, n, "%s: missing 'prefix'", where);
    if (!r->location)
        return config_fail(l, n, "%s: missing 'location'", where);
    return 0;
}

static int config_registries(config_loader_t *l, const yaml_node_t *n, hero_config_t *c)
{
    if (config_is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return config_fail(l, n, "registries: expected a list, got %s", config_kind(n));
    yaml_node_item_t *items = n->data.sequence.items.start;
    size_t count = (size_t)(n->data.sequence.items.top - items);
    c->registries = hero_xcalloc(count, sizeof *c->registries);
    for (size_t i = 0; i < count; i++) {
        c->n_registries = i + 1; /* so that hero_config_free sees the partial entry */
        if (config_registry(l, yaml_document_get_node(l->doc, items[i]), i,
                            &c->registries[i]) < 0)
            return -1;
    }
    return 0;
}

static int config_root(config_loader_t *l, const yaml_node_t *root, hero_config_t *c)
{
    if (config_is_null(root))
        return 0; /* an empty document */
    if (root->type != YAML_MAPPING_NODE)
        return config_fail(l, root, "expected a mapping at the top level, got %s",
                           config_kind(root));
    unsigned seen = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        const char *key = config_key(l, k);
        if (!key)
            return -1;
        int rc = 0;
        if (!strcmp(key, "registries")) {
            if ((rc = config_once(l, k, "", &seen, 1)) == 0)
                rc = config_registries(l, v, c);
        } else if (!strcmp(key, "auths")) {
            if ((rc = config_once(l, k, "", &seen, 2)) == 0)
                rc = config_path(l, v, "auths", &c->auths);
        } else if (!strcmp(key, "base_dir")) {
            if ((rc = config_once(l, k, "", &seen, 4)) == 0)
                rc = config_path(l, v, "base_dir", &c->base_dir);
        } else if (!strcmp(key, "parallelism")) {
            if ((rc = config_once(l, k, "", &seen, 8)) == 0 && !config_is_null(v))
                rc = config_int(l, v, "parallelism", &c->parallelism);
        } else {
            config_warn(l, k, "unknown key '%s' (ignored)", key);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- files ---- */

/* Parse the open file f into c. */
static int config_parse(config_loader_t *l, FILE *f, hero_config_t *c)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return hero_error_set(l->err, ENOMEM, "%s: cannot initialise the YAML parser",
                              l->path);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        const char *problem = parser.problem ? parser.problem : "invalid YAML";
        if (parser.context)
            hero_error_set(l->err, 0, "%s:%zu:%zu: %s (%s that starts at %zu:%zu)",
                           l->path, parser.problem_mark.line + 1,
                           parser.problem_mark.column + 1, problem, parser.context,
                           parser.context_mark.line + 1, parser.context_mark.column + 1);
        else if (parser.error == YAML_READER_ERROR)
            hero_error_set(l->err, 0, "%s: %s at byte %zu", l->path, problem,
                           parser.problem_offset);
        else
            hero_error_set(l->err, 0, "%s:%zu:%zu: %s", l->path,
                           parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                           problem);
        yaml_parser_delete(&parser);
        return -1;
    }
    l->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = root ? config_root(l, root, c) : 0; /* no root: an empty file */
    l->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* Load path into c. Returns 0, -1 with err set, or 1 (nothing set) when the file does
 * not exist and `optional` is true. `origin` says where the name came from. */
static int config_file(config_loader_t *l, const char *path, bool optional,
                       const char *origin, hero_config_t *c)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        if (optional && (errno == ENOENT || errno == ENOTDIR))
            return 1;
        return hero_error_set(l->err, errno, "cannot open configuration file '%s'%s",
                              path, origin);
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return hero_error_set(l->err, 0, "configuration file '%s'%s is not a regular file",
                              path, origin);
    }
    l->path = path;
    c->path = hero_xstrdup(path);
    int rc = config_parse(l, f, c);
    fclose(f);
    return rc;
}

int hero_config_load(const char *path, hero_config_t *out, char ***warnings,
                     hero_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (warnings)
        *warnings = NULL;
    config_loader_t l = {.err = err};
    const char *env = getenv("HERO_CONFIG");
    int rc;
    if (path) {
        rc = config_file(&l, path, false, "", out);
    } else if (env && *env) {
        rc = config_file(&l, env, false, " (from $HERO_CONFIG)", out);
    } else {
        rc = 1;
        char *user = hero_fs_expand_home("~/" CONFIG_USER_PATH, NULL);
        if (user) {
            rc = config_file(&l, user, true, "", out);
            free(user);
        }
        if (rc == 1)
            rc = config_file(&l, CONFIG_SYSTEM_PATH, true, "", out);
        if (rc == 1)
            rc = 0; /* no file at all: the empty configuration */
    }
    if (rc < 0)
        hero_config_free(out);
    if (warnings)
        *warnings = l.warnings;
    else
        hero_config_warnings_free(l.warnings);
    return rc < 0 ? -1 : 0;
}

void hero_config_free(hero_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_registries; i++) {
        free(cfg->registries[i].prefix);
        free(cfg->registries[i].location);
    }
    free(cfg->registries);
    free(cfg->auths);
    free(cfg->base_dir);
    free(cfg->path);
    memset(cfg, 0, sizeof *cfg);
}

void hero_config_warnings_free(char **warnings)
{
    if (!warnings)
        return;
    for (char **w = warnings; *w; w++)
        free(*w);
    free(warnings);
}

/* ---- mirrors ---- */

static bool config_prefix_matches(const char *prefix, const char *ref)
{
    size_t n = strlen(prefix);
    if (!n || strncmp(ref, prefix, n) != 0)
        return false;
    char next = ref[n];
    if (!next || next == '/' || prefix[n - 1] == '/')
        return true;
    /* a tag or digest boundary only once past the host (whose ':' starts a port) */
    return (next == ':' || next == '@') && strchr(prefix, '/');
}

const hero_config_registry_t *hero_config_mirror_for(const hero_config_t *cfg,
                                                     const char *reference)
{
    const hero_config_registry_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; cfg && reference && i < cfg->n_registries; i++) {
        const hero_config_registry_t *r = &cfg->registries[i];
        size_t n = strlen(r->prefix);
        if (n > best_len && config_prefix_matches(r->prefix, reference)) {
            best = r;
            best_len = n;
        }
    }
    return best;
}

/* ---- the process's configuration ---- */
static hero_config_t current;

const hero_config_t *hero_config_current(void)
{
    return &current;
}

void hero_config_set_current(hero_config_t *cfg)
{
    hero_config_free(&current);
    current = *cfg;
    *cfg = (hero_config_t){0};
}
