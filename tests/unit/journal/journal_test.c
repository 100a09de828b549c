/*
 * Unit tests for journal/journal: the RocksDB store of seq-numbered,
 * deduplicated entries, cursors, poller state and retention. Every test works
 * in its own directory under one mkdtemp() root that the group teardown
 * removes. Children (other processes, the crash test) are this binary run
 * again with a --child-* argument, so that they start fresh rather than as a
 * fork of a process that has RocksDB threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <rocksdb/c.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit.h"
#include "raw.h"
#include "common/errors.h"
#include "ferry.pb-c.h"
#include "journal/journal.h"
#include "journal/journal_int.h"
#include "common/log.h"
#include "common/xalloc.h"

#define DIGEST  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static char test_root[] = "/tmp/ferry-journal-test-XXXXXX";
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

static int64_t now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static struct journal_event push_event(const char *repository, const char *tag,
                                       const char *event_id)
{
    return (struct journal_event){
        .action = JOURNAL_PUSH,
        .source = "src",
        .repository = repository,
        .digest = DIGEST,
        .tag = tag,
        .media_type = "application/vnd.oci.image.manifest.v1+json",
        .event_id = event_id,
        .event_unix_ms = 1700000000123,
    };
}

/* Append one event that must be new; returns its seq. */
static uint64_t append_one(struct journal *j, const char *event_id)
{
    struct journal_event e = push_event("app", "v1", event_id);
    uint64_t seq = 0;
    char *err = NULL;
    int rc = journal_append(j, &e, 1, &seq, &err);
    if (rc != 0)
        fail_msg("journal_append(%s) = %d: %s", event_id, rc, err != NULL ? err : "(none)");
    assert_true(seq != 0);
    return seq;
}

/* Collects what journal_scan() delivers. */
struct scan_log {
    uint64_t seqs[64];
    char *ids[64];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static int scan_collect(const struct journal_entry *e, void *arg)
{
    struct scan_log *log = arg;
    assert_true(log->n < 64);
    log->seqs[log->n] = e->seq;
    log->ids[log->n] = xstrdup(e->event_id);
    log->n++;
    return log->stop_after != 0 && log->n == log->stop_after;
}

static void scan_log_release(struct scan_log *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->ids[i]);
    memset(log, 0, sizeof(*log));
}

static void seq_key(uint64_t seq, char key[8])
{
    for (int i = 7; i >= 0; i--) {
        key[i] = (char)(seq & 0xff);
        seq >>= 8;
    }
}

/* Append, read back, scan in order and with limits, and count. */
static void test_append_get_scan(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    assert_int_equal(journal_last_seq(j), 0);

    struct journal_event events[3] = {
        push_event("app", "v1", "id-1"),
        push_event("app", NULL, "id-2"),
        {.action = JOURNAL_DELETE,
         .source = "src",
         .repository = "lib/x",
         .tag = "old",
         .event_id = "id-3"},
    };
    events[1].media_type = "";
    uint64_t seqs[3] = {0};
    char *err = NULL;
    int64_t before = now_ms();
    assert_int_equal(journal_append(j, events, 3, seqs, &err), 0);
    int64_t after = now_ms();
    assert_null(err);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);
    assert_int_equal(seqs[2], 3);
    assert_int_equal(journal_last_seq(j), 3);

    struct journal_entry e;
    assert_int_equal(journal_get(j, 1, &e), 0);
    assert_int_equal(e.seq, 1);
    assert_int_equal(e.action, JOURNAL_PUSH);
    assert_string_equal(e.source, "src");
    assert_string_equal(e.repository, "app");
    assert_string_equal(e.digest, DIGEST);
    assert_string_equal(e.tag, "v1");
    assert_string_equal(e.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_string_equal(e.event_id, "id-1");
    assert_true(e.received_unix_ms >= before && e.received_unix_ms <= after);
    assert_int_equal(e.event_unix_ms, 1700000000123);
    journal_entry_release(&e);

    /* Absent optional fields come back as NULL, whether NULL or "" went in. */
    assert_int_equal(journal_get(j, 2, &e), 0);
    assert_null(e.tag);
    assert_null(e.media_type);
    journal_entry_release(&e);
    assert_int_equal(journal_get(j, 3, &e), 0);
    assert_int_equal(e.action, JOURNAL_DELETE);
    assert_null(e.digest);
    assert_string_equal(e.tag, "old");
    assert_string_equal(e.repository, "lib/x");
    journal_entry_release(&e);

    assert_int_equal(journal_get(j, 4, &e), FERRY_ENOTFOUND);
    assert_int_equal(journal_get(j, 0, &e), FERRY_ENOTFOUND);

    struct scan_log log = {0};
    assert_int_equal(journal_scan(j, 0, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(log.seqs[i], i + 1);
    assert_string_equal(log.ids[2], "id-3");
    scan_log_release(&log);

    assert_int_equal(journal_scan(j, 1, 1, scan_collect, &log), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.seqs[0], 2);
    scan_log_release(&log);

    log.stop_after = 2;
    assert_int_equal(journal_scan(j, 0, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 2);
    scan_log_release(&log);

    assert_int_equal(journal_scan(j, 3, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 0);
    assert_int_equal(journal_scan(j, UINT64_MAX, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 0);

    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 3);
    assert_int_equal(stats.first_seq, 1);
    assert_int_equal(stats.last_seq, 3);
    assert_int_equal(stats.dedup_keys, 3);

    /* An empty append is a no-op. */
    assert_int_equal(journal_append(j, NULL, 0, NULL, &err), 0);
    assert_null(err);
    assert_int_equal(journal_last_seq(j), 3);

    journal_close(j);
    free(dir);
}

/* A repeated event id is dropped, within a batch, across batches and across reopen. */
static void test_dedup(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char *err = NULL;

    struct journal_event first[2] = {push_event("app", "v1", "A"), push_event("app", "v2", "B")};
    uint64_t seqs[4];
    assert_int_equal(journal_append(j, first, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);

    struct journal_event second[4] = {push_event("app", "v2", "B"), push_event("app", "v3", "C"),
                                      push_event("app", "v3", "C"), push_event("app", "v4", "D")};
    assert_int_equal(journal_append(j, second, 4, seqs, &err), 0);
    assert_null(err);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(seqs[1], 3);
    assert_int_equal(seqs[2], 0);
    assert_int_equal(seqs[3], 4);
    assert_int_equal(journal_last_seq(j), 4);

    /* Only duplicates: nothing written, seqs all 0. */
    assert_int_equal(journal_append(j, second, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(seqs[1], 0);
    assert_int_equal(journal_last_seq(j), 4);

    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 4);
    assert_int_equal(stats.dedup_keys, 4);

    journal_close(j);
    j = test_open(dir);
    assert_int_equal(journal_append(j, first, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(seqs[1], 0);
    assert_int_equal(journal_last_seq(j), 4);

    /* An id is unique within its source only: another source's "A" is new,
     * in the same batch as this source's repeat and across batches. */
    struct journal_event other[2] = {push_event("app", "v1", "A"), push_event("app", "v1", "A")};
    other[1].source = "other";
    assert_int_equal(journal_append(j, other, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(seqs[1], 5);
    assert_int_equal(journal_append(j, &other[1], 1, seqs, &err), 0);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(journal_last_seq(j), 5);
    journal_close(j);
    free(dir);
}

/* Seqs are consecutive and carry on after close and reopen. */
static void test_seq_survives_reopen(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char id[32];
    for (uint64_t i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "ev-%llu", (unsigned long long)i);
        assert_int_equal(append_one(j, id), i);
    }
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(journal_last_seq(j), 5);
    struct journal_event events[2] = {push_event("app", "v6", "ev-6"),
                                      push_event("app", "v7", "ev-7")};
    uint64_t seqs[2];
    char *err = NULL;
    assert_int_equal(journal_append(j, events, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 6);
    assert_int_equal(seqs[1], 7);
    journal_close(j);
    free(dir);
}

static void test_cursors(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    uint64_t seq = 99;
    assert_int_equal(journal_cursor_get(j, "dest-a", &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(journal_cursor_set(j, "dest-a", 5), 0);
    assert_int_equal(journal_cursor_set(j, "dest-b", 1ull << 40), 0);
    assert_int_equal(journal_cursor_get(j, "dest-a", &seq), 0);
    assert_int_equal(seq, 5);
    assert_int_equal(journal_cursor_set(j, "dest-a", 7), 0);
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(journal_cursor_get(j, "dest-a", &seq), 0);
    assert_int_equal(seq, 7);
    assert_int_equal(journal_cursor_get(j, "dest-b", &seq), 0);
    assert_int_equal(seq, 1ull << 40);
    assert_int_equal(journal_cursor_set(j, "", 1), FERRY_EINVAL);
    assert_int_equal(journal_cursor_get(j, NULL, &seq), FERRY_EINVAL);
    journal_close(j);
    free(dir);
}

/* Collects journal_tagstate_scan() records as "repo tag digest" lines. */
struct poll_log {
    char *lines[16];
    size_t n;
    size_t stop_after;
};

static int poll_collect(const char *repository, const char *tag, const char *digest, void *arg)
{
    struct poll_log *log = arg;
    assert_true(log->n < 16);
    log->lines[log->n++] = xasprintf("%s %s %s", repository, tag, digest);
    return log->stop_after != 0 && log->n == log->stop_after;
}

static void poll_log_release(struct poll_log *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->lines[i]);
    memset(log, 0, sizeof(*log));
}

static void test_pollstate(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char *digest = NULL;

    assert_int_equal(journal_tagstate_get(j, "hub", "app", "v1", &digest), FERRY_ENOTFOUND);
    assert_null(digest);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v1", "sha256:1"), 0);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v2", "sha256:2"), 0);
    assert_int_equal(journal_tagstate_put(j, "hub", "lib/b", "v1", "sha256:3"), 0);
    /* Sources that share a prefix with "hub" must stay out of its scan. */
    assert_int_equal(journal_tagstate_put(j, "hub2", "app", "v1", "sha256:4"), 0);
    assert_int_equal(journal_tagstate_put(j, "hu", "b", "v1", "sha256:5"), 0);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v1", "sha256:1b"), 0);

    assert_int_equal(journal_tagstate_get(j, "hub", "app", "v1", &digest), 0);
    assert_string_equal(digest, "sha256:1b");
    free(digest);
    assert_int_equal(journal_tagstate_get(j, "hub2", "app", "v1", &digest), 0);
    assert_string_equal(digest, "sha256:4");
    free(digest);

    struct poll_log log = {0};
    assert_int_equal(journal_tagstate_scan(j, "hub", NULL, poll_collect, &log), 0);
    assert_int_equal(log.n, 3);
    assert_string_equal(log.lines[0], "app v1 sha256:1b");
    assert_string_equal(log.lines[1], "app v2 sha256:2");
    assert_string_equal(log.lines[2], "lib/b v1 sha256:3");
    poll_log_release(&log);

    /* One repository's: "app" is not a prefix match for "app2" or "lib/b". */
    assert_int_equal(journal_tagstate_put(j, "hub", "app2", "v1", "sha256:6"), 0);
    assert_int_equal(journal_tagstate_scan(j, "hub", "app", poll_collect, &log), 0);
    assert_int_equal(log.n, 2);
    assert_string_equal(log.lines[0], "app v1 sha256:1b");
    assert_string_equal(log.lines[1], "app v2 sha256:2");
    poll_log_release(&log);
    assert_int_equal(journal_tagstate_put(j, "hub", "app2", "v1", NULL), 0);
    assert_int_equal(journal_tagstate_scan(j, "hub", "", poll_collect, &log), FERRY_EINVAL);

    log.stop_after = 1;
    assert_int_equal(journal_tagstate_scan(j, "hub", NULL, poll_collect, &log), 0);
    assert_int_equal(log.n, 1);
    poll_log_release(&log);

    assert_int_equal(journal_tagstate_scan(j, "nobody", NULL, poll_collect, &log), 0);
    assert_int_equal(log.n, 0);

    /* Forget one; it survives neither a get nor a scan, and the rest survive a reopen. */
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v2", NULL), 0);
    assert_int_equal(journal_tagstate_get(j, "hub", "app", "v2", &digest), FERRY_ENOTFOUND);
    journal_close(j);
    j = test_open(dir);
    assert_int_equal(journal_tagstate_scan(j, "hub", NULL, poll_collect, &log), 0);
    assert_int_equal(log.n, 2);
    assert_string_equal(log.lines[1], "lib/b v1 sha256:3");
    poll_log_release(&log);

    assert_int_equal(journal_tagstate_put(j, "", "app", "v1", "sha256:1"), FERRY_EINVAL);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", NULL, "sha256:1"), FERRY_EINVAL);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v1", ""), FERRY_EINVAL);
    assert_int_equal(journal_tagstate_get(j, "hub", "", "v1", &digest), FERRY_EINVAL);
    assert_int_equal(journal_tagstate_scan(j, "", NULL, poll_collect, &log), FERRY_EINVAL);

    /* A stored record that does not parse is an error, not a crash. */
    journal_close(j);
    raw_put(dir, "pollstate", "hub\0broken", 10, "sha256:x", 8);
    raw_put(dir, "pollstate", "hub\0app\0v3", 10, "", 0);
    j = test_open(dir);
    assert_int_equal(journal_tagstate_scan(j, "hub", NULL, poll_collect, &log), FERRY_EPARSE);
    poll_log_release(&log);
    assert_int_equal(journal_tagstate_get(j, "hub", "app", "v3", &digest), FERRY_EPARSE);
    assert_null(digest);
    journal_close(j);
    free(dir);
}

/* Retention deletes only below every cursor, only what is old enough, and never reuses a seq. */
static void test_retain(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char id[32];
    for (int i = 1; i <= 10; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        append_one(j, id);
    }
    int64_t later = now_ms() + 120000;
    uint64_t deleted = 99;

    /* No cursor: nothing goes. */
    assert_int_equal(journal_retain(j, 0, later, &deleted), 0);
    assert_int_equal(deleted, 0);

    assert_int_equal(journal_cursor_set(j, "dest-a", 6), 0);
    assert_int_equal(journal_cursor_set(j, "dest-b", 4), 0);
    /* Everything is younger than a day. */
    assert_int_equal(journal_retain(j, 86400000, later, &deleted), 0);
    assert_int_equal(deleted, 0);
    /* Old enough: only up to the lowest cursor. */
    assert_int_equal(journal_retain(j, 60000, later, &deleted), 0);
    assert_int_equal(deleted, 4);

    struct journal_entry e;
    assert_int_equal(journal_get(j, 4, &e), FERRY_ENOTFOUND);
    assert_int_equal(journal_get(j, 5, &e), 0);
    journal_entry_release(&e);
    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 6);
    assert_int_equal(stats.first_seq, 5);
    assert_int_equal(stats.last_seq, 10);
    assert_int_equal(stats.dedup_keys, 6);
    struct scan_log log = {0};
    assert_int_equal(journal_scan(j, 0, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 6);
    assert_int_equal(log.seqs[0], 5);
    scan_log_release(&log);

    /* Every cursor at the end, everything old: the journal empties but numbering goes on. */
    assert_int_equal(journal_cursor_set(j, "dest-a", 10), 0);
    assert_int_equal(journal_cursor_set(j, "dest-b", 12), 0);
    assert_int_equal(journal_retain(j, 60000, later, NULL), 0);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.first_seq, 0);
    assert_int_equal(stats.last_seq, 0);
    assert_int_equal(stats.dedup_keys, 0);
    assert_int_equal(journal_last_seq(j), 10);
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(journal_last_seq(j), 10);
    assert_int_equal(append_one(j, "ev-11"), 11);
    assert_int_equal(journal_retain(j, 60000, later, &deleted), 0);
    assert_int_equal(deleted, 0);
    journal_close(j);
    free(dir);
}

/* Read-only opens see what a read-write handle committed and refuse to write. */
static void test_read_only(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal_options ro = {.read_only = true};
    struct journal *r = NULL;
    char *err = NULL;

    /* Nothing there yet: read-only does not create. */
    assert_int_equal(journal_open(dir, &ro, &r, &err), -ENOENT);
    assert_null(r);
    assert_message(err);
    free(err);
    err = NULL;

    struct journal *j = test_open(dir);
    append_one(j, "ev-1");
    append_one(j, "ev-2");
    assert_int_equal(journal_cursor_set(j, "dest", 1), 0);
    assert_int_equal(journal_tagstate_put(j, "hub", "app", "v1", "sha256:1"), 0);

    r = test_open_opts(dir, true);
    assert_int_equal(journal_last_seq(r), 2);
    struct journal_entry e;
    assert_int_equal(journal_get(r, 2, &e), 0);
    assert_string_equal(e.event_id, "ev-2");
    journal_entry_release(&e);
    uint64_t seq = 0;
    assert_int_equal(journal_cursor_get(r, "dest", &seq), 0);
    assert_int_equal(seq, 1);
    char *digest = NULL;
    assert_int_equal(journal_tagstate_get(r, "hub", "app", "v1", &digest), 0);
    assert_string_equal(digest, "sha256:1");
    free(digest);

    struct journal_event ev = push_event("app", "v3", "ev-3");
    uint64_t seqs[1] = {7};
    assert_int_equal(journal_append(r, &ev, 1, seqs, &err), -EROFS);
    assert_int_equal(seqs[0], 0);
    assert_message(err);
    free(err);
    err = NULL;
    assert_int_equal(journal_cursor_set(r, "dest", 2), -EROFS);
    assert_int_equal(journal_tagstate_put(r, "hub", "app", "v1", NULL), -EROFS);
    assert_int_equal(journal_retain(r, 0, now_ms(), NULL), -EROFS);
    journal_close(r);

    /* A second read-write handle is refused while the first is open. */
    struct journal *again = NULL;
    assert_int_equal(journal_open(dir, NULL, &again, &err), -EBUSY);
    assert_null(again);
    assert_message(err);
    free(err);

    /* The writer is unaffected. */
    assert_int_equal(append_one(j, "ev-3"), 3);
    journal_close(j);
    free(dir);
}

/*
 * Another process: a read-write open fails with -EBUSY, a read-only open
 * sees the committed entries. Exit status 0 when both behave.
 */
static int child_other_process(const char *dir, const char *expect_last)
{
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(dir, NULL, &j, &err);
    int ok = rc == -EBUSY && j == NULL && err != NULL && strchr(err, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "child: read-write journal_open = %d: %s\n", rc, err ? err : "(none)");
    free(err);
    err = NULL;
    journal_close(j);
    j = NULL;

    struct journal_options ro = {.read_only = true};
    rc = journal_open(dir, &ro, &j, &err);
    if (rc != 0) {
        fprintf(stderr, "child: read-only journal_open = %d: %s\n", rc, err ? err : "(none)");
        free(err);
        return 1;
    }
    uint64_t want = strtoull(expect_last, NULL, 10);
    struct journal_entry e;
    if (journal_last_seq(j) != want || journal_get(j, want, &e) != 0) {
        fprintf(stderr, "child: read-only journal does not hold seq %llu\n",
                (unsigned long long)want);
        ok = 0;
    } else {
        journal_entry_release(&e);
    }
    journal_close(j);
    return ok ? 0 : 1;
}

static void test_other_process(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    append_one(j, "ev-1");
    append_one(j, "ev-2");

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "journal_test", "--child-other", dir, "2", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    journal_close(j);
    free(dir);
}

/* An invalid event fails the whole batch, names itself, and writes nothing. */
static void test_invalid_events(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    char long_id[514], long_tag[4098];
    memset(long_id, 'i', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    memset(long_tag, 't', sizeof(long_tag) - 1);
    long_tag[sizeof(long_tag) - 1] = '\0';

    struct journal_event bad[10];
    for (int i = 0; i < 10; i++)
        bad[i] = push_event("app", "v1", "bad");
    bad[0].repository = NULL;
    bad[1].source = "";
    bad[2].event_id = NULL;
    bad[3].event_id = long_id; /* 513 bytes */
    bad[4].tag = long_tag;     /* 4097 bytes */
    bad[5].digest = NULL;      /* a push needs its digest */
    bad[6].action = 0;
    bad[7].action = (enum journal_action)7;
    bad[8].action = JOURNAL_DELETE; /* a delete needs a digest or a tag */
    bad[8].digest = NULL;
    bad[8].tag = "";
    bad[9].media_type = long_tag;
    const char *names[10] = {"repository", "source", "event_id", "event_id", "tag",
                             "digest",     "action", "action",   "neither",  "media_type"};

    for (int i = 0; i < 10; i++) {
        struct journal_event batch[2] = {push_event("app", "v1", "good"), bad[i]};
        uint64_t seqs[2] = {5, 5};
        char *err = NULL;
        assert_int_equal(journal_append(j, batch, 2, seqs, &err), FERRY_EINVAL);
        assert_message(err);
        if (strstr(err, "event 1") == NULL || strstr(err, names[i]) == NULL)
            fail_msg("case %d: message \"%s\" does not name event 1 and %s", i, err, names[i]);
        free(err);
        assert_int_equal(seqs[0], 0);
        assert_int_equal(seqs[1], 0);
        assert_int_equal(journal_event_validate(&bad[i], NULL), FERRY_EINVAL);
    }
    assert_int_equal(journal_last_seq(j), 0);
    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.dedup_keys, 0);

    /* The limits themselves are allowed; so is a delete by tag alone. */
    long_id[512] = '\0';
    long_tag[4096] = '\0';
    struct journal_event edge[2] = {push_event("app", long_tag, long_id),
                                    {.action = JOURNAL_DELETE,
                                     .source = "s",
                                     .repository = "r",
                                     .tag = "t",
                                     .event_id = "del"}};
    uint64_t seqs[2];
    char *err = NULL;
    assert_int_equal(journal_append(j, edge, 2, seqs, &err), 0);
    assert_null(err);
    assert_int_equal(seqs[1], 2);
    struct journal_entry e;
    assert_int_equal(journal_get(j, 1, &e), 0);
    assert_int_equal(strlen(e.event_id), 512);
    assert_int_equal(strlen(e.tag), 4096);
    journal_entry_release(&e);
    journal_close(j);
    free(dir);
}

/* Append one event; returns its seq (0: not appended). */
static uint64_t append_event(struct journal *j, struct journal_event e)
{
    uint64_t seq = 0;
    char *err = NULL;
    int rc = journal_append(j, &e, 1, &seq, &err);
    if (rc != 0)
        fail_msg("journal_append(%s) = %d: %s", e.event_id, rc, err != NULL ? err : "(none)");
    return seq;
}

static void assert_tagstate(struct journal *j, const char *tag, const char *want)
{
    char *digest = NULL;
    int rc = journal_tagstate_get(j, "src", "app", tag, &digest);
    if (want == NULL) {
        assert_int_equal(rc, FERRY_ENOTFOUND);
    } else {
        assert_int_equal(rc, 0);
        assert_string_equal(digest, want);
    }
    free(digest);
}

/*
 * The tag state is the latest journaled value of each tag, whoever journaled
 * it, moved in the entry's own batch; an observation (if_changed) that says
 * what the journal already says is not appended, in one batch as across
 * batches, and a tag moved A -> B -> A is three entries.
 */
static void test_tagstate_follows_entries(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);

    /* A webhook's push sets it; the poller seeing the same is no new entry. */
    struct journal_event hook = push_event("app", "v1", "hook-1");
    assert_int_equal(append_event(j, hook), 1);
    assert_tagstate(j, "v1", DIGEST);
    struct journal_event seen = push_event("app", "v1", "poll-1");
    seen.if_changed = true;
    assert_int_equal(append_event(j, seen), 0);

    /* A -> B -> A: each change is an entry. */
    seen.digest = DIGEST2;
    seen.event_id = "poll-2";
    assert_int_equal(append_event(j, seen), 2);
    assert_tagstate(j, "v1", DIGEST2);
    seen.digest = DIGEST;
    seen.event_id = "poll-3";
    assert_int_equal(append_event(j, seen), 3);
    assert_tagstate(j, "v1", DIGEST);

    /* In one batch, the second observation sees the first. */
    struct journal_event two[3] = {push_event("app", "v2", "a"), push_event("app", "v2", "b"),
                                   push_event("app", "v2", "c")};
    two[0].if_changed = two[1].if_changed = two[2].if_changed = true;
    two[2].digest = DIGEST2;
    uint64_t seqs[3];
    char *err = NULL;
    assert_int_equal(journal_append(j, two, 3, seqs, &err), 0);
    assert_int_equal(seqs[0], 4);
    assert_int_equal(seqs[1], 0);
    assert_int_equal(seqs[2], 5);
    assert_tagstate(j, "v2", DIGEST2);

    /* A delete removes it; a delete observation of a tag that has none is no entry. */
    struct journal_event gone = {.action = JOURNAL_DELETE,
                                 .source = "src",
                                 .repository = "app",
                                 .tag = "v2",
                                 .event_id = "gone-1",
                                 .if_changed = true};
    assert_int_equal(append_event(j, gone), 6);
    assert_tagstate(j, "v2", NULL);
    gone.event_id = "gone-2";
    assert_int_equal(append_event(j, gone), 0);
    /* A webhook's delete (not an observation) is journaled all the same. */
    gone.event_id = "hook-2";
    gone.if_changed = false;
    assert_int_equal(append_event(j, gone), 7);

    /* An observation must name a tag. */
    struct journal_event untagged = push_event("app", NULL, "poll-x");
    untagged.if_changed = true;
    assert_int_equal(journal_append(j, &untagged, 1, seqs, &err), FERRY_EINVAL);
    assert_non_null(strstr(err, "names no tag"));
    free(err);

    /* Survives a reopen. */
    journal_close(j);
    j = test_open(dir);
    assert_tagstate(j, "v1", DIGEST);
    assert_tagstate(j, "v2", NULL);
    journal_close(j);
    free(dir);
}

/* An entry the source disagreed with says why, one line, across a reopen. */
static void test_entry_ignored(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    uint64_t seq = append_one(j, "del-1");
    struct journal_entry e;
    assert_int_equal(journal_get(j, seq, &e), 0);
    assert_null(e.ignored);
    journal_entry_release(&e);

    assert_int_equal(journal_entry_set_ignored(j, seq, "ignored: the source\nstill holds it"), 0);
    assert_int_equal(journal_entry_set_ignored(j, seq + 5, "x"), FERRY_ENOTFOUND);
    assert_int_equal(journal_entry_set_ignored(j, seq, ""), FERRY_EINVAL);
    journal_close(j);
    j = test_open(dir);
    assert_int_equal(journal_get(j, seq, &e), 0);
    assert_string_equal(e.ignored, "ignored: the source still holds it");
    assert_string_equal(e.event_id, "del-1");
    assert_string_equal(e.digest, DIGEST);
    journal_entry_release(&e);
    journal_close(j);

    struct journal *r = test_open_opts(dir, true);
    assert_int_equal(journal_entry_set_ignored(r, seq, "x"), -EROFS);
    journal_close(r);
    free(dir);
}

/*
 * A format-2 journal's tag state held only what the poller saw: opening it
 * for writing replays its entries, so a tag a webhook journaled is known and
 * the first poll after an upgrade journals nothing new for it.
 */
static void test_tagstate_upgrade(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    append_one(j, "hook-1");
    struct journal_event moved = push_event("app", "v1", "hook-2");
    moved.digest = DIGEST2;
    append_event(j, moved);
    journal_close(j);

    raw_delete(dir, "pollstate", "src\0app\0v1", 11);
    raw_put(dir, "default", "format", 6, "2", 1);
    j = test_open(dir);
    assert_tagstate(j, "v1", DIGEST2);
    journal_close(j);
    free(dir);
}

/* A counter as the journal stores it: 8 bytes, little-endian. */
static void raw_counter(const char *dir, const char *key, uint64_t v)
{
    char value[8];
    for (int i = 0; i < 8; i++)
        value[i] = (char)(v >> (8 * i));
    raw_put(dir, "default", key, strlen(key), value, sizeof(value));
}

/*
 * `ferry journal stats` reads counters kept with every append and every
 * retention, not a scan: appends, a redelivery (no entry), retention and a
 * reopen keep them equal to what is there; a counter changed behind the
 * journal's back is what stats says (so it is read, not counted); and a
 * journal of format 3 (no counters) is counted once when opened for writing.
 */
static void test_stats_counters(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 0);
    char id[32];
    for (int i = 1; i <= 8; i++) {
        snprintf(id, sizeof(id), "c-%d", i);
        append_one(j, id);
    }
    struct journal_event again = push_event("app", "v1", "c-3");
    uint64_t seq = 99;
    char *err = NULL;
    assert_int_equal(journal_append(j, &again, 1, &seq, &err), 0);
    assert_int_equal(seq, 0); /* a redelivery adds nothing */
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 8);
    assert_int_equal(stats.dedup_keys, 8);
    assert_int_equal(journal_cursor_set(j, "dest", 3), 0);
    assert_int_equal(journal_retain(j, 1, now_ms() + 60000, NULL), 0);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 5);
    assert_int_equal(stats.dedup_keys, 5);
    assert_int_equal(stats.first_seq, 4);
    assert_int_equal(stats.last_seq, 8);
    assert_true(stats.wal_bytes > 0);
    journal_close(j);

    j = test_open(dir);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 5);
    assert_int_equal(stats.dedup_keys, 5);
    journal_close(j);

    raw_counter(dir, "count:entries", 999);
    j = test_open(dir);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 999);
    journal_close(j);

    raw_put(dir, "default", "format", 6, "3", 1);
    raw_delete(dir, "default", "count:dedup", 11);
    j = test_open(dir);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 5);
    assert_int_equal(stats.dedup_keys, 5);
    assert_int_equal(append_one(j, "c-9"), 9);
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, 6);
    journal_close(j);
    free(dir);
}

/* Garbage in the entries family is FERRY_EPARSE from every reader, never a crash. */
/*
 * A journal of format 1 (dedup keys were bare event ids, no format record)
 * is upgraded when opened for writing: its dedup keys still catch a
 * redelivery, now per source, and no bare key is left. A format newer than
 * this build knows is refused with a clear error.
 */
static void test_format_upgrade(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    append_one(j, "up-1");
    append_one(j, "up-2");
    journal_close(j);

    char key[8];
    for (int i = 1; i <= 2; i++) {
        char id[16], composite[32];
        snprintf(id, sizeof(id), "up-%d", i);
        int n = snprintf(composite, sizeof(composite), "src\n%s", id);
        raw_delete(dir, "dedup", composite, (size_t)n);
        seq_key((uint64_t)i, key);
        raw_put(dir, "dedup", id, strlen(id), key, 8);
    }
    raw_delete(dir, "default", "format", 6);

    j = test_open(dir);
    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.dedup_keys, 2);
    struct journal_event again[2] = {push_event("app", "v1", "up-1"),
                                     push_event("app", "v1", "up-2")};
    again[1].source = "other";
    uint64_t seqs[2];
    char *err = NULL;
    assert_int_equal(journal_append(j, again, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], 0); /* the redelivery is still caught */
    assert_int_equal(seqs[1], 3); /* another source's id is its own */
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.dedup_keys, 3);
    journal_close(j);

    raw_put(dir, "default", "format", 6, "9", 1);
    struct journal *newer = NULL;
    assert_int_equal(journal_open(dir, NULL, &newer, &err), FERRY_EINVAL);
    assert_null(newer);
    assert_non_null(err);
    assert_non_null(strstr(err, "format 9, newer than this ferry understands"));
    free(err);
    free(dir);
}

static void test_corrupt_entries(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    for (int i = 1; i <= 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "ev-%d", i);
        append_one(j, id);
    }
    journal_close(j);

    char key[8];
    seq_key(2, key);
    raw_put(dir, "entries", key, 8, "\xff\xff\xff\xff\x0f garbage", 14);
    /* Decodes, but lacks its required fields. */
    Ferry__JournalEntry rec = FERRY__JOURNAL_ENTRY__INIT;
    rec.seq = 3;
    rec.action = FERRY__JOURNAL_ENTRY__ACTION__PUSH;
    uint8_t packed[256];
    size_t len = ferry__journal_entry__pack(&rec, packed);
    seq_key(3, key);
    raw_put(dir, "entries", key, 8, (const char *)packed, len);

    j = test_open(dir);
    assert_int_equal(journal_last_seq(j), 4);
    struct journal_entry e;
    assert_int_equal(journal_get(j, 1, &e), 0);
    journal_entry_release(&e);
    assert_int_equal(journal_get(j, 2, &e), FERRY_EPARSE);
    assert_int_equal(journal_get(j, 3, &e), FERRY_EPARSE);
    assert_int_equal(journal_get(j, 4, &e), 0);
    journal_entry_release(&e);
    struct scan_log log = {0};
    assert_int_equal(journal_scan(j, 0, 0, scan_collect, &log), FERRY_EPARSE);
    assert_int_equal(log.n, 1);
    scan_log_release(&log);
    assert_int_equal(journal_scan(j, 3, 0, scan_collect, &log), 0);
    assert_int_equal(log.n, 1);
    scan_log_release(&log);
    /* Retention stops at the corrupt entry rather than skipping it. */
    assert_int_equal(journal_cursor_set(j, "dest", 4), 0);
    uint64_t deleted = 0;
    assert_int_equal(journal_retain(j, 0, now_ms() + 1000, &deleted), FERRY_EPARSE);
    assert_int_equal(deleted, 1);
    journal_close(j);

    /* A corrupt newest entry makes the journal refuse to open: seqs could not resume. */
    seq_key(4, key);
    rec.seq = 5;
    rec.source = "src";
    rec.repository = "app";
    rec.digest = DIGEST;
    rec.event_id = "ev-4";
    len = ferry__journal_entry__pack(&rec, packed);
    raw_put(dir, "entries", key, 8, (const char *)packed, len);
    struct journal *bad = NULL;
    char *err = NULL;
    assert_int_equal(journal_open(dir, NULL, &bad, &err), FERRY_EPARSE);
    assert_null(bad);
    assert_message(err);
    free(err);
    free(dir);
}

/* The crash test: one acknowledged append as the child reports it through the pipe. */
#define CRASH_ID_MAX 56
struct crash_record {
    uint64_t seq;
    char event_id[CRASH_ID_MAX];
};

/*
 * Append small batches forever (until SIGKILL), reporting every acknowledged
 * event. Each batch repeats an event id of the batch before, which must come
 * back as a duplicate even across crashes.
 */
static int child_crash(const char *dir, const char *fd_arg, const char *run_arg)
{
    int fd = atoi(fd_arg);
    int run = atoi(run_arg);
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(dir, NULL, &j, &err);
    if (rc != 0) {
        fprintf(stderr, "crash child: journal_open = %d: %s\n", rc, err ? err : "(none)");
        return 2;
    }
    char ids[5][CRASH_ID_MAX];
    for (int batch = 0; batch < 1000000; batch++) {
        struct journal_event events[5];
        for (int k = 0; k < 4; k++) {
            snprintf(ids[k], sizeof(ids[k]), "run%d-b%d-e%d", run, batch, k);
            events[k] = push_event("app", "v1", ids[k]);
        }
        snprintf(ids[4], sizeof(ids[4]), "run%d-b%d-e%d", run, batch > 0 ? batch - 1 : 0, 1);
        events[4] = push_event("app", "v1", ids[4]);
        uint64_t seqs[5];
        rc = journal_append(j, events, 5, seqs, &err);
        if (rc != 0) {
            fprintf(stderr, "crash child: journal_append = %d: %s\n", rc, err ? err : "(none)");
            return 3;
        }
        for (int k = 0; k < 5; k++) {
            if (seqs[k] == 0)
                continue;
            struct crash_record rec = {.seq = seqs[k]};
            memcpy(rec.event_id, ids[k], sizeof(rec.event_id));
            if (write(fd, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
                return 4;
        }
    }
    journal_close(j);
    return 0;
}

struct crash_acks {
    struct crash_record *recs;
    size_t n, cap;
};

/* Read whatever records are in the pipe now (or block until EOF when `drain`). */
static bool crash_read(int fd, struct crash_acks *acks, char *partial, size_t *partial_len,
                       bool drain)
{
    for (;;) {
        char buf[64 * sizeof(struct crash_record)];
        ssize_t got = read(fd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno == EAGAIN && !drain)
            return true;
        if (got <= 0)
            return false;
        for (ssize_t i = 0; i < got; i++) {
            partial[(*partial_len)++] = buf[i];
            if (*partial_len < sizeof(struct crash_record))
                continue;
            if (acks->n == acks->cap) {
                acks->cap = acks->cap ? 2 * acks->cap : 256;
                acks->recs = xrealloc(acks->recs, acks->cap * sizeof(*acks->recs));
            }
            memcpy(&acks->recs[acks->n++], partial, sizeof(struct crash_record));
            *partial_len = 0;
        }
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct crash_scan {
    uint64_t prev;
    size_t n;
    char **ids;
    size_t cap;
};

static int crash_collect(const struct journal_entry *e, void *arg)
{
    struct crash_scan *s = arg;
    /* Stored seqs are consecutive: no gap, no repeat. */
    if (s->n > 0 && e->seq != s->prev + 1)
        fail_msg("seq %llu follows %llu", (unsigned long long)e->seq, (unsigned long long)s->prev);
    s->prev = e->seq;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->ids = xrealloc(s->ids, s->cap * sizeof(*s->ids));
    }
    s->ids[s->n++] = xstrdup(e->event_id);
    return 0;
}

/* After each crash: every acknowledged event is there exactly once, at its seq. */
static void crash_verify(const char *dir, const struct crash_acks *acks)
{
    struct journal *j = test_open(dir);
    struct crash_scan scan = {0};
    assert_int_equal(journal_scan(j, 0, 0, crash_collect, &scan), 0);
    assert_true(scan.n >= acks->n);
    assert_int_equal(journal_last_seq(j), scan.prev);
    qsort(scan.ids, scan.n, sizeof(*scan.ids), compare_strings);
    for (size_t i = 1; i < scan.n; i++) {
        if (strcmp(scan.ids[i - 1], scan.ids[i]) == 0)
            fail_msg("event %s is stored twice", scan.ids[i]);
    }
    for (size_t i = 0; i < acks->n; i++) {
        struct journal_entry e;
        int rc = journal_get(j, acks->recs[i].seq, &e);
        if (rc != 0)
            fail_msg("acknowledged seq %llu (%s) is missing: %d",
                     (unsigned long long)acks->recs[i].seq, acks->recs[i].event_id, rc);
        assert_string_equal(e.event_id, acks->recs[i].event_id);
        journal_entry_release(&e);
        if (i > 0)
            assert_true(acks->recs[i].seq > acks->recs[i - 1].seq);
    }
    for (size_t i = 0; i < scan.n; i++)
        free(scan.ids[i]);
    free(scan.ids);
    journal_close(j);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void test_crash_safety(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct crash_acks acks = {0};
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    print_message("crash test seed=%u\n", seed);
    /* The journal exists before the first child, so that a kill during creation is not the test. */
    journal_close(test_open(dir));

    for (int run = 0; run < 4; run++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            char fd_arg[16], run_arg[16];
            snprintf(fd_arg, sizeof(fd_arg), "%d", fds[1]);
            snprintf(run_arg, sizeof(run_arg), "%d", run);
            execl("/proc/self/exe", "journal_test", "--child-crash", dir, fd_arg, run_arg,
                  (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);

        /* Wait for the first acknowledgement, then kill at a random moment after it. */
        char partial[sizeof(struct crash_record)];
        size_t partial_len = 0;
        size_t before = acks.n;
        bool open = true;
        for (int waited = 0; open && acks.n == before && waited < 30000; waited += 10) {
            struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
            poll(&pfd, 1, 10);
            open = crash_read(fds[0], &acks, partial, &partial_len, false);
        }
        assert_true(acks.n > before);
        long delay = rand() % 150;
        for (long waited = 0; open && waited < delay; waited += 5) {
            sleep_ms(5);
            open = crash_read(fds[0], &acks, partial, &partial_len, false);
        }
        assert_true(open);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_int_equal(fcntl(fds[0], F_SETFL, 0), 0);
        crash_read(fds[0], &acks, partial, &partial_len, true);
        close(fds[0]);
        /* The child writes whole records in one write() each. */
        assert_int_equal(partial_len, 0);
        print_message("crash run %d: killed after %ld ms, %zu acknowledged in all\n", run, delay,
                      acks.n);
        crash_verify(dir, &acks);
    }
    free(acks.recs);
    free(dir);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct journal *j = (struct journal *)&j;
    char *err = NULL;
    assert_int_equal(journal_open("", NULL, &j, &err), FERRY_EINVAL);
    assert_null(j);
    assert_message(err);
    free(err);
    err = NULL;

    /* A plain file where the directory should be. */
    char *path = test_dir();
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_true(journal_open(path, NULL, &j, &err) < 0);
    assert_null(j);
    assert_message(err);
    free(err);
    free(path);
    journal_close(NULL);
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

/*
 * Append `n` pushes of app:tag-<i> (event ids "<prefix>-<i>"), in batches as
 * the committer makes them; returns the last seq.
 */
static uint64_t append_many(struct journal *j, const char *prefix, size_t n)
{
    enum { BATCH = 256 };
    static char ids[BATCH][32], tags[BATCH][32];
    struct journal_event events[BATCH];
    uint64_t seqs[BATCH];
    uint64_t last = 0;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < BATCH ? n - done : BATCH;
        for (size_t i = 0; i < k; i++) {
            snprintf(ids[i], sizeof(ids[i]), "%s-%zu", prefix, done + i);
            snprintf(tags[i], sizeof(tags[i]), "tag-%zu", done + i);
            events[i] = push_event("app", tags[i], ids[i]);
        }
        char *err = NULL;
        if (journal_append(j, events, k, seqs, &err) != 0)
            fail_msg("journal_append: %s", err != NULL ? err : "(none)");
        for (size_t i = 0; i < k; i++)
            assert_true(seqs[i] != 0);
        last = seqs[k - 1];
        done += k;
    }
    return last;
}

/*
 * Retention writes its deletions JOURNAL_WRITE_CHUNK at a time: a pass over
 * more than two batches deletes every expired entry and its dedup key, and
 * stops at the first entry a cursor still needs.
 */
static void test_retain_in_chunks(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    const uint64_t total = 2 * JOURNAL_WRITE_CHUNK + 8;
    assert_int_equal(append_many(j, "chunk", total), total);
    const uint64_t keep = 3;
    assert_int_equal(journal_cursor_set(j, "dest", total - keep), 0);

    uint64_t deleted = 0;
    assert_int_equal(journal_retain(j, 0, now_ms() + 60000, &deleted), 0);
    assert_int_equal(deleted, total - keep);
    struct journal_stats stats;
    assert_int_equal(journal_get_stats(j, &stats), 0);
    assert_int_equal(stats.entries, keep);
    assert_int_equal(stats.dedup_keys, keep);
    assert_int_equal(stats.first_seq, total - keep + 1);
    assert_int_equal(stats.last_seq, total);

    /* The deleted ids are forgotten, the kept ones still deduplicate. */
    char kept_id[32];
    snprintf(kept_id, sizeof(kept_id), "chunk-%llu", (unsigned long long)(total - 1));
    struct journal_event again[2] = {push_event("app", "tag-0", "chunk-0"),
                                     push_event("app", "x", kept_id)};
    uint64_t seqs[2];
    char *err = NULL;
    assert_int_equal(journal_append(j, again, 2, seqs, &err), 0);
    assert_int_equal(seqs[0], total + 1);
    assert_int_equal(seqs[1], 0);
    journal_close(j);
    free(dir);
}

/*
 * The upgrade to format 3 replays every entry into the tag state, writing
 * JOURNAL_WRITE_CHUNK entries at a time: the first tag and the last, on
 * either side of a batch boundary, both come back.
 */
static void test_upgrade_in_chunks(void **state)
{
    (void)state;
    char *dir = test_dir();
    struct journal *j = test_open(dir);
    const size_t total = JOURNAL_WRITE_CHUNK + 5;
    append_many(j, "up", total);
    journal_close(j);

    char last_tag[32], key[64];
    snprintf(last_tag, sizeof(last_tag), "tag-%zu", total - 1);
    static const char first_key[] = "src\0app\0tag-0";
    raw_delete(dir, "pollstate", first_key, sizeof(first_key) - 1);
    int n = snprintf(key, sizeof(key), "src%capp%c%s", 0, 0, last_tag);
    raw_delete(dir, "pollstate", key, (size_t)n);
    raw_put(dir, "default", "format", 6, "2", 1);

    j = test_open(dir);
    assert_tagstate(j, "tag-0", DIGEST);
    assert_tagstate(j, last_tag, DIGEST);
    journal_close(j);
    free(dir);
}

/* An event that owns its strings gives them all back and is left zeroed. */
static void test_event_release(void **state)
{
    (void)state;
    struct journal_event e = {
        .action = JOURNAL_DELETE,
        .source = xstrdup("src"),
        .repository = xstrdup("app"),
        .digest = xstrdup(DIGEST),
        .tag = xstrdup("v1"),
        .media_type = xstrdup("application/vnd.oci.image.manifest.v1+json"),
        .event_id = xstrdup("ev-1"),
        .event_unix_ms = 1,
        .if_changed = true,
    };
    journal_event_release(&e);
    assert_null(e.source);
    assert_null(e.repository);
    assert_null(e.digest);
    assert_null(e.tag);
    assert_null(e.media_type);
    assert_null(e.event_id);
    assert_int_equal(e.event_unix_ms, 0);
    assert_false(e.if_changed);
    /* Absent strings, and no event at all, are fine. */
    struct journal_event empty = {.source = xstrdup("src")};
    journal_event_release(&empty);
    assert_null(empty.source);
    journal_event_release(NULL);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child-other") == 0)
        return child_other_process(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "--child-crash") == 0)
        return child_crash(argv[2], argv[3], argv[4]);

    /* Exercise the debug logging of RocksDB errors and corrupt entries too. */
    log_threshold = FERRY_LOG_DEBUG;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_get_scan),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_seq_survives_reopen),
        cmocka_unit_test(test_cursors),
        cmocka_unit_test(test_pollstate),
        cmocka_unit_test(test_retain),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_other_process),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_corrupt_entries),
        cmocka_unit_test(test_format_upgrade),
        cmocka_unit_test(test_tagstate_upgrade),
        cmocka_unit_test(test_tagstate_follows_entries),
        cmocka_unit_test(test_entry_ignored),
        cmocka_unit_test(test_crash_safety),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_retain_in_chunks),
        cmocka_unit_test(test_stats_counters),
        cmocka_unit_test(test_upgrade_in_chunks),
        cmocka_unit_test(test_event_release),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
