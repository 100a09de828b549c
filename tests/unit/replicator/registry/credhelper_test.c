/*
 * Docker credential helpers (replicator/registry/credhelper.c) on the real
 * loop: helpers are shell scripts written at test time into a directory put
 * first in PATH. Credentials returned, an identity token passed through,
 * "credentials not found" told apart from a failure, bad output refused, the
 * time limit, a name that could make a path refused before anything runs,
 * and no error ever holding the helper's stdout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/errors.h"
#include "registry/credhelper.h"

#define MARKER "MARKER-SECRET-51d2e8"
#define SERVER "registry.example.com:5000"

struct fixture {
    char dir[64];
    char *old_path;
    char old_cwd[4096];
    uv_loop_t loop;
};

struct answer {
    int calls;
    bool returned; /* credhelper_get() had returned when the callback came */
    bool called_inside;
    int rc;
    char *error;
    char *username;
    char *secret;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-credhelper-XXXXXX");
    if (unit_tmpdir_make(f->dir) < 0 || uv_loop_init(&f->loop) < 0 ||
        getcwd(f->old_cwd, sizeof(f->old_cwd)) == NULL) {
        free(f);
        return -1;
    }
    const char *path = getenv("PATH");
    f->old_path = strdup(path != NULL ? path : "/usr/bin:/bin");
    char *with_dir = malloc(strlen(f->dir) + strlen(f->old_path) + 2);
    sprintf(with_dir, "%s:%s", f->dir, f->old_path);
    setenv("PATH", with_dir, 1);
    free(with_dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    setenv("PATH", f->old_path, 1);
    free(f->old_path);
    int rc = chdir(f->old_cwd);
    if (unit_tmpdir_remove(f->dir) < 0)
        rc = -1;
    free(f);
    return rc;
}

/* Write DIR/docker-credential-NAME, a /bin/sh script with `body`, mode 755. */
static void write_helper(const struct fixture *f, const char *name, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/docker-credential-%s", f->dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

static void answered(int rc, const char *error, const char *username, const char *secret, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->called_inside = !a->returned;
    a->rc = rc;
    a->error = error != NULL ? strdup(error) : NULL;
    a->username = username != NULL ? strdup(username) : NULL;
    a->secret = secret != NULL ? strdup(secret) : NULL;
}

/* Ask helper `name` for SERVER; the callback must come once, from the loop. */
static void ask(struct fixture *f, const char *name, uint64_t timeout_ms, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    credhelper_get(&f->loop, name, SERVER, timeout_ms, answered, a);
    a->returned = true;
    assert_int_equal(a->calls, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a->calls, 1);
    assert_false(a->called_inside);
    if (a->rc == 0) {
        assert_null(a->error);
        assert_non_null(a->username);
        assert_non_null(a->secret);
    } else {
        assert_message(a->error);
        assert_null(a->username);
        assert_null(a->secret);
        /* The helper's stdout never reaches a message. */
        assert_null(strstr(a->error, MARKER));
    }
}

static void answer_release(struct answer *a)
{
    free(a->error);
    free(a->username);
    free(a->secret);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    char *data = calloc(1, 4096);
    *len = fread(data, 1, 4095, file);
    fclose(file);
    return data;
}

/* `get` as the one argument, the server URL on stdin without a newline, the JSON parsed. */
static void test_good(void **state)
{
    struct fixture *f = *state;
    char body[512];
    snprintf(
        body, sizeof(body),
        "[ \"$#\" = 1 ] && [ \"$1\" = get ] || exit 9\n"
        "cat > %s/stdin\n"
        "printf '{\"ServerURL\": \"%%s\", \"Username\": \"alice\", \"Secret\": \"s3cret\"}\\n' "
        "\"$(cat %s/stdin)\"",
        f->dir, f->dir);
    write_helper(f, "good", body);
    struct answer a;
    ask(f, "good", 10000, &a);
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.username, "alice");
    assert_string_equal(a.secret, "s3cret");
    answer_release(&a);

    char path[128];
    size_t len;
    snprintf(path, sizeof(path), "%s/stdin", f->dir);
    char *input = read_file(path, &len);
    assert_int_equal(len, strlen(SERVER));
    assert_memory_equal(input, SERVER, len);
    free(input);
}

/* Username "<token>": the Secret is an identity token, passed through as it is. */
static void test_identity_token(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "token",
                 "cat >/dev/null\n"
                 "echo '{\"ServerURL\":\"" SERVER
                 "\",\"Username\":\"<token>\",\"Secret\":\"identity-xyz\"}'");
    struct answer a;
    ask(f, "token", 10000, &a);
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.username, CREDHELPER_TOKEN_USERNAME);
    assert_string_equal(a.secret, "identity-xyz");
    answer_release(&a);
}

/* "credentials not found", in any case, on stdout or stderr: FERRY_ENOTFOUND. */
static void test_not_found(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "nf-stdout", "echo 'credentials not found in native keychain'; exit 1");
    write_helper(f, "nf-stderr", "echo 'Error: Credentials Not Found' >&2; exit 1");
    const char *names[] = {"nf-stdout", "nf-stderr"};
    for (size_t i = 0; i < 2; i++) {
        struct answer a;
        ask(f, names[i], 10000, &a);
        assert_int_equal(a.rc, FERRY_ENOTFOUND);
        assert_non_null(strstr(a.error, "docker-credential-"));
        answer_release(&a);
    }
}

/* Output that is not the JSON: FERRY_EAUTH, and the message says so without quoting it. */
static void test_bad_json(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "garbage", "echo '" MARKER " {not json'");
    write_helper(f, "array", "echo '[\"" MARKER "\"]'");
    write_helper(f, "nosecret", "echo '{\"Username\":\"" MARKER "\"}'");
    write_helper(f, "number", "echo '{\"Username\":\"u\",\"Secret\":12345}'");
    const char *names[] = {"garbage", "array", "nosecret", "number"};
    for (size_t i = 0; i < 4; i++) {
        struct answer a;
        ask(f, names[i], 10000, &a);
        assert_int_equal(a.rc, FERRY_EAUTH);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "docker-credential-%s: ", names[i]);
        assert_int_equal(strncmp(a.error, prefix, strlen(prefix)), 0);
        answer_release(&a);
    }
}

static void test_empty_secret(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "empty", "echo '{\"Username\":\"alice\",\"Secret\":\"\"}'");
    write_helper(f, "nouser", "echo '{\"Username\":\"\",\"Secret\":\"" MARKER "\"}'");
    struct answer a;
    ask(f, "empty", 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_string_equal(a.error, "docker-credential-empty: it returned an empty Secret");
    answer_release(&a);
    ask(f, "nouser", 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    answer_release(&a);
}

/* A failing helper: its status and first stderr line in the message, never its stdout. */
static void test_failure_message(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "fails", "echo '" MARKER "'; echo 'keychain is locked' >&2; exit 2");
    struct answer a;
    ask(f, "fails", 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_string_equal(a.error,
                        "docker-credential-fails: exited with status 2: keychain is locked");
    answer_release(&a);
}

static void test_missing_helper(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    ask(f, "ferry-absent-h1", 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_string_equal(a.error,
                        "docker-credential-ferry-absent-h1: cannot run it: not found in PATH");
    answer_release(&a);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "slow", "exec sleep 100");
    struct answer a;
    uint64_t start = uv_hrtime();
    ask(f, "slow", 300, &a);
    assert_true((uv_hrtime() - start) / 1000000 < 3000);
    assert_int_equal(a.rc, FERRY_ETIMEOUT);
    assert_string_equal(a.error, "docker-credential-slow: timed out after 300 ms");
    answer_release(&a);
}

/* More than CREDHELPER_OUTPUT_MAX on stdout: refused, not parsed from a prefix. */
static void test_output_too_big(void **state)
{
    struct fixture *f = *state;
    write_helper(f, "huge",
                 "printf '{\"Username\":\"u\",\"Secret\":\"s\"}'\n"
                 "head -c 70000 /dev/zero | tr '\\0' ' '");
    struct answer a;
    ask(f, "huge", 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    assert_non_null(strstr(a.error, "more than"));
    answer_release(&a);
}

/*
 * A name that is not 1 to 64 of [A-Za-z0-9._-] is refused, from the loop,
 * and nothing runs: "../x" would otherwise run ./docker-credential-../x.
 */
static void test_bad_name(void **state)
{
    struct fixture *f = *state;
    char path[256], marker[256];
    assert_int_equal(chdir(f->dir), 0);
    snprintf(path, sizeof(path), "%s/docker-credential-..", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(marker, sizeof(marker), "%s/ran", f->dir);
    snprintf(path, sizeof(path), "%s/docker-credential-../x", f->dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file, "#!/bin/sh\ntouch %s\necho '{\"Username\":\"u\",\"Secret\":\"s\"}'\n", marker);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, 0755), 0);

    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    const char *names[] = {"../x", "", "a/b", "a b", "x;rm", long_name};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct answer a;
        ask(f, names[i], 10000, &a);
        assert_int_equal(a.rc, FERRY_EINVAL);
        assert_non_null(strstr(a.error, "credential helper name"));
        answer_release(&a);
    }
    assert_int_equal(access(marker, F_OK), -1);

    /* 64 characters is a name (it is just not installed). */
    long_name[64] = '\0';
    struct answer a;
    ask(f, long_name, 10000, &a);
    assert_int_equal(a.rc, FERRY_EAUTH);
    answer_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
