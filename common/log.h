/*
 * log: Ferry's one logger. Messages are lowercase, without a trailing full
 * stop, with key=value fields (`dest= repo= digest= seq=`). The level is
 * checked before the arguments are evaluated. Secrets never reach a log: no
 * message formats a password, token or Authorization header, and the URLs
 * Ferry logs carry no credentials (a registry url with user:pass@ is refused
 * by the config).
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include "common/errors.h"

enum log_level {
    FERRY_LOG_ERROR = 0,
    FERRY_LOG_WARN = 1,
    FERRY_LOG_INFO = 2,
    FERRY_LOG_DEBUG = 3,
};

/* The current threshold; messages above it are not formatted at all. */
extern int log_threshold;

/** Set the threshold from a name ("error", "warn", "info", "debug"); 0 or FERRY_EINVAL. */
FERRY_MUST_CHECK int log_set_level_name(const char *name);

/** Format and write one line to stderr. Use the macros below instead. */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if (log_threshold >= (level))                                                              \
            log_write((level), __VA_ARGS__);                                                       \
    } while (0)

#define log_error(...) log_at(FERRY_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(FERRY_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_at(FERRY_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(FERRY_LOG_DEBUG, __VA_ARGS__)

#endif
