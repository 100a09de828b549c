#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "registry/httpparse.h"

static void assert_resolves(const char *base, const char *ref, const char *want)
{
    char *got = httpparse_url_resolve(base, ref);
    if (want == NULL) {
        if (got != NULL)
            fail_msg("%s + %s: got %s, want NULL", base, ref, got);
        return;
    }
    if (got == NULL)
        fail_msg("%s + %s: got NULL, want %s", base, ref, want);
    if (strcmp(got, want) != 0)
        fail_msg("%s + %s: got %s, want %s", base, ref, got, want);
    free(got);
}

/* RFC 3986 §5.4, without the fragments that HTTP never sends. */
static void test_resolve_rfc3986(void **state)
{
    (void)state;
    const char *base = "http://a/b/c/d;p?q";
    static const char *const cases[][2] = {
        {"g", "http://a/b/c/g"},
        {"./g", "http://a/b/c/g"},
        {"g/", "http://a/b/c/g/"},
        {"/g", "http://a/g"},
        {"//g", "http://g"},
        {"?y", "http://a/b/c/d;p?y"},
        {"g?y", "http://a/b/c/g?y"},
        {"#s", "http://a/b/c/d;p?q"},
        {"g#s", "http://a/b/c/g"},
        {"g?y#s", "http://a/b/c/g?y"},
        {";x", "http://a/b/c/;x"},
        {"g;x", "http://a/b/c/g;x"},
        {"g;x?y#s", "http://a/b/c/g;x?y"},
        {".", "http://a/b/c/"},
        {"./", "http://a/b/c/"},
        {"..", "http://a/b/"},
        {"../", "http://a/b/"},
        {"../g", "http://a/b/g"},
        {"../..", "http://a/"},
        {"../../", "http://a/"},
        {"../../g", "http://a/g"},
        {"../../../g", "http://a/g"},
        {"../../../../g", "http://a/g"},
        {"/./g", "http://a/g"},
        {"/../g", "http://a/g"},
        {"g.", "http://a/b/c/g."},
        {".g", "http://a/b/c/.g"},
        {"g..", "http://a/b/c/g.."},
        {"..g", "http://a/b/c/..g"},
        {"./../g", "http://a/b/g"},
        {"./g/.", "http://a/b/c/g/"},
        {"g/./h", "http://a/b/c/g/h"},
        {"g/../h", "http://a/b/c/h"},
        {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
        {"g;x=1/../y", "http://a/b/c/y"},
        {"g?y/./x", "http://a/b/c/g?y/./x"},
        {"g#s/../x", "http://a/b/c/g"},
        {"g:h", NULL},    /* an absolute URI, but not http(s) */
        {"http:g", NULL}, /* http without a host */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_resolves(base, cases[i][0], cases[i][1]);
}

static void test_resolve_registry(void **state)
{
    (void)state;
    /* What registries put in Location. */
    assert_resolves("https://reg:5000/v2/foo/blobs/uploads/",
                    "/v2/foo/blobs/uploads/uuid?_state=abc%3D",
                    "https://reg:5000/v2/foo/blobs/uploads/uuid?_state=abc%3D");
    assert_resolves("https://reg/v2/foo/blobs/sha256:aa",
                    "https://s3.example.com/bucket/x?X-Amz-Signature=abc&X-Amz-Date=1#frag",
                    "https://s3.example.com/bucket/x?X-Amz-Signature=abc&X-Amz-Date=1");
    /* An absolute URL is kept even with dot segments: a signature may cover them. */
    assert_resolves("https://reg/v2/", "https://h/a/../b?x=1", "https://h/a/../b?x=1");
    assert_resolves("https://reg/v2/", "HTTP://h/x", "HTTP://h/x");
    assert_resolves("HTTPS://Host/x", "y", "HTTPS://Host/y");
    assert_resolves("http://a", "g", "http://a/g");
    assert_resolves("http://a", "?q", "http://a?q");
    assert_resolves("https://reg/v2/x?old=1", "?new=2", "https://reg/v2/x?new=2");
    assert_resolves("https://reg/v2/x?old=1", "/v2/y", "https://reg/v2/y");
    assert_resolves("https://user@reg:443/a/b", "//cdn.example/x/../y", "https://cdn.example/y");
}

static void test_resolve_invalid(void **state)
{
    (void)state;
    assert_resolves("http://a/b", "", NULL);
    assert_resolves("", "g", NULL);
    assert_resolves("ftp://a/b", "g", NULL);
    assert_resolves("/relative/base", "g", NULL);
    assert_resolves("http:///x", "g", NULL);
    assert_resolves("http:/x", "g", NULL);
    assert_resolves("http://a/b", "ftp://x/y", NULL);
    assert_resolves("http://a/b", "javascript:alert(1)", NULL);
    assert_resolves("http://a/b", "file:///etc/passwd", NULL);
    assert_resolves("http://a/b", "https://", NULL);
    assert_resolves("http://a/b", "//", NULL);
    assert_resolves("http://a/b", "g h", NULL);
    assert_resolves("http://a/b", "g\r\nX-Injected: y", NULL);
    assert_resolves("http://a/b", "g\t", NULL);
    assert_resolves("http://a/b c", "g", NULL);
    assert_resolves("http://a/b", "caf\xc3\xa9", NULL);
    assert_resolves("http://a/b", "1abc:foo", NULL);
    assert_resolves("http://a/b", ":foo", NULL);
    assert_null(httpparse_url_resolve(NULL, "g"));
    assert_null(httpparse_url_resolve("http://a/", NULL));

    /* Over the cap, as input and as output. */
    char *long_ref = malloc(HTTPPARSE_MAX_URL + 2);
    memset(long_ref, 'x', HTTPPARSE_MAX_URL + 1);
    long_ref[HTTPPARSE_MAX_URL + 1] = '\0';
    assert_resolves("http://a/", long_ref, NULL);
    assert_resolves(long_ref, "g", NULL);
    long_ref[HTTPPARSE_MAX_URL - 9] = '\0';
    char *out = httpparse_url_resolve("http://a/", long_ref);
    assert_non_null(out);
    assert_int_equal(strlen(out), HTTPPARSE_MAX_URL);
    free(out);
    long_ref[HTTPPARSE_MAX_URL - 9] = 'x';
    long_ref[HTTPPARSE_MAX_URL - 8] = '\0';
    assert_resolves("http://a/", long_ref, NULL);
    free(long_ref);
}

static void assert_next(const char *header, const char *base, const char *want)
{
    char *got = httpparse_link_next(header, base);
    if (want == NULL) {
        if (got != NULL)
            fail_msg("%s: got %s, want NULL", header, got);
        return;
    }
    if (got == NULL)
        fail_msg("%s: got NULL, want %s", header, want);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", header, got, want);
    free(got);
}

static void test_link_next(void **state)
{
    (void)state;
    const char *base = "https://reg/v2/_catalog?n=2";
    assert_next("</v2/_catalog?last=b&n=2>; rel=\"next\"", base,
                "https://reg/v2/_catalog?last=b&n=2");
    assert_next("</v2/_catalog?last=b&n=2>; rel=next", base, "https://reg/v2/_catalog?last=b&n=2");
    assert_next("<https://a/p1>; rel=\"prev\", <https://a/p3>; rel=\"next\"", base, "https://a/p3");
    assert_next("<p3>;rel=\"prev next\"", base, "https://reg/v2/p3");
    assert_next("<p3> ; REL = \"Next\"", base, "https://reg/v2/p3");
    assert_next("<a,b;c>; title=\"x, y; z\"; rel=next", base, "https://reg/v2/a,b;c");
    assert_next("<a>; title*=UTF-8'de'n%c3%a4chstes; rel=\"next\"; type=\"text/html\"", base,
                "https://reg/v2/a");
    assert_next("<a>; rel=next, <b>; rel=next", base, "https://reg/v2/a");
    assert_next("<a>; crossorigin; rel=next", base, "https://reg/v2/a");
    assert_next(" , <a>; rel=next ,", base, "https://reg/v2/a");
    assert_next("<a>; rel=\"n\\ext\"", base, "https://reg/v2/a");
}

static void test_link_no_next(void **state)
{
    (void)state;
    const char *base = "https://reg/v2/_catalog";
    static const char *const headers[] = {
        "",
        "<a>; rel=\"prev\"",
        "<a>; rel=\"nextpage\"",
        "<a>; rel=prev; rel=next", /* only the first rel counts */
        "<a>",
        "</x>; rel=\"next",
        "/x; rel=next",
        "</x rel=next",
        "</x>; rel=\"next\" garbage",
        "</x>; ; rel=next",
        "</x>; rel=",
        "</x>; rel=next\r\nX-Injected: 1",
        "</x>; rel=next, junk",
        "<>; rel=next",
        "<ftp://x/y>; rel=next",
        "<a b>; rel=next",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        assert_next(headers[i], base, NULL);
    assert_null(httpparse_link_next(NULL, base));
    assert_null(httpparse_link_next("<a>; rel=next", NULL));
    assert_null(httpparse_link_next("<a>; rel=next", "not a url"));

    /* A header over the cap is refused even when it starts well. */
    size_t len = HTTPPARSE_MAX_URL + 1;
    char *big = malloc(len + 1);
    memset(big, ' ', len);
    memcpy(big, "<a>; rel=next", 13);
    big[len] = '\0';
    assert_null(httpparse_link_next(big, base));
    big[len - 1] = '\0';
    assert_next(big, base, "https://reg/v2/a");
    free(big);
}

static void test_range_end(void **state)
{
    (void)state;
    uint64_t next = 0;
    assert_int_equal(httpparse_range_end("0-1234", &next), 0);
    assert_int_equal(next, 1235);
    assert_int_equal(httpparse_range_end("bytes=0-1234", &next), 0);
    assert_int_equal(next, 1235);
    assert_int_equal(httpparse_range_end("Bytes=0-5", &next), 0);
    assert_int_equal(next, 6);
    /* The ambiguous answer for zero or one byte: see the header. */
    assert_int_equal(httpparse_range_end("0-0", &next), 0);
    assert_int_equal(next, 1);
    assert_int_equal(httpparse_range_end("0-18446744073709551614", &next), 0);
    assert_true(next == UINT64_MAX);

    static const char *const bad[] = {
        "0-18446744073709551615",
        "0-99999999999999999999999",
        "1-5",
        "-5",
        "0--5",
        "0-+5",
        "0-5 ",
        " 0-5",
        "0-5x",
        "05",
        "0",
        "",
        "0-",
        "bytes=",
        "bytes 0-5",
        "0-5,7-9",
        "0 - 5",
        "+0-5",
        "bytes=1-2",
        "0x0-0x5",
        "18446744073709551616-5",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        next = 42;
        if (httpparse_range_end(bad[i], &next) != FERRY_EPARSE)
            fail_msg("\"%s\" should not parse", bad[i]);
        assert_int_equal(next, 42);
    }
    assert_int_equal(httpparse_range_end(NULL, &next), FERRY_EINVAL);
    assert_int_equal(httpparse_range_end("0-1", NULL), FERRY_EINVAL);
}

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define RFC_EXAMPLE_TIME 784111777

static void test_retry_after(void **state)
{
    (void)state;
    uint64_t delay = 0;

    assert_int_equal(httpparse_retry_after("120", 0, &delay), 0);
    assert_int_equal(delay, 120000);
    assert_int_equal(httpparse_retry_after("0", 0, &delay), 0);
    assert_int_equal(delay, 0);
    assert_int_equal(httpparse_retry_after(" 5\t", 0, &delay), 0);
    assert_int_equal(delay, 5000);
    assert_int_equal(httpparse_retry_after("99999999999999999999999", 0, &delay), 0);
    assert_true(delay == UINT64_MAX);
    assert_int_equal(httpparse_retry_after("18446744073709552", 0, &delay), 0);
    assert_true(delay == UINT64_MAX);

    assert_int_equal(
        httpparse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_TIME - 10, &delay), 0);
    assert_int_equal(delay, 10000);
    assert_int_equal(
        httpparse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_TIME + 10, &delay), 0);
    assert_int_equal(delay, 0);
    assert_int_equal(
        httpparse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_TIME, &delay), 0);
    assert_int_equal(delay, 0);
    assert_int_equal(
        httpparse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_TIME - 10, &delay), 0);
    assert_int_equal(delay, 10000);
    assert_int_equal(
        httpparse_retry_after("Sun Nov  6 08:49:37 1994", RFC_EXAMPLE_TIME - 10, &delay), 0);
    assert_int_equal(delay, 10000);
    assert_int_equal(httpparse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800 - 1, &delay),
                     0);
    assert_int_equal(delay, 1000);
    assert_int_equal(
        httpparse_retry_after("Sat, 01 Jan 2000 00:00:00 GMT", 946684800 - 3600, &delay), 0);
    assert_int_equal(delay, 3600000);
    assert_int_equal(httpparse_retry_after("Sun, 31 Dec 1899 23:59:60 GMT", 0, &delay), 0);
    assert_int_equal(delay, 0);
    /* A two-digit year far ahead of now belongs to the last century. */
    assert_int_equal(
        httpparse_retry_after("Wednesday, 01-Jan-75 00:00:00 GMT", 1704067200 /* 2024 */, &delay),
        0);
    assert_int_equal(delay, 0);
    /* ...but one less than 50 years ahead stays in this one. */
    assert_int_equal(
        httpparse_retry_after("Tuesday, 01-Jan-69 00:00:00 GMT", 1704067200 /* 2024 */, &delay), 0);
    assert_int_equal(delay, (uint64_t)(3124224000 - 1704067200) * 1000);
    assert_int_equal(httpparse_retry_after("Friday, 01-Jan-27 00:00:00 GMT",
                                           1798761600 - 60 /* 2026-12-31 23:59 */, &delay),
                     0);
    assert_int_equal(delay, 60000);

    /* Extreme clocks do not overflow. */
    assert_int_equal(httpparse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", INT64_MIN, &delay), 0);
    assert_true(delay == UINT64_MAX);
    assert_int_equal(httpparse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", INT64_MAX, &delay), 0);
    assert_int_equal(delay, 0);
    assert_int_equal(httpparse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", INT64_MAX, &delay), 0);
    assert_int_equal(httpparse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", INT64_MIN, &delay), 0);
}

static void test_retry_after_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "soon",
        "-5",
        "+5",
        "1.5",
        "5s",
        "5 5",
        "Fri, 29 Feb 2023 00:00:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT junk",
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    };
    uint64_t delay = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (httpparse_retry_after(bad[i], RFC_EXAMPLE_TIME, &delay) != FERRY_EPARSE)
            fail_msg("\"%s\" should not parse", bad[i]);
        assert_int_equal(delay, 42);
    }
    char long_value[300];
    memset(long_value, '1', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    assert_int_equal(httpparse_retry_after(long_value, 0, &delay), FERRY_EPARSE);
    assert_int_equal(httpparse_retry_after(NULL, 0, &delay), FERRY_EINVAL);
    assert_int_equal(httpparse_retry_after("5", 0, NULL), FERRY_EINVAL);
}

static void assert_header(const char *line, const char *name, const char *want)
{
    const char *value = NULL;
    size_t value_len = 0;
    bool match = httpparse_header_is(line, strlen(line), name, &value, &value_len);
    if (want == NULL) {
        assert_false(match);
        assert_null(value);
        assert_int_equal(value_len, 0);
        return;
    }
    assert_true(match);
    assert_int_equal(value_len, strlen(want));
    assert_memory_equal(value, want, value_len);
    assert_true(value >= line && value + value_len <= line + strlen(line));
}

static void test_header_is(void **state)
{
    (void)state;
    assert_header("Location: /v2/x\r\n", "location", "/v2/x");
    assert_header("LOCATION:\t /v2/x \r\n", "Location", "/v2/x");
    assert_header("docker-content-digest: sha256:abc\r\n", "Docker-Content-Digest", "sha256:abc");
    assert_header("Range: 0-5\n", "Range", "0-5");
    assert_header("X-Empty:\r\n", "X-Empty", "");
    assert_header("X-Empty:   \r\n", "X-Empty", "");
    assert_header("X-Colon: a: b\r\n", "X-Colon", "a: b");
    assert_header("Content-Length: 0\r\n", "Content-Type", NULL);
    assert_header("Location : x\r\n", "Location", NULL);
    assert_header(" Location: x\r\n", "Location", NULL);
    assert_header("Locations: x\r\n", "Location", NULL);
    assert_header("Locatio: x\r\n", "Location", NULL);
    assert_header("HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK", NULL);
    assert_header("\r\n", "Location", NULL);
    assert_header(": x\r\n", "", NULL);
    assert_header("", "Location", NULL);

    /* libcurl's buffer is not NUL-terminated; only `len` bytes count. */
    const char raw[] = {'L', 'o', 'c', 'a', 't',  'i',  'o', 'n', ':',
                        ' ', 'a', 'b', 'c', '\r', '\n', 'X', 'X', 'X'};
    const char *value = NULL;
    size_t value_len = 0;
    assert_true(httpparse_header_is(raw, 15, "location", &value, &value_len));
    assert_int_equal(value_len, 3);
    assert_memory_equal(value, "abc", 3);
    /* The colon lies beyond `len`. */
    assert_false(httpparse_header_is(raw, 8, "location", &value, &value_len));
    assert_false(httpparse_header_is(raw, 0, "location", &value, &value_len));

    assert_true(httpparse_header_is("A: b", 4, "a", NULL, NULL));
    assert_false(httpparse_header_is(NULL, 4, "a", NULL, NULL));
    assert_false(httpparse_header_is("A: b", 4, NULL, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_rfc3986), cmocka_unit_test(test_resolve_registry),
        cmocka_unit_test(test_resolve_invalid), cmocka_unit_test(test_link_next),
        cmocka_unit_test(test_link_no_next),    cmocka_unit_test(test_range_end),
        cmocka_unit_test(test_retry_after),     cmocka_unit_test(test_retry_after_bad),
        cmocka_unit_test(test_header_is),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
