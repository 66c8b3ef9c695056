/* The state store: migrations, records, host objects, and two processes at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/store.h"
#include "tap.h"

static char *base;

static hero_store_t *open_or_die(void)
{
    hero_store_t *s = NULL;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_store_open(base, &s, &e) < 0) {
        printf("# %s\n", e.msg);
        exit(1);
    }
    return s;
}

static void containers(hero_store_t *s)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_container_rec_t r = {0};
    r.instance = "lab";
    r.name = "web";
    r.image = "embedded";
    r.spec = "{\"name\":\"web\"}";
    r.spec_hash = "abc";
    r.image_rootfs = "/b/images/layers/aa:/b/images/layers/bb";
    r.image_config = "{\"Cmd\":[\"/bin/sh\"]}";
    TAP_OK(hero_store_container_insert(s, &r, &e) == 0 && r.id > 0, "insert a container");
    int64_t id = r.id;
    hero_container_rec_t dup = r;
    TAP_OK(hero_store_container_insert(s, &dup, &e) < 0 && e.code == EEXIST,
           "a second container of the same name is refused (EEXIST)");
    hero_error_clear(&e);
    hero_container_rec_t got = {0};
    TAP_OK(hero_store_container_get(s, "lab", "web", &got, &e) == 0 && got.id == id &&
               !strcmp(got.state, "created") && got.exit_code == -1 && got.created > 0,
           "read it back by name");
    TAP_OK(got.image_rootfs && !strcmp(got.image_rootfs, r.image_rootfs) && got.image_config &&
               !strcmp(got.image_config, r.image_config),
           "the image it was made from is kept with it (rootfs, config)");
    hero_container_rec_free(&got);
    TAP_OK(hero_store_container_get(s, "lab", "nope", &got, &e) == 1, "a missing one is 1");
    TAP_OK(hero_store_container_get(s, "other", "web", &got, &e) == 1,
           "names are per instance");
    TAP_OK(hero_store_container_set_state(s, id, "running", 4242, -1, 0, &e) == 0,
           "set running");
    TAP_OK(hero_store_container_get_id(s, id, &got, &e) == 0 && got.pid == 4242 &&
               got.started > 0 && got.finished == 0,
           "running: pid and started recorded");
    hero_container_rec_free(&got);
    TAP_OK(hero_store_container_set_state(s, id, "exited", 0, 7, 0, &e) == 0, "set exited");
    TAP_OK(hero_store_container_get_id(s, id, &got, &e) == 0 && got.exit_code == 7 &&
               got.finished > 0 && got.pid == 0,
           "exited: code and finished recorded");
    hero_container_rec_free(&got);
    hero_container_rec_t *v = NULL;
    size_t n = 0;
    TAP_OK(hero_store_container_list(s, "lab", &v, &n, &e) == 0 && n == 1 &&
               !strcmp(v[0].name, "web"),
           "list an instance's containers");
    hero_container_recs_free(v, n);
    int64_t users = -1;
    TAP_OK(hero_store_image_users(s, "embedded", &users, &e) == 0 && users == 1,
           "the image has one user");

    /* host objects: recorded before they exist, listed newest first */
    TAP_OK(hero_store_hostobj_add(s, id, HERO_OBJ_DIR, "/x/dir", &e) == 0 &&
               hero_store_hostobj_add(s, id, HERO_OBJ_MOUNT, "/x/dir/rootfs", &e) == 0 &&
               hero_store_hostobj_add(s, id, HERO_OBJ_CRUN, "hero-1", &e) == 0 &&
               hero_store_hostobj_add(s, id, HERO_OBJ_CRUN, "hero-1", &e) == 0,
           "record host objects (twice is a no-op)");
    hero_hostobj_t *objs = NULL;
    TAP_OK(hero_store_hostobj_list(s, id, &objs, &n, &e) == 0 && n == 3 &&
               objs[0].kind == HERO_OBJ_CRUN && objs[2].kind == HERO_OBJ_DIR,
           "host objects come newest first");
    hero_hostobjs_free(objs, n);
    TAP_OK(hero_store_hostobj_del(s, id, HERO_OBJ_CRUN, "hero-1", &e) == 0 &&
               hero_store_hostobj_list(s, id, &objs, &n, &e) == 0 && n == 2,
           "forget one");
    hero_hostobjs_free(objs, n);
    TAP_OK(hero_store_container_delete(s, id, &e) == 0 &&
               hero_store_container_get_id(s, id, &got, &e) == 1,
           "delete the container");
}

static void images_and_instances(hero_store_t *s)
{
    hero_error_t e = HERO_ERROR_INIT;
    hero_image_rec_t r = {.name = "embedded", .ref = "embedded", .digest = "sha256:00",
                          .rootfs = "/x/rootfs", .config = "{}", .size = 123};
    TAP_OK(hero_store_image_put(s, &r, &e) == 0, "put an image");
    hero_image_rec_t got = {0};
    TAP_OK(hero_store_image_get(s, "embedded", &got, &e) == 0 && got.size == 123 &&
               !strcmp(got.rootfs, "/x/rootfs"),
           "get it");
    hero_image_rec_free(&got);
    hero_image_rec_t *v = NULL;
    size_t n = 0;
    TAP_OK(hero_store_image_list(s, &v, &n, &e) == 0 && n == 1, "list images");
    hero_image_recs_free(v, n);
    char *settings = NULL;
    TAP_OK(hero_store_instance_get(s, "lab", &settings, &e) == 1, "no instance yet");
    TAP_OK(hero_store_instance_put(s, "lab", "{\"subnet\":\"10.1.0.0/24\"}", &e) == 0 &&
               hero_store_instance_put(s, "lab", "{\"subnet\":\"10.2.0.0/24\"}", &e) == 0 &&
               hero_store_instance_get(s, "lab", &settings, &e) == 0 &&
               strstr(settings, "10.2.0.0"),
           "an instance's settings are replaced");
    free(settings);
}

/* Two processes insert containers at the same time: the unique constraint holds
 * inside transactions, nobody sees "database is locked". */
static void two_processes(void)
{
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            hero_store_t *s = open_or_die();
            int bad = 0;
            for (int i = 0; i < 50; i++) {
                hero_error_t e = HERO_ERROR_INIT;
                char name[32];
                snprintf(name, sizeof(name), "c%d", i);
                hero_container_rec_t r = {.instance = "race", .name = name, .image = "x",
                                          .spec = "{}", .spec_hash = "h"};
                if (hero_store_container_insert(s, &r, &e) < 0 && e.code != EEXIST)
                    bad++;
                hero_error_clear(&e);
            }
            hero_store_close(s);
            _exit(bad ? 1 : 0);
        }
    }
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    TAP_OK(ok, "two processes insert at once without a lock error");
    hero_store_t *s = open_or_die();
    hero_container_rec_t *v = NULL;
    size_t n = 0;
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_store_container_list(s, "race", &v, &n, &e) == 0 && n == 50,
           "each name was taken exactly once");
    hero_container_recs_free(v, n);
    hero_store_close(s);
}

static uint32_t ip(unsigned a, unsigned b, unsigned c, unsigned d)
{
    return a << 24 | b << 16 | c << 8 | d;
}

static void leases(hero_store_t *s)
{
    hero_error_t e = HERO_ERROR_INIT;
    uint32_t net = ip(10, 77, 0, 16), gw = ip(10, 77, 0, 17), a = 0, b = 0;
    TAP_OK(hero_store_lease_ipv4(s, "ipam", net, 28, gw, 1, &a, &e) == 0 && a == ip(10, 77, 0, 18),
           "the first lease is the lowest host that is not the gateway");
    TAP_OK(hero_store_lease_ipv4(s, "ipam", net, 28, gw, 1, &b, &e) == 0 && b == a,
           "a container keeps its address");
    int ok = 1;
    for (int64_t id = 2; id <= 13; id++) {
        uint32_t x;
        ok &= hero_store_lease_ipv4(s, "ipam", net, 28, gw, id, &x, &e) == 0 && x != gw &&
              x > net && x < ip(10, 77, 0, 31);
    }
    TAP_OK(ok, "a /28 holds 13 containers (14 hosts less the gateway)");
    uint32_t x = 0;
    TAP_OK(hero_store_lease_ipv4(s, "ipam", net, 28, gw, 14, &x, &e) < 0 && e.code == ENOSPC &&
               strstr(e.msg, "no free address in 10.77.0.16/28"),
           "the next one: no free address, naming the subnet");
    hero_error_clear(&e);
    TAP_OK(hero_store_lease_ipv4(s, "other", net, 28, gw, 14, &x, &e) == 0 && x == ip(10, 77, 0, 18),
           "instances lease apart");
    TAP_OK(hero_store_lease_release(s, 5, &e) == 0 &&
               hero_store_lease_ipv4(s, "ipam", net, 28, gw, 14, &x, &e) == 0 &&
               hero_store_lease_get(s, "ipam", 5, &b, &e) == 1,
           "a released address is leased again");
}

static void overlay_leases(hero_store_t *s)
{
    hero_error_t e = HERO_ERROR_INIT;
    const char *net = "4ab:cd:ef:12::/64", *other = "5aa:1:2:3::/64";
    uint64_t h1 = 0, h2 = 0, h3 = 0, x = 0;
    /* the store's own 2^32 host numbers: the uid's first 31 bits, never 0 */
    uint64_t b = hero_store_overlay_base(s);
    char hi[9] = {0};
    memcpy(hi, hero_store_uid(s), 8); /* (16 hex digits) */
    uint64_t tag = strtoull(hi, NULL, 16) & 0x7fffffff;
    TAP_OK(b == (tag ? tag : 1) << 32 && b > 0 && b < (1ULL << 63),
           "overlay: the store's host numbers start at its uid's first 31 bits << 32");
    TAP_OK(hero_store_overlay_lease(s, net, b + 3, 101, &h1, &e) == 0 && h1 == b + 2,
           "overlay: the first container gets <base>::2");
    TAP_OK(hero_store_overlay_lease(s, net, b + 3, 102, &h2, &e) == 0 && h2 == b + 4,
           "overlay: the next skips the node's own host number");
    TAP_OK(hero_store_overlay_lease(s, net, b + 3, 101, &x, &e) == 0 && x == h1,
           "overlay: a container keeps its address");
    TAP_OK(hero_store_overlay_lease(s, other, 0, 103, &h3, &e) == 0 && h3 == b + 2,
           "overlay: another node's /64 leases apart");
    char *sn = NULL;
    TAP_OK(hero_store_overlay_get(s, 102, &sn, &x, &e) == 0 && x == b + 4 && !strcmp(sn, net),
           "overlay: get gives the subnet and host number");
    free(sn);
    TAP_OK(hero_store_overlay_release(s, 101, &e) == 0 &&
               hero_store_overlay_get(s, 101, &sn, &x, &e) == 1 &&
               hero_store_overlay_lease(s, net, b + 3, 104, &x, &e) == 0 && x == b + 2,
           "overlay: a released address is leased again");
    TAP_OK(hero_store_overlay_lease(s, other, 0, 102, &x, &e) == 0 && x == b + 3 &&
               hero_store_overlay_get(s, 102, &sn, &x, &e) == 0 && !strcmp(sn, other),
           "overlay: a lease in a /64 the node no longer has is replaced");
    free(sn);
    sn = NULL;
    TAP_OK(hero_store_container_forget(s, 103, &e) == 0 &&
               hero_store_overlay_get(s, 103, &sn, &x, &e) == 1,
           "overlay: forgetting a container gives its lease back");
    hero_error_clear(&e);
}

/* Two base dirs (two stores) whose instances share one overlay node: the same
 * container id in each gets a different address. */
static void overlay_two_stores(hero_store_t *s)
{
    hero_error_t e = HERO_ERROR_INIT;
    char *dir2 = NULL;
    if (asprintf(&dir2, "%s-other", base) < 0)
        return;
    hero_store_t *s2 = NULL;
    if (!TAP_OK(hero_store_open(dir2, &s2, &e) == 0, "a second store opens")) {
        free(dir2);
        hero_error_clear(&e);
        return;
    }
    const char *net = "4ab:cd:ef:99::/64";
    uint64_t a = 0, b = 0;
    TAP_OK(hero_store_overlay_lease(s, net, 0, 501, &a, &e) == 0 &&
               hero_store_overlay_lease(s2, net, 0, 501, &b, &e) == 0 && a != b &&
               a >> 32 != b >> 32,
           "two stores on one node lease apart (their own 2^32 host numbers each)");
    hero_store_overlay_release(s, 501, NULL);
    hero_store_close(s2);
    free(dir2);
    hero_error_clear(&e);
}

/* Four processes lease for ten containers each, at once: forty distinct addresses. */
static void four_processes_lease(void)
{
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            hero_store_t *s = open_or_die();
            int bad = 0;
            for (int i = 0; i < 10; i++) {
                hero_error_t e = HERO_ERROR_INIT;
                uint32_t a;
                if (hero_store_lease_ipv4(s, "race4", ip(10, 78, 0, 0), 24, ip(10, 78, 0, 1),
                                          1000 + k * 100 + i, &a, &e) < 0)
                    bad++;
                hero_error_clear(&e);
            }
            hero_store_close(s);
            _exit(bad ? 1 : 0);
        }
    }
    int ok = 1;
    for (int k = 0; k < 4; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    TAP_OK(ok, "four processes lease at once without an error");
    hero_store_t *s = open_or_die();
    uint32_t seen[40];
    int n = 0, distinct = 1;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 10; i++) {
            hero_error_t e = HERO_ERROR_INIT;
            uint32_t a = 0;
            if (hero_store_lease_get(s, "race4", 1000 + k * 100 + i, &a, &e) == 0) {
                for (int j = 0; j < n; j++)
                    distinct &= seen[j] != a;
                seen[n++] = a;
            }
        }
    TAP_OK(n == 40 && distinct, "forty containers, forty distinct addresses");
    hero_store_close(s);
}

/* Closing keeps a short WAL (no checkpoint: see hero_store_open) and checkpoints a
 * long one, so the next open has little to read; what was committed is there either
 * way. On a store of its own, so that no other test's commits count. */
static void wal_on_close(void)
{
    char *outer = base;
    base = hero_xasprintf("%s/wal", outer);
    char *wal = hero_xasprintf("%s/hero.db-wal", base);
    hero_store_t *s = open_or_die();
    hero_error_t e = HERO_ERROR_INIT;
    TAP_OK(hero_store_meta_put(s, "wal.short", "1", &e) == 0, "one commit");
    hero_store_close(s);
    struct stat st;
    TAP_OK(stat(wal, &st) == 0 && st.st_size > 0, "a short WAL stays when the store closes");
    s = open_or_die();
    char *v = NULL;
    TAP_OK(hero_store_meta_get(s, "wal.short", &v, &e) == 0 && v && !strcmp(v, "1"),
           "and what it holds is read back");
    free(v);
    /* some 100 pages: each value fills a page of its own */
    char *big = hero_xmalloc(3001);
    memset(big, 'x', 3000);
    big[3000] = 0;
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        char key[32];
        snprintf(key, sizeof(key), "wal.long.%d", i);
        rc = hero_store_meta_put(s, key, big, &e);
    }
    TAP_OK(rc == 0, "100 commits of a page each");
    hero_store_close(s);
    TAP_OK(stat(wal, &st) != 0 || st.st_size == 0,
           "a WAL past 64 pages is checkpointed (and removed) when the store closes");
    s = open_or_die();
    v = NULL;
    TAP_OK(hero_store_meta_get(s, "wal.long.99", &v, &e) == 0 && v && strlen(v) == 3000,
           "and what it held is in the database");
    free(v);
    hero_store_meta_del(s, "wal.short", &e);
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof(key), "wal.long.%d", i);
        hero_store_meta_del(s, key, &e);
    }
    hero_store_close(s);
    hero_error_clear(&e);
    free(big);
    free(wal);
    free(base);
    base = outer;
}

int main(void)
{
    char tmpl[] = "/tmp/hero-store-test.XXXXXX";
    base = mkdtemp(tmpl);
    char *sub = NULL;
    if (asprintf(&sub, "%s/a/b", base) < 0)
        return 1;
    base = sub; /* the store makes missing directories */
    hero_store_t *s = open_or_die();
    TAP_OK(hero_store_schema_version(s) >= 1, "migrated to a schema version");
    containers(s);
    images_and_instances(s);
    hero_store_close(s);
    s = open_or_die();
    TAP_OK(hero_store_schema_version(s) >= 1, "reopening does not migrate again");
    hero_store_close(s);
    s = open_or_die();
    leases(s);
    overlay_leases(s);
    overlay_two_stores(s);
    hero_store_close(s);
    two_processes();
    four_processes_lease();
    wal_on_close();
    char *cmd[] = {"rm", "-rf", tmpl, NULL};
    pid_t p = fork();
    if (p == 0) {
        execvp("rm", cmd);
        _exit(127);
    }
    waitpid(p, NULL, 0);
    free(sub);
    return tap_done();
}
