/* Per-item checks used by the schemas (names, env, mounts, ports, peers, ...). */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#include "checks.h"

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

const char *hero_check_name(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return "a name has 1 to 63 characters";
    if (!isalnum((unsigned char)s[0]))
        return "a name starts with a letter or a digit";
    for (size_t i = 1; i < n; i++)
        if (!is_name_char(s[i]))
            return "a name holds only letters, digits, '_', '.' and '-'";
    return NULL;
}

const char *hero_check_ifname(const char *s, size_t n)
{
    if (n == 0 || n > 15)
        return "an interface name has 1 to 15 characters";
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return "an interface name holds only letters, digits, '_', '.' and '-'";
    return NULL;
}

const char *hero_check_env(const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    if (!eq || eq == s)
        return "expected KEY=value";
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return "an environment variable name starts with a letter or '_'";
    for (const char *p = s; p < eq; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return "an environment variable name holds only letters, digits and '_'";
    return NULL;
}

const char *hero_check_abs_path(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/')
        return "expected an absolute path (starting with '/')";
    return NULL;
}

/* host_path:container_path[:ro|:rw] */
const char *hero_check_mount(const char *s, size_t n)
{
    const char *c1 = memchr(s, ':', n);
    if (!c1 || c1 == s)
        return "expected host_path:container_path[:ro]";
    const char *rest = c1 + 1;
    size_t rn = n - (size_t)(rest - s);
    const char *c2 = memchr(rest, ':', rn);
    size_t cn = c2 ? (size_t)(c2 - rest) : rn;
    if (cn == 0 || rest[0] != '/')
        return "the container path of a mount is absolute: host_path:/container/path[:ro]";
    if (c2) {
        size_t on = rn - cn - 1;
        if (!((on == 2 && memcmp(c2 + 1, "ro", 2) == 0) || (on == 2 && memcmp(c2 + 1, "rw", 2) == 0)))
            return "a mount option is ro or rw";
    }
    return NULL;
}

static bool port_ok(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* hostport:containerport[/tcp|/udp] */
const char *hero_check_port(const char *s, size_t n)
{
    static const char *msg = "expected hostport:containerport[/tcp|/udp], ports 1 to 65535";
    const char *c = memchr(s, ':', n);
    if (!c)
        return msg;
    const char *slash = memchr(c, '/', n - (size_t)(c - s));
    size_t cn = (size_t)((slash ? slash : s + n) - c - 1);
    if (!port_ok(s, (size_t)(c - s)) || !port_ok(c + 1, cn))
        return msg;
    if (slash) {
        size_t pn = n - (size_t)(slash - s) - 1;
        if (!((pn == 3 && memcmp(slash + 1, "tcp", 3) == 0) || (pn == 3 && memcmp(slash + 1, "udp", 3) == 0)))
            return "the protocol of a port is tcp or udp";
    }
    return NULL;
}

const char *hero_check_ip(const char *s, size_t n)
{
    char buf[64];
    unsigned char addr[16];
    if (n == 0 || n >= sizeof(buf))
        return "expected an IP address";
    memcpy(buf, s, n);
    buf[n] = 0;
    if (inet_pton(AF_INET, buf, addr) != 1 && inet_pton(AF_INET6, buf, addr) != 1)
        return "expected an IP address such as 10.10.0.1 or fd00::1";
    return NULL;
}

const char *hero_check_ipv6_prefix(const char *s, size_t n)
{
    static const char *msg = "expected an IPv6 prefix such as 400::/7";
    char buf[64];
    unsigned char addr[16];
    const char *slash = memchr(s, '/', n);
    if (!slash || (size_t)(slash - s) >= sizeof(buf))
        return msg;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = 0;
    if (inet_pton(AF_INET6, buf, addr) != 1)
        return msg;
    size_t ln = n - (size_t)(slash - s) - 1;
    unsigned v = 0;
    if (ln == 0 || ln > 3)
        return msg;
    for (size_t i = 0; i < ln; i++) {
        if (!isdigit((unsigned char)slash[1 + i]))
            return msg;
        v = v * 10 + (unsigned)(slash[1 + i] - '0');
    }
    /* (::/0 would route everything into the containers, and the overlay refuses it) */
    if (v < 1 || v > 128)
        return "an IPv6 prefix length is 1 to 128";
    return NULL;
}

/* tcp://1.2.3.4:9651, quic://[2001:db8::1]:9651, tls://host:port */
const char *hero_check_peer(const char *s, size_t n)
{
    static const char *msg = "expected a peer such as tcp://192.0.2.1:9651 or quic://[2001:db8::1]:9651";
    const char *sep = n > 3 ? strstr(s, "://") : NULL;
    if (!sep || sep >= s + n)
        return msg;
    size_t sn = (size_t)(sep - s);
    if (!((sn == 3 && memcmp(s, "tcp", 3) == 0) || (sn == 4 && memcmp(s, "quic", 4) == 0) ||
          (sn == 3 && memcmp(s, "tls", 3) == 0)))
        return "a peer's scheme is tcp, quic or tls";
    const char *h = sep + 3, *e = s + n;
    const char *colon;
    if (h < e && *h == '[') {
        const char *rb = memchr(h, ']', (size_t)(e - h));
        if (!rb || rb + 1 >= e || rb[1] != ':' || rb == h + 1)
            return msg;
        colon = rb + 1;
    } else {
        colon = NULL;
        for (const char *p = h; p < e; p++)
            if (*p == ':')
                colon = p;
        if (!colon || colon == h)
            return msg;
        if (memchr(h, ':', (size_t)(colon - h)))
            return "an IPv6 peer address goes in brackets, as in tcp://[2001:db8::1]:9651";
    }
    if (!port_ok(colon + 1, (size_t)(e - colon - 1)))
        return "a peer needs a port from 1 to 65535";
    return NULL;
}

/* host:port, as in 127.0.0.1:8989 or [::1]:8989 */
const char *hero_check_hostport(const char *s, size_t n)
{
    const char *colon = NULL;
    for (const char *p = s; p < s + n; p++)
        if (*p == ':')
            colon = p;
    if (!colon || colon == s || !port_ok(colon + 1, n - (size_t)(colon - s) - 1))
        return "expected host:port, such as 127.0.0.1:8989";
    return NULL;
}

const char *hero_check_version(const char *s, size_t n)
{
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        if (isdigit((unsigned char)s[i]))
            digit = true;
        else if (s[i] == '.' && digit)
            digit = false;
        else
            return "expected a version such as 0.7.10";
    }
    return digit ? NULL : "expected a version such as 0.7.10";
}

static const char *const caps[] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE", "ALL",
};

const char *hero_check_cap(const char *s, size_t n)
{
    if (n > 4 && strncasecmp(s, "CAP_", 4) == 0) {
        s += 4;
        n -= 4;
    }
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        if (strlen(caps[i]) == n && strncasecmp(caps[i], s, n) == 0)
            return NULL;
    return "not a Linux capability (such as NET_ADMIN or CAP_SYS_PTRACE, or ALL)";
}

/* os/arch[/variant], as in linux/amd64 or linux/arm64/v8 */
const char *hero_check_platform(const char *s, size_t n)
{
    int slashes = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/') {
            if (i == 0 || s[i - 1] == '/' || i + 1 == n)
                return "expected os/arch[/variant], such as linux/arm64/v8";
            slashes++;
        } else if (!isalnum((unsigned char)s[i]) && s[i] != '_') {
            return "expected os/arch[/variant], such as linux/arm64/v8";
        }
    }
    return slashes == 1 || slashes == 2 ? NULL : "expected os/arch[/variant], such as linux/arm64/v8";
}

const char *hero_check_nonempty(const char *s, size_t n)
{
    (void)s;
    return n ? NULL : "must not be empty";
}
