/* Private to the registry client (registry*.c): the client object, the request
 * engine (retries, auth challenges, token cache) and small helpers shared by the
 * resolve (registry.c) and blob (registry_blob.c) operations. Not a public header. */
#ifndef HERO_REGISTRY_INT_H
#define HERO_REGISTRY_INT_H

#include "registry.h"
#include "runtime/http.h"
#include "runtime/sha256.h"

/* Where a reference's repository is served: the origin or a mirror. */
typedef struct reg_endpoint {
    char *base;        /* "https://registry-1.docker.io", "http://127.0.0.1:5000" */
    char *host;        /* "registry-1.docker.io", "127.0.0.1:5000": token-cache key */
    char *repository;  /* the repository on that host */
    char *registry;    /* the reference's registry name ("docker.io"): credential key,
                          unless mirrored */
    bool mirrored;     /* a mirror serves it: only the mirror host's credentials apply */
    bool tls_no_verify;
} reg_endpoint_t;

typedef struct reg_cred {
    char *key;         /* normalised host: "docker.io", "ghcr.io", "127.0.0.1:5000" */
    char *user, *pass;
} reg_cred_t;

typedef struct reg_token {
    char *host, *scope, *value; /* value: the bearer token */
    uint64_t expires_ms;        /* uv_now() time after which it is not used */
    struct reg_token *next;
} reg_token_t;

typedef struct reg_req reg_req_t;
typedef struct reg_tokfetch reg_tokfetch_t;
typedef struct reg_blob reg_blob_t;

typedef enum reg_kind {
    REG_MANIFEST_HEAD,
    REG_MANIFEST_GET,
    REG_BLOB_GET,
    REG_TOKEN_GET,
} reg_kind_t;

/* Completion of a request: err set when it failed before an answer hero can use
 * (transport after the last attempt, auth, cancel); else resp is the final answer,
 * of any status. resp is valid only during the call. */
typedef void (*reg_req_cb)(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err);

struct reg_req {
    hero_registry_t *r;
    reg_req_t *prev, *next;     /* in r->reqs */
    reg_kind_t kind;
    const reg_endpoint_t *ep;   /* borrowed from the operation; NULL for token fetches */
    char *url;
    char *accept;               /* an "Accept: ..." line, or NULL */
    char *scope;                /* "repository:NAME:pull" (NULL for token fetches) */
    char *authorization;        /* the value sent with the next attempt, or NULL */
    char *basic;                /* token fetches: "Basic ..." for the realm */
    bool used_cached_token;
    bool auth_retried;
    int fd;                     /* > 0: body to this file; < 0: on_data keeps it; 0: memory
                                   (see hero_http_opts_t) */
    size_t max_body;
    uint64_t range_from;
    /* blobs: bytes stored so far; progress since the last attempt restores attempts */
    const uint64_t *progress;
    uint64_t progress_mark;
    uint64_t expected;          /* blobs: the size the manifest gives, 0 when unknown */
    void (*prepare)(reg_req_t *q);  /* before every attempt (may set range_from) */
    /* blobs: whether every byte is in: then a transport error is only the answer's
     * end gone missing, and no reason to ask again (NULL: never) */
    bool (*complete)(const reg_req_t *q);
    int (*on_data)(reg_req_t *q, uint64_t offset, const char *buf, size_t len);
    reg_req_cb cb;
    void *data;

    unsigned attempt;           /* attempts made (back to 0 when a blob got further) */
    unsigned retries;           /* after errors, in all (attempt restarts), for messages */
    hero_http_req_t *http;      /* in flight, or NULL */
    uv_timer_t timer;           /* backoff */
    bool timer_used, waiting_timer;
    reg_tokfetch_t *waiting_token;
    bool done;                  /* cb has run (or is running) */
};

struct hero_registry {
    uv_loop_t *loop;
    hero_http_t *http;
    hero_registry_mirror_t *mirrors; /* deep copies */
    size_t n_mirrors;
    reg_cred_t *creds;
    size_t n_creds;
    unsigned max_downloads, attempts, backoff_ms, stall_ms;
    reg_token_t *tokens;
    reg_tokfetch_t *fetches;    /* token fetches in flight */
    char **basic_hosts;         /* hosts that asked for Basic: sent up front from then on */
    size_t n_basic_hosts;
    reg_req_t *reqs;            /* every request not yet released */
    reg_blob_t *queue_head, *queue_tail;  /* blob downloads waiting for a slot */
    reg_blob_t *waiting;        /* downloads another process is making (registry_blob.c) */
    unsigned downloads;         /* blob downloads running */
    unsigned live;              /* requests, blob ops: the client is freed at 0 once closed */
    bool closing, in_close;
    hero_registry_stats_t stats;
};

/* ---- registry.c: the engine ---- */

/* A request ready to send: fill the fields after kind/ep/url (all owned by q), then
 * reg_req_send. The callback runs exactly once; q is released right after it. */
reg_req_t *reg_req_new(hero_registry_t *r, reg_kind_t kind, const reg_endpoint_t *ep,
                       char *url, reg_req_cb cb, void *data);
void reg_req_send(reg_req_t *q);
/* Fails q with a copy of err (q is released after its callback). */
void reg_req_fail(reg_req_t *q, hero_error_t *err);
/* Stops q (its transfer, a retry timer, a token wait) and fails it with ECANCELED,
 * "METHOD URL: why"; its callback runs from inside this call. */
void reg_req_cancel(reg_req_t *q, const char *why);

/* err from an HTTP answer: "GET URL: HTTP 404: MANIFEST_UNKNOWN: manifest unknown". */
int reg_http_error(hero_error_t *err, const char *method, const char *url,
                   const hero_http_resp_t *resp);
/* Set err and its code (without strerror text). Returns -1. */
int reg_fail(hero_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int reg_endpoint_for(hero_registry_t *r, const hero_ref_t *ref, reg_endpoint_t *ep,
                     hero_error_t *err);
void reg_endpoint_free(reg_endpoint_t *ep);

void reg_ref(hero_registry_t *r);
void reg_unref(hero_registry_t *r);

/* ---- registry_auth.c ---- */

/* Loads a docker-style auth.json into r->creds (after what is there). A missing file
 * is fine. */
int reg_auth_load_json(hero_registry_t *r, const char *path, hero_error_t *err);
/* "docker.io" for every spelling of Docker Hub; scheme and path removed; lowercase. */
char *reg_auth_norm_host(const char *s);
const reg_cred_t *reg_auth_cred(const hero_registry_t *r, const reg_endpoint_t *ep);
/* "Basic base64(user:pass)" */
char *reg_auth_basic(const reg_cred_t *c);

typedef struct reg_challenge {
    char *scheme;      /* "bearer", "basic" (lowercased) */
    char *realm, *service, *scope;
} reg_challenge_t;

/* Parses the WWW-Authenticate headers of resp (a Bearer one preferred). */
int reg_challenge_parse(const hero_http_resp_t *resp, reg_challenge_t *c);
void reg_challenge_free(reg_challenge_t *c);

const reg_token_t *reg_token_find(hero_registry_t *r, const char *host, const char *scope);
void reg_token_put(hero_registry_t *r, const char *host, const char *scope, const char *value,
                   uint64_t ttl_ms);
void reg_token_drop(hero_registry_t *r, const char *host, const char *scope);
void reg_tokens_free(hero_registry_t *r);

/* Suspends q until a token for (host, scope) is at hand, fetching it (once for all
 * the requests waiting on the same key). q resumes with reg_req_send, or fails. */
void reg_token_wait(reg_req_t *q, const reg_challenge_t *c);
/* Removes q from the token fetch it waits on (cancel). */
void reg_token_unwait(reg_req_t *q);

/* ---- registry_blob.c ---- */

void reg_blob_cancel_queued(hero_registry_t *r);

#endif
