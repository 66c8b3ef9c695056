/* The configuration file: shape, defaults, search order, errors, warnings, mirrors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/config.h"
#include "tap.h"

static char dir[] = "/tmp/hero-config-XXXXXX";

/* Write text to dir/name (creating dir/.config/hero when name is under it). */
static char *write_file(const char *name, const char *text)
{
    char *path = hero_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("# cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load path; returns rc, fills cfg, warnings and the error message (or ""). */
static int load(const char *path, hero_config_t *cfg, char ***warnings, char *msg,
                size_t n)
{
    hero_error_t e = HERO_ERROR_INIT;
    int rc = hero_config_load(path, cfg, warnings, &e);
    snprintf(msg, n, "%s", e.msg ? e.msg : "");
    hero_error_clear(&e);
    return rc;
}

static void shape(void)
{
    char *p = write_file("shape.yaml", "registries:\n"
                                       "  - prefix: docker.io          # references...\n"
                                       "    location: 127.0.0.1:5000   # ...from here\n"
                                       "    insecure: true             # plain HTTP\n"
                                       "auths: /root/.docker/config.json\n");
    hero_config_t c;
    char **w = NULL, msg[512];
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0, "the documented shape loads");
    TAP_OK(c.n_registries == 1, "one registry");
    TAP_STREQ(c.registries[0].prefix, "docker.io", "prefix");
    TAP_STREQ(c.registries[0].location, "127.0.0.1:5000", "location");
    TAP_OK(c.registries[0].insecure, "insecure: true");
    TAP_STREQ(c.auths, "/root/.docker/config.json", "auths");
    TAP_STREQ(c.path, p, "the path it was loaded from");
    TAP_OK(!c.base_dir && c.parallelism == 0, "base_dir and parallelism unset");
    TAP_OK(w == NULL, "no warnings");
    hero_config_free(&c);
    free(p);
}

static void several(void)
{
    char *p = write_file("several.yaml", "registries:\n"
                                         "  - prefix: docker.io\n"
                                         "    location: 127.0.0.1:5000\n"
                                         "  - prefix: ghcr.io\n"
                                         "    location: mirror.example:443\n"
                                         "    insecure: false\n"
                                         "  - {prefix: quay.io, location: q:1, insecure: True}\n"
                                         "base_dir: /var/lib/hero-test\n"
                                         "parallelism: 3\n");
    hero_config_t c;
    char **w = NULL, msg[512];
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0, "several registries load");
    TAP_OK(c.n_registries == 3, "three registries, in order");
    TAP_OK(!c.registries[0].insecure, "insecure defaults to false");
    TAP_OK(!c.registries[1].insecure && c.registries[2].insecure, "explicit insecure");
    TAP_STREQ(c.registries[2].prefix, "quay.io", "a flow mapping entry");
    TAP_STREQ(c.base_dir, "/var/lib/hero-test", "base_dir");
    TAP_OK(c.parallelism == 3, "parallelism");
    TAP_OK(!c.auths, "auths unset");
    hero_config_free(&c);
    free(p);

    p = write_file("empty.yaml", "# nothing but a comment\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0 && c.n_registries == 0 && c.path,
           "an empty file is an empty config");
    hero_config_free(&c);
    free(p);
}

static void search_order(void)
{
    hero_config_t c;
    char **w = NULL, msg[512];
    setenv("HOME", dir, 1);
    unsetenv("HERO_CONFIG");
    if (access("/etc/hero/config.yaml", F_OK) == 0) {
        TAP_SKIP("/etc/hero/config.yaml exists on this host");
    } else {
        TAP_OK(load(NULL, &c, &w, msg, sizeof msg) == 0 && !c.path && !c.n_registries,
               "no file anywhere: empty config, path NULL");
        hero_config_free(&c);
    }

    char *d = hero_xasprintf("%s/.config", dir);
    mkdir(d, 0755);
    free(d);
    d = hero_xasprintf("%s/.config/hero", dir);
    mkdir(d, 0755);
    free(d);
    char *user = write_file(".config/hero/config.yaml", "parallelism: 5\n");
    TAP_OK(load(NULL, &c, &w, msg, sizeof msg) == 0 && c.parallelism == 5, "~/.config found");
    TAP_STREQ(c.path, user, "loaded from ~/.config/hero/config.yaml");
    hero_config_free(&c);

    char *envf = write_file("env.yaml", "parallelism: 6\n");
    setenv("HERO_CONFIG", envf, 1);
    TAP_OK(load(NULL, &c, &w, msg, sizeof msg) == 0 && c.parallelism == 6,
           "$HERO_CONFIG comes before ~/.config");
    TAP_STREQ(c.path, envf, "loaded from $HERO_CONFIG");
    hero_config_free(&c);

    char *expl = write_file("explicit.yaml", "parallelism: 7\n");
    TAP_OK(load(expl, &c, &w, msg, sizeof msg) == 0 && c.parallelism == 7,
           "an explicit path comes before $HERO_CONFIG");
    hero_config_free(&c);

    char *missing = hero_xasprintf("%s/missing.yaml", dir);
    setenv("HERO_CONFIG", missing, 1);
    TAP_OK(load(NULL, &c, &w, msg, sizeof msg) < 0 && strstr(msg, missing) &&
               strstr(msg, "HERO_CONFIG") && !c.path,
           "$HERO_CONFIG naming a missing file is an error naming it");
    printf("# %s\n", msg);
    unsetenv("HERO_CONFIG");
    TAP_OK(load(missing, &c, &w, msg, sizeof msg) < 0 && strstr(msg, missing),
           "an explicit missing file is an error");
    TAP_OK(load(dir, &c, &w, msg, sizeof msg) < 0 && strstr(msg, "not a regular file"),
           "a directory is refused");

    setenv("HERO_CONFIG", "", 1);
    TAP_OK(load(NULL, &c, &w, msg, sizeof msg) == 0 && c.parallelism == 5,
           "an empty $HERO_CONFIG is unset");
    hero_config_free(&c);
    unsetenv("HERO_CONFIG");
    unlink(user);
    free(user);
    free(envf);
    free(expl);
    free(missing);
}

static void errors(void)
{
    hero_config_t c;
    char **w = NULL, msg[512], want[512];

    /* line 3, column 14: the second ':' on "  - prefix: a: b" */
    char *p = write_file("syntax.yaml", "registries:\n"
                                        "  - location: x\n"
                                        "    prefix: a: b\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) < 0, "a YAML syntax error fails");
    snprintf(want, sizeof want, "%s:3:14: mapping values are not allowed in this context",
             p);
    TAP_STREQ(msg, want, "the syntax error has the file, line and column (1-based)");
    TAP_OK(c.n_registries == 0 && !c.path, "the config is left empty");
    free(p);

    p = write_file("unclosed.yaml", "auths: x\nregistries: [\n  {prefix: a, location: b}\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) < 0 && strstr(msg, "unclosed.yaml:4:1: ") &&
               strstr(msg, "flow sequence that starts at 2:13"),
           "an unclosed flow list: where it ends and where it started");
    printf("# %s\n", msg);
    free(p);

    p = write_file("type.yaml", "registries:\n"
                                "  - prefix: docker.io\n"
                                "    location: 127.0.0.1:5000\n"
                                "    insecure: maybe\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) < 0, "a wrong type fails");
    snprintf(want, sizeof want,
             "%s:4:15: registries[0].insecure: expected true or false, got 'maybe'", p);
    TAP_STREQ(msg, want, "the wrong type is named with its line and column");
    free(p);

    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"registries: docker.io\n", ":1:13: registries: expected a list, got a scalar"},
        {"registries:\n  - prefix: a\n", ":2:5: registries[0]: missing 'location'"},
        {"registries:\n  - location: a\n", ":2:5: registries[0]: missing 'prefix'"},
        {"registries:\n  - prefix: [a]\n    location: b\n",
         ":2:13: registries[0].prefix: expected a string, got a list"},
        {"registries:\n  - prefix: a\n    location: http://b\n",
         ":3:15: registries[0].location: expected host[:port] without a scheme"},
        {"parallelism: lots\n", ":1:14: parallelism: expected a positive integer"},
        {"parallelism: 0\n", ":1:14: parallelism: expected a positive integer"},
        {"auths: {a: b}\n", ":1:8: auths: expected a string, got a mapping"},
        {"- a\n- b\n", ":1:1: expected a mapping at the top level, got a list"},
        {"auths: a\nauths: b\n", ":2:1: duplicate key 'auths'"},
        {"? [a]\n: b\n", ":1:3: expected a string key, got a list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = write_file("bad.yaml", bad[i].text);
        int rc = load(p, &c, &w, msg, sizeof msg);
        char what[128];
        snprintf(what, sizeof what, "refused: %s", bad[i].expect);
        if (!TAP_OK(rc < 0 && strstr(msg, bad[i].expect), what))
            printf("#   got: %s\n", msg);
        TAP_OK(c.n_registries == 0 && !c.registries && !c.auths, "and nothing is kept");
        free(p);
    }
}

static void warnings(void)
{
    hero_config_t c;
    char **w = NULL, msg[512], want[512];
    char *p = write_file("warn.yaml", "foo: 1\n"
                                      "registries:\n"
                                      "  - prefix: docker.io\n"
                                      "    location: l:1\n"
                                      "    mirror: x\n"
                                      "parallelism: 2\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0, "unknown keys still load");
    TAP_OK(c.n_registries == 1 && c.parallelism == 2, "and the known keys are kept");
    TAP_OK(w && w[0] && w[1] && !w[2], "two warnings");
    snprintf(want, sizeof want, "%s:1:1: warning: unknown key 'foo' (ignored)", p);
    TAP_STREQ(w ? w[0] : NULL, want, "the top-level warning");
    snprintf(want, sizeof want,
             "%s:5:5: warning: unknown key 'mirror' in registries[0] (ignored)", p);
    TAP_STREQ(w && w[0] ? w[1] : NULL, want, "the warning inside an entry");
    hero_config_warnings_free(w);
    hero_config_free(&c);

    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_config_load(p, &c, NULL, &e) == 0, "warnings may be discarded");
    hero_config_free(&c);
    free(p);
}

static void tilde(void)
{
    hero_config_t c;
    char **w = NULL, msg[512], want[512];
    setenv("HOME", dir, 1);
    char *p = write_file("tilde.yaml", "auths: ~/.docker/config.json\nbase_dir: \"~\"\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0, "loads with ~ paths");
    snprintf(want, sizeof want, "%s/.docker/config.json", dir);
    TAP_STREQ(c.auths, want, "~/ in auths is $HOME/");
    TAP_STREQ(c.base_dir, dir, "\"~\" alone is $HOME (a plain ~ is YAML's null)");
    hero_config_free(&c);
    free(p);

    p = write_file("rel.yaml", "auths: auth.json\nbase_dir: null\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0, "loads with a relative path");
    snprintf(want, sizeof want, "%s/auth.json", dir);
    TAP_STREQ(c.auths, want, "a relative auths is next to the config file");
    TAP_OK(!c.base_dir, "null leaves base_dir unset");
    hero_config_free(&c);
    free(p);

    p = write_file("root.yaml", "auths: ~root/a.json\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) == 0 && c.auths && c.auths[0] == '/' &&
               strstr(c.auths, "/a.json"),
           "~user is that user's home");
    hero_config_free(&c);
    free(p);

    p = write_file("nouser.yaml", "auths: ~no-such-user-hero/a.json\n");
    TAP_OK(load(p, &c, &w, msg, sizeof msg) < 0 && strstr(msg, ":1:8: auths: cannot expand"),
           "an unknown ~user is an error");
    free(p);
}

static void mirrors(void)
{
    hero_config_registry_t r[] = {
        {"docker.io", "a:1", false},
        {"docker.io/library", "b:1", false},
        {"docker.io/library/alpine", "c:1", true},
        {"localhost", "d:1", false},
        {"ghcr.io/", "e:1", false},
    };
    hero_config_t c = {.registries = r, .n_registries = sizeof r / sizeof *r};
    const hero_config_registry_t *m;
    m = hero_config_mirror_for(&c, "docker.io/foo/bar:1");
    TAP_STREQ(m ? m->location : NULL, "a:1", "a registry prefix matches at '/'");
    TAP_OK(!hero_config_mirror_for(&c, "docker.iox/foo/bar:1"),
           "docker.io does not match docker.iox");
    m = hero_config_mirror_for(&c, "docker.io/library/busybox:1");
    TAP_STREQ(m ? m->location : NULL, "b:1", "the longer prefix wins");
    m = hero_config_mirror_for(&c, "docker.io/library/alpine:3.20");
    TAP_STREQ(m ? m->location : NULL, "c:1", "a repository prefix matches at ':'");
    m = hero_config_mirror_for(&c, "docker.io/library/alpine@sha256:ab");
    TAP_STREQ(m ? m->location : NULL, "c:1", "and at '@'");
    m = hero_config_mirror_for(&c, "docker.io/library/alpinex:1");
    TAP_STREQ(m ? m->location : NULL, "b:1", "but not inside a name");
    m = hero_config_mirror_for(&c, "localhost/x:1");
    TAP_STREQ(m ? m->location : NULL, "d:1", "a host prefix");
    TAP_OK(!hero_config_mirror_for(&c, "localhost:5000/x:1"),
           "a host prefix does not match the same host with a port");
    m = hero_config_mirror_for(&c, "ghcr.io/o/x:1");
    TAP_STREQ(m ? m->location : NULL, "e:1", "a prefix ending in '/'");
    TAP_OK(!hero_config_mirror_for(&c, "quay.io/x:1"), "no rule: NULL");
    TAP_OK(!hero_config_mirror_for(NULL, "docker.io/x:1"), "no config: NULL");
    hero_config_t empty = {0};
    TAP_OK(!hero_config_mirror_for(&empty, "docker.io/x:1"), "empty config: NULL");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    unsetenv("HERO_CONFIG");
    setenv("HOME", dir, 1);
    shape();
    several();
    search_order();
    errors();
    warnings();
    tilde();
    mirrors();
    /* clean up without a shell */
    const char *names[] = {"shape.yaml", "several.yaml", "empty.yaml", "env.yaml",
                           "explicit.yaml", "syntax.yaml", "unclosed.yaml", "type.yaml",
                           "bad.yaml", "warn.yaml", "tilde.yaml", "rel.yaml",
                           "root.yaml", "nouser.yaml"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *f = hero_xasprintf("%s/%s", dir, names[i]);
        unlink(f);
        free(f);
    }
    char *d = hero_xasprintf("%s/.config/hero", dir);
    rmdir(d);
    free(d);
    d = hero_xasprintf("%s/.config", dir);
    rmdir(d);
    free(d);
    rmdir(dir);
    return tap_done();
}
