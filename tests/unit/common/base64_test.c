#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/xalloc.h"

static void expect_round_trip(const char *text, const char *encoded)
{
    char *enc = base64_encode(text, strlen(text));
    assert_string_equal(enc, encoded);
    char *dec = base64_decode_text(enc, strlen(enc), false);
    assert_non_null(dec);
    assert_string_equal(dec, text);
    free(enc);
    free(dec);
}

static void test_round_trip(void **state)
{
    (void)state;
    /* RFC 4648's test vectors. */
    expect_round_trip("", "");
    expect_round_trip("f", "Zg==");
    expect_round_trip("fo", "Zm8=");
    expect_round_trip("foo", "Zm9v");
    expect_round_trip("foob", "Zm9vYg==");
    expect_round_trip("fooba", "Zm9vYmE=");
    expect_round_trip("foobar", "Zm9vYmFy");
    expect_round_trip("ferry:s3cret", "ZmVycnk6czNjcmV0");
}

static void test_decode(void **state)
{
    (void)state;
    char *s = base64_decode_text("Zm9vYg", 6, false); /* unpadded */
    assert_string_equal(s, "foob");
    free(s);
    /* Two question marks and a ">": Pz8+ in the standard alphabet, Pz8- in the URL one. */
    assert_null(base64_decode_text("Pz8-", 4, false));
    s = base64_decode_text("Pz8-", 4, true);
    assert_string_equal(s, "?"
                           "?>");
    free(s);
    s = base64_decode_text("Pz8+", 4, true);
    assert_string_equal(s, "?"
                           "?>");
    free(s);
    assert_null(base64_decode_text("Zm9vY", 5, false));    /* impossible length */
    assert_null(base64_decode_text("Zg=", 3, false));      /* bad padding */
    assert_null(base64_decode_text("Zm 9v", 5, false));    /* a stray character */
    assert_null(base64_decode_text("AA==", 4, false));     /* a NUL byte: not text */
    assert_null(base64_decode_text("Zm9v====", 8, false)); /* too much padding */
}

static void test_url(void **state)
{
    (void)state;
    const struct {
        const char *text, *encoded;
    } cases[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"?"
         "?>",
         "Pz8-"},
        {"library/nginx.1", "bGlicmFyeS9uZ2lueC4x"},
        {"\xff\xfe", "__4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *enc = base64url_encode(cases[i].text, strlen(cases[i].text));
        assert_string_equal(enc, cases[i].encoded);
        /* No '.', '+', '/' or '=': safe as one token of a NATS subject. */
        assert_null(strpbrk(enc, ".+/="));
        char *dec = base64_decode_text(enc, strlen(enc), true);
        assert_non_null(dec);
        assert_string_equal(dec, cases[i].text);
        free(enc);
        free(dec);
    }
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
