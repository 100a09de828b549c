/*
 * Unit tests for journal/committer: group commit of journal appends on a
 * libuv loop. Every test runs its own loop, which must close cleanly, on a
 * journal in its own directory under one mkdtemp() root.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include <cmocka.h>

#include "unit.h"
#include "journal/committer.h"
#include "common/errors.h"
#include "journal/journal.h"
#include "common/log.h"
#include "common/xalloc.h"

#define DIGEST          "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MAX_SUBMISSIONS 64
#define MAX_EVENTS      4

static char test_root[] = "/tmp/ferry-committer-test-XXXXXX";
static int test_dir_seq;

/* What a test expects and what the callbacks saw. */
struct fixture {
    uv_loop_t loop;
    char *dir;
    struct journal *journal;
    struct journal_committer *committer;
    /* Per submission: its events' ids and what its callback reported. */
    struct submission {
        struct fixture *f;
        size_t index;
        size_t n;
        char ids[MAX_EVENTS][32];
        int calls;
        int rc;
        uint64_t seqs[MAX_EVENTS];
        size_t order; /* position among the callbacks that fired */
    } subs[MAX_SUBMISSIONS];
    size_t n_subs;
    size_t fired;
    /* The tail, in the order it was fed. */
    uint64_t tail_seqs[MAX_SUBMISSIONS * MAX_EVENTS];
    char *tail_ids[MAX_SUBMISSIONS * MAX_EVENTS];
    size_t n_tail;
    int closed;
    size_t fired_at_close;
    /* A hook for one submission's callback: run `hook` when it fires. */
    size_t hook_index;
    void (*hook)(struct fixture *f);
};

static struct journal *open_journal(const char *dir, bool read_only)
{
    struct journal_options opts = {.read_only = read_only};
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(dir, &opts, &j, &err);
    if (rc != 0)
        fail_msg("journal_open(%s) = %d: %s", dir, rc, err != NULL ? err : "(no message)");
    return j;
}

static struct fixture *fixture_new(bool read_only)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->dir = xasprintf("%s/db%d", test_root, test_dir_seq++);
    if (read_only)
        journal_close(open_journal(f->dir, false));
    f->journal = open_journal(f->dir, read_only);
    assert_int_equal(journal_committer_new(&f->loop, f->journal, &f->committer), 0);
    f->hook_index = SIZE_MAX;
    return f;
}

static void on_closed(void *arg)
{
    struct fixture *f = arg;
    f->closed++;
    f->fired_at_close = f->fired;
}

/* Close the committer (if the test did not), run the loop dry, and check it closes. */
static void fixture_free(struct fixture *f)
{
    if (f->committer != NULL) {
        journal_committer_close(f->committer, on_closed, f);
        f->committer = NULL;
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    journal_close(f->journal);
    for (size_t i = 0; i < f->n_tail; i++)
        free(f->tail_ids[i]);
    free(f->dir);
    free(f);
}

static void on_commit(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct submission *s = arg;
    struct fixture *f = s->f;
    assert_int_equal(n, s->n);
    s->calls++;
    s->rc = rc;
    s->order = f->fired++;
    if (rc == 0)
        assert_null(error);
    else
        assert_message(error);
    for (size_t i = 0; i < n; i++)
        s->seqs[i] = seqs[i];
    if (s->index == f->hook_index && f->hook != NULL)
        f->hook(f);
}

static void on_tail(const struct journal_entry *e, void *arg)
{
    struct fixture *f = arg;
    assert_true(f->n_tail < MAX_SUBMISSIONS * MAX_EVENTS);
    assert_true(e->received_unix_ms > 0);
    f->tail_seqs[f->n_tail] = e->seq;
    f->tail_ids[f->n_tail] = xstrdup(e->event_id);
    f->n_tail++;
}

/* Submit events with the given ids (NULL-terminated); returns what submit returned. */
static int submit_ids(struct fixture *f, const char *const *ids)
{
    assert_true(f->n_subs < MAX_SUBMISSIONS);
    struct submission *s = &f->subs[f->n_subs];
    struct journal_event events[MAX_EVENTS];
    memset(s, 0, sizeof(*s));
    s->f = f;
    s->index = f->n_subs;
    for (s->n = 0; ids[s->n] != NULL; s->n++) {
        assert_true(s->n < MAX_EVENTS);
        snprintf(s->ids[s->n], sizeof(s->ids[s->n]), "%s", ids[s->n]);
        /* Built in a scratch buffer that is overwritten right after: submit must copy. */
        char *scratch = xstrdup(ids[s->n]);
        events[s->n] = (struct journal_event){
            .action = JOURNAL_PUSH,
            .source = "src",
            .repository = "app",
            .digest = DIGEST,
            .tag = "v1",
            .event_id = scratch,
        };
    }
    int rc = journal_committer_submit(f->committer, events, s->n, on_commit, s);
    for (size_t i = 0; i < s->n; i++) {
        char *scratch = (char *)events[i].event_id;
        memset(scratch, 'X', strlen(scratch));
        free(scratch);
    }
    if (rc == 0)
        f->n_subs++;
    return rc;
}

/*
 * The seqs journal_append() must have given: consecutive from `first` in
 * submission order, 0 for an id seen before (in `seen_before` or earlier here).
 */
static void check_seqs(struct fixture *f, uint64_t first, const char *const *seen_before)
{
    uint64_t next = first;
    for (size_t i = 0; i < f->n_subs; i++) {
        struct submission *s = &f->subs[i];
        assert_int_equal(s->calls, 1);
        assert_int_equal(s->rc, 0);
        assert_int_equal(s->order, i);
        for (size_t k = 0; k < s->n; k++) {
            bool dup = false;
            for (size_t b = 0; seen_before != NULL && seen_before[b] != NULL; b++)
                dup = dup || strcmp(seen_before[b], s->ids[k]) == 0;
            for (size_t pi = 0; pi <= i && !dup; pi++) {
                for (size_t pk = 0; pk < (pi == i ? k : f->subs[pi].n); pk++)
                    dup = dup || strcmp(f->subs[pi].ids[pk], s->ids[k]) == 0;
            }
            if (dup)
                assert_int_equal(s->seqs[k], 0);
            else
                assert_int_equal(s->seqs[k], next++);
        }
    }
    assert_int_equal(journal_last_seq(f->journal), next - 1);
}

/*
 * Everything submitted while the first write is in flight goes out in one
 * more write; callbacks fire once each, in order, with the right seqs, and the
 * tail sees every new entry once, in seq order.
 */
static void test_group_commit(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    journal_committer_set_tail(f->committer, on_tail, f);

    const char *first[] = {"ev-0", NULL};
    assert_int_equal(submit_ids(f, first), 0);
    char names[40][2][32];
    for (int i = 1; i <= 40; i++) {
        snprintf(names[i - 1][0], 32, "ev-%d", i);
        /* Every fifth repeats the first event; every seventh repeats itself. */
        snprintf(names[i - 1][1], 32, "%s",
                 i % 5 == 0   ? "ev-0"
                 : i % 7 == 0 ? names[i - 1][0]
                              : "");
        if (names[i - 1][1][0] == '\0')
            snprintf(names[i - 1][1], 32, "ev-%d-b", i);
        const char *ids[] = {names[i - 1][0], names[i - 1][1], NULL};
        assert_int_equal(submit_ids(f, ids), 0);
    }
    /* Nothing fires before the loop runs. */
    assert_int_equal(f->fired, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(f->fired, 41);
    check_seqs(f, 1, NULL);
    assert_int_equal(journal_committer_batches(f->committer), 2);
    assert_true(journal_committer_batches(f->committer) < f->n_subs);

    uint64_t last = journal_last_seq(f->journal);
    assert_int_equal(f->n_tail, last);
    for (size_t i = 0; i < f->n_tail; i++) {
        assert_int_equal(f->tail_seqs[i], i + 1);
        struct journal_entry e;
        assert_int_equal(journal_get(f->journal, f->tail_seqs[i], &e), 0);
        assert_string_equal(e.event_id, f->tail_ids[i]);
        journal_entry_release(&e);
    }

    /* A later submission repeating stored ids reports 0 for them. */
    size_t before = f->n_subs;
    const char *again[] = {"ev-1", "ev-new", "ev-2-b", NULL};
    assert_int_equal(submit_ids(f, again), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->subs[before].calls, 1);
    assert_int_equal(f->subs[before].seqs[0], 0);
    assert_int_equal(f->subs[before].seqs[1], last + 1);
    assert_int_equal(f->subs[before].seqs[2], 0);
    assert_int_equal(f->n_tail, last + 1);
    assert_int_equal(journal_committer_batches(f->committer), 3);
    fixture_free(f);
}

/*
 * An observation keeps its if_changed through the committer: one that says
 * what the journal already says of its tag is not appended.
 */
static void test_observation_through_committer(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    const char *const first[] = {"hook-1", NULL};
    assert_int_equal(submit_ids(f, first), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->subs[0].seqs[0], 1);

    struct submission *s = &f->subs[f->n_subs];
    memset(s, 0, sizeof(*s));
    s->f = f;
    s->index = f->n_subs;
    s->n = 2;
    struct journal_event seen[2] = {
        {.action = JOURNAL_PUSH,
         .source = "src",
         .repository = "app",
         .digest = DIGEST,
         .tag = "v1",
         .event_id = "poll-1",
         .if_changed = true},
        {.action = JOURNAL_DELETE,
         .source = "src",
         .repository = "app",
         .tag = "v1",
         .event_id = "poll-2",
         .if_changed = true},
    };
    assert_int_equal(journal_committer_submit(f->committer, seen, 2, on_commit, s), 0);
    f->n_subs++;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s->calls, 1);
    assert_int_equal(s->seqs[0], 0); /* the same digest: nothing new */
    assert_int_equal(s->seqs[1], 2); /* the tag gone: new */
    fixture_free(f);
}

/* Closing with work queued and in flight lets it all finish, then frees. */
static void test_close_with_pending(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    char names[6][32];
    for (int i = 0; i < 6; i++) {
        snprintf(names[i], sizeof(names[i]), "close-%d", i);
        const char *ids[] = {names[i], NULL};
        assert_int_equal(submit_ids(f, ids), 0);
    }
    journal_committer_close(f->committer, on_closed, f);
    const char *late[] = {"late", NULL};
    assert_int_equal(submit_ids(f, late), FERRY_ECANCELED);
    assert_int_equal(f->closed, 0);

    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(f->fired_at_close, 6);
    f->committer = NULL;
    check_seqs(f, 1, NULL);
    fixture_free(f);
}

/* Closing an idle committer calls back on the loop, not inside the close call. */
static void test_close_idle(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    journal_committer_close(f->committer, on_closed, f);
    f->committer = NULL;
    assert_int_equal(f->closed, 0);
    fixture_free(f);
}

/* An invalid event is refused at submit; its callback never fires; others are unaffected. */
static void test_invalid_submit(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    struct journal_event bad = {.action = JOURNAL_PUSH, .source = "src", .event_id = "x"};
    struct submission never = {.f = f, .index = SIZE_MAX};
    assert_int_equal(journal_committer_submit(f->committer, &bad, 1, on_commit, &never),
                     FERRY_EINVAL);
    assert_int_equal(journal_committer_submit(f->committer, NULL, 1, on_commit, &never),
                     FERRY_EINVAL);
    const char *ok[] = {"fine", NULL};
    assert_int_equal(submit_ids(f, ok), 0);
    const char *none[] = {NULL};
    assert_int_equal(submit_ids(f, none), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(never.calls, 0);
    check_seqs(f, 1, NULL);
    fixture_free(f);
}

/* A failed write fails every submission of its batch, with a message and zero seqs. */
static void test_write_failure(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true);
    journal_committer_set_tail(f->committer, on_tail, f);
    const char *a[] = {"a", NULL};
    const char *b[] = {"b", "c", NULL};
    assert_int_equal(submit_ids(f, a), 0);
    assert_int_equal(submit_ids(f, b), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->subs[i].calls, 1);
        assert_int_equal(f->subs[i].rc, -EROFS);
        assert_int_equal(f->subs[i].order, i);
        for (size_t k = 0; k < f->subs[i].n; k++)
            assert_int_equal(f->subs[i].seqs[k], 0);
    }
    assert_int_equal(f->n_tail, 0);
    assert_int_equal(journal_committer_batches(f->committer), 0);
    fixture_free(f);
}

static void hook_submit_more(struct fixture *f)
{
    const char *more[] = {"from-callback", NULL};
    assert_int_equal(submit_ids(f, more), 0);
}

static void hook_close(struct fixture *f)
{
    journal_committer_close(f->committer, on_closed, f);
    f->committer = NULL;
}

/* A callback may submit more (it goes in the next write) and may close the committer. */
static void test_reentrant_callbacks(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    journal_committer_set_tail(f->committer, on_tail, f);
    f->hook_index = 0;
    f->hook = hook_submit_more;
    const char *first[] = {"first", NULL};
    assert_int_equal(submit_ids(f, first), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->n_subs, 2);
    check_seqs(f, 1, NULL);
    assert_int_equal(journal_committer_batches(f->committer), 2);
    assert_int_equal(f->n_tail, 2);

    /* Close from inside the callback of submission 2; submission 3 was queued behind it. */
    f->hook_index = 2;
    f->hook = hook_close;
    const char *second[] = {"second", NULL};
    assert_int_equal(submit_ids(f, second), 0);
    const char *third[] = {"third", NULL};
    assert_int_equal(submit_ids(f, third), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(f->fired_at_close, 4);
    check_seqs(f, 1, NULL);
    assert_int_equal(f->n_tail, 4);
    fixture_free(f);
}

/* A tail set while a write is in flight still sees that write's entries. */
static void test_tail_set_late(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(false);
    const char *ids[] = {"t1", "t2", NULL};
    assert_int_equal(submit_ids(f, ids), 0);
    journal_committer_set_tail(f->committer, on_tail, f);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->n_tail, 2);
    assert_string_equal(f->tail_ids[0], "t1");
    assert_string_equal(f->tail_ids[1], "t2");

    journal_committer_set_tail(f->committer, NULL, NULL);
    const char *more[] = {"t3", NULL};
    assert_int_equal(submit_ids(f, more), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->n_tail, 2);
    check_seqs(f, 1, NULL);
    fixture_free(f);
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
    log_threshold = FERRY_LOG_DEBUG;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),  cmocka_unit_test(test_close_with_pending),
        cmocka_unit_test(test_close_idle),    cmocka_unit_test(test_invalid_submit),
        cmocka_unit_test(test_write_failure), cmocka_unit_test(test_reentrant_callbacks),
        cmocka_unit_test(test_tail_set_late), cmocka_unit_test(test_observation_through_committer),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
