/* Image references and platforms, normalised as docker does (the grammar is
 * distribution's reference package):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [domain "/"] component ("/" component)*
 *   domain     := host [":" port] | "[" ipv6 "]" [":" port]; the first part of the
 *                 name is a domain when it holds "." or ":", is "localhost", starts
 *                 with "[", or has an uppercase letter
 *   component  := [a-z0-9]+ ((("." | "_" | "__" | "-"+) [a-z0-9]+)*
 *   tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest     := "sha256:" 64 lowercase hex (the only algorithm hero verifies)
 *
 * Without a domain the registry is docker.io, and a one-component name gets
 * "library/"; index.docker.io is docker.io; no tag and no digest means ":latest". */
#include "registry_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { REF_NAME_MAX = 255, REF_TAG_MAX = 128 };

static int ref_fail(hero_error_t *err, const char *text, const char *why)
{
    return hero_error_set_plain(err, EINVAL, "invalid image reference '%s': %s", text, why);
}

static bool lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool component_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return false;
    for (;;) {
        if (i == n || !lower_alnum(s[i]))
            return false;
        while (i < n && lower_alnum(s[i]))
            i++;
        if (i == n)
            return true;
        size_t j = i + 1; /* one separator, then alphanumerics again */
        if (s[i] == '_' && j < n && s[j] == '_')
            j++;
        else if (s[i] == '-')
            while (j < n && s[j] == '-')
                j++;
        else if (s[i] != '.' && s[i] != '_')
            return false;
        i = j;
    }
}

static bool host_label_ok(const char *s, size_t n)
{
    if (n == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool port_ok(const char *s, size_t n)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v > 0 && v <= 65535;
}

static bool domain_ok(const char *s, size_t n)
{
    const char *end = s + n, *hostend;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        for (const char *c = s + 1; c < close; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
                return false;
        hostend = close + 1;
        if (hostend < end && *hostend != ':')
            return false;
    } else {
        hostend = memchr(s, ':', n);
        if (!hostend)
            hostend = end;
        const char *label = s;
        for (const char *c = s; c <= hostend; c++) {
            if (c == hostend || *c == '.') {
                if (!host_label_ok(label, (size_t)(c - label)))
                    return false;
                label = c + 1;
            }
        }
    }
    if (hostend < end)
        return port_ok(hostend + 1, (size_t)(end - hostend - 1));
    return true;
}

static bool looks_like_domain(const char *s, size_t n)
{
    if (n == 9 && !memcmp(s, "localhost", 9))
        return true;
    if (n && s[0] == '[')
        return true;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == ':' || (s[i] >= 'A' && s[i] <= 'Z'))
            return true;
    return false;
}

static bool tag_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REF_TAG_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

void hero_ref_free(hero_ref_t *ref)
{
    if (!ref)
        return;
    free(ref->registry);
    free(ref->repository);
    free(ref->tag);
    free(ref->digest);
    free(ref->canonical);
    memset(ref, 0, sizeof(*ref));
}

static int ref_parse(const char *text, char *buf, hero_ref_t *ref, hero_error_t *err)
{
    /* digest */
    char *at = strchr(buf, '@');
    if (at) {
        *at = 0;
        const char *why = hero_sha256_digest_problem(at + 1);
        if (why)
            return ref_fail(err, text, why);
        ref->digest = hero_xstrdup(at + 1);
    }
    /* tag: a ':' after the last '/' */
    char *slash = strrchr(buf, '/');
    char *colon = strrchr(slash ? slash : buf, ':');
    if (colon) {
        *colon = 0;
        if (!tag_ok(colon + 1))
            return ref_fail(err, text, "invalid tag");
        ref->tag = hero_xstrdup(colon + 1);
    }
    if (!buf[0])
        return ref_fail(err, text, "no repository name");
    /* domain */
    const char *path = buf;
    char *first = strchr(buf, '/');
    if (first && looks_like_domain(buf, (size_t)(first - buf))) {
        if (!domain_ok(buf, (size_t)(first - buf)))
            return ref_fail(err, text, "invalid registry host");
        ref->registry = hero_xstrndup(buf, (size_t)(first - buf));
        for (char *c = ref->registry; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (!strcmp(ref->registry, "index.docker.io")) {
            free(ref->registry);
            ref->registry = hero_xstrdup("docker.io");
        }
        path = first + 1;
    } else {
        ref->registry = hero_xstrdup("docker.io");
    }
    /* repository */
    for (const char *c = path; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            return ref_fail(err, text, "repository name must be lowercase");
    for (const char *c = path;;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (!component_ok(c, n))
            return ref_fail(err, text, "invalid repository name");
        if (!e)
            break;
        c = e + 1;
    }
    if (!strcmp(ref->registry, "docker.io") && !strchr(path, '/'))
        ref->repository = hero_xasprintf("library/%s", path);
    else
        ref->repository = hero_xstrdup(path);
    if (strlen(ref->registry) + 1 + strlen(ref->repository) > REF_NAME_MAX)
        return ref_fail(err, text, "name longer than 255 characters");
    if (!ref->tag && !ref->digest)
        ref->tag = hero_xstrdup("latest");
    ref->canonical = hero_xasprintf("%s/%s%s%s%s%s", ref->registry, ref->repository,
                                    ref->tag ? ":" : "", ref->tag ? ref->tag : "",
                                    ref->digest ? "@" : "", ref->digest ? ref->digest : "");
    return 0;
}

int hero_ref_parse(const char *text, hero_ref_t *ref, hero_error_t *err)
{
    memset(ref, 0, sizeof(*ref));
    if (!text || !*text)
        return ref_fail(err, text ? text : "", "empty");
    if (strlen(text) > 1024)
        return ref_fail(err, "...", "longer than 1024 characters");
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return ref_fail(err, text, "contains a blank or a non-ASCII character");
    char *buf = hero_xstrdup(text);
    int rc = ref_parse(text, buf, ref, err);
    free(buf);
    if (rc < 0)
        hero_ref_free(ref);
    return rc;
}

/* ---- platforms ---- */

void hero_platform_free(hero_platform_t *p)
{
    if (!p)
        return;
    free(p->os);
    free(p->arch);
    free(p->variant);
    memset(p, 0, sizeof(*p));
}

void hero_platform_host(hero_platform_t *p)
{
    const char *arch = "amd64", *variant = NULL;
#if defined(__x86_64__)
    arch = "amd64";
#elif defined(__aarch64__)
    arch = "arm64";
    variant = "v8";
#elif defined(__arm__) && defined(__ARM_ARCH_7A__)
    arch = "arm";
    variant = "v7";
#elif defined(__arm__)
    arch = "arm";
    variant = "v6";
#elif defined(__i386__)
    arch = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    arch = "ppc64le";
#elif defined(__s390x__)
    arch = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
    arch = "riscv64";
#endif
    p->os = hero_xstrdup("linux");
    p->arch = hero_xstrdup(arch);
    p->variant = variant ? hero_xstrdup(variant) : NULL;
}

/* Other spellings of the same architectures (uname and Debian names). */
static void platform_normalise(hero_platform_t *p)
{
    static const struct { const char *from, *arch, *variant; } alias[] = {
        {"x86_64", "amd64", NULL}, {"x86-64", "amd64", NULL}, {"aarch64", "arm64", NULL},
        {"armhf", "arm", "v7"},    {"armel", "arm", "v6"},    {"i386", "386", NULL},
        {"i686", "386", NULL},
    };
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++) {
        if (strcmp(p->arch, alias[i].from) != 0)
            continue;
        free(p->arch);
        p->arch = hero_xstrdup(alias[i].arch);
        if (alias[i].variant && !p->variant)
            p->variant = hero_xstrdup(alias[i].variant);
        break;
    }
}

int hero_platform_parse(const char *text, hero_platform_t *p, hero_error_t *err)
{
    memset(p, 0, sizeof(*p));
    char *parts[3] = {0};
    size_t n = 0;
    bool ok = text && *text && strlen(text) < 96;
    for (const char *c = text; ok;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        ok = len > 0 && n < 3;
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)c[i]) || c[i] == '_' || c[i] == '-';
        if (!ok)
            break;
        parts[n] = hero_xstrndup(c, len);
        for (char *x = parts[n]; *x; x++)
            *x = (char)tolower((unsigned char)*x);
        n++;
        if (!e)
            break;
        c = e + 1;
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            free(parts[i]);
        return hero_error_set_plain(err, EINVAL, "invalid platform '%s' (expected "
                                                 "os/arch[/variant])",
                                    text ? text : "");
    }
    if (n == 1) {
        p->os = hero_xstrdup("linux");
        p->arch = parts[0];
    } else {
        p->os = parts[0];
        p->arch = parts[1];
        p->variant = parts[2];
    }
    platform_normalise(p);
    return 0;
}
