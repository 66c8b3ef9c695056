/* The image module, first part: resolve an image name to a root filesystem and its
 * config. Two sources exist in this build: the `embedded` image, built from the
 * host's static busybox on first use and kept in the store, and images already in
 * the store. Registry pulls come with the images module.
 *
 * The embedded image is identified by a digest of its inputs (the busybox bytes and
 * a format version), so a busybox upgrade, or a change to the layout below, rebuilds
 * it on the next resolve. File work is synchronous (a few hundred small entries and
 * one 2 MB copy); the only async step is asking busybox for its applet list. */
#include "actions/heropods/image.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "actions/actions.h"
#include "actions/heropods/pull.h"
#include "runtime/fs.h"
#include "runtime/proc.h"
#include "runtime/sha256.h"

/* Part of the embedded image's digest: bump it whenever the layout or any file this
 * module writes changes, so existing stores rebuild their embedded image. */
#define EMBEDDED_FORMAT "hero-embedded-image/2"
#define EMBEDDED_NAME "embedded"
/* A busybox is about 2 MB; anything far bigger is not what we think it is, and we
 * hold it in memory while hashing and copying. */
#define BUSYBOX_MAX_BYTES (64u * 1024 * 1024)
#define LIST_TIMEOUT_MS 30000

void hero_image_free(hero_image_t *img)
{
    if (!img)
        return;
    free(img->name);
    free(img->rootfs);
    json_decref(img->config);
    free(img->digest);
    free(img);
}

int hero_image_pinned(const char *ctr, const char *name, const char *rootfs, const char *config,
                      hero_image_t **out, hero_error_t *err)
{
    *out = NULL;
    if (!name || !rootfs || !config || !strcmp(name, EMBEDDED_NAME))
        return 0; /* (the embedded image is made again in place: its name says it all) */
    char **dirs = hero_image_layer_dirs(rootfs);
    int rc = 0;
    for (char **d = dirs; *d && rc == 0; d++)
        if (access(*d, F_OK) < 0)
            rc = hero_error_set(err, errno,
                                "the image container '%s' was made from is gone (%s): "
                                "container_new reset:true makes it again on image '%s'",
                                ctr, *d, name);
    hero_strv_free(dirs);
    if (rc < 0)
        return -1;
    json_t *cfg = json_loads(config, 0, NULL);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return hero_error_set(err, EBADMSG,
                              "the record of container '%s' holds an unreadable image config",
                              ctr);
    }
    hero_image_t *img = hero_xcalloc(1, sizeof(*img));
    img->name = hero_xstrdup(name);
    img->rootfs = hero_xstrdup(rootfs);
    img->config = cfg;
    *out = img;
    return 0;
}

json_t *hero_image_config_of(hero_store_t *st, const char *name, const char *pinned)
{
    if (pinned)
        return json_loads(pinned, 0, NULL);
    hero_image_rec_t r = {0};
    json_t *cfg = NULL;
    if (st && name && hero_store_image_get(st, name, &r, NULL) == 0) {
        json_t *doc = json_loads(r.config ? r.config : "{}", 0, NULL);
        cfg = json_incref(json_object_get(doc, "config"));
        json_decref(doc);
    }
    hero_image_rec_free(&r);
    return cfg;
}

const char *hero_image_busybox_path(void)
{
    const char *p = getenv("HERO_BUSYBOX");
    return p && *p ? p : "/bin/busybox";
}

/* ---- small file helpers (paths relative to a directory fd, never following a
 * symlink we did not make) ---- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates `rel` under dfd (it must not exist yet) with exactly `mode` (umask does not
 * apply: the image must look the same whoever builds it), and syncs it, because the
 * rename that publishes the image must not outlive its contents in a crash. */
static int write_file_at(int dfd, const char *root, const char *rel, const void *buf,
                         size_t len, mode_t mode, hero_error_t *err)
{
    int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot create %s/%s", root, rel);
    if (write_all(fd, buf, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return hero_error_set(err, e, "cannot write %s/%s", root, rel);
    }
    if (close(fd) < 0)
        return hero_error_set(err, errno, "cannot write %s/%s", root, rel);
    return 0;
}

static int write_text_at(int dfd, const char *root, const char *rel, const char *text,
                         hero_error_t *err)
{
    return write_file_at(dfd, root, rel, text, strlen(text), 0644, err);
}

/* mkdir -p of `rel` under dfd (root names dfd in messages; "" when rel is absolute).
 * With `strict`, an existing component must be a real directory: inside an image the
 * applet list comes from a program, and a symlink in the middle (say bin/sh/x) would
 * otherwise lead outside the tree. Host paths (the base dir) may well have symlinks. */
static int mkdirs_at(int dfd, const char *root, const char *rel, mode_t mode, bool strict,
                     hero_error_t *err)
{
    const char *sep = *root ? "/" : "";
    char *p = hero_xstrdup(rel);
    int rc = 0;
    for (char *s = p;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (*p && mkdirat(dfd, p, 0700) == 0) {
            if (fchmodat(dfd, p, mode, 0) < 0) {
                rc = hero_error_set(err, errno, "cannot set the mode of %s%s%s", root, sep, p);
                break;
            }
        } else if (*p) {
            struct stat sb;
            if (errno != EEXIST) {
                rc = hero_error_set(err, errno, "cannot create %s%s%s", root, sep, p);
                break;
            }
            if (fstatat(dfd, p, &sb, strict ? AT_SYMLINK_NOFOLLOW : 0) < 0 ||
                !S_ISDIR(sb.st_mode)) {
                rc = hero_error_set(err, 0, "cannot create %s%s%s: it exists and is not a directory",
                                    root, sep, p);
                break;
            }
        }
        *s = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}

/* Best effort: a failure leaves a directory for the next cleanup, nothing worse. */
static void remove_tree_quietly(const char *path)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_fs_rmtree(path, &e);
    hero_error_clear(&e);
}

/* The image's size as the store records it: bytes of regular files and symlinks. */
static int tree_bytes(int fd, const char *path, int64_t *total, hero_error_t *err)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return hero_error_set(err, e, "cannot read the directory %s", path);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), n, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = hero_error_set(err, errno, "cannot stat %s/%s", path, n);
        } else if (S_ISDIR(sb.st_mode)) {
            char *sub = hero_xasprintf("%s/%s", path, n);
            int sfd = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sfd < 0 ? hero_error_set(err, errno, "cannot open %s", sub)
                         : tree_bytes(sfd, sub, total, err);
            free(sub);
        } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
            *total += sb.st_size;
        }
    }
    if (rc == 0 && errno != 0)
        rc = hero_error_set(err, errno, "cannot read the directory %s", path);
    closedir(d);
    return rc;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- the busybox input ---- */

typedef struct busybox {
    char *path;
    unsigned char *bytes;
    size_t len;
    char *digest;      /* "sha256:<hex>" of bytes + EMBEDDED_FORMAT */
    char *version;     /* "1.35.0", or "unknown" */
    const char *arch;  /* OCI architecture name, from the ELF header */
} busybox_t;

static void busybox_clear(busybox_t *b)
{
    free(b->path);
    free(b->bytes);
    free(b->digest);
    free(b->version);
    memset(b, 0, sizeof(*b));
}

static int read_file(const char *path, unsigned char **out, size_t *out_len, hero_error_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return hero_error_set(err, 0,
                                  "the embedded image needs a static busybox at /bin/busybox "
                                  "(Debian package busybox-static; make deps installs it), "
                                  "or HERO_BUSYBOX");
        return hero_error_set(err, errno, "cannot open the busybox for the embedded image, %s",
                              path);
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return hero_error_set(err, e, "cannot stat %s", path);
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || (uint64_t)sb.st_size > BUSYBOX_MAX_BYTES) {
        close(fd);
        return hero_error_set(err, 0, "%s is not a busybox executable (not a regular file of a "
                                      "plausible size)", path);
    }
    size_t cap = (size_t)sb.st_size, len = 0;
    unsigned char *buf = hero_xmalloc(cap);
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return hero_error_set(err, e, "cannot read %s", path);
        }
        if (n == 0)
            break; /* it shrank while we read it: hash what we have, it is what we copy */
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return 0;
}

static const char *oci_arch(unsigned machine, bool is64, bool little)
{
    switch (machine) {
    case EM_X86_64: return "amd64";
    case EM_386: return "386";
    case EM_AARCH64: return "arm64";
    case EM_ARM: return "arm";
    case EM_PPC64: return little ? "ppc64le" : "ppc64";
    case EM_S390: return "s390x";
    case EM_RISCV: return is64 ? "riscv64" : "riscv32";
    case EM_MIPS: return is64 ? (little ? "mips64le" : "mips64") : (little ? "mipsle" : "mips");
    case EM_LOONGARCH: return "loong64";
    default: return NULL;
    }
}

/* A dynamically linked busybox (Debian's plain `busybox` package) would build a root
 * in which nothing runs, because the image has no libc; say so now rather than let
 * every container fail with a bare "No such file or directory". Static means: an ELF
 * executable for this host's byte order with no PT_INTERP (static-pie qualifies). */
static int check_static_elf(busybox_t *b, hero_error_t *err)
{
    const unsigned char *p = b->bytes;
    size_t len = b->len;
    const uint16_t one = 1;
    const bool host_little = *(const unsigned char *)&one == 1;
    if (len < EI_NIDENT || memcmp(p, ELFMAG, SELFMAG) != 0)
        return hero_error_set(err, 0, "%s is not an ELF executable; the embedded image needs a "
                                      "static busybox (Debian package busybox-static)", b->path);
    const bool is64 = p[EI_CLASS] == ELFCLASS64;
    const bool little = p[EI_DATA] == ELFDATA2LSB;
    if ((!is64 && p[EI_CLASS] != ELFCLASS32) || little != host_little)
        return hero_error_set(err, 0, "%s is not an executable for this machine", b->path);

    uint64_t phoff, phnum, phentsize, machine;
    if (is64) {
        Elf64_Ehdr eh;
        if (len < sizeof(eh))
            goto truncated;
        memcpy(&eh, p, sizeof(eh));
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize, machine = eh.e_machine;
        if (phentsize < sizeof(Elf64_Phdr))
            goto truncated;
    } else {
        Elf32_Ehdr eh;
        if (len < sizeof(eh))
            goto truncated;
        memcpy(&eh, p, sizeof(eh));
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize, machine = eh.e_machine;
        if (phentsize < sizeof(Elf32_Phdr))
            goto truncated;
    }
    if (phoff > len || phnum * phentsize > len - phoff)
        goto truncated;
    for (uint64_t i = 0; i < phnum; i++) {
        uint32_t type;
        memcpy(&type, p + phoff + i * phentsize, sizeof(type)); /* p_type comes first in both */
        if (type == PT_INTERP)
            return hero_error_set(err, 0,
                                  "%s is dynamically linked; the embedded image needs a static "
                                  "busybox (Debian package busybox-static), or HERO_BUSYBOX",
                                  b->path);
    }
    b->arch = oci_arch((unsigned)machine, is64, little);
    if (!b->arch)
        return hero_error_set(err, 0, "%s: unknown ELF machine %u", b->path, (unsigned)machine);
    return 0;
truncated:
    return hero_error_set(err, 0, "%s is not a valid ELF executable (truncated headers)", b->path);
}

static char *digest_of(const unsigned char *bytes, size_t len)
{
    hero_sha256_t md;
    hero_sha256_init(&md);
    hero_sha256_update(&md, bytes, len);
    hero_sha256_update(&md, EMBEDDED_FORMAT, strlen(EMBEDDED_FORMAT));
    char d[HERO_SHA256_HEX_LEN];
    hero_sha256_final_hex(&md, d);
    return hero_xstrdup(d);
}

/* The version busybox prints in its banner ("BusyBox v1.35.0 (Debian ...)"), read from
 * the binary itself so that os-release does not cost another process. */
static char *version_of(const unsigned char *bytes, size_t len)
{
    static const char tag[] = "BusyBox v";
    const unsigned char *p = memmem(bytes, len, tag, sizeof(tag) - 1);
    if (p) {
        const unsigned char *v = p + sizeof(tag) - 1, *end = bytes + len, *q = v;
        while (q < end && q - v < 32 && ((*q >= '0' && *q <= '9') || *q == '.'))
            q++;
        if (q > v && v[0] >= '0' && v[0] <= '9')
            return hero_xstrndup((const char *)v, (size_t)(q - v));
    }
    return hero_xstrdup("unknown");
}

static int busybox_load(busybox_t *b, hero_error_t *err)
{
    memset(b, 0, sizeof(*b));
    b->path = hero_xstrdup(hero_image_busybox_path());
    if (read_file(b->path, &b->bytes, &b->len, err) < 0 || check_static_elf(b, err) < 0) {
        busybox_clear(b);
        return -1;
    }
    b->digest = digest_of(b->bytes, b->len);
    b->version = version_of(b->bytes, b->len);
    return 0;
}

/* ---- images from store records ---- */

/* The store keeps the whole OCI image config; a container needs its "config" member
 * (which the OCI spec makes optional: absent means an empty one). */
static hero_image_t *image_from_record(const hero_image_rec_t *r, hero_error_t *err)
{
    struct stat sb;
    if (!r->rootfs || r->rootfs[0] != '/') {
        hero_error_set(err, 0, "image '%s' in the store has no absolute root filesystem path",
                       r->name);
        return NULL;
    }
    /* a root is one directory, or a stack of layer directories (top first) */
    char **dirs = hero_image_layer_dirs(r->rootfs);
    for (char **d = dirs; *d; d++) {
        if (stat(*d, &sb) < 0) {
            hero_error_set(err, errno,
                           "image '%s' is in the store but its root filesystem %s is gone "
                           "(image_pull with reset:true fetches it again)",
                           r->name, *d);
            hero_strv_free(dirs);
            return NULL;
        }
        if (!S_ISDIR(sb.st_mode)) {
            hero_error_set(err, 0, "image '%s': its root filesystem %s is not a directory",
                           r->name, *d);
            hero_strv_free(dirs);
            return NULL;
        }
    }
    hero_strv_free(dirs);
    json_error_t je;
    json_t *doc = json_loads(r->config ? r->config : "{}", 0, &je);
    if (!json_is_object(doc)) {
        if (doc)
            hero_error_set(err, 0, "image '%s' in the store: its config is not a JSON object",
                           r->name);
        else
            hero_error_set(err, 0, "image '%s' in the store: its config is not valid JSON: %s",
                           r->name, je.text);
        json_decref(doc);
        return NULL;
    }
    json_t *cfg = json_object_get(doc, "config");
    if (json_is_object(cfg))
        json_incref(cfg);
    else if (cfg && !json_is_null(cfg)) {
        hero_error_set(err, 0, "image '%s' in the store: its config's \"config\" is not an object",
                       r->name);
        json_decref(doc);
        return NULL;
    } else
        cfg = json_object();
    json_decref(doc);

    hero_image_t *img = hero_xcalloc(1, sizeof(*img));
    img->name = hero_xstrdup(r->name);
    img->rootfs = hero_xstrdup(r->rootfs);
    img->config = cfg;
    img->digest = r->digest ? hero_xstrdup(r->digest) : NULL;
    return img;
}

static void resolve_stored(hero_store_t *st, const char *name, hero_image_cb cb, void *data)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_image_rec_t rec = {0};
    hero_image_t *img = NULL;
    int rc = hero_store_image_get(st, name, &rec, &e);
    if (rc == 1) {
        hero_error_set_plain(&e, ENOENT,
                             "image '%s' is not in the store: pull it (image_pull, or an "
                             "image reference in image:), import it (image_import), or use "
                             "image:'embedded'",
                             name);
    } else if (rc == 0) {
        img = image_from_record(&rec, &e);
    }
    hero_image_rec_free(&rec);
    if (img)
        cb(img, NULL, data);
    else
        cb(NULL, &e, data);
    hero_error_clear(&e);
}

/* ---- the embedded image ---- */

typedef struct build {
    hero_store_t *st;
    hero_image_cb cb;
    void *data;
    busybox_t bb;
    char *images;    /* <base>/images */
    char *dir;       /* <base>/images/embedded */
    char *target;    /* <base>/images/embedded/rootfs */
    char *tmp;       /* <base>/images/embedded.tmp.<pid>.XXXXXX: this build's private root */
    char *bb_copy;   /* tmp/bin/busybox, the binary we ask for its applet list */
    int tmp_fd;
} build_t;

static void build_free(build_t *b)
{
    if (b->tmp_fd >= 0)
        close(b->tmp_fd);
    busybox_clear(&b->bb);
    free(b->images);
    free(b->dir);
    free(b->target);
    free(b->tmp);
    free(b->bb_copy);
    free(b);
}

/* Ends the build either way: removes what a failed one made, frees the build, and
 * reports exactly once (the build is gone before the callback, which may free `data`
 * or start another resolve). */
static void build_end(build_t *b, hero_image_t *img, hero_error_t *e)
{
    if (b->tmp_fd >= 0) {
        close(b->tmp_fd);
        b->tmp_fd = -1;
    }
    if (!img && b->tmp)
        remove_tree_quietly(b->tmp);
    hero_image_cb cb = b->cb;
    void *data = b->data;
    build_free(b);
    if (img) {
        cb(img, NULL, data);
    } else {
        hero_error_wrap(e, "building the embedded image");
        cb(NULL, e, data);
        hero_error_clear(e);
    }
}

/* Removes build leftovers of hero processes that are gone (killed mid-build): our
 * names carry the builder's pid. A live builder's directory is never touched, nor
 * one of this process, which may have another build running. */
static void clean_leftovers(const char *images)
{
    DIR *d = opendir(images);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name, *rest;
        if (!strncmp(n, "embedded.tmp.", 13))
            rest = n + 13;
        else if (!strncmp(n, "embedded.old.", 13))
            rest = n + 13;
        else
            continue;
        long pid = hero_fs_name_pid(rest, '.');
        if (!pid || hero_fs_pid_runs(pid))
            continue;
        char *path = hero_xasprintf("%s/%s", images, n);
        remove_tree_quietly(path);
        free(path);
    }
    closedir(d);
}

static char *embedded_config_json(const char *arch)
{
    json_t *doc = json_pack(
        "{s:s, s:s, s:{s:[s], s:[s], s:s}}", "architecture", arch, "os", "linux", "config", "Env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "Cmd", "/bin/sh",
        "WorkingDir", "/");
    if (!doc) {
        fputs("hero: out of memory (json)\n", stderr);
        abort();
    }
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s) {
        fputs("hero: out of memory (json)\n", stderr);
        abort();
    }
    return s;
}

/* The directory skeleton: what a root needs before anything is mounted over it. */
static int make_layout(build_t *b, hero_error_t *err)
{
    static const struct {
        const char *rel;
        mode_t mode;
    } dirs[] = {
        {"bin", 0755},  {"sbin", 0755},     {"usr", 0755},  {"usr/bin", 0755},
        {"usr/sbin", 0755}, {"etc", 0755},  {"root", 0700}, {"tmp", 01777},
        {"var", 0755},  {"var/tmp", 01777}, {"proc", 0555}, {"sys", 0555},
        {"dev", 0755},  {"run", 0755},      {"home", 0755},
        /* where hero mounts the container's status dir: being in the image, it is not
         * made (and later removed) in every container's upper dir */
        {".hero", 0755},
    };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (mkdirat(b->tmp_fd, dirs[i].rel, 0700) < 0)
            return hero_error_set(err, errno, "cannot create %s/%s", b->tmp, dirs[i].rel);
        /* explicit, because umask would strip the sticky and world bits of tmp */
        if (fchmodat(b->tmp_fd, dirs[i].rel, dirs[i].mode, 0) < 0)
            return hero_error_set(err, errno, "cannot set the mode of %s/%s", b->tmp,
                                  dirs[i].rel);
    }
    /* the mount point of hero-init, for the same reason as .hero */
    if (write_file_at(b->tmp_fd, b->tmp, ".hero-init", "", 0, 0755, err) < 0)
        return -1;
    return write_file_at(b->tmp_fd, b->tmp, "bin/busybox", b->bb.bytes, b->bb.len, 0755, err);
}

static int write_etc(build_t *b, hero_error_t *err)
{
    char *osr = hero_xasprintf("NAME=\"hero embedded\"\n"
                               "PRETTY_NAME=\"hero embedded (busybox %s)\"\n"
                               "ID=hero-embedded\n"
                               "VERSION_ID=\"%s\"\n"
                               "BUILD_ID=%s\n",
                               b->bb.version, b->bb.version, b->bb.digest);
    int rc = 0;
    if (write_text_at(b->tmp_fd, b->tmp, "etc/passwd",
                      "root:x:0:0:root:/root:/bin/sh\n"
                      "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                      err) < 0 ||
        write_text_at(b->tmp_fd, b->tmp, "etc/group", "root:x:0:\nnogroup:x:65534:\n", err) < 0 ||
        /* The container gets its own hostname, hosts and resolv.conf mounted over these;
         * they exist so that the mount points exist and a bare chroot still works. */
        write_text_at(b->tmp_fd, b->tmp, "etc/hostname", "embedded\n", err) < 0 ||
        write_text_at(b->tmp_fd, b->tmp, "etc/hosts",
                      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                      err) < 0 ||
        write_text_at(b->tmp_fd, b->tmp, "etc/resolv.conf", "", err) < 0 ||
        write_text_at(b->tmp_fd, b->tmp, "etc/os-release", osr, err) < 0)
        rc = -1;
    free(osr);
    return rc;
}

/* One line of `busybox --list-full` ("usr/bin/wget") becomes a symlink to /bin/busybox.
 * Lines are checked to be plain relative paths, so the list cannot place a link
 * outside the tree. */
static int add_applet(build_t *b, const char *line, hero_error_t *err)
{
    if (!*line || !strcmp(line, "bin/busybox"))
        return 0;
    if (line[0] == '/')
        goto bad;
    for (const char *c = line; *c;) {
        const char *s = strchr(c, '/');
        size_t n = s ? (size_t)(s - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            goto bad;
        if (!s)
            break;
        c = s + 1;
        if (!*c)
            goto bad;
    }
    const char *slash = strrchr(line, '/');
    if (slash) {
        char *parent = hero_xstrndup(line, (size_t)(slash - line));
        int rc = mkdirs_at(b->tmp_fd, b->tmp, parent, 0755, true, err);
        free(parent);
        if (rc < 0)
            return -1;
    }
    /* EEXIST: a list naming one applet twice is harmless */
    if (symlinkat("/bin/busybox", b->tmp_fd, line) < 0 && errno != EEXIST)
        return hero_error_set(err, errno, "cannot create the applet link %s/%s", b->tmp, line);
    return 0;
bad:
    return hero_error_set(err, 0, "'%s --list-full' printed an unusable path: '%s'", b->bb.path,
                          line);
}

static int add_applets(build_t *b, const hero_proc_result_t *r, hero_error_t *err)
{
    if (r->term_signal || r->exit_status != 0 || r->out_truncated) {
        const char *why = r->timed_out ? "timed out" : r->out_truncated ? "printed too much" : "failed";
        hero_error_set(err, 0, "'%s --list-full' %s (exit %d, signal %d)%s%.*s", b->bb.path, why,
                       r->exit_status, r->term_signal, r->err_len ? ": " : "",
                       (int)(r->err_len > 400 ? 400 : r->err_len), r->err);
        return -1;
    }
    char *list = hero_xstrndup(r->out, r->out_len);
    int rc = 0, count = 0;
    for (char *line = list, *next; rc == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        rc = add_applet(b, line, err);
        count += n > 0;
    }
    free(list);
    if (rc == 0 && count == 0)
        rc = hero_error_set(err, 0, "'%s --list-full' listed no applets", b->bb.path);
    return rc;
}

/* Reads BUILD_ID from a root's etc/os-release: which inputs that root was built from.
 * It decides, when the final rename finds a root already in place, whether another
 * hero process just published the same image (use it) or it is a stale one. */
static char *build_id_of(const char *root)
{
    char *path = hero_xasprintf("%s/etc/os-release", root);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return NULL;
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (!strncmp(line, "BUILD_ID=", 9)) {
            char *v = line + 9;
            size_t vl = strlen(v);
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"')
                return hero_xstrndup(v + 1, vl - 2);
            return hero_xstrdup(v);
        }
        line = next;
    }
    return NULL;
}

/* Publishes tmp as <dir>/rootfs. A rename is atomic, so a root is either absent, a
 * complete old one, or a complete new one, whatever runs at the same time. When the
 * target is there: if it carries our digest another process won the race, and we use
 * its root; otherwise it is stale, and we move it aside (atomically, so nobody sees a
 * half-removed root), remove it, and try again. */
static int publish(build_t *b, hero_error_t *err)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        if (rename(b->tmp, b->target) == 0) {
            int dfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd); /* the rename itself must survive a crash */
                close(dfd);
            }
            return 0;
        }
        if (errno != EEXIST && errno != ENOTEMPTY)
            return hero_error_set(err, errno, "cannot rename %s to %s", b->tmp, b->target);
        char *id = build_id_of(b->target);
        bool same = id && !strcmp(id, b->bb.digest);
        free(id);
        if (same) {
            remove_tree_quietly(b->tmp);
            return 0;
        }
        char *old = hero_xasprintf("%s/embedded.old.%ld.XXXXXX", b->images, (long)getpid());
        if (!mkdtemp(old)) {
            int e = errno;
            free(old);
            return hero_error_set(err, e, "cannot create a directory in %s", b->images);
        }
        /* renaming a directory over an empty one replaces it */
        if (rename(b->target, old) < 0) {
            int e = errno;
            rmdir(old);
            free(old);
            if (e == ENOENT)
                continue; /* someone else moved it away first */
            return hero_error_set(err, e, "cannot move the old embedded image %s aside",
                                  b->target);
        }
        /* Containers of other hero processes may still have the old root as their
         * overlay's lower dir; the kernel keeps what they opened, and a rebuild only
         * happens when busybox itself changed under them. */
        remove_tree_quietly(old);
        free(old);
    }
    return hero_error_set(err, 0, "cannot publish %s: it keeps being replaced", b->target);
}

/* The rest of the build, once the applet list is in: links, etc, publish, record. */
static hero_image_t *build_finish(build_t *b, const hero_proc_result_t *r, hero_error_t *err)
{
    if (add_applets(b, r, err) < 0 || write_etc(b, err) < 0)
        return NULL;
    int64_t size = 0;
    int fd = openat(b->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        hero_error_set(err, errno, "cannot open %s", b->tmp);
        return NULL;
    }
    if (tree_bytes(fd, b->tmp, &size, err) < 0)
        return NULL;
    /* mkdtemp made it 0700, which kept it private while it was incomplete; a root
     * filesystem is 0755 */
    if (fchmod(b->tmp_fd, 0755) < 0) {
        hero_error_set(err, errno, "cannot set the mode of %s", b->tmp);
        return NULL;
    }
    close(b->tmp_fd);
    b->tmp_fd = -1;
    if (publish(b, err) < 0)
        return NULL;
    free(b->tmp);
    b->tmp = NULL; /* published, or removed in favour of a twin: nothing left to clean */

    char *config = embedded_config_json(b->bb.arch);
    char name[] = EMBEDDED_NAME;
    hero_image_rec_t rec = {
        .name = name,
        .ref = name,
        .digest = b->bb.digest,
        .rootfs = b->target,
        .config = config,
        .size = size,
    };
    hero_image_t *img = NULL;
    if (hero_store_image_put(b->st, &rec, err) == 0)
        img = image_from_record(&rec, err);
    free(config);
    return img;
}

static void on_list(hero_proc_t *p, const hero_proc_result_t *r, void *data)
{
    (void)p;
    build_t *b = data;
    hero_error_t e = HERO_ERROR_INIT;
    hero_image_t *img = build_finish(b, r, &e);
    build_end(b, img, &e);
}

/* The synchronous first half: directories, the busybox copy, then the one async
 * step (the applet list), whose callback does the rest. */
static int build_begin(uv_loop_t *loop, build_t *b, hero_error_t *err)
{
    /* images/ and images/embedded/ are traversed by container processes (the rootfs is
     * an overlay's lower dir), hence 0755 */
    if (mkdirs_at(AT_FDCWD, "", b->dir, 0755, false, err) < 0)
        return -1;
    clean_leftovers(b->images);

    /* A per-build name: two hero processes, or two containers of one playbook, may be
     * building at once; the pid in it lets a later run clean up after a killed one. */
    char *tmp = hero_xasprintf("%s/embedded.tmp.%ld.XXXXXX", b->images, (long)getpid());
    if (!mkdtemp(tmp)) {
        int e = errno;
        free(tmp);
        return hero_error_set(err, e, "cannot create a directory in %s", b->images);
    }
    b->tmp = tmp;
    b->tmp_fd = open(b->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (b->tmp_fd < 0)
        return hero_error_set(err, errno, "cannot open %s", b->tmp);
    if (make_layout(b, err) < 0)
        return -1;

    /* Ask the copy, not the source: the list then matches the bytes in the image, and
     * argv[0] ends in "busybox" whatever HERO_BUSYBOX is called (busybox picks the
     * applet from argv[0]'s name). */
    b->bb_copy = hero_xasprintf("%s/bin/busybox", b->tmp);
    const char *argv[] = {b->bb_copy, "--list-full", NULL};
    hero_proc_opts_t o = {
        .argv = argv,
        .capture_cap = 256 * 1024,
        .timeout_ms = LIST_TIMEOUT_MS,
    };
    hero_proc_t *p;
    return hero_proc_spawn(loop, &o, on_list, b, &p, err);
}

static void build_start(uv_loop_t *loop, hero_store_t *st, busybox_t *bb, hero_image_cb cb,
                        void *data)
{
    build_t *b = hero_xcalloc(1, sizeof(*b));
    b->st = st;
    b->cb = cb;
    b->data = data;
    b->bb = *bb; /* takes it over */
    memset(bb, 0, sizeof(*bb));
    b->tmp_fd = -1;
    const char *base = hero_store_base_dir(st);
    b->images = hero_xasprintf("%s/images", base);
    b->dir = hero_xasprintf("%s/images/%s", base, EMBEDDED_NAME);
    b->target = hero_xasprintf("%s/rootfs", b->dir);
    hero_error_t e = HERO_ERROR_INIT;
    if (build_begin(loop, b, &e) < 0)
        build_end(b, NULL, &e);
}

/* The digest of the busybox this process hashed last, by the file's identity:
 * reading and hashing 2 MB for every container would cost more than the rest of a
 * container's start. */
static struct {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char *digest;
} seen;

static bool seen_matches(const char *path, const struct stat *sb)
{
    return seen.path && !strcmp(seen.path, path) && seen.dev == sb->st_dev &&
           seen.ino == sb->st_ino && seen.size == sb->st_size &&
           seen.mtime.tv_sec == sb->st_mtim.tv_sec && seen.mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

static void seen_remember(const char *path, const struct stat *sb, const char *digest)
{
    free(seen.path);
    free(seen.digest);
    seen.path = hero_xstrdup(path);
    seen.dev = sb->st_dev;
    seen.ino = sb->st_ino;
    seen.size = sb->st_size;
    seen.mtime = sb->st_mtim;
    seen.digest = hero_xstrdup(digest);
}

/* The embedded image this process last found in a store (by its base dir), so that
 * every container does not read its record and parse its config again: valid while
 * the busybox is the one `seen` hashed and its root is still there. */
static struct {
    char *base, *digest, *rootfs;
    json_t *config;
} known;

static void known_remember(hero_store_t *st, const hero_image_t *img)
{
    free(known.base);
    free(known.digest);
    free(known.rootfs);
    json_decref(known.config);
    known.base = hero_xstrdup(hero_store_base_dir(st));
    known.digest = hero_xstrdup(img->digest);
    known.rootfs = hero_xstrdup(img->rootfs);
    known.config = json_deep_copy(img->config);
}

/* The stored embedded image when it was built from this very busybox file. */
static hero_image_t *embedded_cached(hero_store_t *st, const char *path, const struct stat *sb)
{
    if (!seen_matches(path, sb))
        return NULL;
    if (known.base && known.config && !strcmp(known.base, hero_store_base_dir(st)) &&
        !strcmp(known.digest, seen.digest) && is_dir(known.rootfs)) {
        hero_image_t *img = hero_xcalloc(1, sizeof(*img));
        img->name = hero_xstrdup(EMBEDDED_NAME);
        img->rootfs = hero_xstrdup(known.rootfs);
        img->config = json_deep_copy(known.config);
        img->digest = hero_xstrdup(known.digest);
        if (img->config)
            return img;
        hero_image_free(img);
    }
    hero_image_rec_t rec = {0};
    hero_error_t e = HERO_ERROR_INIT;
    hero_image_t *img = NULL;
    if (hero_store_image_get(st, EMBEDDED_NAME, &rec, &e) == 0 && rec.digest &&
        !strcmp(rec.digest, seen.digest) && rec.rootfs && is_dir(rec.rootfs))
        img = image_from_record(&rec, &e);
    hero_error_clear(&e);
    hero_image_rec_free(&rec);
    if (img && img->digest)
        known_remember(st, img);
    return img;
}

/* The store's note of the busybox file the embedded image was last built from: its
 * identity (device, inode, size, modification and change times) and its digest. A
 * new hero process that finds the same file takes the digest from it instead of
 * reading and hashing 2 MB again. */
#define BUSYBOX_NOTE "image.embedded.busybox"

static char *busybox_note(const char *path, const struct stat *sb, const char *digest)
{
    return hero_xasprintf("%llu %llu %lld %lld %ld %lld %ld %s %s", (unsigned long long)sb->st_dev,
                          (unsigned long long)sb->st_ino, (long long)sb->st_size,
                          (long long)sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec,
                          (long long)sb->st_ctim.tv_sec, sb->st_ctim.tv_nsec, digest, path);
}

/* Fills `seen` from the store's note when it describes this very file. */
static void seen_from_note(hero_store_t *st, const char *path, const struct stat *sb)
{
    char *note = NULL;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_store_meta_get(st, BUSYBOX_NOTE, &note, &e) != 0) {
        hero_error_clear(&e);
        return;
    }
    /* the digest is "sha256:" and 64 hex digits; the path is the rest of the line */
    char *digest = strstr(note, " sha256:");
    if (digest && strlen(digest) > 72 && digest[72] == ' ') {
        digest[72] = 0;
        char *want = busybox_note(path, sb, digest + 1);
        digest[72] = ' ';
        if (!strcmp(want, note)) {
            digest[72] = 0;
            seen_remember(path, sb, digest + 1);
        }
        free(want);
    }
    free(note);
}

static void resolve_embedded(uv_loop_t *loop, hero_store_t *st, hero_image_cb cb, void *data)
{
    hero_error_t e = HERO_ERROR_INIT;
    busybox_t bb;
    struct stat sb;
    const char *path = hero_image_busybox_path();
    bool have_stat = stat(path, &sb) == 0;
    if (have_stat && !seen_matches(path, &sb))
        seen_from_note(st, path, &sb);
    if (have_stat) {
        hero_image_t *img = embedded_cached(st, path, &sb);
        if (img) {
            cb(img, NULL, data);
            return;
        }
    }
    if (busybox_load(&bb, &e) < 0) {
        cb(NULL, &e, data);
        hero_error_clear(&e);
        return;
    }
    hero_image_rec_t rec = {0};
    int rc = hero_store_image_get(st, EMBEDDED_NAME, &rec, &e);
    if (rc < 0) {
        busybox_clear(&bb);
        hero_image_rec_free(&rec);
        cb(NULL, &e, data);
        hero_error_clear(&e);
        return;
    }
    if (have_stat) {
        seen_remember(path, &sb, bb.digest);
        char *note = busybox_note(path, &sb, bb.digest);
        hero_store_meta_put(st, BUSYBOX_NOTE, note, &e);
        hero_error_clear(&e); /* only a shortcut for the next process */
        free(note);
    }
    if (rc == 0 && rec.digest && !strcmp(rec.digest, bb.digest) && rec.rootfs &&
        is_dir(rec.rootfs)) {
        /* up to date: the common case after the first run */
        hero_image_t *img = image_from_record(&rec, &e);
        hero_image_rec_free(&rec);
        if (img) {
            busybox_clear(&bb);
            cb(img, NULL, data);
            return;
        }
        hero_error_clear(&e); /* an unreadable record: rebuilding replaces it */
    }
    hero_image_rec_free(&rec);
    build_start(loop, st, &bb, cb, data);
}

void hero_image_resolve_stored(hero_store_t *st, const char *name, hero_image_cb cb,
                               void *data)
{
    resolve_stored(st, name, cb, data);
}

char **hero_image_layer_dirs(const char *rootfs)
{
    size_t n = 1;
    for (const char *c = rootfs; c && *c; c++)
        n += *c == ':';
    char **v = hero_xcalloc(n + 1, sizeof(char *));
    size_t i = 0;
    const char *p = rootfs ? rootfs : "";
    while (*p) {
        size_t l = strcspn(p, ":");
        v[i++] = hero_xstrndup(p, l);
        p += l + (p[l] == ':');
    }
    return v;
}

/* The image names of the reference implementation. */
static const struct {
    const char *name, *ref;
} known_images[] = {
    {"alpine_3_20", "docker.io/library/alpine:3.20"},
    {"ubuntu_24_04", "docker.io/library/ubuntu:24.04"},
    {"ubuntu_25_04", "docker.io/library/ubuntu:25.04"},
};

void hero_image_source_of(const char *image, const char *custom_name, const char *docker_url,
                          hero_image_source_t *out)
{
    *out = (hero_image_source_t){.name = image};
    if (image && !strcmp(image, "custom")) {
        out->name = custom_name;
        out->ref = docker_url; /* NULL: the image must be in the store */
        return;
    }
    for (size_t i = 0; i < sizeof(known_images) / sizeof(known_images[0]); i++)
        if (image && !strcmp(image, known_images[i].name)) {
            out->ref = known_images[i].ref;
            return;
        }
    /* anything else that looks like a reference is one; a plain name is a store name */
    if (image && strcmp(image, EMBEDDED_NAME) && strpbrk(image, "/:@.") )
        out->ref = image;
}

void hero_image_get(uv_loop_t *loop, hero_store_t *st, const hero_image_source_t *src,
                    hero_image_cb cb, void *data)
{
    if (!src->ref || (src->name && !strcmp(src->name, EMBEDDED_NAME))) {
        hero_image_resolve(loop, st, src->name, cb, data);
        return;
    }
    if (src->podman) {
        hero_image_rec_t rec = {0};
        hero_error_t e = HERO_ERROR_INIT;
        int g = src->reset ? 1 : hero_store_image_get(st, src->name, &rec, &e);
        hero_image_rec_free(&rec);
        hero_error_clear(&e);
        if (g == 0)
            resolve_stored(st, src->name, cb, data);
        else
            hero_image_podman(loop, st, src->name, src->ref, cb, data);
        return;
    }
    hero_pull_opts_t po = {.name = src->name, .ref = src->ref, .platform = src->platform,
                           .reset = src->reset, .check = src->check, .quiet = src->quiet};
    hero_image_pull(loop, st, &po, cb, data);
}

void hero_image_task_cancel(struct hero_task *t)
{
    (void)t;
    hero_imglock_cancel_waits();
    hero_pull_cancel_all();
    hero_image_podman_cancel_all();
}

void hero_image_resolve(uv_loop_t *loop, hero_store_t *st, const char *name, hero_image_cb cb,
                        void *data)
{
    if (!name || !*name) {
        hero_error_t e = HERO_ERROR_INIT;
        hero_error_set(&e, EINVAL, "no image name");
        cb(NULL, &e, data);
        hero_error_clear(&e);
        return;
    }
    if (!strcmp(name, EMBEDDED_NAME))
        resolve_embedded(loop, st, cb, data);
    else
        resolve_stored(st, name, cb, data);
}
