/*
 * The fault proxy's rule language (chaos/rule.c): the actions that play
 * vendors (code=, ratelimit=, etag) parse, combine and refuse as rule.h says;
 * the older actions keep parsing as before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/rule.h"
#include "common/errors.h"

/* Parses `line`, which must be accepted; the caller frees the rule. */
static struct rule *parse_ok(const char *line)
{
    char err[512] = "";
    struct rule *r = NULL;
    int rc = rule_parse(line, &r, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "refused '%s': %s\n", line, err);
    assert_int_equal(rc, 0);
    assert_non_null(r);
    return r;
}

/* `line` is refused with one line that names it and contains `why`. */
static void parse_refused(const char *line, const char *why)
{
    char err[512] = "";
    struct rule *r = (struct rule *)0x1;
    assert_int_equal(rule_parse(line, &r, err, sizeof(err)), FERRY_EINVAL);
    assert_null(r);
    char want[600];
    snprintf(want, sizeof(want), "bad rule '%s'", line);
    if (strstr(err, want) != err || strstr(err, why) == NULL)
        fail_msg("refusal of '%s' is '%s', want it to name the rule and say '%s'", line, err, why);
    assert_null(strchr(err, '\n'));
}

static void test_status_code(void **state)
{
    (void)state;
    struct rule *r = parse_ok("GET /v2/_catalog status=404 code=NAME_UNKNOWN");
    assert_int_equal(r->fault, RULE_FAULT_STATUS);
    assert_int_equal(r->status, 404);
    assert_string_equal(r->code, "NAME_UNKNOWN");
    rule_free(r);

    r = parse_ok("GET /v2/_catalog status=401");
    assert_string_equal(r->code, "");
    rule_free(r);

    parse_refused("GET /x code=DENIED", "no action");
    parse_refused("GET /x code=DENIED delay_ms=1", "code needs status=");
    parse_refused("GET /x flip code=DENIED", "code needs status=");
    parse_refused("GET /x status=403 code=denied", "code wants A-Z, 0-9 and _");
    parse_refused("GET /x status=403 code=", "needs a value");
    parse_refused("GET /x status=403 code=ABCDEFGHIJKLMNOPQRSTUVWXYZ_ABCDEF", "code wants");
    parse_refused("GET /x status=403 code=A code=B", "given twice");
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct rule *r = parse_ok("* /v2/library/ ratelimit=100");
    assert_true(r->has_ratelimit);
    assert_int_equal(r->fault, RULE_FAULT_NONE);
    assert_int_equal(r->ratelimit.limit, 100);
    assert_int_equal(r->ratelimit.window_s, 21600);
    assert_int_equal(r->ratelimit.remaining, 100);
    assert_false(r->etag);
    rule_free(r);

    r = parse_ok("GET * ratelimit=0/60 delay_ms=5");
    assert_int_equal(r->ratelimit.limit, 0);
    assert_int_equal(r->ratelimit.window_s, 60);
    assert_int_equal(r->delay_ms, 5);
    rule_free(r);

    parse_refused("GET * ratelimit=", "needs a value");
    parse_refused("GET * ratelimit=x", "ratelimit wants LIMIT[/WINDOW_S]");
    parse_refused("GET * ratelimit=10/", "ratelimit wants");
    parse_refused("GET * ratelimit=10/0", "ratelimit wants");
    parse_refused("GET * ratelimit=10/604801", "ratelimit wants");
    parse_refused("GET * ratelimit=/60", "ratelimit wants");
    parse_refused("GET * ratelimit=-1", "ratelimit wants");
    parse_refused("GET * ratelimit=1000000001", "ratelimit wants");
    /* It acts on every request it selects: no fault, no draw, no count. */
    parse_refused("GET * ratelimit=10 status=503", "no fault, rate= or count=");
    parse_refused("GET * ratelimit=10 rate=0.5", "no fault, rate= or count=");
    parse_refused("GET * ratelimit=10 count=3", "no fault, rate= or count=");
}

static void test_etag(void **state)
{
    (void)state;
    struct rule *r = parse_ok("GET /tags/list etag");
    assert_true(r->etag);
    assert_false(r->has_ratelimit);
    assert_int_equal(r->fault, RULE_FAULT_NONE);
    rule_free(r);

    /* With the pull limit in one rule, and with shaping. */
    r = parse_ok("GET ~/v2/app/ etag ratelimit=5/10 bandwidth=1M");
    assert_true(r->etag);
    assert_true(r->has_ratelimit);
    assert_int_equal(r->bandwidth, 1024 * 1024);
    rule_free(r);

    parse_refused("GET /x etag=1", "takes no value");
    parse_refused("GET /x etag truncate", "no fault, rate= or count=");
    parse_refused("GET /x etag rate=0.1", "no fault, rate= or count=");
    parse_refused("GET /x etag etag", "given twice");
}

/* The older actions and refusals are as they were. */
static void test_unchanged(void **state)
{
    (void)state;
    struct rule *r = parse_ok("GET /blobs/ flip rate=0.5 count=3");
    assert_int_equal(r->fault, RULE_FAULT_FLIP);
    assert_false(r->has_ratelimit);
    assert_false(r->etag);
    rule_free(r);
    r = parse_ok("* * status=429 retry_after=1 count=8");
    assert_int_equal(r->retry_after_s, 1);
    rule_free(r);
    parse_refused("GET /x", "want METHOD PATH ACTION");
    parse_refused("GET /blobs/ flop", "unknown action 'flop'");
    parse_refused("GET /x retry_after=1 flip", "retry_after needs status=");
    parse_refused("GET /x rate=0.5", "no action");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_code),
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
