/*
 * options: the flag parsing the commands share: sizes with a unit, the
 * flags of every registry command, and `-c FILE` of the config commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "cli/options.h"
#include "common/errors.h"
#include "common/log.h"

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t want;
    } good[] = {
        {"1", 1},           {"512", 512},        {"4k", 4096},         {"4K", 4096},
        {"4KiB", 4096},     {"4KB", 4096},       {"64M", 64ull << 20}, {"64MiB", 64ull << 20},
        {"2G", 2ull << 30}, {"2GB", 2ull << 30}, {"10B", 10},
    };
    static const char *const bad[] = {"", "M", "4X", "4MiBs", "4 M", "-"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 0;
        assert_int_equal(options_parse_size(good[i].text, &v), 0);
        assert_int_equal(v, good[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        assert_int_equal(options_parse_size(bad[i], &v), FERRY_EINVAL);
        assert_int_equal(v, 7);
    }
}

static void test_common_flag(void **state)
{
    (void)state;
    struct options_common f;
    memset(&f, 0, sizeof(f));

    assert_int_equal(options_common_flag("copy", OPT_INSECURE, NULL, &f), OPTIONS_RUN);
    assert_true(f.http.insecure);
    assert_int_equal(options_common_flag("copy", OPT_CA_FILE, "/ca.pem", &f), OPTIONS_RUN);
    assert_string_equal(f.http.ca_file, "/ca.pem");
    assert_int_equal(options_common_flag("copy", OPT_CERT, "/c.pem", &f), OPTIONS_RUN);
    assert_int_equal(options_common_flag("copy", OPT_KEY, "/k.pem", &f), OPTIONS_RUN);
    assert_string_equal(f.http.cert_file, "/c.pem");
    assert_string_equal(f.http.key_file, "/k.pem");
    assert_int_equal(options_common_flag("copy", 'v', NULL, &f), OPTIONS_RUN);
    assert_int_equal(options_common_flag("copy", 'v', NULL, &f), OPTIONS_RUN);
    assert_int_equal(f.verbose, 2);

    assert_int_equal(options_common_flag("copy", OPT_RETRIES, "1", &f), OPTIONS_RUN);
    assert_int_equal(f.retries, 1);
    assert_int_equal(options_common_flag("copy", OPT_RETRIES, "100", &f), OPTIONS_RUN);
    assert_int_equal(options_common_flag("copy", OPT_RETRIES, "0", &f), OPTIONS_EXIT_USAGE);
    assert_int_equal(options_common_flag("copy", OPT_RETRIES, "101", &f), OPTIONS_EXIT_USAGE);
    /* Not one of them: a usage error. */
    assert_int_equal(options_common_flag("copy", '?', NULL, &f), OPTIONS_EXIT_USAGE);
    assert_int_equal(options_common_flag("copy", OPT_JSON, NULL, &f), OPTIONS_EXIT_USAGE);
}

static void test_verbosity(void **state)
{
    (void)state;
    int saved = log_threshold;
    log_threshold = FERRY_LOG_WARN;
    options_verbosity(0);
    assert_int_equal(log_threshold, FERRY_LOG_WARN);
    options_verbosity(1);
    assert_int_equal(log_threshold, FERRY_LOG_INFO);
    options_verbosity(2);
    assert_int_equal(log_threshold, FERRY_LOG_DEBUG);
    log_threshold = saved;
}

static int usage_calls;

static void count_usage(FILE *out)
{
    (void)out;
    usage_calls++;
}

/* Parse `args` (NULL-terminated, the command's name first) as a config command. */
static int parse(bool allow_json, bool allow_check, struct options_config_cmd *f, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, f);
    for (char *a = va_arg(ap, char *); a != NULL && argc < 15; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return options_config_cmd_parse("sync", argc, argv, count_usage, allow_json, allow_check, f);
}

static void test_config_cmd_parse(void **state)
{
    (void)state;
    struct options_config_cmd f;
    char sync[] = "sync", c[] = "-c", file[] = "ferry.yaml", json[] = "--json";
    char check[] = "--check-config", help[] = "--help", extra[] = "extra";
    char config_eq[] = "--config=other.yaml";

    assert_int_equal(parse(true, false, &f, sync, c, file, json, NULL), OPTIONS_RUN);
    assert_string_equal(f.config, "ferry.yaml");
    assert_true(f.json);
    assert_false(f.check);
    assert_int_equal(parse(false, true, &f, sync, config_eq, check, NULL), OPTIONS_RUN);
    assert_string_equal(f.config, "other.yaml");
    assert_true(f.check);
    assert_false(f.json);

    /* A flag the command does not take, no -c, or an argument left over. */
    assert_int_equal(parse(false, true, &f, sync, c, file, json, NULL), OPTIONS_EXIT_USAGE);
    assert_int_equal(parse(true, false, &f, sync, c, file, check, NULL), OPTIONS_EXIT_USAGE);
    assert_int_equal(parse(true, false, &f, sync, json, NULL), OPTIONS_EXIT_USAGE);
    assert_int_equal(parse(true, false, &f, sync, c, file, extra, NULL), OPTIONS_EXIT_USAGE);

    usage_calls = 0;
    assert_int_equal(parse(true, false, &f, sync, help, NULL), 0);
    assert_int_equal(usage_calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_common_flag),
        cmocka_unit_test(test_verbosity),
        cmocka_unit_test(test_config_cmd_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
