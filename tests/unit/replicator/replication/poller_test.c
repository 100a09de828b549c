/*
 * Unit tests for replicator/replication/poller_diff.c: what the poller
 * journals, decided from a listing (with the source's digest of each tag)
 * against the journal's tag state, and from the source's answer for a tag
 * the listing left out; and what the source's request budget lets through
 * (the cost of a change, the reserve, what may be spent). No registry, no
 * journal, no loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "unit.h"

#include "common/errors.h"
#include "common/xalloc.h"
#include "replication/poller_int.h"

#define A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

#define MEDIA       "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_LIST  "application/vnd.docker.distribution.manifest.list.v2+json"

static void expect_change(const struct poller_diff *d, size_t i, enum poller_change change,
                          const char *tag, const char *digest)
{
    assert_true(i < d->n_changes);
    assert_int_equal(d->changes[i].change, change);
    assert_string_equal(d->changes[i].tag, tag);
    assert_string_equal(d->changes[i].digest, digest);
}

/* Nothing known: every listed tag with a digest is new, in listing order, with its media type. */
static void test_listing_all_new(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {
        {.tag = "v2", .digest = B, .media_type = MEDIA},
        {.tag = "v1", .digest = A, .media_type = NULL},
    };
    struct poller_diff d;
    poller_diff_listing(listed, 2, NULL, 0, &d);
    assert_int_equal(d.n_changes, 2);
    expect_change(&d, 0, POLLER_NEW, "v2", B);
    assert_string_equal(d.changes[0].media_type, MEDIA);
    expect_change(&d, 1, POLLER_NEW, "v1", A);
    assert_null(d.changes[1].media_type);
    assert_int_equal(d.n_unlisted, 0);
    poller_diff_release(&d);
}

/* Known and the same: nothing; known and another digest: moved; unknown: new. */
static void test_listing_same_moved_new(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {
        {.tag = "same", .digest = A},
        {.tag = "moved", .digest = C},
        {.tag = "new", .digest = B},
    };
    const struct poller_tag known[] = {
        {.tag = "moved", .digest = B},
        {.tag = "same", .digest = A},
    };
    struct poller_diff d;
    poller_diff_listing(listed, 3, known, 2, &d);
    assert_int_equal(d.n_changes, 2);
    expect_change(&d, 0, POLLER_MOVED, "moved", C);
    expect_change(&d, 1, POLLER_NEW, "new", B);
    assert_int_equal(d.n_unlisted, 0);
    poller_diff_release(&d);
}

/* A listed tag the source gave no digest for (404, a failure) is left alone, known or not. */
static void test_listing_no_digest_left_alone(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {
        {.tag = "flaky", .digest = NULL},
        {.tag = "lagging", .digest = NULL},
    };
    const struct poller_tag known[] = {{.tag = "flaky", .digest = A}};
    struct poller_diff d;
    poller_diff_listing(listed, 2, known, 1, &d);
    assert_int_equal(d.n_changes, 0);
    /* Listed, so not a candidate for deletion either. */
    assert_int_equal(d.n_unlisted, 0);
    poller_diff_release(&d);
}

/* Known tags the listing no longer names are only unlisted (to be asked), in known order, once. */
static void test_listing_unlisted(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {{.tag = "kept", .digest = A}};
    const struct poller_tag known[] = {
        {.tag = "zeta", .digest = B},
        {.tag = "kept", .digest = A},
        {.tag = "alpha", .digest = C},
        {.tag = "zeta", .digest = B}, /* the journal read twice: the first counts */
    };
    struct poller_diff d;
    poller_diff_listing(listed, 1, known, 4, &d);
    assert_int_equal(d.n_changes, 0);
    assert_int_equal(d.n_unlisted, 2);
    assert_ptr_equal(d.unlisted[0], &known[0]);
    assert_ptr_equal(d.unlisted[1], &known[2]);
    poller_diff_release(&d);
    assert_null(d.changes);
    assert_null(d.unlisted);
}

/* A repeated known tag: the first entry is the one compared with. */
static void test_listing_repeated_known_first_counts(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {{.tag = "v1", .digest = A}};
    const struct poller_tag known[] = {
        {.tag = "v1", .digest = A},
        {.tag = "v1", .digest = B},
    };
    struct poller_diff d;
    poller_diff_listing(listed, 1, known, 2, &d);
    assert_int_equal(d.n_changes, 0);
    assert_int_equal(d.n_unlisted, 0);
    poller_diff_release(&d);
}

/* Many tags: every one is found however the inputs are ordered. */
static void test_listing_many(void **state)
{
    (void)state;
    enum { N = 500 };
    struct poller_tag *listed = xcalloc(N, sizeof(*listed));
    struct poller_tag *known = xcalloc(N, sizeof(*known));
    char **names = xcalloc(N, sizeof(*names));
    for (size_t i = 0; i < N; i++) {
        names[i] = xasprintf("t%03zu", i);
        /* Listed in one order, known in the reverse one; every third moved. */
        listed[i] = (struct poller_tag){.tag = names[i], .digest = i % 3 == 0 ? B : A};
        known[N - 1 - i] = (struct poller_tag){.tag = names[i], .digest = A};
    }
    struct poller_diff d;
    poller_diff_listing(listed, N - 1, known, N, &d); /* the last name is unlisted */
    assert_int_equal(d.n_changes, (N - 1 + 2) / 3);
    for (size_t i = 0; i < d.n_changes; i++)
        expect_change(&d, i, POLLER_MOVED, names[3 * i], B);
    assert_int_equal(d.n_unlisted, 1);
    assert_string_equal(d.unlisted[0]->tag, names[N - 1]);
    poller_diff_release(&d);
    for (size_t i = 0; i < N; i++)
        free(names[i]);
    free(names);
    free(listed);
    free(known);
}

/* An unlisted tag: 404 deletes it (with the journal's digest); another digest moves it. */
static void test_unlisted_answers(void **state)
{
    (void)state;
    const struct poller_tag known = {.tag = "old", .digest = A};
    struct poller_verdict v;

    assert_true(poller_diff_unlisted(&known, FERRY_ENOTFOUND, NULL, NULL, &v));
    assert_int_equal(v.change, POLLER_DELETED);
    assert_string_equal(v.tag, "old");
    assert_string_equal(v.digest, A);
    assert_null(v.media_type);

    assert_true(poller_diff_unlisted(&known, 0, B, MEDIA, &v));
    assert_int_equal(v.change, POLLER_MOVED);
    assert_string_equal(v.digest, B);
    assert_string_equal(v.media_type, MEDIA);

    /* The same digest (the listing lagged): nothing. */
    assert_false(poller_diff_unlisted(&known, 0, A, MEDIA, &v));
    /* The source failed: never a delete. */
    assert_false(poller_diff_unlisted(&known, FERRY_ECONNECT, NULL, NULL, &v));
    assert_false(poller_diff_unlisted(&known, FERRY_ETIMEOUT, NULL, NULL, &v));
}

/* A change carries the size the source answered for its tag (the budget guesses an index by it). */
static void test_listing_carries_size(void **state)
{
    (void)state;
    const struct poller_tag listed[] = {
        {.tag = "v1", .digest = A, .media_type = MEDIA_INDEX, .size = 1234}};
    struct poller_diff d;
    poller_diff_listing(listed, 1, NULL, 0, &d);
    assert_int_equal(d.n_changes, 1);
    assert_int_equal(d.changes[0].size, 1234);
    poller_diff_release(&d);
}

/*
 * What a change costs the copy in pulls: nothing for a delete; an image its
 * manifest and referrers look; an index that for itself and each child
 * guessed from its size (at least one).
 */
static void test_change_cost(void **state)
{
    (void)state;
    struct poller_verdict v = {.change = POLLER_NEW, .tag = "v1", .digest = A, .media_type = MEDIA};
    assert_int_equal(poller_change_cost(&v), 2);
    v.media_type = NULL;
    assert_int_equal(poller_change_cost(&v), 2);
    v.change = POLLER_MOVED;
    v.media_type = "application/vnd.docker.distribution.manifest.v2+json";
    assert_int_equal(poller_change_cost(&v), 2);
    v.change = POLLER_DELETED;
    assert_int_equal(poller_change_cost(&v), 0);

    v.change = POLLER_NEW;
    v.media_type = MEDIA_INDEX;
    v.size = 0; /* unknown: one child */
    assert_int_equal(poller_change_cost(&v), 4);
    v.size = 256;
    assert_int_equal(poller_change_cost(&v), 4);
    v.size = 257;
    assert_int_equal(poller_change_cost(&v), 6);
    v.media_type = MEDIA_LIST;
    v.size = 1024; /* four children */
    assert_int_equal(poller_change_cost(&v), 10);
    /* A size past any manifest's is capped, not overflowed. */
    v.size = UINT64_MAX;
    assert_true(poller_change_cost(&v) <= 2 * (1 + (4 * 1024 * 1024) / 256));
}

/* The reserve: a tenth of the limit, at least one; of what remains when no limit was said. */
static void test_budget_reserve(void **state)
{
    (void)state;
    assert_int_equal(poller_budget_reserve(100, 76), 10);
    assert_int_equal(poller_budget_reserve(30, 30), 3);
    assert_int_equal(poller_budget_reserve(5, 5), 1);
    assert_int_equal(poller_budget_reserve(0, 0), 1);
    assert_int_equal(poller_budget_reserve(-1, 200), 20);
    assert_int_equal(poller_budget_reserve(-1, 3), 1);
}

/* What may be spent: remaining less the reserve and the pending charges; -1 without a budget. */
static void test_budget_spendable(void **state)
{
    (void)state;
    assert_int_equal(poller_budget_spendable(-1, -1, 0), -1);
    assert_int_equal(poller_budget_spendable(100, -1, 50), -1);
    assert_int_equal(poller_budget_spendable(100, 100, 0), 90);
    assert_int_equal(poller_budget_spendable(100, 100, 40), 50);
    assert_int_equal(poller_budget_spendable(30, 30, 0), 27);
    assert_int_equal(poller_budget_spendable(30, 3, 0), 0);
    assert_int_equal(poller_budget_spendable(30, 2, 0), 0);
    assert_int_equal(poller_budget_spendable(30, 20, 30), 0);
    assert_int_equal(poller_budget_spendable(30, 0, 0), 0);
}

/*
 * Admission: a change fits when its cost is at most what may be spent;
 * the whole budget stays above the reserve however many fit one after the
 * other; a change dearer than the whole budget waits for a full one.
 */
static void test_budget_admits(void **state)
{
    (void)state;
    /* No budget announced: everything. */
    assert_true(poller_budget_admits(-1, -1, 1000, 1000));
    /* Limit 30: 27 above the reserve; images at 2 each: 13 fit, the 14th does not. */
    uint64_t pending = 0;
    int admitted = 0;
    for (int i = 0; i < 40; i++) {
        if (poller_budget_admits(30, 30, pending, 2)) {
            pending += 2;
            admitted++;
        }
    }
    assert_int_equal(admitted, 13);
    assert_true(30 - (int64_t)pending >= 3);
    /* Once the copies spent it, the registry says so, and nothing is pending any more. */
    assert_false(poller_budget_admits(30, 4, 0, 2));
    assert_true(poller_budget_admits(30, 5, 0, 2));
    /* An index dearer than the whole budget (40 > 27): not while anything is pending or
     * the budget is not full; then alone. */
    assert_false(poller_budget_admits(30, 30, 2, 40));
    assert_false(poller_budget_admits(30, 29, 0, 40));
    assert_true(poller_budget_admits(30, 30, 0, 40));
    /* A limit of nothing admits nothing. */
    assert_false(poller_budget_admits(0, 0, 0, 2));
    /* Deletes cost nothing: always. */
    assert_true(poller_budget_admits(30, 0, 100, 0));
}

/*
 * The reconcile sweep of a webhooks source: over one interval, in rounds of
 * any spacing, every repository is due exactly once; the sweeps are spread
 * (no round of 100 takes more than three times its share of 2000
 * repositories); a round that covers a whole interval or more (a long
 * stop) sweeps everything; an empty or backwards span sweeps nothing.
 */
static void test_reconcile_due(void **state)
{
    (void)state;
    const uint64_t interval = 6ull * 3600 * 1000;
    const uint64_t start = 1795000000000ull; /* a wall clock in 2026 */
    const int repos = 2000, rounds = 100;
    int *hits = xcalloc(repos, sizeof(*hits));
    int busiest = 0;
    char name[32];
    for (int k = 0; k < rounds; k++) {
        /* Rounds of uneven length that end exactly one interval later. */
        uint64_t from = start + interval * (uint64_t)k / rounds;
        uint64_t to = start + interval * (uint64_t)(k + 1) / rounds;
        int in_round = 0;
        for (int r = 0; r < repos; r++) {
            snprintf(name, sizeof(name), "team/app-%d", r);
            if (poller_reconcile_due("src", name, from, to, interval)) {
                hits[r]++;
                in_round++;
            }
        }
        if (in_round > busiest)
            busiest = in_round;
    }
    for (int r = 0; r < repos; r++)
        assert_int_equal(hits[r], 1);
    assert_true(busiest <= 3 * repos / rounds);
    free(hits);

    assert_true(poller_reconcile_due("src", "a", start, start + interval, interval));
    assert_true(poller_reconcile_due("src", "a", start, start + 3 * interval, interval));
    assert_false(poller_reconcile_due("src", "a", start, start, interval));
    assert_false(poller_reconcile_due("src", "a", start + 5, start, interval));
    assert_false(poller_reconcile_due("src", "a", start, start + interval, 0));
    /* Another source's repository of the same name has its own point. */
    int differ = 0;
    for (int r = 0; r < 50; r++) {
        snprintf(name, sizeof(name), "app-%d", r);
        for (int k = 0; k < rounds; k++) {
            uint64_t from = start + interval * (uint64_t)k / rounds;
            uint64_t to = start + interval * (uint64_t)(k + 1) / rounds;
            if (poller_reconcile_due("one", name, from, to, interval) !=
                poller_reconcile_due("two", name, from, to, interval))
                differ++;
        }
    }
    assert_true(differ > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_all_new),
        cmocka_unit_test(test_listing_same_moved_new),
        cmocka_unit_test(test_listing_no_digest_left_alone),
        cmocka_unit_test(test_listing_unlisted),
        cmocka_unit_test(test_listing_repeated_known_first_counts),
        cmocka_unit_test(test_listing_many),
        cmocka_unit_test(test_unlisted_answers),
        cmocka_unit_test(test_listing_carries_size),
        cmocka_unit_test(test_change_cost),
        cmocka_unit_test(test_budget_reserve),
        cmocka_unit_test(test_budget_spendable),
        cmocka_unit_test(test_budget_admits),
        cmocka_unit_test(test_reconcile_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
