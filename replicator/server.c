#include "server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "errors.h"
#include "log.h"
#include "xalloc.h"

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
    server_handler_cb handler;
    void *arg;
    size_t max_body;
    int port;
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
    bool too_big;
    enum request_state state;
    unsigned status;
    struct MHD_Response *response;
};

static void server_run(struct server *s);

static void server_timer_cb(uv_timer_t *timer)
{
    server_run(timer->data);
}

/* Let libmicrohttpd do what is ready, then wake up when it next needs to. */
static void server_run(struct server *s)
{
    MHD_UNSIGNED_LONG_LONG timeout = 0;

    if (s->daemon == NULL)
        return;
    MHD_run(s->daemon);
    if (MHD_get_timeout(s->daemon, &timeout) == MHD_YES)
        uv_timer_start(&s->timer, server_timer_cb, (uint64_t)timeout, 0);
    else
        uv_timer_stop(&s->timer);
}

static void server_poll_cb(uv_poll_t *poll, int status, int events)
{
    (void)status;
    (void)events;
    server_run(poll->data);
}

static void server_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_debug("http server: %s", line);
}

static void server_request_free(struct server_request *req)
{
    if (req->response != NULL)
        MHD_destroy_response(req->response);
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

static enum MHD_Result server_access(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    struct server *s = cls;
    struct server_request *req = *con_cls;
    (void)version;

    if (req == NULL) {
        req = xcalloc(1, sizeof(*req));
        req->server = s;
        req->conn = conn;
        req->method = xstrdup(method);
        req->path = xstrdup(url);
        buf_init(&req->body, s->max_body);
        /* Refuse an announced oversized body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > s->max_body)
            req->too_big = true;
        *con_cls = req;
        return MHD_YES;
    }
    if (req->state == REQUEST_RECEIVING && *upload_data_size > 0) {
        if (!req->too_big && buf_append(&req->body, upload_data, *upload_data_size) < 0) {
            req->too_big = true;
            buf_release(&req->body);
            buf_init(&req->body, s->max_body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == REQUEST_RECEIVING) {
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

static int server_parse_listen(const char *listen, struct sockaddr_storage *addr, bool *v6)
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
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)addr) == 0 ? 0
                                                                                  : FERRY_EINVAL;
    }
    *v6 = false;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0 ? 0 : FERRY_EINVAL;
}

int server_new(uv_loop_t *loop, const struct server_options *opts, server_handler_cb handler,
               void *arg, struct server **out, char **err)
{
    struct sockaddr_storage addr;
    bool v6 = false;

    *out = NULL;
    if (server_parse_listen(opts->listen, &addr, &v6) < 0) {
        *err = xasprintf("listen address '%s' is not host:port", opts->listen);
        return FERRY_EINVAL;
    }
    struct server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    s->max_body = opts->max_body ? opts->max_body : 1024 * 1024;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (v6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, server_access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, server_completed, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(opts->max_connections ? opts->max_connections : 1024),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(opts->idle_timeout_s ? opts->idle_timeout_s : 30),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_EXTERNAL_LOGGER,
        server_log, s, MHD_OPTION_END);
    if (s->daemon == NULL) {
        *err = xasprintf("cannot listen on %s (address in use or not available)", opts->listen);
        free(s);
        return FERRY_EINVAL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = port != NULL ? port->port : 0;
    uv_poll_init(loop, &s->poll, info->epoll_fd);
    s->poll.data = s;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_poll_start(&s->poll, UV_READABLE, server_poll_cb);
    server_run(s);
    *out = s;
    return 0;
}

int server_port(const struct server *s)
{
    return s->port;
}

static void server_handle_closed(uv_handle_t *handle)
{
    struct server *s = handle->data;
    if (--s->closing_handles > 0)
        return;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb != NULL)
        cb(arg);
}

void server_close(struct server *s, void (*cb)(void *arg), void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
    if (s->daemon != NULL) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
    s->closing_handles = 2;
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->poll, server_handle_closed);
    uv_close((uv_handle_t *)&s->timer, server_handle_closed);
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

const char *server_request_body(const struct server_request *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

bool server_request_body_too_big(const struct server_request *req)
{
    return req->too_big;
}

void server_respond(struct server_request *req, unsigned status, const char *content_type,
                    const char *body, size_t len)
{
    req->response = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(req->response, "Content-Type", content_type);
    MHD_add_response_header(req->response, "Cache-Control", "no-store");
    req->status = status;
    bool suspended = req->state == REQUEST_SUSPENDED;
    req->state = REQUEST_ANSWERED;
    if (suspended) {
        MHD_resume_connection(req->conn);
        /* Run the daemon soon so the answer leaves without waiting for I/O. */
        uv_timer_start(&req->server->timer, server_timer_cb, 0, 0);
    }
}

void server_respond_error(struct server_request *req, unsigned status, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", message);
    char *text = cJSON_PrintUnformatted(j);
    server_respond(req, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(j);
}
