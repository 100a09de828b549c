/*
 * server.c: Ferry's HTTP server (see server.h): libmicrohttpd driven from the
 * loop, the body caps and budget, the Host and content-type checks, and the
 * answers with their security headers.
 */
#include "daemon/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"

/* Without a policy of the caller's, an answer loads nothing and may not be framed. */
#define SERVER_DEFAULT_CSP "default-src 'none'; frame-ancestors 'none'"
/* Longest host name a Host header may carry (RFC 1035), and room for an IPv6 literal. */
#define SERVER_HOST_MAX 256
/* What libmicrohttpd may hold per connection for its headers and buffers. */
#define SERVER_CONNECTION_MEMORY ((size_t)64 * 1024)
#define SERVER_BEARER            "Bearer "

enum request_state {
    REQUEST_RECEIVING = 0,
    REQUEST_HANDLING,  /* inside the handler */
    REQUEST_SUSPENDED, /* waiting for an asynchronous answer */
    REQUEST_ANSWERED,  /* a response is ready to queue */
    REQUEST_SENT,
};

struct server {
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;
    uv_timer_t timer;
    server_admit_cb admit;
    server_handler_cb handler;
    void *arg;
    size_t max_body;
    size_t body_budget;
    size_t body_held;  /* bytes of request bodies counted against the budget now */
    char *listen_host; /* as in the listen address, without brackets */
    int port;
    char *csp;
    char *tls_cert;
    char *tls_key;
    bool starting;
    char start_error[256]; /* what libmicrohttpd said last while starting */
    bool poll_open;        /* the handles made, to be closed */
    bool timer_open;
    int closing_handles;
    void (*close_cb)(void *);
    void *close_arg;
};

struct server_request {
    struct server *server;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    struct buf body;
    size_t held;      /* bytes of this body counted against the budget */
    bool too_big;     /* over max_body: the rest is discarded, the answer is 413 */
    bool over_budget; /* over the budget: the rest is discarded, the answer is 503 */
    enum request_state state;
    unsigned status;
    struct MHD_Response *response;
};

static void server_run(struct server *s);

static void server_timer_cb(uv_timer_t *timer)
{
    server_run(timer->data);
}

/* Wake up in `timeout_ms` to run libmicrohttpd. */
static void server_wake_in(struct server *s, uint64_t timeout_ms)
{
    int rc = uv_timer_start(&s->timer, server_timer_cb, timeout_ms, 0);
    if (rc < 0)
        log_warn("http server timer did not start error=\"%s\"", ferry_strerror(rc));
}

/* Let libmicrohttpd do what is ready, then wake up when it next needs to. */
static void server_run(struct server *s)
{
    MHD_UNSIGNED_LONG_LONG timeout = 0;

    if (s->daemon == NULL)
        return;
    /* Its own errors went to server_log(); the next poll or timeout runs it again. */
    if (MHD_run(s->daemon) != MHD_YES)
        log_debug("http server: a run failed");
    if (MHD_get_timeout(s->daemon, &timeout) == MHD_YES)
        server_wake_in(s, (uint64_t)timeout);
    else if (uv_timer_stop(&s->timer) < 0)
        log_warn("http server timer did not stop");
}

static void server_poll_cb(uv_poll_t *poll, int status, int events)
{
    (void)events;
    /* An error on the descriptor is libmicrohttpd's to see: it runs all the same. */
    if (status < 0)
        log_warn("http server poll error=\"%s\"", ferry_strerror(status));
    server_run(poll->data);
}

static void server_log(void *cls, const char *fmt, va_list ap)
{
    struct server *s = cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    if (s->starting)
        snprintf(s->start_error, sizeof(s->start_error), "%.*s", (int)sizeof(s->start_error) - 1,
                 line);
    log_debug("http server: %s", line);
}

/* Count `bytes` more of req's body against the budget; false when that would pass it. */
static bool server_hold(struct server_request *req, size_t bytes)
{
    struct server *s = req->server;
    if (bytes > s->body_budget - s->body_held)
        return false;
    s->body_held += bytes;
    req->held += bytes;
    return true;
}

/* Drop what the body holds and its place in the budget; the rest of it is discarded. */
static void server_drop_body(struct server_request *req)
{
    req->server->body_held -= req->held;
    req->held = 0;
    buf_release(&req->body);
    buf_init(&req->body, req->server->max_body);
}

static void server_request_free(struct server_request *req)
{
    if (req->response != NULL)
        MHD_destroy_response(req->response);
    req->server->body_held -= req->held;
    buf_release(&req->body);
    free(req->method);
    free(req->path);
    free(req);
}

static void server_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode code)
{
    struct server_request *req = *con_cls;
    (void)cls;
    (void)conn;
    (void)code;
    if (req != NULL)
        server_request_free(req);
    *con_cls = NULL;
}

static enum MHD_Result server_queue(struct server_request *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->response);
    MHD_destroy_response(req->response);
    req->response = NULL;
    req->state = REQUEST_SENT;
    return r;
}

static void server_respond_too_big(struct server_request *req)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "body over %zu bytes", req->server->max_body);
    server_respond_error(req, 413, msg);
}

static void server_respond_busy(struct server_request *req)
{
    char retry[16];
    snprintf(retry, sizeof(retry), "%d", SERVER_RETRY_AFTER_S);
    server_respond_error(req, 503, "too many request bodies in flight; retry");
    server_respond_header(req, "Retry-After", retry);
}

/* A Content-Length of digits only, or -1 when there is none (or it is not that). */
static long long server_content_length(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl == NULL || cl[0] == '\0' || strspn(cl, "0123456789") != strlen(cl) || strlen(cl) > 18)
        return -1;
    return strtoll(cl, NULL, 10);
}

/*
 * The first call, with the headers only: admit, then refuse an announced body
 * over the cap or over the budget before reading any of it. Answering now
 * makes libmicrohttpd skip the body (and send no 100 Continue) and close the
 * connection after the answer.
 */
static enum MHD_Result server_begin(struct server *s, struct MHD_Connection *conn, const char *url,
                                    const char *method, void **con_cls)
{
    struct server_request *req = xcalloc(1, sizeof(*req));
    req->server = s;
    req->conn = conn;
    req->method = xstrdup(method);
    req->path = xstrdup(url);
    buf_init(&req->body, s->max_body);
    *con_cls = req;
    if (s->admit != NULL)
        s->admit(req, s->arg);
    if (req->state == REQUEST_RECEIVING) {
        long long announced = server_content_length(conn);
        if (announced > 0 && (unsigned long long)announced > s->max_body)
            server_respond_too_big(req);
        else if (announced > 0 && !server_hold(req, (size_t)announced))
            server_respond_busy(req);
    }
    if (req->state == REQUEST_ANSWERED)
        return server_queue(req);
    return MHD_YES;
}

/* A piece of the body: kept while it fits under the cap and the budget. */
static void server_receive(struct server_request *req, const char *data, size_t size)
{
    if (req->too_big || req->over_budget)
        return;
    if (size > req->server->max_body - req->body.len) {
        req->too_big = true;
        server_drop_body(req);
        return;
    }
    size_t len = req->body.len + size;
    if (len > req->held && !server_hold(req, len - req->held)) {
        req->over_budget = true;
        server_drop_body(req);
        return;
    }
    /* Within max_body, checked above: the buffer's own cap is the same. */
    if (buf_append(&req->body, data, size) < 0) {
        req->too_big = true;
        server_drop_body(req);
    }
}

static enum MHD_Result server_access(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    struct server *s = cls;
    struct server_request *req = *con_cls;
    (void)version;

    if (req == NULL)
        return server_begin(s, conn, url, method, con_cls);
    if (*upload_data_size > 0) {
        if (req->state == REQUEST_RECEIVING)
            server_receive(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == REQUEST_RECEIVING) {
        if (req->too_big) {
            server_respond_too_big(req);
            return server_queue(req);
        }
        if (req->over_budget) {
            server_respond_busy(req);
            return server_queue(req);
        }
        req->state = REQUEST_HANDLING;
        s->handler(req, s->arg);
        if (req->state == REQUEST_ANSWERED)
            return server_queue(req);
        req->state = REQUEST_SUSPENDED;
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    if (req->state == REQUEST_ANSWERED)
        return server_queue(req);
    return MHD_YES;
}

/* The address to bind, and the host as written (without brackets) in a fresh *host. */
static int server_parse_listen(const char *listen, struct sockaddr_storage *addr, bool *v6,
                               char **host_out)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host))
        return FERRY_EINVAL;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return FERRY_EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    memset(addr, 0, sizeof(*addr));
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']')
            return FERRY_EINVAL;
        host[n - 1] = '\0';
        *v6 = true;
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)addr) != 0)
            return FERRY_EINVAL;
        *host_out = xstrdup(host + 1);
        return 0;
    }
    *v6 = false;
    *host_out = xstrdup(host);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) != 0) {
        free(*host_out);
        *host_out = NULL;
        return FERRY_EINVAL;
    }
    return 0;
}

/* Free the server, its handles closed (or never made). */
static void server_free(struct server *s)
{
    if (s->tls_key != NULL)
        secret_free(s->tls_key);
    free(s->tls_cert);
    free(s->csp);
    free(s->listen_host);
    free(s);
}

/* Watch libmicrohttpd's epoll descriptor and its timeout on the loop. */
static int server_watch(struct server *s)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL)
        return FERRY_EINVAL;
    int rc = uv_timer_init(s->loop, &s->timer);
    if (rc < 0)
        return rc;
    s->timer.data = s;
    s->timer_open = true;
    rc = uv_poll_init(s->loop, &s->poll, info->epoll_fd);
    if (rc < 0)
        return rc;
    s->poll.data = s;
    s->poll_open = true;
    return uv_poll_start(&s->poll, UV_READABLE, server_poll_cb);
}

int server_new(uv_loop_t *loop, const struct server_options *opts, server_admit_cb admit,
               server_handler_cb handler, void *arg, struct server **out, char **err)
{
    struct sockaddr_storage addr;
    bool v6 = false;
    char *listen_host = NULL;

    *out = NULL;
    if (server_parse_listen(opts->listen, &addr, &v6, &listen_host) < 0) {
        *err = xasprintf("listen address '%s' is not host:port", opts->listen);
        return FERRY_EINVAL;
    }
    struct server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->admit = admit;
    s->handler = handler;
    s->arg = arg;
    s->listen_host = listen_host;
    s->max_body = opts->max_body ? opts->max_body : SERVER_DEFAULT_MAX_BODY;
    s->body_budget = opts->body_budget ? opts->body_budget : SERVER_DEFAULT_BODY_BUDGET;
    s->csp =
        xstrdup(opts->content_security_policy ? opts->content_security_policy : SERVER_DEFAULT_CSP);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (v6)
        flags |= MHD_USE_IPv6;
    /* The certificate and key go in through an option array, empty without TLS. */
    struct MHD_OptionItem tls[3] = {
        {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (opts->tls_cert_pem != NULL && opts->tls_key_pem != NULL) {
        s->tls_cert = xstrdup(opts->tls_cert_pem);
        s->tls_key = xstrdup(opts->tls_key_pem);
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
    }
    s->starting = true;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, server_access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, server_completed, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(opts->max_connections ? opts->max_connections : SERVER_DEFAULT_MAX_CONNECTIONS),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(opts->max_connections_per_ip ? opts->max_connections_per_ip
                                                : SERVER_DEFAULT_PER_IP),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(opts->idle_timeout_s ? opts->idle_timeout_s : SERVER_DEFAULT_IDLE_TIMEOUT_S),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, SERVER_CONNECTION_MEMORY, MHD_OPTION_EXTERNAL_LOGGER,
        server_log, s, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    s->starting = false;
    if (s->daemon == NULL) {
        if (s->start_error[0] != '\0')
            *err = xasprintf("cannot listen on %s: %s", opts->listen, s->start_error);
        else
            *err = xasprintf("cannot listen on %s (address in use or not available)", opts->listen);
        server_free(s);
        return FERRY_EINVAL;
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = port != NULL ? port->port : 0;
    int rc = server_watch(s);
    if (rc < 0) {
        *err = xasprintf("cannot watch the listener on %s: %s", opts->listen, ferry_strerror(rc));
        server_close(s, NULL, NULL);
        return rc;
    }
    server_run(s);
    *out = s;
    return 0;
}

int server_port(const struct server *s)
{
    return s->port;
}

/* Free the server and call its close callback once its last handle has closed. */
static void server_finish_close(struct server *s)
{
    if (s->closing_handles > 0)
        return;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    server_free(s);
    if (cb != NULL)
        cb(arg);
}

static void server_handle_closed(uv_handle_t *handle)
{
    struct server *s = handle->data;
    s->closing_handles--;
    server_finish_close(s);
}

void server_close(struct server *s, void (*cb)(void *arg), void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
    if (s->daemon != NULL) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
    /* Stopping a handle never fails; closing it ends whatever it was doing. */
    if (s->poll_open) {
        s->closing_handles++;
        uv_close((uv_handle_t *)&s->poll, server_handle_closed);
    }
    if (s->timer_open) {
        s->closing_handles++;
        uv_close((uv_handle_t *)&s->timer, server_handle_closed);
    }
    /* Without handles (a server_new() that failed early) nothing calls back: do it now. */
    server_finish_close(s);
}

const char *server_request_method(const struct server_request *req)
{
    return req->method;
}

const char *server_request_path(const struct server_request *req)
{
    return req->path;
}

const char *server_request_header(const struct server_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *server_request_query(const struct server_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *server_request_bearer(const struct server_request *req)
{
    const char *auth = server_request_header(req, "Authorization");
    if (auth == NULL || strncasecmp(auth, SERVER_BEARER, strlen(SERVER_BEARER)) != 0)
        return NULL;
    return auth + strlen(SERVER_BEARER);
}

/*
 * A host name of [A-Za-z0-9.-] or an IPv6 address, compared without case,
 * without one trailing dot and, for `b` (as configured), without brackets.
 */
static bool server_name_equal(const char *a, size_t a_len, const char *b)
{
    size_t b_len = strlen(b);
    if (b_len > 2 && b[0] == '[' && b[b_len - 1] == ']') {
        b++;
        b_len -= 2;
    }
    if (a_len > 1 && a[a_len - 1] == '.')
        a_len--;
    if (b_len > 1 && b[b_len - 1] == '.')
        b_len--;
    return a_len == b_len && strncasecmp(a, b, a_len) == 0;
}

bool server_host_is_loopback(const char *name)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0)
        return true;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static bool server_is_address(const char *name)
{
    struct in_addr a4;
    struct in6_addr a6;
    return inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
}

static bool server_is_wildcard(const char *name)
{
    struct in6_addr a6;
    if (strcmp(name, "0.0.0.0") == 0)
        return true;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
}

bool server_host_allowed(const char *listen_host, int port, const char *host, char *const *names,
                         size_t n_names)
{
    char name[SERVER_HOST_MAX];
    const char *rest;
    size_t len;

    if (host == NULL)
        return false;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL)
            return false;
        len = (size_t)(close - host - 1);
        if (len == 0 || len >= sizeof(name))
            return false;
        memcpy(name, host + 1, len);
        name[len] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, name, &a6) != 1)
            return false;
        rest = close + 1;
    } else {
        len = strcspn(host, ":");
        if (len == 0 || len >= sizeof(name))
            return false;
        memcpy(name, host, len);
        name[len] = '\0';
        if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != len)
            return false;
        rest = host + len;
    }
    long given = 0;
    if (rest[0] == ':') {
        size_t digits = strspn(rest + 1, "0123456789");
        if (digits == 0 || digits > 5 || rest[1 + digits] != '\0')
            return false;
        given = strtol(rest + 1, NULL, 10);
        if (given < 1 || given > 65535)
            return false;
    } else if (rest[0] != '\0') {
        return false;
    }

    for (size_t i = 0; i < n_names; i++)
        if (server_name_equal(name, len, names[i]))
            return true;
    bool port_ok = given != 0 ? given == port : port == 80 || port == 443;
    if (!port_ok)
        return false;
    if (server_name_equal(name, len, listen_host))
        return true;
    if (server_host_is_loopback(listen_host))
        return server_host_is_loopback(name);
    if (server_is_wildcard(listen_host))
        return server_is_address(name) || server_host_is_loopback(name);
    return false;
}

bool server_request_host_allowed(const struct server_request *req, char *const *names,
                                 size_t n_names)
{
    const struct server *s = req->server;
    return server_host_allowed(s->listen_host, s->port, server_request_header(req, "Host"), names,
                               n_names);
}

bool server_media_type_json(const char *content_type)
{
    static const char tchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "!#$%&'*+-.^_`|~";
    if (content_type == NULL)
        return false;
    const char *type = content_type + strspn(content_type, " \t");
    size_t len = strcspn(type, ";");
    while (len > 0 && (type[len - 1] == ' ' || type[len - 1] == '\t'))
        len--;
    if (len == strlen("application/json") && strncasecmp(type, "application/json", len) == 0)
        return true;
    /* TYPE/SUBTYPE+json: two tokens around one slash, the second ending so. */
    size_t first = strspn(type, tchar);
    if (first == 0 || first >= len || type[first] != '/')
        return false;
    const char *subtype = type + first + 1;
    size_t second = len - first - 1;
    return second > 5 && strspn(subtype, tchar) >= second &&
           strncasecmp(subtype + second - 5, "+json", 5) == 0;
}

const char *server_request_body(const struct server_request *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

/* Add a header to the answer; libmicrohttpd refuses only a malformed one, a bug of ours. */
static void server_add_header(struct server_request *req, const char *name, const char *value)
{
    if (MHD_add_response_header(req->response, name, value) != MHD_YES)
        log_error("http server: header refused name=%s", name);
}

void server_respond(struct server_request *req, unsigned status, const char *content_type,
                    const char *body, size_t len)
{
    req->response = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (req->response == NULL) {
        /* It copies the body: NULL means no memory, which aborts as xmalloc does. */
        fprintf(stderr, "ferry: out of memory making an HTTP answer (%zu bytes)\n", len);
        abort();
    }
    server_add_header(req, "Content-Type", content_type);
    server_add_header(req, "Cache-Control", "no-store");
    /* No page of Ferry's may be framed (clickjacking): old browsers read the
     * first header, current ones the policy's frame-ancestors. */
    server_add_header(req, "X-Frame-Options", "DENY");
    server_add_header(req, "X-Content-Type-Options", "nosniff");
    server_add_header(req, "Content-Security-Policy", req->server->csp);
    req->status = status;
    bool suspended = req->state == REQUEST_SUSPENDED;
    req->state = REQUEST_ANSWERED;
    if (suspended) {
        MHD_resume_connection(req->conn);
        /* Run the daemon soon so the answer leaves without waiting for I/O. */
        server_wake_in(req->server, 0);
    }
}

void server_respond_error(struct server_request *req, unsigned status, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", message);
    char *text = xjson_print(j, false);
    server_respond(req, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(j);
}

void server_respond_header(struct server_request *req, const char *name, const char *value)
{
    if (req->response != NULL)
        server_add_header(req, name, value);
}
