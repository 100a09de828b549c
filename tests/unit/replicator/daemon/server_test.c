#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include "daemon/server.h"

struct host_case {
    const char *listen_host;
    int port;
    const char *host; /* the Host header; NULL: none */
    bool allowed;
};

static char *const no_names[] = {NULL};

static const struct host_case host_cases[] = {
    /* Loopback listeners: the listen host, localhost and loopback addresses, with the port. */
    {"127.0.0.1", 8780, "127.0.0.1:8780", true},
    {"127.0.0.1", 8780, "localhost:8780", true},
    {"127.0.0.1", 8780, "LocalHost:8780", true},
    {"127.0.0.1", 8780, "localhost.:8780", true},
    {"127.0.0.1", 8780, "127.0.0.2:8780", true},
    {"127.0.0.1", 8780, "[::1]:8780", true},
    {"127.0.0.1", 8780, "127.0.0.1:8781", false},
    {"127.0.0.1", 8780, "127.0.0.1", false},
    {"127.0.0.1", 8780, "localhost", false},
    {"127.0.0.1", 8780, "evil.example.com:8780", false},
    {"127.0.0.1", 8780, "evil.example.com", false},
    {"127.0.0.1", 8780, "localhost.evil.example.com:8780", false},
    {"127.0.0.1", 8780, "127.0.0.1.nip.io:8780", false},
    {"127.0.0.1", 8780, "10.0.0.1:8780", false},
    {"localhost", 8780, "localhost:8780", true},
    {"localhost", 8780, "127.0.0.1:8780", true},
    {"::1", 8780, "[::1]:8780", true},
    {"::1", 8780, "localhost:8780", true},
    {"::1", 8780, "[::2]:8780", false},
    /* Without a port the default ports match: 80 and 443 only. */
    {"127.0.0.1", 80, "localhost", true},
    {"127.0.0.1", 443, "127.0.0.1", true},
    {"127.0.0.1", 80, "localhost:80", true},
    /* Every address: any address literal or localhost, never a name. */
    {"0.0.0.0", 8780, "10.1.2.3:8780", true},
    {"0.0.0.0", 8780, "[fd00::5]:8780", true},
    {"0.0.0.0", 8780, "localhost:8780", true},
    {"0.0.0.0", 8780, "0.0.0.0:8780", true},
    {"0.0.0.0", 8780, "10.1.2.3:9999", false},
    {"0.0.0.0", 8780, "ferry.internal:8780", false},
    {"::", 8780, "10.1.2.3:8780", true},
    {"::", 8780, "ferry.internal:8780", false},
    /* A specific address: itself only. */
    {"10.0.0.5", 8780, "10.0.0.5:8780", true},
    {"10.0.0.5", 8780, "10.0.0.6:8780", false},
    {"10.0.0.5", 8780, "localhost:8780", false},
    {"fd00::5", 8780, "[FD00::5]:8780", true},
    /* Malformed headers. */
    {"127.0.0.1", 8780, NULL, false},
    {"127.0.0.1", 8780, "", false},
    {"127.0.0.1", 8780, ":8780", false},
    {"127.0.0.1", 8780, "localhost:", false},
    {"127.0.0.1", 8780, "localhost:8780x", false},
    {"127.0.0.1", 8780, "localhost:0", false},
    {"127.0.0.1", 8780, "localhost:65536", false},
    {"127.0.0.1", 8780, "localhost:8780:1", false},
    {"127.0.0.1", 8780, "local host:8780", false},
    {"127.0.0.1", 8780, "localhost\r\n:8780", false},
    {"127.0.0.1", 8780, "user@localhost:8780", false},
    {"127.0.0.1", 8780, "[::1", false},
    {"127.0.0.1", 8780, "[::1]x", false},
    {"127.0.0.1", 8780, "[localhost]:8780", false},
    {"127.0.0.1", 8780, "[]:8780", false},
    {"127.0.0.1", 8780, "::1:8780", false},
};

static void test_host_allowed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
        const struct host_case *c = &host_cases[i];
        bool got = server_host_allowed(c->listen_host, c->port, c->host, no_names, 0);
        if (got != c->allowed)
            fail_msg("listen %s port %d, Host '%s': got %d", c->listen_host, c->port,
                     c->host ? c->host : "(none)", got);
    }
}

static void test_host_server_names(void **state)
{
    char *names[] = {"ferry.example.com", "Ferry.Internal.", "[fd00::1]", "10.9.8.7"};
    size_t n = sizeof(names) / sizeof(names[0]);
    (void)state;
    /* A configured name matches with any port, or none, in any case. */
    assert_true(server_host_allowed("0.0.0.0", 8780, "ferry.example.com", names, n));
    assert_true(server_host_allowed("0.0.0.0", 8780, "ferry.example.com:443", names, n));
    assert_true(server_host_allowed("127.0.0.1", 8780, "FERRY.EXAMPLE.COM:8780", names, n));
    assert_true(server_host_allowed("127.0.0.1", 8780, "ferry.example.com.", names, n));
    assert_true(server_host_allowed("127.0.0.1", 8780, "ferry.internal", names, n));
    assert_true(server_host_allowed("127.0.0.1", 8780, "[fd00::1]:1", names, n));
    assert_true(server_host_allowed("127.0.0.1", 8780, "10.9.8.7", names, n));
    /* Only whole names. */
    assert_false(server_host_allowed("127.0.0.1", 8780, "x.ferry.example.com", names, n));
    assert_false(server_host_allowed("127.0.0.1", 8780, "ferry.example.co", names, n));
    assert_false(server_host_allowed("127.0.0.1", 8780, "ferry.example.com.evil", names, n));
    assert_false(server_host_allowed("127.0.0.1", 8780, "[fd00::2]:8780", names, n));
    /* The listen address still works beside them. */
    assert_true(server_host_allowed("127.0.0.1", 8780, "localhost:8780", names, n));
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(server_host_is_loopback("localhost"));
    assert_true(server_host_is_loopback("127.0.0.1"));
    assert_true(server_host_is_loopback("127.255.0.9"));
    assert_true(server_host_is_loopback("::1"));
    assert_false(server_host_is_loopback("0.0.0.0"));
    assert_false(server_host_is_loopback("::"));
    assert_false(server_host_is_loopback("128.0.0.1"));
    assert_false(server_host_is_loopback("10.0.0.1"));
    assert_false(server_host_is_loopback("localhost.example.com"));
    assert_false(server_host_is_loopback("127.1"));
}

static void test_media_type_json(void **state)
{
    static const char *const yes[] = {
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        " application/json ",
        "application/json\t; x=y",
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
        "application/cloudevents+json",
        "application/x.y+JSON",
    };
    static const char *const no[] = {
        "",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-seq",
        "application/+json",
        "application/x+jsonx",
        "application/x+json/x",
        "/x+json",
        "application/ x+json",
        "text/plain; x=application/json",
        "application",
        "json",
    };
    (void)state;
    assert_false(server_media_type_json(NULL));
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!server_media_type_json(yes[i]))
            fail_msg("'%s' is JSON", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (server_media_type_json(no[i]))
            fail_msg("'%s' is not JSON", no[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_allowed),
        cmocka_unit_test(test_host_server_names),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_media_type_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
