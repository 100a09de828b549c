/*
 * What the fault proxy plays of the vendors' registries (chaos/vendor.c):
 * which repository a push names, the set of created repositories, Docker
 * Hub's pull limit on a fake clock, ETags and If-None-Match, and the error
 * document of a status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/vendor.h"
#include "common/errors.h"

/* The repository a push names, or "" when it is no push. */
static const char *push_repo(const char *method, const char *target)
{
    static char repo[VENDOR_REPO_NAME_MAX + 1];
    if (!vendor_push_repo(method, target, repo, sizeof(repo)))
        return "";
    return repo;
}

static void test_push_repo(void **state)
{
    (void)state;
    assert_string_equal(push_repo("POST", "/v2/app/blobs/uploads/"), "app");
    assert_string_equal(push_repo("POST", "/v2/a/b/c/blobs/uploads/?mount=sha256:aa&from=x"),
                        "a/b/c");
    assert_string_equal(push_repo("POST", "/v2/app/blobs/uploads"), "app");
    assert_string_equal(push_repo("PATCH", "/v2/team/app/blobs/uploads/5f1c-77?_state=abc"),
                        "team/app");
    assert_string_equal(push_repo("PUT", "/v2/app/blobs/uploads/5f1c?_state=x&digest=sha256:aa"),
                        "app");
    assert_string_equal(push_repo("PUT", "/v2/proj/app/manifests/v1"), "proj/app");
    assert_string_equal(push_repo("PUT", "/v2/app/manifests/sha256:0123"), "app");
    /* Names that hold the path's own words are still cut at the last of them. */
    assert_string_equal(push_repo("PUT", "/v2/manifests/x/manifests/v1"), "manifests/x");

    /* Reads, deletes and other paths are no push. */
    assert_string_equal(push_repo("GET", "/v2/app/manifests/v1"), "");
    assert_string_equal(push_repo("HEAD", "/v2/app/blobs/uploads/"), "");
    assert_string_equal(push_repo("DELETE", "/v2/app/manifests/v1"), "");
    assert_string_equal(push_repo("PUT", "/v2/app/tags/list"), "");
    assert_string_equal(push_repo("POST", "/v2/"), "");
    assert_string_equal(push_repo("PUT", "/v3/app/manifests/v1"), "");
    assert_string_equal(push_repo("PUT", "/v2/app/manifests/"), "");
    assert_string_equal(push_repo("PUT", "/v2/app/manifests/v1/extra"), "");
    assert_string_equal(push_repo("PATCH", "/v2/app/blobs/uploads/a/b"), "");
    assert_string_equal(push_repo("POST", "/v2/blobs/uploads/"), "");
    /* A name Distribution would refuse is not the gate's to judge. */
    assert_string_equal(push_repo("PUT", "/v2/App/manifests/v1"), "");
    assert_string_equal(push_repo("PUT", "/v2/a//b/manifests/v1"), "");

    /* The name must fit the caller's room. */
    char small[4];
    assert_false(vendor_push_repo("PUT", "/v2/abcd/manifests/v1", small, sizeof(small)));
    assert_true(vendor_push_repo("PUT", "/v2/abc/manifests/v1", small, sizeof(small)));
}

static void test_manifest_get(void **state)
{
    (void)state;
    assert_true(vendor_is_manifest_get("GET", "/v2/library/alpine/manifests/latest"));
    assert_true(vendor_is_manifest_get("GET", "/v2/app/manifests/sha256:aa?x=1"));
    assert_false(vendor_is_manifest_get("HEAD", "/v2/app/manifests/v1"));
    assert_false(vendor_is_manifest_get("GET", "/v2/app/blobs/sha256:aa"));
    assert_false(vendor_is_manifest_get("GET", "/v2/app/tags/list"));
    assert_false(vendor_is_manifest_get("GET", "/v2//manifests/v1"));
}

static void test_repo_names(void **state)
{
    (void)state;
    assert_true(vendor_repo_name_valid("app"));
    assert_true(vendor_repo_name_valid("team/app-1.x_y"));
    assert_false(vendor_repo_name_valid(""));
    assert_false(vendor_repo_name_valid("/app"));
    assert_false(vendor_repo_name_valid("app/"));
    assert_false(vendor_repo_name_valid("a//b"));
    assert_false(vendor_repo_name_valid("App"));
    assert_false(vendor_repo_name_valid("a b"));
    char name[VENDOR_REPO_NAME_MAX + 2];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_false(vendor_repo_name_valid(name));
    name[VENDOR_REPO_NAME_MAX] = '\0';
    assert_true(vendor_repo_name_valid(name));
}

static void test_repos(void **state)
{
    (void)state;
    struct vendor_repos repos = {0};
    assert_false(vendor_repos_has(&repos, "app"));
    assert_int_equal(vendor_repos_add(&repos, "base", false), 1);
    assert_int_equal(repos.creations, 0);
    assert_int_equal(vendor_repos_add(&repos, "app", true), 1);
    assert_int_equal(vendor_repos_add(&repos, "app", true), 0);
    assert_int_equal(repos.creations, 1);
    assert_true(vendor_repos_has(&repos, "app"));
    assert_true(vendor_repos_has(&repos, "base"));
    assert_false(vendor_repos_has(&repos, "ap"));
    assert_int_equal(vendor_repos_add(&repos, "Bad Name", true), FERRY_EINVAL);
    assert_int_equal(repos.n, 2);
    vendor_repos_release(&repos);
    assert_int_equal(repos.n, 0);

    /* Capped. */
    char name[32];
    for (int i = 0; i < VENDOR_REPOS_MAX; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        assert_int_equal(vendor_repos_add(&repos, name, true), 1);
    }
    assert_int_equal(vendor_repos_add(&repos, "one-more", true), FERRY_ETOOBIG);
    assert_int_equal(vendor_repos_add(&repos, "r7", true), 0);
    assert_int_equal(repos.creations, VENDOR_REPOS_MAX);
    vendor_repos_release(&repos);
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct vendor_ratelimit rl;
    uint64_t retry = 0;
    char headers[VENDOR_RATELIMIT_HEADERS_MAX];
    vendor_ratelimit_init(&rl, 2, 60);
    assert_int_equal(vendor_ratelimit_reset_in_s(&rl, 1000), 0);

    /* The window starts at the first request; HEADs (not pulls) are free. */
    assert_false(vendor_ratelimit_take(&rl, 10000, false, &retry));
    assert_int_equal(rl.remaining, 2);
    assert_int_equal(vendor_ratelimit_reset_in_s(&rl, 10000), 60);
    assert_false(vendor_ratelimit_take(&rl, 11000, true, &retry));
    vendor_ratelimit_headers(&rl, headers);
    assert_string_equal(headers, "RateLimit-Limit: 2;w=60\r\nRateLimit-Remaining: 1;w=60\r\n");
    assert_false(vendor_ratelimit_take(&rl, 12000, true, &retry));
    assert_int_equal(rl.remaining, 0);

    /* None left: refused until the window ends, Retry-After rounded up. */
    assert_true(vendor_ratelimit_take(&rl, 20500, true, &retry));
    assert_int_equal(retry, 50);
    assert_false(vendor_ratelimit_take(&rl, 20600, false, &retry));
    assert_true(vendor_ratelimit_take(&rl, 69999, true, &retry));
    assert_int_equal(retry, 1);
    assert_int_equal(rl.refused, 2);
    vendor_ratelimit_headers(&rl, headers);
    assert_string_equal(headers, "RateLimit-Limit: 2;w=60\r\nRateLimit-Remaining: 0;w=60\r\n");

    /* The window ended: a new one starts at the next request, all pulls back. */
    assert_false(vendor_ratelimit_take(&rl, 70000, true, &retry));
    assert_int_equal(rl.remaining, 1);
    assert_int_equal(vendor_ratelimit_reset_in_s(&rl, 70000), 60);

    /* A limit of 0 refuses every pull. */
    vendor_ratelimit_init(&rl, 0, 5);
    assert_true(vendor_ratelimit_take(&rl, 0, true, &retry));
    assert_int_equal(retry, 5);
}

static void test_etag(void **state)
{
    (void)state;
    char etag[VENDOR_ETAG_MAX];
    vendor_etag("", 0, etag);
    assert_string_equal(etag,
                        "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"");
    vendor_etag("abc", 3, etag);
    assert_string_equal(etag,
                        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");

    assert_true(vendor_etag_matches(etag, etag));
    assert_true(vendor_etag_matches("*", etag));
    char list[300];
    snprintf(list, sizeof(list), "\"x\", W/%s", etag);
    assert_true(vendor_etag_matches(list, etag));
    snprintf(list, sizeof(list), "\"x\" ,%s ,\"y\"", etag);
    assert_true(vendor_etag_matches(list, etag));
    assert_false(vendor_etag_matches("", etag));
    assert_false(vendor_etag_matches("\"x\", \"y\"", etag));
    /* Unquoted, or a prefix: no match. */
    assert_false(vendor_etag_matches(etag + 1, etag));
    snprintf(list, sizeof(list), "%.40s", etag);
    assert_false(vendor_etag_matches(list, etag));
}

static void check_error(int status, const char *target, const char *code, const char *want_code,
                        const char *want_message)
{
    const char *c = NULL, *m = NULL;
    vendor_error_for(status, target, code, &c, &m);
    assert_string_equal(c, want_code);
    assert_string_equal(m, want_message);
}

static void test_errors(void **state)
{
    (void)state;
    check_error(401, "/v2/_catalog", NULL, "UNAUTHORIZED", "authentication required");
    check_error(403, "/v2/app/manifests/v1", "", "DENIED",
                "requested access to the resource is denied");
    check_error(404, "/v2/app/manifests/v1", NULL, "MANIFEST_UNKNOWN", "manifest unknown");
    check_error(404, "/v2/app/blobs/sha256:aa", NULL, "BLOB_UNKNOWN", "blob unknown to registry");
    check_error(404, "/v2/app/blobs/uploads/x", NULL, "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry");
    check_error(404, "/v2/app/tags/list?n=10", NULL, "NAME_UNKNOWN",
                "repository name not known to registry");
    check_error(404, "/v2/_catalog", NULL, "NOT_FOUND", "not found");
    check_error(405, "/v2/_catalog", NULL, "UNSUPPORTED", "The operation is unsupported.");
    check_error(429, "/v2/app/manifests/v1", NULL, "TOOMANYREQUESTS", "too many requests");
    check_error(503, "/", NULL, "UNAVAILABLE", "service unavailable");
    check_error(500, "/", NULL, "UNKNOWN", "unknown error");
    /* A code of the rule's: its own message when Distribution has one. */
    check_error(404, "/v2/_catalog", "NAME_UNKNOWN", "NAME_UNKNOWN",
                "repository name not known to registry");
    check_error(400, "/v2/x", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED", "injected by ferry-chaos-proxy");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_repo),  cmocka_unit_test(test_manifest_get),
        cmocka_unit_test(test_repo_names), cmocka_unit_test(test_repos),
        cmocka_unit_test(test_ratelimit),  cmocka_unit_test(test_etag),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
