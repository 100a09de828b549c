/*
 * What the registry client reads of the vendors' ways (replicator/registry/
 * registry.c, registry_op.c, registry_list.c): the request budget a
 * registry announces in RateLimit-Limit / RateLimit-Remaining (Docker Hub's
 * "100;w=21600", a plain count, the IETF draft's lists), parsed and kept in
 * the registry's stats from every answer; and conditional tag listings
 * (ETag, If-None-Match, 304), against a scripted registry on the loop.
 */
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
#include "fixture.h"
#include "registry/registry.h"
#include "registry/registry_int.h"

#define REPO "lib/app"
#define TAGS "/v2/" REPO "/tags/list?n=*"

/* ---- the header values ---- */

static void expect_parsed(const char *value, int64_t count, uint64_t window_s)
{
    int64_t c = -7;
    uint64_t w = 7;
    int rc = registry_ratelimit_parse(value, &c, &w);
    if (rc != 0)
        fail_msg("\"%s\" did not parse: %s", value, ferry_strerror(rc));
    assert_int_equal(c, count);
    assert_int_equal(w, window_s);
}

static void expect_refused(const char *value)
{
    int64_t c = -7;
    uint64_t w = 7;
    if (registry_ratelimit_parse(value, &c, &w) != FERRY_EPARSE)
        fail_msg("\"%s\" parsed", value);
    /* Nothing written on a refusal. */
    assert_int_equal(c, -7);
    assert_int_equal(w, 7);
}

/* Docker Hub's form, a plain count, spaces, other parameters, the first item of a list. */
static void test_parse_forms(void **state)
{
    (void)state;
    expect_parsed("100;w=21600", 100, 21600);
    expect_parsed("76;w=21600", 76, 21600);
    expect_parsed("100", 100, 0);
    expect_parsed("0", 0, 0);
    expect_parsed("  42 ; w=60 ", 42, 60);
    expect_parsed("5;W=30", 5, 30);
    expect_parsed("10;comment=\"per user;ip\";w=3600", 10, 3600);
    expect_parsed("10;w=1;burst=4", 10, 1);
    expect_parsed("100, 100;w=60, 1000;w=3600", 100, 0);
    expect_parsed("50;w=60, 1000;w=3600", 50, 60);
    expect_parsed("999999999999999", 999999999999999, 0);
}

/* Anything but a count first, overlong numbers, junk: refused, nothing written. */
static void test_parse_refused(void **state)
{
    (void)state;
    expect_refused("");
    expect_refused("   ");
    expect_refused("-1");
    expect_refused("abc");
    expect_refused(";w=60");
    expect_refused("1000000000000000"); /* 16 digits */
    expect_refused("100;w=");
    expect_refused("100;w=abc");
    expect_refused("100;w=99999999999999999999");
    expect_refused("100 200");
    expect_refused("100x");
    expect_refused("100;comment=\"unterminated");
    expect_refused("1.5");
}

/* ---- kept from every answer ---- */

struct answer {
    bool done;
    int rc;
    bool not_modified;
    char *etag;
    size_t n;
    char *first;
};

static void ping_done(int rc, const char *error, void *arg)
{
    struct answer *a = arg;
    (void)error;
    a->done = true;
    a->rc = rc;
}

static void manifest_done(int rc, const char *error, const char *bytes, size_t len,
                          const char *media_type, const char *digest, void *arg)
{
    struct answer *a = arg;
    (void)error;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    a->done = true;
    a->rc = rc;
}

static void tags_done(int rc, const char *error, char **items, size_t n, bool not_modified,
                      const char *etag, void *arg)
{
    struct answer *a = arg;
    if (rc < 0)
        fprintf(stderr, "listing failed: %s\n", error);
    a->done = true;
    a->rc = rc;
    a->n = n;
    a->not_modified = not_modified;
    a->etag = etag != NULL ? xstrdup(etag) : NULL;
    a->first = n > 0 ? xstrdup(items[0]) : NULL;
}

static void answer_release(struct answer *a)
{
    free(a->etag);
    free(a->first);
    memset(a, 0, sizeof(*a));
}

static void expect_budget(struct registry *reg, int64_t limit, int64_t remaining, uint64_t window)
{
    struct registry_stats st;
    registry_get_stats(reg, &st);
    assert_int_equal(st.ratelimit_limit, limit);
    assert_int_equal(st.ratelimit_remaining, remaining);
    assert_int_equal(st.ratelimit_window_s, window);
}

/*
 * Never seen: both counts -1 and no time. Then every answer that carries the
 * headers updates them (a HEAD, a 404, a 429 that is retried), and one
 * without them leaves the last ones.
 */
static void test_budget_from_every_answer(void **state)
{
    struct fixture f;
    struct answer a = {0};
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.ratelimit_limit, -1);
    assert_int_equal(st.ratelimit_remaining, -1);
    assert_int_equal(st.ratelimit_seen_ms, 0);

    responder_expect(&f.r, "GET", "/v2/", 200,
                     "RateLimit-Limit: 100;w=21600\r\nRateLimit-Remaining: 99;w=21600\r\n", "{}");
    registry_ping(f.reg, ping_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    expect_budget(f.reg, 100, 99, 21600);
    registry_get_stats(f.reg, &st);
    assert_true(st.ratelimit_seen_ms > 0);

    /* A HEAD's answer, a 404. */
    responder_expect(&f.r, "HEAD", "/v2/" REPO "/manifests/v1", 404,
                     "ratelimit-limit: 100;w=21600\r\nratelimit-remaining: 98;w=21600\r\n", "");
    memset(&a, 0, sizeof(a));
    registry_manifest_head(f.reg, REPO, "v1", manifest_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_ENOTFOUND);
    expect_budget(f.reg, 100, 98, 21600);

    /* A 429 (retried) says 0 left; the retry's answer, without headers, keeps that. */
    responder_expect(&f.r, "GET", "/v2/" REPO "/manifests/v1", 429,
                     "RateLimit-Limit: 100;w=21600\r\nRateLimit-Remaining: 0;w=21600\r\n"
                     "Retry-After: 0\r\n",
                     "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow down\"}]}");
    responder_expect(&f.r, "GET", "/v2/" REPO "/manifests/v1", 404, NULL, "");
    memset(&a, 0, sizeof(a));
    registry_manifest_get(f.reg, REPO, "v1", manifest_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_ENOTFOUND);
    expect_budget(f.reg, 100, 0, 21600);

    /* A plain count, no window: the window seen before stays. */
    responder_expect(&f.r, "GET", "/v2/", 200, "RateLimit-Limit: 30\r\nRateLimit-Remaining: 7\r\n",
                     "{}");
    memset(&a, 0, sizeof(a));
    registry_ping(f.reg, ping_done, &a);
    fixture_run(&f, &a.done);
    expect_budget(f.reg, 30, 7, 21600);

    /* Garbage in one header: the other still counts. */
    responder_expect(&f.r, "GET", "/v2/", 200,
                     "RateLimit-Limit: lots\r\nRateLimit-Remaining: 6;w=60\r\n", "{}");
    memset(&a, 0, sizeof(a));
    registry_ping(f.reg, ping_done, &a);
    fixture_run(&f, &a.done);
    expect_budget(f.reg, 30, 6, 60);

    assert_responder_done(&f.r);
    fixture_finish(&f);
}

/* ---- Distribution's link race on a manifest PUT ---- */

#define MANIFEST_BODY "{\"schemaVersion\":2}"
#define LINK_RACE                                                                                  \
    "{\"errors\":[{\"code\":\"DIGEST_INVALID\",\"message\":\"provided digest did not match "       \
    "uploaded content\"},{\"code\":\"MANIFEST_BLOB_UNKNOWN\",\"message\":\"blob unknown\"}]}"

static void put_done(int rc, const char *error, bool subject, void *arg)
{
    struct answer *a = arg;
    (void)error;
    (void)subject;
    a->done = true;
    a->rc = rc;
}

static int put_manifest(struct fixture *f)
{
    struct answer a = {0};
    assert_int_equal(registry_manifest_put(f->reg, REPO, "v1", MANIFEST_BODY, strlen(MANIFEST_BODY),
                                           "application/vnd.oci.image.manifest.v1+json", put_done,
                                           &a),
                     0);
    fixture_run(f, &a.done);
    return a.rc;
}

/*
 * Distribution refuses a manifest PUT DIGEST_INVALID + MANIFEST_BLOB_UNKNOWN
 * while another client rewrites the link of one of its blobs: tried once
 * more, and only once; other refusals are not tried again.
 */
static void test_manifest_put_link_race(void **state)
{
    struct fixture f;
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "PUT", "/v2/" REPO "/manifests/v1", 400, NULL, LINK_RACE);
    responder_expect(&f.r, "PUT", "/v2/" REPO "/manifests/v1", 201, NULL, "");
    assert_int_equal(put_manifest(&f), 0);
    assert_int_equal(f.r.n_got, 2);
    assert_string_equal(f.r.got[1].body, MANIFEST_BODY);

    /* Refused again: the blob is missing after all. */
    responder_expect(&f.r, "PUT", "/v2/" REPO "/manifests/v1", 400, NULL, LINK_RACE);
    responder_expect(&f.r, "PUT", "/v2/" REPO "/manifests/v1", 400, NULL, LINK_RACE);
    assert_true(put_manifest(&f) < 0);
    assert_int_equal(f.r.n_got, 4);

    /* Any other refusal: one request. */
    responder_expect(&f.r, "PUT", "/v2/" REPO "/manifests/v1", 400, NULL,
                     "{\"errors\":[{\"code\":\"MANIFEST_INVALID\",\"message\":\"bad\"}]}");
    assert_true(put_manifest(&f) < 0);
    assert_int_equal(f.r.n_got, 5);
    assert_responder_done(&f.r);
    fixture_finish(&f);
}

/* ---- conditional tag listings ---- */

/* The first listing sends no If-None-Match and hands back the ETag; the next sends it, 304. */
static void test_tags_not_modified(void **state)
{
    struct fixture f;
    struct answer a = {0};
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "GET", TAGS, 200, "ETag: \"abc123\"\r\n",
                     "{\"name\":\"" REPO "\",\"tags\":[\"v1\",\"v2\"]}");
    responder_expect(&f.r, "GET", TAGS, 304, "ETag: \"abc123\"\r\n", NULL);

    registry_tags_conditional(f.reg, REPO, NULL, tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_false(a.not_modified);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.first, "v1");
    assert_string_equal(a.etag, "\"abc123\"");
    char *etag = xstrdup(a.etag);
    answer_release(&a);

    registry_tags_conditional(f.reg, REPO, etag, tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_true(a.not_modified);
    assert_int_equal(a.n, 0);
    assert_null(a.etag);
    answer_release(&a);
    free(etag);

    assert_responder_done(&f.r);
    assert_header(&f.r.got[0], "If-None-Match", NULL);
    assert_header(&f.r.got[1], "If-None-Match", "\"abc123\"");
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.not_modified, 1);
    fixture_finish(&f);
}

/* A listing that changed: 200 with the new names and the new ETag. */
static void test_tags_changed(void **state)
{
    struct fixture f;
    struct answer a = {0};
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "GET", TAGS, 200, "ETag: W/\"two\"\r\n",
                     "{\"name\":\"" REPO "\",\"tags\":[\"v3\"]}");
    registry_tags_conditional(f.reg, REPO, "W/\"one\"", tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_false(a.not_modified);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.first, "v3");
    assert_string_equal(a.etag, "W/\"two\"");
    answer_release(&a);
    assert_header(&f.r.got[0], "If-None-Match", "W/\"one\"");
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.not_modified, 0);
    assert_responder_done(&f.r);
    fixture_finish(&f);
}

/*
 * A listing of two pages: If-None-Match on the first page only, and no
 * ETag handed back (a 304 could not stand for the second page).
 */
static void test_tags_paged_no_etag(void **state)
{
    struct fixture f;
    struct answer a = {0};
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "GET", TAGS, 200,
                     "ETag: \"p1\"\r\nLink: </v2/" REPO "/tags/list?n=1&last=v1>; rel=\"next\"\r\n",
                     "{\"name\":\"" REPO "\",\"tags\":[\"v1\"]}");
    responder_expect(&f.r, "GET", "/v2/" REPO "/tags/list?n=1&last=v1", 200, "ETag: \"p2\"\r\n",
                     "{\"name\":\"" REPO "\",\"tags\":[\"v2\"]}");
    registry_tags_conditional(f.reg, REPO, "\"old\"", tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_false(a.not_modified);
    assert_int_equal(a.n, 2);
    assert_null(a.etag);
    answer_release(&a);
    assert_header(&f.r.got[0], "If-None-Match", "\"old\"");
    assert_header(&f.r.got[1], "If-None-Match", NULL);
    assert_responder_done(&f.r);
    fixture_finish(&f);
}

/*
 * An ETag unfit to send back (a space, overlong) is not handed out; one
 * given that could not have been is not sent; an invalid repository name
 * fails before any request.
 */
static void test_tags_etag_checked(void **state)
{
    struct fixture f;
    struct answer a = {0};
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "GET", TAGS, 200, "ETag: \"a b\"\r\n",
                     "{\"name\":\"" REPO "\",\"tags\":[\"v1\"]}");
    char long_etag[400];
    memset(long_etag, 'e', sizeof(long_etag) - 1);
    long_etag[sizeof(long_etag) - 1] = '\0';
    char *header = xasprintf("ETag: \"%s\"\r\n", long_etag);
    responder_expect(&f.r, "GET", TAGS, 200, header, "{\"name\":\"" REPO "\",\"tags\":[\"v1\"]}");
    free(header);

    registry_tags_conditional(f.reg, REPO, "\"x\"\r\nX-Evil: 1", tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_null(a.etag);
    answer_release(&a);
    registry_tags_conditional(f.reg, REPO, long_etag, tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, 0);
    assert_null(a.etag);
    answer_release(&a);
    assert_header(&f.r.got[0], "If-None-Match", NULL);
    assert_header(&f.r.got[0], "X-Evil", NULL);
    assert_header(&f.r.got[1], "If-None-Match", NULL);

    registry_tags_conditional(f.reg, "Bad//Name", NULL, tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_EINVAL);
    answer_release(&a);
    assert_responder_done(&f.r);
    fixture_finish(&f);
}

/* A repository that does not exist: FERRY_ENOTFOUND, as registry_tags() gives. */
static void test_tags_conditional_not_found(void **state)
{
    struct fixture f;
    struct answer a = {0};
    (void)state;
    fixture_start(&f, NULL);
    responder_expect(&f.r, "GET", TAGS, 404, NULL,
                     "{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"repository name not "
                     "known to registry\"}]}");
    registry_tags_conditional(f.reg, REPO, "\"e\"", tags_done, &a);
    fixture_run(&f, &a.done);
    assert_int_equal(a.rc, FERRY_ENOTFOUND);
    assert_false(a.not_modified);
    answer_release(&a);
    assert_responder_done(&f.r);
    fixture_finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_budget_from_every_answer),
        cmocka_unit_test(test_tags_not_modified),
        cmocka_unit_test(test_tags_changed),
        cmocka_unit_test(test_tags_paged_no_etag),
        cmocka_unit_test(test_tags_etag_checked),
        cmocka_unit_test(test_tags_conditional_not_found),
        cmocka_unit_test(test_manifest_put_link_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
