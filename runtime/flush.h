/* Syncing file data in the background while more of it is written.
 *
 * Why: on these VMs (and on any disk whose write cache is flushed by fsync) an fsync
 * costs time in proportion to the data written since the last one (about 0.45 ms per
 * MB here, the host flushing its own cache of the virtual disk), and starting writeback
 * early (sync_file_range) does not shorten it. A 20 MB layer file cost 10-37 ms of
 * fsync after it was written, on the critical path of a pull. Handing the file to
 * a flusher every few MB while it is written pays that time on another thread, so the
 * final fsync only has the last few MB to do.
 *
 * A flusher is one thread with a small queue; hero_flush_push never blocks the
 * writer (when the queue is full the request is dropped: the final fsync does that
 * part). It is no durability guarantee by itself: the writer still fsyncs at the end;
 * what the flusher adds is the first write error it saw (an error fdatasync reported
 * here is not reported again to a later fsync through another descriptor). Used from
 * one writer thread at a time. */
#ifndef HERO_RUNTIME_FLUSH_H
#define HERO_RUNTIME_FLUSH_H

#include "runtime/error.h"

typedef struct hero_flush hero_flush_t;

/* A flusher; its thread starts with the first push. */
hero_flush_t *hero_flush_new(void);

/* Queues an fdatasync of the file open as fd (a duplicate is kept until it is done, so
 * the caller may close fd at once); `what` names it in an error ("cannot write 'what'
 * to disk").
 * Never waits; failures to queue are dropped. */
void hero_flush_push(hero_flush_t *f, int fd, const char *what);

/* Waits for the queued syncs, stops the thread and frees f. Returns 0, or -1 with err
 * set when an fdatasync failed (its errno, and what was pushed with it). With err
 * NULL the caller is throwing the files away: syncs not started yet are dropped, and
 * nothing is reported. f NULL is fine. */
int hero_flush_end(hero_flush_t *f, hero_error_t *err);

#endif
