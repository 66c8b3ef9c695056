/* Registry authentication: credentials (config entries and a docker-style
 * auth.json), WWW-Authenticate challenges, and bearer tokens, cached per
 * (registry host, scope) and fetched once for every request that waits on the same
 * key (https://distribution.github.io/distribution/spec/auth/token/). */
#include "registry_int.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Tokens live at least this long (the spec's default when expires_in is missing),
 * and are dropped a little before the server's expiry. */
enum { TOKEN_MIN_TTL_S = 60, TOKEN_MARGIN_MS = 5000, TOKEN_BODY_MAX = 1024 * 1024 };

struct reg_tokfetch {
    char *host, *scope;
    reg_req_t **waiters;
    size_t n, cap;
    reg_tokfetch_t *next;
};

/* ---- base64 ---- */

/* Standard base64 with padding (RFC 4648), for "Authorization: Basic". */
static char *b64_encode(const char *s, size_t n)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)s;
    char *out = hero_xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)u[i + 1] << 8;
        if (i + 2 < n)
            v |= u[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL alphabet, padding optional. NULL on bad input. */
static char *b64_decode(const char *s, size_t *outlen)
{
    size_t n = strlen(s);
    char *out = hero_xmalloc(n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64_value(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = 0;
    *outlen = o;
    return out;
}

/* ---- credentials ---- */

char *reg_auth_norm_host(const char *s)
{
    if (!strncasecmp(s, "https://", 8))
        s += 8;
    else if (!strncasecmp(s, "http://", 7))
        s += 7;
    size_t n = strcspn(s, "/");
    char *h = hero_xstrndup(s, n);
    for (char *c = h; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!strcmp(h, "index.docker.io") || !strcmp(h, "registry-1.docker.io") ||
        !strcmp(h, "registry.hub.docker.com")) {
        free(h);
        h = hero_xstrdup("docker.io");
    }
    return h;
}

static void cred_add(hero_registry_t *r, const char *key, const char *user, const char *pass)
{
    r->creds = hero_xrealloc(r->creds, (r->n_creds + 1) * sizeof(*r->creds));
    reg_cred_t *c = &r->creds[r->n_creds++];
    c->key = reg_auth_norm_host(key);
    c->user = hero_xstrdup(user);
    c->pass = hero_xstrdup(pass);
}

int reg_auth_load_json(hero_registry_t *r, const char *path, hero_error_t *err)
{
    struct stat st;
    if (stat(path, &st) < 0 && errno == ENOENT)
        return 0;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return hero_error_set(err, 0, "%s:%d: %s", path, je.line, je.text);
    json_t *auths = json_object_get(root, "auths");
    if (auths && !json_is_object(auths)) {
        json_decref(root);
        return hero_error_set(err, 0, "%s: \"auths\" is not an object", path);
    }
    const char *key;
    json_t *v;
    json_object_foreach(auths, key, v)
    {
        const char *auth = json_string_value(json_object_get(v, "auth"));
        const char *user = json_string_value(json_object_get(v, "username"));
        const char *pass = json_string_value(json_object_get(v, "password"));
        if (auth && *auth) {
            size_t n;
            char *plain = b64_decode(auth, &n);
            char *colon = plain && strlen(plain) == n ? strchr(plain, ':') : NULL;
            if (!colon) {
                free(plain);
                hero_error_set(err, 0, "%s: the \"auth\" of %s is not base64(user:password)",
                               path, key); /* key lives in root: report before freeing it */
                json_decref(root);
                return -1;
            }
            *colon = 0;
            cred_add(r, key, plain, colon + 1);
            free(plain);
        } else if (user && pass) {
            cred_add(r, key, user, pass);
        }
        /* identitytoken and credential helpers are not supported: entry ignored */
    }
    json_decref(root);
    return 0;
}

/* The host hero talks to first, then (not for a mirror: its operator must not see
 * the origin's password) the reference's registry name. */
const reg_cred_t *reg_auth_cred(const hero_registry_t *r, const reg_endpoint_t *ep)
{
    char *keys[2] = {reg_auth_norm_host(ep->host), reg_auth_norm_host(ep->registry)};
    const reg_cred_t *found = NULL;
    for (size_t k = 0; k < (ep->mirrored ? 1u : 2u) && !found; k++)
        for (size_t i = 0; i < r->n_creds && !found; i++)
            if (!strcmp(r->creds[i].key, keys[k]))
                found = &r->creds[i];
    free(keys[0]);
    free(keys[1]);
    return found;
}

char *reg_auth_basic(const reg_cred_t *c)
{
    char *plain = hero_xasprintf("%s:%s", c->user, c->pass);
    char *b = b64_encode(plain, strlen(plain));
    char *out = hero_xasprintf("Basic %s", b);
    free(plain);
    free(b);
    return out;
}

/* ---- challenges ---- */

void reg_challenge_free(reg_challenge_t *c)
{
    free(c->scheme);
    free(c->realm);
    free(c->service);
    free(c->scope);
    memset(c, 0, sizeof(*c));
}

/* One challenge: scheme, then key=value or key="quoted \"value\"" pairs split by
 * commas. Returns 0 when a scheme was found. */
static int challenge_parse_one(const char *s, reg_challenge_t *c)
{
    memset(c, 0, sizeof(*c));
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, " \t");
    if (n == 0)
        return -1;
    c->scheme = hero_xstrndup(s, n);
    for (char *x = c->scheme; *x; x++)
        *x = (char)tolower((unsigned char)*x);
    s += n;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            break;
        size_t kn = strcspn(s, "= \t,");
        const char *k = s;
        s += kn;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=')
            continue; /* a bare token: skip it */
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        char *val;
        if (*s == '"') {
            s++;
            val = hero_xmalloc(strlen(s) + 1);
            size_t o = 0;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1])
                    s++;
                val[o++] = *s++;
            }
            val[o] = 0;
            if (*s == '"')
                s++;
        } else {
            size_t vn = strcspn(s, ", \t");
            val = hero_xstrndup(s, vn);
            s += vn;
        }
        char **slot = NULL;
        if (kn == 5 && !strncasecmp(k, "realm", 5))
            slot = &c->realm;
        else if (kn == 7 && !strncasecmp(k, "service", 7))
            slot = &c->service;
        else if (kn == 5 && !strncasecmp(k, "scope", 5))
            slot = &c->scope;
        if (slot && !*slot)
            *slot = val;
        else
            free(val);
    }
    return 0;
}

int reg_challenge_parse(const hero_http_resp_t *resp, reg_challenge_t *c)
{
    memset(c, 0, sizeof(*c));
    int found = -1;
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (strcasecmp(resp->headers[i].name, "WWW-Authenticate") != 0)
            continue;
        reg_challenge_t one;
        if (challenge_parse_one(resp->headers[i].value, &one) < 0)
            continue;
        bool bearer = !strcmp(one.scheme, "bearer");
        if (found < 0 || (bearer && strcmp(c->scheme, "bearer") != 0)) {
            reg_challenge_free(c);
            *c = one;
            found = 0;
        } else {
            reg_challenge_free(&one);
        }
    }
    return found;
}

/* ---- the token cache ---- */

const reg_token_t *reg_token_find(hero_registry_t *r, const char *host, const char *scope)
{
    uint64_t now = uv_now(r->loop);
    for (reg_token_t *t = r->tokens; t; t = t->next)
        if (!strcmp(t->host, host) && !strcmp(t->scope, scope))
            return t->expires_ms > now ? t : NULL;
    return NULL;
}

void reg_token_drop(hero_registry_t *r, const char *host, const char *scope)
{
    for (reg_token_t **p = &r->tokens; *p; p = &(*p)->next) {
        reg_token_t *t = *p;
        if (!strcmp(t->host, host) && !strcmp(t->scope, scope)) {
            *p = t->next;
            free(t->host);
            free(t->scope);
            free(t->value);
            free(t);
            return;
        }
    }
}

void reg_token_put(hero_registry_t *r, const char *host, const char *scope, const char *value,
                   uint64_t ttl_ms)
{
    reg_token_drop(r, host, scope);
    reg_token_t *t = hero_xcalloc(1, sizeof(*t));
    t->host = hero_xstrdup(host);
    t->scope = hero_xstrdup(scope);
    t->value = hero_xstrdup(value);
    t->expires_ms = uv_now(r->loop) + ttl_ms;
    t->next = r->tokens;
    r->tokens = t;
}

void reg_tokens_free(hero_registry_t *r)
{
    while (r->tokens) {
        reg_token_t *t = r->tokens;
        r->tokens = t->next;
        free(t->host);
        free(t->scope);
        free(t->value);
        free(t);
    }
}

/* ---- fetching a token ---- */

static char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = hero_xmalloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~') {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = 0;
    return out;
}

static void tokfetch_free(reg_tokfetch_t *f)
{
    free(f->host);
    free(f->scope);
    free(f->waiters);
    free(f);
}

static void tokfetch_unlink(hero_registry_t *r, reg_tokfetch_t *f)
{
    for (reg_tokfetch_t **p = &r->fetches; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            return;
        }
}

void reg_token_unwait(reg_req_t *q)
{
    reg_tokfetch_t *f = q->waiting_token;
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        if (f->waiters[i] == q) {
            memmove(&f->waiters[i], &f->waiters[i + 1], (f->n - i - 1) * sizeof(*f->waiters));
            f->n--;
            break;
        }
    q->waiting_token = NULL;
}

/* The token answer: {"token": "..."} or {"access_token": "..."}, "expires_in" s. */
static int token_parse(const hero_http_resp_t *resp, char **token, uint64_t *ttl_ms,
                       hero_error_t *err)
{
    json_error_t je;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &je);
    const char *t = NULL;
    if (j) {
        t = json_string_value(json_object_get(j, "token"));
        if (!t || !*t)
            t = json_string_value(json_object_get(j, "access_token"));
    }
    if (!t || !*t) {
        json_decref(j);
        return reg_fail(err, EPROTO, "GET %s: the token server's answer has no token",
                        resp->url);
    }
    json_int_t exp = json_integer_value(json_object_get(j, "expires_in"));
    if (exp < TOKEN_MIN_TTL_S)
        exp = TOKEN_MIN_TTL_S;
    *token = hero_xstrdup(t);
    *ttl_ms = (uint64_t)exp * 1000u - TOKEN_MARGIN_MS;
    json_decref(j);
    return 0;
}

static void token_done(reg_req_t *t, const hero_http_resp_t *resp, hero_error_t *err)
{
    reg_tokfetch_t *f = t->data;
    hero_registry_t *r = t->r;
    tokfetch_unlink(r, f);
    hero_error_t e = HERO_ERROR_INIT;
    char *token = NULL;
    uint64_t ttl = 0;
    if (err) {
        reg_fail(&e, err->code, "%s", err->msg);
    } else if (resp->status != 200) {
        reg_http_error(&e, "GET", resp->url, resp);
    } else if (token_parse(resp, &token, &ttl, &e) == 0) {
        reg_token_put(r, f->host, f->scope, token, ttl);
    }
    if (e.msg)
        hero_error_wrap(&e, "cannot get a token for %s", f->scope);
    /* One waiter at a time: a waiter's callback may close the client, which removes
     * the others from f (reg_token_unwait) before we reach them. */
    while (f->n > 0) {
        reg_req_t *w = f->waiters[0];
        reg_token_unwait(w);
        if (token) {
            free(w->authorization);
            w->authorization = hero_xasprintf("Bearer %s", token);
            w->used_cached_token = false;
            reg_req_send(w);
        } else {
            hero_error_t we = HERO_ERROR_INIT;
            reg_fail(&we, e.code, "%s", e.msg);
            reg_req_fail(w, &we);
            hero_error_clear(&we);
        }
    }
    free(token);
    hero_error_clear(&e);
    tokfetch_free(f);
}

void reg_token_wait(reg_req_t *q, const reg_challenge_t *c)
{
    hero_registry_t *r = q->r;
    if (c->scope && strcmp(c->scope, q->scope) != 0) {
        free(q->scope); /* the registry knows best which scope this needs */
        q->scope = hero_xstrdup(c->scope);
    }
    reg_tokfetch_t *f;
    for (f = r->fetches; f; f = f->next)
        if (!strcmp(f->host, q->ep->host) && !strcmp(f->scope, q->scope))
            break;
    bool start = !f;
    if (start) {
        f = hero_xcalloc(1, sizeof(*f));
        f->host = hero_xstrdup(q->ep->host);
        f->scope = hero_xstrdup(q->scope);
        f->next = r->fetches;
        r->fetches = f;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4;
        f->waiters = hero_xrealloc(f->waiters, f->cap * sizeof(*f->waiters));
    }
    f->waiters[f->n++] = q;
    q->waiting_token = f;
    if (!start)
        return;

    char *svc = c->service ? url_escape(c->service) : NULL;
    char *scope = url_escape(q->scope);
    char *url = hero_xasprintf("%s%s%s%s%sscope=%s", c->realm, strchr(c->realm, '?') ? "&" : "?",
                               svc ? "service=" : "", svc ? svc : "", svc ? "&" : "", scope);
    free(svc);
    free(scope);
    reg_req_t *t = reg_req_new(r, REG_TOKEN_GET, NULL, url, token_done, f);
    t->max_body = TOKEN_BODY_MAX;
    const reg_cred_t *cred = reg_auth_cred(r, q->ep);
    if (cred)
        t->basic = reg_auth_basic(cred);
    reg_req_send(t);
}
