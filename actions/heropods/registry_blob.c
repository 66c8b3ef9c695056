/* Blob downloads (see registry.h): a queue with at most max_downloads running, each
 * writing PATH.partial while hashing (the progress callback runs once the bytes are in
 * the file, so a reader may follow it), resuming with Range after a dropped connection,
 * and, once the digest and size match, renamed to PATH (on libuv's thread pool; not
 * synced, see below). A mismatch removes the partial: nothing that failed to verify
 * is ever renamed to PATH.
 *
 * Ownership: an operation holds a reference on the client from the call until its
 * callback has returned; while it runs, the request in flight points back at it. */
#include "registry_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct reg_blob {
    hero_registry_t *r;
    reg_blob_t *next;          /* in the waiting queue */
    reg_endpoint_t ep;
    char *digest;
    int64_t size;              /* -1: unknown */
    char *path, *partial;
    hero_registry_progress_cb progress;
    hero_registry_blob_cb cb;
    void *data;
    bool started;              /* holds a download slot */
    int fd;                    /* the partial file, -1 when closed */
    EVP_MD_CTX *md;
    uint64_t have;             /* bytes hashed and written, from byte 0 */
    char *abort_msg;           /* why the data callback stopped the transfer */
    int abort_code;
    char *url;                 /* for messages after the request is gone */
    uv_fs_t fs;
};

static void pump(hero_registry_t *r);

static void blob_free(reg_blob_t *b)
{
    if (b->fd >= 0)
        close(b->fd);
    EVP_MD_CTX_free(b->md);
    reg_endpoint_free(&b->ep);
    free(b->digest);
    free(b->path);
    free(b->partial);
    free(b->abort_msg);
    free(b->url);
    free(b);
}

/* Ends the operation; err NULL is success. */
static void blob_finish(reg_blob_t *b, hero_error_t *err)
{
    hero_registry_t *r = b->r;
    bool started = b->started;
    if (started)
        r->downloads--;
    b->cb(err, b->data);
    blob_free(b);
    if (started)
        pump(r);
    reg_unref(r); /* the operation's reference: r may be gone after this */
}

/* Fails the operation and removes the partial file. */
static void blob_fail(reg_blob_t *b, hero_error_t *err)
{
    if (b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    if (b->partial)
        unlink(b->partial);
    blob_finish(b, err);
}

static void blob_failf(reg_blob_t *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void blob_failf(reg_blob_t *b, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_t e = HERO_ERROR_INIT;
    reg_fail(&e, code, "%s", m);
    free(m);
    blob_fail(b, &e);
    hero_error_clear(&e);
}

/* ---- completion: rename ----
 *
 * A verified blob is renamed into place without an fsync. It is a copy of what the
 * registry serves, named by its digest, and it is never trusted for being there: a
 * crash may leave it short or empty under its final name (its data was not synced
 * when the rename was), so whoever reads one checks it (the pull hashes a stored layer
 * blob as it applies it, and fetches it again when it does not match, see pull.c).
 * What must survive a crash is synced where it is made: the layer dirs extracted from
 * blobs, the manifests and configs (hero_fs_write_atomic), the image records. Syncing
 * the blob as well would double the bytes a pull waits to get onto the disk. */

static void on_rename(uv_fs_t *req)
{
    reg_blob_t *b = req->data;
    int rc = (int)req->result;
    uv_fs_req_cleanup(req);
    if (rc < 0) {
        blob_failf(b, -rc, "cannot rename %s to %s: %s", b->partial, b->path, uv_strerror(rc));
        return;
    }
    blob_finish(b, NULL);
}

/* ---- the transfer ---- */

static void blob_prepare(reg_req_t *q)
{
    reg_blob_t *b = q->data;
    q->range_from = b->have; /* 0 the first time; a resume after that */
}

static int blob_on_data(reg_req_t *q, uint64_t offset, const char *buf, size_t len)
{
    reg_blob_t *b = q->data;
    if (offset != b->have) {
        if (offset != 0) {
            free(b->abort_msg);
            b->abort_msg = hero_xasprintf("the server resumed at byte %" PRIu64 ", not %" PRIu64,
                                          offset, b->have);
            b->abort_code = EPROTO;
            return -1;
        }
        /* the server ignored Range and starts over: so do we (pwrite from byte 0) */
        EVP_DigestInit_ex(b->md, reg_sha256(), NULL);
        b->have = 0;
    }
    if (b->size >= 0 && b->have + len > (uint64_t)b->size) {
        free(b->abort_msg);
        b->abort_msg = hero_xasprintf("blob %s is larger than its %" PRId64 " bytes", b->digest,
                                      b->size);
        b->abort_code = EBADMSG;
        return -1;
    }
    EVP_DigestUpdate(b->md, buf, len);
    /* written here, not by the http layer, so that the progress callback reports bytes
     * that are in the file: a layer may be read from PATH.partial while it grows */
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(b->fd, buf + done, len - done, (off_t)(b->have + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            free(b->abort_msg);
            b->abort_code = w < 0 ? errno : EIO;
            b->abort_msg = hero_xasprintf("cannot write %s: %s", b->partial,
                                          strerror(b->abort_code));
            return -1;
        }
        done += (size_t)w;
    }
    b->have += len;
    b->r->stats.blob_bytes += len;
    if (b->progress)
        b->progress(b->digest, b->have, b->size >= 0 ? (uint64_t)b->size : 0, b->data);
    return 0;
}

static void blob_on_done(reg_req_t *q, const hero_http_resp_t *resp, hero_error_t *err)
{
    reg_blob_t *b = q->data;
    if (b->abort_msg) { /* our own reason beats the transfer's "aborted" */
        blob_failf(b, b->abort_code, "GET %s: %s", q->url, b->abort_msg);
        return;
    }
    if (err) {
        blob_fail(b, err);
        return;
    }
    if (resp->status != 200 && resp->status != 206) {
        hero_error_t e = HERO_ERROR_INIT;
        reg_http_error(&e, "GET", q->url, resp);
        blob_fail(b, &e);
        hero_error_clear(&e);
        return;
    }
    char got[72];
    reg_sha256_final(b->md, got);
    if (b->size >= 0 && b->have != (uint64_t)b->size) {
        blob_failf(b, EBADMSG, "GET %s: size mismatch for blob %s: expected %" PRId64
                   " bytes, got %" PRIu64, q->url, b->digest, b->size, b->have);
        return;
    }
    if (strcmp(got, b->digest) != 0) {
        blob_failf(b, EBADMSG, "GET %s: digest mismatch for blob %s: got %s", q->url, b->digest,
                   got);
        return;
    }
    b->url = hero_xstrdup(q->url);
    close(b->fd);
    b->fd = -1;
    b->fs.data = b;
    int r = uv_fs_rename(b->r->loop, &b->fs, b->partial, b->path, on_rename);
    if (r < 0)
        blob_failf(b, -r, "cannot rename %s to %s: %s", b->partial, b->path, uv_strerror(r));
}

static void blob_start(reg_blob_t *b)
{
    hero_registry_t *r = b->r;
    b->partial = hero_xasprintf("%s.partial", b->path);
    /* A partial left by an earlier run is started over: its bytes are unverified and
     * hashing them back would block the loop. */
    b->fd = open(b->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (b->fd < 0) {
        hero_error_t e = HERO_ERROR_INIT;
        hero_error_set(&e, errno, "cannot create %s", b->partial);
        free(b->partial);
        b->partial = NULL; /* nothing of ours to remove */
        blob_fail(b, &e);
        hero_error_clear(&e);
        return;
    }
    b->md = EVP_MD_CTX_new();
    if (!b->md)
        abort();
    EVP_DigestInit_ex(b->md, reg_sha256(), NULL);
    char *url = hero_xasprintf("%s/v2/%s/blobs/%s", b->ep.base, b->ep.repository, b->digest);
    reg_req_t *q = reg_req_new(r, REG_BLOB_GET, &b->ep, url, blob_on_done, b);
    q->fd = -1; /* blob_on_data writes the body */
    q->on_data = blob_on_data;
    q->prepare = blob_prepare;
    q->progress = &b->have;
    reg_req_send(q);
}

/* Starts waiting downloads while slots are free. Holds a reference of its own: a
 * callback run from here may close the client. */
static void pump(hero_registry_t *r)
{
    reg_ref(r);
    while (!r->closing && r->downloads < r->max_downloads && r->queue_head) {
        reg_blob_t *b = r->queue_head;
        r->queue_head = b->next;
        if (!r->queue_head)
            r->queue_tail = NULL;
        b->next = NULL;
        b->started = true;
        r->downloads++;
        if (r->downloads > r->stats.max_downloads)
            r->stats.max_downloads = r->downloads;
        blob_start(b);
    }
    reg_unref(r);
}

void reg_blob_cancel_queued(hero_registry_t *r)
{
    while (r->queue_head) {
        reg_blob_t *b = r->queue_head;
        r->queue_head = b->next;
        if (!r->queue_head)
            r->queue_tail = NULL;
        hero_error_t e = HERO_ERROR_INIT;
        reg_fail(&e, ECANCELED, "blob %s: cancelled (the registry client was closed)",
                 b->digest);
        blob_finish(b, &e);
        hero_error_clear(&e);
    }
}

void hero_registry_fetch_blob(hero_registry_t *r, const hero_ref_t *ref,
                              const hero_registry_blob_opts_t *opts, hero_registry_blob_cb cb,
                              void *data)
{
    hero_error_t e = HERO_ERROR_INIT;
    const char *why = NULL;
    if (r->closing) {
        reg_fail(&e, ECANCELED, "blob %s: the registry client is closed",
                 opts->digest ? opts->digest : "?");
        cb(&e, data);
        hero_error_clear(&e);
        return;
    }
    if (!ref || !ref->registry || !ref->repository) {
        why = "no repository (use hero_ref_parse)";
    } else if (!opts->digest) {
        why = "no digest";
    } else if (!opts->path || !*opts->path) {
        why = "no path";
    } else {
        why = reg_digest_problem(opts->digest);
    }
    if (why) {
        reg_fail(&e, EINVAL, "blob %s: %s", opts->digest ? opts->digest : "(none)", why);
        cb(&e, data);
        hero_error_clear(&e);
        return;
    }
    reg_blob_t *b = hero_xcalloc(1, sizeof(*b));
    b->r = r;
    b->fd = -1;
    b->digest = hero_xstrdup(opts->digest);
    b->size = opts->size;
    b->path = hero_xstrdup(opts->path);
    b->progress = opts->progress;
    b->cb = cb;
    b->data = data;
    reg_ref(r);
    if (reg_endpoint_for(r, ref, &b->ep, &e) < 0) {
        blob_finish(b, &e);
        hero_error_clear(&e);
        return;
    }
    if (r->queue_tail)
        r->queue_tail->next = b;
    else
        r->queue_head = b;
    r->queue_tail = b;
    pump(r);
}
