/*
 * The upload state machine (replicator/registry/registry_upload.c) on the
 * real loop, against a scripted registry: monolithic, chunked, a PATCH that
 * breaks and resumes from the registry's Range, a 416 then a status GET, a
 * session the registry forgot, a monolithic PUT that breaks, and a POST that
 * keeps failing. Each checks the requests the registry got, and that the
 * bytes it kept are the blob.
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

#include "common/digest.h"
#include "common/errors.h"
#include "fixture.h"
#include "registry/registry.h"

#define BLOB    "0123456789"
#define REPO    "lib/app"
#define UPLOADS "/v2/" REPO "/blobs/uploads/"

struct upload_result {
    bool done;
    int rc;
    char *error;
    enum registry_upload_outcome how;
};

static void upload_done(int rc, const char *error, enum registry_upload_outcome how, void *arg)
{
    struct upload_result *u = arg;
    assert_false(u->done);
    u->done = true;
    u->rc = rc;
    u->how = how;
    u->error = xstrdup(error);
}

/* Upload BLOB into REPO with `opts` and run until the callback fired. */
static void upload_run(struct fixture *f, const struct registry_upload_options *opts,
                       struct upload_result *u)
{
    static struct blob_source src = {BLOB, sizeof(BLOB) - 1};
    char digest[DIGEST_MAX];
    digest_of(BLOB, sizeof(BLOB) - 1, digest);
    memset(u, 0, sizeof(*u));
    assert_int_equal(registry_blob_upload(f->reg, REPO, digest, sizeof(BLOB) - 1, blob_source_read,
                                          &src, opts, upload_done, u, NULL),
                     0);
    fixture_run(f, &u->done);
}

static void assert_uploaded(const struct upload_result *u)
{
    if (u->rc != 0)
        fail_msg("upload failed: %s (%s)", ferry_strerror(u->rc), u->error ? u->error : "");
    assert_null(u->error);
    assert_int_equal(u->how, REGISTRY_UPLOADED);
}

/* "PUT <location>&digest=sha256:..." as the final request's target. */
static char *put_target(const char *location)
{
    char digest[DIGEST_MAX];
    digest_of(BLOB, sizeof(BLOB) - 1, digest);
    return xasprintf("%s%sdigest=%s", location, strchr(location, '?') ? "&" : "?", digest);
}

static void expect_put(struct responder *r, const char *location)
{
    char digest[DIGEST_MAX];
    char headers[160];
    digest_of(BLOB, sizeof(BLOB) - 1, digest);
    snprintf(headers, sizeof(headers), "Docker-Content-Digest: %s\r\n", digest);
    char *target = put_target(location);
    responder_expect(r, "PUT", target, 201, headers, NULL);
    free(target);
}

/* A POST answered 202 with the session at UPLOADS `session`. */
static void expect_post(struct responder *r, const char *session)
{
    char *headers = xasprintf("Location: " UPLOADS "%s\r\n", session);
    responder_expect(r, "POST", UPLOADS, 202, headers, NULL);
    free(headers);
}

/* A PATCH at UPLOADS `at` answered 202: the session is now at `next` and holds 0-`last`. */
static void expect_patch(struct responder *r, const char *at, const char *next, int last)
{
    char *target = xasprintf(UPLOADS "%s", at);
    char *headers = xasprintf("Location: " UPLOADS "%s\r\nRange: 0-%d\r\n", next, last);
    responder_expect(r, "PATCH", target, 202, headers, NULL);
    free(target);
    free(headers);
}

/* Assert request `i` is a PATCH of `content_range` carrying `body`. */
static void assert_patch(const struct responder *r, size_t i, const char *content_range,
                         const char *body)
{
    assert_true(i < r->n_got);
    const struct responder_request *q = &r->got[i];
    assert_string_equal(q->method, "PATCH");
    assert_header(q, "Content-Range", content_range);
    assert_int_equal(q->body_len, strlen(body));
    assert_memory_equal(q->body, body, strlen(body));
}

/* POST, then one PUT with the whole blob. */
static void test_monolithic(void **state)
{
    struct fixture f;
    struct upload_result u;
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1?_state=a");
    expect_put(&f.r, UPLOADS "u1?_state=a");
    upload_run(&f, NULL, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_int_equal(f.r.got[0].body_len, 0);
    assert_header(&f.r.got[1], "Content-Type", "application/octet-stream");
    assert_int_equal(f.r.got[1].body_len, sizeof(BLOB) - 1);
    assert_memory_equal(f.r.got[1].body, BLOB, sizeof(BLOB) - 1);
    free(u.error);
    fixture_finish(&f);
}

/*
 * A mount the caller knows should work (mount_retry), refused 202 (a
 * repository link being rewritten): mounted at the second POST; without
 * mount_retry, the 202's session is uploaded into at once. Retried mounts
 * refused again REGISTRY_MOUNT_RETRY_MISSES times in a row: no more retries.
 */
static void test_mount_retried(void **state)
{
    struct fixture f;
    struct upload_result u;
    (void)state;
    char digest[DIGEST_MAX];
    digest_of(BLOB, sizeof(BLOB) - 1, digest);
    char *mount = xasprintf(UPLOADS "?mount=%s&from=lib/base", digest);
    const char *loc = "Location: " UPLOADS "m1\r\n";
    struct registry_upload_options opts = {.mount_from = "lib/base", .mount_retry = true};
    fixture_start(&f, NULL);
    responder_expect(&f.r, "POST", mount, 202, loc, NULL);
    responder_expect(&f.r, "POST", mount, 201, NULL, NULL);
    upload_run(&f, &opts, &u);
    assert_int_equal(u.rc, 0);
    assert_int_equal(u.how, REGISTRY_MOUNTED);
    free(u.error);

    /* Not asked: the 202 is the session to upload into. */
    opts.mount_retry = false;
    responder_expect(&f.r, "POST", mount, 202, loc, NULL);
    expect_put(&f.r, UPLOADS "m1");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    free(u.error);

    /* Refused twice: uploaded; after REGISTRY_MOUNT_RETRY_MISSES such, one POST only. */
    opts.mount_retry = true;
    for (int i = 0; i <= REGISTRY_MOUNT_RETRY_MISSES; i++) {
        responder_expect(&f.r, "POST", mount, 202, loc, NULL);
        if (i < REGISTRY_MOUNT_RETRY_MISSES)
            responder_expect(&f.r, "POST", mount, 202, loc, NULL);
        expect_put(&f.r, UPLOADS "m1");
        upload_run(&f, &opts, &u);
        assert_uploaded(&u);
        free(u.error);
    }
    assert_responder_done(&f.r);
    free(mount);
    fixture_finish(&f);
}

/* Chunks of four bytes, each PATCH at the Location the last answer named. */
static void test_chunked(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_upload_options opts = {.mode = REGISTRY_UPLOAD_CHUNKED, .chunk_max = 4};
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    expect_patch(&f.r, "u1", "u1?c=1", 3);
    expect_patch(&f.r, "u1?c=1", "u1?c=2", 7);
    expect_patch(&f.r, "u1?c=2", "u1?c=3", 9);
    expect_put(&f.r, UPLOADS "u1?c=3");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_patch(&f.r, 1, "0-3", "0123");
    assert_patch(&f.r, 2, "4-7", "4567");
    assert_patch(&f.r, 3, "8-9", "89");
    assert_int_equal(f.r.got[4].body_len, 0);
    free(u.error);
    fixture_finish(&f);
}

/*
 * The second PATCH breaks off: a status GET learns that the registry kept
 * two of its bytes (Range 0-5), and the upload goes on from byte 6.
 */
static void test_patch_breaks_resumes(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_upload_options opts = {.mode = REGISTRY_UPLOAD_CHUNKED, .chunk_max = 4};
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    expect_patch(&f.r, "u1", "u1", 3);
    responder_expect_hangup(&f.r, "PATCH", UPLOADS "u1", 202);
    responder_expect(&f.r, "GET", UPLOADS "u1", 204,
                     "Location: " UPLOADS "u1?s=2\r\nRange: 0-5\r\n", NULL);
    expect_patch(&f.r, "u1?s=2", "u1?s=3", 9);
    expect_put(&f.r, UPLOADS "u1?s=3");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_patch(&f.r, 1, "0-3", "0123");
    assert_patch(&f.r, 2, "4-7", "4567");
    assert_patch(&f.r, 4, "6-9", "6789");
    /* What the registry kept: the first chunk, two bytes of the broken one, the rest. */
    char kept[sizeof(BLOB)];
    snprintf(kept, sizeof(kept), "%.4s%.2s%.4s", f.r.got[1].body, f.r.got[2].body, f.r.got[4].body);
    assert_string_equal(kept, BLOB);
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.retries, 1);
    free(u.error);
    fixture_finish(&f);
}

/* A 416 to a PATCH: the status GET says the registry holds 0-3, so 4-7 goes again. */
static void test_416_then_status(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_upload_options opts = {.mode = REGISTRY_UPLOAD_CHUNKED, .chunk_max = 4};
    struct registry_stats st;
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    expect_patch(&f.r, "u1", "u1", 3);
    responder_expect(&f.r, "PATCH", UPLOADS "u1", 416, NULL, NULL);
    responder_expect(&f.r, "GET", UPLOADS "u1", 204, "Range: 0-3\r\n", NULL);
    expect_patch(&f.r, "u1", "u1", 7);
    expect_patch(&f.r, "u1", "u1", 9);
    expect_put(&f.r, UPLOADS "u1");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_patch(&f.r, 2, "4-7", "4567");
    assert_patch(&f.r, 4, "4-7", "4567");
    assert_patch(&f.r, 5, "8-9", "89");
    /* A 416 is the registry's word, not a failure: nothing was retried. */
    registry_get_stats(f.reg, &st);
    assert_int_equal(st.retries, 0);
    free(u.error);
    fixture_finish(&f);
}

/* The registry forgot the session (404 to a PATCH): a new POST, and the blob again from 0. */
static void test_session_forgotten(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_upload_options opts = {.mode = REGISTRY_UPLOAD_CHUNKED, .chunk_max = 5};
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    expect_patch(&f.r, "u1", "u1", 4);
    responder_expect(&f.r, "PATCH", UPLOADS "u1", 404, NULL,
                     "{\"errors\":[{\"code\":\"BLOB_UPLOAD_UNKNOWN\"}]}");
    expect_post(&f.r, "u2");
    expect_patch(&f.r, "u2", "u2", 4);
    expect_patch(&f.r, "u2", "u2", 9);
    expect_put(&f.r, UPLOADS "u2");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_patch(&f.r, 4, "0-4", "01234");
    assert_patch(&f.r, 5, "5-9", "56789");
    free(u.error);
    fixture_finish(&f);
}

/* A PATCH breaks and the status GET finds no session (404): a new POST. */
static void test_status_finds_no_session(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_upload_options opts = {.mode = REGISTRY_UPLOAD_CHUNKED, .chunk_max = 10};
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    responder_expect_hangup(&f.r, "PATCH", UPLOADS "u1", 202);
    responder_expect(&f.r, "GET", UPLOADS "u1", 404, NULL, NULL);
    expect_post(&f.r, "u2");
    expect_patch(&f.r, "u2", "u2", 9);
    expect_put(&f.r, UPLOADS "u2");
    upload_run(&f, &opts, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_patch(&f.r, 4, "0-9", BLOB);
    free(u.error);
    fixture_finish(&f);
}

/* A monolithic PUT that breaks is not sent again into its session: a new POST. */
static void test_put_breaks_restarts(void **state)
{
    struct fixture f;
    struct upload_result u;
    (void)state;
    fixture_start(&f, NULL);
    expect_post(&f.r, "u1");
    char *broken = put_target(UPLOADS "u1");
    responder_expect_hangup(&f.r, "PUT", broken, 201);
    free(broken);
    expect_post(&f.r, "u2");
    expect_put(&f.r, UPLOADS "u2");
    upload_run(&f, NULL, &u);
    assert_uploaded(&u);
    assert_responder_done(&f.r);
    assert_memory_equal(f.r.got[3].body, BLOB, sizeof(BLOB) - 1);
    free(u.error);
    fixture_finish(&f);
}

/* A POST that keeps answering 503 fails the upload once the attempts are spent. */
static void test_post_keeps_failing(void **state)
{
    struct fixture f;
    struct upload_result u;
    struct registry_options o = fixture_options();
    (void)state;
    o.max_attempts = 2;
    fixture_start(&f, &o);
    responder_expect(&f.r, "POST", UPLOADS, 503, NULL, NULL);
    responder_expect(&f.r, "POST", UPLOADS, 503, NULL, NULL);
    upload_run(&f, NULL, &u);
    assert_responder_done(&f.r);
    assert_int_equal(u.rc, FERRY_ESERVER);
    assert_non_null(u.error);
    assert_non_null(strstr(u.error, "HTTP 503"));
    free(u.error);
    fixture_finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monolithic),
        cmocka_unit_test(test_mount_retried),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_patch_breaks_resumes),
        cmocka_unit_test(test_416_then_status),
        cmocka_unit_test(test_session_forgotten),
        cmocka_unit_test(test_status_finds_no_session),
        cmocka_unit_test(test_put_breaks_restarts),
        cmocka_unit_test(test_post_keeps_failing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
