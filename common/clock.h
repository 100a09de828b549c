/*
 * clock: the clocks Ferry reads, and the calendar arithmetic its date parsers
 * (RFC 3339 in webhooks, HTTP dates in Retry-After) share.
 */
#ifndef FERRY_CLOCK_H
#define FERRY_CLOCK_H

#include "common/errors.h"

#include <stdbool.h>
#include <stdint.h>

/** Wall-clock time, Unix milliseconds. */
int64_t clock_unix_ms(void);

/** A monotonic clock in milliseconds, for measuring intervals only. */
int64_t clock_mono_ms(void);

/* Room for clock_format_rfc3339()'s text: "2024-02-29T12:34:56.789Z" and its NUL. */
#define CLOCK_RFC3339_MAX 32

/**
 * Write `unix_ms` as RFC 3339 UTC with milliseconds ("2024-02-29T12:34:56.789Z")
 * into out; a time the C library cannot break down (before 1970 included) is
 * written as 1970-01-01T00:00:00.000Z.
 */
void clock_format_rfc3339(int64_t unix_ms, char out[CLOCK_RFC3339_MAX]);

/** Days from 1970-01-01 to a proleptic Gregorian date (negative before it). */
int64_t clock_days_from_civil(int64_t year, int month, int day);

/** Days in `month` (1-12) of `year`; 0 for a month out of range. */
FERRY_MUST_CHECK int clock_days_in_month(int64_t year, int month);

/** The civil year (UTC) of a Unix time in seconds; clamped far beyond any real clock. */
FERRY_MUST_CHECK int clock_year_of(int64_t unix_seconds);

/**
 * Parse an RFC 3339 date-time, YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)
 * ('T' and 'Z' in either case), into Unix milliseconds; fractions finer than
 * a millisecond are truncated and a time before 1970 gives 0. False, with
 * *unix_ms untouched, for anything else.
 */
bool clock_parse_rfc3339(const char *s, int64_t *unix_ms);

#endif
