/*
 * httpparse: small parsers for the HTTP headers a registry answers with:
 * Location and Link (URL resolution, RFC 3986 §5), the Range of an upload,
 * Retry-After, and the raw header lines libcurl hands its header callback.
 * Nothing here allocates except the URLs it returns.
 */
#ifndef FERRY_HTTPPARSE_H
#define FERRY_HTTPPARSE_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest URL or header value these functions accept or produce. */
#define HTTPPARSE_MAX_URL 8192

/**
 * Resolve `ref`, the value of a Location or Link header, against `base`, the
 * URL of the request, as RFC 3986 §5.2 does:
 *  - an absolute http(s) URL is kept as it is, query included;
 *  - "//host/path" takes the scheme of `base`;
 *  - "/path?q" replaces the path and query of `base`;
 *  - "path?q" is merged with the directory of `base`'s path;
 *  - "?q" replaces the query only; "#f" keeps `base`.
 * Dot segments are removed from relative references. Fragments are dropped
 * from the result, since no HTTP request carries one.
 *
 * Returns a fresh absolute URL the caller frees, or NULL when either input is
 * NULL or empty, holds a byte outside printable ASCII (space and control
 * characters included), is longer than HTTPPARSE_MAX_URL bytes, when `base`
 * is not an absolute http or https URL with a host, when `ref` is an absolute
 * URL of another scheme or without a host, or when the result would be longer
 * than HTTPPARSE_MAX_URL bytes.
 */
char *httpparse_url_resolve(const char *base, const char *ref);

/**
 * Find the link with relation "next" in the value of a Link header (RFC 8288:
 * `<url>; rel="next", <url2>; rel=prev`). rel may be quoted or not and may
 * list several space-separated relations; relation names compare
 * case-insensitively. The first "next" link wins.
 *
 * Returns its URL resolved against `base_url` with httpparse_url_resolve(),
 * in a fresh string the caller frees; NULL when there is no next link, when
 * any part of the header is malformed, or when the URL does not resolve.
 */
char *httpparse_link_next(const char *link_header, const char *base_url);

/**
 * Parse the Range header of a blob upload, "0-1234" or "bytes=0-1234", into
 * the offset of the next byte to send: *next_offset = end + 1 = 1235.
 *
 * The start must be 0. Beware "0-0": the distribution registry answers it
 * both for an upload that has received one byte and for one that has received
 * none (it never sends "0--1"), and this function returns 1 for it; a caller
 * that knows it has sent nothing yet must start at 0 instead.
 *
 * Returns 0; FERRY_EPARSE for anything else (a start other than 0, a missing
 * dash, a sign, whitespace, trailing bytes, an end that overflows) and
 * FERRY_EINVAL when an argument is NULL. *next_offset is written only on
 * success.
 */
FERRY_MUST_CHECK int httpparse_range_end(const char *range, uint64_t *next_offset);

/**
 * Parse a Retry-After value: delta-seconds ("120") or an HTTP date, preferably
 * IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), though the obsolete RFC 850
 * and asctime forms are accepted as RFC 7231 requires. `now_unix` is the
 * current time in seconds since the epoch. Leading and trailing spaces are
 * ignored.
 *
 * Returns 0 with *delay_ms set to the wait in milliseconds: 0 for a date in
 * the past, and UINT64_MAX when a delay does not fit (capping it is the
 * caller's job). FERRY_EPARSE for anything else (values of 256 bytes or more
 * included), FERRY_EINVAL when an argument is NULL. *delay_ms is written only on success.
 */
FERRY_MUST_CHECK int httpparse_retry_after(const char *value, int64_t now_unix, uint64_t *delay_ms);

/**
 * Match a raw header line as libcurl's header callback delivers it ("Name:
 * value\r\n", not NUL-terminated, `len` bytes) against the header `name`,
 * case-insensitively. A line whose name has whitespace before the colon, a
 * status line and the blank line at the end of the headers never match.
 *
 * Returns true on a match and, when `value` and `value_len` are not NULL,
 * points *value at the value inside `line` with leading and trailing spaces,
 * tabs, CR and LF trimmed off (it may be empty: *value_len 0). Returns false
 * otherwise, leaving *value and *value_len untouched.
 */
bool httpparse_header_is(const char *line, size_t len, const char *name, const char **value,
                         size_t *value_len);

#endif
