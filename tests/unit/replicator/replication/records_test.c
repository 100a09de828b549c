/*
 * records: a cluster node's job records, written by a thread. Whatever is
 * put reaches the journal by the close, each record in the newest state put
 * (a newer put of a record not yet written replaces it), and a put never
 * waits for the write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/xalloc.h"
#include "journal/journal.h"
#include "replication/records.h"
#include "unit.h"

#define KEYS   200
#define ROUNDS 5

static void test_newest_state_written(void **state)
{
    (void)state;
    char root[] = "/tmp/ferry-records-test-XXXXXX";
    assert_int_equal(unit_tmpdir_make(root), 0);
    char *dir = xasprintf("%s/journal", root);
    struct journal *j = NULL;
    char *err = NULL;
    struct journal_options opts = {0};
    assert_int_equal(journal_open(dir, &opts, &j, &err), 0);

    struct records *r = NULL;
    assert_int_equal(records_new(j, &r), 0);
    char *tags[] = {"v1"};
    /* Every record goes PENDING, IN_PROGRESS ... COMPLETE, round after round. */
    for (int round = 1; round <= ROUNDS; round++) {
        for (int k = 0; k < KEYS; k++) {
            char repo[32], digest[80];
            snprintf(repo, sizeof(repo), "repo%d", k);
            snprintf(digest, sizeof(digest), "sha256:%064d", k);
            struct journal_job job = {
                .destination = "eu",
                .repository = repo,
                .digest = digest,
                .state = round == ROUNDS ? JOURNAL_JOB_COMPLETE : JOURNAL_JOB_IN_PROGRESS,
                .attempts = (uint32_t)round,
                .last_error = round == ROUNDS ? NULL : "still going",
                .seq = (uint64_t)(k + 1),
                .tags = tags,
                .n_tags = 1,
                .node = "node-a",
            };
            records_put(r, &job);
        }
    }
    records_close(r);

    for (int k = 0; k < KEYS; k++) {
        char repo[32], digest[80];
        snprintf(repo, sizeof(repo), "repo%d", k);
        snprintf(digest, sizeof(digest), "sha256:%064d", k);
        struct journal_job got;
        assert_int_equal(journal_job_get(j, "eu", repo, digest, &got), 0);
        assert_int_equal(got.state, JOURNAL_JOB_COMPLETE);
        assert_int_equal(got.attempts, ROUNDS);
        assert_null(got.last_error);
        assert_string_equal(got.node, "node-a");
        assert_int_equal(got.n_tags, 1);
        assert_string_equal(got.tags[0], "v1");
        journal_job_release(&got);
    }
    records_close(NULL);
    journal_close(j);
    free(dir);
    assert_int_equal(unit_tmpdir_remove(root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest_state_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
