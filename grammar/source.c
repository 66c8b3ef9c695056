/* Sources and the arena: the memory every parse lives in. */
#include "heroscript.h"
#include "runtime/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- arena ---- */
typedef struct chunk {
    struct chunk *next;
    size_t used, size;
    max_align_t data[];
} chunk_t;

struct hs_arena {
    chunk_t *head;
    size_t total;
};

enum { ARENA_CHUNK = 256 * 1024 };

hs_arena_t *hs_arena_new(void)
{
    return hero_xcalloc(1, sizeof(hs_arena_t));
}

void hs_arena_free(hs_arena_t *a)
{
    if (!a)
        return;
    for (chunk_t *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *hs_arena_alloc(hs_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    chunk_t *c = a->head;
    if (!c || c->size - c->used < n) {
        /* Big requests get a chunk of their own, put behind the current one so the
         * free space of the current chunk is not lost. */
        size_t sz = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        chunk_t *nc = hero_xmalloc(sizeof(chunk_t) + sz);
        nc->used = 0;
        nc->size = sz;
        if (c && sz != ARENA_CHUNK) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        a->total += sz;
        c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

char *hs_arena_strndup(hs_arena_t *a, const char *s, size_t n)
{
    char *p = hs_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

size_t hs_arena_used(const hs_arena_t *a)
{
    return a->total;
}

/* ---- sources ---- */
static void index_lines(hs_source_t *s)
{
    uint32_t n = 1;
    for (const char *p = s->text; (p = memchr(p, '\n', s->text + s->len - p)); p++)
        n++;
    s->lines = hero_xmalloc(sizeof(uint32_t) * n);
    s->lines[0] = 0;
    uint32_t i = 1;
    for (const char *p = s->text; (p = memchr(p, '\n', s->text + s->len - p)); p++)
        s->lines[i++] = (uint32_t)(p - s->text) + 1;
    s->nlines = n;
}

static bool is_markdown(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcasecmp(path + n - 3, ".md") == 0;
}

hs_source_t *hs_source_from_mem(const char *path, const char *text, size_t len, bool markdown)
{
    if (len > UINT32_MAX - 16)
        return NULL;
    hs_source_t *s = hero_xcalloc(1, sizeof(*s));
    s->path = hero_xstrdup(path);
    s->text = hero_xmalloc(len + 1);
    memcpy(s->text, text, len);
    s->text[len] = 0;
    s->len = (uint32_t)len;
    s->markdown = markdown;
    index_lines(s);
    return s;
}

hs_source_t *hs_source_read(const char *path, int *errno_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *errno_out = errno;
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *errno_out = errno;
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        *errno_out = EISDIR;
        close(fd);
        return NULL;
    }
    if (st.st_size > (off_t)(UINT32_MAX - 16)) {
        *errno_out = EFBIG;
        close(fd);
        return NULL;
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size : 4096, len = 0;
    char *buf = hero_xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap > UINT32_MAX / 2) {
                free(buf);
                close(fd);
                *errno_out = EFBIG;
                return NULL;
            }
            cap = cap ? cap * 2 : 4096;
            buf = hero_xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *errno_out = errno;
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    hs_source_t *s = hero_xcalloc(1, sizeof(*s));
    s->path = hero_xstrdup(path);
    s->text = buf;
    s->len = (uint32_t)len;
    s->markdown = is_markdown(path);
    index_lines(s);
    return s;
}

void hs_source_free(hs_source_t *s)
{
    if (!s)
        return;
    free(s->path);
    free(s->text);
    free(s->lines);
    free(s);
}

void hs_source_linecol(const hs_source_t *s, uint32_t off, uint32_t *line, uint32_t *col)
{
    uint32_t lo = 0, hi = s->nlines;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->lines[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    *line = lo + 1;
    *col = off - s->lines[lo] + 1;
}

bool hs_item_eq(const hs_item_t *it, const char *s)
{
    size_t n = strlen(s);
    return it->len == n && memcmp(it->p, s, n) == 0;
}

bool hs_item_ieq(const hs_item_t *it, const char *s)
{
    size_t n = strlen(s);
    return it->len == n && strncasecmp(it->p, s, n) == 0;
}
