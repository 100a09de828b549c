#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/errors.h"
#include "replication/spool.h"

static char dir[] = "/tmp/ferry-spool-test-XXXXXX";

static int wakes;

/* Acquire that must succeed. */
static struct spool_blob *acquire(struct spool *s, const char *digest, int64_t size, bool *created)
{
    struct spool_blob *b = NULL;
    char *err = NULL;
    int rc = spool_acquire(s, digest, size, created, &b, &err);
    if (rc != 0)
        fail_msg("spool_acquire(%s) = %d: %s", digest, rc, err != NULL ? err : "(none)");
    assert_non_null(b);
    return b;
}

static void count_wake(void *arg)
{
    (void)arg;
    wakes++;
}

/* One download, two readers at their own pace; the last byte waits for the verdict. */
static void test_single_flight_and_follow(void **state)
{
    struct spool *s = NULL;
    char *err = NULL;
    char buf[16];
    bool created = false;
    (void)state;

    assert_int_equal(spool_new(dir, 0, &s, &err), 0);
    struct spool_blob *a = acquire(s, "sha256:aa11", 10, &created);
    assert_non_null(a);
    assert_true(created);
    struct spool_blob *b = acquire(s, "sha256:aa11", 10, &created);
    assert_ptr_equal(a, b);
    assert_false(created);
    assert_int_equal(spool_downloads(s), 1);

    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 0), SPOOL_WAIT);
    wakes = 0;
    spool_blob_wait(b, count_wake, &wakes);
    spool_blob_wait(b, count_wake, &wakes); /* a second wait is ignored */
    assert_int_equal(spool_blob_write(a, "0123456789", 10, 0), 0);
    assert_int_equal(wakes, 1);
    /* All ten bytes are there, but the tenth waits for the digest. */
    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 0), 9);
    assert_memory_equal(buf, "012345678", 9);
    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 9), SPOOL_WAIT);
    spool_blob_finish(a, 0, NULL);
    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 9), 1);
    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 10), 0);
    /* A retry reads from the start again, from the file. */
    assert_int_equal(spool_blob_read(b, buf, 4, 0), 4);
    assert_memory_equal(buf, "0123", 4);
    spool_release(a);
    spool_release(b);
    spool_free(s);
}

/* A failed download reaches every reader and is started over by the next acquire. */
static void test_failure_and_restart(void **state)
{
    struct spool *s = NULL;
    char *err = NULL;
    char buf[8];
    bool created = false;
    (void)state;

    assert_int_equal(spool_new(dir, 0, &s, &err), 0);
    struct spool_blob *a = acquire(s, "sha256:bb22", 4, &created);
    struct spool_blob *b = acquire(s, "sha256:bb22", 4, &created);
    wakes = 0;
    spool_blob_wait(b, count_wake, &wakes);
    assert_int_equal(spool_blob_write(a, "ab", 2, 0), 0);
    spool_blob_finish(a, FERRY_EDIGEST, "blob sha256:bb22 does not match its digest");
    assert_int_equal(wakes, 1);
    assert_int_equal(spool_blob_read(b, buf, sizeof(buf), 0), FERRY_EDIGEST);
    assert_string_equal(spool_blob_error(b), "blob sha256:bb22 does not match its digest");
    struct spool_blob *c = acquire(s, "sha256:bb22", 4, &created);
    assert_true(created);
    assert_ptr_not_equal(c, a);
    assert_int_equal(spool_downloads(s), 2);
    spool_release(a);
    spool_release(b);
    spool_blob_finish(c, 0, NULL);
    spool_release(c);
    spool_free(s);
}

/* Past the cap, unused complete blobs go, least recently used first; held ones stay. */
static void test_eviction(void **state)
{
    struct spool *s = NULL;
    char *err = NULL;
    bool created = false;
    (void)state;

    assert_int_equal(spool_new(dir, 10, &s, &err), 0);
    struct spool_blob *x = acquire(s, "sha256:cc01", 6, &created);
    assert_int_equal(spool_blob_write(x, "xxxxxx", 6, 0), 0);
    spool_blob_finish(x, 0, NULL);
    spool_release(x);
    struct spool_blob *y = acquire(s, "sha256:cc02", 6, &created);
    assert_int_equal(spool_blob_write(y, "yyyyyy", 6, 0), 0);
    spool_blob_finish(y, 0, NULL);
    /* 12 bytes > 10: x (unused) is evicted, y (held) stays. */
    assert_int_equal(spool_bytes(s), 6);
    struct spool_blob *x2 = acquire(s, "sha256:cc01", 6, &created);
    assert_true(created);
    spool_blob_finish(x2, 0, NULL);
    spool_release(x2);
    spool_release(y);
    spool_free(s);
}

int main(void)
{
    if (mkdtemp(dir) == NULL)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_flight_and_follow),
        cmocka_unit_test(test_failure_and_restart),
        cmocka_unit_test(test_eviction),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    struct spool *s = NULL;
    char *err = NULL;
    /* spool_new empties the directory; then it goes. */
    if (spool_new(dir, 0, &s, &err) == 0)
        spool_free(s);
    free(err);
    if (rmdir(dir) != 0)
        rc = 1;
    return rc;
}
