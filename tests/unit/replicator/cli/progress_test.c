/*
 * progress: the bars of `ferry copy` on a real loop, drawn into a file: the
 * frame, the total, and the close callback that frees it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/progress.h"
#include "common/xalloc.h"

/* Everything written to `f` so far, as a fresh string. */
static char *contents(FILE *f)
{
    assert_int_equal(fflush(f), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    char *text = xcalloc(1, (size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    return text;
}

static void closed(void *arg)
{
    (*(int *)arg)++;
}

static void test_bars(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct progress *p = NULL;
    FILE *out = tmpfile();
    int closes = 0;
    assert_non_null(out);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(progress_new(&loop, out, &p), 0);
    assert_non_null(p);

    struct progress_item *a = progress_item_add(p, "sha256:abcdef0123456789", 2048);
    struct progress_item *b = progress_item_add(p, "sha256:99999999", 1024);
    progress_item_set(p, a, 1024);
    progress_item_done(p, b, true);
    progress_finish(p);
    char *text = contents(out);
    /* The label drops "sha256:"; the bar is half full; one blob is done. */
    assert_non_null(strstr(text, "  abcdef0123456789    [###############...............] "
                                 "1.0 KiB / 2.0 KiB\n"));
    assert_null(strstr(text, "99999999"));
    assert_non_null(strstr(text, "  total: 1 blobs done, 2.0 KiB sent, "));
    free(text);

    /* The timer alone does not keep the loop running; closing does until it is freed. */
    progress_close(p, closed, &closes);
    assert_int_equal(closes, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closes, 1);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Items still on the screen at close are freed with it (ASan checks). */
static void test_close_with_items(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct progress *p = NULL;
    FILE *out = tmpfile();
    assert_non_null(out);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(progress_new(&loop, out, &p), 0);
    for (int i = 0; i < 12; i++)
        assert_non_null(progress_item_add(p, "blob", 10));
    progress_finish(p);
    char *text = contents(out);
    /* Eight bars at the most, then the total. */
    size_t lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 9);
    free(text);
    progress_close(p, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    xalloc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bars),
        cmocka_unit_test(test_close_with_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
