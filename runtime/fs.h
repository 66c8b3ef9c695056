/* Small file-system helpers shared by the modules. */
#ifndef HERO_FS_H
#define HERO_FS_H

#include <stdbool.h>
#include <sys/types.h>

#include "runtime/error.h"

/* mkdir -p: creates path and its missing parents with mode (existing ones stay). */
int hero_mkdir_p(const char *path, mode_t mode, hero_error_t *err);

/* rm -rf for hero's own trees (runtime/fs_rmtree.c): never follows a symlink, never
 * crosses into another mount, a bind mount of the same file system too (a mount found
 * inside stops the removal with an error: "refusing to remove 'P': a file system is
 * mounted there"), and a name that vanishes meanwhile is fine, so two processes may
 * remove the same leftover at once. A missing path is fine. Thread-safe. */
int hero_fs_rmtree(const char *path, hero_error_t *err);

/* The same for `name` in directory dirfd, whatever it is (a directory goes with all it
 * holds): for a caller that resolved the parent itself. `name` is one name: "", ".",
 * ".." and anything with a slash are refused (EINVAL). Messages name it by `name`. */
int hero_fs_rmtree_at(int dirfd, const char *name, hero_error_t *err);

/* Writes a whole file in place (created, or truncated and rewritten): for a file
 * bind-mounted into a container, which a rename would leave behind. */
int hero_fs_write_file(const char *path, const char *text, size_t len, hero_error_t *err);

/* Writes a whole file atomically: a temporary file beside it, fsync, rename. */
int hero_fs_write_atomic(const char *path, const void *data, size_t len, hero_error_t *err);

/* Temporary names that say which process made them ("<prefix><pid><sep>..."): the pid
 * s starts with when sep follows it, else 0; and whether that process runs (or may:
 * one of another user; this process counts as running). */
long hero_fs_name_pid(const char *s, char sep);
bool hero_fs_pid_runs(long pid);

/* The process's umask, read without changing it (022 if it cannot be read). */
mode_t hero_fs_umask(void);

/* Best effort: removes the entries of dir whose names start with prefix and that were
 * last changed more than max_age_s seconds ago (what a killed process left). An entry
 * named "<prefix><pid>-..." whose process still runs is kept, however old: a long
 * extraction changes its top directory's times rarely. (The age still counts for the
 * rest, as a process of another pid namespace looks gone.) */
void hero_fs_remove_stale(const char *dir, const char *prefix, int max_age_s);

/* A path with its leading "~" (the home directory: $HOME, else the passwd entry)
 * or "~user" expanded; any other path is copied as it is. NULL with err when there
 * is no such home directory. The caller frees. */
char *hero_fs_expand_home(const char *path, hero_error_t *err);

#endif
