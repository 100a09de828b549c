/*
 * secret: comparing a presented token with a configured one without leaking,
 * through timing, where they differ or how long the secret is.
 */
#ifndef FERRY_SECRET_H
#define FERRY_SECRET_H

#include <stdbool.h>

/** True when `given` equals `want`; the time taken does not depend on the contents. */
bool secret_equal(const char *given, const char *want);

#endif
