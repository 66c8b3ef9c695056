/* Pulling an image from a registry into the store, on the loop:
 *
 *   resolve (manifest, config; HEAD first when the image is stored already); the
 *      blobs missing from the store start downloading as soon as the manifest is in,
 *      while the config is fetched
 *   -> per layer, in parallel: its layer dir exists already (shared with another
 *      image: nothing to do), else its blob is fetched (at most 6 at once, by the
 *      registry client) and applied on a threadpool thread into a private temp dir
 *      (while it downloads, for up to streams_max() layers at once), synced, and
 *      renamed to images/layers/<diff_id hex> once the blob is verified
 *   -> the image record: its root is the stack of its layer dirs, top first.
 *
 * Store layout (under <base>/images): blobs/sha256/<hex> (manifests, configs and
 * layer blobs as the registry sent them, verified), layers/<hex of diff_id>/ (each
 * layer extracted in overlayfs form, see layer.h). A blob or layer dir that exists
 * under its final name was complete when it was renamed there: both are made under
 * a temporary name and renamed, so a killed hero leaves only temporary names, which
 * the next pull removes. Layer dirs, manifests and configs are synced before their
 * rename; layer blobs are not (registry_blob.c says why), so one that a crash cut
 * short is found out when it is next applied, and fetched again. Nothing is recorded
 * for an image until all its layers are in place. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "layer.h"
#include "pods.h"
#include "pull.h"
#include "registry.h"
#include "runtime/config.h"
#include "runtime/fs.h"
#include "runtime/http.h"
#include "runtime/lazylib.h"
#include "runtime/progress.h"

/* ---- the registry client: one per process, made on first use ---- */
static hero_registry_t *client;
static bool interrupted; /* hero_pull_cancel_all was called: no client any more */

static int client_get(uv_loop_t *loop, hero_registry_t **out, hero_error_t *err)
{
    if (interrupted)
        return hero_error_set(err, ECANCELED, "interrupted");
    if (client) {
        *out = client;
        return 0;
    }
    const hero_config_t *c = hero_config_current();
    hero_registry_mirror_t *m = hero_xcalloc(c->n_registries + 1, sizeof(*m));
    for (size_t i = 0; i < c->n_registries; i++)
        m[i] = (hero_registry_mirror_t){.prefix = c->registries[i].prefix,
                                        .location = c->registries[i].location,
                                        .insecure = c->registries[i].insecure};
    hero_registry_config_t rc = {.mirrors = m, .n_mirrors = c->n_registries,
                                 .auth_json = c->auths};
    int r = hero_registry_new(loop, &rc, &client, err);
    free(m);
    if (r < 0)
        return hero_error_wrap(err, "registry client");
    *out = client;
    return 0;
}

static void pool_disarm(void);

void hero_pull_shutdown(void)
{
    pool_disarm();
    hero_registry_t *c = client;
    client = NULL; /* (closing it may end pulls, which shut down again) */
    hero_registry_close(c);
}

void hero_pull_cancel_all(void)
{
    interrupted = true;
    /* closing the client fails every request and download under way (and those
     * waiting for another process's download) with ECANCELED: each pull ends as soon
     * as its extractions have stopped, removing what it made (see pull_abort and the
     * layer jobs) */
    hero_pull_shutdown();
}

/* ---- one pull ---- */

typedef struct pull pull_t;

typedef struct layer_job {
    pull_t *p;
    size_t idx;
    char *digest, *diff_id;     /* of the blob and of its content */
    int64_t size;
    char *blob, *final, *tmp;   /* paths */
    int item;                   /* progress line */
    uv_work_t work;
    int rc;                     /* of the threadpool part */
    hero_error_t err;
    uint64_t unpacked;          /* uncompressed bytes */
    /* where the job is (see job_step) */
    bool working;               /* a threadpool part is queued or running */
    bool fetching;              /* its blob download runs: its callback is still to come */
    bool staged;                /* extracted from the download into tmp, synced: to be
                                   renamed into place once the download is verified */
    bool applied;               /* the layer dir is in place */
    bool fetched;               /* the blob was downloaded (and verified) by this pull */
    bool downloaded;            /* ... and written by it (not by another process) */
    bool existed;               /* the layer dir was there before this pull */
    bool stream_tried;          /* extraction from the download was started once */
    bool blob_bad;              /* the stored blob is damaged (threadpool part found it) */
    bool refetched;             /* ... and was fetched again */
    hero_error_t fetch_err;     /* the download's error */
    /* extracting while the blob downloads (see stream_start) */
    hero_layer_feed_t *feed;
    int stream_fd;              /* PATH.partial, read-only */
    uint64_t fed;               /* bytes of it reported to the feed */
    char streamed_diff_id[HERO_LAYER_DIGEST_LEN]; /* what the stream's bytes hash to */
} layer_job_t;

/* Another caller waiting for the same image (same store and name). */
typedef struct waiter {
    hero_image_cb cb;
    void *data;
    struct waiter *next;
} waiter_t;

struct pull {
    uv_loop_t *loop;
    hero_store_t *st;
    char *name;
    hero_ref_t ref;
    char *platform;
    bool reset;                 /* pull again even when stored */
    bool check;                 /* a stored image: ask the registry whether it moved */
    bool quiet;                 /* no progress */
    char *known;                /* ref_digest of the stored image */
    waiter_t *waiters;
    hero_registry_image_t *img;
    layer_job_t *jobs;
    size_t njobs, pending;
    hero_error_t err;           /* the first failure */
    hero_progress_t *prog;
    char *blobs, *layers;       /* <base>/images/blobs/sha256, <base>/images/layers */
    bool configured;            /* the config is in: the jobs know their diff_ids */
    bool aborting;              /* failed before its jobs started: ends once no stream
                                   of it runs (abort_end); p->err says why */
    hero_imglock_t *lock;       /* the image lock, shared (see hero_image_pull) */
    uv_work_t meta_work;        /* the manifest and the config into the store */
    hero_error_t meta_err;
    pull_t *next;               /* in `pulls` */
};

/* Pulls in flight in this process, so two actions wanting one image share a pull. */
static pull_t *pulls;

static const char *hex_of(const char *digest)
{
    const char *c = strchr(digest, ':');
    return c ? c + 1 : digest;
}

/* (pull_end has taken it off `pulls` already) */
static void pull_free(pull_t *p)
{
    for (size_t i = 0; i < p->njobs; i++) {
        layer_job_t *j = &p->jobs[i];
        free(j->digest);
        free(j->diff_id);
        free(j->blob);
        free(j->final);
        free(j->tmp);
        hero_error_clear(&j->err);
        hero_error_clear(&j->fetch_err);
    }
    free(p->jobs);
    hero_registry_image_free(p->img);
    hero_ref_free(&p->ref);
    free(p->platform);
    free(p->known);
    free(p->name);
    free(p->blobs);
    free(p->layers);
    hero_imglock_release(p->lock);
    hero_error_clear(&p->err);
    hero_error_clear(&p->meta_err);
    free(p);
}

/* Ends the pull: every waiter gets the image from the store (or the error). */
static void pull_end(pull_t *p, hero_error_t *err)
{
    hero_error_t cancelled = HERO_ERROR_INIT;
    if (interrupted && (!err || err->code == ECANCELED)) {
        /* a cancelled request or wait is only the way the interruption reached the pull
         * (a real failure before it keeps its own message); and a pull that got all it
         * needed meanwhile is not recorded either: an interrupted action records
         * nothing (its layers stay for the next pull) */
        hero_error_set_plain(&cancelled, ECANCELED, "pulling %s: interrupted",
                             p->ref.canonical ? p->ref.canonical : p->name);
        err = &cancelled;
    }
    if (p->prog) {
        hero_progress_finish(p->prog, err == NULL);
        p->prog = NULL;
    }
    waiter_t *w = p->waiters;
    p->waiters = NULL;
    /* off the in-flight list first: a waiter may start another pull of this name */
    for (pull_t **pp = &pulls; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->next = NULL;
    while (w) {
        waiter_t *n = w->next;
        if (err) {
            /* a copy each: a callback may take the message over (hero_task_done does) */
            hero_error_t e = HERO_ERROR_INIT;
            hero_error_copy(&e, err);
            w->cb(NULL, &e, w->data);
            hero_error_clear(&e);
        } else
            hero_image_resolve_stored(p->st, p->name, w->cb, w->data);
        free(w);
        w = n;
    }
    pull_free(p);
    hero_error_clear(&cancelled);
    /* an idle client would keep the loop alive (its timer, kept-alive connections):
     * close it when no pull is left, the next pull makes a new one */
    if (!pulls)
        hero_pull_shutdown();
}

/* Writes a small verified blob (a manifest, a config) under its digest. */
static int blob_put(pull_t *p, const char *digest, const char *bytes, size_t len,
                    hero_error_t *err)
{
    char *path = hero_xasprintf("%s/%s", p->blobs, hex_of(digest));
    int rc = access(path, F_OK) == 0 ? 0 : hero_fs_write_atomic(path, bytes, len, err);
    free(path);
    return rc;
}

static char *join_layers(pull_t *p)
{
    /* overlayfs wants the top layer first */
    size_t n = 0;
    for (size_t i = 0; i < p->njobs; i++)
        n += strlen(p->jobs[i].final) + 1;
    char *s = hero_xmalloc(n + 1), *o = s;
    for (size_t i = p->njobs; i-- > 0;) {
        size_t l = strlen(p->jobs[i].final);
        memcpy(o, p->jobs[i].final, l);
        o += l;
        *o++ = i ? ':' : 0;
    }
    if (!p->njobs)
        *s = 0;
    return s;
}

static void pull_record(pull_t *p)
{
    hero_error_t e = HERO_ERROR_INIT;
    if (p->njobs == 0) {
        hero_error_set(&e, EPROTO, "image %s has no layers", p->ref.canonical);
        pull_end(p, &e);
        hero_error_clear(&e);
        return;
    }
    int64_t size = 0;
    for (size_t i = 0; i < p->njobs; i++)
        size += (int64_t)p->jobs[i].unpacked;
    char *rootfs = join_layers(p);
    hero_image_rec_t r = {.name = p->name,
                          .ref = p->ref.canonical,
                          .digest = p->img->manifest_digest,
                          .rootfs = rootfs,
                          .config = p->img->config,
                          .size = size,
                          .created = (int64_t)time(NULL)};
    /* the record and what its reference pointed at: one commit */
    int rc = hero_store_batch_begin(p->st, &e);
    if (rc == 0) {
        rc = hero_store_image_put(p->st, &r, &e);
        if (rc == 0)
            rc = hero_store_image_set_ref_digest(p->st, p->name, p->img->ref_digest, &e);
        if (hero_store_batch_end(p->st, rc < 0 ? NULL : &e) < 0)
            rc = -1;
    }
    free(rootfs);
    pull_end(p, rc < 0 ? &e : NULL);
    hero_error_clear(&e);
}

/* One layer (or the hold layers_start keeps while it starts them) is done. */
static void pending_done(pull_t *p)
{
    if (--p->pending)
        return;
    if (p->err.msg) {
        hero_error_wrap(&p->err, "pulling %s", p->ref.canonical);
        hero_error_t e = p->err;
        p->err = (hero_error_t)HERO_ERROR_INIT;
        pull_end(p, &e);
        hero_error_clear(&e);
        return;
    }
    if (interrupted) {
        pull_end(p, NULL); /* (which makes it "interrupted": nothing is recorded) */
        return;
    }
    pull_record(p);
}

static void job_finished(layer_job_t *j, hero_error_t *err)
{
    pull_t *p = j->p;
    if (err && !p->err.msg) {
        hero_error_copy(&p->err, err);
        hero_error_wrap(&p->err, "layer %.19s", j->digest);
    }
    hero_progress_item_done(p->prog, j->item, err ? "failed" : j->existed ? "exists" : "done");
    pending_done(p);
}

/* ---- applying a layer: on the threadpool, from the stored blob or from its download ----
 *
 * A layer whose blob is downloading is extracted while it downloads (stream_start),
 * from its first bytes on, whether the config has come or not: its threadpool part
 * reads PATH.partial as the download writes it, waiting for the bytes the registry
 * client reports written, and extracts, hashes and syncs the layer into its temp dir
 * ("staged"). The blob's digest is the registry client's to check, as for any
 * download, and the diff_id the config's: the temp dir is renamed into place
 * (commit_work) only once the download has succeeded and the config is in and names
 * the diff_id the stream hashed, so a blob that does not match caches nothing. (A
 * stream never reads the job's diff_id or final path, which layers_start writes on
 * the loop thread meanwhile.) Anything odd (the download starts over or fails, the
 * stream fails for whatever reason, the config names another diff_id) throws the
 * stream's work away; once the download is in, the layer is applied from the stored
 * blob as without streaming, so errors read as before. A stream whose layer dir the
 * config shows in place already is stopped, and that dir kept.
 *
 * A streaming extraction holds a threadpool thread while it waits for the network, so
 * at most streams_max() run at once: 2, and two threads of the pool stay free (libuv
 * has 4 unless UV_THREADPOOL_SIZE says otherwise) for what the downloads and the pull
 * need meanwhile (a name lookup for a new connection, the manifest's sync); a layer
 * that finds no free slot is applied after its download. The wait never depends on
 * threadpool work (the bytes and the download's failure come from the loop thread, and
 * the stream never waits for the download's verdict), so a busy pool only delays
 * things. */
static unsigned streams; /* streaming extractions running in this process */

static unsigned streams_max(void)
{
    static int max = -1;
    if (max < 0) {
        /* the pool's size as libuv reads the variable (a negative one counts as 1
         * here: fewer streams, never more) */
        const char *v = getenv("UV_THREADPOOL_SIZE");
        int n = v ? atoi(v) : 4;
        if (n <= 0)
            n = 1;
        max = n - 2 > 2 ? 2 : n - 2 < 0 ? 0 : n - 2;
    }
    return (unsigned)max;
}

static void job_step(layer_job_t *j);
static void size_work(uv_work_t *w);
static void size_done(uv_work_t *w, int status);
static void abort_end(pull_t *p);
static void pool_start_soon(uv_loop_t *loop);
static void blob_fetch(hero_registry_t *r, layer_job_t *j);

/* threadpool: apply the blob into a temp dir and sync it; then, unless streaming,
 * rename it into place */
static void apply_work(uv_work_t *w)
{
    layer_job_t *j = w->data;
    if (!j->feed && access(j->final, F_OK) == 0) {
        /* another hero process made it meanwhile (it waited for its blob) */
        j->unpacked = hero_layer_dir_size(j->final);
        j->rc = 0;
        return;
    }
    j->rc = -1;
    /* (a stream may run before the config names the diff_id: it goes by the blob) */
    char *tmpl = hero_xasprintf("%s/.tmp-%ld-%.12s-XXXXXX", j->p->layers, (long)getpid(),
                                hex_of(j->feed ? j->digest : j->diff_id));
    if (!mkdtemp(tmpl)) {
        hero_error_set(&j->err, errno, "cannot make a directory in %s", j->p->layers);
        free(tmpl);
        return;
    }
    j->tmp = tmpl;
    hero_layer_result_t res;
    /* A blob found in the store (not downloaded by this pull, which the registry client
     * verified) is checked again as it is read: a damaged one (say, a disk error, or a
     * writer that did not sync) is removed and fetched again (blob_bad). */
    bool check = !j->feed && !j->fetched;
    hero_layer_src_t src = {.fd = j->feed ? j->stream_fd : -1,
                            .digest = check ? j->digest : NULL,
                            .size = j->size > 0 ? j->size : -1,
                            .feed = j->feed};
    if (!j->feed) {
        src.fd = open(j->blob, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0) {
            hero_error_set(&j->err, errno, "cannot open layer blob '%s'", j->blob);
            if (errno == ENOENT) /* (another pull that failed may have removed it) */
                j->blob_bad = true;
            return;
        }
    }
    int rc = hero_layer_apply_src(&src, j->tmp, j->feed ? NULL : j->diff_id, &res, &j->err);
    if (!j->feed)
        close(src.fd);
    if (rc < 0) {
        if (check &&
            (res.blob_mismatch || hero_layer_blob_verify(j->blob, j->digest, src.size, NULL) == 1)) {
            /* not the blob the manifest names: away with it, it is fetched again */
            unlink(j->blob);
            j->blob_bad = true;
        }
        return;
    }
    j->unpacked = res.bytes_written;
    if (hero_layer_sync(j->tmp, res.entries, &j->err) < 0)
        return;
    if (j->feed) {
        memcpy(j->streamed_diff_id, res.diff_id, sizeof(res.diff_id));
        j->rc = 0; /* staged: commit_work renames it once the download is verified */
        return;
    }
    if (rename(j->tmp, j->final) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY) {
            hero_error_set(&j->err, errno, "cannot rename %s to %s", j->tmp, j->final);
            return;
        }
        /* another hero made the same layer meanwhile: keep theirs */
        return;
    }
    free(j->tmp);
    j->tmp = NULL;
    j->rc = 0;
}

/* threadpool: rename a staged layer into place (its blob is verified) */
static void commit_work(uv_work_t *w)
{
    layer_job_t *j = w->data;
    j->rc = 0;
    if (rename(j->tmp, j->final) == 0) {
        free(j->tmp);
        j->tmp = NULL;
    } else if (errno != EEXIST && errno != ENOTEMPTY) {
        /* (else another hero made the same layer meanwhile: keep theirs) */
        hero_error_set(&j->err, errno, "cannot rename %s to %s", j->tmp, j->final);
        j->rc = -1;
    }
}

/* Removes the temp dir of a failed (or superseded) layer. */
static void drop_tmp(layer_job_t *j)
{
    if (!j->tmp)
        return;
    hero_error_t e = HERO_ERROR_INIT;
    hero_fs_rmtree(j->tmp, &e);
    hero_error_clear(&e);
    free(j->tmp);
    j->tmp = NULL;
}

static void apply_done(uv_work_t *w, int status)
{
    layer_job_t *j = w->data;
    j->working = false;
    bool streamed = j->feed != NULL;
    if (streamed) {
        streams--;
        close(j->stream_fd);
        j->stream_fd = -1;
        hero_layer_feed_free(j->feed);
        j->feed = NULL;
    }
    if (status < 0 && !j->err.msg) {
        hero_error_set(&j->err, ECANCELED, "layer extraction was cancelled");
        j->rc = -1;
    }
    if (streamed && j->rc == 0) {
        j->staged = true; /* j->tmp holds it */
    } else {
        if (j->tmp) {
            /* a failure, or a layer someone else finished first */
            drop_tmp(j);
            if (!j->err.msg && access(j->final, F_OK) == 0)
                j->rc = 0;
        }
        if (j->rc == 0)
            j->applied = true;
        else if (streamed)
            /* not final: the layer is applied again from the blob once it is in */
            hero_error_clear(&j->err);
    }
    job_step(j);
}

/* Queues a threadpool part of the job (its `working` holds job_step until done). */
static void job_queue(layer_job_t *j, uv_work_cb work, uv_after_work_cb done)
{
    j->working = true;
    j->work.data = j;
    uv_queue_work(j->p->loop, &j->work, work, done);
}

static void apply_start(layer_job_t *j)
{
    if (!j->feed) /* the blob is all there */
        hero_progress_update(j->p->prog, j->item, j->size > 0 ? (uint64_t)j->size : 0);
    job_queue(j, apply_work, apply_done);
}

/* Starts extracting the layer from PATH.partial while the download writes it; `done`
 * bytes are in it already (so it is this download's file, truncated and rewritten). */
static void stream_start(layer_job_t *j, uint64_t done)
{
    j->stream_tried = true;
    char *partial = hero_xasprintf("%s.partial", j->blob);
    j->stream_fd = open(partial, O_RDONLY | O_CLOEXEC);
    free(partial);
    if (j->stream_fd < 0)
        return; /* applied after the download, then */
    j->feed = hero_layer_feed_new();
    hero_layer_feed_grow(j->feed, done);
    j->fed = done;
    streams++;
    apply_start(j);
}

/* Where a job goes next; called after each event (the download's end, the end of a
 * threadpool part). */
static void job_step(layer_job_t *j)
{
    if (j->working || j->fetching)
        return; /* wait: the pull must not end while the download refers to the job */
    if (j->p->aborting) {
        abort_end(j->p);
        return;
    }
    if (!j->p->configured)
        return; /* a download started from the manifest is in: layers_start goes on */
    if (j->existed && !j->applied) {
        /* streamed before the config showed the layer dir in place: that one stands
         * (size_work removes what the stream made) */
        j->staged = false;
        hero_error_clear(&j->err);
        j->applied = true;
        job_queue(j, size_work, size_done);
        return;
    }
    if (!j->applied && !j->err.msg && hero_sha256_digest_problem(j->diff_id))
        hero_error_set(&j->err, EPROTO, "unusable diff_id '%s'", j->diff_id);
    if (j->fetch_err.msg && !j->existed) {
        drop_tmp(j); /* a staged layer whose blob failed: nothing is kept */
        j->staged = false;
        job_finished(j, &j->fetch_err);
        return;
    }
    if (j->staged) {
        j->staged = false;
        if (!j->err.msg && strcasecmp(j->streamed_diff_id, j->diff_id) == 0) {
            /* the download is verified, and so is the diff_id: into place */
            job_queue(j, commit_work, apply_done);
            return;
        }
        /* not the layer the config names: it is applied again from the blob below,
         * which says why (or the error above does) */
        drop_tmp(j);
        j->unpacked = 0;
    }
    if (j->applied) {
        job_finished(j, NULL);
        return;
    }
    if (j->err.msg) {
        hero_registry_t *r;
        if (j->blob_bad && !j->refetched && client_get(j->p->loop, &r, NULL) == 0) {
            /* the stored blob is damaged: fetch it again */
            hero_error_clear(&j->err);
            j->blob_bad = false;
            j->refetched = true;
            blob_fetch(r, j);
            return;
        }
        job_finished(j, &j->err);
        return;
    }
    apply_start(j); /* from the stored blob */
}

static void blob_progress(const char *digest, uint64_t done, uint64_t total, void *data)
{
    (void)digest;
    (void)total;
    layer_job_t *j = data;
    hero_progress_update(j->p->prog, j->item, done);
    if (j->feed) {
        if (done < j->fed) /* the server ignored a Range: the file is rewritten */
            hero_layer_feed_fail(j->feed, "the download started over");
        else
            hero_layer_feed_grow(j->feed, done);
        j->fed = done;
    } else if (!j->p->aborting && !j->applied && !j->err.msg && !j->stream_tried &&
               !j->working && j->fetching && j->size > 0 && done > 0 && streams < streams_max()) {
        stream_start(j, done);
    }
}

static void blob_fetched_job(layer_job_t *j, hero_error_t *err)
{
    j->fetching = false;
    if (err) {
        hero_error_copy(&j->fetch_err, err);
        if (j->feed)
            hero_layer_feed_fail(j->feed, err->msg);
    } else {
        j->fetched = true;
    }
    job_step(j);
}

/* Blob downloads in flight in this process, by path: two pulls that need one blob
 * (two names for one image, or two images sharing a layer) share its download. */
typedef struct blob_fetch {
    char *path;
    layer_job_t **jobs;
    size_t njobs;
    bool downloaded;            /* the registry client wrote path (see its opts) */
    bool orphaned;              /* every job left it (their pull failed): its blob goes */
    struct blob_fetch *next;
} blob_fetch_t;

static blob_fetch_t *fetches;

static void blob_fetched(hero_error_t *err, void *data)
{
    blob_fetch_t *f = data;
    for (blob_fetch_t **pp = &fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    if (f->orphaned && !err && f->downloaded)
        unlink(f->path); /* a failed pull's early download: nothing of it stays */
    for (size_t i = 0; i < f->njobs; i++) {
        f->jobs[i]->downloaded = f->downloaded;
        blob_fetched_job(f->jobs[i], err);
    }
    free(f->jobs);
    free(f->path);
    free(f);
}

static void blob_progress_all(const char *digest, uint64_t done, uint64_t total, void *data)
{
    blob_fetch_t *f = data;
    for (size_t i = 0; i < f->njobs; i++)
        blob_progress(digest, done, total, f->jobs[i]);
}

static void blob_fetch(hero_registry_t *r, layer_job_t *j)
{
    j->fetching = true;
    for (blob_fetch_t *f = fetches; f; f = f->next)
        if (!strcmp(f->path, j->blob)) {
            f->jobs = hero_xrealloc(f->jobs, (f->njobs + 1) * sizeof(*f->jobs));
            f->jobs[f->njobs++] = j;
            f->orphaned = false;
            return;
        }
    blob_fetch_t *f = hero_xcalloc(1, sizeof(*f));
    f->path = hero_xstrdup(j->blob);
    f->jobs = hero_xmalloc(sizeof(*f->jobs));
    f->jobs[0] = j;
    f->njobs = 1;
    f->next = fetches;
    fetches = f;
    hero_registry_blob_opts_t bo = {.digest = j->digest, .size = j->size, .path = j->blob,
                                    .progress = blob_progress_all, .downloaded = &f->downloaded};
    hero_registry_fetch_blob(r, &j->p->ref, &bo, blob_fetched, f);
}

/* threadpool: the manifest and the config into the store */
static void meta_work(uv_work_t *w)
{
    pull_t *p = w->data;
    if (blob_put(p, p->img->manifest_digest, p->img->manifest, p->img->manifest_len,
                 &p->meta_err) == 0)
        blob_put(p, p->img->config_digest, p->img->config, p->img->config_len, &p->meta_err);
}

static void meta_done(uv_work_t *w, int status)
{
    pull_t *p = w->data;
    if (status < 0 && !p->meta_err.msg)
        hero_error_set(&p->meta_err, ECANCELED, "writing the manifest was cancelled");
    if (p->meta_err.msg && !p->err.msg)
        hero_error_copy(&p->err, &p->meta_err);
    pending_done(p);
}

/* threadpool: the size of a layer dir the pull found in place */
static void size_work(uv_work_t *w)
{
    layer_job_t *j = w->data;
    drop_tmp(j); /* a stream's work, not wanted (see job_step) */
    j->unpacked = hero_layer_dir_size(j->final);
}

static void size_done(uv_work_t *w, int status)
{
    (void)status; /* a size not counted is no failure */
    layer_job_t *j = w->data;
    j->working = false;
    job_step(j);
}

/* The jobs, one per layer of the manifest; their diff_ids come with the config. */
static void jobs_make(pull_t *p, const hero_registry_image_t *img)
{
    size_t n = img->n_layers;
    p->jobs = hero_xcalloc(n ? n : 1, sizeof(*p->jobs));
    p->njobs = n;
    /* progress only once there is something to fetch (not for an unchanged image) */
    if (!p->quiet)
        p->prog = hero_progress_new(stderr, isatty(STDERR_FILENO), p->ref.canonical);
    for (size_t i = 0; i < n; i++) {
        layer_job_t *j = &p->jobs[i];
        j->p = p;
        j->idx = i;
        j->digest = hero_xstrdup(img->layers[i].digest);
        j->size = img->layers[i].size;
        j->blob = hero_xasprintf("%s/%s", p->blobs, hex_of(j->digest));
        j->stream_fd = -1;
        char label[16];
        snprintf(label, sizeof(label), "%.12s", hex_of(j->digest));
        j->item = hero_progress_item(p->prog, label, j->size > 0 ? (uint64_t)j->size : 0);
    }
}

/* The manifest is in, the config is on its way: the blobs that are not in the store
 * start downloading now rather than one round trip later. Which layer dirs exist is
 * only known with the config's diff_ids; a blob that is missing while its layer dir
 * is there (the same layer compressed otherwise by another image, or a blob removed
 * by hand) is fetched for nothing, which is rare and costs no correctness. Their
 * streams start with their first bytes (stream_start); nothing goes into place before
 * the config is in (job_step waits for it). */
static void manifest_known(const hero_registry_image_t *img, void *data)
{
    pull_t *p = data;
    hero_registry_t *r;
    if (p->jobs || client_get(p->loop, &r, NULL) < 0)
        return;
    jobs_make(p, img);
    for (size_t i = 0; i < p->njobs; i++)
        if (access(p->jobs[i].blob, F_OK) != 0)
            blob_fetch(r, &p->jobs[i]);
}

/* Whether a job of another pull in flight uses this blob. */
static bool blob_wanted_elsewhere(const pull_t *p, const char *blob)
{
    for (const pull_t *q = pulls; q; q = q->next)
        for (size_t i = 0; q != p && !q->aborting && i < q->njobs; i++)
            if (!strcmp(q->jobs[i].blob, blob))
                return true;
    return false;
}

/* Ends a pull that failed before its jobs started (the config did not come, or did not
 * do), once the streams its downloads started have stopped (abort_end). Downloads
 * begun from the manifest that no other pull of this process shares are
 * cancelled (their partial files go); one that is being renamed into place ends, and
 * its blob is removed then (blob_fetched). Blobs they completed are removed unless
 * another pull of this process wants them, or another process wrote them: a failed
 * pull leaves nothing of its own behind. (A pull of another process that waited for
 * such a blob and finds it gone fetches it again: apply_work's ENOENT.) */
static void pull_abort(pull_t *p, hero_error_t *err)
{
    /* the last layers first: those are the ones queued, so that cancelling the
     * earlier ones in flight does not hand their slots to them */
    for (size_t i = p->njobs; i-- > 0;) {
        layer_job_t *j = &p->jobs[i];
        if (j->fetching) {
            blob_fetch_t *orphan = NULL;
            for (blob_fetch_t *f = fetches; f && !orphan; f = f->next)
                for (size_t k = 0; k < f->njobs; k++)
                    if (f->jobs[k] == j) {
                        f->jobs[k] = f->jobs[--f->njobs];
                        f->orphaned = f->njobs == 0;
                        if (f->orphaned)
                            orphan = f;
                        break;
                    }
            j->fetching = false;
            if (orphan && client) /* (without a client it was cancelled already) */
                hero_registry_cancel_blob(client, blob_fetched, orphan); /* frees it */
        } else if (j->downloaded && !blob_wanted_elsewhere(p, j->blob)) {
            unlink(j->blob);
        }
        if (j->feed) /* its stream stops waiting for bytes and ends */
            hero_layer_feed_fail(j->feed, err && err->msg ? err->msg : "the pull failed");
    }
    if (!p->err.msg && err && err->msg)
        hero_error_copy(&p->err, err);
    else if (!p->err.msg)
        hero_error_set(&p->err, EIO, "pulling %s failed", p->ref.canonical);
    p->aborting = true;
    abort_end(p);
}

/* The end of an aborted pull, once none of its streams runs any more: the layers they
 * staged are removed, and the pull ends with its error. */
static void abort_end(pull_t *p)
{
    for (size_t i = 0; i < p->njobs; i++)
        if (p->jobs[i].working)
            return; /* its apply_done calls job_step, which comes back here */
    for (size_t i = 0; i < p->njobs; i++) {
        drop_tmp(&p->jobs[i]);
        p->jobs[i].staged = false;
    }
    hero_error_t e = p->err;
    p->err = (hero_error_t)HERO_ERROR_INIT;
    pull_end(p, &e);
    hero_error_clear(&e);
}

static void layers_start(pull_t *p)
{
    hero_error_t e = HERO_ERROR_INIT;
    json_t *cfg = json_loads(p->img->config, 0, NULL);
    json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
    size_t n = p->img->n_layers;
    if (!json_is_array(ids) || json_array_size(ids) != n) {
        hero_error_set(&e, EPROTO,
                       "image %s: its config lists %zu diff_ids for %zu layers",
                       p->ref.canonical, json_is_array(ids) ? json_array_size(ids) : 0, n);
        json_decref(cfg);
        pull_abort(p, &e);
        hero_error_clear(&e);
        return;
    }
    hero_registry_t *r;
    if (client_get(p->loop, &r, &e) < 0) {
        json_decref(cfg);
        pull_abort(p, &e);
        hero_error_clear(&e);
        return;
    }
    if (!p->jobs)
        jobs_make(p, p->img);
    for (size_t i = 0; i < n; i++) {
        layer_job_t *j = &p->jobs[i];
        const char *d = json_string_value(json_array_get(ids, i));
        j->diff_id = hero_xstrdup(d ? d : "");
        /* its hex in lower case, as hero names layer dirs (the hash it computes, and
         * OCI's digest grammar): an upper-case diff_id must not make a second dir.
         * (The algorithm stays as given: "SHA256:" is no diff_id.) */
        if (!strncmp(j->diff_id, "sha256:", 7))
            for (char *c = j->diff_id + 7; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        j->final = hero_xasprintf("%s/%s", p->layers, hex_of(j->diff_id));
    }
    json_decref(cfg);
    p->configured = true;
    /* one count per layer, one for the manifest and config (meta_work), and a hold of
     * our own: a job may finish (even fail) before the next one starts, and the pull
     * must not end under this loop */
    p->pending = n + 2;
    for (size_t i = 0; i < n; i++) {
        layer_job_t *j = &p->jobs[i];
        if (j->working || j->staged) {
            /* extracting its download since the manifest came (or done with that):
             * job_step checks what it made against the config once it is done; unless
             * the layer dir is there already (the same layer compressed otherwise by
             * an image pulled before), then the stream stops and the dir is taken as
             * for a layer found in place (job_step) */
            if (!hero_sha256_digest_problem(j->diff_id) && access(j->final, F_OK) == 0) {
                j->existed = true;
                if (j->feed)
                    hero_layer_feed_fail(j->feed, "the layer is in the store already");
            }
            job_step(j);
            continue;
        }
        if (hero_sha256_digest_problem(j->diff_id)) {
            hero_error_set(&j->err, EPROTO, "unusable diff_id '%s'", j->diff_id);
        } else if (access(j->final, F_OK) == 0) {
            /* shared with an image pulled before (a download of its blob that started
             * from the manifest is let finish: job_step waits for it); its size is
             * counted in the image's */
            j->applied = j->existed = true;
            job_queue(j, size_work, size_done);
            continue;
        } else if (!j->fetching && !j->fetched && !j->fetch_err.msg) {
            if (access(j->blob, F_OK) == 0)
                apply_start(j); /* checks the blob as it reads it (see apply_work) */
            else
                blob_fetch(r, j);
            continue;
        }
        job_step(j); /* a download in flight goes on; its bytes are extracted as they come */
    }
    /* the manifest and the config go into the store (each synced) on the threadpool,
     * while the layers download */
    p->meta_work.data = p;
    uv_queue_work(p->loop, &p->meta_work, meta_work, meta_done);
    pending_done(p);
}

static void resolved(hero_registry_image_t *img, hero_error_t *err, void *data)
{
    pull_t *p = data;
    if (!img) {
        hero_error_wrap(err, "pulling %s", p->ref.canonical);
        pull_abort(p, err);
        return;
    }
    p->img = img;
    if (img->unchanged) {
        /* the stored image is what the reference points at */
        pull_end(p, NULL);
        return;
    }
    layers_start(p);
}

static void locked(hero_imglock_t *lock, hero_error_t *err, void *data)
{
    pull_t *p = data;
    if (!lock) {
        pull_end(p, err);
        return;
    }
    p->lock = lock;
    hero_error_t e = HERO_ERROR_INIT;
    if (!p->reset) {
        hero_image_rec_t rec = {0};
        int g = hero_store_image_get(p->st, p->name, &rec, &e);
        if (g < 0) {
            hero_image_rec_free(&rec);
            pull_end(p, &e);
            hero_error_clear(&e);
            return;
        }
        if (g == 0 && rec.ref && !strcmp(rec.ref, p->ref.canonical)) {
            char *known = NULL;
            hero_store_image_get_ref_digest(p->st, p->name, &known, NULL);
            if (!p->check || !known) {
                /* stored, and nobody asked to look for a newer one */
                free(known);
                hero_image_rec_free(&rec);
                pull_end(p, NULL);
                return;
            }
            p->known = known;
        }
        hero_image_rec_free(&rec);
    }
    hero_registry_t *r;
    if (client_get(p->loop, &r, &e) < 0) {
        pull_end(p, &e);
        hero_error_clear(&e);
        return;
    }
    /* libcurl opens now on the preload thread when the registry is not plain http
     * (https: the first request needs it at once) */
    char *murl = hero_registry_manifest_url(r, &p->ref);
    bool curl = !murl || hero_http_url_uses_curl(murl);
    free(murl);
    if (curl)
        hero_lazylib_preload(HERO_LAZY_CURL);
    /* (not for a stored image that is only checked for a newer one; armed before the
     * resolve, whose callback may run at once and free p) */
    if (!p->known)
        pool_start_soon(p->loop);
    hero_registry_resolve_opts_t ro = {.platform = p->platform, .known_digest = p->known,
                                       .manifest = manifest_known};
    hero_registry_resolve(r, &p->ref, &ro, resolved, p);
}

/* libuv makes its threadpool's threads (four: some 2 ms on these VMs) at the pool's
 * first use, which for a registry named by address would be the first layer's stream,
 * just as its first bytes come (a host name's lookup uses the pool before that). A
 * pull that will fetch layers has them made once its manifest request has gone out: a
 * check handle runs after the loop has polled for I/O (the request is written then),
 * so the threads are made while the registry answers. Were they made while the
 * preload thread opens libcurl, each pthread_create would wait for that dlopen
 * (glibc's loader holds its TLS lock throughout); an https pull's first request
 * waits for it anyway. The handle is closed when no pull is left (pool_disarm): a
 * check handle keeps the loop alive but never wakes its poll. */
static uv_check_t pool_check;
static bool pool_armed; /* pool_check waits for its turn */
static bool pool_made;  /* the threads are made, or on their way */

static void pool_noop(uv_work_t *w)
{
    (void)w;
}

static void pool_disarm(void)
{
    if (pool_armed) {
        pool_armed = false;
        uv_check_stop(&pool_check);
        uv_close((uv_handle_t *)&pool_check, NULL);
    }
}

static void pool_check_cb(uv_check_t *h)
{
    static uv_work_t w;
    pool_disarm();
    pool_made = true;
    uv_queue_work(h->loop, &w, pool_noop, NULL);
}

static void pool_start_soon(uv_loop_t *loop)
{
    if (!pool_made && !pool_armed) {
        pool_armed = true;
        uv_check_init(loop, &pool_check);
        uv_check_start(&pool_check, pool_check_cb);
    }
}

/* Removes temporary names a killed pull left (older than ten minutes: a pull of
 * another hero process may be using a young one). */
static void clean_leftovers(const char *dir)
{
    hero_fs_remove_stale(dir, ".tmp-", 600);
}

void hero_image_pull(uv_loop_t *loop, hero_store_t *st, const hero_pull_opts_t *o,
                     hero_image_cb cb, void *data)
{
    hero_error_t e = HERO_ERROR_INIT;
    for (pull_t *q = pulls; q; q = q->next)
        if (q->st == st && !strcmp(q->name, o->name)) {
            waiter_t *w = hero_xcalloc(1, sizeof(*w));
            w->cb = cb;
            w->data = data;
            w->next = q->waiters;
            q->waiters = w;
            return;
        }
    pull_t *p = hero_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->st = st;
    p->name = hero_xstrdup(o->name);
    p->platform = o->platform ? hero_xstrdup(o->platform) : NULL;
    waiter_t *w = hero_xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->data = data;
    p->waiters = w;
    p->next = pulls;
    pulls = p;
    if (hero_ref_parse(o->ref, &p->ref, &e) < 0) {
        pull_end(p, &e);
        hero_error_clear(&e);
        return;
    }
    const char *base = hero_store_base_dir(st);
    p->blobs = hero_xasprintf("%s/images/blobs/sha256", base);
    p->layers = hero_xasprintf("%s/images/layers", base);
    if (hero_mkdir_p(p->blobs, 0700, &e) < 0 || hero_mkdir_p(p->layers, 0700, &e) < 0) {
        pull_end(p, &e);
        hero_error_clear(&e);
        return;
    }
    clean_leftovers(p->layers);
    clean_leftovers(p->blobs);
    p->reset = o->reset;
    p->check = o->check;
    p->quiet = o->quiet;
    /* shared with other pulls, so that image_delete (in this process or another) waits
     * until the layer dirs this pull finds or makes are named by its record; taken
     * before the store is asked whether the image is there, which a delete may change */
    hero_imglock_take(loop, st, false, locked, p);
}
