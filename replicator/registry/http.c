/*
 * http.c: libcurl's multi interface on one libuv loop (see http.h): the
 * sockets and timer curl asks for, the shared rate limit, and requests from
 * their options to their finish.
 */
#include "registry/http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "registry/tls_alert.h"

/* Response headers of one response are capped; a registry has no reason to send more. */
#define HTTP_HEADERS_MAX        (64 * 1024)
#define HTTP_BODY_DEFAULT_LIMIT (64 * 1024)
/* The rate limit's bucket holds a quarter second of traffic, and at least this. */
#define HTTP_RATE_BURST_MIN (64 * 1024)
/* Streamed bodies move in large buffers: far fewer callbacks and system calls. */
#define HTTP_STREAM_BUFFER (128L * 1024)
#define HTTP_MAX_REDIRECTS 5L
#define HTTP_USER_AGENT    "ferry/0.1"

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct http_client_options opts;
    struct http_stats stats;
    int running; /* requests added to the multi handle */
    int sockets; /* http_socket structs alive, open or closing */
    bool timer_closed;
    /* The rate limit: a token bucket shared by every streamed body. */
    double tokens;
    uint64_t refill_ns;
    uv_timer_t rate_timer;
    bool rate_timer_closed;
    struct http_request **throttled; /* transfers paused until tokens return */
    size_t n_throttled;
    struct http_request *active; /* started and not finished */
    bool aborting;               /* http_client_abort(): new requests fail at once */
    void (*close_cb)(void *);
    void *close_arg;
};

/* One watched socket; freed in its poll handle's close callback. */
struct http_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
};

struct http_request {
    struct http_client *client;
    CURL *easy;
    struct curl_slist *headers;
    char *method;
    char *url;
    const char *body;
    size_t body_len;
    http_source_cb source;
    void *source_arg;
    uint64_t source_len;
    uint64_t source_offset;
    bool has_body;
    bool paused;      /* upload waits for its source */
    bool paused_recv; /* download waits for its sink */
    bool follow;
    http_sink_cb sink;
    void *sink_arg;
    int sink_rc;
    struct buf response;
    struct buf response_headers;
    bool headers_overflow;
    long status;
    char *effective_url;
    char error_text[CURL_ERROR_SIZE];
    struct tls_alert *tls_alert; /* the alert a server ended TLS with, if any */
    http_done_cb done;
    void *done_arg;
    bool started;
    bool finished;
    int setup_rc;       /* FERRY_EINVAL once an option the request needs could not be set */
    bool throttled;     /* paused by the rate limit */
    char *header_value; /* last value handed out by http_request_response_header() */
    struct http_request *active_prev, *active_next;
};

const char *const http_method_names[6] = {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"};

static int http_method_index(const char *method)
{
    for (int i = 0; i < 6; i++)
        if (strcmp(method, http_method_names[i]) == 0)
            return i;
    return 0;
}

static void http_count_codes(struct http_stats *st, int method, long code, uint64_t n)
{
    if (code < 0 || code > 999)
        code = 999;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < st->n_codes; i++) {
            if (st->codes[i].method == method && st->codes[i].code == code) {
                st->codes[i].count += n;
                return;
            }
        }
        /* The last six slots are kept for a catch-all code 999 per method. */
        if (st->n_codes < HTTP_CODE_SLOTS - 6 || code == 999)
            break;
        code = 999;
    }
    st->codes[st->n_codes].method = (uint8_t)method;
    st->codes[st->n_codes].code = (uint16_t)code;
    st->codes[st->n_codes].count = n;
    st->n_codes++;
}

static void http_count_code(struct http_stats *st, int method, long code)
{
    http_count_codes(st, method, code, 1);
}

void http_stats_add(struct http_stats *into, const struct http_stats *from)
{
    into->requests += from->requests;
    for (int i = 0; i < 6; i++)
        into->requests_by_method[i] += from->requests_by_method[i];
    into->bytes_sent += from->bytes_sent;
    into->bytes_received += from->bytes_received;
    for (size_t i = 0; i < from->n_codes; i++)
        http_count_codes(into, from->codes[i].method, from->codes[i].code, from->codes[i].count);
}

static void http_check_multi_info(struct http_client *c);

/* A multi-handle call failed: nothing can be done but say so. */
static void http_multi_failed(const char *what, CURLMcode code)
{
    if (code != CURLM_OK)
        log_error("http %s failed error=\"%s\"", what, curl_multi_strerror(code));
}

/* Let curl act on a socket (or on its timeout) and collect what finished. */
static void http_socket_action(struct http_client *c, curl_socket_t fd, int flags)
{
    int running = 0;
    http_multi_failed("socket action", curl_multi_socket_action(c->multi, fd, flags, &running));
    http_check_multi_info(c);
}

/* The client is freed once it was asked to close and its last handle is closed. */
static void http_client_maybe_free(struct http_client *c)
{
    if (c->close_cb == NULL || !c->timer_closed || !c->rate_timer_closed || c->sockets > 0)
        return;
    free(c->throttled);
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    free(c);
    cb(arg);
}

static void http_socket_close_cb(uv_handle_t *handle)
{
    struct http_socket *s = handle->data;
    struct http_client *c = s->client;
    free(s);
    c->sockets--;
    http_client_maybe_free(c);
}

static void http_poll_cb(uv_poll_t *poll, int status, int events)
{
    struct http_socket *s = poll->data;
    int flags = 0;

    /* A poll error still goes to curl, which then finds the failure itself. */
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    http_socket_action(s->client, s->fd, flags);
}

static int http_socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct http_socket *s = socketp;
    (void)easy;

    if (action == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            if (c->multi != NULL)
                http_multi_failed("socket forget", curl_multi_assign(c->multi, fd, NULL));
            uv_close((uv_handle_t *)&s->poll, http_socket_close_cb);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->client = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        c->sockets++;
        s->poll.data = s;
        CURLMcode code = curl_multi_assign(c->multi, fd, s);
        if (code != CURLM_OK) {
            http_multi_failed("socket assign", code);
            uv_close((uv_handle_t *)&s->poll, http_socket_close_cb);
            return -1;
        }
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    /* -1 makes curl fail the transfers on this socket. */
    return uv_poll_start(&s->poll, events, http_poll_cb) < 0 ? -1 : 0;
}

static void http_timer_cb(uv_timer_t *timer)
{
    http_socket_action(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

static int http_timer_start_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&c->timer);
        return 0;
    }
    /* -1 makes curl fail its transfers: without the timer none would finish. */
    return uv_timer_start(&c->timer, http_timer_cb, (uint64_t)timeout_ms, 0) < 0 ? -1 : 0;
}

static void http_global_init(void)
{
    CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK)
        log_error("libcurl init failed error=\"%s\"", curl_easy_strerror(code));
}

/* ---- the rate limit ---- */

/* Bytes the bucket holds at most: a quarter second of traffic, at least 64 KiB. */
static uint64_t rate_burst(const struct http_client *c)
{
    uint64_t quarter = c->opts.rate_limit / 4;
    return quarter > HTTP_RATE_BURST_MIN ? quarter : HTTP_RATE_BURST_MIN;
}

static void rate_refill(struct http_client *c)
{
    uint64_t now = uv_hrtime();
    c->tokens += (double)(now - c->refill_ns) * (double)c->opts.rate_limit / 1e9;
    c->refill_ns = now;
    if (c->tokens > (double)rate_burst(c))
        c->tokens = (double)rate_burst(c);
}

static void rate_timer_cb(uv_timer_t *timer)
{
    struct http_client *c = timer->data;
    rate_refill(c);
    /* Resuming may run callbacks that park transfers again: take the list first. */
    struct http_request **list = c->throttled;
    size_t n = c->n_throttled;
    c->throttled = NULL;
    c->n_throttled = 0;
    for (size_t i = 0; i < n; i++) {
        struct http_request *req = list[i];
        req->throttled = false;
        http_request_resume(req);
    }
    free(list);
}

/*
 * True when a streamed body may move bytes now. Otherwise the transfer is
 * parked, the caller pauses it, and a timer resumes it when the bucket has
 * refilled. The bucket may go into debt by one callback's bytes.
 */
static bool rate_admit(struct http_request *req)
{
    struct http_client *c = req->client;
    if (c->opts.rate_limit == 0)
        return true;
    rate_refill(c);
    if (c->tokens > 0)
        return true;
    if (!req->throttled) {
        req->throttled = true;
        c->throttled = xrealloc(c->throttled, (c->n_throttled + 1) * sizeof(*c->throttled));
        c->throttled[c->n_throttled++] = req;
    }
    if (!uv_is_active((uv_handle_t *)&c->rate_timer)) {
        uint64_t ms = (uint64_t)(-c->tokens * 1000.0 / (double)c->opts.rate_limit) + 1;
        int rc = uv_timer_start(&c->rate_timer, rate_timer_cb, ms, 0);
        if (rc < 0)
            log_error("http rate timer start failed error=\"%s\"", uv_strerror(rc));
    }
    return false;
}

static void rate_charge(struct http_client *c, size_t len)
{
    if (c->opts.rate_limit > 0)
        c->tokens -= (double)len;
}

/* A finished transfer leaves the parked list. */
static void rate_forget(struct http_request *req)
{
    struct http_client *c = req->client;
    if (!req->throttled)
        return;
    req->throttled = false;
    for (size_t i = 0; i < c->n_throttled; i++) {
        if (c->throttled[i] == req) {
            c->throttled[i] = c->throttled[--c->n_throttled];
            break;
        }
    }
}

struct http_client *http_client_new(uv_loop_t *loop, const struct http_client_options *opts)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, http_global_init);

    struct http_client *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    if (opts != NULL)
        c->opts = *opts;
    if (c->opts.max_connections <= 0)
        c->opts.max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
    if (c->opts.max_host_connections <= 0)
        c->opts.max_host_connections = HTTP_DEFAULT_MAX_HOST_CONNECTIONS;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->opts.stall_timeout_s <= 0)
        c->opts.stall_timeout_s = HTTP_DEFAULT_STALL_TIMEOUT_S;

    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        fprintf(stderr, "ferry: out of memory setting up libcurl\n");
        abort();
    }
    /* uv_timer_init() cannot fail on a loop: it only fills in the handle. */
    int rc = uv_timer_init(loop, &c->timer);
    if (rc == 0)
        rc = uv_timer_init(loop, &c->rate_timer);
    if (rc < 0)
        log_error("http timer init failed error=\"%s\"", uv_strerror(rc));
    c->timer.data = c;
    c->rate_timer.data = c;
    c->refill_ns = uv_hrtime();
    c->tokens = (double)rate_burst(c);
    http_multi_failed("setup",
                      curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb));
    http_multi_failed("setup", curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c));
    http_multi_failed("setup",
                      curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, http_timer_start_cb));
    http_multi_failed("setup", curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c));
    http_multi_failed("setup", curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                                                 c->opts.max_connections));
    http_multi_failed("setup", curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                                                 c->opts.max_host_connections));
    http_multi_failed("setup",
                      curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, c->opts.max_connections));
    /* Several streams over one TLS connection where the registry speaks HTTP/2. */
    http_multi_failed("setup",
                      curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX));
    return c;
}

static void http_timer_close_cb(uv_handle_t *handle)
{
    struct http_client *c = handle->data;
    c->timer_closed = true;
    http_client_maybe_free(c);
}

static void http_close_noop(void *arg)
{
    (void)arg;
}

static void http_rate_timer_close_cb(uv_handle_t *handle)
{
    struct http_client *c = handle->data;
    c->rate_timer_closed = true;
    http_client_maybe_free(c);
}

void http_client_close(struct http_client *c, void (*cb)(void *arg), void *arg)
{
    c->close_cb = cb != NULL ? cb : http_close_noop;
    c->close_arg = arg;
    /* Cleaning up the multi handle closes its cached connections, and their
     * sockets' poll handles close through the still-running loop. */
    http_multi_failed("cleanup", curl_multi_cleanup(c->multi));
    c->multi = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, http_timer_close_cb);
    uv_timer_stop(&c->rate_timer);
    uv_close((uv_handle_t *)&c->rate_timer, http_rate_timer_close_cb);
}

static void http_request_finish(struct http_request *req, int rc);

void http_client_abort(struct http_client *c)
{
    c->aborting = true;
    /* Each callback may start requests (they fail at once) or end others. */
    for (int bound = 0; c->active != NULL && bound < 100000; bound++)
        http_request_finish(c->active, FERRY_ECANCELED);
}

void http_client_stats(const struct http_client *c, struct http_stats *out)
{
    *out = c->stats;
}

struct http_request *http_request_new(struct http_client *c, const char *method, const char *url)
{
    struct http_request *req = xcalloc(1, sizeof(*req));
    req->client = c;
    req->method = xstrdup(method);
    req->url = xstrdup(url);
    buf_init(&req->response, HTTP_BODY_DEFAULT_LIMIT);
    buf_init(&req->response_headers, HTTP_HEADERS_MAX);
    return req;
}

void http_request_add_header(struct http_request *req, const char *line)
{
    req->headers = curl_slist_append(req->headers, line);
    if (req->headers == NULL)
        xmalloc(SIZE_MAX);
}

void http_request_set_body(struct http_request *req, const void *data, size_t len)
{
    req->body = data;
    req->body_len = len;
    req->source = NULL;
    req->source_len = len;
    req->has_body = true;
}

void http_request_set_source(struct http_request *req, http_source_cb source, void *arg,
                             uint64_t length)
{
    req->source = source;
    req->source_arg = arg;
    req->source_len = length;
    req->has_body = true;
}

void http_request_set_sink(struct http_request *req, http_sink_cb sink, void *arg)
{
    req->sink = sink;
    req->sink_arg = arg;
}

void http_request_set_body_limit(struct http_request *req, size_t limit)
{
    req->response.limit = limit;
}

void http_request_follow_redirects(struct http_request *req, bool follow)
{
    req->follow = follow;
}

static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_request *req = userp;
    size_t len = size * nmemb;

    /* Bodies of interim responses (redirects) are not the caller's. */
    if (req->follow) {
        long code = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
            code >= 300 && code < 400) {
            req->client->stats.bytes_received += len;
            return len;
        }
    }
    if (req->sink != NULL) {
        if (!rate_admit(req)) {
            req->paused_recv = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        int rc = req->sink(req, data, len, req->sink_arg);
        if (rc == HTTP_SINK_PAUSE) {
            req->paused_recv = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (rc < 0) {
            req->sink_rc = rc;
            return CURL_WRITEFUNC_ERROR;
        }
        rate_charge(req->client, len);
        req->client->stats.bytes_received += len;
        return len;
    }
    if (buf_append(&req->response, data, len) < 0) {
        req->sink_rc = FERRY_ETOOBIG;
        return CURL_WRITEFUNC_ERROR;
    }
    req->client->stats.bytes_received += len;
    return len;
}

static size_t http_header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_request *req = userp;
    size_t len = size * nmemb;

    /* A new status line starts a new response (100 Continue, redirects). */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        buf_reset(&req->response_headers);
        req->headers_overflow = false;
    }
    if (buf_append(&req->response_headers, data, len) < 0) {
        req->headers_overflow = true;
        req->sink_rc = FERRY_ETOOBIG;
        return 0;
    }
    return len;
}

static size_t http_read_cb(char *buffer, size_t size, size_t nitems, void *userp)
{
    struct http_request *req = userp;
    size_t want = size * nitems;

    if (req->source_offset >= req->source_len)
        return 0;
    if (want > req->source_len - req->source_offset)
        want = (size_t)(req->source_len - req->source_offset);
    if (req->source == NULL) {
        memcpy(buffer, req->body + req->source_offset, want);
        req->source_offset += want;
        req->client->stats.bytes_sent += want;
        return want;
    }
    if (!rate_admit(req)) {
        req->paused = true;
        return CURL_READFUNC_PAUSE;
    }
    ssize_t n = req->source(buffer, want, req->source_offset, req->source_arg);
    if (n == HTTP_SOURCE_WAIT) {
        req->paused = true;
        return CURL_READFUNC_PAUSE;
    }
    if (n < 0) {
        req->sink_rc = (int)n;
        return CURL_READFUNC_ABORT;
    }
    if (n == 0) {
        /* The source ended before the length it promised. */
        req->sink_rc = FERRY_EPROTO;
        return CURL_READFUNC_ABORT;
    }
    req->source_offset += (uint64_t)n;
    rate_charge(req->client, (size_t)n);
    req->client->stats.bytes_sent += (uint64_t)n;
    return (size_t)n;
}

static int http_seek_cb(void *userp, curl_off_t offset, int origin)
{
    struct http_request *req = userp;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > req->source_len)
        return CURL_SEEKFUNC_CANTSEEK;
    req->source_offset = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/*
 * Set an option on a request's easy handle. An option the request needs
 * (HTTP_NEED) that fails makes http_request_start() fail with FERRY_EINVAL;
 * one it can do without (HTTP_WANT: HTTP/2, TCP tuning, buffer sizes) is
 * only logged.
 */
#define HTTP_NEED(req, opt, val)                                                                   \
    http_option_set((req), #opt, curl_easy_setopt((req)->easy, opt, val), true)
#define HTTP_WANT(req, opt, val)                                                                   \
    http_option_set((req), #opt, curl_easy_setopt((req)->easy, opt, val), false)

static void http_option_set(struct http_request *req, const char *name, CURLcode code, bool needed)
{
    if (code == CURLE_OK)
        return;
    log_debug("http option not set option=%s error=\"%s\"", name, curl_easy_strerror(code));
    if (needed)
        req->setup_rc = FERRY_EINVAL;
}

/* The options every transfer of the client has: timeouts, TLS, callbacks. */
static void http_request_configure(struct http_request *req)
{
    struct http_client *c = req->client;

    HTTP_NEED(req, CURLOPT_URL, req->url);
    HTTP_NEED(req, CURLOPT_PRIVATE, req);
    HTTP_NEED(req, CURLOPT_NOSIGNAL, 1L);
    HTTP_WANT(req, CURLOPT_TCP_NODELAY, 1L);
    HTTP_WANT(req, CURLOPT_TCP_KEEPALIVE, 1L);
    HTTP_WANT(req, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    HTTP_WANT(req, CURLOPT_PIPEWAIT, 1L);
    HTTP_NEED(req, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms);
    HTTP_NEED(req, CURLOPT_LOW_SPEED_LIMIT, 1L);
    HTTP_NEED(req, CURLOPT_LOW_SPEED_TIME, c->opts.stall_timeout_s);
    /* Past http_client_abort() a request fails at once, through the loop. */
    if (c->aborting)
        HTTP_NEED(req, CURLOPT_TIMEOUT_MS, 1L);
    HTTP_NEED(req, CURLOPT_ERRORBUFFER, req->error_text);
    /* Large buffers: a blob moves in far fewer callbacks and system calls. */
    if (req->sink != NULL)
        HTTP_WANT(req, CURLOPT_BUFFERSIZE, HTTP_STREAM_BUFFER);
    if (req->source != NULL)
        HTTP_WANT(req, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_STREAM_BUFFER);
    HTTP_NEED(req, CURLOPT_USERAGENT, HTTP_USER_AGENT);
    HTTP_NEED(req, CURLOPT_PROTOCOLS_STR, "http,https");
    HTTP_NEED(req, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    HTTP_NEED(req, CURLOPT_WRITEFUNCTION, http_write_cb);
    HTTP_NEED(req, CURLOPT_WRITEDATA, req);
    HTTP_NEED(req, CURLOPT_HEADERFUNCTION, http_header_cb);
    HTTP_NEED(req, CURLOPT_HEADERDATA, req);
    if (req->follow) {
        HTTP_NEED(req, CURLOPT_FOLLOWLOCATION, 1L);
        HTTP_NEED(req, CURLOPT_MAXREDIRS, HTTP_MAX_REDIRECTS);
    }
    if (c->opts.ca_file != NULL)
        HTTP_NEED(req, CURLOPT_CAINFO, c->opts.ca_file);
    if (c->opts.cert_file != NULL)
        HTTP_NEED(req, CURLOPT_SSLCERT, c->opts.cert_file);
    if (c->opts.key_file != NULL)
        HTTP_NEED(req, CURLOPT_SSLKEY, c->opts.key_file);
    if (strncmp(req->url, "https:", 6) == 0)
        http_option_set(req, "CURLOPT_SSL_CTX_FUNCTION",
                        tls_alert_watch(req->easy, &req->tls_alert), false);
    if (c->opts.insecure) {
        HTTP_NEED(req, CURLOPT_SSL_VERIFYPEER, 0L);
        HTTP_NEED(req, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

/* The options of the request's method and body, and its header lines. */
static void http_request_configure_method(struct http_request *req)
{
    /* No "Expect: 100-continue": it costs a round trip per upload. */
    http_request_add_header(req, "Expect:");
    if (strcmp(req->method, "HEAD") == 0) {
        HTTP_NEED(req, CURLOPT_NOBODY, 1L);
    } else if (req->has_body) {
        HTTP_NEED(req, CURLOPT_UPLOAD, 1L);
        HTTP_NEED(req, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->source_len);
        HTTP_NEED(req, CURLOPT_READFUNCTION, http_read_cb);
        HTTP_NEED(req, CURLOPT_READDATA, req);
        HTTP_NEED(req, CURLOPT_SEEKFUNCTION, http_seek_cb);
        HTTP_NEED(req, CURLOPT_SEEKDATA, req);
        if (strcmp(req->method, "PUT") != 0)
            HTTP_NEED(req, CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
               strcmp(req->method, "PATCH") == 0) {
        /* An empty body still needs "Content-Length: 0" for registries. */
        HTTP_NEED(req, CURLOPT_POSTFIELDS, "");
        HTTP_NEED(req, CURLOPT_POSTFIELDSIZE, 0L);
        if (strcmp(req->method, "POST") != 0)
            HTTP_NEED(req, CURLOPT_CUSTOMREQUEST, req->method);
        http_request_add_header(req, "Content-Type:");
    } else if (strcmp(req->method, "GET") != 0) {
        HTTP_NEED(req, CURLOPT_CUSTOMREQUEST, req->method);
    }
    HTTP_NEED(req, CURLOPT_HTTPHEADER, req->headers);
}

int http_request_start(struct http_request *req, http_done_cb cb, void *arg)
{
    struct http_client *c = req->client;

    if (req->started || c->multi == NULL)
        return FERRY_EINVAL;
    req->easy = curl_easy_init();
    if (req->easy == NULL)
        return FERRY_EINVAL;
    http_request_configure(req);
    http_request_configure_method(req);
    if (req->setup_rc < 0) {
        log_error("http request setup failed method=%s", req->method);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        return req->setup_rc;
    }
    req->done = cb;
    req->done_arg = arg;
    req->started = true;
    if (curl_multi_add_handle(c->multi, req->easy) != CURLM_OK) {
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        req->started = false;
        return FERRY_EINVAL;
    }
    c->running++;
    c->stats.requests++;
    c->stats.requests_by_method[http_method_index(req->method)]++;
    req->active_prev = NULL;
    req->active_next = c->active;
    if (c->active != NULL)
        c->active->active_prev = req;
    c->active = req;
    return 0;
}

void http_request_resume(struct http_request *req)
{
    if (req->easy != NULL && (req->paused || req->paused_recv) && !req->finished) {
        req->paused = false;
        req->paused_recv = false;
        CURLcode code = curl_easy_pause(req->easy, CURLPAUSE_CONT);
        if (code != CURLE_OK)
            log_error("http resume failed method=%s error=\"%s\"", req->method,
                      curl_easy_strerror(code));
    }
}

static int http_translate(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return FERRY_ETIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
        return FERRY_ETLS;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return FERRY_EINVAL;
    case CURLE_TOO_MANY_REDIRECTS:
        return FERRY_EPROTO;
    default:
        return FERRY_ECONNECT;
    }
}

/* Finish one transfer: collect its results, detach it and call back. */
static void http_request_finish(struct http_request *req, int rc)
{
    struct http_client *c = req->client;
    char *url = NULL;

    /* Bytes are counted as they pass (http_read_cb, http_write_cb), so that
     * a rate read during a long transfer is true. */
    if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status) != CURLE_OK)
        req->status = 0;
    if (curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK)
        url = NULL;
    req->effective_url = xstrdup(url != NULL ? url : req->url);
    rate_forget(req);
    if (c->multi != NULL)
        http_multi_failed("remove", curl_multi_remove_handle(c->multi, req->easy));
    curl_easy_cleanup(req->easy);
    req->easy = NULL;
    req->finished = true;
    c->running--;
    if (req->active_prev != NULL)
        req->active_prev->active_next = req->active_next;
    else
        c->active = req->active_next;
    if (req->active_next != NULL)
        req->active_next->active_prev = req->active_prev;
    req->active_prev = req->active_next = NULL;
    if (rc < 0)
        req->status = rc == FERRY_ECANCELED ? 0 : req->status;
    http_count_code(&c->stats, http_method_index(req->method), rc < 0 ? 0 : req->status);
    req->done(req, rc, req->done_arg);
}

static void http_check_multi_info(struct http_client *c)
{
    CURLMsg *msg;
    int pending;

    /* Drain every finished transfer; a callback may add new ones. */
    while (c->multi != NULL && (msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_request *req = NULL;
        CURLcode code = curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        if (code != CURLE_OK || req == NULL) {
            /* Not one of ours (it cannot be): out of the multi handle with it. */
            log_error("http transfer without its request error=\"%s\"", curl_easy_strerror(code));
            http_multi_failed("remove", curl_multi_remove_handle(c->multi, msg->easy_handle));
            continue;
        }
        code = msg->data.result;
        int rc = http_translate(code);
        /* A server that refused the session before answering (it said so
         * in a TLS alert, or asked for a client certificate there was none
         * of): a TLS failure, whatever libcurl made of the closed socket.
         * Once it has answered, a broken connection stays one (retried): a
         * server may ask for a certificate it does not require. */
        const char *alert = tls_alert_text(req->tls_alert);
        long answered = 0;
        if (rc == FERRY_ECONNECT && alert != NULL &&
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &answered) == CURLE_OK &&
            answered == 0) {
            rc = FERRY_ETLS;
            snprintf(req->error_text, sizeof(req->error_text), "%s", alert);
        }
        if (req->sink_rc < 0)
            rc = req->sink_rc;
        if (rc < 0)
            log_debug("http transfer failed method=%s code=%d error=\"%s\"", req->method, (int)code,
                      req->error_text[0] ? req->error_text : curl_easy_strerror(code));
        http_request_finish(req, rc);
    }
}

void http_request_cancel(struct http_request *req)
{
    if (!req->started || req->finished)
        return;
    http_request_finish(req, FERRY_ECANCELED);
}

long http_request_status(const struct http_request *req)
{
    long code = 0;
    if (req->easy != NULL && !req->finished) {
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
            return 0;
        return code;
    }
    return req->status;
}

const char *http_request_response_header(struct http_request *req, const char *name)
{
    size_t name_len = strlen(name);
    const char *p = req->response_headers.data;
    const char *found = NULL;
    size_t found_len = 0;

    if (p == NULL)
        return NULL;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t line_len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (line_len > name_len && p[name_len] == ':' && strncasecmp(p, name, name_len) == 0) {
            const char *v = p + name_len + 1;
            const char *end = p + line_len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            found = v;
            found_len = (size_t)(end - v);
        }
        if (eol == NULL)
            break;
        p = eol + 1;
    }
    if (found == NULL)
        return NULL;
    free(req->header_value);
    req->header_value = xstrndup(found, found_len);
    return req->header_value;
}

const struct buf *http_request_response_body(const struct http_request *req)
{
    return &req->response;
}

const char *http_request_url(const struct http_request *req)
{
    return req->effective_url != NULL ? req->effective_url : req->url;
}

const char *http_request_error_text(const struct http_request *req)
{
    return req->error_text;
}

void http_request_free(struct http_request *req)
{
    if (req == NULL)
        return;
    rate_forget(req);
    if (req->easy != NULL) {
        if (req->client->multi != NULL)
            http_multi_failed("remove", curl_multi_remove_handle(req->client->multi, req->easy));
        curl_easy_cleanup(req->easy);
        req->client->running--;
    }
    tls_alert_release(&req->tls_alert);
    /* Header lines may hold credentials (Authorization). */
    for (struct curl_slist *h = req->headers; h != NULL; h = h->next)
        secret_wipe_str(h->data);
    curl_slist_free_all(req->headers);
    buf_release(&req->response);
    buf_release(&req->response_headers);
    free(req->method);
    free(req->url);
    free(req->effective_url);
    free(req->header_value);
    free(req);
}
