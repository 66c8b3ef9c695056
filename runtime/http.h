/* The HTTP primitive, on the libuv loop. A plain http:// request (no proxy variable
 * set) goes over hero's own HTTP/1.1 client on uv_tcp_t, with keep-alive
 * connections; anything else (https, proxies) over libcurl's multi interface, which
 * is loaded at its first use: one uv_timer (CURLMOPT_TIMERFUNCTION) and one uv_poll
 * per socket (CURLMOPT_SOCKETFUNCTION). Nothing blocks the loop (no
 * curl_easy_perform), apart from pwrite(2) of received bytes into a local file.
 * Whichever carried it, a request is reported the same way, with a CURLcode.
 *
 * A request is a GET, a HEAD or a small POST (an API call) with extra headers. Its
 * body goes to memory (bounded), to a file descriptor (pwrite at the offset the bytes
 * have in the resource, so a Range resume and a server that ignores Range both land
 * right), or only to the observer, which stores it itself; an optional observer sees
 * every body chunk first (to hash it, count progress, or abort).
 *
 * Redirects are followed by hero, never by curl: an Authorization value given in
 * the options is sent only while the URL keeps the origin (scheme, host and port) of
 * the first URL, so a registry's redirect to a CDN never receives its credentials.
 *
 * Only 2xx bodies go to the file and the observer; the body of any other status (an
 * error document, a redirect page) is kept in memory, capped at 64 KiB, so callers
 * can report the server's own error text. */
#ifndef HERO_HTTP_H
#define HERO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/error.h"

typedef struct hero_http hero_http_t;
typedef struct hero_http_req hero_http_req_t;

typedef struct hero_http_header {
    char *name;   /* as sent by the server */
    char *value;  /* leading and trailing blanks removed */
} hero_http_header_t;

/* What a request ended with. Valid only during the completion callback (or the data
 * callback, where only status, url and headers are filled in). */
typedef struct hero_http_resp {
    long status;                       /* HTTP status of the final response; 0: none */
    int curl_code;                     /* CURLcode of the transfer; 0 (CURLE_OK) on success */
    const char *error;                 /* NULL, or why the transfer failed: curl's text
                                          (or hero's, for a plain http hop),
                                          or "response body larger than N bytes", or
                                          "aborted by the data callback" */
    const char *url;                   /* the last URL requested (after redirects) */
    unsigned redirects;                /* redirects followed */
    bool auth_dropped;                 /* a redirect left the origin: Authorization was not
                                          sent to the new URL */
    const hero_http_header_t *headers; /* of the final response */
    size_t n_headers;
    const char *body;                  /* memory mode: the body, NUL-terminated (never NULL);
                                          fd mode: the body of a non-2xx answer only */
    size_t body_len;
    uint64_t body_offset;              /* where a 2xx body starts in the resource: the
                                          Content-Range start of a 206, else 0 */
    uint64_t body_bytes;               /* 2xx body bytes received by this request */
    uint64_t content_length;           /* Content-Length of the final response; 0: unknown */
} hero_http_resp_t;

/* Called exactly once per request that was not cancelled, from the loop, never
 * before hero_http_start() returns. The request is freed right after it returns. */
typedef void (*hero_http_done_cb)(hero_http_req_t *req, const hero_http_resp_t *resp,
                                  void *data);

/* Called with each chunk of a 2xx body, before it is stored; `offset` is where the
 * chunk lies in the resource (body_offset + bytes before it). Return 0 to go on, or
 * <0 to abort the transfer (the completion callback then reports
 * "aborted by the data callback"). Must not call hero_http_cancel or hero_http_close. */
typedef int (*hero_http_data_cb)(hero_http_req_t *req, const hero_http_resp_t *resp,
                                 uint64_t offset, const char *buf, size_t len, void *data);

typedef struct hero_http_opts {
    const char *url;                 /* http:// or https:// only */
    const char *method;              /* "GET" (also when NULL), "HEAD" or "POST" */
    const char *body;                /* POST: the request body (copied); may be NULL */
    size_t body_len;
    const char *const *headers;      /* NULL-terminated "Name: value" lines, sent to every
                                        URL of the chain; NULL: none. Copied. */
    const char *authorization;       /* the whole value ("Bearer x", "Basic y"), sent only
                                        to the origin of `url`; NULL: none. Copied. */
    int fd;                          /* > 0: 2xx body written here with pwrite; 0: memory;
                                        < 0: only to on_data (which must be set), which
                                        keeps it as it likes */
    size_t max_body;                 /* memory mode cap; 0: 8 MiB. Larger fails the request */
    uint64_t range_from;             /* > 0: ask for bytes from here on (Range: bytes=N-) */
    unsigned max_redirects;          /* 0: 10 */
    bool tls_no_verify;              /* https without certificate checks (insecure registries) */
    unsigned connect_timeout_ms;     /* 0: 15 s */
    unsigned stall_timeout_ms;       /* abort when under 1 byte/s for this long; 0: 30 s */
    unsigned timeout_ms;             /* whole request (all hops); 0: none */
    hero_http_data_cb on_data;       /* NULL: none */
} hero_http_opts_t;

/* Creates the client on `loop`; curl is not loaded yet (the first request that needs
 * it loads it: see runtime/lazylib.c for what happens when it is missing). Returns 0. */
int hero_http_new(uv_loop_t *loop, hero_http_t **out, hero_error_t *err);

/* Cancels every request still running (their callbacks are not called) and closes the
 * client; its memory is freed from the last close callback, so the loop must run once
 * more. Safe to call from a completion callback. NULL is ignored. */
void hero_http_close(hero_http_t *h);

/* Starts a request; the callback reports the outcome, including HTTP errors (any
 * status is a "completed" request: check resp->status). Returns <0 with err set for
 * bad options (no URL, unknown method) or when curl cannot start a transfer; then
 * the callback is never called.
 * `out` (may be NULL) receives the request for hero_http_cancel. */
int hero_http_start(hero_http_t *h, const hero_http_opts_t *opts, hero_http_done_cb cb,
                    void *data, hero_http_req_t **out, hero_error_t *err);

/* Stops a request that has not completed yet; its callback is never called and the
 * request is freed. Not from inside a data callback (return <0 there instead). */
void hero_http_cancel(hero_http_req_t *req);

/* The value of a header of the final response (case-insensitive name), or NULL. */
const char *hero_http_header(const hero_http_resp_t *resp, const char *name);

/* Whether a request to `url` would load libcurl (https, a proxy variable set). */
bool hero_http_url_uses_curl(const char *url);

/* Tests: send plain http:// through curl too, to run both transports on one server. */
void hero_http_curl_only(hero_http_t *h, bool on);

/* Requests running now (for tests and progress lines). */
size_t hero_http_active(const hero_http_t *h);

#endif
