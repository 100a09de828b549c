/*
 * fixture.h: a registry client on a loop of its own, talking to scripted
 * responders (responder.h) on loopback: `r` is the registry, `other` a
 * second origin (a storage host an upload's Location may point at). Every
 * run of the loop is bounded in turns and time; the fixture closes every
 * handle and checks that the loop closes. Include after <cmocka.h>.
 */
#ifndef FERRY_TESTS_REGISTRY_FIXTURE_H
#define FERRY_TESTS_REGISTRY_FIXTURE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/digest.h"
#include "registry/http.h"
#include "registry/registry.h"
#include "responder.h"

#define FIXTURE_TIMEOUT_MS  8000   /* no run of the loop in a test takes longer */
#define FIXTURE_TURNS_MAX   200000 /* nor more turns */
#define FIXTURE_CLOSE_TURNS 1000

struct fixture {
    uv_loop_t loop;
    struct http_client *http;
    struct registry *reg;
    struct responder r;
    struct responder other;
    uv_timer_t watchdog;
    bool timed_out;
    int closed; /* the registry and the HTTP client, once closed */
};

/* Retries in tests wait a millisecond, not a fifth of a second. */
static inline struct registry_options fixture_options(void)
{
    struct registry_options o = {0};
    o.retry_base_ms = 1;
    o.retry_max_ms = 2;
    return o;
}

static inline void fixture_start(struct fixture *f, const struct registry_options *opts)
{
    memset(f, 0, sizeof(*f));
    /* Loopback only, whatever the environment says about proxies. */
    assert_int_equal(setenv("NO_PROXY", "*", 1), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    responder_start(&f->r, &f->loop);
    responder_start(&f->other, &f->loop);
    assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
    f->watchdog.data = f;
    f->http = http_client_new(&f->loop, NULL);
    struct registry_options o = opts != NULL ? *opts : fixture_options();
    f->reg = registry_new(&f->loop, f->http, f->r.origin, &o);
}

static inline void fixture_watchdog(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    f->timed_out = true;
}

/* Run the loop until *done turns true; fails the test past the time or the turns. */
static inline void fixture_run(struct fixture *f, const bool *done)
{
    f->timed_out = false;
    assert_int_equal(uv_timer_start(&f->watchdog, fixture_watchdog, FIXTURE_TIMEOUT_MS, 0), 0);
    for (int turns = 0; !*done && !f->timed_out && turns < FIXTURE_TURNS_MAX; turns++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(uv_timer_stop(&f->watchdog), 0);
    if (!*done)
        fail_msg("the operation did not finish (timed out: %d)", f->timed_out);
}

static inline void fixture_elapsed(uv_timer_t *timer)
{
    *(bool *)timer->data = true;
}

static inline void fixture_timer_closed(uv_handle_t *handle)
{
    *(bool *)handle->data = true;
}

/* Let `ms` of loop time pass (a token's life), with the loop running. */
static inline void fixture_wait(struct fixture *f, uint64_t ms)
{
    uv_timer_t t;
    bool elapsed = false;
    assert_int_equal(uv_timer_init(&f->loop, &t), 0);
    t.data = &elapsed;
    assert_int_equal(uv_timer_start(&t, fixture_elapsed, ms, 0), 0);
    fixture_run(f, &elapsed);
    bool closed = false;
    t.data = &closed;
    uv_close((uv_handle_t *)&t, fixture_timer_closed);
    fixture_run(f, &closed);
}

static inline void fixture_closed(void *arg)
{
    struct fixture *f = arg;
    f->closed++;
}

/* Close everything, check the loop closes, and free the responders' records. */
static inline void fixture_finish(struct fixture *f)
{
    registry_close(f->reg, fixture_closed, f);
    http_client_close(f->http, fixture_closed, f);
    responder_close(&f->r);
    responder_close(&f->other);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    for (int turns = 0; turns < FIXTURE_CLOSE_TURNS &&
                        (f->closed < 2 || f->r.open_handles > 0 || f->other.open_handles > 0);
         turns++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->closed, 2);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    responder_release(&f->r);
    responder_release(&f->other);
}

/* Assert that header `name` of recorded request `q` is `want` (NULL: absent). */
static inline void assert_header(const struct responder_request *q, const char *name,
                                 const char *want)
{
    char *got = responder_header(q, name);
    if (want == NULL && got != NULL)
        fail_msg("%s %s: header %s is \"%s\", expected none", q->method, q->target, name, got);
    if (want != NULL && (got == NULL || strcmp(got, want) != 0))
        fail_msg("%s %s: header %s is \"%s\", expected \"%s\"", q->method, q->target, name,
                 got != NULL ? got : "(none)", want);
    free(got);
}

/* A blob's bytes, read positionally by an upload. */
struct blob_source {
    const char *data;
    size_t len;
};

static inline ssize_t blob_source_read(char *buf, size_t len, uint64_t offset, void *arg)
{
    struct blob_source *b = arg;
    if (offset >= b->len)
        return 0;
    size_t n = b->len - (size_t)offset < len ? b->len - (size_t)offset : len;
    memcpy(buf, b->data + offset, n);
    return (ssize_t)n;
}

#endif
