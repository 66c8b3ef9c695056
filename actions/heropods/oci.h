/* The container's definition and its OCI runtime config (config.json for crun).
 *
 * A hero_ctr_spec_t is what container_new resolves from its parameters; its
 * canonical JSON is hashed to tell an unchanged definition (a no-op on a rerun) from
 * a changed one (an error naming what differs, unless reset:true). The config
 * combines the spec, the image config and where things are on the host. */
#ifndef HERO_OCI_H
#define HERO_OCI_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "runtime/error.h"

typedef struct hero_mount_spec {
    char *src;          /* absolute host path */
    char *dst;          /* absolute container path */
    bool ro;
} hero_mount_spec_t;

typedef struct hero_ctr_spec {
    char *name;
    char *image;        /* the store name of the image */
    char *hostname;     /* NULL: the name */
    char **env;         /* NULL-terminated KEY=value added to the image's; NULL: none */
    char **entrypoint;  /* NULL: the image's (giving it drops the image's Cmd, as docker does) */
    char **cmd;         /* NULL: the image's */
    char *workdir;      /* NULL: the image's, else / */
    char *user;         /* NULL: the image's, else root; "name", "uid", "name:group", "uid:gid" */
    char **cap_add, **cap_drop;   /* capability names as written (CAP_ prefix optional) */
    hero_mount_spec_t *mounts;
    size_t nmounts;
    uint64_t memory;    /* bytes; 0: unlimited */
    double cpus;        /* cores; 0: unlimited */
    int64_t pids_limit; /* 0: unlimited */
    char **ports;       /* NULL-terminated hostport:containerport[/proto] (used by networking) */
} hero_ctr_spec_t;

void hero_ctr_spec_free(hero_ctr_spec_t *s);
/* Canonical JSON (sorted keys, defaults omitted), and back. */
json_t *hero_ctr_spec_to_json(const hero_ctr_spec_t *s);
int hero_ctr_spec_from_json(const json_t *j, hero_ctr_spec_t *out, hero_error_t *err);
/* sha256 hex of the canonical JSON text; caller frees. */
char *hero_ctr_spec_hash(const hero_ctr_spec_t *s);
/* What differs between two definitions, for the error of a changed container_new:
 * "memory: 256M -> 512M; env: [A=1] -> [A=2]". NULL when they are equal. Caller frees. */
char *hero_ctr_spec_diff(const hero_ctr_spec_t *old, const hero_ctr_spec_t *new_);

/* Where the container's pieces are on the host, and how this start runs. */
typedef struct hero_oci_opts {
    const char *rootfs;      /* the container's own merged root (absolute) */
    const char *init_path;   /* hero-init on the host: bind-mounted read-only at /.hero-init */
    const char *run_dir;     /* host dir bind-mounted at /.hero: hero-init writes its status there */
    const char *etc_dir;     /* host dir holding resolv.conf, hosts and hostname, each
                                bind-mounted over the container's /etc file */
    bool keep_alive;         /* hero-init stays up after the entrypoint exits 0 */
    const char *cgroup_path; /* cgroupsPath, such as "/hero/hero-12" */
} hero_oci_opts_t;

/* The config.json object, or NULL with err (an unknown user or group, an entrypoint
 * that is not in the image, an image with neither entrypoint nor cmd). The image
 * config is the "config" object of the OCI image config (may be NULL); users and
 * entrypoints are resolved inside image_rootfs. */
json_t *hero_oci_config(const hero_ctr_spec_t *spec, const json_t *image_config,
                        const char *image_rootfs, const hero_oci_opts_t *o, hero_error_t *err);

/* The config.json of the container whose dir this is (crun's bundle), or NULL when it
 * cannot be read. */
json_t *hero_oci_read(const char *dir);

/* "UID:GID" of a config.json's process.user, for `crun exec --user`, which otherwise
 * runs the command as root whatever the container's user; NULL when cfg has none.
 * A heap string. (crun exec takes no supplementary groups.) */
char *hero_oci_exec_user(const json_t *cfg);

/* Writes cfg to path (created 0644, or truncated) as indented JSON, in one write. */
int hero_oci_write(const json_t *cfg, const char *path, hero_error_t *err);

/* The process argv the container runs (entrypoint + cmd after the overrides),
 * NULL-terminated; NULL with err when it is empty. Caller frees with hero_strv_free. */
char **hero_oci_args(const hero_ctr_spec_t *spec, const json_t *image_config, hero_error_t *err);

/* Resolves "user[:group]" to ids inside a root filesystem (its /etc/passwd and
 * /etc/group; numeric ids need no entry). */
int hero_oci_resolve_user(const char *rootfs, const char *user, uint32_t *uid, uint32_t *gid,
                          uint32_t **extra_gids, size_t *nextra, hero_error_t *err);

/* Checks that argv0 names an executable inside the root filesystem: an absolute
 * path, or a name looked up in the PATH of env (symlinks resolved inside the root). */
int hero_oci_check_exec(const char *rootfs, char *const *env, const char *argv0,
                        hero_error_t *err);

#endif
