/*
 * http: libcurl's multi interface driven by one libuv loop.
 *
 * The client owns a CURLM whose sockets are watched with uv_poll_t and whose
 * timeouts run on a uv_timer_t (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION).
 * Connections are reused across requests; libcurl queues requests past the
 * global and per-host limits. Bodies stream both ways through callbacks, so
 * no blob is ever held whole in memory; small bodies (manifests, tokens,
 * error documents) may be collected into a capped buffer instead.
 */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/buf.h"

struct http_client;
struct http_request;

/* The defaults of struct http_client_options, used where a field is 0. */
#define HTTP_DEFAULT_MAX_CONNECTIONS      64
#define HTTP_DEFAULT_MAX_HOST_CONNECTIONS 16
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS   15000
#define HTTP_DEFAULT_STALL_TIMEOUT_S      120

struct http_client_options {
    long max_connections;      /* global cap on open connections (0: 64) */
    long max_host_connections; /* per host (0: 16) */
    const char *ca_file;       /* extra CA bundle, or NULL */
    const char *cert_file;     /* client certificate (PEM), or NULL */
    const char *key_file;      /* its key (PEM), or NULL */
    bool insecure;             /* skip TLS verification */
    long connect_timeout_ms;   /* 0: 15 s */
    long stall_timeout_s;      /* abort when under 1 byte/s this long (0: 120) */
    uint64_t rate_limit;       /* bytes/s of streamed bodies, all transfers together (0: none) */
};

/* Requests ended with one status code (0: no response) for one method. */
struct http_code_count {
    uint8_t method; /* index into http_method_names */
    uint16_t code;
    uint64_t count;
};

#define HTTP_CODE_SLOTS 48

/* Totals since the client started; for summaries, benchmarks and metrics. */
struct http_stats {
    uint64_t requests;
    uint64_t requests_by_method[6]; /* GET HEAD PUT POST PATCH DELETE */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    /* Finished requests by method and status; past the slots, counted as code 999. */
    struct http_code_count codes[HTTP_CODE_SLOTS];
    size_t n_codes;
};

/* "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE": the order of requests_by_method. */
extern const char *const http_method_names[6];

/**
 * Ends a request: `rc` is 0 when a response arrived (whatever its status; see
 * http_request_status()), or a negative code when none did: FERRY_ECONNECT,
 * FERRY_ETIMEOUT, FERRY_ETLS, FERRY_ETOOBIG (collected body over its limit),
 * FERRY_ECANCELED, or the error a body callback returned. Fires exactly once
 * per successful http_request_start(). The request still belongs to the
 * caller, who frees it (here or later) with http_request_free().
 */
typedef void (*http_done_cb)(struct http_request *req, int rc, void *arg);

/* Returned by an http_sink_cb that cannot take the bytes yet; see http_request_resume(). */
#define HTTP_SINK_PAUSE 1

/**
 * Receives response body bytes (of the final response only). Returns 0 to go
 * on, HTTP_SINK_PAUSE to pause the download (the same bytes come again after
 * http_request_resume()), or a negative code to abort the transfer with it.
 */
typedef int (*http_sink_cb)(struct http_request *req, const char *data, size_t len, void *arg);

/* Returned by an http_source_cb that has no bytes yet; see http_request_resume(). */
#define HTTP_SOURCE_WAIT (-1000000)

/**
 * Fills `buf` with up to `len` request body bytes starting at `offset` of the
 * body (reads are positional so that libcurl may rewind). Returns the count
 * (0 only at the end of the body), HTTP_SOURCE_WAIT to pause the upload until
 * http_request_resume(), or a negative code to abort with it.
 */
typedef ssize_t (*http_source_cb)(char *buf, size_t len, uint64_t offset, void *arg);

/**
 * Create a client on `loop` (`opts` may be NULL: the defaults). Never NULL:
 * libcurl failing to set up a multi handle is out of memory, and aborts as
 * the xmalloc family does.
 */
struct http_client *http_client_new(uv_loop_t *loop, const struct http_client_options *opts);

/**
 * Close the client: every request must have finished or been canceled. The
 * curl handles are cleaned up while the loop still runs (their sockets' poll
 * handles close through it) and `cb` fires once everything is freed.
 */
void http_client_close(struct http_client *c, void (*cb)(void *arg), void *arg);

/**
 * Cut every request in flight: each ends with FERRY_ECANCELED (its callback
 * runs from inside this call), and requests started after this fail at once.
 * For a shutdown that cannot wait for slow transfers.
 */
void http_client_abort(struct http_client *c);

/** Totals of the client's traffic so far. */
void http_client_stats(const struct http_client *c, struct http_stats *out);

/** Add the counts of `from` to `into` (a client's counts carried across a reload). */
void http_stats_add(struct http_stats *into, const struct http_stats *from);

/**
 * A new request, not yet started. `method` is GET, HEAD, PUT, POST, PATCH or
 * DELETE; `url` is absolute. Both are copied.
 */
struct http_request *http_request_new(struct http_client *c, const char *method, const char *url);

/** Add a request header line ("Name: value"); copied. */
void http_request_add_header(struct http_request *req, const char *line);

/**
 * Send `len` bytes from `data` as the body; the memory is not copied and must
 * outlive the request.
 */
void http_request_set_body(struct http_request *req, const void *data, size_t len);

/** Stream the body from `source`; `length` must be known (Content-Length). */
void http_request_set_source(struct http_request *req, http_source_cb source, void *arg,
                             uint64_t length);

/** Stream the response body into `sink` instead of collecting it. */
void http_request_set_sink(struct http_request *req, http_sink_cb sink, void *arg);

/** Cap on a collected response body (default 64 KiB); more fails with FERRY_ETOOBIG. */
void http_request_set_body_limit(struct http_request *req, size_t limit);

/** Follow redirects (GET/HEAD of blobs served from other storage). Off by default. */
void http_request_follow_redirects(struct http_request *req, bool follow);

/**
 * Start the request. Returns 0, after which `cb` fires exactly once, or a
 * negative code, in which case it never fires.
 */
FERRY_MUST_CHECK int http_request_start(struct http_request *req, http_done_cb cb, void *arg);

/**
 * Wake a transfer whose source returned HTTP_SOURCE_WAIT or whose sink
 * returned HTTP_SINK_PAUSE. Call it from the loop, not from inside another
 * transfer's callback: libcurl may deliver the held bytes at once.
 */
void http_request_resume(struct http_request *req);

/**
 * Stop a started request now: its callback fires, before this returns, with
 * FERRY_ECANCELED. No effect on a request that has already finished.
 */
void http_request_cancel(struct http_request *req);

/**
 * The final response's status code, or 0 when there was none. While the body
 * streams (inside a sink callback) it is the status of the response at hand.
 */
long http_request_status(const struct http_request *req);

/**
 * The last value of response header `name` (case-insensitive), trimmed, or
 * NULL. The string stays valid until the next call for this request or its free.
 */
const char *http_request_response_header(struct http_request *req, const char *name);

/** The collected response body (empty when a sink was used). */
const struct buf *http_request_response_body(const struct http_request *req);

/** The URL the response came from (after redirects). */
const char *http_request_url(const struct http_request *req);

/** libcurl's own words for a failed transfer, or "" (never NULL). */
const char *http_request_error_text(const struct http_request *req);

/** Free a request that is not running (never started, or finished). NULL is ignored. */
void http_request_free(struct http_request *req);

#endif
