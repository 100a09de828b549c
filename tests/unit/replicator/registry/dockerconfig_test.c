#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/dockerconfig.h"
#include "common/errors.h"

/* base64("alice:s3cr:et") */
#define ALICE_AUTH "YWxpY2U6czNjcjpldA=="
/* base64("bob:hunter2") */
#define BOB_AUTH "Ym9iOmh1bnRlcjI="

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-dockerconfig-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/config.json", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    int rc = rmdir(f->dir);
    free(f);
    return rc;
}

static void write_config(const struct fixture *f, const char *contents, size_t len)
{
    FILE *file = fopen(f->path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(contents, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
}

/* Look `registry` up in `json`; on success compare with the wanted pair. */
static int lookup(const struct fixture *f, const char *json, const char *registry,
                  const char *want_user, const char *want_password)
{
    char *user = (char *)1, *password = (char *)1, *err = NULL;
    write_config(f, json, strlen(json));
    int rc = dockerconfig_lookup(f->path, registry, &user, &password, &err);
    if (rc == 0) {
        assert_null(err);
        assert_string_equal(user, want_user);
        assert_string_equal(password, want_password);
        free(user);
        free(password);
    } else {
        assert_null(user);
        assert_null(password);
        assert_message(err);
        /* No secret of any fixture ever reaches a message. */
        assert_null(strstr(err, "hunter2"));
        assert_null(strstr(err, "s3cr"));
        assert_null(strstr(err, BOB_AUTH));
        assert_null(strstr(err, ALICE_AUTH));
        assert_null(strstr(err, "tok-"));
        if (rc != FERRY_ENOTFOUND)
            assert_non_null(strstr(err, f->path));
        free(err);
    }
    return rc;
}

static void test_auth_field(void **state)
{
    struct fixture *f = *state;
    /* Split at the first colon: passwords may hold colons. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"registry.example.com\":{\"auth\":\"" ALICE_AUTH "\"}}}",
                            "registry.example.com", "alice", "s3cr:et"),
                     0);
    /* Unpadded base64 is accepted too. */
    assert_int_equal(lookup(f, "{\"auths\":{\"r.example\":{\"auth\":\"Ym9iOmh1bnRlcjI\"}}}",
                            "r.example", "bob", "hunter2"),
                     0);
    /* An empty password without an identity token is no credential at all. */
    assert_int_equal(
        lookup(f, "{\"auths\":{\"r.example\":{\"auth\":\"Ym9iOg==\"}}}", "r.example", "bob", ""),
        FERRY_ENOTFOUND);
}

static void test_username_password(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"r.example\":{\"username\":\"bob\","
                            "\"password\":\"hunter2\"}}}",
                            "r.example", "bob", "hunter2"),
                     0);
    /* "auth" wins over the separate fields. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"r.example\":{\"auth\":\"" ALICE_AUTH "\","
                            "\"username\":\"bob\",\"password\":\"hunter2\"}}}",
                            "r.example", "alice", "s3cr:et"),
                     0);
}

static void test_identity_token(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(lookup(f, "{\"auths\":{\"r.example\":{\"identitytoken\":\"tok-123\"}}}",
                            "r.example", DOCKERCONFIG_TOKEN_USERNAME, "tok-123"),
                     0);
    /* ACR writes an auth with an empty password next to the token. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"r.example\":{\"auth\":\"MDAwMDAwMDAtMDAwMDo=\","
                            "\"identitytoken\":\"tok-456\"}}}",
                            "r.example", DOCKERCONFIG_TOKEN_USERNAME, "tok-456"),
                     0);
    /* A real password is preferred to the token. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"r.example\":{\"auth\":\"" BOB_AUTH "\","
                            "\"identitytoken\":\"tok-789\"}}}",
                            "r.example", "bob", "hunter2"),
                     0);
}

static void test_key_matching(void **state)
{
    struct fixture *f = *state;
    const char *hub = "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"" BOB_AUTH "\"}}}";
    assert_int_equal(lookup(f, hub, "docker.io", "bob", "hunter2"), 0);
    assert_int_equal(lookup(f, hub, "index.docker.io", "bob", "hunter2"), 0);
    assert_int_equal(lookup(f, hub, "registry-1.docker.io", "bob", "hunter2"), 0);
    assert_int_equal(lookup(f, "{\"auths\":{\"docker.io\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "index.docker.io", "bob", "hunter2"),
                     0);
    assert_int_equal(lookup(f, "{\"auths\":{\"registry-1.docker.io\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "docker.io", "bob", "hunter2"),
                     0);
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"https://registry.example.com/v2/\":{\"auth\":"
                            "\"" BOB_AUTH "\"}}}",
                            "registry.example.com", "bob", "hunter2"),
                     0);
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"http://localhost:5000\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "localhost:5000", "bob", "hunter2"),
                     0);
    assert_int_equal(lookup(f, "{\"auths\":{\"Registry.Example.COM\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "registry.example.com", "bob", "hunter2"),
                     0);
    /* An exact key wins over an earlier normalized one. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"https://r.example/v1/\":{\"auth\":\"" ALICE_AUTH "\"},"
                            "\"r.example\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "r.example", "bob", "hunter2"),
                     0);
    /* Entries left behind by a credential store hold nothing and are skipped. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"r.example\":{},\"https://r.example\":{\"auth\":"
                            "\"" BOB_AUTH "\"}},\"credsStore\":\"desktop\"}",
                            "r.example", "bob", "hunter2"),
                     0);
}

static void test_not_found(void **state)
{
    struct fixture *f = *state;
    const char *other = "{\"auths\":{\"r.example:5000\":{\"auth\":\"" BOB_AUTH "\"},"
                        "\"other.example\":{\"auth\":\"" BOB_AUTH "\"}}}";
    assert_int_equal(lookup(f, other, "r.example", NULL, NULL), FERRY_ENOTFOUND);
    assert_int_equal(lookup(f, other, "example", NULL, NULL), FERRY_ENOTFOUND);
    assert_int_equal(lookup(f, other, "docker.io", NULL, NULL), FERRY_ENOTFOUND);
    assert_int_equal(lookup(f, "{}", "r.example", NULL, NULL), FERRY_ENOTFOUND);
    assert_int_equal(lookup(f, "{\"auths\":null}", "r.example", NULL, NULL), FERRY_ENOTFOUND);
    assert_int_equal(lookup(f, "{\"auths\":{\"r.example\":{}}}", "r.example", NULL, NULL),
                     FERRY_ENOTFOUND);
    assert_int_equal(
        lookup(f, "{\"auths\":{\"r.example\":{\"username\":\"bob\"}}}", "r.example", NULL, NULL),
        FERRY_ENOTFOUND);
    assert_int_equal(
        lookup(f, "{\"auths\":{\"r.example\":{\"auth\":\"\"}}}", "r.example", NULL, NULL),
        FERRY_ENOTFOUND);

    /* A missing file. */
    char *user = NULL, *password = NULL, *err = NULL;
    unlink(f->path);
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", &user, &password, &err),
                     FERRY_ENOTFOUND);
    assert_null(user);
    assert_null(password);
    assert_message(err);
    free(err);
    err = NULL;
    char missing_dir[192];
    snprintf(missing_dir, sizeof(missing_dir), "%s/nope/config.json", f->dir);
    assert_int_equal(dockerconfig_lookup(missing_dir, "r.example", &user, &password, &err),
                     FERRY_ENOTFOUND);
    assert_message(err);
    free(err);
}

static void test_malformed(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "{\"auths\":{\"r.example\":{\"auth\":\"" BOB_AUTH "\"}",
        "{\"auths\":{\"r.example\":{\"auth\":\"" BOB_AUTH "\"}}} trailing",
        "",
        "   ",
        "[]",
        "\"auths\"",
        "{\"auths\":[]}",
        "{\"auths\":\"hunter2\"}",
        "{\"auths\":{\"r.example\":\"hunter2\"}}",
        "{\"auths\":{\"r.example\":{\"auth\":42}}}",
        "{\"auths\":{\"r.example\":{\"auth\":\"!!!!hunter2\"}}}",
        "{\"auths\":{\"r.example\":{\"auth\":\"Ym9iaHVudGVyMg==\"}}}", /* no colon */
        "{\"auths\":{\"r.example\":{\"auth\":\"Ym9iOmh1bnRlcjI=x\"}}}",
        "{\"auths\":{\"r.example\":{\"auth\":\"Y\"}}}",
        "{\"auths\":{\"r.example\":{\"auth\":\"AGJvYjpodW50ZXIy\"}}}", /* decodes to a NUL */
        "{\"auths\":{\"r.example\":{\"auth\":\"Ym9i Omh1bnRlcjI=\"}}}",
        "{\"auths\":{\"r.example\":{\"password\":[\"hunter2\"]}}}",
        "{\"auths\":{\"r.example\":{\"identitytoken\":{\"tok-1\":1}}}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (lookup(f, bad[i], "r.example", NULL, NULL) != FERRY_EPARSE)
            fail_msg("case %zu should be FERRY_EPARSE", i);
    }
    /* A malformed entry for another registry does not matter. */
    assert_int_equal(lookup(f,
                            "{\"auths\":{\"other.example\":{\"auth\":\"!!\"},"
                            "\"r.example\":{\"auth\":\"" BOB_AUTH "\"}}}",
                            "r.example", "bob", "hunter2"),
                     0);

    /* A NUL byte inside the file. */
    const char with_nul[] =
        "{\"auths\":{}}\0{\"auths\":{\"r.example\":{\"auth\":\"" BOB_AUTH "\"}}}";
    char *user = NULL, *password = NULL, *err = NULL;
    write_config(f, with_nul, sizeof(with_nul) - 1);
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", &user, &password, &err),
                     FERRY_EPARSE);
    assert_message(err);
    free(err);

    /* Deep nesting is refused by the JSON parser, not followed. */
    size_t depth = 20000;
    char *deep = malloc(depth * 2);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    write_config(f, deep, depth * 2);
    free(deep);
    err = NULL;
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", &user, &password, &err),
                     FERRY_EPARSE);
    assert_message(err);
    free(err);
}

static void test_size_cap(void **state)
{
    struct fixture *f = *state;
    const char *json = "{\"auths\":{\"r.example\":{\"auth\":\"" BOB_AUTH "\"}}}";
    char *contents = malloc(DOCKERCONFIG_MAX_BYTES + 1);
    char *user = NULL, *password = NULL, *err = NULL;

    memset(contents, ' ', DOCKERCONFIG_MAX_BYTES + 1);
    memcpy(contents, json, strlen(json));
    write_config(f, contents, DOCKERCONFIG_MAX_BYTES);
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", &user, &password, &err), 0);
    assert_string_equal(password, "hunter2");
    free(user);
    free(password);

    write_config(f, contents, DOCKERCONFIG_MAX_BYTES + 1);
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", &user, &password, &err),
                     FERRY_ETOOBIG);
    assert_null(user);
    assert_null(password);
    assert_message(err);
    free(err);
    free(contents);
}

static void test_unreadable(void **state)
{
    struct fixture *f = *state;
    char *user = NULL, *password = NULL, *err = NULL;
    /* A directory where the file should be. */
    assert_int_equal(dockerconfig_lookup(f->dir, "r.example", &user, &password, &err), -EISDIR);
    assert_message(err);
    free(err);
    err = NULL;

    assert_int_equal(dockerconfig_lookup(NULL, "r.example", &user, &password, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    assert_int_equal(dockerconfig_lookup(f->path, NULL, &user, &password, NULL), FERRY_EINVAL);
    assert_int_equal(dockerconfig_lookup(f->path, "r.example", NULL, &password, NULL),
                     FERRY_EINVAL);
    assert_null(password);
}

static char *saved_env(const char *name)
{
    const char *value = getenv(name);
    return value != NULL ? strdup(value) : NULL;
}

static void restore_env(const char *name, char *value)
{
    if (value != NULL)
        setenv(name, value, 1);
    else
        unsetenv(name);
    free(value);
}

/* A helper knows Docker Hub by the URL docker login stored it under. */
static void test_server_url(void **state)
{
    (void)state;
    assert_string_equal(dockerconfig_server_url("docker.io"), "https://index.docker.io/v1/");
    assert_string_equal(dockerconfig_server_url("registry-1.docker.io"),
                        "https://index.docker.io/v1/");
    assert_string_equal(dockerconfig_server_url("index.docker.io"), "https://index.docker.io/v1/");
    assert_string_equal(dockerconfig_server_url("ghcr.io"), "ghcr.io");
    assert_string_equal(dockerconfig_server_url("127.0.0.1:5000"), "127.0.0.1:5000");
}

static void test_default_path(void **state)
{
    (void)state;
    char *docker_config = saved_env("DOCKER_CONFIG");
    char *home = saved_env("HOME");

    setenv("DOCKER_CONFIG", "/etc/dc", 1);
    setenv("HOME", "/home/u", 1);
    char *path = dockerconfig_default_path();
    assert_string_equal(path, "/etc/dc/config.json");
    free(path);

    setenv("DOCKER_CONFIG", "", 1);
    path = dockerconfig_default_path();
    assert_string_equal(path, "/home/u/.docker/config.json");
    free(path);

    unsetenv("DOCKER_CONFIG");
    path = dockerconfig_default_path();
    assert_string_equal(path, "/home/u/.docker/config.json");
    free(path);

    unsetenv("HOME");
    assert_null(dockerconfig_default_path());

    restore_env("DOCKER_CONFIG", docker_config);
    restore_env("HOME", home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_username_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test(test_server_url),
        cmocka_unit_test(test_default_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
