/* hero's own HTTP/1.1 client, for the hops of plain http:// URLs (see http_int.h for
 * why and when). One plain_conn_t is one TCP connection: it carries one request at a
 * time and, when the answer was framed (Content-Length or chunked) and the server
 * keeps it open, waits in the client's list for the next request to the same
 * host:port. A request sent on such a reused connection that the server had closed
 * meanwhile (no byte of an answer came) is sent again once on a new one, as curl does.
 *
 * The answer is parsed as it comes: the head (at most PLAIN_HEAD_MAX bytes; 1xx heads
 * are skipped), then the body by Content-Length, by chunks, or up to the end of the
 * connection; HEAD, 204 and 304 have none. Body bytes go to http.c's sink straight
 * from the read buffer. Like the curl transport, a connection reads at most
 * HTTP_TURN_BUDGET bytes per turn of the loop, then stops reading until the idle
 * handle resumes it (http_plain_resume), so one fast body cannot hold up the others.
 *
 * Errors are reported with curl's codes (registry.c decides retries on them) and
 * hero's words.
 *
 * Ownership: the client's list owns every connection, busy or idle; a connection is
 * freed once its two handles (the socket and its timer) are closed and no address
 * lookup of its own is running. A busy connection points at its request and back
 * (q->pc); they are parted before the request is told anything. */
#include "runtime/http_int.h"
#include "runtime/dlist.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    PLAIN_HEAD_MAX = 64 * 1024,  /* a response head, or a chunk-size or trailer line */
    PLAIN_READ_BUF = 256 * 1024,
    PLAIN_IDLE_MAX_MS = 60 * 1000, /* an idle connection older than this is not reused
                                      (a NAT or firewall may have dropped it quietly) */
};

typedef enum {
    PS_SEND,        /* connecting, or writing the request */
    PS_HEAD,        /* reading a response head */
    PS_BODY_LEN,    /* `left` bytes of body to come */
    PS_CHUNK_SIZE,  /* a chunk-size line */
    PS_CHUNK_DATA,  /* `left` bytes of the chunk */
    PS_CHUNK_END,   /* the CRLF after a chunk */
    PS_TRAILERS,    /* trailer lines up to an empty one */
    PS_BODY_EOF,    /* body up to the end of the connection */
    PS_IDLE,        /* no request: kept for the next one */
} plain_state_t;

struct plain_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t wr;
    uv_getaddrinfo_t gai;
    hero_http_t *h;
    plain_conn_t *prev, *next;   /* in h->conns */
    hero_http_req_t *q;          /* the request on it; NULL when idle */
    char *key;                   /* "host:port": which requests may reuse it */
    char *host;                  /* for messages */
    unsigned port;
    unsigned pending;            /* open handles and running lookups: freed at 0 */
    bool closing, connected, reused, keep_alive, paused, reading, answered;
    bool resolving;              /* the lookup (gai) runs */
    bool broken;                 /* a write failed: never reused */
    uint64_t idle_since;         /* uv_now() when it went idle */
    int late_code;               /* a failure to report from the timer (never from inside */
    char *late_msg;              /* hero_http_start), or 0 */
    struct addrinfo *ai, *ai_next; /* the looked-up addresses; the next to try */
    plain_state_t st;
    char *req;                   /* the request, made, not yet written; req_len bytes */
    size_t req_len;
    char *out;                   /* the request being written */
    char *line;                  /* a head or a line being gathered */
    size_t line_len;
    char *rbuf;
    uint64_t left;
    bool no_body;                /* HEAD, 1xx, 204, 304 */
    size_t turn_bytes;
    uint64_t connect_by_ms;      /* uv_now() deadlines; 0: none */
    uint64_t last_ms;            /* uv_now() of the last progress */
};

static void conn_close(plain_conn_t *c);
static void conn_send(plain_conn_t *c);
static void conn_try_next(plain_conn_t *c);
static void on_timer(uv_timer_t *t);
static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

bool http_plain_wanted(const hero_http_t *h, const char *url)
{
    return !h->curl_only && !hero_http_url_uses_curl(url);
}

bool hero_http_url_uses_curl(const char *url)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return true;
    /* the variables curl reads for a plain-http proxy: such a hop is curl's, which
     * also knows no_proxy */
    static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(*vars); i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return true;
    }
    return false;
}

/* ---- connection lifetime ---- */

static void conn_maybe_free(plain_conn_t *c)
{
    if (c->pending)
        return;
    if (c->ai)
        freeaddrinfo(c->ai);
    free(c->key);
    free(c->host);
    free(c->req);
    free(c->out);
    free(c->line);
    free(c->rbuf);
    free(c->late_msg);
    free(c);
}

static void on_conn_handle_closed(uv_handle_t *hd)
{
    plain_conn_t *c = hd->data;
    hero_http_t *h = c->h;
    c->pending--;
    conn_maybe_free(c);
    http_handle_closed(h);
}

static void conn_unlink(plain_conn_t *c)
{
    hero_http_t *h = c->h;
    HERO_DLIST_UNLINK(h->conns, c);
}

/* Closes the connection; its request (if any) must have been parted from it. */
static void conn_close(plain_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    conn_unlink(c);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* (only if the pool has not started it) */
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* Parts the connection from its request. */
static hero_http_req_t *conn_detach(plain_conn_t *c)
{
    hero_http_req_t *q = c->q;
    c->q = NULL;
    if (q)
        q->pc = NULL;
    uv_timer_stop(&c->timer);
    return q;
}

/* The hop failed: the connection goes, and the request is told. */
static void conn_fail(plain_conn_t *c, CURLcode code, char *msg)
{
    hero_http_req_t *q = conn_detach(c);
    conn_close(c);
    if (!q) {
        free(msg);
        return;
    }
    http_req_set_fail(q, msg);
    http_req_hop_end(q, code, NULL);
}

/* A failure found while the hop starts (possibly inside hero_http_start, which must
 * not call back): reported from the timer, on the loop. */
static void conn_fail_later(plain_conn_t *c, CURLcode code, char *msg)
{
    if (c->late_code) {
        free(msg);
        return;
    }
    c->late_code = (int)code;
    c->late_msg = msg;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* A request on a reused connection got nothing back: the server had closed it while
 * it was idle (it may not have seen the request). Start the hop again, on a new
 * connection; true when that was done. */
static bool conn_retry_fresh(plain_conn_t *c)
{
    if (!c->reused || c->answered || !c->q)
        return false;
    hero_http_req_t *q = conn_detach(c);
    conn_close(c);
    q->plain_fresh = true;
    if (http_plain_start(q) < 0)
        http_req_hop_end(q, CURLE_COULDNT_CONNECT, NULL);
    return true;
}

/* ---- timeouts ---- */

static void conn_arm(plain_conn_t *c)
{
    hero_http_req_t *q = c->q;
    if (!q || c->late_code)
        return;
    uint64_t now = uv_now(c->h->loop);
    /* connecting (the lookup included): the connect timeout; then the stall one */
    uint64_t at = c->connected ? c->last_ms + q->stall_ms : c->connect_by_ms;
    if (q->deadline_ns) {
        uint64_t hr = uv_hrtime();
        uint64_t left = q->deadline_ns > hr ? (q->deadline_ns - hr + 999999) / 1000000 : 0;
        if (now + left < at)
            at = now + left;
    }
    uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    plain_conn_t *c = t->data;
    hero_http_req_t *q = c->q;
    if (!q)
        return;
    if (c->late_code) {
        char *msg = c->late_msg;
        c->late_msg = NULL;
        conn_fail(c, (CURLcode)c->late_code, msg);
        return;
    }
    uint64_t now = uv_now(c->h->loop);
    if (!c->connected && c->connect_by_ms && now >= c->connect_by_ms) {
        conn_fail(c, CURLE_OPERATION_TIMEDOUT,
                  hero_xasprintf("cannot connect to %s port %u: no answer in %u ms", c->host,
                                 c->port, q->connect_ms));
        return;
    }
    if (q->deadline_ns && uv_hrtime() >= q->deadline_ns) {
        conn_fail(c, CURLE_OPERATION_TIMEDOUT,
                  hero_xasprintf("%s: the request took longer than it may", q->url));
        return;
    }
    if (c->connected && now >= c->last_ms + q->stall_ms) {
        conn_fail(c, CURLE_OPERATION_TIMEDOUT,
                  hero_xasprintf("%s: nothing received for %u ms", q->url, q->stall_ms));
        return;
    }
    conn_arm(c);
}

/* ---- the answer ---- */


/* The answer is complete: the request is told, and the connection waits for the next
 * one, or closes. `extra`: bytes came after the answer (then it is not reused). */
static void conn_done(plain_conn_t *c, bool extra)
{
    hero_http_req_t *q = conn_detach(c);
    /* kept for the next request only when the whole request went out (a server may
     * answer before it read it all: the write is still queued then) and nothing odd
     * happened on it */
    if (c->keep_alive && !extra && !c->h->closing && !c->out && !c->late_code && !c->broken) {
        c->st = PS_IDLE;
        c->idle_since = uv_now(c->h->loop);
        c->reused = false;
        c->answered = false;
        c->paused = false;
        /* an idle connection keeps reading, to notice the server closing it, but does
         * not keep the loop running (a caller may run the loop until its requests end
         * and only then close the client) */
        if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
        uv_unref((uv_handle_t *)&c->tcp);
    } else
        conn_close(c);
    const char *loc = hero_http_header(&(hero_http_resp_t){.headers = q->hdrs,
                                                             .n_headers = q->n_hdrs},
                                       "Location");
    char *target =
        loc && q->status >= 300 && q->status < 400 ? http_url_resolve(q->url, loc) : NULL;
    http_req_hop_end(q, CURLE_OK, target);
    free(target);
}

static bool token_char(char ch)
{
    return ch > ' ' && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Does the comma-separated header value list contain `word`? */
static bool has_word(const char *v, const char *word)
{
    size_t n = strlen(word);
    while (v && *v) {
        v += strspn(v, " \t,");
        size_t len = strcspn(v, ",");
        size_t t = len;
        while (t && (v[t - 1] == ' ' || v[t - 1] == '\t'))
            t--;
        if (t == n && !strncasecmp(v, word, n))
            return true;
        v += len;
    }
    return false;
}

/* Reads a complete head (c->line, head_len bytes, ending in a blank line): the status
 * line, the headers (into the request), and how the body is framed. 0, or <0 with the
 * reason in *why. */
static int parse_head(plain_conn_t *c, hero_http_req_t *q, char **why)
{
    char *p = c->line, *end = c->line + c->line_len;
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || eol - p < 12 || strncmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9' || (eol - p > 12 && p[12] != ' ' && p[12] != '\r')) {
        *why = hero_xstrdup("the server's answer is not HTTP/1.x");
        return -1;
    }
    bool http11 = p[7] == '1';
    long status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    http_req_begin_response(q);
    q->status = status;
    q->body_status = status;
    p = eol + 1;
    const char *te = NULL, *conn = NULL;
    bool have_len = false;
    uint64_t len = 0;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        char *le = eol;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            break; /* the blank line */
        if (*p == ' ' || *p == '\t') {
            *why = hero_xstrdup("the server's answer folds a header line");
            return -1;
        }
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p) {
            *why = hero_xstrdup("the server's answer has a header line without a name");
            return -1;
        }
        for (char *n = p; n < colon; n++)
            if (!token_char(*n)) {
                *why = hero_xstrdup("the server's answer has a bad header name");
                return -1;
            }
        char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        http_req_add_header(q, p, (size_t)(colon - p), v, (size_t)(ve - v));
        const char *value = q->hdrs[q->n_hdrs - 1].value;
        size_t nl = (size_t)(colon - p);
        if (nl == 14 && !strncasecmp(p, "Content-Length", 14)) {
            char *e = NULL;
            errno = 0;
            unsigned long long n = *value >= '0' && *value <= '9' ? strtoull(value, &e, 10) : 0;
            if (!e || *e || errno || (have_len && n != len)) {
                *why = hero_xasprintf("the server's answer has a bad Content-Length (%s)", value);
                return -1;
            }
            have_len = true;
            len = n;
        } else if (nl == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
            if (te) {
                /* (codings spread over lines: more than "chunked" in any case) */
                *why = hero_xstrdup("the server's answer has more than one Transfer-Encoding");
                return -1;
            }
            te = value;
        }
        else if (nl == 10 && !strncasecmp(p, "Connection", 10))
            conn = value;
        p = eol + 1;
    }
    q->content_length = have_len ? len : 0;
    c->keep_alive = http11 ? !has_word(conn, "close") : has_word(conn, "keep-alive");
    c->no_body = q->head || status < 200 || status == 204 || status == 304;
    if (c->no_body)
        return 0;
    if (te) {
        /* chunked must be the last coding; any other coding hero cannot undo */
        if (strcasecmp(te, "chunked") != 0) {
            *why = hero_xasprintf("the server's answer has a transfer coding hero does not "
                                  "read (%s)",
                                  te);
            return -1;
        }
        c->st = PS_CHUNK_SIZE;
        c->keep_alive = c->keep_alive && !have_len; /* (both: a smuggling hint; not reused) */
    } else if (have_len) {
        c->st = PS_BODY_LEN;
        c->left = len;
    } else {
        c->st = PS_BODY_EOF;
        c->keep_alive = false;
    }
    return 0;
}

/* Gathers bytes into c->line until `stop` (a "\n\r\n"-style end) is found, at most
 * PLAIN_HEAD_MAX bytes. Returns the bytes used (the rest belongs to what follows),
 * with *complete set; or -1 when the limit is passed. */
static ssize_t gather(plain_conn_t *c, const char *p, size_t n, bool head, bool *complete)
{
    *complete = false;
    size_t i = 0;
    while (i < n) {
        if (c->line_len >= PLAIN_HEAD_MAX)
            return -1;
        char ch = p[i++];
        c->line[c->line_len++] = ch;
        if (ch != '\n')
            continue;
        if (!head) {
            *complete = true;
            return (ssize_t)i;
        }
        /* a head ends with an empty line: "\n\n" or "\n\r\n" */
        size_t l = c->line_len;
        if ((l >= 2 && c->line[l - 2] == '\n') ||
            (l >= 3 && c->line[l - 2] == '\r' && c->line[l - 3] == '\n')) {
            *complete = true;
            return (ssize_t)i;
        }
    }
    return (ssize_t)i;
}

static int body(plain_conn_t *c, hero_http_req_t *q, const char *p, size_t n)
{
    if (http_req_body(q, p, n) < 0) {
        conn_fail(c, CURLE_OK, NULL); /* (q->fail is set: it ends the request) */
        return -1;
    }
    if (q->body_ok)
        c->turn_bytes += n;
    return 0;
}

/* Feeds received bytes to the answer's parser. Stops at the end of the answer (or of
 * the connection's use). */
static void feed(plain_conn_t *c, const char *p, size_t n)
{
    while (n > 0 && c->q && !c->closing) {
        hero_http_req_t *q = c->q;
        bool complete;
        ssize_t used;
        size_t k;
        char *why = NULL;
        switch (c->st) {
        case PS_SEND: /* (an answer before the whole request went: read it anyway) */
        case PS_HEAD:
            c->st = PS_HEAD;
            used = gather(c, p, n, true, &complete);
            if (used < 0) {
                conn_fail(c, CURLE_WEIRD_SERVER_REPLY,
                          hero_xasprintf("the server's answer has a head over %d bytes",
                                         PLAIN_HEAD_MAX));
                return;
            }
            p += used;
            n -= (size_t)used;
            if (!complete)
                return;
            if (parse_head(c, q, &why) < 0) {
                conn_fail(c, CURLE_WEIRD_SERVER_REPLY, why);
                return;
            }
            c->line_len = 0;
            if (q->status >= 100 && q->status < 200) {
                c->st = PS_HEAD; /* an interim answer: the real one follows */
                continue;
            }
            if (c->no_body) {
                conn_done(c, n > 0);
                return;
            }
            if (c->st == PS_BODY_LEN && c->left == 0) {
                conn_done(c, n > 0);
                return;
            }
            break;
        case PS_BODY_LEN:
        case PS_CHUNK_DATA:
            k = n < c->left ? n : (size_t)c->left;
            if (body(c, q, p, k) < 0)
                return;
            p += k;
            n -= k;
            c->left -= k;
            if (c->left == 0) {
                if (c->st == PS_BODY_LEN) {
                    conn_done(c, n > 0);
                    return;
                }
                c->st = PS_CHUNK_END;
            }
            break;
        case PS_BODY_EOF:
            if (body(c, q, p, n) < 0)
                return;
            n = 0;
            break;
        case PS_CHUNK_SIZE:
        case PS_CHUNK_END:
        case PS_TRAILERS:
            used = gather(c, p, n, false, &complete);
            if (used < 0) {
                conn_fail(c, CURLE_WEIRD_SERVER_REPLY,
                          hero_xstrdup("the server's chunked answer has a line that is too long"));
                return;
            }
            p += used;
            n -= (size_t)used;
            if (!complete)
                return;
            c->line[c->line_len] = 0;
            size_t ll = c->line_len;
            c->line_len = 0;
            bool blank = ll == 1 || (ll == 2 && c->line[0] == '\r');
            if (c->st == PS_CHUNK_END) {
                if (!blank) {
                    conn_fail(c, CURLE_WEIRD_SERVER_REPLY,
                              hero_xstrdup("the server's chunked answer lacks the end of a chunk"));
                    return;
                }
                c->st = PS_CHUNK_SIZE;
            } else if (c->st == PS_TRAILERS) {
                if (blank) {
                    conn_done(c, n > 0);
                    return;
                }
            } else {
                uint64_t size = 0;
                size_t digits = 0;
                const char *s = c->line;
                for (; *s; s++, digits++) {
                    int v = *s >= '0' && *s <= '9'   ? *s - '0'
                            : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                            : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                                     : -1;
                    if (v < 0)
                        break;
                    if (digits >= 15) {
                        digits = 0;
                        break;
                    }
                    size = size * 16 + (uint64_t)v;
                }
                if (digits == 0 || (*s != ';' && *s != ' ' && *s != '\t' && *s != '\r' &&
                                    *s != '\n')) {
                    conn_fail(c, CURLE_WEIRD_SERVER_REPLY,
                              hero_xstrdup("the server's chunked answer has a bad chunk size"));
                    return;
                }
                if (size == 0)
                    c->st = PS_TRAILERS;
                else {
                    c->st = PS_CHUNK_DATA;
                    c->left = size;
                }
            }
            break;
        case PS_IDLE:
            return;
        }
    }
}

/* The connection ended (EOF or an error) while a request was on it. */
static void conn_ended(plain_conn_t *c, int uverr)
{
    hero_http_req_t *q = c->q;
    if (!uverr && c->st == PS_BODY_EOF) {
        conn_done(c, false);
        return;
    }
    if ((c->st == PS_SEND || (c->st == PS_HEAD && c->line_len == 0)) && conn_retry_fresh(c))
        return;
    const char *how = uverr ? uv_strerror(uverr) : "the server closed the connection";
    switch (c->st) {
    case PS_SEND:
    case PS_HEAD:
        conn_fail(c, c->line_len || c->answered ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING,
                  hero_xasprintf("%s: %s before the whole answer came", q->url, how));
        break;
    case PS_BODY_LEN:
        conn_fail(c, CURLE_PARTIAL_FILE,
                  hero_xasprintf("%s: %s with %" PRIu64 " bytes of the body still to come",
                                 q->url, how, c->left));
        break;
    default:
        conn_fail(c, uverr ? CURLE_RECV_ERROR : CURLE_PARTIAL_FILE,
                  hero_xasprintf("%s: %s before the end of the body", q->url, how));
        break;
    }
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    plain_conn_t *c = hd->data;
    if (!c->rbuf)
        c->rbuf = hero_xmalloc(PLAIN_READ_BUF);
    *buf = uv_buf_init(c->rbuf, PLAIN_READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    plain_conn_t *c = s->data;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (!c->q) {
        /* idle: the server closed it, or sent what nobody asked for */
        conn_close(c);
        return;
    }
    if (nread < 0) {
        conn_ended(c, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    c->last_ms = uv_now(c->h->loop);
    c->answered = true;
    feed(c, c->rbuf, (size_t)nread);
    if (c->q && !c->closing && c->turn_bytes >= HTTP_TURN_BUDGET) {
        /* the rest of this body waits for the next turn (see the top of the file) */
        uv_read_stop(s);
        c->reading = false;
        c->paused = true;
        http_resume_later(c->h);
    }
}

void http_plain_resume(hero_http_t *h)
{
    for (plain_conn_t *c = h->conns; c; c = c->next)
        if (c->paused && !c->closing) {
            c->paused = false;
            c->turn_bytes = 0;
            if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
                c->reading = true;
            else if (c->q)
                conn_fail_later(c, CURLE_RECV_ERROR,
                                hero_xasprintf("%s: cannot read on", c->q->url));
        }
}

/* ---- the request ---- */

static void on_written(uv_write_t *w, int status)
{
    plain_conn_t *c = w->data;
    free(c->out);
    c->out = NULL;
    if (status == UV_ECANCELED || c->closing || !c->q)
        return;
    if (status < 0) {
        /* a server may answer (401, 413...) and close before it read all of the
         * request: the answer under way decides, from the read side */
        if (c->answered) {
            c->broken = true;
            return;
        }
        /* (a reused connection the server had closed: EPIPE, ECONNRESET) */
        if (conn_retry_fresh(c))
            return;
        conn_fail(c, CURLE_SEND_ERROR,
                  hero_xasprintf("%s: cannot send the request: %s", c->q->url,
                                 uv_strerror(status)));
        return;
    }
    if (c->st == PS_SEND)
        c->st = PS_HEAD;
}

/* The bytes of q's request to `u` (made once per hop, when it starts). */
static char *request_bytes(const hero_http_req_t *q, const http_url_t *u, size_t *len)
{
    /* curl's defaults, unless the caller gave its own */
    bool accept = false, ctype = false, host = false, agent = false;
    size_t extra = 0;
    for (size_t i = 0; i < q->n_headers; i++) {
        const char *l = q->headers[i];
        extra += strlen(l) + 2;
        accept = accept || !strncasecmp(l, "Accept:", 7);
        ctype = ctype || !strncasecmp(l, "Content-Type:", 13);
        host = host || !strncasecmp(l, "Host:", 5);
        agent = agent || !strncasecmp(l, "User-Agent:", 11);
    }
    char *range = q->range ? hero_xasprintf("Range: bytes=%s\r\n", q->range) : NULL;
    char *clen = q->post ? hero_xasprintf("%sContent-Length: %zu\r\n",
                                          ctype ? ""
                                                : "Content-Type: "
                                                  "application/x-www-form-urlencoded\r\n",
                                          q->post_len)
                         : NULL;
    char *hosth = host ? NULL : hero_xasprintf("Host: %s\r\n", u->hostport);
    char *head = hero_xasprintf("%s %s HTTP/1.1\r\n%s%s%s%s%s",
                                q->head ? "HEAD" : q->post ? "POST" : "GET", u->target,
                                hosth ? hosth : "",
                                agent ? "" : "User-Agent: hero/" HERO_VERSION "\r\n",
                                accept ? "" : "Accept: */*\r\n", range ? range : "",
                                clen ? clen : "");
    free(hosth);
    free(range);
    free(clen);
    size_t hl = strlen(head);
    size_t auth = q->auth && !q->auth_dropped ? strlen(q->auth) + 2 : 0;
    size_t total = hl + extra + auth + 2 + (q->post ? q->post_len : 0);
    char *out = hero_xmalloc(total + 1), *o = out;
    memcpy(o, head, hl);
    o += hl;
    free(head);
    for (size_t i = 0; i < q->n_headers; i++) {
        size_t l = strlen(q->headers[i]);
        memcpy(o, q->headers[i], l);
        memcpy(o + l, "\r\n", 2);
        o += l + 2;
    }
    if (auth) {
        memcpy(o, q->auth, auth - 2);
        memcpy(o + auth - 2, "\r\n", 2);
        o += auth;
    }
    memcpy(o, "\r\n", 2);
    o += 2;
    if (q->post && q->post_len) {
        memcpy(o, q->post_body, q->post_len);
        o += q->post_len;
    }
    *len = (size_t)(o - out);
    return out;
}

/* Writes the request made for c->q (c->req), and reads its answer. */
static void conn_send(plain_conn_t *c)
{
    hero_http_req_t *q = c->q;
    free(c->out);
    c->out = c->req;
    size_t len = c->req_len;
    c->req = NULL;
    c->st = PS_SEND;
    c->line_len = 0;
    c->answered = false;
    c->turn_bytes = 0;
    c->last_ms = uv_now(c->h->loop);
    c->wr.data = c;
    uv_buf_t b = uv_buf_init(c->out, (unsigned)len);
    int rc = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc == 0 && !c->reading) {
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        c->reading = rc == 0;
    }
    if (rc < 0) {
        conn_fail_later(c, CURLE_SEND_ERROR,
                        hero_xasprintf("%s: cannot send the request: %s", q->url,
                                       uv_strerror(rc)));
        return;
    }
    conn_arm(c);
}

static plain_conn_t *conn_new(hero_http_t *h, hero_http_req_t *q, char *key, char *host,
                              unsigned port);

static void on_connected(uv_connect_t *r, int status)
{
    plain_conn_t *c = r->data;
    if (status == UV_ECANCELED || c->closing || !c->q)
        return;
    if (status < 0 && c->ai_next) {
        /* the next address, on a new connection (a socket that failed to connect is
         * not used again); it takes the request and what is left of the addresses */
        hero_http_req_t *q = conn_detach(c);
        plain_conn_t *n = conn_new(c->h, q, hero_xstrdup(c->key), hero_xstrdup(c->host),
                                   c->port);
        n->connect_by_ms = c->connect_by_ms;
        n->ai = c->ai;
        n->ai_next = c->ai_next;
        n->req = c->req;
        n->req_len = c->req_len;
        c->ai = c->ai_next = NULL;
        c->req = NULL;
        conn_close(c);
        conn_arm(n);
        conn_try_next(n);
        return;
    }
    if (status < 0) {
        conn_fail(c, CURLE_COULDNT_CONNECT,
                  hero_xasprintf("cannot connect to %s port %u: %s", c->host, c->port,
                                 uv_strerror(status)));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    conn_send(c);
}

/* Connects to the next looked-up address. */
static void conn_try_next(plain_conn_t *c)
{
    const struct addrinfo *a = c->ai_next;
    c->ai_next = a->ai_next;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, a->ai_addr, on_connected);
    if (rc < 0)
        conn_fail_later(c, CURLE_COULDNT_CONNECT,
                        hero_xasprintf("cannot connect to %s port %u: %s", c->host, c->port,
                                       uv_strerror(rc)));
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    plain_conn_t *c = g->data;
    c->pending--;
    c->resolving = false;
    c->ai = res;
    c->ai_next = res;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (!c->q)
        return;
    if (status < 0 || !res) {
        conn_fail(c, CURLE_COULDNT_RESOLVE_HOST,
                  hero_xasprintf("cannot resolve host %s: %s", c->host,
                                 uv_strerror(status < 0 ? status : UV_EAI_NONAME)));
        return;
    }
    conn_try_next(c);
}

int http_plain_start(hero_http_req_t *q)
{
    hero_http_t *h = q->h;
    http_url_t u;
    if (http_url_parse(q->url, &u) < 0 || u.tls) {
        http_req_set_fail(q, hero_xasprintf("cannot parse the URL %s", q->url));
        return -1;
    }
    char *key = hero_xasprintf("%s:%u", u.host, u.port);
    plain_conn_t *c = NULL, *next;
    uint64_t now = uv_now(h->loop);
    for (plain_conn_t *i = h->conns; i; i = next) {
        next = i->next;
        if (i->q || i->closing || i->st != PS_IDLE)
            continue;
        if (now - i->idle_since > PLAIN_IDLE_MAX_MS)
            conn_close(i);
        else if (!c && !q->plain_fresh && !strcmp(i->key, key))
            c = i;
    }
    q->plain_fresh = false; /* (for this hop only: a redirect may reuse again) */
    size_t req_len;
    char *req = request_bytes(q, &u, &req_len);
    if (c) {
        free(key);
        http_url_free(&u);
        c->q = q;
        q->pc = c;
        c->reused = true;
        c->req = req;
        c->req_len = req_len;
        uv_ref((uv_handle_t *)&c->tcp);
        conn_send(c);
        return 0;
    }
    c = conn_new(h, q, key, u.host, u.port);
    c->req = req;
    c->req_len = req_len;
    u.host = NULL;
    http_url_free(&u);
    c->connect_by_ms = c->last_ms + q->connect_ms;
    conn_arm(c);

    /* an address literal needs no lookup (a loopback registry: the common case) */
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", c->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(c->host, portstr, &hints, &res) == 0 && res) {
        c->ai = c->ai_next = res;
        conn_try_next(c);
        return 0;
    }
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    c->gai.data = c;
    int rc = uv_getaddrinfo(h->loop, &c->gai, on_resolved, c->host, portstr, &hints);
    if (rc < 0) {
        conn_fail_later(c, CURLE_COULDNT_RESOLVE_HOST,
                        hero_xasprintf("cannot resolve host %s: %s", c->host, uv_strerror(rc)));
        return 0;
    }
    c->pending++;
    c->resolving = true;
    return 0;
}

/* A new connection (not connected yet) carrying q; takes key and host. */
static plain_conn_t *conn_new(hero_http_t *h, hero_http_req_t *q, char *key, char *host,
                              unsigned port)
{
    plain_conn_t *c = hero_xcalloc(1, sizeof(*c));
    c->h = h;
    c->key = key;
    c->host = host;
    c->port = port;
    c->line = hero_xmalloc(PLAIN_HEAD_MAX + 1);
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->pending = 2;
    h->open_handles += 2;
    HERO_DLIST_PUSH(h->conns, c);
    c->q = q;
    q->pc = c;
    c->st = PS_SEND;
    c->last_ms = uv_now(h->loop);
    return c;
}

void http_plain_abort(hero_http_req_t *q)
{
    plain_conn_t *c = q->pc;
    if (!c)
        return;
    conn_detach(c);
    conn_close(c);
}

void http_plain_close_all(hero_http_t *h)
{
    while (h->conns) {
        plain_conn_t *c = h->conns;
        if (c->q)
            conn_detach(c);
        conn_close(c);
    }
}
