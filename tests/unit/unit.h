/*
 * unit.h: checks shared by Ferry's unit tests. Include after <cmocka.h>.
 */
#ifndef FERRY_TESTS_UNIT_H
#define FERRY_TESTS_UNIT_H

/*
 * An error message as Ferry writes them: present, one line, printable,
 * starting lowercase (git's and curl's style).
 */
static inline void assert_message(const char *err)
{
    assert_non_null(err);
    assert_true(err[0] != '\0');
    assert_false(err[0] >= 'A' && err[0] <= 'Z');
    for (const char *c = err; *c != '\0'; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
}

#endif
