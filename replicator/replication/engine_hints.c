/*
 * engine_hints.c: the cluster's blob hints (journal_blob_claim()). A node
 * about to upload a blob into a destination registry, which neither its
 * flights nor its presence cache can spare, asks the other nodes first:
 * one of them may be uploading it right now (this node waits for it, then
 * mounts from its repository), or may have put it somewhere already (this
 * node mounts from there). Otherwise this node claims the upload, and tells
 * the others where it landed. Every node's layers shared by many images are
 * then read from the source and uploaded once per registry, as they are on
 * one node.
 *
 * The calls to the servers run on the loop's thread pool. Only while
 * another node is alive: alone, a node's own flights are the whole picture.
 * A hint is an economy: an error of the servers, a claim that lapses or a
 * mount from a repository that no longer holds the blob each cost an
 * upload, nothing else.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "replication/engine_int.h"

/* A node's claim to upload a blob holds the others back this long, plus the
 * time its bytes take at ENGINE_HINT_SLOW_BPS: then they upload it too. */
#define ENGINE_HINT_CLAIM_MS  (20 * 1000)
#define ENGINE_HINT_SLOW_BPS  (4 * 1024 * 1024)
#define ENGINE_HINT_CLAIM_MAX ((uint64_t)6 * 3600 * 1000)
/* Another node's claim is asked about again after this long, doubled up to the most. */
#define ENGINE_HINT_POLL_MS     50
#define ENGINE_HINT_POLL_MAX_MS 800
/* After the servers failed a hint, the node uploads without asking for this long. */
#define ENGINE_HINT_OFF_MS (30 * 1000)
/*
 * A smaller blob is uploaded without asking: a hint costs the servers two
 * reads and three writes (claim, where it landed, the claim given back),
 * and the others' reads while they wait, which is more than reading such a
 * blob twice from the source costs. A fleet's small blobs are mostly each
 * image's own (its config, its top layer): nobody else needs them, and in
 * the bench's fleet (tests/bench/cluster.sh) 480 of its 523 blobs were such.
 */
#define ENGINE_HINT_MIN_BYTES ((int64_t)1024 * 1024)

enum hint_op {
    HINT_CLAIM,
    HINT_LANDED,
    HINT_UNCLAIM,
};

/* A claim no flight counts on is given back after this long: the node's
 * jobs for the blob's other registries may not have reached it yet. */
#define ENGINE_HINT_LINGER_MS 1500

/*
 * A blob whose claim this node holds (engine.hint_claims): its flights that
 * count on it, and once there are none, the timer that gives it back. Open
 * from its first flight until its timer closes (counted in hint_works).
 */
struct hint_claim {
    struct engine *e;
    struct eng_registry *r; /* the registry of its last flight (any would do) */
    char *digest;
    char *repo;
    int flights;
    uv_timer_t timer;
    UT_hash_handle hh;
};

struct hint_work {
    uv_work_t req;
    uv_timer_t timer; /* a claim another node holds: asked again when it fires */
    bool timer_open;
    struct engine *e;
    struct eng_registry *r;
    struct copy *c; /* a claim: the copy waiting for the answer at its blob gate */
    enum hint_op op;
    char *digest, *repo;
    uint64_t ttl_ms;
    uint64_t wait_until; /* uv_now() past which this node stops waiting for another's claim */
    uint64_t poll_ms;
    bool waited;
    int rc;
    struct journal_blob_hint hint;
};

bool engine_hints_on(const struct engine *e, struct copy *c, const char *digest)
{
    if (e->work == NULL || e->hint_peers <= 0 || uv_now(e->loop) < e->hints_off_until)
        return false;
    int64_t size = copy_blob_size(c, digest);
    return size < 0 || size >= ENGINE_HINT_MIN_BYTES;
}

static struct hint_work *hint_work_new(struct engine *e, struct eng_registry *r, enum hint_op op,
                                       const char *digest, const char *repo)
{
    struct hint_work *w = xcalloc(1, sizeof(*w));
    w->req.data = w;
    w->e = e;
    w->r = r;
    w->op = op;
    w->digest = xstrdup(digest);
    w->repo = xstrdup(repo);
    return w;
}

static void hint_work_free(struct hint_work *w)
{
    journal_blob_hint_free(&w->hint);
    free(w->digest);
    free(w->repo);
    free(w);
}

static void hint_timer_closed(uv_handle_t *h)
{
    struct hint_work *w = h->data;
    w->e->hint_works--;
    hint_work_free(w);
}

/* Done with `w`: its timer (if any) closes first. */
static void hint_work_end(struct hint_work *w)
{
    if (w->timer_open) {
        uv_close((uv_handle_t *)&w->timer, hint_timer_closed);
        return;
    }
    w->e->hint_works--;
    hint_work_free(w);
}

/* On the pool: the servers' part. */
static void hint_run(uv_work_t *req)
{
    struct hint_work *w = req->data;
    struct journal *j = w->e->journal;
    const char *host = w->r->cfg->host;
    journal_blob_hint_free(&w->hint);
    if (w->op == HINT_CLAIM)
        w->rc = journal_blob_claim(j, host, w->digest, w->e->node, w->repo, w->ttl_ms, &w->hint);
    else if (w->op == HINT_LANDED)
        w->rc = journal_blob_landed(j, host, w->digest, w->repo);
    else
        w->rc = journal_blob_unclaim(j, w->digest, w->e->node);
}

static void hint_failed(struct hint_work *w, int rc)
{
    struct engine *e = w->e;
    if (uv_now(e->loop) >= e->hints_off_until)
        log_warn("cluster: blob hints are off for %d s, blobs are uploaded without them "
                 "dest=%s error=\"%s\"",
                 ENGINE_HINT_OFF_MS / 1000, w->r->cfg->name, ferry_strerror(rc));
    e->hints_off_until = uv_now(e->loop) + ENGINE_HINT_OFF_MS;
}

static void hint_queue(struct hint_work *w);

static void hint_poll(uv_timer_t *timer)
{
    hint_queue(timer->data);
}

/* Count one more flight on this node's claim of `digest`: false if it cannot be tracked. */
static bool hint_claim_count(struct engine *e, struct eng_registry *r, const char *digest,
                             const char *repo)
{
    struct hint_claim *hc = NULL;
    HASH_FIND_STR(e->hint_claims, digest, hc);
    if (hc == NULL) {
        hc = xcalloc(1, sizeof(*hc));
        if (uv_timer_init(e->loop, &hc->timer) < 0) {
            free(hc);
            return false; /* the claim lapses on its own */
        }
        hc->timer.data = hc;
        hc->e = e;
        hc->digest = xstrdup(digest);
        HASH_ADD_KEYPTR(hh, e->hint_claims, hc->digest, strlen(hc->digest), hc);
        e->hint_works++;
    }
    uv_timer_stop(&hc->timer);
    hc->r = r;
    free(hc->repo);
    hc->repo = xstrdup(repo);
    hc->flights++;
    return true;
}

/* The claim's answer, on the loop: the copy at the gate goes on. */
static void hint_claim_answered(struct hint_work *w)
{
    struct engine *e = w->e;
    struct copy *c = w->c;
    if (w->rc < 0) {
        hint_failed(w, w->rc);
        copy_blob_decide(c, w->digest, NULL);
        hint_work_end(w);
        return;
    }
    if (w->hint.state == JOURNAL_BLOB_MINE) {
        struct blob_flight *f = engine_flight_find(w->r, w->digest);
        if (f != NULL && strcmp(f->repo, w->repo) == 0 && !f->claimed)
            f->claimed = hint_claim_count(e, w->r, w->digest, w->repo);
        copy_blob_decide(c, w->digest, NULL);
        hint_work_end(w);
        return;
    }
    if (w->hint.state == JOURNAL_BLOB_AT) {
        log_debug("cluster: blob hint dest=%s repo=%s digest=%s at=%s", w->r->cfg->name, w->repo,
                  w->digest, w->hint.repo);
        e->stats.hint_mounts++;
        if (strcmp(w->hint.repo, w->repo) == 0)
            copy_blob_confirm(c, w->digest); /* another node put it into this repository */
        else
            copy_blob_decide(c, w->digest, w->hint.repo);
        hint_work_end(w);
        return;
    }
    /* Another node uploads it: wait for it, within its claim and ours. */
    uint64_t now = uv_now(e->loop);
    int64_t left = w->hint.until_unix_ms - clock_unix_ms();
    if (!w->waited) {
        w->waited = true;
        e->stats.hint_waits++;
        w->wait_until = now + ENGINE_HINT_CLAIM_MAX;
        log_debug("cluster: waiting for node %s's upload dest=%s digest=%s", w->hint.node,
                  w->r->cfg->name, w->digest);
    }
    if (left <= 0 || now >= w->wait_until || e->closing) {
        copy_blob_decide(c, w->digest, NULL);
        hint_work_end(w);
        return;
    }
    if (!w->timer_open) {
        int rc = uv_timer_init(e->loop, &w->timer);
        w->timer.data = w;
        if (rc < 0) {
            copy_blob_decide(c, w->digest, NULL);
            hint_work_end(w);
            return;
        }
        w->timer_open = true;
    }
    w->poll_ms = w->poll_ms == 0 ? ENGINE_HINT_POLL_MS : w->poll_ms * 2;
    if (w->poll_ms > ENGINE_HINT_POLL_MAX_MS)
        w->poll_ms = ENGINE_HINT_POLL_MAX_MS;
    uint64_t delay = w->poll_ms < (uint64_t)left ? w->poll_ms : (uint64_t)left;
    if (uv_timer_start(&w->timer, hint_poll, delay, 0) < 0) {
        copy_blob_decide(c, w->digest, NULL);
        hint_work_end(w);
    }
}

static void hint_done(uv_work_t *req, int status)
{
    struct hint_work *w = req->data;
    if (status < 0 && w->rc == 0)
        w->rc = -ECANCELED;
    if (w->op == HINT_CLAIM) {
        hint_claim_answered(w);
        return;
    }
    if (w->rc < 0)
        hint_failed(w, w->rc);
    hint_work_end(w);
}

static void hint_queue(struct hint_work *w)
{
    int rc = uv_queue_work(w->e->loop, &w->req, hint_run, hint_done);
    if (rc < 0) {
        w->rc = rc;
        hint_done(&w->req, 0);
    }
}

void engine_hint_claim(struct engine *e, struct eng_registry *r, struct copy *c, const char *digest)
{
    struct hint_work *w = hint_work_new(e, r, HINT_CLAIM, digest, copy_dst_repo(c));
    w->c = c;
    int64_t size = copy_blob_size(c, digest);
    uint64_t ttl = ENGINE_HINT_CLAIM_MS;
    if (size > 0)
        ttl += (uint64_t)size / (ENGINE_HINT_SLOW_BPS / 1000);
    w->ttl_ms = ttl < ENGINE_HINT_CLAIM_MAX ? ttl : ENGINE_HINT_CLAIM_MAX;
    e->hint_works++;
    hint_queue(w);
}

/* Landed or unclaimed: the others hear it; nobody waits for the answer. */
static void hint_tell(struct engine *e, struct eng_registry *r, enum hint_op op, const char *digest,
                      const char *repo)
{
    struct hint_work *w = hint_work_new(e, r, op, digest, repo);
    e->hint_works++;
    hint_queue(w);
}

static void hint_claim_closed(uv_handle_t *h)
{
    struct hint_claim *hc = h->data;
    hc->e->hint_works--;
    free(hc->digest);
    free(hc->repo);
    free(hc);
}

/* No flight counted on the claim for a while: it goes, for the next node that needs the blob. */
static void hint_claim_linger_over(uv_timer_t *timer)
{
    struct hint_claim *hc = timer->data;
    struct engine *e = hc->e;
    HASH_DEL(e->hint_claims, hc);
    hint_tell(e, hc->r, HINT_UNCLAIM, hc->digest, hc->repo);
    uv_close((uv_handle_t *)&hc->timer, hint_claim_closed);
}

void engine_hint_flight_end(struct engine *e, struct eng_registry *r, const char *digest,
                            const char *repo, bool ok)
{
    if (ok)
        hint_tell(e, r, HINT_LANDED, digest, repo); /* the other nodes mount from here */
    struct hint_claim *hc = NULL;
    HASH_FIND_STR(e->hint_claims, digest, hc);
    if (hc == NULL || --hc->flights > 0)
        return;
    /* None of this node's uploads of it is under way. Closing: it goes now. */
    uint64_t linger = e->closing ? 0 : ENGINE_HINT_LINGER_MS;
    if (uv_timer_start(&hc->timer, hint_claim_linger_over, linger, 0) < 0)
        hint_claim_linger_over(&hc->timer);
}

void engine_set_peers(struct engine *e, int peers)
{
    e->hint_peers = peers;
}
