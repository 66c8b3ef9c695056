/* The registry client (see registry.h): the client object, endpoints (mirrors and
 * docker.io), the request engine (retries with backoff, 401 challenges, the token
 * cache) and resolving a reference to an image manifest and its config.
 *
 * Ownership: the client owns every request (r->reqs) until its callback has run
 * and its backoff timer is closed; `live` counts them with the blob operations, and
 * a closed client is freed when it reaches 0. A resolve operation is owned by the
 * request in flight for it: each request's callback either starts the next one or
 * finishes the operation. */
#include "registry_int.h"
#include "runtime/dlist.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

/* Without the OCI types distribution answers 404 MANIFEST_UNKNOWN for OCI images. */
static const char ACCEPT_MANIFESTS[] =
    "Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST;

enum {
    MANIFEST_MAX = 4 * 1024 * 1024, /* docker's own limit */
    CONFIG_MAX = 32 * 1024 * 1024,
    INDEX_DEPTH_MAX = 2,
    DEFAULT_DOWNLOADS = 6,
    DEFAULT_ATTEMPTS = 3,
    DEFAULT_BACKOFF_MS = 200,
    RETRY_AFTER_MAX_MS = 10000,
};

/* ---- errors ---- */

int reg_fail(hero_error_t *err, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *m = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_set(err, 0, "%s", m);
    err->code = code;
    free(m);
    return -1;
}

/* "CODE: message; CODE: message" from {"errors": [{"code", "message"}]}, or NULL. */
static char *registry_error_text(const hero_http_resp_t *resp)
{
    if (!resp->body_len)
        return NULL;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    json_t *errs = json_object_get(j, "errors");
    char *out = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!code && !msg)
            continue;
        char *one = hero_xasprintf("%s%s%s", code ? code : "", code && msg ? ": " : "",
                                   msg ? msg : "");
        char *next = out ? hero_xasprintf("%s; %s", out, one) : one;
        if (out) {
            free(out);
            free(one);
        }
        out = next;
    }
    if (!out && !j) {
        /* a short plain-text answer (a proxy's) is worth showing; HTML is not */
        const char *ct = hero_http_header(resp, "Content-Type");
        if (ct && !strncasecmp(ct, "text/plain", 10) && resp->body_len < 200) {
            out = hero_xstrdup(resp->body);
            out[strcspn(out, "\r\n")] = 0;
        }
    }
    json_decref(j);
    return out;
}

int reg_http_error(hero_error_t *err, const char *method, const char *url,
                   const hero_http_resp_t *resp)
{
    if (resp->error) {
        int code = resp->curl_code == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT
                   : resp->curl_code == CURLE_COULDNT_CONNECT  ? ECONNREFUSED
                                                               : EIO;
        return reg_fail(err, code, "%s %s: %s", method, url, resp->error);
    }
    int code = resp->status == 404                          ? ENOENT
               : resp->status == 401 || resp->status == 403 ? EACCES
                                                            : EIO;
    char *detail = registry_error_text(resp);
    reg_fail(err, code, "%s %s: HTTP %ld%s%s", method, url, resp->status, detail ? ": " : "",
             detail ? detail : "");
    free(detail);
    return -1;
}

/* ---- endpoints ---- */

static bool host_is_loopback(const char *host)
{
    if (!strncmp(host, "[::1]", 5))
        return true;
    size_t n = strcspn(host, ":");
    if (n == 9 && !strncmp(host, "localhost", 9))
        return true;
    return !strncmp(host, "127.", 4);
}

void reg_endpoint_free(reg_endpoint_t *ep)
{
    free(ep->base);
    free(ep->host);
    free(ep->repository);
    free(ep->registry);
    memset(ep, 0, sizeof(*ep));
}

int reg_endpoint_for(hero_registry_t *r, const hero_ref_t *ref, reg_endpoint_t *ep,
                     hero_error_t *err)
{
    memset(ep, 0, sizeof(*ep));
    char *name = hero_xasprintf("%s/%s", ref->registry, ref->repository);
    const hero_registry_mirror_t *m = NULL;
    size_t best = 0;
    for (size_t i = 0; i < r->n_mirrors; i++) {
        const char *p = r->mirrors[i].prefix;
        size_t n = strlen(p);
        while (n && p[n - 1] == '/')
            n--;
        if (n > best && !strncmp(name, p, n) && (name[n] == '/' || name[n] == 0)) {
            m = &r->mirrors[i];
            best = n;
        }
    }
    ep->registry = hero_xstrdup(ref->registry);
    if (!m) {
        const char *host = strcmp(ref->registry, "docker.io") ? ref->registry
                                                              : "registry-1.docker.io";
        ep->host = hero_xstrdup(host);
        ep->base = hero_xasprintf("%s://%s", host_is_loopback(host) ? "http" : "https", host);
        ep->repository = hero_xstrdup(ref->repository);
        free(name);
        return 0;
    }
    const char *loc = m->location;
    const char *scheme = m->insecure ? "http" : "https";
    if (!strncasecmp(loc, "http://", 7)) {
        scheme = "http";
        loc += 7;
    } else if (!strncasecmp(loc, "https://", 8)) {
        scheme = "https";
        loc += 8;
        ep->tls_no_verify = m->insecure;
    }
    size_t hn = strcspn(loc, "/");
    const char *lpath = loc[hn] == '/' ? loc + hn + 1 : "";
    const char *rest = name[best] == '/' ? name + best + 1 : "";
    if (hn == 0 || (!*lpath && !*rest)) {
        free(name);
        reg_endpoint_free(ep);
        return reg_fail(err, EINVAL, "mirror %s -> %s: no repository left for %s", m->prefix,
                        m->location, ref->canonical);
    }
    ep->host = hero_xstrndup(loc, hn);
    ep->mirrored = true;
    ep->base = hero_xasprintf("%s://%s", scheme, ep->host);
    size_t lp = strlen(lpath);
    while (lp && lpath[lp - 1] == '/')
        lp--;
    ep->repository = lp && *rest   ? hero_xasprintf("%.*s/%s", (int)lp, lpath, rest)
                     : lp          ? hero_xstrndup(lpath, lp)
                                   : hero_xstrdup(rest);
    free(name);
    return 0;
}

char *hero_registry_manifest_url(hero_registry_t *r, const hero_ref_t *ref)
{
    reg_endpoint_t ep;
    if (reg_endpoint_for(r, ref, &ep, NULL) < 0)
        return NULL;
    char *u = hero_xasprintf("%s/v2/%s/manifests/%s", ep.base, ep.repository,
                             ref->digest ? ref->digest : ref->tag);
    reg_endpoint_free(&ep);
    return u;
}

/* ---- the client ---- */

void reg_ref(hero_registry_t *r)
{
    r->live++;
}

static void reg_free(hero_registry_t *r)
{
    hero_http_close(r->http);
    for (size_t i = 0; i < r->n_mirrors; i++) {
        free((char *)r->mirrors[i].prefix);
        free((char *)r->mirrors[i].location);
    }
    free(r->mirrors);
    for (size_t i = 0; i < r->n_creds; i++) {
        free(r->creds[i].key);
        free(r->creds[i].user);
        free(r->creds[i].pass);
    }
    free(r->creds);
    for (size_t i = 0; i < r->n_basic_hosts; i++)
        free(r->basic_hosts[i]);
    free(r->basic_hosts);
    reg_tokens_free(r);
    free(r);
}

void reg_unref(hero_registry_t *r)
{
    if (--r->live == 0 && r->closing && !r->in_close)
        reg_free(r);
}

int hero_registry_new(uv_loop_t *loop, const hero_registry_config_t *cfg, hero_registry_t **out,
                      hero_error_t *err)
{
    static const hero_registry_config_t none = {0};
    if (!cfg)
        cfg = &none;
    *out = NULL;
    hero_registry_t *r = hero_xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->max_downloads = cfg->max_downloads ? cfg->max_downloads : DEFAULT_DOWNLOADS;
    r->attempts = cfg->attempts ? cfg->attempts : DEFAULT_ATTEMPTS;
    r->backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : DEFAULT_BACKOFF_MS;
    r->stall_ms = cfg->stall_timeout_ms;
    if (cfg->n_mirrors)
        r->mirrors = hero_xcalloc(cfg->n_mirrors, sizeof(*r->mirrors));
    for (size_t i = 0; i < cfg->n_mirrors; i++) {
        const hero_registry_mirror_t *m = &cfg->mirrors[i];
        if (!m->prefix || !m->location) {
            r->closing = true;
            reg_free(r);
            return hero_error_set(err, EINVAL, "mirror %zu needs a prefix and a location", i);
        }
        r->mirrors[i].prefix = hero_xstrdup(m->prefix);
        r->mirrors[i].location = hero_xstrdup(m->location);
        r->mirrors[i].insecure = m->insecure;
        r->n_mirrors++;
    }
    for (size_t i = 0; i < cfg->n_creds; i++) {
        const hero_registry_cred_t *c = &cfg->creds[i];
        if (!c->registry || !c->username)
            continue;
        r->creds = hero_xrealloc(r->creds, (r->n_creds + 1) * sizeof(*r->creds));
        reg_cred_t *d = &r->creds[r->n_creds++];
        d->key = reg_auth_norm_host(c->registry);
        d->user = hero_xstrdup(c->username);
        d->pass = hero_xstrdup(c->password ? c->password : "");
    }
    if ((cfg->auth_json && reg_auth_load_json(r, cfg->auth_json, err) < 0) ||
        hero_http_new(loop, &r->http, err) < 0) {
        r->closing = true;
        reg_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void hero_registry_stats(const hero_registry_t *r, hero_registry_stats_t *out)
{
    *out = r->stats;
}

/* ---- the request engine ---- */

reg_req_t *reg_req_new(hero_registry_t *r, reg_kind_t kind, const reg_endpoint_t *ep, char *url,
                       reg_req_cb cb, void *data)
{
    reg_req_t *q = hero_xcalloc(1, sizeof(*q));
    q->r = r;
    q->kind = kind;
    q->ep = ep;
    q->url = url;
    q->cb = cb;
    q->data = data;
    if (ep)
        q->scope = hero_xasprintf("repository:%s:pull", ep->repository);
    HERO_DLIST_PUSH(r->reqs, q);
    reg_ref(r);
    return q;
}

static void req_free(reg_req_t *q)
{
    hero_registry_t *r = q->r;
    free(q->url);
    free(q->accept);
    free(q->scope);
    free(q->authorization);
    free(q->basic);
    free(q);
    reg_unref(r);
}

static void on_req_timer_closed(uv_handle_t *h)
{
    req_free(h->data);
}

static void req_release(reg_req_t *q)
{
    hero_registry_t *r = q->r;
    HERO_DLIST_UNLINK(r->reqs, q);
    if (q->timer_used)
        uv_close((uv_handle_t *)&q->timer, on_req_timer_closed);
    else
        req_free(q);
}

static void req_deliver(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err)
{
    q->done = true;
    q->cb(q, resp, err);
    req_release(q);
}

void reg_req_fail(reg_req_t *q, hero_error_t *err)
{
    req_deliver(q, NULL, err);
}

static const char *req_method(const reg_req_t *q)
{
    return q->kind == REG_MANIFEST_HEAD ? "HEAD" : "GET";
}

static bool status_retryable(long s)
{
    return s == 429 || s == 500 || s == 502 || s == 503 || s == 504 || (s >= 506 && s <= 599);
}

/* Transport failures worth another attempt: not ours (an abort from the data
 * callback, a bad URL) and not a certificate that will be as wrong next time. */
static bool transport_retryable(int code)
{
    switch (code) {
    case CURLE_WRITE_ERROR:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_TOO_MANY_REDIRECTS:
        return false;
    default:
        return code != CURLE_OK;
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    reg_req_t *q = t->data;
    q->waiting_timer = false;
    reg_req_send(q);
}

static void req_retry_later(reg_req_t *q, const hero_http_resp_t *resp)
{
    hero_registry_t *r = q->r;
    uint64_t delay = q->attempt <= 1 ? r->backoff_ms : (uint64_t)r->backoff_ms * 5;
    const char *ra = hero_http_header(resp, "Retry-After");
    if (ra && resp->status == 429) {
        uint64_t s = strtoull(ra, NULL, 10) * 1000u;
        if (s > delay)
            delay = s < RETRY_AFTER_MAX_MS ? s : RETRY_AFTER_MAX_MS;
    }
    if (!q->timer_used) {
        uv_timer_init(r->loop, &q->timer);
        q->timer.data = q;
        q->timer_used = true;
    }
    /* a new attempt answers a challenge again: a long download's token may expire
     * before a resume, and the old Authorization then gets a 401 */
    q->auth_retried = false;
    q->waiting_timer = true;
    q->retries++;
    r->stats.retries++;
    uv_timer_start(&q->timer, on_retry_timer, delay, 0);
}

static bool basic_host_known(const hero_registry_t *r, const char *host)
{
    for (size_t i = 0; i < r->n_basic_hosts; i++)
        if (!strcmp(r->basic_hosts[i], host))
            return true;
    return false;
}

/* A 401: answer the challenge once. Returns true when q is on its way again. */
static bool req_answer_challenge(reg_req_t *q, const hero_http_resp_t *resp)
{
    hero_registry_t *r = q->r;
    reg_challenge_t c;
    if (q->kind == REG_TOKEN_GET || q->auth_retried || reg_challenge_parse(resp, &c) < 0)
        return false;
    bool sent = false;
    if (!strcmp(c.scheme, "bearer") && c.realm) {
        q->auth_retried = true;
        const reg_token_t *t = reg_token_find(r, q->ep->host, q->scope);
        char *fresh = t ? hero_xasprintf("Bearer %s", t->value) : NULL;
        if (fresh && q->authorization && !strcmp(fresh, q->authorization)) {
            /* the cached token was refused: it is stale, fetch another */
            reg_token_drop(r, q->ep->host, q->scope);
            free(fresh);
            fresh = NULL;
        }
        free(q->authorization);
        q->authorization = NULL;
        if (fresh) {
            /* another request refreshed it meanwhile */
            q->authorization = fresh;
            reg_req_send(q);
        } else {
            reg_token_wait(q, &c);
        }
        sent = true;
    } else if (!strcmp(c.scheme, "basic")) {
        const reg_cred_t *cred = reg_auth_cred(r, q->ep);
        if (cred) {
            q->auth_retried = true;
            if (!basic_host_known(r, q->ep->host)) {
                r->basic_hosts = hero_xrealloc(r->basic_hosts,
                                               (r->n_basic_hosts + 1) * sizeof(char *));
                r->basic_hosts[r->n_basic_hosts++] = hero_xstrdup(q->ep->host);
            }
            free(q->authorization);
            q->authorization = reg_auth_basic(cred);
            reg_req_send(q);
            sent = true;
        }
    }
    reg_challenge_free(&c);
    return sent;
}

/* Whether a 206's Content-Range ("bytes A-B/T") is a piece of a blob of `total` bytes
 * that ends before its end. Another total (the registry's blob is not the one the
 * manifest describes) is not: that goes on to the size check's clear error. */
static bool range_ends_early(const hero_http_resp_t *resp, uint64_t total)
{
    const char *v = hero_http_header(resp, "Content-Range");
    unsigned long long a, b, t;
    if (!v || sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) != 3)
        return false;
    return t == total && a <= b && b + 1 < t;
}

static void req_on_http(hero_http_req_t *h, const hero_http_resp_t *resp, void *data)
{
    (void)h;
    reg_req_t *q = data;
    hero_registry_t *r = q->r;
    q->http = NULL;
    bool transport = resp->error != NULL;
    if (transport && transport_retryable(resp->curl_code) &&
        (resp->status == 200 || resp->status == 206) && q->complete && q->complete(q)) {
        /* the body's end went missing (a chunked body's last chunk, or the connection
         * closed early), not a byte of it: a resume from the end would get a 416. What
         * came is checked as ever (the blob's size and digest). */
        hero_http_resp_t whole = *resp;
        whole.error = NULL;
        whole.curl_code = 0;
        req_deliver(q, &whole, NULL);
        return;
    }
    if (!transport && resp->status == 206 && q->progress && q->expected &&
        *q->progress < q->expected && *q->progress > q->progress_mark &&
        range_ends_early(resp, q->expected)) {
        /* a 206 that ended cleanly before the blob's end, having brought some of it (a
         * server that sends ranges in pieces): the rest is asked for at once, which is
         * no failed attempt (prepare sets the Range from the bytes stored) */
        q->attempt = 0;
        q->auth_retried = false;
        reg_req_send(q);
        return;
    }
    if ((transport && transport_retryable(resp->curl_code)) ||
        (!transport && status_retryable(resp->status))) {
        if (q->progress && *q->progress > q->progress_mark)
            q->attempt = 0; /* a resumable transfer got further: not a wasted attempt */
        if (q->attempt < r->attempts) {
            req_retry_later(q, resp);
            return;
        }
    }
    if (transport || (status_retryable(resp->status) && q->attempt > 1)) {
        /* out of attempts: the last answer is the error */
        hero_error_t e = HERO_ERROR_INIT;
        reg_http_error(&e, req_method(q), q->url, resp);
        if (q->retries)
            hero_error_wrap(&e, "after %u attempts", q->retries + 1);
        req_deliver(q, NULL, &e);
        hero_error_clear(&e);
        return;
    }
    if (resp->status == 401 && req_answer_challenge(q, resp))
        return;
    req_deliver(q, resp, NULL);
}

static int req_on_data(hero_http_req_t *h, const hero_http_resp_t *resp, uint64_t offset,
                       const char *buf, size_t len, void *data)
{
    (void)h;
    (void)resp;
    reg_req_t *q = data;
    return q->on_data(q, offset, buf, len);
}

void reg_req_send(reg_req_t *q)
{
    hero_registry_t *r = q->r;
    hero_error_t e = HERO_ERROR_INIT;
    if (r->closing) {
        reg_fail(&e, ECANCELED, "%s %s: cancelled (the registry client was closed)",
                 req_method(q), q->url);
        req_deliver(q, NULL, &e);
        hero_error_clear(&e);
        return;
    }
    if (q->prepare)
        q->prepare(q);
    if (q->progress)
        q->progress_mark = *q->progress;
    const char *auth = q->authorization;
    if (q->kind == REG_TOKEN_GET) {
        auth = q->basic;
    } else if (!auth) {
        const reg_token_t *t = reg_token_find(r, q->ep->host, q->scope);
        const reg_cred_t *cred;
        if (t) {
            q->authorization = hero_xasprintf("Bearer %s", t->value);
            q->used_cached_token = true;
        } else if (basic_host_known(r, q->ep->host) && (cred = reg_auth_cred(r, q->ep))) {
            q->authorization = reg_auth_basic(cred);
        }
        auth = q->authorization;
    }
    const char *headers[2] = {q->accept, NULL};
    hero_http_opts_t o = {
        .url = q->url,
        .method = req_method(q),
        .headers = q->accept ? headers : NULL,
        .authorization = auth,
        .fd = q->fd,
        .max_body = q->max_body,
        .range_from = q->range_from,
        .tls_no_verify = q->ep && q->ep->tls_no_verify,
        .stall_timeout_ms = r->stall_ms,
        .on_data = q->on_data ? req_on_data : NULL,
    };
    q->attempt++;
    r->stats.requests++;
    switch (q->kind) {
    case REG_MANIFEST_HEAD:
        r->stats.manifest_heads++;
        break;
    case REG_MANIFEST_GET:
        r->stats.manifest_gets++;
        break;
    case REG_BLOB_GET:
        r->stats.blob_gets++;
        if (q->range_from)
            r->stats.resumes++;
        break;
    case REG_TOKEN_GET:
        r->stats.token_fetches++;
        break;
    }
    if (hero_http_start(r->http, &o, req_on_http, q, &q->http, &e) < 0) {
        hero_error_wrap(&e, "%s %s", req_method(q), q->url);
        req_deliver(q, NULL, &e);
        hero_error_clear(&e);
    }
}

void reg_req_cancel(reg_req_t *q, const char *why)
{
    if (q->http) {
        hero_http_cancel(q->http);
        q->http = NULL;
    }
    if (q->waiting_timer) {
        uv_timer_stop(&q->timer);
        q->waiting_timer = false;
    }
    reg_token_unwait(q);
    hero_error_t e = HERO_ERROR_INIT;
    reg_fail(&e, ECANCELED, "%s %s: %s", req_method(q), q->url, why);
    req_deliver(q, NULL, &e);
    hero_error_clear(&e);
}

void hero_registry_close(hero_registry_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->in_close = true;
    reg_blob_cancel_queued(r);
    for (;;) {
        reg_req_t *q = r->reqs;
        while (q && q->done)
            q = q->next;
        if (!q)
            break;
        reg_req_cancel(q, "cancelled (the registry client was closed)");
    }
    r->in_close = false;
    if (r->live == 0)
        reg_free(r);
}

/* ---- resolving a reference ---- */

typedef struct resolve_op {
    hero_registry_t *r;
    reg_endpoint_t ep;
    char *reference;        /* the tag or digest asked for */
    char *pinned;           /* the reference's digest, or NULL */
    hero_platform_t plat;
    char *known;
    hero_registry_resolve_cb cb;
    hero_registry_manifest_cb manifest_cb;
    void *data;
    hero_registry_image_t *img;
    unsigned depth;         /* indexes followed */
    char *want_digest;      /* the manifest being fetched must have this digest */
    int64_t want_size;      /* and this size (-1: unknown) */
} resolve_op_t;

void hero_registry_image_free(hero_registry_image_t *img)
{
    if (!img)
        return;
    free(img->ref_digest);
    free(img->manifest_digest);
    free(img->manifest_media_type);
    free(img->manifest);
    free(img->config_digest);
    free(img->config);
    for (size_t i = 0; i < img->n_layers; i++) {
        free(img->layers[i].digest);
        free(img->layers[i].media_type);
    }
    free(img->layers);
    free(img);
}

static void resolve_free(resolve_op_t *op)
{
    reg_endpoint_free(&op->ep);
    free(op->reference);
    free(op->pinned);
    hero_platform_free(&op->plat);
    free(op->known);
    free(op->want_digest);
    hero_registry_image_free(op->img);
    free(op);
}

/* Ends the operation: exactly one of img and err is set. */
static void resolve_finish(resolve_op_t *op, hero_error_t *err)
{
    hero_registry_image_t *img = NULL;
    if (!err) {
        img = op->img;
        op->img = NULL;
    }
    op->cb(img, err, op->data);
    resolve_free(op);
}

static void resolve_fail(resolve_op_t *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void resolve_fail(resolve_op_t *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_t e = HERO_ERROR_INIT;
    reg_fail(&e, code, "%s", m);
    free(m);
    resolve_finish(op, &e);
    hero_error_clear(&e);
}

static void on_manifest(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err);
static void on_head(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err);

static void resolve_request(resolve_op_t *op, reg_kind_t kind, const char *reference)
{
    char *url = hero_xasprintf("%s/v2/%s/manifests/%s", op->ep.base, op->ep.repository,
                               reference);
    reg_req_t *q = reg_req_new(op->r, kind, &op->ep, url,
                               kind == REG_MANIFEST_HEAD ? on_head : on_manifest, op);
    q->accept = hero_xstrdup(ACCEPT_MANIFESTS);
    q->max_body = MANIFEST_MAX;
    reg_req_send(q);
}

static void on_head(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err)
{
    resolve_op_t *op = q->data;
    if (err) { /* after its retries: a GET would not fare better */
        resolve_finish(op, err);
        return;
    }
    const char *d = resp ? hero_http_header(resp, "Docker-Content-Digest") : NULL;
    if (resp && resp->status == 200 && d && !strcmp(d, op->known)) {
        op->img->unchanged = true;
        op->img->ref_digest = hero_xstrdup(d);
        resolve_finish(op, NULL);
        return;
    }
    /* changed, or the HEAD told us nothing (no digest header, an error without a
     * body): the GET gives the answer and the registry's own error text */
    resolve_request(op, REG_MANIFEST_GET, op->reference);
}

static bool is_index_type(const char *mt)
{
    return !strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST);
}

static bool is_manifest_type(const char *mt)
{
    return !strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST);
}

/* The manifest's media type: Content-Type when it names a manifest type, else the
 * document's mediaType, else guessed from its shape (OCI allows mediaType absent). */
static char *manifest_media_type(const hero_http_resp_t *resp, json_t *j)
{
    const char *ct = hero_http_header(resp, "Content-Type");
    if (ct) {
        char *t = hero_xstrndup(ct, strcspn(ct, "; \t"));
        if (is_index_type(t) || is_manifest_type(t) || !strcmp(t, MT_DOCKER_V1) ||
            !strcmp(t, MT_DOCKER_V1_SIGNED))
            return t;
        free(t);
    }
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    if (mt)
        return hero_xstrdup(mt);
    if (json_object_get(j, "manifests"))
        return hero_xstrdup(MT_OCI_INDEX);
    if (json_object_get(j, "config"))
        return hero_xstrdup(MT_OCI_MANIFEST);
    if (json_integer_value(json_object_get(j, "schemaVersion")) == 1)
        return hero_xstrdup(MT_DOCKER_V1);
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* arm64's default variant is v8; arm's is v7. */
static const char *variant_norm(const char *arch, const char *v)
{
    if (v && !*v)
        v = NULL;
    if (str_eq(arch, "arm64") && str_eq(v, "v8"))
        return NULL;
    if (str_eq(arch, "arm") && !v)
        return "v7";
    return v;
}

/* The index entry for the platform, or NULL; `seen` lists the platforms offered. */
static json_t *pick_platform(json_t *index, const hero_platform_t *want, char **seen)
{
    json_t *best = NULL, *m;
    int best_score = 0;
    size_t i;
    const char *wv = variant_norm(want->arch, want->variant);
    *seen = NULL;
    json_array_foreach(json_object_get(index, "manifests"), i, m)
    {
        const char *mt = json_string_value(json_object_get(m, "mediaType"));
        if (mt && !is_manifest_type(mt) && !is_index_type(mt))
            continue;
        const char *rt = json_string_value(
            json_object_get(json_object_get(m, "annotations"), "vnd.docker.reference.type"));
        if (str_eq(rt, "attestation-manifest"))
            continue;
        json_t *p = json_object_get(m, "platform");
        const char *os = json_string_value(json_object_get(p, "os"));
        const char *arch = json_string_value(json_object_get(p, "architecture"));
        const char *var = json_string_value(json_object_get(p, "variant"));
        if (!os || !arch || !strcmp(os, "unknown") || !strcmp(arch, "unknown"))
            continue;
        char *s = hero_xasprintf("%s%s%s/%s%s%s", *seen ? *seen : "", *seen ? ", " : "", os,
                                 arch, var ? "/" : "", var ? var : "");
        free(*seen);
        *seen = s;
        if (strcmp(os, want->os) != 0 || strcmp(arch, want->arch) != 0)
            continue;
        const char *v = variant_norm(arch, var);
        if (wv && v && strcmp(wv, v) != 0)
            continue;
        int score = (!wv && !v) || (wv && v) ? 2 : 1; /* an exact variant wins */
        if (score > best_score) {
            best = m;
            best_score = score;
        }
    }
    return best;
}

static void on_config(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err)
{
    resolve_op_t *op = q->data;
    hero_registry_image_t *img = op->img;
    if (err) {
        resolve_finish(op, err);
        return;
    }
    if (resp->status != 200) {
        hero_error_t e = HERO_ERROR_INIT;
        reg_http_error(&e, "GET", q->url, resp);
        resolve_finish(op, &e);
        hero_error_clear(&e);
        return;
    }
    char got[HERO_SHA256_HEX_LEN];
    hero_sha256_hex(resp->body, resp->body_len, got);
    if (strcmp(got, img->config_digest) != 0) {
        resolve_fail(op, EBADMSG, "GET %s: digest mismatch for config %s: got %s", q->url,
                     img->config_digest, got);
        return;
    }
    img->config = hero_xstrndup(resp->body, resp->body_len);
    img->config_len = resp->body_len;
    resolve_finish(op, NULL);
}

/* An image manifest: keep it, list its layers, fetch its config. */
static void resolve_image_manifest(resolve_op_t *op, reg_req_t *q, const hero_http_resp_t *resp,
                                   json_t *j, char *mt, const char *digest)
{
    hero_registry_image_t *img = op->img;
    img->manifest_digest = hero_xstrdup(digest);
    img->manifest_media_type = mt;
    img->manifest = hero_xstrndup(resp->body, resp->body_len);
    img->manifest_len = resp->body_len;
    json_t *cfg = json_object_get(j, "config");
    const char *cd = json_string_value(json_object_get(cfg, "digest"));
    const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
    json_int_t csize = json_integer_value(json_object_get(cfg, "size"));
    if (!cd || hero_sha256_digest_problem(cd) || !json_is_integer(json_object_get(cfg, "size")) ||
        csize <= 0) {
        resolve_fail(op, EPROTO, "GET %s: the manifest has no usable config descriptor", q->url);
        return;
    }
    if (cmt && strcmp(cmt, MT_OCI_CONFIG) != 0 && strcmp(cmt, MT_DOCKER_CONFIG) != 0) {
        resolve_fail(op, EPROTO, "GET %s: not a container image (config media type %s)",
                     q->url, cmt);
        return;
    }
    if (csize > CONFIG_MAX) {
        resolve_fail(op, EPROTO, "GET %s: the image config is too large (%lld bytes)", q->url,
                     (long long)csize);
        return;
    }
    json_t *layers = json_object_get(j, "layers"), *l;
    size_t i;
    if (!json_is_array(layers)) {
        resolve_fail(op, EPROTO, "GET %s: the manifest has no layers array", q->url);
        return;
    }
    img->layers = hero_xcalloc(json_array_size(layers) + 1, sizeof(*img->layers));
    json_array_foreach(layers, i, l)
    {
        const char *ld = json_string_value(json_object_get(l, "digest"));
        const char *lmt = json_string_value(json_object_get(l, "mediaType"));
        json_t *ls = json_object_get(l, "size");
        if (!ld || hero_sha256_digest_problem(ld) || !json_is_integer(ls) ||
            json_integer_value(ls) < 0) {
            resolve_fail(op, EPROTO, "GET %s: layer %zu has no usable digest and size", q->url,
                         i);
            return;
        }
        hero_registry_layer_t *dst = &img->layers[img->n_layers++];
        dst->digest = hero_xstrdup(ld);
        dst->size = (int64_t)json_integer_value(ls);
        dst->media_type = hero_xstrdup(lmt ? lmt : "application/vnd.oci.image.layer.v1.tar+gzip");
    }
    img->config_digest = hero_xstrdup(cd);
    /* before the config's request: a failed send delivers at once and frees op */
    if (op->manifest_cb)
        op->manifest_cb(img, op->data);
    char *url = hero_xasprintf("%s/v2/%s/blobs/%s", op->ep.base, op->ep.repository, cd);
    reg_req_t *c = reg_req_new(op->r, REG_BLOB_GET, &op->ep, url, on_config, op);
    c->max_body = (size_t)csize;
    reg_req_send(c);
}

static void on_manifest(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err)
{
    resolve_op_t *op = q->data;
    if (err) {
        resolve_finish(op, err);
        return;
    }
    if (resp->status != 200) {
        hero_error_t e = HERO_ERROR_INIT;
        reg_http_error(&e, "GET", q->url, resp);
        resolve_finish(op, &e);
        hero_error_clear(&e);
        return;
    }
    char got[HERO_SHA256_HEX_LEN];
    hero_sha256_hex(resp->body, resp->body_len, got);
    const char *hd = hero_http_header(resp, "Docker-Content-Digest");
    const char *expect = op->want_digest                       ? op->want_digest
                         : hd && !strncmp(hd, "sha256:", 7) ? hd
                                                              : NULL;
    if (expect && strcmp(expect, got) != 0) {
        resolve_fail(op, EBADMSG, "GET %s: digest mismatch for manifest %s: got %s", q->url,
                     expect, got);
        return;
    }
    if (op->want_size >= 0 && (uint64_t)op->want_size != resp->body_len) {
        resolve_fail(op, EBADMSG, "GET %s: size mismatch for manifest %s: %lld bytes, got %zu",
                     q->url, got, (long long)op->want_size, resp->body_len);
        return;
    }
    if (!op->img->ref_digest)
        op->img->ref_digest = hero_xstrdup(got);
    json_error_t je;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        resolve_fail(op, EPROTO, "GET %s: the manifest is not a JSON object", q->url);
        return;
    }
    char *mt = manifest_media_type(resp, j);
    if (mt && is_index_type(mt)) {
        char *seen = NULL;
        json_t *m = pick_platform(j, &op->plat, &seen);
        const char *d = json_string_value(json_object_get(m, "digest"));
        json_t *sz = json_object_get(m, "size");
        if (!m) {
            resolve_fail(op, ENOENT, "GET %s: no image for %s/%s%s%s in the index (it has %s)",
                         q->url, op->plat.os, op->plat.arch, op->plat.variant ? "/" : "",
                         op->plat.variant ? op->plat.variant : "", seen ? seen : "none");
        } else if (op->depth >= INDEX_DEPTH_MAX) {
            resolve_fail(op, EPROTO, "GET %s: indexes nested too deep", q->url);
        } else if (!d || hero_sha256_digest_problem(d)) {
            resolve_fail(op, EPROTO, "GET %s: the index entry has no usable digest", q->url);
        } else {
            op->depth++;
            free(op->want_digest);
            op->want_digest = hero_xstrdup(d);
            op->want_size = json_is_integer(sz) ? (int64_t)json_integer_value(sz) : -1;
            resolve_request(op, REG_MANIFEST_GET, d);
        }
        free(seen);
        free(mt);
    } else if (mt && is_manifest_type(mt)) {
        resolve_image_manifest(op, q, resp, j, mt, got); /* takes mt */
    } else if (mt && (!strcmp(mt, MT_DOCKER_V1) || !strcmp(mt, MT_DOCKER_V1_SIGNED))) {
        resolve_fail(op, EPROTO, "GET %s: Docker schema 1 manifests are not supported", q->url);
        free(mt);
    } else {
        resolve_fail(op, EPROTO, "GET %s: unsupported manifest type %s", q->url,
                     mt ? mt : "(none)");
        free(mt);
    }
    json_decref(j);
}

void hero_registry_resolve(hero_registry_t *r, const hero_ref_t *ref,
                           const hero_registry_resolve_opts_t *opts, hero_registry_resolve_cb cb,
                           void *data)
{
    static const hero_registry_resolve_opts_t none = {0};
    hero_error_t e = HERO_ERROR_INIT;
    if (!opts)
        opts = &none;
    if (!ref || !ref->registry || !ref->repository || (!ref->tag && !ref->digest)) {
        reg_fail(&e, EINVAL, "an image reference needs a registry, a repository and a tag "
                             "or digest (use hero_ref_parse)");
        cb(NULL, &e, data);
        hero_error_clear(&e);
        return;
    }
    if (r->closing) {
        reg_fail(&e, ECANCELED, "%s: the registry client is closed", ref->canonical);
        cb(NULL, &e, data);
        hero_error_clear(&e);
        return;
    }
    resolve_op_t *op = hero_xcalloc(1, sizeof(*op));
    op->r = r;
    op->cb = cb;
    op->manifest_cb = opts->manifest;
    op->data = data;
    op->want_size = -1;
    op->img = hero_xcalloc(1, sizeof(*op->img));
    op->reference = hero_xstrdup(ref->digest ? ref->digest : ref->tag);
    op->pinned = ref->digest ? hero_xstrdup(ref->digest) : NULL;
    op->want_digest = ref->digest ? hero_xstrdup(ref->digest) : NULL;
    op->known = opts->known_digest ? hero_xstrdup(opts->known_digest) : NULL;
    int rc = opts->platform ? hero_platform_parse(opts->platform, &op->plat, &e) : 0;
    if (!opts->platform)
        hero_platform_host(&op->plat);
    if (rc == 0)
        rc = reg_endpoint_for(r, ref, &op->ep, &e);
    if (rc < 0) {
        resolve_finish(op, &e);
        hero_error_clear(&e);
        return;
    }
    if (op->known && op->pinned && !strcmp(op->known, op->pinned)) {
        /* content-addressed: a pinned digest that is already here cannot change */
        op->img->unchanged = true;
        op->img->ref_digest = hero_xstrdup(op->pinned);
        resolve_finish(op, NULL);
        return;
    }
    resolve_request(op, op->known && !op->pinned ? REG_MANIFEST_HEAD : REG_MANIFEST_GET,
                    op->reference);
}
