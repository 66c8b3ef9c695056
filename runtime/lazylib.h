/* libcurl, libarchive's writer and disk reader, and libnftables are opened when hero
 * first calls them (runtime/lazylib.c says why and how). Opening one costs some 10 ms
 * on these VMs (libcurl maps 32 libraries, libarchive brings libxml2 and ICU); a
 * caller that knows it will need libcurl or libnftables soon has it opened ahead, on
 * a thread of its own, while it goes on. */
#ifndef HERO_RUNTIME_LAZYLIB_H
#define HERO_RUNTIME_LAZYLIB_H

#include <archive.h>
#include <archive_entry.h>

#include "runtime/error.h"

enum {
    HERO_LAZY_CURL = 1,
    HERO_LAZY_NFT = 4,
};

/* Opens these libraries (HERO_LAZY_* ORed) on a detached thread, in the order above,
 * and returns at once. Each library is opened once per process, by whoever asks
 * first; one that cannot be opened is reported when a function of it is called. */
void hero_lazylib_preload(unsigned libs);

/* The address of function `name` of the shared libcrypto (libcrypto.so.3), opened
 * on first use: for the few OpenSSL functions hero does not link in (see lazylib.c).
 * NULL with err set when the library or the function is missing. Any thread. */
void *hero_lazylib_crypto_sym(const char *name, hero_error_t *err);

/* libarchive's disk reader and writer, from the shared libarchive (opened on first
 * call): hero_ar_X is archive_X. hero's linked-in libarchive is the tar reader and its
 * decompressors (with some generic entry points, archive_write_header among them,
 * that would link without complaint), so an archive or entry made by one of these
 * goes to these alone. */
__typeof__(archive_error_string) hero_ar_error_string;
__typeof__(archive_read_disk_new) hero_ar_read_disk_new;
__typeof__(archive_read_disk_set_symlink_physical) hero_ar_read_disk_set_symlink_physical;
__typeof__(archive_read_disk_set_standard_lookup) hero_ar_read_disk_set_standard_lookup;
__typeof__(archive_read_disk_open) hero_ar_read_disk_open;
__typeof__(archive_read_disk_descend) hero_ar_read_disk_descend;
__typeof__(archive_read_next_header2) hero_ar_read_next_header2;
__typeof__(archive_read_close) hero_ar_read_close;
__typeof__(archive_read_free) hero_ar_read_free;
__typeof__(archive_write_new) hero_ar_write_new;
__typeof__(archive_write_add_filter_gzip) hero_ar_write_add_filter_gzip;
__typeof__(archive_write_set_filter_option) hero_ar_write_set_filter_option;
__typeof__(archive_write_set_format_pax_restricted) hero_ar_write_set_format_pax_restricted;
__typeof__(archive_write_open_fd) hero_ar_write_open_fd;
__typeof__(archive_write_header) hero_ar_write_header;
__typeof__(archive_write_data) hero_ar_write_data;
__typeof__(archive_write_close) hero_ar_write_close;
__typeof__(archive_write_free) hero_ar_write_free;
__typeof__(archive_entry_new) hero_ar_entry_new;
__typeof__(archive_entry_free) hero_ar_entry_free;
__typeof__(archive_entry_pathname) hero_ar_entry_pathname;
__typeof__(archive_entry_sourcepath) hero_ar_entry_sourcepath;
__typeof__(archive_entry_filetype) hero_ar_entry_filetype;
__typeof__(archive_entry_rdev) hero_ar_entry_rdev;
__typeof__(archive_entry_size) hero_ar_entry_size;
__typeof__(archive_entry_copy_pathname) hero_ar_entry_copy_pathname;

#endif
