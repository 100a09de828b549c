/*
 * config_value.c: the grammars of single values, with no YAML in sight:
 * durations, sizes, names, hosts and listen addresses, and the destination
 * repository templates ("mirror/{name}").
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/reference.h"
#include "common/xalloc.h"

/* A suffix of a duration or a size and what one of it is worth. */
struct config_unit {
    const char *suffix;
    uint64_t factor;
};

static const struct config_unit config_duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
};

static const struct config_unit config_size_units[] = {
    {"", 1},
    {"B", 1},
    {"K", (uint64_t)1 << 10},
    {"KiB", (uint64_t)1 << 10},
    {"M", (uint64_t)1 << 20},
    {"MiB", (uint64_t)1 << 20},
    {"G", (uint64_t)1 << 30},
    {"GiB", (uint64_t)1 << 30},
};

/*
 * A whole decimal number at the start of `text`. Sets *end past its digits
 * and returns 0 with *value, or FERRY_ETOOBIG when it passes UINT64_MAX (the
 * caller still looks at what follows); FERRY_EPARSE when there is no digit.
 */
static int config_parse_number(const char *text, uint64_t *value, const char **end)
{
    uint64_t n = 0;
    bool overflow = false;
    const char *c = text;
    for (; *c >= '0' && *c <= '9'; c++) {
        uint64_t digit = (uint64_t)(*c - '0');
        if (n > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            n = n * 10 + digit;
    }
    if (c == text)
        return FERRY_EPARSE;
    *value = n;
    *end = c;
    return overflow ? FERRY_ETOOBIG : 0;
}

/*
 * A whole number followed by exactly one of `units`' suffixes: 0 and *out
 * (the number times the unit), FERRY_ETOOBIG past `max`, FERRY_EPARSE for
 * anything else. *out is untouched on failure.
 */
static int config_parse_units(const char *text, const struct config_unit *units, size_t n_units,
                              uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    const char *suffix = NULL;
    int rc = config_parse_number(text, &n, &suffix);
    if (rc == FERRY_EPARSE)
        return rc;
    for (size_t i = 0; i < n_units; i++) {
        if (strcmp(suffix, units[i].suffix) != 0)
            continue;
        if (rc < 0 || n > max / units[i].factor)
            return FERRY_ETOOBIG;
        *out = n * units[i].factor;
        return 0;
    }
    return FERRY_EPARSE;
}

int config_parse_duration(const char *text, uint64_t *ms)
{
    if (text == NULL || ms == NULL)
        return FERRY_EINVAL;
    if (strcmp(text, "0") == 0) {
        *ms = 0;
        return 0;
    }
    return config_parse_units(text, config_duration_units,
                              sizeof(config_duration_units) / sizeof(config_duration_units[0]),
                              UINT64_MAX, ms);
}

int config_parse_size(const char *text, size_t *bytes)
{
    uint64_t value = 0;
    if (text == NULL || bytes == NULL)
        return FERRY_EINVAL;
    int rc = config_parse_units(text, config_size_units,
                                sizeof(config_size_units) / sizeof(config_size_units[0]), SIZE_MAX,
                                &value);
    if (rc == 0)
        *bytes = (size_t)value;
    return rc;
}

bool config_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static bool config_host_char(char c, bool bracketed)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.')
        return true;
    if (bracketed)
        return c == ':';
    return (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z') || c == '-';
}

int config_split_listen(const char *text, char **host, int *port)
{
    const char *host_start = text;
    const char *host_end;
    const char *port_text;
    bool bracketed = false;

    if (text == NULL)
        return FERRY_EINVAL;
    if (text[0] == '[') {
        bracketed = true;
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':')
            return FERRY_EPARSE;
        port_text = host_end + 2;
    } else {
        host_end = strrchr(text, ':');
        if (host_end == NULL)
            return FERRY_EPARSE;
        port_text = host_end + 1;
    }
    if (host_end == host_start)
        return FERRY_EPARSE;
    for (const char *c = host_start; c < host_end; c++) {
        if (!config_host_char(*c, bracketed))
            return FERRY_EPARSE;
    }
    long value = 0;
    size_t digits = strlen(port_text);
    if (digits == 0 || digits > 5)
        return FERRY_EPARSE;
    for (const char *c = port_text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return FERRY_EPARSE;
        value = value * 10 + (*c - '0');
    }
    if (value < 1 || value > 65535)
        return FERRY_EPARSE;
    if (host != NULL)
        *host = xstrndup(host_start, (size_t)(host_end - host_start));
    if (port != NULL)
        *port = (int)value;
    return 0;
}

/* Checked as a listen address is, with a port that is always valid. */
bool config_host_valid(const char *host)
{
    char *with_port = xasprintf("%s:1", host);
    bool ok = config_split_listen(with_port, NULL, NULL) == 0;
    free(with_port);
    return ok;
}

char *config_destination_repository(const struct config_destination *d, const char *repository)
{
    struct buf out;

    if (d == NULL || d->repository == NULL || !reference_repository_valid(repository))
        return NULL;
    const char *slash = strrchr(repository, '/');
    const char *name = slash != NULL ? slash + 1 : repository;
    buf_init(&out, REFERENCE_MAX_NAME);
    int rc = 0;
    for (const char *t = d->repository; *t != '\0' && rc == 0;) {
        if (strncmp(t, "{repo}", 6) == 0) {
            rc = buf_append_str(&out, repository);
            t += 6;
        } else if (strncmp(t, "{name}", 6) == 0) {
            rc = buf_append_str(&out, name);
            t += 6;
        } else {
            rc = buf_append(&out, t, 1);
            t++;
        }
    }
    char *result = buf_detach(&out, NULL);
    if (rc < 0 || !reference_repository_valid(result)) {
        free(result);
        return NULL;
    }
    return result;
}
