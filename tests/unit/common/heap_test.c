/*
 * common/heap: heap_release() gives free pages inside the heap back to the
 * system (not only its top), and runs at most every HEAP_RELEASE_EVERY_MS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/heap.h"
#include "common/xalloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_TEST_SANITIZED 1
#endif
#endif

static void test_throttled(void **state)
{
    (void)state;
    uint64_t t = 1000000;
    assert_true(heap_release(t));
    assert_false(heap_release(t + 1));
    assert_false(heap_release(t + HEAP_RELEASE_EVERY_MS - 1));
    assert_true(heap_release(t + HEAP_RELEASE_EVERY_MS));
    assert_false(heap_release(t + HEAP_RELEASE_EVERY_MS + 10));
}

/*
 * 512 chunks of 64 KiB (32 MiB, written so that they are resident), each
 * followed by a small one that lives on: once the big ones are freed, every
 * hole sits under a live chunk, so the heap's top cannot shrink and only
 * heap_release() gives those pages back. At least half of them must go.
 */
#ifndef HEAP_TEST_SANITIZED
/* The process's resident bytes, from /proc/self/statm. */
static size_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    unsigned long size = 0, resident = 0;
    assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

#define BIG_N    512
#define BIG_SIZE (64 * 1024)

static void test_gives_back_holes(void **state)
{
    (void)state;
#ifdef HEAP_TEST_SANITIZED
    skip(); /* the sanitizer's allocator is not glibc's */
#else
    assert_true(heap_setup());
    char **big = xcalloc(BIG_N, sizeof(*big));
    char **small = xcalloc(BIG_N, sizeof(*small));
    for (size_t i = 0; i < BIG_N; i++) {
        big[i] = xmalloc(BIG_SIZE);
        memset(big[i], 0x5a, BIG_SIZE);
        small[i] = xmalloc(32);
        memset(small[i], 0xa5, 32);
    }
    size_t full = resident_bytes();
    for (size_t i = 0; i < BIG_N; i++)
        free(big[i]);
    size_t holes = resident_bytes();
    /* Freeing alone gave (almost) nothing back: the holes are under live chunks. */
    assert_true(holes + (size_t)BIG_N * BIG_SIZE / 4 > full);
    assert_true(heap_release(UINT64_MAX / 2));
    size_t released = resident_bytes();
    printf("resident: %zu KiB with the chunks, %zu KiB once freed, %zu KiB after heap_release\n",
           full / 1024, holes / 1024, released / 1024);
    assert_true(released + (size_t)BIG_N * BIG_SIZE / 2 < holes);
    for (size_t i = 0; i < BIG_N; i++)
        free(small[i]);
    free(big);
    free(small);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_throttled),
        cmocka_unit_test(test_gives_back_holes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
