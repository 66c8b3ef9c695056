/* libFuzzer target for hero's own HTTP/1.1 client (runtime/http_plain.c): the input
 * is what a server answers. A server on the same loop (127.0.0.1, a port of its own)
 * writes the input's bytes (after the first) to each connection it accepts, whatever
 * the request; hero asks for http://127.0.0.1:PORT/x.
 *
 * The first byte chooses how: bit 0 HEAD (else GET); bit 1 the body to a file
 * (/dev/null) instead of memory; bit 2 a second request after the first ends; bit 3 a
 * small max_body (64 bytes); bit 4 the server keeps the connection open after its
 * answer (else it closes it), with a stall timeout of 5 ms (an answer that stops
 * short); bit 5 the server answers again each further request it reads on that
 * connection (with bits 2 and 4: a kept connection really reused).
 *
 * Checks (the harness aborts when one breaks): every request calls back exactly once,
 * never from inside hero_http_start; an answer without an error has a final status,
 * 200-599 (1xx are interim); an error has a CURLcode; a body kept in memory is never
 * longer than max_body (a 2xx) or the 64 KiB kept of an error body; the client closes
 * and the loop ends.
 *
 * Safety: a Location header would make hero follow it, possibly off the machine, so
 * every "location" in the input (any case) is sent with its first letter changed;
 * redirects are the unit tests' business. The proxy variables are cleared (with one
 * set, hero would hand the requests to curl and the proxy). tests/fuzz/run also runs
 * it with only a loopback interface. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/http.h"

static uv_loop_t loop;
static uv_tcp_t server;
static int port;
static int devnull = -1;
static char *answer;    /* the bytes each connection gets */
static size_t answer_len;
static uint8_t mode;    /* the input's first byte */

typedef struct {
    uv_tcp_t tcp;
    uv_write_t wr;
    bool writing, answered;
    char rbuf[4096];
} fz_conn_t;

static void fz_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fz_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)n;
    fz_conn_t *c = h->data;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void fz_written(uv_write_t *w, int status);

static void fz_answer(fz_conn_t *c)
{
    c->writing = true;
    c->wr.data = c;
    uv_buf_t b = uv_buf_init(answer, (unsigned)answer_len);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, fz_written) < 0)
        uv_close((uv_handle_t *)&c->tcp, fz_closed);
}

static void fz_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fz_conn_t *c = s->data;
    if (uv_is_closing((uv_handle_t *)s))
        return;
    if (n < 0) {
        uv_close((uv_handle_t *)s, fz_closed);
        return;
    }
    /* (the request is not looked at, only where one ends) */
    if ((mode & 32) && c->answered && !c->writing && n >= 4 &&
        memmem(b->base, (size_t)n, "\r\n\r\n", 4))
        fz_answer(c);
}

static void fz_written(uv_write_t *w, int status)
{
    (void)status;
    fz_conn_t *c = w->data;
    c->writing = false;
    c->answered = true;
    if (!(mode & 16) && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, fz_closed);
}

static void fz_accept(uv_stream_t *s, int status)
{
    if (status < 0)
        return;
    fz_conn_t *c = calloc(1, sizeof(*c));
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(s, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, fz_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, fz_alloc, fz_read);
    fz_answer(c);
}

static int setup(void)
{
    /* a proxy variable would send the requests through curl, to the proxy */
    static const char *const proxies[] = {"http_proxy", "https_proxy", "HTTPS_PROXY",
                                          "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(*proxies); i++)
        unsetenv(proxies[i]);
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&server, 64, fz_accept) < 0)
        return -1;
    struct sockaddr_in got;
    int len = sizeof(got);
    uv_tcp_getsockname(&server, (struct sockaddr *)&got, &len);
    port = ntohs(got.sin_port);
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    return devnull > 0 ? 0 : -1;
}

typedef struct {
    int calls;
    bool in_start;
    size_t max_body;
} fz_req_t;

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static void fz_done(hero_http_req_t *q, const hero_http_resp_t *r, void *data)
{
    (void)q;
    fz_req_t *f = data;
    if (f->in_start)
        fz_fail("a callback from inside hero_http_start");
    if (++f->calls > 1)
        fz_fail("a second callback for one request");
    if (!r->error && (r->status < 200 || r->status > 599))
        fz_fail("no error, but no final status");
    if (r->error && r->curl_code == 0)
        fz_fail("an error with CURLE_OK");
    bool ok2xx = r->status >= 200 && r->status < 300;
    if ((ok2xx && r->body_len > f->max_body) || (!ok2xx && r->body_len > 64 * 1024))
        fz_fail("a body longer than hero keeps");
    if (!r->body)
        fz_fail("a NULL body");
}

static void fz_request(hero_http_t *h, char *url)
{
    fz_req_t f = {.in_start = true, .max_body = (mode & 8) ? 64 : 8 * 1024 * 1024};
    hero_http_opts_t o = {.url = url,
                          .method = (mode & 1) ? "HEAD" : "GET",
                          .fd = (mode & 2) ? devnull : 0,
                          .max_body = (mode & 8) ? 64 : 0,
                          .stall_timeout_ms = (mode & 16) ? 5 : 2000,
                          .timeout_ms = 5000};
    if (hero_http_start(h, &o, fz_done, &f, NULL, NULL) < 0)
        fz_fail("hero_http_start refused a good request");
    f.in_start = false;
    while (f.calls == 0)
        if (!uv_run(&loop, UV_RUN_ONCE) && f.calls == 0)
            fz_fail("the loop ran dry before the request ended");
}

/* Counts the handles other than the listening socket. */
static void fz_count(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&server)
        (*(int *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (setup() < 0)
            fz_fail("cannot listen on 127.0.0.1");
        ready = true;
    }
    if (size < 1)
        return 0;
    mode = data[0];
    answer_len = size - 1;
    answer = malloc(answer_len + 1);
    memcpy(answer, data + 1, answer_len);
    /* no redirects: see the top of the file */
    for (size_t i = 0; i + 8 <= answer_len; i++)
        if (!strncasecmp(answer + i, "location", 8))
            answer[i] = 'X';

    hero_http_t *h = NULL;
    hero_http_new(&loop, &h, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
    fz_request(h, url);
    if (mode & 4)
        fz_request(h, url);
    hero_http_close(h);
    /* the client's handles close and the server's connections end (their writes use
     * `answer`); the listening socket stays, for the next input */
    int left = 1;
    for (int i = 0; i < 10000 && left; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        left = 0;
        uv_walk(&loop, fz_count, &left);
        if (left)
            usleep(i < 100 ? 0 : 100);
    }
    if (left)
        fz_fail("handles are left open after the client closed");
    free(answer);
    answer = NULL;
    return 0;
}
