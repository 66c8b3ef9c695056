/* The state store on SQLite (see store.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sqlite3.h>

#include "runtime/fs.h"
#include "runtime/store.h"

enum { STMT_CACHE = 48 };

struct hero_store {
    sqlite3 *db;
    char *base_dir;
    char uid[17];
    /* prepared statements, kept for the store's life and found by their SQL text's
     * address (every SQL text here is a literal): compiling them again for every
     * call was a quarter of hero's own CPU time per container */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    size_t ncache;
    int depth;   /* explicit transaction open */
    int batch;   /* hero_store_batch_begin calls not yet ended */
    bool batch_own;  /* the outermost batch opened the transaction */
};

/* Each entry moves the schema one version up; never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE instances("
    "  name TEXT PRIMARY KEY, settings TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE containers("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  instance TEXT NOT NULL, name TEXT NOT NULL, image TEXT NOT NULL,"
    "  spec TEXT NOT NULL, spec_hash TEXT NOT NULL, state TEXT NOT NULL,"
    "  pid INTEGER NOT NULL DEFAULT 0, exit_code INTEGER NOT NULL DEFAULT -1,"
    "  exit_signal INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL, started INTEGER NOT NULL DEFAULT 0,"
    "  finished INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE(instance, name));"
    "CREATE TABLE images("
    "  name TEXT PRIMARY KEY, ref TEXT, digest TEXT, rootfs TEXT NOT NULL,"
    "  config TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE host_objects("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, container_id INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL, ref TEXT NOT NULL, created INTEGER NOT NULL,"
    "  UNIQUE(container_id, kind, ref));"
    "CREATE TABLE leases("
    "  instance TEXT NOT NULL, addr TEXT NOT NULL, container_id INTEGER NOT NULL,"
    "  PRIMARY KEY(instance, addr));",
    /* 2: the store's own random id */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO meta(key, value) VALUES('uid', lower(hex(randomblob(8))));",
    /* 3: what an image's reference pointed at when it was pulled (an index or a
     * manifest), so a later pull asks the registry with one HEAD */
    "ALTER TABLE images ADD COLUMN ref_digest TEXT;",
    /* 4: IPv6 overlay addresses: host number `host` in the node's /64 `subnet` */
    "CREATE TABLE overlay_leases("
    "  subnet TEXT NOT NULL, host INTEGER NOT NULL, container_id INTEGER NOT NULL UNIQUE,"
    "  PRIMARY KEY(subnet, host));",
    /* 5: the image a container was made from (its layer stack and config), so that a
     * later pull or import under the same name neither changes the container's root
     * nor lets garbage collection take its layers */
    "ALTER TABLE containers ADD COLUMN image_rootfs TEXT;"
    "ALTER TABLE containers ADD COLUMN image_config TEXT;",
};

static int db_error(hero_store_t *s, hero_error_t *err, const char *what)
{
    int ext = sqlite3_extended_errcode(s->db);
    int code = (ext & 0xff) == SQLITE_CONSTRAINT ? EEXIST
               : (ext & 0xff) == SQLITE_BUSY   ? EBUSY
                                               : EIO;
    hero_error_set(err, 0, "state store (%s/hero.db): %s: %s", s->base_dir, what,
                   sqlite3_errmsg(s->db));
    if (err)
        err->code = code;
    return -1;
}

static int exec_sql(hero_store_t *s, const char *sql, hero_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        hero_error_set(err, 0, "state store (%s/hero.db): %s", s->base_dir,
                       msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int hero_store_schema_version(hero_store_t *s)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(hero_store_t *s, hero_error_t *err)
{
    /* Serialised by the write lock, so two hero processes never both migrate. */
    if (exec_sql(s, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    int v = hero_store_schema_version(s);
    int n = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (v > n) {
        exec_sql(s, "ROLLBACK", NULL);
        return hero_error_set(err, 0,
                              "state store %s/hero.db has schema version %d; this hero knows "
                              "up to %d: use a newer hero",
                              s->base_dir, v, n);
    }
    for (; v < n; v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", v + 1);
        if (exec_sql(s, migrations[v], err) < 0 || exec_sql(s, pragma, err) < 0) {
            exec_sql(s, "ROLLBACK", NULL);
            return hero_error_wrap(err, "migrating to schema version %d", v + 1);
        }
    }
    return exec_sql(s, "COMMIT", err);
}

/* A WAL file longer than this is checkpointed when the store closes (see
 * hero_store_open): some 64 pages of 4 KB. */
#define WAL_KEEP_BYTES (64 * 4096 + 32)

int hero_store_open(const char *base_dir, hero_store_t **out, hero_error_t *err)
{
    if (hero_mkdir_p(base_dir, 0700, err) < 0)
        return -1;
    hero_store_t *s = hero_xcalloc(1, sizeof(*s));
    s->base_dir = hero_xstrdup(base_dir);
    char *path = hero_xasprintf("%s/hero.db", base_dir);
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    free(path);
    if (rc != SQLITE_OK) {
        hero_error_set(err, 0, "cannot open the state store %s/hero.db: %s", base_dir,
                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        hero_store_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* No checkpoint when the last connection closes, unless the WAL file has grown
     * past WAL_KEEP_BYTES (hero_store_close). Closing would copy the WAL into the database
     * and fsync both, and a hero process closes its store last thing: 2-8 ms of every
     * run here, more while the disk is busy writing a pulled layer. A commit is in
     * the WAL at once (what a killed hero needs), and the WAL is on the disk by the
     * next checkpoint or the kernel's own writeback (within some 30 s): a power loss
     * before that loses the last transactions, never consistency (the WAL's frames
     * are checksummed). The next process to open the store alone reads the whole WAL
     * to index it, so it is kept short: a few dozen runs' commits, some 0.3 ms to
     * read. hero.db-wal beside hero.db is part of the state. */
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    /* Switching a new database to WAL takes a lock that the busy handler does not
     * wait for; when processes open a fresh store at once, retry for a while. */
    int tries = 0;
    hero_error_t e = HERO_ERROR_INIT;
    while (exec_sql(s, "PRAGMA journal_mode=WAL", &e) < 0 &&
           sqlite3_errcode(s->db) == SQLITE_BUSY && tries++ < 200) {
        hero_error_clear(&e);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (e.msg) {
        if (err)
            *err = e;
        else
            hero_error_clear(&e);
        hero_store_close(s);
        return -1;
    }
    if (exec_sql(s, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err) < 0 ||
        migrate(s, err) < 0) {
        hero_store_close(s);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key='uid'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(s->uid, sizeof(s->uid), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (!s->uid[0]) {
        hero_error_set(err, 0, "state store %s/hero.db has no uid", base_dir);
        hero_store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

const char *hero_store_uid(const hero_store_t *s)
{
    return s->uid;
}

void hero_store_close(hero_store_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ncache; i++)
        sqlite3_finalize(s->cache[i].st);
    /* a long WAL, whoever wrote it, is checkpointed (and removed) by the last process
     * to close the store: see hero_store_open */
    struct stat st;
    const char *db = s->db ? sqlite3_db_filename(s->db, "main") : NULL;
    if (db && stat(sqlite3_filename_wal(db), &st) == 0 && st.st_size > WAL_KEEP_BYTES)
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
    sqlite3_close(s->db);
    free(s->base_dir);
    free(s);
}

const char *hero_store_base_dir(const hero_store_t *s)
{
    return s->base_dir;
}

static sqlite3_stmt *prep(hero_store_t *s, const char *sql, hero_error_t *err);

static const char sql_begin[] = "BEGIN IMMEDIATE", sql_commit[] = "COMMIT",
                  sql_rollback[] = "ROLLBACK";

/* One of the statements above, prepared once: compiling "BEGIN IMMEDIATE" and
 * "COMMIT" again for every transaction cost about a third of their time. */
static int tx_sql(hero_store_t *s, const char *sql, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, sql, NULL);
    if (!st)
        return exec_sql(s, sql, err);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        hero_error_set(err, 0, "state store (%s/hero.db): %s", s->base_dir, sqlite3_errmsg(s->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int hero_store_begin(hero_store_t *s, hero_error_t *err)
{
    if (tx_sql(s, sql_begin, err) < 0)
        return -1;
    s->depth = 1;
    return 0;
}

int hero_store_commit(hero_store_t *s, hero_error_t *err)
{
    s->depth = 0;
    if (tx_sql(s, sql_commit, err) == 0)
        return 0;
    /* a transaction left open would take the next calls of this store with it */
    if (!sqlite3_get_autocommit(s->db))
        tx_sql(s, sql_rollback, NULL);
    return -1;
}

void hero_store_rollback(hero_store_t *s)
{
    s->depth = 0;
    if (!sqlite3_get_autocommit(s->db))
        tx_sql(s, sql_rollback, NULL);
}

/* Ends a call's own transaction (`own`: it opened one; otherwise it ran inside the
 * caller's, which the caller ends): commit when rc >= 0, roll back otherwise.
 * 0, or -1 when rc < 0 or the commit fails. */
static int own_end(hero_store_t *s, bool own, int rc, hero_error_t *err)
{
    if (own) {
        if (rc < 0)
            hero_store_rollback(s);
        else if (hero_store_commit(s, err) < 0)
            rc = -1;
    }
    return rc < 0 ? -1 : 0;
}

int hero_store_batch_begin(hero_store_t *s, hero_error_t *err)
{
    if (s->batch++ > 0 || s->depth)
        return 0; /* inside a batch, or a caller's transaction: it commits */
    if (hero_store_begin(s, err) < 0) {
        s->batch--;
        return -1;
    }
    s->batch_own = true;
    return 0;
}

int hero_store_batch_end(hero_store_t *s, hero_error_t *err)
{
    if (s->batch == 0 || --s->batch > 0 || !s->batch_own)
        return 0;
    s->batch_own = false;
    /* a failed statement rolled back itself, or (on a few errors) the whole
     * transaction: commit what is left, as each statement would have alone */
    if (sqlite3_get_autocommit(s->db)) {
        s->depth = 0;
        return 0;
    }
    return hero_store_commit(s, err);
}

/* ---- statement helpers ---- */
static sqlite3_stmt *prep(hero_store_t *s, const char *sql, hero_error_t *err)
{
    for (size_t i = 0; i < s->ncache; i++)
        if (s->cache[i].sql == sql)
            return s->cache[i].st;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        db_error(s, err, "prepare");
        return NULL;
    }
    if (s->ncache < STMT_CACHE) {
        s->cache[s->ncache].sql = sql;
        s->cache[s->ncache].st = st;
        s->ncache++;
    }
    return st;
}

/* Done with a statement from prep(): ready it for its next use (or free it when
 * the cache was full). */
static void release(hero_store_t *s, sqlite3_stmt *st)
{
    for (size_t i = 0; i < s->ncache; i++)
        if (s->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

static char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? hero_xstrdup((const char *)t) : NULL;
}

static void bind_str(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Runs a statement that returns no rows. */
static int run_done(hero_store_t *s, sqlite3_stmt *st, const char *what, hero_error_t *err)
{
    int rc = sqlite3_step(st);
    release(s, st);
    if (rc != SQLITE_DONE)
        return db_error(s, err, what);
    return 0;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- the store's own key/value notes ---- */
int hero_store_meta_get(hero_store_t *s, const char *key, char **value, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "SELECT value FROM meta WHERE key=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *value = col_str(st, 0);
    release(s, st);
    if (rc == SQLITE_ROW)
        return *value ? 0 : 1;
    return rc == SQLITE_DONE ? 1 : db_error(s, err, "reading a note");
}

int hero_store_meta_list(hero_store_t *s, const char *prefix, char ***keys, char ***values,
                         size_t *n, hero_error_t *err)
{
    *keys = *values = NULL;
    *n = 0;
    sqlite3_stmt *st =
        prep(s, "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
             err);
    if (!st)
        return -1;
    bind_str(st, 1, prefix);
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            *keys = hero_xrealloc(*keys, cap * sizeof(char *));
            *values = hero_xrealloc(*values, cap * sizeof(char *));
        }
        (*keys)[*n] = col_str(st, 0);
        (*values)[*n] = col_str(st, 1);
        (*n)++;
        (*keys)[*n] = (*values)[*n] = NULL;
    }
    release(s, st);
    if (rc != SQLITE_DONE)
        return db_error(s, err, "listing notes");
    return 0;
}

int hero_store_meta_del(hero_store_t *s, const char *key, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM meta WHERE key=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, key);
    return run_done(s, st, "deleting a note", err);
}

int hero_store_meta_put(hero_store_t *s, const char *key, const char *value, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)", err);
    if (!st)
        return -1;
    bind_str(st, 1, key);
    bind_str(st, 2, value);
    return run_done(s, st, "saving a note", err);
}

/* ---- instances ---- */
int hero_store_instance_get(hero_store_t *s, const char *name, char **settings, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "SELECT settings FROM instances WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *settings = col_str(st, 0);
        release(s, st);
        return 0;
    }
    release(s, st);
    return rc == SQLITE_DONE ? 1 : db_error(s, err, "reading an instance");
}

int hero_store_instance_put(hero_store_t *s, const char *name, const char *settings,
                            hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO instances(name, settings, created) VALUES(?,?,?) "
                            "ON CONFLICT(name) DO UPDATE SET settings=excluded.settings",
                            err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    bind_str(st, 2, settings);
    sqlite3_bind_int64(st, 3, now_s());
    return run_done(s, st, "saving an instance", err);
}

int hero_store_instance_delete(hero_store_t *s, const char *name, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM instances WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    return run_done(s, st, "deleting an instance", err);
}

/* ---- containers ---- */
#define CONTAINER_COLS                                                                      \
    "id, instance, name, image, spec, spec_hash, state, pid, exit_code, exit_signal, "     \
    "created, started, finished, image_rootfs, image_config"

static void read_container(sqlite3_stmt *st, hero_container_rec_t *r)
{
    r->id = sqlite3_column_int64(st, 0);
    r->instance = col_str(st, 1);
    r->name = col_str(st, 2);
    r->image = col_str(st, 3);
    r->spec = col_str(st, 4);
    r->spec_hash = col_str(st, 5);
    r->state = col_str(st, 6);
    r->pid = sqlite3_column_int64(st, 7);
    r->exit_code = sqlite3_column_int64(st, 8);
    r->exit_signal = sqlite3_column_int64(st, 9);
    r->created = sqlite3_column_int64(st, 10);
    r->started = sqlite3_column_int64(st, 11);
    r->finished = sqlite3_column_int64(st, 12);
    r->image_rootfs = col_str(st, 13);
    r->image_config = col_str(st, 14);
}

void hero_container_rec_free(hero_container_rec_t *r)
{
    if (!r)
        return;
    free(r->instance);
    free(r->name);
    free(r->image);
    free(r->spec);
    free(r->spec_hash);
    free(r->state);
    free(r->image_rootfs);
    free(r->image_config);
    memset(r, 0, sizeof(*r));
}

static int container_one(hero_store_t *s, sqlite3_stmt *st, hero_container_rec_t *out,
                         hero_error_t *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_container(st, out);
    release(s, st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : db_error(s, err, "reading a container");
}

int hero_store_container_get(hero_store_t *s, const char *instance, const char *name,
                             hero_container_rec_t *out, hero_error_t *err)
{
    sqlite3_stmt *st =
        prep(s, "SELECT " CONTAINER_COLS " FROM containers WHERE instance=? AND name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, instance);
    bind_str(st, 2, name);
    return container_one(s, st, out, err);
}

int hero_store_container_get_id(hero_store_t *s, int64_t id, hero_container_rec_t *out,
                                hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "SELECT " CONTAINER_COLS " FROM containers WHERE id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    return container_one(s, st, out, err);
}

int hero_store_container_insert(hero_store_t *s, hero_container_rec_t *r, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO containers(instance, name, image, spec, spec_hash, "
                            "state, created, image_rootfs, image_config) "
                            "VALUES(?,?,?,?,?,?,?,?,?)",
                            err);
    if (!st)
        return -1;
    r->created = now_s();
    bind_str(st, 1, r->instance);
    bind_str(st, 2, r->name);
    bind_str(st, 3, r->image);
    bind_str(st, 4, r->spec);
    bind_str(st, 5, r->spec_hash);
    bind_str(st, 6, r->state ? r->state : "created");
    sqlite3_bind_int64(st, 7, r->created);
    bind_str(st, 8, r->image_rootfs);
    bind_str(st, 9, r->image_config);
    if (run_done(s, st, "saving a container", err) < 0)
        return -1;
    r->id = sqlite3_last_insert_rowid(s->db);
    r->exit_code = -1;
    return 0;
}

int hero_store_container_pin(hero_store_t *s, int64_t id, const char *image_rootfs,
                             const char *image_config, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "UPDATE containers SET image_rootfs=?1, image_config=?2 "
                            "WHERE id=?3 AND image_rootfs IS NULL",
                            err);
    if (!st)
        return -1;
    bind_str(st, 1, image_rootfs);
    bind_str(st, 2, image_config);
    sqlite3_bind_int64(st, 3, id);
    return run_done(s, st, "recording a container's image", err);
}

int hero_store_container_set_state(hero_store_t *s, int64_t id, const char *state, int64_t pid,
                                   int64_t exit_code, int64_t exit_signal, hero_error_t *err)
{
    /* started/finished move with the state: running starts, anything else after
     * running finishes, and an entrypoint that exited before hero saw it running
     * (a start that failed at once) both started and finished now */
    sqlite3_stmt *st = prep(s,
                            "UPDATE containers SET state=?1, pid=?2, exit_code=?3, "
                            "exit_signal=?4, "
                            "started=CASE WHEN ?1='running' AND state<>'running' THEN ?5 "
                            "WHEN ?1='exited' AND state<>'running' THEN ?5 "
                            "ELSE started END, "
                            "finished=CASE WHEN ?1<>'running' AND state='running' THEN ?5 "
                            "WHEN ?1='exited' THEN ?5 "
                            "ELSE finished END WHERE id=?6",
                            err);
    if (!st)
        return -1;
    bind_str(st, 1, state);
    sqlite3_bind_int64(st, 2, pid);
    sqlite3_bind_int64(st, 3, exit_code);
    sqlite3_bind_int64(st, 4, exit_signal);
    sqlite3_bind_int64(st, 5, now_s());
    sqlite3_bind_int64(st, 6, id);
    return run_done(s, st, "updating a container", err);
}

int hero_store_container_delete(hero_store_t *s, int64_t id, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM containers WHERE id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (run_done(s, st, "deleting a container", err) < 0)
        return -1;
    st = prep(s, "DELETE FROM leases WHERE container_id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (run_done(s, st, "deleting a container's leases", err) < 0)
        return -1;
    return hero_store_overlay_release(s, id, err);
}

int hero_store_container_forget(hero_store_t *s, int64_t id, hero_error_t *err)
{
    static const char *const sql[] = {
        "DELETE FROM host_objects WHERE container_id=?",
        "DELETE FROM leases WHERE container_id=?",
        "DELETE FROM overlay_leases WHERE container_id=?",
        "DELETE FROM containers WHERE id=?",
    };
    static const char *const what[] = {"forgetting a container's host objects",
                                       "deleting a container's leases",
                                       "deleting a container's overlay lease",
                                       "deleting a container"};
    bool own = s->depth == 0; /* inside a caller's transaction, use that one */
    if (own && hero_store_begin(s, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *st = prep(s, sql[i], err);
        if (!st) {
            rc = -1;
            break;
        }
        sqlite3_bind_int64(st, 1, id);
        rc = run_done(s, st, what[i], err);
    }
    return own_end(s, own, rc, err); /* all or nothing: the records stay for the next try */
}

int hero_store_container_list(hero_store_t *s, const char *instance, hero_container_rec_t **v,
                              size_t *n, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            instance ? "SELECT " CONTAINER_COLS
                                       " FROM containers WHERE instance=? ORDER BY name"
                                     : "SELECT " CONTAINER_COLS
                                       " FROM containers ORDER BY instance, name",
                            err);
    if (!st)
        return -1;
    if (instance)
        bind_str(st, 1, instance);
    *v = NULL;
    *n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *v = hero_xrealloc(*v, (*n + 1) * sizeof(**v));
        read_container(st, &(*v)[(*n)++]);
    }
    release(s, st);
    if (rc != SQLITE_DONE) {
        hero_container_recs_free(*v, *n);
        *v = NULL;
        *n = 0;
        return db_error(s, err, "listing containers");
    }
    return 0;
}

void hero_container_recs_free(hero_container_rec_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hero_container_rec_free(&v[i]);
    free(v);
}

/* ---- images ---- */
void hero_image_rec_free(hero_image_rec_t *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->ref);
    free(r->digest);
    free(r->rootfs);
    free(r->config);
    memset(r, 0, sizeof(*r));
}

static void read_image(sqlite3_stmt *st, hero_image_rec_t *r)
{
    r->name = col_str(st, 0);
    r->ref = col_str(st, 1);
    r->digest = col_str(st, 2);
    r->rootfs = col_str(st, 3);
    r->config = col_str(st, 4);
    r->size = sqlite3_column_int64(st, 5);
    r->created = sqlite3_column_int64(st, 6);
}

int hero_store_image_get(hero_store_t *s, const char *name, hero_image_rec_t *out,
                         hero_error_t *err)
{
    sqlite3_stmt *st = prep(
        s, "SELECT name, ref, digest, rootfs, config, size, created FROM images WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_image(st, out);
    release(s, st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : db_error(s, err, "reading an image");
}

int hero_store_image_put(hero_store_t *s, const hero_image_rec_t *r, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "INSERT OR REPLACE INTO images(name, ref, digest, rootfs, config, "
                            "size, created) VALUES(?,?,?,?,?,?,?)",
                            err);
    if (!st)
        return -1;
    bind_str(st, 1, r->name);
    bind_str(st, 2, r->ref);
    bind_str(st, 3, r->digest);
    bind_str(st, 4, r->rootfs);
    bind_str(st, 5, r->config);
    sqlite3_bind_int64(st, 6, r->size);
    sqlite3_bind_int64(st, 7, r->created ? r->created : now_s());
    return run_done(s, st, "saving an image", err);
}

int hero_store_image_delete(hero_store_t *s, const char *name, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM images WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    return run_done(s, st, "deleting an image", err);
}

int hero_store_image_set_ref_digest(hero_store_t *s, const char *name, const char *ref_digest,
                                    hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "UPDATE images SET ref_digest=? WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, ref_digest);
    bind_str(st, 2, name);
    return run_done(s, st, "recording an image's reference digest", err);
}

int hero_store_image_get_ref_digest(hero_store_t *s, const char *name, char **out,
                                    hero_error_t *err)
{
    *out = NULL;
    sqlite3_stmt *st = prep(s, "SELECT ref_digest FROM images WHERE name=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = col_str(st, 0);
        release(s, st);
        return *out ? 0 : 1;
    }
    release(s, st);
    return rc == SQLITE_DONE ? 1 : db_error(s, err, "reading an image");
}

int hero_store_image_list(hero_store_t *s, hero_image_rec_t **v, size_t *n, hero_error_t *err)
{
    sqlite3_stmt *st = prep(
        s, "SELECT name, ref, digest, rootfs, config, size, created FROM images ORDER BY name",
        err);
    if (!st)
        return -1;
    *v = NULL;
    *n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *v = hero_xrealloc(*v, (*n + 1) * sizeof(**v));
        read_image(st, &(*v)[(*n)++]);
    }
    release(s, st);
    if (rc != SQLITE_DONE) {
        hero_image_recs_free(*v, *n);
        *v = NULL;
        *n = 0;
        return db_error(s, err, "listing images");
    }
    return 0;
}

void hero_image_recs_free(hero_image_rec_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hero_image_rec_free(&v[i]);
    free(v);
}

int hero_store_image_users(hero_store_t *s, const char *name, int64_t *count, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "SELECT count(*) FROM containers WHERE image=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, name);
    int rc = sqlite3_step(st);
    *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    release(s, st);
    return rc == SQLITE_ROW ? 0 : db_error(s, err, "counting an image's users");
}

/* ---- IPv4 leases ---- */
static void ipv4_text(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int hero_store_lease_get(hero_store_t *s, const char *instance, int64_t container_id,
                         uint32_t *addr, hero_error_t *err)
{
    sqlite3_stmt *st =
        prep(s, "SELECT addr FROM leases WHERE instance=? AND container_id=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, instance);
    sqlite3_bind_int64(st, 2, container_id);
    int rc = sqlite3_step(st), found = 1;
    unsigned a, b, c, d;
    if (rc == SQLITE_ROW &&
        sscanf((const char *)sqlite3_column_text(st, 0), "%u.%u.%u.%u", &a, &b, &c, &d) == 4) {
        *addr = a << 24 | b << 16 | c << 8 | d;
        found = 0;
    }
    release(s, st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "reading a lease");
    return found;
}

/* The used addresses of an instance, sorted; caller frees. */
static int used_addrs(hero_store_t *s, const char *instance, uint32_t **v, size_t *n,
                      hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "SELECT addr FROM leases WHERE instance=?", err);
    if (!st)
        return -1;
    bind_str(st, 1, instance);
    *v = NULL;
    *n = 0;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned a, b, c, d;
        if (sscanf((const char *)sqlite3_column_text(st, 0), "%u.%u.%u.%u", &a, &b, &c, &d) != 4)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *v = hero_xrealloc(*v, cap * sizeof(uint32_t));
        }
        (*v)[(*n)++] = a << 24 | b << 16 | c << 8 | d;
    }
    release(s, st);
    if (rc != SQLITE_DONE) {
        free(*v);
        *v = NULL;
        return db_error(s, err, "reading leases");
    }
    if (*n > 1)
        qsort(*v, *n, sizeof(uint32_t), cmp_u32);
    return 0;
}

int hero_store_lease_ipv4(hero_store_t *s, const char *instance, uint32_t net, int len,
                          uint32_t gateway, int64_t container_id, uint32_t *addr,
                          hero_error_t *err)
{
    if (len < 1 || len > 30)
        return hero_error_set(err, EINVAL, "cannot lease from a /%d", len);
    uint32_t mask = ~(uint32_t)0 << (32 - len);
    net &= mask;
    uint32_t first = net + 1, last = (net | ~mask) - 1;
    bool own = s->depth == 0; /* inside a caller's transaction, use that one */
    if (own && hero_store_begin(s, err) < 0)
        return -1;
    int rc = hero_store_lease_get(s, instance, container_id, addr, err);
    if (rc == 1) {
        uint32_t *used = NULL;
        size_t n = 0, k = 0;
        rc = used_addrs(s, instance, &used, &n, err);
        if (rc == 0) {
            /* the lowest host address that is neither leased nor the gateway */
            uint32_t cand = first;
            bool found = false;
            while (cand <= last) {
                while (k < n && used[k] < cand)
                    k++;
                if (cand != gateway && !(k < n && used[k] == cand)) {
                    found = true;
                    break;
                }
                cand++;
            }
            free(used);
            if (!found) {
                char t[16];
                ipv4_text(net, t);
                rc = hero_error_set_plain(err, ENOSPC, "no free address in %s/%d", t, len);
            } else {
                char t[16];
                ipv4_text(cand, t);
                sqlite3_stmt *st = prep(
                    s, "INSERT INTO leases(instance, addr, container_id) VALUES(?,?,?)", err);
                rc = st ? 0 : -1;
                if (st) {
                    bind_str(st, 1, instance);
                    bind_str(st, 2, t);
                    sqlite3_bind_int64(st, 3, container_id);
                    rc = run_done(s, st, "saving a lease", err);
                }
                if (rc == 0)
                    *addr = cand;
            }
        }
    }
    return own_end(s, own, rc, err);
}

int hero_store_lease_release(hero_store_t *s, int64_t container_id, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM leases WHERE container_id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    if (run_done(s, st, "releasing leases", err) < 0)
        return -1;
    return hero_store_overlay_release(s, container_id, err);
}

/* ---- overlay (IPv6) leases ---- */
int hero_store_overlay_get(hero_store_t *s, int64_t container_id, char **subnet, uint64_t *host,
                           hero_error_t *err)
{
    sqlite3_stmt *st =
        prep(s, "SELECT subnet, host FROM overlay_leases WHERE container_id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    int rc = sqlite3_step(st), found = 1;
    if (rc == SQLITE_ROW) {
        *subnet = col_str(st, 0);
        *host = (uint64_t)sqlite3_column_int64(st, 1);
        found = 0;
    }
    release(s, st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "reading an overlay lease");
    return found;
}

int hero_store_overlay_release(hero_store_t *s, int64_t container_id, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s, "DELETE FROM overlay_leases WHERE container_id=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    return run_done(s, st, "releasing an overlay lease", err);
}

/* The high 32 bits of the host numbers this store leases, taken from its uid (random):
 * two stores on one overlay node (two base dirs whose instances use one mycelium
 * daemon) then lease apart, which counting from ::2 in each did not. 31 bits, since
 * host numbers are sqlite integers; never 0. */
uint64_t hero_store_overlay_base(const hero_store_t *s)
{
    char hi[9] = {0};
    memcpy(hi, s->uid, 8); /* (16 hex digits) */
    uint64_t tag = strtoull(hi, NULL, 16) & 0x7fffffff;
    return (tag ? tag : 1) << 32;
}

/* The lowest host number >= hero_store_overlay_base(s) + 2 of `subnet` that is neither
 * leased nor `avoid`. */
static int overlay_pick(hero_store_t *s, const char *subnet, uint64_t avoid, uint64_t *out,
                        hero_error_t *err)
{
    uint64_t cand = hero_store_overlay_base(s) + 2;
    sqlite3_stmt *st =
        prep(s, "SELECT host FROM overlay_leases WHERE subnet=? AND host>=? ORDER BY host", err);
    if (!st)
        return -1;
    bind_str(st, 1, subnet);
    sqlite3_bind_int64(st, 2, (int64_t)cand);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t h = (uint64_t)sqlite3_column_int64(st, 0);
        if (cand == avoid)
            cand++;
        if (h > cand)
            break;
        if (h == cand)
            cand++;
    }
    release(s, st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "reading overlay leases");
    if (cand == avoid)
        cand++;
    *out = cand;
    return 0;
}

int hero_store_overlay_lease(hero_store_t *s, const char *subnet, uint64_t avoid,
                             int64_t container_id, uint64_t *host, hero_error_t *err)
{
    bool own = s->depth == 0; /* inside a caller's transaction, use that one */
    if (own && hero_store_begin(s, err) < 0)
        return -1;
    char *have = NULL;
    uint64_t h = 0;
    int rc = hero_store_overlay_get(s, container_id, &have, &h, err);
    if (rc == 0 && strcmp(have, subnet) == 0 && h != avoid) {
        *host = h;
    } else if (rc >= 0) {
        /* none yet, or one in a subnet the node no longer has */
        rc = rc == 0 ? hero_store_overlay_release(s, container_id, err) : 0;
        if (rc == 0)
            rc = overlay_pick(s, subnet, avoid, &h, err);
        sqlite3_stmt *st =
            rc == 0 ? prep(s,
                           "INSERT INTO overlay_leases(subnet, host, container_id) VALUES(?,?,?)",
                           err)
                    : NULL;
        if (rc == 0 && !st)
            rc = -1;
        if (st) {
            bind_str(st, 1, subnet);
            sqlite3_bind_int64(st, 2, (int64_t)h);
            sqlite3_bind_int64(st, 3, container_id);
            rc = run_done(s, st, "saving an overlay lease", err);
        }
        if (rc == 0)
            *host = h;
    }
    free(have);
    return own_end(s, own, rc, err);
}

/* ---- host objects ---- */
int hero_store_hostobj_add(hero_store_t *s, int64_t container_id, hero_obj_kind_t kind,
                           const char *ref, hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "INSERT OR IGNORE INTO host_objects(container_id, kind, ref, created) "
                            "VALUES(?,?,?,?)",
                            err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    sqlite3_bind_int(st, 2, (int)kind);
    bind_str(st, 3, ref);
    sqlite3_bind_int64(st, 4, now_s());
    return run_done(s, st, "recording a host object", err);
}

int hero_store_hostobj_del(hero_store_t *s, int64_t container_id, hero_obj_kind_t kind,
                           const char *ref, hero_error_t *err)
{
    sqlite3_stmt *st =
        prep(s, "DELETE FROM host_objects WHERE container_id=? AND kind=? AND ref=?", err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    sqlite3_bind_int(st, 2, (int)kind);
    bind_str(st, 3, ref);
    return run_done(s, st, "forgetting a host object", err);
}

int hero_store_hostobj_list(hero_store_t *s, int64_t container_id, hero_hostobj_t **v, size_t *n,
                            hero_error_t *err)
{
    sqlite3_stmt *st = prep(s,
                            "SELECT id, container_id, kind, ref FROM host_objects "
                            "WHERE container_id=? ORDER BY id DESC",
                            err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, container_id);
    *v = NULL;
    *n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *v = hero_xrealloc(*v, (*n + 1) * sizeof(**v));
        hero_hostobj_t *o = &(*v)[(*n)++];
        o->id = sqlite3_column_int64(st, 0);
        o->container_id = sqlite3_column_int64(st, 1);
        o->kind = (hero_obj_kind_t)sqlite3_column_int(st, 2);
        o->ref = col_str(st, 3);
    }
    release(s, st);
    if (rc != SQLITE_DONE) {
        hero_hostobjs_free(*v, *n);
        *v = NULL;
        *n = 0;
        return db_error(s, err, "listing host objects");
    }
    return 0;
}

void hero_hostobjs_free(hero_hostobj_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].ref);
    free(v);
}
