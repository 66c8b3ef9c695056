/* Conversions of parameter text to typed values, and the edit distance. */
#include <string.h>

#include "actions/actions.h"
#include "tap.h"

static void conv_bool(void)
{
    const char *yes[] = {"true", "TRUE", "Yes", "y", "1"}, *no[] = {"false", "No", "N", "0"};
    for (size_t i = 0; i < 5; i++) {
        bool v = false;
        TAP_OK(!hero_conv_bool(yes[i], strlen(yes[i]), &v) && v, yes[i]);
    }
    for (size_t i = 0; i < 4; i++) {
        bool v = true;
        TAP_OK(!hero_conv_bool(no[i], strlen(no[i]), &v) && !v, no[i]);
    }
    bool v;
    TAP_OK(hero_conv_bool("maybe", 5, &v) != NULL, "bool: 'maybe' refused");
    TAP_OK(hero_conv_bool("", 0, &v) != NULL, "bool: empty refused");
    TAP_OK(hero_conv_bool("truex", 5, &v) != NULL, "bool: trailing junk refused");
}

static void conv_int(void)
{
    int64_t v = 0;
    TAP_OK(!hero_conv_int("42", 2, &v) && v == 42, "int: 42");
    TAP_OK(!hero_conv_int("-7", 2, &v) && v == -7, "int: -7");
    TAP_OK(hero_conv_int("12x", 3, &v) != NULL, "int: trailing junk refused");
    TAP_OK(hero_conv_int("", 0, &v) != NULL, "int: empty refused");
    TAP_OK(hero_conv_int("-", 1, &v) != NULL, "int: lone sign refused");
    TAP_OK(!hero_conv_int("9223372036854775807", 19, &v) && v == INT64_MAX, "int: INT64_MAX");
    TAP_OK(!hero_conv_int("-9223372036854775808", 20, &v) && v == INT64_MIN, "int: INT64_MIN");
    TAP_OK(hero_conv_int("9223372036854775808", 19, &v) != NULL, "int: overflow refused");
    TAP_OK(hero_conv_int("99999999999999999999", 20, &v) != NULL, "int: big overflow refused");
}

static void conv_size(void)
{
    uint64_t v = 0;
    TAP_OK(!hero_conv_size("1024", 4, &v) && v == 1024, "size: bytes");
    TAP_OK(!hero_conv_size("512M", 4, &v) && v == 512ull << 20, "size: 512M");
    TAP_OK(!hero_conv_size("2G", 2, &v) && v == 2ull << 30, "size: 2G");
    TAP_OK(!hero_conv_size("64k", 3, &v) && v == 64ull << 10, "size: 64k");
    TAP_OK(!hero_conv_size("1GiB", 4, &v) && v == 1ull << 30, "size: 1GiB");
    TAP_OK(!hero_conv_size("3mb", 3, &v) && v == 3ull << 20, "size: 3mb");
    TAP_OK(!hero_conv_size("1T", 2, &v) && v == 1ull << 40, "size: 1T");
    TAP_OK(hero_conv_size("12X", 3, &v) != NULL, "size: unknown unit refused");
    TAP_OK(hero_conv_size("M", 1, &v) != NULL, "size: no digits refused");
    TAP_OK(hero_conv_size("5MM", 3, &v) != NULL, "size: junk after unit refused");
    TAP_OK(hero_conv_size("99999999999T", 12, &v) != NULL, "size: overflow refused");
}

static void conv_duration(void)
{
    int64_t v = 0;
    TAP_OK(!hero_conv_duration("500ms", 5, &v) && v == 500, "duration: 500ms");
    TAP_OK(!hero_conv_duration("10s", 3, &v) && v == 10000, "duration: 10s");
    TAP_OK(!hero_conv_duration("2m", 2, &v) && v == 120000, "duration: 2m");
    TAP_OK(!hero_conv_duration("1h", 2, &v) && v == 3600000, "duration: 1h");
    TAP_OK(!hero_conv_duration("1m30s", 5, &v) && v == 90000, "duration: 1m30s");
    TAP_OK(!hero_conv_duration("1h2m3s4ms", 9, &v) && v == 3723004, "duration: 1h2m3s4ms");
    TAP_OK(hero_conv_duration("10", 2, &v) != NULL, "duration: a unit is required");
    TAP_OK(hero_conv_duration("10x", 3, &v) != NULL, "duration: unknown unit refused");
    TAP_OK(hero_conv_duration("s", 1, &v) != NULL, "duration: no digits refused");
    TAP_OK(hero_conv_duration("", 0, &v) != NULL, "duration: empty refused");
}

static void conv_ip(void)
{
    uint32_t a = 0;
    int len = 0;
    TAP_OK(!hero_conv_ipv4("10.10.0.1", 9, &a) && a == 0x0a0a0001, "ipv4: 10.10.0.1");
    TAP_OK(hero_conv_ipv4("10.10.0", 7, &a) != NULL, "ipv4: three parts refused");
    TAP_OK(hero_conv_ipv4("10.10.0.256", 11, &a) != NULL, "ipv4: 256 refused");
    TAP_OK(hero_conv_ipv4("10.010.0.1", 10, &a) != NULL, "ipv4: leading zero refused");
    TAP_OK(hero_conv_ipv4("10.10.0.1x", 10, &a) != NULL, "ipv4: junk refused");
    TAP_OK(!hero_conv_ipv4_prefix("10.10.0.0/24", 12, &a, &len) && len == 24 && a == 0x0a0a0000,
           "prefix: 10.10.0.0/24");
    TAP_OK(!hero_conv_ipv4_prefix("10.0.0.0/8", 10, &a, &len) && len == 8, "prefix: /8");
    TAP_OK(hero_conv_ipv4_prefix("10.10.0.5/24", 12, &a, &len) != NULL, "prefix: host bits refused");
    TAP_OK(hero_conv_ipv4_prefix("10.10.0.0/33", 12, &a, &len) != NULL, "prefix: /33 refused");
    TAP_OK(hero_conv_ipv4_prefix("10.10.0.0", 9, &a, &len) != NULL, "prefix: no length refused");
    TAP_OK(hero_conv_ipv4_prefix("10.10.0.0/", 10, &a, &len) != NULL, "prefix: empty length refused");
}

static void conv_float(void)
{
    double v = 0;
    TAP_OK(!hero_conv_float("1.5", 3, &v) && v == 1.5, "float: 1.5");
    TAP_OK(!hero_conv_float("2", 1, &v) && v == 2, "float: 2");
    TAP_OK(hero_conv_float("1.5x", 4, &v) != NULL, "float: junk refused");
    TAP_OK(hero_conv_float("nan", 3, &v) != NULL, "float: nan refused");
    TAP_OK(hero_conv_float("1e3", 3, &v) != NULL, "float: exponent refused");
}

static void distance(void)
{
    TAP_OK(hero_edit_distance("container_start", 15, "container_strat", 15) == 1,
           "distance: a transposition is one edit");
    TAP_OK(hero_edit_distance("env", 3, "envv", 4) == 1, "distance: one insertion");
    TAP_OK(hero_edit_distance("NAME", 4, "name", 4) == 0, "distance: case-insensitive");
    TAP_OK(hero_edit_distance("abc", 3, "xyz", 3) == 3, "distance: all different");
}

int main(void)
{
    conv_bool();
    conv_int();
    conv_size();
    conv_duration();
    conv_ip();
    conv_float();
    distance();
    return tap_done();
}
