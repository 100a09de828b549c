/*
 * proxy_outq.c: the output queue of each side of a ferry-chaos-proxy
 * connection. Bytes for the client or the upstream are copied into chunks
 * and written when the rules' delay and bandwidth allow; a timer releases
 * the rest. The connection's data flow watches the queued totals to stop and
 * start reading (proxy_flow.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/proxy_int.h"
#include "common/log.h"
#include "common/xalloc.h"

/* A paced queue writes about this many times a second, in chunks at least this large. */
#define OUTQ_PACED_WRITES_PER_S 20
#define OUTQ_PACED_CHUNK_MIN    256
/* The token bucket holds at most this fraction of a second of the rate (or one paced chunk). */
#define OUTQ_BURST_PER_S 10

int proxy_outq_init(struct outq *q, struct conn *conn, uint64_t *counter)
{
    memset(q, 0, sizeof(*q));
    q->conn = conn;
    q->counter = counter;
    int rc = uv_timer_init(conn->proxy->loop, &q->timer);
    if (rc < 0)
        return rc;
    q->timer.data = q;
    conn->open_handles++;
    return 0;
}

static void outq_timer_closed(uv_handle_t *h)
{
    struct outq *q = h->data;
    proxy_conn_unref(q->conn);
}

void proxy_outq_close(struct outq *q)
{
    proxy_outq_drop(q);
    /* A queue whose timer never started holds no reference (proxy_outq_init failed). */
    if (uv_handle_get_type((uv_handle_t *)&q->timer) == UV_TIMER)
        uv_close((uv_handle_t *)&q->timer, outq_timer_closed);
}

size_t proxy_outq_total(const struct outq *q)
{
    return q->queued + q->in_flight;
}

static size_t outq_chunk_cap(const struct outq *q)
{
    if (q->rate == 0)
        return PROXY_READ_SIZE;
    /* Paced bursts stay small at any rate. */
    uint64_t cap = q->rate / OUTQ_PACED_WRITES_PER_S;
    if (cap < OUTQ_PACED_CHUNK_MIN)
        cap = OUTQ_PACED_CHUNK_MIN;
    if (cap > PROXY_PACED_CHUNK_MAX)
        cap = PROXY_PACED_CHUNK_MAX;
    return (size_t)cap;
}

void proxy_outq_push(struct outq *q, const void *data, size_t len)
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

void proxy_outq_push_str(struct outq *q, const char *s)
{
    proxy_outq_push(q, s, strlen(s));
}

void proxy_outq_drop(struct outq *q)
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

/* A write to this side failed: the client's side ends the connection, the upstream's the link. */
static void outq_abandon(struct outq *q)
{
    struct conn *conn = q->conn;
    if (q == &conn->down)
        proxy_conn_close(conn, false);
    else
        proxy_link_close(conn);
}

static void outq_timer_cb(uv_timer_t *timer)
{
    struct outq *q = timer->data;
    q->timer_armed = false;
    proxy_outq_flush(q);
    proxy_conn_after_io(q->conn);
}

/* Arms the timer; when it cannot be armed the queue would stall, so the side is abandoned. */
static void outq_arm(struct outq *q, uint64_t ms)
{
    if (ms == 0)
        ms = 1;
    int rc = uv_timer_start(&q->timer, outq_timer_cb, ms, 0);
    if (rc < 0) {
        log_warn("queue timer failed conn=%" PRIu64 " error=%s", q->conn->id, uv_strerror(rc));
        outq_abandon(q);
        return;
    }
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
            outq_abandon(q);
            return;
        }
        log_warn("upstream write failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(status));
        conn->proxy->stats.upstream_errors++;
        outq_abandon(q);
    }
    proxy_conn_after_io(conn);
}

/*
 * Takes tokens for the chunk at the head of a paced queue. False (with the
 * timer armed) when the bucket is empty: the chunk waits.
 */
static bool outq_take_tokens(struct outq *q, uint64_t now)
{
    double burst = (double)q->rate / (double)OUTQ_BURST_PER_S;
    if (burst < (double)PROXY_PACED_CHUNK_MAX)
        burst = (double)PROXY_PACED_CHUNK_MAX;
    q->tokens += (double)q->rate * (double)(now - q->tokens_ms) / 1000.0;
    q->tokens_ms = now;
    if (q->tokens > burst)
        q->tokens = burst;
    if (q->tokens <= 0.0) {
        if (!q->timer_armed)
            outq_arm(q, (uint64_t)(-q->tokens * 1000.0 / (double)q->rate) + 1);
        return false;
    }
    q->tokens -= (double)q->head->len;
    return true;
}

/* Hands the chunk at the head to uv_write; 0 or a libuv error (the chunk is then freed). */
static int outq_write_head(struct outq *q)
{
    struct outq_chunk *c = q->head;
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
    }
    return rc;
}

void proxy_outq_flush(struct outq *q)
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
        if (q->rate && !outq_take_tokens(q, now))
            return;
        int rc = outq_write_head(q);
        if (rc < 0) {
            log_debug("write failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
            outq_abandon(q);
            return;
        }
    }
}

void proxy_outq_shape(struct outq *q, uint64_t delay_ms, uint64_t rate)
{
    uint64_t now = uv_now(q->conn->proxy->loop);
    q->not_before_ms = delay_ms ? now + delay_ms : 0;
    if (rate != q->rate) {
        q->rate = rate;
        q->tokens = 0.0;
        q->tokens_ms = now;
    }
}
