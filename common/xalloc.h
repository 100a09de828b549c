/*
 * xalloc: the one allocation family of Ferry. Every function aborts the
 * process with a message on out-of-memory, so callers never check for NULL.
 */
#ifndef FERRY_XALLOC_H
#define FERRY_XALLOC_H

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/** Allocate `size` bytes (at least one); never returns NULL. */
void *xmalloc(size_t size);

/** Allocate `n * size` zeroed bytes, checking the product for overflow. */
void *xcalloc(size_t n, size_t size);

/** Resize `ptr` to `size` bytes; never returns NULL. */
void *xrealloc(void *ptr, size_t size);

/** Duplicate a NUL-terminated string; `xstrdup(NULL)` returns NULL. */
char *xstrdup(const char *s);

/** Duplicate at most `n` bytes of `s` and terminate the copy. */
char *xstrndup(const char *s, size_t n);

/** printf into a fresh heap string owned by the caller. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** vprintf into a fresh heap string owned by the caller. */
char *xvasprintf(const char *fmt, va_list ap);

/**
 * Make cJSON allocate through this family too (cJSON_InitHooks), so that it
 * never returns NULL for want of memory either; every program calls it first.
 */
void xalloc_init(void);

/**
 * cJSON_Print (`pretty`) or cJSON_PrintUnformatted of `json` into a fresh
 * heap string owned by the caller; never returns NULL (aborts as xmalloc does).
 */
char *xjson_print(const cJSON *json, bool pretty);

#endif
