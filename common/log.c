#include "common/log.h"

#include "common/clock.h"
#include "common/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int log_threshold = FERRY_LOG_WARN;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

int log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            log_threshold = i;
            return 0;
        }
    }
    return FERRY_EINVAL;
}

void log_write(int level, const char *fmt, ...)
{
    char stamp[CLOCK_RFC3339_MAX];
    clock_format_rfc3339(clock_unix_ms(), stamp);

    /* One fprintf per line keeps lines whole when several processes share stderr. */
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level < 0 || level > 3)
        level = FERRY_LOG_ERROR;
    fprintf(stderr, "%s %s %s\n", stamp, log_level_names[level], msg);
}
