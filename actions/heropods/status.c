/* hero-init's status files, as the host reads them: <run>/started once the
 * entrypoint runs, <run>/status when it has ended (see hero_init.c). */
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include "pods.h"

static bool read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = 0;
    return ok;
}

void hero_pods_read_status(const char *run_dir, hero_init_status_t *st)
{
    char path[4096], line[512];
    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/status", run_dir);
    if (read_line(path, line, sizeof(line))) {
        int code = 0, n = 0;
        if (sscanf(line, "exited %d", &code) == 1) {
            st->state = HERO_INIT_EXITED;
            st->code = code;
        } else if (sscanf(line, "signaled %d", &code) == 1) {
            st->state = HERO_INIT_SIGNALED;
            st->code = code;
        } else if (sscanf(line, "exec-failed %d %n", &code, &n) == 1) {
            st->state = HERO_INIT_EXEC_FAILED;
            st->code = code;
            snprintf(st->text, sizeof(st->text), "%.255s", line + n);
        } else {
            st->state = HERO_INIT_FAILED;
            snprintf(st->text, sizeof(st->text), "%.255s", line);
        }
        return;
    }
    snprintf(path, sizeof(path), "%s/started", run_dir);
    if (read_line(path, line, sizeof(line)))
        st->state = HERO_INIT_STARTED;
}

/* gone, or a zombie nobody reaps yet (the container's init is not hero's child) */
bool hero_pods_pid_gone(int64_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !rp || rp[1] == 0 || rp[2] == 'Z' || rp[2] == 'X';
}

