/* Image layers: apply one OCI layer blob to an empty directory, in overlayfs format,
 * and find a file in a stack of such directories as the merged view shows it.
 *
 * Storage model: every layer is kept extracted in a directory of its own (keyed by its
 * diff_id, shared between images); a container's root is an overlay mount whose lower
 * dirs are the image's layer dirs, top first. A layer dir therefore holds overlayfs
 * whiteouts, not OCI ones, as containerd's overlay snapshotter does:
 *
 *   OCI `D/.wh.NAME`      -> a character device 0/0 named D/NAME
 *   OCI `D/.wh..wh..opq`  -> the xattr trusted.overlay.opaque="y" on D (D is created
 *                            if the layer has no entry for it)
 *   other `.wh..wh.*`     -> skipped (aufs bookkeeping, never meaningful)
 * The `.wh.` files themselves are never written. Within one layer, a whiteout only hides
 * lower layers: `.wh.NAME` next to a directory NAME of the same layer makes NAME opaque
 * instead (its own content stays), next to a non-directory NAME it changes nothing; a
 * directory entry that lands on a whiteout of the same layer replaces it and is made
 * opaque. (The kernel ignores the opaque xattr on a layer's root, so an opaque marker at
 * the top level of a layer hides nothing under overlayfs.)
 *
 * Safety against hostile tars: nothing is ever created, written, chowned or chmoded
 * outside dest_dir.
 *   - Entry names are cleaned lexically: "." and empty components dropped, "a/.."
 *     folded. A name whose ".." climbs above the root fails the layer ("layer entry
 *     '../evil': path escapes the image root"), and so does an absolute name other
 *     than "/" itself (which umoci writes for the root). So do hardlink targets.
 *   - A tar that ends without the last entry's padding or the end-of-archive blocks
 *     (umoci 0.4.7 writes such layers; podman reads them) is read as if they were
 *     there; the diff_id is of the bytes as they are.
 *   - The parent directory of every entry is resolved with openat2(RESOLVE_IN_ROOT |
 *     RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) relative to dest_dir, and missing
 *     parents are made one component at a time in-root. A symlink planted by an earlier
 *     entry of the same layer is followed *inside the root*, as a chroot would: after
 *     `link -> /` (or `-> ../../..`), the entry `link/evil` lands at <dest>/evil. That
 *     never escapes, and it is what containerd and umoci do; we accept it.
 *   - The last component is never followed: a file, directory, link or node that lands
 *     on an existing entry of another kind (or a symlink, or an existing file) replaces
 *     it (unlink, or recursive removal for a directory), it is never written through.
 *     A directory entry on an existing directory only updates its owner, mode, xattrs
 *     and mtime.
 *   - Hardlinks: the target is cleaned as above and its parent resolved in-root; the
 *     link is made with linkat() without AT_SYMLINK_FOLLOW, so a hardlink to a symlink
 *     links the symlink itself (no write access to where it points). A target outside
 *     the root, missing, or a directory fails the layer.
 *   - Layers are extracted each into its own empty directory, so a symlink from an
 *     earlier layer cannot be followed at all.
 *
 * What is kept: file data (sparse files stay sparse), mode including setuid/setgid/
 * sticky, numeric uid/gid (user and group names are ignored, as OCI wants), mtime and
 * atime with nanoseconds (directories get theirs at the end, after their content is
 * written), xattrs from pax headers (SCHILY.xattr.*, LIBARCHIVE.xattr.*) on files and
 * directories, symlinks (never followed), hardlinks within the layer, char and block
 * devices, fifos. Skipped: sockets; xattrs on symlinks and device nodes; xattrs named
 * trusted.overlay.* or user.overlay.* (a layer must not fake whiteouts, opaque dirs or
 * redirects), counted in xattrs_ignored; xattrs the kernel or file system refuses
 * (EPERM, EINVAL, EOPNOTSUPP: say security.selinux without SELinux), counted in
 * xattrs_failed. Hardlink metadata is that of the target, as with tar.
 * dest_dir itself is set to root:root 0755 first; a "./" entry in the tar overrides it.
 *
 * The caller syncs the finished tree once (hero_layer_sync). Big files are handed to
 * the disk as they are written (sync_file_range, without waiting) and, every few MB,
 * to a flusher thread (runtime/flush.h) that fdatasyncs them meanwhile, so that the
 * sync at the end finds little left to write; a flush that failed fails the layer. */
#ifndef HERO_LAYER_H
#define HERO_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/sha256.h"

/* "sha256:" + 64 hex digits + NUL */
#define HERO_LAYER_DIGEST_LEN HERO_SHA256_HEX_LEN

typedef struct hero_layer_result {
    char diff_id[HERO_LAYER_DIGEST_LEN]; /* sha256 of the uncompressed tar stream */
    const char *compression;   /* "none", "gzip" or "zstd" (static string) */
    uint64_t blob_size;        /* bytes of the blob as stored (compressed) */
    uint64_t size;             /* bytes of the uncompressed tar stream */
    uint64_t entries;          /* tar entries read (pax/GNU meta headers not counted) */
    uint64_t bytes_written;    /* file data written */
    uint64_t whiteouts;        /* `.wh.NAME` entries applied */
    uint64_t opaques;          /* `.wh..wh..opq` entries applied */
    uint64_t skipped;          /* sockets and aufs `.wh..wh.*` bookkeeping entries */
    uint64_t xattrs_ignored;   /* trusted/user.overlay.*, and xattrs on links and nodes */
    uint64_t xattrs_failed;    /* xattrs the kernel refused (EPERM, EINVAL, EOPNOTSUPP) */
    bool blob_mismatch;        /* the call failed because the blob's bytes are not those
                                  of src->digest and src->size (hero_layer_apply_src) */
} hero_layer_result_t;

/* Applies the layer blob at blob_path (a tar, tar+gzip or tar+zstd, told apart by its
 * first bytes, never by a media type; bzip2 and xz are refused by name) to dest_dir,
 * an existing empty directory the caller made. The sha256 of the uncompressed tar stream
 * (every byte out of the decompressor, including the end-of-archive blocks and any
 * padding after them) is computed in the same single pass; when expected_diff_id
 * ("sha256:<hex>") is not NULL it must match, or the call fails with
 * "layer diff_id mismatch: config says sha256:X, layer is sha256:Y". res may be NULL.
 *
 * Blocking (file I/O): meant for a threadpool thread. It starts one helper thread for
 * the length of the call (decompression and hashing run there, file writing on the
 * calling thread; signals are blocked in it). Thread-safe: no shared state. Needs
 * root (chown, device nodes, the trusted.* xattr).
 * Returns 0, or -1 with err set; on failure dest_dir holds a partial tree the caller
 * removes. Errors about an entry name it: "layer entry 'a/../../evil': path escapes the
 * image root"; stream errors say what broke ("truncated gzip input").
 *
 * A layer dir holds whatever the image has (setuid files, device nodes, world-writable
 * dirs): the directory the caller keeps layer dirs in should be 0700. */
int hero_layer_apply(const char *blob_path, const char *dest_dir, const char *expected_diff_id,
                     hero_layer_result_t *res, hero_error_t *err);

/* ---- reading a blob as it downloads, and checking its digest ----
 *
 * A feed says how much of a blob file a writer (a download, on the loop thread) has
 * written: hero_layer_apply_src then reads the file while it grows, waiting for bytes,
 * so that the layer is extracted while it downloads. The writer reports bytes that are
 * in the file and will not change; the reader never reads past them, nor past the
 * blob's size. Thread-safe: the writer and the reader are on different threads. */
typedef struct hero_layer_feed hero_layer_feed_t;

hero_layer_feed_t *hero_layer_feed_new(void);
/* avail: bytes from byte 0 that are in the file, final (smaller values are ignored). */
void hero_layer_feed_grow(hero_layer_feed_t *f, uint64_t avail);
/* The writer gave up, or starts the file over: a reader waiting or still to wait fails
 * with `why`. Bytes already read are not taken back; the caller throws the result away. */
void hero_layer_feed_fail(hero_layer_feed_t *f, const char *why);
/* Once no reader uses it any more. NULL is ignored. */
void hero_layer_feed_free(hero_layer_feed_t *f);

typedef struct hero_layer_src {
    int fd;                    /* the blob, read with pread from byte 0 (not closed) */
    const char *digest;        /* "sha256:<hex>": the blob's bytes must have this digest
                                  (every byte is hashed as it is read, the rest after the
                                  layer's end too), or the call fails with
                                  res->blob_mismatch set. NULL: not checked */
    int64_t size;              /* the blob's size, checked; -1: unknown (not with a feed) */
    hero_layer_feed_t *feed;   /* NULL: the file is complete */
} hero_layer_src_t;

/* hero_layer_apply with the blob given as above. With a digest, success means both the
 * blob (digest and size) and the uncompressed stream (expected_diff_id) are verified,
 * whatever wrote the file: a layer dir made from it can be trusted. */
int hero_layer_apply_src(const hero_layer_src_t *src, const char *dest_dir,
                         const char *expected_diff_id, hero_layer_result_t *res,
                         hero_error_t *err);

/* The bytes of file data in a layer dir (a file with several links counted once), as
 * bytes_written counts them when it is made: the size of a layer some other pull made.
 * Unreadable parts count 0. Blocking: for a threadpool thread. */
uint64_t hero_layer_dir_size(const char *dir);

/* Whether the file at blob_path has this digest (and size, when >= 0): 0 yes, 1 no (or
 * no such file), -1 with err set when it cannot be read. Blocking. */
int hero_layer_blob_verify(const char *blob_path, const char *digest, int64_t size,
                           hero_error_t *err);

/* Makes the layer dir `dir` (made by hero_layer_apply*, with res->entries tar entries)
 * durable before it is renamed into place: a layer of a few dozen files and directories
 * is synced inode by inode (fsync of each file, then of each directory after what it
 * holds, the directory's fsync covering its links, nodes and whiteouts), so that the
 * sync waits for this layer's bytes only; a bigger one with syncfs on its file system,
 * which waits for every dirty page there (a store's unsynced blobs, other programs'
 * files). Blocking: for a threadpool thread. */
int hero_layer_sync(const char *dir, uint64_t entries, hero_error_t *err);

/* Finds `path` (absolute or not: "/etc/passwd" and "etc/passwd" are the same) in the
 * stack of layer dirs made by hero_layer_apply (layer_dirs: top first, NULL-terminated)
 * as an overlay mount of them would show it, without mounting: a whiteout (char device
 * 0/0) in an upper layer hides the name below, an opaque directory hides the lower
 * layers' content of that directory, a non-directory hides lower directories. Symlinks
 * are followed in the merged view, inside the image root, including the last component
 * (up to 40 of them), like open(2) in a chroot.
 *
 * Returns 0 and sets *found_path (malloc'd, caller frees) to the host path of the entry
 * in the layer that supplies it; every component of that host path below the layer dir
 * is a real directory, and the entry itself is not a symlink. Returns 1 when the merged
 * view has no such file (a missing component, a whiteout, a non-directory in the middle,
 * a dangling symlink); *found_path is then NULL. Returns -1 with err set on errors
 * (ELOOP, a layer that cannot be read). */
int hero_layer_lookup(const char *const *layer_dirs, const char *path, char **found_path,
                      hero_error_t *err);

/* Paths are resolved with openat2(RESOLVE_IN_ROOT) when the kernel has it (Linux 5.6);
 * without it (ENOSYS: an old kernel, or valgrind) a resolver that walks one component
 * at a time with O_NOFOLLOW and reads symlinks itself gives the same answers, mount
 * points aside. Tests call this with 0 to run that resolver; 1 is the default. */
void hero_layer_use_openat2(int on);

#endif
