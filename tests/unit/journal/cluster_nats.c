/*
 * The cluster's journal (journal_js.c) against real NATS JetStream servers.
 * Not a unit test ctest runs by itself: it needs servers, so
 * tests/integration/journal_cluster_test.sh starts a 3-server cluster on
 * loopback and runs this with NATS_URLS (comma-separated) and a fresh
 * FERRY_TEST_PREFIX (stream and bucket names of its own).
 *
 *   cluster_journal_nats             every test below
 *   cluster_journal_nats --survivor  after the script killed one server:
 *                                    what the full run wrote is all there,
 *                                    and appends and raises still work
 *   cluster_journal_nats --work-wait DIR  the shared work opened while the
 *                                    servers have no quorum waits for it
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "unit.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/digest.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define DIGEST  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* Under the script's TEST_TMP, which lib.sh removes even when a check aborts. */
static char test_root[4096];
static int test_dir_seq;
static char *servers[8];
static size_t n_servers;
static const char *prefix;

static struct journal_cluster_options test_options(void)
{
    static char stream[128], buckets[128];
    snprintf(stream, sizeof(stream), "%s_JOURNAL", prefix);
    snprintf(buckets, sizeof(buckets), "%s", prefix);
    return (struct journal_cluster_options){
        .servers = (const char *const *)servers,
        .n_servers = n_servers,
        .name = "cluster-journal-test",
        .stream = stream,
        .bucket_prefix = buckets,
        .replicas = 3,
        .duplicate_window_ms = 120000,
        .timeout_ms = 5000,
    };
}

static struct journal *local_journal(void)
{
    char *dir = xasprintf("%s/local%d", test_root, test_dir_seq++);
    struct journal *j = NULL;
    char *err = NULL;
    struct journal_options o = {0};
    int rc = journal_open(dir, &o, &j, &err);
    if (rc != 0)
        fail_msg("journal_open(%s) = %d: %s", dir, rc, err != NULL ? err : "?");
    free(dir);
    return j;
}

/* A node's journal: the cluster's, with a local one of its own. */
static struct journal *node_open(void)
{
    struct journal_cluster_options o = test_options();
    struct journal *j = NULL;
    char *err = NULL;
    int rc = journal_open_cluster(&o, local_journal(), &j, &err);
    if (rc != 0)
        fail_msg("journal_open_cluster = %d: %s", rc, err != NULL ? err : "?");
    assert_null(err);
    assert_string_equal(journal_backend_name(j), "jetstream");
    return j;
}

static struct journal_event push(const char *repository, const char *tag, const char *digest,
                                 const char *event_id)
{
    return (struct journal_event){
        .action = JOURNAL_PUSH,
        .source = "hub",
        .repository = repository,
        .tag = tag,
        .digest = digest,
        .media_type = "application/vnd.oci.image.manifest.v1+json",
        .event_id = event_id,
        .event_unix_ms = 1700000000000,
    };
}

/* A plain NATS client of the test's own, as another program on the servers would be. */
static jsCtx *raw_jetstream(natsConnection **nc)
{
    natsOptions *no = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsOptions_Create(&no), NATS_OK);
    assert_int_equal(natsOptions_SetServers(no, (const char **)servers, (int)n_servers), NATS_OK);
    assert_int_equal(natsConnection_Connect(nc, no), NATS_OK);
    natsOptions_Destroy(no);
    assert_int_equal(natsConnection_JetStream(&js, *nc, NULL), NATS_OK);
    return js;
}

/* ---- Opening ---- */

static void test_open_errors(void **state)
{
    (void)state;
    struct journal *j = NULL;
    char *err = NULL;
    struct journal_cluster_options o = test_options();

    o.n_servers = 0;
    assert_int_equal(journal_open_cluster(&o, local_journal(), &j, &err), FERRY_EINVAL);
    assert_message(err);
    assert_null(j);
    free(err);

    o = test_options();
    o.stream = "has.dot";
    assert_int_equal(journal_open_cluster(&o, local_journal(), &j, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);

    o = test_options();
    o.replicas = 7;
    assert_int_equal(journal_open_cluster(&o, local_journal(), &j, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);

    /* A server URL is said in errors: one with credentials is refused, unsaid. */
    const char *with_password[] = {"nats://ferry:s3cret@127.0.0.1:1"};
    o = test_options();
    o.servers = with_password;
    o.n_servers = 1;
    assert_int_equal(journal_open_cluster(&o, local_journal(), &j, &err), FERRY_EINVAL);
    assert_message(err);
    assert_null(strstr(err, "s3cret"));
    free(err);

    /* Nothing listens there: refused, soon. */
    const char *nowhere[] = {"nats://127.0.0.1:1"};
    o = test_options();
    o.servers = nowhere;
    o.n_servers = 1;
    o.timeout_ms = 500;
    assert_int_equal(journal_open_cluster(&o, local_journal(), &j, &err), -ECONNREFUSED);
    assert_message(err);
    assert_null(j);
    free(err);
}

/* ---- Entries ---- */

struct collected {
    uint64_t seqs[64];
    size_t n;
};

static int collect(const struct journal_entry *e, void *arg)
{
    struct collected *c = arg;
    if (c->n < 64)
        c->seqs[c->n++] = e->seq;
    return 0;
}

static void test_append_dedup_two_nodes(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    uint64_t before = journal_last_seq(a);
    struct journal_event ev[3] = {
        push("library/nginx", "1.25", DIGEST, "e1"),
        push("library/nginx", "latest", DIGEST, "e2"),
        push("team.a/app", "v1.0", DIGEST2, "e3"),
    };
    uint64_t seqs[3];
    char *err = NULL;
    assert_int_equal(journal_append(a, ev, 3, seqs, &err), 0);
    assert_null(err);
    assert_int_equal(seqs[0], before + 1);
    assert_int_equal(seqs[1], before + 2);
    assert_int_equal(seqs[2], before + 3);

    /* The same events through the other node: the servers drop them. */
    uint64_t again[3];
    assert_int_equal(journal_append(b, ev, 3, again, &err), 0);
    assert_int_equal(again[0], 0);
    assert_int_equal(again[1], 0);
    assert_int_equal(again[2], 0);
    /* A repeat inside one batch, too. */
    struct journal_event twice[2] = {push("r", "t", DIGEST, "e4"), push("r", "t", DIGEST, "e4")};
    assert_int_equal(journal_append(b, twice, 2, again, &err), 0);
    assert_int_equal(again[0], before + 4);
    assert_int_equal(again[1], 0);

    /* Either node reads every entry, with what it said. */
    struct journal_entry e;
    assert_int_equal(journal_get(b, seqs[2], &e), 0);
    assert_int_equal(e.seq, seqs[2]);
    assert_string_equal(e.source, "hub");
    assert_string_equal(e.repository, "team.a/app");
    assert_string_equal(e.tag, "v1.0");
    assert_string_equal(e.digest, DIGEST2);
    assert_string_equal(e.event_id, "e3");
    assert_null(e.ignored);
    assert_true(e.received_unix_ms > 0);
    journal_entry_release(&e);
    assert_int_equal(journal_get(a, before + 1000, &e), FERRY_ENOTFOUND);
    assert_int_equal(journal_get(a, 0, &e), FERRY_ENOTFOUND);

    struct collected c = {0};
    assert_int_equal(journal_scan(b, before, 0, collect, &c), 0);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.seqs[0], before + 1);
    assert_int_equal(c.seqs[3], before + 4);
    memset(&c, 0, sizeof(c));
    assert_int_equal(journal_scan(b, before + 1, 2, collect, &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[0], before + 2);
    assert_true(journal_last_seq(b) >= before + 4);

    struct journal_stats st;
    assert_int_equal(journal_get_stats(a, &st), 0);
    assert_true(st.entries >= 4);
    assert_int_equal(st.last_seq, journal_last_seq(a));
    assert_true(st.table_bytes > 0);

    /* A bad event publishes nothing of its batch. */
    struct journal_event bad[2] = {push("r", "t", DIGEST, "e5"), push("r", "t", DIGEST, NULL)};
    assert_int_equal(journal_append(a, bad, 2, seqs, &err), FERRY_EINVAL);
    assert_message(err);
    free(err);
    assert_int_equal(journal_get(a, before + 5, &e), FERRY_ENOTFOUND);

    /* Ignored: kept beside the entry, one line. */
    assert_int_equal(journal_entry_set_ignored(a, before + 1, "the source\nholds another"), 0);
    assert_int_equal(journal_get(b, before + 1, &e), 0);
    assert_non_null(e.ignored);
    assert_string_equal(e.ignored, "the source holds another");
    journal_entry_release(&e);
    assert_int_equal(journal_entry_set_ignored(a, before + 1000, "x"), FERRY_ENOTFOUND);
    assert_int_equal(journal_entry_set_ignored(a, before + 1, ""), FERRY_EINVAL);

    journal_close(a);
    journal_close(b);
}

/*
 * n pushes of repository `repo`, event ids "<name>:<i>", tags "<t><i % tags>",
 * DIGEST and DIGEST2 in turn; `ids` and `tags` hold their strings.
 */
static void events_fill(struct journal_event *ev, char (*ids)[32], char (*tags)[16], int n,
                        const char *repo, const char *name, char t, int n_tags)
{
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s:%d", name, i);
        snprintf(tags[i], sizeof(tags[i]), "%c%d", t, i % n_tags);
        ev[i] = push(repo, tags[i], i % 2 ? DIGEST : DIGEST2, ids[i]);
    }
}

/*
 * A large batch goes out without waiting for each ack: every event gets its
 * seq, in order; the same batch again is all repeats; an observation in the
 * middle of a batch compares with the events before it.
 */
static void test_append_batch(void **state)
{
    (void)state;
    struct journal *a = node_open();
    enum { N = 300 };
    static struct journal_event ev[N];
    static char ids[N][32], tags[N][16];
    static uint64_t seqs[N];
    char *err = NULL;
    events_fill(ev, ids, tags, N, "batch/repo", "batch", 'b', 50);
    /* Event 150 observes tag b0 as DIGEST2: event 100 (b0, DIGEST2) was before it. */
    ev[150].if_changed = true;
    ev[150].digest = DIGEST2;
    ev[150].tag = "b0";
    assert_int_equal(journal_append(a, ev, N, seqs, &err), 0);
    assert_null(err);
    uint64_t prev = 0;
    for (int i = 0; i < N; i++) {
        if (i == 150) {
            assert_int_equal(seqs[i], 0); /* no change */
            continue;
        }
        if (seqs[i] <= prev)
            fail_msg("event %d got seq %" PRIu64 " after %" PRIu64, i, seqs[i], prev);
        prev = seqs[i];
    }
    assert_int_equal(journal_append(a, ev, N, seqs, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(seqs[i], 0);

    /* How fast, on this machine (a figure, not a target): 2,000 events in batches of 200. */
    static struct journal_event more[200];
    static char more_ids[200][32];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int b = 0; b < 10; b++) {
        for (int i = 0; i < 200; i++) {
            snprintf(more_ids[i], sizeof(more_ids[i]), "rate:%d:%d", b, i);
            more[i] = push("rate/repo", tags[i % 50], DIGEST, more_ids[i]);
        }
        assert_int_equal(journal_append(a, more, 200, seqs, &err), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("append: 2,000 events in batches of 200, %.0f events/s (3 replicas)\n", 2000 / secs);
    journal_close(a);
}

static int count_tag(const char *repository, const char *tag, const char *digest, void *arg)
{
    (void)digest;
    int *n = arg;
    if (strcmp(repository, "odd/na.me") == 0 && tag != NULL)
        (*n)++;
    return 0;
}

static void test_tagstate_observations(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    char *digest = NULL;
    char *err = NULL;
    uint64_t seq = 0;

    struct journal_event ev = push("odd/na.me", "v1.2_rc-3", DIGEST, "o1");
    assert_int_equal(journal_append(a, &ev, 1, &seq, &err), 0);
    assert_true(seq > 0);
    assert_int_equal(journal_tagstate_get(b, "hub", "odd/na.me", "v1.2_rc-3", &digest), 0);
    assert_string_equal(digest, DIGEST);
    free(digest);

    /* An observation that changes nothing is not appended, from either node. */
    struct journal_event obs = push("odd/na.me", "v1.2_rc-3", DIGEST, "poll:1");
    obs.if_changed = true;
    assert_int_equal(journal_append(b, &obs, 1, &seq, &err), 0);
    assert_int_equal(seq, 0);
    obs = push("odd/na.me", "v1.2_rc-3", DIGEST2, "poll:2");
    obs.if_changed = true;
    assert_int_equal(journal_append(b, &obs, 1, &seq, &err), 0);
    assert_true(seq > 0);
    assert_int_equal(journal_tagstate_get(a, "hub", "odd/na.me", "v1.2_rc-3", &digest), 0);
    assert_string_equal(digest, DIGEST2);
    free(digest);

    struct journal_event other = push("odd/na.me", "other", DIGEST, "o2");
    assert_int_equal(journal_append(a, &other, 1, &seq, &err), 0);
    int n = 0;
    assert_int_equal(journal_tagstate_scan(b, "hub", "odd/na.me", count_tag, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(journal_tagstate_scan(b, "hub", NULL, count_tag, &n), 0);
    assert_int_equal(n, 2);

    /* A delete: gone for both, and a repeat delete observation changes nothing. */
    struct journal_event del = {.action = JOURNAL_DELETE,
                                .source = "hub",
                                .repository = "odd/na.me",
                                .tag = "other",
                                .event_id = "d1"};
    assert_int_equal(journal_append(a, &del, 1, &seq, &err), 0);
    assert_true(seq > 0);
    assert_int_equal(journal_tagstate_get(b, "hub", "odd/na.me", "other", &digest),
                     FERRY_ENOTFOUND);
    del.event_id = "poll:3";
    del.if_changed = true;
    assert_int_equal(journal_append(b, &del, 1, &seq, &err), 0);
    assert_int_equal(seq, 0);
    n = 0;
    assert_int_equal(journal_tagstate_scan(a, "hub", "odd/na.me", count_tag, &n), 0);
    assert_int_equal(n, 1);

    /* A tag state is the last entry on the tag's subject: none without an entry. */
    assert_int_equal(journal_tagstate_put(a, "hub", "odd/na.me", "other", DIGEST), -ENOTSUP);
    assert_int_equal(journal_tagstate_get(b, "hub", "", "other", &digest), FERRY_EINVAL);

    journal_close(a);
    journal_close(b);
}

/*
 * Four nodes observe the same change of one tag at once, round after round
 * (the digest alternates): each change is appended, and the tag's state
 * follows.
 */
#define OBSERVERS 4
#define ROUNDS    30

struct observer {
    struct journal *j;
    int index;
    int round;
    uint64_t seqs[ROUNDS];
    int errors;
};

static pthread_barrier_t observe_barrier;

static void *observe(void *arg)
{
    struct observer *o = arg;
    for (int r = 0; r < ROUNDS; r++) {
        char id[32];
        snprintf(id, sizeof(id), "poll:%d:%d", r, o->index);
        struct journal_event ev = push("race/obs", "t", r % 2 == 0 ? DIGEST : DIGEST2, id);
        ev.if_changed = true;
        pthread_barrier_wait(&observe_barrier);
        char *err = NULL;
        if (journal_append(o->j, &ev, 1, &o->seqs[r], &err) != 0)
            o->errors++;
        free(err);
        pthread_barrier_wait(&observe_barrier);
    }
    return NULL;
}

static void test_observation_race(void **state)
{
    (void)state;
    /* One journal per thread: a journal takes one call at a time (journal.h). */
    struct observer obs[OBSERVERS];
    pthread_t threads[OBSERVERS];
    assert_int_equal(pthread_barrier_init(&observe_barrier, NULL, OBSERVERS), 0);
    for (int i = 0; i < OBSERVERS; i++)
        obs[i] = (struct observer){.j = node_open(), .index = i};
    for (int i = 0; i < OBSERVERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, observe, &obs[i]), 0);
    int errors = 0;
    for (int i = 0; i < OBSERVERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        errors += obs[i].errors;
    }
    pthread_barrier_destroy(&observe_barrier);
    assert_int_equal(errors, 0);
    /*
     * Every change is appended, and mostly once: nats-server before 2.10
     * does not serialise two publishes expecting one subject sequence
     * (issue 4320), so at the same instant both may land. An extra entry
     * holds the same digest, and the tag's state below is still right.
     */
    int extra = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int appended = 0;
        for (int i = 0; i < OBSERVERS; i++)
            appended += obs[i].seqs[r] != 0;
        if (appended == 0)
            fail_msg("round %d: the change was not appended", r);
        extra += appended - 1;
    }
    printf("observation race: %d rounds, %d entries more than one per change\n", ROUNDS, extra);
    char *digest = NULL;
    assert_int_equal(journal_tagstate_get(obs[1].j, "hub", "race/obs", "t", &digest), 0);
    assert_string_equal(digest, (ROUNDS - 1) % 2 == 0 ? DIGEST : DIGEST2);
    free(digest);
    for (int i = 0; i < OBSERVERS; i++)
        journal_close(obs[i].j);
}

/* ---- Fences ---- */

static void test_fences(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    uint64_t seq = 0;

    assert_int_equal(journal_fence_get(a, "eu", "library/nginx", "1.25", &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(journal_fence_raise(a, "eu", "library/nginx", "1.25", 5), 1);
    assert_int_equal(journal_fence_raise(b, "eu", "library/nginx", "1.25", 3), 0);
    /* At exactly its seq: a raise whose write landed though its answer was
     * lost, tried again by the shard's compare-and-set, is its own. */
    assert_int_equal(journal_fence_raise(b, "eu", "library/nginx", "1.25", 5), 1);
    assert_int_equal(journal_fence_raise_unsynced(b, "eu", "library/nginx", "1.25", 9), 1);
    assert_int_equal(journal_fence_get(a, "eu", "library/nginx", "1.25", &seq), 0);
    assert_int_equal(seq, 9);
    assert_int_equal(journal_fence_raise(a, "eu", "", "1.25", 9), FERRY_EINVAL);
    journal_close(a);
    journal_close(b);
}

/*
 * Two nodes writing one shard in turn: each finds the sequence it last saw
 * stale every time. After its first refusal a node asks the shard's last
 * sequence before it writes: three requests a raise (last, read, write),
 * where writing with the stale one took four (read, refused write, read,
 * write).
 */
static void test_fence_stale(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    enum { N = 40 };
    uint64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    /* Each node's first raise of the tag learns the shard, and a first refusal. */
    assert_int_equal(journal_fence_raise(a, "eu", "stale/repo", "t", 1), 1);
    assert_int_equal(journal_fence_raise(b, "eu", "stale/repo", "t", 2), 1);
    assert_int_equal(journal_fence_raise(a, "eu", "stale/repo", "t", 3), 1);
    assert_int_equal(journal_js_requests(a, &a0), 0);
    assert_int_equal(journal_js_requests(b, &b0), 0);
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(journal_fence_raise(i % 2 ? a : b, "eu", "stale/repo", "t", 4 + i), 1);
    assert_int_equal(journal_js_requests(a, &a1), 0);
    assert_int_equal(journal_js_requests(b, &b1), 0);
    uint64_t sent = (a1 - a0) + (b1 - b0);
    printf("fences: %d raises taking turns on one shard, %" PRIu64 " requests\n", N, sent);
    /* Three a raise, and a stale try every JS_SHARD_ASK_RUN + 1 on each node. */
    if (sent > 3 * N + 8)
        fail_msg("%d raises taking turns sent %" PRIu64 " requests (3 each is %d)", N, sent, 3 * N);
    uint64_t seq = 0;
    assert_int_equal(journal_fence_get(b, "eu", "stale/repo", "t", &seq), 0);
    assert_int_equal(seq, 3 + N);
    journal_close(a);
    journal_close(b);
}

/* How many messages each fence shard's stream holds now. */
static void fence_shard_msgs(jsCtx *js, uint64_t msgs[8])
{
    for (int n = 0; n < 8; n++) {
        char stream[128];
        snprintf(stream, sizeof(stream), "%s_fences_%d", prefix, n);
        jsStreamInfo *si = NULL;
        assert_int_equal(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
        msgs[n] = si->State.Msgs;
        jsStreamInfo_Destroy(si);
    }
}

/*
 * The fences of a fleet's tags (3 destinations, 8 repositories, tags v1 to
 * v3) spread over every shard: a shard's compare-and-set loses to every
 * write on that shard, so fences crowded onto a few shards make their raises
 * read and write again. With FNV-1a's low bits alone, 63 of these 72 fell on
 * two shards and four shards held none.
 */
static void test_fence_shards(void **state)
{
    (void)state;
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    struct journal *a = node_open();
    uint64_t before[8], after[8];
    fence_shard_msgs(js, before);
    const char *dests[] = {"d1", "d2", "d3"};
    for (int d = 0; d < 3; d++) {
        for (int r = 0; r < 8; r++) {
            for (int t = 1; t <= 3; t++) {
                char repo[32], tag[8];
                snprintf(repo, sizeof(repo), "fleet-%02d", r);
                snprintf(tag, sizeof(tag), "v%d", t);
                assert_int_equal(journal_fence_raise(a, dests[d], repo, tag, 7), 1);
            }
        }
    }
    fence_shard_msgs(js, after);
    /* Each raise wrote one new subject: 72 in all, 9 a shard on average. */
    uint64_t total = 0;
    for (int n = 0; n < 8; n++) {
        uint64_t here = after[n] - before[n];
        total += here;
        if (here < 3 || here > 27)
            fail_msg("fence shard %d holds %" PRIu64 " of the 72 fences", n, here);
    }
    assert_int_equal(total, 72);
    journal_close(a);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/*
 * Four nodes (a journal each) raise one fence with interleaved seqs at once.
 * Every raise is timed; for two raises that won (returned 1), the one that
 * ended before the other began must have the lower seq: a fence never moves
 * back, which a blind write (no compare-and-set) breaks. The fence ends at
 * the highest seq.
 */
#define RACERS 4
#define RAISES 40

struct raise_rec {
    uint64_t seq;
    int64_t start_ns, end_ns;
    int rc;
};

struct racer {
    struct journal *j;
    int index;
    struct raise_rec recs[RAISES];
};

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *race(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < RAISES; i++) {
        /* Each racer's seqs rise, but the others' interleave and overtake. */
        uint64_t seq = (uint64_t)(i * RACERS + (RACERS - r->index));
        r->recs[i].seq = seq;
        r->recs[i].start_ns = mono_ns();
        r->recs[i].rc = journal_fence_raise(r->j, "race", "repo", "tag", seq);
        r->recs[i].end_ns = mono_ns();
    }
    return NULL;
}

static void test_fence_race(void **state)
{
    (void)state;
    static struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++)
        racers[i] = (struct racer){.j = node_open(), .index = i};
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    int won = 0;
    for (int a = 0; a < RACERS; a++) {
        for (int i = 0; i < RAISES; i++) {
            const struct raise_rec *x = &racers[a].recs[i];
            if (x->rc < 0)
                fail_msg("raise %" PRIu64 " failed: %d", x->seq, x->rc);
            if (x->rc != 1)
                continue;
            won++;
            for (int b = 0; b < RACERS; b++) {
                for (int k = 0; k < RAISES; k++) {
                    const struct raise_rec *y = &racers[b].recs[k];
                    if (y->rc == 1 && y->end_ns < x->start_ns && y->seq >= x->seq)
                        fail_msg("the fence moved back: %" PRIu64 " won after %" PRIu64, x->seq,
                                 y->seq);
                }
            }
        }
    }
    uint64_t seq = 0;
    assert_int_equal(journal_fence_get(racers[0].j, "race", "repo", "tag", &seq), 0);
    assert_int_equal(seq, RACERS * RAISES);
    assert_true(won >= 1);
    printf("fence race: %d of %d raises won\n", won, RACERS * RAISES);
    for (int i = 0; i < RACERS; i++)
        journal_close(racers[i].j);
}

/* ---- Job status ---- */

struct jobs_seen {
    int n;
    int open;
};

static int count_job(const struct journal_job *job, void *arg)
{
    struct jobs_seen *s = arg;
    if (strcmp(job->destination, "dr.east") == 0) {
        s->n++;
        if (job->state != JOURNAL_JOB_COMPLETE)
            s->open++;
    }
    return 0;
}

static void test_jobs(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    char *tags[] = {"1.25", "latest"};
    struct journal_job job = {
        .destination = "dr.east",
        .repository = "library/nginx",
        .digest = DIGEST,
        .state = JOURNAL_JOB_PENDING,
        .seq = 7,
        .tags = tags,
        .n_tags = 2,
        .created_unix_ms = 1700000000000,
        .node = "node-a",
    };
    assert_int_equal(journal_job_put(a, &job), 0);
    job.digest = DIGEST2;
    job.state = JOURNAL_JOB_FAILED;
    job.last_error = "destination said 503";
    job.attempts = 3;
    assert_int_equal(journal_job_put(a, &job), 0);

    struct journal_job got;
    assert_int_equal(journal_job_get(b, "dr.east", "library/nginx", DIGEST2, &got), 0);
    assert_int_equal(got.state, JOURNAL_JOB_FAILED);
    assert_string_equal(got.last_error, "destination said 503");
    assert_int_equal(got.attempts, 3);
    assert_int_equal(got.n_tags, 2);
    assert_string_equal(got.tags[1], "latest");
    assert_string_equal(got.node, "node-a");
    journal_job_release(&got);
    assert_int_equal(journal_job_get(b, "dr.east", "library/nginx", "sha256:00", &got),
                     FERRY_ENOTFOUND);

    struct jobs_seen all = {0}, open = {0}, in = {0};
    assert_int_equal(journal_job_scan(b, count_job, &all), 0);
    assert_int_equal(all.n, 2);
    assert_int_equal(journal_job_scan_open(b, count_job, &open), 0);
    assert_int_equal(open.n, 2);
    assert_int_equal(journal_job_scan_in(b, "dr.east", "library/nginx", count_job, &in), 0);
    assert_int_equal(in.n, 2);

    /* Settled: out of the open jobs, still a job. */
    job.state = JOURNAL_JOB_COMPLETE;
    job.last_error = NULL;
    assert_int_equal(journal_job_put(b, &job), 0);
    memset(&open, 0, sizeof(open));
    assert_int_equal(journal_job_scan_open(a, count_job, &open), 0);
    assert_int_equal(open.n, 1);
    memset(&all, 0, sizeof(all));
    assert_int_equal(journal_job_scan(a, count_job, &all), 0);
    assert_int_equal(all.n, 2);
    assert_int_equal(all.open, 1);

    /* The settled job left nothing in the index: one message, the open job's. */
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    char index[128];
    snprintf(index, sizeof(index), "KV_%s_open", prefix);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, index, NULL, NULL), NATS_OK);
    assert_int_equal(si->State.Msgs, 1);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    job.state = 42;
    assert_int_equal(journal_job_put(a, &job), FERRY_EINVAL);
    journal_close(a);
    journal_close(b);
}

/* ---- What other NATS clients may put in the stream ---- */

/*
 * A message put straight onto a tag's subject by someone with publish
 * rights on the stream: one that is not an entry, and one that is the entry
 * of another tag. Neither becomes that tag's state, nor an entry anyone
 * reads; the tag's next observation is appended as if they were not there.
 */
static void test_hostile_messages(void **state)
{
    (void)state;
    struct journal *a = node_open();
    char *err = NULL;
    uint64_t seq = 0;
    struct journal_event ev = push("hostile/repo", "good", DIGEST, "h1");
    assert_int_equal(journal_append(a, &ev, 1, &seq, &err), 0);

    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);

    /* The subject of tag "good" of hostile/repo, as journal_js.c names it. */
    char *src = base64url_encode("hub", 3), *repo = base64url_encode("hostile/repo", 12),
         *tag = base64url_encode("good", 4);
    char subject[256];
    snprintf(subject, sizeof(subject), "%s_JOURNAL.entry.%s.%s.%s", prefix, src, repo, tag);
    free(src);
    free(repo);
    free(tag);
    jsPubAck *ack = NULL;
    assert_int_equal(js_Publish(&ack, js, subject, "not an entry", 12, NULL, NULL), NATS_OK);
    uint64_t junk = ack->Sequence;
    jsPubAck_Destroy(ack);
    /* A well-formed entry, of tag "evil": on "good"'s subject, it would set "good" to DIGEST2. */
    struct journal_event other = push("hostile/repo", "evil", DIGEST2, "h2");
    uint8_t *packed = NULL;
    size_t cap = 0;
    size_t len = journal_entry_pack(&other, 0, 1, &packed, &cap);
    assert_int_equal(js_Publish(&ack, js, subject, packed, (int)len, NULL, NULL), NATS_OK);
    uint64_t misplaced = ack->Sequence;
    jsPubAck_Destroy(ack);
    free(packed);

    struct journal_entry e;
    assert_int_equal(journal_get(a, junk, &e), FERRY_EPARSE);
    assert_int_equal(journal_get(a, misplaced, &e), FERRY_EPARSE);
    char *digest = NULL;
    assert_int_equal(journal_tagstate_get(a, "hub", "hostile/repo", "good", &digest),
                     FERRY_ENOTFOUND);
    assert_int_equal(journal_tagstate_get(a, "hub", "hostile/repo", "evil", &digest),
                     FERRY_ENOTFOUND);
    /* The scan goes past them. */
    struct collected c = {0};
    assert_int_equal(journal_scan(a, seq - 1, 0, collect, &c), 0);
    for (size_t i = 0; i < c.n; i++)
        assert_true(c.seqs[i] != junk && c.seqs[i] != misplaced);
    /* An observation of "good" is appended again, compared with nothing. */
    struct journal_event obs = push("hostile/repo", "good", DIGEST, "poll:h");
    obs.if_changed = true;
    assert_int_equal(journal_append(a, &obs, 1, &seq, &err), 0);
    assert_true(seq > misplaced);
    assert_int_equal(journal_tagstate_get(a, "hub", "hostile/repo", "good", &digest), 0);
    assert_string_equal(digest, DIGEST);
    free(digest);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    journal_close(a);
}

/* What a long scan saw: every seq in order, and the ignored marks. */
struct scanned {
    uint64_t last; /* the last seq seen */
    size_t n, in_order, marked;
    size_t stop_at; /* the callback stops the scan at this many (0: never) */
    bool wrong_mark;
};

static int scan_check(const struct journal_entry *e, void *arg)
{
    struct scanned *s = arg;
    if (e->seq > s->last)
        s->in_order++;
    s->last = e->seq;
    s->n++;
    if (e->ignored != NULL) {
        s->marked++;
        char want[32];
        snprintf(want, sizeof(want), "nothing new at %" PRIu64, e->seq);
        if (strcmp(e->ignored, want) != 0)
            s->wrong_mark = true;
    }
    return s->stop_at != 0 && s->n >= s->stop_at;
}

/*
 * A long scan (`ferry journal ls` of a big cluster journal) costs the
 * servers a few requests, not two per entry; it gives every entry once, in
 * order, each with its ignored mark; a limit and a stop by the callback
 * still hold.
 */
static void test_scan_long(void **state)
{
    (void)state;
    struct journal *a = node_open();
    enum { N = 1200 };
    static struct journal_event ev[N];
    static char ids[N][32], tags[N][16];
    static uint64_t seqs[N];
    char *err = NULL;
    uint64_t before = journal_last_seq(a);
    events_fill(ev, ids, tags, N, "scan/repo", "scan", 's', 97);
    assert_int_equal(journal_append(a, ev, N, seqs, &err), 0);
    assert_int_equal(seqs[0], before + 1);
    assert_int_equal(seqs[N - 1], before + N);
    /* Marks on three of them, and on one before them (not the scan's). */
    const int marked[] = {0, 517, N - 1};
    for (size_t i = 0; i < sizeof(marked) / sizeof(marked[0]); i++) {
        char why[32];
        snprintf(why, sizeof(why), "nothing new at %" PRIu64, seqs[marked[i]]);
        assert_int_equal(journal_entry_set_ignored(a, seqs[marked[i]], why), 0);
    }
    if (before > 0)
        assert_int_equal(journal_entry_set_ignored(a, before, "not this scan's"), 0);

    struct journal *b = node_open();
    uint64_t sent0 = 0, sent1 = 0;
    assert_int_equal(journal_js_requests(b, &sent0), 0);
    struct scanned s = {0};
    assert_int_equal(journal_scan(b, before, 0, scan_check, &s), 0);
    assert_int_equal(journal_js_requests(b, &sent1), 0);
    assert_int_equal(s.n, N);
    assert_int_equal(s.in_order, N);
    assert_int_equal(s.last, seqs[N - 1]);
    assert_int_equal(s.marked, 3);
    assert_false(s.wrong_mark);
    printf("scan: %d entries, %" PRIu64 " messages sent to the servers\n", N, sent1 - sent0);
    /* Two per entry was 2,400; a consumer, its flow control and a watch are tens. */
    if (sent1 - sent0 > 100)
        fail_msg("a scan of %d entries sent %" PRIu64 " messages to the servers", N, sent1 - sent0);

    /* A limit; a scan from the middle. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_scan(b, seqs[99], 500, scan_check, &s), 0);
    assert_int_equal(s.n, 500);
    assert_int_equal(s.in_order, 500);
    assert_int_equal(s.last, seqs[599]);
    assert_int_equal(s.marked, 1); /* 517 */
    assert_false(s.wrong_mark);
    /* A short one asks entry by entry, with the same answers. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_scan(b, seqs[510], 10, scan_check, &s), 0);
    assert_int_equal(s.n, 10);
    assert_int_equal(s.last, seqs[520]);
    assert_int_equal(s.marked, 1);
    assert_false(s.wrong_mark);
    /* The callback stops it. */
    memset(&s, 0, sizeof(s));
    s.stop_at = 300;
    assert_int_equal(journal_scan(b, before, 0, scan_check, &s), 0);
    assert_int_equal(s.n, 300);
    assert_int_equal(s.last, seqs[299]);
    journal_close(b);
    journal_close(a);
}

/* ---- Shared work ---- */

#define ACK_WAIT_MS JOURNAL_WORK_MIN_ACK_WAIT_MS

/* Room for 8 entries; `want` of them wanted until journal_work_want(). */
static struct journal_work *work_open(struct journal *j, size_t want)
{
    struct journal_work_options o = {.capacity = 8, .want = want, .ack_wait_ms = ACK_WAIT_MS};
    struct journal_work *w = NULL;
    assert_int_equal(journal_work_open(j, &o, &w), 0);
    assert_non_null(w);
    return w;
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* What one node took: the entries of one batch (event ids "<tag>:<i>"), by index. */
struct taker {
    struct journal_work *w;
    const char *tag;
    int seen[32];
    uint64_t seqs[32];
    bool settle;
    size_t want; /* entries it would hold at once */
};

static int take_one(const struct journal_entry *e, void *arg)
{
    struct taker *t = arg;
    size_t n = strlen(t->tag);
    int i = -1;
    if (strncmp(e->event_id, t->tag, n) == 0 && e->event_id[n] == ':')
        i = atoi(e->event_id + n + 1);
    if (i >= 0 && i < 32) {
        t->seen[i]++;
        t->seqs[i] = e->seq;
    }
    /* Anything else (the earlier tests' entries) is settled at once. */
    if (t->settle || i < 0)
        journal_work_settle(t->w, e->seq);
    return 0;
}

/* What the engine does: take what came, and ask for what it would hold more. */
static void take(struct taker *t)
{
    size_t held = 0, ready = 0;
    journal_work_take(t->w, 64, take_one, t);
    journal_work_counts(t->w, &held, &ready, NULL);
    journal_work_want(t->w, t->want > held ? t->want - held : 0);
}

static void append_batch(struct journal *j, const char *tag, int n)
{
    for (int i = 0; i < n; i++) {
        char id[64];
        uint64_t seq = 0;
        char *err = NULL;
        snprintf(id, sizeof(id), "%s:%d", tag, i);
        struct journal_event ev = push("work/repo", id, DIGEST, id);
        assert_int_equal(journal_append(j, &ev, 1, &seq, &err), 0);
        assert_true(seq > 0);
    }
}

static int count_seen(const struct taker *t, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += t->seen[i] > 0;
    return k;
}

static void test_work_shared(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();

    /* Two nodes share 20 entries: each goes to exactly one of them. */
    struct taker ta = {.w = work_open(a, 8), .want = 8, .tag = "w1", .settle = true};
    struct taker tb = {.w = work_open(b, 8), .want = 8, .tag = "w1", .settle = true};
    append_batch(a, "w1", 20);
    int64_t until = mono_ms() + 20000;
    while (mono_ms() < until) {
        take(&ta);
        take(&tb);
        int total = 0;
        for (int i = 0; i < 20; i++)
            total += ta.seen[i] + tb.seen[i];
        if (total >= 20)
            break;
        sleep_ms(20);
    }
    for (int i = 0; i < 20; i++)
        if (ta.seen[i] + tb.seen[i] != 1)
            fail_msg("entry w1:%d went to %d nodes' engines", i, ta.seen[i] + tb.seen[i]);
    journal_work_close(tb.w, true);

    /* A node that takes entries and dies: the other gets them within twice the ack wait. */
    struct taker dying = {.w = ta.w, .tag = "w2", .settle = false};
    append_batch(a, "w2", 5);
    until = mono_ms() + 10000;
    while (count_seen(&dying, 5) < 5 && mono_ms() < until) {
        take(&dying);
        sleep_ms(20);
    }
    assert_int_equal(count_seen(&dying, 5), 5);
    int64_t died = mono_ms();
    journal_work_close(dying.w, false); /* not given back: as a kill -9 */
    struct taker heir = {.w = work_open(b, 8), .want = 8, .tag = "w2", .settle = true};
    until = died + 2 * ACK_WAIT_MS + 1000;
    while (count_seen(&heir, 5) < 5 && mono_ms() < until) {
        take(&heir);
        sleep_ms(20);
    }
    int64_t took = mono_ms() - died;
    if (count_seen(&heir, 5) != 5)
        fail_msg("the dead node's entries: %d of 5 came to the other in %lld ms",
                 count_seen(&heir, 5), (long long)took);
    for (int i = 0; i < 5; i++)
        assert_int_equal(heir.seqs[i], dying.seqs[i]);
    printf("failover: the dead node's 5 entries came to the other in %lld ms (ack wait %d ms)\n",
           (long long)took, ACK_WAIT_MS);

    /* A node that stops cleanly gives back what it held: the other gets it well within the ack
     * wait. */
    struct taker leaving = {.w = heir.w, .tag = "w4", .settle = false};
    append_batch(a, "w4", 3);
    until = mono_ms() + 10000;
    while (count_seen(&leaving, 3) < 3 && mono_ms() < until) {
        take(&leaving);
        sleep_ms(20);
    }
    assert_int_equal(count_seen(&leaving, 3), 3);
    int64_t left = mono_ms();
    journal_work_close(leaving.w, true);
    struct taker next = {.w = work_open(a, 8), .want = 8, .tag = "w4", .settle = true};
    until = left + ACK_WAIT_MS / 2;
    while (count_seen(&next, 3) < 3 && mono_ms() < until) {
        take(&next);
        sleep_ms(20);
    }
    if (count_seen(&next, 3) != 3)
        fail_msg("a clean stop's entries: %d of 3 came to the other within %d ms",
                 count_seen(&next, 3), ACK_WAIT_MS / 2);
    printf("a clean stop gave its 3 entries to the other in %lld ms\n",
           (long long)(mono_ms() - left));

    /*
     * Kept alive: a node alone takes 3 entries and works on them for three
     * ack waits; another node, open all that time, never gets one.
     */
    journal_work_close(next.w, true);
    struct taker slow = {.w = work_open(a, 8), .want = 8, .tag = "w3", .settle = false};
    append_batch(a, "w3", 3);
    until = mono_ms() + 10000;
    while (count_seen(&slow, 3) < 3 && mono_ms() < until) {
        take(&slow);
        sleep_ms(20);
    }
    assert_int_equal(count_seen(&slow, 3), 3);
    struct taker other = {.w = work_open(b, 8), .want = 8, .tag = "w3", .settle = true};
    until = mono_ms() + 3 * ACK_WAIT_MS;
    while (mono_ms() < until) {
        take(&slow);
        take(&other);
        sleep_ms(50);
    }
    for (int i = 0; i < 3; i++) {
        if (other.seen[i] != 0)
            fail_msg("entry w3:%d, kept alive by the node working on it, went to another", i);
        assert_int_equal(slow.seen[i], 1);
    }
    size_t held = 0, ready = 0;
    journal_work_counts(slow.w, &held, &ready, NULL);
    assert_int_equal(held, 3);
    for (int i = 0; i < 3; i++)
        journal_work_settle(slow.w, slow.seqs[i]);
    journal_work_counts(slow.w, &held, &ready, NULL);
    assert_int_equal(held, 0);
    /* Settled: it never comes again, to anyone. */
    journal_work_close(slow.w, true);
    until = mono_ms() + 2 * ACK_WAIT_MS;
    while (mono_ms() < until) {
        take(&other);
        sleep_ms(50);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(other.seen[i], 0);
    journal_work_close(other.w, true);

    /*
     * A node takes only what it wants: with room for 8 but 2 wanted, it
     * holds 2 of 6 entries, and a node that wants none (from its opening)
     * takes none; once that one wants them, the other 4 are its.
     */
    struct taker few = {.w = work_open(a, 2), .want = 2, .tag = "w5", .settle = false};
    struct taker none = {.w = work_open(b, 0), .want = 0, .tag = "w5", .settle = true};
    journal_work_want(none.w, 0);
    append_batch(a, "w5", 6);
    until = mono_ms() + 2000;
    while (mono_ms() < until) {
        take(&few);
        take(&none);
        sleep_ms(20);
    }
    size_t most = 0;
    journal_work_counts(few.w, &held, &ready, &most);
    if (count_seen(&few, 6) != 2 || count_seen(&none, 6) != 0 || held != 2 || ready != 0 ||
        most != 2)
        fail_msg("wanting 2 and 0 of 6 entries, the nodes took %d (held %zu, ready %zu, most "
                 "%zu) and %d",
                 count_seen(&few, 6), held, ready, most, count_seen(&none, 6));
    none.want = 8;
    journal_work_want(none.w, 8);
    until = mono_ms() + 10000;
    while (count_seen(&none, 6) < 4 && mono_ms() < until) {
        take(&few);
        take(&none);
        sleep_ms(20);
    }
    assert_int_equal(count_seen(&none, 6), 4);
    for (int i = 0; i < 6; i++)
        assert_int_equal(few.seen[i] + none.seen[i], 1);
    for (int i = 0; i < 6; i++)
        if (few.seen[i] > 0)
            journal_work_settle(few.w, few.seqs[i]);
    journal_work_close(few.w, true);
    journal_work_close(none.w, true);

    /*
     * Entries that are dropped (they do not decode) do not count as what
     * was wanted: a node that wants 1 and meets two of them first still
     * gets the good one after them, though it asks nothing again (as an
     * engine given nothing does not).
     */
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    char *src = base64url_encode("hub", 3), *repo = base64url_encode("work/repo", 9),
         *tag = base64url_encode("junk", 4);
    char subject[256];
    snprintf(subject, sizeof(subject), "%s_JOURNAL.entry.%s.%s.%s", prefix, src, repo, tag);
    free(src);
    free(repo);
    free(tag);
    for (int i = 0; i < 2; i++)
        assert_int_equal(js_Publish(NULL, js, subject, "not an entry", 12, NULL, NULL), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    append_batch(a, "w6", 1);
    struct taker one = {.w = work_open(a, 1), .want = 1, .tag = "w6", .settle = true};
    until = mono_ms() + 10000;
    while (count_seen(&one, 1) < 1 && mono_ms() < until) {
        journal_work_take(one.w, 64, take_one, &one); /* no want again: nothing was given */
        sleep_ms(20);
    }
    if (count_seen(&one, 1) != 1)
        fail_msg("a node wanting 1 entry, behind 2 that do not decode, never got it");
    journal_work_close(one.w, true);
    journal_close(a);
    journal_close(b);
}

/* ---- Claims ---- */

struct seen_claims {
    char keys[8][65];
    struct {
        char destination[65], node[65];
        uint64_t seq;
    } claims[8];
    size_t n;
};

static int see_claim(const char *key, const struct journal_claim *c, void *arg)
{
    struct seen_claims *s = arg;
    assert_true(s->n < 8);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    snprintf(s->claims[s->n].destination, 65, "%s", c->destination);
    snprintf(s->claims[s->n].node, 65, "%s", c->node);
    s->claims[s->n].seq = c->seq;
    s->n++;
    return 0;
}

/* The node of the claim with seq 7 in `s`, NULL if none. */
static const char *claim7_node(const struct seen_claims *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->claims[i].seq == 7)
            return s->claims[i].node;
    return NULL;
}

/*
 * Scan the claims into *s until there are `n` and (unless `node7` is NULL)
 * the claim of seq 7 is node7's: a scan is a watch, which a replica a moment
 * behind may serve (once seen here under ASan), so a write shows within a
 * few scans. At most 50, 100 ms apart; the last scan is left in *s.
 */
static void claims_scan_until(struct journal *j, struct seen_claims *s, size_t n, const char *node7)
{
    for (int round = 0; round < 50; round++) {
        memset(s, 0, sizeof(*s));
        assert_int_equal(journal_claim_scan(j, see_claim, s), 0);
        const char *got = claim7_node(s);
        if (s->n == n && (node7 == NULL || (got != NULL && strcmp(got, node7) == 0)))
            return;
        sleep_ms(100);
    }
}

/*
 * A claim put by one node is seen by another, with its destination, seq and
 * node; a put of the same key replaces it (a take-over: through the key the
 * scan gave too); a drop leaves nothing; bad claims write nothing; what
 * another client puts in the bucket that does not decode is skipped.
 */
static void test_claims(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    const char *key = "dr.east\nlibrary/nginx\n" DIGEST "\n1.25\n7";
    struct journal_claim c = {.destination = "dr.east", .seq = 7, .node = "node-a"};
    assert_int_equal(journal_claim_put(a, key, &c), 0);
    struct journal_claim c2 = {.destination = "dr.west", .seq = 9, .node = "node-a"};
    assert_int_equal(journal_claim_put(a, "another job\n9", &c2), 0);

    struct seen_claims s = {0};
    claims_scan_until(b, &s, 2, NULL);
    assert_int_equal(s.n, 2);
    size_t east = strcmp(s.claims[0].destination, "dr.east") == 0 ? 0 : 1;
    assert_string_equal(s.claims[east].destination, "dr.east");
    assert_true(s.claims[east].seq == 7);
    assert_string_equal(s.claims[east].node, "node-a");
    assert_true(s.claims[1 - east].seq == 9);

    /* node-b takes node-a's claim over through the scan's key. */
    struct journal_claim taken = {.destination = "dr.east", .seq = 7, .node = "node-b"};
    assert_int_equal(journal_claim_put(b, s.keys[east], &taken), 0);
    struct seen_claims s2 = {0};
    claims_scan_until(a, &s2, 2, "node-b");
    assert_int_equal(s2.n, 2);
    assert_non_null(claim7_node(&s2));
    assert_string_equal(claim7_node(&s2), "node-b");

    /* Bad claims write nothing. */
    struct journal_claim bad = c;
    bad.seq = 0;
    assert_int_equal(journal_claim_put(a, "k", &bad), FERRY_EINVAL);
    bad = c, bad.node = "a b";
    assert_int_equal(journal_claim_put(a, "k", &bad), FERRY_EINVAL);
    bad = c, bad.destination = "";
    assert_int_equal(journal_claim_put(a, "k", &bad), FERRY_EINVAL);
    assert_int_equal(journal_claim_put(a, "", &c), FERRY_EINVAL);
    assert_int_equal(journal_claim_put(a, NULL, &c), FERRY_EINVAL);
    assert_int_equal(journal_claim_put(a, "k", NULL), FERRY_EINVAL);

    /* Hostile values in the bucket are skipped. */
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    const char *junk[] = {"",
                          "x",
                          "0 node-a d",
                          "7 node-a",
                          "7  d",
                          "7 a..b d",
                          "18446744073709551616 n d",
                          "7 node-a d extra/"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        char subject[256];
        snprintf(subject, sizeof(subject), "$KV.%s_claims.junk%zu", prefix, i);
        assert_int_equal(js_Publish(NULL, js, subject, junk[i], (int)strlen(junk[i]), NULL, NULL),
                         NATS_OK);
    }
    struct seen_claims s3 = {0};
    claims_scan_until(b, &s3, 2, NULL);
    assert_int_equal(s3.n, 2);

    /* Dropped: by the caller's key, and by the stored one. */
    assert_int_equal(journal_claim_drop(a, key), 0);
    assert_int_equal(journal_claim_drop(b, "another job\n9"), 0);
    assert_int_equal(journal_claim_drop(b, "never claimed"), 0);
    struct seen_claims s4 = {0};
    claims_scan_until(a, &s4, 0, NULL);
    assert_int_equal(s4.n, 0);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    journal_close(a);
    journal_close(b);
}

/* ---- Leases ---- */

#define LEASERS 4

struct leaser {
    struct journal *j;
    char name[16];
    int rc;
    char *other;
};

static pthread_barrier_t lease_barrier;

static void *take_lease(void *arg)
{
    struct leaser *l = arg;
    pthread_barrier_wait(&lease_barrier);
    l->rc = journal_lease_take(l->j, "poller:hub", l->name, 5000, &l->other);
    return NULL;
}

/*
 * Four nodes take one lease at once: exactly one has it, the others are
 * told who. The holder renews it, gives it back, and another takes it; a
 * lease that lapses goes to whoever asks.
 */
static void test_leases(void **state)
{
    (void)state;
    struct leaser ls[LEASERS];
    pthread_t threads[LEASERS];
    assert_int_equal(pthread_barrier_init(&lease_barrier, NULL, LEASERS), 0);
    for (int i = 0; i < LEASERS; i++) {
        ls[i] = (struct leaser){.j = node_open()};
        snprintf(ls[i].name, sizeof(ls[i].name), "node-%d", i);
    }
    for (int i = 0; i < LEASERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, take_lease, &ls[i]), 0);
    for (int i = 0; i < LEASERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&lease_barrier);
    int holder = -1;
    for (int i = 0; i < LEASERS; i++) {
        assert_true(ls[i].rc == 0 || ls[i].rc == 1);
        if (ls[i].rc == 1) {
            if (holder >= 0)
                fail_msg("two nodes hold one lease: %s and %s", ls[holder].name, ls[i].name);
            holder = i;
        }
    }
    assert_true(holder >= 0);
    for (int i = 0; i < LEASERS; i++) {
        if (i != holder) {
            assert_non_null(ls[i].other);
            assert_string_equal(ls[i].other, ls[holder].name);
        }
        free(ls[i].other);
    }
    int next = (holder + 1) % LEASERS;
    assert_int_equal(journal_lease_take(ls[holder].j, "poller:hub", ls[holder].name, 5000, NULL),
                     1);
    assert_int_equal(journal_lease_take(ls[next].j, "poller:hub", ls[next].name, 5000, NULL), 0);
    /* Given back by someone else: nothing happens. */
    assert_int_equal(journal_lease_give(ls[next].j, "poller:hub", ls[next].name), 0);
    assert_int_equal(journal_lease_take(ls[next].j, "poller:hub", ls[next].name, 5000, NULL), 0);
    assert_int_equal(journal_lease_give(ls[holder].j, "poller:hub", ls[holder].name), 0);
    assert_int_equal(journal_lease_take(ls[next].j, "poller:hub", ls[next].name, 1500, NULL), 1);
    /* Lapsed: the next node to ask has it. */
    sleep_ms(2000);
    int third = (next + 1) % LEASERS;
    assert_int_equal(journal_lease_take(ls[third].j, "poller:hub", ls[third].name, 5000, NULL), 1);
    assert_int_equal(journal_lease_take(ls[next].j, "poller:hub", ls[next].name, 5000, NULL), 0);
    for (int i = 0; i < LEASERS; i++)
        journal_close(ls[i].j);

    /* One node holds every lease. */
    struct journal *one = local_journal();
    assert_int_equal(journal_lease_take(one, "poller:hub", "me", 5000, NULL), 1);
    assert_int_equal(journal_lease_give(one, "poller:hub", "me"), 0);
    journal_close(one);
}

/* ---- A destination tag's hold: its fence and its lease in one record ---- */

/* journal_tag_hold() of eu/app:v1 by `holder` with hold `token` for `seq`: its answer. */
static int hold(struct journal *j, const char *holder, uint64_t token, uint64_t ttl, uint64_t seq,
                uint64_t *fence)
{
    char *other = NULL;
    int rc = journal_tag_hold(j, "eu", "app", "v1", holder, token, ttl, seq, fence, &other);
    free(other);
    return rc;
}

static int release(struct journal *j, const char *holder, uint64_t token, uint64_t raised)
{
    return journal_tag_release(j, "eu", "app", "v1", holder, token, raised);
}

static void test_tag_holds(void **state)
{
    (void)state;
    struct journal *a = node_open(), *b = node_open();
    uint64_t fence = 99, seq = 0;
    char *other = NULL;
    /* Held by one hold at a time; the fence comes with the hold. */
    assert_int_equal(hold(a, "a", 1, 5000, 5, &fence), 1);
    assert_int_equal(fence, 0);
    assert_int_equal(journal_tag_hold(b, "eu", "app", "v1", "b", 2, 5000, 7, &fence, &other), 0);
    assert_non_null(other);
    assert_string_equal(other, "a");
    free(other);
    /* A reader counts the holder's pending seq: its PUT may have landed. */
    assert_int_equal(journal_fence_get(b, "eu", "app", "v1", &seq), 0);
    assert_int_equal(seq, 5);
    /* Not b's to release, nor a's other hold's: nothing changes. */
    assert_int_equal(release(b, "b", 2, 7), 0);
    assert_int_equal(release(a, "a", 3, 7), 0);
    assert_int_equal(hold(b, "b", 2, 5000, 7, &fence), 0);
    /* The same node for another job (its release on the way): another hold. */
    assert_int_equal(hold(a, "a", 4, 5000, 6, &fence), 0);
    /* Released without a move: the fence stays; with one: it is raised. */
    assert_int_equal(release(a, "a", 1, 0), 0);
    assert_int_equal(journal_fence_get(b, "eu", "app", "v1", &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(hold(b, "b", 2, 5000, 7, &fence), 1);
    assert_int_equal(fence, 0);
    assert_int_equal(release(b, "b", 2, 7), 0);
    assert_int_equal(hold(a, "a", 5, 5000, 6, &fence), 1);
    assert_int_equal(fence, 7);
    assert_int_equal(release(a, "a", 5, 0), 0);
    /* A holder that dies: once its hold lapses, its pending seq is the fence. */
    assert_int_equal(hold(b, "b", 6, 500, 9, &fence), 1);
    sleep_ms(800);
    assert_int_equal(hold(a, "a", 7, 5000, 8, &fence), 1);
    assert_int_equal(fence, 9);
    /* b comes back late: the hold is a's now, b's release writes nothing. */
    assert_int_equal(release(b, "b", 6, 9), 0);
    assert_int_equal(hold(b, "b", 8, 5000, 10, &fence), 0);
    /* A raise outside the hold (a digest's delete, say) keeps the hold. */
    assert_int_equal(journal_fence_raise(b, "eu", "app", "v1", 12), 1);
    assert_int_equal(hold(b, "b", 8, 5000, 13, &fence), 0);
    assert_int_equal(release(a, "a", 7, 8), 0);
    assert_int_equal(hold(b, "b", 8, 5000, 13, &fence), 1);
    assert_int_equal(fence, 12);
    /* The same hold again (its write landed, its answer was lost): the fence it wrote. */
    assert_int_equal(hold(b, "b", 8, 5000, 13, &fence), 1);
    assert_int_equal(fence, 12);
    assert_int_equal(release(b, "b", 8, 13), 0);
    assert_int_equal(journal_fence_get(a, "eu", "app", "v1", &seq), 0);
    assert_int_equal(seq, 13);
    assert_int_equal(journal_tag_hold(a, "eu", "", "v1", "a", 9, 5000, 1, &fence, NULL),
                     FERRY_EINVAL);
    assert_int_equal(hold(a, "a", 0, 5000, 14, &fence), FERRY_EINVAL);
    journal_close(a);
    journal_close(b);

    /* One node: the hold reads the fence, the release raises it. */
    struct journal *one = local_journal();
    assert_int_equal(hold(one, "me", 1, 5000, 4, &fence), 1);
    assert_int_equal(fence, 0);
    assert_int_equal(release(one, "me", 1, 4), 0);
    assert_int_equal(hold(one, "me", 2, 5000, 5, &fence), 1);
    assert_int_equal(fence, 4);
    journal_close(one);
}

/* ---- Blob hints: which node reads a blob, and where it landed ---- */

#define DIGEST3 "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* journal_blob_claim()'s answer, its hint's node and repository copied out. */
static int claim(struct journal *j, const char *registry, const char *digest, const char *node,
                 const char *repo, uint64_t ttl, char *who, char *where)
{
    struct journal_blob_hint h;
    int rc = journal_blob_claim(j, registry, digest, node, repo, ttl, &h);
    if (rc < 0)
        return rc;
    snprintf(who, 64, "%s", h.node != NULL ? h.node : "");
    snprintf(where, 64, "%s", h.repo != NULL ? h.repo : "");
    if (h.state == JOURNAL_BLOB_BUSY)
        assert_true(h.until_unix_ms > clock_unix_ms());
    journal_blob_hint_free(&h);
    return (int)h.state;
}

/* Publish `value` on the blob hint of `text` (journal_api.c's key: its sha256), as a stranger. */
static void blob_hint_forge(jsCtx *js, const char *text, const char *value)
{
    char digest[DIGEST_MAX];
    digest_of(text, strlen(text), digest);
    char *subject = xasprintf("$KV.%s_blobs.%s", prefix, digest + strlen("sha256:"));
    jsPubAck *ack = NULL;
    assert_int_equal(js_Publish(&ack, js, subject, value, (int)strlen(value), NULL, NULL), NATS_OK);
    jsPubAck_Destroy(ack);
    free(subject);
}

static void test_blob_hints(void **state)
{
    (void)state;
    struct journal *a = node_open(), *b = node_open();
    char who[64], where[64];
    /* The first node to ask claims the blob; the others hear who has it. */
    assert_int_equal(claim(a, "eu.example:5000", DIGEST, "a", "app", 5000, who, where),
                     JOURNAL_BLOB_MINE);
    assert_int_equal(claim(b, "eu.example:5000", DIGEST, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    assert_string_equal(who, "a");
    /* Its own again (another of its registries): still its. */
    assert_int_equal(claim(a, "us.example", DIGEST, "a", "app", 5000, who, where),
                     JOURNAL_BLOB_MINE);
    /* Landed at one registry: AT there; at another, the claim still holds. */
    assert_int_equal(journal_blob_landed(a, "eu.example:5000", DIGEST, "team/app"), 0);
    assert_int_equal(claim(b, "eu.example:5000", DIGEST, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_AT);
    assert_string_equal(where, "team/app");
    assert_int_equal(claim(b, "us.example", DIGEST, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    /* Not b's to give back; a's goes, and b claims it. */
    assert_int_equal(journal_blob_unclaim(b, DIGEST, "b"), 0);
    assert_int_equal(claim(b, "us.example", DIGEST, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    assert_int_equal(journal_blob_unclaim(a, DIGEST, "a"), 0);
    assert_int_equal(claim(b, "us.example", DIGEST, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_MINE);
    assert_int_equal(claim(a, "us.example", DIGEST, "a", "app", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    assert_string_equal(who, "b");
    /* A claim that lapses (its node died): the next node to ask has it. */
    assert_int_equal(claim(a, "eu.example:5000", DIGEST2, "a", "app", 300, who, where),
                     JOURNAL_BLOB_MINE);
    assert_int_equal(claim(b, "eu.example:5000", DIGEST2, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    sleep_ms(600);
    assert_int_equal(claim(b, "eu.example:5000", DIGEST2, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_MINE);
    /* What a stranger wrote that does not decode counts as nothing. */
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    blob_hint_forge(js, "eu.example:5000\n" DIGEST3, "A 0 - app&from=x");
    blob_hint_forge(js, DIGEST3, "B 99999999999999 bad..node repo");
    assert_int_equal(claim(a, "eu.example:5000", DIGEST3, "a", "app", 5000, who, where),
                     JOURNAL_BLOB_MINE);
    blob_hint_forge(js, "eu.example:5000\n" DIGEST3, "junk");
    assert_int_equal(claim(b, "eu.example:5000", DIGEST3, "b", "web", 5000, who, where),
                     JOURNAL_BLOB_BUSY);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    /* Bad arguments change nothing. */
    struct journal_blob_hint h;
    assert_int_equal(journal_blob_claim(a, "eu", "sha256:zz", "a", "app", 5000, &h), FERRY_EINVAL);
    assert_int_equal(journal_blob_claim(a, "eu", DIGEST, "a", "two words", 5000, &h), FERRY_EINVAL);
    assert_int_equal(journal_blob_claim(a, "eu", DIGEST, "a", "app?x=1", 5000, &h), FERRY_EINVAL);
    assert_int_equal(journal_blob_claim(a, "eu", DIGEST, "a..b", "app", 5000, &h), FERRY_EINVAL);
    assert_int_equal(journal_blob_claim(a, "", DIGEST, "a", "app", 5000, &h), FERRY_EINVAL);
    assert_int_equal(journal_blob_landed(a, "eu", DIGEST, ""), FERRY_EINVAL);
    journal_close(a);
    journal_close(b);

    /* One node keeps none: its flights are the whole picture. */
    struct journal *one = local_journal();
    assert_int_equal(journal_blob_claim(one, "eu", DIGEST, "me", "app", 5000, &h), -ENOTSUP);
    assert_int_equal(journal_blob_landed(one, "eu", DIGEST, "app"), -ENOTSUP);
    journal_close(one);
}

/*
 * The bucket of blob hints has one replica: while its server is down no
 * node can bind it. Played by a stream of its name that is no bucket: the
 * node opens all the same, and its hints fail (it uploads without them).
 */
static void test_blob_hints_unbound(void **state)
{
    (void)state;
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);
    char name[256], subject[256], stream[256], buckets[128];
    snprintf(buckets, sizeof(buckets), "%sU", prefix);
    snprintf(name, sizeof(name), "KV_%s_blobs", buckets);
    snprintf(subject, sizeof(subject), "%s.notkv.>", buckets);
    snprintf(stream, sizeof(stream), "%s_JOURNAL", buckets);
    const char *subjects[] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    jsStreamInfo *si = NULL;
    assert_int_equal(js_AddStream(&si, js, &cfg, NULL, NULL), NATS_OK);
    jsStreamInfo_Destroy(si);

    struct journal_cluster_options o = test_options();
    o.stream = stream;
    o.bucket_prefix = buckets;
    struct journal *a = NULL;
    char *err = NULL;
    int rc = journal_open_cluster(&o, local_journal(), &a, &err);
    if (rc != 0)
        fail_msg("a node without its blob hints did not open: %d %s", rc, err != NULL ? err : "");
    struct journal_blob_hint h;
    assert_true(journal_blob_claim(a, "eu", DIGEST, "a", "app", 5000, &h) < 0);
    assert_true(journal_blob_landed(a, "eu", DIGEST, "app") < 0);
    journal_close(a);
    assert_int_equal(js_DeleteStream(js, name, NULL, NULL), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* ---- Nodes: their heartbeats ---- */

#define SEEN_NODES 8

/* What a node scan gave: the first SEEN_NODES nodes, and how many in all. */
struct seen_nodes {
    struct {
        char name[JOURNAL_NODE_MAX + 1];
        int64_t beat_unix_ms;
        char info[64];
        size_t info_len;
    } nodes[SEEN_NODES];
    size_t n, total, stop_after;
};

static int see_node(const char *node, int64_t beat_unix_ms, const char *info, void *arg)
{
    struct seen_nodes *s = arg;
    if (s->n < SEEN_NODES) {
        snprintf(s->nodes[s->n].name, sizeof(s->nodes[s->n].name), "%s", node);
        s->nodes[s->n].beat_unix_ms = beat_unix_ms;
        snprintf(s->nodes[s->n].info, sizeof(s->nodes[s->n].info), "%s", info);
        s->nodes[s->n].info_len = strlen(info);
        s->n++;
    }
    s->total++;
    return s->stop_after > 0 && s->total == s->stop_after;
}

static struct seen_nodes scan_nodes(struct journal *j)
{
    struct seen_nodes s = {0};
    assert_int_equal(journal_node_scan(j, see_node, &s), 0);
    return s;
}

/* Where `name` is in `s`; fails the test when it is not there. */
static size_t seen_node(const struct seen_nodes *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return i;
    fail_msg("node %s is not in the scan (%zu nodes)", name, s->total);
    return 0;
}

static bool has_node(const struct seen_nodes *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return true;
    return false;
}

/* A beat this process wrote since `since` (its clock): that time, and its info. */
static void assert_beat(const struct seen_nodes *s, const char *name, int64_t since,
                        const char *info)
{
    size_t i = seen_node(s, name);
    int64_t now = clock_unix_ms();
    if (s->nodes[i].beat_unix_ms < since || s->nodes[i].beat_unix_ms > now)
        fail_msg("node %s beat at %" PRId64 ", not between %" PRId64 " and now, %" PRId64, name,
                 s->nodes[i].beat_unix_ms, since, now);
    assert_string_equal(s->nodes[i].info, info);
}

/* The messages in the nodes' bucket (its stream), as the servers count them. */
static uint64_t nodes_bucket_msgs(jsCtx *js)
{
    char stream[128];
    snprintf(stream, sizeof(stream), "KV_%s_nodes", prefix);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* Put `value` under node `key` of the nodes' bucket straight, as another NATS client could. */
static void put_raw_beat(jsCtx *js, const char *key, const void *value, int len)
{
    char subject[256];
    snprintf(subject, sizeof(subject), "$KV.%s_nodes.%s", prefix, key);
    assert_int_equal(js_Publish(NULL, js, subject, value, len, NULL, NULL), NATS_OK);
}

/*
 * Two nodes beat and each sees both; a beat replaces the last; a node that
 * forgets itself is gone without a trace; bad names and infos write
 * nothing; what another client puts in the bucket that does not decode is
 * skipped; a scan gives JOURNAL_NODES_MAX nodes at most. Leaves node-b
 * beating, for --survivor.
 */
static void test_nodes(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    natsConnection *nc = NULL;
    jsCtx *js = raw_jetstream(&nc);

    int64_t t0 = clock_unix_ms();
    assert_int_equal(journal_node_beat(a, "node-a", "{\"jobs\":1}"), 0);
    assert_int_equal(journal_node_beat(b, "node-b.example.com", "{\"jobs\":2}"), 0);
    struct journal *both[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        struct seen_nodes s = scan_nodes(both[k]);
        assert_int_equal(s.total, 2);
        assert_beat(&s, "node-a", t0, "{\"jobs\":1}");
        assert_beat(&s, "node-b.example.com", t0, "{\"jobs\":2}");
    }

    /* A second beat replaces the first, its info and its time. */
    struct seen_nodes s = scan_nodes(b);
    int64_t first = s.nodes[seen_node(&s, "node-a")].beat_unix_ms;
    sleep_ms(50);
    assert_int_equal(journal_node_beat(a, "node-a", ""), 0);
    s = scan_nodes(b);
    assert_int_equal(s.total, 2);
    assert_beat(&s, "node-a", first, "");
    assert_true(s.nodes[seen_node(&s, "node-a")].beat_unix_ms > first);

    /* A scan stops when asked. */
    s = (struct seen_nodes){.stop_after = 1};
    assert_int_equal(journal_node_scan(a, see_node, &s), 0);
    assert_int_equal(s.total, 1);

    /* Forgotten (by either node): gone, and nothing of it left in the bucket. */
    assert_int_equal(journal_node_forget(b, "node-a"), 0);
    assert_int_equal(journal_node_forget(b, "node-a"), 0);
    s = scan_nodes(a);
    assert_int_equal(s.total, 1);
    assert_false(has_node(&s, "node-a"));
    assert_int_equal(nodes_bucket_msgs(js), 1);

    /* Refused, and nothing written. */
    char longest[JOURNAL_NODE_MAX + 2];
    memset(longest, 'n', sizeof(longest) - 1);
    longest[JOURNAL_NODE_MAX + 1] = '\0';
    const char *bad[] = {"", "a/b", "a b", "a*", "a>", "a..b", ".a", longest, NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(journal_node_beat(a, bad[i], "{}"), FERRY_EINVAL);
        assert_int_equal(journal_node_forget(a, bad[i]), FERRY_EINVAL);
    }
    char *info = xmalloc(JOURNAL_NODE_INFO_MAX + 2);
    memset(info, 'i', JOURNAL_NODE_INFO_MAX + 1);
    info[JOURNAL_NODE_INFO_MAX + 1] = '\0';
    assert_int_equal(journal_node_beat(a, "node-a", info), FERRY_EINVAL);
    assert_int_equal(journal_node_beat(a, "node-a", NULL), FERRY_EINVAL);
    assert_int_equal(nodes_bucket_msgs(js), 1);
    /* At the cap: kept whole. */
    info[JOURNAL_NODE_INFO_MAX] = '\0';
    assert_int_equal(journal_node_beat(a, "node-a", info), 0);
    free(info);
    s = scan_nodes(b);
    assert_int_equal(s.total, 2);
    assert_int_equal(s.nodes[seen_node(&s, "node-a")].info_len, JOURNAL_NODE_INFO_MAX);

    /*
     * Beats that do not decode, put by another client: too short, an info
     * with a NUL, one too long, a key that is no node's name. Skipped; the
     * good nodes still come.
     */
    put_raw_beat(js, "short", "abc", 3);
    put_raw_beat(js, "nul", "\0\0\0\0\0\0\0\1x\0y", 11);
    char *huge = xcalloc(1, JOURNAL_KEY_LEN + JOURNAL_NODE_INFO_MAX + 1);
    memset(huge + JOURNAL_KEY_LEN, 'h', JOURNAL_NODE_INFO_MAX + 1);
    put_raw_beat(js, "huge", huge, JOURNAL_KEY_LEN + JOURNAL_NODE_INFO_MAX + 1);
    free(huge);
    put_raw_beat(js, "not=a-name", "\0\0\0\0\0\0\0\1{}", 10);
    for (int k = 0; k < 2; k++) {
        s = scan_nodes(both[k]);
        assert_int_equal(s.total, 2);
        assert_true(has_node(&s, "node-a"));
        assert_beat(&s, "node-b.example.com", t0, "{\"jobs\":2}");
    }

    /* More nodes than a scan gives: JOURNAL_NODES_MAX of them, no more. */
    char value[JOURNAL_KEY_LEN];
    journal_key_encode((uint64_t)clock_unix_ms(), value);
    for (int i = 0; i < JOURNAL_NODES_MAX; i++) {
        char subject[256];
        snprintf(subject, sizeof(subject), "$KV.%s_nodes.many.%d", prefix, i);
        assert_int_equal(js_PublishAsync(js, subject, value, sizeof(value), NULL), NATS_OK);
    }
    assert_int_equal(js_PublishAsyncComplete(js, NULL), NATS_OK);
    s = scan_nodes(a);
    assert_int_equal(s.total, JOURNAL_NODES_MAX);
    char many[128], stream[128];
    snprintf(many, sizeof(many), "$KV.%s_nodes.many.>", prefix);
    snprintf(stream, sizeof(stream), "KV_%s_nodes", prefix);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = many;
    assert_int_equal(js_PurgeStream(js, stream, &o, NULL), NATS_OK);
    assert_int_equal(scan_nodes(a).total, 2);

    assert_int_equal(journal_node_forget(a, "node-a"), 0);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    journal_close(a);
    journal_close(b);
}

/* ---- What stays on the node ---- */

static void test_node_local(void **state)
{
    (void)state;
    struct journal *a = node_open();
    struct journal *b = node_open();
    uint64_t seq = 0;
    assert_int_equal(journal_cursor_set(a, "engine", 42), 0);
    assert_int_equal(journal_cursor_get(a, "engine", &seq), 0);
    assert_int_equal(seq, 42);
    assert_int_equal(journal_cursor_find(b, "engine", &seq), FERRY_ENOTFOUND);
    struct journal_poll_memo memo = {.etag = "\"abc\"", .listed_round = 3};
    assert_int_equal(journal_poll_memo_put(a, "hub", "library/nginx", &memo), 0);
    struct journal_poll_memo got;
    assert_int_equal(journal_poll_memo_get(a, "hub", "library/nginx", &got), 0);
    assert_string_equal(got.etag, "\"abc\"");
    journal_poll_memo_release(&got);
    assert_int_equal(journal_poll_memo_get(b, "hub", "library/nginx", &got), FERRY_ENOTFOUND);
    journal_close(a);
    journal_close(b);
}

/* ---- After a server died (--survivor) ---- */

static int skip_job(const struct journal_job *job, void *arg)
{
    (void)job;
    (void)arg;
    return 0;
}

static void test_survivor(void **state)
{
    (void)state;
    /* The streams elect new leaders after the kill: the open waits for them. */
    struct journal_cluster_options o = test_options();
    struct journal *a = NULL;
    int rc = -1;
    for (int attempt = 0; attempt < 30 && rc != 0; attempt++) {
        char *err = NULL;
        rc = journal_open_cluster(&o, local_journal(), &a, &err);
        free(err);
        if (rc != 0)
            sleep_ms(1000);
    }
    assert_int_equal(rc, 0);
    char *digest = NULL;
    uint64_t seq = 0;
    char *err = NULL;
    /* And for the buckets' streams: reads may time out until then. A scan
     * is a watch, an ephemeral consumer, which the servers may place on the
     * dead one until they count it out: under the full suite's load that
     * took over 30 s once. */
    int64_t until = mono_ms() + 90000;
    struct seen_nodes nodes = {0};
    int rounds = 0;
    while (mono_ms() < until && (journal_fence_get(a, "race", "repo", "tag", &seq) != 0 ||
                                 journal_job_scan_open(a, skip_job, NULL) != 0 ||
                                 journal_node_scan(a, see_node, &nodes) != 0)) {
        nodes = (struct seen_nodes){0};
        rounds++;
        sleep_ms(500);
    }
    printf("survivor: the buckets answered after %d failed rounds\n", rounds);
    assert_int_equal(journal_tagstate_get(a, "hub", "odd/na.me", "v1.2_rc-3", &digest), 0);
    assert_string_equal(digest, DIGEST2);
    free(digest);
    assert_int_equal(journal_fence_get(a, "race", "repo", "tag", &seq), 0);
    assert_int_equal(seq, RACERS * RAISES);
    uint64_t last = journal_last_seq(a);
    assert_true(last >= 4);
    struct journal_event ev = push("after/kill", "t", DIGEST, "survivor-1");
    assert_int_equal(journal_append(a, &ev, 1, &seq, &err), 0);
    assert_true(seq > last);
    assert_int_equal(journal_fence_raise(a, "race", "repo", "tag", RACERS * RAISES + 1), 1);
    /* The nodes' beats too: test_nodes left node-b's, and a node still beats. */
    assert_int_equal(nodes.total, 1);
    assert_string_equal(nodes.nodes[0].name, "node-b.example.com");
    assert_string_equal(nodes.nodes[0].info, "{\"jobs\":2}");
    int64_t beat_at = clock_unix_ms();
    assert_int_equal(journal_node_beat(a, "survivor", "{}"), 0);
    /*
     * Each scan is a watch, a new ephemeral consumer. Soon after the kill
     * one was seen to time out with its leader on no live server (placed on
     * the dead one, not yet counted out); the next scan worked.
     */
    int scans = 0;
    until = mono_ms() + 30000;
    do {
        if (scans++ > 0)
            sleep_ms(500);
        nodes = (struct seen_nodes){0};
        rc = journal_node_scan(a, see_node, &nodes);
    } while (rc != 0 && mono_ms() < until);
    assert_int_equal(rc, 0);
    printf("survivor: the nodes' scan after the beat answered at attempt %d\n", scans);
    assert_int_equal(nodes.total, 2);
    assert_beat(&nodes, "survivor", beat_at, "{}");
    journal_close(a);
}

/*
 * --work-wait DIR: a node opens its journal, says so (DIR/ready), and once
 * the script has taken the servers' quorum away (DIR/go) opens the shared
 * work, which must wait for the quorum to come back (the script restarts a
 * server a few seconds later) rather than fail: as a node started during a
 * leader election does.
 */
static bool file_wait(const char *path, int64_t ms)
{
    int64_t until = mono_ms() + ms;
    while (access(path, F_OK) != 0) {
        if (mono_ms() >= until)
            return false;
        sleep_ms(50);
    }
    return true;
}

static int work_wait(const char *dir)
{
    struct journal *a = node_open();
    char path[4096];
    snprintf(path, sizeof(path), "%s/ready", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 1;
    fclose(f);
    snprintf(path, sizeof(path), "%s/go", dir);
    if (!file_wait(path, 60000)) {
        fprintf(stderr, "work-wait: the script never said go\n");
        return 1;
    }
    int64_t t0 = mono_ms();
    struct journal_work_options o = {.capacity = 8, .want = 8, .ack_wait_ms = ACK_WAIT_MS};
    struct journal_work *w = NULL;
    int rc = journal_work_open(a, &o, &w);
    int64_t took = mono_ms() - t0;
    printf("work-wait: the shared work opened rc=%d after %lld ms\n", rc, (long long)took);
    journal_work_close(w, true);
    journal_close(a);
    return rc == 0 && w != NULL ? 0 : 1;
}

int main(int argc, char **argv)
{
    bool survivor = argc == 2 && strcmp(argv[1], "--survivor") == 0;
    const char *wait_dir = argc == 3 && strcmp(argv[1], "--work-wait") == 0 ? argv[2] : NULL;
    const char *urls = getenv("NATS_URLS");
    prefix = getenv("FERRY_TEST_PREFIX");
    if (urls == NULL || prefix == NULL) {
        fprintf(stderr, "cluster_journal_nats: NATS_URLS and FERRY_TEST_PREFIX must be set "
                        "(tests/integration/journal_cluster_test.sh sets them)\n");
        return 2;
    }
    char *list = xstrdup(urls);
    for (char *save = NULL, *u = strtok_r(list, ",", &save); u != NULL && n_servers < 8;
         u = strtok_r(NULL, ",", &save))
        servers[n_servers++] = u;
    const char *tmp = getenv("TEST_TMP");
    snprintf(test_root, sizeof(test_root), "%s/cluster-journal-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (unit_tmpdir_make(test_root) < 0)
        return 1;
    log_threshold = FERRY_LOG_WARN;

    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_append_dedup_two_nodes),
        cmocka_unit_test(test_append_batch),
        cmocka_unit_test(test_tagstate_observations),
        cmocka_unit_test(test_observation_race),
        cmocka_unit_test(test_fences),
        cmocka_unit_test(test_fence_shards),
        cmocka_unit_test(test_fence_stale),
        cmocka_unit_test(test_fence_race),
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_hostile_messages),
        cmocka_unit_test(test_scan_long),
        cmocka_unit_test(test_node_local),
        cmocka_unit_test(test_work_shared),
        cmocka_unit_test(test_leases),
        cmocka_unit_test(test_tag_holds),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_blob_hints),
        cmocka_unit_test(test_blob_hints_unbound),
    };
    const struct CMUnitTest after[] = {
        cmocka_unit_test(test_survivor),
    };
    int rc = wait_dir != NULL ? work_wait(wait_dir)
             : survivor       ? cmocka_run_group_tests(after, NULL, NULL)
                              : cmocka_run_group_tests(all, NULL, NULL);
    unit_tmpdir_remove(test_root);
    free(list);
    journal_process_exit();
    return rc;
}
