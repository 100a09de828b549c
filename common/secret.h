/*
 * secret: handling secrets (passwords, tokens, Authorization headers) so that
 * they do not outlive their use: wiping memory that held one, and comparing a
 * presented token with a configured one without leaking, through timing,
 * where they differ or how long the secret is.
 */
#ifndef FERRY_SECRET_H
#define FERRY_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/** True when `given` equals `want`; the time taken does not depend on the contents. */
bool secret_equal(const char *given, const char *want);

/** Overwrite `len` bytes at `p` with zeros, in a way the compiler cannot drop (OPENSSL_cleanse). */
void secret_wipe(void *p, size_t len);

/** Wipe the string `s` (NULL is fine), up to its terminator. */
void secret_wipe_str(char *s);

/** Wipe the string `s`, then free it (NULL is fine). */
void secret_free(char *s);

#endif
