#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"

#define EMPTY_SHA256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_SHA256   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* FIPS 180-2 appendix B.3: one million 'a'. */
#define MILLION_A_SHA256 "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static void test_known_vectors(void **state)
{
    (void)state;
    char out[DIGEST_MAX];

    digest_of("", 0, out);
    assert_string_equal(out, EMPTY_SHA256);
    digest_of("abc", 3, out);
    assert_string_equal(out, ABC_SHA256);
    assert_true(digest_valid(out));
    assert_int_equal(strlen(out), DIGEST_MAX - 1);
}

static void test_streaming(void **state)
{
    (void)state;
    struct digest_ctx ctx;
    char out[DIGEST_MAX];

    /* Pieces of any size give the digest of the whole. */
    digest_init(&ctx);
    digest_update(&ctx, "a", 1);
    digest_update(&ctx, "", 0);
    digest_update(&ctx, "bc", 2);
    digest_final(&ctx, out);
    digest_release(&ctx);
    assert_string_equal(out, ABC_SHA256);

    char *chunk = malloc(1000);
    memset(chunk, 'a', 1000);
    digest_init(&ctx);
    for (int i = 0; i < 1000; i++)
        digest_update(&ctx, chunk, 1000);
    digest_final(&ctx, out);
    digest_release(&ctx);
    assert_string_equal(out, MILLION_A_SHA256);
    free(chunk);

    /* Nothing fed at all. */
    digest_init(&ctx);
    digest_final(&ctx, out);
    digest_release(&ctx);
    assert_string_equal(out, EMPTY_SHA256);

    /* Releasing twice is safe. */
    digest_release(&ctx);
    assert_null(ctx.md);
}

static void test_valid(void **state)
{
    (void)state;
    const char *hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char buf[160];

    assert_true(digest_valid(EMPTY_SHA256));
    snprintf(buf, sizeof(buf), "sha256:%s", hex64);
    assert_true(digest_valid(buf));

    assert_false(digest_valid(NULL));
    assert_false(digest_valid(""));
    assert_false(digest_valid("sha256:"));
    assert_false(digest_valid("sha256"));
    assert_false(digest_valid(hex64));
    /* 63 and 65 digits. */
    snprintf(buf, sizeof(buf), "sha256:%.63s", hex64);
    assert_false(digest_valid(buf));
    snprintf(buf, sizeof(buf), "sha256:%s0", hex64);
    assert_false(digest_valid(buf));
    /* Uppercase hex, a non-hex letter, the wrong algorithm or its case. */
    assert_false(
        digest_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    assert_false(
        digest_valid("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(
        digest_valid("SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    snprintf(buf, sizeof(buf), "sha512:%s%s", hex64, hex64);
    assert_false(digest_valid(buf));
    /* Surrounding whitespace or separators. */
    snprintf(buf, sizeof(buf), " sha256:%s", hex64);
    assert_false(digest_valid(buf));
    snprintf(buf, sizeof(buf), "sha256:%s\n", hex64);
    assert_false(digest_valid(buf));
    snprintf(buf, sizeof(buf), "sha256: %.63s", hex64);
    assert_false(digest_valid(buf));
    snprintf(buf, sizeof(buf), "sha256::%.63s", hex64);
    assert_false(digest_valid(buf));
    /* A very long run of hex digits stops at the 65th. */
    char *longhex = malloc(100007);
    memcpy(longhex, "sha256:", 7);
    memset(longhex + 7, 'a', 100000);
    longhex[100006] = '\0';
    assert_false(digest_valid(longhex));
    free(longhex);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
