/* Applying an image layer: one pass over the blob that decompresses it, hashes the
 * uncompressed tar stream (the diff_id) and extracts the entries into an overlayfs
 * lower dir. See layer.h for the rules (whiteouts, replacement, hostile names).
 *
 * The pipeline: a libarchive reader in "raw" format with the gzip or zstd filter (or
 * none) turns the blob into the uncompressed tar bytes, on a thread of its own that
 * hashes them and copies them into a small ring of buffers; a second libarchive reader,
 * in tar format, takes them through its read callback on the calling thread, which
 * writes the files. Each byte of the stream is hashed exactly once, by the producer,
 * including the data of entries we do not write (no skip callback is given to the tar
 * reader) and whatever follows the end-of-archive mark (drained before the end).
 * Decompression plus hashing and writing files cost about the same, so the two threads
 * nearly halve the time of a big layer.
 *
 * The blob itself is read with pread, through a read callback of ours: from a complete
 * file, or from one that a download is still writing (a feed tells how much of it is
 * there, and the reader waits for more), so that a layer is extracted as it downloads.
 * When the caller gives the blob's digest, every byte read is hashed for it too.
 *
 * Files are written by hand, never with archive_write_disk: every path is resolved with
 * openat2(RESOLVE_IN_ROOT) against the layer root, and the last component is only ever
 * used with calls that do not follow it (O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat,
 * mknodat, linkat without AT_SYMLINK_FOLLOW, *at(AT_SYMLINK_NOFOLLOW)). */
#include "actions/heropods/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "runtime/bigbuf.h"
#include "runtime/flush.h"
#include "runtime/fs.h"
#include "runtime/sha256.h"

/* Read size for the blob file. The decompressors hand out 64 KiB (gzip) or 128 KiB
 * (zstd) blocks whatever this is; for a plain tar the blocks are this size. */
#define BLOB_READ_BLOCK (1024 * 1024)
/* Reading a blob that a download is still writing: wake up for this much at least
 * (or the rest of the blob), not for every chunk the download writes. */
#define FEED_MIN_READ (256 * 1024)
/* File data is handed to the disk (sync_file_range WRITE, which does not wait) every
 * WRITEBACK_CHUNK bytes of a file, and at its end when WRITEBACK_TAIL or more remain. */
#define WRITEBACK_CHUNK (1024 * 1024)
#define WRITEBACK_TAIL (256 * 1024)
/* A file this big is also handed to a flusher (runtime/flush.h) every FLUSH_CHUNK
 * bytes, and its tail at its end when FLUSH_TAIL or more: the flushes run while the
 * layer is still being written, so hero_layer_sync has little left to wait for. Smaller
 * files are left to that sync (an fdatasync each would cost a journal commit each). */
#define FLUSH_CHUNK (4 * 1024 * 1024)
#define FLUSH_TAIL (1024 * 1024)
#define OPAQUE_XATTR "trusted.overlay.opaque"
#define WH_PREFIX ".wh."
#define WH_META_PREFIX ".wh..wh."
#define WH_OPAQUE ".wh..wh..opq"
/* openat2(RESOLVE_IN_ROOT) answers EAGAIN when a rename or mount anywhere on the system
 * raced with a ".." it walked; retrying is what the man page says to do. */
#define OPENAT2_RETRIES 64

/* ---- a blob that is still being written ---- */

struct hero_layer_feed {
    pthread_mutex_t mu;
    pthread_cond_t grew;
    uint64_t avail;     /* bytes from byte 0 in the file, final */
    uint64_t want;      /* the reader sleeps until avail reaches this */
    bool waiting;
    bool cancelled;     /* the reader gave up (its consumer failed): stop waiting */
    char *failed;       /* the writer gave up: why */
};

hero_layer_feed_t *hero_layer_feed_new(void)
{
    hero_layer_feed_t *f = hero_xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->grew, NULL);
    return f;
}

void hero_layer_feed_grow(hero_layer_feed_t *f, uint64_t avail)
{
    pthread_mutex_lock(&f->mu);
    if (avail > f->avail)
        f->avail = avail;
    /* wake the reader only when it has enough to go on: a download reports every
     * chunk it writes */
    if (f->waiting && f->avail >= f->want)
        pthread_cond_signal(&f->grew);
    pthread_mutex_unlock(&f->mu);
}

void hero_layer_feed_fail(hero_layer_feed_t *f, const char *why)
{
    pthread_mutex_lock(&f->mu);
    if (!f->failed)
        f->failed = hero_xstrdup(why && *why ? why : "the blob download failed");
    pthread_cond_signal(&f->grew);
    pthread_mutex_unlock(&f->mu);
}

void hero_layer_feed_free(hero_layer_feed_t *f)
{
    if (!f)
        return;
    pthread_cond_destroy(&f->grew);
    pthread_mutex_destroy(&f->mu);
    free(f->failed);
    free(f);
}

/* Waits until the file holds `upto` bytes (the reader's side). Returns the bytes
 * available (>= upto), or -1 with *why set (a copy) when the writer failed or the
 * reader was cancelled. */
static int64_t feed_wait(hero_layer_feed_t *f, uint64_t upto, char **why)
{
    pthread_mutex_lock(&f->mu);
    while (f->avail < upto && !f->failed && !f->cancelled) {
        f->want = upto;
        f->waiting = true;
        pthread_cond_wait(&f->grew, &f->mu);
        f->waiting = false;
    }
    int64_t n = (int64_t)f->avail;
    if (f->failed || f->cancelled) {
        *why = hero_xstrdup(f->failed ? f->failed : "cancelled");
        n = -1;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void feed_cancel(hero_layer_feed_t *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->cancelled = true;
    pthread_cond_signal(&f->grew);
    pthread_mutex_unlock(&f->mu);
}

/* ---- the extraction context ---- */

/* The decompressing side runs on a thread of its own (decompressing and hashing take
 * about half the time, writing files the other half): it copies the uncompressed bytes
 * into a ring of slots that the tar reader's read callback takes in order. */
#define FEED_SLOTS 8
#define FEED_SLOT_SIZE (256 * 1024)

typedef struct feeder {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t can_fill, can_take;
    unsigned char *slot[FEED_SLOTS];
    size_t len[FEED_SLOTS];
    unsigned head, tail, filled; /* the producer fills slot[head], the consumer reads tail */
    bool held;                   /* the tar reader holds slot[tail] (libarchive's buffer) */
    bool done;                   /* the producer has finished: end of stream or error */
    atomic_bool abort;           /* the consumer gave up: stop */
    int err_code;
    char *err_msg;               /* the producer's error, or NULL */
} feeder_t;

typedef struct dirtime {
    char *path; /* cleaned, relative to the root; "" is the root */
    struct timespec ts[2];
} dirtime_t;

/* The blob as the decompressor reads it: pread from byte 0, each byte hashed once (when
 * a digest is to be checked), never past its size; with a feed, waiting for a download
 * to write the bytes. */
typedef struct blob_in {
    int fd;
    hero_layer_feed_t *feed;
    uint64_t limit;               /* the blob's size, or UINT64_MAX when unknown */
    uint64_t pos;                 /* bytes read (and hashed) */
    hero_sha256_t *md;            /* NULL: no digest to check */
    unsigned char *buf;           /* BLOB_READ_BLOCK */
    char *why;                    /* why the last read failed (outer_read) */
} blob_in_t;

typedef struct ctx {
    int root;                     /* dest_dir, O_RDONLY|O_DIRECTORY */
    blob_in_t in;
    struct archive *outer;        /* blob -> uncompressed bytes */
    struct archive *inner;        /* uncompressed bytes -> tar entries */
    hero_sha256_t md;             /* of the uncompressed stream: the diff_id */
    hero_sha256_t blob_md;        /* of the blob, when in.md points here */
    feeder_t feed;
    hero_layer_result_t *res;
    hero_error_t *err;
    bool tail_given;              /* inner_read gave tar_tail after the stream's end */
    const char *entry;            /* the current entry's name as in the tar, for messages */
    char *last;                   /* a copy of the last entry's name ("after 'X'") */
    /* one-entry cache of the last parent directory: tars list siblings together */
    char *pc_path;
    int pc_fd;                    /* O_PATH, or -1 */
    bool pc_stale;                /* something was removed: resolve again next time */
    dirtime_t *dt;                /* directory times, applied at the end */
    size_t ndt, capdt;
    hero_flush_t *flush;          /* made for the first big file, or NULL */
} ctx_t;

static int entry_error(ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "layer entry 'NAME': <what>[: strerror]" */
static int entry_error(ctx_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = hero_xvasprintf(fmt, ap);
    va_end(ap);
    hero_error_set(c->err, code, "layer entry '%s': %s", c->entry ? c->entry : "?", what);
    free(what);
    return -1;
}

/* ---- paths ---- */

/* Cleans a tar name into a path relative to the root: leading "/" stripped, "." and
 * empty components dropped, "x/.." folded. Returns NULL when a ".." climbs above the
 * root. "" means the root itself. */
static char *clean_path(const char *in)
{
    size_t n = strlen(in);
    char *o = hero_xmalloc(n + 1);
    size_t len = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t cl = (size_t)(p - s);
        if (cl == 1 && s[0] == '.')
            continue;
        if (cl == 2 && s[0] == '.' && s[1] == '.') {
            if (len == 0) {
                free(o);
                return NULL;
            }
            while (len > 0 && o[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the '/' before the dropped component */
            continue;
        }
        if (len)
            o[len++] = '/';
        memcpy(o + len, s, cl);
        len += cl;
    }
    o[len] = 0;
    return o;
}

/* Whether openat2 is used: 1 yes (until the kernel says ENOSYS), 0 the portable
 * resolver below. Process-wide, atomic. */
static atomic_int use_openat2 = 1;

void hero_layer_use_openat2(int on)
{
    atomic_store(&use_openat2, on ? 1 : 0);
}

/* The portable resolver, for kernels without openat2 (before 5.6) and for valgrind
 * (3.19 does not know the syscall): RESOLVE_IN_ROOT done by hand, one component at a
 * time with openat(O_PATH|O_NOFOLLOW). Symlinks are read and their targets resolved
 * again from the root (absolute) or from the directory they are in (relative); ".." is
 * applied to the chain of directories already resolved, and never climbs above the
 * root; ".." is never handed to the kernel. Only opens directories (all this file
 * needs): the result must be one, or ENOTDIR. Mount points are not checked (a fresh
 * layer dir has none). */
#define MAX_SYMLINKS 40

static int walk_from_root(int root, char **comps, size_t n)
{
    int cur = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; cur >= 0 && i < n; i++) {
        int fd = openat(cur, comps[i], O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        close(cur);
        cur = fd;
    }
    return cur;
}

static int portable_open(int root, const char *path, int flags)
{
    char *todo = hero_xstrdup(path);
    size_t pos = 0, n = 0, cap = 16;
    char **comps = hero_xmalloc(cap * sizeof *comps);
    int cur = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int links = 0, err = 0;
    while (cur >= 0) {
        while (todo[pos] == '/')
            pos++;
        if (!todo[pos])
            break;
        size_t s = pos;
        while (todo[pos] && todo[pos] != '/')
            pos++;
        size_t len = pos - s;
        if (len == 1 && todo[s] == '.')
            continue;
        if (len == 2 && todo[s] == '.' && todo[s + 1] == '.') {
            if (n > 0) {
                free(comps[--n]);
                close(cur);
                cur = walk_from_root(root, comps, n);
                if (cur < 0)
                    err = errno;
            }
            continue;
        }
        size_t rest = pos;
        while (todo[rest] == '/')
            rest++;
        bool last = !todo[rest];
        char *name = hero_xstrndup(todo + s, len);
        int fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            err = errno;
            if (fd >= 0)
                close(fd);
            free(name);
            break;
        }
        if (S_ISLNK(st.st_mode) && (!last || !(flags & O_NOFOLLOW))) {
            char target[PATH_MAX];
            ssize_t tl = readlinkat(fd, "", target, sizeof target - 1);
            close(fd);
            free(name);
            if (++links > MAX_SYMLINKS || tl < 0) {
                err = tl < 0 ? errno : ELOOP;
                break;
            }
            target[tl] = 0;
            if (target[0] == '/') {
                while (n)
                    free(comps[--n]);
                close(cur);
                cur = walk_from_root(root, comps, 0);
                if (cur < 0)
                    err = errno;
            }
            char *next = hero_xasprintf("%s/%s", target, todo + pos);
            free(todo);
            todo = next;
            pos = 0;
            continue;
        }
        if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
            err = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
            close(fd);
            free(name);
            break;
        }
        close(cur);
        cur = fd;
        if (n == cap) {
            cap *= 2;
            comps = hero_xrealloc(comps, cap * sizeof *comps);
        }
        comps[n++] = name;
    }
    while (n)
        free(comps[--n]);
    free(comps);
    free(todo);
    if (cur >= 0 && err) {
        close(cur);
        cur = -1;
    }
    if (cur < 0) {
        errno = err ? err : errno;
        return -1;
    }
    if ((flags & O_ACCMODE) == O_RDONLY && !(flags & O_PATH)) {
        int fd = openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        err = errno;
        close(cur);
        errno = err;
        return fd;
    }
    return cur;
}

/* Opens the directory `path` (relative; "" is the root) inside the root, symlinks
 * resolved as if the root were "/". The last component is followed unless flags has
 * O_NOFOLLOW. */
static int in_root_open(int root, const char *path, int flags)
{
    if (!atomic_load(&use_openat2))
        return portable_open(root, path, flags);
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    if (!*path)
        path = ".";
    for (int i = 0;; i++) {
        long r = syscall(SYS_openat2, root, path, &how, sizeof how);
        if (r >= 0)
            return (int)r;
        if ((errno == EAGAIN && i < OPENAT2_RETRIES) || errno == EINTR)
            continue;
        if (errno == ENOSYS) { /* an old kernel, or valgrind */
            atomic_store(&use_openat2, 0);
            return portable_open(root, path, flags);
        }
        return -1;
    }
}

/* Opens the directory `path` (relative to the root; "" is the root) as an O_PATH fd,
 * making missing components one at a time (root:root 0755). Every step
 * is resolved in-root, and each new directory is made with mkdirat() in a parent that
 * was itself resolved in-root, so nothing lands outside. */
static int resolve_dir(ctx_t *c, const char *path)
{
    int fd = in_root_open(c->root, path, O_PATH | O_DIRECTORY);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT)
        return entry_error(c, errno, "cannot resolve directory '%s'", path);

    char *buf = hero_xstrdup(path);
    int cur = in_root_open(c->root, "", O_PATH | O_DIRECTORY);
    if (cur < 0) {
        free(buf);
        return entry_error(c, errno, "cannot open the layer root");
    }
    char *comp = buf;
    for (;;) {
        char *slash = strchr(comp, '/');
        if (slash)
            *slash = 0;
        fd = in_root_open(c->root, buf, O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT) {
            if (mkdirat(cur, comp, 0700) == 0) {
                /* explicit owner and mode: the umask and a setgid parent do not count */
                int d = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (d < 0 || fchown(d, 0, 0) < 0 || fchmod(d, 0755) < 0) {
                    int e = errno;
                    if (d >= 0)
                        close(d);
                    close(cur);
                    entry_error(c, e, "cannot set up directory '%s'", buf);
                    free(buf);
                    return -1;
                }
                close(d);
            } else if (errno != EEXIST) {
                int e = errno;
                close(cur);
                entry_error(c, e, "cannot create directory '%s'", buf);
                free(buf);
                return -1;
            }
            fd = in_root_open(c->root, buf, O_PATH | O_DIRECTORY);
        }
        if (fd < 0) {
            int e = errno;
            struct stat st;
            if (e == ENOENT && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISLNK(st.st_mode))
                entry_error(c, 0, "'%s' is a symlink that leads nowhere inside the image root",
                            buf);
            else
                entry_error(c, e, "cannot resolve directory '%s'", buf);
            close(cur);
            free(buf);
            return -1;
        }
        close(cur);
        cur = fd;
        if (!slash)
            break;
        *slash = '/';
        comp = slash + 1;
    }
    free(buf);
    return cur;
}

static void cache_drop(ctx_t *c)
{
    if (c->pc_fd >= 0)
        close(c->pc_fd);
    c->pc_fd = -1;
    c->pc_stale = false;
    free(c->pc_path);
    c->pc_path = NULL;
}

/* The parent directory of an entry, made if missing. The fd belongs to the cache. */
static int parent_dir(ctx_t *c, const char *parent)
{
    if (c->pc_fd >= 0 && !c->pc_stale && !strcmp(c->pc_path, parent))
        return c->pc_fd;
    cache_drop(c);
    int fd = resolve_dir(c, parent);
    if (fd < 0)
        return -1;
    c->pc_fd = fd;
    c->pc_path = hero_xstrdup(parent);
    return fd;
}

/* ---- removing what an entry replaces (never following a symlink) ---- */

/* Removes whatever `name` in pfd is (a directory with its content). Marks the parent
 * cache stale: what a cached path resolves to may change when something on it goes
 * (its fd stays open: pfd may be that fd, and the caller goes on using it). */
static int remove_entry(ctx_t *c, int pfd, const char *name)
{
    c->pc_stale = true;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_fs_rmtree_at(pfd, name, &e) < 0) {
        entry_error(c, 0, "cannot replace what is there: %s", e.msg);
        if (c->err)
            c->err->code = e.code;
        hero_error_clear(&e);
        return -1;
    }
    return 0;
}

/* ---- metadata ---- */

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
    if (archive_entry_mtime_is_set(e)) {
        ts[1].tv_sec = archive_entry_mtime(e);
        ts[1].tv_nsec = archive_entry_mtime_nsec(e);
    } else {
        ts[1].tv_sec = 0;
        ts[1].tv_nsec = UTIME_OMIT;
    }
    if (archive_entry_atime_is_set(e)) {
        ts[0].tv_sec = archive_entry_atime(e);
        ts[0].tv_nsec = archive_entry_atime_nsec(e);
    } else {
        ts[0] = ts[1];
    }
}

static bool overlay_xattr(const char *name)
{
    return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13);
}

/* Sets the entry's xattrs on fd (a regular file or a directory). */
static int apply_xattrs(ctx_t *c, int fd, struct archive_entry *e)
{
    int count = archive_entry_xattr_reset(e);
    if (count <= 0)
        return 0;
    /* libarchive's own pax writer stores each xattr twice (LIBARCHIVE.xattr.* and
     * SCHILY.xattr.*) and its reader reports both: set each name once */
    const char *stack_seen[16];
    const char **seen = count <= 16 ? stack_seen : hero_xmalloc((size_t)count * sizeof *seen);
    int nseen = 0, rc = 0;
    const char *name;
    const void *val;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &val, &size) == ARCHIVE_OK) {
        if (!name || !*name)
            continue;
        bool dup = false;
        for (int i = 0; i < nseen && !dup; i++)
            dup = !strcmp(seen[i], name);
        if (dup)
            continue;
        if (nseen < count)
            seen[nseen++] = name;
        if (overlay_xattr(name)) {
            /* a layer must not fake whiteouts, opaque dirs or redirects */
            c->res->xattrs_ignored++;
            continue;
        }
        if (fsetxattr(fd, name, val, size, 0) == 0)
            continue;
        switch (errno) {
        case EPERM:
        case EACCES:
        case EINVAL:
        case ENOTSUP:
        case ERANGE:
        case E2BIG:
            c->res->xattrs_failed++;
            continue;
        default:
            rc = entry_error(c, errno, "cannot set xattr '%s'", name);
            break;
        }
        if (rc < 0)
            break;
    }
    if (seen != stack_seen)
        free(seen);
    return rc;
}

/* Owner, mode, xattrs, times, in that order: chown clears setuid bits and file
 * capabilities, so it comes first. */
static int apply_meta_fd(ctx_t *c, int fd, struct archive_entry *e, bool times)
{
    if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
        return entry_error(c, errno, "cannot set the owner");
    if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
        return entry_error(c, errno, "cannot set the mode");
    if (apply_xattrs(c, fd, e) < 0)
        return -1;
    if (times) {
        struct timespec ts[2];
        entry_times(e, ts);
        if (futimens(fd, ts) < 0)
            return entry_error(c, errno, "cannot set the times");
    }
    return 0;
}

static void dirtime_add(ctx_t *c, const char *path, struct archive_entry *e)
{
    if (c->ndt == c->capdt) {
        c->capdt = c->capdt ? c->capdt * 2 : 64;
        c->dt = hero_xrealloc(c->dt, c->capdt * sizeof *c->dt);
    }
    c->dt[c->ndt].path = hero_xstrdup(path);
    entry_times(e, c->dt[c->ndt].ts);
    c->ndt++;
}

/* Directory times last, once their content is written. A directory that has gone
 * since (replaced by a later entry) is skipped. */
static void dirtimes_apply(ctx_t *c)
{
    for (size_t i = 0; i < c->ndt; i++) {
        int fd = in_root_open(c->root, c->dt[i].path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0)
            continue;
        (void)futimens(fd, c->dt[i].ts);
        close(fd);
    }
}

static int set_opaque(ctx_t *c, int dfd)
{
    if (fsetxattr(dfd, OPAQUE_XATTR, "y", 1, 0) < 0)
        return entry_error(c, errno, "cannot set %s (it needs CAP_SYS_ADMIN and a file system "
                                     "with trusted xattrs)", OPAQUE_XATTR);
    return 0;
}

/* ---- one entry of each kind; pfd is the parent (in-root), base the last component ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Whether a block of file data the tar reader handed out (len bytes) reaches into the
 * zeros given after the real stream (tar_tail, for layers without their end blocks):
 * then the stream was cut off inside the file's data, and those zeros are no content.
 * The reader has consumed the stream up to the block's start. Only asked once the tail
 * was given: the feeder has finished then, so its count of real bytes is final. */
static bool block_in_tail(ctx_t *c, size_t len)
{
    int64_t at = archive_filter_bytes(c->inner, -1);
    return at >= 0 && at + (int64_t)len > (int64_t)c->res->size;
}

static int do_file(ctx_t *c, int pfd, const char *base, struct archive_entry *e)
{
    int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (remove_entry(c, pfd, base) < 0)
            return -1;
        fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return entry_error(c, errno, "cannot create the file");

    int64_t pos = 0, kicked = 0, flushed = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(c->inner, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            entry_error(c, 0, "reading its data: %s", archive_error_string(c->inner));
            close(fd);
            return -1;
        }
        if (off != pos) { /* a hole of a sparse file */
            if (lseek(fd, off, SEEK_SET) < 0) {
                int e = errno;
                close(fd);
                return entry_error(c, e, "seek");
            }
            pos = off;
        }
        if (len && c->tail_given && block_in_tail(c, len)) {
            close(fd);
            return entry_error(c, 0, "truncated: the tar stream ends inside this file's data");
        }
        if (len && write_all(fd, buf, len) < 0) {
            int e = errno;
            close(fd);
            return entry_error(c, e, "cannot write the file");
        }
        pos += (int64_t)len;
        c->res->bytes_written += len;
        if (pos - kicked >= WRITEBACK_CHUNK) {
            /* start writing it to disk now, while the layer goes on: the sync before
             * the layer dir is renamed into place then finds little left to do */
            sync_file_range(fd, kicked, pos - kicked, SYNC_FILE_RANGE_WRITE);
            kicked = pos;
        }
        if (pos - flushed >= FLUSH_CHUNK) {
            if (!c->flush)
                c->flush = hero_flush_new();
            hero_flush_push(c->flush, fd, c->entry);
            flushed = pos;
        }
    }
    if (pos - kicked >= WRITEBACK_TAIL)
        sync_file_range(fd, kicked, pos - kicked, SYNC_FILE_RANGE_WRITE);
    if (flushed && pos - flushed >= FLUSH_TAIL)
        hero_flush_push(c->flush, fd, c->entry);
    int64_t size = archive_entry_size(e);
    if (archive_entry_size_is_set(e) && size > pos && ftruncate(fd, size) < 0) {
        int e2 = errno;
        close(fd);
        return entry_error(c, e2, "cannot set the file size");
    }
    int rc = apply_meta_fd(c, fd, e, true);
    close(fd);
    return rc;
}

static int do_dir(ctx_t *c, int pfd, const char *base, const char *rel, struct archive_entry *e)
{
    bool opaque = false;
    if (mkdirat(pfd, base, 0700) < 0) {
        if (errno != EEXIST)
            return entry_error(c, errno, "cannot create the directory");
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return entry_error(c, errno, "stat");
        if (!S_ISDIR(st.st_mode)) {
            /* a directory on a whiteout of this layer: the lower one stays hidden */
            opaque = S_ISCHR(st.st_mode) && st.st_rdev == 0;
            if (remove_entry(c, pfd, base) < 0)
                return -1;
            if (mkdirat(pfd, base, 0700) < 0)
                return entry_error(c, errno, "cannot create the directory");
        }
    }
    int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return entry_error(c, errno, "cannot open the directory");
    int rc = apply_meta_fd(c, fd, e, false);
    if (rc == 0 && opaque)
        rc = set_opaque(c, fd);
    close(fd);
    if (rc == 0)
        dirtime_add(c, rel, e);
    return rc;
}

static int do_symlink(ctx_t *c, int pfd, const char *base, struct archive_entry *e)
{
    const char *target = archive_entry_symlink(e);
    if (!target)
        target = archive_entry_symlink_utf8(e);
    if (!target || !*target)
        return entry_error(c, 0, "symlink without a target");
    if (symlinkat(target, pfd, base) < 0) {
        if (errno != EEXIST)
            return entry_error(c, errno, "cannot create the symlink");
        if (remove_entry(c, pfd, base) < 0)
            return -1;
        if (symlinkat(target, pfd, base) < 0)
            return entry_error(c, errno, "cannot create the symlink");
    }
    if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW) < 0)
        return entry_error(c, errno, "cannot set the owner");
    struct timespec ts[2];
    entry_times(e, ts);
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return entry_error(c, errno, "cannot set the times");
    if (archive_entry_xattr_count(e) > 0)
        c->res->xattrs_ignored += (uint64_t)archive_entry_xattr_count(e);
    return 0;
}

static int do_node(ctx_t *c, int pfd, const char *base, struct archive_entry *e, mode_t type)
{
    dev_t dev = type == S_IFIFO ? 0
                                : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (mknodat(pfd, base, type | 0600, dev) < 0) {
        if (errno != EEXIST)
            return entry_error(c, errno, "cannot create the device node or fifo");
        if (remove_entry(c, pfd, base) < 0)
            return -1;
        if (mknodat(pfd, base, type | 0600, dev) < 0)
            return entry_error(c, errno, "cannot create the device node or fifo");
    }
    if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW) < 0)
        return entry_error(c, errno, "cannot set the owner");
    /* fchmodat follows a symlink, but `base` is the node mknodat just made */
    if (fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0) < 0)
        return entry_error(c, errno, "cannot set the mode");
    struct timespec ts[2];
    entry_times(e, ts);
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return entry_error(c, errno, "cannot set the times");
    if (archive_entry_xattr_count(e) > 0)
        c->res->xattrs_ignored += (uint64_t)archive_entry_xattr_count(e);
    return 0;
}

static int do_hardlink(ctx_t *c, int pfd, const char *base, const char *rel, const char *link)
{
    char *t = clean_path(link);
    if (!t)
        return entry_error(c, 0, "hardlink target '%s' escapes the image root", link);
    if (link[0] == '/' && *t) {
        free(t);
        return entry_error(c, 0, "hardlink target '%s' is absolute", link);
    }
    if (!*t) {
        free(t);
        return entry_error(c, 0, "hardlink to the image root");
    }
    if (!strcmp(t, rel)) { /* a link to itself: nothing to do */
        free(t);
        return 0;
    }
    char *slash = strrchr(t, '/');
    const char *tbase = slash ? slash + 1 : t;
    if (slash)
        *slash = 0;
    int tfd = in_root_open(c->root, slash ? t : "", O_PATH | O_DIRECTORY);
    if (tfd < 0) {
        entry_error(c, errno, "hardlink target '%s'", link);
        free(t);
        return -1;
    }
    int rc = 0;
    struct stat ts, ls;
    if (fstatat(tfd, tbase, &ts, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = entry_error(c, errno, "hardlink target '%s'", link);
    } else if (S_ISDIR(ts.st_mode)) {
        rc = entry_error(c, 0, "hardlink target '%s' is a directory", link);
    } else if (linkat(tfd, tbase, pfd, base, 0) < 0) {
        if (errno != EEXIST) {
            rc = entry_error(c, errno, "cannot link to '%s'", link);
        } else if (fstatat(pfd, base, &ls, AT_SYMLINK_NOFOLLOW) == 0 &&
                   ls.st_dev == ts.st_dev && ls.st_ino == ts.st_ino) {
            rc = 0; /* already that file */
        } else if (remove_entry(c, pfd, base) < 0) {
            rc = -1;
        } else if (linkat(tfd, tbase, pfd, base, 0) < 0) {
            rc = entry_error(c, errno, "cannot link to '%s'", link);
        }
    }
    close(tfd);
    free(t);
    return rc;
}

/* `.wh.NAME` in pfd: NAME becomes a whiteout unless this layer has it already. */
static int do_whiteout(ctx_t *c, int pfd, const char *name)
{
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        return entry_error(c, 0, "invalid whiteout");
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(st.st_mode))
            return 0; /* this layer's own NAME already hides the lower ones */
        /* this layer's own directory stays; the lower ones' content goes */
        int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return entry_error(c, errno, "cannot open '%s'", name);
        int rc = set_opaque(c, fd);
        close(fd);
        return rc;
    }
    if (errno != ENOENT)
        return entry_error(c, errno, "stat '%s'", name);
    if (mknodat(pfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
        return entry_error(c, errno, "cannot create the whiteout device");
    return 0;
}

static int do_opaque(ctx_t *c, int pfd)
{
    int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return entry_error(c, errno, "cannot open the directory");
    int rc = set_opaque(c, fd);
    close(fd);
    return rc;
}

static int do_entry(ctx_t *c, struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    if (!name)
        name = archive_entry_pathname_utf8(e);
    if (!name)
        return entry_error(c, 0, "an entry without a name");
    c->entry = name;
    char *rel = clean_path(name);
    if (!rel)
        return entry_error(c, 0, "path escapes the image root");
    /* an absolute name is how a hostile tar aims outside: refused (the root itself,
     * "/", which umoci writes, is fine) */
    if (name[0] == '/' && *rel) {
        free(rel);
        return entry_error(c, 0, "absolute name: a layer's names are relative to its root");
    }

    int rc = 0;
    const char *link = archive_entry_hardlink(e);
    if (!link)
        link = archive_entry_hardlink_utf8(e);
    mode_t type = archive_entry_filetype(e);
    char *slash = strrchr(rel, '/');
    const char *base = slash ? slash + 1 : rel;
    const char *parent = slash ? rel : "";

    if (!*rel) { /* "./": the root itself */
        if (link || type != AE_IFDIR) {
            rc = entry_error(c, 0, "names the image root but is not a directory");
        } else if ((rc = apply_meta_fd(c, c->root, e, false)) == 0) {
            dirtime_add(c, "", e);
        }
        free(rel);
        return rc;
    }

    if (slash)
        *slash = 0; /* rel is now the parent */
    bool wh = !strncmp(base, WH_PREFIX, strlen(WH_PREFIX));
    if (wh && strncmp(base, WH_META_PREFIX, strlen(WH_META_PREFIX)) == 0 &&
        strcmp(base, WH_OPAQUE) != 0) {
        c->res->skipped++; /* aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs, ...) */
        free(rel);
        return 0;
    }
    if (!wh && type == AE_IFSOCK && !link) {
        c->res->skipped++;
        free(rel);
        return 0;
    }
    int pfd = parent_dir(c, parent);
    if (pfd < 0) {
        free(rel);
        return -1;
    }
    if (wh && !strcmp(base, WH_OPAQUE)) {
        rc = do_opaque(c, pfd);
        c->res->opaques++;
    } else if (wh) {
        rc = do_whiteout(c, pfd, base + strlen(WH_PREFIX));
        c->res->whiteouts++;
    } else {
        /* the full cleaned path again, for hardlink-to-self and directory times */
        if (slash)
            *slash = '/';
        if (link)
            rc = do_hardlink(c, pfd, base, rel, link);
        else if (type == AE_IFREG)
            rc = do_file(c, pfd, base, e);
        else if (type == AE_IFDIR)
            rc = do_dir(c, pfd, base, rel, e);
        else if (type == AE_IFLNK)
            rc = do_symlink(c, pfd, base, e);
        else if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO)
            rc = do_node(c, pfd, base, e, type);
        else
            rc = entry_error(c, 0, "unsupported entry type 0%o", (unsigned)type);
    }
    free(rel);
    return rc;
}

/* ---- the two readers ---- */

/* ---- the producer: blob -> decompress -> hash -> slots ---- */

static void feed_publish(feeder_t *f, size_t len)
{
    pthread_mutex_lock(&f->mu);
    f->len[f->head] = len;
    f->head = (f->head + 1) % FEED_SLOTS;
    f->filled++;
    pthread_cond_signal(&f->can_take);
    pthread_mutex_unlock(&f->mu);
}

static void *feed_main(void *arg)
{
    ctx_t *c = arg;
    feeder_t *f = &c->feed;
    unsigned char *cur = NULL;
    size_t curlen = 0;
    int code = 0;
    char *msg = NULL;
    while (!atomic_load(&f->abort)) {
        const void *b;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(c->outer, &b, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            const char *es = archive_error_string(c->outer);
            code = archive_errno(c->outer) > 0 ? archive_errno(c->outer) : EIO;
            if (c->in.why) /* reading the blob failed: that says more than "truncated" */
                es = c->in.why;
            msg = es ? hero_xstrdup(es)
                     : hero_xasprintf("cannot decompress the layer: truncated or corrupt %s",
                                      c->res->compression);
            break;
        }
        hero_sha256_update(&c->md, b, len);
        c->res->size += len;
        const unsigned char *p = b;
        while (len) {
            if (!cur) {
                pthread_mutex_lock(&f->mu);
                while (f->filled == FEED_SLOTS && !atomic_load(&f->abort))
                    pthread_cond_wait(&f->can_fill, &f->mu);
                bool stop = atomic_load(&f->abort);
                cur = f->slot[f->head];
                pthread_mutex_unlock(&f->mu);
                if (stop)
                    goto out;
                curlen = 0;
            }
            size_t n = len < FEED_SLOT_SIZE - curlen ? len : FEED_SLOT_SIZE - curlen;
            memcpy(cur + curlen, p, n);
            curlen += n;
            p += n;
            len -= n;
            if (curlen == FEED_SLOT_SIZE) {
                feed_publish(f, curlen);
                cur = NULL;
            }
        }
    }
    if (cur && curlen)
        feed_publish(f, curlen);
out:
    pthread_mutex_lock(&f->mu);
    f->done = true;
    f->err_code = code;
    f->err_msg = msg;
    pthread_cond_signal(&f->can_take);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int feed_start(ctx_t *c)
{
    feeder_t *f = &c->feed;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->can_fill, NULL);
    pthread_cond_init(&f->can_take, NULL);
    /* one region, a huge page (bigbuf.h): 512 page faults fewer per layer */
    unsigned char *ring = hero_bigbuf_new(FEED_SLOTS * FEED_SLOT_SIZE);
    for (int i = 0; i < FEED_SLOTS; i++)
        f->slot[i] = ring + (size_t)i * FEED_SLOT_SIZE;
    /* the thread takes no signal: they are the caller's business */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&f->thread, NULL, feed_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
        return hero_error_set(c->err, e, "cannot start the layer decompression thread");
    f->started = true;
    return 0;
}

/* Stops the producer (if the consumer quit early) and waits for it. */
static void feed_stop(ctx_t *c)
{
    feeder_t *f = &c->feed;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        bool done = f->done;
        pthread_mutex_unlock(&f->mu);
        if (!done) /* the consumer gave up: the producer may be waiting for a download */
            feed_cancel(c->in.feed);
        pthread_mutex_lock(&f->mu);
        atomic_store(&f->abort, true);
        pthread_cond_signal(&f->can_fill);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
        f->started = false;
    }
}

static void feed_free(ctx_t *c)
{
    feeder_t *f = &c->feed;
    if (!f->slot[0])
        return;
    hero_bigbuf_free(f->slot[0], FEED_SLOTS * FEED_SLOT_SIZE);
    free(f->err_msg);
    pthread_cond_destroy(&f->can_fill);
    pthread_cond_destroy(&f->can_take);
    pthread_mutex_destroy(&f->mu);
}

/* ---- the consumer: the tar reader's read callback ---- */

/* The next block of uncompressed bytes (hashed by the producer). Gives back the block
 * handed out last time: libarchive only needs it until it calls again. 0 at the end,
 * -1 on error (set on the tar reader, so its caller sees the message). */
static la_ssize_t pull(ctx_t *c, const void **buf)
{
    feeder_t *f = &c->feed;
    pthread_mutex_lock(&f->mu);
    if (f->held) {
        f->held = false;
        f->tail = (f->tail + 1) % FEED_SLOTS;
        f->filled--;
        pthread_cond_signal(&f->can_fill);
    }
    while (f->filled == 0 && !f->done)
        pthread_cond_wait(&f->can_take, &f->mu);
    la_ssize_t n = 0;
    if (f->filled > 0) {
        f->held = true;
        *buf = f->slot[f->tail];
        n = (la_ssize_t)f->len[f->tail];
    } else if (f->err_msg) {
        archive_set_error(c->inner, f->err_code, "%s", f->err_msg);
        n = -1;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Zeros the tar reader gets once after the real stream: the last entry's padding and
 * the two end-of-archive blocks. Some writers leave them out (Debian's umoci 0.4.7
 * does for every `umoci insert` layer), and podman and Go's archive/tar read such a
 * layer; libarchive would fail it as truncated. The diff_id is taken from the real
 * bytes only (the feeder hashes them), so a complete tar is unaffected: libarchive
 * stops at its end blocks and never asks for these. */
static const char tar_tail[511 + 1024];

static la_ssize_t inner_read(struct archive *a, void *data, const void **buf)
{
    (void)a;
    ctx_t *c = data;
    la_ssize_t n = pull(c, buf);
    if (n == 0 && !c->tail_given) {
        c->tail_given = true;
        *buf = tar_tail;
        return (la_ssize_t)sizeof(tar_tail);
    }
    return n;
}

/* ---- the blob: read, hashed, checked ---- */

/* Up to BLOB_READ_BLOCK bytes of the blob at in->pos into in->buf, hashed. 0 at its
 * end; -1 with *why set (malloc'd). */
static ssize_t blob_read(blob_in_t *in, char **why)
{
    if (in->pos >= in->limit)
        return 0;
    uint64_t n = in->limit - in->pos;
    if (n > BLOB_READ_BLOCK)
        n = BLOB_READ_BLOCK;
    if (in->feed) {
        /* a download is writing it: wait for a good share of a block, not one chunk */
        uint64_t want = n < FEED_MIN_READ ? n : FEED_MIN_READ;
        int64_t avail = feed_wait(in->feed, in->pos + want, why);
        if (avail < 0)
            return -1;
        if ((uint64_t)avail - in->pos < n)
            n = (uint64_t)avail - in->pos;
    }
    ssize_t got;
    do
        got = pread(in->fd, in->buf, n, (off_t)in->pos);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        *why = hero_xasprintf("cannot read the layer blob: %s", strerror(errno));
        return -1;
    }
    if (got == 0 && in->feed) {
        *why = hero_xstrdup("the layer blob is shorter than its download wrote");
        return -1;
    }
    if (got > 0 && in->md)
        hero_sha256_update(in->md, in->buf, (size_t)got);
    in->pos += (uint64_t)got;
    return got;
}

/* libarchive's read callback of the outer (decompressing) reader */
static la_ssize_t outer_read(struct archive *a, void *data, const void **buf)
{
    ctx_t *c = data;
    char *why = NULL;
    ssize_t n = blob_read(&c->in, &why);
    if (n < 0) {
        archive_set_error(a, EIO, "%s", why);
        free(c->in.why);
        c->in.why = why;
        return -1;
    }
    *buf = c->in.buf;
    return n;
}

/* The first bytes of the blob, for telling its compression (without hashing them:
 * the stream reads them again). */
static ssize_t blob_magic(ctx_t *c, unsigned char *m, size_t len)
{
    if (c->in.feed) {
        uint64_t want = c->in.limit < len ? c->in.limit : len;
        char *why = NULL;
        if (feed_wait(c->in.feed, want, &why) < 0) {
            hero_error_set(c->err, 0, "%s", why);
            free(why);
            return -1;
        }
    }
    ssize_t n = pread(c->in.fd, m, len, 0);
    if (n < 0)
        return hero_error_set(c->err, errno, "cannot read the layer blob");
    return n;
}

/* After the layer: the rest of the blob (bytes after the compressed stream's end are
 * part of the blob too), then its size and digest. */
static int blob_check(ctx_t *c, const char *digest, int64_t size)
{
    blob_in_t *in = &c->in;
    if (!in->md && size < 0)
        return 0; /* nothing to check */
    char *why = NULL;
    ssize_t n;
    while ((n = blob_read(in, &why)) > 0)
        ;
    if (n < 0) {
        hero_error_set(c->err, 0, "%s", why);
        free(why);
        return -1;
    }
    if (size >= 0 && !in->feed) {
        /* a complete file must not be longer than the manifest says */
        char extra;
        ssize_t e = pread(in->fd, &extra, 1, (off_t)in->pos);
        if (e > 0) {
            struct stat st;
            c->res->blob_mismatch = true;
            return hero_error_set(c->err, 0, "layer blob size mismatch: manifest says %" PRId64
                                  " bytes, blob has %lld", size,
                                  fstat(in->fd, &st) == 0 ? (long long)st.st_size : -1LL);
        }
    }
    if (size >= 0 && in->pos != (uint64_t)size) {
        c->res->blob_mismatch = true;
        return hero_error_set(c->err, 0, "layer blob size mismatch: manifest says %" PRId64
                              " bytes, blob has %" PRIu64, size, in->pos);
    }
    if (!in->md)
        return 0;
    char got[HERO_LAYER_DIGEST_LEN];
    hero_sha256_final_hex(in->md, got);
    if (strcasecmp(got, digest) != 0) {
        c->res->blob_mismatch = true;
        return hero_error_set(c->err, 0, "layer blob digest mismatch: manifest says %s, blob is %s",
                              digest, got);
    }
    return 0;
}

static const char *detect(const unsigned char *m, ssize_t n, int *filter)
{
    *filter = ARCHIVE_FILTER_NONE;
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
        *filter = ARCHIVE_FILTER_GZIP;
        return "gzip";
    }
    if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) {
        *filter = ARCHIVE_FILTER_ZSTD;
        return "zstd";
    }
    if (n >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h')
        return "bzip2";
    if (n >= 6 && !memcmp(m, "\xfd" "7zXZ\0", 6))
        return "xz";
    return "none";
}

/* ---- the size of a layer dir ---- */

typedef struct size_walk {
    uint64_t bytes;
    struct { dev_t dev; ino_t ino; } *seen; /* files with more than one link */
    size_t nseen, capseen;
} size_walk_t;

static bool size_seen(size_walk_t *w, const struct stat *st)
{
    for (size_t i = 0; i < w->nseen; i++)
        if (w->seen[i].dev == st->st_dev && w->seen[i].ino == st->st_ino)
            return true;
    if (w->nseen == w->capseen) {
        w->capseen = w->capseen ? 2 * w->capseen : 16;
        w->seen = hero_xrealloc(w->seen, w->capseen * sizeof(*w->seen));
    }
    w->seen[w->nseen].dev = st->st_dev;
    w->seen[w->nseen].ino = st->st_ino;
    w->nseen++;
    return false;
}

static void size_dir(size_walk_t *w, int dfd, unsigned depth)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            if (st.st_nlink < 2 || !size_seen(w, &st))
                w->bytes += (uint64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode) && depth < 4096) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                size_dir(w, sub, depth + 1);
        }
    }
    closedir(d);
}

uint64_t hero_layer_dir_size(const char *dir)
{
    size_walk_t w = {0};
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        size_dir(&w, fd, 0);
    free(w.seen);
    return w.bytes;
}

static int run(ctx_t *c)
{
    unsigned char magic[8];
    ssize_t n = blob_magic(c, magic, sizeof magic);
    if (n < 0)
        return -1;
    if (n == 0)
        return hero_error_set(c->err, 0, "the layer blob is empty");
    int filter;
    c->res->compression = detect(magic, n, &filter);
    if (!strcmp(c->res->compression, "bzip2") || !strcmp(c->res->compression, "xz"))
        return hero_error_set(c->err, 0, "unsupported layer compression %s (OCI layers are "
                                         "tar, tar+gzip or tar+zstd)", c->res->compression);

    c->outer = archive_read_new();
    c->inner = archive_read_new();
    if (!c->outer || !c->inner)
        return hero_error_set(c->err, ENOMEM, "libarchive");
    /* The decompressor the magic names, alone. (archive_read_append_filter, which
     * forces one, would link every filter libarchive has into hero, with liblzma,
     * libbz2 and liblz4; the check below stands for its forcing.) */
    int frc = filter == ARCHIVE_FILTER_GZIP   ? archive_read_support_filter_gzip(c->outer)
              : filter == ARCHIVE_FILTER_ZSTD ? archive_read_support_filter_zstd(c->outer)
                                              : ARCHIVE_OK;
    if (frc != ARCHIVE_OK)
        return hero_error_set(c->err, 0, "libarchive cannot read %s: %s", c->res->compression,
                              archive_error_string(c->outer));
    archive_read_support_format_raw(c->outer);
    struct archive_entry *oe;
    if (archive_read_open(c->outer, c, NULL, outer_read, NULL) != ARCHIVE_OK ||
        archive_read_next_header(c->outer, &oe) != ARCHIVE_OK)
        return hero_error_set(c->err, 0, "reading the layer (%s): %s", c->res->compression,
                              c->in.why ? c->in.why : archive_error_string(c->outer));
    /* Exactly that decompressor: a stream whose magic says gzip or zstd but whose
     * header it does not take would otherwise be read as it is; and libarchive bids
     * again on what it decompressed, so a .tar.gz.gz would be decompressed twice (and
     * a tar whose first name starts with the bytes of a gzip or zstd magic is refused
     * rather than decompressed: no layer's first name does) */
    int nfilters = archive_filter_count(c->outer);
    if (archive_filter_code(c->outer, 0) != filter)
        return hero_error_set(c->err, 0, "reading the layer (%s): a corrupt %s header",
                              c->res->compression, c->res->compression);
    if (nfilters != (filter == ARCHIVE_FILTER_NONE ? 1 : 2))
        return hero_error_set(c->err, 0, "reading the layer (%s): compressed twice, or its "
                              "tar stream starts like a compressed one", c->res->compression);

    if (feed_start(c) < 0)
        return -1;
    archive_read_support_format_tar(c->inner);
    if (archive_read_open(c->inner, c, NULL, inner_read, NULL) != ARCHIVE_OK)
        return hero_error_set(c->err, 0, "reading the layer's tar stream: %s",
                              archive_error_string(c->inner));
    for (;;) {
        struct archive_entry *e;
        c->entry = NULL; /* its memory belongs to the entry next_header reuses */
        int r = archive_read_next_header(c->inner, &e);
        if (r == ARCHIVE_EOF)
            break;
        /* ARCHIVE_WARN is a name not in the locale's charset: we keep its bytes.
         * ARCHIVE_RETRY is a damaged header, which a layer must not have. */
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return hero_error_set(c->err, 0, "reading the layer's tar stream%s%s%s: %s",
                                  c->last ? " after '" : "", c->last ? c->last : "",
                                  c->last ? "'" : "", archive_error_string(c->inner));
        c->res->entries++;
        if (do_entry(c, e) < 0)
            return -1;
        free(c->last);
        c->last = c->entry ? hero_xstrdup(c->entry) : NULL;
    }
    /* the end-of-archive blocks are read; the rest of the stream is part of the diff_id */
    const void *buf;
    la_ssize_t got;
    while ((got = pull(c, &buf)) > 0)
        ;
    if (got < 0)
        return hero_error_set(c->err, 0, "reading the layer: %s", archive_error_string(c->inner));
    feed_stop(c); /* it is done: this only joins it */
    c->entry = NULL;
    dirtimes_apply(c);
    return 0;
}

int hero_layer_apply_src(const hero_layer_src_t *src, const char *dest_dir,
                         const char *expected_diff_id, hero_layer_result_t *res,
                         hero_error_t *err)
{
    hero_layer_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    res->compression = "none";
    const char *why;
    if (expected_diff_id && (why = hero_sha256_digest_problem(expected_diff_id)))
        return hero_error_set(err, 0, "unsupported diff_id '%s' (%s)", expected_diff_id, why);
    if (src->digest && (why = hero_sha256_digest_problem(src->digest)))
        return hero_error_set(err, 0, "unsupported blob digest '%s' (%s)", src->digest, why);
    if (src->feed && src->size < 0)
        return hero_error_set(err, EINVAL, "a blob read while it downloads needs its size");
    ctx_t c = {.root = -1, .pc_fd = -1, .res = res, .err = err};
    c.in.fd = src->fd;
    c.in.feed = src->feed;
    c.in.limit = src->size >= 0 ? (uint64_t)src->size : UINT64_MAX;
    c.in.buf = hero_bigbuf_new(BLOB_READ_BLOCK);
    if (!src->feed) {
        struct stat st;
        if (fstat(src->fd, &st) == 0)
            res->blob_size = (uint64_t)st.st_size;
        if (src->digest && src->size >= 0 && res->blob_size != (uint64_t)src->size) {
            hero_bigbuf_free(c.in.buf, BLOB_READ_BLOCK);
            res->blob_mismatch = true;
            return hero_error_set(err, 0, "layer blob size mismatch: manifest says %" PRId64
                                  " bytes, blob has %" PRIu64, src->size, res->blob_size);
        }
    }
    c.root = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (c.root < 0) {
        rc = hero_error_set(err, errno, "cannot open layer directory '%s'", dest_dir);
    } else if (fchown(c.root, 0, 0) < 0 || fchmod(c.root, 0755) < 0) {
        rc = hero_error_set(err, errno, "cannot set up layer directory '%s'", dest_dir);
    } else {
        hero_sha256_init(&c.md);
        if (src->digest) {
            hero_sha256_init(&c.blob_md);
            c.in.md = &c.blob_md;
        }
        rc = run(&c);
        feed_stop(&c);
    }
    /* the flushes must be done (and their errors known) before the layer is synced */
    if (hero_flush_end(c.flush, rc == 0 ? err : NULL) < 0 && rc == 0)
        rc = -1;

    /* the blob first: when its bytes are not the manifest's, that is the error */
    if (rc == 0)
        rc = blob_check(&c, src->digest, src->size);
    if (src->feed)
        res->blob_size = c.in.pos;
    if (rc == 0) {
        hero_sha256_final_hex(&c.md, res->diff_id);
        if (expected_diff_id && strcasecmp(expected_diff_id, res->diff_id) != 0)
            rc = hero_error_set(err, 0, "layer diff_id mismatch: config says %s, layer is %s",
                                expected_diff_id, res->diff_id);
    }

    cache_drop(&c);
    free(c.last);
    for (size_t i = 0; i < c.ndt; i++)
        free(c.dt[i].path);
    free(c.dt);
    /* the readers first: the ring and the read buffer are theirs until then */
    if (c.inner)
        archive_read_free(c.inner);
    if (c.outer)
        archive_read_free(c.outer);
    feed_free(&c);
    hero_bigbuf_free(c.in.buf, BLOB_READ_BLOCK);
    free(c.in.why);
    if (c.root >= 0)
        close(c.root);
    return rc;
}

int hero_layer_apply(const char *blob_path, const char *dest_dir, const char *expected_diff_id,
                     hero_layer_result_t *res, hero_error_t *err)
{
    int blob = open(blob_path, O_RDONLY | O_CLOEXEC);
    if (blob < 0) {
        if (res) {
            memset(res, 0, sizeof *res);
            res->compression = "none";
        }
        return hero_error_set(err, errno, "cannot open layer blob '%s'", blob_path);
    }
    hero_layer_src_t src = {.fd = blob, .size = -1};
    int rc = hero_layer_apply_src(&src, dest_dir, expected_diff_id, res, err);
    close(blob);
    return rc;
}

int hero_layer_blob_verify(const char *blob_path, const char *digest, int64_t size,
                           hero_error_t *err)
{
    const char *bad = hero_sha256_digest_problem(digest);
    if (bad)
        return hero_error_set(err, 0, "unsupported blob digest '%s' (%s)", digest, bad);
    int fd = open(blob_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : hero_error_set(err, errno, "cannot open '%s'", blob_path);
    hero_sha256_t md;
    hero_sha256_init(&md);
    blob_in_t in = {.fd = fd, .limit = UINT64_MAX, .md = &md,
                    .buf = hero_bigbuf_new(BLOB_READ_BLOCK)};
    int rc = 0;
    char *why = NULL;
    ssize_t n;
    while ((n = blob_read(&in, &why)) > 0)
        ;
    if (n < 0) {
        rc = hero_error_set(err, 0, "%s: %s", blob_path, why);
    } else {
        char got[HERO_LAYER_DIGEST_LEN];
        hero_sha256_final_hex(&md, got);
        if ((size >= 0 && in.pos != (uint64_t)size) || strcasecmp(got, digest) != 0)
            rc = 1;
    }
    free(why);
    hero_bigbuf_free(in.buf, BLOB_READ_BLOCK);
    close(fd);
    return rc;
}

/* ---- making a layer dir durable ---- */

/* A layer with at most SYNC_WALK_INODES files and directories is synced inode by inode
 * (links, nodes and whiteouts do not count: their directory's fsync covers them); a
 * bigger one with syncfs. An fsync costs a journal commit on ext4, so past some dozens
 * syncfs is cheaper, however much else it writes. Layers of more than SYNC_WALK_ENTRIES
 * tar entries are not walked at all, nor trees deeper than SYNC_WALK_DEPTH. */
#define SYNC_WALK_ENTRIES 4096
#define SYNC_WALK_INODES 64
#define SYNC_WALK_DEPTH 64

/* fsync of every regular file and directory under dfd (not dfd itself), children
 * before their directory. Returns 0, 1 when the tree is too big for it, -1 with errno. */
static int fsync_tree(int dfd, int depth, unsigned *inodes)
{
    if (depth > SYNC_WALK_DEPTH)
        return 1;
    int d2 = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    if (d2 < 0)
        return -1;
    DIR *dir = fdopendir(d2);
    if (!dir) {
        close(d2);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                rc = -1;
                break;
            }
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
        /* links, device nodes (whiteouts too) and fifos are made durable with their
         * directory's entries */
        if (type != DT_DIR && type != DT_REG)
            continue;
        if (++*inodes > SYNC_WALK_INODES) {
            rc = 1;
            break;
        }
        int fd = openat(dfd, de->d_name,
                        O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
                            (type == DT_DIR ? O_DIRECTORY : 0));
        if (fd < 0) {
            rc = -1;
            break;
        }
        if (type == DT_DIR)
            rc = fsync_tree(fd, depth + 1, inodes);
        if (rc == 0 && fsync(fd) < 0)
            rc = -1;
        int e = errno;
        close(fd);
        errno = e;
    }
    if (rc == 0 && errno != 0)
        rc = -1;
    int e = errno;
    closedir(dir);
    errno = e;
    return rc;
}

int hero_layer_sync(const char *dir, uint64_t entries, hero_error_t *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot sync %s", dir);
    int rc = 1;
    if (entries <= SYNC_WALK_ENTRIES) {
        unsigned inodes = 0;
        rc = fsync_tree(fd, 0, &inodes);
        if (rc == 0 && fsync(fd) < 0)
            rc = -1;
    }
    if (rc == 1) /* too big to go file by file */
        rc = syncfs(fd) < 0 ? -1 : 0;
    if (rc < 0)
        hero_error_set(err, errno, "cannot sync %s", dir);
    close(fd);
    return rc < 0 ? -1 : 0;
}
