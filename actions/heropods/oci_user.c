/* Looking things up inside an image's root filesystem: users and groups (its
 * /etc/passwd and /etc/group) and entrypoints. Every path is opened with openat2(2)
 * and RESOLVE_IN_ROOT, so an absolute symlink such as /bin/sh -> /bin/busybox, or a
 * `../../..` that climbs past the top, resolves inside the root and never reaches the
 * host's own files. Without openat2 (Linux < 5.6) a careful walk does the same. */
#include "actions/heropods/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* /etc/passwd and /etc/group bigger than this are not believed. */
#define MAX_DB_FILE (16u << 20)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int open_root(const char *rootfs, hero_error_t *err)
{
    if (!rootfs || !*rootfs)
        return hero_error_set(err, 0, "no image root filesystem given");
    int fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return hero_error_set(err, errno, "image root filesystem '%s'", rootfs);
    return fd;
}

/* What open_in_root does when the kernel has no openat2 (before 5.6, or a seccomp
 * filter, or valgrind): walks the path one component at a time with O_NOFOLLOW,
 * following symlinks by hand, with ".." and absolute targets clamped at the root.
 * Returns the fd, or -1 with errno. */
#define WALK_MAX_DEPTH 255
#define WALK_MAX_LINKS 40

static int walk_in_root(int rootfd, const char *path, int flags)
{
    int dirs[WALK_MAX_DEPTH + 1]; /* dirs[0] is rootfd (the caller's); the rest are ours */
    size_t n = 0;
    dirs[0] = rootfd;
    char *todo = hero_xstrdup(path);
    size_t pos = 0;
    int links = 0, result = -1, saved = 0;
    for (;;) {
        while (todo[pos] == '/')
            pos++;
        if (!todo[pos]) { /* the path names a directory: the one we are in */
            result = openat(dirs[n], ".", flags);
            saved = errno;
            break;
        }
        size_t len = strcspn(todo + pos, "/");
        char *comp = hero_xstrndup(todo + pos, len);
        pos += len;
        bool last = todo[pos] == 0;
        if (strcmp(comp, ".") == 0) {
            free(comp);
            continue;
        }
        if (strcmp(comp, "..") == 0) {
            if (n)
                close(dirs[n--]);
            free(comp);
            continue;
        }
        int fd = openat(dirs[n], comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            saved = errno;
            if (fd >= 0)
                close(fd);
            free(comp);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t tl = -1;
            if (++links > WALK_MAX_LINKS)
                errno = ELOOP;
            else
                tl = readlinkat(fd, "", target, sizeof target - 1);
            saved = errno;
            close(fd);
            free(comp);
            if (tl <= 0 || (size_t)tl == sizeof target - 1) {
                if (tl >= 0) /* an empty link, or one too long to be real */
                    saved = tl ? ENAMETOOLONG : ENOENT;
                break;
            }
            target[tl] = 0;
            if (target[0] == '/')
                while (n)
                    close(dirs[n--]);
            /* the target, then what followed the link (its slash included) */
            char *next = hero_xasprintf("%s%s", target, todo + pos);
            free(todo);
            todo = next;
            pos = 0;
            continue;
        }
        if (last) {
            close(fd);
            result = openat(dirs[n], comp, flags | O_NOFOLLOW);
            saved = errno;
            free(comp);
            break;
        }
        free(comp);
        if (!S_ISDIR(st.st_mode) || n == WALK_MAX_DEPTH) {
            saved = S_ISDIR(st.st_mode) ? ENAMETOOLONG : ENOTDIR;
            close(fd);
            break;
        }
        dirs[++n] = fd;
    }
    while (n)
        close(dirs[n--]);
    free(todo);
    errno = saved;
    return result;
}

/* openat2(rootfd, path) with the path resolved as if rootfd were "/". Returns the fd,
 * or -1 with errno. */
static int open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    /* EAGAIN: a concurrent rename inside the root; the kernel asks to retry. */
    for (int i = 0; i < 32; i++) {
        long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno == ENOSYS)
            return walk_in_root(rootfd, path, flags | O_CLOEXEC);
        if (errno != EAGAIN && errno != EINTR)
            return -1;
    }
    return -1;
}

static bool missing_errno(int e)
{
    return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG;
}

/* Reads a regular file inside the root. Returns 0 (with *out NUL-terminated), 1 when
 * it does not exist, <0 with err. */
static int read_in_root(int rootfd, const char *path, char **out, hero_error_t *err)
{
    *out = NULL;
    int fd = open_in_root(rootfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (missing_errno(errno))
            return 1;
        return hero_error_set(err, errno, "image's %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return hero_error_set(err, e, "image's %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return hero_error_set(err, 0, "image's %s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > MAX_DB_FILE) {
        close(fd);
        return hero_error_set(err, 0, "image's %s is too big (%lld bytes)", path,
                              (long long)st.st_size);
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = hero_xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > MAX_DB_FILE) {
                free(buf);
                close(fd);
                return hero_error_set(err, 0, "image's %s is too big", path);
            }
            cap *= 2;
            buf = hero_xrealloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return hero_error_set(err, e, "reading the image's %s", path);
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    *out = buf;
    return 0;
}

/* Splits `line` in place at ':' into at most `max` fields; returns how many. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == ':') {
            *p = 0;
            f[n++] = p + 1;
        }
    }
    return n;
}

/* Strict decimal id: 0 .. 2^32-2 (2^32-1 is the "no id" value). */
static bool parse_id(const char *s, uint32_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > 0xfffffffeu)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Calls fn on each well-formed, non-comment line of a colon-separated database with
 * at least `minf` fields, until fn returns true. The buffer is modified. */
typedef bool (*db_fn)(char **f, int n, void *data);

static void db_each(char *buf, int minf, db_fn fn, void *data)
{
    char *line = buf;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[l - 1] = 0;
        if (*line && *line != '#') {
            char *f[8];
            int n = split_fields(line, f, 8);
            if (n >= minf && fn(f, n, data))
                return;
        }
        line = nl ? nl + 1 : NULL;
    }
}

typedef struct pw_query {
    const char *name;  /* look up by name, or */
    uint32_t uid;      /* by uid when name is NULL */
    bool found;
    char *found_name;
    uint32_t found_uid, found_gid;
} pw_query_t;

static bool pw_match(char **f, int n, void *data)
{
    (void)n;
    pw_query_t *q = data;
    uint32_t uid, gid;
    if (!parse_id(f[2], &uid) || !parse_id(f[3], &gid))
        return false;
    if (q->name ? strcmp(f[0], q->name) != 0 : uid != q->uid)
        return false;
    q->found = true;
    q->found_name = hero_xstrdup(f[0]);
    q->found_uid = uid;
    q->found_gid = gid;
    return true;
}

typedef struct gr_query {
    const char *name;      /* the group to find by name, or NULL */
    bool found;
    uint32_t found_gid;
    const char *member;    /* collect the groups listing this user, or NULL */
    uint32_t primary;
    uint32_t *gids;
    size_t ngids;
} gr_query_t;

static bool gr_match(char **f, int n, void *data)
{
    gr_query_t *q = data;
    uint32_t gid;
    if (!parse_id(f[2], &gid))
        return false;
    if (q->name) {
        if (strcmp(f[0], q->name) != 0)
            return false;
        q->found = true;
        q->found_gid = gid;
        return true;
    }
    if (n < 4 || !q->member || gid == q->primary)
        return false;
    for (char *m = f[3]; m && *m;) {
        char *comma = strchr(m, ',');
        size_t ml = comma ? (size_t)(comma - m) : strlen(m);
        /* tolerate blanks around members ("a, b") */
        while (ml && (*m == ' ' || *m == '\t')) {
            m++;
            ml--;
        }
        while (ml && (m[ml - 1] == ' ' || m[ml - 1] == '\t'))
            ml--;
        if (ml == strlen(q->member) && memcmp(m, q->member, ml) == 0) {
            for (size_t i = 0; i < q->ngids; i++)
                if (q->gids[i] == gid)
                    return false;
            q->gids = hero_xrealloc(q->gids, (q->ngids + 1) * sizeof *q->gids);
            q->gids[q->ngids++] = gid;
            return false;
        }
        m = comma ? comma + 1 : NULL;
    }
    return false;
}

int hero_oci_resolve_user(const char *rootfs, const char *user, uint32_t *uid, uint32_t *gid,
                          uint32_t **extra_gids, size_t *nextra, hero_error_t *err)
{
    if (extra_gids)
        *extra_gids = NULL;
    if (nextra)
        *nextra = 0;
    /* No user: root, with root's groups from the image (as docker does). */
    const char *spec = user && *user ? user : "0";
    const char *colon = strchr(spec, ':');
    char *uname = colon ? hero_xstrndup(spec, (size_t)(colon - spec)) : hero_xstrdup(spec);
    const char *gname = colon ? colon + 1 : NULL;
    int rc = -1;
    char *passwd = NULL, *group = NULL;
    pw_query_t pq = {0};
    gr_query_t gq = {0};

    if (!*uname || (gname && (!*gname || strchr(gname, ':')))) {
        hero_error_set(err, 0, "invalid user '%s': expected name, uid, name:group or uid:gid",
                       spec);
        goto out;
    }
    int rootfd = open_root(rootfs, err);
    if (rootfd < 0)
        goto out;
    int r = read_in_root(rootfd, "/etc/passwd", &passwd, err);
    if (r >= 0) {
        int r2 = read_in_root(rootfd, "/etc/group", &group, err);
        if (r2 < 0)
            r = r2;
    }
    close(rootfd);
    if (r < 0)
        goto out;

    uint32_t u = 0, g = 0;
    bool numeric = parse_id(uname, &u);
    if (numeric) {
        pq.uid = u;
    } else {
        pq.name = uname;
    }
    if (passwd)
        db_each(passwd, 4, pw_match, &pq);
    if (!pq.found && !numeric) {
        hero_error_set(err, 0, "user '%s' is not in the image's /etc/passwd", uname);
        goto out;
    }
    if (pq.found) {
        u = pq.found_uid;
        g = pq.found_gid;
    }
    if (gname) {
        if (!parse_id(gname, &g)) {
            gq.name = gname;
            if (group)
                db_each(group, 3, gr_match, &gq);
            if (!gq.found) {
                hero_error_set(err, 0, "group '%s' is not in the image's /etc/group", gname);
                goto out;
            }
            g = gq.found_gid;
        }
    } else if (pq.found && group) {
        /* Supplementary groups: every group that lists the user by name. An explicit
         * group replaces them all, as runc does. */
        gq.member = pq.found_name;
        gq.primary = g;
        db_each(group, 4, gr_match, &gq);
    }
    *uid = u;
    *gid = g;
    if (extra_gids && nextra) {
        *extra_gids = gq.gids;
        *nextra = gq.ngids;
        gq.gids = NULL;
    }
    rc = 0;
out:
    free(gq.gids);
    free(pq.found_name);
    free(passwd);
    free(group);
    free(uname);
    return rc;
}

/* 0: an executable regular file; 1: missing; 2: there but not executable; <0 err. */
static int probe_exec(int rootfd, const char *path, hero_error_t *err)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0) {
        if (missing_errno(errno))
            return 1;
        if (errno == EACCES)
            return 2;
        return hero_error_set(err, errno, "looking up '%s' in the image", path);
    }
    struct stat st;
    int r = fstat(fd, &st);
    int e = errno;
    close(fd);
    if (r < 0)
        return hero_error_set(err, e, "looking up '%s' in the image", path);
    return S_ISREG(st.st_mode) && (st.st_mode & 0111) ? 0 : 2;
}

int hero_oci_check_exec(const char *rootfs, char *const *env, const char *argv0,
                        hero_error_t *err)
{
    if (!argv0 || !*argv0)
        return hero_error_set(err, 0, "the entrypoint is an empty string");
    /* A relative path with a slash is relative to the working directory, which is
     * not known here: crun reports it if it is wrong. */
    if (strchr(argv0, '/') && argv0[0] != '/')
        return 0;
    int rootfd = open_root(rootfs, err);
    if (rootfd < 0)
        return -1;
    int st = 1;
    if (argv0[0] == '/') {
        st = probe_exec(rootfd, argv0, err);
    } else {
        /* the last PATH wins: env may be the image's followed by the spec's */
        const char *path = NULL;
        for (char *const *e = env; e && *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0)
                path = *e + 5;
        if (!path)
            path = DEFAULT_PATH;
        for (const char *p = path; p;) {
            const char *c = strchr(p, ':');
            size_t dl = c ? (size_t)(c - p) : strlen(p);
            /* execvp would look in the working directory for an empty or relative
             * entry; hero-init runs with cwd set, but we cannot check it here. */
            if (dl && p[0] == '/') {
                char *cand = hero_xasprintf("%.*s/%s", (int)dl, p, argv0);
                int r = probe_exec(rootfd, cand, err);
                free(cand);
                if (r < 0) {
                    st = r;
                    break;
                }
                if (r == 0 || (r == 2 && st == 1))
                    st = r;
                if (r == 0)
                    break;
            }
            p = c ? c + 1 : NULL;
        }
    }
    close(rootfd);
    if (st < 0)
        return -1;
    if (st == 1)
        return hero_error_set(err, 0, "entrypoint '%s' does not exist in the image", argv0);
    if (st == 2)
        return hero_error_set(err, 0, "entrypoint '%s' is not executable", argv0);
    return 0;
}
