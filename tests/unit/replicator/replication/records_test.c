/*
 * records: a cluster node's job records, written by a thread. Whatever is
 * put reaches the journal by the close, each record in the newest state put
 * (a newer put of a record not yet written replaces it), and a put never
 * waits for the write. A running or waiting job's record waits
 * RECORDS_OPEN_DELAY_MS first, so that a job that ends sooner writes once;
 * how a job ended is written at once, and a long job's progress does not
 * hold its record back. A queued job that has not run is not written until
 * it has run for the delay (or the close, or a full table, writes it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "journal/journal.h"
#include "replication/records.h"
#include "unit.h"

#define KEYS   200
#define ROUNDS 5

/* A RocksDB journal in a new directory made from the template `root`. */
static struct journal *journal_in(char *root)
{
    assert_int_equal(unit_tmpdir_make(root), 0);
    char *dir = xasprintf("%s/journal", root);
    struct journal *j = NULL;
    char *err = NULL;
    struct journal_options opts = {0};
    assert_int_equal(journal_open(dir, &opts, &j, &err), 0);
    free(dir);
    return j;
}

static void test_newest_state_written(void **state)
{
    (void)state;
    char root[] = "/tmp/ferry-records-test-XXXXXX";
    struct journal *j = journal_in(root);

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
    assert_int_equal(unit_tmpdir_remove(root), 0);
}

static struct journal_job one_job(char *repo, enum journal_job_state st)
{
    static char *tags[] = {"v1"};
    return (struct journal_job){
        .destination = "eu",
        .repository = repo,
        .digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001",
        .state = st,
        .attempts = 1,
        .seq = 1,
        .tags = tags,
        .n_tags = 1,
        .node = "node-a",
    };
}

/* The state of repo's record now: 0 when there is none. */
static int state_of(struct journal *j, const char *repo)
{
    struct journal_job got;
    if (journal_job_get(j, "eu", repo,
                        "sha256:0000000000000000000000000000000000000000000000000000000000000001",
                        &got) < 0)
        return 0;
    int st = (int)got.state;
    journal_job_release(&got);
    return st;
}

/* ms from `t0` until repo's record is in `st` (polled every 20 ms, at most 5 s past the delay), -1
 * if never. */
static int64_t until_state(struct journal *j, const char *repo, int st, int64_t t0)
{
    while (clock_mono_ms() - t0 < RECORDS_OPEN_DELAY_MS + 5000) {
        if (state_of(j, repo) == st)
            return clock_mono_ms() - t0;
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000L}, NULL);
    }
    return -1;
}

static void test_open_states_wait(void **state)
{
    (void)state;
    char quick[] = "quick", long_[] = "long", busy[] = "busy", closing[] = "closing";
    char root[] = "/tmp/ferry-records-test-XXXXXX";
    struct journal *j = journal_in(root);
    struct records *r = NULL;
    assert_int_equal(records_new(j, &r), 0);

    /* A job that ends within the delay: its IN_PROGRESS is never written. */
    int64_t t0 = clock_mono_ms();
    struct journal_job job = one_job(quick, JOURNAL_JOB_IN_PROGRESS);
    records_put(r, &job);
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000L}, NULL);
    int seen = state_of(j, "quick");
    if (clock_mono_ms() - t0 < RECORDS_OPEN_DELAY_MS)
        assert_int_equal(seen, 0);
    job = one_job(quick, JOURNAL_JOB_COMPLETE);
    int64_t t1 = clock_mono_ms();
    records_put(r, &job);
    int64_t took = until_state(j, "quick", JOURNAL_JOB_COMPLETE, t1);
    assert_true(took >= 0);
    assert_true(took < RECORDS_OPEN_DELAY_MS / 2 || clock_mono_ms() - t0 >= 4000);

    /* A job that runs on is written once the delay is over... */
    t0 = clock_mono_ms();
    job = one_job(long_, JOURNAL_JOB_IN_PROGRESS);
    records_put(r, &job);
    took = until_state(j, "long", JOURNAL_JOB_IN_PROGRESS, t0);
    assert_true(took >= RECORDS_OPEN_DELAY_MS);
    /* ... and a record put again and again (its progress) is not held back. */
    t0 = clock_mono_ms();
    job = one_job(busy, JOURNAL_JOB_PENDING);
    records_put(r, &job);
    for (int i = 0; i < RECORDS_OPEN_DELAY_MS / 50 && state_of(j, "busy") == 0; i++) {
        job = one_job(busy, JOURNAL_JOB_PENDING);
        job.attempts = (uint32_t)(i + 2);
        records_put(r, &job);
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000L}, NULL);
    }
    took = clock_mono_ms() - t0;
    assert_int_equal(state_of(j, "busy"), JOURNAL_JOB_PENDING);
    assert_true(took < 3 * RECORDS_OPEN_DELAY_MS);

    /* What waits is written by the close. */
    job = one_job(closing, JOURNAL_JOB_IN_PROGRESS);
    records_put(r, &job);
    records_close(r);
    assert_int_equal(state_of(j, "closing"), JOURNAL_JOB_IN_PROGRESS);
    journal_close(j);
    assert_int_equal(unit_tmpdir_remove(root), 0);
}

/*
 * A queued job (PENDING, no attempt yet) is not written while it waits in
 * the queue, however long: its delay starts when it starts. One that ends
 * without running is written at once; the close writes what still waits.
 */
static void test_queued_until_started(void **state)
{
    (void)state;
    char queued[] = "queued", dropped[] = "dropped", left[] = "left";
    char root[] = "/tmp/ferry-records-test-XXXXXX";
    struct journal *j = journal_in(root);
    struct records *r = NULL;
    assert_int_equal(records_new(j, &r), 0);

    struct journal_job job = one_job(queued, JOURNAL_JOB_PENDING);
    job.attempts = 0;
    records_put(r, &job);
    job = one_job(dropped, JOURNAL_JOB_PENDING);
    job.attempts = 0;
    records_put(r, &job);
    nanosleep(&(struct timespec){.tv_sec = RECORDS_OPEN_DELAY_MS * 3 / 2000,
                                 .tv_nsec = (RECORDS_OPEN_DELAY_MS * 3 / 2 % 1000) * 1000000L},
              NULL);
    assert_int_equal(state_of(j, "queued"), 0);

    /* It starts: written once it has run for the delay. */
    int64_t t0 = clock_mono_ms();
    job = one_job(queued, JOURNAL_JOB_IN_PROGRESS);
    records_put(r, &job);
    int64_t took = until_state(j, "queued", JOURNAL_JOB_IN_PROGRESS, t0);
    assert_true(took >= RECORDS_OPEN_DELAY_MS);

    /* Ended without running (superseded in the queue): at once. */
    t0 = clock_mono_ms();
    job = one_job(dropped, JOURNAL_JOB_SUPERSEDED);
    job.attempts = 0;
    records_put(r, &job);
    took = until_state(j, "dropped", JOURNAL_JOB_SUPERSEDED, t0);
    assert_true(took >= 0);
    assert_true(took < RECORDS_OPEN_DELAY_MS / 2 || clock_mono_ms() - t0 >= 4000);

    job = one_job(left, JOURNAL_JOB_PENDING);
    job.attempts = 0;
    records_put(r, &job);
    records_close(r);
    assert_int_equal(state_of(j, "left"), JOURNAL_JOB_PENDING);
    journal_close(j);
    assert_int_equal(unit_tmpdir_remove(root), 0);
}

/*
 * More queued jobs than the table holds: a put past RECORDS_PENDING_MAX
 * waits for room, and the writer makes it by writing queued records (a
 * queued record is never due by itself, so nothing else would).
 */
static void test_queued_past_the_cap(void **state)
{
    (void)state;
    char root[] = "/tmp/ferry-records-test-XXXXXX";
    struct journal *j = journal_in(root);
    struct records *r = NULL;
    assert_int_equal(records_new(j, &r), 0);
    for (int k = 0; k < RECORDS_PENDING_MAX + 10; k++) {
        char repo[32];
        snprintf(repo, sizeof(repo), "q%d", k);
        struct journal_job job = one_job(repo, JOURNAL_JOB_PENDING);
        job.attempts = 0;
        records_put(r, &job);
    }
    assert_true(records_pending(r) <= RECORDS_PENDING_MAX + 10);
    records_close(r);
    assert_int_equal(state_of(j, "q0"), JOURNAL_JOB_PENDING);
    journal_close(j);
    assert_int_equal(unit_tmpdir_remove(root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest_state_written),
        cmocka_unit_test(test_open_states_wait),
        cmocka_unit_test(test_queued_until_started),
        cmocka_unit_test(test_queued_past_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
