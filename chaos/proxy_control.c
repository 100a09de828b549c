/*
 * proxy_control.c: the control endpoint of ferry-chaos-proxy (--control).
 * One request per connection, answered in JSON and closed:
 *
 *   GET|DELETE /stats, GET|PUT|POST|DELETE /rules, GET /healthz,
 *   GET /repositories, POST /repositories?name=R
 *
 * (see proxy.h). The counters it reports are kept by the data path; the
 * rules it installs are parsed by proxy_rules.c.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/proxy_int.h"
#include "common/log.h"
#include "common/xalloc.h"

/* The longest path the control endpoint looks at (the query is cut off). */
#define CONTROL_PATH_MAX 256
/* A query value, decoded, is at most this long. */
#define CONTROL_VALUE_MAX 512

static const char *const proxy_method_slots[N_METHOD_SLOTS] = {"GET",   "HEAD",   "PUT",  "POST",
                                                               "PATCH", "DELETE", "other"};

enum proxy_method_slot proxy_method_slot(const char *method)
{
    for (int i = 0; i < SLOT_OTHER; i++) {
        if (strcmp(proxy_method_slots[i], method) == 0)
            return (enum proxy_method_slot)i;
    }
    return SLOT_OTHER;
}

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

/* ------------------------------------------------------------- connection */

static void control_closed_cb(uv_handle_t *h)
{
    struct control_conn *cc = h->data;
    buf_release(&cc->target);
    buf_release(&cc->body);
    free(cc);
}

static void control_close(struct control_conn *cc)
{
    if (!uv_is_closing((uv_handle_t *)&cc->tcp))
        uv_close((uv_handle_t *)&cc->tcp, control_closed_cb);
}

static void control_written_cb(uv_write_t *req, int status)
{
    struct control_write *w = container_of(req, struct control_write, req);
    struct control_conn *cc = w->cc;
    if (status < 0)
        log_debug("control write failed error=%s", uv_strerror(status));
    free(w->data);
    free(w);
    control_close(cc);
}

/* Sends `body` (taken) with `status` and closes the connection once it is written. */
static void control_answer(struct control_conn *cc, int status, cJSON *body)
{
    char *text = xjson_print(body, false);
    cJSON_Delete(body);
    cc->answered = true;
    int rc = uv_read_stop((uv_stream_t *)&cc->tcp);
    if (rc < 0)
        log_debug("control read stop failed error=%s", uv_strerror(rc));
    struct control_write *w = xcalloc(1, sizeof(*w));
    w->cc = cc;
    w->data = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                        status, proxy_reason(status), strlen(text) + 1, text);
    free(text);
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)strlen(w->data));
    rc = uv_write(&w->req, (uv_stream_t *)&cc->tcp, &b, 1, control_written_cb);
    if (rc < 0) {
        log_debug("control write failed error=%s", uv_strerror(rc));
        free(w->data);
        free(w);
        control_close(cc);
    }
}

static cJSON *control_error(const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    return o;
}

/* ------------------------------------------------------------------ stats */

/* The first ratelimit rule, or NULL. */
static struct rule *proxy_first_ratelimit(struct proxy *p)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        if (p->rules[i]->has_ratelimit)
            return p->rules[i];
    }
    return NULL;
}

static cJSON *proxy_ratelimit_json(const struct vendor_ratelimit *rl, uint64_t now_ms)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "limit", (double)rl->limit);
    cJSON_AddNumberToObject(o, "window_s", (double)rl->window_s);
    cJSON_AddNumberToObject(o, "remaining", (double)rl->remaining);
    cJSON_AddNumberToObject(o, "refused", (double)rl->refused);
    cJSON_AddNumberToObject(o, "reset_in_s", (double)vendor_ratelimit_reset_in_s(rl, now_ms));
    return o;
}

/*
 * What the proxy plays of the vendors: "gate" (null without --repo-gate),
 * "ratelimit" (the first ratelimit rule's, null without one), "etag".
 */
static void proxy_stats_vendor_json(struct proxy *p, cJSON *o)
{
    struct proxy_stats *s = &p->stats;
    if (p->gate_status) {
        cJSON *g = cJSON_AddObjectToObject(o, "gate");
        cJSON_AddNumberToObject(g, "status", p->gate_status);
        cJSON_AddNumberToObject(g, "refused", (double)s->gate_refused);
        cJSON_AddNumberToObject(g, "repositories", (double)p->repos.n);
        cJSON_AddNumberToObject(g, "creations", (double)p->repos.creations);
    } else {
        cJSON_AddNullToObject(o, "gate");
    }
    struct rule *r = proxy_first_ratelimit(p);
    if (r) {
        cJSON *rl = proxy_ratelimit_json(&r->ratelimit, uv_now(p->loop));
        cJSON_AddNumberToObject(rl, "refused_total", (double)s->ratelimit_refused);
        cJSON_AddItemToObject(o, "ratelimit", rl);
    } else {
        cJSON_AddNullToObject(o, "ratelimit");
    }
    cJSON *e = cJSON_AddObjectToObject(o, "etag");
    cJSON_AddNumberToObject(e, "tagged", (double)s->etag_tagged);
    cJSON_AddNumberToObject(e, "not_modified", (double)s->etag_not_modified);
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
    proxy_stats_vendor_json(p, o);
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
        if (r->has_ratelimit)
            cJSON_AddItemToObject(item, "ratelimit",
                                  proxy_ratelimit_json(&r->ratelimit, uv_now(p->loop)));
        cJSON_AddItemToArray(list, item);
    }
    return o;
}

/* --------------------------------------------------------------- requests */

static void control_stats(struct control_conn *cc, const char *method)
{
    struct proxy *p = cc->proxy;
    if (strcmp(method, "GET") == 0) {
        control_answer(cc, 200, proxy_stats_json(p));
    } else if (strcmp(method, "DELETE") == 0) {
        memset(&p->stats, 0, sizeof(p->stats));
        control_answer(cc, 200, proxy_stats_json(p));
    } else {
        control_answer(cc, 405, control_error("want GET or DELETE"));
    }
}

/* PUT (`replace`) or POST /rules: the body's rules, all or nothing. */
static void control_set_rules(struct control_conn *cc, bool replace)
{
    struct proxy *p = cc->proxy;
    struct rule *parsed[RULE_MAX];
    size_t n = 0;
    char err[PROXY_ERR_MAX];
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

static void control_rules(struct control_conn *cc, const char *method)
{
    struct proxy *p = cc->proxy;
    if (strcmp(method, "GET") == 0) {
        control_answer(cc, 200, proxy_rules_json(p));
    } else if (strcmp(method, "DELETE") == 0) {
        proxy_clear_rules(p);
        log_info("rules cleared");
        control_answer(cc, 200, proxy_rules_json(p));
    } else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        control_set_rules(cc, strcmp(method, "PUT") == 0);
    } else {
        control_answer(cc, 405, control_error("want GET, PUT, POST or DELETE"));
    }
}

/* The value of a hex digit, or -1. */
static int control_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * The value of query parameter `key` of `target`, percent-decoded ('+' is a
 * space), into `out`: true when it is there, decodes and fits.
 */
static bool control_query_value(const char *target, const char *key, char *out, size_t out_len)
{
    const char *q = strchr(target, '?');
    size_t klen = strlen(key);
    while (q != NULL) {
        q++;
        size_t n = strcspn(q, "&");
        if (n > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t o = 0;
            for (const char *v = q + klen + 1; v < q + n; v++) {
                char c = *v;
                if (c == '%') {
                    int hi = v + 2 < q + n ? control_hex(v[1]) : -1;
                    int lo = hi >= 0 ? control_hex(v[2]) : -1;
                    if (lo < 0)
                        return false;
                    c = (char)(hi * 16 + lo);
                    v += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (c == '\0' || o + 1 >= out_len)
                    return false;
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        q = strchr(q, '&');
    }
    return false;
}

static cJSON *proxy_repositories_json(struct proxy *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "repositories");
    for (size_t i = 0; i < p->repos.n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(p->repos.names[i]));
    cJSON_AddNumberToObject(o, "creations", (double)p->repos.creations);
    if (p->gate_status)
        cJSON_AddNumberToObject(o, "gate", p->gate_status);
    else
        cJSON_AddNullToObject(o, "gate");
    return o;
}

/* GET /repositories, and POST /repositories?name=R: creates R (201), or finds it there (200). */
static void control_repositories(struct control_conn *cc, const char *method)
{
    struct proxy *p = cc->proxy;
    char name[CONTROL_VALUE_MAX];
    if (strcmp(method, "GET") == 0) {
        control_answer(cc, 200, proxy_repositories_json(p));
        return;
    }
    if (strcmp(method, "POST") != 0) {
        control_answer(cc, 405, control_error("want GET or POST"));
        return;
    }
    if (!control_query_value(cc->target.data, "name", name, sizeof(name))) {
        control_answer(cc, 400, control_error("want POST /repositories?name=REPOSITORY"));
        return;
    }
    int rc = vendor_repos_add(&p->repos, name, true);
    if (rc < 0) {
        control_answer(cc, 400,
                       control_error(rc == FERRY_ETOOBIG
                                         ? "too many repositories"
                                         : "not a repository name (want [a-z0-9._-] components "
                                           "separated by /, up to 255 bytes)"));
        return;
    }
    if (rc == 1)
        log_info("repository created name=%s", name);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "repository", name);
    cJSON_AddBoolToObject(o, "created", rc == 1);
    cJSON_AddNumberToObject(o, "creations", (double)p->repos.creations);
    control_answer(cc, rc == 1 ? 201 : 200, o);
}

static void control_handle(struct control_conn *cc)
{
    const char *method = http_method_str((enum http_method)cc->parser.method);
    char path[CONTROL_PATH_MAX];
    snprintf(path, sizeof(path), "%s", cc->target.data ? cc->target.data : "");
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';

    if (strcmp(path, "/healthz") == 0)
        control_answer(cc, 200, cJSON_CreateObject());
    else if (strcmp(path, "/stats") == 0)
        control_stats(cc, method);
    else if (strcmp(path, "/rules") == 0)
        control_rules(cc, method);
    else if (strcmp(path, "/repositories") == 0)
        control_repositories(cc, method);
    else
        control_answer(cc, 404,
                       control_error("unknown path (want /rules, /stats, /repositories, "
                                     "/healthz)"));
}

/* ---------------------------------------------------------------- parsing */

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

static const http_parser_settings control_settings = {
    .on_url = control_on_url,
    .on_header_field = control_on_header,
    .on_header_value = control_on_header,
    .on_body = control_on_body,
    .on_message_complete = control_on_message_complete,
};

static void control_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct control_conn *cc = stream->data;
    if (nread == 0 || cc->answered)
        return;
    if (nread < 0) {
        control_close(cc);
        return;
    }
    /* How far it got does not matter: the request is complete, or the error says why not. */
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

void proxy_control_accept_cb(uv_stream_t *server, int status)
{
    struct proxy *p = server->data;
    if (status < 0) {
        log_debug("control accept failed error=%s", uv_strerror(status));
        return;
    }
    struct control_conn *cc = xcalloc(1, sizeof(*cc));
    cc->proxy = p;
    buf_init(&cc->target, PROXY_TARGET_MAX);
    buf_init(&cc->body, PROXY_CONTROL_BODY_MAX);
    int rc = uv_tcp_init(p->loop, &cc->tcp);
    if (rc < 0) {
        log_warn("control accept failed error=%s", uv_strerror(rc));
        free(cc);
        return;
    }
    cc->tcp.data = cc;
    if (uv_accept(server, (uv_stream_t *)&cc->tcp) < 0 || p->stopping) {
        control_close(cc);
        return;
    }
    http_parser_init(&cc->parser, HTTP_REQUEST);
    cc->parser.data = cc;
    rc = uv_read_start((uv_stream_t *)&cc->tcp, proxy_alloc_cb, control_read_cb);
    if (rc < 0) {
        log_debug("control read failed error=%s", uv_strerror(rc));
        control_close(cc);
    }
}
