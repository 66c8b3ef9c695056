/* hero_layer_lookup: a file of an image as the overlay mount of its layer dirs would
 * show it, found without mounting (to read an image's /etc/passwd, say).
 *
 * It follows overlayfs's own lookup: a merged directory is a stack of layer directories,
 * top first. Looking a name up in it asks each layer of the stack in turn: a whiteout
 * (char device 0/0) ends the search, the first entry found decides the kind; a
 * non-directory found first is the answer, alone; a directory found first collects the
 * directories of the same name further down, until a layer's copy is opaque
 * (trusted.overlay.opaque=y) or a layer has a non-directory or a whiteout there. A layer
 * without the name is passed over. Symlinks are followed in the merged view, absolute
 * ones from the image root, ".." stops at the root. */
#include "actions/heropods/layer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_SYMLINKS 40

typedef struct level {
    size_t name_end;   /* length of `cur` once this component is in */
    int *stack;        /* layer indices of this merged directory, top first */
    size_t nstack;
} level_t;

typedef struct look {
    const char *const *dirs;
    size_t nlayers;
    char *cur;         /* resolved path so far, relative ("" = root) */
    size_t curlen, curcap;
    level_t *lv;       /* lv[0] is the root */
    size_t depth, cap;
} look_t;

static char *host_path(const look_t *l, int layer, const char *name)
{
    return hero_xasprintf("%s/%s%s%s", l->dirs[layer], l->cur, *l->cur && *name ? "/" : "", name);
}

static bool is_opaque(const char *p)
{
    char v[2];
    ssize_t n = lgetxattr(p, "trusted.overlay.opaque", v, sizeof v);
    return n == 1 && v[0] == 'y';
}

/* Looks `name` up in the merged directory at the current level. Returns 1 when the
 * merged view has nothing there, 0 with *top (the layer supplying the entry), *st and,
 * for a directory, *out and *nout (its stack, malloc'd); -1 on error. */
static int child(look_t *l, const char *name, int *top, struct stat *st, int **out, size_t *nout,
                 hero_error_t *err)
{
    level_t *lv = &l->lv[l->depth];
    int *stack = hero_xmalloc(lv->nstack * sizeof *stack);
    size_t n = 0;
    bool found = false;
    for (size_t i = 0; i < lv->nstack; i++) {
        int layer = lv->stack[i];
        char *p = host_path(l, layer, name);
        struct stat s;
        if (lstat(p, &s) < 0) {
            int e = errno;
            if (e == ENOENT || e == ENOTDIR) {
                free(p);
                continue;
            }
            hero_error_set(err, e, "cannot look at '%s'", p);
            free(p);
            free(stack);
            return -1;
        }
        if (S_ISCHR(s.st_mode) && s.st_rdev == 0) { /* whiteout */
            free(p);
            break;
        }
        if (!found) {
            found = true;
            *top = layer;
            *st = s;
        }
        if (!S_ISDIR(s.st_mode) || !S_ISDIR(st->st_mode)) {
            free(p);
            break;
        }
        stack[n++] = layer;
        bool opaque = is_opaque(p);
        free(p);
        if (opaque)
            break;
    }
    if (!found) {
        free(stack);
        return 1;
    }
    *out = stack;
    *nout = n;
    return 0;
}

static void push(look_t *l, const char *name, size_t nlen, int *stack, size_t nstack)
{
    size_t need = l->curlen + 1 + nlen + 1;
    if (need > l->curcap) {
        l->curcap = need * 2;
        l->cur = hero_xrealloc(l->cur, l->curcap);
    }
    if (l->curlen)
        l->cur[l->curlen++] = '/';
    memcpy(l->cur + l->curlen, name, nlen);
    l->curlen += nlen;
    l->cur[l->curlen] = 0;
    if (l->depth + 1 == l->cap) {
        l->cap *= 2;
        l->lv = hero_xrealloc(l->lv, l->cap * sizeof *l->lv);
    }
    l->depth++;
    l->lv[l->depth] = (level_t){.name_end = l->curlen, .stack = stack, .nstack = nstack};
}

static void pop(look_t *l)
{
    if (l->depth == 0)
        return;
    free(l->lv[l->depth].stack);
    l->depth--;
    l->curlen = l->lv[l->depth].name_end;
    l->cur[l->curlen] = 0;
}

int hero_layer_lookup(const char *const *layer_dirs, const char *path, char **found_path,
                      hero_error_t *err)
{
    *found_path = NULL;
    look_t l = {.dirs = layer_dirs};
    while (layer_dirs[l.nlayers])
        l.nlayers++;
    if (l.nlayers == 0)
        return 1;
    l.cap = 16;
    l.lv = hero_xcalloc(l.cap, sizeof *l.lv);
    l.lv[0].stack = hero_xmalloc(l.nlayers * sizeof(int));
    for (size_t i = 0; i < l.nlayers; i++)
        l.lv[0].stack[i] = (int)i;
    l.lv[0].nstack = l.nlayers;
    l.curcap = 256;
    l.cur = hero_xmalloc(l.curcap);
    l.cur[0] = 0;

    char *todo = hero_xstrdup(path); /* what is left to resolve */
    size_t pos = 0;
    int hops = 0, rc = 0;
    int top = 0; /* the layer supplying the last resolved component */
    for (;;) {
        while (todo[pos] == '/')
            pos++;
        if (!todo[pos])
            break;
        size_t s = pos;
        while (todo[pos] && todo[pos] != '/')
            pos++;
        size_t nlen = pos - s;
        if (nlen == 1 && todo[s] == '.')
            continue;
        if (nlen == 2 && todo[s] == '.' && todo[s + 1] == '.') {
            pop(&l);
            continue;
        }
        char *name = hero_xstrndup(todo + s, nlen);
        struct stat st;
        int *stack = NULL;
        size_t nstack = 0;
        int layer = 0;
        rc = child(&l, name, &layer, &st, &stack, &nstack, err);
        if (rc != 0) {
            free(name);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            free(stack);
            if (++hops > MAX_SYMLINKS) {
                rc = hero_error_set(err, ELOOP, "cannot look up '%s' in the image", path);
                free(name);
                break;
            }
            char *p = host_path(&l, layer, name);
            free(name);
            char *target = hero_xmalloc((size_t)st.st_size + 1);
            ssize_t tn = readlink(p, target, (size_t)st.st_size + 1);
            if (tn < 0 || tn > st.st_size) {
                rc = hero_error_set(err, tn < 0 ? errno : EIO, "cannot read symlink '%s'", p);
                free(p);
                free(target);
                break;
            }
            free(p);
            target[tn] = 0;
            if (target[0] == '/')
                while (l.depth)
                    pop(&l);
            char *next = hero_xasprintf("%s/%s", target, todo + pos);
            free(target);
            free(todo);
            todo = next;
            pos = 0;
            continue;
        }
        /* a non-directory with more to resolve below it: not found (ENOTDIR) */
        size_t rest = pos;
        while (todo[rest] == '/' || (todo[rest] == '.' && (todo[rest + 1] == '/' || !todo[rest + 1])))
            rest++;
        if (todo[rest] && !S_ISDIR(st.st_mode)) {
            free(stack);
            free(name);
            rc = 1;
            break;
        }
        push(&l, name, nlen, stack, nstack);
        free(name);
        top = layer;
    }
    if (rc == 0)
        *found_path = l.depth == 0 ? hero_xstrdup(layer_dirs[0]) : host_path(&l, top, "");
    while (l.depth)
        pop(&l);
    free(l.lv[0].stack);
    free(l.lv);
    free(l.cur);
    free(todo);
    return rc;
}
