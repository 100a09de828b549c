/*
 * daemon_client: the blocking client of `ferry status`, `ferry retry` and
 * `ferry journal append`, against a scripted HTTP responder on loopback (a
 * thread that answers one connection as told and keeps what it was sent).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/daemon_client.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/xalloc.h"

/* How long the responder waits for anything, so that a broken test cannot hang. */
#define RESPONDER_WAIT_MS 5000

/* One connection, answered with `response` (NULL: never answered). */
struct responder {
    int listen_fd;
    int port;
    char *response; /* the whole answer, status line to body */
    size_t response_len;
    char request[16384]; /* what the client sent, headers and body */
    size_t request_len;
    pthread_t thread;
};

/* Wait until `fd` can be read; false after RESPONDER_WAIT_MS. */
static bool responder_wait(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, RESPONDER_WAIT_MS) == 1;
}

/* Read the request: its headers, then as many body bytes as Content-Length says. */
static void responder_read(struct responder *r, int fd)
{
    size_t want = 0;
    for (;;) {
        char *end = strstr(r->request, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strcasestr(r->request, "Content-Length:");
            size_t body = cl != NULL && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
            want = (size_t)(end + 4 - r->request) + body;
            if (r->request_len >= want)
                return;
        }
        if (!responder_wait(fd))
            return;
        ssize_t n =
            recv(fd, r->request + r->request_len, sizeof(r->request) - 1 - r->request_len, 0);
        if (n <= 0)
            return;
        r->request_len += (size_t)n;
        r->request[r->request_len] = '\0';
    }
}

static void *responder_run(void *arg)
{
    struct responder *r = arg;
    if (!responder_wait(r->listen_fd))
        return NULL;
    int fd = accept(r->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    responder_read(r, fd);
    if (r->response != NULL) {
        size_t off = 0;
        while (off < r->response_len) {
            ssize_t n = send(fd, r->response + off, r->response_len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    } else {
        /* Never answer: wait for the client to give up and close. */
        char byte;
        while (responder_wait(fd) && recv(fd, &byte, 1, 0) > 0)
            ;
    }
    close(fd);
    return NULL;
}

/* A responder on a free loopback port; `response` NULL never answers. */
static struct responder *responder_start(const char *response, size_t len)
{
    struct responder *r = xcalloc(1, sizeof(*r));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->listen_fd >= 0);
    assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(r->listen_fd, 1), 0);
    assert_int_equal(getsockname(r->listen_fd, (struct sockaddr *)&sa, &sl), 0);
    r->port = ntohs(sa.sin_port);
    if (response != NULL) {
        r->response = xmalloc(len);
        memcpy(r->response, response, len);
        r->response_len = len;
    }
    assert_int_equal(pthread_create(&r->thread, NULL, responder_run, r), 0);
    return r;
}

/* Wait for the responder to be done; what it was sent may then be read. */
static void responder_join(struct responder *r)
{
    assert_int_equal(pthread_join(r->thread, NULL), 0);
}

static void responder_free(struct responder *r)
{
    close(r->listen_fd);
    free(r->response);
    free(r);
}

static void responder_stop(struct responder *r)
{
    responder_join(r);
    responder_free(r);
}

/* An answer with `status` and `body` (and the length of the body). */
static char *answer(int status, const char *body)
{
    return xasprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n%s",
                     status, strlen(body), body);
}

/* curl's words: present and on one line (they start with a capital). */
static void assert_one_line(const char *text)
{
    assert_non_null(text);
    assert_true(text[0] != '\0');
    assert_null(strchr(text, '\n'));
}

static char *base_of(const struct responder *r)
{
    return xasprintf("http://127.0.0.1:%d", r->port);
}

/* A GET with a token: the header goes out, the JSON comes back. */
static void test_get_json(void **state)
{
    (void)state;
    char *text = answer(200, "{\"requeued\":3}");
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, "s3cret");
    cJSON *json = NULL;
    char *error = NULL;

    assert_int_equal(daemon_client_call(&c, "/v1/status", NULL, &json, &error), 0);
    assert_null(error);
    assert_int_equal(cJSON_GetObjectItem(json, "requeued")->valueint, 3);
    responder_stop(r);
    cJSON_Delete(json);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* What went out: the method, the path, the token's header, the body of a POST. */
static void test_request_sent(void **state)
{
    (void)state;
    char *text = answer(200, "{}");
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, "s3cret");
    struct daemon_answer a;
    char *error = NULL;

    assert_int_equal(daemon_client_request(&c, "/v1/retry", "{\"destination\":\"eu\"}", &a, &error),
                     0);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "{}");
    assert_int_equal(a.len, 2);
    assert_non_null(a.json);
    responder_join(r);
    assert_true(strncmp(r->request, "POST /v1/retry HTTP/1.1\r\n", 25) == 0);
    assert_non_null(strstr(r->request, "\r\nAuthorization: Bearer s3cret\r\n"));
    assert_non_null(strstr(r->request, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(r->request, "\r\n\r\n{\"destination\":\"eu\"}"));
    responder_free(r);
    daemon_answer_release(&a);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* No token, no header; a GET has no body and no Content-Type. */
static void test_no_token(void **state)
{
    (void)state;
    char *text = answer(200, "{}");
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, "");
    assert_null(c.auth);
    struct daemon_answer a;
    char *error = NULL;

    assert_int_equal(daemon_client_request(&c, "/v1/status", NULL, &a, &error), 0);
    responder_join(r);
    assert_true(strncmp(r->request, "GET /v1/status HTTP/1.1\r\n", 25) == 0);
    assert_null(strcasestr(r->request, "Authorization"));
    assert_null(strcasestr(r->request, "Content-Type"));
    responder_free(r);
    daemon_answer_release(&a);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* Another status is an error naming it and the daemon's own error. */
static void test_error_status(void **state)
{
    (void)state;
    char *text = answer(503, "{\"error\":\"reloading\"}");
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    cJSON *json = NULL;
    char *error = NULL;

    assert_int_equal(daemon_client_call(&c, "/v1/images?x=1", NULL, &json, &error), FERRY_EHTTP);
    assert_null(json);
    char *want = xasprintf("%s/v1/images?x=1: HTTP 503: reloading", base);
    assert_string_equal(error, want);
    responder_stop(r);
    free(want);
    free(error);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* A 200 that is not JSON is an error for a call, and an answer for a request. */
static void test_not_json(void **state)
{
    (void)state;
    char *text = answer(200, "hello");
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    cJSON *json = NULL;
    char *error = NULL;

    assert_int_equal(daemon_client_call(&c, "/v1/status", NULL, &json, &error), FERRY_EPARSE);
    assert_null(json);
    char *want = xasprintf("%s/v1/status: the answer is not JSON", base);
    assert_string_equal(error, want);
    responder_stop(r);
    free(want);
    free(error);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* An answer past the cap is refused with one clear line, whatever its status. */
static void test_body_cap(void **state)
{
    (void)state;
    size_t big = 64 * 1024;
    char *body = xmalloc(big + 1);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    body[big] = '\0';
    char *text = answer(200, body);
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    assert_int_equal(c.body_max, DAEMON_CLIENT_BODY_MAX);
    c.body_max = big - 1;
    cJSON *json = NULL;
    char *error = NULL;

    assert_int_equal(daemon_client_call(&c, "/v1/status", NULL, &json, &error), FERRY_ETOOBIG);
    assert_null(json);
    assert_message(error);
    char *want = xasprintf("%s/v1/status: the answer is larger than 64.0 KiB", base);
    assert_string_equal(error, want);
    responder_stop(r);
    free(want);
    free(error);
    free(body);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* The same answer under the cap comes through whole. */
static void test_body_at_cap(void **state)
{
    (void)state;
    size_t big = 64 * 1024;
    char *body = xmalloc(big + 1);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    body[big] = '\0';
    char *text = answer(200, body);
    struct responder *r = responder_start(text, strlen(text));
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    c.body_max = big;
    struct daemon_answer a;
    char *error = NULL;

    assert_int_equal(daemon_client_request(&c, "/v1/status", NULL, &a, &error), 0);
    assert_int_equal(a.len, big);
    assert_non_null(a.json);
    responder_stop(r);
    daemon_answer_release(&a);
    free(body);
    daemon_client_release(&c);
    free(base);
    free(text);
}

/* Nobody listening: no answer, and the line names the daemon. */
static void test_refused(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char *base = xasprintf("http://127.0.0.1:%d", ntohs(sa.sin_port));
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    cJSON *json = NULL;
    char *error = NULL;

    /* Bound but not listening: the connection is refused. */
    assert_int_equal(daemon_client_call(&c, "/v1/status", NULL, &json, &error), FERRY_ECONNECT);
    assert_null(json);
    assert_true(strncmp(error, base, strlen(base)) == 0);
    assert_one_line(error + strlen(base) + 2);
    close(fd);
    free(error);
    daemon_client_release(&c);
    free(base);
}

/* A daemon that never answers is given up on at the deadline. */
static void test_timeout(void **state)
{
    (void)state;
    struct responder *r = responder_start(NULL, 0);
    char *base = base_of(r);
    struct daemon_client c;
    daemon_client_init(&c, base, NULL, NULL);
    c.timeout_ms = 300;
    struct daemon_answer a;
    char *error = NULL;

    int64_t start = clock_mono_ms();
    assert_int_equal(daemon_client_request(&c, "/v1/status", NULL, &a, &error), FERRY_ECONNECT);
    int64_t took = clock_mono_ms() - start;
    assert_true(took >= 250 && took < 3000);
    assert_null(a.body);
    assert_one_line(error);
    responder_stop(r);
    free(error);
    daemon_client_release(&c);
    free(base);
}

/* Where the client goes and with which token. */
static void test_init(void **state)
{
    (void)state;
    struct config cfg;
    struct daemon_client c;
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = "127.0.0.1:8080";

    daemon_client_init(&c, "http://example.test:9///", &cfg, NULL);
    assert_string_equal(c.base, "http://example.test:9");
    assert_null(c.auth);
    assert_int_equal(c.timeout_ms, DAEMON_CLIENT_TIMEOUT_MS);
    daemon_client_release(&c);

    daemon_client_init(&c, NULL, &cfg, "t0k");
    assert_string_equal(c.base, "http://127.0.0.1:8080");
    assert_string_equal(c.auth, "Authorization: Bearer t0k");
    daemon_client_release(&c);
    assert_null(c.auth);

    assert_int_equal(setenv("FERRY_API_TOKEN", "from-env", 1), 0);
    assert_string_equal(daemon_client_api_token(&cfg), "from-env");
    assert_string_equal(daemon_client_api_token(NULL), "from-env");
    cfg.api_token = "from-config";
    assert_string_equal(daemon_client_api_token(&cfg), "from-config");
    assert_int_equal(unsetenv("FERRY_API_TOKEN"), 0);
    cfg.api_token = NULL;
    assert_null(daemon_client_api_token(&cfg));
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_json),    cmocka_unit_test(test_request_sent),
        cmocka_unit_test(test_no_token),    cmocka_unit_test(test_error_status),
        cmocka_unit_test(test_not_json),    cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_body_at_cap), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_timeout),     cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
