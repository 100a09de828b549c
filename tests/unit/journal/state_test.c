/*
 * Unit tests for the replication state of journal/journal (DESIGN.md §3, §5):
 * tag fences and job status, and the nodes' heartbeats, which one node does
 * not keep. Every test works in its own directory under one
 * mkdtemp() root that the group teardown removes.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "unit.h"
#include "raw.h"
#include "common/errors.h"
#include "ferry.pb-c.h"
#include "journal/journal.h"
#include "common/log.h"
#include "common/xalloc.h"

#define DIGEST  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* The families of a journal from before fences and job status (see journal.c). */
static const char *const old_families[] = {"default", "entries", "dedup", "pollstate", "cursors"};
#define OLD_FAMILIES (sizeof(old_families) / sizeof(old_families[0]))

static char test_root[] = "/tmp/ferry-state-test-XXXXXX";
static int test_dir_seq;

/* A fresh, not yet existing directory under the root; the caller frees it. */
static char *test_dir(void)
{
    return xasprintf("%s/db%d", test_root, test_dir_seq++);
}

static struct journal *test_open_opts(const char *dir, bool read_only)
{
    struct journal_options opts = {.read_only = read_only};
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(dir, &opts, &j, &err);
    if (rc != 0)
        fail_msg("journal_open(%s) = %d: %s", dir, rc, err != NULL ? err : "(no message)");
    assert_null(err);
    assert_non_null(j);
    return j;
}

static struct journal *test_open(const char *dir)
{
    return test_open_opts(dir, false);
}

static uint64_t fence(struct journal *j, const char *destination, const char *repository,
                      const char *tag)
{
    uint64_t seq = 77;
    assert_int_equal(journal_fence_get(j, destination, repository, tag, &seq), 0);
    return seq;
}

/* Does the database in `dir` have a column family called `family`? */
static bool raw_has_family(const char *dir, const char *family)
{
    rocksdb_options_t *options = rocksdb_options_create();
    char *err = NULL;
    size_t n = 0;
    bool found = false;
    char **names = rocksdb_list_column_families(options, dir, &n, &err);
    assert_null(err);
    for (size_t i = 0; i < n; i++)
        found = found || strcmp(names[i], family) == 0;
    rocksdb_list_column_families_destroy(names, n);
    rocksdb_options_destroy(options);
    return found;
}

static void seq_value(uint64_t seq, char value[8])
{
    for (int i = 7; i >= 0; i--) {
        value[i] = (char)(seq & 0xff);
        seq >>= 8;
    }
}

/*
 * A journal directory as the journal made them before fences and job status:
 * only the original families, holding one cursor "dest" at 3.
 */
static void raw_create_old(const char *dir)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_create_missing_column_families(options, 1);
    const rocksdb_options_t *cf_options[OLD_FAMILIES];
    rocksdb_column_family_handle_t *handles[OLD_FAMILIES];
    char *err = NULL;
    for (size_t i = 0; i < OLD_FAMILIES; i++)
        cf_options[i] = options;
    rocksdb_t *db = rocksdb_open_column_families(options, dir, (int)OLD_FAMILIES, old_families,
                                                 cf_options, handles, &err);
    if (err != NULL)
        fail_msg("raw create: %s", err);
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create();
    char value[8];
    seq_value(3, value);
    rocksdb_put_cf(db, write, handles[4], "dest", 4, value, sizeof(value), &err);
    assert_null(err);
    rocksdb_writeoptions_destroy(write);
    for (size_t i = 0; i < OLD_FAMILIES; i++)
        rocksdb_column_family_handle_destroy(handles[i]);
    rocksdb_close(db);
    rocksdb_options_destroy(options);
}

/* Fences start at 0 and only ever go up; a raise says whether it moved. */
static void test_fence_raise(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);

    assert_int_equal(fence(j, "eu", "app", "v1"), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 0), 0);
    assert_int_equal(fence(j, "eu", "app", "v1"), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 5), 1);
    assert_int_equal(fence(j, "eu", "app", "v1"), 5);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 3), 0);
    assert_int_equal(fence(j, "eu", "app", "v1"), 5);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 5), 0);
    assert_int_equal(fence(j, "eu", "app", "v1"), 5);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 9), 1);
    assert_int_equal(fence(j, "eu", "app", "v1"), 9);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", UINT64_MAX), 1);
    assert_true(fence(j, "eu", "app", "v1") == UINT64_MAX);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 10), 0);
    /* Unsynced (a tag found in place): the same fence, the same answers. */
    assert_int_equal(journal_fence_raise_unsynced(j, "eu", "app", "v2", 4), 1);
    assert_int_equal(fence(j, "eu", "app", "v2"), 4);
    assert_int_equal(journal_fence_raise_unsynced(j, "eu", "app", "v2", 3), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v2", 4), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v2", 6), 1);
    assert_int_equal(journal_fence_raise_unsynced(j, "eu", "app", "v2", 6), 0);
    journal_close(j);
    /* What was written is there after a clean close. */
    j = test_open(dir);
    assert_int_equal(fence(j, "eu", "app", "v2"), 6);
    journal_close(j);
    free(dir);
}

/* Each (destination, repository, tag) has its own fence, whatever its names hold. */
static void test_fence_keys(void **state)
{
    (void)state;
    /* Pairs that one string joined with '/', ':', '|', ' ' or '\1' would confuse. */
    static const char *const tuples[][3] = {
        {"d", "a/b", "c"}, {"d", "a", "b/c"}, {"d/a", "b", "c"},  {"d", "a:b", "c"},
        {"d", "a", "b:c"}, {"d:a", "b", "c"}, {"d", "a|b", "c"},  {"d", "a", "b|c"},
        {"d", "a b", "c"}, {"d", "a", "b c"}, {"d", "a\1b", "c"}, {"d", "a", "b\1c"},
        {"da", "b", "c"},  {"d", "ab", "c"},  {"d", "a", "bc"},   {"dab", "c", "x"},
    };
    size_t n = sizeof(tuples) / sizeof(tuples[0]);
    char *dir = test_dir();
    struct journal *j = test_open(dir);

    for (size_t i = 0; i < n; i++)
        assert_int_equal(journal_fence_raise(j, tuples[i][0], tuples[i][1], tuples[i][2], 10 + i),
                         1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fence(j, tuples[i][0], tuples[i][1], tuples[i][2]), 10 + i);
    /* A NUL ends a name: "c\0x" is the tag "c", the same fence. */
    assert_int_equal(fence(j, "d", "a/b", "c\0x"), 10);
    assert_int_equal(fence(j, "d", "a", "b"), 0);

    /* Names are required, capped at 4096 bytes. */
    char *longest = xmalloc(4098);
    memset(longest, 'x', 4096);
    longest[4096] = '\0';
    uint64_t seq = 77;
    assert_int_equal(journal_fence_raise(j, "d", longest, "t", 1), 1);
    assert_int_equal(fence(j, "d", longest, "t"), 1);
    longest[4096] = 'x';
    longest[4097] = '\0';
    assert_int_equal(journal_fence_get(j, "d", longest, "t", &seq), FERRY_EINVAL);
    assert_int_equal(seq, 0);
    assert_int_equal(journal_fence_raise(j, longest, "r", "t", 1), FERRY_EINVAL);
    assert_int_equal(journal_fence_raise(j, "d", "r", longest, 1), FERRY_EINVAL);
    free(longest);
    assert_int_equal(journal_fence_get(j, NULL, "r", "t", &seq), FERRY_EINVAL);
    assert_int_equal(journal_fence_get(j, "d", "", "t", &seq), FERRY_EINVAL);
    assert_int_equal(journal_fence_get(j, "d", "r", NULL, &seq), FERRY_EINVAL);
    assert_int_equal(journal_fence_raise(j, "", "r", "t", 1), FERRY_EINVAL);
    assert_int_equal(journal_fence_raise(j, "d", NULL, "t", 1), FERRY_EINVAL);
    assert_int_equal(journal_fence_raise(j, "d", "r", "", 1), FERRY_EINVAL);
    journal_close(j);
    free(dir);
}

/* Fences are durable: a reopened journal has them and still refuses to lower them. */
static void test_fence_reopen(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 42), 1);
    assert_int_equal(journal_fence_raise(j, "us", "app", "v1", 7), 1);
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(fence(j, "eu", "app", "v1"), 42);
    assert_int_equal(fence(j, "us", "app", "v1"), 7);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 41), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 43), 1);
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(fence(j, "eu", "app", "v1"), 43);
    journal_close(j);
    free(dir);
}

#define RACE_THREADS 4
#define RACE_RAISES  150

/* What one racing thread tried and saw, raise by raise. */
struct race_log {
    struct journal *j;
    unsigned seed;
    uint64_t tried[RACE_RAISES];
    int result[RACE_RAISES];
    uint64_t before[RACE_RAISES]; /* the fence read just before the raise */
    uint64_t after[RACE_RAISES];  /* the fence read just after it */
};

static void *race_thread(void *arg)
{
    struct race_log *log = arg;
    for (size_t i = 0; i < RACE_RAISES; i++) {
        /* Mostly rising, with enough overlap between threads that many raises lose. */
        uint64_t seq = 1 + i * 8 + (uint64_t)(rand_r(&log->seed) % 64);
        log->tried[i] = seq;
        log->before[i] = UINT64_MAX;
        log->after[i] = 0;
        if (journal_fence_get(log->j, "eu", "app", "latest", &log->before[i]) < 0)
            log->before[i] = UINT64_MAX;
        log->result[i] = journal_fence_raise(log->j, "eu", "app", "latest", seq);
        if (journal_fence_get(log->j, "eu", "app", "latest", &log->after[i]) < 0)
            log->after[i] = 0;
    }
    return NULL;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Raises from several threads: the fence ends at the highest seq tried, and
 * no raise reports 1 for a seq at or below one the fence already held.
 */
static void test_fence_concurrent(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    struct race_log *logs = xcalloc(RACE_THREADS, sizeof(*logs));
    pthread_t threads[RACE_THREADS];

    for (int t = 0; t < RACE_THREADS; t++) {
        logs[t].j = j;
        logs[t].seed = 0x5eed + (unsigned)t;
        assert_int_equal(pthread_create(&threads[t], NULL, race_thread, &logs[t]), 0);
    }
    for (int t = 0; t < RACE_THREADS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);

    uint64_t max = 0;
    uint64_t *won = xcalloc(RACE_THREADS * RACE_RAISES, sizeof(*won));
    size_t n_won = 0;
    for (int t = 0; t < RACE_THREADS; t++) {
        uint64_t last_won = 0;
        for (size_t i = 0; i < RACE_RAISES; i++) {
            const struct race_log *log = &logs[t];
            uint64_t seq = log->tried[i];
            if (seq > max)
                max = seq;
            assert_true(log->result[i] == 0 || log->result[i] == 1);
            assert_true(log->before[i] != UINT64_MAX);
            /* The fence never goes down, and after any raise it is at least that seq. */
            assert_true(log->after[i] >= log->before[i]);
            assert_true(log->after[i] >= seq);
            if (log->result[i] == 1) {
                if (seq <= log->before[i])
                    fail_msg("thread %d raise %zu: 1 for seq %llu, fence was already %llu", t, i,
                             (unsigned long long)seq, (unsigned long long)log->before[i]);
                assert_true(seq > last_won);
                last_won = seq;
                won[n_won++] = seq;
            }
        }
    }
    /* No seq was won twice, by one thread or two. */
    assert_true(n_won > 0);
    qsort(won, n_won, sizeof(*won), compare_u64);
    for (size_t i = 1; i < n_won; i++)
        assert_true(won[i] > won[i - 1]);
    assert_true(won[n_won - 1] == max);
    assert_true(fence(j, "eu", "app", "latest") == max);
    journal_close(j);

    j = test_open(dir);
    assert_true(fence(j, "eu", "app", "latest") == max);
    journal_close(j);
    free(won);
    free(logs);
    free(dir);
}

static void assert_optional_string_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_job_equal(const struct journal_job *got, const struct journal_job *want)
{
    assert_string_equal(got->destination, want->destination);
    assert_string_equal(got->repository, want->repository);
    assert_string_equal(got->digest, want->digest);
    assert_int_equal(got->state, want->state);
    assert_int_equal(got->attempts, want->attempts);
    assert_optional_string_equal(got->last_error, want->last_error);
    assert_true(got->bytes == want->bytes);
    assert_true(got->seq == want->seq);
    assert_true(got->created_unix_ms == want->created_unix_ms);
    assert_true(got->updated_unix_ms == want->updated_unix_ms);
    assert_true(got->completed_unix_ms == want->completed_unix_ms);
    assert_optional_string_equal(got->node, want->node);
    assert_int_equal(got->n_tags, want->n_tags);
    if (want->n_tags == 0)
        assert_null(got->tags);
    for (size_t i = 0; i < want->n_tags; i++)
        assert_string_equal(got->tags[i], want->tags[i]);
}

/* Put and get every field back; a second put replaces the first. */
static void test_job_round_trip(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char *tags[] = {"v1.2.3", "latest", "stable"};
    struct journal_job job = {
        .destination = "eu-west",
        .repository = "mirror/app",
        .digest = DIGEST,
        .state = JOURNAL_JOB_FAILED,
        .attempts = 7,
        .last_error = "blob upload: the registry answered 503",
        .bytes = 5ull << 32,
        .seq = (1ull << 40) + 3,
        .created_unix_ms = 1700000000001,
        .updated_unix_ms = 1700000000002,
        .completed_unix_ms = -1,
        .tags = tags,
        .n_tags = 3,
        .node = "ferry-1.eu",
    };
    struct journal_job got;

    assert_int_equal(journal_job_get(j, "eu-west", "mirror/app", DIGEST, &got), FERRY_ENOTFOUND);
    assert_null(got.destination);
    journal_job_release(&got);
    assert_int_equal(journal_job_put(j, &job), 0);
    assert_int_equal(journal_job_get(j, "eu-west", "mirror/app", DIGEST, &got), 0);
    assert_job_equal(&got, &job);
    journal_job_release(&got);
    assert_null(got.destination);
    assert_null(got.tags);
    journal_job_release(&got);
    journal_job_release(NULL);

    /* Another digest of that repository is another job. */
    assert_int_equal(journal_job_get(j, "eu-west", "mirror/app", DIGEST2, &got), FERRY_ENOTFOUND);

    /* Overwrite: fewer fields, no tags, no error. */
    struct journal_job done = {
        .destination = "eu-west",
        .repository = "mirror/app",
        .digest = DIGEST,
        .state = JOURNAL_JOB_COMPLETE,
        .attempts = 8,
        .seq = job.seq,
        .completed_unix_ms = 1700000000009,
    };
    assert_int_equal(journal_job_put(j, &done), 0);
    assert_int_equal(journal_job_get(j, "eu-west", "mirror/app", DIGEST, &got), 0);
    assert_job_equal(&got, &done);
    assert_null(got.last_error);
    journal_job_release(&got);

    /* An empty last_error reads back as none. */
    done.last_error = "";
    done.state = JOURNAL_JOB_SUPERSEDED;
    assert_int_equal(journal_job_put(j, &done), 0);
    journal_close(j);

    /* Job status outlives the handle (unsynced, but a clean close keeps it). */
    j = test_open(dir);
    assert_int_equal(journal_job_get(j, "eu-west", "mirror/app", DIGEST, &got), 0);
    assert_int_equal(got.state, JOURNAL_JOB_SUPERSEDED);
    assert_null(got.last_error);
    journal_job_release(&got);
    journal_close(j);
    free(dir);
}

/* Put refuses what get would refuse to return. */
static void test_job_invalid(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char *tags[] = {"v1", ""};
    char *longest = xmalloc(4098);
    memset(longest, 'e', 4097);
    longest[4097] = '\0';
    struct journal_job ok = {
        .destination = "eu",
        .repository = "app",
        .digest = DIGEST,
        .state = JOURNAL_JOB_PENDING,
    };
    struct journal_job bad;
    struct journal_job got;

    assert_int_equal(journal_job_put(j, NULL), FERRY_EINVAL);
    bad = ok, bad.destination = NULL;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.repository = "";
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.digest = longest;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.state = 0;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.state = JOURNAL_JOB_SUPERSEDED + 1;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.last_error = longest;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.tags = tags, bad.n_tags = 2;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.tags = NULL, bad.n_tags = 1;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    longest[JOURNAL_NODE_MAX + 1] = '\0';
    bad = ok, bad.node = longest;
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    bad = ok, bad.node = "node\nwarn forged line";
    assert_int_equal(journal_job_put(j, &bad), FERRY_EINVAL);
    longest[JOURNAL_NODE_MAX + 1] = 'e';
    assert_int_equal(journal_job_get(j, "eu", "app", DIGEST, &got), FERRY_ENOTFOUND);

    /* At the cap is fine. */
    longest[4096] = '\0';
    bad = ok, bad.last_error = longest, bad.tags = tags, bad.n_tags = 1;
    assert_int_equal(journal_job_put(j, &bad), 0);
    assert_int_equal(journal_job_get(j, "eu", "app", DIGEST, &got), 0);
    assert_job_equal(&got, &bad);
    journal_job_release(&got);

    assert_int_equal(journal_job_get(j, "", "app", DIGEST, &got), FERRY_EINVAL);
    assert_int_equal(journal_job_get(j, "eu", NULL, DIGEST, &got), FERRY_EINVAL);
    longest[4096] = 'e';
    assert_int_equal(journal_job_get(j, "eu", "app", longest, &got), FERRY_EINVAL);
    free(longest);
    journal_close(j);
    free(dir);
}

/* Collects what journal_job_scan() delivers as "dest repo digest" lines. */
struct job_log {
    char *keys[16];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static int job_collect(const struct journal_job *job, void *arg)
{
    struct job_log *log = arg;
    assert_true(log->n < 16);
    log->keys[log->n++] = xasprintf("%s %s %s", job->destination, job->repository, job->digest);
    return log->stop_after != 0 && log->n == log->stop_after;
}

static void job_log_release(struct job_log *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->keys[i]);
    memset(log, 0, sizeof(*log));
}

static void put_job(struct journal *j, const char *destination, const char *repository,
                    const char *digest)
{
    struct journal_job job = {
        .destination = (char *)destination,
        .repository = (char *)repository,
        .digest = (char *)digest,
        .state = JOURNAL_JOB_IN_PROGRESS,
    };
    assert_int_equal(journal_job_put(j, &job), 0);
}

/* Scan goes by destination, then repository, then digest, and stops when asked. */
static void test_job_scan(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    struct job_log log = {0};

    assert_int_equal(journal_job_scan(j, job_collect, &log), 0);
    assert_int_equal(log.n, 0);

    /* Put out of order; '-' sorts before '/', which a "/"-joined key would get wrong. */
    put_job(j, "b", "a", "sha256:0");
    put_job(j, "a", "r/x", "sha256:1");
    put_job(j, "a", "r", "sha256:2");
    put_job(j, "a-b", "r", "sha256:1");
    put_job(j, "a", "r-x", "sha256:1");
    put_job(j, "a", "r", "sha256:1");
    static const char *const want[] = {
        "a r sha256:1",   "a r sha256:2",   "a r-x sha256:1",
        "a r/x sha256:1", "a-b r sha256:1", "b a sha256:0",
    };
    assert_int_equal(journal_job_scan(j, job_collect, &log), 0);
    assert_int_equal(log.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(log.keys[i], want[i]);
    job_log_release(&log);

    log.stop_after = 2;
    assert_int_equal(journal_job_scan(j, job_collect, &log), 0);
    assert_int_equal(log.n, 2);
    assert_string_equal(log.keys[0], want[0]);
    assert_string_equal(log.keys[1], want[1]);
    job_log_release(&log);
    journal_close(j);
    free(dir);
}

static void put_state(struct journal *j, const char *repository, enum journal_job_state state)
{
    struct journal_job job = {
        .destination = "eu",
        .repository = (char *)repository,
        .digest = "sha256:1",
        .state = state,
    };
    assert_int_equal(journal_job_put(j, &job), 0);
}

/* What journal_job_scan_open() gives, as "repo" names, one string. */
static char *open_jobs(struct journal *j)
{
    struct job_log log = {0};
    assert_int_equal(journal_job_scan_open(j, job_collect, &log), 0);
    char *all = xstrdup("");
    for (size_t i = 0; i < log.n; i++) {
        char *more = xasprintf("%s%s%s", all, i > 0 ? "," : "", log.keys[i] + 3);
        free(all);
        all = more;
    }
    job_log_release(&log);
    return all;
}

static void assert_open_jobs(struct journal *j, const char *want)
{
    char *got = open_jobs(j);
    assert_string_equal(got, want);
    free(got);
}

/*
 * The index of open jobs: a scan of them gives exactly the PENDING,
 * IN_PROGRESS and FAILED records, follows every put (a job that settles
 * leaves, one that fails again comes back), survives a reopen, is read
 * read-only too, is what the scan reads (a key removed behind the
 * journal's back hides its job), and is built from the records when a
 * journal of format 3 (no index) is opened for writing.
 */
static void test_job_scan_open(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    assert_open_jobs(j, "");
    put_state(j, "a", JOURNAL_JOB_PENDING);
    put_state(j, "b", JOURNAL_JOB_COMPLETE);
    put_state(j, "c", JOURNAL_JOB_FAILED);
    put_state(j, "d", JOURNAL_JOB_IN_PROGRESS);
    put_state(j, "e", JOURNAL_JOB_SUPERSEDED);
    assert_open_jobs(j, "a sha256:1,c sha256:1,d sha256:1");
    put_state(j, "a", JOURNAL_JOB_IN_PROGRESS);
    put_state(j, "a", JOURNAL_JOB_COMPLETE);
    put_state(j, "c", JOURNAL_JOB_PENDING);
    put_state(j, "b", JOURNAL_JOB_FAILED);
    assert_open_jobs(j, "b sha256:1,c sha256:1,d sha256:1");
    journal_close(j);

    j = test_open_opts(dir, true);
    assert_open_jobs(j, "b sha256:1,c sha256:1,d sha256:1");
    journal_close(j);

    /* The scan reads the index, not every record: d taken out of it behind
     * the journal's back is not seen. */
    char d_key[32];
    int d_len = snprintf(d_key, sizeof(d_key), "eu%cd%csha256:1", '\0', '\0');
    raw_delete(dir, "openjobs", d_key, (size_t)d_len);
    j = test_open(dir);
    assert_open_jobs(j, "b sha256:1,c sha256:1");
    put_state(j, "d", JOURNAL_JOB_FAILED);
    assert_open_jobs(j, "b sha256:1,c sha256:1,d sha256:1");
    journal_close(j);

    /* Format 3: no index (one stale key that must not count), rebuilt at open. */
    raw_put(dir, "default", "format", 6, "3", 1);
    for (const char *r = "bcd"; *r != '\0'; r++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "eu%c%c%csha256:1", '\0', *r, '\0');
        raw_delete(dir, "openjobs", key, (size_t)n);
    }
    char stale[32];
    int n = snprintf(stale, sizeof(stale), "eu%ca%csha256:1", '\0', '\0');
    raw_put(dir, "openjobs", stale, (size_t)n, "\0", 1);
    j = test_open_opts(dir, true);
    /* Read-only, an old format is scanned in full. */
    assert_open_jobs(j, "b sha256:1,c sha256:1,d sha256:1");
    journal_close(j);
    j = test_open(dir);
    assert_open_jobs(j, "b sha256:1,c sha256:1,d sha256:1");
    journal_close(j);
    free(dir);
}

/*
 * A scan of one destination, or of one repository of it, sees exactly its
 * jobs: names that only start alike ("a-b", "ab"; "r-x", "r/x", "rx") stay
 * out, and a destination with no jobs gives none.
 */
static void test_job_scan_in(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    struct job_log log = {0};

    put_job(j, "a", "r", "sha256:1");
    put_job(j, "a", "r", "sha256:2");
    put_job(j, "a", "r-x", "sha256:1");
    put_job(j, "a", "r/x", "sha256:1");
    put_job(j, "a", "rx", "sha256:1");
    put_job(j, "a-b", "r", "sha256:1");
    put_job(j, "ab", "r", "sha256:1");

    assert_int_equal(journal_job_scan_in(j, "a", NULL, job_collect, &log), 0);
    static const char *const of_a[] = {"a r sha256:1", "a r sha256:2", "a r-x sha256:1",
                                       "a r/x sha256:1", "a rx sha256:1"};
    assert_int_equal(log.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(log.keys[i], of_a[i]);
    job_log_release(&log);

    assert_int_equal(journal_job_scan_in(j, "a", "r", job_collect, &log), 0);
    assert_int_equal(log.n, 2);
    assert_string_equal(log.keys[0], "a r sha256:1");
    assert_string_equal(log.keys[1], "a r sha256:2");
    job_log_release(&log);

    log.stop_after = 1;
    assert_int_equal(journal_job_scan_in(j, "a", "r", job_collect, &log), 0);
    assert_int_equal(log.n, 1);
    job_log_release(&log);

    assert_int_equal(journal_job_scan_in(j, "ab", NULL, job_collect, &log), 0);
    assert_int_equal(log.n, 1);
    assert_string_equal(log.keys[0], "ab r sha256:1");
    job_log_release(&log);

    assert_int_equal(journal_job_scan_in(j, "b", NULL, job_collect, &log), 0);
    assert_int_equal(log.n, 0);
    /* No destination: every job, as journal_job_scan() gives them. */
    assert_int_equal(journal_job_scan_in(j, NULL, NULL, job_collect, &log), 0);
    assert_int_equal(log.n, 7);
    job_log_release(&log);
    journal_close(j);
    free(dir);
}

/* Pack a job status record as the journal would, whatever it holds. */
static uint8_t *pack_job(const char *destination, const char *repository, const char *digest,
                         int state, size_t *len)
{
    Ferry__JobStatus rec = FERRY__JOB_STATUS__INIT;
    rec.destination = (char *)destination;
    rec.repository = (char *)repository;
    rec.digest = (char *)digest;
    rec.state = (Ferry__JobStatus__State)state;
    *len = ferry__job_status__get_packed_size(&rec);
    uint8_t *packed = xmalloc(*len + 1);
    ferry__job_status__pack(&rec, packed);
    return packed;
}

/* Records that do not decode, or decode to what put would refuse, are FERRY_EPARSE. */
static void test_corrupt(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    put_job(j, "a", "good", DIGEST);
    assert_int_equal(journal_fence_raise(j, "d", "r", "good", 4), 1);
    journal_close(j);

    static const char garbage[] = "\xff\xff\xff\xff\x0f not a protobuf";
    static const char key_garbage[] = "eu\0app\0" DIGEST;
    raw_put(dir, "jobs", key_garbage, sizeof(key_garbage) - 1, garbage, sizeof(garbage) - 1);
    size_t len = 0;
    static const char key_state[] = "eu\0app\0sha256:state";
    uint8_t *packed = pack_job("eu", "app", "sha256:state", 0, &len);
    raw_put(dir, "jobs", key_state, sizeof(key_state) - 1, packed, len);
    free(packed);
    static const char key_state9[] = "eu\0app\0sha256:state9";
    packed = pack_job("eu", "app", "sha256:state9", 9, &len);
    raw_put(dir, "jobs", key_state9, sizeof(key_state9) - 1, packed, len);
    free(packed);
    static const char key_moved[] = "eu\0app\0sha256:moved";
    packed = pack_job("eu", "other", "sha256:moved", JOURNAL_JOB_COMPLETE, &len);
    raw_put(dir, "jobs", key_moved, sizeof(key_moved) - 1, packed, len);
    free(packed);
    static const char key_empty[] = "eu\0app\0sha256:empty";
    raw_put(dir, "jobs", key_empty, sizeof(key_empty) - 1, "", 0);
    static const char key_fence[] = "d\0r\0t";
    raw_put(dir, "fences", key_fence, sizeof(key_fence) - 1, "\1\2\3", 3);

    j = test_open(dir);
    struct journal_job got;
    assert_int_equal(journal_job_get(j, "a", "good", DIGEST, &got), 0);
    journal_job_release(&got);
    assert_int_equal(journal_job_get(j, "eu", "app", DIGEST, &got), FERRY_EPARSE);
    assert_null(got.destination);
    assert_int_equal(journal_job_get(j, "eu", "app", "sha256:state", &got), FERRY_EPARSE);
    assert_int_equal(journal_job_get(j, "eu", "app", "sha256:state9", &got), FERRY_EPARSE);
    assert_int_equal(journal_job_get(j, "eu", "app", "sha256:moved", &got), FERRY_EPARSE);
    assert_int_equal(journal_job_get(j, "eu", "app", "sha256:empty", &got), FERRY_EPARSE);

    /* Scan delivers what comes before the first corrupt record, then fails. */
    struct job_log log = {0};
    assert_int_equal(journal_job_scan(j, job_collect, &log), FERRY_EPARSE);
    assert_int_equal(log.n, 1);
    assert_string_equal(log.keys[0], "a good " DIGEST);
    job_log_release(&log);

    /* A put replaces a corrupt record. */
    put_job(j, "eu", "app", DIGEST);
    assert_int_equal(journal_job_get(j, "eu", "app", DIGEST, &got), 0);
    assert_int_equal(got.state, JOURNAL_JOB_IN_PROGRESS);
    journal_job_release(&got);

    /* A fence that does not read cannot be compared, so it is not raised either. */
    uint64_t seq = 77;
    assert_int_equal(journal_fence_get(j, "d", "r", "t", &seq), FERRY_EPARSE);
    assert_int_equal(seq, 0);
    assert_int_equal(journal_fence_raise(j, "d", "r", "t", 100), FERRY_EPARSE);
    assert_int_equal(fence(j, "d", "r", "good"), 4);
    journal_close(j);

    /* A key that is not three names. */
    static const char key_bare[] = "zz-no-separators";
    packed = pack_job("zz", "app", DIGEST, JOURNAL_JOB_COMPLETE, &len);
    char *dir2 = test_dir();
    j = test_open(dir2);
    journal_close(j);
    raw_put(dir2, "jobs", key_bare, sizeof(key_bare) - 1, packed, len);
    free(packed);
    j = test_open(dir2);
    assert_int_equal(journal_job_scan(j, job_collect, &log), FERRY_EPARSE);
    assert_int_equal(log.n, 0);
    journal_close(j);
    free(dir2);
    free(dir);
}

/* A read-only handle sees fences and job status and refuses to change them. */
static void test_read_only(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char *tags[] = {"v1"};
    struct journal_job job = {
        .destination = "eu",
        .repository = "app",
        .digest = DIGEST,
        .state = JOURNAL_JOB_COMPLETE,
        .tags = tags,
        .n_tags = 1,
    };
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 12), 1);
    assert_int_equal(journal_job_put(j, &job), 0);

    struct journal *r = test_open_opts(dir, true);
    assert_int_equal(fence(r, "eu", "app", "v1"), 12);
    assert_int_equal(fence(r, "eu", "app", "v2"), 0);
    struct journal_job got;
    assert_int_equal(journal_job_get(r, "eu", "app", DIGEST, &got), 0);
    assert_job_equal(&got, &job);
    journal_job_release(&got);
    struct job_log log = {0};
    assert_int_equal(journal_job_scan(r, job_collect, &log), 0);
    assert_int_equal(log.n, 1);
    job_log_release(&log);

    assert_int_equal(journal_fence_raise(r, "eu", "app", "v1", 13), -EROFS);
    assert_int_equal(journal_fence_raise(r, "eu", "app", "v9", 1), -EROFS);
    job.state = JOURNAL_JOB_FAILED;
    assert_int_equal(journal_job_put(r, &job), -EROFS);
    /* Invalid input is still reported as such. */
    assert_int_equal(journal_fence_raise(r, "", "app", "v1", 13), FERRY_EINVAL);
    journal_close(r);

    assert_int_equal(fence(j, "eu", "app", "v1"), 12);
    assert_int_equal(journal_job_get(j, "eu", "app", DIGEST, &got), 0);
    assert_int_equal(got.state, JOURNAL_JOB_COMPLETE);
    journal_job_release(&got);
    journal_close(j);
    free(dir);
}

/* The memo of (source, repo): its ETag ("" for none), or "absent". */
static const char *memo_etag(struct journal *j, const char *source, const char *repo)
{
    static char buf[64];
    struct journal_poll_memo m;
    int rc = journal_poll_memo_get(j, source, repo, &m);
    if (rc == FERRY_ENOTFOUND)
        return "absent";
    assert_int_equal(rc, 0);
    snprintf(buf, sizeof(buf), "%s", m.etag != NULL ? m.etag : "");
    journal_poll_memo_release(&m);
    return buf;
}

/*
 * Poll memos: written, read back after a reopen, deleted; a prune keeps the
 * repositories it is given (in any order) and only the source's own; bad
 * names and read-only journals are refused; a corrupt record is FERRY_EPARSE.
 */
static void test_poll_memo(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    struct journal_poll_memo m = {.etag = "\"e1\"", .listed_round = 7, .sweep_owed = true};
    struct journal_poll_memo got;

    assert_int_equal(journal_poll_memo_get(j, "hub", "app", &got), FERRY_ENOTFOUND);
    assert_null(got.etag);
    assert_int_equal(journal_poll_memo_put(j, "hub", "app", &m), 0);
    assert_int_equal(journal_poll_memo_get(j, "hub", "app", &got), 0);
    assert_string_equal(got.etag, "\"e1\"");
    assert_int_equal(got.listed_round, 7);
    assert_true(got.sweep_owed);
    journal_poll_memo_release(&got);
    assert_null(got.etag);

    /* No ETag: kept as none, not as "". */
    struct journal_poll_memo owed = {.sweep_owed = true};
    assert_int_equal(journal_poll_memo_put(j, "hub", "lib/a", &owed), 0);
    assert_int_equal(journal_poll_memo_get(j, "hub", "lib/a", &got), 0);
    assert_null(got.etag);
    assert_true(got.sweep_owed);
    journal_poll_memo_release(&got);

    /* Survives a reopen; NULL deletes. */
    journal_close(j);
    j = test_open(dir);
    assert_string_equal(memo_etag(j, "hub", "app"), "\"e1\"");
    assert_int_equal(journal_poll_memo_put(j, "hub", "lib/a", NULL), 0);
    assert_string_equal(memo_etag(j, "hub", "lib/a"), "absent");
    assert_int_equal(journal_poll_memo_put(j, "hub", "lib/a", NULL), 0); /* absent: still fine */

    /* Prune: keeps what it is given, whatever the order; other sources untouched. A
     * repository whose name is a prefix of another's is its own key. */
    const char *names[] = {"a", "a/b", "ab", "b", "z"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(journal_poll_memo_put(j, "hub", names[i], &m), 0);
        assert_int_equal(journal_poll_memo_put(j, "hubx", names[i], &m), 0);
    }
    assert_int_equal(journal_poll_memo_put(j, "hu", "a", &m), 0);
    char *keep[] = {"z", "ab", "new", "a"};
    uint64_t deleted = 99;
    assert_int_equal(journal_poll_memo_prune(j, "hub", keep, 4, &deleted), 0);
    assert_int_equal(deleted, 3); /* app, a/b, b */
    assert_string_equal(memo_etag(j, "hub", "a"), "\"e1\"");
    assert_string_equal(memo_etag(j, "hub", "ab"), "\"e1\"");
    assert_string_equal(memo_etag(j, "hub", "z"), "\"e1\"");
    assert_string_equal(memo_etag(j, "hub", "a/b"), "absent");
    assert_string_equal(memo_etag(j, "hub", "b"), "absent");
    assert_string_equal(memo_etag(j, "hub", "app"), "absent");
    assert_string_equal(memo_etag(j, "hub", "new"), "absent");
    assert_string_equal(memo_etag(j, "hubx", "b"), "\"e1\"");
    assert_string_equal(memo_etag(j, "hu", "a"), "\"e1\"");
    /* Nothing to keep: all of the source's go. */
    assert_int_equal(journal_poll_memo_prune(j, "hubx", NULL, 0, &deleted), 0);
    assert_int_equal(deleted, 5);
    assert_string_equal(memo_etag(j, "hubx", "a"), "absent");
    assert_string_equal(memo_etag(j, "hub", "a"), "\"e1\"");

    /* Clear: every source's memos go, at once. */
    assert_int_equal(journal_poll_memo_put(j, "zz", "x", &m), 0);
    assert_int_equal(journal_poll_memo_clear(j), 0);
    assert_string_equal(memo_etag(j, "hub", "a"), "absent");
    assert_string_equal(memo_etag(j, "hu", "a"), "absent");
    assert_string_equal(memo_etag(j, "zz", "x"), "absent");
    assert_int_equal(journal_poll_memo_prune(j, "hub", NULL, 0, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(journal_poll_memo_put(j, "hub", "a", &m), 0);
    assert_int_equal(journal_poll_memo_put(j, "hub", "z", &m), 0);

    /* Bad names and ETags change nothing. */
    assert_int_equal(journal_poll_memo_put(j, "", "app", &m), FERRY_EINVAL);
    assert_int_equal(journal_poll_memo_put(j, "hub", "", &m), FERRY_EINVAL);
    assert_int_equal(journal_poll_memo_get(j, "hub", "", &got), FERRY_EINVAL);
    assert_int_equal(journal_poll_memo_prune(j, "", NULL, 0, NULL), FERRY_EINVAL);
    char *long_etag = xmalloc(5000);
    memset(long_etag, 'e', 4999);
    long_etag[4999] = '\0';
    struct journal_poll_memo bad = {.etag = long_etag};
    assert_int_equal(journal_poll_memo_put(j, "hub", "a", &bad), FERRY_EINVAL);
    free(long_etag);
    assert_string_equal(memo_etag(j, "hub", "a"), "\"e1\"");
    journal_close(j);

    /* A record that does not decode. */
    raw_put(dir, "pollmemo", "hub\0bad\0", 8, "\xff\xff\xff", 3);
    j = test_open(dir);
    assert_int_equal(journal_poll_memo_get(j, "hub", "bad", &got), FERRY_EPARSE);
    assert_null(got.etag);
    journal_close(j);

    /* Read-only: reads, refuses writes. */
    struct journal *r = test_open_opts(dir, true);
    assert_string_equal(memo_etag(r, "hub", "z"), "\"e1\"");
    assert_int_equal(journal_poll_memo_put(r, "hub", "z", NULL), -EROFS);
    assert_int_equal(journal_poll_memo_prune(r, "hub", NULL, 0, NULL), -EROFS);
    assert_int_equal(journal_poll_memo_clear(r), -EROFS);
    journal_close(r);
    free(dir);
}

/* A journal from before fences and job status opens, read-only and read-write. */
static void test_old_database(void **state)
{
    (void)state;
    char *dir = test_dir();
    raw_create_old(dir);
    assert_false(raw_has_family(dir, "fences"));
    assert_false(raw_has_family(dir, "jobs"));

    /* Read-only cannot add the families; it reads them as empty. */
    struct journal *r = test_open_opts(dir, true);
    struct journal_poll_memo memo;
    assert_int_equal(journal_poll_memo_get(r, "hub", "app", &memo), FERRY_ENOTFOUND);
    uint64_t seq = 0;
    assert_int_equal(journal_cursor_get(r, "dest", &seq), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(fence(r, "eu", "app", "v1"), 0);
    struct journal_job got;
    assert_int_equal(journal_job_get(r, "eu", "app", DIGEST, &got), FERRY_ENOTFOUND);
    struct job_log log = {0};
    assert_int_equal(journal_job_scan(r, job_collect, &log), 0);
    assert_int_equal(log.n, 0);
    assert_int_equal(journal_fence_raise(r, "eu", "app", "v1", 1), -EROFS);
    struct journal_job job = {
        .destination = "eu",
        .repository = "app",
        .digest = DIGEST,
        .state = JOURNAL_JOB_PENDING,
    };
    assert_int_equal(journal_job_put(r, &job), -EROFS);
    journal_close(r);
    assert_false(raw_has_family(dir, "fences"));

    /* Read-write adds them, and keeps what was there. */
    struct journal *j = test_open(dir);
    assert_int_equal(journal_cursor_get(j, "dest", &seq), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(fence(j, "eu", "app", "v1"), 0);
    assert_int_equal(journal_fence_raise(j, "eu", "app", "v1", 8), 1);
    assert_int_equal(journal_job_put(j, &job), 0);
    journal_close(j);
    assert_true(raw_has_family(dir, "fences"));
    assert_true(raw_has_family(dir, "jobs"));

    r = test_open_opts(dir, true);
    assert_int_equal(fence(r, "eu", "app", "v1"), 8);
    assert_int_equal(journal_job_get(r, "eu", "app", DIGEST, &got), 0);
    assert_job_equal(&got, &job);
    journal_job_release(&got);
    journal_close(r);
    free(dir);
}

static int count_node(const char *node, int64_t beat_unix_ms, const char *info, void *arg)
{
    (void)node;
    (void)beat_unix_ms;
    (void)info;
    (*(int *)arg)++;
    return 0;
}

/*
 * One node keeps no heartbeats: a beat is 0 and a scan calls nothing. Names
 * and infos are checked as a cluster checks them, so a node named wrong
 * finds out on its own already.
 */
static int count_claim(const char *key, const struct journal_claim *c, void *arg)
{
    (void)key;
    (void)c;
    (*(int *)arg)++;
    return 0;
}

static void test_nodes_one_node(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    int called = 0;
    assert_int_equal(journal_node_beat(j, "ferry-a.example.com", "{\"jobs\":1}"), 0);
    assert_int_equal(journal_node_beat(j, "node_2", ""), 0);
    assert_int_equal(journal_node_scan(j, count_node, &called), 0);
    assert_int_equal(called, 0);
    assert_int_equal(journal_node_forget(j, "ferry-a.example.com"), 0);
    assert_int_equal(journal_node_forget(j, "never-was"), 0);
    /* No claims either: the parked cursor stands for them. */
    struct journal_claim claim = {.destination = "eu", .seq = 3, .node = "ferry-a"};
    assert_int_equal(journal_claim_put(j, "eu\napp\n3", &claim), 0);
    assert_int_equal(journal_claim_scan(j, count_claim, &called), 0);
    assert_int_equal(called, 0);
    assert_int_equal(journal_claim_drop(j, "eu\napp\n3"), 0);
    claim.seq = 0;
    assert_int_equal(journal_claim_put(j, "eu\napp\n3", &claim), FERRY_EINVAL);

    char longest[JOURNAL_NODE_MAX + 2];
    memset(longest, 'n', sizeof(longest) - 1);
    longest[JOURNAL_NODE_MAX + 1] = '\0';
    const char *bad[] = {"", "a/b", "a b", "a*", "a>", ".a", "a.", "a..b", "a\nb", longest, NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(journal_node_beat(j, bad[i], ""), FERRY_EINVAL);
        assert_int_equal(journal_node_forget(j, bad[i]), FERRY_EINVAL);
    }
    longest[JOURNAL_NODE_MAX] = '\0';
    assert_int_equal(journal_node_beat(j, longest, ""), 0);

    char *info = xmalloc(JOURNAL_NODE_INFO_MAX + 2);
    memset(info, 'i', JOURNAL_NODE_INFO_MAX + 1);
    info[JOURNAL_NODE_INFO_MAX + 1] = '\0';
    assert_int_equal(journal_node_beat(j, "node", info), FERRY_EINVAL);
    info[JOURNAL_NODE_INFO_MAX] = '\0';
    assert_int_equal(journal_node_beat(j, "node", info), 0);
    assert_int_equal(journal_node_beat(j, "node", NULL), FERRY_EINVAL);
    free(info);
    journal_close(j);
    free(dir);
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
    /* Exercise the debug logging of raises and corrupt records too. */
    log_threshold = FERRY_LOG_DEBUG;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fence_raise),    cmocka_unit_test(test_fence_keys),
        cmocka_unit_test(test_fence_reopen),   cmocka_unit_test(test_fence_concurrent),
        cmocka_unit_test(test_job_round_trip), cmocka_unit_test(test_job_invalid),
        cmocka_unit_test(test_job_scan),       cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_read_only),      cmocka_unit_test(test_old_database),
        cmocka_unit_test(test_job_scan_in),    cmocka_unit_test(test_job_scan_open),
        cmocka_unit_test(test_poll_memo),      cmocka_unit_test(test_nodes_one_node),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
