/*
 * common/secret and common/human: wiping secrets, comparing tokens, and
 * sizes as people read them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/human.h"
#include "common/secret.h"
#include "common/xalloc.h"

static void test_wipe(void **state)
{
    (void)state;
    char buf[16];
    memcpy(buf, "hunter2-hunter2", 16);
    secret_wipe(buf, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(buf[i], 0);
    assert_memory_equal(buf + 7, "-hunter2", 9);

    char *s = xstrdup("s3cr3t");
    secret_wipe_str(s);
    assert_memory_equal(s, "\0\0\0\0\0\0\0", 7);
    free(s);

    secret_wipe_str(NULL);
    secret_wipe(NULL, 4);
    secret_free(NULL);
    secret_free(xstrdup("token")); /* ASan: freed once, nothing leaks */
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(secret_equal("abc", "abc"));
    assert_false(secret_equal("abd", "abc"));
    assert_false(secret_equal("ab", "abc"));
    assert_false(secret_equal("abcd", "abc"));
    assert_false(secret_equal("", "abc"));
    assert_true(secret_equal("", ""));
}

static void test_human_bytes(void **state)
{
    (void)state;
    char out[32];
    human_bytes(out, sizeof(out), 0);
    assert_string_equal(out, "0 B");
    human_bytes(out, sizeof(out), 1023);
    assert_string_equal(out, "1023 B");
    human_bytes(out, sizeof(out), 1536);
    assert_string_equal(out, "1.5 KiB");
    human_bytes(out, sizeof(out), 48.2 * 1024 * 1024);
    assert_string_equal(out, "48.2 MiB");
    human_bytes(out, sizeof(out), 3.0 * 1024 * 1024 * 1024 * 1024 * 1024);
    assert_string_equal(out, "3072.0 TiB");
    human_bytes(out, 4, 1536); /* truncated, terminated */
    assert_string_equal(out, "1.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_human_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
