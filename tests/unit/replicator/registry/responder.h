/*
 * responder.h: a scripted HTTP/1.1 server for the registry client's unit
 * tests, on the test's own loop. A libuv TCP server on 127.0.0.1 (port 0,
 * so the kernel picks a free one) takes requests in the order of a script,
 * checks each against the step expected next (method and target), answers
 * with that step's canned response, and records every request it got:
 * method, target, header block and body. A request off the script is
 * answered 400 and counted, so that the client fails fast and the test sees
 * why. Include after <cmocka.h>; every function is static, for one test file.
 */
#ifndef FERRY_TESTS_RESPONDER_H
#define FERRY_TESTS_RESPONDER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "common/xalloc.h"

#define RESPONDER_STEPS_MAX   32
#define RESPONDER_REQUEST_MAX (1024 * 1024) /* a request larger than this is a test bug */

struct responder_step {
    char *method;
    char *target; /* path and query; a trailing '*' matches any rest */
    int status;
    char *headers; /* extra header lines, each ending "\r\n" ("" for none) */
    char *body;
    bool hangup; /* promise more body than is sent, then close: a transfer that breaks */
};

struct responder_request {
    char *method;
    char *target;
    char *headers; /* the header lines, as sent */
    char *body;
    size_t body_len;
    bool matched; /* it was the request the script expected */
};

struct responder;

struct responder_conn {
    uv_tcp_t tcp;
    struct responder *r;
    char *buf;
    size_t len;
    bool closing;
    struct responder_conn *next;
};

struct responder {
    uv_loop_t *loop;
    uv_tcp_t server;
    int port;
    char origin[64]; /* "127.0.0.1:PORT" */
    struct responder_step steps[RESPONDER_STEPS_MAX];
    size_t n_steps;
    size_t next_step;
    struct responder_request got[RESPONDER_STEPS_MAX];
    size_t n_got;
    size_t off_script; /* requests that were not the one expected (or past the script) */
    struct responder_conn *conns;
    int open_handles; /* the server and the connections, until their close callbacks */
};

struct responder_write {
    uv_write_t req;
    char *data;
    struct responder_conn *conn;
    bool hangup;
};

static inline void responder_conn_closed(uv_handle_t *handle)
{
    struct responder_conn *c = handle->data;
    struct responder *r = c->r;
    for (struct responder_conn **pp = &r->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    free(c->buf);
    free(c);
    r->open_handles--;
}

static inline void responder_conn_close(struct responder_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, responder_conn_closed);
}

static inline void responder_written(uv_write_t *req, int status)
{
    struct responder_write *w = req->data;
    (void)status;
    if (w->hangup)
        responder_conn_close(w->conn);
    free(w->data);
    free(w);
}

/* Add a step: the next request must be `method` `target`; it gets `status`, `headers`, `body`. */
static inline void responder_expect(struct responder *r, const char *method, const char *target,
                                    int status, const char *headers, const char *body)
{
    assert_true(r->n_steps < RESPONDER_STEPS_MAX);
    struct responder_step *s = &r->steps[r->n_steps++];
    s->method = xstrdup(method);
    s->target = xstrdup(target);
    s->status = status;
    s->headers = xstrdup(headers != NULL ? headers : "");
    s->body = xstrdup(body != NULL ? body : "");
    s->hangup = false;
}

/* Like responder_expect(), but the answer breaks off after its head and part of its body. */
static inline void responder_expect_hangup(struct responder *r, const char *method,
                                           const char *target, int status)
{
    responder_expect(r, method, target, status, "Content-Length: 1000\r\n", "partial");
    r->steps[r->n_steps - 1].hangup = true;
}

/* The value of header `name` in a recorded request (a copy; caller frees), or NULL. */
static inline char *responder_header(const struct responder_request *q, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = q->headers; p != NULL && *p != '\0';) {
        const char *eol = strstr(p, "\r\n");
        size_t line = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (line > n && p[n] == ':' && strncasecmp(p, name, n) == 0) {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            return xstrndup(v, line - (size_t)(v - p));
        }
        if (eol == NULL)
            break;
        p = eol + 2;
    }
    return NULL;
}

static inline bool responder_target_matches(const char *want, const char *got)
{
    size_t n = strlen(want);
    if (n > 0 && want[n - 1] == '*')
        return strncmp(want, got, n - 1) == 0;
    return strcmp(want, got) == 0;
}

/* Answer the request at hand with `s`'s response (no body to a HEAD). */
static inline void responder_send(struct responder_conn *c, const char *method,
                                  const struct responder_step *s)
{
    struct responder_write *w = xcalloc(1, sizeof(*w));
    bool has_length = strstr(s->headers, "Content-Length:") != NULL;
    bool head = strcmp(method, "HEAD") == 0;
    char length[64] = "";
    if (!has_length)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", strlen(s->body));
    w->data = xasprintf("HTTP/1.1 %d X\r\n%s%s\r\n%s", s->status, length, s->headers,
                        head ? "" : s->body);
    w->conn = c;
    w->hangup = s->hangup;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)strlen(w->data));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, responder_written) < 0) {
        free(w->data);
        free(w);
        responder_conn_close(c);
    }
}

/* Record one whole request and answer it: the next step's answer, or 400 off the script. */
static inline void responder_handle(struct responder_conn *c, const char *head, size_t head_len,
                                    const char *body, size_t body_len)
{
    struct responder *r = c->r;
    char method[16] = "", target[2048] = "";
    if (sscanf(head, "%15s %2047s", method, target) != 2)
        snprintf(method, sizeof(method), "?");
    const char *lines = strstr(head, "\r\n");
    lines = lines != NULL ? lines + 2 : head + head_len;
    struct responder_step *s = NULL;
    if (r->next_step < r->n_steps && strcmp(r->steps[r->next_step].method, method) == 0 &&
        responder_target_matches(r->steps[r->next_step].target, target))
        s = &r->steps[r->next_step++];
    if (r->n_got < RESPONDER_STEPS_MAX) {
        struct responder_request *q = &r->got[r->n_got++];
        q->method = xstrdup(method);
        q->target = xstrdup(target);
        q->headers = xstrndup(lines, head_len - (size_t)(lines - head));
        q->body = xmalloc(body_len + 1);
        memcpy(q->body, body, body_len);
        q->body[body_len] = '\0';
        q->body_len = body_len;
        q->matched = s != NULL;
    }
    if (s != NULL) {
        responder_send(c, method, s);
        return;
    }
    r->off_script++;
    fprintf(stderr, "responder: off the script: %s %s (step %zu of %zu)\n", method, target,
            r->next_step, r->n_steps);
    struct responder_step off = {
        .status = 400,
        .headers = "",
        .body = "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"off the script\"}]}",
    };
    responder_send(c, method, &off);
}

/* The Content-Length of a header block; 0 without one. */
static inline size_t responder_content_length(const char *head)
{
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
            return (size_t)strtoull(p + 17, NULL, 10);
    return 0;
}

/* Handle every whole request in the connection's buffer. */
static inline void responder_drain(struct responder_conn *c)
{
    while (!c->closing) {
        char *end = c->len > 0 ? strstr(c->buf, "\r\n\r\n") : NULL;
        if (end == NULL)
            return;
        size_t head_len = (size_t)(end - c->buf) + 2;
        *end = '\0';
        size_t body_len = responder_content_length(c->buf);
        *end = '\r';
        size_t whole = head_len + 2 + body_len;
        if (c->len < whole)
            return;
        char *head = xstrndup(c->buf, head_len);
        responder_handle(c, head, head_len, c->buf + head_len + 2, body_len);
        free(head);
        memmove(c->buf, c->buf + whole, c->len - whole);
        c->len -= whole;
        c->buf[c->len] = '\0';
    }
}

static inline void responder_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
    (void)handle;
    b->base = xmalloc(suggested);
    b->len = suggested;
}

static inline void responder_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b)
{
    struct responder_conn *c = stream->data;
    if (n < 0 || c->len + (size_t)n > RESPONDER_REQUEST_MAX) {
        free(b->base);
        responder_conn_close(c);
        return;
    }
    c->buf = xrealloc(c->buf, c->len + (size_t)n + 1);
    memcpy(c->buf + c->len, b->base, (size_t)n);
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    free(b->base);
    responder_drain(c);
}

static inline void responder_accept(uv_stream_t *server, int status)
{
    struct responder *r = server->data;
    if (status < 0)
        return;
    struct responder_conn *c = xcalloc(1, sizeof(*c));
    c->r = r;
    assert_int_equal(uv_tcp_init(r->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->next = r->conns;
    r->conns = c;
    r->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, responder_alloc, responder_read) < 0)
        responder_conn_close(c);
}

/* Listen on 127.0.0.1 on a free port; r->origin is the registry host to give the client. */
static inline void responder_start(struct responder *r, uv_loop_t *loop)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_init(loop, &r->server), 0);
    r->server.data = r;
    r->open_handles = 1;
    assert_int_equal(uv_tcp_bind(&r->server, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->server, 16, responder_accept), 0);
    assert_int_equal(uv_tcp_getsockname(&r->server, (struct sockaddr *)&bound, &len), 0);
    r->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    snprintf(r->origin, sizeof(r->origin), "127.0.0.1:%d", r->port);
}

static inline void responder_server_closed(uv_handle_t *handle)
{
    struct responder *r = handle->data;
    r->open_handles--;
}

/* Every step was taken, and nothing came that was not expected. */
static inline void assert_responder_done(const struct responder *r)
{
    if (r->off_script != 0 || r->next_step != r->n_steps)
        fail_msg("responder: %zu requests off the script, %zu of %zu steps taken", r->off_script,
                 r->next_step, r->n_steps);
}

/* Close the server and its connections; the loop must run for the close callbacks. */
static inline void responder_close(struct responder *r)
{
    uv_close((uv_handle_t *)&r->server, responder_server_closed);
    for (struct responder_conn *c = r->conns; c != NULL; c = c->next)
        responder_conn_close(c);
}

/* Free the script and the recorded requests (after responder_close and the loop ran). */
static inline void responder_release(struct responder *r)
{
    for (size_t i = 0; i < r->n_steps; i++) {
        free(r->steps[i].method);
        free(r->steps[i].target);
        free(r->steps[i].headers);
        free(r->steps[i].body);
    }
    for (size_t i = 0; i < r->n_got; i++) {
        free(r->got[i].method);
        free(r->got[i].target);
        free(r->got[i].headers);
        free(r->got[i].body);
    }
}

#endif
