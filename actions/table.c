/* The one static dispatch table: every `actor.action` hero knows, with its parameter
 * schema. Validation, `hero actions`, `hero help` and the ACTIONS section of
 * heroscript(5) are all generated from it. Handlers live beside their module
 * (actions/core/, actions/heropods/); an entry whose handler is NULL validates but
 * fails at run time with "not implemented in this build". */
#include <string.h>

#include "actions.h"
#include "checks.h"
#include "core/core.h"
#include "heropods/heropods.h"

/* name, type, required, default, doc, then optionally res and check in that order,
 * or any field by designator */
#define P(n, t, r, d, doc_, ...) {.name = n, .type = t, .required = r, .def = d, .doc = doc_, __VA_ARGS__}
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- core ---- */
#define RESOURCES_PARAM                                                                    \
    P("resources", HERO_T_LIST, false, NULL,                                              \
      "names of resources this action holds; actions sharing one run one after the other", \
      HERO_RES_NAMED)

static const hero_param_def_t p_echo[] = {
    P("msg", HERO_T_STR, true, NULL, "the text to print (a line)"),
    RESOURCES_PARAM,
};
static const hero_param_def_t p_sleep[] = {
    P("duration", HERO_T_DURATION, true, NULL, "how long to wait, such as 500ms or 2s"),
    RESOURCES_PARAM,
};

static const hero_param_def_t p_fail[] = {
    P("msg", HERO_T_STR, true, NULL, "why: the action fails with this message"),
    RESOURCES_PARAM,
};

/* ---- play / session (directives, carried out while loading) ---- */
static const hero_param_def_t p_include[] = {
    P("path", HERO_T_STR, true, NULL,
      "a file, or a directory whose .heroscript files are included in name order; relative "
      "to the including file",
      .check = hero_check_nonempty),
};
static const hero_param_def_t p_set[] = {
    P("name", HERO_T_STR, true, NULL, "the variable; later values use it as ${name} or {name}"),
    P("value", HERO_T_STR, false, "", "its value"),
};
static const hero_param_def_t p_env_set[] = {
    P("key", HERO_T_STR, true, NULL, "the variable (the reference's spelling of play.set)"),
    P("val", HERO_T_STR, false, "", "its value"),
};

/* ---- heropods (schemas per ../shared/heropods-actions.md) ---- */
#define INSTANCE_PARAM                                                                     \
    P("heropods", HERO_T_STR, false, NULL,                                               \
      "the instance; defaults to the instance configured last", .check = hero_check_name)

static const hero_param_def_t p_configure[] = {
    P("name", HERO_T_STR, false, "default",
      "instance name; one instance is one bridge network with its overlay settings",
      HERO_RES_INSTANCE, hero_check_name),
    P("reset", HERO_T_BOOL, false, "false",
      "delete this instance's containers, leases and rules first (never anything else)"),
    P("use_podman", HERO_T_BOOL, false, "false", "pull images through podman instead of hero's client"),
    P("base_dir", HERO_T_STR, false, NULL, "where state, images and container roots live", .defdoc = "$HERO_BASE_DIR or /var/lib/hero", .check = hero_check_nonempty),
    P("bridge_name", HERO_T_STR, false, "heropods0", "the bridge's interface name",
      .check = hero_check_ifname),
    P("subnet", HERO_T_IPV4_PREFIX, false, "10.10.0.0/24", "the bridge's IPv4 prefix, /8 to /30",
      .min = 8, .max = 30),
    P("gateway_ip", HERO_T_IPV4_ADDR, false, NULL, "the bridge's address; never leased to a container", .defdoc = "first host of subnet"),
    P("dns_servers", HERO_T_LIST, false, "8.8.8.8,8.8.4.4",
      "written to each container's own resolv.conf", .check = hero_check_ip),
    P("nat", HERO_T_BOOL, false, "true", "masquerade the subnet out of the host's default route"),
};

static const hero_param_def_t p_enable_mycelium[] = {
    INSTANCE_PARAM,
    P("version", HERO_T_STR, true, NULL, "minimum mycelium version (checked against mycelium -V)",
      .check = hero_check_version),
    P("ipv6_range", HERO_T_STR, true, NULL, "the overlay range routed into containers, normally 400::/7",
      .check = hero_check_ipv6_prefix),
    P("key_path", HERO_T_STR, true, NULL, "the node's key file (32 raw bytes); ~ expands",
      .check = hero_check_nonempty),
    P("peers", HERO_T_LIST, true, NULL, "tcp://ip:port, quic://[v6]:port or tls://host:port",
      .check = hero_check_peer),
    P("api_addr", HERO_T_STR, false, "127.0.0.1:8989", "the daemon's HTTP API",
      .check = hero_check_hostport),
    P("tun_name", HERO_T_STR, false, "mycelium", "the TUN name when hero starts the daemon",
      .check = hero_check_ifname),
};

static const hero_param_def_t p_enable_yggdrasil[] = {
    INSTANCE_PARAM,
    P("listen", HERO_T_LIST, false, "", "addresses the node listens on for peers, such as tcp://[::]:9001",
      .check = hero_check_peer),
    P("peers", HERO_T_LIST, false, "", "peers to connect to, such as tcp://[fd00::2]:9001",
      .check = hero_check_peer),
    P("multicast", HERO_T_BOOL, false, "false", "discover peers by multicast on every interface"),
    P("key_path", HERO_T_STR, false, NULL,
      "the node's private key (128 hex digits, as yggdrasil's PrivateKey); ~ expands; without "
      "it hero makes one in <base_dir>/overlay/yggdrasil.key",
      .defdoc = "hero's own", .check = hero_check_nonempty),
};

static const hero_param_def_t p_container_new[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the container's name", HERO_RES_CONTAINER, hero_check_name),
    P("image", HERO_T_STR, false, "alpine_3_20",
      "alpine_3_20, ubuntu_24_04, ubuntu_25_04, custom, embedded, or an image reference",
      HERO_RES_IMAGE_USE, hero_check_nonempty),
    P("custom_image_name", HERO_T_STR, false, NULL, "the store name of the image (image:'custom')",
      HERO_RES_IMAGE_USE, hero_check_name),
    P("docker_url", HERO_T_STR, false, NULL, "the image reference to pull (image:'custom')",
      .check = hero_check_nonempty),
    P("reset", HERO_T_BOOL, false, "false", "replace an existing container of this name"),
    P("memory", HERO_T_SIZE, false, NULL, "memory limit, such as 512M", .defdoc = "unlimited"),
    P("cpus", HERO_T_FLOAT, false, NULL, "CPU limit in cores, such as 1.5", .defdoc = "unlimited"),
    P("pids_limit", HERO_T_INT, false, NULL, "most processes at once", .defdoc = "unlimited", .min = 1,
      .max = 4194304),
    P("env", HERO_T_LIST, false, NULL, "KEY=value items added to the image's environment",
      .check = hero_check_env),
    P("mounts", HERO_T_LIST, false, NULL, "host_path:container_path[:ro] bind mounts",
      .check = hero_check_mount),
    P("workdir", HERO_T_STR, false, NULL, "working directory", .defdoc = "the image's", .check = hero_check_abs_path),
    P("user", HERO_T_STR, false, NULL, "user[:group], by name or id", .defdoc = "the image's",
      .check = hero_check_nonempty),
    P("hostname", HERO_T_STR, false, NULL, "the container's hostname", .defdoc = "the container's name",
      .check = hero_check_name),
    P("cap_add", HERO_T_LIST, false, NULL, "capabilities added to the default set",
      .check = hero_check_cap),
    P("cap_drop", HERO_T_LIST, false, NULL, "capabilities dropped from the default set",
      .check = hero_check_cap),
    P("entrypoint", HERO_T_LIST, false, NULL, "overrides the image's entrypoint", .defdoc = "the image's"),
    P("cmd", HERO_T_LIST, false, NULL, "overrides the image's command", .defdoc = "the image's"),
    P("ports", HERO_T_LIST, false, NULL, "hostport:containerport[/tcp|/udp] published on the host",
      .check = hero_check_port),
};

static const hero_param_def_t p_container_start[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the container", HERO_RES_CONTAINER, hero_check_name),
    P("keep_alive", HERO_T_BOOL, false, "false",
      "wait for the entrypoint; on exit 0 the container stays up, otherwise the action fails "
      "with its code"),
    P("timeout", HERO_T_DURATION, false, "5m", "how long keep_alive waits for the entrypoint"),
};

static const hero_param_def_t p_container_exec[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the container", HERO_RES_CONTAINER, hero_check_name),
    P("cmd", HERO_T_STR, false, NULL, "run as /bin/sh -c cmd inside the container"),
    P("args", HERO_T_LIST, false, NULL, "run this argv directly inside the container, no shell"),
    P("stdout", HERO_T_BOOL, false, "true", "print the command's output"),
    P("timeout", HERO_T_DURATION, false, NULL, "end the command after this long", .defdoc = "none"),
    P("env", HERO_T_LIST, false, NULL, "KEY=value items for the command", .check = hero_check_env),
    P("workdir", HERO_T_STR, false, NULL, "working directory", .defdoc = "the container's",
      .check = hero_check_abs_path),
    P("user", HERO_T_STR, false, NULL, "user[:group], by name or id", .defdoc = "the container's",
      .check = hero_check_nonempty),
    P("ignore_error", HERO_T_BOOL, false, "false", "a non-zero exit does not fail the action"),
};

static const hero_param_def_t p_container_stop[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the container", HERO_RES_CONTAINER, hero_check_name),
    P("timeout", HERO_T_DURATION, false, "10s",
      "grace period between the stop signal (the image's StopSignal, else SIGTERM) and SIGKILL"),
};

static const hero_param_def_t p_container_delete[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the container; a missing one is not an error",
      HERO_RES_CONTAINER, hero_check_name),
};

static const hero_param_def_t p_image_pull[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the store name", HERO_RES_IMAGE, hero_check_name),
    P("ref", HERO_T_STR, true, NULL, "the image reference, such as docker.io/library/alpine:3.20",
      .check = hero_check_nonempty),
    P("reset", HERO_T_BOOL, false, "false", "pull again even if the image is stored"),
    P("platform", HERO_T_STR, false, NULL, "os/arch[/variant]", .defdoc = "the host's", .check = hero_check_platform),
};

static const hero_param_def_t p_image_import[] = {
    INSTANCE_PARAM,
    P("source_path", HERO_T_STR, true, NULL, "a .tgz or .tar of a root filesystem",
      .check = hero_check_nonempty),
    P("name", HERO_T_STR, true, NULL, "the store name", HERO_RES_IMAGE, hero_check_name),
    P("reset", HERO_T_BOOL, false, "false", "replace a stored image of this name"),
};

static const hero_param_def_t p_image_export[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the store name", HERO_RES_IMAGE, hero_check_name),
    P("dest_path", HERO_T_STR, true, NULL, "the .tgz to write", .check = hero_check_nonempty),
    P("compress_level", HERO_T_INT, false, "6", "gzip level", .min = 1, .max = 9),
};

static const hero_param_def_t p_image_delete[] = {
    INSTANCE_PARAM,
    P("name", HERO_T_STR, true, NULL, "the store name; refused while a container uses it",
      HERO_RES_IMAGE, hero_check_name),
};

#define ACT(actor_, name_, doc_, params_, ...) \
    {.actor = actor_, .name = name_, .doc = doc_, .params = params_, .nparams = N(params_), __VA_ARGS__}

const hero_action_def_t hero_action_table[] = {
    ACT("core", "echo", "print a line (in file order, like every action's output)", p_echo,
        .positional = "msg", .start = hero_core_echo_start, .what = "print msg"),
    ACT("core", "sleep", "wait for a duration", p_sleep, .positional = "duration",
        .start = hero_core_sleep_start, .what = "wait for duration"),
    ACT("core", "fail", "fail with a message (a guard, or a test of --keep-going)", p_fail,
        .positional = "msg", .start = hero_core_fail_start, .what = "fail with msg"),
    ACT("play", "include", "include a file or a directory of playbooks at this point", p_include,
        .positional = "path", .flags = HERO_ACT_DIRECTIVE, .what = "(done while loading)"),
    ACT("play", "set", "define a variable for the values that follow", p_set,
        .flags = HERO_ACT_DIRECTIVE, .what = "(done while loading)"),
    ACT("session", "env_set", "define a variable (the reference's form of play.set)", p_env_set,
        .flags = HERO_ACT_DIRECTIVE, .what = "(done while loading)"),
    ACT("heropods", "configure", "create or load an instance: its bridge network and settings",
        p_configure, .check = hero_heropods_check_configure, .start = hero_heropods_configure_start,
        .what = "set up the instance's bridge, NAT and state"),
    ACT("heropods", "enable_mycelium", "give the instance's containers the Mycelium IPv6 overlay",
        p_enable_mycelium, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL,
        .start = hero_heropods_enable_mycelium_start,
        .what = "use or start the mycelium daemon; route the overlay to containers"),
    ACT("heropods", "enable_yggdrasil", "give the instance's containers the Yggdrasil IPv6 overlay",
        p_enable_yggdrasil, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL,
        .start = hero_heropods_enable_yggdrasil_start,
        .what = "use or start the yggdrasil daemon; route 200::/7 to containers"),
    ACT("heropods", "container_new", "define a container (nothing runs yet)", p_container_new,
        .flags = HERO_ACT_INSTANCE, .check = hero_heropods_check_new,
        .start = hero_heropods_new_start,
        .what = "resolve the image and write the container's OCI config"),
    ACT("heropods", "container_start", "start a container", p_container_start,
        .flags = HERO_ACT_INSTANCE, .start = hero_heropods_start_start, .what = "crun create, set up its network, crun start"),
    ACT("heropods", "container_exec", "run a command in a running container", p_container_exec,
        .flags = HERO_ACT_INSTANCE, .check = hero_heropods_check_exec,
        .start = hero_heropods_exec_start,
        .what = "crun exec the command and print its output"),
    ACT("heropods", "container_stop", "stop a container (SIGTERM, grace, SIGKILL)",
        p_container_stop, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL, .start = hero_heropods_stop_start, .what = "signal the container, free its network"),
    ACT("heropods", "container_delete", "delete a container, its root, leases and rules",
        p_container_delete, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL, .start = hero_heropods_delete_start,
        .what = "stop if needed, crun delete, remove its root and state"),
    ACT("heropods", "image_pull", "pull an image from a registry into the store", p_image_pull,
        .flags = HERO_ACT_INSTANCE, .start = hero_heropods_image_pull_start, .what = "fetch and verify the image's layers"),
    ACT("heropods", "image_import", "import a root filesystem tarball as an image",
        p_image_import, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL, .start = hero_heropods_image_import_start, .what = "unpack the tarball into the store"),
    ACT("heropods", "image_export", "export an image's root filesystem as a .tgz",
        p_image_export, .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL, .start = hero_heropods_image_export_start, .what = "write the image as a tarball"),
    ACT("heropods", "image_delete", "delete an image from the store", p_image_delete,
        .flags = HERO_ACT_INSTANCE | HERO_ACT_INSTANCE_EXCL, .start = hero_heropods_image_delete_start, .what = "remove the image and unreferenced layers"),
};

const size_t hero_action_count = N(hero_action_table);


/* Called for every action and parameter of a playbook: compare without strlen. */
const hero_action_def_t *hero_action_find(const char *actor, size_t alen, const char *name,
                                          size_t nlen)
{
    for (size_t i = 0; i < hero_action_count; i++) {
        const hero_action_def_t *d = &hero_action_table[i];
        if (d->name[0] == name[0] && strncmp(d->name, name, nlen) == 0 && d->name[nlen] == 0 &&
            strncmp(d->actor, actor, alen) == 0 && d->actor[alen] == 0)
            return d;
    }
    return NULL;
}

const hero_param_def_t *hero_param_find(const hero_action_def_t *def, const char *key, size_t n)
{
    for (size_t i = 0; i < def->nparams; i++) {
        const char *pn = def->params[i].name;
        if ((pn[0] | 0x20) == (key[0] | 0x20) && strncasecmp(pn, key, n) == 0 && pn[n] == 0)
            return &def->params[i];
    }
    return NULL;
}
