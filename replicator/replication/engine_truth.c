/*
 * engine_truth.c: the source is the truth (DESIGN.md §3). Journal messages
 * are hints: before a job moves a tag or deletes a manifest it asks the
 * source, behind its gates, where the tag stands now. The tag's fence keeps
 * a destination tag from moving backwards in journal order, the digest's
 * fence keeps a deleted manifest from coming back, and what a job learns at
 * the source is journaled as a new observation. Also the delete jobs, and
 * the clean-up of manifests a job put for an image the source dropped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "journal/committer.h"
#include "journal/journal.h"
#include "registry/registry.h"
#include "replication/engine_int.h"

/* ---- fences ---- */

enum engine_fence_claim engine_fence_claim(uint64_t fence, uint64_t seq)
{
    if (fence == seq)
        return ENGINE_FENCE_OWNED;
    return fence > seq ? ENGINE_FENCE_SUPERSEDED : ENGINE_FENCE_RAISE;
}

/* engine_fence_take() for a fence read already. */
static int engine_fence_commit(struct journal *j, const char *dest, const char *repo,
                               const char *tag, uint64_t fence, uint64_t seq, bool synced)
{
    switch (engine_fence_claim(fence, seq)) {
    case ENGINE_FENCE_OWNED:
        return 1;
    case ENGINE_FENCE_SUPERSEDED:
        return 0;
    case ENGINE_FENCE_RAISE:
        break;
    }
    /* The tag's gate makes get-then-raise safe within this node. */
    return synced ? journal_fence_raise(j, dest, repo, tag, seq)
                  : journal_fence_raise_unsynced(j, dest, repo, tag, seq);
}

int engine_fence_take(struct journal *j, const char *dest, const char *repo, const char *tag,
                      uint64_t seq)
{
    uint64_t fence = 0;
    int rc = journal_fence_get(j, dest, repo, tag, &fence);
    if (rc < 0)
        return rc;
    return engine_fence_commit(j, dest, repo, tag, fence, seq, true);
}

/*
 * A manifest deleted at a destination because the source deleted it fences
 * its digest there with the delete's seq ("@sha256:…" in the fence space of
 * the repository: no tag has an '@'). A push of that digest from an older
 * entry must not put it back: its look at the source may be older than the
 * delete (an answer shared between the destinations of one entry).
 */
static int engine_digest_fence_raise(struct eng_job *job, const char *digest)
{
    char *key = xasprintf("@%s", digest);
    int rc = journal_fence_raise(job->engine->journal, job->dst->cfg->name, job->dst_repo, key,
                                 job->seq);
    free(key);
    return rc < 0 ? rc : 0;
}

/* The seq of the newest delete of `digest` at the job's destination, 0 if none. */
static int engine_digest_fence(struct eng_job *job, const char *digest, uint64_t *fence)
{
    char *key = xasprintf("@%s", digest);
    *fence = 0;
    int rc =
        journal_fence_get(job->engine->journal, job->dst->cfg->name, job->dst_repo, key, fence);
    free(key);
    return rc;
}

enum engine_tag_verdict engine_tag_verdict(const struct engine_tag_facts *f)
{
    /* The source deleted this very manifest after the entry, and that delete
     * ran here: the look at the source (shared, a few seconds old) is older. */
    if (f->deleted > f->seq)
        return ENGINE_TAG_DELETED;
    if (engine_fence_claim(f->fence, f->seq) == ENGINE_FENCE_SUPERSEDED)
        return ENGINE_TAG_SUPERSEDED;
    /* The copy saw the tag in place before this job held its gates; that is
     * still true unless this node moved a tag or deleted a manifest there
     * since. Otherwise the PUT puts it back for sure. */
    if (f->existing != NULL && f->gate_digest != NULL && strcmp(f->existing, f->gate_digest) == 0 &&
        !f->moved_since)
        return ENGINE_TAG_HELD;
    return ENGINE_TAG_MOVE;
}

/*
 * The step a job is at fails, blamed on `fault`: at the tag gate the copy
 * fails with `why` (its manifests are in), otherwise the attempt settles.
 */
static void job_step_failed(struct eng_job *job, enum copy_fault fault, int rc, const char *why)
{
    job->fault = fault;
    if (job->copy != NULL)
        copy_tag_decide(job->copy, rc, why, COPY_TAG_LEAVE);
    else
        engine_job_settle(job, rc, why, false);
}

/* ---- the source is the truth ---- */

/* What a job does once an observation it made is in the journal. */
enum observed_then {
    OBSERVED_LEAVE_TAG, /* a push: leave the tag alone (SUPERSEDED) */
    OBSERVED_IGNORE,    /* a delete: mark it ignored */
    OBSERVED_GONE,      /* a push the source cannot serve any more: SUPERSEDED */
};

struct observation {
    struct eng_job *job;
    enum observed_then then;
    char *why;
};

static void delete_ignore(struct eng_job *job, const char *why);

static void engine_observed(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct observation *o = arg;
    struct eng_job *job = o->job;
    (void)n;
    if (rc == 0 && seqs[0] != 0)
        log_info("journaled what the source says src=%s repo=%s tag=%s seq=%llu",
                 job->src->cfg->name, job->src_repo, job->tag, (unsigned long long)seqs[0]);
    if (rc < 0) {
        /* The job fails and runs again: its entry is not passed while what
         * it learned is not durable. */
        char *why = xasprintf("cannot journal what the source says: %s",
                              error != NULL ? error : ferry_strerror(rc));
        if (o->then == OBSERVED_LEAVE_TAG) {
            copy_tag_decide(job->copy, rc, why, COPY_TAG_LEAVE);
        } else {
            job->gone = false;
            job->fault = COPY_FAULT_LOCAL;
            engine_job_settle(job, rc, why, false);
        }
        free(why);
    } else if (o->then == OBSERVED_LEAVE_TAG) {
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
    } else if (o->then == OBSERVED_GONE) {
        if (!engine_cleanup_after(job))
            engine_job_settle(job, 0, NULL, true);
    } else {
        delete_ignore(job, o->why);
    }
    free(o->why);
    free(o);
}

/* The tags a job of this sync journaled a look at (engine_gate_decide()). */
static char *looked_key(const char *repo, const char *tag)
{
    return xasprintf("%s\n%s", repo, tag);
}

static bool engine_looked_again(const struct engine *e, const char *repo, const char *tag)
{
    if (e->looked_again == NULL)
        return false;
    char *key = looked_key(repo, tag);
    struct engine_tag_seen *seen = NULL;
    HASH_FIND_STR(e->looked_again, key, seen);
    free(key);
    return seen != NULL;
}

/*
 * A job found the source's tag naming `digest` (NULL: the tag is gone), not
 * what its entry said. Journal that as an observation, so that every
 * destination converges on the source without waiting for a poll, and go on
 * (`then`) only once it is durable, so that a crash never loses it. The
 * journal drops it when its latest word on the tag already says so, and the
 * other destinations' jobs of the same entry submit the same event id.
 */
static void engine_observe_source(struct eng_job *job, const char *digest, const char *media_type,
                                  enum observed_then then, const char *why)
{
    struct engine *e = job->engine;
    if (e->one_shot && !engine_looked_again(e, job->src_repo, job->tag)) {
        struct engine_tag_seen *seen = xcalloc(1, sizeof(*seen));
        seen->key = looked_key(job->src_repo, job->tag);
        HASH_ADD_KEYPTR(hh, e->looked_again, seen->key, strlen(seen->key), seen);
    }
    char *id = xasprintf("source:%s:%s:%s@%" PRIu64, job->src_repo, job->tag,
                         digest != NULL ? digest : "gone", job->seq);
    struct journal_event ev = {
        .action = digest != NULL ? JOURNAL_PUSH : JOURNAL_DELETE,
        .source = job->src->cfg->name,
        .repository = job->src_repo,
        .digest = digest,
        .tag = job->tag,
        .media_type = media_type,
        .event_id = id,
        .if_changed = true,
    };
    struct observation *o = xcalloc(1, sizeof(*o));
    o->job = job;
    o->then = then;
    o->why = xstrdup(why);
    int rc = e->committer != NULL
                 ? journal_committer_submit(e->committer, &ev, 1, engine_observed, o)
                 : FERRY_ECANCELED;
    free(id);
    if (rc < 0)
        engine_observed(rc, ferry_strerror(rc), NULL, 0, o);
}

/*
 * Ask the source where `reference` of the job's repository stands now. With
 * `share`, the jobs of one entry at every destination (same seq, same
 * attempt) share one request, and its answer for a few seconds.
 */
static void job_source_check(struct eng_job *job, const char *reference, bool share,
                             registry_manifest_cb cb)
{
    char key[48];
    snprintf(key, sizeof(key), "%" PRIu64 ".%d", job->seq, job->attempts);
    registry_manifest_resolve(job->src->cl.pull, job->src_repo, reference, share ? key : NULL,
                              ENGINE_CHECK_SHARE_MS, cb, job);
}

/* The source could not be asked about `reference`: the job's step fails, the source's fault. */
static void source_check_failed(struct eng_job *job, const char *reference, int rc,
                                const char *error)
{
    char *why = xasprintf("cannot check %s%s%s at source %s: %s", job->src_repo,
                          strchr(reference, ':') != NULL ? "@" : ":", reference,
                          job->src->cfg->name, error != NULL ? error : ferry_strerror(rc));
    job_step_failed(job, COPY_FAULT_SOURCE, rc, why);
    free(why);
}

/* The source's tag is gone or names `digest` now: the push leaves the tag alone, and says so. */
static void push_source_disagrees(struct eng_job *job, const char *digest, const char *media_type)
{
    job->source_dropped = true;
    char *why = digest == NULL
                    ? xasprintf("superseded: the source has no tag %s now", job->tag)
                    : xasprintf("superseded: the source's tag %s names %s now", job->tag, digest);
    log_info("source disagrees, tag left alone dest=%s repo=%s tag=%s digest=%s seq=%llu "
             "reason=\"%s\"",
             job->dst->cfg->name, job->dst_repo, job->tag, job->digest,
             (unsigned long long)job->seq, why);
    free(job->last_error);
    job->last_error = xstrdup(why);
    engine_observe_source(job, digest, media_type, OBSERVED_LEAVE_TAG, why);
    free(why);
}

/*
 * The source's tag names the push's digest: weigh the fences and what the
 * copy saw, raise the tag's fence durably when the tag is the job's, and
 * answer the copy's tag gate.
 */
static void push_tag_step(struct eng_job *job)
{
    struct engine *e = job->engine;
    const char *dest = job->dst->cfg->name;
    struct engine_tag_facts facts = {
        .seq = job->seq,
        .existing = copy_dst_tag_digest(job->copy),
        .gate_digest = job->gate_digest,
        .moved_since = job->dst->moves != job->moves_at_start,
    };
    enum engine_tag_verdict verdict = ENGINE_TAG_MOVE;
    int rc = 0;
    if (job->tag_leased) {
        rc = job->held_deleted_rc; /* read with the hold */
        facts.deleted = job->held_deleted;
    } else {
        rc = engine_digest_fence(job, job->digest, &facts.deleted);
    }
    /* The tag's fence matters only when the manifest was not deleted since.
     * A cluster's hold read it, and keeps it: the hold's pending seq stands
     * for the raise until the release writes it. */
    if (rc >= 0 && facts.deleted <= facts.seq && job->tag_leased)
        facts.fence = job->held_fence;
    else if (rc >= 0 && facts.deleted <= facts.seq)
        rc = journal_fence_get(e->journal, dest, job->dst_repo, job->tag, &facts.fence);
    if (rc >= 0)
        verdict = engine_tag_verdict(&facts);
    if (rc >= 0 && job->tag_leased && (verdict == ENGINE_TAG_MOVE || verdict == ENGINE_TAG_HELD)) {
        job->tag_raised = job->seq;
    } else if (rc >= 0 && (verdict == ENGINE_TAG_MOVE || verdict == ENGINE_TAG_HELD)) {
        /* Synced before a PUT; a tag in place (HELD) waits for no fsync. */
        rc = engine_fence_commit(e->journal, dest, job->dst_repo, job->tag, facts.fence, job->seq,
                                 verdict == ENGINE_TAG_MOVE);
        if (rc == 0)
            verdict = ENGINE_TAG_SUPERSEDED;
    }
    if (rc < 0) {
        job_step_failed(job, COPY_FAULT_LOCAL, rc, "cannot record the tag's fence");
        return;
    }
    switch (verdict) {
    case ENGINE_TAG_DELETED:
        free(job->last_error);
        job->last_error = xasprintf("superseded: %s was deleted at the source (entry %llu)",
                                    job->digest, (unsigned long long)facts.deleted);
        log_info("tag left alone, its manifest was deleted since dest=%s repo=%s tag=%s seq=%llu",
                 dest, job->dst_repo, job->tag, (unsigned long long)job->seq);
        job->source_dropped = true;
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
        break;
    case ENGINE_TAG_SUPERSEDED:
        log_info("tag superseded dest=%s repo=%s tag=%s seq=%llu", dest, job->dst_repo, job->tag,
                 (unsigned long long)job->seq);
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
        break;
    case ENGINE_TAG_HELD:
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_HELD);
        break;
    case ENGINE_TAG_MOVE:
        job->dst->moves++;
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_MOVE);
        break;
    }
}

/*
 * The source's answer for a push's tag. The tag moves only to the digest the
 * source's tag names now, and only by an entry newer than its fence.
 */
static void push_source_checked(int rc, const char *error, const char *bytes, size_t len,
                                const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)bytes;
    (void)len;
    if (rc < 0 && rc != FERRY_ENOTFOUND)
        source_check_failed(job, job->tag, rc, error);
    else if (rc == FERRY_ENOTFOUND || strcmp(digest, job->digest) != 0)
        push_source_disagrees(job, rc == 0 ? digest : NULL, media_type);
    else
        push_tag_step(job);
}

static void delete_gated(struct eng_job *job);

int engine_referrers_fetch(void *arg, const char *repo, const char *digest, registry_manifest_cb cb,
                           void *cb_arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    struct registry *src = job->src->cl.pull;
    if (!registry_referrers_api_missing(src) || engine_looked_again(e, repo, job->tag))
        return registry_referrers(src, repo, digest, cb, cb_arg);
    char *tag = reference_referrers_tag(digest);
    char *named = NULL;
    /* The poll journals the tags its rules select: only such a tag's absence says anything. */
    int rc = config_tag_selected(e->config, job->src->cfg->name, repo, tag)
                 ? journal_tagstate_get(e->journal, job->src->cfg->name, repo, tag, &named)
                 : 0;
    free(named);
    free(tag);
    if (rc != FERRY_ENOTFOUND)
        return registry_referrers(src, repo, digest, cb, cb_arg);
    log_debug("referrers: no %s tag at the source, as this sync listed it repo=%s digest=%s",
              "sha256-", repo, digest);
    cb(0, NULL, "", 0, NULL, NULL, cb_arg);
    return 0;
}

/*
 * A tag's hold taken or released on the loop's thread pool: each is a
 * compare-and-set on the NATS servers, a few ms (seconds while they elect a
 * leader), during which the loop would move no byte of any transfer.
 */
struct tag_hold_work {
    uv_work_t req;
    struct engine *e;
    /* A hold: the job that waits for it (NULL: it was freed); a release: NULL. */
    struct eng_job *job;
    /* A hold: what the job does once it holds the tag; a release: NULL. */
    void (*then)(struct eng_job *job);
    char *dest, *repo, *tag;
    char *digest_key; /* a push's hold: its digest's fence ("@sha256:…") is read with it */
    uint64_t token, seq, raised, fence, deleted;
    int rc, deleted_rc;
    char *other;
};

/* A new hold's token: random, never 0 (journal_tag_hold()). */
static uint64_t tag_hold_token(void)
{
    static _Atomic uint64_t counter;
    uint64_t token = 0;
    if (getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token))
        token = ((uint64_t)clock_unix_ms() << 20) ^ ((uint64_t)getpid() << 40);
    token ^= atomic_fetch_add(&counter, 1);
    return token != 0 ? token : 1;
}

static struct tag_hold_work *tag_hold_work_new(struct eng_job *job)
{
    struct tag_hold_work *w = xcalloc(1, sizeof(*w));
    w->req.data = w;
    w->e = job->engine;
    w->dest = xstrdup(job->dst->cfg->name);
    w->repo = xstrdup(job->dst_repo);
    w->tag = xstrdup(job->tag);
    w->seq = job->seq;
    return w;
}

static void tag_hold_work_free(struct tag_hold_work *w)
{
    free(w->dest);
    free(w->repo);
    free(w->tag);
    free(w->digest_key);
    free(w->other);
    free(w);
}

/* On the pool: take the hold (and read the digest's fence), or release it. */
static void tag_hold_run(uv_work_t *req)
{
    struct tag_hold_work *w = req->data;
    struct journal *j = w->e->journal;
    if (w->then == NULL) {
        w->rc = journal_tag_release(j, w->dest, w->repo, w->tag, w->e->node, w->token, w->raised);
        return;
    }
    w->rc = journal_tag_hold(j, w->dest, w->repo, w->tag, w->e->node, w->token, ENGINE_TAG_LEASE_MS,
                             w->seq, &w->fence, &w->other);
    if (w->rc == 1 && w->digest_key != NULL)
        w->deleted_rc = journal_fence_get(j, w->dest, w->repo, w->digest_key, &w->deleted);
}

static void tag_release_done(uv_work_t *req, int status)
{
    struct tag_hold_work *w = req->data;
    w->e->hold_works--;
    /* If this fails, the hold lapses, and its pending seq counts as the
     * fence for the next holder: the tag never moves back meanwhile. */
    if (status < 0 || w->rc < 0)
        log_warn("cannot give a tag's lease back (it lapses) dest=%s repo=%s tag=%s", w->dest,
                 w->repo, w->tag);
    tag_hold_work_free(w);
}

static void tag_release_queue(struct tag_hold_work *w)
{
    w->then = NULL;
    w->e->hold_works++;
    int rc = uv_queue_work(w->e->loop, &w->req, tag_hold_run, tag_release_done);
    if (rc < 0) {
        tag_hold_run(&w->req);
        tag_release_done(&w->req, 0);
    }
}

/* The hold's answer, on the loop. */
static void tag_hold_done(uv_work_t *req, int status)
{
    struct tag_hold_work *w = req->data;
    struct eng_job *job = w->job;
    w->e->hold_works--;
    if (status < 0 && w->rc == 1)
        w->rc = -ECANCELED;
    if (job == NULL && w->rc == 0) {
        tag_hold_work_free(w);
        return;
    }
    if (job == NULL || w->rc < 0) {
        /* The job went meanwhile (it cannot, but a hold must not stay), or
         * the hold's answer was an error: its write may have landed all the
         * same, and would keep the tag from every other hold until it
         * lapses. Released, if it is there. */
        int rc = w->rc;
        w->raised = 0;
        w->job = NULL;
        char *why =
            rc < 0 ? xasprintf("cannot take the tag's lease: %s", ferry_strerror(rc)) : NULL;
        tag_release_queue(w);
        if (job != NULL) {
            job->hold_work = NULL;
            job_step_failed(job, COPY_FAULT_LOCAL, rc, why);
        }
        free(why);
        return;
    }
    job->hold_work = NULL;
    if (w->rc == 1) {
        job->tag_leased = true;
        job->hold_token = w->token;
        job->held_fence = w->fence;
        job->tag_raised = 0;
        job->held_deleted = w->deleted;
        job->held_deleted_rc = w->deleted_rc;
    }
    int rc = w->rc;
    if (rc == 1 && job->engine->close_cut)
        rc = -ECANCELED; /* shutting down: the job ends PENDING, its hold goes back */
    if (rc == 1) {
        void (*then)(struct eng_job *) = w->then;
        tag_hold_work_free(w);
        then(job);
        return;
    }
    if (rc < 0) {
        /* Held, but shutting down: the job ends PENDING, its hold goes back. */
        job_step_failed(job, COPY_FAULT_LOCAL, rc, "shutting down");
        tag_hold_work_free(w);
        return;
    }
    char *why = xasprintf("node %s is moving this tag now", w->other != NULL ? w->other : "?");
    tag_hold_work_free(w);
    /* Waiting for another node is no failure: the attempt is not counted
     * (the wait is bounded by the lease's time), and tried again soon. */
    if (job->attempts > 1)
        job->attempts--;
    job->lease_waits = true;
    job_step_failed(job, COPY_FAULT_LOCAL, -EBUSY, why);
    free(why);
}

void engine_tag_lease_take(struct eng_job *job, void (*then)(struct eng_job *job))
{
    struct engine *e = job->engine;
    if (e->work == NULL || job->tag_leased) {
        then(job);
        return;
    }
    struct tag_hold_work *w = tag_hold_work_new(job);
    w->job = job;
    w->then = then;
    w->token = tag_hold_token();
    /* Only a delete job fences a digest, and only a rule that propagates
     * deletes makes one: elsewhere the read would cost the servers a request
     * a push for nothing (the fence is 0). */
    if (!job->is_delete && job->digest != NULL && job->dst->deletes_into)
        w->digest_key = xasprintf("@%s", job->digest);
    int rc = uv_queue_work(e->loop, &w->req, tag_hold_run, tag_hold_done);
    if (rc < 0) {
        tag_hold_work_free(w);
        job_step_failed(job, COPY_FAULT_LOCAL, -EAGAIN, "cannot take the tag's lease");
        return;
    }
    e->hold_works++;
    job->hold_work = w;
}

void engine_tag_lease_give(struct eng_job *job)
{
    if (job->hold_work != NULL) {
        job->hold_work->job = NULL; /* its answer finds no job, and gives back what it took */
        job->hold_work = NULL;
    }
    if (!job->tag_leased)
        return;
    job->tag_leased = false;
    struct tag_hold_work *w = tag_hold_work_new(job);
    w->raised = job->tag_raised;
    w->token = job->hold_token;
    job->tag_raised = 0;
    tag_release_queue(w);
}

/* A push behind its gates, and in a cluster its tag's hold: ask the source. */
static void push_gated(struct eng_job *job)
{
    /* Messages are hints: ask the source, behind the tag's gate, so that no
     * other job of this node moves the tag between the answer and the PUT.
     * The entry of a sync's own poll is no message but the source's answer,
     * as new as any entry before it (engine_own_look), unless a job of this
     * run has looked at the tag since: taking it is taking the answer then. */
    if (job->own_look && job->tag != NULL &&
        !engine_looked_again(job->engine, job->src_repo, job->tag)) {
        push_tag_step(job);
        return;
    }
    job_source_check(job, job->tag, true, push_source_checked);
}

void engine_gate_decide(struct eng_job *job)
{
    if (job->is_delete) {
        delete_gated(job);
        return;
    }
    const char *existing = copy_dst_tag_digest(job->copy);

    if (!job->overwrite && existing != NULL) {
        bool held = job->gate_digest != NULL && strcmp(existing, job->gate_digest) == 0;
        if (!held)
            log_info("tag exists, overwrite off dest=%s repo=%s tag=%s", job->dst->cfg->name,
                     job->dst_repo, job->tag);
        copy_tag_decide(job->copy, 0, NULL, held ? COPY_TAG_HELD : COPY_TAG_LEAVE);
        return;
    }
    /* In a cluster the gate holds on this node only: the tag's hold keeps
     * the other nodes' jobs for it out until this job ends (a fence raised
     * here and a PUT landing after another node's would move it back). */
    if (job->tag != NULL)
        engine_tag_lease_take(job, push_gated);
    else
        push_gated(job);
}

/* ---- what the source cannot give ---- */

/*
 * The source could not give what the entry named. Is it gone there (the
 * tag deleted or moved on, the image garbage-collected: the job is
 * SUPERSEDED, and what the source says now is journaled), or is the image
 * the source names broken (the job fails with the source's reason)?
 */
static void source_fault_checked(int rc, const char *error, const char *bytes, size_t len,
                                 const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)bytes;
    (void)len;
    (void)error;
    job->fault = COPY_FAULT_SOURCE;
    if (rc == FERRY_ENOTFOUND || (rc == 0 && strcmp(digest, job->digest) != 0)) {
        char *why = rc == FERRY_ENOTFOUND
                        ? xasprintf("gone at the source: %s%s%s is not there now (%s)",
                                    job->src_repo, job->tag != NULL ? ":" : "@",
                                    job->tag != NULL ? job->tag : job->digest, job->source_error)
                        : xasprintf("superseded: gone at the source, its tag %s names %s now",
                                    job->tag, digest);
        log_info("gone at the source dest=%s repo=%s digest=%s seq=%llu reason=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->digest, (unsigned long long)job->seq,
                 why);
        free(job->last_error);
        job->last_error = xstrdup(why);
        job->gone = true;
        job->fault = COPY_FAULT_NONE;
        if (job->tag != NULL)
            engine_observe_source(job, rc == 0 ? digest : NULL, media_type, OBSERVED_GONE, why);
        else if (!engine_cleanup_after(job))
            engine_job_settle(job, 0, NULL, true);
        free(why);
    } else {
        /* The source names this very image, and cannot give it: its fault. */
        char *why = xasprintf("the source cannot give %s@%s: %s", job->src_repo, job->digest,
                              job->source_error);
        engine_job_settle(job, job->source_rc, why, false);
        free(why);
    }
    /* engine_job_settle() may have freed the job (and its source_error with it). */
}

bool engine_source_fault(struct eng_job *job, int rc, const char *error)
{
    struct engine *e = job->engine;
    if (job->fault != COPY_FAULT_SOURCE || !engine_source_cannot_give(rc) || e->closing)
        return false;
    /* The destination has nothing more to do with it: its place goes to the
     * next job (a burst of events for images gone at the source would
     * otherwise hold every place while each waits for the source and the
     * journal). */
    sched_release(&e->sched, &job->item);
    job->slot_released = true;
    job->source_rc = rc;
    free(job->source_error);
    job->source_error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    job_source_check(job, job->tag != NULL ? job->tag : job->digest, true, source_fault_checked);
    engine_pump(e);
    return true;
}

/* ---- clean-up after a job that ended without its tag ---- */

static void cleanup_deleted(int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    if (rc < 0)
        log_warn("cannot remove a manifest the source deleted dest=%s repo=%s digest=%s "
                 "error=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->digest, error != NULL ? error : "");
    else
        log_info("removed a manifest the source deleted meanwhile dest=%s repo=%s digest=%s",
                 job->dst->cfg->name, job->dst_repo, job->digest);
    engine_job_settle(job, 0, NULL, true);
}

static void cleanup_checked(int rc, const char *error, const char *bytes, size_t len,
                            const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)error;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    if (rc != FERRY_ENOTFOUND) {
        engine_job_settle(job, 0, NULL, true);
        return;
    }
    /* A manifest DELETE takes every tag on it: a job that saw one in place
     * must not trust that now. */
    job->dst->moves++;
    rc = registry_manifest_delete(job->dst->cl.push, job->dst_repo, job->digest, cleanup_deleted,
                                  job);
    if (rc < 0)
        cleanup_deleted(rc, ferry_strerror(rc), job);
}

/*
 * The job put its manifests (in this attempt or an earlier one), then ended
 * without its tag: the source's tag gone or moved on, a newer entry owning
 * the tag, or the image gone at the source. If the source no longer holds
 * the manifest either (deleted, or collected, after the entry; a delete by
 * digest may even have run here already), what the job put would stay
 * behind untagged for good. Where its rule propagates deletes, it removes
 * it again, on the source's word (a 404 for the digest), behind the gates it
 * still holds (none when the image was found gone before its tag step).
 */
bool engine_cleanup_after(struct eng_job *job)
{
    if (!job->deletes || !job->put_manifests || job->engine->closing)
        return false;
    job_source_check(job, job->digest, false, cleanup_checked);
    return true;
}

/* ---- delete jobs: only when the source agrees, behind the repository's gate ---- */

static void delete_done(int rc, const char *error, void *arg)
{
    engine_job_settle(arg, rc, error, false);
}

/*
 * The source disagrees with a delete: nothing is deleted, and its entries
 * say why (`ferry journal`, /v1/journal). The job ends SUPERSEDED with the
 * same reason.
 */
static void delete_ignore(struct eng_job *job, const char *why)
{
    struct engine *e = job->engine;
    log_info("delete ignored, the source disagrees dest=%s repo=%s seq=%llu reason=\"%s\"",
             job->dst->cfg->name, job->dst_repo, (unsigned long long)job->seq, why);
    for (size_t i = 0; i < job->n_seqs; i++)
        if (journal_entry_set_ignored(e->journal, job->seqs[i], why) < 0)
            log_warn("cannot mark entry ignored seq=%llu", (unsigned long long)job->seqs[i]);
    free(job->last_error);
    job->last_error = xstrdup(why);
    job->gone = true;
    engine_job_settle(job, 0, NULL, true);
}

/* A tag deleted alone at the destination, or a registry that cannot. */
static void tag_deleted(int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    if (rc == FERRY_EUNSUPPORTED) {
        char *why = xasprintf("ignored: the source still holds %s under another name or "
                              "untagged, and %s cannot delete a tag alone",
                              job->delete_digest, job->dst->cfg->name);
        delete_ignore(job, why);
        free(why);
        return;
    }
    engine_job_settle(job, rc, error, false);
}

/* The source's answer for the manifest a delete removes: gone there, gone here. */
static void delete_digest_checked(int rc, const char *error, const char *bytes, size_t len,
                                  const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    const char *target = job->delete_digest;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    if (rc == FERRY_ENOTFOUND) {
        /* Older pushes of it must not put it back (their look may be older). */
        int frc = engine_digest_fence_raise(job, target);
        if (frc < 0) {
            job_step_failed(job, COPY_FAULT_LOCAL, frc, "cannot record the manifest's fence");
            return;
        }
        /* Distribution deletes manifests, not tags: every tag on it goes too.
         * A job that saw one of them in place must not trust that now. */
        job->dst->moves++;
        int drc =
            registry_manifest_delete(job->dst->cl.push, job->dst_repo, target, delete_done, job);
        if (drc < 0)
            delete_done(drc, ferry_strerror(drc), job);
        return;
    }
    if (rc < 0) {
        source_check_failed(job, target, rc, error);
        return;
    }
    if (job->tag != NULL) {
        /* The source dropped the tag but keeps the manifest (untagged, or
         * under other tags): drop the tag alone here, where the registry
         * can; deleting the manifest would remove more than the source did. */
        job->dst->moves++;
        int trc = registry_tag_delete(job->dst->cl.push, job->dst_repo, job->tag, tag_deleted, job);
        if (trc == 0)
            return;
    }
    char *why = xasprintf("ignored: the source still holds %s", target);
    delete_ignore(job, why);
    free(why);
}

/*
 * Remove `target` at the destination once the source agrees it is gone. The
 * look is the job's own, taken behind the repository's gate, never a shared
 * or cached answer: a DELETE cannot be undone by a newer entry.
 */
static void delete_manifest(struct eng_job *job, const char *target)
{
    free(job->delete_digest);
    job->delete_digest = xstrdup(target);
    job_source_check(job, target, false, delete_digest_checked);
}

static void delete_tag_resolved(int rc, const char *error, const char *bytes, size_t len,
                                const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)bytes;
    (void)len;
    (void)media_type;
    if (rc == FERRY_ENOTFOUND) {
        engine_job_settle(job, 0, NULL, false);
        return;
    }
    if (rc < 0 || digest == NULL) {
        engine_job_settle(job, rc < 0 ? rc : FERRY_EPROTO,
                          error ? error : "the destination named no digest for the tag", false);
        return;
    }
    if (job->digest != NULL && strcmp(digest, job->digest) != 0) {
        /* The tag names another image there now: not the one deleted. */
        log_info("tag moved on, not deleted dest=%s repo=%s tag=%s", job->dst->cfg->name,
                 job->dst_repo, job->tag);
        engine_job_settle(job, 0, NULL, true);
        return;
    }
    /* Deleting the manifest takes every tag on it: only when the source no
     * longer holds it either, or the delete would remove more than the
     * source did. */
    delete_manifest(job, digest);
}

/* The source's answer for a deleted tag: gone there, or the delete is moot. */
static void delete_tag_checked(int rc, const char *error, const char *bytes, size_t len,
                               const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    (void)bytes;
    (void)len;
    if (rc < 0 && rc != FERRY_ENOTFOUND) {
        source_check_failed(job, job->tag, rc, error);
        return;
    }
    if (rc == 0) {
        /* The tag is there at the source: the destination follows it as an
         * update, through an observation journaled like a push. */
        char *why = xasprintf("ignored: the source's tag %s names %s", job->tag, digest);
        engine_observe_source(job, digest, media_type, OBSERVED_IGNORE, why);
        free(why);
        return;
    }
    int frc = 0;
    if (!job->tag_leased) {
        frc = engine_fence_take(e->journal, job->dst->cfg->name, job->dst_repo, job->tag, job->seq);
    } else if (engine_fence_claim(job->held_fence, job->seq) != ENGINE_FENCE_SUPERSEDED) {
        job->tag_raised = job->seq; /* the hold's release raises it */
        frc = 1;
    }
    if (frc < 0) {
        job_step_failed(job, COPY_FAULT_LOCAL, frc, "cannot record the tag's fence");
        return;
    }
    if (frc == 0) {
        engine_job_settle(job, 0, NULL, true);
        return;
    }
    registry_manifest_head(job->dst->cl.push, job->dst_repo, job->tag, delete_tag_resolved, job);
}

/* A tag's delete behind its gates (and its hold): ask the source. */
static void delete_tag_gated(struct eng_job *job)
{
    job_source_check(job, job->tag, false, delete_tag_checked);
}

/* Behind the repository's gate: the source must agree, and a newer entry that moved the tag wins.
 */
static void delete_gated(struct eng_job *job)
{
    if (job->tag == NULL) {
        /* Distribution notifies a blob's delete as it does a manifest's
         * (a digest and a repository), and 2.8 unlinks a layer for a
         * manifest DELETE naming it: only a manifest this destination got
         * from Ferry (it has a job record) is deleted by digest. */
        struct journal_job rec;
        int rc = journal_job_get(job->engine->journal, job->dst->cfg->name, job->dst_repo,
                                 job->digest, &rec);
        if (rc < 0 && rc != FERRY_ENOTFOUND) {
            job_step_failed(job, COPY_FAULT_LOCAL, rc, "cannot read the job's status record");
            return;
        }
        if (rc == FERRY_ENOTFOUND) {
            char *why = xasprintf("ignored: Ferry replicated no manifest %s to %s/%s (a blob's "
                                  "delete looks the same)",
                                  job->digest, job->dst->cfg->name, job->dst_repo);
            delete_ignore(job, why);
            free(why);
            return;
        }
        journal_job_release(&rec);
        delete_manifest(job, job->digest);
        return;
    }
    /* In a cluster, another node's push of this tag must not land after the delete. */
    engine_tag_lease_take(job, delete_tag_gated);
}
