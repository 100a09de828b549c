/*
 * proxy_flow.c: the data flow of a ferry-chaos-proxy connection. Client
 * bytes go to the request parser one request at a time (later pipelined
 * bytes wait, capped); upstream bytes go to the response parser; each side
 * is read only while the queue it feeds has room. Here too: the upstream
 * link (connect, read, close, failures), the answers the proxy makes up, and
 * the faults that end a connection (reset, blackhole).
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "chaos/proxy_int.h"
#include "common/log.h"
#include "common/xalloc.h"

/* The status the proxy answers with when the upstream cannot be reached or broke. */
#define PROXY_STATUS_BAD_GATEWAY 502
#define PROXY_STATUS_BAD_REQUEST 400

/* --------------------------------------------------------- made-up answers */

const char *proxy_reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return (s && strcmp(s, "<unknown>") != 0) ? s : "Injected";
}

void proxy_conn_answer(struct conn *conn, int status, const char *code, const char *message,
                       const char *headers, bool keep_alive)
{
    /* The message may name a repository of the request: cJSON escapes it. */
    cJSON *doc = cJSON_CreateObject();
    cJSON *error = cJSON_CreateObject();
    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddNullToObject(error, "detail");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "errors"), error);
    char *json = xjson_print(doc, false);
    cJSON_Delete(doc);
    char *body = xasprintf("%s\n", json);
    free(json);
    size_t blen = strlen(body);
    char *head =
        xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                  "Content-Length: %zu\r\nDocker-Distribution-Api-Version: registry/2.0\r\n"
                  "X-Chaos-Proxy: %s\r\n%sConnection: %s\r\n\r\n",
                  status, proxy_reason(status), blen, message, headers ? headers : "",
                  keep_alive ? "keep-alive" : "close");
    proxy_outq_push_str(&conn->down, head);
    if (!conn->ex.is_head)
        proxy_outq_push(&conn->down, body, blen);
    free(head);
    free(body);
    conn->proxy->stats.responses++;
    proxy_outq_flush(&conn->down);
}

/* Answers with an error and closes once it is sent; nothing more is read. */
static void conn_fail_with(struct conn *conn, int status, const char *message)
{
    conn->ex.dead = true;
    proxy_link_close(conn);
    if (!conn->ex.resp_head_sent) {
        conn->ex.resp_head_sent = true;
        const char *code, *unused;
        vendor_error_for(status, "", NULL, &code, &unused);
        proxy_conn_answer(conn, status, code, message, NULL, false);
    }
    conn->mode = CONN_DRAINING;
}

/* -------------------------------------------------- resets and blackholes */

/*
 * A fault takes over a forwarding connection: the exchange is dead and the
 * upstream link closed. False when the connection was not forwarding.
 */
static bool conn_take_over(struct conn *conn, enum conn_mode mode)
{
    if (conn->mode != CONN_PROXY)
        return false;
    conn->mode = mode;
    conn->ex.dead = true;
    proxy_link_close(conn);
    return true;
}

void proxy_conn_blackhole(struct conn *conn)
{
    if (!conn_take_over(conn, CONN_BLACKHOLE))
        return;
    proxy_outq_drop(&conn->down);
    proxy_count_fault(conn, RULE_FAULT_BLACKHOLE, NULL);
}

/*
 * Polls until the bytes queued before a reset have left the proxy and the
 * socket (so "mid-body" means the client really got part of the body), but
 * at most PROXY_RESET_POLL_MAX times; then resets.
 */
static void conn_reset_timer_cb(uv_timer_t *t)
{
    struct conn *conn = t->data;
    int unsent = 0;
    uv_os_fd_t fd;
    if (proxy_outq_total(&conn->down) > 0 && conn->reset_polls < PROXY_RESET_POLL_MAX) {
        conn->reset_polls++;
        return;
    }
    if (uv_fileno((uv_handle_t *)&conn->client, &fd) == 0 && ioctl(fd, SIOCOUTQ, &unsent) == 0 &&
        unsent > 0 && conn->reset_polls < PROXY_RESET_POLL_MAX) {
        conn->reset_polls++;
        return;
    }
    /* Closing the connection stops this timer too. */
    proxy_conn_close(conn, true);
}

void proxy_conn_inject_reset(struct conn *conn)
{
    if (!conn_take_over(conn, CONN_RESETTING))
        return;
    conn->reset_polls = 0;
    int rc = uv_timer_start(&conn->reset_timer, conn_reset_timer_cb, 0, PROXY_RESET_POLL_MS);
    if (rc < 0) {
        /* Without the timer there is no waiting: the reset comes at once. */
        log_warn("reset timer failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
        proxy_conn_close(conn, true);
    }
}

/* --------------------------------------------------------------- upstream */

static void link_closed_cb(uv_handle_t *h)
{
    struct upstream_link *link = h->data;
    struct conn *conn = link->conn;
    free(link);
    proxy_conn_unref(conn);
}

void proxy_link_close(struct conn *conn)
{
    struct upstream_link *link = conn->link;
    if (link == NULL)
        return;
    conn->link = NULL;
    link->detached = true;
    conn->up.stream = NULL;
    proxy_outq_drop(&conn->up);
    uv_close((uv_handle_t *)&link->tcp, link_closed_cb);
}

/*
 * The upstream failed in the middle of an exchange. When it could not be
 * reached the client gets a 502; when it dropped the connection before
 * answering, the client's connection is reset, as it would have been without
 * the proxy (a client retries that on a reused connection); in the middle of
 * an answer, the client's connection ends there.
 */
void proxy_upstream_failed(struct conn *conn, bool connecting, const char *why)
{
    conn->proxy->stats.upstream_errors++;
    struct exchange *ex = &conn->ex;
    if (!ex->active || ex->synthetic || ex->resp_complete) {
        proxy_link_close(conn);
        return;
    }
    log_warn("upstream failed conn=%" PRIu64 " method=%s target=%s error=%s", conn->id, ex->method,
             ex->target.data ? ex->target.data : "", why);
    if (!connecting && !ex->resp_started) {
        proxy_conn_inject_reset(conn);
        return;
    }
    conn_fail_with(conn, PROXY_STATUS_BAD_GATEWAY, "ferry-chaos-proxy: the upstream failed");
}

static void link_connect_cb(uv_connect_t *req, int status)
{
    struct upstream_link *link = container_of(req, struct upstream_link, connect);
    if (link->detached)
        return;
    struct conn *conn = link->conn;
    if (status < 0) {
        proxy_upstream_failed(conn, true, uv_strerror(status));
        proxy_conn_after_io(conn);
        return;
    }
    link->connected = true;
    int rc = uv_tcp_nodelay(&link->tcp, 1);
    if (rc < 0)
        log_debug("upstream nodelay failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
    conn->up.stream = (uv_stream_t *)&link->tcp;
    proxy_outq_flush(&conn->up);
    proxy_conn_after_io(conn);
}

int proxy_link_open(struct conn *conn)
{
    struct upstream_link *link = xcalloc(1, sizeof(*link));
    link->conn = conn;
    int rc = uv_tcp_init(conn->proxy->loop, &link->tcp);
    if (rc < 0) {
        free(link);
        return rc;
    }
    link->tcp.data = link;
    conn->open_handles++;
    conn->link = link;
    rc = uv_tcp_connect(&link->connect, &link->tcp, (const struct sockaddr *)&conn->proxy->upstream,
                        link_connect_cb);
    if (rc < 0) {
        proxy_link_close(conn);
        return rc;
    }
    proxy_response_parser_reset(conn);
    return 0;
}

/* The upstream's connection ended (`nread` < 0): a body delimited by it ends here. */
static void link_ended(struct conn *conn, ssize_t nread)
{
    struct exchange *ex = &conn->ex;
    if (ex->active && !ex->synthetic && !ex->resp_complete && conn->mode == CONN_PROXY) {
        proxy_parse_response(conn, NULL, 0);
        if (!ex->resp_complete)
            proxy_upstream_failed(conn, false,
                                  nread == UV_EOF ? "closed before the response ended"
                                                  : uv_strerror((int)nread));
    }
    proxy_link_close(conn);
}

static void link_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct upstream_link *link = stream->data;
    if (link->detached || nread == 0)
        return;
    struct conn *conn = link->conn;
    struct exchange *ex = &conn->ex;
    if (nread < 0) {
        link_ended(conn, nread);
        proxy_conn_after_io(conn);
        return;
    }
    if (!ex->active || ex->synthetic || ex->resp_complete || conn->mode != CONN_PROXY) {
        if (conn->mode == CONN_PROXY)
            log_warn("upstream sent bytes nobody asked for conn=%" PRIu64, conn->id);
        proxy_link_close(conn);
        proxy_conn_after_io(conn);
        return;
    }
    size_t n = proxy_parse_response(conn, buf->base, (size_t)nread);
    if (conn->closing)
        return;
    enum http_errno err = HTTP_PARSER_ERRNO(&conn->resp_parser);
    if (err == HPE_PAUSED) {
        if (n < (size_t)nread)
            proxy_link_close(conn); /* more than one answer to one request: not ours to forward */
    } else if (err != HPE_OK && conn->mode == CONN_PROXY) {
        proxy_upstream_failed(conn, false, http_errno_description(err));
    }
    proxy_conn_after_io(conn);
}

/* -------------------------------------------------------------- data flow */

static void conn_feed(struct conn *conn, const char *data, size_t len);

/* The exchange is done both ways: the next request, if any, may start. */
static void exchange_finish(struct conn *conn)
{
    struct exchange *ex = &conn->ex;
    bool keep = ex->req_keep_alive && ex->resp_keep_alive && !conn->close_after_flush;
    proxy_exchange_release(ex);
    if (!keep) {
        conn->close_after_flush = true;
        conn->mode = CONN_DRAINING;
        proxy_link_close(conn);
        return;
    }
    proxy_response_parser_reset(conn);
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
    conn_fail_with(conn, PROXY_STATUS_BAD_REQUEST, "ferry-chaos-proxy: malformed request");
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
    size_t n = proxy_parse_request(conn, data, len);
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

void proxy_conn_after_io(struct conn *conn)
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
        conn->mode != CONN_BLACKHOLE && proxy_outq_total(&conn->down) == 0) {
        proxy_conn_close(conn, false);
        return;
    }
    proxy_conn_update_reading(conn);
}

void proxy_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct proxy *p = h->loop->data;
    *buf = uv_buf_init(p->read_buf, sizeof(p->read_buf));
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *conn = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* The client went away: whatever was in flight for it is abandoned. */
        proxy_conn_close(conn, false);
        return;
    }
    conn_feed(conn, buf->base, (size_t)nread);
    proxy_conn_after_io(conn);
}

/* Starts or stops reading a stream when `want` differs from `*reading`; 0 or a libuv error. */
static int stream_set_reading(uv_stream_t *stream, bool *reading, bool want, uv_read_cb read_cb)
{
    if (want == *reading)
        return 0;
    int rc = want ? uv_read_start(stream, proxy_alloc_cb, read_cb) : uv_read_stop(stream);
    if (rc == 0)
        *reading = want;
    return rc;
}

/*
 * Each side is read only while the queue it feeds is under the high water
 * mark, and again once it is back under the low one. A side that cannot be
 * read fails: the upstream as a broken upstream, the client by closing.
 */
void proxy_conn_update_reading(struct conn *conn)
{
    if (conn->closing)
        return;
    struct upstream_link *link = conn->link;
    if (link && link->connected) {
        size_t water = link->reading ? PROXY_HIGH_WATER : PROXY_LOW_WATER;
        bool want_up = conn->mode == CONN_PROXY && proxy_outq_total(&conn->down) < water;
        int rc =
            stream_set_reading((uv_stream_t *)&link->tcp, &link->reading, want_up, link_read_cb);
        if (rc < 0) {
            proxy_upstream_failed(conn, false, uv_strerror(rc));
            proxy_conn_after_io(conn); /* the link is gone: this does not come back here */
            return;
        }
    }
    bool want_client = false;
    if (conn->mode == CONN_BLACKHOLE) {
        want_client = true;
    } else if (conn->mode == CONN_PROXY && !conn->req_paused) {
        size_t water = conn->reading_client ? PROXY_HIGH_WATER : PROXY_LOW_WATER;
        want_client = proxy_outq_total(&conn->up) < water;
    }
    int rc = stream_set_reading((uv_stream_t *)&conn->client, &conn->reading_client, want_client,
                                conn_read_cb);
    if (rc < 0) {
        log_debug("client read failed conn=%" PRIu64 " error=%s", conn->id, uv_strerror(rc));
        proxy_conn_close(conn, false);
    }
}
