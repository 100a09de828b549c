/*
 * ferry-chaos-proxy: see proxy.h for what it does and rule.h for the rules.
 *
 *   ferry-chaos-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
 *                     [--control 127.0.0.1:PORT] [--rule RULE]... [--rules-file PATH]
 *                     [--seed N] [--max-connections N] [--ready-file PATH] [-v|-q]
 *
 * Data path: each accepted client connection gets its own upstream
 * connection (opened at its first forwarded request, opened again if the
 * upstream closed it while idle). Bytes for either side go through an output
 * queue (struct outq) that applies the delay and the bandwidth limit; when a
 * queue holds more than PROXY_HIGH_WATER the side feeding it is no longer
 * read, so memory stays bounded whatever the body sizes.
 */
#include "chaos/proxy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/log.h"
#include "chaos/rule.h"
#include "common/xalloc.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A reset waits for the bytes before it to leave the socket: polled this often, this many times. */
#define PROXY_RESET_POLL_MS  10
#define PROXY_RESET_POLL_MAX 100
/* Largest piece written at once when a bandwidth limit paces the queue. */
#define PROXY_PACED_CHUNK_MAX  (16 * 1024)
#define PROXY_CONTROL_HEAD_MAX (16 * 1024)

enum proxy_method_slot {
    SLOT_GET,
    SLOT_HEAD,
    SLOT_PUT,
    SLOT_POST,
    SLOT_PATCH,
    SLOT_DELETE,
    SLOT_OTHER
};
static const char *const proxy_method_slots[] = {"GET",   "HEAD",   "PUT",  "POST",
                                                 "PATCH", "DELETE", "other"};
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
};

struct conn;

struct proxy {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_tcp_t control;
    bool has_control;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    struct sockaddr_storage upstream;
    char upstream_text[64];
    struct rule *rules[RULE_MAX];
    size_t n_rules;
    uint64_t rng;
    uint64_t seed;
    size_t max_connections;
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
    struct buf head; /* request headers, "Name: value\r\n"... */
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
};

struct conn {
    struct proxy *proxy;
    struct conn *prev, *next;
    uint64_t id;
    uv_tcp_t client;
    struct upstream_link *link;
    int open_handles;
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

static http_parser_settings req_settings;
static http_parser_settings resp_settings;

static void conn_close(struct conn *conn, bool reset);
static void conn_reset_timer_cb(uv_timer_t *t);
static void conn_update_reading(struct conn *conn);
static void conn_after_io(struct conn *conn);
static void link_close(struct conn *conn);
static void outq_flush(struct outq *q);

/* ------------------------------------------------------------------ random */

/* splitmix64: small, seedable, and good enough to pick which requests fail. */
static uint64_t proxy_random_u64(struct proxy *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double proxy_random(struct proxy *p)
{
    return (double)(proxy_random_u64(p) >> 11) / (double)(1ULL << 53);
}

/* ------------------------------------------------------------------- rules */

static enum proxy_method_slot proxy_method_slot(const char *method)
{
    for (int i = 0; i < SLOT_OTHER; i++) {
        if (strcmp(proxy_method_slots[i], method) == 0)
            return (enum proxy_method_slot)i;
    }
    return SLOT_OTHER;
}

/*
 * Rules are tried in order. Shaping (delay, bandwidth) of every rule that
 * fires adds up; the first rule that fires with a fault gives the fault, and
 * later rules with a fault are not drawn: a rule's rate applies to the
 * requests the faults before it left alone.
 */
static void proxy_decide(struct proxy *p, const char *method, const char *target, struct plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->retry_after_s = -1;
    for (size_t i = 0; i < p->n_rules; i++) {
        struct rule *r = p->rules[i];
        if (!rule_matches(r, method, target))
            continue;
        r->matched++;
        if (r->count_left == 0)
            continue;
        if (r->fault != RULE_FAULT_NONE && plan->fault != RULE_FAULT_NONE)
            continue;
        if (r->rate < 1.0 && proxy_random(p) >= r->rate)
            continue;
        r->fired++;
        if (r->count_left > 0)
            r->count_left--;
        plan->delay_ms += r->delay_ms;
        if (r->bandwidth && (plan->bandwidth == 0 || r->bandwidth < plan->bandwidth))
            plan->bandwidth = r->bandwidth;
        if (r->fault != RULE_FAULT_NONE) {
            plan->fault = r->fault;
            plan->status = r->status;
            plan->retry_after_s = r->retry_after_s;
            plan->rule_number = i + 1;
        }
    }
}

static void proxy_count_fault(struct conn *conn, enum rule_fault fault, const char *detail)
{
    struct proxy *p = conn->proxy;
    p->stats.faults[fault]++;
    log_info("fault kind=%s conn=%" PRIu64 " method=%s target=%s rule=%zu%s%s",
             rule_fault_name(fault), conn->id, conn->ex.method,
             conn->ex.target.data ? conn->ex.target.data : "", conn->ex.plan.rule_number,
             detail ? " " : "", detail ? detail : "");
}

/* ------------------------------------------------------------ output queue */

static void outq_init(struct outq *q, struct conn *conn, uint64_t *counter)
{
    memset(q, 0, sizeof(*q));
    q->conn = conn;
    q->counter = counter;
    uv_timer_init(conn->proxy->loop, &q->timer);
    q->timer.data = q;
    conn->open_handles++;
}

static size_t outq_total(const struct outq *q)
{
    return q->queued + q->in_flight;
}

static size_t outq_chunk_cap(const struct outq *q)
{
    if (q->rate == 0)
        return PROXY_READ_SIZE;
    /* About 20 writes a second: paced bursts stay small at any rate. */
    uint64_t cap = q->rate / 20;
    if (cap < 256)
        cap = 256;
    if (cap > PROXY_PACED_CHUNK_MAX)
        cap = PROXY_PACED_CHUNK_MAX;
    return (size_t)cap;
}

/* Appends bytes (copied); they leave when the delay and the rate allow. */
static void outq_push(struct outq *q, const void *data, size_t len)
{
    const char *p = data;
    size_t cap = outq_chunk_cap(q);
    while (len > 0) {
        struct outq_chunk *c = q->tail;
        if (c == NULL || c->sent || c->len == c->cap) {
            c = xmalloc(sizeof(*c) + cap);
            memset(c, 0, sizeof(*c));
            c->q = q;
            c->cap = cap;
            if (q->tail)
                q->tail->next = c;
            else
                q->head = c;
            q->tail = c;
        }
        size_t n = c->cap - c->len;
        if (n > len)
            n = len;
        memcpy(c->data + c->len, p, n);
        c->len += n;
        q->queued += n;
        p += n;
        len -= n;
    }
}

static void outq_push_str(struct outq *q, const char *s)
{
    outq_push(q, s, strlen(s));
}

/* Forgets the bytes not yet written; writes in flight finish on their own. */
static void outq_drop(struct outq *q)
{
    struct outq_chunk *c = q->head;
    while (c) {
        struct outq_chunk *next = c->next;
        free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->queued = 0;
}

static void outq_timer_cb(uv_timer_t *timer)
{
    struct outq *q = timer->data;
    q->timer_armed = false;
    outq_flush(q);
    conn_after_io(q->conn);
}

static void outq_arm(struct outq *q, uint64_t ms)
{
    if (ms == 0)
        ms = 1;
    uv_timer_start(&q->timer, outq_timer_cb, ms, 0);
    q->timer_armed = true;
}

static void outq_write_cb(uv_write_t *req, int status)
{
    struct outq_chunk *c = container_of(req, struct outq_chunk, req);
    struct outq *q = c->q;
    struct conn *conn = q->conn;
    void *target = c->target;
    q->in_flight -= c->len;
    free(c);
    if (conn->closing)
        return;
    if (status < 0 && target == (void *)q->stream) {
        if (q == &conn->down) {
            log_debug("client write failed conn=%" PRIu64 " error=%s", conn->id,
                      uv_strerror(status));
            conn_close(conn, false);
            return;
        }
        log_warn("upstream write failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(status));
        conn->proxy->stats.upstream_errors++;
        link_close(conn);
    }
    conn_after_io(conn);
}

/* Writes what the delay and the rate allow now, and arms the timer for the rest. */
static void outq_flush(struct outq *q)
{
    struct conn *conn = q->conn;
    if (conn->closing || q->stream == NULL || q->head == NULL)
        return;
    uint64_t now = uv_now(conn->proxy->loop);
    if (now < q->not_before_ms) {
        if (!q->timer_armed)
            outq_arm(q, q->not_before_ms - now);
        return;
    }
    while (q->head) {
        struct outq_chunk *c = q->head;
        if (q->rate) {
            double burst = (double)q->rate / 10.0;
            if (burst < (double)PROXY_PACED_CHUNK_MAX)
                burst = (double)PROXY_PACED_CHUNK_MAX;
            q->tokens += (double)q->rate * (double)(now - q->tokens_ms) / 1000.0;
            q->tokens_ms = now;
            if (q->tokens > burst)
                q->tokens = burst;
            if (q->tokens <= 0.0) {
                if (!q->timer_armed)
                    outq_arm(q, (uint64_t)(-q->tokens * 1000.0 / (double)q->rate) + 1);
                return;
            }
            q->tokens -= (double)c->len;
        }
        q->head = c->next;
        if (q->head == NULL)
            q->tail = NULL;
        c->next = NULL;
        c->sent = true;
        c->target = q->stream;
        q->queued -= c->len;
        q->in_flight += c->len;
        *q->counter += c->len;
        uv_buf_t b = uv_buf_init(c->data, (unsigned int)c->len);
        int rc = uv_write(&c->req, q->stream, &b, 1, outq_write_cb);
        if (rc < 0) {
            q->in_flight -= c->len;
            free(c);
            log_debug("write failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
            if (q == &conn->down)
                conn_close(conn, false);
            else
                link_close(conn);
            return;
        }
    }
}

/* Sets the pace of a queue for the bytes pushed from now on. */
static void outq_shape(struct outq *q, uint64_t delay_ms, uint64_t rate)
{
    uint64_t now = uv_now(q->conn->proxy->loop);
    q->not_before_ms = delay_ms ? now + delay_ms : 0;
    if (rate != q->rate) {
        q->rate = rate;
        q->tokens = 0.0;
        q->tokens_ms = now;
    }
}

/* ---------------------------------------------------------------- exchange */

static void exchange_release(struct exchange *ex)
{
    buf_release(&ex->target);
    buf_release(&ex->head);
    buf_release(&ex->resp_head);
    buf_release(&ex->reason);
    memset(ex, 0, sizeof(*ex));
}

static void exchange_begin(struct exchange *ex)
{
    exchange_release(ex);
    ex->active = true;
    buf_init(&ex->target, PROXY_TARGET_MAX);
    buf_init(&ex->head, PROXY_HEAD_MAX);
    buf_init(&ex->resp_head, PROXY_HEAD_MAX);
    buf_init(&ex->reason, PROXY_REASON_MAX);
    ex->req_length = UINT64_MAX;
    ex->plan.retry_after_s = -1;
}

/* Collects one header callback into `head`; trailers (after the head) are dropped. */
static int exchange_header(struct exchange *ex, struct buf *head, bool field, const char *at,
                           size_t len)
{
    if (field) {
        if (ex->hdr_state == HDR_VALUE && buf_append(head, "\r\n", 2) < 0)
            return -1;
        if (ex->hdr_state != HDR_FIELD)
            ex->field_len = 0;
        ex->hdr_state = HDR_FIELD;
        for (size_t i = 0; i < len && ex->field_len < sizeof(ex->field) - 1; i++)
            ex->field[ex->field_len++] =
                (char)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] + 32 : at[i]);
        ex->field[ex->field_len] = '\0';
    } else {
        if (ex->hdr_state == HDR_FIELD && buf_append(head, ": ", 2) < 0)
            return -1;
        ex->hdr_state = HDR_VALUE;
    }
    return buf_append(head, at, len) < 0 ? -1 : 0;
}

static int exchange_headers_end(struct exchange *ex, struct buf *head)
{
    if (ex->hdr_state == HDR_VALUE && buf_append(head, "\r\n", 2) < 0)
        return -1;
    ex->hdr_state = HDR_NONE;
    if (head->data == NULL && buf_append(head, "", 0) < 0)
        return -1;
    return 0;
}

/*
 * Rewrites the Content-Length header of a collected head to `length`
 * (truncation). The head stays within its cap: a length never grows longer
 * than the one it replaces.
 */
static void head_set_content_length(struct buf *head, uint64_t length)
{
    struct buf out;
    buf_init(&out, PROXY_HEAD_MAX);
    const char *p = head->data;
    const char *end = head->data + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if ((size_t)(next - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            char line[64];
            snprintf(line, sizeof(line), "Content-Length: %" PRIu64 "\r\n", length);
            buf_append_str(&out, line);
        } else {
            buf_append(&out, p, (size_t)(next - p));
        }
        p = next;
    }
    buf_release(head);
    *head = out;
}

/* --------------------------------------------------------- made-up answers */

static const char *proxy_reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return (s && strcmp(s, "<unknown>") != 0) ? s : "Injected";
}

static const char *proxy_error_code(int status)
{
    switch (status) {
    case 429:
        return "TOOMANYREQUESTS";
    case 503:
        return "UNAVAILABLE";
    case 401:
        return "UNAUTHORIZED";
    case 404:
        return "NOT_FOUND";
    default:
        return "UNKNOWN";
    }
}

/* Queues a complete answer of the proxy's own, in a registry's error format. */
static void conn_push_answer(struct conn *conn, int status, int retry_after_s, bool keep_alive,
                             const char *message)
{
    char body[512];
    int blen = snprintf(body, sizeof(body),
                        "{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\",\"detail\":null}]}\n",
                        proxy_error_code(status), message);
    char head[768];
    char retry[48] = "";
    if (retry_after_s >= 0)
        snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", retry_after_s);
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
             "Content-Length: %d\r\nDocker-Distribution-Api-Version: registry/2.0\r\n"
             "X-Chaos-Proxy: %s\r\n%sConnection: %s\r\n\r\n",
             status, proxy_reason(status), blen, message, retry,
             keep_alive ? "keep-alive" : "close");
    outq_push_str(&conn->down, head);
    if (!conn->ex.is_head)
        outq_push(&conn->down, body, (size_t)blen);
    conn->proxy->stats.responses++;
    outq_flush(&conn->down);
}

/* Answers with an error and closes once it is sent; nothing more is read. */
static void conn_fail_with(struct conn *conn, int status, const char *message)
{
    conn->ex.dead = true;
    link_close(conn);
    if (conn->ex.resp_head_sent) {
        conn->mode = CONN_DRAINING;
        return;
    }
    conn->ex.resp_head_sent = true;
    conn_push_answer(conn, status, -1, false, message);
    conn->mode = CONN_DRAINING;
}

/* --------------------------------------------------------------- upstream */

static void conn_unref(struct conn *conn);

static void link_closed_cb(uv_handle_t *h)
{
    struct upstream_link *link = h->data;
    struct conn *conn = link->conn;
    free(link);
    conn_unref(conn);
}

/* Closes the upstream connection (if any) and forgets the bytes queued for it. */
static void link_close(struct conn *conn)
{
    struct upstream_link *link = conn->link;
    if (link == NULL)
        return;
    conn->link = NULL;
    link->detached = true;
    conn->up.stream = NULL;
    outq_drop(&conn->up);
    uv_close((uv_handle_t *)&link->tcp, link_closed_cb);
}

/*
 * The upstream failed in the middle of an exchange. When it could not be
 * reached the client gets a 502; when it dropped the connection before
 * answering, the client's connection is reset, as it would have been without
 * the proxy (a client retries that on a reused connection); in the middle of
 * an answer, the client's connection ends there.
 */
static void conn_upstream_failed(struct conn *conn, bool connecting, const char *why)
{
    conn->proxy->stats.upstream_errors++;
    struct exchange *ex = &conn->ex;
    if (!ex->active || ex->synthetic || ex->resp_complete) {
        link_close(conn);
        return;
    }
    log_warn("upstream failed conn=%" PRIu64 " method=%s target=%s error=%s", conn->id, ex->method,
             ex->target.data ? ex->target.data : "", why);
    if (!connecting && !ex->resp_started) {
        ex->dead = true;
        link_close(conn);
        conn->mode = CONN_RESETTING;
        conn->reset_polls = 0;
        uv_timer_start(&conn->reset_timer, conn_reset_timer_cb, 0, PROXY_RESET_POLL_MS);
        return;
    }
    conn_fail_with(conn, 502, "ferry-chaos-proxy: the upstream failed");
}

static void link_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void link_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct upstream_link *link = h->data;
    struct proxy *p = link->conn->proxy;
    *buf = uv_buf_init(p->read_buf, sizeof(p->read_buf));
}

static void link_connect_cb(uv_connect_t *req, int status)
{
    struct upstream_link *link = container_of(req, struct upstream_link, connect);
    if (link->detached)
        return;
    struct conn *conn = link->conn;
    if (status < 0) {
        conn_upstream_failed(conn, true, uv_strerror(status));
        conn_after_io(conn);
        return;
    }
    link->connected = true;
    uv_tcp_nodelay(&link->tcp, 1);
    conn->up.stream = (uv_stream_t *)&link->tcp;
    outq_flush(&conn->up);
    conn_after_io(conn);
}

static int link_open(struct conn *conn)
{
    struct upstream_link *link = xcalloc(1, sizeof(*link));
    link->conn = conn;
    uv_tcp_init(conn->proxy->loop, &link->tcp);
    link->tcp.data = link;
    conn->open_handles++;
    int rc = uv_tcp_connect(&link->connect, &link->tcp,
                            (const struct sockaddr *)&conn->proxy->upstream, link_connect_cb);
    conn->link = link;
    if (rc < 0) {
        link_close(conn);
        return rc;
    }
    http_parser_init(&conn->resp_parser, HTTP_RESPONSE);
    conn->resp_parser.data = conn;
    return 0;
}

/* -------------------------------------------------------- request parsing */

static int req_on_message_begin(http_parser *hp)
{
    struct conn *conn = hp->data;
    exchange_begin(&conn->ex);
    return 0;
}

static int req_on_url(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    return buf_append(&conn->ex.target, at, len) < 0 ? -1 : 0;
}

static int req_on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    if (conn->ex.req_headers_done)
        return 0;
    return exchange_header(&conn->ex, &conn->ex.head, true, at, len);
}

static int req_on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    if (ex->req_headers_done)
        return 0;
    if (strcmp(ex->field, "expect") == 0 && len >= 3 && strncasecmp(at, "100", 3) == 0)
        ex->expect_continue = true;
    return exchange_header(ex, &ex->head, false, at, len);
}

/* Pushes body bytes to a queue, re-chunked when the body came chunked, with
 * byte `flip` (an index into `data`, or SIZE_MAX for none) inverted. */
static void forward_body(struct outq *q, bool chunked, const char *data, size_t len, size_t flip)
{
    if (len == 0)
        return;
    if (chunked) {
        char size[24];
        snprintf(size, sizeof(size), "%zx\r\n", len);
        outq_push_str(q, size);
    }
    if (flip < len) {
        char flipped = (char)(data[flip] ^ 0xff);
        outq_push(q, data, flip);
        outq_push(q, &flipped, 1);
        outq_push(q, data + flip + 1, len - flip - 1);
    } else {
        outq_push(q, data, len);
    }
    if (chunked)
        outq_push(q, "\r\n", 2);
}

/* Swallows the connection: everything read is dropped, nothing is answered. */
static void conn_blackhole(struct conn *conn)
{
    if (conn->mode != CONN_PROXY)
        return;
    conn->mode = CONN_BLACKHOLE;
    conn->ex.dead = true;
    link_close(conn);
    outq_drop(&conn->down);
    proxy_count_fault(conn, RULE_FAULT_BLACKHOLE, NULL);
}

/*
 * Resets the client connection once the bytes queued before the fault have
 * left (so "mid-body" means the client really got part of the body), but at
 * most a second later.
 */
static void conn_inject_reset(struct conn *conn)
{
    if (conn->mode != CONN_PROXY)
        return;
    conn->mode = CONN_RESETTING;
    conn->ex.dead = true;
    link_close(conn);
    conn->reset_polls = 0;
    uv_timer_start(&conn->reset_timer, conn_reset_timer_cb, 0, PROXY_RESET_POLL_MS);
}

static void conn_reset_timer_cb(uv_timer_t *t)
{
    struct conn *conn = t->data;
    int unsent = 0;
    uv_os_fd_t fd;
    if (outq_total(&conn->down) > 0 && conn->reset_polls < PROXY_RESET_POLL_MAX) {
        conn->reset_polls++;
        return;
    }
    if (uv_fileno((uv_handle_t *)&conn->client, &fd) == 0 && ioctl(fd, SIOCOUTQ, &unsent) == 0 &&
        unsent > 0 && conn->reset_polls < PROXY_RESET_POLL_MAX) {
        conn->reset_polls++;
        return;
    }
    uv_timer_stop(t);
    conn_close(conn, true);
}

/*
 * The body faults both directions share. The body piece `at`/`len` starts
 * at byte `before` of the body. body_reset_mid: when the reset point falls
 * in this piece, forward what comes before it, reset the connection and
 * return true. body_flip_at: when the byte to flip falls in this piece, its
 * index in it, else SIZE_MAX.
 */
static bool body_reset_mid(struct conn *conn, struct outq *q, bool chunked, const char *side,
                           uint64_t before, const char *at, size_t len)
{
    struct exchange *ex = &conn->ex;
    uint64_t cut = ex->mid_at == UINT64_MAX ? before + len / 2 : ex->mid_at;
    if (cut >= before + len)
        return false;
    forward_body(q, chunked, at, (size_t)(cut - before), SIZE_MAX);
    outq_flush(q);
    ex->mid_done = true;
    char detail[64];
    snprintf(detail, sizeof(detail), "side=%s at=%" PRIu64, side, cut);
    proxy_count_fault(conn, RULE_FAULT_RESET_MID, detail);
    conn_inject_reset(conn);
    return true;
}

static size_t body_flip_at(struct conn *conn, const char *side, uint64_t before, size_t len)
{
    struct exchange *ex = &conn->ex;
    uint64_t off =
        ex->flip_at == UINT64_MAX ? before + proxy_random_u64(conn->proxy) % len : ex->flip_at;
    if (off < before || off >= before + len)
        return SIZE_MAX;
    ex->flipped = true;
    char detail[64];
    snprintf(detail, sizeof(detail), "side=%s at=%" PRIu64, side, off);
    proxy_count_fault(conn, RULE_FAULT_FLIP, detail);
    return (size_t)(off - before);
}

static int req_on_headers_complete(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;

    ex->req_headers_done = true;
    if (exchange_headers_end(ex, &ex->head) < 0 || buf_append(&ex->target, "", 0) < 0)
        return -1;
    snprintf(ex->method, sizeof(ex->method), "%s", http_method_str((enum http_method)hp->method));
    ex->req_chunked = (hp->flags & F_CHUNKED) != 0;
    if (hp->flags & F_CONTENTLENGTH)
        ex->req_length = hp->content_length;
    ex->req_has_body = ex->req_chunked || (ex->req_length != UINT64_MAX && ex->req_length > 0);
    ex->req_keep_alive = http_should_keep_alive(hp) != 0;
    ex->is_head = hp->method == HTTP_HEAD;
    p->stats.requests++;
    p->stats.requests_by_method[proxy_method_slot(ex->method)]++;
    if (conn->mode != CONN_PROXY)
        return 0;

    proxy_decide(p, ex->method, ex->target.data, &ex->plan);
    log_debug("request conn=%" PRIu64 " method=%s target=%s fault=%s", conn->id, ex->method,
              ex->target.data, rule_fault_name(ex->plan.fault));
    outq_shape(&conn->up, ex->plan.delay_ms, ex->plan.bandwidth);
    outq_shape(&conn->down, 0, ex->plan.bandwidth);
    if (ex->plan.delay_ms) {
        p->stats.delayed++;
        log_info("fault kind=delay conn=%" PRIu64 " method=%s target=%s delay_ms=%" PRIu64,
                 conn->id, ex->method, ex->target.data, ex->plan.delay_ms);
    }
    if (ex->plan.bandwidth)
        p->stats.bandwidth_limited++;

    switch (ex->plan.fault) {
    case RULE_FAULT_BLACKHOLE:
        conn_blackhole(conn);
        return 0;
    case RULE_FAULT_STATUS:
        ex->synthetic = true;
        if (ex->expect_continue && ex->req_has_body) {
            outq_push_str(&conn->down, "HTTP/1.1 100 Continue\r\n\r\n");
            outq_flush(&conn->down);
        }
        return 0;
    case RULE_FAULT_FLIP:
        if (ex->req_has_body) {
            ex->flip_req = true;
            ex->flip_at = ex->req_chunked ? UINT64_MAX : proxy_random_u64(p) % ex->req_length;
        }
        break;
    case RULE_FAULT_RESET_MID:
        if (ex->req_has_body) {
            ex->mid_req = true;
            ex->mid_at = ex->req_chunked ? UINT64_MAX : ex->req_length / 2;
        }
        break;
    default:
        break;
    }

    if (conn->link == NULL && link_open(conn) < 0) {
        conn_upstream_failed(conn, true, "connect failed");
        return 0;
    }
    char line[64];
    snprintf(line, sizeof(line), " HTTP/%u.%u\r\n", hp->http_major, hp->http_minor);
    outq_push_str(&conn->up, ex->method);
    outq_push_str(&conn->up, " ");
    outq_push(&conn->up, ex->target.data, ex->target.len);
    outq_push_str(&conn->up, line);
    outq_push(&conn->up, ex->head.data, ex->head.len);
    outq_push(&conn->up, "\r\n", 2);
    outq_flush(&conn->up);
    return 0;
}

static int req_on_body(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    if (conn->mode != CONN_PROXY || ex->synthetic || ex->dead)
        return 0;
    uint64_t before = ex->req_seen;
    ex->req_seen += len;
    if (ex->mid_req && !ex->mid_done &&
        body_reset_mid(conn, &conn->up, ex->req_chunked, "request", before, at, len))
        return 0;
    size_t flip =
        ex->flip_req && !ex->flipped ? body_flip_at(conn, "request", before, len) : SIZE_MAX;
    forward_body(&conn->up, ex->req_chunked, at, len, flip);
    outq_flush(&conn->up);
    return 0;
}

static int req_on_message_complete(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    ex->req_complete = true;
    /* One request at a time: the bytes after it wait until its response is done. */
    http_parser_pause(hp, 1);
    conn->req_paused = true;
    if (conn->mode != CONN_PROXY || ex->dead)
        return 0;
    if (ex->synthetic) {
        char detail[48];
        snprintf(detail, sizeof(detail), "status=%d", ex->plan.status);
        proxy_count_fault(conn, RULE_FAULT_STATUS, detail);
        conn->proxy->stats.status_by_code[ex->plan.status]++;
        ex->resp_head_sent = true;
        conn_push_answer(conn, ex->plan.status, ex->plan.retry_after_s, ex->req_keep_alive,
                         "injected by ferry-chaos-proxy");
        ex->resp_keep_alive = ex->req_keep_alive;
        ex->resp_complete = true;
        return 0;
    }
    if (ex->req_chunked) {
        outq_push_str(&conn->up, "0\r\n\r\n");
        outq_flush(&conn->up);
    }
    return 0;
}

/* ------------------------------------------------------- response parsing */

static int resp_on_message_begin(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    buf_reset(&ex->resp_head);
    buf_reset(&ex->reason);
    ex->resp_started = true;
    ex->hdr_state = HDR_NONE;
    ex->resp_headers_done = false;
    return 0;
}

static int resp_on_status(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    return buf_append(&conn->ex.reason, at, len) < 0 ? -1 : 0;
}

static int resp_on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    if (conn->ex.resp_headers_done)
        return 0;
    return exchange_header(&conn->ex, &conn->ex.resp_head, true, at, len);
}

static int resp_on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    if (conn->ex.resp_headers_done)
        return 0;
    return exchange_header(&conn->ex, &conn->ex.resp_head, false, at, len);
}

static int resp_on_headers_complete(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    ex->resp_headers_done = true;
    if (exchange_headers_end(ex, &ex->resp_head) < 0)
        return -1;
    if (conn->mode != CONN_PROXY || ex->dead)
        return ex->is_head ? 1 : 0;

    int status = hp->status_code;
    bool has_length = (hp->flags & F_CONTENTLENGTH) != 0;
    uint64_t length = hp->content_length;
    bool chunked = (hp->flags & F_CHUNKED) != 0;
    bool informational = status / 100 == 1;
    bool no_body = ex->is_head || informational || status == 204 || status == 304 ||
                   (has_length && length == 0);

    if (!informational) {
        ex->resp_status = status;
        ex->resp_chunked = chunked;
        ex->resp_eof_body = !no_body && !has_length && !chunked;
        ex->resp_keep_alive = http_should_keep_alive(hp) != 0;
        switch (ex->plan.fault) {
        case RULE_FAULT_RESET_BEFORE:
            proxy_count_fault(conn, RULE_FAULT_RESET_BEFORE, NULL);
            conn_inject_reset(conn);
            return ex->is_head ? 1 : 0;
        case RULE_FAULT_RESET_MID:
            if (ex->mid_req)
                break;
            if (no_body) {
                /* Nothing to cut in the middle of: the reset comes before the answer. */
                proxy_count_fault(conn, RULE_FAULT_RESET_BEFORE, "asked=mid body=none");
                conn_inject_reset(conn);
                return ex->is_head ? 1 : 0;
            }
            ex->mid_resp = true;
            ex->mid_at = has_length ? length / 2 : UINT64_MAX;
            break;
        case RULE_FAULT_TRUNCATE:
            if (no_body)
                break;
            ex->truncating = true;
            if (has_length) {
                ex->trunc_at = length / 2;
                head_set_content_length(&ex->resp_head, ex->trunc_at);
            } else {
                ex->trunc_at = UINT64_MAX;
            }
            break;
        case RULE_FAULT_FLIP:
            if (ex->flip_req || no_body)
                break;
            ex->flip_resp = true;
            ex->flip_at = has_length ? proxy_random_u64(p) % length : UINT64_MAX;
            break;
        default:
            break;
        }
    }

    char line[PROXY_REASON_MAX + 64];
    snprintf(line, sizeof(line), "HTTP/%u.%u %d %s\r\n", hp->http_major, hp->http_minor, status,
             ex->reason.data ? ex->reason.data : "");
    outq_push_str(&conn->down, line);
    outq_push(&conn->down, ex->resp_head.data, ex->resp_head.len);
    outq_push(&conn->down, "\r\n", 2);
    if (!informational)
        ex->resp_head_sent = true;
    outq_flush(&conn->down);
    return ex->is_head ? 1 : 0;
}

static int resp_on_body(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    if (conn->mode != CONN_PROXY || ex->dead || ex->resp_discard)
        return 0;
    uint64_t before = ex->resp_seen;
    ex->resp_seen += len;
    if (ex->mid_resp && !ex->mid_done &&
        body_reset_mid(conn, &conn->down, ex->resp_chunked, "response", before, at, len))
        return 0;
    if (ex->truncating) {
        if (ex->trunc_at == UINT64_MAX)
            ex->trunc_at = before + len / 2;
        if (before + len > ex->trunc_at) {
            forward_body(&conn->down, ex->resp_chunked, at, (size_t)(ex->trunc_at - before),
                         SIZE_MAX);
            ex->resp_discard = true;
            char detail[64];
            snprintf(detail, sizeof(detail), "at=%" PRIu64, ex->trunc_at);
            proxy_count_fault(conn, RULE_FAULT_TRUNCATE, detail);
            if (ex->resp_chunked) {
                outq_push_str(&conn->down, "0\r\n\r\n");
                ex->resp_terminated = true;
            } else if (ex->resp_eof_body) {
                /* The body ends where the connection does. */
                conn->close_after_flush = true;
            }
            outq_flush(&conn->down);
            return 0;
        }
    }
    size_t flip =
        ex->flip_resp && !ex->flipped ? body_flip_at(conn, "response", before, len) : SIZE_MAX;
    forward_body(&conn->down, ex->resp_chunked, at, len, flip);
    outq_flush(&conn->down);
    return 0;
}

static int resp_on_message_complete(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    if (hp->status_code / 100 == 1)
        return 0; /* the final answer follows */
    http_parser_pause(hp, 1);
    ex->resp_complete = true;
    if (conn->mode != CONN_PROXY || ex->dead)
        return 0;
    conn->proxy->stats.responses++;
    if (ex->resp_chunked && !ex->resp_terminated) {
        outq_push_str(&conn->down, "0\r\n\r\n");
        outq_flush(&conn->down);
    }
    if (!ex->resp_keep_alive)
        conn->close_after_flush = true;
    return 0;
}

/* -------------------------------------------------------------- data flow */

static void conn_feed(struct conn *conn, const char *data, size_t len);

/* The exchange is done both ways: the next request, if any, may start. */
static void exchange_finish(struct conn *conn)
{
    struct exchange *ex = &conn->ex;
    bool keep = ex->req_keep_alive && ex->resp_keep_alive && !conn->close_after_flush;
    exchange_release(ex);
    if (!keep) {
        conn->close_after_flush = true;
        conn->mode = CONN_DRAINING;
        link_close(conn);
        return;
    }
    http_parser_init(&conn->resp_parser, HTTP_RESPONSE);
    conn->resp_parser.data = conn;
    http_parser_pause(&conn->req_parser, 0);
    conn->req_paused = false;
    if (conn->pending_len > 0) {
        size_t n = conn->pending_len;
        char *copy = xmalloc(n);
        memcpy(copy, conn->pending, n);
        conn->pending_len = 0;
        conn_feed(conn, copy, n);
        free(copy);
    }
}

static void conn_bad_request(struct conn *conn, const char *why)
{
    conn->proxy->stats.bad_requests++;
    log_warn("bad request conn=%" PRIu64 " error=%s", conn->id, why);
    conn_fail_with(conn, 400, "ferry-chaos-proxy: malformed request");
}

/* Parses client bytes; what follows a complete request waits in `pending`. */
static void conn_feed(struct conn *conn, const char *data, size_t len)
{
    if (conn->closing || conn->mode != CONN_PROXY)
        return; /* blackholed, resetting or draining: the bytes are dropped */
    if (conn->req_paused) {
        if (conn->pending == NULL)
            conn->pending = xmalloc(PROXY_PENDING_MAX);
        if (len > PROXY_PENDING_MAX - conn->pending_len) {
            conn_bad_request(conn, "too many pipelined bytes");
            return;
        }
        memcpy(conn->pending + conn->pending_len, data, len);
        conn->pending_len += len;
        return;
    }
    size_t n = http_parser_execute(&conn->req_parser, &req_settings, data, len);
    if (conn->closing)
        return;
    enum http_errno err = HTTP_PARSER_ERRNO(&conn->req_parser);
    if (err == HPE_PAUSED) {
        if (n < len && conn->mode == CONN_PROXY)
            conn_feed(conn, data + n, len - n); /* req_paused: goes to pending, no recursion */
        return;
    }
    if (err != HPE_OK) {
        if (conn->mode == CONN_PROXY)
            conn_bad_request(conn, http_errno_description(err));
        return;
    }
    if (conn->req_parser.upgrade && conn->mode == CONN_PROXY)
        conn_bad_request(conn, "upgrade and CONNECT are not supported");
}

/* Finishes done exchanges, then reading and closing follow the new state. */
static void conn_after_io(struct conn *conn)
{
    if (conn->closing)
        return;
    /* Each round consumes at least one pending byte or stops. */
    for (size_t round = 0; round <= PROXY_PENDING_MAX; round++) {
        struct exchange *ex = &conn->ex;
        if (conn->closing || conn->mode != CONN_PROXY || !ex->active || !ex->req_complete ||
            !ex->resp_complete)
            break;
        exchange_finish(conn);
    }
    if (conn->closing)
        return;
    if ((conn->close_after_flush || conn->mode == CONN_DRAINING) && conn->mode != CONN_RESETTING &&
        conn->mode != CONN_BLACKHOLE && outq_total(&conn->down) == 0) {
        conn_close(conn, false);
        return;
    }
    conn_update_reading(conn);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *conn = h->data;
    *buf = uv_buf_init(conn->proxy->read_buf, sizeof(conn->proxy->read_buf));
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *conn = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* The client went away: whatever was in flight for it is abandoned. */
        conn_close(conn, false);
        return;
    }
    conn_feed(conn, buf->base, (size_t)nread);
    conn_after_io(conn);
}

static void link_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct upstream_link *link = stream->data;
    if (link->detached || nread == 0)
        return;
    struct conn *conn = link->conn;
    struct exchange *ex = &conn->ex;
    if (nread < 0) {
        if (ex->active && !ex->synthetic && !ex->resp_complete && conn->mode == CONN_PROXY) {
            /* A body delimited by the end of the connection ends here. */
            http_parser_execute(&conn->resp_parser, &resp_settings, NULL, 0);
            if (!ex->resp_complete)
                conn_upstream_failed(conn, false,
                                     nread == UV_EOF ? "closed before the response ended"
                                                     : uv_strerror((int)nread));
        }
        link_close(conn);
        conn_after_io(conn);
        return;
    }
    if (!ex->active || ex->synthetic || ex->resp_complete || conn->mode != CONN_PROXY) {
        if (conn->mode == CONN_PROXY)
            log_warn("upstream sent bytes nobody asked for conn=%" PRIu64, conn->id);
        link_close(conn);
        conn_after_io(conn);
        return;
    }
    size_t n = http_parser_execute(&conn->resp_parser, &resp_settings, buf->base, (size_t)nread);
    if (conn->closing)
        return;
    enum http_errno err = HTTP_PARSER_ERRNO(&conn->resp_parser);
    if (err == HPE_PAUSED) {
        if (n < (size_t)nread)
            link_close(conn); /* more than one answer to one request: not ours to forward */
    } else if (err != HPE_OK && conn->mode == CONN_PROXY) {
        conn_upstream_failed(conn, false, http_errno_description(err));
    }
    conn_after_io(conn);
}

/* Reads each side only while the queue it feeds has room (and the request is not paused). */
static void conn_update_reading(struct conn *conn)
{
    if (conn->closing)
        return;
    bool want_client = false;
    if (conn->mode == CONN_BLACKHOLE)
        want_client = true;
    else if (conn->mode == CONN_PROXY && !conn->req_paused)
        want_client =
            outq_total(&conn->up) < (conn->reading_client ? PROXY_HIGH_WATER : PROXY_LOW_WATER);
    if (want_client != conn->reading_client) {
        if (want_client)
            uv_read_start((uv_stream_t *)&conn->client, conn_alloc_cb, conn_read_cb);
        else
            uv_read_stop((uv_stream_t *)&conn->client);
        conn->reading_client = want_client;
    }
    struct upstream_link *link = conn->link;
    if (link && link->connected) {
        bool want_up =
            conn->mode == CONN_PROXY &&
            outq_total(&conn->down) < (link->reading ? PROXY_HIGH_WATER : PROXY_LOW_WATER);
        if (want_up != link->reading) {
            if (want_up)
                uv_read_start((uv_stream_t *)&link->tcp, link_alloc_cb, link_read_cb);
            else
                uv_read_stop((uv_stream_t *)&link->tcp);
            link->reading = want_up;
        }
    }
}

/* ------------------------------------------------------------- lifecycle */

/* Every handle of a connection holds a reference; the last close frees it. */
static void conn_unref(struct conn *conn)
{
    if (--conn->open_handles == 0)
        free(conn);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void outq_timer_closed(uv_handle_t *h)
{
    conn_unref(((struct outq *)h->data)->conn);
}

static void conn_close(struct conn *conn, bool reset)
{
    if (conn->closing)
        return;
    struct proxy *p = conn->proxy;
    link_close(conn);
    conn->closing = true;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        p->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    p->n_conns--;
    outq_drop(&conn->up);
    outq_drop(&conn->down);
    exchange_release(&conn->ex);
    free(conn->pending);
    conn->pending = NULL;
    uv_close((uv_handle_t *)&conn->up.timer, outq_timer_closed);
    uv_close((uv_handle_t *)&conn->down.timer, outq_timer_closed);
    uv_close((uv_handle_t *)&conn->reset_timer, conn_handle_closed);
    if (reset && uv_tcp_close_reset(&conn->client, conn_handle_closed) == 0)
        return;
    uv_close((uv_handle_t *)&conn->client, conn_handle_closed);
}

static void proxy_accept_cb(uv_stream_t *server, int status)
{
    struct proxy *p = server->data;
    if (status < 0) {
        log_warn("accept failed error=%s", uv_strerror(status));
        return;
    }
    struct conn *conn = xcalloc(1, sizeof(*conn));
    conn->proxy = p;
    conn->id = ++p->stats.connections;
    uv_tcp_init(p->loop, &conn->client);
    conn->client.data = conn;
    conn->open_handles = 1;
    if (uv_accept(server, (uv_stream_t *)&conn->client) < 0 || p->stopping ||
        p->n_conns >= p->max_connections) {
        if (p->n_conns >= p->max_connections)
            p->stats.connections_refused++;
        uv_close((uv_handle_t *)&conn->client, conn_handle_closed);
        return;
    }
    uv_tcp_nodelay(&conn->client, 1);
    outq_init(&conn->up, conn, &p->stats.bytes_to_upstream);
    outq_init(&conn->down, conn, &p->stats.bytes_to_client);
    conn->down.stream = (uv_stream_t *)&conn->client;
    uv_timer_init(p->loop, &conn->reset_timer);
    conn->reset_timer.data = conn;
    conn->open_handles++;
    http_parser_init(&conn->req_parser, HTTP_REQUEST);
    conn->req_parser.data = conn;
    http_parser_init(&conn->resp_parser, HTTP_RESPONSE);
    conn->resp_parser.data = conn;
    conn->next = p->conns;
    if (p->conns)
        p->conns->prev = conn;
    p->conns = conn;
    p->n_conns++;
    conn_update_reading(conn);
}

/* A new blackhole rule takes the matching requests already in flight, too. */
static void proxy_rules_changed(struct proxy *p)
{
    struct conn *next;
    for (struct conn *conn = p->conns; conn; conn = next) {
        next = conn->next;
        struct exchange *ex = &conn->ex;
        if (conn->mode != CONN_PROXY || !ex->active || !ex->req_headers_done || ex->synthetic)
            continue;
        for (size_t i = 0; i < p->n_rules; i++) {
            struct rule *r = p->rules[i];
            if (r->fault != RULE_FAULT_BLACKHOLE || r->count_left == 0 ||
                !rule_matches(r, ex->method, ex->target.data))
                continue;
            if (r->rate < 1.0 && proxy_random(p) >= r->rate)
                continue;
            r->fired++;
            if (r->count_left > 0)
                r->count_left--;
            ex->plan.rule_number = i + 1;
            conn_blackhole(conn);
            conn_after_io(conn);
            break;
        }
    }
}

/* ------------------------------------------------------------------ rules */

static void proxy_clear_rules(struct proxy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(p->rules[i]);
    p->n_rules = 0;
}

/*
 * Parses a rules document: JSON (["RULE", ...] or {"rules": [...]}) when it
 * starts with [ or {, else one rule per line (blank lines and # comments
 * skipped). All or nothing: on error nothing is kept and `err` says why.
 */
static int proxy_parse_rules(const char *text, struct rule **out, size_t max, size_t *n_out,
                             char *err, size_t err_len)
{
    int rc = 0;
    size_t n = 0;
    cJSON *json = NULL;
    const char *s = text;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s == '[' || *s == '{') {
        json = cJSON_Parse(s);
        cJSON *list = json;
        if (json && cJSON_IsObject(json))
            list = cJSON_GetObjectItemCaseSensitive(json, "rules");
        if (!list || !cJSON_IsArray(list)) {
            snprintf(err, err_len, "bad rules: want JSON [\"RULE\", ...] or {\"rules\": [...]}");
            rc = FERRY_EINVAL;
            goto out;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, list)
        {
            if (!cJSON_IsString(item)) {
                snprintf(err, err_len, "bad rules: every rule must be a string");
                rc = FERRY_EINVAL;
                goto out;
            }
            if (n == max) {
                snprintf(err, err_len, "bad rules: more than %d rules", RULE_MAX);
                rc = FERRY_EINVAL;
                goto out;
            }
            rc = rule_parse(item->valuestring, &out[n], err, err_len);
            if (rc < 0)
                goto out;
            n++;
        }
        goto out;
    }
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        char line[RULE_LINE_MAX + 2];
        if (len > RULE_LINE_MAX) {
            snprintf(err, err_len, "bad rule: a line is longer than %d bytes", RULE_LINE_MAX);
            rc = FERRY_EINVAL;
            goto out;
        }
        memcpy(line, s, len);
        line[len] = '\0';
        s = eol ? eol + 1 : s + len;
        char *t = line;
        while (*t == ' ' || *t == '\t' || *t == '\r')
            t++;
        if (*t == '\0' || *t == '#')
            continue;
        if (n == max) {
            snprintf(err, err_len, "bad rules: more than %d rules", RULE_MAX);
            rc = FERRY_EINVAL;
            goto out;
        }
        rc = rule_parse(t, &out[n], err, err_len);
        if (rc < 0)
            goto out;
        n++;
    }
out:
    cJSON_Delete(json);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            rule_free(out[i]);
        n = 0;
    }
    *n_out = n;
    return rc;
}

/* ---------------------------------------------------------------- control */

struct control_conn {
    uv_tcp_t tcp;
    struct proxy *proxy;
    http_parser parser;
    struct buf target;
    struct buf body;
    size_t head_bytes;
    bool complete;
    bool answered;
};

struct control_write {
    uv_write_t req;
    struct control_conn *cc;
    char *data;
};

static void control_closed_cb(uv_handle_t *h)
{
    struct control_conn *cc = h->data;
    buf_release(&cc->target);
    buf_release(&cc->body);
    free(cc);
}

static void control_written_cb(uv_write_t *req, int status)
{
    (void)status;
    struct control_write *w = container_of(req, struct control_write, req);
    struct control_conn *cc = w->cc;
    free(w->data);
    free(w);
    if (!uv_is_closing((uv_handle_t *)&cc->tcp))
        uv_close((uv_handle_t *)&cc->tcp, control_closed_cb);
}

static void control_answer(struct control_conn *cc, int status, cJSON *body)
{
    char *text = xjson_print(body, false);
    cJSON_Delete(body);
    cc->answered = true;
    uv_read_stop((uv_stream_t *)&cc->tcp);
    struct control_write *w = xcalloc(1, sizeof(*w));
    w->cc = cc;
    w->data = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                        status, proxy_reason(status), strlen(text) + 1, text);
    free(text);
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)strlen(w->data));
    if (uv_write(&w->req, (uv_stream_t *)&cc->tcp, &b, 1, control_written_cb) < 0) {
        free(w->data);
        free(w);
        uv_close((uv_handle_t *)&cc->tcp, control_closed_cb);
    }
}

static cJSON *control_error(const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    return o;
}

static cJSON *proxy_stats_json(struct proxy *p)
{
    struct proxy_stats *s = &p->stats;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "connections", (double)s->connections);
    cJSON_AddNumberToObject(o, "connections_open", (double)p->n_conns);
    cJSON_AddNumberToObject(o, "connections_refused", (double)s->connections_refused);
    cJSON_AddNumberToObject(o, "requests", (double)s->requests);
    cJSON *m = cJSON_AddObjectToObject(o, "requests_by_method");
    for (int i = 0; i < N_METHOD_SLOTS; i++)
        cJSON_AddNumberToObject(m, proxy_method_slots[i], (double)s->requests_by_method[i]);
    cJSON_AddNumberToObject(o, "responses", (double)s->responses);
    cJSON_AddNumberToObject(o, "upstream_errors", (double)s->upstream_errors);
    cJSON_AddNumberToObject(o, "bad_requests", (double)s->bad_requests);
    cJSON_AddNumberToObject(o, "bytes_to_upstream", (double)s->bytes_to_upstream);
    cJSON_AddNumberToObject(o, "bytes_to_client", (double)s->bytes_to_client);
    cJSON *f = cJSON_AddObjectToObject(o, "faults");
    uint64_t total = 0;
    for (int i = 1; i < N_FAULTS; i++) {
        cJSON_AddNumberToObject(f, rule_fault_name((enum rule_fault)i), (double)s->faults[i]);
        total += s->faults[i];
    }
    cJSON_AddNumberToObject(f, "delay", (double)s->delayed);
    cJSON_AddNumberToObject(f, "bandwidth", (double)s->bandwidth_limited);
    cJSON_AddNumberToObject(o, "faults_total", (double)total);
    cJSON *codes = cJSON_AddObjectToObject(o, "status_injected");
    for (int c = 100; c < 600; c++) {
        if (s->status_by_code[c]) {
            char key[8];
            snprintf(key, sizeof(key), "%d", c);
            cJSON_AddNumberToObject(codes, key, (double)s->status_by_code[c]);
        }
    }
    cJSON_AddNumberToObject(o, "rules", (double)p->n_rules);
    cJSON_AddNumberToObject(o, "seed", (double)p->seed);
    return o;
}

static cJSON *proxy_rules_json(struct proxy *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "rules");
    for (size_t i = 0; i < p->n_rules; i++) {
        struct rule *r = p->rules[i];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "rule", r->text);
        cJSON_AddNumberToObject(item, "matched", (double)r->matched);
        cJSON_AddNumberToObject(item, "fired", (double)r->fired);
        if (r->count_left >= 0)
            cJSON_AddNumberToObject(item, "count_left", (double)r->count_left);
        cJSON_AddItemToArray(list, item);
    }
    return o;
}

static void control_handle(struct control_conn *cc)
{
    struct proxy *p = cc->proxy;
    const char *method = http_method_str((enum http_method)cc->parser.method);
    char path[256];
    snprintf(path, sizeof(path), "%s", cc->target.data ? cc->target.data : "");
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';

    if (strcmp(path, "/healthz") == 0) {
        control_answer(cc, 200, cJSON_CreateObject());
        return;
    }
    if (strcmp(path, "/stats") == 0) {
        if (strcmp(method, "GET") == 0) {
            control_answer(cc, 200, proxy_stats_json(p));
        } else if (strcmp(method, "DELETE") == 0) {
            memset(&p->stats, 0, sizeof(p->stats));
            control_answer(cc, 200, proxy_stats_json(p));
        } else {
            control_answer(cc, 405, control_error("want GET or DELETE"));
        }
        return;
    }
    if (strcmp(path, "/rules") != 0) {
        control_answer(cc, 404, control_error("unknown path (want /rules, /stats, /healthz)"));
        return;
    }
    if (strcmp(method, "GET") == 0) {
        control_answer(cc, 200, proxy_rules_json(p));
        return;
    }
    if (strcmp(method, "DELETE") == 0) {
        proxy_clear_rules(p);
        log_info("rules cleared");
        control_answer(cc, 200, proxy_rules_json(p));
        return;
    }
    bool replace = strcmp(method, "PUT") == 0;
    if (!replace && strcmp(method, "POST") != 0) {
        control_answer(cc, 405, control_error("want GET, PUT, POST or DELETE"));
        return;
    }
    struct rule *parsed[RULE_MAX];
    size_t n = 0;
    char err[1400];
    size_t room = replace ? RULE_MAX : RULE_MAX - p->n_rules;
    if (proxy_parse_rules(cc->body.data ? cc->body.data : "", parsed, room, &n, err, sizeof(err)) <
        0) {
        log_warn("control: %s", err);
        control_answer(cc, 400, control_error(err));
        return;
    }
    if (replace)
        proxy_clear_rules(p);
    for (size_t i = 0; i < n; i++) {
        log_info("rule added number=%zu rule='%s'", p->n_rules + 1, parsed[i]->text);
        p->rules[p->n_rules++] = parsed[i];
    }
    proxy_rules_changed(p);
    control_answer(cc, 200, proxy_rules_json(p));
}

static int control_on_url(http_parser *hp, const char *at, size_t len)
{
    struct control_conn *cc = hp->data;
    return buf_append(&cc->target, at, len) < 0 ? -1 : 0;
}

static int control_on_header(http_parser *hp, const char *at, size_t len)
{
    (void)at;
    struct control_conn *cc = hp->data;
    cc->head_bytes += len;
    return cc->head_bytes > PROXY_CONTROL_HEAD_MAX ? -1 : 0;
}

static int control_on_body(http_parser *hp, const char *at, size_t len)
{
    struct control_conn *cc = hp->data;
    return buf_append(&cc->body, at, len) < 0 ? -1 : 0;
}

static int control_on_message_complete(http_parser *hp)
{
    struct control_conn *cc = hp->data;
    cc->complete = true;
    http_parser_pause(hp, 1);
    return 0;
}

static http_parser_settings control_settings = {
    .on_url = control_on_url,
    .on_header_field = control_on_header,
    .on_header_value = control_on_header,
    .on_body = control_on_body,
    .on_message_complete = control_on_message_complete,
};

static void control_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct control_conn *cc = h->data;
    *buf = uv_buf_init(cc->proxy->read_buf, sizeof(cc->proxy->read_buf));
}

static void control_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct control_conn *cc = stream->data;
    if (nread == 0 || cc->answered)
        return;
    if (nread < 0) {
        uv_close((uv_handle_t *)&cc->tcp, control_closed_cb);
        return;
    }
    http_parser_execute(&cc->parser, &control_settings, buf->base, (size_t)nread);
    enum http_errno err = HTTP_PARSER_ERRNO(&cc->parser);
    if (cc->complete) {
        control_handle(cc);
    } else if (err != HPE_OK) {
        bool big = err == HPE_CB_body || err == HPE_CB_header_field || err == HPE_CB_header_value ||
                   err == HPE_CB_url;
        control_answer(cc, big ? 413 : 400,
                       control_error(big ? "request over its cap" : http_errno_description(err)));
    }
}

static void control_accept_cb(uv_stream_t *server, int status)
{
    struct proxy *p = server->data;
    if (status < 0)
        return;
    struct control_conn *cc = xcalloc(1, sizeof(*cc));
    cc->proxy = p;
    buf_init(&cc->target, PROXY_TARGET_MAX);
    buf_init(&cc->body, PROXY_CONTROL_BODY_MAX);
    uv_tcp_init(p->loop, &cc->tcp);
    cc->tcp.data = cc;
    if (uv_accept(server, (uv_stream_t *)&cc->tcp) < 0 || p->stopping) {
        uv_close((uv_handle_t *)&cc->tcp, control_closed_cb);
        return;
    }
    http_parser_init(&cc->parser, HTTP_REQUEST);
    cc->parser.data = cc;
    uv_read_start((uv_stream_t *)&cc->tcp, control_alloc_cb, control_read_cb);
}

/* ------------------------------------------------------------------- main */

static void proxy_stop(struct proxy *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    log_info("stopping connections=%zu", p->n_conns);
    uv_close((uv_handle_t *)&p->listener, NULL);
    if (p->has_control)
        uv_close((uv_handle_t *)&p->control, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    /* Bounded by the number of connections: each close unlinks one. */
    while (p->conns)
        conn_close(p->conns, false);
}

static void proxy_signal_cb(uv_signal_t *s, int signum)
{
    (void)signum;
    proxy_stop(s->data);
}

/* Parses HOST:PORT with HOST an IPv4 literal, [IPv6] or localhost. */
static int proxy_parse_addr(const char *text, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host))
        return FERRY_EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || port > 65535)
        return FERRY_EINVAL;
    memset(out, 0, sizeof(*out));
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0 : FERRY_EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : FERRY_EINVAL;
}

static int proxy_bound_port(uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int proxy_listen(struct proxy *p, uv_tcp_t *tcp, const char *addr_text, uv_connection_cb cb)
{
    struct sockaddr_storage addr;
    if (proxy_parse_addr(addr_text, &addr) < 0) {
        fprintf(stderr, "ferry-chaos-proxy: bad address '%s' (want HOST:PORT)\n", addr_text);
        return FERRY_EINVAL;
    }
    uv_tcp_init(p->loop, tcp);
    tcp->data = p;
    int rc = uv_tcp_bind(tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, 511, cb);
    if (rc < 0)
        fprintf(stderr, "ferry-chaos-proxy: cannot listen on %s: %s\n", addr_text, uv_strerror(rc));
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry-chaos-proxy --listen HOST:PORT --upstream HOST:PORT [--control "
               "HOST:PORT]\n"
               "                         [--rule RULE]... [--rules-file PATH] [--seed N]\n"
               "                         [--max-connections N] [--ready-file PATH] [-v|-q]\n"
               "\n"
               "RULE: METHOD PATH ACTION...   METHOD: GET, PUT, ... or *   PATH: *, ~REGEX or a "
               "substring\n"
               "ACTION: status=N [retry_after=S] | reset=before|mid | truncate | flip | blackhole\n"
               "        | delay_ms=N | bandwidth=N[K|M|G], with rate=F (0..1) and count=N\n"
               "e.g. --rule 'GET /blobs/ flip rate=1' --rule '* * status=503 rate=0.2'\n"
               "Control: GET|DELETE /stats, GET|PUT|POST|DELETE /rules, GET /healthz\n");
}

static char *proxy_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, PROXY_CONTROL_BODY_MAX);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    fclose(f);
    if (rc < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

int main(int argc, char **argv)
{
    xalloc_init();
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'},
        {"control", required_argument, NULL, 'c'},
        {"rule", required_argument, NULL, 'r'},
        {"rules-file", required_argument, NULL, 'f'},
        {"seed", required_argument, NULL, 's'},
        {"max-connections", required_argument, NULL, 'm'},
        {"ready-file", required_argument, NULL, 'R'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct proxy proxy;
    struct proxy *p = &proxy;
    const char *listen_addr = NULL, *upstream = NULL, *control = NULL, *ready_file = NULL;
    char err[1400];
    int rc = 0, c;
    bool seeded = false;

    log_threshold = FERRY_LOG_INFO;
    p->max_connections = PROXY_MAX_CONNECTIONS;
    while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'u':
            upstream = optarg;
            break;
        case 'c':
            control = optarg;
            break;
        case 'r':
        case 'f': {
            char *text = c == 'f' ? proxy_read_file(optarg) : xstrdup(optarg);
            if (!text) {
                fprintf(stderr, "ferry-chaos-proxy: cannot read rules file %s\n", optarg);
                return 2;
            }
            /* --rule is one rule even when it holds a newline; a file may hold many. */
            struct rule *parsed[RULE_MAX];
            size_t n = 0;
            if (c == 'r') {
                if (p->n_rules == RULE_MAX) {
                    fprintf(stderr, "ferry-chaos-proxy: more than %d rules\n", RULE_MAX);
                    free(text);
                    return 2;
                }
                rc = rule_parse(text, &parsed[0], err, sizeof(err));
                n = rc == 0 ? 1 : 0;
            } else {
                rc = proxy_parse_rules(text, parsed, RULE_MAX - p->n_rules, &n, err, sizeof(err));
            }
            free(text);
            if (rc < 0) {
                fprintf(stderr, "ferry-chaos-proxy: %s\n", err);
                return 2;
            }
            for (size_t i = 0; i < n; i++)
                p->rules[p->n_rules++] = parsed[i];
            break;
        }
        case 's': {
            char *end;
            errno = 0;
            p->seed = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg) {
                fprintf(stderr, "ferry-chaos-proxy: bad --seed '%s'\n", optarg);
                return 2;
            }
            seeded = true;
            break;
        }
        case 'm': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 100000) {
                fprintf(stderr, "ferry-chaos-proxy: bad --max-connections '%s'\n", optarg);
                return 2;
            }
            p->max_connections = v;
            break;
        }
        case 'R':
            ready_file = optarg;
            break;
        case 'v':
            log_threshold = FERRY_LOG_DEBUG;
            break;
        case 'q':
            log_threshold = FERRY_LOG_WARN;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !listen_addr || !upstream) {
        usage(stderr);
        return 2;
    }
    if (proxy_parse_addr(upstream, &p->upstream) < 0) {
        fprintf(stderr, "ferry-chaos-proxy: bad --upstream '%s' (want HOST:PORT)\n", upstream);
        return 2;
    }
    snprintf(p->upstream_text, sizeof(p->upstream_text), "%s", upstream);
    if (!seeded)
        p->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    p->rng = p->seed;

    http_parser_settings_init(&req_settings);
    req_settings.on_message_begin = req_on_message_begin;
    req_settings.on_url = req_on_url;
    req_settings.on_header_field = req_on_header_field;
    req_settings.on_header_value = req_on_header_value;
    req_settings.on_headers_complete = req_on_headers_complete;
    req_settings.on_body = req_on_body;
    req_settings.on_message_complete = req_on_message_complete;
    http_parser_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_on_message_begin;
    resp_settings.on_status = resp_on_status;
    resp_settings.on_header_field = resp_on_header_field;
    resp_settings.on_header_value = resp_on_header_value;
    resp_settings.on_headers_complete = resp_on_headers_complete;
    resp_settings.on_body = resp_on_body;
    resp_settings.on_message_complete = resp_on_message_complete;
    http_parser_set_max_header_size(PROXY_HEAD_MAX);

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    p->loop = &loop;
    if (proxy_listen(p, &p->listener, listen_addr, proxy_accept_cb) < 0) {
        rc = 1;
        goto out;
    }
    if (control) {
        p->has_control = true;
        if (proxy_listen(p, &p->control, control, control_accept_cb) < 0) {
            rc = 1;
            goto out;
        }
    }
    uv_signal_init(&loop, &p->sigterm);
    p->sigterm.data = p;
    uv_signal_start(&p->sigterm, proxy_signal_cb, SIGTERM);
    uv_signal_init(&loop, &p->sigint);
    p->sigint.data = p;
    uv_signal_start(&p->sigint, proxy_signal_cb, SIGINT);

    int lport = proxy_bound_port(&p->listener);
    int cport = control ? proxy_bound_port(&p->control) : 0;
    log_info("listening listen_port=%d upstream=%s control_port=%d seed=%" PRIu64 " rules=%zu",
             lport, p->upstream_text, cport, p->seed, p->n_rules);
    for (size_t i = 0; i < p->n_rules; i++)
        log_info("rule number=%zu rule='%s'", i + 1, p->rules[i]->text);
    if (ready_file) {
        char *tmp = xasprintf("%s.tmp", ready_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d %d\n", lport, cport) < 0 || fclose(f) != 0 ||
            rename(tmp, ready_file) != 0) {
            fprintf(stderr, "ferry-chaos-proxy: cannot write %s\n", ready_file);
            free(tmp);
            proxy_stop(p);
            uv_run(&loop, UV_RUN_DEFAULT);
            rc = 1;
            goto out;
        }
        free(tmp);
    }
    uv_run(&loop, UV_RUN_DEFAULT);

out:
    if (!p->stopping) {
        p->stopping = true;
        if (uv_is_active((uv_handle_t *)&p->listener) || p->listener.loop)
            uv_close((uv_handle_t *)&p->listener, NULL);
        if (p->has_control && p->control.loop)
            uv_close((uv_handle_t *)&p->control, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    proxy_clear_rules(p);
    if (uv_loop_close(&loop) != 0 && rc == 0)
        rc = 1;
    return rc;
}
