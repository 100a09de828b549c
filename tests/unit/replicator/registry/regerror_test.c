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

/* ---- regerror_explain: the vendors' refusals said plainly ---- */

/* The explanation of METHOD PATH answered STATUS with BODY at 127.0.0.1:5000 (or NULL). */
static char *explain(const char *method, const char *path, long status, const char *body,
                     const char *retry_after, const char *limit, const char *remaining)
{
    struct regerror_request rq = {
        .registry = "127.0.0.1:5000",
        .method = method,
        .path = path,
        .status = status,
        .retry_after = retry_after,
        .ratelimit_limit = limit,
        .ratelimit_remaining = remaining,
    };
    char *text = regerror_explain(&rq, body, body ? strlen(body) : 0);
    if (text != NULL) {
        /* One line, as Ferry writes errors: printable, starting lowercase. */
        assert_one_line(text);
        assert_false(text[0] >= 'A' && text[0] <= 'Z');
    }
    return text;
}

/* `text` holds every one of the NULL-terminated `parts`. */
static void assert_says(char *text, const char *const *parts)
{
    assert_non_null(text);
    for (size_t i = 0; parts[i] != NULL; i++) {
        if (strstr(text, parts[i]) == NULL)
            fail_msg("'%s' does not say '%s'", text, parts[i]);
    }
    free(text);
}

#define SAYS(text, ...) assert_says((text), (const char *const[]){__VA_ARGS__, NULL})

static void test_explain_denied(void **state)
{
    (void)state;
    const char *denied = "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"requested access to "
                         "the resource is denied\"}]}";
    /* A push: the rights, or the repository/project, with what each vendor wants. */
    char *t = explain("PUT", "/v2/team/app/manifests/v1", 403, denied, NULL, NULL, NULL);
    assert_string_equal(
        t, "push to 127.0.0.1:5000/team/app refused: DENIED (requested access to the resource is "
           "denied): the credentials lack push rights for team/app, or the repository/project "
           "does not exist (ECR: create it or set create_repository; Harbor: create the project; "
           "GAR: create the repository; GHCR: a token with write:packages) [PUT "
           "/v2/team/app/manifests/v1: HTTP 403]");
    free(t);
    /* Upload steps are pushes too. */
    SAYS(explain("POST", "/v2/app/blobs/uploads/", 403, denied, NULL, NULL, NULL),
         "push to 127.0.0.1:5000/app refused: DENIED", "push rights for app",
         "[POST /v2/app/blobs/uploads/: HTTP 403]");
    SAYS(explain("PATCH", "/v2/app/blobs/uploads/8a7b", 403, denied, NULL, NULL, NULL),
         "push to 127.0.0.1:5000/app refused");
    /* GHCR and GAR say it their way; the status alone (no JSON) is enough too. */
    SAYS(explain("POST", "/v2/o/app/blobs/uploads/", 403,
                 "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"permission_denied: "
                 "write_package\"}]}",
                 NULL, NULL, NULL),
         "refused: DENIED (permission_denied: write_package)", "write:packages");
    SAYS(explain("PUT", "/v2/p/r/app/manifests/v1", 403,
                 "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"Permission "
                 "\\\"artifactregistry.repositories.uploadArtifacts\\\" denied on resource "
                 "\\\"projects/p/locations/l/repositories/r\\\" (or it may not exist)\"}]}",
                 NULL, NULL, NULL),
         "push to 127.0.0.1:5000/p/r/app refused: DENIED (Permission",
         "GAR: create the repository");
    SAYS(explain("PUT", "/v2/app/manifests/v1", 403, "<html>Forbidden</html>", NULL, NULL, NULL),
         "push to 127.0.0.1:5000/app refused: HTTP 403: the credentials lack push rights");
    /* A pull, a delete, a tag listing. */
    SAYS(explain("GET", "/v2/app/blobs/sha256:aa", 403, denied, NULL, NULL, NULL),
         "pull from 127.0.0.1:5000/app refused: DENIED", "lack pull rights for app");
    SAYS(explain("DELETE", "/v2/app/manifests/sha256:aa", 403, denied, NULL, NULL, NULL),
         "delete at 127.0.0.1:5000/app refused", "delete rights for app");
    SAYS(explain("GET", "/v2/app/tags/list", 403, denied, NULL, NULL, NULL),
         "tag listing of 127.0.0.1:5000/app refused");
}

static void test_explain_unauthorized(void **state)
{
    (void)state;
    const char *unauth = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication "
                         "required\",\"detail\":[{\"Type\":\"repository\"}]}]}";
    SAYS(explain("HEAD", "/v2/app/manifests/v1", 401, unauth, NULL, NULL, NULL),
         "pull from 127.0.0.1:5000/app refused: UNAUTHORIZED (authentication required): "
         "127.0.0.1:5000 did not accept the credentials",
         "check the credentials configured for 127.0.0.1:5000", "HTTP 401]");
    /* ACR's words; and a 401 without a body. */
    SAYS(explain("PUT", "/v2/app/manifests/v1", 401,
                 "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required, "
                 "visit https://aka.ms/acr/authorization for more information.\"}]}",
                 NULL, NULL, NULL),
         "push to 127.0.0.1:5000/app refused: UNAUTHORIZED (authentication required, visit");
    SAYS(explain("GET", "/v2/app/manifests/v1", 401, NULL, NULL, NULL, NULL),
         "refused: HTTP 401: 127.0.0.1:5000 did not accept the credentials");
}

static void test_explain_missing(void **state)
{
    (void)state;
    /* ECR: pushes to a repository never created. */
    char *t = explain("POST", "/v2/app/blobs/uploads/", 404,
                      "{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"The repository with "
                      "name 'app' does not exist in the registry with id '123456789012'\"}]}",
                      NULL, NULL, NULL);
    assert_string_equal(
        t, "push to 127.0.0.1:5000/app refused: NAME_UNKNOWN (The repository with name 'app' "
           "does not exist in the registry with id '123456789012'): app does not exist at "
           "127.0.0.1:5000, which does not create repositories on push (ECR: aws ecr "
           "create-repository --repository-name app), or set create_repository [POST "
           "/v2/app/blobs/uploads/: HTTP 404]");
    free(t);
    /* A NAME_UNKNOWN on a read is the caller's to say (a tag or repository not there). */
    assert_null(explain("GET", "/v2/app/manifests/v1", 404,
                        "{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"repository name "
                        "not known to registry\"}]}",
                        NULL, NULL, NULL));
    /* Harbor and GCR: the project. */
    SAYS(explain("PUT", "/v2/team/app/manifests/v1", 404,
                 "{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"project team not found\"}]}",
                 NULL, NULL, NULL),
         "push to 127.0.0.1:5000/team/app refused: NOT_FOUND (project team not found): the "
         "project 'team' does not exist at 127.0.0.1:5000 (Harbor: create the project");
    SAYS(explain("POST", "/v2/p1/app/blobs/uploads/", 400,
                 "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"Project 'project:p1' not found "
                 "or deleted.\"}]}",
                 NULL, NULL, NULL),
         "the project 'p1' does not exist");
}

static void test_explain_quota(void **state)
{
    (void)state;
    /* ECR answers a full repository with DENIED: the quota, not the rights. */
    SAYS(explain("PUT", "/v2/app/manifests/v9", 403,
                 "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"The repository with name 'app' "
                 "in registry with id '1' already has the maximum allowed number of images which "
                 "is '10000'\"}]}",
                 NULL, NULL, NULL),
         "push to 127.0.0.1:5000/app refused: DENIED (The repository",
         "a quota of 127.0.0.1:5000 is used up", "delete old images or raise the quota");
    SAYS(explain("PUT", "/v2/app/manifests/v9", 400,
                 "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"LimitExceededException: "
                 "images per repository\"}]}",
                 NULL, NULL, NULL),
         "a quota of");
    /* Harbor's project quota, Quay's namespace quota. */
    SAYS(explain("PUT", "/v2/lib/app/manifests/v1", 412,
                 "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"adding 29.0 MiB of storage "
                 "resource, which when updated to current usage of 152.4 MiB will exceed the "
                 "configured upper limit of 10.0 MiB.\"}]}",
                 NULL, NULL, NULL),
         "a quota of");
    SAYS(explain("PUT", "/v2/ns/app/manifests/v1", 403,
                 "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"Quota has been exceeded on "
                 "namespace\"}]}",
                 NULL, NULL, NULL),
         "a quota of");
}

static void test_explain_rate(void **state)
{
    (void)state;
    const char *hub = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"You have reached "
                      "your pull rate limit. You may increase the limit by authenticating and "
                      "upgrading: https://www.docker.com/increase-rate-limit\"}]}";
    /* Docker Hub sends its window, not a Retry-After. */
    char *t = explain("GET", "/v2/library/alpine/manifests/3", 429, hub, NULL, "100;w=21600",
                      "0;w=21600");
    assert_string_equal(
        t, "rate limited by 127.0.0.1:5000 (TOOMANYREQUESTS: You have reached your pull rate "
           "limit. You may increase the limit by authenticating and upgrading: "
           "https://www.docker.com/increase-rate-limit) on pull from "
           "127.0.0.1:5000/library/alpine: the pull limit (100 pulls per 21600 s) is spent: log "
           "in for a higher limit or wait up to 21600 s (the limit's window) [GET "
           "/v2/library/alpine/manifests/3: HTTP 429]");
    free(t);
    SAYS(explain("GET", "/v2/app/manifests/v1", 429, hub, "37", "100;w=21600", "0;w=21600"),
         "log in for a higher limit or wait 37 s");
    SAYS(explain("GET", "/v2/app/manifests/v1", 429, hub, NULL, NULL, NULL),
         "the pull limit is spent", "wait before trying again");
    /* Another registry's throttle (ECR: "Rate exceeded"). */
    SAYS(explain("PUT", "/v2/app/blobs/uploads/x", 429,
                 "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"Rate exceeded\"}]}", "2",
                 NULL, NULL),
         "rate limited by 127.0.0.1:5000 (TOOMANYREQUESTS: Rate exceeded) on push to "
         "127.0.0.1:5000/app: too many requests: lower max_concurrency or rate_limit for "
         "127.0.0.1:5000, or wait 2 s");
    /* Header values are read for their leading number only. */
    SAYS(explain("GET", "/v2/app/manifests/v1", 429, NULL, "5\r\nX-Evil: 1", "7;w=60\nx", "0"),
         "rate limited by 127.0.0.1:5000 (HTTP 429)", "(7 pulls per 60 s)", "wait 5 s");
    SAYS(explain("GET", "/v2/app/manifests/v1", 429, NULL, "Wed, 21 Oct 2015 07:28:00 GMT",
                 "99999999999999999999", NULL),
         "wait before trying again");
}

static void test_explain_catalog(void **state)
{
    (void)state;
    const char *want = "listing the catalog of 127.0.0.1:5000 refused";
    SAYS(explain("GET", "/v2/_catalog", 401,
                 "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication "
                 "required\"}]}",
                 NULL, NULL, NULL),
         want, "offer no catalog to most users", "the registry's repositories list");
    SAYS(explain("GET", "/v2/_catalog", 404, "404 page not found\n", NULL, NULL, NULL), want,
         "HTTP 404");
    SAYS(explain("GET", "/v2/_catalog", 405,
                 "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"x\"}]}", NULL, NULL, NULL),
         want);
}

static void test_explain_none(void **state)
{
    (void)state;
    /* What the callers already say well (or retry) is left to them. */
    assert_null(explain("GET", "/v2/app/manifests/v1", 404,
                        "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                        "unknown\"}]}",
                        NULL, NULL, NULL));
    assert_null(explain("PUT", "/v2/app/blobs/uploads/x", 400,
                        "{\"errors\":[{\"code\":\"DIGEST_INVALID\",\"message\":\"x\"}]}", NULL,
                        NULL, NULL));
    assert_null(explain("PUT", "/v2/app/manifests/v1", 503,
                        "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"quota\"}]}", NULL, NULL,
                        NULL));
    assert_null(explain("GET", "/v2/app/manifests/v1", 200, NULL, NULL, NULL, NULL));
    struct regerror_request partial = {.registry = "h", .method = "GET", .status = 403};
    assert_null(regerror_explain(&partial, NULL, 0));
    assert_null(regerror_explain(NULL, NULL, 0));
    /* Paths that name no repository are said with the request. */
    SAYS(explain("GET", "/v2/", 401, NULL, NULL, NULL, NULL),
         "access to 127.0.0.1:5000 refused: HTTP 401");
    SAYS(explain("GET", "/v2/app", 403, NULL, NULL, NULL, NULL),
         "request GET 127.0.0.1:5000/v2/app refused: HTTP 403");
}

static void test_explain_hostile(void **state)
{
    (void)state;
    /* A message with line breaks and controls stays one line, and bounded. */
    char body[2048];
    char big[1200];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"a\\nb\\r\\u0007c %s\"}]}", big);
    char *t = explain("PUT", "/v2/app/manifests/v1", 403, body, NULL, NULL, NULL);
    assert_non_null(t);
    assert_non_null(strstr(t, "DENIED (a b  c qqq"));
    assert_true(strlen(t) < 1000);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_not_registry_json),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_explain_denied),
        cmocka_unit_test(test_explain_unauthorized),
        cmocka_unit_test(test_explain_missing),
        cmocka_unit_test(test_explain_quota),
        cmocka_unit_test(test_explain_rate),
        cmocka_unit_test(test_explain_catalog),
        cmocka_unit_test(test_explain_none),
        cmocka_unit_test(test_explain_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
