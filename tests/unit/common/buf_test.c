#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/errors.h"

static void test_init(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.limit, 100);
    buf_release(&b);
    buf_release(&b);
}

static void test_append_terminates(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(buf_append_str(&b, "def"), 0);
    assert_string_equal(b.data, "abcdef");
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 6);

    /* Bytes after a NUL are kept, and the terminator follows them. */
    assert_int_equal(buf_append(&b, "x\0y", 3), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "abcdefx\0y", 10);

    /* Growing across allocations keeps content and terminator. */
    char chunk[100];
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 30; i++) {
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
        assert_int_equal(b.data[b.len], '\0');
        assert_true(b.alloc > b.len);
    }
    assert_int_equal(b.len, 9 + 3000);
    assert_memory_equal(b.data, "abcdefx\0y", 9);
    assert_int_equal(b.data[9 + 2999], 'z');
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10);
    /* A byte past the cap is refused and nothing is appended. */
    assert_int_equal(buf_append(&b, "x", 1), FERRY_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(buf_append_str(&b, "x"), FERRY_ETOOBIG);
    assert_int_equal(buf_append(&b, "", 0), 0);
    buf_release(&b);

    /* A single append larger than the cap, partly fitting, is refused whole. */
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "01234", 5), 0);
    assert_int_equal(buf_append(&b, "0123456789", 6), FERRY_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "01234");
    assert_int_equal(buf_append(&b, "56789", 5), 0);
    assert_string_equal(b.data, "0123456789");
    buf_release(&b);

    /* Lengths that would overflow are refused before anything is read. */
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "a", 1), 0);
    assert_int_equal(buf_append(&b, "a", SIZE_MAX), FERRY_ETOOBIG);
    assert_int_equal(buf_append(&b, "a", SIZE_MAX - 1), FERRY_ETOOBIG);
    assert_int_equal(b.len, 1);
    buf_release(&b);

    /* A zero cap takes nothing but empty appends. */
    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "a", 1), FERRY_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    buf_release(&b);

    /* A huge cap does not overflow either. */
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append(&b, "ab", 2), 0);
    assert_int_equal(buf_append(&b, "a", SIZE_MAX - 1), FERRY_ETOOBIG);
    assert_int_equal(b.len, 2);
    buf_release(&b);
}

static void test_reset(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345678", 8), 0);
    size_t alloc = b.alloc;
    char *data = b.data;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, alloc);
    assert_ptr_equal(b.data, data);
    assert_string_equal(b.data, "");
    assert_int_equal(b.limit, 8);
    /* The cap counts from the reset, and still holds. */
    assert_int_equal(buf_append(&b, "abcdefgh", 8), 0);
    assert_int_equal(buf_append(&b, "i", 1), FERRY_ETOOBIG);
    buf_release(&b);

    buf_init(&b, 8);
    buf_reset(&b);
    assert_null(b.data);
    buf_release(&b);
}

static void test_detach(void **state)
{
    (void)state;
    struct buf b;
    size_t len = 99;
    buf_init(&b, 100);
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    char *data = buf_detach(&b, &len);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.limit, 100);
    free(data);

    /* The buffer is usable again after a detach. */
    assert_int_equal(buf_append(&b, "again", 5), 0);
    data = buf_detach(&b, NULL);
    assert_string_equal(data, "again");
    free(data);

    /* Detaching an empty buffer gives "", never NULL. */
    len = 99;
    data = buf_detach(&b, &len);
    assert_non_null(data);
    assert_string_equal(data, "");
    assert_int_equal(len, 0);
    free(data);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),   cmocka_unit_test(test_append_terminates),
        cmocka_unit_test(test_cap),    cmocka_unit_test(test_reset),
        cmocka_unit_test(test_detach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
