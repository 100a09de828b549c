#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "common/errors.h"

/* Every secret the tests hand out contains this, so that messages can be searched for it. */
#define SECRET "hunter2"

struct fixture {
    char dir[64];
    char cwd[4096];
    char path[128]; /* dir + "/ferry.yaml" */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-config-XXXXXX");
    if (mkdtemp(f->dir) == NULL || getcwd(f->cwd, sizeof(f->cwd)) == NULL || chdir(f->dir) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/ferry.yaml", f->dir);
    setenv("FERRY_TEST_PASS", SECRET "-env", 1);
    setenv("FERRY_TEST_EMPTY", "", 1);
    unsetenv("FERRY_TEST_UNSET");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = chdir(f->cwd);
    if (rc == 0)
        rc = unit_tmpdir_remove(f->dir);
    free(f);
    return rc;
}

/* Write `contents` to `name` inside the fixture's directory with `mode`. */
static void write_file(const struct fixture *f, const char *name, const char *contents, int mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    size_t len = strlen(contents);
    assert_int_equal(fwrite(contents, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

static struct config *load_ok(const struct fixture *f, const char *yaml)
{
    struct config *c = NULL;
    char *err = NULL;
    write_file(f, "ferry.yaml", yaml, 0600);
    int rc = config_load("ferry.yaml", &c, &err);
    if (rc != 0)
        fail_msg("config_load: %d %s", rc, err ? err : "(no message)");
    assert_null(err);
    assert_non_null(c);
    return c;
}

/*
 * Load `yaml` as ferry.yaml, expect `want_rc` and an error message that
 * starts with `want` (the whole "ferry.yaml:LINE: KEY: problem" prefix), is
 * one line and holds no secret.
 */
static void expect_error(const struct fixture *f, const char *yaml, int want_rc, const char *want)
{
    struct config *c = (struct config *)0x1;
    char *err = NULL;
    write_file(f, "ferry.yaml", yaml, 0600);
    int rc = config_load("ferry.yaml", &c, &err);
    assert_null(c);
    assert_message(err);
    if (rc != want_rc || strncmp(err, want, strlen(want)) != 0)
        fail_msg("for:\n%s\ngot %d \"%s\"\nwant %d \"%s...\"", yaml, rc, err, want_rc, want);
    if (strstr(err, SECRET) != NULL)
        fail_msg("secret in message: %s", err);
    free(err);
}

#define FULL_CONFIG                                                                                \
    "# a full configuration\n"                                                                     \
    "data_dir: ./data\n"                                                                           \
    "listen: \"[::1]:8781\"\n"                                                                     \
    "webhook_token_file: token.txt\n"                                                              \
    "webhook_max_body: 2MiB\n"                                                                     \
    "poll_interval: 500ms\n"                                                                       \
    "poll_concurrency: 8\n"                                                                        \
    "retention: 2d\n"                                                                              \
    "spool_max: 200GiB\n"                                                                          \
    "retry: { attempts: 3, base: 250ms, max: 1m }\n"                                               \
    "circuit:\n"                                                                                   \
    "  failures: 10\n"                                                                             \
    "  open_for: 2m\n"                                                                             \
    "registries:\n"                                                                                \
    "  us-east: { url: \"http://127.0.0.1:5000\" }\n"                                              \
    "  eu-west: { url: \"https://eu.example.com/\", username: bot, password_env: "                 \
    "FERRY_TEST_PASS }\n"                                                                          \
    "  quay:\n"                                                                                    \
    "    url: https://quay.example:8443\n"                                                         \
    "    username: robot\n"                                                                        \
    "    password_file: secrets/quay\n"                                                            \
    "    repositories: [a/b, c/d]\n"                                                               \
    "    insecure: true\n"                                                                         \
    "    ca_file: ca.pem\n"                                                                        \
    "    cert_file: certs/client.pem\n"                                                            \
    "    key_file: ./certs/client.key\n"                                                           \
    "    max_concurrency: 8\n"                                                                     \
    "    poll: false\n"                                                                            \
    "    upload: { mode: chunked, chunk_min: 5MiB, chunk_max: 64MiB }\n"                           \
    "    rate_limit: 50MiB\n"                                                                      \
    "    stall_timeout: 90s\n"                                                                     \
    "  v6: { url: \"http://[::1]:5001\", username: admin, password: \"" SECRET "-inline\" }\n"     \
    "rules:\n"                                                                                     \
    "  - name: dr\n"                                                                               \
    "    source: us-east\n"                                                                        \
    "    repositories: [\"app/**\", \"!app/scratch/**\"]\n"                                        \
    "    tags: [\"*\", \"!*-rc*\"]\n"                                                              \
    "    deletes: true\n"                                                                          \
    "    referrers: false\n"                                                                       \
    "    overwrite: FALSE\n"                                                                       \
    "    platforms: [linux/amd64, linux/arm64/v8]\n"                                               \
    "    destinations:\n"                                                                          \
    "      - { registry: eu-west, repository: \"mirror/{repo}\" }\n"                               \
    "      - registry: quay\n"                                                                     \
    "        repository: \"flat/{name}\"\n"                                                        \
    "  - name: share.team-a_2\n"                                                                   \
    "    source: quay\n"                                                                           \
    "    destinations: [ { registry: us-east } ]\n"

static void write_full_files(const struct fixture *f)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/secrets", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/certs", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    write_file(f, "token.txt", "  token-" SECRET "  \nsecond line\n", 0600);
    write_file(f, "secrets/quay", SECRET "-file\r\nignored\n", 0600);
    write_file(f, "ca.pem", "ca\n", 0644);
    write_file(f, "certs/client.pem", "cert\n", 0644);
    write_file(f, "certs/client.key", "key\n", 0600);
}

static void assert_in_dir(const struct fixture *f, const char *path, const char *name)
{
    char want[256];
    snprintf(want, sizeof(want), "%s/%s", f->dir, name);
    assert_string_equal(path, want);
}

static void test_full(void **state)
{
    struct fixture *f = *state;
    struct config *c = NULL;
    char *err = NULL;
    write_full_files(f);
    write_file(f, "ferry.yaml", FULL_CONFIG, 0600);

    /* From elsewhere, by absolute path: relative paths follow the file. */
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(config_load(f->path, &c, &err), 0);
    assert_null(err);
    assert_string_equal(c->path, f->path);
    assert_string_equal(c->dir, f->dir);
    assert_in_dir(f, c->data_dir, "data");
    assert_string_equal(c->listen, "[::1]:8781");
    assert_string_equal(c->webhook_token, "token-" SECRET);
    assert_int_equal(c->webhook_max_body, 2 * 1024 * 1024);
    assert_int_equal(c->poll_interval_ms, 500);
    assert_int_equal(c->poll_concurrency, 8);
    assert_int_equal(c->retention_ms, 2 * 86400 * 1000);
    assert_int_equal(c->spool_max_bytes, (uint64_t)200 * 1024 * 1024 * 1024);
    assert_int_equal(c->retry_attempts, 3);
    assert_int_equal(c->retry_base_ms, 250);
    assert_int_equal(c->retry_max_ms, 60000);
    assert_int_equal(c->circuit_failures, 10);
    assert_int_equal(c->circuit_open_ms, 120000);

    assert_int_equal(c->n_registries, 4);
    const struct config_registry *r = config_registry_find(c, "us-east");
    assert_ptr_equal(r, &c->registries[0]);
    assert_string_equal(r->name, "us-east");
    assert_string_equal(r->url, "http://127.0.0.1:5000");
    assert_string_equal(r->host, "127.0.0.1:5000");
    assert_true(r->plain_http);
    assert_null(r->username);
    assert_null(r->password);
    assert_false(r->insecure);
    assert_null(r->ca_file);
    assert_null(r->cert_file);
    assert_null(r->key_file);
    assert_int_equal(r->max_concurrency, 0);
    assert_true(r->poll);
    assert_int_equal(r->n_repositories, 0);
    assert_null(r->repositories);
    assert_int_equal(r->upload_mode, CONFIG_UPLOAD_AUTO);
    assert_int_equal(r->upload_chunk_min, 0);
    assert_int_equal(r->upload_chunk_max, 0);
    assert_int_equal(r->rate_limit, 0);
    assert_int_equal(r->stall_timeout_ms, CONFIG_DEFAULT_STALL_TIMEOUT_MS);

    r = config_registry_find(c, "eu-west");
    assert_string_equal(r->url, "https://eu.example.com");
    assert_string_equal(r->host, "eu.example.com");
    assert_false(r->plain_http);
    assert_string_equal(r->username, "bot");
    assert_string_equal(r->password, SECRET "-env");

    r = config_registry_find(c, "quay");
    assert_string_equal(r->host, "quay.example:8443");
    assert_string_equal(r->username, "robot");
    assert_string_equal(r->password, SECRET "-file");
    assert_int_equal(r->n_repositories, 2);
    assert_string_equal(r->repositories[0], "a/b");
    assert_string_equal(r->repositories[1], "c/d");
    assert_true(r->insecure);
    assert_in_dir(f, r->ca_file, "ca.pem");
    assert_in_dir(f, r->cert_file, "certs/client.pem");
    assert_in_dir(f, r->key_file, "certs/client.key");
    assert_int_equal(r->max_concurrency, 8);
    assert_false(r->poll);
    assert_int_equal(r->upload_mode, CONFIG_UPLOAD_CHUNKED);
    assert_int_equal(r->upload_chunk_min, 5 * 1024 * 1024);
    assert_int_equal(r->upload_chunk_max, 64 * 1024 * 1024);
    assert_int_equal(r->rate_limit, 50 * 1024 * 1024);
    assert_int_equal(r->stall_timeout_ms, 90000);

    r = config_registry_find(c, "v6");
    assert_string_equal(r->host, "[::1]:5001");
    assert_true(r->plain_http);
    assert_string_equal(r->password, SECRET "-inline");
    assert_null(config_registry_find(c, "nowhere"));
    assert_null(config_registry_find(c, NULL));
    assert_null(config_registry_find(NULL, "quay"));

    assert_int_equal(c->n_rules, 2);
    const struct config_rule *rule = &c->rules[0];
    assert_string_equal(rule->name, "dr");
    assert_string_equal(rule->source, "us-east");
    assert_int_equal(rule->n_repositories, 2);
    assert_string_equal(rule->repositories[0], "app/**");
    assert_string_equal(rule->repositories[1], "!app/scratch/**");
    assert_int_equal(rule->n_tags, 2);
    assert_string_equal(rule->tags[1], "!*-rc*");
    assert_true(rule->deletes);
    assert_false(rule->referrers);
    assert_false(rule->overwrite);
    assert_int_equal(rule->n_platforms, 2);
    assert_string_equal(rule->platforms[0], "linux/amd64");
    assert_string_equal(rule->platforms[1], "linux/arm64/v8");
    assert_int_equal(rule->n_destinations, 2);
    assert_string_equal(rule->destinations[0].registry, "eu-west");
    assert_string_equal(rule->destinations[0].repository, "mirror/{repo}");
    assert_string_equal(rule->destinations[1].registry, "quay");
    assert_string_equal(rule->destinations[1].repository, "flat/{name}");

    rule = &c->rules[1];
    assert_string_equal(rule->name, "share.team-a_2");
    assert_int_equal(rule->n_repositories, 1);
    assert_string_equal(rule->repositories[0], "**");
    assert_int_equal(rule->n_tags, 1);
    assert_string_equal(rule->tags[0], "*");
    assert_false(rule->deletes);
    assert_true(rule->referrers);
    assert_true(rule->overwrite);
    assert_int_equal(rule->n_platforms, 0);
    assert_null(rule->platforms);
    assert_int_equal(rule->n_destinations, 1);
    assert_string_equal(rule->destinations[0].repository, "{repo}");
    config_free(c);
    config_free(NULL);
}

static void test_defaults(void **state)
{
    struct fixture *f = *state;

    /* An empty file, and one with only a comment, is every default. */
    const char *empties[] = {"", "# nothing here\n", "---\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        struct config *c = load_ok(f, empties[i]);
        assert_string_equal(c->path, "ferry.yaml");
        assert_string_equal(c->dir, ".");
        assert_string_equal(c->data_dir, "./ferry-data");
        assert_string_equal(c->listen, "127.0.0.1:8780");
        assert_null(c->webhook_token);
        assert_int_equal(c->webhook_max_body, 1024 * 1024);
        assert_int_equal(c->poll_interval_ms, 30000);
        assert_int_equal(c->poll_concurrency, 16);
        assert_int_equal(c->retention_ms, (uint64_t)7 * 24 * 3600 * 1000);
        assert_int_equal(c->spool_max_bytes, CONFIG_DEFAULT_SPOOL_MAX);
        assert_int_equal(c->retry_attempts, 5);
        assert_int_equal(c->retry_base_ms, 1000);
        assert_int_equal(c->retry_max_ms, 30000);
        assert_int_equal(c->circuit_failures, 5);
        assert_int_equal(c->circuit_open_ms, 30000);
        assert_int_equal(c->n_registries, 0);
        assert_int_equal(c->n_rules, 0);
        config_free(c);
    }

    /* The default data_dir follows the config file. */
    struct config *c = NULL;
    char *err = NULL;
    write_file(f, "ferry.yaml", "poll_interval: 0\nregistries: {}\nrules: []\n", 0600);
    assert_int_equal(config_load(f->path, &c, &err), 0);
    assert_in_dir(f, c->data_dir, "ferry-data");
    assert_int_equal(c->poll_interval_ms, 0);
    config_free(c);

    /* An absolute data_dir stays as written. */
    c = load_ok(f, "data_dir: /var/lib/ferry\n");
    assert_string_equal(c->data_dir, "/var/lib/ferry");
    config_free(c);

    /* Sizes and durations at their limits. */
    c = load_ok(f, "webhook_max_body: 64MiB\npoll_concurrency: 64\nretention: 1ms\n");
    assert_int_equal(c->webhook_max_body, 64 * 1024 * 1024);
    assert_int_equal(c->poll_concurrency, 64);
    assert_int_equal(c->retention_ms, 1);
    config_free(c);
    c = load_ok(f, "webhook_max_body: 1\npoll_concurrency: 1\n");
    assert_int_equal(c->webhook_max_body, 1);
    assert_int_equal(c->poll_concurrency, 1);
    config_free(c);
}

struct error_case {
    const char *yaml;
    int rc;
    const char *want;
};

#define REGISTRIES                                                                                 \
    "registries:\n"                                      /* 1 */                                   \
    "  us-east: { url: \"http://127.0.0.1:5000\" }\n"    /* 2 */                                   \
    "  eu-west: { url: \"https://eu.example.com\" }\n"   /* 3 */                                   \
    "  eu-alias: { url: \"https://eu.example.com/\" }\n" /* 4 */

/* A rule from line 5 on, with `extra` (lines 9 on) in its mapping. */
#define RULE(extra)                                                                                \
    REGISTRIES "rules:\n"              /* 5 */                                                     \
               "  - name: dr\n"        /* 6 */                                                     \
               "    source: us-east\n" /* 7 */                                                     \
               "    destinations: [{registry: eu-west}]\n" /* 8 */ extra

#define E FERRY_EINVAL

static const struct error_case error_cases[] = {
    /* Unknown and duplicate keys, at any depth. */
    {"polling_interval: 30s\n", E, "ferry.yaml:1: polling_interval: unknown key"},
    {"data_dir: x\nlisten: \"127.0.0.1:1\"\npolling_interval: 5m\n", E,
     "ferry.yaml:3: polling_interval: unknown key"},
    {"listen: a:1\nlisten: b:2\n", E, "ferry.yaml:2: listen: duplicate key"},
    {REGISTRIES "  quay: { url: \"https://q\", usr: x }\n", E,
     "ferry.yaml:5: registries.quay.usr: unknown key"},
    {RULE("    tag: [x]\n"), E, "ferry.yaml:9: rules[0].tag: unknown key"},
    {RULE("    destinations: []\n"), E, "ferry.yaml:9: rules[0].destinations: duplicate key"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - registry: eu-west\n        repo: x\n",
     E, "ferry.yaml:10: rules[0].destinations[0].repo: unknown key"},
    {"? [a]\n: b\n", E, "ferry.yaml:1: keys must be strings"},
    /* Keys in messages are one printable line, and cut when long. */
    {"\"a\\tb\\nc\": 1\n", E, "ferry.yaml:1: a?b?c: unknown key"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaa: 1\n",
     E,
     "ferry.yaml:1: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: unknown "
     "key"},

    /* Wrong types. */
    {"- a\n", E, "ferry.yaml:1: the configuration must be a mapping"},
    {"just text\n", E, "ferry.yaml:1: the configuration must be a mapping"},
    {"listen: [a]\n", E, "ferry.yaml:1: listen: must be a string"},
    {"listen:\n", E, "ferry.yaml:1: listen: has no value"},
    {"listen: ~\n", E, "ferry.yaml:1: listen: has no value"},
    {"data_dir: \"\"\n", E, "ferry.yaml:1: data_dir: must not be empty"},
    {"poll_concurrency: four\n", E, "ferry.yaml:1: poll_concurrency: must be a whole number"},
    {"poll_concurrency: \"4\"\n", E, "ferry.yaml:1: poll_concurrency: must be a whole number"},
    {"poll_concurrency: 4.5\n", E, "ferry.yaml:1: poll_concurrency: must be a whole number"},
    {"poll_concurrency: 0\n", E, "ferry.yaml:1: poll_concurrency: must be between 1 and 64"},
    {"poll_concurrency: 65\n", E, "ferry.yaml:1: poll_concurrency: must be between 1 and 64"},
    {"poll_concurrency: -1\n", E, "ferry.yaml:1: poll_concurrency: must be between 1 and 64"},
    {"poll_concurrency: 99999999999999999999999\n", E,
     "ferry.yaml:1: poll_concurrency: must be between 1 and 64"},
    {"registries: []\n", E, "ferry.yaml:1: registries: must be a mapping of names to registries"},
    {"registries:\n  a: http://a\n", E, "ferry.yaml:2: registries.a: must be a mapping"},
    {"rules: {}\n", E, "ferry.yaml:1: rules: must be a list"},
    {"rules:\n  - dr\n", E, "ferry.yaml:2: rules[0]: must be a mapping"},
    {RULE("    deletes: yes\n"), E, "ferry.yaml:9: rules[0].deletes: must be true or false"},
    {RULE("    overwrite: \"true\"\n"), E,
     "ferry.yaml:9: rules[0].overwrite: must be true or false"},
    {RULE("    tags: \"*\"\n"), E, "ferry.yaml:9: rules[0].tags: must be a list"},
    {RULE("    tags: [[a]]\n"), E, "ferry.yaml:9: rules[0].tags[0]: must be a string"},
    {"listen: \"a\\0b:1\"\n", E, "ferry.yaml:1: listen: must not contain a NUL byte"},

    /* Durations and sizes. */
    {"poll_interval: 30\n", E, "ferry.yaml:1: poll_interval: '30' is not a duration"},
    {"poll_interval: 1.5s\n", E, "ferry.yaml:1: poll_interval: '1.5s' is not a duration"},
    {"poll_interval: -1s\n", E, "ferry.yaml:1: poll_interval: '-1s' is not a duration"},
    {"poll_interval: 99999999999999999999d\n", E,
     "ferry.yaml:1: poll_interval: '99999999999999999999d' is not a duration"},
    {"retention: 0\n", E, "ferry.yaml:1: retention: must be at least 1ms"},
    {"spool_max: 1MiB\n", E,
     "ferry.yaml:1: spool_max: must be between 67108864 and 17592186044416 bytes"},
    {"retention: 0h\n", E, "ferry.yaml:1: retention: must be at least 1ms"},
    {"webhook_max_body: 1MB\n", E, "ferry.yaml:1: webhook_max_body: '1MB' is not a size"},
    {"webhook_max_body: 65MiB\n", E,
     "ferry.yaml:1: webhook_max_body: must be between 1 and 67108864 bytes"},
    {"webhook_max_body: 67108865\n", E,
     "ferry.yaml:1: webhook_max_body: must be between 1 and 67108864 bytes"},
    {"webhook_max_body: 0\n", E,
     "ferry.yaml:1: webhook_max_body: must be between 1 and 67108864 bytes"},

    /* listen. */
    {"listen: 127.0.0.1\n", E,
     "ferry.yaml:1: listen: '127.0.0.1' is not host:port or [v6]:port with a port from 1 to "
     "65535"},
    {"listen: 127.0.0.1:0\n", E, "ferry.yaml:1: listen: '127.0.0.1:0' is not host:port"},
    {"listen: \"[::1]:65536\"\n", E, "ferry.yaml:1: listen: '[::1]:65536' is not host:port"},
    {"listen: :8780\n", E, "ferry.yaml:1: listen: ':8780' is not host:port"},
    {"listen: \"::1:8780\"\n", E, "ferry.yaml:1: listen: '::1:8780' is not host:port"},

    /* Registries. */
    {"\n\nregistries:\n  a: { url: \"http://a\" }\n  a: { url: \"http://b\" }\n", E,
     "ferry.yaml:5: registries.a: duplicate registry name"},
    {"registries:\n  \"bad name\": { url: \"http://a\" }\n", E,
     "ferry.yaml:2: registries.bad name: not a name"},
    {"registries:\n  -a: { url: \"http://a\" }\n", E, "ferry.yaml:2: registries.-a: not a name"},
    {"registries:\n  a: { username: x }\n", E, "ferry.yaml:2: registries.a: missing 'url'"},
    {"registries:\n  a:\n    poll: true\n", E, "ferry.yaml:3: registries.a: missing 'url'"},
    {REGISTRIES "\n\n  eu-west2: { url: \"ftp://eu.example.com\" }\n", E,
     "ferry.yaml:7: registries.eu-west2.url: must start with http:// or https://"},
    {"registries:\n  a: { url: \"https://bot:" SECRET "@a.example\" }\n", E,
     "ferry.yaml:2: registries.a.url: must not hold credentials"},
    {"registries:\n  a: { url: \"https://a.example/v2/\" }\n", E,
     "ferry.yaml:2: registries.a.url: must not have a path"},
    {"registries:\n  a: { url: \"https://a.example?x\" }\n", E,
     "ferry.yaml:2: registries.a.url: must not have a path"},
    {"registries:\n  a: { url: \"https://\" }\n", E,
     "ferry.yaml:2: registries.a.url: has no valid host[:port]"},
    {"registries:\n  a: { url: \"https://a:99999\" }\n", E,
     "ferry.yaml:2: registries.a.url: has no valid host[:port]"},
    {"registries:\n  a: { url: \"https://a_b\" }\n", E,
     "ferry.yaml:2: registries.a.url: has no valid host[:port]"},
    {"registries:\n  a: { url: \"http://[::1\" }\n", E,
     "ferry.yaml:2: registries.a.url: has no valid host[:port]"},
    {"registries:\n  a:\n    url: http://a\n    max_concurrency: 2000\n", E,
     "ferry.yaml:4: registries.a.max_concurrency: must be between 0 and 1024"},
    {"registries:\n  a:\n    url: http://a\n    repositories: [ok, Bad]\n", E,
     "ferry.yaml:4: registries.a.repositories[1]: 'Bad' is not a valid repository name"},
    {"registries:\n  a:\n    url: http://a\n    repositories: []\n", E,
     "ferry.yaml:4: registries.a.repositories: must not be empty"},
    {"registries:\n  a:\n    url: http://a\n    cert_file: /etc/hostname\n", E,
     "ferry.yaml:4: registries.a: cert_file and key_file go together"},
    {"registries:\n  a:\n    url: http://a\n    ca_file: /nonexistent/ca.pem\n", E,
     "ferry.yaml:4: registries.a.ca_file: cannot read /nonexistent/ca.pem: No such file"},

    /* Credentials; none of these messages may hold the secret. */
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password_env: "
     "FERRY_TEST_UNSET\n",
     E, "ferry.yaml:5: registries.a.password_env: FERRY_TEST_UNSET is not set"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password_env: "
     "FERRY_TEST_EMPTY\n",
     E, "ferry.yaml:5: registries.a.password_env: FERRY_TEST_EMPTY is empty"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password_env: 1X\n", E,
     "ferry.yaml:5: registries.a.password_env: must be the name of an environment variable"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n"
     "    password_file: /nonexistent/pass\n",
     E,
     "ferry.yaml:5: registries.a.password_file: cannot read /nonexistent/pass: No such file or "
     "directory"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password_file: /\n", E,
     "ferry.yaml:5: registries.a.password_file: cannot read /: Is a directory"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password_file: empty-secret\n",
     E, "ferry.yaml:5: registries.a.password_file: the first line of empty-secret is empty"},
    {"registries:\n  a:\n    url: http://a\n    password_env: FERRY_TEST_PASS\n", E,
     "ferry.yaml:4: registries.a.password_env: needs a username"},
    {"registries:\n  a:\n    url: http://a\n    password: " SECRET "\n", E,
     "ferry.yaml:4: registries.a.password: needs a username"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n", E,
     "ferry.yaml:4: registries.a: username needs password_env, password_file or password"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password: " SECRET "\n"
     "    password_env: FERRY_TEST_PASS\n",
     E, "ferry.yaml:6: registries.a: password, password_env and password_file are exclusive"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password: [" SECRET "]\n", E,
     "ferry.yaml:5: registries.a.password: must be a string"},
    {"registries:\n  a:\n    url: http://a\n    username: bot\n    password: " SECRET "\n"
     "    poll: maybe\n",
     E, "ferry.yaml:6: registries.a.poll: must be true or false"},
    {"webhook_token_env: FERRY_TEST_UNSET\n", E,
     "ferry.yaml:1: webhook_token_env: FERRY_TEST_UNSET is not set"},
    {"webhook_token_file: /nonexistent/token\n", E,
     "ferry.yaml:1: webhook_token_file: cannot read /nonexistent/token: No such file"},
    {"webhook_token_env: FERRY_TEST_PASS\nwebhook_token_file: token\n", E,
     "ferry.yaml:2: webhook_token_file: webhook_token_env and webhook_token_file are exclusive"},

    /* Rules. */
    {RULE(""
          "  - name: dr\n"
          "    source: eu-west\n"
          "    destinations: [{registry: us-east}]\n"),
     E, "ferry.yaml:9: rules[1].name: duplicate rule name 'dr'"},
    {REGISTRIES "rules:\n  - source: us-east\n    destinations: [{registry: eu-west}]\n", E,
     "ferry.yaml:6: rules[0]: missing 'name'"},
    {REGISTRIES "rules:\n  - name: dr\n    destinations: [{registry: eu-west}]\n", E,
     "ferry.yaml:6: rules[0]: missing 'source'"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n", E,
     "ferry.yaml:6: rules[0]: missing 'destinations'"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations: []\n", E,
     "ferry.yaml:8: rules[0].destinations: must not be empty"},
    {REGISTRIES "rules:\n  - name: \"d r\"\n    source: us-east\n"
                "    destinations: [{registry: eu-west}]\n",
     E, "ferry.yaml:6: rules[0].name: 'd r' is not a name"},
    {REGISTRIES "rules:\n"
                "  - name: dr\n"
                "    source: us-wst\n"
                "    destinations: [{registry: eu-west}]\n",
     E, "ferry.yaml:7: rules[0].source: unknown registry 'us-wst'"},
    {"rules:\n  - name: dr\n    source: us-east\n    destinations: [{registry: eu-west}]\n"
     "registries:\n  us-east: { url: \"http://127.0.0.1:5000\" }\n",
     E, "ferry.yaml:4: rules[0].destinations[0].registry: unknown registry 'eu-west'"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - registry: eu-west\n      - registry: nowhere\n",
     E, "ferry.yaml:10: rules[0].destinations[1].registry: unknown registry 'nowhere'"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - { repository: x }\n",
     E, "ferry.yaml:9: rules[0].destinations[0]: missing 'registry'"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - registry: eu-west\n"
                "        repository: \"Mirror/{repo}\"\n",
     E, "ferry.yaml:10: rules[0].destinations[0].repository: 'Mirror/{repo}' does not make valid"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - { registry: eu-west, repository: \"mirror/{tag}\" }\n",
     E, "ferry.yaml:9: rules[0].destinations[0].repository: unknown placeholder"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - { registry: eu-west, repository: \"mirror/{repo\" }\n",
     E, "ferry.yaml:9: rules[0].destinations[0].repository: unknown placeholder"},
    {REGISTRIES "rules:\n  - name: dr\n    source: us-east\n    destinations:\n"
                "      - { registry: eu-west, repository: \"mirror//{repo}\" }\n",
     E, "ferry.yaml:9: rules[0].destinations[0].repository: 'mirror//{repo}' does not make valid"},
    {REGISTRIES "rules:\n  - name: dr\n    source: eu-west\n    destinations:\n"
                "      - { registry: us-east }\n"
                "      - { registry: eu-alias }\n",
     E, "ferry.yaml:10: rules[0].destinations[1]: replicates every repository onto itself"},
    {REGISTRIES "rules:\n  - name: dr\n    source: eu-west\n    destinations:\n"
                "      - { registry: us-east }\n"
                "      - { registry: us-east, repository: \"{repo}\" }\n",
     E, "ferry.yaml:10: rules[0].destinations[1]: duplicate of destinations[0]"},
    {RULE("    repositories: [\"app/**\", \"\"]\n"), E,
     "ferry.yaml:9: rules[0].repositories[1]: must not be empty"},
    {RULE("    repositories: [\"!\"]\n"), E,
     "ferry.yaml:9: rules[0].repositories[0]: '!' needs a pattern after it"},
    {RULE("    repositories: []\n"), E, "ferry.yaml:9: rules[0].repositories: must not be empty"},
    {RULE("    repositories: [\"!app/scratch/**\"]\n"), E,
     "ferry.yaml:9: rules[0].repositories: selects nothing"},
    {RULE("    tags:\n      - \"!latest\"\n"), E, "ferry.yaml:10: rules[0].tags: selects nothing"},

    /* retry and circuit. */
    {"retry: 5\n", E, "ferry.yaml:1: retry: must be a mapping"},
    {"retry:\n", E, "ferry.yaml:1: retry: must be a mapping"},
    {"retry: [attempts]\n", E, "ferry.yaml:1: retry: must be a mapping"},
    {"retry:\n  attempts: 3\n  tries: 3\n", E, "ferry.yaml:3: retry.tries: unknown key"},
    {"retry:\n  base: 1s\n  base: 2s\n", E, "ferry.yaml:3: retry.base: duplicate key"},
    {"retry:\n  attempts: 0\n", E, "ferry.yaml:2: retry.attempts: must be between 1 and 100"},
    {"retry:\n  attempts: 101\n", E, "ferry.yaml:2: retry.attempts: must be between 1 and 100"},
    {"retry:\n  attempts: -1\n", E, "ferry.yaml:2: retry.attempts: must be between 1 and 100"},
    {"retry:\n  attempts: five\n", E, "ferry.yaml:2: retry.attempts: must be a whole number"},
    {"retry:\n  attempts: \"5\"\n", E, "ferry.yaml:2: retry.attempts: must be a whole number"},
    {"retry:\n  base: 0\n", E, "ferry.yaml:2: retry.base: must be at least 1ms"},
    {"retry:\n  base: 1\n", E, "ferry.yaml:2: retry.base: '1' is not a duration"},
    {"retry:\n  base:\n", E, "ferry.yaml:2: retry.base: has no value"},
    {"retry:\n  max: 0s\n", E, "ferry.yaml:2: retry.max: must be at least 1ms"},
    {"retry:\n  max: 1.5s\n", E, "ferry.yaml:2: retry.max: '1.5s' is not a duration"},
    {"retry:\n  base: 2s\n  max: 1s\n", E,
     "ferry.yaml:3: retry.max: must be at least base (2000ms)"},
    {"retry:\n  max: 999ms\n  base: 1s\n", E,
     "ferry.yaml:2: retry.max: must be at least base (1000ms)"},
    {"retry:\n  attempts: 3\n  max: 999ms\n", E,
     "ferry.yaml:3: retry.max: must be at least base (1000ms)"},
    {"retry:\n  attempts: 3\n  base: 31s\n", E,
     "ferry.yaml:3: retry.base: must be at most max (30000ms, the default)"},
    {"circuit: 5\n", E, "ferry.yaml:1: circuit: must be a mapping"},
    {"circuit:\n  failures: 5\n  open: 30s\n", E, "ferry.yaml:3: circuit.open: unknown key"},
    {"circuit:\n  failures: 5\n  failures: 6\n", E,
     "ferry.yaml:3: circuit.failures: duplicate key"},
    {"circuit:\n  failures: 0\n", E, "ferry.yaml:2: circuit.failures: must be between 1 and 1000"},
    {"circuit:\n  failures: 1001\n", E,
     "ferry.yaml:2: circuit.failures: must be between 1 and 1000"},
    {"circuit:\n  failures: 2.5\n", E, "ferry.yaml:2: circuit.failures: must be a whole number"},
    {"circuit:\n  open_for: 0\n", E, "ferry.yaml:2: circuit.open_for: must be at least 1ms"},
    {"circuit:\n  open_for: 30\n", E, "ferry.yaml:2: circuit.open_for: '30' is not a duration"},
    {"circuit:\n  open_for: [30s]\n", E, "ferry.yaml:2: circuit.open_for: must be a string"},

    /* A registry's upload and rate_limit. */
    {"registries:\n  a:\n    url: http://a\n    upload: chunked\n", E,
     "ferry.yaml:4: registries.a.upload: must be a mapping"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: fast\n", E,
     "ferry.yaml:5: registries.a.upload.mode: 'fast' is not auto, monolithic or chunked"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: Chunked\n", E,
     "ferry.yaml:5: registries.a.upload.mode: 'Chunked' is not auto, monolithic or chunked"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: \"\"\n", E,
     "ferry.yaml:5: registries.a.upload.mode: must not be empty"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: [auto]\n", E,
     "ferry.yaml:5: registries.a.upload.mode: must be a string"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: auto\n      chunk: 5MiB\n", E,
     "ferry.yaml:6: registries.a.upload.chunk: unknown key"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      mode: auto\n      mode: chunked\n",
     E, "ferry.yaml:6: registries.a.upload.mode: duplicate key"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_min: 5MB\n", E,
     "ferry.yaml:5: registries.a.upload.chunk_min: '5MB' is not a size"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_min: 1025MiB\n", E,
     "ferry.yaml:5: registries.a.upload.chunk_min: must be between 0 and 1073741824 bytes"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_max: 1073741825\n", E,
     "ferry.yaml:5: registries.a.upload.chunk_max: must be between 0 and 1073741824 bytes"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_max: -1\n", E,
     "ferry.yaml:5: registries.a.upload.chunk_max: '-1' is not a size"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_min: 64MiB\n"
     "      chunk_max: 5MiB\n",
     E, "ferry.yaml:6: registries.a.upload.chunk_max: must be at least chunk_min (67108864 bytes)"},
    {"registries:\n  a:\n    url: http://a\n    upload:\n      chunk_max: 1023\n"
     "      mode: chunked\n      chunk_min: 1K\n",
     E, "ferry.yaml:5: registries.a.upload.chunk_max: must be at least chunk_min (1024 bytes)"},
    {"registries:\n  a:\n    url: http://a\n    stall_timeout: 500ms\n", E,
     "ferry.yaml:4: registries.a.stall_timeout: must be at least 1000ms"},
    {"registries:\n  a:\n    url: http://a\n    stall_timeout: 2h\n", E,
     "ferry.yaml:4: registries.a.stall_timeout: must be at most 3600000ms"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: 50MiB/s\n", E,
     "ferry.yaml:4: registries.a.rate_limit: '50MiB/s' is not a size"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: -1\n", E,
     "ferry.yaml:4: registries.a.rate_limit: '-1' is not a size"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: 99999999999999999999\n", E,
     "ferry.yaml:4: registries.a.rate_limit: '99999999999999999999' is not a size"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: [1]\n", E,
     "ferry.yaml:4: registries.a.rate_limit: must be a string"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: ~\n", E,
     "ferry.yaml:4: registries.a.rate_limit: has no value"},
    {"registries:\n  a:\n    url: http://a\n    rate_limit: 1M\n    rate_limit: 2M\n", E,
     "ferry.yaml:5: registries.a.rate_limit: duplicate key"},

    /* A rule's platforms. */
    {RULE("    platforms: linux/amd64\n"), E, "ferry.yaml:9: rules[0].platforms: must be a list"},
    {RULE("    platforms: [linux]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux' is not a platform (os/arch or "
     "os/arch/variant, each of a-z 0-9 . _ -)"},
    {RULE("    platforms:\n      - linux/amd64\n      - linux/arm64/v8/x\n"), E,
     "ferry.yaml:11: rules[0].platforms[1]: 'linux/arm64/v8/x' is not a platform"},
    {RULE("    platforms:\n      - Linux/amd64\n"), E,
     "ferry.yaml:10: rules[0].platforms[0]: 'Linux/amd64' is not a platform"},
    {RULE("    platforms: [linux/AMD64]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux/AMD64' is not a platform"},
    {RULE("    platforms: [\"linux//amd64\"]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux//amd64' is not a platform"},
    {RULE("    platforms: [/amd64]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: '/amd64' is not a platform"},
    {RULE("    platforms: [linux/]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux/' is not a platform"},
    {RULE("    platforms: [linux/amd64/]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux/amd64/' is not a platform"},
    {RULE("    platforms: [\"linux/amd 64\"]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux/amd 64' is not a platform"},
    {RULE("    platforms: [\"linux/amd64*\"]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: 'linux/amd64*' is not a platform"},
    {RULE("    platforms: [\"/\"]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: '/' is not a platform"},
    {RULE("    platforms: [\"\"]\n"), E, "ferry.yaml:9: rules[0].platforms[0]: must not be empty"},
    {RULE("    platforms: [[linux/amd64]]\n"), E,
     "ferry.yaml:9: rules[0].platforms[0]: must be a string"},
    {RULE("    platforms: []\n    platforms: [linux/amd64]\n"), E,
     "ferry.yaml:10: rules[0].platforms: duplicate key"},

    /* YAML itself. */
    {"listen: [a\n", FERRY_EPARSE, "ferry.yaml:2: did not find expected ',' or ']'"},
    {"a: b\n c: d\n", FERRY_EPARSE, "ferry.yaml:2: mapping values are not allowed"},
    {"listen: 'a:1\n", FERRY_EPARSE, "ferry.yaml:2: found unexpected end of stream"},
    {"listen: \"\xff\"\n", FERRY_EPARSE, "ferry.yaml:1: invalid leading UTF-8 octet"},
    {"listen: \"a:1\"\n---\nlisten: \"b:2\"\n", E,
     "ferry.yaml:3: only one YAML document is allowed"},
    {"registries:\n  a: &r { url: \"http://a\" }\n  b: *r\n", E,
     "ferry.yaml:2: registries.b: anchors and aliases are not supported"},
    {RULE("    tags: &t [\"*\"]\n"
          "  - name: dr2\n"
          "    source: us-east\n"
          "    tags: *t\n"
          "    destinations: [{registry: eu-west}]\n"),
     E, "ferry.yaml:9: rules[1].tags: anchors and aliases are not supported"},
    {"registries: !!map\n  a: { url: \"http://a\" }\nrules: !!seq\n  - <<: {name: dr}\n", E,
     "ferry.yaml:4: rules[0].<<: unknown key"},
};

static void test_errors(void **state)
{
    struct fixture *f = *state;
    write_file(f, "empty-secret", "  \t\r\nsecond " SECRET "\n", 0600);
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++)
        expect_error(f, error_cases[i].yaml, error_cases[i].rc, error_cases[i].want);
}

static void test_retry_and_circuit(void **state)
{
    struct fixture *f = *state;

    /* Empty mappings are every default. */
    struct config *c = load_ok(f, "retry: {}\ncircuit: {}\n");
    assert_int_equal(c->retry_attempts, 5);
    assert_int_equal(c->retry_base_ms, 1000);
    assert_int_equal(c->retry_max_ms, 30000);
    assert_int_equal(c->circuit_failures, 5);
    assert_int_equal(c->circuit_open_ms, 30000);
    config_free(c);

    /* The limits; max may equal base. */
    c = load_ok(f, "retry:\n  attempts: 1\n  base: 1ms\n  max: 1ms\n"
                   "circuit:\n  failures: 1\n  open_for: 1ms\n");
    assert_int_equal(c->retry_attempts, 1);
    assert_int_equal(c->retry_base_ms, 1);
    assert_int_equal(c->retry_max_ms, 1);
    assert_int_equal(c->circuit_failures, 1);
    assert_int_equal(c->circuit_open_ms, 1);
    config_free(c);
    c = load_ok(f, "retry: { attempts: 100, base: 1h, max: 1d }\n"
                   "circuit: { failures: 1000, open_for: 7d }\n");
    assert_int_equal(c->retry_attempts, 100);
    assert_int_equal(c->retry_base_ms, 3600000);
    assert_int_equal(c->retry_max_ms, 86400000);
    assert_int_equal(c->circuit_failures, 1000);
    assert_int_equal(c->circuit_open_ms, (uint64_t)7 * 86400000);
    config_free(c);

    /* One key alone keeps the other defaults, and is checked against them. */
    c = load_ok(f, "retry: { max: 1s }\ncircuit: { open_for: 500ms }\n");
    assert_int_equal(c->retry_attempts, 5);
    assert_int_equal(c->retry_base_ms, 1000);
    assert_int_equal(c->retry_max_ms, 1000);
    assert_int_equal(c->circuit_failures, 5);
    assert_int_equal(c->circuit_open_ms, 500);
    config_free(c);
    c = load_ok(f, "retry: { base: 30s }\ncircuit: { failures: 3 }\n");
    assert_int_equal(c->retry_base_ms, 30000);
    assert_int_equal(c->retry_max_ms, 30000);
    assert_int_equal(c->circuit_failures, 3);
    assert_int_equal(c->circuit_open_ms, 30000);
    config_free(c);
    c = load_ok(f, "retry: { attempts: 7 }\n");
    assert_int_equal(c->retry_attempts, 7);
    assert_int_equal(c->retry_base_ms, 1000);
    assert_int_equal(c->retry_max_ms, 30000);
    config_free(c);
}

static void test_upload_and_rate_limit(void **state)
{
    struct fixture *f = *state;
    struct config *c = load_ok(f, "registries:\n"
                                  "  a: { url: \"http://a\" }\n"
                                  "  b: { url: \"http://b\", upload: {} }\n"
                                  "  c: { url: \"http://c\", upload: { mode: auto } }\n"
                                  "  d: { url: \"http://d\", upload: { mode: monolithic } }\n"
                                  "  e:\n"
                                  "    url: http://e\n"
                                  "    upload:\n"
                                  "      mode: chunked\n"
                                  "      chunk_min: 1GiB\n"
                                  "      chunk_max: 1GiB\n"
                                  "    rate_limit: 1G\n"
                                  "  f: { url: \"http://f\", upload: { chunk_min: 128MiB } }\n"
                                  "  g: { url: \"http://g\", upload: { chunk_max: 1 } }\n"
                                  "  h: { url: \"http://h\", upload: { chunk_min: 0, chunk_max: "
                                  "1K }, rate_limit: 0 }\n"
                                  "  i: { url: \"http://i\", upload: { chunk_min: 2M, chunk_max: "
                                  "0 }, rate_limit: 1 }\n");
    static const struct {
        int mode;
        uint64_t chunk_min, chunk_max, rate_limit;
    } want[] = {
        {CONFIG_UPLOAD_AUTO, 0, 0, 0},
        {CONFIG_UPLOAD_AUTO, 0, 0, 0},
        {CONFIG_UPLOAD_AUTO, 0, 0, 0},
        {CONFIG_UPLOAD_MONOLITHIC, 0, 0, 0},
        {CONFIG_UPLOAD_CHUNKED, (uint64_t)1 << 30, (uint64_t)1 << 30, (uint64_t)1 << 30},
        {CONFIG_UPLOAD_AUTO, (uint64_t)128 << 20, 0, 0},
        {CONFIG_UPLOAD_AUTO, 0, 1, 0},
        {CONFIG_UPLOAD_AUTO, 0, 1024, 0},
        {CONFIG_UPLOAD_AUTO, (uint64_t)2 << 20, 0, 1},
    };
    assert_int_equal(c->n_registries, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < c->n_registries; i++) {
        const struct config_registry *r = &c->registries[i];
        if (r->upload_mode != want[i].mode || r->upload_chunk_min != want[i].chunk_min ||
            r->upload_chunk_max != want[i].chunk_max || r->rate_limit != want[i].rate_limit)
            fail_msg("registry %s: mode %d chunk_min %llu chunk_max %llu rate_limit %llu", r->name,
                     r->upload_mode, (unsigned long long)r->upload_chunk_min,
                     (unsigned long long)r->upload_chunk_max, (unsigned long long)r->rate_limit);
    }
    config_free(c);

    /* A rate limit has no cap of its own. */
    c = load_ok(f, "registries:\n  a: { url: \"http://a\", rate_limit: 1048576GiB }\n");
    assert_int_equal(c->registries[0].rate_limit, (uint64_t)1 << 50);
    config_free(c);
}

static void test_platforms(void **state)
{
    struct fixture *f = *state;
    struct config *c = load_ok(f, REGISTRIES "rules:\n"
                                             "  - name: all\n"
                                             "    source: us-east\n"
                                             "    destinations: [{registry: eu-west}]\n"
                                             "  - name: empty\n"
                                             "    source: us-east\n"
                                             "    platforms: []\n"
                                             "    destinations: [{registry: eu-west}]\n"
                                             "  - name: some\n"
                                             "    source: us-east\n"
                                             "    platforms:\n"
                                             "      - linux/amd64\n"
                                             "      - linux/arm64/v8\n"
                                             "      - windows/amd64/10.0.17763.1234\n"
                                             "      - linux/arm/v7\n"
                                             "      - freebsd/x86_64\n"
                                             "      - \"wasi/wasm-32_x\"\n"
                                             "    destinations: [{registry: eu-west}]\n");
    assert_int_equal(c->n_rules, 3);
    assert_null(c->rules[0].platforms);
    assert_int_equal(c->rules[0].n_platforms, 0);
    assert_null(c->rules[1].platforms);
    assert_int_equal(c->rules[1].n_platforms, 0);
    const char *want[] = {"linux/amd64",  "linux/arm64/v8", "windows/amd64/10.0.17763.1234",
                          "linux/arm/v7", "freebsd/x86_64", "wasi/wasm-32_x"};
    assert_int_equal(c->rules[2].n_platforms, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < c->rules[2].n_platforms; i++)
        assert_string_equal(c->rules[2].platforms[i], want[i]);
    config_free(c);
}

static void test_file_errors(void **state)
{
    struct fixture *f = *state;
    struct config *c = NULL;
    char *err = NULL;

    assert_int_equal(config_load("missing.yaml", &c, &err), -ENOENT);
    assert_null(c);
    assert_message(err);
    assert_string_equal(err, "missing.yaml: cannot open: No such file or directory");
    free(err);

    assert_int_equal(config_load(".", &c, &err), -EISDIR);
    assert_message(err);
    free(err);

    /* Exactly the cap loads; one byte more does not. */
    char *big = malloc(CONFIG_MAX_BYTES + 2);
    memset(big, '#', CONFIG_MAX_BYTES);
    big[CONFIG_MAX_BYTES - 1] = '\n';
    big[CONFIG_MAX_BYTES] = '\0';
    write_file(f, "ferry.yaml", big, 0600);
    assert_int_equal(config_load("ferry.yaml", &c, &err), 0);
    config_free(c);
    big[CONFIG_MAX_BYTES] = '\n';
    big[CONFIG_MAX_BYTES + 1] = '\0';
    write_file(f, "ferry.yaml", big, 0600);
    assert_int_equal(config_load("ferry.yaml", &c, &err), FERRY_ETOOBIG);
    assert_null(c);
    assert_message(err);
    assert_string_equal(err, "ferry.yaml: larger than 1048576 bytes");
    free(err);
    free(big);

    assert_int_equal(config_load(NULL, &c, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    assert_int_equal(config_load("ferry.yaml", NULL, NULL), FERRY_EINVAL);
    /* No message wanted: none given. */
    write_file(f, "ferry.yaml", "bad: key\n", 0600);
    assert_int_equal(config_load("ferry.yaml", &c, NULL), FERRY_EINVAL);
    assert_null(c);
}

/* A long, nested, aliased file must be refused quickly, not expanded. */
static void test_alias_bomb(void **state)
{
    struct fixture *f = *state;
    char yaml[4096];
    size_t len = (size_t)snprintf(yaml, sizeof(yaml),
                                  "registries:\n  a:\n    url: http://a\n"
                                  "    repositories: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++)
        len += (size_t)snprintf(yaml + len, sizeof(yaml) - len,
                                "  a%d: { url: http://a, repositories: &l%d [*l%d, *l%d] }\n", i, i,
                                i - 1, i - 1);
    expect_error(f, yaml, FERRY_EINVAL, "ferry.yaml:4: registries.a1.repositories[0]: anchors");
}

static void test_secrets(void **state)
{
    struct fixture *f = *state;

    write_file(f, "pass", SECRET "-file\n", 0600);
    write_file(f, "token", "\t token-" SECRET " \r\n", 0600);
    struct config *c = load_ok(f, "webhook_token_file: ./token\n"
                                  "registries:\n"
                                  "  a: { url: \"http://a\", username: u, password_file: pass }\n"
                                  "  b: { url: \"http://b\", username: u, password_env: "
                                  "FERRY_TEST_PASS }\n");
    assert_string_equal(c->webhook_token, "token-" SECRET);
    assert_string_equal(c->registries[0].password, SECRET "-file");
    assert_string_equal(c->registries[1].password, SECRET "-env");
    config_free(c);

    /* A file without a final newline, and a token from the environment. */
    write_file(f, "pass", SECRET, 0600);
    c = load_ok(f, "webhook_token_env: FERRY_TEST_PASS\n"
                   "registries:\n"
                   "  a: { url: \"http://a\", username: u, password_file: pass }\n");
    assert_string_equal(c->webhook_token, SECRET "-env");
    assert_string_equal(c->registries[0].password, SECRET);
    config_free(c);

    /* A first line over the cap. */
    char *long_line = malloc(CONFIG_MAX_SECRET_BYTES + 2);
    memset(long_line, 'x', CONFIG_MAX_SECRET_BYTES + 1);
    memcpy(long_line, SECRET, strlen(SECRET));
    long_line[CONFIG_MAX_SECRET_BYTES + 1] = '\0';
    write_file(f, "pass", long_line, 0600);
    free(long_line);
    expect_error(f, "registries:\n  a: { url: \"http://a\", username: u, password_file: pass }\n",
                 FERRY_EINVAL,
                 "ferry.yaml:2: registries.a.password_file: the first line of pass is longer than "
                 "65536 bytes");

    /* A later error in a file that already gave up its secrets says nothing of them. */
    write_file(f, "pass", SECRET "-file\n", 0600);
    expect_error(f,
                 "registries:\n"
                 "  a: { url: \"http://a\", username: u, password_file: pass }\n"
                 "  b: { url: \"http://b\", username: u, password_env: FERRY_TEST_PASS }\n"
                 "  c: { url: \"http://b\", username: u, password: " SECRET " }\n"
                 "rules: " SECRET "\n",
                 FERRY_EINVAL, "ferry.yaml:5: rules: must be a list");
}

/* Run config_load on ferry.yaml with stderr going to a file; return what was written there. */
static char *load_capturing_stderr(const struct fixture *f)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/stderr.txt", f->dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);

    struct config *c = NULL;
    char *err = NULL;
    int rc = config_load("ferry.yaml", &c, &err);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    assert_int_equal(rc, 0);
    config_free(c);

    static char text[4096];
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    size_t n = fread(text, 1, sizeof(text) - 1, file);
    text[n] = '\0';
    fclose(file);
    return text;
}

static void test_inline_password_warning(void **state)
{
    struct fixture *f = *state;
    const char *inline_yaml =
        "registries:\n  a: { url: \"http://a\", username: u, password: " SECRET " }\n";

    write_file(f, "ferry.yaml", inline_yaml, 0644);
    const char *logged = load_capturing_stderr(f);
    assert_non_null(strstr(logged, "warn"));
    assert_non_null(strstr(logged, "inline password"));
    assert_non_null(strstr(logged, "path=ferry.yaml"));
    assert_null(strstr(logged, SECRET));

    write_file(f, "ferry.yaml", inline_yaml, 0640);
    logged = load_capturing_stderr(f);
    assert_non_null(strstr(logged, "inline password"));

    /* Private file, or no inline password: nothing to say. */
    write_file(f, "ferry.yaml", inline_yaml, 0600);
    assert_string_equal(load_capturing_stderr(f), "");
    write_file(f, "ferry.yaml",
               "registries:\n  a: { url: \"http://a\", username: u, password_env: "
               "FERRY_TEST_PASS }\n",
               0644);
    assert_string_equal(load_capturing_stderr(f), "");
}

/* Write `len` bytes of `contents` (NULs allowed) to `name` in the fixture's directory. */
static void write_bytes(const struct fixture *f, const char *name, const char *contents, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(contents, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/* Read a secret file that must fail with `want_rc` and a message equal to `want`. */
static void expect_secret_error(const char *path, int want_rc, const char *want)
{
    char *secret = (char *)0x1;
    char *err = NULL;
    assert_int_equal(config_secret_read_file(path, &secret, &err), want_rc);
    assert_null(secret);
    assert_message(err);
    assert_string_equal(err, want);
    free(err);
}

/*
 * Only the first line of a secret file counts, however the reads fall: a
 * line longer than one read() is whole, and what follows a short line may
 * pass the cap. A directory, a missing file, an empty line and a NUL byte
 * are errors that name the file.
 */
static void test_secret_first_line(void **state)
{
    struct fixture *f = *state;
    char *secret = NULL;
    char *err = NULL;

    size_t n = CONFIG_MAX_SECRET_BYTES - 1;
    char *text = malloc(CONFIG_MAX_SECRET_BYTES * 2 + 64);
    memset(text, 'x', n);
    strcpy(text + n, "\nsecond line\n");
    write_file(f, "long", text, 0600);
    assert_int_equal(config_secret_read_file("long", &secret, &err), 0);
    assert_null(err);
    assert_int_equal(strlen(secret), n);
    assert_null(strchr(secret, '\n'));
    free(secret);

    size_t len = (size_t)sprintf(text, "  %s \r\n", SECRET);
    memset(text + len, 'y', CONFIG_MAX_SECRET_BYTES * 2);
    text[len + CONFIG_MAX_SECRET_BYTES * 2] = '\0';
    write_file(f, "short", text, 0600);
    assert_int_equal(config_secret_read_file("short", &secret, &err), 0);
    assert_string_equal(secret, SECRET);
    free(secret);
    free(text);

    expect_secret_error(".", -EISDIR, "cannot read .: Is a directory");
    expect_secret_error("missing", -ENOENT, "cannot read missing: No such file or directory");
    write_file(f, "empty", " \t\nsecond\n", 0600);
    expect_secret_error("empty", FERRY_EINVAL, "the first line of empty is empty");
    write_bytes(f, "nul", SECRET "\0x\n", sizeof(SECRET) + 2);
    expect_secret_error("nul", FERRY_EINVAL, "nul holds a NUL byte");
}

/* Write a self-signed certificate of `key` as PEM to `name`. */
static void write_cert(const struct fixture *f, const char *name, EVP_PKEY *key)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 86400));
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    X509_NAME *subject = X509_get_subject_name(cert);
    assert_int_equal(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"localhost", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(cert, subject), 1);
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(PEM_write_X509(file, cert), 1);
    assert_int_equal(fclose(file), 0);
    X509_free(cert);
}

/* Write `key` unencrypted as PEM to `name`, with `mode`. */
static void write_key(const struct fixture *f, const char *name, EVP_PKEY *key, int mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(PEM_write_PrivateKey(file, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

/*
 * tls: both files are read and checked at load: a certificate and its key
 * load, and every way the pair can be wrong is a config error naming the
 * file; a private key that group or others may read is warned about.
 */
static void test_tls(void **state)
{
    struct fixture *f = *state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    assert_non_null(key);
    assert_non_null(other);
    write_cert(f, "cert.pem", key);
    write_key(f, "key.pem", key, 0600);
    write_key(f, "other.pem", other, 0600);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);

    struct config *c = load_ok(f, "tls:\n  cert_file: cert.pem\n  key_file: key.pem\n");
    assert_string_equal(c->tls_cert_file, "cert.pem");
    assert_string_equal(c->tls_key_file, "key.pem");
    assert_non_null(strstr(c->tls_cert_pem, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(c->tls_key_pem, "PRIVATE KEY-----"));
    config_free(c);

    write_file(f, "garbage.pem", "not a certificate\n", 0600);
    write_file(f, "empty.pem", "", 0600);
    char *big = malloc(CONFIG_MAX_PEM_BYTES + 2);
    memset(big, '-', CONFIG_MAX_PEM_BYTES + 1);
    big[CONFIG_MAX_PEM_BYTES + 1] = '\0';
    write_file(f, "big.pem", big, 0600);
    free(big);
    static const struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"tls:\n  cert_file: cert.pem\n", "ferry.yaml:2: tls: missing 'key_file'"},
        {"tls:\n  cert_file: cert.pem\n  key_file: other.pem\n",
         "ferry.yaml:3: tls.key_file: other.pem is not the key of cert.pem"},
        {"tls:\n  cert_file: garbage.pem\n  key_file: key.pem\n",
         "ferry.yaml:2: tls.cert_file: garbage.pem holds no PEM certificate"},
        {"tls:\n  cert_file: cert.pem\n  key_file: cert.pem\n",
         "ferry.yaml:3: tls.key_file: cert.pem holds no PEM private key"},
        {"tls:\n  cert_file: cert.pem\n  key_file: empty.pem\n",
         "ferry.yaml:3: tls.key_file: empty.pem is not a PEM file"},
        {"tls:\n  cert_file: big.pem\n  key_file: key.pem\n",
         "ferry.yaml:2: tls.cert_file: big.pem is larger than 1048576 bytes"},
        {"tls:\n  cert_file: cert.pem\n  key_file: missing.pem\n",
         "ferry.yaml:3: tls.key_file: cannot read missing.pem: No such file or directory"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(f, cases[i].yaml, FERRY_EINVAL, cases[i].want);

    /* A readable certificate is fine; a readable key is not. */
    assert_int_equal(chmod("cert.pem", 0644), 0);
    write_file(f, "ferry.yaml", "tls:\n  cert_file: cert.pem\n  key_file: key.pem\n", 0600);
    assert_string_equal(load_capturing_stderr(f), "");
    assert_int_equal(chmod("key.pem", 0640), 0);
    const char *logged = load_capturing_stderr(f);
    assert_non_null(strstr(logged, "secret file is readable by group or others"));
    assert_non_null(strstr(logged, "path=key.pem"));
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"0", 0, 0},
        {"0ms", 0, 0},
        {"0s", 0, 0},
        {"500ms", 0, 500},
        {"1ms", 0, 1},
        {"30s", 0, 30000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"168h", 0, (uint64_t)168 * 3600000},
        {"7d", 0, (uint64_t)7 * 86400000},
        {"007s", 0, 7000},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", FERRY_ETOOBIG, 0},
        {"18446744073709551615s", FERRY_ETOOBIG, 0},
        {"213503982335d", FERRY_ETOOBIG, 0},
        {"", FERRY_EPARSE, 0},
        {"30", FERRY_EPARSE, 0},
        {"s", FERRY_EPARSE, 0},
        {"-1s", FERRY_EPARSE, 0},
        {"+1s", FERRY_EPARSE, 0},
        {" 1s", FERRY_EPARSE, 0},
        {"1s ", FERRY_EPARSE, 0},
        {"1 s", FERRY_EPARSE, 0},
        {"1.5s", FERRY_EPARSE, 0},
        {"1h30m", FERRY_EPARSE, 0},
        {"1S", FERRY_EPARSE, 0},
        {"1sec", FERRY_EPARSE, 0},
        {"1us", FERRY_EPARSE, 0},
        {"1w", FERRY_EPARSE, 0},
        {"99999999999999999999x", FERRY_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int rc = config_parse_duration(cases[i].text, &ms);
        if (rc != cases[i].rc)
            fail_msg("config_parse_duration(\"%s\") = %d, want %d", cases[i].text, rc, cases[i].rc);
        assert_int_equal(ms, rc == 0 ? cases[i].ms : 12345);
    }
    uint64_t ms;
    assert_int_equal(config_parse_duration(NULL, &ms), FERRY_EINVAL);
    assert_int_equal(config_parse_duration("1s", NULL), FERRY_EINVAL);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        size_t bytes;
    } cases[] = {
        {"0", 0, 0},
        {"1", 0, 1},
        {"1B", 0, 1},
        {"1048576", 0, 1048576},
        {"1K", 0, 1024},
        {"1KiB", 0, 1024},
        {"1M", 0, 1048576},
        {"1MiB", 0, 1048576},
        {"64MiB", 0, (size_t)64 << 20},
        {"3G", 0, (size_t)3 << 30},
        {"2GiB", 0, (size_t)2 << 30},
        {"0MiB", 0, 0},
        {"18446744073709551615", 0, SIZE_MAX},
        {"18446744073709551616", FERRY_ETOOBIG, 0},
        {"17179869184G", FERRY_ETOOBIG, 0},
        {"", FERRY_EPARSE, 0},
        {"M", FERRY_EPARSE, 0},
        {"1MB", FERRY_EPARSE, 0},
        {"1KB", FERRY_EPARSE, 0},
        {"1k", FERRY_EPARSE, 0},
        {"1mib", FERRY_EPARSE, 0},
        {"1 MiB", FERRY_EPARSE, 0},
        {"1.5M", FERRY_EPARSE, 0},
        {"-1", FERRY_EPARSE, 0},
        {"1T", FERRY_EPARSE, 0},
        {"1MiBs", FERRY_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t bytes = 12345;
        int rc = config_parse_size(cases[i].text, &bytes);
        if (rc != cases[i].rc)
            fail_msg("config_parse_size(\"%s\") = %d, want %d", cases[i].text, rc, cases[i].rc);
        assert_int_equal(bytes, rc == 0 ? cases[i].bytes : 12345);
    }
    size_t bytes;
    assert_int_equal(config_parse_size(NULL, &bytes), FERRY_EINVAL);
    assert_int_equal(config_parse_size("1", NULL), FERRY_EINVAL);
}

static void test_split_listen(void **state)
{
    (void)state;
    char *host = NULL;
    int port = 0;

    assert_int_equal(config_split_listen("127.0.0.1:8780", &host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8780);
    free(host);
    assert_int_equal(config_split_listen("[::1]:1", &host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    free(host);
    assert_int_equal(config_split_listen("localhost:65535", &host, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 65535);
    free(host);
    assert_int_equal(config_split_listen("0.0.0.0:80", NULL, NULL), 0);

    const char *bad[] = {"",           "8780",        ":8780",   "host:",    "host:0",
                         "host:65536", "host:123456", "host:-1", "host:+80", "host:8x",
                         "::1:80",     "[::1]",       "[::1]80", "[]:80",    "[::g]:80",
                         "a b:80",     "a_b:80",      "a/b:80",  "[::1:80",  "host :80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        host = (char *)0x1;
        port = 7;
        if (config_split_listen(bad[i], &host, &port) != FERRY_EPARSE)
            fail_msg("config_split_listen(\"%s\") should fail", bad[i]);
        assert_ptr_equal(host, (char *)0x1);
        assert_int_equal(port, 7);
    }
    assert_int_equal(config_split_listen(NULL, NULL, NULL), FERRY_EINVAL);
}

static void expect_destination(const char *template, const char *repository, const char *want)
{
    struct config_destination d = {.registry = "r", .repository = (char *)template};
    char *got = config_destination_repository(&d, repository);
    if (want == NULL) {
        if (got != NULL)
            fail_msg("\"%s\" with \"%s\" gave \"%s\", want NULL", template, repository, got);
        return;
    }
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("\"%s\" with \"%s\" gave \"%s\", want \"%s\"", template, repository,
                 got ? got : "NULL", want);
    free(got);
}

static void test_destination_templates(void **state)
{
    (void)state;
    expect_destination("{repo}", "team/app", "team/app");
    expect_destination("mirror/{repo}", "team/app", "mirror/team/app");
    expect_destination("mirror/{name}", "team/sub/app", "mirror/app");
    expect_destination("{name}", "app", "app");
    expect_destination("{repo}/{name}", "team/app", "team/app/app");
    expect_destination("x-{name}-y", "team/app", "x-app-y");
    expect_destination("fixed/name", "team/app", "fixed/name");
    expect_destination("{repo}{repo}", "a/b", "a/ba/b");
    /* Results that are not repository names. */
    expect_destination("Mirror/{repo}", "team/app", NULL);
    expect_destination("mirror/{tag}", "team/app", NULL);
    expect_destination("mirror/{repo", "team/app", NULL);
    expect_destination("mirror//{repo}", "team/app", NULL);
    expect_destination("{repo}/", "team/app", NULL);
    expect_destination("-{name}", "team/app", NULL);
    expect_destination("", "team/app", NULL);
    /* Invalid input, and results over the length cap. */
    expect_destination("{repo}", "Team/app", NULL);
    expect_destination("fixed", "", NULL);
    char repository[201];
    memset(repository, 'a', 200);
    repository[200] = '\0';
    expect_destination("{repo}", repository, repository);
    expect_destination("{repo}/{repo}", repository, NULL);

    struct config_destination d = {.registry = "r", .repository = "{repo}"};
    assert_null(config_destination_repository(&d, NULL));
    assert_null(config_destination_repository(NULL, "a"));
}

static void test_selection(void **state)
{
    struct fixture *f = *state;
    struct config *c = load_ok(f, REGISTRIES "rules:\n"
                                             "  - name: dr\n"
                                             "    source: us-east\n"
                                             "    repositories: [\"app/**\", \"!app/scratch/**\"]\n"
                                             "    tags: [\"*\", \"!*-rc*\"]\n"
                                             "    destinations: [{registry: eu-west}]\n"
                                             "  - name: base\n"
                                             "    source: us-east\n"
                                             "    repositories: [base]\n"
                                             "    tags: [latest]\n"
                                             "    destinations: [{registry: eu-west}]\n"
                                             "  - name: back\n"
                                             "    source: eu-west\n"
                                             "    destinations: [{registry: us-east}]\n");

    assert_true(config_repository_selected(c, "us-east", "app/web"));
    assert_true(config_repository_selected(c, "us-east", "app/a/b"));
    assert_false(config_repository_selected(c, "us-east", "app"));
    assert_false(config_repository_selected(c, "us-east", "app/scratch/x"));
    assert_true(config_repository_selected(c, "us-east", "base"));
    assert_false(config_repository_selected(c, "us-east", "other"));
    assert_true(config_repository_selected(c, "eu-west", "anything/at/all"));
    assert_false(config_repository_selected(c, "eu-alias", "app/web"));
    assert_false(config_repository_selected(c, "nowhere", "app/web"));
    assert_false(config_repository_selected(c, NULL, "app/web"));
    assert_false(config_repository_selected(c, "us-east", NULL));
    assert_false(config_repository_selected(NULL, "us-east", "app/web"));

    assert_true(config_tag_selected(c, "us-east", "app/web", "1.0"));
    assert_false(config_tag_selected(c, "us-east", "app/web", "1.0-rc1"));
    assert_false(config_tag_selected(c, "us-east", "app/scratch/x", "1.0"));
    assert_true(config_tag_selected(c, "us-east", "base", "latest"));
    /* Each rule's tags go with its own repositories. */
    assert_false(config_tag_selected(c, "us-east", "base", "1.0"));
    assert_false(config_tag_selected(c, "us-east", "app/web", "latest-rc"));
    assert_true(config_tag_selected(c, "us-east", "app/web", "latest"));
    assert_true(config_tag_selected(c, "eu-west", "x/y", "sha256-abc.sig"));
    assert_false(config_tag_selected(c, "us-east", "app/web", NULL));

    assert_true(config_rule_selects(&c->rules[0], "app/web", NULL));
    assert_true(config_rule_selects(&c->rules[0], "app/web", "2"));
    assert_false(config_rule_selects(&c->rules[0], "app/web", "2-rc1"));
    assert_false(config_rule_selects(&c->rules[1], "app/web", NULL));
    assert_false(config_rule_selects(NULL, "app/web", NULL));
    config_free(c);
}

/* The keys of issue 16: helpers, hooks, rotated password files, foreign layers. */
static void test_vendor_keys(void **state)
{
    struct fixture *f = *state;
    write_file(f, "pw", "hunter2\n", 0600);
    struct config *c = load_ok(f, "docker_config: auth/config.json\n"
                                  "registries:\n"
                                  "  ecr:\n"
                                  "    url: https://1.dkr.ecr.us-east-1.amazonaws.com\n"
                                  "    credential_helper: ecr-login\n"
                                  "    create_repository: [aws, ecr, create-repository, "
                                  "--repository-name, \"{repo}\"]\n"
                                  "    command_timeout: 5s\n"
                                  "  ghcr: { url: \"https://ghcr.io\", username: u, "
                                  "password_file: pw }\n"
                                  "  anon: { url: \"http://127.0.0.1:5000\" }\n"
                                  "rules:\n"
                                  "  - name: r\n"
                                  "    source: anon\n"
                                  "    foreign_layers: copy\n"
                                  "    destinations: [{ registry: ecr }]\n"
                                  "  - name: s\n"
                                  "    source: anon\n"
                                  "    foreign_layers: skip\n"
                                  "    destinations: [{ registry: ghcr }]\n");
    const struct config_registry *ecr = &c->registries[0];
    assert_string_equal(ecr->credential_helper, "ecr-login");
    assert_int_equal(ecr->n_create_repository, 5);
    assert_string_equal(ecr->create_repository[4], "{repo}");
    assert_int_equal(ecr->command_timeout_ms, 5000);
    assert_null(ecr->username);
    const struct config_registry *ghcr = &c->registries[1];
    assert_string_equal(ghcr->password, "hunter2");
    assert_non_null(ghcr->password_file);
    assert_non_null(strstr(ghcr->password_file, "pw"));
    assert_int_equal(ghcr->command_timeout_ms, CONFIG_DEFAULT_COMMAND_TIMEOUT_MS);
    assert_null(ghcr->create_repository);
    /* docker_config is relative to the config's directory, and every registry knows it. */
    assert_non_null(strstr(c->docker_config, "auth/config.json"));
    assert_string_equal(c->registries[2].docker_config, c->docker_config);
    assert_true(c->rules[0].foreign_layers);
    assert_false(c->rules[1].foreign_layers);
    config_free(c);

    c = load_ok(f, REGISTRIES "rules:\n  - { name: r, source: us-east, destinations: [{ "
                              "registry: eu-west }] }\n");
    assert_false(c->rules[0].foreign_layers);
    assert_null(c->docker_config);
    assert_null(c->registries[0].docker_config);
    config_free(c);

    static const struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"registries:\n  a: { url: \"http://a\", credential_helper: \"../x\" }\n",
         "ferry.yaml:2: registries.a.credential_helper: not a helper name"},
        {"registries:\n  a: { url: \"http://a\", credential_helper: x, username: u, password: "
         "p }\n",
         "ferry.yaml:2: registries.a: credential_helper and username/password are exclusive"},
        {"registries:\n  a: { url: \"http://a\", create_repository: [] }\n",
         "ferry.yaml:2: registries.a.create_repository"},
        {"registries:\n  a: { url: \"http://a\", create_repository: [aws, \"\"] }\n",
         "ferry.yaml:2: registries.a.create_repository[1]: must not be empty"},
        {"registries:\n  a: { url: \"http://a\", command_timeout: 1h }\n",
         "ferry.yaml:2: registries.a.command_timeout"},
        {REGISTRIES "rules:\n  - { name: r, source: us-east, foreign_layers: maybe, "
                    "destinations: [{ registry: eu-west }] }\n",
         "ferry.yaml:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(f, cases[i].yaml, FERRY_EINVAL, cases[i].want);
}

/* cluster: every key, the defaults, and what is refused (never saying a secret). */
static void test_cluster(void **state)
{
    struct fixture *f = *state;

    struct config *c = load_ok(f, "registries: { a: { url: \"http://a\" } }\n");
    assert_null(c->cluster);
    config_free(c);

    write_file(f, "nats-pass", SECRET "-nats\n", 0600);
    c = load_ok(f, "cluster:\n"
                   "  servers: [\"nats://10.0.0.1:4222\", \"tls://nats-2.example:4222\"]\n"
                   "  name: ferry-a.eu\n"
                   "  user: ferry\n"
                   "  password_file: nats-pass\n"
                   "  ca_file: ca.pem\n"
                   "  stream: DR_JOURNAL\n"
                   "  bucket_prefix: dr-ferry\n"
                   "  replicas: 5\n"
                   "  duplicate_window: 10m\n"
                   "  ack_wait: 1m\n"
                   "  timeout: 2s\n");
    assert_non_null(c->cluster);
    assert_int_equal(c->cluster->n_servers, 2);
    assert_string_equal(c->cluster->servers[1], "tls://nats-2.example:4222");
    assert_string_equal(c->cluster->name, "ferry-a.eu");
    assert_string_equal(c->cluster->user, "ferry");
    assert_string_equal(c->cluster->password, SECRET "-nats");
    assert_null(c->cluster->token);
    assert_true(c->cluster->tls); /* a CA file means TLS */
    assert_non_null(strstr(c->cluster->ca_file, "ca.pem"));
    assert_string_equal(c->cluster->stream, "DR_JOURNAL");
    assert_string_equal(c->cluster->bucket_prefix, "dr-ferry");
    assert_int_equal(c->cluster->replicas, 5);
    assert_int_equal(c->cluster->duplicate_window_ms, 600000);
    assert_int_equal(c->cluster->ack_wait_ms, 60000);
    assert_int_equal(c->cluster->timeout_ms, 2000);
    config_free(c);

    c = load_ok(f,
                "cluster: { servers: [\"nats://127.0.0.1:4222\"], token_env: FERRY_TEST_PASS }\n");
    assert_string_equal(c->cluster->token, SECRET "-env");
    assert_false(c->cluster->tls);
    assert_string_equal(c->cluster->stream, CONFIG_DEFAULT_CLUSTER_STREAM);
    assert_string_equal(c->cluster->bucket_prefix, CONFIG_DEFAULT_CLUSTER_PREFIX);
    assert_int_equal(c->cluster->replicas, CONFIG_DEFAULT_CLUSTER_REPLICAS);
    assert_int_equal(c->cluster->duplicate_window_ms, CONFIG_DEFAULT_CLUSTER_DUPLICATES_MS);
    assert_int_equal(c->cluster->ack_wait_ms, CONFIG_DEFAULT_CLUSTER_ACK_WAIT_MS);
    assert_int_equal(c->cluster->timeout_ms, CONFIG_DEFAULT_CLUSTER_TIMEOUT_MS);
    assert_true(c->cluster->name[0] != '\0'); /* the host's name */
    config_free(c);

    expect_error(f, "cluster: {}\n", E, "ferry.yaml:1: cluster: missing 'servers'");
    expect_error(f, "cluster: { servers: [] }\n", E, "ferry.yaml:1: cluster.servers:");
    expect_error(f, "cluster: { servers: [\"http://a:4222\"] }\n", E,
                 "ferry.yaml:1: cluster.servers[0]: 'http://a:4222' is not a nats://");
    expect_error(f, "cluster: { servers: [\"nats://u:" SECRET "@a:4222\"] }\n", E,
                 "ferry.yaml:1: cluster.servers[0]: a server URL must not hold credentials");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], user: u }\n", E,
                 "ferry.yaml:1: cluster.user: user and a password go together");
    expect_error(f,
                 "cluster: { servers: [\"nats://a:1\"], user: u, password: " SECRET
                 ", token: t" SECRET " }\n",
                 E,
                 "ferry.yaml:1: cluster.token: user and password, a token and creds_file are "
                 "exclusive");
    expect_error(f,
                 "cluster: { servers: [\"nats://a:1\"], token: " SECRET
                 ", token_env: FERRY_TEST_PASS }\n",
                 E, "ferry.yaml:1: token: token, token_env and token_file are exclusive");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], replicas: 7 }\n", E,
                 "ferry.yaml:1: cluster.replicas:");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], stream: \"a.b\" }\n", E,
                 "ferry.yaml:1: cluster.stream: 'a.b': letters, digits");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], cert_file: c.pem }\n", E,
                 "ferry.yaml:1: cluster.cert_file: cert_file and key_file go together");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], ack_wait: 10ms }\n", E,
                 "ferry.yaml:1: cluster.ack_wait:");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], name: \".a\" }\n", E,
                 "ferry.yaml:1: cluster.name: '.a': letters, digits");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], name: \"a..b\" }\n", E,
                 "ferry.yaml:1: cluster.name: 'a..b': letters, digits");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], name: \"a.\" }\n", E,
                 "ferry.yaml:1: cluster.name: 'a.': letters, digits");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], name: \"a b\" }\n", E,
                 "ferry.yaml:1: cluster.name: 'a b': letters, digits");
    expect_error(f, "cluster: { servers: [\"nats://a:1\"], colour: blue }\n", E,
                 "ferry.yaml:1: cluster.colour: unknown key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vendor_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_and_circuit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_and_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_platforms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alias_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_password_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_first_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_split_listen),
        cmocka_unit_test(test_destination_templates),
        cmocka_unit_test_setup_teardown(test_selection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
