/* Private to the HTTP client (runtime/http*.c: http.c the requests and curl,
 * http_plain.c hero's own HTTP/1.1, http_url.c URLs): the client and request
 * objects, and what the two transports share. Not a public header.
 *
 * A request is a chain of hops (one per redirect). http.c owns the request: its
 * options, the redirect rules, the response headers and the body sink. Each hop runs
 * on one of two transports:
 *   - hero's own HTTP/1.1 over a uv_tcp_t (http_plain.c), for http:// URLs when no
 *     proxy variable is set: a plain-http registry (a local mirror) is the common
 *     case of a lab, and this path needs no library at all;
 *   - libcurl's multi interface on the loop (http.c), for everything else (https,
 *     proxies), loaded on its first use (curl and its ~30 libraries cost 10 ms).
 * Both report through the same few calls (http_req_*), so a request behaves the
 * same whichever transport carried it, and its CURLcode says what happened in
 * curl's terms either way (registry.c decides retries on it). */
#ifndef HERO_HTTP_INT_H
#define HERO_HTTP_INT_H

#include <curl/curl.h> /* CURLcode values and types only: nothing here calls curl */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/http.h"

enum {
    HTTP_DEFAULT_MAX_BODY = 8 * 1024 * 1024,
    HTTP_ERROR_BODY_CAP = 64 * 1024,
    HTTP_DEFAULT_REDIRECTS = 10,
    HTTP_DEFAULT_CONNECT_MS = 15000,
    HTTP_DEFAULT_STALL_MS = 30000,
    HTTP_FILE_BUFFER = 256 * 1024,      /* read size for a body bound for a file */
    HTTP_TURN_BUDGET = 1024 * 1024,     /* body bytes per transfer per turn of the loop */
};

typedef struct http_sock http_sock_t;
typedef struct plain_conn plain_conn_t;

struct hero_http {
    uv_loop_t *loop;
    CURLM *multi;             /* NULL until the first hop that needs curl */
    uv_timer_t timer;         /* curl's timer */
    uv_idle_t resume;         /* resumes transfers paused for their budget (both kinds) */
    unsigned turn;            /* counts calls into curl: a transfer's budget is per turn */
    unsigned open_handles;    /* the timer, the idle, every socket poll and every plain
                                 connection's handles not yet closed */
    bool closing;             /* hero_http_close was called */
    bool torn_down;           /* the requests and curl are gone; only closes remain */
    bool curl_only;           /* hero_http_curl_only: no plain transport */
    unsigned dispatching;     /* inside dispatch(): teardown waits until it ends */
    hero_http_req_t *reqs;    /* requests not yet completed */
    http_sock_t *socks;       /* sockets curl has us watch */
    plain_conn_t *conns;      /* plain connections, busy and idle (keep-alive) */
    size_t active;
};

struct hero_http_req {
    hero_http_t *h;
    hero_http_req_t *prev, *next;
    CURL *easy;                /* created at the first curl hop, kept for later ones */
    plain_conn_t *pc;          /* the plain connection of the current hop, or NULL */
    bool plain_fresh;          /* the plain hop must not reuse an idle connection */
    struct curl_slist *slist;  /* the headers of the current curl hop */
    char **headers;            /* the caller's extra header lines (copies) */
    size_t n_headers;
    char *auth;                /* "Authorization: <value>", or NULL */
    char *origin;              /* scheme://host:port of the first URL */
    char *url;                 /* the current hop's URL */
    char *range;               /* "N-" or NULL */
    bool head, post;
    char *post_body;           /* POST: the body (a copy), post_len bytes */
    size_t post_len;
    bool tls_no_verify;
    unsigned connect_ms, stall_ms;
    bool finished;             /* the callback is running or has run */
    int fd;
    size_t max_body;
    unsigned max_redirects, redirects;
    bool auth_dropped;
    uint64_t deadline_ns;      /* uv_hrtime() value; 0: none */
    hero_http_data_cb on_data;
    hero_http_done_cb cb;
    void *data;

    /* the hop's outcome, set by its transport before http_req_hop_end */
    long status;
    uint64_t content_length;

    /* state of the current response, reset on every status line */
    hero_http_header_t *hdrs;
    size_t n_hdrs, cap_hdrs;
    bool body_started;
    bool body_ok;              /* a 2xx: bytes go to the sink */
    bool may_pause;            /* curl: not an HTTP/2 (or 3) stream */
    bool paused;               /* curl: by on_write, for the rest of this turn */
    bool resuming;             /* curl: on_resume is to resume it */
    unsigned turn;             /* curl: the client's turn turn_bytes counts */
    size_t turn_bytes;
    long body_status;          /* the status the body belongs to */
    uint64_t body_offset, body_bytes;
    char *body;                /* memory sink, or the error body */
    size_t body_len, body_cap;
    char *fail;                /* hero's own reason to have stopped the transfer */
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- URLs (http_url.c) ---- */

/* An absolute http(s) URL, split. Only what hero sends and accepts: no user info, no
 * spaces, backslashes or control characters in the authority. */
typedef struct http_url {
    bool tls;          /* https */
    char *host;        /* lowercase; an IPv6 address without its brackets */
    unsigned port;     /* the default one filled in */
    char *hostport;    /* for a Host header: brackets around IPv6, ":port" unless default */
    char *target;      /* path and query ("/" when empty), no fragment */
} http_url_t;

int http_url_parse(const char *url, http_url_t *u);
void http_url_free(http_url_t *u);
/* "scheme://host:port" of an absolute URL (lowercase host, default port filled in),
 * or NULL when it does not parse. */
char *http_url_origin(const char *url);
/* A redirect's Location resolved against `base` (an http:// URL), as a new string. */
char *http_url_resolve(const char *base, const char *loc);

/* ---- what http.c offers the transports ---- */

/* Sets q->fail (the first reason wins; takes msg). */
void http_req_set_fail(hero_http_req_t *q, char *msg);
/* A new response begins (its status line): forget the headers of the one before. */
void http_req_begin_response(hero_http_req_t *q);
void http_req_add_header(hero_http_req_t *q, const char *name, size_t name_len,
                         const char *value, size_t value_len);
/* A chunk of the response body (q->body_status set). 0: taken; <0: the transfer must
 * stop, q->fail says why. */
int http_req_body(hero_http_req_t *q, const char *p, size_t len);
/* The hop ended (q->status and q->content_length set): follows a redirect to
 * `location` (absolute, or NULL) or completes the request. q may be freed on return. */
void http_req_hop_end(hero_http_req_t *q, CURLcode code, const char *location);
/* Have the idle handle call http_plain_resume on the next turn of the loop. */
void http_resume_later(hero_http_t *h);

/* ---- the plain transport (http_plain.c) ---- */

/* True when this hop's URL goes through the plain transport. */
bool http_plain_wanted(const hero_http_t *h, const char *url);
/* Starts the hop of q->url. <0: it could not start (q->fail set). */
int http_plain_start(hero_http_req_t *q);
/* Stops q's hop without a word to q (cancel, teardown); its connection is closed. */
void http_plain_abort(hero_http_req_t *q);
/* Resumes the connections paused for their budget. */
void http_plain_resume(hero_http_t *h);
/* Closes every connection (teardown); requests must have been aborted first. */
void http_plain_close_all(hero_http_t *h);
/* Lets the client finish closing: called as each plain handle closes. */
void http_handle_closed(hero_http_t *h);

#endif
