#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/reference.h"

#define HEX64  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST "sha256:" HEX64

/* A one-line lowercase message, as every err of Ferry is. */
static void assert_zeroed(const struct reference *ref)
{
    assert_null(ref->registry);
    assert_null(ref->repository);
    assert_null(ref->tag);
    assert_null(ref->digest);
}

struct good_case {
    const char *text;
    const char *registry;
    const char *repository;
    const char *tag;
    const char *digest;
    const char *formatted;
};

static const struct good_case good_cases[] = {
    {"alpine", "docker.io", "library/alpine", NULL, NULL, "docker.io/library/alpine"},
    {"alpine:3.19", "docker.io", "library/alpine", "3.19", NULL, "docker.io/library/alpine:3.19"},
    {"user/app:v1", "docker.io", "user/app", "v1", NULL, "docker.io/user/app:v1"},
    {"docker.io/alpine", "docker.io", "library/alpine", NULL, NULL, "docker.io/library/alpine"},
    {"index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", NULL,
     "docker.io/library/alpine:edge"},
    {"localhost/foo", "localhost", "foo", NULL, NULL, "localhost/foo"},
    {"localhost:5000/a/b/c:tag@" DIGEST, "localhost:5000", "a/b/c", "tag", DIGEST,
     "localhost:5000/a/b/c:tag@" DIGEST},
    {"registry.example.com/team/app@" DIGEST, "registry.example.com", "team/app", NULL, DIGEST,
     "registry.example.com/team/app@" DIGEST},
    {"[::1]:5000/app:1", "[::1]:5000", "app", "1", NULL, "[::1]:5000/app:1"},
    {"[fe80::1]/app", "[fe80::1]", "app", NULL, NULL, "[fe80::1]/app"},
    {"Example.COM:8443/a-b__c.d/e--f:Latest_1.0-x", "Example.COM:8443", "a-b__c.d/e--f",
     "Latest_1.0-x", NULL, "Example.COM:8443/a-b__c.d/e--f:Latest_1.0-x"},
    {"quay.io/x:_tag", "quay.io", "x", "_tag", NULL, "quay.io/x:_tag"},
    {"127.0.0.1:5000/x", "127.0.0.1:5000", "x", NULL, NULL, "127.0.0.1:5000/x"},
};

static void test_parse_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const struct good_case *c = &good_cases[i];
        struct reference ref;
        char *err = NULL;
        int rc = reference_parse(&ref, c->text, &err);
        if (rc != 0)
            fail_msg("%s: %s", c->text, err);
        assert_null(err);
        assert_string_equal(ref.registry, c->registry);
        assert_string_equal(ref.repository, c->repository);
        if (c->tag == NULL)
            assert_null(ref.tag);
        else
            assert_string_equal(ref.tag, c->tag);
        if (c->digest == NULL)
            assert_null(ref.digest);
        else
            assert_string_equal(ref.digest, c->digest);
        char *formatted = reference_format(&ref);
        assert_string_equal(formatted, c->formatted);

        /* What reference_format() writes parses back to the same reference. */
        struct reference again;
        assert_int_equal(reference_parse(&again, formatted, NULL), 0);
        assert_string_equal(again.registry, ref.registry);
        assert_string_equal(again.repository, ref.repository);
        reference_release(&again);
        free(formatted);
        reference_release(&ref);
        assert_zeroed(&ref);
    }
}

struct bad_case {
    const char *text;
    int rc;
    const char *needle; /* a word the message must contain, or NULL */
};

static const struct bad_case bad_cases[] = {
    {"", FERRY_EPARSE, "empty"},
    {"UPPER/app", FERRY_EPARSE, "lowercase"},
    {"example.com/App", FERRY_EPARSE, "lowercase"},
    {"example.com/a..b", FERRY_EPARSE, "'..'"},
    {"example.com/../etc", FERRY_EPARSE, "'..'"},
    {"example.com//a", FERRY_EPARSE, "empty path component"},
    {"example.com/a/", FERRY_EPARSE, "empty path component"},
    {"/a", FERRY_EPARSE, "empty path component"},
    {"example.com/", FERRY_EPARSE, "empty"},
    {"a b", FERRY_EPARSE, "whitespace"},
    {"a\n", FERRY_EPARSE, "control"},
    {"caf\xc3\xa9", FERRY_EPARSE, "non-ascii"},
    {"a:", FERRY_EPARSE, "tag"},
    {"a:-bad", FERRY_EPARSE, "tag"},
    {"a:.bad", FERRY_EPARSE, "tag"},
    {"a:b/c", FERRY_EPARSE, "registry"}, /* "a:b" looks like host:port */
    {"a/b:c/d", FERRY_EPARSE, "tag"},
    {"a@sha256:abc", FERRY_EPARSE, "digest"},
    {"a@sha512:" HEX64 HEX64, FERRY_EPARSE, "digest"},
    {"a@SHA256:" HEX64, FERRY_EPARSE, "digest"},
    {"a@" DIGEST "@" DIGEST, FERRY_EPARSE, "digest"},
    {"@" DIGEST, FERRY_EPARSE, "no repository"},
    {"example.com:99999/a", FERRY_EPARSE, "registry"},
    {"example.com:0/a", FERRY_EPARSE, "registry"},
    {"example.com:/a", FERRY_EPARSE, "registry"},
    {"exa_mple.com/a", FERRY_EPARSE, "registry"},
    {"-a.com/x", FERRY_EPARSE, "registry"},
    {"a..com/x", FERRY_EPARSE, "registry"},
    {"[::1/app", FERRY_EPARSE, "registry"},
    {"[zz::1]:5000/app", FERRY_EPARSE, "registry"},
    {"[1234]/app", FERRY_EPARSE, "registry"},
    {"[::1]x/app", FERRY_EPARSE, "registry"},
    {"a-/b", FERRY_EPARSE, "separators"},
    {"a___b", FERRY_EPARSE, "separators"},
    {"_a", FERRY_EPARSE, "separators"},
};

static void test_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct reference ref;
        char *err = NULL;
        memset(&ref, 0xa5, sizeof(ref));
        int rc = reference_parse(&ref, c->text, &err);
        if (rc != c->rc)
            fail_msg("%s: got %d (%s), want %d", c->text, rc, err ? err : "no message", c->rc);
        assert_zeroed(&ref);
        assert_message(err);
        if (c->needle != NULL && strstr(err, c->needle) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->text, err, c->needle);
        free(err);
        /* A NULL err is allowed. */
        assert_int_equal(reference_parse(&ref, c->text, NULL), c->rc);
        assert_zeroed(&ref);
    }
}

static void test_lengths(void **state)
{
    (void)state;
    struct reference ref;
    char *err = NULL;
    char *text = malloc(REFERENCE_MAX_TEXT + 2);

    /* Over 4096 bytes: refused before anything else, without quoting the text. */
    memset(text, 'a', REFERENCE_MAX_TEXT + 1);
    text[REFERENCE_MAX_TEXT + 1] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), FERRY_ETOOBIG);
    assert_message(err);
    assert_true(strlen(err) < 200);
    assert_zeroed(&ref);
    free(err);
    err = NULL;

    /* Exactly 4096 bytes is not over the text cap, but over the name cap. */
    text[REFERENCE_MAX_TEXT] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), FERRY_EPARSE);
    assert_message(err);
    free(err);
    err = NULL;

    /* A 255-byte name passes, 256 does not: "r.io/" is 5 bytes. */
    memcpy(text, "r.io/", 5);
    memset(text + 5, 'a', 250);
    text[255] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), 0);
    assert_int_equal(strlen(ref.repository), 250);
    reference_release(&ref);
    text[255] = 'a';
    text[256] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), FERRY_EPARSE);
    assert_message(err);
    assert_non_null(strstr(err, "255"));
    free(err);
    err = NULL;

    /* "docker.io/library/" (18 bytes) counts too. */
    memset(text, 'a', 237);
    text[237] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), 0);
    reference_release(&ref);
    memset(text, 'a', 238);
    text[238] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), FERRY_EPARSE);
    assert_message(err);
    free(err);
    err = NULL;

    /* Tags: 128 characters pass, 129 do not. */
    memcpy(text, "r.io/a:", 7);
    memset(text + 7, 't', 128);
    text[7 + 128] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), 0);
    assert_int_equal(strlen(ref.tag), 128);
    reference_release(&ref);
    text[7 + 128] = 't';
    text[7 + 129] = '\0';
    assert_int_equal(reference_parse(&ref, text, &err), FERRY_EPARSE);
    assert_message(err);
    free(err);
    free(text);
}

static void test_null_arguments(void **state)
{
    (void)state;
    struct reference ref;
    char *err = NULL;
    assert_int_equal(reference_parse(&ref, NULL, &err), FERRY_EINVAL);
    assert_zeroed(&ref);
    assert_message(err);
    free(err);
    err = NULL;
    assert_int_equal(reference_parse(NULL, "alpine", &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    assert_null(reference_format(NULL));
    memset(&ref, 0, sizeof(ref));
    assert_null(reference_format(&ref));
    reference_release(NULL);
    reference_release(&ref);
}

static void test_repository_valid(void **state)
{
    (void)state;
    char long_name[258];

    assert_true(reference_repository_valid("a"));
    assert_true(reference_repository_valid("a/b/c"));
    assert_true(reference_repository_valid("a__b"));
    assert_true(reference_repository_valid("a-----b"));
    assert_true(reference_repository_valid("a.b_c-d"));
    assert_true(reference_repository_valid("0/9"));
    assert_false(reference_repository_valid(NULL));
    assert_false(reference_repository_valid(""));
    assert_false(reference_repository_valid("a___b"));
    assert_false(reference_repository_valid("a..b"));
    assert_false(reference_repository_valid("a._b"));
    assert_false(reference_repository_valid("a_"));
    assert_false(reference_repository_valid("_a"));
    assert_false(reference_repository_valid("a/"));
    assert_false(reference_repository_valid("/a"));
    assert_false(reference_repository_valid("a//b"));
    assert_false(reference_repository_valid("A"));
    assert_false(reference_repository_valid("a:b"));
    assert_false(reference_repository_valid("a b"));
    memset(long_name, 'a', 255);
    long_name[255] = '\0';
    assert_true(reference_repository_valid(long_name));
    long_name[255] = 'a';
    long_name[256] = '\0';
    assert_false(reference_repository_valid(long_name));
}

static void test_tag_valid(void **state)
{
    (void)state;
    char tag[131];

    assert_true(reference_tag_valid("latest"));
    assert_true(reference_tag_valid("_x"));
    assert_true(reference_tag_valid("V1.2.3-rc_1"));
    assert_false(reference_tag_valid(NULL));
    assert_false(reference_tag_valid(""));
    assert_false(reference_tag_valid(".x"));
    assert_false(reference_tag_valid("-x"));
    assert_false(reference_tag_valid("a/b"));
    assert_false(reference_tag_valid("a:b"));
    assert_false(reference_tag_valid("a b"));
    memset(tag, 'x', 128);
    tag[128] = '\0';
    assert_true(reference_tag_valid(tag));
    tag[128] = 'x';
    tag[129] = '\0';
    assert_false(reference_tag_valid(tag));
}

/* Loopback is exactly localhost, 127.0.0.0/8 and ::1: plain HTTP and the
 * user's credentials must not go to a look-alike name. */
static void test_host_is_loopback(void **state)
{
    static const char *const yes[] = {
        "localhost",          "localhost:5000", "LocalHost:1", "127.0.0.1",  "127.0.0.1:5000",
        "127.255.255.254:80", "127.1.2.3",      "[::1]",       "[::1]:5000", "[0:0:0:0:0:0:0:1]:5",
    };
    static const char *const no[] = {
        "localhost.example.com",
        "localhost.example.com:5000",
        "localhostx",
        "127.example.com",
        "127.0.0.1.nip.io",
        "127.0.0.1.nip.io:5000",
        "128.0.0.1",
        "10.0.0.1:5000",
        "[::2]:5000",
        "::1",
        "[::1",
        "[::1]x",
        "",
        ":5000",
        "example.com",
        "127.0.0.1:5000:6",
        "[::ffff:127.0.0.1]:5000",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!reference_host_is_loopback(yes[i]))
            fail_msg("%s should be loopback", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (reference_host_is_loopback(no[i]))
            fail_msg("%s should not be loopback", no[i]);
    assert_false(reference_host_is_loopback(NULL));
}

static void test_referrers_tag(void **state)
{
    (void)state;
    const char *hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char digest[80], tag[80];
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    snprintf(tag, sizeof(tag), "sha256-%s", hex);
    char *t = reference_referrers_tag(digest);
    assert_string_equal(t, tag);
    assert_true(reference_is_referrers_tag(t));
    free(t);

    assert_false(reference_is_referrers_tag(NULL));
    assert_false(reference_is_referrers_tag("latest"));
    assert_false(reference_is_referrers_tag("sha256-"));
    tag[20] = 'A'; /* uppercase hex is not what the fallback writes */
    assert_false(reference_is_referrers_tag(tag));
    tag[20] = 'a';
    char longer[90];
    snprintf(longer, sizeof(longer), "%s0", tag);
    assert_false(reference_is_referrers_tag(longer));
    tag[strlen(tag) - 1] = '\0';
    assert_false(reference_is_referrers_tag(tag));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),       cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_lengths),          cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_repository_valid), cmocka_unit_test(test_tag_valid),
        cmocka_unit_test(test_host_is_loopback), cmocka_unit_test(test_referrers_tag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
