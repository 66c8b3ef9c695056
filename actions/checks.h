/* Private to actions/: per-item value checks named by the schemas. */
#ifndef HERO_ACTIONS_CHECKS_H
#define HERO_ACTIONS_CHECKS_H

#include <stdbool.h>
#include <stddef.h>

const char *hero_check_name(const char *s, size_t n);
const char *hero_check_ifname(const char *s, size_t n);
const char *hero_check_env(const char *s, size_t n);
const char *hero_check_abs_path(const char *s, size_t n);
const char *hero_check_mount(const char *s, size_t n);
const char *hero_check_port(const char *s, size_t n);
const char *hero_check_ip(const char *s, size_t n);
const char *hero_check_ipv6_prefix(const char *s, size_t n);
const char *hero_check_peer(const char *s, size_t n);
const char *hero_check_hostport(const char *s, size_t n);
const char *hero_check_version(const char *s, size_t n);
const char *hero_check_cap(const char *s, size_t n);
const char *hero_check_platform(const char *s, size_t n);
const char *hero_check_nonempty(const char *s, size_t n);

#endif
