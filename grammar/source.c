/* Sources and the arena: the memory every parse lives in. */
#include "heroscript.h"
#include "runtime/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- arena ---- */
/* Chunks come straight from mmap. The first is small (ARENA_FIRST): most playbooks
 * are a few KB, and a huge page is 2 MiB to zero for every hero process, up to 5 ms
 * on a VM whose host must back it first. Then 2 MiB at a time, with transparent huge
 * pages asked for: parsing a big playbook is bound by page faults otherwise. */
typedef struct chunk {
    struct chunk *next;
    size_t used, size, mapped;
    max_align_t data[];
} chunk_t;

struct hs_arena {
    chunk_t *head;
    size_t total;
};

enum { ARENA_FIRST = 64 * 1024, ARENA_CHUNK = 2 * 1024 * 1024 };

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
        munmap(c, c->mapped);
    }
    free(a);
}

static chunk_t *chunk_new(size_t payload)
{
    size_t mapped = (sizeof(chunk_t) + payload + 4095) & ~(size_t)4095;
    void *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fputs("hero: out of memory\n", stderr);
        abort();
    }
    if (mapped >= ARENA_CHUNK)
        madvise(m, mapped, MADV_HUGEPAGE); /* a hint: fine if refused */
    chunk_t *c = m;
    c->used = 0;
    c->size = mapped - sizeof(chunk_t);
    c->mapped = mapped;
    return c;
}

void *hs_arena_alloc(hs_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    chunk_t *c = a->head;
    if (!c || c->size - c->used < n) {
        /* Big requests get a chunk of their own, put behind the current one so the
         * free space of the current chunk is not lost. */
        bool own = n > ARENA_CHUNK / 4;
        size_t size = (c ? ARENA_CHUNK : ARENA_FIRST) - sizeof(chunk_t);
        chunk_t *nc = chunk_new(own || n > size ? n : size);
        if (c && own) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        a->total += nc->mapped;
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
/* The line index is built on first use (a diagnostic, the formatter): a valid
 * playbook never needs it, and it costs a pass and 4 bytes a line. The fields are
 * a cache, so a const source may fill them. */
static void index_lines(const hs_source_t *cs)
{
    hs_source_t *s = (hs_source_t *)cs;
    if (s->lines)
        return;
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
    char *t = hero_xmalloc(len + 1);
    memcpy(t, text, len);
    t[len] = 0;
    s->text = t;
    s->len = (uint32_t)len;
    s->markdown = markdown;
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
    long page = sysconf(_SC_PAGESIZE);
    if (S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size % page != 0) {
        /* Map it: no copy, and the rest of the last page reads as zero, which is
         * the NUL the lexer stops at. (A file of whole pages is read instead.) */
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m != MAP_FAILED) {
            close(fd);
            hs_source_t *s = hero_xcalloc(1, sizeof(*s));
            s->path = hero_xstrdup(path);
            s->text = m;
            s->len = (uint32_t)st.st_size;
            s->mapped = (size_t)st.st_size;
            s->markdown = is_markdown(path);
            return s;
        }
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
    return s;
}

void hs_source_free(hs_source_t *s)
{
    if (!s)
        return;
    free(s->path);
    if (s->mapped)
        munmap((void *)s->text, s->mapped);
    else
        free((void *)s->text);
    free(s->lines);
    free(s);
}

void hs_source_linecol(const hs_source_t *s, uint32_t off, uint32_t *line, uint32_t *col)
{
    index_lines(s);
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
