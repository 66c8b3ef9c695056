/* Conversions from parameter text to typed values. Each returns NULL or a message. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "actions.h"

const char *hero_type_name(hero_type_t t)
{
    switch (t) {
    case HERO_T_STR: return "str";
    case HERO_T_BOOL: return "bool";
    case HERO_T_INT: return "int";
    case HERO_T_FLOAT: return "float";
    case HERO_T_SIZE: return "size";
    case HERO_T_DURATION: return "duration";
    case HERO_T_LIST: return "list";
    case HERO_T_IPV4_PREFIX: return "ipv4 prefix";
    case HERO_T_IPV4_ADDR: return "ipv4 address";
    }
    return "?";
}

static bool ieq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

const char *hero_conv_bool(const char *s, size_t n, bool *out)
{
    static const char *const yes[] = {"true", "yes", "y", "1"}, *const no[] = {"false", "no", "n", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (ieq(s, n, yes[i])) {
            *out = true;
            return NULL;
        }
        if (ieq(s, n, no[i])) {
            *out = false;
            return NULL;
        }
    }
    return "expected a bool: true or false (also yes/no, y/n, 1/0)";
}

/* Digits only, with an optional leading '-'; no trailing junk, no overflow. */
const char *hero_conv_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return "expected an integer";
    uint64_t v = 0;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return "expected an integer (digits only)";
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return "integer out of range";
        v = v * 10 + d;
    }
    if ((!neg && v > INT64_MAX) || (neg && v > (uint64_t)INT64_MAX + 1))
        return "integer out of range";
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return NULL;
}

const char *hero_conv_float(const char *s, size_t n, double *out)
{
    if (n == 0 || n > 63)
        return "expected a number such as 1.5";
    char buf[64];
    memcpy(buf, s, n);
    buf[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i]) && buf[i] != '.' && !(i == 0 && buf[i] == '-'))
            return "expected a number such as 1.5";
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno)
        return "expected a number such as 1.5";
    *out = v;
    return NULL;
}

/* 1024, 64k, 512M, 2G, 1T, optionally followed by B or iB (binary multiples, as
 * docker and podman read them). */
const char *hero_conv_size(const char *s, size_t n, uint64_t *out)
{
    static const char *msg = "expected a size such as 512M, 2G or 1024 (bytes)";
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return "size out of range";
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return msg;
    unsigned shift = 0;
    if (i < n) {
        switch (s[i]) {
        case 'b': case 'B': shift = 0; break;
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return msg;
        }
        i++;
        if (shift && i < n && (s[i] == 'i' || s[i] == 'I'))
            i++;
        if (shift && i < n && (s[i] == 'b' || s[i] == 'B'))
            i++;
        if (i != n)
            return msg;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return "size out of range";
    *out = v << shift;
    return NULL;
}

/* 500ms, 10s, 2m, 1h, and sums such as 1m30s. A bare number is refused: seconds or
 * milliseconds would be a guess. */
const char *hero_conv_duration(const char *s, size_t n, int64_t *ms)
{
    static const char *msg = "expected a duration such as 500ms, 10s, 2m or 1h30m";
    if (n == 0)
        return msg;
    int64_t total = 0;
    size_t i = 0;
    while (i < n) {
        int64_t v = 0;
        size_t st = i;
        while (i < n && isdigit((unsigned char)s[i])) {
            if (v > INT64_MAX / 10 - 10)
                return "duration out of range";
            v = v * 10 + (s[i] - '0');
            i++;
        }
        if (i == st)
            return msg;
        if (i == n)
            return "a duration needs a unit: ms, s, m or h (for example 10s)";
        int64_t mul;
        if (i + 1 < n && s[i] == 'm' && s[i + 1] == 's') {
            mul = 1;
            i += 2;
        } else if (s[i] == 's') {
            mul = 1000;
            i++;
        } else if (s[i] == 'm') {
            mul = 60000;
            i++;
        } else if (s[i] == 'h') {
            mul = 3600000;
            i++;
        } else {
            return msg;
        }
        if (v > (INT64_MAX - total) / mul)
            return "duration out of range";
        total += v * mul;
    }
    *ms = total;
    return NULL;
}

const char *hero_conv_ipv4(const char *s, size_t n, uint32_t *addr)
{
    static const char *msg = "expected an IPv4 address such as 10.10.0.1";
    uint32_t a = 0;
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= n || s[i] != '.')
                return msg;
            i++;
        }
        size_t st = i;
        unsigned v = 0;
        while (i < n && isdigit((unsigned char)s[i]) && i - st < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
            return msg;
        a = a << 8 | v;
    }
    if (i != n)
        return msg;
    *addr = a;
    return NULL;
}

const char *hero_conv_ipv4_prefix(const char *s, size_t n, uint32_t *addr, int *len)
{
    static const char *msg = "expected an IPv4 prefix such as 10.10.0.0/24";
    const char *slash = memchr(s, '/', n);
    if (!slash)
        return msg;
    if (hero_conv_ipv4(s, (size_t)(slash - s), addr))
        return msg;
    int64_t l;
    size_t ln = n - (size_t)(slash - s) - 1;
    if (ln == 0 || ln > 2 || hero_conv_int(slash + 1, ln, &l) || l < 0 || l > 32)
        return "the prefix length after '/' must be 0 to 32";
    *len = (int)l;
    uint32_t mask = l == 0 ? 0 : ~(uint32_t)0 << (32 - l);
    if (*addr & ~mask)
        return "host bits are set: the address of a prefix has them all zero";
    return NULL;
}

size_t hero_edit_distance(const char *a, size_t an, const char *b, size_t bn)
{
    /* Damerau (adjacent transposition) over short names; three rows suffice */
    if (an > 64 || bn > 64)
        return (size_t)-1;
    size_t r0[65], r1[65], r2[65];
    size_t *pp = r0, *p = r1, *c = r2;
    for (size_t j = 0; j <= bn; j++)
        p[j] = j;
    for (size_t i = 1; i <= an; i++) {
        c[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (p[j - 1] + cost < v)
                v = p[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
        }
        size_t *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return p[bn];
}
