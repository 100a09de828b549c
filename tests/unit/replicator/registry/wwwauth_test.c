#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "registry/wwwauth.h"

static void assert_zeroed(const struct wwwauth *w)
{
    assert_null(w->scheme);
    assert_null(w->realm);
    assert_null(w->service);
    assert_null(w->scope);
    assert_null(w->error);
}

static void assert_opt_string(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got, want);
}

struct good_case {
    const char *header;
    const char *scheme;
    const char *realm;
    const char *service;
    const char *scope;
    const char *error;
};

static const struct good_case good_cases[] = {
    {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
     "scope=\"repository:library/alpine:pull\"",
     "bearer", "https://auth.docker.io/token", "registry.docker.io",
     "repository:library/alpine:pull", NULL},
    {"BEARER Realm=\"x\", SERVICE=\"y\"", "bearer", "x", "y", NULL, NULL},
    {"Basic realm=\"Registry Realm\"", "basic", "Registry Realm", NULL, NULL, NULL},
    {"Basic realm=\"b\", Bearer realm=\"x\",service=\"s\"", "bearer", "x", "s", NULL, NULL},
    {"Negotiate, Basic realm=\"r\"", "basic", "r", NULL, NULL, NULL},
    {"Negotiate abc==, NTLM", "negotiate", NULL, NULL, NULL, NULL},
    {"Newauth realm=\"apps\", type=1, title=\"Login to \\\"apps\\\"\", Basic realm=\"simple\"",
     "basic", "simple", NULL, NULL, NULL},
    {"Bearer realm=\"a\\\"b\\\\c\"", "bearer", "a\"b\\c", NULL, NULL, NULL},
    {"Bearer realm=token-value", "bearer", "token-value", NULL, NULL, NULL},
    {"Bearer realm=\"x\",error=\"insufficient_scope\",scope=\"repository:a:pull "
     "repository:b:pull,push\"",
     "bearer", "x", NULL, "repository:a:pull repository:b:pull,push", "insufficient_scope"},
    {"Bearer realm = \"x\" ,\tservice = \"y\"", "bearer", "x", "y", NULL, NULL},
    {", Bearer realm=\"x\",, service=\"y\",", "bearer", "x", "y", NULL, NULL},
    {"Bearer realm=\"first\", realm=\"second\"", "bearer", "first", NULL, NULL, NULL},
    {"Basic dXNlcjpwYXNz==", "basic", NULL, NULL, NULL, NULL},
    {"Bearer", "bearer", NULL, NULL, NULL, NULL},
    /* Without a value this is a token68, not a parameter. */
    {"Bearer realm=", "bearer", NULL, NULL, NULL, NULL},
    {"Bearer realm=\"\"", "bearer", "", NULL, NULL, NULL},
    {"Bearer realm=\"x\", Basic realm=\"y\", Bearer realm=\"z\"", "bearer", "x", NULL, NULL, NULL},
    {"Bearer realm=\"caf\xc3\xa9\"", "bearer", "caf\xc3\xa9", NULL, NULL, NULL},
};

static void test_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const struct good_case *c = &good_cases[i];
        struct wwwauth w;
        char *err = NULL;
        int rc = wwwauth_parse(&w, c->header, &err);
        if (rc != 0)
            fail_msg("%s: %d %s", c->header, rc, err);
        assert_null(err);
        assert_string_equal(w.scheme, c->scheme);
        assert_opt_string(w.realm, c->realm);
        assert_opt_string(w.service, c->service);
        assert_opt_string(w.scope, c->scope);
        assert_opt_string(w.error, c->error);
        wwwauth_release(&w);
        assert_zeroed(&w);
    }
}

static const char *const bad_headers[] = {
    "",
    "   ",
    ",,,",
    "Bearer realm=\"unterminated",
    "Bearer realm=\"x\" junk",
    "=foo",
    "Bearer realm=\"x\"\r\nInjected: y",
    "Bearer realm=\"a\x01b\"",
    "Bearer realm=\"x\", \"y\"",
    "Bearer ,realm=\"x\"",
    "Bearer realm=\"x\"=",
    "Bearer abc== def",
    "Bearer realm=\"x\"; service=\"y\"",
    "Bearer realm=\"ends with backslash\\",
    "Bearer\x7f",
    "\"Bearer\" realm=x",
    "Bearer realm=x y=z",
    "Bearer; realm=x",
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        struct wwwauth w;
        char *err = NULL;
        memset(&w, 0xa5, sizeof(w));
        int rc = wwwauth_parse(&w, bad_headers[i], &err);
        if (rc != FERRY_EPARSE)
            fail_msg("case %zu: got %d, want FERRY_EPARSE", i, rc);
        assert_zeroed(&w);
        assert_message(err);
        free(err);
        memset(&w, 0xa5, sizeof(w));
        assert_int_equal(wwwauth_parse(&w, bad_headers[i], NULL), FERRY_EPARSE);
        assert_zeroed(&w);
    }
}

static void test_message_never_quotes_header(void **state)
{
    (void)state;
    struct wwwauth w;
    char *err = NULL;
    assert_int_equal(wwwauth_parse(&w, "Bearer realm=\"s3cret-value\" garbage", &err),
                     FERRY_EPARSE);
    assert_message(err);
    assert_null(strstr(err, "s3cret"));
    free(err);
}

static void test_size_cap(void **state)
{
    (void)state;
    struct wwwauth w;
    char *err = NULL;
    char *header = malloc(WWWAUTH_MAX_HEADER + 2);
    const char *prefix = "Bearer realm=\"";

    /* Exactly the cap parses. */
    memset(header, 'a', WWWAUTH_MAX_HEADER);
    memcpy(header, prefix, strlen(prefix));
    header[WWWAUTH_MAX_HEADER - 1] = '"';
    header[WWWAUTH_MAX_HEADER] = '\0';
    assert_int_equal(wwwauth_parse(&w, header, &err), 0);
    assert_int_equal(strlen(w.realm), WWWAUTH_MAX_HEADER - strlen(prefix) - 1);
    wwwauth_release(&w);

    /* One byte more does not, whatever it holds. */
    header[WWWAUTH_MAX_HEADER - 1] = 'a';
    header[WWWAUTH_MAX_HEADER] = '"';
    header[WWWAUTH_MAX_HEADER + 1] = '\0';
    memset(&w, 0xa5, sizeof(w));
    assert_int_equal(wwwauth_parse(&w, header, &err), FERRY_ETOOBIG);
    assert_zeroed(&w);
    assert_message(err);
    free(err);
    free(header);
}

static void test_many_challenges(void **state)
{
    (void)state;
    /* Many small challenges within the cap: each is parsed, the Bearer one kept. */
    char header[WWWAUTH_MAX_HEADER + 1];
    size_t n = 0;
    while (n + 17 + 17 <= sizeof(header)) {
        memcpy(header + n, "Other realm=\"o\", ", 17);
        n += 17;
    }
    memcpy(header + n, "Bearer realm=\"b\"", 17);
    assert_true(strlen(header) > WWWAUTH_MAX_HEADER - 34);
    struct wwwauth w;
    assert_int_equal(wwwauth_parse(&w, header, NULL), 0);
    assert_string_equal(w.scheme, "bearer");
    assert_string_equal(w.realm, "b");
    wwwauth_release(&w);
}

static void test_null_arguments(void **state)
{
    (void)state;
    struct wwwauth w;
    char *err = NULL;
    memset(&w, 0xa5, sizeof(w));
    assert_int_equal(wwwauth_parse(&w, NULL, &err), FERRY_EINVAL);
    assert_zeroed(&w);
    assert_message(err);
    free(err);
    assert_int_equal(wwwauth_parse(NULL, "Bearer", NULL), FERRY_EINVAL);
    wwwauth_release(NULL);
    wwwauth_release(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_message_never_quotes_header),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_many_challenges),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
