#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/ring.h"

/* Bytes written and read across the wrap point come back in order. */
static void test_wraps_in_order(void **state)
{
    struct ring r;
    char in[256];
    char out[256];
    (void)state;
    for (int i = 0; i < 256; i++)
        in[i] = (char)i;
    ring_init(&r, 100);
    uint64_t written = 0;
    uint64_t read = 0;
    while (read < 10000) {
        size_t n = ring_space(&r) < 37 ? ring_space(&r) : 37;
        char chunk[37];
        for (size_t i = 0; i < n; i++)
            chunk[i] = in[(written + i) % 256];
        ring_write(&r, chunk, n);
        written += n;
        size_t got = ring_read(&r, out, 53, read);
        for (size_t i = 0; i < got; i++)
            assert_int_equal((unsigned char)out[i], (unsigned char)in[(read + i) % 256]);
        read += got;
        ring_consume(&r, read);
    }
    assert_int_equal(ring_end(&r), written);
    ring_release(&r);
}

/* Reads outside the window give nothing; consume clamps; reset moves the window. */
static void test_window_edges(void **state)
{
    struct ring r;
    char buf[16];
    (void)state;
    ring_init(&r, 8);
    ring_write(&r, "abcdefgh", 8);
    assert_int_equal(ring_space(&r), 0);
    assert_int_equal(ring_read(&r, buf, 16, 8), 0);
    assert_int_equal(ring_read(&r, buf, 3, 2), 3);
    assert_memory_equal(buf, "cde", 3);
    ring_consume(&r, 5);
    assert_int_equal(ring_read(&r, buf, 16, 4), 0);
    assert_int_equal(ring_space(&r), 5);
    ring_consume(&r, 100);
    assert_int_equal(ring_end(&r), 8);
    assert_int_equal(ring_space(&r), 8);
    ring_reset(&r, 1000);
    assert_int_equal(ring_end(&r), 1000);
    ring_write(&r, "xyz", 3);
    assert_int_equal(ring_read(&r, buf, 16, 1001), 2);
    assert_memory_equal(buf, "yz", 2);
    ring_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wraps_in_order),
        cmocka_unit_test(test_window_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
