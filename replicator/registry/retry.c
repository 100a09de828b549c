/*
 * retry.c: the one retry policy (see retry.h).
 */
#include "registry/retry.h"

#include <stdlib.h>

#include "common/errors.h"

bool retry_again(const struct retry_policy *p, int attempts)
{
    return attempts < p->max_attempts;
}

uint64_t retry_delay_ms(const struct retry_policy *p, int retry)
{
    uint64_t ceiling = p->base_ms;
    for (int i = 0; i < retry && ceiling < p->max_ms; i++)
        ceiling *= 2;
    if (ceiling > p->max_ms)
        ceiling = p->max_ms;
    double r = (double)rand() / ((double)RAND_MAX + 1.0);
    if (p->equal_jitter)
        return ceiling / 2 + (uint64_t)((double)(ceiling - ceiling / 2) * r);
    return (uint64_t)((double)ceiling * r);
}

bool retry_status_transient(long status)
{
    return status >= 500 || status == 429 || status == 408;
}

bool retry_error_transient(int rc, int attempt)
{
    return rc == FERRY_ECONNECT || (rc == FERRY_ETIMEOUT && attempt == 0);
}

bool retry_transient(int rc, long status, int attempt)
{
    if (rc < 0)
        return retry_error_transient(rc, attempt);
    return retry_status_transient(status);
}
