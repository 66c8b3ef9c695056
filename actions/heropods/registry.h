/* The registry client: pulls OCI and Docker images over the distribution API
 * (https://github.com/opencontainers/distribution-spec), asynchronously on the loop
 * through runtime/http.h. One hero_registry_t per loop; it keeps the bearer-token
 * cache and the blob download queue.
 *
 *   references   hero_ref_parse normalises as docker does: `alpine` is
 *                docker.io/library/alpine:latest; a digest is `@sha256:<64 hex>`.
 *   endpoints    docker.io is served by registry-1.docker.io; a mirror entry whose
 *                prefix matches "registry/repository" replaces that prefix with its
 *                location (no fallback to the origin). Loopback registries
 *                (localhost, 127.x, [::1]) and insecure mirrors speak plain http.
 *   auth         on 401 with `WWW-Authenticate: Bearer realm=..,service=..,scope=..`
 *                a token is fetched from the realm (with basic credentials when known),
 *                cached per (registry, scope) until it expires, and the request is
 *                retried once; a cached token that draws a 401 is refreshed. A Basic
 *                challenge is answered with the host's credentials. Credentials come
 *                from the config and from a docker-style auth.json.
 *   manifests    Accept lists the OCI and Docker manifest and index types; an index
 *                yields the entry for the platform (attestation entries skipped); every
 *                manifest is hashed, and checked against the pinned digest or the
 *                Docker-Content-Digest header. With a known digest, a HEAD first: an
 *                unchanged tag costs one request.
 *   blobs        written to PATH.partial while hashed; a dropped connection resumes
 *                with Range, and so does a 206 that ends before the blob does (at
 *                once: a server may send ranges in pieces); a digest or size mismatch
 *                deletes the partial and fails; success is a rename to PATH (on
 *                libuv's thread pool, not synced: registry_blob.c says why; the
 *                partial's open, pwrite and unlink are plain syscalls on the loop).
 *                At most 6 (configurable) blob downloads run at once per client; the
 *                rest wait in order.
 *   retries      429, 5xx and transport errors are retried (3 attempts, backoff
 *                200 ms then 1 s by default); a resumed blob that made progress does
 *                not use up an attempt.
 *   errors       "GET <url>: HTTP 404: MANIFEST_UNKNOWN: manifest unknown": method, URL,
 *                status and the registry's own error document. err->code is ENOENT
 *                (404), EACCES (401/403), EBADMSG (digest or size mismatch), ECANCELED
 *                (client closed), EPROTO (a document hero cannot use), else EIO.
 *
 * Callbacks run on the loop, and may run before the starting call returns (for
 * example when the reference cannot be used). */
#ifndef HERO_REGISTRY_H
#define HERO_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/error.h"

/* ---- references ---- */

typedef struct hero_ref {
    char *registry;    /* "docker.io", "ghcr.io", "localhost:5000", "[::1]:5000" */
    char *repository;  /* "library/alpine" */
    char *tag;         /* "latest" when neither tag nor digest was given; NULL with a
                          digest only */
    char *digest;      /* "sha256:<64 lowercase hex>", or NULL */
    char *canonical;   /* registry/repository[:tag][@digest] */
} hero_ref_t;

/* Parses and normalises `text`. On failure returns <0 with err saying what is wrong
 * (EINVAL) and leaves ref zeroed. hero_ref_free releases the strings. */
int hero_ref_parse(const char *text, hero_ref_t *ref, hero_error_t *err);
void hero_ref_free(hero_ref_t *ref);

/* ---- platforms ---- */

typedef struct hero_platform {
    char *os;        /* "linux" */
    char *arch;      /* GOARCH names: "amd64", "arm64", "arm", "386", ... */
    char *variant;   /* "v7", "v8", or NULL */
} hero_platform_t;

/* "os/arch[/variant]" or "arch" (os linux). Returns <0 with err on bad text. */
int hero_platform_parse(const char *text, hero_platform_t *p, hero_error_t *err);
/* The platform hero runs on (linux/amd64 on x86_64, linux/arm64/v8 on aarch64, ...). */
void hero_platform_host(hero_platform_t *p);
void hero_platform_free(hero_platform_t *p);

/* ---- the client ---- */

typedef struct hero_registry hero_registry_t;

typedef struct hero_registry_mirror {
    const char *prefix;    /* "docker.io", "docker.io/library", "ghcr.io/org" */
    const char *location;  /* "host[:port][/path]"; an "http://" or "https://" in front
                              chooses the scheme */
    bool insecure;         /* plain http (or https without certificate checks when the
                              location says https://) */
} hero_registry_mirror_t;

typedef struct hero_registry_cred {
    const char *registry;  /* "docker.io", "ghcr.io", "127.0.0.1:5000": a registry name or
                              a host hero talks to (a mirror's) */
    const char *username;
    const char *password;
} hero_registry_cred_t;

typedef struct hero_registry_config {
    const hero_registry_mirror_t *mirrors;
    size_t n_mirrors;
    const hero_registry_cred_t *creds;    /* looked up before auth.json */
    size_t n_creds;
    const char *auth_json;        /* docker-style {"auths": {host: {"auth": b64(u:p)}}};
                                     NULL: none. A missing file is not an error. */
    unsigned max_downloads;       /* blob downloads at once; 0: 6 */
    unsigned attempts;            /* per request, for 429/5xx/transport errors; 0: 3 */
    unsigned backoff_ms;          /* wait before the 2nd attempt; 5x that before the 3rd
                                     and later; 0: 200 */
    unsigned stall_timeout_ms;    /* a transfer under 1 byte/s this long fails; 0: 30 s */
} hero_registry_config_t;

/* Copies everything in cfg; reads auth_json now (a small file, before any transfer).
 * Returns <0 with err when auth_json exists but cannot be used. */
int hero_registry_new(uv_loop_t *loop, const hero_registry_config_t *cfg,
                      hero_registry_t **out, hero_error_t *err);

/* Fails every pending operation with ECANCELED (their callbacks run, possibly from
 * inside this call) and frees the client once the last of them is gone (the loop
 * must run on). New operations on a closed client fail the same way. NULL ignored. */
void hero_registry_close(hero_registry_t *r);

/* The manifest URL a reference is fetched from (mirrors and docker.io applied);
 * a heap string. For logs and tests. */
char *hero_registry_manifest_url(hero_registry_t *r, const hero_ref_t *ref);

/* Counters since the client was made (for tests and logs). */
typedef struct hero_registry_stats {
    unsigned requests;          /* HTTP requests sent, all kinds, retries included */
    unsigned manifest_heads;
    unsigned manifest_gets;
    unsigned blob_gets;         /* config and layer GETs, resumes included */
    unsigned token_fetches;
    unsigned retries;           /* requests repeated after 429/5xx/transport errors */
    unsigned resumes;           /* blob requests sent with a Range */
    unsigned max_downloads;     /* the most blob downloads that ran at once */
    uint64_t blob_bytes;        /* bytes received by hero_registry_fetch_blob */
} hero_registry_stats_t;

void hero_registry_stats(const hero_registry_t *r, hero_registry_stats_t *out);

/* ---- resolving an image ---- */

typedef struct hero_registry_layer {
    char *digest;
    int64_t size;
    char *media_type;
} hero_registry_layer_t;

typedef struct hero_registry_image {
    bool unchanged;             /* the HEAD matched known_digest: only ref_digest is set */
    char *ref_digest;           /* what the reference points at now (an index or a manifest) */
    char *manifest_digest;      /* the image manifest for the platform */
    char *manifest_media_type;  /* OCI or Docker v2s2 image manifest */
    char *manifest;             /* its bytes (verified), NUL-terminated */
    size_t manifest_len;
    char *config_digest;
    char *config;               /* the image config JSON (verified), NUL-terminated */
    size_t config_len;
    hero_registry_layer_t *layers;  /* in order, base first */
    size_t n_layers;
} hero_registry_image_t;

void hero_registry_image_free(hero_registry_image_t *img);

/* The image manifest is in and verified (img has the digests, the media type and the
 * layers; config is still NULL): called just before the config is asked for, so that
 * layer downloads can start without waiting for the config's round trip. img
 * stays the resolve's: it is the one the resolve callback is given later, or freed
 * before an error is delivered; do not keep it. */
typedef void (*hero_registry_manifest_cb)(const hero_registry_image_t *img, void *data);

typedef struct hero_registry_resolve_opts {
    const char *platform;       /* "linux/arm64/v8"; NULL: the host's */
    const char *known_digest;   /* the ref_digest of an earlier pull: HEAD before GET,
                                   and the answer is `unchanged` when it still matches */
    hero_registry_manifest_cb manifest;  /* NULL: none; given the resolve's data */
} hero_registry_resolve_opts_t;

/* Called once with the image (the callee owns it) or err (then img is NULL). */
typedef void (*hero_registry_resolve_cb)(hero_registry_image_t *img, hero_error_t *err,
                                         void *data);

/* Fetches the manifest (or the index, then the platform's manifest) and the config
 * blob of `ref`, verifying each digest. `ref` and `opts` are copied. */
void hero_registry_resolve(hero_registry_t *r, const hero_ref_t *ref,
                           const hero_registry_resolve_opts_t *opts,
                           hero_registry_resolve_cb cb, void *data);

/* ---- fetching a blob ---- */

/* Bytes of the blob on disk so far (resumes included; every one of them is already
 * written to PATH.partial, so a reader may follow the file up to `done`) and its
 * size (0: unknown); data is the fetch's data. */
typedef void (*hero_registry_progress_cb)(const char *digest, uint64_t done, uint64_t total,
                                          void *data);
/* Called once: err NULL on success (PATH exists and was verified; it is not
 * fsynced: a blob is a cache named by its digest, and whoever reads it later
 * hashes it again). */
typedef void (*hero_registry_blob_cb)(hero_error_t *err, void *data);

typedef struct hero_registry_blob_opts {
    const char *digest;         /* "sha256:..." */
    int64_t size;               /* from the manifest; -1: unknown (not checked) */
    const char *path;           /* final path; PATH.partial is used meanwhile. A stale
                                   partial from an earlier run is started over. One fetch
                                   per path at a time in a process; across processes the
                                   partial's flock decides who fetches (registry_blob.c). */
    hero_registry_progress_cb progress;  /* NULL: none */
    bool *downloaded;           /* NULL, or set to true on success when this fetch wrote
                                   PATH (false: another process had, or did meanwhile) */
} hero_registry_blob_opts_t;

/* Downloads a blob of `ref`'s repository into opts->path (the directory must exist).
 * Queued when max_downloads are already running. */
void hero_registry_fetch_blob(hero_registry_t *r, const hero_ref_t *ref,
                              const hero_registry_blob_opts_t *opts, hero_registry_blob_cb cb,
                              void *data);
/* Cancels the download started with this cb and data, when it has not ended: it ends
 * with ECANCELED, its callback running from inside this call, and its partial file is
 * removed. One already verified (being renamed into place) is let finish; nothing
 * happens when there is no such download. */
void hero_registry_cancel_blob(hero_registry_t *r, hero_registry_blob_cb cb, void *data);

#endif
