/*
 * rule: the fault rules of ferry-chaos-proxy, parsed from one line each.
 *
 *   METHOD PATH ACTION...
 *
 * METHOD is an HTTP method (`GET`) or `*`. PATH is `*` (any), `~REGEX` (a
 * POSIX extended regular expression searched in the request target, path
 * and query), or a substring of the request target. ACTIONs:
 *
 *   status=N [retry_after=S]   answer N without asking the upstream
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
 *
 * A rule has at most one fault (status, reset, truncate, flip, blackhole) and
 * at least one fault or shaping action (delay_ms, bandwidth).
 */
#ifndef FERRY_CHAOS_RULE_H
#define FERRY_CHAOS_RULE_H

#include "common/errors.h"

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    double rate;       /* 0..1 */
    uint64_t delay_ms;
    uint64_t bandwidth; /* bytes per second, 0: none */
    int64_t count_left; /* -1: unlimited */
    uint64_t matched;   /* requests the method and path matched */
    uint64_t fired;     /* of those, how many the rule acted on */
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
