/* Blob downloads (see registry.h): a queue with at most max_downloads running, each
 * writing PATH.partial while hashing (the progress callback runs once the bytes are in
 * the file, so a reader may follow it), resuming with Range after a dropped connection,
 * and, once the digest and size match, renamed to PATH (on libuv's thread pool; not
 * synced, see below). A mismatch removes the partial: nothing that failed to verify
 * is ever renamed to PATH.
 *
 * Hero processes sharing a store (two playbooks run at once on one base dir) share
 * its blobs: whoever writes PATH.partial holds an exclusive flock on it from before
 * it truncates it until the rename or the removal is done. A download that finds the
 * partial locked waits (polling, off the loop's back) until PATH appears, which ends
 * it with nothing fetched, or until the lock is free again (the other download failed,
 * or its hero was killed), when it takes the partial over and starts over. It gives
 * its download slot back while it waits, so that the other downloads go on; a poll
 * that finds the lock free starts it at once when a slot is free, and else puts it at
 * the head of the queue without taking the lock (another process with a slot free may
 * take the partial over meanwhile, and this one waits for that one again).
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
#include <sys/file.h>
#include <sys/stat.h>
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
    bool *downloaded;          /* the caller's, set once PATH is ours */
    int fd;                    /* the partial file, locked; -1 when closed */
    uv_timer_t *wait;          /* polling while another process writes the partial */
    reg_blob_t *wait_next;     /* in r->waiting */
    hero_sha256_t md;          /* of the bytes written so far */
    uint64_t have;             /* bytes hashed and written, from byte 0 */
    char *abort_msg;           /* why the data callback stopped the transfer */
    int abort_code;
    char *url;                 /* for messages after the request is gone */
    uv_fs_t fs;
};

static void pump(hero_registry_t *r);

static void wait_closed(uv_handle_t *h)
{
    free(h);
}

/* Stops polling for another process's download (when it was). */
static void wait_stop(reg_blob_t *b)
{
    if (!b->wait)
        return;
    for (reg_blob_t **pp = &b->r->waiting; *pp; pp = &(*pp)->wait_next)
        if (*pp == b) {
            *pp = b->wait_next;
            break;
        }
    b->wait_next = NULL;
    uv_close((uv_handle_t *)b->wait, wait_closed);
    b->wait = NULL;
}

static void blob_free(reg_blob_t *b)
{
    wait_stop(b);
    if (b->fd >= 0)
        close(b->fd);
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

/* Fails the operation and removes the partial file when it is ours (locked). */
static void blob_fail(reg_blob_t *b, hero_error_t *err)
{
    if (b->fd >= 0) {
        unlink(b->partial); /* before the lock goes with the close */
        close(b->fd);
        b->fd = -1;
    }
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
    if (b->downloaded)
        *b->downloaded = true;
    blob_finish(b, NULL);
}

/* ---- the transfer ---- */

static void blob_prepare(reg_req_t *q)
{
    reg_blob_t *b = q->data;
    q->range_from = b->have; /* 0 the first time; a resume after that */
}

static bool blob_complete(const reg_req_t *q)
{
    const reg_blob_t *b = q->data;
    return b->size >= 0 && b->have == (uint64_t)b->size && !b->abort_msg;
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
        hero_sha256_init(&b->md);
        b->have = 0;
    }
    if (b->size >= 0 && b->have + len > (uint64_t)b->size) {
        free(b->abort_msg);
        b->abort_msg = hero_xasprintf("blob %s is larger than its %" PRId64 " bytes", b->digest,
                                      b->size);
        b->abort_code = EBADMSG;
        return -1;
    }
    hero_sha256_update(&b->md, buf, len);
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
    char got[HERO_SHA256_HEX_LEN];
    hero_sha256_final_hex(&b->md, got);
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
    /* the fd stays open, and the partial locked, until the rename is done */
    b->fs.data = b;
    int r = uv_fs_rename(b->r->loop, &b->fs, b->partial, b->path, on_rename);
    if (r < 0)
        blob_failf(b, -r, "cannot rename %s to %s: %s", b->partial, b->path, uv_strerror(r));
}

/* Takes PATH.partial for this download: creates it, locks it without waiting and
 * empties it (a partial left by an earlier run is started over: its bytes are
 * unverified and hashing them back would block the loop). 1: taken (b->fd); 0:
 * another process holds it; -1: an error, errno set. */
static int partial_take(reg_blob_t *b)
{
    for (int tries = 0; tries < 8; tries++) {
        int fd = open(b->partial, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return 0;
            errno = e;
            return -1;
        }
        /* the lock is on the file opened; its holder may have renamed or removed it
         * just before letting go: only the file that is PATH.partial now will do */
        struct stat mine, named;
        if (fstat(fd, &mine) == 0 && stat(b->partial, &named) == 0 &&
            mine.st_dev == named.st_dev && mine.st_ino == named.st_ino) {
            /* not when it is empty (made just now): on ext4 a truncate to 0 marks the
             * file to be flushed to disk when it is closed (auto_da_alloc), and the
             * sync of the layer extracted from it would then wait for its data */
            if (mine.st_size > 0 && ftruncate(fd, 0) < 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
            }
            b->fd = fd;
            return 1;
        }
        close(fd);
    }
    errno = EAGAIN;
    return -1;
}

static void blob_transfer(reg_blob_t *b)
{
    hero_registry_t *r = b->r;
    hero_sha256_init(&b->md);
    char *url = hero_xasprintf("%s/v2/%s/blobs/%s", b->ep.base, b->ep.repository, b->digest);
    reg_req_t *q = reg_req_new(r, REG_BLOB_GET, &b->ep, url, blob_on_done, b);
    q->fd = -1; /* blob_on_data writes the body */
    q->on_data = blob_on_data;
    q->prepare = blob_prepare;
    q->complete = blob_complete;
    q->progress = &b->have;
    q->expected = b->size > 0 ? (uint64_t)b->size : 0;
    reg_req_send(q);
}

#define WAIT_POLL_MS 50

/* Fails the operation: PATH.partial could not be made or locked (errno e). */
static void partial_failed(reg_blob_t *b, int e)
{
    hero_error_t err = HERO_ERROR_INIT;
    hero_error_set(&err, e, "cannot create %s", b->partial);
    blob_fail(b, &err);
    hero_error_clear(&err);
}

static void blob_start(reg_blob_t *b);

/* Whether nobody holds PATH.partial's lock (or it is gone): taken and let go at once,
 * the file untouched. */
static bool partial_free(const reg_blob_t *b)
{
    int fd = open(b->partial, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    bool free_ = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd); /* (and the lock with it) */
    return free_;
}

/* A poll of a blob that waits for another process's download (and holds no slot):
 * done when PATH is there; else, when a slot is free, it takes it and looks at the
 * partial again; when none is and the partial is free, it goes to the head of the
 * queue (pump gives it the next slot, and blob_start looks again). */
static void on_wait(uv_timer_t *t)
{
    reg_blob_t *b = t->data;
    hero_registry_t *r = b->r;
    if (access(b->path, F_OK) == 0) {
        wait_stop(b);
        blob_finish(b, NULL); /* verified by whoever renamed it there */
        return;
    }
    if (r->closing)
        return;
    if (r->downloads >= r->max_downloads) {
        if (!partial_free(b))
            return; /* still the other process's */
        wait_stop(b);
        b->next = r->queue_head;
        r->queue_head = b;
        if (!r->queue_tail)
            r->queue_tail = b;
        return;
    }
    b->started = true;
    r->downloads++;
    if (r->downloads > r->stats.max_downloads)
        r->stats.max_downloads = r->downloads;
    reg_ref(r); /* blob_start may end the operation, and its reference */
    blob_start(b);
    pump(r); /* the slot may have been given back (still locked) */
    reg_unref(r);
}

/* Downloads the blob, unless another process is downloading it (then waits for that,
 * see the top of the file) or has made PATH meanwhile. */
static void blob_start(reg_blob_t *b)
{
    hero_registry_t *r = b->r;
    if (!b->partial)
        b->partial = hero_xasprintf("%s.partial", b->path);
    int t = access(b->path, F_OK) == 0 ? 2 : partial_take(b);
    if (t == 1 && access(b->path, F_OK) == 0) {
        /* made by another process between the two looks: ours is not needed */
        unlink(b->partial);
        close(b->fd);
        b->fd = -1;
        t = 2;
    }
    if (t == 0) {
        if (b->started) {
            /* no slot while waiting: pump (which called us, or on_wait's) starts the
             * next queued blob */
            b->started = false;
            r->downloads--;
        }
        if (!b->wait) {
            b->wait = hero_xmalloc(sizeof(*b->wait));
            uv_timer_init(r->loop, b->wait);
            b->wait->data = b;
            uv_timer_start(b->wait, on_wait, WAIT_POLL_MS, WAIT_POLL_MS);
            b->wait_next = r->waiting;
            r->waiting = b;
        }
        return;
    }
    wait_stop(b);
    if (t == 2) {
        blob_finish(b, NULL); /* verified by whoever renamed it there */
        return;
    }
    if (t < 0) {
        partial_failed(b, errno);
        return;
    }
    blob_transfer(b);
}

/* Takes b, which follows prev (NULL: b is the head), out of the queue. */
static void queue_unlink(hero_registry_t *r, reg_blob_t *b, reg_blob_t *prev)
{
    if (prev)
        prev->next = b->next;
    else
        r->queue_head = b->next;
    if (r->queue_tail == b)
        r->queue_tail = prev;
    b->next = NULL;
}

/* Ends a blob that is queued or waiting (no partial of its own) with ECANCELED. */
static void blob_cancelled(reg_blob_t *b, const char *why)
{
    hero_error_t e = HERO_ERROR_INIT;
    reg_fail(&e, ECANCELED, "blob %s: %s", b->digest, why);
    blob_finish(b, &e);
    hero_error_clear(&e);
}

/* Starts waiting downloads while slots are free. Holds a reference of its own: a
 * callback run from here may close the client. */
static void pump(hero_registry_t *r)
{
    reg_ref(r);
    while (!r->closing && r->downloads < r->max_downloads && r->queue_head) {
        reg_blob_t *b = r->queue_head;
        queue_unlink(r, b, NULL);
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
    static const char why[] = "cancelled (the registry client was closed)";
    while (r->waiting) {
        reg_blob_t *b = r->waiting;
        wait_stop(b);
        blob_cancelled(b, why);
    }
    while (r->queue_head) {
        reg_blob_t *b = r->queue_head;
        queue_unlink(r, b, NULL);
        blob_cancelled(b, why);
    }
}

void hero_registry_cancel_blob(hero_registry_t *r, hero_registry_blob_cb cb, void *data)
{
    reg_ref(r); /* the callback may let go of the client */
    reg_blob_t *found = NULL, *prev = NULL;
    for (reg_blob_t *b = r->queue_head; b; prev = b, b = b->next)
        if (b->cb == cb && b->data == data) {
            found = b;
            break;
        }
    if (found) {
        queue_unlink(r, found, prev);
        blob_cancelled(found, "cancelled");
        reg_unref(r);
        return;
    }
    for (reg_blob_t *b = r->waiting; b; b = b->wait_next)
        if (b->cb == cb && b->data == data) {
            wait_stop(b); /* first: the callback may cancel again, and find nothing */
            blob_cancelled(b, "cancelled");
            reg_unref(r);
            return;
        }
    for (reg_req_t *q = r->reqs; q; q = q->next)
        if (!q->done && q->on_data == blob_on_data) {
            reg_blob_t *b = q->data;
            if (b->cb == cb && b->data == data) {
                reg_req_cancel(q, "cancelled"); /* blob_on_done removes the partial */
                break;
            }
        }
    reg_unref(r);
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
        why = hero_sha256_digest_problem(opts->digest);
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
    b->downloaded = opts->downloaded;
    if (b->downloaded)
        *b->downloaded = false;
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
