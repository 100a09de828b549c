/*
 * rule: the fault rules of ferry-chaos-proxy, parsed from one line each.
 *
 *   METHOD PATH ACTION...
 *
 * METHOD is an HTTP method (`GET`) or `*`. PATH is `*` (any), `~REGEX` (a
 * POSIX extended regular expression searched in the request target, path
 * and query), or a substring of the request target. ACTIONs:
 *
 *   status=N [retry_after=S] [code=CODE]
 *                              answer N without asking the upstream, with a
 *                              registry's error document (CODE, or the
 *                              status's own code: see vendor_error_for())
 *   reset=before|mid           reset the connection before the response, or
 *                              in the middle of the request body (when the
 *                              request has one) or of the response body
 *   truncate                   serve the first half of the response body, with
 *                              its length rewritten to match
 *   flip                       flip one byte of the request body, or of the
 *                              response body when the request has none
 *   blackhole                  read everything, never answer
 *   delay_ms=N                 hold the request N ms before forwarding it
 *   bandwidth=N[K|M]           at most N bytes/s each way on the connection
 *   rate=F                     fire for this fraction of matching requests (1)
 *   count=N                    fire at most N times
 *   ratelimit=LIMIT[/WINDOW_S] Docker Hub's pull limit (window 21600 s): the
 *                              answers get RateLimit-Limit/-Remaining, each
 *                              manifest GET spends one, and once none is left
 *                              manifest GETs are answered 429 until the window
 *                              (from the first request) ends
 *   etag                       a GET answered 200 with a body of at most 1 MiB
 *                              gets an ETag (its sha256); If-None-Match naming
 *                              it gets 304 Not Modified instead
 *
 * A rule has at most one fault (status, reset, truncate, flip, blackhole) and
 * at least one action. ratelimit and etag act on every request the rule
 * selects: they take no fault, rate= or count=.
 */
#ifndef FERRY_CHAOS_RULE_H
#define FERRY_CHAOS_RULE_H

#include "common/errors.h"

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chaos/vendor.h"

/* The longest rule line accepted, and the most rules the proxy holds. */
#define RULE_LINE_MAX 1024
#define RULE_MAX      256

enum rule_fault {
    RULE_FAULT_NONE = 0,
    RULE_FAULT_STATUS,
    RULE_FAULT_RESET_BEFORE,
    RULE_FAULT_RESET_MID,
    RULE_FAULT_TRUNCATE,
    RULE_FAULT_FLIP,
    RULE_FAULT_BLACKHOLE,
};

struct rule {
    char *text;      /* the line as given, trimmed */
    char method[16]; /* "" matches any method */
    char *substring; /* NULL: any target, or a regex */
    bool has_regex;  /* `regex` is compiled */
    regex_t regex;   /* for ~REGEX */
    enum rule_fault fault;
    int status;        /* RULE_FAULT_STATUS: 100..599 */
    int retry_after_s; /* -1: no Retry-After header */
    char code[32];     /* RULE_FAULT_STATUS: the error code, "" for the status's own */
    double rate;       /* 0..1 */
    uint64_t delay_ms;
    uint64_t bandwidth; /* bytes per second, 0: none */
    int64_t count_left; /* -1: unlimited */
    bool has_ratelimit;
    struct vendor_ratelimit ratelimit;
    bool etag;
    uint64_t matched; /* requests the method and path matched */
    uint64_t fired;   /* of those, how many the rule acted on */
};

/**
 * Parses one rule line into a new heap rule owned by the caller (free it with
 * rule_free()). Returns 0, or FERRY_EINVAL with a one-line reason (naming
 * the line and the bad token) written to `err` (of `err_len` bytes).
 */
FERRY_MUST_CHECK int rule_parse(const char *line, struct rule **out, char *err, size_t err_len);

/** True when the rule's method and path select the request. */
bool rule_matches(const struct rule *rule, const char *method, const char *target);

/** Name of a fault for logs and counters ("status", "reset_mid", ...). */
const char *rule_fault_name(enum rule_fault fault);

/** Frees the rule; NULL is fine. */
void rule_free(struct rule *rule);

#endif
