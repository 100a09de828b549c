/*
 * Unit tests for the engine's decisions (replicator/replication/engine*),
 * on plain data and a fake clock: no loop, no registry. The tag's fence
 * (it only rises, and an older entry never moves the tag back), the tag
 * step's verdict (supersede), the circuit as the engine reports and feeds it
 * (closed, open after N failures, half-open after open_for, closed again on
 * a probe's success or open again on its failure), the entries that come
 * back (FAILED ones when their destination's circuit closes, parked ones at
 * the next start), and the window. The fence runs on a real journal in a
 * temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "unit.h"
#include "common/errors.h"
#include "common/xalloc.h"
#include "journal/journal.h"
#include "replication/engine_int.h"
#include "replication/scheduler.h"

#define DEST     "mirror"
#define REPO     "library/app"
#define DIGEST_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIGEST_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

#define CIRCUIT_FAILURES 3
#define CIRCUIT_OPEN_MS  30000

static char test_root[] = "/tmp/ferry-engine-test-XXXXXX";
static int test_dir_seq;

static struct journal *journal_fresh(void)
{
    char *dir = xasprintf("%s/db%d", test_root, test_dir_seq++);
    struct journal_options opts = {0};
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(dir, &opts, &j, &err);
    if (rc != 0)
        fail_msg("journal_open(%s) = %d: %s", dir, rc, err != NULL ? err : "(no message)");
    free(dir);
    return j;
}

static uint64_t fence_of(struct journal *j, const char *tag)
{
    uint64_t seq = 0;
    assert_int_equal(journal_fence_get(j, DEST, REPO, tag, &seq), 0);
    return seq;
}

/* ---- the fence ---- */

static void test_fence_claim(void **state)
{
    (void)state;
    assert_int_equal(engine_fence_claim(0, 1), ENGINE_FENCE_RAISE);
    assert_int_equal(engine_fence_claim(7, 8), ENGINE_FENCE_RAISE);
    /* The entry that raised it before a failed attempt or a crash owns it. */
    assert_int_equal(engine_fence_claim(8, 8), ENGINE_FENCE_OWNED);
    assert_int_equal(engine_fence_claim(9, 8), ENGINE_FENCE_SUPERSEDED);
    assert_int_equal(engine_fence_claim(UINT64_MAX, 1), ENGINE_FENCE_SUPERSEDED);
}

/*
 * Entries claim a tag out of order (as retries and several destinations
 * make them): the fence is always the newest seq that claimed it, never
 * lower than before, and every entry older than it is refused.
 */
static void test_fence_only_rises(void **state)
{
    (void)state;
    struct journal *j = journal_fresh();
    const uint64_t seqs[] = {5, 3, 9, 9, 7, 12, 1, 12, 11, 40};
    const int want[] = {1, 0, 1, 1, 0, 1, 0, 1, 0, 1};
    uint64_t newest = 0;
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        int rc = engine_fence_take(j, DEST, REPO, "v1", seqs[i]);
        if (rc != want[i])
            fail_msg("entry %llu: engine_fence_take = %d, expected %d", (unsigned long long)seqs[i],
                     rc, want[i]);
        if (seqs[i] > newest)
            newest = seqs[i];
        assert_int_equal(fence_of(j, "v1"), newest);
    }
    /* Fences are per tag: another tag, and the digest fence space, start at 0. */
    assert_int_equal(fence_of(j, "v2"), 0);
    assert_int_equal(engine_fence_take(j, DEST, REPO, "v2", 2), 1);
    assert_int_equal(fence_of(j, "v2"), 2);
    assert_int_equal(fence_of(j, "v1"), 40);
    assert_int_equal(fence_of(j, "@" DIGEST_A), 0);
    journal_close(j);
}

/* A fence survives a reopen: a restart does not let an older entry back in. */
static void test_fence_durable(void **state)
{
    (void)state;
    char *dir = xasprintf("%s/db%d", test_root, test_dir_seq++);
    struct journal_options opts = {0};
    struct journal *j = NULL;
    char *err = NULL;
    assert_int_equal(journal_open(dir, &opts, &j, &err), 0);
    assert_int_equal(engine_fence_take(j, DEST, REPO, "latest", 20), 1);
    journal_close(j);
    assert_int_equal(journal_open(dir, &opts, &j, &err), 0);
    assert_int_equal(engine_fence_take(j, DEST, REPO, "latest", 19), 0);
    assert_int_equal(engine_fence_take(j, DEST, REPO, "latest", 20), 1);
    assert_int_equal(fence_of(j, "latest"), 20);
    journal_close(j);
    free(dir);
}

/* ---- the tag step: supersede ---- */

static enum engine_tag_verdict verdict(uint64_t seq, uint64_t deleted, uint64_t fence,
                                       const char *existing, bool moved_since)
{
    struct engine_tag_facts f = {
        .seq = seq,
        .deleted = deleted,
        .fence = fence,
        .existing = existing,
        .gate_digest = DIGEST_A,
        .moved_since = moved_since,
    };
    return engine_tag_verdict(&f);
}

static void test_tag_verdict(void **state)
{
    (void)state;
    /* Newer than the fence, or its owner: the tag moves. */
    assert_int_equal(verdict(10, 0, 0, NULL, false), ENGINE_TAG_MOVE);
    assert_int_equal(verdict(10, 0, 9, NULL, false), ENGINE_TAG_MOVE);
    assert_int_equal(verdict(10, 0, 10, DIGEST_B, false), ENGINE_TAG_MOVE);
    /* Older than the fence: superseded, whatever the destination shows. */
    assert_int_equal(verdict(10, 0, 11, NULL, false), ENGINE_TAG_SUPERSEDED);
    assert_int_equal(verdict(10, 0, 11, DIGEST_A, false), ENGINE_TAG_SUPERSEDED);
    assert_int_equal(verdict(10, 0, 11, DIGEST_B, true), ENGINE_TAG_SUPERSEDED);
    /* The manifest deleted by a newer entry: not put back, fence or not. */
    assert_int_equal(verdict(10, 11, 0, NULL, false), ENGINE_TAG_DELETED);
    assert_int_equal(verdict(10, 11, 12, NULL, false), ENGINE_TAG_DELETED);
    /* Deleted before the entry: a push after a delete puts it back. */
    assert_int_equal(verdict(10, 9, 0, NULL, false), ENGINE_TAG_MOVE);
    /* In place as the copy saw it: held, unless this node moved something since. */
    assert_int_equal(verdict(10, 0, 3, DIGEST_A, false), ENGINE_TAG_HELD);
    assert_int_equal(verdict(10, 0, 3, DIGEST_A, true), ENGINE_TAG_MOVE);
    assert_int_equal(verdict(10, 0, 3, DIGEST_B, false), ENGINE_TAG_MOVE);
}

/* ---- the circuit ---- */

/* A scheduler on a fake clock, freed by the teardown even when a test fails. */
struct fixture {
    struct sched s;
    bool live;
    struct eng_registry regs[2];
};

static int fixture_setup(void **state)
{
    *state = xcalloc(1, sizeof(struct fixture));
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    if (f->live)
        sched_free(&f->s);
    for (size_t i = 0; i < 2; i++) {
        engine_requeue_clear(&f->regs[i].failed);
        engine_requeue_clear(&f->regs[i].source_failed);
    }
    free(f);
    return 0;
}

static struct sched *fixture_sched(void **state, size_t n_dests)
{
    struct fixture *f = *state;
    sched_init(&f->s, n_dests, NULL, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    f->live = true;
    for (size_t i = 0; i < 2; i++)
        f->regs[i].index = i;
    return &f->s;
}

#define FIXTURE_TEST(test) cmocka_unit_test_setup_teardown(test, fixture_setup, fixture_teardown)

/*
 * One attempt of `it` at destination 0, started at `now` and ending as the
 * engine would judge rc and fault; sched_done()'s flags.
 */
static int attempt(struct sched *s, struct sched_item *it, uint64_t now, int rc,
                   enum copy_fault fault)
{
    sched_push(s, it, 0);
    struct sched_item *next = sched_next(s, now);
    if (next != it)
        fail_msg("at %llu the job did not start", (unsigned long long)now);
    enum sched_outcome outcome = engine_attempt_outcome(rc, engine_blame(rc, fault), false, false);
    return sched_done(s, it, outcome, now);
}

static void test_attempt_outcome(void **state)
{
    (void)state;
    /* A failure no step blamed is the destination's. */
    assert_int_equal(engine_blame(FERRY_ECONNECT, COPY_FAULT_NONE), COPY_FAULT_DESTINATION);
    assert_int_equal(engine_blame(FERRY_ECONNECT, COPY_FAULT_SOURCE), COPY_FAULT_SOURCE);
    assert_int_equal(engine_blame(0, COPY_FAULT_NONE), COPY_FAULT_NONE);
    assert_int_equal(engine_attempt_outcome(0, COPY_FAULT_NONE, false, false), SCHED_OK);
    assert_int_equal(engine_attempt_outcome(FERRY_ECONNECT, COPY_FAULT_DESTINATION, false, false),
                     SCHED_DEST_FAILURE);
    /* Only the destination's own trouble counts against its circuit. */
    assert_int_equal(engine_attempt_outcome(FERRY_ECONNECT, COPY_FAULT_SOURCE, false, false),
                     SCHED_NEUTRAL);
    assert_int_equal(engine_attempt_outcome(FERRY_ECONNECT, COPY_FAULT_LOCAL, false, false),
                     SCHED_NEUTRAL);
    /* Gone at the source, or cut short by the shutdown: nothing learned. */
    assert_int_equal(engine_attempt_outcome(0, COPY_FAULT_NONE, true, false), SCHED_NEUTRAL);
    assert_int_equal(engine_attempt_outcome(FERRY_ECONNECT, COPY_FAULT_DESTINATION, false, true),
                     SCHED_NEUTRAL);
    assert_int_equal(engine_attempt_outcome(0, COPY_FAULT_NONE, false, true), SCHED_OK);
}

/*
 * closed → open after CIRCUIT_FAILURES failures in a row → half-open at
 * open_for, one probe → open again when the probe fails → half-open → closed
 * when the probe succeeds. Source faults on the way change nothing.
 */
static void test_circuit_cycle(void **state)
{
    struct sched *s = fixture_sched(state, 1);
    struct sched_item job = {0}, waiting = {0}, second = {0};
    uint64_t now = 1000;

    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_CLOSED);
    for (int i = 0; i < 10; i++)
        assert_int_equal(attempt(s, &job, now, FERRY_ENOTFOUND, COPY_FAULT_SOURCE), 0);
    for (int i = 1; i < CIRCUIT_FAILURES; i++) {
        assert_int_equal(attempt(s, &job, now, FERRY_ECONNECT, COPY_FAULT_NONE), 0);
        assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_CLOSED);
    }
    assert_int_equal(attempt(s, &job, now, FERRY_ECONNECT, COPY_FAULT_DESTINATION), SCHED_OPENED);
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_OPEN);

    /* Open: a job queued now waits (the engine parks it), until open_for is over. */
    sched_push(s, &waiting, 0);
    assert_true(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), CIRCUIT_OPEN_MS);
    assert_null(sched_next(s, now + CIRCUIT_OPEN_MS - 1));
    assert_int_equal(engine_circuit_state(s, 0, now + CIRCUIT_OPEN_MS - 1), ENGINE_CIRCUIT_OPEN);

    /* Half-open: the parked job goes as the one probe, and fails. */
    now += CIRCUIT_OPEN_MS;
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_HALF_OPEN);
    sched_push(s, &second, 0);
    assert_ptr_equal(sched_next(s, now), &waiting);
    assert_null(sched_next(s, now));
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_HALF_OPEN);
    int outcome = engine_attempt_outcome(FERRY_ECONNECT, COPY_FAULT_DESTINATION, false, false);
    assert_int_equal(sched_done(s, &waiting, outcome, now), SCHED_OPENED);
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_OPEN);
    assert_null(sched_next(s, now + CIRCUIT_OPEN_MS - 1));

    /* A probe the source failed says nothing: another probe may go. */
    now += CIRCUIT_OPEN_MS;
    assert_ptr_equal(sched_next(s, now), &second);
    outcome = engine_attempt_outcome(FERRY_EDIGEST, COPY_FAULT_SOURCE, false, false);
    assert_int_equal(sched_done(s, &second, outcome, now), 0);
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_HALF_OPEN);

    /* The next probe succeeds: closed, and jobs flow again. */
    assert_int_equal(attempt(s, &job, now, 0, COPY_FAULT_NONE), SCHED_CLOSED);
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_CLOSED);
    assert_false(sched_circuit_open(s, 0, now));
    assert_int_equal(attempt(s, &job, now, 0, COPY_FAULT_NONE), 0);
    assert_int_equal(s->dests[0].opened, 2);
}

/* ---- entries that come back ---- */

/*
 * FAILED jobs wait by who failed them: the destination's until its circuit
 * closes, the source's (down) until a job reads from it again; an image the
 * source cannot give never comes back on its own.
 */
static void test_failed_requeue_routes(void **state)
{
    (void)state;
    assert_int_equal(engine_failed_requeue(COPY_FAULT_DESTINATION, FERRY_ECONNECT),
                     ENGINE_REQUEUE_CIRCUIT_CLOSES);
    assert_int_equal(engine_failed_requeue(COPY_FAULT_LOCAL, -EIO), ENGINE_REQUEUE_CIRCUIT_CLOSES);
    assert_int_equal(engine_failed_requeue(COPY_FAULT_SOURCE, FERRY_ECONNECT),
                     ENGINE_REQUEUE_SOURCE_ANSWERS);
    assert_int_equal(engine_failed_requeue(COPY_FAULT_SOURCE, FERRY_ETIMEOUT),
                     ENGINE_REQUEUE_SOURCE_ANSWERS);
    const int cannot_give[] = {FERRY_ENOTFOUND, FERRY_EDIGEST, FERRY_ETOOBIG, FERRY_EPARSE,
                               FERRY_EUNSUPPORTED};
    for (size_t i = 0; i < sizeof(cannot_give) / sizeof(cannot_give[0]); i++) {
        assert_true(engine_source_cannot_give(cannot_give[i]));
        assert_int_equal(engine_failed_requeue(COPY_FAULT_SOURCE, cannot_give[i]),
                         ENGINE_REQUEUE_NEVER);
    }
}

/*
 * A destination goes down: its jobs fail until the circuit opens, and the
 * ones that end FAILED wait. Nothing comes back while it is open or when a
 * probe fails; every entry comes back, in order and once, when the circuit
 * closes.
 */
static void test_requeue_when_circuit_closes(void **state)
{
    struct fixture *f = *state;
    struct sched *s = fixture_sched(state, 2);
    struct eng_registry *src = &f->regs[1], *dst = &f->regs[0];
    struct sched_item job = {0};
    uint64_t now = 500;
    size_t n = 99;

    for (uint64_t seq = 10; seq < 10 + CIRCUIT_FAILURES; seq++) {
        int flags = attempt(s, &job, now, FERRY_ECONNECT, COPY_FAULT_DESTINATION);
        assert_null(engine_circuit_requeues(dst, flags, &n));
        assert_int_equal(n, 0);
        engine_failed_keep(src, dst, seq, COPY_FAULT_DESTINATION, FERRY_ECONNECT);
    }
    assert_int_equal(engine_circuit_state(s, 0, now), ENGINE_CIRCUIT_OPEN);
    /* Failed by the source: not this circuit's to bring back. */
    engine_failed_keep(src, dst, 30, COPY_FAULT_SOURCE, FERRY_ECONNECT);
    engine_failed_keep(src, dst, 31, COPY_FAULT_SOURCE, FERRY_ENOTFOUND);
    assert_int_equal(dst->failed.n, CIRCUIT_FAILURES);
    assert_int_equal(src->source_failed.n, 1);
    assert_int_equal(src->failed.n, 0);

    /* The first probe fails: still waiting. */
    now += CIRCUIT_OPEN_MS;
    int flags = attempt(s, &job, now, FERRY_ECONNECT, COPY_FAULT_DESTINATION);
    assert_int_equal(flags, SCHED_OPENED);
    assert_null(engine_circuit_requeues(dst, flags, &n));
    assert_int_equal(dst->failed.n, CIRCUIT_FAILURES);

    /* The next one succeeds: everything that failed there comes back. */
    now += CIRCUIT_OPEN_MS;
    flags = attempt(s, &job, now, 0, COPY_FAULT_NONE);
    assert_int_equal(flags, SCHED_CLOSED);
    struct engine_requeue *back = engine_circuit_requeues(dst, flags, &n);
    assert_non_null(back);
    assert_int_equal(n, CIRCUIT_FAILURES);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(back[i].seq, 10 + i);
        assert_int_equal(back[i].dst, dst->index);
    }
    free(back);
    assert_int_equal(dst->failed.n, 0);
    assert_null(engine_circuit_requeues(dst, SCHED_CLOSED, &n));
    assert_int_equal(n, 0);

    /* The source's failure waits for the source, for the same destination. */
    struct engine_requeue *src_back = engine_requeue_take(&src->source_failed, &n);
    assert_int_equal(n, 1);
    assert_int_equal(src_back[0].seq, 30);
    assert_int_equal(src_back[0].dst, dst->index);
    free(src_back);
}

/* The lists are capped: past ENGINE_PARKED_MAX an entry waits for `ferry retry`. */
static void test_requeue_cap(void **state)
{
    struct fixture *f = *state;
    struct eng_registry *src = &f->regs[1], *dst = &f->regs[0];
    for (uint64_t seq = 1; seq <= ENGINE_PARKED_MAX + 10; seq++)
        engine_failed_keep(src, dst, seq, COPY_FAULT_DESTINATION, FERRY_ECONNECT);
    size_t n = 0;
    struct engine_requeue *back = engine_circuit_requeues(dst, SCHED_CLOSED | SCHED_OPENED, &n);
    assert_int_equal(n, ENGINE_PARKED_MAX);
    assert_int_equal(back[0].seq, 1);
    assert_int_equal(back[n - 1].seq, ENGINE_PARKED_MAX);
    free(back);
}

/*
 * A parked job (waiting for its retry or an open circuit) keeps the parked
 * cursor below its entry while the engine's cursor passes it, so that the
 * next start runs it again; an entry whose job had ended is not run again.
 */
static void test_parked_picked_up(void **state)
{
    (void)state;
    /* The cursor moved to 100 while jobs for 40 and 70 are parked. */
    uint64_t low = 100;
    low = engine_parked_floor(low, 70);
    assert_int_equal(low, 69);
    low = engine_parked_floor(low, 40);
    assert_int_equal(low, 39);
    low = engine_parked_floor(low, 55);
    assert_int_equal(low, 39);
    /* Never above the cursor, and seq 0 (none) moves nothing. */
    assert_int_equal(engine_parked_floor(10, 200), 10);
    assert_int_equal(engine_parked_floor(10, 0), 10);
    assert_int_equal(engine_parked_floor(0, 1), 0);

    /* At the start, the range (39, 100] runs again where its jobs did not end. */
    char *v1[] = {"v1"}, *v2[] = {"v2"};
    struct journal_entry en = {.seq = 40, .action = JOURNAL_PUSH, .digest = DIGEST_A, .tag = "v1"};
    struct journal_job rec = {.state = JOURNAL_JOB_PENDING, .seq = 40, .tags = v1, .n_tags = 1};
    assert_false(engine_record_ended(&rec, &en));
    rec.state = JOURNAL_JOB_IN_PROGRESS;
    assert_false(engine_record_ended(&rec, &en));
    const enum journal_job_state ended[] = {JOURNAL_JOB_COMPLETE, JOURNAL_JOB_SUPERSEDED,
                                            JOURNAL_JOB_FAILED};
    for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++) {
        rec.state = ended[i];
        rec.seq = 40;
        assert_true(engine_record_ended(&rec, &en));
        rec.seq = 41; /* a newer entry's job ended it too */
        assert_true(engine_record_ended(&rec, &en));
        rec.seq = 39; /* an older entry's job: this one runs again */
        assert_false(engine_record_ended(&rec, &en));
    }
    /* Its record names another tag: this entry's tag was never moved. */
    rec.state = JOURNAL_JOB_COMPLETE;
    rec.seq = 40;
    rec.tags = v2;
    assert_false(engine_record_ended(&rec, &en));
    /* By digest only, the tags do not matter. */
    en.tag = NULL;
    assert_true(engine_record_ended(&rec, &en));
}

/* A job delayed for its retry is parked until its time, then starts at once. */
static void test_parked_retry_due(void **state)
{
    struct sched *s = fixture_sched(state, 2);
    struct sched_item job = {0};
    uint64_t now = 7000;
    sched_delay(s, &job, 1, now + 4000);
    assert_false(sched_circuit_open(s, 1, now));
    assert_int_equal(sched_wakeup(s, now), 4000);
    assert_null(sched_next(s, now + 3999));
    assert_ptr_equal(sched_next(s, now + 4000), &job);
    assert_int_equal(sched_done(s, &job, SCHED_OK, now + 4000), 0);
    assert_int_equal(sched_wakeup(s, now + 4000), -1);
}

/* ---- the window ---- */

static void test_window(void **state)
{
    (void)state;
    const size_t window = 100;
    /* Read more once fewer than half the window's entries are busy. */
    assert_true(engine_window_wants(0, window));
    assert_true(engine_window_wants(50, window));
    assert_false(engine_window_wants(51, window));
    assert_false(engine_window_wants(window, window));
    /* Room: what the window has left, none when full or the list is at its bound. */
    assert_int_equal(engine_window_room(0, 0, window), window);
    assert_int_equal(engine_window_room(30, 500, window), 70);
    assert_int_equal(engine_window_room(window, 0, window), 0);
    assert_int_equal(engine_window_room(window + 5, 0, window), 0);
    assert_int_equal(engine_window_room(0, window * ENGINE_LIST_FACTOR - 1, window), window);
    assert_int_equal(engine_window_room(0, window * ENGINE_LIST_FACTOR, window), 0);
    /* Holders of the oldest entries park until the list is under half its bound. */
    assert_false(engine_window_crowded(window * ENGINE_LIST_FACTOR / 2 - 1, window));
    assert_true(engine_window_crowded(window * ENGINE_LIST_FACTOR / 2, window));
}

static int group_setup(void **state)
{
    (void)state;
    return unit_tmpdir_make(test_root);
}

static int group_teardown(void **state)
{
    (void)state;
    return unit_tmpdir_remove(test_root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fence_claim),
        cmocka_unit_test(test_fence_only_rises),
        cmocka_unit_test(test_fence_durable),
        cmocka_unit_test(test_tag_verdict),
        cmocka_unit_test(test_attempt_outcome),
        FIXTURE_TEST(test_circuit_cycle),
        cmocka_unit_test(test_failed_requeue_routes),
        FIXTURE_TEST(test_requeue_when_circuit_closes),
        FIXTURE_TEST(test_requeue_cap),
        cmocka_unit_test(test_parked_picked_up),
        FIXTURE_TEST(test_parked_retry_due),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
