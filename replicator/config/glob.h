/*
 * glob: the patterns rules use to select repositories and tags
 * ("v1.*", "!*-rc*", and "app/" followed by "**"). Matching runs in time
 * proportional to the pattern length times the text length, whatever the
 * pattern, so a pattern from a configuration file cannot make it blow up.
 */
#ifndef FERRY_GLOB_H
#define FERRY_GLOB_H

#include <stdbool.h>
#include <stddef.h>

/* Longest pattern glob_match() accepts, in bytes. */
#define GLOB_MAX_PATTERN 1024

/**
 * True when all of `text` matches `pattern`. Matching is case-sensitive:
 *  - `*` matches any run of characters except '/', including an empty one;
 *  - `**` (two or more stars) matches any run of characters, '/' included;
 *    when it makes up a whole path element followed by '/' (a leading "**" +
 *    "/" or a "/" + "**" + "/" in the middle) that element may also vanish,
 *    so "**" + "/x" matches "x" and "a/" + "**" + "/b" matches "a/b";
 *  - `?` matches exactly one character other than '/';
 *  - every other character, '!' and '\' included, matches itself.
 * So "app/" followed by "**" selects everything under app/ but not "app"
 * itself, and "app/" followed by "*" selects "app/x" but not "app/x/y".
 *
 * False when either argument is NULL or `pattern` is longer than
 * GLOB_MAX_PATTERN bytes.
 */
bool glob_match(const char *pattern, const char *text);

/**
 * True when `text` matches at least one pattern of `patterns` that does not
 * start with '!' and none of those that do (an exclusion: "!x" rejects what
 * "x" matches), whatever their order. True when `n` is 0; false when `text`
 * is NULL, or when every pattern is an exclusion. NULL entries are skipped.
 */
bool glob_select(char *const *patterns, size_t n, const char *text);

#endif
