/* Small file-system helpers shared by the modules. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/fs.h"

int hero_mkdir_p(const char *path, mode_t mode, hero_error_t *err)
{
    char *p = hero_xstrdup(path);
    for (char *c = p + 1;; c++) {
        if (*c == '/' || !*c) {
            char saved = *c;
            *c = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                int e = errno;
                hero_error_set(err, e, "cannot create '%s'", p);
                free(p);
                return -1;
            }
            *c = saved;
            if (!saved)
                break;
        }
    }
    free(p);
    return 0;
}

int hero_fs_write_file(const char *path, const char *text, size_t len, hero_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return hero_error_set(err, errno, "cannot write '%s'", path);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return hero_error_set(err, e, "cannot write '%s'", path);
        }
        off += (size_t)w;
    }
    if (close(fd) < 0)
        return hero_error_set(err, errno, "cannot write '%s'", path);
    return 0;
}

int hero_fs_write_atomic(const char *path, const void *data, size_t len, hero_error_t *err)
{
    char *tmp = hero_xasprintf("%s.tmp-XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        hero_error_set(err, errno, "cannot write beside %s", path);
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = hero_error_set(err, errno, "cannot write %s", tmp);
            break;
        }
        off += (size_t)w;
    }
    if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
        rc = hero_error_set(err, errno, "cannot write %s", tmp);
    if (close(fd) < 0 && rc == 0)
        rc = hero_error_set(err, errno, "cannot write %s", tmp);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = hero_error_set(err, errno, "cannot rename %s to %s", tmp, path);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

long hero_fs_name_pid(const char *s, char sep)
{
    char *end;
    errno = 0;
    long pid = strtol(s, &end, 10);
    if (!isdigit((unsigned char)*s) || errno || *end != sep || pid <= 0 || pid > INT32_MAX)
        return 0;
    return pid;
}

bool hero_fs_pid_runs(long pid)
{
    return pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

mode_t hero_fs_umask(void)
{
    /* read, not set: umask() would change it for every thread meanwhile */
    FILE *f = fopen("/proc/self/status", "re");
    unsigned m = 022;
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Umask: %o", &m) == 1)
            break;
    if (f)
        fclose(f);
    return (mode_t)(m & 0777);
}

void hero_fs_remove_stale(const char *dir, const char *prefix, int max_age_s)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t pl = strlen(prefix);
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat sb;
        if (strncmp(de->d_name, prefix, pl))
            continue;
        long pid = hero_fs_name_pid(de->d_name + pl, '-');
        if ((pid && hero_fs_pid_runs(pid)) ||
            fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            now - sb.st_ctime < max_age_s)
            continue;
        char *p = hero_xasprintf("%s/%s", dir, de->d_name);
        hero_error_t e = HERO_ERROR_INIT;
        hero_fs_rmtree(p, &e);
        hero_error_clear(&e);
        free(p);
    }
    closedir(d);
}

char *hero_fs_expand_home(const char *path, hero_error_t *err)
{
    if (path[0] != '~')
        return hero_xstrdup(path);
    const char *rest = path + 1 + strcspn(path + 1, "/"); /* "" or "/..." */
    const char *home = NULL;
    if (rest == path + 1) {
        home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
        }
    } else {
        char *user = hero_xstrndup(path + 1, (size_t)(rest - path - 1));
        struct passwd *pw = getpwnam(user);
        free(user);
        home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
    }
    if (!home) {
        hero_error_set(err, 0, "cannot expand '%s': no such home directory", path);
        return NULL;
    }
    return hero_xasprintf("%s%s", home, rest);
}
