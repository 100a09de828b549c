/*
 * Unit tests for replicator/scheduler: which job starts next. Everything runs on
 * a fake clock, milliseconds in a uint64_t that each test moves by hand, and
 * every job is a struct test_job with the scheduler's item embedded. The
 * tests keep their own account of what state each job should be in and
 * compare it with the scheduler's after every step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replication/scheduler.h"
#include "common/xalloc.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define CIRCUIT_FAILURES 3
#define CIRCUIT_OPEN_MS  30000

struct test_job {
    struct sched_item item;
    size_t id;
    size_t dest;
    enum sched_state expect; /* the state the test expects the item in */
    uint64_t due;            /* when last delayed */
    uint64_t seq;            /* the order it was last delayed in */
    uint64_t finish;         /* when its running attempt ends (the simulation) */
    unsigned starts;
    unsigned taken; /* by sched_take_any() */
    bool removed;
    bool probe; /* started through a half-open circuit */
    bool complete;
};

static struct test_job *job_of(struct sched_item *it)
{
    assert_non_null(it);
    return container_of(it, struct test_job, item);
}

static struct test_job *jobs_new(size_t n)
{
    struct test_job *jobs = xcalloc(n, sizeof(*jobs));
    for (size_t i = 0; i < n; i++)
        jobs[i].id = i;
    return jobs;
}

/* A fixed-seed xorshift, so that every run sees the same input. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed;
}

static uint64_t rng_below(uint64_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state % bound;
}

static void job_push(struct sched *s, struct test_job *job, size_t dest)
{
    job->dest = dest;
    job->expect = SCHED_ITEM_RUNNABLE;
    sched_push(s, &job->item, dest);
    assert_int_equal(job->item.state, SCHED_ITEM_RUNNABLE);
}

static void job_delay(struct sched *s, struct test_job *job, size_t dest, uint64_t due,
                      uint64_t *seq)
{
    job->dest = dest;
    job->due = due;
    job->seq = (*seq)++;
    job->expect = SCHED_ITEM_WAITING;
    sched_delay(s, &job->item, dest, due);
    assert_int_equal(job->item.state, SCHED_ITEM_WAITING);
}

static void job_remove(struct sched *s, struct test_job *job)
{
    sched_remove(s, &job->item);
    assert_int_equal(job->item.state, SCHED_ITEM_IDLE);
    job->expect = SCHED_ITEM_IDLE;
    job->removed = true;
}

/* The next job sched_next() starts at `now`, which must be one of `dest`'s. */
static struct test_job *expect_next(struct sched *s, uint64_t now, size_t dest)
{
    struct sched_item *it = sched_next(s, now);
    if (it == NULL)
        fail_msg("sched_next(now=%llu) = NULL, expected a job of dest %zu", (unsigned long long)now,
                 dest);
    struct test_job *job = job_of(it);
    assert_int_equal(it->state, SCHED_ITEM_RUNNING);
    assert_int_equal(job->dest, dest);
    assert_int_equal(it->dest, dest);
    job->starts++;
    job->expect = SCHED_ITEM_RUNNING;
    return job;
}

static void expect_done(struct sched *s, struct test_job *job, enum sched_outcome outcome,
                        uint64_t now, int flags)
{
    assert_int_equal(sched_done(s, &job->item, outcome, now), flags);
    assert_int_equal(job->item.state, SCHED_ITEM_IDLE);
    job->expect = SCHED_ITEM_IDLE;
}

/* Waiting jobs due by `now` have joined their run queues (after sched_next(now)). */
static void jobs_promote(struct test_job *jobs, size_t n, uint64_t now)
{
    for (size_t i = 0; i < n; i++)
        if (jobs[i].expect == SCHED_ITEM_WAITING && jobs[i].due <= now)
            jobs[i].expect = SCHED_ITEM_RUNNABLE;
}

/*
 * Every item is in the state the test expects, and the scheduler's counters
 * agree with a count of the items.
 */
static void check_counters(const struct sched *s, const struct test_job *jobs, size_t n)
{
    size_t runnable[8] = {0}, waiting[8] = {0}, running[8] = {0};
    size_t total_waiting = 0;
    assert_true(s->n_dests <= 8);
    for (size_t i = 0; i < n; i++) {
        const struct test_job *job = &jobs[i];
        if (job->item.state != job->expect)
            fail_msg("job %zu (dest %zu) is in state %d, expected %d", job->id, job->dest,
                     (int)job->item.state, (int)job->expect);
        if (job->expect == SCHED_ITEM_RUNNABLE)
            runnable[job->dest]++;
        else if (job->expect == SCHED_ITEM_WAITING)
            waiting[job->dest]++, total_waiting++;
        else if (job->expect == SCHED_ITEM_RUNNING)
            running[job->dest]++;
    }
    for (size_t d = 0; d < s->n_dests; d++) {
        assert_int_equal(s->dests[d].runnable, runnable[d]);
        assert_int_equal(s->dests[d].waiting, waiting[d]);
        assert_int_equal(s->dests[d].running, running[d]);
        size_t listed = 0;
        for (const struct sched_item *it = s->dests[d].head; it != NULL; it = it->next)
            listed++;
        assert_int_equal(listed, runnable[d]);
    }
    assert_int_equal(s->n_heap, total_waiting);
}

/* sched_wakeup() when only retries wait for the clock: until the earliest is due. */
static int64_t retry_wakeup(const struct test_job *jobs, size_t n, uint64_t now)
{
    bool any = false;
    uint64_t due = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].expect != SCHED_ITEM_WAITING)
            continue;
        if (!any || jobs[i].due < due)
            due = jobs[i].due;
        any = true;
    }
    if (!any)
        return -1;
    return due > now ? (int64_t)(due - now) : 0;
}

/*
 * Each test's scheduler and jobs live in a fixture that the teardown frees,
 * so that a failed assertion leaks nothing either.
 */
struct fixture {
    struct sched s;
    bool live;
    struct test_job *jobs;
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
    free(f->jobs);
    free(f);
    return 0;
}

static struct sched *fixture_sched(void **state, size_t n_dests, const int *limits,
                                   int circuit_failures, uint64_t circuit_open_ms)
{
    struct fixture *f = *state;
    sched_init(&f->s, n_dests, limits, circuit_failures, circuit_open_ms);
    f->live = true;
    return &f->s;
}

static struct test_job *fixture_jobs(void **state, size_t n)
{
    struct fixture *f = *state;
    f->jobs = jobs_new(n);
    return f->jobs;
}

#define FIXTURE_TEST(test) cmocka_unit_test_setup_teardown(test, fixture_setup, fixture_teardown)

/*
 * A thousand jobs due in the same millisecond, across destinations with
 * limits 2, 4 and 1: nothing starts early, then each starts exactly once, at
 * most `limit` at a time, each destination's in the order they were queued.
 */
static void test_same_due(void **state)
{
    enum { N = 1000, DESTS = 3 };
    const int limits[DESTS] = {2, 4, 1};
    const uint64_t due = 5000;
    struct test_job *jobs = fixture_jobs(state, N);
    uint64_t seq = 0;
    struct sched *s = fixture_sched(state, DESTS, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t i = 0; i < N; i++)
        job_delay(s, &jobs[i], (i / 7 + i) % DESTS, due, &seq);
    check_counters(s, jobs, N);

    assert_int_equal(sched_wakeup(s, 1000), 4000);
    assert_null(sched_next(s, 1000));
    assert_null(sched_next(s, 4999));
    assert_int_equal(sched_wakeup(s, 4999), 1);
    assert_int_equal(sched_wakeup(s, 5000), 0);
    check_counters(s, jobs, N);

    uint64_t now = due;
    size_t started = 0;
    size_t last[DESTS] = {0};
    bool any[DESTS] = {false};
    while (started < N) {
        struct test_job *running[8];
        size_t n_running = 0;
        int per_dest[DESTS] = {0};
        struct sched_item *it;
        while ((it = sched_next(s, now)) != NULL) {
            struct test_job *job = job_of(it);
            size_t d = job->dest;
            assert_int_equal(it->state, SCHED_ITEM_RUNNING);
            assert_int_equal(job->starts, 0);
            job->starts++;
            job->expect = SCHED_ITEM_RUNNING;
            assert_true(++per_dest[d] <= limits[d]);
            if (any[d])
                assert_true(job->id > last[d]);
            last[d] = job->id;
            any[d] = true;
            assert_true(n_running < 8);
            running[n_running++] = job;
        }
        assert_true(n_running > 0);
        jobs_promote(jobs, N, now);
        check_counters(s, jobs, N);
        /* A destination with work left runs at its limit. */
        for (size_t d = 0; d < DESTS; d++)
            if (s->dests[d].runnable > 0)
                assert_int_equal(per_dest[d], limits[d]);
        /* Nothing waits for the clock any more. */
        assert_int_equal(sched_wakeup(s, now), -1);
        for (size_t k = 0; k < n_running; k++)
            expect_done(s, running[k], SCHED_OK, now, 0);
        started += n_running;
        now++;
    }
    assert_null(sched_next(s, now));
    assert_int_equal(sched_wakeup(s, now), -1);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(jobs[i].starts, 1);
    check_counters(s, jobs, N);
}

/*
 * Random due times, some jobs taken out again while waiting or runnable:
 * each destination's jobs start in (due, insertion) order, the removed ones
 * never, and the counters agree with the items at every step.
 */
static void test_heap_random(void **state)
{
    enum { N = 4000, DESTS = 4 };
    const int limits[DESTS] = {3, 1, 2, 5};
    struct test_job *jobs = fixture_jobs(state, N);
    uint64_t seq = 0;
    rng_seed(0x9e3779b97f4a7c15ull);
    struct sched *s = fixture_sched(state, DESTS, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    /* Every 50th is due at the same time as the others of its kind. */
    for (size_t i = 0; i < N; i++)
        job_delay(s, &jobs[i], rng_below(DESTS), i % 50 == 0 ? 7777 : 100 + rng_below(20000), &seq);
    /* Delayed again, a job goes behind those already due at the same time. */
    for (size_t i = 0; i < N; i += 100) {
        job_remove(s, &jobs[i]);
        jobs[i].removed = false;
        job_delay(s, &jobs[i], jobs[i].dest, 7777, &seq);
    }
    for (size_t i = 0; i < N; i++)
        if (rng_below(10) == 0)
            job_remove(s, &jobs[i]);
    check_counters(s, jobs, N);
    assert_int_equal(sched_wakeup(s, 0), retry_wakeup(jobs, N, 0));

    uint64_t now = 0;
    uint64_t last_due[DESTS] = {0}, last_seq[DESTS] = {0};
    bool any[DESTS] = {false};
    for (;;) {
        struct sched_item *it;
        while ((it = sched_next(s, now)) != NULL) {
            struct test_job *job = job_of(it);
            size_t d = job->dest;
            assert_false(job->removed);
            assert_int_equal(job->starts, 0);
            assert_true(job->due <= now);
            if (any[d])
                assert_true(job->due > last_due[d] ||
                            (job->due == last_due[d] && job->seq > last_seq[d]));
            last_due[d] = job->due;
            last_seq[d] = job->seq;
            any[d] = true;
            job->starts++;
            job->expect = SCHED_ITEM_RUNNING;
        }
        jobs_promote(jobs, N, now);
        check_counters(s, jobs, N);
        /* Some are taken out of their run queue, and a few more from the timer queue. */
        for (size_t i = 0; i < N; i++) {
            if ((jobs[i].expect == SCHED_ITEM_RUNNABLE && rng_below(25) == 0) ||
                (jobs[i].expect == SCHED_ITEM_WAITING && rng_below(400) == 0))
                job_remove(s, &jobs[i]);
        }
        check_counters(s, jobs, N);
        assert_int_equal(sched_wakeup(s, now), retry_wakeup(jobs, N, now));
        bool busy = false;
        for (size_t i = 0; i < N; i++) {
            if (jobs[i].expect == SCHED_ITEM_RUNNING && rng_below(2) == 0)
                expect_done(s, &jobs[i], SCHED_OK, now, 0);
            if (jobs[i].expect != SCHED_ITEM_IDLE)
                busy = true;
        }
        if (!busy)
            break;
        now += 1 + rng_below(50);
    }
    size_t removed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(jobs[i].starts, jobs[i].removed ? 0 : 1);
        removed += jobs[i].removed;
    }
    assert_true(removed > N / 10);
    assert_int_equal(sched_wakeup(s, now), -1);
    check_counters(s, jobs, N);
}

/*
 * A destination at its limit is passed over: ten thousand runnable jobs for
 * a destination that runs one at a time hold up nothing of another's.
 */
static void test_no_head_of_line_blocking(void **state)
{
    enum { N = 10000 };
    const int limits[2] = {1, 1};
    struct test_job *jobs = fixture_jobs(state, N + 1);
    uint64_t seq = 0;
    struct sched *s = fixture_sched(state, 2, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t i = 0; i < N; i++)
        job_push(s, &jobs[i], 0);
    struct test_job *first = expect_next(s, 0, 0);
    assert_int_equal(first->id, 0);
    assert_null(sched_next(s, 0));
    assert_int_equal(s->dests[0].runnable, N - 1);

    job_push(s, &jobs[N], 1);
    struct test_job *other = expect_next(s, 0, 1);
    assert_int_equal(other->id, N);
    assert_null(sched_next(s, 0));

    /* Nor a job of the other destination that waited for a retry. */
    expect_done(s, other, SCHED_DEST_FAILURE, 0, 0);
    job_delay(s, other, 1, 10, &seq);
    assert_null(sched_next(s, 9));
    assert_int_equal(sched_wakeup(s, 9), 1);
    assert_ptr_equal(expect_next(s, 10, 1), other);
    assert_null(sched_next(s, 10));
    check_counters(s, jobs, N + 1);

    expect_done(s, first, SCHED_OK, 10, 0);
    assert_int_equal(expect_next(s, 10, 0)->id, 1);
    assert_null(sched_next(s, 10));
}

/* Destinations take turns, each in first-in first-out order. */
static void test_round_robin(void **state)
{
    const int limits[3] = {100, 100, 100};
    const size_t counts[3] = {10, 3, 10};
    /* Three rounds of all three, then the two with jobs left alternate. */
    const size_t order[23] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2};
    struct test_job *jobs = fixture_jobs(state, 23);
    size_t n = 0;
    struct sched *s = fixture_sched(state, 3, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t d = 0; d < 3; d++)
        for (size_t k = 0; k < counts[d]; k++)
            job_push(s, &jobs[n++], d);
    size_t last[3] = {0};
    bool any[3] = {false};
    for (size_t k = 0; k < 23; k++) {
        struct test_job *job = expect_next(s, 0, order[k]);
        if (any[job->dest])
            assert_true(job->id > last[job->dest]);
        last[job->dest] = job->id;
        any[job->dest] = true;
    }
    assert_null(sched_next(s, 0));
    check_counters(s, jobs, 23);
}

/*
 * Three failures in a row open the circuit; the other destination carries
 * on; after circuit_open_ms one probe goes at a time: a failed probe opens it
 * again, a probe failing for another reason lets the next go at once, and a
 * probe that works closes it.
 */
static void test_circuit_open_probe_close(void **state)
{
    enum { N = 20 };
    const int limits[2] = {2, 1};
    struct test_job *jobs = fixture_jobs(state, N);
    struct sched *s = fixture_sched(state, 2, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    /* Jobs 0-9 for destination 0, 10-19 for destination 1. */
    for (size_t i = 0; i < N; i++)
        job_push(s, &jobs[i], i / 10);
    uint64_t now = 1000;
    /* Destination 1 keeps one job running, so that every sched_next() below
     * may only start one of destination 0's, or nothing. */
    struct test_job *job = expect_next(s, now, 0);
    struct test_job *held = expect_next(s, now, 1);
    expect_done(s, job, SCHED_DEST_FAILURE, now, 0);
    assert_false(sched_circuit_open(s, 0, now));
    expect_done(s, expect_next(s, now, 0), SCHED_DEST_FAILURE, now, 0);
    assert_false(sched_circuit_open(s, 0, now));
    job = expect_next(s, now, 0);
    assert_int_equal(job->id, 2);
    expect_done(s, job, SCHED_DEST_FAILURE, now, SCHED_OPENED);
    assert_true(sched_circuit_open(s, 0, now));
    assert_false(sched_circuit_open(s, 1, now));
    assert_int_equal(s->dests[0].opened, 1);
    assert_null(sched_next(s, now));
    assert_int_equal(sched_wakeup(s, now), CIRCUIT_OPEN_MS);

    /* The other destination carries on while the circuit is open. */
    now = 20000;
    assert_null(sched_next(s, now));
    assert_int_equal(sched_wakeup(s, now), 11000);
    expect_done(s, held, SCHED_OK, now, 0);
    held = expect_next(s, now, 1);
    assert_null(sched_next(s, now));
    now = 30999;
    assert_null(sched_next(s, now));
    assert_true(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), 1);

    /* Half-open: one probe, though the limit is two. */
    now = 31000;
    assert_false(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), 0);
    job = expect_next(s, now, 0);
    assert_int_equal(job->id, 3);
    assert_true(sched_circuit_open(s, 0, now));
    assert_null(sched_next(s, now));
    assert_int_equal(sched_wakeup(s, now), -1);

    /* A failed probe opens it for another circuit_open_ms. */
    now = 32000;
    expect_done(s, job, SCHED_DEST_FAILURE, now, SCHED_OPENED);
    assert_int_equal(s->dests[0].opened, 2);
    assert_true(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), CIRCUIT_OPEN_MS);
    assert_null(sched_next(s, 61999));
    assert_true(sched_circuit_open(s, 0, 61999));
    now = 62000;
    job = expect_next(s, now, 0);
    assert_int_equal(job->id, 4);
    assert_null(sched_next(s, now));

    /* A probe that failed for someone else's reason lets the next go at once. */
    now = 62500;
    expect_done(s, job, SCHED_NEUTRAL, now, 0);
    assert_int_equal(s->dests[0].opened, 2);
    assert_false(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), 0);
    job = expect_next(s, now, 0);
    assert_int_equal(job->id, 5);
    assert_true(sched_circuit_open(s, 0, now));
    assert_null(sched_next(s, now));

    /* A probe that works closes it, and the queue drains at the full limit. */
    now = 63000;
    expect_done(s, job, SCHED_OK, now, SCHED_CLOSED);
    assert_false(sched_circuit_open(s, 0, now));
    assert_int_equal(sched_wakeup(s, now), -1);
    for (size_t id = 6; id < 10; id += 2) {
        struct test_job *a = expect_next(s, now, 0);
        struct test_job *b = expect_next(s, now, 0);
        assert_int_equal(a->id, id);
        assert_int_equal(b->id, id + 1);
        assert_null(sched_next(s, now));
        expect_done(s, a, SCHED_OK, now, 0);
        expect_done(s, b, SCHED_OK, now, 0);
    }
    expect_done(s, held, SCHED_OK, now, 0);
    struct sched_item *it;
    while ((it = sched_next(s, now)) != NULL) {
        job = job_of(it);
        job->starts++;
        job->expect = SCHED_ITEM_RUNNING;
        assert_int_equal(job->dest, 1);
        expect_done(s, job, SCHED_OK, now, 0);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(jobs[i].starts, 1);
    assert_int_equal(s->dests[0].opened, 2);
    check_counters(s, jobs, N);
}

/* One attempt of `job` on its own destination, started at once; sched_done()'s flags. */
static int run_once(struct sched *s, struct test_job *job, enum sched_outcome outcome, uint64_t now)
{
    job_push(s, job, 0);
    assert_ptr_equal(expect_next(s, now, 0), job);
    int flags = sched_done(s, &job->item, outcome, now);
    job->expect = SCHED_ITEM_IDLE;
    return flags;
}

/* Faults that are not the destination's never open its circuit. */
static void test_circuit_neutral_never_opens(void **state)
{
    struct test_job job = {0};
    struct sched *s = fixture_sched(state, 1, NULL, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (uint64_t now = 0; now < 1000; now++) {
        assert_int_equal(run_once(s, &job, SCHED_NEUTRAL, now), 0);
        assert_false(sched_circuit_open(s, 0, now));
    }
    /* Nor after two real failures. */
    assert_int_equal(run_once(s, &job, SCHED_DEST_FAILURE, 1000), 0);
    assert_int_equal(run_once(s, &job, SCHED_DEST_FAILURE, 1000), 0);
    for (uint64_t now = 1000; now < 2000; now++) {
        assert_int_equal(run_once(s, &job, SCHED_NEUTRAL, now), 0);
        assert_false(sched_circuit_open(s, 0, now));
    }
    assert_int_equal(s->dests[0].opened, 0);
    assert_int_equal(sched_wakeup(s, 2000), -1);
}

/* A success in between starts the count of failures again. */
static void test_circuit_ok_resets(void **state)
{
    struct test_job job = {0};
    struct sched *s = fixture_sched(state, 1, NULL, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    const enum sched_outcome outcomes[] = {SCHED_DEST_FAILURE, SCHED_DEST_FAILURE, SCHED_OK,
                                           SCHED_DEST_FAILURE, SCHED_DEST_FAILURE};
    for (size_t k = 0; k < sizeof(outcomes) / sizeof(outcomes[0]); k++) {
        assert_int_equal(run_once(s, &job, outcomes[k], 100), 0);
        assert_false(sched_circuit_open(s, 0, 100));
    }
    /* The third in a row does. */
    assert_int_equal(run_once(s, &job, SCHED_DEST_FAILURE, 100), SCHED_OPENED);
    assert_true(sched_circuit_open(s, 0, 100));
    assert_int_equal(s->dests[0].opened, 1);
    /* With no job for it, the circuit waits for nothing; a retry does. */
    assert_int_equal(sched_wakeup(s, 100), -1);
    uint64_t seq = 0;
    job_delay(s, &job, 0, 100 + 40000, &seq);
    assert_int_equal(sched_wakeup(s, 100), 40000);
    assert_null(sched_next(s, 100 + CIRCUIT_OPEN_MS));
    assert_ptr_equal(expect_next(s, 100 + 40000, 0), &job);
}

/*
 * A job that started before the circuit opened may end while the probe is
 * out; the circuit is still half-open with its one probe running, so a
 * second probe must not go.
 */
static void test_circuit_one_probe_with_older_job(void **state)
{
    enum { N = 10 };
    const int limits[1] = {2};
    struct test_job *jobs = fixture_jobs(state, N);
    struct sched *s = fixture_sched(state, 1, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t i = 0; i < N; i++)
        job_push(s, &jobs[i], 0);
    uint64_t now = 1000;
    struct test_job *a = expect_next(s, now, 0);
    struct test_job *older = expect_next(s, now, 0);
    expect_done(s, a, SCHED_DEST_FAILURE, now, 0);
    expect_done(s, expect_next(s, now, 0), SCHED_DEST_FAILURE, now, 0);
    expect_done(s, expect_next(s, now, 0), SCHED_DEST_FAILURE, now, SCHED_OPENED);

    now += CIRCUIT_OPEN_MS;
    struct test_job *probe = expect_next(s, now, 0);
    assert_null(sched_next(s, now));
    /* The older job ends with a source fault: that says nothing of the
     * destination, and the probe is still out. */
    expect_done(s, older, SCHED_NEUTRAL, now, 0);
    assert_true(sched_circuit_open(s, 0, now));
    assert_null(sched_next(s, now));
    expect_done(s, probe, SCHED_OK, now, SCHED_CLOSED);
    check_counters(s, jobs, N);
}

/*
 * Retries with backoff while circuits open and half-open: every job ends
 * exactly once, at most one probe per destination is out, no runnable job
 * waits behind a destination that could take it, and sched_wakeup() is the
 * earlier of the next retry due and the next probe (of a destination with
 * runnable jobs), as the test works it out from sched_done()'s flags alone.
 */
enum { SIM_DESTS = 3, SIM_JOBS = 600 };
#define SIM_OPEN_MS 5000

struct sim {
    struct sched *s;
    struct test_job *jobs;
    int limits[SIM_DESTS];
    bool open[SIM_DESTS];
    uint64_t open_until[SIM_DESTS];
    int probes[SIM_DESTS]; /* probes running */
    int running[SIM_DESTS];
    unsigned opened[SIM_DESTS], closed[SIM_DESTS];
    unsigned probe_outcomes[3];
    uint64_t seq;
    size_t complete;
};

/*
 * Destination 0 works but for a few source faults; destination 1 fails
 * throughout [10 s, 40 s); destination 2 fails or meets source faults
 * throughout [20 s, 35 s).
 */
static enum sched_outcome sim_outcome(size_t dest, uint64_t now)
{
    if (dest == 1 && now >= 10000 && now < 40000)
        return SCHED_DEST_FAILURE;
    if (dest == 2 && now >= 20000 && now < 35000)
        return rng_below(10) < 7 ? SCHED_DEST_FAILURE : SCHED_NEUTRAL;
    return rng_below(10) == 0 ? SCHED_NEUTRAL : SCHED_OK;
}

static void sim_finish(struct sim *m, struct test_job *job, uint64_t now)
{
    size_t d = job->dest;
    enum sched_outcome outcome = sim_outcome(d, now);
    int flags = sched_done(m->s, &job->item, outcome, now);
    assert_int_equal(job->item.state, SCHED_ITEM_IDLE);
    job->expect = SCHED_ITEM_IDLE;
    m->running[d]--;
    if (job->probe) {
        m->probes[d]--;
        m->probe_outcomes[outcome]++;
        job->probe = false;
    }
    if (flags == SCHED_OPENED) {
        assert_int_equal(outcome, SCHED_DEST_FAILURE);
        m->open[d] = true;
        m->open_until[d] = now + SIM_OPEN_MS;
        m->opened[d]++;
    } else if (flags == SCHED_CLOSED) {
        assert_int_equal(outcome, SCHED_OK);
        assert_true(m->open[d]);
        m->open[d] = false;
        m->closed[d]++;
    } else {
        assert_int_equal(flags, 0);
    }
    if (outcome == SCHED_OK) {
        assert_false(job->complete);
        job->complete = true;
        m->complete++;
        return;
    }
    unsigned shift = job->starts < 7 ? job->starts : 7;
    uint64_t backoff = (100u << shift) + rng_below(100);
    job_delay(m->s, job, d, now + (backoff < 8000 ? backoff : 8000), &m->seq);
}

/* The wakeup the test expects from its own account. */
static int64_t sim_wakeup(const struct sim *m, uint64_t now)
{
    bool any = false;
    uint64_t due = 0;
    size_t runnable[SIM_DESTS] = {0};
    for (size_t i = 0; i < SIM_JOBS; i++) {
        const struct test_job *job = &m->jobs[i];
        if (job->expect == SCHED_ITEM_RUNNABLE)
            runnable[job->dest]++;
        if (job->expect != SCHED_ITEM_WAITING)
            continue;
        if (!any || job->due < due)
            due = job->due;
        any = true;
    }
    for (size_t d = 0; d < SIM_DESTS; d++) {
        if (!m->open[d] || m->probes[d] > 0 || runnable[d] == 0)
            continue;
        if (!any || m->open_until[d] < due)
            due = m->open_until[d];
        any = true;
    }
    if (!any)
        return -1;
    return due > now ? (int64_t)(due - now) : 0;
}

static void test_retries_with_circuits(void **state)
{
    struct sim m = {.limits = {2, 3, 1}};
    m.jobs = fixture_jobs(state, SIM_JOBS);
    rng_seed(0xfe77a11ull);
    m.s = fixture_sched(state, SIM_DESTS, m.limits, CIRCUIT_FAILURES, SIM_OPEN_MS);
    /* Half the jobs are there from the start, the others arrive over a minute. */
    for (size_t i = 0; i < SIM_JOBS; i++) {
        if (i % 2 == 0)
            job_push(m.s, &m.jobs[i], i % SIM_DESTS);
        else
            job_delay(m.s, &m.jobs[i], i % SIM_DESTS, rng_below(60000), &m.seq);
    }

    uint64_t now = 0;
    for (unsigned steps = 0;; steps++) {
        assert_true(steps < 1000000);
        for (size_t i = 0; i < SIM_JOBS; i++)
            if (m.jobs[i].expect == SCHED_ITEM_RUNNING && m.jobs[i].finish <= now)
                sim_finish(&m, &m.jobs[i], now);
        struct sched_item *it;
        while ((it = sched_next(m.s, now)) != NULL) {
            struct test_job *job = job_of(it);
            size_t d = job->dest;
            assert_false(job->complete);
            assert_true(job->expect == SCHED_ITEM_RUNNABLE ||
                        (job->expect == SCHED_ITEM_WAITING && job->due <= now));
            if (m.open[d]) {
                assert_true(now >= m.open_until[d]);
                assert_int_equal(m.probes[d], 0);
                m.probes[d]++;
                job->probe = true;
            }
            assert_true(++m.running[d] <= m.limits[d]);
            job->expect = SCHED_ITEM_RUNNING;
            job->starts++;
            job->finish = now + 1 + rng_below(50);
        }
        jobs_promote(m.jobs, SIM_JOBS, now);
        check_counters(m.s, m.jobs, SIM_JOBS);
        /* What is left runnable waits for a limit or a circuit, nothing else. */
        for (size_t d = 0; d < SIM_DESTS; d++) {
            if (m.s->dests[d].runnable == 0)
                continue;
            assert_true(m.running[d] == m.limits[d] ||
                        (m.open[d] && (m.probes[d] > 0 || now < m.open_until[d])));
        }
        for (size_t d = 0; d < SIM_DESTS; d++)
            assert_int_equal(sched_circuit_open(m.s, d, now),
                             m.open[d] && (m.probes[d] > 0 || now < m.open_until[d]));
        int64_t wakeup = sched_wakeup(m.s, now);
        assert_int_equal(wakeup, sim_wakeup(&m, now));
        /* Nothing could start, so a wakeup of 0 would spin the owner's timer. */
        assert_true(wakeup != 0);
        if (m.complete == SIM_JOBS)
            break;
        bool any = wakeup > 0;
        uint64_t next = any ? now + (uint64_t)wakeup : 0;
        for (size_t i = 0; i < SIM_JOBS; i++) {
            if (m.jobs[i].expect != SCHED_ITEM_RUNNING)
                continue;
            if (!any || m.jobs[i].finish < next)
                next = m.jobs[i].finish;
            any = true;
        }
        if (!any)
            fail_msg("stuck at now=%llu with %zu of %d jobs complete", (unsigned long long)now,
                     m.complete, SIM_JOBS);
        assert_true(next > now);
        now = next;
    }
    for (size_t i = 0; i < SIM_JOBS; i++) {
        assert_true(m.jobs[i].complete);
        assert_int_equal(m.jobs[i].expect, SCHED_ITEM_IDLE);
    }
    assert_int_equal(sched_wakeup(m.s, now), -1);
    assert_null(sched_next(m.s, now));
    /* The run went through what it was meant to. */
    assert_true(m.opened[1] >= 2 && m.closed[1] >= 1);
    assert_true(m.opened[2] >= 1 && m.closed[2] >= 1);
    assert_true(m.probe_outcomes[SCHED_DEST_FAILURE] >= 2);
    assert_true(m.probe_outcomes[SCHED_OK] >= 2);
}

/*
 * Shutting down in the middle: sched_take_any() hands back every runnable
 * and waiting job once, leaves the running ones alone, and they may still
 * end afterwards.
 */
static void test_shutdown_take_any(void **state)
{
    enum { N = 40, DESTS = 3 };
    const int limits[DESTS] = {2, 1, 3};
    struct test_job *jobs = fixture_jobs(state, N);
    uint64_t seq = 0;
    uint64_t now = 100;
    struct sched *s = fixture_sched(state, DESTS, limits, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t i = 0; i < 15; i++)
        job_push(s, &jobs[i], i % DESTS);
    size_t running = 0;
    struct sched_item *it;
    while ((it = sched_next(s, now)) != NULL) {
        job_of(it)->expect = SCHED_ITEM_RUNNING;
        running++;
    }
    assert_int_equal(running, 2 + 1 + 3);
    /* Waiting for later, and due already but not yet in a run queue. */
    for (size_t i = 15; i < 30; i++)
        job_delay(s, &jobs[i], i % DESTS, 100000 + i, &seq);
    for (size_t i = 30; i < 35; i++)
        job_delay(s, &jobs[i], i % DESTS, 50, &seq);
    /* Queued and taken out again: not the scheduler's any more. */
    for (size_t i = 35; i < N; i++) {
        job_push(s, &jobs[i], i % DESTS);
        job_remove(s, &jobs[i]);
    }
    check_counters(s, jobs, N);

    size_t taken = 0;
    while ((it = sched_take_any(s)) != NULL) {
        struct test_job *job = job_of(it);
        assert_int_equal(it->state, SCHED_ITEM_IDLE);
        assert_true(job->expect == SCHED_ITEM_RUNNABLE || job->expect == SCHED_ITEM_WAITING);
        assert_int_equal(job->taken, 0);
        job->taken++;
        job->expect = SCHED_ITEM_IDLE;
        taken++;
    }
    assert_int_equal(taken, (15 - running) + 15 + 5);
    assert_null(sched_take_any(s));
    check_counters(s, jobs, N);
    assert_int_equal(sched_wakeup(s, now), -1);
    assert_null(sched_next(s, 200000));

    for (size_t i = 0; i < N; i++) {
        if (jobs[i].expect != SCHED_ITEM_RUNNING)
            continue;
        assert_int_equal(jobs[i].taken, 0);
        expect_done(s, &jobs[i], i % 2 ? SCHED_OK : SCHED_NEUTRAL, now, 0);
    }
    check_counters(s, jobs, N);
    assert_null(sched_next(s, now));
}

/* The teardown's sched_free(), with jobs still queued, waiting and running, frees all it holds. */
static void test_free_busy(void **state)
{
    enum { N = 300 };
    struct test_job *jobs = fixture_jobs(state, N);
    uint64_t seq = 0;
    struct sched *s = fixture_sched(state, 2, NULL, CIRCUIT_FAILURES, CIRCUIT_OPEN_MS);
    for (size_t i = 0; i < N; i++) {
        if (i % 3 == 0)
            job_push(s, &jobs[i], i % 2);
        else
            job_delay(s, &jobs[i], i % 2, 10 * i, &seq);
    }
    assert_non_null(sched_next(s, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(test_same_due),
        FIXTURE_TEST(test_heap_random),
        FIXTURE_TEST(test_no_head_of_line_blocking),
        FIXTURE_TEST(test_round_robin),
        FIXTURE_TEST(test_circuit_open_probe_close),
        FIXTURE_TEST(test_circuit_neutral_never_opens),
        FIXTURE_TEST(test_circuit_ok_resets),
        FIXTURE_TEST(test_circuit_one_probe_with_older_job),
        FIXTURE_TEST(test_retries_with_circuits),
        FIXTURE_TEST(test_shutdown_take_any),
        FIXTURE_TEST(test_free_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
