/* The state store: one SQLite database per base dir (WAL, busy timeout, versioned
 * migrations). It records instances, containers, images, IP leases, and every
 * object hero creates on the host (crun containers, mounts, directories, later
 * links and rules) *before* creating it, so that any later hero process can find
 * and remove what a killed one left behind.
 *
 * Calls are synchronous: each is one short transaction on a local file, bounded by
 * the busy timeout when another hero process holds the write lock. */
#ifndef HERO_STORE_H
#define HERO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

typedef struct hero_store hero_store_t;

/* Opens (creating the directory and the database when needed) and migrates. */
int hero_store_open(const char *base_dir, hero_store_t **out, hero_error_t *err);
void hero_store_close(hero_store_t *s);
const char *hero_store_base_dir(const hero_store_t *s);
/* A random id made with the store (16 hex digits): names hero gives host-wide
 * objects (cgroups, interfaces) carry it, so two base dirs never collide. */
const char *hero_store_uid(const hero_store_t *s);
int hero_store_schema_version(hero_store_t *s);

/* Explicit transactions (BEGIN IMMEDIATE), for several calls that must commit
 * together; every other call is a transaction of its own. */
int hero_store_begin(hero_store_t *s, hero_error_t *err);
int hero_store_commit(hero_store_t *s, hero_error_t *err);
void hero_store_rollback(hero_store_t *s);

/* Batches: several writes that would each be a transaction of their own, in one
 * (one commit costs about as much as the writes). Nestable: the outermost begin
 * opens a transaction (BEGIN IMMEDIATE) unless one is open already, the matching
 * end commits it; inner pairs only count. Each write keeps its own outcome, as
 * without a batch (a failed one is undone alone); end fails only when the commit
 * does. Objects must still be recorded and committed before they are made: close
 * the batch before making them. */
int hero_store_batch_begin(hero_store_t *s, hero_error_t *err);
int hero_store_batch_end(hero_store_t *s, hero_error_t *err);

/* ---- notes: small text values the store keeps for hero itself, by key ("uid" is
 * the store's id; modules use "<module>.<what>") ---- */
/* 0 found (*value set, caller frees), 1 not found, <0 error */
int hero_store_meta_get(hero_store_t *s, const char *key, char **value, hero_error_t *err);
int hero_store_meta_put(hero_store_t *s, const char *key, const char *value, hero_error_t *err);
/* The notes whose key starts with `prefix`, by key: two arrays of *n strings, each
 * NULL-terminated when *n > 0, else NULL (the caller frees the strings and arrays). */
int hero_store_meta_list(hero_store_t *s, const char *prefix, char ***keys, char ***values,
                         size_t *n, hero_error_t *err);
/* Deleting a key that is not there is fine. */
int hero_store_meta_del(hero_store_t *s, const char *key, hero_error_t *err);

/* ---- instances: settings are a JSON object, owned by the caller ---- */
/* 0 found (*settings set, caller frees), 1 not found, <0 error */
int hero_store_instance_get(hero_store_t *s, const char *name, char **settings, hero_error_t *err);
int hero_store_instance_put(hero_store_t *s, const char *name, const char *settings,
                            hero_error_t *err);
int hero_store_instance_delete(hero_store_t *s, const char *name, hero_error_t *err);

/* ---- containers ---- */
typedef struct hero_container_rec {
    int64_t id;
    char *instance, *name, *image;
    char *spec;              /* the resolved definition, canonical JSON */
    char *spec_hash;         /* sha256 hex of spec */
    char *state;             /* "created", "running", "exited", "stopped" */
    int64_t pid;             /* of the container's init while running, else 0 */
    int64_t exit_code;       /* -1: none recorded */
    int64_t exit_signal;     /* 0: none */
    int64_t created, started, finished;   /* unix seconds; 0: never */
    /* the image as the container was made from it: its root (a layer stack) and its
     * config, JSON; NULL for containers made before the store recorded them */
    char *image_rootfs, *image_config;
} hero_container_rec_t;

void hero_container_rec_free(hero_container_rec_t *r);
/* 0 found, 1 not found, <0 error */
int hero_store_container_get(hero_store_t *s, const char *instance, const char *name,
                             hero_container_rec_t *out, hero_error_t *err);
int hero_store_container_get_id(hero_store_t *s, int64_t id, hero_container_rec_t *out,
                                hero_error_t *err);
/* Inserts r (id, created filled in); fails with EEXIST when the name is taken. */
int hero_store_container_insert(hero_store_t *s, hero_container_rec_t *r, hero_error_t *err);
/* Records the image of a container made before the store kept it (NULL columns only). */
int hero_store_container_pin(hero_store_t *s, int64_t id, const char *image_rootfs,
                             const char *image_config, hero_error_t *err);
int hero_store_container_set_state(hero_store_t *s, int64_t id, const char *state, int64_t pid,
                                   int64_t exit_code, int64_t exit_signal, hero_error_t *err);
int hero_store_container_delete(hero_store_t *s, int64_t id, hero_error_t *err);
/* Forgets a container entirely, in one transaction: its host-object records, its
 * leases and its row (for a teardown that has undone every object). */
int hero_store_container_forget(hero_store_t *s, int64_t id, hero_error_t *err);
/* All containers (of one instance, or all when NULL), by name. */
int hero_store_container_list(hero_store_t *s, const char *instance, hero_container_rec_t **v,
                              size_t *n, hero_error_t *err);
void hero_container_recs_free(hero_container_rec_t *v, size_t n);

/* ---- images ---- */
typedef struct hero_image_rec {
    char *name, *ref, *digest;
    char *rootfs;            /* absolute path of the extracted root filesystem */
    char *config;            /* the OCI image config, JSON */
    int64_t size, created;
} hero_image_rec_t;

void hero_image_rec_free(hero_image_rec_t *r);
int hero_store_image_get(hero_store_t *s, const char *name, hero_image_rec_t *out,
                         hero_error_t *err);
int hero_store_image_put(hero_store_t *s, const hero_image_rec_t *r, hero_error_t *err);
int hero_store_image_delete(hero_store_t *s, const char *name, hero_error_t *err);
int hero_store_image_list(hero_store_t *s, hero_image_rec_t **v, size_t *n, hero_error_t *err);
void hero_image_recs_free(hero_image_rec_t *v, size_t n);
/* The digest the image's reference pointed at when it was pulled (NULL clears it);
 * get: 0 found (*out set, caller frees), 1 none, <0 error. */
int hero_store_image_set_ref_digest(hero_store_t *s, const char *name, const char *ref_digest,
                                    hero_error_t *err);
int hero_store_image_get_ref_digest(hero_store_t *s, const char *name, char **out,
                                    hero_error_t *err);
/* How many containers use the image. */
int hero_store_image_users(hero_store_t *s, const char *name, int64_t *count, hero_error_t *err);

/* ---- IPv4 leases (IPAM) ---- */
/* Leases an address of net/len to the container, in one write transaction (so two
 * hero processes never hand out the same one): the container's existing lease if it
 * has one in this instance, else the lowest free host address. The network and
 * broadcast addresses and `gateway` are never leased. Addresses in host byte order.
 * ENOSPC with "no free address in 10.0.0.0/28" when the prefix is full. */
int hero_store_lease_ipv4(hero_store_t *s, const char *instance, uint32_t net, int len,
                          uint32_t gateway, int64_t container_id, uint32_t *addr,
                          hero_error_t *err);
/* The container's lease in the instance: 0 found, 1 none, <0 error. */
int hero_store_lease_get(hero_store_t *s, const char *instance, int64_t container_id,
                         uint32_t *addr, hero_error_t *err);
/* Gives back the container's leases (hero_store_container_delete does it too). */
int hero_store_lease_release(hero_store_t *s, int64_t container_id, hero_error_t *err);

/* ---- overlay (IPv6) leases: one per container, a host number inside the overlay
 * node's /64 `subnet` (its text, as the daemon gave it) ---- */
/* The container's lease in `subnet` if it has one; else the lowest free host number
 * from hero_store_overlay_base(s) + 2 up that is not `avoid` (the node's own), in one
 * write transaction. A lease the container holds in another subnet (the node's key
 * changed) is replaced. */
int hero_store_overlay_lease(hero_store_t *s, const char *subnet, uint64_t avoid,
                             int64_t container_id, uint64_t *host, hero_error_t *err);
/* Where this store's host numbers start: the store's own 2^32 of the /64 (from its
 * uid), so that stores sharing a node do not hand out one address twice. */
uint64_t hero_store_overlay_base(const hero_store_t *s);
/* 0 found (*subnet set, caller frees), 1 none, <0 error. */
int hero_store_overlay_get(hero_store_t *s, int64_t container_id, char **subnet, uint64_t *host,
                           hero_error_t *err);
/* Gives it back (hero_store_lease_release and container delete/forget do it too). */
int hero_store_overlay_release(hero_store_t *s, int64_t container_id, hero_error_t *err);

/* ---- host objects: what exists on the host because of a container ---- */
typedef enum {
    HERO_OBJ_DIR = 1,        /* ref: a directory hero made (removed recursively) */
    HERO_OBJ_MOUNT = 2,      /* ref: a mount point hero mounted (unmounted) */
    HERO_OBJ_CRUN = 3,       /* ref: a crun container id under hero's crun root */
    HERO_OBJ_LINK = 4,       /* ref: a network interface (later) */
    HERO_OBJ_RULE = 5,       /* ref: a firewall rule handle (later) */
} hero_obj_kind_t;

typedef struct hero_hostobj {
    int64_t id, container_id;
    hero_obj_kind_t kind;
    char *ref;
} hero_hostobj_t;

/* Records an object about to be created (call before creating it). Recording one
 * that is already there (same container, kind, ref) is a no-op. */
int hero_store_hostobj_add(hero_store_t *s, int64_t container_id, hero_obj_kind_t kind,
                           const char *ref, hero_error_t *err);
/* Forgets one, after it is gone. */
int hero_store_hostobj_del(hero_store_t *s, int64_t container_id, hero_obj_kind_t kind,
                           const char *ref, hero_error_t *err);
/* A container's objects, newest first (the order to undo them in). */
int hero_store_hostobj_list(hero_store_t *s, int64_t container_id, hero_hostobj_t **v, size_t *n,
                            hero_error_t *err);
void hero_hostobjs_free(hero_hostobj_t *v, size_t n);

#endif
