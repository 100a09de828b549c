/*
 * proxy_parse.c: request and response parsing for ferry-chaos-proxy. The
 * http_parser callbacks collect each head, meet the request with the rules
 * (proxy_decide), write the head again to the other side, and stream the
 * body through, re-chunked when it came chunked, with the body faults (flip,
 * reset in the middle, truncate) applied on the way. The answers the proxy
 * plays as a vendor are made here too: its own (a status, the gate, the pull
 * limit) and the upstream's given an ETag, or a 304 in their place.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "chaos/proxy_int.h"
#include "common/log.h"

/* ---------------------------------------------------------------- exchange */

void proxy_exchange_release(struct exchange *ex)
{
    buf_release(&ex->target);
    buf_release(&ex->head);
    buf_release(&ex->if_none_match);
    buf_release(&ex->held);
    buf_release(&ex->resp_head);
    buf_release(&ex->reason);
    memset(ex, 0, sizeof(*ex));
}

static void exchange_begin(struct exchange *ex)
{
    proxy_exchange_release(ex);
    ex->active = true;
    buf_init(&ex->target, PROXY_TARGET_MAX);
    buf_init(&ex->head, PROXY_HEAD_MAX);
    buf_init(&ex->if_none_match, PROXY_IF_NONE_MATCH_MAX);
    buf_init(&ex->held, VENDOR_ETAG_BODY_MAX);
    buf_init(&ex->resp_head, PROXY_HEAD_MAX);
    buf_init(&ex->reason, PROXY_REASON_MAX);
    ex->req_length = UINT64_MAX;
    ex->plan.retry_after_s = -1;
}

/*
 * Keeps the If-None-Match values of a request (`first`: the start of a
 * header's value), comma-separated. One over its cap is forgotten whole:
 * then nothing matches, and the client gets the whole answer.
 */
static void request_if_none_match(struct exchange *ex, bool first, const char *at, size_t len)
{
    if (first && ex->if_none_match.len > 0 && buf_append(&ex->if_none_match, ",", 1) < 0)
        buf_reset(&ex->if_none_match);
    if (buf_append(&ex->if_none_match, at, len) < 0)
        buf_reset(&ex->if_none_match);
}

/*
 * Collects one header callback, a name (`field`) or a value, into the head of
 * the request or of the response (whichever `hp` parses) as "Name: value\r\n"
 * lines; trailers (after the head) are dropped. -1 when the head passes its cap.
 */
static int on_header(http_parser *hp, bool field, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    bool request = hp->type == HTTP_REQUEST;
    struct buf *head = request ? &ex->head : &ex->resp_head;
    if (request ? ex->req_headers_done : ex->resp_headers_done)
        return 0;
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
        if (request && strcmp(ex->field, "expect") == 0 && len >= 3 &&
            strncasecmp(at, "100", 3) == 0)
            ex->expect_continue = true;
        if (request && strcmp(ex->field, "if-none-match") == 0)
            request_if_none_match(ex, ex->hdr_state == HDR_FIELD, at, len);
        if (ex->hdr_state == HDR_FIELD && buf_append(head, ": ", 2) < 0)
            return -1;
        ex->hdr_state = HDR_VALUE;
    }
    return buf_append(head, at, len) < 0 ? -1 : 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    return on_header(hp, true, at, len);
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    return on_header(hp, false, at, len);
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
 * (truncation). A length never grows longer than the one it replaces, so the
 * head stays within its cap; 0, or FERRY_ETOOBIG (the head unchanged) if not.
 */
static int head_set_content_length(struct buf *head, uint64_t length)
{
    int rc = 0;
    struct buf out;
    buf_init(&out, PROXY_HEAD_MAX);
    const char *p = head->data;
    const char *end = head->data + head->len;
    while (rc == 0 && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if ((size_t)(next - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            char line[64];
            snprintf(line, sizeof(line), "Content-Length: %" PRIu64 "\r\n", length);
            rc = buf_append_str(&out, line);
        } else {
            rc = buf_append(&out, p, (size_t)(next - p));
        }
        p = next;
    }
    if (rc < 0) {
        buf_release(&out);
        return rc;
    }
    buf_release(head);
    *head = out;
    return 0;
}

/* True when the head line at `p` (up to `next`) is the field `name` (lowercase). */
static bool head_line_is(const char *p, const char *next, const char *name)
{
    size_t n = strlen(name);
    return (size_t)(next - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':';
}

/*
 * Drops the fields named in `names` (lowercase, NULL-terminated) from a
 * collected head. The head only gets shorter, so it stays within its cap.
 */
static void head_drop_fields(struct buf *head, const char *const *names)
{
    char *out = head->data;
    const char *p = head->data;
    const char *end = head->data + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        bool drop = false;
        for (size_t i = 0; names[i] && !drop; i++)
            drop = head_line_is(p, next, names[i]);
        if (!drop) {
            memmove(out, p, (size_t)(next - p));
            out += next - p;
        }
        p = next;
    }
    if (head->data) {
        head->len = (size_t)(out - head->data);
        head->data[head->len] = '\0';
    }
}

/* Copies the value of the first field `name` (lowercase) of a head to `out`; false if none. */
static bool head_field(const struct buf *head, const char *name, char *out, size_t out_len)
{
    const char *p = head->data;
    const char *end = head->data + head->len;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (head_line_is(p, next, name)) {
            const char *v = p + strlen(name) + 1;
            while (v < next && (*v == ' ' || *v == '\t'))
                v++;
            size_t n = (size_t)(next - v);
            while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
                n--;
            if (n == 0 || n >= out_len)
                return false;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        p = next;
    }
    return false;
}

/* ------------------------------------------------------------- body faults */

/* Pushes body bytes to a queue, re-chunked when the body came chunked, with
 * byte `flip` (an index into `data`, or SIZE_MAX for none) inverted. */
static void forward_body(struct outq *q, bool chunked, const char *data, size_t len, size_t flip)
{
    if (len == 0)
        return;
    if (chunked) {
        char size[24];
        snprintf(size, sizeof(size), "%zx\r\n", len);
        proxy_outq_push_str(q, size);
    }
    if (flip < len) {
        char flipped = (char)(data[flip] ^ 0xff);
        proxy_outq_push(q, data, flip);
        proxy_outq_push(q, &flipped, 1);
        proxy_outq_push(q, data + flip + 1, len - flip - 1);
    } else {
        proxy_outq_push(q, data, len);
    }
    if (chunked)
        proxy_outq_push(q, "\r\n", 2);
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
    proxy_outq_flush(q);
    ex->mid_done = true;
    char detail[64];
    snprintf(detail, sizeof(detail), "side=%s at=%" PRIu64, side, cut);
    proxy_count_fault(conn, RULE_FAULT_RESET_MID, detail);
    proxy_conn_inject_reset(conn);
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

/*
 * Forwards one body piece of either direction with the flip and the reset in
 * the middle applied. `flipping`/`cutting` say whether those faults are set
 * on this direction.
 */
static void body_forward(struct conn *conn, struct outq *q, bool chunked, const char *side,
                         bool flipping, bool cutting, uint64_t before, const char *at, size_t len)
{
    struct exchange *ex = &conn->ex;
    if (cutting && !ex->mid_done && body_reset_mid(conn, q, chunked, side, before, at, len))
        return;
    size_t flip = flipping && !ex->flipped ? body_flip_at(conn, side, before, len) : SIZE_MAX;
    forward_body(q, chunked, at, len, flip);
    proxy_outq_flush(q);
}

/* Ends a chunked body on the queue with the last chunk. */
static void push_last_chunk(struct outq *q)
{
    proxy_outq_push_str(q, PROXY_LAST_CHUNK);
    proxy_outq_flush(q);
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

/* Shapes both queues by the plan and counts the shaping. */
static void req_shape(struct conn *conn)
{
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    proxy_outq_shape(&conn->up, ex->plan.delay_ms, ex->plan.bandwidth);
    proxy_outq_shape(&conn->down, 0, ex->plan.bandwidth);
    if (ex->plan.delay_ms) {
        p->stats.delayed++;
        log_info("fault kind=delay conn=%" PRIu64 " method=%s target=%s delay_ms=%" PRIu64,
                 conn->id, ex->method, ex->target.data, ex->plan.delay_ms);
    }
    if (ex->plan.bandwidth)
        p->stats.bandwidth_limited++;
}

/*
 * Applies the plan's fault at the request head. False when the request is
 * not forwarded (blackholed, or answered by the proxy).
 */
static bool req_apply_fault(struct conn *conn)
{
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    switch (ex->plan.fault) {
    case RULE_FAULT_BLACKHOLE:
        proxy_conn_blackhole(conn);
        return false;
    case RULE_FAULT_STATUS:
        ex->synthetic = true;
        if (ex->expect_continue && ex->req_has_body) {
            proxy_outq_push_str(&conn->down, "HTTP/1.1 100 Continue\r\n\r\n");
            proxy_outq_flush(&conn->down);
        }
        return false;
    case RULE_FAULT_FLIP:
        if (ex->req_has_body) {
            ex->flip_req = true;
            ex->flip_at = ex->req_chunked ? UINT64_MAX : proxy_random_u64(p) % ex->req_length;
        }
        return true;
    case RULE_FAULT_RESET_MID:
        if (ex->req_has_body) {
            ex->mid_req = true;
            ex->mid_at = ex->req_chunked ? UINT64_MAX : ex->req_length / 2;
        }
        return true;
    default:
        return true;
    }
}

/* Writes the request head again to the upstream, opening the link if there is none. */
static void req_forward_head(struct conn *conn, const http_parser *hp)
{
    struct exchange *ex = &conn->ex;
    if (conn->link == NULL && proxy_link_open(conn) < 0) {
        proxy_upstream_failed(conn, true, "connect failed");
        return;
    }
    char line[64];
    snprintf(line, sizeof(line), " HTTP/%u.%u\r\n", hp->http_major, hp->http_minor);
    proxy_outq_push_str(&conn->up, ex->method);
    proxy_outq_push_str(&conn->up, " ");
    proxy_outq_push(&conn->up, ex->target.data, ex->target.len);
    proxy_outq_push_str(&conn->up, line);
    proxy_outq_push(&conn->up, ex->head.data, ex->head.len);
    proxy_outq_push(&conn->up, "\r\n", 2);
    proxy_outq_flush(&conn->up);
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

    if (!proxy_gate(p, ex->method, ex->target.data, &ex->plan))
        proxy_decide(p, ex->method, ex->target.data, &ex->plan);
    log_debug("request conn=%" PRIu64 " method=%s target=%s fault=%s", conn->id, ex->method,
              ex->target.data, rule_fault_name(ex->plan.fault));
    req_shape(conn);
    if (req_apply_fault(conn))
        req_forward_head(conn, hp);
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
    body_forward(conn, &conn->up, ex->req_chunked, "request", ex->flip_req, ex->mid_req, before, at,
                 len);
    return 0;
}

/*
 * Answers a request the plan gave a status to, once the request is
 * complete, with a registry's error document. A 401 carries a challenge:
 * the upstream's last one, so that the client meets the auth it knows, or
 * Basic when the upstream sent none yet.
 */
static void req_answer_synthetic(struct conn *conn)
{
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    struct plan *plan = &ex->plan;
    if (plan->vendor) {
        log_info("vendor answer conn=%" PRIu64 " method=%s target=%s status=%d code=%s", conn->id,
                 ex->method, ex->target.data, plan->status, plan->code);
    } else {
        char detail[48];
        snprintf(detail, sizeof(detail), "status=%d", plan->status);
        proxy_count_fault(conn, RULE_FAULT_STATUS, detail);
        p->stats.status_by_code[plan->status]++;
    }
    const char *code, *message;
    vendor_error_for(plan->status, ex->target.data, plan->code, &code, &message);
    if (plan->message[0] != '\0')
        message = plan->message;
    char headers[PROXY_ANSWER_HEADERS_MAX];
    int n = snprintf(headers, sizeof(headers), "%s", plan->headers);
    if (plan->retry_after_s >= 0)
        n += snprintf(headers + n, sizeof(headers) - (size_t)n, "Retry-After: %d\r\n",
                      plan->retry_after_s);
    if (plan->status == 401)
        snprintf(headers + n, sizeof(headers) - (size_t)n, "WWW-Authenticate: %s\r\n",
                 p->challenge[0] ? p->challenge : "Basic realm=\"ferry-chaos-proxy\"");
    ex->resp_head_sent = true;
    proxy_conn_answer(conn, plan->status, code, message, headers, ex->req_keep_alive);
    ex->resp_keep_alive = ex->req_keep_alive;
    ex->resp_complete = true;
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
    if (ex->synthetic)
        req_answer_synthetic(conn);
    else if (ex->req_chunked)
        push_last_chunk(&conn->up);
    return 0;
}

static const http_parser_settings req_settings = {
    .on_message_begin = req_on_message_begin,
    .on_url = req_on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = req_on_headers_complete,
    .on_body = req_on_body,
    .on_message_complete = req_on_message_complete,
};

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

/*
 * Applies the plan's fault at a final response head with `length` (when
 * `has_length`) and `no_body`. Returns 1 when the head is to be forwarded, 0
 * when the connection is reset instead, -1 when the rewritten head would not
 * fit.
 */
static int resp_apply_fault(struct conn *conn, bool has_length, uint64_t length, bool no_body)
{
    struct exchange *ex = &conn->ex;
    switch (ex->plan.fault) {
    case RULE_FAULT_RESET_BEFORE:
        proxy_count_fault(conn, RULE_FAULT_RESET_BEFORE, NULL);
        proxy_conn_inject_reset(conn);
        return 0;
    case RULE_FAULT_RESET_MID:
        if (ex->mid_req)
            return 1;
        if (no_body) {
            /* Nothing to cut in the middle of: the reset comes before the answer. */
            proxy_count_fault(conn, RULE_FAULT_RESET_BEFORE, "asked=mid body=none");
            proxy_conn_inject_reset(conn);
            return 0;
        }
        ex->mid_resp = true;
        ex->mid_at = has_length ? length / 2 : UINT64_MAX;
        return 1;
    case RULE_FAULT_TRUNCATE:
        if (no_body)
            return 1;
        ex->truncating = true;
        ex->trunc_at = UINT64_MAX;
        if (has_length) {
            ex->trunc_at = length / 2;
            if (head_set_content_length(&ex->resp_head, ex->trunc_at) < 0)
                return -1;
        }
        return 1;
    case RULE_FAULT_FLIP:
        if (ex->flip_req || no_body)
            return 1;
        ex->flip_resp = true;
        ex->flip_at = has_length ? proxy_random_u64(conn->proxy) % length : UINT64_MAX;
        return 1;
    default:
        return 1;
    }
}

/* Writes the (possibly rewritten) response head again to the client. */
static void resp_forward_head(struct conn *conn, const http_parser *hp, bool informational)
{
    struct exchange *ex = &conn->ex;
    char line[PROXY_REASON_MAX + 64];
    snprintf(line, sizeof(line), "HTTP/%u.%u %d %s\r\n", hp->http_major, hp->http_minor,
             hp->status_code, ex->reason.data ? ex->reason.data : "");
    proxy_outq_push_str(&conn->down, line);
    proxy_outq_push(&conn->down, ex->resp_head.data, ex->resp_head.len);
    proxy_outq_push(&conn->down, "\r\n", 2);
    if (!informational)
        ex->resp_head_sent = true;
    proxy_outq_flush(&conn->down);
}

/* ------------------------------------------------------------------- ETags */

/*
 * An etag rule holds a GET's 200 answer whole when its body can be at most
 * VENDOR_ETAG_BODY_MAX bytes (a longer or unknown length is told by the
 * body itself: see etag_give_up()).
 */
static bool etag_wanted(const struct exchange *ex, int status, bool has_length, uint64_t length,
                        bool no_body)
{
    return ex->plan.etag && ex->plan.fault == RULE_FAULT_NONE && strcmp(ex->method, "GET") == 0 &&
           status == 200 && !no_body && (!has_length || length <= VENDOR_ETAG_BODY_MAX);
}

/* The held body passed the cap: the answer goes on as it came, without an ETag. */
static void etag_give_up(struct conn *conn, const http_parser *hp)
{
    struct exchange *ex = &conn->ex;
    ex->etag_holding = false;
    resp_forward_head(conn, hp, false);
    forward_body(&conn->down, ex->resp_chunked, ex->held.data, ex->held.len, SIZE_MAX);
    buf_release(&ex->held);
    proxy_outq_flush(&conn->down);
}

/*
 * The held answer is complete: it leaves with its ETag and its length, or
 * as a 304 without a body when the request's If-None-Match names the ETag.
 */
static void etag_finish(struct conn *conn, const http_parser *hp)
{
    static const char *const replaced[] = {"content-length", "transfer-encoding", "etag", NULL};
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    char etag[VENDOR_ETAG_MAX];
    vendor_etag(ex->held.data ? ex->held.data : "", ex->held.len, etag);
    bool not_modified =
        ex->if_none_match.len > 0 && vendor_etag_matches(ex->if_none_match.data, etag);
    head_drop_fields(&ex->resp_head, replaced);
    char line[PROXY_REASON_MAX + 128];
    if (not_modified)
        snprintf(line, sizeof(line), "HTTP/%u.%u 304 Not Modified\r\n", hp->http_major,
                 hp->http_minor);
    else
        snprintf(line, sizeof(line), "HTTP/%u.%u %d %s\r\n", hp->http_major, hp->http_minor,
                 hp->status_code, ex->reason.data ? ex->reason.data : "");
    proxy_outq_push_str(&conn->down, line);
    proxy_outq_push(&conn->down, ex->resp_head.data, ex->resp_head.len);
    if (not_modified)
        snprintf(line, sizeof(line), "ETag: %s\r\n\r\n", etag);
    else
        snprintf(line, sizeof(line), "Content-Length: %zu\r\nETag: %s\r\n\r\n", ex->held.len, etag);
    proxy_outq_push_str(&conn->down, line);
    if (!not_modified)
        proxy_outq_push(&conn->down, ex->held.data, ex->held.len);
    p->stats.etag_tagged++;
    if (not_modified)
        p->stats.etag_not_modified++;
    log_debug("etag conn=%" PRIu64 " target=%s etag=%s not_modified=%d", conn->id, ex->target.data,
              etag, not_modified);
    ex->etag_holding = false;
    ex->resp_head_sent = true;
    ex->resp_chunked = false; /* it left with a Content-Length */
    buf_release(&ex->held);
    proxy_outq_flush(&conn->down);
}

/*
 * What a final answer's head gets before it leaves: the headers of the
 * plan (the pull limit's), and the upstream's challenge of a 401 is
 * remembered for the 401s the proxy answers itself. -1 past the head's cap.
 */
static int resp_head_vendor(struct conn *conn, int status)
{
    struct proxy *p = conn->proxy;
    struct exchange *ex = &conn->ex;
    if (status == 401 &&
        !head_field(&ex->resp_head, "www-authenticate", p->challenge, sizeof(p->challenge)))
        p->challenge[0] = '\0';
    return buf_append_str(&ex->resp_head, ex->plan.headers) < 0 ? -1 : 0;
}

/* A HEAD answer has no body whatever its headers say: 1 tells the parser so. */
static int resp_on_headers_complete(http_parser *hp)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    int skip_body = ex->is_head ? 1 : 0;
    ex->resp_headers_done = true;
    if (exchange_headers_end(ex, &ex->resp_head) < 0)
        return -1;
    if (conn->mode != CONN_PROXY || ex->dead)
        return skip_body;

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
        if (resp_head_vendor(conn, status) < 0)
            return -1;
        int forward = resp_apply_fault(conn, has_length, length, no_body);
        if (forward < 0)
            return -1;
        if (forward == 0)
            return skip_body;
        if (etag_wanted(ex, status, has_length, length, no_body)) {
            ex->etag_holding = true;
            return skip_body;
        }
    }
    resp_forward_head(conn, hp, informational);
    return skip_body;
}

/*
 * Truncation: when the cut falls in this body piece, forwards what comes
 * before it, ends the body there and returns true.
 */
static bool resp_truncate(struct conn *conn, uint64_t before, const char *at, size_t len)
{
    struct exchange *ex = &conn->ex;
    if (ex->trunc_at == UINT64_MAX)
        ex->trunc_at = before + len / 2;
    if (before + len <= ex->trunc_at)
        return false;
    forward_body(&conn->down, ex->resp_chunked, at, (size_t)(ex->trunc_at - before), SIZE_MAX);
    ex->resp_discard = true;
    char detail[64];
    snprintf(detail, sizeof(detail), "at=%" PRIu64, ex->trunc_at);
    proxy_count_fault(conn, RULE_FAULT_TRUNCATE, detail);
    if (ex->resp_chunked) {
        ex->resp_terminated = true;
        push_last_chunk(&conn->down);
        return true;
    }
    if (ex->resp_eof_body)
        conn->close_after_flush = true; /* the body ends where the connection does */
    proxy_outq_flush(&conn->down);
    return true;
}

static int resp_on_body(http_parser *hp, const char *at, size_t len)
{
    struct conn *conn = hp->data;
    struct exchange *ex = &conn->ex;
    if (conn->mode != CONN_PROXY || ex->dead || ex->resp_discard)
        return 0;
    if (ex->etag_holding) {
        if (buf_append(&ex->held, at, len) == 0)
            return 0;
        etag_give_up(conn, hp);
    }
    uint64_t before = ex->resp_seen;
    ex->resp_seen += len;
    /* A rule has one fault: a truncated body is neither cut by a reset nor flipped. */
    if (ex->truncating && resp_truncate(conn, before, at, len))
        return 0;
    body_forward(conn, &conn->down, ex->resp_chunked, "response", ex->flip_resp, ex->mid_resp,
                 before, at, len);
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
    if (ex->etag_holding)
        etag_finish(conn, hp);
    if (ex->resp_chunked && !ex->resp_terminated)
        push_last_chunk(&conn->down);
    if (!ex->resp_keep_alive)
        conn->close_after_flush = true;
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_message_begin = resp_on_message_begin,
    .on_status = resp_on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = resp_on_headers_complete,
    .on_body = resp_on_body,
    .on_message_complete = resp_on_message_complete,
};

/* ------------------------------------------------------------------ feeding */

void proxy_parsers_init(struct conn *conn)
{
    http_parser_init(&conn->req_parser, HTTP_REQUEST);
    conn->req_parser.data = conn;
    proxy_response_parser_reset(conn);
}

void proxy_response_parser_reset(struct conn *conn)
{
    http_parser_init(&conn->resp_parser, HTTP_RESPONSE);
    conn->resp_parser.data = conn;
}

size_t proxy_parse_request(struct conn *conn, const char *data, size_t len)
{
    return http_parser_execute(&conn->req_parser, &req_settings, data, len);
}

size_t proxy_parse_response(struct conn *conn, const char *data, size_t len)
{
    return http_parser_execute(&conn->resp_parser, &resp_settings, data, len);
}
