/*
 * regerror: the error body of the distribution API,
 * {"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]},
 * turned into text that is safe to log: one line, bounded, no control
 * characters.
 */
#ifndef FERRY_REGERROR_H
#define FERRY_REGERROR_H

#include "common/errors.h"

#include <stddef.h>

/* Largest body regerror_parse() looks at. */
#define REGERROR_MAX_BODY (64 * 1024)
/* Longest code or message it hands back, in bytes. */
#define REGERROR_MAX_TEXT 300

/**
 * Read the first error of a registry error body of `len` bytes (it need not
 * be NUL-terminated). Its code and message are sanitized: control characters
 * (C0, DEL, C1, U+2028 and U+2029) become spaces, invalid UTF-8 bytes become
 * '?', and each is cut to REGERROR_MAX_TEXT bytes without splitting a
 * character.
 *
 * Returns 0 and sets *code (non-empty) and *message (possibly "", when the
 * error has no message string), fresh strings the caller frees; either
 * pointer may be NULL when the caller does not want that part. Returns
 * FERRY_EPARSE when the body is empty, holds a NUL byte, or is not that JSON
 * (HTML, plain text, an empty "errors" array, a first error without a string
 * code), and FERRY_ETOOBIG when it is over REGERROR_MAX_BODY bytes. On
 * failure *code and *message are set to NULL.
 */
FERRY_MUST_CHECK int regerror_parse(const char *body, size_t len, char **code, char **message);

/**
 * Summarize a registry error body in one line: "CODE: message", or "CODE"
 * when the message is empty, followed by " (and N more)" when the body lists
 * N further errors. Returns a fresh string the caller frees, or NULL when
 * regerror_parse() would fail.
 */
char *regerror_summary(const char *body, size_t len);

#endif
