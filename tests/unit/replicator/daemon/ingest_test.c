/*
 * Unit tests for daemon/ingest: the webhook endpoint on a real loop, server
 * and committer (daemon_fixture.h): events journaled and counted, the
 * refusals at the headers, no committer, and a close that waits for the
 * commit a request is waiting on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include "daemon_fixture.h"

#define JSON_TYPE "Content-Type: application/json\r\n"
#define EVENT(id)                                                                                  \
    "{\"events\":[{\"id\":\"" id "\",\"timestamp\":\"2024-01-01T00:00:00.000Z\",\"action\":"       \
    "\"push\",\"target\":{\"repository\":\"team/app\",\"mediaType\":"                              \
    "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:"                          \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"tag\":\"v1\"}}]}"

static void start(struct fixture *f)
{
    fixture_start(f, "");
    f->ingest = ingest_new(f->config, f->journal, f->committer);
    fixture_listen(f);
}

static void test_events_journaled(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    struct ingest_stats st;
    (void)state;

    start(&f);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", JSON_TYPE, EVENT("e1"), &body),
                     200);
    assert_string_equal(body, "{\"accepted\":1,\"duplicates\":0,\"ignored\":0,\"last_seq\":1}\n");
    assert_int_equal(journal_last_seq(f.journal), 1);
    /* The same event again is a duplicate and costs no entry. */
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", JSON_TYPE, EVENT("e1"), &body),
                     200);
    assert_string_equal(body, "{\"accepted\":0,\"duplicates\":1,\"ignored\":0,\"last_seq\":1}\n");
    ingest_get_stats(f.ingest, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.events_accepted, 1);
    assert_int_equal(st.events_duplicate, 1);
    assert_int_equal(st.events_ignored, 0);
    assert_int_equal(st.rejected, 0);
    fixture_stop(&f);
}

static void test_refusals(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    struct ingest_stats st;
    (void)state;

    start(&f);
    assert_int_equal(fixture_call(&f, &c, "GET", "/v1/events/src", "", NULL, &body), 405);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", "Content-Type: text/plain\r\n",
                                  EVENT("e1"), &body),
                     415);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/nope", JSON_TYPE, EVENT("e1"), &body),
                     404);
    assert_string_equal(body, "{\"error\":\"unknown source 'nope'\"}");
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", JSON_TYPE, "{", &body), 400);
    ingest_get_stats(f.ingest, &st);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.rejected, 4);
    assert_int_equal(st.events_accepted, 0);
    assert_int_equal(journal_last_seq(f.journal), 0);
    fixture_stop(&f);
}

/* Once the committer has closed, an event is answered 503 and nothing is journaled. */
static void test_without_committer(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    (void)state;

    start(&f);
    journal_committer_close(f.committer, fixture_count_close, &f);
    f.committer = NULL;
    fixture_run_until_closed(&f, 1);
    ingest_set_committer(f.ingest, NULL);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", JSON_TYPE, EVENT("e1"), &body),
                     503);
    assert_string_equal(body, "{\"error\":\"shutting down; retry\"}");
    assert_int_equal(journal_last_seq(f.journal), 0);
    fixture_stop(&f);
}

/* A close with nothing waiting calls back at once; with a commit waiting, after its answer. */
static void test_close_waits_for_commit(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    (void)state;

    start(&f);
    struct ingest *idle = ingest_new(f.config, f.journal, f.committer);
    ingest_close(idle, fixture_count_close, &f);
    assert_int_equal(f.closed, 1);

    f.close_ingest_in_handler = true;
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/events/src", JSON_TYPE, EVENT("e1"), &body),
                     200);
    assert_null(f.ingest);
    /* Not when the request was taken: its commit was still to come. */
    assert_int_equal(f.closed_in_handler, 1);
    assert_int_equal(f.closed, 2);
    assert_string_equal(body, "{\"accepted\":1,\"duplicates\":0,\"ignored\":0,\"last_seq\":1}\n");
    fixture_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_journaled),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_without_committer),
        cmocka_unit_test(test_close_waits_for_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
