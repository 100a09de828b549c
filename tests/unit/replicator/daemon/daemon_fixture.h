/*
 * daemon_fixture.h: what the daemon's unit tests share: a config and a
 * journal in a temporary directory, a loop with the journal's committer,
 * the HTTP server on a free loopback port routing to an ingest and an api
 * (each optional), a fake registry (every manifest unknown, or held until
 * released), and a small HTTP client on the same loop. Every wait is
 * bounded in time; include after <cmocka.h> and "unit.h".
 */
#ifndef FERRY_TESTS_DAEMON_FIXTURE_H
#define FERRY_TESTS_DAEMON_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "daemon/api.h"
#include "daemon/ingest.h"
#include "daemon/server.h"
#include "journal/committer.h"
#include "journal/journal.h"

/* How long any one wait on the loop may take. */
#define FIXTURE_WAIT_MS 5000
/* The guard timer's period: UV_RUN_ONCE returns at least this often. */
#define FIXTURE_TICK_MS      20
#define FIXTURE_RESPONSE_MAX (256 * 1024)

/* Registry requests the fake registry may hold at once. */
#define FIXTURE_HELD_MAX 16

struct fixture {
    char dir[64];
    uv_loop_t loop;
    uv_timer_t tick;
    struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct server *server;
    struct ingest *ingest;
    struct api *api;
    bool stopping;
    int closed; /* close callbacks that fired */
    /* The fake registry behind both src and dst (two names for one server). */
    struct server *registry;
    bool registry_hold; /* hold requests instead of answering 404 */
    struct server_request *held[FIXTURE_HELD_MAX];
    size_t n_held;
    size_t registry_requests;
    /* Close the ingest right after it took a request, with this many closes seen then. */
    bool close_ingest_in_handler;
    int closed_in_handler;
};

/* One HTTP/1.1 exchange on the fixture's loop; the server closes the connection after it. */
struct fixture_call {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char *request;
    char response[FIXTURE_RESPONSE_MAX];
    size_t len;
    int error;
    bool closed;
};

static void fixture_tick(uv_timer_t *timer)
{
    (void)timer;
}

/* Run the loop until *flag is true, or fail after FIXTURE_WAIT_MS. */
static inline void fixture_run_until(struct fixture *f, const bool *flag)
{
    int64_t deadline = clock_mono_ms() + FIXTURE_WAIT_MS;
    while (!*flag && clock_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(*flag);
}

/* Run the loop until f->closed reaches `n`, bounded as fixture_run_until(). */
static inline void fixture_run_until_closed(struct fixture *f, int n)
{
    int64_t deadline = clock_mono_ms() + FIXTURE_WAIT_MS;
    while (f->closed < n && clock_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->closed, n);
}

static void fixture_count_close(void *arg)
{
    struct fixture *f = arg;
    f->closed++;
}

static void fixture_admit(struct server_request *req, void *arg)
{
    struct fixture *f = arg;
    if (f->ingest != NULL && ingest_admit(f->ingest, req))
        return;
    if (f->api != NULL)
        api_admit(f->api, req);
}

static void fixture_count_close(void *arg);

static void fixture_route(struct server_request *req, void *arg)
{
    struct fixture *f = arg;
    if (f->ingest != NULL && ingest_handle(f->ingest, req)) {
        if (f->close_ingest_in_handler) {
            ingest_close(f->ingest, fixture_count_close, f);
            f->ingest = NULL;
            f->closed_in_handler = f->closed;
        }
        return;
    }
    if (f->api != NULL && api_handle(f->api, req))
        return;
    server_respond_error(req, 404, "no such endpoint");
}

#define FIXTURE_UNKNOWN "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"unknown\"}]}"

static void fixture_registry_route(struct server_request *req, void *arg)
{
    struct fixture *f = arg;
    f->registry_requests++;
    if (f->registry_hold && f->n_held < FIXTURE_HELD_MAX) {
        f->held[f->n_held++] = req;
        return;
    }
    server_respond(req, 404, "application/json", FIXTURE_UNKNOWN, strlen(FIXTURE_UNKNOWN));
}

/* Answer the held registry requests (404) and answer every later one at once. */
static inline void fixture_registry_release(struct fixture *f)
{
    f->registry_hold = false;
    for (size_t i = 0; i < f->n_held; i++)
        server_respond(f->held[i], 404, "application/json", FIXTURE_UNKNOWN,
                       strlen(FIXTURE_UNKNOWN));
    f->n_held = 0;
}

/*
 * The loop, the fake registry, the config (registries src and dst, a rule
 * from one to the other, data_dir in the fixture's directory, then
 * `extra_yaml`), the journal and a committer.
 */
static inline void fixture_start(struct fixture *f, const char *extra_yaml)
{
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/ferry-daemon-test-XXXXXX");
    assert_int_equal(unit_tmpdir_make(f->dir), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
    assert_int_equal(uv_timer_start(&f->tick, fixture_tick, FIXTURE_TICK_MS, FIXTURE_TICK_MS), 0);
    struct server_options ropts = {.listen = "127.0.0.1:0"};
    char *err = NULL;
    int rc = server_new(&f->loop, &ropts, NULL, fixture_registry_route, f, &f->registry, &err);
    if (rc < 0)
        fail_msg("server_new: %s", err != NULL ? err : "?");
    int port = server_port(f->registry);

    char *path = xasprintf("%s/ferry.yaml", f->dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_true(fprintf(file,
                        "data_dir: %s/data\n"
                        "registries:\n"
                        "  src: { url: \"http://127.0.0.1:%d\" }\n"
                        "  dst: { url: \"http://localhost:%d\" }\n"
                        "rules:\n"
                        "  - { name: all, source: src, repositories: [\"**\"],\n"
                        "      destinations: [{ registry: dst }] }\n"
                        "%s",
                        f->dir, port, port, extra_yaml) > 0);
    assert_int_equal(fclose(file), 0);
    rc = config_load(path, &f->config, &err);
    if (rc < 0)
        fail_msg("config_load: %s", err != NULL ? err : "?");
    free(path);
    assert_int_equal(config_data_dir_prepare(f->config) >= 0, 1);
    char *dir = xasprintf("%s/data/journal", f->dir);
    struct journal_options jopts = {0};
    assert_int_equal(journal_open(dir, &jopts, &f->journal, &err), 0);
    free(dir);
    assert_int_equal(journal_committer_new(&f->loop, f->journal, &f->committer), 0);
}

/* Listen on a free loopback port, routing to f->ingest and f->api as they are set. */
static inline void fixture_listen(struct fixture *f)
{
    struct server_options opts = {.listen = "127.0.0.1:0"};
    char *err = NULL;
    int rc = server_new(&f->loop, &opts, fixture_admit, fixture_route, f, &f->server, &err);
    if (rc < 0)
        fail_msg("server_new: %s", err != NULL ? err : "?");
}

static void fixture_tick_closed(uv_handle_t *handle)
{
    struct fixture *f = handle->data;
    f->closed++;
}

/*
 * Close what is left, in the daemon's order (api, ingest, committer, server,
 * the fake registry, the guard timer), wait for every callback, and free the
 * rest.
 */
static inline void fixture_stop(struct fixture *f)
{
    int want = f->closed;
    if (f->api != NULL) {
        api_close(f->api, fixture_count_close, f);
        want++;
    }
    if (f->ingest != NULL) {
        ingest_close(f->ingest, fixture_count_close, f);
        want++;
    }
    if (f->committer != NULL) {
        journal_committer_close(f->committer, fixture_count_close, f);
        want++;
    }
    if (f->server != NULL) {
        server_close(f->server, fixture_count_close, f);
        want++;
    }
    server_close(f->registry, fixture_count_close, f);
    want++;
    f->tick.data = f;
    uv_close((uv_handle_t *)&f->tick, fixture_tick_closed);
    want++;
    fixture_run_until_closed(f, want);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    journal_close(f->journal);
    config_free(f->config);
    assert_int_equal(unit_tmpdir_remove(f->dir), 0);
}

static void fixture_call_closed(uv_handle_t *handle)
{
    struct fixture_call *c = handle->data;
    c->closed = true;
}

static void fixture_call_end(struct fixture_call *c, int error)
{
    if (c->error == 0)
        c->error = error;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, fixture_call_closed);
}

static void fixture_call_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fixture_call *c = handle->data;
    (void)suggested;
    buf->base = c->response + c->len;
    buf->len = sizeof(c->response) - 1 - c->len;
}

static void fixture_call_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct fixture_call *c = stream->data;
    (void)buf;
    if (n > 0) {
        c->len += (size_t)n;
        c->response[c->len] = '\0';
    } else if (n < 0) {
        fixture_call_end(c, n == UV_EOF ? 0 : (int)n);
    }
}

static void fixture_call_written(uv_write_t *write, int status)
{
    struct fixture_call *c = write->data;
    if (status < 0)
        fixture_call_end(c, status);
}

static void fixture_call_connected(uv_connect_t *connect, int status)
{
    struct fixture_call *c = connect->data;
    if (status < 0) {
        fixture_call_end(c, status);
        return;
    }
    uv_buf_t out = uv_buf_init(c->request, (unsigned)strlen(c->request));
    c->write.data = c;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, fixture_call_alloc, fixture_call_read);
    if (rc == 0)
        rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &out, 1, fixture_call_written);
    if (rc < 0)
        fixture_call_end(c, rc);
}

/*
 * Send `method` `path` with `headers` (each ending in CRLF; may be "") and
 * `body` (NULL: none) to the fixture's server and wait for the whole
 * answer. Returns its status; *body_out points into c->response.
 */
static inline int fixture_call(struct fixture *f, struct fixture_call *c, const char *method,
                               const char *path, const char *headers, const char *body,
                               const char **body_out)
{
    memset(c, 0, sizeof(*c));
    c->request = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                           "%sContent-Length: %zu\r\n\r\n%s",
                           method, path, server_port(f->server), headers,
                           body != NULL ? strlen(body) : 0, body != NULL ? body : "");
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", server_port(f->server), &addr), 0);
    assert_int_equal(uv_tcp_init(&f->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr,
                            fixture_call_connected);
    if (rc < 0)
        fixture_call_end(c, rc);
    fixture_run_until(f, &c->closed);
    free(c->request);
    assert_int_equal(c->error, 0);
    int status = 0;
    assert_int_equal(sscanf(c->response, "HTTP/1.1 %d", &status), 1);
    const char *at = strstr(c->response, "\r\n\r\n");
    assert_non_null(at);
    *body_out = at + 4;
    return status;
}

#endif
