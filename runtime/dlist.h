/* Intrusive doubly linked lists: any struct with `prev` and `next` pointers to its own
 * type, headed by a plain pointer (NULL: empty). head and node are evaluated more than
 * once: pass plain lvalues (h->conns, c), nothing with side effects. */
#ifndef HERO_RUNTIME_DLIST_H
#define HERO_RUNTIME_DLIST_H

/* node goes first in the list */
#define HERO_DLIST_PUSH(head, node)       \
    do {                                  \
        (node)->prev = NULL;              \
        (node)->next = (head);            \
        if (head)                         \
            (head)->prev = (node);        \
        (head) = (node);                  \
    } while (0)

/* node leaves the list (a node in no list is left as it is) */
#define HERO_DLIST_UNLINK(head, node)                \
    do {                                             \
        if ((node)->prev)                            \
            (node)->prev->next = (node)->next;       \
        else if ((head) == (node))                   \
            (head) = (node)->next;                   \
        if ((node)->next)                            \
            (node)->next->prev = (node)->prev;       \
        (node)->prev = (node)->next = NULL;          \
    } while (0)

#endif
