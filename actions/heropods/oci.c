/* The container definition (hero_ctr_spec_t: canonical JSON, hash, diff) and the OCI
 * runtime config (config.json) crun runs it from. Lookups inside the image's root
 * filesystem (users, entrypoints) are in oci_user.c. */
#include "actions/heropods/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "actions/actions.h"
#include "runtime/sha256.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NOFILE_WANTED 1048576u

/* ---------------------------------------------------------------- string vectors */

static size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static void strv_push(char ***v, size_t *n, const char *s)
{
    *v = hero_xrealloc(*v, (*n + 2) * sizeof **v);
    (*v)[(*n)++] = hero_xstrdup(s);
    (*v)[*n] = NULL;
}

/* The length of the well-formed UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string that is never NULL: in text that is not UTF-8 (HeroScript does not
 * insist on it) each stray byte becomes the four characters \xNN, so that the hash
 * and the diff still tell such values apart. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s), o = 0;
    char *buf = hero_xmalloc(4 * n + 1);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i);
        if (l && s[i]) {
            memcpy(buf + o, s + i, l);
            o += l;
            i += l;
        } else {
            o += (size_t)sprintf(buf + o, "\\x%02x", (unsigned char)s[i]);
            i++;
        }
    }
    buf[o] = 0;
    j = json_string(buf);
    free(buf);
    if (!j) /* cannot happen: every byte left is well-formed */
        abort();
    return j;
}

static json_t *strv_to_json(char *const *v)
{
    json_t *a = json_array();
    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, jstr(v[i]));
    return a;
}

/* A JSON array of strings as a NULL-terminated vector (an empty array gives an empty,
 * non-NULL vector). Returns -1 when `j` is not an array of strings. */
static int strv_from_json(const json_t *j, char ***out)
{
    *out = NULL;
    if (!json_is_array(j))
        return -1;
    size_t n = json_array_size(j);
    char **v = hero_xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(j, i);
        if (!json_is_string(s)) {
            hero_strv_free(v);
            return -1;
        }
        v[i] = hero_xstrdup(json_string_value(s));
    }
    *out = v;
    return 0;
}

/* --------------------------------------------------------------------- the spec */

void hero_ctr_spec_free(hero_ctr_spec_t *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->image);
    free(s->hostname);
    hero_strv_free(s->env);
    hero_strv_free(s->entrypoint);
    hero_strv_free(s->cmd);
    free(s->workdir);
    free(s->user);
    hero_strv_free(s->cap_add);
    hero_strv_free(s->cap_drop);
    for (size_t i = 0; i < s->nmounts; i++) {
        free(s->mounts[i].src);
        free(s->mounts[i].dst);
    }
    free(s->mounts);
    hero_strv_free(s->ports);
    memset(s, 0, sizeof *s);
}

static void set_str(json_t *j, const char *key, const char *v)
{
    if (v && *v)
        json_object_set_new(j, key, jstr(v));
}

/* Lists where "none" and "empty" mean the same: present only when non-empty. */
static void set_list(json_t *j, const char *key, char *const *v)
{
    if (strv_len(v))
        json_object_set_new(j, key, strv_to_json(v));
}

json_t *hero_ctr_spec_to_json(const hero_ctr_spec_t *s)
{
    json_t *j = json_object();
    set_str(j, "name", s->name);
    set_str(j, "image", s->image);
    set_str(j, "hostname", s->hostname);
    set_list(j, "env", s->env);
    /* entrypoint:[] is not the image's entrypoint: kept, even empty */
    if (s->entrypoint)
        json_object_set_new(j, "entrypoint", strv_to_json(s->entrypoint));
    if (s->cmd)
        json_object_set_new(j, "cmd", strv_to_json(s->cmd));
    set_str(j, "workdir", s->workdir);
    set_str(j, "user", s->user);
    set_list(j, "cap_add", s->cap_add);
    set_list(j, "cap_drop", s->cap_drop);
    if (s->nmounts) {
        json_t *a = json_array();
        for (size_t i = 0; i < s->nmounts; i++)
            json_array_append_new(a, json_pack("{s:o, s:o, s:b}", "src", jstr(s->mounts[i].src),
                                               "dst", jstr(s->mounts[i].dst), "ro",
                                               (int)s->mounts[i].ro));
        json_object_set_new(j, "mounts", a);
    }
    if (s->memory)
        json_object_set_new(j, "memory", json_integer((json_int_t)(s->memory > INT64_MAX
                                                                        ? INT64_MAX
                                                                        : s->memory)));
    if (s->cpus > 0)
        json_object_set_new(j, "cpus", json_real(s->cpus));
    if (s->pids_limit)
        json_object_set_new(j, "pids_limit", json_integer((json_int_t)s->pids_limit));
    set_list(j, "ports", s->ports);
    return j;
}

static int spec_field(const char *key, const json_t *v, hero_ctr_spec_t *s, hero_error_t *err)
{
    char **strs[] = {&s->name, &s->image, &s->hostname, &s->workdir, &s->user};
    static const char *const str_keys[] = {"name", "image", "hostname", "workdir", "user"};
    for (size_t i = 0; i < sizeof str_keys / sizeof *str_keys; i++) {
        if (strcmp(key, str_keys[i]) == 0) {
            if (!json_is_string(v))
                return hero_error_set(err, 0, "container spec: '%s' is not a string", key);
            free(*strs[i]);
            *strs[i] = hero_xstrdup(json_string_value(v));
            return 0;
        }
    }
    char ***lists[] = {&s->env, &s->entrypoint, &s->cmd, &s->cap_add, &s->cap_drop, &s->ports};
    static const char *const list_keys[] = {"env",     "entrypoint", "cmd",
                                            "cap_add", "cap_drop",   "ports"};
    for (size_t i = 0; i < sizeof list_keys / sizeof *list_keys; i++) {
        if (strcmp(key, list_keys[i]) == 0) {
            hero_strv_free(*lists[i]);
            if (strv_from_json(v, lists[i]) < 0)
                return hero_error_set(err, 0, "container spec: '%s' is not a list of strings",
                                      key);
            return 0;
        }
    }
    if (strcmp(key, "mounts") == 0) {
        if (!json_is_array(v))
            return hero_error_set(err, 0, "container spec: 'mounts' is not a list");
        size_t n = json_array_size(v);
        s->mounts = hero_xcalloc(n, sizeof *s->mounts);
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_array_get(v, i);
            const json_t *src = json_object_get(m, "src"), *dst = json_object_get(m, "dst");
            const json_t *ro = json_object_get(m, "ro");
            if (!json_is_string(src) || !json_is_string(dst) || (ro && !json_is_boolean(ro)))
                return hero_error_set(err, 0,
                                      "container spec: mount %zu is not {src, dst, ro}", i + 1);
            s->mounts[i].src = hero_xstrdup(json_string_value(src));
            s->mounts[i].dst = hero_xstrdup(json_string_value(dst));
            s->mounts[i].ro = json_is_true(ro);
            s->nmounts = i + 1;
        }
        return 0;
    }
    if (strcmp(key, "memory") == 0) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return hero_error_set(err, 0, "container spec: 'memory' is not a byte count");
        s->memory = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (strcmp(key, "cpus") == 0) {
        if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
            return hero_error_set(err, 0, "container spec: 'cpus' is not a number of cores");
        s->cpus = json_number_value(v);
        return 0;
    }
    if (strcmp(key, "pids_limit") == 0) {
        if (!json_is_integer(v))
            return hero_error_set(err, 0, "container spec: 'pids_limit' is not an integer");
        s->pids_limit = (int64_t)json_integer_value(v);
        return 0;
    }
    return hero_error_set(err, 0, "container spec: unknown field '%s'", key);
}

int hero_ctr_spec_from_json(const json_t *j, hero_ctr_spec_t *out, hero_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(j))
        return hero_error_set(err, 0, "container spec: not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        if (spec_field(key, v, out, err) < 0) {
            hero_ctr_spec_free(out);
            return -1;
        }
    }
    if (!out->name || !out->image) {
        hero_ctr_spec_free(out);
        return hero_error_set(err, 0, "container spec: 'name' and 'image' are required");
    }
    return 0;
}

char *hero_ctr_spec_hash(const hero_ctr_spec_t *s)
{
    json_t *j = hero_ctr_spec_to_json(s);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!text)
        hero_oom();
    char d[HERO_SHA256_HEX_LEN];
    hero_sha256_hex(text, strlen(text), d);
    free(text);
    return hero_xstrdup(d + 7); /* the hex digits alone */
}

/* A byte count as 512M, 2G, 64k when exact, else in bytes. */
static char *human_size(uint64_t b)
{
    static const char units[] = "kMGTPE";
    int u = -1;
    uint64_t v = b;
    while (v && v % 1024 == 0 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        return hero_xasprintf("%" PRIu64, b);
    return hero_xasprintf("%" PRIu64 "%c", v, units[u]);
}

/* One field's canonical JSON value, as the diff shows it. */
static char *diff_value(const char *key, const json_t *v)
{
    if (!v)
        return hero_xstrdup("(none)");
    if (json_is_string(v))
        return hero_xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        if (strcmp(key, "memory") == 0)
            return human_size((uint64_t)json_integer_value(v));
        return hero_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
    if (json_is_real(v))
        return hero_xasprintf("%g", json_real_value(v));
    if (json_is_array(v)) {
        char *out = hero_xstrdup("[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            char *item;
            if (json_is_object(e))
                item = hero_xasprintf("%s:%s%s", json_string_value(json_object_get(e, "src")),
                                      json_string_value(json_object_get(e, "dst")),
                                      json_is_true(json_object_get(e, "ro")) ? ":ro" : "");
            else
                item = hero_xstrdup(json_is_string(e) ? json_string_value(e) : "?");
            char *n = hero_xasprintf("%s%s%s", out, i ? ", " : "", item);
            free(item);
            free(out);
            out = n;
        }
        char *n = hero_xasprintf("%s]", out);
        free(out);
        return n;
    }
    return hero_xstrdup("?");
}

char *hero_ctr_spec_diff(const hero_ctr_spec_t *old, const hero_ctr_spec_t *new_)
{
    static const char *const keys[] = {
        "name",    "image",    "hostname", "env",    "entrypoint", "cmd",        "workdir",
        "user",    "cap_add",  "cap_drop", "mounts", "memory",     "cpus",       "pids_limit",
        "ports",
    };
    json_t *a = hero_ctr_spec_to_json(old), *b = hero_ctr_spec_to_json(new_);
    char *out = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const json_t *va = json_object_get(a, keys[i]), *vb = json_object_get(b, keys[i]);
        if ((!va && !vb) || (va && vb && json_equal(va, vb)))
            continue;
        char *sa = diff_value(keys[i], va), *sb = diff_value(keys[i], vb);
        char *n = hero_xasprintf("%s%s%s: %s -> %s", out ? out : "", out ? "; " : "", keys[i],
                                 sa, sb);
        free(sa);
        free(sb);
        free(out);
        out = n;
    }
    json_decref(a);
    json_decref(b);
    return out;
}

/* ------------------------------------------------------------- image config bits */

/* The image config's list `key` (Entrypoint, Cmd, Env): *out NULL when absent or
 * null. */
static int image_list(const json_t *cfg, const char *key, char ***out, hero_error_t *err)
{
    *out = NULL;
    const json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (strv_from_json(v, out) < 0)
        return hero_error_set(err, 0, "the image config's %s is not a list of strings", key);
    return 0;
}

static const char *image_str(const json_t *cfg, const char *key)
{
    const json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    return json_is_string(v) && *json_string_value(v) ? json_string_value(v) : NULL;
}

char **hero_oci_args(const hero_ctr_spec_t *spec, const json_t *image_config, hero_error_t *err)
{
    char **img_ep = NULL, **img_cmd = NULL;
    if (image_list(image_config, "Entrypoint", &img_ep, err) < 0 ||
        image_list(image_config, "Cmd", &img_cmd, err) < 0) {
        hero_strv_free(img_ep);
        return NULL;
    }
    char *const *ep = spec->entrypoint ? spec->entrypoint : img_ep;
    /* Giving an entrypoint drops the image's Cmd (docker does the same). */
    char *const *cmd = spec->cmd ? spec->cmd : spec->entrypoint ? NULL : img_cmd;
    char **args = NULL;
    size_t n = 0;
    for (size_t i = 0; ep && ep[i]; i++)
        strv_push(&args, &n, ep[i]);
    for (size_t i = 0; cmd && cmd[i]; i++)
        strv_push(&args, &n, cmd[i]);
    hero_strv_free(img_ep);
    hero_strv_free(img_cmd);
    if (!n) {
        hero_error_set(err, 0, "image '%s' has neither an entrypoint nor a cmd: give cmd:[...]",
                       spec->image ? spec->image : "?");
        return NULL;
    }
    return args;
}

/* Sets KEY=value in env: replaces the entry with the same KEY, or appends. */
static void env_set(char ***env, size_t *n, const char *kv)
{
    size_t kl = strcspn(kv, "=");
    for (size_t i = 0; i < *n; i++) {
        if (strncmp((*env)[i], kv, kl) == 0 && ((*env)[i][kl] == '=' || !(*env)[i][kl])) {
            free((*env)[i]);
            (*env)[i] = hero_xstrdup(kv);
            return;
        }
    }
    strv_push(env, n, kv);
}

static bool env_has(char *const *env, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
            return true;
    return false;
}

/* ------------------------------------------------------------------ capabilities */

static const char *const cap_names[] = {
    "CAP_CHOWN",           "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",          "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",       "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",           "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof cap_names / sizeof *cap_names))

/* podman's default set */
static const char *const default_caps[] = {
    "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL",   "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETUID",      "CAP_SYS_CHROOT",
};

/* The capability number of a name (CAP_ optional, any case); -2 for ALL; -1 unknown. */
static int cap_number(const char *name)
{
    const char *n = strncasecmp(name, "CAP_", 4) == 0 ? name + 4 : name;
    if (strcasecmp(n, "ALL") == 0)
        return -2;
    for (int i = 0; i < NCAPS; i++)
        if (strcasecmp(cap_names[i] + 4, n) == 0)
            return i;
    return -1;
}

/* The capabilities hero can hand on: its own bounding set (which also leaves out what
 * the kernel does not know). A container asking for more makes crun fail with a bare
 * "capset: Operation not permitted". */
static uint64_t held_caps(void)
{
    /* one read of /proc/self/status instead of a prctl per capability (41 calls
     * for every start); prctl where /proc is not mounted */
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long long m;
        if (sscanf(line, "CapBnd: %llx", &m) == 1) {
            fclose(f);
            return (uint64_t)m & (NCAPS >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << NCAPS) - 1);
        }
    }
    if (f)
        fclose(f);
    uint64_t m = 0;
    for (int i = 0; i < NCAPS; i++)
        if (prctl(PR_CAPBSET_READ, (unsigned long)i, 0, 0, 0) == 1)
            m |= UINT64_C(1) << i;
    return m;
}

static int cap_mask(char *const *list, uint64_t *mask, bool *all, hero_error_t *err)
{
    *mask = 0;
    *all = false;
    for (size_t i = 0; list && list[i]; i++) {
        int c = cap_number(list[i]);
        if (c == -1)
            return hero_error_set(err, 0, "unknown capability '%s'", list[i]);
        if (c == -2)
            *all = true;
        else
            *mask |= UINT64_C(1) << c;
    }
    return 0;
}

/* The default set adjusted by cap_add/cap_drop, docker's rules: cap_add ALL gives
 * every capability but the dropped ones; cap_drop ALL gives only the added ones;
 * otherwise drop from the defaults, then add. ALL and the defaults are limited to
 * what hero holds; adding by name what hero does not hold is an error. */
static json_t *capability_list(const hero_ctr_spec_t *spec, hero_error_t *err)
{
    uint64_t add, drop, caps = 0, held = held_caps();
    bool add_all, drop_all;
    if (cap_mask(spec->cap_add, &add, &add_all, err) < 0 ||
        cap_mask(spec->cap_drop, &drop, &drop_all, err) < 0)
        return NULL;
    if (add & ~held) {
        int c = 0;
        while (!(add & ~held & (UINT64_C(1) << c)))
            c++;
        hero_error_set(err, 0,
                       "cannot add capability %s: hero does not hold it on this host (it is "
                       "not in hero's bounding set)",
                       cap_names[c]);
        return NULL;
    }
    if (add_all) {
        caps = held & ~drop;
    } else if (drop_all) {
        caps = add;
    } else {
        for (size_t i = 0; i < sizeof default_caps / sizeof *default_caps; i++)
            caps |= UINT64_C(1) << cap_number(default_caps[i]);
        caps = ((caps & held) & ~drop) | add;
    }
    json_t *a = json_array();
    for (int i = 0; i < NCAPS; i++)
        if (caps & (UINT64_C(1) << i))
            json_array_append_new(a, json_string(cap_names[i]));
    return a;
}

/* ------------------------------------------------------------------------ mounts */

static json_t *mount_obj(const char *dst, const char *type, const char *src,
                         const char *const *opts)
{
    json_t *m = json_pack("{s:s, s:s, s:s}", "destination", dst, "type", type, "source", src);
    if (opts) {
        json_t *o = json_array();
        for (size_t i = 0; opts[i]; i++)
            json_array_append_new(o, json_string(opts[i]));
        json_object_set_new(m, "options", o);
    }
    return m;
}

#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})

static json_t *mounts_json(const hero_ctr_spec_t *spec, const hero_oci_opts_t *o)
{
    json_t *a = json_array();
    json_array_append_new(a, mount_obj("/proc", "proc", "proc", NULL));
    json_array_append_new(a, mount_obj("/dev", "tmpfs", "tmpfs",
                                       OPTS("nosuid", "strictatime", "mode=755", "size=65536k")));
    json_array_append_new(a, mount_obj("/dev/pts", "devpts", "devpts",
                                       OPTS("nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                            "mode=0620", "gid=5")));
    json_array_append_new(a, mount_obj("/dev/shm", "tmpfs", "shm",
                                       OPTS("nosuid", "noexec", "nodev", "mode=1777",
                                            "size=65536k")));
    json_array_append_new(a, mount_obj("/dev/mqueue", "mqueue", "mqueue",
                                       OPTS("nosuid", "noexec", "nodev")));
    json_array_append_new(a, mount_obj("/sys", "sysfs", "sysfs",
                                       OPTS("nosuid", "noexec", "nodev", "ro")));
    json_array_append_new(a, mount_obj("/sys/fs/cgroup", "cgroup", "cgroup",
                                       OPTS("nosuid", "noexec", "nodev", "relatime", "ro")));
    json_array_append_new(a, mount_obj("/.hero-init", "bind", o->init_path,
                                       OPTS("bind", "ro", "nosuid", "nodev")));
    json_array_append_new(a, mount_obj("/.hero", "bind", o->run_dir,
                                       OPTS("bind", "rw", "nosuid", "nodev", "noexec")));
    if (o->etc_dir) {
        /* plain binds of host files: hero edits hosts on the host side and the
         * container sees it */
        static const char *const files[] = {"resolv.conf", "hosts", "hostname"};
        for (size_t i = 0; i < 3; i++) {
            char *src = hero_xasprintf("%s/%s", o->etc_dir, files[i]);
            char *dst = hero_xasprintf("/etc/%s", files[i]);
            json_array_append_new(a, mount_obj(dst, "bind", src,
                                               OPTS("bind", "rw", "nosuid", "nodev", "noexec")));
            free(src);
            free(dst);
        }
    }
    for (size_t i = 0; i < spec->nmounts; i++)
        json_array_append_new(a, mount_obj(spec->mounts[i].dst, "bind", spec->mounts[i].src,
                                           OPTS("rbind", spec->mounts[i].ro ? "ro" : "rw")));
    return a;
}

/* ------------------------------------------------------------------------ linux */

static json_t *devices_json(void)
{
    json_t *d = json_array();
    json_array_append_new(d, json_pack("{s:b, s:s}", "allow", 0, "access", "rwm"));
    /* mknod of any node (it still needs CAP_MKNOD), as docker allows */
    json_array_append_new(d, json_pack("{s:b, s:s, s:s}", "allow", 1, "type", "c", "access", "m"));
    json_array_append_new(d, json_pack("{s:b, s:s, s:s}", "allow", 1, "type", "b", "access", "m"));
    /* the nodes crun creates in /dev: null zero full random urandom tty console ptmx */
    static const int devs[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}};
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        json_array_append_new(d, json_pack("{s:b, s:s, s:i, s:i, s:s}", "allow", 1, "type", "c",
                                           "major", devs[i][0], "minor", devs[i][1], "access",
                                           "rwm"));
    /* every /dev/pts/N (major 136) */
    json_array_append_new(d, json_pack("{s:b, s:s, s:i, s:s}", "allow", 1, "type", "c", "major",
                                       136, "access", "rwm"));
    return d;
}

static json_t *resources_json(const hero_ctr_spec_t *spec)
{
    json_t *r = json_object();
    json_object_set_new(r, "devices", devices_json());
    if (spec->memory) {
        json_int_t m = (json_int_t)(spec->memory > INT64_MAX ? INT64_MAX : spec->memory);
        /* swap = limit: memory+swap may not exceed the limit, so swap does not
         * extend it */
        json_object_set_new(r, "memory", json_pack("{s:I, s:I}", "limit", m, "swap", m));
    }
    if (spec->cpus > 0) {
        double q = spec->cpus * 100000.0;
        json_int_t quota = q < 1000 ? 1000 : (json_int_t)(q + 0.5); /* kernel minimum 1ms */
        json_object_set_new(r, "cpu", json_pack("{s:I, s:I}", "quota", quota, "period",
                                                (json_int_t)100000));
    }
    if (spec->pids_limit > 0)
        json_object_set_new(r, "pids", json_pack("{s:I}", "limit", (json_int_t)spec->pids_limit));
    return r;
}

static json_t *linux_json(const hero_ctr_spec_t *spec, const hero_oci_opts_t *o)
{
    static const char *const ns[] = {"pid", "network", "ipc", "uts", "mount", "cgroup"};
    static const char *const masked[] = {
        "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/proc/scsi",          "/sys/firmware",    "/sys/fs/selinux",   "/sys/dev/block",
    };
    static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                           "/proc/sysrq-trigger"};
    json_t *l = json_object();
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        json_array_append_new(a, json_pack("{s:s}", "type", ns[i]));
    json_object_set_new(l, "namespaces", a);
    if (o->cgroup_path)
        json_object_set_new(l, "cgroupsPath", json_string(o->cgroup_path));
    json_object_set_new(l, "resources", resources_json(spec));
    a = json_array();
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++)
        json_array_append_new(a, json_string(masked[i]));
    json_object_set_new(l, "maskedPaths", a);
    a = json_array();
    for (size_t i = 0; i < sizeof readonly / sizeof *readonly; i++)
        json_array_append_new(a, json_string(readonly[i]));
    json_object_set_new(l, "readonlyPaths", a);
    return l;
}

/* ----------------------------------------------------------------- config.json */

static json_t *rlimits_json(void)
{
    struct rlimit rl;
    uint64_t n = NOFILE_WANTED;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        (uint64_t)rl.rlim_max < n)
        n = (uint64_t)rl.rlim_max;
    json_t *a = json_array();
    json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "type", "RLIMIT_NOFILE", "soft",
                                       (json_int_t)n, "hard", (json_int_t)n));
    return a;
}

static bool utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* crun reads config.json as UTF-8: a string that is not would be dropped from it. */
static int check_utf8(const hero_ctr_spec_t *spec, char *const *args, char *const *env,
                      const char *hostname, const char *cwd, const hero_oci_opts_t *o,
                      hero_error_t *err)
{
    const char *bad = NULL;
    for (size_t i = 0; !bad && args[i]; i++)
        bad = utf8_ok(args[i]) ? NULL : "the command";
    for (size_t i = 0; !bad && env[i]; i++)
        bad = utf8_ok(env[i]) ? NULL : "env";
    for (size_t i = 0; !bad && i < spec->nmounts; i++)
        bad = utf8_ok(spec->mounts[i].src) && utf8_ok(spec->mounts[i].dst) ? NULL : "mounts";
    if (!bad && !utf8_ok(hostname))
        bad = "hostname";
    if (!bad && !utf8_ok(cwd))
        bad = "workdir";
    const char *paths[] = {o->rootfs, o->init_path, o->run_dir, o->etc_dir, o->cgroup_path};
    for (size_t i = 0; !bad && i < sizeof paths / sizeof *paths; i++)
        bad = !paths[i] || utf8_ok(paths[i]) ? NULL : "a host path";
    return bad ? hero_error_set(err, 0, "%s: not valid UTF-8", bad) : 0;
}

json_t *hero_oci_config(const hero_ctr_spec_t *spec, const json_t *image_config,
                        const char *image_rootfs, const hero_oci_opts_t *o, hero_error_t *err)
{
    if (!spec || !spec->name || !o || !o->rootfs || !o->init_path || !o->run_dir) {
        hero_error_set(err, 0, "container config: the name, the root, hero-init and the "
                               "run directory are required");
        return NULL;
    }
    if (!image_rootfs)
        image_rootfs = o->rootfs;
    const char *hostname = spec->hostname && *spec->hostname ? spec->hostname : spec->name;

    /* environment: the image's, then the spec's over it */
    char **env = NULL, **img_env = NULL, **args = NULL, *cwd_abs = NULL;
    size_t nenv = 0;
    uint32_t *gids = NULL;
    size_t ngids = 0;
    json_t *caps = NULL, *cfg = NULL;
    if (image_list(image_config, "Env", &img_env, err) < 0)
        goto out;
    for (size_t i = 0; img_env && img_env[i]; i++)
        env_set(&env, &nenv, img_env[i]);
    for (size_t i = 0; spec->env && spec->env[i]; i++)
        env_set(&env, &nenv, spec->env[i]);
    if (!env_has(env, "PATH"))
        env_set(&env, &nenv, "PATH=" DEFAULT_PATH);
    if (!env_has(env, "HOSTNAME")) { /* one the image or env gives wins, as with docker */
        char *hn = hero_xasprintf("HOSTNAME=%s", hostname);
        env_set(&env, &nenv, hn);
        free(hn);
    }

    args = hero_oci_args(spec, image_config, err);
    if (!args || hero_oci_check_exec(image_rootfs, env, args[0], err) < 0)
        goto out;

    const char *cwd = spec->workdir && *spec->workdir ? spec->workdir
                                                      : image_str(image_config, "WorkingDir");
    if (spec->workdir && *spec->workdir && spec->workdir[0] != '/') {
        hero_error_set(err, 0, "workdir '%s' is not an absolute path", spec->workdir);
        goto out;
    }
    /* an image's relative WorkingDir is taken from the root, as docker does */
    cwd_abs = cwd ? (cwd[0] == '/' ? hero_xstrdup(cwd) : hero_xasprintf("/%s", cwd))
                  : hero_xstrdup("/");

    const char *user = spec->user && *spec->user ? spec->user : image_str(image_config, "User");
    uint32_t uid, gid;
    if (hero_oci_resolve_user(image_rootfs, user, &uid, &gid, &gids, &ngids, err) < 0)
        goto out;
    caps = capability_list(spec, err);
    if (!caps || check_utf8(spec, args, env, hostname, cwd_abs, o, err) < 0)
        goto out;

    json_t *juser = json_pack("{s:I, s:I}", "uid", (json_int_t)uid, "gid", (json_int_t)gid);
    if (ngids) {
        json_t *g = json_array();
        for (size_t i = 0; i < ngids; i++)
            json_array_append_new(g, json_integer((json_int_t)gids[i]));
        json_object_set_new(juser, "additionalGids", g);
    }

    json_t *jargs = json_array();
    json_array_append_new(jargs, json_string("/.hero-init"));
    if (o->keep_alive)
        json_array_append_new(jargs, json_string("--keep-alive"));
    json_array_append_new(jargs, json_string("--status-dir"));
    json_array_append_new(jargs, json_string("/.hero"));
    json_array_append_new(jargs, json_string("--"));
    for (size_t i = 0; args[i]; i++)
        json_array_append_new(jargs, json_string(args[i]));

    json_t *capobj = json_pack("{s:O, s:O, s:O, s:[], s:[]}", "bounding", caps, "effective",
                               caps, "permitted", caps, "inheritable", "ambient");
    json_t *process = json_pack("{s:b, s:o, s:o, s:o, s:s, s:o, s:o, s:b}", "terminal", 0, "user",
                                juser, "args", jargs, "env", strv_to_json(env), "cwd", cwd_abs,
                                "capabilities", capobj, "rlimits", rlimits_json(),
                                "noNewPrivileges", 1);
    cfg = json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o}", "ociVersion", "1.0.2", "process",
                    process, "root", "path", o->rootfs, "readonly", 0, "hostname", hostname,
                    "mounts", mounts_json(spec, o), "linux", linux_json(spec, o));
    if (!cfg) /* json_pack fails only on allocation or a NULL string (checked above) */
        hero_error_set(err, 0, "container config: cannot build the JSON");
out:
    json_decref(caps);
    free(cwd_abs);
    free(gids);
    hero_strv_free(args);
    hero_strv_free(img_env);
    hero_strv_free(env);
    return cfg;
}

json_t *hero_oci_read(const char *dir)
{
    char *path = hero_xasprintf("%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    free(path);
    return j;
}

char *hero_oci_exec_user(const json_t *cfg)
{
    json_t *u = json_object_get(json_object_get(cfg, "process"), "user");
    json_t *uid = json_object_get(u, "uid"), *gid = json_object_get(u, "gid");
    if (!json_is_integer(uid) || json_integer_value(uid) < 0)
        return NULL;
    json_int_t g = json_is_integer(gid) && json_integer_value(gid) >= 0 ? json_integer_value(gid)
                                                                          : 0;
    return hero_xasprintf("%" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT,
                          json_integer_value(uid), g);
}

int hero_oci_write(const json_t *cfg, const char *path, hero_error_t *err)
{
    /* one string and one write: json_dump_file goes through stdio, a write per 4 KiB */
    char *buf = json_dumps(cfg, JSON_INDENT(1));
    if (!buf)
        return hero_error_set(err, 0, "cannot write '%s': the config does not serialise", path);
    size_t n = strlen(buf);
    int rc = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = hero_error_set(err, errno, "cannot write '%s'", path);
    } else {
        for (size_t off = 0; rc == 0 && off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                rc = hero_error_set(err, errno, "cannot write '%s'", path);
            else
                off += (size_t)w;
        }
        if (close(fd) < 0 && rc == 0)
            rc = hero_error_set(err, errno, "cannot write '%s'", path);
    }
    free(buf);
    return rc;
}
