#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "registry/mcache.h"

/* A value comes back as stored, with its media type and digest. */
static void test_put_get(void **state)
{
    (void)state;
    struct mcache *c = mcache_new(64 * 1024);
    assert_null(mcache_get(c, "m:a@sha256:1", 0));
    mcache_put(c, "m:a@sha256:1", "{\"x\":1}", 7, "application/json", "sha256:1", 0, 0);
    const struct mcache_value *v = mcache_get(c, "m:a@sha256:1", 5);
    assert_non_null(v);
    assert_int_equal(v->len, 7);
    assert_string_equal(v->bytes, "{\"x\":1}");
    assert_string_equal(v->media_type, "application/json");
    assert_string_equal(v->digest, "sha256:1");
    /* Another key is not this one. */
    assert_null(mcache_get(c, "m:b@sha256:1", 5));
    /* Replacing keeps one entry. */
    mcache_put(c, "m:a@sha256:1", "", 0, NULL, NULL, 0, 0);
    v = mcache_get(c, "m:a@sha256:1", 5);
    assert_non_null(v);
    assert_int_equal(v->len, 0);
    assert_null(v->media_type);
    assert_int_equal(mcache_count(c), 1);
    mcache_free(c);
}

/* An entry with a time to live is gone once it has passed, and freed. */
static void test_expiry(void **state)
{
    (void)state;
    struct mcache *c = mcache_new(64 * 1024);
    mcache_put(c, "r:a@sha256:1", "[]", 2, NULL, NULL, 1000, 5000);
    assert_non_null(mcache_get(c, "r:a@sha256:1", 5999));
    assert_null(mcache_get(c, "r:a@sha256:1", 6000));
    assert_int_equal(mcache_count(c), 0);
    assert_int_equal(mcache_bytes(c), 0);
    mcache_free(c);
}

/* Past its size the least recently used entries go first; a get refreshes. */
static void test_lru_bound(void **state)
{
    (void)state;
    char val[1000];
    char key[32];
    memset(val, 'v', sizeof(val));
    struct mcache *c = mcache_new(16 * 1024);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        mcache_put(c, key, val, sizeof(val), NULL, NULL, 0, 0);
        /* k0 stays the most recently used. */
        assert_non_null(mcache_get(c, "k0", 0));
        assert_true(mcache_bytes(c) <= 16 * 1024);
    }
    assert_true(mcache_count(c) < 16);
    assert_non_null(mcache_get(c, "k0", 0));
    assert_non_null(mcache_get(c, "k99", 0));
    assert_null(mcache_get(c, "k50", 0));
    /* A value over an eighth of the cache is not kept. */
    char big[4096];
    memset(big, 'b', sizeof(big));
    mcache_put(c, "big", big, sizeof(big), NULL, NULL, 0, 0);
    assert_null(mcache_get(c, "big", 0));
    mcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_lru_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
