#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "registry/regerror.h"

/* One line: no byte below 0x20, no DEL. */
static void assert_one_line(const char *s)
{
    assert_non_null(s);
    for (const char *c = s; *c != '\0'; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
}

static int parse_str(const char *body, char **code, char **message)
{
    return regerror_parse(body, strlen(body), code, message);
}

static void test_parse(void **state)
{
    (void)state;
    char *code = NULL, *message = NULL;
    const char *body = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                       "unknown\",\"detail\":{\"Tag\":\"latest\"}}]}\n";
    assert_int_equal(parse_str(body, &code, &message), 0);
    assert_string_equal(code, "MANIFEST_UNKNOWN");
    assert_string_equal(message, "manifest unknown");
    free(code);
    free(message);

    /* No message, or one that is not a string: "". */
    assert_int_equal(parse_str(" {\"errors\":[{\"code\":\"DENIED\"}]} ", &code, &message), 0);
    assert_string_equal(code, "DENIED");
    assert_string_equal(message, "");
    free(code);
    free(message);
    assert_int_equal(
        parse_str("{\"errors\":[{\"code\":\"DENIED\",\"message\":42}]}", &code, &message), 0);
    assert_string_equal(message, "");
    free(code);
    free(message);

    /* Either result may be skipped. */
    assert_int_equal(parse_str("{\"errors\":[{\"code\":\"X\",\"message\":\"m\"}]}", NULL, NULL), 0);
    assert_int_equal(parse_str("{\"errors\":[{\"code\":\"X\",\"message\":\"m\"}]}", &code, NULL),
                     0);
    assert_string_equal(code, "X");
    free(code);

    /* The body need not be NUL-terminated: only `len` bytes count. */
    const char *padded = "{\"errors\":[{\"code\":\"X\"}]}GARBAGE";
    assert_int_equal(regerror_parse(padded, strlen(padded) - 7, &code, &message), 0);
    assert_string_equal(code, "X");
    free(code);
    free(message);
}

static void test_sanitize(void **state)
{
    (void)state;
    char *code = NULL, *message = NULL;

    /* C0 controls, escape sequences, DEL, C1 controls and Unicode line separators. */
    assert_int_equal(
        parse_str("{\"errors\":[{\"code\":\"A\\nB\",\"message\":\"a\\nb\\tc\\u001b[31m\\r\\u007f"
                  "d\\u009be\\u2028f\\u2029g\"}]}",
                  &code, &message),
        0);
    assert_string_equal(code, "A B");
    assert_string_equal(message, "a b c [31m  d e f g");
    free(code);
    free(message);

    /* Valid UTF-8 stays, invalid bytes become '?'. */
    assert_int_equal(parse_str("{\"errors\":[{\"code\":\"X\",\"message\":\"caf\xc3\xa9 "
                               "\xff\xc0\xaf \xed\xa0\x80 \xf0\x9f\x98\x80\"}]}",
                               &code, &message),
                     0);
    assert_string_equal(message, "caf\xc3\xa9 ??? ??? \xf0\x9f\x98\x80");
    free(code);
    free(message);

    /* Long messages are cut at 300 bytes, never inside a character. */
    char body[4096];
    char text[1001];
    memset(text, 'm', 1000);
    text[1000] = '\0';
    snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\"}]}", text, text);
    assert_int_equal(parse_str(body, &code, &message), 0);
    assert_int_equal(strlen(code), REGERROR_MAX_TEXT);
    assert_int_equal(strlen(message), REGERROR_MAX_TEXT);
    free(code);
    free(message);
    memset(text, 'a', 299);
    strcpy(text + 299, "\xc3\xa9");
    snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"X\",\"message\":\"%s\"}]}", text);
    assert_int_equal(parse_str(body, &code, &message), 0);
    assert_int_equal(strlen(message), 299);
    free(code);
    free(message);
}

static void test_not_registry_json(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "<html><body>502 Bad Gateway</body></html>",
        "not found",
        "{}",
        "[]",
        "[1]",
        "null",
        "\"errors\"",
        "{\"errors\":[]}",
        "{\"errors\":\"x\"}",
        "{\"errors\":[\"x\"]}",
        "{\"errors\":[{\"message\":\"x\"}]}",
        "{\"errors\":[{\"code\":\"\"}]}",
        "{\"errors\":[{\"code\":42}]}",
        "{\"errors\":[{\"code\":\"X\"}]} trailing",
        "{\"errors\":[{\"code\":\"X\"}]",
        "{\"errors\":[{\"code\":\"X\"}]}{}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *code = (char *)1, *message = (char *)1;
        if (parse_str(bodies[i], &code, &message) != FERRY_EPARSE)
            fail_msg("case %zu should not parse", i);
        assert_null(code);
        assert_null(message);
        assert_null(regerror_summary(bodies[i], strlen(bodies[i])));
    }

    char *code = (char *)1, *message = (char *)1;
    assert_int_equal(regerror_parse("", 0, &code, &message), FERRY_EPARSE);
    assert_null(code);
    assert_null(message);
    assert_int_equal(regerror_parse(NULL, 10, &code, &message), FERRY_EPARSE);
    assert_null(regerror_summary(NULL, 0));

    /* A NUL inside the body must not hide what follows it. */
    const char with_nul[] = "{\"errors\":[{\"code\":\"X\"}]}\0junk";
    assert_int_equal(regerror_parse(with_nul, sizeof(with_nul) - 1, &code, &message), FERRY_EPARSE);

    /* Deeply nested garbage is refused, not recursed into without end. */
    size_t depth = 30000;
    char *deep = malloc(depth * 2);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    assert_int_equal(regerror_parse(deep, depth * 2, &code, &message), FERRY_EPARSE);
    free(deep);
}

static void test_size_cap(void **state)
{
    (void)state;
    const char *json = "{\"errors\":[{\"code\":\"X\",\"message\":\"m\"}]}";
    char *body = malloc(REGERROR_MAX_BODY + 1);
    char *code = NULL, *message = NULL;

    memset(body, ' ', REGERROR_MAX_BODY + 1);
    memcpy(body, json, strlen(json));
    assert_int_equal(regerror_parse(body, REGERROR_MAX_BODY, &code, &message), 0);
    assert_string_equal(code, "X");
    free(code);
    free(message);
    assert_int_equal(regerror_parse(body, REGERROR_MAX_BODY + 1, &code, &message), FERRY_ETOOBIG);
    assert_null(code);
    assert_null(message);
    assert_null(regerror_summary(body, REGERROR_MAX_BODY + 1));
    free(body);
}

static void test_summary(void **state)
{
    (void)state;
    const char *one = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                      "unknown\"}]}";
    char *s = regerror_summary(one, strlen(one));
    assert_string_equal(s, "MANIFEST_UNKNOWN: manifest unknown");
    free(s);

    const char *three = "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"no\\npush\"},"
                        "{\"code\":\"UNAUTHORIZED\"},{\"code\":\"OTHER\"}]}";
    s = regerror_summary(three, strlen(three));
    assert_string_equal(s, "DENIED: no push (and 2 more)");
    assert_one_line(s);
    free(s);

    const char *bare = "{\"errors\":[{\"code\":\"UNSUPPORTED\"},{\"code\":\"X\"}]}";
    s = regerror_summary(bare, strlen(bare));
    assert_string_equal(s, "UNSUPPORTED (and 1 more)");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_not_registry_json),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
