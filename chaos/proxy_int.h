/*
 * proxy_int.h: what the files of ferry-chaos-proxy share, and nothing else
 * includes. The proxy, its connections, the output queues, the upstream link
 * and the exchange (one request and its response) are laid out here; each
 * file owns one part of their life:
 *
 *   proxy.c          main: the command line, listening, accepting, closing
 *   proxy_rules.c    the random draws, the rules each request meets, rule
 *                    documents (text or JSON) and rules changed at run time
 *   proxy_outq.c     the output queue of each side (delay, bandwidth, writes)
 *   proxy_flow.c     the data flow: reading both sides, the upstream link,
 *                    answers of the proxy's own, resets and blackholes
 *   proxy_parse.c    request and response parsing, and the body faults
 *   proxy_control.c  the control endpoint (/stats, /rules, /repositories,
 *                    /healthz)
 *
 * What the proxy plays of the vendors' registries (the repository gate, the
 * pull limit, ETags, error documents) is decided by vendor.c, which holds
 * no state of the proxy's.
 */
#ifndef FERRY_CHAOS_PROXY_INT_H
#define FERRY_CHAOS_PROXY_INT_H

#include "common/errors.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "chaos/proxy.h"
#include "chaos/rule.h"
#include "chaos/vendor.h"
#include "common/buf.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A reset waits for the bytes before it to leave the socket: polled this often, this many times. */
#define PROXY_RESET_POLL_MS  10
#define PROXY_RESET_POLL_MAX 100
/* Largest piece written at once when a bandwidth limit paces the queue. */
#define PROXY_PACED_CHUNK_MAX  (16 * 1024)
#define PROXY_CONTROL_HEAD_MAX (16 * 1024)
/* Room for one error line: a rule line (RULE_LINE_MAX) and why it is refused. */
#define PROXY_ERR_MAX 1400
/* The longest If-None-Match kept, and the longest WWW-Authenticate challenge remembered. */
#define PROXY_IF_NONE_MATCH_MAX 1024
#define PROXY_CHALLENGE_MAX     1024
/* Room for the headers an answer of the proxy's own adds. */
#define PROXY_ANSWER_HEADERS_MAX (PROXY_CHALLENGE_MAX + VENDOR_RATELIMIT_HEADERS_MAX + 64)
/* The chunk that ends a chunked body (no trailers). */
#define PROXY_LAST_CHUNK "0\r\n\r\n"

enum proxy_method_slot {
    SLOT_GET,
    SLOT_HEAD,
    SLOT_PUT,
    SLOT_POST,
    SLOT_PATCH,
    SLOT_DELETE,
    SLOT_OTHER
};
#define N_METHOD_SLOTS 7
#define N_FAULTS       (RULE_FAULT_BLACKHOLE + 1)

struct proxy_stats {
    uint64_t connections;
    uint64_t connections_refused; /* over --max-connections */
    uint64_t requests;
    uint64_t requests_by_method[N_METHOD_SLOTS];
    uint64_t responses;       /* final responses forwarded or made up */
    uint64_t upstream_errors; /* connect failures, broken or malformed responses */
    uint64_t bad_requests;
    uint64_t bytes_to_upstream;
    uint64_t bytes_to_client;
    uint64_t faults[N_FAULTS]; /* injected, by kind */
    uint64_t status_by_code[600];
    uint64_t delayed;
    uint64_t bandwidth_limited;
    uint64_t gate_refused;      /* pushes to repositories not created, answered by the gate */
    uint64_t ratelimit_refused; /* manifest GETs answered 429 by a ratelimit rule */
    uint64_t etag_tagged;       /* answers given an ETag */
    uint64_t etag_not_modified; /* of those, answered 304 */
};

struct conn;

struct proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_tcp_t control;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    struct sockaddr_storage upstream;
    char upstream_text[64];
    struct rule *rules[RULE_MAX];
    size_t n_rules;
    uint64_t rng;
    uint64_t seed;
    size_t max_connections;
    int gate_status;           /* --repo-gate: 404 or 403; 0 for no gate */
    struct vendor_repos repos; /* the repositories created (the gate lets pushes to them by) */
    char challenge[PROXY_CHALLENGE_MAX]; /* the upstream's last WWW-Authenticate, "" for none */
    struct conn *conns; /* every open client connection, for rule changes and shutdown */
    size_t n_conns;
    bool stopping;
    struct proxy_stats stats;
    char read_buf[PROXY_READ_SIZE]; /* every read is parsed before the next one */
};

/* What the rules decided for one request. */
struct plan {
    enum rule_fault fault;
    int status;
    int retry_after_s;
    uint64_t delay_ms;
    uint64_t bandwidth;
    size_t rule_number; /* 1-based, of the rule that gave the fault */
    bool vendor;        /* the status is a vendor's answer (gate, pull limit), not a fault */
    char code[32];      /* RULE_FAULT_STATUS: the error code, "" for the status's own */
    char message[320];  /* ...and its message, "" for the code's own */
    bool etag;          /* an etag rule selected the request */
    char headers[VENDOR_RATELIMIT_HEADERS_MAX]; /* added to the answer ("" for none) */
};

/* A piece of the byte stream for one side; it is its own write request once sent. */
struct outq_chunk {
    uv_write_t req;
    struct outq_chunk *next;
    struct outq *q;
    void *target; /* the stream it was written to */
    size_t len;
    size_t cap;
    bool sent;
    char data[];
};

/* Bytes waiting for one side of a connection, released by delay and bandwidth. */
struct outq {
    struct conn *conn;
    uv_stream_t *stream; /* NULL while the upstream is connecting */
    struct outq_chunk *head, *tail;
    size_t queued;    /* in chunks not yet written */
    size_t in_flight; /* handed to uv_write, not yet called back */
    uint64_t not_before_ms;
    uint64_t rate; /* bytes per second, 0: none */
    double tokens;
    uint64_t tokens_ms;
    uv_timer_t timer;
    bool timer_armed;
    uint64_t *counter; /* stats bytes counter for this direction */
};

struct upstream_link {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct conn *conn;
    bool connected;
    bool detached; /* closing; its callbacks do nothing */
    bool reading;
};

enum conn_mode {
    CONN_PROXY,     /* forwarding */
    CONN_BLACKHOLE, /* reading and dropping everything, answering nothing */
    CONN_RESETTING, /* waiting for earlier bytes to leave, then a reset */
    CONN_DRAINING,  /* sending what is queued, then closing */
};

enum hdr_state { HDR_NONE, HDR_FIELD, HDR_VALUE };

/* One request and its response. */
struct exchange {
    bool active;
    struct plan plan;
    char method[24];
    struct buf target;
    struct buf head;          /* request headers, "Name: value\r\n"... */
    struct buf if_none_match; /* its If-None-Match values, comma-separated */
    enum hdr_state hdr_state;
    char field[32]; /* lowercased start of the current header name */
    size_t field_len;
    bool expect_continue;
    bool req_headers_done;
    bool req_has_body;
    bool req_chunked;
    uint64_t req_length; /* Content-Length, or UINT64_MAX */
    uint64_t req_seen;
    bool req_keep_alive;
    bool req_complete;
    bool is_head;
    bool synthetic; /* answered by the proxy, not forwarded */
    bool dead;      /* nothing more is forwarded for it */
    /* Faults on the request body. */
    bool flip_req, mid_req;
    /* The response. */
    struct buf resp_head;
    struct buf reason;
    bool resp_started; /* some byte of an answer came */
    bool resp_headers_done;
    bool resp_head_sent;
    int resp_status;
    bool resp_chunked;
    bool resp_eof_body;
    bool resp_keep_alive;
    bool resp_complete;
    bool resp_discard; /* the rest of the body is dropped */
    bool resp_terminated;
    uint64_t resp_seen;
    bool flip_resp, mid_resp, truncating;
    uint64_t flip_at, mid_at, trunc_at; /* UINT64_MAX: decided at the first body piece */
    bool flipped, mid_done;
    /* etag: the 200 answer is held whole (head in resp_head, body here) until it ends. */
    bool etag_holding;
    struct buf held;
};

struct conn {
    struct proxy *proxy;
    struct conn *prev, *next;
    uint64_t id;
    uv_tcp_t client;
    struct upstream_link *link;
    int open_handles; /* each holds a reference; the last close frees the connection */
    bool closing;
    enum conn_mode mode;
    bool reading_client;
    bool close_after_flush;
    struct outq up;   /* to the upstream */
    struct outq down; /* to the client */
    uv_timer_t reset_timer;
    int reset_polls;
    http_parser req_parser;
    http_parser resp_parser;
    bool req_paused;
    char *pending; /* client bytes after a complete request, PROXY_PENDING_MAX */
    size_t pending_len;
    struct exchange ex;
};

/* ---- proxy.c: lifecycle */

/**
 * Closes a client connection and everything it holds (the upstream link, the
 * queues, the timers); with `reset`, the client gets a TCP reset. The memory
 * is freed when the last handle's close callback has run. Closing twice is
 * fine.
 */
void proxy_conn_close(struct conn *conn, bool reset);

/** Drops one handle's reference to the connection; the last frees it (close callbacks only). */
void proxy_conn_unref(struct conn *conn);

/* ---- proxy_rules.c: random draws and rules */

/** The next seeded draw (splitmix64), and one in [0, 1). */
uint64_t proxy_random_u64(struct proxy *p);
double proxy_random(struct proxy *p);

/** Decides the plan for one request from the rules in order (see proxy_rules.c). */
void proxy_decide(struct proxy *p, const char *method, const char *target, struct plan *plan);

/**
 * The repository gate (--repo-gate): true when the request is a push to a
 * repository not created, with the plan set to the vendor's refusal (the
 * rules are not asked then); false, the plan untouched, otherwise.
 */
bool proxy_gate(struct proxy *p, const char *method, const char *target, struct plan *plan);

/** Counts an injected fault and logs it; `detail` (or NULL) ends the log line. */
void proxy_count_fault(struct conn *conn, enum rule_fault fault, const char *detail);

/** Frees every rule. */
void proxy_clear_rules(struct proxy *p);

/**
 * Parses a rules document: JSON (["RULE", ...] or {"rules": [...]}) when it
 * starts with [ or {, else one rule per line (blank lines and # comments
 * skipped), into at most `max` new rules at `out` (owned by the caller, `n_out`
 * of them). All or nothing: returns 0, or FERRY_EINVAL with nothing kept and
 * `err` saying why.
 */
FERRY_MUST_CHECK int proxy_parse_rules(const char *text, struct rule **out, size_t max,
                                       size_t *n_out, char *err, size_t err_len);

/** Applies new rules to the exchanges in flight: a new blackhole swallows those it matches. */
void proxy_rules_changed(struct proxy *p);

/* ---- proxy_outq.c: output queues */

/** Starts an empty queue of `conn` counting its bytes in `counter`; 0 or a libuv error. */
FERRY_MUST_CHECK int proxy_outq_init(struct outq *q, struct conn *conn, uint64_t *counter);

/** Drops what is queued and closes the queue's timer; the close releases its connection reference.
 */
void proxy_outq_close(struct outq *q);

/** Bytes queued or being written. */
size_t proxy_outq_total(const struct outq *q);

/** Appends bytes (copied); they leave at the next flush the delay and the rate allow. */
void proxy_outq_push(struct outq *q, const void *data, size_t len);
void proxy_outq_push_str(struct outq *q, const char *s);

/** Forgets the bytes not yet written; writes in flight finish on their own. */
void proxy_outq_drop(struct outq *q);

/**
 * Writes what the delay and the rate allow now and arms the timer for the
 * rest. A failed write closes that side (the connection for the client's
 * queue, the upstream link for the upstream's).
 */
void proxy_outq_flush(struct outq *q);

/** Sets the delay and the rate (0: none) for the bytes pushed from now on. */
void proxy_outq_shape(struct outq *q, uint64_t delay_ms, uint64_t rate);

/* ---- proxy_flow.c: data flow, upstream, made-up answers */

/**
 * The read buffer callback of every stream: the proxy's one read buffer
 * (`loop->data` is the proxy), parsed before the next read.
 */
void proxy_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/** Finishes done exchanges; then reading and closing follow the connection's new state. */
void proxy_conn_after_io(struct conn *conn);

/** Reads each side only while the queue it feeds has room (and the request is not paused). */
void proxy_conn_update_reading(struct conn *conn);

/** Opens the upstream link of a connection; 0 or a libuv error (then there is no link). */
FERRY_MUST_CHECK int proxy_link_open(struct conn *conn);

/** Closes the upstream link (if any) and forgets the bytes queued for it. */
void proxy_link_close(struct conn *conn);

/** The upstream failed during the exchange (see proxy_flow.c for what the client sees). */
void proxy_upstream_failed(struct conn *conn, bool connecting, const char *why);

/** The reason phrase of a status the proxy answers with. */
const char *proxy_reason(int status);

/**
 * Queues a complete answer of the proxy's own, a registry's error document
 * {"errors":[{"code","message","detail"}]}, and flushes it. `headers` (or
 * NULL) are more header lines, each ending in CRLF.
 */
void proxy_conn_answer(struct conn *conn, int status, const char *code, const char *message,
                       const char *headers, bool keep_alive);

/** Swallows the connection: everything read is dropped, nothing is answered. */
void proxy_conn_blackhole(struct conn *conn);

/** Resets the client connection once the bytes queued before the fault have left. */
void proxy_conn_inject_reset(struct conn *conn);

/* ---- proxy_parse.c: request and response parsing */

/** Starts parsing a new connection's requests and responses. */
void proxy_parsers_init(struct conn *conn);

/** Starts parsing a new response stream (a new upstream link, or the next exchange). */
void proxy_response_parser_reset(struct conn *conn);

/** Frees what the exchange holds and empties it. */
void proxy_exchange_release(struct exchange *ex);

/** Feeds client bytes to the request parser; returns how many it took. */
size_t proxy_parse_request(struct conn *conn, const char *data, size_t len);

/** Feeds upstream bytes (NULL, 0: the end of the connection) to the response parser. */
size_t proxy_parse_response(struct conn *conn, const char *data, size_t len);

/* ---- proxy_control.c: the control endpoint */

/** The control listener's connection callback (`server->data` is the proxy). */
void proxy_control_accept_cb(uv_stream_t *server, int status);

/** Which request counter a method goes to. */
enum proxy_method_slot proxy_method_slot(const char *method);

#endif
