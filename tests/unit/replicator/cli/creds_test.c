/*
 * creds: registry credentials from the flags (argv, a file, a line of
 * stdin), the environment and the Docker config, first found wins.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/creds.h"
#include "registry/credentials.h"
#include "common/errors.h"
#include "common/xalloc.h"

struct fixture {
    char dir[64];
    char path[128]; /* a file in dir */
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-creds-XXXXXX");
    if (unit_tmpdir_make(f->dir) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/file", f->dir);
    unsetenv("FERRY_T_USERNAME");
    unsetenv("FERRY_T_PASSWORD");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = unit_tmpdir_remove(f->dir);
    free(f);
    return rc;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

/* --X-creds: a copy is kept, and the password leaves argv. */
static void test_arg(void **state)
{
    struct fixture *f = *state;
    char arg[] = "alice:s3cret";
    struct creds c;
    creds_init(&c, "--creds");
    creds_take(&c, CREDS_ARG, arg);

    assert_int_equal(creds_load("ls", &c), 0);
    assert_string_equal(c.text, "alice:s3cret");
    assert_string_equal(arg, "alice:");
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_null(c.text);
    assert_string_equal(c.username, "alice");
    assert_string_equal(c.password, "s3cret");
    creds_release(&c);
    assert_null(c.username);
    assert_null(c.password);
}

/* Text that is not USER:PASSWORD is an error. */
static void test_arg_malformed(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {"alice", ":s3cret"};
    for (size_t i = 0; i < 2; i++) {
        char arg[32];
        snprintf(arg, sizeof(arg), "%s", bad[i]);
        struct creds c;
        creds_init(&c, "--creds");
        creds_take(&c, CREDS_ARG, arg);
        assert_int_equal(creds_load("ls", &c), 0);
        assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), FERRY_EINVAL);
        assert_null(c.text);
        assert_null(c.username);
        assert_null(c.password);
        creds_release(&c);
    }
}

/* More than one of the three flags is a usage error. */
static void test_two_flags(void **state)
{
    (void)state;
    char arg[] = "alice:s3cret";
    struct creds c;
    creds_init(&c, "--src-creds");
    creds_take(&c, CREDS_ARG, arg);
    creds_take(&c, CREDS_STDIN, NULL);
    assert_int_equal(c.given, 2);
    assert_int_equal(creds_load("copy", &c), -1);
    assert_null(c.text);
    assert_string_equal(arg, "alice:s3cret");
    creds_release(&c);
}

/* --X-creds-file: the first line, trimmed; a missing file is an error. */
static void test_file(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "bob:hunter2 \nsecond:line\n");
    struct creds c;
    creds_init(&c, "--creds");
    creds_take(&c, CREDS_FILE, f->path);
    assert_int_equal(creds_load("ls", &c), 0);
    assert_string_equal(c.text, "bob:hunter2");
    creds_release(&c);
    assert_null(c.text);

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/none", f->dir);
    creds_init(&c, "--creds");
    creds_take(&c, CREDS_FILE, missing);
    assert_int_equal(creds_load("ls", &c), -1);
    assert_null(c.text);
    creds_release(&c);
}

/* --X-creds-stdin: one line each, in turn; nothing past a line is read. */
static void test_stdin(void **state)
{
    (void)state;
    int saved = dup(STDIN_FILENO);
    int p[2];
    assert_true(saved >= 0);
    assert_int_equal(pipe(p), 0);
    const char *lines = "src:one\r\ndest:two\n";
    assert_int_equal(write(p[1], lines, strlen(lines)), (ssize_t)strlen(lines));
    assert_int_equal(close(p[1]), 0);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(close(p[0]), 0);

    struct creds src, dest, more;
    creds_init(&src, "--src-creds");
    creds_init(&dest, "--dest-creds");
    creds_init(&more, "--creds");
    creds_take(&src, CREDS_STDIN, NULL);
    creds_take(&dest, CREDS_STDIN, NULL);
    creds_take(&more, CREDS_STDIN, NULL);
    assert_int_equal(creds_load("copy", &src), 0);
    assert_int_equal(creds_load("copy", &dest), 0);
    assert_string_equal(src.text, "src:one");
    assert_string_equal(dest.text, "dest:two");
    /* stdin is at its end: no line. */
    assert_int_equal(creds_load("copy", &more), -1);
    assert_null(more.text);

    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(close(saved), 0);
    creds_release(&src);
    creds_release(&dest);
    creds_release(&more);
}

/* No flag: the environment, the password taken out of it. */
static void test_env(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(setenv("FERRY_T_USERNAME", "carol", 1), 0);
    assert_int_equal(setenv("FERRY_T_PASSWORD", "pw", 1), 0);
    struct creds c;
    creds_init(&c, "--creds");
    assert_int_equal(creds_load("ls", &c), 0);
    assert_null(c.text);
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_string_equal(c.username, "carol");
    assert_string_equal(c.password, "pw");
    assert_null(getenv("FERRY_T_PASSWORD"));
    creds_release(&c);

    /* A name without a password is not used. */
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_null(c.username);
    assert_null(c.password);
    creds_release(&c);
    unsetenv("FERRY_T_USERNAME");
}

/* Neither: the Docker config at --authfile; a broken one is an error, a missing one is none. */
static void test_dockerconfig(void **state)
{
    struct fixture *f = *state;
    struct creds c;
    struct credential cred;
    creds_init(&c, "--creds");

    /* No file: anonymous. */
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_true(credentials_current(c.credentials, &cred));
    assert_null(cred.username);
    creds_release(&c);

    /* base64("dave:pa:ss") */
    write_file(f->path, "{\"auths\":{\"reg.test\":{\"auth\":\"ZGF2ZTpwYTpzcw==\"}}}");
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_true(credentials_current(c.credentials, &cred));
    assert_string_equal(cred.username, "dave");
    assert_string_equal(cred.secret, "pa:ss");
    creds_release(&c);

    assert_int_equal(creds_resolve(&c, "FERRY_T", "other.test", f->path), 0);
    assert_true(credentials_current(c.credentials, &cred));
    assert_null(cred.username);
    creds_release(&c);

    /* A credential helper named for the registry: asked when the registry is. */
    write_file(f->path, "{\"credHelpers\":{\"reg.test\":\"ecr-login\"}}");
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    assert_false(credentials_current(c.credentials, &cred));
    struct credentials_info info;
    credentials_get_info(c.credentials, &info);
    assert_non_null(strstr(info.source, "docker-credential-ecr-login"));
    creds_release(&c);

    write_file(f->path, "{not json");
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), FERRY_EPARSE);
    assert_null(c.credentials);
    creds_release(&c);

    /* Flags and the environment give a static source named after them. */
    c.text = xstrdup("erin:pw");
    assert_int_equal(creds_resolve(&c, "FERRY_T", "reg.test", f->path), 0);
    credentials_get_info(c.credentials, &info);
    assert_string_equal(info.source, "--creds");
    creds_release(&c);
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arg_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dockerconfig, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
