/*
 * Unit tests for daemon/api on a real loop and server (daemon_fixture.h):
 * its close callback, the routes answered from the journal alone, and with
 * an engine (never started) /metrics, /v1/status and image lookups at the
 * fake registry, with a drain and a close that wait for a lookup in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include "daemon_fixture.h"
#include "replication/engine.h"

static void start(struct fixture *f, const char *yaml)
{
    fixture_start(f, yaml);
    assert_int_equal(api_new(&f->loop, f->config, f->journal, NULL, &f->stopping, &f->api), 0);
    fixture_listen(f);
}

/* The close callback fires once, from the loop, not from api_close() itself. */
static void test_close_calls_back_from_loop(void **state)
{
    struct fixture f;
    struct api *a = NULL;
    (void)state;

    fixture_start(&f, "");
    assert_int_equal(api_new(&f.loop, f.config, f.journal, NULL, &f.stopping, &a), 0);
    api_close(a, fixture_count_close, &f);
    assert_int_equal(f.closed, 0);
    fixture_run_until_closed(&f, 1);
    fixture_stop(&f);
    assert_int_equal(f.closed, 4); /* the api, the committer, the registry, the guard timer */
}

static void test_routes_without_engine(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    (void)state;

    start(&f, "");
    assert_int_equal(fixture_call(&f, &c, "GET", "/healthz", "", NULL, &body), 200);
    assert_string_equal(body, "{\"status\":\"ok\"}\n");
    assert_int_equal(fixture_call(&f, &c, "GET", "/readyz", "", NULL, &body), 503);
    assert_string_equal(body, "{\"status\":\"stopping\",\"last_seq\":0}\n");
    assert_int_equal(fixture_call(&f, &c, "GET", "/v1/journal", "", NULL, &body), 200);
    assert_string_equal(body, "{\"last_seq\":0,\"entries\":[]}\n");
    assert_int_equal(fixture_call(&f, &c, "GET", "/v1/journal?limit=x", "", NULL, &body), 400);
    assert_int_equal(fixture_call(&f, &c, "GET", "/v1/failures", "", NULL, &body), 200);
    assert_string_equal(body, "{\"failures\":[],\"truncated\":false}\n");
    assert_int_equal(
        fixture_call(&f, &c, "GET", "/v1/images?repository=team/app&tag=v1", "", NULL, &body), 404);
    assert_string_equal(body, "{\"error\":\"no replication of this image is known\"}");
    /* Without an api_token a POST must be JSON (415), and without an engine it is 503. */
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/retry", "Content-Type: text/plain\r\n",
                                  "{\"destination\":\"dst\"}", &body),
                     415);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/retry", "Content-Type: application/json\r\n",
                                  "{\"destination\":\"dst\"}", &body),
                     503);
    assert_int_equal(fixture_call(&f, &c, "POST", "/v1/retry", "Content-Type: application/json\r\n",
                                  "{\"destination\":\"src\"}", &body),
                     404);
    assert_int_equal(fixture_call(&f, &c, "GET", "/nope", "", NULL, &body), 404);
    assert_int_equal(fixture_call(&f, &c, "GET", "/metrics", "", NULL, &body), 200);
    assert_non_null(strstr(body, "\nferry_journal_last_seq 0\n"));
    assert_non_null(strstr(body, "ferry_journal_entries_total{source=\"src\"} 0\n"));
    assert_null(strstr(body, "ferry_journal_entries_total{source=\"dst\"}"));
    fixture_stop(&f);
}

static void engine_closed(void *arg)
{
    bool *closed = arg;
    *closed = true;
}

static void drained(void *arg)
{
    int *calls = arg;
    (*calls)++;
}

/* Every family, in the order /metrics writes them. */
static const char *const families[] = {
    "ferry_journal_entries_total",
    "ferry_journal_last_seq",
    "ferry_jobs",
    "ferry_replication_lag_seconds",
    "ferry_backlog",
    "ferry_bytes_total",
    "ferry_http_requests_total",
    "ferry_registry_invalid_names_total",
    "ferry_retries_total",
    "ferry_circuit_open",
    "ferry_push_to_replicated_seconds",
};

/* The families in order; a destination's samples only for dst, a registry's for both. */
static void check_metrics(const char *body)
{
    const char *at = body;
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char *type = xasprintf("# TYPE %s ", families[i]);
        const char *next = strstr(at, type);
        if (next == NULL)
            fail_msg("family %s missing or out of order", families[i]);
        at = next;
        free(type);
    }
    static const char *const present[] = {
        "\nferry_replication_lag_seconds{destination=\"dst\"} 0.000\n",
        "\nferry_backlog{destination=\"dst\"} 0\n",
        "\nferry_retries_total{destination=\"dst\"} 0\n",
        "\nferry_circuit_open{destination=\"dst\"} 0\n",
        "\nferry_jobs{destination=\"dst\",state=\"pending\"} 0\n",
        "\nferry_bytes_total{registry=\"src\",direction=\"sent\"} 0\n",
        "\nferry_registry_invalid_names_total{registry=\"dst\"} 0\n",
        "\nferry_push_to_replicated_seconds_bucket{destination=\"dst\",le=\"+Inf\"} 0\n",
    };
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++)
        if (strstr(body, present[i]) == NULL)
            fail_msg("no line %s", present[i] + 1);
    static const char *const absent[] = {
        "ferry_replication_lag_seconds{destination=\"src\"}",
        "ferry_backlog{destination=\"src\"}",
        "ferry_retries_total{destination=\"src\"}",
        "ferry_circuit_open{destination=\"src\"}",
        "ferry_webhook_events_total", /* no ingest */
    };
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        if (strstr(body, absent[i]) != NULL)
            fail_msg("unexpected %s", absent[i]);
}

static void test_with_engine(void **state)
{
    struct fixture f;
    struct fixture_call c;
    const char *body;
    struct engine *engine = NULL;
    bool engine_done = false;
    int drains = 0;
    (void)state;

    start(&f, "");
    assert_int_equal(engine_new(&f.loop, f.config, f.journal, f.committer, &engine), 0);
    api_set_engine(f.api, engine, NULL);
    assert_int_equal(fixture_call(&f, &c, "GET", "/readyz", "", NULL, &body), 200);
    assert_int_equal(fixture_call(&f, &c, "GET", "/metrics", "", NULL, &body), 200);
    check_metrics(body);
    assert_int_equal(fixture_call(&f, &c, "GET", "/v1/status", "", NULL, &body), 200);
    assert_non_null(strstr(body, "\"destinations\":[{\"name\":\"dst\",\"registry\":"));
    assert_non_null(strstr(body, "\"sources\":[{\"name\":\"src\",\"registry\":"));
    assert_non_null(strstr(body, "\"circuit\":\"closed\""));
    /* The source has no such tag: 404 naming it, asked at once. */
    assert_int_equal(
        fixture_call(&f, &c, "GET", "/v1/images?repository=team/app&tag=v1", "", NULL, &body), 404);
    assert_non_null(strstr(body, "team/app:v1 is not at the source src"));
    assert_int_equal(f.registry_requests, 2); /* the source and the destination */

    /* A registry that does not answer: the lookup answers at its deadline and goes on. */
    f.registry_hold = true;
    assert_int_equal(
        fixture_call(&f, &c, "GET", "/v1/images?repository=team/app&tag=v2", "", NULL, &body), 503);
    assert_non_null(strstr(body, "did not answer within 3000 ms"));
    assert_int_equal(f.n_held, 2);
    /* The drain and the close wait for it, past a turn of the loop (the sampler closes then). */
    api_drain(f.api, drained, &drains);
    api_close(f.api, fixture_count_close, &f);
    f.api = NULL;
    int closed = f.closed;
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(drains, 0);
    assert_int_equal(f.closed, closed);
    fixture_registry_release(&f);
    fixture_run_until_closed(&f, closed + 1);
    assert_int_equal(drains, 1);

    engine_close(engine, engine_closed, &engine_done);
    fixture_run_until(&f, &engine_done);
    fixture_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_calls_back_from_loop),
        cmocka_unit_test(test_routes_without_engine),
        cmocka_unit_test(test_with_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
