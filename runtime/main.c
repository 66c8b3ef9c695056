/* hero's command line. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions/actions.h"
#include "actions/heropods/heropods.h"
#include "grammar/heroscript.h"
#include "runtime/config.h"
#include "runtime/sched.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
    "usage: hero run [--check] [--dry-run] [-j N] [--keep-going] [-v|-q] FILE...\n"
    "       hero FILE...                  same as hero run FILE... (for #!/usr/bin/env hero)\n"
    "       hero fmt [-w | --check] FILE...\n"
    "       hero actions [--roff]\n"
    "       hero help ACTION\n"
    "       hero dump FILE...             print each action as hero reads it\n"
    "       hero pods COMMAND ...         containers and images: ps, inspect, logs, exec,\n"
    "                                     stats, start, stop, rm, images (see hero-pods(1))\n"
    "       hero --version | --help\n"
    "\n"
    "run options:\n"
    "  --check        parse and validate only; nothing runs\n"
    "  --dry-run      print the plan (each action, its resources, what it would do)\n"
    "  -j, --jobs N   run at most N actions at once (default 8)\n"
    "  -k, --keep-going  after a failure, run every action whose prerequisites succeeded\n"
    "  -v, --verbose  report each action as it starts and ends\n"
    "  -q, --quiet    print only the actions' output and errors\n"
    "\n"
    "exit status: 0 all actions succeeded, 1 an action failed, 2 usage, parse or\n"
    "validation error (nothing ran). See hero(1) and heroscript(5).\n";

static bool use_color(void)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(STDERR_FILENO) && !(nc && *nc);
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("hero: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(hero --help shows the usage)\n", stderr);
    return EXIT_USAGE;
}

/* Loads and validates; prints every diagnostic. NULL when there were errors. */
static hs_playbook_t *load_checked(char **files, int nfiles)
{
    hs_playbook_t *pb = hs_playbook_load((const char *const *)files, (size_t)nfiles);
    if (!pb->diags.nerrors)
        hero_validate(pb);
    else {
        /* still validate what parsed, so one run shows every problem */
        hero_validate(pb);
    }
    hs_diags_print(stderr, &pb->diags, use_color());
    if (pb->diags.nerrors) {
        fprintf(stderr, "hero: %zu error%s; nothing ran\n", pb->diags.nerrors,
                pb->diags.nerrors == 1 ? "" : "s");
        hs_playbook_free(pb);
        return NULL;
    }
    return pb;
}

/* The configuration file (see runtime/config.h): its warnings are printed, an
 * error stops the command. */
static int load_config(void)
{
    hero_config_t cfg;
    char **warnings = NULL;
    hero_error_t e = HERO_ERROR_INIT;
    if (hero_config_load(NULL, &cfg, &warnings, &e) < 0) {
        fprintf(stderr, "hero: %s\n", e.msg);
        hero_error_clear(&e);
        return -1;
    }
    for (char **w = warnings; w && *w; w++)
        fprintf(stderr, "%s\n", *w);
    hero_config_warnings_free(warnings);
    hero_config_set_current(&cfg);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"check", no_argument, NULL, 'c'},      {"dry-run", no_argument, NULL, 'n'},
        {"jobs", required_argument, NULL, 'j'}, {"keep-going", no_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},    {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    bool check = false, dry = false, jobs_given = false;
    hero_run_opts_t ro = {.jobs = 8, .color = use_color()};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+j:kvqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': check = true; break;
        case 'n': dry = true; break;
        case 'k': ro.keep_going = true; break;
        case 'v': ro.verbosity = 1; break;
        case 'q': ro.verbosity = -1; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        case 'j': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1024)
                return usage_error("-j needs a number from 1 to 1024, not '%s'", optarg);
            ro.jobs = (int)v;
            jobs_given = true;
            break;
        }
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "run needs a playbook file");
    if (load_config() < 0)
        return EXIT_USAGE;
    if (!jobs_given && hero_config_current()->parallelism > 0)
        ro.jobs = hero_config_current()->parallelism;
    hs_playbook_t *pb = load_checked(argv + optind, argc - optind);
    if (!pb)
        return EXIT_USAGE;
    int rc = EXIT_OK;
    if (dry)
        hero_plan_print(stdout, pb);
    else if (!check)
        rc = hero_run(pb, &ro);
    hero_heropods_shutdown();
    hs_playbook_free(pb);
    return rc;
}


/* Replaces the file (the target, when `path` is a symlink) through a temporary
 * file and rename, keeping its mode so an executable playbook stays executable. */
static int write_file_atomic(const char *given, const char *data, size_t len)
{
    char *path = realpath(given, NULL);
    if (!path) {
        fprintf(stderr, "hero: cannot resolve '%s': %s\n", given, strerror(errno));
        return -1;
    }
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
    char *tmp = hero_xasprintf("%s.hero-fmt.XXXXXX", path);
    free(path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "hero: cannot write next to '%s': %s\n", given, strerror(errno));
        free(tmp);
        return -1;
    }
    if (fchmod(fd, mode) < 0) {
        fprintf(stderr, "hero: cannot set the mode of '%s': %s\n", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "hero: cannot write '%s': %s\n", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    char *dest = hero_xstrndup(tmp, strlen(tmp) - strlen(".hero-fmt.XXXXXX"));
    int rc = fsync(fd);
    if (close(fd) < 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, dest);
    int e = errno;
    free(dest);
    if (rc < 0) {
        fprintf(stderr, "hero: cannot replace '%s': %s\n", given, strerror(e));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static int cmd_fmt(int argc, char **argv)
{
    bool write_back = false, check = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-w") || !strcmp(argv[i], "--write"))
            write_back = true;
        else if (!strcmp(argv[i], "--check"))
            check = true;
        else
            return usage_error("fmt: unknown option '%s'", argv[i]);
    }
    if (i >= argc)
        return usage_error("%s", "fmt needs a playbook file");
    int rc = EXIT_OK;
    for (; i < argc; i++) {
        int e = 0;
        hs_source_t *src = hs_source_read(argv[i], &e);
        if (!src) {
            fprintf(stderr, "hero: cannot read '%s': %s\n", argv[i], strerror(e));
            rc = EXIT_USAGE;
            continue;
        }
        if (src->markdown) {
            fprintf(stderr, "hero: fmt rewrites playbooks, not markdown: '%s' is left as it is\n",
                    argv[i]);
            hs_source_free(src);
            rc = EXIT_USAGE;
            continue;
        }
        hs_arena_t *arena = hs_arena_new();
        hs_diags_t diags = {0};
        hs_doc_t doc;
        hs_parse(src, arena, &diags, true, &doc);
        hs_diags_sort(&diags);
        hs_diags_print(stderr, &diags, use_color());
        if (diags.nerrors) {
            rc = EXIT_USAGE;
        } else {
            size_t len;
            char *out = hs_format_string(&doc, &len);
            bool same = len == src->len && memcmp(out, src->text, len) == 0;
            if (check) {
                if (!same) {
                    printf("%s\n", argv[i]);
                    if (rc == EXIT_OK)
                        rc = EXIT_FAILED;
                }
            } else if (write_back) {
                if (!same && write_file_atomic(argv[i], out, len) < 0)
                    rc = EXIT_FAILED;
            } else {
                fwrite(out, 1, len, stdout);
            }
            free(out);
        }
        hs_doc_free(&doc);
        hs_diags_free(&diags);
        hs_arena_free(arena);
        hs_source_free(src);
    }
    return rc;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "dump needs a playbook file");
    hs_playbook_t *pb = hs_playbook_load((const char *const *)argv + 1, (size_t)argc - 1);
    hero_validate(pb);
    hs_diags_print(stderr, &pb->diags, use_color());
    for (size_t i = 0; i < pb->nactions; i++)
        hs_dump_action(stdout, pb->actions[i]);
    int rc = pb->diags.nerrors ? EXIT_USAGE : EXIT_OK;
    hs_playbook_free(pb);
    return rc;
}

/* Ends a `hero run`: everything of hero's own is closed and freed by now (the store,
 * the loop, the playbook), so the C library's exit would only run the destructors of
 * the shared libraries (some 50 once libcurl and libarchive are open), which have
 * nothing to write back; _exit skips that, a millisecond or two per run here. */
static int run_and_exit(int argc, char **argv)
{
    int rc = cmd_run(argc, argv);
    if (fflush(NULL) != 0 && rc == EXIT_OK)
        rc = EXIT_FAILED;
    _exit(rc);
}

static bool looks_like_file(const char *a)
{
    return strchr(a, '/') || access(a, F_OK) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("hero %s\n", HERO_VERSION);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "run"))
        return run_and_exit(argc - 1, argv + 1);
    if (!strcmp(cmd, "fmt"))
        return cmd_fmt(argc - 1, argv + 1);
    if (!strcmp(cmd, "dump"))
        return cmd_dump(argc - 1, argv + 1);
    if (!strcmp(cmd, "pods"))
        return load_config() < 0 ? EXIT_USAGE : hero_heropods_cli(argc - 1, argv + 1);
    if (!strcmp(cmd, "actions")) {
        if (argc > 2 && !strcmp(argv[2], "--roff"))
            hero_actions_roff(stdout);
        else if (argc > 2)
            return usage_error("actions: unknown option '%s'", argv[2]);
        else
            hero_actions_list(stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (hero_action_help(stdout, argv[2]) < 0)
            return usage_error("help: unknown action '%s' (hero actions lists them)", argv[2]);
        return EXIT_OK;
    }
    if (cmd[0] != '-' && looks_like_file(cmd))
        return run_and_exit(argc, argv); /* `hero FILE...`, as a #! interpreter */
    if (cmd[0] == '-')
        return run_and_exit(argc, argv);
    return usage_error("unknown command or missing file '%s'", cmd);
}
