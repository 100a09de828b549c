/*
 * server: Ferry's HTTP server on the loop. libmicrohttpd runs in
 * external-polling mode: its epoll descriptor is watched by a uv_poll_t and
 * its timeout by a uv_timer_t, so requests are served from the same loop
 * thread as everything else. A request is seen twice: once its headers are
 * in, before any byte of its body is read (the admit callback: tokens, Host,
 * content type), and, if that did not answer it, once its whole body is in
 * (the handler). Bodies are capped one by one (max_body) and together
 * (body_budget), and a peer address may hold only so many connections, so
 * that a flood of slow bodies costs bounded memory and leaves room for
 * /healthz. A connection waiting on an asynchronous answer (a journal
 * commit) is suspended, not blocked. Every answer carries
 * Cache-Control: no-store, X-Frame-Options: DENY,
 * X-Content-Type-Options: nosniff and a Content Security Policy.
 */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct server;
struct server_request;

/* Defaults of struct server_options. */
#define SERVER_DEFAULT_MAX_BODY        ((size_t)1024 * 1024)
#define SERVER_DEFAULT_BODY_BUDGET     ((size_t)64 * 1024 * 1024)
#define SERVER_DEFAULT_MAX_CONNECTIONS 1024
#define SERVER_DEFAULT_PER_IP          64
#define SERVER_DEFAULT_IDLE_TIMEOUT_S  30
/* Seconds a client is told to wait (Retry-After) when the body budget is spent. */
#define SERVER_RETRY_AFTER_S 1

/**
 * The admit callback: called once per request on the loop thread as soon as
 * its headers are in, before any byte of its body is read. It may answer
 * with server_respond() before it returns (then the body is never read and
 * the handler never called), or return without answering to let the
 * request in. The request is only valid during the call.
 */
typedef void (*server_admit_cb)(struct server_request *req, void *arg);

/**
 * The handler: called once per admitted request on the loop thread, after
 * its whole body is in. It must call server_respond() exactly once, now or
 * later. A body over max_body or over the budget never reaches it: the
 * server answers 413, or 503 with Retry-After, itself.
 */
typedef void (*server_handler_cb)(struct server_request *req, void *arg);

struct server_options {
    const char *listen;              /* "host:port" or "[v6]:port"; port 0 picks a free one */
    size_t max_body;                 /* bytes of one request body (0: SERVER_DEFAULT_MAX_BODY) */
    size_t body_budget;              /* bytes of request bodies held at once, all connections
                                      * together (0: SERVER_DEFAULT_BODY_BUDGET) */
    unsigned max_connections;        /* 0: SERVER_DEFAULT_MAX_CONNECTIONS */
    unsigned max_connections_per_ip; /* from one peer address; 0: SERVER_DEFAULT_PER_IP */
    unsigned idle_timeout_s;         /* 0: SERVER_DEFAULT_IDLE_TIMEOUT_S */
    const char *tls_cert_pem;        /* with tls_key_pem: serve HTTPS; both copied */
    const char *tls_key_pem;         /* the private key (PEM); wiped when the server ends */
    const char *content_security_policy; /* on every answer; NULL: nothing but no framing */
};

/**
 * Listen and serve on `loop`: `admit` (may be NULL) sees each request at its
 * headers, `handler` after its body, both with `arg`. Returns 0 and sets
 * *out, or a negative code with *err set to one line the caller frees (bad
 * address; port in use; a certificate or key libmicrohttpd refused; the
 * loop could not watch it): then *out is NULL, and a handle it had made
 * already closes and frees through the loop by itself.
 */
FERRY_MUST_CHECK int server_new(uv_loop_t *loop, const struct server_options *opts,
                                server_admit_cb admit, server_handler_cb handler, void *arg,
                                struct server **out, char **err);

/** The port actually bound. */
FERRY_MUST_CHECK int server_port(const struct server *s);

/**
 * Stop accepting, close the daemon (requests still waiting for an answer are
 * dropped), and free the server once its handles are closed, then call `cb`
 * (may be NULL) from the loop.
 */
void server_close(struct server *s, void (*cb)(void *arg), void *arg);

const char *server_request_method(const struct server_request *req);

/** The path without the query string. */
const char *server_request_path(const struct server_request *req);

/** A request header (case-insensitive name), or NULL. */
const char *server_request_header(const struct server_request *req, const char *name);

/** A query argument, or NULL. */
const char *server_request_query(const struct server_request *req, const char *name);

/**
 * The credentials of an "Authorization: Bearer TOKEN" header (the scheme in
 * any case), or NULL when there is no such header.
 */
const char *server_request_bearer(const struct server_request *req);

/**
 * True when the request's Host header names this server for a browser (see
 * server_host_allowed(), with the server's listen host and bound port): the
 * check against DNS rebinding for routes no token guards.
 */
bool server_request_host_allowed(const struct server_request *req, char *const *names,
                                 size_t n_names);

/**
 * True when `host`, a Host header (NULL when the request had none), names a
 * server listening on `listen_host` (as in a listen address, without
 * brackets) and `port`:
 *  - its name is one of `names` (case-insensitive, a trailing dot ignored;
 *    any port or none), or, with the port `port` (absent means 80 or 443,
 *    so only those match it):
 *  - its name is `listen_host`;
 *  - listening on loopback (127.0.0.0/8, ::1, localhost): localhost or any
 *    loopback address;
 *  - listening on every address (0.0.0.0, ::): localhost or any IP address
 *    literal (an address cannot be rebound to another host; a name can).
 * Anything else, a malformed header included, is false.
 */
bool server_host_allowed(const char *listen_host, int port, const char *host, char *const *names,
                         size_t n_names);

/** True for "localhost" and loopback address literals (127.0.0.0/8, ::1), without brackets. */
bool server_host_is_loopback(const char *name);

/**
 * True when `content_type` (a Content-Type header, NULL when there was none)
 * is JSON: application/json or any TYPE/SUBTYPE+json, in any case, with or
 * without parameters ("; charset=utf-8"). None of the types a browser may
 * send across origins without asking (text/plain, a form's) is.
 */
bool server_media_type_json(const char *content_type);

/** The body (NUL-terminated; empty when none). */
const char *server_request_body(const struct server_request *req, size_t *len);

/**
 * Answer: `body` (copied) with `content_type`. After this the request is
 * gone; calling it again is a bug.
 */
void server_respond(struct server_request *req, unsigned status, const char *content_type,
                    const char *body, size_t len);

/** Answer with {"error": message} and `status`. */
void server_respond_error(struct server_request *req, unsigned status, const char *message);

/**
 * Add a header to the answer server_respond() just made, before it leaves
 * (call it right after, on the loop thread).
 */
void server_respond_header(struct server_request *req, const char *name, const char *value);

#endif
