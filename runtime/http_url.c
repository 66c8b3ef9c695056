/* URLs for the HTTP client (runtime/http*.c): one parser for both transports and the
 * redirect rule, the origin a request's credentials are bound to, and the resolution
 * of a redirect's Location (the plain transport's; curl resolves its own). */
#include "runtime/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_url_free(http_url_t *u)
{
    free(u->host);
    free(u->hostport);
    free(u->target);
    memset(u, 0, sizeof(*u));
}

/* Both transports and the redirect rule read URLs through this one parser, and it
 * refuses what parsers disagree on (user info, backslashes, blanks), so the origin
 * hero compares is the host curl connects to. */
int http_url_parse(const char *url, http_url_t *u)
{
    memset(u, 0, sizeof(*u));
    const char *a;
    if (!strncasecmp(url, "http://", 7))
        a = url + 7;
    else if (!strncasecmp(url, "https://", 8)) {
        a = url + 8;
        u->tls = true;
    } else
        return -1;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0)
        return -1;
    for (size_t i = 0; i < alen; i++)
        if ((unsigned char)a[i] <= ' ' || a[i] == 0x7f || a[i] == '\\' || a[i] == '@')
            return -1;
    const char *host = a, *hend, *port = NULL;
    if (*a == '[') {
        hend = memchr(a, ']', alen);
        if (!hend || hend == a + 1)
            return -1;
        for (const char *c = a + 1; c < hend; c++)
            if (!strchr("0123456789abcdefABCDEF:.", *c))
                return -1;
        host = a + 1;
        if (hend + 1 < a + alen) {
            if (hend[1] != ':')
                return -1;
            port = hend + 2;
        }
    } else {
        hend = memchr(a, ':', alen);
        if (hend)
            port = hend + 1;
        else
            hend = a + alen;
        if (hend == a)
            return -1;
    }
    unsigned pn = u->tls ? 443 : 80;
    if (port && port < a + alen) {
        pn = 0;
        for (const char *c = port; c < a + alen; c++) {
            if (*c < '0' || *c > '9' || pn > 6553)
                return -1;
            pn = pn * 10 + (unsigned)(*c - '0');
        }
        if (pn == 0 || pn > 65535)
            return -1;
    }
    u->port = pn;
    u->host = hero_xstrndup(host, (size_t)(hend - host));
    for (char *c = u->host; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    bool v6 = strchr(u->host, ':') != NULL;
    if (pn == (u->tls ? 443u : 80u))
        u->hostport = hero_xasprintf(v6 ? "[%s]" : "%s", u->host);
    else
        u->hostport = hero_xasprintf(v6 ? "[%s]:%u" : "%s:%u", u->host, pn);
    const char *rest = a + alen;
    size_t tlen = strcspn(rest, "#");
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)rest[i] <= ' ' || rest[i] == 0x7f) {
            http_url_free(u);
            return -1;
        }
    if (tlen == 0)
        u->target = hero_xstrdup("/");
    else if (*rest == '?')
        u->target = hero_xasprintf("/%.*s", (int)tlen, rest);
    else
        u->target = hero_xstrndup(rest, tlen);
    return 0;
}

/* "scheme://host:port" of an absolute URL (lowercase host, default port filled in),
 * or NULL when it does not parse. */
char *http_url_origin(const char *url)
{
    http_url_t u;
    if (http_url_parse(url, &u) < 0)
        return NULL;
    bool v6 = strchr(u.host, ':') != NULL;
    char *out = hero_xasprintf(v6 ? "%s://[%s]:%u" : "%s://%s:%u", u.tls ? "https" : "http",
                               u.host, u.port);
    http_url_free(&u);
    return out;
}

/* RFC 3986 5.2.4: the path without its "." and ".." segments (a new string). */
static char *remove_dots(const char *in, size_t n)
{
    char *out = hero_xmalloc(n + 2);
    size_t o = 0;
    const char *p = in, *end = in + n;
    while (p < end) {
        size_t left = (size_t)(end - p);
        if (left >= 3 && !strncmp(p, "../", 3))
            p += 3;
        else if (left >= 2 && !strncmp(p, "./", 2))
            p += 2;
        else if (left >= 3 && !strncmp(p, "/./", 3))
            p += 2;
        else if (left == 2 && !strncmp(p, "/.", 2)) {
            out[o++] = '/';
            p += 2;
        } else if ((left >= 4 && !strncmp(p, "/../", 4)) || (left == 3 && !strncmp(p, "/..", 3))) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the segment before, and its slash */
            if (left == 3) {
                out[o++] = '/';
                p += 3;
            } else
                p += 3; /* (the "/" of "/../" starts the next segment) */
        } else if ((left == 1 && *p == '.') || (left == 2 && !strncmp(p, "..", 2)))
            p = end;
        else {
            size_t seg = 1;
            while (p + seg < end && p[seg] != '/')
                seg++;
            memcpy(out + o, p, seg);
            o += seg;
            p += seg;
        }
    }
    out[o] = 0;
    return out;
}

/* "scheme:" at the start (RFC 3986 3.1): an absolute reference. */
static bool has_scheme(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    while (*++s && (((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') || (*s >= '0' && *s <= '9') ||
                    *s == '+' || *s == '-' || *s == '.'))
        ;
    return *s == ':';
}

/* A redirect's Location, resolved against the URL asked for (`base`, http://): an
 * absolute URL, //host/path, /path or a relative path; dot segments removed from the
 * path, as curl does. */
char *http_url_resolve(const char *base, const char *raw)
{
    /* blanks, controls and bytes past ASCII are sent percent-encoded, as curl does */
    size_t n = strlen(raw);
    char *loc = hero_xmalloc(3 * n + 1), *e = loc;
    for (const unsigned char *c = (const unsigned char *)raw; *c; c++)
        if (*c <= ' ' || *c >= 0x7f)
            e += sprintf(e, "%%%02X", *c);
        else
            *e++ = (char)*c;
    *e = 0;
    char *merged;
    size_t whole = strcspn(base, "#"), noquery = strcspn(base, "?#");
    if (loc[0] == '?')
        merged = hero_xasprintf("%.*s%s", (int)noquery, base, loc);
    else if (loc[0] == '#' || loc[0] == 0)
        merged = hero_xstrndup(base, whole);
    else if (has_scheme(loc))
        /* absolute; one that is not http(s) is refused by the redirect rule */
        merged = hero_xstrdup(loc);
    else if (loc[0] == '/' && loc[1] == '/')
        merged = hero_xasprintf("http:%s", loc);
    else {
        const char *a = base + 7;
        size_t alen = strcspn(a, "/?#");
        int origin = (int)(a - base + alen);
        if (loc[0] == '/')
            merged = hero_xasprintf("%.*s%s", origin, base, loc);
        else {
            size_t plen = strcspn(a + alen, "?#");
            const char *slash = NULL;
            for (const char *p = a + alen; p < a + alen + plen; p++)
                if (*p == '/')
                    slash = p;
            if (slash)
                merged = hero_xasprintf("%.*s%s", (int)(slash + 1 - base), base, loc);
            else
                merged = hero_xasprintf("%.*s/%s", origin, base, loc);
        }
    }
    free(loc);
    /* the path: after the authority, up to a query or fragment */
    const char *sep = strstr(merged, "://");
    if (!sep)
        return merged;
    const char *path = sep + 3 + strcspn(sep + 3, "/?#");
    size_t plen = strcspn(path, "?#");
    if (plen == 0 || path[0] != '/')
        return merged;
    char *clean = remove_dots(path, plen);
    char *out = hero_xasprintf("%.*s%s%s", (int)(path - merged), merged, clean, path + plen);
    free(clean);
    free(merged);
    return out;
}
