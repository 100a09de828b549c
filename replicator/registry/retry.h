/*
 * retry: the one retry policy of Ferry — which failures are worth another
 * try, and how long to wait before it (exponential backoff with jitter under
 * a ceiling). The registry client retries requests with it, the engine
 * retries jobs with it.
 */
#ifndef FERRY_RETRY_H
#define FERRY_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
    int max_attempts;  /* attempts in all, the first one included */
    uint64_t base_ms;  /* the ceiling of the first delay; it doubles with every retry */
    uint64_t max_ms;   /* no ceiling grows past this */
    bool equal_jitter; /* delays fall between half the ceiling and the ceiling
                          (false: anywhere below the ceiling, "full jitter") */
};

/** True when `attempts` attempts were made and the policy allows another. */
bool retry_again(const struct retry_policy *p, int attempts);

/** The delay before retry number `retry` (0 for the first retry). */
uint64_t retry_delay_ms(const struct retry_policy *p, int retry);

/** True for an HTTP status that says "try again later": 408, 429 and every 5xx. */
bool retry_status_transient(long status);

/**
 * True for a transport failure worth another try: a connection that failed
 * or broke (FERRY_ECONNECT) always; a stall (FERRY_ETIMEOUT) only after the
 * first attempt (`attempt` 0), since a stalled request already waited the
 * stall timeout and a partitioned registry should fail in about twice that.
 */
bool retry_error_transient(int rc, int attempt);

/**
 * True for an attempt worth another try: a transport failure (`rc` < 0) that
 * retry_error_transient() takes, or an answer (`rc` 0) whose `status`
 * retry_status_transient() takes.
 */
bool retry_transient(int rc, long status, int attempt);

#endif
