#include "common/clock.h"

#include <stdio.h>
#include <time.h>

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_unix_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t clock_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

void clock_format_rfc3339(int64_t unix_ms, char out[CLOCK_RFC3339_MAX])
{
    if (unix_ms < 0)
        unix_ms = 0;
    time_t sec = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (gmtime_r(&sec, &tm) == NULL) {
        sec = 0;
        unix_ms = 0;
        gmtime_r(&sec, &tm); /* the epoch always breaks down */
    }
    size_t n = strftime(out, CLOCK_RFC3339_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, CLOCK_RFC3339_MAX - n, ".%03dZ", (int)(unix_ms % 1000));
}

/* Howard Hinnant's days_from_civil. */
int64_t clock_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int clock_days_in_month(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 0;
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

int clock_year_of(int64_t unix_time)
{
    /* Clamp far beyond any real clock so that the arithmetic cannot overflow. */
    if (unix_time > INT64_C(1) << 40)
        unix_time = INT64_C(1) << 40;
    if (unix_time < -(INT64_C(1) << 40))
        unix_time = -(INT64_C(1) << 40);
    /* Civil year from days, the inverse of clock_days_from_civil(). */
    int64_t z = (unix_time >= 0 ? unix_time : unix_time - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    return (int)(yoe + era * 400 + (m <= 2));
}

/* Exactly `n` decimal digits. */
static bool clock_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool clock_expect(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

bool clock_parse_rfc3339(const char *s, int64_t *unix_ms)
{
    const char *p = s;
    int year, month, day, hour, minute, second, frac_ms = 0, offset = 0;

    if (!clock_digits(&p, 4, &year) || !clock_expect(&p, '-') || !clock_digits(&p, 2, &month) ||
        !clock_expect(&p, '-') || !clock_digits(&p, 2, &day))
        return false;
    if (*p != 'T' && *p != 't')
        return false;
    p++;
    if (!clock_digits(&p, 2, &hour) || !clock_expect(&p, ':') || !clock_digits(&p, 2, &minute) ||
        !clock_expect(&p, ':') || !clock_digits(&p, 2, &second))
        return false;
    if (month < 1 || month > 12 || day < 1 || day > clock_days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60)
        return false;
    if (*p == '.') {
        int scale = 100, digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            frac_ms += (*p - '0') * scale;
            scale /= 10;
        }
        if (digits == 0)
            return false;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, offset_hour, offset_minute;
        p++;
        if (!clock_digits(&p, 2, &offset_hour) || !clock_expect(&p, ':') ||
            !clock_digits(&p, 2, &offset_minute) || offset_hour > 23 || offset_minute > 59)
            return false;
        offset = sign * (offset_hour * 3600 + offset_minute * 60);
    } else {
        return false;
    }
    if (*p != '\0')
        return false;

    int64_t seconds = clock_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - offset;
    *unix_ms = seconds < 0 ? 0 : seconds * 1000 + frac_ms;
    return true;
}
