/*
 * server: Ferry's HTTP server on the loop. libmicrohttpd runs in
 * external-polling mode: its epoll descriptor is watched by a uv_poll_t and
 * its timeout by a uv_timer_t, so requests are served from the same loop
 * thread as everything else. A handler sees a request once its whole body is
 * in (capped) and answers it then or later: a connection waiting on an
 * asynchronous answer (a journal commit) is suspended, not blocked.
 */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct server;
struct server_request;

/**
 * Called once per request on the loop thread, after the body is received
 * (or found over the cap: see server_request_body_too_big()). The handler
 * must call server_respond() exactly once, now or later.
 */
typedef void (*server_handler_cb)(struct server_request *req, void *arg);

struct server_options {
    const char *listen;       /* "host:port" or "[v6]:port"; port 0 picks a free one */
    size_t max_body;          /* request bodies over this are not kept (0: 1 MiB) */
    unsigned max_connections; /* 0: 1024 */
    unsigned idle_timeout_s;  /* 0: 30 */
};

/**
 * Listen and serve on `loop`. Returns 0 and sets *out, or a negative code
 * with *err set (bad address, port in use).
 */
int server_new(uv_loop_t *loop, const struct server_options *opts, server_handler_cb handler,
               void *arg, struct server **out, char **err);

/** The port actually bound. */
int server_port(const struct server *s);

/**
 * Stop accepting, close the daemon (requests still waiting for an answer are
 * dropped), and free the server once its handles are closed, then call `cb`.
 */
void server_close(struct server *s, void (*cb)(void *arg), void *arg);

const char *server_request_method(const struct server_request *req);

/** The path without the query string. */
const char *server_request_path(const struct server_request *req);

/** A request header (case-insensitive name), or NULL. */
const char *server_request_header(const struct server_request *req, const char *name);

/** A query argument, or NULL. */
const char *server_request_query(const struct server_request *req, const char *name);

/** The body (NUL-terminated; empty when none or too big). */
const char *server_request_body(const struct server_request *req, size_t *len);

/** True when the body passed the server's cap (it was discarded). */
bool server_request_body_too_big(const struct server_request *req);

/**
 * Answer: `body` (copied) with `content_type`. After this the request is
 * gone; calling it again is a bug.
 */
void server_respond(struct server_request *req, unsigned status, const char *content_type,
                    const char *body, size_t len);

/** Answer with {"error": message} and `status`. */
void server_respond_error(struct server_request *req, unsigned status, const char *message);

#endif
