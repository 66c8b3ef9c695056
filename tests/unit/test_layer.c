/* Unit tests for actions/heropods/layer.c and layer_lookup.c: applying OCI layer blobs
 * (tar, tar+gzip, tar+zstd) into overlayfs-format layer dirs, and looking files up in a
 * stack of them. The tars are built here with libarchive's writer. Root only (owners,
 * device nodes, trusted.* xattrs, an overlay mount in a private mount namespace); the
 * whole suite skips without root. Ends with the time of a 100 MB layer
 * (HERO_LAYER_BENCH_MB=N to change the size, 0 to skip, say under valgrind). */
#include "actions/heropods/layer.h"
#include "tests/unit/tap.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <openssl/evp.h>

static char base[PATH_MAX];
static int seq;

/* strings made for paths live until the end of main (so valgrind sees no leak) */
static char **kept;
static size_t nkept, capkept;

static char *keep(char *p)
{
    if (nkept == capkept) {
        capkept = capkept ? capkept * 2 : 256;
        kept = hero_xrealloc(kept, capkept * sizeof *kept);
    }
    return kept[nkept++] = p;
}

static char *S(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *S(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = hero_xvasprintf(fmt, ap);
    va_end(ap);
    return keep(p);
}

static char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* a path under the test's temp dir */
static char *P(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *rel = hero_xvasprintf(fmt, ap);
    va_end(ap);
    char *p = hero_xasprintf("%s/%s", base, rel);
    free(rel);
    return keep(p);
}

/* a fresh empty dir for one layer */
static char *newdir(const char *what)
{
    char *p = P("%s.%d", what, ++seq);
    if (mkdir(p, 0700) < 0) {
        perror(p);
        exit(1);
    }
    return p;
}

/* ---- building tars ---- */

typedef struct tw {
    struct archive *a;
} tw_t;

static tw_t tar_open(const char *path, const char *filter)
{
    tw_t t = {archive_write_new()};
    archive_write_set_format_pax(t.a);
    if (filter && !strcmp(filter, "gzip"))
        archive_write_add_filter_gzip(t.a);
    else if (filter && !strcmp(filter, "zstd"))
        archive_write_add_filter_zstd(t.a);
    if (archive_write_open_filename(t.a, path) != ARCHIVE_OK) {
        printf("# tar_open %s: %s\n", path, archive_error_string(t.a));
        exit(1);
    }
    return t;
}

static void tar_close(tw_t t)
{
    archive_write_close(t.a);
    archive_write_free(t.a);
}

static struct archive_entry *ent(const char *name, mode_t type, mode_t perm, int uid, int gid,
                                 time_t mtime)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, gid);
    archive_entry_set_mtime(e, mtime, 0);
    return e;
}

static void put(tw_t t, struct archive_entry *e, const void *data, size_t len)
{
    archive_entry_set_size(e, (la_int64_t)len);
    if (archive_write_header(t.a, e) < ARCHIVE_WARN) {
        printf("# write_header %s: %s\n", archive_entry_pathname(e), archive_error_string(t.a));
        exit(1);
    }
    if (len && archive_write_data(t.a, data, len) != (la_ssize_t)len) {
        printf("# write_data %s: %s\n", archive_entry_pathname(e), archive_error_string(t.a));
        exit(1);
    }
    archive_entry_free(e);
}

static void file(tw_t t, const char *name, const char *data, mode_t perm, int uid, int gid,
                 time_t mtime)
{
    put(t, ent(name, AE_IFREG, perm, uid, gid, mtime), data, strlen(data));
}

static void dir(tw_t t, const char *name, mode_t perm, int uid, int gid, time_t mtime)
{
    put(t, ent(name, AE_IFDIR, perm, uid, gid, mtime), NULL, 0);
}

static void slink(tw_t t, const char *name, const char *target)
{
    struct archive_entry *e = ent(name, AE_IFLNK, 0777, 0, 0, 1000000);
    archive_entry_set_symlink(e, target);
    put(t, e, NULL, 0);
}

static void hlink(tw_t t, const char *name, const char *target)
{
    struct archive_entry *e = ent(name, AE_IFREG, 0644, 0, 0, 1000000);
    archive_entry_set_hardlink(e, target);
    put(t, e, NULL, 0);
}

static void node(tw_t t, const char *name, mode_t type, mode_t perm, int maj, int min)
{
    struct archive_entry *e = ent(name, type, perm, 0, 0, 1000000);
    archive_entry_set_rdevmajor(e, maj);
    archive_entry_set_rdevminor(e, min);
    put(t, e, NULL, 0);
}

/* ---- checking ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char b[4096];
    size_t n;
    while ((n = fread(b, 1, sizeof b, f)) > 0)
        fwrite(b, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static bool content_is(const char *path, const char *want)
{
    char *got = slurp(path);
    bool ok = got && !strcmp(got, want);
    free(got);
    return ok;
}

static bool missing(const char *path)
{
    struct stat st;
    return lstat(path, &st) < 0 && errno == ENOENT;
}

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static bool is_whiteout(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static bool is_opaque(const char *path)
{
    char v[4];
    ssize_t n = lgetxattr(path, "trusted.overlay.opaque", v, sizeof v);
    return n == 1 && v[0] == 'y';
}

static void sha256_file(const char *path, char out[HERO_LAYER_DIGEST_LEN])
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    char b[65536];
    size_t n;
    while (f && (n = fread(b, 1, sizeof b, f)) > 0)
        EVP_DigestUpdate(md, b, n);
    if (f)
        fclose(f);
    unsigned char d[32];
    unsigned dl;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    char *p = out + sprintf(out, "sha256:");
    for (int i = 0; i < 32; i++)
        p += sprintf(p, "%02x", d[i]);
}

/* apply, keeping the error message (or NULL) */
static int apply(const char *blob, const char *dest, const char *want, hero_layer_result_t *res,
                 char **msg)
{
    hero_error_t e = HERO_ERROR_INIT;
    int rc = hero_layer_apply(blob, dest, want, res, &e);
    if (msg)
        *msg = e.msg ? hero_xstrdup(e.msg) : NULL;
    if (rc < 0 && !msg)
        printf("# apply %s: %s\n", blob, e.msg);
    hero_error_clear(&e);
    return rc;
}

static bool has(const char *msg, const char *needle)
{
    if (!msg || !strstr(msg, needle)) {
        printf("#   message: %s\n#   wanted:  ...%s...\n", msg ? msg : "(none)", needle);
        return false;
    }
    return true;
}

/* ---- compression helpers (independent of libarchive's writer) ---- */

static char *readall(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = hero_xmalloc(*len);
    if (fread(b, 1, *len, f) != *len)
        exit(1);
    fclose(f);
    return b;
}

static void writeall(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
}

/* gzip `in` as `members` concatenated gzip members (pigz and some registries do that) */
static void gzip_file(const char *in, const char *out, int members, int level)
{
    size_t len;
    char *b = readall(in, &len);
    FILE *f = fopen(out, "wb");
    size_t chunk = len / (size_t)members + 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        z_stream z = {0};
        deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        size_t cap = deflateBound(&z, n);
        unsigned char *o = hero_xmalloc(cap);
        z.next_in = (unsigned char *)b + off;
        z.avail_in = (uInt)n;
        z.next_out = o;
        z.avail_out = (uInt)cap;
        deflate(&z, Z_FINISH);
        fwrite(o, 1, cap - z.avail_out, f);
        deflateEnd(&z);
        free(o);
    }
    fclose(f);
    free(b);
}

static void zstd_file(const char *in, const char *out)
{
    size_t len;
    char *b = readall(in, &len);
    size_t cap = ZSTD_compressBound(len);
    char *o = hero_xmalloc(cap);
    size_t n = ZSTD_compress(o, cap, b, len, 3);
    writeall(out, o, n);
    free(o);
    free(b);
}


/* ---- reading a blob while it downloads, checking its digest, syncing ---- */

/* A "download": copies `src` into the file `fd` in chunks, telling the feed each time;
 * stops after `stop_at` bytes (then fails the feed when `fail`, or waits for `go`). */
typedef struct writer {
    const char *buf;
    size_t len, chunk, stop_at;
    int fd;
    hero_layer_feed_t *feed;
    bool fail;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool go;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (size_t off = 0; off < w->len;) {
        if (off >= w->stop_at) {
            if (w->fail) {
                hero_layer_feed_fail(w->feed, "the download broke (test)");
                return NULL;
            }
            pthread_mutex_lock(&w->mu);
            while (!w->go)
                pthread_cond_wait(&w->cv, &w->mu);
            pthread_mutex_unlock(&w->mu);
        }
        size_t n = w->len - off < w->chunk ? w->len - off : w->chunk;
        if (pwrite(w->fd, w->buf + off, n, (off_t)off) != (ssize_t)n)
            exit(1);
        off += n;
        hero_layer_feed_grow(w->feed, off);
        usleep(200);
    }
    return NULL;
}

/* applies `blob` as a file that a writer thread fills while it is read */
static int apply_growing(const char *blob, const char *digest, size_t stop_at, bool fail,
                         const char *dest, const char *want, hero_layer_result_t *res,
                         char **msg)
{
    writer_t w = {.chunk = 65536 + 123, .stop_at = stop_at, .fail = fail};
    size_t len;
    char *b = readall(blob, &len);
    w.buf = b;
    w.len = len;
    char *part = S("%s.partial.%d", blob, ++seq);
    w.fd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    w.feed = hero_layer_feed_new();
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &w);
    hero_error_t e = HERO_ERROR_INIT;
    hero_layer_src_t src = {.fd = w.fd, .digest = digest, .size = (int64_t)len,
                            .feed = w.feed};
    int rc = hero_layer_apply_src(&src, dest, want, res, &e);
    /* the reader has returned: let a writer that waits finish */
    pthread_mutex_lock(&w.mu);
    w.go = true;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(th, NULL);
    hero_layer_feed_free(w.feed);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    close(w.fd);
    free(b);
    *msg = e.msg ? hero_xstrdup(e.msg) : NULL;
    hero_error_clear(&e);
    return rc;
}

static void streaming(void)
{
    char *tar = P("stream.tar");
    tw_t t = tar_open(tar, NULL);
    dir(t, "data/", 0755, 0, 0, 1000000);
    /* over two of layer.c's FLUSH_CHUNKs and a FLUSH_TAIL: handed to the flusher three
     * times while it is written */
    size_t bigsz = 9 * 1024 * 1024 + 77;
    char *big = hero_xmalloc(bigsz + 1);
    uint32_t x = 12345; /* not too compressible: the gzip blob is megabytes too */
    for (size_t i = 0; i < bigsz; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (char)('a' + (x >> 16) % 26);
    }
    big[bigsz] = 0;
    file(t, "data/big", big, 0644, 0, 0, 1000000);
    file(t, "data/small", "small", 0600, 0, 0, 1000000);
    slink(t, "data/link", "big");
    tar_close(t);
    char want[HERO_LAYER_DIGEST_LEN], dg[HERO_LAYER_DIGEST_LEN];
    sha256_file(tar, want);
    char *gz = P("stream.tar.gz");
    gzip_file(tar, gz, 1, 1);
    sha256_file(gz, dg);
    size_t gzlen;
    free(readall(gz, &gzlen));

    hero_layer_result_t r;
    char *msg = NULL, *d = newdir("stream");
    TAP_OK(apply_growing(gz, dg, SIZE_MAX, false, d, want, &r, &msg) == 0,
           "a layer applies from a file that grows while it is read (digest checked)");
    TAP_OK(content_is(S("%s/data/big", d), big) && content_is(S("%s/data/small", d), "small") &&
               !strcmp(r.diff_id, want) && r.blob_size == gzlen && !r.blob_mismatch,
           "... with the same content, diff_id and blob size");
    free(msg);
    d = newdir("stream");
    TAP_OK(apply_growing(gz, NULL, SIZE_MAX, false, d, want, &r, &msg) == 0 &&
               content_is(S("%s/data/big", d), big),
           "... and without a digest to check");
    free(msg);
    d = newdir("stream");
    TAP_OK(apply_growing(gz, dg, gzlen / 2, true, d, want, &r, &msg) < 0 &&
               has(msg, "the download broke (test)"),
           "a writer that gives up fails the reader with its reason");
    free(msg);

    /* a consumer that fails must not wait for the rest of the download */
    char *evil = P("stream-evil.tar");
    t = tar_open(evil, NULL);
    file(t, "../evil", "x", 0644, 0, 0, 1000000);
    file(t, "data/big", big, 0644, 0, 0, 1000000);
    tar_close(t);
    char *egz = P("stream-evil.tar.gz");
    gzip_file(evil, egz, 1, 1);
    d = newdir("stream");
    size_t elen;
    free(readall(egz, &elen));
    msg = NULL;
    TAP_OK(elen > 700000 && apply_growing(egz, NULL, 600000, false, d, NULL, &r, &msg) < 0 &&
               has(msg, "path escapes the image root"),
           "a hostile entry fails the layer while the rest is still downloading (no hang)");
    free(msg);

    /* complete files with a digest */
    char bad[HERO_LAYER_DIGEST_LEN];
    memcpy(bad, dg, sizeof bad);
    bad[10] = bad[10] == '0' ? '1' : '0';
    int fd = open(gz, O_RDONLY | O_CLOEXEC);
    hero_error_t e = HERO_ERROR_INIT;
    hero_layer_src_t src = {.fd = fd, .digest = dg, .size = (int64_t)gzlen};
    TAP_OK(hero_layer_apply_src(&src, newdir("stream"), want, &r, &e) == 0 && !r.blob_mismatch,
           "a complete blob with its digest and size applies");
    hero_error_clear(&e);
    src.digest = bad;
    TAP_OK(hero_layer_apply_src(&src, newdir("stream"), want, &r, &e) < 0 && r.blob_mismatch &&
               has(e.msg, "layer blob digest mismatch"),
           "a blob that is not the manifest's fails, blob_mismatch set");
    hero_error_clear(&e);
    src.digest = dg;
    src.size = (int64_t)gzlen - 1;
    TAP_OK(hero_layer_apply_src(&src, newdir("stream"), want, &r, &e) < 0 && r.blob_mismatch &&
               has(e.msg, "size mismatch"),
           "a blob longer than the manifest says fails");
    hero_error_clear(&e);
    close(fd);

    size_t len;
    char *b = readall(gz, &len);
    char *cut = P("stream-cut.tar.gz");
    writeall(cut, b, len - 100);
    fd = open(cut, O_RDONLY | O_CLOEXEC);
    src = (hero_layer_src_t){.fd = fd, .digest = dg, .size = (int64_t)gzlen};
    TAP_OK(hero_layer_apply_src(&src, newdir("stream"), want, &r, &e) < 0,
           "a blob cut short fails");
    hero_error_clear(&e);
    close(fd);
    TAP_OK(hero_layer_blob_verify(gz, dg, (int64_t)gzlen, NULL) == 0 &&
               hero_layer_blob_verify(gz, dg, -1, NULL) == 0 &&
               hero_layer_blob_verify(cut, dg, (int64_t)gzlen, NULL) == 1 &&
               hero_layer_blob_verify(cut, dg, -1, NULL) == 1 &&
               hero_layer_blob_verify(gz, bad, -1, NULL) == 1 &&
               hero_layer_blob_verify(S("%s.none", gz), dg, -1, NULL) == 1,
           "hero_layer_blob_verify: 0 for the blob, 1 for a cut, wrong or missing one");
    free(b);

    /* syncing: file by file, or syncfs for a big layer */
    TAP_OK(hero_layer_sync(d, 3, &e) == 0, "a small layer syncs inode by inode");
    hero_error_clear(&e);
    TAP_OK(hero_layer_sync(d, 100000, &e) == 0, "a big one with syncfs");
    hero_error_clear(&e);
    char *deep = newdir("deep");
    char *p = hero_xstrdup(deep);
    for (int i = 0; i < 80; i++) {
        char *q = hero_xasprintf("%s/d", p);
        free(p);
        p = q;
        mkdir(p, 0755);
    }
    writeall(S("%s/f", p), "f", 1);
    free(p);
    TAP_OK(hero_layer_sync(deep, 2, &e) == 0, "a deep one falls back to syncfs");
    hero_error_clear(&e);
    TAP_OK(hero_layer_sync(S("%s/none", base), 2, &e) < 0 && e.code == ENOENT,
           "syncing a missing dir fails");
    hero_error_clear(&e);
    free(big);
}

/* ---- the cases ---- */

static void basics(void)
{
    char *blob = P("basics.tar");
    tw_t t = tar_open(blob, NULL);
    dir(t, "./", 0755, 0, 0, 1000000);
    dir(t, "etc/", 0751, 0, 0, 1500000000);
    file(t, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644, 0, 0, 1600000000);
    file(t, "etc/shadow", "secret\n", 0600, 0, 42, 1600000001);
    dir(t, "bin/", 0755, 0, 0, 1400000000);
    file(t, "bin/su", "ELF", 04755, 0, 0, 1600000002);
    file(t, "bin/wall", "ELF", 02711, 0, 5, 1600000002);
    dir(t, "home/", 0755, 0, 0, 1400000000);
    dir(t, "home/user/", 0700, 1000, 1000, 1300000000);
    file(t, "home/user/notes", "hello\n", 0640, 1000, 1000, 1300000001);
    struct archive_entry *e = ent("home/user/nanos", AE_IFREG, 0644, 1000, 1000, 0);
    archive_entry_set_mtime(e, 1234567890, 123456789);
    put(t, e, "n", 1);
    dir(t, "tmp/", 01777, 0, 0, 1000000);
    slink(t, "bin/sh", "busybox");
    slink(t, "etc/mtab", "/proc/self/mounts");
    e = ent("bin/owned-link", AE_IFLNK, 0777, 33, 44, 1111111111);
    archive_entry_set_symlink(e, "../etc/passwd");
    put(t, e, NULL, 0);
    file(t, "bin/busybox", "BUSYBOX", 0755, 0, 0, 1000000);
    hlink(t, "bin/ls", "bin/busybox");
    hlink(t, "bin/cat", "./bin/busybox"); /* dotted names */
    dir(t, "dev/", 0755, 0, 0, 1000000);
    node(t, "dev/null", AE_IFCHR, 0666, 1, 3);
    node(t, "dev/loop0", AE_IFBLK, 0660, 7, 0);
    node(t, "dev/fifo", AE_IFIFO, 0620, 0, 0);
    /* xattrs (pax SCHILY.xattr) on a file and a directory; trusted.overlay.* ignored */
    e = ent("xa/", AE_IFDIR, 0755, 0, 0, 1000000);
    archive_entry_xattr_add_entry(e, "user.dir", "d", 1);
    archive_entry_xattr_add_entry(e, "trusted.overlay.opaque", "y", 1);
    put(t, e, NULL, 0);
    e = ent("xa/file", AE_IFREG, 0644, 0, 0, 1000000);
    archive_entry_xattr_add_entry(e, "user.foo", "bar", 3);
    archive_entry_xattr_add_entry(e, "user.bin", "\0\1\2", 3);
    archive_entry_xattr_add_entry(e, "security.capability",
                                  "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                                  20);
    put(t, e, "x", 1);
    /* parents that have no entry of their own */
    file(t, "implicit/sub/deep", "deep", 0644, 0, 0, 1000000);
    /* a sparse-ish big file and an empty one */
    file(t, "empty", "", 0644, 0, 0, 1000000);
    /* long name (pax path) */
    char longname[300];
    snprintf(longname, sizeof longname, "long/%0200d/x", 0);
    file(t, longname, "long", 0644, 0, 0, 1000000);
    tar_close(t);

    char *d = newdir("basics");
    hero_layer_result_t r;
    char want[HERO_LAYER_DIGEST_LEN];
    sha256_file(blob, want);
    TAP_OK(apply(blob, d, want, &r, NULL) == 0, "a plain tar applies, its diff_id checked");
    TAP_STREQ(r.diff_id, want, "diff_id is the sha256 of the tar");
    TAP_STREQ(r.compression, "none", "compression: none");
    struct stat st;
    TAP_OK(stat(blob, &st) == 0 && r.size == (uint64_t)st.st_size && r.blob_size == r.size,
           "size counts the whole stream, padding included");
    TAP_OK(r.entries == 27, "entries counted");
    if (r.entries != 27)
        printf("#   entries %llu\n", (unsigned long long)r.entries);

    TAP_OK(content_is(P("basics.%d/etc/passwd", seq), "root:x:0:0::/root:/bin/sh\n"),
           "file content");
    TAP_OK(stat(P("basics.%d/etc/shadow", seq), &st) == 0 && (st.st_mode & 07777) == 0600 &&
               st.st_uid == 0 && st.st_gid == 42 && st.st_mtime == 1600000001,
           "mode, owner, mtime of a file");
    TAP_OK(stat(P("basics.%d/bin/su", seq), &st) == 0 && (st.st_mode & 07777) == 04755,
           "setuid kept");
    TAP_OK(stat(P("basics.%d/bin/wall", seq), &st) == 0 && (st.st_mode & 07777) == 02711 &&
               st.st_gid == 5,
           "setgid kept with a group");
    TAP_OK(stat(P("basics.%d/home/user", seq), &st) == 0 && (st.st_mode & 07777) == 0700 &&
               st.st_uid == 1000 && st.st_gid == 1000 && st.st_mtime == 1300000000,
           "directory mode, owner, and mtime (set after its content)");
    TAP_OK(stat(P("basics.%d/etc", seq), &st) == 0 && (st.st_mode & 07777) == 0751 &&
               st.st_mtime == 1500000000,
           "directory mtime survives later entries in it");
    TAP_OK(stat(P("basics.%d/home/user/nanos", seq), &st) == 0 &&
               st.st_mtim.tv_sec == 1234567890 && st.st_mtim.tv_nsec == 123456789,
           "mtime nanoseconds (pax)");
    TAP_OK(stat(P("basics.%d/tmp", seq), &st) == 0 && (st.st_mode & 07777) == 01777,
           "sticky dir");
    TAP_OK(stat(d, &st) == 0 && (st.st_mode & 07777) == 0755, "the root from ./");
    char lt[64] = {0};
    TAP_OK(readlink(P("basics.%d/bin/sh", seq), lt, sizeof lt - 1) > 0 && !strcmp(lt, "busybox"),
           "relative symlink");
    memset(lt, 0, sizeof lt);
    TAP_OK(readlink(P("basics.%d/etc/mtab", seq), lt, sizeof lt - 1) > 0 &&
               !strcmp(lt, "/proc/self/mounts"),
           "absolute symlink kept as is");
    TAP_OK(lstat(P("basics.%d/bin/owned-link", seq), &st) == 0 && S_ISLNK(st.st_mode) &&
               st.st_uid == 33 && st.st_gid == 44 && st.st_mtime == 1111111111,
           "symlink owner and mtime (the link itself)");
    struct stat a, b, c;
    TAP_OK(stat(P("basics.%d/bin/busybox", seq), &a) == 0 &&
               stat(P("basics.%d/bin/ls", seq), &b) == 0 &&
               stat(P("basics.%d/bin/cat", seq), &c) == 0 && a.st_ino == b.st_ino &&
               a.st_ino == c.st_ino && a.st_nlink == 3,
           "hardlinks share the inode");
    TAP_OK(lstat(P("basics.%d/dev/null", seq), &st) == 0 && S_ISCHR(st.st_mode) &&
               st.st_rdev == makedev(1, 3) && (st.st_mode & 07777) == 0666,
           "char device");
    TAP_OK(lstat(P("basics.%d/dev/loop0", seq), &st) == 0 && S_ISBLK(st.st_mode) &&
               st.st_rdev == makedev(7, 0) && (st.st_mode & 07777) == 0660,
           "block device");
    TAP_OK(lstat(P("basics.%d/dev/fifo", seq), &st) == 0 && S_ISFIFO(st.st_mode) &&
               (st.st_mode & 07777) == 0620,
           "fifo");
    char v[32] = {0};
    TAP_OK(lgetxattr(P("basics.%d/xa/file", seq), "user.foo", v, sizeof v) == 3 &&
               !memcmp(v, "bar", 3),
           "user xattr on a file");
    TAP_OK(lgetxattr(P("basics.%d/xa/file", seq), "user.bin", v, sizeof v) == 3 &&
               !memcmp(v, "\0\1\2", 3),
           "binary xattr value");
    TAP_OK(lgetxattr(P("basics.%d/xa/file", seq), "security.capability", v, sizeof v) == 20,
           "file capability (security.capability) kept");
    TAP_OK(lgetxattr(P("basics.%d/xa", seq), "user.dir", v, sizeof v) == 1 && v[0] == 'd',
           "user xattr on a directory");
    TAP_OK(!is_opaque(P("basics.%d/xa", seq)) && r.xattrs_ignored == 1,
           "trusted.overlay.* from the tar is ignored (no faked opaque dir)");
    TAP_OK(stat(P("basics.%d/implicit/sub", seq), &st) == 0 && S_ISDIR(st.st_mode) &&
               (st.st_mode & 07777) == 0755 && st.st_uid == 0 &&
               content_is(P("basics.%d/implicit/sub/deep", seq), "deep"),
           "missing parents are made 0755 root");
    TAP_OK(stat(P("basics.%d/empty", seq), &st) == 0 && st.st_size == 0, "empty file");
    TAP_OK(content_is(P("basics.%d/%s", seq, longname), "long"), "long name");
}

static void replacing(void)
{
    char *blob = P("replace.tar");
    tw_t t = tar_open(blob, NULL);
    file(t, "f", "one", 0644, 0, 0, 1000000);
    file(t, "f", "two", 0600, 0, 0, 1000000);
    dir(t, "d/", 0700, 0, 0, 1000000);
    file(t, "d/keep", "k", 0644, 0, 0, 1000000);
    dir(t, "d/", 0755, 7, 7, 1000000);
    dir(t, "gone/", 0755, 0, 0, 1000000);
    dir(t, "gone/sub/", 0755, 0, 0, 1000000);
    file(t, "gone/sub/x", "x", 0644, 0, 0, 1000000);
    file(t, "gone", "now a file", 0644, 0, 0, 1000000);
    file(t, "todir", "file", 0644, 0, 0, 1000000);
    dir(t, "todir/", 0755, 0, 0, 1000000);
    file(t, "todir/in", "in", 0644, 0, 0, 1000000);
    file(t, "hl", "target", 0644, 0, 0, 1000000);
    hlink(t, "hl2", "hl");
    hlink(t, "hl2", "hl"); /* twice */
    hlink(t, "hl", "hl");  /* itself */
    tar_close(t);
    char *d = newdir("replace");
    hero_layer_result_t r;
    TAP_OK(apply(blob, d, NULL, &r, NULL) == 0, "a tar that replaces its own entries applies");
    struct stat st, st2;
    TAP_OK(content_is(P("replace.%d/f", seq), "two") && stat(P("replace.%d/f", seq), &st) == 0 &&
               (st.st_mode & 0777) == 0600,
           "a file over a file replaces it");
    TAP_OK(stat(P("replace.%d/d", seq), &st) == 0 && (st.st_mode & 0777) == 0755 &&
               st.st_uid == 7 && content_is(P("replace.%d/d/keep", seq), "k"),
           "a directory again updates owner and mode, keeps the content");
    TAP_OK(content_is(P("replace.%d/gone", seq), "now a file"),
           "a file over a non-empty directory replaces it");
    TAP_OK(content_is(P("replace.%d/todir/in", seq), "in"), "a directory over a file");
    TAP_OK(stat(P("replace.%d/hl", seq), &st) == 0 && stat(P("replace.%d/hl2", seq), &st2) == 0 &&
               st.st_ino == st2.st_ino && content_is(P("replace.%d/hl", seq), "target"),
           "a repeated hardlink and a hardlink to itself change nothing");
}

/* A directory 300 deep replaced by a file, with 100 fds at most: the removal does not
 * keep an fd per level (it is hero_fs_rmtree_at's). */
static void replacing_deep(void)
{
    char *blob = P("replace-deep.tar");
    tw_t t = tar_open(blob, NULL);
    size_t cap = 4 + 2 * 300 + 8;
    char *name = hero_xmalloc(cap);
    strcpy(name, "deep/");
    dir(t, name, 0755, 0, 0, 1000000);
    for (int i = 0; i < 300; i++) {
        strcat(name, "d/");
        dir(t, name, 0755, 0, 0, 1000000);
    }
    strcat(name, "f");
    file(t, name, "bottom", 0644, 0, 0, 1000000);
    file(t, "deep", "now a file", 0644, 0, 0, 1000000);
    tar_close(t);
    free(name);
    char *d = newdir("replace-deep");
    hero_layer_result_t r;
    struct rlimit old, low = {100, 100};
    getrlimit(RLIMIT_NOFILE, &old);
    low.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_NOFILE, &low);
    int rc = apply(blob, d, NULL, &r, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    TAP_OK(rc == 0 && content_is(P("replace-deep.%d/deep", seq), "now a file"),
           "a file over a directory 300 deep replaces it, with 100 fds at most");
}

/* bottom: a/{keep,gone}, o/old, top_gone, w/, f ; top: whiteouts and an opaque dir */
static char *bottom, *top;

static void whiteouts(void)
{
    char *blob = P("bottom.tar");
    tw_t t = tar_open(blob, NULL);
    dir(t, "a/", 0755, 0, 0, 1000000);
    file(t, "a/keep", "keep", 0644, 0, 0, 1000000);
    file(t, "a/gone", "gone", 0644, 0, 0, 1000000);
    dir(t, "o/", 0755, 0, 0, 1000000);
    file(t, "o/old", "old", 0644, 0, 0, 1000000);
    dir(t, "o/olddir/", 0755, 0, 0, 1000000);
    file(t, "top_gone", "x", 0644, 0, 0, 1000000);
    dir(t, "d2/", 0755, 0, 0, 1000000);
    file(t, "d2/lower", "lower", 0644, 0, 0, 1000000);
    dir(t, "d3/", 0755, 0, 0, 1000000);
    file(t, "d3/lower", "lower", 0644, 0, 0, 1000000);
    file(t, "f", "lower f", 0644, 0, 0, 1000000);
    dir(t, "etc/", 0755, 0, 0, 1000000);
    file(t, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644, 0, 0, 1000000);
    slink(t, "etc/link-to-a", "../a");
    tar_close(t);
    bottom = newdir("bottom");
    TAP_OK(apply(blob, bottom, NULL, NULL, NULL) == 0, "bottom layer");

    blob = P("top.tar");
    t = tar_open(blob, "gzip");
    dir(t, "a/", 0755, 0, 0, 1000000);
    file(t, "a/.wh.gone", "", 0644, 0, 0, 1000000);
    dir(t, "o/", 0755, 0, 0, 1000000);
    file(t, "o/.wh..wh..opq", "", 0644, 0, 0, 1000000);
    file(t, "o/new", "new", 0644, 0, 0, 1000000);
    file(t, ".wh.top_gone", "", 0644, 0, 0, 1000000);
    file(t, ".wh..wh.plnk", "", 0644, 0, 0, 1000000);
    dir(t, "d2/", 0755, 0, 0, 1000000);
    file(t, "d2/mine", "mine", 0644, 0, 0, 1000000);
    file(t, ".wh.d2", "", 0644, 0, 0, 1000000);   /* after this layer's own d2 */
    file(t, ".wh.d3", "", 0644, 0, 0, 1000000);   /* before this layer's own d3 */
    dir(t, "d3/", 0755, 0, 0, 1000000);
    file(t, "d3/mine", "mine", 0644, 0, 0, 1000000);
    file(t, ".wh.f", "", 0644, 0, 0, 1000000);
    file(t, "f", "upper f", 0644, 0, 0, 1000000);
    file(t, "nodir/.wh.x", "", 0644, 0, 0, 1000000); /* parent made for the whiteout */
    slink(t, "lnk", "/etc");
    tar_close(t);
    top = newdir("top");
    hero_layer_result_t r;
    TAP_OK(apply(blob, top, NULL, &r, NULL) == 0, "top layer with whiteouts (gzip)");
    TAP_OK(r.whiteouts == 6 && r.opaques == 1 && r.skipped == 1,
           "whiteouts, opaque markers, aufs bookkeeping counted");
    TAP_OK(is_whiteout(S("%s/a/gone", top)), ".wh.gone -> char device 0/0");
    TAP_OK(is_whiteout(S("%s/top_gone", top)), "top-level whiteout");
    TAP_OK(is_opaque(S("%s/o", top)), ".wh..wh..opq -> trusted.overlay.opaque=y");
    TAP_OK(!is_opaque(S("%s/a", top)), "other dirs are not opaque");
    TAP_OK(is_opaque(S("%s/d2", top)) &&
               content_is(S("%s/d2/mine", top), "mine"),
           "a whiteout of this layer's own dir makes it opaque, content kept");
    TAP_OK(is_opaque(S("%s/d3", top)) &&
               content_is(S("%s/d3/mine", top), "mine"),
           "a dir over this layer's whiteout replaces it and is opaque");
    TAP_OK(content_is(S("%s/f", top), "upper f"),
           "a file over this layer's whiteout replaces it");
    TAP_OK(is_whiteout(S("%s/nodir/x", top)), "whiteout in a made parent");
    /* no .wh. file anywhere in the top layer */
    TAP_OK(missing(S("%s/a/.wh.gone", top)) &&
               missing(S("%s/o/.wh..wh..opq", top)) &&
               missing(S("%s/.wh.top_gone", top)) &&
               missing(S("%s/.wh..wh.plnk", top)),
           "no .wh. file is written");

    /* the real thing: an overlay mount of top:bottom in a private mount namespace */
    char *mnt = P("mnt");
    mkdir(mnt, 0755);
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(100);
        char *opts = S("lowerdir=%s:%s", top, bottom);
        if (mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0)
            _exit(101);
        int bits = 0;
        char p[PATH_MAX];
#define CHK(n, cond) if (!(cond)) bits |= 1 << (n)
        snprintf(p, sizeof p, "%s/a/keep", mnt);
        CHK(0, content_is(p, "keep"));
        snprintf(p, sizeof p, "%s/a/gone", mnt);
        CHK(1, missing(p));
        snprintf(p, sizeof p, "%s/o/old", mnt);
        CHK(2, missing(p));
        snprintf(p, sizeof p, "%s/o/new", mnt);
        CHK(3, content_is(p, "new"));
        snprintf(p, sizeof p, "%s/top_gone", mnt);
        CHK(4, missing(p));
        snprintf(p, sizeof p, "%s/d2/lower", mnt);
        CHK(5, missing(p));
        snprintf(p, sizeof p, "%s/d3/lower", mnt);
        CHK(5, missing(p));
        snprintf(p, sizeof p, "%s/d3/mine", mnt);
        CHK(5, content_is(p, "mine"));
        snprintf(p, sizeof p, "%s/f", mnt);
        CHK(6, content_is(p, "upper f"));
        snprintf(p, sizeof p, "%s/o", mnt);
        CHK(7, count_entries(p) == 1);
        snprintf(p, sizeof p, "%s/a", mnt);
        CHK(7, count_entries(p) == 1);
#undef CHK
        umount(mnt);
        _exit(bits);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int x = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    if (x >= 100) {
        printf("# overlay mount failed in the child (%d)\n", x);
        x = 255;
    }
    TAP_OK(x != 255, "overlay mount of the two layer dirs");
    TAP_OK(x != 255 && !(x & 1), "overlay: a lower file stays visible");
    TAP_OK(x != 255 && !(x & 2), "overlay: the whited-out file is gone");
    TAP_OK(x != 255 && !(x & 4), "overlay: the opaque dir hides the lower content");
    TAP_OK(x != 255 && !(x & 8), "overlay: the opaque dir shows its own content");
    TAP_OK(x != 255 && !(x & 16), "overlay: top-level whiteout");
    TAP_OK(x != 255 && !(x & 32), "overlay: whiteout + same-name dir in one layer");
    TAP_OK(x != 255 && !(x & 64), "overlay: whiteout + same-name file in one layer");
    TAP_OK(x != 255 && !(x & 128), "overlay: directory listings");
    rmdir(mnt);
}

static void lookups(void)
{
    const char *const layers[] = {top, bottom, NULL};
    hero_error_t e = HERO_ERROR_INIT;
    char *f = NULL;
    char *want = S("%s/a/keep", bottom);
    TAP_OK(hero_layer_lookup(layers, "/a/keep", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: a lower file through an upper dir");
    if (f && strcmp(f, want))
        printf("#   got %s\n", f);
    free(f);
    TAP_OK(hero_layer_lookup(layers, "/a/gone", &f, &e) == 1 && !f, "lookup: whited out");
    TAP_OK(hero_layer_lookup(layers, "/top_gone", &f, &e) == 1, "lookup: top-level whiteout");
    TAP_OK(hero_layer_lookup(layers, "/o/old", &f, &e) == 1, "lookup: hidden by an opaque dir");
    TAP_OK(hero_layer_lookup(layers, "o/olddir", &f, &e) == 1,
           "lookup: a dir hidden by an opaque dir");
    want = S("%s/o/new", top);
    TAP_OK(hero_layer_lookup(layers, "/o/new", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: the opaque dir's own file");
    free(f);
    TAP_OK(hero_layer_lookup(layers, "/d3/lower", &f, &e) == 1,
           "lookup: whiteout + dir in one layer hides the lower dir");
    want = S("%s/f", top);
    TAP_OK(hero_layer_lookup(layers, "/f", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: the upper file wins");
    free(f);
    want = S("%s/etc/passwd", bottom);
    TAP_OK(hero_layer_lookup(layers, "/etc/passwd", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: /etc/passwd");
    free(f);
    TAP_OK(hero_layer_lookup(layers, "/lnk/passwd", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: an absolute symlink in the upper layer, followed in the image");
    free(f);
    TAP_OK(hero_layer_lookup(layers, "/lnk/../../../etc/./passwd", &f, &e) == 0 && f &&
               !strcmp(f, want),
           "lookup: '..' stops at the image root");
    free(f);
    want = S("%s/a/keep", bottom);
    TAP_OK(hero_layer_lookup(layers, "/etc/link-to-a/keep", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: a relative symlink");
    free(f);
    TAP_OK(hero_layer_lookup(layers, "/etc/link-to-a/gone", &f, &e) == 1,
           "lookup: a whiteout through a symlink");
    TAP_OK(hero_layer_lookup(layers, "/a/keep/x", &f, &e) == 1, "lookup: a file is not a dir");
    TAP_OK(hero_layer_lookup(layers, "/nope", &f, &e) == 1, "lookup: missing");
    TAP_OK(hero_layer_lookup(layers, "/", &f, &e) == 0 && f && !strcmp(f, top),
           "lookup: the root is the top layer's");
    free(f);
    const char *const one[] = {bottom, NULL};
    want = S("%s/o/old", bottom);
    TAP_OK(hero_layer_lookup(one, "/o/old", &f, &e) == 0 && f && !strcmp(f, want),
           "lookup: one layer");
    free(f);
    /* a symlink loop */
    char *lp = S("%s/loop", bottom);
    symlink("/loop", lp);
    TAP_OK(hero_layer_lookup(one, "/loop/x", &f, &e) < 0 && e.code == ELOOP, "lookup: ELOOP");
    hero_error_clear(&e);
    unlink(lp);
}

static void compressions(void)
{
    char *blob = P("same.tar");
    tw_t t = tar_open(blob, NULL);
    dir(t, "usr/", 0755, 0, 0, 1000000);
    char big[200000];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = (char)('a' + (i * 7919) % 26);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 20; i++) {
        char n[64];
        snprintf(n, sizeof n, "usr/file%02d", i);
        file(t, n, big + i * 1000, 0644, 0, 0, 1000000);
    }
    tar_close(t);
    char want[HERO_LAYER_DIGEST_LEN];
    sha256_file(blob, want);
    char *gz = P("same.tar.gz"), *gz3 = P("same3.tar.gz"), *zs = P("same.tar.zst");
    gzip_file(blob, gz, 1, 6);
    gzip_file(blob, gz3, 3, 6);
    zstd_file(blob, zs);
    hero_layer_result_t r1, r2, r3, r4;
    TAP_OK(apply(blob, newdir("plain"), NULL, &r1, NULL) == 0, "plain tar");
    TAP_OK(apply(gz, newdir("gz"), NULL, &r2, NULL) == 0 && !strcmp(r2.compression, "gzip"),
           "tar+gzip");
    TAP_OK(apply(gz3, newdir("gz3"), NULL, &r3, NULL) == 0, "tar+gzip in three members");
    TAP_OK(apply(zs, newdir("zst"), NULL, &r4, NULL) == 0 && !strcmp(r4.compression, "zstd"),
           "tar+zstd");
    TAP_OK(!strcmp(r1.diff_id, want) && !strcmp(r2.diff_id, want) && !strcmp(r3.diff_id, want) &&
               !strcmp(r4.diff_id, want),
           "the same diff_id for the same tar, whatever the compression");
    TAP_OK(r2.size == r1.size && r4.size == r1.size && r2.blob_size < r1.size,
           "uncompressed size, blob size");
    TAP_OK(content_is(P("zst.%d/usr/file19", seq), big + 19000), "zstd content");

    /* libarchive's own writers too (gzip and zstd filters) */
    char *lg = P("lib.tar.gz"), *lz = P("lib.tar.zst");
    t = tar_open(lg, "gzip");
    file(t, "x", "x", 0644, 0, 0, 1000000);
    tar_close(t);
    t = tar_open(lz, "zstd");
    file(t, "x", "x", 0644, 0, 0, 1000000);
    tar_close(t);
    TAP_OK(apply(lg, newdir("lg"), NULL, &r1, NULL) == 0 &&
               apply(lz, newdir("lz"), NULL, &r2, NULL) == 0 && !strcmp(r1.diff_id, r2.diff_id),
           "libarchive-written gzip and zstd layers of one tar agree");

    char *msg = NULL;
    const char *bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    TAP_OK(apply(gz, newdir("mismatch"), bad, NULL, &msg) < 0 &&
               has(msg, "layer diff_id mismatch: config says sha256:0000") && has(msg, want),
           "a diff_id mismatch fails, naming both");
    free(msg);
    TAP_OK(apply(gz, newdir("badid"), "sha512:abc", NULL, &msg) < 0 && has(msg, "diff_id"),
           "a malformed diff_id is refused");
    free(msg);
    char upper[HERO_LAYER_DIGEST_LEN];
    strcpy(upper, want);
    for (char *p = upper + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    /* OCI's digest grammar: lower case (pull.c lowers a config's diff_ids before) */
    TAP_OK(apply(zs, newdir("upper"), upper, NULL, &msg) < 0 && has(msg, "unsupported diff_id"),
           "an upper-case diff_id is refused");
    free(msg);

    /* broken blobs fail cleanly */
    size_t len;
    char *b = readall(gz, &len);
    char *cut = P("cut.tar.gz");
    writeall(cut, b, len / 2);
    TAP_OK(apply(cut, newdir("cut"), NULL, NULL, &msg) < 0 && msg, "a truncated gzip fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    char *cut2 = P("cut2.tar.gz");
    writeall(cut2, b, len - 6); /* only the trailer's crc/size cut */
    TAP_OK(apply(cut2, newdir("cut2"), NULL, NULL, &msg) < 0 && msg,
           "a gzip without its trailer fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    for (size_t i = len / 3; i < len / 3 + 64; i++)
        b[i] ^= 0x5a;
    char *flip = P("flip.tar.gz");
    writeall(flip, b, len);
    TAP_OK(apply(flip, newdir("flip"), NULL, NULL, &msg) < 0 && msg, "a corrupt gzip fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    free(b);
    b = readall(gz, &len);
    b[2] = 7; /* the method: not deflate, so libarchive's gzip reader does not take it */
    char *badhdr = P("hdr.tar.gz");
    writeall(badhdr, b, len);
    TAP_OK(apply(badhdr, newdir("hdr"), NULL, NULL, &msg) < 0 && msg &&
               strstr(msg, "a corrupt gzip header"),
           "a gzip magic before a header the reader refuses fails (not read as a plain tar)");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    free(b);
    char *gzgz = P("twice.tar.gz.gz");
    gzip_file(gz, gzgz, 1, 6);
    TAP_OK(apply(gzgz, newdir("twice"), NULL, NULL, &msg) < 0 && msg &&
               strstr(msg, "compressed twice"),
           "a layer gzipped twice fails (one decompressor, as the magic says)");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    b = readall(zs, &len);
    char *zcut = P("cut.tar.zst");
    writeall(zcut, b, len / 2);
    TAP_OK(apply(zcut, newdir("zcut"), NULL, NULL, &msg) < 0 && msg, "a truncated zstd fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    free(b);
    b = readall(blob, &len);
    char *tcut = P("cut.tar");
    writeall(tcut, b, 512 + 700); /* in the middle of the first file's data */
    TAP_OK(apply(tcut, newdir("tcut"), NULL, NULL, &msg) < 0 && msg, "a truncated tar fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    free(b);
    char *xz = P("x.tar.xz");
    writeall(xz, "\xfd" "7zXZ\0\0\0\0\0\0\0\0\0\0\0", 16);
    TAP_OK(apply(xz, newdir("xz"), NULL, NULL, &msg) < 0 && has(msg, "xz"),
           "xz is refused by name");
    free(msg);
    char *junk = P("junk");
    writeall(junk, "this is not a tar archive at all, just some text\n", 49);
    TAP_OK(apply(junk, newdir("junk"), NULL, NULL, &msg) < 0 && msg, "not a tar: fails");
    printf("#   %s\n", msg ? msg : "");
    free(msg);
    char *empty = P("empty-blob");
    writeall(empty, "", 0);
    TAP_OK(apply(empty, newdir("emptyblob"), NULL, NULL, &msg) < 0 && msg, "an empty blob fails");
    free(msg);
    TAP_OK(apply(P("no-such-blob"), newdir("nob"), NULL, NULL, &msg) < 0 && has(msg, "no-such-blob"),
           "a missing blob fails");
    free(msg);
}

/* hostile tars: dest is box/dest, next to box/canary which must stay as it is */
typedef struct box {
    char *dir, *dest, *canary, *target;
} box_t;

static box_t new_box(void)
{
    box_t b;
    b.dir = newdir("box");
    b.dest = S("%s/dest", b.dir);
    b.canary = S("%s/canary", b.dir);
    b.target = S("%s/canary/target", b.dir);
    mkdir(b.dest, 0700);
    mkdir(b.canary, 0700);
    writeall(b.target, "orig", 4);
    return b;
}

static bool box_intact(box_t b)
{
    struct stat st;
    bool ok = count_entries(b.dir) == 2 && count_entries(b.canary) == 1 &&
              content_is(b.target, "orig") && stat(b.canary, &st) == 0 &&
              (st.st_mode & 07777) == 0700 && st.st_uid == 0 && stat(b.target, &st) == 0 &&
              S_ISREG(st.st_mode) && st.st_nlink == 1 && (st.st_mode & 07777) == 0644;
    if (!ok)
        printf("#   the box around the layer changed: %d entries, canary %d entries\n",
               count_entries(b.dir), count_entries(b.canary));
    return ok;
}

static char *in_dest(box_t b, const char *rel)
{
    return S("%s/%s", b.dest, rel);
}

static void hostile(void)
{
    char *msg;
    char *blob;
    box_t b;
    tw_t t;

    blob = P("h1.tar");
    t = tar_open(blob, NULL);
    file(t, "ok", "ok", 0644, 0, 0, 1000000);
    file(t, "../evil", "evil", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 &&
               has(msg, "layer entry '../evil': path escapes the image root"),
           "hostile: ../evil fails the layer, named");
    free(msg);
    TAP_OK(box_intact(b), "hostile: ../evil wrote nothing outside");

    blob = P("h2.tar");
    t = tar_open(blob, NULL);
    file(t, "a/../../evil", "evil", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "'a/../../evil': path escapes"),
           "hostile: a/../../evil fails");
    free(msg);
    TAP_OK(box_intact(b), "hostile: a/../../evil wrote nothing outside");

    blob = P("h3.tar");
    t = tar_open(blob, NULL);
    file(t, "a/../inside", "inside", 0644, 0, 0, 1000000);
    file(t, "/abs/evil", "abs", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "'/abs/evil': absolute name") &&
               content_is(in_dest(b, "inside"), "inside"),
           "hostile: a/../inside lands at <root>/inside; the absolute /abs/evil fails");
    free(msg);
    TAP_OK(box_intact(b), "hostile: absolute names write nothing outside");

    /* symlinks planted by earlier entries, then written through */
    blob = P("h4.tar");
    t = tar_open(blob, NULL);
    slink(t, "root", "/");
    file(t, "root/evil1", "1", 0644, 0, 0, 1000000);
    slink(t, "up", "../../../../../../../..");
    file(t, "up/evil2", "2", 0644, 0, 0, 1000000);
    slink(t, "deep", "up/up/up");
    dir(t, "deep/tmp/", 0777, 0, 0, 1000000);
    file(t, "deep/tmp/evil3", "3", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) == 0, "hostile: writes through in-root symlinks");
    if (msg)
        printf("#   %s\n", msg);
    free(msg);
    TAP_OK(content_is(in_dest(b, "evil1"), "1") && content_is(in_dest(b, "evil2"), "2") &&
               content_is(in_dest(b, "tmp/evil3"), "3") && missing("/evil1") &&
               missing("/evil2"),
           "hostile: link -> / and -> ../../.. resolve to the layer root (RESOLVE_IN_ROOT)");
    TAP_OK(box_intact(b), "hostile: symlinks to / and .. wrote nothing outside");

    /* a symlink to the canary by its absolute host path, and by a relative climb */
    blob = P("h5.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    slink(t, "abs", b.canary);
    file(t, "abs/evil", "evil", 0644, 0, 0, 1000000);
    tar_close(t);
    int rc = apply(blob, b.dest, NULL, NULL, &msg);
    printf("#   rc %d: %s\n", rc, msg ? msg : "(ok)");
    free(msg);
    TAP_OK(box_intact(b), "hostile: a symlink to the host path of a dir outside");

    blob = P("h6.tar");
    t = tar_open(blob, NULL);
    slink(t, "rel", "../canary");
    file(t, "rel/evil", "evil", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    rc = apply(blob, b.dest, NULL, NULL, &msg);
    printf("#   rc %d: %s\n", rc, msg ? msg : "(ok)");
    free(msg);
    TAP_OK(box_intact(b), "hostile: a symlink to ../canary");

    /* a file, directory, node, symlink entry over a symlink pointing outside */
    b = new_box();
    blob = P("h7.tar");
    t = tar_open(blob, NULL);
    slink(t, "s1", b.target);
    file(t, "s1", "pwned", 0666, 0, 0, 1000000);
    slink(t, "s2", b.canary);
    dir(t, "s2/", 0777, 0, 0, 1000000);
    file(t, "s2/f", "in", 0644, 0, 0, 1000000);
    slink(t, "s3", b.target);
    node(t, "s3", AE_IFCHR, 0666, 1, 3);
    slink(t, "s4", b.target);
    slink(t, "s4", "elsewhere");
    slink(t, "s5", "../canary/target");
    file(t, "s5", "pwned", 0666, 0, 0, 1000000);
    tar_close(t);
    TAP_OK(apply(blob, b.dest, NULL, NULL, NULL) == 0, "hostile: entries over outward symlinks apply");
    struct stat st;
    TAP_OK(lstat(in_dest(b, "s1"), &st) == 0 && S_ISREG(st.st_mode) &&
               content_is(in_dest(b, "s1"), "pwned") && lstat(in_dest(b, "s5"), &st) == 0 &&
               S_ISREG(st.st_mode),
           "hostile: a file replaces the symlink, never written through");
    TAP_OK(lstat(in_dest(b, "s2"), &st) == 0 && S_ISDIR(st.st_mode) &&
               content_is(in_dest(b, "s2/f"), "in"),
           "hostile: a directory replaces the symlink");
    TAP_OK(lstat(in_dest(b, "s3"), &st) == 0 && S_ISCHR(st.st_mode), "hostile: a node replaces it");
    TAP_OK(box_intact(b), "hostile: nothing written, chmoded or chowned through the symlinks");

    /* hardlinks */
    blob = P("h8.tar");
    t = tar_open(blob, NULL);
    file(t, "ok", "ok", 0644, 0, 0, 1000000);
    hlink(t, "passwd", "../../etc/passwd");
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 &&
               has(msg, "layer entry 'passwd': hardlink target '../../etc/passwd' escapes"),
           "hostile: a hardlink to ../../etc/passwd fails, named");
    free(msg);
    TAP_OK(box_intact(b), "hostile: the outward hardlink made nothing");

    blob = P("h9.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    hlink(t, "target", b.target); /* the host path: an in-root name that does not exist */
    tar_close(t);
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "hardlink target"),
           "hostile: a hardlink to an absolute host path is looked up in the root (missing)");
    free(msg);
    TAP_OK(box_intact(b), "hostile: ... and links nothing outside");

    blob = P("h10.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    slink(t, "root", "/");
    dir(t, "etc/", 0755, 0, 0, 1000000);
    file(t, "etc/passwd", "layer's own", 0644, 0, 0, 1000000);
    hlink(t, "pw", "root/etc/passwd"); /* through an in-root symlink: inside */
    slink(t, "out", b.target);
    hlink(t, "h", "out");  /* a hardlink to a symlink pointing outside */
    tar_close(t);
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) == 0, "hostile: hardlinks through/to symlinks apply");
    if (msg)
        printf("#   %s\n", msg);
    free(msg);
    struct stat s1, s2;
    TAP_OK(stat(in_dest(b, "pw"), &s1) == 0 && stat(in_dest(b, "etc/passwd"), &s2) == 0 &&
               s1.st_ino == s2.st_ino,
           "hostile: a hardlink target through an in-root symlink stays inside");
    TAP_OK(lstat(in_dest(b, "h"), &s1) == 0 && S_ISLNK(s1.st_mode) &&
               lstat(in_dest(b, "out"), &s2) == 0 && s1.st_ino == s2.st_ino,
           "hostile: a hardlink to a symlink links the symlink itself");
    TAP_OK(box_intact(b), "hostile: no write access outside through it");

    blob = P("h11.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    slink(t, "out", b.target);
    hlink(t, "h", "out");
    file(t, "h", "pwned", 0666, 0, 0, 1000000);
    hlink(t, "h2", "out");
    node(t, "h2", AE_IFIFO, 0666, 0, 0);
    tar_close(t);
    TAP_OK(apply(blob, b.dest, NULL, NULL, NULL) == 0 && content_is(in_dest(b, "h"), "pwned"),
           "hostile: a file over a hardlinked symlink replaces it");
    TAP_OK(box_intact(b), "hostile: ... and does not write through it");

    blob = P("h12.tar");
    t = tar_open(blob, NULL);
    dir(t, "d/", 0755, 0, 0, 1000000);
    hlink(t, "dl", "d");
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "is a directory"),
           "hostile: a hardlink to a directory fails");
    free(msg);

    /* a whiteout cannot reach outside either */
    blob = P("h13.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    slink(t, "c", b.canary);
    file(t, "c/.wh.target", "", 0644, 0, 0, 1000000);
    tar_close(t);
    rc = apply(blob, b.dest, NULL, NULL, &msg);
    printf("#   rc %d: %s\n", rc, msg ? msg : "(ok)");
    free(msg);
    TAP_OK(box_intact(b), "hostile: a whiteout through an outward symlink whites out nothing");
    blob = P("h13b.tar");
    t = tar_open(blob, NULL);
    b = new_box();
    slink(t, "c", "/");
    file(t, "c/.wh..wh..opq", "", 0644, 0, 0, 1000000);
    file(t, "c/.wh.canary", "", 0644, 0, 0, 1000000);
    file(t, "../.wh.canary", "", 0644, 0, 0, 1000000);
    tar_close(t);
    rc = apply(blob, b.dest, NULL, NULL, &msg);
    TAP_OK(rc < 0 && has(msg, "'../.wh.canary': path escapes") && is_whiteout(in_dest(b, "canary")),
           "hostile: whiteouts stay inside");
    free(msg);
    TAP_OK(box_intact(b) && !is_opaque(b.canary) && !is_opaque(b.dir),
           "hostile: the canary is not whited out or made opaque");

    blob = P("h14.tar");
    t = tar_open(blob, NULL);
    file(t, ".wh...", "", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "invalid whiteout"),
           "hostile: .wh... is refused");
    free(msg);

    blob = P("h15.tar");
    t = tar_open(blob, NULL);
    file(t, ".", "", 0644, 0, 0, 1000000);
    tar_close(t);
    b = new_box();
    TAP_OK(apply(blob, b.dest, NULL, NULL, &msg) < 0 && has(msg, "image root"),
           "hostile: a file entry naming the root is refused");
    free(msg);
    TAP_OK(box_intact(b), "hostile: the root stays");
}

/* ---- time a big layer ---- */

/* A tar that stops right after its last file's data (no padding, no end blocks:
 * Debian's umoci writes such layers) applies; one that stops inside that data, as a
 * cut-off download or a damaged file would, fails instead of having zeros stand in
 * for the bytes it lacks. */
static void unterminated(void)
{
    char *full = P("unterm-full.tar");
    tw_t t = tar_open(full, NULL);
    file(t, "a", "AAAA", 0644, 0, 0, 1000000);
    char last[3001];
    memset(last, 'L', 3000);
    last[3000] = 0;
    file(t, "last", last, 0644, 0, 0, 1000000);
    tar_close(t);
    size_t len;
    char *b = readall(full, &len);
    char *at = memmem(b, len, last, 3000);
    TAP_OK(at != NULL, "unterminated: the last file's data is in the tar");
    size_t end = at ? (size_t)(at - b) + 3000 : 0;
    char *cut = P("unterm-cut.tar"), *short1 = P("unterm-short1.tar"),
         *short700 = P("unterm-short700.tar");
    writeall(cut, b, end);
    writeall(short1, b, end - 1);
    writeall(short700, b, end - 700);
    free(b);
    char *msg = NULL, *d = newdir("unterm");
    TAP_OK(apply(cut, d, NULL, NULL, &msg) == 0 && content_is(S("%s/last", d), last),
           "a tar that ends right after its last file's data applies whole");
    free(msg);
    TAP_OK(apply(short1, newdir("unterm"), NULL, NULL, &msg) < 0 && has(msg, "truncated"),
           "one that lacks the last byte of that data fails as truncated");
    free(msg);
    TAP_OK(apply(short700, newdir("unterm"), NULL, NULL, &msg) < 0 && has(msg, "truncated") &&
               has(msg, "last"),
           "one that lacks 700 bytes of it fails too, naming the file");
    free(msg);

    /* a sparse file (pax): 1000 bytes of data, then a hole to 8192. Whole, it applies
     * with its hole; cut inside its data, it fails (before, the check of the padding
     * after the data counted with the file's size, not the bytes stored, and let up
     * to 511 missing bytes through as zeros) */
    char *sp = P("unterm-sparse.tar");
    t = tar_open(sp, NULL);
    struct archive_entry *e = ent("sparse", AE_IFREG, 0644, 0, 0, 1000000);
    archive_entry_sparse_add_entry(e, 0, 1000);
    char *logical = hero_xcalloc(1, 8193);
    memset(logical, 'S', 1000);
    put(t, e, logical, 8192);
    tar_close(t);
    b = readall(sp, &len);
    at = memmem(b, len, logical, 1000);
    TAP_OK(at != NULL && !memmem(at + 1000, len - (size_t)(at - b) - 1000, logical, 1000),
           "sparse: its data is stored once");
    end = at ? (size_t)(at - b) + 1000 : 0;
    char *spshort = P("unterm-spshort.tar");
    writeall(spshort, b, end - 100);
    free(b);
    d = newdir("unterm");
    size_t got_len = 0;
    char *got = NULL;
    TAP_OK(apply(sp, d, NULL, NULL, NULL) == 0 &&
               (got = readall(S("%s/sparse", d), &got_len)) && got_len == 8192 &&
               !memcmp(got, logical, 8192),
           "a sparse file applies, with its hole");
    free(got);
    TAP_OK(apply(spshort, newdir("unterm"), NULL, NULL, &msg) < 0 && has(msg, "truncated"),
           "one cut 100 bytes before the end of its data fails as truncated");
    free(msg);
    free(logical);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void bench(void)
{
    const char *mbs = getenv("HERO_LAYER_BENCH_MB");
    long mb = mbs ? atol(mbs) : 100;
    if (mb <= 0) {
        TAP_SKIP("layer timing (HERO_LAYER_BENCH_MB=0)");
        return;
    }
    /* text-like content (compresses about 3:1), a mix of file sizes like a distro layer */
    static const char *words[] = {"the", "lib", "usr", "share", "config", "return", "static",
                                  "int", "char", "void", "error", "value", "python3", "if",
                                  "else", "for", "while", "struct", "const", "data", "\n",
                                  "{", "}", ";", "0x7f", "1024", "path", "name"};
    size_t pool_len = 4 << 20;
    char *pool = hero_xmalloc(pool_len);
    for (size_t i = 0; i < pool_len;) {
        const char *w = words[xr() % (sizeof words / sizeof *words)];
        size_t l = strlen(w);
        if (i + l + 1 >= pool_len)
            break;
        memcpy(pool + i, w, l);
        i += l;
        pool[i++] = ' ';
    }
    for (size_t i = 0; i < pool_len; i += 97) /* some entropy */
        pool[i] = (char)(xr() & 0xff);
    char *tar = P("big.tar");
    tw_t t = tar_open(tar, NULL);
    uint64_t total = 0, target = (uint64_t)mb << 20;
    int files = 0, dirs = 0;
    while (total < target) {
        char name[128];
        if (files % 50 == 0) {
            snprintf(name, sizeof name, "usr/lib/pkg%04d/", dirs++);
            dir(t, name, 0755, 0, 0, 1600000000);
        }
        uint64_t r = xr() % 100;
        size_t sz = r < 60 ? (size_t)(xr() % 4096)
                    : r < 95 ? (size_t)(xr() % 65536)
                             : (size_t)(xr() % (2 << 20));
        snprintf(name, sizeof name, "usr/lib/pkg%04d/file%06d", dirs - 1, files++);
        struct archive_entry *e = ent(name, AE_IFREG, 0644, 0, 0, 1600000000);
        put(t, e, pool + xr() % (pool_len - sz), sz);
        total += sz;
    }
    tar_close(t);
    free(pool);
    char *gz = P("big.tar.gz"), *zs = P("big.tar.zst");
    gzip_file(tar, gz, 1, 6);
    zstd_file(tar, zs);
    struct stat st, sg, sz;
    stat(tar, &st);
    stat(gz, &sg);
    stat(zs, &sz);
    const char *blobs[] = {gz, zs, tar};
    double ms[3];
    bool ok = true;
    char first[HERO_LAYER_DIGEST_LEN] = "";
    for (int i = 0; i < 3; i++) {
        char *d = newdir("big");
        sync();
        hero_layer_result_t r;
        double t0 = now();
        ok = ok && apply(blobs[i], d, NULL, &r, NULL) == 0;
        ms[i] = (now() - t0) * 1000;
        if (!*first)
            strcpy(first, r.diff_id);
        ok = ok && !strcmp(first, r.diff_id);
        nftw(d, rm_cb, 64, FTW_DEPTH | FTW_PHYS);
    }
    TAP_OK(ok, "a big layer applies (gzip, zstd, plain: one diff_id)");
    printf("# %ld MB layer, %d files in %d dirs (gzip %.1f MB, zstd %.1f MB): "
           "tar+gzip %.0f ms (%.0f MB/s), tar+zstd %.0f ms, tar %.0f ms\n",
           mb, files, dirs, (double)sg.st_size / 1048576, (double)sz.st_size / 1048576, ms[0],
           (double)st.st_size / 1048576 / (ms[0] / 1000), ms[1], ms[2]);
    if (getenv("HERO_LAYER_BENCH_KEEP"))
        printf("# kept %s %s %s\n", tar, gz, zs);
}

int main(void)
{
    if (geteuid() != 0) {
        TAP_SKIP("layer tests: not root (owners, device nodes, trusted.* xattrs, overlay)");
        return tap_done();
    }
    umask(022);
    snprintf(base, sizeof base, "%s/hero-test-layer.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    basics();
    replacing();
    replacing_deep();
    whiteouts();
    lookups();
    compressions();
    hostile();
    streaming();
    unterminated();
    /* the same with the resolver used where the kernel has no openat2 */
    printf("# again with the portable resolver (no openat2)\n");
    hero_layer_use_openat2(0);
    basics();
    replacing();
    replacing_deep();
    hostile();
    hero_layer_use_openat2(1);
    bench();
    if (!getenv("HERO_LAYER_BENCH_KEEP"))
        nftw(base, rm_cb, 64, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < nkept; i++)
        free(kept[i]);
    free(kept);
    return tap_done();
}
