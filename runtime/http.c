/* The HTTP client's requests (options, redirects, the body sink), and its curl
 * transport; the plain one is http_plain.c (http_int.h says which hop takes which).
 *
 * curl multi on libuv (see http.h). The wiring is curl's documented "multi_socket"
 * pattern: curl tells us which sockets to watch (on_socket -> one uv_poll each) and
 * when to wake it up (on_curl_timer -> the one uv_timer); we hand readiness back with
 * curl_multi_socket_action and then collect finished transfers (dispatch).
 *
 * Fairness: a transfer whose socket always has data (a big body from a fast server,
 * loopback above all) would have curl read it to its end inside one socket_action
 * call: curl runs a transfer again at once while data is pending, so the loop served
 * nothing else meanwhile (an image's config waited for its 20 MB layer). So a transfer
 * takes at most HTTP_TURN_BUDGET bytes per call into curl: past that, on_write pauses
 * it (curl keeps the chunk), and the idle handle resumes it on the next turn of the
 * loop, after the other sockets were polled. HTTP/2 transfers are not paused (pausing
 * an HTTP/2 stream is fragile in curl 7.88): streams of one connection are served in
 * turn anyway, but a big one on one connection can still hold up another connection,
 * which is how most HTTPS registries (HTTP/2 over TLS) are served. Each pause costs
 * curl a remove and a re-add of the socket's poll: about two epoll_ctl per MB.
 *
 * Ownership: the client owns its requests (a list), its socket contexts (a list), its
 * plain connections (a list, http_plain.c), the timer and the idle handle. A request
 * is freed after its callback returns, or by hero_http_cancel, or by hero_http_close.
 * Socket contexts are freed from their poll's close callback; the client itself from
 * the last close callback once it is closing. */
#include "runtime/http_int.h"
#include "runtime/dlist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct http_sock {
    uv_poll_t poll;
    hero_http_t *h;
    curl_socket_t fd;
    struct http_sock *prev, *next;
};

/* ---- small helpers ---- */

static bool curl_ready(hero_error_t *err)
{
    static int state = -1;
    if (state < 0)
        state = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!state)
        return hero_error_set(err, 0, "cannot initialise libcurl") == 0;
    return true;
}


static bool url_is_http(const char *url)
{
    return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

void http_req_set_fail(hero_http_req_t *q, char *msg)
{
    if (q->fail)
        free(msg); /* the first reason wins */
    else
        q->fail = msg;
}

void http_req_begin_response(hero_http_req_t *q)
{
    for (size_t i = 0; i < q->n_hdrs; i++) {
        free(q->hdrs[i].name);
        free(q->hdrs[i].value);
    }
    q->n_hdrs = 0;
    q->body_started = false;
    q->body_ok = false;
    q->body_status = 0;
    q->body_offset = 0;
    q->body_bytes = 0;
    q->body_len = 0;
}

static const char *find_header(const hero_http_header_t *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(v[i].name, name))
            return v[i].value;
    return NULL;
}

const char *hero_http_header(const hero_http_resp_t *resp, const char *name)
{
    return resp ? find_header(resp->headers, resp->n_headers, name) : NULL;
}

size_t hero_http_active(const hero_http_t *h)
{
    return h ? h->active : 0;
}

/* ---- what the transports report (http_int.h) ---- */

void http_req_add_header(hero_http_req_t *q, const char *name, size_t name_len,
                         const char *value, size_t value_len)
{
    if (q->n_hdrs == q->cap_hdrs) {
        q->cap_hdrs = q->cap_hdrs ? q->cap_hdrs * 2 : 16;
        q->hdrs = hero_xrealloc(q->hdrs, q->cap_hdrs * sizeof(*q->hdrs));
    }
    q->hdrs[q->n_hdrs].name = hero_xstrndup(name, name_len);
    q->hdrs[q->n_hdrs].value = hero_xstrndup(value, value_len);
    q->n_hdrs++;
}

static bool append_body(hero_http_req_t *q, const char *p, size_t len, size_t cap)
{
    if (q->body_len + len > cap)
        return false;
    if (q->body_len + len + 1 > q->body_cap) {
        size_t want = q->body_cap ? q->body_cap * 2 : 4096;
        while (want < q->body_len + len + 1)
            want *= 2;
        q->body = hero_xrealloc(q->body, want);
        q->body_cap = want;
    }
    memcpy(q->body + q->body_len, p, len);
    q->body_len += len;
    q->body[q->body_len] = 0;
    return true;
}

/* "bytes A-B/T" -> A */
static int parse_content_range(const char *v, uint64_t *start)
{
    if (!v || strncasecmp(v, "bytes ", 6) || v[6] < '0' || v[6] > '9')
        return -1; /* (strtoull would take "-5" and wrap it) */
    char *end;
    errno = 0;
    unsigned long long a = strtoull(v + 6, &end, 10);
    if (errno || end == v + 6 || *end != '-')
        return -1;
    *start = a;
    return 0;
}

static void partial_resp(hero_http_req_t *q, hero_http_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->status = q->body_status;
    r->url = q->url;
    r->redirects = q->redirects;
    r->auth_dropped = q->auth_dropped;
    r->headers = q->hdrs;
    r->n_headers = q->n_hdrs;
    r->body = "";
    r->body_offset = q->body_offset;
    r->body_bytes = q->body_bytes;
}

int http_req_body(hero_http_req_t *q, const char *p, size_t len)
{
    if (q->fail)
        return -1;
    if (!q->body_started) {
        q->body_started = true;
        q->body_ok = q->body_status >= 200 && q->body_status < 300;
        q->body_offset = 0;
        if (q->body_status == 206 &&
            parse_content_range(find_header(q->hdrs, q->n_hdrs, "Content-Range"),
                                &q->body_offset) < 0) {
            http_req_set_fail(q, hero_xstrdup("a 206 answer without a usable Content-Range"));
            return -1;
        }
    }
    if (!q->body_ok) {
        /* an error document or a redirect page: keep its start for the message */
        size_t room = HTTP_ERROR_BODY_CAP - q->body_len;
        append_body(q, p, len < room ? len : room, HTTP_ERROR_BODY_CAP);
        return 0;
    }
    if (q->on_data) {
        hero_http_resp_t r;
        partial_resp(q, &r);
        if (q->on_data(q, &r, q->body_offset + q->body_bytes, p, len, q->data) < 0) {
            http_req_set_fail(q, hero_xstrdup("aborted by the data callback"));
            return -1;
        }
    }
    if (q->fd < 0) {
        /* the observer stores the body itself */
    } else if (q->fd > 0) {
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(q->fd, p + done, len - done,
                               (off_t)(q->body_offset + q->body_bytes + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                http_req_set_fail(q, hero_xasprintf("cannot write the body: %s",
                                                    strerror(w < 0 ? errno : EIO)));
                return -1;
            }
            done += (size_t)w;
        }
    } else if (!append_body(q, p, len, q->max_body)) {
        http_req_set_fail(q, hero_xasprintf("response body larger than %zu bytes", q->max_body));
        return -1;
    }
    q->body_bytes += len;
    return 0;
}

/* ---- curl callbacks of one transfer ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    hero_http_req_t *q = ud;
    size_t len = size * n;
    if (len >= 5 && !memcmp(buf, "HTTP/", 5)) {
        http_req_begin_response(q); /* a new response begins (after a 1xx, or a new hop) */
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon || colon == buf)
        return len; /* the blank line that ends the headers, or junk */
    const char *v = colon + 1, *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    http_req_add_header(q, buf, (size_t)(colon - buf), v, (size_t)(end - v));
    return len;
}

/* Returning anything but len makes curl stop with CURLE_WRITE_ERROR. */
static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    hero_http_req_t *q = ud;
    size_t len = size * n;
    if (q->fail)
        return 0; /* (a chunk curl kept while paused, after a failure) */
    if (!q->body_started) {
        long v = 0;
        curl_easy_getinfo(q->easy, CURLINFO_HTTP_VERSION, &v);
        q->may_pause = v == CURL_HTTP_VERSION_1_0 || v == CURL_HTTP_VERSION_1_1;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->body_status);
    } else if (q->body_ok && q->may_pause) {
        if (q->turn != q->h->turn) {
            q->turn = q->h->turn;
            q->turn_bytes = 0;
        }
        if (q->turn_bytes >= HTTP_TURN_BUDGET) {
            q->paused = true;
            http_resume_later(q->h);
            return CURL_WRITEFUNC_PAUSE;
        }
    }
    if (http_req_body(q, p, len) < 0)
        return 0;
    if (q->body_ok)
        q->turn_bytes += len;
    return len;
}

/* ---- one hop ---- */

static void http_teardown(hero_http_t *h);
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp);
static int on_curl_timer(CURLM *m, long ms, void *userp);

/* The client's curl side, made at the first hop that needs it. */
static int curl_multi_ready(hero_http_t *h)
{
    if (h->multi)
        return 0;
    if (!curl_ready(NULL) || !(h->multi = curl_multi_init()))
        return -1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return 0;
}

/* q's easy handle, made and set up from q's options at its first curl hop. */
static int req_curl_easy(hero_http_req_t *q)
{
    if (q->easy)
        return 0;
    CURL *e = q->easy = curl_easy_init();
    if (!e)
        return -1;
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* redirects are ours: see http.h */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hero/" HERO_VERSION);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    if (q->fd != 0)
        /* a body for a file: fewer, larger chunks (curl's default is 16 KiB) */
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)HTTP_FILE_BUFFER);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)q->connect_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)((q->stall_ms + 999) / 1000));
    if (q->head)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (q->post) {
        /* curl keeps its own copy of the body */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->post_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, q->post_body ? q->post_body : "");
    }
    if (q->range)
        curl_easy_setopt(e, CURLOPT_RANGE, q->range);
    if (q->tls_no_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return 0;
}

/* Starts the hop of q->url on its transport. <0: it did not start (q->fail says why).
 * The header list: the caller's lines, plus Authorization while the URL keeps the
 * first URL's origin. */
static int req_start_hop(hero_http_req_t *q)
{
    q->status = 0;
    q->content_length = 0;
    http_req_begin_response(q);
    if (http_plain_wanted(q->h, q->url))
        return http_plain_start(q);
    if (curl_multi_ready(q->h) < 0 || req_curl_easy(q) < 0) {
        http_req_set_fail(q, hero_xstrdup("cannot start libcurl"));
        return -1;
    }
    curl_slist_free_all(q->slist);
    q->slist = NULL;
    for (size_t i = 0; i < q->n_headers; i++)
        q->slist = curl_slist_append(q->slist, q->headers[i]);
    if (q->auth && !q->auth_dropped)
        q->slist = curl_slist_append(q->slist, q->auth);
    curl_easy_setopt(q->easy, CURLOPT_URL, q->url);
    curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, q->slist);
    if (q->deadline_ns) {
        uint64_t now = uv_hrtime();
        long left = now >= q->deadline_ns ? 1 : (long)((q->deadline_ns - now) / 1000000u) + 1;
        curl_easy_setopt(q->easy, CURLOPT_TIMEOUT_MS, left);
    }
    q->errbuf[0] = 0;
    if (curl_multi_add_handle(q->h->multi, q->easy) != CURLM_OK) {
        http_req_set_fail(q, hero_xstrdup("cannot start a curl transfer"));
        return -1;
    }
    return 0;
}

/* Stops the current hop without completing q. */
static void req_stop_hop(hero_http_req_t *q)
{
    if (q->pc)
        http_plain_abort(q);
    else if (q->easy && q->h->multi)
        curl_multi_remove_handle(q->h->multi, q->easy);
}

static void req_unlink(hero_http_req_t *q)
{
    hero_http_t *h = q->h;
    HERO_DLIST_UNLINK(h->reqs, q);
    h->active--;
}

static void req_free(hero_http_req_t *q)
{
    /* (no call into curl unless it carried a hop: any call would load it) */
    if (q->easy)
        curl_easy_cleanup(q->easy);
    if (q->slist)
        curl_slist_free_all(q->slist);
    for (size_t i = 0; i < q->n_headers; i++)
        free(q->headers[i]);
    free(q->headers);
    http_req_begin_response(q);
    free(q->hdrs);
    free(q->auth);
    free(q->origin);
    free(q->url);
    free(q->range);
    free(q->post_body);
    free(q->body);
    free(q->fail);
    free(q);
}

static void req_finish(hero_http_req_t *q, CURLcode code)
{
    hero_http_resp_t r;
    partial_resp(q, &r);
    r.status = q->status;
    r.content_length = q->content_length;
    r.curl_code = q->fail && code == CURLE_OK ? CURLE_WRITE_ERROR : (int)code;
    if (q->fail)
        r.error = q->fail;
    else if (code != CURLE_OK)
        r.error = q->errbuf[0] ? q->errbuf : curl_easy_strerror(code);
    r.body = q->body ? q->body : "";
    r.body_len = q->body_len;
    if (q->fd != 0 && q->body_ok) {
        r.body = ""; /* the 2xx body went to the file (or to the observer) */
        r.body_len = 0;
    }
    req_unlink(q);
    q->finished = true;
    q->cb(q, &r, q->data);
    req_free(q);
}

static bool is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follows a redirect by hand; returns 0 when the next hop is on its way. */
static int req_redirect(hero_http_req_t *q, const char *target)
{
    if (q->redirects >= q->max_redirects) {
        http_req_set_fail(q, hero_xasprintf("more than %u redirects", q->max_redirects));
        return -1;
    }
    if (!url_is_http(target)) {
        http_req_set_fail(q, hero_xasprintf("redirect to a URL that is not http(s): %s", target));
        return -1;
    }
    char *origin = http_url_origin(target);
    if (!origin) {
        http_req_set_fail(q, hero_xasprintf("redirect to a bad URL: %s", target));
        return -1;
    }
    /* once the chain has left the origin, credentials never come back on it */
    if (q->auth && strcmp(origin, q->origin) != 0)
        q->auth_dropped = true;
    free(origin);
    q->redirects++;
    free(q->url);
    q->url = hero_xstrdup(target);
    return req_start_hop(q);
}

void http_req_hop_end(hero_http_req_t *q, CURLcode code, const char *location)
{
    if (code == CURLE_OK && !q->fail && is_redirect(q->status) && location) {
        char *t = hero_xstrdup(location); /* the transport's copy may die with the hop */
        int r = req_redirect(q, t);
        free(t);
        if (r == 0)
            return;
    }
    req_finish(q, code);
}

/* ---- the multi handle on the loop ---- */

/* Collects finished transfers. User callbacks run only from here. */
static void dispatch(hero_http_t *h)
{
    h->dispatching++;
    CURLMsg *m;
    int left;
    while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result;
        hero_http_req_t *q = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&q);
        curl_multi_remove_handle(h->multi, e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &q->status);
        curl_off_t clen = -1;
        curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
        q->content_length = clen > 0 ? (uint64_t)clen : 0;
        char *target = NULL;
        if (is_redirect(q->status))
            curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &target);
        http_req_hop_end(q, code, target);
    }
    h->dispatching--;
    if (h->closing && !h->dispatching && !h->torn_down)
        http_teardown(h);
}

void http_handle_closed(hero_http_t *h)
{
    if (--h->open_handles == 0 && h->closing)
        free(h);
}

static void on_sock_closed(uv_handle_t *hd)
{
    http_sock_t *k = hd->data;
    hero_http_t *h = k->h;
    free(k);
    http_handle_closed(h);
}

static void sock_close(http_sock_t *k)
{
    hero_http_t *h = k->h;
    HERO_DLIST_UNLINK(h->socks, k);
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    http_sock_t *k = p->data;
    hero_http_t *h = k->h;
    curl_socket_t fd = k->fd; /* k may be closed by curl inside socket_action */
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    h->turn++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    dispatch(h);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    hero_http_t *h = userp;
    http_sock_t *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            curl_multi_assign(h->multi, s, NULL);
            sock_close(k);
        }
        return 0;
    }
    if (!k) {
        k = hero_xcalloc(1, sizeof(*k));
        if (uv_poll_init_socket(h->loop, &k->poll, s) < 0) {
            free(k);
            return -1;
        }
        k->h = h;
        k->fd = s;
        k->poll.data = k;
        HERO_DLIST_PUSH(h->socks, k);
        h->open_handles++;
        curl_multi_assign(h->multi, s, k);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&k->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    hero_http_t *h = t->data;
    int running;
    h->turn++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    dispatch(h);
}

/* The loop has gone round (the idle phase comes before the poll, and an active idle
 * handle makes that poll not wait): the transfers paused for their budget go on.
 * curl hands the chunk it kept to on_write at once, and asks for its timer to read
 * on; a plain connection starts reading again. */
static void on_resume(uv_idle_t *i)
{
    hero_http_t *h = i->data;
    uv_idle_stop(i);
    http_plain_resume(h);
    if (!h->multi)
        return;
    h->turn++;
    h->dispatching++; /* (a request may finish under us: freed only by dispatch) */
    /* the paused ones, each resumed once; from the head each time, as what runs inside
     * curl_easy_pause may change the list (one that pauses again waits for the next
     * turn: on_write started the idle handle again) */
    for (hero_http_req_t *q = h->reqs; q; q = q->next)
        if (q->paused) {
            q->paused = false;
            q->resuming = true;
        }
    while (!h->closing) {
        hero_http_req_t *q = h->reqs;
        while (q && !q->resuming)
            q = q->next;
        if (!q)
            break;
        q->resuming = false;
        CURLcode c = curl_easy_pause(q->easy, CURLPAUSE_CONT);
        if (c != CURLE_OK) {
            /* (the kept chunk was refused: a write that failed, a body too big...)
             * curl leaves a transfer whose resume failed with no socket to watch and
             * no timer: it would never end, so it ends here */
            http_req_set_fail(q, hero_xasprintf("cannot resume the transfer: %s",
                                                curl_easy_strerror(c)));
            curl_multi_remove_handle(h->multi, q->easy);
            curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
            req_finish(q, c);
        }
    }
    h->dispatching--;
    dispatch(h);
}

void http_resume_later(hero_http_t *h)
{
    uv_idle_start(&h->resume, on_resume);
}

/* curl asks to be woken after ms (0: as soon as possible), or -1: never. Starting a
 * uv timer (even of 0) defers the call to the loop, as curl requires. */
static int on_curl_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    hero_http_t *h = userp;
    if (ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

/* ---- client ---- */

int hero_http_new(uv_loop_t *loop, hero_http_t **out, hero_error_t *err)
{
    (void)err; /* (nothing can fail here since curl starts at its first hop) */
    hero_http_t *h = hero_xcalloc(1, sizeof(*h));
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_idle_init(loop, &h->resume);
    h->resume.data = h;
    h->open_handles = 2;
    *out = h;
    return 0;
}

void hero_http_curl_only(hero_http_t *h, bool on)
{
    h->curl_only = on;
}

static void on_own_handle_closed(uv_handle_t *hd)
{
    http_handle_closed(hd->data);
}

static void http_teardown(hero_http_t *h)
{
    h->torn_down = true;
    while (h->reqs) {
        hero_http_req_t *q = h->reqs;
        req_stop_hop(q);
        req_unlink(q);
        req_free(q);
    }
    http_plain_close_all(h);
    if (h->multi) {
        /* from here on curl must not call back: we close every poll ourselves */
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, NULL);
        while (h->socks)
            sock_close(h->socks);
        curl_multi_cleanup(h->multi);
        h->multi = NULL;
    }
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_own_handle_closed);
    uv_idle_stop(&h->resume);
    uv_close((uv_handle_t *)&h->resume, on_own_handle_closed);
}

void hero_http_close(hero_http_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    if (!h->dispatching)
        http_teardown(h);
}

/* ---- requests ---- */

int hero_http_start(hero_http_t *h, const hero_http_opts_t *o, hero_http_done_cb cb, void *data,
                    hero_http_req_t **out, hero_error_t *err)
{
    if (out)
        *out = NULL;
    if (!h || h->closing)
        return hero_error_set(err, 0, "the HTTP client is closed");
    if (!o || !o->url || !cb)
        return hero_error_set(err, EINVAL, "an HTTP request needs a URL and a callback");
    if (o->fd < 0 && !o->on_data)
        return hero_error_set(err, EINVAL, "an HTTP request with no place for its body");
    if (!url_is_http(o->url))
        return hero_error_set(err, 0, "not an http(s) URL: %s", o->url);
    bool head = false, post = false;
    if (o->method && !strcmp(o->method, "HEAD"))
        head = true;
    else if (o->method && !strcmp(o->method, "POST"))
        post = true;
    else if (o->method && strcmp(o->method, "GET") != 0)
        return hero_error_set(err, 0, "unsupported HTTP method %s", o->method);
    char *origin = http_url_origin(o->url);
    if (!origin)
        return hero_error_set(err, 0, "cannot parse the URL %s", o->url);

    hero_http_req_t *q = hero_xcalloc(1, sizeof(*q));
    q->h = h;
    q->origin = origin;
    q->url = hero_xstrdup(o->url);
    q->head = head;
    q->post = post;
    if (post) {
        q->post_body = hero_xmalloc(o->body_len + 1);
        if (o->body_len)
            memcpy(q->post_body, o->body, o->body_len);
        q->post_body[o->body_len] = 0;
        q->post_len = o->body_len;
    }
    q->tls_no_verify = o->tls_no_verify;
    q->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : HTTP_DEFAULT_CONNECT_MS;
    q->stall_ms = o->stall_timeout_ms ? o->stall_timeout_ms : HTTP_DEFAULT_STALL_MS;
    q->fd = o->fd;
    q->max_body = o->max_body ? o->max_body : HTTP_DEFAULT_MAX_BODY;
    q->max_redirects = o->max_redirects ? o->max_redirects : HTTP_DEFAULT_REDIRECTS;
    q->on_data = o->on_data;
    q->cb = cb;
    q->data = data;
    if (o->timeout_ms)
        q->deadline_ns = uv_hrtime() + (uint64_t)o->timeout_ms * 1000000u;
    for (const char *const *l = o->headers; l && *l; l++) {
        q->headers = hero_xrealloc(q->headers, (q->n_headers + 1) * sizeof(char *));
        q->headers[q->n_headers++] = hero_xstrdup(*l);
    }
    if (o->authorization)
        q->auth = hero_xasprintf("Authorization: %s", o->authorization);
    if (o->range_from)
        q->range = hero_xasprintf("%" PRIu64 "-", o->range_from);

    HERO_DLIST_PUSH(h->reqs, q);
    h->active++;
    if (req_start_hop(q) < 0) {
        hero_error_set(err, 0, "cannot start an HTTP request to %s: %s", o->url,
                       q->fail ? q->fail : "?");
        req_unlink(q);
        req_free(q);
        return -1;
    }
    if (out)
        *out = q;
    return 0;
}

void hero_http_cancel(hero_http_req_t *q)
{
    if (!q || q->finished)
        return;
    req_stop_hop(q);
    req_unlink(q);
    req_free(q);
}
