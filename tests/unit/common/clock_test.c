/*
 * common/clock: the calendar arithmetic and the RFC 3339 parser that the
 * webhook and HTTP date parsers share, and the two clocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <time.h>

#include "common/clock.h"

static void test_days_from_civil(void **state)
{
    (void)state;
    assert_int_equal(clock_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(clock_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(clock_days_from_civil(2000, 3, 1), 11017);
    /* Against the C library for a spread of dates, leap days included. */
    for (int year = 1970; year < 2400; year += 7) {
        for (int month = 1; month <= 12; month++) {
            int day = clock_days_in_month(year, month);
            struct tm tm = {.tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day};
            assert_int_equal(clock_days_from_civil(year, month, day) * 86400, (int64_t)timegm(&tm));
        }
    }
}

static void test_days_in_month(void **state)
{
    (void)state;
    assert_int_equal(clock_days_in_month(2024, 2), 29);
    assert_int_equal(clock_days_in_month(2023, 2), 28);
    assert_int_equal(clock_days_in_month(1900, 2), 28);
    assert_int_equal(clock_days_in_month(2000, 2), 29);
    assert_int_equal(clock_days_in_month(2023, 4), 30);
    assert_int_equal(clock_days_in_month(2023, 12), 31);
    assert_int_equal(clock_days_in_month(2023, 0), 0);
    assert_int_equal(clock_days_in_month(2023, 13), 0);
}

static void test_year_of(void **state)
{
    (void)state;
    assert_int_equal(clock_year_of(0), 1970);
    assert_int_equal(clock_year_of(-1), 1969);
    assert_int_equal(clock_year_of(951782400), 2000); /* 2000-02-29 */
    assert_int_equal(clock_year_of(978307199), 2000); /* 2000-12-31 23:59:59 */
    assert_int_equal(clock_year_of(978307200), 2001); /* 2001-01-01 */
    assert_true(clock_year_of(INT64_MAX) > 30000);    /* clamped, no overflow */
    assert_true(clock_year_of(INT64_MIN) < -30000);
}

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_true(clock_parse_rfc3339("2024-02-29T12:34:56Z", &ms));
    assert_int_equal(ms, INT64_C(1709210096000));
    assert_true(clock_parse_rfc3339("2024-02-29t12:34:56.789z", &ms));
    assert_int_equal(ms, INT64_C(1709210096789));
    assert_true(clock_parse_rfc3339("2024-02-29T14:34:56.7891+02:00", &ms));
    assert_int_equal(ms, INT64_C(1709210096789));
    assert_true(clock_parse_rfc3339("0001-01-01T00:00:00Z", &ms)); /* Go's zero time */
    assert_int_equal(ms, 0);

    ms = 42;
    const char *bad[] = {"",
                         "2024-02-30T00:00:00Z",
                         "2023-02-29T00:00:00Z",
                         "2024-13-01T00:00:00Z",
                         "2024-01-01 00:00:00Z",
                         "2024-01-01T24:00:00Z",
                         "2024-01-01T00:00:00",
                         "2024-01-01T00:00:00.Z",
                         "2024-01-01T00:00:00+2:00",
                         "2024-01-01T00:00:00Zjunk",
                         "24-01-01T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(clock_parse_rfc3339(bad[i], &ms));
    assert_int_equal(ms, 42);
}

static void test_format(void **state)
{
    (void)state;
    char out[CLOCK_RFC3339_MAX];
    clock_format_rfc3339(INT64_C(1709210096789), out);
    assert_string_equal(out, "2024-02-29T12:34:56.789Z");
    clock_format_rfc3339(5, out);
    assert_string_equal(out, "1970-01-01T00:00:00.005Z");
    clock_format_rfc3339(-5, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    /* What it writes, the parser reads back. */
    int64_t ms = 0;
    clock_format_rfc3339(INT64_C(4102444799999), out);
    assert_true(clock_parse_rfc3339(out, &ms));
    assert_int_equal(ms, INT64_C(4102444799999));
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t a = clock_mono_ms();
    int64_t b = clock_mono_ms();
    assert_true(b >= a);
    /* After 2020 and before 2100. */
    assert_true(clock_unix_ms() > INT64_C(1577836800000));
    assert_true(clock_unix_ms() < INT64_C(4102444800000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_from_civil), cmocka_unit_test(test_days_in_month),
        cmocka_unit_test(test_year_of),         cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_format),          cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
